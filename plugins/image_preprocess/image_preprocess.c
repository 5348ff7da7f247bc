/* plugins/image_preprocess/image_preprocess.c - the vision towers' input
 * transform (spec/vision-encoder.md §2, "resize-naive"):
 *   resize to size x size with the PIL-exact bicubic (no aspect
 *   preservation, no crop), then ToTensor + Normalize per channel:
 *   pixels[b, c, y, x] = (u8 / 255 - mean[c]) / std[c]   (float32)
 *   image: u8 (B, H, W, 3)      pixels: f32 (B, 3, Ho, Wo)
 * One instance per tower (DINO: preset imagenet; SigLIP: preset inception).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "omni/image.h"
#include "omni/plugin.h"

struct ip_stage {
    struct omni_stage base;
    char *name;
    int64_t out_w, out_h;
    float mean[3], std[3];
};

struct ip_preset {
    const char *name;
    float mean[3], std[3];
    const char *what;
};

static const struct ip_preset PRESETS[] = {
    {"imagenet", {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, "timm IMAGENET_DEFAULT (DINOv2)"},
    {"inception", {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, "timm IMAGENET_INCEPTION (SigLIP)"},
    /* LlamaGen's VQ encoder input: Normalize(0.5, 0.5), x in [-1, 1] (spec/vq.md §6.1) */
    {"vq", {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, "LlamaGen VQ encoder, [-1, 1]"},
};

static void ip_destroy(struct omni_stage *st)
{
    struct ip_stage *s = (struct ip_stage *)st;
    if (!s)
        return;
    free(s->name);
    free(s);
}

/* [0.485, 0.456, 0.406] or 0.5 (all channels) -> 3 floats. */
static int parse_floats3(const struct omni_params *p, const char *key, float v[3], struct omni_error *err)
{
    double d[3];
    int n = 3;
    int rc = omni_params_float_list(p, key, d, &n, err);
    if (rc)
        return rc;
    if (n != 1 && n != 3)
        return omni_error_set(err, OMNI_EINVAL, "%s: param '%s': expected 1 or 3 numbers, got %d",
                              omni_params_where(p, key), key, n);
    for (int i = 0; i < 3; i++)
        v[i] = (float)d[n == 1 ? 0 : i]; /* float32 constants, like torchvision */
    return OMNI_OK;
}

static int ip_create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct ip_stage *s = calloc(1, sizeof *s);
    int rc;
    if (!s || !(s->name = strdup(cfg->name ? cfg->name : "image_preprocess"))) {
        rc = omni_error_set(err, OMNI_ENOMEM, "image_preprocess: out of memory");
        goto fail;
    }
    int64_t v[2];
    int n = 2;
    if ((rc = omni_params_int_list(cfg->params, "size", v, &n, err)))
        goto fail;
    if (n == 0)
        v[0] = v[1] = 384; /* OmniMamba's towers (spec/vision-encoder.md §2) */
    else if (n == 1)
        v[1] = v[0];
    if (v[0] < 1 || v[1] < 1 || v[0] > OMNI_IMAGE_MAX_SIDE || v[1] > OMNI_IMAGE_MAX_SIDE) {
        rc = omni_error_set(err, OMNI_EINVAL, "param size: %lldx%lld is not a usable image size", (long long)v[0],
                            (long long)v[1]);
        goto fail;
    }
    s->out_w = v[0];
    s->out_h = v[1];
    const char *preset = omni_params_str(cfg->params, "preset", NULL);
    int have = 0;
    if (preset) {
        for (size_t i = 0; i < OMNI_ARRAY_LEN(PRESETS); i++)
            if (!strcasecmp(preset, PRESETS[i].name)) {
                memcpy(s->mean, PRESETS[i].mean, sizeof s->mean);
                memcpy(s->std, PRESETS[i].std, sizeof s->std);
                have = 1;
            }
        if (!have) {
            rc = omni_error_set(err, OMNI_EINVAL, "%s: param preset: unknown preset '%s' (imagenet, inception, vq)",
                                omni_params_where(cfg->params, "preset"), preset);
            goto fail;
        }
    }
    /* explicit mean / std override the preset's */
    if (omni_params_has(cfg->params, "mean") && (rc = parse_floats3(cfg->params, "mean", s->mean, err)))
        goto fail;
    if (omni_params_has(cfg->params, "std") && (rc = parse_floats3(cfg->params, "std", s->std, err)))
        goto fail;
    if (!have && !(omni_params_has(cfg->params, "mean") && omni_params_has(cfg->params, "std"))) {
        rc = omni_error_set(err, OMNI_EINVAL,
                            "image_preprocess needs the normalisation: preset: imagenet | inception | vq, or both "
                            "mean: and std:");
        goto fail;
    }
    for (int c = 0; c < 3; c++)
        if (!(s->std[c] != 0.0f)) {
            rc = omni_error_set(err, OMNI_EINVAL, "param std: channel %d is %g (must be non-zero)", c, (double)s->std[c]);
            goto fail;
        }
    *out = &s->base;
    return OMNI_OK;
fail:
    ip_destroy(s ? &s->base : NULL);
    return rc;
}

static int ip_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct ip_stage *s = (struct ip_stage *)st;
    const struct omni_tensor *image = &io->in[0];
    const int64_t dims[4] = {-1, -1, -1, 3};
    int rc = omni_check_tensor(st, "image", image, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), 4, dims, err);
    if (rc)
        return rc;
    if (image->device.type != OMNI_DEVICE_CPU)
        return omni_error_set(err, OMNI_EDEVICE, "stage '%s': input 'image' must be on the host", s->name);
    const int64_t B = image->shape[0];
    struct omni_tensor src = {0}, resized = {0}, pixels = {0};
    if (!omni_tensor_is_contiguous(image)) {
        if ((rc = omni_tensor_copy_to(&src, image, OMNI_CPU, err)))
            goto done;
    } else {
        omni_tensor_ref(&src, image);
    }
    const int64_t rshape[4] = {B, s->out_h, s->out_w, 3}, pshape[4] = {B, 3, s->out_h, s->out_w};
    if ((rc = omni_tensor_alloc(&resized, OMNI_DTYPE_U8, 4, rshape, OMNI_CPU, err)) ||
        (rc = omni_tensor_alloc(&pixels, OMNI_DTYPE_F32, 4, pshape, OMNI_CPU, err)))
        goto done;
    if ((rc = omni_op_resize_bicubic_u8(&resized, &src, err)) ||
        (rc = omni_op_normalize_image(&pixels, &resized, s->mean, s->std, err))) {
        omni_error_prefix(err, "stage '%s': ", s->name);
        goto done;
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = pixels;
    memset(&pixels, 0, sizeof pixels);
done:
    omni_tensor_release(&src);
    omni_tensor_release(&resized);
    omni_tensor_release(&pixels);
    return rc;
}

static const struct omni_port_desc ip_ports[] = {
    {"image", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,H,W,3", OMNI_PORT_HOST, "RGB bytes"},
    {"pixels", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,3,Ho,Wo", OMNI_PORT_HOST,
     "resized, normalised CHW floats"},
};

static const struct omni_stage_ops ip_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = ip_create,
    .destroy = ip_destroy,
    .forward = ip_forward,
};

static const struct omni_plugin_desc ip_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "image_preprocess",
    .version = "0.1.0",
    .description = "PIL-exact bicubic resize to size x size, then ToTensor + Normalize (u8 HWC -> f32 CHW)",
    .ops = &ip_ops,
    .ports = ip_ports,
    .n_ports = OMNI_ARRAY_LEN(ip_ports),
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .adapter = NULL,
    .params_doc = "size: output side (default 384) or [W, H]; the image is squashed, not cropped\n"
                  "preset: imagenet (DINOv2) | inception (SigLIP) | vq (LlamaGen, [-1,1])\n"
                  "mean, std: 1 or 3 numbers as one string (\"0.485, 0.456, 0.406\"); override the preset\n",
};

OMNI_PLUGIN_DEFINE(ip_desc)
