/* core/ops/vq.c - omni_op_l2_normalize and omni_op_vq_nearest: checks, then
 * dispatch to kernels/cpu/vq.c (no CUDA twin yet). */
#include "omni/ops.h"
#include "omni/ops/vq.h"
#include "vq.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

int omni_op_l2_normalize(struct omni_tensor *out, const struct omni_tensor *x, float eps,
                         struct omni_error *err)
{
    static const char op[] = "omni_op_l2_normalize";
    int rc;
    if ((rc = omni__check_present(err, op, "x", x)) ||
        (rc = omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "x", x)) ||
        (rc = omni__check_present(err, op, "out", out)) ||
        (rc = omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32)) ||
        (rc = omni__check_same_shape(err, op, "out", out, "x", x)) ||
        (rc = omni__check_contiguous(err, op, "out", out)) ||
        (rc = omni__check_writable(err, op, "out", out)) ||
        (rc = omni__check_same_device(err, op, "out", out, "x", x)))
        return rc;
    if (x->ndim < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x is a scalar, expected (..., D)", op);
    if (!(eps >= 0.0f))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be >= 0", op, (double)eps);
    const int64_t D = x->shape[x->ndim - 1];
    if (omni_tensor_numel(x) == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_l2_normalize_cuda(omni_tensor_data(out), omni_tensor_data(x),
                                               omni_tensor_numel(x) / D, D, eps));
    if ((rc = omni__cpu_only(err, op, x)))
        return rc;
    omni_l2_normalize_cpu(omni_tensor_data(out), omni_tensor_data(x), omni_tensor_numel(x) / D, D,
                          eps);
    return OMNI_OK;
}

int omni_op_vq_nearest(struct omni_tensor *ids, const struct omni_tensor *z,
                       const struct omni_tensor *codebook, struct omni_error *err)
{
    static const char op[] = "omni_op_vq_nearest";
    int rc;
    char a[96], b[96];
    if ((rc = omni__check_present(err, op, "z", z)) ||
        (rc = omni__check_dtype(err, op, "z", z, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "z", z)) ||
        (rc = omni__check_present(err, op, "codebook", codebook)) ||
        (rc = omni__check_dtype(err, op, "codebook", codebook, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "codebook", codebook)) ||
        (rc = omni__check_same_device(err, op, "codebook", codebook, "z", z)) ||
        (rc = omni__check_present(err, op, "ids", ids)) ||
        (rc = omni__check_dtype(err, op, "ids", ids, OMNI_DTYPE_I32)) ||
        (rc = omni__check_contiguous(err, op, "ids", ids)) ||
        (rc = omni__check_writable(err, op, "ids", ids)) ||
        (rc = omni__check_same_device(err, op, "ids", ids, "z", z)))
        return rc;
    if (z->ndim < 1 || codebook->ndim != 2 || codebook->shape[1] != z->shape[z->ndim - 1])
        return omni_error_set(err, OMNI_ESHAPE,
                              "%s: z has shape %s and codebook %s, expected (..., D) and (V, D)",
                              op, omni_shape_str(z->ndim, z->shape, a, sizeof(a)),
                              omni_shape_str(codebook->ndim, codebook->shape, b, sizeof(b)));
    const int64_t D = codebook->shape[1], V = codebook->shape[0];
    const int64_t N = D ? omni_tensor_numel(z) / D : 0;
    if (omni_tensor_numel(ids) != N)
        return omni_error_set(err, OMNI_ESHAPE, "%s: ids has shape %s, expected %lld elements (rows of z %s)",
                              op, omni_shape_str(ids->ndim, ids->shape, a, sizeof(a)), (long long)N,
                              omni_shape_str(z->ndim, z->shape, b, sizeof(b)));
    if (N > 0 && V == 0)
        return omni_error_set(err, OMNI_ESHAPE, "%s: the codebook is empty", op);
    if (N == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, op, z->device,
                        omni_vq_nearest_cuda(omni_tensor_data(ids), omni_tensor_data(z),
                                             omni_tensor_data(codebook), N, V, D));
    if ((rc = omni__cpu_only(err, op, z)))
        return rc;
    if ((rc = omni_vq_nearest_cpu(omni_tensor_data(ids), omni_tensor_data(z),
                                  omni_tensor_data(codebook), N, V, D)))
        return omni_error_set(err, rc, "%s: cannot allocate %lld floats of scratch", op, (long long)V);
    return OMNI_OK;
}
