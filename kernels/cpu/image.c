/* kernels/cpu/image.c - image preprocessing on the host.
 *
 * omni_resize_bicubic_u8_cpu: PIL Image.resize(size, BICUBIC) for 8-bit
 * images, bit-exact with Pillow's src/libImaging/Resample.c (the algorithm
 * is written out in spec/vision-encoder.md §2.2):
 *   per axis: scale = in/out, filterscale = max(scale, 1),
 *   support = 2 * filterscale; output i reads inputs [lo, hi) with
 *   center = (i + 0.5) * scale, lo = max(0, (int)(center - support + 0.5)),
 *   hi = min(in, (int)(center + support + 0.5)); weights
 *   w_j = cubic((j + lo - center + 0.5) * (1 / filterscale)), a = -0.5, in
 *   double, divided by their sum, then k_j = (int)(w_j * 2^22 ± 0.5) (half
 *   away from zero); a pass computes clamp((2^21 + Σ k_j src_j) >> 22, 0, 255)
 *   per channel in 32-bit integers.
 *   The horizontal pass runs first, over only the source rows the vertical
 *   pass reads, into a u8 intermediate; an axis whose size is unchanged is
 *   skipped. The double maths must not be contracted into FMAs to stay
 *   bit-exact with Pillow's x86-64 builds (true for baseline x86-64 code).
 *   in: (B, H, W, C) u8, out: (B, H2, W2, C) u8, both contiguous.
 *
 * omni_normalize_image_cpu: torchvision ToTensor + Normalize in float32,
 *   out[b, c, y, x] = ((float)in[b, y, x, c] / 255 - mean[c]) / std[c].
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "omni/status.h"

#define PRECISION_BITS 22 /* Pillow: 32 - 8 - 2 (8 bits of result, 2 of headroom) */

static double bicubic_filter(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct axis_coeffs {
    int ksize;    /* coefficients per output (the row stride of k) */
    int *bounds;  /* (out, 2): first input, number of inputs */
    int32_t *k;   /* (out, ksize) fixed point */
};

static void coeffs_free(struct axis_coeffs *c)
{
    free(c->bounds);
    free(c->k);
    memset(c, 0, sizeof *c);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for in_size -> out_size. */
static int coeffs_make(struct axis_coeffs *c, int in_size, int out_size)
{
    const double scale = (double)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * filterscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    double *w = malloc(sizeof *w * (size_t)ksize);
    c->ksize = ksize;
    c->bounds = malloc(sizeof *c->bounds * 2 * (size_t)out_size);
    c->k = calloc((size_t)out_size * (size_t)ksize, sizeof *c->k);
    if (!w || !c->bounds || !c->k) {
        free(w);
        coeffs_free(c);
        return OMNI_ENOMEM;
    }
    for (int xx = 0; xx < out_size; xx++) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * (size_t)ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return OMNI_OK;
}

static inline uint8_t clip8(int32_t acc)
{
    if (acc < 0)
        return 0;
    acc >>= PRECISION_BITS;
    return (uint8_t)(acc > 255 ? 255 : acc);
}

/* rows x (W -> W2): dst (rows, W2, C) from src rows (rows, W, C). */
static void pass_horizontal(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t W, int64_t C,
                            int64_t W2, const struct axis_coeffs *cx)
{
    for (int64_t y = 0; y < rows; y++) {
        const uint8_t *s = src + y * W * C;
        uint8_t *d = dst + y * W2 * C;
        for (int64_t xx = 0; xx < W2; xx++) {
            const int xmin = cx->bounds[2 * xx], n = cx->bounds[2 * xx + 1];
            const int32_t *k = cx->k + xx * cx->ksize;
            for (int64_t c = 0; c < C; c++) {
                int32_t acc = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < n; x++)
                    acc += (int32_t)s[(xmin + x) * C + c] * k[x];
                d[xx * C + c] = clip8(acc);
            }
        }
    }
}

/* (rows of src) -> H2 rows: dst (H2, W, C); output row yy reads src rows
 * bounds[2yy] - row0 ... */
static void pass_vertical(uint8_t *dst, const uint8_t *src, int64_t row0, int64_t W, int64_t C,
                          int64_t H2, const struct axis_coeffs *cy)
{
    const int64_t rowlen = W * C;
    for (int64_t yy = 0; yy < H2; yy++) {
        const int64_t ymin = cy->bounds[2 * yy] - row0;
        const int n = cy->bounds[2 * yy + 1];
        const int32_t *k = cy->k + yy * cy->ksize;
        uint8_t *d = dst + yy * rowlen;
        for (int64_t i = 0; i < rowlen; i++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < n; y++)
                acc += (int32_t)src[(ymin + y) * rowlen + i] * k[y];
            d[i] = clip8(acc);
        }
    }
}

int omni_resize_bicubic_u8_cpu(uint8_t *out /* (B,H2,W2,C) */, const uint8_t *in /* (B,H,W,C) */,
                               int64_t B, int64_t H, int64_t W, int64_t C, int64_t H2, int64_t W2)
{
    const int need_h = W2 != W, need_v = H2 != H;
    struct axis_coeffs cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    int rc = OMNI_OK;
    if (!need_h && !need_v) {
        memcpy(out, in, (size_t)(B * H * W * C));
        return OMNI_OK;
    }
    /* the vertical coefficients also tell which source rows are needed */
    if ((rc = coeffs_make(&cy, (int)H, (int)H2)))
        goto done;
    const int64_t row_first = cy.bounds[0];
    const int64_t row_last = cy.bounds[2 * (H2 - 1)] + cy.bounds[2 * (H2 - 1) + 1];
    if (need_h) {
        if ((rc = coeffs_make(&cx, (int)W, (int)W2)))
            goto done;
        if (need_v && !(tmp = malloc((size_t)((row_last - row_first) * W2 * C)))) {
            rc = OMNI_ENOMEM;
            goto done;
        }
    }
    for (int64_t b = 0; b < B; b++) {
        const uint8_t *src = in + b * H * W * C;
        uint8_t *dst = out + b * H2 * W2 * C;
        if (need_h && need_v) {
            pass_horizontal(tmp, src + row_first * W * C, row_last - row_first, W, C, W2, &cx);
            pass_vertical(dst, tmp, row_first, W2, C, H2, &cy);
        } else if (need_h) {
            pass_horizontal(dst, src, H, W, C, W2, &cx);
        } else {
            pass_vertical(dst, src, 0, W, C, H2, &cy);
        }
    }
done:
    coeffs_free(&cx);
    coeffs_free(&cy);
    free(tmp);
    return rc;
}

void omni_normalize_image_cpu(float *out /* (B,C,H,W) */, const uint8_t *in /* (B,H,W,C) */,
                              int64_t B, int64_t H, int64_t W, int64_t C,
                              const float *mean /* (C) */, const float *std /* (C) */)
{
    const int64_t S = H * W;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            float *o = out + (b * C + c) * S;
            const uint8_t *x = in + b * S * C + c;
            const float m = mean[c], s = std[c];
            for (int64_t i = 0; i < S; i++) {
                const float v = (float)x[i * C] / 255.0f; /* ToTensor: a division */
                o[i] = (v - m) / s;
            }
        }
}
