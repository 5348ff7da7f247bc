/* kernels/cpu/decode.c - CPU twins of the fused decode-step kernels
 * (kernels/decode.h): each is the composition of the existing CPU ops
 * (omni_matmul_cpu, omni_add_rmsnorm_cpu, omni_conv1d_step_cpu,
 * omni_ssd_step_cpu) plus the few element-wise epilogue terms, in the same
 * order as the unfused mixer of plugins/mamba2. */
#include "decode.h"

#include <math.h>
#include <string.h>

#include "matmul.h"
#include "norm.h"
#include "omni/dtype.h"

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

void omni_dec_gemv_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                       int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K,
                       float alpha, const struct omni_dec_epi *epi)
{
    omni_matmul_cpu(y, ldy, x, ldx, w, w_dtype, NULL, M, N, K, 1.0f, 0.0f);
    for (int64_t m = 0; m < M; m++) {
        float s = alpha;
        if (epi && epi->part) {
            float ss = 0.0f;
            for (int64_t j = 0; j < epi->nparts; j++)
                ss += epi->part[m * epi->ldp + j];
            s *= 1.0f / sqrtf(ss / epi->count + epi->eps);
        }
        float *yr = y + m * ldy;
        for (int64_t n = 0; n < N; n++) {
            float v = s * yr[n] + (bias ? bias[n] : 0.0f);
            if (epi && epi->u) {
                float t = 0.0f;
                for (int64_t r = 0; r < epi->R; r++)
                    t += epi->u[m * epi->ldu + r] * epi->lb[n * epi->R + r];
                v += epi->lr_scale * t;
            }
            yr[n] = v;
        }
        if (epi && epi->cout)
            omni_conv1d_step_cpu(epi->cout + m * epi->ldco, epi->ldco, yr + epi->c0, ldy, epi->cw,
                                 epi->cbias, epi->cstate + m * epi->css.sb, epi->css, 1, epi->C,
                                 epi->K, 1);
    }
}

void omni_dec_norm_cpu(float *out, int64_t ldo, float *res_out, int64_t ldro,
                       const float *res_in, int64_t ldri, const float *x, int64_t ldx,
                       const float *w, int64_t M, int64_t D, float eps, const float *a,
                       int64_t R, float *u, int64_t ldu)
{
    for (int64_t m = 0; m < M; m++) {
        float *ro = res_out + m * ldro;
        const float *ri = res_in + m * ldri;
        if (ro != ri)
            memmove(ro, ri, (size_t)D * sizeof(float));
    }
    omni_add_rmsnorm_cpu(out, ldo, res_out, ldro, x, ldx, w, M, D, eps);
    if (a)
        omni_matmul_cpu(u, ldu, out, ldo, a, OMNI_DTYPE_F32, NULL, M, R, D, 1.0f, 0.0f);
}

void omni_dec_mix_cpu(float *g, int64_t ldg, float *part, int64_t ldp, int64_t nparts,
                      const float *zx, int64_t ldz, const float *xbc, int64_t ldc,
                      const float *A, const float *Dsk, const float *dt_bias, const float *gnw,
                      void *state, int state_dtype, const struct omni_dec_dims *d)
{
    const int64_t E = d->H * d->P, Cd = E + 2 * d->G * d->N, chunk = E / nparts;
    const struct omni_ssd_dims sd = {
        .B = d->B, .T = 1, .H = d->H, .P = d->P, .G = d->G, .N = d->N,
        .x_sb = ldc, .x_sh = d->P, .dt_sb = ldz, .b_sb = ldc, .b_sg = d->N,
        .c_sb = ldc, .c_sg = d->N,
    };
    /* y goes through g's rows (y is read back element by element below) */
    for (int64_t b = 0; b < d->B; b++) {
        if (state_dtype == OMNI_DTYPE_F32) {
            struct omni_ssd_dims one = sd;
            one.B = 1;
            omni_ssd_step_cpu(g + b * ldg, xbc + b * ldc, zx + b * ldz + E + Cd, A,
                              xbc + b * ldc + E, xbc + b * ldc + E + d->G * d->N, Dsk, dt_bias,
                              (float *)state + b * d->H * d->P * d->N, &one);
            continue;
        }
        /* a 16-bit state: the f32 step on one state row (N <= 256 values) at a time, the
         * row rounded back to the state dtype after its update */
        const size_t es = omni_dtype_size(state_dtype);
        for (int64_t h = 0; h < d->H; h++) {
            const int64_t grp = h / (d->H / d->G);
            for (int64_t p = 0; p < d->P; p++) {
                const int64_t e = h * d->P + p;
                char *row = (char *)state + (size_t)((b * d->H + h) * d->P + p) * d->N * es;
                float tmp[256];
                omni_dtype_convert(tmp, OMNI_DTYPE_F32, row, state_dtype, (size_t)d->N);
                const struct omni_ssd_dims one = {
                    .B = 1, .T = 1, .H = 1, .P = 1, .G = 1, .N = d->N,
                    .x_sb = 1, .x_sh = 1, .dt_sb = 1, .b_sb = d->N, .b_sg = d->N,
                    .c_sb = d->N, .c_sg = d->N,
                };
                omni_ssd_step_cpu(g + b * ldg + e, xbc + b * ldc + e, zx + b * ldz + E + Cd + h,
                                  A + h, xbc + b * ldc + E + grp * d->N,
                                  xbc + b * ldc + E + d->G * d->N + grp * d->N, Dsk + h,
                                  dt_bias + h, tmp, &one);
                omni_dtype_convert(row, state_dtype, tmp, OMNI_DTYPE_F32, (size_t)d->N);
            }
        }
    }
    for (int64_t b = 0; b < d->B; b++) {
        float *gr = g + b * ldg;
        const float *z = zx + b * ldz;
        for (int64_t j = 0; j < nparts; j++) {
            float ss = 0.0f;
            for (int64_t e = j * chunk; e < (j + 1) * chunk; e++) {
                const float gg = gr[e] * silu(z[e]);
                ss += gg * gg;
                gr[e] = gg * gnw[e];
            }
            part[b * ldp + j] = ss;
        }
    }
}
