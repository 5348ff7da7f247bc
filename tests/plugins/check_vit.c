/* tests/plugins/check_vit.c - the `vit` stage on tiny timm-named towers from
 * tests/fixtures/gen_vision.py (PyTorch float64 references):
 *   - DINOv2-like: cls + 4 registers, LayerScale, pos_embed stored 6x6 and
 *     resampled to 4x4 at load, f16 matrices, OmniMamba's key prefix;
 *   - SigLIP-like: no prefix tokens, head dim 24, mlp 179, a 60-px input (4
 *     trailing pixels unused), bf16 matrices, an OpenCLIP-style .pth under
 *     visual.trunk.;
 * plus the errors: wrong input shape / dtype, missing key, feature_block out
 * of range, preset vs weights mismatch. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "../common/testutil.h"
#include "omni/harness.h"

#define FIX "tests/fixtures/data/vision/"
#define DINO_PREFIX "vision_backbone.dino_featurizer."

static struct omni_error err;

#define OK(call)                                                                          \
    do {                                                                                  \
        omni_error_clear(&err);                                                           \
        int rc_ = (call);                                                                 \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg);  \
    } while (0)

static void load_expected(const char *file, const char *key, struct omni_tensor *t)
{
    struct omni_weights *w;
    OK(omni_weights_open(&w, tu_repo_path(file), &err));
    OK(omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, t, &err));
    omni_weights_close(w);
}

/* Run a stage on the fixture pixels and compare `features` with `ref_key`. */
static void run_tower(const char *params, const char *dtype, const char *weights,
                      const char *prefix, const char *expected, const char *ref_key, double tol)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    struct omni_tensor px, ref;
    OK(omni_harness_new_full(&h, "vit", params, "cpu", dtype, &err));
    OK(omni_harness_load_weights(h, tu_repo_path(weights), prefix, &err));
    load_expected(expected, "pixels", &px);
    load_expected(expected, ref_key, &ref);
    OK(omni_harness_push(h, "pixels", &px, &err));
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *f = omni_harness_pull(h, "features");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->dtype, OMNI_DTYPE_F32);
    ck_assert_int_eq(f->ndim, 3);
    for (int d = 0; d < 3; d++)
        ck_assert_int_eq(f->shape[d], ref.shape[d]);
    ck_assert(omni_tensor_is_contiguous(f));
    size_t n = (size_t)omni_tensor_numel(&ref);
    ck_assert(!tu_has_nan(omni_tensor_data(f), n));
    double e = tu_rel_err(omni_tensor_data(f), omni_tensor_data(&ref), n);
    ck_assert_msg(e < tol, "%s/%s: rel err %g (tolerance %g)", weights, ref_key, e, tol);
    omni_tensor_release(&px);
    omni_tensor_release(&ref);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}

START_TEST(test_dino_like_tower_matches_torch)
{
    /* everything but heads and image_size comes from the weights; feature_block = depth-2 */
    run_tower("variant: custom\nheads: 2\nimage_size: 56", NULL, FIX "dino_tiny.safetensors",
              DINO_PREFIX, FIX "dino_tiny_expected.safetensors", "features", 1e-4);
}
END_TEST

START_TEST(test_dino_like_block0_keeps_prefix_tokens)
{
    run_tower("heads: 2\nimage_size: 56\nfeature_block: 0\ndrop_prefix: false", NULL,
              FIX "dino_tiny.safetensors", DINO_PREFIX, FIX "dino_tiny_expected.safetensors",
              "features_fb0_keep_prefix", 1e-4);
}
END_TEST

START_TEST(test_dino_like_last_block)
{
    /* explicit overrides that agree with the weights are accepted */
    run_tower("heads: 2\nimage_size: 56\nfeature_block: 2\ndim: 32\ndepth: 3\nmlp_hidden: 128\n"
              "patch: 14\nregisters: 4\nclass_token: true\nlayerscale: true\neps: 1e-6",
              NULL, FIX "dino_tiny.safetensors", DINO_PREFIX, FIX "dino_tiny_expected.safetensors",
              "features_fb2", 1e-4);
}
END_TEST

START_TEST(test_dino_like_bf16_weights)
{
    /* bf16 storage of the matrices (8 mantissa bits): measured 2.6e-3 relative */
    run_tower("heads: 2\nimage_size: 56", "bf16", FIX "dino_tiny.safetensors", DINO_PREFIX,
              FIX "dino_tiny_expected.safetensors", "features", 1e-2);
}
END_TEST

START_TEST(test_siglip_like_tower_from_openclip_pth)
{
    run_tower("variant: custom\nheads: 2\nimage_size: 60", NULL, FIX "siglip_tiny.pth",
              "visual.trunk.", FIX "siglip_tiny_expected.safetensors", "features", 1e-4);
}
END_TEST

/* A loaded DINO-like stage (caller frees). */
static struct omni_harness *dino_stage(void)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vit", "heads: 2\nimage_size: 56", &err));
    OK(omni_harness_load_weights(h, tu_repo_path(FIX "dino_tiny.safetensors"), DINO_PREFIX, &err));
    return h;
}

START_TEST(test_rejects_wrong_input_shape)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = dino_stage();
    struct omni_tensor px;
    OK(omni_tensor_alloc_host(&px, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)50, (int64_t)50));
    OK(omni_harness_push(h, "pixels", &px, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "pixels") && strstr(err.msg, "[1,3,50,50]") &&
                      strstr(err.msg, "56"),
                  "message: %s", err.msg);
    omni_tensor_release(&px);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_wrong_dtype)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = dino_stage();
    struct omni_tensor px;
    OK(omni_tensor_alloc_host(&px, OMNI_DTYPE_F16, 4, (int64_t)1, (int64_t)3, (int64_t)56, (int64_t)56));
    OK(omni_harness_push(h, "pixels", &px, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    ck_assert_msg(strstr(err.msg, "pixels") && strstr(err.msg, "f16"), "message: %s", err.msg);
    omni_tensor_release(&px);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Copy the DINO fixture to tmp without one key; returns the path. */
static const char *dino_without(const char *drop)
{
    static char path[512];
    struct omni_weights *w;
    OK(omni_weights_open(&w, tu_repo_path(FIX "dino_tiny.safetensors"), &err));
    size_t n = omni_weights_count(w), k = 0;
    const char *names[256];
    struct omni_tensor ts[256];
    ck_assert(n <= 256);
    for (size_t i = 0; i < n; i++) {
        const char *key = omni_weights_key(w, i);
        if (!strcmp(key, drop))
            continue;
        names[k] = key;
        OK(omni_weights_get(w, NULL, key, &ts[k], &err));
        k++;
    }
    ck_assert_int_eq(k, n - 1);
    snprintf(path, sizeof path, "%s/dino_missing.safetensors", tu_tmpdir());
    OK(omni_safetensors_write(path, k, names, ts, &err));
    for (size_t i = 0; i < k; i++)
        omni_tensor_release(&ts[i]);
    omni_weights_close(w);
    return path;
}

START_TEST(test_missing_key_is_named)
{
    long live = omni_buffer_live_count();
    const char *path = dino_without(DINO_PREFIX "blocks.1.attn.proj.weight");
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vit", "heads: 2\nimage_size: 56", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, path, DINO_PREFIX, &err), OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, DINO_PREFIX "blocks.1.attn.proj.weight"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_missing_layerscale_is_named)
{
    long live = omni_buffer_live_count();
    /* layerscale is detected from blocks.0.ls1.gamma; block 1 lacking ls2.gamma is an error */
    const char *path = dino_without(DINO_PREFIX "blocks.1.ls2.gamma");
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vit", "heads: 2\nimage_size: 56", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, path, DINO_PREFIX, &err), OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "blocks.1.ls2.gamma"), "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_feature_block_out_of_range)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = NULL;
    /* known depth (preset): refused at create */
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "variant: dinov2_reg4_l14\nfeature_block: 24", &err),
                     OMNI_ERANGE);
    ck_assert_msg(strstr(err.msg, "feature_block 24") && strstr(err.msg, "0..23"), "message: %s",
                  err.msg);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "variant: siglip_so400m_14_384\nfeature_block: -1", &err),
                     OMNI_ERANGE);
    /* depth from the weights (3 blocks): refused at load */
    static const char *bad[] = {"feature_block: 3", "feature_block: -1"};
    for (int i = 0; i < 2; i++) {
        char params[96];
        snprintf(params, sizeof params, "heads: 2\nimage_size: 56\n%s", bad[i]);
        OK(omni_harness_new(&h, "vit", params, &err));
        omni_error_clear(&err);
        ck_assert_int_eq(omni_harness_load_weights(h, tu_repo_path(FIX "dino_tiny.safetensors"),
                                                   DINO_PREFIX, &err),
                         OMNI_ERANGE);
        ck_assert_msg(strstr(err.msg, bad[i] + strlen("feature_block: ")) &&
                          strstr(err.msg, "depth 3"),
                      "message: %s", err.msg);
        omni_harness_free(h);
    }
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_preset_disagreeing_with_weights_is_refused)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "vit", "variant: dinov2_reg4_l14\nimage_size: 56", &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, tu_repo_path(FIX "dino_tiny.safetensors"),
                                               DINO_PREFIX, &err),
                     OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "patch_embed.proj.weight") && strstr(err.msg, "[32,3,14,14]") &&
                      strstr(err.msg, "[1024,3,14,14]"),
                  "message: %s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_bad_params)
{
    struct omni_harness *h = NULL;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "variant: vit_huge", &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "vit_huge"), "message: %s", err.msg);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "image_size: 56", &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "heads"), "message: %s", err.msg);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "heads: 2", &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "image_size"), "message: %s", err.msg);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "heads: 2\nimage_size: 56\nkey_style: hf", &err),
                     OMNI_EUNSUPPORTED);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "vit", "heads: 3\nimage_size: 56\ndim: 32", &err),
                     OMNI_EINVAL);
}
END_TEST

START_TEST(test_forward_before_load_is_refused)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    struct omni_tensor px;
    OK(omni_harness_new(&h, "vit", "heads: 2\nimage_size: 56", &err));
    OK(omni_tensor_alloc_host(&px, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)56, (int64_t)56));
    OK(omni_harness_push(h, "pixels", &px, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESTATE);
    omni_tensor_release(&px);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vit");
    TCase *tc = tcase_create("towers");
    tcase_add_test(tc, test_dino_like_tower_matches_torch);
    tcase_add_test(tc, test_dino_like_block0_keeps_prefix_tokens);
    tcase_add_test(tc, test_dino_like_last_block);
    tcase_add_test(tc, test_dino_like_bf16_weights);
    tcase_add_test(tc, test_siglip_like_tower_from_openclip_pth);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_rejects_wrong_input_shape);
    tcase_add_test(tc, test_rejects_wrong_dtype);
    tcase_add_test(tc, test_missing_key_is_named);
    tcase_add_test(tc, test_missing_layerscale_is_named);
    tcase_add_test(tc, test_feature_block_out_of_range);
    tcase_add_test(tc, test_preset_disagreeing_with_weights_is_refused);
    tcase_add_test(tc, test_rejects_bad_params);
    tcase_add_test(tc, test_forward_before_load_is_refused);
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
