/* omni/ops/vq.h - vector-quantiser ops (LlamaGen VQ tokenizer). See
 * kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_VQ_H
#define OMNI_OPS_VQ_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Row-wise L2 normalisation, PyTorch F.normalize(x, p=2, dim=-1, eps):
 *   out[r, :] = x[r, :] / max(||x[r, :]||_2, eps)   (a zero row stays zero)
 *   x, out: (..., D) f32 contiguous, same shape; out may alias x. */
OMNI_API int omni_op_l2_normalize(struct omni_tensor *out, const struct omni_tensor *x, float eps,
                                  struct omni_error *err);

/* Nearest codebook row by squared L2 distance, in f32 as LlamaGen evaluates it:
 *   d[n, v] = (sum_k z[n, k]^2 + sum_k e[v, k]^2) - 2 * sum_k z[n, k] * e[v, k]
 *   ids[n]  = argmin_v d[n, v]   (the lowest v among equal minima)
 *   z: (..., D) f32 contiguous, N = numel / D rows; codebook: (V, D) f32
 *   contiguous; ids: i32 contiguous with N elements (any shape). */
OMNI_API int omni_op_vq_nearest(struct omni_tensor *ids, const struct omni_tensor *z,
                                const struct omni_tensor *codebook, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
