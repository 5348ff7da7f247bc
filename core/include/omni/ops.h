/* omni/ops.h - model math for stages: omni_op_* functions that check their
 * tensors and dispatch on the tensors' device to kernels/cpu or kernels/cuda.
 * Stages never loop over model math or call CUDA themselves.
 * One header per op family under omni/ops/. */
#ifndef OMNI_OPS_H
#define OMNI_OPS_H

#include "omni/ops/act.h"
#include "omni/ops/attention.h"
#include "omni/ops/conv2d.h"
#include "omni/ops/embed.h"
#include "omni/ops/fill.h"
#include "omni/ops/gelu.h"
#include "omni/ops/groupnorm.h"
#include "omni/ops/image.h"
#include "omni/ops/layernorm.h"
#include "omni/ops/matmul.h"
#include "omni/ops/norm.h"
#include "omni/ops/sample.h"
#include "omni/ops/ssm.h"
#include "omni/ops/vq.h"
#include "omni/ops/vit.h"

#endif
