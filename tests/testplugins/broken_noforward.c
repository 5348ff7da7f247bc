/* broken: no forward op. */
#include <stdlib.h>
#include "omni/plugin.h"
static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{ *out = calloc(1, sizeof **out); return OMNI_OK; }
static void destroy(struct omni_stage *st) { free(st); }
static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err) { return OMNI_OK; }
static int (*const unused_forward)(struct omni_stage *, void *, struct omni_io *, struct omni_error *) __attribute__((unused)) = forward;
static const struct omni_stage_ops ops = {.size = sizeof ops, .create = create, .destroy = destroy, .forward = NULL};
static const struct omni_plugin_desc desc = {OMNI_PLUGIN_HEADER, .name = "broken_noforward", .version = "1", .ops = &ops};
OMNI_PLUGIN_DEFINE(desc)
