/* omni/ops/groupnorm.h */
#ifndef OMNI_OPS_GROUPNORM_H
#define OMNI_OPS_GROUPNORM_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GroupNorm over (C/groups channels x S positions) per sample, affine.
 *   x, out: (B, C, S...) f32 NCHW contiguous; w, b: (C). */
OMNI_API int omni_op_groupnorm(struct omni_tensor *out, const struct omni_tensor *x,
                               const struct omni_tensor *w, const struct omni_tensor *b,
                               int groups, float eps, struct omni_error *err);

/* The per-channel coefficients of that GroupNorm, for omni_op_conv2d_fused:
 *   coef[b, c, :] = (mu_hi, mu_lo, rstd * w[c], b[c]) with mu = mu_hi + mu_lo
 * the group's mean; GroupNorm(x) = ((x - mu_hi) - mu_lo) * coef2 + coef3.
 *   x: (B, C, S...) f32 contiguous; w, b: (C) or NULL; coef: (B, C, 4) f32
 *   contiguous. */
OMNI_API int omni_op_groupnorm_coef(struct omni_tensor *coef, const struct omni_tensor *x,
                                    const struct omni_tensor *w, const struct omni_tensor *b,
                                    int groups, float eps, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
