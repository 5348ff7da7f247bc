/* kernels/cuda/norm.cu - CUDA twins of kernels/cpu/norm.c: RMSNorm, fused
 * residual add + RMSNorm, and the gated (gate-before-norm, grouped) RMSNorm
 * of the Mamba-2 mixer. Same signatures and layouts as kernels/norm.h (rows
 * (M, D) with row strides in elements, last dim contiguous); device pointers,
 * current stream.
 *
 * One block of 1024 threads per row (per row and group for the gated norm):
 * each thread owns the elements i = tid, tid + 1024, ... and keeps up to 4 of
 * them in registers between the two passes (rows up to 4096 wide are read
 * once); the sum of squares is reduced in f32 over the block; each thread
 * then writes the elements it read, so out may alias the input. */
#include "common.cuh"
#include "norm.h"

#define NT 1024 /* threads per row: a decode row is latency bound, not bandwidth bound */
#define NV 4     /* values a thread keeps in registers between the two passes */

__global__ void __launch_bounds__(NT) rmsnorm_k(float *out, int64_t ldo, float *res, int64_t ldr,
                                                const float *x, int64_t ldx, const float *w,
                                                int64_t D, float eps, int add)
{
    __shared__ float sh[32];
    const int64_t m = blockIdx.x;
    float *r = res + m * ldr;
    const float *xr = x ? x + m * ldx : nullptr;
    const bool held = D <= (int64_t)NV * NT;
    float v[NV];
    float ss = 0.0f;
    if (held) {
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * NT;
            v[j] = 0.0f;
            if (i < D) {
                float t = r[i];
                if (add && xr) {
                    t += xr[i];
                    r[i] = t;
                }
                v[j] = t;
                ss += t * t;
            }
        }
    } else {
        for (int64_t i = threadIdx.x; i < D; i += NT) {
            float t = r[i];
            if (add && xr) {
                t += xr[i];
                r[i] = t;
            }
            ss += t * t;
        }
    }
    ss = omni__block_sum(ss, sh);
    const float rstd = 1.0f / sqrtf(ss / (float)D + eps);
    float *o = out + m * ldo;
    if (held) {
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * NT;
            if (i < D)
                o[i] = v[j] * rstd * w[i];
        }
    } else {
        for (int64_t i = threadIdx.x; i < D; i += NT)
            o[i] = r[i] * rstd * w[i];
    }
}

extern "C" void omni_rmsnorm_cuda(float *out, int64_t ldo, const float *x, int64_t ldx,
                                  const float *w, int64_t M, int64_t D, float eps)
{
    if (M == 0)
        return;
    OMNI_LAUNCH(rmsnorm_k, (unsigned)M, NT, 0, out, ldo, (float *)x, ldx, nullptr, 0, w, D, eps, 0);
}

extern "C" void omni_add_rmsnorm_cuda(float *out, int64_t ldo, float *residual, int64_t ldr,
                                      const float *x, int64_t ldx, const float *w, int64_t M,
                                      int64_t D, float eps)
{
    if (M == 0)
        return;
    OMNI_LAUNCH(rmsnorm_k, (unsigned)M, NT, 0, out, ldo, residual, ldr, x, ldx, w, D, eps, 1);
}

__global__ void __launch_bounds__(NT) gated_k(float *out, int64_t ldo, const float *y, int64_t ldy,
                                              const float *z, int64_t ldz, const float *w,
                                              int64_t group, float eps)
{
    __shared__ float sh[32];
    const int64_t m = blockIdx.x, g0 = (int64_t)blockIdx.y * group;
    const float *yr = y + m * ldy + g0, *zr = z + m * ldz + g0;
    const bool held = group <= (int64_t)NV * NT;
    float v[NV];
    float ss = 0.0f;
    if (held) {
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * NT;
            v[j] = 0.0f;
            if (i < group) {
                v[j] = yr[i] * omni__silu(zr[i]);
                ss += v[j] * v[j];
            }
        }
    } else {
        for (int64_t i = threadIdx.x; i < group; i += NT) {
            const float g = yr[i] * omni__silu(zr[i]);
            ss += g * g;
        }
    }
    ss = omni__block_sum(ss, sh);
    const float rstd = 1.0f / sqrtf(ss / (float)group + eps);
    float *o = out + m * ldo + g0;
    if (held) {
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * NT;
            if (i < group)
                o[i] = v[j] * rstd * w[g0 + i];
        }
    } else {
        for (int64_t i = threadIdx.x; i < group; i += NT)
            o[i] = yr[i] * omni__silu(zr[i]) * rstd * w[g0 + i];
    }
}

extern "C" void omni_gated_rmsnorm_cuda(float *out, int64_t ldo, const float *y, int64_t ldy,
                                        const float *z, int64_t ldz, const float *w, int64_t M,
                                        int64_t E, int64_t group_size, float eps)
{
    if (M == 0 || E == 0)
        return;
    OMNI_LAUNCH(gated_k, dim3((unsigned)M, (unsigned)(E / group_size)), NT, 0, out, ldo, y, ldy, z,
                ldz, w, group_size, eps);
}
