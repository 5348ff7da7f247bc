/* Creating, loading and destroying stage instances; helpers for stage code. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memlog.h"
#include "stage_impl.h"

int omni__stage_create(struct omni__stage_inst *si, const struct omni__plugin *p, const char *name,
                       const struct omni__ynode *params, struct omni_device dev, int dtype,
                       const char *where, struct omni_error *err)
{
    memset(si, 0, sizeof *si);
    si->plugin = p;
    si->name = strdup(name);
    si->where = strdup(where ? where : name);
    si->device = dev;
    si->dtype = dtype;
    if (params && !(si->params = omni__ynode_clone(params))) {
        omni__stage_destroy(si);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    if (!si->name || !si->where) {
        omni__stage_destroy(si);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    si->params_view = omni__params_of(si->params);
    const struct omni_plugin_desc *d = p->desc;
    if (d->devices && !(d->devices & OMNI_DEVICE_BIT(dev.type))) {
        char ds[16];
        int rc = omni_error_set(err, OMNI_EDEVICE, "%s: stage '%s': plugin '%s' cannot run on %s",
                                si->where, name, d->name, omni_device_str(dev, ds, sizeof ds));
        omni__stage_destroy(si);
        return rc;
    }
    struct omni_stage_config cfg = {
        .size = sizeof cfg,
        .name = si->name,
        .type = d->name,
        .params = &si->params_view,
        .device = dev,
        .dtype = dtype,
        .where = si->where,
    };
    struct omni_stage *s = NULL;
    struct omni_error local;
    omni_error_clear(&local);
    int rc = d->ops->create(&cfg, &s, &local);
    if (rc || !s) {
        if (!rc)
            rc = omni_error_set(&local, OMNI_EPLUGIN, "create returned no stage");
        omni_error_set(err, rc, "%s: stage '%s' (%s): %s", si->where, name, d->name,
                       local.msg[0] ? local.msg : omni_status_str(rc));
        omni__stage_destroy(si);
        return rc;
    }
    s->plugin = d;
    s->name = si->name;
    s->device = dev;
    s->dtype = dtype;
    s->core_private = si;
    si->stage = s;
    return OMNI_OK;
}

int omni__stage_load(struct omni__stage_inst *si, struct omni_weights *w, const char *prefix,
                     const char *where, struct omni_error *err)
{
    const struct omni_stage_ops *o = si->plugin->desc->ops;
    if (!OMNI__HAS_OP(o, load))
        return OMNI_OK;
    struct omni_weights_ref ref = {w, prefix ? prefix : "", where ? where : si->where};
    struct omni_error local;
    omni_error_clear(&local);
    const char *prev_tag = omni__alloc_tag_set(si->name);
    int rc = o->load(si->stage, &ref, &local);
    omni__alloc_tag_set(prev_tag);
    if (rc)
        omni_error_set(err, rc, "%s: stage '%s' (%s): %s", where ? where : si->where, si->name,
                       si->plugin->desc->name, local.msg[0] ? local.msg : omni_status_str(rc));
    return rc;
}

void omni__stage_destroy(struct omni__stage_inst *si)
{
    if (si->stage)
        si->plugin->desc->ops->destroy(si->stage);
    omni__ynode_free(si->params);
    free(si->name);
    free(si->where);
    memset(si, 0, sizeof *si);
}

/* ---- helpers for stage code ----------------------------------------------------- */

int omni_check_tensor(const struct omni_stage *s, const char *port, const struct omni_tensor *t,
                      uint32_t dtypes, int ndim, const int64_t *dims, struct omni_error *err)
{
    const char *sn = s && s->name ? s->name : "?";
    if (!t || !t->buf)
        return omni_error_set(err, OMNI_EINVAL, "stage '%s': input '%s' is missing", sn, port);
    if (dtypes && !(dtypes & OMNI_DTYPE_BIT(t->dtype))) {
        char want[64];
        return omni_error_set(err, OMNI_EDTYPE, "stage '%s': port '%s' has dtype %s, expected %s", sn,
                              port, omni_dtype_name(t->dtype), omni_dtype_mask_str(dtypes, want, sizeof want));
    }
    int bad = ndim >= 0 && t->ndim != ndim;
    for (int i = 0; !bad && ndim > 0 && dims && i < ndim; i++)
        bad = dims[i] >= 0 && dims[i] != t->shape[i];
    if (bad) {
        char got[160], want[160];
        size_t used = 0;
        used += (size_t)snprintf(want, sizeof want, "[");
        for (int i = 0; i < ndim; i++) {
            if (dims && dims[i] >= 0)
                used += (size_t)snprintf(want + used, sizeof want - used, "%s%lld", i ? "," : "", (long long)dims[i]);
            else
                used += (size_t)snprintf(want + used, sizeof want - used, "%s*", i ? "," : "");
        }
        snprintf(want + used, sizeof want - used, "]");
        return omni_error_set(err, OMNI_ESHAPE, "stage '%s': port '%s' has shape %s, expected %s", sn,
                              port, omni_shape_str(t->ndim, t->shape, got, sizeof got), want);
    }
    return OMNI_OK;
}

int omni_stage_weight_dtype(const struct omni_stage_config *cfg, int *dtype, struct omni_error *err)
{
    int d = cfg->dtype == OMNI_DTYPE_INVALID ? OMNI_DTYPE_F32 : cfg->dtype;
    if (d != OMNI_DTYPE_F32 && d != OMNI_DTYPE_F16 && d != OMNI_DTYPE_BF16)
        return omni_error_set(err, OMNI_EDTYPE, "dtype %s is not supported (f32, f16 or bf16)", omni_dtype_name(d));
    *dtype = d;
    return OMNI_OK;
}

int omni_stage_load_weight(const struct omni_stage *s, const struct omni_weights_ref *w,
                           const char *key, int dtype, int ndim, const int64_t *shape,
                           struct omni_tensor *out, struct omni_error *err)
{
    memset(out, 0, sizeof *out);
    if (!w || !w->file)
        return omni_error_set(err, OMNI_ENOTFOUND, "stage '%s' needs weights ('%s%s') but none are configured (add weights: to the stage)",
                              s && s->name ? s->name : "?", w && w->prefix ? w->prefix : "", key);
    struct omni_tensor host;
    int rc = omni_weights_load(w->file, w->prefix, key, dtype, ndim, shape, &host, err);
    if (rc)
        return rc;
    if (!s || s->device.type == OMNI_DEVICE_CPU) {
        *out = host;
        return OMNI_OK;
    }
    rc = omni_tensor_copy_to(out, &host, s->device, err);
    omni_tensor_release(&host);
    return rc;
}

int omni_ctx_counter(const struct omni_run_ctx *ctx, int which, struct omni_device dev,
                     struct omni_tensor *out, struct omni_error *err)
{
    memset(out, 0, sizeof *out);
    const int64_t *p = NULL;
    if (ctx && ctx->size >= offsetof(struct omni_run_ctx, step_dev) + sizeof ctx->step_dev)
        p = which ? ctx->step_dev : ctx->position_dev;
    if (!p || dev.type != OMNI_DEVICE_CUDA)
        return omni_error_set(err, OMNI_ENOTFOUND, "no device %s counter in this call",
                              which ? "step" : "position");
    struct omni_buffer *b = omni_buffer_wrap(dev, (void *)p, sizeof(int64_t), OMNI_BUFFER_EXTERNAL,
                                             NULL, NULL, err);
    if (!b)
        return err && err->status ? err->status : OMNI_ENOMEM;
    const int64_t shape[1] = {1};
    int rc = omni_tensor_view(out, b, 0, OMNI_DTYPE_I64, 1, shape, err);
    omni_buffer_unref(b); /* the view holds its own reference */
    return rc;
}
