/* The weights store: torch.save fixtures against expected.json (written by
 * PyTorch 1.13), safetensors round trips and the reference writer's byte
 * layout, hand-made malformed files, malicious pickles, truncated and
 * byte-flipped copies of every fixture. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omni/weights.h"
#include "../common/testutil.h"

/* ---- helpers ------------------------------------------------------------------------ */

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    ck_assert(p != NULL);
    ck_assert_int_eq(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_int_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* A path in this test's temporary directory (two rotating buffers). */
static const char *tmp(const char *name)
{
    static char buf[2][512];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_tmpdir(), name);
    return buf[k];
}

static char fixture_buf[4][1024];
static const char *fixture(const char *name)
{
    static int k;
    k = (k + 1) % 4;
    char rel[256];
    snprintf(rel, sizeof rel, "data/weights-fixtures/%s", name);
    snprintf(fixture_buf[k], sizeof fixture_buf[k], "%s", tu_shared_path(rel));
    return fixture_buf[k];
}

static const char *local_fixture(const char *name)
{
    static char buf[1024];
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/data/%s", name);
    snprintf(buf, sizeof buf, "%s", tu_repo_path(rel));
    return buf;
}

/* IEEE binary16 -> double, written independently of the library. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element at a multi-index, read through strides and the byte offset. */
static double elem_at(const struct omni_tensor *t, const int64_t *idx)
{
    int64_t lin = 0;
    for (int d = 0; d < t->ndim; d++)
        lin += idx[d] * t->strides[d];
    const unsigned char *p =
        (const unsigned char *)omni_tensor_data(t) + lin * (int64_t)omni_dtype_size(t->dtype);
    uint16_t h;
    float f;
    double g;
    int64_t l;
    int32_t i;
    switch (t->dtype) {
    case OMNI_DTYPE_F16: memcpy(&h, p, 2); return ref_f16(h);
    case OMNI_DTYPE_BF16: memcpy(&h, p, 2); return ref_bf16(h);
    case OMNI_DTYPE_F32: memcpy(&f, p, 4); return f;
    case OMNI_DTYPE_F64: memcpy(&g, p, 8); return g;
    case OMNI_DTYPE_I64: memcpy(&l, p, 8); return (double)l;
    case OMNI_DTYPE_I32: memcpy(&i, p, 4); return i;
    case OMNI_DTYPE_U8: return *p;
    }
    ck_abort_msg("unexpected dtype %d", t->dtype);
    return 0;
}

/* All values in row-major order; returns the count. */
static size_t values(const struct omni_tensor *t, double *out, size_t cap)
{
    int64_t n = omni_tensor_numel(t), idx[OMNI_MAX_DIMS] = {0};
    ck_assert_int_le(n, (int64_t)cap);
    for (int64_t k = 0; k < n; k++) {
        out[k] = elem_at(t, idx);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return (size_t)n;
}

static struct omni_weights *open_ok(const char *path)
{
    struct omni_error err = {0};
    struct omni_weights *w = NULL;
    int rc = omni_weights_open(&w, path, &err);
    ck_assert_msg(rc == OMNI_OK, "open %s: %s", path, err.msg);
    return w;
}

static int open_status(const char *path, struct omni_error *err)
{
    struct omni_weights *w = NULL;
    omni_error_clear(err);
    int rc = omni_weights_open(&w, path, err);
    if (rc == OMNI_OK)
        omni_weights_close(w);
    return rc;
}

static cJSON *expected_json(void)
{
    size_t n;
    unsigned char *p = read_all(fixture("expected.json"), &n);
    cJSON *j = cJSON_ParseWithLength((const char *)p, n);
    free(p);
    ck_assert(j != NULL);
    return j;
}

static int dtype_from_torch(const char *s)
{
    if (!strcmp(s, "float16")) return OMNI_DTYPE_F16;
    if (!strcmp(s, "bfloat16")) return OMNI_DTYPE_BF16;
    if (!strcmp(s, "float32")) return OMNI_DTYPE_F32;
    if (!strcmp(s, "float64")) return OMNI_DTYPE_F64;
    if (!strcmp(s, "int64")) return OMNI_DTYPE_I64;
    ck_abort_msg("unexpected dtype %s in expected.json", s);
    return 0;
}

/* Check one tensor of w (prefix + key) against its expected.json record. */
static void check_tensor(struct omni_weights *w, const char *prefix, const char *key,
                         const cJSON *exp)
{
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_msg(omni_weights_get(w, prefix, key, &t, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(omni_buffer_kind(t.buf), OMNI_BUFFER_MMAP);
    ck_assert(omni_buffer_is_readonly(t.buf));
    ck_assert_int_eq(t.device.type, OMNI_DEVICE_CPU);
    ck_assert_int_eq(t.dtype,
                     dtype_from_torch(cJSON_GetObjectItem(exp, "dtype")->valuestring));
    const cJSON *shape = cJSON_GetObjectItem(exp, "shape"), *stride = cJSON_GetObjectItem(exp, "stride");
    ck_assert_int_eq(t.ndim, cJSON_GetArraySize(shape));
    for (int d = 0; d < t.ndim; d++) {
        ck_assert_int_eq(t.shape[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
        ck_assert_int_eq(t.strides[d], (int64_t)cJSON_GetArrayItem(stride, d)->valuedouble);
    }
    struct omni_weight_info info;
    ck_assert_int_eq(omni_weights_info(w, prefix, key, &info, &err), OMNI_OK);
    ck_assert_int_eq(info.offset, t.offset);
    ck_assert_int_eq(info.dtype, t.dtype);
    const cJSON *vals = cJSON_GetObjectItem(exp, "values");
    double got[64];
    size_t n = values(&t, got, 64);
    ck_assert_int_eq(n, cJSON_GetArraySize(vals));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == cJSON_GetArrayItem(vals, (int)i)->valuedouble,
                      "%s%s[%zu] = %g, expected %g", prefix ? prefix : "", key, i, got[i],
                      cJSON_GetArrayItem(vals, (int)i)->valuedouble);
    omni_tensor_release(&t);
}

/* Check every tensor listed for `file` in expected.json, in file order. */
static void check_fixture(const char *file, const char *prefix)
{
    long live = omni_buffer_live_count();
    cJSON *j = expected_json();
    const cJSON *tensors = cJSON_GetObjectItem(cJSON_GetObjectItem(j, file), "tensors");
    struct omni_weights *w = open_ok(fixture(file));
    ck_assert_int_eq(omni_weights_format(w), OMNI_WEIGHTS_PTH);
    ck_assert_int_eq(omni_weights_count(w), cJSON_GetArraySize(tensors));
    size_t i = 0;
    for (const cJSON *e = tensors->child; e; e = e->next, i++) {
        char full[256];
        snprintf(full, sizeof full, "%s%s", prefix ? prefix : "", e->string);
        ck_assert_str_eq(omni_weights_key(w, i), full);
        check_tensor(w, prefix, e->string, e);
    }
    ck_assert_ptr_null(omni_weights_key(w, i));
    omni_weights_close(w);
    cJSON_Delete(j);
    TU_ASSERT_NO_LEAK(live);
}

/* ---- a torch.save-style zip and pickle builder ------------------------------------------ */

struct zb {
    unsigned char *p;
    size_t n, cap;
    struct { char name[160]; uint64_t lho, size; int method; } e[32];
    int ne;
};

static void zb_put(struct zb *z, const void *d, size_t n)
{
    if (z->n + n > z->cap) {
        z->cap = (z->n + n) * 2 + 1024;
        z->p = realloc(z->p, z->cap);
        ck_assert(z->p != NULL);
    }
    memcpy(z->p + z->n, d, n);
    z->n += n;
}
static void zb_u16(struct zb *z, uint32_t v) { unsigned char b[2] = {v & 255, (v >> 8) & 255}; zb_put(z, b, 2); }
static void zb_u32(struct zb *z, uint32_t v) { zb_u16(z, v & 0xFFFF); zb_u16(z, v >> 16); }
static void zb_u64(struct zb *z, uint64_t v) { zb_u32(z, (uint32_t)v); zb_u32(z, (uint32_t)(v >> 32)); }

/* Local header padded (extra field "FB") so the data is 64-byte aligned, as PyTorch does. */
static void zb_add(struct zb *z, const char *name, const void *data, size_t n, int method)
{
    ck_assert_int_lt(z->ne, 32);
    size_t nl = strlen(name);
    uint64_t lho = z->n;
    size_t pad = (64 - (lho + 30 + nl + 4) % 64) % 64;
    zb_put(z, "PK\3\4", 4);
    zb_u16(z, 20), zb_u16(z, 0x0808), zb_u16(z, (uint32_t)method), zb_u16(z, 0), zb_u16(z, 0);
    zb_u32(z, 0), zb_u32(z, 0), zb_u32(z, 0);
    zb_u16(z, (uint32_t)nl), zb_u16(z, (uint32_t)(pad + 4));
    zb_put(z, name, nl);
    zb_put(z, "FB", 2);
    zb_u16(z, (uint32_t)pad);
    for (size_t i = 0; i < pad; i++)
        zb_put(z, "Z", 1);
    ck_assert_int_eq(z->n % 64, 0);
    zb_put(z, data, n);
    zb_put(z, "PK\7\10", 4);
    zb_u32(z, 0), zb_u32(z, (uint32_t)n), zb_u32(z, (uint32_t)n);
    snprintf(z->e[z->ne].name, sizeof z->e[z->ne].name, "%s", name);
    z->e[z->ne].lho = lho;
    z->e[z->ne].size = n;
    z->e[z->ne].method = method;
    z->ne++;
}

/* Central directory; zip64 = 1 saturates every 32-bit field so only the zip64 records work. */
static void zb_finish(struct zb *z, int zip64)
{
    uint64_t cd = z->n;
    for (int i = 0; i < z->ne; i++) {
        size_t nl = strlen(z->e[i].name);
        zb_put(z, "PK\1\2", 4);
        zb_u16(z, 0x031e), zb_u16(z, 20), zb_u16(z, 0x0808), zb_u16(z, (uint32_t)z->e[i].method);
        zb_u16(z, 0), zb_u16(z, 0), zb_u32(z, 0);
        zb_u32(z, zip64 ? 0xFFFFFFFFu : (uint32_t)z->e[i].size);
        zb_u32(z, zip64 ? 0xFFFFFFFFu : (uint32_t)z->e[i].size);
        zb_u16(z, (uint32_t)nl), zb_u16(z, zip64 ? 28 : 0), zb_u16(z, 0);
        zb_u16(z, 0), zb_u16(z, 0), zb_u32(z, 0);
        zb_u32(z, zip64 ? 0xFFFFFFFFu : (uint32_t)z->e[i].lho);
        zb_put(z, z->e[i].name, nl);
        if (zip64) {
            zb_u16(z, 1), zb_u16(z, 24);
            zb_u64(z, z->e[i].size), zb_u64(z, z->e[i].size), zb_u64(z, z->e[i].lho);
        }
    }
    uint64_t cd_size = z->n - cd;
    uint64_t z64 = z->n;
    zb_put(z, "PK\6\6", 4);
    zb_u64(z, 44), zb_u16(z, 0x031e), zb_u16(z, 45), zb_u32(z, 0), zb_u32(z, 0);
    zb_u64(z, (uint64_t)z->ne), zb_u64(z, (uint64_t)z->ne), zb_u64(z, cd_size), zb_u64(z, cd);
    zb_put(z, "PK\6\7", 4);
    zb_u32(z, 0), zb_u64(z, z64), zb_u32(z, 1);
    zb_put(z, "PK\5\6", 4);
    zb_u16(z, 0), zb_u16(z, 0);
    zb_u16(z, zip64 ? 0xFFFF : (uint32_t)z->ne), zb_u16(z, zip64 ? 0xFFFF : (uint32_t)z->ne);
    zb_u32(z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size), zb_u32(z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd);
    zb_u16(z, 0);
}

struct pb {
    unsigned char p[8192];
    size_t n;
};
static void pb_raw(struct pb *b, const void *d, size_t n)
{
    ck_assert_int_le(b->n + n, sizeof b->p);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void pb_op(struct pb *b, unsigned op) { unsigned char c = (unsigned char)op; pb_raw(b, &c, 1); }
static void pb_str(struct pb *b, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    unsigned char h[5] = {'X', n & 255, (n >> 8) & 255, (n >> 16) & 255, n >> 24};
    pb_raw(b, h, 5);
    pb_raw(b, s, n);
}
static void pb_int(struct pb *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    unsigned char h[5] = {'J', u & 255, (u >> 8) & 255, (u >> 16) & 255, u >> 24};
    pb_raw(b, h, 5);
}
static void pb_global(struct pb *b, const char *mod, const char *name)
{
    pb_op(b, 'c');
    pb_raw(b, mod, strlen(mod));
    pb_op(b, '\n');
    pb_raw(b, name, strlen(name));
    pb_op(b, '\n');
}
/* _rebuild_tensor_v2((storage, cls, key, 'cpu', numel), offset, shape, strides, False, OrderedDict()) */
static void pb_tensor(struct pb *b, const char *cls, const char *reckey, int numel, int offset,
                      int ndim, const int *shape, const int *strides)
{
    pb_global(b, "torch._utils", "_rebuild_tensor_v2");
    pb_op(b, '(');
    pb_op(b, '(');
    pb_str(b, "storage");
    pb_global(b, "torch", cls);
    pb_str(b, reckey);
    pb_str(b, "cpu");
    pb_int(b, numel);
    pb_op(b, 't');
    pb_op(b, 'Q');
    pb_int(b, offset);
    pb_op(b, '(');
    for (int i = 0; i < ndim; i++)
        pb_int(b, shape[i]);
    pb_op(b, 't');
    pb_op(b, '(');
    for (int i = 0; i < ndim; i++)
        pb_int(b, strides[i]);
    pb_op(b, 't');
    pb_op(b, 0x89);
    pb_global(b, "collections", "OrderedDict");
    pb_op(b, ')');
    pb_op(b, 'R');
    pb_op(b, 't');
    pb_op(b, 'R');
}
static void pb_begin_odict(struct pb *b)
{
    pb_raw(b, "\x80\x02", 2);
    pb_global(b, "collections", "OrderedDict");
    pb_op(b, ')');
    pb_op(b, 'R');
    pb_op(b, '(');
}
static void pb_end_odict(struct pb *b) { pb_raw(b, "u.", 2); }

/* A .pth with data.pkl and one f32 storage data/0 of 6 floats 1..6. */
static void write_pth(const char *path, const char *prefix, const struct pb *pkl, int zip64)
{
    static const float six[6] = {1, 2, 3, 4, 5, 6};
    struct zb z = {0};
    char name[160];
    snprintf(name, sizeof name, "%s/data.pkl", prefix);
    zb_add(&z, name, pkl->p, pkl->n, 0);
    snprintf(name, sizeof name, "%s/data/0", prefix);
    zb_add(&z, name, six, sizeof six, 0);
    snprintf(name, sizeof name, "%s/version", prefix);
    zb_add(&z, name, "3\n", 2, 0);
    zb_finish(&z, zip64);
    write_all(path, z.p, z.n);
    free(z.p);
}

/* ---- torch.save fixtures ------------------------------------------------------------------ */

START_TEST(test_mixed_fixture_matches_expected)
{
    check_fixture("tensors_mixed.pth", NULL);
}
END_TEST

START_TEST(test_module_state_dict_matches_expected)
{
    check_fixture("module_state_dict_f16.pth", NULL);
}
END_TEST

START_TEST(test_nested_checkpoint_flattens_model_keys)
{
    /* {"model": <module_state_dict_f16>, "steps": 100}: keys "model.*", the int leaf skipped */
    long live = omni_buffer_live_count();
    cJSON *j = expected_json();
    const cJSON *tensors =
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "module_state_dict_f16.pth"), "tensors");
    struct omni_weights *w = open_ok(fixture("checkpoint_nested.pth"));
    ck_assert_int_eq(omni_weights_count(w), 4);
    size_t i = 0;
    for (const cJSON *e = tensors->child; e; e = e->next, i++) {
        char full[128];
        snprintf(full, sizeof full, "model.%s", e->string);
        ck_assert_str_eq(omni_weights_key(w, i), full);
        check_tensor(w, "model.", e->string, e); /* prefix lookup */
        check_tensor(w, NULL, full, e);          /* full key */
        ck_assert(!omni_weights_has(w, NULL, e->string));
    }
    ck_assert(!omni_weights_has(w, NULL, "steps"));
    ck_assert(!omni_weights_has(w, "", "model"));
    omni_weights_close(w);
    cJSON_Delete(j);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* float16(v) for a non-negative integer v: round to nearest even, infinity past 65519. */
static double ref_round_f16(double v)
{
    if (v >= 65520)
        return INFINITY;
    if (v < 2048)
        return v;
    int e = (int)floor(log2(v));
    double q = ldexp(1, e - 10), r = v / q, fl = floor(r), frac = r - fl;
    if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2) == 1))
        fl += 1;
    return fl * q;
}

START_TEST(test_many_tensors_long_binput_and_parameter)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_ok(fixture("many_tensors.pth"));
    ck_assert_int_eq(omni_weights_count(w), 302);
    struct omni_error err = {0};
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "layers.%d.w", i);
        ck_assert_str_eq(omni_weights_key(w, (size_t)i), key);
        struct omni_tensor t;
        ck_assert_int_eq(omni_weights_get(w, "layers.", key + 7, &t, &err), OMNI_OK);
        ck_assert_int_eq(t.dtype, OMNI_DTYPE_F16);
        ck_assert_int_eq(t.ndim, 1);
        ck_assert_int_eq(t.shape[0], 2);
        double v[2];
        values(&t, v, 2);
        ck_assert(v[0] == i && v[1] == -i);
        omni_tensor_release(&t);
    }
    ck_assert_str_eq(omni_weights_key(w, 300), "big_f16");
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "big_f16", &t, &err), OMNI_OK);
    ck_assert_int_eq(t.shape[0], 70000);
    const uint16_t *h = omni_tensor_data(&t);
    for (int i = 0; i < 70000; i++)
        ck_assert_msg(ref_f16(h[i]) == ref_round_f16(i), "big_f16[%d] = %g, expected %g", i,
                      ref_f16(h[i]), ref_round_f16(i));
    omni_tensor_release(&t);
    /* nn.Parameter: _rebuild_parameter around _rebuild_tensor_v2 */
    ck_assert_str_eq(omni_weights_key(w, 301), "param_requires_grad");
    ck_assert_int_eq(omni_weights_get(w, NULL, "param_requires_grad", &t, &err), OMNI_OK);
    double v[2];
    values(&t, v, 2);
    ck_assert(t.dtype == OMNI_DTYPE_F32 && v[0] == 3.0 && v[1] == 4.0);
    omni_tensor_release(&t);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_views_share_one_storage)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_ok(fixture("tensors_mixed.pth"));
    struct omni_error err = {0};
    struct omni_tensor base, vt, row;
    ck_assert_int_eq(omni_weights_get(w, NULL, "base_3x4", &base, &err), OMNI_OK);
    ck_assert_int_eq(omni_weights_get(w, NULL, "view_t", &vt, &err), OMNI_OK);
    ck_assert_int_eq(omni_weights_get(w, NULL, "view_row1", &row, &err), OMNI_OK);
    /* one mapping, no copies: the same bytes seen three ways */
    ck_assert_ptr_eq(omni_tensor_data(&base), omni_tensor_data(&vt));
    ck_assert_ptr_eq((const char *)omni_tensor_data(&base) + 4 * sizeof(float),
                     omni_tensor_data(&row));
    ck_assert(!omni_tensor_is_contiguous(&vt));
    ck_assert_int_eq(vt.strides[0], 1);
    ck_assert_int_eq(vt.strides[1], 4);
    /* the spec's table: data/4 is the fifth record, data at file offset 1280 */
    ck_assert_int_eq(base.offset, 1280);
    ck_assert_int_eq(row.offset, 1280 + 16);
    /* a load gives a contiguous copy of the transpose */
    struct omni_tensor c;
    int64_t shape[2] = {4, 3};
    ck_assert_int_eq(omni_weights_load(w, NULL, "view_t", OMNI_DTYPE_F32, 2, shape, &c, &err),
                     OMNI_OK);
    ck_assert(omni_tensor_is_contiguous(&c));
    ck_assert_int_eq(omni_buffer_kind(c.buf), OMNI_BUFFER_HOST);
    const float *f = omni_tensor_data(&c);
    static const float want[12] = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
    for (int i = 0; i < 12; i++)
        ck_assert(f[i] == want[i]);
    omni_tensor_release(&c);
    omni_tensor_release(&base);
    omni_tensor_release(&vt);
    omni_tensor_release(&row);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_int64_scalar_is_zero_dim)
{
    struct omni_weights *w = open_ok(fixture("tensors_mixed.pth"));
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "i64_scalar", &t, &err), OMNI_OK);
    ck_assert_int_eq(t.ndim, 0);
    ck_assert_int_eq(t.dtype, OMNI_DTYPE_I64);
    ck_assert_int_eq(omni_tensor_numel(&t), 1);
    int64_t v;
    memcpy(&v, omni_tensor_data(&t), 8);
    ck_assert_int_eq(v, 7);
    omni_tensor_release(&t);
    struct omni_tensor c;
    ck_assert_int_eq(omni_weights_load(w, NULL, "i64_scalar", OMNI_DTYPE_I64, 0, NULL, &c, &err),
                     OMNI_OK);
    ck_assert_int_eq(c.ndim, 0);
    ck_assert_int_eq(*(int64_t *)omni_tensor_data(&c), 7);
    omni_tensor_release(&c);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_load_converts_f16_and_bf16_exactly)
{
    long live = omni_buffer_live_count();
    /* every one of the 65536 bit patterns, as F16 and as BF16 */
    struct omni_error err = {0};
    struct omni_tensor h, b;
    ck_assert_int_eq(omni_tensor_alloc_host(&h, OMNI_DTYPE_F16, 1, (int64_t)65536), OMNI_OK);
    ck_assert_int_eq(omni_tensor_alloc_host(&b, OMNI_DTYPE_BF16, 2, (int64_t)256, (int64_t)256),
                     OMNI_OK);
    uint16_t *hp = omni_tensor_data(&h), *bp = omni_tensor_data(&b);
    for (uint32_t i = 0; i < 65536; i++)
        hp[i] = bp[i] = (uint16_t)i;
    const char *names[2] = {"all_f16", "all_bf16"};
    struct omni_tensor ts[2] = {h, b};
    const char *path = tmp("all16.safetensors");
    ck_assert_msg(omni_safetensors_write(path, 2, names, ts, &err) == OMNI_OK, "%s", err.msg);
    omni_tensor_release(&h);
    omni_tensor_release(&b);
    struct omni_weights *w = open_ok(path);
    struct omni_tensor f;
    int64_t shape1[1] = {65536}, shape2[2] = {256, 256};
    ck_assert_int_eq(omni_weights_load(w, NULL, "all_f16", OMNI_DTYPE_F32, 1, shape1, &f, &err),
                     OMNI_OK);
    const float *fp = omni_tensor_data(&f);
    for (uint32_t i = 0; i < 65536; i++) {
        double r = ref_f16((uint16_t)i);
        if (isnan(r))
            ck_assert_msg(isnan(fp[i]), "f16 0x%04x should give NaN", i);
        else
            ck_assert_msg(fp[i] == r, "f16 0x%04x: got %.9g, expected %.9g", i, fp[i], r);
    }
    omni_tensor_release(&f);
    ck_assert_int_eq(omni_weights_load(w, "all_", "bf16", OMNI_DTYPE_F32, 2, shape2, &f, &err),
                     OMNI_OK);
    fp = omni_tensor_data(&f);
    for (uint32_t i = 0; i < 65536; i++) {
        uint32_t want = i << 16, got;
        memcpy(&got, &fp[i], 4);
        double r = ref_bf16((uint16_t)i);
        if (isnan(r))
            ck_assert_msg(isnan(fp[i]), "bf16 0x%04x should give NaN", i);
        else
            ck_assert_msg(got == want, "bf16 0x%04x: got bits 0x%08x", i, got);
    }
    omni_tensor_release(&f);
    omni_weights_close(w);
    /* and the fixture values through load, against expected.json */
    w = open_ok(fixture("tensors_mixed.pth"));
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    ck_assert_int_eq(omni_weights_load(w, NULL, "f16_2x3", OMNI_DTYPE_F32, 2, s23, &f, &err), 0);
    static const float want16[6] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.5f};
    ck_assert_mem_eq(omni_tensor_data(&f), want16, sizeof want16);
    omni_tensor_release(&f);
    ck_assert_int_eq(omni_weights_load(w, NULL, "bf16_vec", OMNI_DTYPE_F32, 1, s3, &f, &err), 0);
    static const float wantbf[3] = {1.0f, -0.5f, 3.0f};
    ck_assert_mem_eq(omni_tensor_data(&f), wantbf, sizeof wantbf);
    omni_tensor_release(&f);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_load_shape_mismatch_names_key_and_shapes)
{
    struct omni_weights *w = open_ok(fixture("tensors_mixed.pth"));
    struct omni_error err = {0};
    struct omni_tensor t;
    int64_t wrong[2] = {4, 3};
    long live = omni_buffer_live_count();
    ck_assert_int_eq(omni_weights_load(w, NULL, "base_3x4", OMNI_DTYPE_F32, 2, wrong, &t, &err),
                     OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "'base_3x4'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[3,4]"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[4,3]"));
    ck_assert_ptr_nonnull(strstr(err.msg, "tensors_mixed.pth"));
    ck_assert_ptr_null(t.buf);
    int64_t rank1[1] = {12};
    ck_assert_int_eq(omni_weights_load(w, NULL, "base_3x4", OMNI_DTYPE_F32, 1, rank1, &t, &err),
                     OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "[12]"));
    TU_ASSERT_NO_LEAK(live);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_missing_key_names_key_and_file)
{
    struct omni_weights *w = open_ok(fixture("checkpoint_nested.pth"));
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, "model.", "2.weight", &t, &err), OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "'model.2.weight'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "checkpoint_nested.pth"));
    struct omni_weight_info info;
    ck_assert_int_eq(omni_weights_info(w, NULL, "nope", &info, &err), OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "'nope'"));
    int64_t s[1] = {3};
    ck_assert_int_eq(omni_weights_load(w, NULL, "x", OMNI_DTYPE_F32, 1, s, &t, &err),
                     OMNI_ENOTFOUND);
    ck_assert_int_eq(omni_weights_has(w, "model.", "0.bias"), 1);
    ck_assert_int_eq(omni_weights_has(w, "model", "0.bias"), 0);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_tensors_outlive_close)
{
    long live = omni_buffer_live_count();
    struct omni_weights *w = open_ok(fixture("tensors_mixed.pth"));
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "f32_vec", &t, &err), OMNI_OK);
    omni_weights_close(w); /* the mapping must stay while t references it */
    ck_assert_int_eq(omni_buffer_live_count(), live + 1);
    double v[3];
    values(&t, v, 3);
    ck_assert(v[0] == 1.5 && v[1] == -2.0 && v[2] == 3.25);
    omni_tensor_release(&t);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- more torch.save layouts --------------------------------------------------------------- */

START_TEST(test_protocol4_pickle)
{
    struct omni_weights *w = open_ok(local_fixture("weights_proto4.pth"));
    ck_assert_int_eq(omni_weights_count(w), 2);
    struct omni_error err = {0};
    struct omni_tensor t;
    double v[4];
    ck_assert_int_eq(omni_weights_get(w, NULL, "a", &t, &err), OMNI_OK);
    ck_assert(t.dtype == OMNI_DTYPE_F32 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 2);
    values(&t, v, 4);
    ck_assert(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
    omni_tensor_release(&t);
    ck_assert_int_eq(omni_weights_get(w, NULL, "b", &t, &err), OMNI_OK);
    values(&t, v, 3);
    ck_assert(t.dtype == OMNI_DTYPE_F16 && v[0] == 0.5 && v[1] == -1 && v[2] == 2);
    omni_tensor_release(&t);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_training_checkpoint_with_hyperparameters)
{
    /* BINFLOAT, LONG1, lists and strings are skipped; a tied tensor appears under both keys */
    struct omni_weights *w = open_ok(local_fixture("weights_hparams.pth"));
    ck_assert_int_eq(omni_weights_count(w), 4);
    ck_assert_str_eq(omni_weights_key(w, 0), "state_dict.w");
    ck_assert_str_eq(omni_weights_key(w, 1), "state_dict.tied");
    ck_assert_str_eq(omni_weights_key(w, 2), "state_dict.half_t");
    ck_assert_str_eq(omni_weights_key(w, 3), "short");
    struct omni_error err = {0};
    struct omni_tensor a, b;
    ck_assert_int_eq(omni_weights_get(w, "state_dict.", "w", &a, &err), OMNI_OK);
    ck_assert_int_eq(omni_weights_get(w, "state_dict.", "tied", &b, &err), OMNI_OK);
    ck_assert_ptr_eq(omni_tensor_data(&a), omni_tensor_data(&b));
    double v[6];
    values(&a, v, 6);
    for (int i = 0; i < 6; i++)
        ck_assert(v[i] == i / 4.0);
    omni_tensor_release(&a);
    omni_tensor_release(&b);
    ck_assert_int_eq(omni_weights_get(w, "state_dict.", "half_t", &a, &err), OMNI_OK);
    ck_assert(a.shape[0] == 3 && a.shape[1] == 2 && a.strides[0] == 1 && a.strides[1] == 3);
    values(&a, v, 6);
    static const double want[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++)
        ck_assert(v[i] == want[i]);
    omni_tensor_release(&a);
    /* int16 is listed with its dtype, but cannot be loaded */
    ck_assert_str_eq(omni_weights_dtype_str(w, 3), "i16");
    struct omni_weight_info info;
    ck_assert_int_eq(omni_weights_info(w, NULL, "short", &info, &err), OMNI_EUNSUPPORTED);
    ck_assert(info.dtype == OMNI_DTYPE_INVALID && info.ndim == 1 && info.shape[0] == 2);
    ck_assert_int_eq(omni_weights_get(w, NULL, "short", &a, &err), OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "'short'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "i16"));
    omni_weights_close(w);
}
END_TEST

START_TEST(test_zip64_records_are_used)
{
    struct pb pkl = {0};
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    pb_tensor(&pkl, "FloatStorage", "0", 6, 0, 2, (int[]){2, 3}, (int[]){3, 1});
    pb_end_odict(&pkl);
    const char *path = tmp("zip64.pth");
    write_pth(path, "archive", &pkl, 1);
    struct omni_weights *w = open_ok(path);
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "w", &t, &err), OMNI_OK);
    double v[6];
    values(&t, v, 6);
    for (int i = 0; i < 6; i++)
        ck_assert(v[i] == i + 1);
    ck_assert_int_eq(t.offset % 64, 0);
    omni_tensor_release(&t);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_torch2_layout_and_unknown_records)
{
    /* newer torch: version/byteorder/serialization_id after the data, prefix "archive" */
    struct pb pkl = {0};
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    /* storage offset as LONG1 (8 bytes) = 2, a view of the last 4 floats */
    pb_global(&pkl, "torch._utils", "_rebuild_tensor_v2");
    pb_raw(&pkl, "((", 2);
    pb_str(&pkl, "storage");
    pb_global(&pkl, "torch", "FloatStorage");
    pb_str(&pkl, "0");
    pb_str(&pkl, "cuda:0");
    pb_raw(&pkl, "K\x06tQ", 4);
    pb_raw(&pkl, "\x8a\x08\x02\x00\x00\x00\x00\x00\x00\x00", 10);
    pb_raw(&pkl, "K\x04\x85K\x01\x85\x88", 7);
    pb_global(&pkl, "collections", "OrderedDict");
    pb_raw(&pkl, ")RtR", 4);
    pb_end_odict(&pkl);
    static const float six[6] = {1, 2, 3, 4, 5, 6};
    struct zb z = {0};
    zb_add(&z, "archive/data.pkl", pkl.p, pkl.n, 0);
    zb_add(&z, "archive/data/0", six, sizeof six, 0);
    zb_add(&z, "archive/version", "3\n", 2, 0);
    zb_add(&z, "archive/byteorder", "little", 6, 0);
    zb_add(&z, "archive/.data/serialization_id", "0123456789", 10, 0);
    zb_add(&z, "archive/something_new", "?", 1, 0);
    zb_finish(&z, 0);
    const char *path = tmp("torch2.pth");
    write_all(path, z.p, z.n);
    struct omni_weights *w = open_ok(path);
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "w", &t, &err), OMNI_OK);
    double v[4];
    values(&t, v, 4);
    ck_assert(v[0] == 3 && v[1] == 4 && v[2] == 5 && v[3] == 6);
    omni_tensor_release(&t);
    omni_weights_close(w);

    /* the same with byteorder "big" is refused */
    free(z.p);
    memset(&z, 0, sizeof z);
    zb_add(&z, "archive/data.pkl", pkl.p, pkl.n, 0);
    zb_add(&z, "archive/data/0", six, sizeof six, 0);
    zb_add(&z, "archive/version", "3\n", 2, 0);
    zb_add(&z, "archive/byteorder", "big", 3, 0);
    zb_finish(&z, 0);
    write_all(path, z.p, z.n);
    ck_assert_int_eq(open_status(path, &err), OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "byteorder"));
    free(z.p);
}
END_TEST

START_TEST(test_rejects_malformed_pth)
{
    struct omni_error err = {0};
    const char *path = tmp("bad.pth");
    static const float six[6] = {1, 2, 3, 4, 5, 6};
    struct pb pkl = {0};
    struct zb z = {0};

    /* a view past the end of its storage */
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    pb_tensor(&pkl, "FloatStorage", "0", 6, 1, 2, (int[]){2, 3}, (int[]){3, 1});
    pb_end_odict(&pkl);
    write_pth(path, "x", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "x/data/0"));
    ck_assert_ptr_nonnull(strstr(err.msg, "bad.pth"));

    /* strides that reach past the storage */
    pkl.n = 0;
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    pb_tensor(&pkl, "FloatStorage", "0", 6, 0, 2, (int[]){2, 3}, (int[]){1, 3});
    pb_end_odict(&pkl);
    write_pth(path, "x", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);

    /* a storage that claims more elements than its record holds */
    pkl.n = 0;
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    pb_tensor(&pkl, "DoubleStorage", "0", 6, 0, 1, (int[]){6}, (int[]){1});
    pb_end_odict(&pkl);
    write_pth(path, "x", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);

    /* a missing record */
    pkl.n = 0;
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    pb_tensor(&pkl, "FloatStorage", "7", 6, 0, 1, (int[]){6}, (int[]){1});
    pb_end_odict(&pkl);
    write_pth(path, "x", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "'x/data/7' is missing"));

    /* a dict that contains itself: an error, not a hang */
    pkl.n = 0;
    pb_raw(&pkl, "\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.", 15);
    write_pth(path, "x", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);

    /* an unknown opcode, a memo entry never stored, a pickle without STOP */
    static const char *const bad[] = {"\x80\x02}B", "\x80\x02h\x05.", "\x80\x02}"};
    static const size_t badn[] = {4, 5, 3};
    for (int i = 0; i < 3; i++) {
        pkl.n = 0;
        pb_raw(&pkl, bad[i], badn[i]);
        write_pth(path, "x", &pkl, 0);
        ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
        ck_assert_ptr_nonnull(strstr(err.msg, "data.pkl offset"));
    }

    /* a deflated entry */
    pkl.n = 0;
    pb_begin_odict(&pkl);
    pb_end_odict(&pkl);
    zb_add(&z, "x/data.pkl", pkl.p, pkl.n, 8);
    zb_add(&z, "x/version", "3\n", 2, 0);
    zb_finish(&z, 0);
    write_all(path, z.p, z.n);
    ck_assert_int_eq(open_status(path, &err), OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "x/data.pkl"));
    free(z.p);

    /* no version record */
    memset(&z, 0, sizeof z);
    zb_add(&z, "x/data.pkl", pkl.p, pkl.n, 0);
    zb_add(&z, "x/data/0", six, sizeof six, 0);
    zb_finish(&z, 0);
    write_all(path, z.p, z.n);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "version"));
    free(z.p);

    /* an empty but valid state dict is fine */
    write_pth(path, "x", &pkl, 0);
    struct omni_weights *w = open_ok(path);
    ck_assert_int_eq(omni_weights_count(w), 0);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_broadcast_view_needs_expected_shape)
{
    /* torch's expand(): stride 0 shows 6 stored floats as 1000 rows */
    struct pb pkl = {0};
    pb_begin_odict(&pkl);
    pb_str(&pkl, "rows");
    pb_tensor(&pkl, "FloatStorage", "0", 6, 0, 2, (int[]){1000, 6}, (int[]){0, 1});
    pb_end_odict(&pkl);
    const char *path = tmp("expand.pth");
    write_pth(path, "expand", &pkl, 0);
    struct omni_weights *w = open_ok(path);
    struct omni_error err = {0};
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "rows", &t, &err), OMNI_OK);
    int64_t idx[2] = {999, 5};
    ck_assert(elem_at(&t, idx) == 6.0);
    omni_tensor_release(&t);
    /* without an expected shape a file could make load() allocate anything */
    ck_assert_int_eq(omni_weights_load(w, NULL, "rows", OMNI_DTYPE_F32, 0, NULL, &t, &err),
                     OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "'rows'"));
    int64_t shape[2] = {1000, 6};
    ck_assert_int_eq(omni_weights_load(w, NULL, "rows", OMNI_DTYPE_F32, 2, shape, &t, &err),
                     OMNI_OK);
    const float *f = omni_tensor_data(&t);
    ck_assert(f[0] == 1.0f && f[6 * 999 + 5] == 6.0f);
    omni_tensor_release(&t);
    omni_weights_close(w);
}
END_TEST

/* ---- malicious pickles ------------------------------------------------------------------------ */

static void assert_refused(const struct pb *pkl, const char *marker, const char *global,
                           long offset)
{
    const char *path = tmp("evil.pth");
    write_pth(path, "evil", pkl, 0);
    struct omni_error err = {0};
    long live = omni_buffer_live_count();
    ck_assert_int_eq(open_status(path, &err), OMNI_EREFUSED);
    TU_ASSERT_NO_LEAK(live);
    char want[1024];
    snprintf(want, sizeof want,
             "%s: data.pkl offset %ld: global '%s' is not allowed (only tensors and dicts can be "
             "loaded)",
             path, offset, global);
    ck_assert_str_eq(err.msg, want);
    struct stat st;
    ck_assert_msg(stat(marker, &st) != 0, "%s exists: the pickle was executed", marker);
}

START_TEST(test_refuses_os_system_pickles)
{
    char marker[512], cmd[600];
    snprintf(marker, sizeof marker, "%s/pwned", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "touch %s", marker);
    static const char *const mods[2] = {"posix", "os"};
    for (int i = 0; i < 2; i++) {
        /* what pickle.dumps(obj, 2) writes for __reduce__ = (os.system, (cmd,)) */
        struct pb pkl = {0};
        pb_raw(&pkl, "\x80\x02", 2);
        pb_global(&pkl, mods[i], "system");
        pb_raw(&pkl, "q\x00", 2);
        pb_str(&pkl, cmd);
        pb_raw(&pkl, "q\x01\x85q\x02Rq\x03.", 8);
        char g[32];
        snprintf(g, sizeof g, "%s.system", mods[i]);
        assert_refused(&pkl, marker, g, 2);
    }
    /* builtins.eval through protocol-4 STACK_GLOBAL */
    struct pb pkl = {0};
    pb_raw(&pkl, "\x80\x04\x8c\x08" "builtins\x94\x8c\x04" "eval\x94\x93\x94", 22);
    char code[700];
    snprintf(code, sizeof code, "__import__('os').system('%s')", cmd);
    pb_str(&pkl, code);
    pb_raw(&pkl, "\x85R.", 3);
    assert_refused(&pkl, marker, "builtins.eval", 20); /* the STACK_GLOBAL opcode */
    /* hidden after a legitimate tensor, inside the state dict */
    pkl.n = 0;
    pb_begin_odict(&pkl);
    pb_str(&pkl, "w");
    pb_tensor(&pkl, "FloatStorage", "0", 6, 0, 1, (int[]){6}, (int[]){1});
    pb_str(&pkl, "evil");
    long at = (long)pkl.n;
    pb_global(&pkl, "posix", "system");
    pb_str(&pkl, cmd);
    pb_raw(&pkl, "\x85R", 2);
    pb_end_odict(&pkl);
    assert_refused(&pkl, marker, "posix.system", at);
}
END_TEST

START_TEST(test_refuses_object_building_opcodes_and_storage_calls)
{
    struct omni_error err = {0};
    const char *path = tmp("evil2.pth");
    /* NEWOBJ on an allowed class, INST with an inline global */
    static const char *const bad[] = {"\x80\x02" "ccollections\nOrderedDict\n)\x81.",
                                      "\x80\x02(iposix\nsystem\n."};
    for (int i = 0; i < 2; i++) {
        struct pb pkl = {0};
        pb_raw(&pkl, bad[i], strlen(bad[i]));
        write_pth(path, "e", &pkl, 0);
        ck_assert_int_eq(open_status(path, &err), OMNI_EREFUSED);
        ck_assert_ptr_nonnull(strstr(err.msg, "not allowed"));
    }
    /* calling a storage class */
    struct pb pkl = {0};
    pb_raw(&pkl, "\x80\x02", 2);
    pb_global(&pkl, "torch", "FloatStorage");
    pb_raw(&pkl, ")R.", 3);
    write_pth(path, "e", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EREFUSED);
    ck_assert_ptr_nonnull(strstr(err.msg, "torch.FloatStorage"));
    /* _rebuild_tensor_v3 and similar torch internals are not on the list */
    pkl.n = 0;
    pb_raw(&pkl, "\x80\x02", 2);
    pb_global(&pkl, "torch._utils", "_rebuild_tensor_v3");
    pb_raw(&pkl, ".", 1);
    write_pth(path, "e", &pkl, 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EREFUSED);
    ck_assert_ptr_nonnull(strstr(err.msg, "torch._utils._rebuild_tensor_v3"));
}
END_TEST

/* ---- safetensors ----------------------------------------------------------------------------- */

START_TEST(test_safetensors_writer_matches_reference_bytes)
{
    /* safetensors' own test_serialization: "attn.0" F32 [1,2,3] = 0..5, N = 64 */
    struct omni_tensor t;
    ck_assert_int_eq(omni_tensor_alloc_host(&t, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)2,
                                            (int64_t)3), OMNI_OK);
    for (int i = 0; i < 6; i++)
        ((float *)omni_tensor_data(&t))[i] = (float)i;
    const char *name = "attn.0";
    struct omni_error err = {0};
    const char *path = tmp("ref.safetensors");
    ck_assert_int_eq(omni_safetensors_write(path, 1, &name, &t, &err), OMNI_OK);
    size_t n;
    unsigned char *p = read_all(path, &n);
    static const char hdr[] = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    ck_assert_int_eq(sizeof hdr - 1, 64);
    ck_assert_int_eq(n, 8 + 64 + 24);
    ck_assert_mem_eq(p, "\x40\0\0\0\0\0\0\0", 8);
    ck_assert_mem_eq(p + 8, hdr, 64);
    ck_assert_mem_eq(p + 72, "\0\0\0\0\0\0\x80\x3f", 8); /* 0.0f, 1.0f little-endian */
    free(p);
    /* test_serialization_forced_alignement: "attn0" [1,1,2,3] -> 65-byte JSON + 7 spaces */
    ck_assert_int_eq(omni_tensor_reshape(&t, 4, (int64_t[]){1, 1, 2, 3}, &err), OMNI_OK);
    name = "attn0";
    ck_assert_int_eq(omni_safetensors_write(path, 1, &name, &t, &err), OMNI_OK);
    p = read_all(path, &n);
    ck_assert_int_eq(p[0], 72);
    ck_assert_mem_eq(p + 8 + 65, "       ", 7);
    ck_assert_int_eq(n, 8 + 72 + 24);
    free(p);
    omni_tensor_release(&t);
}
END_TEST

START_TEST(test_safetensors_round_trip)
{
    long live = omni_buffer_live_count();
    struct omni_error err = {0};
    struct omni_tensor ts[8];
    const char *names[8] = {"b.f16", "a.f32", "c.bf16", "d.i64", "e.i32", "f.u8", "g.f64",
                            "h.f32_t"};
    int dts[8] = {OMNI_DTYPE_F16, OMNI_DTYPE_F32, OMNI_DTYPE_BF16, OMNI_DTYPE_I64,
                  OMNI_DTYPE_I32, OMNI_DTYPE_U8, OMNI_DTYPE_F64, OMNI_DTYPE_F32};
    struct tu_rng rng;
    tu_rng_seed(&rng, 42);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(omni_tensor_alloc_host(&ts[i], dts[i], 2, (int64_t)3, (int64_t)(i + 1)),
                         OMNI_OK);
        unsigned char *p = omni_tensor_data(&ts[i]);
        for (size_t k = 0; k < omni_tensor_nbytes(&ts[i]); k++)
            p[k] = (unsigned char)(tu_rng_u64(&rng) >> 56);
    }
    /* the last one as a transposed (non-contiguous) view: written in logical order */
    struct omni_tensor tview = ts[7];
    tview.shape[0] = ts[7].shape[1], tview.shape[1] = ts[7].shape[0];
    tview.strides[0] = 1, tview.strides[1] = ts[7].shape[1];
    struct omni_tensor in[10];
    memcpy(in, ts, sizeof ts);
    in[7] = tview;
    /* a 0-dim scalar and an empty tensor */
    ck_assert_int_eq(omni_tensor_alloc_host(&in[8], OMNI_DTYPE_F32, 0), OMNI_OK);
    *(float *)omni_tensor_data(&in[8]) = 2.5f;
    ck_assert_int_eq(omni_tensor_alloc_host(&in[9], OMNI_DTYPE_F16, 2, (int64_t)0, (int64_t)4),
                     OMNI_OK);
    const char *allnames[10];
    memcpy(allnames, names, sizeof names);
    allnames[8] = "scalar";
    allnames[9] = "empty";
    const char *path = tmp("rt.safetensors");
    ck_assert_msg(omni_safetensors_write(path, 10, allnames, in, &err) == OMNI_OK, "%s", err.msg);

    /* the header, read independently: 8-byte aligned, offsets ordered by alignment then name */
    size_t n;
    unsigned char *raw = read_all(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | raw[i];
    ck_assert_int_eq(hl % 8, 0);
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, hl);
    ck_assert_ptr_nonnull(h);
    static const char *const order[] = {"d.i64", "g.f64", "a.f32", "e.i32", "h.f32_t", "scalar",
                                        "b.f16", "c.bf16", "empty", "f.u8"};
    double prev_end = 0;
    for (int i = 0; i < 10; i++) {
        cJSON *e = cJSON_GetObjectItem(h, order[i]);
        ck_assert_msg(e != NULL, "%s missing", order[i]);
        cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
        ck_assert_msg(cJSON_GetArrayItem(off, 0)->valuedouble == prev_end, "%s out of order",
                      order[i]);
        prev_end = cJSON_GetArrayItem(off, 1)->valuedouble;
    }
    ck_assert_int_eq((size_t)prev_end, n - 8 - hl);
    cJSON_Delete(h);
    free(raw);

    struct omni_weights *w = open_ok(path);
    ck_assert_int_eq(omni_weights_format(w), OMNI_WEIGHTS_SAFETENSORS);
    ck_assert_int_eq(omni_weights_count(w), 10);
    for (int i = 0; i < 10; i++) {
        struct omni_tensor t;
        ck_assert_int_eq(omni_weights_get(w, NULL, allnames[i], &t, &err), OMNI_OK);
        ck_assert_int_eq(t.dtype, in[i].dtype);
        ck_assert_int_eq(t.ndim, in[i].ndim);
        ck_assert(omni_tensor_is_contiguous(&t));
        for (int d = 0; d < t.ndim; d++)
            ck_assert_int_eq(t.shape[d], in[i].shape[d]);
        double a[64], b[64];
        size_t k = values(&t, a, 64);
        ck_assert_int_eq(values(&in[i], b, 64), k);
        ck_assert_mem_eq(a, b, k * sizeof(double)); /* bitwise, NaN payloads included */
        omni_tensor_release(&t);
    }
    omni_weights_close(w);
    for (int i = 0; i < 7; i++)
        omni_tensor_release(&ts[i]);
    omni_tensor_release(&ts[7]);
    omni_tensor_release(&in[8]);
    omni_tensor_release(&in[9]);
    TU_ASSERT_NO_LEAK(live);
    /* writer argument checks */
    const char *dup[2] = {"x", "x"};
    struct omni_tensor two[2] = {in[0], in[0]};
    ck_assert_int_eq(omni_safetensors_write(path, 2, dup, two, &err), OMNI_EINVAL);
}
END_TEST

static int st_status(const char *json, size_t data_len, struct omni_error *err)
{
    size_t hl = strlen(json);
    unsigned char *p = calloc(1, 8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(p + 8, json, hl);
    const char *path = tmp("hand.safetensors");
    write_all(path, p, 8 + hl + data_len);
    free(p);
    return open_status(path, err);
}

START_TEST(test_safetensors_rejects_malformed_headers)
{
    static const struct {
        const char *json;
        size_t data;
        int status;
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, OMNI_EFORMAT, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, OMNI_EFORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, OMNI_EFORMAT, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, OMNI_EFORMAT, "'a'"},
        {"{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, OMNI_EFORMAT, "unknown dtype 'F17'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, OMNI_EFORMAT, "cover 8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, OMNI_EFORMAT, "truncated"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, OMNI_EFORMAT, "begin <= end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, OMNI_EFORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, OMNI_EFORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, OMNI_EFORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, OMNI_EFORMAT, "duplicate"},
        {"{\"__metadata__\":{\"format\":1}}", 0, OMNI_EFORMAT, "__metadata__"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, OMNI_EFORMAT, "trailing"},
        {"{\"a\":[1,2]}", 0, OMNI_EFORMAT, "'a'"},
        {"[1]     ", 0, OMNI_EFORMAT, "not a .safetensors"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         OMNI_EUNSUPPORTED, "dimensions"},
    };
    struct omni_error err = {0};
    long live = omni_buffer_live_count();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = st_status(cases[i].json, cases[i].data, &err);
        ck_assert_msg(rc == cases[i].status, "case %zu: status %d (%s)", i, rc, err.msg);
        ck_assert_msg(strstr(err.msg, cases[i].needle) && strstr(err.msg, "hand.safetensors"),
                      "case %zu: message '%s' lacks '%s'", i, err.msg, cases[i].needle);
    }
    /* header length past the end of the file, and past the 100 MB limit */
    unsigned char hdr[16] = {0x10, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    const char *path = tmp("len.safetensors");
    write_all(path, hdr, 15);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "header length 16 runs past the end"));
    hdr[0] = 0, hdr[4] = 1; /* 2^32 */
    write_all(path, hdr, 16);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "100 MB"));
    /* an empty header with no data is a valid, empty file */
    hdr[0] = 8, hdr[4] = 0;
    write_all(path, hdr, 16);
    struct omni_weights *w = open_ok(path);
    ck_assert_int_eq(omni_weights_count(w), 0);
    omni_weights_close(w);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_safetensors_metadata_and_unloadable_dtypes)
{
    struct omni_error err = {0};
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"m\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                       "\"k\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(json);
    unsigned char buf[512] = {0};
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, json, hl);
    double d = -0.125;
    memcpy(buf + 8 + hl, &d, 8);
    const char *path = tmp("meta.safetensors");
    write_all(path, buf, 8 + hl + 12);
    struct omni_weights *w = open_ok(path);
    ck_assert_int_eq(omni_weights_count(w), 2);
    ck_assert_str_eq(omni_weights_key(w, 0), "m");
    ck_assert_str_eq(omni_weights_dtype_str(w, 0), "i16");
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "m", &t, &err), OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "'m'"));
    ck_assert_int_eq(omni_weights_load(w, NULL, "m", OMNI_DTYPE_F32, 0, NULL, &t, &err),
                     OMNI_EUNSUPPORTED);
    /* f64 -> f32 on load; the scalar is unaligned in the file (offset 8 + hl) */
    ck_assert_int_eq(omni_weights_load(w, NULL, "k", OMNI_DTYPE_F32, 0, NULL, &t, &err), OMNI_OK);
    ck_assert(*(float *)omni_tensor_data(&t) == -0.125f);
    omni_tensor_release(&t);
    ck_assert(!omni_weights_has(w, NULL, "__metadata__"));
    omni_weights_close(w);
}
END_TEST

/* ---- hostile inputs ---------------------------------------------------------------------------- */

/* Open, then read every element of every tensor (must not crash). */
static int open_and_touch(const char *path)
{
    struct omni_error err = {0};
    struct omni_weights *w = NULL;
    int rc = omni_weights_open(&w, path, &err);
    if (rc) {
        ck_assert_msg(err.msg[0] && strstr(err.msg, path), "error without the file name: %s",
                      err.msg);
        return rc;
    }
    volatile double sink = 0;
    for (size_t i = 0; i < omni_weights_count(w); i++) {
        struct omni_tensor t;
        if (omni_weights_get(w, NULL, omni_weights_key(w, i), &t, &err))
            continue;
        int64_t n = omni_tensor_numel(&t), idx[OMNI_MAX_DIMS] = {0};
        for (int64_t k = 0; k < n && k < 100000; k++) {
            sink += elem_at(&t, idx);
            for (int d = t.ndim - 1; d >= 0; d--) {
                if (++idx[d] < t.shape[d])
                    break;
                idx[d] = 0;
            }
        }
        omni_tensor_release(&t);
    }
    (void)sink;
    omni_weights_close(w);
    return OMNI_OK;
}

static const char *const pth_fixtures[] = {"tensors_mixed.pth", "module_state_dict_f16.pth",
                                           "checkpoint_nested.pth", "many_tensors.pth"};

static void truncations(const char *src, const char *name)
{
    size_t n;
    unsigned char *p = read_all(src, &n);
    const char *path = tmp(name);
    write_all(path, p, n);
    /* every cut for small files; for large ones every cut near both ends plus a stride.
     * Cuts go downwards so one file is shrunk in place. */
    size_t step = n > 4096 ? n / 512 : 1;
    for (size_t cut = n; cut-- > 0;) {
        if (step > 1 && cut > 2048 && cut + 2048 < n && cut % step)
            continue;
        ck_assert_int_eq(truncate(path, (off_t)cut), 0);
        int rc = open_and_touch(path);
        ck_assert_msg(rc == OMNI_EFORMAT, "%s cut at %zu of %zu: status %d", name, cut, n, rc);
    }
    free(p);
}

START_TEST(test_truncated_copies_fail_cleanly)
{
    long live = omni_buffer_live_count();
    for (size_t i = 0; i < sizeof pth_fixtures / sizeof pth_fixtures[0]; i++)
        truncations(fixture(pth_fixtures[i]), pth_fixtures[i]);
    /* and a safetensors file */
    struct omni_tensor t;
    ck_assert_int_eq(omni_tensor_alloc_host(&t, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)5), 0);
    const char *names[1] = {"w"};
    struct omni_error err = {0};
    char st[512];
    snprintf(st, sizeof st, "%s", tmp("trunc_src.safetensors"));
    ck_assert_int_eq(omni_safetensors_write(st, 1, names, &t, &err), OMNI_OK);
    omni_tensor_release(&t);
    truncations(st, "trunc.safetensors");
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static void put_byte(const char *path, size_t at, unsigned char v)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, (long)at, SEEK_SET), 0);
    ck_assert_int_eq(fputc(v, f), v);
    ck_assert_int_eq(fclose(f), 0);
}

/* At every position (small files) or ~1500 random positions (large ones),
 * flip one bit, or the whole byte, or write a random byte; returns how many
 * of the damaged copies still opened. */
static int flips(const char *src, const char *name, uint64_t seed)
{
    size_t n;
    unsigned char *p = read_all(src, &n);
    const char *path = tmp(name);
    write_all(path, p, n);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    size_t step = n > 4096 ? n / 1500 : 1;
    int ok = 0;
    for (size_t pos = 0; pos < n; pos += step) {
        size_t at = step > 1 ? pos + (size_t)(tu_rng_u64(&rng) % step) : pos;
        if (at >= n)
            break;
        uint64_t r = tu_rng_u64(&rng);
        unsigned char v = r % 3 == 0   ? (unsigned char)(p[at] ^ (1u << (r >> 8) % 8))
                          : r % 3 == 1 ? (unsigned char)(p[at] ^ 0xFF)
                                       : (unsigned char)(r >> 16);
        put_byte(path, at, v);
        ok += open_and_touch(path) == OMNI_OK;
        put_byte(path, at, p[at]);
    }
    ck_assert_int_eq(open_and_touch(path), OMNI_OK); /* restored */
    free(p);
    return ok;
}

START_TEST(test_byte_flipped_copies_never_crash)
{
    long live = omni_buffer_live_count();
    for (size_t i = 0; i < sizeof pth_fixtures / sizeof pth_fixtures[0]; i++)
        flips(fixture(pth_fixtures[i]), pth_fixtures[i], 1000 + i);
    flips(local_fixture("weights_proto4.pth"), "p4.pth", 7);
    struct omni_tensor t;
    ck_assert_int_eq(omni_tensor_alloc_host(&t, OMNI_DTYPE_BF16, 2, (int64_t)3, (int64_t)5), 0);
    const char *names[1] = {"w"};
    struct omni_error err = {0};
    char st[512];
    snprintf(st, sizeof st, "%s", tmp("flip_src.safetensors"));
    ck_assert_int_eq(omni_safetensors_write(st, 1, names, &t, &err), OMNI_OK);
    omni_tensor_release(&t);
    flips(st, "flip.safetensors", 3);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_non_weight_files)
{
    struct omni_error err = {0};
    const char *path = tmp("junk.bin");
    write_all(path, "", 0);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
    write_all(path, "hello, world! this is text", 26);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a .safetensors or torch.save"));
    static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                           0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
    write_all(path, legacy, sizeof legacy);
    ck_assert_int_eq(open_status(path, &err), OMNI_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "legacy"));
    write_all(path, "PK\3\4 not really a zip", 22);
    ck_assert_int_eq(open_status(path, &err), OMNI_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated: zip end of central directory not found"));
    ck_assert_int_eq(open_status(tmp("does-not-exist.pth"), &err), OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "does-not-exist.pth"));
    ck_assert_int_eq(open_status(tu_tmpdir(), &err), OMNI_EINVAL);
}
END_TEST

/* ---- omni inspect ------------------------------------------------------------------------------ */

static char *run_cmd(const char *cmd, int *status)
{
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    char *out = calloc(1, 1 << 20);
    size_t n = fread(out, 1, (1 << 20) - 1, f);
    out[n] = 0;
    *status = pclose(f);
    return out;
}

START_TEST(test_inspect_lists_tensors_and_totals)
{
    char bin[1024], cmd[4096];
    snprintf(bin, sizeof bin, "%s", tu_build_path("bin/omni"));
    ck_assert_msg(access(bin, X_OK) == 0, "%s is not built (run make cli)", bin);
    int st;
    snprintf(cmd, sizeof cmd, "%s inspect %s", bin, fixture("tensors_mixed.pth"));
    char *out = run_cmd(cmd, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_ptr_nonnull(strstr(out, "view_t      f32    [4,3]\n"));
    ck_assert_ptr_nonnull(strstr(out, "i64_scalar  i64    []\n"));
    ck_assert_ptr_nonnull(strstr(out, "7 tensors, 41 parameters, 0.00 MB\n"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect %s --prefix model.0 --json", bin,
             fixture("checkpoint_nested.pth"));
    out = run_cmd(cmd, &st);
    ck_assert_int_eq(st, 0);
    cJSON *j = cJSON_Parse(out);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "count")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "parameters")->valueint, 9);
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tensors"), 0)
                         ->child->valuestring, "model.0.weight");
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect %s 2>&1", bin, tmp("missing.pth"));
    out = run_cmd(cmd, &st);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    ck_assert_ptr_nonnull(strstr(out, "omni inspect: error: "));
    ck_assert_ptr_nonnull(strstr(out, "missing.pth"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect --help", bin);
    out = run_cmd(cmd, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_ptr_nonnull(strstr(out, "--prefix"));
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("pth");
    tcase_add_test(tc, test_mixed_fixture_matches_expected);
    tcase_add_test(tc, test_module_state_dict_matches_expected);
    tcase_add_test(tc, test_nested_checkpoint_flattens_model_keys);
    tcase_add_test(tc, test_many_tensors_long_binput_and_parameter);
    tcase_add_test(tc, test_views_share_one_storage);
    tcase_add_test(tc, test_int64_scalar_is_zero_dim);
    tcase_add_test(tc, test_load_converts_f16_and_bf16_exactly);
    tcase_add_test(tc, test_load_shape_mismatch_names_key_and_shapes);
    tcase_add_test(tc, test_missing_key_names_key_and_file);
    tcase_add_test(tc, test_tensors_outlive_close);
    tcase_add_test(tc, test_protocol4_pickle);
    tcase_add_test(tc, test_training_checkpoint_with_hyperparameters);
    tcase_add_test(tc, test_zip64_records_are_used);
    tcase_add_test(tc, test_torch2_layout_and_unknown_records);
    tcase_add_test(tc, test_rejects_malformed_pth);
    tcase_add_test(tc, test_broadcast_view_needs_expected_shape);
    tcase_add_test(tc, test_refuses_os_system_pickles);
    tcase_add_test(tc, test_refuses_object_building_opcodes_and_storage_calls);
    suite_add_tcase(s, tc);
    tc = tcase_create("safetensors");
    tcase_add_test(tc, test_safetensors_writer_matches_reference_bytes);
    tcase_add_test(tc, test_safetensors_round_trip);
    tcase_add_test(tc, test_safetensors_rejects_malformed_headers);
    tcase_add_test(tc, test_safetensors_metadata_and_unloadable_dtypes);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_truncated_copies_fail_cleanly);
    tcase_add_test(tc, test_byte_flipped_copies_never_crash);
    tcase_add_test(tc, test_rejects_non_weight_files);
    tcase_add_test(tc, test_inspect_lists_tensors_and_totals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
