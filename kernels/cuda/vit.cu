/* kernels/cuda/vit.cu - CUDA twin of omni_patch_gather_cpu (kernels/vit.h):
 *   cols[b*Np + py*Gw + px, c*p*p + ky*p + kx] = x[b, c, py*p + ky, px*p + kx]
 * one thread per column element (the strided row copy behind concat_last is
 * omni_copy_rows_cuda in matmul.cu). */
#include "common.cuh"
#include "extra.h"

__global__ void patch_gather_k(float *cols, const float *x, int64_t B, int64_t C, int64_t H,
                               int64_t W, int64_t p)
{
    const int64_t Gh = H / p, Gw = W / p, Np = Gh * Gw, K = C * p * p;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * Np * K)
        return;
    const int64_t k = i % K, row = i / K, t = row % Np, b = row / Np;
    const int64_t kx = k % p, ky = (k / p) % p, c = k / (p * p);
    const int64_t py = t / Gw, px = t % Gw;
    cols[i] = x[((b * C + c) * H + py * p + ky) * W + px * p + kx];
}

extern "C" void omni_patch_gather_cuda(float *cols, const float *x, int64_t B, int64_t C,
                                       int64_t H, int64_t W, int64_t p)
{
    const int64_t n = B * (H / p) * (W / p) * C * p * p;
    if (n)
        OMNI_LAUNCH(patch_gather_k, omni__blocks(n, 256), 256, 0, cols, x, B, C, H, W, p);
}
