/* core/pipeline_impl.h - the parsed pipeline (internal). */
#ifndef OMNI_PIPELINE_IMPL_H
#define OMNI_PIPELINE_IMPL_H

#include "ipc_knobs.h"
#include "omni/pipeline.h"
#include "stage_impl.h"
#include "yaml_tree.h"

struct omni__loc {
    int line, col;
};

struct omni__endpoint {
    char *stage; /* "loop" for the pseudo-stage loop.tokens */
    char *port;
    int stage_idx; /* index into spec->stages, -1 for loop.tokens */
    int port_idx;  /* index among the stage's IN or OUT ports */
    struct omni__loc loc;
};

struct omni__edge {
    struct omni__endpoint from, to;
    struct omni__loc loc;
};

struct omni__binding { /* inputs / outputs */
    char *name;
    struct omni__endpoint ep;
};

struct omni__stage_spec {
    char *name, *type, *weights, *prefix, *attach, *plugin_file;
    struct omni__ynode *params; /* borrowed from the document tree; may be NULL */
    struct omni_device device;
    int device_explicit; /* the stage's own device: (not the pipeline's or --device) */
    int dtype;
    struct omni__loc loc, weights_loc;
    const struct omni__plugin *plugin; /* resolved by the checker */
    int process;                       /* index into placements, -1 = coordinator */
};

enum { OMNI__PHASE_PREFILL = 0, OMNI__PHASE_LOOP = 1, OMNI__PHASE_AFTER = 2, OMNI__NPHASES = 3 };

struct omni__placement {
    char *process, *endpoint;
    char **stages;
    int n_stages;
    struct omni_device device;
    int has_device;
    struct omni__loc loc;
};

struct omni__pipeline_spec {
    char *file; /* path as given */
    char *dir;  /* folder of the file, for relative paths */
    char *name, *task;
    struct omni__ynode *doc; /* owned */
    struct omni_device device;
    int dtype;
    char **plugin_dirs;
    int n_plugin_dirs;
    struct omni__stage_spec *stages;
    int n_stages;
    struct omni__edge *edges[OMNI__NPHASES]; /* prefill edges, loop edges, after edges */
    int n_edges[OMNI__NPHASES];
    struct omni__edge *feed; /* loop feed edges */
    int n_feed;
    struct omni__binding *inputs, *outputs;
    int n_inputs, n_outputs;
    int has_loop;
    struct omni__endpoint loop_tokens;
    int64_t max_tokens;
    int64_t *stop_ids;
    int n_stop_ids;
    struct omni__placement *placements;
    int n_placements;
    long ipc[OMNI__IPC_NKNOBS]; /* the ipc: mapping, -1 where not given (core/ipc_knobs.h) */
    /* computed by the checker: stage order per phase */
    int *order[OMNI__NPHASES];
    int n_order[OMNI__NPHASES];
};

/* Parse + expand variables + apply --set overrides. Errors carry file:line:col. */
int omni__pipeline_parse(const char *path, const struct omni_pipeline_options *opt,
                         struct omni__pipeline_spec **out, struct omni_error *err);
/* Resolve plugins and type-check the whole graph; compute phase orders. */
int omni__pipeline_check(struct omni__pipeline_spec *spec, struct omni_error *err);
void omni__pipeline_spec_free(struct omni__pipeline_spec *spec);
int omni__spec_stage_index(const struct omni__pipeline_spec *s, const char *name);

#endif
