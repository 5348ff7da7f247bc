/* kernels/cpu/parallel.c - the pthread pool behind omni_parallel_for.
 *
 * One job at a time: the caller publishes (fn, ctx, n, nranges) under a
 * mutex, bumps a generation counter and wakes the workers; worker i runs
 * range i (1 <= i < nranges), the caller runs range 0, then waits until the
 * pending count drops to zero. Workers are detached and live for the rest of
 * the process; they are created on demand up to threads-1. */
#include "cpu/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 256 /* more ranges than this buys nothing on any host we target */

static pthread_mutex_t g_call = PTHREAD_MUTEX_INITIALIZER; /* serialises callers */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;   /* job state below */
static pthread_cond_t g_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_done = PTHREAD_COND_INITIALIZER;
static int g_threads;  /* configured count; 0 = not read yet */
static int g_nworkers; /* worker threads started */
static int g_atfork;   /* fork handlers registered */
static uint64_t g_gen;
static int g_pending;
static omni_parallel_fn g_fn;
static void *g_ctx;
static int64_t g_n;
static int g_nranges;
static uint64_t g_start_gen[MAX_THREADS]; /* g_gen when worker i was created */
static _Thread_local int t_inside; /* inside a range: nested calls run inline */

static int default_threads(void)
{
    const char *s = getenv("OMNI_THREADS");
    if (s && *s) {
        long v = strtol(s, NULL, 10);
        if (v >= 1)
            return v > MAX_THREADS ? MAX_THREADS : (int)v;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1)
        c = 1;
    return c > MAX_THREADS ? MAX_THREADS : (int)c;
}

static void run_range(omni_parallel_fn fn, void *ctx, int64_t n, int nranges, int r)
{
    int64_t begin = n * r / nranges, end = n * (r + 1) / nranges;
    if (end > begin)
        fn(ctx, begin, end);
}

static void *worker_main(void *arg)
{
    int idx = (int)(intptr_t)arg; /* range index this worker runs, >= 1 */
    t_inside = 1;
    pthread_mutex_lock(&g_mu);
    /* Not g_gen: the first job may already be published when this runs. */
    uint64_t seen = g_start_gen[idx];
    for (;;) {
        while (g_gen == seen)
            pthread_cond_wait(&g_work, &g_mu);
        seen = g_gen;
        if (idx >= g_nranges)
            continue; /* not needed for this job */
        omni_parallel_fn fn = g_fn;
        void *ctx = g_ctx;
        int64_t n = g_n;
        int nranges = g_nranges;
        pthread_mutex_unlock(&g_mu);
        run_range(fn, ctx, n, nranges, idx);
        pthread_mutex_lock(&g_mu);
        if (--g_pending == 0)
            pthread_cond_signal(&g_done);
    }
    return NULL;
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_call);
    pthread_mutex_lock(&g_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_call);
}

static void atfork_child(void)
{
    /* The workers do not exist in the child: start over with none. */
    pthread_mutex_init(&g_call, NULL);
    pthread_mutex_init(&g_mu, NULL);
    pthread_cond_init(&g_work, NULL);
    pthread_cond_init(&g_done, NULL);
    g_nworkers = 0;
    g_pending = 0;
}

/* With g_call held: make sure workers 1..want-1 exist; returns the number of
 * ranges that can run (want, or fewer when thread creation failed). */
static int ensure_workers(int want)
{
    if (!g_atfork) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        g_atfork = 1;
    }
    while (g_nworkers < want - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        g_start_gen[g_nworkers + 1] = g_gen; /* g_gen only changes under g_call, held here */
        int rc = pthread_create(&th, &attr, worker_main, (void *)(intptr_t)(g_nworkers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        pthread_mutex_lock(&g_mu);
        g_nworkers++;
        pthread_mutex_unlock(&g_mu);
    }
    return g_nworkers + 1 < want ? g_nworkers + 1 : want;
}

int omni_parallel_threads(void)
{
    pthread_mutex_lock(&g_call);
    if (!g_threads)
        g_threads = default_threads();
    int n = g_threads;
    pthread_mutex_unlock(&g_call);
    return n;
}

void omni_parallel_set_threads(int n)
{
    pthread_mutex_lock(&g_call);
    g_threads = n >= 1 ? (n > MAX_THREADS ? MAX_THREADS : n) : default_threads();
    pthread_mutex_unlock(&g_call);
}

void omni_parallel_for(int64_t n, omni_parallel_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (t_inside || n == 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&g_call);
    if (!g_threads)
        g_threads = default_threads();
    int nranges = g_threads < n ? g_threads : (int)n;
    if (nranges > 1)
        nranges = ensure_workers(nranges);
    if (nranges <= 1) {
        pthread_mutex_unlock(&g_call);
        t_inside = 1;
        fn(ctx, 0, n);
        t_inside = 0;
        return;
    }
    pthread_mutex_lock(&g_mu);
    g_fn = fn;
    g_ctx = ctx;
    g_n = n;
    g_nranges = nranges;
    g_pending = nranges - 1;
    g_gen++;
    pthread_cond_broadcast(&g_work);
    pthread_mutex_unlock(&g_mu);

    t_inside = 1;
    run_range(fn, ctx, n, nranges, 0);
    t_inside = 0;

    pthread_mutex_lock(&g_mu);
    while (g_pending > 0)
        pthread_cond_wait(&g_done, &g_mu);
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_call);
}

static atomic_int g_simd_off;

void omni_cpu_set_simd(int on) { atomic_store(&g_simd_off, !on); }

int omni_cpu_simd(void)
{
    if (atomic_load(&g_simd_off))
        return 0;
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}
