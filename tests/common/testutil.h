/* tests/common/testutil.h - shared helpers for Check suites.
 *
 * - seeded random fills (never zeros) for parity tests;
 * - guarded host allocations: canary bytes before and after, checked later;
 * - error norms (max-abs relative to max|ref|, rel-RMS) and NaN checks;
 * - paths to shared data and build outputs.
 */
#ifndef OMNI_TESTUTIL_H
#define OMNI_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "omni/omni.h"

/* xorshift64* generator; a seed reproduces the stream. */
struct tu_rng { uint64_t s; };
void tu_rng_seed(struct tu_rng *r, uint64_t seed);
uint64_t tu_rng_u64(struct tu_rng *r);
float tu_rng_uniform(struct tu_rng *r, float lo, float hi); /* [lo, hi) */
float tu_rng_normal(struct tu_rng *r);
void tu_fill_uniform(struct tu_rng *r, float *x, size_t n, float lo, float hi);
void tu_fill_normal(struct tu_rng *r, float *x, size_t n, float scale);

/* Guarded allocation: n bytes with 256 canary bytes on each side. */
void *tu_guard_alloc(size_t n);
int tu_guard_ok(const void *p);          /* canaries intact? */
void tu_guard_free(void *p);

/* Error measures. */
double tu_max_abs_diff(const float *a, const float *b, size_t n);
double tu_max_abs(const float *a, size_t n);
double tu_rel_err(const float *got, const float *ref, size_t n);   /* max|d| / max(max|ref|, 1e-30) */
double tu_rel_rms(const float *got, const float *ref, size_t n);   /* ||d||2 / ||ref||2 */
int tu_has_nan(const float *x, size_t n);

/* Paths: shared data ($OMNI_SHARED or ../shared relative to the repo root),
 * the build dir ($OMNI_BUILD or build) and the repo root. Returned strings
 * are static buffers; copy them if you need two at once. */
const char *tu_shared_path(const char *rel);
const char *tu_build_path(const char *rel);
const char *tu_repo_path(const char *rel);
/* Temporary directory for this test (created, unique per process). */
const char *tu_tmpdir(void);

/* Assert no omni buffer leaked relative to a count taken earlier. */
#define TU_ASSERT_NO_LEAK(before) \
    ck_assert_msg(omni_buffer_live_count() == (before), "leaked %ld buffer(s)", omni_buffer_live_count() - (before))

#endif
