/* The stage harness: one stage alone, tensors pushed in and pulled out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/harness.h"
#include "memlog.h"
#include "stage_impl.h"

struct omni_harness {
    struct omni__stage_inst si;
    struct omni_weights *weights;
    char *task;
    int64_t position;
    int64_t step;
    uint64_t seed;
    const int64_t *position_dev, *step_dev;
    void *state;
    int have_state;
    struct omni__ynode *options;
    struct omni_params options_view;
    int n_in, n_out;
    struct omni_tensor *in;
    struct omni_tensor *out;
};

int omni_harness_new_full(struct omni_harness **out, const char *type, const char *params_yaml,
                          const char *device, const char *dtype, struct omni_error *err)
{
    *out = NULL;
    const struct omni__plugin *p;
    int rc = omni__plugin_find(type, NULL, 0, &p, err);
    if (rc)
        return rc;
    struct omni_device dev = OMNI_CPU;
    if (device && (rc = omni_device_parse(device, &dev, err)))
        return rc;
    int dt = OMNI_DTYPE_INVALID;
    if (dtype && (dt = omni_dtype_parse(dtype)) == OMNI_DTYPE_INVALID)
        return omni_error_set(err, OMNI_EINVAL, "unknown dtype '%s'", dtype);
    struct omni__ynode *params = NULL;
    if (params_yaml && (rc = omni__yaml_parse(params_yaml, strlen(params_yaml), "<params>", &params, err)))
        return rc;
    if (params && params->kind != OMNI__Y_MAP) {
        omni__ynode_free(params);
        return omni_error_set(err, OMNI_EINVAL, "harness params must be a YAML mapping");
    }
    struct omni_harness *h = calloc(1, sizeof *h);
    if (!h) {
        omni__ynode_free(params);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    h->task = strdup("");
    h->step = -1;
    rc = omni__stage_create(&h->si, p, type, params, dev, dt, "harness", err);
    omni__ynode_free(params);
    if (rc) {
        free(h->task);
        free(h);
        return rc;
    }
    h->n_in = omni__plugin_port_count(p->desc, OMNI_PORT_IN);
    h->n_out = omni__plugin_port_count(p->desc, OMNI_PORT_OUT);
    h->in = calloc((size_t)h->n_in + 1, sizeof *h->in);
    h->out = calloc((size_t)h->n_out + 1, sizeof *h->out);
    if (!h->in || !h->out || !h->task) {
        omni_harness_free(h);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    *out = h;
    return OMNI_OK;
}

int omni_harness_new(struct omni_harness **out, const char *type, const char *params_yaml,
                     struct omni_error *err)
{
    return omni_harness_new_full(out, type, params_yaml, NULL, NULL, err);
}

int omni_harness_load_weights(struct omni_harness *h, const char *path, const char *prefix,
                              struct omni_error *err)
{
    if (h->weights) {
        omni_weights_close(h->weights);
        h->weights = NULL;
    }
    int rc = path ? omni_weights_open(&h->weights, path, err) : OMNI_OK;
    if (rc)
        return rc;
    return omni__stage_load(&h->si, h->weights, prefix, path, err);
}

int omni_harness_attach(struct omni_harness *h, const char *target, struct omni_harness *adapter,
                        struct omni_error *err)
{
    const struct omni_stage_ops *o = h->si.plugin->desc->ops;
    if (!OMNI__HAS_OP(o, attach))
        return omni_error_set(err, OMNI_EUNSUPPORTED, "stage '%s' accepts no adapters", h->si.name);
    if (adapter && !adapter->si.plugin->desc->adapter)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s' (%s) is not an adapter", adapter->si.name,
                              adapter->si.plugin->desc->name);
    return o->attach(h->si.stage, target, adapter ? adapter->si.stage : NULL, err);
}

void omni_harness_set_task(struct omni_harness *h, const char *task)
{
    char *t = strdup(task ? task : "");
    if (t) {
        free(h->task);
        h->task = t;
    }
}

void omni_harness_set_position(struct omni_harness *h, int64_t pos) { h->position = pos; }
void omni_harness_set_seed(struct omni_harness *h, uint64_t seed) { h->seed = seed; }
void omni_harness_set_counters(struct omni_harness *h, const int64_t *position_dev, const int64_t *step_dev)
{
    h->position_dev = position_dev;
    h->step_dev = step_dev;
}

int omni_harness_set_options(struct omni_harness *h, const char *options_yaml, struct omni_error *err)
{
    struct omni__ynode *o = NULL;
    int rc = options_yaml ? omni__yaml_parse(options_yaml, strlen(options_yaml), "<options>", &o, err) : OMNI_OK;
    if (rc)
        return rc;
    omni__ynode_free(h->options);
    h->options = o;
    h->options_view = omni__params_of(o);
    return OMNI_OK;
}

int omni_harness_push(struct omni_harness *h, const char *port, const struct omni_tensor *t,
                      struct omni_error *err)
{
    int i = omni__plugin_port_index(h->si.plugin->desc, OMNI_PORT_IN, port);
    if (i < 0)
        return omni_error_set(err, OMNI_ENOTFOUND, "stage '%s' (%s) has no input port '%s'", h->si.name,
                              h->si.plugin->desc->name, port);
    omni_tensor_release(&h->in[i]);
    if (t)
        omni_tensor_ref(&h->in[i], t);
    return OMNI_OK;
}

int omni_harness_push_text(struct omni_harness *h, const char *port, const char *text,
                           struct omni_error *err)
{
    struct omni_tensor t;
    size_t n = strlen(text);
    int64_t shape[2] = {1, (int64_t)n + 1};
    int rc = omni_tensor_alloc(&t, OMNI_DTYPE_U8, 2, shape, OMNI_CPU, err);
    if (rc)
        return rc;
    memcpy(omni_tensor_data(&t), text, n + 1);
    rc = omni_harness_push(h, port, &t, err);
    omni_tensor_release(&t);
    return rc;
}

static int ensure_state(struct omni_harness *h, struct omni_run_ctx *ctx, struct omni_error *err)
{
    const struct omni_stage_ops *o = h->si.plugin->desc->ops;
    if (h->have_state || !OMNI__HAS_OP(o, state_new))
        return OMNI_OK;
    int rc = o->state_new(h->si.stage, ctx, &h->state, err);
    if (!rc)
        h->have_state = 1;
    return rc;
}

/* The context of the next call (step: loop iteration h->step + 1), or of the
 * last step (step -2: for graph_key). The batch is the first pushed input's. */
static struct omni_run_ctx harness_ctx(const struct omni_harness *h, int is_step)
{
    int batch = 1;
    for (int i = 0; i < h->n_in; i++)
        if (h->in[i].buf && h->in[i].ndim > 0) {
            batch = (int)h->in[i].shape[0];
            break;
        }
    return (struct omni_run_ctx){
        .size = sizeof(struct omni_run_ctx),
        .task = h->task,
        .position = h->position,
        .step = is_step == 2 ? h->step : is_step ? h->step + 1 : -1,
        .seed = h->seed,
        .batch = batch,
        .options = h->options ? &h->options_view : NULL,
        .position_dev = h->position_dev,
        .step_dev = h->step_dev,
    };
}

static int call(struct omni_harness *h, int is_step, struct omni_error *err)
{
    const struct omni_stage_ops *o = h->si.plugin->desc->ops;
    struct omni_run_ctx ctx = harness_ctx(h, is_step);
    const char *prev_tag = omni__alloc_tag_set(h->si.name); /* OMNI_CUDA_MEMLOG */
    int rc = ensure_state(h, &ctx, err);
    if (rc) {
        omni__alloc_tag_set(prev_tag);
        return rc;
    }
    for (int i = 0; i < h->n_out; i++)
        omni_tensor_release(&h->out[i]);
    struct omni_io io = {
        .n_in = (uint32_t)h->n_in, .n_out = (uint32_t)h->n_out, .in = h->in, .out = h->out, .ctx = &ctx};
    if (is_step && !OMNI__HAS_OP(o, step))
        rc = o->forward(h->si.stage, h->state, &io, err);
    else
        rc = is_step ? o->step(h->si.stage, h->state, &io, err) : o->forward(h->si.stage, h->state, &io, err);
    omni__alloc_tag_set(prev_tag);
    if (rc >= 0) {
        h->position += io.advance;
        if (is_step)
            h->step++;
    }
    return rc;
}

int omni_harness_forward(struct omni_harness *h, struct omni_error *err) { return call(h, 0, err); }
int omni_harness_step(struct omni_harness *h, struct omni_error *err) { return call(h, 1, err); }

int omni_harness_graph_key(struct omni_harness *h, uint64_t *key, int max, int *n,
                           struct omni_error *err)
{
    const struct omni_stage_ops *o = h->si.plugin->desc->ops;
    *n = 0;
    if (!OMNI__HAS_OP(o, graph_key))
        return omni_error_set(err, OMNI_EINVAL, "stage '%s' (%s): the plugin has no graph_key op",
                              h->si.name, h->si.plugin->desc->name);
    if (!h->have_state)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s': graph_key before any call (no request state yet)",
                              h->si.name);
    const struct omni_run_ctx ctx = harness_ctx(h, 2);
    int m = 0;
    if (o->graph_key(h->si.stage, h->state, &ctx, key, max, &m) || m < 0 || m > max)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s': graph_key failed (the key does not fit %d words, or "
                              "the state is not sized)",
                              h->si.name, max);
    *n = m;
    return OMNI_OK;
}

void omni_harness_reset_state(struct omni_harness *h)
{
    const struct omni_stage_ops *o = h->si.plugin->desc->ops;
    if (h->have_state && OMNI__HAS_OP(o, state_free))
        o->state_free(h->si.stage, h->state);
    h->state = NULL;
    h->have_state = 0;
    h->position = 0;
    h->step = -1;
}

const struct omni_tensor *omni_harness_pull(struct omni_harness *h, const char *port)
{
    int i = omni__plugin_port_index(h->si.plugin->desc, OMNI_PORT_OUT, port);
    if (i < 0 || !h->out[i].buf)
        return NULL;
    return &h->out[i];
}

struct omni_stage *omni_harness_stage(struct omni_harness *h) { return h->si.stage; }

void omni_harness_free(struct omni_harness *h)
{
    if (!h)
        return;
    if (h->si.plugin)
        omni_harness_reset_state(h);
    for (int i = 0; h->in && i < h->n_in; i++)
        omni_tensor_release(&h->in[i]);
    for (int i = 0; h->out && i < h->n_out; i++)
        omni_tensor_release(&h->out[i]);
    free(h->in);
    free(h->out);
    if (h->si.plugin)
        omni__stage_destroy(&h->si);
    if (h->weights)
        omni_weights_close(h->weights);
    omni__ynode_free(h->options);
    free(h->task);
    free(h);
}
