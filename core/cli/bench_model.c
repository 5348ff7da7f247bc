/* core/cli/bench_model.c - synthetic full-size OmniMamba weights and the
 * harness chains of the t2i and mmu pipelines (see bench_model.h).
 *
 * Values: every tensor is drawn from a counter-based generator seeded by
 * (seed, key), so a file depends only on the seed; stored as bf16. Scales keep
 * activations finite through 48 layers: linears U(+-sqrt(3/K)) (out_proj and
 * the LoRA B factors smaller), norms U(0.9, 1.1), A = -exp(A_log) in
 * [-16, -1], dt = softplus(dt_bias) in [1e-3, 0.1], embeddings U(+-0.05).
 * Timing does not depend on the values. */
#include "bench_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define D_MODEL 2048
#define N_LAYER 48
#define D_INNER 4096
#define N_HEADS 64
#define D_STATE 128
#define D_CONV 4
#define D_INPROJ (2 * D_INNER + 2 * D_STATE + N_HEADS) /* 8512 */
#define CONV_DIM (D_INNER + 2 * D_STATE)               /* 4352 */
#define IMG_VOCAB 16384

enum init { UNI, NORM1, ALOG, DTBIAS, ONE_ISH };

struct spec_list {
    size_t n, cap;
    char **names;
    struct omni_tensor *t;
};

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = mix64(h ^ (unsigned char)*s);
    return h;
}

static void list_free(struct spec_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->names[i]);
        omni_tensor_release(&l->t[i]);
    }
    free(l->names);
    free(l->t);
    memset(l, 0, sizeof *l);
}

/* Append a bf16 tensor `name` of `shape` filled per `init` with scale a. */
static int add(struct spec_list *l, uint64_t seed, const char *name, enum init init, float a,
               int ndim, const int64_t *shape, struct omni_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        char **nn = realloc(l->names, cap * sizeof *nn);
        if (!nn)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        l->names = nn;
        struct omni_tensor *nt = realloc(l->t, cap * sizeof *nt);
        if (!nt)
            return omni_error_set(err, OMNI_ENOMEM, "out of memory");
        l->t = nt;
        l->cap = cap;
    }
    struct omni_tensor *t = &l->t[l->n];
    int rc = omni_tensor_alloc(t, OMNI_DTYPE_BF16, ndim, shape, OMNI_CPU, err);
    if (rc)
        return rc;
    if (!(l->names[l->n] = strdup(name))) {
        omni_tensor_release(t);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    l->n++;
    uint16_t *p = omni_tensor_data(t);
    const int64_t n = omni_tensor_numel(t);
    uint64_t s = hash_str(mix64(seed), name), r = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((i & 3) == 0)
            r = mix64(s + (uint64_t)i);
        const float u = (float)((r >> (16 * (i & 3))) & 0xffff) * (1.0f / 65536.0f) + (0.5f / 65536.0f);
        float v;
        switch (init) {
        case UNI: v = a * (2.0f * u - 1.0f); break;
        case ONE_ISH: v = 1.0f + a * (2.0f * u - 1.0f); break;
        case ALOG: v = logf(1.0f + 15.0f * u); break;                /* A in [-16, -1] */
        case DTBIAS: {                                                  /* dt in [1e-3, 0.1] */
            const float dt = expf(logf(1e-3f) + u * (logf(0.1f) - logf(1e-3f)));
            v = logf(expm1f(dt));
            break;
        }
        default: v = a; break;
        }
        p[i] = omni_f32_to_bf16(v);
    }
    return OMNI_OK;
}

#define ADD(name, init, a, ...)                                                                    \
    do {                                                                                           \
        const int64_t sh_[] = {__VA_ARGS__};                                                       \
        if ((rc = add(&l, seed, name, init, a, (int)(sizeof sh_ / sizeof sh_[0]), sh_, err)))      \
            goto fail;                                                                             \
    } while (0)

static float lin(int64_t K) { return sqrtf(3.0f / (float)K); }

static int make_lm(const char *path, uint64_t seed, struct omni_error *err)
{
    struct spec_list l = {0};
    char k[256];
    int rc;
    const char *bb = "llm_backbone.mamba.backbone.";
    for (int i = 0; i < N_LAYER; i++) {
#define K(fmt) (snprintf(k, sizeof k, "%slayers.%d." fmt, bb, i), k)
        ADD(K("norm.weight"), ONE_ISH, 0.1f, D_MODEL);
        ADD(K("mixer.dt_bias"), DTBIAS, 0, N_HEADS);
        ADD(K("mixer.A_log"), ALOG, 0, N_HEADS);
        ADD(K("mixer.D"), ONE_ISH, 0.5f, N_HEADS);
        ADD(K("mixer.in_proj.weight"), UNI, lin(D_MODEL), D_INPROJ, D_MODEL);
        ADD(K("mixer.in_proj.t2i_lora_A0.weight"), UNI, lin(D_MODEL), 8, D_MODEL);
        ADD(K("mixer.in_proj.t2i_lora_B0.weight"), UNI, 0.01f, D_INPROJ, 8);
        ADD(K("mixer.in_proj.mmu_lora_A0.weight"), UNI, lin(D_MODEL), 8, D_MODEL);
        ADD(K("mixer.in_proj.mmu_lora_B0.weight"), UNI, 0.01f, D_INPROJ, 8);
        ADD(K("mixer.conv1d.weight"), UNI, 0.5f, CONV_DIM, 1, D_CONV);
        ADD(K("mixer.conv1d.bias"), UNI, 0.1f, CONV_DIM);
        ADD(K("mixer.norm.weight"), ONE_ISH, 0.1f, D_INNER);
        ADD(K("mixer.out_proj.weight"), UNI, lin(D_INNER) * 0.25f, D_MODEL, D_INNER);
#undef K
    }
#define KB(name) (snprintf(k, sizeof k, "%s%s", bb, name), k)
    ADD(KB("embedding.weight"), UNI, 0.05f, OMB_VOCAB, D_MODEL);
    ADD(KB("norm_f.weight"), ONE_ISH, 0.1f, D_MODEL);
    ADD(KB("img_embeddings.word_embeddings.weight"), UNI, 0.05f, IMG_VOCAB, D_MODEL);
    ADD(KB("img_embeddings.project_in.projector.0.weight"), UNI, lin(D_MODEL), 4 * D_MODEL, D_MODEL);
    ADD(KB("img_embeddings.project_in.projector.0.bias"), UNI, 0.01f, 4 * D_MODEL);
    ADD(KB("img_embeddings.project_in.projector.2.weight"), UNI, lin(4 * D_MODEL), D_MODEL, 4 * D_MODEL);
    ADD(KB("img_embeddings.project_in.projector.2.bias"), UNI, 0.01f, D_MODEL);
    ADD(KB("img_embeddings.project_in.projector.4.weight"), UNI, lin(D_MODEL), D_MODEL, D_MODEL);
    ADD(KB("img_embeddings.project_in.projector.4.bias"), UNI, 0.01f, D_MODEL);
    ADD(KB("pos_embed"), UNI, 0.02f, 1, OMB_T2I_PREFIX + OMB_T2I_CODES + 1, D_MODEL);
    ADD(KB("mmu_pos_embed"), UNI, 0.02f, 1, 1500, D_MODEL);
    ADD(KB("caption_embed.cap_proj.fc1.weight"), UNI, lin(D_MODEL), D_MODEL, D_MODEL);
    ADD(KB("caption_embed.cap_proj.fc2.weight"), UNI, lin(D_MODEL), D_MODEL, D_MODEL);
#undef KB
    /* FusedMLPProjector: 2176 (1024 DINO + 1152 SigLIP) -> 8704 -> 2048 -> 2048 */
    ADD("projector.projector.0.weight", UNI, lin(2176), 8704, 2176);
    ADD("projector.projector.0.bias", UNI, 0.01f, 8704);
    ADD("projector.projector.2.weight", UNI, lin(8704), D_MODEL, 8704);
    ADD("projector.projector.2.bias", UNI, 0.01f, D_MODEL);
    ADD("projector.projector.4.weight", UNI, lin(D_MODEL), D_MODEL, D_MODEL);
    ADD("projector.projector.4.bias", UNI, 0.01f, D_MODEL);
    rc = omni_safetensors_write(path, l.n, (const char *const *)l.names, l.t, err);
fail:
    list_free(&l);
    return rc;
}

/* LlamaGen VQ-16 decoder (ch 128, ch_mult 1,1,2,2,4, 2+1 res blocks per
 * level, attention at 16x16, z 256, codebook 16384 x 8), keys under "model.". */
static int add_norm(struct spec_list *lp, uint64_t seed, const char *stem, int64_t C,
                    struct omni_error *err)
{
    char k[256];
    int rc;
    struct spec_list l = *lp;
    snprintf(k, sizeof k, "%s.weight", stem);
    ADD(k, ONE_ISH, 0.1f, C);
    snprintf(k, sizeof k, "%s.bias", stem);
    ADD(k, UNI, 0.05f, C);
fail:
    *lp = l;
    return rc;
}

static int add_conv(struct spec_list *lp, uint64_t seed, const char *stem, int64_t cout,
                    int64_t cin, int64_t ks, float gain, struct omni_error *err)
{
    char k[256];
    int rc;
    struct spec_list l = *lp;
    snprintf(k, sizeof k, "%s.weight", stem);
    ADD(k, UNI, gain * lin(cin * ks * ks), cout, cin, ks, ks);
    snprintf(k, sizeof k, "%s.bias", stem);
    ADD(k, UNI, 0.02f, cout);
fail:
    *lp = l;
    return rc;
}

static int add_res(struct spec_list *l, uint64_t seed, const char *stem, int64_t cin, int64_t cout,
                   struct omni_error *err)
{
    char k[256];
    int rc;
#define SUB(s) (snprintf(k, sizeof k, "%s.%s", stem, s), k)
    if ((rc = add_norm(l, seed, SUB("norm1"), cin, err)) ||
        (rc = add_conv(l, seed, SUB("conv1"), cout, cin, 3, 1.0f, err)) ||
        (rc = add_norm(l, seed, SUB("norm2"), cout, err)) ||
        (rc = add_conv(l, seed, SUB("conv2"), cout, cout, 3, 0.5f, err)))
        return rc;
    if (cin != cout && (rc = add_conv(l, seed, SUB("nin_shortcut"), cout, cin, 1, 1.0f, err)))
        return rc;
    return OMNI_OK;
#undef SUB
}

static int add_attn(struct spec_list *l, uint64_t seed, const char *stem, int64_t C,
                    struct omni_error *err)
{
    char k[256];
    int rc;
    static const char *const n[4] = {"q", "k", "v", "proj_out"};
    snprintf(k, sizeof k, "%s.norm", stem);
    if ((rc = add_norm(l, seed, k, C, err)))
        return rc;
    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof k, "%s.%s", stem, n[i]);
        if ((rc = add_conv(l, seed, k, C, C, 1, 0.5f, err)))
            return rc;
    }
    return OMNI_OK;
}

static int make_vq(const char *path, uint64_t seed, struct omni_error *err)
{
    struct spec_list l = {0};
    char k[256];
    int rc;
    static const int64_t C[5] = {512, 256, 256, 128, 128}; /* decoder levels, 16x16 first */
    ADD("model.quantize.embedding.weight", UNI, 1.0f, IMG_VOCAB, 8);
    if ((rc = add_conv(&l, seed, "model.post_quant_conv", 256, 8, 1, 1.0f, err)) ||
        (rc = add_conv(&l, seed, "model.decoder.conv_in", 512, 256, 3, 1.0f, err)) ||
        (rc = add_res(&l, seed, "model.decoder.mid.0", 512, 512, err)) ||
        (rc = add_attn(&l, seed, "model.decoder.mid.1", 512, err)) ||
        (rc = add_res(&l, seed, "model.decoder.mid.2", 512, 512, err)))
        goto fail;
    int64_t cin = 512;
    for (int j = 0; j < 5; j++) {
        for (int r = 0; r < 3; r++) {
            snprintf(k, sizeof k, "model.decoder.conv_blocks.%d.res.%d", j, r);
            if ((rc = add_res(&l, seed, k, cin, C[j], err)))
                goto fail;
            cin = C[j];
            if (j == 0) {
                snprintf(k, sizeof k, "model.decoder.conv_blocks.%d.attn.%d", j, r);
                if ((rc = add_attn(&l, seed, k, C[j], err)))
                    goto fail;
            }
        }
        if (j < 4) {
            snprintf(k, sizeof k, "model.decoder.conv_blocks.%d.upsample.conv", j);
            if ((rc = add_conv(&l, seed, k, C[j], C[j], 3, 1.0f, err)))
                goto fail;
        }
    }
    if ((rc = add_norm(&l, seed, "model.decoder.norm_out", 128, err)) ||
        (rc = add_conv(&l, seed, "model.decoder.conv_out", 3, 128, 3, 1.0f, err)))
        goto fail;
    rc = omni_safetensors_write(path, l.n, (const char *const *)l.names, l.t, err);
fail:
    list_free(&l);
    return rc;
}

/* timm ViT blocks 0..nb-1 of width D, mlp M, under `pre`. */
static int make_vit(const char *path, uint64_t seed, const char *pre, int64_t D, int64_t M, int nb,
                    int dino, struct omni_error *err)
{
    struct spec_list l = {0};
    char k[256];
    int rc;
#define KP(fmt, ...) (snprintf(k, sizeof k, "%s" fmt, pre, __VA_ARGS__), k)
    ADD(KP("%s", "patch_embed.proj.weight"), UNI, lin(3 * 14 * 14), D, 3, 14, 14);
    ADD(KP("%s", "patch_embed.proj.bias"), UNI, 0.02f, D);
    ADD(KP("%s", "pos_embed"), UNI, 0.02f, 1, 27 * 27, D);
    if (dino) {
        ADD(KP("%s", "cls_token"), UNI, 0.02f, 1, 1, D);
        ADD(KP("%s", "reg_token"), UNI, 0.02f, 1, 4, D);
    }
    for (int j = 0; j < nb; j++) {
        ADD(KP("blocks.%d.norm1.weight", j), ONE_ISH, 0.1f, D);
        ADD(KP("blocks.%d.norm1.bias", j), UNI, 0.02f, D);
        ADD(KP("blocks.%d.attn.qkv.weight", j), UNI, lin(D), 3 * D, D);
        ADD(KP("blocks.%d.attn.qkv.bias", j), UNI, 0.02f, 3 * D);
        ADD(KP("blocks.%d.attn.proj.weight", j), UNI, lin(D), D, D);
        ADD(KP("blocks.%d.attn.proj.bias", j), UNI, 0.02f, D);
        ADD(KP("blocks.%d.norm2.weight", j), ONE_ISH, 0.1f, D);
        ADD(KP("blocks.%d.norm2.bias", j), UNI, 0.02f, D);
        ADD(KP("blocks.%d.mlp.fc1.weight", j), UNI, lin(D), M, D);
        ADD(KP("blocks.%d.mlp.fc1.bias", j), UNI, 0.02f, M);
        ADD(KP("blocks.%d.mlp.fc2.weight", j), UNI, lin(M), D, M);
        ADD(KP("blocks.%d.mlp.fc2.bias", j), UNI, 0.02f, D);
        if (dino) {
            ADD(KP("blocks.%d.ls1.gamma", j), UNI, 0.1f, D);
            ADD(KP("blocks.%d.ls2.gamma", j), UNI, 0.1f, D);
        }
    }
#undef KP
    rc = omni_safetensors_write(path, l.n, (const char *const *)l.names, l.t, err);
fail:
    list_free(&l);
    return rc;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && st.st_size > 0;
}

/* write to path.tmp, then rename: a killed run leaves no half file behind */
static int make(const char *path, int (*fn)(const char *, uint64_t, struct omni_error *),
                uint64_t seed, struct omni_error *err)
{
    char tmp[1100];
    if (exists(path))
        return OMNI_OK;
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    OMNI_LOG(OMNI_LOG_INFO, "bench: writing synthetic weights %s", path);
    int rc = fn(tmp, seed, err);
    if (!rc && rename(tmp, path) != 0)
        rc = omni_error_set(err, OMNI_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

static int make_dino(const char *p, uint64_t seed, struct omni_error *err)
{
    return make_vit(p, seed, "", 1024, 4096, 23, 1, err); /* feature block 22 of 24 */
}

static int make_siglip(const char *p, uint64_t seed, struct omni_error *err)
{
    return make_vit(p, seed, "visual.trunk.", 1152, 4304, 26, 0, err); /* feature block 25 of 27 */
}

int omb_weights(const char *dir, uint64_t seed, int which, struct omb_paths *p,
                struct omni_error *err)
{
    int rc;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return omni_error_set(err, OMNI_EIO, "cannot create %s: %s", dir, strerror(errno));
    p->bb_params[0] = '\0';
    snprintf(p->lm, sizeof p->lm, "%s/omnimamba-1.3b-random-%llx.safetensors", dir, (unsigned long long)seed);
    snprintf(p->vq, sizeof p->vq, "%s/vq16-random-%llx.safetensors", dir, (unsigned long long)seed);
    snprintf(p->dino, sizeof p->dino, "%s/dinov2-l14-reg4-random-%llx.safetensors", dir, (unsigned long long)seed);
    snprintf(p->siglip, sizeof p->siglip, "%s/siglip-so400m-random-%llx.safetensors", dir, (unsigned long long)seed);
    if ((which & OMB_LM) && (rc = make(p->lm, make_lm, seed, err)))
        return rc;
    if ((which & OMB_VQ) && (rc = make(p->vq, make_vq, seed, err)))
        return rc;
    if ((which & OMB_VISION) && ((rc = make(p->dino, make_dino, seed, err)) ||
                                 (rc = make(p->siglip, make_siglip, seed, err))))
        return rc;
    return OMNI_OK;
}

/* ---- chains ------------------------------------------------------------------------- */

static int stage(struct omni_harness **h, const char *type, const char *params, const char *device,
                 const char *dtype, const char *weights, const char *prefix, struct omni_error *err)
{
    int rc = omni_harness_new_full(h, type, params, device, dtype, err);
    if (!rc && weights)
        rc = omni_harness_load_weights(*h, weights, prefix, err);
    if (rc)
        omni_error_prefix(err, "%s (%s): ", type, weights ? weights : "no weights");
    return rc;
}

/* the backbone's params: no text table (the chains feed embeddings) + p->bb_params */
static void bb_params(char *out, size_t n, const struct omb_paths *p)
{
    snprintf(out, n, "embedding: false\n%s", p->bb_params);
}

int omb_t2i_open(struct omb_t2i *m, const struct omb_paths *p, const char *device,
                 const char *dtype, int with_vq, struct omni_error *err)
{
    const char *bb = "llm_backbone.mamba.backbone.";
    char bbp[320];
    int rc;
    bb_params(bbp, sizeof bbp, p);
    memset(m, 0, sizeof *m);
    if ((rc = stage(&m->prefix, "t2i_prefix", NULL, device, dtype, p->lm, bb, err)) ||
        (rc = stage(&m->bb, "mamba2", bbp, device, dtype, p->lm, bb, err)) ||
        (rc = stage(&m->lora, "lora", "task: t2i", device, NULL, p->lm, bb, err)) ||
        (rc = omni_harness_attach(m->bb, "in_proj", m->lora, err)) ||
        (rc = stage(&m->head, "text_head",
                    "weight: img_head.weight\nfallback: backbone.img_embeddings.word_embeddings.weight",
                    device, dtype, p->lm, "llm_backbone.mamba.", err)) ||
        (rc = stage(&m->smp, "sampler", "top_k: 1", device, NULL, NULL, NULL, err)) ||
        (rc = stage(&m->embed, "token_embed",
                    "table: img_embeddings.word_embeddings.weight\npos_table: pos_embed\n"
                    "mlp: [img_embeddings.project_in.projector.0, img_embeddings.project_in.projector.2, "
                    "img_embeddings.project_in.projector.4]",
                    device, dtype, p->lm, bb, err)) ||
        (with_vq && (rc = stage(&m->vq, "vq", NULL, device, dtype, p->vq, "model.", err)))) {
        omb_t2i_close(m);
        return rc;
    }
    omni_harness_set_task(m->bb, "t2i");
    return OMNI_OK;
}

int omb_vq_open(struct omni_harness **vq, const struct omb_paths *p, const char *device,
                const char *dtype, struct omni_error *err)
{
    *vq = NULL;
    return stage(vq, "vq", NULL, device, dtype, p->vq, "model.", err);
}

void omb_t2i_close(struct omb_t2i *m)
{
    /* the backbone first: it points at the adapter */
    omni_harness_free(m->bb);
    omni_harness_free(m->lora);
    omni_harness_free(m->prefix);
    omni_harness_free(m->head);
    omni_harness_free(m->smp);
    omni_harness_free(m->embed);
    omni_harness_free(m->vq);
    memset(m, 0, sizeof *m);
}

int omb_mmu_open(struct omb_mmu *m, const struct omb_paths *p, const char *device,
                 const char *dtype, int with_vision, struct omni_error *err)
{
    const char *bb = "llm_backbone.mamba.backbone.";
    char bbp[320];
    int rc;
    bb_params(bbp, sizeof bbp, p);
    memset(m, 0, sizeof *m);
    if ((with_vision &&
         ((rc = stage(&m->dino, "vit", "variant: dinov2_reg4_l14\nimage_size: 384", device, dtype,
                      p->dino, "", err)) ||
          (rc = stage(&m->siglip, "vit", "variant: siglip_so400m_14_384\nimage_size: 384", device,
                      dtype, p->siglip, "visual.trunk.", err)) ||
          (rc = stage(&m->proj, "projector", NULL, device, dtype, p->lm, "projector.", err)))) ||
        (rc = stage(&m->assemble, "mmu_assemble", NULL, device, dtype, p->lm, bb, err)) ||
        (rc = stage(&m->bb, "mamba2", bbp, device, dtype, p->lm, bb, err)) ||
        (rc = stage(&m->lora, "lora", "task: mmu", device, NULL, p->lm, bb, err)) ||
        (rc = omni_harness_attach(m->bb, "in_proj", m->lora, err)) ||
        (rc = stage(&m->head, "text_head",
                    "weight: lm_head.weight\nfallback: backbone.embedding.weight", device, dtype,
                    p->lm, "llm_backbone.mamba.", err)) ||
        (rc = stage(&m->smp, "sampler", "top_k: 1", device, NULL, NULL, NULL, err)) ||
        (rc = stage(&m->embed, "token_embed", "table: embedding.weight\npos_table: mmu_pos_embed",
                    device, dtype, p->lm, bb, err))) {
        omb_mmu_close(m);
        return rc;
    }
    omni_harness_set_task(m->bb, "mmu");
    return OMNI_OK;
}

void omb_mmu_close(struct omb_mmu *m)
{
    omni_harness_free(m->bb);
    omni_harness_free(m->lora);
    omni_harness_free(m->dino);
    omni_harness_free(m->siglip);
    omni_harness_free(m->proj);
    omni_harness_free(m->assemble);
    omni_harness_free(m->head);
    omni_harness_free(m->smp);
    omni_harness_free(m->embed);
    memset(m, 0, sizeof *m);
}
