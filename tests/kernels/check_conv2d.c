/* tests/kernels/check_conv2d.c - omni_op_conv2d, omni_op_conv2d_pad and
 * omni_op_upsample_nearest2x.
 *
 * Expected values: hand-worked cases, PyTorch fixtures from
 * tests/fixtures/gen_vq.py (F.conv2d / F.pad / F.interpolate in float64), and a
 * naive direct convolution written here (double accumulation) for a table of
 * odd shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "cpu/parallel.h"

#define FIX "tests/fixtures/data/vq/ops.safetensors"

static struct omni_weights *open_fixture(void)
{
    struct omni_weights *w = NULL;
    struct omni_error err = {0};
    int rc = omni_weights_open(&w, tu_repo_path(FIX), &err);
    ck_assert_msg(rc == OMNI_OK, "open %s: %s", FIX, err.msg);
    return w;
}

static void load(struct omni_weights *w, const char *key, int dtype, struct omni_tensor *t)
{
    struct omni_error err = {0};
    int rc = omni_weights_load(w, NULL, key, dtype, 0, NULL, t, &err);
    ck_assert_msg(rc == OMNI_OK, "load %s: %s", key, err.msg);
}

static float *fdata(const struct omni_tensor *t) { return omni_tensor_data(t); }

static void alloc4(struct omni_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t shape[4] = {a, b, c, d};
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc(t, OMNI_DTYPE_F32, 4, shape, OMNI_CPU, &err), OMNI_OK);
}

/* A contiguous f32 tensor over guarded memory (canaries on both sides). */
struct guarded {
    struct omni_tensor t;
    void *mem;
};

static void noop_free(void *user) { (void)user; }

static void guarded_alloc4(struct guarded *g, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t shape[4] = {a, b, c, d};
    size_t n = (size_t)(a * b * c * d) * sizeof(float);
    struct omni_error err = {0};
    g->mem = tu_guard_alloc(n ? n : 1);
    memset(g->mem, 0xff, n); /* NaN pattern: every element must be written */
    struct omni_buffer *buf =
        omni_buffer_wrap(OMNI_CPU, g->mem, n, OMNI_BUFFER_EXTERNAL, noop_free, NULL, &err);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(omni_tensor_view(&g->t, buf, 0, OMNI_DTYPE_F32, 4, shape, &err), OMNI_OK);
    omni_buffer_unref(buf);
}

static void guarded_free(struct guarded *g)
{
    ck_assert_msg(tu_guard_ok(g->mem), "write outside the output tensor");
    omni_tensor_release(&g->t);
    tu_guard_free(g->mem);
}

/* Direct convolution in double: the definition. */
static void naive_conv(float *out, const float *x, const float *w, const float *bias, int64_t B,
                       int64_t Ci, int64_t H, int64_t W, int64_t Co, int64_t KH, int64_t KW,
                       int64_t s, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < Co; o++)
            for (int64_t y = 0; y < Ho; y++)
                for (int64_t xx = 0; xx < Wo; xx++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int64_t i = 0; i < Ci; i++)
                        for (int64_t dy = 0; dy < KH; dy++)
                            for (int64_t dx = 0; dx < KW; dx++) {
                                int64_t iy = y * s + dy - pt, ix = xx * s + dx - pl;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                acc += (double)w[((o * Ci + i) * KH + dy) * KW + dx] *
                                       x[((b * Ci + i) * H + iy) * W + ix];
                            }
                    out[((b * Co + o) * Ho + y) * Wo + xx] = (float)acc;
                }
}

/* ---------------------------------------------------------------- hand-worked */

START_TEST(test_conv2d_hand_worked_box_filter)
{
    long live = omni_buffer_live_count();
    struct omni_tensor x, w, b, y;
    struct omni_error err = {0};
    alloc4(&x, 1, 1, 3, 3);
    alloc4(&w, 1, 1, 3, 3);
    alloc4(&y, 1, 1, 3, 3);
    ck_assert_int_eq(omni_tensor_alloc_host(&b, OMNI_DTYPE_F32, 1, (int64_t)1), OMNI_OK);
    for (int i = 0; i < 9; i++) {
        fdata(&x)[i] = (float)(i + 1); /* [[1,2,3],[4,5,6],[7,8,9]] */
        fdata(&w)[i] = 1.0f;
    }
    fdata(&b)[0] = 0.5f;
    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w, &b, 1, 1, &err), OMNI_OK);
    /* sums of the 3x3 neighbourhoods inside the image */
    const float want[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(fdata(&y)[i], want[i] + 0.5f);
    omni_tensor_release(&x); omni_tensor_release(&w); omni_tensor_release(&b);
    omni_tensor_release(&y);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_conv2d_is_cross_correlation_not_flipped)
{
    /* only w[0,0,0,0] = 1: out[y, x] = in[y - 1, x - 1] (PyTorch does not flip) */
    struct omni_tensor x, w, y;
    struct omni_error err = {0};
    alloc4(&x, 1, 1, 3, 3);
    alloc4(&w, 1, 1, 3, 3);
    alloc4(&y, 1, 1, 3, 3);
    for (int i = 0; i < 9; i++)
        fdata(&x)[i] = (float)(i + 1);
    fdata(&w)[0] = 1.0f;
    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w, NULL, 1, 1, &err), OMNI_OK);
    const float want[9] = {0, 0, 0, 0, 1, 2, 0, 4, 5};
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(fdata(&y)[i], want[i]);
    omni_tensor_release(&x); omni_tensor_release(&w); omni_tensor_release(&y);
}
END_TEST

START_TEST(test_conv2d_downsample_padding_is_right_and_bottom)
{
    /* 4x4 input 0..15, 3x3 all-ones, stride 2, pads (0,0,1,1) -> 2x2:
     * (0,0) rows 0-2 cols 0-2; (0,1) rows 0-2 cols 2-4 (col 4 is padding);
     * (1,1) rows 2-4 cols 2-4 = 10+11+14+15 */
    struct omni_tensor x, w, y;
    struct omni_error err = {0};
    alloc4(&x, 1, 1, 4, 4);
    alloc4(&w, 1, 1, 3, 3);
    alloc4(&y, 1, 1, 2, 2);
    for (int i = 0; i < 16; i++)
        fdata(&x)[i] = (float)i;
    for (int i = 0; i < 9; i++)
        fdata(&w)[i] = 1.0f;
    ck_assert_int_eq(omni_op_conv2d_pad(&y, &x, &w, NULL, 2, 0, 0, 1, 1, &err), OMNI_OK);
    const float want[4] = {0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10, 2 + 3 + 6 + 7 + 10 + 11,
                           8 + 9 + 10 + 12 + 13 + 14, 10 + 11 + 14 + 15};
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(fdata(&y)[i], want[i]);
    omni_tensor_release(&x); omni_tensor_release(&w); omni_tensor_release(&y);
}
END_TEST

/* ---------------------------------------------------------------- fixtures */

START_TEST(test_conv2d_matches_torch_cases)
{
    long live = omni_buffer_live_count();
    struct omni_weights *fw = open_fixture();
    int ncases = 0;
    for (int c = 0;; c++) {
        char key[64];
        snprintf(key, sizeof(key), "conv%d_cfg", c);
        if (!omni_weights_has(fw, NULL, key))
            break;
        struct omni_tensor cfg, x, w, b, ref;
        struct guarded y;
        struct omni_error err = {0};
        load(fw, key, OMNI_DTYPE_I32, &cfg);
        snprintf(key, sizeof(key), "conv%d_x", c);
        load(fw, key, OMNI_DTYPE_F32, &x);
        snprintf(key, sizeof(key), "conv%d_w", c);
        load(fw, key, OMNI_DTYPE_F32, &w);
        snprintf(key, sizeof(key), "conv%d_b", c);
        load(fw, key, OMNI_DTYPE_F32, &b);
        snprintf(key, sizeof(key), "conv%d_out", c);
        load(fw, key, OMNI_DTYPE_F32, &ref);
        const int32_t *p = omni_tensor_data(&cfg);
        guarded_alloc4(&y, ref.shape[0], ref.shape[1], ref.shape[2], ref.shape[3]);
        int rc;
        if (p[1] == p[2] && p[2] == p[3] && p[3] == p[4])
            rc = omni_op_conv2d(&y.t, &x, &w, &b, p[0], p[1], &err);
        else
            rc = omni_op_conv2d_pad(&y.t, &x, &w, &b, p[0], p[1], p[2], p[3], p[4], &err);
        ck_assert_msg(rc == OMNI_OK, "case %d: %s", c, err.msg);
        size_t n = (size_t)omni_tensor_numel(&ref);
        ck_assert(!tu_has_nan(fdata(&y.t), n));
        double e = tu_rel_err(fdata(&y.t), fdata(&ref), n);
        ck_assert_msg(e < 1e-5, "case %d: rel err %g", c, e);
        guarded_free(&y);
        omni_tensor_release(&cfg); omni_tensor_release(&x); omni_tensor_release(&w);
        omni_tensor_release(&b); omni_tensor_release(&ref);
        ncases++;
    }
    ck_assert_int_ge(ncases, 9);
    omni_weights_close(fw);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---------------------------------------------------------------- naive parity */

struct shape_case {
    int64_t B, Ci, H, W, Co, KH, KW, s, pt, pl, pb, pr;
};

static const struct shape_case shape_cases[] = {
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},        /* a single MAC */
    {3, 5, 11, 13, 7, 3, 3, 1, 1, 1, 1, 1},
    {2, 4, 10, 17, 11, 3, 3, 2, 1, 1, 1, 1},
    {1, 3, 15, 15, 6, 3, 3, 2, 0, 0, 1, 1},
    {2, 9, 6, 5, 12, 1, 1, 1, 0, 0, 0, 0},
    {1, 30, 4, 33, 5, 3, 3, 1, 1, 1, 1, 1},      /* K = 270: two reduction blocks */
    {1, 2, 40, 9, 2, 2, 2, 1, 0, 1, 1, 0},       /* even kernel, lopsided padding */
    {2, 3, 7, 7, 17, 7, 7, 1, 3, 3, 3, 3},       /* a kernel as big as the image */
    {1, 2, 5, 300, 3, 3, 3, 1, 1, 1, 1, 1},      /* band of one row wider than BAND_PIX */
    {1, 1, 9, 9, 1, 3, 3, 3, 2, 2, 2, 2},        /* stride 3 */
};

static void run_shape_case(const struct shape_case *c, int wdtype, struct tu_rng *rng,
                           double tol, float *out_copy)
{
    const int64_t Ho = (c->pt + c->H + c->pb - c->KH) / c->s + 1;
    const int64_t Wo = (c->pl + c->W + c->pr - c->KW) / c->s + 1;
    struct omni_tensor x, w, w32, b;
    struct guarded y;
    struct omni_error err = {0};
    alloc4(&x, c->B, c->Ci, c->H, c->W);
    alloc4(&w32, c->Co, c->Ci, c->KH, c->KW);
    ck_assert_int_eq(omni_tensor_alloc_host(&b, OMNI_DTYPE_F32, 1, c->Co), OMNI_OK);
    tu_fill_normal(rng, fdata(&x), (size_t)omni_tensor_numel(&x), 1.0f);
    tu_fill_normal(rng, fdata(&w32), (size_t)omni_tensor_numel(&w32), 0.3f);
    tu_fill_normal(rng, fdata(&b), (size_t)c->Co, 0.5f);
    if (wdtype != OMNI_DTYPE_F32) {
        /* reference uses the rounded values the kernel sees */
        ck_assert_int_eq(omni_tensor_convert(&w, &w32, wdtype, &err), OMNI_OK);
        omni_tensor_release(&w32);
        ck_assert_int_eq(omni_tensor_convert(&w32, &w, OMNI_DTYPE_F32, &err), OMNI_OK);
    } else {
        omni_tensor_ref(&w, &w32);
    }
    guarded_alloc4(&y, c->B, c->Co, Ho, Wo);
    float *ref = malloc((size_t)(c->B * c->Co * Ho * Wo) * sizeof(float));
    naive_conv(ref, fdata(&x), fdata(&w32), fdata(&b), c->B, c->Ci, c->H, c->W, c->Co, c->KH,
               c->KW, c->s, c->pt, c->pl, Ho, Wo);
    int rc = omni_op_conv2d_pad(&y.t, &x, &w, &b, (int)c->s, (int)c->pt, (int)c->pl, (int)c->pb,
                                (int)c->pr, &err);
    ck_assert_msg(rc == OMNI_OK, "%s", err.msg);
    size_t n = (size_t)(c->B * c->Co * Ho * Wo);
    ck_assert(!tu_has_nan(fdata(&y.t), n));
    double e = tu_rel_err(fdata(&y.t), ref, n);
    ck_assert_msg(e < tol, "B%lld Ci%lld %lldx%lld Co%lld k%lldx%lld s%lld (%s w): rel err %g",
                  (long long)c->B, (long long)c->Ci, (long long)c->H, (long long)c->W,
                  (long long)c->Co, (long long)c->KH, (long long)c->KW, (long long)c->s,
                  omni_dtype_name(wdtype), e);
    if (out_copy)
        memcpy(out_copy, fdata(&y.t), n * sizeof(float));
    free(ref);
    guarded_free(&y);
    omni_tensor_release(&x); omni_tensor_release(&w); omni_tensor_release(&w32);
    omni_tensor_release(&b);
}

START_TEST(test_conv2d_matches_naive_odd_shapes)
{
    long live = omni_buffer_live_count();
    struct tu_rng rng;
    tu_rng_seed(&rng, 1234);
    for (size_t i = 0; i < OMNI_ARRAY_LEN(shape_cases); i++)
        run_shape_case(&shape_cases[i], OMNI_DTYPE_F32, &rng, 1e-5, NULL);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_conv2d_half_weights_match_naive)
{
    long live = omni_buffer_live_count();
    struct tu_rng rng;
    tu_rng_seed(&rng, 99);
    for (size_t i = 1; i < 4; i++) {
        run_shape_case(&shape_cases[i], OMNI_DTYPE_F16, &rng, 1e-5, NULL);
        run_shape_case(&shape_cases[i], OMNI_DTYPE_BF16, &rng, 1e-5, NULL);
    }
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_conv2d_portable_path_matches_naive)
{
    long live = omni_buffer_live_count();
    struct tu_rng rng;
    tu_rng_seed(&rng, 4321);
    omni_cpu_set_simd(0);
    for (size_t i = 0; i < OMNI_ARRAY_LEN(shape_cases); i++)
        run_shape_case(&shape_cases[i], OMNI_DTYPE_F32, &rng, 1e-5, NULL);
    run_shape_case(&shape_cases[2], OMNI_DTYPE_BF16, &rng, 1e-5, NULL);
    omni_cpu_set_simd(1);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_conv2d_same_result_for_any_thread_count)
{
    const struct shape_case *c = &shape_cases[2];
    const int64_t Ho = (c->pt + c->H + c->pb - c->KH) / c->s + 1;
    const int64_t Wo = (c->pl + c->W + c->pr - c->KW) / c->s + 1;
    size_t n = (size_t)(c->B * c->Co * Ho * Wo);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    struct tu_rng rng;
    tu_rng_seed(&rng, 7);
    omni_parallel_set_threads(1);
    run_shape_case(c, OMNI_DTYPE_F32, &rng, 1e-5, a);
    for (int t = 2; t <= 5; t++) {
        tu_rng_seed(&rng, 7);
        omni_parallel_set_threads(t);
        run_shape_case(c, OMNI_DTYPE_F32, &rng, 1e-5, b);
        ck_assert_msg(memcmp(a, b, n * sizeof(float)) == 0, "%d threads differ from 1", t);
    }
    omni_parallel_set_threads(0);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_conv2d_without_bias)
{
    struct omni_tensor x, w, y;
    struct omni_error err = {0};
    struct tu_rng rng;
    tu_rng_seed(&rng, 5);
    alloc4(&x, 1, 2, 4, 4);
    alloc4(&w, 3, 2, 1, 1);
    alloc4(&y, 1, 3, 4, 4);
    tu_fill_normal(&rng, fdata(&x), 32, 1.0f);
    tu_fill_normal(&rng, fdata(&w), 6, 1.0f);
    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w, NULL, 1, 0, &err), OMNI_OK);
    for (int o = 0; o < 3; o++)
        for (int p = 0; p < 16; p++) {
            float want = fdata(&w)[o * 2] * fdata(&x)[p] + fdata(&w)[o * 2 + 1] * fdata(&x)[16 + p];
            ck_assert_float_eq_tol(fdata(&y)[o * 16 + p], want, 1e-6f);
        }
    omni_tensor_release(&x); omni_tensor_release(&w); omni_tensor_release(&y);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_conv2d_rejects_bad_arguments)
{
    long live = omni_buffer_live_count();
    struct omni_tensor x, w, y, ybad, b5, xi;
    struct omni_error err = {0};
    alloc4(&x, 1, 4, 6, 6);
    alloc4(&w, 5, 4, 3, 3);
    alloc4(&y, 1, 5, 6, 6);
    alloc4(&ybad, 1, 5, 5, 6);
    ck_assert_int_eq(omni_tensor_alloc_host(&b5, OMNI_DTYPE_F32, 1, (int64_t)4), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc_host(&xi, OMNI_DTYPE_I32, 4, (int64_t)1, (int64_t)4,
                                            (int64_t)6, (int64_t)6), OMNI_OK);

    ck_assert_int_eq(omni_op_conv2d(&ybad, &x, &w, NULL, 1, 1, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[1,5,5,6]") && strstr(err.msg, "[1,5,6,6]"), "%s", err.msg);

    struct omni_tensor w3;
    alloc4(&w3, 5, 3, 3, 3);
    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w3, NULL, 1, 1, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "Cin"), "%s", err.msg);

    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w, &b5, 1, 1, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "bias"), "%s", err.msg);

    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w, NULL, 0, 1, &err), OMNI_EINVAL);
    ck_assert_int_eq(omni_op_conv2d(&y, &x, &w, NULL, 1, -1, &err), OMNI_EINVAL);
    ck_assert_int_eq(omni_op_conv2d(&y, &xi, &w, NULL, 1, 1, &err), OMNI_EDTYPE);

    struct omni_tensor big, ysmall;
    alloc4(&big, 5, 4, 9, 9);
    alloc4(&ysmall, 1, 5, 1, 1);
    ck_assert_int_eq(omni_op_conv2d(&ysmall, &x, &big, NULL, 1, 1, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "does not fit"), "%s", err.msg);

    /* out aliasing x */
    struct omni_tensor wsq, alias;
    alloc4(&wsq, 4, 4, 3, 3);
    omni_tensor_ref(&alias, &x);
    ck_assert_int_eq(omni_op_conv2d(&alias, &x, &wsq, NULL, 1, 1, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "overlaps"), "%s", err.msg);

    omni_tensor_release(&x); omni_tensor_release(&w); omni_tensor_release(&y);
    omni_tensor_release(&ybad); omni_tensor_release(&b5); omni_tensor_release(&xi);
    omni_tensor_release(&w3); omni_tensor_release(&big); omni_tensor_release(&ysmall);
    omni_tensor_release(&wsq); omni_tensor_release(&alias);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---------------------------------------------------------------- upsample */

START_TEST(test_upsample_hand_worked)
{
    struct omni_tensor x, y;
    struct omni_error err = {0};
    alloc4(&x, 1, 1, 2, 3);
    alloc4(&y, 1, 1, 4, 6);
    for (int i = 0; i < 6; i++)
        fdata(&x)[i] = (float)(i + 1); /* [[1,2,3],[4,5,6]] */
    ck_assert_int_eq(omni_op_upsample_nearest2x(&y, &x, &err), OMNI_OK);
    const float want[24] = {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3,
                            4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6};
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(fdata(&y)[i], want[i]);
    omni_tensor_release(&x); omni_tensor_release(&y);
}
END_TEST

START_TEST(test_upsample_matches_torch)
{
    long live = omni_buffer_live_count();
    struct omni_weights *fw = open_fixture();
    struct omni_tensor x, ref;
    struct guarded y;
    struct omni_error err = {0};
    load(fw, "up0_x", OMNI_DTYPE_F32, &x);
    load(fw, "up0_out", OMNI_DTYPE_F32, &ref);
    guarded_alloc4(&y, ref.shape[0], ref.shape[1], ref.shape[2], ref.shape[3]);
    ck_assert_int_eq(omni_op_upsample_nearest2x(&y.t, &x, &err), OMNI_OK);
    ck_assert(memcmp(fdata(&y.t), fdata(&ref), omni_tensor_nbytes(&ref)) == 0);
    guarded_free(&y);
    omni_tensor_release(&x); omni_tensor_release(&ref);
    omni_weights_close(fw);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_upsample_rejects_wrong_output_shape)
{
    struct omni_tensor x, y;
    struct omni_error err = {0};
    alloc4(&x, 1, 2, 3, 3);
    alloc4(&y, 1, 2, 6, 5);
    ck_assert_int_eq(omni_op_upsample_nearest2x(&y, &x, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[1,2,6,5]") && strstr(err.msg, "[1,2,6,6]"), "%s", err.msg);
    omni_tensor_release(&x); omni_tensor_release(&y);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("conv2d");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conv2d_hand_worked_box_filter);
    tcase_add_test(tc, test_conv2d_is_cross_correlation_not_flipped);
    tcase_add_test(tc, test_conv2d_downsample_padding_is_right_and_bottom);
    tcase_add_test(tc, test_conv2d_matches_torch_cases);
    tcase_add_test(tc, test_conv2d_matches_naive_odd_shapes);
    tcase_add_test(tc, test_conv2d_half_weights_match_naive);
    tcase_add_test(tc, test_conv2d_portable_path_matches_naive);
    tcase_add_test(tc, test_conv2d_same_result_for_any_thread_count);
    tcase_add_test(tc, test_conv2d_without_bias);
    tcase_add_test(tc, test_conv2d_rejects_bad_arguments);
    tcase_add_test(tc, test_upsample_hand_worked);
    tcase_add_test(tc, test_upsample_matches_torch);
    tcase_add_test(tc, test_upsample_rejects_wrong_output_shape);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
