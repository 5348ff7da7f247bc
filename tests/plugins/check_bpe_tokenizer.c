/* tests/plugins/check_bpe_tokenizer.c - the GPT-NeoX-20B BPE tokenizer
 * (plugins/bpe_tokenizer/bpe.c, linked in) and the bpe_tokenizer stage.
 *
 * References (shared/data/tokenizer/SOURCE.md): 428 text -> ids cases and
 * their decode produced by HF's Rust tokenizers (the 7 "omnimamba" ones with
 * OmniMamba's run-time tokens added), and llama.cpp's 47 MPT vocab cases.
 * Hand-worked cases cover streaming across split UTF-8 characters, the
 * lossy decode of ill-formed bytes and error messages. Prints load and
 * encode timings. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugins/bpe_tokenizer/bpe.h"
#include "../common/testutil.h"
#include "omni/harness.h"

static struct omni_error err;

#define OK(call)                                                                         \
    do {                                                                                 \
        omni_error_clear(&err);                                                          \
        int rc_ = (call);                                                                \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg); \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char tok_path[1024];

static const char *tokenizer_json(void)
{
    snprintf(tok_path, sizeof tok_path, "%s", tu_shared_path("data/tokenizer/gpt-neox-20b-tokenizer.json"));
    return tok_path;
}

static struct omni_bpe *load(int omnimamba)
{
    struct omni_bpe *t = NULL;
    OK(omni_bpe_load(&t, tokenizer_json(), omnimamba, &err));
    return t;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert(b != NULL);
    ck_assert_int_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return b;
}

/* ---- the test vectors ----------------------------------------------------------
 * cJSON's strings are NUL-terminated, so "\u0000" (one case) is read as the
 * private-use U+E000 (absent from the file) and turned back into NUL here. */
struct vec {
    int i;
    int omnimamba;
    char *text, *decoded;
    size_t text_len, decoded_len;
    int32_t *ids;
    size_t n_ids;
};

static char *unescape_nul(const char *s, size_t *len)
{
    size_t n = strlen(s), k = 0;
    char *o = malloc(n + 1);
    ck_assert(o != NULL);
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && (uint8_t)s[i] == 0xEE && (uint8_t)s[i + 1] == 0x80 && (uint8_t)s[i + 2] == 0x80) {
            o[k++] = '\0';
            i += 2;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    *len = k;
    return o;
}

static struct vec *load_vectors(int *count)
{
    size_t len;
    char *all = read_all(tu_shared_path("data/tokenizer/gpt-neox-20b-testvectors.jsonl"), &len);
    int cap = 512, n = 0;
    struct vec *v = calloc((size_t)cap, sizeof *v);
    ck_assert(v != NULL);
    char *line = all;
    while (line < all + len) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line) {
            /* "\u0000" -> "\uE000" (same length) */
            for (char *p = strstr(line, "\\u0000"); p; p = strstr(p, "\\u0000"))
                p[2] = 'E';
            cJSON *o = cJSON_Parse(line);
            ck_assert_msg(o != NULL, "bad JSON line %d", n);
            ck_assert(n < cap);
            struct vec *e = &v[n++];
            e->i = cJSON_GetObjectItem(o, "i")->valueint;
            e->omnimamba = strcmp(cJSON_GetObjectItem(o, "tokenizer")->valuestring, "gpt-neox-20b") != 0;
            e->text = unescape_nul(cJSON_GetObjectItem(o, "text")->valuestring, &e->text_len);
            e->decoded = unescape_nul(cJSON_GetObjectItem(o, "decoded")->valuestring, &e->decoded_len);
            cJSON *ids = cJSON_GetObjectItem(o, "ids");
            e->n_ids = (size_t)cJSON_GetArraySize(ids);
            e->ids = malloc((e->n_ids + 1) * sizeof *e->ids);
            for (size_t k = 0; k < e->n_ids; k++)
                e->ids[k] = (int32_t)cJSON_GetArrayItem(ids, (int)k)->valueint;
            cJSON_Delete(o);
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    free(all);
    *count = n;
    return v;
}

static void free_vectors(struct vec *v, int n)
{
    for (int i = 0; i < n; i++) {
        free(v[i].text);
        free(v[i].decoded);
        free(v[i].ids);
    }
    free(v);
}

static int ids_equal(const struct omni_bpe_ids *got, const int32_t *want, size_t n)
{
    return got->len == n && (n == 0 || !memcmp(got->data, want, n * sizeof *want));
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "%s:", label);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

START_TEST(test_testvectors_encode_exactly)
{
    int n, bad = 0, n_omni = 0;
    struct vec *v = load_vectors(&n);
    ck_assert_int_eq(n, 428);
    double t0 = now_s();
    struct omni_bpe *t = load(0), *tm = load(1);
    double t1 = now_s();
    double enc = 0;
    for (int k = 0; k < n; k++) {
        struct omni_bpe_ids got = {0};
        n_omni += v[k].omnimamba;
        double a = now_s();
        OK(omni_bpe_encode(v[k].omnimamba ? tm : t, v[k].text, v[k].text_len, &got, &err));
        enc += now_s() - a;
        if (!ids_equal(&got, v[k].ids, v[k].n_ids)) {
            bad++;
            fprintf(stderr, "case %d (%s):\n", v[k].i, v[k].text);
            print_ids("  want", v[k].ids, v[k].n_ids);
            print_ids("  got ", got.data, got.len);
        }
        omni_bpe_ids_free(&got);
    }
    printf("bpe_tokenizer: load %.1f ms per tokenizer.json; 428 vectors encoded in %.2f ms\n",
           (t1 - t0) * 1e3 / 2, enc * 1e3);
    ck_assert_int_eq(n_omni, 7);
    ck_assert_msg(bad == 0, "%d of %d vectors encode differently", bad, n);
    ck_assert_msg(enc < 0.5, "encoding the 428 vectors took %.3f s", enc);
    omni_bpe_free(t);
    omni_bpe_free(tm);
    free_vectors(v, n);
}
END_TEST

START_TEST(test_testvectors_decode_to_reference_text)
{
    int n, bad = 0;
    struct vec *v = load_vectors(&n);
    struct omni_bpe *t = load(0), *tm = load(1);
    for (int k = 0; k < n; k++) {
        struct omni_bpe_str s = {0};
        OK(omni_bpe_decode(v[k].omnimamba ? tm : t, v[k].ids, v[k].n_ids, 0, &s, &err));
        if (s.len != v[k].decoded_len || memcmp(s.data, v[k].decoded, s.len)) {
            bad++;
            fprintf(stderr, "case %d: decoded '%s', want '%s'\n", v[k].i, s.data, v[k].decoded);
        }
        omni_bpe_str_free(&s);
    }
    ck_assert_msg(bad == 0, "%d of %d vectors decode differently", bad, n);
    omni_bpe_free(t);
    omni_bpe_free(tm);
    free_vectors(v, n);
}
END_TEST

/* Feeding ids one at a time (and in chunks of 3) gives pieces of whole
 * characters whose concatenation is the whole decode. */
START_TEST(test_streaming_decode_equals_whole_decode)
{
    int n, bad = 0, split_chars = 0;
    struct vec *v = load_vectors(&n);
    struct omni_bpe *t = load(0), *tm = load(1);
    for (int k = 0; k < n; k++) {
        const struct omni_bpe *tt = v[k].omnimamba ? tm : t;
        struct omni_bpe_str whole = {0};
        OK(omni_bpe_decode(tt, v[k].ids, v[k].n_ids, 0, &whole, &err));
        for (size_t chunk = 1; chunk <= 3; chunk += 2) {
            struct omni_bpe_stream st;
            struct omni_bpe_str acc = {0};
            omni_bpe_stream_init(&st);
            for (size_t i = 0; i < v[k].n_ids; i += chunk) {
                size_t m = v[k].n_ids - i < chunk ? v[k].n_ids - i : chunk;
                struct omni_bpe_str piece = {0};
                OK(omni_bpe_stream_feed(tt, &st, v[k].ids + i, m, 0, &piece, &err));
                /* only complete characters come out */
                ck_assert_msg(omni_bpe_utf8_valid(piece.data, piece.len, NULL),
                              "case %d: streamed piece %zu is not whole UTF-8", v[k].i, i);
                if (st.n)
                    split_chars++;
                struct omni_bpe_str *a = &acc;
                size_t need = a->len + piece.len + 1;
                a->data = realloc(a->data, need);
                memcpy(a->data + a->len, piece.data, piece.len);
                a->len += piece.len;
                a->data[a->len] = '\0';
                omni_bpe_str_free(&piece);
            }
            struct omni_bpe_str tail = {0};
            OK(omni_bpe_stream_flush(&st, &tail, &err));
            ck_assert_uint_eq(tail.len, 0); /* the vectors are whole text */
            if (acc.len != whole.len || memcmp(acc.data, whole.data, acc.len)) {
                bad++;
                fprintf(stderr, "case %d chunk %zu: streamed '%s', whole '%s'\n", v[k].i, chunk,
                        acc.data ? acc.data : "", whole.data);
            }
            omni_bpe_str_free(&acc);
            omni_bpe_str_free(&tail);
        }
        omni_bpe_str_free(&whole);
    }
    ck_assert_msg(bad == 0, "%d streamed decodes differ", bad);
    /* the vectors do split characters across ids (emoji, CJK, ...) */
    ck_assert_msg(split_chars > 50, "only %d feeds ended inside a character", split_chars);
    omni_bpe_free(t);
    omni_bpe_free(tm);
    free_vectors(v, n);
}
END_TEST

START_TEST(test_llamacpp_mpt_cases)
{
    size_t in_len;
    char *inp = read_all(tu_shared_path("data/tokenizer/llamacpp-ggml-vocab-mpt.gguf.inp"), &in_len);
    char *outp = read_all(tu_shared_path("data/tokenizer/llamacpp-ggml-vocab-mpt.gguf.out"), NULL);
    struct omni_bpe *t = load(0);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *piece = inp, *line = outp;
    int cases = 0, bad = 0;
    for (;;) {
        char *end = strstr(piece, sep);
        size_t plen = end ? (size_t)(end - piece) : strlen(piece);
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl || !end, "fewer .out lines than .inp pieces");
        if (nl)
            *nl = '\0';
        int32_t want[512];
        size_t nw = 0;
        for (char *p = line, *q; (q = NULL, strtol(p, &q, 10), q != p); p = q)
            want[nw++] = (int32_t)strtol(p, NULL, 10);
        struct omni_bpe_ids got = {0};
        OK(omni_bpe_encode(t, piece, plen, &got, &err));
        if (!ids_equal(&got, want, nw)) {
            bad++;
            fprintf(stderr, "llama.cpp case %d '%.*s':\n", cases, (int)plen, piece);
            print_ids("  want", want, nw);
            print_ids("  got ", got.data, got.len);
        }
        omni_bpe_ids_free(&got);
        cases++;
        if (!end)
            break;
        piece = end + strlen(sep);
        line = nl + 1;
    }
    ck_assert_int_eq(cases, 47);
    ck_assert_msg(bad == 0, "%d of %d llama.cpp cases differ", bad, cases);
    omni_bpe_free(t);
    free(inp);
    free(outp);
}
END_TEST

/* tests/fixtures/data/bpe_extra_vectors.jsonl (gen_bpe_extra.py, the same HF
 * tokenizers version): what the regex counts as whitespace, marks NFC cannot
 * compose, digits and letters of other scripts, and decode of ill-formed
 * bytes around added tokens, streamed and whole. */
START_TEST(test_extra_reference_cases)
{
    size_t len;
    char *all = read_all(tu_repo_path("tests/fixtures/data/bpe_extra_vectors.jsonl"), &len);
    struct omni_bpe *t = load(0);
    int cases = 0, bad = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        for (char *p = strstr(line, "\\u0000"); p; p = strstr(p, "\\u0000"))
            p[2] = 'E';
        cJSON *o = cJSON_Parse(line);
        ck_assert_msg(o != NULL, "bad JSON line %d", cases);
        int enc = !strcmp(cJSON_GetObjectItem(o, "kind")->valuestring, "encode");
        cJSON *jids = cJSON_GetObjectItem(o, "ids");
        size_t nw = (size_t)cJSON_GetArraySize(jids), dlen, tlen = 0;
        int32_t *want = malloc((nw + 1) * sizeof *want);
        for (size_t k = 0; k < nw; k++)
            want[k] = (int32_t)cJSON_GetArrayItem(jids, (int)k)->valueint;
        char *decoded = unescape_nul(cJSON_GetObjectItem(o, "decoded")->valuestring, &dlen);
        char *text = enc ? unescape_nul(cJSON_GetObjectItem(o, "text")->valuestring, &tlen) : NULL;
        int skip = !enc && cJSON_IsTrue(cJSON_GetObjectItem(o, "skip_special"));
        if (enc) {
            struct omni_bpe_ids got = {0};
            OK(omni_bpe_encode(t, text, tlen, &got, &err));
            if (!ids_equal(&got, want, nw)) {
                bad++;
                fprintf(stderr, "extra case %d (encode '%s'):\n", cases, text);
                print_ids("  want", want, nw);
                print_ids("  got ", got.data, got.len);
            }
            omni_bpe_ids_free(&got);
        }
        struct omni_bpe_str whole = {0}, acc = {0};
        OK(omni_bpe_decode(t, want, nw, skip, &whole, &err));
        struct omni_bpe_stream st;
        omni_bpe_stream_init(&st);
        for (size_t k = 0; k < nw; k++)
            OK(omni_bpe_stream_feed(t, &st, want + k, 1, skip, &acc, &err));
        OK(omni_bpe_stream_flush(&st, &acc, &err));
        if (whole.len != dlen || memcmp(whole.data, decoded, dlen) || acc.len != dlen ||
            memcmp(acc.data, decoded, dlen)) {
            bad++;
            fprintf(stderr, "extra case %d: decoded '%s' / streamed '%s', want '%s'\n", cases,
                    whole.data, acc.data, decoded);
        }
        omni_bpe_str_free(&whole);
        omni_bpe_str_free(&acc);
        free(want);
        free(decoded);
        free(text);
        cJSON_Delete(o);
        cases++;
    }
    ck_assert_int_eq(cases, 244);
    ck_assert_msg(bad == 0, "%d of %d extra cases differ", bad, cases);
    omni_bpe_free(t);
    free(all);
}
END_TEST

START_TEST(test_known_ids_and_added_tokens)
{
    struct omni_bpe *t = load(0), *tm = load(1);
    ck_assert_int_eq(omni_bpe_n_ids(t), 50277);
    ck_assert_int_eq(omni_bpe_n_ids(tm), 50287);
    ck_assert_int_eq(omni_bpe_token_id(tm, "[PAD]", 5), 50277);
    ck_assert_int_eq(omni_bpe_token_id(tm, "<|soi|>", 7), 50278);
    ck_assert_int_eq(omni_bpe_token_id(tm, "<|mmu|>", 7), 50283);
    ck_assert_int_eq(omni_bpe_token_id(tm, "<|lvg|>", 7), 50286);
    ck_assert_int_eq(omni_bpe_token_id(t, "<|soi|>", 7), -1);
    ck_assert(omni_bpe_is_special(tm, 0) && omni_bpe_is_special(tm, 1) && omni_bpe_is_special(tm, 50277));
    ck_assert(!omni_bpe_is_special(tm, 50278) && !omni_bpe_is_special(tm, 50254));
    size_t len;
    const char *s = omni_bpe_token(t, 1533, &len); /* " world" */
    ck_assert(s && len == 7 && !memcmp(s, "\xC4\xA0world", 7));
    ck_assert_ptr_null(omni_bpe_token(t, 50277, &len));
    /* without the OmniMamba tokens "<|soi|>" is plain text */
    struct omni_bpe_ids a = {0}, b = {0};
    OK(omni_bpe_encode(t, "<|soi|>", 7, &a, &err));
    OK(omni_bpe_encode(tm, "<|soi|>", 7, &b, &err));
    ck_assert_uint_gt(a.len, 1);
    ck_assert_uint_eq(b.len, 1);
    ck_assert_int_eq(b.data[0], 50278);
    omni_bpe_ids_free(&a);
    omni_bpe_ids_free(&b);
    /* skip_special drops <|endoftext|> and [PAD] but not <|soi|> */
    const int32_t ids[] = {50277, 12092, 0, 50278, 1533};
    struct omni_bpe_str d = {0};
    OK(omni_bpe_decode(tm, ids, 5, 1, &d, &err));
    ck_assert_str_eq(d.data, "Hello<|soi|> world");
    omni_bpe_str_free(&d);
    OK(omni_bpe_decode(tm, ids, 5, 0, &d, &err));
    ck_assert_str_eq(d.data, "[PAD]Hello<|endoftext|><|soi|> world");
    omni_bpe_str_free(&d);
    omni_bpe_free(t);
    omni_bpe_free(tm);
}
END_TEST

/* 🦙 (F0 9F A6 99) is [14931 "ðŁ" = F0 9F, 101 "¦" = A6, 236 "Ļ" = 99]. */
START_TEST(test_stream_holds_back_split_character)
{
    struct omni_bpe *t = load(0);
    const int32_t ids[] = {12092, 14931, 101, 236, 2};
    const char *want[] = {"Hello", "", "", "\xF0\x9F\xA6\x99", "!"};
    struct omni_bpe_stream st;
    omni_bpe_stream_init(&st);
    for (int i = 0; i < 5; i++) {
        struct omni_bpe_str p = {0};
        OK(omni_bpe_stream_feed(t, &st, ids + i, 1, 0, &p, &err));
        ck_assert_msg(p.data && !strcmp(p.data, want[i]), "step %d: got '%s'", i, p.data);
        omni_bpe_str_free(&p);
    }
    omni_bpe_free(t);
}
END_TEST

/* Ill-formed bytes decode as HF's from_utf8_lossy does: one U+FFFD per
 * maximal ill-formed subsequence, streamed or not. */
START_TEST(test_decode_replaces_ill_formed_bytes)
{
    struct omni_bpe *t = load(0);
    static const struct {
        int32_t ids[4];
        int n;
        const char *want;
    } cases[] = {
        {{14931}, 1, "\xEF\xBF\xBD"},                   /* F0 9F, then the end */
        {{14931, 66}, 2, "\xEF\xBF\xBD" "a"},           /* F0 9F 'a' */
        {{14931, 101, 66}, 3, "\xEF\xBF\xBD" "a"},      /* F0 9F A6 'a' */
        {{101, 236}, 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},    /* two lone continuation bytes */
        {{14931, 14931, 101, 236}, 4, "\xEF\xBF\xBD\xF0\x9F\xA6\x99"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct omni_bpe_str whole = {0}, acc = {0};
        OK(omni_bpe_decode(t, cases[c].ids, (size_t)cases[c].n, 0, &whole, &err));
        ck_assert_msg(!strcmp(whole.data, cases[c].want), "case %zu: got '%s'", c, whole.data);
        struct omni_bpe_stream st;
        omni_bpe_stream_init(&st);
        for (int i = 0; i < cases[c].n; i++)
            OK(omni_bpe_stream_feed(t, &st, cases[c].ids + i, 1, 0, &acc, &err));
        OK(omni_bpe_stream_flush(&st, &acc, &err));
        ck_assert_str_eq(acc.data, whole.data);
        omni_bpe_str_free(&whole);
        omni_bpe_str_free(&acc);
    }
    omni_bpe_free(t);
}
END_TEST

START_TEST(test_decode_rejects_out_of_range_id)
{
    struct omni_bpe *t = load(0);
    const int32_t ids[] = {12092, 50277};
    struct omni_bpe_str s = {0};
    omni_error_clear(&err);
    ck_assert_int_eq(omni_bpe_decode(t, ids, 2, 0, &s, &err), OMNI_ERANGE);
    ck_assert_msg(strstr(err.msg, "50277") && strstr(err.msg, "position 1"), "%s", err.msg);
    omni_bpe_str_free(&s);
    const int32_t neg[] = {-1};
    ck_assert_int_eq(omni_bpe_decode(t, neg, 1, 0, &s, &err), OMNI_ERANGE);
    omni_bpe_str_free(&s);
    omni_bpe_free(t);
}
END_TEST

START_TEST(test_rejects_invalid_utf8)
{
    struct omni_bpe *t = load(0);
    static const struct {
        const char *s;
        size_t at;
    } cases[] = {
        {"Hello, world! ab\xFF tail", 16},
        {"Hello, world! abc\xC3", 17},              /* truncated at the end */
        {"overlong \xC0\xAF slash", 9},
        {"surrogate \xED\xA0\x80", 10},
        {"too big \xF4\x90\x80\x80", 8},
        {"caf\xC3\xA9 \x80", 6},                     /* lone continuation */
        {"\xE2\x82 short", 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct omni_bpe_ids ids = {0};
        omni_error_clear(&err);
        ck_assert_int_eq(omni_bpe_encode(t, cases[c].s, strlen(cases[c].s), &ids, &err), OMNI_EINVAL);
        char want[64];
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", cases[c].at);
        ck_assert_msg(strstr(err.msg, want), "case %zu: '%s' lacks '%s'", c, err.msg, want);
        ck_assert_uint_eq(ids.len, 0);
        omni_bpe_ids_free(&ids);
    }
    omni_bpe_free(t);
}
END_TEST

START_TEST(test_load_missing_file_names_it)
{
    struct omni_bpe *t = (struct omni_bpe *)1;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_bpe_load(&t, "/nonexistent/dir/tokenizer.json", 0, &err), OMNI_EIO);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err.msg, "/nonexistent/dir/tokenizer.json"), "%s", err.msg);
}
END_TEST

static const char *write_tmp(const char *name, const char *content)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs(content, f);
    fclose(f);
    return path;
}

START_TEST(test_load_bad_json_names_it)
{
    struct omni_bpe *t = NULL;
    const char *p = write_tmp("bad.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}");
    omni_error_clear(&err);
    ck_assert_int_eq(omni_bpe_load(&t, p, 0, &err), OMNI_EFORMAT);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "not valid JSON"), "%s", err.msg);
    p = write_tmp("notbpe.json", "{\"version\": \"1.0\"}");
    ck_assert_int_eq(omni_bpe_load(&t, p, 0, &err), OMNI_EFORMAT);
    ck_assert_msg(strstr(err.msg, p), "%s", err.msg);
    p = write_tmp("wordpiece.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"merges\": []}}");
    ck_assert_int_eq(omni_bpe_load(&t, p, 0, &err), OMNI_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "WordPiece"), "%s", err.msg);
    ck_assert_ptr_null(t);
}
END_TEST

/* Big inputs stay fast: 1 MB of mixed text, a 200 kB word, 200 kB of spaces
 * and of newlines. */
START_TEST(test_large_inputs)
{
    int n;
    struct vec *v = load_vectors(&n);
    struct omni_bpe *t = load(0);
    size_t cap = 1 << 21, len = 0;
    char *big = malloc(cap);
    for (int k = 0; len < (1u << 20); k = (k + 1) % n)
        if (!v[k].omnimamba && !memchr(v[k].text, 0, v[k].text_len)) {
            memcpy(big + len, v[k].text, v[k].text_len);
            len += v[k].text_len;
            big[len++] = '\n';
        }
    struct omni_bpe_ids ids = {0};
    double a = now_s();
    OK(omni_bpe_encode(t, big, len, &ids, &err));
    double b = now_s();
    struct omni_bpe_str back = {0};
    OK(omni_bpe_decode(t, ids.data, ids.len, 0, &back, &err));
    double c = now_s();
    printf("bpe_tokenizer: %zu bytes -> %zu ids in %.1f ms, decoded in %.1f ms\n", len, ids.len,
           (b - a) * 1e3, (c - b) * 1e3);
    ck_assert_uint_gt(ids.len, len / 8);
    omni_bpe_ids_free(&ids);
    omni_bpe_str_free(&back);
    const char fill[] = {'a', ' ', '\n'};
    for (int f = 0; f < 3; f++) {
        size_t m = 200000;
        memset(big, fill[f], m);
        a = now_s();
        OK(omni_bpe_encode(t, big, m, &ids, &err));
        b = now_s();
        ck_assert_msg(b - a < 2.0, "200k x '%c' took %.2f s", fill[f], b - a);
        if (fill[f] == ' ') /* 8333 runs of 24 spaces and 8 left over */
            ck_assert_uint_eq(ids.len, 200000 / 24 + 1);
        OK(omni_bpe_decode(t, ids.data, ids.len, 0, &back, &err));
        ck_assert_uint_eq(back.len, m);
        ck_assert(!memcmp(back.data, big, m));
        omni_bpe_ids_free(&ids);
        omni_bpe_str_free(&back);
    }
    free(big);
    omni_bpe_free(t);
    free_vectors(v, n);
}
END_TEST

/* ---- the stage, through the harness ---------------------------------------------- */

static struct omni_harness *new_stage(const char *extra)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "file: \"%s\"\n%s", tokenizer_json(), extra ? extra : "");
    struct omni_harness *h = NULL;
    OK(omni_harness_new(&h, "bpe_tokenizer", yaml, &err));
    return h;
}

static void assert_ids(const struct omni_tensor *t, int64_t B, int64_t T, const int32_t *want)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, OMNI_DTYPE_I32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_msg(t->shape[0] == B && t->shape[1] == T, "ids shape [%lld,%lld], want [%lld,%lld]",
                  (long long)t->shape[0], (long long)t->shape[1], (long long)B, (long long)T);
    const int32_t *d = omni_tensor_data(t);
    for (int64_t i = 0; i < B * T; i++)
        ck_assert_msg(d[i] == want[i], "ids[%lld] = %d, want %d", (long long)i, d[i], want[i]);
}

/* Row b of a u8 [B, n] output, as a C string. */
static const char *text_row(const struct omni_tensor *t, int64_t b)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, OMNI_DTYPE_U8);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_gt(t->shape[1], 0);
    const char *row = (const char *)omni_tensor_data(t) + b * t->shape[1];
    ck_assert_msg(memchr(row, 0, (size_t)t->shape[1]), "text row %lld is not NUL-terminated", (long long)b);
    return row;
}

static void push_ids(struct omni_harness *h, int64_t B, int64_t T, const int32_t *ids)
{
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_I32, 2, B, T));
    if (B > 0 && T > 0)
        memcpy(omni_tensor_data(&t), ids, (size_t)(B * T) * sizeof *ids);
    OK(omni_harness_push(h, "ids", &t, &err));
    omni_tensor_release(&t);
}

static void push_rows(struct omni_harness *h, int B, const char *const *rows)
{
    size_t n = 1;
    for (int b = 0; b < B; b++)
        if (strlen(rows[b]) + 1 > n)
            n = strlen(rows[b]) + 1;
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_U8, 2, (int64_t)B, (int64_t)n));
    for (int b = 0; b < B; b++)
        memcpy((char *)omni_tensor_data(&t) + (size_t)b * n, rows[b], strlen(rows[b]));
    OK(omni_harness_push(h, "text", &t, &err));
    omni_tensor_release(&t);
}

START_TEST(test_stage_encodes_text)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage(NULL);
    OK(omni_harness_push_text(h, "text", "hello   world", &err));
    OK(omni_harness_forward(h, &err));
    const int32_t want[] = {25521, 50275, 10186};
    assert_ids(omni_harness_pull(h, "ids"), 1, 3, want);
    ck_assert_ptr_null(omni_harness_pull(h, "text")); /* no ids were given */
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* omnimamba.md 6.5: "USER: " + question + " ASSISTANT:", stripped. */
START_TEST(test_stage_template_is_applied_and_stripped)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage("omnimamba: true\ntemplate: \"USER: {} ASSISTANT:\"\n");
    OK(omni_harness_push_text(h, "text", "Please describe it in detail.", &err));
    OK(omni_harness_forward(h, &err));
    const int32_t want[] = {23131, 27, 7764, 6266, 352, 275, 2508, 15, 21893, 6905, 5656, 27};
    assert_ids(omni_harness_pull(h, "ids"), 1, 12, want);
    omni_harness_free(h);
    /* whitespace only at the two ends of the whole string goes */
    h = new_stage("template: \"{}\\n\"\n");
    OK(omni_harness_push_text(h, "text", " \t Hello world\xE3\x80\x80", &err)); /* ends in U+3000 */
    OK(omni_harness_forward(h, &err));
    const int32_t want2[] = {12092, 1533};
    assert_ids(omni_harness_pull(h, "ids"), 1, 2, want2);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_omnimamba_tokens_in_text)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage("omnimamba: true\n");
    OK(omni_harness_push_text(h, "text", "<|t2i|><|sot|>A bed in a bedroom between two lamps.<|eot|><|soi|>", &err));
    OK(omni_harness_forward(h, &err));
    const int32_t want[] = {50282, 50280, 34, 3722, 275, 247, 14098, 875, 767, 30161, 15, 50281, 50278};
    assert_ids(omni_harness_pull(h, "ids"), 1, 13, want);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_rejects_rows_of_different_lengths)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage(NULL);
    const char *rows[] = {"Hello world", "Hello"};
    push_rows(h, 2, rows);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "batch rows tokenize to different lengths (1 and 2") &&
                      strstr(err.msg, "pad_left_id"),
                  "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_left_pads_when_asked)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage("omnimamba: true\npad_left_id: 50277\n");
    const char *rows[] = {"Hello", "Hello world", "hello   world"};
    push_rows(h, 3, rows);
    OK(omni_harness_forward(h, &err));
    const int32_t want[] = {50277, 50277, 12092, 50277, 12092, 1533, 25521, 50275, 10186};
    assert_ids(omni_harness_pull(h, "ids"), 3, 3, want);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* One id per loop step: each step outputs the characters it completed. */
START_TEST(test_stage_streams_text_per_step)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage(NULL);
    const char *text = "na\xC3\xAFve \xF0\x9F\xA6\x99 and \xE4\xBD\xA0\xE5\xA5\xBD!";
    struct omni_bpe *t = load(0);
    struct omni_bpe_ids ids = {0};
    OK(omni_bpe_encode(t, text, strlen(text), &ids, &err));
    char acc[256] = "";
    int empty_steps = 0;
    for (size_t i = 0; i < ids.len; i++) {
        push_ids(h, 1, 1, ids.data + i);
        OK(omni_harness_step(h, &err));
        const char *piece = text_row(omni_harness_pull(h, "text"), 0);
        ck_assert(omni_bpe_utf8_valid(piece, strlen(piece), NULL));
        empty_steps += !*piece;
        strcat(acc, piece);
    }
    ck_assert_str_eq(acc, text);
    ck_assert_int_gt(empty_steps, 0); /* some ids end inside a character */
    /* the carry also crosses a prefill call into the loop */
    omni_harness_reset_state(h);
    const int32_t cut[] = {12092, 14931}, rest[] = {101, 236}; /* "Hello", then 🦙 in two parts */
    push_ids(h, 1, 2, cut);
    OK(omni_harness_forward(h, &err));
    ck_assert_str_eq(text_row(omni_harness_pull(h, "text"), 0), "Hello");
    push_ids(h, 1, 2, rest);
    OK(omni_harness_step(h, &err));
    ck_assert_str_eq(text_row(omni_harness_pull(h, "text"), 0), "\xF0\x9F\xA6\x99");
    /* flush: true ends the sequence at each call: a cut character is U+FFFD, as in HF */
    omni_harness_reset_state(h);
    OK(omni_harness_set_options(h, "flush: true\n", &err));
    push_ids(h, 1, 2, cut);
    OK(omni_harness_forward(h, &err));
    ck_assert_str_eq(text_row(omni_harness_pull(h, "text"), 0), "Hello\xEF\xBF\xBD");
    omni_bpe_ids_free(&ids);
    omni_bpe_free(t);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_decodes_batch_and_options)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage("omnimamba: true\nskip_special: true\n");
    const int32_t ids[] = {12092, 1533, 0, 50277, 50278, 12092};
    push_ids(h, 2, 3, ids);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *o = omni_harness_pull(h, "text");
    ck_assert_str_eq(text_row(o, 0), "Hello world");
    ck_assert_str_eq(text_row(o, 1), "<|soi|>Hello");
    ck_assert_int_eq(o->shape[1], (int64_t)strlen("<|soi|>Hello") + 1);
    /* per-request options override the params */
    OK(omni_harness_set_options(h, "skip_special: false\ntoken_strings: true\n", &err));
    OK(omni_harness_forward(h, &err));
    o = omni_harness_pull(h, "text");
    ck_assert_str_eq(text_row(o, 0), "Hello\xC4\xA0world<|endoftext|>");
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_requires_file_param)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = NULL;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_new(&h, "bpe_tokenizer", "omnimamba: true\n", &err), OMNI_EINVAL);
    ck_assert_ptr_null(h);
    ck_assert_msg(strstr(err.msg, "param 'file'"), "%s", err.msg);
    ck_assert_int_ne(omni_harness_new(&h, "bpe_tokenizer", "file: /nonexistent/tok.json\n", &err), 0);
    ck_assert_msg(strstr(err.msg, "param 'file'") && strstr(err.msg, "/nonexistent/tok.json"), "%s", err.msg);
    ck_assert_int_eq(omni_harness_new(&h, "bpe_tokenizer", "file: x.json\nomnimambaa: true\n", &err),
                     OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "unknown param 'omnimambaa'"), "%s", err.msg);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_rejects_wrong_dtype)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage(NULL);
    struct omni_tensor f;
    OK(omni_tensor_alloc_host(&f, OMNI_DTYPE_F32, 2, (int64_t)1, (int64_t)3));
    OK(omni_harness_push(h, "ids", &f, &err));
    omni_tensor_release(&f);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    ck_assert_msg(strstr(err.msg, "'ids'") && strstr(err.msg, "f32"), "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_rejects_invalid_utf8)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage(NULL);
    const char *rows[] = {"fine", "Hello, world! ab\xFF tail"};
    push_rows(h, 2, rows);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "'text' row 1") && strstr(err.msg, "invalid UTF-8 at byte 16"), "%s",
                  err.msg);
    ck_assert_ptr_null(omni_harness_pull(h, "ids"));
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_stage_without_input_is_an_error)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = new_stage(NULL);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "'text'") && strstr(err.msg, "'ids'"), "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Stages naming the same file share one loaded tokenizer. */
START_TEST(test_stage_create_again_is_cheap)
{
    long live = omni_buffer_live_count();
    double a = now_s();
    struct omni_harness *h1 = new_stage(NULL);
    double b = now_s();
    struct omni_harness *h2 = new_stage(NULL);
    double c = now_s();
    printf("bpe_tokenizer: stage create %.1f ms, second create %.3f ms\n", (b - a) * 1e3, (c - b) * 1e3);
    ck_assert_msg(c - b < (b - a) / 2, "second create %.4f s, first %.4f s", c - b, b - a);
    omni_harness_free(h1);
    OK(omni_harness_push_text(h2, "text", "Hello", &err));
    OK(omni_harness_forward(h2, &err));
    const int32_t want[] = {12092};
    assert_ids(omni_harness_pull(h2, "ids"), 1, 1, want);
    omni_harness_free(h2);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- the CLI (goes through the plugin) -------------------------------------------- */

/* Run a shell command; its stdout (and stderr with 2>&1 in cmd) into out. */
static int run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_cli_tokenize_and_decode)
{
    char omni[1024], cmd[4096], out[4096];
    snprintf(omni, sizeof omni, "%s", tu_build_path("bin/omni"));
    ck_assert_msg(access(omni, X_OK) == 0, "%s is missing (make cli builds it)", omni);
    const char *tj = tokenizer_json();
    snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer '%s' 'hello   world'", omni, tj);
    ck_assert_int_eq(run_cmd(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "25521 50275 10186\n");
    snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer '%s' --decode 12092 1533 14931 101 236", omni, tj);
    ck_assert_int_eq(run_cmd(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "Hello world\xF0\x9F\xA6\x99\n");
    /* stdin, NFC: "cafe" + U+0301 is "caf\xC3\xA9" */
    snprintf(cmd, sizeof cmd, "printf 'cafe\\314\\201' | OMNI_TOKENIZER='%s' '%s' tokenize -", tj, omni);
    ck_assert_int_eq(run_cmd(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "68 2320 860\n");
    snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer '%s' --omnimamba --tokens "
             "--template 'USER: {} ASSISTANT:' '<|mmu|>Hi'", omni, tj);
    /* ids: the spec's prompt vector (omnimamba.md 6.5) and vector 424's lone-space rule; strings: the vocab */
    ck_assert_int_eq(run_cmd(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "23131 27 209 50283 12764 21893 6905 5656 27\n"
                          "23131\t\"USER\"\n27\t\":\"\n209\t\"\xC4\xA0\"\n50283\t\"<|mmu|>\"\n"
                          "12764\t\"Hi\"\n21893\t\"\xC4\xA0" "ASS\"\n6905\t\"IST\"\n5656\t\"ANT\"\n27\t\":\"\n");
    snprintf(cmd, sizeof cmd, "printf 'ab\\377' | '%s' tokenize --tokenizer '%s' - 2>&1", omni, tj);
    ck_assert_int_eq(run_cmd(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "invalid UTF-8 at byte 2"), "%s", out);
    snprintf(cmd, sizeof cmd, "OMNI_TOKENIZER= '%s' tokenize hi 2>&1", omni);
    ck_assert_int_eq(run_cmd(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "OMNI_TOKENIZER"), "%s", out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bpe_tokenizer");
    TCase *lib = tcase_create("library");
    tcase_set_timeout(lib, 60);
    tcase_add_test(lib, test_testvectors_encode_exactly);
    tcase_add_test(lib, test_testvectors_decode_to_reference_text);
    tcase_add_test(lib, test_streaming_decode_equals_whole_decode);
    tcase_add_test(lib, test_llamacpp_mpt_cases);
    tcase_add_test(lib, test_extra_reference_cases);
    tcase_add_test(lib, test_known_ids_and_added_tokens);
    tcase_add_test(lib, test_stream_holds_back_split_character);
    tcase_add_test(lib, test_decode_replaces_ill_formed_bytes);
    tcase_add_test(lib, test_decode_rejects_out_of_range_id);
    tcase_add_test(lib, test_rejects_invalid_utf8);
    tcase_add_test(lib, test_load_missing_file_names_it);
    tcase_add_test(lib, test_load_bad_json_names_it);
    tcase_add_test(lib, test_large_inputs);
    suite_add_tcase(s, lib);
    TCase *st = tcase_create("stage");
    tcase_set_timeout(st, 60);
    tcase_add_test(st, test_stage_encodes_text);
    tcase_add_test(st, test_stage_template_is_applied_and_stripped);
    tcase_add_test(st, test_stage_omnimamba_tokens_in_text);
    tcase_add_test(st, test_stage_rejects_rows_of_different_lengths);
    tcase_add_test(st, test_stage_left_pads_when_asked);
    tcase_add_test(st, test_stage_streams_text_per_step);
    tcase_add_test(st, test_stage_decodes_batch_and_options);
    tcase_add_test(st, test_stage_requires_file_param);
    tcase_add_test(st, test_stage_rejects_wrong_dtype);
    tcase_add_test(st, test_stage_rejects_invalid_utf8);
    tcase_add_test(st, test_stage_without_input_is_an_error);
    tcase_add_test(st, test_stage_create_again_is_cheap);
    suite_add_tcase(s, st);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 60);
    tcase_add_test(cli, test_cli_tokenize_and_decode);
    suite_add_tcase(s, cli);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_set_fork_status(r, CK_FORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
