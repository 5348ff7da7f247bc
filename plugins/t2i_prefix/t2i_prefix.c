/* plugins/t2i_prefix/t2i_prefix.c - OmniMamba's text-to-image prefix
 * (spec/omnimamba.md §7.1-7.2, §4.3):
 *   slot = [PAD] * L; slot[L-n:] = caption[:n], n = min(len, L)  (LEFT padding,
 *          a longer caption keeps its FIRST L ids; L = caption_len = 68)
 *   ids  = [<|t2i|>, <|sot|>] + slot + [<|eot|>, <|soi|>]          (P = L + 4)
 *   e    = E_txt[ids]                                   (P, D)
 *   e    = fc2(GELU_tanh(fc1(e)))   on ALL P rows, no biases (caption_embed)
 *   e[p] += pos_embed[0, p]
 *   ids: i32 (B, n) caption ids (no BOS/EOS)   embeds: f32 (B, P, D)
 *   prefix_ids: i32 (B, P) (for debugging)
 * Weights (under the stage prefix; OmniMamba: llm_backbone.mamba.backbone.):
 * embedding.weight (V, D), caption_embed.cap_proj.fc1.weight (Hd, D),
 * caption_embed.cap_proj.fc2.weight (D, Hd), pos_embed (1, R, D), R >= P.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

struct tp_stage {
    struct omni_stage base;
    char *name;
    int64_t caption_len, pad_id, t2i_id, sot_id, eot_id, soi_id;
    char *key_emb, *key_fc1, *key_fc2, *key_pos;
    int wdtype;
    int64_t V, D, Hd, R;
    struct omni_tensor E, fc1, fc2, pos; /* (V,D) (Hd,D) (D,Hd) stage dtype; (1,R,D) f32 */
};

static void tp_destroy(struct omni_stage *st)
{
    struct tp_stage *s = (struct tp_stage *)st;
    if (!s)
        return;
    omni_tensor_release(&s->E);
    omni_tensor_release(&s->fc1);
    omni_tensor_release(&s->fc2);
    omni_tensor_release(&s->pos);
    free(s->key_emb);
    free(s->key_fc1);
    free(s->key_fc2);
    free(s->key_pos);
    free(s->name);
    free(s);
}

static int tp_create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct tp_stage *s = calloc(1, sizeof *s);
    int rc;
    if (!s || !(s->name = strdup(cfg->name ? cfg->name : "t2i_prefix"))) {
        rc = omni_error_set(err, OMNI_ENOMEM, "t2i_prefix: out of memory");
        goto fail;
    }
    const struct omni_params *p = cfg->params;
    if ((rc = omni_params_int(p, "caption_len", 68, &s->caption_len, err)) ||
        (rc = omni_params_int(p, "pad_id", 50277, &s->pad_id, err)) ||
        (rc = omni_params_int(p, "t2i_id", 50282, &s->t2i_id, err)) ||
        (rc = omni_params_int(p, "sot_id", 50280, &s->sot_id, err)) ||
        (rc = omni_params_int(p, "eot_id", 50281, &s->eot_id, err)) ||
        (rc = omni_params_int(p, "soi_id", 50278, &s->soi_id, err)))
        goto fail;
    if (s->caption_len < 1 || s->caption_len > 100000) {
        rc = omni_error_set(err, OMNI_EINVAL, "param caption_len: %lld is out of range (1..100000)",
                            (long long)s->caption_len);
        goto fail;
    }
    if (!(s->key_emb = strdup(omni_params_str(p, "embedding", "embedding.weight"))) ||
        !(s->key_fc1 = strdup(omni_params_str(p, "fc1", "caption_embed.cap_proj.fc1.weight"))) ||
        !(s->key_fc2 = strdup(omni_params_str(p, "fc2", "caption_embed.cap_proj.fc2.weight"))) ||
        !(s->key_pos = strdup(omni_params_str(p, "pos_embed", "pos_embed")))) {
        rc = omni_error_set(err, OMNI_ENOMEM, "t2i_prefix: out of memory");
        goto fail;
    }
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    tp_destroy(s ? &s->base : NULL);
    return rc;
}

/* Load prefix+key with the expected rank; dims < 0 are taken from the file. */
static int load_shaped(struct tp_stage *s, const struct omni_weights_ref *w, const char *key, int dtype, int ndim,
                       const int64_t *want, struct omni_tensor *out, struct omni_error *err)
{
    struct omni_weight_info info;
    char a[96], b[96];
    if (!w || !w->file)
        return omni_error_set(err, OMNI_ENOTFOUND, "needs weights ('%s') but none are configured", key);
    int rc = omni_weights_info(w->file, w->prefix, key, &info, err);
    if (rc)
        return rc;
    int ok = info.ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = want[d] < 0 || want[d] == info.shape[d];
    if (!ok) {
        size_t u = (size_t)snprintf(b, sizeof b, "[");
        for (int d = 0; d < ndim; d++)
            u += want[d] < 0 ? (size_t)snprintf(b + u, sizeof b - u, "%s*", d ? "," : "")
                             : (size_t)snprintf(b + u, sizeof b - u, "%s%lld", d ? "," : "", (long long)want[d]);
        snprintf(b + u, sizeof b - u, "]");
        return omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has shape %s, expected %s", w->prefix, key,
                              omni_shape_str(info.ndim, info.shape, a, sizeof a), b);
    }
    return omni_stage_load_weight(&s->base, w, key, dtype, ndim, info.shape, out, err);
}

static int tp_load(struct omni_stage *st, const struct omni_weights_ref *w, struct omni_error *err)
{
    struct tp_stage *s = (struct tp_stage *)st;
    struct omni_tensor E = {0}, fc1 = {0}, fc2 = {0}, pos = {0};
    const int64_t any2[2] = {-1, -1};
    int rc = load_shaped(s, w, s->key_emb, s->wdtype, 2, any2, &E, err);
    if (rc)
        goto fail;
    const int64_t V = E.shape[0], D = E.shape[1];
    const int64_t want_fc1[2] = {-1, D};
    if ((rc = load_shaped(s, w, s->key_fc1, s->wdtype, 2, want_fc1, &fc1, err)))
        goto fail;
    const int64_t Hd = fc1.shape[0], want_fc2[2] = {D, Hd}, want_pos[3] = {1, -1, D};
    if ((rc = load_shaped(s, w, s->key_fc2, s->wdtype, 2, want_fc2, &fc2, err)) ||
        (rc = load_shaped(s, w, s->key_pos, OMNI_DTYPE_F32, 3, want_pos, &pos, err)))
        goto fail;
    const int64_t P = s->caption_len + 4;
    if (pos.shape[1] < P) {
        rc = omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has %lld rows, fewer than the %lld prefix positions "
                            "(caption_len %lld + 4)", w->prefix, s->key_pos, (long long)pos.shape[1], (long long)P,
                            (long long)s->caption_len);
        goto fail;
    }
    const int64_t ids[5] = {s->pad_id, s->t2i_id, s->sot_id, s->eot_id, s->soi_id};
    static const char *const names[5] = {"pad_id", "t2i_id", "sot_id", "eot_id", "soi_id"};
    for (int i = 0; i < 5; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            rc = omni_error_set(err, OMNI_ERANGE, "param %s = %lld is outside the %lld rows of '%s%s'", names[i],
                                (long long)ids[i], (long long)V, w->prefix, s->key_emb);
            goto fail;
        }
    omni_tensor_release(&s->E);
    omni_tensor_release(&s->fc1);
    omni_tensor_release(&s->fc2);
    omni_tensor_release(&s->pos);
    s->E = E;
    s->fc1 = fc1;
    s->fc2 = fc2;
    s->pos = pos;
    s->V = V;
    s->D = D;
    s->Hd = Hd;
    s->R = pos.shape[1];
    return OMNI_OK;
fail:
    omni_tensor_release(&E);
    omni_tensor_release(&fc1);
    omni_tensor_release(&fc2);
    omni_tensor_release(&pos);
    return rc;
}

static int tp_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct tp_stage *s = (struct tp_stage *)st;
    const struct omni_tensor *cap = &io->in[0];
    struct omni_tensor pids = {0}, dids = {0}, e = {0}, h = {0}, out = {0};
    int rc;
    if (!s->E.buf)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    if ((rc = omni_check_tensor(st, "ids", cap, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), 2, NULL, err)))
        return rc;
    if (cap->device.type != OMNI_DEVICE_CPU)
        return omni_error_set(err, OMNI_EDEVICE, "stage '%s': input 'ids' must be on the host", s->name);
    const int64_t B = cap->shape[0], n_cap = cap->shape[1], L = s->caption_len, P = L + 4, D = s->D;
    if (B < 1)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'ids' has no rows", s->name);
    if (n_cap == 0)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s': the caption is empty (0 tokens); a text-to-image prompt needs at least "
                              "one token (upstream OmniMamba crashes on an empty caption)", s->name);
    /* A batch of captions of different lengths arrives left-padded with pad_id by the
     * tokenizer (its pad_left_id param): each row's caption starts after its leading pads. */
    const int32_t *ci = omni_tensor_data(cap);
    for (int64_t b = 0; b < B; b++) {
        int64_t start = 0;
        while (start < n_cap && ci[b * cap->strides[0] + start * cap->strides[1]] == (int32_t)s->pad_id)
            start++;
        if (start == n_cap)
            return omni_error_set(err, OMNI_EINVAL,
                                  "stage '%s': the caption of row %lld is empty (0 tokens); a text-to-image prompt "
                                  "needs at least one token (upstream OmniMamba crashes on an empty caption)",
                                  s->name, (long long)b);
        if (n_cap - start > L)
            OMNI_LOG(OMNI_LOG_WARN, "stage '%s': the caption of row %lld has %lld tokens but the prefix slot holds "
                     "%lld: keeping the first %lld and dropping %lld (as OmniMamba does)", s->name, (long long)b,
                     (long long)(n_cap - start), (long long)L, (long long)L, (long long)(n_cap - start - L));
    }

    const int64_t pshape[2] = {B, P};
    if ((rc = omni_tensor_alloc(&pids, OMNI_DTYPE_I32, 2, pshape, OMNI_CPU, err)))
        goto done;
    int32_t *pi = omni_tensor_data(&pids);
    for (int64_t b = 0; b < B; b++) {
        const int32_t *crow = ci + b * cap->strides[0];
        int64_t start = 0;
        while (start < n_cap && crow[start * cap->strides[1]] == (int32_t)s->pad_id)
            start++;
        const int64_t n = n_cap - start < L ? n_cap - start : L;
        int32_t *row = pi + b * P;
        row[0] = (int32_t)s->t2i_id;
        row[1] = (int32_t)s->sot_id;
        for (int64_t j = 0; j < L - n; j++)
            row[2 + j] = (int32_t)s->pad_id;
        for (int64_t j = 0; j < n; j++)
            row[2 + L - n + j] = crow[(start + j) * cap->strides[1]];
        row[P - 2] = (int32_t)s->eot_id;
        row[P - 1] = (int32_t)s->soi_id;
    }
    if (s->base.device.type == OMNI_DEVICE_CPU)
        omni_tensor_ref(&dids, &pids);
    else if ((rc = omni_tensor_copy_to(&dids, &pids, s->base.device, err)))
        goto done;
    const int64_t eshape[3] = {B, P, D}, hshape[3] = {B, P, s->Hd};
    if ((rc = omni_tensor_alloc(&e, OMNI_DTYPE_F32, 3, eshape, s->base.device, err)) ||
        (rc = omni_tensor_alloc(&h, OMNI_DTYPE_F32, 3, hshape, s->base.device, err)) ||
        (rc = omni_tensor_alloc(&out, OMNI_DTYPE_F32, 3, eshape, s->base.device, err)))
        goto done;
    if ((rc = omni_op_embedding(&e, &s->E, &dids, err)) || (rc = omni_op_linear(&h, &e, &s->fc1, NULL, err)) ||
        (rc = omni_op_gelu_tanh(&h, &h, err)) || (rc = omni_op_linear(&out, &h, &s->fc2, NULL, err)))
        goto done;
    struct omni_tensor pos = s->pos; /* borrowed (P, D) view: rows 0..P-1 of pos_embed[0] */
    pos.ndim = 2;
    pos.shape[0] = P;
    pos.shape[1] = D;
    pos.strides[0] = D;
    pos.strides[1] = 1;
    for (int64_t b = 0; b < B; b++) {
        struct omni_tensor ob = out; /* borrowed (P, D) view of batch row b */
        ob.ndim = 2;
        ob.shape[0] = P;
        ob.shape[1] = D;
        ob.strides[0] = D;
        ob.strides[1] = 1;
        ob.offset = out.offset + b * P * D * (int64_t)sizeof(float);
        if ((rc = omni_op_add(&ob, &ob, &pos, err)))
            goto done;
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = out;
    memset(&out, 0, sizeof out);
    if (io->n_out > 1) {
        omni_tensor_release(&io->out[1]);
        io->out[1] = pids;
        memset(&pids, 0, sizeof pids);
    }
done:
    if (rc)
        omni_error_prefix(err, "stage '%s': ", s->name);
    omni_tensor_release(&pids);
    omni_tensor_release(&dids);
    omni_tensor_release(&e);
    omni_tensor_release(&h);
    omni_tensor_release(&out);
    return rc;
}

static const struct omni_port_desc tp_ports[] = {
    {"ids", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,n", OMNI_PORT_HOST, "caption ids (no BOS/EOS)"},
    {"embeds", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,P,D", 0,
     "prefix embeddings (P = caption_len + 4 = 72), pos_embed added"},
    {"prefix_ids", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,P", OMNI_PORT_HOST,
     "the P prefix ids (for debugging)"},
};

static const struct omni_stage_ops tp_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = tp_create,
    .destroy = tp_destroy,
    .forward = tp_forward,
    .load = tp_load,
};

static const struct omni_plugin_desc tp_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "t2i_prefix",
    .version = "0.1.0",
    .description = "OmniMamba T2I prefix: [t2i, sot, left-padded caption, eot, soi] -> caption_embed MLP + pos_embed",
    .ops = &tp_ops,
    .ports = tp_ports,
    .n_ports = OMNI_ARRAY_LEN(tp_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc = "caption_len: caption slot length (default 68; prefix = caption_len + 4)\n"
                  "pad_id, t2i_id, sot_id, eot_id, soi_id: special ids (50277, 50282, 50280, 50281, 50278)\n"
                  "embedding, fc1, fc2, pos_embed: weight keys under prefix (embedding.weight, "
                  "caption_embed.cap_proj.fc1.weight, caption_embed.cap_proj.fc2.weight, pos_embed)\n",
};

OMNI_PLUGIN_DEFINE(tp_desc)
