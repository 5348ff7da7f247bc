/* YAML text -> omni__ynode tree, via libyaml events. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yaml_tree.h"

#define MAX_DEPTH 64

struct builder {
    yaml_parser_t parser;
    const char *name;
    char *file; /* owned by the root node */
    struct omni_error *err;
};

static struct omni__ynode *node_new(int kind, const char *file, int line, int col)
{
    struct omni__ynode *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->file = file;
        n->line = line;
        n->col = col;
    }
    return n;
}

static int grow(void **p, int n, size_t elem)
{
    if ((n & (n - 1)) == 0) { /* n is 0 or a power of two: double */
        void *q = realloc(*p, (size_t)(n ? 2 * n : 4) * elem);
        if (!q)
            return -1;
        *p = q;
    }
    return 0;
}

static int seq_append(struct omni__ynode *s, struct omni__ynode *item)
{
    if (grow((void **)&s->items, s->n, sizeof *s->items))
        return -1;
    s->items[s->n++] = item;
    return 0;
}

static int map_append(struct omni__ynode *m, char *key, int line, int col, struct omni__ynode *val)
{
    if (grow((void **)&m->items, m->n, sizeof *m->items) ||
        grow((void **)&m->keys, m->n, sizeof *m->keys) ||
        grow((void **)&m->key_lines, m->n, sizeof *m->key_lines) ||
        grow((void **)&m->key_cols, m->n, sizeof *m->key_cols))
        return -1;
    m->items[m->n] = val;
    m->keys[m->n] = key;
    m->key_lines[m->n] = line;
    m->key_cols[m->n] = col;
    m->n++;
    return 0;
}

static int next_event(struct builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev)) {
        const yaml_mark_t *m = b->parser.problem_offset || b->parser.problem ? &b->parser.problem_mark
                                                                             : &b->parser.mark;
        return omni_error_set(b->err, OMNI_EPIPELINE, "%s:%zu:%zu: YAML syntax error: %s%s%s",
                              b->name, m->line + 1, m->column + 1,
                              b->parser.problem ? b->parser.problem : "unknown problem",
                              b->parser.context ? " " : "",
                              b->parser.context ? b->parser.context : "");
    }
    return OMNI_OK;
}

static int build_node(struct builder *b, yaml_event_t *ev, int depth, struct omni__ynode **out);
static void free_rec(struct omni__ynode *n);

static int build_children(struct builder *b, struct omni__ynode *n, int depth)
{
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(b, &ev);
        if (rc)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return OMNI_OK;
        }
        if (n->kind == OMNI__Y_SEQ) {
            struct omni__ynode *item;
            rc = build_node(b, &ev, depth + 1, &item);
            if (rc)
                return rc;
            if (seq_append(n, item)) {
                free_rec(item);
                return omni_error_set(b->err, OMNI_ENOMEM, "%s: out of memory", b->name);
            }
            continue;
        }
        /* mapping: ev is the key */
        if (ev.type != YAML_SCALAR_EVENT) {
            int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
            yaml_event_delete(&ev);
            return omni_error_set(b->err, OMNI_EPIPELINE,
                                  "%s:%d:%d: mapping keys must be plain scalars", b->name, line, col);
        }
        int kline = (int)ev.start_mark.line + 1, kcol = (int)ev.start_mark.column + 1;
        char *key = strdup((const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        if (!key)
            return omni_error_set(b->err, OMNI_ENOMEM, "%s: out of memory", b->name);
        for (int i = 0; i < n->n; i++) {
            if (!strcmp(n->keys[i], key)) {
                omni_error_set(b->err, OMNI_EPIPELINE,
                               "%s:%d:%d: duplicate key '%s' (first at line %d)", b->name, kline,
                               kcol, key, n->key_lines[i]);
                free(key);
                return OMNI_EPIPELINE;
            }
        }
        yaml_event_t vev;
        rc = next_event(b, &vev);
        if (rc) {
            free(key);
            return rc;
        }
        struct omni__ynode *val;
        rc = build_node(b, &vev, depth + 1, &val);
        if (rc) {
            free(key);
            return rc;
        }
        if (map_append(n, key, kline, kcol, val)) {
            free(key);
            free_rec(val);
            return omni_error_set(b->err, OMNI_ENOMEM, "%s: out of memory", b->name);
        }
    }
}

/* Consumes ev. */
static int build_node(struct builder *b, yaml_event_t *ev, int depth, struct omni__ynode **out)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    *out = NULL;
    if (depth > MAX_DEPTH) {
        yaml_event_delete(ev);
        return omni_error_set(b->err, OMNI_EPIPELINE, "%s:%d:%d: nesting deeper than %d levels",
                              b->name, line, col, MAX_DEPTH);
    }
    struct omni__ynode *n = NULL;
    int rc = OMNI_OK;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = node_new(OMNI__Y_SCALAR, b->file, line, col);
        if (n) {
            n->scalar = strdup((const char *)ev->data.scalar.value);
            n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                        ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
            if (!n->scalar) {
                free(n);
                n = NULL;
            }
        }
        yaml_event_delete(ev);
        if (!n)
            return omni_error_set(b->err, OMNI_ENOMEM, "%s: out of memory", b->name);
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if ((ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor
                                                   : ev->data.mapping_start.anchor)) {
            yaml_event_delete(ev);
            return omni_error_set(b->err, OMNI_EPIPELINE,
                                  "%s:%d:%d: anchors and aliases are not supported", b->name, line, col);
        }
        n = node_new(ev->type == YAML_SEQUENCE_START_EVENT ? OMNI__Y_SEQ : OMNI__Y_MAP, b->file,
                     line, col);
        yaml_event_delete(ev);
        if (!n)
            return omni_error_set(b->err, OMNI_ENOMEM, "%s: out of memory", b->name);
        rc = build_children(b, n, depth);
        if (rc) {
            free_rec(n);
            return rc;
        }
        break;
    case YAML_ALIAS_EVENT:
        yaml_event_delete(ev);
        return omni_error_set(b->err, OMNI_EPIPELINE,
                              "%s:%d:%d: anchors and aliases are not supported", b->name, line, col);
    default:
        yaml_event_delete(ev);
        return omni_error_set(b->err, OMNI_EPIPELINE, "%s:%d:%d: unexpected YAML event", b->name,
                              line, col);
    }
    *out = n;
    return OMNI_OK;
}

int omni__yaml_parse(const char *text, size_t len, const char *name, struct omni__ynode **out,
                     struct omni_error *err)
{
    struct builder b = {.name = name, .err = err};
    *out = NULL;
    b.file = strdup(name);
    if (!b.file)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    if (!yaml_parser_initialize(&b.parser)) {
        free(b.file);
        return omni_error_set(err, OMNI_ENOMEM, "%s: cannot initialise the YAML parser", name);
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
    yaml_event_t ev;
    struct omni__ynode *root = NULL;
    int rc;
    /* stream start, document start (or stream end for an empty text) */
    for (;;) {
        rc = next_event(&b, &ev);
        if (rc)
            goto fail;
        if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            root = node_new(OMNI__Y_MAP, b.file, 1, 1); /* empty document = empty map */
            if (!root) {
                rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
                goto fail;
            }
            break;
        }
        rc = build_node(&b, &ev, 0, &root);
        if (rc)
            goto fail;
        /* document end; a second document is an error */
        rc = next_event(&b, &ev);
        if (rc)
            goto fail;
        int type = ev.type;
        int line = (int)ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (type == YAML_DOCUMENT_END_EVENT) {
            rc = next_event(&b, &ev);
            if (rc)
                goto fail;
            type = ev.type;
            line = (int)ev.start_mark.line + 1;
            yaml_event_delete(&ev);
        }
        if (type != YAML_STREAM_END_EVENT) {
            rc = omni_error_set(err, OMNI_EPIPELINE, "%s:%d:1: only one YAML document is allowed",
                                name, line);
            goto fail;
        }
        break;
    }
    yaml_parser_delete(&b.parser);
    root->file = b.file; /* the root owns the file name: see omni__ynode_free */
    *out = root;
    return OMNI_OK;
fail:
    yaml_parser_delete(&b.parser);
    if (root)
        omni__ynode_free(root);
    else
        free(b.file);
    return rc;
}

int omni__yaml_parse_file(const char *path, struct omni__ynode **out, struct omni_error *err)
{
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (!f)
        return omni_error_set(err, OMNI_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0) {
        fclose(f);
        return omni_error_set(err, OMNI_EIO, "%s: cannot read", path);
    }
    long size = ftell(f);
    if (size > (16 << 20)) {
        fclose(f);
        return omni_error_set(err, OMNI_EPIPELINE, "%s: %ld bytes is too large for a pipeline file", path, size);
    }
    rewind(f);
    char *text = malloc((size_t)size + 1);
    if (!text) {
        fclose(f);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(text);
        return omni_error_set(err, OMNI_EIO, "%s: short read", path);
    }
    text[size] = '\0';
    int rc = omni__yaml_parse(text, (size_t)size, path, out, err);
    free(text);
    return rc;
}

static void free_rec(struct omni__ynode *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n; i++) {
        free_rec(n->items[i]);
        if (n->keys)
            free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->key_lines);
    free(n->key_cols);
    free(n->scalar);
    free(n);
}

void omni__ynode_free(struct omni__ynode *n)
{
    if (!n)
        return;
    char *file = (char *)n->file;
    free_rec(n);
    free(file);
}

static struct omni__ynode *clone_rec(const struct omni__ynode *n, const char *file)
{
    struct omni__ynode *c = node_new(n->kind, file, n->line, n->col);
    if (!c)
        return NULL;
    c->quoted = n->quoted;
    if (n->scalar && !(c->scalar = strdup(n->scalar)))
        goto fail;
    for (int i = 0; i < n->n; i++) {
        struct omni__ynode *item = clone_rec(n->items[i], file);
        if (!item)
            goto fail;
        int rc;
        if (n->kind == OMNI__Y_MAP) {
            char *k = strdup(n->keys[i]);
            rc = k ? map_append(c, k, n->key_lines[i], n->key_cols[i], item) : -1;
            if (rc)
                free(k);
        } else {
            rc = seq_append(c, item);
        }
        if (rc) {
            free_rec(item);
            goto fail;
        }
    }
    return c;
fail:
    free_rec(c);
    return NULL;
}

struct omni__ynode *omni__ynode_clone(const struct omni__ynode *n)
{
    char *file = strdup(n->file ? n->file : "");
    if (!file)
        return NULL;
    struct omni__ynode *c = clone_rec(n, file);
    if (!c)
        free(file);
    return c;
}

int omni__ymap_index(const struct omni__ynode *n, const char *key)
{
    if (!n || n->kind != OMNI__Y_MAP)
        return -1;
    for (int i = 0; i < n->n; i++)
        if (!strcmp(n->keys[i], key))
            return i;
    return -1;
}

struct omni__ynode *omni__ymap_get(const struct omni__ynode *n, const char *key)
{
    int i = omni__ymap_index(n, key);
    return i < 0 ? NULL : n->items[i];
}

struct omni__ynode *omni__ynode_new_map(const char *file, int line, int col)
{
    return node_new(OMNI__Y_MAP, file, line, col);
}

struct omni__ynode *omni__ynode_new_scalar(const char *text, const char *file, int line, int col)
{
    struct omni__ynode *n = node_new(OMNI__Y_SCALAR, file, line, col);
    if (n && !(n->scalar = strdup(text))) {
        free(n);
        n = NULL;
    }
    return n;
}

int omni__ymap_set_scalar(struct omni__ynode *map, const char *key, const char *value,
                          const char *file, int line, int col)
{
    struct omni__ynode *v = omni__ynode_new_scalar(value, file, line, col);
    if (!v)
        return -1;
    int i = omni__ymap_index(map, key);
    if (i >= 0) {
        free_rec(map->items[i]);
        map->items[i] = v;
        return 0;
    }
    char *k = strdup(key);
    if (!k || map_append(map, k, line, col, v)) {
        free(k);
        free_rec(v);
        return -1;
    }
    return 0;
}

static size_t str_rec(const struct omni__ynode *n, char *buf, size_t size, size_t used)
{
#define PUT(...) (used += (size_t)snprintf(buf + (used < size ? used : size), used < size ? size - used : 0, __VA_ARGS__))
    if (n->kind == OMNI__Y_SCALAR) {
        PUT("%s", n->scalar);
    } else if (n->kind == OMNI__Y_SEQ) {
        PUT("[");
        for (int i = 0; i < n->n; i++) {
            if (i)
                PUT(", ");
            used = str_rec(n->items[i], buf, size, used);
        }
        PUT("]");
    } else {
        PUT("{");
        for (int i = 0; i < n->n; i++) {
            PUT("%s%s: ", i ? ", " : "", n->keys[i]);
            used = str_rec(n->items[i], buf, size, used);
        }
        PUT("}");
    }
    return used;
#undef PUT
}

void omni__ynode_str(const struct omni__ynode *n, char *buf, size_t size)
{
    if (!size)
        return;
    buf[0] = '\0';
    str_rec(n, buf, size, 0);
    buf[size - 1] = '\0';
}

const char *omni__ynode_where(const struct omni__ynode *n, char *buf, size_t size)
{
    snprintf(buf, size, "%s:%d:%d", n && n->file ? n->file : "?", n ? n->line : 0, n ? n->col : 0);
    return buf;
}
