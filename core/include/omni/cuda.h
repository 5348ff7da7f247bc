/* omni/cuda.h - the CUDA backend's per-device context, for programs and the
 * executor.
 *
 * Every omni_op_* on CUDA tensors queues its work on the device's current
 * stream and returns without waiting. The current stream of device d for the
 * calling thread is the one set by omni_cuda_set_stream, else the device's
 * own stream (created on first use with cudaStreamCreate: it orders with the
 * legacy default stream, so the plain cudaMemcpy of omni_tensor_copy_to sees
 * finished results). To capture a decode step in a CUDA graph, capture that
 * stream: the stages' step paths allocate nothing and never wait for the
 * device (see kernels/cuda/README.md).
 *
 * Errors found inside kernels (an embedding id outside the table) cannot be
 * returned by the op that queued them without a host round trip; they are
 * recorded on the device and reported by the next omni_cuda_synchronize.
 * Set OMNI_CUDA_SYNC=1 to synchronize after every op (debugging: errors then
 * surface at the op that caused them).
 *
 * f32 matmuls run in true f32 (no TF32) unless OMNI_ALLOW_TF32=1 is set when
 * the device is first used.
 *
 * Built without CUDA, every function here reports OMNI_EDEVICE (or returns
 * NULL / 0). */
#ifndef OMNI_CUDA_H
#define OMNI_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Wait for all work queued on dev's current stream, then report the first
 * error recorded since the last call: a failed launch or asynchronous CUDA
 * error (OMNI_ECUDA), or an error found by a kernel (OMNI_ERANGE for an
 * embedding id outside its table, naming the index, the id and V). */
OMNI_API int omni_cuda_synchronize(struct omni_device dev, struct omni_error *err);

/* The cudaStream_t the calling thread's ops on dev use (creating the
 * device's context on first use); NULL when dev is not a usable CUDA device. */
OMNI_API void *omni_cuda_stream(struct omni_device dev);
/* Make `stream` (a cudaStream_t, NULL = the device's own stream) the calling
 * thread's current stream for dev; returns the previous override (NULL when
 * none). */
OMNI_API void *omni_cuda_set_stream(struct omni_device dev, void *stream);

struct omni_cuda_info {
    char name[256];     /* "NVIDIA H200" */
    int major, minor;   /* compute capability */
    int sm_count;
    size_t total_mem;   /* bytes */
    size_t l2_bytes;
    int allow_tf32;     /* OMNI_ALLOW_TF32 was set at first use */
};
OMNI_API int omni_cuda_device_info(struct omni_device dev, struct omni_cuda_info *info,
                                   struct omni_error *err);

/* Bytes of device memory omni holds on dev now (buffers and workspaces), and
 * the most it held since the last reset. */
OMNI_API size_t omni_cuda_memory_used(struct omni_device dev);
OMNI_API size_t omni_cuda_memory_peak(struct omni_device dev);
OMNI_API void omni_cuda_memory_reset_peak(struct omni_device dev);

/* With OMNI_CUDA_MEMLOG=1 in the environment when dev is first used, omni
 * also records every live allocation (size and the stage whose load,
 * forward or step made it, "" when none) and keeps a copy of the live set at
 * each new peak. This fills out[0..n) with that set grouped by (tag, size),
 * largest total first, and returns how many entries it wrote: the picture at
 * the most recent peak since the last omni_cuda_memory_reset_peak. 0 when
 * the log is off, dev is not CUDA or nothing was recorded. */
struct omni_cuda_memlog_entry {
    char tag[32];  /* stage name, "workspace", "context" or "" */
    size_t bytes;  /* size of each allocation of the group */
    long long count;
};
OMNI_API int omni_cuda_memory_peak_log(struct omni_device dev, struct omni_cuda_memlog_entry *out,
                                       int n);

/* Grow the device's prefill workspace to at least `bytes` now (it otherwise
 * grows on first need, outside graph capture only). */
OMNI_API int omni_cuda_reserve(struct omni_device dev, size_t bytes, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
