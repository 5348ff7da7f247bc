/* core/ops/op_check.h - argument checks shared by the omni_op_* wrappers
 * (internal). Every failing check fills err with a message that starts with
 * the op name and names the argument and the shapes involved, e.g.
 *   "omni_op_linear: w has shape [8512,1024], expected [8512,2048] (N from y, K from x)". */
#ifndef OMNI_OPS_OP_CHECK_H
#define OMNI_OPS_OP_CHECK_H

#include <stdint.h>

#include "omni/status.h"
#include "omni/tensor.h"

/* t is non-NULL and describes memory (a buffer, or numel == 0). */
int omni__check_present(struct omni_error *err, const char *op, const char *arg,
                        const struct omni_tensor *t);
/* t->dtype == dtype. */
int omni__check_dtype(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int dtype);
/* t->dtype is one of f32, f16, bf16. */
int omni__check_float_dtype(struct omni_error *err, const char *op, const char *arg,
                            const struct omni_tensor *t);
/* Exact shape; `what` (may be NULL) explains where the expectation comes from. */
int omni__check_shape(struct omni_error *err, const char *op, const char *arg,
                      const struct omni_tensor *t, int ndim, const int64_t *shape,
                      const char *what);
/* Same shape as ref (named ref_arg). */
int omni__check_same_shape(struct omni_error *err, const char *op, const char *arg,
                           const struct omni_tensor *t, const char *ref_arg,
                           const struct omni_tensor *ref);
/* Row-major contiguous. */
int omni__check_contiguous(struct omni_error *err, const char *op, const char *arg,
                           const struct omni_tensor *t);
/* Last dim contiguous (stride 1) and every leading stride >= 0. */
int omni__check_last_contiguous(struct omni_error *err, const char *op, const char *arg,
                                const struct omni_tensor *t);
/* The buffer is writable (not a read-only weights mapping). */
int omni__check_writable(struct omni_error *err, const char *op, const char *arg,
                         const struct omni_tensor *t);
/* t lives on the same device as ref. */
int omni__check_same_device(struct omni_error *err, const char *op, const char *arg,
                            const struct omni_tensor *t, const char *ref_arg,
                            const struct omni_tensor *ref);

/* View t (ndim >= 1, last dim contiguous) as rows x cols with one uniform
 * row stride ld (elements): the leading dims must collapse. For an output
 * (writable != 0) rows may not overlap (ld >= cols when rows > 1). */
int omni__rows(struct omni_error *err, const char *op, const char *arg,
               const struct omni_tensor *t, int writable, int64_t *rows, int64_t *cols,
               int64_t *ld);

/* t and u (either may be NULL) touch overlapping bytes of one buffer: the
 * byte ranges their views span intersect (non-negative strides assumed). */
int omni__overlap(const struct omni_tensor *t, const struct omni_tensor *u);

/* Device dispatch for ops that have no CUDA kernel yet: OMNI_OK for CPU
 * tensors, else the error a CUDA tensor gets. */
int omni__cpu_only(struct omni_error *err, const char *op, const struct omni_tensor *t);

#endif
