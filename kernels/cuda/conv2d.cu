/* kernels/cuda/conv2d.cu - CUDA twin of omni_conv2d_cpu (kernels/conv2d.h):
 * 2-D convolution, NCHW, groups 1, zero padding, as
 *   out_b (Cout x S) = W (Cout x Cin*KH*KW) · col_b (Cin*KH*KW x S) + bias
 * per image b, S = Ho*Wo. col_b is unfolded (im2col) into scratch in the
 * weight's dtype, a slice of output rows at a time so the scratch stays under
 * CONV_WS_BYTES, and the product runs on cuBLAS: f32 weights in
 * CUBLAS_COMPUTE_32F (no TF32 unless OMNI_ALLOW_TF32=1), f16/bf16 weights as
 * a 16-bit GEMM with f32 accumulation (the unfolded input is rounded to the
 * weight dtype). A 1x1, stride 1, unpadded conv with f32 weights multiplies
 * the input directly. The bias is added by a separate kernel.
 * Column-major view: out_b is (S x Cout) with ld S = col (S x K, ld slice)
 * times W (K x Cout, ld K). */
#include <cublas_v2.h>

#include "common.cuh"
#include "conv2d.h"
#include "extra.h"

#define CONV_WS_BYTES ((size_t)256 << 20)

/* col[k][s'] for k = (i, dy, dx), s' = output positions [s0, s0 + ns) of image b */
template <typename T>
__global__ void im2col_k(T *col, const float *x, struct omni_conv2d_geom g, int64_t b, int64_t s0,
                         int64_t ns)
{
    const int64_t K = g.Cin * g.KH * g.KW;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K * ns)
        return;
    const int64_t k = i / ns, sp = i % ns, s = s0 + sp;
    const int64_t dx = k % g.KW, dy = (k / g.KW) % g.KH, ci = k / (g.KW * g.KH);
    const int64_t oy = s / g.Wo, ox = s % g.Wo;
    const int64_t iy = oy * g.stride + dy - g.pad_t, ix = ox * g.stride + dx - g.pad_l;
    float v = 0.0f;
    if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W)
        v = x[((b * g.Cin + ci) * g.H + iy) * g.W + ix];
    omni__st(col + i, v);
}

__global__ void conv_bias_k(float *out, const void *bias, int bias_dtype, int64_t C, int64_t S,
                            int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    out[i] += omni__ld_dt(bias, bias_dtype, (i / S) % C);
}

extern "C" int omni_conv2d_cuda(float *out, const float *x, const void *w, int w_dtype,
                                const void *bias, int bias_dtype, const struct omni_conv2d_geom *g)
{
    const int64_t S = g->Ho * g->Wo, K = g->Cin * g->KH * g->KW;
    if (g->B * g->Cout * S == 0)
        return OMNI_OK;
    cublasHandle_t h = omni__cuda_blas();
    if (!h)
        return OMNI_OK; /* error recorded */
    const int half = w_dtype == OMNI_DTYPE_F16 || w_dtype == OMNI_DTYPE_BF16;
    const cudaDataType_t ab = w_dtype == OMNI_DTYPE_F16 ? CUDA_R_16F
                              : w_dtype == OMNI_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = half || !omni__cuda_allow_tf32() ? CUBLAS_COMPUTE_32F
                                                                    : CUBLAS_COMPUTE_32F_FAST_TF32;
    const float one = 1.0f, zero = 0.0f;
    const int direct = !half && g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad_t == 0 &&
                       g->pad_l == 0 && g->Ho == g->H && g->Wo == g->W;
    const size_t es = half ? 2 : 4;
    int64_t ns = S;
    if (!direct && (size_t)(K * S) * es > CONV_WS_BYTES) {
        ns = (int64_t)(CONV_WS_BYTES / ((size_t)K * es));
        if (ns >= g->Wo)
            ns -= ns % g->Wo; /* whole output rows */
        if (ns < 1)
            ns = 1;
    }
    void *col = NULL;
    if (!direct) {
        col = omni__cuda_workspace((size_t)(K * ns) * es);
        if (!col)
            return OMNI_ENOMEM;
    }
    if (S > INT32_MAX || K > INT32_MAX || g->Cout > INT32_MAX) {
        omni__cuda_fail(__FILE__, __LINE__, "conv2d dims exceed cuBLAS's int range");
        return OMNI_OK;
    }
    for (int64_t b = 0; b < g->B; b++) {
        float *ob = out + b * g->Cout * S;
        for (int64_t s0 = 0; s0 < S; s0 += ns) {
            const int64_t n = min(ns, S - s0);
            const void *A;
            int64_t lda;
            if (direct) {
                A = x + b * g->Cin * S + s0;
                lda = S;
            } else {
                if (w_dtype == OMNI_DTYPE_F16)
                    OMNI_LAUNCH(im2col_k<__half>, omni__blocks(K * n, 256), 256, 0, (__half *)col,
                                x, *g, b, s0, n);
                else if (w_dtype == OMNI_DTYPE_BF16)
                    OMNI_LAUNCH(im2col_k<__nv_bfloat16>, omni__blocks(K * n, 256), 256, 0,
                                (__nv_bfloat16 *)col, x, *g, b, s0, n);
                else
                    OMNI_LAUNCH(im2col_k<float>, omni__blocks(K * n, 256), 256, 0, (float *)col, x,
                                *g, b, s0, n);
                A = col;
                lda = n;
            }
            if (OMNI_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)g->Cout,
                                               (int)K, &one, A, ab, (int)lda, w, ab, (int)K, &zero,
                                               ob + s0, CUDA_R_32F, (int)S, ct,
                                               CUBLAS_GEMM_DEFAULT)))
                return OMNI_OK;
        }
    }
    if (bias) {
        const int64_t n = g->B * g->Cout * S;
        OMNI_LAUNCH(conv_bias_k, omni__blocks(n, 256), 256, 0, out, bias, bias_dtype, g->Cout, S, n);
    }
    return OMNI_OK;
}
