/* tests/plugins/check_lora.c - the lora adapter stage on hand-worked values:
 * y += scale * (x·Aᵀ)·Bᵀ per layer, scale = alpha / rank or the scale param,
 * key patterns, layer counting, and its errors. (Its use inside mamba2 is
 * checked against the PyTorch fixture in check_mamba2.c.) */
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

/* Layer 0: A0 (2x3), B0 (4x2); layer 1: A1 = 2*A0, B1 = B0. */
static const float A0[6] = {1, 0, 2, 0, 1, -1};
static const float B0[8] = {1, 0, 0, 1, 1, 1, 2, -1};
static const float X[6] = {1, 2, 3, -1, 0, 1}; /* (2, 3) */
/* (X·A0ᵀ)·B0ᵀ worked by hand: X·A0ᵀ = [[7,-1],[1,-1]] -> [[7,-1,6,15],[1,-1,0,3]] */
static const float TERM0[8] = {7, -1, 6, 15, 1, -1, 0, 3};

static void tensor(struct omni_tensor *t, int64_t r, int64_t c, const float *v, float mul)
{
    OK(omni_tensor_alloc_host(t, OMNI_DTYPE_F32, 2, r, c));
    float *p = omni_tensor_data(t);
    for (int64_t i = 0; i < r * c; i++)
        p[i] = v[i] * mul;
}

/* Writes an adapter file with the given key pattern ("%d" = layer). */
static const char *write_lora(const char *name, const char *fmt_a, const char *fmt_b, int layers)
{
    static char path[512];
    char keys[8][96];
    const char *names[8];
    struct omni_tensor ts[8];
    int n = 0;
    for (int l = 0; l < layers; l++) {
        snprintf(keys[n], sizeof keys[n], fmt_a, l);
        names[n] = keys[n];
        tensor(&ts[n++], 2, 3, A0, (float)(l + 1));
        snprintf(keys[n], sizeof keys[n], fmt_b, l);
        names[n] = keys[n];
        tensor(&ts[n++], 4, 2, B0, 1.0f);
    }
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
    OK(omni_safetensors_write(path, (size_t)n, names, ts, &err));
    for (int i = 0; i < n; i++)
        omni_tensor_release(&ts[i]);
    return path;
}

static int apply(struct omni_harness *h, int layer, const struct omni_tensor *x,
                 struct omni_tensor *y)
{
    struct omni_stage *s = omni_harness_stage(h);
    ck_assert_ptr_nonnull(s->plugin->adapter);
    omni_error_clear(&err);
    return s->plugin->adapter->apply(s, "in_proj", layer, x, y, &err);
}

START_TEST(test_apply_adds_scaled_low_rank_term)
{
    long live = omni_buffer_live_count();
    const char *path = write_lora("a.safetensors", "m.layers.%d.mixer.in_proj.mmu_lora_A0.weight",
                                  "m.layers.%d.mixer.in_proj.mmu_lora_B0.weight", 2);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "lora", "task: mmu\nalpha: 6", &err)); /* rank 2 -> scale 3 */
    OK(omni_harness_load_weights(h, path, "m.", &err));
    struct omni_stage *s = omni_harness_stage(h);
    ck_assert_str_eq(s->plugin->adapter->task(s), "mmu");
    struct omni_tensor x, y;
    static const float y0[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    tensor(&x, 2, 3, X, 1.0f);
    for (int layer = 0; layer < 2; layer++) {
        tensor(&y, 2, 4, y0, 1.0f);
        OK(apply(h, layer, &x, &y));
        const float *p = omni_tensor_data(&y);
        for (int i = 0; i < 8; i++) {
            float want = y0[i] + 3.0f * (float)(layer + 1) * TERM0[i];
            ck_assert_msg(p[i] == want, "layer %d y[%d] = %g, want %g", layer, i, p[i], want);
        }
        omni_tensor_release(&y);
    }
    omni_tensor_release(&x);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Explicit scale, custom key patterns, rows growing between calls, a 3-d x. */
START_TEST(test_scale_param_and_key_patterns)
{
    long live = omni_buffer_live_count();
    const char *path = write_lora("b.safetensors", "t2i.%d.down", "t2i.%d.up", 1);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "lora", "task: t2i\nscale: 0.5\nkey_a: '{task}.{i}.down'\nkey_b: '{task}.{i}.up'",
                        &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    struct omni_tensor x, y;
    tensor(&x, 1, 3, X, 1.0f);
    static const float z[12] = {0};
    tensor(&y, 1, 4, z, 1.0f);
    OK(apply(h, 0, &x, &y));
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(((float *)omni_tensor_data(&y))[i], 0.5f * TERM0[i]);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
    /* more rows than before, as (B, T, K) */
    float x3[9] = {1, 2, 3, -1, 0, 1, 1, 2, 3};
    const int64_t sx[3] = {1, 3, 3}, sy[3] = {1, 3, 4};
    OK(omni_tensor_alloc(&x, OMNI_DTYPE_F32, 3, sx, OMNI_CPU, &err));
    memcpy(omni_tensor_data(&x), x3, sizeof x3);
    OK(omni_tensor_alloc(&y, OMNI_DTYPE_F32, 3, sy, OMNI_CPU, &err));
    OK(apply(h, 0, &x, &y));
    const float *p = omni_tensor_data(&y);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++)
            ck_assert_float_eq(p[r * 4 + i], 0.5f * TERM0[(r % 2) * 4 + i]);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_forward_is_unsupported)
{
    long live = omni_buffer_live_count();
    const char *path = write_lora("c.safetensors", "layers.%d.mixer.in_proj.mmu_lora_A0.weight",
                                  "layers.%d.mixer.in_proj.mmu_lora_B0.weight", 1);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "lora", "task: mmu", &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    int rc = omni_harness_forward(h, &err);
    ck_assert_int_eq(rc, OMNI_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "adapter") && strstr(err.msg, "attach"), "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_missing_factors_and_bad_layer)
{
    long live = omni_buffer_live_count();
    const char *path = write_lora("d.safetensors", "layers.%d.mixer.in_proj.mmu_lora_A0.weight",
                                  "layers.%d.mixer.in_proj.mmu_lora_B0.weight", 1);
    struct omni_harness *h;
    /* task t2i: no such keys in the file */
    OK(omni_harness_new(&h, "lora", "task: t2i", &err));
    int rc = omni_harness_load_weights(h, path, "", &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "layers.0.mixer.in_proj.t2i_lora_A0.weight"), "%s", err.msg);
    omni_harness_free(h);
    /* n_layer given larger than the file holds: the missing key is named */
    OK(omni_harness_new(&h, "lora", "task: mmu\nn_layer: 2", &err));
    rc = omni_harness_load_weights(h, path, "", &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "layers.1.mixer.in_proj.mmu_lora_A0.weight"), "%s", err.msg);
    omni_harness_free(h);
    /* a layer the adapter does not have, and x of the wrong width */
    OK(omni_harness_new(&h, "lora", "task: mmu", &err));
    OK(omni_harness_load_weights(h, path, "", &err));
    struct omni_tensor x, y;
    tensor(&x, 2, 3, X, 1.0f);
    static const float z[8] = {0};
    tensor(&y, 2, 4, z, 1.0f);
    ck_assert_int_eq(apply(h, 1, &x, &y), OMNI_ERANGE);
    ck_assert_msg(strstr(err.msg, "layer 1"), "%s", err.msg);
    omni_tensor_release(&y);
    tensor(&y, 2, 3, z, 1.0f);
    ck_assert_int_eq(apply(h, 0, &x, &y), OMNI_ESHAPE);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_missing_task)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = NULL;
    ck_assert_int_eq(omni_harness_new(&h, "lora", "alpha: 8", &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "task"), "%s", err.msg);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lora");
    TCase *tc = tcase_create("lora");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_apply_adds_scaled_low_rank_term);
    tcase_add_test(tc, test_scale_param_and_key_patterns);
    tcase_add_test(tc, test_forward_is_unsupported);
    tcase_add_test(tc, test_rejects_missing_factors_and_bad_layer);
    tcase_add_test(tc, test_rejects_missing_task);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
