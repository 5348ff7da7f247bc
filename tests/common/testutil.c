#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tu_rng_seed(struct tu_rng *r, uint64_t seed) { r->s = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint64_t tu_rng_u64(struct tu_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

float tu_rng_uniform(struct tu_rng *r, float lo, float hi)
{
    double u = (double)(tu_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

float tu_rng_normal(struct tu_rng *r)
{
    double u1 = ((double)(tu_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(tu_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void tu_fill_uniform(struct tu_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        float v;
        do
            v = tu_rng_uniform(r, lo, hi);
        while (v == 0.0f);
        x[i] = v;
    }
}

void tu_fill_normal(struct tu_rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        float v;
        do
            v = tu_rng_normal(r) * scale;
        while (v == 0.0f);
        x[i] = v;
    }
}

#define GUARD 256
#define CANARY 0xA5

void *tu_guard_alloc(size_t n)
{
    unsigned char *p = malloc(n + 2 * GUARD + 16);
    ck_assert_ptr_nonnull(p);
    memcpy(p, &n, sizeof n);
    memset(p + 16, CANARY, GUARD);
    memset(p + 16 + GUARD + n, CANARY, GUARD);
    return p + 16 + GUARD;
}

int tu_guard_ok(const void *q)
{
    const unsigned char *p = (const unsigned char *)q - GUARD - 16;
    size_t n;
    memcpy(&n, p, sizeof n);
    for (size_t i = 0; i < GUARD; i++)
        if (p[16 + i] != CANARY || p[16 + GUARD + n + i] != CANARY)
            return 0;
    return 1;
}

void tu_guard_free(void *q)
{
    if (q)
        free((unsigned char *)q - GUARD - 16);
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d)
            return INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

double tu_max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    return m;
}

double tu_rel_err(const float *got, const float *ref, size_t n)
{
    double r = tu_max_abs(ref, n);
    return tu_max_abs_diff(got, ref, n) / (r > 1e-30 ? r : 1e-30);
}

double tu_rel_rms(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        if (d != d)
            return INFINITY;
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
}

int tu_has_nan(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != x[i])
            return 1;
    return 0;
}

static char pathbuf[4096];

const char *tu_repo_path(const char *rel)
{
    const char *root = getenv("OMNI_REPO");
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", root ? root : ".", rel);
    return pathbuf;
}

const char *tu_shared_path(const char *rel)
{
    const char *sh = getenv("OMNI_SHARED");
    if (sh)
        snprintf(pathbuf, sizeof pathbuf, "%s/%s", sh, rel);
    else
        snprintf(pathbuf, sizeof pathbuf, "../shared/%s", rel);
    return pathbuf;
}

const char *tu_build_path(const char *rel)
{
    const char *b = getenv("OMNI_BUILD");
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", b ? b : "build", rel);
    return pathbuf;
}

const char *tu_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/omni-test-XXXXXX");
        if (!mkdtemp(dir))
            snprintf(dir, sizeof dir, "/tmp");
    }
    return dir;
}
