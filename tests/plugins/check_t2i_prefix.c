/* tests/plugins/check_t2i_prefix.c - OmniMamba's T2I prefix on tiny random
 * weights written by the test: the id layout (left padding, truncation with
 * a warning, special ids), the embeddings against a double-precision hand
 * computation of fc2(GELU_tanh(fc1(E[id]))) + pos_embed, and the refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "omni/harness.h"

static struct omni_error err;

#define OK(call)                                                                         \
    do {                                                                                 \
        omni_error_clear(&err);                                                          \
        int rc_ = (call);                                                                \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg); \
    } while (0)

#define V 50288 /* the real vocabulary: the default special ids are 50277..50283 */
#define D 3
#define HD 5
#define R 75
#define PFX "llm_backbone.mamba.backbone."

static float E[V * D], FC1[HD * D], FC2[D * HD], POS[R * D];

/* Write the tiny weights (pos rows = rows) and return the file path. */
static const char *write_weights(const char *file, int rows, int fc2_cols)
{
    static char path[1024];
    struct tu_rng r;
    tu_rng_seed(&r, 1234);
    tu_fill_normal(&r, E, V * D, 1.0f);
    tu_fill_normal(&r, FC1, HD * D, 0.7f);
    tu_fill_normal(&r, FC2, D * HD, 0.7f);
    tu_fill_normal(&r, POS, R * D, 0.1f);
    struct omni_tensor t[4];
    OK(omni_tensor_alloc_host(&t[0], OMNI_DTYPE_F32, 2, (int64_t)V, (int64_t)D));
    OK(omni_tensor_alloc_host(&t[1], OMNI_DTYPE_F32, 2, (int64_t)HD, (int64_t)D));
    OK(omni_tensor_alloc_host(&t[2], OMNI_DTYPE_F32, 2, (int64_t)D, (int64_t)fc2_cols));
    OK(omni_tensor_alloc_host(&t[3], OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)rows, (int64_t)D));
    memcpy(omni_tensor_data(&t[0]), E, sizeof E);
    memcpy(omni_tensor_data(&t[1]), FC1, sizeof FC1);
    for (int i = 0; i < D * fc2_cols; i++)
        ((float *)omni_tensor_data(&t[2]))[i] = FC2[i % (D * HD)];
    memcpy(omni_tensor_data(&t[3]), POS, sizeof(float) * (size_t)(rows < R ? rows : R) * D);
    const char *names[4] = {PFX "embedding.weight", PFX "caption_embed.cap_proj.fc1.weight",
                            PFX "caption_embed.cap_proj.fc2.weight", PFX "pos_embed"};
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), file);
    OK(omni_safetensors_write(path, 4, names, t, &err));
    for (int i = 0; i < 4; i++)
        omni_tensor_release(&t[i]);
    return path;
}

static struct omni_harness *stage(const char *params)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "t2i_prefix", params, &err));
    OK(omni_harness_load_weights(h, write_weights("t2i.safetensors", R, HD), PFX, &err));
    return h;
}

static void push_ids(struct omni_harness *h, int64_t B, int64_t n, const int32_t *ids)
{
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_I32, 2, B, n));
    if (B > 0 && n > 0)
        memcpy(omni_tensor_data(&t), ids, sizeof(int32_t) * (size_t)(B * n));
    OK(omni_harness_push(h, "ids", &t, &err));
    omni_tensor_release(&t);
}

/* The expected embedding of id at position p, in double. */
static void hand(int32_t id, int p, double out[D])
{
    double g[HD];
    for (int j = 0; j < HD; j++) {
        double v = 0;
        for (int k = 0; k < D; k++)
            v += (double)FC1[j * D + k] * E[(size_t)id * D + k];
        g[j] = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    for (int i = 0; i < D; i++) {
        double v = 0;
        for (int j = 0; j < HD; j++)
            v += (double)FC2[i * HD + j] * g[j];
        out[i] = v + POS[p * D + i];
    }
}

/* The prefix ids the spec prescribes for a caption (§7.1). */
static void want_ids(const int32_t *cap, int n, int32_t out[72])
{
    int m = n < 68 ? n : 68;
    out[0] = 50282;
    out[1] = 50280;
    for (int j = 0; j < 68; j++)
        out[2 + j] = 50277;
    for (int j = 0; j < m; j++)
        out[2 + 68 - m + j] = cap[j];
    out[70] = 50281;
    out[71] = 50278;
}

static void check_row(const struct omni_tensor *emb, const struct omni_tensor *pids, int64_t b, const int32_t *cap,
                      int n)
{
    int32_t want[72];
    want_ids(cap, n, want);
    const int32_t *got = (const int32_t *)omni_tensor_data(pids) + b * 72;
    for (int p = 0; p < 72; p++)
        ck_assert_msg(got[p] == want[p], "row %lld: prefix id %d is %d, expected %d", (long long)b, p, got[p], want[p]);
    const float *e = (const float *)omni_tensor_data(emb) + b * 72 * D;
    double worst = 0;
    for (int p = 0; p < 72; p++) {
        double h[D];
        hand(want[p], p, h);
        for (int i = 0; i < D; i++) {
            double d = fabs(e[p * D + i] - h[i]) / fmax(fabs(h[i]), 1.0);
            worst = fmax(worst, d);
            ck_assert_msg(d < 2e-6, "row %lld pos %d dim %d: %.8g, hand computation %.8g", (long long)b, p, i,
                          (double)e[p * D + i], h[i]);
        }
    }
    ck_assert(worst < 2e-6);
}

START_TEST(test_short_caption_is_left_padded)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL);
    const int32_t cap[3] = {5, 6, 40000};
    push_ids(h, 1, 3, cap);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *emb = omni_harness_pull(h, "embeds"), *pids = omni_harness_pull(h, "prefix_ids");
    ck_assert_ptr_nonnull(emb);
    ck_assert_ptr_nonnull(pids);
    ck_assert_int_eq(emb->ndim, 3);
    ck_assert_int_eq(emb->shape[0], 1);
    ck_assert_int_eq(emb->shape[1], 72);
    ck_assert_int_eq(emb->shape[2], D);
    ck_assert_int_eq(pids->shape[1], 72);
    /* the layout written out: [t2i, sot, PAD x 65, 5, 6, 40000, eot, soi] */
    const int32_t *pi = omni_tensor_data(pids);
    ck_assert_int_eq(pi[0], 50282);
    ck_assert_int_eq(pi[1], 50280);
    ck_assert_int_eq(pi[2], 50277);
    ck_assert_int_eq(pi[66], 50277);
    ck_assert_int_eq(pi[67], 5);
    ck_assert_int_eq(pi[68], 6);
    ck_assert_int_eq(pi[69], 40000);
    ck_assert_int_eq(pi[70], 50281);
    ck_assert_int_eq(pi[71], 50278);
    check_row(emb, pids, 0, cap, 3);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static char logged[4096];
static void sink(int level, const char *file, int line, const char *msg, void *user)
{
    if (level == OMNI_LOG_WARN)
        snprintf(logged + strlen(logged), sizeof logged - strlen(logged), "%s\n", msg);
}

START_TEST(test_long_caption_keeps_first_68_and_warns)
{
    long live = omni_buffer_live_count();
    omni_log_set_sink(sink, NULL);
    omni_log_set_level(OMNI_LOG_WARN);
    struct omni_harness *h = stage(NULL);
    int32_t cap[70];
    for (int i = 0; i < 70; i++)
        cap[i] = 1000 + i;
    push_ids(h, 1, 70, cap);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *pids = omni_harness_pull(h, "prefix_ids");
    const int32_t *pi = omni_tensor_data(pids);
    ck_assert_int_eq(pi[2], 1000);  /* no padding: the first 68 ids */
    ck_assert_int_eq(pi[69], 1067);
    ck_assert_int_eq(pi[70], 50281);
    check_row(omni_harness_pull(h, "embeds"), pids, 0, cap, 70);
    ck_assert_msg(strstr(logged, "70") && strstr(logged, "68"), "warning naming both lengths, got '%s'", logged);
    /* exactly 68: no warning */
    logged[0] = 0;
    push_ids(h, 1, 68, cap);
    OK(omni_harness_forward(h, &err));
    ck_assert_str_eq(logged, "");
    omni_harness_free(h);
    omni_log_set_sink(NULL, NULL);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_batch_rows_are_independent)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL);
    const int32_t caps[2 * 4] = {1, 2, 3, 4, 50000, 7, 7, 9};
    push_ids(h, 2, 4, caps);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *emb = omni_harness_pull(h, "embeds"), *pids = omni_harness_pull(h, "prefix_ids");
    ck_assert_int_eq(emb->shape[0], 2);
    check_row(emb, pids, 0, caps, 4);
    check_row(emb, pids, 1, caps + 4, 4);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_empty_caption_is_refused)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL);
    push_ids(h, 1, 0, NULL);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
    ck_assert_ptr_null(omni_harness_pull(h, "embeds"));
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_params_change_the_slot)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage("{caption_len: 4, pad_id: 9, t2i_id: 1, sot_id: 2, eot_id: 3, soi_id: 4}");
    const int32_t cap[2] = {77, 78};
    push_ids(h, 1, 2, cap);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *pids = omni_harness_pull(h, "prefix_ids");
    ck_assert_int_eq(pids->shape[1], 8);
    const int32_t want[8] = {1, 2, 9, 9, 77, 78, 3, 4};
    ck_assert_mem_eq(omni_tensor_data(pids), want, sizeof want);
    const float *e = omni_tensor_data(omni_harness_pull(h, "embeds"));
    for (int p = 0; p < 8; p++) {
        double hv[D];
        hand(want[p], p, hv);
        for (int i = 0; i < D; i++)
            ck_assert_double_eq_tol(e[p * D + i], hv[i], 2e-6 * fmax(1.0, fabs(hv[i])));
    }
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_load_rejects_bad_weights)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "t2i_prefix", NULL, &err));
    omni_error_clear(&err);
    /* pos_embed shorter than the 72 prefix positions */
    ck_assert_int_eq(omni_harness_load_weights(h, write_weights("short.safetensors", 50, HD), PFX, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "pos_embed"));
    ck_assert_ptr_nonnull(strstr(err.msg, "72"));
    /* fc2 [D, HD+1] does not follow fc1 [HD, D] */
    ck_assert_int_eq(omni_harness_load_weights(h, write_weights("fc.safetensors", R, HD + 1), PFX, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "fc2"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[3,6]"));
    /* forward without weights */
    const int32_t cap[1] = {1};
    push_ids(h, 1, 1, cap);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESTATE);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("t2i_prefix");
    TCase *tc = tcase_create("t2i_prefix");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_short_caption_is_left_padded);
    tcase_add_test(tc, test_long_caption_keeps_first_68_and_warns);
    tcase_add_test(tc, test_batch_rows_are_independent);
    tcase_add_test(tc, test_empty_caption_is_refused);
    tcase_add_test(tc, test_params_change_the_slot);
    tcase_add_test(tc, test_load_rejects_bad_weights);
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
    return failed ? 1 : 0;
}
