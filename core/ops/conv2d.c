/* core/ops/conv2d.c - omni_op_conv2d, omni_op_conv2d_pad,
 * omni_op_conv2d_fused and omni_op_upsample_nearest2x: checks, then dispatch
 * to kernels/cpu/conv2d.c or kernels/cuda/conv2d.cu. */
#include <stdint.h>

#include "omni/ops.h"
#include "conv2d.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

/* x: the input the convolution sees; xmem: the tensor whose memory is read (x itself, or the
 * stored input of conv2d_fused's up2, whose view x has 4x the elements) */
static int check_conv(const char *op, struct omni_tensor *out, const struct omni_tensor *x,
                      const struct omni_tensor *xmem, const struct omni_tensor *w,
                      const struct omni_tensor *bias, int stride, const int pads[4],
                      struct omni_conv2d_geom *g, struct omni_error *err)
{
    int rc;
    char a[96], b[96];
    if ((rc = omni__check_present(err, op, "x", x)) ||
        (rc = omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "x", x)) ||
        (rc = omni__check_present(err, op, "w", w)) ||
        (rc = omni__check_float_dtype(err, op, "w", w)) ||
        (rc = omni__check_contiguous(err, op, "w", w)) ||
        (rc = omni__check_same_device(err, op, "w", w, "x", x)) ||
        (rc = omni__check_present(err, op, "out", out)) ||
        (rc = omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "out", out)) ||
        (rc = omni__check_writable(err, op, "out", out)) ||
        (rc = omni__check_same_device(err, op, "out", out, "x", x)))
        return rc;
    if (x->ndim != 4)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, expected (B, Cin, H, W)", op,
                              omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    if (w->ndim != 4)
        return omni_error_set(err, OMNI_ESHAPE, "%s: w has shape %s, expected (Cout, Cin, KH, KW)",
                              op, omni_shape_str(w->ndim, w->shape, a, sizeof(a)));
    if (w->shape[1] != x->shape[1])
        return omni_error_set(err, OMNI_ESHAPE,
                              "%s: w has shape %s but x has shape %s: Cin %lld != %lld", op,
                              omni_shape_str(w->ndim, w->shape, a, sizeof(a)),
                              omni_shape_str(x->ndim, x->shape, b, sizeof(b)),
                              (long long)w->shape[1], (long long)x->shape[1]);
    if (stride < 1)
        return omni_error_set(err, OMNI_EINVAL, "%s: stride %d must be >= 1", op, stride);
    for (int i = 0; i < 4; i++)
        if (pads[i] < 0)
            return omni_error_set(err, OMNI_EINVAL, "%s: padding %d must be >= 0", op, pads[i]);
    g->B = x->shape[0];
    g->Cin = x->shape[1];
    g->H = x->shape[2];
    g->W = x->shape[3];
    g->Cout = w->shape[0];
    g->KH = w->shape[2];
    g->KW = w->shape[3];
    g->stride = stride;
    g->pad_t = pads[0];
    g->pad_l = pads[1];
    int64_t ph = pads[0] + g->H + pads[2], pw = pads[1] + g->W + pads[3];
    if (g->KH < 1 || g->KW < 1 || ph < g->KH || pw < g->KW)
        return omni_error_set(err, OMNI_ESHAPE,
                              "%s: kernel %lldx%lld does not fit the padded input %lldx%lld "
                              "(x %s, padding t%d l%d b%d r%d)",
                              op, (long long)g->KH, (long long)g->KW, (long long)ph,
                              (long long)pw, omni_shape_str(x->ndim, x->shape, a, sizeof(a)),
                              pads[0], pads[1], pads[2], pads[3]);
    g->Ho = (ph - g->KH) / stride + 1;
    g->Wo = (pw - g->KW) / stride + 1;
    int64_t oshape[4] = {g->B, g->Cout, g->Ho, g->Wo};
    if ((rc = omni__check_shape(err, op, "out", out, 4, oshape,
                                "(B, Cout, Ho, Wo) from x, w, stride and padding")))
        return rc;
    if (bias) {
        if ((rc = omni__check_present(err, op, "bias", bias)) ||
            (rc = omni__check_float_dtype(err, op, "bias", bias)) ||
            (rc = omni__check_shape(err, op, "bias", bias, 1, &g->Cout, "Cout from w")) ||
            (rc = omni__check_contiguous(err, op, "bias", bias)) ||
            (rc = omni__check_same_device(err, op, "bias", bias, "x", x)))
            return rc;
    }
    if (omni_tensor_numel(out) > 0 && omni_tensor_numel(xmem) > 0 && out->buf == xmem->buf) {
        const char *xo = (const char *)omni_tensor_data(xmem), *oo = omni_tensor_data(out);
        if (xo < oo + omni_tensor_nbytes(out) && oo < xo + omni_tensor_nbytes(xmem))
            return omni_error_set(err, OMNI_EINVAL, "%s: out overlaps x", op);
    }
    return OMNI_OK;
}

static int conv_run(const char *op, struct omni_tensor *out, const struct omni_tensor *x,
                    const struct omni_tensor *w, const struct omni_tensor *bias, int stride,
                    const int pads[4], struct omni_error *err)
{
    struct omni_conv2d_geom g;
    int rc = check_conv(op, out, x, x, w, bias, stride, pads, &g, err);
    if (rc)
        return rc;
    if (omni_tensor_numel(out) == 0)
        return OMNI_OK;
#ifdef OMNI_HAVE_CUDA
    if (x->device.type == OMNI_DEVICE_CUDA) {
        if ((rc = omni__cuda_begin(err, op, x->device)))
            return rc;
        omni_conv2d_cuda(omni_tensor_data(out), omni_tensor_data(x), omni_tensor_data(w), w->dtype,
                         bias ? omni_tensor_data(bias) : NULL, bias ? bias->dtype : OMNI_DTYPE_F32,
                         &g);
        return omni__cuda_end(err, op);
    }
#endif
    if ((rc = omni__cpu_only(err, op, x)))
        return rc;
    rc = omni_conv2d_cpu(omni_tensor_data(out), omni_tensor_data(x), omni_tensor_data(w),
                         w->dtype, bias ? omni_tensor_data(bias) : NULL,
                         bias ? bias->dtype : OMNI_DTYPE_F32, &g);
    if (rc)
        return omni_error_set(err, rc, "%s: cannot allocate %zu bytes of per-thread scratch", op,
                              omni_conv2d_cpu_scratch_bytes(&g));
    return OMNI_OK;
}

int omni_op_conv2d(struct omni_tensor *out, const struct omni_tensor *x,
                   const struct omni_tensor *w, const struct omni_tensor *bias, int stride,
                   int pad, struct omni_error *err)
{
    const int pads[4] = {pad, pad, pad, pad};
    return conv_run("omni_op_conv2d", out, x, w, bias, stride, pads, err);
}

int omni_op_conv2d_pad(struct omni_tensor *out, const struct omni_tensor *x,
                       const struct omni_tensor *w, const struct omni_tensor *bias, int stride,
                       int pad_top, int pad_left, int pad_bottom, int pad_right,
                       struct omni_error *err)
{
    const int pads[4] = {pad_top, pad_left, pad_bottom, pad_right};
    return conv_run("omni_op_conv2d_pad", out, x, w, bias, stride, pads, err);
}

int omni_op_conv2d_fused(struct omni_tensor *out, const struct omni_tensor *x,
                         const struct omni_tensor *w, const struct omni_tensor *bias, int pad,
                         const struct omni_tensor *coef, int silu, int up2,
                         const struct omni_tensor *residual, struct omni_error *err)
{
    static const char op[] = "omni_op_conv2d_fused";
    const int pads[4] = {pad, pad, pad, pad};
    struct omni_conv2d_geom g;
    struct omni_tensor xv;
    char a[96];
    int rc;
    if ((rc = omni__check_present(err, op, "x", x)) ||
        (rc = omni__check_contiguous(err, op, "x", x)))
        return rc;
    if (x->ndim != 4)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, expected (B, Cin, H, W)", op,
                              omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    xv = *x; /* the input the convolution sees: (B, Cin, 2H, 2W) when up2 */
    if (up2) {
        xv.shape[2] *= 2;
        xv.shape[3] *= 2;
        omni_tensor_set_contiguous(&xv);
    }
    if ((rc = check_conv(op, out, &xv, x, w, bias, 1, pads, &g, err)))
        return rc;
    if (coef) {
        const int64_t csh[3] = {g.B, g.Cin, 4};
        if ((rc = omni__check_present(err, op, "coef", coef)) ||
            (rc = omni__check_dtype(err, op, "coef", coef, OMNI_DTYPE_F32)) ||
            (rc = omni__check_shape(err, op, "coef", coef, 3, csh, "(B, Cin, 4) from x")) ||
            (rc = omni__check_contiguous(err, op, "coef", coef)) ||
            (rc = omni__check_same_device(err, op, "coef", coef, "x", x)))
            return rc;
        /* the CUDA kernels read a channel's 4 coefficients as one float4 */
        if (x->device.type == OMNI_DEVICE_CUDA && ((uintptr_t)omni_tensor_data(coef) & 15))
            return omni_error_set(err, OMNI_EINVAL,
                                  "%s: coef must start on a 16-byte boundary on CUDA (byte offset "
                                  "%lld in its buffer)",
                                  op, (long long)coef->offset);
    }
    if (residual) {
        if ((rc = omni__check_present(err, op, "residual", residual)) ||
            (rc = omni__check_dtype(err, op, "residual", residual, OMNI_DTYPE_F32)) ||
            (rc = omni__check_same_shape(err, op, "residual", residual, "out", out)) ||
            (rc = omni__check_contiguous(err, op, "residual", residual)) ||
            (rc = omni__check_same_device(err, op, "residual", residual, "x", x)))
            return rc;
        /* the residual may be out itself, not a shifted view of it */
        if (residual->buf == out->buf && residual->offset != out->offset) {
            const char *ro = omni_tensor_data(residual), *oo = omni_tensor_data(out);
            if (ro < oo + omni_tensor_nbytes(out) && oo < ro + omni_tensor_nbytes(residual))
                return omni_error_set(err, OMNI_EINVAL,
                                      "%s: residual overlaps out without being out", op);
        }
    }
    if (omni_tensor_numel(out) == 0)
        return OMNI_OK;
    const struct omni_conv2d_fuse f = {
        .coef = coef ? omni_tensor_data(coef) : NULL, .silu = silu != 0, .up2 = up2 != 0,
        .residual = residual ? omni_tensor_data(residual) : NULL};
    const void *bp = bias ? omni_tensor_data(bias) : NULL;
    const int bdt = bias ? bias->dtype : OMNI_DTYPE_F32;
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_conv2d_fused_cuda(omni_tensor_data(out), omni_tensor_data(x),
                                               omni_tensor_data(w), w->dtype, bp, bdt, &g, &f));
    if ((rc = omni__cpu_only(err, op, x)))
        return rc;
    rc = omni_conv2d_fused_cpu(omni_tensor_data(out), omni_tensor_data(x), omni_tensor_data(w),
                               w->dtype, bp, bdt, &g, &f);
    if (rc)
        return omni_error_set(err, rc, "%s: cannot allocate the transformed input (%zu bytes) "
                              "or the per-thread scratch", op,
                              (size_t)(g.B * g.Cin * g.H * g.W) * sizeof(float));
    return OMNI_OK;
}

int omni_op_upsample_nearest2x(struct omni_tensor *out, const struct omni_tensor *x,
                               struct omni_error *err)
{
    static const char op[] = "omni_op_upsample_nearest2x";
    int rc;
    char a[96];
    if ((rc = omni__check_present(err, op, "x", x)) ||
        (rc = omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "x", x)) ||
        (rc = omni__check_present(err, op, "out", out)) ||
        (rc = omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32)) ||
        (rc = omni__check_contiguous(err, op, "out", out)) ||
        (rc = omni__check_writable(err, op, "out", out)) ||
        (rc = omni__check_same_device(err, op, "out", out, "x", x)))
        return rc;
    if (x->ndim != 4)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, expected (B, C, H, W)", op,
                              omni_shape_str(x->ndim, x->shape, a, sizeof(a)));
    int64_t oshape[4] = {x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]};
    if ((rc = omni__check_shape(err, op, "out", out, 4, oshape, "(B, C, 2H, 2W) from x")))
        return rc;
    if (omni_tensor_numel(x) == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_upsample_nearest2x_cuda(omni_tensor_data(out), omni_tensor_data(x),
                                                     x->shape[0] * x->shape[1], x->shape[2],
                                                     x->shape[3]));
    if ((rc = omni__cpu_only(err, op, x)))
        return rc;
    omni_upsample_nearest2x_cpu(omni_tensor_data(out), omni_tensor_data(x),
                                x->shape[0] * x->shape[1], x->shape[2], x->shape[3]);
    return OMNI_OK;
}
