/* core/yaml_tree.h - a YAML document as a tree of nodes with locations.
 * Built with libyaml's event parser; aliases and anchors are refused, tags
 * ignored. Internal to libomni. */
#ifndef OMNI_YAML_TREE_H
#define OMNI_YAML_TREE_H

#include "omni/status.h"

enum omni__ynode_kind { OMNI__Y_SCALAR, OMNI__Y_SEQ, OMNI__Y_MAP };

struct omni__ynode {
    int kind;
    char *scalar;               /* OMNI__Y_SCALAR: the text */
    int quoted;                 /* scalar was quoted (never a null/bool/number) */
    int n;                      /* items (SEQ) or pairs (MAP) */
    struct omni__ynode **items; /* SEQ: items; MAP: values */
    char **keys;                /* MAP: keys */
    int *key_lines, *key_cols;  /* MAP: key locations (1-based) */
    const char *file;           /* shared, owned by the root */
    int line, col;              /* 1-based */
};

/* Parse text (name is used in messages). (transfer full: omni__ynode_free) */
int omni__yaml_parse(const char *text, size_t len, const char *name, struct omni__ynode **out,
                     struct omni_error *err);
int omni__yaml_parse_file(const char *path, struct omni__ynode **out, struct omni_error *err);
void omni__ynode_free(struct omni__ynode *n);
/* Deep copy (file name shared with... copied). */
struct omni__ynode *omni__ynode_clone(const struct omni__ynode *n);
/* Map look-up; NULL when absent or n is not a map. */
struct omni__ynode *omni__ymap_get(const struct omni__ynode *n, const char *key);
int omni__ymap_index(const struct omni__ynode *n, const char *key);
/* Set (replace or append) a scalar value in a map. Returns 0 or -1 (OOM). */
int omni__ymap_set_scalar(struct omni__ynode *map, const char *key, const char *value,
                          const char *file, int line, int col);
/* A new empty map / scalar node. */
struct omni__ynode *omni__ynode_new_map(const char *file, int line, int col);
struct omni__ynode *omni__ynode_new_scalar(const char *text, const char *file, int line, int col);
/* Emit a node as flow-style text ("{a: 1, b: [2, 3]}") into buf. */
void omni__ynode_str(const struct omni__ynode *n, char *buf, size_t size);
/* "file:line:col" */
const char *omni__ynode_where(const struct omni__ynode *n, char *buf, size_t size);

#endif
