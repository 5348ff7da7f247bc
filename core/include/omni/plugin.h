/* omni/plugin.h - the one header a plugin author needs.
 *
 * A plugin is a shared object omni_<name>.so exporting one symbol,
 * OMNI_PLUGIN_ENTRY_SYMBOL, a function that returns a const descriptor. The
 * loader refuses a plugin (naming the file and the reason) on a missing entry
 * symbol, an ABI major mismatch, a newer minor than the core knows, a build
 * signature that differs from the core's, or a missing required op.
 *
 * ABI rule: structs here only grow at the end; optional members may be NULL
 * and the core supplies the default. Every stage instance embeds
 * struct omni_stage first.
 *
 * Life of a stage: create(config) -> load(weights) -> [state_new ->
 * forward / step ... -> state_free]* -> destroy. Ports are static and
 * type-checked for the whole pipeline before create() is called.
 */
#ifndef OMNI_PLUGIN_H
#define OMNI_PLUGIN_H

#include <stdint.h>

#include "omni/dtype.h"
#include "omni/log.h"
#include "omni/ops.h"
#include "omni/status.h"
#include "omni/tensor.h"
#include "omni/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_ABI_MAJOR 1
#define OMNI_ABI_MINOR 3

#define OMNI_PLUGIN_ENTRY_SYMBOL "omni_plugin_entry"

/* Build signature: plugins must match the core they are loaded into. */
#define OMNI_BUILD_CUDA_BIT 0x1u
#ifdef OMNI_HAVE_CUDA
#define OMNI_BUILD_SIGNATURE (OMNI_BUILD_CUDA_BIT | ((uint32_t)sizeof(void *) << 8))
#else
#define OMNI_BUILD_SIGNATURE ((uint32_t)sizeof(void *) << 8)
#endif

enum omni_port_dir {
    OMNI_PORT_IN = 0,
    OMNI_PORT_OUT = 1,
};

#define OMNI_DTYPE_BIT(d) (1u << (d))
#define OMNI_DTYPES_FLOAT                                                    \
    (OMNI_DTYPE_BIT(OMNI_DTYPE_F32) | OMNI_DTYPE_BIT(OMNI_DTYPE_F16) |       \
     OMNI_DTYPE_BIT(OMNI_DTYPE_BF16))
#define OMNI_DEVICE_BIT(d) (1u << (d))

enum omni_port_flags {
    OMNI_PORT_OPTIONAL = 1u << 0,     /* input may stay unconnected (tensor .buf == NULL) */
    OMNI_PORT_HOST = 1u << 1,         /* always on the host, whatever the stage's device */
    OMNI_PORT_STRING = 1u << 2,       /* u8 [B, n] NUL-padded UTF-8 text */
};

/* A static port description. dims is a comma-separated list of symbols or
 * numbers ("B,T,D", "B,256"), "*" for any rank; symbols are local to the
 * stage and unified along edges when the pipeline is checked. */
struct omni_port_desc {
    const char *name;
    int32_t dir;     /* enum omni_port_dir */
    uint32_t dtypes; /* OMNI_DTYPE_BIT mask; 0 = any */
    const char *dims;
    uint32_t flags; /* enum omni_port_flags */
    const char *doc;
};

/* Read-only view of a stage's YAML params (and of per-request options). */
struct omni_params;
OMNI_API int omni_params_has(const struct omni_params *p, const char *key);
/* Returns def when absent. (transfer none) */
OMNI_API const char *omni_params_str(const struct omni_params *p, const char *key, const char *def);
/* Typed getters: OMNI_OK with *out = def when absent; OMNI_EINVAL (message
 * names the key and the text) when present but not parseable. */
OMNI_API int omni_params_int(const struct omni_params *p, const char *key, int64_t def,
                             int64_t *out, struct omni_error *err);
OMNI_API int omni_params_float(const struct omni_params *p, const char *key, double def,
                               double *out, struct omni_error *err);
OMNI_API int omni_params_bool(const struct omni_params *p, const char *key, int def, int *out,
                              struct omni_error *err);
/* Flow or block sequence of integers ("[0, 2]"); *n in: capacity, out: count. */
OMNI_API int omni_params_int_list(const struct omni_params *p, const char *key, int64_t *vals,
                                  int *n, struct omni_error *err);
/* Flow or block sequence of numbers ("[0.485, 0.456, 0.406]"); a single
 * scalar counts as a list of one. *n in: capacity, out: count. */
OMNI_API int omni_params_float_list(const struct omni_params *p, const char *key, double *vals,
                                    int *n, struct omni_error *err);
/* Sequence of strings; pointers borrowed from the params (transfer none). */
OMNI_API int omni_params_str_list(const struct omni_params *p, const char *key, const char **vals,
                                  int *n, struct omni_error *err);
/* Iterate keys: returns NULL past the end. */
OMNI_API const char *omni_params_key(const struct omni_params *p, int i);
/* Where a key was written ("pipelines/t2i.yaml:14:9"), or "" when unknown. */
OMNI_API const char *omni_params_where(const struct omni_params *p, const char *key);

/* What create() receives. */
struct omni_stage_config {
    uint32_t size;                    /* sizeof(struct omni_stage_config) */
    const char *name;                 /* instance name in the pipeline */
    const char *type;                 /* plugin name */
    const struct omni_params *params; /* the stage's params: mapping */
    struct omni_device device;
    int32_t dtype;      /* requested compute/weights dtype; OMNI_DTYPE_INVALID = stage default */
    const char *where;  /* "file.yaml:12:3" of the stage, for messages */
};

/* Base of every stage instance (embed first). Filled by the core after
 * create() returns; plugins may read it. */
struct omni_stage {
    const struct omni_plugin_desc *plugin;
    const char *name;
    struct omni_device device;
    int32_t dtype;
    void *core_private; /* owned by the core */
};

/* Per-call context the executor passes to forward/step. */
struct omni_run_ctx {
    uint32_t size;
    const char *task;        /* request task ("mmu", "t2i", ...); "" when none */
    int64_t position;        /* absolute sequence position of the first row of this call */
    int64_t step;            /* -1 in the prefill/once phase; k >= 0 in loop iteration k */
    uint64_t seed;           /* request seed */
    int32_t batch;           /* request batch size B */
    void *stream;            /* cudaStream_t for CUDA stages (NULL = default stream) */
    const struct omni_params *options; /* per-request options for this stage (may be NULL) */
    /* Device copies of position and step (int64, on the stage's CUDA device;
     * NULL on the CPU). A stage whose loop calls are captured in a CUDA graph
     * (OMNI_PLUGIN_GRAPH_SAFE) must read these, not the host fields: a
     * replayed graph does not call the stage again. */
    const int64_t *position_dev;
    const int64_t *step_dev;
};

/* Inputs and outputs of one call, in the order of the IN and OUT ports of the
 * descriptor. Unconnected optional inputs have .buf == NULL. The stage fills
 * every output it produces (transfer full to the executor; returning a new
 * reference to a buffer the state keeps is fine and avoids allocation). */
struct omni_io {
    uint32_t n_in, n_out;
    const struct omni_tensor *in;
    struct omni_tensor *out;
    const struct omni_run_ctx *ctx;
    int64_t advance; /* set by recurrent stages: sequence positions consumed */
};

/* Adapter interface (LoRA and alike). A stage with adapter ops can be
 * attached to a named linear of another stage ("backbone.in_proj"). */
struct omni_adapter_ops {
    uint32_t size;
    /* The task this adapter serves ("mmu"), or "" for every task. */
    const char *(*task)(struct omni_stage *adapter);
    /* y[M, N] += term(x[M, K]) for linear `target` of layer `layer` on the
     * devices of x and y. Inside a graph-safe host stage's loop call this is
     * captured in a CUDA graph that later requests may replay: device memory it
     * uses must stay valid while the adapter lives. */
    int (*apply)(struct omni_stage *adapter, const char *target, int layer,
                 const struct omni_tensor *x, struct omni_tensor *y, struct omni_error *err);
    /* Optional (ABI minor 1; check size): when apply() adds a low-rank term
     * y += scale * (x·aᵀ)·bᵀ, its factors for `target` of `layer`, so that the
     * host stage can fold the term into its own kernels (mamba2's decode step):
     * *a (R, K) and *b (N, R) f32 contiguous on the adapter's device, borrowed
     * (valid while the adapter stays loaded). Non-OK: the caller uses apply(). */
    int (*lowrank)(struct omni_stage *adapter, const char *target, int layer,
                   const struct omni_tensor **a, const struct omni_tensor **b, float *scale,
                   struct omni_error *err);
};

struct omni_weights_ref {
    struct omni_weights *file; /* NULL when the stage has no weights */
    const char *prefix;        /* key prefix ("" when none) */
    const char *where;         /* YAML location of weights:, for messages */
};

struct omni_stage_ops {
    uint32_t size; /* sizeof(struct omni_stage_ops) */
    /* required */
    int (*create)(const struct omni_stage_config *cfg, struct omni_stage **out,
                  struct omni_error *err);
    void (*destroy)(struct omni_stage *s);
    int (*forward)(struct omni_stage *s, void *state, struct omni_io *io, struct omni_error *err);
    /* optional */
    int (*load)(struct omni_stage *s, const struct omni_weights_ref *w, struct omni_error *err);
    int (*state_new)(struct omni_stage *s, const struct omni_run_ctx *ctx, void **state,
                     struct omni_error *err);
    void (*state_free)(struct omni_stage *s, void *state);
    /* one token per row; recurrent stages only. NULL: forward is used in loops */
    int (*step)(struct omni_stage *s, void *state, struct omni_io *io, struct omni_error *err);
    /* attach (adapter != NULL) or detach (adapter == NULL, detaches all of target)
     * an adapter stage to a named linear of this stage */
    int (*attach)(struct omni_stage *s, const char *target, struct omni_stage *adapter,
                  struct omni_error *err);
    /* The positions this stage can take in a loop call are < *max_position
     * (a position table's rows); the executor ends the loop before passing
     * that bound, in eager and in CUDA-graph mode alike. */
    int (*max_position)(struct omni_stage *s, int64_t *max_position);
    /* Optional (ABI minor 2), for OMNI_PLUGIN_GRAPH_SAFE stages: what this request's loop
     * call bakes into captured GPU work apart from its io tensors and ctx's device
     * counters, as words key[0 .. *n) (at most max): the device addresses of the state and
     * scratch it uses, and every per-request value that reaches a kernel argument (seed,
     * options, the adapters of ctx->task, ...). Two requests whose loop calls give the same
     * words, with the same inputs, outputs and batch, queue the same work: the executor
     * then replays the graph it captured for the first instead of recording the step again.
     * Called after the request's first loop call (the state is sized). Non-OK, or no op:
     * the executor records the step for every request. */
    int (*graph_key)(struct omni_stage *s, void *state, const struct omni_run_ctx *ctx,
                     uint64_t *key, int max, int *n);
    /* Optional (ABI minor 3), for OMNI_PLUGIN_STATE_REUSABLE stages: the executor keeps
     * this state for a later request at a batch over OMNI_KEEP_LOOP_STATES (e.g. T2I
     * batch 16), the device idle. Give back what memory the state can while keeping every
     * address graph_key reports (omni_buffer_drop_pages on buffers made with
     * omni_buffer_new_reserved); the state's next call is a prefill from position 0,
     * which takes the memory again. A state that holds little may do nothing. Non-OK,
     * or no op: the executor frees the state instead. */
    int (*state_park)(struct omni_stage *s, void *state, struct omni_error *err);
};

enum omni_plugin_flags {
    /* On CUDA, the stage's loop calls (step, or forward in a loop) allocate
     * nothing, never wait for the device, return the same output buffers on
     * every call, and take per-call values only from ctx->position_dev and
     * ctx->step_dev: the executor may capture them once in a CUDA graph and
     * replay it for every token. */
    OMNI_PLUGIN_GRAPH_SAFE = 1u << 0,
    /* A request state (state_new) may serve later requests of the same ctx->batch in
     * turn: the stage's first call of a request (the prefill, ctx->position 0) starts
     * from what a new state would hold. The executor keeps the states of a request
     * whose loop ran as a CUDA graph for the next request (whole up to a batch of
     * OMNI_KEEP_LOOP_STATES, parked above it: see state_park), so that the buffers the
     * graph reads stay where they were and the graph is replayed without recording
     * (see graph_key). */
    OMNI_PLUGIN_STATE_REUSABLE = 1u << 1,
};

struct omni_plugin_desc {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t size;            /* sizeof(struct omni_plugin_desc) at build time */
    uint32_t build_signature; /* OMNI_BUILD_SIGNATURE */
    const char *name;         /* stage type; must match omni_<name>.so */
    const char *version;
    const char *description;
    const struct omni_stage_ops *ops;
    const struct omni_port_desc *ports;
    uint32_t n_ports;
    uint32_t devices; /* OMNI_DEVICE_BIT mask the stage runs on */
    const struct omni_adapter_ops *adapter; /* NULL unless the stage is an adapter */
    const char *params_doc; /* one "key: meaning" per line, shown by `omni plugins NAME` */
    uint32_t flags;         /* enum omni_plugin_flags */
};

typedef const struct omni_plugin_desc *(*omni_plugin_entry_fn)(void);

#define OMNI_PLUGIN_EXPORT __attribute__((visibility("default")))

/* Define the entry symbol of a plugin from a descriptor variable:
 *   static const struct omni_plugin_desc desc = { OMNI_PLUGIN_HEADER, ... };
 *   OMNI_PLUGIN_DEFINE(desc)                                               */
#define OMNI_PLUGIN_HEADER                                                   \
    .abi_major = OMNI_ABI_MAJOR, .abi_minor = OMNI_ABI_MINOR,               \
    .size = sizeof(struct omni_plugin_desc), .build_signature = OMNI_BUILD_SIGNATURE

#ifdef __cplusplus
#define OMNI_PLUGIN_DEFINE(desc_var)                                         \
    extern "C" OMNI_PLUGIN_EXPORT const struct omni_plugin_desc *omni_plugin_entry(void) \
    { return &(desc_var); }
#else
#define OMNI_PLUGIN_DEFINE(desc_var)                                         \
    OMNI_PLUGIN_EXPORT const struct omni_plugin_desc *omni_plugin_entry(void);   \
    OMNI_PLUGIN_EXPORT const struct omni_plugin_desc *omni_plugin_entry(void)    \
    { return &(desc_var); }
#endif

#define OMNI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Discovery (for tools): every omni_*.so on the search path, first
 * occurrence of each name; load_err is set when the file was refused. */
typedef void (*omni_plugin_visit_fn)(const char *path, const struct omni_plugin_desc *d,
                                     const struct omni_error *load_err, void *user);
OMNI_API int omni_plugins_foreach(omni_plugin_visit_fn fn, void *user);
/* Find and load one plugin by name (the search path: OMNI_PLUGIN_PATH, the
 * folders beside libomni, the install folder). path may be NULL. */
OMNI_API int omni_plugin_find(const char *name, const struct omni_plugin_desc **out, char *path,
                              size_t path_size, struct omni_error *err);
/* Load one plugin file and validate it. */
OMNI_API int omni_plugin_open(const char *file, const struct omni_plugin_desc **out,
                              struct omni_error *err);
/* The search path, ':'-separated. */
OMNI_API const char *omni_plugin_search_path(char *buf, size_t size);

/* state_park for a stage whose request state holds little (a few rows of output):
 * kept as it is. */
static inline int omni_state_park_keep(struct omni_stage *s, void *state, struct omni_error *err)
{
    (void)s;
    (void)state;
    (void)err;
    return OMNI_OK;
}

/* For graph_key: append v to key (at most max words, *n so far); 0 when it is full. */
static inline int omni_key_put(uint64_t *key, int max, int *n, uint64_t v)
{
    if (*n >= max)
        return 0;
    key[(*n)++] = v;
    return 1;
}
/* A buffer's device address as a key word (0 for none). */
static inline uint64_t omni_key_buf(const struct omni_buffer *b)
{
    return b ? (uint64_t)(uintptr_t)omni_buffer_data(b) : 0;
}

/* Helpers for stage code. */
/* Check one input: dtype mask, ndim, and dims (-1 = any); message names the
 * stage, the port and both shapes. */
OMNI_API int omni_check_tensor(const struct omni_stage *s, const char *port,
                               const struct omni_tensor *t, uint32_t dtypes, int ndim,
                               const int64_t *dims, struct omni_error *err);
/* The storage dtype of the stage's weights: cfg->dtype, f32 when the pipeline
 * gives none; anything but f32/f16/bf16 is OMNI_EDTYPE
 * ("dtype X is not supported (f32, f16 or bf16)"). */
OMNI_API int omni_stage_weight_dtype(const struct omni_stage_config *cfg, int *dtype,
                                     struct omni_error *err);
/* Load prefix+key from the stage's weights as `dtype` on the stage's device
 * with an exact shape check (ndim/shape as omni_weights_load). */
OMNI_API int omni_stage_load_weight(const struct omni_stage *s, const struct omni_weights_ref *w,
                                    const char *key, int dtype, int ndim, const int64_t *shape,
                                    struct omni_tensor *out, struct omni_error *err);
/* The executor's device counter ctx->position_dev (which = 0) or ctx->step_dev
 * (which = 1) as an i64 tensor of shape (1) that borrows the executor's device
 * memory (valid during the call; release it after use). For ops that read the
 * value on the device (omni_op_embedding_add, omni_op_sample_at), which is
 * what a graph-safe stage needs. OMNI_ENOTFOUND when ctx has no such counter
 * (CPU stages, harness runs): then use the host fields. */
OMNI_API int omni_ctx_counter(const struct omni_run_ctx *ctx, int which, struct omni_device dev,
                              struct omni_tensor *out, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
