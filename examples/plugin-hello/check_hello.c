/* The stage alone in the harness: push text, pull the greeting, and check
 * that every buffer was released. */
#include <string.h>

#include "testutil.h"

START_TEST(test_hello_greets_each_row)
{
    long before = omni_buffer_live_count();
    struct omni_harness *h;
    struct omni_error err;
    ck_assert_int_eq(omni_harness_new(&h, "hello", "greeting: Hi", &err), OMNI_OK);
    ck_assert_int_eq(omni_harness_push_text(h, "text", "world", &err), OMNI_OK);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_OK);
    const struct omni_tensor *g = omni_harness_pull(h, "greeting");
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq((const char *)omni_tensor_data(g), "Hi, world!");
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_hello_rejects_a_long_greeting)
{
    struct omni_harness *h;
    struct omni_error err;
    char params[200] = "greeting: ";
    memset(params + 10, 'x', 100);
    ck_assert_int_eq(omni_harness_new(&h, "hello", params, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "greeting"));
}
END_TEST

START_TEST(test_hello_pipeline_runs)
{
    struct omni_pipeline *p;
    struct omni_error err;
    ck_assert_int_eq(omni_pipeline_load(&p, "examples/plugin-hello/hello.yaml", NULL, &err), OMNI_OK);
    struct omni_request *r = omni_request_new(p);
    ck_assert_int_eq(omni_request_set_text(r, "prompt", "omni", &err), OMNI_OK);
    ck_assert_int_eq(omni_pipeline_run(p, r, &err), OMNI_OK);
    ck_assert_str_eq((const char *)omni_tensor_data(omni_request_output(r, "text")), "Hello, omni!");
    omni_request_free(r);
    omni_pipeline_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-hello");
    TCase *tc = tcase_create("hello");
    tcase_add_test(tc, test_hello_greets_each_row);
    tcase_add_test(tc, test_hello_rejects_a_long_greeting);
    tcase_add_test(tc, test_hello_pipeline_runs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
