/* omni/ops/embed.h - see kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_EMBED_H
#define OMNI_OPS_EMBED_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Embedding gather: out[i, :] = table[ids[i], :] (converted to f32).
 *   table: (V, D) f32/f16/bf16; ids: any shape, i32 (or i64); out: (ids..., D) f32.
 *   An id outside [0, V) is OMNI_ERANGE naming the id, its index and V. */
OMNI_API int omni_op_embedding(struct omni_tensor *out, const struct omni_tensor *table,
                               const struct omni_tensor *ids, struct omni_error *err);

/* out[i, :] += table[index, :] for every row i: one row of a table (a position
 * table) added to all rows, its index read from the tensor `index` (one i32 or
 * i64 element on out's device) when the op runs - on CUDA by the kernel, so a
 * captured CUDA graph uses the index's current value.
 *   out: (M, D) f32 rows; table: (V, D) f32/f16/bf16.
 *   An index outside [0, V) is OMNI_ERANGE (on CUDA reported by the next
 *   omni_cuda_synchronize, with out unchanged). */
OMNI_API int omni_op_embedding_add(struct omni_tensor *out, const struct omni_tensor *table,
                                   const struct omni_tensor *index, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
