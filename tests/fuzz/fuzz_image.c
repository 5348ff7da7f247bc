/* libFuzzer target: PNG / JPEG decoding (omni_image_decode: libpng and
 * libjpeg behind longjmp error handlers, size limits, 16-bit / palette /
 * CMYK conversions). Seed with tests/fixtures/data/images/formats/.
 * Build: make fuzz; run: build/fuzz/fuzz_image -max_total_time=60 -rss_limit_mb=4096 SEEDS */
#include <stdint.h>
#include <stdlib.h>

#include "omni/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct omni_tensor img;
    struct omni_error err;
    if (omni_image_decode(data, size, "fuzz", &img, &err) == OMNI_OK) {
        /* a decoded image is a host u8 [H, W, 3] within the limits */
        if (img.dtype != OMNI_DTYPE_U8 || img.ndim != 3 || img.shape[2] != 3 || img.shape[0] < 1 ||
            img.shape[1] < 1 || img.shape[0] > OMNI_IMAGE_MAX_SIDE || img.shape[1] > OMNI_IMAGE_MAX_SIDE)
            abort();
        omni_tensor_release(&img);
    } else if (img.buf) {
        abort(); /* failures leave out empty */
    }
    return 0;
}
