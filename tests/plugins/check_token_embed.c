/* tests/plugins/check_token_embed.c - the decode-step embedding on tiny
 * weights written by the test: table row + position row (MMU text), the
 * project_in MLP with erf-GELU against a double-precision hand computation
 * (T2I codes), OMNI_DONE with a warning past the position table, and load
 * errors. */
#include <math.h>
#include <stdio.h>
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

/* MMU text: table (10, 3), mmu_pos_embed (1, 6, 3). T2I: img table (16, 4),
 * projector.0 (8, 4) + bias, .2 (4, 8) + bias, .4 (4, 4) + bias, pos_embed (1, 5, 4). */
static float TXT[10 * 3], MPOS[6 * 3], IMG[16 * 4], W0[8 * 4], B0[8], W2[4 * 8], B2[4], W4[4 * 4], B4[4], PPOS[5 * 4];

static void add(struct omni_tensor *t, const char **names, int *n, const char *name, const float *v, int ndim,
                int64_t a, int64_t b, int64_t c)
{
    if (ndim == 1)
        OK(omni_tensor_alloc_host(&t[*n], OMNI_DTYPE_F32, 1, a));
    else if (ndim == 2)
        OK(omni_tensor_alloc_host(&t[*n], OMNI_DTYPE_F32, 2, a, b));
    else
        OK(omni_tensor_alloc_host(&t[*n], OMNI_DTYPE_F32, 3, a, b, c));
    memcpy(omni_tensor_data(&t[*n]), v, omni_tensor_nbytes(&t[*n]));
    names[(*n)++] = name;
}

/* w2_cols != 8 writes a projector.2 that does not follow projector.0. */
static const char *write_weights(const char *file, int w2_cols)
{
    static char path[1024];
    static float w2_bad[4 * 9];
    struct tu_rng r;
    tu_rng_seed(&r, 77);
    tu_fill_normal(&r, TXT, 30, 1.0f);
    tu_fill_normal(&r, MPOS, 18, 0.3f);
    tu_fill_normal(&r, IMG, 64, 1.0f);
    tu_fill_normal(&r, W0, 32, 0.8f);
    tu_fill_normal(&r, B0, 8, 0.3f);
    tu_fill_normal(&r, W2, 32, 0.5f);
    tu_fill_normal(&r, B2, 4, 0.3f);
    tu_fill_normal(&r, W4, 16, 0.5f);
    tu_fill_normal(&r, B4, 4, 0.3f);
    tu_fill_normal(&r, PPOS, 20, 0.3f);
    struct omni_tensor t[12];
    const char *names[12];
    int n = 0;
    add(t, names, &n, "embedding.weight", TXT, 2, 10, 3, 0);
    add(t, names, &n, "mmu_pos_embed", MPOS, 3, 1, 6, 3);
    add(t, names, &n, "img_embeddings.word_embeddings.weight", IMG, 2, 16, 4, 0);
    add(t, names, &n, "img_embeddings.project_in.projector.0.weight", W0, 2, 8, 4, 0);
    add(t, names, &n, "img_embeddings.project_in.projector.0.bias", B0, 1, 8, 0, 0);
    add(t, names, &n, "img_embeddings.project_in.projector.2.weight", w2_cols == 8 ? W2 : w2_bad, 2, 4, w2_cols, 0);
    add(t, names, &n, "img_embeddings.project_in.projector.2.bias", B2, 1, 4, 0, 0);
    add(t, names, &n, "img_embeddings.project_in.projector.4.weight", W4, 2, 4, 4, 0);
    add(t, names, &n, "img_embeddings.project_in.projector.4.bias", B4, 1, 4, 0, 0);
    add(t, names, &n, "pos_embed", PPOS, 3, 1, 5, 4);
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), file);
    OK(omni_safetensors_write(path, (size_t)n, names, t, &err));
    for (int i = 0; i < n; i++)
        omni_tensor_release(&t[i]);
    return path;
}

#define T2I_PARAMS                                                                                              \
    "{table: img_embeddings.word_embeddings.weight, pos_table: pos_embed, mlp: [img_embeddings.project_in.projector.0, " \
    "img_embeddings.project_in.projector.2, img_embeddings.project_in.projector.4]}"

static struct omni_harness *stage(const char *params)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "token_embed", params, &err));
    OK(omni_harness_load_weights(h, write_weights("te.safetensors", 8), "", &err));
    return h;
}

static void push_ids(struct omni_harness *h, int64_t B, const int32_t *ids)
{
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_I32, 2, B, (int64_t)1));
    memcpy(omni_tensor_data(&t), ids, sizeof(int32_t) * (size_t)B);
    OK(omni_harness_push(h, "ids", &t, &err));
    omni_tensor_release(&t);
}

START_TEST(test_text_token_gets_its_row_plus_position)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL); /* defaults: embedding.weight + mmu_pos_embed */
    const int32_t ids[2] = {4, 7};
    for (int64_t pos = 0; pos < 6; pos++) {
        omni_harness_set_position(h, pos);
        push_ids(h, 2, ids);
        OK(omni_harness_forward(h, &err));
        const struct omni_tensor *e = omni_harness_pull(h, "embeds");
        ck_assert_int_eq(e->ndim, 3);
        ck_assert_int_eq(e->shape[0], 2);
        ck_assert_int_eq(e->shape[1], 1);
        ck_assert_int_eq(e->shape[2], 3);
        const float *v = omni_tensor_data(e);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 3; i++)
                ck_assert_msg(v[b * 3 + i] == TXT[ids[b] * 3 + i] + MPOS[pos * 3 + i], "pos %lld row %d dim %d",
                              (long long)pos, b, i);
    }
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static double gelu_erf(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

START_TEST(test_image_code_goes_through_project_in)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(T2I_PARAMS);
    const int32_t ids[3] = {0, 15, 9};
    for (int64_t pos = 2; pos < 5; pos++) {
        omni_harness_set_position(h, pos);
        push_ids(h, 3, ids);
        OK(omni_harness_forward(h, &err));
        const float *v = omni_tensor_data(omni_harness_pull(h, "embeds"));
        for (int b = 0; b < 3; b++) {
            double u0[8], u2[4];
            for (int j = 0; j < 8; j++) {
                double s = B0[j];
                for (int k = 0; k < 4; k++)
                    s += (double)W0[j * 4 + k] * IMG[ids[b] * 4 + k];
                u0[j] = gelu_erf(s);
            }
            for (int j = 0; j < 4; j++) {
                double s = B2[j];
                for (int k = 0; k < 8; k++)
                    s += (double)W2[j * 8 + k] * u0[k];
                u2[j] = gelu_erf(s);
            }
            for (int j = 0; j < 4; j++) {
                double s = B4[j];
                for (int k = 0; k < 4; k++)
                    s += (double)W4[j * 4 + k] * u2[k];
                s += PPOS[pos * 4 + j];
                ck_assert_msg(fabs(v[b * 4 + j] - s) <= 2e-6 * fmax(1.0, fabs(s)),
                              "pos %lld row %d dim %d: %.8g, hand computation %.8g", (long long)pos, b, j,
                              (double)v[b * 4 + j], s);
            }
        }
    }
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static char logged[2048];
static void sink(int level, const char *file, int line, const char *msg, void *user)
{
    if (level == OMNI_LOG_WARN)
        snprintf(logged + strlen(logged), sizeof logged - strlen(logged), "%s\n", msg);
}

START_TEST(test_stops_with_done_past_the_position_table)
{
    long live = omni_buffer_live_count();
    omni_log_set_sink(sink, NULL);
    omni_log_set_level(OMNI_LOG_WARN);
    struct omni_harness *h = stage(NULL);
    const int32_t ids[1] = {3};
    omni_harness_set_position(h, 5); /* the last row: still fine */
    push_ids(h, 1, ids);
    OK(omni_harness_forward(h, &err));
    ck_assert_str_eq(logged, "");
    omni_harness_set_position(h, 6);
    push_ids(h, 1, ids);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_DONE);
    ck_assert_msg(strstr(logged, "position 6 would pass mmu_pos_embed (6 rows): generation stopped"), "log: '%s'",
                  logged);
    ck_assert_ptr_null(omni_harness_pull(h, "embeds"));
    omni_harness_set_position(h, 1000);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_DONE);
    omni_harness_free(h);
    omni_log_set_sink(NULL, NULL);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_bad_weights_and_inputs)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "token_embed", T2I_PARAMS, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, write_weights("bad.safetensors", 9), "", &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "projector.2.weight"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[4,9]"));
    omni_harness_free(h);
    /* the MLP output width (4) must match the position table: mmu_pos_embed has 3 */
    OK(omni_harness_new(&h, "token_embed",
                        "{table: img_embeddings.word_embeddings.weight, pos_table: mmu_pos_embed, "
                        "mlp: [img_embeddings.project_in.projector.0, img_embeddings.project_in.projector.2]}",
                        &err));
    ck_assert_int_eq(omni_harness_load_weights(h, write_weights("te2.safetensors", 8), "", &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "mmu_pos_embed"));
    omni_harness_free(h);
    /* mlp entries must be key stems, not mappings: a clear message */
    ck_assert_int_eq(omni_harness_new(&h, "token_embed", "{mlp: [a.0, {b: 1}]}", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "param 'mlp'"));
    /* an id outside the table */
    h = stage(NULL);
    const int32_t bad[1] = {10};
    push_ids(h, 1, bad);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ERANGE);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("token_embed");
    TCase *tc = tcase_create("token_embed");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_text_token_gets_its_row_plus_position);
    tcase_add_test(tc, test_image_code_goes_through_project_in);
    tcase_add_test(tc, test_stops_with_done_past_the_position_table);
    tcase_add_test(tc, test_rejects_bad_weights_and_inputs);
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
