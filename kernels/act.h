/* kernels/act.h - elementwise activations over (M, D) rows: silu, softplus
 * (identity above 20) and the product of two tensors. Raw-pointer twins of
 * core/include/omni/ops/act.h. Row strides in elements; the last dim is
 * contiguous; y may alias an input. Glossary: kernels/README.md. */
#ifndef OMNI_KERNELS_ACT_H
#define OMNI_KERNELS_ACT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y = x * sigmoid(x)   y: (M,D) row stride ldy; x: (M,D) row stride ldx */
void omni_silu_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D);
/* y = x > 20 ? x : log1p(exp(x))   y: (M,D) ldy; x: (M,D) ldx */
void omni_softplus_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D);
/* y = a * b   y, a, b: (M,D) with row strides ldy, lda, ldb */
void omni_mul_cpu(float *y, int64_t ldy, const float *a, int64_t lda, const float *b, int64_t ldb,
                  int64_t M, int64_t D);

#ifdef OMNI_HAVE_CUDA
void omni_silu_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D);
void omni_softplus_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D);
void omni_mul_cuda(float *y, int64_t ldy, const float *a, int64_t lda, const float *b, int64_t ldb,
                   int64_t M, int64_t D);
#endif

#ifdef __cplusplus
}
#endif
#endif
