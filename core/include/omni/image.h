/* omni/image.h - image files in and out, as PIL does it.
 *
 * omni_image_load reproduces `PIL.Image.open(path).convert("RGB")` (the
 * upstream OmniMamba MMU script's loader; Pillow 10.2, libjpeg-turbo):
 *   - the format comes from the first bytes (PNG or JPEG), never the name;
 *   - alpha and tRNS are DROPPED, not blended over a background;
 *   - gray (1/2/4/8-bit, scaled x255/x85/x17/x1) is replicated to R=G=B;
 *   - palette images are looked up in their PLTE; an index past the PLTE
 *     entries gives (i, i, i) as in PIL (its palette starts as a gray ramp);
 *   - 16-bit PNG: RGB, RGBA and gray+alpha keep the HIGH byte of each sample
 *     (PIL's "RGB;16B" unpackers); 16-bit gray opens in PIL as mode "I" and
 *     convert("RGB") CLIPS it: min(v, 255) (so 256 gives 255, not 1);
 *   - JPEG: libjpeg defaults (ISLOW IDCT, fancy upsampling), as Pillow when
 *     not in draft mode; gray is replicated; CMYK and YCCK are read as Adobe
 *     (inverted) CMYK, as PIL's "CMYK;I" does, then PIL's cmyk2rgb:
 *     nk = 255 - k, r = nk - round(c * nk / 255) (PIL's MULDIV255);
 *   - EXIF orientation, gamma and ICC profiles are ignored (PIL's open does
 *     not apply them either);
 *   - a file that ends before its image data is complete is an error (PIL:
 *     "image file is truncated"); JPEG scan data cut short by a marker
 *     inside the file decodes with libjpeg's gray fill, as in PIL.
 * Sizes are checked from the header before any pixel memory is allocated.
 */
#ifndef OMNI_IMAGE_H
#define OMNI_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest image accepted: per side, and in pixels (width * height). */
#define OMNI_IMAGE_MAX_SIDE 16384
#define OMNI_IMAGE_MAX_PIXELS ((int64_t)1 << 28)
/* Largest file read into memory. */
#define OMNI_IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30)

/* Decode the PNG or JPEG file at path into out: u8 [H, W, 3] RGB on the
 * host, row-major (transfer full). Errors: OMNI_ENOTFOUND (no such file),
 * OMNI_EIO (unreadable), OMNI_EFORMAT (not PNG/JPEG, truncated or corrupt,
 * 0x0), OMNI_EUNSUPPORTED (e.g. a 2-component JPEG), OMNI_ERANGE (larger than
 * the limits above; refused before allocating). Messages name the file. */
OMNI_API int omni_image_load(const char *path, struct omni_tensor *out, struct omni_error *err);

/* The same from bytes in memory; name is used in messages. */
OMNI_API int omni_image_decode(const void *data, size_t nbytes, const char *name,
                               struct omni_tensor *out, struct omni_error *err);

/* Write img as an 8-bit RGB PNG at path (replaced if it exists).
 *   img: u8 [H, W, 3] or [B, H, W, 3] on the host, any strides.
 * B > 1 writes one grid image laid out as torchvision make_grid(padding=2,
 * pad_value=0) with nrow = ceil(sqrt(B)) images per row:
 *   width  = cols * (W + 2) + 2,  height = rows * (H + 2) + 2,
 *   image i at row i / cols, column i % cols, top-left corner
 *   (2 + row * (H + 2), 2 + col * (W + 2)); the rest is black.
 * B == 1 writes the image itself (make_grid returns a single image
 * unchanged). A failed write removes the partial file. */
OMNI_API int omni_image_save_png(const char *path, const struct omni_tensor *img,
                                 struct omni_error *err);

/* Size of the grid omni_image_save_png writes for B images of H x W. */
OMNI_API void omni_image_grid_size(int64_t B, int64_t H, int64_t W, int64_t *grid_h,
                                   int64_t *grid_w);

/* Float images to bytes, the OmniMamba inference_t2i.py conversion
 * (torchvision make_grid(normalize=True, value_range=(lo, hi)), then
 * matplotlib imsave), in float32:
 *   u = (clamp(v, lo, hi) - lo) / (hi - lo);  pix = (uint8)floor(u * 255)
 * i.e. TRUNCATION, not rounding (spec/omnimamba.md §7.4). NaN gives 0.
 *   in:  f32 [B, 3, H, W] (or [3, H, W]) on the host, any strides
 *   out: u8 [B, H, W, 3] (or [H, W, 3]) contiguous, caller-allocated
 * lo < hi; OmniMamba uses lo = -1, hi = 1. */
OMNI_API int omni_image_from_float(struct omni_tensor *out, const struct omni_tensor *in,
                                   float lo, float hi, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
