/* kernels/cuda/ssm.cu - CUDA twins of kernels/cpu/ssm.c: the depthwise causal
 * conv1d (+SiLU) over a sequence and for one decode step, and the Mamba-2
 * selective scan (SSD) over a sequence (chunked, or sequential) and for one
 * decode step. Signatures and layouts are those of kernels/ssm.h; every
 * pointer is device memory and the work is queued on the current stream.
 *
 * conv1d_causal: one thread per (b, t, c) output reads its K inputs (from
 *   the state for positions before the call); a second launch then writes
 *   the new state (the last K raw inputs), one thread per (b, c).
 * conv1d_step: one thread per (b, c): shift the K state slots, insert x, dot.
 * ssd_step: one warp per (b, h, p) state row of N values (lane n, n+32, ...):
 *   S = exp(dt A) S + (dt B) x_p; y_p = S·C + D x_p (mamba2.md 3 step 3).
 * ssd_scan, chunk Q > 0 (mamba2.md 2.2), f32 FMA throughout (no TF32):
 *   1. cumsum: per (b, h, chunk) dt = softplus(dt_raw + bias), 0 past T;
 *      acs = inclusive prefix sum of dt A.
 *   2. CB[b,c,g][l][s] = C_l·B_s for the s-tiles at or below the l-tile.
 *   3. chunk states S[b,c,h][p][n] = sum_s exp(min(last - acs_s, 0)) dt_s x_s[p] B_s[n].
 *   4. state passing over chunks per (b,h,p,n): the buffer of S is overwritten
 *      with the state entering each chunk; the final state goes to `state`.
 *   5. y_l = sum_{s<=l} CB[l,s] exp(min(acs_l - acs_s, 0)) dt_s x_s
 *            + exp(acs_l) (Hin C_l) + D x_l.
 *   Exponent differences are clamped to <= 0 (upstream HEAD) and the s > l
 *   half is zeroed by selection. Scratch comes from the device's prefill
 *   workspace: 2 B H nc Q + B nc G Q Q + B nc H P N floats.
 * ssd_scan, chunk == 0: the sequential recurrence with an f32 state, one
 *   warp per (b, h, p) row walking t (the CPU twin keeps that state in
 *   double; the test tolerance covers the difference).
 */
#include "common.cuh"
#include "ssm.h"

/* ---- conv1d ------------------------------------------------------------------------ */

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

/* state[b,c,:] = the last K raw inputs (history-padded) */
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

/* 1. dt and acs: (B, H, nc*Q) each; one thread per (b, h, c). */
__global__ void ssd_cumsum_k(float *dtv, float *acs, const float *dt_raw, const float *A,
                             const float *dt_bias, struct omni_ssd_dims d, int64_t Q, int64_t nc)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d.B * d.H * nc)
        return;
    const int64_t c = i % nc, h = (i / nc) % d.H, b = i / (nc * d.H);
    const float Ah = A[h], bias = dt_bias[h];
    float *dv = dtv + (b * d.H + h) * nc * Q + c * Q, *av = acs + (b * d.H + h) * nc * Q + c * Q;
    float run = 0.0f;
    for (int64_t l = 0; l < Q; l++) {
        const int64_t t = c * Q + l;
        const float dt = t < d.T ? omni__softplus(dt_raw[b * d.dt_sb + t * d.dt_st + h] + bias) : 0.0f;
        run += dt * Ah;
        dv[l] = dt;
        av[l] = run;
    }
}

#define TL 64 /* rows (l or p) of an output tile */
#define TS 32 /* reduction step */

/* 2. CB[b,c,g][l][s] = sum_n C[l,n] B[s,n], 64x64 tiles with s-tile <= l-tile.
 * grid: (lt*nt_s... flattened tiles, B*nc*G); block 256 = 16x16, 4x4 each. */
__global__ void __launch_bounds__(256) ssd_cb_k(float *CB, const float *Bm, const float *Cm,
                                                struct omni_ssd_dims d, int64_t Q, int64_t nc)
{
    const int64_t nt = (Q + TL - 1) / TL;
    const int64_t lt = blockIdx.x / nt, st = blockIdx.x % nt;
    if (st > lt)
        return;
    const int64_t z = blockIdx.y, g = z % d.G, c = (z / d.G) % nc, b = z / (d.G * nc);
    __shared__ float Cs[TS][TL + 1], Bs[TS][TL + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float acc[4][4] = {};
    for (int64_t n0 = 0; n0 < d.N; n0 += TS) {
        for (int i = threadIdx.x; i < TS * TL; i += 256) {
            const int r = i / TS, k = i % TS; /* row r of the tile, column k */
            const int64_t n = n0 + k;
            const int64_t tl = c * Q + lt * TL + r, ts = c * Q + st * TL + r;
            const bool lin = lt * TL + r < Q && tl < d.T && n < d.N;
            const bool sin = st * TL + r < Q && ts < d.T && n < d.N;
            Cs[k][r] = lin ? Cm[b * d.c_sb + tl * d.c_st + g * d.c_sg + n] : 0.0f;
            Bs[k][r] = sin ? Bm[b * d.b_sb + ts * d.b_st + g * d.b_sg + n] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TS; k++) {
            float cv[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                cv[i] = Cs[k][ty * 4 + i];
                bv[i] = Bs[k][tx * 4 + i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += cv[i] * bv[j];
        }
        __syncthreads();
    }
    float *out = CB + z * Q * Q;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t l = lt * TL + ty * 4 + i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t s = st * TL + tx * 4 + j;
            if (l < Q && s < Q)
                out[l * Q + s] = acc[i][j];
        }
    }
}

/* 3. chunk states: S[b,c,h][p][n], output tile 64 (p) x 64 (n); block 256 =
 * 16 (p groups of 4) x 16 (n groups of 4). grid: (tiles of P x N, B*nc*H). */
__global__ void __launch_bounds__(256) ssd_states_k(float *S, const float *x, const float *Bm,
                                                    const float *dtv, const float *acs,
                                                    struct omni_ssd_dims d, int64_t Q, int64_t nc)
{
    const int64_t ntn = (d.N + TL - 1) / TL;
    const int64_t pt = blockIdx.x / ntn, ntile = blockIdx.x % ntn;
    const int64_t z = blockIdx.y, h = z % d.H, c = (z / d.H) % nc, b = z / (d.H * nc);
    const int64_t g = h / (d.H / d.G);
    const float *dv = dtv + (b * d.H + h) * nc * Q + c * Q, *av = acs + (b * d.H + h) * nc * Q + c * Q;
    const float last = av[Q - 1];
    __shared__ float Xs[TS][TL + 1], Ws[TS][TL + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float acc[4][4] = {};
    const int64_t len = min(Q, d.T - c * Q); /* real positions in this chunk */
    for (int64_t s0 = 0; s0 < len; s0 += TS) {
        for (int i = threadIdx.x; i < TS * TL; i += 256) {
            const int k = i / TL, r = i % TL; /* position s0+k, column r */
            const int64_t s = s0 + k, t = c * Q + s;
            const int64_t p = pt * TL + r, n = ntile * TL + r;
            float xv = 0.0f, wv = 0.0f;
            if (s < len) {
                if (p < d.P)
                    xv = x[b * d.x_sb + t * d.x_st + h * d.x_sh + p];
                if (n < d.N) {
                    const float e = expf(fminf(last - av[s], 0.0f)) * dv[s];
                    wv = e * Bm[b * d.b_sb + t * d.b_st + g * d.b_sg + n];
                }
            }
            Xs[k][r] = xv;
            Ws[k][r] = wv;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TS; k++) {
            float xv[4], wv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                xv[i] = Xs[k][ty * 4 + i];
                wv[i] = Ws[k][tx * 4 + i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += xv[i] * wv[j];
        }
        __syncthreads();
    }
    float *out = S + ((b * nc + c) * d.H + h) * d.P * d.N;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t p = pt * TL + ty * 4 + i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t n = ntile * TL + tx * 4 + j;
            if (p < d.P && n < d.N)
                out[p * d.N + n] = acc[i][j];
        }
    }
}

/* 4. state passing, one thread per (b, h, p, n). */
__global__ void ssd_pass_k(float *S, float *state, const float *acs, struct omni_ssd_dims d,
                           int64_t Q, int64_t nc)
{
    const int64_t PN = d.P * d.N;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d.B * d.H * PN)
        return;
    const int64_t e = i % PN, h = (i / PN) % d.H, b = i / (PN * d.H);
    float hin = state[i];
    const float *av = acs + (b * d.H + h) * nc * Q;
    for (int64_t c = 0; c < nc; c++) {
        float *sp = S + ((b * nc + c) * d.H + h) * PN + e;
        const float sc = *sp;
        *sp = hin;
        hin = expf(fminf(av[c * Q + Q - 1], 0.0f)) * hin + sc;
    }
    state[i] = hin;
}

/* 5. outputs: tile 64 (l) x 64 (p) of chunk c, head h; block 256 = 16x16, 4x4
 * each. grid: (l-tiles x p-tiles, B*nc*H). */
__global__ void __launch_bounds__(256) ssd_out_k(float *y, const float *x, const float *Cm,
                                                 const float *CB, const float *S, const float *dtv,
                                                 const float *acs, const float *Dsk,
                                                 struct omni_ssd_dims d, int64_t Q, int64_t nc)
{
    const int64_t ntp = (d.P + TL - 1) / TL;
    const int64_t lt = blockIdx.x / ntp, pt = blockIdx.x % ntp;
    const int64_t z = blockIdx.y, h = z % d.H, c = (z / d.H) % nc, b = z / (d.H * nc);
    const int64_t g = h / (d.H / d.G);
    const int64_t len = min(Q, d.T - c * Q);
    if (lt * TL >= len)
        return;
    const float *dv = dtv + (b * d.H + h) * nc * Q + c * Q, *av = acs + (b * d.H + h) * nc * Q + c * Q;
    const float *cb = CB + ((b * nc + c) * d.G + g) * Q * Q;
    const float *hin = S + ((b * nc + c) * d.H + h) * d.P * d.N;
    __shared__ float Ws[TS][TL + 1], Xs[TS][TL + 1];
    __shared__ float al[TL];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int i = threadIdx.x; i < TL; i += 256)
        al[i] = lt * TL + i < Q ? av[lt * TL + i] : 0.0f;
    float acc[4][4] = {}, off[4][4] = {};
    /* intra-chunk: s from 0 to the end of this l-tile */
    const int64_t s_end = min((lt + 1) * TL, len);
    for (int64_t s0 = 0; s0 < s_end; s0 += TS) {
        __syncthreads();
        for (int i = threadIdx.x; i < TS * TL; i += 256) {
            const int k = i % TS, r = i / TS; /* consecutive threads walk s */
            const int64_t s = s0 + k, l = lt * TL + r;
            Ws[k][r] = (s < len && s <= l && l < len)
                           ? cb[l * Q + s] * expf(fminf(al[r] - av[s], 0.0f)) * dv[s]
                           : 0.0f;
        }
        for (int i = threadIdx.x; i < TS * TL; i += 256) {
            const int k = i / TL, r = i % TL; /* consecutive threads walk p */
            const int64_t s = s0 + k, p = pt * TL + r;
            Xs[k][r] = (s < len && p < d.P) ? x[b * d.x_sb + (c * Q + s) * d.x_st + h * d.x_sh + p]
                                            : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TS; k++) {
            float wv[4], xv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                wv[i] = Ws[k][ty * 4 + i];
                xv[i] = Xs[k][tx * 4 + i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += wv[i] * xv[j];
        }
    }
    /* off-diagonal: C_l · Hin[p, :] */
    for (int64_t n0 = 0; n0 < d.N; n0 += TS) {
        __syncthreads();
        for (int i = threadIdx.x; i < TS * TL; i += 256) {
            const int k = i % TS, r = i / TS; /* consecutive threads walk n */
            const int64_t n = n0 + k, l = lt * TL + r, p = pt * TL + r;
            Ws[k][r] = (n < d.N && l < len)
                           ? Cm[b * d.c_sb + (c * Q + l) * d.c_st + g * d.c_sg + n]
                           : 0.0f;
            Xs[k][r] = (n < d.N && p < d.P) ? hin[p * d.N + n] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TS; k++) {
            float wv[4], xv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                wv[i] = Ws[k][ty * 4 + i];
                xv[i] = Xs[k][tx * 4 + i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    off[i][j] += wv[i] * xv[j];
        }
    }
    const float Dh = Dsk[h];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t l = lt * TL + ty * 4 + i;
        if (l >= len)
            continue;
        const int64_t t = c * Q + l;
        const float el = expf(fminf(al[ty * 4 + i], 0.0f));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t p = pt * TL + tx * 4 + j;
            if (p < d.P) {
                const float xv = x[b * d.x_sb + t * d.x_st + h * d.x_sh + p];
                y[((b * d.T + t) * d.H + h) * d.P + p] = acc[i][j] + el * off[i][j] + Dh * xv;
            }
        }
    }
}

extern "C" int omni_ssd_scan_cuda(float *y, const float *x, const float *dt_raw, const float *A,
                                  const float *Bm, const float *Cm, const float *D,
                                  const float *dt_bias, float *state,
                                  const struct omni_ssd_dims *d, int64_t chunk)
{
    if (d->B * d->H * d->P == 0 || d->T == 0)
        return OMNI_OK;
    if (chunk == 0) {
        ssd_rows(y, x, dt_raw, A, Bm, Cm, D, dt_bias, state, d);
        return OMNI_OK;
    }
    const int64_t Q = chunk, nc = (d->T + Q - 1) / Q;
    const size_t n_dt = (size_t)(d->B * d->H * nc * Q), n_cb = (size_t)(d->B * nc * d->G * Q * Q);
    const size_t n_s = (size_t)(d->B * nc * d->H * d->P * d->N);
    float *ws = (float *)omni__cuda_workspace((2 * n_dt + n_cb + n_s) * sizeof(float));
    if (!ws)
        return OMNI_ENOMEM;
    float *dtv = ws, *acs = ws + n_dt, *CB = acs + n_dt, *S = CB + n_cb;
    OMNI_LAUNCH(ssd_cumsum_k, omni__blocks(d->B * d->H * nc, 128), 128, 0, dtv, acs, dt_raw, A,
                dt_bias, *d, Q, nc);
    const int64_t nt = (Q + TL - 1) / TL;
    OMNI_LAUNCH(ssd_cb_k, dim3((unsigned)(nt * nt), (unsigned)(d->B * nc * d->G)), 256, 0, CB, Bm,
                Cm, *d, Q, nc);
    const int64_t tp = (d->P + TL - 1) / TL, tn = (d->N + TL - 1) / TL;
    OMNI_LAUNCH(ssd_states_k, dim3((unsigned)(tp * tn), (unsigned)(d->B * nc * d->H)), 256, 0, S,
                x, Bm, dtv, acs, *d, Q, nc);
    OMNI_LAUNCH(ssd_pass_k, omni__blocks(d->B * d->H * d->P * d->N, 256), 256, 0, S, state, acs,
                *d, Q, nc);
    OMNI_LAUNCH(ssd_out_k, dim3((unsigned)(nt * tp), (unsigned)(d->B * nc * d->H)), 256, 0, y, x,
                Cm, CB, S, dtv, acs, D, *d, Q, nc);
    return OMNI_OK;
}
