/* kernels/cuda/layernorm.cu - CUDA twin of kernels/cpu/layernorm.c: LayerNorm
 * over the last dim, out = (x - mean) * rstd * w + b with the biased
 * variance; mean and variance by two passes in double (as the CPU twin), one
 * block per row. out may alias x.
 * layernorm_ex_k (the ViT block's fused norm): the row stays in registers
 * (D <= 8 * 256), the output is written in the GEMM's 16-bit input dtype,
 * and x += x_add follows in the same pass. */
#include "common.cuh"
#include "extra.h"
#include "layernorm.h"

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

template <typename T, int NPT>
__global__ void __launch_bounds__(256) layernorm_ex_k(T *out, int64_t ldo, float *x, int64_t ldx,
                                                      const float *w, const float *b,
                                                      const float *add, int64_t D, float eps)
{
    __shared__ double sh[32];
    float *xr = x + blockIdx.x * ldx;
    T *y = out + blockIdx.x * ldo;
    float v[NPT];
    double s = 0.0;
#pragma unroll
    for (int i = 0; i < NPT; i++) {
        const int64_t d = threadIdx.x + 256 * i;
        v[i] = d < D ? xr[d] : 0.0f;
        s += v[i];
    }
    const double mu = omni__block_sum_d(s, sh) / (double)D;
    double ss = 0.0;
#pragma unroll
    for (int i = 0; i < NPT; i++) {
        const int64_t d = threadIdx.x + 256 * i;
        const double t = v[i] - mu;
        ss += d < D ? t * t : 0.0;
    }
    ss = omni__block_sum_d(ss, sh);
    const float rstd = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
    const float muf = (float)mu;
#pragma unroll
    for (int i = 0; i < NPT; i++) {
        const int64_t d = threadIdx.x + 256 * i;
        if (d >= D)
            continue;
        float t = (v[i] - muf) * rstd;
        if (w)
            t *= w[d];
        if (b)
            t += b[d];
        omni__st(y + d, t);
        if (add)
            xr[d] = v[i] + add[d];
    }
}

/* D > 2048: the same through global memory */
template <typename T>
__global__ void __launch_bounds__(256) layernorm_ex_wide_k(T *out, int64_t ldo, float *x,
                                                           int64_t ldx, const float *w,
                                                           const float *b, const float *add,
                                                           int64_t D, float eps)
{
    __shared__ double sh[32];
    float *xr = x + blockIdx.x * ldx;
    T *y = out + blockIdx.x * ldo;
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
        omni__st(y + d, t);
        if (add)
            xr[d] += add[d];
    }
}

template <typename T>
static void ln_ex(T *out, int64_t ldo, float *x, int64_t ldx, const float *w, const float *b,
                  const float *add, int64_t M, int64_t D, float eps)
{
    if (D <= 4 * 256)
        OMNI_LAUNCH((layernorm_ex_k<T, 4>), (unsigned)M, 256, 0, out, ldo, x, ldx, w, b, add, D, eps);
    else if (D <= 8 * 256)
        OMNI_LAUNCH((layernorm_ex_k<T, 8>), (unsigned)M, 256, 0, out, ldo, x, ldx, w, b, add, D, eps);
    else
        OMNI_LAUNCH(layernorm_ex_wide_k<T>, (unsigned)M, 256, 0, out, ldo, x, ldx, w, b, add, D, eps);
}

extern "C" void omni_layernorm_ex_cuda(void *out, int out_dtype, int64_t ldo, float *x,
                                       int64_t ldx, const float *w, const float *b,
                                       const float *x_add, int64_t M, int64_t D, float eps)
{
    if (M == 0 || D == 0)
        return;
    if (out_dtype == OMNI_DTYPE_BF16)
        ln_ex((__nv_bfloat16 *)out, ldo, x, ldx, w, b, x_add, M, D, eps);
    else if (out_dtype == OMNI_DTYPE_F16)
        ln_ex((__half *)out, ldo, x, ldx, w, b, x_add, M, D, eps);
    else
        ln_ex((float *)out, ldo, x, ldx, w, b, x_add, M, D, eps);
}
