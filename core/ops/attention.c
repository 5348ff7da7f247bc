/* core/ops/attention.c - omni_op_attention(_ex): checks the tensors, then
 * dispatches to kernels/cpu/attention.c or its CUDA twin. */
#include <math.h>

#include "omni/ops.h"
#include "attention.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

#define OP "omni_op_attention"

/* Byte range [lo, hi) a view touches inside its buffer (non-negative strides). */
static void extent(const struct omni_tensor *t, int64_t *lo, int64_t *hi)
{
    int64_t last = 0;
    for (int d = 0; d < t->ndim; d++)
        last += (t->shape[d] - 1) * t->strides[d];
    *lo = t->offset;
    *hi = t->offset + (last + 1) * (int64_t)omni_dtype_size(t->dtype);
}

static int overlaps(const struct omni_tensor *a, const struct omni_tensor *b)
{
    int64_t alo, ahi, blo, bhi;
    if (a->buf != b->buf)
        return 0;
    extent(a, &alo, &ahi);
    extent(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

static int check_input(struct omni_error *err, const char *arg, const struct omni_tensor *t,
                       const struct omni_tensor *q)
{
    int rc;
    if ((rc = omni__check_present(err, OP, arg, t)) ||
        (rc = omni__check_dtype(err, OP, arg, t, OMNI_DTYPE_F32)))
        return rc;
    if (t->ndim != 3) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: %s has shape %s, expected rank 3 (B,S,H*P)",
                              OP, arg, omni_shape_str(t->ndim, t->shape, a, sizeof a));
    }
    if (t != q && ((rc = omni__check_same_shape(err, OP, arg, t, "q", q)) ||
                   (rc = omni__check_same_device(err, OP, arg, t, "q", q))))
        return rc;
    return omni__check_last_contiguous(err, OP, arg, t);
}

static int check_bias(struct omni_error *err, const char *arg, const struct omni_tensor *t,
                      const struct omni_tensor *q)
{
    int rc;
    if (!t)
        return OMNI_OK;
    if ((rc = omni__check_dtype(err, OP, arg, t, OMNI_DTYPE_F32)) ||
        (rc = omni__check_shape(err, OP, arg, t, 1, (int64_t[]){q->shape[2]}, "H*P")) ||
        (rc = omni__check_contiguous(err, OP, arg, t)) ||
        (rc = omni__check_same_device(err, OP, arg, t, "q", q)))
        return rc;
    return OMNI_OK;
}

int omni_op_attention_ex(struct omni_tensor *out, const struct omni_tensor *q,
                         const struct omni_tensor *k, const struct omni_tensor *v, int heads,
                         float scale, const struct omni_attention_opts *opts,
                         struct omni_error *err)
{
    static const struct omni_attention_opts none = {0};
    int rc;
    if (!opts)
        opts = &none;
    if ((rc = check_input(err, "q", q, q)) || (rc = check_input(err, "k", k, q)) ||
        (rc = check_input(err, "v", v, q)) || (rc = omni__check_present(err, OP, "out", out)) ||
        (rc = omni__check_float_dtype(err, OP, "out", out)) ||
        (rc = omni__check_same_shape(err, OP, "out", out, "q", q)) ||
        (rc = omni__check_same_device(err, OP, "out", out, "q", q)) ||
        (rc = omni__check_contiguous(err, OP, "out", out)) ||
        (rc = omni__check_writable(err, OP, "out", out)) ||
        (rc = check_bias(err, "q_bias", opts->q_bias, q)) ||
        (rc = check_bias(err, "k_bias", opts->k_bias, q)) ||
        (rc = check_bias(err, "v_bias", opts->v_bias, q)))
        return rc;
    if (opts->precision != 0 && opts->precision != OMNI_DTYPE_F32 &&
        opts->precision != OMNI_DTYPE_F16 && opts->precision != OMNI_DTYPE_BF16)
        return omni_error_set(err, OMNI_EINVAL, "%s: precision %d is not f32, f16 or bf16", OP,
                              opts->precision);
    if (overlaps(out, q) || overlaps(out, k) || overlaps(out, v))
        return omni_error_set(err, OMNI_EINVAL, "%s: out overlaps q, k or v in memory", OP);
    if (heads <= 0 || q->shape[2] % heads != 0)
        return omni_error_set(err, OMNI_EINVAL, "%s: %d heads do not divide the width %lld of q",
                              OP, heads, (long long)q->shape[2]);
    const int64_t B = q->shape[0], S = q->shape[1], P = q->shape[2] / heads;
    if (B == 0 || S == 0 || P == 0)
        return OMNI_OK;
    /* kernels/cuda/attention.cu: heads wider than 256 take the materialised cuBLAS path,
     * which adds no biases and writes f32 only (said here instead of as a CUDA failure) */
    if (out->device.type == OMNI_DEVICE_CUDA && P > 256 &&
        (opts->q_bias || opts->k_bias || opts->v_bias || out->dtype != OMNI_DTYPE_F32))
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: on CUDA heads wider than 256 (P=%lld) take no q/k/v biases and "
                              "an f32 out",
                              OP, (long long)P);
    if (!(scale > 0.0f)) /* also catches NaN */
        scale = (float)(1.0 / sqrt((double)P));
    struct omni_attention_args a = {
        .out = omni_tensor_data(out),
        .q = omni_tensor_data(q),
        .k = omni_tensor_data(k),
        .v = omni_tensor_data(v),
        .q_bias = opts->q_bias ? omni_tensor_data(opts->q_bias) : NULL,
        .k_bias = opts->k_bias ? omni_tensor_data(opts->k_bias) : NULL,
        .v_bias = opts->v_bias ? omni_tensor_data(opts->v_bias) : NULL,
        .B = B, .S = S, .H = heads, .P = P,
        .q_bs = q->strides[0], .q_rs = q->strides[1],
        .k_bs = k->strides[0], .k_rs = k->strides[1],
        .v_bs = v->strides[0], .v_rs = v->strides[1],
        .scale = scale,
        .out_dtype = out->dtype,
        /* 16-bit math only where the tensor-core kernel runs (heads up to 128
         * wide); wider heads compute in f32 on every device, so CPU and CUDA agree */
        .precision = opts->precision == OMNI_DTYPE_F32 || P > 128 ? 0 : opts->precision,
    };
    OMNI__CUDA_DISPATCH(err, OP, out->device, omni_attention_cuda(&a));
    if ((rc = omni__cpu_only(err, OP, out)))
        return rc;
    if (omni_attention_cpu(&a))
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory for the temporaries", OP);
    return OMNI_OK;
}

int omni_op_attention(struct omni_tensor *out, const struct omni_tensor *q,
                      const struct omni_tensor *k, const struct omni_tensor *v, int heads,
                      float scale, struct omni_error *err)
{
    int rc;
    if ((rc = omni__check_present(err, OP, "out", out)) ||
        (rc = omni__check_dtype(err, OP, "out", out, OMNI_DTYPE_F32)))
        return rc;
    return omni_op_attention_ex(out, q, k, v, heads, scale, NULL, err);
}
