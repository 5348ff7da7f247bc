/* core/ops/ssm.c - omni_op_conv1d_causal/conv1d_step/ssd_scan/ssd_step:
 * check the tensors, then dispatch to kernels/cpu/ssm.c (CUDA: not written
 * yet). Contracts in core/include/omni/ops/ssm.h. */
#include "omni/ops/ssm.h"

#include "cuda_impl.h"
#include "ops/op_check.h"
#include "ssm.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* f32 tensor of exactly `shape` whose last dim is contiguous */
static int check_view(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int ndim, const int64_t *shape, const char *what)
{
    TRY(omni__check_present(err, op, arg, t));
    TRY(omni__check_dtype(err, op, arg, t, OMNI_DTYPE_F32));
    TRY(omni__check_shape(err, op, arg, t, ndim, shape, what));
    return omni__check_last_contiguous(err, op, arg, t);
}

/* f32 contiguous tensor of exactly `shape` */
static int check_dense(struct omni_error *err, const char *op, const char *arg,
                       const struct omni_tensor *t, int ndim, const int64_t *shape, const char *what)
{
    TRY(check_view(err, op, arg, t, ndim, shape, what));
    return omni__check_contiguous(err, op, arg, t);
}

static int check_rank(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int ndim, const char *dims)
{
    TRY(omni__check_present(err, op, arg, t));
    if (t->ndim != ndim) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: %s has shape %s, expected %d dims %s", op, arg,
                              omni_shape_str(t->ndim, t->shape, a, sizeof a), ndim, dims);
    }
    return OMNI_OK;
}

static int check_conv_params(struct omni_error *err, const char *op, const struct omni_tensor *w,
                             const struct omni_tensor *bias, int64_t C, const struct omni_tensor *ref,
                             int64_t *K)
{
    TRY(check_rank(err, op, "w", w, 2, "(C,K)"));
    *K = w->shape[1];
    int64_t ws[2] = {C, *K};
    TRY(check_dense(err, op, "w", w, 2, ws, "C from x"));
    if (*K < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: w has conv width K=0", op);
    TRY(omni__check_same_device(err, op, "w", w, "x", ref));
    if (bias) {
        TRY(check_dense(err, op, "bias", bias, 1, &C, "C from x"));
        TRY(omni__check_same_device(err, op, "bias", bias, "x", ref));
    }
    return OMNI_OK;
}

static int check_state(struct omni_error *err, const char *op, struct omni_tensor *state,
                       int64_t B, int64_t C, int64_t K, const struct omni_tensor *ref,
                       struct omni_conv_state_strides *ss)
{
    int64_t s[3] = {B, C, K};
    TRY(omni__check_present(err, op, "state", state));
    TRY(omni__check_dtype(err, op, "state", state, OMNI_DTYPE_F32));
    TRY(omni__check_shape(err, op, "state", state, 3, s, "B, C from x, K from w"));
    for (int i = 0; i < 3; i++)
        if (state->strides[i] < 0) {
            char a[160];
            return omni_error_set(err, OMNI_EINVAL, "%s: state has negative strides %s", op,
                                  omni_shape_str(3, state->strides, a, sizeof a));
        }
    TRY(omni__check_writable(err, op, "state", state));
    TRY(omni__check_same_device(err, op, "state", state, "x", ref));
    *ss = (struct omni_conv_state_strides){state->strides[0], state->strides[1], state->strides[2]};
    return OMNI_OK;
}

int omni_op_conv1d_causal(struct omni_tensor *out, const struct omni_tensor *x,
                          const struct omni_tensor *w, const struct omni_tensor *bias,
                          struct omni_tensor *state, int apply_silu, struct omni_error *err)
{
    static const char op[] = "omni_op_conv1d_causal";
    TRY(check_rank(err, op, "x", x, 3, "(B,T,C)"));
    TRY(check_view(err, op, "x", x, 3, x->shape, NULL));
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2], K;
    TRY(check_conv_params(err, op, w, bias, C, x, &K));
    TRY(check_dense(err, op, "out", out, 3, x->shape, "the shape of x"));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "out", out, "x", x));
    struct omni_conv_state_strides ss = {0, 0, 0};
    if (state)
        TRY(check_state(err, op, state, B, C, K, x, &ss));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_conv1d_causal_cuda(omni_tensor_data(out), omni_tensor_data(x),
                                                x->strides[0], x->strides[1], omni_tensor_data(w),
                                                bias ? omni_tensor_data(bias) : NULL,
                                                state ? omni_tensor_data(state) : NULL, ss, B, T, C,
                                                K, apply_silu));
    TRY(omni__cpu_only(err, op, x));
    omni_conv1d_causal_cpu(omni_tensor_data(out), omni_tensor_data(x), x->strides[0], x->strides[1],
                           omni_tensor_data(w), bias ? omni_tensor_data(bias) : NULL,
                           state ? omni_tensor_data(state) : NULL, ss, B, T, C, K, apply_silu);
    return OMNI_OK;
}

int omni_op_conv1d_step(struct omni_tensor *out, const struct omni_tensor *x,
                        const struct omni_tensor *w, const struct omni_tensor *bias,
                        struct omni_tensor *state, int apply_silu, struct omni_error *err)
{
    static const char op[] = "omni_op_conv1d_step";
    TRY(check_rank(err, op, "x", x, 2, "(B,C)"));
    TRY(check_view(err, op, "x", x, 2, x->shape, NULL));
    int64_t B = x->shape[0], C = x->shape[1], K, rows, cols, ldx, ldo;
    TRY(omni__rows(err, op, "x", x, 0, &rows, &cols, &ldx));
    TRY(check_conv_params(err, op, w, bias, C, x, &K));
    TRY(check_view(err, op, "out", out, 2, x->shape, "the shape of x"));
    TRY(omni__rows(err, op, "out", out, 1, &rows, &cols, &ldo));
    TRY(omni__check_writable(err, op, "out", out));
    TRY(omni__check_same_device(err, op, "out", out, "x", x));
    if (!state)
        return omni_error_set(err, OMNI_EINVAL, "%s: state is NULL (a decode step needs the conv state)", op);
    struct omni_conv_state_strides ss;
    TRY(check_state(err, op, state, B, C, K, x, &ss));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_conv1d_step_cuda(omni_tensor_data(out), ldo, omni_tensor_data(x), ldx,
                                              omni_tensor_data(w), bias ? omni_tensor_data(bias) : NULL,
                                              omni_tensor_data(state), ss, B, C, K, apply_silu));
    TRY(omni__cpu_only(err, op, x));
    omni_conv1d_step_cpu(omni_tensor_data(out), ldo, omni_tensor_data(x), ldx, omni_tensor_data(w),
                         bias ? omni_tensor_data(bias) : NULL, omni_tensor_data(state), ss, B, C, K,
                         apply_silu);
    return OMNI_OK;
}

/* Shared checks of ssd_scan (seq = 1: x (B,T,H,P) ...) and ssd_step (seq = 0:
 * x (B,H,P) ...). Fills d. */
static int check_ssd(struct omni_error *err, const char *op, int seq, struct omni_tensor *y,
                     const struct omni_tensor *x, const struct omni_tensor *dt_raw,
                     const struct omni_tensor *A, const struct omni_tensor *Bm,
                     const struct omni_tensor *Cm, const struct omni_tensor *D,
                     const struct omni_tensor *dt_bias, struct omni_tensor *state,
                     struct omni_ssd_dims *d)
{
    const int o = seq; /* axis offset: 1 when there is a T axis */
    TRY(check_rank(err, op, "x", x, 3 + o, seq ? "(B,T,H,P)" : "(B,H,P)"));
    TRY(check_view(err, op, "x", x, 3 + o, x->shape, NULL));
    TRY(check_rank(err, op, "Bm", Bm, 3 + o, seq ? "(B,T,G,N)" : "(B,G,N)"));
    TRY(check_view(err, op, "Bm", Bm, 3 + o, Bm->shape, NULL));
    int64_t B = x->shape[0], T = seq ? x->shape[1] : 1, H = x->shape[1 + o], P = x->shape[2 + o];
    int64_t G = Bm->shape[1 + o], N = Bm->shape[2 + o];
    int64_t bs[4] = {B, T, G, N}, dts[3] = {B, T, H};
    if (!seq)
        bs[1] = G, bs[2] = N, dts[1] = H;
    TRY(check_view(err, op, "Bm", Bm, 3 + o, bs, "B, T from x"));
    TRY(check_view(err, op, "Cm", Cm, 3 + o, bs, "the shape of Bm"));
    TRY(check_view(err, op, "dt_raw", dt_raw, 2 + o, dts, seq ? "B, T, H from x" : "B, H from x"));
    if (G < 1 || H % G != 0) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: Bm %s has G=%lld groups, which must divide H=%lld heads of x %s",
                              op, omni_shape_str(Bm->ndim, Bm->shape, a, sizeof a), (long long)G,
                              (long long)H, omni_shape_str(x->ndim, x->shape, b, sizeof b));
    }
    TRY(check_dense(err, op, "A", A, 1, &H, "H from x"));
    TRY(check_dense(err, op, "D", D, 1, &H, "H from x"));
    TRY(check_dense(err, op, "dt_bias", dt_bias, 1, &H, "H from x"));
    int64_t ss[4] = {B, H, P, N};
    TRY(check_dense(err, op, "state", state, 4, ss, "B, H, P from x, N from Bm"));
    TRY(check_dense(err, op, "y", y, 3 + o, x->shape, "the shape of x"));
    TRY(omni__check_writable(err, op, "state", state));
    TRY(omni__check_writable(err, op, "y", y));
    const struct omni_tensor *all[] = {y, dt_raw, A, Bm, Cm, D, dt_bias, state};
    static const char *names[] = {"y", "dt_raw", "A", "Bm", "Cm", "D", "dt_bias", "state"};
    for (int i = 0; i < 8; i++)
        TRY(omni__check_same_device(err, op, names[i], all[i], "x", x));
    *d = (struct omni_ssd_dims){
        .B = B, .T = T, .H = H, .P = P, .G = G, .N = N,
        .x_sb = x->strides[0], .x_st = seq ? x->strides[1] : 0, .x_sh = x->strides[1 + o],
        .dt_sb = dt_raw->strides[0], .dt_st = seq ? dt_raw->strides[1] : 0,
        .b_sb = Bm->strides[0], .b_st = seq ? Bm->strides[1] : 0, .b_sg = Bm->strides[1 + o],
        .c_sb = Cm->strides[0], .c_st = seq ? Cm->strides[1] : 0, .c_sg = Cm->strides[1 + o],
    };
    return OMNI_OK;
}

static int ssd_scan(const char *op, int zero_in, struct omni_tensor *y, const struct omni_tensor *x,
                    const struct omni_tensor *dt_raw, const struct omni_tensor *A,
                    const struct omni_tensor *Bm, const struct omni_tensor *Cm,
                    const struct omni_tensor *D, const struct omni_tensor *dt_bias,
                    struct omni_tensor *state, int64_t chunk, struct omni_error *err)
{
    struct omni_ssd_dims d;
    TRY(check_ssd(err, op, 1, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, &d));
    d.zero_in = zero_in;
    if (chunk < 0)
        return omni_error_set(err, OMNI_EINVAL, "%s: chunk %lld must be >= 0 (0 = sequential)", op,
                              (long long)chunk);
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_ssd_scan_cuda(omni_tensor_data(y), omni_tensor_data(x),
                                           omni_tensor_data(dt_raw), omni_tensor_data(A),
                                           omni_tensor_data(Bm), omni_tensor_data(Cm),
                                           omni_tensor_data(D), omni_tensor_data(dt_bias),
                                           omni_tensor_data(state), &d, chunk));
    TRY(omni__cpu_only(err, op, x));
    int rc = omni_ssd_scan_cpu(omni_tensor_data(y), omni_tensor_data(x), omni_tensor_data(dt_raw),
                               omni_tensor_data(A), omni_tensor_data(Bm), omni_tensor_data(Cm),
                               omni_tensor_data(D), omni_tensor_data(dt_bias),
                               omni_tensor_data(state), &d, chunk);
    if (rc)
        return omni_error_set(err, rc, "%s: out of memory for the scan's scratch (B=%lld G=%lld chunk=%lld)",
                              op, (long long)d.B, (long long)d.G, (long long)chunk);
    return OMNI_OK;
}

int omni_op_ssd_scan(struct omni_tensor *y, const struct omni_tensor *x,
                     const struct omni_tensor *dt_raw, const struct omni_tensor *A,
                     const struct omni_tensor *Bm, const struct omni_tensor *Cm,
                     const struct omni_tensor *D, const struct omni_tensor *dt_bias,
                     struct omni_tensor *state, int64_t chunk, struct omni_error *err)
{
    return ssd_scan("omni_op_ssd_scan", 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, chunk, err);
}

int omni_op_ssd_scan_from_zero(struct omni_tensor *y, const struct omni_tensor *x,
                               const struct omni_tensor *dt_raw, const struct omni_tensor *A,
                               const struct omni_tensor *Bm, const struct omni_tensor *Cm,
                               const struct omni_tensor *D, const struct omni_tensor *dt_bias,
                               struct omni_tensor *state, int64_t chunk, struct omni_error *err)
{
    return ssd_scan("omni_op_ssd_scan_from_zero", 1, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state,
                    chunk, err);
}

int omni_op_ssd_step(struct omni_tensor *y, const struct omni_tensor *x,
                     const struct omni_tensor *dt_raw, const struct omni_tensor *A,
                     const struct omni_tensor *Bm, const struct omni_tensor *Cm,
                     const struct omni_tensor *D, const struct omni_tensor *dt_bias,
                     struct omni_tensor *state, struct omni_error *err)
{
    static const char op[] = "omni_op_ssd_step";
    struct omni_ssd_dims d;
    TRY(check_ssd(err, op, 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, &d));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_ssd_step_cuda(omni_tensor_data(y), omni_tensor_data(x),
                                           omni_tensor_data(dt_raw), omni_tensor_data(A),
                                           omni_tensor_data(Bm), omni_tensor_data(Cm),
                                           omni_tensor_data(D), omni_tensor_data(dt_bias),
                                           omni_tensor_data(state), &d));
    TRY(omni__cpu_only(err, op, x));
    omni_ssd_step_cpu(omni_tensor_data(y), omni_tensor_data(x), omni_tensor_data(dt_raw),
                      omni_tensor_data(A), omni_tensor_data(Bm), omni_tensor_data(Cm),
                      omni_tensor_data(D), omni_tensor_data(dt_bias), omni_tensor_data(state), &d);
    return OMNI_OK;
}
