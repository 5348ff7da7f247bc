/* kernels/cpu/act.c - CPU reference of the elementwise activations.
 *
 * Layout: (M, D) rows, last dim contiguous, row strides free; y may alias x.
 *   silu(v)     = v / (1 + exp(-v))       (exp(-v) = inf gives -0, never NaN)
 *   softplus(v) = v > 20 ? v : log1p(exp(v))   (mamba2.md 1.4: torch's
 *                 threshold and the log1p form of OmniMamba's pinned stack)
 *   mul         = a * b
 * All f32; each element is independent. */
#include "act.h"

#include <math.h>

void omni_silu_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t d = 0; d < D; d++) {
            float v = x[m * ldx + d];
            y[m * ldy + d] = v / (1.0f + expf(-v));
        }
}

void omni_softplus_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t d = 0; d < D; d++) {
            float v = x[m * ldx + d];
            y[m * ldy + d] = v > 20.0f ? v : log1pf(expf(v));
        }
}

void omni_mul_cpu(float *y, int64_t ldy, const float *a, int64_t lda, const float *b, int64_t ldb,
                  int64_t M, int64_t D)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t d = 0; d < D; d++)
            y[m * ldy + d] = a[m * lda + d] * b[m * ldb + d];
}
