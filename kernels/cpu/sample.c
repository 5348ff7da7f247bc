/* kernels/cpu/sample.c - CPU reference of softmax, argmax and the sampler.
 *
 * Layout: logits (B, V) rows, last dim contiguous, row stride free; ids (B) i32.
 * softmax: y = exp(x - max) / sum, the sum accumulated in double.
 * argmax:  the lowest index among equal maxima (NaN never wins over a number
 *          after it; a NaN at index 0 stays).
 * sample (omnimamba.md 8.4, mamba_ssm's sample()):
 *   top_k == 1: argmax, temperature ignored.
 *   top_k  > 1: the k = min(top_k, V) largest logits (ties: lower index first);
 *   top_k == 0: all V logits.
 *   Then each kept logit is divided by the temperature (skipped when 1), and
 *   when 0 < top_p < 1 top-p runs on those: sorted ascending, the cumulative
 *   softmax probability (double) is formed and every entry whose cumulative
 *   is <= 1 - top_p is removed; the largest entry is always kept. Equal
 *   values are ordered so that the higher index is removed first.
 *   The draw is the inverse CDF of softmax over the kept entries walked in
 *   ascending vocabulary index, at u * total with u = omni__sample_uniform(
 *   seed, step, b): the first entry whose cumulative weight exceeds u*total
 *   (the last kept entry if rounding leaves none). Weights are
 *   exp(v - vmax) in double.
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

#include "omni/status.h"

void omni_softmax_cpu(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t B, int64_t V)
{
    for (int64_t b = 0; b < B; b++) {
        const float *xr = x + b * ldx;
        float *yr = y + b * ldy;
        float mx = -INFINITY;
        for (int64_t v = 0; v < V; v++)
            mx = xr[v] > mx ? xr[v] : mx;
        double sum = 0.0;
        for (int64_t v = 0; v < V; v++)
            sum += exp((double)xr[v] - mx);
        for (int64_t v = 0; v < V; v++)
            yr[v] = (float)(exp((double)xr[v] - mx) / sum);
    }
}

static int32_t argmax_row(const float *r, int64_t V)
{
    int64_t best = 0;
    for (int64_t v = 1; v < V; v++)
        if (r[v] > r[best])
            best = v;
    return (int32_t)best;
}

void omni_argmax_cpu(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V)
{
    for (int64_t b = 0; b < B; b++)
        ids[b] = argmax_row(logits + b * ld, V);
}

struct cand {
    float v;
    int32_t i;
};

/* a ranks before b: larger value, then lower index */
static inline int ranks_before(const struct cand *a, const struct cand *b)
{
    return a->v > b->v || (a->v == b->v && a->i < b->i);
}

static int cmp_rank(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return ranks_before(a, b) ? -1 : ranks_before(b, a) ? 1 : 0;
}

static int cmp_index(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return (a->i > b->i) - (a->i < b->i);
}

/* min-heap on rank (the root ranks last among the kept) */
static void heap_sift_down(struct cand *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_before(&h[m], &h[l]))
            m = l;
        if (r < n && ranks_before(&h[m], &h[r]))
            m = r;
        if (m == i)
            return;
        struct cand t = h[i];
        h[i] = h[m], h[m] = t, i = m;
    }
}

/* the k best-ranked logits of row r into c[0..k) (any order) */
static void top_k(struct cand *c, const float *r, int64_t V, int64_t k)
{
    for (int64_t i = 0; i < k; i++)
        c[i] = (struct cand){r[i], (int32_t)i};
    for (int64_t i = k / 2 - 1; i >= 0; i--)
        heap_sift_down(c, k, i);
    for (int64_t v = k; v < V; v++) {
        struct cand x = {r[v], (int32_t)v};
        if (ranks_before(&x, &c[0])) {
            c[0] = x;
            heap_sift_down(c, k, 0);
        }
    }
}

static int32_t sample_row(struct cand *c, double *w, const float *r, int64_t V,
                          const struct omni_sampling *s, double u)
{
    int64_t n;
    if (s->top_k > 1 && s->top_k < V) {
        n = s->top_k;
        top_k(c, r, V, n);
    } else {
        n = V;
        for (int64_t v = 0; v < V; v++)
            c[v] = (struct cand){r[v], (int32_t)v};
    }
    if (s->temperature != 1.0f)
        for (int64_t j = 0; j < n; j++)
            c[j].v = c[j].v / s->temperature;
    int sorted = 0;
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        qsort(c, (size_t)n, sizeof *c, cmp_rank); /* best first */
        sorted = 1;
        double total = 0.0;
        for (int64_t j = 0; j < n; j++)
            total += exp((double)c[j].v - c[0].v);
        const double cut = 1.0 - (double)s->top_p;
        double cum = 0.0;
        int64_t keep = n;
        for (int64_t j = n - 1; j >= 1; j--) { /* ascending probability */
            cum += exp((double)c[j].v - c[0].v) / total;
            if (cum > cut)
                break;
            keep = j;
        }
        n = keep;
    }
    if (sorted || n < V)
        qsort(c, (size_t)n, sizeof *c, cmp_index);
    float vmax = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        vmax = c[j].v > vmax ? c[j].v : vmax;
    double total = 0.0;
    for (int64_t j = 0; j < n; j++) {
        w[j] = exp((double)c[j].v - vmax);
        total += w[j];
    }
    const double target = u * total;
    double acc = 0.0;
    for (int64_t j = 0; j < n; j++) {
        acc += w[j];
        if (target < acc)
            return c[j].i;
    }
    return c[n - 1].i;
}

int omni_sample_cpu(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V,
                    const struct omni_sampling *s, uint64_t seed, int64_t step)
{
    if (s->top_k == 1) {
        omni_argmax_cpu(ids, logits, ld, B, V);
        return OMNI_OK;
    }
    struct cand *c = malloc(sizeof *c * (size_t)V);
    double *w = malloc(sizeof *w * (size_t)V);
    if (!c || !w) {
        free(c), free(w);
        return OMNI_ENOMEM;
    }
    for (int64_t b = 0; b < B; b++)
        ids[b] = sample_row(c, w, logits + b * ld, V, s, omni__sample_uniform(seed, step, b));
    free(c), free(w);
    return OMNI_OK;
}

int omni_sample_at_cpu(int32_t *ids, const float *logits, int64_t ld, int64_t B, int64_t V,
                       const struct omni_sampling *s, uint64_t seed, const int64_t *counter,
                       int64_t add)
{
    return omni_sample_cpu(ids, logits, ld, B, V, s, seed, *counter + add);
}
