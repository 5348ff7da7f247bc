/* kernels/decode.h - fused kernels of the Mamba-2 decode step (one token per
 * row, M <= OMNI_DEC_MAX_M rows), raw-pointer twins of
 * core/include/omni/ops/decode.h (see there and shared/spec/mamba2.md 3).
 * A layer's step is four calls:
 *   dec_norm   r' = r + mix; n = RMSNorm(r') w; u = n·Aᵀ (LoRA A, optional)
 *   dec_gemv   zx = n·W_inᵀ + scale·u·Bᵀ, with the conv1d step of the xBC
 *              columns in its epilogue (conv state updated, SiLU outputs)
 *   dec_mix    SSD state update, y, g = y·silu(z), g⊙w_norm, and partial
 *              sums of g² per chunk of channels
 *   dec_gemv   mix = rstd_m · (g⊙w_norm)·W_outᵀ, rstd_m from the partials
 * The CPU twins are compositions of the CPU ops of kernels/{matmul,ssm,norm}. */
#ifndef OMNI_KERNELS_DECODE_H
#define OMNI_KERNELS_DECODE_H

#include <stdint.h>

#include "ssm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_DEC_MAX_M 16 /* rows of a fused decode call */
#define OMNI_DEC_MAX_R 32 /* rank of a folded low-rank term */

/* Optional parts of dec_gemv's epilogue; a NULL pointer switches a part off.
 *   row scale:  s_m = 1 / sqrt(sum_{j<nparts} part[m*ldp + j] / count + eps)
 *   low rank:   + lr_scale * sum_{r<R} u[m*ldu + r] * lb[n*R + r]   (lb: (N,R) f32)
 *   conv step:  for n in [c0, c0+C), channel c = n - c0 of row m (= batch row):
 *               shift state[m,c,:] left, state[m,c,K-1] = y[m,n],
 *               cout[m*ldco + c] = silu(cbias[c] + sum_k cw[c*K+k] state[m,c,k])
 *               (cbias may be NULL; cw (C,K); state strides css) */
struct omni_dec_epi {
    const float *part;
    int64_t ldp, nparts;
    float count, eps;
    const float *u, *lb;
    int64_t ldu, R;
    float lr_scale;
    float *cout, *cstate;
    const float *cw, *cbias;
    int64_t ldco, c0, C, K;
    struct omni_conv_state_strides css;
};

/* y[m,n] = alpha * s_m * sum_k x[m,k] w[n,k] + bias[n] + low rank (s_m = 1
 * without a row scale), then the conv step; M <= OMNI_DEC_MAX_M.
 *   y: (M,N) row stride ldy; x: (M,K) row stride ldx; w: (N,K) contiguous
 *   f32/f16/bf16; bias: (N) or NULL; epi may be NULL. */
void omni_dec_gemv_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                       int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K,
                       float alpha, const struct omni_dec_epi *epi);

/* res_out = res_in + x (x may be NULL); out = res_out * rsqrt(mean(res_out²) + eps) * w;
 * when a != NULL: u[m*ldu + r] = sum_d out[m,d] a[r*D + d] for r < R (a: (R,D) f32).
 * res_out may be res_in only when a == NULL. */
void omni_dec_norm_cpu(float *out, int64_t ldo, float *res_out, int64_t ldro,
                       const float *res_in, int64_t ldri, const float *x, int64_t ldx,
                       const float *w, int64_t M, int64_t D, float eps, const float *a,
                       int64_t R, float *u, int64_t ldu);

/* Sizes of dec_mix: E = H*P, Cd = E + 2*G*N; zx rows are [z (E) | xBC (Cd) | dt (H)],
 * xbc rows the conv outputs [x (E) | B (G*N) | C (G*N)]. */
struct omni_dec_dims {
    int64_t B, H, P, G, N;
};

/* dt = softplus(zx[b, E+Cd+h] + dt_bias[h]); state[b,h,p,:] = exp(dt A[h]) state + dt x B;
 * y = state·C + Dsk[h] x; gg = y * silu(z); g[b*ldg + e] = gg * gnw[e];
 * part[b*ldp + j] = sum of gg² over channels [j*chunk, (j+1)*chunk), chunk = E/nparts
 * (a divisor of P). state: (B,H,P,N) contiguous, f32, f16 or bf16 (state_dtype, an
 * OMNI_DTYPE_*; N <= 256): a 16-bit state is read into f32, updated and used for y in
 * f32, and stored rounded to nearest even. */
void omni_dec_mix_cpu(float *g, int64_t ldg, float *part, int64_t ldp, int64_t nparts,
                      const float *zx, int64_t ldz, const float *xbc, int64_t ldc,
                      const float *A, const float *Dsk, const float *dt_bias, const float *gnw,
                      void *state, int state_dtype, const struct omni_dec_dims *d);

#ifdef OMNI_HAVE_CUDA
void omni_dec_gemv_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                        int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K,
                        float alpha, const struct omni_dec_epi *epi);
void omni_dec_norm_cuda(float *out, int64_t ldo, float *res_out, int64_t ldro,
                        const float *res_in, int64_t ldri, const float *x, int64_t ldx,
                        const float *w, int64_t M, int64_t D, float eps, const float *a,
                        int64_t R, float *u, int64_t ldu);
void omni_dec_mix_cuda(float *g, int64_t ldg, float *part, int64_t ldp, int64_t nparts,
                       const float *zx, int64_t ldz, const float *xbc, int64_t ldc,
                       const float *A, const float *Dsk, const float *dt_bias, const float *gnw,
                       void *state, int state_dtype, const struct omni_dec_dims *d);
/* The bf16 GEMV behind omni_dec_gemv_cuda (FMA rows for M <= 2, tensor cores up to 16,
 * cuBLAS for 8 or more rows of a wide matrix: N >= 4096 and N K >= 16 Mi),
 * also used by omni_matmul_cuda for bf16 weights and M <= 16:
 * y = alpha * s_m * x·wᵀ + beta * y + bias (+ epi).
 * Returns 0 when the shape is not supported (w not bf16, K % 8, M > 2 with K % 32 or
 * unaligned x); nothing was launched then. */
int omni__dec_gemv_tc_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                           int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K,
                           float alpha, float beta, const struct omni_dec_epi *epi);
/* Tuning hook for tests: force the tensor-core GEMV (also for M <= 2) with nw warps per
 * block (2..16) and u weight steps in flight per warp (4 or 8); 0, 0 restores the
 * automatic choice. */
__attribute__((visibility("default"))) void omni__dec_tc_config(int nw, int u);
/* Tuning hook for tests: rt = 1 or 2 column tiles of 16 per tensor-core block; 0 restores
 * the automatic choice. */
__attribute__((visibility("default"))) void omni__dec_tc_tiles(int rt);
/* Tuning hook for tests (tests/device/gemv_lab.cu): 1 = no programmatic dependent launch,
 * 2 = no weight loads before the wait on the previous kernel, 4 = the tensor-core tile's
 * warps take contiguous ranges of K steps, 8 = decode_mix loads one state value at a time,
 * 16 = one column tile per tensor-core block everywhere, 32 = every bf16 GEMV of 3 or more
 * rows through cuBLAS (x split into bf16 hi + lo rows, one GEMM, the epilogue kernel),
 * 64 = never through cuBLAS; 0 restores the default. */
__attribute__((visibility("default"))) void omni__dec_gemv_flags(int flags);
#endif

#ifdef __cplusplus
}
#endif
#endif
