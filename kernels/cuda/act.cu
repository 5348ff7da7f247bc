/* kernels/cuda/act.cu - CUDA twins of kernels/cpu/act.c: silu, softplus
 * (identity above 20, log1p form) and the elementwise product over (M, D)
 * rows with row strides; y may alias an input (each element is read and
 * written by one thread). Device pointers, current stream. */
#include "act.h"
#include "common.cuh"

enum { ACT_SILU, ACT_SOFTPLUS };

__global__ void unary_k(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t D,
                        int op)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * D)
        return;
    const int64_t m = i / D, d = i % D;
    const float v = x[m * ldx + d];
    y[m * ldy + d] = op == ACT_SILU ? v / (1.0f + expf(-v)) : omni__softplus(v);
}

__global__ void mul_k(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                      int64_t ldb, int64_t M, int64_t D)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * D)
        return;
    const int64_t m = i / D, d = i % D;
    y[m * ldy + d] = a[m * lda + d] * b[m * ldb + d];
}

extern "C" void omni_silu_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M,
                               int64_t D)
{
    if (M * D != 0)
        OMNI_LAUNCH(unary_k, omni__blocks(M * D, 256), 256, 0, y, ldy, x, ldx, M, D, (int)ACT_SILU);
}

extern "C" void omni_softplus_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M,
                                   int64_t D)
{
    if (M * D != 0)
        OMNI_LAUNCH(unary_k, omni__blocks(M * D, 256), 256, 0, y, ldy, x, ldx, M, D,
                    (int)ACT_SOFTPLUS);
}

extern "C" void omni_mul_cuda(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                              int64_t ldb, int64_t M, int64_t D)
{
    if (M * D != 0)
        OMNI_LAUNCH(mul_k, omni__blocks(M * D, 256), 256, 0, y, ldy, a, lda, b, ldb, M, D);
}
