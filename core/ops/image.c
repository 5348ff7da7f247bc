/* core/ops/image.c - omni_op_resize_bicubic_u8 and omni_op_normalize_image:
 * check the tensors, then run kernels/cpu/image.c (host only: image
 * preprocessing runs once per request; stages move the result to the GPU). */
#include "omni/ops.h"
#include "image.h"
#include "ops/op_check.h"

static int host_only(struct omni_error *err, const char *op, const char *arg, const struct omni_tensor *t)
{
    char b[96];
    if (t->device.type != OMNI_DEVICE_CPU)
        return omni_error_set(err, OMNI_EDEVICE, "%s: %s is %s; image ops run on the host", op, arg,
                              omni_tensor_str(t, b, sizeof b));
    return OMNI_OK;
}

#define OP_RESIZE "omni_op_resize_bicubic_u8"

int omni_op_resize_bicubic_u8(struct omni_tensor *out, const struct omni_tensor *in, struct omni_error *err)
{
    int rc;
    char a[160], b[160];
    if ((rc = omni__check_present(err, OP_RESIZE, "in", in)) ||
        (rc = omni__check_present(err, OP_RESIZE, "out", out)) ||
        (rc = omni__check_dtype(err, OP_RESIZE, "in", in, OMNI_DTYPE_U8)) ||
        (rc = omni__check_dtype(err, OP_RESIZE, "out", out, OMNI_DTYPE_U8)) ||
        (rc = host_only(err, OP_RESIZE, "in", in)) || (rc = host_only(err, OP_RESIZE, "out", out)))
        return rc;
    if ((in->ndim != 3 && in->ndim != 4) || out->ndim != in->ndim)
        return omni_error_set(err, OMNI_ESHAPE, "%s: in %s and out %s must both be (H,W,C) or (B,H,W,C)", OP_RESIZE,
                              omni_shape_str(in->ndim, in->shape, a, sizeof a),
                              omni_shape_str(out->ndim, out->shape, b, sizeof b));
    const int b0 = in->ndim == 4;
    const int64_t B = b0 ? in->shape[0] : 1, H = in->shape[b0], W = in->shape[b0 + 1], C = in->shape[b0 + 2];
    const int64_t H2 = out->shape[b0], W2 = out->shape[b0 + 1];
    if ((b0 && out->shape[0] != B) || out->shape[b0 + 2] != C)
        return omni_error_set(err, OMNI_ESHAPE, "%s: out %s must keep the batch and channels of in %s", OP_RESIZE,
                              omni_shape_str(out->ndim, out->shape, b, sizeof b),
                              omni_shape_str(in->ndim, in->shape, a, sizeof a));
    if (H < 1 || W < 1 || H2 < 1 || W2 < 1 || C < 1 || H > 0x7fffffff || W > 0x7fffffff ||
        H2 > 0x7fffffff || W2 > 0x7fffffff)
        return omni_error_set(err, OMNI_ESHAPE, "%s: cannot resize %s to %s (sizes must be 1 .. 2^31-1)",
                              OP_RESIZE, omni_shape_str(in->ndim, in->shape, a, sizeof a),
                              omni_shape_str(out->ndim, out->shape, b, sizeof b));
    if ((rc = omni__check_contiguous(err, OP_RESIZE, "in", in)) ||
        (rc = omni__check_contiguous(err, OP_RESIZE, "out", out)) ||
        (rc = omni__check_writable(err, OP_RESIZE, "out", out)))
        return rc;
    if (B == 0)
        return OMNI_OK;
    rc = omni_resize_bicubic_u8_cpu(omni_tensor_data(out), omni_tensor_data(in), B, H, W, C, H2, W2);
    if (rc)
        return omni_error_set(err, rc, "%s: out of memory for the scratch of %s -> %s", OP_RESIZE,
                              omni_shape_str(in->ndim, in->shape, a, sizeof a),
                              omni_shape_str(out->ndim, out->shape, b, sizeof b));
    return OMNI_OK;
}

#define OP_NORM "omni_op_normalize_image"

int omni_op_normalize_image(struct omni_tensor *out, const struct omni_tensor *in, const float *mean,
                            const float *std, struct omni_error *err)
{
    int rc;
    if ((rc = omni__check_present(err, OP_NORM, "in", in)) || (rc = omni__check_present(err, OP_NORM, "out", out)) ||
        (rc = omni__check_dtype(err, OP_NORM, "in", in, OMNI_DTYPE_U8)) ||
        (rc = omni__check_dtype(err, OP_NORM, "out", out, OMNI_DTYPE_F32)) ||
        (rc = host_only(err, OP_NORM, "in", in)) || (rc = host_only(err, OP_NORM, "out", out)))
        return rc;
    if (in->ndim != 4) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: in has shape %s, expected (B,H,W,C)", OP_NORM,
                              omni_shape_str(in->ndim, in->shape, a, sizeof a));
    }
    const int64_t B = in->shape[0], H = in->shape[1], W = in->shape[2], C = in->shape[3];
    const int64_t want[4] = {B, C, H, W};
    if ((rc = omni__check_shape(err, OP_NORM, "out", out, 4, want, "(B,C,H,W) of in")) ||
        (rc = omni__check_contiguous(err, OP_NORM, "in", in)) ||
        (rc = omni__check_contiguous(err, OP_NORM, "out", out)) ||
        (rc = omni__check_writable(err, OP_NORM, "out", out)))
        return rc;
    if (!mean || !std)
        return omni_error_set(err, OMNI_EINVAL, "%s: mean or std is NULL", OP_NORM);
    for (int64_t c = 0; c < C; c++)
        if (!(std[c] != 0.0f) || std[c] != std[c] || mean[c] != mean[c])
            return omni_error_set(err, OMNI_EINVAL, "%s: channel %lld has mean %g, std %g (std must be non-zero)",
                                  OP_NORM, (long long)c, (double)mean[c], (double)std[c]);
    if (B * H * W * C == 0)
        return OMNI_OK;
    omni_normalize_image_cpu(omni_tensor_data(out), omni_tensor_data(in), B, H, W, C, mean, std);
    return OMNI_OK;
}
