/* kernels/layernorm.h - LayerNorm over the last dim (f32): the CPU
 * references and their CUDA twins (omni_layernorm_cuda in
 * kernels/cuda/extra.h; omni_layernorm_ex_cuda below). */
#ifndef OMNI_KERNELS_LAYERNORM_H
#define OMNI_KERNELS_LAYERNORM_H

#include <stdint.h>

/* out[m,:] = (x[m,:] - mean) / sqrt(var + eps) * w + b, var biased.
 * w, b may be NULL (1 and 0). out may alias x (same ld). */
void omni_layernorm_cpu(float *out /* out: (M,D), row stride ldo */, int64_t ldo,
                        const float *x /* x: (M,D), row stride ldx */, int64_t ldx,
                        const float *w /* w: (D) or NULL */, const float *b /* b: (D) or NULL */,
                        int64_t M, int64_t D, float eps);

#ifdef __cplusplus
extern "C" {
#endif
/* The ViT block's fused norm: out[m,:] = LayerNorm(x[m,:]) as above, rounded
 * once to out_dtype (f32, f16 or bf16); then, when x_add is given,
 * x[m,:] += x_add (after the statistics: the bias of the GEMM that will
 * accumulate into x). out must not alias x when x_add is given. */
void omni_layernorm_ex_cpu(void *out /* out: (M,D) out_dtype, row stride ldo */, int out_dtype,
                           int64_t ldo, float *x /* x: (M,D), row stride ldx */, int64_t ldx,
                           const float *w /* w: (D) or NULL */, const float *b /* b: (D) or NULL */,
                           const float *x_add /* x_add: (D) or NULL */, int64_t M, int64_t D,
                           float eps);
#ifdef OMNI_HAVE_CUDA
void omni_layernorm_ex_cuda(void *out, int out_dtype, int64_t ldo, float *x, int64_t ldx,
                            const float *w, const float *b, const float *x_add, int64_t M,
                            int64_t D, float eps);
#endif
#ifdef __cplusplus
}
#endif

#endif
