/* omni/ops/embed.h - see kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_EMBED_H
#define OMNI_OPS_EMBED_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
