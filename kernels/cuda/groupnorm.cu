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
 *   chunk, L1/L2-resident for the second), then one thread per run merges
 *   its chunks in order (Chan et al.) and writes the per-channel
 *   coefficients (mu_hi, mu_lo, rstd * w[c], bias[c]). Partials live in the
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

__global__ void gn_coef_k(float *coef, const double *part, const float *w, const float *bias,
                          int64_t C, int64_t G, int nch, int64_t BG, float eps)
{
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= BG)
        return;
    const double *p = part + 3 * t * nch;
    double na = 0.0, mean = 0.0, m2 = 0.0;
    for (int c = 0; c < nch; c++) {
        const double nb = p[3 * c], mb = p[3 * c + 1], m2b = p[3 * c + 2];
        if (nb <= 0.0)
            continue;
        const double nn = na + nb, d = mb - mean;
        mean += d * (nb / nn);
        m2 += m2b + d * d * (na * nb / nn);
        na = nn;
    }
    const double rstd = 1.0 / sqrt(m2 / na + (double)eps);
    const float mu_hi = (float)mean, mu_lo = (float)(mean - (double)mu_hi);
    const int64_t cpg = C / G, c0 = (t % G) * cpg, b = t / G;
    for (int64_t c = 0; c < cpg; c++) {
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
    OMNI_LAUNCH(gn_coef_k, omni__blocks(BG, 128), 128, 0, coef, part, w, bias, C, G, (int)nch, BG,
                eps);
}
