/* kernels/cpu/groupnorm.c - GroupNorm (PyTorch nn.GroupNorm, affine).
 *
 * x, out: (B, C, S) contiguous, S = product of the spatial dims; the C
 * channels split into G groups of C/G consecutive channels, so one group of
 * one sample is a contiguous run of (C/G)*S values. Statistics per (b, g):
 * mean, then the biased variance as the mean of squared deviations (two
 * passes over the run, both accumulated in double: a group of the VQ decoder
 * at 256x256 holds 262,144 values). The apply pass is
 *   out = (x - mu) * (rstd * w[c]) + bias[c]
 * in f32, with mu subtracted as a hi + lo pair so that large means keep the
 * deviations exact.
 * omni_groupnorm_coef_cpu writes the four f32 numbers of that expression per
 * (b, c) instead (for the fused convolution of kernels/conv2d.h).
 * Work is split over the B*G (sample, group) runs.
 */
#include <math.h>

#include "groupnorm.h"
#include "cpu/parallel.h"

struct gn_job {
    float *out, *coef; /* coef set: write (mu_hi, mu_lo, scale, shift) per channel instead */
    const float *x, *w, *bias;
    int64_t C, S, G;
    float eps;
};

/* mean and rstd of run t (two passes in double) */
static void gn_stats(const float *xr, int64_t n, float eps, double *mu, double *rstd)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += xr[i];
    *mu = sum / (double)n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = xr[i] - *mu;
        ss += d * d;
    }
    *rstd = 1.0 / sqrt(ss / (double)n + (double)eps);
}

static void gn_tasks(void *ctx, int64_t t0, int64_t t1)
{
    const struct gn_job *j = ctx;
    const int64_t cpg = j->C / j->G, n = cpg * j->S;
    for (int64_t t = t0; t < t1; t++) { /* t = b * G + g, its run starts at t * n */
        const float *xr = j->x + t * n;
        float *orow = j->out + t * n;
        double mu, rstd;
        gn_stats(xr, n, j->eps, &mu, &rstd);
        /* mu as an unevaluated f32 sum hi + lo: x - hi is exact for x near
         * mu, so a large mean does not eat the deviations */
        const float mu_hi = (float)mu, mu_lo = (float)(mu - (double)mu_hi);
        const int64_t c0 = (t % j->G) * cpg;
        if (j->coef) {
            for (int64_t c = 0; c < cpg; c++) {
                float *cf = j->coef + ((t / j->G) * j->C + c0 + c) * 4;
                cf[0] = mu_hi;
                cf[1] = mu_lo;
                cf[2] = (float)(rstd * (j->w ? j->w[c0 + c] : 1.0f));
                cf[3] = j->bias ? j->bias[c0 + c] : 0.0f;
            }
            continue;
        }
        for (int64_t c = 0; c < cpg; c++) {
            const float scale = (float)(rstd * (j->w ? j->w[c0 + c] : 1.0f));
            const float shift = j->bias ? j->bias[c0 + c] : 0.0f;
            const float *xc = xr + c * j->S;
            float *oc = orow + c * j->S;
            for (int64_t s = 0; s < j->S; s++)
                oc[s] = ((xc[s] - mu_hi) - mu_lo) * scale + shift;
        }
    }
}

void omni_groupnorm_cpu(float *out, const float *x, const float *w, const float *bias, int64_t B,
                        int64_t C, int64_t S, int64_t G, float eps)
{
    struct gn_job j = {out, NULL, x, w, bias, C, S, G, eps};
    omni_parallel_for(B * G, gn_tasks, &j);
}

void omni_groupnorm_coef_cpu(float *coef, const float *x, const float *w, const float *bias,
                             int64_t B, int64_t C, int64_t S, int64_t G, float eps)
{
    struct gn_job j = {NULL, coef, x, w, bias, C, S, G, eps};
    omni_parallel_for(B * G, gn_tasks, &j);
}
