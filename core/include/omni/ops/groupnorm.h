/* omni/ops/groupnorm.h */
#ifndef OMNI_OPS_GROUPNORM_H
#define OMNI_OPS_GROUPNORM_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
