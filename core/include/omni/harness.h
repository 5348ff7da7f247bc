/* omni/harness.h - drive one stage alone (like GstHarness), for tests.
 *
 *   struct omni_harness *h;
 *   omni_harness_new(&h, "mamba2", "d_model: 64\nn_layer: 2", &err);
 *   omni_harness_load_weights(h, "tiny.safetensors", "backbone.", &err);
 *   omni_harness_push(h, "ids", &ids_tensor, &err);
 *   omni_harness_forward(h, &err);
 *   const struct omni_tensor *logits = omni_harness_pull(h, "hidden");
 *   omni_harness_free(h);    // then check omni_buffer_live_count()
 */
#ifndef OMNI_HARNESS_H
#define OMNI_HARNESS_H

#include "omni/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

struct omni_harness;

/* Create a stage of plugin `type`, found on the usual search path.
 * params_yaml: a YAML mapping text (may be NULL). device/dtype may be NULL. */
OMNI_API int omni_harness_new(struct omni_harness **out, const char *type, const char *params_yaml,
                              struct omni_error *err);
OMNI_API int omni_harness_new_full(struct omni_harness **out, const char *type,
                                   const char *params_yaml, const char *device, const char *dtype,
                                   struct omni_error *err);
/* Load weights (calls the stage's load op). */
OMNI_API int omni_harness_load_weights(struct omni_harness *h, const char *path,
                                       const char *prefix, struct omni_error *err);
/* Attach another harness' stage as an adapter to `target` of this stage. */
OMNI_API int omni_harness_attach(struct omni_harness *h, const char *target,
                                 struct omni_harness *adapter, struct omni_error *err);
OMNI_API void omni_harness_set_task(struct omni_harness *h, const char *task);
OMNI_API void omni_harness_set_position(struct omni_harness *h, int64_t pos);
OMNI_API void omni_harness_set_seed(struct omni_harness *h, uint64_t seed);
/* Device copies of position and step (int64 on the stage's CUDA device) that
 * the stage sees as ctx->position_dev / ctx->step_dev, as under the executor;
 * the caller writes them before each call or graph replay. NULL clears. */
OMNI_API void omni_harness_set_counters(struct omni_harness *h, const int64_t *position_dev,
                                        const int64_t *step_dev);
/* Per-call options for the stage ("temperature: 0.5"). */
OMNI_API int omni_harness_set_options(struct omni_harness *h, const char *options_yaml,
                                      struct omni_error *err);
/* Push a tensor into an input port (a new reference is taken). */
OMNI_API int omni_harness_push(struct omni_harness *h, const char *port,
                               const struct omni_tensor *t, struct omni_error *err);
OMNI_API int omni_harness_push_text(struct omni_harness *h, const char *port, const char *text,
                                    struct omni_error *err);
/* Run forward (or step), creating the per-request state on first use. */
OMNI_API int omni_harness_forward(struct omni_harness *h, struct omni_error *err);
OMNI_API int omni_harness_step(struct omni_harness *h, struct omni_error *err);
/* The stage's graph_key words for its last loop call (see plugin.h): what a
 * captured step bakes in. OMNI_EINVAL (and *n = 0) when the plugin has no
 * graph_key op, before any call, or when the op fails or the key passes max. */
OMNI_API int omni_harness_graph_key(struct omni_harness *h, uint64_t *key, int max, int *n,
                                    struct omni_error *err);
/* Drop the request state (a new one is made by the next call). */
OMNI_API void omni_harness_reset_state(struct omni_harness *h);
/* Output of the last call. (transfer none) NULL when the port is unknown or empty. */
OMNI_API const struct omni_tensor *omni_harness_pull(struct omni_harness *h, const char *port);
OMNI_API struct omni_stage *omni_harness_stage(struct omni_harness *h);
/* Destroy everything; afterwards omni_buffer_live_count() should be back to
 * its value before omni_harness_new. */
OMNI_API void omni_harness_free(struct omni_harness *h);

#ifdef __cplusplus
}
#endif
#endif
