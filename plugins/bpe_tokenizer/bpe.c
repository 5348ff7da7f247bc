/* plugins/bpe_tokenizer/bpe.c - GPT-NeoX-20B byte-level BPE: load
 * tokenizer.json, encode (added tokens, NFC, GPT-2 regex, rank merges) and
 * streaming decode. The behaviour is HF tokenizers' (see bpe.h). */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "bpe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- small containers ------------------------------------------------------ */

static int str_reserve(struct omni_bpe_str *s, size_t extra)
{
    size_t need = s->len + extra + 1;
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(s->data, cap);
    if (!p)
        return -1;
    s->data = p;
    s->cap = cap;
    s->data[s->len] = '\0';
    return 0;
}

static int str_append(struct omni_bpe_str *s, const void *b, size_t n)
{
    if (str_reserve(s, n))
        return -1;
    if (n)
        memcpy(s->data + s->len, b, n);
    s->len += n;
    s->data[s->len] = '\0';
    return 0;
}

void omni_bpe_str_free(struct omni_bpe_str *s)
{
    free(s->data);
    s->data = NULL;
    s->len = s->cap = 0;
}

static int ids_push(struct omni_bpe_ids *v, int32_t id)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->data, cap * sizeof *p);
        if (!p)
            return -1;
        v->data = p;
        v->cap = cap;
    }
    v->data[v->len++] = id;
    return 0;
}

void omni_bpe_ids_free(struct omni_bpe_ids *v)
{
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) /* splitmix64 finaliser */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* ---- GPT-2 byte <-> unicode table ---------------------------------------------
 * Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte
 * order, to U+0100.. (so every token string is printable). */
static void byte_table(uint16_t b2u[256], int16_t u2b[0x144])
{
    for (int i = 0; i < 0x144; i++)
        u2b[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        b2u[b] = (uint16_t)(printable ? b : 256 + extra++);
        u2b[b2u[b]] = (int16_t)b;
    }
}

/* ---- the tokenizer ----------------------------------------------------------------- */

enum { TOK_PRESENT = 1, TOK_ADDED = 2, TOK_SPECIAL = 4 };

struct added_tok {
    int32_t id;
    uint32_t off, len; /* content in strs */
    int normalized;
};

struct merge_ent {
    uint64_t key; /* (left id << 32) | right id; 0 = empty (id pair 0,0 cannot merge: see load) */
    int32_t rank, new_id;
};

struct omni_bpe {
    int32_t n_ids;
    char *strs; /* token strings, then decoded bytes */
    size_t strs_len, strs_cap;
    uint32_t *tok_off, *tok_len; /* [n_ids] token string (an added token's content wins) */
    uint32_t *voc_off, *voc_len; /* [n_ids] model vocab string; voc_len 0 = not in the vocab */
    uint32_t *dec_off, *dec_len; /* [n_ids] bytes the id decodes to */
    uint8_t *flags;              /* [n_ids] TOK_* */
    int32_t *vocab_tab;          /* model vocab: string -> id; -1 empty */
    size_t vocab_mask;
    struct merge_ent *merge_tab;
    size_t merge_mask;
    int32_t byte_id[256];
    struct added_tok *added;
    int n_added;
    /* added tokens by first byte, longest first: first_idx[b]..first_idx[b+1] in by_first */
    int first_idx[257];
    int *by_first;
    pcre2_code *re;
    int nfc; /* normalizer is NFC (else none) */
};

static int strs_add(struct omni_bpe *t, const void *b, size_t n, uint32_t *off)
{
    if (t->strs_len + n > UINT32_MAX)
        return -1;
    if (t->strs_len + n > t->strs_cap) {
        size_t cap = t->strs_cap ? t->strs_cap : 1 << 16;
        while (cap < t->strs_len + n)
            cap *= 2;
        char *p = realloc(t->strs, cap);
        if (!p)
            return -1;
        t->strs = p;
        t->strs_cap = cap;
    }
    memcpy(t->strs + t->strs_len, b, n);
    *off = (uint32_t)t->strs_len;
    t->strs_len += n;
    return 0;
}

int32_t omni_bpe_n_ids(const struct omni_bpe *t) { return t->n_ids; }

const char *omni_bpe_token(const struct omni_bpe *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & TOK_PRESENT))
        return NULL;
    if (len)
        *len = t->tok_len[id];
    return t->strs + t->tok_off[id];
}

int omni_bpe_is_special(const struct omni_bpe *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOK_SPECIAL);
}

static int32_t vocab_find(const struct omni_bpe *t, const char *s, size_t n)
{
    size_t i = hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t id = t->vocab_tab[i];
        if (id < 0)
            return -1;
        if (t->voc_len[id] == n && !memcmp(t->strs + t->voc_off[id], s, n))
            return id;
        i = (i + 1) & t->vocab_mask;
    }
}

int32_t omni_bpe_token_id(const struct omni_bpe *t, const char *s, size_t len)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->strs + t->added[i].off, s, len))
            return t->added[i].id;
    return vocab_find(t, s, len);
}

static const struct merge_ent *merge_find(const struct omni_bpe *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = hash_u64(key) & t->merge_mask;
    for (;;) {
        const struct merge_ent *m = &t->merge_tab[i];
        if (m->key == key && m->new_id >= 0)
            return m;
        if (m->new_id < 0)
            return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

void omni_bpe_free(struct omni_bpe *t)
{
    if (!t)
        return;
    free(t->strs);
    free(t->tok_off);
    free(t->tok_len);
    free(t->voc_off);
    free(t->voc_len);
    free(t->dec_off);
    free(t->dec_len);
    free(t->flags);
    free(t->vocab_tab);
    free(t->merge_tab);
    free(t->added);
    free(t->by_first);
    if (t->re)
        pcre2_code_free(t->re);
    free(t);
}

static int read_file(const char *path, char **out, size_t *len, struct omni_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return omni_error_set(err, OMNI_EIO, "cannot open tokenizer file '%s': %s", path,
                              strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            char *p = realloc(buf, cap + 1);
            if (!p) {
                free(buf);
                fclose(f);
                return omni_error_set(err, OMNI_ENOMEM, "reading tokenizer file '%s': out of memory",
                                      path);
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return omni_error_set(err, OMNI_EIO, "cannot read tokenizer file '%s': %s", path,
                              strerror(e));
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return OMNI_OK;
}

/* "type" of an optional object member must be want (or the member null/absent when allow_null). */
static int check_type(const cJSON *root, const char *member, const char *want, int allow_null,
                      const char *path, struct omni_error *err)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, member);
    if (!o || cJSON_IsNull(o)) {
        if (allow_null)
            return OMNI_OK;
        return omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': '%s' is missing (expected %s)",
                              path, member, want);
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(ty) || strcmp(ty->valuestring, want))
        return omni_error_set(err, OMNI_EUNSUPPORTED,
                              "tokenizer file '%s': %s.type is '%s'; only %s is supported", path,
                              member, cJSON_IsString(ty) ? ty->valuestring : "?", want);
    const cJSON *aps = cJSON_GetObjectItemCaseSensitive(o, "add_prefix_space");
    if (cJSON_IsTrue(aps))
        return omni_error_set(err, OMNI_EUNSUPPORTED,
                              "tokenizer file '%s': %s.add_prefix_space=true is not supported", path,
                              member);
    const cJSON *ur = cJSON_GetObjectItemCaseSensitive(o, "use_regex");
    if (cJSON_IsFalse(ur))
        return omni_error_set(err, OMNI_EUNSUPPORTED,
                              "tokenizer file '%s': %s.use_regex=false is not supported", path, member);
    return OMNI_OK;
}

static int add_token(struct omni_bpe *t, int32_t id, const char *s, size_t n, int special,
                     int normalized, const char *path, struct omni_error *err)
{
    if (id < 0 || id >= t->n_ids)
        return omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': added token id %d out of range",
                              path, (int)id);
    if (n == 0)
        return omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': added token %d is empty",
                              path, (int)id);
    uint32_t off;
    if (strs_add(t, s, n, &off))
        return omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
    t->tok_off[id] = off;
    t->tok_len[id] = (uint32_t)n;
    t->flags[id] = (uint8_t)(TOK_PRESENT | TOK_ADDED | (special ? TOK_SPECIAL : 0));
    t->added[t->n_added++] = (struct added_tok){id, off, (uint32_t)n, normalized};
    return OMNI_OK;
}

static const char *const omnimamba_added[] = {"<|soi|>", "<|eoi|>", "<|sot|>", "<|eot|>", "<|t2i|>",
                                              "<|mmu|>", "<|soc|>", "<|eoc|>", "<|lvg|>"};

/* \s of the reference regex engine (Oniguruma): Unicode White_Space. Spelled
 * out because PCRE2's \s (even with UCP) leaves out U+0085. */
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
/* GPT-2's pre-tokenizer: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static const char pretok_re[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static int cmp_added_len_desc(const void *a, const void *b, void *ctx)
{
    const struct omni_bpe *t = ctx;
    const struct added_tok *x = &t->added[*(const int *)a], *y = &t->added[*(const int *)b];
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* merges: "a b" (or ["a", "b"]) with rank = index */
static int build_merges(struct omni_bpe *t, const cJSON *merges, const char *path,
                        struct omni_error *err)
{
    size_t nm = (size_t)cJSON_GetArraySize(merges);
    t->merge_mask = pow2_at_least(nm * 2) - 1;
    t->merge_tab = malloc((t->merge_mask + 1) * sizeof *t->merge_tab);
    struct omni_bpe_str buf = {0};
    int rc = OMNI_OK;
    if (!t->merge_tab)
        goto oom;
    for (size_t i = 0; i <= t->merge_mask; i++)
        t->merge_tab[i] = (struct merge_ent){0, -1, -1};
    int32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges)
    {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = omni_error_set(err, OMNI_EFORMAT,
                                    "tokenizer file '%s': merge #%d '%s' is not two tokens separated by one space",
                                    path, (int)rank, e->valuestring);
                goto fail;
            }
            a = e->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) && cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            rc = omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': merge #%d is not a string",
                                path, (int)rank);
            goto fail;
        }
        buf.len = 0;
        if (str_append(&buf, a, la) || str_append(&buf, b, lb))
            goto oom;
        int32_t ia = vocab_find(t, a, la), ib = vocab_find(t, b, lb), iab = vocab_find(t, buf.data, buf.len);
        if (ia < 0 || ib < 0 || iab < 0) {
            const char *what = ia < 0 ? a : ib < 0 ? b : buf.data;
            int wl = ia < 0 ? (int)la : ib < 0 ? (int)lb : (int)buf.len;
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "tokenizer file '%s': merge #%d '%.*s %.*s': '%.*s' is not in the vocab",
                                path, (int)rank, (int)la, a, (int)lb, b, wl, what);
            goto fail;
        }
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t i = hash_u64(key) & t->merge_mask;
        while (t->merge_tab[i].new_id >= 0 && t->merge_tab[i].key != key)
            i = (i + 1) & t->merge_mask;
        /* a repeated pair: the later line wins, as in HF's map */
        t->merge_tab[i] = (struct merge_ent){key, rank, iab};
        rank++;
    }
    omni_bpe_str_free(&buf);
    return OMNI_OK;
oom:
    rc = omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
fail:
    omni_bpe_str_free(&buf);
    return rc;
}

static int build_tables(struct omni_bpe *t, const cJSON *vocab, const cJSON *merges,
                        const char *path, struct omni_error *err)
{
    /* vocab hash */
    size_t nv = (size_t)cJSON_GetArraySize(vocab);
    t->vocab_mask = pow2_at_least(nv * 2) - 1;
    t->vocab_tab = malloc((t->vocab_mask + 1) * sizeof *t->vocab_tab);
    if (!t->vocab_tab)
        return omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
    memset(t->vocab_tab, 0xff, (t->vocab_mask + 1) * sizeof *t->vocab_tab);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        int32_t id = (int32_t)e->valuedouble;
        size_t n = strlen(e->string);
        if (vocab_find(t, e->string, n) >= 0)
            return omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': vocab token '%s' twice",
                                  path, e->string);
        size_t i = hash_bytes(e->string, n) & t->vocab_mask;
        while (t->vocab_tab[i] >= 0)
            i = (i + 1) & t->vocab_mask;
        t->vocab_tab[i] = id;
    }

    /* byte-level initial symbols */
    uint16_t b2u[256];
    int16_t u2b[0x144];
    byte_table(b2u, u2b);
    for (int b = 0; b < 256; b++) {
        uint8_t u[4];
        size_t n = (size_t)utf8proc_encode_char(b2u[b], u);
        t->byte_id[b] = vocab_find(t, (const char *)u, n);
        /* C0, C1 and F5..FF never occur in UTF-8 text: GPT-NeoX has no token for them */
        int in_utf8 = b < 0xC0 || (b >= 0xC2 && b <= 0xF4);
        if (t->byte_id[b] < 0 && in_utf8)
            return omni_error_set(err, OMNI_EFORMAT,
                                  "tokenizer file '%s': vocab lacks the byte-level token of byte 0x%02x",
                                  path, b);
    }

    int rc = build_merges(t, merges, path, err);
    if (rc)
        return rc;

    /* what each id decodes to: its string through the unicode->byte table, or
     * its own UTF-8 when a character is outside the table */
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOK_PRESENT))
            continue;
        const uint8_t *s = (const uint8_t *)t->strs + t->tok_off[id];
        size_t n = t->tok_len[id], k = 0;
        uint8_t tmp[1024];
        int mapped = n <= sizeof tmp;
        for (size_t i = 0; mapped && i < n;) {
            utf8proc_int32_t c;
            utf8proc_ssize_t l = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &c);
            if (l <= 0 || c >= 0x144 || u2b[c] < 0) {
                mapped = 0;
                break;
            }
            tmp[k++] = (uint8_t)u2b[c];
            i += (size_t)l;
        }
        uint32_t off;
        int rc = mapped ? strs_add(t, tmp, k, &off) : 0;
        if (!mapped) {
            /* strs may move: copy the source out first */
            char *copy = malloc(n ? n : 1);
            if (!copy)
                return omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
            memcpy(copy, s, n);
            rc = strs_add(t, copy, n, &off);
            k = n;
            free(copy);
        }
        if (rc)
            return omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
        t->dec_off[id] = off;
        t->dec_len[id] = (uint32_t)k;
    }

    /* added tokens grouped by first byte, longest first */
    t->by_first = malloc((size_t)(t->n_added ? t->n_added : 1) * sizeof *t->by_first);
    if (!t->by_first)
        return omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
    int k = 0;
    for (int b = 0; b < 256; b++) {
        t->first_idx[b] = k;
        int start = k;
        for (int i = 0; i < t->n_added; i++)
            if ((uint8_t)t->strs[t->added[i].off] == b)
                t->by_first[k++] = i;
        qsort_r(t->by_first + start, (size_t)(k - start), sizeof(int), cmp_added_len_desc, t);
    }
    t->first_idx[256] = k;

    int ecode;
    PCRE2_SIZE eoff;
    t->re = pcre2_compile((PCRE2_SPTR)pretok_re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ecode,
                          &eoff, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        return omni_error_set(err, OMNI_EINTERNAL, "pre-tokenizer regex: %s at %zu", (char *)msg,
                              (size_t)eoff);
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    return OMNI_OK;
}

int omni_bpe_load(struct omni_bpe **out, const char *path, int omnimamba, struct omni_error *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    struct omni_bpe *t = NULL;
    int rc = read_file(path, &text, &len, err);
    if (rc)
        return rc;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        rc = omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s' is not valid JSON (error near byte %zu)",
                            path, at);
        goto fail;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        rc = omni_error_set(err, OMNI_EFORMAT,
                            "tokenizer file '%s' has no model.vocab object and model.merges array "
                            "(not an HF tokenizer.json?)",
                            path);
        goto fail;
    }
    if (cJSON_IsString(mtype) && strcmp(mtype->valuestring, "BPE")) {
        rc = omni_error_set(err, OMNI_EUNSUPPORTED, "tokenizer file '%s': model.type is '%s', not BPE",
                            path, mtype->valuestring);
        goto fail;
    }
    static const char *const must_be_null[] = {"continuing_subword_prefix", "end_of_word_suffix",
                                               "unk_token", "dropout"};
    for (size_t i = 0; i < sizeof must_be_null / sizeof must_be_null[0]; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(model, must_be_null[i]);
        if (o && !cJSON_IsNull(o)) {
            rc = omni_error_set(err, OMNI_EUNSUPPORTED,
                                "tokenizer file '%s': model.%s is set; only null is supported", path,
                                must_be_null[i]);
            goto fail;
        }
    }
    if ((rc = check_type(root, "normalizer", "NFC", 1, path, err)) ||
        (rc = check_type(root, "pre_tokenizer", "ByteLevel", 0, path, err)) ||
        (rc = check_type(root, "decoder", "ByteLevel", 1, path, err)))
        goto fail;

    t = calloc(1, sizeof *t);
    if (!t) {
        rc = omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
        goto fail;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    t->nfc = norm && !cJSON_IsNull(norm);
    /* ids: 0 .. max(vocab, added) (+ OmniMamba's 10) */
    int64_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e7 ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            rc = omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': vocab entry '%s' has no valid id",
                                path, e->string);
            goto fail;
        }
        if (e->valuedouble > (double)max_id)
            max_id = (int64_t)e->valuedouble;
    }
    int n_added = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e7 ||
            !cJSON_IsString(content)) {
            rc = omni_error_set(err, OMNI_EFORMAT,
                                "tokenizer file '%s': an added_tokens entry lacks a valid id or content",
                                path);
            goto fail;
        }
        static const char *const flags_off[] = {"single_word", "lstrip", "rstrip"};
        for (size_t i = 0; i < 3; i++)
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, flags_off[i]))) {
                rc = omni_error_set(err, OMNI_EUNSUPPORTED,
                                    "tokenizer file '%s': added token '%s' has %s=true (not supported)",
                                    path, content->valuestring, flags_off[i]);
                goto fail;
            }
        if (id->valuedouble > (double)max_id)
            max_id = (int64_t)id->valuedouble;
    }
    t->n_ids = (int32_t)(max_id + 1);
    int32_t base = t->n_ids;
    if (omnimamba) {
        t->n_ids += 1 + (int32_t)(sizeof omnimamba_added / sizeof omnimamba_added[0]);
        n_added += 1 + (int)(sizeof omnimamba_added / sizeof omnimamba_added[0]);
    }
    size_t n = (size_t)t->n_ids;
    t->tok_off = calloc(n, sizeof *t->tok_off);
    t->tok_len = calloc(n, sizeof *t->tok_len);
    t->voc_off = calloc(n, sizeof *t->voc_off);
    t->voc_len = calloc(n, sizeof *t->voc_len);
    t->dec_off = calloc(n, sizeof *t->dec_off);
    t->dec_len = calloc(n, sizeof *t->dec_len);
    t->flags = calloc(n, 1);
    t->added = calloc((size_t)(n_added ? n_added : 1), sizeof *t->added);
    if (!t->tok_off || !t->tok_len || !t->voc_off || !t->voc_len || !t->dec_off || !t->dec_len || !t->flags || !t->added) {
        rc = omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
        goto fail;
    }
    cJSON_ArrayForEach(e, vocab)
    {
        int32_t id = (int32_t)e->valuedouble;
        if (t->flags[id] & TOK_PRESENT) {
            rc = omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': vocab id %d used twice", path,
                                (int)id);
            goto fail;
        }
        uint32_t off;
        size_t l = strlen(e->string);
        if (l == 0) {
            rc = omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': vocab id %d is an empty string",
                                path, (int)id);
            goto fail;
        }
        if (strs_add(t, e->string, l, &off)) {
            rc = omni_error_set(err, OMNI_ENOMEM, "tokenizer file '%s': out of memory", path);
            goto fail;
        }
        t->tok_off[id] = t->voc_off[id] = off;
        t->tok_len[id] = t->voc_len[id] = (uint32_t)l;
        t->flags[id] = TOK_PRESENT;
    }
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        const cJSON *nz = cJSON_GetObjectItemCaseSensitive(e, "normalized");
        /* HF's default for a missing "normalized" is !special */
        int normalized = nz ? cJSON_IsTrue(nz) : !special;
        if ((rc = add_token(t, (int32_t)id->valuedouble, content->valuestring,
                            strlen(content->valuestring), special, normalized, path, err)))
            goto fail;
    }
    if (omnimamba) {
        /* add_special_tokens({'pad_token': '[PAD]'}) then add_tokens([...]) */
        if ((rc = add_token(t, base, "[PAD]", 5, 1, 0, path, err)))
            goto fail;
        for (size_t i = 0; i < sizeof omnimamba_added / sizeof omnimamba_added[0]; i++)
            if ((rc = add_token(t, base + 1 + (int32_t)i, omnimamba_added[i], strlen(omnimamba_added[i]),
                                0, 1, path, err)))
                goto fail;
    }
    for (int32_t id = 0; id < t->n_ids; id++)
        if (!(t->flags[id] & TOK_PRESENT)) {
            rc = omni_error_set(err, OMNI_EFORMAT, "tokenizer file '%s': id %d has no token (ids must be 0..%d without holes)",
                                path, (int)id, (int)t->n_ids - 1);
            goto fail;
        }
    if ((rc = build_tables(t, vocab, merges, path, err)))
        goto fail;
    cJSON_Delete(root);
    free(text);
    *out = t;
    return OMNI_OK;
fail:
    cJSON_Delete(root);
    free(text);
    omni_bpe_free(t);
    return rc;
}

/* ---- UTF-8 --------------------------------------------------------------------- */

/* Length and second-byte range of a sequence starting with lead byte b; 0 = invalid lead. */
static int utf8_lead(uint8_t b, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b == 0xE0) {
        *lo = 0xA0;
        return 3;
    }
    if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF)
        return 3;
    if (b == 0xED) { /* no surrogates */
        *hi = 0x9F;
        return 3;
    }
    if (b == 0xF0) {
        *lo = 0x90;
        return 4;
    }
    if (b >= 0xF1 && b <= 0xF3)
        return 4;
    if (b == 0xF4) { /* nothing above U+10FFFF */
        *hi = 0x8F;
        return 4;
    }
    return 0;
}

int omni_bpe_utf8_valid(const char *str, size_t len, size_t *bad_at)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint8_t lo, hi;
        int n = utf8_lead(s[i], &lo, &hi);
        if (!n || i + (size_t)n > len || s[i + 1] < lo || s[i + 1] > hi)
            goto bad;
        for (int k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                goto bad;
        i += (size_t)n;
    }
    return 1;
bad:
    if (bad_at)
        *bad_at = i;
    return 0;
}

/* ---- encoding ------------------------------------------------------------------- */

struct sym {
    int32_t id, prev, next;
    uint32_t len; /* bytes covered; 0 = merged into its left neighbour */
};
struct qent {
    int32_t rank, pos, new_id;
};
struct cache_ent {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_len;
};

struct enc {
    const struct omni_bpe *t;
    struct omni_bpe_ids *out;
    pcre2_match_data *md;
    struct sym *syms;
    struct qent *q;
    size_t cap, nq; /* syms holds cap, q holds 3 * cap */
    /* word cache for this call: piece bytes -> ids */
    struct cache_ent *ctab;
    size_t cmask, cused;
    struct omni_bpe_str ckeys;
    struct omni_bpe_ids cids;
};

static int q_less(const struct qent *a, const struct qent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void q_push(struct enc *c, struct qent e)
{
    size_t i = c->nq++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!q_less(&e, &c->q[p]))
            break;
        c->q[i] = c->q[p];
        i = p;
    }
    c->q[i] = e;
}

static struct qent q_pop(struct enc *c)
{
    struct qent top = c->q[0], last = c->q[--c->nq];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct qent *best = &last;
        if (l < c->nq && q_less(&c->q[l], best)) {
            m = l;
            best = &c->q[l];
        }
        if (r < c->nq && q_less(&c->q[r], best))
            m = r;
        if (m == i)
            break;
        c->q[i] = c->q[m];
        i = m;
    }
    if (c->nq)
        c->q[i] = last;
    return top;
}

static void try_pair(struct enc *c, int32_t pos)
{
    const struct sym *s = &c->syms[pos];
    const struct merge_ent *m = merge_find(c->t, s->id, c->syms[s->next].id);
    if (m)
        q_push(c, (struct qent){m->rank, pos, m->new_id});
}

/* BPE of one pre-tokenized piece (its raw bytes); appends ids to dst. */
static int bpe_piece(struct enc *c, const uint8_t *b, size_t n, struct omni_bpe_ids *dst)
{
    const struct omni_bpe *t = c->t;
    if (n == 1)
        return ids_push(dst, t->byte_id[b[0]]);
    if (n > c->cap) {
        size_t cap = pow2_at_least(n);
        struct sym *s = realloc(c->syms, cap * sizeof *s);
        if (!s)
            return -1;
        c->syms = s;
        /* each merge pushes at most 2 entries and removes a symbol: < 3n in all */
        struct qent *q = realloc(c->q, 3 * cap * sizeof *q);
        if (!q)
            return -1;
        c->q = q;
        c->cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        c->syms[i] = (struct sym){t->byte_id[b[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    c->nq = 0;
    for (size_t i = 0; i + 1 < n; i++)
        try_pair(c, (int32_t)i);
    while (c->nq) {
        struct qent top = q_pop(c);
        struct sym *s = &c->syms[top.pos];
        if (s->len == 0 || s->next < 0)
            continue;
        struct sym *r = &c->syms[s->next];
        const struct merge_ent *m = merge_find(t, s->id, r->id);
        if (!m || m->new_id != top.new_id)
            continue; /* stale entry */
        s->id = top.new_id;
        s->len += r->len;
        r->len = 0;
        s->next = r->next;
        if (s->next >= 0)
            c->syms[s->next].prev = top.pos;
        if (s->prev >= 0)
            try_pair(c, s->prev);
        if (s->next >= 0)
            try_pair(c, top.pos);
    }
    for (int32_t i = 0; i >= 0; i = c->syms[i].next)
        if (ids_push(dst, c->syms[i].id))
            return -1;
    return 0;
}

static int cached_piece(struct enc *c, const uint8_t *b, size_t n)
{
    if (n == 1)
        return ids_push(c->out, c->t->byte_id[b[0]]);
    uint64_t h = hash_bytes(b, n);
    size_t i = h & c->cmask;
    for (;;) {
        struct cache_ent *e = &c->ctab[i];
        if (!e->key_len)
            break;
        if (e->hash == h && e->key_len == n && !memcmp(c->ckeys.data + e->key_off, b, n)) {
            for (uint32_t k = 0; k < e->ids_len; k++)
                if (ids_push(c->out, c->cids.data[e->ids_off + k]))
                    return -1;
            return 0;
        }
        i = (i + 1) & c->cmask;
    }
    size_t ids_off = c->cids.len;
    if (bpe_piece(c, b, n, &c->cids))
        return -1;
    for (size_t k = ids_off; k < c->cids.len; k++)
        if (ids_push(c->out, c->cids.data[k]))
            return -1;
    /* remember it while the table is at most half full */
    if ((c->cused + 1) * 2 <= c->cmask + 1 && c->ckeys.len + n < UINT32_MAX) {
        size_t key_off = c->ckeys.len;
        if (str_append(&c->ckeys, b, n))
            return -1;
        c->ctab[i] = (struct cache_ent){h, (uint32_t)key_off, (uint32_t)n, (uint32_t)ids_off,
                                        (uint32_t)(c->cids.len - ids_off)};
        c->cused++;
    }
    return 0;
}

/* Pre-tokenize (GPT-2 regex) and BPE an NFC text without added tokens. */
static int encode_plain(struct enc *c, const char *s, size_t n, struct omni_error *err)
{
    size_t pos = 0;
    while (pos < n) {
        int m = pcre2_match(c->t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        size_t ms, me;
        if (m == PCRE2_ERROR_NOMATCH) {
            ms = me = n;
        } else if (m < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            return omni_error_set(err, OMNI_EINTERNAL, "pre-tokenizer regex failed at byte %zu: %s",
                                  pos, (char *)msg);
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
            ms = ov[0];
            me = ov[1];
            if (me <= ms) /* cannot happen: every alternative consumes */
                return omni_error_set(err, OMNI_EINTERNAL, "pre-tokenizer regex: empty match at %zu", ms);
        }
        /* text between matches is a piece too (HF splits with "Isolated") */
        if (ms > pos && cached_piece(c, (const uint8_t *)s + pos, ms - pos))
            goto oom;
        if (me > ms && cached_piece(c, (const uint8_t *)s + ms, me - ms))
            goto oom;
        pos = me;
    }
    return OMNI_OK;
oom:
    return omni_error_set(err, OMNI_ENOMEM, "tokenizer: out of memory");
}

/* Longest added token (of the wanted normalized kind) starting at s[i]; -1 = none. */
static int added_at(const struct omni_bpe *t, const char *s, size_t n, size_t i, int normalized)
{
    uint8_t b = (uint8_t)s[i];
    for (int k = t->first_idx[b]; k < t->first_idx[b + 1]; k++) {
        const struct added_tok *a = &t->added[t->by_first[k]];
        if (a->normalized == normalized && a->len <= n - i && !memcmp(t->strs + a->off, s + i, a->len))
            return t->by_first[k];
    }
    return -1;
}

/* Split on the normalized added tokens (text already NFC), BPE the rest. */
static int encode_normalized(struct enc *c, const char *s, size_t n, struct omni_error *err)
{
    const struct omni_bpe *t = c->t;
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        int a = added_at(t, s, n, i, 1);
        if (a < 0) {
            i++;
            continue;
        }
        int rc;
        if (i > start && (rc = encode_plain(c, s + start, i - start, err)))
            return rc;
        if (ids_push(c->out, t->added[a].id))
            return omni_error_set(err, OMNI_ENOMEM, "tokenizer: out of memory");
        i += t->added[a].len;
        start = i;
    }
    return start < n ? encode_plain(c, s + start, n - start, err) : OMNI_OK;
}

static int encode_segment(struct enc *c, const char *s, size_t n, struct omni_error *err)
{
    int ascii = 1;
    for (size_t i = 0; i < n && ascii; i++)
        ascii = (uint8_t)s[i] < 0x80;
    if (ascii || !c->t->nfc) /* NFC leaves ASCII alone */
        return encode_normalized(c, s, n, err);
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    if (m < 0) {
        free(nfc);
        return omni_error_set(err, m == UTF8PROC_ERROR_NOMEM ? OMNI_ENOMEM : OMNI_EINVAL,
                              "NFC normalisation failed: %s", utf8proc_errmsg(m));
    }
    int rc = encode_normalized(c, (const char *)nfc, (size_t)m, err);
    free(nfc);
    return rc;
}

int omni_bpe_encode(const struct omni_bpe *t, const char *text, size_t len,
                    struct omni_bpe_ids *out, struct omni_error *err)
{
    size_t bad;
    if (!omni_bpe_utf8_valid(text, len, &bad))
        return omni_error_set(err, OMNI_EINVAL, "invalid UTF-8 at byte %zu (0x%02x) of the text", bad,
                              (unsigned)(uint8_t)text[bad]);
    struct enc c = {.t = t, .out = out};
    int rc = OMNI_OK;
    c.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    c.cmask = pow2_at_least(len / 2 + 16) - 1;
    c.ctab = calloc(c.cmask + 1, sizeof *c.ctab);
    if (!c.md || !c.ctab) {
        rc = omni_error_set(err, OMNI_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    /* the non-normalized added tokens (specials) split the raw text */
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        int a = added_at(t, text, len, i, 0);
        if (a < 0) {
            i++;
            continue;
        }
        if (i > start && (rc = encode_segment(&c, text + start, i - start, err)))
            goto done;
        if (ids_push(out, t->added[a].id)) {
            rc = omni_error_set(err, OMNI_ENOMEM, "tokenizer: out of memory");
            goto done;
        }
        i += t->added[a].len;
        start = i;
    }
    if (start < len)
        rc = encode_segment(&c, text + start, len - start, err);
done:
    if (c.md)
        pcre2_match_data_free(c.md);
    free(c.syms);
    free(c.q);
    free(c.ctab);
    omni_bpe_str_free(&c.ckeys);
    omni_bpe_ids_free(&c.cids);
    return rc;
}

/* ---- decoding ------------------------------------------------------------------- */

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

void omni_bpe_stream_init(struct omni_bpe_stream *s) { memset(s, 0, sizeof *s); }

/* One byte through the lossy UTF-8 state machine (each maximal ill-formed
 * subsequence becomes one U+FFFD, like Rust's from_utf8_lossy). */
static int stream_byte(struct omni_bpe_stream *s, uint8_t b, struct omni_bpe_str *out)
{
    if (s->n) {
        if (b >= s->lo && b <= s->hi) {
            s->carry[s->n++] = b;
            s->lo = 0x80;
            s->hi = 0xBF;
            if (--s->need == 0) {
                int rc = str_append(out, s->carry, s->n);
                s->n = 0;
                return rc;
            }
            return 0;
        }
        s->n = s->need = 0;
        if (str_append(out, replacement, 3))
            return -1;
        /* b starts afresh */
    }
    if (b < 0x80)
        return str_append(out, &b, 1);
    uint8_t lo, hi;
    int len = utf8_lead(b, &lo, &hi);
    if (!len)
        return str_append(out, replacement, 3);
    s->carry[0] = b;
    s->n = 1;
    s->need = (uint8_t)(len - 1);
    s->lo = lo;
    s->hi = hi;
    return 0;
}

int omni_bpe_stream_feed(const struct omni_bpe *t, struct omni_bpe_stream *s, const int32_t *ids,
                         size_t n, int skip_special, struct omni_bpe_str *out, struct omni_error *err)
{
    if (str_reserve(out, 0))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids)
            return omni_error_set(err, OMNI_ERANGE,
                                  "token id %d at position %zu is out of range (the tokenizer has ids 0..%d)",
                                  (int)id, i, (int)t->n_ids - 1);
        if (skip_special && (t->flags[id] & TOK_SPECIAL))
            continue;
        const uint8_t *b = (const uint8_t *)t->strs + t->dec_off[id];
        uint32_t len = t->dec_len[id];
        for (uint32_t k = 0; k < len; k++) {
            /* fast path: plain ASCII with nothing pending */
            if (!s->n && b[k] < 0x80) {
                uint32_t e = k;
                while (e < len && b[e] < 0x80)
                    e++;
                if (str_append(out, b + k, e - k))
                    goto oom;
                k = e - 1;
                continue;
            }
            if (stream_byte(s, b[k], out))
                goto oom;
        }
    }
    return OMNI_OK;
oom:
    return omni_error_set(err, OMNI_ENOMEM, "tokenizer: out of memory while decoding");
}

int omni_bpe_stream_flush(struct omni_bpe_stream *s, struct omni_bpe_str *out, struct omni_error *err)
{
    int rc = str_reserve(out, 0);
    if (!rc && s->n)
        rc = str_append(out, replacement, 3);
    s->n = s->need = 0;
    return rc ? omni_error_set(err, OMNI_ENOMEM, "tokenizer: out of memory while decoding") : OMNI_OK;
}

int omni_bpe_decode(const struct omni_bpe *t, const int32_t *ids, size_t n, int skip_special,
                    struct omni_bpe_str *out, struct omni_error *err)
{
    struct omni_bpe_stream s;
    omni_bpe_stream_init(&s);
    int rc = omni_bpe_stream_feed(t, &s, ids, n, skip_special, out, err);
    return rc ? rc : omni_bpe_stream_flush(&s, out, err);
}
