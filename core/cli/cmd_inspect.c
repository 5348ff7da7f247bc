/* omni inspect FILE [--prefix P] [--json]: list the tensors of a .safetensors
 * or torch.save (.pth) file without loading their data. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char short_usage[] =
    "usage: omni inspect FILE [--prefix P] [--json]   ('omni inspect --help' for details)\n";

static void help(FILE *f)
{
    fprintf(f,
            "usage: omni inspect FILE [--prefix P] [--json]\n\n"
            "List the tensors of a .safetensors file or a torch.save zip checkpoint (.pth/.pt/.bin)\n"
            "without reading their data: one line per tensor (key, dtype, shape) in file order\n"
            "(insertion order for .pth; nested dicts appear as 'outer.inner' keys), then a total\n"
            "line: N tensors, M parameters (elements), X.XX MB (10^6 bytes of tensor data; every\n"
            "key counts in full, also .pth views and tied weights that share one storage).\n"
            "Dtypes omni cannot load (i16, bool, ...) are listed and marked.\n"
            "Pickles are decoded by a restricted reader that never runs code: a file whose pickle\n"
            "calls anything but OrderedDict and torch's tensor/storage rebuilders is refused.\n\n"
            "options:\n"
            "  --prefix P   only keys that start with P\n"
            "  --json       print a JSON object instead: {file, format, count, parameters, bytes,\n"
            "               tensors: [{name, dtype, shape, strides, offset}]} (offset: bytes into\n"
            "               the file; strides in elements; \"loadable\": false marks dtypes omni\n"
            "               cannot load)\n"
            "  -h, --help   this text\n\n"
            "Exit status: 0 success, 1 the file cannot be read, 2 usage error.\n");
}

/* Element size of a stored dtype name, also for dtypes omni cannot load. */
static size_t stored_size(const char *s)
{
    static const struct { const char *name; size_t size; } t[] = {
        {"bool", 1}, {"i8", 1}, {"u8", 1}, {"f8_e4m3", 1}, {"f8_e5m2", 1}, {"i16", 2},
        {"u16", 2}, {"f16", 2}, {"bf16", 2}, {"i32", 4}, {"u32", 4}, {"f32", 4},
        {"i64", 8}, {"u64", 8}, {"f64", 8}, {"c64", 8}, {"c128", 16},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (s && !strcmp(s, t[i].name))
            return t[i].size;
    return 0;
}

int omni_cmd_inspect(int argc, char **argv)
{
    const char *file = NULL, *prefix = "";
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--prefix")) {
            if (++i >= argc) {
                fprintf(stderr, "omni inspect: --prefix needs a value\n");
                return 2;
            }
            prefix = argv[i];
        } else if (!strncmp(argv[i], "--prefix=", 9)) {
            prefix = argv[i] + 9;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "omni inspect: unknown option '%s'\n%s", argv[i], short_usage);
            return 2;
        } else if (!file) {
            file = argv[i];
        } else {
            fprintf(stderr, "omni inspect: only one FILE may be given ('%s' and '%s')\n", file,
                    argv[i]);
            return 2;
        }
    }
    if (!file) {
        fputs(short_usage, stderr);
        return 2;
    }
    struct omni_error err = {0};
    struct omni_weights *w = NULL;
    if (omni_weights_open(&w, file, &err)) {
        omni_cli_print_error("inspect", &err);
        return 1;
    }
    size_t n = omni_weights_count(w), plen = strlen(prefix);
    size_t shown = 0, kw = 3, dw = 5;
    unsigned long long params = 0, bytes = 0;
    char shape[256];
    for (size_t i = 0; i < n; i++) {
        const char *k = omni_weights_key(w, i);
        if (strncmp(k, prefix, plen))
            continue;
        if (strlen(k) > kw)
            kw = strlen(k);
        if (strlen(omni_weights_dtype_str(w, i)) > dw)
            dw = strlen(omni_weights_dtype_str(w, i));
    }
    cJSON *root = json ? cJSON_CreateObject() : NULL, *arr = NULL;
    if (json) {
        cJSON_AddStringToObject(root, "file", file);
        cJSON_AddStringToObject(root, "format", omni_weights_format(w) == OMNI_WEIGHTS_PTH
                                                    ? "pth" : "safetensors");
        arr = cJSON_AddArrayToObject(root, "tensors");
    } else {
        printf("%-*s  %-*s  %s\n", (int)kw, "key", (int)dw, "dtype", "shape");
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = omni_weights_key(w, i);
        if (strncmp(k, prefix, plen))
            continue;
        struct omni_weight_info info;
        omni_weights_info(w, NULL, k, &info, NULL); /* fills info for unloadable dtypes too */
        const char *dt = omni_weights_dtype_str(w, i);
        unsigned long long numel = 1;
        for (int d = 0; d < info.ndim; d++)
            numel *= (unsigned long long)info.shape[d];
        params += numel;
        bytes += numel * stored_size(dt);
        shown++;
        if (json) {
            cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *st = cJSON_CreateArray();
            for (int d = 0; d < info.ndim; d++) {
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)info.shape[d]));
                cJSON_AddItemToArray(st, cJSON_CreateNumber((double)info.strides[d]));
            }
            cJSON_AddStringToObject(o, "name", k);
            cJSON_AddStringToObject(o, "dtype", dt);
            cJSON_AddItemToObject(o, "shape", sh);
            cJSON_AddItemToObject(o, "strides", st);
            cJSON_AddNumberToObject(o, "offset", (double)info.offset);
            if (info.dtype == OMNI_DTYPE_INVALID)
                cJSON_AddBoolToObject(o, "loadable", 0);
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%-*s  %-*s  %s%s\n", (int)kw, k, (int)dw, dt,
                   omni_shape_str(info.ndim, info.shape, shape, sizeof shape),
                   info.dtype == OMNI_DTYPE_INVALID ? "  (dtype not loadable by omni)" : "");
        }
    }
    if (json) {
        cJSON_AddNumberToObject(root, "count", (double)shown);
        cJSON_AddNumberToObject(root, "parameters", (double)params);
        cJSON_AddNumberToObject(root, "bytes", (double)bytes);
        char *s = cJSON_Print(root);
        if (s)
            printf("%s\n", s);
        free(s);
        cJSON_Delete(root);
    } else {
        printf("%zu tensor%s, %llu parameters, %.2f MB\n", shown, shown == 1 ? "" : "s", params,
               bytes / 1e6);
    }
    omni_weights_close(w);
    return 0;
}
