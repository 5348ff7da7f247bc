/* core/ops/op_check.c - argument checks shared by the omni_op_* wrappers. */
#include "ops/op_check.h"

#include <stdio.h>

int omni__check_present(struct omni_error *err, const char *op, const char *arg,
                        const struct omni_tensor *t)
{
    if (!t)
        return omni_error_set(err, OMNI_EINVAL, "%s: %s is NULL", op, arg);
    if (t->ndim < 0 || t->ndim > OMNI_MAX_DIMS)
        return omni_error_set(err, OMNI_EINVAL, "%s: %s has rank %d outside 0..%d", op, arg,
                              (int)t->ndim, OMNI_MAX_DIMS);
    if (!t->buf && omni_tensor_numel(t) != 0)
        return omni_error_set(err, OMNI_EINVAL, "%s: %s has no buffer (empty descriptor)", op, arg);
    return OMNI_OK;
}

int omni__check_dtype(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int dtype)
{
    if (t->dtype != dtype)
        return omni_error_set(err, OMNI_EDTYPE, "%s: %s has dtype %s, expected %s", op, arg,
                              omni_dtype_name(t->dtype), omni_dtype_name(dtype));
    return OMNI_OK;
}

int omni__check_float_dtype(struct omni_error *err, const char *op, const char *arg,
                            const struct omni_tensor *t)
{
    if (t->dtype != OMNI_DTYPE_F32 && t->dtype != OMNI_DTYPE_F16 && t->dtype != OMNI_DTYPE_BF16)
        return omni_error_set(err, OMNI_EDTYPE, "%s: %s has dtype %s, expected f32, f16 or bf16",
                              op, arg, omni_dtype_name(t->dtype));
    return OMNI_OK;
}

int omni__check_shape(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int ndim, const int64_t *shape,
                      const char *what)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: %s has shape %s, expected %s%s%s%s", op, arg,
                              omni_shape_str(t->ndim, t->shape, a, sizeof a),
                              omni_shape_str(ndim, shape, b, sizeof b), what ? " (" : "",
                              what ? what : "", what ? ")" : "");
    }
    return OMNI_OK;
}

int omni__check_same_shape(struct omni_error *err, const char *op, const char *arg,
                           const struct omni_tensor *t, const char *ref_arg,
                           const struct omni_tensor *ref)
{
    int ok = t->ndim == ref->ndim;
    for (int i = 0; ok && i < t->ndim; i++)
        ok = t->shape[i] == ref->shape[i];
    if (!ok) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: %s has shape %s but %s has shape %s", op, arg,
                              omni_shape_str(t->ndim, t->shape, a, sizeof a), ref_arg,
                              omni_shape_str(ref->ndim, ref->shape, b, sizeof b));
    }
    return OMNI_OK;
}

static const char *strides_str(const struct omni_tensor *t, char *buf, size_t n)
{
    return omni_shape_str(t->ndim, t->strides, buf, n);
}

int omni__check_contiguous(struct omni_error *err, const char *op, const char *arg,
                           const struct omni_tensor *t)
{
    if (!omni_tensor_is_contiguous(t)) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_EINVAL, "%s: %s (shape %s, strides %s) must be contiguous",
                              op, arg, omni_shape_str(t->ndim, t->shape, a, sizeof a),
                              strides_str(t, b, sizeof b));
    }
    return OMNI_OK;
}

int omni__check_last_contiguous(struct omni_error *err, const char *op, const char *arg,
                                const struct omni_tensor *t)
{
    int ok = t->ndim >= 1 && (t->shape[t->ndim - 1] <= 1 || t->strides[t->ndim - 1] == 1);
    for (int i = 0; ok && i < t->ndim; i++)
        ok = t->strides[i] >= 0 || t->shape[i] <= 1;
    if (!ok) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: %s (shape %s, strides %s) needs a contiguous last dim and "
                              "non-negative strides",
                              op, arg, omni_shape_str(t->ndim, t->shape, a, sizeof a),
                              strides_str(t, b, sizeof b));
    }
    return OMNI_OK;
}

int omni__check_writable(struct omni_error *err, const char *op, const char *arg,
                         const struct omni_tensor *t)
{
    if (t->buf && omni_buffer_is_readonly(t->buf))
        return omni_error_set(err, OMNI_EINVAL, "%s: output %s is a read-only buffer", op, arg);
    return OMNI_OK;
}

int omni__check_same_device(struct omni_error *err, const char *op, const char *arg,
                            const struct omni_tensor *t, const char *ref_arg,
                            const struct omni_tensor *ref)
{
    if (!omni_device_eq(t->device, ref->device)) {
        char a[32], b[32];
        return omni_error_set(err, OMNI_EDEVICE, "%s: %s is on %s but %s is on %s", op, arg,
                              omni_device_str(t->device, a, sizeof a), ref_arg,
                              omni_device_str(ref->device, b, sizeof b));
    }
    return OMNI_OK;
}

int omni__rows(struct omni_error *err, const char *op, const char *arg,
               const struct omni_tensor *t, int writable, int64_t *rows, int64_t *cols,
               int64_t *ld)
{
    int rc = omni__check_last_contiguous(err, op, arg, t);
    if (rc)
        return rc;
    int64_t d = t->shape[t->ndim - 1], r = 1, stride = -1, expect = 0;
    int ok = 1;
    for (int i = t->ndim - 2; i >= 0; i--) {
        r *= t->shape[i];
        if (t->shape[i] == 1)
            continue;
        if (stride < 0) {
            stride = t->strides[i];
            expect = stride * t->shape[i];
        } else if (t->strides[i] != expect) {
            ok = 0;
        } else {
            expect *= t->shape[i];
        }
    }
    if (stride < 0)
        stride = d;
    if (ok && writable && r > 1 && stride < d)
        ok = 0;
    if (!ok) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: %s (shape %s, strides %s) is not a set of equally spaced, "
                              "non-overlapping rows",
                              op, arg, omni_shape_str(t->ndim, t->shape, a, sizeof a),
                              strides_str(t, b, sizeof b));
    }
    *rows = r;
    *cols = d;
    *ld = stride;
    return OMNI_OK;
}

int omni__cpu_only(struct omni_error *err, const char *op, const struct omni_tensor *t)
{
    if (t->device.type == OMNI_DEVICE_CPU)
        return OMNI_OK;
#ifdef OMNI_HAVE_CUDA
    if (t->device.type == OMNI_DEVICE_CUDA)
        return omni_error_set(err, OMNI_EUNSUPPORTED, "%s: no CUDA kernel for this op yet", op);
    return omni_error_set(err, OMNI_EDEVICE, "%s: unknown device type %d", op, (int)t->device.type);
#else
    return omni_error_set(err, OMNI_EDEVICE, "%s: built without CUDA", op);
#endif
}

int omni__overlap(const struct omni_tensor *t, const struct omni_tensor *u)
{
    if (!t || !u || !t->buf || t->buf != u->buf || !omni_tensor_numel(t) || !omni_tensor_numel(u))
        return 0;
    int64_t lo[2], hi[2];
    const struct omni_tensor *v[2] = {t, u};
    for (int i = 0; i < 2; i++) {
        int64_t last = 0;
        for (int d = 0; d < v[i]->ndim; d++)
            last += (v[i]->shape[d] - 1) * v[i]->strides[d];
        lo[i] = v[i]->offset;
        hi[i] = v[i]->offset + (last + 1) * (int64_t)omni_dtype_size(v[i]->dtype);
    }
    return lo[0] < hi[1] && lo[1] < hi[0];
}
