/* core/ops/decode.c - omni_op_decode_norm/gemv/mix: check, then dispatch to
 * kernels/cpu/decode.c or kernels/cuda/decode.cu. Contracts in
 * core/include/omni/ops/decode.h. */
#include "omni/ops/decode.h"

#include <math.h>
#include <stdint.h>

#include "cuda_impl.h"
#include "decode.h"
#include "ops/op_check.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static int f32_arg(struct omni_error *err, const char *op, const char *arg,
                   const struct omni_tensor *t, const struct omni_tensor *ref)
{
    TRY(omni__check_present(err, op, arg, t));
    TRY(omni__check_dtype(err, op, arg, t, OMNI_DTYPE_F32));
    return ref ? omni__check_same_device(err, op, arg, t, "the first argument", ref) : OMNI_OK;
}

/* (rows, cols) view with the expected rows/cols (-1: any) */
static int rows_of(struct omni_error *err, const char *op, const char *arg,
                   const struct omni_tensor *t, int writable, int64_t rows, int64_t cols,
                   int64_t *ld)
{
    int64_t r, c;
    TRY(omni__rows(err, op, arg, t, writable, &r, &c, ld));
    if ((rows >= 0 && r != rows) || (cols >= 0 && c != cols))
        return omni_error_set(err, OMNI_ESHAPE, "%s: %s has %lld rows of %lld, expected %lld of %lld",
                              op, arg, (long long)r, (long long)c, (long long)rows, (long long)cols);
    if (writable)
        TRY(omni__check_writable(err, op, arg, t));
    return OMNI_OK;
}

static int vec_arg(struct omni_error *err, const char *op, const char *arg,
                   const struct omni_tensor *t, int64_t n, const struct omni_tensor *ref)
{
    TRY(f32_arg(err, op, arg, t, ref));
    TRY(omni__check_shape(err, op, arg, t, 1, &n, NULL));
    return omni__check_contiguous(err, op, arg, t);
}

int omni_op_decode_norm(struct omni_tensor *out, struct omni_tensor *res_out,
                        const struct omni_tensor *res_in, const struct omni_tensor *x,
                        const struct omni_tensor *w, float eps, const struct omni_tensor *a,
                        struct omni_tensor *u, struct omni_error *err)
{
    static const char op[] = "omni_op_decode_norm";
    int64_t M, D, ldri, ldro, ldo, ldx = 0, ldu = 0, R = 0;
    TRY(f32_arg(err, op, "res_in", res_in, NULL));
    TRY(omni__rows(err, op, "res_in", res_in, 0, &M, &D, &ldri));
    if (M > OMNI_DECODE_MAX_M)
        return omni_error_set(err, OMNI_EINVAL, "%s: %lld rows, at most %d", op, (long long)M,
                              OMNI_DECODE_MAX_M);
    TRY(f32_arg(err, op, "out", out, res_in));
    TRY(rows_of(err, op, "out", out, 1, M, D, &ldo));
    TRY(f32_arg(err, op, "res_out", res_out, res_in));
    TRY(rows_of(err, op, "res_out", res_out, 1, M, D, &ldro));
    if (x) {
        TRY(f32_arg(err, op, "x", x, res_in));
        TRY(rows_of(err, op, "x", x, 0, M, D, &ldx));
    }
    TRY(vec_arg(err, op, "w", w, D, res_in));
    if (!(eps >= 0.0f) || isinf(eps))
        return omni_error_set(err, OMNI_EINVAL, "%s: eps %g must be finite and >= 0", op, (double)eps);
    if (a) {
        TRY(f32_arg(err, op, "a", a, res_in));
        TRY(omni__check_contiguous(err, op, "a", a));
        if (a->ndim != 2 || a->shape[1] != D || a->shape[0] < 1 || a->shape[0] > OMNI_DECODE_MAX_R)
            return omni_error_set(err, OMNI_ESHAPE, "%s: a must be (R <= %d, D=%lld)", op,
                                  OMNI_DECODE_MAX_R, (long long)D);
        R = a->shape[0];
        TRY(f32_arg(err, op, "u", u, res_in));
        TRY(rows_of(err, op, "u", u, 1, M, R, &ldu));
        if (omni_tensor_data(res_out) == omni_tensor_data(res_in))
            return omni_error_set(err, OMNI_EINVAL, "%s: res_out must not be res_in when a is given",
                                  op);
        /* on CUDA the u blocks of a row read res_in and x while its first block writes out and
         * res_out: no write may land in what they read */
        if (omni__overlap(res_out, res_in) || omni__overlap(res_out, x) ||
            omni__overlap(out, res_in) || omni__overlap(out, x))
            return omni_error_set(err, OMNI_EINVAL,
                                  "%s: with a, out and res_out must not overlap res_in or x", op);
    }
    if (M > 0 && omni_tensor_data(out) == omni_tensor_data(res_out))
        return omni_error_set(err, OMNI_EINVAL, "%s: out and res_out must not be the same memory", op);
    OMNI__CUDA_DISPATCH(err, op, res_in->device,
                        omni_dec_norm_cuda(omni_tensor_data(out), ldo, omni_tensor_data(res_out),
                                           ldro, omni_tensor_data(res_in), ldri,
                                           x ? omni_tensor_data(x) : NULL, ldx, omni_tensor_data(w),
                                           M, D, eps, a ? omni_tensor_data(a) : NULL, R,
                                           a ? omni_tensor_data(u) : NULL, ldu));
    TRY(omni__cpu_only(err, op, res_in));
    omni_dec_norm_cpu(omni_tensor_data(out), ldo, omni_tensor_data(res_out), ldro,
                      omni_tensor_data(res_in), ldri, x ? omni_tensor_data(x) : NULL, ldx,
                      omni_tensor_data(w), M, D, eps, a ? omni_tensor_data(a) : NULL, R,
                      a ? omni_tensor_data(u) : NULL, ldu);
    return OMNI_OK;
}

int omni_op_decode_gemv(struct omni_tensor *y, const struct omni_tensor *x,
                        const struct omni_tensor *w, const struct omni_tensor *bias, float alpha,
                        const struct omni_decode_epilogue *epi, struct omni_error *err)
{
    static const char op[] = "omni_op_decode_gemv";
    int64_t M, K, ldx, ldy;
    TRY(f32_arg(err, op, "x", x, NULL));
    TRY(omni__rows(err, op, "x", x, 0, &M, &K, &ldx));
    if (M > OMNI_DECODE_MAX_M)
        return omni_error_set(err, OMNI_EINVAL, "%s: %lld rows, at most %d", op, (long long)M,
                              OMNI_DECODE_MAX_M);
    TRY(omni__check_present(err, op, "w", w));
    TRY(omni__check_float_dtype(err, op, "w", w));
    TRY(omni__check_contiguous(err, op, "w", w));
    TRY(omni__check_same_device(err, op, "w", w, "x", x));
    if (w->ndim != 2 || w->shape[1] != K)
        return omni_error_set(err, OMNI_ESHAPE, "%s: w must be (N, K=%lld)", op, (long long)K);
    const int64_t N = w->shape[0];
    TRY(f32_arg(err, op, "y", y, x));
    TRY(rows_of(err, op, "y", y, 1, M, N, &ldy));
    /* on CUDA the blocks that write y run while others still read x */
    if (omni__overlap(y, x))
        return omni_error_set(err, OMNI_EINVAL, "%s: y overlaps x in memory", op);
    if (bias)
        TRY(vec_arg(err, op, "bias", bias, N, x));
    struct omni_dec_epi e = {0};
    if (epi && epi->part) {
        TRY(f32_arg(err, op, "part", epi->part, x));
        TRY(rows_of(err, op, "part", epi->part, 0, M, -1, &e.ldp));
        int64_t r;
        TRY(omni__rows(err, op, "part", epi->part, 0, &r, &e.nparts, &e.ldp));
        if (!(epi->count > 0.0f) || !(epi->eps >= 0.0f))
            return omni_error_set(err, OMNI_EINVAL, "%s: row scale needs count > 0 and eps >= 0", op);
        e.part = omni_tensor_data(epi->part);
        e.count = epi->count;
        e.eps = epi->eps;
    }
    if (epi && epi->u) {
        TRY(f32_arg(err, op, "u", epi->u, x));
        TRY(omni__rows(err, op, "u", epi->u, 0, &(int64_t){0}, &e.R, &e.ldu));
        TRY(rows_of(err, op, "u", epi->u, 0, M, -1, &e.ldu));
        if (e.R < 1 || e.R > OMNI_DECODE_MAX_R)
            return omni_error_set(err, OMNI_EINVAL, "%s: rank %lld, at most %d", op, (long long)e.R,
                                  OMNI_DECODE_MAX_R);
        TRY(f32_arg(err, op, "lb", epi->lb, x));
        TRY(omni__check_contiguous(err, op, "lb", epi->lb));
        if (epi->lb->ndim != 2 || epi->lb->shape[0] != N || epi->lb->shape[1] != e.R)
            return omni_error_set(err, OMNI_ESHAPE, "%s: lb must be (N=%lld, R=%lld)", op,
                                  (long long)N, (long long)e.R);
        e.u = omni_tensor_data(epi->u);
        e.lb = omni_tensor_data(epi->lb);
        e.lr_scale = epi->lr_scale;
    }
    if (epi && epi->conv_out) {
        int64_t C, Kc;
        TRY(f32_arg(err, op, "conv_w", epi->conv_w, x));
        TRY(omni__check_contiguous(err, op, "conv_w", epi->conv_w));
        if (epi->conv_w->ndim != 2)
            return omni_error_set(err, OMNI_ESHAPE, "%s: conv_w must be (C, K)", op);
        C = epi->conv_w->shape[0];
        Kc = epi->conv_w->shape[1];
        if (epi->c0 < 0 || epi->c0 + C > N || Kc < 1)
            return omni_error_set(err, OMNI_ESHAPE, "%s: conv columns [%lld, %lld) outside N=%lld",
                                  op, (long long)epi->c0, (long long)(epi->c0 + C), (long long)N);
        if (epi->conv_b)
            TRY(vec_arg(err, op, "conv_b", epi->conv_b, C, x));
        TRY(f32_arg(err, op, "conv_out", epi->conv_out, x));
        TRY(rows_of(err, op, "conv_out", epi->conv_out, 1, M, C, &e.ldco));
        const struct omni_tensor *s = epi->conv_state;
        TRY(f32_arg(err, op, "conv_state", s, x));
        TRY(omni__check_writable(err, op, "conv_state", s));
        const int64_t sh[3] = {M, C, Kc};
        TRY(omni__check_shape(err, op, "conv_state", s, 3, sh, "(M, C, K)"));
        e.css = (struct omni_conv_state_strides){s->strides[0], s->strides[1], s->strides[2]};
        e.cout = omni_tensor_data(epi->conv_out);
        e.cstate = omni_tensor_data(s);
        e.cw = omni_tensor_data(epi->conv_w);
        e.cbias = epi->conv_b ? omni_tensor_data(epi->conv_b) : NULL;
        e.c0 = epi->c0;
        e.C = C;
        e.K = Kc;
    }
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_dec_gemv_cuda(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx,
                                           omni_tensor_data(w), w->dtype,
                                           bias ? omni_tensor_data(bias) : NULL, M, N, K, alpha,
                                           &e));
    TRY(omni__cpu_only(err, op, x));
    omni_dec_gemv_cpu(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, omni_tensor_data(w),
                      w->dtype, bias ? omni_tensor_data(bias) : NULL, M, N, K, alpha, &e);
    return OMNI_OK;
}

int omni_op_decode_mix(struct omni_tensor *g, struct omni_tensor *part,
                       const struct omni_tensor *zx, const struct omni_tensor *xbc,
                       const struct omni_tensor *A, const struct omni_tensor *D,
                       const struct omni_tensor *dt_bias, const struct omni_tensor *gnorm_w,
                       struct omni_tensor *state, int64_t ngroups, struct omni_error *err)
{
    static const char op[] = "omni_op_decode_mix";
    TRY(omni__check_present(err, op, "state", state));
    if (state->dtype != OMNI_DTYPE_F32 && state->dtype != OMNI_DTYPE_F16 &&
        state->dtype != OMNI_DTYPE_BF16)
        return omni_error_set(err, OMNI_EDTYPE, "%s: state must be f32, f16 or bf16, got %s", op,
                              omni_dtype_name(state->dtype));
    TRY(omni__check_contiguous(err, op, "state", state));
    TRY(omni__check_writable(err, op, "state", state));
    if (state->ndim != 4)
        return omni_error_set(err, OMNI_ESHAPE, "%s: state must be (B, H, P, N)", op);
    struct omni_dec_dims d = {state->shape[0], state->shape[1], state->shape[2], ngroups,
                              state->shape[3]};
    if (d.G < 1 || d.H % d.G)
        return omni_error_set(err, OMNI_EINVAL, "%s: ngroups %lld does not divide H=%lld", op,
                              (long long)d.G, (long long)d.H);
    const int64_t E = d.H * d.P, Cd = E + 2 * d.G * d.N;
    int64_t ldz, ldc, ldg, ldp, nparts, r;
    TRY(f32_arg(err, op, "zx", zx, state));
    TRY(rows_of(err, op, "zx", zx, 0, d.B, E + Cd + d.H, &ldz));
    TRY(f32_arg(err, op, "xbc", xbc, state));
    TRY(rows_of(err, op, "xbc", xbc, 0, d.B, Cd, &ldc));
    TRY(f32_arg(err, op, "g", g, state));
    TRY(rows_of(err, op, "g", g, 1, d.B, E, &ldg));
    TRY(f32_arg(err, op, "part", part, state));
    TRY(omni__rows(err, op, "part", part, 1, &r, &nparts, &ldp));
    TRY(rows_of(err, op, "part", part, 1, d.B, -1, &ldp));
    if (nparts < 1 || E % nparts || (E / nparts != 8 && E / nparts != 16 && E / nparts != 32) ||
        d.P % (E / nparts))
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: part has %lld columns; E/nparts (E=%lld) must be 8, 16 or 32 "
                              "and divide P=%lld",
                              op, (long long)nparts, (long long)E, (long long)d.P);
    if (d.N > 256)
        return omni_error_set(err, OMNI_EINVAL, "%s: d_state %lld > 256", op, (long long)d.N);
    TRY(vec_arg(err, op, "A", A, d.H, state));
    TRY(vec_arg(err, op, "D", D, d.H, state));
    TRY(vec_arg(err, op, "dt_bias", dt_bias, d.H, state));
    TRY(vec_arg(err, op, "gnorm_w", gnorm_w, E, state));
    if (state->device.type == OMNI_DEVICE_CUDA && d.B > 65535) /* grid.y of dec_mix_k */
        return omni_error_set(err, OMNI_EINVAL, "%s: B=%lld rows, at most 65535 on CUDA", op,
                              (long long)d.B);
    /* the CUDA kernel prefetches the state rows into L2 with a bulk copy, which needs 16-byte
     * aligned addresses when a state row is a multiple of 16 bytes (dec_mix_k) */
    if (state->device.type == OMNI_DEVICE_CUDA &&
        (d.N * (int64_t)omni_dtype_size(state->dtype)) % 16 == 0 &&
        ((uintptr_t)omni_tensor_data(state) & 15))
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: state must start on a 16-byte boundary on CUDA (byte offset "
                              "%lld in its buffer)",
                              op, (long long)state->offset);
    OMNI__CUDA_DISPATCH(err, op, state->device,
                        omni_dec_mix_cuda(omni_tensor_data(g), ldg, omni_tensor_data(part), ldp,
                                          nparts, omni_tensor_data(zx), ldz, omni_tensor_data(xbc),
                                          ldc, omni_tensor_data(A), omni_tensor_data(D),
                                          omni_tensor_data(dt_bias), omni_tensor_data(gnorm_w),
                                          omni_tensor_data(state), state->dtype, &d));
    TRY(omni__cpu_only(err, op, state));
    omni_dec_mix_cpu(omni_tensor_data(g), ldg, omni_tensor_data(part), ldp, nparts,
                     omni_tensor_data(zx), ldz, omni_tensor_data(xbc), ldc, omni_tensor_data(A),
                     omni_tensor_data(D), omni_tensor_data(dt_bias), omni_tensor_data(gnorm_w),
                     omni_tensor_data(state), state->dtype, &d);
    return OMNI_OK;
}
