/* kernels/gelu.h - GELU activations (f32): the CPU references and their CUDA
 * twins (omni_gelu_cuda in kernels/cuda/extra.h, omni_bias_gelu_cuda below). */
#ifndef OMNI_KERNELS_GELU_H
#define OMNI_KERNELS_GELU_H

#include <stdint.h>

/* y[i] = 0.5 x (1 + erf(x / sqrt 2)); y may alias x. */
void omni_gelu_cpu(float *y /* y: (n) */, const float *x /* x: (n) */, int64_t n);
/* y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); y may alias x. */
void omni_gelu_tanh_cpu(float *y /* y: (n) */, const float *x /* x: (n) */, int64_t n);

#ifdef __cplusplus
extern "C" {
#endif
/* y[m,n] = round(gelu_erf(x[m,n] + bias[n])): the f32 sum, the erf GELU as
 * above, rounded once to y_dtype (f32, f16 or bf16). y may alias x when
 * y_dtype is f32. bias may be NULL. */
void omni_bias_gelu_cpu(void *y /* y: (M,N) y_dtype */, int y_dtype, const float *x /* x: (M,N) */,
                        const float *bias /* bias: (N) or NULL */, int64_t M, int64_t N);
#ifdef OMNI_HAVE_CUDA
void omni_bias_gelu_cuda(void *y, int y_dtype, const float *x, const float *bias, int64_t M,
                         int64_t N);
#endif
#ifdef __cplusplus
}
#endif

#endif
