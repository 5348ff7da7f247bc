/* plugins/bpe_tokenizer/plugin.c - the bpe_tokenizer stage (CPU).
 *
 *   text: (B, n) u8 NUL-padded UTF-8  ->  ids: (B, L) i32      (encode)
 *   ids:  (B, T) i32                  ->  text: (B, m) u8      (decode)
 *
 * Either input or both may be given in one call; each output is produced only
 * when its input was. Encoding: the optional template ("USER: {} ASSISTANT:")
 * wraps each row and the result is stripped of leading and trailing
 * whitespace (Python's str.strip(), as OmniMamba's script does), then
 * tokenized (bpe.h). Rows of different token counts are an error unless
 * pad_left_id is set. Decoding streams: the request state keeps each row's
 * unfinished UTF-8 character from call to call (prefill and loop alike), so
 * a call outputs only the characters its ids complete and the concatenated
 * outputs of a request equal the decode of its whole sequence. With
 * flush: true (param or request option) every call also ends the sequence:
 * an unfinished character becomes U+FFFD, as in HF's decode (for one-shot
 * decoding of whole sequences). Output text rows are NUL-padded and always
 * end with at least one NUL.
 *
 * Tokenizers are loaded in create from params.file and shared (read-only,
 * refcounted) between stages that name the same unchanged file.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "omni/plugin.h"

/* ---- shared tokenizers ----------------------------------------------------------- */

struct shared_tok {
    struct shared_tok *next;
    char *path;
    int omnimamba;
    struct stat st;
    int refs;
    struct omni_bpe *bpe;
};

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared_tok *shared_list;

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int shared_get(const char *path, int omnimamba, struct shared_tok **out, struct omni_error *err)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    int have_st = stat(path, &st) == 0;
    int rc = OMNI_OK;
    pthread_mutex_lock(&shared_lock);
    for (struct shared_tok *e = shared_list; have_st && e; e = e->next)
        if (e->omnimamba == omnimamba && !strcmp(e->path, path) && same_file(&e->st, &st)) {
            e->refs++;
            *out = e;
            goto done;
        }
    struct shared_tok *e = calloc(1, sizeof *e);
    char *p = strdup(path);
    if (!e || !p) {
        free(e);
        free(p);
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = omni_bpe_load(&e->bpe, path, omnimamba, err))) {
        free(e);
        free(p);
        goto done;
    }
    e->path = p;
    e->omnimamba = omnimamba;
    e->st = st;
    e->refs = 1;
    /* a file we could not stat is never matched again: st_ino 0 and the flag */
    if (have_st) {
        e->next = shared_list;
        shared_list = e;
    }
    *out = e;
done:
    pthread_mutex_unlock(&shared_lock);
    return rc;
}

static void shared_put(struct shared_tok *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&shared_lock);
    if (--e->refs == 0) {
        for (struct shared_tok **pp = &shared_list; *pp; pp = &(*pp)->next)
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        omni_bpe_free(e->bpe);
        free(e->path);
        free(e);
    }
    pthread_mutex_unlock(&shared_lock);
}

/* ---- the stage ------------------------------------------------------------------ */

struct tok_stage {
    struct omni_stage base;
    struct shared_tok *tok;
    char *tmpl_pre, *tmpl_post; /* template split at "{}"; NULL = no template */
    int skip_special;
    int token_strings;
    int flush;
    int has_pad;
    int32_t pad_id;
};

struct tok_state {
    int64_t rows;
    struct omni_bpe_stream *st;
};

enum { IN_TEXT = 0, IN_IDS = 1, OUT_IDS = 0, OUT_TEXT = 1 };

static const char *const known_params[] = {"file",          "omnimamba", "template",   "skip_special",
                                           "token_strings", "flush",     "pad_left_id"};

static void tok_destroy(struct omni_stage *st)
{
    struct tok_stage *s = (struct tok_stage *)st;
    if (!s)
        return;
    shared_put(s->tok);
    free(s->tmpl_pre);
    free(s->tmpl_post);
    free(s);
}

static int tok_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                      struct omni_error *err)
{
    const struct omni_params *p = cfg->params;
    int rc, omnimamba = 0;
    int64_t pad = -1;
    *out = NULL;
    for (int i = 0; omni_params_key(p, i); i++) {
        const char *k = omni_params_key(p, i);
        size_t j = 0;
        while (j < OMNI_ARRAY_LEN(known_params) && strcmp(known_params[j], k))
            j++;
        if (j == OMNI_ARRAY_LEN(known_params))
            return omni_error_set(err, OMNI_EINVAL,
                                  "%s: unknown param '%s' (known: file, omnimamba, template, "
                                  "skip_special, token_strings, flush, pad_left_id)",
                                  omni_params_where(p, k), k);
    }
    const char *file = omni_params_str(p, "file", NULL);
    if (!file || !*file)
        return omni_error_set(err, OMNI_EINVAL,
                              "param 'file' is required: the path of the tokenizer.json "
                              "(GPT-NeoX-20B: shared/data/tokenizer/gpt-neox-20b-tokenizer.json)");
    struct tok_stage *s = calloc(1, sizeof *s);
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    if ((rc = omni_params_bool(p, "omnimamba", 0, &omnimamba, err)) ||
        (rc = omni_params_bool(p, "skip_special", 0, &s->skip_special, err)) ||
        (rc = omni_params_bool(p, "token_strings", 0, &s->token_strings, err)) ||
        (rc = omni_params_bool(p, "flush", 0, &s->flush, err)) ||
        (rc = omni_params_int(p, "pad_left_id", -1, &pad, err)))
        goto fail;
    const char *tmpl = omni_params_str(p, "template", NULL);
    if (tmpl) {
        const char *hole = strstr(tmpl, "{}");
        if (!hole) {
            rc = omni_error_set(err, OMNI_EINVAL, "%s: param 'template' (\"%s\") has no '{}' where the text goes",
                                omni_params_where(p, "template"), tmpl);
            goto fail;
        }
        s->tmpl_pre = strndup(tmpl, (size_t)(hole - tmpl));
        s->tmpl_post = strdup(hole + 2);
        if (!s->tmpl_pre || !s->tmpl_post) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if ((rc = shared_get(file, omnimamba, &s->tok, err))) {
        omni_error_prefix(err, "param 'file': ");
        goto fail;
    }
    if (omni_params_has(p, "pad_left_id")) {
        int32_t n = omni_bpe_n_ids(s->tok->bpe);
        if (pad < 0 || pad >= n) {
            rc = omni_error_set(err, OMNI_EINVAL, "%s: param 'pad_left_id' is %lld; the tokenizer has ids 0..%d",
                                omni_params_where(p, "pad_left_id"), (long long)pad, (int)n - 1);
            goto fail;
        }
        s->has_pad = 1;
        s->pad_id = (int32_t)pad;
    }
    *out = &s->base;
    return OMNI_OK;
fail:
    tok_destroy(&s->base);
    return rc;
}

static int tok_state_new(struct omni_stage *st, const struct omni_run_ctx *ctx, void **state,
                         struct omni_error *err)
{
    struct tok_state *t = calloc(1, sizeof *t);
    if (!t)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    *state = t;
    return OMNI_OK;
}

static void tok_state_free(struct omni_stage *st, void *state)
{
    struct tok_state *t = state;
    if (!t)
        return;
    free(t->st);
    free(t);
}

/* Python's str.isspace() set (what .strip() removes). */
static int py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Decode the (valid) UTF-8 character at s; returns its length. */
static size_t utf8_at(const uint8_t *s, uint32_t *c)
{
    if (s[0] < 0x80) {
        *c = s[0];
        return 1;
    }
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    uint32_t v = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++)
        v = (v << 6) | (s[i] & 0x3F);
    *c = v;
    return n;
}

static void py_strip(const char *s, size_t n, size_t *start, size_t *end)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t a = 0, b = n;
    uint32_t c;
    while (a < b) {
        size_t l = utf8_at(u + a, &c);
        if (!py_space(c))
            break;
        a += l;
    }
    while (b > a) {
        size_t k = b - 1;
        while (k > a && (u[k] & 0xC0) == 0x80)
            k--;
        utf8_at(u + k, &c);
        if (!py_space(c))
            break;
        b = k;
    }
    *start = a;
    *end = b;
}

/* A host, contiguous view of t: a new reference, or a copy when needed. */
static int host_contig(const struct omni_tensor *t, struct omni_tensor *h, struct omni_error *err)
{
    if (t->device.type == OMNI_DEVICE_CPU && omni_tensor_is_contiguous(t)) {
        omni_tensor_ref(h, t);
        return OMNI_OK;
    }
    return omni_tensor_copy_to(h, t, OMNI_CPU, err);
}

static int tok_encode(struct tok_stage *s, const struct omni_tensor *in, struct omni_tensor *out,
                      struct omni_error *err)
{
    const char *sn = s->base.name ? s->base.name : "bpe_tokenizer";
    const struct omni_bpe *bpe = s->tok->bpe;
    const int64_t dims[2] = {-1, -1};
    struct omni_tensor h = {0};
    struct omni_bpe_ids *rows = NULL;
    struct omni_bpe_str buf = {0};
    int64_t B = 0;
    int rc = omni_check_tensor(&s->base, "text", in, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), 2, dims, err);
    if (rc)
        return rc;
    if ((rc = host_contig(in, &h, err)))
        return omni_error_prefix(err, "stage '%s': input 'text': ", sn);
    B = h.shape[0];
    const int64_t n = h.shape[1];
    const char *data = omni_tensor_data(&h);
    rows = calloc((size_t)(B ? B : 1), sizeof *rows);
    if (!rows) {
        rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", sn);
        goto done;
    }
    size_t maxlen = 0, minlen = SIZE_MAX;
    int64_t max_row = 0, min_row = 0;
    for (int64_t b = 0; b < B; b++) {
        const char *row = data + b * n;
        size_t len = strnlen(row, (size_t)n), bad;
        if (!omni_bpe_utf8_valid(row, len, &bad)) {
            rc = omni_error_set(err, OMNI_EINVAL, "stage '%s': input 'text' row %lld: invalid UTF-8 at byte %zu (0x%02x)",
                                sn, (long long)b, bad, (unsigned)(uint8_t)row[bad]);
            goto done;
        }
        const char *text = row;
        if (s->tmpl_pre) {
            buf.len = 0;
            size_t lp = strlen(s->tmpl_pre), lq = strlen(s->tmpl_post);
            char *p = realloc(buf.data, lp + len + lq + 1);
            if (!p) {
                rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", sn);
                goto done;
            }
            buf.data = p;
            memcpy(p, s->tmpl_pre, lp);
            memcpy(p + lp, row, len);
            memcpy(p + lp + len, s->tmpl_post, lq);
            size_t a, e;
            py_strip(p, lp + len + lq, &a, &e);
            text = p + a;
            len = e - a;
        }
        if ((rc = omni_bpe_encode(bpe, text, len, &rows[b], err))) {
            omni_error_prefix(err, "stage '%s': input 'text' row %lld%s: ", sn, (long long)b,
                              s->tmpl_pre ? " (after the template)" : "");
            goto done;
        }
        if (rows[b].len > maxlen) {
            maxlen = rows[b].len;
            max_row = b;
        }
        if (rows[b].len < minlen) {
            minlen = rows[b].len;
            min_row = b;
        }
    }
    if (B > 1 && minlen != maxlen && !s->has_pad) {
        rc = omni_error_set(err, OMNI_EINVAL,
                            "stage '%s': batch rows tokenize to different lengths (%zu and %zu, rows %lld and %lld); "
                            "set param pad_left_id to left-pad them (e.g. 50277 = [PAD] with omnimamba: true)",
                            sn, minlen, maxlen, (long long)min_row, (long long)max_row);
        goto done;
    }
    const int64_t shape[2] = {B, (int64_t)maxlen};
    if ((rc = omni_tensor_alloc(out, OMNI_DTYPE_I32, 2, shape, OMNI_CPU, err))) {
        omni_error_prefix(err, "stage '%s': output 'ids': ", sn);
        goto done;
    }
    int32_t *o = omni_tensor_data(out);
    for (int64_t b = 0; b < B; b++) {
        size_t padn = maxlen - rows[b].len;
        for (size_t i = 0; i < padn; i++)
            o[(size_t)b * maxlen + i] = s->pad_id;
        if (rows[b].len)
            memcpy(o + (size_t)b * maxlen + padn, rows[b].data, rows[b].len * sizeof(int32_t));
    }
done:
    for (int64_t b = 0; rows && b < B; b++)
        omni_bpe_ids_free(&rows[b]);
    free(rows);
    free(buf.data);
    omni_tensor_release(&h);
    return rc;
}

static int tok_decode(struct tok_stage *s, struct tok_state *state, const struct omni_tensor *in,
                      const struct omni_run_ctx *ctx, struct omni_tensor *out, struct omni_error *err)
{
    const char *sn = s->base.name ? s->base.name : "bpe_tokenizer";
    const struct omni_bpe *bpe = s->tok->bpe;
    const int64_t dims[2] = {-1, -1};
    struct omni_tensor h = {0};
    struct omni_bpe_str *rows = NULL;
    int skip = s->skip_special, strings = s->token_strings, flush = s->flush;
    int64_t B = 0;
    int rc = omni_check_tensor(&s->base, "ids", in, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), 2, dims, err);
    if (rc)
        return rc;
    if (ctx && ctx->options &&
        ((rc = omni_params_bool(ctx->options, "skip_special", skip, &skip, err)) ||
         (rc = omni_params_bool(ctx->options, "token_strings", strings, &strings, err)) ||
         (rc = omni_params_bool(ctx->options, "flush", flush, &flush, err))))
        return omni_error_prefix(err, "stage '%s': request options: ", sn);
    if ((rc = host_contig(in, &h, err)))
        return omni_error_prefix(err, "stage '%s': input 'ids': ", sn);
    B = h.shape[0];
    const int64_t T = h.shape[1];
    const int32_t *ids = omni_tensor_data(&h);
    const int streaming = state && !strings;
    if (streaming && state->rows != B) {
        if (state->rows) {
            rc = omni_error_set(err, OMNI_ESHAPE,
                                "stage '%s': input 'ids' has %lld rows but this request decoded %lld rows so far",
                                sn, (long long)B, (long long)state->rows);
            goto done;
        }
        state->st = calloc((size_t)(B ? B : 1), sizeof *state->st);
        if (!state->st) {
            rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", sn);
            goto done;
        }
        for (int64_t b = 0; b < B; b++)
            omni_bpe_stream_init(&state->st[b]);
        state->rows = B;
    }
    rows = calloc((size_t)(B ? B : 1), sizeof *rows);
    if (!rows) {
        rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", sn);
        goto done;
    }
    size_t maxlen = 0;
    for (int64_t b = 0; b < B; b++) {
        const int32_t *r = ids + b * T;
        if (strings) {
            for (int64_t i = 0; i < T && !rc; i++) {
                size_t len;
                const char *tk = omni_bpe_token(bpe, r[i], &len);
                if (!tk)
                    rc = omni_error_set(err, OMNI_ERANGE,
                                        "token id %d at position %lld is out of range (the tokenizer has ids 0..%d)",
                                        (int)r[i], (long long)i, (int)omni_bpe_n_ids(bpe) - 1);
                else if (!(skip && omni_bpe_is_special(bpe, r[i]))) {
                    struct omni_bpe_str *o = &rows[b];
                    char *p = o->len + len + 1 > o->cap ? realloc(o->data, 2 * (o->len + len + 1)) : o->data;
                    if (!p) {
                        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
                        break;
                    }
                    if (p != o->data) {
                        o->data = p;
                        o->cap = 2 * (o->len + len + 1);
                    }
                    memcpy(o->data + o->len, tk, len);
                    o->len += len;
                    o->data[o->len] = '\0';
                }
            }
        } else if (streaming) {
            rc = omni_bpe_stream_feed(bpe, &state->st[b], r, (size_t)T, skip, &rows[b], err);
            if (!rc && flush)
                rc = omni_bpe_stream_flush(&state->st[b], &rows[b], err);
        } else {
            rc = omni_bpe_decode(bpe, r, (size_t)T, skip, &rows[b], err);
        }
        if (rc) {
            omni_error_prefix(err, "stage '%s': input 'ids' row %lld: ", sn, (long long)b);
            goto done;
        }
        if (rows[b].len > maxlen)
            maxlen = rows[b].len;
    }
    const int64_t shape[2] = {B, (int64_t)maxlen + 1};
    if ((rc = omni_tensor_alloc(out, OMNI_DTYPE_U8, 2, shape, OMNI_CPU, err))) {
        omni_error_prefix(err, "stage '%s': output 'text': ", sn);
        goto done;
    }
    char *o = omni_tensor_data(out);
    for (int64_t b = 0; b < B; b++)
        if (rows[b].len)
            memcpy(o + (size_t)b * (maxlen + 1), rows[b].data, rows[b].len);
done:
    for (int64_t b = 0; rows && b < B; b++)
        omni_bpe_str_free(&rows[b]);
    free(rows);
    omni_tensor_release(&h);
    return rc;
}

static int tok_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct tok_stage *s = (struct tok_stage *)st;
    const char *sn = s->base.name ? s->base.name : "bpe_tokenizer";
    if (io->n_in < 2 || io->n_out < 2)
        return omni_error_set(err, OMNI_EINTERNAL, "stage '%s': expected 2 inputs and 2 outputs, got %u and %u",
                              sn, io->n_in, io->n_out);
    const struct omni_tensor *text = &io->in[IN_TEXT], *ids = &io->in[IN_IDS];
    if (!text->buf && !ids->buf)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s': no input: give 'text' (to tokenize) or 'ids' (to decode)", sn);
    int rc;
    if (text->buf) {
        omni_tensor_release(&io->out[OUT_IDS]);
        if ((rc = tok_encode(s, text, &io->out[OUT_IDS], err)))
            return rc;
    }
    if (ids->buf) {
        omni_tensor_release(&io->out[OUT_TEXT]);
        if ((rc = tok_decode(s, state, ids, io->ctx, &io->out[OUT_TEXT], err))) {
            omni_tensor_release(&io->out[OUT_IDS]);
            return rc;
        }
    }
    return OMNI_OK;
}

static const struct omni_port_desc tok_ports[] = {
    {"text", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,N",
     OMNI_PORT_OPTIONAL | OMNI_PORT_HOST | OMNI_PORT_STRING,
     "UTF-8 text to tokenize, one NUL-padded string per row"},
    {"ids", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,T", OMNI_PORT_OPTIONAL | OMNI_PORT_HOST,
     "token ids to decode (in loops: the new ids of this step)"},
    {"ids", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,L", OMNI_PORT_OPTIONAL | OMNI_PORT_HOST,
     "the ids of 'text' (only when 'text' was given)"},
    {"text", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,M",
     OMNI_PORT_OPTIONAL | OMNI_PORT_HOST | OMNI_PORT_STRING,
     "the text of 'ids', NUL-padded (only when 'ids' were given): the characters these ids complete"},
};

static const struct omni_stage_ops tok_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = tok_create,
    .destroy = tok_destroy,
    .forward = tok_forward,
    .state_new = tok_state_new,
    .state_free = tok_state_free,
};

static const struct omni_plugin_desc tok_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "bpe_tokenizer",
    .version = "0.1.0",
    .description = "GPT-NeoX-20B byte-level BPE (HF tokenizer.json): text to ids and ids to text, streaming",
    .ops = &tok_ops,
    .ports = tok_ports,
    .n_ports = OMNI_ARRAY_LEN(tok_ports),
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .adapter = NULL,
    .params_doc = "file: path of the tokenizer.json (required)\n"
                  "omnimamba: add OmniMamba's tokens [PAD]=50277, <|soi|>=50278 ... <|lvg|>=50286 (default false)\n"
                  "template: encode template with '{}' for the text, result stripped, e.g. \"USER: {} ASSISTANT:\"\n"
                  "skip_special: decoding drops special tokens (<|endoftext|>, <|padding|>, [PAD]) (default false)\n"
                  "token_strings: decoding outputs the tokens' byte-level strings (\"\xC4\xA0world\") concatenated (default false)\n"
                  "flush: every decode call ends the sequence: an unfinished UTF-8 character becomes U+FFFD (default false: it waits for the next call)\n"
                  "pad_left_id: left-pad batch rows of different token counts with this id (default: error)\n"
                  "(skip_special, token_strings and flush may be overridden per request in the request options)\n",
};

OMNI_PLUGIN_DEFINE(tok_desc)
