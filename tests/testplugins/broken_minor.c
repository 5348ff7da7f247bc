/* broken: a newer ABI minor. */
#include <stdlib.h>
#include "omni/plugin.h"
static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{ *out = calloc(1, sizeof **out); return OMNI_OK; }
static void destroy(struct omni_stage *st) { free(st); }
static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err) { return OMNI_OK; }
static const struct omni_stage_ops ops = {.size = sizeof ops, .create = create, .destroy = destroy, .forward = forward};
static const struct omni_plugin_desc desc = {.abi_major = OMNI_ABI_MAJOR, .abi_minor = OMNI_ABI_MINOR + 1, .size = sizeof(struct omni_plugin_desc), .build_signature = OMNI_BUILD_SIGNATURE, .name = "broken_minor", .version = "1", .ops = &ops};
OMNI_PLUGIN_DEFINE(desc)
