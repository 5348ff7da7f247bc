/* omni/ops/act.h - see kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_ACT_H
#define OMNI_OPS_ACT_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Elementwise activations, f32, y may alias x; x may be a view whose last
 * dim is contiguous; y contiguous of the same shape. */
OMNI_API int omni_op_silu(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err);
/* softplus(v) = log1p(exp(v)), v for v > 20 */
OMNI_API int omni_op_softplus(struct omni_tensor *y, const struct omni_tensor *x,
                              struct omni_error *err);
/* y = a * b elementwise (same shape) */
OMNI_API int omni_op_mul(struct omni_tensor *y, const struct omni_tensor *a,
                         const struct omni_tensor *b, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
