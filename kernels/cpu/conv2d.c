/* kernels/cpu/conv2d.c - 2-D convolution, NCHW, groups 1, as a banded
 * implicit GEMM; and nearest x2 upsampling.
 *
 * out[b, o, y, x] = bias[o] + sum_k W[o, k] * col[k, (y, x)] with
 * k = (i, dy, dx) in the order of the weight tensor (Cout, Cin, KH, KW), so W
 * is used as a row-major (Cout, K) matrix, K = Cin*KH*KW, and
 * col[k, (y, x)] = x[b, i, y*stride + dy - pad_t, x*stride + dx - pad_l]
 * (0 outside the input).
 *
 * No full-image im2col: the output is cut into bands of whole rows (about
 * BAND_PIX pixels). For one band and one block of KC reduction rows the
 * kernel unfolds col into panels of NR pixels ((kc, NR) each, contiguous),
 * packs MR output channels of W into (kc, MR), and multiplies with an
 * MR x NR register-tile micro-kernel (AVX2+FMA when omni_cpu_simd() says so,
 * plain C otherwise). Each band writes its own rows of out, so bands run in
 * parallel on separate scratch: per thread KC*(band pixels rounded up to NR)
 * floats of columns plus KC*MR floats of packed weights (see
 * omni_conv2d_cpu_scratch_bytes; 262 KiB for a 256-wide image). About 95
 * GFLOP/s per Zen 4 core on the VQ decoder's 3x3 convs.
 *
 * Accumulation is f32 in k order within a KC block, the blocks summed in
 * order into out (the first block adds the bias). The result does not depend
 * on the thread count (bands do not change the arithmetic of an element).
 *
 * omni_conv2d_fused_cpu is the reference of the fused convolution: it
 * materialises the transformed input (GroupNorm coefficients, SiLU, nearest
 * x2) and adds the residual after the plain convolution.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "omni/dtype.h"
#include "omni/status.h"

#include "conv2d.h"
#include "cpu/parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CONV_HAVE_X86 1
#endif

#define MR 6          /* output channels per register tile */
#define NR 16         /* output pixels per register tile (two 8-float vectors) */
#define KC 256        /* reduction rows per packed block */
#define BAND_PIX 256  /* target output pixels per band */

struct conv_job {
    float *out;
    const float *x;
    const void *w;
    int w_dtype;
    const void *bias;
    int bias_dtype;
    const struct omni_conv2d_geom *g;
    int64_t K;        /* Cin*KH*KW */
    int64_t rows;     /* output rows per band */
    int64_t nbands;   /* bands per image */
    int64_t col_cap;  /* pixels per band rounded up to NR */
    int use_avx2;
    int status;       /* first failure of any worker (ENOMEM) */
};

static float load_val(const void *p, int dtype, int64_t i)
{
    switch (dtype) {
    case OMNI_DTYPE_F16: return omni_f16_to_f32(((const uint16_t *)p)[i]);
    case OMNI_DTYPE_BF16: return omni_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* c[MR][NR] = a^T b over kc: a (kc, MR), b (kc, NR). */
static void micro_c(int64_t kc, const float *a /* a: (kc,MR) */, const float *b /* b: (kc,NR) */,
                    float *c /* c: (MR,NR) */)
{
    float acc[MR][NR];
    memset(acc, 0, sizeof(acc));
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + k * NR;
        for (int m = 0; m < MR; m++) {
            float am = a[k * MR + m];
            for (int n = 0; n < NR; n++)
                acc[m][n] += am * bk[n];
        }
    }
    memcpy(c, acc, sizeof(acc));
}

#ifdef CONV_HAVE_X86
__attribute__((target("avx2,fma"))) static void
micro_avx2(int64_t kc, const float *a /* a: (kc,MR) */, const float *b /* b: (kc,NR) */,
           float *c /* c: (MR,NR) */)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b + k * NR);
        __m256 b1 = _mm256_loadu_ps(b + k * NR + 8);
        const float *ak = a + k * MR;
        __m256 am;
        am = _mm256_broadcast_ss(ak + 0);
        c00 = _mm256_fmadd_ps(am, b0, c00);
        c01 = _mm256_fmadd_ps(am, b1, c01);
        am = _mm256_broadcast_ss(ak + 1);
        c10 = _mm256_fmadd_ps(am, b0, c10);
        c11 = _mm256_fmadd_ps(am, b1, c11);
        am = _mm256_broadcast_ss(ak + 2);
        c20 = _mm256_fmadd_ps(am, b0, c20);
        c21 = _mm256_fmadd_ps(am, b1, c21);
        am = _mm256_broadcast_ss(ak + 3);
        c30 = _mm256_fmadd_ps(am, b0, c30);
        c31 = _mm256_fmadd_ps(am, b1, c31);
        am = _mm256_broadcast_ss(ak + 4);
        c40 = _mm256_fmadd_ps(am, b0, c40);
        c41 = _mm256_fmadd_ps(am, b1, c41);
        am = _mm256_broadcast_ss(ak + 5);
        c50 = _mm256_fmadd_ps(am, b0, c50);
        c51 = _mm256_fmadd_ps(am, b1, c51);
    }
    _mm256_storeu_ps(c + 0 * NR, c00);
    _mm256_storeu_ps(c + 0 * NR + 8, c01);
    _mm256_storeu_ps(c + 1 * NR, c10);
    _mm256_storeu_ps(c + 1 * NR + 8, c11);
    _mm256_storeu_ps(c + 2 * NR, c20);
    _mm256_storeu_ps(c + 2 * NR + 8, c21);
    _mm256_storeu_ps(c + 3 * NR, c30);
    _mm256_storeu_ps(c + 3 * NR + 8, c31);
    _mm256_storeu_ps(c + 4 * NR, c40);
    _mm256_storeu_ps(c + 4 * NR + 8, c41);
    _mm256_storeu_ps(c + 5 * NR, c50);
    _mm256_storeu_ps(c + 5 * NR + 8, c51);
}
#endif

/* Unfold reduction rows k0..k0+kc of the band starting at output row y0
 * (nrows rows, np = nrows*Wo pixels) into panels colp[pan][kk][NR]; lanes
 * past np are zero. */
static void pack_cols(float *colp /* colp: (npan,kc,NR) */, const float *xb /* xb: (Cin,H,W) */,
                      const struct omni_conv2d_geom *g, int64_t k0, int64_t kc, int64_t y0,
                      int64_t nrows)
{
    const int64_t np = nrows * g->Wo;
    const int64_t npan = (np + NR - 1) / NR;
    const int64_t khw = g->KH * g->KW;
    for (int64_t kk = 0; kk < kc; kk++) {
        const int64_t k = k0 + kk;
        const int64_t i = k / khw, dy = (k % khw) / g->KW, dx = k % g->KW;
        const float *plane = xb + i * g->H * g->W;
        /* valid output columns: 0 <= xx*stride + dx - pad_l < W */
        int64_t xa = 0, xe = g->Wo;
        while (xa < xe && xa * g->stride + dx - g->pad_l < 0)
            xa++;
        while (xe > xa && (xe - 1) * g->stride + dx - g->pad_l >= g->W)
            xe--;
        for (int64_t yy = 0; yy < nrows; yy++) {
            const int64_t iy = (y0 + yy) * g->stride + dy - g->pad_t;
            const int64_t pbase = yy * g->Wo;
            const int row_ok = iy >= 0 && iy < g->H;
            const int64_t off = (row_ok ? iy : 0) * g->W + dx - g->pad_l; /* of column 0 */
            const int64_t ra = row_ok ? xa : g->Wo, re = row_ok ? xe : g->Wo;
            /* runs of output columns that stay inside one panel lane block:
             * the destination is contiguous there, the source strided */
            for (int64_t x0 = 0; x0 < g->Wo;) {
                const int64_t p = pbase + x0;
                int64_t x1 = x0 + (NR - p % NR);
                if (x1 > g->Wo)
                    x1 = g->Wo;
                float *dst = colp + (p / NR) * kc * NR + kk * NR + p % NR;
                const int64_t za = ra < x0 ? x0 : ra > x1 ? x1 : ra; /* [x0, za) zero */
                const int64_t zb = re < za ? za : re > x1 ? x1 : re; /* [za, zb) copy */
                int64_t xx = x0;
                for (; xx < za; xx++)
                    dst[xx - x0] = 0.0f;
                if (g->stride == 1) {
                    for (; xx < zb; xx++)
                        dst[xx - x0] = plane[off + xx];
                } else {
                    for (; xx < zb; xx++)
                        dst[xx - x0] = plane[off + xx * g->stride];
                }
                for (; xx < x1; xx++)
                    dst[xx - x0] = 0.0f;
                x0 = x1;
            }
        }
        for (int64_t p = np; p < npan * NR; p++)
            colp[(p / NR) * kc * NR + kk * NR + p % NR] = 0.0f;
    }
}

/* wp[kk][m] = W[o0+m, k0+kk] as f32, zero for m >= mr. */
static void pack_w(float *wp /* wp: (kc,MR) */, const struct conv_job *j, int64_t o0, int64_t mr,
                   int64_t k0, int64_t kc)
{
    for (int64_t m = 0; m < MR; m++) {
        if (m >= mr) {
            for (int64_t kk = 0; kk < kc; kk++)
                wp[kk * MR + m] = 0.0f;
            continue;
        }
        const int64_t row = (o0 + m) * j->K + k0;
        if (j->w_dtype == OMNI_DTYPE_F32) {
            const float *wr = (const float *)j->w + row;
            for (int64_t kk = 0; kk < kc; kk++)
                wp[kk * MR + m] = wr[kk];
        } else {
            for (int64_t kk = 0; kk < kc; kk++)
                wp[kk * MR + m] = load_val(j->w, j->w_dtype, row + kk);
        }
    }
}

/* Tasks t0..t1-1, task = image * nbands + band. */
static void conv_tasks(void *ctx, int64_t t0, int64_t t1)
{
    struct conv_job *j = ctx;
    const struct omni_conv2d_geom *g = j->g;
    float *colp = aligned_alloc(64, (size_t)(j->col_cap * KC) * sizeof(float));
    float *wp = aligned_alloc(64, (size_t)(KC * MR) * sizeof(float));
    float ctile[MR * NR];
    if (!colp || !wp) {
        __atomic_store_n(&j->status, OMNI_ENOMEM, __ATOMIC_RELAXED);
        goto done;
    }
    const int64_t plane_out = g->Ho * g->Wo;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t b = t / j->nbands, band = t % j->nbands;
        const int64_t y0 = band * j->rows;
        const int64_t nrows = y0 + j->rows <= g->Ho ? j->rows : g->Ho - y0;
        const int64_t np = nrows * g->Wo;
        const int64_t npan = (np + NR - 1) / NR;
        const float *xb = j->x + b * g->Cin * g->H * g->W;
        float *ob = j->out + b * g->Cout * plane_out + y0 * g->Wo;
        for (int64_t k0 = 0; k0 < j->K; k0 += KC) {
            const int64_t kc = j->K - k0 < KC ? j->K - k0 : KC;
            pack_cols(colp, xb, g, k0, kc, y0, nrows);
            for (int64_t o0 = 0; o0 < g->Cout; o0 += MR) {
                const int64_t mr = g->Cout - o0 < MR ? g->Cout - o0 : MR;
                pack_w(wp, j, o0, mr, k0, kc);
                for (int64_t pan = 0; pan < npan; pan++) {
                    const float *bp = colp + pan * kc * NR;
#ifdef CONV_HAVE_X86
                    if (j->use_avx2)
                        micro_avx2(kc, wp, bp, ctile);
                    else
#endif
                        micro_c(kc, wp, bp, ctile);
                    const int64_t p0 = pan * NR;
                    const int64_t nn = np - p0 < NR ? np - p0 : NR;
                    for (int64_t m = 0; m < mr; m++) {
                        float *dst = ob + (o0 + m) * plane_out + p0;
                        const float *src = ctile + m * NR;
                        if (k0 == 0) {
                            float bv = j->bias ? load_val(j->bias, j->bias_dtype, o0 + m) : 0.0f;
                            for (int64_t n = 0; n < nn; n++)
                                dst[n] = bv + src[n];
                        } else {
                            for (int64_t n = 0; n < nn; n++)
                                dst[n] += src[n];
                        }
                    }
                }
            }
        }
    }
done:
    free(colp);
    free(wp);
}

static int64_t band_rows(const struct omni_conv2d_geom *g)
{
    int64_t rows = BAND_PIX / g->Wo;
    if (rows < 1)
        rows = 1;
    /* small images: split so that every worker gets a band */
    int64_t nt = omni_parallel_threads();
    if (g->B < nt && g->Ho > 1) {
        int64_t per = (g->Ho * g->B + nt - 1) / nt;
        if (per < rows)
            rows = per < 1 ? 1 : per;
    }
    if (rows > g->Ho)
        rows = g->Ho;
    return rows;
}

size_t omni_conv2d_cpu_scratch_bytes(const struct omni_conv2d_geom *g)
{
    int64_t np = band_rows(g) * g->Wo;
    int64_t cap = (np + NR - 1) / NR * NR;
    return (size_t)(cap * KC + KC * MR) * sizeof(float);
}

int omni_conv2d_cpu(float *out, const float *x, const void *w, int w_dtype, const void *bias,
                    int bias_dtype, const struct omni_conv2d_geom *g)
{
    struct conv_job j = {
        .out = out, .x = x, .w = w, .w_dtype = w_dtype, .bias = bias,
        .bias_dtype = bias_dtype, .g = g, .K = g->Cin * g->KH * g->KW,
    };
    if (g->B == 0 || g->Cout == 0 || g->Ho == 0 || g->Wo == 0)
        return OMNI_OK;
    j.rows = band_rows(g);
    j.nbands = (g->Ho + j.rows - 1) / j.rows;
    j.col_cap = (j.rows * g->Wo + NR - 1) / NR * NR;
#ifdef CONV_HAVE_X86
    j.use_avx2 = omni_cpu_simd(); /* AVX2+FMA host and the switch on */
#endif
    if (j.K == 0) { /* no input channels: bias only */
        for (int64_t b = 0; b < g->B; b++)
            for (int64_t o = 0; o < g->Cout; o++) {
                float bv = bias ? load_val(bias, bias_dtype, o) : 0.0f;
                float *dst = out + (b * g->Cout + o) * g->Ho * g->Wo;
                for (int64_t p = 0; p < g->Ho * g->Wo; p++)
                    dst[p] = bv;
            }
        return OMNI_OK;
    }
    omni_parallel_for(g->B * j.nbands, conv_tasks, &j);
    return j.status;
}

/* t = act(affine(x)) read through the nearest x2 map when up2; (B, Cin, H, W)
 * of the geometry. The same f32 expressions as omni_groupnorm_cpu and
 * omni_silu_cpu, so GroupNorm -> SiLU -> conv gives the same bits either way. */
struct xf_job {
    float *t;
    const float *x;
    const struct omni_conv2d_geom *g;
    const struct omni_conv2d_fuse *f;
};

static void xf_tasks(void *ctx, int64_t t0, int64_t t1)
{
    const struct xf_job *j = ctx;
    const struct omni_conv2d_geom *g = j->g;
    const int up = j->f->up2 ? 1 : 0;
    const int64_t Hs = g->H >> up, Ws = g->W >> up;
    for (int64_t t = t0; t < t1; t++) { /* t = b * Cin + i: one plane */
        const float *src = j->x + t * Hs * Ws;
        float *dst = j->t + t * g->H * g->W;
        const float *c = j->f->coef ? j->f->coef + t * 4 : NULL;
        for (int64_t y = 0; y < g->H; y++)
            for (int64_t xx = 0; xx < g->W; xx++) {
                float v = src[(y >> up) * Ws + (xx >> up)];
                if (c)
                    v = ((v - c[0]) - c[1]) * c[2] + c[3];
                if (j->f->silu)
                    v = v / (1.0f + expf(-v));
                dst[y * g->W + xx] = v;
            }
    }
}

int omni_conv2d_fused_cpu(float *out, const float *x, const void *w, int w_dtype,
                          const void *bias, int bias_dtype, const struct omni_conv2d_geom *g,
                          const struct omni_conv2d_fuse *f)
{
    const int64_t nin = g->B * g->Cin * g->H * g->W, nout = g->B * g->Cout * g->Ho * g->Wo;
    const float *xin = x;
    float *t = NULL, *res = NULL;
    int rc = OMNI_OK;
    if (f->coef || f->silu || f->up2) {
        t = malloc((size_t)(nin > 0 ? nin : 1) * sizeof(float));
        if (!t)
            return OMNI_ENOMEM;
        struct xf_job j = {t, x, g, f};
        omni_parallel_for(g->B * g->Cin, xf_tasks, &j);
        xin = t;
    }
    const float *r = f->residual;
    if (r && r < out + nout && out < r + nout) { /* the residual is (in) out: keep a copy */
        res = malloc((size_t)(nout > 0 ? nout : 1) * sizeof(float));
        if (!res) {
            rc = OMNI_ENOMEM;
            goto done;
        }
        memcpy(res, r, (size_t)nout * sizeof(float));
        r = res;
    }
    if ((rc = omni_conv2d_cpu(out, xin, w, w_dtype, bias, bias_dtype, g)))
        goto done;
    if (r)
        for (int64_t i = 0; i < nout; i++)
            out[i] = out[i] + r[i];
done:
    free(t);
    free(res);
    return rc;
}

struct up_job {
    float *out;
    const float *x;
    int64_t H, W;
};

static void up_tasks(void *ctx, int64_t t0, int64_t t1)
{
    const struct up_job *j = ctx;
    const int64_t W2 = 2 * j->W;
    for (int64_t t = t0; t < t1; t++) { /* t = plane * H + input row */
        const float *src = j->x + t * j->W;
        float *dst = j->out + t * 2 * W2;
        for (int64_t xx = 0; xx < j->W; xx++)
            dst[2 * xx] = dst[2 * xx + 1] = src[xx];
        memcpy(dst + W2, dst, (size_t)W2 * sizeof(float));
    }
}

void omni_upsample_nearest2x_cpu(float *out, const float *x, int64_t P, int64_t H, int64_t W)
{
    struct up_job j = {out, x, H, W};
    omni_parallel_for(P * H, up_tasks, &j);
}
