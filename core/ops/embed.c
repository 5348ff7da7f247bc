/* core/ops/embed.c - omni_op_embedding and omni_op_embedding_add: check, then
 * dispatch to kernels/cpu/embed.c or kernels/cuda/embed.cu. Contracts in
 * core/include/omni/ops/embed.h. */
#include "omni/ops/embed.h"

#include "embed.h"
#include "cuda_impl.h"
#include "ops/op_check.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

int omni_op_embedding(struct omni_tensor *out, const struct omni_tensor *table,
                      const struct omni_tensor *ids, struct omni_error *err)
{
    static const char op[] = "omni_op_embedding";
    TRY(omni__check_present(err, op, "out", out));
    TRY(omni__check_present(err, op, "table", table));
    TRY(omni__check_present(err, op, "ids", ids));
    TRY(omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32));
    TRY(omni__check_float_dtype(err, op, "table", table));
    if (ids->dtype != OMNI_DTYPE_I32 && ids->dtype != OMNI_DTYPE_I64)
        return omni_error_set(err, OMNI_EDTYPE, "%s: ids has dtype %s, expected i32 or i64", op,
                              omni_dtype_name(ids->dtype));
    if (table->ndim != 2) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: table has shape %s, expected 2 dims (V,D)", op,
                              omni_shape_str(table->ndim, table->shape, a, sizeof a));
    }
    int64_t V, D, ldt;
    TRY(omni__rows(err, op, "table", table, 0, &V, &D, &ldt));
    TRY(omni__check_contiguous(err, op, "ids", ids));
    if (ids->ndim + 1 > OMNI_MAX_DIMS)
        return omni_error_set(err, OMNI_ESHAPE, "%s: ids has %d dims; out would exceed %d", op,
                              (int)ids->ndim, OMNI_MAX_DIMS);
    int64_t want[OMNI_MAX_DIMS];
    for (int i = 0; i < ids->ndim; i++)
        want[i] = ids->shape[i];
    want[ids->ndim] = D;
    TRY(omni__check_shape(err, op, "out", out, ids->ndim + 1, want, "ids shape + D of table"));
    TRY(omni__check_contiguous(err, op, "out", out));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "table", table, "out", out));
    TRY(omni__check_same_device(err, op, "ids", ids, "out", out));
    int64_t M = omni_tensor_numel(ids), bad = -1;
    /* CUDA: bad ids are reported by the next omni_cuda_synchronize (omni/cuda.h) */
    OMNI__CUDA_DISPATCH(err, op, out->device,
                        omni_embedding_cuda(omni_tensor_data(out), omni_tensor_data(table),
                                            table->dtype, ldt, omni_tensor_data(ids), ids->dtype, M,
                                            V, D, &bad));
    TRY(omni__cpu_only(err, op, out));
    if (omni_embedding_cpu(omni_tensor_data(out), omni_tensor_data(table), table->dtype, ldt,
                           omni_tensor_data(ids), ids->dtype, M, V, D, &bad)) {
        const void *p = omni_tensor_data(ids);
        long long id = ids->dtype == OMNI_DTYPE_I64 ? (long long)((const int64_t *)p)[bad]
                                                     : (long long)((const int32_t *)p)[bad];
        char a[160];
        return omni_error_set(err, OMNI_ERANGE, "%s: id %lld at index %lld of ids is outside [0, V=%lld) of table %s",
                              op, id, (long long)bad, (long long)V,
                              omni_shape_str(table->ndim, table->shape, a, sizeof a));
    }
    return OMNI_OK;
}

int omni_op_embedding_add(struct omni_tensor *out, const struct omni_tensor *table,
                          const struct omni_tensor *index, struct omni_error *err)
{
    static const char op[] = "omni_op_embedding_add";
    TRY(omni__check_present(err, op, "out", out));
    TRY(omni__check_present(err, op, "table", table));
    TRY(omni__check_present(err, op, "index", index));
    TRY(omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32));
    TRY(omni__check_float_dtype(err, op, "table", table));
    if (index->dtype != OMNI_DTYPE_I32 && index->dtype != OMNI_DTYPE_I64)
        return omni_error_set(err, OMNI_EDTYPE, "%s: index has dtype %s, expected i32 or i64", op,
                              omni_dtype_name(index->dtype));
    if (omni_tensor_numel(index) != 1) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: index has shape %s, expected one element", op,
                              omni_shape_str(index->ndim, index->shape, a, sizeof a));
    }
    if (table->ndim != 2) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: table has shape %s, expected 2 dims (V,D)", op,
                              omni_shape_str(table->ndim, table->shape, a, sizeof a));
    }
    int64_t V, D, ldt, M, Do, ldo;
    TRY(omni__rows(err, op, "table", table, 0, &V, &D, &ldt));
    TRY(omni__rows(err, op, "out", out, 1, &M, &Do, &ldo));
    if (Do != D) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: out %s and table %s differ in the last dim", op,
                              omni_shape_str(out->ndim, out->shape, a, sizeof a),
                              omni_shape_str(table->ndim, table->shape, b, sizeof b));
    }
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "table", table, "out", out));
    TRY(omni__check_same_device(err, op, "index", index, "out", out));
    int64_t bad = 0;
    OMNI__CUDA_DISPATCH(err, op, out->device,
                        omni_embedding_add_cuda(omni_tensor_data(out), ldo, omni_tensor_data(table),
                                                table->dtype, ldt, omni_tensor_data(index),
                                                index->dtype, M, V, D, &bad));
    TRY(omni__cpu_only(err, op, out));
    if (omni_embedding_add_cpu(omni_tensor_data(out), ldo, omni_tensor_data(table), table->dtype, ldt,
                               omni_tensor_data(index), index->dtype, M, V, D, &bad)) {
        char a[160];
        return omni_error_set(err, OMNI_ERANGE, "%s: index %lld is outside [0, V=%lld) of table %s", op,
                              (long long)bad, (long long)V,
                              omni_shape_str(table->ndim, table->shape, a, sizeof a));
    }
    return OMNI_OK;
}
