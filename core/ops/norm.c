/* core/ops/norm.c - omni_op_rmsnorm/add_rmsnorm/gated_rmsnorm: check, then
 * dispatch to kernels/cpu/norm.c (CUDA: not written yet). Contracts in
 * core/include/omni/ops/norm.h. */
#include "omni/ops/norm.h"

#include <math.h>

#include "norm.h"
#include "cuda_impl.h"
#include "ops/op_check.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static int check_f32(struct omni_error *err, const char *op, const char *arg,
                     const struct omni_tensor *t)
{
    TRY(omni__check_present(err, op, arg, t));
    return omni__check_dtype(err, op, arg, t, OMNI_DTYPE_F32);
}

static int check_eps(struct omni_error *err, const char *op, float eps)
{
    if (!(eps >= 0.0f) || isinf(eps))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be finite and >= 0", op, (double)eps);
    return OMNI_OK;
}

/* w: (D) f32 contiguous on the device of ref */
static int check_weight(struct omni_error *err, const char *op, const struct omni_tensor *w,
                        int64_t D, const char *ref_arg, const struct omni_tensor *ref)
{
    TRY(check_f32(err, op, "w", w));
    TRY(omni__check_shape(err, op, "w", w, 1, &D, "the last dim"));
    TRY(omni__check_contiguous(err, op, "w", w));
    return omni__check_same_device(err, op, "w", w, ref_arg, ref);
}

int omni_op_rmsnorm(struct omni_tensor *out, const struct omni_tensor *x,
                    const struct omni_tensor *w, float eps, struct omni_error *err)
{
    static const char op[] = "omni_op_rmsnorm";
    TRY(check_f32(err, op, "out", out));
    TRY(check_f32(err, op, "x", x));
    TRY(omni__check_same_shape(err, op, "out", out, "x", x));
    int64_t M, D, ldx, ldo;
    TRY(omni__rows(err, op, "x", x, 0, &M, &D, &ldx));
    TRY(omni__rows(err, op, "out", out, 1, &M, &D, &ldo));
    TRY(check_weight(err, op, w, D, "x", x));
    TRY(check_eps(err, op, eps));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "out", out, "x", x));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_rmsnorm_cuda(omni_tensor_data(out), ldo, omni_tensor_data(x), ldx,
                                          omni_tensor_data(w), M, D, eps));
    TRY(omni__cpu_only(err, op, x));
    omni_rmsnorm_cpu(omni_tensor_data(out), ldo, omni_tensor_data(x), ldx, omni_tensor_data(w), M,
                     D, eps);
    return OMNI_OK;
}

int omni_op_add_rmsnorm(struct omni_tensor *out, struct omni_tensor *residual,
                        const struct omni_tensor *x, const struct omni_tensor *w, float eps,
                        struct omni_error *err)
{
    static const char op[] = "omni_op_add_rmsnorm";
    TRY(check_f32(err, op, "out", out));
    TRY(check_f32(err, op, "residual", residual));
    TRY(omni__check_same_shape(err, op, "out", out, "residual", residual));
    int64_t M, D, ldr, ldo, ldx = 0;
    TRY(omni__rows(err, op, "residual", residual, 1, &M, &D, &ldr));
    TRY(omni__rows(err, op, "out", out, 1, &M, &D, &ldo));
    if (x) {
        TRY(check_f32(err, op, "x", x));
        TRY(omni__check_same_shape(err, op, "x", x, "residual", residual));
        TRY(omni__rows(err, op, "x", x, 0, &M, &D, &ldx));
        TRY(omni__check_same_device(err, op, "x", x, "residual", residual));
    }
    TRY(check_weight(err, op, w, D, "residual", residual));
    TRY(check_eps(err, op, eps));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_writable(err, op, "residual", residual));
    TRY(omni__check_same_device(err, op, "out", out, "residual", residual));
    if (omni_tensor_numel(out) > 0 && omni_tensor_data(out) == omni_tensor_data(residual))
        return omni_error_set(err, OMNI_EINVAL, "%s: out and residual must not be the same memory", op);
    OMNI__CUDA_DISPATCH(err, op, residual->device,
                        omni_add_rmsnorm_cuda(omni_tensor_data(out), ldo, omni_tensor_data(residual),
                                              ldr, x ? omni_tensor_data(x) : NULL, ldx,
                                              omni_tensor_data(w), M, D, eps));
    TRY(omni__cpu_only(err, op, residual));
    omni_add_rmsnorm_cpu(omni_tensor_data(out), ldo, omni_tensor_data(residual), ldr,
                         x ? omni_tensor_data(x) : NULL, ldx, omni_tensor_data(w), M, D, eps);
    return OMNI_OK;
}

int omni_op_gated_rmsnorm(struct omni_tensor *out, const struct omni_tensor *y,
                          const struct omni_tensor *z, const struct omni_tensor *w, float eps,
                          int64_t group_size, struct omni_error *err)
{
    static const char op[] = "omni_op_gated_rmsnorm";
    TRY(check_f32(err, op, "out", out));
    TRY(check_f32(err, op, "y", y));
    TRY(check_f32(err, op, "z", z));
    TRY(omni__check_same_shape(err, op, "z", z, "y", y));
    TRY(omni__check_same_shape(err, op, "out", out, "y", y));
    int64_t M, E, ldy, ldz, ldo;
    TRY(omni__rows(err, op, "y", y, 0, &M, &E, &ldy));
    TRY(omni__rows(err, op, "z", z, 0, &M, &E, &ldz));
    TRY(omni__rows(err, op, "out", out, 1, &M, &E, &ldo));
    TRY(check_weight(err, op, w, E, "y", y));
    if (group_size <= 0 || E % group_size != 0)
        return omni_error_set(err, OMNI_EINVAL, "%s: group_size %lld does not divide E=%lld of y",
                              op, (long long)group_size, (long long)E);
    TRY(check_eps(err, op, eps));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "z", z, "y", y));
    TRY(omni__check_same_device(err, op, "out", out, "y", y));
    OMNI__CUDA_DISPATCH(err, op, y->device,
                        omni_gated_rmsnorm_cuda(omni_tensor_data(out), ldo, omni_tensor_data(y), ldy,
                                                omni_tensor_data(z), ldz, omni_tensor_data(w), M, E,
                                                group_size, eps));
    TRY(omni__cpu_only(err, op, y));
    omni_gated_rmsnorm_cpu(omni_tensor_data(out), ldo, omni_tensor_data(y), ldy,
                           omni_tensor_data(z), ldz, omni_tensor_data(w), M, E, group_size, eps);
    return OMNI_OK;
}
