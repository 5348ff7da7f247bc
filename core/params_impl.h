/* core/params_impl.h - struct omni_params over a YAML mapping node. */
#ifndef OMNI_PARAMS_IMPL_H
#define OMNI_PARAMS_IMPL_H

#include "omni/plugin.h"
#include "yaml_tree.h"

struct omni_params {
    const struct omni__ynode *map; /* a mapping, or NULL (no params) */
};

static inline struct omni_params omni__params_of(const struct omni__ynode *map)
{
    struct omni_params p = {map && map->kind == OMNI__Y_MAP ? map : NULL};
    return p;
}

#endif
