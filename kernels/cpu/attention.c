/* kernels/cpu/attention.c - scaled dot-product attention on the CPU (f32).
 *
 * Computes, per batch b, head h and query row i (no mask):
 *   out[b,i,hP:hP+P] = sum_j softmax_j(scale * q[b,i,hP:] . k[b,j,hP:]) v[b,j,hP:]
 * Layout: q, k, v are (B,S,H*P) views whose last dim is contiguous (batch and
 * row strides free, so they may point into a fused qkv (B,S,3*H*P)); out is
 * contiguous (B,S,H*P). Any S >= 1, H >= 1, P >= 1.
 *
 * Algorithm (flash-attention style, no S x S matrix): work is split into
 * independent tasks (b, h, block of QB query rows). A task walks the keys in
 * blocks of KB: it packs the block's keys transposed (kt[p][j], zero-padded
 * to a multiple of 8 columns), forms the QB x KB score tile with
 * s[i][j] += q[i][p] * kt[p][j] (j innermost, contiguous, no reductions),
 * raises each row's running maximum m when the block holds a larger score
 * (earlier sums are rescaled by exp(m_old - m_new)), replaces the scores by
 * exp(s - m) and accumulates them into the row sum l and into the output row
 * (out_i += w_ij v_j, p innermost). Finally out_i /= l_i (l >= 1: the maximum
 * contributes exp(0)). Every exponent is <= 0, so nothing overflows.
 *
 * Heads wider than KT_MAX/8 = 1024 skip the packing and take plain dot
 * products (slower, same results up to rounding).
 *
 * exp(x <= 0) is Cephes' expf (Cody-Waite reduction, degree-6 polynomial,
 * about 1 ulp; inputs below -87 give ~1e-38 instead of a smaller value or 0,
 * which is below f32 resolution against l >= 1). The inner loops are fixed
 * 8-wide so the compiler vectorises them without reassociating anything; the
 * same body is compiled a second time for AVX2 (taken when omni_cpu_simd()
 * says so), which changes the vector width, not the arithmetic: both paths
 * give the same bits, for any thread count.
 */
#include "attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "omni/dtype.h"
#include "omni/status.h"

#include "cpu/parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#define OMNI_X86 1
#endif

#define QB 32      /* query rows per task */
#define KB 64      /* keys per block (at most) */
#define KT_MAX 8192 /* floats of the packed key block: KB shrinks for large P */

struct attn_task {
    const struct omni_attention_args *a;
    int64_t n_qblocks;
    int64_t kb; /* keys per block: multiple of 8, <= KB, kb * P <= KT_MAX unless kb == 8 */
    int simd;   /* omni_cpu_simd(): take the AVX2 clone */
    int prec;   /* 0, OMNI_DTYPE_F16 or OMNI_DTYPE_BF16: round the softmax weights */
};

static inline float round_to(int prec, float f)
{
    if (prec == OMNI_DTYPE_BF16)
        return omni_bf16_to_f32(omni_f32_to_bf16(f));
    if (prec == OMNI_DTYPE_F16)
        return omni_f16_to_f32(omni_f32_to_f16(f));
    return f;
}

/* GCC/Clang generic vectors: 8 floats, lowered to two SSE registers on the
 * baseline build and one AVX register in the avx2 clone. Loads and stores go
 * through memcpy (unaligned, no aliasing questions). */
/* the helpers below are always inlined: there is no call ABI to worry about */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) v8f ld8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a macro, not a function: a 32-byte vector argument draws GCC's -Wpsabi note */
#define st8(p, v)                                                                                  \
    do {                                                                                           \
        const v8f st8_ = (v);                                                                      \
        memcpy((p), &st8_, sizeof st8_);                                                           \
    } while (0)

/* p[0..8) = exp(p[0..8) - m) for arguments <= 0 (Cephes expf; arguments below
 * -87 are taken as -87). */
static inline __attribute__((always_inline)) void exp8_shifted(float *p, float m)
{
    v8f x = ld8(p) - m;
    const v8f lo = {-87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f};
    const v8i small = x < lo; /* all-ones lanes where x < -87 */
    x = (v8f)(((v8i)x & ~small) | ((v8i)lo & small));
    /* n = round(x / ln 2) with the 1.5 * 2^23 trick; its integer sits in t's low bits */
    const v8f t = x * 1.44269504088896341f + 12582912.0f;
    const v8f n = t - 12582912.0f;
    const v8i ni = (v8i)t - 0x4B400000;
    v8f r = x - n * 0.693359375f; /* ln 2 split in two (Cody-Waite) */
    r = r - n * -2.12194440e-4f;
    v8f y = r * 1.9875691500e-4f + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    st8(p, y * (v8f)((ni + 127) << 23)); /* times 2^n, n in [-126, 0] */
}

/* s[0..W) = scale * sum_p q[p] * kt[p * ld + 0..W), W = 32 or 8. */
static inline __attribute__((always_inline)) void scores_cols(float *s, const float *q,
                                                              const float *kt, int64_t ld,
                                                              int64_t P, float scale, int W)
{
    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    if (W == 32) {
        for (int64_t p = 0; p < P; p++) {
            const float qv = q[p];
            const float *kp = kt + p * ld;
            a0 += qv * ld8(kp);
            a1 += qv * ld8(kp + 8);
            a2 += qv * ld8(kp + 16);
            a3 += qv * ld8(kp + 24);
        }
        st8(s, a0 * scale);
        st8(s + 8, a1 * scale);
        st8(s + 16, a2 * scale);
        st8(s + 24, a3 * scale);
    } else {
        for (int64_t p = 0; p < P; p++)
            a0 += q[p] * ld8(kt + p * ld);
        st8(s, a0 * scale);
    }
}

/* o[0..W) += sum_j w[j] * v[j * ld + 0..W), j in order, W = 32 or 8. */
static inline __attribute__((always_inline)) void pv_cols(float *o, const float *w,
                                                          const float *v, int64_t ld, int64_t nk,
                                                          int W)
{
    if (W == 32) {
        v8f a0 = ld8(o), a1 = ld8(o + 8), a2 = ld8(o + 16), a3 = ld8(o + 24);
        for (int64_t j = 0; j < nk; j++) {
            const float wj = w[j];
            const float *vr = v + j * ld;
            a0 += wj * ld8(vr);
            a1 += wj * ld8(vr + 8);
            a2 += wj * ld8(vr + 16);
            a3 += wj * ld8(vr + 24);
        }
        st8(o, a0);
        st8(o + 8, a1);
        st8(o + 16, a2);
        st8(o + 24, a3);
    } else {
        v8f a0 = ld8(o);
        for (int64_t j = 0; j < nk; j++)
            a0 += w[j] * ld8(v + j * ld);
        st8(o, a0);
    }
}

static inline __attribute__((always_inline)) void
attention_block_body(const struct attn_task *t, int64_t b, int64_t h, int64_t i0)
{
    const struct omni_attention_args *a = t->a;
    const int64_t S = a->S, P = a->P, HP = a->H * a->P, kb = t->kb;
    const int64_t nq = (S - i0 < QB) ? S - i0 : QB;
    const float *qb = a->q + b * a->q_bs + h * P;
    const float *kbase = a->k + b * a->k_bs + h * P;
    const float *vb = a->v + b * a->v_bs + h * P;
    float *ob = (float *)a->out + b * S * HP + h * P;
    float m[QB], l[QB];
    float s[QB][KB];
    float kt[KT_MAX];
    float vt[KT_MAX]; /* the block's value rows, contiguous (j, p) */

    for (int64_t qi = 0; qi < nq; qi++) {
        m[qi] = -INFINITY;
        l[qi] = 0.0f;
        memset(ob + (i0 + qi) * HP, 0, (size_t)P * sizeof(float));
    }
    for (int64_t j0 = 0; j0 < S; j0 += kb) {
        const int64_t nk = (S - j0 < kb) ? S - j0 : kb;
        const int64_t nk8 = (nk + 7) & ~(int64_t)7;
        const int packed = kb * P <= KT_MAX;
        if (packed) {
            /* pack vt[j][p] = v[j0 + j][p]: value rows one after the other (rows of
             * a fused qkv lie a multiple of 4 KiB apart for P = 64, and walking
             * 64 of them would fight over the same L1 sets) */
            for (int64_t j = 0; j < nk; j++)
                memcpy(vt + j * P, vb + (j0 + j) * a->v_rs, (size_t)P * sizeof(float));
            /* pack kt[p][j] = k[j0 + j][p], zero columns up to nk8 */
            for (int64_t j = 0; j < nk; j++) {
                const float *krow = kbase + (j0 + j) * a->k_rs;
                for (int64_t p = 0; p < P; p++)
                    kt[p * nk8 + j] = krow[p];
            }
            for (int64_t p = 0; p < P; p++)
                for (int64_t j = nk; j < nk8; j++)
                    kt[p * nk8 + j] = 0.0f;
            /* scores s[i][j] = scale * sum_p q[i][p] kt[p][j], 32 or 8 columns at a time
             * with the partial sums kept in registers across p */
            for (int64_t qi = 0; qi < nq; qi++) {
                const float *qrow = qb + (i0 + qi) * a->q_rs;
                int64_t j = 0;
                for (; j + 32 <= nk8; j += 32)
                    scores_cols(s[qi] + j, qrow, kt + j, nk8, P, a->scale, 32);
                for (; j < nk8; j += 8)
                    scores_cols(s[qi] + j, qrow, kt + j, nk8, P, a->scale, 8);
            }
        } else {
            /* P > KT_MAX / 8: plain dot products, the same order over p */
            for (int64_t qi = 0; qi < nq; qi++) {
                const float *qrow = qb + (i0 + qi) * a->q_rs;
                for (int64_t j = 0; j < nk8; j++) {
                    float acc = 0.0f;
                    if (j < nk) {
                        const float *krow = kbase + (j0 + j) * a->k_rs;
                        for (int64_t p = 0; p < P; p++)
                            acc += qrow[p] * krow[p];
                    }
                    s[qi][j] = acc * a->scale;
                }
            }
        }
        /* online softmax and the value accumulation */
        for (int64_t qi = 0; qi < nq; qi++) {
            float *sr = s[qi];
            float *orow = ob + (i0 + qi) * HP;
            float mb = sr[0];
            for (int64_t j = 1; j < nk; j++)
                mb = sr[j] > mb ? sr[j] : mb;
            if (mb > m[qi]) {
                /* rescale what was accumulated under the old maximum (0 on the first block) */
                const float alpha = expf(m[qi] - mb);
                l[qi] *= alpha;
                for (int64_t p = 0; p < P; p++)
                    orow[p] *= alpha;
                m[qi] = mb;
            }
            const float mq = m[qi];
            for (int64_t j = 0; j < nk8; j += 8)
                exp8_shifted(sr + j, mq);
            if (t->prec)
                for (int64_t j = 0; j < nk; j++)
                    sr[j] = round_to(t->prec, sr[j]);
            float lq = l[qi];
            for (int64_t j = 0; j < nk; j++)
                lq += sr[j];
            l[qi] = lq;
            const float *vblk = packed ? vt : vb + j0 * a->v_rs;
            const int64_t ldv = packed ? P : a->v_rs;
            int64_t p = 0;
            for (; p + 32 <= P; p += 32)
                pv_cols(orow + p, sr, vblk + p, ldv, nk, 32);
            for (; p + 8 <= P; p += 8)
                pv_cols(orow + p, sr, vblk + p, ldv, nk, 8);
            for (; p < P; p++)
                for (int64_t j = 0; j < nk; j++)
                    orow[p] += sr[j] * vblk[j * ldv + p];
        }
    }
    for (int64_t qi = 0; qi < nq; qi++) {
        float *orow = ob + (i0 + qi) * HP;
        const float inv = 1.0f / l[qi];
        for (int64_t p = 0; p < P; p++)
            orow[p] *= inv;
    }
}

static void attention_block_generic(const struct attn_task *t, int64_t b, int64_t h, int64_t i0)
{
    attention_block_body(t, b, h, i0);
}

#ifdef OMNI_X86
/* The same body with 256-bit vectors. No "fma": a*b+c stays two roundings
 * (-std=c11 keeps fp-contract off), so both paths agree bit for bit. */
__attribute__((target("avx2"))) static void attention_block_avx2(const struct attn_task *t,
                                                                  int64_t b, int64_t h, int64_t i0)
{
    attention_block_body(t, b, h, i0);
}
#endif

static void attention_tasks(void *user, int64_t t0, int64_t t1)
{
    const struct attn_task *t = user;
    for (int64_t k = t0; k < t1; k++) {
        const int64_t qblk = k % t->n_qblocks, bh = k / t->n_qblocks;
        const int64_t b = bh / t->a->H, h = bh % t->a->H;
#ifdef OMNI_X86
        if (t->simd) {
            attention_block_avx2(t, b, h, qblk * QB);
            continue;
        }
#endif
        attention_block_generic(t, b, h, qblk * QB);
    }
}

int omni_attention_cpu(const struct omni_attention_args *a0)
{
    struct omni_attention_args a = *a0;
    const int prec = a.precision == OMNI_DTYPE_F16 || a.precision == OMNI_DTYPE_BF16 ? a.precision : 0;
    const int out16 = a.out_dtype == OMNI_DTYPE_F16 || a.out_dtype == OMNI_DTYPE_BF16;
    const int64_t B = a.B, S = a.S, HP = a.H * a.P;
    float *prep = NULL, *o32 = NULL;
    if (prec || a.q_bias || a.k_bias || a.v_bias) {
        prep = malloc((size_t)(B * S * 3 * HP) * sizeof(float));
        if (!prep)
            return OMNI_ENOMEM;
        const float *src[3] = {a.q, a.k, a.v}, *bias[3] = {a.q_bias, a.k_bias, a.v_bias};
        const int64_t bs[3] = {a.q_bs, a.k_bs, a.v_bs}, rs[3] = {a.q_rs, a.k_rs, a.v_rs};
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S; i++)
                for (int w = 0; w < 3; w++) {
                    const float *x = src[w] + b * bs[w] + i * rs[w];
                    float *y = prep + ((b * S + i) * 3 + w) * HP;
                    for (int64_t c = 0; c < HP; c++)
                        y[c] = round_to(prec, bias[w] ? x[c] + bias[w][c] : x[c]);
                }
        a.q = prep, a.k = prep + HP, a.v = prep + 2 * HP;
        a.q_bs = a.k_bs = a.v_bs = S * 3 * HP;
        a.q_rs = a.k_rs = a.v_rs = 3 * HP;
    }
    if (out16) {
        o32 = malloc((size_t)(B * S * HP) * sizeof(float));
        if (!o32) {
            free(prep);
            return OMNI_ENOMEM;
        }
        a.out = o32;
    }
    int64_t kb = KB;
    while (kb > 8 && kb * a.P > KT_MAX)
        kb -= 8; /* P > 1024 keeps kb = 8 and skips the packing */
    struct attn_task t = {&a, (a.S + QB - 1) / QB, kb, omni_cpu_simd(), prec};
    omni_parallel_for(a.B * a.H * t.n_qblocks, attention_tasks, &t);
    if (out16) {
        uint16_t *o = a0->out;
        for (int64_t i = 0; i < B * S * HP; i++)
            o[i] = a0->out_dtype == OMNI_DTYPE_BF16 ? omni_f32_to_bf16(o32[i]) : omni_f32_to_f16(o32[i]);
    }
    free(prep);
    free(o32);
    return OMNI_OK;
}
