/* kernels/image.h - image preprocessing kernels (CPU only: the work is a
 * few milliseconds per image and happens once per request).
 *
 * omni_resize_bicubic_u8_cpu: PIL's Image.resize(BICUBIC) for 8-bit images
 * (Pillow src/libImaging/Resample.c semantics), bit-exact.
 * omni_normalize_image_cpu: ToTensor + Normalize, HWC u8 -> CHW f32. */
#ifndef OMNI_KERNELS_IMAGE_H
#define OMNI_KERNELS_IMAGE_H

#include <stdint.h>

/* Returns 0, or OMNI_ENOMEM when its scratch cannot be allocated.
 * H, W, H2, W2 >= 1; C >= 1. */
int omni_resize_bicubic_u8_cpu(uint8_t *out /* (B,H2,W2,C) */, const uint8_t *in /* (B,H,W,C) */,
                               int64_t B, int64_t H, int64_t W, int64_t C, int64_t H2, int64_t W2);

void omni_normalize_image_cpu(float *out /* (B,C,H,W) */, const uint8_t *in /* (B,H,W,C) */,
                              int64_t B, int64_t H, int64_t W, int64_t C,
                              const float *mean /* (C) */, const float *std /* (C) */);

#endif
