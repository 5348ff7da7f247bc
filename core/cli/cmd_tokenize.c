/* omni tokenize: text -> GPT-NeoX-20B ids, or --decode ids -> text, through
 * the bpe_tokenizer plugin (driven alone by the stage harness). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: omni tokenize [OPTIONS] TEXT...\n"
            "       omni tokenize [OPTIONS] --decode ID...\n\n"
            "Tokenize TEXT with the GPT-NeoX-20B byte-level BPE tokenizer (the one of Mamba and\n"
            "OmniMamba) and print the ids on one line, separated by spaces. No BOS or EOS is added.\n"
            "Several TEXT arguments are joined with single spaces; TEXT '-' reads standard input\n"
            "verbatim (a trailing newline is part of the text: use printf or echo -n). Put '--'\n"
            "before a TEXT that starts with '-'.\n"
            "With --decode, the IDs (separated by spaces or commas; brackets are ignored; '-' reads\n"
            "them from standard input) are decoded and the text is printed, followed by a newline.\n"
            "Byte sequences that are not UTF-8 print as U+FFFD, as in HF tokenizers.\n\n"
            "options:\n"
            "  --tokenizer FILE  the HF tokenizer.json (default: $OMNI_TOKENIZER)\n"
            "  --omnimamba       add OmniMamba's tokens: [PAD]=50277, <|soi|>=50278, <|eoi|>,\n"
            "                    <|sot|>, <|eot|>, <|t2i|>, <|mmu|>, <|soc|>, <|eoc|>, <|lvg|>=50286;\n"
            "                    they are then recognised in TEXT\n"
            "  --template T      encode T with its '{}' replaced by TEXT, stripped of leading and\n"
            "                    trailing whitespace (OmniMamba's MMU prompt: 'USER: {} ASSISTANT:')\n"
            "  --tokens          also print one line per token: the id, a tab and the token's\n"
            "                    string in the vocabulary (byte-level form: \"\xC4\xA0world\" is \" world\"),\n"
            "                    quoted, with \\\", \\\\ and \\xNN escapes for control characters\n"
            "  --skip-special    with --decode: leave out special tokens (<|endoftext|>,\n"
            "                    <|padding|>, [PAD])\n"
            "  -h, --help        this text\n\n"
            "The work is done by the bpe_tokenizer plugin (found on OMNI_PLUGIN_PATH or next to\n"
            "libomni). Exit status: 0 success, 1 failure (unreadable tokenizer, invalid UTF-8,\n"
            "unknown id), 2 usage error.\n");
}

/* YAML double-quoted scalar of s. (caller frees) */
static char *yaml_quote(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(4 * n + 3), *p = o;
    if (!o)
        return NULL;
    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
            *p++ = (char)*c;
        } else if (*c < 0x20) {
            p += sprintf(p, "\\x%02x", *c);
        } else {
            *p++ = (char)*c;
        }
    }
    *p++ = '"';
    *p = '\0';
    return o;
}

static char *read_stdin(size_t *len)
{
    size_t n = 0, cap = 1 << 16;
    char *b = malloc(cap + 1);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, stdin);
        n += got;
        if (n < cap) {
            if (ferror(stdin)) {
                free(b);
                return NULL;
            }
            break;
        }
        char *p = realloc(b, 2 * cap + 1);
        if (!p)
            free(b);
        b = p;
        cap *= 2;
    }
    if (b)
        b[n] = '\0';
    *len = n;
    return b;
}

static void print_token(const char *s)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            printf("\\x%02x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

/* Parse ids from s (spaces, commas, brackets between them). */
static int parse_ids(const char *s, int32_t **ids, size_t *n, size_t *cap)
{
    const char *p = s;
    for (;;) {
        while (*p && (strchr(" \t\r\n,[]", *p)))
            p++;
        if (!*p)
            return 0;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" \t\r\n,[]", *end))) {
            fprintf(stderr, "omni tokenize: '%.*s' is not a token id\n", (int)strcspn(p, " \t\r\n,[]"), p);
            return -1;
        }
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 256;
            int32_t *q = realloc(*ids, *cap * sizeof *q);
            if (!q) {
                fprintf(stderr, "omni tokenize: out of memory\n");
                return -1;
            }
            *ids = q;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
}

/* Push ids as (B, T) into the stage and run it; the output text is pulled by the caller. */
static int run_ids(struct omni_harness *h, const int32_t *ids, int64_t B, int64_t T,
                   struct omni_error *err)
{
    struct omni_tensor t;
    int rc = omni_tensor_alloc_host(&t, OMNI_DTYPE_I32, 2, B, T);
    if (rc)
        return omni_error_set(err, rc, "out of memory");
    if (B > 0 && T > 0)
        memcpy(omni_tensor_data(&t), ids, (size_t)(B * T) * sizeof *ids);
    rc = omni_harness_push(h, "ids", &t, err);
    omni_tensor_release(&t);
    return rc ? rc : omni_harness_forward(h, err);
}

/* One line per id: id, tab, quoted token string (the stage's token_strings mode, one id per row). */
static int print_tokens(struct omni_harness *h, const int32_t *ids, size_t n, struct omni_error *err)
{
    int rc;
    if ((rc = omni_harness_push(h, "text", NULL, err)) ||
        (rc = omni_harness_set_options(h, "token_strings: true\nskip_special: false\n", err)) ||
        (rc = run_ids(h, ids, (int64_t)n, 1, err)))
        return rc;
    const struct omni_tensor *o = omni_harness_pull(h, "text");
    if (!o)
        return n ? omni_error_set(err, OMNI_EINTERNAL, "the stage produced no token strings") : OMNI_OK;
    for (size_t i = 0; i < n; i++) {
        printf("%d\t", (int)ids[i]);
        print_token((const char *)omni_tensor_data(o) + i * (size_t)o->shape[1]);
        putchar('\n');
    }
    return OMNI_OK;
}

int omni_cmd_tokenize(int argc, char **argv)
{
    const char *file = NULL, *tmpl = NULL;
    int omnimamba = 0, tokens = 0, decode = 0, skip_special = 0, no_more_opts = 0;
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int nargs = 0, status = 1;
    struct omni_harness *h = NULL;
    char *text = NULL, *yaml = NULL, *qfile = NULL, *qtmpl = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, cap_ids = 0;
    struct omni_error err = {0};
    if (!args) {
        fprintf(stderr, "omni tokenize: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (no_more_opts || a[0] != '-' || !strcmp(a, "-")) {
            args[nargs++] = argv[i];
        } else if (!strcmp(a, "--")) {
            no_more_opts = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            status = 0;
            goto done;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "--template")) {
            if (++i >= argc) {
                fprintf(stderr, "omni tokenize: %s needs a value\n", a);
                status = 2;
                goto done;
            }
            if (!strcmp(a, "--tokenizer"))
                file = argv[i];
            else
                tmpl = argv[i];
        } else if (!strncmp(a, "--tokenizer=", 12)) {
            file = a + 12;
        } else if (!strncmp(a, "--template=", 11)) {
            tmpl = a + 11;
        } else if (!strcmp(a, "--omnimamba")) {
            omnimamba = 1;
        } else if (!strcmp(a, "--tokens")) {
            tokens = 1;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--skip-special")) {
            skip_special = 1;
        } else {
            fprintf(stderr, "omni tokenize: unknown option '%s' (put '--' before a TEXT that starts with '-'; "
                            "see 'omni tokenize --help')\n", a);
            status = 2;
            goto done;
        }
    }
    if (!nargs) {
        fprintf(stderr, "omni tokenize: nothing to %s; see 'omni tokenize --help'\n",
                decode ? "decode (give IDs)" : "tokenize (give TEXT, or '-' for stdin)");
        status = 2;
        goto done;
    }
    if (decode && tmpl) {
        fprintf(stderr, "omni tokenize: --template applies to encoding, not to --decode\n");
        status = 2;
        goto done;
    }
    if (!file)
        file = getenv("OMNI_TOKENIZER");
    if (!file || !*file) {
        fprintf(stderr, "omni tokenize: no tokenizer: pass --tokenizer FILE or set OMNI_TOKENIZER to the path of "
                        "a tokenizer.json (GPT-NeoX-20B's is shared/data/tokenizer/gpt-neox-20b-tokenizer.json)\n");
        status = 2;
        goto done;
    }

    /* the input */
    if (decode) {
        for (int i = 0; i < nargs; i++) {
            int rc;
            if (!strcmp(args[i], "-")) {
                size_t len;
                char *in = read_stdin(&len);
                if (!in) {
                    fprintf(stderr, "omni tokenize: cannot read standard input\n");
                    goto done;
                }
                rc = parse_ids(in, &ids, &n_ids, &cap_ids);
                free(in);
            } else {
                rc = parse_ids(args[i], &ids, &n_ids, &cap_ids);
            }
            if (rc) {
                status = 2;
                goto done;
            }
        }
    } else {
        size_t len = 0;
        for (int i = 0; i < nargs; i++) {
            size_t m;
            char *piece = !strcmp(args[i], "-") ? read_stdin(&m) : strdup(args[i]);
            if (!piece) {
                fprintf(stderr, "omni tokenize: cannot read %s\n", !strcmp(args[i], "-") ? "standard input" : "TEXT");
                goto done;
            }
            if (strcmp(args[i], "-"))
                m = strlen(piece);
            else if (strlen(piece) != m) {
                fprintf(stderr, "omni tokenize: standard input has a NUL byte at offset %zu; text must not contain NUL\n",
                        strlen(piece));
                free(piece);
                goto done;
            }
            char *t = realloc(text, len + m + 2);
            if (!t) {
                free(piece);
                fprintf(stderr, "omni tokenize: out of memory\n");
                goto done;
            }
            text = t;
            if (i)
                text[len++] = ' ';
            memcpy(text + len, piece, m);
            len += m;
            text[len] = '\0';
            free(piece);
        }
    }

    /* the stage */
    qfile = yaml_quote(file);
    qtmpl = tmpl ? yaml_quote(tmpl) : NULL;
    size_t ylen = (qfile ? strlen(qfile) : 0) + (qtmpl ? strlen(qtmpl) : 0) + 128;
    yaml = malloc(ylen);
    if (!qfile || (tmpl && !qtmpl) || !yaml) {
        fprintf(stderr, "omni tokenize: out of memory\n");
        goto done;
    }
    snprintf(yaml, ylen, "file: %s\nomnimamba: %s\nskip_special: %s\nflush: true\n%s%s%s", qfile,
             omnimamba ? "true" : "false", skip_special ? "true" : "false", qtmpl ? "template: " : "",
             qtmpl ? qtmpl : "", qtmpl ? "\n" : "");
    if (omni_harness_new_full(&h, "bpe_tokenizer", yaml, NULL, NULL, &err))
        goto fail;

    if (decode) {
        if (run_ids(h, ids, 1, (int64_t)n_ids, &err))
            goto fail;
        const struct omni_tensor *o = omni_harness_pull(h, "text");
        if (!o) {
            omni_error_set(&err, OMNI_EINTERNAL, "the stage produced no text");
            goto fail;
        }
        /* one row of shape[1] - 1 bytes and a NUL: the text may itself hold NULs */
        fwrite(omni_tensor_data(o), 1, (size_t)o->shape[1] - 1, stdout);
        putchar('\n');
        if (tokens && print_tokens(h, ids, n_ids, &err))
            goto fail;
    } else {
        if (omni_harness_push_text(h, "text", text, &err) || omni_harness_forward(h, &err))
            goto fail;
        const struct omni_tensor *o = omni_harness_pull(h, "ids");
        if (!o) {
            omni_error_set(&err, OMNI_EINTERNAL, "the stage produced no ids");
            goto fail;
        }
        const int32_t *d = omni_tensor_data(o);
        n_ids = (size_t)o->shape[1];
        for (size_t i = 0; i < n_ids; i++)
            printf(i ? " %d" : "%d", (int)d[i]);
        putchar('\n');
        if (tokens) {
            ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
            if (!ids) {
                omni_error_set(&err, OMNI_ENOMEM, "out of memory");
                goto fail;
            }
            if (n_ids)
                memcpy(ids, d, n_ids * sizeof *ids);
            if (print_tokens(h, ids, n_ids, &err))
                goto fail;
        }
    }
    status = fflush(stdout) ? 1 : 0;
    goto done;
fail:
    omni_cli_print_error("tokenize", &err);
    status = 1;
done:
    omni_harness_free(h);
    free(args);
    free(text);
    free(yaml);
    free(qfile);
    free(qtmpl);
    free(ids);
    return status;
}
