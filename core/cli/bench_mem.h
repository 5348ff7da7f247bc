/* core/cli/bench_mem.h - device memory by phase for `omni bench`: for each
 * phase of a case (open, warm-up, prefill, decode, VQ, ...) the memory omni
 * held when it began and the most it held during it; the case's peak is the
 * largest phase peak. The counters come from a source (omni_cuda_memory_*
 * for a device; the tests pass their own). */
#ifndef OMNI_CLI_BENCH_MEM_H
#define OMNI_CLI_BENCH_MEM_H

#include <stddef.h>

#include "omni/cuda.h"

#define OMB_MEM_PHASES 10
#define OMB_MEM_LOG 12 /* groups kept from OMNI_CUDA_MEMLOG at the peak */

struct omb_mem_src {
    size_t (*used)(void *user);
    size_t (*peak)(void *user); /* the most held since the last reset */
    void (*reset)(void *user);  /* peak = used */
    /* the live allocations at the peak since the last reset (may be NULL) */
    int (*log)(void *user, struct omni_cuda_memlog_entry *out, int n);
    void *user;
};

struct omb_mem_phase {
    char name[16];
    size_t start, peak;
};

struct omb_mem {
    struct omb_mem_src src;
    struct omni_device dev; /* for the device source */
    int n, open;            /* phases begun; whether the last one is still open */
    struct omb_mem_phase p[OMB_MEM_PHASES];
    int peak_phase;         /* index of the phase with the largest peak, -1 none */
    struct omni_cuda_memlog_entry log[OMB_MEM_LOG];
    int n_log;              /* entries of log (the peak phase's), 0 without the log */
};

/* Phases of device dev (a CPU device reads 0 everywhere). */
void omb_mem_init(struct omb_mem *m, struct omni_device dev);
/* Phases read from src (copied). */
void omb_mem_init_src(struct omb_mem *m, const struct omb_mem_src *src);
/* End the open phase (if any) and begin `name`: its start is the memory held
 * now, and the source's peak is reset. Past OMB_MEM_PHASES phases the last
 * one goes on under its own name. */
void omb_mem_phase(struct omb_mem *m, const char *name);
/* End the open phase (its peak is read; nothing is reset). */
void omb_mem_end(struct omb_mem *m);
/* The largest peak of the phases so far (an open phase's peak read now). */
size_t omb_mem_peak(const struct omb_mem *m);
/* "open 0.04/3.05, warmup 3.05/4.92, ..." (GiB, start/peak); returns buf. */
const char *omb_mem_line(const struct omb_mem *m, char *buf, size_t n);
/* "mamba2 48 x 33.2 MiB, ..." from the log at the peak, largest first, at
 * most k groups; "" without the log. Returns buf. */
const char *omb_mem_log_line(const struct omb_mem *m, int k, char *buf, size_t n);

#endif
