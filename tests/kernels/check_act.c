/* tests/kernels/check_act.c - silu, softplus and mul on the CPU: hand-worked
 * values, the softplus branches, a PyTorch fixture, views and errors; the
 * in-place zero fill (omni_op_zero). */
#include "ktest.h"

START_TEST(test_silu_hand_worked)
{
    /* silu(v) = v / (1 + e^-v): 0 -> 0; 1 -> 1/1.36787944 = 0.73105858;
     * -1 -> -1/3.71828183 = -0.26894142; 100 -> 100; -100 -> -100/(1+e^100) = -3.7e-42 (finite) */
    struct omni_tensor x, y;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 1, (int64_t)5);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 1, (int64_t)5);
    memcpy(xp, (float[]){0, 1, -1, 100, -100}, 20);
    ck_assert_int_eq(omni_op_silu(&y, &x, &e), OMNI_OK);
    ck_assert_float_eq(yp[0], 0.0f);
    ck_assert_float_eq_tol(yp[1], 0.73105858f, 1e-7);
    ck_assert_float_eq_tol(yp[2], -0.26894142f, 1e-7);
    ck_assert_float_eq(yp[3], 100.0f);
    ck_assert(!tu_has_nan(yp, 5) && yp[4] <= 0.0f && yp[4] > -1e-30f);
    ck_assert_int_eq(omni_op_silu(&x, &x, &e), OMNI_OK); /* in place */
    ck_assert_float_eq(xp[1], yp[1]);
    kt_release(&x), kt_release(&y);
}
END_TEST

START_TEST(test_softplus_branches)
{
    /* 0 -> ln 2 = 0.69314718; 20.1 and 40 -> identity (v > 20);
     * 19.9 -> 19.9 + log1p(e^-19.9) = 19.9 (+2.3e-9, below f32 resolution);
     * -17 -> log1p(e^-17) = 4.1399377e-08; -30 -> 9.3576230e-14 (the log1p form:
     * log(exp(v)+1) would give exactly 0 here) */
    struct omni_tensor x, y;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    memcpy(xp, (float[]){0, 20.1f, 40, 19.9f, -17, -30}, 24);
    ck_assert_int_eq(omni_op_softplus(&y, &x, &e), OMNI_OK);
    ck_assert_float_eq_tol(yp[0], 0.69314718f, 1e-7);
    ck_assert_float_eq(yp[1], 20.1f);
    ck_assert_float_eq(yp[2], 40.0f);
    ck_assert_float_eq(yp[3], 19.9f);
    ck_assert_float_eq_tol(yp[4], 4.1399377e-08f, 1e-14);
    ck_assert_float_eq_tol(yp[5], 9.3576230e-14f, 1e-19);
    kt_release(&x), kt_release(&y);
}
END_TEST

START_TEST(test_softplus_matches_pytorch_fixture)
{
    struct omni_weights *f;
    struct omni_error e;
    ck_assert_int_eq(omni_weights_open(&f, tu_repo_path("tests/fixtures/data/kernels/softplus.safetensors"), &e), OMNI_OK);
    struct omni_tensor x, ref, y;
    ck_assert_int_eq(omni_weights_load(f, NULL, "x", OMNI_DTYPE_F32, 0, NULL, &x, &e), OMNI_OK);
    ck_assert_int_eq(omni_weights_load(f, NULL, "y", OMNI_DTYPE_F32, 0, NULL, &ref, &e), OMNI_OK);
    float *yp = kt_tensor(&y, OMNI_DTYPE_F32, x.ndim, x.shape);
    ck_assert_int_eq(omni_op_softplus(&y, &x, &e), OMNI_OK);
    const float *r = kt_f(&ref), *xp = kt_f(&x);
    for (int64_t i = 0; i < omni_tensor_numel(&x); i++) /* element-wise relative: values span 1e-14..40 */
        ck_assert_msg(fabsf(yp[i] - r[i]) <= 1e-6f * fabsf(r[i]) + 1e-30f, "x=%g: got %.9g want %.9g",
                      (double)xp[i], (double)yp[i], (double)r[i]);
    kt_release(&y), omni_tensor_release(&x), omni_tensor_release(&ref);
    omni_weights_close(f);
}
END_TEST

START_TEST(test_mul_and_activations_on_strided_views)
{
    /* a, b = columns [0,3) and [3,6) of one (2,7) buffer [[1..7],[8..14]] */
    struct omni_tensor buf, y;
    struct omni_error e;
    float *bp = kt_tensorv(&buf, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)7);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    for (int i = 0; i < 14; i++)
        bp[i] = (float)(i + 1);
    struct omni_tensor a = kt_slice_last(&buf, 0, 3), b = kt_slice_last(&buf, 3, 3);
    ck_assert_int_eq(omni_op_mul(&y, &a, &b, &e), OMNI_OK);
    const float want[6] = {1 * 4, 2 * 5, 3 * 6, 8 * 11, 9 * 12, 10 * 13};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(yp[i], want[i]);
    ck_assert_int_eq(omni_op_silu(&y, &b, &e), OMNI_OK); /* silu(4) = 4/(1+e^-4) = 3.92805516 */
    ck_assert_float_eq_tol(yp[0], 3.92805516f, 1e-6);
    ck_assert_float_eq_tol(yp[3], 11.0f, 1e-3);
    kt_release(&buf), kt_release(&y);
}
END_TEST

START_TEST(test_act_rejects_wrong_dtype_and_shape)
{
    struct omni_tensor x, x16, y, y2;
    struct omni_error e;
    kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    kt_tensorv(&x16, OMNI_DTYPE_BF16, 2, (int64_t)2, (int64_t)3);
    kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    kt_tensorv(&y2, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)2);
    KT_ASSERT_ERR(omni_op_silu(&y, &x16, &e), e, OMNI_EDTYPE, "omni_op_silu", "x has dtype bf16");
    KT_ASSERT_ERR(omni_op_softplus(&y2, &x, &e), e, OMNI_ESHAPE, "omni_op_softplus", "y has shape [3,2]", "x has shape [2,3]");
    KT_ASSERT_ERR(omni_op_mul(&y, &x, &x16, &e), e, OMNI_EDTYPE, "omni_op_mul", "b has dtype bf16");
    KT_ASSERT_ERR(omni_op_silu(&y2, &x, &e), e, OMNI_ESHAPE, "omni_op_silu", "y has shape [3,2]");
    KT_ASSERT_ERR(omni_op_softplus(&y, &x16, &e), e, OMNI_EDTYPE, "omni_op_softplus", "x has dtype bf16");
    KT_ASSERT_ERR(omni_op_mul(&y, &x, &y2, &e), e, OMNI_ESHAPE, "b has shape [3,2]", "a has shape [2,3]");
    kt_release(&x), kt_release(&x16), kt_release(&y), kt_release(&y2);
}
END_TEST

START_TEST(test_zero_in_place_any_dtype_and_views)
{
    struct omni_tensor t32, t16, ti, whole, mid, empty;
    struct omni_error e;
    struct tu_rng r;
    tu_rng_seed(&r, 0x2e60);
    /* f32 (3,5), bf16 (7): 14 bytes, i32 (2,3): start as random bits, end as 0 bytes at
     * the same address; kt_release checks the canaries on both sides */
    float *p32 = kt_tensorv(&t32, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)5);
    uint16_t *p16 = kt_tensorv(&t16, OMNI_DTYPE_BF16, 1, (int64_t)7);
    int32_t *pi = kt_tensorv(&ti, OMNI_DTYPE_I32, 2, (int64_t)2, (int64_t)3);
    kt_fill(&r, &t32, 0.5f, 2.0f);
    for (int i = 0; i < 7; i++)
        p16[i] = (uint16_t)(0x3f80 + i);
    for (int i = 0; i < 6; i++)
        pi[i] = -1 - i;
    ck_assert_int_eq(omni_op_zero(&t32, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_zero(&t16, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_zero(&ti, &e), OMNI_OK);
    ck_assert_ptr_eq(omni_tensor_data(&t32), p32);
    for (int i = 0; i < 15; i++)
        ck_assert_msg(p32[i] == 0.0f && !signbit(p32[i]), "f32 element %d is %g", i, p32[i]);
    for (int i = 0; i < 7; i++)
        ck_assert_uint_eq(p16[i], 0);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(pi[i], 0);
    /* a view at an offset clears its elements only: 1..10, view [3, 7) -> 1 2 3 0 0 0 0 8 9 10 */
    float *pw = kt_tensorv(&whole, OMNI_DTYPE_F32, 1, (int64_t)10);
    for (int i = 0; i < 10; i++)
        pw[i] = (float)(i + 1);
    ck_assert_int_eq(omni_tensor_view(&mid, whole.buf, 3 * sizeof(float), OMNI_DTYPE_F32, 1,
                                      (const int64_t[]){4}, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_zero(&mid, &e), OMNI_OK);
    static const float want[10] = {1, 2, 3, 0, 0, 0, 0, 8, 9, 10};
    for (int i = 0; i < 10; i++)
        ck_assert_msg(pw[i] == want[i], "element %d: %g, expected %g", i, pw[i], want[i]);
    /* empty: nothing to do */
    kt_tensorv(&empty, OMNI_DTYPE_F32, 2, (int64_t)0, (int64_t)4);
    ck_assert_int_eq(omni_op_zero(&empty, &e), OMNI_OK);
    /* refused: a strided view, NULL */
    struct omni_tensor cols = kt_slice_last(&t32, 1, 2);
    KT_ASSERT_ERR(omni_op_zero(&cols, &e), e, OMNI_EINVAL, "omni_op_zero", "t (shape [3,2]",
                  "must be contiguous");
    KT_ASSERT_ERR(omni_op_zero(NULL, &e), e, OMNI_EINVAL, "omni_op_zero: t is NULL");
    kt_release(&t32), kt_release(&t16), kt_release(&ti), omni_tensor_release(&mid);
    kt_release(&whole), kt_release(&empty);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("act");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_add_test(tc, test_silu_hand_worked);
    tcase_add_test(tc, test_softplus_branches);
    tcase_add_test(tc, test_softplus_matches_pytorch_fixture);
    tcase_add_test(tc, test_mul_and_activations_on_strided_views);
    tcase_add_test(tc, test_act_rejects_wrong_dtype_and_shape);
    tcase_add_test(tc, test_zero_in_place_any_dtype_and_views);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
