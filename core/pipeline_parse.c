/* Pipeline YAML -> struct omni__pipeline_spec: variables, overrides, structure.
 * The grammar is documented in pipelines/README.md. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline_impl.h"

#define WHERE_FMT "%s:%d:%d: "
#define WHERE(n) spec->file, (n)->line, (n)->col

/* ---- ${VAR} expansion -------------------------------------------------------------- */

static int expand_scalar(struct omni__ynode *n, const char *file, struct omni_error *err)
{
    const char *s = n->scalar;
    if (!strchr(s, '$'))
        return OMNI_OK;
    size_t cap = strlen(s) + 64, len = 0;
    char *out = malloc(cap);
    if (!out)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (const char *p = s; *p;) {
        const char *piece = NULL;
        size_t plen = 0;
        char name[256];
        if (p[0] == '$' && p[1] == '$') { /* $$ is a literal $ */
            piece = "$";
            plen = 1;
            p += 2;
        } else if (p[0] == '$' && p[1] == '{') {
            const char *close = strchr(p, '}');
            if (!close) {
                free(out);
                return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: unterminated '${' in '%s'", file,
                                      n->line, n->col, s);
            }
            const char *body = p + 2;
            const char *dflt = strstr(body, ":-");
            if (dflt && dflt > close)
                dflt = NULL;
            size_t nl = (size_t)((dflt ? dflt : close) - body);
            if (nl == 0 || nl >= sizeof name) {
                free(out);
                return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: bad variable reference in '%s'", file,
                                      n->line, n->col, s);
            }
            memcpy(name, body, nl);
            name[nl] = '\0';
            for (size_t i = 0; i < nl; i++) {
                if (!(isalnum((unsigned char)name[i]) || name[i] == '_')) {
                    free(out);
                    return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: bad variable name '%s'", file,
                                          n->line, n->col, name);
                }
            }
            const char *val = getenv(name);
            if (val && *val) {
                piece = val;
                plen = strlen(val);
            } else if (dflt) {
                piece = dflt + 2;
                plen = (size_t)(close - piece);
            } else {
                free(out);
                return omni_error_set(err, OMNI_EPIPELINE,
                                      "%s:%d:%d: variable '%s' is not set (export it, or write ${%s:-default})",
                                      file, n->line, n->col, name, name);
            }
            p = close + 1;
        } else {
            piece = p;
            plen = 1;
            p++;
        }
        if (len + plen + 1 > cap) {
            cap = 2 * (len + plen + 1);
            char *r = realloc(out, cap);
            if (!r) {
                free(out);
                return omni_error_set(err, OMNI_ENOMEM, "out of memory");
            }
            out = r;
        }
        memcpy(out + len, piece, plen);
        len += plen;
    }
    out[len] = '\0';
    free(n->scalar);
    n->scalar = out;
    return OMNI_OK;
}

static int expand_all(struct omni__ynode *n, const char *file, struct omni_error *err)
{
    if (n->kind == OMNI__Y_SCALAR)
        return expand_scalar(n, file, err);
    for (int i = 0; i < n->n; i++) {
        int rc = expand_all(n->items[i], file, err);
        if (rc)
            return rc;
    }
    return OMNI_OK;
}

/* ---- --set overrides ------------------------------------------------------------------- */

static const char *stage_fields[] = {"type", "weights", "prefix", "device", "dtype", "attach", "plugin", NULL};

static int is_stage_field(const char *k)
{
    for (int i = 0; stage_fields[i]; i++)
        if (!strcmp(k, stage_fields[i]))
            return 1;
    return 0;
}

/* Replace or insert key -> value (a parsed node) in map. */
static int map_put(struct omni__ynode *map, const char *key, struct omni__ynode *value)
{
    int i = omni__ymap_index(map, key);
    if (i >= 0) {
        struct omni__ynode *old = map->items[i];
        map->items[i] = value;
        old->file = NULL; /* subtree: file owned by the root */
        omni__ynode_free(old);
        return 0;
    }
    /* append through the scalar helper, then swap in the node */
    if (omni__ymap_set_scalar(map, key, "", map->file, value->line, value->col))
        return -1;
    i = omni__ymap_index(map, key);
    struct omni__ynode *tmp = map->items[i];
    map->items[i] = value;
    tmp->file = NULL;
    omni__ynode_free(tmp);
    return 0;
}

static void rebase_file(struct omni__ynode *n, const char *file)
{
    n->file = file;
    for (int i = 0; i < n->n; i++)
        rebase_file(n->items[i], file);
}

static int apply_set(struct omni__ynode *doc, const char *file, const char *assignment, int idx,
                     struct omni_error *err)
{
    const char *eq = strchr(assignment, '=');
    char path[512];
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof path)
        return omni_error_set(err, OMNI_EINVAL, "--set '%s': expected stage.key=value", assignment);
    memcpy(path, assignment, (size_t)(eq - assignment));
    path[eq - assignment] = '\0';
    const char *value = eq + 1;
    struct omni__ynode *vnode = NULL;
    char name[64];
    snprintf(name, sizeof name, "--set #%d", idx + 1);
    /* values are YAML too: "[0, 1]" is a list, "0.5" a scalar */
    int rc = omni__yaml_parse(value, strlen(value), name, &vnode, err);
    if (rc)
        return rc;
    if (vnode->kind == OMNI__Y_MAP && vnode->n == 0 && strcmp(value, "{}")) {
        omni__ynode_free(vnode);
        vnode = omni__ynode_new_scalar(value, NULL, 1, 1);
        if (!vnode)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        char *f = strdup(name);
        rebase_file(vnode, f);
        if (!f) {
            omni__ynode_free(vnode);
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        }
    }
    /* the value node joins the document: its file name string is freed now and
     * it takes the document's */
    free((char *)vnode->file);
    rebase_file(vnode, file);

    char *dot = strchr(path, '.');
    struct omni__ynode *target = NULL;
    const char *key = path;
    if (!dot) {
        target = doc; /* top-level: task, device, dtype, name */
    } else {
        *dot = '\0';
        key = dot + 1;
        if (!strcmp(path, "loop") || !strcmp(path, "after")) {
            target = omni__ymap_get(doc, path);
            if (!target || target->kind != OMNI__Y_MAP) {
                vnode->file = NULL;
                omni__ynode_free(vnode);
                return omni_error_set(err, OMNI_EPIPELINE, "--set '%s': the pipeline has no %s section", assignment, path);
            }
        } else {
            struct omni__ynode *stages = omni__ymap_get(doc, "stages");
            struct omni__ynode *st = omni__ymap_get(stages, path);
            if (!st || st->kind != OMNI__Y_MAP) {
                char names[512] = "";
                size_t used = 0;
                for (int i = 0; stages && stages->kind == OMNI__Y_MAP && i < stages->n; i++)
                    used += (size_t)snprintf(names + used, used < sizeof names ? sizeof names - used : 0,
                                             "%s%s", i ? ", " : "", stages->keys[i]);
                vnode->file = NULL;
                omni__ynode_free(vnode);
                return omni_error_set(err, OMNI_EPIPELINE, "--set '%s': no stage '%s' (stages: %s)",
                                      assignment, path, names);
            }
            if (!strncmp(key, "params.", 7)) {
                key += 7;
            } else if (is_stage_field(key)) {
                target = st;
            }
            if (!target) {
                target = omni__ymap_get(st, "params");
                if (!target) {
                    struct omni__ynode *m = omni__ynode_new_map(file, vnode->line, vnode->col);
                    if (!m || map_put(st, "params", m)) {
                        vnode->file = NULL;
                        omni__ynode_free(vnode);
                        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
                    }
                    target = omni__ymap_get(st, "params");
                }
                if (target->kind != OMNI__Y_MAP) {
                    vnode->file = NULL;
                    omni__ynode_free(vnode);
                    return omni_error_set(err, OMNI_EPIPELINE, "--set '%s': params of stage '%s' is not a mapping", assignment, path);
                }
            }
        }
    }
    if (map_put(target, key, vnode)) {
        vnode->file = NULL;
        omni__ynode_free(vnode);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    return OMNI_OK;
}

/* ---- structure --------------------------------------------------------------------------- */

static int expect(const struct omni__pipeline_spec *spec, const struct omni__ynode *n, int kind,
                  const char *what, struct omni_error *err)
{
    static const char *names[] = {"a scalar", "a list", "a mapping"};
    if (n->kind == kind)
        return OMNI_OK;
    return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "%s must be %s, not %s", WHERE(n), what,
                          names[kind], names[n->kind]);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int parse_endpoint(const struct omni__pipeline_spec *spec, const struct omni__ynode *n,
                          const char *text, struct omni__endpoint *ep, struct omni_error *err)
{
    while (isspace((unsigned char)*text))
        text++;
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    const char *dot = memchr(text, '.', len);
    if (!dot || dot == text || dot == text + len - 1)
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "'%.*s' is not a port reference (write stage.port)",
                              WHERE(n), (int)len, text);
    ep->stage = strndup(text, (size_t)(dot - text));
    ep->port = strndup(dot + 1, len - (size_t)(dot - text) - 1);
    ep->loc.line = n->line;
    ep->loc.col = n->col;
    ep->stage_idx = -1;
    ep->port_idx = -1;
    if (!ep->stage || !ep->port)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    return OMNI_OK;
}

static int parse_edges(struct omni__pipeline_spec *spec, const struct omni__ynode *list,
                       struct omni__edge **out, int *n_out, struct omni_error *err)
{
    int rc = expect(spec, list, OMNI__Y_SEQ, "an edge list", err);
    if (rc)
        return rc;
    *out = calloc((size_t)list->n + 1, sizeof **out);
    if (!*out)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (int i = 0; i < list->n; i++) {
        const struct omni__ynode *e = list->items[i];
        struct omni__edge *ed = &(*out)[i];
        *n_out = i + 1;
        ed->loc.line = e->line;
        ed->loc.col = e->col;
        if (e->kind == OMNI__Y_SCALAR) {
            const char *arrow = strstr(e->scalar, "->");
            if (!arrow)
                return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "edge '%s' has no '->' (write a.out -> b.in)",
                                      WHERE(e), e->scalar);
            char *left = strndup(e->scalar, (size_t)(arrow - e->scalar));
            if (!left)
                return omni_error_set(err, OMNI_ENOMEM, "out of memory");
            rc = parse_endpoint(spec, e, left, &ed->from, err);
            free(left);
            if (!rc)
                rc = parse_endpoint(spec, e, arrow + 2, &ed->to, err);
            if (rc)
                return rc;
        } else if (e->kind == OMNI__Y_MAP) {
            const struct omni__ynode *f = omni__ymap_get(e, "from"), *t = omni__ymap_get(e, "to");
            if (!f || !t || f->kind != OMNI__Y_SCALAR || t->kind != OMNI__Y_SCALAR)
                return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "an edge mapping needs from: and to: port references",
                                      WHERE(e));
            if ((rc = parse_endpoint(spec, f, f->scalar, &ed->from, err)) ||
                (rc = parse_endpoint(spec, t, t->scalar, &ed->to, err)))
                return rc;
        } else {
            return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "an edge must be 'a.out -> b.in'", WHERE(e));
        }
    }
    return OMNI_OK;
}

static int parse_bindings(struct omni__pipeline_spec *spec, const struct omni__ynode *map,
                          struct omni__binding **out, int *n_out, const char *what,
                          struct omni_error *err)
{
    int rc = expect(spec, map, OMNI__Y_MAP, what, err);
    if (rc)
        return rc;
    *out = calloc((size_t)map->n + 1, sizeof **out);
    if (!*out)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (int i = 0; i < map->n; i++) {
        const struct omni__ynode *v = map->items[i];
        *n_out = i + 1;
        (*out)[i].name = strdup(map->keys[i]);
        if (!(*out)[i].name)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        if ((rc = expect(spec, v, OMNI__Y_SCALAR, what, err)) ||
            (rc = parse_endpoint(spec, v, v->scalar, &(*out)[i].ep, err)))
            return rc;
    }
    return OMNI_OK;
}

static int parse_int_node(const struct omni__pipeline_spec *spec, const struct omni__ynode *n,
                          const char *what, int64_t lo, int64_t *out, struct omni_error *err)
{
    int rc = expect(spec, n, OMNI__Y_SCALAR, what, err);
    if (rc)
        return rc;
    char *end;
    errno = 0;
    long long v = strtoll(n->scalar, &end, 10);
    if (end == n->scalar || *end || errno || v < lo)
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "%s must be an integer >= %lld, not '%s'",
                              WHERE(n), what, (long long)lo, n->scalar);
    *out = v;
    return OMNI_OK;
}

static int parse_device_node(const struct omni__pipeline_spec *spec, const struct omni__ynode *n,
                             struct omni_device *dev, struct omni_error *err)
{
    int rc = expect(spec, n, OMNI__Y_SCALAR, "device", err);
    if (rc)
        return rc;
    struct omni_error local;
    if (omni_device_parse(n->scalar, dev, &local))
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "%s", WHERE(n), local.msg);
    return OMNI_OK;
}

static int parse_dtype_node(const struct omni__pipeline_spec *spec, const struct omni__ynode *n,
                            int *dtype, struct omni_error *err)
{
    int rc = expect(spec, n, OMNI__Y_SCALAR, "dtype", err);
    if (rc)
        return rc;
    int d = omni_dtype_parse(n->scalar);
    if (d != OMNI_DTYPE_F32 && d != OMNI_DTYPE_F16 && d != OMNI_DTYPE_BF16)
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "unknown dtype '%s' (expected f32, f16 or bf16)",
                              WHERE(n), n->scalar);
    *dtype = d;
    return OMNI_OK;
}

/* A relative weights/plugin path is taken relative to the current directory
 * when it exists there, else relative to the pipeline file's folder. */
static char *resolve_path(const struct omni__pipeline_spec *spec, const char *p)
{
    if (!p || p[0] == '/' || !access(p, F_OK) || !spec->dir)
        return strdup(p ? p : "");
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/%s", spec->dir, p);
    if (!access(buf, F_OK))
        return strdup(buf);
    return strdup(p);
}

static int parse_stage(struct omni__pipeline_spec *spec, int idx, const char *name,
                       const struct omni__ynode *n, int kline, int kcol, struct omni_error *err)
{
    struct omni__stage_spec *st = &spec->stages[idx];
    st->loc.line = kline;
    st->loc.col = kcol;
    st->device = spec->device;
    st->dtype = spec->dtype;
    st->process = -1;
    if (!(st->name = strdup(name)))
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (const char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-'))
            return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage name '%s' may only hold letters, digits, _ and -",
                                  spec->file, kline, kcol, name);
    if (!strcmp(name, "loop"))
        return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: 'loop' is reserved and cannot name a stage",
                              spec->file, kline, kcol);
    int rc = expect(spec, n, OMNI__Y_MAP, "a stage", err);
    if (rc)
        return rc;
    for (int i = 0; i < n->n; i++) {
        const char *k = n->keys[i];
        const struct omni__ynode *v = n->items[i];
        if (!strcmp(k, "params")) {
            if ((rc = expect(spec, v, OMNI__Y_MAP, "params", err)))
                return rc;
            st->params = (struct omni__ynode *)v;
            continue;
        }
        if (!is_stage_field(k))
            return omni_error_set(err, OMNI_EPIPELINE,
                                  "%s:%d:%d: stage '%s': unknown key '%s' (expected type, params, weights, prefix, device, dtype, attach, plugin)",
                                  spec->file, n->key_lines[i], n->key_cols[i], name, k);
        if (!strcmp(k, "device")) {
            if ((rc = parse_device_node(spec, v, &st->device, err)))
                return rc;
            st->device_explicit = 1;
            continue;
        }
        if (!strcmp(k, "dtype")) {
            if ((rc = parse_dtype_node(spec, v, &st->dtype, err)))
                return rc;
            continue;
        }
        if ((rc = expect(spec, v, OMNI__Y_SCALAR, k, err)))
            return rc;
        char **slot = !strcmp(k, "type") ? &st->type : !strcmp(k, "weights") ? &st->weights
                    : !strcmp(k, "prefix") ? &st->prefix : !strcmp(k, "attach") ? &st->attach
                                                                                : &st->plugin_file;
        free(*slot);
        *slot = (slot == &st->weights || slot == &st->plugin_file) ? resolve_path(spec, v->scalar)
                                                                    : strdup(v->scalar);
        if (!*slot)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        if (slot == &st->weights)
            st->weights_loc = (struct omni__loc){v->line, v->col};
    }
    if (!st->type)
        return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s' has no type (the plugin name, e.g. type: mamba2)",
                              spec->file, kline, kcol, name);
    return OMNI_OK;
}

static int parse_loop(struct omni__pipeline_spec *spec, const struct omni__ynode *n, struct omni_error *err)
{
    int rc = expect(spec, n, OMNI__Y_MAP, "loop", err);
    if (rc)
        return rc;
    spec->has_loop = 1;
    spec->max_tokens = 256;
    const struct omni__ynode *tokens = NULL;
    for (int i = 0; i < n->n; i++) {
        const char *k = n->keys[i];
        const struct omni__ynode *v = n->items[i];
        if (!strcmp(k, "feed"))
            rc = parse_edges(spec, v, &spec->feed, &spec->n_feed, err);
        else if (!strcmp(k, "edges"))
            rc = parse_edges(spec, v, &spec->edges[OMNI__PHASE_LOOP], &spec->n_edges[OMNI__PHASE_LOOP], err);
        else if (!strcmp(k, "tokens")) {
            tokens = v;
            rc = expect(spec, v, OMNI__Y_SCALAR, "loop.tokens", err);
            if (!rc)
                rc = parse_endpoint(spec, v, v->scalar, &spec->loop_tokens, err);
        } else if (!strcmp(k, "max_tokens"))
            rc = parse_int_node(spec, v, "loop.max_tokens", 1, &spec->max_tokens, err);
        else if (!strcmp(k, "stop_ids")) {
            if (v->kind == OMNI__Y_SCALAR) { /* a single id */
                spec->stop_ids = calloc(1, sizeof *spec->stop_ids);
                if (!spec->stop_ids)
                    return omni_error_set(err, OMNI_ENOMEM, "out of memory");
                spec->n_stop_ids = 1;
                rc = parse_int_node(spec, v, "loop.stop_ids", INT32_MIN, &spec->stop_ids[0], err);
            } else {
                if ((rc = expect(spec, v, OMNI__Y_SEQ, "loop.stop_ids", err)))
                    return rc;
                spec->stop_ids = calloc((size_t)v->n + 1, sizeof *spec->stop_ids);
                if (!spec->stop_ids)
                    return omni_error_set(err, OMNI_ENOMEM, "out of memory");
                for (int j = 0; j < v->n && !rc; j++) {
                    rc = parse_int_node(spec, v->items[j], "a stop id", INT32_MIN, &spec->stop_ids[j], err);
                    spec->n_stop_ids = j + 1;
                }
            }
        } else
            rc = omni_error_set(err, OMNI_EPIPELINE,
                                "%s:%d:%d: loop: unknown key '%s' (expected feed, edges, tokens, max_tokens, stop_ids)",
                                spec->file, n->key_lines[i], n->key_cols[i], k);
        if (rc)
            return rc;
    }
    if (!tokens)
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "loop needs tokens: (the port whose value is collected each step, e.g. sampler.token)",
                              WHERE(n));
    if (!spec->n_feed)
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "loop needs at least one feed: edge (e.g. sampler.token -> backbone.ids)",
                              WHERE(n));
    return OMNI_OK;
}

static int parse_placement(struct omni__pipeline_spec *spec, const struct omni__ynode *n,
                           struct omni_error *err)
{
    int rc = expect(spec, n, OMNI__Y_SEQ, "placement", err);
    if (rc)
        return rc;
    spec->placements = calloc((size_t)n->n + 1, sizeof *spec->placements);
    if (!spec->placements)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (int i = 0; i < n->n; i++) {
        const struct omni__ynode *p = n->items[i];
        struct omni__placement *pl = &spec->placements[i];
        spec->n_placements = i + 1;
        pl->loc = (struct omni__loc){p->line, p->col};
        if ((rc = expect(spec, p, OMNI__Y_MAP, "a placement entry", err)))
            return rc;
        for (int j = 0; j < p->n; j++) {
            const char *k = p->keys[j];
            const struct omni__ynode *v = p->items[j];
            if (!strcmp(k, "process") || !strcmp(k, "endpoint")) {
                if ((rc = expect(spec, v, OMNI__Y_SCALAR, k, err)))
                    return rc;
                char **slot = !strcmp(k, "process") ? &pl->process : &pl->endpoint;
                free(*slot);
                if (!(*slot = strdup(v->scalar)))
                    return omni_error_set(err, OMNI_ENOMEM, "out of memory");
            } else if (!strcmp(k, "device")) {
                if ((rc = parse_device_node(spec, v, &pl->device, err)))
                    return rc;
                pl->has_device = 1;
            } else if (!strcmp(k, "stages")) {
                if ((rc = expect(spec, v, OMNI__Y_SEQ, "placement stages", err)))
                    return rc;
                pl->stages = calloc((size_t)v->n + 1, sizeof *pl->stages);
                if (!pl->stages)
                    return omni_error_set(err, OMNI_ENOMEM, "out of memory");
                for (int s = 0; s < v->n; s++) {
                    if ((rc = expect(spec, v->items[s], OMNI__Y_SCALAR, "a stage name", err)))
                        return rc;
                    pl->stages[s] = strdup(v->items[s]->scalar);
                    pl->n_stages = s + 1;
                    int si = omni__spec_stage_index(spec, v->items[s]->scalar);
                    if (si < 0)
                        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "placement: no stage '%s'",
                                              WHERE(v->items[s]), v->items[s]->scalar);
                    if (spec->stages[si].process >= 0)
                        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "placement: stage '%s' is already placed in process '%s'",
                                              WHERE(v->items[s]), v->items[s]->scalar,
                                              spec->placements[spec->stages[si].process].process);
                    spec->stages[si].process = i;
                    if (pl->has_device)
                        spec->stages[si].device = pl->device;
                }
            } else {
                return omni_error_set(err, OMNI_EPIPELINE,
                                      "%s:%d:%d: placement: unknown key '%s' (expected process, stages, endpoint, device)",
                                      spec->file, p->key_lines[j], p->key_cols[j], k);
            }
        }
        if (!pl->process || !pl->n_stages)
            return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "a placement entry needs process: and stages:", WHERE(p));
        if (!pl->endpoint && !(pl->endpoint = strdup("auto")))
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        for (int q = 0; q < i; q++)
            if (!strcmp(spec->placements[q].process, pl->process))
                return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "process '%s' is placed twice", WHERE(p), pl->process);
        if (strcmp(pl->endpoint, "auto") && strncmp(pl->endpoint, "ipc://", 6) && strncmp(pl->endpoint, "tcp://", 6))
            return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "endpoint '%s' must be auto, ipc://PATH or tcp://HOST:PORT",
                                  WHERE(p), pl->endpoint);
    }
    return OMNI_OK;
}

static int parse_ipc(struct omni__pipeline_spec *spec, const struct omni__ynode *n, struct omni_error *err)
{
    int rc = expect(spec, n, OMNI__Y_MAP, "ipc", err);
    if (rc)
        return rc;
    for (int j = 0; j < n->n; j++) {
        const char *k = n->keys[j];
        const struct omni__ynode *v = n->items[j];
        int i = 0;
        while (i < OMNI__IPC_NKNOBS && strcmp(omni__ipc_knobs[i].key, k))
            i++;
        if (i == OMNI__IPC_NKNOBS)
            return omni_error_set(err, OMNI_EPIPELINE,
                                  "%s:%d:%d: ipc: unknown key '%s' (expected heartbeat_ms, dead_ms, start_ms, "
                                  "load_ms, call_ms, max_message, inline)",
                                  spec->file, n->key_lines[j], n->key_cols[j], k);
        const struct omni__ipc_knob *kn = &omni__ipc_knobs[i];
        if ((rc = expect(spec, v, OMNI__Y_SCALAR, k, err)))
            return rc;
        char *end;
        errno = 0;
        long long x = strtoll(v->scalar, &end, 10);
        if (i == OMNI__IPC_INLINE && (!strcmp(v->scalar, "true") || !strcmp(v->scalar, "false")))
            x = !strcmp(v->scalar, "true"), end = (char *)"", errno = 0;
        if (end == v->scalar || *end || errno || x < kn->lo || x > kn->hi)
            return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "ipc: %s must be %s in [%ld, %ld], not '%s'", WHERE(v),
                                  k, i == OMNI__IPC_INLINE ? "true, false or an integer" : "an integer", kn->lo,
                                  kn->hi, v->scalar);
        spec->ipc[i] = (long)x;
    }
    return OMNI_OK;
}

int omni__spec_stage_index(const struct omni__pipeline_spec *s, const char *name)
{
    for (int i = 0; i < s->n_stages; i++)
        if (s->stages[i].name && !strcmp(s->stages[i].name, name))
            return i;
    return -1;
}

static int parse_doc(struct omni__pipeline_spec *spec, const struct omni_pipeline_options *opt,
                     struct omni_error *err)
{
    struct omni__ynode *doc = spec->doc;
    int rc = expect(spec, doc, OMNI__Y_MAP, "a pipeline file", err);
    if (rc)
        return rc;
    const struct omni__ynode *ver = omni__ymap_get(doc, "omni");
    if (!ver)
        return omni_error_set(err, OMNI_EPIPELINE, "%s:1:1: not an omni pipeline: the 'omni: 1' version key is missing", spec->file);
    if (ver->kind != OMNI__Y_SCALAR || strcmp(ver->scalar, "1"))
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "unsupported pipeline format version (this omni reads omni: 1)", WHERE(ver));
    spec->device = OMNI_CPU;
    spec->dtype = OMNI_DTYPE_F32;
    /* pipeline defaults first, so stages inherit them whatever the key order */
    for (int i = 0; i < doc->n; i++) {
        const char *k = doc->keys[i];
        const struct omni__ynode *v = doc->items[i];
        if (!strcmp(k, "device"))
            rc = parse_device_node(spec, v, &spec->device, err);
        else if (!strcmp(k, "dtype"))
            rc = parse_dtype_node(spec, v, &spec->dtype, err);
        if (rc)
            return rc;
    }
    if (opt && opt->size >= sizeof *opt && opt->device) {
        struct omni_error local;
        if (omni_device_parse(opt->device, &spec->device, &local))
            return omni_error_set(err, OMNI_EINVAL, "--device: %s", local.msg);
    }
    if (opt && opt->size >= sizeof *opt && opt->dtype) {
        int d = omni_dtype_parse(opt->dtype);
        if (d != OMNI_DTYPE_F32 && d != OMNI_DTYPE_F16 && d != OMNI_DTYPE_BF16)
            return omni_error_set(err, OMNI_EINVAL, "--dtype: unknown dtype '%s' (f32, f16 or bf16)", opt->dtype);
        spec->dtype = d;
    }
    const struct omni__ynode *stages = omni__ymap_get(doc, "stages");
    if (!stages)
        return omni_error_set(err, OMNI_EPIPELINE, "%s:1:1: the pipeline has no stages: section", spec->file);
    if ((rc = expect(spec, stages, OMNI__Y_MAP, "stages", err)))
        return rc;
    if (stages->n == 0)
        return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "stages is empty", WHERE(stages));
    spec->stages = calloc((size_t)stages->n, sizeof *spec->stages);
    if (!spec->stages)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    spec->n_stages = stages->n;
    for (int i = 0; i < stages->n; i++)
        if ((rc = parse_stage(spec, i, stages->keys[i], stages->items[i], stages->key_lines[i],
                              stages->key_cols[i], err)))
            return rc;
    /* --device/--dtype on the command line beat the stages' own values */
    for (int i = 0; opt && opt->size >= sizeof *opt && i < spec->n_stages; i++) {
        if (opt->device) {
            spec->stages[i].device = spec->device;
            spec->stages[i].device_explicit = 0;
        }
        if (opt->dtype)
            spec->stages[i].dtype = spec->dtype;
    }
    for (int i = 0; i < doc->n; i++) {
        const char *k = doc->keys[i];
        const struct omni__ynode *v = doc->items[i];
        if (!strcmp(k, "omni") || !strcmp(k, "stages") || !strcmp(k, "device") || !strcmp(k, "dtype"))
            continue;
        if (!strcmp(k, "name") || !strcmp(k, "task")) {
            if ((rc = expect(spec, v, OMNI__Y_SCALAR, k, err)))
                return rc;
            char **slot = !strcmp(k, "name") ? &spec->name : &spec->task;
            free(*slot);
            if (!(*slot = strdup(v->scalar)))
                return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        } else if (!strcmp(k, "plugin_path")) {
            const struct omni__ynode *list = v;
            int n = v->kind == OMNI__Y_SEQ ? v->n : 1;
            spec->plugin_dirs = calloc((size_t)n + 1, sizeof *spec->plugin_dirs);
            if (!spec->plugin_dirs)
                return omni_error_set(err, OMNI_ENOMEM, "out of memory");
            for (int j = 0; j < n; j++) {
                const struct omni__ynode *it = v->kind == OMNI__Y_SEQ ? list->items[j] : v;
                if ((rc = expect(spec, it, OMNI__Y_SCALAR, "a plugin folder", err)))
                    return rc;
                spec->plugin_dirs[j] = resolve_path(spec, it->scalar);
                spec->n_plugin_dirs = j + 1;
            }
        } else if (!strcmp(k, "inputs")) {
            rc = parse_bindings(spec, v, &spec->inputs, &spec->n_inputs, "inputs", err);
        } else if (!strcmp(k, "outputs")) {
            rc = parse_bindings(spec, v, &spec->outputs, &spec->n_outputs, "outputs", err);
        } else if (!strcmp(k, "edges")) {
            rc = parse_edges(spec, v, &spec->edges[OMNI__PHASE_PREFILL], &spec->n_edges[OMNI__PHASE_PREFILL], err);
        } else if (!strcmp(k, "loop")) {
            rc = parse_loop(spec, v, err);
        } else if (!strcmp(k, "after")) {
            if ((rc = expect(spec, v, OMNI__Y_MAP, "after", err)))
                return rc;
            const struct omni__ynode *e = omni__ymap_get(v, "edges");
            for (int j = 0; j < v->n; j++)
                if (strcmp(v->keys[j], "edges"))
                    return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: after: unknown key '%s' (expected edges)",
                                          spec->file, v->key_lines[j], v->key_cols[j], v->keys[j]);
            if (!e)
                return omni_error_set(err, OMNI_EPIPELINE, WHERE_FMT "after needs edges:", WHERE(v));
            rc = parse_edges(spec, e, &spec->edges[OMNI__PHASE_AFTER], &spec->n_edges[OMNI__PHASE_AFTER], err);
        } else if (!strcmp(k, "placement")) {
            rc = parse_placement(spec, v, err);
        } else if (!strcmp(k, "ipc")) {
            rc = parse_ipc(spec, v, err);
        } else {
            rc = omni_error_set(err, OMNI_EPIPELINE,
                                "%s:%d:%d: unknown top-level key '%s' (expected omni, name, task, device, dtype, plugin_path, stages, inputs, edges, loop, after, outputs, placement, ipc)",
                                spec->file, doc->key_lines[i], doc->key_cols[i], k);
        }
        if (rc)
            return rc;
    }
    if (!spec->name && !(spec->name = dup_or_null(spec->file)))
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    if (!spec->task && !(spec->task = strdup("")))
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    return OMNI_OK;
}

int omni__pipeline_parse(const char *path, const struct omni_pipeline_options *opt,
                         struct omni__pipeline_spec **out, struct omni_error *err)
{
    *out = NULL;
    struct omni__pipeline_spec *spec = calloc(1, sizeof *spec);
    if (!spec)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    spec->file = strdup(path);
    for (int i = 0; i < OMNI__IPC_NKNOBS; i++)
        spec->ipc[i] = -1;
    const char *slash = strrchr(path, '/');
    spec->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    int rc = (!spec->file || !spec->dir) ? omni_error_set(err, OMNI_ENOMEM, "out of memory") : OMNI_OK;
    if (!rc)
        rc = omni__yaml_parse_file(path, &spec->doc, err);
    if (!rc)
        rc = expand_all(spec->doc, path, err);
    for (int i = 0; !rc && opt && opt->size >= sizeof *opt && i < opt->n_sets; i++)
        rc = apply_set(spec->doc, spec->doc->file, opt->sets[i], i, err);
    if (!rc)
        rc = parse_doc(spec, opt, err);
    if (rc) {
        omni__pipeline_spec_free(spec);
        return rc;
    }
    *out = spec;
    return OMNI_OK;
}

static void free_ep(struct omni__endpoint *e)
{
    free(e->stage);
    free(e->port);
}

static void free_edges(struct omni__edge *e, int n)
{
    for (int i = 0; e && i < n; i++) {
        free_ep(&e[i].from);
        free_ep(&e[i].to);
    }
    free(e);
}

void omni__pipeline_spec_free(struct omni__pipeline_spec *spec)
{
    if (!spec)
        return;
    for (int i = 0; i < spec->n_stages; i++) {
        struct omni__stage_spec *s = &spec->stages[i];
        free(s->name);
        free(s->type);
        free(s->weights);
        free(s->prefix);
        free(s->attach);
        free(s->plugin_file);
    }
    free(spec->stages);
    for (int p = 0; p < OMNI__NPHASES; p++) {
        free_edges(spec->edges[p], spec->n_edges[p]);
        free(spec->order[p]);
    }
    free_edges(spec->feed, spec->n_feed);
    for (int i = 0; i < spec->n_inputs; i++) {
        free(spec->inputs[i].name);
        free_ep(&spec->inputs[i].ep);
    }
    for (int i = 0; i < spec->n_outputs; i++) {
        free(spec->outputs[i].name);
        free_ep(&spec->outputs[i].ep);
    }
    free(spec->inputs);
    free(spec->outputs);
    free_ep(&spec->loop_tokens);
    free(spec->stop_ids);
    for (int i = 0; i < spec->n_placements; i++) {
        struct omni__placement *pl = &spec->placements[i];
        free(pl->process);
        free(pl->endpoint);
        for (int s = 0; s < pl->n_stages; s++)
            free(pl->stages[s]);
        free(pl->stages);
    }
    free(spec->placements);
    for (int i = 0; i < spec->n_plugin_dirs; i++)
        free(spec->plugin_dirs[i]);
    free(spec->plugin_dirs);
    omni__ynode_free(spec->doc);
    free(spec->name);
    free(spec->task);
    free(spec->file);
    free(spec->dir);
    free(spec);
}
