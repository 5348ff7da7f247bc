/* tests/cuda/check_cuda_ssd.c - the chunked SSD scan and the causal conv1d
 * of the Mamba-2 prefill (kernels/cuda/ssm.cu) against their CPU twins at
 * the shapes the model runs: MMU prefill (B 1, T 745), T2I batch 16
 * (T <= 128), a 16k-token prompt, T = 1, chunk +- 1, G = 2, P and N past one
 * 64-wide tile, chunks that are no multiple of 32; small chunks (8) around
 * their boundaries and the sequential path (chunk 0); the decode step at batch
 * 1/16/32 (ssd_step: y 1e-4, state 1e-5). Every case draws fresh
 * random inputs, starts from a random (nonzero) state, reads x/B/C/dt as
 * strided views of wider rows (as in zxbcdt) and compares y and the final
 * state within 1e-4 of max|ref| (conv1d: 1e-5, its state exactly); device
 * outputs start as NaN and carry guard regions (tests/cuda/cudatest.h).
 *
 * Without a device the suite prints a skip message and exits 0, unless
 * OMNI_REQUIRE_CUDA is set, which makes it a failure. */
#include <math.h>
#include <time.h>

#include "cudatest.h"

#ifdef OMNI_HAVE_CUDA



/* ---- conv1d ---------------------------------------------------------------------------------- */

/* Two calls in a row on consecutive pieces (T1, then T2 positions) of a
 * (B, T1+T2, C) view of wider rows: the second call starts from the state
 * the first one left (or from zeros without a state). */
static void conv_pair(int64_t B, int64_t T1, int64_t T2, int64_t C, int64_t K, int with_state)
{
    struct omni_error e = {0};
    const int64_t F = C + 13, T = T1 + T2;
    struct omni_tensor hx, dx, hw, dw, hb, db, hs, ds, ho, dout;
    char what[160];
    pair(&hx, &dx, OMNI_DTYPE_F32, 1, 3, SH(B, T, F));
    pair(&hw, &dw, OMNI_DTYPE_F32, 0.5f, 2, SH(C, K));
    pair(&hb, &db, OMNI_DTYPE_F32, 0.5f, 1, SH(C));
    pair(&hs, &ds, OMNI_DTYPE_F32, 1, 3, SH(B, C, K));
    for (int part = 0; part < 2; part++) {
        const int64_t t0 = part ? T1 : 0, n = part ? T2 : T1;
        if (n == 0)
            continue;
        kt_tensor(&ho, OMNI_DTYPE_F32, 3, SH(B, n, C));
        ct_dalloc(&dout, OMNI_DTYPE_F32, 3, SH(B, n, C));
        struct omni_tensor vx = kt_slice_last(&hx, 3, C), vdx = kt_slice_last(&dx, 3, C);
        vx.shape[1] = vdx.shape[1] = n;
        vx.offset += t0 * F * 4, vdx.offset += t0 * F * 4;
        ck_assert_int_eq(omni_op_conv1d_causal(&ho, &vx, &hw, &hb, with_state ? &hs : NULL, 1, &e), OMNI_OK);
        int rc = omni_op_conv1d_causal(&dout, &vdx, &dw, &db, with_state ? &ds : NULL, 1, &e);
        ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
        ct_sync();
        snprintf(what, sizeof what, "conv1d_causal B=%lld T=%lld+%lld C=%lld K=%lld state=%d part %d",
                 (long long)B, (long long)T1, (long long)T2, (long long)C, (long long)K, with_state, part);
        ct_cmp_dev(what, &dout, &ho, 1e-5);
        ct_cmp_dev("conv1d_causal state", &ds, &hs, 0.0);
        kt_release(&ho);
        omni_tensor_release(&dout);
    }
    rel2(&hx, &dx), rel2(&hw, &dw), rel2(&hb, &db), rel2(&hs, &ds);
}

START_TEST(test_conv1d_causal_matches_cpu_at_model_shapes_and_in_pieces)
{
    /* {B, T1, T2, C, K}: MMU prefill, T2I batch 16, T around the 8-position
     * runs, T < K - 1 continuing from the state, K 1..3, K 5/6 (generic path) */
    static const int64_t t[][5] = {{1, 745, 0, 4352, 4}, {16, 128, 0, 4352, 4}, {16, 70, 1, 4352, 4},
                                   {1, 1, 1, 300, 4},    {1, 2, 5, 33, 4},      {2, 7, 9, 65, 4},
                                   {3, 8, 8, 130, 4},    {1, 9, 17, 257, 4},    {2, 3, 30, 50, 3},
                                   {2, 1, 12, 40, 2},    {1, 5, 6, 20, 1},      {2, 11, 3, 70, 5},
                                   {1, 2, 20, 9, 6}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (int s = 0; s < 2; s++)
            conv_pair(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], s);
}
END_TEST

/* ---- SSD scan -------------------------------------------------------------------------------- */

/* SSD inputs as views of one xBC-like buffer (B, T, H*P + 2*G*N + 5) plus dt (B, T, H + 3). */
struct ssd_case {
    int64_t B, T, H, P, G, N, W;
    struct omni_tensor hxbc, dxbc, hdt, ddt, hA, dA, hD, dD, hbias, dbias, hs, ds;
};

static void ssd_make(struct ssd_case *c)
{
    c->W = c->H * c->P + 2 * c->G * c->N + 5;
    pair(&c->hxbc, &c->dxbc, OMNI_DTYPE_F32, 1, 3, SH(c->B, c->T, c->W));
    ct_hrand(&c->hdt, &R, OMNI_DTYPE_F32, 1.5f, 3, SH(c->B, c->T, c->H + 3));
    /* dt_raw + bias across the softplus threshold and large (decay underflow) */
    static const float special[] = {-30.f, -17.f, 0.f, 19.9f, 20.1f, 40.f};
    float *dt = kt_f(&c->hdt);
    for (int64_t i = 0; i < 6 && i * 7 < omni_tensor_numel(&c->hdt); i++)
        dt[i * 7] = special[i];
    ct_up(&c->ddt, &c->hdt);
    ct_hrand(&c->hA, &R, OMNI_DTYPE_F32, 1, 1, SH(c->H));
    for (int64_t h = 0; h < c->H; h++)
        kt_f(&c->hA)[h] = -expf(tu_rng_uniform(&R, 0.0f, 2.77f)); /* A in [-16, -1] */
    ct_up(&c->dA, &c->hA);
    pair(&c->hD, &c->dD, OMNI_DTYPE_F32, 1, 1, SH(c->H));
    ct_hrand(&c->hbias, &R, OMNI_DTYPE_F32, 1, 1, SH(c->H));
    for (int64_t h = 0; h < c->H; h++)
        kt_f(&c->hbias)[h] = tu_rng_uniform(&R, -6.0f, -2.0f);
    ct_up(&c->dbias, &c->hbias);
    pair(&c->hs, &c->ds, OMNI_DTYPE_F32, 0.5f, 4, SH(c->B, c->H, c->P, c->N));
}

static void ssd_free(struct ssd_case *c)
{
    rel2(&c->hxbc, &c->dxbc), rel2(&c->hdt, &c->ddt), rel2(&c->hA, &c->dA);
    rel2(&c->hD, &c->dD), rel2(&c->hbias, &c->dbias), rel2(&c->hs, &c->ds);
}

/* views x (B,T,H,P) at column 1, Bm/Cm (B,T,G,N), dt (B,T,H) of base tensors */
static void ssd_views(const struct ssd_case *c, const struct omni_tensor *xbc,
                      const struct omni_tensor *dtb, struct omni_tensor *x, struct omni_tensor *Bm,
                      struct omni_tensor *Cm, struct omni_tensor *dt)
{
    *x = *xbc;
    x->ndim = 4;
    x->shape[0] = c->B, x->shape[1] = c->T, x->shape[2] = c->H, x->shape[3] = c->P;
    x->strides[0] = c->T * c->W, x->strides[1] = c->W, x->strides[2] = c->P, x->strides[3] = 1;
    x->offset = xbc->offset + 4;
    *Bm = *x;
    Bm->shape[2] = c->G, Bm->shape[3] = c->N, Bm->strides[2] = c->N;
    Bm->offset = x->offset + c->H * c->P * 4;
    *Cm = *Bm;
    Cm->offset = Bm->offset + c->G * c->N * 4;
    *dt = *dtb;
    dt->shape[2] = c->H;
}

/* zero != 0: omni_op_ssd_scan_from_zero on both sides, the device state filled with NaNs
 * (a read of it would show), the host state with other values */
static void one_scan_z(int64_t B, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N,
                       int64_t chunk, int zero)
{
    struct omni_error e = {0};
    struct ssd_case c = {.B = B, .T = T, .H = H, .P = P, .G = G, .N = N};
    struct omni_tensor hx, hB, hC, hdt, dx, dB, dC, ddt, hy, dy;
    char what[160];
    ssd_make(&c);
    ssd_views(&c, &c.hxbc, &c.hdt, &hx, &hB, &hC, &hdt);
    ssd_views(&c, &c.dxbc, &c.ddt, &dx, &dB, &dC, &ddt);
    kt_tensor(&hy, OMNI_DTYPE_F32, 4, SH(B, T, H, P));
    ct_dalloc(&dy, OMNI_DTYPE_F32, 4, SH(B, T, H, P));
    int (*scan)(struct omni_tensor *, const struct omni_tensor *, const struct omni_tensor *,
                const struct omni_tensor *, const struct omni_tensor *, const struct omni_tensor *,
                const struct omni_tensor *, const struct omni_tensor *, struct omni_tensor *,
                int64_t, struct omni_error *) = zero ? omni_op_ssd_scan_from_zero : omni_op_ssd_scan;
    if (zero)
        CT_CUDA(cudaMemset(omni_tensor_data(&c.ds), 0xff, (size_t)omni_tensor_nbytes(&c.ds)));
    ck_assert_int_eq(scan(&hy, &hx, &hdt, &c.hA, &hB, &hC, &c.hD, &c.hbias, &c.hs, chunk, &e), OMNI_OK);
    int rc = scan(&dy, &dx, &ddt, &c.dA, &dB, &dC, &c.dD, &c.dbias, &c.ds, chunk, &e);
    ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
    ct_sync();
    snprintf(what, sizeof what, "ssd_scan%s B=%lld T=%lld H=%lld P=%lld G=%lld N=%lld chunk=%lld",
             zero ? "_from_zero" : "", (long long)B, (long long)T, (long long)H, (long long)P,
             (long long)G, (long long)N, (long long)chunk);
    ct_cmp_dev(what, &dy, &hy, 1e-4);
    ct_cmp_dev("ssd_scan final state", &c.ds, &c.hs, 1e-4);
    rel2(&hy, &dy);
    ssd_free(&c);
}

static void one_scan(int64_t B, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk)
{
    one_scan_z(B, T, H, P, G, N, chunk, 0);
}

START_TEST(test_ssd_scan_matches_cpu_at_chunk_boundaries)
{
    /* small chunk (8): T around the boundaries, odd sizes, G = 2 */
    static const int64_t t[][6] = {{1, 1, 4, 16, 1, 32},  {2, 3, 4, 16, 1, 32}, {1, 7, 4, 16, 1, 32},
                                   {1, 8, 4, 16, 1, 32},  {1, 9, 4, 16, 1, 32}, {2, 17, 6, 10, 2, 40},
                                   {3, 5, 3, 5, 1, 7},    {1, 64, 4, 16, 2, 32}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        one_scan(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], 8);
        one_scan(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], 0);
    }
}
END_TEST

START_TEST(test_ssd_scan_matches_cpu_at_full_width)
{
    /* Mamba-2 1.3B heads: H 64, P 64, N 128, chunk 256 */
    static const int64_t T[] = {1, 3, 4, 5, 255, 256, 257, 600};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        one_scan(1, T[i], 64, 64, 1, 128, 256);
    one_scan(2, 72, 64, 64, 1, 128, 256);
    one_scan(1, 40, 64, 64, 1, 128, 0);
    /* from a zero state: one chunk (the T2I prefill), several, the sequential path */
    one_scan_z(2, 72, 64, 64, 1, 128, 256, 1);
    one_scan_z(1, 600, 64, 64, 1, 128, 256, 1);
    one_scan_z(2, 17, 6, 10, 2, 40, 8, 1);
    one_scan_z(1, 40, 64, 64, 1, 128, 0, 1);
}
END_TEST

START_TEST(test_ssd_step_matches_cpu_batch_1_16_32)
{
    static const int64_t t[][5] = {{1, 64, 64, 1, 128}, {16, 64, 64, 1, 128}, {32, 64, 64, 1, 128},
                                   {3, 6, 10, 2, 40},   {2, 4, 16, 1, 300}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct omni_error e = {0};
        struct ssd_case c = {.B = t[i][0], .T = 1, .H = t[i][1], .P = t[i][2], .G = t[i][3], .N = t[i][4]};
        struct omni_tensor hx, hB, hC, hdt, dx, dB, dC, ddt, hy, dy;
        ssd_make(&c);
        ssd_views(&c, &c.hxbc, &c.hdt, &hx, &hB, &hC, &hdt);
        ssd_views(&c, &c.dxbc, &c.ddt, &dx, &dB, &dC, &ddt);
        /* drop the T axis: (B,H,P), (B,G,N), (B,H) */
        struct omni_tensor *v4[3] = {&hx, &hB, &hC}, *w4[3] = {&dx, &dB, &dC};
        for (int k = 0; k < 3; k++) {
            for (struct omni_tensor *v = v4[k]; v; v = v == v4[k] ? w4[k] : NULL) {
                v->ndim = 3;
                v->shape[1] = v->shape[2], v->shape[2] = v->shape[3];
                v->strides[1] = v->strides[2], v->strides[2] = 1;
            }
        }
        hdt.ndim = ddt.ndim = 2;
        hdt.shape[1] = ddt.shape[1] = c.H;
        hdt.strides[1] = ddt.strides[1] = 1;
        kt_tensor(&hy, OMNI_DTYPE_F32, 3, SH(c.B, c.H, c.P));
        ct_dalloc(&dy, OMNI_DTYPE_F32, 3, SH(c.B, c.H, c.P));
        ck_assert_int_eq(omni_op_ssd_step(&hy, &hx, &hdt, &c.hA, &hB, &hC, &c.hD, &c.hbias, &c.hs, &e), OMNI_OK);
        int rc = omni_op_ssd_step(&dy, &dx, &ddt, &c.dA, &dB, &dC, &c.dD, &c.dbias, &c.ds, &e);
        ck_assert_msg(rc == OMNI_OK, "%s", e.msg);
        ct_sync();
        ct_cmp_dev("ssd_step y", &dy, &hy, 1e-4);
        ct_cmp_dev("ssd_step state", &c.ds, &c.hs, 1e-5);
        rel2(&hy, &dy);
        ssd_free(&c);
    }
}
END_TEST

START_TEST(test_ssd_scan_matches_cpu_at_model_shapes)
{
    /* Mamba-2 1.3B heads (H 64, P 64, N 128, chunk 256): MMU prefill, T2I
     * batch 16, T = 1, chunk +- 1, three and a half chunks */
    static const int64_t t[][2] = {{1, 745}, {16, 128}, {16, 70}, {1, 1}, {2, 255}, {1, 257}, {1, 896}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        one_scan(t[i][0], t[i][1], 64, 64, 1, 128, 256);
}
END_TEST

START_TEST(test_ssd_scan_matches_cpu_at_odd_shapes)
{
    /* {B, T, H, P, G, N, chunk}: G = 2 and 4, P and N past one 64-wide tile,
     * chunks that are no multiple of 32 or 64, more chunks than one tile row */
    static const int64_t t[][7] = {{2, 300, 8, 64, 2, 128, 256}, {1, 100, 3, 70, 1, 130, 40},
                                   {2, 130, 4, 64, 2, 128, 64},  {3, 33, 4, 5, 4, 7, 8},
                                   {1, 500, 2, 130, 1, 65, 100}, {2, 97, 6, 16, 3, 32, 31},
                                   {1, 64, 4, 16, 2, 32, 1},     {2, 40, 2, 64, 1, 128, 129}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        one_scan(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], t[i][6]);
}
END_TEST

START_TEST(test_ssd_scan_matches_cpu_on_a_16k_prompt)
{
    one_scan(1, 16384, 64, 64, 1, 128, 256);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cuda_ssd");
    TCase *t = tcase_create("ssd");
    tcase_add_checked_fixture(t, ct_setup, ct_teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_conv1d_causal_matches_cpu_at_model_shapes_and_in_pieces);
    tcase_add_test(t, test_ssd_scan_matches_cpu_at_model_shapes);
    tcase_add_test(t, test_ssd_scan_matches_cpu_at_odd_shapes);
    tcase_add_test(t, test_ssd_scan_matches_cpu_on_a_16k_prompt);
    tcase_add_test(t, test_ssd_scan_matches_cpu_at_chunk_boundaries);
    tcase_add_test(t, test_ssd_scan_matches_cpu_at_full_width);
    tcase_add_test(t, test_ssd_step_matches_cpu_batch_1_16_32);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return ct_main("check_cuda_ssd", suite); }

#else /* !OMNI_HAVE_CUDA */

int main(void) { return ct_main_without_cuda("check_cuda_ssd"); }

#endif
