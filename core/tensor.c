/* Refcounted buffers, tensor descriptors and the scratch arena. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/tensor.h"
#ifdef OMNI_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "cuda_impl.h"
#endif

struct omni_buffer {
    atomic_int refs;
    int kind;
    struct omni_device dev;
    void *data;
    size_t size;
    void (*free_fn)(void *user);
    void *user;
    /* reserved-address device memory (omni_buffer_new_reserved): 0 none, 1 with its
     * pages, 2 pages handed back; vsize bytes reserved, vhandle the pages */
    int vmm;
    size_t vsize;
    unsigned long long vhandle;
};

static atomic_long live_buffers;

long omni_buffer_live_count(void) { return atomic_load(&live_buffers); }

int omni_device_parse(const char *s, struct omni_device *out, struct omni_error *err)
{
    if (!s || !*s || !strcmp(s, "cpu")) {
        *out = OMNI_CPU;
        return OMNI_OK;
    }
    if (!strncmp(s, "cuda", 4)) {
        long idx = 0;
        if (s[4] == ':') {
            char *end;
            idx = strtol(s + 5, &end, 10);
            if (end == s + 5 || *end || idx < 0 || idx > 255)
                goto bad;
        } else if (s[4]) {
            goto bad;
        }
        out->type = OMNI_DEVICE_CUDA;
        out->index = (int32_t)idx;
        return OMNI_OK;
    }
bad:
    return omni_error_set(err, OMNI_EINVAL, "unknown device '%s' (expected cpu, cuda or cuda:N)", s);
}

const char *omni_device_str(struct omni_device d, char *buf, size_t n)
{
    if (d.type == OMNI_DEVICE_CUDA)
        snprintf(buf, n, "cuda:%d", d.index);
    else
        snprintf(buf, n, "cpu");
    return buf;
}

int omni_device_eq(struct omni_device a, struct omni_device b)
{
    return a.type == b.type && (a.type == OMNI_DEVICE_CPU || a.index == b.index);
}

int omni_cuda_device_count(void)
{
#ifdef OMNI_HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

/* A new buffer's last step: one reference, counted live. */
static struct omni_buffer *buffer_live(struct omni_buffer *b, struct omni_device dev, size_t nbytes)
{
    atomic_init(&b->refs, 1);
    b->dev = dev;
    b->size = nbytes;
    atomic_fetch_add(&live_buffers, 1);
    return b;
}

struct omni_buffer *omni_buffer_new(struct omni_device dev, size_t nbytes, struct omni_error *err)
{
    struct omni_buffer *b = calloc(1, sizeof *b);
    if (!b) {
        omni_error_set(err, OMNI_ENOMEM, "out of memory allocating a buffer descriptor");
        return NULL;
    }
    size_t alloc = nbytes ? nbytes : 1;
    if (dev.type == OMNI_DEVICE_CPU) {
        size_t rounded = (alloc + 63) & ~(size_t)63;
        b->data = aligned_alloc(64, rounded);
        if (!b->data) {
            free(b);
            omni_error_set(err, OMNI_ENOMEM, "out of memory allocating %zu bytes on the host", nbytes);
            return NULL;
        }
        memset(b->data, 0, rounded);
        b->kind = OMNI_BUFFER_HOST;
    } else {
#ifdef OMNI_HAVE_CUDA
        int prev = 0;
        cudaGetDevice(&prev);
        cudaError_t ce = cudaSetDevice(dev.index);
        if (ce == cudaSuccess)
            ce = cudaMalloc(&b->data, alloc);
        if (ce == cudaSuccess)
            ce = cudaMemset(b->data, 0, alloc);
        cudaSetDevice(prev);
        if (ce != cudaSuccess) {
            if (b->data)
                cudaFree(b->data);
            cudaGetLastError();
            free(b);
            omni_error_set(err, ce == cudaErrorMemoryAllocation ? OMNI_ENOMEM : OMNI_ECUDA,
                           "cudaMalloc of %zu bytes on cuda:%d failed: %s", nbytes, dev.index,
                           cudaGetErrorString(ce));
            return NULL;
        }
        b->kind = OMNI_BUFFER_CUDA;
        omni__cuda_account(dev.index, (long long)alloc, b->data);
#else
        free(b);
        omni_error_set(err, OMNI_EDEVICE, "cuda:%d requested but omni was built without CUDA",
                       dev.index);
        return NULL;
#endif
    }
    return buffer_live(b, dev, nbytes);
}

struct omni_buffer *omni_buffer_new_reserved(struct omni_device dev, size_t nbytes,
                                             struct omni_error *err)
{
#ifdef OMNI_HAVE_CUDA
    if (dev.type != OMNI_DEVICE_CPU) {
        struct omni_buffer *b = calloc(1, sizeof *b);
        if (!b) {
            omni_error_set(err, OMNI_ENOMEM, "out of memory allocating a buffer descriptor");
            return NULL;
        }
        int prev = 0, rc;
        char why[256] = "";
        cudaGetDevice(&prev);
        cudaError_t ce = cudaSetDevice(dev.index);
        if (ce == cudaSuccess)
            ce = cudaFree(NULL); /* the device's primary context, current */
        if (ce != cudaSuccess) {
            cudaGetLastError();
            cudaSetDevice(prev);
            free(b);
            omni_error_set(err, OMNI_ECUDA, "cuda:%d: %s", dev.index, cudaGetErrorString(ce));
            return NULL;
        }
        rc = omni__vmm_reserve(dev.index, nbytes, &b->data, &b->vsize, why, sizeof why);
        if (rc == OMNI_EDEVICE) { /* no virtual memory management: a plain buffer */
            cudaSetDevice(prev);
            free(b);
            return omni_buffer_new(dev, nbytes, err);
        }
        if (!rc) {
            rc = omni__vmm_map(dev.index, b->data, b->vsize, &b->vhandle, why, sizeof why);
            if (rc)
                omni__vmm_free(b->data, b->vsize);
        }
        if (!rc && (ce = cudaMemset(b->data, 0, b->vsize)) != cudaSuccess) {
            cudaGetLastError();
            omni__vmm_unmap(b->data, b->vsize, b->vhandle);
            omni__vmm_free(b->data, b->vsize);
            snprintf(why, sizeof why, "cudaMemset: %s", cudaGetErrorString(ce));
            rc = OMNI_ECUDA;
        }
        cudaSetDevice(prev);
        if (rc) {
            free(b);
            omni_error_set(err, rc, "reserved device memory of %zu bytes on cuda:%d: %s", nbytes,
                           dev.index, why);
            return NULL;
        }
        b->kind = OMNI_BUFFER_CUDA;
        b->vmm = 1;
        omni__cuda_account(dev.index, (long long)b->vsize, b->data);
        return buffer_live(b, dev, nbytes);
    }
#endif
    return omni_buffer_new(dev, nbytes, err);
}

int omni_buffer_drop_pages(struct omni_buffer *b)
{
#ifdef OMNI_HAVE_CUDA
    if (b && b->vmm == 1) {
        int prev = 0;
        cudaGetDevice(&prev);
        cudaSetDevice(b->dev.index);
        omni__vmm_unmap(b->data, b->vsize, b->vhandle);
        cudaSetDevice(prev);
        b->vmm = 2;
        omni__cuda_account(b->dev.index, -(long long)b->vsize, b->data);
        return 1;
    }
#else
    (void)b;
#endif
    return 0;
}

int omni_buffer_restore_pages(struct omni_buffer *b, struct omni_error *err)
{
#ifdef OMNI_HAVE_CUDA
    if (b && b->vmm == 2) {
        char why[256] = "";
        int prev = 0;
        cudaGetDevice(&prev);
        cudaSetDevice(b->dev.index);
        int rc = omni__vmm_map(b->dev.index, b->data, b->vsize, &b->vhandle, why, sizeof why);
        cudaSetDevice(prev);
        if (rc)
            return omni_error_set(err, rc, "memory for %zu reserved bytes on cuda:%d: %s", b->vsize,
                                  b->dev.index, why);
        b->vmm = 1;
        omni__cuda_account(b->dev.index, (long long)b->vsize, b->data);
    }
#else
    (void)b;
    (void)err;
#endif
    return OMNI_OK;
}

int omni_buffer_has_pages(const struct omni_buffer *b) { return b && b->vmm != 2; }

struct omni_buffer *omni_buffer_wrap(struct omni_device dev, void *data, size_t nbytes, int kind,
                                     void (*free_fn)(void *user), void *user,
                                     struct omni_error *err)
{
    struct omni_buffer *b = calloc(1, sizeof *b);
    if (!b) {
        omni_error_set(err, OMNI_ENOMEM, "out of memory allocating a buffer descriptor");
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->dev = dev;
    b->data = data;
    b->size = nbytes;
    b->kind = kind;
    b->free_fn = free_fn;
    b->user = user;
    atomic_fetch_add(&live_buffers, 1);
    return b;
}

struct omni_buffer *omni_buffer_ref(struct omni_buffer *b)
{
    if (b)
        atomic_fetch_add(&b->refs, 1);
    return b;
}

void omni_buffer_unref(struct omni_buffer *b)
{
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    if (b->free_fn) {
        b->free_fn(b->user);
    } else if (b->kind == OMNI_BUFFER_HOST) {
        free(b->data);
    } else if (b->kind == OMNI_BUFFER_CUDA && b->vmm) {
#ifdef OMNI_HAVE_CUDA
        int prev = 0;
        cudaGetDevice(&prev);
        cudaSetDevice(b->dev.index);
        cudaDeviceSynchronize(); /* as cudaFree: queued work may still use the pages */
        if (b->vmm == 1) {
            omni__vmm_unmap(b->data, b->vsize, b->vhandle);
            omni__cuda_account(b->dev.index, -(long long)b->vsize, b->data);
        }
        omni__vmm_free(b->data, b->vsize);
        cudaSetDevice(prev);
#endif
    } else if (b->kind == OMNI_BUFFER_CUDA) {
#ifdef OMNI_HAVE_CUDA
        cudaFree(b->data);
        omni__cuda_account(b->dev.index, -(long long)(b->size ? b->size : 1), b->data);
#endif
    }
    atomic_fetch_sub(&live_buffers, 1);
    free(b);
}

void *omni_buffer_data(const struct omni_buffer *b) { return b ? b->data : NULL; }
size_t omni_buffer_size(const struct omni_buffer *b) { return b ? b->size : 0; }
int omni_buffer_kind(const struct omni_buffer *b) { return b ? b->kind : -1; }
struct omni_device omni_buffer_device(const struct omni_buffer *b) { return b ? b->dev : OMNI_CPU; }
int omni_buffer_is_readonly(const struct omni_buffer *b) { return b && b->kind == OMNI_BUFFER_MMAP; }

/* ---- tensors ---------------------------------------------------------------- */

void omni_tensor_set_contiguous(struct omni_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->strides[i] = s;
        s *= t->shape[i];
    }
}

int64_t omni_tensor_numel(const struct omni_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t omni_tensor_nbytes(const struct omni_tensor *t)
{
    return (size_t)omni_tensor_numel(t) * omni_dtype_size(t->dtype);
}

int omni_tensor_is_contiguous(const struct omni_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s)
            return 0;
        s *= t->shape[i];
    }
    return 1;
}

void *omni_tensor_data(const struct omni_tensor *t)
{
    if (!t->buf)
        return NULL;
    return (char *)omni_buffer_data(t->buf) + t->offset;
}

static int check_shape(int dtype, int ndim, const int64_t *shape, struct omni_error *err)
{
    if (!omni_dtype_size(dtype))
        return omni_error_set(err, OMNI_EDTYPE, "invalid dtype %d", dtype);
    if (ndim < 0 || ndim > OMNI_MAX_DIMS)
        return omni_error_set(err, OMNI_EINVAL, "rank %d outside 0..%d", ndim, OMNI_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return omni_error_set(err, OMNI_EINVAL, "negative dimension %lld at axis %d",
                                  (long long)shape[i], i);
    return OMNI_OK;
}

int omni_tensor_alloc(struct omni_tensor *t, int dtype, int ndim, const int64_t *shape,
                      struct omni_device dev, struct omni_error *err)
{
    memset(t, 0, sizeof *t);
    int rc = check_shape(dtype, ndim, shape, err);
    if (rc)
        return rc;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    omni_tensor_set_contiguous(t);
    t->device = dev;
    t->buf = omni_buffer_new(dev, omni_tensor_nbytes(t), err);
    if (!t->buf) {
        memset(t, 0, sizeof *t);
        return err ? err->status : OMNI_ENOMEM;
    }
    return OMNI_OK;
}

int omni_tensor_alloc_host(struct omni_tensor *t, int dtype, int ndim, ...)
{
    int64_t shape[OMNI_MAX_DIMS] = {0};
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < OMNI_MAX_DIMS; i++)
        shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    return omni_tensor_alloc(t, dtype, ndim, shape, OMNI_CPU, NULL);
}

int omni_tensor_view(struct omni_tensor *t, struct omni_buffer *buf, int64_t offset, int dtype,
                     int ndim, const int64_t *shape, struct omni_error *err)
{
    memset(t, 0, sizeof *t);
    int rc = check_shape(dtype, ndim, shape, err);
    if (rc)
        return rc;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    omni_tensor_set_contiguous(t);
    if (offset < 0 || (size_t)offset + omni_tensor_nbytes(t) > omni_buffer_size(buf)) {
        memset(t, 0, sizeof *t);
        return omni_error_set(err, OMNI_ERANGE, "view of %zu bytes at offset %lld exceeds buffer of %zu bytes",
                              (size_t)omni_tensor_numel(t) * omni_dtype_size(dtype), (long long)offset,
                              omni_buffer_size(buf));
    }
    t->offset = offset;
    t->device = omni_buffer_device(buf);
    t->buf = omni_buffer_ref(buf);
    return OMNI_OK;
}

void omni_tensor_release(struct omni_tensor *t)
{
    if (!t)
        return;
    omni_buffer_unref(t->buf);
    memset(t, 0, sizeof *t);
}

void omni_tensor_ref(struct omni_tensor *dst, const struct omni_tensor *src)
{
    *dst = *src;
    omni_buffer_ref(dst->buf);
}

const char *omni_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
    return buf;
}

const char *omni_tensor_str(const struct omni_tensor *t, char *buf, size_t n)
{
    char shape[160], dev[16];
    omni_shape_str(t->ndim, t->shape, shape, sizeof shape);
    snprintf(buf, n, "%s%s@%s", omni_dtype_name(t->dtype), shape,
             omni_device_str(t->device, dev, sizeof dev));
    return buf;
}

int omni_tensor_reshape(struct omni_tensor *t, int ndim, const int64_t *shape, struct omni_error *err)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    if (ndim < 0 || ndim > OMNI_MAX_DIMS || n != omni_tensor_numel(t) || !omni_tensor_is_contiguous(t)) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "cannot reshape %s to %s",
                              omni_shape_str(t->ndim, t->shape, a, sizeof a),
                              omni_shape_str(ndim, shape, b, sizeof b));
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    omni_tensor_set_contiguous(t);
    return OMNI_OK;
}

/* Host gather of a strided tensor into contiguous dst. */
static void gather_host(char *dst, const struct omni_tensor *src)
{
    size_t es = omni_dtype_size(src->dtype);
    int64_t n = omni_tensor_numel(src);
    const char *base = omni_tensor_data(src);
    int64_t idx[OMNI_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (int d = 0; d < src->ndim; d++)
            off += idx[d] * src->strides[d];
        memcpy(dst + (size_t)i * es, base + off * (int64_t)es, es);
        for (int d = src->ndim - 1; d >= 0; d--) {
            if (++idx[d] < src->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

int omni_tensor_copy_to(struct omni_tensor *dst, const struct omni_tensor *src,
                        struct omni_device dev, struct omni_error *err)
{
    struct omni_tensor tmp;
    int rc = omni_tensor_alloc(&tmp, src->dtype, src->ndim, src->shape, dev, err);
    if (rc)
        return rc;
    size_t nbytes = omni_tensor_nbytes(src);
    if (src->device.type == OMNI_DEVICE_CPU && dev.type == OMNI_DEVICE_CPU) {
        if (omni_tensor_is_contiguous(src))
            memcpy(omni_tensor_data(&tmp), omni_tensor_data(src), nbytes);
        else
            gather_host(omni_tensor_data(&tmp), src);
        *dst = tmp;
        return OMNI_OK;
    }
#ifdef OMNI_HAVE_CUDA
    {
        const void *from = omni_tensor_data(src);
        void *staging = NULL;
        if (!omni_tensor_is_contiguous(src)) {
            if (src->device.type != OMNI_DEVICE_CPU) {
                omni_tensor_release(&tmp);
                return omni_error_set(err, OMNI_EUNSUPPORTED,
                                      "copy of a non-contiguous device tensor is not supported");
            }
            staging = malloc(nbytes ? nbytes : 1);
            if (!staging) {
                omni_tensor_release(&tmp);
                return omni_error_set(err, OMNI_ENOMEM, "out of memory staging %zu bytes", nbytes);
            }
            gather_host(staging, src);
            from = staging;
        }
        cudaError_t ce = cudaMemcpy(omni_tensor_data(&tmp), from, nbytes, cudaMemcpyDefault);
        free(staging);
        if (ce != cudaSuccess) {
            omni_tensor_release(&tmp);
            return omni_error_set(err, OMNI_ECUDA, "cudaMemcpy of %zu bytes failed: %s", nbytes,
                                  cudaGetErrorString(ce));
        }
        *dst = tmp;
        return OMNI_OK;
    }
#else
    omni_tensor_release(&tmp);
    return omni_error_set(err, OMNI_EDEVICE, "device copy requested but omni was built without CUDA");
#endif
}

int omni_tensor_convert(struct omni_tensor *dst, const struct omni_tensor *src, int dtype,
                        struct omni_error *err)
{
    struct omni_tensor host;
    int rc = omni_tensor_copy_to(&host, src, OMNI_CPU, err);
    if (rc)
        return rc;
    if (host.dtype == dtype) {
        *dst = host;
        return OMNI_OK;
    }
    struct omni_tensor out;
    rc = omni_tensor_alloc(&out, dtype, host.ndim, host.shape, OMNI_CPU, err);
    if (!rc) {
        rc = omni_dtype_convert(omni_tensor_data(&out), dtype, omni_tensor_data(&host), host.dtype,
                                (size_t)omni_tensor_numel(&host));
        if (rc) {
            omni_tensor_release(&out);
            omni_error_set(err, rc, "cannot convert %s to %s", omni_dtype_name(host.dtype),
                           omni_dtype_name(dtype));
        } else {
            *dst = out;
        }
    }
    omni_tensor_release(&host);
    return rc;
}

/* ---- arena -------------------------------------------------------------------- */

struct arena_block {
    struct arena_block *next;
    size_t size, used;
    _Alignas(64) unsigned char data[];
};

struct omni_arena {
    struct arena_block *head;
    size_t block_bytes;
    size_t total_used;
};

struct omni_arena *omni_arena_new(size_t block_bytes)
{
    struct omni_arena *a = calloc(1, sizeof *a);
    if (a)
        a->block_bytes = block_bytes ? block_bytes : (1u << 20);
    return a;
}

void *omni_arena_alloc(struct omni_arena *a, size_t nbytes)
{
    size_t need = (nbytes + 63) & ~(size_t)63;
    struct arena_block *b = a->head;
    if (!b || b->used + need > b->size) {
        size_t size = need > a->block_bytes ? need : a->block_bytes;
        b = aligned_alloc(64, (sizeof *b + size + 63) & ~(size_t)63);
        if (!b)
            return NULL;
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->total_used += need;
    return p;
}

void omni_arena_reset(struct omni_arena *a)
{
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->total_used = 0;
}

size_t omni_arena_used(const struct omni_arena *a) { return a->total_used; }

void omni_arena_free(struct omni_arena *a)
{
    if (!a)
        return;
    omni_arena_reset(a);
    free(a);
}
