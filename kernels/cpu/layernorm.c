/* kernels/cpu/layernorm.c - LayerNorm over the last dim on the CPU (f32).
 *
 *   out[m,d] = (x[m,d] - mu_m) * rstd_m * w[d] + b[d]
 *   mu_m = mean_d x[m,d],  var_m = mean_d (x[m,d] - mu_m)^2 (biased),
 *   rstd_m = 1 / sqrt(var_m + eps)
 * Layout: x, out are M rows of D contiguous floats with row strides ldx, ldo
 * (out may alias x). The statistics are two-pass sums in double, so rows with
 * a large common offset lose nothing (the op is memory-bound; double costs
 * little). Rows are independent and split across the thread pool.
 */
#include "layernorm.h"

#include <math.h>

#include "omni/dtype.h"

#include "cpu/parallel.h"

struct ln_ctx {
    float *out;
    const float *x, *w, *b;
    int64_t ldo, ldx, D;
    float eps;
};

static void ln_rows(void *user, int64_t m0, int64_t m1)
{
    const struct ln_ctx *c = user;
    const int64_t D = c->D;
    for (int64_t m = m0; m < m1; m++) {
        const float *x = c->x + m * c->ldx;
        float *y = c->out + m * c->ldo;
        double sum = 0.0;
        for (int64_t d = 0; d < D; d++)
            sum += x[d];
        const double mu = sum / (double)D;
        double ss = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double t = x[d] - mu;
            ss += t * t;
        }
        const float rstd = (float)(1.0 / sqrt(ss / (double)D + (double)c->eps));
        const float muf = (float)mu;
        for (int64_t d = 0; d < D; d++) {
            float t = (x[d] - muf) * rstd;
            if (c->w)
                t *= c->w[d];
            if (c->b)
                t += c->b[d];
            y[d] = t;
        }
    }
}

void omni_layernorm_cpu(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                        const float *b, int64_t M, int64_t D, float eps)
{
    struct ln_ctx c = {out, x, w, b, ldo, ldx, D, eps};
    omni_parallel_for(M, ln_rows, &c);
}

struct ln_ex_ctx {
    void *out;
    float *x;
    const float *w, *b, *add;
    int64_t ldo, ldx, D;
    int dt;
    float eps;
};

static void ln_ex_rows(void *user, int64_t m0, int64_t m1)
{
    const struct ln_ex_ctx *c = user;
    const int64_t D = c->D;
    for (int64_t m = m0; m < m1; m++) {
        float *x = c->x + m * c->ldx;
        double sum = 0.0;
        for (int64_t d = 0; d < D; d++)
            sum += x[d];
        const double mu = sum / (double)D;
        double ss = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double t = x[d] - mu;
            ss += t * t;
        }
        const float rstd = (float)(1.0 / sqrt(ss / (double)D + (double)c->eps));
        const float muf = (float)mu;
        for (int64_t d = 0; d < D; d++) {
            float t = (x[d] - muf) * rstd;
            if (c->w)
                t *= c->w[d];
            if (c->b)
                t += c->b[d];
            if (c->dt == OMNI_DTYPE_BF16)
                ((uint16_t *)c->out)[m * c->ldo + d] = omni_f32_to_bf16(t);
            else if (c->dt == OMNI_DTYPE_F16)
                ((uint16_t *)c->out)[m * c->ldo + d] = omni_f32_to_f16(t);
            else
                ((float *)c->out)[m * c->ldo + d] = t;
        }
        if (c->add)
            for (int64_t d = 0; d < D; d++)
                x[d] += c->add[d];
    }
}

void omni_layernorm_ex_cpu(void *out, int out_dtype, int64_t ldo, float *x, int64_t ldx,
                           const float *w, const float *b, const float *x_add, int64_t M,
                           int64_t D, float eps)
{
    struct ln_ex_ctx c = {out, x, w, b, x_add, ldo, ldx, D, out_dtype, eps};
    omni_parallel_for(M, ln_ex_rows, &c);
}
