/* core/ops/act.c - omni_op_silu/softplus/mul: check, then dispatch to
 * kernels/cpu/act.c (CUDA: not written yet). Contracts in
 * core/include/omni/ops/act.h. */
#include "omni/ops/act.h"

#include "act.h"
#include "cuda_impl.h"
#include "ops/op_check.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* y and x f32, same shape, both (M, D) row views; scalars count as 1x1 */
static int check_unary(struct omni_error *err, const char *op, struct omni_tensor *y,
                       const struct omni_tensor *x, const char *xn, int64_t *M, int64_t *D, int64_t *ldy,
                       int64_t *ldx)
{
    TRY(omni__check_present(err, op, "y", y));
    TRY(omni__check_present(err, op, xn, x));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, xn, x, OMNI_DTYPE_F32));
    TRY(omni__check_same_shape(err, op, "y", y, xn, x));
    TRY(omni__check_writable(err, op, "y", y));
    TRY(omni__check_same_device(err, op, "y", y, xn, x));
    if (x->ndim == 0) {
        *M = *D = *ldy = *ldx = 1;
        return OMNI_OK;
    }
    TRY(omni__rows(err, op, xn, x, 0, M, D, ldx));
    return omni__rows(err, op, "y", y, 1, M, D, ldy);
}

int omni_op_silu(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err)
{
    static const char op[] = "omni_op_silu";
    int64_t M, D, ldy, ldx;
    TRY(check_unary(err, op, y, x, "x", &M, &D, &ldy, &ldx));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_silu_cuda(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, M, D));
    TRY(omni__cpu_only(err, op, x));
    omni_silu_cpu(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, M, D);
    return OMNI_OK;
}

int omni_op_softplus(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err)
{
    static const char op[] = "omni_op_softplus";
    int64_t M, D, ldy, ldx;
    TRY(check_unary(err, op, y, x, "x", &M, &D, &ldy, &ldx));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_softplus_cuda(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, M, D));
    TRY(omni__cpu_only(err, op, x));
    omni_softplus_cpu(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, M, D);
    return OMNI_OK;
}

int omni_op_mul(struct omni_tensor *y, const struct omni_tensor *a, const struct omni_tensor *b,
                struct omni_error *err)
{
    static const char op[] = "omni_op_mul";
    int64_t M, D, ldy, lda, ldb;
    TRY(omni__check_present(err, op, "b", b));
    TRY(omni__check_dtype(err, op, "b", b, OMNI_DTYPE_F32));
    TRY(check_unary(err, op, y, a, "a", &M, &D, &ldy, &lda));
    TRY(omni__check_same_shape(err, op, "b", b, "a", a));
    TRY(omni__check_same_device(err, op, "b", b, "a", a));
    if (b->ndim == 0)
        ldb = 1;
    else
        TRY(omni__rows(err, op, "b", b, 0, &M, &D, &ldb));
    OMNI__CUDA_DISPATCH(err, op, a->device,
                        omni_mul_cuda(omni_tensor_data(y), ldy, omni_tensor_data(a), lda,
                                      omni_tensor_data(b), ldb, M, D));
    TRY(omni__cpu_only(err, op, a));
    omni_mul_cpu(omni_tensor_data(y), ldy, omni_tensor_data(a), lda, omni_tensor_data(b), ldb, M, D);
    return OMNI_OK;
}
