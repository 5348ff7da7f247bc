/* tests/plugins/check_text_head.c - the LM head on hand-worked values: the
 * last position only, the tied-embedding fallback, half storage, errors. */
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

/* W (V=3, D=2) = [[1,0],[0,1],[1,1]]: logits of h are [h0, h1, h0+h1]. */
static const float W[6] = {1, 0, 0, 1, 1, 1};

static const char *write_w(const char *file, const char *key)
{
    static char path[512];
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_F32, 2, 3, 2));
    memcpy(omni_tensor_data(&t), W, sizeof W);
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), file);
    const char *names[1] = {key};
    OK(omni_safetensors_write(path, 1, names, &t, &err));
    omni_tensor_release(&t);
    return path;
}

/* hidden (2, 3, 2): earlier positions are noise, last ones [1,2] and [3,-1]. */
static void hidden(struct omni_tensor *h)
{
    static const float v[12] = {9, 9, -7, 5, 1, 2, /* row 0 */ 4, 4, 8, -8, 3, -1};
    OK(omni_tensor_alloc_host(h, OMNI_DTYPE_F32, 3, 2, 3, 2));
    memcpy(omni_tensor_data(h), v, sizeof v);
}

static void run_and_check(struct omni_harness *h)
{
    static const float want[6] = {1, 2, 3, 3, -1, 2};
    struct omni_tensor x;
    hidden(&x);
    OK(omni_harness_push(h, "hidden", &x, &err));
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *lg = omni_harness_pull(h, "logits");
    ck_assert_ptr_nonnull(lg);
    ck_assert_int_eq(lg->dtype, OMNI_DTYPE_F32);
    ck_assert_int_eq(lg->ndim, 2);
    ck_assert_int_eq(lg->shape[0], 2);
    ck_assert_int_eq(lg->shape[1], 3);
    const float *p = omni_tensor_data(lg);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(p[i] == want[i], "logits[%d] = %g, want %g", i, p[i], want[i]);
    omni_tensor_release(&x);
}

START_TEST(test_logits_of_last_position)
{
    long live = omni_buffer_live_count();
    const char *path = write_w("head.safetensors", "lm_head.weight");
    struct omni_harness *h;
    OK(omni_harness_new(&h, "text_head", "vocab: 3", &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    run_and_check(h);
    run_and_check(h); /* second call reuses the state's buffers */
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_falls_back_to_tied_embedding)
{
    long live = omni_buffer_live_count();
    const char *path = write_w("tied.safetensors", "backbone.embedding.weight");
    struct omni_harness *h;
    OK(omni_harness_new(&h, "text_head", NULL, &err)); /* lm_head.weight absent under prefix */
    OK(omni_harness_load_weights(h, path, "backbone.", &err));
    run_and_check(h);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Values exactly representable in f16/bf16: half storage changes nothing. */
START_TEST(test_half_storage)
{
    static const char *const dt[2] = {"f16", "bf16"};
    long live = omni_buffer_live_count();
    const char *path = write_w("img.safetensors", "img_head.weight");
    struct omni_harness *h;
    OK(omni_harness_new_full(&h, "text_head", "weight: img_head.weight\nfallback: img_embeddings.word_embeddings.weight",
                             NULL, dt[_i], &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    run_and_check(h);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_missing_weight_and_vocab_mismatch)
{
    long live = omni_buffer_live_count();
    const char *path = write_w("other.safetensors", "something.else");
    struct omni_harness *h;
    OK(omni_harness_new(&h, "text_head", NULL, &err));
    int rc = omni_harness_load_weights(h, path, "backbone.", &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "backbone.lm_head.weight") &&
                      strstr(err.msg, "backbone.embedding.weight"),
                  "%s", err.msg);
    omni_harness_free(h);
    path = write_w("head2.safetensors", "lm_head.weight");
    OK(omni_harness_new(&h, "text_head", "vocab: 5", &err));
    rc = omni_harness_load_weights(h, path, "", &err);
    ck_assert_int_eq(rc, OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "vocab=5") && strstr(err.msg, "lm_head.weight"), "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_bad_hidden)
{
    long live = omni_buffer_live_count();
    const char *path = write_w("head3.safetensors", "lm_head.weight");
    struct omni_harness *h;
    OK(omni_harness_new(&h, "text_head", NULL, &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    struct omni_tensor x;
    OK(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 3, 1, 2, 5)); /* D = 5, W has D = 2 */
    OK(omni_harness_push(h, "hidden", &x, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "hidden"), "%s", err.msg);
    omni_tensor_release(&x);
    OK(omni_tensor_alloc_host(&x, OMNI_DTYPE_I32, 3, 1, 2, 2));
    OK(omni_harness_push(h, "hidden", &x, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    omni_tensor_release(&x);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("text_head");
    TCase *tc = tcase_create("text_head");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_logits_of_last_position);
    tcase_add_test(tc, test_falls_back_to_tied_embedding);
    tcase_add_loop_test(tc, test_half_storage, 0, 2);
    tcase_add_test(tc, test_rejects_missing_weight_and_vocab_mismatch);
    tcase_add_test(tc, test_rejects_bad_hidden);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
