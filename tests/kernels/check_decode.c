/* tests/kernels/check_decode.c - the fused decode-step ops (omni/ops/decode.h)
 * on the CPU: two decode steps of a Mamba-2 layer through the four fused ops
 * (decode_norm, decode_gemv with LoRA + conv epilogue, decode_mix,
 * decode_gemv with the gated norm's row scale) against the op-by-op path of
 * plugins/mamba2 (add_rmsnorm, matmul, LoRA, conv1d_step, ssd_step,
 * gated_rmsnorm, matmul) on random inputs: residual, layer output and both
 * states within 1e-6 of max|ref|. decode_mix with an f16/bf16 state against the f32
 * op on the widened state. Plus argument checks. The CUDA twins:
 * tests/cuda/check_cuda_decode.c. */
#include <stdlib.h>

#include "ktest.h"
#include "omni/ops/decode.h"

static struct tu_rng R;

static void rnd(struct omni_tensor *t, int dtype, float scale, int ndim, const int64_t *shape)
{
    kt_tensor(t, OMNI_DTYPE_F32, ndim, shape);
    tu_fill_normal(&R, omni_tensor_data(t), (size_t)omni_tensor_numel(t), scale);
    if (dtype != OMNI_DTYPE_F32) {
        struct omni_tensor c;
        struct omni_error e = {0};
        kt_tensor(&c, dtype, ndim, shape);
        ck_assert_int_eq(omni_op_copy(&c, t, &e), OMNI_OK);
        kt_release(t);
        *t = c;
    }
}

static void cpy(struct omni_tensor *dst, const struct omni_tensor *src)
{
    kt_tensor(dst, src->dtype, src->ndim, src->shape);
    memcpy(omni_tensor_data(dst), omni_tensor_data(src), omni_tensor_nbytes(src));
}

static struct omni_tensor view(const struct omni_tensor *b, int64_t off, int ndim,
                               const int64_t *shape, const int64_t *strides)
{
    struct omni_tensor v = *b;
    v.ndim = ndim;
    v.offset = b->offset + off * 4;
    for (int i = 0; i < ndim; i++)
        v.shape[i] = shape[i], v.strides[i] = strides[i];
    return v;
}

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define OK(x) ck_assert_int_eq((x), OMNI_OK)

static void layer_case(int64_t M, int64_t D, int64_t H, int64_t P, int64_t N, int64_t K,
                       int64_t Rk, int wdt, int64_t chunk)
{
    struct omni_error e = {0};
    const int64_t E = H * P, Cd = E + 2 * N, F = E + Cd + H;
    const float eps = 1e-5f, scale = 4.0f;
    struct omni_tensor nw, win, wout, cw, cb, A, Dk, dtb, gw, la, lb;
    rnd(&nw, OMNI_DTYPE_F32, 1.0f, 1, SH(D));
    rnd(&win, wdt, 1.0f / sqrtf((float)D), 2, SH(F, D));
    rnd(&wout, wdt, 1.0f / sqrtf((float)E), 2, SH(D, E));
    rnd(&cw, OMNI_DTYPE_F32, 0.5f, 2, SH(Cd, K));
    rnd(&cb, OMNI_DTYPE_F32, 0.5f, 1, SH(Cd));
    kt_tensor(&A, OMNI_DTYPE_F32, 1, SH(H));
    kt_fill(&R, &A, -2.0f, -0.05f);
    rnd(&Dk, OMNI_DTYPE_F32, 1.0f, 1, SH(H));
    rnd(&dtb, OMNI_DTYPE_F32, 1.0f, 1, SH(H));
    rnd(&gw, OMNI_DTYPE_F32, 1.0f, 1, SH(E));
    rnd(&la, OMNI_DTYPE_F32, 0.2f, 2, SH(Rk, D));
    rnd(&lb, OMNI_DTYPE_F32, 0.2f, 2, SH(F, Rk));
    /* reference (r) and fused (f) copies of residual, previous mix and states */
    struct omni_tensor rres, rmix, rcs, rss, fres[2], fmix, fcs, fss;
    rnd(&rres, OMNI_DTYPE_F32, 1.0f, 2, SH(M, D));
    rnd(&rmix, OMNI_DTYPE_F32, 1.0f, 2, SH(M, D));
    rnd(&rcs, OMNI_DTYPE_F32, 1.0f, 3, SH(M, Cd, K));
    rnd(&rss, OMNI_DTYPE_F32, 1.0f, 4, SH(M, H, P, N));
    cpy(&fres[0], &rres), cpy(&fmix, &rmix), cpy(&fcs, &rcs), cpy(&fss, &rss);
    kt_tensor(&fres[1], OMNI_DTYPE_F32, 2, SH(M, D));
    struct omni_tensor normed, zx, xbc, y, yn, t, fn, fzx, fxbc, g, part, u;
    kt_tensor(&normed, OMNI_DTYPE_F32, 2, SH(M, D));
    kt_tensor(&zx, OMNI_DTYPE_F32, 2, SH(M, F));
    kt_tensor(&xbc, OMNI_DTYPE_F32, 2, SH(M, Cd));
    kt_tensor(&y, OMNI_DTYPE_F32, 3, SH(M, H, P));
    kt_tensor(&yn, OMNI_DTYPE_F32, 2, SH(M, E));
    kt_tensor(&t, OMNI_DTYPE_F32, 2, SH(M, Rk));
    kt_tensor(&fn, OMNI_DTYPE_F32, 2, SH(M, D));
    kt_tensor(&fzx, OMNI_DTYPE_F32, 2, SH(M, F));
    kt_tensor(&fxbc, OMNI_DTYPE_F32, 2, SH(M, Cd));
    kt_tensor(&g, OMNI_DTYPE_F32, 2, SH(M, E));
    kt_tensor(&part, OMNI_DTYPE_F32, 2, SH(M, E / chunk));
    kt_tensor(&u, OMNI_DTYPE_F32, 2, SH(M, Rk));
    int cur = 0;
    for (int step = 0; step < 2; step++) {
        /* op by op */
        OK(omni_op_add_rmsnorm(&normed, &rres, &rmix, &nw, eps, &e));
        OK(omni_op_matmul(&zx, &normed, &win, NULL, 1.0f, 0.0f, &e));
        OK(omni_op_matmul(&t, &normed, &la, NULL, 1.0f, 0.0f, &e));
        OK(omni_op_matmul(&zx, &t, &lb, NULL, scale, 1.0f, &e));
        struct omni_tensor xin = kt_slice_last(&zx, E, Cd), dt = kt_slice_last(&zx, E + Cd, H);
        struct omni_tensor z = kt_slice_last(&zx, 0, E);
        OK(omni_op_conv1d_step(&xbc, &xin, &cw, &cb, &rcs, 1, &e));
        struct omni_tensor xs = view(&xbc, 0, 3, SH(M, H, P), SH(Cd, P, 1));
        struct omni_tensor Bm = view(&xbc, E, 3, SH(M, 1, N), SH(Cd, N, 1));
        struct omni_tensor Cm = view(&xbc, E + N, 3, SH(M, 1, N), SH(Cd, N, 1));
        OK(omni_op_ssd_step(&y, &xs, &dt, &A, &Bm, &Cm, &Dk, &dtb, &rss, &e));
        struct omni_tensor y2 = view(&y, 0, 2, SH(M, E), SH(E, 1));
        OK(omni_op_gated_rmsnorm(&yn, &y2, &z, &gw, eps, E, &e));
        OK(omni_op_matmul(&rmix, &yn, &wout, NULL, 1.0f, 0.0f, &e));
        /* fused */
        OK(omni_op_decode_norm(&fn, &fres[cur ^ 1], &fres[cur], &fmix, &nw, eps, &la, &u, &e));
        cur ^= 1;
        const struct omni_decode_epilogue ein = {.u = &u, .lb = &lb, .lr_scale = scale,
                                                 .conv_out = &fxbc, .conv_state = &fcs,
                                                 .conv_w = &cw, .conv_b = &cb, .c0 = E};
        OK(omni_op_decode_gemv(&fzx, &fn, &win, NULL, 1.0f, &ein, &e));
        OK(omni_op_decode_mix(&g, &part, &fzx, &fxbc, &A, &Dk, &dtb, &gw, &fss, 1, &e));
        const struct omni_decode_epilogue eout = {.part = &part, .count = (float)E, .eps = eps};
        OK(omni_op_decode_gemv(&fmix, &g, &wout, NULL, 1.0f, &eout, &e));

        char what[64];
        const struct { const char *name; struct omni_tensor *f, *r; } cmp[] = {
            {"residual", &fres[cur], &rres}, {"normed", &fn, &normed}, {"zx", &fzx, &zx},
            {"conv out", &fxbc, &xbc},      {"conv state", &fcs, &rcs}, {"ssm state", &fss, &rss},
            {"mix", &fmix, &rmix},
        };
        for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
            const size_t n = (size_t)omni_tensor_numel(cmp[i].r);
            const double err = tu_rel_err(kt_f(cmp[i].f), kt_f(cmp[i].r), n);
            snprintf(what, sizeof what, "%s", cmp[i].name);
            ck_assert_msg(!tu_has_nan(kt_f(cmp[i].f), n), "M=%lld step %d %s: NaN", (long long)M,
                          step, what);
            ck_assert_msg(err <= 1e-6, "M=%lld E=%lld w=%s step %d %s: rel err %.3g > 1e-6",
                          (long long)M, (long long)E, omni_dtype_name(wdt), step, what, err);
        }
    }
    struct omni_tensor *all[] = {&nw, &win, &wout, &cw, &cb, &A, &Dk, &dtb, &gw, &la, &lb,
                                 &rres, &rmix, &rcs, &rss, &fres[0], &fres[1], &fmix, &fcs, &fss,
                                 &normed, &zx, &xbc, &y, &yn, &t, &fn, &fzx, &fxbc, &g, &part, &u};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kt_release(all[i]);
}

START_TEST(test_fused_layer_step_equals_op_by_op)
{
    tu_rng_seed(&R, 0x5eed0001u + (uint64_t)_i);
    layer_case(3, 64, 8, 16, 16, 4, 4, OMNI_DTYPE_F32, 8);
    layer_case(1, 64, 8, 16, 16, 4, 4, OMNI_DTYPE_F32, 16);
    layer_case(16, 256, 8, 64, 128, 4, 8, OMNI_DTYPE_BF16, 32);
    layer_case(5, 96, 6, 24, 40, 3, 3, OMNI_DTYPE_F16, 8);
}
END_TEST

/* decode_mix with an f16 or bf16 state: g and the partial sums equal those of the f32 op on
 * the same state widened to f32, and the stored state is that op's f32 result rounded to
 * the state dtype (bit for bit) */
static void mix16_case(int sdt, int64_t B, int64_t H, int64_t P, int64_t N, int64_t chunk)
{
    struct omni_error e = {0};
    const int64_t E = H * P, Cd = E + 2 * N, F = E + Cd + H;
    struct omni_tensor zx, xbc, A, Dk, dtb, gw, s16, s32, r16, g16, g32, p16, p32;
    rnd(&zx, OMNI_DTYPE_F32, 1.0f, 2, SH(B, F));
    rnd(&xbc, OMNI_DTYPE_F32, 1.0f, 2, SH(B, Cd));
    kt_tensor(&A, OMNI_DTYPE_F32, 1, SH(H));
    kt_fill(&R, &A, -2.0f, -0.05f);
    rnd(&Dk, OMNI_DTYPE_F32, 1.0f, 1, SH(H));
    rnd(&dtb, OMNI_DTYPE_F32, 1.0f, 1, SH(H));
    rnd(&gw, OMNI_DTYPE_F32, 1.0f, 1, SH(E));
    rnd(&s16, sdt, 1.0f, 4, SH(B, H, P, N));
    struct omni_tensor o16;
    cpy(&o16, &s16);
    kt_tensor(&s32, OMNI_DTYPE_F32, 4, SH(B, H, P, N));
    OK(omni_op_copy(&s32, &s16, &e));
    kt_tensor(&g16, OMNI_DTYPE_F32, 2, SH(B, E));
    kt_tensor(&g32, OMNI_DTYPE_F32, 2, SH(B, E));
    kt_tensor(&p16, OMNI_DTYPE_F32, 2, SH(B, E / chunk));
    kt_tensor(&p32, OMNI_DTYPE_F32, 2, SH(B, E / chunk));
    OK(omni_op_decode_mix(&g16, &p16, &zx, &xbc, &A, &Dk, &dtb, &gw, &s16, 1, &e));
    OK(omni_op_decode_mix(&g32, &p32, &zx, &xbc, &A, &Dk, &dtb, &gw, &s32, 1, &e));
    kt_tensor(&r16, sdt, 4, SH(B, H, P, N));
    OK(omni_op_copy(&r16, &s32, &e));
    const char *dn = omni_dtype_name(sdt);
    ck_assert_msg(tu_rel_err(kt_f(&g16), kt_f(&g32), (size_t)(B * E)) <= 1e-6, "%s state: g", dn);
    ck_assert_msg(tu_rel_err(kt_f(&p16), kt_f(&p32), (size_t)(B * E / chunk)) <= 1e-6,
                  "%s state: part", dn);
    ck_assert_msg(!memcmp(omni_tensor_data(&s16), omni_tensor_data(&r16),
                          omni_tensor_nbytes(&r16)),
                  "%s state: not the f32 update rounded", dn);
    /* and the step did update the state */
    ck_assert_msg(memcmp(omni_tensor_data(&s16), omni_tensor_data(&o16), omni_tensor_nbytes(&o16)),
                  "%s state: unchanged", dn);
    struct omni_tensor *all[] = {&zx, &xbc, &A, &Dk, &dtb, &gw, &s16, &s32, &r16,
                                 &g16, &g32, &p16, &p32, &o16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kt_release(all[i]);
}

START_TEST(test_mix_16bit_state_is_the_f32_step_rounded)
{
    tu_rng_seed(&R, 0x5eed0101u);
    mix16_case(OMNI_DTYPE_BF16, 3, 4, 16, 32, 8);
    mix16_case(OMNI_DTYPE_F16, 2, 6, 24, 40, 8);
    mix16_case(OMNI_DTYPE_BF16, 1, 2, 32, 128, 32);
}
END_TEST

START_TEST(test_rejects_bad_arguments)
{
    struct omni_error e = {0};
    struct omni_tensor r, o, w, a, u, s, zx, xbc, g, part, v4;
    rnd(&r, OMNI_DTYPE_F32, 1.0f, 2, SH(17, 8));
    rnd(&o, OMNI_DTYPE_F32, 1.0f, 2, SH(17, 8));
    rnd(&w, OMNI_DTYPE_F32, 1.0f, 1, SH(8));
    rnd(&a, OMNI_DTYPE_F32, 1.0f, 2, SH(2, 8));
    rnd(&u, OMNI_DTYPE_F32, 1.0f, 2, SH(2, 2));
    /* more than 16 rows */
    KT_ASSERT_ERR(omni_op_decode_norm(&o, &r, &r, NULL, &w, 1e-5f, NULL, NULL, &e), e, OMNI_EINVAL,
                  "at most 16");
    struct omni_tensor r2 = kt_slice_last(&r, 0, 8), o2 = o;
    r2.shape[0] = 2, o2.shape[0] = 2;
    /* res_out == res_in with a LoRA factor */
    KT_ASSERT_ERR(omni_op_decode_norm(&o2, &r2, &r2, NULL, &w, 1e-5f, &a, &u, &e), e, OMNI_EINVAL,
                  "res_out must not be res_in");
    /* decode_mix: a chunk that is not 8, 16 or 32 */
    rnd(&s, OMNI_DTYPE_F32, 1.0f, 4, SH(1, 2, 8, 4));
    rnd(&zx, OMNI_DTYPE_F32, 1.0f, 2, SH(1, 16 + 24 + 2));
    rnd(&xbc, OMNI_DTYPE_F32, 1.0f, 2, SH(1, 24));
    rnd(&g, OMNI_DTYPE_F32, 1.0f, 2, SH(1, 16));
    rnd(&part, OMNI_DTYPE_F32, 1.0f, 2, SH(1, 4));
    rnd(&v4, OMNI_DTYPE_F32, 1.0f, 1, SH(2));
    KT_ASSERT_ERR(omni_op_decode_mix(&g, &part, &zx, &xbc, &v4, &v4, &v4, &g, &s, 1, &e), e,
                  OMNI_EINVAL, "must be 8, 16 or 32");
    /* decode_mix: an integer state */
    struct omni_tensor si;
    kt_tensor(&si, OMNI_DTYPE_I32, 4, SH(1, 2, 8, 4));
    KT_ASSERT_ERR(omni_op_decode_mix(&g, &part, &zx, &xbc, &v4, &v4, &v4, &g, &si, 1, &e), e,
                  OMNI_EDTYPE, "f32, f16 or bf16");
    kt_release(&si);
    struct omni_tensor *all[] = {&r, &o, &w, &a, &u, &s, &zx, &xbc, &g, &part, &v4};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kt_release(all[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("decode");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_add_loop_test(tc, test_fused_layer_step_equals_op_by_op, 0, 3);
    tcase_add_test(tc, test_mix_16bit_state_is_the_f32_step_rounded);
    tcase_add_test(tc, test_rejects_bad_arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
