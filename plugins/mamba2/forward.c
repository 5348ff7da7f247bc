/* plugins/mamba2/forward.c - the forward pass (prefill) and the decode step
 * of the Mamba-2 stage (see mamba2.c for the model and the state layout). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba2.h"
#include "omni/ops/decode.h"

/* ---- the forward pass ----------------------------------------------------------------------- */

/* Input checks; returns B and T. */
static int m2_inputs(struct m2_stage *s, const struct omni_io *io, int is_step, int64_t *B,
                     int64_t *T, const struct omni_tensor **src, int *is_ids,
                     struct omni_error *err)
{
    const struct omni_tensor *ids = io->n_in > PORT_IDS ? &io->in[PORT_IDS] : NULL;
    const struct omni_tensor *emb = io->n_in > PORT_EMBEDS ? &io->in[PORT_EMBEDS] : NULL;
    int have_ids = ids && ids->buf, have_emb = emb && emb->buf;
    int rc;
    if (have_ids == have_emb)
        return omni_error_set(err, OMNI_EINVAL,
                              "stage '%s': exactly one of the inputs 'ids' and 'embeds' must be "
                              "given per call (%s)",
                              s->name, have_ids ? "both were given" : "neither was given");
    if (have_ids) {
        const int64_t dims[2] = {-1, -1};
        if ((rc = omni_check_tensor(&s->base, "ids", ids, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), 2, dims,
                                    err)))
            return rc;
        if (!s->embedding.buf)
            return omni_error_set(
                err, OMNI_ENOTFOUND,
                s->load_embedding
                    ? "stage '%s': token ids arrived on 'ids' but no embedding table was loaded "
                      "('%sembedding.weight' is not in the weights); feed 'embeds' instead"
                    : "stage '%s': token ids arrived on 'ids' but the embedding table was not "
                      "loaded (param embedding: false; '%sembedding.weight'); feed 'embeds' or "
                      "drop the param",
                s->name, s->prefix ? s->prefix : "");
        *B = ids->shape[0];
        *T = ids->shape[1];
        *src = ids;
        *is_ids = 1;
    } else {
        const int64_t dims[3] = {-1, -1, s->dim.d_model};
        if ((rc = omni_check_tensor(&s->base, "embeds", emb, OMNI_DTYPE_BIT(OMNI_DTYPE_F32), 3,
                                    dims, err)))
            return rc;
        *B = emb->shape[0];
        *T = emb->shape[1];
        *src = emb;
        *is_ids = 0;
    }
    if (*B <= 0 || *T <= 0)
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': input '%s' is empty (B=%lld, T=%lld)", s->name,
                              have_ids ? "ids" : "embeds", (long long)*B, (long long)*T);
    if (is_step && *T != 1)
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': step takes one token per row (T must be 1), got '%s' "
                              "with T=%lld; use forward for a prefill",
                              s->name, have_ids ? "ids" : "embeds", (long long)*T);
    return OMNI_OK;
}

/* The LoRA factors of layer l from the one active adapter, when it exposes them. */
static int m2_lowrank(struct omni_stage *ad, int64_t l, const struct omni_tensor **a,
                      const struct omni_tensor **b, float *scale, struct omni_error *err)
{
    const struct omni_adapter_ops *ao = ad->plugin->adapter;
    if (ao->size < offsetof(struct omni_adapter_ops, lowrank) + sizeof ao->lowrank || !ao->lowrank)
        return OMNI_EUNSUPPORTED;
    return ao->lowrank(ad, "in_proj", (int)l, a, b, scale, err);
}

/* Can this step take the fused decode ops (see the header comment)? */
static int m2_fused_ok(struct m2_stage *s, struct omni_stage **act, int n_act, int64_t M,
                       int *ok, struct omni_error *err)
{
    const struct m2_dims *d = &s->dim;
    *ok = 0;
    if (M > OMNI_DECODE_MAX_M || d->ngroups != 1 || d->d_state > 256 || d->headdim % 8 ||
        n_act > 1 ||
        (s->base.device.type != OMNI_DEVICE_CPU && s->wdtype != OMNI_DTYPE_BF16))
        return OMNI_OK;
    for (int64_t l = 0; l < d->n_layer && n_act == 1; l++) {
        const struct omni_tensor *a, *b;
        float scale;
        struct omni_error e2 = {0};
        if (m2_lowrank(act[0], l, &a, &b, &scale, &e2) != OMNI_OK)
            return OMNI_OK; /* not foldable: apply() on the op-by-op path */
        if (a->dtype != OMNI_DTYPE_F32 || b->dtype != OMNI_DTYPE_F32 || a->ndim != 2 ||
            b->ndim != 2 || a->shape[0] > OMNI_DECODE_MAX_R || a->shape[1] != d->d_model ||
            b->shape[0] != s->d_in_proj || b->shape[1] != a->shape[0])
            return OMNI_OK;
    }
    (void)err;
    *ok = 1;
    return OMNI_OK;
}

/* All layers of a fused decode step. On return *resid views the buffer that holds the
 * residual stream (it alternates between SC_RESID and SC_RES2) and mix the last
 * layer's output. */
static int m2_fused_layers(struct m2_stage *s, struct m2_state *x, struct omni_stage **act,
                           int n_act, int64_t M, struct omni_tensor *resid,
                           const struct omni_tensor *normed, struct omni_tensor *zx,
                           struct omni_tensor *xbc_o, struct omni_tensor *g,
                           struct omni_tensor *mix, struct omni_error *err)
{
    const struct m2_dims *d = &s->dim;
    const int64_t D = d->d_model, E = d->d_inner, H = d->nheads, P = d->headdim;
    const int64_t N = d->d_state, K = d->d_conv, B = M, Cd = s->conv_dim;
    const struct omni_device dev = s->base.device;
    /* channels per partial sum of g²: larger chunks when there are many rows */
    int64_t chunk = 8;
    if (P % 32 == 0 && B * E / 32 >= 1024)
        chunk = 32;
    else if (P % 16 == 0 && B * E / 16 >= 1024)
        chunk = 16;
    struct omni_tensor res[2], part, u;
    {
        const int64_t sh_MD[2] = {M, D}, sh_p[2] = {M, E / chunk}, sh_u[2] = {M, 1};
        res[0] = *resid;
        m2_buf_view(&res[1], x->scratch[SC_RES2], dev, 2, sh_MD);
        m2_buf_view(&part, x->scratch[SC_PART], dev, 2, sh_p);
        m2_buf_view(&u, x->scratch[SC_U], dev, 2, sh_u);
    }
    int cur = 0, rc;
    for (int64_t l = 0; l < d->n_layer; l++) {
        struct m2_layer *w = &s->layers[l];
        const struct omni_tensor *la = NULL, *lb = NULL;
        float lscale = 0.0f;
        if (n_act == 1 && (rc = m2_lowrank(act[0], l, &la, &lb, &lscale, err)))
            return omni_error_prefix(err, "stage '%s' layer %lld: ", s->name, (long long)l);
        if (la) {
            const int64_t sh_u[2] = {M, la->shape[0]};
            m2_buf_view(&u, x->scratch[SC_U], dev, 2, sh_u);
        }
        struct omni_tensor cs, ss;
        const int64_t sh_cs[3] = {B, Cd, K}, st_cs[3] = {Cd * K, K, 1};
        const int64_t sh_ss[4] = {B, H, P, N}, st_ss[4] = {H * P * N, P * N, N, 1};
        m2_view(&cs, &x->conv, l * B * Cd * K, 3, sh_cs, st_cs);
        m2_view(&ss, &x->ssm, l * B * H * P * N, 4, sh_ss, st_ss);

        if ((rc = omni_op_decode_norm((struct omni_tensor *)normed, &res[cur ^ 1], &res[cur],
                                      l ? mix : NULL, &w->norm_w, (float)s->eps, la,
                                      la ? &u : NULL, err)))
            goto fail;
        cur ^= 1;
        const struct omni_decode_epilogue ein = {
            .u = la ? &u : NULL, .lb = lb, .lr_scale = lscale,
            .conv_out = xbc_o, .conv_state = &cs, .conv_w = &w->conv_w,
            .conv_b = w->conv_b.buf ? &w->conv_b : NULL, .c0 = E,
        };
        if ((rc = omni_op_decode_gemv(zx, normed, &w->in_proj, NULL, 1.0f, &ein, err)))
            goto fail;
        if ((rc = omni_op_decode_mix(g, &part, zx, xbc_o, &w->A, &w->Dskip, &w->dt_bias,
                                     &w->gnorm_w, &ss, d->ngroups, err)))
            goto fail;
        const struct omni_decode_epilogue eout = {.part = &part, .count = (float)E,
                                                  .eps = (float)s->eps};
        if ((rc = omni_op_decode_gemv(mix, g, &w->out_proj, NULL, 1.0f, &eout, err)))
            goto fail;
        continue;
    fail:
        return omni_error_prefix(err, "stage '%s' layer %lld: ", s->name, (long long)l);
    }
    *resid = res[cur];
    return OMNI_OK;
}

static int m2_run(struct omni_stage *st, void *state, struct omni_io *io, int is_step,
                  struct omni_error *err)
{
    struct m2_stage *s = (struct m2_stage *)st;
    struct m2_state *x = state;
    struct omni_stage *act[M2_MAX_ADAPTERS];
    int n_act = 0, is_ids = 0, rc;
    int64_t B = 0, T = 0;
    const struct omni_tensor *src = NULL;

    if (!s->loaded)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': weights are not loaded", s->name);
    if (!x)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': mamba2 needs a request state",
                              s->name);
    if (io->n_out < 1)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': output 'hidden' is missing",
                              s->name);
    if ((rc = m2_inputs(s, io, is_step, &B, &T, &src, &is_ids, err)))
        return rc;
    if ((rc = m2_active_adapters(s, io->ctx, is_step, act, &n_act, err)))
        return rc;
    if (x->batch == 0) {
        if ((rc = m2_state_alloc(s, x, B, err)))
            return rc;
    } else if (x->batch != B) {
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': the request state holds batch %lld but the input has "
                              "B=%lld",
                              s->name, (long long)x->batch, (long long)B);
    }
    /* a prefill from scratch: the scan takes its zero state without reading it */
    const int from_zero = !is_step && (!io->ctx || io->ctx->position <= 0);
    if ((rc = m2_state_unpark(s, x, from_zero, err)))
        return rc;
    if (from_zero) {
        if ((rc = m2_state_zero(s, x, err)))
            return rc;
    }

    const struct m2_dims *d = &s->dim;
    const int64_t D = d->d_model, E = d->d_inner, H = d->nheads, P = d->headdim;
    const int64_t G = d->ngroups, N = d->d_state, K = d->d_conv, L = d->n_layer;
    const int64_t F = s->d_in_proj, Cd = s->conv_dim, M = B * T;
    const int all = s->all_positions;
    const int64_t out_rows = all ? M : B;
    if ((rc = m2_scratch(s, x, M, out_rows * D, err)))
        return rc;

    const struct omni_device dev = s->base.device;
    struct omni_tensor resid, normed, zx, xbc, y, yn, mix, hid;
    {
        const int64_t sh_MD[2] = {M, D}, sh_MF[2] = {M, F}, sh_MC[2] = {M, Cd};
        const int64_t sh_ME[2] = {M, E};
        m2_buf_view(&resid, x->scratch[SC_RESID], dev, 2, sh_MD);
        m2_buf_view(&normed, x->scratch[SC_NORMED], dev, 2, sh_MD);
        m2_buf_view(&zx, x->scratch[SC_ZXBCDT], dev, 2, sh_MF);
        m2_buf_view(&xbc, x->scratch[SC_XBC], dev, 2, sh_MC);
        m2_buf_view(&y, x->scratch[SC_Y], dev, 2, sh_ME);
        m2_buf_view(&yn, x->scratch[SC_YN], dev, 2, sh_ME);
        m2_buf_view(&mix, x->scratch[SC_MIX], dev, 2, sh_MD);
    }

    /* r = embedding(ids) or embeds */
    if (is_ids) {
        struct omni_tensor r3;
        const int64_t sh[3] = {B, T, D};
        m2_buf_view(&r3, x->scratch[SC_RESID], dev, 3, sh);
        if ((rc = omni_op_embedding(&r3, &s->embedding, src, err)))
            goto fail;
    } else if ((rc = omni_op_copy(&resid, src, err))) {
        goto fail;
    }

    /* Views into zxbcdt (M, F) = [z | xBC | dt], and into xbc (M, Cd) = [x | B | C]. */
    struct omni_tensor z, xBC, dt, xs, Bm, Cm;
    {
        const int64_t sh_z[2] = {M, E}, st_z[2] = {F, 1};
        m2_view(&z, &zx, 0, 2, sh_z, st_z);
    }
    if (is_step) {
        const int64_t sh_x[2] = {B, Cd}, st_x[2] = {F, 1};
        const int64_t sh_dt[2] = {B, H}, st_dt[2] = {F, 1};
        const int64_t sh_h[3] = {B, H, P}, st_h[3] = {Cd, P, 1};
        const int64_t sh_g[3] = {B, G, N}, st_g[3] = {Cd, N, 1};
        m2_view(&xBC, &zx, E, 2, sh_x, st_x);
        m2_view(&dt, &zx, E + Cd, 2, sh_dt, st_dt);
        m2_view(&xs, &xbc, 0, 3, sh_h, st_h);
        m2_view(&Bm, &xbc, E, 3, sh_g, st_g);
        m2_view(&Cm, &xbc, E + G * N, 3, sh_g, st_g);
    } else {
        const int64_t sh_x[3] = {B, T, Cd}, st_x[3] = {T * F, F, 1};
        const int64_t sh_dt[3] = {B, T, H}, st_dt[3] = {T * F, F, 1};
        const int64_t sh_h[4] = {B, T, H, P}, st_h[4] = {T * Cd, Cd, P, 1};
        const int64_t sh_g[4] = {B, T, G, N}, st_g[4] = {T * Cd, Cd, N, 1};
        m2_view(&xBC, &zx, E, 3, sh_x, st_x);
        m2_view(&dt, &zx, E + Cd, 3, sh_dt, st_dt);
        m2_view(&xs, &xbc, 0, 4, sh_h, st_h);
        m2_view(&Bm, &xbc, E, 4, sh_g, st_g);
        m2_view(&Cm, &xbc, E + G * N, 4, sh_g, st_g);
    }
    struct omni_tensor xbc_o, y_o; /* op-shaped outputs over the same buffers */
    if (is_step) {
        const int64_t sh_c[2] = {B, Cd}, sh_y[3] = {B, H, P};
        m2_buf_view(&xbc_o, x->scratch[SC_XBC], dev, 2, sh_c);
        m2_buf_view(&y_o, x->scratch[SC_Y], dev, 3, sh_y);
    } else {
        const int64_t sh_c[3] = {B, T, Cd}, sh_y[4] = {B, T, H, P};
        m2_buf_view(&xbc_o, x->scratch[SC_XBC], dev, 3, sh_c);
        m2_buf_view(&y_o, x->scratch[SC_Y], dev, 4, sh_y);
    }

    x->dirty = 1;
    int fused = 0;
    if (is_step && (rc = m2_fused_ok(s, act, n_act, M, &fused, err)))
        goto fail;
    if (fused) {
        if ((rc = m2_fused_layers(s, x, act, n_act, M, &resid, &normed, &zx, &xbc_o, &yn, &mix,
                                  err)))
            goto fail;
    }
    for (int64_t l = 0; l < (fused ? 0 : L); l++) {
        struct m2_layer *w = &s->layers[l];
        struct omni_tensor cs, ss;
        const int64_t sh_cs[3] = {B, Cd, K}, st_cs[3] = {Cd * K, K, 1};
        const int64_t sh_ss[4] = {B, H, P, N}, st_ss[4] = {H * P * N, P * N, N, 1};
        m2_view(&cs, &x->conv, l * B * Cd * K, 3, sh_cs, st_cs);
        m2_view(&ss, &x->ssm, l * B * H * P * N, 4, sh_ss, st_ss);

        if ((rc = omni_op_add_rmsnorm(&normed, &resid, l ? &mix : NULL, &w->norm_w,
                                      (float)s->eps, err)))
            goto fail;
        if ((rc = omni_op_matmul(&zx, &normed, &w->in_proj, NULL, 1.0f, 0.0f, err)))
            goto fail;
        for (int a = 0; a < n_act; a++) {
            struct omni_stage *ad = act[a];
            if ((rc = ad->plugin->adapter->apply(ad, "in_proj", (int)l, &normed, &zx, err))) {
                omni_error_prefix(err, "stage '%s' layer %lld: adapter '%s': ", s->name,
                                  (long long)l, ad->name ? ad->name : "?");
                goto fail;
            }
        }
        /* a 16-bit state goes through the layer's f32 copy around the scan or step */
        struct omni_tensor *sf = x->ssm32.buf ? &x->ssm32 : &ss;
        if (sf != &ss && !from_zero && (rc = omni_op_copy(sf, &ss, err)))
            goto fail;
        if (is_step) {
            if ((rc = omni_op_conv1d_step(&xbc_o, &xBC, &w->conv_w, &w->conv_b, &cs, 1, err)))
                goto fail;
            if ((rc = omni_op_ssd_step(&y_o, &xs, &dt, &w->A, &Bm, &Cm, &w->Dskip, &w->dt_bias,
                                       sf, err)))
                goto fail;
        } else {
            if ((rc = omni_op_conv1d_causal(&xbc_o, &xBC, &w->conv_w, &w->conv_b, &cs, 1, err)))
                goto fail;
            if ((rc = (from_zero ? omni_op_ssd_scan_from_zero : omni_op_ssd_scan)(
                     &y_o, &xs, &dt, &w->A, &Bm, &Cm, &w->Dskip, &w->dt_bias, sf, s->chunk, err)))
                goto fail;
        }
        if (sf != &ss && (rc = omni_op_copy(&ss, sf, err)))
            goto fail;
        if ((rc = omni_op_gated_rmsnorm(&yn, &y, &z, &w->gnorm_w, (float)s->eps, E / G, err)))
            goto fail;
        if ((rc = omni_op_matmul(&mix, &yn, &w->out_proj, NULL, 1.0f, 0.0f, err)))
            goto fail;
    }

    /* norm_f over r + m_last; the output keeps the last position unless all_positions. */
    if (all || T == 1) {
        const int64_t sh[3] = {B, T, D}, sh2[2] = {M, D};
        struct omni_tensor o2;
        m2_buf_view(&o2, x->out, dev, 2, sh2);
        if ((rc = omni_op_add_rmsnorm(&o2, &resid, &mix, &s->norm_f, (float)s->eps, err)))
            goto fail;
        if ((rc = omni_tensor_view(&hid, x->out, 0, OMNI_DTYPE_F32, 3, sh, err)))
            goto fail;
    } else {
        const int64_t sh[3] = {B, 1, D}, sh_row[2] = {1, D}, st_row[2] = {D, 1};
        if ((rc = omni_op_add_rmsnorm(&normed, &resid, &mix, &s->norm_f, (float)s->eps, err)))
            goto fail;
        if ((rc = omni_tensor_view(&hid, x->out, 0, OMNI_DTYPE_F32, 3, sh, err)))
            goto fail;
        for (int64_t b = 0; b < B; b++) {
            struct omni_tensor src_row, dst_row;
            m2_view(&src_row, &normed, (b * T + T - 1) * D, 2, sh_row, st_row);
            m2_view(&dst_row, &hid, b * D, 2, sh_row, st_row);
            if ((rc = omni_op_copy(&dst_row, &src_row, err))) {
                omni_tensor_release(&hid);
                goto fail;
            }
        }
    }
    omni_tensor_release(&io->out[PORT_HIDDEN]);
    io->out[PORT_HIDDEN] = hid;
    io->advance = T;
    return OMNI_OK;
fail:
    return rc;
}

int m2_forward(struct omni_stage *st, void *state, struct omni_io *io,
                      struct omni_error *err)
{
    return m2_run(st, state, io, 0, err);
}

int m2_step(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err)
{
    return m2_run(st, state, io, 1, err);
}
