/* kernels/embed.h - embedding gather. Raw-pointer twin of
 * core/include/omni/ops/embed.h. Glossary: kernels/README.md. */
#ifndef OMNI_KERNELS_EMBED_H
#define OMNI_KERNELS_EMBED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i,:] = f32(table[ids[i],:]) for i < M. Every id is checked first; on an
 * id outside [0, V) nothing is written, *bad = i of the first such id and the
 * return is OMNI_ERANGE (else OMNI_OK).
 *   out: (M,D) f32 contiguous
 *   table: (V,D) f32/f16/bf16 (table_dtype), row stride ldt
 *   ids: (M) i32 or i64 (ids_dtype), contiguous */
int omni_embedding_cpu(float *out, const void *table, int table_dtype, int64_t ldt,
                       const void *ids, int ids_dtype, int64_t M, int64_t V, int64_t D,
                       int64_t *bad);

/* out[i,:] += f32(table[index[0],:]) for i < M: one table row, chosen by an
 * index that is read where it lives (on the device for CUDA, so a captured
 * CUDA graph picks up the current value). An index outside [0, V) writes
 * nothing, sets *bad = the index and returns OMNI_ERANGE.
 *   out: (M,D) f32, row stride ldo
 *   table: (V,D) f32/f16/bf16 (table_dtype), row stride ldt
 *   index: one i32 or i64 (index_dtype) */
int omni_embedding_add_cpu(float *out, int64_t ldo, const void *table, int table_dtype, int64_t ldt,
                           const void *index, int index_dtype, int64_t M, int64_t V, int64_t D,
                           int64_t *bad);

#ifdef OMNI_HAVE_CUDA
int omni_embedding_add_cuda(float *out, int64_t ldo, const void *table, int table_dtype,
                            int64_t ldt, const void *index, int index_dtype, int64_t M, int64_t V,
                            int64_t D, int64_t *bad);
int omni_embedding_cuda(float *out, const void *table, int table_dtype, int64_t ldt,
                        const void *ids, int ids_dtype, int64_t M, int64_t V, int64_t D,
                        int64_t *bad);
#endif

#ifdef __cplusplus
}
#endif
#endif
