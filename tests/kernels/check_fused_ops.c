/* tests/kernels/check_fused_ops.c - the fused decode ops on the CPU:
 * omni_op_lora_update (y += scale * (x·Aᵀ)·Bᵀ) against a hand-worked case, a
 * double loop, and the two omni_op_matmul calls it replaces in plugins/lora
 * (bitwise). The CUDA twin: tests/cuda/check_cuda_ops.c. */
#include <stdlib.h>

#include "ktest.h"

/* dst (dtype) = src f32 values */
static void to_dtype(struct omni_tensor *dst, int dtype, const struct omni_tensor *src)
{
    struct omni_error e = {0};
    kt_tensor(dst, dtype, src->ndim, src->shape);
    ck_assert_int_eq(omni_op_copy(dst, src, &e), OMNI_OK);
}

START_TEST(test_lora_update_hand_worked_rank_1)
{
    /* x = [1, 2], A = [[1, 1]] -> t = 3; B = [[1], [2], [-1]] -> t·Bᵀ = [3, 6, -3];
     * scale 0.5, y0 = [1, 1, 1] -> y = [2.5, 4, -0.5] */
    struct omni_tensor x, a, b, y;
    struct omni_error e = {0};
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *ap = kt_tensorv(&a, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    float *bp = kt_tensorv(&b, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)1);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)3);
    memcpy(xp, (float[]){1, 2}, 8);
    memcpy(ap, (float[]){1, 1}, 8);
    memcpy(bp, (float[]){1, 2, -1}, 12);
    memcpy(yp, (float[]){1, 1, 1}, 12);
    ck_assert_int_eq(omni_op_lora_update(&y, &x, &a, &b, 0.5f, &e), OMNI_OK);
    ck_assert_float_eq(yp[0], 2.5f);
    ck_assert_float_eq(yp[1], 4.0f);
    ck_assert_float_eq(yp[2], -0.5f);
    kt_release(&x), kt_release(&a), kt_release(&b), kt_release(&y);
}
END_TEST

static void one_case(int64_t M, int64_t N, int64_t K, int64_t R, int dtype, uint64_t seed)
{
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    struct omni_tensor x, af, bf, a, b, y, y2, t;
    struct omni_error e = {0};
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, M, K);
    kt_tensorv(&af, OMNI_DTYPE_F32, 2, R, K);
    kt_tensorv(&bf, OMNI_DTYPE_F32, 2, N, R);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, M, N);
    float *y2p = kt_tensorv(&y2, OMNI_DTYPE_F32, 2, M, N);
    kt_tensorv(&t, OMNI_DTYPE_F32, 2, M, R);
    kt_fill(&rng, &x, -1, 1), kt_fill(&rng, &af, -0.5f, 0.5f), kt_fill(&rng, &bf, -0.5f, 0.5f);
    kt_fill(&rng, &y, -1, 1);
    memcpy(y2p, yp, (size_t)(M * N) * sizeof(float));
    to_dtype(&a, dtype, &af), to_dtype(&b, dtype, &bf);
    /* the exact values of the (possibly rounded) factors, for the double loop */
    struct omni_tensor ar, br;
    kt_tensorv(&ar, OMNI_DTYPE_F32, 2, R, K), kt_tensorv(&br, OMNI_DTYPE_F32, 2, N, R);
    ck_assert_int_eq(omni_op_copy(&ar, &a, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_copy(&br, &b, &e), OMNI_OK);
    const float scale = 4.0f;
    double *ref = malloc((size_t)(M * N) * sizeof(double));
    ck_assert_ptr_nonnull(ref);
    for (int64_t m = 0; m < M; m++) {
        double tt[64];
        for (int64_t r = 0; r < R; r++) {
            tt[r] = 0;
            for (int64_t k = 0; k < K; k++)
                tt[r] += (double)xp[m * K + k] * kt_f(&ar)[r * K + k];
        }
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t r = 0; r < R; r++)
                s += tt[r] * kt_f(&br)[n * R + r];
            ref[m * N + n] = yp[m * N + n] + scale * s;
        }
    }
    ck_assert_int_eq(omni_op_lora_update(&y, &x, &a, &b, scale, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_matmul(&t, &x, &a, NULL, 1.0f, 0.0f, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_matmul(&y2, &t, &b, NULL, scale, 1.0f, &e), OMNI_OK);
    double worst = 0, mx = 0;
    for (int64_t i = 0; i < M * N; i++) {
        ck_assert_msg(memcmp(&yp[i], &y2p[i], sizeof(float)) == 0,
                      "M=%lld N=%lld K=%lld R=%lld %s: element %lld %.9g differs from the two "
                      "matmuls' %.9g",
                      (long long)M, (long long)N, (long long)K, (long long)R,
                      omni_dtype_name(dtype), (long long)i, (double)yp[i], (double)y2p[i]);
        const double d = yp[i] - ref[i];
        worst = fmax(worst, fabs(d));
        mx = fmax(mx, fabs(ref[i]));
    }
    ck_assert_msg(worst <= 1e-5 * (mx > 1 ? mx : 1), "M=%lld R=%lld %s: |y - ref| = %g, max %g",
                  (long long)M, (long long)R, omni_dtype_name(dtype), worst, mx);
    free(ref);
    kt_release(&x), kt_release(&af), kt_release(&bf), kt_release(&a), kt_release(&b);
    kt_release(&ar), kt_release(&br), kt_release(&y), kt_release(&y2), kt_release(&t);
}

START_TEST(test_lora_update_matches_double_loop_and_the_two_matmuls_bitwise)
{
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    static const int64_t shapes[][4] = {
        {1, 37, 70, 8}, {3, 129, 64, 1}, {8, 33, 257, 32}, {1, 300, 2048, 8}, {5, 17, 5, 16},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int d = 0; d < 3; d++)
            one_case(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], dts[d],
                     0x10a0 + i * 3 + (uint64_t)d);
}
END_TEST

START_TEST(test_lora_update_rejects_too_many_rows_rank_and_mixed_dtypes)
{
    struct omni_tensor x9, x1, a, a33, b, b33, bh, y9, y1;
    struct omni_error e = {0};
    kt_tensorv(&x9, OMNI_DTYPE_F32, 2, (int64_t)9, (int64_t)16);
    kt_tensorv(&x1, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)16);
    kt_tensorv(&a, OMNI_DTYPE_F32, 2, (int64_t)8, (int64_t)16);
    kt_tensorv(&a33, OMNI_DTYPE_F32, 2, (int64_t)33, (int64_t)16);
    kt_tensorv(&b, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)8);
    kt_tensorv(&b33, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)33);
    kt_tensorv(&bh, OMNI_DTYPE_BF16, 2, (int64_t)5, (int64_t)8);
    kt_tensorv(&y9, OMNI_DTYPE_F32, 2, (int64_t)9, (int64_t)5);
    kt_tensorv(&y1, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)5);
    KT_ASSERT_ERR(omni_op_lora_update(&y9, &x9, &a, &b, 1.0f, &e), e, OMNI_EINVAL, "9 rows",
                  "at most 8");
    KT_ASSERT_ERR(omni_op_lora_update(&y1, &x1, &a33, &b33, 1.0f, &e), e, OMNI_EINVAL,
                  "rank 33", "at most 32");
    KT_ASSERT_ERR(omni_op_lora_update(&y1, &x1, &a, &bh, 1.0f, &e), e, OMNI_EDTYPE, "b",
                  "bf16");
    KT_ASSERT_ERR(omni_op_lora_update(&y1, &x1, &a, &b33, 1.0f, &e), e, OMNI_ESHAPE, "[5,33]");
    KT_ASSERT_ERR(omni_op_lora_update(&y9, &x1, &a, &b, 1.0f, &e), e, OMNI_ESHAPE, "9 rows");
    kt_release(&x9), kt_release(&x1), kt_release(&a), kt_release(&a33), kt_release(&b);
    kt_release(&b33), kt_release(&bh), kt_release(&y9), kt_release(&y1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fused_ops");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lora_update_hand_worked_rank_1);
    tcase_add_test(tc, test_lora_update_matches_double_loop_and_the_two_matmuls_bitwise);
    tcase_add_test(tc, test_lora_update_rejects_too_many_rows_rank_and_mixed_dtypes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
