/* tests/kernels/check_ssm.c - causal conv1d (sequence and step) and the SSD
 * scan (chunked, sequential, decode step) on the CPU: hand-worked values,
 * PyTorch fixtures, a shape table of chunked vs sequential, prefill/decode
 * consistency, views, guards, threads and argument errors. */
#include <stdlib.h>

#include "cpu/parallel.h"
#include "ktest.h"

/* a view of base's buffer: offset (elements) + explicit shape/strides */
static struct omni_tensor view(const struct omni_tensor *base, int64_t off, int ndim,
                               const int64_t *shape, const int64_t *strides)
{
    struct omni_tensor v = *base;
    v.offset += off * (int64_t)omni_dtype_size(base->dtype);
    v.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v.shape[i] = shape[i], v.strides[i] = strides[i];
    return v;
}

static void fixture(struct omni_weights **w, const char *file)
{
    struct omni_error e;
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/data/kernels/%s", file);
    int rc = omni_weights_open(w, tu_repo_path(rel), &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
}

static void get(struct omni_weights *w, const char *key, struct omni_tensor *t)
{
    struct omni_error e;
    int rc = omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, t, &e);
    ck_assert_msg(rc == OMNI_OK, "%s: %s", key, e.msg);
}

/* ================================ conv1d =================================== */

START_TEST(test_conv1d_hand_worked_with_and_without_history)
{
    /* C=2, K=3: w[0] = [1,2,3], w[1] = [0,0,1] (identity), bias [0.5, 0];
     * x[:,0] = [1,2,3], x[:,1] = [4,5,6].
     * ch0: t0 = 0.5+3*1 = 3.5; t1 = 0.5+2*1+3*2 = 8.5; t2 = 0.5+1+4+9 = 14.5; ch1 = x.
     * History state ch0 = [10,20,30] (oldest first; slot 0 is not read):
     *   t0 = 0.5+1*20+2*30+3*1 = 83.5; t1 = 0.5+1*30+2*1+3*2 = 38.5; t2 = 14.5;
     *   new state ch0 = [1,2,3], ch1 = [4,5,6].
     * T=1 with state ch0 [10,20,30], x = 7: state [20,30,7], out 0.5+20+60+21 = 101.5.
     * silu(3.5) = 3.5/(1+e^-3.5) = 3.5/1.0301974 = 3.3974072 */
    struct omni_tensor x, w, b, out, st;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)3, (int64_t)2);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    float *bp = kt_tensorv(&b, OMNI_DTYPE_F32, 1, (int64_t)2);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)3, (int64_t)2);
    float *sp = kt_tensorv(&st, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)2, (int64_t)3);
    memcpy(xp, (float[]){1, 4, 2, 5, 3, 6}, 24);
    memcpy(wp, (float[]){1, 2, 3, 0, 0, 1}, 24);
    bp[0] = 0.5f, bp[1] = 0;
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, NULL, 0, &e), OMNI_OK);
    const float want[6] = {3.5f, 4, 8.5f, 5, 14.5f, 6};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(op[i], want[i]);
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, NULL, 1, &e), OMNI_OK);
    ck_assert_float_eq_tol(op[0], 3.3974072f, 1e-6);
    memcpy(sp, (float[]){10, 20, 30, 0, 0, 0}, 24);
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, &st, 0, &e), OMNI_OK);
    const float wanth[6] = {83.5f, 4, 38.5f, 5, 14.5f, 6};
    const float wants[6] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 6; i++) {
        ck_assert_float_eq(op[i], wanth[i]);
        ck_assert_float_eq(sp[i], wants[i]);
    }
    /* T = 1 through the sequence op and through the step op */
    struct omni_tensor x1 = x, o1 = out;
    x1.shape[1] = 1, o1.shape[1] = 1;
    omni_tensor_set_contiguous(&o1);
    xp[0] = 7, xp[1] = 0;
    memcpy(sp, (float[]){10, 20, 30, 0, 0, 0}, 24);
    ck_assert_int_eq(omni_op_conv1d_causal(&o1, &x1, &w, &b, &st, 0, &e), OMNI_OK);
    ck_assert_float_eq(op[0], 101.5f);
    ck_assert_float_eq(sp[0], 20);
    ck_assert_float_eq(sp[1], 30);
    ck_assert_float_eq(sp[2], 7);
    struct omni_tensor xs = x, os = out;
    xs.ndim = os.ndim = 2, xs.shape[1] = os.shape[1] = 2;
    omni_tensor_set_contiguous(&xs), omni_tensor_set_contiguous(&os);
    memcpy(sp, (float[]){10, 20, 30, 0, 0, 0}, 24);
    ck_assert_int_eq(omni_op_conv1d_step(&os, &xs, &w, &b, &st, 0, &e), OMNI_OK);
    ck_assert_float_eq(op[0], 101.5f);
    ck_assert_float_eq(sp[0], 20);
    ck_assert_float_eq(sp[1], 30);
    ck_assert_float_eq(sp[2], 7);
    kt_release(&x), kt_release(&w), kt_release(&b), kt_release(&out), kt_release(&st);
}
END_TEST

START_TEST(test_conv1d_matches_pytorch_conv1d_fixture)
{
    /* fixture: F.conv1d(padding=K-1) (+silu); history case against the conv of
     * cat(state[..., 1:], x); the state is used in upstream's channel-contiguous
     * layout (B, K, C) storage viewed as (B, C, K) */
    struct omni_weights *f;
    struct omni_error e;
    fixture(&f, "conv1d.safetensors");
    struct omni_tensor x, w, b, r_silu, r_noact, hist, r_hist, r_state, out, st;
    get(f, "x", &x), get(f, "w", &w), get(f, "bias", &b), get(f, "out_silu", &r_silu);
    get(f, "out_noact", &r_noact), get(f, "hist", &hist), get(f, "hist_out_silu", &r_hist);
    get(f, "hist_state_out", &r_state);
    const int64_t B = x.shape[0], C = x.shape[2], K = w.shape[1];
    size_t n = (size_t)omni_tensor_numel(&x);
    float *op = kt_tensor(&out, OMNI_DTYPE_F32, 3, x.shape);
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, NULL, 1, &e), OMNI_OK);
    ck_assert_msg(tu_rel_err(op, kt_f(&r_silu), n) < 1e-6, "silu rel %.3g", tu_rel_err(op, kt_f(&r_silu), n));
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, NULL, 0, &e), OMNI_OK);
    ck_assert(tu_rel_err(op, kt_f(&r_noact), n) < 1e-6);
    float *sp = kt_tensorv(&st, OMNI_DTYPE_F32, 3, B, K, C); /* physical (B,K,C) */
    const float *hp = kt_f(&hist);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < K; k++)
                sp[(bb * K + k) * C + c] = hp[(bb * C + c) * K + k];
    struct omni_tensor sv = view(&st, 0, 3, (int64_t[]){B, C, K}, (int64_t[]){K * C, 1, C});
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, &sv, 1, &e), OMNI_OK);
    ck_assert_msg(tu_rel_err(op, kt_f(&r_hist), n) < 1e-6, "hist rel %.3g", tu_rel_err(op, kt_f(&r_hist), n));
    const float *rs = kt_f(&r_state);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < K; k++)
                ck_assert_float_eq(sp[(bb * K + k) * C + c], rs[(bb * C + c) * K + k]);
    kt_release(&out), kt_release(&st);
    struct omni_tensor *all[] = {&x, &w, &b, &r_silu, &r_noact, &hist, &r_hist, &r_state};
    for (int i = 0; i < 8; i++)
        omni_tensor_release(all[i]);
    omni_weights_close(f);
}
END_TEST

START_TEST(test_conv1d_sequence_equals_repeated_steps_and_split_prefill)
{
    const int64_t B = 3, T = 9, C = 7, K = 4, T1 = 2;
    struct tu_rng r;
    tu_rng_seed(&r, 51);
    struct omni_tensor x, w, b, out, st, st2, o1;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 3, B, T, C);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 2, C, K);
    float *bp = kt_tensorv(&b, OMNI_DTYPE_F32, 1, C);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 3, B, T, C);
    float *sp = kt_tensorv(&st, OMNI_DTYPE_F32, 3, B, C, K);
    float *sp2 = kt_tensorv(&st2, OMNI_DTYPE_F32, 3, B, C, K);
    float *stepo = kt_tensorv(&o1, OMNI_DTYPE_F32, 2, B, C);
    tu_fill_uniform(&r, xp, (size_t)(B * T * C), -2, 2);
    tu_fill_uniform(&r, wp, (size_t)(C * K), -1, 1);
    tu_fill_uniform(&r, bp, (size_t)C, -1, 1);
    tu_fill_uniform(&r, sp, (size_t)(B * C * K), -1, 1); /* nonzero history */
    memcpy(sp2, sp, sizeof(float) * (size_t)(B * C * K));
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, &st, 1, &e), OMNI_OK);
    for (int64_t t = 0; t < T; t++) {
        struct omni_tensor xt = view(&x, t * C, 2, (int64_t[]){B, C}, (int64_t[]){T * C, 1});
        ck_assert_int_eq(omni_op_conv1d_step(&o1, &xt, &w, &b, &st2, 1, &e), OMNI_OK);
        for (int64_t bb = 0; bb < B; bb++)
            for (int64_t c = 0; c < C; c++)
                ck_assert_float_eq_tol(stepo[bb * C + c], op[(bb * T + t) * C + c], 1e-6);
    }
    for (int64_t i = 0; i < B * C * K; i++)
        ck_assert_float_eq(sp[i], sp2[i]);
    /* split prefill: T1 tokens then T-T1 with the carried state == the full run */
    float *full = malloc(sizeof(float) * (size_t)(B * T * C));
    memcpy(full, op, sizeof(float) * (size_t)(B * T * C));
    tu_fill_uniform(&r, sp, (size_t)(B * C * K), -1, 1);
    memcpy(sp2, sp, sizeof(float) * (size_t)(B * C * K));
    ck_assert_int_eq(omni_op_conv1d_causal(&out, &x, &w, &b, &st, 1, &e), OMNI_OK);
    memcpy(full, op, sizeof(float) * (size_t)(B * T * C));
    struct omni_tensor xa = view(&x, 0, 3, (int64_t[]){B, T1, C}, (int64_t[]){T * C, C, 1});
    struct omni_tensor xb = view(&x, T1 * C, 3, (int64_t[]){B, T - T1, C}, (int64_t[]){T * C, C, 1});
    struct omni_tensor oa = view(&out, 0, 3, (int64_t[]){B, T1, C}, (int64_t[]){T1 * C, C, 1});
    struct omni_tensor ob = view(&out, 0, 3, (int64_t[]){B, T - T1, C}, (int64_t[]){(T - T1) * C, C, 1});
    ck_assert_int_eq(omni_op_conv1d_causal(&oa, &xa, &w, &b, &st2, 1, &e), OMNI_OK);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t t = 0; t < T1; t++)
            for (int64_t c = 0; c < C; c++)
                ck_assert_float_eq(op[(bb * T1 + t) * C + c], full[(bb * T + t) * C + c]);
    ck_assert_int_eq(omni_op_conv1d_causal(&ob, &xb, &w, &b, &st2, 1, &e), OMNI_OK);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t t = 0; t < T - T1; t++)
            for (int64_t c = 0; c < C; c++)
                ck_assert_float_eq(op[(bb * (T - T1) + t) * C + c], full[(bb * T + T1 + t) * C + c]);
    for (int64_t i = 0; i < B * C * K; i++)
        ck_assert_float_eq(sp[i], sp2[i]);
    free(full);
    kt_release(&x), kt_release(&w), kt_release(&b), kt_release(&out), kt_release(&st);
    kt_release(&st2), kt_release(&o1);
}
END_TEST

START_TEST(test_conv1d_rejects_bad_arguments)
{
    struct omni_tensor x, w, w5, out, st, x16;
    struct omni_error e;
    kt_tensorv(&x, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    kt_tensorv(&x16, OMNI_DTYPE_F16, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    kt_tensorv(&w, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)4);
    kt_tensorv(&w5, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)4);
    kt_tensorv(&out, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    kt_tensorv(&st, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)4, (int64_t)3);
    KT_ASSERT_ERR(omni_op_conv1d_causal(&out, &x16, &w, NULL, NULL, 1, &e), e, OMNI_EDTYPE,
                  "omni_op_conv1d_causal", "x has dtype f16");
    KT_ASSERT_ERR(omni_op_conv1d_causal(&out, &x, &w5, NULL, NULL, 1, &e), e, OMNI_ESHAPE,
                  "w has shape [5,4]", "expected [4,4]");
    KT_ASSERT_ERR(omni_op_conv1d_causal(&out, &x, &w, NULL, &st, 1, &e), e, OMNI_ESHAPE,
                  "state has shape [2,4,3]", "expected [2,4,4]");
    struct omni_tensor x2 = view(&x, 0, 2, (int64_t[]){2, 4}, (int64_t[]){12, 1});
    struct omni_tensor o2 = view(&out, 0, 2, (int64_t[]){2, 4}, (int64_t[]){4, 1});
    KT_ASSERT_ERR(omni_op_conv1d_step(&o2, &x2, &w, NULL, NULL, 1, &e), e, OMNI_EINVAL,
                  "omni_op_conv1d_step", "state");
    KT_ASSERT_ERR(omni_op_conv1d_step(&o2, &x, &w, NULL, &st, 1, &e), e, OMNI_ESHAPE, "x has shape [2,3,4]");
    struct omni_tensor x2h = x2;
    x2h.dtype = OMNI_DTYPE_F16;
    KT_ASSERT_ERR(omni_op_conv1d_step(&o2, &x2h, &w, NULL, &st, 1, &e), e, OMNI_EDTYPE, "omni_op_conv1d_step", "x has dtype f16");
    struct omni_tensor s16 = st;
    s16.dtype = OMNI_DTYPE_BF16;
    KT_ASSERT_ERR(omni_op_conv1d_causal(&out, &x, &w, NULL, &s16, 1, &e), e, OMNI_EDTYPE, "state has dtype bf16");
    kt_release(&x), kt_release(&x16), kt_release(&w), kt_release(&w5), kt_release(&out), kt_release(&st);
}
END_TEST

/* ================================== SSD ===================================== */

START_TEST(test_ssd_hand_worked_two_steps)
{
    /* B=T... H=P=G=N=1: dt_raw = 0, dt_bias = 0 -> dt = softplus(0) = ln 2;
     * A = -1 -> a = exp(-ln 2) = 0.5; x = [1,2], B = [1,1], C = [1,2], D = 0.5.
     * h0 = 0: t0 S = ln2 = 0.69314718, y0 = S*1 + 0.5*1 = 1.19314718
     *         t1 S = 0.5*ln2 + 2*ln2 = 1.73286795, y1 = 2*S + 0.5*2 = 4.46573590
     * h0 = 4: t0 S = 2 + ln2 = 2.69314718, y0 = 3.19314718
     *         t1 S = 1.34657359 + 1.38629436 = 2.73286795, y1 = 5.46573590 + 1 = 6.46573590 */
    struct omni_tensor x, dt, A, Bm, Cm, D, db, st, y;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)1);
    float *dp = kt_tensorv(&dt, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)2, (int64_t)1);
    float *ap = kt_tensorv(&A, OMNI_DTYPE_F32, 1, (int64_t)1);
    float *bp = kt_tensorv(&Bm, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)1);
    float *cp = kt_tensorv(&Cm, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)1);
    float *Dp = kt_tensorv(&D, OMNI_DTYPE_F32, 1, (int64_t)1);
    float *bip = kt_tensorv(&db, OMNI_DTYPE_F32, 1, (int64_t)1);
    float *sp = kt_tensorv(&st, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)1, (int64_t)1, (int64_t)1);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)1);
    xp[0] = 1, xp[1] = 2, dp[0] = dp[1] = 0, ap[0] = -1, bp[0] = bp[1] = 1, cp[0] = 1, cp[1] = 2;
    Dp[0] = 0.5f, bip[0] = 0;
    static const int64_t chunks[] = {0, 1, 2, 256};
    for (int h0 = 0; h0 <= 4; h0 += 4)
        for (int i = 0; i < 4; i++) {
            sp[0] = (float)h0;
            memset(yp, 0xff, 8);
            ck_assert_int_eq(omni_op_ssd_scan(&y, &x, &dt, &A, &Bm, &Cm, &D, &db, &st, chunks[i], &e), OMNI_OK);
            ck_assert_float_eq_tol(yp[0], h0 ? 3.19314718f : 1.19314718f, 2e-6);
            ck_assert_float_eq_tol(yp[1], h0 ? 6.46573590f : 4.46573590f, 4e-6);
            ck_assert_float_eq_tol(sp[0], h0 ? 2.73286795f : 1.73286795f, 2e-6);
        }
    /* the same two tokens through the decode step */
    sp[0] = 4;
    for (int t = 0; t < 2; t++) {
        struct omni_tensor xs = view(&x, t, 3, (int64_t[]){1, 1, 1}, (int64_t[]){2, 1, 1});
        struct omni_tensor ds = view(&dt, t, 2, (int64_t[]){1, 1}, (int64_t[]){2, 1});
        struct omni_tensor bs = view(&Bm, t, 3, (int64_t[]){1, 1, 1}, (int64_t[]){2, 1, 1});
        struct omni_tensor cs = view(&Cm, t, 3, (int64_t[]){1, 1, 1}, (int64_t[]){2, 1, 1});
        struct omni_tensor ys = view(&y, t, 3, (int64_t[]){1, 1, 1}, (int64_t[]){1, 1, 1});
        ck_assert_int_eq(omni_op_ssd_step(&ys, &xs, &ds, &A, &bs, &cs, &D, &db, &st, &e), OMNI_OK);
    }
    ck_assert_float_eq_tol(yp[0], 3.19314718f, 2e-6);
    ck_assert_float_eq_tol(yp[1], 6.46573590f, 4e-6);
    ck_assert_float_eq_tol(sp[0], 2.73286795f, 2e-6);
    /* from a zero state: whatever the state holds (4, a NaN) is not read, h0 = 0 results */
    for (int i = 0; i < 4; i++) {
        sp[0] = i % 2 ? 4.0f : NAN;
        ck_assert_int_eq(omni_op_ssd_scan_from_zero(&y, &x, &dt, &A, &Bm, &Cm, &D, &db, &st,
                                                    chunks[i], &e), OMNI_OK);
        ck_assert_float_eq_tol(yp[0], 1.19314718f, 2e-6);
        ck_assert_float_eq_tol(yp[1], 4.46573590f, 4e-6);
        ck_assert_float_eq_tol(sp[0], 1.73286795f, 2e-6);
    }
    struct omni_tensor *all[] = {&x, &dt, &A, &Bm, &Cm, &D, &db, &st, &y};
    for (int i = 0; i < 9; i++)
        kt_release(all[i]);
}
END_TEST

START_TEST(test_ssd_matches_float64_pytorch_loop_fixture)
{
    /* B=2 T=37 H=4 P=3 G=2 N=5, nonzero initial state, dt_raw+bias hitting
     * -30,-17,0,19.9,20.1,40; chunk sizes 0 (sequential), 1, 8, 16, 64 */
    struct omni_weights *f;
    struct omni_error e;
    fixture(&f, "ssd.safetensors");
    struct omni_tensor x, dt, A, Bm, Cm, D, db, s0, ry, rs, y, st;
    get(f, "x", &x), get(f, "dt_raw", &dt), get(f, "A", &A), get(f, "Bm", &Bm), get(f, "Cm", &Cm);
    get(f, "D", &D), get(f, "dt_bias", &db), get(f, "state_in", &s0), get(f, "y", &ry);
    get(f, "state_out", &rs);
    size_t ny = (size_t)omni_tensor_numel(&x), ns = (size_t)omni_tensor_numel(&s0);
    float *yp = kt_tensor(&y, OMNI_DTYPE_F32, 4, x.shape);
    float *sp = kt_tensor(&st, OMNI_DTYPE_F32, 4, s0.shape);
    static const int64_t chunks[] = {0, 1, 8, 16, 64};
    for (int i = 0; i < 5; i++) {
        memcpy(sp, kt_f(&s0), ns * 4);
        int rc = omni_op_ssd_scan(&y, &x, &dt, &A, &Bm, &Cm, &D, &db, &st, chunks[i], &e);
        ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
        double ey = tu_rel_err(yp, kt_f(&ry), ny), es = tu_rel_err(sp, kt_f(&rs), ns);
        ck_assert_msg(ey < 1e-5 && es < 1e-5, "chunk %lld: y rel %.3g, state rel %.3g",
                      (long long)chunks[i], ey, es);
    }
    /* from a zero state (the state holding NaNs, never read) = the scan of a zero state,
     * bit for bit; several chunks per sequence (1, 8, 16) and one (64) */
    struct omni_tensor y0;
    float *y0p = kt_tensor(&y0, OMNI_DTYPE_F32, 4, x.shape);
    float *s0p = malloc(ns * 4);
    ck_assert_ptr_nonnull(s0p);
    for (int i = 0; i < 5; i++) {
        memset(sp, 0, ns * 4);
        ck_assert_int_eq(omni_op_ssd_scan(&y0, &x, &dt, &A, &Bm, &Cm, &D, &db, &st, chunks[i], &e),
                         OMNI_OK);
        memcpy(s0p, sp, ns * 4);
        for (size_t k = 0; k < ns; k++)
            sp[k] = NAN;
        ck_assert_int_eq(omni_op_ssd_scan_from_zero(&y, &x, &dt, &A, &Bm, &Cm, &D, &db, &st,
                                                    chunks[i], &e), OMNI_OK);
        ck_assert_msg(memcmp(yp, y0p, ny * 4) == 0 && memcmp(sp, s0p, ns * 4) == 0,
                      "chunk %lld: the scan from zero differs from the scan of a zero state",
                      (long long)chunks[i]);
    }
    free(s0p);
    kt_release(&y0);
    kt_release(&y), kt_release(&st);
    struct omni_tensor *all[] = {&x, &dt, &A, &Bm, &Cm, &D, &db, &s0, &ry, &rs};
    for (int i = 0; i < 10; i++)
        omni_tensor_release(all[i]);
    omni_weights_close(f);
}
END_TEST

/* One SSD problem: inputs live in a zxbcdt-like projection buffer
 * (B, T, W) with x | Bm | Cm | dt_raw | pad columns (strided views), or in
 * separate contiguous tensors. */
struct ssd_case {
    int64_t B, T, H, P, G, N, Q;
    int strided, zero_state, special_dt;
    float dt_lo, dt_hi; /* dt_raw range */
    float a_hi;         /* A = -exp(U(0, a_hi)) */
};

struct ssd_problem {
    struct ssd_case c;
    struct omni_tensor proj, xs, dts, bs, cs;   /* storage */
    struct omni_tensor x, dt, Bm, Cm;           /* views used by the op */
    struct omni_tensor A, D, db, s0;            /* small params, initial state */
};

static void problem_init(struct ssd_problem *pb, const struct ssd_case *c, uint64_t seed)
{
    memset(pb, 0, sizeof *pb);
    pb->c = *c;
    struct tu_rng r;
    tu_rng_seed(&r, seed);
    const int64_t B = c->B, T = c->T, H = c->H, P = c->P, G = c->G, N = c->N;
    if (c->strided) {
        const int64_t W = H * P + 2 * G * N + H + 3;
        float *pp = kt_tensorv(&pb->proj, OMNI_DTYPE_F32, 3, B, T, W);
        tu_fill_uniform(&r, pp, (size_t)(B * T * W), -1, 1);
        pb->x = view(&pb->proj, 0, 4, (int64_t[]){B, T, H, P}, (int64_t[]){T * W, W, P, 1});
        pb->Bm = view(&pb->proj, H * P, 4, (int64_t[]){B, T, G, N}, (int64_t[]){T * W, W, N, 1});
        pb->Cm = view(&pb->proj, H * P + G * N, 4, (int64_t[]){B, T, G, N}, (int64_t[]){T * W, W, N, 1});
        pb->dt = view(&pb->proj, H * P + 2 * G * N, 3, (int64_t[]){B, T, H}, (int64_t[]){T * W, W, 1});
    } else {
        kt_fill(&r, (const struct omni_tensor *)(kt_tensorv(&pb->xs, OMNI_DTYPE_F32, 4, B, T, H, P), &pb->xs), -1, 1);
        kt_tensorv(&pb->bs, OMNI_DTYPE_F32, 4, B, T, G, N);
        kt_tensorv(&pb->cs, OMNI_DTYPE_F32, 4, B, T, G, N);
        kt_tensorv(&pb->dts, OMNI_DTYPE_F32, 3, B, T, H);
        kt_fill(&r, &pb->bs, -1, 1), kt_fill(&r, &pb->cs, -1, 1);
        pb->x = pb->xs, pb->Bm = pb->bs, pb->Cm = pb->cs, pb->dt = pb->dts;
    }
    float *ap = kt_tensorv(&pb->A, OMNI_DTYPE_F32, 1, H);
    float *dp = kt_tensorv(&pb->D, OMNI_DTYPE_F32, 1, H);
    float *bp = kt_tensorv(&pb->db, OMNI_DTYPE_F32, 1, H);
    float *sp = kt_tensorv(&pb->s0, OMNI_DTYPE_F32, 4, B, H, P, N);
    for (int64_t h = 0; h < H; h++) {
        ap[h] = -expf(tu_rng_uniform(&r, 0, c->a_hi));
        dp[h] = tu_rng_uniform(&r, -1, 1);
        bp[h] = tu_rng_uniform(&r, -0.5f, 0.5f);
    }
    if (c->zero_state)
        memset(sp, 0, sizeof(float) * (size_t)(B * H * P * N));
    else
        tu_fill_uniform(&r, sp, (size_t)(B * H * P * N), -1, 1);
    float *base = omni_tensor_data(&pb->dt);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                base[b * pb->dt.strides[0] + t * pb->dt.strides[1] + h] = tu_rng_uniform(&r, c->dt_lo, c->dt_hi);
    if (c->special_dt) {
        /* dt_raw + dt_bias at the softplus edge cases, spread over positions and heads */
        static const float sv[6] = {-30.0f, -17.0f, 0.0f, 19.9f, 20.1f, 40.0f};
        for (int64_t i = 0; i < 6 * B && i < T * B; i++) {
            int64_t b = i % B, t = (i * 7) % T, h = i % H;
            base[b * pb->dt.strides[0] + t * pb->dt.strides[1] + h] = sv[i % 6] - bp[h];
        }
    }
}

static void problem_free(struct ssd_problem *pb)
{
    struct omni_tensor *all[] = {&pb->proj, &pb->xs, &pb->dts, &pb->bs, &pb->cs,
                                 &pb->A, &pb->D, &pb->db, &pb->s0};
    for (int i = 0; i < 9; i++)
        if (all[i]->buf)
            kt_release(all[i]);
}

/* run the scan with `chunk`; y and the final state land in guarded tensors */
static void problem_run(struct ssd_problem *pb, int64_t chunk, struct omni_tensor *y, struct omni_tensor *st)
{
    struct omni_error e;
    const struct ssd_case *c = &pb->c;
    kt_tensorv(y, OMNI_DTYPE_F32, 4, c->B, c->T, c->H, c->P);
    float *sp = kt_tensorv(st, OMNI_DTYPE_F32, 4, c->B, c->H, c->P, c->N);
    memcpy(sp, kt_f(&pb->s0), sizeof(float) * (size_t)omni_tensor_numel(st));
    int rc = omni_op_ssd_scan(y, &pb->x, &pb->dt, &pb->A, &pb->Bm, &pb->Cm, &pb->D, &pb->db, st, chunk, &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
}

static void check_chunked_vs_sequential(const struct ssd_case *c, uint64_t seed)
{
    struct ssd_problem pb;
    problem_init(&pb, c, seed);
    struct omni_tensor y0, s0, y1, s1;
    problem_run(&pb, 0, &y0, &s0);
    problem_run(&pb, c->Q, &y1, &s1);
    size_t ny = (size_t)omni_tensor_numel(&y0), ns = (size_t)omni_tensor_numel(&s0);
    ck_assert(!tu_has_nan(kt_f(&y0), ny) && !tu_has_nan(kt_f(&y1), ny));
    ck_assert(!tu_has_nan(kt_f(&s0), ns) && !tu_has_nan(kt_f(&s1), ns));
    double ey = tu_rel_err(kt_f(&y1), kt_f(&y0), ny), es = tu_rel_err(kt_f(&s1), kt_f(&s0), ns);
    ck_assert_msg(ey < 1e-5 && es < 1e-5,
                  "B=%lld T=%lld H=%lld P=%lld G=%lld N=%lld Q=%lld: y rel %.3g, state rel %.3g",
                  (long long)c->B, (long long)c->T, (long long)c->H, (long long)c->P, (long long)c->G,
                  (long long)c->N, (long long)c->Q, ey, es);
    kt_release(&y0), kt_release(&s0), kt_release(&y1), kt_release(&s1);
    problem_free(&pb);
}

START_TEST(test_ssd_chunked_equals_sequential_shape_table)
{
    /*  B  T   H  P  G  N  Q  strided zero special dt_lo dt_hi a_hi */
    static const struct ssd_case cases[] = {
        {1, 1, 2, 3, 1, 4, 8, 0, 0, 0, -3, 1, 2},    /* T = 1 */
        {1, 8, 2, 3, 1, 4, 8, 0, 0, 0, -3, 1, 2},    /* T = Q */
        {1, 7, 2, 3, 1, 4, 8, 1, 0, 0, -3, 1, 2},    /* T = Q - 1 */
        {1, 9, 2, 3, 1, 4, 8, 1, 0, 0, -3, 1, 2},    /* T = Q + 1 */
        {1, 29, 6, 4, 1, 5, 8, 1, 0, 0, -3, 1, 2},   /* 3Q + 5, H != P */
        {3, 29, 6, 4, 2, 5, 8, 1, 0, 1, -3, 1, 2},   /* B = 3, G = 2, special dt */
        {3, 29, 6, 4, 3, 5, 8, 0, 0, 1, -3, 1, 2},   /* G = 3 */
        {2, 40, 4, 5, 4, 3, 16, 1, 1, 1, -3, 1, 2},  /* G = H, zero initial state */
        {1, 20, 2, 3, 1, 4, 256, 0, 0, 1, -3, 1, 2}, /* chunk > T */
        {2, 37, 3, 8, 1, 16, 1, 1, 0, 0, -3, 1, 2},  /* chunk 1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_chunked_vs_sequential(&cases[i], 100 + i);
}
END_TEST

START_TEST(test_ssd_long_sequence_with_decay_underflow)
{
    /* dt up to ~softplus(6) and |A| up to e^2.5: within a 64-chunk the
     * cumulative dA reaches about -4000, far past exp's f32 underflow; the
     * special dt values add 40 (identity branch) spikes. */
    static const struct ssd_case c = {1, 600, 4, 8, 1, 16, 64, 1, 0, 1, -2, 6, 2.5f};
    check_chunked_vs_sequential(&c, 7);
    struct ssd_problem pb;
    problem_init(&pb, &c, 8);
    struct omni_tensor y, st;
    problem_run(&pb, 64, &y, &st);
    /* the decay underflows: the initial state must be forgotten entirely */
    ck_assert(!tu_has_nan(kt_f(&y), (size_t)omni_tensor_numel(&y)));
    float *s0 = kt_f(&pb.s0);
    memset(s0, 0, sizeof(float) * (size_t)omni_tensor_numel(&pb.s0));
    struct omni_tensor y2, st2;
    problem_run(&pb, 64, &y2, &st2);
    size_t ns = (size_t)omni_tensor_numel(&st);
    ck_assert(memcmp(kt_f(&st), kt_f(&st2), ns * 4) == 0);
    kt_release(&y), kt_release(&st), kt_release(&y2), kt_release(&st2);
    problem_free(&pb);
}
END_TEST

static void prefill_then_steps(int64_t chunk)
{
    /* prefill T0 tokens, then K decode steps == one scan over T0 + K:
     * same last K outputs, same final state */
    static const struct ssd_case c = {2, 21, 4, 3, 2, 6, 8, 1, 0, 1, -3, 1, 2};
    const int64_t T0 = 17, K = c.T - T0, B = c.B, H = c.H, P = c.P, G = c.G, N = c.N;
    struct ssd_problem pb;
    problem_init(&pb, &c, 9);
    struct omni_tensor yf, sf;
    problem_run(&pb, chunk, &yf, &sf); /* full */
    struct omni_error e;
    struct omni_tensor y, st, ys;
    kt_tensorv(&y, OMNI_DTYPE_F32, 4, B, T0, H, P);
    float *sp = kt_tensorv(&st, OMNI_DTYPE_F32, 4, B, H, P, N);
    float *ysp = kt_tensorv(&ys, OMNI_DTYPE_F32, 3, B, H, P);
    memcpy(sp, kt_f(&pb.s0), sizeof(float) * (size_t)(B * H * P * N));
    struct omni_tensor x0 = pb.x, d0 = pb.dt, b0 = pb.Bm, c0 = pb.Cm;
    x0.shape[1] = d0.shape[1] = b0.shape[1] = c0.shape[1] = T0;
    ck_assert_int_eq(omni_op_ssd_scan(&y, &x0, &d0, &pb.A, &b0, &c0, &pb.D, &pb.db, &st, chunk, &e), OMNI_OK);
    const float *yfp = kt_f(&yf);
    float got[2 * 4 * 3], want[2 * 4 * 3];
    for (int64_t k = 0; k < K; k++) {
        int64_t t = T0 + k;
        struct omni_tensor xs = view(&pb.x, t * pb.x.strides[1], 3, (int64_t[]){B, H, P},
                                     (int64_t[]){pb.x.strides[0], pb.x.strides[2], 1});
        struct omni_tensor ds = view(&pb.dt, t * pb.dt.strides[1], 2, (int64_t[]){B, H},
                                     (int64_t[]){pb.dt.strides[0], 1});
        struct omni_tensor bs = view(&pb.Bm, t * pb.Bm.strides[1], 3, (int64_t[]){B, G, N},
                                     (int64_t[]){pb.Bm.strides[0], pb.Bm.strides[2], 1});
        struct omni_tensor cs = view(&pb.Cm, t * pb.Cm.strides[1], 3, (int64_t[]){B, G, N},
                                     (int64_t[]){pb.Cm.strides[0], pb.Cm.strides[2], 1});
        ck_assert_int_eq(omni_op_ssd_step(&ys, &xs, &ds, &pb.A, &bs, &cs, &pb.D, &pb.db, &st, &e), OMNI_OK);
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < H * P; i++) {
                got[b * H * P + i] = ysp[b * H * P + i];
                want[b * H * P + i] = yfp[(b * c.T + t) * H * P + i];
            }
        double ey = tu_rel_err(got, want, (size_t)(B * H * P));
        ck_assert_msg(ey < 1e-5, "chunk %lld step %lld: y rel %.3g", (long long)chunk, (long long)k, ey);
    }
    double es = tu_rel_err(sp, kt_f(&sf), (size_t)(B * H * P * N));
    ck_assert_msg(es < 1e-5, "chunk %lld: state rel %.3g", (long long)chunk, es);
    kt_release(&yf), kt_release(&sf), kt_release(&y), kt_release(&st), kt_release(&ys);
    problem_free(&pb);
}

START_TEST(test_ssd_portable_path_chunked_and_step)
{
    /* the non-AVX2 vector helpers (used on other hosts) on a few shapes of the
     * table, and the decode step against the longer scan */
    omni_cpu_set_simd(0);
    ck_assert_int_eq(omni_cpu_simd(), 0);
    static const struct ssd_case cases[] = {
        {1, 9, 2, 3, 1, 4, 8, 1, 0, 0, -3, 1, 2},
        {3, 29, 6, 4, 2, 5, 8, 1, 0, 1, -3, 1, 2},
        {2, 40, 4, 5, 4, 3, 16, 1, 1, 1, -3, 1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_chunked_vs_sequential(&cases[i], 200 + i);
    prefill_then_steps(8);
    omni_cpu_set_simd(1);
}
END_TEST

START_TEST(test_ssd_prefill_then_steps_equals_longer_scan)
{
    prefill_then_steps(8);
    prefill_then_steps(0);
}
END_TEST

START_TEST(test_ssd_split_prefill_with_state_carry_equals_single_scan)
{
    static const struct ssd_case c = {2, 30, 4, 3, 1, 6, 8, 1, 0, 0, -3, 1, 2};
    const int64_t T1 = 13;
    struct ssd_problem pb;
    problem_init(&pb, &c, 12);
    struct omni_tensor yf, sf, ya, yb, st;
    struct omni_error e;
    problem_run(&pb, 8, &yf, &sf);
    kt_tensorv(&ya, OMNI_DTYPE_F32, 4, c.B, T1, c.H, c.P);
    kt_tensorv(&yb, OMNI_DTYPE_F32, 4, c.B, c.T - T1, c.H, c.P);
    float *sp = kt_tensorv(&st, OMNI_DTYPE_F32, 4, c.B, c.H, c.P, c.N);
    memcpy(sp, kt_f(&pb.s0), sizeof(float) * (size_t)omni_tensor_numel(&st));
    struct omni_tensor xa = pb.x, da = pb.dt, ba = pb.Bm, ca = pb.Cm;
    xa.shape[1] = da.shape[1] = ba.shape[1] = ca.shape[1] = T1;
    struct omni_tensor xb = xa, db = da, bb = ba, cb = ca;
    xb.shape[1] = db.shape[1] = bb.shape[1] = cb.shape[1] = c.T - T1;
    xb.offset += T1 * xb.strides[1] * 4, db.offset += T1 * db.strides[1] * 4;
    bb.offset += T1 * bb.strides[1] * 4, cb.offset += T1 * cb.strides[1] * 4;
    ck_assert_int_eq(omni_op_ssd_scan(&ya, &xa, &da, &pb.A, &ba, &ca, &pb.D, &pb.db, &st, 8, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_ssd_scan(&yb, &xb, &db, &pb.A, &bb, &cb, &pb.D, &pb.db, &st, 8, &e), OMNI_OK);
    const int64_t row = c.H * c.P;
    float *full = kt_f(&yf), *pa = kt_f(&ya), *pbb = kt_f(&yb);
    float *got = malloc(sizeof(float) * (size_t)omni_tensor_numel(&yf));
    for (int64_t b = 0; b < c.B; b++) {
        memcpy(got + b * c.T * row, pa + b * T1 * row, sizeof(float) * (size_t)(T1 * row));
        memcpy(got + (b * c.T + T1) * row, pbb + b * (c.T - T1) * row, sizeof(float) * (size_t)((c.T - T1) * row));
    }
    double ey = tu_rel_err(got, full, (size_t)omni_tensor_numel(&yf));
    double es = tu_rel_err(sp, kt_f(&sf), (size_t)omni_tensor_numel(&st));
    ck_assert_msg(ey < 1e-5 && es < 1e-5, "y rel %.3g state rel %.3g", ey, es);
    free(got);
    kt_release(&yf), kt_release(&sf), kt_release(&ya), kt_release(&yb), kt_release(&st);
    problem_free(&pb);
}
END_TEST

START_TEST(test_ssd_batch_row_equals_the_sequence_run_alone)
{
    static const struct ssd_case c = {3, 19, 4, 3, 2, 5, 8, 0, 0, 0, -3, 1, 2};
    struct ssd_problem pb;
    problem_init(&pb, &c, 13);
    struct omni_tensor yf, sf, y1, s1;
    struct omni_error e;
    problem_run(&pb, 8, &yf, &sf);
    const int64_t b = 1, row = c.T * c.H * c.P, srow = c.H * c.P * c.N;
    kt_tensorv(&y1, OMNI_DTYPE_F32, 4, (int64_t)1, c.T, c.H, c.P);
    float *sp = kt_tensorv(&s1, OMNI_DTYPE_F32, 4, (int64_t)1, c.H, c.P, c.N);
    memcpy(sp, kt_f(&pb.s0) + b * srow, sizeof(float) * (size_t)srow);
    struct omni_tensor x = pb.x, dt = pb.dt, Bm = pb.Bm, Cm = pb.Cm;
    x.shape[0] = dt.shape[0] = Bm.shape[0] = Cm.shape[0] = 1;
    x.offset += b * x.strides[0] * 4, dt.offset += b * dt.strides[0] * 4;
    Bm.offset += b * Bm.strides[0] * 4, Cm.offset += b * Cm.strides[0] * 4;
    ck_assert_int_eq(omni_op_ssd_scan(&y1, &x, &dt, &pb.A, &Bm, &Cm, &pb.D, &pb.db, &s1, 8, &e), OMNI_OK);
    ck_assert(memcmp(kt_f(&y1), kt_f(&yf) + b * row, sizeof(float) * (size_t)row) == 0);
    ck_assert(memcmp(sp, kt_f(&sf) + b * srow, sizeof(float) * (size_t)srow) == 0);
    kt_release(&yf), kt_release(&sf), kt_release(&y1), kt_release(&s1);
    problem_free(&pb);
}
END_TEST

START_TEST(test_ssd_threads_1_and_2_identical)
{
    static const struct ssd_case c = {2, 70, 8, 16, 1, 32, 32, 1, 0, 1, -3, 1, 2};
    struct ssd_problem pb;
    problem_init(&pb, &c, 14);
    struct omni_tensor y1, s1, y2, s2, y3, s3, y4, s4;
    omni_parallel_set_threads(1);
    problem_run(&pb, 32, &y1, &s1);
    problem_run(&pb, 0, &y3, &s3);
    omni_parallel_set_threads(2);
    problem_run(&pb, 32, &y2, &s2);
    problem_run(&pb, 0, &y4, &s4);
    omni_parallel_set_threads(0);
    size_t ny = (size_t)omni_tensor_numel(&y1), ns = (size_t)omni_tensor_numel(&s1);
    ck_assert(memcmp(kt_f(&y1), kt_f(&y2), ny * 4) == 0 && memcmp(kt_f(&s1), kt_f(&s2), ns * 4) == 0);
    ck_assert(memcmp(kt_f(&y3), kt_f(&y4), ny * 4) == 0 && memcmp(kt_f(&s3), kt_f(&s4), ns * 4) == 0);
    kt_release(&y1), kt_release(&s1), kt_release(&y2), kt_release(&s2);
    kt_release(&y3), kt_release(&s3), kt_release(&y4), kt_release(&s4);
    problem_free(&pb);
}
END_TEST

START_TEST(test_ssd_rejects_bad_arguments)
{
    static const struct ssd_case c = {1, 5, 4, 3, 2, 6, 8, 0, 0, 0, -3, 1, 2};
    struct ssd_problem pb;
    problem_init(&pb, &c, 15);
    struct omni_tensor y, st, bad;
    struct omni_error e;
    kt_tensorv(&y, OMNI_DTYPE_F32, 4, c.B, c.T, c.H, c.P);
    kt_tensorv(&st, OMNI_DTYPE_F32, 4, c.B, c.H, c.P, c.N);
    kt_tensorv(&bad, OMNI_DTYPE_F32, 4, c.B, c.H, c.P, c.N + 1);
    ck_assert_int_eq(omni_op_ssd_scan(&y, &pb.x, &pb.dt, &pb.A, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &st, 8, &e), OMNI_OK);
    KT_ASSERT_ERR(omni_op_ssd_scan(&y, &pb.x, &pb.dt, &pb.A, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &bad, 8, &e), e,
                  OMNI_ESHAPE, "omni_op_ssd_scan", "state has shape [1,4,3,7]", "expected [1,4,3,6]");
    KT_ASSERT_ERR(omni_op_ssd_scan(&y, &pb.x, &pb.dt, &pb.A, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &st, -1, &e), e,
                  OMNI_EINVAL, "chunk -1");
    struct omni_tensor x16 = pb.x;
    x16.dtype = OMNI_DTYPE_F16;
    KT_ASSERT_ERR(omni_op_ssd_scan(&y, &x16, &pb.dt, &pb.A, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &st, 8, &e), e,
                  OMNI_EDTYPE, "x has dtype f16");
    struct omni_tensor b3 = pb.Bm; /* G = 3 does not divide H = 4 */
    b3.shape[2] = 3, b3.shape[3] = 4, omni_tensor_set_contiguous(&b3);
    struct omni_tensor c3 = b3;
    struct omni_tensor st3 = view(&st, 0, 4, (int64_t[]){1, 4, 3, 4}, (int64_t[]){48, 12, 4, 1});
    KT_ASSERT_ERR(omni_op_ssd_scan(&y, &pb.x, &pb.dt, &pb.A, &b3, &c3, &pb.D, &pb.db, &st3, 8, &e), e,
                  OMNI_ESHAPE, "G=3", "H=4");
    struct omni_tensor dtb = pb.dt;
    dtb.shape[2] = 3;
    KT_ASSERT_ERR(omni_op_ssd_scan(&y, &pb.x, &dtb, &pb.A, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &st, 8, &e), e,
                  OMNI_ESHAPE, "dt_raw has shape [1,5,3]", "expected [1,5,4]");
    KT_ASSERT_ERR(omni_op_ssd_step(&y, &pb.x, &pb.dt, &pb.A, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &st, &e), e,
                  OMNI_ESHAPE, "omni_op_ssd_step", "x has shape [1,5,4,3]", "(B,H,P)");
    struct omni_tensor A16 = pb.A;
    A16.dtype = OMNI_DTYPE_F16;
    KT_ASSERT_ERR(omni_op_ssd_scan(&y, &pb.x, &pb.dt, &A16, &pb.Bm, &pb.Cm, &pb.D, &pb.db, &st, 8, &e), e,
                  OMNI_EDTYPE, "A has dtype f16");
    struct omni_tensor xs = view(&pb.x, 0, 3, (int64_t[]){1, 4, 3}, (int64_t[]){pb.x.strides[0], 3, 1});
    struct omni_tensor ds = view(&pb.dt, 0, 2, (int64_t[]){1, 4}, (int64_t[]){pb.dt.strides[0], 1});
    struct omni_tensor bs = view(&pb.Bm, 0, 3, (int64_t[]){1, 2, 6}, (int64_t[]){pb.Bm.strides[0], 6, 1});
    struct omni_tensor ys = view(&y, 0, 3, (int64_t[]){1, 4, 3}, (int64_t[]){12, 3, 1});
    ck_assert_int_eq(omni_op_ssd_step(&ys, &xs, &ds, &pb.A, &bs, &bs, &pb.D, &pb.db, &st, &e), OMNI_OK);
    struct omni_tensor ds16 = ds;
    ds16.dtype = OMNI_DTYPE_F16;
    KT_ASSERT_ERR(omni_op_ssd_step(&ys, &xs, &ds16, &pb.A, &bs, &bs, &pb.D, &pb.db, &st, &e), e,
                  OMNI_EDTYPE, "omni_op_ssd_step", "dt_raw has dtype f16");
    kt_release(&y), kt_release(&st), kt_release(&bad);
    problem_free(&pb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ssm");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conv1d_hand_worked_with_and_without_history);
    tcase_add_test(tc, test_conv1d_matches_pytorch_conv1d_fixture);
    tcase_add_test(tc, test_conv1d_sequence_equals_repeated_steps_and_split_prefill);
    tcase_add_test(tc, test_conv1d_rejects_bad_arguments);
    tcase_add_test(tc, test_ssd_hand_worked_two_steps);
    tcase_add_test(tc, test_ssd_matches_float64_pytorch_loop_fixture);
    tcase_add_test(tc, test_ssd_chunked_equals_sequential_shape_table);
    tcase_add_test(tc, test_ssd_portable_path_chunked_and_step);
    tcase_add_test(tc, test_ssd_long_sequence_with_decay_underflow);
    tcase_add_test(tc, test_ssd_prefill_then_steps_equals_longer_scan);
    tcase_add_test(tc, test_ssd_split_prefill_with_state_carry_equals_single_scan);
    tcase_add_test(tc, test_ssd_batch_row_equals_the_sequence_run_alone);
    tcase_add_test(tc, test_ssd_threads_1_and_2_identical);
    tcase_add_test(tc, test_ssd_rejects_bad_arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
