/* omni/ops/attention.h - scaled dot-product attention (no mask). */
#ifndef OMNI_OPS_ATTENTION_H
#define OMNI_OPS_ATTENTION_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[b, s, h*P + p] = sum_j softmax_j(scale * q_i·k_j) v_j, per head h.
 *   q, k, v: (B, S, H*P) f32 (may be strided views of a fused qkv with row
 *   stride 3*H*P: only the last dim must be contiguous)
 *   out: (B, S, H*P) f32 contiguous
 * scale <= 0 means 1/sqrt(P). Softmax in f32 with max subtraction. */
OMNI_API int omni_op_attention(struct omni_tensor *out, const struct omni_tensor *q,
                               const struct omni_tensor *k, const struct omni_tensor *v,
                               int heads, float scale, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
