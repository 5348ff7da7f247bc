/* tests/kernels/check_image_ops.c - omni_op_resize_bicubic_u8 (PIL-exact
 * bicubic) and omni_op_normalize_image (ToTensor + Normalize).
 *
 * Expected bytes come from PIL 9.4's Image.resize(BICUBIC) and expected
 * floats from torch's float32 ToTensor + Normalize, both written by
 * tests/fixtures/gen_images.py; invariants and hand values are checked here. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "../core/image_sha256.h"
#include "omni/image.h"

#define FIX "tests/fixtures/data/images/"

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f}, IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};
static const float HALF[3] = {0.5f, 0.5f, 0.5f};

static struct omni_weights *open_fixture(const char *name)
{
    struct omni_weights *w = NULL;
    struct omni_error err = {0};
    ck_assert_msg(omni_weights_open(&w, tu_repo_path(name), &err) == OMNI_OK, "open %s: %s", name, err.msg);
    return w;
}

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

static int resize(struct omni_tensor *out, const struct omni_tensor *in, int64_t h2, int64_t w2)
{
    struct omni_error err = {0};
    int64_t shape[4];
    const int b0 = in->ndim == 4;
    if (b0)
        shape[0] = in->shape[0];
    shape[b0] = h2;
    shape[b0 + 1] = w2;
    shape[b0 + 2] = in->shape[in->ndim - 1];
    ck_assert_int_eq(omni_tensor_alloc(out, OMNI_DTYPE_U8, in->ndim, shape, OMNI_CPU, &err), OMNI_OK);
    int rc = omni_op_resize_bicubic_u8(out, in, &err);
    ck_assert_msg(rc == OMNI_OK, "%s", err.msg);
    return rc;
}

START_TEST(test_resize_matches_pil_on_synthetic_cases)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_fixture(FIX "resize.safetensors");
    int n = 0;
    for (;; n++) {
        char kin[32], kout[32];
        snprintf(kin, sizeof kin, "case%d.in", n);
        snprintf(kout, sizeof kout, "case%d.out", n);
        if (!omni_weights_has(w, NULL, kin))
            break;
        struct omni_tensor in, want, out;
        struct omni_error err = {0};
        ck_assert_int_eq(omni_weights_load(w, NULL, kin, OMNI_DTYPE_U8, 0, NULL, &in, &err), OMNI_OK);
        ck_assert_int_eq(omni_weights_load(w, NULL, kout, OMNI_DTYPE_U8, 0, NULL, &want, &err), OMNI_OK);
        resize(&out, &in, want.shape[0], want.shape[1]);
        const uint8_t *a = omni_tensor_data(&out), *b = omni_tensor_data(&want);
        int64_t bad = 0, first = -1, nb = omni_tensor_numel(&want);
        for (int64_t i = 0; i < nb; i++)
            if (a[i] != b[i] && bad++ == 0)
                first = i;
        ck_assert_msg(bad == 0, "case %d: %lldx%lld -> %lldx%lld: %lld of %lld bytes differ from PIL (first %lld: %d vs %d)",
                      n, (long long)in.shape[1], (long long)in.shape[0], (long long)want.shape[1],
                      (long long)want.shape[0], (long long)bad, (long long)nb, (long long)first,
                      first >= 0 ? a[first] : 0, first >= 0 ? b[first] : 0);
        omni_tensor_release(&in);
        omni_tensor_release(&want);
        omni_tensor_release(&out);
    }
    ck_assert_int_ge(n, 10);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_resize_shared_images_to_384_like_pil)
{
    long live = omni_buffer_live_count();
    cJSON *ex = expected();
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(ex, "shared"))
    {
        char rel[256], hex[65];
        snprintf(rel, sizeof rel, "data/images/%s", it->string);
        struct omni_tensor img, out;
        struct omni_error err = {0};
        ck_assert_msg(omni_image_load(tu_shared_path(rel), &img, &err) == OMNI_OK, "%s", err.msg);
        resize(&out, &img, 384, 384);
        const uint8_t *p = omni_tensor_data(&out);
        const cJSON *px;
        cJSON_ArrayForEach(px, cJSON_GetObjectItem(it, "r384_pixels"))
        {
            int x = cJSON_GetArrayItem(px, 0)->valueint, y = cJSON_GetArrayItem(px, 1)->valueint;
            for (int c = 0; c < 3; c++)
                ck_assert_msg(p[(y * 384 + x) * 3 + c] == cJSON_GetArrayItem(px, 2 + c)->valueint,
                              "%s: 384 px (%d,%d,%d) is %d, PIL has %d", it->string, x, y, c,
                              p[(y * 384 + x) * 3 + c], cJSON_GetArrayItem(px, 2 + c)->valueint);
        }
        tu_sha256_hex(p, 384 * 384 * 3, hex);
        ck_assert_msg(strcmp(hex, cJSON_GetObjectItem(it, "r384_sha256")->valuestring) == 0,
                      "%s: 384x384 bicubic differs from PIL", it->string);
        omni_tensor_release(&img);
        omni_tensor_release(&out);
        n++;
    }
    ck_assert_int_eq(n, 4);
    cJSON_Delete(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_resize_keeps_constant_images_constant)
{
    /* the fixed-point weights of every output sum to 2^22 within a few
     * units, so a flat image stays flat at every size and value */
    long live = omni_buffer_live_count();
    const int sizes[][4] = {{7, 5, 13, 11}, {50, 40, 9, 6}, {3, 3, 1, 1}, {1, 9, 9, 1}, {33, 17, 384, 384}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int v = 0; v <= 255; v += 51) {
            struct omni_tensor in, out;
            ck_assert_int_eq(omni_tensor_alloc_host(&in, OMNI_DTYPE_U8, 3, (int64_t)sizes[k][1], (int64_t)sizes[k][0], (int64_t)3),
                             OMNI_OK);
            memset(omni_tensor_data(&in), v, omni_tensor_nbytes(&in));
            resize(&out, &in, sizes[k][3], sizes[k][2]);
            const uint8_t *p = omni_tensor_data(&out);
            for (size_t i = 0; i < omni_tensor_nbytes(&out); i++)
                ck_assert_msg(p[i] == v, "flat %d image %dx%d -> %dx%d: byte %zu is %d", v, sizes[k][0], sizes[k][1],
                              sizes[k][2], sizes[k][3], i, p[i]);
            omni_tensor_release(&in);
            omni_tensor_release(&out);
        }
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_resize_batch_equals_one_by_one_and_identity_copies)
{
    long live = omni_buffer_live_count();
    struct tu_rng r;
    tu_rng_seed(&r, 5);
    struct omni_tensor in, out, one, one_out;
    ck_assert_int_eq(omni_tensor_alloc_host(&in, OMNI_DTYPE_U8, 4, (int64_t)3, (int64_t)21, (int64_t)17, (int64_t)3), OMNI_OK);
    uint8_t *p = omni_tensor_data(&in);
    for (size_t i = 0; i < omni_tensor_nbytes(&in); i++)
        p[i] = (uint8_t)(tu_rng_u64(&r) >> 56);
    resize(&out, &in, 10, 30);
    for (int b = 0; b < 3; b++) {
        ck_assert_int_eq(omni_tensor_alloc_host(&one, OMNI_DTYPE_U8, 3, (int64_t)21, (int64_t)17, (int64_t)3), OMNI_OK);
        memcpy(omni_tensor_data(&one), p + b * 21 * 17 * 3, 21 * 17 * 3);
        resize(&one_out, &one, 10, 30);
        ck_assert_mem_eq(omni_tensor_data(&one_out), (uint8_t *)omni_tensor_data(&out) + b * 10 * 30 * 3, 10 * 30 * 3);
        omni_tensor_release(&one);
        omni_tensor_release(&one_out);
    }
    omni_tensor_release(&out);
    resize(&out, &in, 21, 17);
    ck_assert_mem_eq(omni_tensor_data(&out), p, omni_tensor_nbytes(&in));
    omni_tensor_release(&out);
    omni_tensor_release(&in);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_resize_rejects_bad_arguments)
{
    long live = omni_buffer_live_count();
    struct omni_tensor in, out, f;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&in, OMNI_DTYPE_U8, 3, (int64_t)4, (int64_t)4, (int64_t)3), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_U8, 3, (int64_t)8, (int64_t)8, (int64_t)4), OMNI_OK);
    ck_assert_int_eq(omni_op_resize_bicubic_u8(&out, &in, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "[8,8,4]"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[4,4,3]"));
    omni_tensor_release(&out);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_U8, 3, (int64_t)0, (int64_t)8, (int64_t)3), OMNI_OK);
    ck_assert_int_eq(omni_op_resize_bicubic_u8(&out, &in, &err), OMNI_ESHAPE);
    omni_tensor_release(&out);
    ck_assert_int_eq(omni_tensor_alloc_host(&f, OMNI_DTYPE_F32, 3, (int64_t)8, (int64_t)8, (int64_t)3), OMNI_OK);
    ck_assert_int_eq(omni_op_resize_bicubic_u8(&f, &in, &err), OMNI_EDTYPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "out"));
    omni_tensor_release(&f);
    omni_tensor_release(&in);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static void check_normalize_fixture(const char *key, const float *mean, const float *std)
{
    struct omni_weights *w = open_fixture(FIX "normalize.safetensors");
    struct omni_tensor in, want, out;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_weights_load(w, NULL, "in", OMNI_DTYPE_U8, 0, NULL, &in, &err), OMNI_OK);
    ck_assert_int_eq(omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, &want, &err), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc(&out, OMNI_DTYPE_F32, 4, want.shape, OMNI_CPU, &err), OMNI_OK);
    ck_assert_msg(omni_op_normalize_image(&out, &in, mean, std, &err) == OMNI_OK, "%s", err.msg);
    const float *a = omni_tensor_data(&out), *b = omni_tensor_data(&want);
    for (int64_t i = 0; i < omni_tensor_numel(&want); i++)
        ck_assert_msg(memcmp(&a[i], &b[i], 4) == 0, "%s: value %lld is %.9g, torch has %.9g (must be bit-equal)", key,
                      (long long)i, (double)a[i], (double)b[i]);
    omni_tensor_release(&in);
    omni_tensor_release(&want);
    omni_tensor_release(&out);
    omni_weights_close(w);
}

START_TEST(test_normalize_is_bit_equal_to_torchvision)
{
    long live = omni_buffer_live_count();
    check_normalize_fixture("imagenet", IMAGENET_MEAN, IMAGENET_STD);
    check_normalize_fixture("inception", HALF, HALF);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_normalize_hand_values)
{
    /* spec/vision-encoder.md §2.1: u8 0 -> (-2.117904, -2.035714, -1.804444),
     * u8 255 -> (2.248908, 2.428571, 2.640000); SigLIP u8 128 -> 0.0039216 */
    long live = omni_buffer_live_count();
    struct omni_tensor in, out;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&in, OMNI_DTYPE_U8, 4, (int64_t)1, (int64_t)1, (int64_t)3, (int64_t)3), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)1, (int64_t)3), OMNI_OK);
    uint8_t *p = omni_tensor_data(&in);
    for (int c = 0; c < 3; c++) {
        p[0 * 3 + c] = 0;
        p[1 * 3 + c] = 255;
        p[2 * 3 + c] = 128;
    }
    ck_assert_int_eq(omni_op_normalize_image(&out, &in, IMAGENET_MEAN, IMAGENET_STD, &err), OMNI_OK);
    const float *y = omni_tensor_data(&out); /* (1, 3, 1, 3): channel-major */
    const double lo[3] = {-2.117904, -2.035714, -1.804444}, hi[3] = {2.248908, 2.428571, 2.640000};
    for (int c = 0; c < 3; c++) {
        ck_assert_double_eq_tol(y[c * 3 + 0], lo[c], 1e-6);
        ck_assert_double_eq_tol(y[c * 3 + 1], hi[c], 1e-6);
    }
    ck_assert_int_eq(omni_op_normalize_image(&out, &in, HALF, HALF, &err), OMNI_OK);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(y[c * 3 + 0], -1.0f);
        ck_assert_float_eq(y[c * 3 + 1], 1.0f);
        ck_assert_double_eq_tol(y[c * 3 + 2], 0.0039216, 1e-7);
    }
    const float zero[3] = {0.5f, 0.0f, 0.5f};
    ck_assert_int_eq(omni_op_normalize_image(&out, &in, HALF, zero, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "channel 1"));
    omni_tensor_release(&out);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)1, (int64_t)3, (int64_t)3), OMNI_OK);
    ck_assert_int_eq(omni_op_normalize_image(&out, &in, HALF, HALF, &err), OMNI_ESHAPE); /* HWC out, wants CHW */
    omni_tensor_release(&out);
    omni_tensor_release(&in);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_normalized_384_tensor_of_real_images_matches_torchvision)
{
    long live = omni_buffer_live_count();
    cJSON *ex = expected();
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(ex, "normalize384"))
    {
        char rel[256], hex[65];
        snprintf(rel, sizeof rel, "data/images/%s", it->string);
        struct omni_tensor img, r, out;
        struct omni_error err = {0};
        ck_assert_int_eq(omni_image_load(tu_shared_path(rel), &img, &err), OMNI_OK);
        int64_t shape4[4] = {1, img.shape[0], img.shape[1], 3};
        ck_assert_int_eq(omni_tensor_reshape(&img, 4, shape4, &err), OMNI_OK);
        resize(&r, &img, 384, 384);
        ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)384, (int64_t)384),
                         OMNI_OK);
        ck_assert_int_eq(omni_op_normalize_image(&out, &r, IMAGENET_MEAN, IMAGENET_STD, &err), OMNI_OK);
        tu_sha256_hex(omni_tensor_data(&out), omni_tensor_nbytes(&out), hex);
        ck_assert_msg(!strcmp(hex, cJSON_GetObjectItem(it, "imagenet_sha256")->valuestring), "%s: DINO input differs",
                      it->string);
        ck_assert_int_eq(omni_op_normalize_image(&out, &r, HALF, HALF, &err), OMNI_OK);
        tu_sha256_hex(omni_tensor_data(&out), omni_tensor_nbytes(&out), hex);
        ck_assert_msg(!strcmp(hex, cJSON_GetObjectItem(it, "inception_sha256")->valuestring), "%s: SigLIP input differs",
                      it->string);
        omni_tensor_release(&img);
        omni_tensor_release(&r);
        omni_tensor_release(&out);
        n++;
    }
    ck_assert_int_eq(n, 2);
    cJSON_Delete(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image_ops");
    TCase *tc = tcase_create("image_ops");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_resize_matches_pil_on_synthetic_cases);
    tcase_add_test(tc, test_resize_shared_images_to_384_like_pil);
    tcase_add_test(tc, test_resize_keeps_constant_images_constant);
    tcase_add_test(tc, test_resize_batch_equals_one_by_one_and_identity_copies);
    tcase_add_test(tc, test_resize_rejects_bad_arguments);
    tcase_add_test(tc, test_normalize_is_bit_equal_to_torchvision);
    tcase_add_test(tc, test_normalize_hand_values);
    tcase_add_test(tc, test_normalized_384_tensor_of_real_images_matches_torchvision);
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
