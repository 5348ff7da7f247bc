/* A restricted unpickler for the data.pkl record of torch.save files.
 *
 * It runs the pickle stack machine for exactly the opcodes a state dict
 * needs (protocol 2, plus the protocol-4 FRAME/MEMOIZE/SHORT_BINUNICODE/
 * STACK_GLOBAL) and knows exactly four kinds of globals: OrderedDict,
 * torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the
 * torch.<Type>Storage classes. Anything else (another global, an opcode that
 * builds arbitrary objects) is refused with OMNI_EREFUSED before anything
 * happens: nothing is ever executed, the machine only builds a tree of
 * values. The result is flattened into "a.b.c" keys of tensor leaves.
 * Layout reference: shared/spec/weights-formats.md section 2.4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weights_impl.h"

enum pv_kind {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT,
    PV_GLOBAL, PV_STORAGE, PV_TENSOR,
};

enum pv_global { G_ODICT = 1, G_REBUILD_V2, G_REBUILD_PARAM, G_STORAGE };

struct ptensor {
    const struct omni__zip_entry *rec;
    int32_t dtype;
    const char *stored;
    uint32_t esize;
    int32_t ndim;
    uint64_t storage_bytes;
    int64_t offset; /* elements */
    int64_t shape[OMNI_MAX_DIMS];
    int64_t strides[OMNI_MAX_DIMS];
};

struct pv {
    uint8_t kind;
    uint8_t gl; /* enum pv_global for PV_GLOBAL */
    union {
        int64_t i;
        double f;
        struct { char *s; size_t len; } str;
        struct { struct pv **items; size_t n, cap; } seq; /* dict: key, value, key, value ... */
        struct { const struct omni__zip_entry *rec; const char *stored, *cls; uint64_t nbytes; int32_t dtype; uint32_t esize; } sto;
        struct ptensor *t;
    } u;
};

struct storage_type {
    const char *name;
    int32_t dtype;
    const char *stored;
    uint32_t esize;
};

/* torch/storage.py; omni loads the first seven, the rest are listed only */
static const struct storage_type storage_types[] = {
    {"HalfStorage", OMNI_DTYPE_F16, "f16", 2},
    {"BFloat16Storage", OMNI_DTYPE_BF16, "bf16", 2},
    {"FloatStorage", OMNI_DTYPE_F32, "f32", 4},
    {"DoubleStorage", OMNI_DTYPE_F64, "f64", 8},
    {"LongStorage", OMNI_DTYPE_I64, "i64", 8},
    {"IntStorage", OMNI_DTYPE_I32, "i32", 4},
    {"ByteStorage", OMNI_DTYPE_U8, "u8", 1},
    {"ShortStorage", OMNI_DTYPE_INVALID, "i16", 2},
    {"CharStorage", OMNI_DTYPE_INVALID, "i8", 1},
    {"BoolStorage", OMNI_DTYPE_INVALID, "bool", 1},
    {"ComplexFloatStorage", OMNI_DTYPE_INVALID, "c64", 8},
    {"ComplexDoubleStorage", OMNI_DTYPE_INVALID, "c128", 16},
};

#define BLOCK_VALUES 1024
#define MAX_BYTES ((size_t)1 << 30) /* memory the machine may use, whatever the input */
#define MAX_DEPTH 32                /* dict nesting when flattening */
#define MAX_NAME 256                /* GLOBAL module/name length */

struct pvblock {
    struct pvblock *next;
    size_t used;
    struct pv v[BLOCK_VALUES];
};

struct um {
    struct omni_weights *w;
    const struct omni__zip *z;
    const unsigned char *p; /* data.pkl */
    size_t n, pos, op_at;
    struct omni_error *err;
    size_t bytes; /* accounted allocations */
    struct pvblock *blocks;
    struct pv **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    struct pv **memo;
    size_t mlen, mcount;
    /* flattening */
    char *path;
    size_t plen, pcap, visits;
};

static struct pv v_none = {PV_NONE, 0, {0}};
static struct pv v_true = {PV_BOOL, 0, {1}};
static struct pv v_false = {PV_BOOL, 0, {0}};
static struct pv v_empty_tuple = {PV_TUPLE, 0, {0}};

#define FAIL(status, ...) fail_at(m, status, __VA_ARGS__)

static int fail_at(struct um *m, int status, const char *fmt, ...) OMNI_PRINTF(3, 4);
static int fail_at(struct um *m, int status, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    omni_error_set(m->err, status, "%s: data.pkl offset %zu: %s", m->w->path, m->op_at, what);
    return status;
}

static int account(struct um *m, size_t bytes)
{
    if (bytes > MAX_BYTES || m->bytes > MAX_BYTES - bytes)
        return FAIL(OMNI_EFORMAT, "the pickle needs more than %zu MiB to decode",
                    MAX_BYTES >> 20);
    m->bytes += bytes;
    return OMNI_OK;
}

/* grow an array to hold at least `need` elements */
static int grow(struct um *m, void **arr, size_t *cap, size_t need, size_t elsize)
{
    if (need <= *cap)
        return OMNI_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    if (account(m, (ncap - *cap) * elsize))
        return OMNI_EFORMAT;
    void *a = realloc(*arr, ncap * elsize);
    if (!a)
        return FAIL(OMNI_ENOMEM, "out of memory");
    *arr = a;
    *cap = ncap;
    return OMNI_OK;
}

static struct pv *newv(struct um *m, int kind)
{
    if (!m->blocks || m->blocks->used == BLOCK_VALUES) {
        if (account(m, sizeof(struct pvblock)))
            return NULL;
        struct pvblock *b = malloc(sizeof *b);
        if (!b) {
            FAIL(OMNI_ENOMEM, "out of memory");
            return NULL;
        }
        b->next = m->blocks;
        b->used = 0;
        m->blocks = b;
    }
    struct pv *v = &m->blocks->v[m->blocks->used++];
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)kind;
    return v;
}

static void free_all(struct um *m)
{
    while (m->blocks) {
        struct pvblock *b = m->blocks;
        for (size_t i = 0; i < b->used; i++) {
            struct pv *v = &b->v[i];
            if (v->kind == PV_STR)
                free(v->u.str.s);
            else if (v->kind == PV_TUPLE || v->kind == PV_LIST || v->kind == PV_DICT)
                free(v->u.seq.items);
            else if (v->kind == PV_TENSOR)
                free(v->u.t);
        }
        m->blocks = b->next;
        free(b);
    }
    free(m->stack);
    free(m->marks);
    free(m->memo);
    free(m->path);
}

/* ---- stack ---------------------------------------------------------------------- */

static size_t base(const struct um *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int push(struct um *m, struct pv *v)
{
    if (!v)
        return m->err ? m->err->status : OMNI_ENOMEM;
    if (grow(m, (void **)&m->stack, &m->scap, m->sp + 1, sizeof *m->stack))
        return OMNI_EFORMAT;
    m->stack[m->sp++] = v;
    return OMNI_OK;
}

static int need(struct um *m, size_t k, const char *op)
{
    if (m->sp - base(m) < k)
        return FAIL(OMNI_EFORMAT, "%s needs %zu stack item(s) above the mark, found %zu", op, k,
                    m->sp - base(m));
    return OMNI_OK;
}

static struct pv *pop(struct um *m) { return m->stack[--m->sp]; }
static struct pv *top(struct um *m) { return m->stack[m->sp - 1]; }

/* Pop back to the last mark; items are stack[*first .. sp) until the next push. */
static int pop_mark(struct um *m, const char *op, size_t *first)
{
    if (!m->nmarks)
        return FAIL(OMNI_EFORMAT, "%s without a MARK", op);
    *first = m->marks[--m->nmarks];
    return OMNI_OK;
}

static int seq_append(struct um *m, struct pv *s, struct pv *x)
{
    if (grow(m, (void **)&s->u.seq.items, &s->u.seq.cap, s->u.seq.n + 1, sizeof(struct pv *)))
        return OMNI_EFORMAT;
    s->u.seq.items[s->u.seq.n++] = x;
    return OMNI_OK;
}

static struct pv *make_tuple(struct um *m, struct pv **items, size_t n)
{
    if (n == 0)
        return &v_empty_tuple;
    struct pv *t = newv(m, PV_TUPLE);
    if (!t)
        return NULL;
    if (account(m, n * sizeof *items))
        return NULL;
    t->u.seq.items = malloc(n * sizeof *items);
    if (!t->u.seq.items) {
        FAIL(OMNI_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(t->u.seq.items, items, n * sizeof *items);
    t->u.seq.n = t->u.seq.cap = n;
    return t;
}

/* ---- reading ---------------------------------------------------------------------- */

static int rd(struct um *m, size_t k, const unsigned char **out)
{
    if (m->n - m->pos < k)
        return FAIL(OMNI_EFORMAT, "truncated: opcode 0x%02x needs %zu more bytes, %zu left",
                    m->p[m->op_at], k, m->n - m->pos);
    *out = m->p + m->pos;
    m->pos += k;
    return OMNI_OK;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
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
            cp > 0x10FFFF)
            return 0;
        /* surrogates are accepted: Python pickles strings with 'surrogatepass' */
        i += k + 1;
    }
    return 1;
}

static int push_str(struct um *m, const unsigned char *s, size_t len)
{
    if (!utf8_valid(s, len))
        return FAIL(OMNI_EFORMAT, "string of %zu bytes is not valid UTF-8", len);
    struct pv *v = newv(m, PV_STR);
    if (!v || account(m, len + 1))
        return OMNI_EFORMAT;
    v->u.str.s = malloc(len + 1);
    if (!v->u.str.s)
        return FAIL(OMNI_ENOMEM, "out of memory for a string of %zu bytes", len);
    memcpy(v->u.str.s, s, len);
    v->u.str.s[len] = 0;
    v->u.str.len = len;
    return push(m, v);
}

static int push_int(struct um *m, int64_t i)
{
    struct pv *v = newv(m, PV_INT);
    if (v)
        v->u.i = i;
    return push(m, v);
}

static int is_str(const struct pv *v, const char *s)
{
    return v->kind == PV_STR && !strcmp(v->u.str.s, s) && strlen(s) == v->u.str.len;
}

/* Resolve a global by name; refuse everything that is not on the list. */
static int push_global(struct um *m, const char *mod, size_t ml, const char *name, size_t nl)
{
    struct pv *v = newv(m, PV_GLOBAL);
    if (!v)
        return OMNI_EFORMAT;
#define IS(s, l, lit) ((l) == sizeof(lit) - 1 && !memcmp((s), lit, sizeof(lit) - 1))
    if (IS(mod, ml, "collections") && IS(name, nl, "OrderedDict")) {
        v->gl = G_ODICT;
    } else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_tensor_v2")) {
        v->gl = G_REBUILD_V2;
    } else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_parameter")) {
        v->gl = G_REBUILD_PARAM;
    } else if (IS(mod, ml, "torch")) {
        for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++) {
            const struct storage_type *st = &storage_types[i];
            if (nl == strlen(st->name) && !memcmp(name, st->name, nl)) {
                v->gl = G_STORAGE;
                v->u.sto.dtype = st->dtype;
                v->u.sto.stored = st->stored;
                v->u.sto.esize = st->esize;
                v->u.sto.cls = st->name;
            }
        }
    }
#undef IS
    if (!v->gl) {
        /* print only what is printable */
        char ms[120], ns[120];
        size_t a = 0, b = 0;
        for (size_t i = 0; i < ml && a < sizeof ms - 1; i++)
            ms[a++] = mod[i] >= 0x20 && mod[i] < 0x7f ? mod[i] : '?';
        for (size_t i = 0; i < nl && b < sizeof ns - 1; i++)
            ns[b++] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
        ms[a] = ns[b] = 0;
        return FAIL(OMNI_EREFUSED,
                    "global '%s.%s' is not allowed (only tensors and dicts can be loaded)", ms, ns);
    }
    return push(m, v);
}

/* ---- REDUCE and BINPERSID ------------------------------------------------------------ */

static int get_int(struct um *m, const struct pv *v, const char *what, int64_t *out)
{
    if (v->kind == PV_INT || v->kind == PV_BOOL) {
        *out = v->u.i;
        return OMNI_OK;
    }
    return FAIL(OMNI_EFORMAT, "%s is not an integer", what);
}

static int int_tuple(struct um *m, const struct pv *v, const char *what, int64_t *out, int *n)
{
    if (v->kind != PV_TUPLE)
        return FAIL(OMNI_EFORMAT, "%s is not a tuple", what);
    if (v->u.seq.n > OMNI_MAX_DIMS)
        return FAIL(OMNI_EUNSUPPORTED, "%s has %zu dimensions (at most %d supported)", what,
                    v->u.seq.n, OMNI_MAX_DIMS);
    for (size_t i = 0; i < v->u.seq.n; i++) {
        if (get_int(m, v->u.seq.items[i], what, &out[i]))
            return OMNI_EFORMAT;
        if (out[i] < 0)
            return FAIL(OMNI_EFORMAT, "%s has a negative entry %lld", what, (long long)out[i]);
    }
    *n = (int)v->u.seq.n;
    return OMNI_OK;
}

static int rebuild_tensor(struct um *m, struct pv *args, struct pv **out)
{
    if (args->u.seq.n != 6 && args->u.seq.n != 7)
        return FAIL(OMNI_EFORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu",
                    args->u.seq.n);
    struct pv **a = args->u.seq.items;
    if (a[0]->kind != PV_STORAGE)
        return FAIL(OMNI_EFORMAT, "_rebuild_tensor_v2: first argument is not a storage");
    if (account(m, sizeof(struct ptensor)))
        return OMNI_EFORMAT;
    struct ptensor *t = calloc(1, sizeof *t);
    struct pv *v = newv(m, PV_TENSOR);
    if (!t || !v) {
        free(t);
        return v ? FAIL(OMNI_ENOMEM, "out of memory") : OMNI_EFORMAT;
    }
    v->u.t = t; /* owned by v from here */
    t->rec = a[0]->u.sto.rec;
    t->dtype = a[0]->u.sto.dtype;
    t->stored = a[0]->u.sto.stored;
    t->esize = a[0]->u.sto.esize;
    int ns = 0, nst = 0;
    if (get_int(m, a[1], "storage offset", &t->offset) ||
        int_tuple(m, a[2], "size", t->shape, &ns) || int_tuple(m, a[3], "stride", t->strides, &nst))
        return OMNI_EFORMAT;
    if (t->offset < 0)
        return FAIL(OMNI_EFORMAT, "negative storage offset %lld", (long long)t->offset);
    if (ns != nst)
        return FAIL(OMNI_EFORMAT, "size has %d dimensions but stride has %d", ns, nst);
    t->ndim = ns;
    /* bounds: the last element viewed must lie inside the storage */
    uint64_t numel = 1, last = (uint64_t)t->offset, bytes;
    for (int i = 0; i < ns; i++) {
        uint64_t span;
        if (!omni__mul_ok(numel, (uint64_t)t->shape[i], &numel) || numel > ((uint64_t)1 << 62))
            return FAIL(OMNI_EFORMAT, "tensor size overflows");
        if (t->shape[i] == 0)
            continue;
        if (!omni__mul_ok((uint64_t)(t->shape[i] - 1), (uint64_t)t->strides[i], &span) ||
            !omni__add_ok(last, span, &last))
            return FAIL(OMNI_EFORMAT, "tensor extent overflows");
    }
    uint64_t storage_bytes = t->storage_bytes = a[0]->u.sto.nbytes;
    if (numel == 0) {
        if (!omni__mul_ok((uint64_t)t->offset, t->esize, &bytes) || bytes > storage_bytes)
            return FAIL(OMNI_EFORMAT, "storage offset %lld is past the end of storage '%.*s'",
                        (long long)t->offset,
                        (int)(t->rec->namelen > 100 ? 100 : t->rec->namelen), t->rec->name);
    } else if (!omni__add_ok(last, 1, &last) || !omni__mul_ok(last, t->esize, &bytes) ||
               bytes > storage_bytes) {
        return FAIL(OMNI_EFORMAT,
                    "tensor view (offset %lld, %d dims) reaches element %llu but its storage "
                    "'%.*s' holds %llu bytes of %s",
                    (long long)t->offset, ns, (unsigned long long)last,
                    (int)(t->rec->namelen > 100 ? 100 : t->rec->namelen), t->rec->name,
                    (unsigned long long)storage_bytes, t->stored);
    }
    *out = v;
    return OMNI_OK;
}

static int op_reduce(struct um *m)
{
    if (need(m, 2, "REDUCE"))
        return OMNI_EFORMAT;
    struct pv *args = pop(m), *fn = pop(m), *res = NULL;
    if (fn->kind != PV_GLOBAL)
        return FAIL(OMNI_EREFUSED, "REDUCE target is not an allowed global");
    if (args->kind != PV_TUPLE)
        return FAIL(OMNI_EFORMAT, "REDUCE arguments are not a tuple");
    switch (fn->gl) {
    case G_ODICT:
        if (args->u.seq.n != 0)
            return FAIL(OMNI_EFORMAT, "OrderedDict called with %zu arguments (expected none)",
                        args->u.seq.n);
        res = newv(m, PV_DICT);
        break;
    case G_REBUILD_V2:
        if (rebuild_tensor(m, args, &res))
            return m->err ? m->err->status : OMNI_EFORMAT;
        break;
    case G_REBUILD_PARAM:
        if (args->u.seq.n < 1 || args->u.seq.items[0]->kind != PV_TENSOR)
            return FAIL(OMNI_EFORMAT, "_rebuild_parameter: first argument is not a tensor");
        res = args->u.seq.items[0];
        break;
    default:
        return FAIL(OMNI_EREFUSED,
                    "calling global 'torch.%s' is not allowed (storages only appear in "
                    "persistent ids)",
                    fn->u.sto.cls);
    }
    return push(m, res);
}

static int op_binpersid(struct um *m)
{
    if (need(m, 1, "BINPERSID"))
        return OMNI_EFORMAT;
    struct pv *pid = pop(m);
    if (pid->kind != PV_TUPLE || pid->u.seq.n != 5 || !is_str(pid->u.seq.items[0], "storage"))
        return FAIL(OMNI_EFORMAT,
                    "persistent id is not ('storage', <Storage class>, key, location, numel)");
    struct pv **a = pid->u.seq.items;
    if (a[1]->kind != PV_GLOBAL || a[1]->gl != G_STORAGE)
        return FAIL(OMNI_EFORMAT, "persistent id: second item is not a torch.<Type>Storage class");
    if (a[2]->kind != PV_STR || a[2]->u.str.len == 0 || a[2]->u.str.len > 64 ||
        memchr(a[2]->u.str.s, 0, a[2]->u.str.len))
        return FAIL(OMNI_EFORMAT, "persistent id: storage key is not a short string");
    int64_t numel = 0;
    if (get_int(m, a[4], "persistent id numel", &numel))
        return OMNI_EFORMAT;
    char rec[80];
    snprintf(rec, sizeof rec, "data/%s", a[2]->u.str.s);
    const struct omni__zip_entry *e = omni__zip_find(m->z, rec);
    if (!e)
        return FAIL(OMNI_EFORMAT, "storage record '%.*s/%s' is missing", (int)m->z->prefixlen,
                    m->z->prefix, rec);
    uint64_t bytes;
    if (numel < 0 || !omni__mul_ok((uint64_t)numel, a[1]->u.sto.esize, &bytes) || bytes > e->size)
        return FAIL(OMNI_EFORMAT,
                    "storage '%s' claims %lld elements of %s but its record holds %llu bytes", rec,
                    (long long)numel, a[1]->u.sto.stored, (unsigned long long)e->size);
    struct pv *v = newv(m, PV_STORAGE);
    if (!v)
        return OMNI_EFORMAT;
    v->u.sto.rec = e;
    v->u.sto.dtype = a[1]->u.sto.dtype;
    v->u.sto.stored = a[1]->u.sto.stored;
    v->u.sto.esize = a[1]->u.sto.esize;
    v->u.sto.nbytes = bytes; /* the storage proper: numel x element size */
    return push(m, v);
}

/* ---- the machine -------------------------------------------------------------------- */

static int memo_put(struct um *m, uint64_t idx, const char *op)
{
    if (m->sp == base(m))
        return FAIL(OMNI_EFORMAT, "%s with an empty stack", op);
    /* honest memo indices count up from 0, one per memoized value */
    if (idx > m->n)
        return FAIL(OMNI_EFORMAT, "%s index %llu is implausibly large", op,
                    (unsigned long long)idx);
    if (idx >= m->mlen) {
        size_t cap = m->mlen;
        if (grow(m, (void **)&m->memo, &cap, (size_t)idx + 1, sizeof *m->memo))
            return OMNI_EFORMAT;
        memset(m->memo + m->mlen, 0, (cap - m->mlen) * sizeof *m->memo);
        m->mlen = cap;
    }
    if (!m->memo[idx])
        m->mcount++;
    m->memo[idx] = top(m);
    return OMNI_OK;
}

static int memo_get(struct um *m, uint64_t idx)
{
    if (idx >= m->mlen || !m->memo[idx])
        return FAIL(OMNI_EFORMAT, "memo entry %llu is not defined", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static int run(struct um *m, struct pv **result)
{
    const unsigned char *a = NULL;
    for (;;) {
        m->op_at = m->pos;
        if (m->pos >= m->n)
            return FAIL(OMNI_EFORMAT, "truncated: the pickle ends without STOP");
        unsigned op = m->p[m->pos++];
        int rc = OMNI_OK;
        switch (op) {
        case 0x80: /* PROTO */
            if ((rc = rd(m, 1, &a)))
                return rc;
            if (a[0] > 5)
                return FAIL(OMNI_EUNSUPPORTED, "pickle protocol %u is not supported", a[0]);
            break;
        case 0x95: /* FRAME: a length hint; the opcodes follow inline */
            if ((rc = rd(m, 8, &a)))
                return rc;
            if (omni__rd64(a) > m->n - m->pos)
                return FAIL(OMNI_EFORMAT, "truncated: frame of %llu bytes, %zu left",
                            (unsigned long long)omni__rd64(a), m->n - m->pos);
            break;
        case 'c': { /* GLOBAL module\nname\n */
            const char *mod = (const char *)m->p + m->pos;
            size_t left = m->n - m->pos;
            const char *nl1 = memchr(mod, '\n', left < MAX_NAME ? left : MAX_NAME);
            if (!nl1)
                return FAIL(OMNI_EFORMAT, "GLOBAL module name is unterminated or too long");
            const char *name = nl1 + 1;
            left -= (size_t)(name - mod);
            const char *nl2 = memchr(name, '\n', left < MAX_NAME ? left : MAX_NAME);
            if (!nl2)
                return FAIL(OMNI_EFORMAT, "GLOBAL name is unterminated or too long");
            m->pos += (size_t)(nl2 + 1 - mod);
            rc = push_global(m, mod, (size_t)(nl1 - mod), name, (size_t)(nl2 - name));
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            if ((rc = need(m, 2, "STACK_GLOBAL")))
                return rc;
            struct pv *name = pop(m), *mod = pop(m);
            if (name->kind != PV_STR || mod->kind != PV_STR)
                return FAIL(OMNI_EFORMAT, "STACK_GLOBAL operands are not strings");
            rc = push_global(m, mod->u.str.s, mod->u.str.len, name->u.str.s, name->u.str.len);
            break;
        }
        case 'q': /* BINPUT */
            if (!(rc = rd(m, 1, &a)))
                rc = memo_put(m, a[0], "BINPUT");
            break;
        case 'r': /* LONG_BINPUT */
            if (!(rc = rd(m, 4, &a)))
                rc = memo_put(m, omni__rd32(a), "LONG_BINPUT");
            break;
        case 0x94: /* MEMOIZE */
            rc = memo_put(m, m->mcount, "MEMOIZE");
            break;
        case 'h': /* BINGET */
            if (!(rc = rd(m, 1, &a)))
                rc = memo_get(m, a[0]);
            break;
        case 'j': /* LONG_BINGET */
            if (!(rc = rd(m, 4, &a)))
                rc = memo_get(m, omni__rd32(a));
            break;
        case '(': /* MARK */
            if (!(rc = grow(m, (void **)&m->marks, &m->mcap, m->nmarks + 1, sizeof *m->marks)))
                m->marks[m->nmarks++] = m->sp;
            break;
        case 't': { /* TUPLE */
            size_t first = 0;
            if ((rc = pop_mark(m, "TUPLE", &first)))
                return rc;
            struct pv *t = make_tuple(m, m->stack + first, m->sp - first);
            m->sp = first;
            rc = push(m, t);
            break;
        }
        case ')': /* EMPTY_TUPLE */
            rc = push(m, &v_empty_tuple);
            break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1/2/3 */
            size_t k = op - 0x84;
            if ((rc = need(m, k, "TUPLEn")))
                return rc;
            struct pv *t = make_tuple(m, m->stack + m->sp - k, k);
            m->sp -= k;
            rc = push(m, t);
            break;
        }
        case '}': /* EMPTY_DICT */
            rc = push(m, newv(m, PV_DICT));
            break;
        case ']': /* EMPTY_LIST */
            rc = push(m, newv(m, PV_LIST));
            break;
        case 's': { /* SETITEM */
            if ((rc = need(m, 3, "SETITEM")))
                return rc;
            struct pv *val = pop(m), *key = pop(m), *d = top(m);
            if (d->kind != PV_DICT)
                return FAIL(OMNI_EFORMAT, "SETITEM target is not a dict");
            if (!(rc = seq_append(m, d, key)))
                rc = seq_append(m, d, val);
            break;
        }
        case 'u': { /* SETITEMS */
            size_t first = 0;
            if ((rc = pop_mark(m, "SETITEMS", &first)))
                return rc;
            size_t k = m->sp - first;
            if (k % 2)
                return FAIL(OMNI_EFORMAT, "SETITEMS with an odd number of items");
            if (first == base(m) || m->stack[first - 1]->kind != PV_DICT)
                return FAIL(OMNI_EFORMAT, "SETITEMS target is not a dict");
            struct pv *d = m->stack[first - 1];
            for (size_t i = 0; i < k && !rc; i++)
                rc = seq_append(m, d, m->stack[first + i]);
            m->sp = first;
            break;
        }
        case 'a': { /* APPEND */
            if ((rc = need(m, 2, "APPEND")))
                return rc;
            struct pv *x = pop(m), *l = top(m);
            if (l->kind != PV_LIST)
                return FAIL(OMNI_EFORMAT, "APPEND target is not a list");
            rc = seq_append(m, l, x);
            break;
        }
        case 'e': { /* APPENDS */
            size_t first = 0;
            if ((rc = pop_mark(m, "APPENDS", &first)))
                return rc;
            if (first == base(m) || m->stack[first - 1]->kind != PV_LIST)
                return FAIL(OMNI_EFORMAT, "APPENDS target is not a list");
            struct pv *l = m->stack[first - 1];
            for (size_t i = first; i < m->sp && !rc; i++)
                rc = seq_append(m, l, m->stack[i]);
            m->sp = first;
            break;
        }
        case 'X': /* BINUNICODE */
            if (!(rc = rd(m, 4, &a))) {
                uint32_t len = omni__rd32(a);
                if (!(rc = rd(m, len, &a)))
                    rc = push_str(m, a, len);
            }
            break;
        case 0x8C: /* SHORT_BINUNICODE */
            if (!(rc = rd(m, 1, &a))) {
                uint8_t len = a[0];
                if (!(rc = rd(m, len, &a)))
                    rc = push_str(m, a, len);
            }
            break;
        case 'K': /* BININT1 */
            if (!(rc = rd(m, 1, &a)))
                rc = push_int(m, a[0]);
            break;
        case 'M': /* BININT2 */
            if (!(rc = rd(m, 2, &a)))
                rc = push_int(m, omni__rd16(a));
            break;
        case 'J': /* BININT */
            if (!(rc = rd(m, 4, &a)))
                rc = push_int(m, (int32_t)omni__rd32(a));
            break;
        case 0x8A: { /* LONG1: n bytes, two's complement little-endian */
            if ((rc = rd(m, 1, &a)))
                return rc;
            size_t len = a[0];
            if ((rc = rd(m, len, &a)))
                return rc;
            uint64_t u = 0;
            int neg = len && (a[len - 1] & 0x80);
            for (size_t i = 0; i < len; i++) {
                if (i < 8)
                    u |= (uint64_t)a[i] << (8 * i);
                else if (a[i] != (neg ? 0xFF : 0x00))
                    return FAIL(OMNI_EUNSUPPORTED, "LONG1 integer of %zu bytes does not fit 64 bits",
                                len);
            }
            if (len < 8 && neg)
                u |= ~(uint64_t)0 << (8 * len);
            if (len > 8 && (((u >> 63) & 1) != (uint64_t)neg))
                return FAIL(OMNI_EUNSUPPORTED, "LONG1 integer of %zu bytes does not fit 64 bits",
                            len);
            int64_t v;
            memcpy(&v, &u, sizeof v);
            rc = push_int(m, v);
            break;
        }
        case 0x88: /* NEWTRUE */
            rc = push(m, &v_true);
            break;
        case 0x89: /* NEWFALSE */
            rc = push(m, &v_false);
            break;
        case 'N': /* NONE */
            rc = push(m, &v_none);
            break;
        case 'G': { /* BINFLOAT: big-endian double */
            if ((rc = rd(m, 8, &a)))
                return rc;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = u << 8 | a[i];
            struct pv *v = newv(m, PV_FLOAT);
            if (v)
                memcpy(&v->u.f, &u, sizeof u);
            rc = push(m, v);
            break;
        }
        case 'R': /* REDUCE */
            rc = op_reduce(m);
            break;
        case 'b': /* BUILD: state ignored (OrderedDict._metadata) */
            if ((rc = need(m, 2, "BUILD")))
                return rc;
            pop(m);
            break;
        case 'Q': /* BINPERSID */
            rc = op_binpersid(m);
            break;
        case '.': /* STOP */
            if ((rc = need(m, 1, "STOP")))
                return rc;
            *result = pop(m);
            return OMNI_OK;
        case 'i': case 'o': case 0x81: case 0x92: case 0x82: case 0x83: case 0x84:
            return FAIL(OMNI_EREFUSED,
                        "opcode 0x%02x constructs arbitrary objects and is not allowed (only "
                        "tensors and dicts can be loaded)",
                        op);
        default:
            return FAIL(OMNI_EFORMAT, "unsupported pickle opcode 0x%02x", op);
        }
        if (rc)
            return rc;
    }
}

/* ---- flattening --------------------------------------------------------------------- */

static int path_put(struct um *m, size_t at, const char *s, size_t len)
{
    if (grow(m, (void **)&m->path, &m->pcap, at + len + 1, 1))
        return OMNI_EFORMAT;
    memcpy(m->path + at, s, len);
    m->plen = at + len;
    m->path[m->plen] = 0;
    return OMNI_OK;
}

static int add_tensor(struct um *m, const struct ptensor *t)
{
    struct omni__wentry e;
    memset(&e, 0, sizeof e);
    e.dtype = t->dtype;
    snprintf(e.stored, sizeof e.stored, "%s", t->stored);
    e.ndim = t->ndim;
    memcpy(e.shape, t->shape, sizeof e.shape);
    memcpy(e.strides, t->strides, sizeof e.strides);
    /* in bounds: checked in rebuild_tensor against the record */
    e.offset = (int64_t)(t->rec->data_offset + (uint64_t)t->offset * t->esize);
    e.storage_numel = (int64_t)(t->storage_bytes / t->esize);
    return omni__weights_add(m->w, m->path, m->plen, &e, 0, m->err);
}

static int flatten(struct um *m, const struct pv *d, int depth)
{
    if (depth > MAX_DEPTH)
        return omni_error_set(m->err, OMNI_EFORMAT,
                              "%s: data.pkl: dicts nested deeper than %d levels (or a dict that "
                              "contains itself)",
                              m->w->path, MAX_DEPTH);
    size_t at = m->plen;
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2) {
        const struct pv *k = d->u.seq.items[i], *v = d->u.seq.items[i + 1];
        if (++m->visits > 4 * m->n + 4096)
            return omni_error_set(m->err, OMNI_EFORMAT,
                                  "%s: data.pkl: shared nested dicts expand to too many keys",
                                  m->w->path);
        if (v->kind != PV_TENSOR && v->kind != PV_DICT)
            continue; /* non-tensor leaves (ints, strings, lists) */
        char num[32];
        const char *ks;
        size_t kl;
        if (k->kind == PV_STR) {
            if (memchr(k->u.str.s, 0, k->u.str.len))
                return omni_error_set(m->err, OMNI_EFORMAT, "%s: data.pkl: a key contains NUL",
                                      m->w->path);
            ks = k->u.str.s, kl = k->u.str.len;
        } else if (k->kind == PV_INT) {
            kl = (size_t)snprintf(num, sizeof num, "%lld", (long long)k->u.i);
            ks = num;
        } else {
            continue;
        }
        int rc = OMNI_OK;
        if (at)
            rc = path_put(m, at, ".", 1);
        if (!rc)
            rc = path_put(m, at ? at + 1 : 0, ks, kl);
        if (!rc)
            rc = v->kind == PV_TENSOR ? add_tensor(m, v->u.t) : flatten(m, v, depth + 1);
        m->plen = at;
        if (rc)
            return rc;
    }
    return OMNI_OK;
}

int omni__pickle_load(struct omni_weights *w, const struct omni__zip *z,
                      const struct omni__zip_entry *pkl, struct omni_error *err)
{
    struct um m;
    memset(&m, 0, sizeof m);
    m.w = w;
    m.z = z;
    m.p = w->base + pkl->data_offset;
    m.n = (size_t)pkl->size;
    m.err = err;
    struct pv *result = NULL;
    int rc = run(&m, &result);
    if (!rc && result->kind == PV_DICT)
        rc = path_put(&m, 0, "", 0) ? OMNI_EFORMAT : flatten(&m, result, 0);
    free_all(&m);
    return rc;
}
