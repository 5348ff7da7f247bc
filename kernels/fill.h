/* kernels/fill.h - zero fill of a byte range: the CPU reference and its CUDA
 * twin (same signature; the twin queues on the current stream). */
#ifndef OMNI_KERNELS_FILL_H
#define OMNI_KERNELS_FILL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* p[0 .. nbytes) = 0 */
void omni_zero_cpu(void *p /* p: (nbytes) bytes */, int64_t nbytes);
#ifdef OMNI_HAVE_CUDA
/* the same on the device, queued on the current stream (cudaMemsetAsync:
 * legal inside a graph capture); a failure is recorded as the pending error */
void omni_zero_cuda(void *p, int64_t nbytes);
#endif

#ifdef __cplusplus
}
#endif
#endif
