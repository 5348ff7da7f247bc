/* core/ops/layernorm.c - omni_op_layernorm(_ex): checks, then dispatch to
 * kernels/cpu/layernorm.c or the CUDA twin. */
#include "omni/ops.h"
#include "layernorm.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

#define OP "omni_op_layernorm"

static int check_param(struct omni_error *err, const char *op, const char *arg, const struct omni_tensor *t,
                       const struct omni_tensor *x, int64_t D)
{
    int rc;
    if (!t)
        return OMNI_OK;
    if ((rc = omni__check_present(err, op, arg, t)) ||
        (rc = omni__check_dtype(err, op, arg, t, OMNI_DTYPE_F32)) ||
        (rc = omni__check_shape(err, op, arg, t, 1, &D, "D from x")) ||
        (rc = omni__check_contiguous(err, op, arg, t)) ||
        (rc = omni__check_same_device(err, op, arg, t, "x", x)))
        return rc;
    return OMNI_OK;
}

int omni_op_layernorm(struct omni_tensor *out, const struct omni_tensor *x,
                      const struct omni_tensor *w, const struct omni_tensor *b, float eps,
                      struct omni_error *err)
{
    int rc;
    int64_t M, D, ldx, Mo, Do, ldo;
    if ((rc = omni__check_present(err, OP, "x", x)) ||
        (rc = omni__check_dtype(err, OP, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_present(err, OP, "out", out)) ||
        (rc = omni__check_dtype(err, OP, "out", out, OMNI_DTYPE_F32)) ||
        (rc = omni__check_same_shape(err, OP, "out", out, "x", x)) ||
        (rc = omni__check_same_device(err, OP, "out", out, "x", x)) ||
        (rc = omni__check_writable(err, OP, "out", out)))
        return rc;
    if (x->ndim < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x is a scalar, expected (..., D)", OP);
    if ((rc = omni__rows(err, OP, "x", x, 0, &M, &D, &ldx)) ||
        (rc = omni__rows(err, OP, "out", out, 1, &Mo, &Do, &ldo)) ||
        (rc = check_param(err, OP, "w", w, x, D)) || (rc = check_param(err, OP, "b", b, x, D)))
        return rc;
    if (!(eps >= 0.0f))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be >= 0", OP, (double)eps);
    if (M == 0 || D == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, OP, x->device,
                        omni_layernorm_cuda(omni_tensor_data(out), ldo, omni_tensor_data(x), ldx,
                                            w ? omni_tensor_data(w) : NULL,
                                            b ? omni_tensor_data(b) : NULL, M, D, eps));
    if ((rc = omni__cpu_only(err, OP, x)))
        return rc;
    omni_layernorm_cpu(omni_tensor_data(out), ldo, omni_tensor_data(x), ldx,
                       w ? omni_tensor_data(w) : NULL, b ? omni_tensor_data(b) : NULL, M, D, eps);
    return OMNI_OK;
}

#undef OP
#define OP "omni_op_layernorm_ex"

int omni_op_layernorm_ex(struct omni_tensor *out, struct omni_tensor *x,
                         const struct omni_tensor *w, const struct omni_tensor *b, float eps,
                         const struct omni_tensor *x_add, struct omni_error *err)
{
    int rc;
    int64_t M, D, ldx, Mo, Do, ldo;
    if ((rc = omni__check_present(err, OP, "x", x)) ||
        (rc = omni__check_dtype(err, OP, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_present(err, OP, "out", out)) ||
        (rc = omni__check_float_dtype(err, OP, "out", out)) ||
        (rc = omni__check_same_shape(err, OP, "out", out, "x", x)) ||
        (rc = omni__check_same_device(err, OP, "out", out, "x", x)) ||
        (rc = omni__check_writable(err, OP, "out", out)) ||
        (x_add && (rc = omni__check_writable(err, OP, "x", x))))
        return rc;
    if (x->ndim < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x is a scalar, expected (..., D)", OP);
    if ((rc = omni__rows(err, OP, "x", x, 1, &M, &D, &ldx)) ||
        (rc = omni__rows(err, OP, "out", out, 1, &Mo, &Do, &ldo)) ||
        (rc = check_param(err, OP, "w", w, x, D)) || (rc = check_param(err, OP, "b", b, x, D)) ||
        (rc = check_param(err, OP, "x_add", x_add, x, D)))
        return rc;
    if (x_add && out->buf == x->buf)
        return omni_error_set(err, OMNI_EINVAL, "%s: out shares x's buffer while x_add updates x",
                              OP);
    /* in place only as out == x (f32, same rows): a 16-bit or shifted out would overwrite rows
     * of x that other CUDA blocks have not read yet */
    if (omni__overlap(out, x) &&
        (out->dtype != OMNI_DTYPE_F32 || omni_tensor_data(out) != omni_tensor_data(x) ||
         (M > 1 && ldo != ldx)))
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: out overlaps x without being x itself (f32, same rows)", OP);
    if (!(eps >= 0.0f))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be >= 0", OP, (double)eps);
    if (M == 0 || D == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, OP, x->device,
                        omni_layernorm_ex_cuda(omni_tensor_data(out), out->dtype, ldo,
                                               omni_tensor_data(x), ldx,
                                               w ? omni_tensor_data(w) : NULL,
                                               b ? omni_tensor_data(b) : NULL,
                                               x_add ? omni_tensor_data(x_add) : NULL, M, D, eps));
    if ((rc = omni__cpu_only(err, OP, x)))
        return rc;
    omni_layernorm_ex_cpu(omni_tensor_data(out), out->dtype, ldo, omni_tensor_data(x), ldx,
                          w ? omni_tensor_data(w) : NULL, b ? omni_tensor_data(b) : NULL,
                          x_add ? omni_tensor_data(x_add) : NULL, M, D, eps);
    return OMNI_OK;
}
