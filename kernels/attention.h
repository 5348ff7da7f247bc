/* kernels/attention.h - scaled dot-product attention (no mask), the CPU
 * reference and its CUDA twin (omni_attention_cuda, kernels/cuda/extra.h).
 *
 * Per batch b and head h (columns [h*P, (h+1)*P) of every row):
 *   out[b, i, hP:hP+P] = sum_j softmax_j(scale * q'_i . k'_j) v'_j
 *   q' = round(q + q_bias), k' = round(k + k_bias), v' = round(v + v_bias)
 * q, k, v rows are contiguous P-vectors inside rows of a (B, S, H*P) view
 * whose batch and row strides are free (e.g. views into a fused qkv of row
 * stride 3*H*P); out is contiguous (B, S, H*P) of out_dtype (f32, f16 or
 * bf16: the f32 result rounded once). Biases (H*P) may be NULL.
 *
 * precision: OMNI_DTYPE_F32 (or 0): all in f32, round() is the identity.
 * OMNI_DTYPE_F16 / OMNI_DTYPE_BF16: tensor-core inputs. round() rounds to
 * that dtype (nearest even), the softmax weights exp(s - m) (m the running
 * row maximum after each block of 64 keys) are rounded the same way before
 * they multiply v' and before they are summed; sums and the output in f32.
 * The CUDA twin may compute a precision request exactly in f32 where it has
 * no 16-bit path (heads wider than 128). */
#ifndef OMNI_KERNELS_ATTENTION_H
#define OMNI_KERNELS_ATTENTION_H

#include <stdint.h>

struct omni_attention_args {
    void *out;       /* out: (B,S,H*P) contiguous, out_dtype */
    const float *q;  /* q: (B,S,H*P), element strides (q_bs, q_rs, 1) */
    const float *k;  /* k: (B,S,H*P), element strides (k_bs, k_rs, 1) */
    const float *v;  /* v: (B,S,H*P), element strides (v_bs, v_rs, 1) */
    const float *q_bias, *k_bias, *v_bias; /* (H*P) or NULL */
    int64_t B, S, H, P;
    int64_t q_bs, q_rs, k_bs, k_rs, v_bs, v_rs;
    float scale;     /* > 0 */
    int out_dtype;   /* OMNI_DTYPE_F32 (or 0), F16 or BF16 */
    int precision;   /* OMNI_DTYPE_F32 (or 0), F16 or BF16 */
};

/* 0, or OMNI_ENOMEM when a temporary (biases, rounding, a 16-bit out) cannot
 * be allocated. */
int omni_attention_cpu(const struct omni_attention_args *a);

#endif
