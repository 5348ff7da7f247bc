/* omni/ops/conv2d.h - 2-D convolution and nearest upsampling for image
 * tokenizers (LlamaGen VQ). See kernels/README.md for the dimension glossary.
 *
 * Layout is NCHW throughout. The convolution is PyTorch's Conv2d with
 * groups = 1: a cross-correlation with zero padding,
 *   out[b, o, y, x] = bias[o] + sum_{i, dy, dx} w[o, i, dy, dx] *
 *                     x[b, i, y*stride + dy - pad_top, x*stride + dx - pad_left]
 * with reads outside the input giving 0. No full-image im2col buffer is
 * built: the CPU kernel unfolds a few output rows at a time into a bounded
 * per-thread scratch (omni_conv2d_cpu_scratch_bytes in kernels/conv2d.h).
 */
#ifndef OMNI_OPS_CONV2D_H
#define OMNI_OPS_CONV2D_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Symmetric zero padding.
 *   x:    (B, Cin, H, W) f32 contiguous
 *   w:    (Cout, Cin, KH, KW) f32, f16 or bf16 contiguous
 *   bias: (Cout) f32, f16 or bf16, or NULL
 *   out:  (B, Cout, Ho, Wo) f32 contiguous, Ho = (H + 2 pad - KH) / stride + 1
 *         (likewise Wo); must not overlap x. */
OMNI_API int omni_op_conv2d(struct omni_tensor *out, const struct omni_tensor *x,
                            const struct omni_tensor *w, const struct omni_tensor *bias,
                            int stride, int pad, struct omni_error *err);

/* Per-side zero padding (LlamaGen's Downsample pads one zero column on the
 * right and one zero row at the bottom: pads 0, 0, 1, 1).
 *   Ho = (pad_top + H + pad_bottom - KH) / stride + 1,
 *   Wo = (pad_left + W + pad_right - KW) / stride + 1; other shapes as above. */
OMNI_API int omni_op_conv2d_pad(struct omni_tensor *out, const struct omni_tensor *x,
                                const struct omni_tensor *w, const struct omni_tensor *bias,
                                int stride, int pad_top, int pad_left, int pad_bottom,
                                int pad_right, struct omni_error *err);

/* A 3x3 (or any KHxKW) stride-1 convolution with symmetric padding `pad`
 * fused with what comes before and after it in the VQ decoder:
 *   t   = silu?( ((x - c0) - c1) * c2 + c3 )   per (b, i) with c = coef[b, i, :]
 *         (coef NULL: no affine step; silu 0: no SiLU) -- GroupNorm + SiLU
 *         with coef from omni_op_groupnorm_coef,
 *   t   = nearest x2 upsampling of t when up2 (x is then half the conv input),
 *   out = conv(t, w) + bias + residual (residual NULL: none).
 *   x:    (B, Cin, H, W) f32 contiguous; the convolution sees (B, Cin, H', W'),
 *         H' = up2 ? 2H : H
 *   coef: (B, Cin, 4) f32 contiguous or NULL
 *   w, bias: as omni_op_conv2d
 *   residual: (B, Cout, Ho, Wo) f32 contiguous or NULL; may be out itself
 *   out:  (B, Cout, Ho, Wo) f32 contiguous, Ho = H' + 2 pad - KH + 1; must not
 *         overlap x.
 * The CPU twin is exactly the unfused sequence (same bits). CUDA: f16/bf16
 * weights unfold the transformed input in the weight dtype (<= 512 MiB of
 * scratch at a time) for a cuBLAS GEMM that adds onto bias + residual; f32
 * weights use an implicit-GEMM FMA kernel (no unfolded copy). */
OMNI_API int omni_op_conv2d_fused(struct omni_tensor *out, const struct omni_tensor *x,
                                  const struct omni_tensor *w, const struct omni_tensor *bias,
                                  int pad, const struct omni_tensor *coef, int silu, int up2,
                                  const struct omni_tensor *residual, struct omni_error *err);

/* Nearest-neighbour upsampling by 2: out[b, c, y, x] = x[b, c, y/2, x/2].
 *   x: (B, C, H, W) f32 contiguous; out: (B, C, 2H, 2W) f32 contiguous. */
OMNI_API int omni_op_upsample_nearest2x(struct omni_tensor *out, const struct omni_tensor *x,
                                        struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
