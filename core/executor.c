/* The executor: loads a checked pipeline (stages, weights, adapters) and runs
 * requests through its phases: prefill once, the generation loop per token
 * (stop rules, feed edges, token collection, streaming), then the after phase. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ipc/ipc.h"
#include "memlog.h"
#include "graph_impl.h"
#include "pipeline_impl.h"

#define GRAPH_KEY_MAX 256 /* words of a loop run's graph key */

struct omni_pipeline {
    struct omni__pipeline_spec *spec;
    struct omni__stage_inst *stages;
    struct omni_weights **files;
    int n_files;
    struct omni__stage_inst *extra; /* adapters attached at run time */
    int n_extra;
    struct omni__ipc_cluster *ipc; /* workers of placement: (core/ipc), NULL when none */
    /* Executable CUDA graphs of loop runs kept across requests, per (run, batch).
     * A later request whose loop calls would queue the same work (same key: the
     * stages' graph_key words, the run's inputs, outputs and device counters)
     * replays it without recording; otherwise it re-records its step (host
     * only) and updates the cached executable in place, so instantiation is
     * paid once per batch size. */
    pthread_mutex_t graph_mu;
    struct graph_slot {
        int first, count, batch;
        struct omni_device dev;
        void *exec;
        int busy; /* lent to a running request */
        unsigned long long used;
        int nkey; /* words of key that exec was recorded under; 0: none (always record) */
        uint64_t key[GRAPH_KEY_MAX];
    } graph_slots[8];
    unsigned long long graph_clock;
    /* device counters (position, step) lent to requests, kept so that a later
     * request reads them at the address its cached graph was recorded with */
    struct ctr_slot {
        struct omni_tensor t;
        int busy;
    } ctrs[8];
    /* per stage: the request state kept for the next request of this batch (see
     * keep_limit), or NULL; under graph_mu */
    struct parked {
        void *state;
        int batch;
    } *parked;
};

struct dump_entry {
    char *name;
    struct omni_tensor t; /* host copy */
};

struct omni_request {
    struct omni_pipeline *p;
    struct omni_tensor *inputs; /* per spec input */
    char *task;
    uint64_t seed;
    int64_t max_tokens; /* < 0: the pipeline's */
    struct omni__ynode *options; /* map: stage -> map of options */
    struct omni_params *option_views;
    omni_stream_fn stream_fn;
    void *stream_user;
    omni_progress_fn progress_fn;
    void *progress_user;
    char *dump_path;
    struct dump_entry *dump;
    int n_dump, cap_dump;
    struct omni_tensor *outputs; /* per spec output */
    struct omni_tensor tokens;
    struct omni_run_stats stats;
    int graphs_recorded, graphs_replayed; /* loop runs captured / replayed from an earlier request */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- load ------------------------------------------------------------------------------ */

static int open_weights(struct omni_pipeline *p, const char *path, struct omni_weights **out,
                        struct omni_error *err)
{
    for (int i = 0; i < p->n_files; i++)
        if (!strcmp(omni_weights_path(p->files[i]), path)) {
            *out = p->files[i];
            return OMNI_OK;
        }
    struct omni_weights *w;
    int rc = omni_weights_open(&w, path, err);
    if (rc)
        return rc;
    void *r = realloc(p->files, (size_t)(p->n_files + 1) * sizeof *p->files);
    if (!r) {
        omni_weights_close(w);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    p->files = r;
    p->files[p->n_files++] = w;
    *out = w;
    return OMNI_OK;
}

static int attach_adapter(struct omni_pipeline *p, struct omni__stage_inst *adapter,
                          const char *attach, const char *where, struct omni_error *err)
{
    const char *dot = strchr(attach, '.');
    char target[128];
    if (!dot)
        return omni_error_set(err, OMNI_EINVAL, "%s: attach '%s' must be stage.linear", where, attach);
    snprintf(target, sizeof target, "%.*s", (int)(dot - attach), attach);
    int ti = omni__spec_stage_index(p->spec, target);
    if (ti < 0)
        return omni_error_set(err, OMNI_ENOTFOUND, "%s: attach target stage '%s' does not exist", where, target);
    struct omni__stage_inst *t = &p->stages[ti];
    if (!t->stage) /* hosted by a worker process */
        return omni_error_set(err, OMNI_EUNSUPPORTED, "%s: stage '%s' runs in another process; adapters attach "
                              "there only through placement:", where, target);
    const struct omni_stage_ops *o = t->plugin->desc->ops;
    if (!OMNI__HAS_OP(o, attach))
        return omni_error_set(err, OMNI_EUNSUPPORTED, "%s: stage '%s' accepts no adapters", where, target);
    struct omni_error local;
    omni_error_clear(&local);
    int rc = o->attach(t->stage, dot + 1, adapter->stage, &local);
    if (rc)
        omni_error_set(err, rc, "%s: attaching '%s' to %s: %s", where, adapter->name, attach, local.msg);
    return rc;
}

int omni_pipeline_validate(const char *yaml_path, const struct omni_pipeline_options *opt,
                           struct omni_error *err)
{
    struct omni__pipeline_spec *spec;
    int rc = omni__pipeline_parse(yaml_path, opt, &spec, err);
    if (rc)
        return rc;
    rc = omni__pipeline_check(spec, err);
    omni__pipeline_spec_free(spec);
    return rc;
}

int omni_pipeline_load(struct omni_pipeline **out, const char *yaml_path,
                       const struct omni_pipeline_options *opt, struct omni_error *err)
{
    *out = NULL;
    struct omni__pipeline_spec *spec;
    int rc = omni__pipeline_parse(yaml_path, opt, &spec, err);
    if (rc)
        return rc;
    if ((rc = omni__pipeline_check(spec, err))) {
        omni__pipeline_spec_free(spec);
        return rc;
    }
    struct omni_pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->stages = calloc((size_t)spec->n_stages, sizeof *p->stages))) {
        free(p);
        omni__pipeline_spec_free(spec);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    p->spec = spec;
    pthread_mutex_init(&p->graph_mu, NULL);
    p->parked = calloc((size_t)spec->n_stages, sizeof *p->parked); /* NULL: no states kept */
    /* placement: start / connect the workers and load their stages (core/ipc) */
    if (spec->n_placements && !omni__ipc_open) {
        rc = omni_error_set(err, OMNI_EUNSUPPORTED, "%s: placement: this build has no core/ipc", spec->file);
        goto fail;
    }
    if (spec->n_placements && (rc = omni__ipc_open(&p->ipc, spec, err)))
        goto fail;
    for (int i = 0; i < spec->n_stages; i++) {
        struct omni__stage_spec *st = &spec->stages[i];
        if (st->process >= 0) { /* a proxy: ports and device only; the stage lives in its worker */
            omni__ipc_stage_proxy(p->ipc, i, &p->stages[i]);
            continue;
        }
        char where[600];
        snprintf(where, sizeof where, "%s:%d:%d", spec->file, st->loc.line, st->loc.col);
        if (st->device.type == OMNI_DEVICE_CUDA && st->device.index >= omni_cuda_device_count()) {
            rc = omni_error_set(err, OMNI_EDEVICE, "%s: stage '%s' is placed on cuda:%d but %d CUDA device(s) are usable here (use --device cpu)",
                                where, st->name, st->device.index, omni_cuda_device_count());
            goto fail;
        }
        OMNI_LOG(OMNI_LOG_INFO, "creating stage '%s' (%s)", st->name, st->type);
        if ((rc = omni__stage_create(&p->stages[i], st->plugin, st->name, st->params, st->device,
                                     st->dtype, where, err)))
            goto fail;
        struct omni_weights *w = NULL;
        if (st->weights) {
            char wwhere[600];
            snprintf(wwhere, sizeof wwhere, "%s:%d:%d", spec->file, st->weights_loc.line, st->weights_loc.col);
            struct omni_error local;
            omni_error_clear(&local);
            if ((rc = open_weights(p, st->weights, &w, &local))) {
                omni_error_set(err, rc, "%s: stage '%s': %s", wwhere, st->name, local.msg);
                goto fail;
            }
            OMNI_LOG(OMNI_LOG_INFO, "loading weights of '%s' from %s", st->name, st->weights);
        }
        if ((rc = omni__stage_load(&p->stages[i], w, st->prefix, where, err)))
            goto fail;
    }
    for (int i = 0; i < spec->n_stages; i++) {
        struct omni__stage_spec *st = &spec->stages[i];
        if (!st->attach || st->process >= 0) /* remote adapters were attached by their worker */
            continue;
        char where[600];
        snprintf(where, sizeof where, "%s:%d:%d", spec->file, st->loc.line, st->loc.col);
        if ((rc = attach_adapter(p, &p->stages[i], st->attach, where, err)))
            goto fail;
    }
    *out = p;
    return OMNI_OK;
fail:
    omni_pipeline_free(p);
    return rc;
}

void omni_pipeline_free(struct omni_pipeline *p)
{
    if (!p)
        return;
    /* the request states kept for a next request, while their stages exist */
    for (int i = 0; p->parked && p->spec && i < p->spec->n_stages; i++) {
        if (!p->parked[i].state) /* only states of created stages are kept */
            continue;
        const struct omni_stage_ops *o = p->spec->stages[i].plugin->desc->ops;
        if (p->stages[i].stage && OMNI__HAS_OP(o, state_free))
            o->state_free(p->stages[i].stage, p->parked[i].state);
        p->parked[i].state = NULL;
    }
    /* stages first (they may hold adapters), then adapters, then files */
    for (int i = 0; p->spec && i < p->spec->n_stages; i++)
        if (!p->spec->stages[i].attach && p->stages[i].stage)
            omni__stage_destroy(&p->stages[i]);
    for (int i = 0; p->spec && i < p->spec->n_stages; i++)
        if (p->stages[i].stage)
            omni__stage_destroy(&p->stages[i]);
    for (int i = 0; i < p->n_extra; i++)
        omni__stage_destroy(&p->extra[i]);
    free(p->extra);
    if (p->ipc)
        omni__ipc_close(p->ipc); /* stops auto workers; proxies in p->stages own nothing */
    free(p->stages);
    for (int i = 0; i < p->n_files; i++)
        omni_weights_close(p->files[i]);
    free(p->files);
    for (int i = 0; i < (int)(sizeof p->graph_slots / sizeof p->graph_slots[0]); i++)
        omni__graph_free(p->graph_slots[i].exec);
    for (int i = 0; i < (int)(sizeof p->ctrs / sizeof p->ctrs[0]); i++)
        omni_tensor_release(&p->ctrs[i].t);
    free(p->parked);
    pthread_mutex_destroy(&p->graph_mu);
    omni__pipeline_spec_free(p->spec);
    free(p);
}

const char *omni_pipeline_name(const struct omni_pipeline *p) { return p->spec->name; }

const char *omni_pipeline_input_name(const struct omni_pipeline *p, int i)
{
    return i >= 0 && i < p->spec->n_inputs ? p->spec->inputs[i].name : NULL;
}

const char *omni_pipeline_output_name(const struct omni_pipeline *p, int i)
{
    return i >= 0 && i < p->spec->n_outputs ? p->spec->outputs[i].name : NULL;
}

int omni_pipeline_stage_count(const struct omni_pipeline *p) { return p->spec->n_stages; }

const char *omni_pipeline_stage_name(const struct omni_pipeline *p, int i)
{
    return i >= 0 && i < p->spec->n_stages ? p->spec->stages[i].name : NULL;
}

const char *omni_pipeline_stage_type(const struct omni_pipeline *p, int i)
{
    return i >= 0 && i < p->spec->n_stages ? p->spec->stages[i].type : NULL;
}

int omni_pipeline_has_loop(const struct omni_pipeline *p) { return p->spec->has_loop; }

int omni_pipeline_output_streams(const struct omni_pipeline *p, int i)
{
    if (i < 0 || i >= p->spec->n_outputs)
        return 0;
    int s = p->spec->outputs[i].ep.stage_idx;
    for (int k = 0; s >= 0 && k < p->spec->n_order[OMNI__PHASE_LOOP]; k++)
        if (p->spec->order[OMNI__PHASE_LOOP][k] == s)
            return 1;
    return 0;
}

int omni_pipeline_attach(struct omni_pipeline *p, const char *name, const char *type,
                         const char *target, const char *weights, const char *prefix,
                         const char *const *params, int n_params, struct omni_error *err)
{
    const struct omni__plugin *plug;
    int rc = omni__plugin_find(type, (const char *const *)p->spec->plugin_dirs, p->spec->n_plugin_dirs, &plug, err);
    if (rc)
        return rc;
    if (!plug->desc->adapter)
        return omni_error_set(err, OMNI_EINVAL, "plugin '%s' is not an adapter", type);
    struct omni__ynode *map = omni__ynode_new_map(NULL, 0, 0);
    if (!map)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (int i = 0; i < n_params; i++) {
        const char *eq = strchr(params[i], '=');
        char key[128];
        if (!eq || (size_t)(eq - params[i]) >= sizeof key) {
            omni__ynode_free(map);
            return omni_error_set(err, OMNI_EINVAL, "adapter param '%s' must be key=value", params[i]);
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - params[i]), params[i]);
        if (omni__ymap_set_scalar(map, key, eq + 1, NULL, 0, 0)) {
            omni__ynode_free(map);
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        }
    }
    void *r = realloc(p->extra, (size_t)(p->n_extra + 1) * sizeof *p->extra);
    if (!r) {
        omni__ynode_free(map);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    p->extra = r;
    struct omni__stage_inst *si = &p->extra[p->n_extra];
    const char *dot = strchr(target, '.');
    char tname[128];
    snprintf(tname, sizeof tname, "%.*s", dot ? (int)(dot - target) : (int)strlen(target), target);
    int ti = omni__spec_stage_index(p->spec, tname);
    struct omni_device dev = ti >= 0 ? p->stages[ti].device : OMNI_CPU;
    int dtype = ti >= 0 ? p->stages[ti].dtype : OMNI_DTYPE_F32;
    rc = omni__stage_create(si, plug, name, map, dev, dtype, "omni_pipeline_attach", err);
    omni__ynode_free(map);
    if (rc)
        return rc;
    struct omni_weights *w = NULL;
    if (weights && (rc = open_weights(p, weights, &w, err))) {
        omni__stage_destroy(si);
        return rc;
    }
    if ((rc = omni__stage_load(si, w, prefix, "omni_pipeline_attach", err)) ||
        (rc = attach_adapter(p, si, target, "omni_pipeline_attach", err))) {
        omni__stage_destroy(si);
        return rc;
    }
    p->n_extra++;
    return OMNI_OK;
}

/* ---- requests ------------------------------------------------------------------------ */

struct omni_request *omni_request_new(struct omni_pipeline *p)
{
    struct omni_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->p = p;
    r->max_tokens = -1;
    r->inputs = calloc((size_t)p->spec->n_inputs + 1, sizeof *r->inputs);
    r->outputs = calloc((size_t)p->spec->n_outputs + 1, sizeof *r->outputs);
    r->option_views = calloc((size_t)p->spec->n_stages + 1, sizeof *r->option_views);
    r->options = omni__ynode_new_map(NULL, 0, 0);
    if (!r->inputs || !r->outputs || !r->option_views || !r->options) {
        omni_request_free(r);
        return NULL;
    }
    return r;
}

static void dump_clear(struct omni_request *r)
{
    for (int i = 0; i < r->n_dump; i++) {
        free(r->dump[i].name);
        omni_tensor_release(&r->dump[i].t);
    }
    free(r->dump);
    r->dump = NULL;
    r->n_dump = r->cap_dump = 0;
}

static void outputs_clear(struct omni_request *r)
{
    for (int i = 0; i < r->p->spec->n_outputs; i++)
        omni_tensor_release(&r->outputs[i]);
    omni_tensor_release(&r->tokens);
}

void omni_request_free(struct omni_request *r)
{
    if (!r)
        return;
    for (int i = 0; r->inputs && i < r->p->spec->n_inputs; i++)
        omni_tensor_release(&r->inputs[i]);
    if (r->outputs)
        outputs_clear(r);
    free(r->inputs);
    free(r->outputs);
    free(r->option_views);
    omni__ynode_free(r->options);
    dump_clear(r);
    free(r->task);
    free(r->dump_path);
    free(r);
}

static int input_index(struct omni_request *r, const char *name, struct omni_error *err)
{
    for (int i = 0; i < r->p->spec->n_inputs; i++)
        if (!strcmp(r->p->spec->inputs[i].name, name))
            return i;
    char names[512] = "";
    size_t used = 0;
    for (int i = 0; i < r->p->spec->n_inputs; i++)
        used += (size_t)snprintf(names + used, used < sizeof names ? sizeof names - used : 0, "%s%s",
                                 i ? ", " : "", r->p->spec->inputs[i].name);
    return omni_error_set(err, OMNI_ENOTFOUND, "pipeline '%s' has no input '%s' (inputs: %s)",
                          r->p->spec->name, name, names[0] ? names : "none");
}

int omni_request_set_input(struct omni_request *r, const char *name, const struct omni_tensor *t,
                           struct omni_error *err)
{
    int i = input_index(r, name, err);
    if (i < 0)
        return i;
    struct omni_tensor copy;
    int rc = omni_tensor_copy_to(&copy, t, t->device, err);
    if (rc)
        return rc;
    omni_tensor_release(&r->inputs[i]);
    r->inputs[i] = copy;
    return OMNI_OK;
}

int omni_request_set_texts(struct omni_request *r, const char *name, const char *const *texts,
                           int n, struct omni_error *err)
{
    int i = input_index(r, name, err);
    if (i < 0)
        return i;
    if (n < 1)
        return omni_error_set(err, OMNI_EINVAL, "input '%s': no text given", name);
    size_t maxlen = 0;
    for (int k = 0; k < n; k++)
        if (strlen(texts[k]) > maxlen)
            maxlen = strlen(texts[k]);
    struct omni_tensor t;
    int64_t shape[2] = {n, (int64_t)maxlen + 1};
    int rc = omni_tensor_alloc(&t, OMNI_DTYPE_U8, 2, shape, OMNI_CPU, err);
    if (rc)
        return rc;
    for (int k = 0; k < n; k++)
        memcpy((char *)omni_tensor_data(&t) + (size_t)k * (maxlen + 1), texts[k], strlen(texts[k]));
    omni_tensor_release(&r->inputs[i]);
    r->inputs[i] = t;
    return OMNI_OK;
}

int omni_request_set_text(struct omni_request *r, const char *name, const char *text,
                          struct omni_error *err)
{
    return omni_request_set_texts(r, name, &text, 1, err);
}

void omni_request_set_task(struct omni_request *r, const char *task)
{
    char *t = task ? strdup(task) : NULL;
    free(r->task);
    r->task = t;
}

void omni_request_set_seed(struct omni_request *r, uint64_t seed) { r->seed = seed; }
void omni_request_set_max_tokens(struct omni_request *r, int64_t n) { r->max_tokens = n; }

int omni_request_set_option(struct omni_request *r, const char *assignment, struct omni_error *err)
{
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || dot == assignment || eq == dot + 1)
        return omni_error_set(err, OMNI_EINVAL, "option '%s' must be stage.key=value", assignment);
    char stage[128], key[128];
    snprintf(stage, sizeof stage, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    int si = omni__spec_stage_index(r->p->spec, stage);
    if (si < 0)
        return omni_error_set(err, OMNI_ENOTFOUND, "option '%s': no stage '%s'", assignment, stage);
    struct omni__ynode *m = omni__ymap_get(r->options, stage);
    if (!m) {
        if (omni__ymap_set_scalar(r->options, stage, "", NULL, 0, 0))
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        int idx = omni__ymap_index(r->options, stage);
        struct omni__ynode *old = r->options->items[idx];
        m = omni__ynode_new_map(NULL, 0, 0);
        if (!m)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        r->options->items[idx] = m;
        omni__ynode_free(old);
    }
    if (omni__ymap_set_scalar(m, key, eq + 1, NULL, 0, 0))
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    r->option_views[si] = omni__params_of(m);
    return OMNI_OK;
}

void omni_request_on_stream(struct omni_request *r, omni_stream_fn fn, void *user)
{
    r->stream_fn = fn;
    r->stream_user = user;
}

void omni_request_on_progress(struct omni_request *r, omni_progress_fn fn, void *user)
{
    r->progress_fn = fn;
    r->progress_user = user;
}

void omni_request_set_dump(struct omni_request *r, const char *path)
{
    char *d = path ? strdup(path) : NULL;
    free(r->dump_path);
    r->dump_path = d;
}

const struct omni_tensor *omni_request_output(const struct omni_request *r, const char *name)
{
    for (int i = 0; i < r->p->spec->n_outputs; i++)
        if (!strcmp(r->p->spec->outputs[i].name, name))
            return r->outputs[i].buf ? &r->outputs[i] : NULL;
    return NULL;
}

const struct omni_tensor *omni_request_tokens(const struct omni_request *r)
{
    return r->tokens.buf ? &r->tokens : NULL;
}

void omni_request_stats(const struct omni_request *r, struct omni_run_stats *st) { *st = r->stats; }

void omni_request_graph_stats(const struct omni_request *r, int *recorded, int *replayed)
{
    if (recorded)
        *recorded = r->graphs_recorded;
    if (replayed)
        *replayed = r->graphs_replayed;
}

/* ---- running ---------------------------------------------------------------------------- */

struct run {
    struct omni_pipeline *p;
    struct omni_request *r;
    struct omni__pipeline_spec *spec;
    void **states;
    int *have_state;
    struct omni_tensor **outs; /* per stage, per OUT port: latest value */
    int *n_out;
    struct omni_tensor *fed; /* captured feed values, per feed edge */
    int64_t position;
    int batch;
    struct omni_tensor tokens; /* [B, cap] i32 */
    int64_t n_tokens;
    int64_t prefill_advance; /* largest io->advance of the prefill */
    struct omni__ipc_request *ipc_req; /* calls of remote stages in this run (core/ipc) */
    int capturing;            /* inside a CUDA-graph capture: no dump, no streaming */
    struct omni_tensor ctr;   /* int64 [2] (position, step) on the loop's CUDA device */
    int ctr_slot;             /* p->ctrs index lent to this run, -1 when none */
    struct loop_run {         /* consecutive graph-safe loop stages on one CUDA device */
        int first, count;
        struct omni_device dev;
        void *exec;
        int slot;   /* p->graph_slots index lent to this run, -1 when none */
        int disabled;
        const void *inputs[32]; /* data addresses fed into the run from outside, at capture */
        int n_inputs;
        int nkey; /* the key exec was recorded under (0: none), given to the cache with it */
        uint64_t key[GRAPH_KEY_MAX];
    } runs[8];
    int n_runs;
    struct omni_tensor dtokens; /* deferred collection: [B, cap] i32 on the device */
    int defer_tokens;
    /* deferred collection with stop ids: the host checks token `checked` once
     * it is `lag` tokens old (core/graph.c omni__lag), then trims */
    struct omni__lag *lag;
    int lag_n;
    int64_t checked;
};

static int dump_add(struct omni_request *r, const char *name, const struct omni_tensor *t,
                    struct omni_error *err)
{
    if (!r->dump_path || !t->buf)
        return OMNI_OK;
    if (r->n_dump == r->cap_dump) {
        int cap = r->cap_dump ? 2 * r->cap_dump : 64;
        void *n = realloc(r->dump, (size_t)cap * sizeof *r->dump);
        if (!n)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        r->dump = n;
        r->cap_dump = cap;
    }
    struct dump_entry *e = &r->dump[r->n_dump];
    int rc = omni_tensor_copy_to(&e->t, t, OMNI_CPU, err);
    if (rc)
        return rc;
    if (!(e->name = strdup(name))) {
        omni_tensor_release(&e->t);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    r->n_dump++;
    return OMNI_OK;
}

static const struct omni_port_desc *in_port(struct run *R, int s, int p)
{
    return omni__plugin_port(R->spec->stages[s].plugin->desc, OMNI_PORT_IN, p);
}

/* Put a reference to src into dst, on the device the consumer needs. */
static int route(struct run *R, int s, int p, const struct omni_tensor *src, struct omni_tensor *dst,
                 struct omni_error *err)
{
    const struct omni_port_desc *pd = in_port(R, s, p);
    struct omni_device need = (pd->flags & OMNI_PORT_HOST) ? OMNI_CPU : R->p->stages[s].device;
    if (!src->buf) {
        memset(dst, 0, sizeof *dst);
        return OMNI_OK;
    }
    if (omni_device_eq(src->device, need)) {
        omni_tensor_ref(dst, src);
        return OMNI_OK;
    }
    return omni_tensor_copy_to(dst, src, need, err);
}

static int stream_outputs(struct run *R, int s)
{
    struct omni__pipeline_spec *spec = R->spec;
    if (!R->r->stream_fn)
        return 0;
    for (int i = 0; i < spec->n_outputs; i++) {
        struct omni__endpoint *ep = &spec->outputs[i].ep;
        if (ep->stage_idx != s)
            continue;
        /* streamed when the stage runs in the loop */
        int in_loop = 0;
        for (int k = 0; k < spec->n_order[OMNI__PHASE_LOOP]; k++)
            in_loop |= spec->order[OMNI__PHASE_LOOP][k] == s;
        if (in_loop && R->outs[s][ep->port_idx].buf)
            R->r->stream_fn(R->r, spec->outputs[i].name, &R->outs[s][ep->port_idx], R->r->stream_user);
    }
    return 0;
}

/* Dump and stream what stage s just produced (also after a graph replay). */
static int after_call(struct run *R, int phase, int s, int64_t step, struct omni_error *err)
{
    struct omni__stage_inst *si = &R->p->stages[s];
    const struct omni_plugin_desc *d = si->plugin->desc;
    int rc = OMNI_OK;
    if (R->r->dump_path) {
        for (int k = 0; k < R->n_out[s] && !rc; k++) {
            char name[300];
            const struct omni_port_desc *pd = omni__plugin_port(d, OMNI_PORT_OUT, k);
            if (phase == OMNI__PHASE_LOOP)
                snprintf(name, sizeof name, "%s.%s.step%lld", si->name, pd->name, (long long)step);
            else
                snprintf(name, sizeof name, "%s.%s", si->name, pd->name);
            rc = dump_add(R->r, name, &R->outs[s][k], err);
        }
    }
    stream_outputs(R, s);
    return rc;
}

/* Take the state an earlier request of this batch left for stage s; 0 when none. */
static int state_unpark(struct run *R, int s)
{
    struct omni_pipeline *p = R->p;
    int got = 0;
    if (!p->parked)
        return 0;
    pthread_mutex_lock(&p->graph_mu);
    if (p->parked[s].state && p->parked[s].batch == R->batch) {
        R->states[s] = p->parked[s].state;
        p->parked[s].state = NULL;
        got = 1;
    }
    pthread_mutex_unlock(&p->graph_mu);
    return got;
}

/* What stage s sees of the request in a call at `step` (-1: the prefill). */
static struct omni_run_ctx stage_ctx(struct run *R, int s, int64_t step)
{
    struct omni_run_ctx ctx = {
        .size = sizeof ctx,
        .task = R->r->task ? R->r->task : R->spec->task,
        .position = R->position,
        .step = step,
        .seed = R->r->seed,
        .batch = R->batch,
        .options = R->r->option_views[s].map ? &R->r->option_views[s] : NULL,
    };
    if (R->ctr.buf && omni_device_eq(R->ctr.device, R->p->stages[s].device)) {
        ctx.position_dev = omni_tensor_data(&R->ctr);
        ctx.step_dev = ctx.position_dev + 1;
    }
    return ctx;
}

static int call_stage(struct run *R, int phase, int s, int64_t step, struct omni_error *err)
{
    struct omni__pipeline_spec *spec = R->spec;
    struct omni__stage_inst *si = &R->p->stages[s];
    const struct omni_plugin_desc *d = si->plugin->desc;
    int nin = omni__plugin_port_count(d, OMNI_PORT_IN);
    int nout = R->n_out[s];
    struct omni_tensor *in = calloc((size_t)nin + 1, sizeof *in);
    if (!in)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    int rc = OMNI_OK;
    /* gather inputs */
    for (int i = 0; !rc && i < spec->n_edges[phase]; i++) {
        struct omni__edge *e = &spec->edges[phase][i];
        if (e->to.stage_idx != s)
            continue;
        const struct omni_tensor *src = e->from.stage_idx < 0 ? &R->tokens : &R->outs[e->from.stage_idx][e->from.port_idx];
        if (!src->buf) {
            rc = omni_error_set(err, OMNI_ESTATE, "%s:%d:%d: %s.%s produced no value for %s.%s", spec->file,
                                e->loc.line, e->loc.col, e->from.stage, e->from.port, e->to.stage, e->to.port);
            break;
        }
        rc = route(R, s, e->to.port_idx, src, &in[e->to.port_idx], err);
    }
    if (phase == OMNI__PHASE_PREFILL)
        for (int i = 0; !rc && i < spec->n_inputs; i++) {
            struct omni__binding *b = &spec->inputs[i];
            if (b->ep.stage_idx != s)
                continue;
            if (!R->r->inputs[i].buf) {
                /* every declared input is required: a pipeline that can do without one
                 * should not declare it */
                rc = omni_error_set(err, OMNI_EINVAL, "pipeline '%s' needs input '%s' (for %s.%s%s)", spec->name,
                                    b->name, b->ep.stage, b->ep.port,
                                    !strcmp(b->name, "prompt") ? "; omni run: --prompt TEXT"
                                    : !strcmp(b->name, "image") ? "; omni run: --image FILE" : "");
                continue;
            }
            rc = route(R, s, b->ep.port_idx, &R->r->inputs[i], &in[b->ep.port_idx], err);
        }
    if (phase == OMNI__PHASE_LOOP)
        for (int i = 0; !rc && i < spec->n_feed; i++)
            if (spec->feed[i].to.stage_idx == s)
                rc = route(R, s, spec->feed[i].to.port_idx, &R->fed[i], &in[spec->feed[i].to.port_idx], err);
    struct omni_run_ctx ctx = stage_ctx(R, s, step);
    const struct omni_stage_ops *o = d->ops;
    struct omni_tensor *out = calloc((size_t)nout + 1, sizeof *out);
    if (!out && !rc)
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
    int remote = spec->stages[s].process >= 0; /* hosted by a worker, which keeps its state */
    if (!rc && !remote && !R->have_state[s] && state_unpark(R, s)) {
        R->have_state[s] = 1;
    } else if (!rc && !remote && !R->have_state[s] && OMNI__HAS_OP(o, state_new)) {
        struct omni_error local;
        omni_error_clear(&local);
        rc = o->state_new(si->stage, &ctx, &R->states[s], &local);
        if (rc)
            omni_error_set(err, rc, "stage '%s' (%s): %s", si->name, d->name, local.msg);
        else
            R->have_state[s] = 1;
    }
    int64_t advance = 0;
    if (!rc) {
        struct omni_io io = {.n_in = (uint32_t)nin, .n_out = (uint32_t)nout, .in = in, .out = out, .ctx = &ctx};
        struct omni_error local;
        omni_error_clear(&local);
        int use_step = phase == OMNI__PHASE_LOOP && OMNI__HAS_OP(o, step);
        if (remote)
            rc = omni__ipc_call(R->p->ipc, &R->ipc_req, s, use_step, &io, &local);
        else {
            const char *prev_tag = omni__alloc_tag_set(si->name); /* OMNI_CUDA_MEMLOG */
            rc = use_step ? o->step(si->stage, R->states[s], &io, &local) : o->forward(si->stage, R->states[s], &io, &local);
            omni__alloc_tag_set(prev_tag);
        }
        advance = io.advance;
        if (rc < 0) {
            /* plugins often name themselves already ("stage 'x': ..."): say it once */
            char own[160];
            snprintf(own, sizeof own, "stage '%s': ", si->name);
            const char *msg = local.msg[0] ? local.msg : omni_status_str(rc);
            if (!strncmp(msg, own, strlen(own)))
                msg += strlen(own);
            omni_error_set(err, rc, "stage '%s' (%s)%s: %s", si->name, d->name,
                           phase == OMNI__PHASE_LOOP ? " in the generation loop" : "", msg);
        }
        else if (rc == OMNI_DONE && local.msg[0])
            OMNI_LOG(OMNI_LOG_INFO, "stage '%s' ended the loop: %s", si->name, local.msg);
    }
    if (rc == OMNI_OK) {
        for (int k = 0; k < nout; k++) {
            omni_tensor_release(&R->outs[s][k]);
            R->outs[s][k] = out[k];
            memset(&out[k], 0, sizeof out[k]);
        }
        if (phase == OMNI__PHASE_PREFILL && advance > R->prefill_advance)
            R->prefill_advance = advance;
        if (!R->capturing)
            rc = after_call(R, phase, s, step, err);
    }
    for (int k = 0; out && k < nout; k++)
        omni_tensor_release(&out[k]);
    for (int k = 0; k < nin; k++)
        omni_tensor_release(&in[k]);
    free(out);
    free(in);
    return rc;
}

static int batch_of_inputs(struct omni_request *r)
{
    for (int i = 0; i < r->p->spec->n_inputs; i++)
        if (r->inputs[i].buf && r->inputs[i].ndim > 0)
            return (int)r->inputs[i].shape[0];
    return 1;
}

static int collect_token(struct run *R, struct omni_error *err)
{
    struct omni__endpoint *ep = &R->spec->loop_tokens;
    const struct omni_tensor *t = &R->outs[ep->stage_idx][ep->port_idx];
    if (!t->buf)
        return omni_error_set(err, OMNI_ESTATE, "loop.tokens '%s.%s' produced no value", ep->stage, ep->port);
    if (R->defer_tokens && t->device.type == OMNI_DEVICE_CUDA && t->dtype == OMNI_DTYPE_I32 && t->ndim >= 1 &&
        omni_tensor_is_contiguous(t)) {
        int64_t rows = t->shape[0], per_row = omni_tensor_numel(t) / (rows ? rows : 1);
        if (!R->dtokens.buf) {
            int64_t cap = R->r->max_tokens > 0 ? R->r->max_tokens : R->spec->max_tokens;
            int64_t shape[2] = {rows, cap};
            int rc = omni_tensor_alloc(&R->dtokens, OMNI_DTYPE_I32, 2, shape, t->device, err);
            if (rc)
                return rc;
            R->batch = (int)rows;
        }
        if (rows != R->dtokens.shape[0] || per_row != 1 || R->n_tokens >= R->dtokens.shape[1])
            return omni_error_set(err, OMNI_ESHAPE, "loop.tokens '%s.%s' must give one token per row", ep->stage, ep->port);
        int rc = omni__graph_copy_column(t->device, omni_tensor_data(&R->dtokens), R->dtokens.shape[1], R->n_tokens,
                                         omni_tensor_data(t), 1, rows, err);
        if (!rc && R->spec->n_stop_ids && !R->lag)
            rc = omni__lag_new(t->device, R->lag_n + 2, rows, &R->lag, err);
        if (!rc && R->lag)
            rc = omni__lag_push(R->lag, R->n_tokens, omni_tensor_data(t), 1, err);
        if (!rc)
            R->n_tokens++;
        return rc;
    }
    struct omni_tensor host;
    int rc = omni_tensor_convert(&host, t, OMNI_DTYPE_I32, err);
    if (rc)
        return rc;
    int64_t n = omni_tensor_numel(&host);
    if (!R->tokens.buf) {
        R->batch = (int)n;
        int64_t cap = R->r->max_tokens > 0 ? R->r->max_tokens : R->spec->max_tokens;
        int64_t shape[2] = {n, cap};
        rc = omni_tensor_alloc(&R->tokens, OMNI_DTYPE_I32, 2, shape, OMNI_CPU, err);
        if (rc) {
            omni_tensor_release(&host);
            return rc;
        }
        R->tokens.shape[1] = 0; /* grows as tokens arrive; row stride stays cap */
    }
    if (n != R->tokens.shape[0]) {
        omni_tensor_release(&host);
        return omni_error_set(err, OMNI_ESHAPE, "loop.tokens changed batch size from %lld to %lld",
                              (long long)R->tokens.shape[0], (long long)n);
    }
    int32_t *dst = omni_tensor_data(&R->tokens);
    const int32_t *src = omni_tensor_data(&host);
    for (int64_t b = 0; b < n; b++)
        dst[b * R->tokens.strides[0] + R->tokens.shape[1]] = src[b];
    R->tokens.shape[1]++;
    R->n_tokens = R->tokens.shape[1];
    omni_tensor_release(&host);
    return OMNI_OK;
}

static int all_rows_stop(const struct run *R, const int32_t *col, int64_t rows, int64_t stride)
{
    for (int64_t b = 0; b < rows; b++) {
        int hit = 0;
        for (int i = 0; i < R->spec->n_stop_ids; i++)
            hit |= col[b * stride] == R->spec->stop_ids[i];
        if (!hit)
            return 0;
    }
    return 1;
}

/* Lagged stop checks (tokens collected on the device): check every token that
 * is at least `upto_lag` tokens old; on a stop at token j keep tokens 0..j. */
static int lag_check(struct run *R, int upto_lag, int *stop, struct omni_error *err)
{
    *stop = 0;
    while (R->lag && R->checked < R->n_tokens - upto_lag) {
        const int32_t *col;
        int rc = omni__lag_read(R->lag, R->checked, &col, err);
        if (rc)
            return rc;
        if (all_rows_stop(R, col, R->dtokens.shape[0], 1)) {
            R->n_tokens = R->checked + 1;
            *stop = 1;
            return OMNI_OK;
        }
        R->checked++;
    }
    return OMNI_OK;
}

static int should_stop(struct run *R, int64_t max_tokens, int *rcp, struct omni_error *err)
{
    if (R->lag) {
        int stop;
        if ((*rcp = lag_check(R, R->lag_n, &stop, err)) || stop)
            return 1;
    }
    if (R->n_tokens >= max_tokens)
        return 1;
    if (!R->spec->n_stop_ids || !R->tokens.buf) /* tokens on the device: the lag ring checks them */
        return 0;
    const int32_t *tok = omni_tensor_data(&R->tokens);
    return all_rows_stop(R, tok + R->tokens.shape[1] - 1, R->tokens.shape[0], R->tokens.strides[0]);
}

/* ---- the loop on CUDA: graphs, device counters, deferred token collection ---------------- */

static int graphs_enabled(void)
{
    const char *e = getenv("OMNI_CUDA_GRAPHS");
    return !(e && !strcmp(e, "0"));
}

/* The request's device counters: an idle pooled pair on dev (the same address a cached
 * graph may read), else a new one, pooled when there is room. */
static int ctr_take(struct run *R, struct omni_device dev, struct omni_error *err)
{
    struct omni_pipeline *p = R->p;
    const int n = (int)(sizeof p->ctrs / sizeof p->ctrs[0]);
    int rc = OMNI_OK;
    R->ctr_slot = -1;
    pthread_mutex_lock(&p->graph_mu);
    int pick = -1;
    for (int i = 0; i < n && pick < 0; i++)
        if (p->ctrs[i].t.buf && !p->ctrs[i].busy && omni_device_eq(p->ctrs[i].t.device, dev))
            pick = i;
    for (int i = 0; i < n && pick < 0; i++)
        if (!p->ctrs[i].t.buf) {
            const int64_t shape[1] = {2};
            if ((rc = omni_tensor_alloc(&p->ctrs[i].t, OMNI_DTYPE_I64, 1, shape, dev, err)))
                break;
            pick = i;
        }
    if (pick >= 0) {
        p->ctrs[pick].busy = 1;
        omni_tensor_ref(&R->ctr, &p->ctrs[pick].t);
        R->ctr_slot = pick;
    }
    pthread_mutex_unlock(&p->graph_mu);
    if (rc || pick >= 0)
        return rc;
    const int64_t shape[1] = {2}; /* every pooled pair is lent: a private one */
    return omni_tensor_alloc(&R->ctr, OMNI_DTYPE_I64, 1, shape, dev, err);
}

/* Give the counters back once nothing queued by this request reads or writes them (a
 * stop can leave a few steps queued; the next borrower may run on another stream). When
 * the wait fails the pair stays lent (freed with the pipeline). */
static void ctr_give(struct run *R)
{
    struct omni_error e;
    omni_error_clear(&e);
    const int idle = R->ctr_slot < 0 || omni__graph_sync(R->ctr.device, &e) == OMNI_OK;
    omni_tensor_release(&R->ctr);
    if (R->ctr_slot < 0)
        return;
    if (idle) {
        pthread_mutex_lock(&R->p->graph_mu);
        R->p->ctrs[R->ctr_slot].busy = 0;
        pthread_mutex_unlock(&R->p->graph_mu);
    }
    R->ctr_slot = -1;
}

/* Find runs of graph-safe loop stages on one CUDA device; give the loop's CUDA
 * stages a device copy of (position, step); decide whether tokens can be
 * collected on the device (no stop ids to check, no dump). */
static int loop_prepare(struct run *R, struct omni_error *err)
{
    struct omni__pipeline_spec *spec = R->spec;
    const int *order = spec->order[OMNI__PHASE_LOOP];
    int n = spec->n_order[OMNI__PHASE_LOOP];
    struct omni_device cuda = {-1, 0};
    for (int k = 0; k < n; k++)
        if (R->p->stages[order[k]].device.type == OMNI_DEVICE_CUDA && cuda.type < 0)
            cuda = R->p->stages[order[k]].device;
    if (cuda.type < 0)
        return OMNI_OK;
    int rc = ctr_take(R, cuda, err);
    if (rc)
        return rc;
    for (int k = 0; graphs_enabled() && k < n && R->n_runs < (int)(sizeof R->runs / sizeof R->runs[0]);) {
        int len = 0;
        while (k + len < n) {
            const struct omni__stage_inst *si = &R->p->stages[order[k + len]];
            if (si->device.type != OMNI_DEVICE_CUDA || !omni_device_eq(si->device, cuda) ||
                !(si->plugin->desc->size >= sizeof(struct omni_plugin_desc) &&
                  (si->plugin->desc->flags & OMNI_PLUGIN_GRAPH_SAFE)))
                break;
            len++;
        }
        if (len > 0) {
            R->runs[R->n_runs++] = (struct loop_run){.first = k, .count = len, .dev = cuda, .slot = -1};
            k += len;
        } else {
            k++;
        }
    }
    /* tokens stay on the device unless --dump wants every step; stop ids are then
     * checked `lag_n` tokens late (OMNI_STOP_LAG, default 4): the device keeps a
     * few steps queued instead of waiting for the host after every token */
    const struct omni__endpoint *tok = &spec->loop_tokens;
    R->defer_tokens = !R->r->dump_path && R->p->stages[tok->stage_idx].device.type == OMNI_DEVICE_CUDA;
    const char *lag = getenv("OMNI_STOP_LAG");
    R->lag_n = lag && *lag ? atoi(lag) : 4;
    if (R->lag_n < 0 || R->lag_n > 64)
        R->lag_n = 4;
    return OMNI_OK;
}

static int64_t loop_position_limit(struct run *R)
{
    int64_t limit = INT64_MAX;
    for (int k = 0; k < R->spec->n_order[OMNI__PHASE_LOOP]; k++) {
        const struct omni__stage_inst *si = &R->p->stages[R->spec->order[OMNI__PHASE_LOOP][k]];
        const struct omni_stage_ops *o = si->plugin->desc->ops;
        int64_t m;
        if (OMNI__HAS_OP(o, max_position) && !o->max_position(si->stage, &m) && m < limit)
            limit = m;
    }
    return limit;
}

/* Data addresses of the tensors fed into a run from outside it (loop edges
 * from other stages, feed values): a captured graph reads them by address, so
 * a replay is valid only while they stay where they were at capture. */
static int run_inputs(struct run *R, const struct loop_run *run, const void **addr, int max)
{
    const struct omni__pipeline_spec *spec = R->spec;
    const int *order = spec->order[OMNI__PHASE_LOOP] + run->first;
    int n = 0;
    for (int i = 0; i < run->count; i++) {
        int s = order[i];
        for (int e = 0; e < spec->n_edges[OMNI__PHASE_LOOP]; e++) {
            const struct omni__edge *ed = &spec->edges[OMNI__PHASE_LOOP][e];
            int inside = 0;
            for (int j = 0; j < run->count; j++)
                inside |= ed->from.stage_idx == order[j];
            if (ed->to.stage_idx == s && !inside && n < max)
                addr[n++] = omni_tensor_data(&R->outs[ed->from.stage_idx][ed->from.port_idx]);
        }
        for (int f = 0; f < spec->n_feed; f++)
            if (spec->feed[f].to.stage_idx == s && n < max)
                addr[n++] = omni_tensor_data(&R->fed[f]);
    }
    return n;
}

/* The words a cached graph of this run must have been recorded under for this request
 * to replay it without recording: the batch, the device counters' address, the addresses
 * fed into the run from outside, every output of its stages (address, dtype, shape,
 * strides: the buffers the stages return on every call) and each stage's graph_key.
 * 0 when a stage has no graph_key or it fails, or the key does not fit. */
static int run_key(struct run *R, const struct loop_run *run, int64_t step, uint64_t *key)
{
    const int *order = R->spec->order[OMNI__PHASE_LOOP] + run->first;
    int n = 0, ok = omni_key_put(key, GRAPH_KEY_MAX, &n, (uint64_t)R->batch) &&
                    omni_key_put(key, GRAPH_KEY_MAX, &n, (uint64_t)(uintptr_t)omni_tensor_data(&R->ctr));
    const void *in[32];
    const int nin = run_inputs(R, run, in, 32);
    for (int i = 0; ok && i < nin; i++)
        ok = omni_key_put(key, GRAPH_KEY_MAX, &n, (uint64_t)(uintptr_t)in[i]);
    for (int i = 0; ok && i < run->count; i++) {
        const int s = order[i];
        for (int k = 0; ok && k < R->n_out[s]; k++) {
            const struct omni_tensor *t = &R->outs[s][k];
            const uint64_t kind = ((uint64_t)(uint32_t)t->dtype << 32) | (uint32_t)t->ndim;
            const void *data = t->buf ? omni_tensor_data(t) : NULL;
            ok = omni_key_put(key, GRAPH_KEY_MAX, &n, (uint64_t)(uintptr_t)data) &&
                 omni_key_put(key, GRAPH_KEY_MAX, &n, kind);
            for (int d = 0; ok && d < t->ndim; d++)
                ok = omni_key_put(key, GRAPH_KEY_MAX, &n, (uint64_t)t->shape[d]) &&
                     omni_key_put(key, GRAPH_KEY_MAX, &n, (uint64_t)t->strides[d]);
        }
        const struct omni__stage_inst *si = &R->p->stages[s];
        const struct omni_stage_ops *o = si->plugin->desc->ops;
        if (!ok || !OMNI__HAS_OP(o, graph_key) || !R->have_state[s])
            return 0;
        const struct omni_run_ctx ctx = stage_ctx(R, s, step);
        int m = 0;
        if (o->graph_key(si->stage, R->states[s], &ctx, key + n + 1, GRAPH_KEY_MAX - n - 1, &m) ||
            m < 0 || m > GRAPH_KEY_MAX - n - 1)
            return 0;
        key[n] = (uint64_t)m; /* the stage's word count, so that words cannot shift between stages */
        n += 1 + m;
    }
    return ok ? n : 0;
}

/* Borrow the cached executable graph of this run at this batch size (or a
 * free slot for it); -1 when every slot is lent. */
static int graph_slot_take(struct omni_pipeline *p, const struct loop_run *run, int batch)
{
    const int n = (int)(sizeof p->graph_slots / sizeof p->graph_slots[0]);
    int pick = -1, match = 0;
    pthread_mutex_lock(&p->graph_mu);
    for (int i = 0; i < n && !match; i++) { /* this run's idle slot, else the least recently used idle one */
        struct graph_slot *g = &p->graph_slots[i];
        if (g->busy)
            continue;
        match = g->exec && g->first == run->first && g->count == run->count && g->batch == batch &&
                omni_device_eq(g->dev, run->dev);
        if (match || pick < 0 || g->used < p->graph_slots[pick].used)
            pick = i;
    }
    if (pick >= 0) {
        struct graph_slot *g = &p->graph_slots[pick];
        if (!match) { /* evict: another run or batch size (empty slots have used = 0); the
                       * struct copy below also clears its key */
            omni__graph_free(g->exec);
            *g = (struct graph_slot){.first = run->first, .count = run->count, .batch = batch, .dev = run->dev};
        }
        g->busy = 1;
        g->used = ++p->graph_clock;
    }
    pthread_mutex_unlock(&p->graph_mu);
    return pick;
}

/* Give a run's graph back to the cache (or free it when it has no slot). */
static void graph_slot_give(struct omni_pipeline *p, struct loop_run *run)
{
    if (run->slot < 0) {
        omni__graph_free(run->exec);
    } else {
        pthread_mutex_lock(&p->graph_mu);
        struct graph_slot *g = &p->graph_slots[run->slot];
        if (g->exec != run->exec)
            omni__graph_free(g->exec);
        g->exec = run->exec;
        g->nkey = run->exec ? run->nkey : 0;
        memcpy(g->key, run->key, (size_t)g->nkey * sizeof g->key[0]);
        g->busy = 0;
        pthread_mutex_unlock(&p->graph_mu);
    }
    run->exec = NULL;
    run->slot = -1;
}

/* Run a graph-safe run of loop stages: capture it on its first use (the
 * second iteration: the first one sized every buffer), replay it after. */
static int run_graph(struct run *R, struct loop_run *run, int64_t step, struct omni_error *err)
{
    const int *order = R->spec->order[OMNI__PHASE_LOOP] + run->first;
    int rc = OMNI_OK;
    if (!run->exec) {
        /* the graph an earlier request recorded under the same key queues the same work */
        run->nkey = run_key(R, run, step, run->key);
        run->slot = graph_slot_take(R->p, run, R->batch);
        const struct graph_slot *g = run->slot >= 0 ? &R->p->graph_slots[run->slot] : NULL;
        if (g && g->exec && run->nkey > 0 && g->nkey == run->nkey &&
            !memcmp(g->key, run->key, (size_t)run->nkey * sizeof run->key[0])) {
            run->exec = g->exec;
            run->n_inputs = run_inputs(R, run, run->inputs, 32);
            R->r->graphs_replayed++;
            OMNI_LOG(OMNI_LOG_INFO, "replaying the CUDA graph of loop stages %s..%s recorded for an earlier request (same buffers and settings)",
                     R->p->stages[order[0]].name, R->p->stages[order[run->count - 1]].name);
            goto launch;
        }
        if (g && g->exec && g->nkey && run->nkey) { /* why not (-vv) */
            int i = 0;
            while (i < g->nkey && i < run->nkey && g->key[i] == run->key[i])
                i++;
            OMNI_LOG(OMNI_LOG_DEBUG, "CUDA graph of loop stages %s..%s: key word %d of %d differs from the cached one's (%#llx, cached %#llx): recording",
                     R->p->stages[order[0]].name, R->p->stages[order[run->count - 1]].name, i, run->nkey,
                     i < run->nkey ? (unsigned long long)run->key[i] : 0ull,
                     i < g->nkey ? (unsigned long long)g->key[i] : 0ull);
        }
        struct omni_buffer *before[64] = {0};
        int nb = 0;
        for (int i = 0; i < run->count; i++)
            for (int k = 0; k < R->n_out[order[i]] && nb < 64; k++)
                before[nb++] = R->outs[order[i]][k].buf;
        void *cs = NULL;
        struct omni_error local;
        omni_error_clear(&local);
        double t0 = now_ms();
        rc = omni__graph_begin(run->dev, &cs, &local);
        R->capturing = 1;
        for (int i = 0; !rc && i < run->count; i++)
            rc = call_stage(R, OMNI__PHASE_LOOP, order[i], step, &local);
        R->capturing = 0;
        double t1 = now_ms();
        int updated = 0;
        if (!rc) {
            void *cached = run->slot >= 0 ? R->p->graph_slots[run->slot].exec : NULL;
            rc = omni__graph_end_update(run->dev, cs, cached, &run->exec, &updated, &local);
            if (rc && run->slot >= 0) {
                pthread_mutex_lock(&R->p->graph_mu);
                R->p->graph_slots[run->slot].busy = 0;
                pthread_mutex_unlock(&R->p->graph_mu);
                run->slot = -1;
            }
        } else if (cs) {
            omni__graph_abort(run->dev, cs);
        }
        if (rc && run->slot >= 0) { /* nothing recorded: the slot goes back as it was */
            pthread_mutex_lock(&R->p->graph_mu);
            R->p->graph_slots[run->slot].busy = 0;
            pthread_mutex_unlock(&R->p->graph_mu);
            run->slot = -1;
        }
        double t2 = now_ms();
        int stable = 1;
        nb = 0;
        for (int i = 0; !rc && i < run->count; i++)
            for (int k = 0; k < R->n_out[order[i]] && nb < 64; k++)
                stable &= before[nb++] == R->outs[order[i]][k].buf;
        if (rc || !stable) {
            OMNI_LOG(OMNI_LOG_WARN, "CUDA graph of loop stages %s..%s not used (%s); running them eagerly",
                     R->p->stages[order[0]].name, R->p->stages[order[run->count - 1]].name,
                     rc ? local.msg : "a stage changed its output buffers");
            run->nkey = 0; /* what it recorded is not what the key describes */
            graph_slot_give(R->p, run);
            run->disabled = 1;
            /* nothing captured ran: run the stages now */
            for (int i = 0; i < run->count; i++) {
                rc = call_stage(R, OMNI__PHASE_LOOP, order[i], step, err);
                if (rc)
                    return rc;
            }
            return OMNI_OK;
        }
        OMNI_LOG(OMNI_LOG_INFO, "captured loop stages %s..%s in a CUDA graph (recorded in %.2f ms, %s in %.2f ms)",
                 R->p->stages[order[0]].name, R->p->stages[order[run->count - 1]].name, t1 - t0,
                 updated ? "updated the cached executable graph" : "instantiated", t2 - t1);
        run->n_inputs = run_inputs(R, run, run->inputs, 32);
        R->r->graphs_recorded++;
    } else {
        const void *now[32];
        int n = run_inputs(R, run, now, 32);
        int same = n == run->n_inputs;
        for (int i = 0; same && i < n; i++)
            same = now[i] == run->inputs[i];
        if (!same) { /* an input moved: the graph would read stale memory */
            OMNI_LOG(OMNI_LOG_WARN, "CUDA graph of loop stages %s..%s dropped: an input moved; running them eagerly",
                     R->p->stages[order[0]].name, R->p->stages[order[run->count - 1]].name);
            graph_slot_give(R->p, run);
            run->disabled = 1;
            for (int i = 0; i < run->count; i++)
                if ((rc = call_stage(R, OMNI__PHASE_LOOP, order[i], step, err)))
                    return rc;
            return OMNI_OK;
        }
    }
launch:
    if ((rc = omni__graph_launch(run->dev, run->exec, err)))
        return rc;
    for (int i = 0; !rc && i < run->count; i++)
        rc = after_call(R, OMNI__PHASE_LOOP, order[i], step, err);
    return rc;
}

/* Tokens collected on the device: copy them into R->tokens once, at the end. */
static int finish_tokens(struct run *R, struct omni_error *err)
{
    if (!R->defer_tokens || !R->dtokens.buf)
        return OMNI_OK;
    struct omni_tensor host;
    int rc = omni_tensor_copy_to(&host, &R->dtokens, OMNI_CPU, err);
    if (rc)
        return rc;
    host.shape[1] = R->n_tokens; /* row stride stays the capacity */
    omni_tensor_release(&R->tokens);
    R->tokens = host;
    return OMNI_OK;
}

/* Largest batch whose loop states are kept whole for the next request
 * (OMNI_KEEP_LOOP_STATES; 0: no state is kept). Default 2: MMU and single images. Above
 * it a state is kept only parked (its plugin's state_park hands its memory back and
 * keeps its addresses): at T2I batch 16 the backbone's states are 1.6 GB, which the VQ
 * decoder of the after phase should have for itself. */
static int keep_limit(void)
{
    const char *e = getenv("OMNI_KEEP_LOOP_STATES");
    if (!e || !*e)
        return 2;
    char *end;
    const long v = strtol(e, &end, 10);
    if (*end || v < 0 || v > 1 << 20) {
        OMNI_LOG(OMNI_LOG_WARN, "OMNI_KEEP_LOOP_STATES='%s' is not a batch size (0 or more): using 2", e);
        return 2;
    }
    return (int)v;
}

/* End stage s's request state: kept for the next request of this batch when s ran in a
 * CUDA graph of the loop, its plugin declares its states reusable, keep_limit is not 0
 * and no state is kept for s yet (the device is idle first: the next request may run on
 * another thread's stream). Over keep_limit the plugin parks the state first (state_park:
 * its memory handed back, its addresses kept); without that op, or when it fails, and in
 * every other case the state is freed. */
static void state_release(struct run *R, int s)
{
    struct omni_pipeline *p = R->p;
    const struct omni_plugin_desc *d = R->spec->stages[s].plugin->desc;
    const struct omni_stage_ops *o = d->ops;
    const int *order = R->spec->order[OMNI__PHASE_LOOP];
    struct omni_device dev = {-1, 0};
    for (int q = 0; q < R->n_runs; q++)
        for (int i = 0; i < R->runs[q].count; i++)
            if (order[R->runs[q].first + i] == s)
                dev = R->runs[q].dev;
    const int limit = keep_limit(), park = R->batch > limit;
    int kept = 0;
    if (p->parked && dev.type >= 0 && R->r->graphs_recorded + R->r->graphs_replayed > 0 &&
        limit > 0 && (!park || OMNI__HAS_OP(o, state_park)) &&
        d->size >= sizeof(struct omni_plugin_desc) && (d->flags & OMNI_PLUGIN_STATE_REUSABLE) &&
        R->spec->stages[s].process < 0) {
        struct omni_error e;
        omni_error_clear(&e);
        int rc = omni__graph_sync(dev, &e);
        if (!rc && park && (rc = o->state_park(p->stages[s].stage, R->states[s], &e)))
            OMNI_LOG(OMNI_LOG_DEBUG, "stage '%s': its request state of batch %d is not kept: %s",
                     p->stages[s].name, R->batch, e.msg);
        if (!rc) {
            pthread_mutex_lock(&p->graph_mu);
            if (!p->parked[s].state) {
                p->parked[s] = (struct parked){.state = R->states[s], .batch = R->batch};
                kept = 1;
            }
            pthread_mutex_unlock(&p->graph_mu);
        }
    }
    if (!kept && OMNI__HAS_OP(o, state_free))
        o->state_free(p->stages[s].stage, R->states[s]);
    R->states[s] = NULL;
    R->have_state[s] = 0;
}

int omni_pipeline_run(struct omni_pipeline *p, struct omni_request *r, struct omni_error *err)
{
    struct omni__pipeline_spec *spec = p->spec;
    struct run R = {.p = p, .r = r, .spec = spec, .ctr_slot = -1};
    int ns = spec->n_stages, rc = OMNI_OK;
    outputs_clear(r);
    dump_clear(r);
    memset(&r->stats, 0, sizeof r->stats);
    r->graphs_recorded = r->graphs_replayed = 0;
    R.states = calloc((size_t)ns + 1, sizeof *R.states);
    R.have_state = calloc((size_t)ns + 1, sizeof *R.have_state);
    R.outs = calloc((size_t)ns + 1, sizeof *R.outs);
    R.n_out = calloc((size_t)ns + 1, sizeof *R.n_out);
    R.fed = calloc((size_t)spec->n_feed + 1, sizeof *R.fed);
    if (!R.states || !R.have_state || !R.outs || !R.n_out || !R.fed) {
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto out;
    }
    for (int s = 0; s < ns; s++) {
        R.n_out[s] = omni__plugin_port_count(spec->stages[s].plugin->desc, OMNI_PORT_OUT);
        R.outs[s] = calloc((size_t)R.n_out[s] + 1, sizeof **R.outs);
        if (!R.outs[s]) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto out;
        }
    }
    R.batch = batch_of_inputs(r);
    int64_t max_tokens = r->max_tokens > 0 ? r->max_tokens : spec->max_tokens;

    /* prefill */
    double t0 = now_ms();
    for (int k = 0; !rc && k < spec->n_order[OMNI__PHASE_PREFILL]; k++)
        rc = call_stage(&R, OMNI__PHASE_PREFILL, spec->order[OMNI__PHASE_PREFILL][k], -1, err);
    R.position = R.prefill_advance;
    r->stats.prefill_ms = now_ms() - t0;
    if (rc)
        goto out;

    /* loop */
    double t1 = now_ms();
    if (spec->has_loop) {
        if ((rc = loop_prepare(&R, err)))
            goto out;
        int64_t limit = loop_position_limit(&R);
        if ((rc = collect_token(&R, err)))
            goto out;
        if (r->progress_fn)
            r->progress_fn(r, R.n_tokens, max_tokens, r->progress_user);
        for (int64_t step = 0; !should_stop(&R, max_tokens, &rc, err); step++) {
            if (R.position >= limit) {
                OMNI_LOG(OMNI_LOG_WARN, "generation stopped: position %lld would pass the %lld positions a loop stage takes",
                         (long long)R.position, (long long)limit);
                break;
            }
            for (int i = 0; i < spec->n_feed; i++) {
                omni_tensor_release(&R.fed[i]);
                omni_tensor_ref(&R.fed[i], &R.outs[spec->feed[i].from.stage_idx][spec->feed[i].from.port_idx]);
            }
            if (R.ctr.buf && (rc = omni__graph_set_i64x2(R.ctr.device, omni_tensor_data(&R.ctr), R.position, step, err)))
                break;
            int done = 0;
            for (int k = 0; !rc && !done && k < spec->n_order[OMNI__PHASE_LOOP];) {
                struct loop_run *run = NULL;
                for (int q = 0; q < R.n_runs; q++)
                    if (R.runs[q].first == k && !R.runs[q].disabled)
                        run = &R.runs[q];
                if (run && (run->exec || step >= 1)) {
                    rc = run_graph(&R, run, step, err);
                    k += run->count;
                    continue;
                }
                rc = call_stage(&R, OMNI__PHASE_LOOP, spec->order[OMNI__PHASE_LOOP][k], step, err);
                if (rc == OMNI_DONE) {
                    done = 1;
                    rc = OMNI_OK;
                }
                k++;
            }
            if (rc || done)
                break;
            R.position++;
            r->stats.steps++;
            if ((rc = collect_token(&R, err)))
                break;
            if (r->progress_fn)
                r->progress_fn(r, R.n_tokens, max_tokens, r->progress_user);
        }
        int stopped;
        if (!rc) /* the tokens not yet checked: a stop among them trims the rest */
            rc = lag_check(&R, 0, &stopped, err);
        if (!rc)
            rc = finish_tokens(&R, err);
        if (rc)
            goto out;
    }
    r->stats.loop_ms = now_ms() - t1;

    /* the after phase does not need the loop's recurrent states (for T2I batch
     * 16 the backbone's is 1.6 GB): free those of stages it does not run */
    for (int k = 0; spec->has_loop && k < spec->n_order[OMNI__PHASE_LOOP]; k++) {
        int s = spec->order[OMNI__PHASE_LOOP][k], later = 0;
        for (int j = 0; j < spec->n_order[OMNI__PHASE_AFTER]; j++)
            later |= spec->order[OMNI__PHASE_AFTER][j] == s;
        if (!later && R.have_state[s])
            state_release(&R, s);
    }

    /* after */
    double t2 = now_ms();
    for (int k = 0; !rc && k < spec->n_order[OMNI__PHASE_AFTER]; k++)
        rc = call_stage(&R, OMNI__PHASE_AFTER, spec->order[OMNI__PHASE_AFTER][k], -1, err);
    r->stats.after_ms = now_ms() - t2;
    if (rc)
        goto out;

    /* outputs */
    if (R.tokens.buf) {
        rc = omni_tensor_copy_to(&r->tokens, &R.tokens, OMNI_CPU, err); /* compact [B, n] */
        if (rc)
            goto out;
    }
    for (int i = 0; i < spec->n_outputs; i++) {
        struct omni__endpoint *ep = &spec->outputs[i].ep;
        const struct omni_tensor *src = ep->stage_idx < 0 ? &r->tokens : &R.outs[ep->stage_idx][ep->port_idx];
        if (src->buf)
            omni_tensor_ref(&r->outputs[i], src);
    }
    if (r->dump_path) {
        if (r->tokens.buf && (rc = dump_add(r, "loop.tokens", &r->tokens, err)))
            goto out;
        const char **names = calloc((size_t)r->n_dump + 1, sizeof *names);
        struct omni_tensor *ts = calloc((size_t)r->n_dump + 1, sizeof *ts);
        if (!names || !ts) {
            free(names);
            free(ts);
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < r->n_dump; i++) {
            names[i] = r->dump[i].name;
            ts[i] = r->dump[i].t;
        }
        rc = omni_safetensors_write(r->dump_path, (size_t)r->n_dump, names, ts, err);
        free(names);
        free(ts);
        dump_clear(r);
    }
out:
    for (int s = 0; R.states && s < ns; s++)
        if (R.have_state[s])
            state_release(&R, s);
    for (int s = 0; R.outs && s < ns; s++) {
        for (int k = 0; R.outs[s] && k < R.n_out[s]; k++)
            omni_tensor_release(&R.outs[s][k]);
        free(R.outs[s]);
    }
    for (int i = 0; R.fed && i < spec->n_feed; i++)
        omni_tensor_release(&R.fed[i]);
    omni_tensor_release(&R.tokens);
    omni__lag_free(R.lag);
    for (int q = 0; q < R.n_runs; q++) /* a replay may still be queued: the cache keeps it */
        graph_slot_give(p, &R.runs[q]);
    omni_tensor_release(&R.dtokens);
    ctr_give(&R);
    if (R.ipc_req) /* workers free the run's state and shared memory */
        omni__ipc_request_end(p->ipc, R.ipc_req);
    free(R.fed);
    free(R.outs);
    free(R.n_out);
    free(R.states);
    free(R.have_state);
    return rc;
}
