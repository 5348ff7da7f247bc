/* plugins/projector/projector.c - the vision-to-LM projector of OmniMamba
 * (Prismatic/Cobra "fused-gelu-mlp", spec/vision-encoder.md §6):
 *
 *   F = concat_last(x0, x1)            (B, N, C0 + C1), x0 (DINO) first; x1 optional
 *   H = GELU_erf(F · W0ᵀ + b0)
 *   H = GELU_erf(H · W2ᵀ + b2)
 *   embeds = H · W4ᵀ + b4              (B, N, D)
 *
 * The linears are `<module>{0,2,4,...}.{weight,bias}` (nn.Sequential indices,
 * GELU modules in between hold no weights); their number and shapes come from
 * the file, so a 2-linear "gelu-mlp" works too. GELU follows every linear but
 * the last.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

#define MAX_LINEARS 16

struct proj_stage {
    struct omni_stage base;
    char *name, *module;
    int tanh_gelu;
    int64_t want_linears; /* -1 = any */
    int wdtype;
    int n;                 /* linears loaded */
    struct omni_tensor w[MAX_LINEARS], b[MAX_LINEARS];
};

static void proj_unload(struct proj_stage *s)
{
    for (int i = 0; i < MAX_LINEARS; i++) {
        omni_tensor_release(&s->w[i]);
        omni_tensor_release(&s->b[i]);
    }
    s->n = 0;
}

static void proj_destroy(struct omni_stage *st)
{
    struct proj_stage *s = (struct proj_stage *)st;
    if (!s)
        return;
    proj_unload(s);
    free(s->name);
    free(s->module);
    free(s);
}

static int proj_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                       struct omni_error *err)
{
    struct proj_stage *s = calloc(1, sizeof *s);
    int rc = OMNI_OK;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "projector: out of memory");
    s->name = strdup(cfg->name ? cfg->name : "projector");
    s->module = strdup(omni_params_str(cfg->params, "module", "projector."));
    if (!s->name || !s->module) {
        rc = omni_error_set(err, OMNI_ENOMEM, "projector: out of memory");
        goto fail;
    }
    const char *act = omni_params_str(cfg->params, "activation", "gelu");
    if (!strcmp(act, "gelu_tanh")) {
        s->tanh_gelu = 1;
    } else if (strcmp(act, "gelu")) {
        rc = omni_error_set(err, OMNI_EINVAL,
                            "param activation '%s' is unknown (gelu or gelu_tanh)", act);
        goto fail;
    }
    if ((rc = omni_params_int(cfg->params, "linears", -1, &s->want_linears, err)))
        goto fail;
    if (omni_params_has(cfg->params, "linears") &&
        (s->want_linears < 1 || s->want_linears > MAX_LINEARS)) {
        rc = omni_error_set(err, OMNI_EINVAL, "param linears = %lld is outside 1..%d",
                            (long long)s->want_linears, MAX_LINEARS);
        goto fail;
    }
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    proj_destroy(&s->base);
    return rc;
}

static int proj_load(struct omni_stage *st, const struct omni_weights_ref *w,
                     struct omni_error *err)
{
    struct proj_stage *s = (struct proj_stage *)st;
    const char *prefix = w && w->prefix ? w->prefix : "";
    char wk[256], bk[256], buf[96];
    struct omni_weight_info in;
    int rc = OMNI_OK;
    if (!w || !w->file)
        return omni_error_set(err, OMNI_EINVAL, "projector needs weights (set weights: and prefix:)");
    proj_unload(s);
    int64_t prev_out = -1;
    for (int i = 0; i < MAX_LINEARS; i++) {
        snprintf(wk, sizeof wk, "%s%d.weight", s->module, 2 * i);
        snprintf(bk, sizeof bk, "%s%d.bias", s->module, 2 * i);
        if (!omni_weights_has(w->file, prefix, wk)) {
            if (i == 0) {
                rc = omni_error_set(err, OMNI_ENOTFOUND, "weight '%s%s' is not in %s", prefix, wk,
                                    omni_weights_path(w->file));
                goto fail;
            }
            break;
        }
        if ((rc = omni_weights_info(w->file, prefix, wk, &in, err)))
            goto fail;
        if (in.ndim != 2 || (prev_out >= 0 && in.shape[1] != prev_out)) {
            rc = omni_error_set(err, OMNI_ESHAPE,
                                "weight '%s%s' has shape %s, expected (N, %lld)%s", prefix, wk,
                                omni_shape_str(in.ndim, in.shape, buf, sizeof buf),
                                (long long)prev_out,
                                prev_out >= 0 ? ": its K must be the previous linear's N" : "");
            goto fail;
        }
        if ((rc = omni_stage_load_weight(&s->base, w, wk, s->wdtype, 2, in.shape, &s->w[i], err)) ||
            (rc = omni_stage_load_weight(&s->base, w, bk, OMNI_DTYPE_F32, 1, in.shape, &s->b[i],
                                         err)))
            goto fail;
        s->n = i + 1;
        prev_out = in.shape[0];
    }
    if (s->want_linears > 0 && s->n != s->want_linears) {
        rc = omni_error_set(err, OMNI_ESHAPE,
                            "param linears = %lld but %s holds %d ('%s%s0.weight', '%s%s2.weight', ...)",
                            (long long)s->want_linears, omni_weights_path(w->file), s->n, prefix,
                            s->module, prefix, s->module);
        goto fail;
    }
    OMNI_LOG(OMNI_LOG_INFO, "stage '%s': projector %lld -> ... -> %lld, %d linears", s->name,
             (long long)s->w[0].shape[1], (long long)prev_out, s->n);
    return OMNI_OK;
fail:
    proj_unload(s);
    return rc;
}

static int proj_forward(struct omni_stage *st, void *state, struct omni_io *io,
                        struct omni_error *err)
{
    struct proj_stage *s = (struct proj_stage *)st;
    struct omni_tensor cat = {0}, h[2] = {{0}, {0}};
    int rc;
    char a[96], b[96];
    if (!s->n)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    const struct omni_tensor *x0 = &io->in[0], *x1 = &io->in[1];
    const int64_t any3[3] = {-1, -1, -1};
    if ((rc = omni_check_tensor(&s->base, "x0", x0, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 3, any3, err)))
        return rc;
    const int have_x1 = x1->buf != NULL;
    if (have_x1) {
        const int64_t dims[3] = {x0->shape[0], x0->shape[1], -1};
        if ((rc = omni_check_tensor(&s->base, "x1", x1, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 3, dims,
                                    err)))
            return rc;
    }
    const int64_t B = x0->shape[0], N = x0->shape[1];
    const int64_t C = x0->shape[2] + (have_x1 ? x1->shape[2] : 0), K0 = s->w[0].shape[1];
    if (C != K0) {
        if (have_x1)
            return omni_error_set(err, OMNI_ESHAPE,
                                  "stage '%s': inputs 'x0' %s and 'x1' %s give %lld channels, "
                                  "the first linear (%s0.weight) takes %lld",
                                  s->name, omni_shape_str(3, x0->shape, a, sizeof a),
                                  omni_shape_str(3, x1->shape, b, sizeof b), (long long)C,
                                  s->module, (long long)K0);
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': input 'x0' %s has %lld channels, the first linear "
                              "(%s0.weight) takes %lld%s",
                              s->name, omni_shape_str(3, x0->shape, a, sizeof a), (long long)C,
                              s->module, (long long)K0, " (is input 'x1' unconnected?)");
    }
    const struct omni_tensor *x = x0;
    if (have_x1) {
        if ((rc = omni_tensor_alloc(&cat, OMNI_DTYPE_F32, 3, (int64_t[]){B, N, C}, s->base.device,
                                    err)))
            goto fail;
        struct omni_tensor xs[2] = {*x0, *x1};
        if ((rc = omni_op_concat_last(&cat, xs, 2, err)))
            goto fail;
        x = &cat;
    }
    for (int i = 0; i < s->n; i++) {
        struct omni_tensor *y = &h[i & 1];
        omni_tensor_release(y);
        if ((rc = omni_tensor_alloc(y, OMNI_DTYPE_F32, 3, (int64_t[]){B, N, s->w[i].shape[0]},
                                    s->base.device, err)) ||
            (rc = omni_op_linear(y, x, &s->w[i], &s->b[i], err)))
            goto fail;
        if (i + 1 < s->n &&
            (rc = s->tanh_gelu ? omni_op_gelu_tanh(y, y, err) : omni_op_gelu(y, y, err)))
            goto fail;
        x = y;
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = h[(s->n - 1) & 1];
    h[(s->n - 1) & 1] = (struct omni_tensor){0};
    rc = OMNI_OK;
fail:
    if (rc)
        omni_error_prefix(err, "stage '%s': ", s->name);
    omni_tensor_release(&cat);
    omni_tensor_release(&h[0]);
    omni_tensor_release(&h[1]);
    return rc;
}

static const struct omni_port_desc proj_ports[] = {
    {"x0", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,N,C0", 0,
     "first feature set (DINO); its channels come first"},
    {"x1", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,N,C1", OMNI_PORT_OPTIONAL,
     "second feature set (SigLIP), concatenated after x0 along channels"},
    {"embeds", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,N,D", 0,
     "projected embeddings (D = the LM's d_model)"},
};

static const struct omni_stage_ops proj_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = proj_create,
    .destroy = proj_destroy,
    .forward = proj_forward,
    .load = proj_load,
};

static const struct omni_plugin_desc proj_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "projector",
    .version = "0.1.0",
    .description = "vision projector: concat(x0, x1) then Linear, GELU, ..., Linear (fused-gelu-mlp)",
    .ops = &proj_ops,
    .ports = proj_ports,
    .n_ports = OMNI_ARRAY_LEN(proj_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc = "module: key stem of the linears under prefix (default projector.: keys "
                  "projector.0.weight, projector.2.weight, ...)\n"
                  "linears: expected number of linears (optional, checked; default: as many as "
                  "the file holds)\n"
                  "activation: gelu (erf, default) or gelu_tanh\n",
};

OMNI_PLUGIN_DEFINE(proj_desc)
