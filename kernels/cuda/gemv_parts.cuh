/* kernels/cuda/gemv_parts.cuh - device helpers of the decode GEMVs (kernels/cuda/decode.cu),
 * shared with the design sweep tests/device/gemv_lab.cu: streaming 16-byte loads, the bf16
 * m16n8k16 MMA, the f32 -> bf16 hi + lo split, bf16 x 8 widening and the L2 bulk prefetch. */
#ifndef OMNI_KERNELS_CUDA_GEMV_PARTS_CUH
#define OMNI_KERNELS_CUDA_GEMV_PARTS_CUH

#include <cuda_bf16.h>
#include <stdint.h>

/* prefetch [p, p + bytes) into L2, in 4 KiB pieces over the block's threads
 * (p 16-byte aligned, bytes a multiple of 16) */
__device__ __forceinline__ void l2_prefetch(const void *p, int64_t bytes)
{
    const int64_t pieces = (bytes + 4095) / 4096;
    for (int64_t i = threadIdx.x; i < pieces; i += blockDim.x) {
        const int64_t off = i * 4096;
        const unsigned n = (unsigned)min((int64_t)4096, bytes - off);
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"((const char *)p + off),
                     "r"(n)
                     : "memory");
    }
}

__device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

__device__ __forceinline__ void mma16816(float *c, uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* (a, b) -> bf16 pairs hi and lo with a ~ hi.x + lo.x, b ~ hi.y + lo.y */
__device__ __forceinline__ void split2(float a, float b, uint32_t &hi, uint32_t &lo)
{
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    const float2 hf = __bfloat1622float2(h);
    const __nv_bfloat162 l = __floats2bfloat162_rn(a - hf.x, b - hf.y);
    hi = *reinterpret_cast<const uint32_t *>(&h);
    lo = *reinterpret_cast<const uint32_t *>(&l);
}

/* bf16 x 8 (one 16-byte load) -> f32, exact */
__device__ __forceinline__ void bf16x8(uint4 v, float *f)
{
    const uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(a[i] << 16);
        f[2 * i + 1] = __uint_as_float(a[i] & 0xffff0000u);
    }
}

#endif
