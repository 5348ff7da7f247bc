/* core/plugin_impl.h - the plugin loader (internal). */
#ifndef OMNI_PLUGIN_IMPL_H
#define OMNI_PLUGIN_IMPL_H

#include "omni/plugin.h"

struct omni__plugin {
    char *path;
    void *dl;
    const struct omni_plugin_desc *desc;
};

/* dlopen(RTLD_NOW|RTLD_LOCAL) path and validate its descriptor. Plugins stay
 * loaded for the life of the process (cached by real path).
 * (transfer none: the registry owns the result) */
int omni__plugin_open_file(const char *path, const struct omni__plugin **out,
                           struct omni_error *err);
/* Find omni_<name>.so in dirs (in order), then OMNI_PLUGIN_PATH, then the
 * folders beside libomni (build tree and install tree), then OMNI_PLUGIN_DIR. */
int omni__plugin_find(const char *name, const char *const *dirs, int n_dirs,
                      const struct omni__plugin **out, struct omni_error *err);
/* The default search path (without caller dirs), ':'-separated, into buf. */
const char *omni__plugin_search_path(char *buf, size_t size);
/* Call fn for every omni_*.so found on the path (first occurrence of each name). */
int omni__plugin_foreach(const char *const *dirs, int n_dirs,
                         void (*fn)(const char *path, const struct omni__plugin *p,
                                    const struct omni_error *load_err, void *user),
                         void *user);
/* Port lookup: index among ports of direction dir (IN/OUT), -1 if absent. */
int omni__plugin_port_index(const struct omni_plugin_desc *d, int dir, const char *name);
int omni__plugin_port_count(const struct omni_plugin_desc *d, int dir);
const struct omni_port_desc *omni__plugin_port(const struct omni_plugin_desc *d, int dir, int idx);

#endif
