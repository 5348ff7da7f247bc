/* kernels/cpu/norm.c - CPU reference of the RMSNorm family (mamba2.md 1.6, 4.1).
 *
 * Layout: rows of a (M, D) matrix, last dim contiguous, row strides free.
 *   rmsnorm:       out = x * rsqrt(mean(x^2) + eps) * w
 *   add_rmsnorm:   residual += x (x may be NULL), then out = rmsnorm(residual)
 *   gated_rmsnorm: g = y * silu(z); per group of group_size channels
 *                  out = g * rsqrt(mean_group(g^2) + eps) * w
 * The sum of squares is accumulated in f32, sequentially over the row (or the
 * group); rows are independent and split over the thread pool when there are
 * enough of them, so results do not depend on the thread count. */
#include "norm.h"

#include <math.h>

#include "cpu/parallel.h"

#define PAR_MIN_ELEMS 32768 /* below this a row loop is cheaper than waking threads */

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

struct norm_ctx {
    float *out, *res;
    const float *x, *y, *z, *w;
    int64_t ldo, ldx, ldr, ldy, ldz, D, group;
    float eps;
};

static void rms_row(float *o, const float *x, const float *w, int64_t D, float eps)
{
    float ss = 0.0f;
    for (int64_t d = 0; d < D; d++)
        ss += x[d] * x[d];
    float rstd = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t d = 0; d < D; d++)
        o[d] = x[d] * rstd * w[d];
}

static void rms_rows(void *arg, int64_t begin, int64_t end)
{
    const struct norm_ctx *c = arg;
    for (int64_t m = begin; m < end; m++)
        rms_row(c->out + m * c->ldo, c->x + m * c->ldx, c->w, c->D, c->eps);
}

static void run_rows(int64_t M, int64_t D, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
    if (M * D >= PAR_MIN_ELEMS)
        omni_parallel_for(M, fn, ctx);
    else if (M > 0)
        fn(ctx, 0, M);
}

void omni_rmsnorm_cpu(float *out, int64_t ldo, const float *x, int64_t ldx, const float *w,
                      int64_t M, int64_t D, float eps)
{
    struct norm_ctx c = {.out = out, .x = x, .w = w, .ldo = ldo, .ldx = ldx, .D = D, .eps = eps};
    run_rows(M, D, rms_rows, &c);
}

static void add_rms_rows(void *arg, int64_t begin, int64_t end)
{
    const struct norm_ctx *c = arg;
    for (int64_t m = begin; m < end; m++) {
        float *r = c->res + m * c->ldr;
        if (c->x) {
            const float *x = c->x + m * c->ldx;
            for (int64_t d = 0; d < c->D; d++)
                r[d] += x[d];
        }
        rms_row(c->out + m * c->ldo, r, c->w, c->D, c->eps);
    }
}

void omni_add_rmsnorm_cpu(float *out, int64_t ldo, float *residual, int64_t ldr, const float *x,
                          int64_t ldx, const float *w, int64_t M, int64_t D, float eps)
{
    struct norm_ctx c = {.out = out, .res = residual, .x = x, .w = w, .ldo = ldo, .ldr = ldr,
                         .ldx = ldx, .D = D, .eps = eps};
    run_rows(M, D, add_rms_rows, &c);
}

static void gated_rows(void *arg, int64_t begin, int64_t end)
{
    const struct norm_ctx *c = arg;
    for (int64_t m = begin; m < end; m++) {
        const float *y = c->y + m * c->ldy, *z = c->z + m * c->ldz;
        float *o = c->out + m * c->ldo;
        for (int64_t g0 = 0; g0 < c->D; g0 += c->group) {
            float ss = 0.0f;
            for (int64_t i = g0; i < g0 + c->group; i++) {
                float g = y[i] * silu(z[i]);
                ss += g * g;
            }
            float rstd = 1.0f / sqrtf(ss / (float)c->group + c->eps);
            /* recompute g (cheap) so that out may alias y */
            for (int64_t i = g0; i < g0 + c->group; i++)
                o[i] = y[i] * silu(z[i]) * rstd * c->w[i];
        }
    }
}

void omni_gated_rmsnorm_cpu(float *out, int64_t ldo, const float *y, int64_t ldy, const float *z,
                            int64_t ldz, const float *w, int64_t M, int64_t E, int64_t group_size,
                            float eps)
{
    struct norm_ctx c = {.out = out, .y = y, .z = z, .w = w, .ldo = ldo, .ldy = ldy, .ldz = ldz,
                         .D = E, .group = group_size, .eps = eps};
    run_rows(M, E, gated_rows, &c);
}
