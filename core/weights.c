/* The weights store: open a .safetensors or torch.save (.pth) file by mmap,
 * dispatch on its content, and serve tensors by key as zero-copy views of the
 * mapping (or converted copies). Format parsing lives in weights_zip.c,
 * weights_pickle.c and weights_safetensors.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weights_impl.h"

/* Both formats store little-endian data and tensors are served in place. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weights store assumes a little-endian host"
#endif

/* ---- string map ------------------------------------------------------------- */

static uint64_t hash_str(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

size_t omni__strmap_get(const struct omni__strmap *m, const char *key, size_t len)
{
    if (!m->cap)
        return (size_t)-1;
    size_t mask = m->cap - 1;
    for (size_t i = hash_str(key, len) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i])
            return (size_t)-1;
        if (m->keylens[i] == len && !memcmp(m->keys[i], key, len))
            return m->vals[i];
    }
}

static int strmap_grow(struct omni__strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    const char **keys = calloc(ncap, sizeof *keys);
    size_t *lens = calloc(ncap, sizeof *lens);
    size_t *vals = calloc(ncap, sizeof *vals);
    if (!keys || !lens || !vals) {
        free(keys);
        free(lens);
        free(vals);
        return OMNI_ENOMEM;
    }
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j])
            continue;
        size_t i = hash_str(m->keys[j], m->keylens[j]) & (ncap - 1);
        while (keys[i])
            i = (i + 1) & (ncap - 1);
        keys[i] = m->keys[j];
        lens[i] = m->keylens[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->keylens);
    free(m->vals);
    m->keys = keys;
    m->keylens = lens;
    m->vals = vals;
    m->cap = ncap;
    return OMNI_OK;
}

int omni__strmap_put(struct omni__strmap *m, const char *key, size_t len, size_t val, size_t *old)
{
    *old = (size_t)-1;
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m))
        return OMNI_ENOMEM;
    size_t mask = m->cap - 1;
    size_t i = hash_str(key, len) & mask;
    for (; m->keys[i]; i = (i + 1) & mask) {
        if (m->keylens[i] == len && !memcmp(m->keys[i], key, len)) {
            *old = m->vals[i];
            m->vals[i] = val;
            return OMNI_OK;
        }
    }
    m->keys[i] = key;
    m->keylens[i] = len;
    m->vals[i] = val;
    m->n++;
    return OMNI_OK;
}

void omni__strmap_free(struct omni__strmap *m)
{
    free(m->keys);
    free(m->keylens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- entries ------------------------------------------------------------------ */

int omni__weights_add(struct omni_weights *w, const char *key, size_t keylen,
                      const struct omni__wentry *e, int reject_dup, struct omni_error *err)
{
    size_t idx = omni__strmap_get(&w->index, key, keylen);
    if (idx != (size_t)-1) {
        if (reject_dup)
            return omni_error_set(err, OMNI_EFORMAT, "%s: duplicate tensor name '%.*s'", w->path,
                                  (int)(keylen > 200 ? 200 : keylen), key);
        /* later value wins, position kept (Python dict assignment) */
        char *k = w->entries[idx].key;
        w->entries[idx] = *e;
        w->entries[idx].key = k;
        return OMNI_OK;
    }
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 64;
        struct omni__wentry *ne = realloc(w->entries, ncap * sizeof *ne);
        if (!ne)
            return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory for %zu tensor entries",
                                  w->path, ncap);
        w->entries = ne;
        w->cap = ncap;
    }
    char *k = malloc(keylen + 1);
    if (!k)
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory for a key", w->path);
    memcpy(k, key, keylen);
    k[keylen] = 0;
    size_t old;
    if (omni__strmap_put(&w->index, k, keylen, w->n, &old)) {
        free(k);
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory for the key index", w->path);
    }
    w->entries[w->n] = *e;
    w->entries[w->n].key = k;
    w->n++;
    return OMNI_OK;
}

/* ---- open / close ------------------------------------------------------------- */

struct mapping {
    void *base;
    size_t size;
    int is_mmap;
};

static void mapping_free(void *user)
{
    struct mapping *m = user;
    if (m->is_mmap)
        munmap(m->base, m->size);
    else
        free(m->base);
    free(m);
}

static const unsigned char legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};

static int detect_and_parse(struct omni_weights *w, struct omni_error *err)
{
    const unsigned char *b = w->base;
    size_t n = w->size;
    if (n >= 4 && !memcmp(b, "PK\3\4", 4)) {
        w->format = OMNI_WEIGHTS_PTH;
        return omni__pth_parse(w, err);
    }
    if (n >= 9 && b[8] == '{') {
        w->format = OMNI_WEIGHTS_SAFETENSORS;
        return omni__safetensors_parse(w, err);
    }
    if (n >= sizeof legacy_magic && !memcmp(b, legacy_magic, sizeof legacy_magic))
        return omni_error_set(err, OMNI_EUNSUPPORTED,
                              "%s: legacy (pre-1.6) torch.save format is not supported; re-save it "
                              "with torch >= 1.6 or convert it to .safetensors",
                              w->path);
    if (n >= 262 && !memcmp(b + 257, "ustar", 5))
        return omni_error_set(err, OMNI_EUNSUPPORTED,
                              "%s: tar-based torch.save format is not supported; re-save it with "
                              "torch >= 1.6 or convert it to .safetensors",
                              w->path);
    if (n < 9)
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: truncated: %zu bytes is too short for a weights file", w->path,
                              n);
    return omni_error_set(err, OMNI_EFORMAT,
                          "%s: not a .safetensors or torch.save zip file (starts with %02x %02x %02x "
                          "%02x ... %02x)",
                          w->path, b[0], b[1], b[2], b[3], b[8]);
}

/* Takes ownership of the mapping m (released through the buffer). */
static int open_mapping(struct omni_weights **out, const char *path, struct mapping *m,
                        struct omni_error *err)
{
    *out = NULL;
    struct omni_weights *w = calloc(1, sizeof *w);
    char *p = strdup(path);
    struct omni_buffer *buf = NULL;
    if (!w || !p) {
        free(w);
        free(p);
        mapping_free(m);
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory", path);
    }
    buf = omni_buffer_wrap(OMNI_CPU, m->base, m->size, OMNI_BUFFER_MMAP, mapping_free, m, err);
    if (!buf) {
        free(w);
        free(p);
        mapping_free(m);
        omni_error_prefix(err, "%s: ", path);
        return OMNI_ENOMEM;
    }
    w->path = p;
    w->base = m->base;
    w->size = m->size;
    w->buf = buf;
    int rc = detect_and_parse(w, err);
    if (rc) {
        omni_weights_close(w);
        return rc;
    }
    *out = w;
    return OMNI_OK;
}

int omni_weights_open(struct omni_weights **out, const char *path, struct omni_error *err)
{
    if (!out || !path)
        return omni_error_set(err, OMNI_EINVAL, "omni_weights_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return omni_error_set(err, errno == ENOENT ? OMNI_ENOTFOUND : OMNI_EIO,
                              "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return omni_error_set(err, OMNI_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return omni_error_set(err, OMNI_EINVAL, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return omni_error_set(err, OMNI_EFORMAT, "%s: truncated: the file is empty", path);
    }
    struct mapping *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory", path);
    }
    m->size = (size_t)st.st_size;
    m->base = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m->base == MAP_FAILED) {
        free(m);
        return omni_error_set(err, OMNI_EIO, "%s: mmap of %lld bytes failed: %s", path,
                              (long long)st.st_size, strerror(e));
    }
    m->is_mmap = 1;
    return open_mapping(out, path, m, err);
}

int omni__weights_open_mem(struct omni_weights **out, const char *name, const void *data,
                           size_t size, struct omni_error *err)
{
    *out = NULL;
    struct mapping *m = calloc(1, sizeof *m);
    void *copy = malloc(size ? size : 1);
    if (!m || !copy) {
        free(m);
        free(copy);
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory", name);
    }
    if (size)
        memcpy(copy, data, size);
    m->base = copy;
    m->size = size;
    return open_mapping(out, name, m, err);
}

void omni_weights_close(struct omni_weights *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->entries[i].key);
    free(w->entries);
    omni__strmap_free(&w->index);
    omni_buffer_unref(w->buf); /* the mapping stays while tensors reference it */
    free(w->path);
    free(w);
}

int omni_weights_format(const struct omni_weights *w) { return w ? w->format : 0; }
const char *omni_weights_path(const struct omni_weights *w) { return w ? w->path : NULL; }
size_t omni_weights_count(const struct omni_weights *w) { return w ? w->n : 0; }

const char *omni_weights_key(const struct omni_weights *w, size_t i)
{
    return w && i < w->n ? w->entries[i].key : NULL;
}

const char *omni_weights_dtype_str(const struct omni_weights *w, size_t i)
{
    return w && i < w->n ? w->entries[i].stored : NULL;
}

/* ---- lookup --------------------------------------------------------------------- */

static int lookup(const struct omni_weights *w, const char *prefix, const char *key,
                  const struct omni__wentry **out, struct omni_error *err)
{
    *out = NULL;
    if (!w || !key)
        return omni_error_set(err, OMNI_EINVAL, "omni_weights: NULL store or key");
    size_t pl = prefix ? strlen(prefix) : 0, kl = strlen(key);
    char stackbuf[256];
    char *full = pl + kl < sizeof stackbuf ? stackbuf : malloc(pl + kl + 1);
    if (!full)
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory", w->path);
    if (pl)
        memcpy(full, prefix, pl);
    memcpy(full + pl, key, kl + 1);
    size_t idx = omni__strmap_get(&w->index, full, pl + kl);
    int rc = OMNI_OK;
    if (idx == (size_t)-1)
        rc = omni_error_set(err, OMNI_ENOTFOUND, "%s: no tensor named '%s' (%zu tensors in the file)",
                            w->path, full, w->n);
    else
        *out = &w->entries[idx];
    if (full != stackbuf)
        free(full);
    return rc;
}

int omni_weights_has(const struct omni_weights *w, const char *prefix, const char *key)
{
    const struct omni__wentry *e;
    return lookup(w, prefix, key, &e, NULL) == OMNI_OK;
}

static int unsupported(const struct omni_weights *w, const struct omni__wentry *e,
                       struct omni_error *err)
{
    return omni_error_set(err, OMNI_EUNSUPPORTED,
                          "%s: tensor '%s' has dtype %s, which omni cannot load (supported: f16, "
                          "bf16, f32, f64, i64, i32, u8)",
                          w->path, e->key, e->stored);
}

int omni_weights_info(const struct omni_weights *w, const char *prefix, const char *key,
                      struct omni_weight_info *info, struct omni_error *err)
{
    const struct omni__wentry *e;
    int rc = lookup(w, prefix, key, &e, err);
    if (rc)
        return rc;
    if (info) {
        memset(info, 0, sizeof *info);
        info->dtype = e->dtype;
        info->ndim = e->ndim;
        memcpy(info->shape, e->shape, sizeof info->shape);
        memcpy(info->strides, e->strides, sizeof info->strides);
        info->offset = e->offset;
    }
    return e->dtype == OMNI_DTYPE_INVALID ? unsupported(w, e, err) : OMNI_OK;
}

int omni_weights_get(const struct omni_weights *w, const char *prefix, const char *key,
                     struct omni_tensor *out, struct omni_error *err)
{
    if (!out)
        return omni_error_set(err, OMNI_EINVAL, "omni_weights_get: NULL output tensor");
    memset(out, 0, sizeof *out);
    const struct omni__wentry *e;
    int rc = lookup(w, prefix, key, &e, err);
    if (rc)
        return rc;
    if (e->dtype == OMNI_DTYPE_INVALID)
        return unsupported(w, e, err);
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof out->shape);
    memcpy(out->strides, e->strides, sizeof out->strides);
    out->offset = e->offset;
    out->device = OMNI_CPU;
    out->buf = omni_buffer_ref(w->buf);
    return OMNI_OK;
}

int omni_weights_load(const struct omni_weights *w, const char *prefix, const char *key, int dtype,
                      int ndim, const int64_t *shape, struct omni_tensor *out,
                      struct omni_error *err)
{
    if (!out)
        return omni_error_set(err, OMNI_EINVAL, "omni_weights_load: NULL output tensor");
    memset(out, 0, sizeof *out);
    if (!omni_dtype_size(dtype))
        return omni_error_set(err, OMNI_EINVAL, "omni_weights_load: invalid dtype %d", dtype);
    if (ndim < 0 || ndim > OMNI_MAX_DIMS || (ndim > 0 && !shape))
        return omni_error_set(err, OMNI_EINVAL, "omni_weights_load: invalid expected rank %d",
                              ndim);
    struct omni_tensor view;
    int rc = omni_weights_get(w, prefix, key, &view, err);
    if (rc)
        return rc;
    /* A broadcast view (stride 0, e.g. torch's expand) can describe far more
     * elements than the file holds; copying it is only done when the caller
     * states the shape it expects, so a hostile file cannot make us allocate. */
    const struct omni__wentry *e;
    lookup(w, prefix, key, &e, NULL);
    if (ndim == 0 && omni_tensor_numel(&view) > e->storage_numel) {
        omni_tensor_release(&view);
        return omni_error_set(err, OMNI_EUNSUPPORTED,
                              "%s: tensor '%s%s' is a broadcast view of %lld elements over a "
                              "storage of %lld; pass the expected shape to load it",
                              w->path, prefix ? prefix : "", key,
                              (long long)omni_tensor_numel(&view), (long long)e->storage_numel);
    }
    if (ndim > 0) {
        int same = view.ndim == ndim;
        for (int i = 0; same && i < ndim; i++)
            same = view.shape[i] == shape[i];
        if (!same) {
            char a[160], b[160];
            omni_shape_str(view.ndim, view.shape, a, sizeof a);
            omni_shape_str(ndim, shape, b, sizeof b);
            omni_error_set(err, OMNI_ESHAPE, "%s: tensor '%s%s' has shape %s, expected %s",
                           w->path, prefix ? prefix : "", key, a, b);
            omni_tensor_release(&view);
            return OMNI_ESHAPE;
        }
    }
    rc = omni_tensor_convert(out, &view, dtype, err);
    omni_tensor_release(&view);
    if (rc)
        omni_error_prefix(err, "%s: tensor '%s%s': ", w->path, prefix ? prefix : "", key);
    return rc;
}
