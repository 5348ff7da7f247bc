/* omni/tensor.h - tensor descriptors over refcounted buffers.
 *
 * A struct omni_tensor is a plain, memcpy-able descriptor: dtype, shape,
 * strides (in elements), byte offset into a buffer, device. It holds a
 * reference to its buffer only when the code that filled it says so
 * ("(transfer full)"); omni_tensor_release() drops that reference.
 *
 * A buffer owns memory and knows its kind (host heap, host shared memory,
 * read-only mmap of a weights file, CUDA device memory, CUDA IPC import).
 */
#ifndef OMNI_TENSOR_H
#define OMNI_TENSOR_H

#include <stdint.h>

#include "omni/dtype.h"
#include "omni/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_MAX_DIMS 8

enum omni_device_type {
    OMNI_DEVICE_CPU = 0,
    OMNI_DEVICE_CUDA = 1,
};

struct omni_device {
    int32_t type;  /* enum omni_device_type */
    int32_t index; /* CUDA ordinal; 0 for CPU */
};

#define OMNI_CPU ((struct omni_device){OMNI_DEVICE_CPU, 0})

/* "cpu", "cuda", "cuda:1" -> device. */
OMNI_API int omni_device_parse(const char *s, struct omni_device *out, struct omni_error *err);
/* Writes "cpu" or "cuda:N" into buf (at least 16 bytes); returns buf. */
OMNI_API const char *omni_device_str(struct omni_device d, char *buf, size_t n);
OMNI_API int omni_device_eq(struct omni_device a, struct omni_device b);
/* Number of CUDA devices usable now (0 when built without CUDA or none). */
OMNI_API int omni_cuda_device_count(void);

enum omni_buffer_kind {
    OMNI_BUFFER_HOST = 0,     /* malloc'd, 64-byte aligned */
    OMNI_BUFFER_SHM = 1,      /* POSIX shared memory mapping */
    OMNI_BUFFER_MMAP = 2,     /* read-only mapping of a file */
    OMNI_BUFFER_CUDA = 3,     /* cudaMalloc */
    OMNI_BUFFER_CUDA_IPC = 4, /* cudaIpcOpenMemHandle import */
    OMNI_BUFFER_EXTERNAL = 5, /* memory owned by someone else; free_fn called on release */
};

struct omni_buffer; /* opaque, refcounted */

/* New zero-filled buffer of nbytes on dev. (transfer full) */
OMNI_API struct omni_buffer *omni_buffer_new(struct omni_device dev, size_t nbytes,
                                             struct omni_error *err);
/* New zero-filled buffer of nbytes on dev whose memory can be handed back while its
 * address stays reserved (CUDA virtual memory management): for request state that a
 * kept CUDA graph names. On the host, or on a device without virtual memory
 * management, a plain omni_buffer_new buffer (whose pages cannot be dropped).
 * (transfer full) */
OMNI_API struct omni_buffer *omni_buffer_new_reserved(struct omni_device dev, size_t nbytes,
                                                      struct omni_error *err);
/* Hand the device memory behind a reserved buffer back; its address stays reserved and
 * its contents are lost: touch it only after omni_buffer_restore_pages. The caller makes
 * sure that no queued work uses it. 1 when memory was handed back, 0 when b has none to
 * give (a plain or host buffer keeps its memory and contents). */
OMNI_API int omni_buffer_drop_pages(struct omni_buffer *b);
/* Back a buffer whose pages were dropped with memory again, at the same address, with
 * undefined contents (no-op for any other buffer). OMNI_ENOMEM when the device has no
 * memory left (the buffer stays without pages). */
OMNI_API int omni_buffer_restore_pages(struct omni_buffer *b, struct omni_error *err);
/* 0 while b's pages are dropped, else 1. */
OMNI_API int omni_buffer_has_pages(const struct omni_buffer *b);
/* Wrap foreign memory; free_fn(user) runs when the last reference goes.
 * (transfer full) */
OMNI_API struct omni_buffer *omni_buffer_wrap(struct omni_device dev, void *data, size_t nbytes,
                                              int kind, void (*free_fn)(void *user),
                                              void *user, struct omni_error *err);
OMNI_API struct omni_buffer *omni_buffer_ref(struct omni_buffer *b);
OMNI_API void omni_buffer_unref(struct omni_buffer *b);
OMNI_API void *omni_buffer_data(const struct omni_buffer *b);
OMNI_API size_t omni_buffer_size(const struct omni_buffer *b);
OMNI_API int omni_buffer_kind(const struct omni_buffer *b);
OMNI_API struct omni_device omni_buffer_device(const struct omni_buffer *b);
OMNI_API int omni_buffer_is_readonly(const struct omni_buffer *b);
/* Number of buffers alive in this process (for leak checks in tests). */
OMNI_API long omni_buffer_live_count(void);

struct omni_tensor {
    int32_t dtype; /* enum omni_dtype */
    int32_t ndim;
    int64_t shape[OMNI_MAX_DIMS];
    int64_t strides[OMNI_MAX_DIMS]; /* in elements */
    int64_t offset;                 /* in bytes, into buf */
    struct omni_device device;
    struct omni_buffer *buf; /* NULL for an empty descriptor */
};

/* Fill t with a new contiguous zeroed tensor. (transfer full: release t) */
OMNI_API int omni_tensor_alloc(struct omni_tensor *t, int dtype, int ndim, const int64_t *shape,
                               struct omni_device dev, struct omni_error *err);
/* Same, on the host, shape given as arguments: omni_tensor_alloc_host(&t, F32, 2, 3, 4). */
OMNI_API int omni_tensor_alloc_host(struct omni_tensor *t, int dtype, int ndim, ...);
/* Describe a contiguous view of buf (takes a new reference on buf). */
OMNI_API int omni_tensor_view(struct omni_tensor *t, struct omni_buffer *buf, int64_t offset,
                              int dtype, int ndim, const int64_t *shape, struct omni_error *err);
/* Drop t's buffer reference and zero the descriptor. Safe on zeroed tensors. */
OMNI_API void omni_tensor_release(struct omni_tensor *t);
/* Copy descriptor and take a new buffer reference. */
OMNI_API void omni_tensor_ref(struct omni_tensor *dst, const struct omni_tensor *src);

OMNI_API int64_t omni_tensor_numel(const struct omni_tensor *t);
OMNI_API size_t omni_tensor_nbytes(const struct omni_tensor *t);
OMNI_API int omni_tensor_is_contiguous(const struct omni_tensor *t);
/* Pointer to element 0 (host or device address). */
OMNI_API void *omni_tensor_data(const struct omni_tensor *t);
/* Set row-major strides from shape. */
OMNI_API void omni_tensor_set_contiguous(struct omni_tensor *t);
/* "f32[2,3]@cpu" into buf; returns buf. */
OMNI_API const char *omni_tensor_str(const struct omni_tensor *t, char *buf, size_t n);
/* "[2,3]" for a shape; returns buf. */
OMNI_API const char *omni_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* New contiguous tensor on dev (dtype kept) holding src's values. Handles
 * strided sources and host<->device copies. (transfer full) */
OMNI_API int omni_tensor_copy_to(struct omni_tensor *dst, const struct omni_tensor *src,
                                 struct omni_device dev, struct omni_error *err);
/* New contiguous host tensor of dtype holding src's values converted.
 * (transfer full) */
OMNI_API int omni_tensor_convert(struct omni_tensor *dst, const struct omni_tensor *src,
                                 int dtype, struct omni_error *err);
/* Reshape a contiguous tensor in place (same numel). */
OMNI_API int omni_tensor_reshape(struct omni_tensor *t, int ndim, const int64_t *shape,
                                 struct omni_error *err);

/* Arena for per-request scratch: bump allocation from host blocks, freed
 * all at once. Not thread-safe. */
struct omni_arena;
OMNI_API struct omni_arena *omni_arena_new(size_t block_bytes);
OMNI_API void *omni_arena_alloc(struct omni_arena *a, size_t nbytes); /* 64-byte aligned; NULL on OOM */
OMNI_API void omni_arena_reset(struct omni_arena *a);
OMNI_API size_t omni_arena_used(const struct omni_arena *a);
OMNI_API void omni_arena_free(struct omni_arena *a);

#ifdef __cplusplus
}
#endif
#endif
