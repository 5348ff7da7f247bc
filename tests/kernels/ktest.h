/* tests/kernels/ktest.h - helpers for the Mamba-2 kernel suites (header only):
 * tensors over guarded allocations, error-message assertions, fixtures. */
#ifndef OMNI_TESTS_KTEST_H
#define OMNI_TESTS_KTEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "omni/omni.h"
#include "testutil.h"

static void kt__guard_free(void *p) { tu_guard_free(p); }

/* A contiguous host tensor whose memory has canaries on both sides; filled
 * with NaN bytes (0xff) so that an op that forgets to write shows up.
 * Returns the data pointer. Release with kt_release (checks the canaries). */
static inline void *kt_tensor(struct omni_tensor *t, int dtype, int ndim, const int64_t *shape)
{
    struct omni_error e;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    size_t bytes = (size_t)n * omni_dtype_size(dtype);
    void *p = tu_guard_alloc(bytes);
    memset(p, 0xff, bytes);
    struct omni_buffer *b = omni_buffer_wrap(OMNI_CPU, p, bytes, OMNI_BUFFER_EXTERNAL,
                                             kt__guard_free, p, &e);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(omni_tensor_view(t, b, 0, dtype, ndim, shape, &e), OMNI_OK);
    omni_buffer_unref(b);
    return p;
}

/* Shorthand: kt_tensorv(&t, F32, 2, 3, 4). */
static inline void *kt_tensorv(struct omni_tensor *t, int dtype, int ndim, ...)
{
    int64_t shape[OMNI_MAX_DIMS];
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++)
        shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    return kt_tensor(t, dtype, ndim, shape);
}

static inline void kt_release(struct omni_tensor *t)
{
    if (t->buf) {
        ck_assert_msg(tu_guard_ok(omni_buffer_data(t->buf)), "canary overwritten around %s",
                      "a kernel output");
    }
    omni_tensor_release(t);
}

/* A view of t restricted to [lo, lo+len) along the last dim (keeps strides). */
static inline struct omni_tensor kt_slice_last(const struct omni_tensor *t, int64_t lo, int64_t len)
{
    struct omni_tensor v = *t;
    v.offset += lo * (int64_t)omni_dtype_size(t->dtype);
    v.shape[v.ndim - 1] = len;
    return v;
}

#define KT_ASSERT_ERR(rc, err, status, ...)                                                         \
    do {                                                                                           \
        ck_assert_msg((rc) == (status), "expected %s, got %s (%s)", omni_status_name(status),      \
                      omni_status_name(rc), (err).msg);                                            \
        const char *kt_subs_[] = {__VA_ARGS__};                                                    \
        for (size_t kt_i_ = 0; kt_i_ < sizeof kt_subs_ / sizeof kt_subs_[0]; kt_i_++)             \
            ck_assert_msg(strstr((err).msg, kt_subs_[kt_i_]) != NULL,                              \
                          "message \"%s\" lacks \"%s\"", (err).msg, kt_subs_[kt_i_]);              \
    } while (0)

static inline void kt_fill(struct tu_rng *r, const struct omni_tensor *t, float lo, float hi)
{
    tu_fill_uniform(r, omni_tensor_data(t), (size_t)omni_tensor_numel(t), lo, hi);
}

static inline float *kt_f(const struct omni_tensor *t) { return omni_tensor_data(t); }

/* Checked fixture for every test of a suite: no omni buffer may outlive a test. */
static long kt__live0;
static inline void kt_setup(void) { kt__live0 = omni_buffer_live_count(); }
static inline void kt_teardown(void) { TU_ASSERT_NO_LEAK(kt__live0); }

#endif
