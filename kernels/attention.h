/* kernels/attention.h - scaled dot-product attention (no mask), the CPU
 * reference and its CUDA twin (not written yet).
 *
 * Per batch b and head h (columns [h*P, (h+1)*P) of every row):
 *   out[b, i, hP:hP+P] = sum_j softmax_j(scale * q_i . k_j) v_j
 * q, k, v rows are contiguous P-vectors inside rows of a (B, S, H*P) view
 * whose batch and row strides are free (e.g. views into a fused qkv of row
 * stride 3*H*P); out is contiguous (B, S, H*P). */
#ifndef OMNI_KERNELS_ATTENTION_H
#define OMNI_KERNELS_ATTENTION_H

#include <stdint.h>

struct omni_attention_args {
    float *out;      /* out: (B,S,H*P) contiguous */
    const float *q;  /* q: (B,S,H*P), element strides (q_bs, q_rs, 1) */
    const float *k;  /* k: (B,S,H*P), element strides (k_bs, k_rs, 1) */
    const float *v;  /* v: (B,S,H*P), element strides (v_bs, v_rs, 1) */
    int64_t B, S, H, P;
    int64_t q_bs, q_rs, k_bs, k_rs, v_bs, v_rs;
    float scale;     /* > 0 */
};

void omni_attention_cpu(const struct omni_attention_args *a);

#endif
