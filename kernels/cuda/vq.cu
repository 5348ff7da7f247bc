/* kernels/cuda/vq.cu - CUDA twins of kernels/cpu/vq.c.
 *
 * l2_normalize: one warp per row; sum of squares in double, division in f32.
 * vq_nearest: one block of 256 threads per row z_n; each thread scans a
 *   strided share of the codebook with the CPU's f32 evaluation order
 *   (sums in order of k, d = (|z|^2 + |e|^2) - 2 z.e, every operation
 *   rounded on its own: __fmul_rn/__fadd_rn keep the compiler from fusing),
 *   so the distances are bit-identical; the lowest index among equal minima
 *   wins the block reduction (torch.argmin). */
#include "common.cuh"
#include "extra.h"

__global__ void l2norm_k(float *out, const float *x, int64_t M, int64_t D, float eps)
{
    const int64_t m = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (m >= M)
        return;
    const float *xr = x + m * D;
    double ss = 0.0;
    for (int64_t k = lane; k < D; k += 32)
        ss += (double)xr[k] * xr[k];
    ss = omni__warp_sum_d(ss);
    float nrm = (float)sqrt(ss);
    if (nrm < eps)
        nrm = eps;
    float *o = out + m * D;
    for (int64_t k = lane; k < D; k += 32)
        o[k] = xr[k] / nrm;
}

extern "C" void omni_l2_normalize_cuda(float *out, const float *x, int64_t M, int64_t D,
                                       float eps)
{
    if (M * D == 0)
        return;
    OMNI_LAUNCH(l2norm_k, omni__blocks(M * 32, 256), 256, 0, out, x, M, D, eps);
}

__global__ void __launch_bounds__(256) vq_nearest_k(int32_t *ids, const float *z, const float *e,
                                                    int64_t V, int64_t D)
{
    __shared__ float sd[8];
    __shared__ int64_t si[8];
    const float *zr = z + blockIdx.x * D;
    float a = 0.0f;
    for (int64_t k = 0; k < D; k++)
        a = __fadd_rn(a, __fmul_rn(zr[k], zr[k]));
    float bd = INFINITY;
    int64_t bi = -1;
    for (int64_t v = threadIdx.x; v < V; v += 256) {
        const float *er = e + v * D;
        float ee = 0.0f, dot = 0.0f;
        for (int64_t k = 0; k < D; k++) {
            ee = __fadd_rn(ee, __fmul_rn(er[k], er[k]));
            dot = __fadd_rn(dot, __fmul_rn(zr[k], er[k]));
        }
        const float d = __fsub_rn(__fadd_rn(a, ee), __fmul_rn(2.0f, dot));
        if (bi < 0 || d < bd) {
            bd = d;
            bi = v;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float od = __shfl_xor_sync(0xffffffffu, bd, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || od < bd || (od == bd && oi < bi))) {
            bd = od;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sd[warp] = bd;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 1; i < 8; i++)
            if (si[i] >= 0 && (bi < 0 || sd[i] < bd || (sd[i] == bd && si[i] < bi))) {
                bd = sd[i];
                bi = si[i];
            }
        ids[blockIdx.x] = (int32_t)(bi < 0 ? 0 : bi);
    }
}

extern "C" int omni_vq_nearest_cuda(int32_t *ids, const float *z, const float *e, int64_t N,
                                    int64_t V, int64_t D)
{
    if (N == 0)
        return OMNI_OK;
    OMNI_LAUNCH(vq_nearest_k, (unsigned)N, 256, 0, ids, z, e, V, D);
    return OMNI_OK;
}
