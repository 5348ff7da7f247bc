/* kernels/cuda/vit.cu - CUDA twin of omni_patch_gather_cpu (kernels/vit.h):
 *   cols[b*Np + py*Gw + px, c*p*p + ky*p + kx] = x[b, c, py*p + ky, px*p + kx]
 * one thread per column element (the strided row copy behind concat_last is
 * omni_copy_rows_cuda in matmul.cu); omni_matmul16_cuda, the 16-bit GEMM of
 * the ViT block (x already in the weight dtype: no conversion pass). */
#include <cublas_v2.h>

#include "common.cuh"
#include "extra.h"
#include "vit.h"

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

extern "C" int omni_matmul16_cuda(float *y, const void *x, const void *w, int dtype, int64_t M,
                                  int64_t N, int64_t K, float beta)
{
    if (M == 0 || N == 0)
        return 0;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
        omni__cuda_fail(__FILE__, __LINE__, "matmul16 dims exceed cuBLAS's int range");
        return 0;
    }
    cublasHandle_t h = omni__cuda_blas();
    if (!h)
        return 0;
    const cudaDataType_t t = dtype == OMNI_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
    const float one = 1.0f;
    /* row-major y = x wᵀ is column-major yᵀ = w xᵀ */
    OMNI_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w, t,
                                   (int)K, x, t, (int)K, &beta, y, CUDA_R_32F, (int)N,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}
