/* tests/plugins/check_image_write.c - the image_write stage: float images
 * converted like OmniMamba's inference_t2i.py (truncation; fixture from
 * tests/fixtures/gen_images.py), file naming, grid, the `output` option. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/testutil.h"
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

static const char *tmp(const char *name)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tu_tmpdir(), name);
    return b;
}

static struct omni_harness *writer(const char *params)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_write", params, &err));
    return h;
}

static void load_fixture(struct omni_tensor *in, struct omni_tensor *want)
{
    struct omni_weights *w;
    OK(omni_weights_open(&w, tu_repo_path(FIX "from_float.safetensors"), &err));
    OK(omni_weights_load(w, NULL, "in", OMNI_DTYPE_F32, 0, NULL, in, &err));
    OK(omni_weights_load(w, NULL, "out", OMNI_DTYPE_U8, 0, NULL, want, &err));
    omni_weights_close(w);
}

START_TEST(test_writes_one_file_per_image_with_upstream_bytes)
{
    long live = omni_buffer_live_count();
    struct omni_tensor in, want, got;
    load_fixture(&in, &want); /* in [2,3,5,7], want [2,5,7,3] */
    char params[1200];
    snprintf(params, sizeof params, "{path: \"%s\"}", tmp("gen.png"));
    struct omni_harness *h = writer(params);
    OK(omni_harness_push(h, "image", &in, &err));
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *pix = omni_harness_pull(h, "pixels");
    ck_assert_ptr_nonnull(pix);
    ck_assert_int_eq(omni_tensor_nbytes(pix), omni_tensor_nbytes(&want));
    ck_assert_mem_eq(omni_tensor_data(pix), omni_tensor_data(&want), omni_tensor_nbytes(&want));
    ck_assert_int_eq(access(tmp("gen.png"), F_OK), -1); /* B = 2: numbered files only */
    const char *files[2] = {"gen-0.png", "gen-1.png"};
    for (int b = 0; b < 2; b++) {
        OK(omni_image_load(tmp(files[b]), &got, &err));
        ck_assert_int_eq(got.shape[0], 5);
        ck_assert_int_eq(got.shape[1], 7);
        ck_assert_mem_eq(omni_tensor_data(&got), (uint8_t *)omni_tensor_data(&want) + b * 5 * 7 * 3, 5 * 7 * 3);
        omni_tensor_release(&got);
    }
    omni_harness_free(h);
    omni_tensor_release(&in);
    omni_tensor_release(&want);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_grid_writes_one_make_grid_file)
{
    long live = omni_buffer_live_count();
    struct omni_tensor in, want, got;
    load_fixture(&in, &want);
    char params[1200];
    snprintf(params, sizeof params, "{path: \"%s\", grid: true}", tmp("grid.png"));
    struct omni_harness *h = writer(params);
    OK(omni_harness_push(h, "image", &in, &err));
    OK(omni_harness_forward(h, &err));
    OK(omni_image_load(tmp("grid.png"), &got, &err));
    /* 2 images of 5x7: 2 per row, one row: 1*(5+2)+2 high, 2*(7+2)+2 wide */
    ck_assert_int_eq(got.shape[0], 9);
    ck_assert_int_eq(got.shape[1], 20);
    const uint8_t *g = omni_tensor_data(&got), *w = omni_tensor_data(&want);
    ck_assert_mem_eq(g + (2 * 20 + 2) * 3, w, 7 * 3);                   /* image 0, row 0 */
    ck_assert_mem_eq(g + (2 * 20 + 11) * 3, w + 5 * 7 * 3, 7 * 3);      /* image 1, row 0 */
    ck_assert_int_eq(g[0], 0);                                          /* border */
    omni_tensor_release(&got);
    omni_harness_free(h);
    omni_tensor_release(&in);
    omni_tensor_release(&want);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_output_option_overrides_path_and_u8_is_written_as_is)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img, got;
    OK(omni_tensor_alloc_host(&img, OMNI_DTYPE_U8, 4, (int64_t)1, (int64_t)3, (int64_t)4, (int64_t)3));
    uint8_t *p = omni_tensor_data(&img);
    for (int i = 0; i < 36; i++)
        p[i] = (uint8_t)(i * 7);
    char params[1200], opts[1200];
    snprintf(params, sizeof params, "{path: \"%s\"}", tmp("default.png"));
    snprintf(opts, sizeof opts, "{output: \"%s\"}", tmp("chosen.png"));
    struct omni_harness *h = writer(params);
    OK(omni_harness_set_options(h, opts, &err));
    OK(omni_harness_push(h, "image", &img, &err));
    OK(omni_harness_forward(h, &err));
    ck_assert_int_eq(access(tmp("default.png"), F_OK), -1);
    OK(omni_image_load(tmp("chosen.png"), &got, &err)); /* B = 1: the name itself */
    ck_assert_mem_eq(omni_tensor_data(&got), p, 36);
    omni_tensor_release(&got);
    omni_harness_free(h);
    omni_tensor_release(&img);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_value_range_param)
{
    long live = omni_buffer_live_count();
    struct omni_tensor in;
    OK(omni_tensor_alloc_host(&in, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)1, (int64_t)2));
    float *x = omni_tensor_data(&in);
    const float v[6] = {0.5f, 1.0f, 0.0f, 2.0f, -1.0f, 0.25f};
    memcpy(x, v, sizeof v);
    char params[1200];
    snprintf(params, sizeof params, "{path: \"%s\", value_range: [0, 1]}", tmp("unit.png"));
    struct omni_harness *h = writer(params);
    OK(omni_harness_push(h, "image", &in, &err));
    OK(omni_harness_forward(h, &err));
    const uint8_t *p = omni_tensor_data(omni_harness_pull(h, "pixels"));
    /* pixel 0 = (0.5, 0, -1) -> (127, 0, 0); pixel 1 = (1, 2, 0.25) -> (255, 255, 63) */
    const uint8_t want[6] = {127, 0, 0, 255, 255, 63};
    ck_assert_mem_eq(p, want, 6);
    omni_harness_free(h);
    snprintf(params, sizeof params, "{path: \"%s\", value_range: \"0, 0.5\"}", tmp("half.png"));
    h = writer(params);
    OK(omni_harness_push(h, "image", &in, &err));
    OK(omni_harness_forward(h, &err));
    ck_assert_int_eq(((const uint8_t *)omni_tensor_data(omni_harness_pull(h, "pixels")))[0], 255);
    omni_harness_free(h);
    omni_tensor_release(&in);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "image_write", "value_range: [1, 1]", &err), OMNI_EINVAL);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_refuses_non_png_names_and_bad_images)
{
    long live = omni_buffer_live_count();
    struct omni_tensor in;
    OK(omni_tensor_alloc_host(&in, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)2, (int64_t)2));
    char params[1200];
    snprintf(params, sizeof params, "{path: \"%s\"}", tmp("photo.jpg"));
    struct omni_harness *h = writer(params);
    OK(omni_harness_push(h, "image", &in, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "photo.jpg"));
    ck_assert_int_eq(access(tmp("photo.jpg"), F_OK), -1);
    omni_harness_free(h);
    omni_tensor_release(&in);
    OK(omni_tensor_alloc_host(&in, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)4, (int64_t)2, (int64_t)2));
    snprintf(params, sizeof params, "{path: \"%s\"}", tmp("bad.png"));
    h = writer(params);
    OK(omni_harness_push(h, "image", &in, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "[1,4,2,2]"));
    omni_harness_free(h);
    omni_tensor_release(&in);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image_write");
    TCase *tc = tcase_create("image_write");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_writes_one_file_per_image_with_upstream_bytes);
    tcase_add_test(tc, test_grid_writes_one_make_grid_file);
    tcase_add_test(tc, test_output_option_overrides_path_and_u8_is_written_as_is);
    tcase_add_test(tc, test_value_range_param);
    tcase_add_test(tc, test_refuses_non_png_names_and_bad_images);
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
