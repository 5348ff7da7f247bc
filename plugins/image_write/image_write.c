/* plugins/image_write/image_write.c - images -> PNG files.
 *
 *   image: f32 (B, 3, H, W) in value_range (default [-1, 1]), converted like
 *          OmniMamba's inference_t2i.py: clamp, map to [0, 1], then
 *          floor(u * 255) (truncation, spec/omnimamba.md §7.4); or
 *          u8 (B, H, W, 3), written as is
 *   pixels: u8 (B, H, W, 3), the exact bytes written (for comparisons)
 * Files: one grid PNG at `path` (grid: true; make_grid layout, see
 * omni/image.h), or one file per image: `path` itself for B = 1, else
 * out.png -> out-0.png, out-1.png, ... The per-request option `output`
 * (the CLI's -o) overrides `path`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "omni/image.h"
#include "omni/plugin.h"

struct iw_stage {
    struct omni_stage base;
    char *name;
    char *path;
    int grid;
    float lo, hi;
};

static void iw_destroy(struct omni_stage *st)
{
    struct iw_stage *s = (struct iw_stage *)st;
    if (!s)
        return;
    free(s->name);
    free(s->path);
    free(s);
}

/* value_range: [lo, hi] as a YAML list of integers, or a string "lo, hi". */
static int parse_range(const struct omni_params *p, float *lo, float *hi, struct omni_error *err)
{
    int64_t v[2];
    int n = 2;
    struct omni_error local = {0};
    *lo = -1.0f;
    *hi = 1.0f;
    if (!omni_params_has(p, "value_range"))
        return OMNI_OK;
    if (omni_params_int_list(p, "value_range", v, &n, &local) == OMNI_OK && n == 2) {
        *lo = (float)v[0];
        *hi = (float)v[1];
    } else {
        const char *t = omni_params_str(p, "value_range", NULL);
        double a, b;
        if (!t || (sscanf(t, " [ %lf , %lf ]", &a, &b) != 2 && sscanf(t, " %lf , %lf", &a, &b) != 2))
            return omni_error_set(err, OMNI_EINVAL,
                                  "%s: param value_range: expected [lo, hi] (integers) or a string \"lo, hi\"",
                                  omni_params_where(p, "value_range"));
        *lo = (float)a;
        *hi = (float)b;
    }
    if (!(*lo < *hi))
        return omni_error_set(err, OMNI_EINVAL, "%s: param value_range: [%g, %g] is empty",
                              omni_params_where(p, "value_range"), (double)*lo, (double)*hi);
    return OMNI_OK;
}

static int iw_create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct iw_stage *s = calloc(1, sizeof *s);
    int rc;
    if (!s || !(s->name = strdup(cfg->name ? cfg->name : "image_write")) ||
        !(s->path = strdup(omni_params_str(cfg->params, "path", "out.png")))) {
        rc = omni_error_set(err, OMNI_ENOMEM, "image_write: out of memory");
        goto fail;
    }
    if ((rc = omni_params_bool(cfg->params, "grid", 0, &s->grid, err)) ||
        (rc = parse_range(cfg->params, &s->lo, &s->hi, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    iw_destroy(s ? &s->base : NULL);
    return rc;
}

/* This stage writes PNG only: refuse names that promise another format. */
static int check_extension(const struct iw_stage *s, const char *path, struct omni_error *err)
{
    static const char *const other[] = {".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"};
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return OMNI_OK;
    for (size_t i = 0; i < OMNI_ARRAY_LEN(other); i++)
        if (!strcasecmp(dot, other[i]))
            return omni_error_set(err, OMNI_EUNSUPPORTED, "stage '%s': '%s': image_write writes PNG files only; "
                                  "name the output *.png", s->name, path);
    return OMNI_OK;
}

/* "dir/out.png", 3 -> "dir/out-3.png"; no extension: "dir/out-3". */
static char *numbered(const char *path, int64_t i)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    size_t n = strlen(path) + 32;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%.*s-%lld%s", (int)stem, path, (long long)i, path + stem);
    return s;
}

static int iw_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct iw_stage *s = (struct iw_stage *)st;
    const struct omni_tensor *in = &io->in[0];
    struct omni_tensor host = {0}, pix = {0};
    char sb[96];
    int rc = omni_check_tensor(st, "image", in, OMNI_DTYPE_BIT(OMNI_DTYPE_U8) | OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 4,
                               NULL, err);
    if (rc)
        return rc;
    const char *path = s->path;
    if (io->ctx && io->ctx->options)
        path = omni_params_str(io->ctx->options, "output", path);
    if (!path[0])
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': empty output path", s->name);
    if ((rc = check_extension(s, path, err)))
        return rc;
    if (in->device.type != OMNI_DEVICE_CPU) {
        if ((rc = omni_tensor_copy_to(&host, in, OMNI_CPU, err)))
            return rc;
    } else {
        omni_tensor_ref(&host, in);
    }
    const int64_t B = host.shape[0];
    if (host.dtype == OMNI_DTYPE_F32) {
        if (host.shape[1] != 3) {
            rc = omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'image' is %s, expected f32 [B,3,H,W] or u8 [B,H,W,3]",
                                s->name, omni_tensor_str(&host, sb, sizeof sb));
            goto done;
        }
        const int64_t shape[4] = {B, host.shape[2], host.shape[3], 3};
        if ((rc = omni_tensor_alloc(&pix, OMNI_DTYPE_U8, 4, shape, OMNI_CPU, err)) ||
            (rc = omni_image_from_float(&pix, &host, s->lo, s->hi, err)))
            goto done;
    } else {
        if (host.shape[3] != 3) {
            rc = omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'image' is %s, expected f32 [B,3,H,W] or u8 [B,H,W,3]",
                                s->name, omni_tensor_str(&host, sb, sizeof sb));
            goto done;
        }
        if ((rc = omni_tensor_copy_to(&pix, &host, OMNI_CPU, err))) /* contiguous, and ours */
            goto done;
    }
    if (s->grid || B == 1) {
        if ((rc = omni_image_save_png(path, &pix, err)))
            goto done;
        OMNI_LOG(OMNI_LOG_INFO, "stage '%s': wrote %s", s->name, path);
    } else {
        for (int64_t b = 0; b < B; b++) {
            struct omni_tensor one = pix; /* borrowed view of image b */
            one.ndim = 3;
            for (int d = 0; d < 3; d++) {
                one.shape[d] = pix.shape[d + 1];
                one.strides[d] = pix.strides[d + 1];
            }
            one.offset = pix.offset + b * pix.strides[0];
            char *name = numbered(path, b);
            if (!name) {
                rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", s->name);
                goto done;
            }
            rc = omni_image_save_png(name, &one, err);
            if (!rc)
                OMNI_LOG(OMNI_LOG_INFO, "stage '%s': wrote %s", s->name, name);
            free(name);
            if (rc)
                goto done;
        }
    }
    if (io->n_out > 0) {
        omni_tensor_release(&io->out[0]);
        io->out[0] = pix;
        memset(&pix, 0, sizeof pix);
    }
done:
    omni_tensor_release(&host);
    omni_tensor_release(&pix);
    return rc;
}

static const struct omni_port_desc iw_ports[] = {
    {"image", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32) | OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "*", 0,
     "f32 [B,3,H,W] in value_range, or u8 [B,H,W,3]"},
    {"pixels", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,H,W,3", OMNI_PORT_HOST,
     "the bytes written"},
};

static const struct omni_stage_ops iw_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = iw_create,
    .destroy = iw_destroy,
    .forward = iw_forward,
};

static const struct omni_plugin_desc iw_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "image_write",
    .version = "0.1.0",
    .description = "write images as PNG (float [-1,1] -> u8 by truncation, as OmniMamba's script)",
    .ops = &iw_ops,
    .ports = iw_ports,
    .n_ports = OMNI_ARRAY_LEN(iw_ports),
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .adapter = NULL,
    .params_doc = "path: output file (default out.png); the request option 'output' (-o) overrides it\n"
                  "grid: true = one make_grid PNG (2 px black borders, ceil(sqrt(B)) per row); false = one "
                  "file per image (out-0.png, out-1.png, ... when B > 1)\n"
                  "value_range: [lo, hi] of float inputs (default [-1, 1])\n",
};

OMNI_PLUGIN_DEFINE(iw_desc)
