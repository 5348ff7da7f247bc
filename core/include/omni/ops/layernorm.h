/* omni/ops/layernorm.h */
#ifndef OMNI_OPS_LAYERNORM_H
#define OMNI_OPS_LAYERNORM_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LayerNorm over the last dim: out = (x - mean) * rsqrt(var + eps) * w + b
 * (biased variance). x, out: (..., D) f32; w, b: (D) f32 or NULL. */
OMNI_API int omni_op_layernorm(struct omni_tensor *out, const struct omni_tensor *x,
                               const struct omni_tensor *w, const struct omni_tensor *b,
                               float eps, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
