/* tests/cuda/check_cuda_ops.c - every CUDA op against its CPU twin.
 *
 * Each case draws fresh random inputs, runs the omni_op_* on host tensors
 * (the CPU reference) and on device copies, and compares: f32 paths within
 * 1e-4 of max|ref|, paths that round activations to f16/bf16 within 2e-2,
 * integer outputs (argmax, sampled ids, VQ codes) exactly. Device outputs
 * start as NaN bytes and carry a guard region that must stay untouched; host
 * tensors are guarded too (tests/kernels/ktest.h). Shapes cover T = 1, odd
 * sizes and batch 1/16/32, and the full Mamba-2 1.3B widths. The SSD scan and
 * step are in check_cuda_ssd.c, the fused decode ops in check_cuda_decode.c,
 * the ViT ops in check_cuda_vit.c, the VQ convolutions in check_cuda_vq.c.
 *
 * Without a device the suite prints a skip message and exits 0, unless
 * OMNI_REQUIRE_CUDA is set (make test-cuda), which makes it a failure. */
#include <math.h>
#include <time.h>

#include "cudatest.h"

#ifdef OMNI_HAVE_CUDA


/* fresh inputs every run; the seed is printed so a failure can be replayed
 * (OMNI_TEST_SEED=...) */

/* ---- matmul family ----------------------------------------------------------------------- */

static void one_matmul(int64_t M, int64_t N, int64_t K, int wdt, int64_t ldx, int64_t ldy,
                       int with_bias, float alpha, float beta)
{
    struct omni_error e = {0};
    struct omni_tensor hx, dx, hw, dw, hb, db, hy, dy, vx, vdx, vy, vdy;
    char what[160];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1.0f, 2, SH(M, ldx));
    pair(&hw, &dw, wdt, 1.0f / sqrtf((float)(K ? K : 1)), 2, SH(N, K));
    pair(&hb, &db, OMNI_DTYPE_F32, 1.0f, 1, SH(N));
    pair(&hy, &dy, OMNI_DTYPE_F32, 1.0f, 2, SH(M, ldy));
    vx = kt_slice_last(&hx, 0, K), vdx = kt_slice_last(&dx, 0, K);
    vy = kt_slice_last(&hy, 0, N), vdy = kt_slice_last(&dy, 0, N);
    ck_assert_int_eq(omni_op_matmul(&vy, &vx, &hw, with_bias ? &hb : NULL, alpha, beta, &e), OMNI_OK);
    int rc = omni_op_matmul(&vdy, &vdx, &dw, with_bias ? &db : NULL, alpha, beta, &e);
    ck_assert_msg(rc == OMNI_OK, "matmul on CUDA: %s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "matmul M=%lld N=%lld K=%lld w=%s ldx=%lld ldy=%lld bias=%d a=%g b=%g",
             (long long)M, (long long)N, (long long)K, omni_dtype_name(wdt), (long long)ldx,
             (long long)ldy, with_bias, (double)alpha, (double)beta);
    /* M > 8 with a 16-bit weight rounds x to that dtype on the device */
    const double tol = (wdt != OMNI_DTYPE_F32 && M > 8) ? 2e-2 : 1e-4;
    ct_cmp_dev(what, &dy, &hy, tol);
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hy, &dy);
}

START_TEST(test_matmul_matches_cpu_over_shape_table)
{
    static const int64_t t[][3] = {
        {1, 1, 1},    {1, 8512, 2048}, {1, 33, 5},      {2, 257, 64},   {3, 100, 130},
        {8, 64, 2048}, {9, 257, 64},   {16, 2048, 4096}, {32, 513, 2048}, {72, 1000, 2048},
        {5, 7, 3},    {16, 8512, 2048}, {1, 2048, 4096}, {32, 16384, 64}, {256, 130, 96},
    };
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int d = 0; d < 3; d++)
            one_matmul(t[i][0], t[i][1], t[i][2], dts[d], t[i][2], t[i][1], (int)(i % 2), 1.0f, 0.0f);
    /* strided rows, alpha/beta, bias */
    for (int d = 0; d < 3; d++) {
        one_matmul(4, 300, 64, dts[d], 80, 310, 1, 0.5f, 1.0f);
        one_matmul(20, 300, 64, dts[d], 68, 301, 1, 4.0f, 1.0f);
        one_matmul(7, 33, 17, dts[d], 19, 40, 0, -1.5f, 0.25f);
    }
}
END_TEST

/* the LoRA update y += scale (x·Aᵀ)·Bᵀ (M <= 8, rank <= 32): one kernel vs the
 * CPU's two matmuls */
static void one_lora(int64_t M, int64_t N, int64_t K, int64_t Rk, int dt, int64_t ldx, int64_t ldy)
{
    struct omni_error e = {0};
    struct omni_tensor hx, dx, ha, da, hb, db, hy, dy, vx, vdx, vy, vdy;
    char what[160];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1.0f, 2, SH(M, ldx));
    pair(&ha, &da, dt, 1.0f / sqrtf((float)K), 2, SH(Rk, K));
    pair(&hb, &db, dt, 1.0f, 2, SH(N, Rk));
    pair(&hy, &dy, OMNI_DTYPE_F32, 1.0f, 2, SH(M, ldy));
    vx = kt_slice_last(&hx, 0, K), vdx = kt_slice_last(&dx, 0, K);
    vy = kt_slice_last(&hy, 0, N), vdy = kt_slice_last(&dy, 0, N);
    ck_assert_int_eq(omni_op_lora_update(&vy, &vx, &ha, &hb, 4.0f, &e), OMNI_OK);
    int rc = omni_op_lora_update(&vdy, &vdx, &da, &db, 4.0f, &e);
    ck_assert_msg(rc == OMNI_OK, "lora_update on CUDA: %s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "lora_update M=%lld N=%lld K=%lld R=%lld %s ldx=%lld ldy=%lld",
             (long long)M, (long long)N, (long long)K, (long long)Rk, omni_dtype_name(dt),
             (long long)ldx, (long long)ldy);
    ct_cmp_dev(what, &dy, &hy, 1e-4);
    rel2(&hx, &dx), rel2(&ha, &da), rel2(&hb, &db), rel2(&hy, &dy);
}

START_TEST(test_lora_update_matches_cpu_over_shape_table)
{
    static const int64_t t[][4] = {
        {1, 8512, 2048, 8}, {1, 1, 1, 1}, {2, 257, 64, 16}, {3, 100, 130, 32},
        {8, 8512, 2048, 8}, {5, 7, 3, 2}, {1, 33, 300, 9},
    };
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int d = 0; d < 3; d++)
            one_lora(t[i][0], t[i][1], t[i][2], t[i][3], dts[d], t[i][2], t[i][1]);
    one_lora(4, 300, 64, 8, OMNI_DTYPE_F32, 80, 310); /* strided rows */
}
END_TEST

START_TEST(test_add_add_row_and_copies_match_cpu)
{
    struct omni_error e = {0};
    struct omni_tensor ha, da, hb, db, hy, dy, hr, dr;
    /* add over strided rows */
    pair(&ha, &da, OMNI_DTYPE_F32, 1, 2, SH(33, 70));
    pair(&hb, &db, OMNI_DTYPE_F32, 1, 2, SH(33, 65));
    ct_hrand(&hy, &R, OMNI_DTYPE_F32, 1, 2, SH(33, 64));
    ct_dalloc(&dy, OMNI_DTYPE_F32, 2, SH(33, 64));
    struct omni_tensor va = kt_slice_last(&ha, 3, 64), vda = kt_slice_last(&da, 3, 64);
    struct omni_tensor vb = kt_slice_last(&hb, 1, 64), vdb = kt_slice_last(&db, 1, 64);
    ck_assert_int_eq(omni_op_add(&hy, &va, &vb, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_add(&dy, &vda, &vdb, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev("add", &dy, &hy, 1e-6);
    /* add_row in place */
    pair(&hr, &dr, OMNI_DTYPE_F32, 1, 1, SH(64));
    ck_assert_int_eq(omni_op_add_row(&hy, &hr, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_add_row(&dy, &dr, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev("add_row", &dy, &hy, 1e-6);
    rel2(&ha, &da), rel2(&hb, &db), rel2(&hr, &dr);

    /* dtype-converting copies f32 -> bf16/f16 -> f32 on the device vs host */
    static const int dts[2] = {OMNI_DTYPE_BF16, OMNI_DTYPE_F16};
    for (int i = 0; i < 2; i++) {
        struct omni_tensor hh, dh, hback, dback;
        kt_tensor(&hh, dts[i], 2, SH(33, 64));
        ct_dalloc(&dh, dts[i], 2, SH(33, 64));
        kt_tensor(&hback, OMNI_DTYPE_F32, 2, SH(33, 64));
        ct_dalloc(&dback, OMNI_DTYPE_F32, 2, SH(33, 64));
        ck_assert_int_eq(omni_op_copy(&hh, &hy, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_copy(&hback, &hh, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_copy(&dh, &dy, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_copy(&dback, &dh, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("copy through a 16-bit dtype", &dback, &hback, 0.0);
        rel2(&hh, &dh), rel2(&hback, &dback);
    }
    /* strided (transposed) device copy, and host <-> device */
    {
        struct omni_tensor ht, dt, vt, vdt, hh2;
        kt_tensor(&ht, OMNI_DTYPE_F32, 2, SH(64, 33));
        ct_dalloc(&dt, OMNI_DTYPE_F32, 2, SH(64, 33));
        vt = hy, vdt = dy;
        vt.shape[0] = vdt.shape[0] = 64, vt.shape[1] = vdt.shape[1] = 33;
        vt.strides[0] = vdt.strides[0] = 1, vt.strides[1] = vdt.strides[1] = 64;
        ck_assert_int_eq(omni_op_copy(&ht, &vt, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_copy(&dt, &vdt, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("strided copy", &dt, &ht, 0.0);
        kt_tensor(&hh2, OMNI_DTYPE_F32, 2, SH(64, 33));
        ck_assert_int_eq(omni_op_copy(&hh2, &dt, &e), OMNI_OK); /* device -> host */
        ct_cmp("device to host copy", kt_f(&hh2), kt_f(&ht), 64 * 33, 0.0);
        ck_assert_int_eq(omni_op_copy(&dt, &hy, &e), OMNI_OK); /* host -> device */
        ct_sync();
        ct_cmp_dev("host to device copy", &dt, &hy, 0.0);
        kt_release(&hh2);
        rel2(&ht, &dt);
    }
    rel2(&hy, &dy);
}
END_TEST

/* ---- norms and activations --------------------------------------------------------------- */

START_TEST(test_norms_match_cpu)
{
    struct omni_error e = {0};
    static const int64_t shapes[][2] = {{1, 2048}, {5, 77}, {32, 2048}, {16, 4096}, {3, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t M = shapes[i][0], D = shapes[i][1];
        struct omni_tensor hx, dx, hw, dw, hr, dr, ho, dout, ho2, dout2;
        pair(&hx, &dx, OMNI_DTYPE_F32, 1, 2, SH(M, D));
        pair(&hw, &dw, OMNI_DTYPE_F32, 1, 1, SH(D));
        pair(&hr, &dr, OMNI_DTYPE_F32, 3, 2, SH(M, D));
        kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(M, D));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(M, D));
        kt_tensor(&ho2, OMNI_DTYPE_F32, 2, SH(M, D));
        ct_dalloc(&dout2, OMNI_DTYPE_F32, 2, SH(M, D));
        ck_assert_int_eq(omni_op_rmsnorm(&ho, &hx, &hw, 1e-5f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_rmsnorm(&dout, &dx, &dw, 1e-5f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_add_rmsnorm(&ho2, &hr, &hx, &hw, 1e-5f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_add_rmsnorm(&dout2, &dr, &dx, &dw, 1e-5f, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("rmsnorm", &dout, &ho, 1e-4);
        ct_cmp_dev("add_rmsnorm out", &dout2, &ho2, 1e-4);
        ct_cmp_dev("add_rmsnorm residual", &dr, &hr, 1e-5);
        /* x == NULL: residual already holds the sum */
        ck_assert_int_eq(omni_op_add_rmsnorm(&ho2, &hr, NULL, &hw, 1e-5f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_add_rmsnorm(&dout2, &dr, NULL, &dw, 1e-5f, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("add_rmsnorm without x", &dout2, &ho2, 1e-4);
        rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hr, &dr), rel2(&ho, &dout), rel2(&ho2, &dout2);
    }
    /* gated: y and z as views of a zxbcdt-like row, groups of E and of 64 */
    static const int64_t g[][3] = {{1, 4096, 4096}, {16, 4096, 4096}, {3, 256, 64}, {2, 6, 3}};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        const int64_t M = g[i][0], E = g[i][1], G = g[i][2], F = 2 * E + 9;
        struct omni_tensor hz, dz, hy, dy, hw, dw, ho, dout;
        pair(&hz, &dz, OMNI_DTYPE_F32, 2, 2, SH(M, F));
        pair(&hy, &dy, OMNI_DTYPE_F32, 1, 2, SH(M, E));
        pair(&hw, &dw, OMNI_DTYPE_F32, 1, 1, SH(E));
        kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(M, E));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(M, E));
        struct omni_tensor vz = kt_slice_last(&hz, 0, E), vdz = kt_slice_last(&dz, 0, E);
        ck_assert_int_eq(omni_op_gated_rmsnorm(&ho, &hy, &vz, &hw, 1e-5f, G, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_gated_rmsnorm(&dout, &dy, &vdz, &dw, 1e-5f, G, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("gated_rmsnorm", &dout, &ho, 1e-4);
        rel2(&hz, &dz), rel2(&hy, &dy), rel2(&hw, &dw), rel2(&ho, &dout);
    }
}
END_TEST

START_TEST(test_activations_match_cpu_across_the_softplus_threshold)
{
    struct omni_error e = {0};
    struct omni_tensor hx, dx, hb, db, ho, dout;
    pair(&hx, &dx, OMNI_DTYPE_F32, 8, 2, SH(7, 1001));
    static const float special[] = {-30.f, -17.f, 0.f, 19.9f, 20.0f, 20.1f, 40.f, -90.f, 90.f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        kt_f(&hx)[i * 3] = special[i];
    omni_tensor_release(&dx);
    ct_up(&dx, &hx);
    pair(&hb, &db, OMNI_DTYPE_F32, 1, 2, SH(7, 1001));
    kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(7, 1001));
    ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(7, 1001));
    ck_assert_int_eq(omni_op_silu(&ho, &hx, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_silu(&dout, &dx, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev("silu", &dout, &ho, 1e-6);
    ck_assert_int_eq(omni_op_softplus(&ho, &hx, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_softplus(&dout, &dx, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev("softplus", &dout, &ho, 1e-6);
    ck_assert_int_eq(omni_op_mul(&ho, &hx, &hb, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_mul(&dout, &dx, &db, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev("mul", &dout, &ho, 0.0);
    rel2(&hx, &dx), rel2(&hb, &db), rel2(&ho, &dout);
}
END_TEST

/* ---- conv1d (the SSD scan and step: check_cuda_ssd.c) ------------------------------------- */

static void one_conv(int64_t B, int64_t T, int64_t C, int64_t K, int with_state)
{
    struct omni_error e = {0};
    const int64_t F = C + 11; /* x is a view of wider rows */
    struct omni_tensor hx, dx, hw, dw, hb, db, hs, ds, ho, dout;
    char what[128];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1, 3, SH(B, T, F));
    pair(&hw, &dw, OMNI_DTYPE_F32, 0.5f, 2, SH(C, K));
    pair(&hb, &db, OMNI_DTYPE_F32, 0.5f, 1, SH(C));
    pair(&hs, &ds, OMNI_DTYPE_F32, 1, 3, SH(B, C, K));
    kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(B, T, C));
    ct_dalloc(&dout, OMNI_DTYPE_F32, 3, SH(B, T, C));
    struct omni_tensor vx = kt_slice_last(&hx, 5, C), vdx = kt_slice_last(&dx, 5, C);
    ck_assert_int_eq(omni_op_conv1d_causal(&ho, &vx, &hw, &hb, with_state ? &hs : NULL, 1, &e), OMNI_OK);
    int rc = omni_op_conv1d_causal(&dout, &vdx, &dw, &db, with_state ? &ds : NULL, 1, &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "conv1d_causal B=%lld T=%lld C=%lld K=%lld state=%d", (long long)B,
             (long long)T, (long long)C, (long long)K, with_state);
    ct_cmp_dev(what, &dout, &ho, 1e-5);
    ct_cmp_dev("conv1d_causal state", &ds, &hs, 0.0);
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hs, &ds), rel2(&ho, &dout);
}

START_TEST(test_conv1d_matches_cpu_sequence_and_step)
{
    static const int64_t t[][4] = {{1, 1, 4352, 4}, {1, 2, 7, 4},   {3, 3, 33, 4},  {1, 4, 4352, 4},
                                   {2, 5, 100, 4},  {1, 300, 4352, 4}, {16, 72, 130, 4}, {2, 9, 5, 3}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int s = 0; s < 2; s++)
            one_conv(t[i][0], t[i][1], t[i][2], t[i][3], s);
    static const int64_t st[] = {1, 16, 32};
    for (int i = 0; i < 3; i++) {
        struct omni_error e = {0};
        const int64_t B = st[i], C = 4352, K = 4, F = 8512;
        struct omni_tensor hx, dx, hw, dw, hb, db, hs, ds, ho, dout;
        pair(&hx, &dx, OMNI_DTYPE_F32, 1, 2, SH(B, F));
        pair(&hw, &dw, OMNI_DTYPE_F32, 0.5f, 2, SH(C, K));
        pair(&hb, &db, OMNI_DTYPE_F32, 0.5f, 1, SH(C));
        pair(&hs, &ds, OMNI_DTYPE_F32, 1, 3, SH(B, C, K));
        kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(B, C));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(B, C));
        struct omni_tensor vx = kt_slice_last(&hx, 4096, C), vdx = kt_slice_last(&dx, 4096, C);
        for (int step = 0; step < 3; step++) {
            ck_assert_int_eq(omni_op_conv1d_step(&ho, &vx, &hw, &hb, &hs, 1, &e), OMNI_OK);
            ck_assert_int_eq(omni_op_conv1d_step(&dout, &vdx, &dw, &db, &ds, 1, &e), OMNI_OK);
        }
        ct_sync();
        ct_cmp_dev("conv1d_step", &dout, &ho, 1e-5);
        ct_cmp_dev("conv1d_step state", &ds, &hs, 0.0);
        rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hs, &ds), rel2(&ho, &dout);
    }
}
END_TEST

/* SSD inputs as views of one xBC-like buffer (B, T, H*P + 2*G*N) plus dt (B, T, H + 3). */
/* ---- embedding and sampling ------------------------------------------------------------------ */

START_TEST(test_embedding_matches_cpu_and_reports_bad_ids_at_sync)
{
    struct omni_error e = {0};
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    for (int d = 0; d < 3; d++)
        for (int wide = 0; wide < 2; wide++) {
            const int64_t V = 1000, D = 130, M = 37;
            struct omni_tensor ht, dt, hi, di, ho, dout;
            pair(&ht, &dt, dts[d], 1, 2, SH(V, D));
            int idt = wide ? OMNI_DTYPE_I64 : OMNI_DTYPE_I32;
            kt_tensor(&hi, idt, 2, SH(1, M));
            for (int64_t i = 0; i < M; i++) {
                int64_t id = (int64_t)(tu_rng_u64(&R) % (uint64_t)V);
                if (wide)
                    ((int64_t *)omni_tensor_data(&hi))[i] = id;
                else
                    ((int32_t *)omni_tensor_data(&hi))[i] = (int32_t)id;
            }
            ct_up(&di, &hi);
            kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(1, M, D));
            ct_dalloc(&dout, OMNI_DTYPE_F32, 3, SH(1, M, D));
            ck_assert_int_eq(omni_op_embedding(&ho, &ht, &hi, &e), OMNI_OK);
            ck_assert_int_eq(omni_op_embedding(&dout, &dt, &di, &e), OMNI_OK);
            ct_sync();
            ct_cmp_dev("embedding", &dout, &ho, 0.0);
            rel2(&ht, &dt), rel2(&hi, &di), rel2(&ho, &dout);
        }
    /* an id past V: the op queues, the next synchronize reports it */
    struct omni_tensor ht, dt, hi, di, dout;
    pair(&ht, &dt, OMNI_DTYPE_F32, 1, 2, SH(50, 8));
    kt_tensor(&hi, OMNI_DTYPE_I32, 1, SH(4));
    int32_t *ids = omni_tensor_data(&hi);
    ids[0] = 1, ids[1] = 49, ids[2] = 50, ids[3] = 2;
    ct_up(&di, &hi);
    ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(4, 8));
    ck_assert_int_eq(omni_op_embedding(&dout, &dt, &di, &e), OMNI_OK);
    int rc = omni_cuda_synchronize(CT_DEV, &e);
    KT_ASSERT_ERR(rc, e, OMNI_ERANGE, "id 50", "index 2", "V=50");
    ck_assert_int_eq(omni_cuda_synchronize(CT_DEV, &e), OMNI_OK); /* reported once */
    rel2(&ht, &dt), rel2(&hi, &di);
    omni_tensor_release(&dout);
}
END_TEST

/* The graph-safe twins: the index / draw counter is read on the device. */
START_TEST(test_embedding_add_and_sample_at_read_device_counters)
{
    struct omni_error e = {0};
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        const int64_t V = 300, D = 2048, M = 16;
        struct omni_tensor ht, dt, ho, dout, hi, di;
        pair(&ht, &dt, dts[d], 1, 2, SH(V, D));
        pair(&ho, &dout, OMNI_DTYPE_F32, 1, 2, SH(M, D));
        kt_tensor(&hi, OMNI_DTYPE_I64, 1, SH(1));
        *(int64_t *)omni_tensor_data(&hi) = (int64_t)(tu_rng_u64(&R) % (uint64_t)V);
        ct_up(&di, &hi);
        ck_assert_int_eq(omni_op_embedding_add(&ho, &ht, &hi, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_embedding_add(&dout, &dt, &di, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("embedding_add", &dout, &ho, 0.0);
        rel2(&ht, &dt), rel2(&ho, &dout), rel2(&hi, &di);
    }
    /* an index past V: nothing added, the next synchronize reports it */
    struct omni_tensor ht, dt, ho, dout, hi, di, before;
    pair(&ht, &dt, OMNI_DTYPE_F32, 1, 2, SH(50, 8));
    pair(&ho, &dout, OMNI_DTYPE_F32, 1, 2, SH(3, 8));
    kt_tensor(&hi, OMNI_DTYPE_I64, 1, SH(1));
    *(int64_t *)omni_tensor_data(&hi) = 50;
    ct_up(&di, &hi);
    ck_assert_int_eq(omni_op_embedding_add(&dout, &dt, &di, &e), OMNI_OK);
    int rc = omni_cuda_synchronize(CT_DEV, &e);
    KT_ASSERT_ERR(rc, e, OMNI_ERANGE, "embedding_add", "index 50", "V=50");
    ct_down(&before, &dout);
    ck_assert_int_eq(memcmp(omni_tensor_data(&before), omni_tensor_data(&ho), 3 * 8 * 4), 0);
    kt_release(&before);
    rel2(&ht, &dt), rel2(&ho, &dout), rel2(&hi, &di);

    /* sample_at: draw = counter + add, same ids as the CPU sampler at that step */
    const int64_t B = 16, Vs = 16384;
    struct omni_tensor hl, dl, hid, did, hc, dc, got;
    pair(&hl, &dl, OMNI_DTYPE_F32, 3, 2, SH(B, Vs));
    kt_tensor(&hid, OMNI_DTYPE_I32, 1, SH(B));
    ct_dalloc(&did, OMNI_DTYPE_I32, 1, SH(B));
    kt_tensor(&hc, OMNI_DTYPE_I64, 1, SH(2));
    const struct omni_sampling S = {0.8f, 100, 0.9f};
    for (int64_t step = 0; step < 4; step++) {
        ((int64_t *)omni_tensor_data(&hc))[0] = 1000 + step; /* position: not read */
        ((int64_t *)omni_tensor_data(&hc))[1] = step;
        ct_up(&dc, &hc);
        struct omni_tensor dstep = dc; /* the (1) view of element 1, as ctx->step_dev */
        dstep.shape[0] = 1;
        dstep.offset += 8;
        ck_assert_int_eq(omni_op_sample(&hid, &hl, &S, 99, step + 1, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_sample_at(&did, &dl, &S, 99, &dstep, 1, &e), OMNI_OK);
        ct_sync();
        ct_down(&got, &did);
        ck_assert_int_eq(memcmp(omni_tensor_data(&got), omni_tensor_data(&hid), (size_t)B * 4), 0);
        kt_release(&got);
        omni_tensor_release(&dc);
    }
    ct_guard_check(&did, "sample_at ids");
    rel2(&hl, &dl), rel2(&hid, &did);
    kt_release(&hc);
}
END_TEST

START_TEST(test_softmax_argmax_and_sampler_match_cpu)
{
    struct omni_error e = {0};
    static const int64_t t[][2] = {{1, 50288}, {16, 16384}, {32, 50288}, {3, 7}, {2, 1}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const int64_t B = t[i][0], V = t[i][1];
        struct omni_tensor hl, dl, ho, dout, hid, did;
        pair(&hl, &dl, OMNI_DTYPE_F32, 3, 2, SH(B, V));
        /* plant ties at the maximum in row 0 */
        if (V > 10) {
            kt_f(&hl)[3] = 100.0f, kt_f(&hl)[9] = 100.0f;
            omni_tensor_release(&dl);
            ct_up(&dl, &hl);
        }
        kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(B, V));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(B, V));
        ck_assert_int_eq(omni_op_softmax(&ho, &hl, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_softmax(&dout, &dl, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("softmax", &dout, &ho, 1e-5);
        kt_tensor(&hid, OMNI_DTYPE_I32, 1, SH(B));
        ct_dalloc(&did, OMNI_DTYPE_I32, 1, SH(B));
        ck_assert_int_eq(omni_op_argmax(&hid, &hl, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_argmax(&did, &dl, &e), OMNI_OK);
        ct_sync();
        struct omni_tensor got;
        ct_down(&got, &did);
        ck_assert_int_eq(memcmp(omni_tensor_data(&got), omni_tensor_data(&hid), (size_t)B * 4), 0);
        kt_release(&got);
        static const struct omni_sampling S[] = {
            {1.0f, 50, 0.0f}, {0.7f, 50, 0.0f}, {1.0f, 0, 0.9f}, {1.3f, 20, 0.5f}, {1.0f, 0, 0.0f},
            {0.5f, 1000, 0.95f}, {2.0f, 2, 0.0f},
        };
        for (size_t s = 0; s < sizeof S / sizeof S[0]; s++)
            for (int64_t step = 0; step < 3; step++) {
                ck_assert_int_eq(omni_op_sample(&hid, &hl, &S[s], 1234 + s, step, &e), OMNI_OK);
                ck_assert_int_eq(omni_op_sample(&did, &dl, &S[s], 1234 + s, step, &e), OMNI_OK);
                ct_sync();
                ct_down(&got, &did);
                for (int64_t b = 0; b < B; b++)
                    ck_assert_msg(((int32_t *)omni_tensor_data(&got))[b] == ((int32_t *)omni_tensor_data(&hid))[b],
                                  "sample (T=%g k=%d p=%g) V=%lld row %lld step %lld: cuda %d cpu %d",
                                  (double)S[s].temperature, S[s].top_k, (double)S[s].top_p, (long long)V,
                                  (long long)b, (long long)step, ((int32_t *)omni_tensor_data(&got))[b],
                                  ((int32_t *)omni_tensor_data(&hid))[b]);
                kt_release(&got);
            }
        ct_guard_check(&did, "sampled ids");
        rel2(&hl, &dl), rel2(&ho, &dout), rel2(&hid, &did);
    }
}
END_TEST

/* ---- vision and VQ ops --------------------------------------------------------------------- */

START_TEST(test_layernorm_gelu_match_cpu)
{
    struct omni_error e = {0};
    static const int64_t t[][2] = {{734, 1024}, {5, 77}, {729, 1152}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const int64_t M = t[i][0], D = t[i][1];
        struct omni_tensor hx, dx, hw, dw, hb, db, ho, dout;
        pair(&hx, &dx, OMNI_DTYPE_F32, 2, 2, SH(M, D));
        for (int64_t k = 0; k < M * D; k++)
            kt_f(&hx)[k] += 3.0f; /* a mean to subtract */
        omni_tensor_release(&dx);
        ct_up(&dx, &hx);
        pair(&hw, &dw, OMNI_DTYPE_F32, 1, 1, SH(D));
        pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(D));
        kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(M, D));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(M, D));
        ck_assert_int_eq(omni_op_layernorm(&ho, &hx, &hw, &hb, 1e-6f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_layernorm(&dout, &dx, &dw, &db, 1e-6f, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("layernorm", &dout, &ho, 1e-5);
        ck_assert_int_eq(omni_op_gelu(&ho, &hx, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_gelu(&dout, &dx, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("gelu", &dout, &ho, 1e-5);
        ck_assert_int_eq(omni_op_gelu_tanh(&ho, &hx, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_gelu_tanh(&dout, &dx, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("gelu_tanh", &dout, &ho, 1e-5);
        rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&ho, &dout);
    }
}
END_TEST

START_TEST(test_attention_matches_cpu_on_fused_qkv_views)
{
    struct omni_error e = {0};
    /* DINOv2-L, SigLIP so400m, odd sizes, and the VQ decoder's single 512-wide head
     * (wider than 256: the materialised cuBLAS path) */
    static const int64_t t[][4] = {{1, 734, 16, 64}, {2, 5, 3, 72}, {1, 729, 16, 72}, {3, 33, 1, 8},
                                   {2, 256, 1, 512}, {1, 17, 2, 300}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const int64_t B = t[i][0], S = t[i][1], H = t[i][2], P = t[i][3], D = H * P;
        struct omni_tensor hq, dq, ho, dout;
        pair(&hq, &dq, OMNI_DTYPE_F32, 1, 3, SH(B, S, 3 * D));
        kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(B, S, D));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 3, SH(B, S, D));
        struct omni_tensor q = kt_slice_last(&hq, 0, D), k = kt_slice_last(&hq, D, D),
                           v = kt_slice_last(&hq, 2 * D, D);
        struct omni_tensor dq1 = kt_slice_last(&dq, 0, D), dk = kt_slice_last(&dq, D, D),
                           dv = kt_slice_last(&dq, 2 * D, D);
        ck_assert_int_eq(omni_op_attention(&ho, &q, &k, &v, (int)H, 0.0f, &e), OMNI_OK);
        int rc = omni_op_attention(&dout, &dq1, &dk, &dv, (int)H, 0.0f, &e);
        ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
        ct_sync();
        ct_cmp_dev("attention", &dout, &ho, 1e-4);
        rel2(&hq, &dq), rel2(&ho, &dout);
    }
}
END_TEST

static void one_conv2d(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t Kk,
                       int stride, const int pads[4], int wdt)
{
    struct omni_error e = {0};
    const int64_t Ho = (pads[0] + H + pads[2] - Kk) / stride + 1;
    const int64_t Wo = (pads[1] + W + pads[3] - Kk) / stride + 1;
    struct omni_tensor hx, dx, hw, dw, hb, db, ho, dout;
    char what[160];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1, 4, SH(B, Cin, H, W));
    pair(&hw, &dw, wdt, 0.2f, 4, SH(Cout, Cin, Kk, Kk));
    pair(&hb, &db, wdt, 1, 1, SH(Cout));
    kt_tensor(&ho, OMNI_DTYPE_F32, 4, SH(B, Cout, Ho, Wo));
    ct_dalloc(&dout, OMNI_DTYPE_F32, 4, SH(B, Cout, Ho, Wo));
    ck_assert_int_eq(omni_op_conv2d_pad(&ho, &hx, &hw, &hb, stride, pads[0], pads[1], pads[2], pads[3], &e), OMNI_OK);
    int rc = omni_op_conv2d_pad(&dout, &dx, &dw, &db, stride, pads[0], pads[1], pads[2], pads[3], &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "conv2d B=%lld Cin=%lld %lldx%lld Cout=%lld k=%lld s=%d w=%s",
             (long long)B, (long long)Cin, (long long)H, (long long)W, (long long)Cout, (long long)Kk,
             stride, omni_dtype_name(wdt));
    ct_cmp_dev(what, &dout, &ho, wdt == OMNI_DTYPE_F32 ? 1e-4 : 2e-2);
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&ho, &dout);
}

START_TEST(test_conv2d_groupnorm_upsample_match_cpu)
{
    struct omni_error e = {0};
    static const int p1[4] = {1, 1, 1, 1}, p0[4] = {0, 0, 0, 0}, pd[4] = {0, 0, 1, 1};
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        one_conv2d(2, 3, 9, 9, 5, 3, 1, p1, dts[d]);
        one_conv2d(1, 64, 16, 16, 128, 3, 1, p1, dts[d]);
        one_conv2d(2, 32, 17, 13, 16, 1, 1, p0, dts[d]);
        one_conv2d(1, 16, 16, 16, 16, 3, 2, pd, dts[d]);
        one_conv2d(1, 8, 64, 64, 3, 3, 1, p1, dts[d]);
    }
    /* groupnorm (in place on the device, as the VQ decoder uses it) */
    static const int64_t g[][4] = {{2, 64, 81, 32}, {1, 128, 256, 32}, {3, 6, 5, 3}};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        const int64_t B = g[i][0], C = g[i][1], S = g[i][2], G = g[i][3];
        struct omni_tensor hx, dx, hw, dw, hb, db, ho;
        pair(&hx, &dx, OMNI_DTYPE_F32, 2, 3, SH(B, C, S));
        pair(&hw, &dw, OMNI_DTYPE_F32, 1, 1, SH(C));
        pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(C));
        kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(B, C, S));
        ck_assert_int_eq(omni_op_groupnorm(&ho, &hx, &hw, &hb, (int)G, 1e-6f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_groupnorm(&dx, &dx, &dw, &db, (int)G, 1e-6f, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("groupnorm", &dx, &ho, 1e-5);
        rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db);
        kt_release(&ho);
    }
    struct omni_tensor hx, dx, ho, dout;
    pair(&hx, &dx, OMNI_DTYPE_F32, 1, 4, SH(2, 3, 5, 7));
    kt_tensor(&ho, OMNI_DTYPE_F32, 4, SH(2, 3, 10, 14));
    ct_dalloc(&dout, OMNI_DTYPE_F32, 4, SH(2, 3, 10, 14));
    ck_assert_int_eq(omni_op_upsample_nearest2x(&ho, &hx, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_upsample_nearest2x(&dout, &dx, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev("upsample_nearest2x", &dout, &ho, 0.0);
    rel2(&hx, &dx), rel2(&ho, &dout);
}
END_TEST

START_TEST(test_patch_embed_concat_l2norm_vq_nearest_match_cpu)
{
    struct omni_error e = {0};
    {
        struct omni_tensor hx, dx, hw, dw, hb, db, ho, dout;
        pair(&hx, &dx, OMNI_DTYPE_F32, 1, 4, SH(2, 3, 30, 29));
        pair(&hw, &dw, OMNI_DTYPE_F32, 0.1f, 4, SH(40, 3, 14, 14));
        pair(&hb, &db, OMNI_DTYPE_F32, 1, 1, SH(40));
        kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(2, 4, 40));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 3, SH(2, 4, 40));
        ck_assert_int_eq(omni_op_patch_embed(&ho, &hx, &hw, &hb, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_patch_embed(&dout, &dx, &dw, &db, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("patch_embed", &dout, &ho, 1e-4);
        rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&ho, &dout);
    }
    {
        struct omni_tensor ha, da, hb, db, hc, dc, ho, dout;
        pair(&ha, &da, OMNI_DTYPE_F32, 1, 3, SH(2, 9, 5));
        pair(&hb, &db, OMNI_DTYPE_F32, 1, 3, SH(2, 9, 12)); /* used as a (2,9,7) view */
        pair(&hc, &dc, OMNI_DTYPE_F32, 1, 3, SH(2, 9, 1));
        kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(2, 9, 13));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 3, SH(2, 9, 13));
        struct omni_tensor hx[3] = {ha, kt_slice_last(&hb, 2, 7), hc};
        struct omni_tensor dxs[3] = {da, kt_slice_last(&db, 2, 7), dc};
        ck_assert_int_eq(omni_op_concat_last(&ho, hx, 3, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_concat_last(&dout, dxs, 3, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("concat_last", &dout, &ho, 0.0);
        rel2(&ha, &da), rel2(&hb, &db), rel2(&hc, &dc), rel2(&ho, &dout);
    }
    {
        const int64_t N = 256, V = 16384, D = 8;
        struct omni_tensor hz, dz, he, de, ho, dout, hid, did, got;
        pair(&hz, &dz, OMNI_DTYPE_F32, 1, 2, SH(N, D));
        pair(&he, &de, OMNI_DTYPE_F32, 1, 2, SH(V, D));
        kt_tensor(&ho, OMNI_DTYPE_F32, 2, SH(N, D));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 2, SH(N, D));
        ck_assert_int_eq(omni_op_l2_normalize(&ho, &hz, 1e-12f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_l2_normalize(&dout, &dz, 1e-12f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_l2_normalize(&he, &he, 1e-12f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_l2_normalize(&de, &de, 1e-12f, &e), OMNI_OK);
        ct_sync();
        ct_cmp_dev("l2_normalize", &dout, &ho, 1e-6);
        ct_cmp_dev("l2_normalize in place", &de, &he, 1e-6);
        /* the device codebook must equal the host one bit for bit for exact ids */
        omni_tensor_release(&de);
        ct_up(&de, &he);
        kt_tensor(&hid, OMNI_DTYPE_I32, 1, SH(N));
        ct_dalloc(&did, OMNI_DTYPE_I32, 1, SH(N));
        ck_assert_int_eq(omni_op_vq_nearest(&hid, &ho, &he, &e), OMNI_OK);
        omni_tensor_release(&dout);
        ct_up(&dout, &ho);
        ck_assert_int_eq(omni_op_vq_nearest(&did, &dout, &de, &e), OMNI_OK);
        ct_sync();
        ct_down(&got, &did);
        ck_assert_int_eq(memcmp(omni_tensor_data(&got), omni_tensor_data(&hid), (size_t)N * 4), 0);
        ct_guard_check(&did, "vq ids");
        kt_release(&got);
        rel2(&hz, &dz), rel2(&he, &de), rel2(&ho, &dout), rel2(&hid, &did);
    }
}
END_TEST

START_TEST(test_context_reports_card_and_memory)
{
    struct omni_error e = {0};
    struct omni_cuda_info info;
    ck_assert_int_eq(omni_cuda_device_info(CT_DEV, &info, &e), OMNI_OK);
    ck_assert(info.name[0] != '\0');
    ck_assert_int_gt(info.sm_count, 0);
    ck_assert_ptr_nonnull(omni_cuda_stream(CT_DEV));
    size_t before = omni_cuda_memory_used(CT_DEV);
    struct omni_tensor t;
    ct_dalloc(&t, OMNI_DTYPE_F32, 1, SH(1 << 20));
    ck_assert_uint_ge(omni_cuda_memory_used(CT_DEV), before + (4u << 20));
    ck_assert_uint_ge(omni_cuda_memory_peak(CT_DEV), omni_cuda_memory_used(CT_DEV));
    omni_tensor_release(&t);
    ck_assert_uint_eq(omni_cuda_memory_used(CT_DEV), before);
    printf("device: %s (sm_%d%d, %d SMs, %.1f GiB)\n", info.name, info.major, info.minor,
           info.sm_count, (double)info.total_mem / (1 << 30));
}
END_TEST

/* omni_op_zero on the device against its CPU twin: random bits (f32, bf16, i32) end as
 * zero bytes at the same address, a view at an offset clears only its own elements, and
 * the guard bytes after the data stay. */
START_TEST(test_zero_matches_cpu_in_place)
{
    struct omni_error e = {0};
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_BF16, OMNI_DTYPE_I32};
    static const int64_t ns[3] = {1031, 4097, 65536 + 3};
    for (int i = 0; i < 3; i++) {
        struct omni_tensor h, d, hz, dz;
        pair(&h, &d, dts[i] == OMNI_DTYPE_I32 ? OMNI_DTYPE_F32 : dts[i], 1, 1, SH(ns[i]));
        if (dts[i] == OMNI_DTYPE_I32) { /* the same bits, seen as i32 */
            h.dtype = d.dtype = OMNI_DTYPE_I32;
        }
        void *before = omni_tensor_data(&d);
        /* the middle third as a view: the CPU twin clears the same elements of h */
        const int64_t lo = ns[i] / 3, len = ns[i] / 3;
        const size_t es = omni_dtype_size(dts[i]);
        ck_assert_int_eq(omni_tensor_view(&hz, h.buf, h.offset + lo * (int64_t)es, dts[i], 1,
                                          SH(len), &e), OMNI_OK);
        ck_assert_int_eq(omni_tensor_view(&dz, d.buf, d.offset + lo * (int64_t)es, dts[i], 1,
                                          SH(len), &e), OMNI_OK);
        ck_assert_int_eq(omni_op_zero(&hz, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_zero(&dz, &e), OMNI_OK);
        ct_sync();
        struct omni_tensor got;
        ct_down(&got, &d);
        ck_assert_ptr_eq(omni_tensor_data(&d), before);
        ck_assert_msg(memcmp(omni_tensor_data(&got), omni_tensor_data(&h), (size_t)ns[i] * es) == 0,
                      "dtype %d: the device bytes differ from the CPU twin's", dts[i]);
        const unsigned char *gb = omni_tensor_data(&got);
        for (int64_t k = 0; k < ns[i] * (int64_t)es; k++) {
            const int inside = k >= lo * (int64_t)es && k < (lo + len) * (int64_t)es;
            if (inside)
                ck_assert_msg(gb[k] == 0, "dtype %d: byte %lld of the view is %#x", dts[i],
                              (long long)k, gb[k]);
        }
        ct_guard_check(&d, "omni_op_zero (view)");
        /* the whole tensor */
        ck_assert_int_eq(omni_op_zero(&d, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_zero(&h, &e), OMNI_OK);
        ct_sync();
        kt_release(&got);
        ct_down(&got, &d);
        ck_assert_msg(memcmp(omni_tensor_data(&got), omni_tensor_data(&h), (size_t)ns[i] * es) == 0,
                      "dtype %d: the whole tensor is not zero", dts[i]);
        for (int64_t k = 0; k < ns[i] * (int64_t)es; k++)
            ck_assert(((const unsigned char *)omni_tensor_data(&got))[k] == 0);
        ct_guard_check(&d, "omni_op_zero");
        kt_release(&got);
        omni_tensor_release(&hz);
        omni_tensor_release(&dz);
        rel2(&h, &d);
    }
}
END_TEST

/* A reserved buffer hands its memory back and takes it again at the same address: the
 * accounting follows, and a CUDA graph recorded on it before replays correctly after. */
START_TEST(test_reserved_buffer_drops_and_restores_pages_under_a_graph)
{
    struct omni_error e = {0};
    const int64_t n = (1 << 20) + 3;
    struct omni_tensor hx, dx, want, y;
    pair(&hx, &dx, OMNI_DTYPE_F32, 2, 1, SH(n));
    kt_tensor(&want, OMNI_DTYPE_F32, 1, SH(n));
    ck_assert_int_eq(omni_op_gelu(&want, &hx, &e), OMNI_OK);
    ct_sync();
    const size_t used0 = omni_cuda_memory_used(CT_DEV);
    struct omni_buffer *b = omni_buffer_new_reserved(CT_DEV, (size_t)n * 4, &e);
    ck_assert_msg(b != NULL, "%s", e.msg);
    const size_t used1 = omni_cuda_memory_used(CT_DEV);
    ck_assert_msg(used1 >= used0 + (size_t)n * 4, "used %zu -> %zu", used0, used1);
    ck_assert_int_eq(omni_tensor_view(&y, b, 0, OMNI_DTYPE_F32, 1, SH(n), &e), OMNI_OK);
    omni_buffer_unref(b);
    struct omni_tensor h;
    ct_down(&h, &y); /* zero-filled */
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(kt_f(&h)[i] == 0.0f, "element %lld of a new reserved buffer is %g",
                      (long long)i, kt_f(&h)[i]);
    kt_release(&h);
    cudaStream_t s = (cudaStream_t)omni_cuda_stream(CT_DEV);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    CT_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    int rc = omni_op_gelu(&y, &dx, &e);
    CT_CUDA(cudaStreamEndCapture(s, &graph));
    ck_assert_msg(rc == OMNI_OK, "gelu under capture: %s", e.msg);
    CT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    CT_CUDA(cudaGraphLaunch(exec, s));
    ct_sync();
    ct_down(&h, &y); /* no guard after a reserved buffer: compared as is */
    ct_cmp("gelu into a reserved buffer (graph)", kt_f(&h), kt_f(&want), (size_t)n, 1e-5);
    kt_release(&h);
    void *addr = omni_tensor_data(&y);
    ck_assert_int_eq(omni_buffer_drop_pages(y.buf), 1);
    ck_assert_int_eq(omni_buffer_has_pages(y.buf), 0);
    const size_t used2 = omni_cuda_memory_used(CT_DEV);
    ck_assert_msg(used2 + (size_t)n * 4 <= used1, "dropping the pages: used %zu -> %zu", used1, used2);
    ck_assert_int_eq(omni_buffer_drop_pages(y.buf), 0); /* nothing left to drop */
    ck_assert_int_eq(omni_buffer_restore_pages(y.buf, &e), OMNI_OK);
    ck_assert_int_eq(omni_buffer_has_pages(y.buf), 1);
    ck_assert_ptr_eq(omni_tensor_data(&y), addr);
    ck_assert_uint_eq(omni_cuda_memory_used(CT_DEV), used1);
    ck_assert_int_eq(omni_op_zero(&y, &e), OMNI_OK);
    CT_CUDA(cudaGraphLaunch(exec, s));
    ct_sync();
    ct_down(&h, &y); /* no guard after a reserved buffer: compared as is */
    ct_cmp("gelu into the restored pages (the same graph)", kt_f(&h), kt_f(&want), (size_t)n, 1e-5);
    kt_release(&h);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    /* freed with its pages dropped: the accounting returns to where it was */
    ck_assert_int_eq(omni_buffer_drop_pages(y.buf), 1);
    omni_tensor_release(&y);
    ck_assert_uint_eq(omni_cuda_memory_used(CT_DEV), used0);
    rel2(&hx, &dx);
    kt_release(&want);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cuda_ops");
    TCase *t = tcase_create("ops");
    tcase_add_checked_fixture(t, ct_setup, ct_teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_context_reports_card_and_memory);
    tcase_add_test(t, test_matmul_matches_cpu_over_shape_table);
    tcase_add_test(t, test_lora_update_matches_cpu_over_shape_table);
    tcase_add_test(t, test_add_add_row_and_copies_match_cpu);
    tcase_add_test(t, test_norms_match_cpu);
    tcase_add_test(t, test_activations_match_cpu_across_the_softplus_threshold);
    tcase_add_test(t, test_conv1d_matches_cpu_sequence_and_step);
    tcase_add_test(t, test_embedding_matches_cpu_and_reports_bad_ids_at_sync);
    tcase_add_test(t, test_embedding_add_and_sample_at_read_device_counters);
    tcase_add_test(t, test_softmax_argmax_and_sampler_match_cpu);
    tcase_add_test(t, test_layernorm_gelu_match_cpu);
    tcase_add_test(t, test_attention_matches_cpu_on_fused_qkv_views);
    tcase_add_test(t, test_conv2d_groupnorm_upsample_match_cpu);
    tcase_add_test(t, test_patch_embed_concat_l2norm_vq_nearest_match_cpu);
    tcase_add_test(t, test_zero_matches_cpu_in_place);
    tcase_add_test(t, test_reserved_buffer_drops_and_restores_pages_under_a_graph);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return ct_main("check_cuda_ops", suite); }

#else /* !OMNI_HAVE_CUDA */

int main(void) { return ct_main_without_cuda("check_cuda_ops"); }

#endif
