/* broken: exports no entry symbol. */
#include <stdlib.h>
#include "omni/plugin.h"
static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{ *out = calloc(1, sizeof **out); return OMNI_OK; }
static void destroy(struct omni_stage *st) { free(st); }
static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err) { return OMNI_OK; }
const struct omni_stage_ops *broken_nosym_ops(void);
const struct omni_stage_ops *broken_nosym_ops(void) { static const struct omni_stage_ops o = {.size = sizeof o, .create = create, .destroy = destroy, .forward = forward}; return &o; }
