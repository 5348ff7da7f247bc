/* kernels/norm.h - RMSNorm family: plain, fused residual add + RMSNorm, and
 * the gated (gate-before-norm, grouped) RMSNorm of the Mamba-2 mixer.
 * Raw-pointer twins of core/include/omni/ops/norm.h. Rows are (M, D) with row
 * strides in elements; the last dim is contiguous. Glossary: kernels/README.md. */
#ifndef OMNI_KERNELS_NORM_H
#define OMNI_KERNELS_NORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[m,:] = x[m,:] * rsqrt(mean(x[m,:]^2) + eps) * w
 *   out: (M,D) row stride ldo (may alias x); x: (M,D) row stride ldx; w: (D) */
void omni_rmsnorm_cpu(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                      int64_t M, int64_t D, float eps);

/* residual[m,:] += x[m,:] (skipped when x == NULL); out = rmsnorm(residual)
 *   out: (M,D) ldo; residual: (M,D) ldr, in/out; x: (M,D) ldx or NULL; w: (D) */
void omni_add_rmsnorm_cpu(float *out, int64_t ldo, float *residual, int64_t ldr, const float *x,
                          int64_t ldx, const float *w, int64_t M, int64_t D, float eps);

/* g = y * silu(z); per group of group_size channels:
 * out = g * rsqrt(mean_group(g^2) + eps) * w
 *   out: (M,E) ldo (may alias y); y: (M,E) ldy; z: (M,E) ldz; w: (E);
 *   group_size divides E */
void omni_gated_rmsnorm_cpu(float *out, int64_t ldo, const float *y, int64_t ldy, const float *z,
                            int64_t ldz, const float *w, int64_t M, int64_t E, int64_t group_size,
                            float eps);

#ifdef OMNI_HAVE_CUDA
void omni_rmsnorm_cuda(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                       int64_t M, int64_t D, float eps);
void omni_add_rmsnorm_cuda(float *out, int64_t ldo, float *residual, int64_t ldr, const float *x,
                           int64_t ldx, const float *w, int64_t M, int64_t D, float eps);
void omni_gated_rmsnorm_cuda(float *out, int64_t ldo, const float *y, int64_t ldy, const float *z,
                             int64_t ldz, const float *w, int64_t M, int64_t E, int64_t group_size,
                             float eps);
#endif

#ifdef __cplusplus
}
#endif
#endif
