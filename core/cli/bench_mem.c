/* core/cli/bench_mem.c - device memory by phase for `omni bench` (see
 * bench_mem.h). */
#include "bench_mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static size_t dev_used(void *u) { return omni_cuda_memory_used(*(struct omni_device *)u); }
static size_t dev_peak(void *u) { return omni_cuda_memory_peak(*(struct omni_device *)u); }
static void dev_reset(void *u) { omni_cuda_memory_reset_peak(*(struct omni_device *)u); }
static int dev_log(void *u, struct omni_cuda_memlog_entry *out, int n)
{
    return omni_cuda_memory_peak_log(*(struct omni_device *)u, out, n);
}

void omb_mem_init(struct omb_mem *m, struct omni_device dev)
{
    memset(m, 0, sizeof *m);
    m->dev = dev;
    m->src = (struct omb_mem_src){dev_used, dev_peak, dev_reset, dev_log, &m->dev};
    m->peak_phase = -1;
}

void omb_mem_init_src(struct omb_mem *m, const struct omb_mem_src *src)
{
    memset(m, 0, sizeof *m);
    m->src = *src;
    m->peak_phase = -1;
}

void omb_mem_end(struct omb_mem *m)
{
    if (!m->open)
        return;
    struct omb_mem_phase *p = &m->p[m->n - 1];
    const size_t pk = m->src.peak(m->src.user);
    if (pk > p->peak)
        p->peak = pk;
    m->open = 0;
    if (m->peak_phase < 0 || p->peak > m->p[m->peak_phase].peak) {
        m->peak_phase = m->n - 1;
        m->n_log = m->src.log ? m->src.log(m->src.user, m->log, OMB_MEM_LOG) : 0;
    }
}

void omb_mem_phase(struct omb_mem *m, const char *name)
{
    omb_mem_end(m);
    const size_t used = m->src.used(m->src.user);
    m->src.reset(m->src.user);
    if (m->n == OMB_MEM_PHASES) { /* full: the last phase goes on */
        m->open = 1;
        return;
    }
    struct omb_mem_phase *p = &m->p[m->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->start = p->peak = used;
    m->open = 1;
}

size_t omb_mem_peak(const struct omb_mem *m)
{
    size_t pk = 0;
    for (int i = 0; i < m->n; i++)
        if (m->p[i].peak > pk)
            pk = m->p[i].peak;
    if (m->open) {
        const size_t now = m->src.peak(m->src.user);
        if (now > pk)
            pk = now;
    }
    return pk;
}

static double gib(size_t b) { return (double)b / (double)(1u << 30); }

static void append(char *buf, size_t n, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *buf, size_t n, size_t *used, const char *fmt, ...)
{
    if (*used >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *used, n - *used, fmt, ap);
    va_end(ap);
    if (k > 0)
        *used = *used + (size_t)k < n ? *used + (size_t)k : n;
}

const char *omb_mem_line(const struct omb_mem *m, char *buf, size_t n)
{
    size_t u = 0;
    if (n)
        buf[0] = '\0';
    for (int i = 0; i < m->n; i++) {
        const struct omb_mem_phase *p = &m->p[i];
        size_t pk = p->peak;
        if (m->open && i == m->n - 1) {
            const size_t now = m->src.peak(m->src.user);
            pk = now > pk ? now : pk;
        }
        append(buf, n, &u, "%s%s %.2f/%.2f", i ? ", " : "", p->name, gib(p->start), gib(pk));
    }
    return buf;
}

static void human(char *b, size_t n, size_t bytes)
{
    if (bytes >= (size_t)1 << 30)
        snprintf(b, n, "%.2f GiB", gib(bytes));
    else if (bytes >= (size_t)1 << 20)
        snprintf(b, n, "%.1f MiB", (double)bytes / (double)(1u << 20));
    else
        snprintf(b, n, "%.1f KiB", (double)bytes / 1024.0);
}

const char *omb_mem_log_line(const struct omb_mem *m, int k, char *buf, size_t n)
{
    size_t u = 0;
    if (n)
        buf[0] = '\0';
    for (int i = 0; i < m->n_log && i < k; i++) {
        const struct omni_cuda_memlog_entry *e = &m->log[i];
        char each[32], tot[32];
        human(each, sizeof each, e->bytes);
        human(tot, sizeof tot, e->bytes * (size_t)e->count);
        if (e->count == 1)
            append(buf, n, &u, "%s%s %s", i ? ", " : "", e->tag[0] ? e->tag : "?", each);
        else
            append(buf, n, &u, "%s%s %lld x %s = %s", i ? ", " : "", e->tag[0] ? e->tag : "?",
                   e->count, each, tot);
    }
    return buf;
}
