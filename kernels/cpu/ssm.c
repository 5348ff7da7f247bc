/* kernels/cpu/ssm.c - CPU reference of the Mamba-2 sequence mixer kernels.
 *
 * conv1d_causal / conv1d_step (mamba2.md 1.2, 3 step 2): depthwise causal
 *   cross-correlation of width K over channel-last rows, optional SiLU, with
 *   a conv state (B, C, K) that holds the last K raw inputs, oldest first.
 *   Threaded over (b, t) rows.
 *
 * ssd_scan, chunk == 0 (mamba2.md 2.1): the sequential recurrence per (b, h)
 *   with the state kept in double; the ground truth.
 * ssd_scan, chunk == Q > 0 (mamba2.md 2.2): the chunked SSD algorithm in
 *   f32, chunk by chunk, the running state carrying stage 4:
 *   1. per (b,h): dt = softplus(dt_raw + dt_bias), padded with dt = 0 past the
 *      end of a partial last chunk; acs = inclusive prefix sum of dt*A;
 *      last = acs[Q-1].
 *   2. per (b,g): CB[l,s] = C_l . B_s for s <= l (lower triangle only);
 *      per (b,h): Ydiag[l] = sum_{s<=l} CB[l,s] exp(seg(l,s)) dt_s x_s with
 *      seg(l,s) = acs_l - acs_s. The exponent is never formed from two
 *      separately exponentiated cumulative sums; it is accumulated as the
 *      segment sum dA_l + ... + dA_{s+1} walking s down from l (the
 *      cancellation-free variant of mamba2.md 8.3), clamped to <= 0 like
 *      upstream HEAD, and the s > l half is never evaluated (masked by
 *      selection, not by multiplying with 0).
 *   3. per (b,h): chunk state S[p,n] = sum_s exp(last - acs_s) dt_s x_s[p] B_s[n]
 *      (exponent again a segment sum, walking s down from the chunk end).
 *   5. per (b,h): y_l = Ydiag_l + exp(acs_l) (Hin C_l) + D x_l, with Hin the
 *      state entering the chunk (computed before stage 4 updates it).
 *   4. per (b,h): Hin <- exp(last) Hin + S (into the state buffer).
 *   Per chunk there is one pool pass over (b,g) for CB and one over (b,h) for
 *   the rest; each output element is owned by one task, so the result does
 *   not depend on the thread count.
 * ssd_step (mamba2.md 3 step 3): one token per row, f32, threaded over (b,h).
 *
 * Layouts: x (B,T,H,P), dt_raw (B,T,H), Bm/Cm (B,T,G,N) as strided views with
 * a contiguous last dim; y (B,T,H,P) and state (B,H,P,N) contiguous.
 */
#include "ssm.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/parallel.h"
#include "omni/status.h"

#define PAR_MIN_WORK 32768 /* elements of work below which threads are not woken */

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

/* softplus with upstream's threshold: v itself above 20 (mamba2.md 1.4) */
static inline float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

static void run(int64_t n, int64_t work, omni_parallel_fn fn, void *ctx)
{
    if (work >= PAR_MIN_WORK)
        omni_parallel_for(n, fn, ctx);
    else if (n > 0)
        fn(ctx, 0, n);
}

/* ---- conv1d ------------------------------------------------------------------------ */

struct conv_ctx {
    float *out;
    const float *x, *w, *bias;
    const float *state;
    struct omni_conv_state_strides ss;
    int64_t x_sb, x_st, T, C, K;
    int silu;
};

static void conv_rows(void *arg, int64_t begin, int64_t end)
{
    const struct conv_ctx *c = arg;
    for (int64_t row = begin; row < end; row++) {
        int64_t b = row / c->T, t = row % c->T;
        float *o = c->out + row * c->C;
        for (int64_t ch = 0; ch < c->C; ch++) {
            float acc = c->bias ? c->bias[ch] : 0.0f;
            for (int64_t k = 0; k < c->K; k++) {
                int64_t j = t - (c->K - 1) + k; /* input position */
                float v;
                if (j >= 0)
                    v = c->x[b * c->x_sb + j * c->x_st + ch];
                else if (c->state)
                    v = c->state[b * c->ss.sb + ch * c->ss.sc + (c->K + j) * c->ss.sk];
                else
                    v = 0.0f;
                acc += c->w[ch * c->K + k] * v;
            }
            o[ch] = c->silu ? silu(acc) : acc;
        }
    }
}

void omni_conv1d_causal_cpu(float *out, const float *x, int64_t x_sb, int64_t x_st, const float *w,
                            const float *bias, float *state, struct omni_conv_state_strides ss,
                            int64_t B, int64_t T, int64_t C, int64_t K, int apply_silu)
{
    struct conv_ctx c = {.out = out, .x = x, .w = w, .bias = bias, .state = state, .ss = ss,
                         .x_sb = x_sb, .x_st = x_st, .T = T, .C = C, .K = K, .silu = apply_silu};
    if (T > 0)
        run(B * T, B * T * C * K, conv_rows, &c);
    if (!state || T <= 0)
        return;
    /* new slot k = input T-K+k: the old slot k+T while that exists, else x.
     * Ascending k reads old slots above k only, so in place is safe. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < C; ch++) {
            float *s = state + b * ss.sb + ch * ss.sc;
            for (int64_t k = 0; k < K; k++)
                s[k * ss.sk] = k + T < K ? s[(k + T) * ss.sk] : x[b * x_sb + (T - K + k) * x_st + ch];
        }
}

void omni_conv1d_step_cpu(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                          const float *bias, float *state, struct omni_conv_state_strides ss,
                          int64_t B, int64_t C, int64_t K, int apply_silu)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < C; ch++) {
            float *s = state + b * ss.sb + ch * ss.sc;
            for (int64_t k = 0; k + 1 < K; k++)
                s[k * ss.sk] = s[(k + 1) * ss.sk];
            s[(K - 1) * ss.sk] = x[b * ldx + ch];
            float acc = bias ? bias[ch] : 0.0f;
            for (int64_t k = 0; k < K; k++)
                acc += w[ch * K + k] * s[k * ss.sk];
            out[b * ldo + ch] = apply_silu ? silu(acc) : acc;
        }
}

/* ---- SSD: sequential reference --------------------------------------------------------- */

struct ssd_ctx {
    float *y, *state;
    const float *x, *dt_raw, *A, *Bm, *Cm, *D, *dt_bias;
    const struct omni_ssd_dims *d;
    int64_t Q, c0, Lc; /* chunk size, first token and length of the current chunk */
    float *cb;         /* (B, G, Q, Q) */
    atomic_int nomem;
};

static void seq_heads(void *arg, int64_t begin, int64_t end)
{
    struct ssd_ctx *c = arg;
    const struct omni_ssd_dims *d = c->d;
    double *S = malloc(sizeof(double) * (size_t)(d->P * d->N));
    if (!S) {
        atomic_store(&c->nomem, 1);
        return;
    }
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t b = bh / d->H, h = bh % d->H, g = h / (d->H / d->G);
        float *st = c->state + bh * d->P * d->N;
        for (int64_t i = 0; i < d->P * d->N; i++)
            S[i] = st[i];
        for (int64_t t = 0; t < d->T; t++) {
            const float *x = c->x + b * d->x_sb + t * d->x_st + h * d->x_sh;
            const float *Bv = c->Bm + b * d->b_sb + t * d->b_st + g * d->b_sg;
            const float *Cv = c->Cm + b * d->c_sb + t * d->c_st + g * d->c_sg;
            float v = c->dt_raw[b * d->dt_sb + t * d->dt_st + h] + c->dt_bias[h]; /* f32 add */
            double dt = v > 20.0f ? (double)v : log1p(exp((double)v));
            double a = exp(dt * (double)c->A[h]);
            float *y = c->y + ((b * d->T + t) * d->H + h) * d->P;
            for (int64_t p = 0; p < d->P; p++) {
                double *Sp = S + p * d->N, dx = dt * x[p], acc = 0.0;
                for (int64_t n = 0; n < d->N; n++) {
                    Sp[n] = a * Sp[n] + dx * Bv[n];
                    acc += Sp[n] * Cv[n];
                }
                y[p] = (float)(acc + (double)c->D[h] * x[p]);
            }
        }
        for (int64_t i = 0; i < d->P * d->N; i++)
            st[i] = (float)S[i];
    }
    free(S);
}

/* ---- SSD: chunked ------------------------------------------------------------------------ */

/* stage 2a: CB[b,g][l,s] = C_l . B_s, s <= l < Lc */
static void chunk_cb(void *arg, int64_t begin, int64_t end)
{
    struct ssd_ctx *c = arg;
    const struct omni_ssd_dims *d = c->d;
    for (int64_t bg = begin; bg < end; bg++) {
        int64_t b = bg / d->G, g = bg % d->G;
        float *cb = c->cb + bg * c->Q * c->Q;
        for (int64_t l = 0; l < c->Lc; l++) {
            const float *Cv = c->Cm + b * d->c_sb + (c->c0 + l) * d->c_st + g * d->c_sg;
            for (int64_t s = 0; s <= l; s++) {
                const float *Bv = c->Bm + b * d->b_sb + (c->c0 + s) * d->b_st + g * d->b_sg;
                float acc = 0.0f;
                for (int64_t n = 0; n < d->N; n++)
                    acc += Cv[n] * Bv[n];
                cb[l * c->Q + s] = acc;
            }
        }
    }
}

/* stages 1, 2b, 3, 5, 4 for the heads [begin, end) of the current chunk */
static void chunk_heads(void *arg, int64_t begin, int64_t end)
{
    struct ssd_ctx *c = arg;
    const struct omni_ssd_dims *d = c->d;
    const int64_t Q = c->Q, P = d->P, N = d->N;
    float *buf = malloc(sizeof(float) * (size_t)(3 * Q + P + P * N));
    if (!buf) {
        atomic_store(&c->nomem, 1);
        return;
    }
    float *dtv = buf, *dA = buf + Q, *acs = buf + 2 * Q, *yacc = buf + 3 * Q, *S = yacc + P;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t b = bh / d->H, h = bh % d->H, g = h / (d->H / d->G);
        const float *cb = c->cb + (b * d->G + g) * Q * Q;
        float *st = c->state + bh * P * N;
        const float A = c->A[h], Dh = c->D[h];
#define XP(l) (c->x + b * d->x_sb + (c->c0 + (l)) * d->x_st + h * d->x_sh)
#define BP(l) (c->Bm + b * d->b_sb + (c->c0 + (l)) * d->b_st + g * d->b_sg)
#define CP(l) (c->Cm + b * d->c_sb + (c->c0 + (l)) * d->c_st + g * d->c_sg)

        /* stage 1: dt (0 past the chunk's real length), dA, inclusive cumsum */
        float run_sum = 0.0f;
        for (int64_t l = 0; l < Q; l++) {
            dtv[l] = l < c->Lc ? softplus(c->dt_raw[b * d->dt_sb + (c->c0 + l) * d->dt_st + h] + c->dt_bias[h])
                               : 0.0f;
            dA[l] = dtv[l] * A;
            run_sum += dA[l];
            acs[l] = run_sum;
        }
        const float last = acs[Q - 1];

        /* stages 2b + 5: y for each real position l of the chunk */
        for (int64_t l = 0; l < c->Lc; l++) {
            for (int64_t p = 0; p < P; p++)
                yacc[p] = 0.0f;
            float seg = 0.0f; /* acs_l - acs_s as dA_l + ... + dA_{s+1} */
            for (int64_t s = l; s >= 0; s--) {
                float wls = cb[l * Q + s] * expf(fminf(seg, 0.0f)) * dtv[s];
                const float *xs = XP(s);
                for (int64_t p = 0; p < P; p++)
                    yacc[p] += wls * xs[p];
                seg += dA[s];
            }
            const float decay = expf(acs[l]); /* acs_l <= 0: from the chunk start, no overflow */
            const float *Cv = CP(l), *xl = XP(l);
            float *y = c->y + ((b * d->T + c->c0 + l) * d->H + h) * P;
            for (int64_t p = 0; p < P; p++) {
                const float *Hp = st + p * N;
                float off = 0.0f;
                for (int64_t n = 0; n < N; n++)
                    off += Cv[n] * Hp[n];
                y[p] = yacc[p] + decay * off + Dh * xl[p];
            }
        }

        /* stage 3: chunk state from a zero start; exp(last - acs_s) as the
         * suffix sum dA_{s+1} + ... + dA_{Q-1} (the padding adds zeros) */
        memset(S, 0, sizeof(float) * (size_t)(P * N));
        float suf = 0.0f;
        for (int64_t s = c->Lc - 1; s >= 0; s--) {
            float ws = expf(fminf(suf, 0.0f)) * dtv[s];
            const float *xs = XP(s), *Bv = BP(s);
            for (int64_t p = 0; p < P; p++) {
                float wx = ws * xs[p];
                float *Sp = S + p * N;
                for (int64_t n = 0; n < N; n++)
                    Sp[n] += wx * Bv[n];
            }
            suf += dA[s];
        }

        /* stage 4: state passing into the next chunk */
        const float el = expf(last);
        for (int64_t i = 0; i < P * N; i++)
            st[i] = el * st[i] + S[i];
#undef XP
#undef BP
#undef CP
    }
    free(buf);
}

int omni_ssd_scan_cpu(float *y, const float *x, const float *dt_raw, const float *A,
                      const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                      float *state, const struct omni_ssd_dims *d, int64_t chunk)
{
    struct ssd_ctx c = {.y = y, .state = state, .x = x, .dt_raw = dt_raw, .A = A, .Bm = Bm,
                        .Cm = Cm, .D = D, .dt_bias = dt_bias, .d = d};
    atomic_init(&c.nomem, 0);
    if (d->T <= 0 || d->B <= 0 || d->H <= 0)
        return OMNI_OK;
    const int64_t BH = d->B * d->H, PN = d->P * d->N;
    if (chunk == 0) {
        run(BH, BH * d->T * PN, seq_heads, &c);
        return atomic_load(&c.nomem) ? OMNI_ENOMEM : OMNI_OK;
    }
    /* A chunk longer than the sequence computes exactly what a T-long one does
     * (the rest is dt = 0 padding), so cap the scratch at T. */
    c.Q = chunk < d->T ? chunk : d->T;
    c.cb = malloc(sizeof(float) * (size_t)(d->B * d->G * c.Q * c.Q));
    if (!c.cb)
        return OMNI_ENOMEM;
    for (c.c0 = 0; c.c0 < d->T; c.c0 += c.Q) {
        c.Lc = d->T - c.c0 < c.Q ? d->T - c.c0 : c.Q;
        run(d->B * d->G, d->B * d->G * c.Lc * c.Lc * d->N / 2, chunk_cb, &c);
        run(BH, BH * c.Lc * (c.Lc / 2 + 2 * d->N) * d->P, chunk_heads, &c);
        if (atomic_load(&c.nomem))
            break;
    }
    free(c.cb);
    return atomic_load(&c.nomem) ? OMNI_ENOMEM : OMNI_OK;
}

/* ---- SSD: decode step ---------------------------------------------------------------------- */

static void step_heads(void *arg, int64_t begin, int64_t end)
{
    struct ssd_ctx *c = arg;
    const struct omni_ssd_dims *d = c->d;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t b = bh / d->H, h = bh % d->H, g = h / (d->H / d->G);
        const float *x = c->x + b * d->x_sb + h * d->x_sh;
        const float *Bv = c->Bm + b * d->b_sb + g * d->b_sg;
        const float *Cv = c->Cm + b * d->c_sb + g * d->c_sg;
        float dt = softplus(c->dt_raw[b * d->dt_sb + h] + c->dt_bias[h]);
        float a = expf(dt * c->A[h]);
        float *S = c->state + bh * d->P * d->N, *y = c->y + bh * d->P;
        for (int64_t p = 0; p < d->P; p++) {
            float *Sp = S + p * d->N, acc = 0.0f;
            for (int64_t n = 0; n < d->N; n++) {
                Sp[n] = a * Sp[n] + (dt * Bv[n]) * x[p];
                acc += Sp[n] * Cv[n];
            }
            y[p] = acc + c->D[h] * x[p];
        }
    }
}

void omni_ssd_step_cpu(float *y, const float *x, const float *dt_raw, const float *A,
                       const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                       float *state, const struct omni_ssd_dims *d)
{
    struct ssd_ctx c = {.y = y, .state = state, .x = x, .dt_raw = dt_raw, .A = A, .Bm = Bm,
                        .Cm = Cm, .D = D, .dt_bias = dt_bias, .d = d};
    atomic_init(&c.nomem, 0);
    run(d->B * d->H, d->B * d->H * d->P * d->N, step_heads, &c);
}
