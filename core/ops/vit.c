/* core/ops/vit.c - omni_op_patch_embed, omni_op_concat_last and
 * omni_op_resize_bicubic_aa: checks, then kernels/cpu/vit.c (+ omni_op_linear
 * for the patch embedding) or the CUDA twins; omni_op_matmul16. */
#include <stdio.h>

#include "omni/ops.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"
#include "vit.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static int check_rank(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int ndim, const char *dims)
{
    if (t->ndim != ndim) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: %s has shape %s, expected rank %d %s", op,
                              arg, omni_shape_str(t->ndim, t->shape, a, sizeof a), ndim, dims);
    }
    return OMNI_OK;
}

int omni_op_patch_embed(struct omni_tensor *out, const struct omni_tensor *x,
                        const struct omni_tensor *w, const struct omni_tensor *bias,
                        struct omni_error *err)
{
    static const char op[] = "omni_op_patch_embed";
    TRY(omni__check_present(err, op, "x", x));
    TRY(omni__check_present(err, op, "w", w));
    TRY(omni__check_present(err, op, "out", out));
    TRY(omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32));
    TRY(check_rank(err, op, "x", x, 4, "(B,C,H,W)"));
    TRY(omni__check_contiguous(err, op, "x", x));
    TRY(omni__check_float_dtype(err, op, "w", w));
    TRY(check_rank(err, op, "w", w, 4, "(D,C,p,p)"));
    TRY(omni__check_contiguous(err, op, "w", w));
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t D = w->shape[0], p = w->shape[2];
    if (w->shape[1] != C || w->shape[3] != p || p < 1) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE,
                              "%s: w has shape %s, expected (D, %lld, p, p) for x %s", op,
                              omni_shape_str(w->ndim, w->shape, a, sizeof a), (long long)C,
                              omni_shape_str(x->ndim, x->shape, b, sizeof b));
    }
    if (H < p || W < p) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: x %s is smaller than one %lldx%lld patch", op,
                              omni_shape_str(x->ndim, x->shape, a, sizeof a), (long long)p,
                              (long long)p);
    }
    const int64_t Np = (H / p) * (W / p), K = C * p * p;
    const int64_t want[3] = {B, Np, D};
    TRY(omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32));
    TRY(omni__check_shape(err, op, "out", out, 3, want, "B, (H/p)*(W/p), D"));
    TRY(omni__check_contiguous(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "w", w, "x", x));
    TRY(omni__check_same_device(err, op, "out", out, "x", x));
#ifndef OMNI_HAVE_CUDA
    TRY(omni__cpu_only(err, op, x));
#else
    if (x->device.type != OMNI_DEVICE_CUDA)
        TRY(omni__cpu_only(err, op, x));
#endif
    if (B == 0)
        return OMNI_OK;

    struct omni_tensor cols = {0}, w2 = *w;
    int rc = omni_tensor_alloc(&cols, OMNI_DTYPE_F32, 2, (int64_t[]){B * Np, K}, x->device, err);
    if (rc) {
        omni_error_prefix(err, "%s: patch buffer: ", op);
        return rc;
    }
#ifdef OMNI_HAVE_CUDA
    if (x->device.type == OMNI_DEVICE_CUDA) {
        if (!(rc = omni__cuda_begin(err, op, x->device))) {
            omni_patch_gather_cuda(omni_tensor_data(&cols), omni_tensor_data(x), B, C, H, W, p);
            rc = omni__cuda_end(err, op);
        }
        if (rc) {
            omni_tensor_release(&cols);
            return rc;
        }
    } else
#endif
        omni_patch_gather_cpu(omni_tensor_data(&cols), omni_tensor_data(x), B, C, H, W, p);
    w2.ndim = 2; /* (D, C, p, p) contiguous viewed as (D, C*p*p) */
    w2.shape[0] = D;
    w2.shape[1] = K;
    omni_tensor_set_contiguous(&w2);
    struct omni_tensor o2 = *out;
    o2.ndim = 2;
    o2.shape[0] = B * Np;
    o2.shape[1] = D;
    omni_tensor_set_contiguous(&o2);
    rc = omni_op_linear(&o2, &cols, &w2, bias, err);
    omni_tensor_release(&cols);
    if (rc)
        omni_error_prefix(err, "%s: ", op);
    return rc;
}

int omni_op_concat_last(struct omni_tensor *out, const struct omni_tensor *xs, int n,
                        struct omni_error *err)
{
    static const char op[] = "omni_op_concat_last";
    char arg[32], a[160], b[160];
    int64_t rows, cols, ldo;
    TRY(omni__check_present(err, op, "out", out));
    if (n < 1 || !xs)
        return omni_error_set(err, OMNI_EINVAL, "%s: needs at least one input (n = %d)", op, n);
    if (out->ndim < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: out is a scalar", op);
    TRY(omni__check_writable(err, op, "out", out));
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const struct omni_tensor *x = &xs[i];
        snprintf(arg, sizeof arg, "xs[%d]", i);
        TRY(omni__check_present(err, op, arg, x));
        TRY(omni__check_dtype(err, op, arg, x, out->dtype));
        TRY(omni__check_same_device(err, op, arg, x, "out", out));
        int ok = x->ndim == out->ndim;
        for (int d = 0; ok && d < out->ndim - 1; d++)
            ok = x->shape[d] == out->shape[d];
        if (!ok)
            return omni_error_set(err, OMNI_ESHAPE,
                                  "%s: %s has shape %s, its leading dims differ from out %s", op,
                                  arg, omni_shape_str(x->ndim, x->shape, a, sizeof a),
                                  omni_shape_str(out->ndim, out->shape, b, sizeof b));
        total += x->shape[x->ndim - 1];
    }
    if (total != out->shape[out->ndim - 1])
        return omni_error_set(err, OMNI_ESHAPE,
                              "%s: out has shape %s, its last dim must be %lld (the sum of the "
                              "inputs' last dims)",
                              op, omni_shape_str(out->ndim, out->shape, a, sizeof a),
                              (long long)total);
    TRY(omni__rows(err, op, "out", out, 1, &rows, &cols, &ldo));
    if (rows == 0 || total == 0)
        return OMNI_OK;
#ifdef OMNI_HAVE_CUDA
    const int on_cuda = out->device.type == OMNI_DEVICE_CUDA;
    if (on_cuda)
        TRY(omni__cuda_begin(err, op, out->device));
    else
#endif
        TRY(omni__cpu_only(err, op, out));
    const int64_t es = (int64_t)omni_dtype_size(out->dtype);
    int64_t c0 = 0;
    for (int i = 0; i < n; i++) {
        int64_t xr, xc, ldx;
        snprintf(arg, sizeof arg, "xs[%d]", i);
        TRY(omni__rows(err, op, arg, &xs[i], 0, &xr, &xc, &ldx));
        if (!xc)
            continue;
#ifdef OMNI_HAVE_CUDA
        if (on_cuda)
            omni_copy_rows_cuda((char *)omni_tensor_data(out) + c0 * es, ldo * es,
                                omni_tensor_data(&xs[i]), ldx * es, rows, xc * es);
        else
#endif
            omni_copy_rows_cpu((char *)omni_tensor_data(out) + c0 * es, ldo * es,
                               omni_tensor_data(&xs[i]), ldx * es, rows, xc * es);
        c0 += xc;
    }
#ifdef OMNI_HAVE_CUDA
    if (on_cuda)
        return omni__cuda_end(err, op);
#endif
    return OMNI_OK;
}

int omni_op_resize_bicubic_aa(struct omni_tensor *out, const struct omni_tensor *x,
                              struct omni_error *err)
{
    static const char op[] = "omni_op_resize_bicubic_aa";
    TRY(omni__check_present(err, op, "x", x));
    TRY(omni__check_present(err, op, "out", out));
    TRY(omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "out", out, OMNI_DTYPE_F32));
    TRY(check_rank(err, op, "x", x, 4, "(B,C,H,W)"));
    TRY(check_rank(err, op, "out", out, 4, "(B,C,Ho,Wo)"));
    TRY(omni__check_contiguous(err, op, "x", x));
    TRY(omni__check_contiguous(err, op, "out", out));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "out", out, "x", x));
    if (out->shape[0] != x->shape[0] || out->shape[1] != x->shape[1]) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: out %s and x %s differ in B or C", op,
                              omni_shape_str(out->ndim, out->shape, a, sizeof a),
                              omni_shape_str(x->ndim, x->shape, b, sizeof b));
    }
    const int64_t R = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t Ho = out->shape[2], Wo = out->shape[3];
    if (R == 0 || Ho == 0 || Wo == 0)
        return OMNI_OK;
    if (H == 0 || W == 0)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x is empty but out is not", op);
    TRY(omni__cpu_only(err, op, x));
    struct omni_tensor tmp = {0};
    if (H != Ho && W != Wo) {
        int rc = omni_tensor_alloc(&tmp, OMNI_DTYPE_F32, 3, (int64_t[]){R, H, Wo}, x->device, err);
        if (rc) {
            omni_error_prefix(err, "%s: temporary: ", op);
            return rc;
        }
    }
    omni_resize_bicubic_aa_cpu(omni_tensor_data(out), tmp.buf ? omni_tensor_data(&tmp) : NULL,
                               omni_tensor_data(x), R, H, W, Ho, Wo);
    omni_tensor_release(&tmp);
    return OMNI_OK;
}

int omni_op_matmul16(struct omni_tensor *y, const struct omni_tensor *x,
                     const struct omni_tensor *w, float beta, struct omni_error *err)
{
    static const char op[] = "omni_op_matmul16";
    TRY(omni__check_present(err, op, "x", x));
    TRY(omni__check_present(err, op, "w", w));
    TRY(omni__check_present(err, op, "y", y));
    if (x->dtype != OMNI_DTYPE_F16 && x->dtype != OMNI_DTYPE_BF16)
        return omni_error_set(err, OMNI_EDTYPE, "%s: x is %s, expected f16 or bf16", op,
                              omni_dtype_name(x->dtype));
    TRY(omni__check_dtype(err, op, "w", w, x->dtype));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(check_rank(err, op, "w", w, 2, "(N,K)"));
    TRY(omni__check_contiguous(err, op, "x", x));
    TRY(omni__check_contiguous(err, op, "w", w));
    TRY(omni__check_contiguous(err, op, "y", y));
    TRY(omni__check_writable(err, op, "y", y));
    TRY(omni__check_same_device(err, op, "w", w, "x", x));
    TRY(omni__check_same_device(err, op, "y", y, "x", x));
    if (x->ndim < 1 || y->ndim != x->ndim)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x and y need the same rank >= 1", op);
    const int64_t N = w->shape[0], K = w->shape[1];
    int64_t want[OMNI_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++)
        want[d] = x->shape[d];
    if (x->shape[x->ndim - 1] != K) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, w %s: K differs", op,
                              omni_shape_str(x->ndim, x->shape, a, sizeof a),
                              omni_shape_str(w->ndim, w->shape, b, sizeof b));
    }
    want[x->ndim - 1] = N;
    TRY(omni__check_shape(err, op, "y", y, x->ndim, want, "x's rows, N from w"));
    if (omni__overlap(y, x) || omni__overlap(y, w))
        return omni_error_set(err, OMNI_EINVAL, "%s: y overlaps x or w in memory", op);
    int64_t M = 1; /* rows: x's leading dims (numel / K would be 0 for K = 0) */
    for (int d = 0; d + 1 < x->ndim; d++)
        M *= x->shape[d];
    if (M == 0 || N == 0)
        return OMNI_OK;
    if (K == 0) /* y would have to be beta * y: refused rather than left unwritten */
        return omni_error_set(err, OMNI_ESHAPE, "%s: w %s has K = 0", op,
                              omni_shape_str(w->ndim, w->shape, (char[64]){0}, 64));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_matmul16_cuda(omni_tensor_data(y), omni_tensor_data(x),
                                           omni_tensor_data(w), x->dtype, M, N, K, beta));
    TRY(omni__cpu_only(err, op, x));
    if (omni_matmul16_cpu(omni_tensor_data(y), omni_tensor_data(x), omni_tensor_data(w), x->dtype,
                          M, N, K, beta))
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory for the f32 copy of x", op);
    return OMNI_OK;
}
