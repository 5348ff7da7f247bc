/* core/memlog.h - internal: a record of live device allocations that keeps
 * a copy of the live set at its peak, for OMNI_CUDA_MEMLOG=1 (core/cuda.c).
 * Plain C, no CUDA: the CPU test suites exercise it directly.
 *
 * Allocations carry the thread's allocation tag (omni__alloc_tag_set: the
 * stage whose load, forward or step is running, else NULL). The report
 * groups the allocations live at the peak by (tag, size), largest total
 * first. Not thread-safe: the caller serialises (cuda.c holds a mutex). */
#ifndef OMNI_CORE_MEMLOG_H
#define OMNI_CORE_MEMLOG_H

#include <stddef.h>

#include "omni/cuda.h"

#define OMNI__MEMLOG_TAGS 128
#define OMNI__MEMLOG_TAG_LEN 32

struct omni__memlog_live {
    const void *ptr;
    size_t bytes;
    int tag; /* index into tags; -1: untagged */
};

struct omni__memlog {
    struct omni__memlog_live *live, *snap;
    size_t n, cap, n_snap, cap_snap;
    char tags[OMNI__MEMLOG_TAGS][OMNI__MEMLOG_TAG_LEN];
    int n_tags;
    long long used, peak;
    int degraded; /* a host allocation failed: the record is incomplete */
};

/* The calling thread's allocation tag (NULL: none); set returns the previous
 * one. The string must outlive its use as the tag (it is copied when an
 * allocation is recorded). */
const char *omni__alloc_tag(void);
const char *omni__alloc_tag_set(const char *tag);

/* Record an allocation of `bytes` at ptr with `tag`; when the live total
 * passes the peak, the live set is copied as the peak's. */
void omni__memlog_alloc(struct omni__memlog *m, const void *ptr, size_t bytes, const char *tag);
/* Forget the allocation of `bytes` at ptr (unknown ones are ignored). */
void omni__memlog_free(struct omni__memlog *m, const void *ptr, size_t bytes);
/* The peak becomes the live total now and its copy the live set now. */
void omni__memlog_reset_peak(struct omni__memlog *m);
/* Up to n groups of the peak's live set, largest total first; returns how
 * many were written. */
int omni__memlog_report(const struct omni__memlog *m, struct omni_cuda_memlog_entry *out, int n);
/* Free the record's host memory and zero it. */
void omni__memlog_clear(struct omni__memlog *m);

#endif
