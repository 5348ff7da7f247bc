/* plugins/vq/vq.c - the LlamaGen VQ image tokenizer (VQ-16 as used by
 * OmniMamba; spec/vq.md): codes -> image (decoder) and image -> codes
 * (encoder + quantiser).
 *
 * Decode (spec/vq.md §2-3): codebook rows L2-normalised once at load (eps
 * 1e-12); z = cbn[codes] as (B, g, g, D) permuted to (B, D, g, g);
 * post_quant_conv 1x1; decoder conv_in; mid Res, Attn, Res; decoder levels
 * j = 0..L-1 (level L-1-j of ch_mult): (num_res_blocks + 1) Res, each followed
 * by Attn on levels that have attention, then nearest x2 + conv3x3 for
 * j < L-1; GroupNorm, swish, conv_out. The output is not clamped.
 * Encode (§6): conv_in; levels i = 0..L-1: num_res_blocks Res (+ Attn), then
 * pad (0,1,0,1) + conv3x3 stride 2 for i < L-1; mid; GroupNorm, swish,
 * conv_out; quant_conv 1x1; rows L2-normalised; nearest normalised codebook
 * row by the f32 distance (ties: lowest index).
 *
 * The architecture is read from the weights (levels, widths, residual
 * blocks per level, which levels have attention) unless params fix it; every
 * tensor is then loaded with an exact shape check. Activations live in three
 * ping-pong buffers of the largest activation (96 MiB fp32 per 256x256 image).
 * Every GroupNorm + swish in front of a convolution, every nearest x2 and
 * every residual add after one run inside the convolution
 * (omni_op_groupnorm_coef + omni_op_conv2d_fused; on the CPU the same ops in
 * sequence, same bits as calling them one by one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"
#include "omni/ops/vq.h"

#define VQ_MAX_LEVELS 8
#define VQ_MAX_RES 8
#define VQ_GN_EPS 1e-6f
#define VQ_L2_EPS 1e-12f

enum { VQ_DECODE = 1, VQ_ENCODE = 2 };

struct vq_conv {
    struct omni_tensor w, b;
};

struct vq_norm {
    struct omni_tensor w, b;
};

struct vq_res {
    struct vq_norm n1, n2;
    struct vq_conv c1, c2, nin;
    int has_nin;
    int64_t cin, cout;
};

struct vq_attn {
    struct vq_norm n;
    struct vq_conv q, k, v, p; /* weights reshaped to (C, C) for omni_op_linear */
};

struct vq_level {
    int64_t C; /* output width of the level */
    int nres;
    int has_attn;
    struct vq_res res[VQ_MAX_RES];
    struct vq_attn attn[VQ_MAX_RES];
    int has_resample; /* decoder: upsample; encoder: downsample */
    struct vq_conv resample;
};

struct vq_coder {
    int L;
    int64_t c_in;    /* decoder: z_channels; encoder: 3 */
    int64_t c_first; /* width after conv_in */
    struct vq_conv conv_in;
    struct vq_res mid0, mid2;
    struct vq_attn mid1;
    struct vq_level lev[VQ_MAX_LEVELS];
    struct vq_norm norm_out;
    struct vq_conv conv_out;
};

struct vq_stage {
    struct omni_stage base;
    /* params */
    int mode;
    int64_t grid, groups, pass_images;
    int64_t p_codebook_size, p_codebook_dim, p_z_channels, p_ch, p_nres;
    int64_t p_ch_mult[VQ_MAX_LEVELS];
    int n_ch_mult; /* 0: not given */
    int64_t p_attn_res[VQ_MAX_LEVELS];
    int n_attn_res; /* -1: not given */
    int wdtype;
    /* loaded */
    int loaded;
    int64_t V, D, zc;
    struct omni_tensor cbn; /* (V, D) f32, rows L2-normalised */
    struct vq_conv post_quant, quant;
    struct vq_coder dec, enc;
};

/* ------------------------------------------------------------------ teardown */

static void conv_free(struct vq_conv *c)
{
    omni_tensor_release(&c->w);
    omni_tensor_release(&c->b);
}

static void norm_free(struct vq_norm *n)
{
    omni_tensor_release(&n->w);
    omni_tensor_release(&n->b);
}

static void res_free(struct vq_res *r)
{
    norm_free(&r->n1);
    norm_free(&r->n2);
    conv_free(&r->c1);
    conv_free(&r->c2);
    conv_free(&r->nin);
}

static void attn_free(struct vq_attn *a)
{
    norm_free(&a->n);
    conv_free(&a->q);
    conv_free(&a->k);
    conv_free(&a->v);
    conv_free(&a->p);
}

static void coder_free(struct vq_coder *c)
{
    conv_free(&c->conv_in);
    res_free(&c->mid0);
    attn_free(&c->mid1);
    res_free(&c->mid2);
    for (int j = 0; j < VQ_MAX_LEVELS; j++) {
        for (int r = 0; r < VQ_MAX_RES; r++) {
            res_free(&c->lev[j].res[r]);
            attn_free(&c->lev[j].attn[r]);
        }
        conv_free(&c->lev[j].resample);
    }
    norm_free(&c->norm_out);
    conv_free(&c->conv_out);
    memset(c, 0, sizeof *c);
}

static void vq_unload(struct vq_stage *s)
{
    omni_tensor_release(&s->cbn);
    conv_free(&s->post_quant);
    conv_free(&s->quant);
    coder_free(&s->dec);
    coder_free(&s->enc);
    s->loaded = 0;
}

static void vq_destroy(struct omni_stage *st)
{
    struct vq_stage *s = (struct vq_stage *)st;
    if (!s)
        return;
    vq_unload(s);
    free(s);
}

/* ------------------------------------------------------------------ create */

static int vq_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                     struct omni_error *err)
{
    struct vq_stage *s = calloc(1, sizeof *s);
    const struct omni_params *p = cfg->params;
    int rc = OMNI_OK;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "vq: out of memory");
    const char *mode = omni_params_str(p, "mode", "decode");
    if (!strcmp(mode, "decode"))
        s->mode = VQ_DECODE;
    else if (!strcmp(mode, "encode"))
        s->mode = VQ_ENCODE;
    else if (!strcmp(mode, "both"))
        s->mode = VQ_DECODE | VQ_ENCODE;
    else {
        rc = omni_error_set(err, OMNI_EINVAL, "param mode: '%s' is not decode, encode or both",
                            mode);
        goto fail;
    }
    if ((rc = omni_params_int(p, "grid", 16, &s->grid, err)) ||
        (rc = omni_params_int(p, "norm_groups", 32, &s->groups, err)) ||
        (rc = omni_params_int(p, "pass_images", 0, &s->pass_images, err)) ||
        (rc = omni_params_int(p, "codebook_size", -1, &s->p_codebook_size, err)) ||
        (rc = omni_params_int(p, "codebook_dim", -1, &s->p_codebook_dim, err)) ||
        (rc = omni_params_int(p, "z_channels", -1, &s->p_z_channels, err)) ||
        (rc = omni_params_int(p, "ch", -1, &s->p_ch, err)) ||
        (rc = omni_params_int(p, "num_res_blocks", -1, &s->p_nres, err)))
        goto fail;
    s->n_ch_mult = VQ_MAX_LEVELS;
    if ((rc = omni_params_int_list(p, "ch_mult", s->p_ch_mult, &s->n_ch_mult, err)))
        goto fail;
    s->n_attn_res = VQ_MAX_LEVELS;
    if ((rc = omni_params_int_list(p, "attn_resolutions", s->p_attn_res, &s->n_attn_res, err)))
        goto fail;
    if (!omni_params_has(p, "attn_resolutions"))
        s->n_attn_res = -1;
    if (s->grid < 1 || s->grid > 4096) {
        rc = omni_error_set(err, OMNI_EINVAL, "param grid: %lld is not in [1, 4096]",
                            (long long)s->grid);
        goto fail;
    }
    if (s->pass_images < 0) {
        rc = omni_error_set(err, OMNI_EINVAL, "param pass_images: %lld must be >= 0",
                            (long long)s->pass_images);
        goto fail;
    }
    if (s->groups < 1) {
        rc = omni_error_set(err, OMNI_EINVAL, "param norm_groups: %lld must be >= 1",
                            (long long)s->groups);
        goto fail;
    }
    if (omni_params_has(p, "num_res_blocks") && (s->p_nres < 1 || s->p_nres >= VQ_MAX_RES)) {
        rc = omni_error_set(err, OMNI_EINVAL, "param num_res_blocks: %lld is not in [1, %d]",
                            (long long)s->p_nres, VQ_MAX_RES - 1);
        goto fail;
    }
    for (int i = 0; i < s->n_ch_mult; i++)
        if (s->p_ch_mult[i] < 1) {
            rc = omni_error_set(err, OMNI_EINVAL, "param ch_mult: entry %d is %lld, must be >= 1",
                                i, (long long)s->p_ch_mult[i]);
            goto fail;
        }
    if (omni_params_has(p, "ch_mult") && s->n_ch_mult < 1) {
        rc = omni_error_set(err, OMNI_EINVAL, "param ch_mult: empty list");
        goto fail;
    }
    if (omni_params_has(p, "ch") && s->p_ch < 1) {
        rc = omni_error_set(err, OMNI_EINVAL, "param ch: %lld must be >= 1", (long long)s->p_ch);
        goto fail;
    }
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    vq_destroy(&s->base);
    return rc;
}

/* ------------------------------------------------------------------ load */

struct loader {
    struct vq_stage *s;
    const struct omni_weights_ref *w;
    const char *prefix;
    char key[256];
};

static const char *key(struct loader *l, const char *fmt, ...) OMNI_PRINTF(2, 3);
static const char *key(struct loader *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->key, sizeof l->key, fmt, ap);
    va_end(ap);
    return l->key;
}

/* Shape of prefix+k when present: returns 1 and fills dims (up to 4). */
static int peek(struct loader *l, const char *k, int64_t dims[4])
{
    struct omni_weight_info info;
    if (!l->w->file || !omni_weights_has(l->w->file, l->prefix, k))
        return 0;
    if (omni_weights_info(l->w->file, l->prefix, k, &info, NULL) != OMNI_OK)
        return 0;
    for (int i = 0; i < 4; i++)
        dims[i] = i < info.ndim ? info.shape[i] : 1;
    return info.ndim > 0;
}

static int ld(struct loader *l, const char *k, int dtype, int ndim, int64_t a, int64_t b,
              int64_t c, int64_t d, struct omni_tensor *out, struct omni_error *err)
{
    const int64_t shape[4] = {a, b, c, d};
    omni_tensor_release(out);
    return omni_stage_load_weight(&l->s->base, l->w, k, dtype, ndim, shape, out, err);
}

/* stem.weight (cout, cin, k, k) in the stage dtype, stem.bias (cout) f32 */
static int ld_conv(struct loader *l, const char *stem, int64_t cout, int64_t cin, int64_t k,
                   struct vq_conv *c, struct omni_error *err)
{
    char st[200];
    int rc;
    snprintf(st, sizeof st, "%s", stem);
    if ((rc = ld(l, key(l, "%s.weight", st), l->s->wdtype, 4, cout, cin, k, k, &c->w, err)) ||
        (rc = ld(l, key(l, "%s.bias", st), OMNI_DTYPE_F32, 1, cout, 0, 0, 0, &c->b, err)))
        return rc;
    return OMNI_OK;
}

static int ld_norm(struct loader *l, const char *stem, int64_t C, struct vq_norm *n,
                   struct omni_error *err)
{
    char st[200];
    int rc;
    snprintf(st, sizeof st, "%s", stem);
    if (C % l->s->groups)
        return omni_error_set(err, OMNI_ESHAPE,
                              "'%s%s' normalises %lld channels, not divisible into %lld groups "
                              "(param norm_groups)",
                              l->prefix, st, (long long)C, (long long)l->s->groups);
    if ((rc = ld(l, key(l, "%s.weight", st), OMNI_DTYPE_F32, 1, C, 0, 0, 0, &n->w, err)) ||
        (rc = ld(l, key(l, "%s.bias", st), OMNI_DTYPE_F32, 1, C, 0, 0, 0, &n->b, err)))
        return rc;
    return OMNI_OK;
}

static int ld_res(struct loader *l, const char *stem, int64_t cin, int64_t cout, struct vq_res *r,
                  struct omni_error *err)
{
    char st[200], sub[256];
    int rc;
    snprintf(st, sizeof st, "%s", stem);
    r->cin = cin;
    r->cout = cout;
    r->has_nin = cin != cout;
    snprintf(sub, sizeof sub, "%s.norm1", st);
    if ((rc = ld_norm(l, sub, cin, &r->n1, err)))
        return rc;
    snprintf(sub, sizeof sub, "%s.conv1", st);
    if ((rc = ld_conv(l, sub, cout, cin, 3, &r->c1, err)))
        return rc;
    snprintf(sub, sizeof sub, "%s.norm2", st);
    if ((rc = ld_norm(l, sub, cout, &r->n2, err)))
        return rc;
    snprintf(sub, sizeof sub, "%s.conv2", st);
    if ((rc = ld_conv(l, sub, cout, cout, 3, &r->c2, err)))
        return rc;
    if (r->has_nin) {
        snprintf(sub, sizeof sub, "%s.nin_shortcut", st);
        if ((rc = ld_conv(l, sub, cout, cin, 1, &r->nin, err)))
            return rc;
    }
    return OMNI_OK;
}

static int ld_attn(struct loader *l, const char *stem, int64_t C, struct vq_attn *a,
                   struct omni_error *err)
{
    static const char *const names[4] = {"q", "k", "v", "proj_out"};
    struct vq_conv *convs[4] = {&a->q, &a->k, &a->v, &a->p};
    char st[200], sub[256];
    int rc;
    snprintf(st, sizeof st, "%s", stem);
    snprintf(sub, sizeof sub, "%s.norm", st);
    if ((rc = ld_norm(l, sub, C, &a->n, err)))
        return rc;
    for (int i = 0; i < 4; i++) {
        snprintf(sub, sizeof sub, "%s.%s", st, names[i]);
        if ((rc = ld_conv(l, sub, C, C, 1, convs[i], err)))
            return rc;
        const int64_t sh[2] = {C, C}; /* 1x1 conv = linear over channels */
        if ((rc = omni_tensor_reshape(&convs[i]->w, 2, sh, err)))
            return rc;
    }
    return OMNI_OK;
}

/* Widths of the L levels in ch_mult order (level 0 = full resolution), from
 * the params when ch or ch_mult is given, else from the weights of `side`
 * ("decoder" lists its levels in reverse). Returns L (0: nothing found). */
static int level_widths(struct loader *l, const char *side, int64_t C[VQ_MAX_LEVELS])
{
    static const int64_t def_mult[5] = {1, 1, 2, 2, 4};
    struct vq_stage *s = l->s;
    if (s->n_ch_mult > 0 || s->p_ch > 0) {
        const int64_t ch = s->p_ch > 0 ? s->p_ch : 128;
        const int64_t *m = s->n_ch_mult > 0 ? s->p_ch_mult : def_mult;
        int L = s->n_ch_mult > 0 ? s->n_ch_mult : 5;
        for (int i = 0; i < L; i++)
            C[i] = ch * m[i];
        return L;
    }
    int L = 0;
    int64_t d[4];
    while (L < VQ_MAX_LEVELS && peek(l, key(l, "%s.conv_blocks.%d.res.0.conv1.weight", side, L), d))
        C[L++] = d[0];
    if (!strcmp(side, "decoder"))
        for (int i = 0; i < L / 2; i++) {
            int64_t t = C[i];
            C[i] = C[L - 1 - i];
            C[L - 1 - i] = t;
        }
    return L;
}

static int count_res(struct loader *l, const char *side, int level)
{
    int n = 0;
    int64_t d[4];
    while (n < VQ_MAX_RES &&
           peek(l, key(l, "%s.conv_blocks.%d.res.%d.conv1.weight", side, level, n), d))
        n++;
    return n;
}

/* Attention on the level whose feature maps are `side_px` wide. */
static int level_has_attn(struct loader *l, const char *side, int j, int64_t side_px)
{
    struct vq_stage *s = l->s;
    if (s->n_attn_res >= 0) {
        for (int i = 0; i < s->n_attn_res; i++)
            if (s->p_attn_res[i] == side_px)
                return 1;
        return 0;
    }
    int64_t d[4];
    return peek(l, key(l, "%s.conv_blocks.%d.attn.0.q.weight", side, j), d);
}

static int load_decoder(struct loader *l, struct omni_error *err)
{
    struct vq_stage *s = l->s;
    struct vq_coder *c = &s->dec;
    int64_t C[VQ_MAX_LEVELS];
    char stem[128];
    int rc;
    int L = level_widths(l, "decoder", C);
    if (L == 0) /* nothing to infer from: expect VQ-16, the loads below name what is missing */
        for (L = 0; L < 5; L++)
            C[L] = 128 * (int64_t[]){1, 1, 2, 2, 4}[L];
    c->L = L;
    c->c_in = s->zc;
    c->c_first = C[L - 1];
    int nres = s->p_nres > 0 ? (int)s->p_nres + 1 : count_res(l, "decoder", 0);
    if (nres == 0)
        nres = 3;
    if ((rc = ld_conv(l, "decoder.conv_in", c->c_first, c->c_in, 3, &c->conv_in, err)) ||
        (rc = ld_res(l, "decoder.mid.0", c->c_first, c->c_first, &c->mid0, err)) ||
        (rc = ld_attn(l, "decoder.mid.1", c->c_first, &c->mid1, err)) ||
        (rc = ld_res(l, "decoder.mid.2", c->c_first, c->c_first, &c->mid2, err)))
        return rc;
    int64_t cin = c->c_first;
    for (int j = 0; j < L; j++) {
        struct vq_level *lv = &c->lev[j];
        lv->C = C[L - 1 - j];
        lv->nres = nres;
        lv->has_attn = level_has_attn(l, "decoder", j, s->grid << j);
        for (int r = 0; r < nres; r++) {
            snprintf(stem, sizeof stem, "decoder.conv_blocks.%d.res.%d", j, r);
            if ((rc = ld_res(l, stem, cin, lv->C, &lv->res[r], err)))
                return rc;
            cin = lv->C;
            if (lv->has_attn) {
                snprintf(stem, sizeof stem, "decoder.conv_blocks.%d.attn.%d", j, r);
                if ((rc = ld_attn(l, stem, lv->C, &lv->attn[r], err)))
                    return rc;
            }
        }
        lv->has_resample = j < L - 1;
        if (lv->has_resample) {
            snprintf(stem, sizeof stem, "decoder.conv_blocks.%d.upsample.conv", j);
            if ((rc = ld_conv(l, stem, lv->C, lv->C, 3, &lv->resample, err)))
                return rc;
        }
    }
    if ((rc = ld_norm(l, "decoder.norm_out", cin, &c->norm_out, err)) ||
        (rc = ld_conv(l, "decoder.conv_out", 3, cin, 3, &c->conv_out, err)) ||
        (rc = ld_conv(l, "post_quant_conv", s->zc, s->D, 1, &s->post_quant, err)))
        return rc;
    return OMNI_OK;
}

static int load_encoder(struct loader *l, struct omni_error *err)
{
    struct vq_stage *s = l->s;
    struct vq_coder *c = &s->enc;
    int64_t C[VQ_MAX_LEVELS], d[4];
    char stem[128];
    int rc;
    int L = level_widths(l, "encoder", C);
    if (L == 0)
        for (L = 0; L < 5; L++)
            C[L] = 128 * (int64_t[]){1, 1, 2, 2, 4}[L];
    c->L = L;
    c->c_in = 3;
    if (s->p_ch > 0 || s->n_ch_mult > 0)
        c->c_first = s->p_ch > 0 ? s->p_ch : 128;
    else
        c->c_first = peek(l, "encoder.conv_in.weight", d) ? d[0] : C[0];
    int nres = s->p_nres > 0 ? (int)s->p_nres : count_res(l, "encoder", 0);
    if (nres == 0)
        nres = 2;
    if ((rc = ld_conv(l, "encoder.conv_in", c->c_first, 3, 3, &c->conv_in, err)))
        return rc;
    int64_t cin = c->c_first;
    for (int i = 0; i < L; i++) {
        struct vq_level *lv = &c->lev[i];
        lv->C = C[i];
        lv->nres = nres;
        lv->has_attn = level_has_attn(l, "encoder", i, s->grid << (L - 1 - i));
        for (int r = 0; r < nres; r++) {
            snprintf(stem, sizeof stem, "encoder.conv_blocks.%d.res.%d", i, r);
            if ((rc = ld_res(l, stem, cin, lv->C, &lv->res[r], err)))
                return rc;
            cin = lv->C;
            if (lv->has_attn) {
                snprintf(stem, sizeof stem, "encoder.conv_blocks.%d.attn.%d", i, r);
                if ((rc = ld_attn(l, stem, lv->C, &lv->attn[r], err)))
                    return rc;
            }
        }
        lv->has_resample = i < L - 1;
        if (lv->has_resample) {
            snprintf(stem, sizeof stem, "encoder.conv_blocks.%d.downsample.conv", i);
            if ((rc = ld_conv(l, stem, lv->C, lv->C, 3, &lv->resample, err)))
                return rc;
        }
    }
    if ((rc = ld_res(l, "encoder.mid.0", cin, cin, &c->mid0, err)) ||
        (rc = ld_attn(l, "encoder.mid.1", cin, &c->mid1, err)) ||
        (rc = ld_res(l, "encoder.mid.2", cin, cin, &c->mid2, err)) ||
        (rc = ld_norm(l, "encoder.norm_out", cin, &c->norm_out, err)) ||
        (rc = ld_conv(l, "encoder.conv_out", s->zc, cin, 3, &c->conv_out, err)) ||
        (rc = ld_conv(l, "quant_conv", s->D, s->zc, 1, &s->quant, err)))
        return rc;
    return OMNI_OK;
}

static int vq_load(struct omni_stage *st, const struct omni_weights_ref *w, struct omni_error *err)
{
    struct vq_stage *s = (struct vq_stage *)st;
    struct loader l = {.s = s, .w = w, .prefix = w && w->prefix ? w->prefix : ""};
    int64_t d[4];
    int rc;
    if (!w || !w->file)
        return omni_error_set(err, OMNI_EINVAL,
                              "vq needs weights (vq_ds16_t2i.pt with prefix 'model.', or an "
                              "OmniMamba file with prefix 'llm_backbone.vqvae.')");
    vq_unload(s);
    /* codebook (V, D): needed both ways */
    s->V = s->p_codebook_size > 0 ? s->p_codebook_size
           : peek(&l, "quantize.embedding.weight", d) ? d[0] : 16384;
    s->D = s->p_codebook_dim > 0 ? s->p_codebook_dim
           : peek(&l, "quantize.embedding.weight", d) ? d[1] : 8;
    if ((rc = ld(&l, "quantize.embedding.weight", OMNI_DTYPE_F32, 2, s->V, s->D, 0, 0, &s->cbn,
                 err)))
        goto fail;
    if ((rc = omni_op_l2_normalize(&s->cbn, &s->cbn, VQ_L2_EPS, err)))
        goto fail;
    if (s->p_z_channels > 0)
        s->zc = s->p_z_channels;
    else if ((s->mode & VQ_DECODE) && peek(&l, "post_quant_conv.weight", d))
        s->zc = d[0];
    else if ((s->mode & VQ_ENCODE) && peek(&l, "quant_conv.weight", d))
        s->zc = d[1];
    else
        s->zc = 256;
    if ((s->mode & VQ_DECODE) && (rc = load_decoder(&l, err)))
        goto fail;
    if ((s->mode & VQ_ENCODE) && (rc = load_encoder(&l, err)))
        goto fail;
    s->loaded = 1;
    return OMNI_OK;
fail:
    vq_unload(s);
    return rc;
}

/* ------------------------------------------------------------------ forward */

/* Three activation buffers, GroupNorm coefficients (B, Cmax, 4) and the
 * attention scratch (made on first use); views into them hold no reference. */
struct vq_ws {
    struct omni_buffer *buf[3], *coef, *attn;
    size_t attn_bytes;
    int64_t B;
    struct omni_device dev; /* the stage's device */
};

static struct omni_tensor view(const struct vq_ws *ws, int i, int64_t C, int64_t H, int64_t W)
{
    struct omni_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = OMNI_DTYPE_F32;
    t.ndim = 4;
    t.shape[0] = ws->B;
    t.shape[1] = C;
    t.shape[2] = H;
    t.shape[3] = W;
    omni_tensor_set_contiguous(&t);
    t.device = ws->dev;
    t.buf = ws->buf[i];
    return t;
}

static int groupnorm_swish(struct vq_stage *s, struct omni_tensor *out, const struct omni_tensor *x,
                           const struct vq_norm *n, int swish, struct omni_error *err)
{
    int rc = omni_op_groupnorm(out, x, &n->w, &n->b, (int)s->groups, VQ_GN_EPS, err);
    if (!rc && swish)
        rc = omni_op_silu(out, out, err);
    return rc;
}

/* The GroupNorm coefficients of x (B, C, H, W) under norm n, as a (B, C, 4)
 * view of ws->coef for omni_op_conv2d_fused. */
static int gn_coef(struct vq_stage *s, struct vq_ws *ws, struct omni_tensor *coef,
                   const struct omni_tensor *x, const struct vq_norm *n, struct omni_error *err)
{
    memset(coef, 0, sizeof *coef);
    coef->dtype = OMNI_DTYPE_F32;
    coef->ndim = 3;
    coef->shape[0] = ws->B;
    coef->shape[1] = x->shape[1];
    coef->shape[2] = 4;
    omni_tensor_set_contiguous(coef);
    coef->device = ws->dev;
    coef->buf = ws->coef;
    return omni_op_groupnorm_coef(coef, x, &n->w, &n->b, (int)s->groups, VQ_GN_EPS, err);
}

/* h = ws[*hi] (B, cin, H, W) -> (B, cout, H, W), result in a new ws slot:
 *   c = conv1(swish(GN1(x))); o = conv2(swish(GN2(c))) + (nin(x) or x)
 * with GroupNorm + swish read inside the convolutions (omni_op_conv2d_fused). */
static int res_fwd(struct vq_stage *s, const struct vq_res *r, struct vq_ws *ws, int *hi,
                   int64_t H, int64_t W, struct omni_error *err)
{
    const int h = *hi, t1 = (h + 1) % 3, t2 = (h + 2) % 3;
    struct omni_tensor x = view(ws, h, r->cin, H, W);
    struct omni_tensor c = view(ws, t2, r->cout, H, W), o = view(ws, t1, r->cout, H, W);
    struct omni_tensor coef;
    int rc;
    if ((rc = gn_coef(s, ws, &coef, &x, &r->n1, err)) ||
        (rc = omni_op_conv2d_fused(&c, &x, &r->c1.w, &r->c1.b, 1, &coef, 1, 0, NULL, err)))
        return rc;
    if (r->has_nin && (rc = omni_op_conv2d(&o, &x, &r->nin.w, &r->nin.b, 1, 0, err)))
        return rc;
    if ((rc = gn_coef(s, ws, &coef, &c, &r->n2, err)) ||
        (rc = omni_op_conv2d_fused(&o, &c, &r->c2.w, &r->c2.b, 1, &coef, 1, 0,
                                   r->has_nin ? &o : &x, err)))
        return rc;
    *hi = t1;
    return OMNI_OK;
}

/* (B, C, S) <-> (B, S, C) through a permuted view of src */
static int transpose_bcs(struct omni_tensor *dst, const struct omni_tensor *src, int64_t B,
                         int64_t C, int64_t S, int to_tokens, struct omni_error *err)
{
    struct omni_tensor v = *src;
    v.ndim = 3;
    v.shape[0] = B;
    if (to_tokens) { /* src (B, C, S) read as (B, S, C) */
        v.shape[1] = S;
        v.shape[2] = C;
        v.strides[0] = C * S;
        v.strides[1] = 1;
        v.strides[2] = S;
    } else { /* src (B, S, C) read as (B, C, S) */
        v.shape[1] = C;
        v.shape[2] = S;
        v.strides[0] = C * S;
        v.strides[1] = 1;
        v.strides[2] = C;
    }
    return omni_op_copy(dst, &v, err);
}

static struct omni_tensor tview(struct omni_buffer *b, int64_t off_floats, int64_t B, int64_t S,
                                int64_t C, struct omni_device dev)
{
    struct omni_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = OMNI_DTYPE_F32;
    t.ndim = 3;
    t.shape[0] = B;
    t.shape[1] = S;
    t.shape[2] = C;
    omni_tensor_set_contiguous(&t);
    t.offset = off_floats * (int64_t)sizeof(float);
    t.device = dev;
    t.buf = b;
    return t;
}

/* h += proj_out(attention(GN(h))), in place in ws[*hi] */
static int attn_fwd(struct vq_stage *s, const struct vq_attn *a, struct vq_ws *ws, int hi,
                    int64_t C, int64_t H, int64_t W, struct omni_error *err)
{
    const int64_t B = ws->B, S = H * W, n = B * S * C;
    const int t1 = (hi + 1) % 3;
    struct omni_tensor x = view(ws, hi, C, H, W), nn = view(ws, t1, C, H, W);
    const size_t bytes = (size_t)(4 * n) * sizeof(float);
    int rc;
    if (ws->attn_bytes < bytes) { /* once per decode or encode */
        if (ws->attn)
            omni_buffer_unref(ws->attn);
        ws->attn_bytes = 0;
        if (!(ws->attn = omni_buffer_new(ws->dev, bytes, err)))
            return err ? err->status : OMNI_ENOMEM;
        ws->attn_bytes = bytes;
    }
    struct omni_buffer *tmp = ws->attn;
    struct omni_tensor tok = tview(tmp, 0, B, S, C, ws->dev), q = tview(tmp, n, B, S, C, ws->dev);
    struct omni_tensor k = tview(tmp, 2 * n, B, S, C, ws->dev), v = tview(tmp, 3 * n, B, S, C, ws->dev);
    struct omni_tensor o = tok, p = q;
    struct omni_tensor back = nn;
    back.ndim = 3;
    back.shape[2] = S;
    omni_tensor_set_contiguous(&back);
    if ((rc = groupnorm_swish(s, &nn, &x, &a->n, 0, err)) ||
        (rc = transpose_bcs(&tok, &nn, B, C, S, 1, err)) ||
        (rc = omni_op_linear(&q, &tok, &a->q.w, &a->q.b, err)) ||
        (rc = omni_op_linear(&k, &tok, &a->k.w, &a->k.b, err)) ||
        (rc = omni_op_linear(&v, &tok, &a->v.w, &a->v.b, err)) ||
        (rc = omni_op_attention(&o, &q, &k, &v, 1, (float)(1.0 / sqrt((double)C)), err)) ||
        (rc = omni_op_linear(&p, &o, &a->p.w, &a->p.b, err)) ||
        (rc = transpose_bcs(&back, &p, B, C, S, 0, err)))
        goto done;
    rc = omni_op_add(&x, &x, &nn, err);
done:
    return rc;
}

/* Largest activation (floats per image) of a coder on a given input size. */
static int64_t coder_maxact(const struct vq_coder *c, int decode, int64_t side0)
{
    int64_t m = c->c_first * side0 * side0, side = side0;
    int64_t cin = c->c_first;
    for (int j = 0; j < c->L; j++) {
        const struct vq_level *lv = &c->lev[j];
        int64_t w = (cin > lv->C ? cin : lv->C) * side * side;
        if (w > m)
            m = w;
        cin = lv->C;
        if (lv->has_resample) {
            side = decode ? side * 2 : side / 2;
            w = lv->C * side * side;
            if (w > m)
                m = w;
        }
    }
    return m;
}

/* Widest activation of a coder (for the GroupNorm coefficients). */
static int64_t coder_maxwidth(const struct vq_coder *c)
{
    int64_t m = c->c_first;
    for (int j = 0; j < c->L; j++)
        if (c->lev[j].C > m)
            m = c->lev[j].C;
    return m;
}

static int ws_alloc(struct vq_ws *ws, int64_t B, int64_t floats, int64_t cmax,
                    struct omni_device dev, struct omni_error *err)
{
    ws->B = B;
    ws->dev = dev;
    for (int i = 0; i < 3; i++) {
        ws->buf[i] = omni_buffer_new(dev, (size_t)(B * floats) * sizeof(float), err);
        if (!ws->buf[i])
            return err ? err->status : OMNI_ENOMEM;
    }
    ws->coef = omni_buffer_new(dev, (size_t)(B * cmax * 4) * sizeof(float), err);
    return ws->coef ? OMNI_OK : err ? err->status : OMNI_ENOMEM;
}

static void ws_free(struct vq_ws *ws)
{
    for (int i = 0; i < 3; i++)
        if (ws->buf[i])
            omni_buffer_unref(ws->buf[i]);
    if (ws->coef)
        omni_buffer_unref(ws->coef);
    if (ws->attn)
        omni_buffer_unref(ws->attn);
    memset(ws, 0, sizeof *ws);
}

static int level_fwd(struct vq_stage *s, const struct vq_level *lv, struct vq_ws *ws, int *hi,
                     int64_t side, struct omni_error *err)
{
    int rc;
    for (int r = 0; r < lv->nres; r++) {
        if ((rc = res_fwd(s, &lv->res[r], ws, hi, side, side, err)))
            return rc;
        if (lv->has_attn && (rc = attn_fwd(s, &lv->attn[r], ws, *hi, lv->C, side, side, err)))
            return rc;
    }
    return OMNI_OK;
}

static int mid_fwd(struct vq_stage *s, const struct vq_coder *c, struct vq_ws *ws, int *hi,
                   int64_t C, int64_t side, struct omni_error *err)
{
    int rc;
    if ((rc = res_fwd(s, &c->mid0, ws, hi, side, side, err)) ||
        (rc = attn_fwd(s, &c->mid1, ws, *hi, C, side, side, err)) ||
        (rc = res_fwd(s, &c->mid2, ws, hi, side, side, err)))
        return rc;
    return OMNI_OK;
}

/* Rows [b0, b0 + n) of a tensor whose dim 0 is the batch (transfer none). */
static struct omni_tensor rows(const struct omni_tensor *t, int64_t b0, int64_t n)
{
    struct omni_tensor v = *t;
    v.shape[0] = n;
    v.offset += b0 * t->strides[0] * (int64_t)omni_dtype_size(t->dtype);
    return v;
}

/* Images per pass (param pass_images, else as many as keep the three
 * activation buffers within VQ_CHUNK_BYTES: VQ-16 at 256x256 needs 96 MiB per
 * image), at least one. */
#define VQ_CHUNK_BYTES ((int64_t)256 << 20)
/* On a GPU wide passes keep the device busy at the 16x16 levels: up to 10
 * VQ-16 images (~1 GiB) per pass, balanced (16 images: two passes of 8:
 * 0.75 GiB of activations). The bench's T2I batch 16 peak (6.13 GiB at this
 * size) came from its VQ warm-up running while the backbone's 1.7 GiB of
 * states were still held, plus the 630 MiB im2col workspace of conv2d_fused
 * (now 180 MiB); the VQ phase itself is ~4 GiB with the weights. */
#define VQ_CHUNK_BYTES_GPU ((int64_t)1024 << 20)

static int64_t chunk_images(const struct vq_stage *s, int64_t B, int64_t per_image_floats)
{
    const int64_t cap = s->base.device.type == OMNI_DEVICE_CPU ? VQ_CHUNK_BYTES : VQ_CHUNK_BYTES_GPU;
    int64_t n = s->pass_images > 0
                    ? s->pass_images
                    : cap / (3 * per_image_floats * (int64_t)sizeof(float));
    if (n < 1)
        n = 1;
    if (n >= B || s->pass_images > 0)
        return n < B ? n : B;
    const int64_t passes = (B + n - 1) / n; /* as many passes, as even as they can be */
    return (B + passes - 1) / passes;
}

/* One pass of the decoder over ws->B images: codes (n, S) -> image (n, 3, H, W). */
static int decode_pass(struct vq_stage *s, struct vq_ws *ws, struct omni_tensor *emb,
                       const struct omni_tensor *codes, struct omni_tensor *image,
                       struct omni_error *err)
{
    const struct vq_coder *c = &s->dec;
    const int64_t B = ws->B, g = s->grid, S = g * g, first = c->c_first;
    int64_t side = g;
    int hi, rc;
    /* z = cbn[codes] (B, S, D) -> (B, D, g, g) */
    struct omni_tensor e = rows(emb, 0, B), zt = view(ws, 0, s->D, g, g);
    zt.ndim = 3;
    zt.shape[2] = S;
    omni_tensor_set_contiguous(&zt);
    if ((rc = omni_op_embedding(&e, &s->cbn, codes, err)) ||
        (rc = transpose_bcs(&zt, &e, B, s->D, S, 0, err)))
        return rc;
    struct omni_tensor z = view(ws, 0, s->D, g, g), pq = view(ws, 1, s->zc, g, g);
    struct omni_tensor h0 = view(ws, 2, first, g, g);
    if ((rc = omni_op_conv2d(&pq, &z, &s->post_quant.w, &s->post_quant.b, 1, 0, err)) ||
        (rc = omni_op_conv2d(&h0, &pq, &c->conv_in.w, &c->conv_in.b, 1, 1, err)))
        return rc;
    hi = 2;
    if ((rc = mid_fwd(s, c, ws, &hi, first, side, err)))
        return rc;
    for (int j = 0; j < c->L; j++) {
        const struct vq_level *lv = &c->lev[j];
        if ((rc = level_fwd(s, lv, ws, &hi, side, err)))
            return rc;
        if (lv->has_resample) {
            const int t1 = (hi + 1) % 3;
            struct omni_tensor x = view(ws, hi, lv->C, side, side);
            struct omni_tensor y = view(ws, t1, lv->C, 2 * side, 2 * side);
            if ((rc = omni_op_conv2d_fused(&y, &x, &lv->resample.w, &lv->resample.b, 1, NULL, 0, 1,
                                           NULL, err)))
                return rc;
            hi = t1;
            side *= 2;
        }
    }
    const int64_t Cl = c->lev[c->L - 1].C;
    struct omni_tensor x = view(ws, hi, Cl, side, side), coef;
    if ((rc = gn_coef(s, ws, &coef, &x, &c->norm_out, err)) ||
        (rc = omni_op_conv2d_fused(image, &x, &c->conv_out.w, &c->conv_out.b, 1, &coef, 1, 0, NULL,
                                   err)))
        return rc;
    return OMNI_OK;
}

/* codes (B, g*g) contiguous -> image (B, 3, g*f, g*f), f = 2^(L-1). (transfer full) */
static int decode(struct vq_stage *s, const struct omni_tensor *codes, struct omni_tensor *image,
                  struct omni_error *err)
{
    const struct vq_coder *c = &s->dec;
    const int64_t B = codes->shape[0], g = s->grid, S = g * g, side = g << (c->L - 1);
    struct vq_ws ws = {0};
    struct omni_tensor emb = {0};
    int rc = OMNI_OK;
    int64_t m = coder_maxact(c, 1, g);
    if (s->zc * S > m)
        m = s->zc * S;
    if (s->D * S > m)
        m = s->D * S;
    const int64_t chunk = chunk_images(s, B, m);
    const int64_t esh[3] = {chunk, S, s->D}, osh[4] = {B, 3, side, side};
    if ((rc = ws_alloc(&ws, chunk, m, coder_maxwidth(c), s->base.device, err)) ||
        (rc = omni_tensor_alloc(&emb, OMNI_DTYPE_F32, 3, esh, s->base.device, err)) ||
        (rc = omni_tensor_alloc(image, OMNI_DTYPE_F32, 4, osh, s->base.device, err)))
        goto done;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        ws.B = B - b0 < chunk ? B - b0 : chunk;
        struct omni_tensor cv = rows(codes, b0, ws.B), iv = rows(image, b0, ws.B);
        if ((rc = decode_pass(s, &ws, &emb, &cv, &iv, err)))
            break;
    }
done:
    if (rc)
        omni_tensor_release(image);
    omni_tensor_release(&emb);
    ws_free(&ws);
    return rc;
}

/* One pass of the encoder over ws->B images: image (n, 3, H, W) contiguous ->
 * codes (n, S); zt: (>= n, S, D) scratch. */
static int encode_pass(struct vq_stage *s, struct vq_ws *ws, struct omni_tensor *ztall,
                       const struct omni_tensor *x, struct omni_tensor *codes,
                       struct omni_error *err)
{
    const struct vq_coder *c = &s->enc;
    const int64_t B = ws->B;
    int64_t side = x->shape[2];
    int hi = 0, rc;
    struct omni_tensor h0 = view(ws, 0, c->c_first, side, side);
    if ((rc = omni_op_conv2d(&h0, x, &c->conv_in.w, &c->conv_in.b, 1, 1, err)))
        return rc;
    for (int i = 0; i < c->L; i++) {
        const struct vq_level *lv = &c->lev[i];
        if ((rc = level_fwd(s, lv, ws, &hi, side, err)))
            return rc;
        if (lv->has_resample) {
            const int t1 = (hi + 1) % 3;
            struct omni_tensor xi = view(ws, hi, lv->C, side, side);
            struct omni_tensor y = view(ws, t1, lv->C, side / 2, side / 2);
            if ((rc = omni_op_conv2d_pad(&y, &xi, &lv->resample.w, &lv->resample.b, 2, 0, 0, 1, 1,
                                         err)))
                return rc;
            hi = t1;
            side /= 2;
        }
    }
    const int64_t Cl = c->lev[c->L - 1].C, S = side * side;
    if ((rc = mid_fwd(s, c, ws, &hi, Cl, side, err)))
        return rc;
    const int t1 = (hi + 1) % 3, t2 = (hi + 2) % 3;
    struct omni_tensor h = view(ws, hi, Cl, side, side), a = view(ws, t1, Cl, side, side);
    struct omni_tensor zc = view(ws, t2, s->zc, side, side), z = view(ws, hi, s->D, side, side);
    struct omni_tensor zt = rows(ztall, 0, B);
    if ((rc = groupnorm_swish(s, &a, &h, &c->norm_out, 1, err)) ||
        (rc = omni_op_conv2d(&zc, &a, &c->conv_out.w, &c->conv_out.b, 1, 1, err)) ||
        (rc = omni_op_conv2d(&z, &zc, &s->quant.w, &s->quant.b, 1, 0, err)) ||
        (rc = transpose_bcs(&zt, &z, B, s->D, S, 1, err)) ||
        (rc = omni_op_l2_normalize(&zt, &zt, VQ_L2_EPS, err)) ||
        (rc = omni_op_vq_nearest(codes, &zt, &s->cbn, err)))
        return rc;
    return OMNI_OK;
}

/* image (B, 3, g*f, g*f) -> codes (B, g*g) i32. (transfer full) */
static int encode(struct vq_stage *s, const struct omni_tensor *image, struct omni_tensor *codes,
                  struct omni_error *err)
{
    const struct vq_coder *c = &s->enc;
    const int64_t B = image->shape[0], side0 = image->shape[2];
    const int64_t last = side0 >> (c->L - 1), S = last * last;
    struct vq_ws ws = {0};
    struct omni_tensor zt = {0}, xin = {0};
    int rc = OMNI_OK;
    int64_t m = coder_maxact(c, 0, side0);
    if (s->zc * S > m)
        m = s->zc * S;
    if (s->D * S > m)
        m = s->D * S;
    const int64_t chunk = chunk_images(s, B, m);
    const int64_t zsh[3] = {chunk, S, s->D}, csh[2] = {B, S};
    const struct omni_tensor *x = image;
    if (!omni_tensor_is_contiguous(image) || !omni_device_eq(image->device, s->base.device)) {
        if ((rc = omni_tensor_copy_to(&xin, image, s->base.device, err)))
            goto done;
        x = &xin;
    }
    if ((rc = ws_alloc(&ws, chunk, m, coder_maxwidth(c), s->base.device, err)) ||
        (rc = omni_tensor_alloc(&zt, OMNI_DTYPE_F32, 3, zsh, s->base.device, err)) ||
        (rc = omni_tensor_alloc(codes, OMNI_DTYPE_I32, 2, csh, s->base.device, err)))
        goto done;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        ws.B = B - b0 < chunk ? B - b0 : chunk;
        struct omni_tensor xv = rows(x, b0, ws.B), cv = rows(codes, b0, ws.B);
        if ((rc = encode_pass(s, &ws, &zt, &xv, &cv, err)))
            break;
    }
done:
    if (rc)
        omni_tensor_release(codes);
    omni_tensor_release(&zt);
    omni_tensor_release(&xin);
    ws_free(&ws);
    return rc;
}

static int check_codes(struct vq_stage *s, const struct omni_tensor *codes, struct omni_error *err)
{
    const char *sn = s->base.name ? s->base.name : "vq";
    const int64_t N = s->grid * s->grid;
    char a[96];
    int rc = omni_check_tensor(&s->base, "codes", codes,
                               OMNI_DTYPE_BIT(OMNI_DTYPE_I32) | OMNI_DTYPE_BIT(OMNI_DTYPE_I64), 2,
                               NULL, err);
    if (rc)
        return rc;
    if (codes->shape[0] < 1 || codes->shape[1] != N)
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': port 'codes' has shape %s, expected [B,%lld] with B >= 1 "
                              "(grid %lld)",
                              sn, omni_shape_str(codes->ndim, codes->shape, a, sizeof a),
                              (long long)N, (long long)s->grid);
    struct omni_tensor hc = {0}; /* codes on a device: checked on a host copy */
    if (codes->device.type != OMNI_DEVICE_CPU) {
        if ((rc = omni_tensor_copy_to(&hc, codes, OMNI_CPU, err)))
            return rc;
        codes = &hc;
    }
    rc = OMNI_OK;
    const char *base = (const char *)omni_buffer_data(codes->buf) + codes->offset;
    const size_t es = omni_dtype_size(codes->dtype);
    for (int64_t b = 0; b < codes->shape[0]; b++)
        for (int64_t k = 0; k < N; k++) {
            const char *p = base + (size_t)(b * codes->strides[0] + k * codes->strides[1]) * es;
            int64_t v;
            if (codes->dtype == OMNI_DTYPE_I32) {
                int32_t v32;
                memcpy(&v32, p, 4);
                v = v32;
            } else {
                memcpy(&v, p, 8);
            }
            if (v < 0 || v >= s->V) {
                rc = omni_error_set(err, OMNI_ERANGE,
                                    "stage '%s': code %lld at codes[%lld, %lld] (row %lld, "
                                    "position %lld) is outside the codebook [0, %lld)",
                                    sn, (long long)v, (long long)b, (long long)k, (long long)b,
                                    (long long)k, (long long)s->V);
                goto out;
            }
        }
out:
    omni_tensor_release(&hc);
    return rc;
}

static int check_image(struct vq_stage *s, const struct omni_tensor *img, struct omni_error *err)
{
    const char *sn = s->base.name ? s->base.name : "vq";
    const int64_t side = s->grid << (s->enc.L - 1);
    char a[96];
    int rc = omni_check_tensor(&s->base, "image", img, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 4, NULL, err);
    if (rc)
        return rc;
    if (img->shape[0] < 1 || img->shape[1] != 3 || img->shape[2] != side || img->shape[3] != side)
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': port 'image' has shape %s, expected [B,3,%lld,%lld] with "
                              "B >= 1 (grid %lld x downsampling %d)",
                              sn, omni_shape_str(img->ndim, img->shape, a, sizeof a),
                              (long long)side, (long long)side, (long long)s->grid,
                              1 << (s->enc.L - 1));
    return OMNI_OK; /* encode() brings it to the stage's device */
}

static int vq_forward(struct omni_stage *st, void *state, struct omni_io *io,
                      struct omni_error *err)
{
    struct vq_stage *s = (struct vq_stage *)st;
    const char *sn = s->base.name ? s->base.name : "vq";
    struct omni_tensor enc_codes = {0}, img = {0};
    int rc;
    (void)state;
    if (!s->loaded)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", sn);
    if (io->n_in < 2 || io->n_out < 2)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': expected 2 inputs and 2 outputs", sn);
    const struct omni_tensor *in_codes = io->in[0].buf ? &io->in[0] : NULL;
    const struct omni_tensor *in_image = io->in[1].buf ? &io->in[1] : NULL;
    if (s->mode == VQ_DECODE && !in_codes)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s' (mode decode): input 'codes' is not connected", sn);
    if (s->mode == VQ_ENCODE && !in_image)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s' (mode encode): input 'image' is not connected", sn);
    if (!in_codes && !in_image)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s' (mode both): neither 'codes' nor 'image' is connected", sn);
    if ((s->mode & VQ_ENCODE) && in_image) {
        if ((rc = check_image(s, in_image, err)) || (rc = encode(s, in_image, &enc_codes, err)))
            goto fail;
    }
    if (s->mode & VQ_DECODE) {
        const struct omni_tensor *codes = in_codes ? in_codes : &enc_codes;
        struct omni_tensor packed = {0};
        if ((rc = check_codes(s, codes, err)))
            goto fail;
        if (!omni_tensor_is_contiguous(codes) || !omni_device_eq(codes->device, s->base.device)) {
            if ((rc = omni_tensor_copy_to(&packed, codes, s->base.device, err)))
                goto fail;
            codes = &packed;
        }
        rc = decode(s, codes, &img, err);
        omni_tensor_release(&packed);
        if (rc)
            goto fail;
    }
    omni_tensor_release(&io->out[0]);
    omni_tensor_release(&io->out[1]);
    io->out[0] = img;
    io->out[1] = enc_codes;
    return OMNI_OK;
fail:
    omni_tensor_release(&img);
    omni_tensor_release(&enc_codes);
    return rc;
}

static const struct omni_port_desc vq_ports[] = {
    {"codes", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32) | OMNI_DTYPE_BIT(OMNI_DTYPE_I64), "B,N",
     OMNI_PORT_OPTIONAL | OMNI_PORT_HOST,
     "code indices in raster order (k = row * grid + col), N = grid^2 (decode, both)"},
    {"image", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,3,H,W", OMNI_PORT_OPTIONAL,
     "RGB in [-1, 1], H = W = grid * 2^(levels-1) (encode, both)"},
    {"image", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,3,H,W", 0,
     "decoder output, nominally [-1, 1], not clamped (decode, both)"},
    {"codes", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,N", OMNI_PORT_HOST,
     "nearest codebook entries of the encoded image (encode, both)"},
};

static const struct omni_stage_ops vq_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = vq_create,
    .destroy = vq_destroy,
    .forward = vq_forward,
    .load = vq_load,
};

static const struct omni_plugin_desc vq_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "vq",
    .version = "0.1.0",
    .description = "LlamaGen VQ image tokenizer (VQ-16): codes -> image decoder, image -> codes "
                   "encoder + quantiser",
    .ops = &vq_ops,
    .ports = vq_ports,
    .n_ports = OMNI_ARRAY_LEN(vq_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc =
        "mode: decode (default), encode, or both (encode 'image' if given, decode 'codes' if "
        "given else the encoded codes)\n"
        "grid: codes per side (default 16: 256 codes, 256x256 pixels)\n"
        "codebook_size, codebook_dim: checked against quantize.embedding.weight (default: read "
        "from it; VQ-16 16384, 8)\n"
        "z_channels: width of post_quant_conv / quant_conv (default: from the weights; VQ-16 256)\n"
        "ch, ch_mult: level widths ch * ch_mult[i] (default: from the weights; VQ-16 128, "
        "[1, 1, 2, 2, 4])\n"
        "num_res_blocks: ResnetBlocks per encoder level, decoder +1 (default: from the weights; "
        "VQ-16 2)\n"
        "attn_resolutions: feature-map sides (at this grid) of the levels with attention "
        "(default: the levels whose attn.0 weights exist; VQ-16 the 16x16 level)\n"
        "norm_groups: GroupNorm groups (default 32)\n"
        "pass_images: images per pass through the network (default 0: as many as fit in "
        "256 MiB of activations on the CPU, 1 GiB on a GPU, at least 1, passes balanced; VQ-16 at 256x256: 2 "
        "on the CPU, 16 on a GPU)\n",
};

OMNI_PLUGIN_DEFINE(vq_desc)
