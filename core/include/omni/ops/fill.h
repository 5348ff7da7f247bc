/* omni/ops/fill.h */
#ifndef OMNI_OPS_FILL_H
#define OMNI_OPS_FILL_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* t = 0 (every element, any dtype), in place: the buffer keeps its address.
 * t: contiguous, writable; on the host or queued on the device's current
 * stream. An empty tensor is a no-op. */
OMNI_API int omni_op_zero(struct omni_tensor *t, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
