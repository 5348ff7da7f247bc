/* plugins/image_load/image_load.c - image files -> RGB bytes.
 *
 * Each row of `path` (u8 [B, n] NUL-padded UTF-8) names a PNG or JPEG file;
 * it is decoded like PIL's Image.open(p).convert("RGB") (omni/image.h).
 *   path: u8 (B, n) string      image: u8 (B, H, W, 3)
 * With param `size` ([W, H] or one number for a square) every image is
 * resized with the PIL-exact bicubic (omni_op_resize_bicubic_u8) so that a
 * batch of different images can stack; without it every image of the batch
 * must have the same size.
 */
#include <stdlib.h>
#include <string.h>

#include "omni/image.h"
#include "omni/plugin.h"

struct il_stage {
    struct omni_stage base;
    char *name;
    int64_t out_w, out_h; /* 0: keep the files' size */
};

static void il_destroy(struct omni_stage *st)
{
    struct il_stage *s = (struct il_stage *)st;
    if (!s)
        return;
    free(s->name);
    free(s);
}

static int il_create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct il_stage *s = calloc(1, sizeof *s);
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "image_load: out of memory");
    s->name = strdup(cfg->name ? cfg->name : "image_load");
    if (!s->name) {
        il_destroy(&s->base);
        return omni_error_set(err, OMNI_ENOMEM, "image_load: out of memory");
    }
    int64_t v[2];
    int n = 2;
    int rc = omni_params_int_list(cfg->params, "size", v, &n, err);
    if (rc) {
        il_destroy(&s->base);
        return rc;
    }
    if (n == 1)
        v[1] = v[0];
    if (n > 0) {
        if (v[0] < 1 || v[1] < 1 || v[0] > OMNI_IMAGE_MAX_SIDE || v[1] > OMNI_IMAGE_MAX_SIDE) {
            il_destroy(&s->base);
            return omni_error_set(err, OMNI_EINVAL, "param size: %lldx%lld is not a usable image size (1..%d)",
                                  (long long)v[0], (long long)v[1], OMNI_IMAGE_MAX_SIDE);
        }
        s->out_w = v[0];
        s->out_h = v[1];
    }
    *out = &s->base;
    return OMNI_OK;
}

/* Row b of a string tensor as a NUL-terminated copy (caller frees). */
static char *row_string(const struct omni_tensor *t, int64_t b)
{
    const int64_t n = t->shape[1];
    const char *p = (const char *)omni_tensor_data(t) + b * t->strides[0];
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    int64_t i = 0;
    for (; i < n && p[i * t->strides[1]]; i++)
        s[i] = p[i * t->strides[1]];
    s[i] = 0;
    return s;
}

static int il_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct il_stage *s = (struct il_stage *)st;
    const struct omni_tensor *path = &io->in[0];
    int rc = omni_check_tensor(st, "path", path, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), 2, NULL, err);
    if (rc)
        return rc;
    const int64_t B = path->shape[0];
    if (B < 1)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'path' holds no file name", s->name);
    struct omni_tensor *imgs = calloc((size_t)B, sizeof *imgs);
    char **names = calloc((size_t)B, sizeof *names);
    struct omni_tensor out = {0};
    if (!imgs || !names) {
        rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", s->name);
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        if (!(names[b] = row_string(path, b))) {
            rc = omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory", s->name);
            goto done;
        }
        if (!names[b][0]) {
            rc = omni_error_set(err, OMNI_EINVAL, "stage '%s': row %lld of input 'path' is empty (no file name)",
                                s->name, (long long)b);
            goto done;
        }
        if ((rc = omni_image_load(names[b], &imgs[b], err)))
            goto done;
    }
    const int64_t H = s->out_h ? s->out_h : imgs[0].shape[0], W = s->out_w ? s->out_w : imgs[0].shape[1];
    for (int64_t b = 1; !s->out_h && b < B; b++)
        if (imgs[b].shape[0] != H || imgs[b].shape[1] != W) {
            rc = omni_error_set(err, OMNI_ESHAPE,
                                "stage '%s': images of one batch differ in size: '%s' is %lldx%lld, '%s' is "
                                "%lldx%lld (set param size: [W, H] to resize them all)",
                                s->name, names[0], (long long)W, (long long)H, names[b],
                                (long long)imgs[b].shape[1], (long long)imgs[b].shape[0]);
            goto done;
        }
    const int64_t shape[4] = {B, H, W, 3};
    if ((rc = omni_tensor_alloc(&out, OMNI_DTYPE_U8, 4, shape, OMNI_CPU, err)))
        goto done;
    for (int64_t b = 0; b < B; b++) {
        struct omni_tensor slot = out; /* borrowed view of image b */
        slot.ndim = 3;
        for (int d = 0; d < 3; d++) {
            slot.shape[d] = shape[d + 1];
            slot.strides[d] = out.strides[d + 1];
        }
        slot.offset = out.offset + b * H * W * 3;
        if ((rc = omni_op_resize_bicubic_u8(&slot, &imgs[b], err))) {
            omni_error_prefix(err, "stage '%s': image '%s': ", s->name, names[b]);
            goto done;
        }
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = out;
    memset(&out, 0, sizeof out);
done:
    omni_tensor_release(&out);
    for (int64_t b = 0; imgs && b < B; b++)
        omni_tensor_release(&imgs[b]);
    for (int64_t b = 0; names && b < B; b++)
        free(names[b]);
    free(imgs);
    free(names);
    return rc;
}

static const struct omni_port_desc il_ports[] = {
    {"path", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,n", OMNI_PORT_STRING | OMNI_PORT_HOST,
     "one image file name (PNG or JPEG) per row"},
    {"image", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,H,W,3", OMNI_PORT_HOST,
     "RGB bytes, as PIL's open().convert('RGB')"},
};

static const struct omni_stage_ops il_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = il_create,
    .destroy = il_destroy,
    .forward = il_forward,
};

static const struct omni_plugin_desc il_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "image_load",
    .version = "0.1.0",
    .description = "PNG/JPEG files -> RGB u8 [B,H,W,3], like PIL open().convert('RGB')",
    .ops = &il_ops,
    .ports = il_ports,
    .n_ports = OMNI_ARRAY_LEN(il_ports),
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .adapter = NULL,
    .params_doc = "size: optional [W, H] (or one number: square); resize every image with the PIL-exact "
                  "bicubic so that different images stack. Without it all images of a batch must have "
                  "one size\n",
};

OMNI_PLUGIN_DEFINE(il_desc)
