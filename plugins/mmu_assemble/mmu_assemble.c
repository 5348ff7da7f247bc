/* plugins/mmu_assemble/mmu_assemble.c - OmniMamba's image-understanding
 * input sequence (spec/omnimamba.md §6.6):
 *   X = [E[<|mmu|>], E[<|soi|>], V[0..Nv-1], E[<|eoi|>], E[<|sot|>], E[q_0..q_{n-1}]]
 *   X[p] += mmu_pos_embed[0, p]    for every position p (also the visual ones)
 *   visual: f32 (B, Nv, D) (the projector output; Nv = 729)
 *   ids:    i32 (B, n) question ids (the tokenizer applied "USER: {} ASSISTANT:")
 *   embeds: f32 (B, L, D), L = Nv + 4 + n
 * A sequence longer than mmu_pos_embed (1500 rows) is refused before any
 * work, naming the lengths. No <|eot|> is appended.
 * Weights: embedding.weight (V, D), mmu_pos_embed (1, R, D).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

struct ma_stage {
    struct omni_stage base;
    char *name;
    char *key_emb, *key_pos;
    int64_t mmu_id, soi_id, eoi_id, sot_id;
    int wdtype;
    int64_t V, D, R;
    struct omni_tensor E, pos; /* (V, D) stage dtype; (1, R, D) f32 */
};

static void ma_destroy(struct omni_stage *st)
{
    struct ma_stage *s = (struct ma_stage *)st;
    if (!s)
        return;
    omni_tensor_release(&s->E);
    omni_tensor_release(&s->pos);
    free(s->key_emb);
    free(s->key_pos);
    free(s->name);
    free(s);
}

static int ma_create(const struct omni_stage_config *cfg, struct omni_stage **out, struct omni_error *err)
{
    struct ma_stage *s = calloc(1, sizeof *s);
    const struct omni_params *p = cfg->params;
    int rc;
    if (!s || !(s->name = strdup(cfg->name ? cfg->name : "mmu_assemble")) ||
        !(s->key_emb = strdup(omni_params_str(p, "embedding", "embedding.weight"))) ||
        !(s->key_pos = strdup(omni_params_str(p, "pos_embed", "mmu_pos_embed")))) {
        rc = omni_error_set(err, OMNI_ENOMEM, "mmu_assemble: out of memory");
        goto fail;
    }
    if ((rc = omni_params_int(p, "mmu_id", 50283, &s->mmu_id, err)) ||
        (rc = omni_params_int(p, "soi_id", 50278, &s->soi_id, err)) ||
        (rc = omni_params_int(p, "eoi_id", 50279, &s->eoi_id, err)) ||
        (rc = omni_params_int(p, "sot_id", 50280, &s->sot_id, err)))
        goto fail;
    if ((rc = omni_stage_weight_dtype(cfg, &s->wdtype, err)))
        goto fail;
    *out = &s->base;
    return OMNI_OK;
fail:
    ma_destroy(s ? &s->base : NULL);
    return rc;
}

static int ma_load(struct omni_stage *st, const struct omni_weights_ref *w, struct omni_error *err)
{
    struct ma_stage *s = (struct ma_stage *)st;
    struct omni_weight_info ie, ip;
    struct omni_tensor E = {0}, pos = {0};
    char a[96], b[96];
    int rc;
    if (!w || !w->file)
        return omni_error_set(err, OMNI_ENOTFOUND, "needs weights ('%s', '%s') but none are configured", s->key_emb,
                              s->key_pos);
    if ((rc = omni_weights_info(w->file, w->prefix, s->key_emb, &ie, err)) ||
        (rc = omni_weights_info(w->file, w->prefix, s->key_pos, &ip, err)))
        return rc;
    if (ie.ndim != 2)
        return omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has shape %s, expected (V, D)", w->prefix, s->key_emb,
                              omni_shape_str(ie.ndim, ie.shape, a, sizeof a));
    if (ip.ndim != 3 || ip.shape[0] != 1 || ip.shape[2] != ie.shape[1])
        return omni_error_set(err, OMNI_ESHAPE, "weight '%s%s' has shape %s, expected [1,R,%lld] (D of '%s%s' %s)",
                              w->prefix, s->key_pos, omni_shape_str(ip.ndim, ip.shape, a, sizeof a),
                              (long long)ie.shape[1], w->prefix, s->key_emb,
                              omni_shape_str(ie.ndim, ie.shape, b, sizeof b));
    const int64_t ids[4] = {s->mmu_id, s->soi_id, s->eoi_id, s->sot_id};
    static const char *const names[4] = {"mmu_id", "soi_id", "eoi_id", "sot_id"};
    for (int i = 0; i < 4; i++)
        if (ids[i] < 0 || ids[i] >= ie.shape[0])
            return omni_error_set(err, OMNI_ERANGE, "param %s = %lld is outside the %lld rows of '%s%s'", names[i],
                                  (long long)ids[i], (long long)ie.shape[0], w->prefix, s->key_emb);
    if ((rc = omni_stage_load_weight(st, w, s->key_emb, s->wdtype, 2, ie.shape, &E, err)) ||
        (rc = omni_stage_load_weight(st, w, s->key_pos, OMNI_DTYPE_F32, 3, ip.shape, &pos, err))) {
        omni_tensor_release(&E);
        return rc;
    }
    omni_tensor_release(&s->E);
    omni_tensor_release(&s->pos);
    s->E = E;
    s->pos = pos;
    s->V = ie.shape[0];
    s->D = ie.shape[1];
    s->R = ip.shape[1];
    return OMNI_OK;
}

/* Borrowed (n, D) view of rows [r0, r0 + n) of a contiguous (..., D) tensor,
 * row index counted over all leading dims. */
static struct omni_tensor rows(const struct omni_tensor *t, int64_t r0, int64_t n, int64_t D)
{
    struct omni_tensor v = *t;
    v.ndim = 2;
    v.shape[0] = n;
    v.shape[1] = D;
    v.strides[0] = D;
    v.strides[1] = 1;
    v.offset = t->offset + r0 * D * (int64_t)omni_dtype_size(t->dtype);
    return v;
}

static int ma_forward(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    struct ma_stage *s = (struct ma_stage *)st;
    const struct omni_tensor *vis = &io->in[0], *q = &io->in[1];
    struct omni_tensor tids = {0}, dids = {0}, T = {0}, out = {0}, vc = {0};
    int rc;
    if (!s->E.buf)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    const int64_t D = s->D;
    const int64_t vdims[3] = {-1, -1, D};
    if ((rc = omni_check_tensor(st, "visual", vis, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 3, vdims, err)))
        return rc;
    const int64_t B = vis->shape[0], Nv = vis->shape[1];
    const int64_t qdims[2] = {B, -1};
    if ((rc = omni_check_tensor(st, "ids", q, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), 2, qdims, err)))
        return rc;
    if (q->device.type != OMNI_DEVICE_CPU)
        return omni_error_set(err, OMNI_EDEVICE, "stage '%s': input 'ids' must be on the host", s->name);
    const int64_t nq = q->shape[1], L = Nv + 4 + nq, nt = 4 + nq;
    if (L > s->R)
        return omni_error_set(err, OMNI_ERANGE,
                              "stage '%s': the MMU sequence would be %lld positions (4 special tokens + %lld visual "
                              "+ %lld question tokens) but mmu_pos_embed has %lld rows; shorten the question to at "
                              "most %lld tokens",
                              s->name, (long long)L, (long long)Nv, (long long)nq, (long long)s->R,
                              (long long)(s->R - Nv - 4 > 0 ? s->R - Nv - 4 : 0));
    if (B < 1)
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': input 'visual' has no rows", s->name);

    /* text ids [mmu, soi, eoi, sot, q...] per row, embedded in one gather */
    const int64_t tshape[2] = {B, nt};
    if ((rc = omni_tensor_alloc(&tids, OMNI_DTYPE_I32, 2, tshape, OMNI_CPU, err)))
        goto done;
    int32_t *ti = omni_tensor_data(&tids);
    const int32_t *qi = omni_tensor_data(q);
    for (int64_t b = 0; b < B; b++) {
        int32_t *r = ti + b * nt;
        r[0] = (int32_t)s->mmu_id;
        r[1] = (int32_t)s->soi_id;
        r[2] = (int32_t)s->eoi_id;
        r[3] = (int32_t)s->sot_id;
        for (int64_t j = 0; j < nq; j++)
            r[4 + j] = qi[b * q->strides[0] + j * q->strides[1]];
    }
    if (s->base.device.type == OMNI_DEVICE_CPU)
        omni_tensor_ref(&dids, &tids);
    else if ((rc = omni_tensor_copy_to(&dids, &tids, s->base.device, err)))
        goto done;
    const int64_t Tshape[3] = {B, nt, D}, oshape[3] = {B, L, D};
    if ((rc = omni_tensor_alloc(&T, OMNI_DTYPE_F32, 3, Tshape, s->base.device, err)) ||
        (rc = omni_tensor_alloc(&out, OMNI_DTYPE_F32, 3, oshape, s->base.device, err)) ||
        (rc = omni_op_embedding(&T, &s->E, &dids, err)))
        goto done;
    if (omni_tensor_is_contiguous(vis))
        omni_tensor_ref(&vc, vis);
    else if ((rc = omni_tensor_copy_to(&vc, vis, vis->device, err)))
        goto done;
    const struct omni_tensor pos = rows(&s->pos, 0, L, D);
    for (int64_t b = 0; b < B; b++) {
        const int64_t o = b * L, t = b * nt;
        struct omni_tensor d0 = rows(&out, o, 2, D), s0 = rows(&T, t, 2, D);
        struct omni_tensor d1 = rows(&out, o + 2, Nv, D), s1 = rows(&vc, b * Nv, Nv, D);
        struct omni_tensor d2 = rows(&out, o + 2 + Nv, nt - 2, D), s2 = rows(&T, t + 2, nt - 2, D);
        struct omni_tensor ob = rows(&out, o, L, D);
        if ((rc = omni_op_copy(&d0, &s0, err)) || (Nv > 0 && (rc = omni_op_copy(&d1, &s1, err))) ||
            (rc = omni_op_copy(&d2, &s2, err)) || (rc = omni_op_add(&ob, &ob, &pos, err)))
            goto done;
    }
    omni_tensor_release(&io->out[0]);
    io->out[0] = out;
    memset(&out, 0, sizeof out);
done:
    if (rc)
        omni_error_prefix(err, "stage '%s': ", s->name);
    omni_tensor_release(&tids);
    omni_tensor_release(&dids);
    omni_tensor_release(&T);
    omni_tensor_release(&vc);
    omni_tensor_release(&out);
    return rc;
}

static const struct omni_port_desc ma_ports[] = {
    {"visual", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,Nv,D", 0, "projected visual embeddings"},
    {"ids", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,n", OMNI_PORT_HOST,
     "question ids (\"USER: {q} ASSISTANT:\" tokenized, no BOS/EOS)"},
    {"embeds", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), "B,L,D", 0,
     "[mmu, soi, visual, eoi, sot, question] + mmu_pos_embed"},
};

static const struct omni_stage_ops ma_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = ma_create,
    .destroy = ma_destroy,
    .forward = ma_forward,
    .load = ma_load,
};

static const struct omni_plugin_desc ma_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "mmu_assemble",
    .version = "0.1.0",
    .description = "OmniMamba MMU prefill input: [mmu, soi, visual, eoi, sot, question] + mmu_pos_embed",
    .ops = &ma_ops,
    .ports = ma_ports,
    .n_ports = OMNI_ARRAY_LEN(ma_ports),
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = NULL,
    .params_doc = "mmu_id, soi_id, eoi_id, sot_id: special ids (50283, 50278, 50279, 50280)\n"
                  "embedding, pos_embed: weight keys under prefix (embedding.weight, mmu_pos_embed)\n",
};

OMNI_PLUGIN_DEFINE(ma_desc)
