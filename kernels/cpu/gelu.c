/* kernels/cpu/gelu.c - GELU on the CPU (f32, elementwise over n values).
 *
 *   erf form (PyTorch nn.GELU()):  y = 0.5 x (1 + erf(x / sqrt 2))
 *   tanh form (approximate='tanh'): y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 * Both are evaluated in double and rounded once (the erf form as
 * 0.5 x erfc(-x / sqrt 2), exact in the far negative tail too), so the result is the
 * correctly rounded f32 of the formula up to libm's last bit: PyTorch's own
 * f32 kernels differ from it by about one f32 ulp.
 */
#include "gelu.h"

#include <math.h>

#include "cpu/parallel.h"
#include "omni/dtype.h"

struct gelu_ctx {
    float *y;
    const float *x;
};

static void gelu_erf_range(void *user, int64_t i0, int64_t i1)
{
    const struct gelu_ctx *c = user;
    for (int64_t i = i0; i < i1; i++) {
        const double v = c->x[i];
        /* erfc(-u) = 1 + erf(u), without the cancellation for v << 0 */
        c->y[i] = (float)(0.5 * v * erfc(-v * M_SQRT1_2));
    }
}

static void gelu_tanh_range(void *user, int64_t i0, int64_t i1)
{
    const struct gelu_ctx *c = user;
    const double k = sqrt(2.0 / M_PI);
    for (int64_t i = i0; i < i1; i++) {
        const double v = c->x[i];
        c->y[i] = (float)(0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))));
    }
}

void omni_gelu_cpu(float *y, const float *x, int64_t n)
{
    struct gelu_ctx c = {y, x};
    omni_parallel_for(n, gelu_erf_range, &c);
}

void omni_gelu_tanh_cpu(float *y, const float *x, int64_t n)
{
    struct gelu_ctx c = {y, x};
    omni_parallel_for(n, gelu_tanh_range, &c);
}

struct bias_gelu_ctx {
    void *y;
    const float *x, *bias;
    int64_t N;
    int dt;
};

static void bias_gelu_range(void *user, int64_t i0, int64_t i1)
{
    const struct bias_gelu_ctx *c = user;
    for (int64_t i = i0; i < i1; i++) {
        const float s = c->bias ? c->x[i] + c->bias[i % c->N] : c->x[i];
        const double v = s;
        const float g = (float)(0.5 * v * erfc(-v * M_SQRT1_2));
        if (c->dt == OMNI_DTYPE_BF16)
            ((uint16_t *)c->y)[i] = omni_f32_to_bf16(g);
        else if (c->dt == OMNI_DTYPE_F16)
            ((uint16_t *)c->y)[i] = omni_f32_to_f16(g);
        else
            ((float *)c->y)[i] = g;
    }
}

void omni_bias_gelu_cpu(void *y, int y_dtype, const float *x, const float *bias, int64_t M,
                        int64_t N)
{
    struct bias_gelu_ctx c = {y, x, bias, N, y_dtype};
    omni_parallel_for(M * N, bias_gelu_range, &c);
}
