/* core/memlog.c - live device allocations and their copy at the peak (see
 * memlog.h). Only used with OMNI_CUDA_MEMLOG=1: the costs (a linear search
 * per free, a copy of the live set per new peak) are then acceptable. */
#include "memlog.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local const char *tl_tag;

const char *omni__alloc_tag(void) { return tl_tag; }

const char *omni__alloc_tag_set(const char *tag)
{
    const char *prev = tl_tag;
    tl_tag = tag;
    return prev;
}

static int intern(struct omni__memlog *m, const char *tag)
{
    if (!tag || !*tag)
        return -1;
    for (int i = 0; i < m->n_tags; i++)
        if (!strncmp(m->tags[i], tag, OMNI__MEMLOG_TAG_LEN - 1))
            return i;
    if (m->n_tags == OMNI__MEMLOG_TAGS)
        return -1;
    char *d = m->tags[m->n_tags];
    strncpy(d, tag, OMNI__MEMLOG_TAG_LEN - 1);
    d[OMNI__MEMLOG_TAG_LEN - 1] = '\0';
    return m->n_tags++;
}

static int reserve(struct omni__memlog_live **a, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 256;
    while (nc < need)
        nc *= 2;
    struct omni__memlog_live *p = realloc(*a, nc * sizeof *p);
    if (!p)
        return -1;
    *a = p;
    *cap = nc;
    return 0;
}

static void snapshot(struct omni__memlog *m)
{
    if (reserve(&m->snap, &m->cap_snap, m->n)) {
        m->degraded = 1;
        return;
    }
    if (m->n)
        memcpy(m->snap, m->live, m->n * sizeof *m->live);
    m->n_snap = m->n;
}

void omni__memlog_alloc(struct omni__memlog *m, const void *ptr, size_t bytes, const char *tag)
{
    if (reserve(&m->live, &m->cap, m->n + 1)) {
        m->degraded = 1;
    } else {
        m->live[m->n++] = (struct omni__memlog_live){ptr, bytes, intern(m, tag)};
    }
    m->used += (long long)bytes;
    if (m->used > m->peak) {
        m->peak = m->used;
        snapshot(m);
    }
}

void omni__memlog_free(struct omni__memlog *m, const void *ptr, size_t bytes)
{
    for (size_t i = m->n; i-- > 0;) /* recent allocations are freed first */
        if (m->live[i].ptr == ptr && m->live[i].bytes == bytes) {
            m->used -= (long long)m->live[i].bytes;
            m->live[i] = m->live[--m->n];
            return;
        }
}

void omni__memlog_reset_peak(struct omni__memlog *m)
{
    m->peak = m->used;
    snapshot(m);
}

static int by_total(const void *a, const void *b)
{
    const struct omni_cuda_memlog_entry *x = a, *y = b;
    const double tx = (double)x->bytes * (double)x->count, ty = (double)y->bytes * (double)y->count;
    if (tx != ty)
        return tx < ty ? 1 : -1;
    return strcmp(x->tag, y->tag);
}

int omni__memlog_report(const struct omni__memlog *m, struct omni_cuda_memlog_entry *out, int n)
{
    if (n <= 0 || !m->n_snap)
        return 0;
    struct omni_cuda_memlog_entry *g = calloc(m->n_snap, sizeof *g);
    if (!g)
        return 0;
    size_t ng = 0;
    for (size_t i = 0; i < m->n_snap; i++) {
        const struct omni__memlog_live *l = &m->snap[i];
        const char *tag = l->tag >= 0 ? m->tags[l->tag] : "";
        size_t j = 0;
        while (j < ng && !(g[j].bytes == l->bytes && !strcmp(g[j].tag, tag)))
            j++;
        if (j == ng) {
            strncpy(g[j].tag, tag, sizeof g[j].tag - 1);
            g[j].bytes = l->bytes;
            ng++;
        }
        g[j].count++;
    }
    qsort(g, ng, sizeof *g, by_total);
    int k = (size_t)n < ng ? n : (int)ng;
    memcpy(out, g, (size_t)k * sizeof *g);
    free(g);
    return k;
}

void omni__memlog_clear(struct omni__memlog *m)
{
    free(m->live);
    free(m->snap);
    memset(m, 0, sizeof *m);
}
