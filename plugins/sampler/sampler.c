/* plugins/sampler/sampler.c - next-token choice from logits.
 *
 *   logits: (B, V) f32  ->  token: (B, 1) i32
 * Rules of mamba_ssm / OmniMamba generation (omni_op_sample): top_k 1 =
 * argmax (the default, as the OmniMamba scripts), else top-k, temperature,
 * top-p, softmax and one draw. The draw is a hash of (seed, draw index, row):
 * draw index 0 for the prefill (ctx->step == -1) and k + 1 for loop
 * iteration k, so a request is reproducible from its seed.
 * Params give the defaults; per-request options (ctx->options) override them.
 * Graph-safe: in a CUDA loop the draw index is read on the device from the
 * executor's step counter (omni_op_sample_at), so a captured step replays
 * with the right draw; the token buffer is allocated once per request.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

struct smp_stage {
    struct omni_stage base;
    char *name;
    struct omni_sampling def;
};

/* Per request: the token buffer, reused by every call so that a decode step
 * allocates nothing (the output is a new reference to it). */
struct smp_state {
    struct omni_buffer *tok; /* (cap) i32 on the logits' device */
    int64_t cap;
};

static char *smp_strdup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s ? s : "", n);
    return d;
}

/* Read temperature/top_k/top_p from p over *s (absent keys keep *s). */
static int smp_read(const char *name, const struct omni_params *p, struct omni_sampling *s,
                    const char *what, struct omni_error *err)
{
    double t, tp;
    int64_t k;
    int rc;
    if (!p)
        return OMNI_OK;
    if ((rc = omni_params_float(p, "temperature", s->temperature, &t, err)) ||
        (rc = omni_params_int(p, "top_k", s->top_k, &k, err)) ||
        (rc = omni_params_float(p, "top_p", s->top_p, &tp, err)))
        return omni_error_prefix(err, "stage '%s' (%s): ", name, what);
    if (!(t > 0) || !isfinite(t))
        return omni_error_set(err, OMNI_EINVAL, "stage '%s' (%s): temperature must be > 0, got %g",
                              name, what, t);
    if (k < 0 || k > INT32_MAX)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s' (%s): top_k must be >= 0 (0 = all, 1 = greedy), got %lld",
                              name, what, (long long)k);
    if (!(tp >= 0 && tp <= 1))
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s' (%s): top_p must be in [0, 1] (0 = off), got %g", name,
                              what, tp);
    s->temperature = (float)t;
    s->top_k = (int32_t)k;
    s->top_p = (float)tp;
    return OMNI_OK;
}

static void smp_destroy(struct omni_stage *st)
{
    struct smp_stage *s = (struct smp_stage *)st;
    if (!s)
        return;
    free(s->name);
    free(s);
}

static int smp_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                      struct omni_error *err)
{
    struct smp_stage *s = calloc(1, sizeof *s);
    int rc;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "sampler: out of memory");
    s->name = smp_strdup(cfg->name ? cfg->name : "sampler");
    if (!s->name) {
        free(s);
        return omni_error_set(err, OMNI_ENOMEM, "sampler: out of memory");
    }
    s->def = (struct omni_sampling){.temperature = 1.0f, .top_k = 1, .top_p = 0.0f};
    if ((rc = smp_read(s->name, cfg->params, &s->def, "params", err))) {
        smp_destroy(&s->base);
        return rc;
    }
    *out = &s->base;
    return OMNI_OK;
}

static int smp_state_new(struct omni_stage *st, const struct omni_run_ctx *ctx, void **state,
                         struct omni_error *err)
{
    (void)ctx;
    struct smp_state *x = calloc(1, sizeof *x);
    if (!x)
        return omni_error_set(err, OMNI_ENOMEM, "stage '%s': out of memory",
                              ((struct smp_stage *)st)->name);
    *state = x;
    return OMNI_OK;
}

static void smp_state_free(struct omni_stage *st, void *state)
{
    (void)st;
    struct smp_state *x = state;
    if (!x)
        return;
    if (x->tok)
        omni_buffer_unref(x->tok);
    free(x);
}

static int smp_forward(struct omni_stage *st, void *state, struct omni_io *io,
                       struct omni_error *err)
{
    struct smp_stage *s = (struct smp_stage *)st;
    struct omni_sampling cur = s->def;
    struct omni_tensor tok = {0}, ids;
    int rc;
    if (io->n_in < 1 || io->n_out < 1)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': ports logits/token missing", s->name);
    const struct omni_tensor *lg = &io->in[0];
    const int64_t dims[2] = {-1, -1};
    if ((rc = omni_check_tensor(&s->base, "logits", lg, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 2, dims,
                                err)))
        return rc;
    if (lg->shape[0] <= 0 || lg->shape[1] <= 0)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'logits' is empty", s->name);
    const struct omni_run_ctx *ctx = io->ctx;
    if (ctx && (rc = smp_read(s->name, ctx->options, &cur, "request options", err)))
        return rc;
    const int64_t B = lg->shape[0];
    const int64_t sh[2] = {B, 1};
    struct smp_state *x = state;
    if (x && (B > x->cap || !omni_device_eq(omni_buffer_device(x->tok), lg->device))) {
        if (x->tok)
            omni_buffer_unref(x->tok);
        x->cap = 0;
        if (!(x->tok = omni_buffer_new(lg->device, (size_t)B * sizeof(int32_t), err)))
            return omni_error_prefix(err, "stage '%s': ", s->name);
        x->cap = B;
    }
    rc = x ? omni_tensor_view(&tok, x->tok, 0, OMNI_DTYPE_I32, 2, sh, err)
           : omni_tensor_alloc(&tok, OMNI_DTYPE_I32, 2, sh, lg->device, err);
    if (rc)
        return omni_error_prefix(err, "stage '%s': ", s->name);
    ids = tok; /* the same buffer seen as (B) for the op; tok keeps the reference */
    ids.ndim = 1;
    ids.strides[0] = 1;
    const uint64_t seed = ctx ? ctx->seed : 0;
    const int64_t draw = ctx ? (ctx->step < 0 ? 0 : ctx->step + 1) : 0;
    struct omni_tensor ctr;
    if (ctx && ctx->step >= 0 && cur.top_k != 1 &&
        omni_ctx_counter(ctx, 1, lg->device, &ctr, NULL) == OMNI_OK) {
        rc = omni_op_sample_at(&ids, lg, &cur, seed, &ctr, 1, err); /* draw = step + 1 */
        omni_tensor_release(&ctr);
    } else {
        rc = omni_op_sample(&ids, lg, &cur, seed, draw, err);
    }
    if (rc) {
        omni_tensor_release(&tok);
        return rc;
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = tok;
    return OMNI_OK;
}

/* The loop call bakes the seed, the sampling options and the token buffer into a graph. */
static int smp_graph_key(struct omni_stage *st, void *state, const struct omni_run_ctx *ctx,
                         uint64_t *key, int max, int *n)
{
    struct smp_stage *s = (struct smp_stage *)st;
    const struct smp_state *x = state;
    struct omni_sampling cur = s->def;
    struct omni_error e;
    omni_error_clear(&e);
    if (!x || !ctx || smp_read(s->name, ctx->options, &cur, "request options", &e))
        return OMNI_EINVAL;
    uint32_t t, p;
    memcpy(&t, &cur.temperature, sizeof t);
    memcpy(&p, &cur.top_p, sizeof p);
    *n = 0;
    return omni_key_put(key, max, n, ctx->seed) && omni_key_put(key, max, n, t) &&
                   omni_key_put(key, max, n, (uint64_t)(int64_t)cur.top_k) &&
                   omni_key_put(key, max, n, p) && omni_key_put(key, max, n, omni_key_buf(x->tok)) &&
                   omni_key_put(key, max, n, (uint64_t)x->cap)
               ? OMNI_OK
               : OMNI_ERANGE;
}

static const struct omni_port_desc smp_ports[] = {
    {"logits", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,V", 0, "logits of one position"},
    {"token", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,1", 0, "the chosen token ids"},
};

static const struct omni_stage_ops smp_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = smp_create,
    .destroy = smp_destroy,
    .forward = smp_forward,
    .state_new = smp_state_new,
    .state_free = smp_state_free,
    .graph_key = smp_graph_key,
    .state_park = omni_state_park_keep, /* a few rows: kept as they are */
};

static const struct omni_plugin_desc smp_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "sampler",
    .version = "0.1.0",
    .description = "Token sampler: greedy, top-k, top-p, temperature; reproducible by seed",
    .ops = &smp_ops,
    .ports = smp_ports,
    .n_ports = OMNI_ARRAY_LEN(smp_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .flags = OMNI_PLUGIN_GRAPH_SAFE | OMNI_PLUGIN_STATE_REUSABLE,
    .params_doc = "temperature: divide logits by this before sampling (default 1.0)\n"
                  "top_k: keep the k largest (default 1 = greedy argmax; 0 = all)\n"
                  "top_p: nucleus threshold (default 0 = off)\n"
                  "(each may be overridden per request in the request options)\n",
};

OMNI_PLUGIN_DEFINE(smp_desc)
