/* omni/ops/norm.h - see kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_NORM_H
#define OMNI_OPS_NORM_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RMSNorm over the last dim D: out = x * rsqrt(mean(x^2) + eps) * w.
 *   x: (..., D) f32, w: (D) f32, out: (..., D) f32 (may alias x). */
OMNI_API int omni_op_rmsnorm(struct omni_tensor *out, const struct omni_tensor *x,
                             const struct omni_tensor *w, float eps, struct omni_error *err);

/* Fused residual add + RMSNorm (Mamba block prenorm, residual kept in f32):
 *   residual += x   (x == NULL: residual already holds the sum, e.g. layer 0
 *                    where the caller copied the embedding into it)
 *   out = rmsnorm(residual; w, eps)
 *   residual, out: (M, D) f32; x: (M, D) f32 or NULL. */
OMNI_API int omni_op_add_rmsnorm(struct omni_tensor *out, struct omni_tensor *residual,
                                 const struct omni_tensor *x, const struct omni_tensor *w,
                                 float eps, struct omni_error *err);

/* Gated RMSNorm, gate before norm (Mamba-2, norm_before_gate=False):
 *   g = y * silu(z); out = g * rsqrt(mean_group(g^2) + eps) * w
 *   y, z: (M, E) f32, last dim contiguous (may be strided views, e.g. z
 *   inside zxbcdt); w: (E); out: (M, E) contiguous; group_size divides E. */
OMNI_API int omni_op_gated_rmsnorm(struct omni_tensor *out, const struct omni_tensor *y,
                                   const struct omni_tensor *z, const struct omni_tensor *w,
                                   float eps, int64_t group_size, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
