/* core/weights_impl.h - internals of the weights store shared by weights.c,
 * weights_zip.c, weights_pickle.c and weights_safetensors.c (and the fuzz
 * targets, which open files from memory).
 *
 * A store is one read-only mapping of the file (wrapped in one omni_buffer of
 * kind OMNI_BUFFER_MMAP that every returned tensor references, so the mapping
 * outlives omni_weights_close while tensors are alive) plus a table of
 * entries: key -> (dtype, shape, strides, byte offset into the mapping).
 * Every offset and length read from the file is checked against the mapping
 * size before it is used.
 */
#ifndef OMNI_WEIGHTS_IMPL_H
#define OMNI_WEIGHTS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "omni/weights.h"

/* Open-addressing string -> index table (keys are borrowed, not copied). */
struct omni__strmap {
    const char **keys;
    size_t *keylens;
    size_t *vals;
    size_t cap; /* power of two, 0 when empty */
    size_t n;
};
/* Returns the index stored for key, or (size_t)-1. */
size_t omni__strmap_get(const struct omni__strmap *m, const char *key, size_t len);
/* Insert or replace; returns OMNI_OK or OMNI_ENOMEM. *old gets the previous
 * value or (size_t)-1. */
int omni__strmap_put(struct omni__strmap *m, const char *key, size_t len, size_t val, size_t *old);
void omni__strmap_free(struct omni__strmap *m);

struct omni__wentry {
    char *key;               /* owned, NUL-terminated */
    int32_t dtype;           /* enum omni_dtype; OMNI_DTYPE_INVALID when unsupported */
    char stored[16];         /* dtype as stored, in omni's spelling ("f16", "i16", "bool") */
    int32_t ndim;
    int64_t shape[OMNI_MAX_DIMS];
    int64_t strides[OMNI_MAX_DIMS];
    int64_t offset;          /* bytes into the mapping */
    int64_t storage_numel;   /* elements of the storage viewed (> numel only for views) */
};

struct omni_weights {
    char *path;
    int format;                /* enum omni_weights_format */
    const unsigned char *base; /* mapping */
    size_t size;
    struct omni_buffer *buf;   /* wraps the mapping; the store holds one reference */
    struct omni__wentry *entries;
    size_t n, cap;
    struct omni__strmap index; /* key -> entry index */
};

/* Add an entry (key copied). A key seen before replaces the earlier entry in
 * place (Python dict semantics) unless reject_dup, then OMNI_EFORMAT. */
int omni__weights_add(struct omni_weights *w, const char *key, size_t keylen,
                      const struct omni__wentry *e, int reject_dup, struct omni_error *err);

/* Open from a copy of memory (fuzzers, tests); name is used in messages. */
int omni__weights_open_mem(struct omni_weights **out, const char *name, const void *data,
                           size_t size, struct omni_error *err);

/* Format parsers: fill w->entries from w->base/w->size. */
int omni__safetensors_parse(struct omni_weights *w, struct omni_error *err);
int omni__pth_parse(struct omni_weights *w, struct omni_error *err);

/* Zip central directory (weights_zip.c). */
struct omni__zip_entry {
    const char *name; /* points into the mapping, not NUL-terminated */
    size_t namelen;
    uint64_t data_offset;
    uint64_t size;
};
struct omni__zip {
    struct omni__zip_entry *entries;
    size_t n;
    const char *prefix; /* first path component of the first entry (into the mapping) */
    size_t prefixlen;
    struct omni__strmap index; /* full name -> entry */
};
int omni__zip_open(struct omni__zip *z, const char *path, const unsigned char *base, size_t size,
                   struct omni_error *err);
/* Entry "<prefix>/<record>" or NULL. */
const struct omni__zip_entry *omni__zip_find(const struct omni__zip *z, const char *record);
void omni__zip_free(struct omni__zip *z);

/* Run the restricted unpickler on data.pkl (weights_pickle.c) and add one
 * entry per tensor leaf to w. */
int omni__pickle_load(struct omni_weights *w, const struct omni__zip *z,
                      const struct omni__zip_entry *pkl, struct omni_error *err);

/* Checked arithmetic helpers: return 0 on overflow. */
static inline int omni__mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int omni__add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline uint16_t omni__rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t omni__rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t omni__rd64(const unsigned char *p)
{
    return (uint64_t)omni__rd32(p) | (uint64_t)omni__rd32(p + 4) << 32;
}

#endif
