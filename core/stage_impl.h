/* core/stage_impl.h - a created stage as the core keeps it (internal). */
#ifndef OMNI_STAGE_IMPL_H
#define OMNI_STAGE_IMPL_H

#include "omni/plugin.h"
#include "params_impl.h"
#include "plugin_impl.h"

struct omni__stage_inst {
    const struct omni__plugin *plugin;
    struct omni_stage *stage; /* NULL until created */
    char *name;
    char *where;
    struct omni__ynode *params; /* owned clone (may be NULL) */
    struct omni_params params_view;
    struct omni_device device;
    int dtype;
};

/* Create the plugin's stage; params is cloned. */
int omni__stage_create(struct omni__stage_inst *si, const struct omni__plugin *p, const char *name,
                       const struct omni__ynode *params, struct omni_device dev, int dtype,
                       const char *where, struct omni_error *err);
/* Call load (if the plugin has one). */
int omni__stage_load(struct omni__stage_inst *si, struct omni_weights *w, const char *prefix,
                     const char *where, struct omni_error *err);
void omni__stage_destroy(struct omni__stage_inst *si);
/* Has op X (size-checked, for append-only tables)? */
#define OMNI__HAS_OP(ops, member) \
    ((ops)->size >= offsetof(struct omni_stage_ops, member) + sizeof((ops)->member) && (ops)->member)

#endif
