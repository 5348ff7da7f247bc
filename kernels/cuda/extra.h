/* kernels/cuda/extra.h - CUDA kernels with no CPU twin (internal to
 * libomni): helpers the op wrappers need on the device that the host path
 * does with plain loops. Device pointers; work on the current stream. */
#ifndef OMNI_KERNELS_CUDA_EXTRA_H
#define OMNI_KERNELS_CUDA_EXTRA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI__COPY_MAX_DIMS 8

/* An element walk of a strided tensor (row-major order over shape). */
struct omni__strided {
    int ndim;
    int64_t shape[OMNI__COPY_MAX_DIMS];
    int64_t strides[OMNI__COPY_MAX_DIMS]; /* elements */
};

/* dst[walk(dd)] = convert(src[walk(sd)]) for n elements (f32/f16/bf16, or
 * the same dtype of any size as a byte copy).
 *   dst: strided by dd (dst_dtype); src: strided by sd (src_dtype) */
void omni__copy_strided_cuda(void *dst, int dst_dtype, const struct omni__strided *dd,
                             const void *src, int src_dtype, const struct omni__strided *sd,
                             int64_t n);

/* Copy `rows` rows of row_bytes between strided row sets (byte strides).
 *   dst: (rows, row_bytes) stride ldd; src: (rows, row_bytes) stride lds */
void omni_copy_rows_cuda(void *dst, int64_t ldd, const void *src, int64_t lds, int64_t rows,
                         int64_t row_bytes);

#ifdef __cplusplus
}
#endif
#endif
