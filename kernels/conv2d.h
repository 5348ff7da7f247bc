/* kernels/conv2d.h - 2-D convolution (NCHW, groups 1) and nearest x2
 * upsampling; CPU reference twins of omni/ops/conv2d.h. */
#ifndef OMNI_KERNELS_CONV2D_H
#define OMNI_KERNELS_CONV2D_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Geometry of one convolution. Ho, Wo are the output size; input reads at
 * (y*stride + dy - pad_t, x*stride + dx - pad_l) outside [0,H)x[0,W) are 0. */
struct omni_conv2d_geom {
    int64_t B;
    int64_t Cin, H, W;
    int64_t Cout, KH, KW;
    int64_t stride, pad_t, pad_l;
    int64_t Ho, Wo;
};

/* out = conv(x, w) + bias. w_dtype / bias_dtype: enum omni_dtype (f32, f16,
 * bf16). Returns OMNI_OK, or OMNI_ENOMEM when the per-thread scratch cannot
 * be allocated (out is then unspecified). */
int omni_conv2d_cpu(float *out,        /* out: (B,Cout,Ho,Wo) */
                    const float *x,    /* x: (B,Cin,H,W) */
                    const void *w,     /* w: (Cout,Cin,KH,KW) */
                    int w_dtype,
                    const void *bias,  /* bias: (Cout) or NULL */
                    int bias_dtype, const struct omni_conv2d_geom *g);

/* Bytes of scratch one worker thread of omni_conv2d_cpu holds for g (the
 * unfolded band of input columns plus packed weights). */
size_t omni_conv2d_cpu_scratch_bytes(const struct omni_conv2d_geom *g);

/* What a fused convolution does around the plain one (omni_conv2d_fused_*):
 * the convolution reads the transformed input
 *   t[b, i, y, x] = act(((v - c[0]) - c[1]) * c[2] + c[3]),
 *   v = x[b, i, y >> up2, x >> up2],  c = coef + (b*Cin + i)*4
 * (coef NULL: no affine step; act = silu when silu, else the identity; up2:
 * nearest x2 upsampling, so x is (B, Cin, H/2, W/2) for the geometry's H, W),
 * zero outside [0,H)x[0,W) (padding applies to t), and writes
 *   out = conv(t, w) + bias + residual   (residual (B,Cout,Ho,Wo) or NULL;
 *                                         it may be out itself).
 * coef rows are omni_groupnorm_coef_cpu's: GroupNorm + SiLU + conv in one. */
struct omni_conv2d_fuse {
    const float *coef;     /* (B,Cin,4) or NULL */
    int silu, up2;
    const float *residual; /* (B,Cout,Ho,Wo) or NULL */
};

/* The fused convolution (stride must be 1 when up2): a transformed copy of
 * the input, omni_conv2d_cpu, then the residual. OMNI_ENOMEM when scratch
 * cannot be allocated. */
int omni_conv2d_fused_cpu(float *out, const float *x, const void *w, int w_dtype,
                          const void *bias, int bias_dtype, const struct omni_conv2d_geom *g,
                          const struct omni_conv2d_fuse *f);

/* out[p, 2y+a, 2x+b] = x[p, y, x] for a, b in {0, 1}; P = B*C planes. */
void omni_upsample_nearest2x_cpu(float *out,     /* out: (P,2H,2W) */
                                 const float *x, /* x: (P,H,W) */
                                 int64_t P, int64_t H, int64_t W);

#ifdef OMNI_HAVE_CUDA
/* omni_conv2d_fused_cpu on the device (kernels/cuda/conv2d.cu): an implicit
 * GEMM, no unfolded copy of the input; f16/bf16 weights on tensor cores with
 * the transformed input rounded to the weight dtype and f32 accumulation,
 * f32 weights in f32 FMA. Always OMNI_OK (errors are recorded). */
int omni_conv2d_fused_cuda(float *out, const float *x, const void *w, int w_dtype,
                           const void *bias, int bias_dtype, const struct omni_conv2d_geom *g,
                           const struct omni_conv2d_fuse *f);
#endif

#ifdef __cplusplus
}
#endif
#endif
