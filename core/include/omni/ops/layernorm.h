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

/* The ViT block's fused norm: out = LayerNorm(x) as above, rounded once to
 * out's dtype (f32, f16 or bf16, e.g. the input of a 16-bit GEMM); then,
 * when x_add (D) is given, x += x_add in place (after the statistics; out
 * must not share x's buffer then). x: (..., D) f32 rows; out: same shape. */
OMNI_API int omni_op_layernorm_ex(struct omni_tensor *out, struct omni_tensor *x,
                                  const struct omni_tensor *w, const struct omni_tensor *b,
                                  float eps, const struct omni_tensor *x_add,
                                  struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
