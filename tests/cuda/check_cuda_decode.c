/* tests/cuda/check_cuda_decode.c - the fused decode-step ops (omni/ops/decode.h)
 * on CUDA against their CPU twins: fresh random inputs every run (seed
 * printed; OMNI_TEST_SEED replays), M = 1, 3, 8, 16 and odd sizes, the full
 * OmniMamba widths, device outputs starting as NaN bytes with guard regions
 * after every buffer. The GEMV is held to 1e-4 of max|ref| for every weight
 * dtype (the bf16 tensor-core path splits x into two bf16 parts); norms, the
 * SSD step + gate, conv and SSM states to 1e-4.
 * Without a device the suite skips (fails with OMNI_REQUIRE_CUDA=1). */
#include <math.h>
#include <time.h>

#include "cudatest.h"
#include "omni/ops/decode.h"
#include "../../kernels/decode.h" /* omni__dec_tc_config */

#ifdef OMNI_HAVE_CUDA



/* host tensor with values in [lo, hi) and its device copy */
static void pair_u(struct omni_tensor *h, struct omni_tensor *d, float lo, float hi, int ndim,
                   const int64_t *shape)
{
    kt_tensor(h, OMNI_DTYPE_F32, ndim, shape);
    kt_fill(&R, h, lo, hi);
    ct_up(d, h);
}

/* host output (contents irrelevant) and a NaN-filled guarded device twin */
static void outp(struct omni_tensor *h, struct omni_tensor *d, int ndim, const int64_t *shape)
{
    ct_hrand(h, &R, OMNI_DTYPE_F32, 1.0f, ndim, shape);
    ct_dalloc(d, OMNI_DTYPE_F32, ndim, shape);
}

enum { E_RS = 1, E_LR = 2, E_CONV = 4 };

static void one_gemv(int64_t M, int64_t N, int64_t K, int wdt, int64_t ldx, int flags, int64_t c0,
                     int64_t C, int64_t Kc, int64_t Rk, int64_t nparts, int with_bias)
{
    struct omni_error e = {0};
    struct omni_tensor hx, dx, hw, dw, hb, db, hy, dy, hp, dp, hu, du, hl, dl;
    struct omni_tensor hcw, dcw, hcb, dcb, hcs, dcs, hco, dco;
    char what[200];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1.0f, 2, SH(M, ldx));
    pair(&hw, &dw, wdt, 1.0f / sqrtf((float)K), 2, SH(N, K));
    pair(&hb, &db, OMNI_DTYPE_F32, 1.0f, 1, SH(N));
    outp(&hy, &dy, 2, SH(M, N));
    pair_u(&hp, &dp, 0.5f, 2.0f, 2, SH(M, nparts));
    pair(&hu, &du, OMNI_DTYPE_F32, 1.0f, 2, SH(M, Rk));
    pair(&hl, &dl, OMNI_DTYPE_F32, 0.3f, 2, SH(N, Rk));
    pair(&hcw, &dcw, OMNI_DTYPE_F32, 0.5f, 2, SH(C, Kc));
    pair(&hcb, &dcb, OMNI_DTYPE_F32, 0.5f, 1, SH(C));
    pair(&hcs, &dcs, OMNI_DTYPE_F32, 1.0f, 3, SH(M, C, Kc));
    outp(&hco, &dco, 2, SH(M, C));
    struct omni_tensor vx = kt_slice_last(&hx, 0, K), vdx = kt_slice_last(&dx, 0, K);
    struct omni_decode_epilogue he = {0}, de = {0};
    if (flags & E_RS) {
        he.part = &hp, de.part = &dp;
        he.count = de.count = (float)(nparts * 8);
        he.eps = de.eps = 1e-5f;
    }
    if (flags & E_LR) {
        he.u = &hu, de.u = &du, he.lb = &hl, de.lb = &dl;
        he.lr_scale = de.lr_scale = 4.0f;
    }
    if (flags & E_CONV) {
        he.conv_out = &hco, de.conv_out = &dco, he.conv_state = &hcs, de.conv_state = &dcs;
        he.conv_w = &hcw, de.conv_w = &dcw, he.conv_b = &hcb, de.conv_b = &dcb;
        he.c0 = de.c0 = c0;
    }
    const float alpha = flags & E_RS ? 1.0f : 0.75f;
    ck_assert_int_eq(omni_op_decode_gemv(&hy, &vx, &hw, with_bias ? &hb : NULL, alpha, &he, &e),
                     OMNI_OK);
    int rc = omni_op_decode_gemv(&dy, &vdx, &dw, with_bias ? &db : NULL, alpha, &de, &e);
    ck_assert_msg(rc == OMNI_OK, "decode_gemv on CUDA: %s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "decode_gemv M=%lld N=%lld K=%lld w=%s ldx=%lld flags=%d bias=%d",
             (long long)M, (long long)N, (long long)K, omni_dtype_name(wdt), (long long)ldx, flags,
             with_bias);
    ct_cmp_dev(what, &dy, &hy, 1e-4);
    if (flags & E_CONV) {
        char w2[240];
        snprintf(w2, sizeof w2, "%s conv_out", what);
        ct_cmp_dev(w2, &dco, &hco, 1e-4);
        snprintf(w2, sizeof w2, "%s conv_state", what);
        ct_cmp_dev(w2, &dcs, &hcs, 1e-4);
    }
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hy, &dy), rel2(&hp, &dp);
    rel2(&hu, &du), rel2(&hl, &dl), rel2(&hcw, &dcw), rel2(&hcb, &dcb), rel2(&hcs, &dcs);
    rel2(&hco, &dco);
}

START_TEST(test_decode_gemv_matches_cpu)
{
    static const int64_t Ms[5] = {1, 2, 3, 8, 16};
    static const int dts[3] = {OMNI_DTYPE_BF16, OMNI_DTYPE_F32, OMNI_DTYPE_F16};
    for (int i = 0; i < 5; i++) {
        const int64_t M = Ms[i];
        /* OmniMamba in_proj (LoRA rank 8 + conv over the xBC columns) and out_proj (row scale) */
        one_gemv(M, 8512, 2048, OMNI_DTYPE_BF16, 2048, E_LR | E_CONV, 4096, 4352, 4, 8, 4, 0);
        one_gemv(M, 2048, 4096, OMNI_DTYPE_BF16, 4096, E_RS, 0, 1, 1, 1, 512, 0);
        for (int d = 0; d < 3; d++) {
            /* odd N, strided x, every epilogue term, bias */
            one_gemv(M, 299, 96, dts[d], 100, E_RS | E_LR | E_CONV, 100, 150, 4, 5, 7, 1);
            /* K not a multiple of 32: the plain GEMV, or for bf16 and M <= 2 the FMA rows
             * (also K = 264: one full 256-wide chunk and a partial one) */
            one_gemv(M, 33, 40, dts[d], 40, E_LR | E_CONV, 3, 30, 3, 2, 3, 1);
            one_gemv(M, 45, 264, dts[d], 270, E_RS | E_LR, 0, 1, 1, 3, 11, 1);
            one_gemv(M, 17, 32, dts[d], 36, 0, 0, 1, 1, 1, 1, 1);
        }
    }
    /* two 16-column tiles per tensor-core block where the automatic choice takes one: N
     * past the last full pair (299), out_proj's row scale */
    omni__dec_tc_tiles(2);
    for (int i = 2; i < 5; i++) {
        one_gemv(Ms[i], 299, 96, OMNI_DTYPE_BF16, 100, E_RS | E_LR | E_CONV, 100, 150, 4, 5, 7, 1);
        one_gemv(Ms[i], 2048, 4096, OMNI_DTYPE_BF16, 4096, E_RS, 0, 1, 1, 1, 512, 0);
    }
    omni__dec_tc_tiles(0);
    /* the cuBLAS route (x split in two bf16 rows, one GEMM of 2M rows, the epilogue kernel),
     * forced onto odd shapes with every epilogue term, strided x and a bias; and the
     * tensor-core tile kept at the in_proj shape, where the automatic choice is cuBLAS */
    omni__dec_gemv_flags(32);
    for (int i = 2; i < 5; i++) {
        one_gemv(Ms[i], 299, 96, OMNI_DTYPE_BF16, 100, E_RS | E_LR | E_CONV, 100, 150, 4, 5, 7, 1);
        one_gemv(Ms[i], 45, 264, OMNI_DTYPE_BF16, 270, E_RS | E_LR, 0, 1, 1, 3, 11, 1);
        one_gemv(Ms[i], 2048, 4096, OMNI_DTYPE_BF16, 4096, E_RS, 0, 1, 1, 1, 512, 0);
    }
    omni__dec_gemv_flags(64);
    for (int i = 3; i < 5; i++)
        one_gemv(Ms[i], 8512, 2048, OMNI_DTYPE_BF16, 2048, E_LR | E_CONV, 4096, 4352, 4, 8, 4, 0);
    omni__dec_gemv_flags(0);
}
END_TEST

/* omni_op_matmul with bf16 weights and M <= 16 goes through the same GEMV (with
 * alpha, beta, bias): f32-level agreement, including M = 9..16, the FMA rows
 * (M <= 2; the text head's shape) and the cuBLAS route (16 rows of the image head) */
START_TEST(test_matmul_bf16_up_to_16_rows_matches_cpu)
{
    static const int64_t t[][3] = {{9, 257, 64},  {12, 1000, 2048}, {16, 2048, 4096},
                                   {5, 33, 96},   {1, 50288, 2048}, {2, 300, 264},
                                   {1, 7, 4104},  {16, 16384, 2048}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct omni_error e = {0};
        const int64_t M = t[i][0], N = t[i][1], K = t[i][2];
        struct omni_tensor hx, dx, hw, dw, hb, db, hy, dy;
        pair(&hx, &dx, OMNI_DTYPE_F32, 1.0f, 2, SH(M, K));
        pair(&hw, &dw, OMNI_DTYPE_BF16, 1.0f / sqrtf((float)K), 2, SH(N, K));
        pair(&hb, &db, OMNI_DTYPE_F32, 1.0f, 1, SH(N));
        pair(&hy, &dy, OMNI_DTYPE_F32, 1.0f, 2, SH(M, N));
        ck_assert_int_eq(omni_op_matmul(&hy, &hx, &hw, &hb, 0.5f, 0.25f, &e), OMNI_OK);
        ck_assert_int_eq(omni_op_matmul(&dy, &dx, &dw, &db, 0.5f, 0.25f, &e), OMNI_OK);
        ct_sync();
        char what[96];
        snprintf(what, sizeof what, "matmul bf16 M=%lld N=%lld K=%lld", (long long)M,
                 (long long)N, (long long)K);
        ct_cmp_dev(what, &dy, &hy, 1e-4);
        rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hy, &dy);
    }
}
END_TEST

static void one_norm(int64_t M, int64_t D, int with_x, int64_t Rk)
{
    struct omni_error e = {0};
    struct omni_tensor hri, dri, hx, dx, hw, dw, ha, da, ho, dout, hro, dro, hu, du;
    char what[128];
    pair(&hri, &dri, OMNI_DTYPE_F32, 1.0f, 2, SH(M, D));
    pair(&hx, &dx, OMNI_DTYPE_F32, 1.0f, 2, SH(M, D));
    pair(&hw, &dw, OMNI_DTYPE_F32, 1.0f, 1, SH(D));
    pair(&ha, &da, OMNI_DTYPE_F32, 0.1f, 2, SH(Rk ? Rk : 1, D));
    outp(&ho, &dout, 2, SH(M, D));
    outp(&hro, &dro, 2, SH(M, D));
    outp(&hu, &du, 2, SH(M, Rk ? Rk : 1));
    ck_assert_int_eq(omni_op_decode_norm(&ho, &hro, &hri, with_x ? &hx : NULL, &hw, 1e-5f,
                                         Rk ? &ha : NULL, Rk ? &hu : NULL, &e),
                     OMNI_OK);
    int rc = omni_op_decode_norm(&dout, &dro, &dri, with_x ? &dx : NULL, &dw, 1e-5f,
                                 Rk ? &da : NULL, Rk ? &du : NULL, &e);
    ck_assert_msg(rc == OMNI_OK, "decode_norm on CUDA: %s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "decode_norm M=%lld D=%lld x=%d R=%lld out", (long long)M,
             (long long)D, with_x, (long long)Rk);
    ct_cmp_dev(what, &dout, &ho, 1e-4);
    snprintf(what, sizeof what, "decode_norm M=%lld D=%lld x=%d R=%lld res_out", (long long)M,
             (long long)D, with_x, (long long)Rk);
    ct_cmp_dev(what, &dro, &hro, 1e-4);
    if (Rk) {
        snprintf(what, sizeof what, "decode_norm M=%lld D=%lld x=%d R=%lld u", (long long)M,
                 (long long)D, with_x, (long long)Rk);
        ct_cmp_dev(what, &du, &hu, 1e-4);
    }
    rel2(&hri, &dri), rel2(&hx, &dx), rel2(&hw, &dw), rel2(&ha, &da), rel2(&ho, &dout);
    rel2(&hro, &dro), rel2(&hu, &du);
}

START_TEST(test_decode_norm_matches_cpu)
{
    static const int64_t Ms[4] = {1, 3, 8, 16};
    for (int i = 0; i < 4; i++) {
        one_norm(Ms[i], 2048, 1, 8);
        one_norm(Ms[i], 2048, 0, 8);
        one_norm(Ms[i], 2048, 1, 0);
        one_norm(Ms[i], 100, 1, 5);
        one_norm(Ms[i], 5000, 1, 32);
    }
}
END_TEST

/* a 16-bit device state against the CPU's, both widened to f32: within one unit in the
 * last place of the state dtype relative to max|ref| (the f32 updates differ in rounding
 * order, so an element may round the other way) */
static void cmp_state16(const char *what, const struct omni_tensor *d, const struct omni_tensor *h)
{
    struct omni_error e = {0};
    struct omni_tensor hd, a, b;
    ct_down(&hd, d);
    kt_tensor(&a, OMNI_DTYPE_F32, h->ndim, h->shape);
    kt_tensor(&b, OMNI_DTYPE_F32, h->ndim, h->shape);
    ck_assert_int_eq(omni_op_copy(&a, &hd, &e), OMNI_OK);
    ck_assert_int_eq(omni_op_copy(&b, h, &e), OMNI_OK);
    ct_cmp(what, kt_f(&a), kt_f(&b), (size_t)omni_tensor_numel(h),
           h->dtype == OMNI_DTYPE_BF16 ? 8e-3 : 1e-3);
    ct_guard_check(d, what);
    kt_release(&hd), kt_release(&a), kt_release(&b);
}

static void one_mix_s(int64_t B, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk,
                      int sdt)
{
    struct omni_error e = {0};
    const int64_t E = H * P, Cd = E + 2 * G * N, F = E + Cd + H, np = E / chunk;
    struct omni_tensor hz, dz, hc, dc, hA, dA, hD, dD, hdb, ddb, hgw, dgw, hs, ds, hg, dg, hp, dp;
    char what[160];
    pair(&hz, &dz, OMNI_DTYPE_F32, 1.0f, 2, SH(B, F));
    pair(&hc, &dc, OMNI_DTYPE_F32, 1.0f, 2, SH(B, Cd));
    pair_u(&hA, &dA, -2.0f, -0.05f, 1, SH(H));
    pair(&hD, &dD, OMNI_DTYPE_F32, 1.0f, 1, SH(H));
    pair(&hdb, &ddb, OMNI_DTYPE_F32, 1.0f, 1, SH(H));
    pair(&hgw, &dgw, OMNI_DTYPE_F32, 1.0f, 1, SH(E));
    pair(&hs, &ds, sdt, 1.0f, 4, SH(B, H, P, N));
    outp(&hg, &dg, 2, SH(B, E));
    outp(&hp, &dp, 2, SH(B, np));
    ck_assert_int_eq(omni_op_decode_mix(&hg, &hp, &hz, &hc, &hA, &hD, &hdb, &hgw, &hs, G, &e),
                     OMNI_OK);
    int rc = omni_op_decode_mix(&dg, &dp, &dz, &dc, &dA, &dD, &ddb, &dgw, &ds, G, &e);
    ck_assert_msg(rc == OMNI_OK, "decode_mix on CUDA: %s", e.msg);
    ct_sync();
    snprintf(what, sizeof what,
             "decode_mix B=%lld H=%lld P=%lld G=%lld N=%lld chunk=%lld state %s g", (long long)B,
             (long long)H, (long long)P, (long long)G, (long long)N, (long long)chunk,
             omni_dtype_name(sdt));
    ct_cmp_dev(what, &dg, &hg, 1e-4);
    what[strlen(what) - 1] = 'p';
    ct_cmp_dev(what, &dp, &hp, 1e-4);
    what[strlen(what) - 1] = 's';
    if (sdt == OMNI_DTYPE_F32)
        ct_cmp_dev(what, &ds, &hs, 1e-4);
    else
        cmp_state16(what, &ds, &hs);
    rel2(&hz, &dz), rel2(&hc, &dc), rel2(&hA, &dA), rel2(&hD, &dD), rel2(&hdb, &ddb);
    rel2(&hgw, &dgw), rel2(&hs, &ds), rel2(&hg, &dg), rel2(&hp, &dp);
}

static void one_mix(int64_t B, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk)
{
    one_mix_s(B, H, P, G, N, chunk, OMNI_DTYPE_F32);
}

START_TEST(test_decode_mix_matches_cpu)
{
    static const int64_t Bs[4] = {1, 3, 8, 16};
    for (int i = 0; i < 4; i++) {
        one_mix(Bs[i], 64, 64, 1, 128, 8);  /* OmniMamba, batch-1 chunking */
        one_mix(Bs[i], 64, 64, 1, 128, 32); /* OmniMamba, batch-16 chunking */
        one_mix(Bs[i], 8, 16, 1, 16, 16);   /* the tiny model */
        one_mix(Bs[i], 6, 24, 2, 40, 8);    /* two groups, odd N */
        one_mix(Bs[i], 3, 32, 3, 200, 32);  /* N > 128 */
        /* 16-bit states (stage param state_dtype) */
        one_mix_s(Bs[i], 64, 64, 1, 128, 32, OMNI_DTYPE_BF16);
        one_mix_s(Bs[i], 64, 64, 1, 128, 8, OMNI_DTYPE_F16);
        one_mix_s(Bs[i], 6, 24, 2, 40, 8, OMNI_DTYPE_BF16);
        /* N = 256: eight values per lane, two runs of four */
        one_mix(Bs[i], 4, 32, 2, 256, 16);
        one_mix_s(Bs[i], 4, 32, 2, 256, 16, OMNI_DTYPE_F16);
        /* the one-value-per-load layout the runs of four replaced, still selectable */
        omni__dec_gemv_flags(8);
        one_mix(Bs[i], 64, 64, 1, 128, 32);
        one_mix_s(Bs[i], 64, 64, 1, 128, 32, OMNI_DTYPE_BF16);
        omni__dec_gemv_flags(0);
    }
}
END_TEST

/* Every (weight steps in flight, warps per block) configuration of the tensor-core GEMV
 * gives the CPU result on the OmniMamba shapes; each one's time per call is printed
 * (weights rotate over 8 copies, more than L2 holds), for tuning the automatic choice. */
/* The GEMV in the configuration now in force: y (from weight copy `first`, output NaN
 * first) against the CPU's hy, then the time of 64 calls rotating over the 8 weight copies
 * wv (wbytes each) */
static void check_and_time(const char *what, struct omni_tensor *dy, const struct omni_tensor *dx,
                           const struct omni_tensor *wv, int first, const struct omni_tensor *hy,
                           double wbytes)
{
    struct omni_error e = {0};
    cudaStream_t st = (cudaStream_t)omni_cuda_stream(CT_DEV);
    cudaEvent_t t0, t1;
    CT_CUDA(cudaEventCreate(&t0));
    CT_CUDA(cudaEventCreate(&t1));
    CT_CUDA(cudaMemset(omni_tensor_data(dy), 0xff, (size_t)omni_tensor_nbytes(dy)));
    ck_assert_int_eq(omni_op_decode_gemv(dy, dx, &wv[first], NULL, 1.0f, NULL, &e), OMNI_OK);
    ct_sync();
    ct_cmp_dev(what, dy, hy, 1e-4);
    const int reps = 64;
    CT_CUDA(cudaEventRecord(t0, st));
    for (int r = 0; r < reps; r++)
        ck_assert_int_eq(omni_op_decode_gemv(dy, dx, &wv[r % 8], NULL, 1.0f, NULL, &e), OMNI_OK);
    CT_CUDA(cudaEventRecord(t1, st));
    ct_sync();
    float ms = 0.0f;
    CT_CUDA(cudaEventElapsedTime(&ms, t0, t1));
    const double us_call = 1e3 * ms / reps;
    printf("%s: %.2f us/call, %.2f TB/s of weights\n", what, us_call, wbytes / (us_call * 1e6));
    CT_CUDA(cudaEventDestroy(t0));
    CT_CUDA(cudaEventDestroy(t1));
}

static void sweep(int64_t M, int64_t N, int64_t K, const char *name)
{
    struct omni_error e = {0};
    struct omni_tensor hx, dx, hw, hy, dy, dw8;
    pair(&hx, &dx, OMNI_DTYPE_F32, 1.0f, 2, SH(M, K));
    ct_hrand(&hw, &R, OMNI_DTYPE_BF16, 1.0f / sqrtf((float)K), 2, SH(N, K));
    outp(&hy, &dy, 2, SH(M, N));
    ct_dalloc(&dw8, OMNI_DTYPE_BF16, 3, SH(8, N, K));
    const size_t wb = (size_t)(N * K) * 2;
    for (int c = 0; c < 8; c++)
        CT_CUDA(cudaMemcpy((char *)omni_tensor_data(&dw8) + c * wb, omni_tensor_data(&hw), wb,
                           cudaMemcpyHostToDevice));
    struct omni_tensor wv[8];
    for (int c = 0; c < 8; c++) {
        wv[c] = dw8;
        wv[c].ndim = 2;
        wv[c].shape[0] = N, wv[c].shape[1] = K;
        wv[c].strides[0] = K, wv[c].strides[1] = 1;
        wv[c].offset = dw8.offset + (int64_t)(c * wb);
    }
    ck_assert_int_eq(omni_op_decode_gemv(&hy, &hx, &hw, NULL, 1.0f, NULL, &e), OMNI_OK);
    static const int us[2] = {4, 8}, nws[5] = {0, 2, 4, 8, 16};
    for (int rt = 1; rt <= 2; rt++)
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++) {
            if (rt == 2 && (nws[j] == 16 || (nws[j] == 0 && M <= 2)))
                continue; /* two tiles run at most 8 warps; FMA rows have no tiles */
            omni__dec_tc_config(nws[j], us[i]);
            omni__dec_tc_tiles(rt);
            char what[96];
            snprintf(what, sizeof what, "gemv %s M=%lld u=%d nw=%d tiles=%d", name, (long long)M,
                     rt == 2 ? 4 : us[i], nws[j], rt);
            check_and_time(what, &dy, &dx, wv, j % 8, &hy, (double)wb);
        }
    omni__dec_tc_config(0, 0);
    omni__dec_tc_tiles(0);
    if (M >= 3) { /* the cuBLAS route, forced */
        omni__dec_gemv_flags(32);
        char what[96];
        snprintf(what, sizeof what, "gemv %s M=%lld cublas", name, (long long)M);
        check_and_time(what, &dy, &dx, wv, 1, &hy, (double)wb);
        omni__dec_gemv_flags(0);
    }
    rel2(&hx, &dx), rel2(&hy, &dy);
    kt_release(&hw);
    omni_tensor_release(&dw8);
}

START_TEST(test_gemv_configs_agree_and_report_time)
{
    sweep(1, 8512, 2048, "in_proj");
    sweep(1, 2048, 4096, "out_proj");
    sweep(2, 8512, 2048, "in_proj");
    sweep(16, 8512, 2048, "in_proj");
    sweep(16, 2048, 4096, "out_proj");
    sweep(16, 16384, 2048, "image_head");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cuda_decode");
    TCase *t = tcase_create("decode");
    tcase_add_checked_fixture(t, ct_setup, ct_teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_decode_gemv_matches_cpu);
    tcase_add_test(t, test_matmul_bf16_up_to_16_rows_matches_cpu);
    tcase_add_test(t, test_decode_norm_matches_cpu);
    tcase_add_test(t, test_decode_mix_matches_cpu);
    tcase_add_test(t, test_gemv_configs_agree_and_report_time);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return ct_main("check_cuda_decode", suite); }

#else /* !OMNI_HAVE_CUDA */

int main(void) { return ct_main_without_cuda("check_cuda_decode"); }

#endif
