/* kernels/vq.h - vector-quantiser kernels; CPU reference twins of
 * omni/ops/vq.h. */
#ifndef OMNI_KERNELS_VQ_H
#define OMNI_KERNELS_VQ_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[m, :] = x[m, :] / max(||x[m, :]||_2, eps). out may alias x. */
void omni_l2_normalize_cpu(float *out,     /* out: (M,D) */
                           const float *x, /* x: (M,D) */
                           int64_t M, int64_t D, float eps);

/* ids[n] = argmin_v ((|z_n|^2 + |e_v|^2) - 2 z_n.e_v), f32, lowest v on
 * ties. Returns OMNI_OK or OMNI_ENOMEM (scratch of V floats). */
int omni_vq_nearest_cpu(int32_t *ids,      /* ids: (N) */
                        const float *z,    /* z: (N,D) */
                        const float *e,    /* e: (V,D) */
                        int64_t N, int64_t V, int64_t D);

#ifdef __cplusplus
}
#endif
#endif
