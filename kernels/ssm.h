/* kernels/ssm.h - the Mamba-2 sequence-mixing kernels: depthwise causal
 * conv1d (sequence and decode step) and the selective scan SSD (chunked,
 * sequential reference, decode step). Raw-pointer twins of
 * core/include/omni/ops/ssm.h; see shared/spec/mamba2.md 1.2-1.5, 2, 3.
 * Glossary: kernels/README.md. Strides are in elements; the last dim of
 * every view is contiguous. */
#ifndef OMNI_KERNELS_SSM_H
#define OMNI_KERNELS_SSM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Strides of a conv state (B, C, K): upstream keeps it channel-contiguous
 * ((K*C, 1, C)), a plain allocation is (C*K, K, 1); both are accepted. */
struct omni_conv_state_strides {
    int64_t sb, sc, sk;
};

/* out[b,t,c] = act(bias[c] + sum_k w[c,k] * xin[b, t-(K-1)+k, c]), xin = x for
 * t >= 0 and the history in state (slot K+j for j in [-K,-1]) before it; zeros
 * when state == NULL. Then state = the last K inputs of xin (oldest first).
 *   out: (B,T,C) contiguous
 *   x: (B,T,C) strides (x_sb, x_st, 1)
 *   w: (C,K) contiguous; w[c,K-1] multiplies the current step
 *   bias: (C) or NULL
 *   state: (B,C,K) strides ss, or NULL
 *   act: apply_silu != 0 -> silu */
void omni_conv1d_causal_cpu(float *out, const float *x, int64_t x_sb, int64_t x_st, const float *w,
                            const float *bias, float *state, struct omni_conv_state_strides ss,
                            int64_t B, int64_t T, int64_t C, int64_t K, int apply_silu);

/* state[b,c,:] shifts left by one, state[b,c,K-1] = x[b,c];
 * out[b,c] = act(bias[c] + sum_k w[c,k] * state[b,c,k])
 *   out: (B,C) row stride ldo; x: (B,C) row stride ldx; w: (C,K); bias: (C) or NULL;
 *   state: (B,C,K) strides ss */
void omni_conv1d_step_cpu(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                          const float *bias, float *state, struct omni_conv_state_strides ss,
                          int64_t B, int64_t C, int64_t K, int apply_silu);

/* Sizes and input strides of one SSD call. For the decode step T = 1 and the
 * _st strides are unused (x: (B,H,P), dt_raw: (B,H), Bm/Cm: (B,G,N)). */
struct omni_ssd_dims {
    int64_t B, T, H, P, G, N;
    int64_t x_sb, x_st, x_sh;  /* x: (B,T,H,P) */
    int64_t dt_sb, dt_st;      /* dt_raw: (B,T,H) */
    int64_t b_sb, b_st, b_sg;  /* Bm: (B,T,G,N) */
    int64_t c_sb, c_st, c_sg;  /* Cm: (B,T,G,N) */
    int zero_in;               /* scan: the state's content on entry is taken as zeros and
                                  never read (a prefill from scratch); written as usual */
};

/* Selective scan over a sequence (mamba2.md 1.3, 1.5, 2):
 *   dt = softplus(dt_raw + dt_bias) (identity above 20), head h uses group h/(H/G),
 *   S_t = exp(dt A) S_{t-1} + dt x_t B_tᵀ,  y_t = S_t C_t + D x_t
 *   y: (B,T,H,P) contiguous
 *   x, dt_raw, Bm, Cm: views described by d
 *   A: (H) = -exp(A_log), so <= 0 (the chunked path clamps every decay
 *      exponent to <= 0, as upstream HEAD does); D: (H); dt_bias: (H)
 *   state: (B,H,P,N) contiguous: initial state in, final state out
 * chunk > 0: the chunked SSD algorithm (chunk size `chunk`, f32);
 * chunk == 0: the sequential recurrence with a double-precision state.
 * Returns OMNI_OK, or OMNI_ENOMEM when scratch memory cannot be had (y and
 * state are then unspecified). */
int omni_ssd_scan_cpu(float *y, const float *x, const float *dt_raw, const float *A,
                      const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                      float *state, const struct omni_ssd_dims *d, int64_t chunk);

/* One decode step (f32, mamba2.md 3 step 3):
 *   y: (B,H,P) contiguous; x: (B,H,P), dt_raw: (B,H), Bm, Cm: (B,G,N) views
 *   described by d (T = 1); state: (B,H,P,N) contiguous, updated in place */
void omni_ssd_step_cpu(float *y, const float *x, const float *dt_raw, const float *A,
                       const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                       float *state, const struct omni_ssd_dims *d);

#ifdef OMNI_HAVE_CUDA
void omni_conv1d_causal_cuda(float *out, const float *x, int64_t x_sb, int64_t x_st,
                             const float *w, const float *bias, float *state,
                             struct omni_conv_state_strides ss, int64_t B, int64_t T, int64_t C,
                             int64_t K, int apply_silu);
void omni_conv1d_step_cuda(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                           const float *bias, float *state, struct omni_conv_state_strides ss,
                           int64_t B, int64_t C, int64_t K, int apply_silu);
int omni_ssd_scan_cuda(float *y, const float *x, const float *dt_raw, const float *A,
                       const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                       float *state, const struct omni_ssd_dims *d, int64_t chunk);
void omni_ssd_step_cuda(float *y, const float *x, const float *dt_raw, const float *A,
                        const float *Bm, const float *Cm, const float *D, const float *dt_bias,
                        float *state, const struct omni_ssd_dims *d);
#endif

#ifdef __cplusplus
}
#endif
#endif
