/* kernels/gelu.h - GELU activations (f32): the CPU reference (a CUDA twin is
 * not written yet). */
#ifndef OMNI_KERNELS_GELU_H
#define OMNI_KERNELS_GELU_H

#include <stdint.h>

/* y[i] = 0.5 x (1 + erf(x / sqrt 2)); y may alias x. */
void omni_gelu_cpu(float *y /* y: (n) */, const float *x /* x: (n) */, int64_t n);
/* y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); y may alias x. */
void omni_gelu_tanh_cpu(float *y /* y: (n) */, const float *x /* x: (n) */, int64_t n);

#endif
