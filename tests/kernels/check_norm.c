/* tests/kernels/check_norm.c - RMSNorm, fused add + RMSNorm and gated RMSNorm
 * on the CPU: hand-worked values, PyTorch fixtures, views, threads, errors. */
#include <stdlib.h>

#include "cpu/parallel.h"
#include "ktest.h"

static void load_fixture(struct omni_weights **w, const char *file)
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
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
}

START_TEST(test_rmsnorm_hand_worked)
{
    /* x = [3,4], w = [1,2], eps = 0: mean(x^2) = 12.5, rstd = 1/sqrt(12.5) = 0.28284271
     * out = [0.84852814, 2 * 1.13137085] = [0.84852814, 2.2627417] */
    struct omni_tensor x, w, out;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 1, (int64_t)2);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    xp[0] = 3, xp[1] = 4, wp[0] = 1, wp[1] = 2;
    ck_assert_int_eq(omni_op_rmsnorm(&out, &x, &w, 0.0f, &e), OMNI_OK);
    ck_assert_float_eq_tol(op[0], 0.84852814f, 1e-6);
    ck_assert_float_eq_tol(op[1], 2.2627417f, 1e-6);
    /* in place (out aliases x) gives the same */
    ck_assert_int_eq(omni_op_rmsnorm(&x, &x, &w, 0.0f, &e), OMNI_OK);
    ck_assert_float_eq(xp[0], op[0]);
    ck_assert_float_eq(xp[1], op[1]);
    kt_release(&x), kt_release(&w), kt_release(&out);
}
END_TEST

START_TEST(test_add_rmsnorm_hand_worked_and_layer0_without_x)
{
    /* residual [1,2] + x [2,2] = [3,4]; then as in test_rmsnorm_hand_worked */
    struct omni_tensor r, x, w, out;
    struct omni_error e;
    float *rp = kt_tensorv(&r, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 1, (int64_t)2);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    rp[0] = 1, rp[1] = 2, xp[0] = 2, xp[1] = 2, wp[0] = 1, wp[1] = 2;
    ck_assert_int_eq(omni_op_add_rmsnorm(&out, &r, &x, &w, 0.0f, &e), OMNI_OK);
    ck_assert_float_eq(rp[0], 3.0f);
    ck_assert_float_eq(rp[1], 4.0f);
    ck_assert_float_eq_tol(op[0], 0.84852814f, 1e-6);
    ck_assert_float_eq_tol(op[1], 2.2627417f, 1e-6);
    memset(op, 0xff, 8);
    ck_assert_int_eq(omni_op_add_rmsnorm(&out, &r, NULL, &w, 0.0f, &e), OMNI_OK); /* layer 0 */
    ck_assert_float_eq(rp[0], 3.0f);
    ck_assert_float_eq(rp[1], 4.0f);
    ck_assert_float_eq_tol(op[0], 0.84852814f, 1e-6);
    ck_assert_float_eq_tol(op[1], 2.2627417f, 1e-6);
    KT_ASSERT_ERR(omni_op_add_rmsnorm(&r, &r, &x, &w, 0.0f, &e), e, OMNI_EINVAL, "out and residual");
    kt_release(&r), kt_release(&x), kt_release(&w), kt_release(&out);
}
END_TEST

START_TEST(test_gated_rmsnorm_hand_worked_gate_before_norm)
{
    /* y = [3,4], z = [30,30]: silu(30) = 30/(1+e^-30) = 30 in f32, g = [90,120];
     * one group of 2: mean(g^2) = 11250, rstd = 1/106.066017; w = [1,2]
     * out = [0.84852814, 2.2627417] (gate first, then normalise).
     * Groups of 1 (eps 0): out = sign(g) * w = [1, 2].
     * z = [0, 30] (silu(0) = 0), groups of 1, eps 1: g = [0, 120] -> [0, 120/sqrt(14401)*2] */
    struct omni_tensor y, z, w, out;
    struct omni_error e;
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *zp = kt_tensorv(&z, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 1, (int64_t)2);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    yp[0] = 3, yp[1] = 4, zp[0] = 30, zp[1] = 30, wp[0] = 1, wp[1] = 2;
    ck_assert_int_eq(omni_op_gated_rmsnorm(&out, &y, &z, &w, 0.0f, 2, &e), OMNI_OK);
    ck_assert_float_eq_tol(op[0], 0.84852814f, 1e-6);
    ck_assert_float_eq_tol(op[1], 2.2627417f, 1e-6);
    ck_assert_int_eq(omni_op_gated_rmsnorm(&out, &y, &z, &w, 0.0f, 1, &e), OMNI_OK);
    ck_assert_float_eq_tol(op[0], 1.0f, 1e-6);
    ck_assert_float_eq_tol(op[1], 2.0f, 1e-6);
    zp[0] = 0;
    ck_assert_int_eq(omni_op_gated_rmsnorm(&out, &y, &z, &w, 1.0f, 1, &e), OMNI_OK);
    ck_assert_float_eq(op[0], 0.0f);
    ck_assert_float_eq_tol(op[1], 2.0f * 120.0f / sqrtf(14401.0f), 1e-6);
    kt_release(&y), kt_release(&z), kt_release(&w), kt_release(&out);
}
END_TEST

START_TEST(test_rmsnorm_matches_pytorch_fixture)
{
    struct omni_weights *f;
    struct omni_error e;
    load_fixture(&f, "rmsnorm.safetensors");
    struct omni_tensor x, w, res, ref, add_res, add_ref, out;
    get(f, "x", &x), get(f, "w", &w), get(f, "residual", &res), get(f, "out", &ref);
    get(f, "add_residual", &add_res), get(f, "add_out", &add_ref);
    size_t n = (size_t)omni_tensor_numel(&x);
    kt_tensor(&out, OMNI_DTYPE_F32, x.ndim, x.shape);
    ck_assert_int_eq(omni_op_rmsnorm(&out, &x, &w, 1e-5f, &e), OMNI_OK);
    ck_assert_msg(tu_rel_err(kt_f(&out), kt_f(&ref), n) < 1e-6, "rmsnorm rel err %.3g",
                  tu_rel_err(kt_f(&out), kt_f(&ref), n));
    ck_assert_int_eq(omni_op_add_rmsnorm(&out, &res, &x, &w, 1e-5f, &e), OMNI_OK);
    ck_assert(tu_rel_err(kt_f(&res), kt_f(&add_res), n) < 1e-6);
    ck_assert(tu_rel_err(kt_f(&out), kt_f(&add_ref), n) < 1e-6);
    kt_release(&out);
    omni_tensor_release(&x), omni_tensor_release(&w), omni_tensor_release(&res);
    omni_tensor_release(&ref), omni_tensor_release(&add_res), omni_tensor_release(&add_ref);
    omni_weights_close(f);
}
END_TEST

START_TEST(test_gated_rmsnorm_matches_pytorch_fixture_groups_64_and_16)
{
    struct omni_weights *f;
    struct omni_error e;
    load_fixture(&f, "gated.safetensors");
    struct omni_tensor y, z, w, r64, r16, out;
    get(f, "y", &y), get(f, "z", &z), get(f, "w", &w), get(f, "out_g64", &r64), get(f, "out_g16", &r16);
    size_t n = (size_t)omni_tensor_numel(&y);
    kt_tensor(&out, OMNI_DTYPE_F32, y.ndim, y.shape);
    ck_assert_int_eq(omni_op_gated_rmsnorm(&out, &y, &z, &w, 1e-5f, 64, &e), OMNI_OK);
    ck_assert_msg(tu_rel_err(kt_f(&out), kt_f(&r64), n) < 2e-6, "g64 rel err %.3g",
                  tu_rel_err(kt_f(&out), kt_f(&r64), n));
    ck_assert_int_eq(omni_op_gated_rmsnorm(&out, &y, &z, &w, 1e-5f, 16, &e), OMNI_OK);
    ck_assert_msg(tu_rel_err(kt_f(&out), kt_f(&r16), n) < 2e-6, "g16 rel err %.3g",
                  tu_rel_err(kt_f(&out), kt_f(&r16), n));
    kt_release(&out);
    omni_tensor_release(&y), omni_tensor_release(&z), omni_tensor_release(&w);
    omni_tensor_release(&r64), omni_tensor_release(&r16);
    omni_weights_close(f);
}
END_TEST

/* double reference of the gated norm for the view / thread tests */
static void ref_gated(float *ref, const float *y, int64_t ldy, const float *z, int64_t ldz,
                      const float *w, int64_t M, int64_t E, int64_t G, double eps)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t g0 = 0; g0 < E; g0 += G) {
            double ss = 0;
            for (int64_t i = g0; i < g0 + G; i++) {
                double zz = z[m * ldz + i], g = y[m * ldy + i] * zz / (1 + exp(-zz));
                ss += g * g;
            }
            double rstd = 1 / sqrt(ss / G + eps);
            for (int64_t i = g0; i < g0 + G; i++) {
                double zz = z[m * ldz + i], g = y[m * ldy + i] * zz / (1 + exp(-zz));
                ref[m * E + i] = (float)(g * rstd * w[i]);
            }
        }
}

START_TEST(test_gated_rmsnorm_on_views_of_one_projection_buffer)
{
    /* zxbcdt-like (B=2, T=3, 3E) buffer: z = cols [0,E), y = cols [E, 2E); the
     * leading dims (2,3) collapse into 6 rows of stride 3E */
    const int64_t E = 48, M = 6;
    struct tu_rng r;
    tu_rng_seed(&r, 31);
    struct omni_tensor buf, w, out;
    struct omni_error e;
    float *bp = kt_tensorv(&buf, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, 3 * E);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 1, E);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, E);
    tu_fill_uniform(&r, bp, (size_t)(M * 3 * E), -3, 3);
    tu_fill_uniform(&r, wp, (size_t)E, 0.5f, 1.5f);
    struct omni_tensor z = kt_slice_last(&buf, 0, E), y = kt_slice_last(&buf, E, E);
    float ref[6 * 48];
    ref_gated(ref, bp + E, 3 * E, bp, 3 * E, wp, M, E, 12, 1e-5);
    ck_assert_int_eq(omni_op_gated_rmsnorm(&out, &y, &z, &w, 1e-5f, 12, &e), OMNI_OK);
    ck_assert(!tu_has_nan(op, (size_t)(M * E)));
    ck_assert_msg(tu_rel_err(op, ref, (size_t)(M * E)) < 2e-6, "rel err %.3g", tu_rel_err(op, ref, (size_t)(M * E)));
    kt_release(&buf), kt_release(&w), kt_release(&out);
}
END_TEST

START_TEST(test_norms_threads_1_and_2_identical_on_many_rows)
{
    const int64_t M = 40, D = 2048; /* above the kernel's threading threshold */
    struct tu_rng r;
    tu_rng_seed(&r, 41);
    struct omni_tensor x, z, w, o1, o2, r1, r2;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, M, D);
    float *zp = kt_tensorv(&z, OMNI_DTYPE_F32, 2, M, D);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 1, D);
    float *a = kt_tensorv(&o1, OMNI_DTYPE_F32, 2, M, D);
    float *b = kt_tensorv(&o2, OMNI_DTYPE_F32, 2, M, D);
    float *ra = kt_tensorv(&r1, OMNI_DTYPE_F32, 2, M, D);
    float *rb = kt_tensorv(&r2, OMNI_DTYPE_F32, 2, M, D);
    tu_fill_uniform(&r, xp, (size_t)(M * D), -2, 2);
    tu_fill_uniform(&r, zp, (size_t)(M * D), -2, 2);
    tu_fill_uniform(&r, wp, (size_t)D, 0.5f, 1.5f);
    tu_fill_uniform(&r, ra, (size_t)(M * D), -2, 2);
    memcpy(rb, ra, sizeof(float) * (size_t)(M * D));
    size_t n = (size_t)(M * D);
    omni_parallel_set_threads(1);
    ck_assert_int_eq(omni_op_add_rmsnorm(&o1, &r1, &x, &w, 1e-5f, &e), OMNI_OK);
    omni_parallel_set_threads(2);
    ck_assert_int_eq(omni_op_add_rmsnorm(&o2, &r2, &x, &w, 1e-5f, &e), OMNI_OK);
    ck_assert(memcmp(a, b, n * 4) == 0 && memcmp(ra, rb, n * 4) == 0);
    omni_parallel_set_threads(1);
    ck_assert_int_eq(omni_op_gated_rmsnorm(&o1, &x, &z, &w, 1e-5f, 2048, &e), OMNI_OK);
    omni_parallel_set_threads(2);
    ck_assert_int_eq(omni_op_gated_rmsnorm(&o2, &x, &z, &w, 1e-5f, 2048, &e), OMNI_OK);
    ck_assert(memcmp(a, b, n * 4) == 0);
    float *ref = malloc(n * 4);
    ref_gated(ref, xp, D, zp, D, wp, M, D, D, 1e-5);
    ck_assert_msg(tu_rel_err(b, ref, n) < 1e-5, "rel err %.3g", tu_rel_err(b, ref, n));
    free(ref);
    omni_parallel_set_threads(0);
    kt_release(&x), kt_release(&z), kt_release(&w), kt_release(&o1), kt_release(&o2);
    kt_release(&r1), kt_release(&r2);
}
END_TEST

START_TEST(test_norms_reject_wrong_dtype_shape_and_group)
{
    struct omni_tensor x, x16, w, w5, out, z;
    struct omni_error e;
    kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)4);
    kt_tensorv(&x16, OMNI_DTYPE_F16, 2, (int64_t)2, (int64_t)4);
    kt_tensorv(&z, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    kt_tensorv(&w, OMNI_DTYPE_F32, 1, (int64_t)4);
    kt_tensorv(&w5, OMNI_DTYPE_F32, 1, (int64_t)5);
    kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)4);
    KT_ASSERT_ERR(omni_op_rmsnorm(&out, &x16, &w, 1e-5f, &e), e, OMNI_EDTYPE, "omni_op_rmsnorm", "x has dtype f16");
    KT_ASSERT_ERR(omni_op_rmsnorm(&out, &x, &w5, 1e-5f, &e), e, OMNI_ESHAPE, "w has shape [5]", "expected [4]");
    KT_ASSERT_ERR(omni_op_rmsnorm(&out, &x, &w, -1.0f, &e), e, OMNI_EINVAL, "eps");
    KT_ASSERT_ERR(omni_op_add_rmsnorm(&out, &x, &z, &w, 1e-5f, &e), e, OMNI_ESHAPE,
                  "omni_op_add_rmsnorm", "x has shape [2,3]", "residual has shape [2,4]");
    KT_ASSERT_ERR(omni_op_add_rmsnorm(&out, &x16, NULL, &w, 1e-5f, &e), e, OMNI_EDTYPE, "residual has dtype f16");
    KT_ASSERT_ERR(omni_op_gated_rmsnorm(&out, &x, &x, &w, 1e-5f, 3, &e), e, OMNI_EINVAL,
                  "omni_op_gated_rmsnorm", "group_size 3", "E=4");
    KT_ASSERT_ERR(omni_op_gated_rmsnorm(&out, &x, &z, &w, 1e-5f, 2, &e), e, OMNI_ESHAPE,
                  "z has shape [2,3]", "y has shape [2,4]");
    KT_ASSERT_ERR(omni_op_gated_rmsnorm(&out, &x, &x16, &w, 1e-5f, 2, &e), e, OMNI_EDTYPE, "z has dtype f16");
    kt_release(&x), kt_release(&x16), kt_release(&z), kt_release(&w), kt_release(&w5), kt_release(&out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("norm");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_add_test(tc, test_rmsnorm_hand_worked);
    tcase_add_test(tc, test_add_rmsnorm_hand_worked_and_layer0_without_x);
    tcase_add_test(tc, test_gated_rmsnorm_hand_worked_gate_before_norm);
    tcase_add_test(tc, test_rmsnorm_matches_pytorch_fixture);
    tcase_add_test(tc, test_gated_rmsnorm_matches_pytorch_fixture_groups_64_and_16);
    tcase_add_test(tc, test_gated_rmsnorm_on_views_of_one_projection_buffer);
    tcase_add_test(tc, test_norms_threads_1_and_2_identical_on_many_rows);
    tcase_add_test(tc, test_norms_reject_wrong_dtype_shape_and_group);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
