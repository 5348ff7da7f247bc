/* plugins/mamba2/mamba2.c - the Mamba-2 language-model stack as a stage.
 *
 * Computes (spec/mamba2.md §1-§4):
 *   r = embedding(ids) or embeds                          r: (B,T,D) f32
 *   for layer i: r += m_{i-1} (none for i = 0); n = RMSNorm(r) (eps 1e-5)
 *                m_i = Mixer_i(n)                         (§1 prefill, §3 step)
 *   hidden = RMSNorm(r + m_last; norm_f)                  last position or all
 * The mixer: zxbcdt = in_proj(n) (+ attached adapter terms); split z | xBC |
 * dt; xBC -> causal conv1d + SiLU (history from conv_state); x, B, C views;
 * SSD scan from ssm_state; y = gated RMSNorm(y, z) (gate first); out_proj.
 *
 * All math goes through omni_op_*; this file only owns weights, states,
 * scratch and tensor views. Residual, activations and states are f32; the
 * stage dtype selects the storage of in_proj, out_proj and the embedding.
 *
 * Per request: conv_state (L, B, Cd, K) and ssm_state (L, B, H, P, N) f32,
 * layer-major so that each layer's slice is the contiguous (B, ...) tensor
 * the conv and SSD ops require; plus scratch sized for B*T rows, grown only
 * when a call needs more rows, so a decode step allocates nothing.
 *
 * forward(): a prefill of T >= 1 tokens. At ctx->position == 0 both states
 * are zeroed first; at position > 0 the call continues from the states
 * (chunked prefill), which gives the same result as one long prefill.
 * step(): one token per row (T == 1). With at most 16 rows, ngroups 1 (the
 * gated norm over all of d_inner), d_state <= 256, headdim % 8 == 0, at most
 * one adapter that exposes its low-rank factors, and (on CUDA) bf16 weights,
 * a layer is the four fused ops of omni/ops/decode.h: add+RMSNorm (+ the LoRA
 * x·Aᵀ), in_proj GEMV (+ LoRA ·Bᵀ, + conv1d step), SSD step + gate, out_proj
 * GEMV with the gated norm's rstd; the residual alternates between two
 * buffers. Otherwise (and for every prefill) the op-by-op path below.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba2.h"
#include "omni/ops/decode.h"
#include "omni/ops/fill.h"

/* ---- small helpers ----------------------------------------------------- */

static char *m2_strdup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s ? s : "", n);
    return d;
}

/* A borrowed strided view (no reference taken: never release it). */
void m2_view(struct omni_tensor *v, const struct omni_tensor *base, int64_t elem_off,
                    int ndim, const int64_t *shape, const int64_t *strides)
{
    memset(v, 0, sizeof *v);
    v->dtype = base->dtype;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->strides[i] = strides[i];
    }
    v->offset = base->offset + elem_off * (int64_t)omni_dtype_size(base->dtype);
    v->device = base->device;
    v->buf = base->buf;
}

/* A borrowed contiguous f32 view of the first rows of a scratch buffer. */
void m2_buf_view(struct omni_tensor *v, struct omni_buffer *buf, struct omni_device dev,
                        int ndim, const int64_t *shape)
{
    memset(v, 0, sizeof *v);
    v->dtype = OMNI_DTYPE_F32;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v->shape[i] = shape[i];
    omni_tensor_set_contiguous(v);
    v->device = dev;
    v->buf = buf;
}

static const char *m2_shape(const int64_t *shape, int ndim, char *buf, size_t n)
{
    return omni_shape_str(ndim, shape, buf, n);
}

/* ---- create / destroy ------------------------------------------------------ */

static const char *const m2_int_params[] = {"d_model", "n_layer", "d_state", "headdim",
                                            "expand",  "ngroups", "d_conv",  "vocab"};

static int64_t *m2_dim_slot(struct m2_dims *d, const char *key)
{
    if (!strcmp(key, "d_model")) return &d->d_model;
    if (!strcmp(key, "n_layer")) return &d->n_layer;
    if (!strcmp(key, "d_state")) return &d->d_state;
    if (!strcmp(key, "headdim")) return &d->headdim;
    if (!strcmp(key, "expand")) return &d->expand;
    if (!strcmp(key, "ngroups")) return &d->ngroups;
    if (!strcmp(key, "d_conv")) return &d->d_conv;
    if (!strcmp(key, "vocab")) return &d->vocab;
    return NULL;
}

static void m2_destroy(struct omni_stage *st);

static int m2_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                     struct omni_error *err)
{
    struct m2_stage *s = calloc(1, sizeof *s);
    int rc = OMNI_OK;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "mamba2: out of memory");
    s->name = m2_strdup(cfg->name ? cfg->name : "mamba2");
    if (!s->name) {
        rc = omni_error_set(err, OMNI_ENOMEM, "mamba2: out of memory");
        goto fail;
    }
    s->given = (struct m2_dims){-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    s->d_in_proj = s->conv_dim = -1;
    for (size_t i = 0; i < OMNI_ARRAY_LEN(m2_int_params); i++) {
        int64_t v;
        if (!omni_params_has(cfg->params, m2_int_params[i]))
            continue;
        rc = omni_params_int(cfg->params, m2_int_params[i], -1, &v, err);
        if (rc)
            goto fail;
        if (v <= 0) {
            rc = omni_error_set(err, OMNI_EINVAL, "param %s must be > 0, got %lld",
                                m2_int_params[i], (long long)v);
            goto fail;
        }
        *m2_dim_slot(&s->given, m2_int_params[i]) = v;
    }
    if ((rc = omni_params_int(cfg->params, "chunk_size", 256, &s->chunk, err)))
        goto fail;
    if (s->chunk < 0) {
        rc = omni_error_set(err, OMNI_EINVAL,
                            "param chunk_size must be >= 0 (0 = sequential scan), got %lld",
                            (long long)s->chunk);
        goto fail;
    }
    if ((rc = omni_params_float(cfg->params, "eps", 1e-5, &s->eps, err)))
        goto fail;
    if (!(s->eps > 0)) {
        rc = omni_error_set(err, OMNI_EINVAL, "param eps must be > 0, got %g", s->eps);
        goto fail;
    }
    if ((rc = omni_params_bool(cfg->params, "all_positions", 0, &s->all_positions, err)) ||
        (rc = omni_params_bool(cfg->params, "embedding", 1, &s->load_embedding, err)))
        goto fail;
    {
        const char *sd = omni_params_str(cfg->params, "state_dtype", "f32");
        s->sdtype = omni_dtype_parse(sd);
        if (s->sdtype != OMNI_DTYPE_F32 && s->sdtype != OMNI_DTYPE_F16 &&
            s->sdtype != OMNI_DTYPE_BF16) {
            rc = omni_error_set(err, OMNI_EINVAL,
                                "param state_dtype must be f32, f16 or bf16, got '%s'", sd);
            goto fail;
        }
    }
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    m2_destroy(&s->base);
    return rc;
}

static void m2_release_weights(struct m2_stage *s)
{
    if (s->layers) {
        for (int64_t i = 0; i < s->dim.n_layer; i++) {
            struct m2_layer *l = &s->layers[i];
            omni_tensor_release(&l->norm_w);
            omni_tensor_release(&l->in_proj);
            omni_tensor_release(&l->conv_w);
            omni_tensor_release(&l->conv_b);
            omni_tensor_release(&l->dt_bias);
            omni_tensor_release(&l->A);
            omni_tensor_release(&l->Dskip);
            omni_tensor_release(&l->gnorm_w);
            omni_tensor_release(&l->out_proj);
        }
        free(s->layers);
        s->layers = NULL;
    }
    omni_tensor_release(&s->embedding);
    omni_tensor_release(&s->norm_f);
    s->loaded = 0;
}

static void m2_destroy(struct omni_stage *st)
{
    struct m2_stage *s = (struct m2_stage *)st;
    if (!s)
        return;
    m2_release_weights(s);
    free(s->prefix);
    free(s->name);
    free(s);
}

/* ---- load ---------------------------------------------------------------------------- */

static int m2_info(struct m2_stage *s, const struct omni_weights_ref *w, const char *key,
                   int ndim, struct omni_weight_info *info, struct omni_error *err)
{
    char buf[64];
    int rc = omni_weights_info(w->file, w->prefix, key, info, err);
    if (rc)
        return rc;
    if (info->ndim != ndim)
        return omni_error_set(err, OMNI_ESHAPE,
                              "weight '%s%s' in %s has shape %s, expected %d dims",
                              s->prefix, key, omni_weights_path(w->file),
                              m2_shape(info->shape, info->ndim, buf, sizeof buf), ndim);
    return OMNI_OK;
}

/* A param given in YAML must agree with the value the weights imply. */
static int m2_cross_check(struct m2_stage *s, const char *param, int64_t given, int64_t inferred,
                          const char *key, const struct omni_weight_info *info,
                          struct omni_error *err)
{
    char buf[64];
    if (given < 0 || given == inferred)
        return OMNI_OK;
    if (!info)
        return omni_error_set(err, OMNI_ESHAPE,
                              "param %s=%lld disagrees with the weights (%s gives %lld)",
                              param, (long long)given, key, (long long)inferred);
    return omni_error_set(err, OMNI_ESHAPE,
                          "param %s=%lld disagrees with weight '%s%s' (shape %s gives "
                          "%s=%lld)",
                          param, (long long)given, s->prefix, key,
                          m2_shape(info->shape, info->ndim, buf, sizeof buf), param,
                          (long long)inferred);
}

static int m2_load_w(struct m2_stage *s, const struct omni_weights_ref *w, const char *key,
                     int dtype, int ndim, const int64_t *shape, struct omni_tensor *out,
                     struct omni_error *err)
{
    int rc = omni_stage_load_weight(&s->base, w, key, dtype, ndim, shape, out, err);
    if (rc)
        return rc;
    return OMNI_OK;
}

static int m2_layer_key(char *buf, size_t n, int64_t layer, const char *rest)
{
    int k = snprintf(buf, n, "layers.%lld.%s", (long long)layer, rest);
    return k > 0 && (size_t)k < n;
}

/* A = -exp(A_log), computed once at load on the host, then moved to the stage's device. */
static int m2_load_A(struct m2_stage *s, const struct omni_weights_ref *w, const char *key,
                     int64_t H, struct omni_tensor *out, struct omni_error *err)
{
    struct omni_tensor host = {0};
    int64_t shape[1] = {H};
    int rc = omni_weights_load(w->file, w->prefix, key, OMNI_DTYPE_F32, 1, shape, &host, err);
    if (rc)
        return rc;
    float *a = omni_tensor_data(&host);
    for (int64_t h = 0; h < H; h++)
        a[h] = -expf(a[h]);
    if (s->base.device.type == OMNI_DEVICE_CPU) {
        *out = host;
        return OMNI_OK;
    }
    rc = omni_tensor_copy_to(out, &host, s->base.device, err);
    omni_tensor_release(&host);
    return rc;
}

static int m2_load(struct omni_stage *st, const struct omni_weights_ref *w, struct omni_error *err)
{
    struct m2_stage *s = (struct m2_stage *)st;
    struct omni_weight_info in_i, out_i, alog_i, conv_i, emb_i;
    char key[M2_KEY_MAX];
    int rc;
    const char *prefix = w && w->prefix ? w->prefix : "";

    if (!w || !w->file)
        return omni_error_set(err, OMNI_EINVAL,
                              "mamba2 needs weights (set weights: and prefix:)");
    m2_release_weights(s);
    free(s->prefix);
    s->prefix = m2_strdup(prefix);
    if (!s->prefix)
        return omni_error_set(err, OMNI_ENOMEM, "mamba2: out of memory");

    /* n_layer: count consecutive layers.N. blocks */
    int64_t nl = 0;
    for (;;) {
        m2_layer_key(key, sizeof key, nl, "mixer.in_proj.weight");
        if (!omni_weights_has(w->file, prefix, key))
            break;
        nl++;
    }
    if (nl == 0)
        return omni_error_set(err, OMNI_ENOTFOUND,
                              "no '%slayers.0.mixer.in_proj.weight' in %s (is the "
                              "prefix '%s' right?)",
                              prefix, omni_weights_path(w->file), prefix);

    struct m2_dims d = {0};
    d.n_layer = nl;
    if ((rc = m2_info(s, w, "layers.0.mixer.in_proj.weight", 2, &in_i, err)) ||
        (rc = m2_info(s, w, "layers.0.mixer.out_proj.weight", 2, &out_i, err)) ||
        (rc = m2_info(s, w, "layers.0.mixer.A_log", 1, &alog_i, err)) ||
        (rc = m2_info(s, w, "layers.0.mixer.conv1d.weight", 3, &conv_i, err)))
        return rc;
    const int64_t F = in_i.shape[0];
    d.d_model = in_i.shape[1];
    d.d_inner = out_i.shape[1];
    d.nheads = alog_i.shape[0];
    d.ngroups = s->given.ngroups > 0 ? s->given.ngroups : 1;
    d.d_conv = conv_i.shape[2];
    if (d.nheads <= 0 || d.d_inner % d.nheads)
        return omni_error_set(err, OMNI_ESHAPE,
                              "d_inner %lld (from '%slayers.0.mixer.out_proj.weight') "
                              "is not a multiple of nheads %lld (from '%slayers.0.mixer.A_log')",
                              (long long)d.d_inner, prefix, (long long)d.nheads, prefix);
    d.headdim = d.d_inner / d.nheads;
    const int64_t gn2 = F - 2 * d.d_inner - d.nheads;
    if (gn2 <= 0 || gn2 % (2 * d.ngroups))
        return omni_error_set(err, OMNI_ESHAPE,
                              "in_proj rows %lld ('%slayers.0.mixer.in_proj.weight') "
                              "do not split as 2*d_inner(%lld) + 2*ngroups(%lld)*d_state + "
                              "nheads(%lld)",
                              (long long)F, prefix, (long long)d.d_inner,
                              (long long)d.ngroups, (long long)d.nheads);
    d.d_state = gn2 / (2 * d.ngroups);
    d.expand = d.d_inner % d.d_model ? -1 : d.d_inner / d.d_model;
    d.vocab = -1;
    if (omni_weights_has(w->file, prefix, "embedding.weight")) {
        if ((rc = m2_info(s, w, "embedding.weight", 2, &emb_i, err)))
            return rc;
        d.vocab = emb_i.shape[0];
    }
    if (d.nheads % d.ngroups)
        return omni_error_set(err, OMNI_ESHAPE,
                              "nheads %lld is not a multiple of ngroups %lld",
                              (long long)d.nheads, (long long)d.ngroups);

    if ((rc = m2_cross_check(s, "n_layer", s->given.n_layer, d.n_layer, "the layers.N. key count",
                             NULL, err)) ||
        (rc = m2_cross_check(s, "d_model", s->given.d_model, d.d_model,
                             "layers.0.mixer.in_proj.weight", &in_i, err)) ||
        (rc = m2_cross_check(s, "headdim", s->given.headdim, d.headdim,
                             "layers.0.mixer.A_log", &alog_i, err)) ||
        (rc = m2_cross_check(s, "d_state", s->given.d_state, d.d_state,
                             "layers.0.mixer.in_proj.weight", &in_i, err)) ||
        (rc = m2_cross_check(s, "expand", s->given.expand, d.expand,
                             "layers.0.mixer.out_proj.weight", &out_i, err)) ||
        (rc = m2_cross_check(s, "d_conv", s->given.d_conv, d.d_conv,
                             "layers.0.mixer.conv1d.weight", &conv_i, err)))
        return rc;
    if (s->given.vocab > 0) {
        if (d.vocab < 0)
            return omni_error_set(err, OMNI_ENOTFOUND,
                                  "param vocab=%lld given but '%sembedding.weight' is "
                                  "not in %s",
                                  (long long)s->given.vocab, prefix,
                                  omni_weights_path(w->file));
        if ((rc = m2_cross_check(s, "vocab", s->given.vocab, d.vocab, "embedding.weight", &emb_i,
                                 err)))
            return rc;
    }

    const int64_t D = d.d_model, E = d.d_inner, H = d.nheads, G = d.ngroups, N = d.d_state;
    const int64_t K = d.d_conv, Cd = E + 2 * G * N;
    s->dim = d;
    s->d_in_proj = F;
    s->conv_dim = Cd;

    s->layers = calloc((size_t)nl, sizeof *s->layers);
    if (!s->layers)
        return omni_error_set(err, OMNI_ENOMEM, "mamba2: out of memory");

    for (int64_t i = 0; i < nl; i++) {
        struct m2_layer *l = &s->layers[i];
        const int64_t sh_D[1] = {D}, sh_E[1] = {E}, sh_H[1] = {H}, sh_Cd[1] = {Cd};
        const int64_t sh_in[2] = {F, D}, sh_out[2] = {D, E}, sh_conv[3] = {Cd, 1, K};
        const int64_t sh_conv2[2] = {Cd, K};
#define M2_LOAD(rest, dt, nd, shp, dst)                                                 \
    do {                                                                                \
        m2_layer_key(key, sizeof key, i, rest);                                         \
        if ((rc = m2_load_w(s, w, key, dt, nd, shp, dst, err)))                         \
            goto fail;                                                                  \
    } while (0)
        M2_LOAD("norm.weight", OMNI_DTYPE_F32, 1, sh_D, &l->norm_w);
        M2_LOAD("mixer.in_proj.weight", s->wdtype, 2, sh_in, &l->in_proj);
        M2_LOAD("mixer.conv1d.weight", OMNI_DTYPE_F32, 3, sh_conv, &l->conv_w);
        M2_LOAD("mixer.conv1d.bias", OMNI_DTYPE_F32, 1, sh_Cd, &l->conv_b);
        M2_LOAD("mixer.dt_bias", OMNI_DTYPE_F32, 1, sh_H, &l->dt_bias);
        M2_LOAD("mixer.D", OMNI_DTYPE_F32, 1, sh_H, &l->Dskip);
        M2_LOAD("mixer.norm.weight", OMNI_DTYPE_F32, 1, sh_E, &l->gnorm_w);
        M2_LOAD("mixer.out_proj.weight", s->wdtype, 2, sh_out, &l->out_proj);
#undef M2_LOAD
        m2_layer_key(key, sizeof key, i, "mixer.A_log");
        if ((rc = m2_load_A(s, w, key, H, &l->A, err)))
            goto fail;
        if ((rc = omni_tensor_reshape(&l->conv_w, 2, sh_conv2, err)))
            goto fail;
    }
    {
        const int64_t sh_D[1] = {D};
        if ((rc = m2_load_w(s, w, "norm_f.weight", OMNI_DTYPE_F32, 1, sh_D, &s->norm_f, err)))
            goto fail;
        if (d.vocab > 0 && s->load_embedding) {
            const int64_t sh_emb[2] = {d.vocab, D};
            if ((rc = m2_load_w(s, w, "embedding.weight", s->wdtype, 2, sh_emb, &s->embedding,
                                err)))
                goto fail;
        }
    }
    s->loaded = 1;
    OMNI_LOG(OMNI_LOG_INFO,
             "mamba2 d_model=%lld n_layer=%lld d_inner=%lld nheads=%lld headdim=%lld "
             "d_state=%lld ngroups=%lld d_conv=%lld vocab=%lld weights %s",
             (long long)D, (long long)nl, (long long)E, (long long)H,
             (long long)d.headdim, (long long)N, (long long)G, (long long)K, (long long)d.vocab,
             omni_dtype_name(s->wdtype));
    return OMNI_OK;
fail:
    m2_release_weights(s);
    return rc;
}

/* ---- attach ----------------------------------------------------------------------------- */

static const char *m2_adapter_task(struct omni_stage *a)
{
    const char *t = a->plugin->adapter->task(a);
    return t ? t : "";
}

static int m2_attach(struct omni_stage *st, const char *target, struct omni_stage *adapter,
                     struct omni_error *err)
{
    struct m2_stage *s = (struct m2_stage *)st;
    if (!target || strcmp(target, "in_proj") != 0)
        return omni_error_set(err, OMNI_ENOTFOUND,
                              "stage '%s': no linear named '%s' to attach to (mamba2 offers: "
                              "in_proj)",
                              s->name, target ? target : "(null)");
    if (!adapter) {
        s->n_adapters = 0;
        return OMNI_OK;
    }
    if (!adapter->plugin || !adapter->plugin->adapter || !adapter->plugin->adapter->apply ||
        !adapter->plugin->adapter->task)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s': stage '%s' (type %s) is not an adapter; it cannot be "
                              "attached to %s.in_proj",
                              s->name, adapter->name ? adapter->name : "?",
                              adapter->plugin ? adapter->plugin->name : "?", s->name);
    for (int i = 0; i < s->n_adapters; i++)
        if (s->adapters[i] == adapter)
            return OMNI_OK;
    if (s->n_adapters >= M2_MAX_ADAPTERS)
        return omni_error_set(err, OMNI_ERANGE,
                              "stage '%s': too many adapters on in_proj (at most %d)", s->name,
                              M2_MAX_ADAPTERS);
    s->adapters[s->n_adapters++] = adapter;
    return OMNI_OK;
}

/* Pick the adapters for this call's task: those whose task equals ctx->task,
 * plus those serving every task (""). */
int m2_active_adapters(struct m2_stage *s, const struct omni_run_ctx *ctx, int is_step,
                              struct omni_stage **act, int *n_act, struct omni_error *err)
{
    const char *task = ctx && ctx->task ? ctx->task : "";
    int n = 0, n_specific = 0;
    for (int i = 0; i < s->n_adapters; i++) {
        const char *t = m2_adapter_task(s->adapters[i]);
        if (t[0] == '\0' || (task[0] && !strcmp(t, task)))
            act[n++] = s->adapters[i];
        if (t[0])
            n_specific++;
    }
    *n_act = n;
    if (n_specific == 0)
        return OMNI_OK;
    if (task[0] == '\0') {
        OMNI_LOG(is_step ? OMNI_LOG_DEBUG : OMNI_LOG_INFO, /* once per prefill, not per token */
                 "stage '%s': no task given; %d task adapter(s) on in_proj left out (base weights)",
                 s->name, n_specific);
        return OMNI_OK;
    }
    if (n == 0) {
        char list[256] = "";
        size_t used = 0;
        for (int i = 0; i < s->n_adapters; i++) {
            int k = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             m2_adapter_task(s->adapters[i]));
            if (k < 0 || (size_t)k >= sizeof list - used)
                break;
            used += (size_t)k;
        }
        return omni_error_set(err, OMNI_ENOTFOUND, "no adapter for task '%s' on %s.in_proj (attached: %s)",
                              task, s->name, list);
    }
    return OMNI_OK;
}

/* ---- state ------------------------------------------------------------------------------ */

static void m2_state_release(struct m2_state *x)
{
    omni_tensor_release(&x->conv);
    omni_tensor_release(&x->ssm);
    omni_tensor_release(&x->ssm32);
    for (int i = 0; i < SC_COUNT; i++) {
        if (x->scratch[i])
            omni_buffer_unref(x->scratch[i]);
        x->scratch[i] = NULL;
    }
    if (x->out)
        omni_buffer_unref(x->out);
    x->out = NULL;
    x->cap_rows = 0;
    x->out_cap = 0;
    x->batch = 0;
}

static void m2_state_free(struct omni_stage *st, void *state)
{
    struct m2_state *x = state;
    if (!x)
        return;
    m2_state_release(x);
    free(x);
}

/* A zero-filled contiguous tensor in memory that can be handed back while its address
 * stays (the request state, which a kept loop graph names). */
static int m2_reserved(struct omni_tensor *t, int dtype, int ndim, const int64_t *shape,
                       struct omni_device dev, struct omni_error *err)
{
    size_t bytes = omni_dtype_size(dtype);
    for (int i = 0; i < ndim; i++)
        bytes *= (size_t)shape[i];
    struct omni_buffer *b = omni_buffer_new_reserved(dev, bytes, err);
    if (!b)
        return err && err->status ? err->status : OMNI_ENOMEM;
    int rc = omni_tensor_view(t, b, 0, dtype, ndim, shape, err);
    omni_buffer_unref(b);
    return rc;
}

int m2_state_alloc(struct m2_stage *s, struct m2_state *x, int64_t B,
                          struct omni_error *err)
{
    const struct m2_dims *d = &s->dim;
    const int64_t sh_conv[4] = {d->n_layer, B, s->conv_dim, d->d_conv};
    const int64_t sh_ssm[5] = {d->n_layer, B, d->nheads, d->headdim, d->d_state};
    const struct omni_device dev = s->base.device;
    int rc = m2_reserved(&x->conv, OMNI_DTYPE_F32, 4, sh_conv, dev, err);
    if (!rc)
        rc = m2_reserved(&x->ssm, s->sdtype, 5, sh_ssm, dev, err);
    if (!rc && x->ssm32.buf && x->ssm32.shape[0] != B) /* another batch size */
        omni_tensor_release(&x->ssm32);
    if (!rc && s->sdtype != OMNI_DTYPE_F32 && !x->ssm32.buf)
        rc = m2_reserved(&x->ssm32, OMNI_DTYPE_F32, 4, sh_ssm + 1, dev, err);
    if (rc) {
        omni_tensor_release(&x->conv);
        omni_tensor_release(&x->ssm);
        omni_tensor_release(&x->ssm32);
        return omni_error_prefix(err, "stage '%s': request state for batch %lld: ", s->name,
                                 (long long)B);
    }
    x->batch = B;
    x->dirty = 0;
    x->parked = 0;
    return OMNI_OK;
}

/* The buffers of a state that a parked state hands back: the states, and the scratch
 * and output buffers large enough to be reserved (the others are no-ops). */
static int m2_parkable(struct m2_state *x, struct omni_buffer **b)
{
    int n = 0;
    b[n++] = x->conv.buf;
    b[n++] = x->ssm.buf;
    if (x->ssm32.buf)
        b[n++] = x->ssm32.buf;
    for (int i = 0; i < SC_COUNT; i++)
        if (x->scratch[i])
            b[n++] = x->scratch[i];
    if (x->out)
        b[n++] = x->out;
    return n;
}

/* Kept by the executor for a later request of a large batch: the state buffers (and the
 * large scratch) hand their memory back and keep their addresses (what the kept loop
 * graph names). */
static int m2_state_park(struct omni_stage *st, void *state, struct omni_error *err)
{
    (void)st;
    (void)err;
    struct m2_state *x = state;
    if (!x || x->parked || !x->conv.buf)
        return OMNI_OK;
    struct omni_buffer *b[3 + SC_COUNT + 1];
    const int n = m2_parkable(x, b);
    for (int i = 0; i < n; i++)
        omni_buffer_drop_pages(b[i]);
    x->parked = 1;
    x->dirty = 1; /* undefined contents once the memory is back */
    return OMNI_OK;
}

int m2_state_unpark(struct m2_stage *s, struct m2_state *x, int from_zero,
                    struct omni_error *err)
{
    if (!x->parked)
        return OMNI_OK;
    if (!from_zero)
        return omni_error_set(err, OMNI_ESTATE,
                              "stage '%s': the request state was parked for a new request: the "
                              "next call must be a prefill from position 0",
                              s->name);
    struct omni_buffer *b[3 + SC_COUNT + 1];
    const int n = m2_parkable(x, b);
    int rc = OMNI_OK;
    for (int i = 0; i < n && !rc; i++)
        rc = omni_buffer_restore_pages(b[i], err);
    if (rc)
        return omni_error_prefix(err, "stage '%s': taking the parked request state back: ",
                                 s->name);
    x->parked = 0;
    return OMNI_OK;
}

static int m2_state_new(struct omni_stage *st, const struct omni_run_ctx *ctx, void **state,
                        struct omni_error *err)
{
    struct m2_stage *s = (struct m2_stage *)st;
    struct m2_state *x = calloc(1, sizeof *x);
    if (!x)
        return omni_error_set(err, OMNI_ENOMEM, "mamba2: out of memory");
    if (s->loaded && ctx && ctx->batch > 0) {
        int rc = m2_state_alloc(s, x, ctx->batch, err);
        if (rc) {
            free(x);
            return rc;
        }
    }
    *state = x;
    return OMNI_OK;
}

/* Zero both states (a prefill from scratch), in place: the buffers keep their
 * addresses, which a kept loop graph names. */
int m2_state_zero(struct m2_stage *s, struct m2_state *x, struct omni_error *err)
{
    if (!x->dirty)
        return OMNI_OK;
    int rc = omni_op_zero(&x->conv, err);
    if (!rc)
        rc = omni_op_zero(&x->ssm, err);
    if (rc)
        return omni_error_prefix(err, "stage '%s': clearing the request state: ", s->name);
    x->dirty = 0;
    return OMNI_OK;
}

/* A scratch or output buffer: a large one (a prefill's rows) in memory that a parked
 * state can hand back (m2_state_park), a small one plain (reserved memory comes in pages
 * of 2 MiB). */
static struct omni_buffer *m2_scratch_buffer(struct omni_device dev, size_t bytes,
                                             struct omni_error *err)
{
    return bytes >= ((size_t)16 << 20) ? omni_buffer_new_reserved(dev, bytes, err)
                                       : omni_buffer_new(dev, bytes, err);
}

/* Make sure scratch holds `rows` rows and the output `out_elems` elements. */
int m2_scratch(struct m2_stage *s, struct m2_state *x, int64_t rows, int64_t out_elems,
                      struct omni_error *err)
{
    const struct m2_dims *d = &s->dim;
    if (rows > x->cap_rows) {
        /* whole blocks of 64 rows, so that a next request's prompt a few tokens longer
         * finds the buffers (and the kept loop graph that names them) where they were */
        rows = (rows + 63) / 64 * 64;
        const int64_t width[SC_COUNT] = {
            [SC_RESID] = d->d_model, [SC_NORMED] = d->d_model, [SC_ZXBCDT] = s->d_in_proj,
            [SC_XBC] = s->conv_dim,  [SC_Y] = d->d_inner,      [SC_YN] = d->d_inner,
            [SC_MIX] = d->d_model,   [SC_RES2] = d->d_model,   [SC_PART] = d->d_inner / 8 + 1,
            [SC_U] = OMNI_DECODE_MAX_R,
        };
        for (int i = 0; i < SC_COUNT; i++) {
            if (x->scratch[i])
                omni_buffer_unref(x->scratch[i]);
            x->scratch[i] = m2_scratch_buffer(s->base.device,
                                              (size_t)(rows * width[i]) * sizeof(float), err);
            if (!x->scratch[i]) {
                x->cap_rows = 0;
                return omni_error_prefix(err, "stage '%s': scratch for %lld rows: ", s->name,
                                         (long long)rows);
            }
        }
        x->cap_rows = rows;
    }
    if (out_elems > x->out_cap) {
        if (x->out)
            omni_buffer_unref(x->out);
        x->out = m2_scratch_buffer(s->base.device, (size_t)out_elems * sizeof(float), err);
        if (!x->out) {
            x->out_cap = 0;
            return omni_error_prefix(err, "stage '%s': output buffer: ", s->name);
        }
        x->out_cap = out_elems;
    }
    return OMNI_OK;
}

/* ---- descriptor ------------------------------------------------------------------------------- */

static const struct omni_port_desc m2_ports[] = {
    {"ids", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,T", OMNI_PORT_OPTIONAL,
     "token ids (needs embedding.weight); exactly one of ids/embeds per call"},
    {"embeds", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,T,D", OMNI_PORT_OPTIONAL,
     "input embeddings (e.g. from another stage); exactly one of ids/embeds per call"},
    {"hidden", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,S,D", 0,
     "final hidden state after norm_f: the last position (S=1) or, with all_positions, every "
     "position (S=T)"},
};

/* A step bakes the request's states, scratch and output buffers, and the adapters of its
 * task, into a graph. */
static int m2_graph_key(struct omni_stage *st, void *state, const struct omni_run_ctx *ctx,
                        uint64_t *key, int max, int *n)
{
    struct m2_stage *s = (struct m2_stage *)st;
    const struct m2_state *x = state;
    struct omni_stage *act[M2_MAX_ADAPTERS];
    int n_act = 0;
    struct omni_error e;
    omni_error_clear(&e);
    if (!x || m2_active_adapters(s, ctx, 1, act, &n_act, &e))
        return OMNI_EINVAL;
    *n = 0;
    int ok = omni_key_put(key, max, n, (uint64_t)x->batch) &&
             omni_key_put(key, max, n, (uint64_t)x->cap_rows) &&
             omni_key_put(key, max, n, omni_key_buf(x->conv.buf)) &&
             omni_key_put(key, max, n, (uint64_t)x->conv.offset) &&
             omni_key_put(key, max, n, omni_key_buf(x->ssm.buf)) &&
             omni_key_put(key, max, n, (uint64_t)x->ssm.offset) &&
             omni_key_put(key, max, n, omni_key_buf(x->ssm32.buf)) &&
             omni_key_put(key, max, n, (uint64_t)x->ssm32.offset) &&
             omni_key_put(key, max, n, omni_key_buf(x->out)) &&
             omni_key_put(key, max, n, (uint64_t)n_act);
    for (int i = 0; ok && i < SC_COUNT; i++)
        ok = omni_key_put(key, max, n, omni_key_buf(x->scratch[i]));
    for (int i = 0; ok && i < n_act; i++)
        ok = omni_key_put(key, max, n, (uint64_t)(uintptr_t)act[i]);
    return ok ? OMNI_OK : OMNI_ERANGE;
}

static const struct omni_stage_ops m2_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = m2_create,
    .destroy = m2_destroy,
    .forward = m2_forward,
    .load = m2_load,
    .state_new = m2_state_new,
    .state_free = m2_state_free,
    .step = m2_step,
    .attach = m2_attach,
    .graph_key = m2_graph_key,
    .state_park = m2_state_park,
};

static const struct omni_plugin_desc m2_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "mamba2",
    .version = "0.1.0",
    .description = "Mamba-2 stack: embedding, N x (add, RMSNorm, Mamba-2 mixer), norm_f",
    .ops = &m2_ops,
    .ports = m2_ports,
    .n_ports = OMNI_ARRAY_LEN(m2_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc = "d_model: model width (optional; inferred from the weights and checked)\n"
                  "n_layer: number of layers (optional; counted from layers.N. keys)\n"
                  "d_state: SSM state size (optional, inferred)\n"
                  "headdim: head dim (optional, inferred as d_inner/nheads)\n"
                  "expand: d_inner/d_model (optional, checked)\n"
                  "ngroups: B/C groups (default 1; cannot be inferred from shapes)\n"
                  "d_conv: conv width (optional, inferred)\n"
                  "vocab: embedding rows (optional, checked)\n"
                  "chunk_size: SSD chunk size (default 256; 0 = sequential scan)\n"
                  "eps: RMSNorm epsilon (default 1e-5)\n"
                  "all_positions: output every position instead of the last (default false)\n"
                  "embedding: load embedding.weight for 'ids' (default true; false saves its\n"
                  "  memory when every call feeds 'embeds', as the t2i and mmu pipelines do)\n"
                  "state_dtype: storage of the SSM state, f32 (default), f16 or bf16; a 16-bit\n"
                  "  state is updated in f32 and stored rounded (half the state traffic per\n"
                  "  decode step; upstream's fp16 inference keeps its state in the model dtype)\n",
    /* steps allocate nothing (scratch and states sized by the prefill) and never wait:
     * the executor may capture them in a CUDA graph */
    .flags = OMNI_PLUGIN_GRAPH_SAFE | OMNI_PLUGIN_STATE_REUSABLE,
};

OMNI_PLUGIN_DEFINE(m2_desc)
