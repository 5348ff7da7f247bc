/* omni/ops/image.h - image preprocessing ops (host only; see kernels/image.h). */
#ifndef OMNI_OPS_IMAGE_H
#define OMNI_OPS_IMAGE_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PIL Image.resize((W2, H2), BICUBIC), bit-exact (spec/vision-encoder.md
 * §2.2): Keys cubic a = -0.5, support 2 widened by the scale when
 * downscaling, weights normalised in double then 22-bit fixed point, the
 * horizontal pass first into a u8 intermediate (only the rows the vertical
 * pass reads), then the vertical pass; an axis whose size does not change is
 * not resampled. Channels are independent.
 *   in:  u8 (B, H, W, C) or (H, W, C), contiguous, host
 *   out: u8 (B, H2, W2, C) or (H2, W2, C), contiguous, host; the output size
 *        is out's shape. B and C must match.
 * Allocates its scratch (coefficients, intermediate rows) with malloc: a
 * preprocessing op, not one for decode loops. */
OMNI_API int omni_op_resize_bicubic_u8(struct omni_tensor *out, const struct omni_tensor *in,
                                       struct omni_error *err);

/* torchvision ToTensor + Normalize in float32:
 *   out[b, c, y, x] = ((float)in[b, y, x, c] / 255 - mean[c]) / std[c]
 * (true divisions, no reciprocal multiplication).
 *   in:  u8 (B, H, W, C) contiguous, host; out: f32 (B, C, H, W) contiguous,
 *   host; mean, std: C floats each (std[c] != 0). */
OMNI_API int omni_op_normalize_image(struct omni_tensor *out, const struct omni_tensor *in,
                                     const float *mean, const float *std, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
