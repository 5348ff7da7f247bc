/* tests/kernels/check_sample.c - softmax, argmax, the counter-based uniform
 * and the sampler rules (top_k / temperature / top_p, inverse-CDF draw). */
#include <stdlib.h>

#include "ktest.h"

/* a (B, V) logits tensor and a (B) ids tensor */
static float *mk(struct omni_tensor *lg, struct omni_tensor *ids, int64_t B, int64_t V)
{
    kt_tensorv(ids, OMNI_DTYPE_I32, 1, B);
    return kt_tensorv(lg, OMNI_DTYPE_F32, 2, B, V);
}

START_TEST(test_softmax_hand_worked_and_large_logits)
{
    /* softmax(ln1, ln2, ln3) = [1/6, 2/6, 3/6]; row 2 = 1000 + the same: no overflow */
    struct omni_tensor x, y;
    struct omni_error e;
    float *xp = kt_tensorv(&x, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    float *yp = kt_tensorv(&y, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    const float l[3] = {0.0f, 0.69314718f, 1.09861229f};
    for (int i = 0; i < 3; i++)
        xp[i] = l[i], xp[3 + i] = 1000.0f + l[i];
    ck_assert_int_eq(omni_op_softmax(&y, &x, &e), OMNI_OK);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++)
            ck_assert_float_eq_tol(yp[r * 3 + i], (float)(i + 1) / 6.0f, r ? 1e-4 : 1e-6);
    ck_assert_int_eq(omni_op_softmax(&x, &x, &e), OMNI_OK); /* in place */
    ck_assert_float_eq_tol(xp[2], 0.5f, 1e-6);
    kt_release(&x), kt_release(&y);
}
END_TEST

START_TEST(test_softmax_matches_pytorch_fixture)
{
    struct omni_weights *f;
    struct omni_error e;
    ck_assert_int_eq(omni_weights_open(&f, tu_repo_path("tests/fixtures/data/kernels/softmax.safetensors"), &e), OMNI_OK);
    struct omni_tensor x, ref, y;
    ck_assert_int_eq(omni_weights_load(f, NULL, "x", OMNI_DTYPE_F32, 0, NULL, &x, &e), OMNI_OK);
    ck_assert_int_eq(omni_weights_load(f, NULL, "y", OMNI_DTYPE_F32, 0, NULL, &ref, &e), OMNI_OK);
    float *yp = kt_tensor(&y, OMNI_DTYPE_F32, x.ndim, x.shape);
    ck_assert_int_eq(omni_op_softmax(&y, &x, &e), OMNI_OK);
    const float *r = kt_f(&ref);
    for (int64_t i = 0; i < omni_tensor_numel(&x); i++)
        ck_assert_msg(fabsf(yp[i] - r[i]) <= 1e-6f * r[i] + 1e-37f, "i=%lld got %g want %g", (long long)i,
                      (double)yp[i], (double)r[i]);
    kt_release(&y), omni_tensor_release(&x), omni_tensor_release(&ref);
    omni_weights_close(f);
}
END_TEST

START_TEST(test_argmax_lowest_index_on_ties)
{
    struct omni_tensor lg, ids;
    struct omni_error e;
    float *lp = mk(&lg, &ids, 3, 4);
    memcpy(lp, (float[]){1, 5, 5, 2, -INFINITY, -INFINITY, -3, -3, 7, 7, 7, 7}, 48);
    ck_assert_int_eq(omni_op_argmax(&ids, &lg, &e), OMNI_OK);
    int32_t *ip = omni_tensor_data(&ids);
    ck_assert_int_eq(ip[0], 1);
    ck_assert_int_eq(ip[1], 2);
    ck_assert_int_eq(ip[2], 0);
    kt_release(&lg), kt_release(&ids);
}
END_TEST

START_TEST(test_uniform_is_deterministic_in_range_and_keyed)
{
    double sum = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = omni_sample_uniform(42, i, 0);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
    }
    ck_assert_msg(fabs(sum / n - 0.5) < 0.005, "mean %g", sum / n); /* sd of the mean 0.0009 */
    ck_assert(omni_sample_uniform(1, 2, 3) == omni_sample_uniform(1, 2, 3));
    ck_assert(omni_sample_uniform(1, 2, 3) != omni_sample_uniform(2, 2, 3));
    ck_assert(omni_sample_uniform(1, 2, 3) != omni_sample_uniform(1, 3, 3));
    ck_assert(omni_sample_uniform(1, 2, 3) != omni_sample_uniform(1, 2, 4));
    ck_assert(omni_sample_uniform(0, 0, 0) != omni_sample_uniform(0, 0, 1));
}
END_TEST

START_TEST(test_top_k_1_is_argmax_and_ignores_temperature)
{
    struct omni_tensor lg, ids;
    struct omni_error e;
    float *lp = mk(&lg, &ids, 2, 5);
    memcpy(lp, (float[]){0, 3, 1, 3, 2, -1, -2, 0.5f, 0.25f, -9}, 40);
    int32_t *ip = omni_tensor_data(&ids);
    const float temps[3] = {0.0f, 1.0f, 100.0f}; /* 0 would be rejected for top_k != 1 */
    for (int i = 0; i < 3; i++)
        for (int64_t step = 0; step < 5; step++) {
            struct omni_sampling s = {temps[i], 1, 0.9f};
            ck_assert_int_eq(omni_op_sample(&ids, &lg, &s, 7, step, &e), OMNI_OK);
            ck_assert_int_eq(ip[0], 1);
            ck_assert_int_eq(ip[1], 2);
        }
    kt_release(&lg), kt_release(&ids);
}
END_TEST

START_TEST(test_same_seed_same_ids_different_seed_different_ids)
{
    const int64_t B = 64, V = 100;
    struct omni_tensor lg, ids;
    struct omni_error e;
    float *lp = mk(&lg, &ids, B, V);
    for (int64_t i = 0; i < B * V; i++)
        lp[i] = (float)((i * 37) % 11) * 0.1f; /* flat-ish: many ids likely */
    int32_t a[64], b[64], c[64], d[64];
    struct omni_sampling s = {1.0f, 0, 0.0f};
    int32_t *ip = omni_tensor_data(&ids);
    ck_assert_int_eq(omni_op_sample(&ids, &lg, &s, 123, 5, &e), OMNI_OK);
    memcpy(a, ip, sizeof a);
    ck_assert_int_eq(omni_op_sample(&ids, &lg, &s, 123, 5, &e), OMNI_OK);
    memcpy(b, ip, sizeof b);
    ck_assert_int_eq(omni_op_sample(&ids, &lg, &s, 124, 5, &e), OMNI_OK);
    memcpy(c, ip, sizeof c);
    ck_assert_int_eq(omni_op_sample(&ids, &lg, &s, 123, 6, &e), OMNI_OK);
    memcpy(d, ip, sizeof d);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    ck_assert(memcmp(a, d, sizeof a) != 0);
    for (int i = 0; i < 64; i++)
        ck_assert(a[i] >= 0 && a[i] < V);
    kt_release(&lg), kt_release(&ids);
}
END_TEST

START_TEST(test_sample_at_draws_with_counter_plus_add)
{
    /* sample_at(counter c, add a) == sample(step c + a) for every row, and a new
     * counter value changes the draw as a new step does */
    const int64_t B = 64, V = 100;
    struct omni_tensor lg, ids, ctr;
    struct omni_error e;
    float *lp = mk(&lg, &ids, B, V);
    int64_t *cp = kt_tensorv(&ctr, OMNI_DTYPE_I64, 1, (int64_t)1);
    for (int64_t i = 0; i < B * V; i++)
        lp[i] = (float)((i * 53) % 17) * 0.1f;
    struct omni_sampling s = {0.9f, 40, 0.95f};
    int32_t want[64], got[64];
    int32_t *ip = omni_tensor_data(&ids);
    for (int64_t step = 0; step < 4; step++) {
        ck_assert_int_eq(omni_op_sample(&ids, &lg, &s, 77, step + 1, &e), OMNI_OK);
        memcpy(want, ip, sizeof want);
        *cp = step;
        ck_assert_int_eq(omni_op_sample_at(&ids, &lg, &s, 77, &ctr, 1, &e), OMNI_OK);
        memcpy(got, ip, sizeof got);
        ck_assert(memcmp(want, got, sizeof want) == 0);
    }
    /* the counter must be one i64 on the logits' device */
    struct omni_tensor c32;
    kt_tensorv(&c32, OMNI_DTYPE_I32, 1, (int64_t)1);
    ck_assert_int_eq(omni_op_sample_at(&ids, &lg, &s, 77, &c32, 1, &e), OMNI_EDTYPE);
    ck_assert_ptr_nonnull(strstr(e.msg, "counter"));
    kt_release(&lg), kt_release(&ids), kt_release(&ctr), kt_release(&c32);
}
END_TEST

/* draws of one row over `n` steps; counts[v] += 1 per draw of v */
static void draw_counts(const float *logits, int64_t V, const struct omni_sampling *s, int n,
                        int *counts)
{
    struct omni_tensor lg, ids;
    struct omni_error e;
    float *lp = mk(&lg, &ids, 1, V);
    memcpy(lp, logits, sizeof(float) * (size_t)V);
    for (int64_t v = 0; v < V; v++)
        counts[v] = 0;
    for (int step = 0; step < n; step++) {
        int rc = omni_op_sample(&ids, &lg, s, 99, step, &e);
        ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
        int32_t id = *(int32_t *)omni_tensor_data(&ids);
        ck_assert(id >= 0 && id < V);
        counts[id]++;
    }
    kt_release(&lg), kt_release(&ids);
}

START_TEST(test_top_p_edge_cases)
{
    /* probabilities [0.2, 0.5, 0.3] (logits = ln p); ascending cumulative:
     * 0.2 (id 0), 0.5 (id 2), 1.0 (id 1) */
    const float lg[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
    int cnt[3];
    /* top_p 0.6: remove cumulative <= 0.4 -> id 0 only; ids 1 and 2 remain */
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 0, 0.6f}, 400, cnt);
    ck_assert(cnt[0] == 0 && cnt[1] > 0 && cnt[2] > 0);
    /* top_p 0.4: remove <= 0.6 -> ids 0 and 2; only the largest remains */
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 0, 0.4f}, 200, cnt);
    ck_assert(cnt[1] == 200);
    /* tiny top_p: everything below the largest goes, but the largest stays */
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 0, 1e-9f}, 100, cnt);
    ck_assert(cnt[1] == 100);
    /* top_p 1 and 0 are off: all three appear */
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 0, 1.0f}, 400, cnt);
    ck_assert(cnt[0] > 0 && cnt[1] > 0 && cnt[2] > 0);
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 0, 0.0f}, 400, cnt);
    ck_assert(cnt[0] > 0 && cnt[1] > 0 && cnt[2] > 0);
    /* top_k 2 keeps ids 1, 2 (renormalised 0.625/0.375); top_p 0.6 on those:
     * ascending cumulative 0.375 (id 2) <= 0.4 is removed -> only id 1 */
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 2, 0.0f}, 400, cnt);
    ck_assert(cnt[0] == 0 && cnt[1] > 0 && cnt[2] > 0);
    draw_counts(lg, 3, &(struct omni_sampling){1.0f, 2, 0.6f}, 200, cnt);
    ck_assert(cnt[1] == 200);
    /* a very low temperature concentrates everything on the argmax */
    draw_counts(lg, 3, &(struct omni_sampling){0.01f, 0, 0.0f}, 200, cnt);
    ck_assert(cnt[1] == 200);
}
END_TEST

START_TEST(test_draw_is_inverse_cdf_in_index_order_and_distribution_fits)
{
    /* p = [0.1, 0.2, 0.3, 0.4]: id = first j with u < cumsum(p)_j for the
     * uniform of (seed 99, step, row 0); and a chi-square over 20000 draws
     * (3 dof; 35 is far beyond the 1e-6 tail at 30.7) */
    const double p[4] = {0.1, 0.2, 0.3, 0.4};
    const float lg[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    struct omni_tensor t, ids;
    struct omni_error e;
    float *lp = mk(&t, &ids, 1, 4);
    memcpy(lp, lg, sizeof lg);
    const int n = 20000;
    int cnt[4] = {0};
    for (int step = 0; step < n; step++) {
        struct omni_sampling s = {1.0f, 0, 0.0f};
        ck_assert_int_eq(omni_op_sample(&ids, &t, &s, 99, step, &e), OMNI_OK);
        int32_t id = *(int32_t *)omni_tensor_data(&ids);
        cnt[id]++;
        double u = omni_sample_uniform(99, step, 0), c = 0;
        int want = 3, near = 0;
        for (int j = 0; j < 4; j++) {
            c += p[j];
            near |= fabs(u - c) < 1e-6;
            if (u < c) {
                want = j;
                break;
            }
        }
        if (!near)
            ck_assert_msg(id == want, "u=%.9f: id %d, expected %d", u, id, want);
    }
    double chi2 = 0;
    for (int j = 0; j < 4; j++)
        chi2 += (cnt[j] - n * p[j]) * (cnt[j] - n * p[j]) / (n * p[j]);
    ck_assert_msg(chi2 < 35.0, "chi2 %.2f counts %d %d %d %d", chi2, cnt[0], cnt[1], cnt[2], cnt[3]);
    kt_release(&t), kt_release(&ids);
}
END_TEST

START_TEST(test_sampler_rows_use_their_own_uniform)
{
    /* B = 3 identical rows [0.5, 0.5]: row b draws id 0 iff u(seed, step, b) < 0.5 */
    struct omni_tensor lg, ids;
    struct omni_error e;
    float *lp = mk(&lg, &ids, 3, 2);
    for (int i = 0; i < 6; i++)
        lp[i] = 0.0f;
    int32_t *ip = omni_tensor_data(&ids);
    for (int64_t step = 0; step < 50; step++) {
        ck_assert_int_eq(omni_op_sample(&ids, &lg, &(struct omni_sampling){1.0f, 0, 0.0f}, 5, step, &e), OMNI_OK);
        for (int b = 0; b < 3; b++)
            ck_assert_int_eq(ip[b], omni_sample_uniform(5, step, b) < 0.5 ? 0 : 1);
    }
    kt_release(&lg), kt_release(&ids);
}
END_TEST

START_TEST(test_sample_rejects_bad_arguments)
{
    struct omni_tensor lg, ids, ids64, l1;
    struct omni_error e;
    mk(&lg, &ids, 2, 5);
    kt_tensorv(&ids64, OMNI_DTYPE_I64, 1, (int64_t)2);
    kt_tensorv(&l1, OMNI_DTYPE_F32, 1, (int64_t)5);
    KT_ASSERT_ERR(omni_op_sample(&ids, &lg, &(struct omni_sampling){1.0f, -1, 0.0f}, 0, 0, &e), e,
                  OMNI_EINVAL, "omni_op_sample", "top_k -1");
    KT_ASSERT_ERR(omni_op_sample(&ids, &lg, &(struct omni_sampling){0.0f, 0, 0.0f}, 0, 0, &e), e,
                  OMNI_EINVAL, "temperature");
    KT_ASSERT_ERR(omni_op_sample(&ids, &lg, &(struct omni_sampling){1.0f, 5, NAN}, 0, 0, &e), e,
                  OMNI_EINVAL, "top_p");
    KT_ASSERT_ERR(omni_op_argmax(&ids64, &lg, &e), e, OMNI_EDTYPE, "omni_op_argmax", "ids has dtype i64");
    KT_ASSERT_ERR(omni_op_softmax(&lg, &ids64, &e), e, OMNI_EDTYPE, "omni_op_softmax", "x has dtype i64");
    KT_ASSERT_ERR(omni_op_softmax(&l1, &lg, &e), e, OMNI_ESHAPE, "omni_op_softmax", "y has shape [5]", "x has shape [2,5]");
    KT_ASSERT_ERR(omni_op_argmax(&ids, &l1, &e), e, OMNI_ESHAPE, "logits has shape [5]");
    struct omni_tensor ids3 = ids;
    ids3.shape[0] = 3;
    KT_ASSERT_ERR(omni_op_sample(&ids3, &lg, &(struct omni_sampling){1.0f, 0, 0.0f}, 0, 0, &e), e,
                  OMNI_ESHAPE, "ids has shape [3]", "expected [2]");
    kt_release(&lg), kt_release(&ids), kt_release(&ids64), kt_release(&l1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_add_test(tc, test_softmax_hand_worked_and_large_logits);
    tcase_add_test(tc, test_softmax_matches_pytorch_fixture);
    tcase_add_test(tc, test_argmax_lowest_index_on_ties);
    tcase_add_test(tc, test_uniform_is_deterministic_in_range_and_keyed);
    tcase_add_test(tc, test_top_k_1_is_argmax_and_ignores_temperature);
    tcase_add_test(tc, test_same_seed_same_ids_different_seed_different_ids);
    tcase_add_test(tc, test_sample_at_draws_with_counter_plus_add);
    tcase_add_test(tc, test_top_p_edge_cases);
    tcase_add_test(tc, test_draw_is_inverse_cdf_in_index_order_and_distribution_fits);
    tcase_add_test(tc, test_sampler_rows_use_their_own_uniform);
    tcase_add_test(tc, test_sample_rejects_bad_arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
