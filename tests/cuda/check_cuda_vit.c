/* tests/cuda/check_cuda_vit.c - the ViT block's fused ops on CUDA against
 * their CPU twins: omni_op_attention_ex (biases on load, f32 / f16 / bf16
 * precision, f32 or 16-bit out), omni_op_layernorm_ex (16-bit out, x += x_add),
 * omni_op_bias_gelu (16-bit out) and omni_op_matmul16.
 *
 * Fresh random inputs every run (the seed is printed; OMNI_TEST_SEED replays
 * it), device outputs start as NaN bytes with a guard region behind them.
 * Tolerances (max|got - ref| / max|ref|): f32 paths 1e-4 (reduction order),
 * 16-bit paths 2e-2 (the CPU twin emulates the rounding; a rounding that
 * flips between the two is one 16-bit ulp of one element). Each comparison
 * prints its measured error.
 *
 * Without a device the suite prints a skip message and exits 0, unless
 * OMNI_REQUIRE_CUDA is set. */
#include <math.h>
#include <time.h>

#include "cudatest.h"

#ifdef OMNI_HAVE_CUDA



static const int DT[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_BF16, OMNI_DTYPE_F16};

/* f32 copy of a host tensor of any float dtype (malloc'd) */
static float *as_f32(const struct omni_tensor *h)
{
    const size_t n = (size_t)omni_tensor_numel(h);
    float *f = malloc(n * sizeof(float) + 1);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(omni_dtype_convert(f, OMNI_DTYPE_F32, omni_tensor_data(h), h->dtype, n), OMNI_OK);
    return f;
}

/* device d (any float dtype, after sync) vs host ref of the same dtype */
static void cmp_any(const char *what, const struct omni_tensor *d, const struct omni_tensor *ref,
                    double tol)
{
    struct omni_tensor h;
    ct_down(&h, d);
    const size_t n = (size_t)omni_tensor_numel(ref);
    ck_assert_int_eq((size_t)omni_tensor_numel(&h), n);
    ck_assert_int_eq(h.dtype, ref->dtype);
    float *g = as_f32(&h), *r = as_f32(ref);
    const double e = n ? tu_rel_err(g, r, n) : 0.0;
    printf("%-70s rel err %.3g (tol %.3g)\n", what, e, tol);
    ct_cmp(what, g, r, n, tol);
    ct_guard_check(d, what);
    free(g);
    free(r);
    kt_release(&h);
}

/* ---- attention ------------------------------------------------------------------------------ */

static void one_attention(int64_t B, int64_t S, int64_t H, int64_t P, int prec, int out_dt,
                          int bias)
{
    struct omni_error e = {0};
    const int64_t D = H * P;
    struct omni_tensor hq, dq, hb, db, ho, dout;
    char what[200];
    pair(&hq, &dq, OMNI_DTYPE_F32, 1.5f, 3, SH(B, S, 3 * D));
    pair(&hb, &db, OMNI_DTYPE_F32, 0.5f, 1, SH(3 * D));
    kt_tensor(&ho, out_dt, 3, SH(B, S, D));
    ct_dalloc(&dout, out_dt, 3, SH(B, S, D));
    struct omni_tensor q = kt_slice_last(&hq, 0, D), k = kt_slice_last(&hq, D, D),
                       v = kt_slice_last(&hq, 2 * D, D);
    struct omni_tensor dq1 = kt_slice_last(&dq, 0, D), dk = kt_slice_last(&dq, D, D),
                       dv = kt_slice_last(&dq, 2 * D, D);
    struct omni_tensor hqb = hb, hkb = hb, hvb = hb, dqb = db, dkb = db, dvb = db;
    hqb.shape[0] = hkb.shape[0] = hvb.shape[0] = D;
    dqb.shape[0] = dkb.shape[0] = dvb.shape[0] = D;
    hkb.offset += D * 4, hvb.offset += 2 * D * 4, dkb.offset += D * 4, dvb.offset += 2 * D * 4;
    struct omni_attention_opts ho_ = {bias ? &hqb : NULL, bias ? &hkb : NULL, bias ? &hvb : NULL, prec};
    struct omni_attention_opts do_ = {bias ? &dqb : NULL, bias ? &dkb : NULL, bias ? &dvb : NULL, prec};
    ck_assert_int_eq(omni_op_attention_ex(&ho, &q, &k, &v, (int)H, 0.0f, &ho_, &e), OMNI_OK);
    int rc = omni_op_attention_ex(&dout, &dq1, &dk, &dv, (int)H, 0.0f, &do_, &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "attention B=%lld S=%lld H=%lld P=%lld prec %s out %s%s",
             (long long)B, (long long)S, (long long)H, (long long)P, omni_dtype_name(prec),
             omni_dtype_name(out_dt), bias ? " +bias" : "");
    cmp_any(what, &dout, &ho, prec == OMNI_DTYPE_F32 && out_dt == OMNI_DTYPE_F32 ? 1e-4 : 2e-2);
    rel2(&hq, &dq), rel2(&hb, &db), rel2(&ho, &dout);
}

START_TEST(test_attention_ex_matches_cpu_at_each_precision)
{
    /* the two towers, odd sizes, one key tile exactly, every padded head width (32, 64, 80, 128)
     * and a head over 128 (the f32 kernel takes a 16-bit request) */
    static const int64_t t[][4] = {{1, 734, 16, 64}, {1, 729, 16, 72}, {2, 5, 3, 72}, {3, 33, 1, 8},
                                   {1, 64, 2, 32},   {2, 129, 3, 80},  {1, 200, 2, 100}, {1, 70, 2, 160}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int p = 0; p < 3; p++) {
            one_attention(t[i][0], t[i][1], t[i][2], t[i][3], DT[p], OMNI_DTYPE_F32, 1);
            one_attention(t[i][0], t[i][1], t[i][2], t[i][3], DT[p], DT[p], i % 2);
        }
}
END_TEST

START_TEST(test_attention_ex_refuses_bad_options)
{
    struct omni_error e = {0};
    struct omni_tensor q, o, bb;
    ct_dalloc(&q, OMNI_DTYPE_F32, 3, SH(1, 4, 8));
    ct_dalloc(&o, OMNI_DTYPE_F32, 3, SH(1, 4, 8));
    ct_dalloc(&bb, OMNI_DTYPE_F32, 1, SH(7));
    struct omni_attention_opts bad_prec = {NULL, NULL, NULL, 99}, bad_bias = {&bb, NULL, NULL, 0};
    ck_assert_int_eq(omni_op_attention_ex(&o, &q, &q, &q, 2, 0.0f, &bad_prec, &e), OMNI_EINVAL);
    ck_assert_int_eq(omni_op_attention_ex(&o, &q, &q, &q, 2, 0.0f, &bad_bias, &e), OMNI_ESHAPE);
    ck_assert_msg(strstr(e.msg, "q_bias"), "message: %s", e.msg);
    omni_tensor_release(&q), omni_tensor_release(&o), omni_tensor_release(&bb);
}
END_TEST

/* ---- layernorm_ex, bias_gelu, matmul16 ------------------------------------------------------ */

START_TEST(test_layernorm_ex_matches_cpu)
{
    struct omni_error e = {0};
    static const int64_t t[][2] = {{734, 1024}, {729, 1152}, {5, 77}, {3, 3000}};
    char what[160];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int d = 0; d < 3; d++)
            for (int add = 0; add < 2; add++) {
                const int64_t M = t[i][0], D = t[i][1];
                struct omni_tensor hx, dx, hw, dw, hb, db, ha, da, ho, dout;
                pair(&hx, &dx, OMNI_DTYPE_F32, 2, 2, SH(M, D));
                for (int64_t k = 0; k < M * D; k++)
                    kt_f(&hx)[k] += 3.0f; /* a mean to subtract */
                omni_tensor_release(&dx);
                ct_up(&dx, &hx);
                pair(&hw, &dw, OMNI_DTYPE_F32, 1, 1, SH(D));
                pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(D));
                pair(&ha, &da, OMNI_DTYPE_F32, 1, 1, SH(D));
                kt_tensor(&ho, DT[d], 2, SH(M, D));
                ct_dalloc(&dout, DT[d], 2, SH(M, D));
                ck_assert_int_eq(omni_op_layernorm_ex(&ho, &hx, &hw, &hb, 1e-6f, add ? &ha : NULL, &e), OMNI_OK);
                int rc = omni_op_layernorm_ex(&dout, &dx, &dw, &db, 1e-6f, add ? &da : NULL, &e);
                ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
                ct_sync();
                snprintf(what, sizeof what, "layernorm_ex %lldx%lld out %s%s", (long long)M,
                         (long long)D, omni_dtype_name(DT[d]), add ? " x_add" : "");
                cmp_any(what, &dout, &ho, DT[d] == OMNI_DTYPE_F32 ? 1e-5 : 1e-2);
                snprintf(what, sizeof what, "layernorm_ex %lldx%lld x after%s", (long long)M,
                         (long long)D, add ? " x_add" : "");
                cmp_any(what, &dx, &hx, 1e-6);
                rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&ha, &da), rel2(&ho, &dout);
            }
    /* out sharing x's buffer while x_add writes x is refused */
    struct omni_tensor x, a;
    ct_dalloc(&x, OMNI_DTYPE_F32, 2, SH(2, 8));
    ct_dalloc(&a, OMNI_DTYPE_F32, 1, SH(8));
    ck_assert_int_eq(omni_op_layernorm_ex(&x, &x, NULL, NULL, 1e-6f, &a, &e), OMNI_EINVAL);
    omni_tensor_release(&x), omni_tensor_release(&a);
}
END_TEST

START_TEST(test_bias_gelu_matches_cpu)
{
    struct omni_error e = {0};
    static const int64_t t[][2] = {{734, 4304}, {729, 4096}, {5, 77}, {3, 6}};
    char what[160];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int d = 0; d < 3; d++)
            for (int bias = 0; bias < 2; bias++) {
                const int64_t M = t[i][0], N = t[i][1];
                struct omni_tensor hx, dx, hb, db, ho, dout;
                pair(&hx, &dx, OMNI_DTYPE_F32, 3, 2, SH(M, N));
                pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(N));
                kt_tensor(&ho, DT[d], 2, SH(M, N));
                ct_dalloc(&dout, DT[d], 2, SH(M, N));
                ck_assert_int_eq(omni_op_bias_gelu(&ho, &hx, bias ? &hb : NULL, &e), OMNI_OK);
                int rc = omni_op_bias_gelu(&dout, &dx, bias ? &db : NULL, &e);
                ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
                ct_sync();
                snprintf(what, sizeof what, "bias_gelu %lldx%lld out %s%s", (long long)M,
                         (long long)N, omni_dtype_name(DT[d]), bias ? " +bias" : "");
                cmp_any(what, &dout, &ho, DT[d] == OMNI_DTYPE_F32 ? 1e-5 : 1e-2);
                if (DT[d] == OMNI_DTYPE_F32) { /* in place */
                    ck_assert_int_eq(omni_op_bias_gelu(&hx, &hx, bias ? &hb : NULL, &e), OMNI_OK);
                    ck_assert_int_eq(omni_op_bias_gelu(&dx, &dx, bias ? &db : NULL, &e), OMNI_OK);
                    ct_sync();
                    cmp_any("bias_gelu in place", &dx, &hx, 1e-5);
                }
                rel2(&hx, &dx), rel2(&hb, &db), rel2(&ho, &dout);
            }
}
END_TEST

START_TEST(test_matmul16_matches_cpu)
{
    struct omni_error e = {0};
    static const int64_t t[][3] = {{734, 3072, 1024}, {729, 1152, 4304}, {5, 7, 33}, {17, 64, 8}};
    char what[160];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int d = 1; d < 3; d++)
            for (int beta = 0; beta < 2; beta++) {
                const int64_t M = t[i][0], N = t[i][1], K = t[i][2];
                struct omni_tensor hx, dx, hw, dw, hy, dy;
                pair(&hx, &dx, DT[d], 1, 2, SH(M, K));
                pair(&hw, &dw, DT[d], 0.1f, 2, SH(N, K));
                pair(&hy, &dy, OMNI_DTYPE_F32, 1, 2, SH(M, N));
                ck_assert_int_eq(omni_op_matmul16(&hy, &hx, &hw, (float)beta, &e), OMNI_OK);
                int rc = omni_op_matmul16(&dy, &dx, &dw, (float)beta, &e);
                ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
                ct_sync();
                snprintf(what, sizeof what, "matmul16 M=%lld N=%lld K=%lld %s beta %d", (long long)M,
                         (long long)N, (long long)K, omni_dtype_name(DT[d]), beta);
                cmp_any(what, &dy, &hy, 1e-4);
                rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hy, &dy);
            }
    /* x f32 or a dtype other than w's is refused */
    struct omni_tensor x32, w16, y;
    ct_dalloc(&x32, OMNI_DTYPE_F32, 2, SH(4, 8));
    ct_dalloc(&w16, OMNI_DTYPE_BF16, 2, SH(3, 8));
    ct_dalloc(&y, OMNI_DTYPE_F32, 2, SH(4, 3));
    ck_assert_int_eq(omni_op_matmul16(&y, &x32, &w16, 0.0f, &e), OMNI_EDTYPE);
    omni_tensor_release(&x32), omni_tensor_release(&w16), omni_tensor_release(&y);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cuda_vit");
    TCase *t = tcase_create("vit");
    tcase_add_checked_fixture(t, ct_setup, ct_teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_attention_ex_matches_cpu_at_each_precision);
    tcase_add_test(t, test_attention_ex_refuses_bad_options);
    tcase_add_test(t, test_layernorm_ex_matches_cpu);
    tcase_add_test(t, test_bias_gelu_matches_cpu);
    tcase_add_test(t, test_matmul16_matches_cpu);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return ct_main("check_cuda_vit", suite); }

#else /* !OMNI_HAVE_CUDA */

int main(void) { return ct_main_without_cuda("check_cuda_vit"); }

#endif
