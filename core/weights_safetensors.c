/* .safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {...}}), then the data buffer. Validation follows the reference reader
 * (huggingface/safetensors tensor.rs, Metadata::validate): N <= 100 MB, known
 * dtype strings, data_offsets contiguous from 0 without gaps or overlap and
 * covering the whole buffer, end - begin == numel x dtype size. The writer
 * pads the header with spaces to a multiple of 8 and orders tensors by
 * descending alignment, then name, as the reference writer does.
 * See shared/spec/weights-formats.md section 3. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weights_impl.h"

#define MAX_HEADER 100000000ull /* the reference reader's MAX_HEADER_SIZE */

struct st_dtype {
    const char *name;   /* in the file */
    const char *stored; /* omni spelling */
    int32_t dtype;      /* OMNI_DTYPE_INVALID: listed but not loadable */
    uint32_t size;
};

static const struct st_dtype st_dtypes[] = {
    {"F16", "f16", OMNI_DTYPE_F16, 2},     {"BF16", "bf16", OMNI_DTYPE_BF16, 2},
    {"F32", "f32", OMNI_DTYPE_F32, 4},     {"F64", "f64", OMNI_DTYPE_F64, 8},
    {"I64", "i64", OMNI_DTYPE_I64, 8},     {"I32", "i32", OMNI_DTYPE_I32, 4},
    {"U8", "u8", OMNI_DTYPE_U8, 1},        {"BOOL", "bool", OMNI_DTYPE_INVALID, 1},
    {"I8", "i8", OMNI_DTYPE_INVALID, 1},   {"F8_E5M2", "f8_e5m2", OMNI_DTYPE_INVALID, 1},
    {"F8_E4M3", "f8_e4m3", OMNI_DTYPE_INVALID, 1}, {"I16", "i16", OMNI_DTYPE_INVALID, 2},
    {"U16", "u16", OMNI_DTYPE_INVALID, 2}, {"U32", "u32", OMNI_DTYPE_INVALID, 4},
    {"U64", "u64", OMNI_DTYPE_INVALID, 8},
};

static const struct st_dtype *st_dtype_by_name(const char *s)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(st_dtypes[i].name, s))
            return &st_dtypes[i];
    return NULL;
}

static const struct st_dtype *st_dtype_by_omni(int dtype)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == dtype && dtype != OMNI_DTYPE_INVALID)
            return &st_dtypes[i];
    return NULL;
}

static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            if (c == 0)
                return 0; /* cJSON stops at NUL; the reference rejects it inside strings */
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* A JSON number that is a non-negative integer representable exactly. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || floor(d) != d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

struct span {
    uint64_t begin, end;
    size_t entry;
};

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

int omni__safetensors_parse(struct omni_weights *w, struct omni_error *err)
{
    const char *path = w->path;
    if (w->size < 8)
        return omni_error_set(err, OMNI_EFORMAT, "%s: truncated: no 8-byte header length", path);
    uint64_t n = omni__rd64(w->base);
    if (n > MAX_HEADER)
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: header length %llu exceeds the 100 MB limit of the format",
                              path, (unsigned long long)n);
    if (n > w->size - 8)
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: truncated: header length %llu runs past the end of the file "
                              "(%zu bytes)",
                              path, (unsigned long long)n, w->size);
    const unsigned char *hdr = w->base + 8;
    if (n < 2 || hdr[0] != '{')
        return omni_error_set(err, OMNI_EFORMAT, "%s: the header is not a JSON object", path);
    if (!utf8_ok(hdr, (size_t)n))
        return omni_error_set(err, OMNI_EFORMAT, "%s: the header is not valid UTF-8", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)hdr, (size_t)n, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= (const char *)hdr && at <= (const char *)hdr + n
                       ? (long)(at - (const char *)hdr) : -1;
        return omni_error_set(err, OMNI_EFORMAT, "%s: the header is not valid JSON (near byte %ld)",
                              path, off + 8);
    }
    int rc = OMNI_OK;
    struct span *spans = NULL;
    if (!cJSON_IsObject(root)) {
        rc = omni_error_set(err, OMNI_EFORMAT, "%s: the header is not a JSON object", path);
        goto out;
    }
    for (const char *p = end; p && p < (const char *)hdr + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: the header has trailing bytes after the JSON object "
                                "(offset %ld)",
                                path, (long)(p - (const char *)hdr) + 8);
            goto out;
        }
    }
    const uint64_t data_start = 8 + n, data_len = w->size - data_start;
    size_t count = (size_t)cJSON_GetArraySize(root);
    spans = calloc(count ? count : 1, sizeof *spans);
    if (!spans) {
        rc = omni_error_set(err, OMNI_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    size_t ns = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *key = it->string;
        if (!key) {
            rc = omni_error_set(err, OMNI_EFORMAT, "%s: header entry without a name", path);
            goto out;
        }
        if (!strcmp(key, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                rc = omni_error_set(err, OMNI_EFORMAT, "%s: __metadata__ is not an object", path);
                goto out;
            }
            for (const cJSON *mv = it->child; mv; mv = mv->next) {
                if (!cJSON_IsString(mv)) {
                    rc = omni_error_set(err, OMNI_EFORMAT,
                                        "%s: __metadata__ value '%.100s' is not a string", path,
                                        mv->string ? mv->string : "");
                    goto out;
                }
            }
            continue;
        }
        if (!cJSON_IsObject(it)) {
            rc = omni_error_set(err, OMNI_EFORMAT, "%s: tensor '%.200s': entry is not an object",
                                path, key);
            goto out;
        }
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo)) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: tensor '%.200s': needs \"dtype\" (string), \"shape\" and "
                                "\"data_offsets\" (arrays)",
                                path, key);
            goto out;
        }
        const struct st_dtype *dt = st_dtype_by_name(jd->valuestring);
        if (!dt) {
            rc = omni_error_set(err, OMNI_EFORMAT, "%s: tensor '%.200s': unknown dtype '%.40s'",
                                path, key, jd->valuestring);
            goto out;
        }
        struct omni__wentry e;
        memset(&e, 0, sizeof e);
        e.dtype = dt->dtype;
        snprintf(e.stored, sizeof e.stored, "%s", dt->stored);
        int nd = cJSON_GetArraySize(js);
        if (nd > OMNI_MAX_DIMS) {
            rc = omni_error_set(err, OMNI_EUNSUPPORTED,
                                "%s: tensor '%.200s': %d dimensions (at most %d supported)", path,
                                key, nd, OMNI_MAX_DIMS);
            goto out;
        }
        e.ndim = nd;
        uint64_t numel = 1, nbytes, b0, b1;
        int k = 0;
        for (const cJSON *d = js->child; d; d = d->next, k++) {
            uint64_t v;
            if (!json_uint(d, &v) || !omni__mul_ok(numel, v, &numel) || numel > (1ull << 62)) {
                rc = omni_error_set(err, OMNI_EFORMAT,
                                    "%s: tensor '%.200s': shape entry %d is not a valid size",
                                    path, key, k);
                goto out;
            }
            e.shape[k] = (int64_t)v;
        }
        int64_t stride = 1; /* row-major, dense; numel <= 2^62 so no overflow */
        for (int i = nd - 1; i >= 0; i--) {
            e.strides[i] = stride;
            stride *= e.shape[i];
        }
        if (cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b0) ||
            !json_uint(jo->child->next, &b1) || b1 < b0) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: tensor '%.200s': data_offsets must be [begin, end] with "
                                "begin <= end",
                                path, key);
            goto out;
        }
        if (!omni__mul_ok(numel, dt->size, &nbytes) || nbytes != b1 - b0) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes but "
                                "%llu elements of %s need %llu",
                                path, key, (unsigned long long)b0, (unsigned long long)b1,
                                (unsigned long long)(b1 - b0), (unsigned long long)numel,
                                dt->name, (unsigned long long)(numel * dt->size));
            goto out;
        }
        if (b1 > data_len) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: truncated: tensor '%.200s' ends at data byte %llu but the data "
                                "buffer has %llu bytes",
                                path, key, (unsigned long long)b1, (unsigned long long)data_len);
            goto out;
        }
        e.offset = (int64_t)(data_start + b0);
        e.storage_numel = (int64_t)numel;
        spans[ns].begin = b0;
        spans[ns].end = b1;
        spans[ns].entry = w->n;
        ns++;
        if ((rc = omni__weights_add(w, key, strlen(key), &e, 1, err)))
            goto out;
    }
    qsort(spans, ns, sizeof *spans, cmp_span);
    uint64_t at = 0;
    for (size_t i = 0; i < ns; i++) {
        if (spans[i].begin != at) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: tensor '%.200s' starts at data byte %llu but the previous "
                                "tensor ends at %llu (%s)",
                                path, w->entries[spans[i].entry].key,
                                (unsigned long long)spans[i].begin, (unsigned long long)at,
                                spans[i].begin > at ? "gap" : "overlap");
            goto out;
        }
        at = spans[i].end;
    }
    if (at != data_len) {
        rc = omni_error_set(err, OMNI_EFORMAT,
                            "%s: the tensors cover %llu bytes of data but the file holds %llu after "
                            "the header",
                            path, (unsigned long long)at, (unsigned long long)data_len);
        goto out;
    }
out:
    free(spans);
    cJSON_Delete(root);
    return rc;
}

/* ---- writer ------------------------------------------------------------------------- */

struct wslot {
    const char *name;
    const struct omni_tensor *t;
    const struct st_dtype *dt;
    uint64_t nbytes, begin;
};

static int cmp_slot(const void *a, const void *b)
{
    const struct wslot *x = a, *y = b;
    if (x->dt->size != y->dt->size)
        return x->dt->size > y->dt->size ? -1 : 1; /* larger alignment first */
    return strcmp(x->name, y->name);
}

/* Append s to a growable buffer. */
struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->n + len + 1)
            ncap *= 2;
        char *p = realloc(b->p, ncap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_json_string(struct sbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_add(b, esc, 6);
        } else {
            sb_add(b, (const char *)&c, 1);
        }
    }
    sb_add(b, "\"", 1);
}

int omni_safetensors_write(const char *path, size_t n, const char *const *names,
                           const struct omni_tensor *tensors, struct omni_error *err)
{
    if (!path || (n && (!names || !tensors)))
        return omni_error_set(err, OMNI_EINVAL, "omni_safetensors_write: NULL argument");
    int rc = OMNI_OK, created = 0;
    FILE *f = NULL;
    struct sbuf hb = {0};
    struct wslot *slots = calloc(n ? n : 1, sizeof *slots);
    if (!slots)
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const struct omni_tensor *t = &tensors[i];
        if (!names[i] || !*names[i] || !utf8_ok((const unsigned char *)names[i], strlen(names[i]))) {
            rc = omni_error_set(err, OMNI_EINVAL, "%s: tensor %zu has an empty or non-UTF-8 name",
                                path, i);
            goto fail;
        }
        if (!strcmp(names[i], "__metadata__")) {
            rc = omni_error_set(err, OMNI_EINVAL, "%s: '__metadata__' is not a valid tensor name",
                                path);
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(names[i], names[j])) {
                rc = omni_error_set(err, OMNI_EINVAL, "%s: duplicate tensor name '%s'", path,
                                    names[i]);
                goto fail;
            }
        }
        slots[i].name = names[i];
        slots[i].t = t;
        slots[i].dt = st_dtype_by_omni(t->dtype);
        if (!slots[i].dt) {
            rc = omni_error_set(err, OMNI_EDTYPE, "%s: tensor '%s' has dtype %s, which safetensors "
                                "output does not support", path, names[i],
                                omni_dtype_name(t->dtype));
            goto fail;
        }
        if (t->ndim < 0 || t->ndim > OMNI_MAX_DIMS) {
            rc = omni_error_set(err, OMNI_EINVAL, "%s: tensor '%s' has rank %d", path, names[i],
                                t->ndim);
            goto fail;
        }
        if (omni_tensor_numel(t) > 0 && (!t->buf || t->device.type != OMNI_DEVICE_CPU)) {
            rc = omni_error_set(err, OMNI_EDEVICE, "%s: tensor '%s' is not a host tensor", path,
                                names[i]);
            goto fail;
        }
        slots[i].nbytes = omni_tensor_nbytes(t);
    }
    qsort(slots, n, sizeof *slots, cmp_slot);
    uint64_t off = 0;
    sb_str(&hb, "{");
    for (size_t i = 0; i < n; i++) {
        char tmp[64];
        slots[i].begin = off;
        if (i)
            sb_str(&hb, ",");
        sb_json_string(&hb, slots[i].name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, slots[i].dt->name);
        sb_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < slots[i].t->ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)slots[i].t->shape[d]);
            sb_str(&hb, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + slots[i].nbytes));
        sb_str(&hb, tmp);
        off += slots[i].nbytes;
    }
    sb_str(&hb, "}");
    while (!hb.oom && hb.n % 8)
        sb_str(&hb, " ");
    if (hb.oom) {
        rc = omni_error_set(err, OMNI_ENOMEM, "%s: out of memory building the header", path);
        goto fail;
    }
    f = fopen(path, "wb");
    created = f != NULL;
    if (!f) {
        rc = omni_error_set(err, OMNI_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hb.n >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hb.p, 1, hb.n, f) == hb.n;
    for (size_t i = 0; ok && i < n; i++) {
        if (!slots[i].nbytes)
            continue;
        const struct omni_tensor *t = slots[i].t;
        if (omni_tensor_is_contiguous(t)) {
            ok = fwrite(omni_tensor_data(t), 1, slots[i].nbytes, f) == slots[i].nbytes;
        } else {
            struct omni_tensor c;
            if ((rc = omni_tensor_copy_to(&c, t, OMNI_CPU, err))) {
                omni_error_prefix(err, "%s: tensor '%s': ", path, slots[i].name);
                goto fail;
            }
            ok = fwrite(omni_tensor_data(&c), 1, slots[i].nbytes, f) == slots[i].nbytes;
            omni_tensor_release(&c);
        }
    }
    if (fclose(f) != 0)
        ok = 0;
    f = NULL;
    if (!ok) {
        rc = omni_error_set(err, OMNI_EIO, "%s: write failed: %s", path, strerror(errno));
        goto fail;
    }
    free(hb.p);
    free(slots);
    return OMNI_OK;
fail:
    if (f)
        fclose(f);
    if (created)
        remove(path); /* no half-written files */
    free(hb.p);
    free(slots);
    return rc;
}
