/* Loading and validating plugins: dlopen + descriptor checks + search path. */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plugin_impl.h"

#ifndef OMNI_PLUGIN_DIR
#define OMNI_PLUGIN_DIR "/usr/local/lib/omni/plugins"
#endif

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct omni__plugin **registry;
static int registry_n, registry_cap;

static int validate(const char *path, const struct omni_plugin_desc *d, struct omni_error *err)
{
    const size_t min_size = offsetof(struct omni_plugin_desc, adapter);
    if (d->abi_major != OMNI_ABI_MAJOR)
        return omni_error_set(err, OMNI_EPLUGIN,
                              "%s: plugin ABI %u.%u is incompatible with this omni (ABI %d.%d): major version differs",
                              path, d->abi_major, d->abi_minor, OMNI_ABI_MAJOR, OMNI_ABI_MINOR);
    if (d->abi_minor > OMNI_ABI_MINOR)
        return omni_error_set(err, OMNI_EPLUGIN,
                              "%s: plugin needs ABI %u.%u but this omni provides %d.%d (built against a newer omni)",
                              path, d->abi_major, d->abi_minor, OMNI_ABI_MAJOR, OMNI_ABI_MINOR);
    if (d->size < min_size)
        return omni_error_set(err, OMNI_EPLUGIN, "%s: descriptor size %u is smaller than the minimum %zu",
                              path, d->size, min_size);
    if (d->build_signature != OMNI_BUILD_SIGNATURE)
        return omni_error_set(err, OMNI_EPLUGIN,
                              "%s: build signature 0x%x does not match this omni's 0x%x (%s); rebuild the plugin against this omni",
                              path, d->build_signature, (unsigned)OMNI_BUILD_SIGNATURE,
                              (d->build_signature ^ OMNI_BUILD_SIGNATURE) & OMNI_BUILD_CUDA_BIT
                                  ? "one was built with CUDA, the other without"
                                  : "different word size");
    if (!d->name || !*d->name)
        return omni_error_set(err, OMNI_EPLUGIN, "%s: descriptor has no name", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t nl = strlen(d->name);
    if (strncmp(base, "omni_", 5) || strncmp(base + 5, d->name, nl) || strcmp(base + 5 + nl, ".so"))
        return omni_error_set(err, OMNI_EPLUGIN, "%s: descriptor name '%s' does not match the file name (expected omni_%s.so)",
                              path, d->name, d->name);
    const struct omni_stage_ops *o = d->ops;
    if (!o)
        return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s' has no stage ops", path, d->name);
    if (o->size < offsetof(struct omni_stage_ops, load))
        return omni_error_set(err, OMNI_EPLUGIN, "%s: stage ops table of %u bytes is too small", path, o->size);
    const char *missing = !o->create ? "create" : !o->destroy ? "destroy" : !o->forward ? "forward" : NULL;
    if (missing)
        return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s' lacks the required op '%s'", path,
                              d->name, missing);
    if (o->state_new && o->size >= offsetof(struct omni_stage_ops, step) && !o->state_free)
        return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s' has state_new but no state_free", path, d->name);
    if (d->n_ports && !d->ports)
        return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s' declares %u ports but no table", path,
                              d->name, d->n_ports);
    for (uint32_t i = 0; i < d->n_ports; i++) {
        const struct omni_port_desc *p = &d->ports[i];
        if (!p->name || !*p->name || (p->dir != OMNI_PORT_IN && p->dir != OMNI_PORT_OUT))
            return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s': port %u is malformed", path, d->name, i);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(d->ports[j].name, p->name) && d->ports[j].dir == p->dir)
                return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s': port '%s' declared twice", path,
                                      d->name, p->name);
    }
    if (d->adapter && (d->adapter->size < sizeof(uint32_t) || !d->adapter->apply || !d->adapter->task))
        return omni_error_set(err, OMNI_EPLUGIN, "%s: plugin '%s': adapter ops incomplete", path, d->name);
    return OMNI_OK;
}

int omni__plugin_open_file(const char *path, const struct omni__plugin **out, struct omni_error *err)
{
    char real[PATH_MAX];
    *out = NULL;
    if (!realpath(path, real))
        return omni_error_set(err, OMNI_ENOTFOUND, "%s: plugin file not found", path);
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < registry_n; i++) {
        if (!strcmp(registry[i]->path, real)) {
            *out = registry[i];
            pthread_mutex_unlock(&registry_lock);
            return OMNI_OK;
        }
    }
    int rc = OMNI_OK;
    dlerror();
    void *dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *e = dlerror();
        rc = omni_error_set(err, OMNI_EPLUGIN, "%s: cannot load plugin: %s", path, e ? e : "dlopen failed");
        goto out;
    }
    omni_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, OMNI_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        rc = omni_error_set(err, OMNI_EPLUGIN, "%s: not an omni plugin: entry symbol '%s' not found",
                            path, OMNI_PLUGIN_ENTRY_SYMBOL);
        dlclose(dl);
        goto out;
    }
    const struct omni_plugin_desc *d = entry();
    if (!d) {
        rc = omni_error_set(err, OMNI_EPLUGIN, "%s: entry symbol returned no descriptor", path);
        dlclose(dl);
        goto out;
    }
    rc = validate(path, d, err);
    if (rc) {
        dlclose(dl);
        goto out;
    }
    struct omni__plugin *p = calloc(1, sizeof *p);
    if (p)
        p->path = strdup(real);
    if (registry_n == registry_cap) {
        int cap = registry_cap ? 2 * registry_cap : 16;
        void *r = realloc(registry, (size_t)cap * sizeof *registry);
        if (r) {
            registry = r;
            registry_cap = cap;
        }
    }
    if (!p || !p->path || registry_n == registry_cap) {
        if (p)
            free(p->path);
        free(p);
        dlclose(dl);
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory registering plugin %s", path);
        goto out;
    }
    p->dl = dl;
    p->desc = d;
    registry[registry_n++] = p;
    *out = p;
out:
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

/* Folders beside the libomni.so that holds this code. */
static int lib_dirs(char dirs[2][PATH_MAX])
{
    Dl_info info;
    if (!dladdr((void *)lib_dirs, &info) || !info.dli_fname)
        return 0;
    char real[PATH_MAX];
    if (!realpath(info.dli_fname, real))
        return 0;
    char *slash = strrchr(real, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    snprintf(dirs[0], PATH_MAX, "%s/../plugins", real);    /* build tree: build/lib -> build/plugins */
    snprintf(dirs[1], PATH_MAX, "%s/omni/plugins", real);  /* install: PREFIX/lib/omni/plugins */
    return 2;
}

/* Assemble the full ordered list of folders. Returns count; fills up to max. */
static int search_dirs(const char *const *extra, int n_extra, char (*out)[PATH_MAX], int max)
{
    int n = 0;
    for (int i = 0; i < n_extra && n < max; i++)
        snprintf(out[n++], PATH_MAX, "%s", extra[i]);
    const char *env = getenv("OMNI_PLUGIN_PATH");
    if (env) {
        const char *s = env;
        while (*s && n < max) {
            const char *e = strchr(s, ':');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len && len < PATH_MAX) {
                memcpy(out[n], s, len);
                out[n++][len] = '\0';
            }
            s += len + (e ? 1 : 0);
        }
    }
    char lib[2][PATH_MAX];
    int nl = lib_dirs(lib);
    for (int i = 0; i < nl && n < max; i++)
        snprintf(out[n++], PATH_MAX, "%s", lib[i]);
    if (n < max)
        snprintf(out[n++], PATH_MAX, "%s", OMNI_PLUGIN_DIR);
    return n;
}

#define MAX_DIRS 32

const char *omni__plugin_search_path(char *buf, size_t size)
{
    static char dirs[MAX_DIRS][PATH_MAX];
    int n = search_dirs(NULL, 0, dirs, MAX_DIRS);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ":" : "", dirs[i]);
    return buf;
}

int omni__plugin_find(const char *name, const char *const *dirs, int n_dirs,
                      const struct omni__plugin **out, struct omni_error *err)
{
    char(*list)[PATH_MAX] = malloc(MAX_DIRS * sizeof *list);
    *out = NULL;
    if (!list)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
            free(list);
            return omni_error_set(err, OMNI_EINVAL, "invalid plugin name '%s' (lower-case letters, digits and _)", name);
        }
    }
    int n = search_dirs(dirs, n_dirs, list, MAX_DIRS);
    char path[PATH_MAX + 64];
    int rc = OMNI_ENOTFOUND;
    for (int i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/omni_%s.so", list[i], name);
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        rc = omni__plugin_open_file(path, out, err);
        break;
    }
    if (rc == OMNI_ENOTFOUND) {
        char where[4096];
        size_t used = 0;
        where[0] = '\0';
        for (int i = 0; i < n && used < sizeof where; i++)
            used += (size_t)snprintf(where + used, sizeof where - used, "%s%s", i ? ", " : "", list[i]);
        rc = omni_error_set(err, OMNI_ENOTFOUND, "plugin '%s' not found (looked for omni_%s.so in: %s; set OMNI_PLUGIN_PATH or plugin_path:)",
                            name, name, where);
    }
    free(list);
    return rc;
}

int omni__plugin_foreach(const char *const *dirs, int n_dirs,
                         void (*fn)(const char *path, const struct omni__plugin *p,
                                    const struct omni_error *load_err, void *user),
                         void *user)
{
    char(*list)[PATH_MAX] = malloc(MAX_DIRS * sizeof *list);
    if (!list)
        return OMNI_ENOMEM;
    int n = search_dirs(dirs, n_dirs, list, MAX_DIRS);
    char seen[256][64];
    int n_seen = 0;
    for (int i = 0; i < n; i++) {
        DIR *d = opendir(list[i]);
        if (!d)
            continue;
        struct dirent **names = NULL;
        int count = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (len < 9 || strncmp(e->d_name, "omni_", 5) || strcmp(e->d_name + len - 3, ".so"))
                continue;
            if (count == cap) {
                cap = cap ? 2 * cap : 16;
                void *r = realloc(names, (size_t)cap * sizeof *names);
                if (!r)
                    break;
                names = r;
            }
            names[count] = malloc(sizeof **names);
            if (!names[count])
                break;
            memcpy(names[count++], e, sizeof **names);
        }
        closedir(d);
        /* sort by name for stable output */
        for (int a = 1; a < count; a++)
            for (int b = a; b > 0 && strcmp(names[b - 1]->d_name, names[b]->d_name) > 0; b--) {
                struct dirent *t = names[b];
                names[b] = names[b - 1];
                names[b - 1] = t;
            }
        for (int k = 0; k < count; k++) {
            char name[64];
            size_t len = strlen(names[k]->d_name) - 8;
            if (len >= sizeof name)
                len = sizeof name - 1;
            memcpy(name, names[k]->d_name + 5, len);
            name[len] = '\0';
            int dup = 0;
            for (int s = 0; s < n_seen; s++)
                dup |= !strcmp(seen[s], name);
            if (dup || n_seen == 256)
                continue;
            snprintf(seen[n_seen++], sizeof seen[0], "%s", name);
            char path[PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", list[i], names[k]->d_name);
            const struct omni__plugin *p = NULL;
            struct omni_error err;
            omni_error_clear(&err);
            omni__plugin_open_file(path, &p, &err);
            fn(path, p, &err, user);
        }
        for (int k = 0; k < count; k++)
            free(names[k]);
        free(names);
    }
    free(list);
    return OMNI_OK;
}

int omni__plugin_port_count(const struct omni_plugin_desc *d, int dir)
{
    int n = 0;
    for (uint32_t i = 0; i < d->n_ports; i++)
        n += d->ports[i].dir == dir;
    return n;
}

int omni__plugin_port_index(const struct omni_plugin_desc *d, int dir, const char *name)
{
    int k = 0;
    for (uint32_t i = 0; i < d->n_ports; i++) {
        if (d->ports[i].dir != dir)
            continue;
        if (!strcmp(d->ports[i].name, name))
            return k;
        k++;
    }
    return -1;
}

const struct omni_port_desc *omni__plugin_port(const struct omni_plugin_desc *d, int dir, int idx)
{
    int k = 0;
    for (uint32_t i = 0; i < d->n_ports; i++) {
        if (d->ports[i].dir != dir)
            continue;
        if (k++ == idx)
            return &d->ports[i];
    }
    return NULL;
}

/* ---- public wrappers ------------------------------------------------------------------ */

struct visit_ctx {
    omni_plugin_visit_fn fn;
    void *user;
};

static void visit(const char *path, const struct omni__plugin *p, const struct omni_error *load_err, void *user)
{
    struct visit_ctx *v = user;
    v->fn(path, p ? p->desc : NULL, p ? NULL : load_err, v->user);
}

int omni_plugins_foreach(omni_plugin_visit_fn fn, void *user)
{
    struct visit_ctx v = {fn, user};
    return omni__plugin_foreach(NULL, 0, visit, &v);
}

int omni_plugin_find(const char *name, const struct omni_plugin_desc **out, char *path, size_t path_size,
                     struct omni_error *err)
{
    const struct omni__plugin *p;
    int rc = omni__plugin_find(name, NULL, 0, &p, err);
    *out = rc ? NULL : p->desc;
    if (!rc && path)
        snprintf(path, path_size, "%s", p->path);
    return rc;
}

int omni_plugin_open(const char *file, const struct omni_plugin_desc **out, struct omni_error *err)
{
    const struct omni__plugin *p;
    int rc = omni__plugin_open_file(file, &p, err);
    *out = rc ? NULL : p->desc;
    return rc;
}

const char *omni_plugin_search_path(char *buf, size_t size) { return omni__plugin_search_path(buf, size); }
