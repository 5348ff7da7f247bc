/* core/cuda_impl.h - internal interface of the CUDA backend (core/cuda.c),
 * shared by the op wrappers (the .c files of core/ops, C) and the kernels
 * (the .cu files of kernels/cuda, C++). Only meaningful with OMNI_HAVE_CUDA.
 *
 * Error flow: kernels return nothing (their signatures are the CPU twins'),
 * so a failed launch or CUDA call is recorded in a thread-local pending error
 * with OMNI_CUDA_CHECK (expression, file and line); the op wrapper brackets
 * the kernel call with omni__cuda_begin / omni__cuda_end, which moves the
 * pending error into the caller's struct omni_error as OMNI_ECUDA. */
#ifndef OMNI_CORE_CUDA_IMPL_H
#define OMNI_CORE_CUDA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "omni/cuda.h"
#include "omni/status.h"
#include "omni/tensor.h"

#ifdef OMNI_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Record a failed CUDA runtime call (ce != cudaSuccess) as the pending error
 * of this thread unless one is pending already. Returns 0 when ce is success,
 * -1 otherwise. */
int omni__cuda_check(int ce, const char *expr, const char *file, int line);
/* Same for a cuBLAS status. */
int omni__cublas_check(int st, const char *expr, const char *file, int line);
/* Record a pending error with a free-form message (e.g. a workspace that
 * cannot grow during graph capture). */
void omni__cuda_fail(const char *file, int line, const char *fmt, ...);

#define OMNI_CUDA_CHECK(expr) omni__cuda_check((int)(expr), #expr, __FILE__, __LINE__)
#define OMNI_CUBLAS_CHECK(expr) omni__cublas_check((int)(expr), #expr, __FILE__, __LINE__)
/* After a <<<...>>> launch: records a bad launch configuration. */
#define OMNI_CUDA_LAUNCHED(name) omni__cuda_check((int)cudaGetLastError(), name, __FILE__, __LINE__)

/* Enter an op on dev: selects the device, creates its context on first use
 * and clears this thread's pending error. OMNI_ECUDA/OMNI_EDEVICE when the
 * device cannot be used. */
int omni__cuda_begin(struct omni_error *err, const char *op, struct omni_device dev);
/* Leave an op: moves a pending error (or a launch error) into err as
 * OMNI_ECUDA "op: ...". With OMNI_CUDA_SYNC=1 it also waits for the stream
 * and reports asynchronous and kernel-recorded errors. */
int omni__cuda_end(struct omni_error *err, const char *op);

/* The current device's stream for this thread (valid after begin). */
cudaStream_t omni__cuda_cur_stream(void);
/* The current device's cuBLAS handle, bound to the current stream, with a
 * fixed workspace (graph-capture safe). NULL after recording an error. */
cublasHandle_t omni__cuda_blas(void);
/* OMNI_ALLOW_TF32 was set when the current device was first used. */
int omni__cuda_allow_tf32(void);
/* Multiprocessor count of the current device. */
int omni__cuda_sm_count(void);

/* A fixed scratch area of the current device, allocated once with the
 * context and never moved (usable inside graph capture): NULL when `bytes`
 * exceeds its size (OMNI__CUDA_SMALL_WS). */
#define OMNI__CUDA_SMALL_WS ((size_t)8 << 20)
void *omni__cuda_small_ws(size_t bytes);
/* The growable scratch of the current device: at least `bytes`, moved when it
 * grows (which waits for the stream and is refused during graph capture,
 * recording an error and returning NULL). For prefill-sized work only. */
void *omni__cuda_workspace(size_t bytes);

/* Errors found by kernels, recorded on the device (first one wins). */
enum omni__cuda_devcode {
    OMNI__DEVERR_NONE = 0,
    OMNI__DEVERR_EMBED_RANGE = 1, /* a = index in ids (-1: embedding_add), b = id, c = V */
};
struct omni__cuda_deverr {
    int code;
    int pad;
    long long a, b, c;
};
/* Device address of the current device's record. */
struct omni__cuda_deverr *omni__cuda_deverr(void);

/* Device memory accounting (bytes; called by the allocators): delta > 0 for
 * an allocation at ptr, < 0 for its release (ptr: the same address, for
 * OMNI_CUDA_MEMLOG; NULL leaves it out of the log). */
void omni__cuda_account(int device_index, long long delta, const void *ptr);

/* Reserved-address device memory (core/vmm.c): reserve a range of at least `bytes` on
 * device `dev` (*size: rounded up to the driver's granularity), back it with pages
 * (map; *handle names them) and hand them back (unmap: the address stays reserved,
 * its contents are lost), release the range (free, after unmap). Failures return a
 * status and say why in why[n]: OMNI_EDEVICE when the driver or the device lacks
 * virtual memory management, OMNI_ENOMEM when no memory is left. The caller makes sure
 * that no queued work touches the pages it unmaps. */
int omni__vmm_reserve(int dev, size_t bytes, void **ptr, size_t *size, char *why, size_t n);
int omni__vmm_map(int dev, void *ptr, size_t size, unsigned long long *handle, char *why, size_t n);
void omni__vmm_unmap(void *ptr, size_t size, unsigned long long handle);
void omni__vmm_free(void *ptr, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* OMNI_HAVE_CUDA */

/* In an op wrapper, after the checks: when `dev` is a CUDA device, run
 * `call` (a kernels/cuda function) between omni__cuda_begin and
 * omni__cuda_end and return; otherwise fall through to the host path. */
#ifdef OMNI_HAVE_CUDA
#define OMNI__CUDA_DISPATCH(err, op, dev, call)                                                    \
    do {                                                                                           \
        if ((dev).type == OMNI_DEVICE_CUDA) {                                                      \
            int rc_cd_ = omni__cuda_begin((err), (op), (dev));                                     \
            if (rc_cd_)                                                                            \
                return rc_cd_;                                                                     \
            call;                                                                                  \
            return omni__cuda_end((err), (op));                                                    \
        }                                                                                          \
    } while (0)
#else
#define OMNI__CUDA_DISPATCH(err, op, dev, call)                                                    \
    do {                                                                                           \
    } while (0)
#endif
#endif
