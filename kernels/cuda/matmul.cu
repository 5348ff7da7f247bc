/* kernels/cuda/matmul.cu - CUDA twins of kernels/cpu/matmul.c:
 *   y[m,n] = alpha * sum_k x[m,k] w[n,k] + beta * y[m,n] + bias[n]
 * with x, y f32 (row strides ldx, ldy), w (N,K) contiguous f32/f16/bf16,
 * plus elementwise add, row-broadcast add and the dtype-converting copy
 * (and a strided copy, kernels/cuda/extra.h).
 *
 * Two matmul paths:
 * - bf16 weights, M <= 16, K % 32 == 0: the tensor-core GEMV of decode.cu
 *   (omni__dec_gemv_tc_cuda).
 * - M <= 8 (decode, other weights): a weight-streaming GEMV. One warp per output column n
 *   (or per part of it: K is split over up to 8 warps when N is small, so
 *   the grid keeps about four blocks per multiprocessor) reads w[n,:] once
 *   with 16-byte loads and forms up to 8 dot products against x rows (read
 *   through L1); f32 accumulation, shuffle and shared-memory reductions.
 *   K <= 32 (a LoRA factor's rank) takes one thread per output. No scratch,
 *   no library call: graph-capture safe.
 * - M > 8: cuBLAS. f32 weights: cublasGemmEx in CUBLAS_COMPUTE_32F (true
 *   f32; CUBLAS_COMPUTE_32F_FAST_TF32 when OMNI_ALLOW_TF32=1). f16/bf16
 *   weights: x is rounded to the weight dtype into scratch (the fixed small
 *   area when it fits, else the prefill workspace), then a 16-bit GEMM with
 *   f32 accumulation and f32 output. The bias is added by a second kernel.
 * The LoRA update y += scale·(x·Aᵀ)·Bᵀ (M <= 8, rank <= 32) is one kernel
 * (lora_update_k, end of file).
 * Row-major y = x·Wᵀ is the column-major product yᵀ = W·xᵀ: cuBLAS sees
 * A = w (K x N col-major, transposed), B = x (K x M col-major, ld ldx).
 */
#include <cublas_v2.h>

#include "common.cuh"
#include "decode.h"
#include "extra.h"
#include "matmul.h"

/* ---- GEMV --------------------------------------------------------------------------- */

#define GV_WARPS 8

template <typename T> struct vec16 {
    static const int n = 16 / sizeof(T);
};

__device__ __forceinline__ void unpack(const uint4 &u, float *f, const float *)
{
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack(const uint4 &u, float *f, const __half *)
{
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 v = __half22float2(h[i]);
        f[2 * i] = v.x, f[2 * i + 1] = v.y;
    }
}
__device__ __forceinline__ void unpack(const uint4 &u, float *f, const __nv_bfloat16 *)
{
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 v = __bfloat1622float2(h[i]);
        f[2 * i] = v.x, f[2 * i + 1] = v.y;
    }
}

/* One warp per (column n, K part): the block's 8 warps cover 8 / ks columns,
 * each column split into ks parts of K whose partial sums meet in shared
 * memory (ks > 1 keeps enough loads in flight when N is small, e.g. out_proj's
 * 2048 columns or a LoRA factor's 8). */
template <typename T, int MT>
__global__ void __launch_bounds__(GV_WARPS * 32)
    gemv_k(float *y, int64_t ldy, const float *x, int64_t ldx, const T *w, const float *bias,
           int64_t M, int64_t N, int64_t K, float alpha, float beta, int vec, int ks)
{
    __shared__ float part[GV_WARPS][MT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int rpb = GV_WARPS / ks, row = warp % rpb, kp = warp / rpb;
    const int64_t n = (int64_t)blockIdx.x * rpb + row;
    const int64_t m0 = (int64_t)blockIdx.y * MT;
    const int mt = (int)min((int64_t)MT, M - m0);
    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        acc[m] = 0.0f;
    if (n < N) {
        const T *wr = w + n * K;
        if (vec) {
            constexpr int V = vec16<T>::n;
            const uint4 *wv = reinterpret_cast<const uint4 *>(wr);
            const int64_t nv = K / V, per = (nv + ks - 1) / ks, lo = kp * per;
            const int64_t hi = min(nv, lo + per);
#pragma unroll 4
            for (int64_t i = lo + lane; i < hi; i += 32) {
                const uint4 u = __ldg(wv + i);
                float wf[V];
                unpack(u, wf, (const T *)nullptr);
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    if (m < mt) {
                        const float4 *xp = reinterpret_cast<const float4 *>(x + (m0 + m) * ldx + i * V);
#pragma unroll
                        for (int q = 0; q < V / 4; q++) {
                            const float4 xv = __ldg(xp + q);
                            acc[m] += wf[4 * q] * xv.x + wf[4 * q + 1] * xv.y +
                                      wf[4 * q + 2] * xv.z + wf[4 * q + 3] * xv.w;
                        }
                    }
                }
            }
        } else {
            const int64_t per = (K + ks - 1) / ks, lo = kp * per, hi = min(K, lo + per);
            for (int64_t k = lo + lane; k < hi; k += 32) {
                const float wk = omni__ld(wr + k);
#pragma unroll
                for (int m = 0; m < MT; m++)
                    if (m < mt)
                        acc[m] += wk * x[(m0 + m) * ldx + k];
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MT; m++)
        acc[m] = omni__warp_sum(acc[m]);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < MT; m++)
            part[warp][m] = acc[m];
    }
    __syncthreads();
    if (kp == 0 && lane == 0 && n < N) {
        const float bv = bias ? bias[n] : 0.0f;
#pragma unroll
        for (int m = 0; m < MT; m++) {
            if (m < mt) {
                float sum = 0.0f;
                for (int p = 0; p < ks; p++)
                    sum += part[row + p * rpb][m];
                float *yp = y + (m0 + m) * ldy + n;
                float v = alpha * sum;
                if (beta != 0.0f)
                    v += beta * *yp;
                *yp = v + bv;
            }
        }
    }
}

/* K <= 32 (a LoRA factor's rank): one thread per output element. */
template <typename T>
__global__ void gemv_smallk_k(float *y, int64_t ldy, const float *x, int64_t ldx, const T *w,
                              const float *bias, int64_t M, int64_t N, int64_t K, float alpha,
                              float beta)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * N)
        return;
    const int64_t m = i / N, n = i % N;
    const T *wr = w + n * K;
    const float *xr = x + m * ldx;
    float acc = 0.0f;
    for (int64_t k = 0; k < K; k++)
        acc += omni__ld(wr + k) * xr[k];
    float *yp = y + m * ldy + n;
    float v = alpha * acc;
    if (beta != 0.0f)
        v += beta * *yp;
    *yp = v + (bias ? bias[n] : 0.0f);
}

template <typename T, int MT>
static void gemv_launch(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                        const float *bias, int64_t M, int64_t N, int64_t K, float alpha,
                        float beta)
{
    constexpr int V = vec16<T>::n;
    const int vec = K % V == 0 && ((uintptr_t)w & 15) == 0 && ((uintptr_t)x & 15) == 0 &&
                    (M == 1 || ldx % 4 == 0);
    /* split K until the grid has about four blocks per multiprocessor */
    const int64_t want = 4 * (int64_t)omni__cuda_sm_count();
    int ks = 1;
    while (ks < GV_WARPS && (N * ks + GV_WARPS - 1) / GV_WARPS < want)
        ks *= 2;
    const dim3 grid(omni__blocks(N, GV_WARPS / ks), omni__blocks(M, MT));
    OMNI_LAUNCH((gemv_k<T, MT>), grid, GV_WARPS * 32, 0, y, ldy, x, ldx, (const T *)w, bias, M, N,
                K, alpha, beta, vec, ks);
}

template <typename T>
static void gemv(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K, float alpha, float beta)
{
    if (K <= 32)
        OMNI_LAUNCH(gemv_smallk_k<T>, omni__blocks(M * N, 256), 256, 0, y, ldy, x, ldx, (const T *)w,
                    bias, M, N, K, alpha, beta);
    else if (M <= 1)
        gemv_launch<T, 1>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
    else if (M <= 2)
        gemv_launch<T, 2>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
    else if (M <= 4)
        gemv_launch<T, 4>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
    else
        gemv_launch<T, 8>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
}

/* ---- helpers ------------------------------------------------------------------------ */

/* y[m,:] = beta * y[m,:] (+ bias); used when K == 0 */
__global__ void scale_bias_k(float *y, int64_t ldy, const float *bias, int64_t M, int64_t N,
                             float beta)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * N)
        return;
    const int64_t m = i / N, n = i % N;
    float *p = y + m * ldy + n;
    *p = (beta != 0.0f ? beta * *p : 0.0f) + (bias ? bias[n] : 0.0f);
}

/* dst (M,K) contiguous half = src (M,K) f32 rows of stride lds */
template <typename T>
__global__ void to_half_k(T *dst, const float *src, int64_t lds, int64_t M, int64_t K)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * K)
        return;
    omni__st(dst + i, src[(i / K) * lds + i % K]);
}

__global__ void add_row_k(float *y, int64_t ldy, const float *row, int64_t M, int64_t D)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * D)
        return;
    y[(i / D) * ldy + i % D] += row[i % D];
}

__global__ void add_k(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                      int64_t ldb, int64_t M, int64_t D)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * D)
        return;
    const int64_t m = i / D, d = i % D;
    y[m * ldy + d] = a[m * lda + d] + b[m * ldb + d];
}

/* ---- matmul ---------------------------------------------------------------------------- */

static cudaDataType_t cuda_type(int dtype)
{
    return dtype == OMNI_DTYPE_F16 ? CUDA_R_16F : dtype == OMNI_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

extern "C" void omni_matmul_cuda(float *y, int64_t ldy, const float *x, int64_t ldx,
                                 const void *w, int w_dtype, const float *bias, int64_t M,
                                 int64_t N, int64_t K, float alpha, float beta)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        OMNI_LAUNCH(scale_bias_k, omni__blocks(M * N, 256), 256, 0, y, ldy, bias, M, N, beta);
        return;
    }
    /* bf16 weights, M <= 16: the tensor-core GEMV of kernels/cuda/decode.cu (x kept at
     * f32 level as two bf16 parts); it declines shapes it does not take */
    if (w_dtype == OMNI_DTYPE_BF16 && M <= OMNI_DEC_MAX_M &&
        omni__dec_gemv_tc_cuda(y, ldy, x, ldx, w, w_dtype, bias, M, N, K, alpha, beta, NULL))
        return;
    if (M <= 8) {
        if (w_dtype == OMNI_DTYPE_F16)
            gemv<__half>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
        else if (w_dtype == OMNI_DTYPE_BF16)
            gemv<__nv_bfloat16>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
        else
            gemv<float>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta);
        return;
    }
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || ldx > INT32_MAX || ldy > INT32_MAX) {
        omni__cuda_fail(__FILE__, __LINE__, "matmul dims exceed cuBLAS's int range");
        return;
    }
    cublasHandle_t h = omni__cuda_blas();
    if (!h)
        return;
    const void *B = x;
    int64_t ldb = ldx;
    cudaDataType_t ab = CUDA_R_32F;
    cublasComputeType_t ct = omni__cuda_allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (w_dtype == OMNI_DTYPE_F16 || w_dtype == OMNI_DTYPE_BF16) {
        const size_t bytes = (size_t)(M * K) * 2;
        void *xh = omni__cuda_small_ws(bytes);
        if (!xh)
            xh = omni__cuda_workspace(bytes);
        if (!xh)
            return;
        if (w_dtype == OMNI_DTYPE_F16)
            OMNI_LAUNCH(to_half_k<__half>, omni__blocks(M * K, 256), 256, 0, (__half *)xh, x, ldx,
                        M, K);
        else
            OMNI_LAUNCH(to_half_k<__nv_bfloat16>, omni__blocks(M * K, 256), 256, 0,
                        (__nv_bfloat16 *)xh, x, ldx, M, K);
        B = xh;
        ldb = K;
        ab = cuda_type(w_dtype);
        ct = CUBLAS_COMPUTE_32F;
    }
    if (OMNI_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha,
                                       w, ab, (int)K, B, ab, (int)ldb, &beta, y, CUDA_R_32F,
                                       (int)ldy, ct, CUBLAS_GEMM_DEFAULT)))
        return;
    if (bias)
        OMNI_LAUNCH(add_row_k, omni__blocks(M * N, 256), 256, 0, y, ldy, bias, M, N);
}

extern "C" void omni_add_cuda(float *y, int64_t ldy, const float *a, int64_t lda, const float *b,
                              int64_t ldb, int64_t M, int64_t D)
{
    if (M * D == 0)
        return;
    OMNI_LAUNCH(add_k, omni__blocks(M * D, 256), 256, 0, y, ldy, a, lda, b, ldb, M, D);
}

extern "C" void omni_add_row_cuda(float *y, int64_t ldy, const float *row, int64_t M, int64_t D)
{
    if (M * D == 0)
        return;
    OMNI_LAUNCH(add_row_k, omni__blocks(M * D, 256), 256, 0, y, ldy, row, M, D);
}

/* ---- copies ---------------------------------------------------------------------------- */

template <typename D, typename S> __global__ void convert_k(D *dst, const S *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        omni__st(dst + i, omni__ld(src + i));
}

template <typename D, typename S>
static void convert(void *dst, const void *src, int64_t n)
{
    OMNI_LAUNCH((convert_k<D, S>), omni__blocks(n, 256), 256, 0, (D *)dst, (const S *)src, n);
}

template <typename D>
static void convert_from(void *dst, const void *src, int src_dtype, int64_t n)
{
    if (src_dtype == OMNI_DTYPE_F16)
        convert<D, __half>(dst, src, n);
    else if (src_dtype == OMNI_DTYPE_BF16)
        convert<D, __nv_bfloat16>(dst, src, n);
    else
        convert<D, float>(dst, src, n);
}

extern "C" void omni_copy_cuda(void *dst, int dst_dtype, const void *src, int src_dtype,
                               int64_t n)
{
    if (n == 0)
        return;
    if (dst_dtype == src_dtype) {
        OMNI_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * omni_dtype_size(dst_dtype),
                                        cudaMemcpyDeviceToDevice, OMNI_STREAM));
        return;
    }
    if (dst_dtype == OMNI_DTYPE_F16)
        convert_from<__half>(dst, src, src_dtype, n);
    else if (dst_dtype == OMNI_DTYPE_BF16)
        convert_from<__nv_bfloat16>(dst, src, src_dtype, n);
    else
        convert_from<float>(dst, src, src_dtype, n);
}

__device__ __forceinline__ int64_t walk_off(const struct omni__strided &s, int64_t i)
{
    int64_t off = 0;
    for (int d = s.ndim - 1; d >= 0; d--) {
        const int64_t q = i % s.shape[d];
        i /= s.shape[d];
        off += q * s.strides[d];
    }
    return off;
}

__global__ void copy_strided_k(char *dst, int dt, struct omni__strided dd, const char *src, int st,
                               struct omni__strided sd, int64_t n, int es)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const int64_t od = walk_off(dd, i), os = walk_off(sd, i);
    if (dt == st) {
        const int dsz = es;
        for (int b = 0; b < dsz; b++)
            dst[od * dsz + b] = src[os * dsz + b];
        return;
    }
    const float v = omni__ld_dt(src, st, os);
    if (dt == OMNI_DTYPE_F16)
        omni__st((__half *)dst + od, v);
    else if (dt == OMNI_DTYPE_BF16)
        omni__st((__nv_bfloat16 *)dst + od, v);
    else
        ((float *)dst)[od] = v;
}

extern "C" void omni__copy_strided_cuda(void *dst, int dst_dtype, const struct omni__strided *dd,
                                        const void *src, int src_dtype,
                                        const struct omni__strided *sd, int64_t n)
{
    if (n == 0)
        return;
    OMNI_LAUNCH(copy_strided_k, omni__blocks(n, 256), 256, 0, (char *)dst, dst_dtype, *dd,
                (const char *)src, src_dtype, *sd, n, (int)omni_dtype_size(dst_dtype));
}

extern "C" void omni_copy_rows_cuda(void *dst, int64_t ldd, const void *src, int64_t lds,
                                    int64_t rows, int64_t row_bytes)
{
    if (rows == 0 || row_bytes == 0)
        return;
    if (rows == 1) {
        OMNI_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)row_bytes, cudaMemcpyDeviceToDevice,
                                        OMNI_STREAM));
        return;
    }
    OMNI_CUDA_CHECK(cudaMemcpy2DAsync(dst, (size_t)ldd, src, (size_t)lds, (size_t)row_bytes,
                                      (size_t)rows, cudaMemcpyDeviceToDevice, OMNI_STREAM));
}

/* ---- low-rank update ------------------------------------------------------------------ */

/* y[m,n] += scale * sum_r b[n,r] t[m,r] with t = x·aᵀ, in one kernel: every
 * block first forms t (M x R, at most 8 x 32) in shared memory (a is small:
 * R rows of K, read through L2 by each block; f32 factors with 16-byte loads,
 * all of a thread's loads issued together), then one thread per output
 * column n adds its term. Replaces two GEMV launches per LoRA in decode. */
#define LU_NT 256

template <typename T, int RT, bool EXACT>
__global__ void __launch_bounds__(LU_NT)
    lora_update_k(float *y, int64_t ldy, const float *x, int64_t ldx, const T *a, const T *b,
                  int M, int64_t N, int64_t K, int R, float scale, int vec)
{
    __shared__ float part[LU_NT / 32][RT];
    __shared__ float t[OMNI_LORA_MAX_M][RT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int m = 0; m < M; m++) {
        float acc[RT];
#pragma unroll
        for (int r = 0; r < RT; r++)
            acc[r] = 0.0f;
        const float *xr = x + m * ldx;
        if (vec) { /* T = float, K % 4 == 0, 16-byte aligned rows */
            const int64_t K4 = K / 4;
            const float4 *x4 = reinterpret_cast<const float4 *>(xr);
            const float4 *a4 = reinterpret_cast<const float4 *>(a);
#pragma unroll 2
            for (int64_t i = threadIdx.x; i < K4; i += LU_NT) {
                const float4 xv = __ldg(x4 + i);
#pragma unroll
                for (int r = 0; r < RT; r++)
                    if (EXACT || r < R) {
                        const float4 av = __ldg(a4 + r * K4 + i);
                        acc[r] += av.x * xv.x + av.y * xv.y + av.z * xv.z + av.w * xv.w;
                    }
            }
        } else {
#pragma unroll 2
            for (int64_t k = threadIdx.x; k < K; k += LU_NT) {
                const float xv = xr[k];
#pragma unroll
                for (int r = 0; r < RT; r++)
                    if (EXACT || r < R)
                        acc[r] += omni__ld(a + r * K + k) * xv;
            }
        }
#pragma unroll
        for (int r = 0; r < RT; r++)
            acc[r] = omni__warp_sum(acc[r]);
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < RT; r++)
                part[warp][r] = acc[r];
        }
        __syncthreads();
        if (threadIdx.x < R) {
            float s = 0.0f;
#pragma unroll
            for (int w = 0; w < LU_NT / 32; w++)
                s += part[w][threadIdx.x];
            t[m][threadIdx.x] = s;
        }
        __syncthreads();
    }
    const int64_t n = (int64_t)blockIdx.x * LU_NT + threadIdx.x;
    if (n >= N)
        return;
    const T *br = b + n * R;
    float bv[RT];
#pragma unroll
    for (int r = 0; r < RT; r++)
        bv[r] = (EXACT || r < R) ? omni__ld(br + r) : 0.0f;
    for (int m = 0; m < M; m++) {
        float s = 0.0f;
#pragma unroll
        for (int r = 0; r < RT; r++)
            if (EXACT || r < R)
                s += bv[r] * t[m][r];
        float *yp = y + m * ldy + n;
        *yp = scale * s + *yp;
    }
}

#define LU_GO(RT, EX)                                                                              \
    OMNI_LAUNCH((lora_update_k<T, RT, EX>), grid, LU_NT, 0, y, ldy, x, ldx, (const T *)a,           \
                (const T *)b, M, N, K, R, scale, vec)

template <typename T>
static void lora_update(float *y, int64_t ldy, const float *x, int64_t ldx, const void *a,
                        const void *b, int M, int64_t N, int64_t K, int R, float scale)
{
    const unsigned grid = omni__blocks(N, LU_NT);
    const int vec = sizeof(T) == 4 && K % 4 == 0 && ((uintptr_t)a & 15) == 0 &&
                    ((uintptr_t)x & 15) == 0 && (M == 1 || ldx % 4 == 0);
    if (R == 8)
        LU_GO(8, true);
    else if (R == 16)
        LU_GO(16, true);
    else if (R == 32)
        LU_GO(32, true);
    else if (R < 8)
        LU_GO(8, false);
    else if (R < 16)
        LU_GO(16, false);
    else
        LU_GO(32, false);
}

extern "C" void omni_lora_update_cuda(float *y, int64_t ldy, const float *x, int64_t ldx,
                                      const void *a, const void *b, int ab_dtype, int64_t M,
                                      int64_t N, int64_t K, int64_t R, float scale)
{
    if (M <= 0 || N <= 0 || M > OMNI_LORA_MAX_M || R > OMNI_LORA_MAX_R)
        return;
    if (ab_dtype == OMNI_DTYPE_F16)
        lora_update<__half>(y, ldy, x, ldx, a, b, (int)M, N, K, (int)R, scale);
    else if (ab_dtype == OMNI_DTYPE_BF16)
        lora_update<__nv_bfloat16>(y, ldy, x, ldx, a, b, (int)M, N, K, (int)R, scale);
    else
        lora_update<float>(y, ldy, x, ldx, a, b, (int)M, N, K, (int)R, scale);
}
