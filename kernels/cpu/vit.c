/* kernels/cpu/vit.c - ViT helper kernels on the CPU.
 *
 * omni_patch_gather_cpu: im2col for a conv with kernel = stride = p and no
 *   padding. x (B,C,H,W) contiguous -> cols (B*Np, C*p*p), row = token
 *   b*Np + py*Gw + px, column = c*p*p + ky*p + kx (the order of a PyTorch conv
 *   weight (D,C,p,p) flattened to (D, C*p*p)). Rows split across threads.
 *
 * omni_copy_rows_cpu: strided row copy (concat along the last dim).
 *
 * omni_resize_bicubic_aa_cpu: PyTorch's CPU F.interpolate(mode='bicubic',
 *   align_corners=False, antialias=True) for f32 (ATen UpSampleKernel.cpp,
 *   "aa" separable path), following its f32 / double mix of operations:
 *     scale   = (float)in / out                                   f32
 *     support = scale >= 1 ? 2*scale : 2  (interp_size 4, halved) f32
 *     inv     = scale >= 1 ? 1/scale : 1                          f32
 *     center  = (float)(scale * (i + 0.5))
 *     lo      = max(0, (int64)(center - support + 0.5))
 *     hi      = min(in, (int64)(center + support + 0.5))
 *     w_j     = cubic((float)((j - center + 0.5) * inv)), a = -0.5, j = lo..hi-1
 *     w_j    /= sum_j w_j   (f32, when the sum is non-zero)
 *     out[i]  = sum_j w_j * in[j]   (f32, in order j = lo, lo+1, ...)
 *   Measured against PyTorch 1.13's kernel: max abs difference 1.4e-6 on a
 *   random N(0,1) 37x37 -> 27x27 plane (not bit-exact: ATen vectorises its
 *   sums). Computing the weights in double instead measured worse (5e-6).
 *   The width pass runs first (into tmp), then the height pass; a pass whose
 *   size does not change is skipped, as in ATen.
 */
#include "vit.h"

#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "omni/dtype.h"
#include "omni/status.h"

#include "cpu/parallel.h"

struct gather_ctx {
    float *cols;
    const float *x;
    int64_t C, H, W, p, Gh, Gw;
};

static void gather_rows(void *user, int64_t r0, int64_t r1)
{
    const struct gather_ctx *g = user;
    const int64_t Np = g->Gh * g->Gw, p = g->p, K = g->C * p * p;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / Np, t = r % Np, py = t / g->Gw, px = t % g->Gw;
        float *dst = g->cols + r * K;
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t ky = 0; ky < p; ky++) {
                const float *src = g->x + ((b * g->C + c) * g->H + py * p + ky) * g->W + px * p;
                memcpy(dst + (c * p + ky) * p, src, (size_t)p * sizeof(float));
            }
    }
}

void omni_patch_gather_cpu(float *cols, const float *x, int64_t B, int64_t C, int64_t H,
                           int64_t W, int64_t p)
{
    struct gather_ctx g = {cols, x, C, H, W, p, H / p, W / p};
    omni_parallel_for(B * g.Gh * g.Gw, gather_rows, &g);
}

void omni_copy_rows_cpu(void *dst, int64_t ldd, const void *src, int64_t lds, int64_t rows,
                        int64_t row_bytes)
{
    for (int64_t r = 0; r < rows; r++)
        memcpy((char *)dst + r * ldd, (const char *)src + r * lds, (size_t)row_bytes);
}

/* ------------------------------------------------------------------ resize */

static float aa_cubic(float x)
{
    const float a = -0.5f; /* Keys' a, as PIL and ATen use for antialiasing */
    x = x < 0 ? -x : x;
    if (x < 1.0f)
        return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f)
        return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
    return 0.0f;
}

struct taps {
    float scale, support, inv;
    int64_t in;
};

static struct taps taps_for(int64_t in, int64_t out)
{
    struct taps t;
    t.in = in;
    t.scale = (float)in / (float)out;
    t.support = t.scale >= 1.0f ? (float)(2.0 * (double)t.scale) : 2.0f;
    t.inv = t.scale >= 1.0f ? (float)(1.0 / (double)t.scale) : 1.0f;
    return t;
}

/* The filter argument for input sample j, with ATen's int/float/double mix. */
static float tap_weight(const struct taps *t, int64_t j, float center)
{
    return aa_cubic((float)(((double)((float)j - center) + 0.5) * (double)t->inv));
}

/* One output sample of one line: in (stride is) -> returns out[i]. */
static float resample_one(const struct taps *t, const float *in, int64_t is, int64_t i)
{
    const float center = (float)((double)t->scale * ((double)i + 0.5));
    int64_t lo = (int64_t)((double)(center - t->support) + 0.5);
    int64_t hi = (int64_t)((double)(center + t->support) + 0.5);
    lo = lo < 0 ? 0 : lo;
    hi = hi > t->in ? t->in : hi;
    float total = 0.0f;
    for (int64_t j = lo; j < hi; j++)
        total += tap_weight(t, j, center);
    float acc = 0.0f;
    for (int64_t j = lo; j < hi; j++) {
        float w = tap_weight(t, j, center);
        if (total != 0.0f)
            w /= total;
        acc = (j == lo) ? in[j * is] * w : acc + in[j * is] * w;
    }
    return acc;
}

struct resize_ctx {
    float *out;
    const float *in;
    int64_t H, W, Ho, Wo; /* sizes of this pass's input and output planes */
    struct taps t;
};

/* width pass: a line is one row of one plane (R*H lines) */
static void width_lines(void *user, int64_t l0, int64_t l1)
{
    const struct resize_ctx *c = user;
    for (int64_t l = l0; l < l1; l++)
        for (int64_t i = 0; i < c->Wo; i++)
            c->out[l * c->Wo + i] = resample_one(&c->t, c->in + l * c->W, 1, i);
}

/* height pass: work item = one plane (R items); W == Wo */
static void height_planes(void *user, int64_t r0, int64_t r1)
{
    const struct resize_ctx *c = user;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t i = 0; i < c->Ho; i++)
            for (int64_t x = 0; x < c->W; x++)
                c->out[(r * c->Ho + i) * c->W + x] =
                    resample_one(&c->t, c->in + r * c->H * c->W + x, c->W, i);
}

void omni_resize_bicubic_aa_cpu(float *out, float *tmp, const float *x, int64_t R, int64_t H,
                                int64_t W, int64_t Ho, int64_t Wo)
{
    const float *src = x;
    if (W == Wo && H == Ho) {
        memcpy(out, x, (size_t)(R * H * W) * sizeof(float));
        return;
    }
    if (W != Wo) {
        float *dst = (H == Ho) ? out : tmp;
        struct resize_ctx c = {dst, x, H, W, H, Wo, taps_for(W, Wo)};
        omni_parallel_for(R * H, width_lines, &c);
        src = dst;
    }
    if (H != Ho) {
        struct resize_ctx c = {out, src, H, Wo, Ho, Wo, taps_for(H, Ho)};
        omni_parallel_for(R, height_planes, &c);
    }
}

int omni_matmul16_cpu(float *y, const void *x, const void *w, int dtype, int64_t M, int64_t N,
                      int64_t K, float beta)
{
    float *xf = malloc((size_t)(M * K) * sizeof(float));
    if (!xf)
        return OMNI_ENOMEM;
    const uint16_t *xh = x;
    for (int64_t i = 0; i < M * K; i++)
        xf[i] = dtype == OMNI_DTYPE_BF16 ? omni_bf16_to_f32(xh[i]) : omni_f16_to_f32(xh[i]);
    omni_matmul_cpu(y, N, xf, K, w, dtype, NULL, M, N, K, 1.0f, beta);
    free(xf);
    return OMNI_OK;
}
