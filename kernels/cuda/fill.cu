/* kernels/cuda/fill.cu - CUDA twin of kernels/cpu/fill.c: a memset queued on
 * the current stream, so a buffer keeps its address when it is cleared (a
 * kept CUDA graph may name it). */
#include "common.cuh"
#include "fill.h"

extern "C" void omni_zero_cuda(void *p, int64_t nbytes)
{
    if (nbytes > 0)
        OMNI_CUDA_CHECK(cudaMemsetAsync(p, 0, (size_t)nbytes, OMNI_STREAM));
}
