/* plugins/lora/lora.c - a low-rank adapter stage (LoRA) for a linear of another stage.
 *
 * Computes, for layer i of the linear it is attached to:
 *   y[M, N] += scale * ((x[M, K] · A_iᵀ) · B_iᵀ)     A_i: (r, K)  B_i: (N, r)
 * in upstream's order (spec/omnimamba.md §3): x·Aᵀ, then ·Bᵀ, then × scale,
 * then the add (omni_op_matmul with alpha = scale, beta = 1 does the last three).
 * scale = param scale, else alpha / r (OmniMamba: 32 / 8 = 4.0).
 *
 * It has no ports: it is attached with `attach: <stage>.in_proj` and serves
 * the requests whose task equals its `task` param. The rank-r intermediate
 * (M, r) lives in the adapter and grows when a call brings more rows; calls of
 * at most 8 rows (decode) go through omni_op_lora_update (one CUDA kernel).
 * lowrank() hands the factors to a host stage that folds the term into its
 * own decode kernels (mamba2: u = x·Aᵀ in the RMSNorm kernel, the rest in
 * the in_proj GEMV's epilogue).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

#define LORA_KEY_MAX 512
#define LORA_MAX_LAYERS 4096

struct lora_stage {
    struct omni_stage base;
    char *name;
    char *task;
    char *key_a, *key_b; /* patterns with {i} and {task} */
    int64_t n_layer_given;
    double alpha, scale;
    int has_scale;
    int64_t n_layer, rank, K, N;
    struct omni_tensor *A; /* [n_layer] of (r, K) f32 */
    struct omni_tensor *B; /* [n_layer] of (N, r) f32 */
    struct omni_buffer *tmp; /* (M, r) f32 */
    int64_t tmp_rows;
    /* earlier tmp buffers, kept until the stage goes: a CUDA graph captured in an earlier
     * request may still name one (capacity doubles, so there are few) */
    struct omni_buffer *retired[40];
    int n_retired;
};

static char *lora_strdup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s ? s : "", n);
    return d;
}

/* Expand {i} and {task} in pattern. Returns 0 when the key does not fit. */
static int lora_key(char *out, size_t n, const char *pattern, int64_t layer, const char *task)
{
    size_t o = 0;
    for (const char *p = pattern; *p;) {
        char num[32];
        const char *rep = NULL;
        size_t skip = 1;
        if (!strncmp(p, "{i}", 3)) {
            snprintf(num, sizeof num, "%lld", (long long)layer);
            rep = num;
            skip = 3;
        } else if (!strncmp(p, "{task}", 6)) {
            rep = task;
            skip = 6;
        }
        if (rep) {
            size_t k = strlen(rep);
            if (o + k >= n)
                return 0;
            memcpy(out + o, rep, k);
            o += k;
        } else {
            if (o + 1 >= n)
                return 0;
            out[o++] = *p;
        }
        p += skip;
    }
    out[o] = '\0';
    return 1;
}

static void lora_release(struct lora_stage *s)
{
    for (int64_t i = 0; i < s->n_layer; i++) {
        if (s->A)
            omni_tensor_release(&s->A[i]);
        if (s->B)
            omni_tensor_release(&s->B[i]);
    }
    free(s->A);
    free(s->B);
    s->A = s->B = NULL;
    s->n_layer = 0;
    if (s->tmp)
        omni_buffer_unref(s->tmp);
    s->tmp = NULL;
    s->tmp_rows = 0;
    for (int i = 0; i < s->n_retired; i++)
        omni_buffer_unref(s->retired[i]);
    s->n_retired = 0;
}

static void lora_destroy(struct omni_stage *st)
{
    struct lora_stage *s = (struct lora_stage *)st;
    if (!s)
        return;
    lora_release(s);
    free(s->name);
    free(s->task);
    free(s->key_a);
    free(s->key_b);
    free(s);
}

static int lora_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                       struct omni_error *err)
{
    struct lora_stage *s = calloc(1, sizeof *s);
    int rc = OMNI_OK;
    if (!s)
        return omni_error_set(err, OMNI_ENOMEM, "lora: out of memory");
    s->name = lora_strdup(cfg->name ? cfg->name : "lora");
    if (!omni_params_has(cfg->params, "task")) {
        rc = omni_error_set(err, OMNI_EINVAL,
                            "lora needs param 'task' (the request task it serves, "
                            "e.g. mmu or t2i)");
        goto fail;
    }
    s->task = lora_strdup(omni_params_str(cfg->params, "task", ""));
    s->key_a = lora_strdup(omni_params_str(cfg->params, "key_a",
                                           "layers.{i}.mixer.in_proj.{task}_lora_A0.weight"));
    s->key_b = lora_strdup(omni_params_str(cfg->params, "key_b",
                                           "layers.{i}.mixer.in_proj.{task}_lora_B0.weight"));
    if (!s->name || !s->task || !s->key_a || !s->key_b) {
        rc = omni_error_set(err, OMNI_ENOMEM, "lora: out of memory");
        goto fail;
    }
    if ((rc = omni_params_float(cfg->params, "alpha", 32.0, &s->alpha, err)))
        goto fail;
    s->has_scale = omni_params_has(cfg->params, "scale");
    if ((rc = omni_params_float(cfg->params, "scale", 0.0, &s->scale, err)))
        goto fail;
    if ((rc = omni_params_int(cfg->params, "n_layer", -1, &s->n_layer_given, err)))
        goto fail;
    if (omni_params_has(cfg->params, "n_layer") && s->n_layer_given <= 0) {
        rc = omni_error_set(err, OMNI_EINVAL, "param n_layer must be > 0, got %lld",
                            (long long)s->n_layer_given);
        goto fail;
    }
    /* The rank-r factors are tiny (A: r x K, B: N x r): they stay f32 whatever the
     * pipeline's weight dtype, so a bf16/f16 backbone keeps exact adapters. */
    if (cfg->dtype != OMNI_DTYPE_INVALID && cfg->dtype != OMNI_DTYPE_F32)
        OMNI_LOG(OMNI_LOG_DEBUG, "lora '%s': factors kept in f32 (stage dtype %s)", cfg->name,
                 omni_dtype_name(cfg->dtype));
    *out = &s->base;
    return OMNI_OK;
fail:
    lora_destroy(&s->base);
    return rc;
}

static int lora_load(struct omni_stage *st, const struct omni_weights_ref *w,
                     struct omni_error *err)
{
    struct lora_stage *s = (struct lora_stage *)st;
    char ka[LORA_KEY_MAX], kb[LORA_KEY_MAX], buf[64];
    const char *prefix = w && w->prefix ? w->prefix : "";
    struct omni_weight_info ia, ib;
    int rc;

    if (!w || !w->file)
        return omni_error_set(err, OMNI_EINVAL,
                              "lora needs weights (set weights: and prefix:)");
    lora_release(s);

    int64_t nl = 0;
    if (s->n_layer_given > 0) {
        nl = s->n_layer_given;
    } else {
        for (; nl < LORA_MAX_LAYERS; nl++) {
            if (!lora_key(ka, sizeof ka, s->key_a, nl, s->task))
                return omni_error_set(err, OMNI_EINVAL, "key_a is too long");
            if (!omni_weights_has(w->file, prefix, ka))
                break;
        }
        if (nl == 0) {
            lora_key(ka, sizeof ka, s->key_a, 0, s->task);
            return omni_error_set(err, OMNI_ENOTFOUND,
                                  "no LoRA factor '%s%s' for task '%s' in %s (check "
                                  "prefix/key_a)",
                                  prefix, ka, s->task, omni_weights_path(w->file));
        }
    }
    if (!lora_key(ka, sizeof ka, s->key_a, 0, s->task) ||
        !lora_key(kb, sizeof kb, s->key_b, 0, s->task))
        return omni_error_set(err, OMNI_EINVAL, "key_a/key_b too long");
    if ((rc = omni_weights_info(w->file, prefix, ka, &ia, err)) ||
        (rc = omni_weights_info(w->file, prefix, kb, &ib, err)))
        return rc;
    if (ia.ndim != 2 || ib.ndim != 2 || ib.shape[1] != ia.shape[0]) {
        char buf2[64];
        return omni_error_set(err, OMNI_ESHAPE,
                              "LoRA factors '%s%s' %s and '%s%s' %s do not form "
                              "A (r, K) and B (N, r)",
                              prefix, ka, omni_shape_str(ia.ndim, ia.shape, buf, sizeof buf),
                              prefix, kb, omni_shape_str(ib.ndim, ib.shape, buf2, sizeof buf2));
    }
    s->rank = ia.shape[0];
    s->K = ia.shape[1];
    s->N = ib.shape[0];
    if (!s->has_scale)
        s->scale = s->alpha / (double)s->rank;

    s->A = calloc((size_t)nl, sizeof *s->A);
    s->B = calloc((size_t)nl, sizeof *s->B);
    if (!s->A || !s->B) {
        free(s->A);
        free(s->B);
        s->A = s->B = NULL;
        return omni_error_set(err, OMNI_ENOMEM, "lora: out of memory");
    }
    s->n_layer = nl;
    const int64_t sh_a[2] = {s->rank, s->K}, sh_b[2] = {s->N, s->rank};
    for (int64_t i = 0; i < nl; i++) {
        if (!lora_key(ka, sizeof ka, s->key_a, i, s->task) ||
            !lora_key(kb, sizeof kb, s->key_b, i, s->task)) {
            rc = omni_error_set(err, OMNI_EINVAL, "key_a/key_b too long");
            goto fail;
        }
        if ((rc = omni_stage_load_weight(&s->base, w, ka, OMNI_DTYPE_F32, 2, sh_a, &s->A[i], err)) ||
            (rc = omni_stage_load_weight(&s->base, w, kb, OMNI_DTYPE_F32, 2, sh_b, &s->B[i], err)))
            goto fail;
    }
    OMNI_LOG(OMNI_LOG_INFO, "stage '%s': lora task=%s layers=%lld rank=%lld K=%lld N=%lld scale=%g",
             s->name, s->task, (long long)nl, (long long)s->rank, (long long)s->K, (long long)s->N,
             s->scale);
    return OMNI_OK;
fail:
    lora_release(s);
    return rc;
}

static int lora_forward(struct omni_stage *st, void *state, struct omni_io *io,
                        struct omni_error *err)
{
    struct lora_stage *s = (struct lora_stage *)st;
    return omni_error_set(err, OMNI_EUNSUPPORTED,
                          "stage '%s': lora is an adapter; attach it with attach: <stage>.in_proj",
                          s->name);
}

static const char *lora_task(struct omni_stage *st)
{
    return ((struct lora_stage *)st)->task;
}

static int lora_apply(struct omni_stage *st, const char *target, int layer,
                      const struct omni_tensor *x, struct omni_tensor *y, struct omni_error *err)
{
    struct lora_stage *s = (struct lora_stage *)st;
    char b1[64], b2[64];
    if (!s->A)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': lora weights are not loaded", s->name);
    if (layer < 0 || layer >= s->n_layer)
        return omni_error_set(err, OMNI_ERANGE,
                              "stage '%s': %s of layer %d has no LoRA factors (the adapter has %lld "
                              "layers)",
                              s->name, target ? target : "?", layer, (long long)s->n_layer);
    if (x->ndim < 1 || y->ndim < 1 || x->shape[x->ndim - 1] != s->K ||
        y->shape[y->ndim - 1] != s->N || omni_tensor_numel(x) / s->K != omni_tensor_numel(y) / s->N)
        return omni_error_set(err, OMNI_ESHAPE,
                              "stage '%s': %s layer %d: x %s and y %s do not fit A (%lld, %lld) and "
                              "B (%lld, %lld)",
                              s->name, target ? target : "?", layer,
                              omni_shape_str(x->ndim, x->shape, b1, sizeof b1),
                              omni_shape_str(y->ndim, y->shape, b2, sizeof b2), (long long)s->rank,
                              (long long)s->K, (long long)s->N, (long long)s->rank);
    const int64_t M = omni_tensor_numel(x) / s->K;
    /* decode: both factors in one op (one kernel on CUDA; on the CPU exactly the
     * two matmuls below) */
    if (M <= OMNI_LORA_MAX_M && s->rank <= OMNI_LORA_MAX_R)
        return omni_op_lora_update(y, x, &s->A[layer], &s->B[layer], (float)s->scale, err);
    if (M > s->tmp_rows || (s->tmp && !omni_device_eq(omni_buffer_device(s->tmp), x->device))) {
        const int64_t rows = M > 2 * s->tmp_rows ? M : 2 * s->tmp_rows;
        if (s->tmp && s->n_retired < (int)(sizeof s->retired / sizeof s->retired[0]))
            s->retired[s->n_retired++] = s->tmp;
        else if (s->tmp)
            omni_buffer_unref(s->tmp);
        s->tmp = omni_buffer_new(x->device, (size_t)(rows * s->rank) * sizeof(float), err);
        s->tmp_rows = s->tmp ? rows : 0;
        if (!s->tmp)
            return omni_error_prefix(err, "stage '%s': ", s->name);
    }
    struct omni_tensor tmp = {0};
    tmp.dtype = OMNI_DTYPE_F32;
    tmp.ndim = 2;
    tmp.shape[0] = M;
    tmp.shape[1] = s->rank;
    omni_tensor_set_contiguous(&tmp);
    tmp.device = x->device;
    tmp.buf = s->tmp; /* borrowed: never released */
    int rc = omni_op_matmul(&tmp, x, &s->A[layer], NULL, 1.0f, 0.0f, err);
    if (!rc)
        rc = omni_op_matmul(y, &tmp, &s->B[layer], NULL, (float)s->scale, 1.0f, err);
    return rc;
}

/* The factors behind apply(), for stages that fold the term into their own
 * kernels (mamba2's decode step): y += scale * (x·Aᵀ)·Bᵀ. */
static int lora_lowrank(struct omni_stage *st, const char *target, int layer,
                        const struct omni_tensor **a, const struct omni_tensor **b, float *scale,
                        struct omni_error *err)
{
    struct lora_stage *s = (struct lora_stage *)st;
    if (!s->A)
        return omni_error_set(err, OMNI_ESTATE, "stage '%s': lora weights are not loaded", s->name);
    if (layer < 0 || layer >= s->n_layer)
        return omni_error_set(err, OMNI_ERANGE,
                              "stage '%s': %s of layer %d has no LoRA factors (the adapter has %lld "
                              "layers)",
                              s->name, target ? target : "?", layer, (long long)s->n_layer);
    *a = &s->A[layer];
    *b = &s->B[layer];
    *scale = (float)s->scale;
    return OMNI_OK;
}

static const struct omni_stage_ops lora_ops = {
    .size = sizeof(struct omni_stage_ops),
    .create = lora_create,
    .destroy = lora_destroy,
    .forward = lora_forward,
    .load = lora_load,
};

static const struct omni_adapter_ops lora_adapter_ops = {
    .size = sizeof(struct omni_adapter_ops),
    .task = lora_task,
    .apply = lora_apply,
    .lowrank = lora_lowrank,
};

static const struct omni_plugin_desc lora_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "lora",
    .version = "0.1.0",
    .description = "LoRA adapter: y += scale * (x A^T) B^T on an attached linear, per task",
    .ops = &lora_ops,
    .ports = NULL,
    .n_ports = 0,
#ifdef OMNI_HAVE_CUDA
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU) | OMNI_DEVICE_BIT(OMNI_DEVICE_CUDA),
#else
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
#endif
    .adapter = &lora_adapter_ops,
    .params_doc = "task: the request task this adapter serves (required; e.g. mmu, t2i)\n"
                  "scale: multiplier of the low-rank term (default alpha / rank)\n"
                  "alpha: LoRA alpha (default 32; rank is read from A's rows)\n"
                  "key_a: key pattern of A (default layers.{i}.mixer.in_proj.{task}_lora_A0.weight)\n"
                  "key_b: key pattern of B (default layers.{i}.mixer.in_proj.{task}_lora_B0.weight)\n"
                  "n_layer: number of layers (default: counted by probing key_a)\n",
};

OMNI_PLUGIN_DEFINE(lora_desc)
