/* plugins/token_embed/token_embed.c - the decode-time input embedding of a
 * fed token (spec/omnimamba.md §4.2, §6.7, §7.3):
 *   x = mlp(table[id]) + pos_table[0, position]
 *   mlp: optional chain of linears (weight + bias) with erf-GELU between
 *        them (OmniMamba's image project_in: projector.0, .2, .4)
 *   ids: i32 (B, 1)      embeds: f32 (B, 1, D)      position = ctx->position
 * When position is past the last row of pos_table the stage returns
 * OMNI_DONE (the executor ends the generation loop) and logs a warning: the
 * upstream code would index out of range there (spec §9.1 item 10).
 * Graph-safe: in a CUDA loop the position row is picked on the device from
 * the executor's position counter (omni_op_embedding_add), the buffers are
 * allocated once per request.
 * MMU text: table embedding.weight, pos_table mmu_pos_embed (the defaults).
 * T2I codes: table img_embeddings.word_embeddings.weight, mlp
 * "img_embeddings.project_in.projector.0, ...2, ...4", pos_table pos_embed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

#define TE_MAX_MLP 8

struct te_stage {
    struct omni_stage base;
    char *name;
    char *key_table, *key_pos;
    char *stems[TE_MAX_MLP];
    int n_mlp;
    int wdtype;
    int64_t D0, D, R;           /* table width, output width, pos rows */
    struct omni_tensor table;   /* (V, D0) stage dtype */
    struct omni_tensor w[TE_MAX_MLP], b[TE_MAX_MLP]; /* (N_i, K_i) stage dtype, (N_i) f32 or empty */
    struct omni_tensor pos;     /* (1, R, D) f32 */
};

/* Per request: one buffer per intermediate (table row, each linear), reused
 * every token so the loop allocates nothing. */
struct te_state {
    struct omni_buffer *buf[TE_MAX_MLP + 1];
    int64_t cap_rows;
};

static void te_destroy(struct omni_stage *st)
{
    struct te_stage *s = (struct te_stage *)st;
    if (!s)
        return;
    omni_tensor_release(&s->table);
    omni_tensor_release(&s->pos);
    for (int i = 0; i < TE_MAX_MLP; i++) {
        omni_tensor_release(&s->w[i]);
        omni_tensor_release(&s->b[i]);
        free(s->stems[i]);
    }
    free(s->key_table);
    free(s->key_pos);
    free(s->name);
    free(s);
}

/* mlp: [a.0, a.2, a.4] -> stems. */
static int parse_stems(struct te_stage *s, const struct omni_params *p, struct omni_error *err)
{
    const char *stems[TE_MAX_MLP];
    int n = TE_MAX_MLP;
    int rc = omni_params_str_list(p, "mlp", stems, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        if (!(s->stems[i] = strdup(stems[i])))
            return omni_error_set(err, OMNI_ENOMEM, "token_embed: out of memory");
        s->n_mlp = i + 1;
    }
    return OMNI_OK;
}

static int te_create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct te_stage *s = calloc(1, sizeof *s);
    const struct omni_params *p = cfg->params;
    int rc;
    if (!s || !(s->name = strdup(cfg->name ? cfg->name : "token_embed")) ||
        !(s->key_table = strdup(omni_params_str(p, "table", "embedding.weight"))) ||
        !(s->key_pos = strdup(omni_params_str(p, "pos_table", "mmu_pos_embed")))) {
        rc = omni_error_set(err, OMNI_ENOMEM, "token_embed: out of memory");
        goto fail;
    }
    if ((rc = parse_stems(s, p, err)))
        goto fail;
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    te_destroy(s ? &s->base : NULL);
    return rc;
}

static int te_load(struct omni_stage *st, const struct omni_weights_ref *w, struct omni_error *err)
{
    struct te_stage *s = (struct te_stage *)st;
    struct omni_weight_info it, ip, iw;
    struct omni_tensor table = {0}, pos = {0}, W[TE_MAX_MLP] = {{0}}, Bv[TE_MAX_MLP] = {{0}};
    char a[96], key[512];
    int rc;
    if (!w || !w->file)
        return omni_error_set(err, OMNI_ENOTFOUND, "needs weights ('%s', '%s') but none are configured", s->key_table,
                              s->key_pos);
    if ((rc = omni_weights_info(w->file, w->prefix, s->key_table, &it, err)) ||
        (rc = omni_weights_info(w->file, w->prefix, s->key_pos, &ip, err)))
        return rc;
    if (it.ndim != 2)
        return omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has shape %s, expected (V, D)", w->prefix, s->key_table,
                              omni_shape_str(it.ndim, it.shape, a, sizeof a));
    if ((rc = omni_stage_load_weight(st, w, s->key_table, s->wdtype, 2, it.shape, &table, err)))
        goto fail;
    int64_t K = it.shape[1];
    for (int i = 0; i < s->n_mlp; i++) {
        snprintf(key, sizeof key, "%s.weight", s->stems[i]);
        if ((rc = omni_weights_info(w->file, w->prefix, key, &iw, err)))
            goto fail;
        if (iw.ndim != 2 || iw.shape[1] != K) {
            rc = omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has shape %s, expected [N,%lld] (mlp layer %d input)",
                                w->prefix, key, omni_shape_str(iw.ndim, iw.shape, a, sizeof a), (long long)K, i);
            goto fail;
        }
        if ((rc = omni_stage_load_weight(st, w, key, s->wdtype, 2, iw.shape, &W[i], err)))
            goto fail;
        snprintf(key, sizeof key, "%s.bias", s->stems[i]);
        if (omni_weights_has(w->file, w->prefix, key)) {
            if ((rc = omni_stage_load_weight(st, w, key, OMNI_DTYPE_F32, 1, &iw.shape[0], &Bv[i], err)))
                goto fail;
        }
        K = iw.shape[0];
    }
    if (ip.ndim != 3 || ip.shape[0] != 1 || ip.shape[2] != K) {
        rc = omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has shape %s, expected [1,R,%lld] (the embedding width%s)",
                            w->prefix, s->key_pos, omni_shape_str(ip.ndim, ip.shape, a, sizeof a), (long long)K,
                            s->n_mlp ? " after the mlp" : "");
        goto fail;
    }
    if ((rc = omni_stage_load_weight(st, w, s->key_pos, OMNI_DTYPE_F32, 3, ip.shape, &pos, err)))
        goto fail;
    omni_tensor_release(&s->table);
    omni_tensor_release(&s->pos);
    s->table = table;
    s->pos = pos;
    for (int i = 0; i < s->n_mlp; i++) {
        omni_tensor_release(&s->w[i]);
        omni_tensor_release(&s->b[i]);
        s->w[i] = W[i];
        s->b[i] = Bv[i];
    }
    s->D0 = it.shape[1];
    s->D = K;
    s->R = ip.shape[1];
    return OMNI_OK;
fail:
    omni_tensor_release(&table);
    omni_tensor_release(&pos);
    for (int i = 0; i < TE_MAX_MLP; i++) {
        omni_tensor_release(&W[i]);
        omni_tensor_release(&Bv[i]);
    }
    return rc;
}

static int te_state_new(struct omni_stage *st, const struct omni_run_ctx *ctx, void **state, struct omni_error *err)
{
    struct te_state *x = calloc(1, sizeof *x);
    if (!x)
        return omni_error_set(err, OMNI_ENOMEM, "token_embed: out of memory");
    *state = x;
    return OMNI_OK;
}

static void te_state_free(struct omni_stage *st, void *state)
{
    struct te_state *x = state;
    if (!x)
        return;
    for (int i = 0; i <= TE_MAX_MLP; i++)
        if (x->buf[i])
            omni_buffer_unref(x->buf[i]);
    free(x);
}

/* Width of intermediate i: 0 = table row, i >= 1 = output of linear i-1. */
static int64_t width(const struct te_stage *s, int i) { return i == 0 ? s->D0 : s->w[i - 1].shape[0]; }

static int te_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct te_stage *s = (struct te_stage *)st;
    struct te_state *x = state;
    const struct omni_tensor *ids = &io->in[0];
    struct omni_tensor t[TE_MAX_MLP + 1] = {{0}};
    int rc;
    if (!s->table.buf)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    const int64_t idims[2] = {-1, 1};
    if ((rc = omni_check_tensor(st, "ids", ids, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), 2, idims, err)))
        return rc;
    const int64_t pos = io->ctx ? io->ctx->position : 0, B = ids->shape[0];
    if (pos < 0)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': negative position %lld", s->name, (long long)pos);
    if (pos >= s->R) {
        OMNI_LOG(OMNI_LOG_WARN, "stage '%s': position %lld would pass %s (%lld rows): generation stopped", s->name,
                 (long long)pos, s->key_pos, (long long)s->R);
        return OMNI_DONE;
    }
    if (B < 1)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'ids' has no rows", s->name);
    const int n = s->n_mlp;
    if (x && B > x->cap_rows) { /* (re)size the per-request buffers */
        for (int i = 0; i <= n; i++) {
            if (x->buf[i])
                omni_buffer_unref(x->buf[i]);
            x->buf[i] = NULL;
        }
        x->cap_rows = 0;
        for (int i = 0; i <= n; i++)
            if (!(x->buf[i] = omni_buffer_new(s->base.device, (size_t)(B * width(s, i)) * sizeof(float), err)))
                return omni_error_prefix(err, "stage '%s': ", s->name);
        x->cap_rows = B;
    }
    for (int i = 0; i <= n; i++) {
        const int64_t shape[3] = {B, 1, width(s, i)};
        rc = x ? omni_tensor_view(&t[i], x->buf[i], 0, OMNI_DTYPE_F32, 3, shape, err)
               : omni_tensor_alloc(&t[i], OMNI_DTYPE_F32, 3, shape, s->base.device, err);
        if (rc)
            goto done;
    }
    if ((rc = omni_op_embedding(&t[0], &s->table, ids, err)))
        goto done;
    for (int i = 0; i < n; i++) {
        if ((rc = omni_op_linear(&t[i + 1], &t[i], &s->w[i], s->b[i].buf ? &s->b[i] : NULL, err)))
            goto done;
        if (i + 1 < n && (rc = omni_op_gelu(&t[i + 1], &t[i + 1], err)))
            goto done;
    }
    struct omni_tensor ctr;
    if (omni_ctx_counter(io->ctx, 0, s->base.device, &ctr, NULL) == OMNI_OK) {
        struct omni_tensor tab = s->pos, o2 = t[n]; /* borrowed (R, D) and (B, D) views */
        const int64_t sh_t[2] = {s->R, s->D}, sh_o[2] = {B, s->D};
        tab.ndim = 2, o2.ndim = 2;
        memcpy(tab.shape, sh_t, sizeof sh_t);
        memcpy(o2.shape, sh_o, sizeof sh_o);
        tab.strides[0] = s->D, tab.strides[1] = 1;
        o2.strides[0] = s->D, o2.strides[1] = 1;
        rc = omni_op_embedding_add(&o2, &tab, &ctr, err);
        omni_tensor_release(&ctr);
    } else {
        struct omni_tensor row = s->pos; /* borrowed (D) view of pos_table[0, pos] */
        row.ndim = 1;
        row.shape[0] = s->D;
        row.strides[0] = 1;
        row.offset = s->pos.offset + pos * s->D * (int64_t)sizeof(float);
        rc = omni_op_add_row(&t[n], &row, err);
    }
    if (rc)
        goto done;
    omni_tensor_release(&io->out[0]);
    io->out[0] = t[n];
    memset(&t[n], 0, sizeof t[n]);
done:
    if (rc)
        omni_error_prefix(err, "stage '%s': ", s->name);
    for (int i = 0; i <= TE_MAX_MLP; i++)
        omni_tensor_release(&t[i]);
    return rc;
}

static const struct omni_port_desc te_ports[] = {
    {"ids", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,1", 0, "the token fed at this step"},
    {"embeds", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,1,D", 0, "mlp(table[id]) + pos_table[0, position]"},
};

/* positions must stay below the position table's rows: the executor stops first */
static int te_max_position(struct omni_stage *st, int64_t *max_position)
{
    const struct te_stage *s = (const struct te_stage *)st;
    if (!s->R)
        return OMNI_ESTATE; /* not loaded */
    *max_position = s->R;
    return OMNI_OK;
}

/* The loop call bakes the request's intermediate buffers into a graph. */
static int te_graph_key(struct omni_stage *st, void *state, const struct omni_run_ctx *ctx,
                        uint64_t *key, int max, int *n)
{
    (void)ctx;
    const struct te_stage *s = (const struct te_stage *)st;
    const struct te_state *x = state;
    if (!x)
        return OMNI_EINVAL;
    *n = 0;
    int ok = omni_key_put(key, max, n, (uint64_t)x->cap_rows);
    for (int i = 0; ok && i <= s->n_mlp; i++)
        ok = omni_key_put(key, max, n, omni_key_buf(x->buf[i]));
    return ok ? OMNI_OK : OMNI_ERANGE;
}

static const struct omni_stage_ops te_ops = {
    .size = sizeof(struct omni_stage_ops),
    .max_position = te_max_position,
    .create = te_create,
    .destroy = te_destroy,
    .forward = te_forward,
    .load = te_load,
    .state_new = te_state_new,
    .state_free = te_state_free,
    .graph_key = te_graph_key,
    .state_park = omni_state_park_keep, /* a few rows: kept as they are */
};

static const struct omni_plugin_desc te_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "token_embed",
    .version = "0.1.0",
    .description = "decode-step input: mlp(table[id]) + pos_table[0, position]; OMNI_DONE past the table",
    .ops = &te_ops,
    .ports = te_ports,
    .n_ports = OMNI_ARRAY_LEN(te_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .flags = OMNI_PLUGIN_GRAPH_SAFE | OMNI_PLUGIN_STATE_REUSABLE,
    .params_doc = "table: embedding table key (default embedding.weight)\n"
                  "mlp: optional linear key stems as one string, \"a.0, a.2, a.4\" (weight + bias each, "
                  "erf-GELU between)\n"
                  "pos_table: position table key, [1, R, D] (default mmu_pos_embed); position >= R stops "
                  "the loop (OMNI_DONE)\n",
};

OMNI_PLUGIN_DEFINE(te_desc)
