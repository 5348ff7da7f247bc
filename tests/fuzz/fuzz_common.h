/* tests/fuzz/fuzz_common.h - shared body of the weights fuzz targets: open
 * the input from memory (a heap copy, so ASan sees every out-of-bounds read),
 * list it, get every tensor and read every element through its strides, load
 * each one converted to f32, close. */
#ifndef OMNI_FUZZ_COMMON_H
#define OMNI_FUZZ_COMMON_H

#include <stdint.h>
#include <string.h>

#include "weights_impl.h"

static void fuzz_weights(const uint8_t *data, size_t size, const char *name)
{
    struct omni_error err = {0};
    struct omni_weights *w = NULL;
    if (omni__weights_open_mem(&w, name, data, size, &err))
        return;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < omni_weights_count(w); i++) {
        const char *key = omni_weights_key(w, i);
        struct omni_weight_info info;
        omni_weights_info(w, NULL, key, &info, &err);
        struct omni_tensor t;
        if (omni_weights_get(w, NULL, key, &t, &err))
            continue;
        size_t es = omni_dtype_size(t.dtype);
        int64_t n = omni_tensor_numel(&t), idx[OMNI_MAX_DIMS] = {0};
        const uint8_t *base = omni_tensor_data(&t);
        for (int64_t k = 0; k < n && k < (1 << 16); k++) {
            int64_t lin = 0;
            for (int d = 0; d < t.ndim; d++)
                lin += idx[d] * t.strides[d];
            for (size_t b = 0; b < es; b++)
                sink ^= base[lin * (int64_t)es + (int64_t)b];
            for (int d = t.ndim - 1; d >= 0; d--) {
                if (++idx[d] < t.shape[d])
                    break;
                idx[d] = 0;
            }
        }
        struct omni_tensor c;
        if (omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, &c, &err) == OMNI_OK)
            omni_tensor_release(&c);
        omni_tensor_release(&t);
    }
    (void)sink;
    omni_weights_close(w);
}

#endif
