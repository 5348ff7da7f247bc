/* plugins/text_head/text_head.c - the output head of a language model.
 *
 * Computes logits[b, :] = hidden[b, T-1, :] · Wᵀ for the last position only
 * (spec/mamba2.md §4.2: generation needs the last token's logits).
 *   hidden: (B, T, D) f32    W: (V, D) f32/f16/bf16 (stage dtype)    logits: (B, V) f32
 * W is `weight` (default lm_head.weight) or, when the file does not hold it,
 * `fallback` (default embedding.weight): tied embeddings. The same stage is
 * OmniMamba's image head (img_head.weight, fallback the image word embeddings).
 *
 * With a request state the logits and the row gather live in it (no
 * allocation per token); without one they are allocated per call.
 */
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

struct th_stage {
    struct omni_stage base;
    char *name;
    char *weight_key, *fallback_key;
    int64_t vocab_given;
    int wdtype;
    int64_t V, D;
    struct omni_tensor W; /* (V, D) */
};

struct th_state {
    struct omni_buffer *rows;   /* (B, D) f32: last positions gathered */
    int64_t rows_cap;
    struct omni_buffer *logits; /* (B, V) f32 */
    int64_t logits_cap;
};

static char *th_strdup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s ? s : "", n);
    return d;
}

static void th_destroy(struct omni_stage *st)
{
    struct th_stage *s = (struct th_stage *)st;
    if (!s)
        return;
    omni_tensor_release(&s->W);
    free(s->name);
    free(s->weight_key);
    free(s->fallback_key);
    free(s);
}

static int th_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                     struct omni_error *err)
{
    struct th_stage *s = calloc(1, sizeof *s);
    int rc = OMNI_OK;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "text_head: out of memory");
    s->name = th_strdup(cfg->name ? cfg->name : "text_head");
    s->weight_key = th_strdup(omni_params_str(cfg->params, "weight", "lm_head.weight"));
    s->fallback_key = th_strdup(omni_params_str(cfg->params, "fallback", "embedding.weight"));
    if (!s->name || !s->weight_key || !s->fallback_key) {
        rc = omni_error_set(err, OMNI_ENOMEM, "text_head: out of memory");
        goto fail;
    }
    if ((rc = omni_params_int(cfg->params, "vocab", -1, &s->vocab_given, err)))
        goto fail;
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    th_destroy(&s->base);
    return rc;
}

static int th_load(struct omni_stage *st, const struct omni_weights_ref *w, struct omni_error *err)
{
    struct th_stage *s = (struct th_stage *)st;
    const char *prefix = w && w->prefix ? w->prefix : "";
    struct omni_weight_info info;
    char buf[64];
    int rc;
    if (!w || !w->file)
        return omni_error_set(err, OMNI_EINVAL,
                              "text_head needs weights (set weights: and prefix:)");
    const char *key = s->weight_key;
    if (!omni_weights_has(w->file, prefix, key)) {
        if (!s->fallback_key[0] || !omni_weights_has(w->file, prefix, s->fallback_key))
            return omni_error_set(err, OMNI_ENOTFOUND,
                                  "neither weight '%s%s' nor fallback '%s%s' is in %s",
                                  prefix, s->weight_key, prefix, s->fallback_key,
                                  omni_weights_path(w->file));
        key = s->fallback_key;
        OMNI_LOG(OMNI_LOG_INFO, "'%s%s' absent, using tied '%s%s'", prefix,
                 s->weight_key, prefix, key);
    }
    if ((rc = omni_weights_info(w->file, prefix, key, &info, err)))
        return rc;
    if (info.ndim != 2)
        return omni_error_set(err, OMNI_ESHAPE,
                              "weight '%s%s' has shape %s, expected (V, D)", prefix, key, omni_shape_str(info.ndim, info.shape, buf, sizeof buf));
    if (s->vocab_given > 0 && info.shape[0] != s->vocab_given)
        return omni_error_set(err, OMNI_ESHAPE,
                              "param vocab=%lld disagrees with weight '%s%s' (shape %s "
                              "gives vocab=%lld)",
                              (long long)s->vocab_given, prefix, key,
                              omni_shape_str(info.ndim, info.shape, buf, sizeof buf),
                              (long long)info.shape[0]);
    omni_tensor_release(&s->W);
    if ((rc = omni_stage_load_weight(&s->base, w, key, s->wdtype, 2, info.shape, &s->W, err)))
        return rc;
    s->V = info.shape[0];
    s->D = info.shape[1];
    return OMNI_OK;
}

static int th_state_new(struct omni_stage *st, const struct omni_run_ctx *ctx, void **state,
                        struct omni_error *err)
{
    struct th_state *x = calloc(1, sizeof *x);
    if (!x)
        return omni_error_set(err, OMNI_ENOMEM, "text_head: out of memory");
    *state = x;
    return OMNI_OK;
}

static void th_state_free(struct omni_stage *st, void *state)
{
    struct th_state *x = state;
    if (!x)
        return;
    if (x->rows)
        omni_buffer_unref(x->rows);
    if (x->logits)
        omni_buffer_unref(x->logits);
    free(x);
}

/* A buffer of at least n floats: the state's (grown as needed) or a new one. */
static int th_buffer(struct th_stage *s, struct omni_buffer **slot, int64_t *cap, int64_t n,
                     struct omni_buffer **out, struct omni_error *err)
{
    if (!slot) {
        *out = omni_buffer_new(s->base.device, (size_t)n * sizeof(float), err);
        return *out ? OMNI_OK : omni_error_prefix(err, "stage '%s': ", s->name);
    }
    if (n > *cap) {
        if (*slot)
            omni_buffer_unref(*slot);
        *slot = omni_buffer_new(s->base.device, (size_t)n * sizeof(float), err);
        *cap = *slot ? n : 0;
        if (!*slot)
            return omni_error_prefix(err, "stage '%s': ", s->name);
    }
    *out = omni_buffer_ref(*slot);
    return OMNI_OK;
}

static int th_forward(struct omni_stage *st, void *state, struct omni_io *io,
                      struct omni_error *err)
{
    struct th_stage *s = (struct th_stage *)st;
    struct th_state *x = state;
    struct omni_buffer *lb = NULL, *rb = NULL;
    struct omni_tensor logits = {0}, rows = {0};
    int rc;
    if (!s->W.buf)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    if (io->n_in < 1 || io->n_out < 1)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': ports hidden/logits missing", s->name);
    const struct omni_tensor *h = &io->in[0];
    const int64_t dims[3] = {-1, -1, s->D};
    if ((rc = omni_check_tensor(&s->base, "hidden", h, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 3, dims,
                                err)))
        return rc;
    const int64_t B = h->shape[0], T = h->shape[1], D = s->D, V = s->V;
    if (B <= 0 || T <= 0)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'hidden' is empty", s->name);

    if ((rc = th_buffer(s, x ? &x->logits : NULL, x ? &x->logits_cap : NULL, B * V, &lb, err)))
        goto fail;
    const int64_t sh_bv[2] = {B, V}, sh_bd[2] = {B, D};
    if ((rc = omni_tensor_view(&logits, lb, 0, OMNI_DTYPE_F32, 2, sh_bv, err)))
        goto fail;

    const struct omni_tensor *xin = h;
    if (T > 1 || !omni_tensor_is_contiguous(h)) {
        /* gather hidden[:, T-1, :] into contiguous rows: one pass over W for all B */
        if ((rc = th_buffer(s, x ? &x->rows : NULL, x ? &x->rows_cap : NULL, B * D, &rb, err)))
            goto fail;
        if ((rc = omni_tensor_view(&rows, rb, 0, OMNI_DTYPE_F32, 2, sh_bd, err)))
            goto fail;
        for (int64_t b = 0; b < B; b++) {
            struct omni_tensor src = *h, dst = rows;
            src.ndim = 1;
            src.shape[0] = D;
            src.strides[0] = h->strides[2];
            src.offset = h->offset + (b * h->strides[0] + (T - 1) * h->strides[1]) * 4;
            dst.ndim = 1;
            dst.shape[0] = D;
            dst.strides[0] = 1;
            dst.offset = rows.offset + b * D * 4;
            if ((rc = omni_op_copy(&dst, &src, err)))
                goto fail;
        }
        xin = &rows;
    }
    if ((rc = omni_op_matmul(&logits, xin, &s->W, NULL, 1.0f, 0.0f, err)))
        goto fail;
    omni_tensor_release(&rows);
    if (rb)
        omni_buffer_unref(rb);
    if (lb)
        omni_buffer_unref(lb);
    omni_tensor_release(&io->out[0]);
    io->out[0] = logits;
    return OMNI_OK;
fail:
    omni_tensor_release(&rows);
    omni_tensor_release(&logits);
    if (rb)
        omni_buffer_unref(rb);
    if (lb)
        omni_buffer_unref(lb);
    return rc;
}

static const struct omni_port_desc th_ports[] = {
    {"hidden", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,T,D", 0,
     "hidden states; only the last position is used"},
    {"logits", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,V", 0,
     "logits of the last position"},
};

/* The loop call bakes the request's logits and row buffers into a graph. */
static int th_graph_key(struct omni_stage *st, void *state, const struct omni_run_ctx *ctx,
                        uint64_t *key, int max, int *n)
{
    (void)st, (void)ctx;
    const struct th_state *x = state;
    if (!x)
        return OMNI_EINVAL;
    *n = 0;
    return omni_key_put(key, max, n, omni_key_buf(x->logits)) &&
                   omni_key_put(key, max, n, (uint64_t)x->logits_cap) &&
                   omni_key_put(key, max, n, omni_key_buf(x->rows)) &&
                   omni_key_put(key, max, n, (uint64_t)x->rows_cap)
               ? OMNI_OK
               : OMNI_ERANGE;
}

static const struct omni_stage_ops th_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = th_create,
    .destroy = th_destroy,
    .forward = th_forward,
    .load = th_load,
    .state_new = th_state_new,
    .state_free = th_state_free,
    .graph_key = th_graph_key,
    .state_park = omni_state_park_keep, /* a few rows: kept as they are */
};

static const struct omni_plugin_desc th_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "text_head",
    .version = "0.1.0",
    .description = "LM head: logits of the last position, hidden · Wᵀ (tied embedding fallback)",
    .ops = &th_ops,
    .ports = th_ports,
    .n_ports = OMNI_ARRAY_LEN(th_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc = "weight: key of the head matrix (V, D) under prefix (default lm_head.weight)\n"
                  "fallback: key used when weight is absent, tied embeddings (default "
                  "embedding.weight; \"\" = none)\n"
                  "vocab: expected V (optional, checked)\n",
    /* the logits live in the request state: a loop call allocates nothing */
    .flags = OMNI_PLUGIN_GRAPH_SAFE | OMNI_PLUGIN_STATE_REUSABLE,
};

OMNI_PLUGIN_DEFINE(th_desc)
