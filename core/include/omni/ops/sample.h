/* omni/ops/sample.h - see kernels/README.md for the dimension glossary. */
#ifndef OMNI_OPS_SAMPLE_H
#define OMNI_OPS_SAMPLE_H

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Row softmax over the last dim (f32, max-subtracted); y may alias x. */
OMNI_API int omni_op_softmax(struct omni_tensor *y, const struct omni_tensor *x,
                             struct omni_error *err);

/* ids[b] = argmax_v logits[b, v] (lowest index on ties). logits: (B, V) f32, ids: (B) i32. */
OMNI_API int omni_op_argmax(struct omni_tensor *ids, const struct omni_tensor *logits,
                            struct omni_error *err);

/* Sampling rules of mamba_ssm / OmniMamba generation:
 *   top_k == 1: argmax (temperature ignored);
 *   top_k > 1: keep the k largest logits, divide by temperature, top-p over
 *              those, softmax, one draw;
 *   top_k == 0: divide by temperature, top-p, softmax, one draw.
 *   top-p removes entries whose ascending cumulative probability is <= 1-top_p
 *   (no-op when top_p <= 0 or >= 1). */
struct omni_sampling {
    float temperature; /* 1.0 = unchanged */
    int32_t top_k;     /* 0 = all */
    float top_p;       /* 0 or 1 = off */
};

/* The uniform in [0,1) that row `row` of step `step` draws: a counter-based
 * hash of (seed, step, row), identical on CPU and CUDA. */
OMNI_API double omni_sample_uniform(uint64_t seed, int64_t step, int64_t row);

/* ids[b] drawn from logits[b, :] by the rules above. logits: (B, V) f32;
 * ids: (B) i32. Same (seed, step) => same ids. */
OMNI_API int omni_op_sample(struct omni_tensor *ids, const struct omni_tensor *logits,
                            const struct omni_sampling *s, uint64_t seed, int64_t step,
                            struct omni_error *err);

/* omni_op_sample with step = counter[0] + add, the counter (i64, on the
 * logits' device) read when the op runs - on CUDA by the kernel, so a captured
 * CUDA graph draws with the counter's current value (the executor's
 * ctx->step_dev). */
OMNI_API int omni_op_sample_at(struct omni_tensor *ids, const struct omni_tensor *logits,
                               const struct omni_sampling *s, uint64_t seed,
                               const struct omni_tensor *counter, int64_t add,
                               struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
