/* The zip container of torch.save files (PyTorch >= 1.6): central directory
 * (with zip64), STORED entries only, data offsets taken from each local
 * header (PyTorch pads the local extra field so that data is 64-byte
 * aligned), record prefix from the first entry. See
 * shared/spec/weights-formats.md section 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weights_impl.h"

#define EOCD_SIZE 22
#define CDH_SIZE 46   /* central directory file header without name/extra/comment */
#define LFH_SIZE 30   /* local file header without name/extra */
#define Z64_LOC_SIZE 20
#define Z64_EOCD_SIZE 56

static int find_eocd(const unsigned char *b, size_t size, size_t *pos)
{
    if (size < EOCD_SIZE)
        return 0;
    size_t lo = size - EOCD_SIZE > 65535 ? size - EOCD_SIZE - 65535 : 0;
    for (size_t p = size - EOCD_SIZE + 1; p-- > lo;) {
        if (b[p] == 'P' && !memcmp(b + p, "PK\5\6", 4) &&
            p + EOCD_SIZE + omni__rd16(b + p + 20) <= size) {
            *pos = p;
            return 1;
        }
    }
    return 0;
}

/* Print at most 120 characters of an entry name. */
#define NAMEF "%.*s"
#define NAMEA(p, n) (int)((n) > 120 ? 120 : (n)), (const char *)(p)

int omni__zip_open(struct omni__zip *z, const char *path, const unsigned char *b, size_t size,
                   struct omni_error *err)
{
    memset(z, 0, sizeof *z);
    size_t eocd;
    if (!find_eocd(b, size, &eocd))
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: truncated: zip end of central directory not found", path);
    uint64_t count = omni__rd16(b + eocd + 10);
    uint64_t cd_size = omni__rd32(b + eocd + 12);
    uint64_t cd_off = omni__rd32(b + eocd + 16);
    if (omni__rd16(b + eocd + 4) != 0 || omni__rd16(b + eocd + 6) != 0)
        return omni_error_set(err, OMNI_EUNSUPPORTED, "%s: multi-disk zip archives are not supported",
                              path);
    int need64 = count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu;
    if (eocd >= Z64_LOC_SIZE && !memcmp(b + eocd - Z64_LOC_SIZE, "PK\6\7", 4)) {
        uint64_t z64 = omni__rd64(b + eocd - Z64_LOC_SIZE + 8);
        if (z64 > size || size - z64 < Z64_EOCD_SIZE || memcmp(b + z64, "PK\6\6", 4)) {
            if (need64)
                return omni_error_set(err, OMNI_EFORMAT,
                                      "%s: zip64 end of central directory record at offset %llu is "
                                      "missing or truncated",
                                      path, (unsigned long long)z64);
        } else if (need64) {
            count = omni__rd64(b + z64 + 32);
            cd_size = omni__rd64(b + z64 + 40);
            cd_off = omni__rd64(b + z64 + 48);
        }
    } else if (need64) {
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: zip end of central directory needs zip64 values but the zip64 "
                              "locator is missing",
                              path);
    }
    if (cd_off > size || cd_size > size - cd_off)
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: truncated: zip central directory (%llu bytes at offset %llu) runs "
                              "past the end of the file (%zu bytes)",
                              path, (unsigned long long)cd_size, (unsigned long long)cd_off, size);
    if (count == 0)
        return omni_error_set(err, OMNI_EFORMAT, "%s: the zip archive is empty", path);
    if (count > cd_size / CDH_SIZE)
        return omni_error_set(err, OMNI_EFORMAT,
                              "%s: zip central directory claims %llu entries in %llu bytes", path,
                              (unsigned long long)count, (unsigned long long)cd_size);
    z->entries = calloc((size_t)count, sizeof *z->entries);
    if (!z->entries)
        return omni_error_set(err, OMNI_ENOMEM, "%s: out of memory for %llu zip entries", path,
                              (unsigned long long)count);
    int rc = OMNI_OK;
    const uint64_t cd_end = cd_off + cd_size;
    uint64_t p = cd_off;
    for (uint64_t i = 0; i < count; i++) {
        if (cd_end - p < CDH_SIZE || memcmp(b + p, "PK\1\2", 4)) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: zip central directory entry %llu at offset %llu is malformed",
                                path, (unsigned long long)i, (unsigned long long)p);
            goto fail;
        }
        const unsigned char *h = b + p;
        uint16_t flags = omni__rd16(h + 8), method = omni__rd16(h + 10);
        uint64_t csize = omni__rd32(h + 20), usize = omni__rd32(h + 24);
        uint64_t lho = omni__rd32(h + 42);
        size_t nl = omni__rd16(h + 28), xl = omni__rd16(h + 30), cl = omni__rd16(h + 32);
        if (cd_end - p - CDH_SIZE < (uint64_t)nl + xl + cl) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: zip central directory entry %llu at offset %llu runs past the "
                                "directory",
                                path, (unsigned long long)i, (unsigned long long)p);
            goto fail;
        }
        const unsigned char *name = h + CDH_SIZE;
        /* zip64 extended information: the saturated fields, in this order */
        const unsigned char *x = name + nl, *xend = x + xl;
        while (xend - x >= 4) {
            uint16_t id = omni__rd16(x), len = omni__rd16(x + 2);
            if ((size_t)(xend - x - 4) < len)
                break;
            if (id == 1) {
                const unsigned char *f = x + 4, *fend = f + len;
                uint64_t *fields[3] = {&usize, &csize, &lho};
                for (int k = 0; k < 3; k++) {
                    if (*fields[k] != 0xFFFFFFFFu)
                        continue;
                    if (fend - f < 8) {
                        rc = omni_error_set(err, OMNI_EFORMAT,
                                            "%s: zip entry '" NAMEF "': zip64 extra field too short",
                                            path, NAMEA(name, nl));
                        goto fail;
                    }
                    *fields[k] = omni__rd64(f);
                    f += 8;
                }
            }
            x += 4 + len;
        }
        if (flags & 1) {
            rc = omni_error_set(err, OMNI_EUNSUPPORTED, "%s: zip entry '" NAMEF "' is encrypted",
                                path, NAMEA(name, nl));
            goto fail;
        }
        if (method != 0) {
            rc = omni_error_set(err, OMNI_EUNSUPPORTED,
                                "%s: zip entry '" NAMEF "' is compressed (method %u); torch.save "
                                "writes uncompressed (STORED) entries only",
                                path, NAMEA(name, nl), method);
            goto fail;
        }
        if (csize != usize) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: zip entry '" NAMEF "' is stored but its sizes differ (%llu vs "
                                "%llu)",
                                path, NAMEA(name, nl), (unsigned long long)csize,
                                (unsigned long long)usize);
            goto fail;
        }
        if (lho > size || size - lho < LFH_SIZE || memcmp(b + lho, "PK\3\4", 4)) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: zip entry '" NAMEF "': local header at offset %llu is missing "
                                "or truncated",
                                path, NAMEA(name, nl), (unsigned long long)lho);
            goto fail;
        }
        uint64_t data = lho + LFH_SIZE + omni__rd16(b + lho + 26) + omni__rd16(b + lho + 28);
        if (data > size || size - data < usize) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "%s: truncated: zip entry '" NAMEF "' (%llu bytes at offset %llu) "
                                "runs past the end of the file (%zu bytes)",
                                path, NAMEA(name, nl), (unsigned long long)usize,
                                (unsigned long long)data, size);
            goto fail;
        }
        struct omni__zip_entry *e = &z->entries[z->n++];
        e->name = (const char *)name;
        e->namelen = nl;
        e->data_offset = data;
        e->size = usize;
        if (omni__strmap_get(&z->index, e->name, nl) == (size_t)-1) {
            size_t old;
            if (omni__strmap_put(&z->index, e->name, nl, z->n - 1, &old)) {
                rc = omni_error_set(err, OMNI_ENOMEM, "%s: out of memory indexing zip entries", path);
                goto fail;
            }
        }
        p += CDH_SIZE + nl + xl + cl;
    }
    const char *slash = memchr(z->entries[0].name, '/', z->entries[0].namelen);
    if (!slash || slash == z->entries[0].name) {
        rc = omni_error_set(err, OMNI_EFORMAT,
                            "%s: first zip entry '" NAMEF "' has no folder; a torch.save archive "
                            "names its records '<folder>/data.pkl' etc.",
                            path, NAMEA(z->entries[0].name, z->entries[0].namelen));
        goto fail;
    }
    z->prefix = z->entries[0].name;
    z->prefixlen = (size_t)(slash - z->entries[0].name);
    return OMNI_OK;
fail:
    omni__zip_free(z);
    return rc;
}

const struct omni__zip_entry *omni__zip_find(const struct omni__zip *z, const char *record)
{
    size_t rl = strlen(record);
    char stackbuf[512];
    char *full = z->prefixlen + 1 + rl < sizeof stackbuf ? stackbuf : malloc(z->prefixlen + rl + 2);
    if (!full)
        return NULL;
    memcpy(full, z->prefix, z->prefixlen);
    full[z->prefixlen] = '/';
    memcpy(full + z->prefixlen + 1, record, rl);
    size_t idx = omni__strmap_get(&z->index, full, z->prefixlen + 1 + rl);
    if (full != stackbuf)
        free(full);
    return idx == (size_t)-1 ? NULL : &z->entries[idx];
}

void omni__zip_free(struct omni__zip *z)
{
    free(z->entries);
    omni__strmap_free(&z->index);
    memset(z, 0, sizeof *z);
}

int omni__pth_parse(struct omni_weights *w, struct omni_error *err)
{
    struct omni__zip z;
    int rc = omni__zip_open(&z, w->path, w->base, w->size, err);
    if (rc)
        return rc;
    const struct omni__zip_entry *e = omni__zip_find(&z, "byteorder");
    if (e) {
        const char *s = (const char *)w->base + e->data_offset;
        if (!(e->size == 6 && !memcmp(s, "little", 6))) {
            rc = omni_error_set(err, OMNI_EUNSUPPORTED,
                                "%s: byteorder record says '%.*s'; only little-endian files are "
                                "supported",
                                w->path, (int)(e->size > 16 ? 16 : e->size), s);
            goto out;
        }
    }
    e = omni__zip_find(&z, "version");
    if (!e)
        e = omni__zip_find(&z, ".data/version");
    if (!e) {
        rc = omni_error_set(err, OMNI_EFORMAT, "%s: torch.save archive has no '%.*s/version' record",
                            w->path, (int)z.prefixlen, z.prefix);
        goto out;
    }
    {
        const unsigned char *s = w->base + e->data_offset;
        size_t i = 0;
        while (i < e->size && i < 8 && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == 0 || i == 8 || (i < e->size && s[i] != '\n' && s[i] != '\r')) {
            rc = omni_error_set(err, OMNI_EFORMAT, "%s: version record is not a decimal number",
                                w->path);
            goto out;
        }
    }
    e = omni__zip_find(&z, "data.pkl");
    if (!e) {
        rc = omni_error_set(err, OMNI_EFORMAT, "%s: torch.save archive has no '%.*s/data.pkl' record",
                            w->path, (int)z.prefixlen, z.prefix);
        goto out;
    }
    rc = omni__pickle_load(w, &z, e, err);
out:
    omni__zip_free(&z);
    return rc;
}
