/* tests/kernels/check_vit_fused.c - the ViT block's fused ops on the CPU
 * against the unfused ops they replace: omni_op_attention_ex (biases on load,
 * 16-bit precision, 16-bit out), omni_op_layernorm_ex, omni_op_bias_gelu and
 * omni_op_matmul16. Exact (bitwise) where the fused op is defined as the same
 * f32 arithmetic; the 16-bit attention against the f32 one within the 16-bit
 * tolerance, and visibly rounded (not the f32 result). Random inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"

static struct tu_rng R;
#define SH(...) ((const int64_t[]){__VA_ARGS__})

static float *fd(const struct omni_tensor *t) { return omni_tensor_data(t); }

static void rnd(struct omni_tensor *t, int ndim, const int64_t *shape, float scale)
{
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc(t, OMNI_DTYPE_F32, ndim, shape, OMNI_CPU, &err), OMNI_OK);
    tu_fill_normal(&R, fd(t), (size_t)omni_tensor_numel(t), scale);
}

static void alloc(struct omni_tensor *t, int dtype, int ndim, const int64_t *shape)
{
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc(t, dtype, ndim, shape, OMNI_CPU, &err), OMNI_OK);
}

static struct omni_tensor lastcols(const struct omni_tensor *t, int64_t c0, int64_t n)
{
    struct omni_tensor v = *t;
    v.shape[v.ndim - 1] = n;
    v.offset += c0 * (int64_t)omni_dtype_size(t->dtype);
    return v;
}

/* the f32 values of a 16-bit tensor == the f32 tensor rounded, bit for bit */
static void assert_rounded(const struct omni_tensor *h, const struct omni_tensor *f, const char *what)
{
    const size_t n = (size_t)omni_tensor_numel(f);
    const uint16_t *hp = omni_tensor_data(h);
    for (size_t i = 0; i < n; i++) {
        const uint16_t want = h->dtype == OMNI_DTYPE_BF16 ? omni_f32_to_bf16(fd(f)[i]) : omni_f32_to_f16(fd(f)[i]);
        ck_assert_msg(hp[i] == want, "%s: element %zu is 0x%04x, the rounded f32 is 0x%04x", what, i, hp[i], want);
    }
}

START_TEST(test_attention_ex_biases_precision_and_out)
{
    tu_rng_seed(&R, 0x5eed0001u + (uint64_t)_i);
    struct omni_error err = {0};
    const int64_t B = 2, S = 150, H = 2, P = 72, D = H * P;
    struct omni_tensor qkv, bias, qkvb, o_ref, o, o16;
    rnd(&qkv, 3, SH(B, S, 3 * D), 1.5f);
    rnd(&bias, 1, SH(3 * D), 0.5f);
    alloc(&qkvb, OMNI_DTYPE_F32, 3, SH(B, S, 3 * D));
    for (int64_t r = 0; r < B * S; r++)
        for (int64_t c = 0; c < 3 * D; c++)
            fd(&qkvb)[r * 3 * D + c] = fd(&qkv)[r * 3 * D + c] + fd(&bias)[c];
    alloc(&o_ref, OMNI_DTYPE_F32, 3, SH(B, S, D));
    alloc(&o, OMNI_DTYPE_F32, 3, SH(B, S, D));
    struct omni_tensor q = lastcols(&qkv, 0, D), k = lastcols(&qkv, D, D), v = lastcols(&qkv, 2 * D, D);
    struct omni_tensor qb = lastcols(&qkvb, 0, D), kb = lastcols(&qkvb, D, D), vb = lastcols(&qkvb, 2 * D, D);
    struct omni_tensor b0 = bias, b1 = bias, b2 = bias;
    b0.shape[0] = b1.shape[0] = b2.shape[0] = D;
    b1.offset += D * 4, b2.offset += 2 * D * 4;
    /* biases on load == attention over the biased copy, bit for bit */
    ck_assert_int_eq(omni_op_attention(&o_ref, &qb, &kb, &vb, (int)H, 0.0f, &err), OMNI_OK);
    struct omni_attention_opts opt = {&b0, &b1, &b2, OMNI_DTYPE_F32};
    ck_assert_int_eq(omni_op_attention_ex(&o, &q, &k, &v, (int)H, 0.0f, &opt, &err), OMNI_OK);
    ck_assert_int_eq(memcmp(fd(&o), fd(&o_ref), (size_t)(B * S * D) * 4), 0);
    /* 16-bit precision: near the f32 result, but rounded; a 16-bit out is the f32 out rounded */
    static const int dts[2] = {OMNI_DTYPE_BF16, OMNI_DTYPE_F16};
    for (int d = 0; d < 2; d++) {
        opt.precision = dts[d];
        ck_assert_int_eq(omni_op_attention_ex(&o, &q, &k, &v, (int)H, 0.0f, &opt, &err), OMNI_OK);
        const double e = tu_rel_err(fd(&o), fd(&o_ref), (size_t)(B * S * D));
        printf("attention_ex %s precision vs f32: rel err %.3g\n", omni_dtype_name(dts[d]), e);
        ck_assert_msg(e < 2e-2 && e > 1e-5, "%s precision: rel err %g vs f32", omni_dtype_name(dts[d]), e);
        alloc(&o16, dts[d], 3, SH(B, S, D));
        ck_assert_int_eq(omni_op_attention_ex(&o16, &q, &k, &v, (int)H, 0.0f, &opt, &err), OMNI_OK);
        assert_rounded(&o16, &o, "attention_ex 16-bit out");
        omni_tensor_release(&o16);
    }
    /* bad precision and a bias of the wrong width are refused */
    opt.precision = 7;
    ck_assert_int_eq(omni_op_attention_ex(&o, &q, &k, &v, (int)H, 0.0f, &opt, &err), OMNI_EINVAL);
    opt.precision = 0;
    opt.k_bias = &bias;
    ck_assert_int_eq(omni_op_attention_ex(&o, &q, &k, &v, (int)H, 0.0f, &opt, &err), OMNI_ESHAPE);
    omni_tensor_release(&qkv), omni_tensor_release(&bias), omni_tensor_release(&qkvb);
    omni_tensor_release(&o_ref), omni_tensor_release(&o);
}
END_TEST

START_TEST(test_layernorm_ex_and_bias_gelu_equal_the_unfused_ops)
{
    tu_rng_seed(&R, 0x5eed0002u);
    struct omni_error err = {0};
    const int64_t M = 37, D = 200;
    struct omni_tensor x, x2, w, b, add, ref, out, o16;
    rnd(&x, 2, SH(M, D), 2.0f);
    rnd(&w, 1, SH(D), 1.0f);
    rnd(&b, 1, SH(D), 1.0f);
    rnd(&add, 1, SH(D), 1.0f);
    alloc(&x2, OMNI_DTYPE_F32, 2, SH(M, D));
    memcpy(fd(&x2), fd(&x), (size_t)(M * D) * 4);
    alloc(&ref, OMNI_DTYPE_F32, 2, SH(M, D));
    alloc(&out, OMNI_DTYPE_F32, 2, SH(M, D));
    ck_assert_int_eq(omni_op_layernorm(&ref, &x, &w, &b, 1e-6f, &err), OMNI_OK);
    for (int d = 0; d < 2; d++) {
        const int dt = d ? OMNI_DTYPE_F16 : OMNI_DTYPE_BF16;
        alloc(&o16, dt, 2, SH(M, D));
        ck_assert_int_eq(omni_op_layernorm_ex(&o16, &x2, &w, &b, 1e-6f, NULL, &err), OMNI_OK);
        assert_rounded(&o16, &ref, "layernorm_ex 16-bit out");
        omni_tensor_release(&o16);
    }
    ck_assert_int_eq(omni_op_layernorm_ex(&out, &x2, &w, &b, 1e-6f, &add, &err), OMNI_OK);
    ck_assert_int_eq(memcmp(fd(&out), fd(&ref), (size_t)(M * D) * 4), 0);
    ck_assert_int_eq(omni_op_add_row(&x, &add, &err), OMNI_OK);
    ck_assert_int_eq(memcmp(fd(&x2), fd(&x), (size_t)(M * D) * 4), 0);
    ck_assert_int_eq(omni_op_layernorm_ex(&x2, &x2, &w, &b, 1e-6f, &add, &err), OMNI_EINVAL);

    /* bias_gelu == add_row then gelu; 16-bit == rounded */
    memcpy(fd(&x2), fd(&x), (size_t)(M * D) * 4);
    ck_assert_int_eq(omni_op_bias_gelu(&out, &x, &b, &err), OMNI_OK);
    ck_assert_int_eq(omni_op_add_row(&x2, &b, &err), OMNI_OK);
    ck_assert_int_eq(omni_op_gelu(&ref, &x2, &err), OMNI_OK);
    ck_assert_int_eq(memcmp(fd(&out), fd(&ref), (size_t)(M * D) * 4), 0);
    alloc(&o16, OMNI_DTYPE_BF16, 2, SH(M, D));
    ck_assert_int_eq(omni_op_bias_gelu(&o16, &x, &b, &err), OMNI_OK);
    assert_rounded(&o16, &ref, "bias_gelu bf16");
    omni_tensor_release(&o16);
    omni_tensor_release(&x), omni_tensor_release(&x2), omni_tensor_release(&w);
    omni_tensor_release(&b), omni_tensor_release(&add), omni_tensor_release(&ref), omni_tensor_release(&out);
}
END_TEST

START_TEST(test_matmul16_equals_matmul_on_the_widened_input)
{
    tu_rng_seed(&R, 0x5eed0003u);
    struct omni_error err = {0};
    const int64_t M = 19, N = 24, K = 40;
    static const int dts[2] = {OMNI_DTYPE_BF16, OMNI_DTYPE_F16};
    for (int d = 0; d < 2; d++) {
        struct omni_tensor xf, x16, xw, wf, w16, y, yref;
        rnd(&xf, 2, SH(M, K), 1.0f);
        rnd(&wf, 2, SH(N, K), 0.2f);
        rnd(&y, 2, SH(M, N), 1.0f);
        alloc(&yref, OMNI_DTYPE_F32, 2, SH(M, N));
        memcpy(fd(&yref), fd(&y), (size_t)(M * N) * 4);
        alloc(&x16, dts[d], 2, SH(M, K));
        alloc(&w16, dts[d], 2, SH(N, K));
        alloc(&xw, OMNI_DTYPE_F32, 2, SH(M, K));
        ck_assert_int_eq(omni_op_copy(&x16, &xf, &err), OMNI_OK);
        ck_assert_int_eq(omni_op_copy(&w16, &wf, &err), OMNI_OK);
        ck_assert_int_eq(omni_op_copy(&xw, &x16, &err), OMNI_OK);
        ck_assert_int_eq(omni_op_matmul(&yref, &xw, &w16, NULL, 1.0f, 1.0f, &err), OMNI_OK);
        ck_assert_int_eq(omni_op_matmul16(&y, &x16, &w16, 1.0f, &err), OMNI_OK);
        ck_assert_int_eq(memcmp(fd(&y), fd(&yref), (size_t)(M * N) * 4), 0);
        ck_assert_int_eq(omni_op_matmul16(&y, &xw, &w16, 1.0f, &err), OMNI_EDTYPE);
        omni_tensor_release(&xf), omni_tensor_release(&x16), omni_tensor_release(&xw);
        omni_tensor_release(&wf), omni_tensor_release(&w16), omni_tensor_release(&y), omni_tensor_release(&yref);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vit_fused");
    TCase *tc = tcase_create("fused");
    tcase_add_loop_test(tc, test_attention_ex_biases_precision_and_out, 0, 3);
    tcase_add_test(tc, test_layernorm_ex_and_bias_gelu_equal_the_unfused_ops);
    tcase_add_test(tc, test_matmul16_equals_matmul_on_the_widened_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
