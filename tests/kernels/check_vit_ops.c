/* tests/kernels/check_vit_ops.c - the ViT op family: layernorm, gelu (erf and
 * tanh), attention, patch_embed, concat_last.
 *
 * Expected values come from tests/fixtures/gen_vision.py (PyTorch, float64
 * maths on the same f32 inputs) or are worked by hand in the test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "cpu/parallel.h"

#define FIX "tests/fixtures/data/vision/"

static struct omni_weights *open_fixture(const char *name)
{
    struct omni_weights *w = NULL;
    struct omni_error err = {0};
    int rc = omni_weights_open(&w, tu_repo_path(name), &err);
    ck_assert_msg(rc == OMNI_OK, "open %s: %s", name, err.msg);
    return w;
}

/* Load fixture tensor `key` as f32 (any shape). */
static void load(struct omni_weights *w, const char *key, struct omni_tensor *t)
{
    struct omni_error err = {0};
    int rc = omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, t, &err);
    ck_assert_msg(rc == OMNI_OK, "load %s: %s", key, err.msg);
}

static float *fdata(const struct omni_tensor *t) { return omni_tensor_data(t); }

/* A view of columns [c0, c0 + n) of the last dim of t (transfer none). */
static struct omni_tensor cols_view(const struct omni_tensor *t, int64_t c0, int64_t n)
{
    struct omni_tensor v = *t;
    v.shape[v.ndim - 1] = n;
    v.offset += c0 * (int64_t)omni_dtype_size(t->dtype);
    return v;
}

/* ---------------------------------------------------------------- layernorm */

START_TEST(test_layernorm_matches_torch)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_fixture(FIX "ops.safetensors");
    struct omni_tensor x, g, b, ref, y, ref2;
    struct omni_error err = {0};
    load(w, "ln.x", &x);
    load(w, "ln.w", &g);
    load(w, "ln.b", &b);
    load(w, "ln.y", &ref);
    load(w, "ln.y_noaffine_eps1e-5", &ref2);
    ck_assert_int_eq(omni_tensor_alloc(&y, OMNI_DTYPE_F32, x.ndim, x.shape, OMNI_CPU, &err), 0);
    size_t n = (size_t)omni_tensor_numel(&x);

    ck_assert_int_eq(omni_op_layernorm(&y, &x, &g, &b, 1e-6f, &err), OMNI_OK);
    double e = tu_rel_err(fdata(&y), fdata(&ref), n);
    ck_assert_msg(e < 2e-6, "affine layernorm rel err %g", e);

    ck_assert_int_eq(omni_op_layernorm(&y, &x, NULL, NULL, 1e-5f, &err), OMNI_OK);
    e = tu_rel_err(fdata(&y), fdata(&ref2), n);
    ck_assert_msg(e < 2e-6, "plain layernorm rel err %g", e);

    /* in place: out aliases x */
    ck_assert_int_eq(omni_op_layernorm(&x, &x, &g, &b, 1e-6f, &err), OMNI_OK);
    e = tu_rel_err(fdata(&x), fdata(&ref), n);
    ck_assert_msg(e < 2e-6, "in-place layernorm rel err %g", e);

    omni_tensor_release(&x); omni_tensor_release(&g); omni_tensor_release(&b);
    omni_tensor_release(&ref); omni_tensor_release(&ref2); omni_tensor_release(&y);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_layernorm_hand_worked_row)
{
    /* x = (1, 2, 3, 4): mean 2.5, biased var 1.25 -> (x - 2.5) / sqrt(1.25) */
    struct omni_tensor x, y;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)4), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)4), 0);
    for (int i = 0; i < 4; i++)
        fdata(&x)[i] = (float)(i + 1);
    ck_assert_int_eq(omni_op_layernorm(&y, &x, NULL, NULL, 0.0f, &err), OMNI_OK);
    const double s = sqrt(1.25);
    const double want[4] = {-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(fabs(fdata(&y)[i] - want[i]) < 1e-6, "y[%d] = %g, want %g", i,
                      (double)fdata(&y)[i], want[i]);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
}
END_TEST

START_TEST(test_layernorm_rejects_wrong_weight_shape)
{
    struct omni_tensor x, y, g;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)8), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)8), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&g, OMNI_DTYPE_F32, 1, (int64_t)7), 0);
    ck_assert_int_eq(omni_op_layernorm(&y, &x, &g, NULL, 1e-6f, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "w") && strstr(err.msg, "[7]") && strstr(err.msg, "[8]"),
                  "message: %s", err.msg);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
    omni_tensor_release(&g);
}
END_TEST

/* ---------------------------------------------------------------- gelu */

static void check_gelu(const char *ref_key, int tanh_form)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_fixture(FIX "ops.safetensors");
    struct omni_tensor x, ref, y;
    struct omni_error err = {0};
    load(w, "gelu.x", &x);
    load(w, ref_key, &ref);
    ck_assert_int_eq(omni_tensor_alloc(&y, OMNI_DTYPE_F32, x.ndim, x.shape, OMNI_CPU, &err), 0);
    int rc = tanh_form ? omni_op_gelu_tanh(&y, &x, &err) : omni_op_gelu(&y, &x, &err);
    ck_assert_msg(rc == OMNI_OK, "%s", err.msg);
    const float *g = fdata(&y), *r = fdata(&ref);
    double worst = 0;
    for (int64_t i = 0; i < omni_tensor_numel(&x); i++) {
        /* two f32 ulps relative, plus an absolute floor far below 1e-7 */
        double d = fabs((double)g[i] - (double)r[i]);
        double tol = 2.4e-7 * fabs((double)r[i]) + 1e-12;
        ck_assert_msg(d <= tol, "%s: x=%.9g got %.9g want %.9g", ref_key, (double)fdata(&x)[i],
                      (double)g[i], (double)r[i]);
        if (d > worst)
            worst = d;
    }
    ck_assert(!tu_has_nan(g, (size_t)omni_tensor_numel(&x)));
    /* in place */
    rc = tanh_form ? omni_op_gelu_tanh(&x, &x, &err) : omni_op_gelu(&x, &x, &err);
    ck_assert_int_eq(rc, OMNI_OK);
    ck_assert_int_eq(memcmp(fdata(&x), fdata(&y), (size_t)omni_tensor_nbytes(&x)), 0);
    omni_tensor_release(&x); omni_tensor_release(&ref); omni_tensor_release(&y);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}

START_TEST(test_gelu_erf_matches_torch) { check_gelu("gelu.erf", 0); }
END_TEST

START_TEST(test_gelu_tanh_matches_torch) { check_gelu("gelu.tanh", 1); }
END_TEST

START_TEST(test_gelu_erf_matches_torch_f32_kernel)
{
    /* PyTorch's own f32 CPU kernel output: agreement to ~1e-7 absolute */
    struct omni_weights *w = open_fixture(FIX "ops.safetensors");
    struct omni_tensor x, ref;
    struct omni_error err = {0};
    load(w, "gelu.x", &x);
    load(w, "gelu.erf_torch_f32", &ref);
    ck_assert_int_eq(omni_op_gelu(&x, &x, &err), OMNI_OK);
    double d = tu_max_abs_diff(fdata(&x), fdata(&ref), (size_t)omni_tensor_numel(&x));
    ck_assert_msg(d < 1e-6 && tu_rel_err(fdata(&x), fdata(&ref), (size_t)omni_tensor_numel(&x)) < 1e-7,
                  "max abs diff to torch f32 gelu %g", d);
    omni_tensor_release(&x);
    omni_tensor_release(&ref);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_gelu_rejects_shape_mismatch)
{
    struct omni_tensor x, y;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 1, (int64_t)5), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 1, (int64_t)6), 0);
    ck_assert_int_eq(omni_op_gelu(&y, &x, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "omni_op_gelu"), "message: %s", err.msg);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
}
END_TEST

/* ---------------------------------------------------------------- attention */

static void check_attention(const char *name, int heads, float scale, const char *ref_suffix)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_fixture(FIX "ops.safetensors");
    struct omni_tensor qkv, ref, out;
    struct omni_error err = {0};
    char key[64];
    snprintf(key, sizeof key, "%s.qkv", name);
    load(w, key, &qkv);
    snprintf(key, sizeof key, "%s.%s", name, ref_suffix);
    load(w, key, &ref);
    const int64_t C = qkv.shape[2] / 3;
    struct omni_tensor q = cols_view(&qkv, 0, C), k = cols_view(&qkv, C, C),
                       v = cols_view(&qkv, 2 * C, C);
    ck_assert_int_eq(omni_tensor_alloc(&out, OMNI_DTYPE_F32, 3, q.shape, OMNI_CPU, &err), 0);
    int rc = omni_op_attention(&out, &q, &k, &v, heads, scale, &err);
    ck_assert_msg(rc == OMNI_OK, "%s", err.msg);
    size_t n = (size_t)omni_tensor_numel(&out);
    double e = tu_rel_err(fdata(&out), fdata(&ref), n);
    ck_assert_msg(e < 1e-5, "%s rel err %g", key, e);

    /* the same result with one thread and with the default pool */
    struct omni_tensor out1;
    ck_assert_int_eq(omni_tensor_alloc(&out1, OMNI_DTYPE_F32, 3, q.shape, OMNI_CPU, &err), 0);
    omni_parallel_set_threads(1);
    ck_assert_int_eq(omni_op_attention(&out1, &q, &k, &v, heads, scale, &err), OMNI_OK);
    omni_parallel_set_threads(0);
    ck_assert_int_eq(memcmp(fdata(&out1), fdata(&out), n * sizeof(float)), 0);
    /* the portable path (no AVX2 clone) computes the same bits */
    omni_cpu_set_simd(0);
    ck_assert_int_eq(omni_op_attention(&out1, &q, &k, &v, heads, scale, &err), OMNI_OK);
    omni_cpu_set_simd(1);
    ck_assert_int_eq(memcmp(fdata(&out1), fdata(&out), n * sizeof(float)), 0);

    omni_tensor_release(&out1);
    omni_tensor_release(&qkv); omni_tensor_release(&ref); omni_tensor_release(&out);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}

START_TEST(test_attention_two_heads_fused_qkv_views) { check_attention("attn_h2", 2, 0.0f, "out"); }
END_TEST

START_TEST(test_attention_one_head_p64) { check_attention("attn_h1", 1, 0.0f, "out"); }
END_TEST

START_TEST(test_attention_explicit_scale) { check_attention("attn_h2", 2, 0.3f, "out_scale0.3"); }
END_TEST

START_TEST(test_attention_explicit_scale_one_head) { check_attention("attn_h1", 1, 0.3f, "out_scale0.3"); }
END_TEST

/* Hand-worked: identical keys give uniform weights (out = mean of v); a huge
 * score on one key gives a one-hot softmax (out = that v row, no overflow).
 * S = 70 spans two key blocks; P = 1100 takes the unpacked path (P > 1024). */
static void uniform_and_one_hot(int64_t P)
{
    const int64_t S = 70;
    struct omni_tensor q, k, v, out;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&q, OMNI_DTYPE_F32, 3, (int64_t)1, S, P), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&k, OMNI_DTYPE_F32, 3, (int64_t)1, S, P), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&v, OMNI_DTYPE_F32, 3, (int64_t)1, S, P), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 3, (int64_t)1, S, P), 0);
    float *qd = fdata(&q), *kd = fdata(&k), *vd = fdata(&v), *od = fdata(&out);
    for (int64_t j = 0; j < S; j++)
        for (int64_t p = 0; p < P; p++) {
            qd[j * P + p] = ((float)(j % 5) - 2.0f) / (float)P;
            kd[j * P + p] = 0.5f;
            vd[j * P + p] = (float)(j * 3 + p % 7);
        }
    ck_assert_int_eq(omni_op_attention(&out, &q, &k, &v, 1, 0.0f, &err), OMNI_OK);
    for (int64_t i = 0; i < S; i++)
        for (int64_t p = 0; p < P; p++) {
            /* mean over j of 3j + p%7 = 3 (S-1)/2 + p%7 */
            const double want = 3.0 * (double)(S - 1) / 2.0 + (double)(p % 7);
            ck_assert_msg(fabs(od[i * P + p] - want) < 1e-5 * want,
                          "P=%lld uniform: out[%lld,%lld] = %.9g, want %g", (long long)P,
                          (long long)i, (long long)p, (double)od[i * P + p], want);
        }
    /* key 61 aligned with every query; every other score is lower by >= 2e4 */
    for (int64_t j = 0; j < S; j++)
        for (int64_t p = 0; p < P; p++) {
            qd[j * P + p] = 100.0f / (float)P;
            kd[j * P + p] = (j == 61) ? 100.0f : -100.0f;
        }
    ck_assert_int_eq(omni_op_attention(&out, &q, &k, &v, 1, 1.0f, &err), OMNI_OK);
    for (int64_t i = 0; i < S; i++)
        for (int64_t p = 0; p < P; p++)
            ck_assert_msg(od[i * P + p] == vd[61 * P + p], "P=%lld one-hot: out[%lld,%lld] = %g",
                          (long long)P, (long long)i, (long long)p, (double)od[i * P + p]);
    omni_tensor_release(&q); omni_tensor_release(&k); omni_tensor_release(&v);
    omni_tensor_release(&out);
}

START_TEST(test_attention_uniform_and_one_hot) { uniform_and_one_hot(3); }
END_TEST

START_TEST(test_attention_uniform_and_one_hot_wide_head) { uniform_and_one_hot(1100); }
END_TEST

START_TEST(test_attention_rejects_bad_arguments)
{
    struct omni_tensor qkv, out, out16, q, k, v;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&qkv, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)4, (int64_t)24), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)4, (int64_t)8), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&out16, OMNI_DTYPE_F16, 3, (int64_t)1, (int64_t)4, (int64_t)8), 0);
    q = cols_view(&qkv, 0, 8);
    k = cols_view(&qkv, 8, 8);
    v = cols_view(&qkv, 16, 8);
    ck_assert_int_eq(omni_op_attention(&out, &q, &k, &v, 3, 0.0f, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "3 heads"), "message: %s", err.msg);
    ck_assert_int_eq(omni_op_attention(&out16, &q, &k, &v, 2, 0.0f, &err), OMNI_EDTYPE);
    /* a contiguous out inside the qkv buffer overlaps q, k and v */
    struct omni_tensor alias;
    ck_assert_int_eq(omni_tensor_view(&alias, qkv.buf, 64, OMNI_DTYPE_F32, 3, out.shape, &err), 0);
    ck_assert_int_eq(omni_op_attention(&alias, &q, &k, &v, 2, 0.0f, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "overlap"), "message: %s", err.msg);
    omni_tensor_release(&alias);
    /* k one row short */
    struct omni_tensor ks = k;
    ks.shape[1] = 3;
    ck_assert_int_eq(omni_op_attention(&out, &q, &ks, &v, 2, 0.0f, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "k") && strstr(err.msg, "[1,3,8]"), "message: %s", err.msg);
    /* last dim not contiguous */
    struct omni_tensor qs = q;
    qs.strides[2] = 2;
    qs.shape[2] = 8;
    ck_assert_int_eq(omni_op_attention(&out, &qs, &k, &v, 2, 0.0f, &err), OMNI_EINVAL);
    omni_tensor_release(&qkv);
    omni_tensor_release(&out);
    omni_tensor_release(&out16);
}
END_TEST

/* ---------------------------------------------------------------- patch embed */

START_TEST(test_patch_embed_matches_torch_conv)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_fixture(FIX "ops.safetensors");
    struct omni_tensor x, k, b, ref, out, k16;
    struct omni_error err = {0};
    load(w, "patch.x", &x);
    load(w, "patch.w", &k);
    load(w, "patch.b", &b);
    load(w, "patch.out", &ref);
    ck_assert_int_eq(omni_tensor_alloc(&out, OMNI_DTYPE_F32, 3, ref.shape, OMNI_CPU, &err), 0);
    int rc = omni_op_patch_embed(&out, &x, &k, &b, &err);
    ck_assert_msg(rc == OMNI_OK, "%s", err.msg);
    size_t n = (size_t)omni_tensor_numel(&ref);
    double e = tu_rel_err(fdata(&out), fdata(&ref), n);
    ck_assert_msg(e < 1e-5, "patch embed rel err %g", e);
    /* f16 weights: same up to the f16 rounding of w */
    ck_assert_int_eq(omni_weights_load(w, NULL, "patch.w", OMNI_DTYPE_F16, 0, NULL, &k16, &err), 0);
    ck_assert_int_eq(omni_op_patch_embed(&out, &x, &k16, &b, &err), OMNI_OK);
    e = tu_rel_err(fdata(&out), fdata(&ref), n);
    ck_assert_msg(e < 3e-3, "patch embed (f16 w) rel err %g", e);
    omni_tensor_release(&x); omni_tensor_release(&k); omni_tensor_release(&b);
    omni_tensor_release(&ref); omni_tensor_release(&out); omni_tensor_release(&k16);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_patch_embed_rejects_wrong_shapes)
{
    struct omni_tensor x, k, out;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)3, (int64_t)8, (int64_t)8), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&k, OMNI_DTYPE_F32, 4, (int64_t)4, (int64_t)2, (int64_t)4, (int64_t)4), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)4, (int64_t)4), 0);
    ck_assert_int_eq(omni_op_patch_embed(&out, &x, &k, NULL, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[4,2,4,4]") && strstr(err.msg, "[1,3,8,8]"), "message: %s", err.msg);
    omni_tensor_release(&k);
    ck_assert_int_eq(omni_tensor_alloc_host(&k, OMNI_DTYPE_F32, 4, (int64_t)4, (int64_t)3, (int64_t)4, (int64_t)4), 0);
    ck_assert_int_eq(omni_op_patch_embed(&out, &x, &k, NULL, &err), OMNI_OK);
    omni_tensor_release(&out);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)5, (int64_t)4), 0);
    ck_assert_int_eq(omni_op_patch_embed(&out, &x, &k, NULL, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "out") && strstr(err.msg, "[1,4,4]"), "message: %s", err.msg);
    omni_tensor_release(&x); omni_tensor_release(&k); omni_tensor_release(&out);
}
END_TEST

/* ---------------------------------------------------------------- concat */

START_TEST(test_concat_last_two_inputs_into_strided_out)
{
    /* a: (2,3,2) = 10*r + c, b: (2,3,1) = -r; out is a view of width 3 inside rows of 5 */
    struct omni_tensor a, b, big;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&a, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, (int64_t)2), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&b, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, (int64_t)1), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&big, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)3, (int64_t)5), 0);
    for (int r = 0; r < 6; r++) {
        fdata(&a)[r * 2] = (float)(10 * r);
        fdata(&a)[r * 2 + 1] = (float)(10 * r + 1);
        fdata(&b)[r] = (float)-r;
    }
    for (int i = 0; i < 30; i++)
        fdata(&big)[i] = 99.0f;
    struct omni_tensor out = cols_view(&big, 1, 3);
    struct omni_tensor xs[2] = {a, b};
    ck_assert_int_eq(omni_op_concat_last(&out, xs, 2, &err), OMNI_OK);
    for (int r = 0; r < 6; r++) {
        const float *row = fdata(&big) + r * 5;
        ck_assert(row[0] == 99.0f && row[4] == 99.0f);
        ck_assert(row[1] == (float)(10 * r) && row[2] == (float)(10 * r + 1) && row[3] == (float)-r);
    }
    /* wrong total width */
    struct omni_tensor out4 = cols_view(&big, 0, 4);
    ck_assert_int_eq(omni_op_concat_last(&out4, xs, 2, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "must be 3"), "message: %s", err.msg);
    /* leading dims differ */
    xs[1].shape[1] = 2;
    ck_assert_int_eq(omni_op_concat_last(&out, xs, 2, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "xs[1]"), "message: %s", err.msg);
    omni_tensor_release(&a); omni_tensor_release(&b); omni_tensor_release(&big);
}
END_TEST

/* ---------------------------------------------------------------- resize */

static void check_resize(const char *name)
{
    struct omni_weights *w = open_fixture(FIX "ops.safetensors");
    struct omni_tensor x, ref, out;
    struct omni_error err = {0};
    char key[64];
    snprintf(key, sizeof key, "%s.x", name);
    load(w, key, &x);
    snprintf(key, sizeof key, "%s.out", name);
    load(w, key, &ref);
    ck_assert_int_eq(omni_tensor_alloc(&out, OMNI_DTYPE_F32, 4, ref.shape, OMNI_CPU, &err), 0);
    int rc = omni_op_resize_bicubic_aa(&out, &x, &err);
    ck_assert_msg(rc == OMNI_OK, "%s", err.msg);
    double d = tu_max_abs_diff(fdata(&out), fdata(&ref), (size_t)omni_tensor_numel(&ref));
    ck_assert_msg(d < 1e-5, "%s: max abs diff to torch %g", name, d);
    omni_tensor_release(&x); omni_tensor_release(&ref); omni_tensor_release(&out);
    omni_weights_close(w);
}

START_TEST(test_resize_bicubic_aa_6_to_4_matches_torch) { check_resize("rs_6to4"); }
END_TEST

START_TEST(test_resize_bicubic_aa_37_to_27_matches_torch) { check_resize("rs_37to27"); }
END_TEST

START_TEST(test_resize_bicubic_aa_up_and_down_matches_torch) { check_resize("rs_mixed"); }
END_TEST

START_TEST(test_resize_bicubic_aa_width_only_matches_torch) { check_resize("rs_width"); }
END_TEST

START_TEST(test_resize_bicubic_aa_keeps_constants)
{
    /* normalised weights: a constant plane stays constant (to rounding) */
    struct omni_tensor x, out;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)1, (int64_t)37, (int64_t)37), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&out, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)1, (int64_t)27, (int64_t)27), 0);
    for (int i = 0; i < 37 * 37; i++)
        fdata(&x)[i] = 3.25f;
    ck_assert_int_eq(omni_op_resize_bicubic_aa(&out, &x, &err), OMNI_OK);
    for (int i = 0; i < 27 * 27; i++)
        ck_assert_msg(fabsf(fdata(&out)[i] - 3.25f) < 3e-6f, "out[%d] = %.9g", i, (double)fdata(&out)[i]);
    omni_tensor_release(&x);
    omni_tensor_release(&out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vit_ops");
    TCase *tc = tcase_create("layernorm");
    tcase_add_test(tc, test_layernorm_matches_torch);
    tcase_add_test(tc, test_layernorm_hand_worked_row);
    tcase_add_test(tc, test_layernorm_rejects_wrong_weight_shape);
    suite_add_tcase(s, tc);
    tc = tcase_create("gelu");
    tcase_add_test(tc, test_gelu_erf_matches_torch);
    tcase_add_test(tc, test_gelu_tanh_matches_torch);
    tcase_add_test(tc, test_gelu_erf_matches_torch_f32_kernel);
    tcase_add_test(tc, test_gelu_rejects_shape_mismatch);
    suite_add_tcase(s, tc);
    tc = tcase_create("attention");
    tcase_add_test(tc, test_attention_two_heads_fused_qkv_views);
    tcase_add_test(tc, test_attention_one_head_p64);
    tcase_add_test(tc, test_attention_explicit_scale);
    tcase_add_test(tc, test_attention_explicit_scale_one_head);
    tcase_add_test(tc, test_attention_uniform_and_one_hot);
    tcase_add_test(tc, test_attention_uniform_and_one_hot_wide_head);
    tcase_add_test(tc, test_attention_rejects_bad_arguments);
    suite_add_tcase(s, tc);
    tc = tcase_create("vit_helpers");
    tcase_add_test(tc, test_patch_embed_matches_torch_conv);
    tcase_add_test(tc, test_patch_embed_rejects_wrong_shapes);
    tcase_add_test(tc, test_concat_last_two_inputs_into_strided_out);
    tcase_add_test(tc, test_resize_bicubic_aa_6_to_4_matches_torch);
    tcase_add_test(tc, test_resize_bicubic_aa_37_to_27_matches_torch);
    tcase_add_test(tc, test_resize_bicubic_aa_up_and_down_matches_torch);
    tcase_add_test(tc, test_resize_bicubic_aa_width_only_matches_torch);
    tcase_add_test(tc, test_resize_bicubic_aa_keeps_constants);
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
