/* core/ops/gelu.c - omni_op_gelu / omni_op_gelu_tanh: checks, then dispatch
 * to kernels/cpu/gelu.c (no CUDA twin yet). x and y are contiguous f32 of the
 * same shape; y may alias x. */
#include "omni/ops.h"
#include "gelu.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

static int check(const char *op, struct omni_tensor *y, const struct omni_tensor *x,
                 struct omni_error *err)
{
    int rc;
    if ((rc = omni__check_present(err, op, "x", x)) ||
        (rc = omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "x", x)) ||
        (rc = omni__check_present(err, op, "y", y)) ||
        (rc = omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32)) ||
        (rc = omni__check_same_shape(err, op, "y", y, "x", x)) ||
        (rc = omni__check_contiguous(err, op, "y", y)) ||
        (rc = omni__check_same_device(err, op, "y", y, "x", x)) ||
        (rc = omni__check_writable(err, op, "y", y)))
        return rc;
    if (omni_tensor_numel(x) == 0)
        return OMNI_OK;
#ifdef OMNI_HAVE_CUDA
    if (x->device.type == OMNI_DEVICE_CUDA)
        return OMNI_OK; /* the callers dispatch */
#endif
    return omni__cpu_only(err, op, x);
}

int omni_op_gelu(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err)
{
    int rc = check("omni_op_gelu", y, x, err);
    if (rc || omni_tensor_numel(x) == 0)
        return rc;
    OMNI__CUDA_DISPATCH(err, "omni_op_gelu", x->device,
                        omni_gelu_cuda(omni_tensor_data(y), omni_tensor_data(x), omni_tensor_numel(x)));
    omni_gelu_cpu(omni_tensor_data(y), omni_tensor_data(x), omni_tensor_numel(x));
    return OMNI_OK;
}

int omni_op_gelu_tanh(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err)
{
    int rc = check("omni_op_gelu_tanh", y, x, err);
    if (rc || omni_tensor_numel(x) == 0)
        return rc;
    OMNI__CUDA_DISPATCH(err, "omni_op_gelu_tanh", x->device,
                        omni_gelu_tanh_cuda(omni_tensor_data(y), omni_tensor_data(x),
                                            omni_tensor_numel(x)));
    omni_gelu_tanh_cpu(omni_tensor_data(y), omni_tensor_data(x), omni_tensor_numel(x));
    return OMNI_OK;
}

int omni_op_bias_gelu(struct omni_tensor *y, const struct omni_tensor *x,
                      const struct omni_tensor *bias, struct omni_error *err)
{
    static const char op[] = "omni_op_bias_gelu";
    int rc;
    if ((rc = omni__check_present(err, op, "x", x)) ||
        (rc = omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "x", x)) ||
        (rc = omni__check_present(err, op, "y", y)) ||
        (rc = omni__check_float_dtype(err, op, "y", y)) ||
        (rc = omni__check_same_shape(err, op, "y", y, "x", x)) ||
        (rc = omni__check_contiguous(err, op, "y", y)) ||
        (rc = omni__check_same_device(err, op, "y", y, "x", x)) ||
        (rc = omni__check_writable(err, op, "y", y)))
        return rc;
    if (x->ndim < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x is a scalar, expected (..., N)", op);
    const int64_t N = x->shape[x->ndim - 1], n = omni_tensor_numel(x);
    if (bias && ((rc = omni__check_dtype(err, op, "bias", bias, OMNI_DTYPE_F32)) ||
                 (rc = omni__check_shape(err, op, "bias", bias, 1, &N, "N from x")) ||
                 (rc = omni__check_contiguous(err, op, "bias", bias)) ||
                 (rc = omni__check_same_device(err, op, "bias", bias, "x", x))))
        return rc;
    if (y->dtype != OMNI_DTYPE_F32 && y->buf == x->buf)
        return omni_error_set(err, OMNI_EINVAL, "%s: a 16-bit y shares x's buffer", op);
    if (n == 0)
        return OMNI_OK;
    const float *bd = bias ? omni_tensor_data(bias) : NULL;
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_bias_gelu_cuda(omni_tensor_data(y), y->dtype, omni_tensor_data(x), bd,
                                            n / N, N));
    if ((rc = omni__cpu_only(err, op, x)))
        return rc;
    omni_bias_gelu_cpu(omni_tensor_data(y), y->dtype, omni_tensor_data(x), bd, n / N, N);
    return OMNI_OK;
}
