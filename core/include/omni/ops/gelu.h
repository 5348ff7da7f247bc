/* omni/ops/gelu.h */
#ifndef OMNI_OPS_GELU_H
#define OMNI_OPS_GELU_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GELU, erf form: 0.5 v (1 + erf(v / sqrt 2)) (PyTorch nn.GELU()). */
OMNI_API int omni_op_gelu(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err);
/* GELU, tanh form: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))). */
OMNI_API int omni_op_gelu_tanh(struct omni_tensor *y, const struct omni_tensor *x,
                               struct omni_error *err);
/* y = GELU_erf(x + bias), rounded once to y's dtype (f32, f16 or bf16: e.g.
 * the input of a 16-bit GEMM). x: (..., N) f32 contiguous; bias: (N) f32 or
 * NULL; y: x's shape, contiguous; y may alias x when it is f32. */
OMNI_API int omni_op_bias_gelu(struct omni_tensor *y, const struct omni_tensor *x,
                               const struct omni_tensor *bias, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
