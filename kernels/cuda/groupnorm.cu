/* kernels/cuda/groupnorm.cu - CUDA twin of kernels/cpu/groupnorm.c and the
 * nearest x2 upsampling of kernels/cpu/conv2d.c.
 *
 * groupnorm: one block per (b, g) over the run of (C/G)*S contiguous values:
 *   mean and biased variance by two passes accumulated in double, then
 *   out = ((x - mu_hi) - mu_lo) * (rstd w[c]) + bias[c] with mu split into an
 *   f32 hi + lo pair as the CPU twin does. out may alias x (each element is
 *   read and written by one thread after both reductions).
 * upsample: one thread per output element. */
#include "common.cuh"
#include "extra.h"

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
