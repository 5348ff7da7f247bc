/* Device-memory bookkeeping without a device: the OMNI_CUDA_MEMLOG record of
 * live allocations and its copy at the peak (core/memlog.c), and `omni
 * bench`'s phases (core/cli/bench_mem.c) on a fake counter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "cli/bench_mem.h"
#include "memlog.h"

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

static const void *P(uintptr_t a) { return (const void *)a; }

START_TEST(test_memlog_keeps_the_live_set_at_the_peak)
{
    struct omni__memlog m = {0};
    omni__memlog_alloc(&m, P(0x1000), 100 * MIB, "mamba2");
    omni__memlog_alloc(&m, P(0x2000), 100 * MIB, "mamba2");
    omni__memlog_alloc(&m, P(0x3000), 300 * MIB, "vq");
    omni__memlog_alloc(&m, P(0x4000), 1 * MIB, NULL);
    ck_assert_int_eq(m.used, (long long)(501 * MIB));
    omni__memlog_free(&m, P(0x3000), 300 * MIB);
    omni__memlog_alloc(&m, P(0x5000), 50 * MIB, "workspace"); /* below the peak: no copy */
    omni__memlog_free(&m, P(0x9999), 5);                     /* unknown: ignored */
    ck_assert_int_eq(m.used, (long long)(251 * MIB));
    ck_assert_int_eq(m.peak, (long long)(501 * MIB));
    struct omni_cuda_memlog_entry e[8];
    int n = omni__memlog_report(&m, e, 8);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(e[0].tag, "vq");
    ck_assert_uint_eq(e[0].bytes, 300 * MIB);
    ck_assert_int_eq(e[0].count, 1);
    ck_assert_str_eq(e[1].tag, "mamba2"); /* grouped by (tag, size) */
    ck_assert_uint_eq(e[1].bytes, 100 * MIB);
    ck_assert_int_eq(e[1].count, 2);
    ck_assert_str_eq(e[2].tag, "");
    ck_assert_int_eq(omni__memlog_report(&m, e, 1), 1);
    /* a reset takes the live set now */
    omni__memlog_reset_peak(&m);
    n = omni__memlog_report(&m, e, 8);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(e[0].tag, "mamba2");
    ck_assert_str_eq(e[1].tag, "workspace");
    omni__memlog_clear(&m);
    ck_assert_int_eq(omni__memlog_report(&m, e, 8), 0);
}
END_TEST

START_TEST(test_memlog_many_allocations_and_tags)
{
    struct omni__memlog m = {0};
    char tag[40];
    for (int i = 0; i < 3000; i++) {
        snprintf(tag, sizeof tag, "stage%d", i % 200); /* more tags than the table: untagged */
        omni__memlog_alloc(&m, P(0x10000 + 16 * (uintptr_t)i), (size_t)(i % 7 + 1), tag);
    }
    for (int i = 0; i < 3000; i += 2)
        omni__memlog_free(&m, P(0x10000 + 16 * (uintptr_t)i), (size_t)(i % 7 + 1));
    long long want = 0;
    for (int i = 1; i < 3000; i += 2)
        want += i % 7 + 1;
    ck_assert_int_eq(m.used, want);
    struct omni_cuda_memlog_entry e[4];
    ck_assert_int_eq(omni__memlog_report(&m, e, 4), 4);
    ck_assert(e[0].bytes * (size_t)e[0].count >= e[1].bytes * (size_t)e[1].count);
    omni__memlog_clear(&m);
}
END_TEST

START_TEST(test_alloc_tag_nests)
{
    ck_assert_ptr_null(omni__alloc_tag());
    const char *a = omni__alloc_tag_set("outer");
    ck_assert_ptr_null(a);
    const char *b = omni__alloc_tag_set("inner");
    ck_assert_str_eq(b, "outer");
    ck_assert_str_eq(omni__alloc_tag(), "inner");
    omni__alloc_tag_set(b);
    ck_assert_str_eq(omni__alloc_tag(), "outer");
    omni__alloc_tag_set(a);
    ck_assert_ptr_null(omni__alloc_tag());
}
END_TEST

/* a fake device: used/peak like omni_cuda_memory_* */
struct fake {
    size_t used, peak;
    int resets;
};
static size_t f_used(void *u) { return ((struct fake *)u)->used; }
static size_t f_peak(void *u) { return ((struct fake *)u)->peak; }
static void f_reset(void *u)
{
    struct fake *f = u;
    f->peak = f->used;
    f->resets++;
}
static void f_add(struct fake *f, long long d)
{
    f->used = (size_t)((long long)f->used + d);
    if (f->used > f->peak)
        f->peak = f->used;
}
static int f_log(void *u, struct omni_cuda_memlog_entry *out, int n)
{
    struct fake *f = u;
    if (n < 1)
        return 0;
    memset(out, 0, sizeof *out);
    snprintf(out->tag, sizeof out->tag, "at%zu", f->peak / GIB);
    out->bytes = f->peak;
    out->count = 1;
    return 1;
}

START_TEST(test_bench_phases)
{
    struct fake f = {.used = GIB / 4, .peak = 5 * GIB}; /* a stale peak from an earlier case */
    const struct omb_mem_src src = {f_used, f_peak, f_reset, f_log, &f};
    struct omb_mem m;
    omb_mem_init_src(&m, &src);
    ck_assert_uint_eq(omb_mem_peak(&m), 0);
    omb_mem_phase(&m, "open");
    ck_assert_int_eq(f.resets, 1);
    f_add(&f, 3 * (long long)GIB); /* weights */
    ck_assert_uint_eq(omb_mem_peak(&m), 3 * GIB + GIB / 4); /* the open phase read now */
    omb_mem_phase(&m, "warmup");
    f_add(&f, 2 * (long long)GIB);  /* states */
    f_add(&f, -2 * (long long)GIB); /* freed before the VQ */
    omb_mem_phase(&m, "vq");
    f_add(&f, (long long)GIB);
    f_add(&f, -(long long)GIB);
    omb_mem_end(&m);
    omb_mem_end(&m); /* twice: nothing more */
    ck_assert_int_eq(m.n, 3);
    ck_assert_str_eq(m.p[0].name, "open");
    ck_assert_uint_eq(m.p[0].start, GIB / 4);
    ck_assert_uint_eq(m.p[0].peak, 3 * GIB + GIB / 4);
    ck_assert_uint_eq(m.p[1].start, 3 * GIB + GIB / 4);
    ck_assert_uint_eq(m.p[1].peak, 5 * GIB + GIB / 4);
    ck_assert_uint_eq(m.p[2].peak, 4 * GIB + GIB / 4);
    /* the case's peak: the largest phase peak, not the stale one */
    ck_assert_uint_eq(omb_mem_peak(&m), 5 * GIB + GIB / 4);
    ck_assert_int_eq(m.peak_phase, 1);
    ck_assert_int_eq(m.n_log, 1);
    ck_assert_str_eq(m.log[0].tag, "at5"); /* taken when the peak phase ended */
    char buf[256];
    ck_assert_str_eq(omb_mem_line(&m, buf, sizeof buf), "open 0.25/3.25, warmup 3.25/5.25, vq 3.25/4.25");
    ck_assert_str_eq(omb_mem_log_line(&m, 4, buf, sizeof buf), "at5 5.25 GiB");
    ck_assert_str_eq(omb_mem_line(&m, buf, 8), "open 0."); /* truncated, terminated */
}
END_TEST

START_TEST(test_bench_phases_overflow_and_no_log)
{
    struct fake f = {0};
    const struct omb_mem_src src = {f_used, f_peak, f_reset, NULL, &f};
    struct omb_mem m;
    omb_mem_init_src(&m, &src);
    char name[16];
    for (int i = 0; i < OMB_MEM_PHASES + 3; i++) {
        snprintf(name, sizeof name, "p%d", i);
        omb_mem_phase(&m, name);
        f_add(&f, (long long)MIB * (i + 1));
    }
    ck_assert_int_eq(m.n, OMB_MEM_PHASES);
    size_t total = 0;
    for (int i = 0; i < OMB_MEM_PHASES + 3; i++)
        total += MIB * (size_t)(i + 1);
    ck_assert_uint_eq(omb_mem_peak(&m), total); /* the last phase went on */
    omb_mem_end(&m);
    ck_assert_uint_eq(m.p[OMB_MEM_PHASES - 1].peak, total);
    ck_assert_int_eq(m.n_log, 0);
    char buf[64];
    ck_assert_str_eq(omb_mem_log_line(&m, 8, buf, sizeof buf), "");
}
END_TEST

START_TEST(test_bench_phases_on_the_cpu_read_zero)
{
    struct omb_mem m;
    omb_mem_init(&m, OMNI_CPU);
    omb_mem_phase(&m, "open");
    omb_mem_phase(&m, "prefill");
    omb_mem_end(&m);
    ck_assert_int_eq(m.n, 2);
    ck_assert_uint_eq(omb_mem_peak(&m), 0);
    ck_assert_int_eq(m.n_log, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memlog");
    TCase *tc = tcase_create("memlog");
    tcase_add_test(tc, test_memlog_keeps_the_live_set_at_the_peak);
    tcase_add_test(tc, test_memlog_many_allocations_and_tags);
    tcase_add_test(tc, test_alloc_tag_nests);
    suite_add_tcase(s, tc);
    tc = tcase_create("bench_phases");
    tcase_add_test(tc, test_bench_phases);
    tcase_add_test(tc, test_bench_phases_overflow_and_no_log);
    tcase_add_test(tc, test_bench_phases_on_the_cpu_read_zero);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
