/* kernels/cuda/layernorm.cu - CUDA twin of kernels/cpu/layernorm.c: LayerNorm
 * over the last dim, out = (x - mean) * rstd * w + b with the biased
 * variance; mean and variance by two passes in double (as the CPU twin), one
 * block per row. out may alias x. */
#include "common.cuh"
#include "extra.h"

__global__ void __launch_bounds__(256) layernorm_k(float *out, int64_t ldo, const float *x,
                                                   int64_t ldx, const float *w, const float *b,
                                                   int64_t D, float eps)
{
    __shared__ double sh[32];
    const float *xr = x + blockIdx.x * ldx;
    float *y = out + blockIdx.x * ldo;
    double s = 0.0;
    for (int64_t d = threadIdx.x; d < D; d += 256)
        s += xr[d];
    const double mu = omni__block_sum_d(s, sh) / (double)D;
    double ss = 0.0;
    for (int64_t d = threadIdx.x; d < D; d += 256) {
        const double t = xr[d] - mu;
        ss += t * t;
    }
    ss = omni__block_sum_d(ss, sh);
    const float rstd = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
    const float muf = (float)mu;
    for (int64_t d = threadIdx.x; d < D; d += 256) {
        float t = (xr[d] - muf) * rstd;
        if (w)
            t *= w[d];
        if (b)
            t += b[d];
        y[d] = t;
    }
}

extern "C" void omni_layernorm_cuda(float *out, int64_t ldo, const float *x, int64_t ldx,
                                    const float *w, const float *b, int64_t M, int64_t D,
                                    float eps)
{
    if (M == 0 || D == 0)
        return;
    OMNI_LAUNCH(layernorm_k, (unsigned)M, 256, 0, out, ldo, x, ldx, w, b, D, eps);
}
