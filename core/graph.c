/* CUDA graphs for the generation loop: capture a run of graph-safe stages
 * once, replay it per token; device counters and on-device token collection
 * so that a loop without stop ids needs no host round trip per token. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"

/* The CUDA backend's stream API (omni/cuda.h, core/cuda.c), referenced weakly
 * so that this file builds and links whether or not that backend is in the
 * build; without it graphs report OMNI_EDEVICE. */
void *omni_cuda_stream(struct omni_device dev) __attribute__((weak));
void *omni_cuda_set_stream(struct omni_device dev, void *stream) __attribute__((weak));

#ifdef OMNI_HAVE_CUDA
#include <cuda_runtime_api.h>

#define CK(expr)                                                                              \
    do {                                                                                      \
        cudaError_t e_ = (expr);                                                              \
        if (e_ != cudaSuccess)                                                                \
            return omni_error_set(err, OMNI_ECUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #expr, \
                                  cudaGetErrorString(e_));                                    \
    } while (0)

int omni__graph_begin(struct omni_device dev, void **capture_stream, struct omni_error *err)
{
    cudaStream_t s;
    if (!omni_cuda_stream || !omni_cuda_set_stream)
        return omni_error_set(err, OMNI_EDEVICE, "CUDA graphs need the CUDA backend (core/cuda.c)");
    CK(cudaSetDevice(dev.index));
    /* the device's own stream must be idle and ordered before the capture */
    void *own = omni_cuda_stream(dev);
    if (!own)
        return omni_error_set(err, OMNI_EDEVICE, "cuda:%d is not usable", dev.index);
    CK(cudaStreamSynchronize((cudaStream_t)own));
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    omni_cuda_set_stream(dev, s);
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        omni_cuda_set_stream(dev, NULL);
        cudaStreamDestroy(s);
        return omni_error_set(err, OMNI_ECUDA, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
    }
    *capture_stream = s;
    return OMNI_OK;
}

int omni__graph_end(struct omni_device dev, void *capture_stream, void **exec, struct omni_error *err)
{
    int updated;
    return omni__graph_end_update(dev, capture_stream, NULL, exec, &updated, err);
}

int omni__graph_end_update(struct omni_device dev, void *capture_stream, void *cached, void **exec,
                           int *updated, struct omni_error *err)
{
    cudaStream_t s = capture_stream;
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    *exec = NULL;
    *updated = 0;
    cudaError_t e = cudaStreamEndCapture(s, &g);
    omni_cuda_set_stream(dev, NULL);
    cudaStreamDestroy(s);
    if (e != cudaSuccess || !g) {
        cudaGetLastError();
        return omni_error_set(err, OMNI_ECUDA, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    }
    if (cached) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate((cudaGraphExec_t)cached, g, &info) == cudaSuccess) {
            cudaGraphDestroy(g);
            *exec = cached;
            *updated = 1;
            return OMNI_OK;
        }
        cudaGetLastError(); /* another topology: instantiate */
    }
    e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return omni_error_set(err, OMNI_ECUDA, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    *exec = x;
    return OMNI_OK;
}

void omni__graph_abort(struct omni_device dev, void *capture_stream)
{
    cudaGraph_t g = NULL;
    cudaStreamEndCapture((cudaStream_t)capture_stream, &g);
    if (g)
        cudaGraphDestroy(g);
    omni_cuda_set_stream(dev, NULL);
    cudaStreamDestroy((cudaStream_t)capture_stream);
    cudaGetLastError();
}

int omni__graph_launch(struct omni_device dev, void *exec, struct omni_error *err)
{
    if (!omni_cuda_stream)
        return omni_error_set(err, OMNI_EDEVICE, "CUDA graphs need the CUDA backend (core/cuda.c)");
    CK(cudaGraphLaunch((cudaGraphExec_t)exec, (cudaStream_t)omni_cuda_stream(dev)));
    return OMNI_OK;
}

void omni__graph_free(void *exec)
{
    if (exec)
        cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

struct omni__lag {
    struct omni_device dev;
    int slots;
    int64_t rows;
    int32_t *host;         /* pinned [slots][rows] */
    cudaEvent_t *ev;       /* one per slot */
    int64_t *index;        /* step held by each slot, -1 when none */
};

void omni__lag_free(struct omni__lag *l)
{
    if (!l)
        return;
    if (l->ev) {
        for (int i = 0; i < l->slots; i++)
            if (l->ev[i]) {
                cudaEventSynchronize(l->ev[i]); /* no copy may still write the ring */
                cudaEventDestroy(l->ev[i]);
            }
    }
    if (l->host)
        cudaFreeHost(l->host);
    free(l->ev);
    free(l->index);
    free(l);
}

int omni__lag_new(struct omni_device dev, int slots, int64_t rows, struct omni__lag **out,
                  struct omni_error *err)
{
    *out = NULL;
    if (!omni_cuda_stream)
        return omni_error_set(err, OMNI_EDEVICE, "lagged stop checks need the CUDA backend (core/cuda.c)");
    struct omni__lag *l = calloc(1, sizeof *l);
    if (!l || !(l->ev = calloc((size_t)slots, sizeof *l->ev)) ||
        !(l->index = malloc((size_t)slots * sizeof *l->index))) {
        omni__lag_free(l);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    l->dev = dev, l->slots = slots, l->rows = rows;
    for (int i = 0; i < slots; i++)
        l->index[i] = -1;
    cudaError_t e = cudaMallocHost((void **)&l->host, (size_t)slots * (size_t)rows * sizeof *l->host);
    for (int i = 0; e == cudaSuccess && i < slots; i++)
        e = cudaEventCreateWithFlags(&l->ev[i], cudaEventDisableTiming);
    if (e != cudaSuccess) {
        omni__lag_free(l);
        cudaGetLastError();
        return omni_error_set(err, OMNI_ECUDA, "lagged stop checks: %s", cudaGetErrorString(e));
    }
    *out = l;
    return OMNI_OK;
}

int omni__lag_push(struct omni__lag *l, int64_t index, const void *src, int64_t src_ld,
                   struct omni_error *err)
{
    const int k = (int)(index % l->slots);
    cudaStream_t s = (cudaStream_t)omni_cuda_stream(l->dev);
    CK(cudaMemcpy2DAsync(l->host + (size_t)k * (size_t)l->rows, 4, src, (size_t)src_ld * 4, 4,
                         (size_t)l->rows, cudaMemcpyDeviceToHost, s));
    CK(cudaEventRecord(l->ev[k], s));
    l->index[k] = index;
    return OMNI_OK;
}

int omni__lag_read(struct omni__lag *l, int64_t index, const int32_t **host, struct omni_error *err)
{
    const int k = (int)(index % l->slots);
    if (l->index[k] != index)
        return omni_error_set(err, OMNI_EINTERNAL, "lagged stop check: step %lld is no longer held",
                              (long long)index);
    CK(cudaEventSynchronize(l->ev[k]));
    *host = l->host + (size_t)k * (size_t)l->rows;
    return OMNI_OK;
}

/* The counters' pinned source ring, one per device: a queued copy reads its slot when it
 * runs, so a slot is rewritten only after the copy that last read it has completed (the
 * slot's event). The host waits only when it runs more than SET_RING steps ahead of the
 * device: a loop without stop ids queues every step at once (255 T2I steps), and with 64
 * slots and no wait, steps 64 apart shared a source and a late copy read a newer value
 * (the wrong position: T2I codes differed between graphs on and off). */
#define SET_RING 64
#define SET_DEVICES 16
static struct set_ring {
    int64_t *v; /* [SET_RING][2] pinned */
    cudaEvent_t ev[SET_RING];
    int next;
} set_rings[SET_DEVICES];
static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;

static int set_i64x2_locked(struct set_ring *r, struct omni_device dev, int64_t *dst, int64_t a,
                            int64_t b, struct omni_error *err)
{
    CK(cudaSetDevice(dev.index));
    if (!r->v)
        CK(cudaMallocHost((void **)&r->v, SET_RING * 2 * sizeof *r->v));
    const int i = r->next;
    if (!r->ev[i])
        CK(cudaEventCreateWithFlags(&r->ev[i], cudaEventDisableTiming));
    else
        CK(cudaEventSynchronize(r->ev[i])); /* the copy that read this slot last has run */
    int64_t *src = r->v + 2 * i;
    src[0] = a;
    src[1] = b;
    cudaStream_t s = (cudaStream_t)omni_cuda_stream(dev);
    CK(cudaMemcpyAsync(dst, src, 2 * sizeof *src, cudaMemcpyHostToDevice, s));
    CK(cudaEventRecord(r->ev[i], s));
    r->next = (i + 1) % SET_RING;
    return OMNI_OK;
}

int omni__graph_set_i64x2(struct omni_device dev, int64_t *dst, int64_t a, int64_t b, struct omni_error *err)
{
    if (!omni_cuda_stream)
        return omni_error_set(err, OMNI_EDEVICE, "device counters need the CUDA backend (core/cuda.c)");
    if (dev.index < 0 || dev.index >= SET_DEVICES)
        return omni_error_set(err, OMNI_EDEVICE, "device counters: cuda:%d is past the %d devices they serve",
                              dev.index, SET_DEVICES);
    pthread_mutex_lock(&set_mu);
    int rc = set_i64x2_locked(&set_rings[dev.index], dev, dst, a, b, err);
    pthread_mutex_unlock(&set_mu);
    return rc;
}

int omni__graph_sync(struct omni_device dev, struct omni_error *err)
{
    if (!omni_cuda_stream)
        return omni_error_set(err, OMNI_EDEVICE, "the CUDA backend is not in this build (core/cuda.c)");
    void *s = omni_cuda_stream(dev);
    if (!s)
        return omni_error_set(err, OMNI_EDEVICE, "cuda:%d is not usable", dev.index);
    CK(cudaStreamSynchronize((cudaStream_t)s));
    return OMNI_OK;
}

int omni__graph_copy_column(struct omni_device dev, void *dst, int64_t ld, int64_t col, const void *src,
                            int64_t src_ld, int64_t rows, struct omni_error *err)
{
    if (!omni_cuda_stream)
        return omni_error_set(err, OMNI_EDEVICE, "device token collection needs the CUDA backend (core/cuda.c)");
    CK(cudaMemcpy2DAsync((char *)dst + col * 4, (size_t)ld * 4, src, (size_t)src_ld * 4, 4, (size_t)rows,
                         cudaMemcpyDeviceToDevice, (cudaStream_t)omni_cuda_stream(dev)));
    return OMNI_OK;
}

#else /* no CUDA */

#define NO_CUDA return omni_error_set(err, OMNI_EDEVICE, "omni was built without CUDA")

int omni__graph_begin(struct omni_device dev, void **s, struct omni_error *err) { NO_CUDA; }
int omni__graph_end(struct omni_device dev, void *s, void **x, struct omni_error *err) { *x = NULL; NO_CUDA; }
int omni__graph_end_update(struct omni_device dev, void *s, void *c, void **x, int *u, struct omni_error *err)
{
    *x = NULL, *u = 0;
    NO_CUDA;
}
void omni__graph_abort(struct omni_device dev, void *s) {}
int omni__graph_launch(struct omni_device dev, void *x, struct omni_error *err) { NO_CUDA; }
void omni__graph_free(void *x) {}
int omni__graph_set_i64x2(struct omni_device dev, int64_t *d, int64_t a, int64_t b, struct omni_error *err) { NO_CUDA; }
int omni__graph_sync(struct omni_device dev, struct omni_error *err) { NO_CUDA; }
int omni__graph_copy_column(struct omni_device dev, void *d, int64_t ld, int64_t c, const void *s, int64_t sl,
                            int64_t r, struct omni_error *err) { NO_CUDA; }
int omni__lag_new(struct omni_device dev, int slots, int64_t rows, struct omni__lag **out,
                  struct omni_error *err) { *out = NULL; NO_CUDA; }
int omni__lag_push(struct omni__lag *l, int64_t index, const void *src, int64_t src_ld,
                   struct omni_error *err) { NO_CUDA; }
int omni__lag_read(struct omni__lag *l, int64_t index, const int32_t **host, struct omni_error *err) { NO_CUDA; }
void omni__lag_free(struct omni__lag *l) { (void)l; }
#endif
