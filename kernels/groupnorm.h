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

#ifdef __cplusplus
}
#endif
#endif
