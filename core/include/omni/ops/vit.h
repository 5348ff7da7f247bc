/* omni/ops/vit.h - ViT helpers: patch embedding, last-dim concatenation and
 * the antialiased bicubic resize used to resample position tables. */
#ifndef OMNI_OPS_VIT_H
#define OMNI_OPS_VIT_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Patch embedding: Conv2d(kernel = stride = p, padding 0, bias) flattened to
 * row-major tokens (token t = row * (W/p) + col):
 *   out[b, t, d] = bias[d] + sum_{c,ky,kx} w[d,c,ky,kx] * x[b, c, p*row + ky, p*col + kx]
 *   x: (B, C, H, W) f32 contiguous (NCHW); the trailing H mod p rows and W mod p
 *      columns are ignored (as PyTorch's conv does)
 *   w: (D, C, p, p) f32, f16 or bf16, contiguous (PyTorch conv weight)
 *   bias: (D) f32 or NULL
 *   out: (B, (H/p)*(W/p), D) f32 contiguous
 * Computed as a patch gather into a temporary (B*Np, C*p*p) f32 buffer on x's
 * device (allocated and freed inside the call) followed by omni_op_linear. */
OMNI_API int omni_op_patch_embed(struct omni_tensor *out, const struct omni_tensor *x,
                                 const struct omni_tensor *w, const struct omni_tensor *bias,
                                 struct omni_error *err);

/* Concatenate n >= 1 tensors along the last dim:
 *   xs[i]: (..., C_i), the same leading dims and dtype as out, last dim
 *          contiguous, leading dims collapsible to equally spaced rows
 *   out: (..., sum_i C_i), rows as above (need not be contiguous)
 * Any dtype (a byte copy). */
OMNI_API int omni_op_concat_last(struct omni_tensor *out, const struct omni_tensor *xs, int n,
                                 struct omni_error *err);

/* F.interpolate(x, size=(Ho, Wo), mode='bicubic', align_corners=False,
 * antialias=True) of PyTorch's CPU kernel: a separable filter (width pass
 * first into an f32 temporary, then height) with the a = -0.5 cubic whose
 * support is widened by the scale when downscaling; a dimension whose size
 * does not change is copied. Weights and sums in f32 as ATen computes them
 * (agrees with PyTorch's kernel to ~1e-6 of the values' scale, not bit for
 * bit).
 *   x: (B, C, H, W) f32 contiguous; out: (B, C, Ho, Wo) f32 contiguous.
 * Allocates an f32 temporary (B, C, H, Wo) inside the call: a load-time op. */
/* y = x · Wᵀ + beta * y for 16-bit activations: x (..., K) f16 or bf16
 * contiguous, w (N, K) contiguous of x's dtype, y (..., N) f32 contiguous
 * (read only when beta != 0). Exact products, f32 accumulation (cuBLAS on
 * CUDA; the CPU converts x to f32 in a temporary and runs omni_op_matmul's
 * kernel). The ViT block's GEMMs whose input the previous op wrote rounded
 * (omni_op_layernorm_ex, omni_op_attention_ex, omni_op_bias_gelu); beta = 1
 * adds the product to the residual stream. */
OMNI_API int omni_op_matmul16(struct omni_tensor *y, const struct omni_tensor *x,
                              const struct omni_tensor *w, float beta, struct omni_error *err);

OMNI_API int omni_op_resize_bicubic_aa(struct omni_tensor *out, const struct omni_tensor *x,
                                       struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
