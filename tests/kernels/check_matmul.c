/* tests/kernels/check_matmul.c - omni_op_matmul/linear/add/add_row/copy on the
 * CPU against hand-worked values, a naive double loop and PyTorch fixtures. */
#include <stdlib.h>

#include "ktest.h"
#include "cpu/parallel.h"

/* ref[m,n] = alpha * sum_k x[m,k] w[n,k] + beta * y0[m,n] + bias[n], in double */
static void ref_matmul(float *ref, const float *x, const float *w, const float *bias,
                       const float *y0, int64_t M, int64_t N, int64_t K, double alpha, double beta)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * K + k] * w[n * K + k];
            double v = alpha * s;
            if (beta != 0)
                v += beta * y0[m * N + n];
            if (bias)
                v += bias[n];
            ref[m * N + n] = (float)v;
        }
}

START_TEST(test_linear_hand_worked_2x2_by_3x2)
{
    /* x = [[1,2],[3,4]], W = [[1,0],[0,1],[1,1]], bias = [0.5,-1,2]
     * x·Wᵀ = [[1,2,3],[3,4,7]]; + bias = [[1.5,1,5],[3.5,3,9]] */
    struct omni_tensor x, w, b, y;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)2);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)2);
    float *bp = kt_tensorv(&b, OMNI_DTYPE_F32, 1, (int64_t)3);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    memcpy(xp, (float[]){1, 2, 3, 4}, 16);
    memcpy(wp, (float[]){1, 0, 0, 1, 1, 1}, 24);
    memcpy(bp, (float[]){0.5f, -1, 2}, 12);
    ck_assert_int_eq(omni_op_linear(&y, &x, &w, NULL, &e), OMNI_OK);
    const float want0[6] = {1, 2, 3, 3, 4, 7};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(yp[i], want0[i]);
    ck_assert_int_eq(omni_op_linear(&y, &x, &w, &b, &e), OMNI_OK);
    const float want1[6] = {1.5f, 1, 5, 3.5f, 3, 9};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(yp[i], want1[i]);
    /* alpha 2, beta 0.5 on y = want1: 2*[[1,2,3],[3,4,7]] + 0.5*want1 + bias
     * = [[2+0.75+0.5, 4+0.5-1, 6+2.5+2], [6+1.75+0.5, 8+1.5-1, 14+4.5+2]]
     * = [[3.25,3.5,10.5],[8.25,8.5,20.5]] */
    ck_assert_int_eq(omni_op_matmul(&y, &x, &w, &b, 2.0f, 0.5f, &e), OMNI_OK);
    const float want2[6] = {3.25f, 3.5f, 10.5f, 8.25f, 8.5f, 20.5f};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(yp[i], want2[i]);
    kt_release(&x), kt_release(&w), kt_release(&b), kt_release(&y);
}
END_TEST

static void run_vs_naive(int64_t M, int64_t N, int64_t K, int wdtype, int use_bias, float alpha,
                         float beta, uint64_t seed)
{
    struct tu_rng r;
    tu_rng_seed(&r, seed);
    struct omni_tensor x, w, b, y;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, M, K);
    void *wp = kt_tensorv(&w, wdtype, 2, N, K);
    float *bp = kt_tensorv(&b, OMNI_DTYPE_F32, 1, N);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, M, N);
    float *wf = malloc(sizeof(float) * (size_t)(N * K)), *y0 = malloc(sizeof(float) * (size_t)(M * N));
    float *ref = malloc(sizeof(float) * (size_t)(M * N));
    tu_fill_uniform(&r, xp, (size_t)(M * K), -1, 1);
    tu_fill_uniform(&r, wf, (size_t)(N * K), -1, 1);
    tu_fill_uniform(&r, bp, (size_t)N, -1, 1);
    tu_fill_uniform(&r, y0, (size_t)(M * N), -1, 1);
    /* the reference uses exactly the (rounded) weights the kernel sees */
    ck_assert_int_eq(omni_dtype_convert(wp, wdtype, wf, OMNI_DTYPE_F32, (size_t)(N * K)), OMNI_OK);
    ck_assert_int_eq(omni_dtype_convert(wf, OMNI_DTYPE_F32, wp, wdtype, (size_t)(N * K)), OMNI_OK);
    if (beta != 0)
        memcpy(yp, y0, sizeof(float) * (size_t)(M * N));
    ref_matmul(ref, xp, wf, use_bias ? bp : NULL, y0, M, N, K, alpha, beta);
    ck_assert_int_eq(omni_op_matmul(&y, &x, &w, use_bias ? &b : NULL, alpha, beta, &e), OMNI_OK);
    ck_assert(!tu_has_nan(yp, (size_t)(M * N)));
    double rel = tu_rel_err(yp, ref, (size_t)(M * N));
    ck_assert_msg(rel < 2e-6, "M=%lld N=%lld K=%lld %s: rel err %.3g", (long long)M, (long long)N,
                  (long long)K, omni_dtype_name(wdtype), rel);
    free(wf), free(y0), free(ref);
    kt_release(&x), kt_release(&w), kt_release(&b), kt_release(&y);
}

START_TEST(test_matmul_matches_naive_loop_on_odd_sizes)
{
    static const int64_t sz[] = {1, 3, 17, 64, 129};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            for (int k = 0; k < 5; k++)
                run_vs_naive(sz[i], sz[j], sz[k], OMNI_DTYPE_F32, 0, 1.0f, 0.0f, 1000 + i * 25 + j * 5 + k);
}
END_TEST

START_TEST(test_matmul_f16_and_bf16_weights_match_naive_loop)
{
    static const int64_t sz[] = {1, 3, 17, 64, 129};
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 5; k++) {
            run_vs_naive(sz[i], sz[(i + k) % 5], sz[k], OMNI_DTYPE_F16, 1, 1.0f, 0.0f, 77 + i * 5 + k);
            run_vs_naive(sz[i], sz[(i + 2 * k) % 5], sz[k], OMNI_DTYPE_BF16, 1, 1.0f, 0.0f, 177 + i * 5 + k);
        }
}
END_TEST

START_TEST(test_matmul_portable_path_matches_naive_loop)
{
    /* the non-AVX2 micro-kernel and panel conversion (used on other hosts) */
    omni_cpu_set_simd(0);
    ck_assert_int_eq(omni_cpu_simd(), 0);
    static const int64_t sz[] = {1, 3, 17, 64, 129};
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 5; k++) {
            run_vs_naive(sz[i], sz[(i + k) % 5], sz[k], OMNI_DTYPE_F32, 1, 1.0f, 0.0f, 300 + i * 5 + k);
            run_vs_naive(sz[k], sz[i], sz[(i + k) % 5], OMNI_DTYPE_F16, 0, 0.5f, 1.0f, 400 + i * 5 + k);
            run_vs_naive(sz[(i + k) % 5], sz[k], sz[i], OMNI_DTYPE_BF16, 1, 1.0f, 0.0f, 500 + i * 5 + k);
        }
    run_vs_naive(130, 70, 1100, OMNI_DTYPE_F32, 1, 0.5f, -1.5f, 5);
    omni_cpu_set_simd(1);
}
END_TEST

START_TEST(test_matmul_alpha_beta_bias_paths)
{
    /* K > 512 crosses the kernel's K chunk; N, M cross its tiles */
    run_vs_naive(130, 70, 1100, OMNI_DTYPE_F32, 1, 0.5f, -1.5f, 5);
    run_vs_naive(3, 65, 9, OMNI_DTYPE_F32, 1, -2.0f, 1.0f, 6);
    run_vs_naive(5, 7, 1030, OMNI_DTYPE_BF16, 0, 1.0f, 2.0f, 7);
    run_vs_naive(97, 3, 33, OMNI_DTYPE_F16, 1, 0.25f, 0.0f, 8);
    run_vs_naive(4, 4, 0, OMNI_DTYPE_F32, 1, 1.0f, 0.5f, 9); /* K = 0: y = beta*y + bias */
}
END_TEST

START_TEST(test_matmul_beta_zero_never_reads_y)
{
    /* y starts as NaN bytes (kt_tensor); beta == 0 must not propagate them */
    struct omni_tensor x, w, y;
    struct omni_error e;
    struct tu_rng r;
    tu_rng_seed(&r, 3);
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)40);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 2, (int64_t)9, (int64_t)40);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)9);
    tu_fill_uniform(&r, xp, 200, -1, 1);
    tu_fill_uniform(&r, wp, 360, -1, 1);
    ck_assert(tu_has_nan(yp, 45));
    ck_assert_int_eq(omni_op_matmul(&y, &x, &w, NULL, 1.0f, 0.0f, &e), OMNI_OK);
    ck_assert(!tu_has_nan(yp, 45));
    kt_release(&x), kt_release(&w), kt_release(&y);
}
END_TEST

START_TEST(test_matmul_threads_1_and_2_are_bitwise_identical)
{
    struct tu_rng r;
    tu_rng_seed(&r, 11);
    const int64_t M = 200, N = 150, K = 1100;
    struct omni_tensor x, w, y1, y2;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, M, K);
    uint16_t *wp = kt_tensorv(&w, OMNI_DTYPE_BF16, 2, N, K);
    float *a = kt_tensorv(&y1, OMNI_DTYPE_F32, 2, M, N);
    float *b = kt_tensorv(&y2, OMNI_DTYPE_F32, 2, M, N);
    tu_fill_uniform(&r, xp, (size_t)(M * K), -1, 1);
    for (int64_t i = 0; i < N * K; i++)
        wp[i] = omni_f32_to_bf16(tu_rng_uniform(&r, -1, 1));
    omni_parallel_set_threads(1);
    ck_assert_int_eq(omni_op_linear(&y1, &x, &w, NULL, &e), OMNI_OK);
    omni_parallel_set_threads(2);
    ck_assert_int_eq(omni_parallel_threads(), 2);
    ck_assert_int_eq(omni_op_linear(&y2, &x, &w, NULL, &e), OMNI_OK);
    ck_assert(memcmp(a, b, sizeof(float) * (size_t)(M * N)) == 0);
    omni_parallel_set_threads(0);
    kt_release(&x), kt_release(&w), kt_release(&y1), kt_release(&y2);
}
END_TEST

START_TEST(test_matmul_strided_row_views)
{
    /* x = columns [2, 2+K) of a (M, K+5) buffer; y = columns [1, 1+N) of (M, N+3) */
    struct tu_rng r;
    tu_rng_seed(&r, 21);
    const int64_t M = 6, N = 11, K = 19;
    struct omni_tensor xb, w, yb;
    struct omni_error e;
    float *xp = kt_tensorv(&xb, OMNI_DTYPE_F32, 2, M, K + 5);
    float *wp = kt_tensorv(&w, OMNI_DTYPE_F32, 2, N, K);
    float *yp = kt_tensorv(&yb, OMNI_DTYPE_F32, 2, M, N + 3);
    tu_fill_uniform(&r, xp, (size_t)(M * (K + 5)), -1, 1);
    tu_fill_uniform(&r, wp, (size_t)(N * K), -1, 1);
    for (int64_t i = 0; i < M * (N + 3); i++)
        yp[i] = 42.0f;
    struct omni_tensor x = kt_slice_last(&xb, 2, K), y = kt_slice_last(&yb, 1, N);
    ck_assert_int_eq(omni_op_linear(&y, &x, &w, NULL, &e), OMNI_OK);
    for (int64_t m = 0; m < M; m++) {
        ck_assert_float_eq(yp[m * (N + 3)], 42.0f);
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)xp[m * (K + 5) + 2 + k] * wp[n * K + k];
            ck_assert_msg(fabs(yp[m * (N + 3) + 1 + n] - s) < 1e-5, "m=%lld n=%lld", (long long)m, (long long)n);
        }
        ck_assert_float_eq(yp[m * (N + 3) + N + 1], 42.0f);
        ck_assert_float_eq(yp[m * (N + 3) + N + 2], 42.0f);
    }
    kt_release(&xb), kt_release(&w), kt_release(&yb);
}
END_TEST

START_TEST(test_matmul_rejects_wrong_dtype_and_shape)
{
    struct omni_tensor x, w, y, b, xi;
    struct omni_error e;
    kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)4);
    kt_tensorv(&xi, OMNI_DTYPE_F16, 2, (int64_t)2, (int64_t)4);
    kt_tensorv(&w, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)5);
    kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    kt_tensorv(&b, OMNI_DTYPE_F32, 1, (int64_t)4);
    int rc = omni_op_linear(&y, &xi, &w, NULL, &e);
    KT_ASSERT_ERR(rc, e, OMNI_EDTYPE, "omni_op_linear", "x", "f16");
    rc = omni_op_linear(&y, &x, &w, NULL, &e); /* K: 4 vs 5 */
    KT_ASSERT_ERR(rc, e, OMNI_ESHAPE, "x has shape [2,4]", "[3,5]");
    w.shape[1] = 4, omni_tensor_set_contiguous(&w); /* now (3,4): bias (4) is wrong */
    rc = omni_op_linear(&y, &x, &w, &b, &e);
    KT_ASSERT_ERR(rc, e, OMNI_ESHAPE, "bias has shape [4]", "[3]");
    y.shape[0] = 1, omni_tensor_set_contiguous(&y);
    rc = omni_op_matmul(&y, &x, &w, NULL, 1, 0, &e);
    KT_ASSERT_ERR(rc, e, OMNI_ESHAPE, "omni_op_matmul", "y has shape [1,3]", "x has shape [2,4]");
    y.shape[0] = 2, omni_tensor_set_contiguous(&y);
    w.dtype = OMNI_DTYPE_I32;
    rc = omni_op_matmul(&y, &x, &w, NULL, 1, 0, &e);
    KT_ASSERT_ERR(rc, e, OMNI_EDTYPE, "w has dtype i32");
    w.dtype = OMNI_DTYPE_F32;
    ck_assert_int_eq(omni_op_matmul(&y, &x, &w, NULL, 1, 0, &e), OMNI_OK);
    kt_release(&x), kt_release(&xi), kt_release(&w), kt_release(&y), kt_release(&b);
}
END_TEST

START_TEST(test_add_and_add_row_hand_worked_with_aliasing)
{
    struct omni_tensor a, b, y, row;
    struct omni_error e;
    float *ap = kt_tensorv(&a, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    float *bp = kt_tensorv(&b, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    float *rp = kt_tensorv(&row, OMNI_DTYPE_F32, 1, (int64_t)3);
    memcpy(ap, (float[]){1, 2, 3, 4, 5, 6}, 24);
    memcpy(bp, (float[]){0.5f, -2, 10, 1, 1, 1}, 24);
    memcpy(rp, (float[]){100, 200, 300}, 12);
    ck_assert_int_eq(omni_op_add(&y, &a, &b, &e), OMNI_OK);
    const float s[6] = {1.5f, 0, 13, 5, 6, 7};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(yp[i], s[i]);
    ck_assert_int_eq(omni_op_add(&a, &a, &b, &e), OMNI_OK); /* in place */
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(ap[i], s[i]);
    ck_assert_int_eq(omni_op_add_row(&y, &row, &e), OMNI_OK);
    const float t[6] = {101.5f, 200, 313, 105, 206, 307};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(yp[i], t[i]);
    row.shape[0] = 2, omni_tensor_set_contiguous(&row);
    KT_ASSERT_ERR(omni_op_add_row(&y, &row, &e), e, OMNI_ESHAPE, "omni_op_add_row", "row has shape [2]", "[3]");
    b.shape[1] = 2, omni_tensor_set_contiguous(&b);
    KT_ASSERT_ERR(omni_op_add(&y, &a, &b, &e), e, OMNI_ESHAPE, "omni_op_add", "b has shape [2,2]", "a has shape [2,3]");
    b.shape[1] = 3, omni_tensor_set_contiguous(&b);
    b.dtype = OMNI_DTYPE_BF16;
    KT_ASSERT_ERR(omni_op_add(&y, &a, &b, &e), e, OMNI_EDTYPE, "b has dtype bf16");
    KT_ASSERT_ERR(omni_op_add_row(&b, &row, &e), e, OMNI_EDTYPE, "omni_op_add_row", "y has dtype bf16");
    b.dtype = OMNI_DTYPE_F32;
    kt_release(&a), kt_release(&b), kt_release(&y), kt_release(&row);
}
END_TEST

START_TEST(test_copy_converts_between_float_dtypes)
{
    /* hand-worked bit patterns: 1 = 0x3c00 (f16) / 0x3f80 (bf16); -2 = 0xc000 / 0xc000;
     * 0.5 = 0x3800 / 0x3f00; 65504 = 0x7bff (f16 max) / 0x4780 (bf16 rounds 65504 to 65536);
     * 2^-24 = 0x0001 (smallest f16 subnormal) / 0x3380 */
    static const float v[5] = {1.0f, -2.0f, 0.5f, 65504.0f, 0x1p-24f};
    static const uint16_t h[5] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001};
    static const uint16_t bf[5] = {0x3f80, 0xc000, 0x3f00, 0x4780, 0x3380};
    struct omni_tensor f, t16, tb, back;
    struct omni_error e;
    float *fp = kt_tensorv(&f, OMNI_DTYPE_F32, 1, (int64_t)5);
    uint16_t *hp = kt_tensorv(&t16, OMNI_DTYPE_F16, 1, (int64_t)5);
    uint16_t *bp = kt_tensorv(&tb, OMNI_DTYPE_BF16, 1, (int64_t)5);
    float *kp = kt_tensorv(&back, OMNI_DTYPE_F32, 1, (int64_t)5);
    memcpy(fp, v, sizeof v);
    ck_assert_int_eq(omni_op_copy(&t16, &f, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_copy(&tb, &f, &e), OMNI_OK);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(hp[i], h[i]);
        ck_assert_uint_eq(bp[i], bf[i]);
    }
    ck_assert_int_eq(omni_op_copy(&back, &t16, &e), OMNI_OK);
    for (int i = 0; i < 5; i++)
        ck_assert_float_eq(kp[i], v[i]);
    ck_assert_int_eq(omni_op_copy(&back, &tb, &e), OMNI_OK);
    ck_assert_float_eq(kp[3], 65536.0f);
    ck_assert_float_eq(kp[4], 0x1p-24f);
    kt_release(&f), kt_release(&t16), kt_release(&tb), kt_release(&back);
}
END_TEST

START_TEST(test_copy_handles_strided_source_and_reshape)
{
    /* src = transpose of a (2,3) matrix [[1,2,3],[4,5,6]] viewed as (3,2):
     * row-major walk gives 1,4,2,5,3,6; dst is (6) f16 */
    struct omni_tensor s, d;
    struct omni_error e;
    float *sp = kt_tensorv(&s, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    uint16_t *dp = kt_tensorv(&d, OMNI_DTYPE_F16, 1, (int64_t)6);
    memcpy(sp, (float[]){1, 2, 3, 4, 5, 6}, 24);
    struct omni_tensor st = s;
    st.shape[0] = 3, st.shape[1] = 2, st.strides[0] = 1, st.strides[1] = 3;
    ck_assert_int_eq(omni_op_copy(&d, &st, &e), OMNI_OK);
    const float want[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(omni_f16_to_f32(dp[i]), want[i]);
    d.shape[0] = 5, omni_tensor_set_contiguous(&d);
    KT_ASSERT_ERR(omni_op_copy(&d, &s, &e), e, OMNI_ESHAPE, "omni_op_copy", "dst has shape [5]", "src has shape [2,3]");
    d.shape[0] = 6, omni_tensor_set_contiguous(&d);
    d.dtype = OMNI_DTYPE_I32; /* i32 vs f32 conversion: not this op's business */
    KT_ASSERT_ERR(omni_op_copy(&d, &s, &e), e, OMNI_EDTYPE, "dst has dtype i32");
    d.dtype = OMNI_DTYPE_F16;
    kt_release(&s), kt_release(&d);
}
END_TEST

START_TEST(test_ops_reject_cuda_tensors_cleanly)
{
    struct omni_tensor x, w, y;
    struct omni_error e;
    kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)4);
    kt_tensorv(&w, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)4);
    kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)2);
    struct omni_tensor xc = x, wc = w, yc = y;
    xc.device.type = wc.device.type = yc.device.type = OMNI_DEVICE_CUDA;
    int rc = omni_op_linear(&yc, &xc, &wc, NULL, &e);
    ck_assert(rc == OMNI_EUNSUPPORTED || rc == OMNI_EDEVICE);
    ck_assert_ptr_nonnull(strstr(e.msg, "omni_op_matmul"));
    rc = omni_op_linear(&yc, &x, &w, NULL, &e); /* mixed devices */
    KT_ASSERT_ERR(rc, e, OMNI_EDEVICE, "x is on cpu", "y is on cuda");
    kt_release(&x), kt_release(&w), kt_release(&y);
}
END_TEST

struct cover {
    int *hits;
    int64_t n;
};

static void mark(void *arg, int64_t begin, int64_t end)
{
    struct cover *c = arg;
    for (int64_t i = begin; i < end; i++)
        c->hits[i]++; /* distinct ranges: no two threads touch one slot */
}

static void mark_nested(void *arg, int64_t begin, int64_t end)
{
    struct cover *c = arg;
    /* a nested call runs inline on this thread over its whole range */
    struct cover inner = {c->hits + begin, end - begin};
    omni_parallel_for(end - begin, mark, &inner);
}

START_TEST(test_parallel_for_covers_each_index_once)
{
    static const int64_t ns[] = {1, 2, 3, 7, 64, 1001};
    static const int threads[] = {1, 2, 3, 5};
    int hits[1001];
    for (int t = 0; t < 4; t++) {
        omni_parallel_set_threads(threads[t]);
        ck_assert_int_eq(omni_parallel_threads(), threads[t]);
        for (int i = 0; i < 6; i++)
            for (int nested = 0; nested < 2; nested++) {
                memset(hits, 0, sizeof hits);
                struct cover c = {hits, ns[i]};
                omni_parallel_for(ns[i], nested ? mark_nested : mark, &c);
                for (int64_t j = 0; j < ns[i]; j++)
                    ck_assert_msg(hits[j] == 1, "threads %d n %lld: index %lld hit %d times",
                                  threads[t], (long long)ns[i], (long long)j, hits[j]);
                for (int64_t j = ns[i]; j < 1001; j++)
                    ck_assert_int_eq(hits[j], 0);
            }
    }
    omni_parallel_for(0, mark, NULL); /* n <= 0: no call */
    omni_parallel_set_threads(0);
    ck_assert_int_ge(omni_parallel_threads(), 1);
}
END_TEST

/* PyTorch fixture: F.linear with f16 / bf16 weights (tests/fixtures/gen_kernels.py). */
START_TEST(test_linear_matches_pytorch_fixture)
{
    struct omni_weights *wf = NULL;
    struct omni_error e;
    int rc = omni_weights_open(&wf, tu_repo_path("tests/fixtures/data/kernels/linear.safetensors"), &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
    static const char *wkeys[] = {"w_f32", "w_f16", "w_bf16"};
    static const char *ykeys[] = {"y_f32", "y_f16", "y_bf16"};
    struct omni_tensor x, b;
    ck_assert_int_eq(omni_weights_load(wf, NULL, "x", OMNI_DTYPE_F32, 0, NULL, &x, &e), OMNI_OK);
    ck_assert_int_eq(omni_weights_load(wf, NULL, "bias", OMNI_DTYPE_F32, 0, NULL, &b, &e), OMNI_OK);
    for (int i = 0; i < 3; i++) {
        struct omni_tensor w, ref, y;
        ck_assert_int_eq(omni_weights_get(wf, NULL, wkeys[i], &w, &e), OMNI_OK); /* stored dtype */
        ck_assert_int_eq(omni_weights_load(wf, NULL, ykeys[i], OMNI_DTYPE_F32, 0, NULL, &ref, &e), OMNI_OK);
        kt_tensor(&y, OMNI_DTYPE_F32, ref.ndim, ref.shape);
        rc = omni_op_linear(&y, &x, &w, &b, &e);
        ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
        size_t n = (size_t)omni_tensor_numel(&y);
        double rel = tu_rel_err(kt_f(&y), kt_f(&ref), n);
        ck_assert_msg(rel < 1e-5, "%s: rel err %.3g", wkeys[i], rel);
        kt_release(&y), omni_tensor_release(&w), omni_tensor_release(&ref);
    }
    omni_tensor_release(&x), omni_tensor_release(&b);
    omni_weights_close(wf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("matmul");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_linear_hand_worked_2x2_by_3x2);
    tcase_add_test(tc, test_matmul_matches_naive_loop_on_odd_sizes);
    tcase_add_test(tc, test_matmul_f16_and_bf16_weights_match_naive_loop);
    tcase_add_test(tc, test_matmul_portable_path_matches_naive_loop);
    tcase_add_test(tc, test_matmul_alpha_beta_bias_paths);
    tcase_add_test(tc, test_matmul_beta_zero_never_reads_y);
    tcase_add_test(tc, test_matmul_threads_1_and_2_are_bitwise_identical);
    tcase_add_test(tc, test_matmul_strided_row_views);
    tcase_add_test(tc, test_matmul_rejects_wrong_dtype_and_shape);
    tcase_add_test(tc, test_add_and_add_row_hand_worked_with_aliasing);
    tcase_add_test(tc, test_copy_converts_between_float_dtypes);
    tcase_add_test(tc, test_copy_handles_strided_source_and_reshape);
    tcase_add_test(tc, test_ops_reject_cuda_tensors_cleanly);
    tcase_add_test(tc, test_linear_matches_pytorch_fixture);
    tcase_add_test(tc, test_parallel_for_covers_each_index_once);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
