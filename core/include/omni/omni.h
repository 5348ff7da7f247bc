/* omni/omni.h - everything public in libomni. */
#ifndef OMNI_OMNI_H
#define OMNI_OMNI_H

#include "omni/dtype.h"
#include "omni/log.h"
#include "omni/ops.h"
#include "omni/plugin.h"
#include "omni/status.h"
#include "omni/tensor.h"
#include "omni/weights.h"
#include "omni/pipeline.h"
#include "omni/harness.h"
#include "omni/image.h"

#endif
