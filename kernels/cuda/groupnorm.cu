/* kernels/cuda/groupnorm.cu - CUDA twin of kernels/cpu/groupnorm.c and the
 * nearest x2 upsampling of kernels/cpu/conv2d.c.
 *
 * groupnorm: one block per (b, g) over the run of (C/G)*S contiguous values:
 *   mean and biased variance by two passes accumulated in double, then
 *   out = ((x - mu_hi) - mu_lo) * (rstd w[c]) + bias[c] with mu split into an
 *   f32 hi + lo pair as the CPU twin does. out may alias x (each element is
 *   read and written by one thread after both reductions).
 * groupnorm_coef: the same statistics for (sample, group) runs cut into chunks
 *   of GN_CHUNK values (so B*G*chunks blocks fill the device): each block
 *   writes count, mean and M2 of its chunk (two passes in double over the
 *   chunk, L1/L2-resident for the second), then one warp per run merges
 *   its chunks (Chan et al.: each lane a strided set in order, then the
 *   lanes in a fixed tree) and writes the per-channel coefficients (mu_hi, mu_lo, rstd * w[c], bias[c]). Partials live in the
 *   device's small fixed scratch.
 * upsample: one thread per output element. */
#include "common.cuh"
#include "extra.h"
#include "groupnorm.h"

__global__ void __launch_bounds__(1024) groupnorm_k(float *out, const float *x, const float *w,
                                                    const float *bias, int64_t C, int64_t S,
                                                    int64_t G, float eps)
{
    __shared__ double sh[32];
    const int64_t cpg = C / G, n = cpg * S, t = blockIdx.x;
    const float *xr = x + t * n;
    float *orow = out + t * n;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += 1024)
        s += xr[i];
    const double mu = omni__block_sum_d(s, sh) / (double)n;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += 1024) {
        const double d = xr[i] - mu;
        ss += d * d;
    }
    ss = omni__block_sum_d(ss, sh);
    const double rstd = 1.0 / sqrt(ss / (double)n + (double)eps);
    const float mu_hi = (float)mu, mu_lo = (float)(mu - (double)mu_hi);
    const int64_t c0 = (t % G) * cpg;
    for (int64_t i = threadIdx.x; i < n; i += 1024) {
        const int64_t c = c0 + i / S;
        const float scale = (float)(rstd * (w ? w[c] : 1.0f));
        const float shift = bias ? bias[c] : 0.0f;
        orow[i] = ((xr[i] - mu_hi) - mu_lo) * scale + shift;
    }
}

extern "C" void omni_groupnorm_cuda(float *out, const float *x, const float *w, const float *bias,
                                    int64_t B, int64_t C, int64_t S, int64_t G, float eps)
{
    if (B * C * S == 0)
        return;
    OMNI_LAUNCH(groupnorm_k, (unsigned)(B * G), 1024, 0, out, x, w, bias, C, S, G, eps);
}

__global__ void upsample2x_k(float *out, const float *x, int64_t P, int64_t H, int64_t W)
{
    const int64_t W2 = 2 * W, H2 = 2 * H;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * H2 * W2)
        return;
    const int64_t ox = i % W2, oy = (i / W2) % H2, p = i / (W2 * H2);
    out[i] = x[(p * H + oy / 2) * W + ox / 2];
}

extern "C" void omni_upsample_nearest2x_cuda(float *out, const float *x, int64_t P, int64_t H,
                                             int64_t W)
{
    if (P * H * W == 0)
        return;
    OMNI_LAUNCH(upsample2x_k, omni__blocks(P * 4 * H * W, 256), 256, 0, out, x, P, H, W);
}

#define GN_CHUNK 4096

__global__ void __launch_bounds__(256) gn_part_k(double *part, const float *x, int64_t n,
                                                 int64_t chunk, int nch)
{
    __shared__ double sh[32];
    const int64_t t = blockIdx.x / nch;
    const int c = (int)(blockIdx.x % nch);
    const int64_t i0 = (int64_t)c * chunk, i1 = min(n, i0 + chunk);
    const float *xr = x + t * n;
    double s = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += 256)
        s += xr[i];
    s = omni__block_sum_d(s, sh);
    const double cnt = i1 > i0 ? (double)(i1 - i0) : 0.0;
    const double mean = cnt > 0.0 ? s / cnt : 0.0;
    double ss = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += 256) {
        const double d = xr[i] - mean;
        ss += d * d;
    }
    ss = omni__block_sum_d(ss, sh);
    if (threadIdx.x == 0) {
        double *o = part + 3 * (int64_t)blockIdx.x;
        o[0] = cnt;
        o[1] = mean;
        o[2] = ss;
    }
}

/* Chan's merge of the run (nb, mb, m2b) into (na, mean, m2) */
__device__ __forceinline__ void gn_merge(double &na, double &mean, double &m2, double nb, double mb,
                                         double m2b)
{
    if (nb <= 0.0)
        return;
    const double nn = na + nb, d = mb - mean;
    mean += d * (nb / nn);
    m2 += m2b + d * d * (na * nb / nn);
    na = nn;
}

/* one warp per (sample, group): lane l merges the chunks l, l + 32, ... in order, then
 * the lanes meet in a fixed tree (deterministic); the group's coefficients are written by
 * the lanes together. (One thread per group merging all its chunks took 17 us per call
 * for VQ-16's 256x256 GroupNorms on an H200.) */
__global__ void __launch_bounds__(128) gn_coef_k(float *coef, const double *part, const float *w,
                                                 const float *bias, int64_t C, int64_t G, int nch,
                                                 int64_t BG, float eps)
{
    const int lane = threadIdx.x & 31;
    const int64_t t = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (t >= BG)
        return;
    const double *p = part + 3 * t * nch;
    double na = 0.0, mean = 0.0, m2 = 0.0;
    for (int c = lane; c < nch; c += 32)
        gn_merge(na, mean, m2, p[3 * c], p[3 * c + 1], p[3 * c + 2]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const double nb = __shfl_down_sync(0xffffffffu, na, o);
        const double mb = __shfl_down_sync(0xffffffffu, mean, o);
        const double m2b = __shfl_down_sync(0xffffffffu, m2, o);
        gn_merge(na, mean, m2, nb, mb, m2b);
    }
    na = __shfl_sync(0xffffffffu, na, 0);
    mean = __shfl_sync(0xffffffffu, mean, 0);
    m2 = __shfl_sync(0xffffffffu, m2, 0);
    const double rstd = 1.0 / sqrt(m2 / na + (double)eps);
    const float mu_hi = (float)mean, mu_lo = (float)(mean - (double)mu_hi);
    const int64_t cpg = C / G, c0 = (t % G) * cpg, b = t / G;
    for (int64_t c = lane; c < cpg; c += 32) {
        float *cf = coef + (b * C + c0 + c) * 4;
        cf[0] = mu_hi;
        cf[1] = mu_lo;
        cf[2] = (float)(rstd * (w ? w[c0 + c] : 1.0f));
        cf[3] = bias ? bias[c0 + c] : 0.0f;
    }
}

extern "C" void omni_groupnorm_coef_cuda(float *coef, const float *x, const float *w,
                                         const float *bias, int64_t B, int64_t C, int64_t S,
                                         int64_t G, float eps)
{
    const int64_t BG = B * G, n = C / G * S;
    if (BG == 0 || n == 0)
        return;
    int64_t nch = (n + GN_CHUNK - 1) / GN_CHUNK, chunk = GN_CHUNK;
    const int64_t cap = (int64_t)(OMNI__CUDA_SMALL_WS / (3 * sizeof(double))) / BG;
    if (cap < 1) {
        omni__cuda_fail(__FILE__, __LINE__,
                        "groupnorm_coef: %lld (sample, group) runs exceed the fixed scratch",
                        (long long)BG);
        return;
    }
    if (nch > cap) {
        nch = cap;
        chunk = (n + nch - 1) / nch;
    }
    if (BG * nch > INT32_MAX) {
        omni__cuda_fail(__FILE__, __LINE__, "groupnorm_coef: too many blocks");
        return;
    }
    double *part = (double *)omni__cuda_small_ws((size_t)(3 * BG * nch) * sizeof(double));
    if (!part) {
        omni__cuda_fail(__FILE__, __LINE__, "groupnorm_coef: no fixed scratch");
        return;
    }
    OMNI_LAUNCH(gn_part_k, (unsigned)(BG * nch), 256, 0, part, x, n, chunk, (int)nch);
    OMNI_LAUNCH(gn_coef_k, omni__blocks(BG * 32, 128), 128, 0, coef, part, w, bias, C, G, (int)nch,
                BG, eps);
}
