/* test_source: emits i32 [B,1] filled with param `value` (+ ctx->position);
 * B from the optional `text` input's rows (1 when absent). */
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

struct src {
    struct omni_stage base;
    int64_t value;
};

static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct src *s = calloc(1, sizeof *s);
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    int rc = omni_params_int(cfg->params, "value", 7, &s->value, err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return OMNI_OK;
}

static void destroy(struct omni_stage *st) { free(st); }

static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct src *s = (struct src *)st;
    int64_t b = io->in[0].buf ? io->in[0].shape[0] : 1;
    int64_t shape[2] = {b, 1};
    int rc = omni_tensor_alloc(&io->out[0], OMNI_DTYPE_I32, 2, shape, OMNI_CPU, err);
    if (rc)
        return rc;
    int32_t *v = omni_tensor_data(&io->out[0]);
    for (int64_t i = 0; i < b; i++)
        v[i] = (int32_t)(s->value + i);
    return OMNI_OK;
}

static const struct omni_stage_ops ops = {.size = sizeof ops, .create = create, .destroy = destroy, .forward = forward};
static const struct omni_port_desc ports[] = {
    {"text", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,S", OMNI_PORT_OPTIONAL | OMNI_PORT_STRING, "optional text (sets B)"},
    {"ids", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,1", 0, "value, value+1, ... per row"},
};
static const struct omni_plugin_desc desc = {
    OMNI_PLUGIN_HEADER, .name = "test_source", .version = "1", .description = "test: emits ids",
    .ops = &ops, .ports = ports, .n_ports = 2, .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .params_doc = "value: first id (default 7)"};
OMNI_PLUGIN_DEFINE(desc)
