/* tests/plugins/check_image_preprocess.c - the towers' input transform:
 * PIL-exact 384 bicubic + torchvision ToTensor/Normalize, bit-equal to the
 * fixtures of tests/fixtures/gen_images.py; presets and params. */
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

static void want_sha(const char *image, const char *field, char out[65])
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
    const cJSON *it = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "normalize384"), image);
    ck_assert_ptr_nonnull(it);
    snprintf(out, 65, "%s", cJSON_GetObjectItem(it, field)->valuestring);
    cJSON_Delete(j);
}

static void load_batch1(const char *rel, struct omni_tensor *img)
{
    OK(omni_image_load(tu_shared_path(rel), img, &err));
    int64_t shape[4] = {1, img->shape[0], img->shape[1], 3};
    OK(omni_tensor_reshape(img, 4, shape, &err));
}

static void run(struct omni_harness *h, const struct omni_tensor *img)
{
    OK(omni_harness_push(h, "image", img, &err));
    OK(omni_harness_forward(h, &err));
}

START_TEST(test_dino_and_siglip_inputs_equal_torchvision)
{
    long live = omni_buffer_live_count();
    const char *names[2] = {"cat_dog.png", "dog_bicycle.jpg"};
    for (int k = 0; k < 2; k++) {
        char rel[128], hex[65], want[65];
        snprintf(rel, sizeof rel, "data/images/%s", names[k]);
        struct omni_tensor img;
        load_batch1(rel, &img);
        struct omni_harness *dino, *siglip;
        OK(omni_harness_new(&dino, "image_preprocess", "preset: imagenet", &err));
        OK(omni_harness_new(&siglip, "image_preprocess", "{size: 384, preset: inception}", &err));
        run(dino, &img);
        run(siglip, &img);
        const struct omni_tensor *a = omni_harness_pull(dino, "pixels"), *b = omni_harness_pull(siglip, "pixels");
        ck_assert_int_eq(a->dtype, OMNI_DTYPE_F32);
        ck_assert_int_eq(a->ndim, 4);
        const int64_t want_shape[4] = {1, 3, 384, 384};
        for (int d = 0; d < 4; d++)
            ck_assert_int_eq(a->shape[d], want_shape[d]);
        tu_sha256_hex(omni_tensor_data(a), omni_tensor_nbytes(a), hex);
        want_sha(names[k], "imagenet_sha256", want);
        ck_assert_msg(!strcmp(hex, want), "%s: DINO pixels differ from torchvision", names[k]);
        tu_sha256_hex(omni_tensor_data(b), omni_tensor_nbytes(b), hex);
        want_sha(names[k], "inception_sha256", want);
        ck_assert_msg(!strcmp(hex, want), "%s: SigLIP pixels differ from torchvision", names[k]);
        omni_harness_free(dino);
        omni_harness_free(siglip);
        omni_tensor_release(&img);
    }
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Run `params` on the normalize fixture's 16x16 input (size 16: no resize) and
 * compare with the fixture tensor `key` bit for bit. */
static void check_on_fixture(const char *params, const char *key)
{
    struct omni_weights *w;
    struct omni_tensor in, want;
    OK(omni_weights_open(&w, tu_repo_path(FIX "normalize.safetensors"), &err));
    OK(omni_weights_load(w, NULL, "in", OMNI_DTYPE_U8, 0, NULL, &in, &err));
    OK(omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, &want, &err));
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_preprocess", params, &err));
    run(h, &in);
    const struct omni_tensor *got = omni_harness_pull(h, "pixels");
    ck_assert_int_eq(omni_tensor_nbytes(got), omni_tensor_nbytes(&want));
    ck_assert_msg(!memcmp(omni_tensor_data(got), omni_tensor_data(&want), omni_tensor_nbytes(&want)),
                  "%s: differs from torchvision's %s", params, key);
    omni_harness_free(h);
    omni_tensor_release(&in);
    omni_tensor_release(&want);
    omni_weights_close(w);
}

START_TEST(test_presets_and_explicit_mean_std_agree)
{
    long live = omni_buffer_live_count();
    check_on_fixture("{size: 16, preset: imagenet}", "imagenet");
    check_on_fixture("{size: 16, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}", "imagenet");
    check_on_fixture("{size: [16, 16], preset: inception}", "inception");
    check_on_fixture("{size: 16, preset: vq}", "inception"); /* LlamaGen: Normalize(0.5, 0.5) */
    check_on_fixture("{size: 16, mean: 0.5, std: 0.5}", "inception");
    /* mean/std override a preset */
    check_on_fixture("{size: 16, preset: imagenet, mean: 0.5, std: 0.5}", "inception");
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_non_square_size_and_batch)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img;
    OK(omni_tensor_alloc_host(&img, OMNI_DTYPE_U8, 4, (int64_t)2, (int64_t)9, (int64_t)11, (int64_t)3));
    memset(omni_tensor_data(&img), 255, omni_tensor_nbytes(&img));
    struct omni_harness *h;
    OK(omni_harness_new(&h, "image_preprocess", "{size: [6, 4], preset: inception}", &err));
    run(h, &img);
    const struct omni_tensor *p = omni_harness_pull(h, "pixels");
    const int64_t want[4] = {2, 3, 4, 6};
    for (int d = 0; d < 4; d++)
        ck_assert_int_eq(p->shape[d], want[d]);
    const float *v = omni_tensor_data(p);
    for (int64_t i = 0; i < omni_tensor_numel(p); i++)
        ck_assert_float_eq(v[i], 1.0f); /* white stays white: (1 - 0.5) / 0.5 */
    omni_harness_free(h);
    omni_tensor_release(&img);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_missing_or_bad_normalisation)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "image_preprocess", "size: 384", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "preset"));
    ck_assert_int_eq(omni_harness_new(&h, "image_preprocess", "preset: clip", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "clip"));
    ck_assert_int_eq(omni_harness_new(&h, "image_preprocess", "{mean: [0.5, 0.5], std: 0.5}", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "1 or 3"));
    ck_assert_int_eq(omni_harness_new(&h, "image_preprocess", "{mean: 0.5, std: 0}", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "std"));
    /* a non-number in the list names the param */
    ck_assert_int_eq(omni_harness_new(&h, "image_preprocess", "{mean: [0.5, grey, 0.5], std: 0.5}", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "param 'mean'"));
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_wrong_input)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    struct omni_tensor f, four;
    OK(omni_harness_new(&h, "image_preprocess", "preset: imagenet", &err));
    OK(omni_tensor_alloc_host(&f, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)4, (int64_t)4, (int64_t)3));
    OK(omni_harness_push(h, "image", &f, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    OK(omni_tensor_alloc_host(&four, OMNI_DTYPE_U8, 4, (int64_t)1, (int64_t)4, (int64_t)4, (int64_t)4));
    OK(omni_harness_push(h, "image", &four, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "[1,4,4,4]"));
    omni_harness_free(h);
    omni_tensor_release(&f);
    omni_tensor_release(&four);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image_preprocess");
    TCase *tc = tcase_create("image_preprocess");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dino_and_siglip_inputs_equal_torchvision);
    tcase_add_test(tc, test_presets_and_explicit_mean_std_agree);
    tcase_add_test(tc, test_non_square_size_and_batch);
    tcase_add_test(tc, test_rejects_missing_or_bad_normalisation);
    tcase_add_test(tc, test_rejects_wrong_input);
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
