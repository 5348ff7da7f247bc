/* kernels/groupnorm.h - GroupNorm over NC(S) tensors; CPU reference twin of
 * omni/ops/groupnorm.h. */
#ifndef OMNI_KERNELS_GROUPNORM_H
#define OMNI_KERNELS_GROUPNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* For each sample b and group g (C/G consecutive channels):
 *   mu, var = mean and biased variance of the (C/G)*S values (two passes,
 *             double accumulation),
 *   out[b, c, s] = (x[b, c, s] - mu) / sqrt(var + eps) * w[c] + bias[c].
 * w, bias may be NULL (1 and 0). out may alias x. */
void omni_groupnorm_cpu(float *out,        /* out: (B,C,S) */
                        const float *x,    /* x: (B,C,S) */
                        const float *w,    /* w: (C) or NULL */
                        const float *bias, /* bias: (C) or NULL */
                        int64_t B, int64_t C, int64_t S, int64_t G, float eps);

/* The per-channel coefficients of the same GroupNorm (same statistics and
 * f32 values as omni_groupnorm_cpu uses):
 *   coef[(b*C + c)*4 + 0..3] = mu_hi, mu_lo, scale, shift
 * with mu = mu_hi + mu_lo (f32 hi + lo split of the double mean),
 * scale = (float)(rstd * w[c]), shift = bias[c]; GroupNorm is then
 * ((x - mu_hi) - mu_lo) * scale + shift. */
void omni_groupnorm_coef_cpu(float *coef,       /* coef: (B,C,4) */
                             const float *x,    /* x: (B,C,S) */
                             const float *w,    /* w: (C) or NULL */
                             const float *bias, /* bias: (C) or NULL */
                             int64_t B, int64_t C, int64_t S, int64_t G, float eps);

#ifdef OMNI_HAVE_CUDA
/* omni_groupnorm_coef_cpu on the device (kernels/cuda/groupnorm.cu): chunks
 * of every group in parallel (count, mean, M2 in double), merged in order. */
void omni_groupnorm_coef_cuda(float *coef, const float *x, const float *w, const float *bias,
                              int64_t B, int64_t C, int64_t S, int64_t G, float eps);
#endif

#ifdef __cplusplus
}
#endif
#endif
