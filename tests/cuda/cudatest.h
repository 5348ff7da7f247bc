/* tests/cuda/cudatest.h - helpers for the GPU suites (header only):
 * the device gate (skip without a device unless OMNI_REQUIRE_CUDA is set),
 * guarded device tensors (GUARD bytes after the data, filled with 0xA5 and
 * checked after the op; outputs start as 0xFF bytes = NaN so an element the
 * op forgets shows up), host<->device copies, and comparison with NaN
 * checks. Host tensors come from tests/kernels/ktest.h (guarded too). */
#ifndef OMNI_TESTS_CUDATEST_H
#define OMNI_TESTS_CUDATEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kernels/ktest.h"
#include "omni/cuda.h"
#include "omni/omni.h"
#include "testutil.h"

#ifdef OMNI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define CT_GUARD 4096

static const struct omni_device CT_DEV = {OMNI_DEVICE_CUDA, 0};

/* CUDA cannot be used in a child forked after the parent initialised it, and
 * the suites run each test in a forked child (CK_FORK): the parent counts
 * the devices in a probe child and never touches CUDA itself. */
static inline int ct_device_count(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        int n = omni_cuda_device_count();
        _exit(n > 100 ? 100 : n);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return 0;
    return WEXITSTATUS(st);
}

/* 0: run the suite; 1: exit now with *status (no device). */
static inline int ct_gate(const char *suite, int *status)
{
    int n = ct_device_count();
    if (n > 0)
        return 0;
    const char *req = getenv("OMNI_REQUIRE_CUDA");
    if (req && *req && strcmp(req, "0") != 0) {
        fprintf(stderr, "%s: FAILED: OMNI_REQUIRE_CUDA is set but no CUDA device is usable%s\n",
                suite,
#ifdef OMNI_HAVE_CUDA
                ""
#else
                " (omni was built without CUDA)"
#endif
        );
        *status = 1;
    } else {
        printf("%s: skipped: no CUDA device (set OMNI_REQUIRE_CUDA=1 to make this a failure)\n",
               suite);
        *status = 0;
    }
    return 1;
}

#ifdef OMNI_HAVE_CUDA

#define CT_CUDA(expr)                                                                              \
    do {                                                                                           \
        cudaError_t ce_ = (expr);                                                                  \
        ck_assert_msg(ce_ == cudaSuccess, "%s: %s", #expr, cudaGetErrorString(ce_));               \
    } while (0)

#define CT_OK(expr)                                                                                \
    do {                                                                                           \
        struct omni_error e_ = {0};                                                                \
        (void)e_;                                                                                  \
        int rc_ = (expr);                                                                          \
        ck_assert_msg(rc_ == OMNI_OK, "%s -> %s", #expr, omni_status_name(rc_));                   \
    } while (0)

static inline void ct_sync(void)
{
    struct omni_error e = {0};
    int rc = omni_cuda_synchronize(CT_DEV, &e);
    ck_assert_msg(rc == OMNI_OK, "omni_cuda_synchronize: %s", e.msg);
}

/* A contiguous device tensor with CT_GUARD guard bytes after its data; the
 * data starts as 0xFF bytes (NaN for floats). */
static inline void ct_dalloc(struct omni_tensor *t, int dtype, int ndim, const int64_t *shape)
{
    struct omni_error e = {0};
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    size_t bytes = (size_t)n * omni_dtype_size(dtype);
    struct omni_buffer *b = omni_buffer_new(CT_DEV, bytes + CT_GUARD, &e);
    ck_assert_msg(b != NULL, "device buffer of %zu bytes: %s", bytes, e.msg);
    char *p = omni_buffer_data(b);
    CT_CUDA(cudaMemset(p, 0xff, bytes));
    CT_CUDA(cudaMemset(p + bytes, 0xa5, CT_GUARD));
    ck_assert_int_eq(omni_tensor_view(t, b, 0, dtype, ndim, shape, &e), OMNI_OK);
    omni_buffer_unref(b);
}

/* Device copy of the contiguous host tensor h (same shape and dtype), guarded. */
static inline void ct_up(struct omni_tensor *d, const struct omni_tensor *h)
{
    ck_assert(omni_tensor_is_contiguous(h));
    ct_dalloc(d, h->dtype, h->ndim, h->shape);
    CT_CUDA(cudaMemcpy(omni_tensor_data(d), omni_tensor_data(h), omni_tensor_nbytes(h),
                       cudaMemcpyHostToDevice));
}

/* The guard bytes after d's data are untouched. */
static inline void ct_guard_check(const struct omni_tensor *d, const char *what)
{
    unsigned char g[CT_GUARD];
    const char *p = (const char *)omni_buffer_data(d->buf) + d->offset;
    size_t bytes = omni_buffer_size(d->buf) - CT_GUARD - (size_t)d->offset;
    CT_CUDA(cudaMemcpy(g, p + bytes, CT_GUARD, cudaMemcpyDeviceToHost));
    for (int i = 0; i < CT_GUARD; i++)
        ck_assert_msg(g[i] == 0xa5, "%s: guard byte %d after the device data was overwritten", what,
                      i);
}

/* Host (guarded) copy of the whole device buffer behind d, as a tensor of
 * d's dtype and full contiguous shape; call after ct_sync. */
static inline void ct_down(struct omni_tensor *h, const struct omni_tensor *d)
{
    ck_assert(omni_tensor_is_contiguous(d));
    kt_tensor(h, d->dtype, d->ndim, d->shape);
    CT_CUDA(cudaMemcpy(omni_tensor_data(h), omni_tensor_data(d), omni_tensor_nbytes(d),
                       cudaMemcpyDeviceToHost));
}

/* got vs ref (f32, n elements): no NaN, max|d| / max|ref| <= tol */
static inline void ct_cmp(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    ck_assert_msg(!tu_has_nan(got, n), "%s: NaN in the CUDA result", what);
    ck_assert_msg(!tu_has_nan(ref, n), "%s: NaN in the CPU result", what);
    double e = tu_rel_err(got, ref, n);
    ck_assert_msg(e <= tol, "%s: rel err %.3g > %.3g (max|ref| %.3g)", what, e, tol,
                  tu_max_abs(ref, n));
}

/* Compare device tensor d (after sync) against host tensor ref (f32). */
static inline void ct_cmp_dev(const char *what, const struct omni_tensor *d,
                              const struct omni_tensor *ref, double tol)
{
    struct omni_tensor h;
    ct_down(&h, d);
    ck_assert_int_eq(omni_tensor_numel(&h), omni_tensor_numel(ref));
    ct_cmp(what, kt_f(&h), kt_f(ref), (size_t)omni_tensor_numel(ref), tol);
    ct_guard_check(d, what);
    kt_release(&h);
}

/* A guarded host tensor of dtype filled from N(0,1)*scale (converted for
 * f16/bf16; values never exactly zero). */
static inline void *ct_hrand(struct omni_tensor *t, struct tu_rng *r, int dtype, float scale,
                             int ndim, const int64_t *shape)
{
    void *p = kt_tensor(t, dtype, ndim, shape);
    size_t n = (size_t)omni_tensor_numel(t);
    if (dtype == OMNI_DTYPE_F32) {
        tu_fill_normal(r, p, n, scale);
    } else {
        float *tmp = malloc(n * sizeof(float) + 1);
        ck_assert_ptr_nonnull(tmp);
        tu_fill_normal(r, tmp, n, scale);
        ck_assert_int_eq(omni_dtype_convert(p, dtype, tmp, OMNI_DTYPE_F32, n), OMNI_OK);
        free(tmp);
    }
    return p;
}

#endif /* OMNI_HAVE_CUDA */
/* ---- the shared frame of a GPU suite ------------------------------------------------- */

#ifdef OMNI_HAVE_CUDA
#include <time.h>

#define SH(...) ((const int64_t[]){__VA_ARGS__})

/* The suite's random stream: fresh inputs every run; the seed is printed so a
 * failure can be replayed (OMNI_TEST_SEED=...). */
static struct tu_rng R;
static long ct_live0;

static void ct_setup(void)
{
    ct_live0 = omni_buffer_live_count();
    const char *fixed = getenv("OMNI_TEST_SEED");
    uint64_t seed = fixed ? strtoull(fixed, NULL, 0)
                          : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    printf("seed 0x%llx\n", (unsigned long long)seed);
    tu_rng_seed(&R, seed);
}

static void ct_teardown(void) { TU_ASSERT_NO_LEAK(ct_live0); }

/* host random tensor + its device copy; release both */
static inline void pair(struct omni_tensor *h, struct omni_tensor *d, int dtype, float scale, int ndim,
                        const int64_t *shape)
{
    ct_hrand(h, &R, dtype, scale, ndim, shape);
    ct_up(d, h);
}

static inline void rel2(struct omni_tensor *a, struct omni_tensor *b)
{
    kt_release(a);
    omni_tensor_release(b);
}

/* main() of a GPU suite: the device gate, then the suite in fork mode. */
static inline int ct_main(const char *name, Suite *(*make)(void))
{
    int status;
    if (ct_gate(name, &status))
        return status;
    SRunner *sr = srunner_create(make());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
#endif

/* main() of a GPU suite in a build without CUDA: the gate's message. */
static inline int ct_main_without_cuda(const char *name)
{
    int status = 0;
    ct_gate(name, &status);
    return status;
}

#endif
