/* The GPU path of tensor references: CUDA IPC memory handles and IPC events
 * between processes on one host. Built only with OMNI_HAVE_CUDA; without it
 * every entry point says so and the host path (shm.c) is used.
 *
 * Exporting: a tensor in memory from cudaMalloc (tensor.c's device buffers,
 * or a block of this file's pool, also cudaMalloc - never the stream-ordered
 * allocator, whose memory cudaIpcGetMemHandle cannot export) is shared as is:
 * handle of its allocation + byte offset. Anything else (memory imported from
 * another process cannot be re-exported) is copied once into a pool block.
 * An interprocess event recorded on the default stream after the producer's
 * work orders the consumer's reads. The exporter keeps a reference to every
 * exported buffer until the request ends (omni__cuda_exports_release), which
 * happens only after every consumer said it finished (Cancel{finished} is
 * answered after the worker synchronised its device).
 *
 * Importing: handles are opened once per process and allocation (opening the
 * same allocation twice in one process fails), counted, and closed only after
 * a device synchronisation once nothing uses them (omni__cuda_imports_flush at
 * request end): closing while a kernel still reads would fault. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc_impl.h"

#ifdef OMNI_HAVE_CUDA
#include <cuda_runtime_api.h>

#define CK(expr, what)                                                                                  \
    do {                                                                                                \
        cudaError_t ce_ = (expr);                                                                       \
        if (ce_ != cudaSuccess) {                                                                       \
            cudaGetLastError();                                                                         \
            rc = omni_error_set(err, OMNI_ECUDA, "%s: %s (%s at %s:%d)", what, cudaGetErrorString(ce_), \
                                #expr, __FILE__, __LINE__);                                             \
            goto fail;                                                                                  \
        }                                                                                               \
    } while (0)

/* ---- the pool: cudaMalloc blocks reused by size ---------------------------------------- */

struct pool_block {
    void *ptr;
    size_t size;
    int dev;
    struct pool_block *next;
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_block *pool_free;

static void pool_put(void *user)
{
    struct pool_block *b = user;
    pthread_mutex_lock(&pool_mu);
    b->next = pool_free;
    pool_free = b;
    pthread_mutex_unlock(&pool_mu);
}

/* A block of at least n bytes on dev, as an omni buffer (kind CUDA) that
 * returns to the pool when released. */
static struct omni_buffer *pool_get(int dev, size_t n, struct omni_error *err)
{
    struct pool_block *b = NULL;
    pthread_mutex_lock(&pool_mu);
    for (struct pool_block **pp = &pool_free; *pp; pp = &(*pp)->next)
        if ((*pp)->dev == dev && (*pp)->size >= n && (*pp)->size / 2 <= n) {
            b = *pp;
            *pp = b->next;
            break;
        }
    pthread_mutex_unlock(&pool_mu);
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) {
            omni_error_set(err, OMNI_ENOMEM, "out of memory");
            return NULL;
        }
        b->dev = dev;
        b->size = (n + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); /* whole MiB: fewer sizes */
        cudaError_t ce = cudaSetDevice(dev);
        if (ce == cudaSuccess)
            ce = cudaMalloc(&b->ptr, b->size);
        if (ce != cudaSuccess) {
            cudaGetLastError();
            omni_error_set(err, ce == cudaErrorMemoryAllocation ? OMNI_ENOMEM : OMNI_ECUDA,
                           "cudaMalloc of a %zu-byte IPC block on cuda:%d: %s", b->size, dev, cudaGetErrorString(ce));
            free(b);
            return NULL;
        }
    }
    struct omni_buffer *buf = omni_buffer_wrap((struct omni_device){OMNI_DEVICE_CUDA, dev}, b->ptr, b->size,
                                               OMNI_BUFFER_CUDA, pool_put, b, err);
    if (!buf)
        pool_put(b);
    return buf;
}

/* ---- devices -------------------------------------------------------------------------- */

int omni__cuda_ipc_supported(void) { return omni_cuda_device_count() > 0; }

/* Device UUIDs, read once per process (cudaGetDeviceProperties is slow). */
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;
static uint8_t uuid_cache[64][16];
static int uuid_count;

static void read_uuids(void)
{
    int n = omni_cuda_device_count();
    for (int i = 0; i < n && i < 64; i++) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess)
            cudaGetLastError(); /* a zero UUID never matches */
        else
            memcpy(uuid_cache[i], prop.uuid.bytes, 16);
        uuid_count = i + 1;
    }
}

int omni__cuda_uuids(uint8_t uuids[][16], int max)
{
    pthread_once(&uuid_once, read_uuids);
    int k = uuid_count < max ? uuid_count : max;
    for (int i = 0; i < k; i++)
        memcpy(uuids[i], uuid_cache[i], 16);
    return k;
}

int omni__cuda_ordinal_of(const uint8_t *uuid, size_t n)
{
    static const uint8_t zero[16];
    if (n != 16 || !memcmp(uuid, zero, 16))
        return -1;
    uint8_t u[64][16];
    int k = omni__cuda_uuids(u, 64);
    for (int i = 0; i < k; i++)
        if (!memcmp(u[i], uuid, 16))
            return i;
    return -1;
}

/* ---- exporting ------------------------------------------------------------------------ */

struct export_item {
    struct omni_buffer *buf;
    cudaEvent_t ev;
    int dev;
};

struct omni__cuda_exports {
    struct export_item *items;
    int n, cap;
};

static int keep_add(struct omni__cuda_exports **keep, struct omni_buffer *buf, cudaEvent_t ev, int dev)
{
    if (!*keep && !(*keep = calloc(1, sizeof **keep)))
        return -1;
    struct omni__cuda_exports *x = *keep;
    if (x->n == x->cap) {
        int cap = x->cap ? 2 * x->cap : 8;
        void *r = realloc(x->items, (size_t)cap * sizeof *x->items);
        if (!r)
            return -1;
        x->items = r;
        x->cap = cap;
    }
    x->items[x->n++] = (struct export_item){omni_buffer_ref(buf), ev, dev};
    return 0;
}

static int dup_bytes(ProtobufCBinaryData *d, const void *src, size_t n)
{
    d->data = malloc(n);
    if (!d->data)
        return -1;
    memcpy(d->data, src, n);
    d->len = n;
    return 0;
}

int omni__cuda_export(const struct omni_tensor *t, struct omni__cuda_exports **keep, Omni__CudaIpcRef *ref,
                      struct omni_error *err)
{
    int rc = OMNI_OK, prev = 0, dev = t->device.index;
    struct omni_buffer *held = NULL;
    cudaEvent_t ev = NULL;
    cudaGetDevice(&prev);
    CK(cudaSetDevice(dev), "selecting the device of an exported tensor");
    void *base = omni_buffer_data(t->buf);
    uint64_t offset = (uint64_t)t->offset;
    size_t block = omni_buffer_size(t->buf);
    cudaIpcMemHandle_t mh;
    int direct = omni_buffer_kind(t->buf) == OMNI_BUFFER_CUDA;
    if (direct && cudaIpcGetMemHandle(&mh, base) != cudaSuccess) {
        cudaGetLastError();
        direct = 0;
    }
    if (direct) {
        held = omni_buffer_ref(t->buf);
    } else {
        size_t nbytes = omni_tensor_nbytes(t);
        if (!omni_tensor_is_contiguous(t)) {
            rc = omni_error_set(err, OMNI_EUNSUPPORTED, "exporting a strided tensor held in imported GPU memory");
            goto fail;
        }
        if (!(held = pool_get(dev, nbytes ? nbytes : 1, err))) {
            rc = err ? err->status : OMNI_ENOMEM;
            goto fail;
        }
        CK(cudaMemcpyAsync(omni_buffer_data(held), omni_tensor_data(t), nbytes, cudaMemcpyDeviceToDevice, 0),
           "copying a tensor into an IPC block");
        base = omni_buffer_data(held);
        offset = 0;
        block = omni_buffer_size(held);
        CK(cudaIpcGetMemHandle(&mh, base), "cudaIpcGetMemHandle of a pool block");
        omni__xfer_log_once(3, "a GPU tensor in memory that cannot be exported (imported from another process, or "
                               "not from cudaMalloc) was copied into an IPC block once");
    }
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventInterprocess), "creating an IPC event");
    CK(cudaEventRecord(ev, 0), "recording an IPC event");
    cudaIpcEventHandle_t eh;
    CK(cudaIpcGetEventHandle(&eh, ev), "cudaIpcGetEventHandle");
    uint8_t uu[64][16];
    if (dev >= omni__cuda_uuids(uu, 64)) {
        rc = omni_error_set(err, OMNI_EDEVICE, "no UUID for cuda:%d", dev);
        goto fail;
    }
    if (dup_bytes(&ref->mem_handle, &mh, sizeof mh) || dup_bytes(&ref->event_handle, &eh, sizeof eh) ||
        dup_bytes(&ref->device_uuid, uu[dev], 16)) {
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto fail;
    }
    ref->offset = offset;
    ref->size = block;
    ref->device = dev;
    if (keep_add(keep, held, ev, dev)) {
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto fail;
    }
    omni_buffer_unref(held);
    cudaSetDevice(prev);
    return OMNI_OK;
fail:
    omni__cuda_ref_clear(ref);
    if (ev)
        cudaEventDestroy(ev);
    omni_buffer_unref(held);
    cudaSetDevice(prev);
    return rc;
}

void omni__cuda_ref_clear(Omni__CudaIpcRef *ref)
{
    free(ref->mem_handle.data);
    free(ref->event_handle.data);
    free(ref->device_uuid.data);
    ref->mem_handle = ref->event_handle = ref->device_uuid = (ProtobufCBinaryData){0, NULL};
}

void omni__cuda_exports_release(struct omni__cuda_exports *x)
{
    if (!x)
        return;
    int prev = 0;
    cudaGetDevice(&prev);
    for (int i = 0; i < x->n; i++) {
        cudaSetDevice(x->items[i].dev);
        cudaEventDestroy(x->items[i].ev);
        omni_buffer_unref(x->items[i].buf);
    }
    cudaGetLastError();
    cudaSetDevice(prev);
    free(x->items);
    free(x);
}

/* ---- importing ------------------------------------------------------------------------ */

struct import {
    uint8_t handle[OMNI_IPC_CUDA_HANDLE_BYTES];
    void *ptr;
    int dev;
    int refs;
    struct import *next;
};

static pthread_mutex_t imp_mu = PTHREAD_MUTEX_INITIALIZER;
static struct import *imports;

static void import_unref(void *user)
{
    struct import *im = user;
    pthread_mutex_lock(&imp_mu);
    im->refs--; /* closed by omni__cuda_imports_flush, after a device sync */
    pthread_mutex_unlock(&imp_mu);
}

void omni__cuda_imports_flush(void)
{
    pthread_mutex_lock(&imp_mu);
    int any = 0;
    for (struct import *im = imports; im; im = im->next)
        any |= im->refs == 0;
    if (any) {
        int prev = 0;
        cudaGetDevice(&prev);
        for (int d = 0; d < omni_cuda_device_count(); d++) {
            cudaSetDevice(d);
            cudaDeviceSynchronize();
        }
        for (struct import **pp = &imports; *pp;) {
            struct import *im = *pp;
            if (im->refs) {
                pp = &im->next;
                continue;
            }
            cudaSetDevice(im->dev);
            cudaIpcCloseMemHandle(im->ptr);
            *pp = im->next;
            free(im);
        }
        cudaGetLastError();
        cudaSetDevice(prev);
    }
    pthread_mutex_unlock(&imp_mu);
}

int omni__cuda_import(const Omni__CudaIpcRef *ref, struct omni_tensor *t, struct omni_error *err)
{
    int rc = OMNI_OK, prev = 0;
    struct import *im = NULL;
    int dev = omni__cuda_ordinal_of(ref->device_uuid.data, ref->device_uuid.len);
    if (dev < 0)
        return omni_error_set(err, OMNI_EDEVICE, "the GPU of a CUDA IPC reference (exporter's cuda:%d) is not visible here",
                              ref->device);
    cudaGetDevice(&prev);
    pthread_mutex_lock(&imp_mu);
    for (im = imports; im; im = im->next)
        if (im->dev == dev && !memcmp(im->handle, ref->mem_handle.data, sizeof im->handle))
            break;
    if (im) {
        im->refs++;
    } else {
        if (!(im = calloc(1, sizeof *im))) {
            pthread_mutex_unlock(&imp_mu);
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        }
        memcpy(im->handle, ref->mem_handle.data, sizeof im->handle);
        im->dev = dev;
        cudaIpcMemHandle_t mh;
        memcpy(&mh, ref->mem_handle.data, sizeof mh);
        cudaError_t ce = cudaSetDevice(dev);
        if (ce == cudaSuccess)
            ce = cudaIpcOpenMemHandle(&im->ptr, mh, cudaIpcMemLazyEnablePeerAccess);
        if (ce != cudaSuccess) {
            cudaGetLastError();
            pthread_mutex_unlock(&imp_mu);
            free(im);
            cudaSetDevice(prev);
            return omni_error_set(err, OMNI_ECUDA, "cudaIpcOpenMemHandle on cuda:%d: %s", dev, cudaGetErrorString(ce));
        }
        im->refs = 1;
        im->next = imports;
        imports = im;
    }
    pthread_mutex_unlock(&imp_mu);
    CK(cudaSetDevice(dev), "selecting the device of an imported tensor");
    if (ref->event_handle.len == OMNI_IPC_CUDA_HANDLE_BYTES) {
        cudaIpcEventHandle_t eh;
        cudaEvent_t ev;
        memcpy(&eh, ref->event_handle.data, sizeof eh);
        CK(cudaIpcOpenEventHandle(&ev, eh), "cudaIpcOpenEventHandle");
        cudaError_t ce = cudaStreamWaitEvent(0, ev, 0);
        cudaEventDestroy(ev); /* released once the wait completes */
        CK(ce, "waiting on the exporter's event");
    }
    struct omni_buffer *b = omni_buffer_wrap((struct omni_device){OMNI_DEVICE_CUDA, dev}, im->ptr, ref->size,
                                             OMNI_BUFFER_CUDA_IPC, import_unref, im, err);
    if (!b) {
        rc = err ? err->status : OMNI_ENOMEM;
        goto fail;
    }
    t->buf = b;
    t->device = (struct omni_device){OMNI_DEVICE_CUDA, dev};
    t->offset = (int64_t)ref->offset;
    cudaSetDevice(prev);
    return OMNI_OK;
fail:
    import_unref(im);
    cudaSetDevice(prev);
    return rc;
}

#else /* !OMNI_HAVE_CUDA: the host path only */

int omni__cuda_ipc_supported(void) { return 0; }
int omni__cuda_uuids(uint8_t uuids[][16], int max) { return 0; }
int omni__cuda_ordinal_of(const uint8_t *uuid, size_t n) { return -1; }
int omni__cuda_export(const struct omni_tensor *t, struct omni__cuda_exports **keep, Omni__CudaIpcRef *ref,
                      struct omni_error *err)
{
    return omni_error_set(err, OMNI_EUNSUPPORTED, "CUDA IPC: omni was built without CUDA");
}
int omni__cuda_import(const Omni__CudaIpcRef *ref, struct omni_tensor *t, struct omni_error *err)
{
    return omni_error_set(err, OMNI_EUNSUPPORTED, "CUDA IPC reference received, but omni was built without CUDA");
}
void omni__cuda_exports_release(struct omni__cuda_exports *x) { (void)x; }
void omni__cuda_ref_clear(Omni__CudaIpcRef *ref)
{
    free(ref->mem_handle.data);
    free(ref->event_handle.data);
    free(ref->device_uuid.data);
    ref->mem_handle = ref->event_handle = ref->device_uuid = (ProtobufCBinaryData){0, NULL};
}
void omni__cuda_imports_flush(void) {}

#endif
