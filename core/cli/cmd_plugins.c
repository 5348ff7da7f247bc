/* omni plugins [NAME]: what plugins exist and what their ports are. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *devices_str(uint32_t m)
{
    if (!m || m == (OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA)))
        return "cpu, cuda";
    return m & OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA) ? "cuda" : "cpu";
}

static void print_ports(const struct omni_plugin_desc *d, const char *indent)
{
    for (uint32_t i = 0; i < d->n_ports; i++) {
        const struct omni_port_desc *p = &d->ports[i];
        char dt[64];
        printf("%s%-4s %-12s %-14s [%s]%s%s%s%s\n", indent, p->dir == OMNI_PORT_IN ? "in" : "out", p->name,
               omni_dtype_mask_str(p->dtypes, dt, sizeof dt), p->dims ? p->dims : "*",
               (p->flags & OMNI_PORT_OPTIONAL) ? " optional" : "", (p->flags & OMNI_PORT_HOST) ? " host" : "",
               p->doc ? "  " : "", p->doc ? p->doc : "");
    }
}

static void list_one(const char *path, const struct omni_plugin_desc *d, const struct omni_error *e, void *user)
{
    int *count = user;
    (*count)++;
    if (!d) {
        printf("%-16s REFUSED: %s\n", "?", e && e->msg[0] ? e->msg : path);
        return;
    }
    printf("%-16s %-8s %s%s\n", d->name, d->version ? d->version : "", d->description ? d->description : "",
           d->adapter ? " (adapter)" : "");
    print_ports(d, "    ");
}

int omni_cmd_plugins(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: omni plugins [NAME | FILE.so]\n\n"
               "Without arguments, lists every plugin on the search path with its ports\n"
               "(direction, name, dtypes, symbolic dims). With a name or a .so file, shows that\n"
               "plugin in detail: file, ABI, devices, ports, params. Refused files are listed\n"
               "with the reason. Search path: OMNI_PLUGIN_PATH, then the folders beside libomni.\n");
        return 0;
    }
    char sp[4096];
    if (argc < 2) {
        int count = 0;
        printf("search path: %s\n\n", omni_plugin_search_path(sp, sizeof sp));
        omni_plugins_foreach(list_one, &count);
        if (!count) {
            printf("no plugins found\n");
            return 1;
        }
        return 0;
    }
    const struct omni_plugin_desc *d;
    struct omni_error err;
    char path[4096] = "";
    omni_error_clear(&err);
    int rc = strchr(argv[1], '/') || strstr(argv[1], ".so") ? omni_plugin_open(argv[1], &d, &err)
                                                              : omni_plugin_find(argv[1], &d, path, sizeof path, &err);
    if (rc) {
        omni_cli_print_error("plugins", &err);
        return 1;
    }
    printf("name:        %s\n", d->name);
    printf("file:        %s\n", path[0] ? path : argv[1]);
    printf("version:     %s\n", d->version ? d->version : "");
    printf("description: %s\n", d->description ? d->description : "");
    printf("ABI:         %u.%u (this omni: %d.%d)\n", d->abi_major, d->abi_minor, OMNI_ABI_MAJOR, OMNI_ABI_MINOR);
    printf("devices:     %s\n", devices_str(d->devices));
    const struct omni_stage_ops *o = d->ops;
    printf("ops:         create, forward, destroy%s%s%s%s\n", o->load ? ", load" : "", o->state_new ? ", state_new/free" : "",
           o->step ? ", step (recurrent)" : "", o->attach ? ", attach (accepts adapters)" : "");
    if (d->adapter)
        printf("adapter:     yes (attach it with attach: STAGE.LINEAR)\n");
    printf("ports:\n");
    print_ports(d, "  ");
    if (d->params_doc && *d->params_doc) {
        printf("params:\n");
        const char *s = d->params_doc;
        while (*s) {
            const char *e = strchr(s, '\n');
            int len = e ? (int)(e - s) : (int)strlen(s);
            printf("  %.*s\n", len, s);
            s += len + (e ? 1 : 0);
        }
    }
    return 0;
}
