/* tests/core/check_image.c - omni_image_load / save_png / from_float.
 *
 * Expected pixels come from PIL 9.4 (tests/fixtures/gen_images.py:
 * Image.open(f).convert("RGB")) and from torch/numpy re-implementations of
 * the upstream float -> u8 conversion; layouts and error cases are worked by
 * hand here. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/testutil.h"
#include "image_sha256.h"
#include "omni/image.h"

#define FIX "tests/fixtures/data/images/"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    buf[len] = 0;
    fclose(f);
    if (n)
        *n = (size_t)len;
    return buf;
}

static void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static cJSON *expected(void)
{
    char *s = slurp(tu_repo_path(FIX "expected.json"), NULL);
    cJSON *j = cJSON_Parse(s);
    free(s);
    ck_assert_msg(j != NULL, "expected.json does not parse");
    return j;
}

static char *tmp_file(const char *name)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tu_tmpdir(), name);
    return b;
}

static void check_pixels(const struct omni_tensor *img, const cJSON *pixels, const char *what)
{
    const uint8_t *p = omni_tensor_data(img);
    const int64_t W = img->shape[1];
    const cJSON *px;
    cJSON_ArrayForEach(px, pixels)
    {
        int x = cJSON_GetArrayItem(px, 0)->valueint, y = cJSON_GetArrayItem(px, 1)->valueint;
        for (int c = 0; c < 3; c++) {
            int want = cJSON_GetArrayItem(px, 2 + c)->valueint;
            int got = p[((int64_t)y * W + x) * 3 + c];
            ck_assert_msg(got == want, "%s: pixel (%d,%d) channel %d is %d, PIL has %d", what, x, y, c, got, want);
        }
    }
}

START_TEST(test_sha256_matches_standard_vector)
{
    char hex[65];
    tu_sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    tu_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

START_TEST(test_loads_shared_images_like_pil)
{
    long live = omni_buffer_live_count();
    cJSON *ex = expected();
    const cJSON *shared = cJSON_GetObjectItem(ex, "shared"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, shared)
    {
        char rel[256], hex[65];
        snprintf(rel, sizeof rel, "data/images/%s", it->string);
        struct omni_tensor img;
        struct omni_error err = {0};
        int rc = omni_image_load(tu_shared_path(rel), &img, &err);
        ck_assert_msg(rc == OMNI_OK, "%s: %s", it->string, err.msg);
        ck_assert_int_eq(img.dtype, OMNI_DTYPE_U8);
        ck_assert_int_eq(img.ndim, 3);
        ck_assert_int_eq(img.shape[0], cJSON_GetObjectItem(it, "h")->valueint);
        ck_assert_int_eq(img.shape[1], cJSON_GetObjectItem(it, "w")->valueint);
        ck_assert_int_eq(img.shape[2], 3);
        check_pixels(&img, cJSON_GetObjectItem(it, "pixels"), it->string);
        tu_sha256_hex(omni_tensor_data(&img), omni_tensor_nbytes(&img), hex);
        ck_assert_msg(strcmp(hex, cJSON_GetObjectItem(it, "rgb_sha256")->valuestring) == 0,
                      "%s: RGB bytes differ from PIL's convert('RGB') (sha256 %s)", it->string, hex);
        omni_tensor_release(&img);
        n++;
    }
    ck_assert_int_eq(n, 4);
    cJSON_Delete(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_loads_every_format_variant_like_pil)
{
    long live = omni_buffer_live_count();
    cJSON *ex = expected();
    const cJSON *formats = cJSON_GetObjectItem(ex, "formats"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, formats)
    {
        char rel[256];
        snprintf(rel, sizeof rel, FIX "formats/%s", it->string);
        struct omni_tensor img;
        struct omni_error err = {0};
        int rc = omni_image_load(tu_repo_path(rel), &img, &err);
        ck_assert_msg(rc == OMNI_OK, "%s: %s", it->string, err.msg);
        const int w = cJSON_GetObjectItem(it, "w")->valueint, h = cJSON_GetObjectItem(it, "h")->valueint;
        ck_assert_msg(img.shape[0] == h && img.shape[1] == w, "%s: got %lldx%lld", it->string,
                      (long long)img.shape[1], (long long)img.shape[0]);
        const char *hex = cJSON_GetObjectItem(it, "rgb")->valuestring;
        ck_assert_int_eq(strlen(hex), (size_t)w * h * 3 * 2);
        const uint8_t *p = omni_tensor_data(&img);
        int bad = 0, first = -1;
        for (int i = 0; i < w * h * 3; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            if (p[i] != v) {
                bad++;
                if (first < 0)
                    first = i;
            }
        }
        ck_assert_msg(bad == 0, "%s (PIL mode %s): %d of %d bytes differ from PIL, first at pixel %d channel %d",
                      it->string, cJSON_GetObjectItem(it, "mode")->valuestring, bad, w * h * 3, first / 3, first % 3);
        omni_tensor_release(&img);
        n++;
    }
    ck_assert_int_ge(n, 20);
    cJSON_Delete(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_detects_format_by_content_not_name)
{
    long live = omni_buffer_live_count();
    size_t n;
    char *png = slurp(tu_repo_path(FIX "formats/rgb8.png"), &n);
    spit(tmp_file("really_png.jpg"), png, n);
    free(png);
    char *jpg = slurp(tu_repo_path(FIX "formats/rgb420.jpg"), &n);
    spit(tmp_file("really_jpeg.png"), jpg, n);
    free(jpg);
    struct omni_tensor a, b;
    struct omni_error err = {0};
    ck_assert_msg(omni_image_load(tmp_file("really_png.jpg"), &a, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_msg(omni_image_load(tmp_file("really_jpeg.png"), &b, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(a.shape[1], 13);
    ck_assert_int_eq(b.shape[1], 17);
    omni_tensor_release(&a);
    omni_tensor_release(&b);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_missing_file_is_not_found)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img;
    struct omni_error err = {0};
    int rc = omni_image_load(tmp_file("no_such_image.png"), &img, &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "no_such_image.png"));
    ck_assert_ptr_null(img.buf);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_files_that_are_not_images)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img;
    struct omni_error err = {0};
    spit(tmp_file("notes.png"), "GIF89a hello", 12);
    ck_assert_int_eq(omni_image_load(tmp_file("notes.png"), &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "neither PNG nor JPEG"));
    ck_assert_ptr_nonnull(strstr(err.msg, "47 49 46 38")); /* "GIF8" */
    spit(tmp_file("empty.jpg"), "", 0);
    ck_assert_int_eq(omni_image_load(tmp_file("empty.jpg"), &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
    ck_assert_int_eq(omni_image_load(tu_tmpdir(), &img, &err), OMNI_EIO); /* a directory */
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Every cut inside the image data must be an error, never a crash or a
 * silently gray image. */
static void check_truncations(const char *rel, size_t data_start)
{
    size_t n;
    char *bytes = slurp(tu_repo_path(rel), &n);
    const size_t cuts[] = {1, 2, 5, 8, 16, 24, 33, data_start, data_start + 10, n / 2, n - 40};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] >= n - 30)
            continue;
        struct omni_tensor img;
        struct omni_error err = {0};
        int rc = omni_image_decode(bytes, cuts[i], rel, &img, &err);
        ck_assert_msg(rc == OMNI_EFORMAT, "%s cut at %zu of %zu bytes: rc %d (%s)", rel, cuts[i], n, rc, err.msg);
        ck_assert_ptr_nonnull(strstr(err.msg, rel));
        ck_assert_ptr_null(img.buf);
    }
    free(bytes);
}

START_TEST(test_rejects_truncated_png_and_jpeg)
{
    long live = omni_buffer_live_count();
    check_truncations(FIX "formats/rgb8.png", 33);
    check_truncations(FIX "formats/rgb8_interlaced.png", 33);
    check_truncations(FIX "formats/rgb420.jpg", 200);
    check_truncations(FIX "formats/progressive.jpg", 200);
    /* a real photo cut in half */
    size_t n;
    char *jpg = slurp(tu_shared_path("data/images/dog_bicycle.jpg"), &n);
    struct omni_tensor img;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_image_decode(jpg, n / 2, "dog_bicycle.jpg", &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    free(jpg);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_corrupt_data)
{
    long live = omni_buffer_live_count();
    size_t n;
    struct omni_tensor img;
    struct omni_error err = {0};
    /* a flipped byte inside IDAT: the CRC check fails */
    char *png = slurp(tu_repo_path(FIX "formats/rgb8.png"), &n);
    png[n - 30] ^= 0x55;
    ck_assert_int_eq(omni_image_decode(png, n, "flipped.png", &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "flipped.png"));
    free(png);
    /* SOI followed by garbage */
    uint8_t junk[64] = {0xFF, 0xD8, 0xFF, 0x01};
    for (int i = 4; i < 64; i++)
        junk[i] = (uint8_t)(i * 37);
    ck_assert_int_eq(omni_image_decode(junk, sizeof junk, "junk.jpg", &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_null(img.buf);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* A PNG signature + one IHDR chunk (with a correct CRC) claiming w x h, no data. */
static size_t png_header_only(uint8_t *out, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[17] = {'I', 'H', 'D', 'R', (uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h, 8, 2, 0, 0, 0};
    uint32_t crc = 0xFFFFFFFFu;
    for (int i = 0; i < 17; i++) {
        crc ^= ihdr[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xFFFFFFFFu;
    memcpy(out, sig, 8);
    const uint8_t len[4] = {0, 0, 0, 13};
    memcpy(out + 8, len, 4);
    memcpy(out + 12, ihdr, 17);
    const uint8_t c[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
    memcpy(out + 29, c, 4);
    return 33;
}

START_TEST(test_rejects_zero_size_png)
{
    long live = omni_buffer_live_count();
    uint8_t b[64];
    struct omni_tensor img;
    struct omni_error err = {0};
    size_t n = png_header_only(b, 0, 0);
    ck_assert_int_eq(omni_image_decode(b, n, "zero.png", &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "0x0"));
    n = png_header_only(b, 5, 0);
    ck_assert_int_eq(omni_image_decode(b, n, "flat.png", &img, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "5x0"));
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_refuses_huge_images_before_allocating)
{
    long live = omni_buffer_live_count();
    uint8_t b[64];
    struct omni_tensor img;
    struct omni_error err = {0};
    size_t n = png_header_only(b, 30000, 30000);
    spit(tmp_file("huge.png"), b, n);
    ck_assert_int_eq(omni_image_load(tmp_file("huge.png"), &img, &err), OMNI_ERANGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "30000x30000"));
    ck_assert_ptr_nonnull(strstr(err.msg, "huge.png"));
    /* under the side limit but over 2^28 pixels: 16384 x 16385 is over the side limit,
     * 16000 x 16800 over the pixel limit */
    n = png_header_only(b, 16000, 16800);
    ck_assert_int_eq(omni_image_decode(b, n, "many.png", &img, &err), OMNI_ERANGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "16000x16800"));
    /* a valid IHDR within the limits but no image data: a format error, not a crash */
    n = png_header_only(b, 4000, 3000);
    ck_assert_int_eq(omni_image_decode(b, n, "nodata.png", &img, &err), OMNI_EFORMAT);

    /* a JPEG whose SOF claims 20000 x 300 */
    size_t jn;
    uint8_t *jpg = (uint8_t *)slurp(tu_repo_path(FIX "formats/rgb420.jpg"), &jn);
    int patched = 0;
    for (size_t i = 2; i + 9 < jn; i++)
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {
            jpg[i + 5] = 300 >> 8; /* height */
            jpg[i + 6] = 300 & 0xFF;
            jpg[i + 7] = 20000 >> 8; /* width */
            jpg[i + 8] = 20000 & 0xFF;
            patched = 1;
            break;
        }
    ck_assert(patched);
    ck_assert_int_eq(omni_image_decode(jpg, jn, "wide.jpg", &img, &err), OMNI_ERANGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "20000x300"));
    /* a SOF claiming 300 x 200 over the scan data of a 17 x 11 image: libjpeg
     * meets the EOI marker early, warns and fills with gray; PIL 9.4 returns
     * that image too (checked by hand: pixel (250,150) is 128 gray, (0,0) is
     * (1,2,0)), so this is not an error */
    for (size_t i = 2; i + 9 < jn; i++)
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {
            jpg[i + 5] = 0;
            jpg[i + 6] = 200;
            jpg[i + 7] = 300 >> 8;
            jpg[i + 8] = 300 & 0xFF;
            break;
        }
    ck_assert_msg(omni_image_decode(jpg, jn, "short_scan.jpg", &img, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(img.shape[0], 200);
    ck_assert_int_eq(img.shape[1], 300);
    const uint8_t *px = omni_tensor_data(&img);
    ck_assert_int_eq(px[(150 * 300 + 250) * 3], 128);
    ck_assert_int_eq(px[0], 1);
    ck_assert_int_eq(px[1], 2);
    ck_assert_int_eq(px[2], 0);
    omni_tensor_release(&img);
    free(jpg);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static void fill_random_u8(struct omni_tensor *t, uint64_t seed)
{
    struct tu_rng r;
    tu_rng_seed(&r, seed);
    uint8_t *p = omni_tensor_data(t);
    for (size_t i = 0; i < omni_tensor_nbytes(t); i++)
        p[i] = (uint8_t)(tu_rng_u64(&r) >> 56);
}

START_TEST(test_save_png_round_trips_exactly)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img, back;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&img, OMNI_DTYPE_U8, 3, (int64_t)5, (int64_t)7, (int64_t)3), OMNI_OK);
    fill_random_u8(&img, 11);
    ck_assert_msg(omni_image_save_png(tmp_file("rt.png"), &img, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_msg(omni_image_load(tmp_file("rt.png"), &back, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(back.shape[0], 5);
    ck_assert_int_eq(back.shape[1], 7);
    ck_assert_mem_eq(omni_tensor_data(&back), omni_tensor_data(&img), 5 * 7 * 3);
    omni_tensor_release(&back);
    /* a single-image batch [1,H,W,3] is written without a border (make_grid
     * returns a lone image unchanged) */
    int64_t shape4[4] = {1, 5, 7, 3};
    ck_assert_int_eq(omni_tensor_reshape(&img, 4, shape4, &err), OMNI_OK);
    ck_assert_int_eq(omni_image_save_png(tmp_file("rt1.png"), &img, &err), OMNI_OK);
    ck_assert_int_eq(omni_image_load(tmp_file("rt1.png"), &back, &err), OMNI_OK);
    ck_assert_int_eq(back.shape[0], 5);
    ck_assert_int_eq(back.shape[1], 7);
    ck_assert_mem_eq(omni_tensor_data(&back), omni_tensor_data(&img), 5 * 7 * 3);
    omni_tensor_release(&back);
    omni_tensor_release(&img);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_save_png_grid_layout)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img, grid;
    struct omni_error err = {0};
    const int64_t B = 3, H = 4, W = 5;
    ck_assert_int_eq(omni_tensor_alloc_host(&img, OMNI_DTYPE_U8, 4, B, H, W, (int64_t)3), OMNI_OK);
    uint8_t *p = omni_tensor_data(&img);
    for (int64_t i = 0; i < B * H * W * 3; i++)
        p[i] = (uint8_t)(1 + i % 250); /* never 0, so the padding is recognisable */
    int64_t gh, gw;
    omni_image_grid_size(B, H, W, &gh, &gw);
    /* 3 images: ceil(sqrt(3)) = 2 per row, 2 rows; 2 px borders */
    ck_assert_int_eq(gh, 2 * (H + 2) + 2);
    ck_assert_int_eq(gw, 2 * (W + 2) + 2);
    ck_assert_msg(omni_image_save_png(tmp_file("grid.png"), &img, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_msg(omni_image_load(tmp_file("grid.png"), &grid, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(grid.shape[0], gh);
    ck_assert_int_eq(grid.shape[1], gw);
    const uint8_t *g = omni_tensor_data(&grid);
    for (int64_t y = 0; y < gh; y++)
        for (int64_t x = 0; x < gw; x++)
            for (int c = 0; c < 3; c++) {
                int64_t r = y - 2, q = x - 2, want = 0;
                int64_t row = r / (H + 2), col = q / (W + 2), iy = r % (H + 2), ix = q % (W + 2);
                if (r >= 0 && q >= 0 && iy < H && ix < W && row * 2 + col < B)
                    want = p[(((row * 2 + col) * H + iy) * W + ix) * 3 + c];
                ck_assert_msg(g[(y * gw + x) * 3 + c] == want, "grid (%lld,%lld,%d) is %d, expected %lld",
                              (long long)x, (long long)y, c, g[(y * gw + x) * 3 + c], (long long)want);
            }
    /* spot checks written out by hand: image 1's first pixel at (x=9, y=2),
     * image 2's at (x=2, y=8), the 4th slot is black */
    ck_assert_int_eq(g[(2 * gw + 9) * 3], p[H * W * 3]);
    ck_assert_int_eq(g[(8 * gw + 2) * 3], p[2 * H * W * 3]);
    ck_assert_int_eq(g[(8 * gw + 9) * 3], 0);
    omni_image_grid_size(4, 8, 8, &gh, &gw);
    ck_assert_int_eq(gw, 22);
    omni_image_grid_size(5, 8, 8, &gh, &gw);
    ck_assert_int_eq(gw, 32); /* 3 per row */
    ck_assert_int_eq(gh, 22); /* 2 rows */
    omni_tensor_release(&grid);
    omni_tensor_release(&img);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_save_png_reports_bad_input_and_paths)
{
    long live = omni_buffer_live_count();
    struct omni_tensor img, f;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&img, OMNI_DTYPE_U8, 3, (int64_t)2, (int64_t)2, (int64_t)3), OMNI_OK);
    int rc = omni_image_save_png("/nonexistent-dir/x/out.png", &img, &err);
    ck_assert_int_eq(rc, OMNI_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent-dir/x/out.png"));
    ck_assert_int_eq(omni_tensor_alloc_host(&f, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)2, (int64_t)3), OMNI_OK);
    ck_assert_int_eq(omni_image_save_png(tmp_file("f.png"), &f, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "f32"));
    ck_assert_int_eq(access(tmp_file("f.png"), F_OK), -1);
    omni_tensor_release(&f);
    omni_tensor_release(&img);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_from_float_matches_upstream_truncation)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = NULL;
    struct omni_error err = {0};
    ck_assert_msg(omni_weights_open(&w, tu_repo_path(FIX "from_float.safetensors"), &err) == OMNI_OK, "%s", err.msg);
    struct omni_tensor in, want, out;
    ck_assert_int_eq(omni_weights_load(w, NULL, "in", OMNI_DTYPE_F32, 0, NULL, &in, &err), OMNI_OK);
    ck_assert_int_eq(omni_weights_load(w, NULL, "out", OMNI_DTYPE_U8, 0, NULL, &want, &err), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc(&out, OMNI_DTYPE_U8, 4, want.shape, OMNI_CPU, &err), OMNI_OK);
    ck_assert_msg(omni_image_from_float(&out, &in, -1.0f, 1.0f, &err) == OMNI_OK, "%s", err.msg);
    const uint8_t *a = omni_tensor_data(&out), *b = omni_tensor_data(&want);
    for (int64_t i = 0; i < omni_tensor_numel(&want); i++)
        ck_assert_msg(a[i] == b[i], "byte %lld: %d, upstream %d", (long long)i, a[i], b[i]);
    omni_tensor_release(&in);
    omni_tensor_release(&want);
    omni_tensor_release(&out);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_from_float_hand_cases)
{
    long live = omni_buffer_live_count();
    struct omni_tensor in, out, view;
    struct omni_error err = {0};
    /* [3, 1, 6] (no batch): per channel values */
    ck_assert_int_eq(omni_tensor_alloc_host(&in, OMNI_DTYPE_F32, 3, (int64_t)3, (int64_t)1, (int64_t)6), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_U8, 3, (int64_t)1, (int64_t)6, (int64_t)3), OMNI_OK);
    float *x = omni_tensor_data(&in);
    /* -1 -> 0; 1 -> 255; 0 -> 0.5*255 = 127.5 -> 127 (truncation); NaN -> 0;
     * 7 -> 255 and -2 -> 0 (clamped); channel 1 holds the negated values */
    const float v[6] = {-1.0f, 1.0f, 0.0f, NAN, 7.0f, -2.0f};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 6; i++)
            x[c * 6 + i] = c == 1 ? -v[i] : v[i];
    ck_assert_msg(omni_image_from_float(&out, &in, -1.0f, 1.0f, &err) == OMNI_OK, "%s", err.msg);
    const uint8_t *y = omni_tensor_data(&out);
    const uint8_t want0[6] = {0, 255, 127, 0, 255, 0}, want1[6] = {255, 0, 127, 0, 0, 255};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(y[i * 3 + 0], want0[i]);
        ck_assert_int_eq(y[i * 3 + 1], want1[i]);
        ck_assert_int_eq(y[i * 3 + 2], want0[i]);
    }
    /* another range: [0, 1] maps 0.5 to 127 (0.5*255 = 127.5 truncated) */
    for (int i = 0; i < 18; i++)
        x[i] = 0.5f;
    ck_assert_int_eq(omni_image_from_float(&out, &in, 0.0f, 1.0f, &err), OMNI_OK);
    ck_assert_int_eq(y[0], 127);
    /* errors: an empty range, a wrong output shape */
    ck_assert_int_eq(omni_image_from_float(&out, &in, 1.0f, 1.0f, &err), OMNI_EINVAL);
    omni_tensor_ref(&view, &out);
    view.shape[1] = 5;
    omni_tensor_set_contiguous(&view);
    ck_assert_int_eq(omni_image_from_float(&view, &in, -1.0f, 1.0f, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "[1,6,3]"));
    omni_tensor_release(&view);
    omni_tensor_release(&in);
    omni_tensor_release(&out);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sha256_matches_standard_vector);
    tcase_add_test(tc, test_loads_shared_images_like_pil);
    tcase_add_test(tc, test_loads_every_format_variant_like_pil);
    tcase_add_test(tc, test_detects_format_by_content_not_name);
    tcase_add_test(tc, test_missing_file_is_not_found);
    tcase_add_test(tc, test_rejects_files_that_are_not_images);
    tcase_add_test(tc, test_rejects_truncated_png_and_jpeg);
    tcase_add_test(tc, test_rejects_corrupt_data);
    tcase_add_test(tc, test_rejects_zero_size_png);
    tcase_add_test(tc, test_refuses_huge_images_before_allocating);
    tcase_add_test(tc, test_save_png_round_trips_exactly);
    tcase_add_test(tc, test_save_png_grid_layout);
    tcase_add_test(tc, test_save_png_reports_bad_input_and_paths);
    tcase_add_test(tc, test_from_float_matches_upstream_truncation);
    tcase_add_test(tc, test_from_float_hand_cases);
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
