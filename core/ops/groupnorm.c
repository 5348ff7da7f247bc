/* core/ops/groupnorm.c - omni_op_groupnorm: checks, then dispatch to
 * kernels/cpu/groupnorm.c or kernels/cuda/groupnorm.cu; omni_op_groupnorm_coef:
 * the same statistics as per-channel coefficients (for omni_op_conv2d_fused). */
#include "omni/ops.h"
#include "groupnorm.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

#define OP "omni_op_groupnorm"
#define check_param(err, arg, t, x, C) check_param_op(OP, err, arg, t, x, C)

static int check_param_op(const char *op, struct omni_error *err, const char *arg, const struct omni_tensor *t,
                       const struct omni_tensor *x, int64_t C)
{
    int rc;
    if (!t)
        return OMNI_OK;
    if ((rc = omni__check_present(err, op, arg, t)) ||
        (rc = omni__check_dtype(err, op, arg, t, OMNI_DTYPE_F32)) ||
        (rc = omni__check_shape(err, op, arg, t, 1, &C, "C from x")) ||
        (rc = omni__check_contiguous(err, op, arg, t)) ||
        (rc = omni__check_same_device(err, op, arg, t, "x", x)))
        return rc;
    return OMNI_OK;
}

int omni_op_groupnorm(struct omni_tensor *out, const struct omni_tensor *x,
                      const struct omni_tensor *w, const struct omni_tensor *b, int groups,
                      float eps, struct omni_error *err)
{
    int rc;
    char a[96];
    if ((rc = omni__check_present(err, OP, "x", x)) ||
        (rc = omni__check_dtype(err, OP, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, OP, "x", x)) ||
        (rc = omni__check_present(err, OP, "out", out)) ||
        (rc = omni__check_dtype(err, OP, "out", out, OMNI_DTYPE_F32)) ||
        (rc = omni__check_same_shape(err, OP, "out", out, "x", x)) ||
        (rc = omni__check_contiguous(err, OP, "out", out)) ||
        (rc = omni__check_same_device(err, OP, "out", out, "x", x)) ||
        (rc = omni__check_writable(err, OP, "out", out)))
        return rc;
    if (x->ndim < 2)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, expected (B, C, S...)", OP,
                              omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    const int64_t B = x->shape[0], C = x->shape[1];
    int64_t S = 1;
    for (int i = 2; i < x->ndim; i++)
        S *= x->shape[i];
    if ((rc = check_param(err, "w", w, x, C)) || (rc = check_param(err, "b", b, x, C)))
        return rc;
    if (groups < 1 || C % groups != 0)
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: %d groups do not divide the %lld channels of x %s", OP, groups,
                              (long long)C, omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    if (!(eps >= 0.0f))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be >= 0", OP, (double)eps);
    if (B == 0 || C == 0 || S == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, OP, x->device,
                        omni_groupnorm_cuda(omni_tensor_data(out), omni_tensor_data(x),
                                            w ? omni_tensor_data(w) : NULL,
                                            b ? omni_tensor_data(b) : NULL, B, C, S, groups, eps));
    if ((rc = omni__cpu_only(err, OP, x)))
        return rc;
    omni_groupnorm_cpu(omni_tensor_data(out), omni_tensor_data(x), w ? omni_tensor_data(w) : NULL,
                       b ? omni_tensor_data(b) : NULL, B, C, S, groups, eps);
    return OMNI_OK;
}

#undef OP
#define OP "omni_op_groupnorm_coef"

int omni_op_groupnorm_coef(struct omni_tensor *coef, const struct omni_tensor *x,
                           const struct omni_tensor *w, const struct omni_tensor *b, int groups,
                           float eps, struct omni_error *err)
{
    int rc;
    char a[96];
    if ((rc = omni__check_present(err, OP, "x", x)) ||
        (rc = omni__check_dtype(err, OP, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, OP, "x", x)) ||
        (rc = omni__check_present(err, OP, "coef", coef)) ||
        (rc = omni__check_dtype(err, OP, "coef", coef, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, OP, "coef", coef)) ||
        (rc = omni__check_same_device(err, OP, "coef", coef, "x", x)) ||
        (rc = omni__check_writable(err, OP, "coef", coef)))
        return rc;
    if (x->ndim < 2)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, expected (B, C, S...)", OP,
                              omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    const int64_t B = x->shape[0], C = x->shape[1];
    int64_t S = 1;
    for (int i = 2; i < x->ndim; i++)
        S *= x->shape[i];
    const int64_t csh[3] = {B, C, 4};
    if ((rc = omni__check_shape(err, OP, "coef", coef, 3, csh, "(B, C, 4) from x")) ||
        (rc = check_param(err, "w", w, x, C)) || (rc = check_param(err, "b", b, x, C)))
        return rc;
    if (groups < 1 || C % groups != 0)
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: %d groups do not divide the %lld channels of x %s", OP, groups,
                              (long long)C, omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    if (!(eps >= 0.0f))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be >= 0", OP, (double)eps);
    if (B == 0 || C == 0)
        return OMNI_OK;
    if (S == 0)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x %s has no positions to normalise over", OP,
                              omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    OMNI__CUDA_DISPATCH(err, OP, x->device,
                        omni_groupnorm_coef_cuda(omni_tensor_data(coef), omni_tensor_data(x),
                                                 w ? omni_tensor_data(w) : NULL,
                                                 b ? omni_tensor_data(b) : NULL, B, C, S, groups,
                                                 eps));
    if ((rc = omni__cpu_only(err, OP, x)))
        return rc;
    omni_groupnorm_coef_cpu(omni_tensor_data(coef), omni_tensor_data(x),
                            w ? omni_tensor_data(w) : NULL, b ? omni_tensor_data(b) : NULL, B, C,
                            S, groups, eps);
    return OMNI_OK;
}
