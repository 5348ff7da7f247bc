/* test_sleep: a pass-through stage for the multi-process tests (tests/ipc).
 *
 * y = x * mul + add for f32 inputs, a copy for other dtypes; with `passthrough`
 * y is x itself (a new reference, no copy). With x unconnected, y is f32
 * [1, n] filled with x_i = (0.37 i - 1.1)^3 (values with full mantissas, for
 * bit-exact comparisons). Params and per-request options (options win):
 *   sleep_ms    sleep this long in forward (to make requests slow)
 *   stop        1: SIGSTOP this process in forward (a hung worker)
 *   fail        1: return an error from forward
 *   mul, add    f32 affine map (defaults 1, 0)
 *   passthrough 1: return the input buffer itself
 *   n           row length when x is unconnected (default 64) */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "omni/plugin.h"

struct sl {
    struct omni_stage base;
    const struct omni_params *params;
};

static int create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct sl *s = calloc(1, sizeof *s);
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    s->params = cfg->params; /* lives as long as the stage */
    double v;
    int rc = omni_params_float(cfg->params, "mul", 1.0, &v, err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return OMNI_OK;
}

static void destroy(struct omni_stage *st) { free(st); }

static int num(const struct sl *s, const struct omni_run_ctx *ctx, const char *key, double def, double *v,
               struct omni_error *err)
{
    if (ctx->options && omni_params_has(ctx->options, key))
        return omni_params_float(ctx->options, key, def, v, err);
    return omni_params_float(s->params, key, def, v, err);
}

static int forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct sl *s = (struct sl *)st;
    double sleep_ms, stop, fail, mul, add, pass, n;
    int rc;
    if ((rc = num(s, io->ctx, "sleep_ms", 0, &sleep_ms, err)) || (rc = num(s, io->ctx, "stop", 0, &stop, err)) ||
        (rc = num(s, io->ctx, "fail", 0, &fail, err)) || (rc = num(s, io->ctx, "mul", 1, &mul, err)) ||
        (rc = num(s, io->ctx, "add", 0, &add, err)) || (rc = num(s, io->ctx, "passthrough", 0, &pass, err)) ||
        (rc = num(s, io->ctx, "n", 64, &n, err)))
        return rc;
    if (stop != 0)
        raise(SIGSTOP);
    if (sleep_ms > 0) {
        struct timespec ts = {(time_t)(sleep_ms / 1000), (long)((sleep_ms - 1000 * (long)(sleep_ms / 1000)) * 1e6)};
        while (nanosleep(&ts, &ts))
            ;
    }
    if (fail != 0)
        return omni_error_set(err, OMNI_EINVAL, "failing on request (fail=1)");
    const struct omni_tensor *x = &io->in[0];
    if (!x->buf) {
        int64_t shape[2] = {1, (int64_t)n};
        if ((rc = omni_tensor_alloc(&io->out[0], OMNI_DTYPE_F32, 2, shape, OMNI_CPU, err)))
            return rc;
        float *y = omni_tensor_data(&io->out[0]);
        for (int64_t i = 0; i < shape[1]; i++) {
            float t = 0.37f * (float)i - 1.1f;
            y[i] = t * t * t;
        }
        return OMNI_OK;
    }
    if (pass != 0) {
        omni_tensor_ref(&io->out[0], x);
        return OMNI_OK;
    }
    if ((rc = omni_tensor_copy_to(&io->out[0], x, OMNI_CPU, err)))
        return rc;
    if (x->dtype == OMNI_DTYPE_F32) {
        float *y = omni_tensor_data(&io->out[0]);
        int64_t count = omni_tensor_numel(&io->out[0]);
        for (int64_t i = 0; i < count; i++)
            y[i] = y[i] * (float)mul + (float)add;
    }
    return OMNI_OK;
}

static const struct omni_stage_ops ops = {.size = sizeof ops, .create = create, .destroy = destroy, .forward = forward};
static const struct omni_port_desc ports[] = {
    {"x", OMNI_PORT_IN, 0, "*", OMNI_PORT_OPTIONAL, "any tensor (unconnected: a generated f32 row)"},
    {"y", OMNI_PORT_OUT, 0, "*", 0, "x * mul + add (f32), else a copy of x; x itself with passthrough"},
};
static const struct omni_plugin_desc desc = {
    OMNI_PLUGIN_HEADER, .name = "test_sleep", .version = "1", .description = "test: slow / hanging pass-through",
    .ops = &ops, .ports = ports, .n_ports = 2, .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .params_doc = "sleep_ms: sleep in forward\nstop: 1 = SIGSTOP itself\nfail: 1 = fail\nmul, add: f32 affine map\n"
                  "passthrough: 1 = return x itself\nn: row length when x is unconnected (64)"};
OMNI_PLUGIN_DEFINE(desc)
