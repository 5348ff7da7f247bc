/* kernels/cuda/common.cuh - helpers shared by the CUDA kernels (internal):
 * the current stream, launch checks, dtype loads, warp/block reductions.
 * Every kernel file includes this first. */
#ifndef OMNI_KERNELS_CUDA_COMMON_CUH
#define OMNI_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_impl.h"
#include "omni/dtype.h"

#define OMNI_STREAM omni__cuda_cur_stream()

/* Launch on the current stream and record a bad launch as the pending error. */
#define OMNI_LAUNCH(kernel, grid, block, smem, ...)                                                \
    do {                                                                                           \
        kernel<<<(grid), (block), (smem), OMNI_STREAM>>>(__VA_ARGS__);                             \
        OMNI_CUDA_LAUNCHED(#kernel);                                                               \
    } while (0)

static inline unsigned omni__blocks(int64_t n, int per)
{
    int64_t b = (n + per - 1) / per;
    return (unsigned)(b < 1 ? 1 : b);
}

/* element loads with conversion to f32 */
__device__ __forceinline__ float omni__ld(const float *p) { return *p; }
__device__ __forceinline__ float omni__ld(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ float omni__ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

__device__ __forceinline__ void omni__st(float *p, float v) { *p = v; }
__device__ __forceinline__ void omni__st(__half *p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void omni__st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* load a dtype element (runtime dtype) */
__device__ __forceinline__ float omni__ld_dt(const void *p, int dtype, int64_t i)
{
    if (dtype == OMNI_DTYPE_F16)
        return __half2float(((const __half *)p)[i]);
    if (dtype == OMNI_DTYPE_BF16)
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return ((const float *)p)[i];
}

__device__ __forceinline__ float omni__warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double omni__warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float omni__warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets the total. sh: 32 floats of shared memory. */
__device__ __forceinline__ float omni__block_sum(float v, float *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = omni__warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    float t = lane < nw ? sh[lane] : 0.0f;
    return omni__warp_sum(t);
}

__device__ __forceinline__ double omni__block_sum_d(double v, double *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = omni__warp_sum_d(v);
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    double t = lane < nw ? sh[lane] : 0.0;
    return omni__warp_sum_d(t);
}

__device__ __forceinline__ float omni__block_max(float v, float *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = omni__warp_max(v);
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    float t = lane < nw ? sh[lane] : -INFINITY;
    return omni__warp_max(t);
}

__device__ __forceinline__ float omni__silu(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float omni__softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

#endif
