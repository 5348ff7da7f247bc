/* kernels/cuda/embed.cu - CUDA twin of kernels/cpu/embed.c: the embedding
 * gather out[i,:] = f32(table[ids[i],:]), one thread per output element.
 *
 * Difference from the CPU twin (documented in omni/cuda.h): checking the ids
 * would need a host round trip, so the kernel checks them itself. A row whose
 * id is outside [0, V) is written as zeros and the first such (index, id, V)
 * is recorded in the device's error record; omni_cuda_synchronize reports it
 * as OMNI_ERANGE. The function therefore always returns OMNI_OK and leaves
 * *bad untouched. embedding_add (one row added to every output row, its index
 * read on the device) records a bad index the same way (index -1 in the
 * report) and adds nothing. */
#include "common.cuh"
#include "embed.h"

template <typename T, typename I>
__global__ void embed_k(float *out, const T *table, int64_t ldt, const I *ids, int64_t M, int64_t V,
                        int64_t D, struct omni__cuda_deverr *rec)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * D)
        return;
    const int64_t r = i / D, d = i % D;
    const int64_t id = (int64_t)ids[r];
    if (id < 0 || id >= V) {
        out[i] = 0.0f;
        if (d == 0 && rec && atomicCAS(&rec->code, 0, OMNI__DEVERR_EMBED_RANGE) == 0) {
            rec->a = r;
            rec->b = id;
            rec->c = V;
        }
        return;
    }
    out[i] = omni__ld(table + id * ldt + d);
}

template <typename T>
static void embed(float *out, const void *table, int64_t ldt, const void *ids, int ids_dtype,
                  int64_t M, int64_t V, int64_t D)
{
    struct omni__cuda_deverr *rec = omni__cuda_deverr();
    if (ids_dtype == OMNI_DTYPE_I64)
        OMNI_LAUNCH((embed_k<T, int64_t>), omni__blocks(M * D, 256), 256, 0, out, (const T *)table,
                    ldt, (const int64_t *)ids, M, V, D, rec);
    else
        OMNI_LAUNCH((embed_k<T, int32_t>), omni__blocks(M * D, 256), 256, 0, out, (const T *)table,
                    ldt, (const int32_t *)ids, M, V, D, rec);
}

extern "C" int omni_embedding_cuda(float *out, const void *table, int table_dtype, int64_t ldt,
                                   const void *ids, int ids_dtype, int64_t M, int64_t V, int64_t D,
                                   int64_t *bad)
{
    (void)bad;
    if (M * D == 0)
        return OMNI_OK;
    if (table_dtype == OMNI_DTYPE_F16)
        embed<__half>(out, table, ldt, ids, ids_dtype, M, V, D);
    else if (table_dtype == OMNI_DTYPE_BF16)
        embed<__nv_bfloat16>(out, table, ldt, ids, ids_dtype, M, V, D);
    else
        embed<float>(out, table, ldt, ids, ids_dtype, M, V, D);
    return OMNI_OK;
}

template <typename T, typename I>
__global__ void embed_add_k(float *out, int64_t ldo, const T *table, int64_t ldt, const I *index,
                            int64_t M, int64_t V, int64_t D, struct omni__cuda_deverr *rec)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * D)
        return;
    const int64_t r = i / D, d = i % D;
    const int64_t id = (int64_t)*index;
    if (id < 0 || id >= V) {
        if (i == 0 && rec && atomicCAS(&rec->code, 0, OMNI__DEVERR_EMBED_RANGE) == 0) {
            rec->a = -1;
            rec->b = id;
            rec->c = V;
        }
        return;
    }
    out[r * ldo + d] += omni__ld(table + id * ldt + d);
}

template <typename T>
static void embed_add(float *out, int64_t ldo, const void *table, int64_t ldt, const void *index,
                      int index_dtype, int64_t M, int64_t V, int64_t D)
{
    struct omni__cuda_deverr *rec = omni__cuda_deverr();
    if (index_dtype == OMNI_DTYPE_I64)
        OMNI_LAUNCH((embed_add_k<T, int64_t>), omni__blocks(M * D, 256), 256, 0, out, ldo,
                    (const T *)table, ldt, (const int64_t *)index, M, V, D, rec);
    else
        OMNI_LAUNCH((embed_add_k<T, int32_t>), omni__blocks(M * D, 256), 256, 0, out, ldo,
                    (const T *)table, ldt, (const int32_t *)index, M, V, D, rec);
}

extern "C" int omni_embedding_add_cuda(float *out, int64_t ldo, const void *table, int table_dtype,
                                       int64_t ldt, const void *index, int index_dtype, int64_t M,
                                       int64_t V, int64_t D, int64_t *bad)
{
    (void)bad;
    if (M * D == 0)
        return OMNI_OK;
    if (table_dtype == OMNI_DTYPE_F16)
        embed_add<__half>(out, ldo, table, ldt, index, index_dtype, M, V, D);
    else if (table_dtype == OMNI_DTYPE_BF16)
        embed_add<__nv_bfloat16>(out, ldo, table, ldt, index, index_dtype, M, V, D);
    else
        embed_add<float>(out, ldo, table, ldt, index, index_dtype, M, V, D);
    return OMNI_OK;
}
