/* kernels/cpu/vq.c - vector-quantiser kernels (LlamaGen VectorQuantizer).
 *
 * l2_normalize: rows of x (M, D) divided by max(||row||_2, eps); the sum of
 * squares is accumulated in double, the division is done in f32 like
 * F.normalize (x / norm.clamp_min(eps)).
 *
 * vq_nearest: for each row z_n of z (N, D) the index of the codebook row e_v
 * (V, D) that minimises the squared distance written the way LlamaGen's
 * quantiser computes it in f32,
 *   d = (sum z^2 + sum e^2) - 2 * (z . e),
 * each sum accumulated in order in f32; the first minimum wins (torch.argmin).
 * |e_v|^2 is computed once per call into a scratch of V floats; rows are split
 * over threads.
 */
#include <math.h>
#include <stdlib.h>

#include "omni/status.h"

#include "vq.h"
#include "cpu/parallel.h"

struct l2_job {
    float *out;
    const float *x;
    int64_t D;
    float eps;
};

static void l2_tasks(void *ctx, int64_t m0, int64_t m1)
{
    const struct l2_job *j = ctx;
    for (int64_t m = m0; m < m1; m++) {
        const float *xr = j->x + m * j->D;
        float *orow = j->out + m * j->D;
        double ss = 0.0;
        for (int64_t k = 0; k < j->D; k++)
            ss += (double)xr[k] * xr[k];
        float nrm = (float)sqrt(ss);
        if (nrm < j->eps)
            nrm = j->eps;
        for (int64_t k = 0; k < j->D; k++)
            orow[k] = xr[k] / nrm;
    }
}

void omni_l2_normalize_cpu(float *out, const float *x, int64_t M, int64_t D, float eps)
{
    struct l2_job j = {out, x, D, eps};
    omni_parallel_for(M, l2_tasks, &j);
}

struct nn_job {
    int32_t *ids;
    const float *z, *e, *esq;
    int64_t V, D;
};

static void nn_tasks(void *ctx, int64_t n0, int64_t n1)
{
    const struct nn_job *j = ctx;
    for (int64_t n = n0; n < n1; n++) {
        const float *zr = j->z + n * j->D;
        float a = 0.0f;
        for (int64_t k = 0; k < j->D; k++)
            a += zr[k] * zr[k];
        int32_t best = 0;
        float bestd = 0.0f;
        for (int64_t v = 0; v < j->V; v++) {
            const float *er = j->e + v * j->D;
            float dot = 0.0f;
            for (int64_t k = 0; k < j->D; k++)
                dot += zr[k] * er[k];
            float d = (a + j->esq[v]) - 2.0f * dot;
            if (v == 0 || d < bestd) { /* strict: the first minimum wins */
                bestd = d;
                best = (int32_t)v;
            }
        }
        j->ids[n] = best;
    }
}

int omni_vq_nearest_cpu(int32_t *ids, const float *z, const float *e, int64_t N, int64_t V,
                        int64_t D)
{
    float *esq = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    if (!esq)
        return OMNI_ENOMEM;
    for (int64_t v = 0; v < V; v++) {
        float s = 0.0f;
        for (int64_t k = 0; k < D; k++)
            s += e[v * D + k] * e[v * D + k];
        esq[v] = s;
    }
    struct nn_job j = {ids, z, e, esq, V, D};
    omni_parallel_for(N, nn_tasks, &j);
    free(esq);
    return OMNI_OK;
}
