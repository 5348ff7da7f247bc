/* kernels/layernorm.h - LayerNorm over the last dim (f32): the CPU
 * reference (a CUDA twin is not written yet). */
#ifndef OMNI_KERNELS_LAYERNORM_H
#define OMNI_KERNELS_LAYERNORM_H

#include <stdint.h>

/* out[m,:] = (x[m,:] - mean) / sqrt(var + eps) * w + b, var biased.
 * w, b may be NULL (1 and 0). out may alias x (same ld). */
void omni_layernorm_cpu(float *out /* out: (M,D), row stride ldo */, int64_t ldo,
                        const float *x /* x: (M,D), row stride ldx */, int64_t ldx,
                        const float *w /* w: (D) or NULL */, const float *b /* b: (D) or NULL */,
                        int64_t M, int64_t D, float eps);

#endif
