/* plugins/vit/vit.c - a timm VisionTransformer feature extractor: the
 * DINOv2-L/14-reg4 and SigLIP-SO400M/14-384 towers of OmniMamba's MMU path
 * (spec/vision-encoder.md §3-5), or any timm ViT of the same block shape.
 *
 *   X = [cls?, reg_0..reg_{R-1}, patch_embed(pixels) + pos_embed]      (B, T, D)
 *   for j in 0..feature_block:
 *       X = X + γ1 ⊙ proj(attn(LN1(X)))      γ = ls{1,2}.gamma (LayerScale) or 1
 *       X = X + γ2 ⊙ fc2(GELU_erf(fc1(LN2(X))))
 *   features = X[:, n_prefix:] (drop_prefix) or X; no final norm.
 *
 * Load time: LayerScale is folded into proj / fc2 (W' = diag(γ) W, b' = γ ⊙ b,
 * exact up to f32 rounding); a pos_embed stored for another grid (DINOv2's
 * 37x37 from the 518-px weights) is resampled to image_size/patch with
 * PyTorch's antialiased bicubic, exactly where timm's checkpoint_filter_fn
 * does it. Only blocks 0..feature_block are loaded and run.
 *
 * Ports: pixels (B,3,S,S) f32 normalised, S = image_size -> features (B,N,D) f32.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        if ((rc = (expr)))                                                                         \
            goto fail;                                                                             \
    } while (0)

struct vit_block {
    struct omni_tensor n1w, n1b, qkv_w, qkv_b, proj_w, proj_b;
    struct omni_tensor n2w, n2b, fc1_w, fc1_b, fc2_w, fc2_b;
};

struct vit_stage {
    struct omni_stage base;
    char *name;
    /* configuration; -1 = take it from the weights */
    int64_t dim, depth, heads, mlp, patch, image, registers, feature_block;
    int class_token, layerscale; /* -1 = from the weights */
    int feature_block_given;
    int drop_prefix;
    float eps;
    int wdtype; /* storage of the matmul weights */
    /* loaded */
    int loaded;
    int64_t grid, n_prefix, n_tokens, n_blocks;
    struct omni_tensor patch_w, patch_b; /* (D,3,p,p) wdtype, (D) */
    struct omni_tensor pos;              /* (G*G, D) */
    struct omni_tensor prefix;           /* (n_prefix, D): cls, registers (+ their pos) */
    struct vit_block *blocks;
};

struct vit_preset {
    const char *name;
    int64_t dim, depth, heads, mlp, patch, image, registers;
    int class_token, layerscale;
};

/* spec/vision-encoder.md §0 */
static const struct vit_preset presets[] = {
    {"dinov2_reg4_l14", 1024, 24, 16, 4096, 14, 384, 4, 1, 1},
    {"siglip_so400m_14_384", 1152, 27, 16, 4304, 14, 384, 0, 0, 0},
    {"custom", -1, -1, -1, -1, -1, -1, -1, -1, -1},
};

static void block_release(struct vit_block *b)
{
    struct omni_tensor *t[] = {&b->n1w, &b->n1b, &b->qkv_w, &b->qkv_b, &b->proj_w, &b->proj_b,
                               &b->n2w, &b->n2b, &b->fc1_w, &b->fc1_b, &b->fc2_w, &b->fc2_b};
    for (size_t i = 0; i < OMNI_ARRAY_LEN(t); i++)
        omni_tensor_release(t[i]);
}

static void vit_unload(struct vit_stage *s)
{
    for (int64_t j = 0; s->blocks && j < s->n_blocks; j++)
        block_release(&s->blocks[j]);
    free(s->blocks);
    s->blocks = NULL;
    s->n_blocks = 0;
    omni_tensor_release(&s->patch_w);
    omni_tensor_release(&s->patch_b);
    omni_tensor_release(&s->pos);
    omni_tensor_release(&s->prefix);
    s->loaded = 0;
}

static void vit_destroy(struct omni_stage *st)
{
    struct vit_stage *s = (struct vit_stage *)st;
    if (!s)
        return;
    vit_unload(s);
    free(s->name);
    free(s);
}

/* Overwrite *v with the integer param `key` when present (must be >= lo). */
static int param_int(const struct omni_params *p, const char *key, int64_t lo, int64_t *v,
                     struct omni_error *err)
{
    if (!omni_params_has(p, key))
        return OMNI_OK;
    int rc = omni_params_int(p, key, *v, v, err);
    if (rc)
        return rc;
    if (*v < lo)
        return omni_error_set(err, OMNI_EINVAL, "param %s = %lld must be >= %lld", key,
                              (long long)*v, (long long)lo);
    return OMNI_OK;
}

static int param_bool(const struct omni_params *p, const char *key, int *v,
                      struct omni_error *err)
{
    if (!omni_params_has(p, key))
        return OMNI_OK;
    return omni_params_bool(p, key, *v, v, err);
}

static int check_feature_block(const struct vit_stage *s, struct omni_error *err)
{
    if (s->feature_block < 0 || s->feature_block >= s->depth)
        return omni_error_set(err, OMNI_ERANGE,
                              "feature_block %lld is out of range 0..%lld (depth %lld)",
                              (long long)s->feature_block, (long long)s->depth - 1,
                              (long long)s->depth);
    return OMNI_OK;
}

static int vit_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                      struct omni_error *err)
{
    const struct omni_params *p = cfg->params;
    struct vit_stage *s = calloc(1, sizeof *s);
    int rc = OMNI_OK;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "vit: out of memory");
    s->name = strdup(cfg->name ? cfg->name : "vit");
    if (!s->name) {
        rc = omni_error_set(err, OMNI_ENOMEM, "vit: out of memory");
        goto fail;
    }
    const char *variant = omni_params_str(p, "variant", "custom");
    const struct vit_preset *pr = NULL;
    for (size_t i = 0; i < OMNI_ARRAY_LEN(presets); i++)
        if (!strcmp(variant, presets[i].name))
            pr = &presets[i];
    if (!pr) {
        rc = omni_error_set(err, OMNI_EINVAL,
                            "param variant '%s' is unknown (dinov2_reg4_l14, "
                            "siglip_so400m_14_384 or custom)",
                            variant);
        goto fail;
    }
    const char *ks = omni_params_str(p, "key_style", "timm");
    if (strcmp(ks, "timm")) {
        rc = omni_error_set(err, OMNI_EUNSUPPORTED,
                            "param key_style '%s' is not supported (timm; use prefix: for "
                            "vision_backbone.dino_featurizer. or visual.trunk.)",
                            ks);
        goto fail;
    }
    s->dim = pr->dim;
    s->depth = pr->depth;
    s->heads = pr->heads;
    s->mlp = pr->mlp;
    s->patch = pr->patch;
    s->image = pr->image;
    s->registers = pr->registers;
    s->class_token = pr->class_token;
    s->layerscale = pr->layerscale;
    s->feature_block = -1;
    s->drop_prefix = 1;
    double eps = 1e-6;
    TRY(param_int(p, "dim", 1, &s->dim, err));
    TRY(param_int(p, "depth", 1, &s->depth, err));
    TRY(param_int(p, "heads", 1, &s->heads, err));
    TRY(param_int(p, "mlp_hidden", 1, &s->mlp, err));
    TRY(param_int(p, "patch", 1, &s->patch, err));
    TRY(param_int(p, "image_size", 1, &s->image, err));
    TRY(param_int(p, "registers", 0, &s->registers, err));
    TRY(param_bool(p, "class_token", &s->class_token, err));
    TRY(param_bool(p, "layerscale", &s->layerscale, err));
    TRY(param_bool(p, "drop_prefix", &s->drop_prefix, err));
    TRY(omni_params_float(p, "eps", eps, &eps, err));
    if ((s->feature_block_given = omni_params_has(p, "feature_block")))
        TRY(omni_params_int(p, "feature_block", -1, &s->feature_block, err));
    if (!(eps >= 0.0)) {
        rc = omni_error_set(err, OMNI_EINVAL, "param eps = %g must be >= 0", eps);
        goto fail;
    }
    s->eps = (float)eps;
    if (s->heads < 0) {
        rc = omni_error_set(err, OMNI_EINVAL, "param heads is required with variant custom");
        goto fail;
    }
    if (s->image < 0) {
        rc = omni_error_set(err, OMNI_EINVAL, "param image_size is required with variant custom");
        goto fail;
    }
    if (s->dim > 0 && s->dim % s->heads) {
        rc = omni_error_set(err, OMNI_EINVAL, "param heads = %lld does not divide dim = %lld",
                            (long long)s->heads, (long long)s->dim);
        goto fail;
    }
    if (s->depth > 0) {
        if (!s->feature_block_given)
            s->feature_block = s->depth >= 2 ? s->depth - 2 : 0;
        TRY(check_feature_block(s, err));
    }
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    vit_destroy(&s->base);
    return rc;
}

/* ------------------------------------------------------------------ loading */

struct loader {
    struct vit_stage *s;
    const struct omni_weights_ref *w;
    const char *prefix;
    char key[256];
};

static const char *bkey(struct loader *L, int64_t j, const char *rest)
{
    snprintf(L->key, sizeof L->key, "blocks.%lld.%s", (long long)j, rest);
    return L->key;
}

static int has(struct loader *L, const char *key)
{
    return omni_weights_has(L->w->file, L->prefix, key);
}

static int info(struct loader *L, const char *key, struct omni_weight_info *in,
                struct omni_error *err)
{
    return omni_weights_info(L->w->file, L->prefix, key, in, err);
}

/* Host f32 copy of key with an exact shape check. */
static int load_host(struct loader *L, const char *key, int ndim, const int64_t *shape,
                     struct omni_tensor *out, struct omni_error *err)
{
    return omni_weights_load(L->w->file, L->prefix, key, OMNI_DTYPE_F32, ndim, shape, out, err);
}

/* Move a host f32 tensor to its final dtype and the stage's device, in place. */
static int finish(struct vit_stage *s, struct omni_tensor *t, int dtype, struct omni_error *err)
{
    int rc;
    if (dtype != t->dtype) {
        struct omni_tensor c;
        if ((rc = omni_tensor_convert(&c, t, dtype, err)))
            return rc;
        omni_tensor_release(t);
        *t = c;
    }
    if (s->base.device.type != OMNI_DEVICE_CPU) {
        struct omni_tensor d;
        if ((rc = omni_tensor_copy_to(&d, t, s->base.device, err)))
            return rc;
        omni_tensor_release(t);
        *t = d;
    }
    return OMNI_OK;
}

static int load_vec(struct loader *L, const char *key, int64_t n, struct omni_tensor *out,
                    struct omni_error *err)
{
    int rc = load_host(L, key, 1, &n, out, err);
    return rc ? rc : finish(L->s, out, OMNI_DTYPE_F32, err);
}

/* Linear (N, K) + bias (N), optionally scaled row-wise by gamma (LayerScale). */
static int load_linear(struct loader *L, int64_t j, const char *name, int64_t N, int64_t K,
                       const char *gamma, struct omni_tensor *w, struct omni_tensor *b,
                       struct omni_error *err)
{
    struct vit_stage *s = L->s;
    struct omni_tensor g = {0};
    char wk[128], bk[128];
    int rc;
    snprintf(wk, sizeof wk, "blocks.%lld.%s.weight", (long long)j, name);
    snprintf(bk, sizeof bk, "blocks.%lld.%s.bias", (long long)j, name);
    const int64_t shape[2] = {N, K};
    TRY(load_host(L, wk, 2, shape, w, err));
    TRY(load_host(L, bk, 1, &N, b, err));
    if (gamma) {
        TRY(load_host(L, bkey(L, j, gamma), 1, &N, &g, err));
        float *wd = omni_tensor_data(w), *bd = omni_tensor_data(b);
        const float *gd = omni_tensor_data(&g);
        for (int64_t n = 0; n < N; n++) {
            for (int64_t k = 0; k < K; k++)
                wd[n * K + k] *= gd[n];
            bd[n] *= gd[n];
        }
        omni_tensor_release(&g);
    }
    TRY(finish(s, w, s->wdtype, err));
    TRY(finish(s, b, OMNI_DTYPE_F32, err));
    return OMNI_OK;
fail:
    omni_tensor_release(&g);
    return rc;
}

static int64_t isqrt_exact(int64_t n)
{
    if (n <= 0)
        return -1;
    int64_t r = (int64_t)llround(sqrt((double)n));
    return r * r == n ? r : -1;
}

/* pos_embed: (1, [n_prefix +] Gs*Gs, D) -> s->pos (G*G, D) (resampled when
 * Gs != G) and, when the table covers the prefix tokens, their rows added to
 * the prefix (host f32, before it is finished). */
static int load_pos(struct loader *L, struct omni_tensor *prefix, struct omni_error *err)
{
    struct vit_stage *s = L->s;
    struct omni_weight_info in;
    struct omni_tensor raw = {0}, grid = {0}, rs = {0};
    char buf[96];
    int rc;
    const int64_t D = s->dim, G = s->grid;
    TRY(info(L, "pos_embed", &in, err));
    if (in.ndim != 3 || in.shape[0] != 1 || in.shape[2] != D) {
        rc = omni_error_set(err, OMNI_ESHAPE,
                            "weight '%spos_embed' has shape %s, expected (1, N, %lld)", L->prefix,
                            omni_shape_str(in.ndim, in.shape, buf, sizeof buf), (long long)D);
        goto fail;
    }
    const int64_t N = in.shape[1];
    int64_t np = 0, Gs = isqrt_exact(N);
    if (Gs < 0 && s->n_prefix > 0 && (Gs = isqrt_exact(N - s->n_prefix)) > 0)
        np = s->n_prefix; /* timm no_embed_class=False: rows for the prefix come first */
    if (Gs < 0) {
        rc = omni_error_set(err, OMNI_ESHAPE,
                            "weight '%spos_embed' has shape %s: %lld rows are neither a square "
                            "grid nor %lld prefix rows + a square grid",
                            L->prefix, omni_shape_str(in.ndim, in.shape, buf, sizeof buf),
                            (long long)N, (long long)s->n_prefix);
        goto fail;
    }
    TRY(load_host(L, "pos_embed", 3, in.shape, &raw, err));
    const float *rd = omni_tensor_data(&raw);
    if (np) {
        float *pd = omni_tensor_data(prefix);
        for (int64_t i = 0; i < np * D; i++)
            pd[i] += rd[i];
    }
    TRY(omni_tensor_alloc(&s->pos, OMNI_DTYPE_F32, 2, (int64_t[]){G * G, D}, OMNI_CPU, err));
    if (Gs == G) {
        memcpy(omni_tensor_data(&s->pos), rd + np * D, (size_t)(G * G * D) * sizeof(float));
    } else {
        /* timm resample_abs_pos_embed: (Gs,Gs,D) -> (1,D,Gs,Gs) -> bicubic aa -> (G*G, D) */
        OMNI_LOG(OMNI_LOG_INFO, "stage '%s': resampling pos_embed %lldx%lld -> %lldx%lld", s->name,
                 (long long)Gs, (long long)Gs, (long long)G, (long long)G);
        TRY(omni_tensor_alloc(&grid, OMNI_DTYPE_F32, 4, (int64_t[]){1, D, Gs, Gs}, OMNI_CPU, err));
        TRY(omni_tensor_alloc(&rs, OMNI_DTYPE_F32, 4, (int64_t[]){1, D, G, G}, OMNI_CPU, err));
        float *gd = omni_tensor_data(&grid);
        for (int64_t t = 0; t < Gs * Gs; t++)
            for (int64_t d = 0; d < D; d++)
                gd[d * Gs * Gs + t] = rd[(np + t) * D + d];
        TRY(omni_op_resize_bicubic_aa(&rs, &grid, err));
        const float *sd = omni_tensor_data(&rs);
        float *pd = omni_tensor_data(&s->pos);
        for (int64_t t = 0; t < G * G; t++)
            for (int64_t d = 0; d < D; d++)
                pd[t * D + d] = sd[d * G * G + t];
    }
    TRY(finish(s, &s->pos, OMNI_DTYPE_F32, err));
fail:
    omni_tensor_release(&raw);
    omni_tensor_release(&grid);
    omni_tensor_release(&rs);
    return rc;
}

static int vit_load(struct omni_stage *st, const struct omni_weights_ref *w,
                    struct omni_error *err)
{
    struct vit_stage *s = (struct vit_stage *)st;
    struct loader L = {s, w, w && w->prefix ? w->prefix : "", {0}};
    struct omni_weight_info in;
    struct omni_tensor tok = {0}, prefix = {0};
    char buf[96];
    int rc = OMNI_OK;
    if (!w || !w->file)
        return omni_error_set(err, OMNI_EINVAL, "vit needs weights (set weights: and prefix:)");
    vit_unload(s);

    /* patch embedding: (D, 3, p, p) gives dim and patch */
    TRY(info(&L, "patch_embed.proj.weight", &in, err));
    if (in.ndim != 4 || in.shape[2] != in.shape[3]) {
        rc = omni_error_set(err, OMNI_ESHAPE,
                            "weight '%spatch_embed.proj.weight' has shape %s, expected (D, 3, p, p)",
                            L.prefix, omni_shape_str(in.ndim, in.shape, buf, sizeof buf));
        goto fail;
    }
    const int64_t pshape[4] = {s->dim > 0 ? s->dim : in.shape[0], 3,
                               s->patch > 0 ? s->patch : in.shape[2],
                               s->patch > 0 ? s->patch : in.shape[2]};
    TRY(load_host(&L, "patch_embed.proj.weight", 4, pshape, &s->patch_w, err));
    s->dim = pshape[0];
    s->patch = pshape[2];
    const int64_t D = s->dim;
    if (D % s->heads) {
        rc = omni_error_set(err, OMNI_ESHAPE, "heads = %lld does not divide dim = %lld (from '%spatch_embed.proj.weight')",
                            (long long)s->heads, (long long)D, L.prefix);
        goto fail;
    }
    s->grid = s->image / s->patch;
    if (s->grid < 1) {
        rc = omni_error_set(err, OMNI_EINVAL, "image_size %lld is smaller than the patch %lld",
                            (long long)s->image, (long long)s->patch);
        goto fail;
    }
    TRY(finish(s, &s->patch_w, s->wdtype, err));
    TRY(load_vec(&L, "patch_embed.proj.bias", D, &s->patch_b, err));

    /* depth, mlp width, prefix tokens, LayerScale: from the file when not given */
    if (s->depth < 0) {
        int64_t n = 0;
        while (has(&L, bkey(&L, n, "norm1.weight")))
            n++;
        if (n == 0) {
            rc = omni_error_set(err, OMNI_ENOTFOUND, "weight '%sblocks.0.norm1.weight' is not in %s",
                                L.prefix, omni_weights_path(w->file));
            goto fail;
        }
        s->depth = n;
        if (!s->feature_block_given)
            s->feature_block = n >= 2 ? n - 2 : 0;
    }
    TRY(check_feature_block(s, err));
    if (s->mlp < 0) {
        TRY(info(&L, bkey(&L, 0, "mlp.fc1.weight"), &in, err));
        s->mlp = in.shape[0];
    }
    if (s->class_token < 0)
        s->class_token = has(&L, "cls_token");
    if (s->registers < 0) {
        s->registers = 0;
        if (has(&L, "reg_token")) {
            TRY(info(&L, "reg_token", &in, err));
            s->registers = in.ndim == 3 ? in.shape[1] : 0;
        }
    }
    if (s->layerscale < 0)
        s->layerscale = has(&L, bkey(&L, 0, "ls1.gamma"));
    s->n_prefix = (s->class_token ? 1 : 0) + s->registers;
    s->n_tokens = s->n_prefix + s->grid * s->grid;

    /* prefix tokens (cls, registers) as rows of one (n_prefix, D) table */
    if (s->n_prefix) {
        TRY(omni_tensor_alloc(&prefix, OMNI_DTYPE_F32, 2, (int64_t[]){s->n_prefix, D}, OMNI_CPU, err));
        float *pd = omni_tensor_data(&prefix);
        if (s->class_token) {
            TRY(load_host(&L, "cls_token", 3, (int64_t[]){1, 1, D}, &tok, err));
            memcpy(pd, omni_tensor_data(&tok), (size_t)D * sizeof(float));
            omni_tensor_release(&tok);
        }
        if (s->registers) {
            TRY(load_host(&L, "reg_token", 3, (int64_t[]){1, s->registers, D}, &tok, err));
            memcpy(pd + (s->class_token ? D : 0), omni_tensor_data(&tok),
                   (size_t)(s->registers * D) * sizeof(float));
            omni_tensor_release(&tok);
        }
    }
    TRY(load_pos(&L, &prefix, err));
    if (s->n_prefix) {
        TRY(finish(s, &prefix, OMNI_DTYPE_F32, err));
        s->prefix = prefix;
        prefix = (struct omni_tensor){0};
    }

    /* blocks 0..feature_block */
    s->blocks = calloc((size_t)s->feature_block + 1, sizeof *s->blocks);
    if (!s->blocks) {
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto fail;
    }
    for (int64_t j = 0; j <= s->feature_block; j++) {
        struct vit_block *b = &s->blocks[j];
        s->n_blocks = j + 1;
        TRY(load_vec(&L, bkey(&L, j, "norm1.weight"), D, &b->n1w, err));
        TRY(load_vec(&L, bkey(&L, j, "norm1.bias"), D, &b->n1b, err));
        TRY(load_linear(&L, j, "attn.qkv", 3 * D, D, NULL, &b->qkv_w, &b->qkv_b, err));
        TRY(load_linear(&L, j, "attn.proj", D, D, s->layerscale ? "ls1.gamma" : NULL, &b->proj_w,
                        &b->proj_b, err));
        TRY(load_vec(&L, bkey(&L, j, "norm2.weight"), D, &b->n2w, err));
        TRY(load_vec(&L, bkey(&L, j, "norm2.bias"), D, &b->n2b, err));
        TRY(load_linear(&L, j, "mlp.fc1", s->mlp, D, NULL, &b->fc1_w, &b->fc1_b, err));
        TRY(load_linear(&L, j, "mlp.fc2", D, s->mlp, s->layerscale ? "ls2.gamma" : NULL,
                        &b->fc2_w, &b->fc2_b, err));
    }
    s->loaded = 1;
    OMNI_LOG(OMNI_LOG_INFO,
             "stage '%s': vit dim %lld, %lld heads, mlp %lld, patch %lld, grid %lldx%lld, "
             "%lld prefix tokens, blocks 0..%lld of %lld",
             s->name, (long long)D, (long long)s->heads, (long long)s->mlp, (long long)s->patch,
             (long long)s->grid, (long long)s->grid, (long long)s->n_prefix,
             (long long)s->feature_block, (long long)s->depth);
    return OMNI_OK;
fail:
    omni_tensor_release(&tok);
    omni_tensor_release(&prefix);
    vit_unload(s);
    return rc;
}

/* ------------------------------------------------------------------ forward */

/* Rows [r0, r0+n) of batch b of a contiguous (B, T, C) tensor, as (n, C). (transfer none) */
static struct omni_tensor rows(const struct omni_tensor *t, int64_t b, int64_t r0, int64_t n)
{
    struct omni_tensor v = *t;
    const int64_t T = t->shape[1], C = t->shape[2];
    v.ndim = 2;
    v.shape[0] = n;
    v.shape[1] = C;
    v.offset = t->offset + ((b * T + r0) * C) * (int64_t)omni_dtype_size(t->dtype);
    omni_tensor_set_contiguous(&v);
    return v;
}

/* Columns [c0, c0+n) of a (B, T, C) tensor, as (B, T, n). (transfer none) */
static struct omni_tensor cols(const struct omni_tensor *t, int64_t c0, int64_t n)
{
    struct omni_tensor v = *t;
    v.shape[2] = n;
    v.offset = t->offset + c0 * (int64_t)omni_dtype_size(t->dtype);
    return v;
}

static int alloc3(struct vit_stage *s, struct omni_tensor *t, int64_t a, int64_t b, int64_t c,
                  struct omni_error *err)
{
    return omni_tensor_alloc(t, OMNI_DTYPE_F32, 3, (int64_t[]){a, b, c}, s->base.device, err);
}

/* (n) view of the f32 vector t from element c0. (transfer none) */
static struct omni_tensor vslice(const struct omni_tensor *t, int64_t c0, int64_t n)
{
    struct omni_tensor v = *t;
    v.shape[0] = n;
    v.offset = t->offset + c0 * (int64_t)sizeof(float);
    return v;
}

/* y = x · wᵀ + beta y; x in the weight dtype (f32: omni_op_matmul) */
static int mm(struct omni_tensor *y, const struct omni_tensor *x, const struct omni_tensor *w,
              float beta, struct omni_error *err)
{
    if (x->dtype == OMNI_DTYPE_F32)
        return omni_op_matmul(y, x, w, NULL, 1.0f, beta, err);
    return omni_op_matmul16(y, x, w, beta, err);
}

/* One block, with the elementwise work folded into the ops around the GEMMs:
 *   Hh = LN1(X), X += proj_b            (Hh in the weight dtype)
 *   QKV = Hh qkv_wᵀ;  Ah = attn(QKV + qkv_b)   (biases on load, Ah in the weight dtype)
 *   X += Ah proj_wᵀ                     (GEMM with beta = 1)
 *   Hh = LN2(X), X += fc2_b
 *   Mf = Hh fc1_wᵀ;  Mh = GELU(Mf + fc1_b)
 *   X += Mh fc2_wᵀ
 * With 16-bit weights the GEMM inputs are rounded once by the op that writes
 * them, and attention runs at that precision (tensor cores on CUDA). */
static int run_block(struct vit_stage *s, const struct vit_block *b, struct omni_tensor *X,
                     struct omni_tensor *Hh, struct omni_tensor *QKV, struct omni_tensor *Ah,
                     struct omni_tensor *Mf, struct omni_tensor *Mh, struct omni_error *err)
{
    int rc;
    const int64_t D = s->dim;
    struct omni_tensor q = cols(QKV, 0, D), k = cols(QKV, D, D), v = cols(QKV, 2 * D, D);
    struct omni_tensor qb = vslice(&b->qkv_b, 0, D), kb = vslice(&b->qkv_b, D, D),
                       vb = vslice(&b->qkv_b, 2 * D, D);
    const struct omni_attention_opts ao = {
        &qb, &kb, &vb, s->wdtype == OMNI_DTYPE_F32 ? 0 : s->wdtype};
    if ((rc = omni_op_layernorm_ex(Hh, X, &b->n1w, &b->n1b, s->eps, &b->proj_b, err)) ||
        (rc = mm(QKV, Hh, &b->qkv_w, 0.0f, err)) ||
        (rc = omni_op_attention_ex(Ah, &q, &k, &v, (int)s->heads, 0.0f, &ao, err)) ||
        (rc = mm(X, Ah, &b->proj_w, 1.0f, err)) ||
        (rc = omni_op_layernorm_ex(Hh, X, &b->n2w, &b->n2b, s->eps, &b->fc2_b, err)) ||
        (rc = mm(Mf, Hh, &b->fc1_w, 0.0f, err)) ||
        (rc = omni_op_bias_gelu(Mh, Mf, &b->fc1_b, err)) || (rc = mm(X, Mh, &b->fc2_w, 1.0f, err)))
        return rc;
    return OMNI_OK;
}

static int vit_forward(struct omni_stage *st, void *state, struct omni_io *io,
                       struct omni_error *err)
{
    struct vit_stage *s = (struct vit_stage *)st;
    struct omni_tensor E = {0}, X = {0}, Hh = {0}, QKV = {0}, Ah = {0}, Mf = {0}, Mh = {0},
                       F = {0};
    int rc;
    if (!s->loaded)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    const struct omni_tensor *px = &io->in[0];
    const int64_t dims[4] = {-1, 3, s->image, s->image};
    if ((rc = omni_check_tensor(&s->base, "pixels", px, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 4, dims,
                                err)))
        return rc;
    const int64_t B = px->shape[0], D = s->dim, T = s->n_tokens, Np = s->grid * s->grid;
    const int64_t P = s->n_prefix;
    if (B < 1)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'pixels' is empty", s->name);
    const struct omni_tensor *pin = px;
    struct omni_tensor pc = {0};
    if (!omni_tensor_is_contiguous(px)) {
        TRY(omni_tensor_copy_to(&pc, px, s->base.device, err));
        pin = &pc;
    }

    /* embeddings: X[b] = [prefix; patch_embed(px[b]) + pos] */
    TRY(alloc3(s, &E, B, Np, D, err));
    TRY(omni_op_patch_embed(&E, pin, &s->patch_w, &s->patch_b, err));
    if (P) {
        TRY(alloc3(s, &X, B, T, D, err));
        for (int64_t b = 0; b < B; b++) {
            struct omni_tensor eb = rows(&E, b, 0, Np), xp = rows(&X, b, 0, P),
                               xe = rows(&X, b, P, Np);
            TRY(omni_op_add(&xe, &eb, &s->pos, err));
            TRY(omni_op_copy(&xp, &s->prefix, err));
        }
        omni_tensor_release(&E);
    } else {
        X = E;
        E = (struct omni_tensor){0};
        for (int64_t b = 0; b < B; b++) {
            struct omni_tensor xb = rows(&X, b, 0, Np);
            TRY(omni_op_add(&xb, &xb, &s->pos, err));
        }
    }

    /* GEMM inputs in the weight dtype; GEMM outputs and the residual stream in f32 */
    const int hdt = s->wdtype;
    TRY(omni_tensor_alloc(&Hh, hdt, 3, (int64_t[]){B, T, D}, s->base.device, err));
    TRY(alloc3(s, &QKV, B, T, 3 * D, err));
    TRY(omni_tensor_alloc(&Ah, hdt, 3, (int64_t[]){B, T, D}, s->base.device, err));
    TRY(alloc3(s, &Mf, B, T, s->mlp, err));
    if (hdt == OMNI_DTYPE_F32)
        omni_tensor_ref(&Mh, &Mf);
    else
        TRY(omni_tensor_alloc(&Mh, hdt, 3, (int64_t[]){B, T, s->mlp}, s->base.device, err));
    for (int64_t j = 0; j <= s->feature_block; j++)
        TRY(run_block(s, &s->blocks[j], &X, &Hh, &QKV, &Ah, &Mf, &Mh, err));

    if (s->drop_prefix && P) {
        TRY(alloc3(s, &F, B, Np, D, err));
        for (int64_t b = 0; b < B; b++) {
            struct omni_tensor fb = rows(&F, b, 0, Np), xb = rows(&X, b, P, Np);
            TRY(omni_op_copy(&fb, &xb, err));
        }
    } else {
        F = X;
        X = (struct omni_tensor){0};
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = F;
    F = (struct omni_tensor){0};
    rc = OMNI_OK;
fail:
    if (rc)
        omni_error_prefix(err, "stage '%s': ", s->name);
    omni_tensor_release(&pc);
    omni_tensor_release(&E);
    omni_tensor_release(&X);
    omni_tensor_release(&Hh);
    omni_tensor_release(&QKV);
    omni_tensor_release(&Ah);
    omni_tensor_release(&Mf);
    omni_tensor_release(&Mh);
    omni_tensor_release(&F);
    return rc;
}

static const struct omni_port_desc vit_ports[] = {
    {"pixels", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,3,S,S", 0,
     "normalised image, NCHW, S = image_size"},
    {"features", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,N,D", 0,
     "output of block feature_block (no final norm), row-major patch tokens"},
};

static const struct omni_stage_ops vit_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = vit_create,
    .destroy = vit_destroy,
    .forward = vit_forward,
    .load = vit_load,
};

static const struct omni_plugin_desc vit_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "vit",
    .version = "0.1.0",
    .description = "timm ViT feature extractor (DINOv2-L/14-reg4, SigLIP-SO400M/14-384, custom)",
    .ops = &vit_ops,
    .ports = vit_ports,
    .n_ports = OMNI_ARRAY_LEN(vit_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc =
        "variant: dinov2_reg4_l14 | siglip_so400m_14_384 | custom (default custom)\n"
        "dim, depth, heads, mlp_hidden, patch, image_size, registers: override the variant "
        "(custom: heads and image_size required, the rest read from the weights)\n"
        "class_token, layerscale: bools (custom: from the presence of cls_token / ls1.gamma)\n"
        "eps: LayerNorm eps (default 1e-6)\n"
        "feature_block: block whose output is returned (default depth-2), no final norm\n"
        "drop_prefix: drop cls/register tokens from the output (default true)\n"
        "key_style: timm (the only one; relative keys cls_token, reg_token, pos_embed, "
        "patch_embed.proj.*, blocks.N.*)\n",
};

OMNI_PLUGIN_DEFINE(vit_desc)
