/* core/cuda.c - the CUDA backend's per-device context: one stream, one
 * cuBLAS handle with a fixed workspace, a fixed small scratch, a growable
 * prefill workspace, a device-side error record, and memory accounting.
 * Public API in omni/cuda.h, internal API in core/cuda_impl.h.
 *
 * Contexts are created on first use of a device, under a mutex, and live
 * until the process ends (the driver reclaims them). Pending errors are
 * thread-local: each thread's ops report their own failures. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "memlog.h"
#include "omni/cuda.h"

#ifdef OMNI_HAVE_CUDA
#include <pthread.h>
#include <stdatomic.h>

#define MAX_DEV 64
#define BLAS_WS_BYTES ((size_t)32 << 20)

struct cuda_ctx {
    int ready;  /* 1: usable, -1: creation failed */
    char fail[512];
    cudaStream_t stream;
    cublasHandle_t blas;
    cudaStream_t blas_stream; /* the stream the handle is bound to now */
    void *blas_ws;
    void *small_ws;
    void *ws;
    size_t ws_bytes;
    struct omni__cuda_deverr *deverr;
    struct omni_cuda_info info;
    int sync_each; /* OMNI_CUDA_SYNC=1 */
};

static struct cuda_ctx g_ctx[MAX_DEV];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_llong g_used[MAX_DEV], g_peak[MAX_DEV];
/* OMNI_CUDA_MEMLOG=1: the live allocations of each device (under g_memlog_lock) */
static int g_memlog_on = -1; /* -1: environment not read yet */
static pthread_mutex_t g_memlog_lock = PTHREAD_MUTEX_INITIALIZER;
static struct omni__memlog g_memlog[MAX_DEV];

static _Thread_local int tl_dev = -1;
static _Thread_local cudaStream_t tl_override[MAX_DEV];
static _Thread_local struct {
    int set;
    char msg[768];
} tl_pending;

static int memlog_on(void)
{
    int on = __atomic_load_n(&g_memlog_on, __ATOMIC_ACQUIRE);
    if (on < 0) {
        const char *v = getenv("OMNI_CUDA_MEMLOG");
        on = v && *v && strcmp(v, "0") != 0;
        __atomic_store_n(&g_memlog_on, on, __ATOMIC_RELEASE);
    }
    return on;
}

void omni__cuda_account(int idx, long long delta, const void *ptr)
{
    if (idx < 0 || idx >= MAX_DEV)
        return;
    if (ptr && memlog_on()) {
        pthread_mutex_lock(&g_memlog_lock);
        if (delta >= 0)
            omni__memlog_alloc(&g_memlog[idx], ptr, (size_t)delta, omni__alloc_tag());
        else
            omni__memlog_free(&g_memlog[idx], ptr, (size_t)-delta);
        pthread_mutex_unlock(&g_memlog_lock);
    }
    long long now = atomic_fetch_add(&g_used[idx], delta) + delta;
    long long peak = atomic_load(&g_peak[idx]);
    while (now > peak && !atomic_compare_exchange_weak(&g_peak[idx], &peak, now)) {
    }
}

static void pending_set(const char *file, int line, const char *fmt, va_list ap)
{
    if (tl_pending.set)
        return;
    int n = vsnprintf(tl_pending.msg, sizeof tl_pending.msg, fmt, ap);
    if (n >= 0 && (size_t)n < sizeof tl_pending.msg)
        snprintf(tl_pending.msg + n, sizeof tl_pending.msg - (size_t)n, " (%s:%d)", file, line);
    tl_pending.set = 1;
}

void omni__cuda_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pending_set(file, line, fmt, ap);
    va_end(ap);
}

int omni__cuda_check(int ce, const char *expr, const char *file, int line)
{
    if (ce == (int)cudaSuccess)
        return 0;
    omni__cuda_fail(file, line, "%s failed: %s (%s)", expr, cudaGetErrorString((cudaError_t)ce),
                    cudaGetErrorName((cudaError_t)ce));
    return -1;
}

static const char *cublas_name(int st)
{
    switch (st) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

int omni__cublas_check(int st, const char *expr, const char *file, int line)
{
    if (st == (int)CUBLAS_STATUS_SUCCESS)
        return 0;
    omni__cuda_fail(file, line, "%s failed: %s (%d)", expr, cublas_name(st), st);
    return -1;
}

static int env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* Create the context of device idx (g_lock held). */
static void ctx_create(int idx)
{
    struct cuda_ctx *c = &g_ctx[idx];
    cudaError_t ce;
    int prev = -1;
    const char *what = "";
    cudaGetDevice(&prev);
#define STEP(expr)                                                                                 \
    do {                                                                                           \
        what = #expr;                                                                              \
        if ((ce = (expr)) != cudaSuccess)                                                          \
            goto fail;                                                                             \
    } while (0)
    STEP(cudaSetDevice(idx));
    struct cudaDeviceProp prop;
    STEP(cudaGetDeviceProperties(&prop, idx));
    snprintf(c->info.name, sizeof c->info.name, "%s", prop.name);
    c->info.major = prop.major;
    c->info.minor = prop.minor;
    c->info.sm_count = prop.multiProcessorCount;
    c->info.total_mem = prop.totalGlobalMem;
    c->info.l2_bytes = (size_t)prop.l2CacheSize;
    c->info.allow_tf32 = env_on("OMNI_ALLOW_TF32");
    c->sync_each = env_on("OMNI_CUDA_SYNC");
    /* a blocking stream: it orders with the legacy default stream */
    STEP(cudaStreamCreate(&c->stream));
    STEP(cudaMalloc(&c->blas_ws, BLAS_WS_BYTES));
    STEP(cudaMalloc(&c->small_ws, OMNI__CUDA_SMALL_WS));
    STEP(cudaMalloc((void **)&c->deverr, sizeof *c->deverr));
    STEP(cudaMemset(c->deverr, 0, sizeof *c->deverr));
    {
        const char *prev_tag = omni__alloc_tag_set("context");
        omni__cuda_account(idx, (long long)(BLAS_WS_BYTES + OMNI__CUDA_SMALL_WS + sizeof *c->deverr),
                           c->blas_ws);
        omni__alloc_tag_set(prev_tag);
    }
    {
        cublasStatus_t st = cublasCreate(&c->blas);
        if (st == CUBLAS_STATUS_SUCCESS)
            st = cublasSetStream(c->blas, c->stream);
        if (st == CUBLAS_STATUS_SUCCESS)
            st = cublasSetWorkspace(c->blas, c->blas_ws, BLAS_WS_BYTES);
        /* f32 GEMMs pick their compute type per call (CUBLAS_COMPUTE_32F, or
         * _FAST_TF32 when allowed); the handle itself never rounds to TF32 */
        if (st == CUBLAS_STATUS_SUCCESS)
            st = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
        if (st != CUBLAS_STATUS_SUCCESS) {
            snprintf(c->fail, sizeof c->fail, "cuBLAS setup on cuda:%d failed: %s", idx,
                     cublas_name((int)st));
            c->ready = -1;
            goto out;
        }
    }
    c->blas_stream = c->stream;
    c->ready = 1;
    goto out;
fail:
    snprintf(c->fail, sizeof c->fail, "CUDA setup of cuda:%d failed at %s: %s", idx, what,
             cudaGetErrorString(ce));
    cudaGetLastError();
    c->ready = -1;
out:
    if (prev >= 0 && prev != idx)
        cudaSetDevice(prev);
#undef STEP
}

/* The ready context of device idx, or NULL with msg filled. */
static struct cuda_ctx *ctx_get(int idx, char *msg, size_t n)
{
    if (idx < 0 || idx >= MAX_DEV) {
        snprintf(msg, n, "cuda:%d is outside the supported range 0..%d", idx, MAX_DEV - 1);
        return NULL;
    }
    struct cuda_ctx *c = &g_ctx[idx];
    if (!__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE)) {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess) {
            cudaGetLastError();
            count = 0;
        }
        if (idx >= count) {
            snprintf(msg, n, "cuda:%d is not available (%d CUDA device%s found)", idx, count,
                     count == 1 ? "" : "s");
            return NULL;
        }
        pthread_mutex_lock(&g_lock);
        if (!c->ready)
            ctx_create(idx);
        pthread_mutex_unlock(&g_lock);
    }
    if (c->ready < 0) {
        snprintf(msg, n, "%s", c->fail);
        return NULL;
    }
    return c;
}

static cudaStream_t stream_of(int idx)
{
    return tl_override[idx] ? tl_override[idx] : g_ctx[idx].stream;
}

int omni__cuda_begin(struct omni_error *err, const char *op, struct omni_device dev)
{
    char msg[512];
    if (dev.type != OMNI_DEVICE_CUDA)
        return omni_error_set(err, OMNI_EDEVICE, "%s: not a CUDA device", op);
    struct cuda_ctx *c = ctx_get(dev.index, msg, sizeof msg);
    if (!c)
        return omni_error_set(err, OMNI_EDEVICE, "%s: %s", op, msg);
    if (tl_dev != dev.index) {
        cudaError_t ce = cudaSetDevice(dev.index);
        if (ce != cudaSuccess) {
            cudaGetLastError();
            return omni_error_set(err, OMNI_ECUDA, "%s: cudaSetDevice(%d) failed: %s", op,
                                  dev.index, cudaGetErrorString(ce));
        }
        tl_dev = dev.index;
    }
    tl_pending.set = 0;
    return OMNI_OK;
}

/* Read and clear the device error record of ctx idx (stream idle). */
static int take_deverr(int idx, struct omni_error *err, const char *op)
{
    struct omni__cuda_deverr r;
    struct cuda_ctx *c = &g_ctx[idx];
    cudaError_t ce = cudaMemcpy(&r, c->deverr, sizeof r, cudaMemcpyDeviceToHost);
    if (ce != cudaSuccess) {
        cudaGetLastError();
        return omni_error_set(err, OMNI_ECUDA, "%s: reading the device error record failed: %s",
                              op, cudaGetErrorString(ce));
    }
    if (r.code == OMNI__DEVERR_NONE)
        return OMNI_OK;
    cudaMemset(c->deverr, 0, sizeof *c->deverr);
    switch (r.code) {
    case OMNI__DEVERR_EMBED_RANGE:
        if (r.a < 0) /* omni_op_embedding_add */
            return omni_error_set(err, OMNI_ERANGE,
                                  "%s: omni_op_embedding_add on cuda:%d: index %lld is outside "
                                  "[0, V=%lld) of the table (nothing was added)",
                                  op, idx, r.b, r.c);
        return omni_error_set(err, OMNI_ERANGE,
                              "%s: omni_op_embedding on cuda:%d: id %lld at index %lld of ids is "
                              "outside [0, V=%lld) of the table",
                              op, idx, r.b, r.a, r.c);
    default:
        return omni_error_set(err, OMNI_EINTERNAL, "%s: unknown device error code %d", op, r.code);
    }
}

static int sync_and_check(int idx, struct omni_error *err, const char *op)
{
    cudaError_t ce = cudaStreamSynchronize(stream_of(idx));
    if (ce == cudaSuccess)
        ce = cudaGetLastError();
    if (ce != cudaSuccess) {
        cudaGetLastError();
        return omni_error_set(err, OMNI_ECUDA, "%s: cuda:%d: %s (%s)", op, idx,
                              cudaGetErrorString(ce), cudaGetErrorName(ce));
    }
    return take_deverr(idx, err, op);
}

int omni__cuda_end(struct omni_error *err, const char *op)
{
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess)
        omni__cuda_check((int)ce, "kernel launch", __FILE__, __LINE__);
    if (tl_pending.set) {
        tl_pending.set = 0;
        return omni_error_set(err, OMNI_ECUDA, "%s: %s", op, tl_pending.msg);
    }
    if (tl_dev >= 0 && g_ctx[tl_dev].sync_each) {
        enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        cudaStreamIsCapturing(stream_of(tl_dev), &cs);
        if (cs == cudaStreamCaptureStatusNone)
            return sync_and_check(tl_dev, err, op);
    }
    return OMNI_OK;
}

cudaStream_t omni__cuda_cur_stream(void) { return tl_dev >= 0 ? stream_of(tl_dev) : 0; }

cublasHandle_t omni__cuda_blas(void)
{
    if (tl_dev < 0)
        return NULL;
    struct cuda_ctx *c = &g_ctx[tl_dev];
    cudaStream_t s = stream_of(tl_dev);
    /* one handle per device: rebinding follows the thread's current stream */
    if (c->blas_stream != s) {
        if (OMNI_CUBLAS_CHECK(cublasSetStream(c->blas, s)))
            return NULL;
        c->blas_stream = s;
    }
    return c->blas;
}

int omni__cuda_allow_tf32(void) { return tl_dev >= 0 ? g_ctx[tl_dev].info.allow_tf32 : 0; }
int omni__cuda_sm_count(void) { return tl_dev >= 0 ? g_ctx[tl_dev].info.sm_count : 1; }

void *omni__cuda_small_ws(size_t bytes)
{
    if (tl_dev < 0 || bytes > OMNI__CUDA_SMALL_WS)
        return NULL;
    return g_ctx[tl_dev].small_ws;
}

static int ws_grow(int idx, size_t bytes)
{
    struct cuda_ctx *c = &g_ctx[idx];
    if (bytes <= c->ws_bytes)
        return 0;
    cudaStream_t s = stream_of(idx);
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(s, &cs);
    if (cs != cudaStreamCaptureStatusNone) {
        omni__cuda_fail(__FILE__, __LINE__,
                        "the workspace of cuda:%d must grow from %zu to %zu bytes during graph "
                        "capture (run the prefill first or call omni_cuda_reserve)",
                        idx, c->ws_bytes, bytes);
        return -1;
    }
    size_t want = bytes + bytes / 4;
    want = (want + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (OMNI_CUDA_CHECK(cudaStreamSynchronize(s)))
        return -1;
    if (c->ws) {
        cudaFree(c->ws);
        omni__cuda_account(idx, -(long long)c->ws_bytes, c->ws);
        c->ws = NULL;
        c->ws_bytes = 0;
    }
    if (OMNI_CUDA_CHECK(cudaMalloc(&c->ws, want))) {
        c->ws = NULL;
        return -1;
    }
    c->ws_bytes = want;
    const char *prev_tag = omni__alloc_tag_set("workspace");
    omni__cuda_account(idx, (long long)want, c->ws);
    omni__alloc_tag_set(prev_tag);
    return 0;
}

void *omni__cuda_workspace(size_t bytes)
{
    if (tl_dev < 0)
        return NULL;
    if (ws_grow(tl_dev, bytes ? bytes : 1))
        return NULL;
    return g_ctx[tl_dev].ws;
}

struct omni__cuda_deverr *omni__cuda_deverr(void)
{
    return tl_dev >= 0 ? g_ctx[tl_dev].deverr : NULL;
}

/* ---- public API ------------------------------------------------------------ */

int omni_cuda_synchronize(struct omni_device dev, struct omni_error *err)
{
    static const char op[] = "omni_cuda_synchronize";
    int rc = omni__cuda_begin(err, op, dev);
    if (rc)
        return rc;
    return sync_and_check(dev.index, err, op);
}

void *omni_cuda_stream(struct omni_device dev)
{
    char msg[512];
    if (dev.type != OMNI_DEVICE_CUDA || !ctx_get(dev.index, msg, sizeof msg))
        return NULL;
    return (void *)stream_of(dev.index);
}

void *omni_cuda_set_stream(struct omni_device dev, void *stream)
{
    if (dev.type != OMNI_DEVICE_CUDA || dev.index < 0 || dev.index >= MAX_DEV)
        return NULL;
    void *prev = (void *)tl_override[dev.index];
    tl_override[dev.index] = (cudaStream_t)stream;
    return prev;
}

int omni_cuda_device_info(struct omni_device dev, struct omni_cuda_info *info,
                          struct omni_error *err)
{
    char msg[512];
    struct cuda_ctx *c = dev.type == OMNI_DEVICE_CUDA ? ctx_get(dev.index, msg, sizeof msg) : NULL;
    if (!c)
        return omni_error_set(err, OMNI_EDEVICE, "omni_cuda_device_info: %s",
                              dev.type == OMNI_DEVICE_CUDA ? msg : "not a CUDA device");
    *info = c->info;
    return OMNI_OK;
}

size_t omni_cuda_memory_used(struct omni_device dev)
{
    if (dev.type != OMNI_DEVICE_CUDA || dev.index < 0 || dev.index >= MAX_DEV)
        return 0;
    long long v = atomic_load(&g_used[dev.index]);
    return v > 0 ? (size_t)v : 0;
}

size_t omni_cuda_memory_peak(struct omni_device dev)
{
    if (dev.type != OMNI_DEVICE_CUDA || dev.index < 0 || dev.index >= MAX_DEV)
        return 0;
    long long v = atomic_load(&g_peak[dev.index]);
    return v > 0 ? (size_t)v : 0;
}

void omni_cuda_memory_reset_peak(struct omni_device dev)
{
    if (dev.type != OMNI_DEVICE_CUDA || dev.index < 0 || dev.index >= MAX_DEV)
        return;
    atomic_store(&g_peak[dev.index], atomic_load(&g_used[dev.index]));
    if (memlog_on()) {
        pthread_mutex_lock(&g_memlog_lock);
        omni__memlog_reset_peak(&g_memlog[dev.index]);
        pthread_mutex_unlock(&g_memlog_lock);
    }
}

int omni_cuda_memory_peak_log(struct omni_device dev, struct omni_cuda_memlog_entry *out, int n)
{
    if (dev.type != OMNI_DEVICE_CUDA || dev.index < 0 || dev.index >= MAX_DEV || !out ||
        n <= 0 || !memlog_on())
        return 0;
    pthread_mutex_lock(&g_memlog_lock);
    int k = omni__memlog_report(&g_memlog[dev.index], out, n);
    pthread_mutex_unlock(&g_memlog_lock);
    return k;
}

int omni_cuda_reserve(struct omni_device dev, size_t bytes, struct omni_error *err)
{
    static const char op[] = "omni_cuda_reserve";
    int rc = omni__cuda_begin(err, op, dev);
    if (rc)
        return rc;
    ws_grow(dev.index, bytes);
    return omni__cuda_end(err, op);
}

#else /* !OMNI_HAVE_CUDA */

static int no_cuda(struct omni_error *err, const char *fn)
{
    return omni_error_set(err, OMNI_EDEVICE, "%s: omni was built without CUDA", fn);
}

int omni_cuda_synchronize(struct omni_device dev, struct omni_error *err)
{
    (void)dev;
    return no_cuda(err, "omni_cuda_synchronize");
}
void *omni_cuda_stream(struct omni_device dev)
{
    (void)dev;
    return NULL;
}
void *omni_cuda_set_stream(struct omni_device dev, void *stream)
{
    (void)dev, (void)stream;
    return NULL;
}
int omni_cuda_device_info(struct omni_device dev, struct omni_cuda_info *info,
                          struct omni_error *err)
{
    (void)dev, (void)info;
    return no_cuda(err, "omni_cuda_device_info");
}
size_t omni_cuda_memory_used(struct omni_device dev)
{
    (void)dev;
    return 0;
}
size_t omni_cuda_memory_peak(struct omni_device dev)
{
    (void)dev;
    return 0;
}
void omni_cuda_memory_reset_peak(struct omni_device dev) { (void)dev; }
int omni_cuda_memory_peak_log(struct omni_device dev, struct omni_cuda_memlog_entry *out, int n)
{
    (void)dev, (void)out, (void)n;
    return 0;
}
int omni_cuda_reserve(struct omni_device dev, size_t bytes, struct omni_error *err)
{
    (void)dev, (void)bytes;
    return no_cuda(err, "omni_cuda_reserve");
}

#endif
