/* omni/ops/matmul.h - dense linear algebra.
 *
 * All ops write into caller-allocated outputs (no allocation inside ops, so
 * that decode loops and CUDA graphs allocate nothing). Activations are f32
 * (or f16/bf16 on CUDA where stated); weights f32/f16/bf16; accumulation f32.
 */
#ifndef OMNI_OPS_MATMUL_H
#define OMNI_OPS_MATMUL_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = alpha * (x · Wᵀ) + beta * y + bias
 *   x: (..., K) contiguous rows, M = numel/K
 *   w: (N, K) contiguous; f32, f16 or bf16
 *   bias: (N) or NULL
 *   y: (..., N) contiguous, M rows; read only when beta != 0
 * Linear layers are PyTorch's convention (W stored [out, in]). */
OMNI_API int omni_op_matmul(struct omni_tensor *y, const struct omni_tensor *x,
                            const struct omni_tensor *w, const struct omni_tensor *bias,
                            float alpha, float beta, struct omni_error *err);

/* y = x · Wᵀ (+ bias): the common case of omni_op_matmul (alpha 1, beta 0). */
OMNI_API int omni_op_linear(struct omni_tensor *y, const struct omni_tensor *x,
                            const struct omni_tensor *w, const struct omni_tensor *bias,
                            struct omni_error *err);

/* Elementwise y = a + b (same shape, f32); y may alias a or b. */
OMNI_API int omni_op_add(struct omni_tensor *y, const struct omni_tensor *a,
                         const struct omni_tensor *b, struct omni_error *err);
/* y[..., D] += row[D] broadcast over leading dims (f32). */
OMNI_API int omni_op_add_row(struct omni_tensor *y, const struct omni_tensor *row,
                             struct omni_error *err);
/* Copy src into dst (same numel; dtype conversion f32/f16/bf16; any devices). */
OMNI_API int omni_op_copy(struct omni_tensor *dst, const struct omni_tensor *src,
                          struct omni_error *err);

/* y += scale * (x · Aᵀ) · Bᵀ (a LoRA term) in one op, for decode-sized x:
 *   x: (..., K) contiguous rows, M = numel/K <= 8
 *   a: (R, K) contiguous, R <= 32; b: (N, R) contiguous; f32, f16 or bf16, same dtype
 *   y: (..., N) contiguous, M rows
 * On the CPU exactly omni_op_matmul(t, x, a) then omni_op_matmul(y, t, b,
 * alpha = scale, beta = 1); on CUDA one kernel (results within f32
 * reduction-order differences). */
#ifndef OMNI_LORA_MAX_M /* also in kernels/matmul.h */
#define OMNI_LORA_MAX_M 8
#define OMNI_LORA_MAX_R 32
#endif
OMNI_API int omni_op_lora_update(struct omni_tensor *y, const struct omni_tensor *x,
                                 const struct omni_tensor *a, const struct omni_tensor *b,
                                 float scale, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
