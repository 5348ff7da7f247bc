/* Typed access to a stage's YAML params. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "params_impl.h"

static const struct omni__ynode *get(const struct omni_params *p, const char *key)
{
    return p ? omni__ymap_get(p->map, key) : NULL;
}

int omni_params_has(const struct omni_params *p, const char *key) { return get(p, key) != NULL; }

const char *omni_params_str(const struct omni_params *p, const char *key, const char *def)
{
    const struct omni__ynode *n = get(p, key);
    return n && n->kind == OMNI__Y_SCALAR ? n->scalar : def;
}

const char *omni_params_where(const struct omni_params *p, const char *key)
{
    static _Thread_local char buf[512];
    const struct omni__ynode *n = get(p, key);
    if (!n)
        return "";
    return omni__ynode_where(n, buf, sizeof buf);
}

const char *omni_params_key(const struct omni_params *p, int i)
{
    if (!p || !p->map || i < 0 || i >= p->map->n)
        return NULL;
    return p->map->keys[i];
}

static int bad(const struct omni__ynode *n, const char *key, const char *what, struct omni_error *err)
{
    char where[512], text[256];
    omni__ynode_str(n, text, sizeof text);
    return omni_error_set(err, OMNI_EINVAL, "%s: param '%s': expected %s, got '%s'",
                          omni__ynode_where(n, where, sizeof where), key, what, text);
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (end == s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

int omni_params_int(const struct omni_params *p, const char *key, int64_t def, int64_t *out,
                    struct omni_error *err)
{
    const struct omni__ynode *n = get(p, key);
    *out = def;
    if (!n)
        return OMNI_OK;
    if (n->kind != OMNI__Y_SCALAR || parse_int(n->scalar, out))
        return bad(n, key, "an integer", err);
    return OMNI_OK;
}

int omni_params_float(const struct omni_params *p, const char *key, double def, double *out,
                      struct omni_error *err)
{
    const struct omni__ynode *n = get(p, key);
    *out = def;
    if (!n)
        return OMNI_OK;
    char *end;
    if (n->kind != OMNI__Y_SCALAR)
        return bad(n, key, "a number", err);
    errno = 0;
    double v = strtod(n->scalar, &end);
    if (end == n->scalar || *end || errno || !isfinite(v))
        return bad(n, key, "a number", err);
    *out = v;
    return OMNI_OK;
}

int omni_params_bool(const struct omni_params *p, const char *key, int def, int *out,
                     struct omni_error *err)
{
    const struct omni__ynode *n = get(p, key);
    *out = def;
    if (!n)
        return OMNI_OK;
    if (n->kind == OMNI__Y_SCALAR) {
        const char *s = n->scalar;
        if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcmp(s, "1")) {
            *out = 1;
            return OMNI_OK;
        }
        if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") || !strcmp(s, "0")) {
            *out = 0;
            return OMNI_OK;
        }
    }
    return bad(n, key, "true or false", err);
}

int omni_params_int_list(const struct omni_params *p, const char *key, int64_t *vals, int *n,
                         struct omni_error *err)
{
    const struct omni__ynode *node = get(p, key);
    int cap = *n;
    *n = 0;
    if (!node)
        return OMNI_OK;
    if (node->kind == OMNI__Y_SCALAR) { /* a single value counts as a list of one */
        if (cap < 1 || parse_int(node->scalar, &vals[0]))
            return bad(node, key, "a list of integers", err);
        *n = 1;
        return OMNI_OK;
    }
    if (node->kind != OMNI__Y_SEQ)
        return bad(node, key, "a list of integers", err);
    if (node->n > cap) {
        char where[512];
        return omni_error_set(err, OMNI_EINVAL, "%s: param '%s': at most %d values, got %d",
                              omni__ynode_where(node, where, sizeof where), key, cap, node->n);
    }
    for (int i = 0; i < node->n; i++) {
        const struct omni__ynode *it = node->items[i];
        if (it->kind != OMNI__Y_SCALAR || parse_int(it->scalar, &vals[i]))
            return bad(it, key, "an integer list item", err);
    }
    *n = node->n;
    return OMNI_OK;
}

/* The items of list param `key` (a scalar counts as a list of one): *count = 0
 * when absent; an error naming the param when not a list or longer than cap. */
static int list_items(const struct omni_params *p, const char *key, int cap,
                      const struct omni__ynode ***items, int *count, struct omni_error *err)
{
    static _Thread_local const struct omni__ynode *single[1];
    const struct omni__ynode *node = get(p, key);
    *count = 0;
    if (!node)
        return OMNI_OK;
    if (node->kind == OMNI__Y_SCALAR) {
        single[0] = node;
        *items = single;
        *count = 1;
    } else if (node->kind == OMNI__Y_SEQ) {
        *items = (const struct omni__ynode **)node->items;
        *count = node->n;
    } else {
        return bad(node, key, "a list", err);
    }
    if (*count > cap) {
        char where[512];
        int n = *count;
        *count = 0;
        return omni_error_set(err, OMNI_EINVAL, "%s: param '%s': at most %d values, got %d",
                              omni__ynode_where(node, where, sizeof where), key, cap, n);
    }
    return OMNI_OK;
}

int omni_params_float_list(const struct omni_params *p, const char *key, double *vals, int *n,
                           struct omni_error *err)
{
    const struct omni__ynode **items;
    int count, rc = list_items(p, key, *n, &items, &count, err);
    *n = 0;
    if (rc)
        return rc;
    for (int i = 0; i < count; i++) {
        char *end;
        if (items[i]->kind != OMNI__Y_SCALAR)
            return bad(items[i], key, "a number", err);
        errno = 0;
        double v = strtod(items[i]->scalar, &end);
        if (end == items[i]->scalar || *end || errno || !isfinite(v))
            return bad(items[i], key, "a number", err);
        vals[i] = v;
    }
    *n = count;
    return OMNI_OK;
}

int omni_params_str_list(const struct omni_params *p, const char *key, const char **vals, int *n,
                         struct omni_error *err)
{
    const struct omni__ynode **items;
    int count, rc = list_items(p, key, *n, &items, &count, err);
    *n = 0;
    if (rc)
        return rc;
    for (int i = 0; i < count; i++) {
        if (items[i]->kind != OMNI__Y_SCALAR)
            return bad(items[i], key, "a string", err);
        vals[i] = items[i]->scalar;
    }
    *n = count;
    return OMNI_OK;
}
