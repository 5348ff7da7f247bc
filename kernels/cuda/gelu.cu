/* kernels/cuda/gelu.cu - CUDA twins of kernels/cpu/gelu.c (f32, elementwise,
 * y may alias x): erf form 0.5 v erfc(-v/sqrt 2) and tanh form
 * 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))). The CPU twin evaluates in
 * double; here f32 intrinsics (agreement ~1e-7 relative). */
#include "common.cuh"
#include "extra.h"
#include "gelu.h"

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

/* y = round(gelu(x + bias)), 4 consecutive elements per thread (N % 4 == 0) */
template <typename T>
__global__ void bias_gelu4_k(T *y, const float4 *x, const float *bias, int64_t n4, int64_t N)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4)
        return;
    const float4 v = x[i];
    const int64_t c = (4 * i) % N;
    float s[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        if (bias)
            s[j] += bias[c + j];
        omni__st(y + 4 * i + j, 0.5f * s[j] * erfcf(-s[j] * 0.7071067811865476f));
    }
}

template <typename T>
__global__ void bias_gelu_k(T *y, const float *x, const float *bias, int64_t n, int64_t N)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const float s = bias ? x[i] + bias[i % N] : x[i];
    omni__st(y + i, 0.5f * s * erfcf(-s * 0.7071067811865476f));
}

template <typename T>
static void bias_gelu(T *y, const float *x, const float *bias, int64_t M, int64_t N)
{
    const int64_t n = M * N;
    if (N % 4 == 0 && ((uintptr_t)x & 15) == 0)
        OMNI_LAUNCH(bias_gelu4_k<T>, omni__blocks(n / 4, 256), 256, 0, y, (const float4 *)x, bias,
                    n / 4, N);
    else
        OMNI_LAUNCH(bias_gelu_k<T>, omni__blocks(n, 256), 256, 0, y, x, bias, n, N);
}

extern "C" void omni_bias_gelu_cuda(void *y, int y_dtype, const float *x, const float *bias,
                                    int64_t M, int64_t N)
{
    if (M * N == 0)
        return;
    if (y_dtype == OMNI_DTYPE_BF16)
        bias_gelu((__nv_bfloat16 *)y, x, bias, M, N);
    else if (y_dtype == OMNI_DTYPE_F16)
        bias_gelu((__half *)y, x, bias, M, N);
    else
        bias_gelu((float *)y, x, bias, M, N);
}
