/* omni/pipeline.h - load, check and run YAML-declared pipelines.
 *
 *   struct omni_pipeline *p;
 *   struct omni_error err;
 *   if (omni_pipeline_load(&p, "pipelines/t2i.yaml", NULL, &err)) { ...err.msg... }
 *   struct omni_request *r = omni_request_new(p);
 *   omni_request_set_text(r, "prompt", "A red bicycle");
 *   omni_pipeline_run(p, r, &err);
 *   const struct omni_tensor *img = omni_request_output(r, "image");
 *   omni_request_free(r); omni_pipeline_free(p);
 */
#ifndef OMNI_PIPELINE_H
#define OMNI_PIPELINE_H

#include <stdint.h>

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct omni_pipeline;
struct omni_request;

struct omni_pipeline_options {
    uint32_t size;               /* sizeof(struct omni_pipeline_options) */
    const char *const *sets;     /* "stage.key=value" overrides (--set) */
    int n_sets;
    const char *const *plugin_dirs; /* searched before OMNI_PLUGIN_PATH */
    int n_plugin_dirs;
    const char *device;          /* override every stage's device ("cuda:0"), or NULL */
    const char *dtype;           /* override every stage's dtype, or NULL */
};

/* Parse, expand variables, apply overrides, type-check every port of the
 * graph (loading plugin descriptors only), then create every stage and load
 * its weights. (transfer full: omni_pipeline_free) */
OMNI_API int omni_pipeline_load(struct omni_pipeline **out, const char *yaml_path,
                                const struct omni_pipeline_options *opt, struct omni_error *err);
/* Parse and type-check only: no stage is created, no weight is read. */
OMNI_API int omni_pipeline_validate(const char *yaml_path, const struct omni_pipeline_options *opt,
                                    struct omni_error *err);
OMNI_API void omni_pipeline_free(struct omni_pipeline *p);
OMNI_API const char *omni_pipeline_name(const struct omni_pipeline *p);
/* Names of the declared inputs/outputs (NULL past the end). */
OMNI_API const char *omni_pipeline_input_name(const struct omni_pipeline *p, int i);
OMNI_API const char *omni_pipeline_output_name(const struct omni_pipeline *p, int i);
/* Stages of a loaded pipeline (NULL past the end). */
OMNI_API int omni_pipeline_stage_count(const struct omni_pipeline *p);
OMNI_API const char *omni_pipeline_stage_name(const struct omni_pipeline *p, int i);
OMNI_API const char *omni_pipeline_stage_type(const struct omni_pipeline *p, int i);
/* Does the pipeline have a generation loop; does output i stream (its stage
 * runs in the loop)? */
OMNI_API int omni_pipeline_has_loop(const struct omni_pipeline *p);
OMNI_API int omni_pipeline_output_streams(const struct omni_pipeline *p, int i);
/* Attach (or replace, for the same task) an adapter stage at run time, no
 * backbone reload: type is the plugin, target "backbone.in_proj". */
OMNI_API int omni_pipeline_attach(struct omni_pipeline *p, const char *name, const char *type,
                                  const char *target, const char *weights, const char *prefix,
                                  const char *const *params, int n_params, struct omni_error *err);

/* ---- requests ---- */
typedef void (*omni_stream_fn)(struct omni_request *r, const char *output,
                               const struct omni_tensor *t, void *user);
typedef void (*omni_progress_fn)(struct omni_request *r, int64_t done, int64_t total, void *user);

OMNI_API struct omni_request *omni_request_new(struct omni_pipeline *p);
OMNI_API void omni_request_free(struct omni_request *r);
/* Inputs are copied (strings become u8 [1, n+1] NUL-terminated tensors). */
OMNI_API int omni_request_set_input(struct omni_request *r, const char *name,
                                    const struct omni_tensor *t, struct omni_error *err);
OMNI_API int omni_request_set_text(struct omni_request *r, const char *name, const char *text,
                                   struct omni_error *err);
/* Several strings: u8 [n, maxlen+1] NUL-padded (a batch). */
OMNI_API int omni_request_set_texts(struct omni_request *r, const char *name,
                                    const char *const *texts, int n, struct omni_error *err);
OMNI_API void omni_request_set_task(struct omni_request *r, const char *task);
OMNI_API void omni_request_set_seed(struct omni_request *r, uint64_t seed);
OMNI_API void omni_request_set_max_tokens(struct omni_request *r, int64_t n);
/* Per-request stage option ("sampler.temperature=0.7"). */
OMNI_API int omni_request_set_option(struct omni_request *r, const char *assignment,
                                     struct omni_error *err);
OMNI_API void omni_request_on_stream(struct omni_request *r, omni_stream_fn fn, void *user);
OMNI_API void omni_request_on_progress(struct omni_request *r, omni_progress_fn fn, void *user);
/* Write every prefill edge tensor and every loop output to this
 * .safetensors file when the run ends ("<stage>.<port>", "...step<N>"). */
OMNI_API void omni_request_set_dump(struct omni_request *r, const char *path);

/* Run one request to completion. */
OMNI_API int omni_pipeline_run(struct omni_pipeline *p, struct omni_request *r,
                               struct omni_error *err);
/* Outputs after a run. (transfer none) NULL when absent. */
OMNI_API const struct omni_tensor *omni_request_output(const struct omni_request *r,
                                                       const char *name);
/* Tokens collected by the generation loop, [B, n] i32. (transfer none) */
OMNI_API const struct omni_tensor *omni_request_tokens(const struct omni_request *r);
/* Wall-clock milliseconds of the phases of the last run. */
struct omni_run_stats {
    double prefill_ms, loop_ms, after_ms;
    int64_t steps;
};
OMNI_API void omni_request_stats(const struct omni_request *r, struct omni_run_stats *st);
/* Of the last run: how many runs of CUDA-graph loop stages were recorded, and how many
 * replayed a graph recorded for an earlier request without recording (their stages'
 * graph_key and buffers matched). Either may be NULL. */
OMNI_API void omni_request_graph_stats(const struct omni_request *r, int *recorded, int *replayed);

#ifdef __cplusplus
}
#endif
#endif
