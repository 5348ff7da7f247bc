/* omni/status.h - status codes and the error record every fallible call fills.
 *
 * Zero is success, negative is an error, positive values are non-error
 * signals (OMNI_DONE: a generation loop should stop). Library code never
 * prints: it returns a status and writes "what, where, why" into a
 * caller-provided struct omni_error (which may be NULL).
 */
#ifndef OMNI_STATUS_H
#define OMNI_STATUS_H

#define OMNI_VERSION "0.1.0"

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define OMNI_API __attribute__((visibility("default")))
#define OMNI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OMNI_API
#define OMNI_PRINTF(a, b)
#endif

/* X(name, value, description) */
#define OMNI_STATUS_MAP(X)                                                   \
    X(OK, 0, "success")                                                      \
    X(DONE, 1, "finished (stop signal)")                                     \
    X(EINVAL, -1, "invalid argument")                                        \
    X(ENOMEM, -2, "out of memory")                                           \
    X(EIO, -3, "input/output error")                                         \
    X(ENOTFOUND, -4, "not found")                                            \
    X(EFORMAT, -5, "malformed input")                                        \
    X(EREFUSED, -6, "refused (unsafe or disallowed content)")                \
    X(ESHAPE, -7, "shape mismatch")                                          \
    X(EDTYPE, -8, "dtype mismatch")                                          \
    X(EDEVICE, -9, "device unavailable or mismatched")                       \
    X(EUNSUPPORTED, -10, "not supported")                                    \
    X(EPLUGIN, -11, "plugin rejected")                                       \
    X(EPIPELINE, -12, "invalid pipeline")                                    \
    X(ESTATE, -13, "invalid state")                                          \
    X(ERANGE, -14, "out of range")                                           \
    X(ECUDA, -15, "CUDA error")                                              \
    X(EPROTO, -16, "protocol error")                                         \
    X(ETIMEOUT, -17, "timed out")                                            \
    X(ECANCELED, -18, "canceled")                                            \
    X(EPEER, -19, "peer process failed")                                     \
    X(EINTERNAL, -20, "internal error")

enum omni_status {
#define OMNI__STATUS_ENUM(name, value, desc) OMNI_##name = value,
    OMNI_STATUS_MAP(OMNI__STATUS_ENUM)
#undef OMNI__STATUS_ENUM
};

/* Short description of a status ("invalid argument"); never NULL. */
OMNI_API const char *omni_status_str(int status);
/* Symbolic name of a status ("OMNI_EINVAL"); never NULL. */
OMNI_API const char *omni_status_name(int status);

#define OMNI_ERROR_MAX 1024

/* The message buffer: filled by the failing call, read by the caller. */
struct omni_error {
    int status;
    char msg[OMNI_ERROR_MAX];
};

/* Clear err (may be NULL). */
OMNI_API void omni_error_clear(struct omni_error *err);
/* Record status and a printf-style message; returns status so that
 * `return omni_error_set(err, OMNI_EINVAL, "...")` reads naturally.
 * err may be NULL. */
OMNI_API int omni_error_set(struct omni_error *err, int status, const char *fmt, ...)
    OMNI_PRINTF(3, 4);
OMNI_API int omni_error_setv(struct omni_error *err, int status, const char *fmt, va_list ap);
/* Prepend context ("file.yaml:3:5: stage 'x': ") to an existing message.
 * Returns err->status (or OMNI_EINTERNAL when err is NULL). */
OMNI_API int omni_error_prefix(struct omni_error *err, const char *fmt, ...) OMNI_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif
#endif
