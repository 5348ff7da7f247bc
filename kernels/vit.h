/* kernels/vit.h - ViT helper kernels (CPU references; CUDA twins in kernels/cuda/vit.cu):
 * patch gather (im2col for kernel = stride = p), strided row copy (the body
 * of concat along the last dim) and PyTorch's antialiased bicubic resize. */
#ifndef OMNI_KERNELS_VIT_H
#define OMNI_KERNELS_VIT_H

#include <stdint.h>

/* cols[b*Np + py*Gw + px, c*p*p + ky*p + kx] = x[b, c, py*p + ky, px*p + kx]
 * with Gh = H/p, Gw = W/p, Np = Gh*Gw (trailing rows/columns ignored). */
void omni_patch_gather_cpu(float *cols /* cols: (B*Np, C*p*p) */,
                           const float *x /* x: (B,C,H,W) contiguous */, int64_t B, int64_t C,
                           int64_t H, int64_t W, int64_t p);

/* Copy `rows` rows of row_bytes bytes between strided row sets (byte strides). */
void omni_copy_rows_cpu(void *dst /* dst: (rows, row_bytes) stride ldd */, int64_t ldd,
                        const void *src /* src: (rows, row_bytes) stride lds */, int64_t lds,
                        int64_t rows, int64_t row_bytes);

/* F.interpolate(bicubic, align_corners=False, antialias=True) per plane, in
 * PyTorch's f32 arithmetic: width pass into tmp, then height pass into out
 * (a pass is skipped when its size does not change).
 *   tmp is used only when both sizes change. */
void omni_resize_bicubic_aa_cpu(float *out /* out: (R,Ho,Wo) */, float *tmp /* tmp: (R,H,Wo) */,
                                const float *x /* x: (R,H,W) */, int64_t R, int64_t H, int64_t W,
                                int64_t Ho, int64_t Wo);

#ifdef __cplusplus
extern "C" {
#endif
/* y = x · wᵀ + beta y with 16-bit x and w of the same dtype (f16 or bf16,
 * exact products, f32 accumulation and y): the GEMMs of the ViT block, whose
 * inputs the previous op already wrote in the weight dtype. 0, or OMNI_ENOMEM
 * (the CPU twin converts x to an f32 temporary and calls omni_matmul_cpu). */
int omni_matmul16_cpu(float *y /* y: (M,N) contiguous */, const void *x /* x: (M,K) contiguous */,
                      const void *w /* w: (N,K) contiguous */, int dtype, int64_t M, int64_t N,
                      int64_t K, float beta);
#ifdef OMNI_HAVE_CUDA
/* cublasGemmEx, CUBLAS_COMPUTE_32F; failures are recorded as the pending CUDA error */
int omni_matmul16_cuda(float *y, const void *x, const void *w, int dtype, int64_t M, int64_t N,
                       int64_t K, float beta);
#endif
#ifdef __cplusplus
}
#endif

#endif
