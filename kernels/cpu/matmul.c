/* kernels/cpu/matmul.c - CPU reference of the matmul family.
 *
 * omni_matmul_cpu: y[M,N] = alpha * x[M,K] · W[N,K]ᵀ + beta * y + bias[N].
 *   Both operands are K-contiguous ("NT" layout, PyTorch Linear weights), so
 *   every output is a dot product of an x row with a W row. The output is cut
 *   into fixed MB x NB tiles (threaded with omni_parallel_for, W-tile major so
 *   consecutive tasks reuse the same W rows); inside a tile K is walked in KC
 *   chunks, and an MR x NR micro-kernel keeps MR*NR 8-lane partial sums over
 *   a chunk, reduces each to a scalar in a fixed order and adds it to an f32
 *   tile accumulator. f16/bf16 weight rows are converted to f32 one NR x KC
 *   panel at a time. The reduction order of each y element depends only on K
 *   (never on M, N, the tile position or the thread count).
 *   x86-64 hosts with AVX2+FMA+F16C take an intrinsics micro-kernel chosen at
 *   run time (omni_cpu_simd); other hosts, or the switch off, take the
 *   portable C one (no FMA, so the two paths differ in the last bits, never
 *   between runs).
 * omni_add_cpu / omni_add_row_cpu: elementwise f32 adds over strided rows.
 * omni_copy_cpu: contiguous copy with f32/f16/bf16 conversion.
 */
#include "matmul.h"

#include <string.h>

#include "cpu/parallel.h"
#include "omni/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OMNI_X86 1
#endif

#define MB 96  /* x rows per tile: 96 x KC floats stay in L2 */
#define NB 64  /* W rows per tile */
#define KC 512 /* K chunk: an NR x KC W panel plus MR x KC of x fit in L1 */
#define MR 4   /* micro-kernel rows of x */
#define NR 3   /* micro-kernel rows of W (MR*NR = 12 accumulators + 4 live registers) */

/* Exact f16 -> f32: shift the exponent/mantissa into f32 position and scale
 * by 2^112 (fixes the exponent bias, turns subnormals into normals exactly). */
static inline float f16_to_f32(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7fffu) << 13, s = (uint32_t)(h & 0x8000u) << 16;
    float f = omni__bits_f32(em) * 0x1p112f;
    uint32_t u = em >= (0x7c00u << 13) ? (em | 0x7f800000u) : omni__f32_bits(f);
    return omni__bits_f32(u | s);
}

/* ---- portable micro-kernel ------------------------------------------------------- */

/* t[i*ldt + j] += dot(x row i, w row j) over kc, 8 lanes then a fixed tree. */
static void micro_c(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc,
                    float *t, int64_t ldt, int mr, int nr)
{
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            const float *a = x + i * ldx, *b = w + j * ldw;
            float s[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8)
                for (int l = 0; l < 8; l++)
                    s[l] += a[k + l] * b[k + l];
            for (int l = 0; k < kc; k++, l++)
                s[l] += a[k] * b[k];
            t[i * ldt + j] += ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
        }
    }
}

static void convert_panel_c(float *dst, const void *w, int w_dtype, int64_t K, int64_t n0,
                            int nr, int64_t k0, int64_t kc)
{
    for (int j = 0; j < nr; j++) {
        const uint16_t *src = (const uint16_t *)w + (n0 + j) * K + k0;
        float *d = dst + j * KC;
        if (w_dtype == OMNI_DTYPE_F16)
            for (int64_t k = 0; k < kc; k++)
                d[k] = f16_to_f32(src[k]);
        else
            for (int64_t k = 0; k < kc; k++)
                d[k] = omni_bf16_to_f32(src[k]);
    }
}

/* ---- AVX2 + FMA + F16C micro-kernel ----------------------------------------------- */
#ifdef OMNI_X86
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline float hsum8(__m256 v)
{
    /* same tree as micro_c: (l0+l4)+(l2+l6) + (l1+l5)+(l3+l7) */
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 h = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

AVX2_TARGET static inline __attribute__((always_inline)) void
micro_avx2_t(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc, float *t,
             int64_t ldt, const int mr, const int nr)
{
    __m256 acc[MR][NR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 wv[NR];
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            wv[j] = _mm256_loadu_ps(w + j * ldw + k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (k < kc) {
        static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        __m256i m = _mm256_loadu_si256((const __m256i *)(lanes + 8 - (kc - k)));
        __m256 wv[NR];
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            wv[j] = _mm256_maskload_ps(w + j * ldw + k, m);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 xv = _mm256_maskload_ps(x + i * ldx + k, m);
#pragma GCC unroll 4
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            t[i * ldt + j] += hsum8(acc[i][j]);
}

AVX2_TARGET static void micro_avx2(const float *x, int64_t ldx, const float *w, int64_t ldw,
                                   int64_t kc, float *t, int64_t ldt, int mr, int nr)
{
#define CASE(a, b)                                                                                 \
    case (a) * 8 + (b): micro_avx2_t(x, ldx, w, ldw, kc, t, ldt, a, b); return;
    switch (mr * 8 + nr) {
    CASE(4, 3) CASE(4, 2) CASE(4, 1)
    CASE(3, 3) CASE(3, 2) CASE(3, 1)
    CASE(2, 3) CASE(2, 2) CASE(2, 1)
    CASE(1, 3) CASE(1, 2) CASE(1, 1)
    }
#undef CASE
}

AVX2_TARGET static void convert_panel_avx2(float *dst, const void *w, int w_dtype, int64_t K,
                                           int64_t n0, int nr, int64_t k0, int64_t kc)
{
    for (int j = 0; j < nr; j++) {
        const uint16_t *src = (const uint16_t *)w + (n0 + j) * K + k0;
        float *d = dst + j * KC;
        int64_t k = 0;
        if (w_dtype == OMNI_DTYPE_F16) {
            for (; k + 8 <= kc; k += 8)
                _mm256_storeu_ps(d + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
            for (; k < kc; k++)
                d[k] = f16_to_f32(src[k]);
        } else {
            for (; k + 8 <= kc; k += 8) {
                __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + k)));
                _mm256_storeu_ps(d + k, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
            }
            for (; k < kc; k++)
                d[k] = omni_bf16_to_f32(src[k]);
        }
    }
}

#endif

/* ---- tiles ---------------------------------------------------------------------- */

typedef void (*micro_fn)(const float *, int64_t, const float *, int64_t, int64_t, float *,
                         int64_t, int, int);
typedef void (*panel_fn)(float *, const void *, int, int64_t, int64_t, int, int64_t, int64_t);

struct mm_ctx {
    float *y;
    const float *x;
    const void *w;
    const float *bias;
    int64_t ldy, ldx, M, N, K, nmt, nnt;
    int w_dtype;
    float alpha, beta;
    micro_fn micro;
    panel_fn panel;
};

static void mm_tiles(void *arg, int64_t begin, int64_t end)
{
    const struct mm_ctx *c = arg;
    float acc[MB * NB];
    float panel[NR * KC];
    for (int64_t task = begin; task < end; task++) {
        int64_t nt = task / c->nmt, mt = task % c->nmt; /* W-tile major */
        int64_t m0 = mt * MB, n0 = nt * NB;
        int64_t mlen = c->M - m0 < MB ? c->M - m0 : MB;
        int64_t nlen = c->N - n0 < NB ? c->N - n0 : NB;
        memset(acc, 0, sizeof(float) * (size_t)(mlen * NB));
        for (int64_t k0 = 0; k0 < c->K; k0 += KC) {
            int64_t kc = c->K - k0 < KC ? c->K - k0 : KC;
            for (int64_t ns = 0; ns < nlen; ns += NR) {
                int nr = nlen - ns < NR ? (int)(nlen - ns) : NR;
                const float *wp;
                int64_t ldw;
                if (c->w_dtype == OMNI_DTYPE_F32) {
                    wp = (const float *)c->w + (n0 + ns) * c->K + k0;
                    ldw = c->K;
                } else {
                    c->panel(panel, c->w, c->w_dtype, c->K, n0 + ns, nr, k0, kc);
                    wp = panel;
                    ldw = KC;
                }
                for (int64_t ms = 0; ms < mlen; ms += MR) {
                    int mr = mlen - ms < MR ? (int)(mlen - ms) : MR;
                    c->micro(c->x + (m0 + ms) * c->ldx + k0, c->ldx, wp, ldw, kc,
                             acc + ms * NB + ns, NB, mr, nr);
                }
            }
        }
        for (int64_t i = 0; i < mlen; i++) {
            float *yr = c->y + (m0 + i) * c->ldy + n0;
            const float *ar = acc + i * NB;
            for (int64_t j = 0; j < nlen; j++) {
                float v = c->alpha * ar[j];
                if (c->beta != 0.0f)
                    v += c->beta * yr[j];
                if (c->bias)
                    v += c->bias[n0 + j];
                yr[j] = v;
            }
        }
    }
}

void omni_matmul_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                     int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K, float alpha,
                     float beta)
{
    if (M <= 0 || N <= 0)
        return;
    struct mm_ctx c = {
        .y = y, .x = x, .w = w, .bias = bias, .ldy = ldy, .ldx = ldx, .M = M, .N = N, .K = K,
        .nmt = (M + MB - 1) / MB, .nnt = (N + NB - 1) / NB, .w_dtype = w_dtype,
        .alpha = alpha, .beta = beta, .micro = micro_c, .panel = convert_panel_c,
    };
#ifdef OMNI_X86
    if (omni_cpu_simd()) {
        c.micro = micro_avx2;
        c.panel = convert_panel_avx2;
    }
#endif
    /* below ~256k multiply-adds (a few microseconds) waking the pool costs more than it saves */
    if (M * N * K < (1 << 18))
        mm_tiles(&c, 0, c.nmt * c.nnt);
    else
        omni_parallel_for(c.nmt * c.nnt, mm_tiles, &c);
}

/* ---- elementwise ------------------------------------------------------------------ */

void omni_add_cpu(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                  int64_t ldb, int64_t M, int64_t D)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t d = 0; d < D; d++)
            y[m * ldy + d] = a[m * lda + d] + b[m * ldb + d];
}

void omni_add_row_cpu(float *y, int64_t ldy, const float *row, int64_t M, int64_t D)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t d = 0; d < D; d++)
            y[m * ldy + d] += row[d];
}

void omni_copy_cpu(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n)
{
    if (n <= 0)
        return;
    if (dst_dtype == src_dtype) {
        memcpy(dst, src, (size_t)n * omni_dtype_size(dst_dtype));
        return;
    }
    float *df = dst;
    uint16_t *dh = dst;
    const float *sf = src;
    const uint16_t *sh = src;
    for (int64_t i = 0; i < n; i++) {
        float v = src_dtype == OMNI_DTYPE_F32   ? sf[i]
                  : src_dtype == OMNI_DTYPE_F16 ? f16_to_f32(sh[i])
                                                : omni_bf16_to_f32(sh[i]);
        if (dst_dtype == OMNI_DTYPE_F32)
            df[i] = v;
        else if (dst_dtype == OMNI_DTYPE_F16)
            dh[i] = omni_f32_to_f16(v);
        else
            dh[i] = omni_f32_to_bf16(v);
    }
}

/* ---- low-rank update ---------------------------------------------------------------- */

void omni_lora_update_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, const void *a,
                          const void *b, int ab_dtype, int64_t M, int64_t N, int64_t K, int64_t R,
                          float scale)
{
    float t[OMNI_LORA_MAX_M * OMNI_LORA_MAX_R]; /* (M,R) contiguous */
    if (M <= 0 || N <= 0 || M > OMNI_LORA_MAX_M || R > OMNI_LORA_MAX_R)
        return;
    omni_matmul_cpu(t, R, x, ldx, a, ab_dtype, NULL, M, R, K, 1.0f, 0.0f);
    omni_matmul_cpu(y, ldy, t, R, b, ab_dtype, NULL, M, N, R, scale, 1.0f);
}
