/* kernels/cuda/ssm.cu - CUDA twins of kernels/cpu/ssm.c: the depthwise causal
 * conv1d (+SiLU) over a sequence and for one decode step, and the Mamba-2
 * selective scan (SSD) over a sequence (chunked, or sequential) and for one
 * decode step. Signatures and layouts are those of kernels/ssm.h; every
 * pointer is device memory and the work is queued on the current stream.
 *
 * conv1d_causal, K <= 4: one thread per (b, channel, run of 8 positions),
 *   the input window sliding in registers; the first run's blocks also write
 *   the new state (the last K raw inputs). Other K (<= 16): one thread per
 *   output, then a second launch for the state.
 * conv1d_step: one thread per (b, c): shift the K state slots, insert x, dot.
 * ssd_step: one warp per (b, h, p) state row of N values (lane n, n+32, ...):
 *   S = exp(dt A) S + (dt B) x_p; y_p = S·C + D x_p (mamba2.md 3 step 3).
 * ssd_scan, chunk Q > 0 (mamba2.md 2.2; Q is capped at T as in the CPU
 *   twin), f32 FMA throughout (no TF32), three or four launches:
 *   1. ssd_prep_k: CB[b,c,g][l][s] = C_l·B_s for the 32x32 tiles with
 *      s-tile <= l-tile, and in the same launch one warp per (b, h, c) for
 *      dt = softplus(dt_raw + bias), acs = inclusive prefix sum of dt A
 *      (summed in double, kept as an f32 value + f32 remainder so that
 *      acs_l - acs_s keeps its digits) and w_s = exp(min(last - acs_s, 0)) dt_s,
 *      stored together per position (struct ssd_pos, one 16-byte load).
 *   2. ssd_states_k: chunk states S[p][n] = sum_s x_s[p] w_s B_s[n].
 *   3. ssd_pass_k (nc > 1): state passing over the chunks per (b,h,p,n), the
 *      loads of 8 chunks in flight at once; the buffer of S is overwritten
 *      with the state entering each chunk, the final state goes to `state`.
 *   4. ssd_out_k: y_l = sum_{s<=l} CB[l,s] exp(min(acs_l - acs_s, 0)) dt_s x_s
 *            + exp(acs_l) (Hin C_l) + D x_l.
 *   With one chunk (nc == 1) Hin is the initial state itself: ssd_out_k runs
 *   before ssd_states_k, which then writes state = exp(last) state + S in
 *   place (no pass, no S buffer). The products of 2 and 4 are 64x64 output
 *   tiles per block of 128 threads, 8x4 outputs per thread, operands staged
 *   through shared memory 32 reduction steps at a time (the next step's
 *   loaded into registers during the current product) and read as float4.
 *   Exponent differences are clamped to <= 0 (upstream HEAD) and the s > l
 *   half is zeroed (its CB is never read; the exponent is clamped before
 *   exp). Scratch comes from the device's prefill workspace: 4 B H nc Q +
 *   B nc G Q Q (+ B nc H P N when nc > 1) floats.
 * ssd_scan, chunk == 0: the sequential recurrence with an f32 state, one
 *   warp per (b, h, p) row walking t (the CPU twin keeps that state in
 *   double; the test tolerance covers the difference).
 */
#include "common.cuh"
#include "ssm.h"

/* ---- conv1d ------------------------------------------------------------------------ */

#define CONV_TT 8 /* positions per thread of conv1d_seq_k (>= K - 1) */

/* K <= 4: one thread per (b, channel, run of CONV_TT positions), the K-wide
 * input window slides in registers. grid (channel blocks, position runs, B).
 * The blocks of the first run also write the new state: each thread reads
 * the old history of its channel before it overwrites it, and no other block
 * reads the state (their windows start at t >= CONV_TT - (K - 1) >= 0). */
template <int K>
__global__ void __launch_bounds__(128)
    conv1d_seq_k(float *__restrict__ out, const float *__restrict__ x, int64_t x_sb, int64_t x_st,
                 const float *__restrict__ w, const float *__restrict__ bias, float *state,
                 struct omni_conv_state_strides ss, int T, int C, int silu)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    const int t0 = blockIdx.y * CONV_TT;
    const int64_t b = blockIdx.z;
    const float *xb = x + b * x_sb + c;
    float *sp = state ? state + b * ss.sb + (int64_t)c * ss.sc : NULL;
    float wr[K], win[K];
#pragma unroll
    for (int k = 0; k < K; k++)
        wr[k] = w[(int64_t)c * K + k];
    const float bv = bias ? bias[c] : 0.0f;
#pragma unroll
    for (int j = 0; j + 1 < K; j++) {
        const int src = t0 - (K - 1) + j;
        win[j] = src >= 0 ? xb[src * x_st] : sp ? sp[(K + src) * ss.sk] : 0.0f;
    }
    if (blockIdx.y == 0 && sp) {
        float nw[K];
#pragma unroll
        for (int j = 0; j < K; j++) {
            const int src = T - K + j; /* j + T < K when src < 0 */
            nw[j] = src >= 0 ? xb[src * x_st] : sp[(j + T) * ss.sk];
        }
#pragma unroll
        for (int j = 0; j < K; j++)
            sp[j * ss.sk] = nw[j];
    }
    float xin[CONV_TT];
#pragma unroll
    for (int u = 0; u < CONV_TT; u++)
        xin[u] = t0 + u < T ? xb[(int64_t)(t0 + u) * x_st] : 0.0f;
    float *ob = out + (b * T + t0) * (int64_t)C + c;
#pragma unroll
    for (int u = 0; u < CONV_TT; u++) {
        if (t0 + u >= T)
            break;
        win[K - 1] = xin[u];
        float acc = bv;
#pragma unroll
        for (int k = 0; k < K; k++)
            acc += wr[k] * win[k];
        ob[(int64_t)u * C] = silu ? omni__silu(acc) : acc;
#pragma unroll
        for (int k = 0; k + 1 < K; k++)
            win[k] = win[k + 1];
    }
}

/* Any K <= 16: one thread per (b, t, c) output reads its K inputs (from the
 * state for positions before the call). */
__global__ void conv1d_causal_k(float *out, const float *x, int64_t x_sb, int64_t x_st,
                                const float *w, const float *bias, const float *state,
                                struct omni_conv_state_strides ss, int64_t B, int64_t T, int64_t C,
                                int64_t K, int silu)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * T * C)
        return;
    const int64_t c = i % C, t = (i / C) % T, b = i / (C * T);
    float acc = bias ? bias[c] : 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const int64_t src = t - (K - 1) + k;
        float v;
        if (src >= 0)
            v = x[b * x_sb + src * x_st + c];
        else if (state)
            v = state[b * ss.sb + c * ss.sc + (K + src) * ss.sk];
        else
            v = 0.0f;
        acc += w[c * K + k] * v;
    }
    out[i] = silu ? omni__silu(acc) : acc;
}

/* state[b,c,:] = the last K raw inputs (history-padded); after conv1d_causal_k */
__global__ void conv1d_state_k(float *state, struct omni_conv_state_strides ss, const float *x,
                               int64_t x_sb, int64_t x_st, int64_t B, int64_t T, int64_t C,
                               int64_t K)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * C)
        return;
    const int64_t c = i % C, b = i / C;
    float *s = state + b * ss.sb + c * ss.sc;
    float old[16];
    const int64_t keep = T < K ? K - T : 0; /* history slots still needed */
    for (int64_t j = 0; j < keep && j < 16; j++)
        old[j] = s[(T + j) * ss.sk];
    for (int64_t j = 0; j < K; j++) {
        const int64_t src = T - K + j; /* position in this call */
        s[j * ss.sk] = src >= 0 ? x[b * x_sb + src * x_st + c] : old[j];
    }
}

extern "C" void omni_conv1d_causal_cuda(float *out, const float *x, int64_t x_sb, int64_t x_st,
                                        const float *w, const float *bias, float *state,
                                        struct omni_conv_state_strides ss, int64_t B, int64_t T,
                                        int64_t C, int64_t K, int apply_silu)
{
    if (B * T * C == 0)
        return;
    if (K > 16) {
        omni__cuda_fail(__FILE__, __LINE__, "conv1d on CUDA supports K <= 16, got K=%lld",
                        (long long)K);
        return;
    }
    const int64_t runs = (T + CONV_TT - 1) / CONV_TT;
    if (K <= 4 && runs <= 65535 && B <= 65535 && B * T * C < ((int64_t)1 << 31)) {
        const dim3 grid(omni__blocks(C, 128), (unsigned)runs, (unsigned)B);
        const int Ti = (int)T, Ci = (int)C;
        if (K == 1)
            OMNI_LAUNCH(conv1d_seq_k<1>, grid, 128, 0, out, x, x_sb, x_st, w, bias, state, ss,
                        Ti, Ci, apply_silu);
        else if (K == 2)
            OMNI_LAUNCH(conv1d_seq_k<2>, grid, 128, 0, out, x, x_sb, x_st, w, bias, state, ss,
                        Ti, Ci, apply_silu);
        else if (K == 3)
            OMNI_LAUNCH(conv1d_seq_k<3>, grid, 128, 0, out, x, x_sb, x_st, w, bias, state, ss,
                        Ti, Ci, apply_silu);
        else
            OMNI_LAUNCH(conv1d_seq_k<4>, grid, 128, 0, out, x, x_sb, x_st, w, bias, state, ss,
                        Ti, Ci, apply_silu);
        return;
    }
    OMNI_LAUNCH(conv1d_causal_k, omni__blocks(B * T * C, 256), 256, 0, out, x, x_sb, x_st, w,
                bias, state, ss, B, T, C, K, apply_silu);
    if (state)
        OMNI_LAUNCH(conv1d_state_k, omni__blocks(B * C, 256), 256, 0, state, ss, x, x_sb, x_st, B,
                    T, C, K);
}

__global__ void conv1d_step_k(float *out, int64_t ldo, const float *x, int64_t ldx,
                              const float *w, const float *bias, float *state,
                              struct omni_conv_state_strides ss, int64_t B, int64_t C, int64_t K,
                              int silu)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * C)
        return;
    const int64_t c = i % C, b = i / C;
    float *s = state + b * ss.sb + c * ss.sc;
    const float xv = x[b * ldx + c];
    float acc = bias ? bias[c] : 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float v = k + 1 < K ? s[(k + 1) * ss.sk] : xv;
        s[k * ss.sk] = v;
        acc += w[c * K + k] * v;
    }
    out[b * ldo + c] = silu ? omni__silu(acc) : acc;
}

extern "C" void omni_conv1d_step_cuda(float *out, int64_t ldo, const float *x, int64_t ldx,
                                      const float *w, const float *bias, float *state,
                                      struct omni_conv_state_strides ss, int64_t B, int64_t C,
                                      int64_t K, int apply_silu)
{
    if (B * C == 0)
        return;
    OMNI_LAUNCH(conv1d_step_k, omni__blocks(B * C, 256), 256, 0, out, ldo, x, ldx, w, bias, state,
                ss, B, C, K, apply_silu);
}

/* ---- decode step and sequential scan ------------------------------------------------- */

#define STEP_ROWS 8 /* state rows (p) per block: 4 warps x 2 rows */

/* One warp per state row; T tokens walked in order (T = 1 for the step).
 * y: (B,T,H,P) contiguous; state (B,H,P,N) contiguous. */
template <int NJ>
__global__ void __launch_bounds__(128) ssd_rows_k(float *y, const float *x, const float *dt_raw,
                                                  const float *A, const float *Bm, const float *Cm,
                                                  const float *Dsk, const float *dt_bias,
                                                  float *state, struct omni_ssd_dims d)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, g = h / (d.H / d.G);
    const int64_t p0 = (int64_t)blockIdx.y * STEP_ROWS;
    const float Ah = A[h], bias = dt_bias[h], Dh = Dsk[h];
    float Sr[STEP_ROWS / 4][NJ];
    float *S = state + (bh * d.P) * d.N;
    /* load this warp's rows of the state */
#pragma unroll
    for (int r = 0; r < STEP_ROWS / 4; r++) {
        const int64_t p = p0 + warp * (STEP_ROWS / 4) + r;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int64_t n = lane + 32 * j;
            Sr[r][j] = (p < d.P && n < d.N) ? S[p * d.N + n] : 0.0f;
        }
    }
    for (int64_t t = 0; t < d.T; t++) {
        const float dt = omni__softplus(dt_raw[b * d.dt_sb + t * d.dt_st + h] + bias);
        const float a = expf(dt * Ah);
        float Bv[NJ], Cv[NJ];
        const float *Bp = Bm + b * d.b_sb + t * d.b_st + g * d.b_sg;
        const float *Cp = Cm + b * d.c_sb + t * d.c_st + g * d.c_sg;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int64_t n = lane + 32 * j;
            Bv[j] = n < d.N ? dt * Bp[n] : 0.0f;
            Cv[j] = n < d.N ? Cp[n] : 0.0f;
        }
        const float *xp = x + b * d.x_sb + t * d.x_st + h * d.x_sh;
#pragma unroll
        for (int r = 0; r < STEP_ROWS / 4; r++) {
            const int64_t p = p0 + warp * (STEP_ROWS / 4) + r;
            if (p >= d.P)
                break;
            const float xv = xp[p];
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const float s = a * Sr[r][j] + Bv[j] * xv;
                Sr[r][j] = s;
                acc += s * Cv[j];
            }
            acc = omni__warp_sum(acc);
            if (lane == 0)
                y[((b * d.T + t) * d.H + h) * d.P + p] = acc + Dh * xv;
        }
    }
#pragma unroll
    for (int r = 0; r < STEP_ROWS / 4; r++) {
        const int64_t p = p0 + warp * (STEP_ROWS / 4) + r;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int64_t n = lane + 32 * j;
            if (p < d.P && n < d.N)
                S[p * d.N + n] = Sr[r][j];
        }
    }
}

/* Any N: the state stays in memory (one pass per token). */
__global__ void __launch_bounds__(128) ssd_rows_any_k(float *y, const float *x,
                                                      const float *dt_raw, const float *A,
                                                      const float *Bm, const float *Cm,
                                                      const float *Dsk, const float *dt_bias,
                                                      float *state, struct omni_ssd_dims d)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, g = h / (d.H / d.G);
    const int64_t p0 = (int64_t)blockIdx.y * STEP_ROWS;
    const float Ah = A[h], bias = dt_bias[h], Dh = Dsk[h];
    float *S = state + (bh * d.P) * d.N;
    for (int64_t t = 0; t < d.T; t++) {
        const float dt = omni__softplus(dt_raw[b * d.dt_sb + t * d.dt_st + h] + bias);
        const float a = expf(dt * Ah);
        const float *Bp = Bm + b * d.b_sb + t * d.b_st + g * d.b_sg;
        const float *Cp = Cm + b * d.c_sb + t * d.c_st + g * d.c_sg;
        const float *xp = x + b * d.x_sb + t * d.x_st + h * d.x_sh;
        for (int r = 0; r < STEP_ROWS / 4; r++) {
            const int64_t p = p0 + warp * (STEP_ROWS / 4) + r;
            if (p >= d.P)
                break;
            const float xv = xp[p];
            float acc = 0.0f;
            for (int64_t n = lane; n < d.N; n += 32) {
                const float s = a * S[p * d.N + n] + (dt * Bp[n]) * xv;
                S[p * d.N + n] = s;
                acc += s * Cp[n];
            }
            acc = omni__warp_sum(acc);
            if (lane == 0)
                y[((b * d.T + t) * d.H + h) * d.P + p] = acc + Dh * xv;
        }
    }
}

static void ssd_rows(float *y, const float *x, const float *dt_raw, const float *A,
                     const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                     float *state, const struct omni_ssd_dims *d)
{
    const dim3 grid((unsigned)(d->B * d->H), omni__blocks(d->P, STEP_ROWS));
    const int64_t nj = (d->N + 31) / 32;
    if (nj <= 1)
        OMNI_LAUNCH(ssd_rows_k<1>, grid, 128, 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, *d);
    else if (nj <= 2)
        OMNI_LAUNCH(ssd_rows_k<2>, grid, 128, 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, *d);
    else if (nj <= 4)
        OMNI_LAUNCH(ssd_rows_k<4>, grid, 128, 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, *d);
    else if (nj <= 8)
        OMNI_LAUNCH(ssd_rows_k<8>, grid, 128, 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, *d);
    else
        OMNI_LAUNCH(ssd_rows_any_k, grid, 128, 0, y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, *d);
}

extern "C" void omni_ssd_step_cuda(float *y, const float *x, const float *dt_raw, const float *A,
                                   const float *Bm, const float *Cm, const float *D,
                                   const float *dt_bias, float *state,
                                   const struct omni_ssd_dims *d)
{
    if (d->B * d->H * d->P == 0)
        return;
    struct omni_ssd_dims one = *d;
    one.T = 1;
    one.x_st = one.dt_st = one.b_st = one.c_st = 0;
    ssd_rows(y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, &one);
}

/* ---- chunked scan ---------------------------------------------------------------------- */

#define CT 64          /* output tile edge of ssd_states_k / ssd_out_k */
#define CK 32          /* reduction step */
#define CLD (CT + 4)   /* shared row: float4-aligned, transposed stores at most 4-way conflicted */
#define CTHREADS 128   /* 8 x 16 threads, 8 x 4 outputs each */
#define CM (CK * CT / CTHREADS) /* operand values each thread stages per step (16) */
#define CBT 32         /* CB tile edge (small tiles: that launch is latency bound) */

/* per position of a chunk: acs (f32 value), its f32 remainder, dt, w */
struct ssd_pos {
    float a, al, dt, w;
};

/* acc[i][j] += sum_k As[k][ty*8 + i] * Bs[k][tx*4 + j] over one reduction step */
__device__ __forceinline__ void ssd_tile_fma(const float (*As)[CLD], const float (*Bs)[CLD],
                                             float acc[8][4], int ty, int tx)
{
#pragma unroll 8
    for (int k = 0; k < CK; k++) {
        const float4 a0 = *(const float4 *)&As[k][ty * 8];
        const float4 a1 = *(const float4 *)&As[k][ty * 8 + 4];
        const float4 bq = *(const float4 *)&Bs[k][tx * 4];
        const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const float bb[4] = {bq.x, bq.y, bq.z, bq.w};
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                acc[i][j] = fmaf(a[i], bb[j], acc[i][j]);
    }
}

/* Launch 1, two kinds of block:
 * blocks [0, ncb): CB[b,c,g][l][s] = C_l · B_s for the 32x32 tiles with
 *   s-tile <= l-tile (tile index tri -> (lt, st) in row order), 2 x 4 per thread;
 * blocks [ncb, ...): one warp per (b, h, c): dt = softplus(dt_raw + bias)
 *   (0 past T), acs = inclusive prefix sum of dA = dt A (f32 products summed
 *   in double by warp scans of 32 with a carry, kept as the f32 value a and
 *   its f32 remainder al, so that acs_l - acs_s cancels no digits when both
 *   are large), then w = exp(min(acs[Q-1] - acs, 0)) dt for the chunk
 *   states. pos: (B, H, nc, Q). */
__global__ void __launch_bounds__(CTHREADS)
    ssd_prep_k(float *__restrict__ CB, struct ssd_pos *__restrict__ pos,
               const float *__restrict__ Bm, const float *__restrict__ Cm,
               const float *__restrict__ dt_raw, const float *__restrict__ A,
               const float *__restrict__ dt_bias, struct omni_ssd_dims d, int Q, int nc, int ncb)
{
    const int tid = threadIdx.x;
    if ((int)blockIdx.x >= ncb) {
        const int lane = tid & 31;
        const int64_t wid = ((int64_t)blockIdx.x - ncb) * (CTHREADS / 32) + (tid >> 5);
        if (wid >= d.B * d.H * nc)
            return;
        const int c = (int)(wid % nc);
        const int64_t bh = wid / nc, b = bh / d.H;
        const int h = (int)(bh % d.H);
        const float Ah = A[h], bias = dt_bias[h];
        struct ssd_pos *pc = pos + wid * Q;
        const float *raw = dt_raw + b * d.dt_sb + h;
        double carry = 0.0;
        for (int l0 = 0; l0 < Q; l0 += 128) {
            float rv[4];
            bool ok[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int l = l0 + 32 * u + lane;
                const int64_t t = (int64_t)c * Q + l;
                ok[u] = l < Q && t < d.T;
                rv[u] = ok[u] ? raw[t * d.dt_st] : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int l = l0 + 32 * u + lane;
                const float dt = ok[u] ? omni__softplus(rv[u] + bias) : 0.0f;
                double v = (double)(dt * Ah);
#pragma unroll
                for (int o = 1; o < 32; o <<= 1) {
                    const double up = __shfl_up_sync(0xffffffffu, v, o);
                    if (lane >= o)
                        v += up;
                }
                v += carry;
                if (l < Q) {
                    const float hi = (float)v;
                    pc[l] = ssd_pos{hi, (float)(v - (double)hi), dt, 0.0f};
                }
                carry = __shfl_sync(0xffffffffu, v, 31); /* lanes past Q add dt = 0 */
            }
        }
        for (int l = lane; l < Q; l += 32) {
            const struct ssd_pos q = pc[l];
            pc[l].w = expf(fminf((float)(carry - ((double)q.a + q.al)), 0.0f)) * q.dt;
        }
        return;
    }
    const int nt = (Q + CBT - 1) / CBT, ntri = nt * (nt + 1) / 2;
    const int tri = blockIdx.x % ntri;
    const int64_t z = blockIdx.x / ntri; /* (b, c, g) */
    int lt = 0;
    while ((lt + 1) * (lt + 2) / 2 <= tri)
        lt++;
    const int st = tri - lt * (lt + 1) / 2;
    const int g = (int)(z % d.G), c = (int)((z / d.G) % nc);
    const int64_t b = z / ((int64_t)d.G * nc);
    __shared__ __align__(16) float Cs[CK][CBT + 4];
    __shared__ __align__(16) float Bs[CK][CBT + 4];
    const int ty = tid / 8, tx = tid % 8; /* rows l = ty*2 + i, columns s = tx*4 + j */
    const float *B0 = Bm + b * d.b_sb + (int64_t)c * Q * d.b_st + g * d.b_sg;
    const float *C0 = Cm + b * d.c_sb + (int64_t)c * Q * d.c_st + g * d.c_sg;
    const int len = (int)min((int64_t)Q, d.T - (int64_t)c * Q);
    float acc[2][4] = {};
    for (int n0 = 0; n0 < d.N; n0 += CK) {
        __syncthreads();
        for (int i = tid; i < CK * CBT; i += CTHREADS) {
            const int k = i % CK, r = i / CK, n = n0 + k; /* consecutive threads walk n */
            const int l = lt * CBT + r, s = st * CBT + r;
            Cs[k][r] = (l < len && n < d.N) ? C0[l * d.c_st + n] : 0.0f;
            Bs[k][r] = (s < len && n < d.N) ? B0[s * d.b_st + n] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < CK; k++) {
            const float2 a = *(const float2 *)&Cs[k][ty * 2];
            const float4 q = *(const float4 *)&Bs[k][tx * 4];
            const float av[2] = {a.x, a.y}, bv[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
    }
    float *out = CB + z * Q * Q;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int l = lt * CBT + ty * 2 + i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int s = st * CBT + tx * 4 + j;
            if (l < Q && s < Q)
                out[(int64_t)l * Q + s] = acc[i][j];
        }
    }
}

/* Chunk states S[p][n] = sum_s x_s[p] w_s B_s[n] of chunk c, head h: one
 * 64 (p) x 64 (n) tile per block; grid (B nc H) x tiles. The next step's
 * operands are loaded into registers while the current one is multiplied.
 * fin (nc == 1): state = exp(min(acs[Q-1], 0)) state + S instead (the final
 * state), else S goes to Sb[b,c,h]. */
__global__ void __launch_bounds__(CTHREADS, 4)
    ssd_states_k(float *__restrict__ Sb, float *state, const float *__restrict__ x,
                 const float *__restrict__ Bm, const struct ssd_pos *__restrict__ pos,
                 struct omni_ssd_dims d, int Q, int nc, int fin)
{
    const int tn = (d.N + CT - 1) / CT, tp = (d.P + CT - 1) / CT;
    const int tile = blockIdx.x % (tn * tp);
    const int64_t z = blockIdx.x / (tn * tp); /* (b, c, h) */
    const int pt = tile / tn, ntl = tile % tn;
    const int h = (int)(z % d.H), c = (int)((z / d.H) % nc);
    const int64_t b = z / ((int64_t)d.H * nc);
    const int g = h / (int)(d.H / d.G);
    const struct ssd_pos *pc = pos + ((b * d.H + h) * nc + c) * Q;
    const float *X0 = x + b * d.x_sb + (int64_t)c * Q * d.x_st + h * d.x_sh;
    const float *B0 = Bm + b * d.b_sb + (int64_t)c * Q * d.b_st + g * d.b_sg;
    const int len = (int)min((int64_t)Q, d.T - (int64_t)c * Q);
    __shared__ __align__(16) float Xs[CK][CLD];
    __shared__ __align__(16) float Ws[CK][CLD];
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    /* thread tid stages column r0 (p or n) of rows k0 + 2m */
    const int r0 = tid % CT, k0 = tid / CT, p_r = pt * CT + r0, n_r = ntl * CT + r0;
    float xr[CM], br[CM], wr[CM];
    auto fetch = [&](int s0) {
#pragma unroll
        for (int m = 0; m < CM; m++) {
            const int s = s0 + k0 + m * (CTHREADS / CT);
            xr[m] = (s < len && p_r < d.P) ? X0[s * d.x_st + p_r] : 0.0f;
            br[m] = (s < len && n_r < d.N) ? B0[s * d.b_st + n_r] : 0.0f;
            wr[m] = s < len ? pc[s].w : 0.0f;
        }
    };
    float acc[8][4] = {};
    fetch(0);
    for (int s0 = 0; s0 < len; s0 += CK) {
#pragma unroll
        for (int m = 0; m < CM; m++) {
            const int k = k0 + m * (CTHREADS / CT);
            Xs[k][r0] = xr[m];
            Ws[k][r0] = wr[m] * br[m];
        }
        __syncthreads();
        if (s0 + CK < len)
            fetch(s0 + CK);
        ssd_tile_fma(Xs, Ws, acc, ty, tx);
        __syncthreads();
    }
    const int64_t PN = d.P * d.N;
    float *out = fin ? state + (b * d.H + h) * PN : Sb + z * PN;
    const float el = fin ? expf(fminf(pc[Q - 1].a, 0.0f)) : 0.0f;
    const bool keep = fin && !d.zero_in; /* add the decayed initial state */
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int p = pt * CT + ty * 8 + i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = ntl * CT + tx * 4 + j;
            if (p < d.P && n < d.N) {
                float *o = out + (int64_t)p * d.N + n;
                *o = keep ? el * *o + acc[i][j] : acc[i][j];
            }
        }
    }
}

#define PASS_U 8 /* chunks whose loads are in flight together */

/* State passing (nc > 1), one thread per (b, h, e < P N): Sb[b,c,h] is
 * replaced by the state entering chunk c; the final state goes to state.
 * grid (B H, element blocks of 256). */
__global__ void __launch_bounds__(256) ssd_pass_k(float *__restrict__ Sb, float *__restrict__ state,
                                                  const struct ssd_pos *__restrict__ pos, int H,
                                                  int PN, int Q, int nc, int zero_in)
{
    const int e = blockIdx.y * 256 + threadIdx.x;
    if (e >= PN)
        return;
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const struct ssd_pos *last = pos + (int64_t)bh * nc * Q + (Q - 1);
    float *sp = Sb + ((int64_t)b * nc * H + h) * PN + e;
    const int64_t cstep = (int64_t)H * PN;
    float hin = zero_in ? 0.0f : state[(int64_t)bh * PN + e];
    for (int c0 = 0; c0 < nc; c0 += PASS_U) {
        float sc[PASS_U], la[PASS_U];
#pragma unroll
        for (int u = 0; u < PASS_U; u++) {
            const int c = c0 + u;
            sc[u] = c < nc ? sp[c * cstep] : 0.0f;
            la[u] = c < nc ? last[(int64_t)c * Q].a : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PASS_U; u++) {
            const int c = c0 + u;
            if (c < nc) {
                sp[c * cstep] = hin;
                hin = expf(fminf(la[u], 0.0f)) * hin + sc[u];
            }
        }
    }
    state[(int64_t)bh * PN + e] = hin;
}

/* Outputs of chunk c, head h, one 64 (l) x 64 (p) tile per block:
 *   y_l = sum_{s<=l} CB[l,s] exp(min(acs_l - acs_s, 0)) dt_s x_s      (s up to the tile's end)
 *       + sum_n (exp(min(acs_l, 0)) C_l[n]) Hin[p][n] + D x_l
 * Hin: state (nc == 1, before ssd_states_k updates it) or Sb[b,c,h] after
 * ssd_pass_k. One loop over the intra-chunk steps, then the N steps; the next
 * step's raw operands are loaded into registers while the current one is
 * multiplied. grid (B nc H) x tiles, the longest l-tiles first. */
__global__ void __launch_bounds__(CTHREADS, 4)
    ssd_out_k(float *__restrict__ y, const float *__restrict__ x, const float *__restrict__ Cm,
              const float *__restrict__ CB, const float *Hsrc,
              const struct ssd_pos *__restrict__ pos, const float *__restrict__ Dsk,
              struct omni_ssd_dims d, int Q, int nc)
{
    const int nt = (Q + CT - 1) / CT, tp = (d.P + CT - 1) / CT;
    const int tile = blockIdx.x % (nt * tp);
    const int64_t z = blockIdx.x / (nt * tp); /* (b, c, h) */
    const int lt = nt - 1 - tile / tp, pt = tile % tp;
    const int h = (int)(z % d.H), c = (int)((z / d.H) % nc);
    const int64_t b = z / ((int64_t)d.H * nc);
    const int g = h / (int)(d.H / d.G);
    const int len = (int)min((int64_t)Q, d.T - (int64_t)c * Q);
    if (lt * CT >= len)
        return;
    const struct ssd_pos *pc = pos + ((b * d.H + h) * nc + c) * Q;
    const float *cb = CB + ((b * nc + c) * d.G + g) * (int64_t)Q * Q; /* [l][s] */
    const float *hin = Hsrc + z * d.P * d.N; /* z = b H + h when nc == 1 */
    const float *X0 = x + b * d.x_sb + (int64_t)c * Q * d.x_st + h * d.x_sh;
    const float *C0 = Cm + b * d.c_sb + (int64_t)c * Q * d.c_st + g * d.c_sg;
    __shared__ __align__(16) float Ws[CK][CLD];
    __shared__ __align__(16) float Xs[CK][CLD];
    __shared__ float2 alh[CT];
    __shared__ float el[CT];
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    /* W (and Hin) staging: column kq (s or n) of rows rg + 4m (l or p);
     * x staging: column r0 (p) of rows k0 + 2m (s) */
    const int kq = tid % CK, rg = tid / CK, r0 = tid % CT, k0 = tid / CT, p_r = pt * CT + r0;
    if (tid < CT) {
        const int l = lt * CT + tid;
        const struct ssd_pos q = l < len ? pc[l] : ssd_pos{0.0f, 0.0f, 0.0f, 0.0f};
        alh[tid] = make_float2(q.a, q.al);
        el[tid] = expf(fminf(q.a, 0.0f));
    }
    /* Hin is zero for the first chunk of a scan from a zero state: no N steps */
    const int n_in = (min((lt + 1) * CT, len) + CK - 1) / CK;
    const int steps = n_in + (d.zero_in && c == 0 ? 0 : (d.N + CK - 1) / CK);
    float wr[CM], xr[CM], sa = 0.0f, sal = 0.0f, sdt = 0.0f;
    auto fetch = [&](int j) {
        if (j < n_in) {
            const int s = j * CK + kq;
            if (s < len) {
                const struct ssd_pos q = pc[s];
                sa = q.a, sal = q.al, sdt = q.dt;
            }
#pragma unroll
            for (int m = 0; m < CM; m++) {
                const int l = lt * CT + rg + m * (CTHREADS / CK);
                wr[m] = (s <= l && l < len) ? cb[(int64_t)l * Q + s] : 0.0f;
            }
#pragma unroll
            for (int m = 0; m < CM; m++) {
                const int s2 = j * CK + k0 + m * (CTHREADS / CT);
                xr[m] = (s2 < len && p_r < d.P) ? X0[s2 * d.x_st + p_r] : 0.0f;
            }
        } else {
            const int n = (j - n_in) * CK + kq;
#pragma unroll
            for (int m = 0; m < CM; m++) {
                const int r = rg + m * (CTHREADS / CK), l = lt * CT + r, p = pt * CT + r;
                wr[m] = (n < d.N && l < len) ? C0[l * d.c_st + n] : 0.0f;
                xr[m] = (n < d.N && p < d.P) ? hin[(int64_t)p * d.N + n] : 0.0f;
            }
        }
    };
    float acc[8][4] = {};
    fetch(0);
    __syncthreads(); /* alh, el */
    for (int j = 0; j < steps; j++) {
        if (j < n_in) {
#pragma unroll
            for (int m = 0; m < CM; m++) {
                const int r = rg + m * (CTHREADS / CK);
                const float2 a = alh[r];
                /* s > l and padding: wr = 0, the exponent clamped to <= 0 */
                Ws[kq][r] = wr[m] * __expf(fminf((a.x - sa) + (a.y - sal), 0.0f)) * sdt;
                Xs[k0 + m * (CTHREADS / CT)][r0] = xr[m];
            }
        } else {
#pragma unroll
            for (int m = 0; m < CM; m++) {
                const int r = rg + m * (CTHREADS / CK);
                Ws[kq][r] = wr[m] * el[r];
                Xs[kq][r] = xr[m];
            }
        }
        __syncthreads();
        if (j + 1 < steps)
            fetch(j + 1);
        ssd_tile_fma(Ws, Xs, acc, ty, tx);
        __syncthreads();
    }
    const float Dh = Dsk[h];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int l = lt * CT + ty * 8 + i;
        if (l >= len)
            continue;
        const int64_t t = (int64_t)c * Q + l;
        float *yl = y + ((b * d.T + t) * d.H + h) * d.P;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int p = pt * CT + tx * 4 + j;
            if (p < d.P)
                yl[p] = acc[i][j] + Dh * X0[l * d.x_st + p];
        }
    }
}

/* The chunked launches fit the grid limits (1-D grids < 2^31 blocks, the state pass's
 * grid.y = ceil(P N / 256) <= 65535, int Q / nc / P N) and N > 0 (N = 0 would make the
 * chunk-state tiling empty). Otherwise omni_ssd_scan_cuda takes the sequential recurrence
 * (the chunk == 0 path), which computes the same scan. */
static int chunked_fits(const struct omni_ssd_dims *d, int64_t Q, int64_t nc)
{
    const int64_t lim = INT32_MAX;
    if (d->N < 1 || Q > lim || nc > lim || d->P * d->N > 256 * (int64_t)65535)
        return 0;
    const int64_t nt = (Q + CT - 1) / CT, tp = (d->P + CT - 1) / CT, tn = (d->N + CT - 1) / CT;
    const int64_t ntb = (Q + CBT - 1) / CBT, bnc = d->B * nc;
    if (bnc > lim || bnc * d->G > lim || bnc * d->H > lim)
        return 0;
    const int64_t ncb = ntb * (ntb + 1) / 2 * bnc * d->G;
    const int64_t ncs = (bnc * d->H + CTHREADS / 32 - 1) / (CTHREADS / 32);
    return ncb <= lim && ncb + ncs <= lim && bnc * d->H * tp * tn <= lim &&
           bnc * d->H * nt * tp <= lim;
}

extern "C" int omni_ssd_scan_cuda(float *y, const float *x, const float *dt_raw, const float *A,
                                  const float *Bm, const float *Cm, const float *D,
                                  const float *dt_bias, float *state,
                                  const struct omni_ssd_dims *d, int64_t chunk)
{
    if (d->B * d->H * d->P == 0 || d->T == 0)
        return OMNI_OK;
    /* a chunk longer than the sequence computes what a T-long one does (the
     * rest is dt = 0 padding), as in the CPU twin */
    const int64_t Q = chunk == 0 ? 0 : chunk < d->T ? chunk : d->T;
    const int64_t nc = chunk == 0 ? 0 : (d->T + Q - 1) / Q;
    if (chunk == 0 || !chunked_fits(d, Q, nc)) {
        /* the sequential recurrence reads the state: give it the zeros it stands for */
        if (d->zero_in)
            OMNI_CUDA_CHECK(cudaMemsetAsync(
                state, 0, (size_t)(d->B * d->H * d->P * d->N) * sizeof(float), OMNI_STREAM));
        ssd_rows(y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, d);
        return OMNI_OK;
    }
    const size_t n_pos = (size_t)(d->B * d->H * nc * Q), n_cb = (size_t)(d->B * nc * d->G * Q * Q);
    const size_t n_s = nc > 1 ? (size_t)(d->B * nc * d->H * d->P * d->N) : 0;
    struct ssd_pos *pos = (struct ssd_pos *)omni__cuda_workspace(
        n_pos * sizeof(struct ssd_pos) + (n_cb + n_s) * sizeof(float));
    if (!pos)
        return OMNI_ENOMEM;
    float *CB = (float *)(pos + n_pos), *Sb = CB + n_cb;
    const int Qi = (int)Q, nci = (int)nc;
    const int64_t nt = (Q + CT - 1) / CT, tp = (d->P + CT - 1) / CT, tn = (d->N + CT - 1) / CT;
    const int64_t ntb = (Q + CBT - 1) / CBT, ncb = ntb * (ntb + 1) / 2 * d->B * nc * d->G;
    const int64_t ncs = (d->B * d->H * nc + CTHREADS / 32 - 1) / (CTHREADS / 32);
    OMNI_LAUNCH(ssd_prep_k, (unsigned)(ncb + ncs), CTHREADS, 0, CB, pos, Bm, Cm, dt_raw, A,
                dt_bias, *d, Qi, nci, (int)ncb);
    const unsigned n_state = (unsigned)(d->B * nc * d->H * tp * tn);
    const unsigned n_out = (unsigned)(d->B * nc * d->H * nt * tp);
    if (nc == 1) {
        /* Hin = the initial state: outputs first, then the final state in place */
        OMNI_LAUNCH(ssd_out_k, n_out, CTHREADS, 0, y, x, Cm, CB, state, pos, D, *d, Qi, nci);
        OMNI_LAUNCH(ssd_states_k, n_state, CTHREADS, 0, Sb, state, x, Bm, pos, *d, Qi, nci, 1);
        return OMNI_OK;
    }
    OMNI_LAUNCH(ssd_states_k, n_state, CTHREADS, 0, Sb, state, x, Bm, pos, *d, Qi, nci, 0);
    OMNI_LAUNCH(ssd_pass_k, dim3((unsigned)(d->B * d->H), omni__blocks(d->P * d->N, 256)), 256, 0,
                Sb, state, pos, (int)d->H, (int)(d->P * d->N), Qi, nci, d->zero_in);
    OMNI_LAUNCH(ssd_out_k, n_out, CTHREADS, 0, y, x, Cm, CB, Sb, pos, D, *d, Qi, nci);
    return OMNI_OK;
}
