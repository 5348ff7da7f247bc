/* kernels/cuda/extra.h - CUDA kernels with no CPU twin (internal to
 * libomni): helpers the op wrappers need on the device that the host path
 * does with plain loops. Device pointers; work on the current stream. */
#ifndef OMNI_KERNELS_CUDA_EXTRA_H
#define OMNI_KERNELS_CUDA_EXTRA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI__COPY_MAX_DIMS 8

/* An element walk of a strided tensor (row-major order over shape). */
struct omni__strided {
    int ndim;
    int64_t shape[OMNI__COPY_MAX_DIMS];
    int64_t strides[OMNI__COPY_MAX_DIMS]; /* elements */
};

/* dst[walk(dd)] = convert(src[walk(sd)]) for n elements (f32/f16/bf16, or
 * the same dtype of any size as a byte copy).
 *   dst: strided by dd (dst_dtype); src: strided by sd (src_dtype) */
void omni__copy_strided_cuda(void *dst, int dst_dtype, const struct omni__strided *dd,
                             const void *src, int src_dtype, const struct omni__strided *sd,
                             int64_t n);

/* Copy `rows` rows of row_bytes between strided row sets (byte strides).
 *   dst: (rows, row_bytes) stride ldd; src: (rows, row_bytes) stride lds */
void omni_copy_rows_cuda(void *dst, int64_t ldd, const void *src, int64_t lds, int64_t rows,
                         int64_t row_bytes);

/* CUDA twins whose CPU headers (kernels/<family>.h, other owners) do not
 * declare them; same signatures as the CPU functions named. */
struct omni_attention_args;
struct omni_conv2d_geom;
/* omni_layernorm_cpu; out may alias x */
void omni_layernorm_cuda(float *out /* (M,D) ldo */, int64_t ldo, const float *x /* (M,D) ldx */,
                         int64_t ldx, const float *w /* (D) or NULL */,
                         const float *b /* (D) or NULL */, int64_t M, int64_t D, float eps);
/* omni_gelu_cpu / omni_gelu_tanh_cpu; y may alias x */
void omni_gelu_cuda(float *y /* (n) */, const float *x /* (n) */, int64_t n);
void omni_gelu_tanh_cuda(float *y /* (n) */, const float *x /* (n) */, int64_t n);
/* omni_attention_cpu (fused: scores never leave shared memory); returns 0,
 * failures are recorded as the pending CUDA error */
int omni_attention_cuda(const struct omni_attention_args *a);
/* omni_conv2d_cpu: im2col slices in scratch + cuBLAS; OMNI_ENOMEM when the
 * scratch cannot be had */
int omni_conv2d_cuda(float *out /* (B,Cout,Ho,Wo) */, const float *x /* (B,Cin,H,W) */,
                     const void *w /* (Cout,Cin,KH,KW) */, int w_dtype,
                     const void *bias /* (Cout) or NULL */, int bias_dtype,
                     const struct omni_conv2d_geom *g);
/* omni_upsample_nearest2x_cpu */
void omni_upsample_nearest2x_cuda(float *out /* (P,2H,2W) */, const float *x /* (P,H,W) */,
                                  int64_t P, int64_t H, int64_t W);
/* omni_groupnorm_cpu; out may alias x */
void omni_groupnorm_cuda(float *out /* (B,C,S) */, const float *x /* (B,C,S) */,
                         const float *w /* (C) or NULL */, const float *bias /* (C) or NULL */,
                         int64_t B, int64_t C, int64_t S, int64_t G, float eps);
/* omni_patch_gather_cpu */
void omni_patch_gather_cuda(float *cols /* (B*Np, C*p*p) */, const float *x /* (B,C,H,W) */,
                            int64_t B, int64_t C, int64_t H, int64_t W, int64_t p);
/* omni_l2_normalize_cpu; out may alias x */
void omni_l2_normalize_cuda(float *out /* (M,D) */, const float *x /* (M,D) */, int64_t M,
                            int64_t D, float eps);
/* omni_vq_nearest_cpu (same f32 evaluation order, no contraction) */
int omni_vq_nearest_cuda(int32_t *ids /* (N) */, const float *z /* (N,D) */,
                         const float *e /* (V,D) */, int64_t N, int64_t V, int64_t D);

#ifdef __cplusplus
}
#endif
#endif
