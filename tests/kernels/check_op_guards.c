/* tests/kernels/check_op_guards.c - argument guards that the op wrappers add
 * in front of the fast CUDA kernels (the static review of their
 * preconditions), checked on the CPU:
 * - aliasing the CUDA kernels cannot take (their blocks write outputs while
 *   other blocks still read the inputs) is refused with OMNI_EINVAL on every
 *   device (decode_norm with a LoRA factor, decode_gemv, layernorm_ex,
 *   matmul16);
 * - alignment a CUDA kernel relies on (float4 coefficient loads of
 *   conv2d_fused, the L2 bulk prefetch of decode_mix's state), and attention
 *   heads wider than 256 with biases (the cuBLAS path takes none), are
 *   refused for CUDA tensors only: the tensors here are host memory labelled as CUDA, and
 *   the op must refuse them before it touches a device (without the check it
 *   would try to start one and fail with another status);
 * - conv2d_fused with up2 judged "out overlaps x" from the upsampled extent
 *   (4x x's bytes): an out placed right after x in the same buffer was refused;
 * - matmul16 with K = 0 returned OK without writing y;
 * - 16-bit attention precision for heads wider than 128: CUDA computed in f32
 *   while the CPU twin rounded; now f32 on both.
 * Inputs are random (never zeros); outputs start as NaN bytes (kt_tensor). */
#include <stdint.h>
#include <stdlib.h>

#include "ktest.h"
#include "omni/ops/decode.h"

static struct tu_rng R;

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define OK(x) ck_assert_int_eq((x), OMNI_OK)

static const struct omni_device CUDA0 = {OMNI_DEVICE_CUDA, 0};

static float *fd(const struct omni_tensor *t) { return omni_tensor_data(t); }

/* random f32 tensor */
static void rnd(struct omni_tensor *t, int ndim, const int64_t *shape)
{
    kt_tensor(t, OMNI_DTYPE_F32, ndim, shape);
    tu_fill_normal(&R, fd(t), (size_t)omni_tensor_numel(t), 1.0f);
}

/* contiguous view of b's buffer at byte offset off */
static struct omni_tensor at(const struct omni_tensor *b, int64_t off, int dtype, int ndim,
                             const int64_t *shape)
{
    struct omni_tensor v;
    struct omni_error e = {0};
    OK(omni_tensor_view(&v, b->buf, off, dtype, ndim, shape, &e));
    omni_buffer_unref(v.buf); /* b keeps the buffer alive; v is a borrowed descriptor */
    return v;
}

/* a byte offset >= 4 into b's buffer at which the data is not 16-byte aligned */
static int64_t misaligned_off(const struct omni_tensor *b)
{
    int64_t off = 4;
    while ((((uintptr_t)omni_buffer_data(b->buf) + (uintptr_t)off) & 15) == 0)
        off += 4;
    return off;
}

START_TEST(test_conv2d_fused_up2_out_after_x_in_one_buffer)
{
    /* x (1, 2, 3, 3) seen as (1, 2, 6, 6); out (1, 3, 6, 6) placed right after x */
    const int64_t nx = 18, no = 108;
    struct omni_tensor all, w, b, xs, os, err_view;
    struct omni_error err = {0};
    kt_tensorv(&all, OMNI_DTYPE_F32, 1, nx + no);
    tu_fill_normal(&R, fd(&all), (size_t)nx, 1.0f);
    rnd(&w, 4, SH(3, 2, 3, 3));
    rnd(&b, 1, SH(3));
    struct omni_tensor x = at(&all, 0, OMNI_DTYPE_F32, 4, SH(1, 2, 3, 3));
    struct omni_tensor out = at(&all, nx * 4, OMNI_DTYPE_F32, 4, SH(1, 3, 6, 6));
    OK(omni_op_conv2d_fused(&out, &x, &w, &b, 1, NULL, 0, 1, NULL, &err));
    /* the same call on separate tensors */
    kt_tensorv(&xs, OMNI_DTYPE_F32, 4, 1, 2, 3, 3);
    memcpy(fd(&xs), fd(&x), (size_t)nx * 4);
    kt_tensorv(&os, OMNI_DTYPE_F32, 4, 1, 3, 6, 6);
    OK(omni_op_conv2d_fused(&os, &xs, &w, &b, 1, NULL, 0, 1, NULL, &err));
    for (int64_t i = 0; i < no; i++)
        ck_assert_msg(!isnan(fd(&os)[i]) && fd(&os)[i] == fd(&out)[i], "out[%lld]", (long long)i);
    ck_assert_int_eq(memcmp(fd(&xs), fd(&x), (size_t)nx * 4), 0); /* x untouched */
    /* an out that really overlaps x is still refused */
    err_view = at(&all, 8 * 4, OMNI_DTYPE_F32, 4, SH(1, 3, 6, 6));
    int rc = omni_op_conv2d_fused(&err_view, &x, &w, &b, 1, NULL, 0, 1, NULL, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_conv2d_fused", "out overlaps x");
    kt_release(&os), kt_release(&xs), kt_release(&b), kt_release(&w), kt_release(&all);
}
END_TEST

START_TEST(test_conv2d_fused_refuses_misaligned_coef_on_cuda)
{
    struct omni_tensor x, w, b, out, cbuf;
    struct omni_error err = {0};
    rnd(&x, 4, SH(1, 2, 3, 3));
    rnd(&w, 4, SH(2, 2, 3, 3));
    rnd(&b, 1, SH(2));
    kt_tensorv(&out, OMNI_DTYPE_F32, 4, 1, 2, 3, 3);
    rnd(&cbuf, 1, SH(16));
    for (int i = 0; i < 4; i++) /* a positive variance scale */
        fd(&cbuf)[4 * i + 2] = 0.5f + 0.1f * (float)i;
    const int64_t off = misaligned_off(&cbuf);
    struct omni_tensor coef = at(&cbuf, off, OMNI_DTYPE_F32, 3, SH(1, 2, 4));
    /* on the CPU the misaligned coef is fine */
    OK(omni_op_conv2d_fused(&out, &x, &w, &b, 1, &coef, 1, 0, NULL, &err));
    for (int i = 0; i < 18; i++)
        ck_assert(!isnan(fd(&out)[i]));
    struct omni_tensor xc = x, wc = w, bc = b, oc = out, cc = coef;
    xc.device = wc.device = bc.device = oc.device = cc.device = CUDA0;
    int rc = omni_op_conv2d_fused(&oc, &xc, &wc, &bc, 1, &cc, 1, 0, NULL, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_conv2d_fused", "coef", "16-byte");
    kt_release(&cbuf), kt_release(&out), kt_release(&b), kt_release(&w), kt_release(&x);
}
END_TEST

START_TEST(test_matmul16_refuses_k0_instead_of_leaving_y)
{
    struct omni_tensor x, w, y;
    struct omni_error err = {0};
    const int64_t xs[2] = {3, 0}, ws[2] = {4, 0};
    OK(omni_tensor_alloc(&x, OMNI_DTYPE_BF16, 2, xs, OMNI_CPU, &err));
    OK(omni_tensor_alloc(&w, OMNI_DTYPE_BF16, 2, ws, OMNI_CPU, &err));
    kt_tensorv(&y, OMNI_DTYPE_F32, 2, 3, 4);
    int rc = omni_op_matmul16(&y, &x, &w, 0.0f, &err);
    KT_ASSERT_ERR(rc, err, OMNI_ESHAPE, "omni_op_matmul16", "K = 0");
    omni_tensor_release(&x), omni_tensor_release(&w), kt_release(&y);
}
END_TEST

START_TEST(test_matmul16_refuses_y_over_x)
{
    struct omni_tensor buf, w, wf, xf;
    struct omni_error err = {0};
    kt_tensorv(&buf, OMNI_DTYPE_F32, 1, 64);
    rnd(&wf, 2, SH(8, 8));
    rnd(&xf, 2, SH(4, 8));
    kt_tensorv(&w, OMNI_DTYPE_BF16, 2, 8, 8);
    OK(omni_op_copy(&w, &wf, &err));
    struct omni_tensor x = at(&buf, 0, OMNI_DTYPE_BF16, 2, SH(4, 8));
    OK(omni_op_copy(&x, &xf, &err));
    struct omni_tensor y = at(&buf, 32, OMNI_DTYPE_F32, 2, SH(4, 8)); /* bytes 32.. of x's 64 */
    int rc = omni_op_matmul16(&y, &x, &w, 0.0f, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_matmul16", "overlaps");
    struct omni_tensor y2 = at(&buf, 64, OMNI_DTYPE_F32, 2, SH(4, 8)); /* right after x: fine */
    OK(omni_op_matmul16(&y2, &x, &w, 0.0f, &err));
    for (int i = 0; i < 32; i++)
        ck_assert(!isnan(fd(&y2)[i]));
    kt_release(&w), kt_release(&xf), kt_release(&wf), kt_release(&buf);
}
END_TEST

START_TEST(test_layernorm_ex_aliasing)
{
    struct omni_tensor x, ref, w, b;
    struct omni_error err = {0};
    rnd(&x, 2, SH(4, 8));
    rnd(&w, 1, SH(8));
    rnd(&b, 1, SH(8));
    kt_tensorv(&ref, OMNI_DTYPE_F32, 2, 4, 8);
    OK(omni_op_layernorm_ex(&ref, &x, &w, &b, 1e-5f, NULL, &err));
    /* a bf16 out over x's first rows: refused */
    struct omni_tensor o16 = at(&x, 0, OMNI_DTYPE_BF16, 2, SH(4, 8));
    int rc = omni_op_layernorm_ex(&o16, &x, &w, &b, 1e-5f, NULL, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_layernorm_ex", "overlaps x");
    /* f32 out = x itself: in place, the out-of-place result */
    OK(omni_op_layernorm_ex(&x, &x, &w, &b, 1e-5f, NULL, &err));
    ck_assert_int_eq(memcmp(fd(&x), fd(&ref), 32 * 4), 0);
    /* a parameter of the wrong width: the message names layernorm_ex and w */
    struct omni_tensor w7;
    rnd(&w7, 1, SH(7));
    rc = omni_op_layernorm_ex(&ref, &x, &w7, &b, 1e-5f, NULL, &err);
    KT_ASSERT_ERR(rc, err, OMNI_ESHAPE, "omni_op_layernorm_ex", "w");
    kt_release(&w7);
    kt_release(&b), kt_release(&w), kt_release(&ref), kt_release(&x);
}
END_TEST

START_TEST(test_decode_norm_with_lora_refuses_writes_over_inputs)
{
    const int64_t M = 2, D = 8, Rk = 2;
    struct omni_tensor ri, xb, out, ro, w, a, u;
    struct omni_error err = {0};
    rnd(&ri, 2, SH(M, D));
    rnd(&xb, 2, SH(2 * M, D)); /* x in the first half, spare rows after */
    rnd(&w, 1, SH(D));
    rnd(&a, 2, SH(Rk, D));
    kt_tensorv(&out, OMNI_DTYPE_F32, 2, M, D);
    kt_tensorv(&ro, OMNI_DTYPE_F32, 2, M, D);
    kt_tensorv(&u, OMNI_DTYPE_F32, 2, M, Rk);
    struct omni_tensor x = at(&xb, 0, OMNI_DTYPE_F32, 2, SH(M, D));
    OK(omni_op_decode_norm(&out, &ro, &ri, &x, &w, 1e-5f, &a, &u, &err));
    for (int i = 0; i < M * Rk; i++)
        ck_assert(!isnan(fd(&u)[i]));
    /* res_out over x's second row */
    struct omni_tensor bad = at(&xb, D * 4, OMNI_DTYPE_F32, 2, SH(M, D));
    int rc = omni_op_decode_norm(&out, &bad, &ri, &x, &w, 1e-5f, &a, &u, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_decode_norm", "must not overlap");
    /* out = x */
    rc = omni_op_decode_norm(&x, &ro, &ri, &x, &w, 1e-5f, &a, &u, &err);
    ck_assert_int_eq(rc, OMNI_EINVAL);
    /* without a, in place stays allowed (one block per row reads before it writes) */
    struct omni_tensor spare = at(&xb, M * D * 4, OMNI_DTYPE_F32, 2, SH(M, D));
    OK(omni_op_decode_norm(&out, &ri, &ri, &spare, &w, 1e-5f, NULL, NULL, &err));
    kt_release(&u), kt_release(&ro), kt_release(&out), kt_release(&a), kt_release(&w);
    kt_release(&xb), kt_release(&ri);
}
END_TEST

START_TEST(test_decode_gemv_refuses_y_over_x)
{
    struct omni_tensor xb, w;
    struct omni_error err = {0};
    rnd(&xb, 2, SH(4, 8));
    rnd(&w, 2, SH(8, 8));
    struct omni_tensor x = at(&xb, 0, OMNI_DTYPE_F32, 2, SH(2, 8));
    struct omni_tensor y = at(&xb, 8 * 4, OMNI_DTYPE_F32, 2, SH(2, 8)); /* x's second row */
    int rc = omni_op_decode_gemv(&y, &x, &w, NULL, 1.0f, NULL, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_decode_gemv", "y overlaps x");
    struct omni_tensor y2 = at(&xb, 16 * 4, OMNI_DTYPE_F32, 2, SH(2, 8));
    OK(omni_op_decode_gemv(&y2, &x, &w, NULL, 1.0f, NULL, &err));
    for (int i = 0; i < 16; i++)
        ck_assert(!isnan(fd(&y2)[i]));
    kt_release(&w), kt_release(&xb);
}
END_TEST

START_TEST(test_decode_mix_refuses_misaligned_state_on_cuda)
{
    /* B 1, H 2, P 8, N 4, G 1: E 16, Cd 24, chunks of 8 channels */
    const int64_t B = 1, H = 2, P = 8, N = 4, E = H * P, Cd = E + 2 * N;
    struct omni_tensor zx, xbc, A, Dk, dtb, gw, g, part, sbuf;
    struct omni_error err = {0};
    rnd(&zx, 2, SH(B, E + Cd + H));
    rnd(&xbc, 2, SH(B, Cd));
    rnd(&A, 1, SH(H));
    for (int i = 0; i < H; i++)
        fd(&A)[i] = -fabsf(fd(&A)[i]) - 0.1f;
    rnd(&Dk, 1, SH(H));
    rnd(&dtb, 1, SH(H));
    rnd(&gw, 1, SH(E));
    kt_tensorv(&g, OMNI_DTYPE_F32, 2, B, E);
    kt_tensorv(&part, OMNI_DTYPE_F32, 2, B, 2);
    rnd(&sbuf, 1, SH(B * H * P * N + 4));
    const int64_t off = misaligned_off(&sbuf);
    struct omni_tensor st = at(&sbuf, off, OMNI_DTYPE_F32, 4, SH(B, H, P, N));
    /* the CPU twin takes any alignment */
    OK(omni_op_decode_mix(&g, &part, &zx, &xbc, &A, &Dk, &dtb, &gw, &st, 1, &err));
    for (int i = 0; i < E; i++)
        ck_assert(!isnan(fd(&g)[i]));
    struct omni_tensor *all[] = {&zx, &xbc, &A, &Dk, &dtb, &gw, &g, &part, &st};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        all[i]->device = CUDA0;
    int rc = omni_op_decode_mix(&g, &part, &zx, &xbc, &A, &Dk, &dtb, &gw, &st, 1, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_decode_mix", "state", "16-byte");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        all[i]->device = OMNI_CPU;
    kt_release(&sbuf), kt_release(&part), kt_release(&g), kt_release(&gw), kt_release(&dtb);
    kt_release(&Dk), kt_release(&A), kt_release(&xbc), kt_release(&zx);
}
END_TEST

START_TEST(test_attention_ex_wide_heads_with_bias_refused_on_cuda)
{
    /* one head of P = 264 > 256 with a q bias */
    const int64_t S = 3, HP = 264;
    struct omni_tensor q, k, v, out, qb;
    struct omni_error err = {0};
    rnd(&q, 3, SH(1, S, HP));
    rnd(&k, 3, SH(1, S, HP));
    rnd(&v, 3, SH(1, S, HP));
    rnd(&qb, 1, SH(HP));
    kt_tensorv(&out, OMNI_DTYPE_F32, 3, 1, S, HP);
    const struct omni_attention_opts o = {.q_bias = &qb};
    OK(omni_op_attention_ex(&out, &q, &k, &v, 1, 0.0f, &o, &err)); /* the CPU takes it */
    ck_assert(!tu_has_nan(fd(&out), (size_t)(S * HP)));
    struct omni_tensor *all[] = {&q, &k, &v, &out, &qb};
    for (size_t i = 0; i < 5; i++)
        all[i]->device = CUDA0;
    int rc = omni_op_attention_ex(&out, &q, &k, &v, 1, 0.0f, &o, &err);
    KT_ASSERT_ERR(rc, err, OMNI_EINVAL, "omni_op_attention", "wider than 256", "P=264");
    for (size_t i = 0; i < 5; i++)
        all[i]->device = OMNI_CPU;
    kt_release(&out), kt_release(&qb), kt_release(&v), kt_release(&k), kt_release(&q);
}
END_TEST

START_TEST(test_attention_ex_16bit_precision_only_up_to_128_wide_heads)
{
    /* heads wider than 128 compute in f32 on every device (the CUDA tensor-core
     * kernel stops at 128): there bf16 precision gives the f32 bits, while at
     * P = 64 the bf16 rounding shows */
    static const int64_t Ps[2] = {160, 64};
    for (int i = 0; i < 2; i++) {
        const int64_t S = 5, H = 2, HP = H * Ps[i];
        struct omni_tensor q, k, v, o32, o16;
        struct omni_error err = {0};
        rnd(&q, 3, SH(1, S, HP));
        rnd(&k, 3, SH(1, S, HP));
        rnd(&v, 3, SH(1, S, HP));
        kt_tensorv(&o32, OMNI_DTYPE_F32, 3, 1, S, HP);
        kt_tensorv(&o16, OMNI_DTYPE_F32, 3, 1, S, HP);
        const struct omni_attention_opts f32 = {.precision = OMNI_DTYPE_F32};
        const struct omni_attention_opts b16 = {.precision = OMNI_DTYPE_BF16};
        OK(omni_op_attention_ex(&o32, &q, &k, &v, (int)H, 0.0f, &f32, &err));
        OK(omni_op_attention_ex(&o16, &q, &k, &v, (int)H, 0.0f, &b16, &err));
        const int same = memcmp(fd(&o32), fd(&o16), (size_t)(S * HP) * sizeof(float)) == 0;
        ck_assert_msg(same == (Ps[i] > 128), "P=%lld: bf16 and f32 results %s", (long long)Ps[i],
                      same ? "are identical" : "differ");
        kt_release(&o16), kt_release(&o32), kt_release(&v), kt_release(&k), kt_release(&q);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("op_guards");
    TCase *tc = tcase_create("guards");
    tu_rng_seed(&R, 0x6a7d);
    tcase_add_test(tc, test_conv2d_fused_up2_out_after_x_in_one_buffer);
    tcase_add_test(tc, test_conv2d_fused_refuses_misaligned_coef_on_cuda);
    tcase_add_test(tc, test_matmul16_refuses_k0_instead_of_leaving_y);
    tcase_add_test(tc, test_matmul16_refuses_y_over_x);
    tcase_add_test(tc, test_layernorm_ex_aliasing);
    tcase_add_test(tc, test_decode_norm_with_lora_refuses_writes_over_inputs);
    tcase_add_test(tc, test_decode_gemv_refuses_y_over_x);
    tcase_add_test(tc, test_decode_mix_refuses_misaligned_state_on_cuda);
    tcase_add_test(tc, test_attention_ex_wide_heads_with_bias_refused_on_cuda);
    tcase_add_test(tc, test_attention_ex_16bit_precision_only_up_to_128_wide_heads);
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
