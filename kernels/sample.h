/* kernels/sample.h - softmax, argmax and the token sampler. Raw-pointer twins
 * of core/include/omni/ops/sample.h. Glossary: kernels/README.md. */
#ifndef OMNI_KERNELS_SAMPLE_H
#define OMNI_KERNELS_SAMPLE_H

#include <stdint.h>

#include "omni/ops/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* splitmix64 finaliser (Steele, Lea, Flood 2014), the mixing step of the
 * counter-based uniform below; plain integer math so CUDA can share it. */
static inline uint64_t omni__mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The uniform in [0,1) drawn by row `row` at step `step` of a generation
 * seeded with `seed`: the top 53 bits of mix(mix(mix(seed) ^ step) ^ row). */
static inline double omni__sample_uniform(uint64_t seed, int64_t step, int64_t row)
{
    uint64_t h = omni__mix64(seed);
    h = omni__mix64(h ^ (uint64_t)step);
    h = omni__mix64(h ^ (uint64_t)row);
    return (double)(h >> 11) * 0x1p-53;
}

/* y[b,:] = softmax(x[b,:])   y: (B,V) row stride ldy (may alias x); x: (B,V) ldx */
void omni_softmax_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t B, int64_t V);

/* ids[b] = the lowest index of the maximum of logits[b,:]
 *   ids: (B) i32; logits: (B,V) row stride ld */
void omni_argmax_cpu(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V);

/* ids[b] drawn by the rules of omni/ops/sample.h with the uniform
 * omni__sample_uniform(seed, step, b).
 *   ids: (B) i32; logits: (B,V) row stride ld
 * Returns OMNI_OK or OMNI_ENOMEM (scratch). s is already validated. */
int omni_sample_cpu(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V,
                    const struct omni_sampling *s, uint64_t seed, int64_t step);

/* omni_sample_cpu with step = *counter + add, the counter read where it lives
 * (on the device for the CUDA twin, so a captured CUDA graph draws with the
 * counter's current value). */
int omni_sample_at_cpu(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V,
                       const struct omni_sampling *s, uint64_t seed, const int64_t *counter,
                       int64_t add);

#ifdef OMNI_HAVE_CUDA
int omni_sample_at_cuda(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V,
                        const struct omni_sampling *s, uint64_t seed, const int64_t *counter,
                        int64_t add);
void omni_softmax_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t B, int64_t V);
void omni_argmax_cuda(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V);
int omni_sample_cuda(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V,
                     const struct omni_sampling *s, uint64_t seed, int64_t step);
#endif

#ifdef __cplusplus
}
#endif
#endif
