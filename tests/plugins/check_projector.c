/* tests/plugins/check_projector.c - the `projector` stage against PyTorch
 * (tests/fixtures/gen_vision.py): OmniMamba's fused-gelu-mlp on two inputs
 * (32 + 48 -> 320 -> 40 -> 40, f16 matrices in the file) and a 2-linear
 * gelu-mlp on one input; shape, dtype and weight errors. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "../common/testutil.h"
#include "omni/harness.h"

#define FIX "tests/fixtures/data/vision/"

static struct omni_error err;

#define OK(call)                                                                          \
    do {                                                                                  \
        omni_error_clear(&err);                                                           \
        int rc_ = (call);                                                                 \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg);  \
    } while (0)

static void expected(const char *key, struct omni_tensor *t)
{
    struct omni_weights *w;
    OK(omni_weights_open(&w, tu_repo_path(FIX "projector_tiny_expected.safetensors"), &err));
    OK(omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, t, &err));
    omni_weights_close(w);
}

static struct omni_harness *stage(const char *params, const char *dtype, const char *prefix)
{
    struct omni_harness *h;
    OK(omni_harness_new_full(&h, "projector", params, "cpu", dtype, &err));
    OK(omni_harness_load_weights(h, tu_repo_path(FIX "projector_tiny.safetensors"), prefix, &err));
    return h;
}

static void check_out(struct omni_harness *h, const char *ref_key, double tol)
{
    struct omni_tensor ref;
    expected(ref_key, &ref);
    const struct omni_tensor *y = omni_harness_pull(h, "embeds");
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 3);
    for (int d = 0; d < 3; d++)
        ck_assert_int_eq(y->shape[d], ref.shape[d]);
    size_t n = (size_t)omni_tensor_numel(&ref);
    double e = tu_rel_err(omni_tensor_data(y), omni_tensor_data(&ref), n);
    ck_assert_msg(e < tol, "%s: rel err %g (tolerance %g)", ref_key, e, tol);
    omni_tensor_release(&ref);
}

static void run_fused(const char *dtype, double tol)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL, dtype, "projector.");
    struct omni_tensor x0, x1;
    expected("x0", &x0);
    expected("x1", &x1);
    OK(omni_harness_push(h, "x0", &x0, &err));
    OK(omni_harness_push(h, "x1", &x1, &err));
    OK(omni_harness_forward(h, &err));
    check_out(h, "embeds", tol);
    omni_tensor_release(&x0);
    omni_tensor_release(&x1);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}

START_TEST(test_fused_gelu_mlp_on_two_inputs_matches_torch) { run_fused(NULL, 1e-4); }
END_TEST

START_TEST(test_fused_gelu_mlp_bf16_weights) { run_fused("bf16", 1e-2); }
END_TEST

START_TEST(test_two_linear_mlp_on_one_input)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage("linears: 2", NULL, "mlp2.");
    struct omni_tensor x0;
    expected("x0", &x0);
    OK(omni_harness_push(h, "x0", &x0, &err));
    OK(omni_harness_forward(h, &err));
    check_out(h, "embeds_mlp2", 1e-4);
    omni_tensor_release(&x0);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_channel_mismatch)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL, NULL, "projector.");
    struct omni_tensor x0;
    expected("x0", &x0);
    OK(omni_harness_push(h, "x0", &x0, &err)); /* x1 left unconnected: 32 of 80 channels */
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "32 channels") && strstr(err.msg, "takes 80") &&
                      strstr(err.msg, "x1"),
                  "message: %s", err.msg);
    omni_tensor_release(&x0);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_token_count_mismatch)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL, NULL, "projector.");
    struct omni_tensor x0, x1;
    expected("x0", &x0); /* (2, 5, 32) */
    OK(omni_tensor_alloc_host(&x1, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)4, (int64_t)48));
    OK(omni_harness_push(h, "x0", &x0, &err));
    OK(omni_harness_push(h, "x1", &x1, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "x1") && strstr(err.msg, "[2,4,48]"), "message: %s", err.msg);
    omni_tensor_release(&x0);
    omni_tensor_release(&x1);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_wrong_dtype)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage(NULL, NULL, "projector.");
    struct omni_tensor x0;
    OK(omni_tensor_alloc_host(&x0, OMNI_DTYPE_BF16, 3, (int64_t)2, (int64_t)5, (int64_t)32));
    OK(omni_harness_push(h, "x0", &x0, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    ck_assert_msg(strstr(err.msg, "x0") && strstr(err.msg, "bf16"), "message: %s", err.msg);
    omni_tensor_release(&x0);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_missing_weights_are_named)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "projector", NULL, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, tu_repo_path(FIX "projector_tiny.safetensors"),
                                               "vision.", &err),
                     OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "vision.projector.0.weight"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_linears_param_is_checked)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "projector", "linears: 2", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, tu_repo_path(FIX "projector_tiny.safetensors"),
                                               "projector.", &err),
                     OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "linears = 2") && strstr(err.msg, "holds 3"), "message: %s",
                  err.msg);
    omni_harness_free(h);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "projector", "activation: relu", &err), OMNI_EINVAL);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("projector");
    TCase *tc = tcase_create("projector");
    tcase_add_test(tc, test_fused_gelu_mlp_on_two_inputs_matches_torch);
    tcase_add_test(tc, test_fused_gelu_mlp_bf16_weights);
    tcase_add_test(tc, test_two_linear_mlp_on_one_input);
    tcase_add_test(tc, test_rejects_channel_mismatch);
    tcase_add_test(tc, test_rejects_token_count_mismatch);
    tcase_add_test(tc, test_rejects_wrong_dtype);
    tcase_add_test(tc, test_missing_weights_are_named);
    tcase_add_test(tc, test_linears_param_is_checked);
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
