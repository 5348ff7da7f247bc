/* tests/plugins/check_sampler.c - the sampler stage: greedy by default,
 * reproducible draws keyed by (seed, draw index) with index 0 for the
 * prefill and k + 1 for loop iteration k, request options over params. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "../common/testutil.h"
#include "omni/harness.h"

static struct omni_error err;

#define OK(call)                                                                          \
    do {                                                                                  \
        omni_error_clear(&err);                                                           \
        int rc_ = (call);                                                                 \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg);  \
    } while (0)

#define NV 8

static void logits(struct omni_tensor *t, int64_t B, const float *v)
{
    OK(omni_tensor_alloc_host(t, OMNI_DTYPE_F32, 2, B, (int64_t)NV));
    memcpy(omni_tensor_data(t), v, sizeof(float) * (size_t)(B * NV));
}

static int32_t run(struct omni_harness *h, const struct omni_tensor *lg, int step, int row)
{
    OK(omni_harness_push(h, "logits", lg, &err));
    OK(step ? omni_harness_step(h, &err) : omni_harness_forward(h, &err));
    const struct omni_tensor *t = omni_harness_pull(h, "token");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, OMNI_DTYPE_I32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], lg->shape[0]);
    ck_assert_int_eq(t->shape[1], 1);
    return ((const int32_t *)omni_tensor_data(t))[row];
}

/* Nearly flat logits: a draw lands almost anywhere. */
static const float FLAT[NV] = {0.3f, 0.2f, 0.25f, 0.1f, 0.0f, 0.15f, 0.05f, 0.12f};

START_TEST(test_default_is_greedy_lowest_index_on_ties)
{
    long live = omni_buffer_live_count();
    static const float v[2 * NV] = {0, 1, 5, 2, 5, -1, 0, 0, /* tie 2/4 -> 2 */
                                    -3, -2, -9, -1, -8, -7, -6, -5};
    struct omni_harness *h;
    OK(omni_harness_new(&h, "sampler", NULL, &err));
    struct omni_tensor lg;
    logits(&lg, 2, v);
    for (uint64_t seed = 1; seed < 5; seed++) {
        omni_harness_set_seed(h, seed);
        ck_assert_int_eq(run(h, &lg, 0, 0), 2);
        ck_assert_int_eq(run(h, &lg, 0, 1), 3);
    }
    omni_tensor_release(&lg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Prefill draws with index 0, loop iteration k with k + 1. */
START_TEST(test_draw_index_follows_the_loop_step)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "sampler", "top_k: 0\ntemperature: 1.0", &err));
    struct omni_tensor lg, ids;
    logits(&lg, 1, FLAT);
    OK(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 1, 1));
    const struct omni_sampling sp = {.temperature = 1.0f, .top_k = 0, .top_p = 0.0f};
    int differ = 0;
    for (uint64_t seed = 11; seed < 31; seed++) {
        omni_harness_reset_state(h);
        omni_harness_set_seed(h, seed);
        int32_t got[4];
        got[0] = run(h, &lg, 0, 0);
        for (int k = 0; k < 3; k++)
            got[k + 1] = run(h, &lg, 1, 0);
        for (int d = 0; d < 4; d++) {
            OK(omni_op_sample(&ids, &lg, &sp, seed, d, &err));
            int32_t want = ((int32_t *)omni_tensor_data(&ids))[0];
            ck_assert_msg(got[d] == want, "seed %llu draw %d: %d, op gives %d",
                          (unsigned long long)seed, d, got[d], want);
        }
        differ += got[0] != got[1] || got[1] != got[2];
    }
    ck_assert_msg(differ > 0, "draws never change with the step");
    omni_tensor_release(&lg);
    omni_tensor_release(&ids);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_same_seed_same_tokens)
{
    long live = omni_buffer_live_count();
    struct omni_harness *a, *b;
    OK(omni_harness_new(&a, "sampler", "top_k: 0\ntemperature: 0.7\ntop_p: 0.9", &err));
    OK(omni_harness_new(&b, "sampler", "top_k: 0\ntemperature: 0.7\ntop_p: 0.9", &err));
    struct omni_tensor lg;
    logits(&lg, 1, FLAT);
    int seen[NV] = {0};
    for (uint64_t seed = 100; seed < 140; seed++) {
        omni_harness_set_seed(a, seed);
        omni_harness_set_seed(b, seed);
        int32_t ta = run(a, &lg, 0, 0), tb = run(b, &lg, 0, 0);
        ck_assert_int_eq(ta, tb);
        ck_assert(ta >= 0 && ta < NV);
        seen[ta] = 1;
    }
    int distinct = 0;
    for (int i = 0; i < NV; i++)
        distinct += seen[i];
    ck_assert_msg(distinct >= 3, "only %d distinct tokens over 40 seeds", distinct);
    omni_tensor_release(&lg);
    omni_harness_free(a);
    omni_harness_free(b);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* top_k 2 keeps the two largest logits (indices 0 and 2 of FLAT). */
START_TEST(test_top_k_limits_the_choice)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "sampler", "top_k: 2", &err));
    struct omni_tensor lg;
    logits(&lg, 1, FLAT);
    int n0 = 0, n2 = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        omni_harness_set_seed(h, seed);
        int32_t t = run(h, &lg, 0, 0);
        ck_assert_msg(t == 0 || t == 2, "seed %llu: token %d outside the top 2",
                      (unsigned long long)seed, t);
        n0 += t == 0;
        n2 += t == 2;
    }
    ck_assert(n0 > 0 && n2 > 0);
    omni_tensor_release(&lg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_request_options_override_params)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "sampler", NULL, &err)); /* greedy: always token 0 */
    struct omni_tensor lg, ids;
    logits(&lg, 1, FLAT);
    OK(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 1, 1));
    const struct omni_sampling sp = {.temperature = 1.0f, .top_k = 0, .top_p = 0.0f};
    uint64_t seed = 0;
    int32_t want = 0;
    for (seed = 1; seed < 100 && want == 0; seed++) { /* a seed whose draw is not the argmax */
        OK(omni_op_sample(&ids, &lg, &sp, seed, 0, &err));
        want = ((int32_t *)omni_tensor_data(&ids))[0];
    }
    seed--;
    ck_assert_int_ne(want, 0);
    omni_harness_set_seed(h, seed);
    ck_assert_int_eq(run(h, &lg, 0, 0), 0);
    OK(omni_harness_set_options(h, "top_k: 0\ntemperature: 1", &err));
    ck_assert_int_eq(run(h, &lg, 0, 0), want);
    OK(omni_harness_set_options(h, "top_p: 2", &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "top_p"), "%s", err.msg);
    omni_tensor_release(&lg);
    omni_tensor_release(&ids);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_bad_params_and_dtype)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = NULL;
    ck_assert_int_eq(omni_harness_new(&h, "sampler", "temperature: 0", &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "temperature"), "%s", err.msg);
    ck_assert_int_eq(omni_harness_new(&h, "sampler", "top_k: -1", &err), OMNI_EINVAL);
    OK(omni_harness_new(&h, "sampler", NULL, &err));
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_I32, 2, 1, NV));
    OK(omni_harness_push(h, "logits", &t, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    ck_assert_msg(strstr(err.msg, "logits"), "%s", err.msg);
    omni_tensor_release(&t);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sampler");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_default_is_greedy_lowest_index_on_ties);
    tcase_add_test(tc, test_draw_index_follows_the_loop_step);
    tcase_add_test(tc, test_same_seed_same_tokens);
    tcase_add_test(tc, test_top_k_limits_the_choice);
    tcase_add_test(tc, test_request_options_override_params);
    tcase_add_test(tc, test_rejects_bad_params_and_dtype);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
