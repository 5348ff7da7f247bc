/* kernels/cpu/attention.c - scaled dot-product attention on the CPU (f32).
 *
 * Computes, per batch b, head h and query row i (no mask):
 *   out[b,i,hP:hP+P] = sum_j softmax_j(scale * q[b,i,hP:] . k[b,j,hP:]) v[b,j,hP:]
 * Layout: q, k, v are (B,S,H*P) views whose last dim is contiguous (batch and
 * row strides free, so they may point into a fused qkv (B,S,3*H*P)); out is
 * contiguous (B,S,H*P). Any S >= 1, H >= 1, P >= 1.
 *
 * The softmax is computed blockwise with a running maximum (flash-attention
 * style): for each block of KB keys the block's scores are formed, the row
 * maximum m is raised if needed (earlier partial sums are rescaled by
 * exp(m_old - m_new)), and exp(s - m) weights are accumulated straight into
 * the output row. The result equals softmax-with-max-subtraction up to f32
 * rounding, needs no scratch memory beyond a QB x KB score tile on the stack,
 * and never overflows because every exponent is <= 0.
 *
 * Work is split into independent tasks (b, h, block of QB query rows).
 */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "cpu/parallel.h"


#define QB 16 /* query rows per task: enough reuse of each key block */
#define KB 64 /* keys per score tile: the tile (QB x KB floats) stays in L1 */

/* Dot product with 8 independent partial sums so the compiler can keep them
 * in vector lanes without reassociating (no -ffast-math). */
static float dot(const float *a /* a: (P) */, const float *b /* b: (P) */, int64_t P)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t p = 0;
    for (; p + 8 <= P; p += 8)
        for (int u = 0; u < 8; u++)
            s[u] += a[p + u] * b[p + u];
    float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; p < P; p++)
        t += a[p] * b[p];
    return t;
}

struct attn_task {
    const struct omni_attention_args *a;
    int64_t n_qblocks;
};

static void attention_block(const struct omni_attention_args *a, int64_t b, int64_t h, int64_t i0)
{
    const int64_t S = a->S, P = a->P, HP = a->H * a->P;
    const int64_t nq = (S - i0 < QB) ? S - i0 : QB;
    const float *qb = a->q + b * a->q_bs + h * P;
    const float *kb = a->k + b * a->k_bs + h * P;
    const float *vb = a->v + b * a->v_bs + h * P;
    float *ob = a->out + b * S * HP + h * P;
    float m[QB], l[QB];
    float s[QB][KB];

    for (int64_t qi = 0; qi < nq; qi++) {
        m[qi] = -INFINITY;
        l[qi] = 0.0f;
        memset(ob + (i0 + qi) * HP, 0, (size_t)P * sizeof(float));
    }
    for (int64_t j0 = 0; j0 < S; j0 += KB) {
        const int64_t nk = (S - j0 < KB) ? S - j0 : KB;
        for (int64_t qi = 0; qi < nq; qi++) {
            const float *qrow = qb + (i0 + qi) * a->q_rs;
            for (int64_t kj = 0; kj < nk; kj++)
                s[qi][kj] = a->scale * dot(qrow, kb + (j0 + kj) * a->k_rs, P);
        }
        for (int64_t qi = 0; qi < nq; qi++) {
            float *orow = ob + (i0 + qi) * HP;
            float mb = s[qi][0];
            for (int64_t kj = 1; kj < nk; kj++)
                mb = s[qi][kj] > mb ? s[qi][kj] : mb;
            if (mb > m[qi]) {
                /* rescale what was accumulated under the old maximum */
                float alpha = expf(m[qi] - mb); /* 0 on the first block */
                l[qi] *= alpha;
                for (int64_t p = 0; p < P; p++)
                    orow[p] *= alpha;
                m[qi] = mb;
            }
            for (int64_t kj = 0; kj < nk; kj++) {
                const float w = expf(s[qi][kj] - m[qi]);
                const float *vrow = vb + (j0 + kj) * a->v_rs;
                l[qi] += w;
                for (int64_t p = 0; p < P; p++)
                    orow[p] += w * vrow[p];
            }
        }
    }
    for (int64_t qi = 0; qi < nq; qi++) {
        float *orow = ob + (i0 + qi) * HP;
        const float inv = 1.0f / l[qi]; /* l >= 1: the maximum contributes exp(0) */
        for (int64_t p = 0; p < P; p++)
            orow[p] *= inv;
    }
}

static void attention_task(void *user, int64_t t0, int64_t t1)
{
    const struct attn_task *t = user;
    for (int64_t t_ = t0; t_ < t1; t_++) {
        const int64_t qblk = t_ % t->n_qblocks;
        const int64_t bh = t_ / t->n_qblocks;
        attention_block(t->a, bh / t->a->H, bh % t->a->H, qblk * QB);
    }
}

void omni_attention_cpu(const struct omni_attention_args *a)
{
    struct attn_task t = {a, (a->S + QB - 1) / QB};
    const int64_t n = a->B * a->H * t.n_qblocks;
    omni_parallel_for(n, attention_task, &t);
}
