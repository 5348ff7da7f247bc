/* omni/ops/ssm.h - see kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_SSM_H
#define OMNI_OPS_SSM_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Depthwise causal conv1d (+ SiLU) over a sequence, with conv state.
 *   x: (B, T, C) f32, last dim contiguous, other strides free (a view of
 *      the xBC columns of zxbcdt)
 *   w: (C, K) f32 (PyTorch conv1d weight [C,1,K] viewed as (C,K)); w[c,K-1]
 *      multiplies the current step
 *   bias: (C) or NULL
 *   state: (B, C, K) f32 or NULL. When given it supplies the history (the K
 *      raw inputs before this call, oldest first; zeros for a fresh prefill)
 *      and is overwritten with the last K raw inputs (history-padded).
 *   out: (B, T, C) f32 contiguous
 *   out[b,t,c] = act(bias[c] + sum_k w[c,k] * xin[b, t-(K-1)+k, c]) */
OMNI_API int omni_op_conv1d_causal(struct omni_tensor *out, const struct omni_tensor *x,
                                   const struct omni_tensor *w, const struct omni_tensor *bias,
                                   struct omni_tensor *state, int apply_silu,
                                   struct omni_error *err);

/* One decode step of the same conv: shift state left, put x in slot K-1,
 * out = act(bias + sum_k w[c,k] * state[c,k]).
 *   x: (B, C) last dim contiguous; state: (B, C, K); out: (B, C). */
OMNI_API int omni_op_conv1d_step(struct omni_tensor *out, const struct omni_tensor *x,
                                 const struct omni_tensor *w, const struct omni_tensor *bias,
                                 struct omni_tensor *state, int apply_silu,
                                 struct omni_error *err);

/* The Mamba-2 selective scan (SSD) over a sequence.
 *   x: (B, T, H, P)   dt_raw: (B, T, H)   Bm, Cm: (B, T, G, N)
 *   (all f32 views: last dim contiguous, other strides free)
 *   A: (H) = -exp(A_log) (precomputed)   D: (H)   dt_bias: (H)
 *   state: (B, H, P, N) f32: initial state in, final state out
 *   y: (B, T, H, P) f32 contiguous
 *   dt = softplus(dt_raw + dt_bias) (identity above 20); head h uses group
 *   h / (H/G). chunk > 0: the chunked SSD algorithm with chunk size `chunk`;
 *   chunk == 0: the plain sequential recurrence (the reference). */
OMNI_API int omni_op_ssd_scan(struct omni_tensor *y, const struct omni_tensor *x,
                              const struct omni_tensor *dt_raw, const struct omni_tensor *A,
                              const struct omni_tensor *Bm, const struct omni_tensor *Cm,
                              const struct omni_tensor *D, const struct omni_tensor *dt_bias,
                              struct omni_tensor *state, int64_t chunk, struct omni_error *err);

/* omni_op_ssd_scan from a zero initial state: state's content on entry is never read (the
 * scan runs as if it held zeros; a prefill from scratch skips the initial-state products)
 * and the final state is written as usual. */
OMNI_API int omni_op_ssd_scan_from_zero(struct omni_tensor *y, const struct omni_tensor *x,
                                        const struct omni_tensor *dt_raw,
                                        const struct omni_tensor *A, const struct omni_tensor *Bm,
                                        const struct omni_tensor *Cm, const struct omni_tensor *D,
                                        const struct omni_tensor *dt_bias,
                                        struct omni_tensor *state, int64_t chunk,
                                        struct omni_error *err);

/* One decode step of the scan (single token per row).
 *   x: (B, H, P)  dt_raw: (B, H)  Bm, Cm: (B, G, N)  (views as above)
 *   state: (B, H, P, N) updated in place; y: (B, H, P) */
OMNI_API int omni_op_ssd_step(struct omni_tensor *y, const struct omni_tensor *x,
                              const struct omni_tensor *dt_raw, const struct omni_tensor *A,
                              const struct omni_tensor *Bm, const struct omni_tensor *Cm,
                              const struct omni_tensor *D, const struct omni_tensor *dt_bias,
                              struct omni_tensor *state, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
