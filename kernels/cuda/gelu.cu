/* kernels/cuda/gelu.cu - CUDA twins of kernels/cpu/gelu.c (f32, elementwise,
 * y may alias x): erf form 0.5 v erfc(-v/sqrt 2) and tanh form
 * 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))). The CPU twin evaluates in
 * double; here f32 intrinsics (agreement ~1e-7 relative). */
#include "common.cuh"
#include "extra.h"

__global__ void gelu_k(float *y, const float *x, int64_t n, int tanh_form)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const float v = x[i];
    if (tanh_form) {
        const float k = 0.7978845608028654f;
        y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    } else {
        y[i] = 0.5f * v * erfcf(-v * 0.7071067811865476f);
    }
}

extern "C" void omni_gelu_cuda(float *y, const float *x, int64_t n)
{
    if (n)
        OMNI_LAUNCH(gelu_k, omni__blocks(n, 256), 256, 0, y, x, n, 0);
}

extern "C" void omni_gelu_tanh_cuda(float *y, const float *x, int64_t n)
{
    if (n)
        OMNI_LAUNCH(gelu_k, omni__blocks(n, 256), 256, 0, y, x, n, 1);
}
