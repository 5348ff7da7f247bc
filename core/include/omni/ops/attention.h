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

/* Options of omni_op_attention_ex (zero-initialise: no biases, f32). */
struct omni_attention_opts {
    const struct omni_tensor *q_bias, *k_bias, *v_bias; /* (H*P) f32 or NULL: added to q, k, v */
    int precision; /* 0 / OMNI_DTYPE_F32: f32 math; OMNI_DTYPE_F16 / OMNI_DTYPE_BF16: q, k, v
                    * (after the bias) and the softmax weights are rounded to that dtype
                    * (tensor cores on CUDA, emulated on the CPU), f32 sums; heads wider
                    * than 128 compute in f32 on every device */
};

/* omni_op_attention with the options above; out may also be f16 or bf16
 * (the f32 result rounded once), e.g. the input of a 16-bit GEMM. opts may be
 * NULL. */
OMNI_API int omni_op_attention_ex(struct omni_tensor *out, const struct omni_tensor *q,
                                  const struct omni_tensor *k, const struct omni_tensor *v,
                                  int heads, float scale, const struct omni_attention_opts *opts,
                                  struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
