/* test_float: f32 [B,4] port, for dtype and dims mismatch tests. */
#include <stdlib.h>

#include "omni/plugin.h"

static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? OMNI_OK : omni_error_set(err, OMNI_ENOMEM, "out of memory");
}
static void destroy(struct omni_stage *st) { free(st); }
static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    int64_t shape[2] = {1, 4};
    return omni_tensor_alloc(&io->out[0], OMNI_DTYPE_F32, 2, shape, OMNI_CPU, err);
}
static const struct omni_stage_ops ops = {.size = sizeof ops, .create = create, .destroy = destroy, .forward = forward};
static const struct omni_port_desc ports[] = {
    {"x", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,4", OMNI_PORT_OPTIONAL, "x"},
    {"y", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,4", 0, "y"},
    {"wide", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,8", OMNI_PORT_OPTIONAL, "8 wide"},
};
static const struct omni_plugin_desc desc = {
    OMNI_PLUGIN_HEADER, .name = "test_float", .version = "1", .description = "test: f32 ports",
    .ops = &ops, .ports = ports, .n_ports = 3, .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU)};
OMNI_PLUGIN_DEFINE(desc)
