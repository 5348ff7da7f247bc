/* kernels/matmul.h - dense matmul family: y = alpha·x·Wᵀ + beta·y + bias,
 * elementwise add, row-broadcast add, dtype-converting copy.
 * Raw-pointer twins of core/include/omni/ops/matmul.h; the omni_op_* wrappers
 * check shapes and call these. Glossary: kernels/README.md. */
#ifndef OMNI_KERNELS_MATMUL_H
#define OMNI_KERNELS_MATMUL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[m,n] = alpha * sum_k x[m,k] * w[n,k] + beta * y[m,n] + bias[n]
 *   y: (M,N) f32, row stride ldy >= N; read only when beta != 0
 *   x: (M,K) f32, row stride ldx >= K
 *   w: (N,K) contiguous, dtype w_dtype (f32, f16, bf16), rows converted on the fly
 *   bias: (N) f32 or NULL
 * f32 accumulation; each y element is reduced in a fixed order that does not
 * depend on the thread count. */
void omni_matmul_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                     int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K, float alpha,
                     float beta);

/* y = a + b over (M,D) rows (row strides ldy, lda, ldb); y may alias a or b.
 *   y, a, b: (M,D) f32 */
void omni_add_cpu(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                  int64_t ldb, int64_t M, int64_t D);

/* y[m,:] += row[:]   y: (M,D) f32 row stride ldy; row: (D) f32 */
void omni_add_row_cpu(float *y, int64_t ldy, const float *row, int64_t M, int64_t D);

/* dst[i] = convert(src[i]) for n contiguous elements; dtypes f32/f16/bf16
 * (same dtype: plain copy, any dtype). dst and src must not overlap.
 *   dst: (n) dst_dtype; src: (n) src_dtype */
void omni_copy_cpu(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);

/* Low-rank update (a LoRA term) in one op, for decode-sized inputs:
 *   y[m,n] += scale * sum_r b[n,r] * (sum_k x[m,k] * a[r,k])
 *   y: (M,N) f32, row stride ldy >= N
 *   x: (M,K) f32, row stride ldx >= K
 *   a: (R,K) contiguous, b: (N,R) contiguous, both of dtype ab_dtype (f32, f16, bf16)
 * M <= OMNI_LORA_MAX_M, R <= OMNI_LORA_MAX_R. The CPU twin is exactly the two
 * matmuls t = x·aᵀ (t: (M,R) contiguous), y = scale·t·bᵀ + y; the CUDA twin
 * does both in one kernel (each block forms t in shared memory, then one
 * thread per output column). */
#ifndef OMNI_LORA_MAX_M /* also in omni/ops/matmul.h */
#define OMNI_LORA_MAX_M 8
#define OMNI_LORA_MAX_R 32
#endif
void omni_lora_update_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, const void *a,
                          const void *b, int ab_dtype, int64_t M, int64_t N, int64_t K, int64_t R,
                          float scale);

#ifdef OMNI_HAVE_CUDA
/* Same contracts; pointers are device memory, the work is queued on the
 * current stream. */
void omni_matmul_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                      int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K, float alpha,
                      float beta);
void omni_add_cuda(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                   int64_t ldb, int64_t M, int64_t D);
void omni_add_row_cuda(float *y, int64_t ldy, const float *row, int64_t M, int64_t D);
void omni_copy_cuda(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);
void omni_lora_update_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, const void *a,
                           const void *b, int ab_dtype, int64_t M, int64_t N, int64_t K, int64_t R,
                           float scale);
#endif

#ifdef __cplusplus
}
#endif
#endif
