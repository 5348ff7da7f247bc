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

#ifdef __cplusplus
}
#endif
#endif
