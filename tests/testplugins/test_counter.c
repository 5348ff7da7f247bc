/* test_counter: a recurrent stage. forward (prefill): out = last id of each
 * row + 1, advance = T; step: out = in + `inc`, records every call in its
 * per-request state; its `log` output is [B, calls] so tests can see the
 * order of calls and the positions passed; its `live` output [1,1] is how many
 * test_counter states exist in the process at that call (to see when the
 * executor frees states). Param `stop_at`: return OMNI_DONE when the position
 * reaches it. */
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

static int64_t live_states; /* every instance of this plugin in the process */

struct counter {
    struct omni_stage base;
    int64_t inc, stop_at;
};

struct cstate {
    int64_t calls;
    int64_t positions[4096];
};

static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct counter *c = calloc(1, sizeof *c);
    if (!c)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    int rc = omni_params_int(cfg->params, "inc", 1, &c->inc, err);
    if (!rc)
        rc = omni_params_int(cfg->params, "stop_at", -1, &c->stop_at, err);
    if (rc) {
        free(c);
        return rc;
    }
    *out = &c->base;
    return OMNI_OK;
}

static void destroy(struct omni_stage *st) { free(st); }

static int state_new(struct omni_stage *st, const struct omni_run_ctx *ctx, void **state, struct omni_error *err)
{
    *state = calloc(1, sizeof(struct cstate));
    if (!*state)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    __atomic_add_fetch(&live_states, 1, __ATOMIC_SEQ_CST);
    return OMNI_OK;
}

static void state_free(struct omni_stage *st, void *state)
{
    if (state)
        __atomic_sub_fetch(&live_states, 1, __ATOMIC_SEQ_CST);
    free(state);
}

static int run(struct omni_stage *st, void *state, struct omni_io *io, int is_step, struct omni_error *err)
{
    struct counter *c = (struct counter *)st;
    struct cstate *cs = state;
    int rc = omni_check_tensor(st, "ids", &io->in[0], OMNI_DTYPE_BIT(OMNI_DTYPE_I32), 2, NULL, err);
    if (rc)
        return rc;
    if (c->stop_at >= 0 && io->ctx->position >= c->stop_at)
        return omni_error_set(err, OMNI_DONE, "position %lld reached stop_at", (long long)io->ctx->position);
    int64_t b = io->in[0].shape[0], t = io->in[0].shape[1];
    if (is_step && t != 1)
        return omni_error_set(err, OMNI_ESHAPE, "step takes one token per row, got %lld", (long long)t);
    int64_t shape[2] = {b, 1};
    if ((rc = omni_tensor_alloc(&io->out[0], OMNI_DTYPE_I32, 2, shape, OMNI_CPU, err)))
        return rc;
    const int32_t *in = omni_tensor_data(&io->in[0]);
    int32_t *o = omni_tensor_data(&io->out[0]);
    for (int64_t i = 0; i < b; i++)
        o[i] = in[i * t + t - 1] + (int32_t)c->inc;
    if (cs->calls < 4096)
        cs->positions[cs->calls] = io->ctx->position;
    cs->calls++;
    int64_t lshape[2] = {1, cs->calls};
    if ((rc = omni_tensor_alloc(&io->out[1], OMNI_DTYPE_I64, 2, lshape, OMNI_CPU, err)))
        return rc;
    memcpy(omni_tensor_data(&io->out[1]), cs->positions, (size_t)(cs->calls < 4096 ? cs->calls : 4096) * 8);
    if (io->n_out > 2) {
        const int64_t one[2] = {1, 1};
        if ((rc = omni_tensor_alloc(&io->out[2], OMNI_DTYPE_I64, 2, one, OMNI_CPU, err)))
            return rc;
        *(int64_t *)omni_tensor_data(&io->out[2]) = __atomic_load_n(&live_states, __ATOMIC_SEQ_CST);
    }
    io->advance = t;
    return OMNI_OK;
}

static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    return run(st, state, io, 0, err);
}

static int step(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    return run(st, state, io, 1, err);
}

static const struct omni_stage_ops ops = {.size = sizeof ops, .create = create, .destroy = destroy,
                                          .forward = forward, .state_new = state_new,
                                          .state_free = state_free, .step = step};
static const struct omni_port_desc ports[] = {
    {"ids", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,T", 0, "ids"},
    {"next", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,1", 0, "last id + inc"},
    {"log", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I64), "1,N", 0, "positions of every call so far"},
    {"live", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I64), "1,1", 0, "test_counter states alive now"},
};
static const struct omni_plugin_desc desc = {
    OMNI_PLUGIN_HEADER, .name = "test_counter", .version = "1", .description = "test: recurrent counter",
    .ops = &ops, .ports = ports, .n_ports = 4, .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .params_doc = "inc: increment (1)\nstop_at: position at which to end the loop (-1: never)"};
OMNI_PLUGIN_DEFINE(desc)
