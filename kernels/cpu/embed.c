/* kernels/cpu/embed.c - CPU reference of the embedding gather.
 *
 * out[i, :] = table[ids[i], :] converted to f32 (exact for f16/bf16 tables).
 * Layout: table (V, D) rows with a free row stride, ids (M) i32/i64, out
 * (M, D) contiguous. Ids are validated before anything is written.
 * embedding_add: out[i, :] += table[index, :] for every row i (one index). */
#include "embed.h"

#include <string.h>

#include "omni/dtype.h"

static inline int64_t id_at(const void *ids, int ids_dtype, int64_t i)
{
    return ids_dtype == OMNI_DTYPE_I64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
}

int omni_embedding_cpu(float *out, const void *table, int table_dtype, int64_t ldt,
                       const void *ids, int ids_dtype, int64_t M, int64_t V, int64_t D,
                       int64_t *bad)
{
    for (int64_t i = 0; i < M; i++) {
        int64_t id = id_at(ids, ids_dtype, i);
        if (id < 0 || id >= V) {
            *bad = i;
            return OMNI_ERANGE;
        }
    }
    for (int64_t i = 0; i < M; i++) {
        int64_t id = id_at(ids, ids_dtype, i);
        float *o = out + i * D;
        if (table_dtype == OMNI_DTYPE_F32) {
            memcpy(o, (const float *)table + id * ldt, sizeof(float) * (size_t)D);
        } else {
            const uint16_t *row = (const uint16_t *)table + id * ldt;
            for (int64_t d = 0; d < D; d++)
                o[d] = table_dtype == OMNI_DTYPE_F16 ? omni_f16_to_f32(row[d]) : omni_bf16_to_f32(row[d]);
        }
    }
    return OMNI_OK;
}

int omni_embedding_add_cpu(float *out, int64_t ldo, const void *table, int table_dtype, int64_t ldt,
                           const void *index, int index_dtype, int64_t M, int64_t V, int64_t D,
                           int64_t *bad)
{
    const int64_t id = id_at(index, index_dtype, 0);
    if (id < 0 || id >= V) {
        *bad = id;
        return OMNI_ERANGE;
    }
    for (int64_t i = 0; i < M; i++) {
        float *o = out + i * ldo;
        if (table_dtype == OMNI_DTYPE_F32) {
            const float *row = (const float *)table + id * ldt;
            for (int64_t d = 0; d < D; d++)
                o[d] += row[d];
        } else {
            const uint16_t *row = (const uint16_t *)table + id * ldt;
            for (int64_t d = 0; d < D; d++)
                o[d] += table_dtype == OMNI_DTYPE_F16 ? omni_f16_to_f32(row[d]) : omni_bf16_to_f32(row[d]);
        }
    }
    return OMNI_OK;
}
