/* omni/ops/decode.h - the fused Mamba-2 decode step (one token per row,
 * at most OMNI_DECODE_MAX_M rows), spec/mamba2.md 3. A layer is:
 *   omni_op_decode_norm   r' = r + mix, n = RMSNorm(r') w, u = n·Aᵀ (LoRA)
 *   omni_op_decode_gemv   zx = n·W_inᵀ + scale·u·Bᵀ, conv1d step of xBC in
 *                         the epilogue (xbc = SiLU(conv), conv state updated)
 *   omni_op_decode_mix    SSD step, g = y·silu(z), g⊙w_norm, partial g² sums
 *   omni_op_decode_gemv   mix = rstd · (g⊙w_norm)·W_outᵀ (gated RMSNorm over
 *                         the whole d_inner, rstd from the partial sums)
 * Each equals the composition of the unfused ops (add_rmsnorm, matmul,
 * lora_update, conv1d_step, ssd_step, gated_rmsnorm) up to f32 rounding.
 * All tensors f32 unless stated; "(M, X) rows" = last dim contiguous, one
 * uniform row stride. */
#ifndef OMNI_OPS_DECODE_H
#define OMNI_OPS_DECODE_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_DECODE_MAX_M 16
#define OMNI_DECODE_MAX_R 32

/* res_out = res_in + x (x may be NULL); out = res_out * rsqrt(mean(res_out²) + eps) * w;
 * with a: u = out · aᵀ.
 *   out, res_out, res_in, x: (M, D) rows, M <= 16; w: (D) contiguous
 *   a: (R, D) contiguous, R <= 32, or NULL; u: (M, R) rows (with a)
 *   res_out may be res_in only without a. */
OMNI_API int omni_op_decode_norm(struct omni_tensor *out, struct omni_tensor *res_out,
                                 const struct omni_tensor *res_in, const struct omni_tensor *x,
                                 const struct omni_tensor *w, float eps,
                                 const struct omni_tensor *a, struct omni_tensor *u,
                                 struct omni_error *err);

/* Optional terms of omni_op_decode_gemv; NULL members switch a term off.
 *   part (M, nparts) rows: s_m = 1/sqrt(sum_j part[m,j] / count + eps) scales row m
 *   u (M, R) rows and lb (N, R) contiguous: + lr_scale * u·lbᵀ
 *   conv_out (M, C) rows, conv_state (M, C, K) (last dim contiguous), conv_w (C, K)
 *   contiguous, conv_b (C) or NULL: after y is formed, the conv1d step (+SiLU) of
 *   the input columns y[:, c0 .. c0+C) (omni_op_conv1d_step semantics). */
struct omni_decode_epilogue {
    const struct omni_tensor *part;
    float count, eps;
    const struct omni_tensor *u, *lb;
    float lr_scale;
    struct omni_tensor *conv_out, *conv_state;
    const struct omni_tensor *conv_w, *conv_b;
    int64_t c0;
};

/* y = alpha * s_m * (x · wᵀ) + bias (+ the epilogue terms).
 *   x: (M, K) rows, M <= 16; w: (N, K) contiguous f32/f16/bf16; bias: (N) or NULL;
 *   y: (M, N) rows. On CUDA, bf16 weights take FMA rows (M <= 2, K % 8 == 0) or a
 *   tensor-core GEMV (K % 32 == 0; x split into two bf16 parts): f32-level results;
 *   epi may be NULL. */
OMNI_API int omni_op_decode_gemv(struct omni_tensor *y, const struct omni_tensor *x,
                                 const struct omni_tensor *w, const struct omni_tensor *bias,
                                 float alpha, const struct omni_decode_epilogue *epi,
                                 struct omni_error *err);

/* The SSD step and the gate of one layer.
 *   zx: (B, E + Cd + H) rows = [z | xBC | dt] (in_proj output); xbc: (B, Cd) rows, the
 *   conv outputs [x | B | C], Cd = E + 2 G N; A, D, dt_bias: (H); gnorm_w: (E);
 *   state: (B, H, P, N) contiguous, updated; f32, f16 or bf16 (a 16-bit state is
 *   updated in f32, y uses the f32 values, and it is stored rounded to nearest even);
 *   g: (B, E) rows; part: (B, nparts) rows
 *   with E / nparts in {8, 16, 32} dividing P; N <= 256.
 *   dt = softplus(dt + dt_bias); S = exp(dt A) S + dt x Bᵀ; y = S C + D x;
 *   gg = y * silu(z); g = gg * gnorm_w; part[b, j] = sum of gg² over chunk j. */
OMNI_API int omni_op_decode_mix(struct omni_tensor *g, struct omni_tensor *part,
                                const struct omni_tensor *zx, const struct omni_tensor *xbc,
                                const struct omni_tensor *A, const struct omni_tensor *D,
                                const struct omni_tensor *dt_bias,
                                const struct omni_tensor *gnorm_w, struct omni_tensor *state,
                                int64_t ngroups, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
