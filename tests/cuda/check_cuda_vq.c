/* tests/cuda/check_cuda_vq.c - the VQ decoder's fused ops on CUDA against
 * their CPU twins, and the whole VQ-16 decoder at full size.
 *
 * omni_op_groupnorm_coef: coefficients within 1e-5 of max|ref| (both sides
 * keep the statistics in double; the CUDA side merges chunks). Shapes cover
 * one chunk, many chunks per group, odd sizes and a large common offset.
 * omni_op_conv2d_fused: GroupNorm coefficients, SiLU, nearest x2 and the
 * residual (separate, or out itself) in every combination the decoder uses,
 * input channels that are not a multiple of the K tile, Cout 3 / 5 / 70 /
 * 128 / 256, pixel counts that end mid-tile; f32 weights within 1e-4, f16 and
 * bf16 within 2e-2 (the input is rounded to the weight dtype). Fresh random
 * inputs every run (seed printed), NaN-filled guarded outputs.
 * The decoder: synthetic full-size VQ-16 weights (bench_model.c) in bf16,
 * two images of random codes, CUDA vs CPU within 2e-2. */
#include <math.h>
#include <time.h>

#include "cudatest.h"
#include "../../core/cli/bench_model.h"

#ifdef OMNI_HAVE_CUDA

static struct omni_error err;

#define OK(expr)                                                                                   \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        ck_assert_msg(rc_ == OMNI_OK, "%s: %s", #expr, err.msg);                                   \
    } while (0)

/* ---- GroupNorm coefficients ------------------------------------------------------------------ */

static void one_coef(int64_t B, int64_t C, int64_t S, int64_t G, float offset)
{
    struct omni_tensor hx, dx, hw, dw, hb, db, hc, dc;
    char what[128];
    pair(&hx, &dx, OMNI_DTYPE_F32, 2, 3, SH(B, C, S));
    if (offset != 0.0f) {
        float *p = kt_f(&hx);
        for (int64_t i = 0; i < B * C * S; i++)
            p[i] += offset;
        omni_tensor_release(&dx);
        ct_up(&dx, &hx);
    }
    pair(&hw, &dw, OMNI_DTYPE_F32, 1, 1, SH(C));
    pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(C));
    kt_tensor(&hc, OMNI_DTYPE_F32, 3, SH(B, C, 4));
    ct_dalloc(&dc, OMNI_DTYPE_F32, 3, SH(B, C, 4));
    OK(omni_op_groupnorm_coef(&hc, &hx, &hw, &hb, (int)G, 1e-6f, &err));
    OK(omni_op_groupnorm_coef(&dc, &dx, &dw, &db, (int)G, 1e-6f, &err));
    ct_sync();
    snprintf(what, sizeof what, "groupnorm_coef B=%lld C=%lld S=%lld G=%lld offset %g",
             (long long)B, (long long)C, (long long)S, (long long)G, (double)offset);
    ct_cmp_dev(what, &dc, &hc, 1e-5);
    /* the hi + lo mean and the scale are what matter: check them one by one too */
    struct omni_tensor got;
    ct_down(&got, &dc);
    const float *g = kt_f(&got), *r = kt_f(&hc);
    for (int64_t i = 0; i < B * C; i++) {
        const double mg = (double)g[4 * i] + g[4 * i + 1], mr = (double)r[4 * i] + r[4 * i + 1];
        ck_assert_msg(fabs(mg - mr) <= 1e-6 * (fabs(mr) + 1.0), "%s: mean of row %lld %.9g vs %.9g",
                      what, (long long)i, mg, mr);
        ck_assert_msg(fabs(g[4 * i + 2] - r[4 * i + 2]) <= 1e-5 * fabs(r[4 * i + 2]) + 1e-12,
                      "%s: scale of row %lld %.9g vs %.9g", what, (long long)i, g[4 * i + 2],
                      r[4 * i + 2]);
    }
    kt_release(&got);
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hc, &dc);
}

START_TEST(test_groupnorm_coef_matches_cpu)
{
    one_coef(2, 64, 81, 32, 0.0f);       /* one partial chunk per group */
    one_coef(2, 128, 128 * 128, 32, 0.0f); /* 16 chunks per group */
    one_coef(1, 96, 4099, 32, 0.0f);     /* chunks that end mid-run */
    one_coef(3, 6, 5, 3, 0.0f);
    one_coef(2, 64, 1000, 8, 300.0f);    /* a mean far from 0 */
}
END_TEST

/* ---- fused convolution ------------------------------------------------------------------- */

enum { F_COEF = 1, F_SILU = 2, F_UP = 4, F_RES = 8, F_RES_OUT = 16, F_NOBIAS = 32 };

static void one_fused(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k,
                      int flags, int wdt)
{
    const int pad = (int)(k / 2), up = (flags & F_UP) ? 1 : 0;
    const int64_t Hc = H << up, Wc = W << up, Ho = Hc + 2 * pad - k + 1, Wo = Wc + 2 * pad - k + 1;
    struct omni_tensor hx, dx, hw, dw, hb, db, hc, dc, hr, dr, ho, dout, gw, gb;
    char what[200];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1.5f, 4, SH(B, Cin, H, W));
    pair(&hw, &dw, wdt, 0.1f, 4, SH(Cout, Cin, k, k));
    pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(Cout));
    const int coef = (flags & F_COEF) != 0;
    if (coef) { /* real GroupNorm coefficients of x, the same on both sides */
        const int G = Cin % 4 == 0 ? 4 : 1;
        ct_hrand(&gw, &R, OMNI_DTYPE_F32, 1, 1, SH(Cin));
        ct_hrand(&gb, &R, OMNI_DTYPE_F32, 1, 1, SH(Cin));
        kt_tensor(&hc, OMNI_DTYPE_F32, 3, SH(B, Cin, 4));
        OK(omni_op_groupnorm_coef(&hc, &hx, &gw, &gb, G, 1e-6f, &err));
        ct_up(&dc, &hc);
        kt_release(&gw);
        kt_release(&gb);
    }
    const int res = (flags & (F_RES | F_RES_OUT)) != 0;
    if (res)
        pair(&hr, &dr, OMNI_DTYPE_F32, 1, 4, SH(B, Cout, Ho, Wo));
    if (flags & F_RES_OUT) { /* out starts as the residual and is added to in place */
        ct_hrand(&ho, &R, OMNI_DTYPE_F32, 1, 4, SH(B, Cout, Ho, Wo));
        memcpy(kt_f(&ho), kt_f(&hr), (size_t)omni_tensor_nbytes(&hr));
        ct_up(&dout, &ho);
    } else {
        kt_tensor(&ho, OMNI_DTYPE_F32, 4, SH(B, Cout, Ho, Wo));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 4, SH(B, Cout, Ho, Wo));
    }
    const struct omni_tensor *hres = !res ? NULL : (flags & F_RES_OUT) ? &ho : &hr;
    const struct omni_tensor *dres = !res ? NULL : (flags & F_RES_OUT) ? &dout : &dr;
    const int silu = (flags & F_SILU) != 0, nob = (flags & F_NOBIAS) != 0;
    OK(omni_op_conv2d_fused(&ho, &hx, &hw, nob ? NULL : &hb, pad, coef ? &hc : NULL, silu, up, hres,
                            &err));
    OK(omni_op_conv2d_fused(&dout, &dx, &dw, nob ? NULL : &db, pad, coef ? &dc : NULL, silu, up,
                            dres, &err));
    ct_sync();
    snprintf(what, sizeof what,
             "conv2d_fused B=%lld Cin=%lld %lldx%lld Cout=%lld k=%lld coef%d silu%d up%d res%d "
             "res=out%d bias%d w=%s",
             (long long)B, (long long)Cin, (long long)H, (long long)W, (long long)Cout,
             (long long)k, coef, silu, up, (flags & F_RES) != 0, (flags & F_RES_OUT) != 0, !nob,
             omni_dtype_name(wdt));
    ct_cmp_dev(what, &dout, &ho, wdt == OMNI_DTYPE_F32 ? 1e-4 : 2e-2);
    /* the fused op is the unfused sequence: check the CPU side against it once */
    if (wdt == OMNI_DTYPE_F32 && coef && silu && !up && !nob && !(flags & F_RES_OUT)) {
        struct omni_tensor a, ref;
        kt_tensor(&a, OMNI_DTYPE_F32, 4, SH(B, Cin, H, W));
        kt_tensor(&ref, OMNI_DTYPE_F32, 4, SH(B, Cout, Ho, Wo));
        const float *c = kt_f(&hc), *xs = kt_f(&hx);
        float *ap = kt_f(&a);
        for (int64_t i = 0; i < B * Cin; i++)
            for (int64_t s = 0; s < H * W; s++) {
                float v = ((xs[i * H * W + s] - c[4 * i]) - c[4 * i + 1]) * c[4 * i + 2] + c[4 * i + 3];
                ap[i * H * W + s] = v / (1.0f + expf(-v));
            }
        OK(omni_op_conv2d(&ref, &a, &hw, &hb, 1, pad, &err));
        if (res)
            OK(omni_op_add(&ref, &ref, &hr, &err));
        ck_assert_msg(tu_rel_err(kt_f(&ho), kt_f(&ref), (size_t)omni_tensor_numel(&ref)) == 0.0,
                      "%s: the CPU twin differs from GroupNorm coefficients -> SiLU -> conv -> add",
                      what);
        kt_release(&a);
        kt_release(&ref);
    }
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&ho, &dout);
    if (coef)
        rel2(&hc, &dc);
    if (res)
        rel2(&hr, &dr);
}

START_TEST(test_conv2d_fused_matches_cpu)
{
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        const int wdt = dts[d];
        one_fused(2, 64, 16, 16, 128, 3, F_COEF | F_SILU | F_RES, wdt); /* res block conv2 */
        one_fused(1, 40, 9, 7, 5, 3, F_COEF | F_UP, wdt);              /* odd everything */
        one_fused(3, 8, 5, 6, 70, 1, F_SILU | F_RES_OUT, wdt);          /* 1x1, residual = out */
        one_fused(2, 256, 32, 32, 256, 3, F_COEF | F_SILU | F_RES_OUT, wdt);
        one_fused(1, 128, 64, 64, 3, 3, F_COEF | F_SILU, wdt);          /* conv_out */
        one_fused(2, 64, 16, 16, 64, 3, F_UP, wdt);                     /* upsample conv */
        one_fused(1, 32, 7, 9, 130, 3, 0, wdt);                         /* plain, Cout past a tile */
        /* each unfolding kernel: 3x3 with Wo % 8 == 0 above; Wo % 4 == 0 (3x3, 1x1, 5x5) */
        one_fused(2, 24, 6, 12, 40, 3, F_COEF | F_SILU, wdt);
        one_fused(2, 48, 8, 4, 24, 1, F_RES, wdt);
        one_fused(1, 8, 4, 6, 16, 5, F_COEF | F_UP, wdt);
        /* no bias: nothing added, with and without a residual */
        one_fused(2, 16, 8, 8, 24, 3, F_COEF | F_SILU | F_NOBIAS, wdt);
        one_fused(2, 16, 8, 8, 24, 3, F_RES_OUT | F_NOBIAS, wdt);
        one_fused(1, 16, 6, 10, 20, 1, F_RES | F_NOBIAS, wdt);
    }
}
END_TEST

/* ---- the decoder at full size ------------------------------------------------------------- */

static const char *bench_dir(void)
{
    static char d[1024];
    const char *e = getenv("OMNI_BENCH_DIR"), *t = getenv("TMPDIR");
    if (e && *e)
        snprintf(d, sizeof d, "%s", e);
    else
        snprintf(d, sizeof d, "%s/omni-bench", t && *t ? t : "/tmp");
    return d;
}

START_TEST(test_vq16_decoder_bf16_cuda_matches_cpu)
{
    struct omb_paths p;
    struct omni_harness *c, *g;
    OK(omb_weights(bench_dir(), 1, OMB_VQ, &p, &err));
    OK(omb_vq_open(&c, &p, "cpu", "bf16", &err));
    OK(omb_vq_open(&g, &p, "cuda:0", "bf16", &err));
    struct omni_tensor codes;
    int32_t *cp = kt_tensor(&codes, OMNI_DTYPE_I32, 2, SH(2, 256));
    for (int i = 0; i < 512; i++)
        cp[i] = (int32_t)(tu_rng_u64(&R) % 16384);
    OK(omni_harness_push(c, "codes", &codes, &err));
    OK(omni_harness_push(g, "codes", &codes, &err));
    OK(omni_harness_forward(c, &err));
    OK(omni_harness_forward(g, &err));
    ct_sync();
    const struct omni_tensor *hi = omni_harness_pull(c, "image"), *di = omni_harness_pull(g, "image");
    ck_assert_int_eq(omni_tensor_numel(hi), 2 * 3 * 256 * 256);
    ck_assert_int_eq(omni_tensor_numel(di), omni_tensor_numel(hi));
    struct omni_tensor got;
    kt_tensor(&got, OMNI_DTYPE_F32, 4, SH(2, 3, 256, 256));
    CT_CUDA(cudaMemcpy(kt_f(&got), omni_tensor_data(di), omni_tensor_nbytes(di),
                       cudaMemcpyDeviceToHost));
    ct_cmp("VQ-16 decode bf16", kt_f(&got), omni_tensor_data(hi), (size_t)omni_tensor_numel(hi),
           2e-2);
    kt_release(&got);
    kt_release(&codes);
    omni_harness_free(c);
    omni_harness_free(g);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cuda_vq");
    TCase *t = tcase_create("vq");
    tcase_add_checked_fixture(t, ct_setup, ct_teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_groupnorm_coef_matches_cpu);
    tcase_add_test(t, test_conv2d_fused_matches_cpu);
    tcase_add_test(t, test_vq16_decoder_bf16_cuda_matches_cpu);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return ct_main("check_cuda_vq", suite); }

#else /* !OMNI_HAVE_CUDA */

int main(void) { return ct_main_without_cuda("check_cuda_vq"); }

#endif
