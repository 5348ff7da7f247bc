/* tests/plugins/check_vq.c - the `vq` stage (LlamaGen VQ tokenizer) against
 * the PyTorch reference of tests/fixtures/gen_vq.py (a tiny VQ with
 * LlamaGen's key names: ch 8, ch_mult [1,1,2], z 12, codebook 64 x 8,
 * 2/3 res blocks per encoder/decoder level, 4 GroupNorm groups, grid 4 ->
 * 16x16 pixels), and its error paths.
 *
 * With OMNI_VQ_BENCH=1 one more test decodes a full-size VQ-16 (random
 * weights, 256 codes -> 256x256) and prints CPU time and peak RSS. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../common/testutil.h"
#include "omni/harness.h"
#include "cpu/parallel.h"

#define FIX "tests/fixtures/data/vq/"
#define TINY_PARAMS "grid: 4\nnorm_groups: 4\n"

static struct omni_error err;

#define OK(call)                                                                          \
    do {                                                                                  \
        omni_error_clear(&err);                                                           \
        int rc_ = (call);                                                                 \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg);  \
    } while (0)

/* The expected.safetensors tensors. */
struct expect {
    struct omni_weights *w;
    struct omni_tensor codes, decoded, pixels, image, enc_codes, roundtrip;
};

static void expect_open(struct expect *e)
{
    memset(e, 0, sizeof *e);
    OK(omni_weights_open(&e->w, tu_repo_path(FIX "expected.safetensors"), &err));
    OK(omni_weights_load(e->w, NULL, "codes", OMNI_DTYPE_I32, 0, NULL, &e->codes, &err));
    OK(omni_weights_load(e->w, NULL, "decoded", OMNI_DTYPE_F32, 0, NULL, &e->decoded, &err));
    OK(omni_weights_load(e->w, NULL, "pixels", OMNI_DTYPE_U8, 0, NULL, &e->pixels, &err));
    OK(omni_weights_load(e->w, NULL, "image", OMNI_DTYPE_F32, 0, NULL, &e->image, &err));
    OK(omni_weights_load(e->w, NULL, "enc_codes", OMNI_DTYPE_I32, 0, NULL, &e->enc_codes, &err));
    OK(omni_weights_load(e->w, NULL, "roundtrip", OMNI_DTYPE_F32, 0, NULL, &e->roundtrip, &err));
}

static void expect_close(struct expect *e)
{
    omni_tensor_release(&e->codes);
    omni_tensor_release(&e->decoded);
    omni_tensor_release(&e->pixels);
    omni_tensor_release(&e->image);
    omni_tensor_release(&e->enc_codes);
    omni_tensor_release(&e->roundtrip);
    omni_weights_close(e->w);
}

static struct omni_harness *tiny(const char *params, const char *file, const char *prefix)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", params, &err));
    OK(omni_harness_load_weights(h, tu_repo_path(file), prefix, &err));
    return h;
}

static void check_image(const struct omni_tensor *got, const struct omni_tensor *ref, double tol)
{
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(got->dtype, OMNI_DTYPE_F32);
    ck_assert_int_eq(got->ndim, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(got->shape[i], ref->shape[i]);
    size_t n = (size_t)omni_tensor_numel(ref);
    ck_assert(!tu_has_nan(omni_tensor_data(got), n));
    double e = tu_rel_err(omni_tensor_data(got), omni_tensor_data(ref), n);
    ck_assert_msg(e < tol, "image rel err %g (tolerance %g)", e, tol);
}

/* OmniMamba's conversion (spec/omnimamba.md §7.4): clamp to [-1, 1],
 * (v + 1) / 2, floor(v * 255); NCHW f32 -> NHWC u8. */
static void to_pixels(const struct omni_tensor *img, uint8_t *px)
{
    const int64_t B = img->shape[0], H = img->shape[2], W = img->shape[3];
    const float *v = omni_tensor_data(img);
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    float f = v[((b * 3 + c) * H + y) * W + x];
                    f = f < -1.0f ? -1.0f : f > 1.0f ? 1.0f : f;
                    f = (f + 1.0f) / 2.0f;
                    px[((b * H + y) * W + x) * 3 + c] = (uint8_t)floorf(f * 255.0f);
                }
}

static void check_codes(const struct omni_tensor *got, const struct omni_tensor *ref)
{
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(got->dtype, OMNI_DTYPE_I32);
    ck_assert_int_eq(got->ndim, 2);
    ck_assert_int_eq(got->shape[0], ref->shape[0]);
    ck_assert_int_eq(got->shape[1], ref->shape[1]);
    const int32_t *g = omni_tensor_data(got), *r = omni_tensor_data(ref);
    for (int64_t i = 0; i < omni_tensor_numel(ref); i++)
        ck_assert_msg(g[i] == r[i], "code %lld: %d, want %d", (long long)i, g[i], r[i]);
}

/* ------------------------------------------------------------------ parity */

START_TEST(test_decode_matches_torch_from_pth)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    struct omni_harness *h = tiny(TINY_PARAMS, FIX "tiny.pth", "model.");
    OK(omni_harness_push(h, "codes", &e.codes, &err));
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *img = omni_harness_pull(h, "image");
    check_image(img, &e.decoded, 1e-4);
    /* 8-bit pixels: equal up to 1 LSB at rounding boundaries */
    size_t n = (size_t)omni_tensor_numel(&e.pixels);
    uint8_t *px = malloc(n);
    to_pixels(img, px);
    const uint8_t *want = omni_tensor_data(&e.pixels);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)px[i] - (int)want[i];
        ck_assert_msg(d >= -1 && d <= 1, "pixel %zu: %d, want %d", i, px[i], want[i]);
        same += d == 0;
    }
    ck_assert_msg(same * 100 >= n * 99, "only %zu of %zu pixels identical", same, n);
    free(px);
    /* decode mode leaves the codes output empty */
    const struct omni_tensor *oc = omni_harness_pull(h, "codes");
    ck_assert(oc == NULL || oc->buf == NULL);
    omni_harness_free(h);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_decode_from_omnimamba_prefix)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    struct omni_harness *h = tiny(TINY_PARAMS, FIX "tiny_llm.safetensors", "llm_backbone.vqvae.");
    OK(omni_harness_push(h, "codes", &e.codes, &err));
    OK(omni_harness_forward(h, &err));
    check_image(omni_harness_pull(h, "image"), &e.decoded, 1e-4);
    /* again: the stage keeps no per-call memory that changes the result */
    OK(omni_harness_forward(h, &err));
    check_image(omni_harness_pull(h, "image"), &e.decoded, 1e-4);
    omni_harness_free(h);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_decode_with_half_weights)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    struct omni_harness *h;
    OK(omni_harness_new_full(&h, "vq", TINY_PARAMS, "cpu", "bf16", &err));
    OK(omni_harness_load_weights(h, tu_repo_path(FIX "tiny.pth"), "model.", &err));
    OK(omni_harness_push(h, "codes", &e.codes, &err));
    OK(omni_harness_forward(h, &err));
    check_image(omni_harness_pull(h, "image"), &e.decoded, 3e-2);
    omni_harness_free(h);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_explicit_params_agree_with_weights)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    struct omni_harness *h = tiny(TINY_PARAMS "ch: 8\nch_mult: [1, 1, 2]\nz_channels: 12\n"
                                              "codebook_size: 64\ncodebook_dim: 8\n"
                                              "num_res_blocks: 2\nattn_resolutions: [4]\n",
                                  FIX "tiny.pth", "model.");
    OK(omni_harness_push(h, "codes", &e.codes, &err));
    OK(omni_harness_forward(h, &err));
    check_image(omni_harness_pull(h, "image"), &e.decoded, 1e-4);
    omni_harness_free(h);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_encode_codes_match_torch)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    struct omni_harness *h = tiny(TINY_PARAMS "mode: encode\n", FIX "tiny.pth", "model.");
    OK(omni_harness_push(h, "image", &e.image, &err));
    OK(omni_harness_forward(h, &err));
    check_codes(omni_harness_pull(h, "codes"), &e.enc_codes);
    const struct omni_tensor *oi = omni_harness_pull(h, "image");
    ck_assert(oi == NULL || oi->buf == NULL);
    omni_harness_free(h);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_both_mode_roundtrips_image)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    /* one image per pass: the batch goes through in two passes */
    struct omni_harness *h = tiny(TINY_PARAMS "mode: both\npass_images: 1\n", FIX "tiny.pth", "model.");
    /* image only: decode(encode(image)) */
    OK(omni_harness_push(h, "image", &e.image, &err));
    OK(omni_harness_forward(h, &err));
    check_codes(omni_harness_pull(h, "codes"), &e.enc_codes);
    check_image(omni_harness_pull(h, "image"), &e.roundtrip, 1e-4);
    /* codes given as well: they are what gets decoded */
    OK(omni_harness_push(h, "codes", &e.codes, &err));
    OK(omni_harness_forward(h, &err));
    check_codes(omni_harness_pull(h, "codes"), &e.enc_codes);
    check_image(omni_harness_pull(h, "image"), &e.decoded, 1e-4);
    omni_harness_free(h);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_decode_accepts_i64_and_strided_codes)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    /* i64 codes laid out (16, 2) and viewed transposed as (2, 16) */
    struct omni_tensor c64;
    OK(omni_tensor_alloc_host(&c64, OMNI_DTYPE_I64, 2, (int64_t)16, (int64_t)2));
    const int32_t *src = omni_tensor_data(&e.codes);
    int64_t *dst = omni_tensor_data(&c64);
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 16; k++)
            dst[k * 2 + b] = src[b * 16 + k];
    struct omni_tensor v = c64;
    v.shape[0] = 2;
    v.shape[1] = 16;
    v.strides[0] = 1;
    v.strides[1] = 2;
    struct omni_harness *h = tiny(TINY_PARAMS, FIX "tiny.pth", "model.");
    OK(omni_harness_push(h, "codes", &v, &err));
    OK(omni_harness_forward(h, &err));
    check_image(omni_harness_pull(h, "image"), &e.decoded, 1e-4);
    omni_harness_free(h);
    omni_tensor_release(&c64);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---------------------------------------------- the tiny OmniMamba fixture */

/* tests/fixtures/gen_omnimamba_tiny.py's VQ (ch 32, ch_mult [1,1,2], z 32,
 * codebook 512 x 8, 1 res block per encoder level / 2 per decoder level,
 * 32 GroupNorm groups): an independent second fixture. Unpacks vq.pth.xz. */
static const char *unpack_tiny_vq(void)
{
    static char path[512];
    char cmd[1200];
    snprintf(path, sizeof path, "%s/vq.pth", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "xz -dc '%s' > '%s'",
             tu_repo_path("tests/fixtures/data/omnimamba_tiny/vq.pth.xz"), path);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    return path;
}

static void load_any(struct omni_weights *w, const char *key, int dtype, struct omni_tensor *t)
{
    OK(omni_weights_load(w, NULL, key, dtype, 0, NULL, t, &err));
}

START_TEST(test_omnimamba_tiny_vq_decode)
{
    long live = omni_buffer_live_count();
    const char *path = unpack_tiny_vq();
    struct omni_weights *x;
    struct omni_tensor codes, ref, u8;
    OK(omni_weights_open(&x, tu_repo_path("tests/fixtures/data/omnimamba_tiny/expected_t2i.safetensors"), &err));
    load_any(x, "codes", OMNI_DTYPE_I64, &codes);
    load_any(x, "image_float", OMNI_DTYPE_F32, &ref);
    load_any(x, "image_u8", OMNI_DTYPE_U8, &u8);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", "grid: 4", &err));
    OK(omni_harness_load_weights(h, path, "model.", &err));
    OK(omni_harness_push(h, "codes", &codes, &err));
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *img = omni_harness_pull(h, "image");
    check_image(img, &ref, 1e-4);
    size_t n = (size_t)omni_tensor_numel(&u8);
    uint8_t *px = malloc(n);
    to_pixels(img, px);
    for (size_t i = 0; i < n; i++) {
        int d = (int)px[i] - (int)((const uint8_t *)omni_tensor_data(&u8))[i];
        ck_assert_msg(d >= -1 && d <= 1, "pixel %zu off by %d", i, d);
    }
    /* the conversion itself, applied to the reference floats, is exact */
    to_pixels(&ref, px);
    ck_assert(memcmp(px, omni_tensor_data(&u8), n) == 0);
    free(px);
    omni_harness_free(h);
    omni_tensor_release(&codes);
    omni_tensor_release(&ref);
    omni_tensor_release(&u8);
    omni_weights_close(x);
    remove(path);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_omnimamba_tiny_vq_roundtrip)
{
    long live = omni_buffer_live_count();
    const char *path = unpack_tiny_vq();
    struct omni_weights *x;
    struct omni_tensor input, codes, recon;
    OK(omni_weights_open(&x, tu_repo_path("tests/fixtures/data/omnimamba_tiny/expected_vq.safetensors"), &err));
    load_any(x, "input", OMNI_DTYPE_F32, &input);
    load_any(x, "codes", OMNI_DTYPE_I32, &codes);
    load_any(x, "recon_float", OMNI_DTYPE_F32, &recon);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", "grid: 4\nmode: both", &err));
    OK(omni_harness_load_weights(h, path, "model.", &err));
    OK(omni_harness_push(h, "image", &input, &err));
    OK(omni_harness_forward(h, &err));
    check_codes(omni_harness_pull(h, "codes"), &codes);
    check_image(omni_harness_pull(h, "image"), &recon, 1e-4);
    omni_harness_free(h);
    omni_tensor_release(&input);
    omni_tensor_release(&codes);
    omni_tensor_release(&recon);
    omni_weights_close(x);
    remove(path);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ------------------------------------------------------------------ errors */

START_TEST(test_rejects_code_out_of_range)
{
    long live = omni_buffer_live_count();
    struct expect e;
    expect_open(&e);
    struct omni_harness *h = tiny(TINY_PARAMS, FIX "tiny.pth", "model.");
    struct omni_tensor c;
    OK(omni_tensor_convert(&c, &e.codes, OMNI_DTYPE_I32, &err));
    ((int32_t *)omni_tensor_data(&c))[16 + 5] = 64;
    OK(omni_harness_push(h, "codes", &c, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ERANGE);
    ck_assert_msg(strstr(err.msg, "code 64") && strstr(err.msg, "codes[1, 5]") &&
                  strstr(err.msg, "row 1") && strstr(err.msg, "[0, 64)"), "message: %s", err.msg);
    ((int32_t *)omni_tensor_data(&c))[16 + 5] = 0;
    ((int32_t *)omni_tensor_data(&c))[2] = -3;
    OK(omni_harness_push(h, "codes", &c, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ERANGE);
    ck_assert_msg(strstr(err.msg, "code -3") && strstr(err.msg, "codes[0, 2]"), "message: %s", err.msg);
    omni_harness_free(h);
    omni_tensor_release(&c);
    expect_close(&e);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_wrong_input_shapes)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = tiny(TINY_PARAMS "mode: both\n", FIX "tiny.pth", "model.");
    struct omni_tensor c, img;
    OK(omni_tensor_alloc_host(&c, OMNI_DTYPE_I32, 2, (int64_t)2, (int64_t)15));
    OK(omni_harness_push(h, "codes", &c, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[2,15]") && strstr(err.msg, "[B,16]"), "message: %s", err.msg);
    OK(omni_harness_push(h, "codes", NULL, &err));
    OK(omni_tensor_alloc_host(&img, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)16,
                              (int64_t)8));
    OK(omni_harness_push(h, "image", &img, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[1,3,16,8]") && strstr(err.msg, "[B,3,16,16]"), "message: %s",
                  err.msg);
    omni_harness_free(h);
    omni_tensor_release(&c);
    omni_tensor_release(&img);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_missing_inputs_and_bad_mode)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = tiny(TINY_PARAMS, FIX "tiny.pth", "model.");
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "'codes' is not connected"), "message: %s", err.msg);
    omni_harness_free(h);
    h = tiny(TINY_PARAMS "mode: encode\n", FIX "tiny.pth", "model.");
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "'image' is not connected"), "message: %s", err.msg);
    omni_harness_free(h);
    omni_error_clear(&err);
    ck_assert_int_ne(omni_harness_new(&h, "vq", "mode: sideways", &err), OMNI_OK);
    ck_assert_msg(strstr(err.msg, "sideways"), "message: %s", err.msg);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_params_that_disagree_with_weights)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", TINY_PARAMS "ch: 16\nch_mult: [1, 1, 2]\n", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, tu_repo_path(FIX "tiny.pth"), "model.", &err),
                     OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "model.decoder.conv_in.weight") && strstr(err.msg, "[32,12,3,3]") &&
                  strstr(err.msg, "[16,12,3,3]"), "message: %s", err.msg);
    omni_harness_free(h);
    /* ch alone keeps the VQ-16 ch_mult [1, 1, 2, 2, 4]: 8 * 4 = 32 wide at the bottom */
    OK(omni_harness_new(&h, "vq", TINY_PARAMS "ch: 8\n", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, tu_repo_path(FIX "tiny.pth"), "model.", &err),
                     OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[32,12,3,3]"), "message: %s", err.msg);
    omni_harness_free(h);
    /* 32 groups (the default) do not divide 8 channels */
    OK(omni_harness_new(&h, "vq", "grid: 4", &err));
    omni_error_clear(&err);
    ck_assert_int_ne(omni_harness_load_weights(h, tu_repo_path(FIX "tiny.pth"), "model.", &err),
                     OMNI_OK);
    ck_assert_msg(strstr(err.msg, "32 groups"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Copy tiny.pth's model.* tensors into a safetensors file, dropping `drop`
 * and giving `reshape` the shape `shape` (same numel). */
static const char *edited_copy(const char *name, const char *drop, const char *reshape,
                               int ndim, const int64_t *shape)
{
    static char path[512];
    struct omni_weights *w;
    OK(omni_weights_open(&w, tu_repo_path(FIX "tiny.pth"), &err));
    size_t n = omni_weights_count(w), k = 0;
    const char **names = calloc(n, sizeof *names);
    struct omni_tensor *ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const char *key = omni_weights_key(w, i);
        if (drop && !strcmp(key, drop))
            continue;
        OK(omni_weights_get(w, NULL, key, &ts[k], &err));
        if (reshape && !strcmp(key, reshape)) {
            struct omni_tensor c;
            OK(omni_tensor_copy_to(&c, &ts[k], OMNI_CPU, &err));
            omni_tensor_release(&ts[k]);
            OK(omni_tensor_reshape(&c, ndim, shape, &err));
            ts[k] = c;
        }
        names[k++] = key;
    }
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
    OK(omni_safetensors_write(path, k, names, ts, &err));
    for (size_t i = 0; i < k; i++)
        omni_tensor_release(&ts[i]);
    free(ts);
    free(names);
    omni_weights_close(w);
    return path;
}

START_TEST(test_missing_key_is_named)
{
    long live = omni_buffer_live_count();
    const char *path = edited_copy("missing.safetensors", "model.decoder.conv_blocks.1.res.2.conv2.weight",
                                   NULL, 0, NULL);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", TINY_PARAMS, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, path, "model.", &err), OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "model.decoder.conv_blocks.1.res.2.conv2.weight"), "message: %s",
                  err.msg);
    omni_harness_free(h);
    /* the encoder's keys are not needed to decode */
    path = edited_copy("noenc.safetensors", "model.encoder.conv_in.weight", NULL, 0, NULL);
    OK(omni_harness_new(&h, "vq", TINY_PARAMS, &err));
    OK(omni_harness_load_weights(h, path, "model.", &err));
    omni_harness_free(h);
    OK(omni_harness_new(&h, "vq", TINY_PARAMS "mode: encode\n", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, path, "model.", &err), OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "model.encoder.conv_in.weight"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_misshaped_key_is_named_with_both_shapes)
{
    long live = omni_buffer_live_count();
    const int64_t shape[4] = {3, 8, 1, 9};
    const char *path = edited_copy("misshaped.safetensors", NULL, "model.decoder.conv_out.weight",
                                   4, shape);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", TINY_PARAMS, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, path, "model.", &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "model.decoder.conv_out.weight") && strstr(err.msg, "[3,8,1,9]") &&
                  strstr(err.msg, "[3,8,3,3]"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_forward_without_weights_fails_cleanly)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vq", TINY_PARAMS, &err));
    omni_error_clear(&err);
    ck_assert_int_ne(omni_harness_forward(h, &err), OMNI_OK);
    ck_assert_msg(strstr(err.msg, "not loaded"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ------------------------------------------------------------------ full size */

struct wlist {
    char **names;
    struct omni_tensor *t;
    size_t n, cap;
    struct tu_rng rng;
};

static void wadd(struct wlist *l, const char *name, int ndim, const int64_t *shape, float std,
                 float mean)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->names = realloc(l->names, l->cap * sizeof *l->names);
        l->t = realloc(l->t, l->cap * sizeof *l->t);
    }
    OK(omni_tensor_alloc(&l->t[l->n], OMNI_DTYPE_F32, ndim, shape, OMNI_CPU, &err));
    float *p = omni_tensor_data(&l->t[l->n]);
    size_t n = (size_t)omni_tensor_numel(&l->t[l->n]);
    tu_fill_normal(&l->rng, p, n, std);
    for (size_t i = 0; i < n; i++)
        p[i] += mean;
    l->names[l->n] = strdup(name);
    l->n++;
}

static void wconv(struct wlist *l, const char *stem, int64_t co, int64_t ci, int64_t k)
{
    char b[256];
    const int64_t ws[4] = {co, ci, k, k}, bs[1] = {co};
    snprintf(b, sizeof b, "%s.weight", stem);
    wadd(l, b, 4, ws, 1.0f / sqrtf((float)(ci * k * k)), 0.0f);
    snprintf(b, sizeof b, "%s.bias", stem);
    wadd(l, b, 1, bs, 0.05f, 0.0f);
}

static void wnorm(struct wlist *l, const char *stem, int64_t c)
{
    char b[256];
    const int64_t s[1] = {c};
    snprintf(b, sizeof b, "%s.weight", stem);
    wadd(l, b, 1, s, 0.1f, 1.0f);
    snprintf(b, sizeof b, "%s.bias", stem);
    wadd(l, b, 1, s, 0.1f, 0.0f);
}

static void wres(struct wlist *l, const char *stem, int64_t ci, int64_t co)
{
    char b[256];
    snprintf(b, sizeof b, "%s.norm1", stem);
    wnorm(l, b, ci);
    snprintf(b, sizeof b, "%s.conv1", stem);
    wconv(l, b, co, ci, 3);
    snprintf(b, sizeof b, "%s.norm2", stem);
    wnorm(l, b, co);
    snprintf(b, sizeof b, "%s.conv2", stem);
    wconv(l, b, co, co, 3);
    if (ci != co) {
        snprintf(b, sizeof b, "%s.nin_shortcut", stem);
        wconv(l, b, co, ci, 1);
    }
}

static void wattn(struct wlist *l, const char *stem, int64_t c)
{
    static const char *const nm[4] = {"q", "k", "v", "proj_out"};
    char b[256];
    snprintf(b, sizeof b, "%s.norm", stem);
    wnorm(l, b, c);
    for (int i = 0; i < 4; i++) {
        snprintf(b, sizeof b, "%s.%s", stem, nm[i]);
        wconv(l, b, c, c, 1);
    }
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n))
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

START_TEST(test_full_size_decode_cost)
{
    /* VQ-16 decoder with random weights (spec/vq.md §3, §7) */
    static const int64_t mult[5] = {1, 1, 2, 2, 4};
    struct wlist l = {0};
    char b[256];
    tu_rng_seed(&l.rng, 16);
    const int64_t sh_cb[2] = {16384, 8};
    wadd(&l, "quantize.embedding.weight", 2, sh_cb, 0.7f, 0.0f);
    wconv(&l, "post_quant_conv", 256, 8, 1);
    int64_t cin = 512;
    wconv(&l, "decoder.conv_in", cin, 256, 3);
    wres(&l, "decoder.mid.0", cin, cin);
    wattn(&l, "decoder.mid.1", cin);
    wres(&l, "decoder.mid.2", cin, cin);
    for (int j = 0; j < 5; j++) {
        int64_t co = 128 * mult[4 - j];
        for (int r = 0; r < 3; r++) {
            snprintf(b, sizeof b, "decoder.conv_blocks.%d.res.%d", j, r);
            wres(&l, b, cin, co);
            cin = co;
            if (j == 0) {
                snprintf(b, sizeof b, "decoder.conv_blocks.%d.attn.%d", j, r);
                wattn(&l, b, co);
            }
        }
        if (j < 4) {
            snprintf(b, sizeof b, "decoder.conv_blocks.%d.upsample.conv", j);
            wconv(&l, b, co, co, 3);
        }
    }
    wnorm(&l, "decoder.norm_out", cin);
    wconv(&l, "decoder.conv_out", 3, cin, 3);
    char path[512];
    snprintf(path, sizeof path, "%s/vq16_random.safetensors", tu_tmpdir());
    OK(omni_safetensors_write(path, l.n, (const char *const *)l.names, l.t, &err));
    for (size_t i = 0; i < l.n; i++) {
        omni_tensor_release(&l.t[i]);
        free(l.names[i]);
    }
    free(l.t);
    free(l.names);

    struct omni_harness *h;
    const char *dt = getenv("OMNI_VQ_BENCH_DTYPE"); /* f32 (default), f16, bf16 */
    OK(omni_harness_new_full(&h, "vq", NULL, "cpu", dt && *dt ? dt : "f32", &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    remove(path);
    struct omni_tensor codes;
    OK(omni_tensor_alloc_host(&codes, OMNI_DTYPE_I32, 2, (int64_t)1, (int64_t)256));
    for (int i = 0; i < 256; i++)
        ((int32_t *)omni_tensor_data(&codes))[i] = (i * 2654435761u) % 16384;
    OK(omni_harness_push(h, "codes", &codes, &err));
    /* reset the peak-RSS mark so that it measures the decode itself */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    long rss0 = status_kb("VmRSS:");
    double c0 = cpu_seconds(), w0 = wall_seconds();
    OK(omni_harness_forward(h, &err));
    double c1 = cpu_seconds(), w1 = wall_seconds();
    long hwm = status_kb("VmHWM:");
    const struct omni_tensor *img = omni_harness_pull(h, "image");
    ck_assert_int_eq(img->shape[2], 256);
    ck_assert(!tu_has_nan(omni_tensor_data(img), (size_t)omni_tensor_numel(img)));
    printf("vq full-size decode (1 x 256 codes -> 256x256, %s weights, %d threads): CPU %.2f s, wall %.2f s "
           "(%.1f GFLOP/s), RSS before %ld MiB (weights loaded), peak during decode %ld MiB "
           "(+%ld MiB)\n",
           dt && *dt ? dt : "f32", omni_parallel_threads(), c1 - c0, w1 - w0, 252.7 / (w1 - w0), rss0 / 1024, hwm / 1024,
           (hwm - rss0) / 1024);
    fflush(stdout);
    omni_tensor_release(&codes);
    omni_harness_free(h);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vq");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_decode_matches_torch_from_pth);
    tcase_add_test(tc, test_decode_from_omnimamba_prefix);
    tcase_add_test(tc, test_decode_with_half_weights);
    tcase_add_test(tc, test_explicit_params_agree_with_weights);
    tcase_add_test(tc, test_encode_codes_match_torch);
    tcase_add_test(tc, test_both_mode_roundtrips_image);
    tcase_add_test(tc, test_decode_accepts_i64_and_strided_codes);
    tcase_add_test(tc, test_omnimamba_tiny_vq_decode);
    tcase_add_test(tc, test_omnimamba_tiny_vq_roundtrip);
    tcase_add_test(tc, test_rejects_code_out_of_range);
    tcase_add_test(tc, test_rejects_wrong_input_shapes);
    tcase_add_test(tc, test_rejects_missing_inputs_and_bad_mode);
    tcase_add_test(tc, test_rejects_params_that_disagree_with_weights);
    tcase_add_test(tc, test_missing_key_is_named);
    tcase_add_test(tc, test_misshaped_key_is_named_with_both_shapes);
    tcase_add_test(tc, test_forward_without_weights_fails_cleanly);
    suite_add_tcase(s, tc);
    const char *bench = getenv("OMNI_VQ_BENCH");
    if (bench && *bench && strcmp(bench, "0")) { /* opt-in: minutes of CPU, ~0.5 GB */
        TCase *tb = tcase_create("bench");
        tcase_set_timeout(tb, 1200);
        tcase_add_test(tb, test_full_size_decode_cost);
        suite_add_tcase(s, tb);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
