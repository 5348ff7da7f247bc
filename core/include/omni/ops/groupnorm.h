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

#ifdef __cplusplus
}
#endif
#endif
