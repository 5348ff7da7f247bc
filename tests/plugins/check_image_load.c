/* tests/plugins/check_image_load.c - the image_load stage: file names in,
 * RGB bytes out (PIL-equal, see tests/fixtures/gen_images.py), batching
 * rules and the optional resize. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "../core/image_sha256.h"
#include "omni/harness.h"
#include "omni/image.h"

#define FIX "tests/fixtures/data/images/"

static struct omni_error err;

#define OK(call)                                                                         \
    do {                                                                                 \
        omni_error_clear(&err);                                                          \
        int rc_ = (call);                                                                \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg); \
    } while (0)

static cJSON *expected(void)
{
    FILE *f = fopen(tu_repo_path(FIX "expected.json"), "rb");
    ck_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(s);
    free(s);
    ck_assert(j != NULL);
    return j;
}

static const char *want_sha(const char *image, const char *field)
{
    static char buf[65];
    cJSON *ex = expected();
    const cJSON *it = cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "shared"), image);
    ck_assert_ptr_nonnull(it);
    snprintf(buf, sizeof buf, "%s", cJSON_GetObjectItem(it, field)->valuestring);
    cJSON_Delete(ex);
    return buf;
}

/* u8 [n, width] NUL-padded rows. */
static void push_paths(struct omni_harness *h, int n, const char *const *paths)
{
    size_t width = 1;
    for (int i = 0; i < n; i++)
        if (strlen(paths[i]) + 1 > width)
            width = strlen(paths[i]) + 1;
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_U8, 2, (int64_t)n, (int64_t)width));
    for (int i = 0; i < n; i++)
        memcpy((char *)omni_tensor_data(&t) + (size_t)i * width, paths[i], strlen(paths[i]));
    OK(omni_harness_push(h, "path", &t, &err));
    omni_tensor_release(&t);
}

static char *dup_path(const char *p)
{
    char *s = strdup(p);
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(test_loads_one_file_like_pil)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_load", NULL, &err));
    OK(omni_harness_push_text(h, "path", tu_shared_path("data/images/sheep.jpg"), &err));
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *img = omni_harness_pull(h, "image");
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(img->dtype, OMNI_DTYPE_U8);
    ck_assert_int_eq(img->ndim, 4);
    ck_assert_int_eq(img->shape[0], 1);
    ck_assert_int_eq(img->shape[1], 488);
    ck_assert_int_eq(img->shape[2], 800);
    ck_assert_int_eq(img->shape[3], 3);
    char hex[65];
    tu_sha256_hex(omni_tensor_data(img), omni_tensor_nbytes(img), hex);
    ck_assert_str_eq(hex, want_sha("sheep.jpg", "rgb_sha256"));
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stacks_files_of_one_size)
{
    long live = omni_buffer_live_count();
    char *a = dup_path(tu_repo_path(FIX "formats/gray8.png")), *b = dup_path(tu_repo_path(FIX "formats/cmyk.jpg"));
    char *c = dup_path(tu_repo_path(FIX "formats/rgb8.png"));
    const char *paths[2] = {a, c};
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_load", NULL, &err));
    push_paths(h, 2, paths);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *img = omni_harness_pull(h, "image");
    ck_assert_int_eq(img->shape[0], 2);
    ck_assert_int_eq(img->shape[1], 7);
    ck_assert_int_eq(img->shape[2], 13);
    for (int i = 0; i < 2; i++) {
        struct omni_tensor one;
        OK(omni_image_load(paths[i], &one, &err));
        ck_assert_mem_eq((uint8_t *)omni_tensor_data(img) + i * 7 * 13 * 3, omni_tensor_data(&one), 7 * 13 * 3);
        omni_tensor_release(&one);
    }
    /* different sizes without `size`: an error naming both files and sizes */
    const char *mixed[2] = {a, b};
    push_paths(h, 2, mixed);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "13x7"));
    ck_assert_ptr_nonnull(strstr(err.msg, "17x11"));
    ck_assert_ptr_nonnull(strstr(err.msg, "cmyk.jpg"));
    ck_assert_ptr_nonnull(strstr(err.msg, "size"));
    omni_harness_free(h);
    free(a);
    free(b);
    free(c);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_size_param_resizes_every_image_like_pil)
{
    long live = omni_buffer_live_count();
    char *a = dup_path(tu_shared_path("data/images/cat_dog.png"));
    char *b = dup_path(tu_shared_path("data/images/dog_bicycle.jpg"));
    const char *paths[2] = {a, b};
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_load", "size: [384, 384]", &err));
    push_paths(h, 2, paths);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *img = omni_harness_pull(h, "image");
    ck_assert_int_eq(img->shape[0], 2);
    ck_assert_int_eq(img->shape[1], 384);
    ck_assert_int_eq(img->shape[2], 384);
    char hex[65];
    tu_sha256_hex(omni_tensor_data(img), 384 * 384 * 3, hex);
    ck_assert_str_eq(hex, want_sha("cat_dog.png", "r384_sha256"));
    tu_sha256_hex((uint8_t *)omni_tensor_data(img) + 384 * 384 * 3, 384 * 384 * 3, hex);
    ck_assert_str_eq(hex, want_sha("dog_bicycle.jpg", "r384_sha256"));
    omni_harness_free(h);

    /* one number: a square; [W, H]: width first */
    OK(omni_harness_new(&h, "image_load", "size: 50", &err));
    push_paths(h, 1, paths);
    OK(omni_harness_forward(h, &err));
    ck_assert_int_eq(omni_harness_pull(h, "image")->shape[1], 50);
    ck_assert_int_eq(omni_harness_pull(h, "image")->shape[2], 50);
    omni_harness_free(h);
    OK(omni_harness_new(&h, "image_load", "size: [40, 30]", &err));
    push_paths(h, 1, paths);
    OK(omni_harness_forward(h, &err));
    ck_assert_int_eq(omni_harness_pull(h, "image")->shape[1], 30);
    ck_assert_int_eq(omni_harness_pull(h, "image")->shape[2], 40);
    omni_harness_free(h);
    free(a);
    free(b);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_reports_missing_and_bad_files)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_load", NULL, &err));
    OK(omni_harness_push_text(h, "path", "/no/such/picture.png", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "/no/such/picture.png"));
    OK(omni_harness_push_text(h, "path", "", &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
    omni_harness_free(h);
    omni_error_clear(&err);
    ck_assert_int_ne(omni_harness_new(&h, "image_load", "size: [0, 5]", &err), OMNI_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "size"));
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image_load");
    TCase *tc = tcase_create("image_load");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loads_one_file_like_pil);
    tcase_add_test(tc, test_stacks_files_of_one_size);
    tcase_add_test(tc, test_size_param_resizes_every_image_like_pil);
    tcase_add_test(tc, test_reports_missing_and_bad_files);
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
