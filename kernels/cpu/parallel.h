/* kernels/cpu/parallel.h - a tiny pthread pool for the CPU kernels.
 *
 * omni_parallel_for(n, fn, ctx) splits [0, n) into at most
 * omni_parallel_threads() contiguous ranges of near-equal length and runs
 * fn(ctx, begin, end) once per range, the calling thread taking the first
 * range, and returns when all ranges are done. The split depends only on n
 * and the thread count, so kernels that give each output element to exactly
 * one range produce identical results for any thread count.
 *
 * Threads: default = online CPUs; the environment variable OMNI_THREADS
 * overrides (read once, on first use); 1 means every call runs inline.
 * The pool is created lazily on the first call that needs it. Calls from
 * several threads are serialised; a nested call from inside fn runs inline.
 * A forked child starts with a fresh (empty) pool.
 */
#ifndef OMNI_KERNELS_CPU_PARALLEL_H
#define OMNI_KERNELS_CPU_PARALLEL_H

#include <stdint.h>

#include "omni/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*omni_parallel_fn)(void *ctx, int64_t begin, int64_t end);

/* Run fn over [0, n) split across the pool (see above). n <= 0: no call. */
OMNI_API void omni_parallel_for(int64_t n, omni_parallel_fn fn, void *ctx);

/* Number of ranges omni_parallel_for uses (>= 1). */
OMNI_API int omni_parallel_threads(void);

/* Override the thread count (n >= 1; n <= 0 restores the default: OMNI_THREADS
 * or the online CPUs). For tests and the CLI; not for use while another
 * thread is inside omni_parallel_for. */
OMNI_API void omni_parallel_set_threads(int n);

/* CPU instruction-set switch of the kernels: when on (the default) the
 * kernels that have AVX2+FMA(+F16C) variants use them on hosts that support
 * them; off forces the portable C loops everywhere (tests use it to cover
 * both paths). Results of the two paths differ in rounding only. */
OMNI_API void omni_cpu_set_simd(int on);
/* 1 when the AVX2 variants are in use now (switch on and the host has them). */
OMNI_API int omni_cpu_simd(void);

#ifdef __cplusplus
}
#endif
#endif
