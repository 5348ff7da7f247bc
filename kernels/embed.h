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

#ifdef OMNI_HAVE_CUDA
int omni_embedding_cuda(float *out, const void *table, int table_dtype, int64_t ldt,
                        const void *ids, int ids_dtype, int64_t M, int64_t V, int64_t D,
                        int64_t *bad);
#endif

#ifdef __cplusplus
}
#endif
#endif
