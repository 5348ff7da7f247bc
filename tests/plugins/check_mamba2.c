/* tests/plugins/check_mamba2.c - the mamba2 stage (with text_head, lora and
 * sampler around it) against the PyTorch fixture of a tiny Mamba-2 LM
 * (tests/fixtures/gen_mamba2_tiny.py: float64 sequential reference, stock
 * key names, mmu/t2i LoRA pairs), plus consistency checks that need no
 * reference (prefill + steps == longer prefill, chunked prefill with state
 * carry == one prefill), a 100k-token prompt in bounded memory, and bad
 * inputs. Prints the CPU prefill and decode speed of the tiny model. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "omni/harness.h"
#include "omni/pipeline.h"
#include "../common/testutil.h"

#define FIX "tests/fixtures/data/mamba2_tiny/"
#define T0 29
#define NSTEPS 6
#define VOC 304
#define DM 64
#define TOL 1e-4

#ifdef __SANITIZE_ADDRESS__
/* Keep ASan's quarantine of freed blocks small so that the RSS bound of the
 * long-prompt test measures the engine, not the sanitizer (visible: the
 * ASan runtime looks the hook up dynamically, and tests build with
 * -fvisibility=hidden). */
__attribute__((visibility("default"))) const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void)
{
    return "quarantine_size_mb=8";
}
#endif

static const char *const TASKS[3] = {"", "mmu", "t2i"};
static const char *const TNAMES[3] = {"nolora", "mmu", "t2i"};

static char *fix_path(const char *name)
{
    static char buf[4][1024];
    static int k;
    char rel[512];
    snprintf(rel, sizeof rel, FIX "%s", name);
    char *b = buf[k++ & 3];
    snprintf(b, 1024, "%s", tu_repo_path(rel));
    return b;
}

static struct omni_error err;

#define OK(call)                                                                          \
    do {                                                                                  \
        omni_error_clear(&err);                                                           \
        int rc_ = (call);                                                                 \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg);  \
    } while (0)

/* ---- fixture access ---------------------------------------------------------------- */

static struct omni_weights *open_w(const char *file)
{
    struct omni_weights *w = NULL;
    OK(omni_weights_open(&w, fix_path(file), &err));
    return w;
}

static void get_f32(struct omni_weights *w, const char *key, struct omni_tensor *t)
{
    OK(omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, t, &err));
}

static void get_ids(struct omni_weights *w, const char *key, struct omni_tensor *t)
{
    struct omni_tensor raw;
    OK(omni_weights_get(w, NULL, key, &raw, &err));
    OK(omni_tensor_convert(t, &raw, OMNI_DTYPE_I32, &err));
    omni_tensor_release(&raw);
}

static void make_ids(struct omni_tensor *t, int64_t B, int64_t T, const int32_t *vals)
{
    OK(omni_tensor_alloc_host(t, OMNI_DTYPE_I32, 2, B, T));
    memcpy(omni_tensor_data(t), vals, (size_t)(B * T) * sizeof(int32_t));
}

static void assert_close(const float *got, const float *ref, size_t n, double tol, const char *what)
{
    ck_assert_msg(!tu_has_nan(got, n), "%s: NaN in output", what);
    double e = tu_rel_err(got, ref, n);
    ck_assert_msg(e < tol, "%s: max|d|/max|ref| = %.3e (tolerance %.1e)", what, e, tol);
}

/* ---- the model under test: backbone + head (+ adapters, sampler) --------------------- */

struct lm {
    struct omni_harness *bb, *head, *smp, *lora[2];
};

static void lm_open(struct lm *m, const char *model, const char *bb_params, const char *dtype,
                    int with_lora)
{
    memset(m, 0, sizeof *m);
    OK(omni_harness_new_full(&m->bb, "mamba2", bb_params, NULL, dtype, &err));
    OK(omni_harness_load_weights(m->bb, fix_path(model), "backbone.", &err));
    OK(omni_harness_new_full(&m->head, "text_head", NULL, NULL, dtype, &err));
    OK(omni_harness_load_weights(m->head, fix_path(model), "backbone.", &err));
    OK(omni_harness_new(&m->smp, "sampler", NULL, &err));
    for (int i = 0; with_lora && i < 2; i++) {
        char p[64];
        snprintf(p, sizeof p, "task: %s\nalpha: 16", TASKS[i + 1]); /* fixture: rank 4, scale 4 */
        OK(omni_harness_new(&m->lora[i], "lora", p, &err));
        OK(omni_harness_load_weights(m->lora[i], fix_path(model), "backbone.", &err));
        OK(omni_harness_attach(m->bb, "in_proj", m->lora[i], &err));
    }
}

static void lm_free(struct lm *m)
{
    omni_harness_free(m->bb); /* adapters are borrowed by the backbone: free it first */
    omni_harness_free(m->head);
    omni_harness_free(m->smp);
    omni_harness_free(m->lora[0]);
    omni_harness_free(m->lora[1]);
}

static void lm_task(struct lm *m, const char *task) { omni_harness_set_task(m->bb, task); }

/* Backbone forward (step = 0) or step (step = 1) on ids; returns hidden. */
static const struct omni_tensor *lm_hidden(struct lm *m, const struct omni_tensor *ids, int step)
{
    OK(omni_harness_push(m->bb, "ids", ids, &err));
    OK(step ? omni_harness_step(m->bb, &err) : omni_harness_forward(m->bb, &err));
    const struct omni_tensor *h = omni_harness_pull(m->bb, "hidden");
    ck_assert_ptr_nonnull(h);
    return h;
}

static const struct omni_tensor *lm_head(struct lm *m, const struct omni_tensor *hidden)
{
    OK(omni_harness_push(m->head, "hidden", hidden, &err));
    OK(omni_harness_forward(m->head, &err));
    const struct omni_tensor *lg = omni_harness_pull(m->head, "logits");
    ck_assert_ptr_nonnull(lg);
    return lg;
}

static const float *lm_logits(struct lm *m, const struct omni_tensor *ids, int step)
{
    const struct omni_tensor *lg = lm_head(m, lm_hidden(m, ids, step));
    ck_assert_int_eq(lg->dtype, OMNI_DTYPE_F32);
    ck_assert_int_eq(lg->shape[1], VOC);
    return omni_tensor_data(lg);
}

/* Logits of position t of an all-positions hidden [B, T, D] (row b). */
static const float *lm_logits_at(struct lm *m, const struct omni_tensor *hidden, int64_t b,
                                 int64_t t)
{
    struct omni_tensor v;
    const int64_t sh[3] = {1, 1, DM};
    int64_t off = hidden->offset + (b * hidden->shape[1] + t) * DM * (int64_t)sizeof(float);
    OK(omni_tensor_view(&v, hidden->buf, off, OMNI_DTYPE_F32, 3, sh, &err));
    const struct omni_tensor *lg = lm_head(m, &v);
    omni_tensor_release(&v);
    return omni_tensor_data(lg);
}

static int32_t lm_sample(struct lm *m)
{
    OK(omni_harness_push(m->smp, "logits", omni_harness_pull(m->head, "logits"), &err));
    OK(omni_harness_forward(m->smp, &err));
    const struct omni_tensor *tok = omni_harness_pull(m->smp, "token");
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(tok->dtype, OMNI_DTYPE_I32);
    return ((const int32_t *)omni_tensor_data(tok))[0];
}

/* ---- parity with the PyTorch reference ------------------------------------------------ */

START_TEST(test_prefill_last_logits_match_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    char key[64];
    get_ids(ex, "input_ids", &ids);
    snprintf(key, sizeof key, "%s.last_logits", TNAMES[_i]);
    get_f32(ex, key, &ref);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, TASKS[_i]);
    const struct omni_tensor *h = lm_hidden(&m, &ids, 0);
    ck_assert_int_eq(h->ndim, 3);
    ck_assert_int_eq(h->shape[0], 1);
    ck_assert_int_eq(h->shape[1], 1);
    ck_assert_int_eq(h->shape[2], DM);
    const float *lg = omni_tensor_data(lm_head(&m, h));
    assert_close(lg, omni_tensor_data(&ref), VOC, TOL, key);
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_all_positions_logits_match_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    char key[64];
    get_ids(ex, "input_ids", &ids);
    snprintf(key, sizeof key, "%s.prefill_logits", TNAMES[_i]);
    get_f32(ex, key, &ref);
    struct lm m;
    lm_open(&m, "model.safetensors", "all_positions: true", NULL, 1);
    lm_task(&m, TASKS[_i]);
    const struct omni_tensor *h = lm_hidden(&m, &ids, 0);
    ck_assert_int_eq(h->shape[1], T0);
    const float *r = omni_tensor_data(&ref);
    for (int t = 0; t < T0; t++) {
        char what[96];
        snprintf(what, sizeof what, "%s position %d", key, t);
        assert_close(lm_logits_at(&m, h, 0, t), r + (size_t)t * VOC, VOC, TOL, what);
    }
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Greedy decode feeding omni's own tokens: every token equals the
 * reference's, every step's logits match (teacher forcing is implied). */
START_TEST(test_greedy_decode_matches_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, steps, gids;
    char key[64];
    get_ids(ex, "input_ids", &ids);
    snprintf(key, sizeof key, "%s.step_logits", TNAMES[_i]);
    get_f32(ex, key, &steps);
    snprintf(key, sizeof key, "%s.greedy_ids", TNAMES[_i]);
    get_ids(ex, key, &gids);
    const int32_t *g = omni_tensor_data(&gids);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, TASKS[_i]);
    lm_logits(&m, &ids, 0);
    int32_t tok = lm_sample(&m);
    ck_assert_msg(tok == g[0], "%s: prefill token %d, reference %d", TNAMES[_i], tok, g[0]);
    for (int k = 0; k < NSTEPS; k++) {
        struct omni_tensor one;
        make_ids(&one, 1, 1, &tok);
        const float *lg = lm_logits(&m, &one, 1);
        omni_tensor_release(&one);
        char what[96];
        snprintf(what, sizeof what, "%s step %d logits", TNAMES[_i], k);
        assert_close(lg, (const float *)omni_tensor_data(&steps) + (size_t)k * VOC, VOC, TOL, what);
        tok = lm_sample(&m);
        ck_assert_msg(tok == g[k + 1], "%s: step %d token %d, reference %d", TNAMES[_i], k, tok,
                      g[k + 1]);
    }
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&steps);
    omni_tensor_release(&gids);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_short_prompt_matches_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    get_ids(ex, "short.input_ids", &ids);
    get_f32(ex, "short.nolora.prefill_logits", &ref);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 0);
    const float *lg = lm_logits(&m, &ids, 0);
    assert_close(lg, (const float *)omni_tensor_data(&ref) + 2 * VOC, VOC, TOL,
                 "3-token prompt (shorter than d_conv)");
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_batch_of_two_matches_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    get_ids(ex, "batch2.input_ids", &ids);
    get_f32(ex, "batch2.nolora.prefill_logits", &ref);
    struct lm m;
    lm_open(&m, "model.safetensors", "chunk_size: 8", NULL, 0);
    const struct omni_tensor *h = lm_hidden(&m, &ids, 0);
    ck_assert_int_eq(h->shape[0], 2);
    const struct omni_tensor *lg = lm_head(&m, h);
    ck_assert_int_eq(lg->shape[0], 2);
    const float *r = omni_tensor_data(&ref);
    for (int b = 0; b < 2; b++) {
        char what[64];
        snprintf(what, sizeof what, "batch row %d", b);
        assert_close((const float *)omni_tensor_data(lg) + b * VOC,
                     r + ((size_t)b * T0 + T0 - 1) * VOC, VOC, TOL, what);
    }
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ngroups cannot be read off the shapes: it is a param; gated norm groups of E/G. */
START_TEST(test_ngroups2_matches_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected_ngroups2.safetensors");
    struct omni_tensor ids, ref_n, ref_m;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "nolora.last_logits", &ref_n);
    get_f32(ex, "mmu.last_logits", &ref_m);
    struct lm m;
    lm_open(&m, "model_ngroups2.safetensors", "ngroups: 2\nd_state: 16\nheaddim: 16", NULL, 1);
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&ref_n), VOC, TOL, "ngroups 2, no LoRA");
    omni_harness_reset_state(m.bb);
    lm_task(&m, "mmu");
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&ref_m), VOC, TOL, "ngroups 2, mmu");
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref_n);
    omni_tensor_release(&ref_m);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* The .pth copy (torch.save zip) holds lm_head.weight tied to the embedding. */
START_TEST(test_pth_checkpoint_matches_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "nolora.last_logits", &ref);
    struct omni_harness *bb, *head;
    OK(omni_harness_new(&bb, "mamba2", NULL, &err));
    OK(omni_harness_load_weights(bb, fix_path("model.pth"), "backbone.", &err));
    OK(omni_harness_new(&head, "text_head", "weight: lm_head.weight\nfallback: backbone.embedding.weight\nvocab: 304", &err));
    OK(omni_harness_load_weights(head, fix_path("model.pth"), "", &err));
    OK(omni_harness_push(bb, "ids", &ids, &err));
    OK(omni_harness_forward(bb, &err));
    OK(omni_harness_push(head, "hidden", omni_harness_pull(bb, "hidden"), &err));
    OK(omni_harness_forward(head, &err));
    assert_close(omni_tensor_data(omni_harness_pull(head, "logits")), omni_tensor_data(&ref), VOC,
                 TOL, "model.pth");
    omni_harness_free(bb);
    omni_harness_free(head);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* OmniMamba feeds embeddings from another stage: the fixture's layer-0
 * residual is exactly the embedding rows of the prompt. */
START_TEST(test_embeds_input_matches_reference)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor emb, ref;
    get_f32(ex, "mmu.l0.residual_in", &emb);
    get_f32(ex, "mmu.last_logits", &ref);
    ck_assert_int_eq(emb.ndim, 3);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, "mmu");
    OK(omni_harness_push(m.bb, "embeds", &emb, &err));
    OK(omni_harness_forward(m.bb, &err));
    const struct omni_tensor *lg = lm_head(&m, omni_harness_pull(m.bb, "hidden"));
    assert_close(omni_tensor_data(lg), omni_tensor_data(&ref), VOC, TOL, "embeds input, mmu");
    lm_free(&m);
    omni_tensor_release(&emb);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* f16/bf16 storage of in_proj, out_proj, embedding and head; f32 everything else. */
/* param embedding: false: the table is not loaded (one buffer fewer), embeds give the
 * reference logits, ids are an error that names the param. */
START_TEST(test_embedding_false_skips_the_table)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor emb, ref, ids;
    get_f32(ex, "mmu.l0.residual_in", &emb);
    get_f32(ex, "mmu.last_logits", &ref);
    struct lm with, without;
    long n0 = omni_buffer_live_count();
    lm_open(&with, "model.safetensors", NULL, NULL, 0);
    long n_with = omni_buffer_live_count() - n0;
    lm_free(&with);
    n0 = omni_buffer_live_count();
    lm_open(&without, "model.safetensors", "embedding: false", NULL, 1);
    lm_free(&without);
    lm_open(&without, "model.safetensors", "embedding: false", NULL, 0);
    long n_without = omni_buffer_live_count() - n0;
    ck_assert_int_eq(n_with - n_without, 1);
    lm_free(&without);
    struct lm m;
    lm_open(&m, "model.safetensors", "embedding: false", NULL, 1);
    lm_task(&m, "mmu");
    OK(omni_harness_push(m.bb, "embeds", &emb, &err));
    OK(omni_harness_forward(m.bb, &err));
    const struct omni_tensor *lg = lm_head(&m, omni_harness_pull(m.bb, "hidden"));
    assert_close(omni_tensor_data(lg), omni_tensor_data(&ref), VOC, TOL, "embeds, embedding: false");
    int32_t v[2] = {1, 2};
    make_ids(&ids, 1, 2, v);
    OK(omni_harness_push(m.bb, "embeds", NULL, &err));
    OK(omni_harness_push(m.bb, "ids", &ids, &err));
    ck_assert_int_eq(omni_harness_forward(m.bb, &err), OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "embedding: false"), "%s", err.msg);
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&emb);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* param state_dtype f16 / bf16: the prefill runs in f32 (its logits are the reference's
 * within TOL); decode steps, teacher-forced with the reference's greedy tokens, stay within
 * TOL16 of the reference's f32 step logits (_i: 0 f16, 1 bf16), on the fused step path
 * (tiny model, mmu LoRA) and, for ngroups 2, on the op-by-op path against the f32 state. */
#define TOL16_F16 3e-4
#define TOL16_BF16 1e-3
START_TEST(test_16bit_state_tracks_the_f32_state)
{
    long live = omni_buffer_live_count();
    const char *sd = _i ? "bf16" : "f16";
    const double tol16 = _i ? TOL16_BF16 : TOL16_F16;
    char params[64], what[96];
    snprintf(params, sizeof params, "state_dtype: %s", sd);
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, steps, gids, pre;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "mmu.step_logits", &steps);
    get_ids(ex, "mmu.greedy_ids", &gids);
    get_f32(ex, "mmu.last_logits", &pre);
    const int32_t *g = omni_tensor_data(&gids);
    struct lm m;
    lm_open(&m, "model.safetensors", params, NULL, 1);
    lm_task(&m, "mmu");
    snprintf(what, sizeof what, "%s state: prefill", sd);
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&pre), VOC, TOL, what);
    double worst = 0.0;
    for (int k = 0; k < NSTEPS; k++) {
        struct omni_tensor one;
        make_ids(&one, 1, 1, &g[k]);
        const float *lg = lm_logits(&m, &one, 1);
        omni_tensor_release(&one);
        const float *ref = (const float *)omni_tensor_data(&steps) + (size_t)k * VOC;
        const double e = tu_rel_err(lg, ref, VOC);
        worst = e > worst ? e : worst;
        snprintf(what, sizeof what, "%s state: step %d", sd, k);
        assert_close(lg, ref, VOC, tol16, what);
    }
    printf("  %s SSM state, fused steps: worst step logits error %.2e of max|ref| (f32 state: "
           "< %.0e)\n",
           sd, worst, TOL);
    lm_free(&m);
    /* ngroups 2 (op-by-op steps through the f32 copy of each layer's state) */
    struct omni_weights *ex2 = open_w("expected_ngroups2.safetensors");
    struct omni_tensor ids2, ref2;
    get_ids(ex2, "input_ids", &ids2);
    get_f32(ex2, "nolora.last_logits", &ref2);
    struct lm a, b;
    lm_open(&a, "model_ngroups2.safetensors", "ngroups: 2\nd_state: 16\nheaddim: 16", NULL, 0);
    char p2[128];
    snprintf(p2, sizeof p2, "ngroups: 2\nd_state: 16\nheaddim: 16\n%s", params);
    lm_open(&b, "model_ngroups2.safetensors", p2, NULL, 0);
    snprintf(what, sizeof what, "%s state, ngroups 2: prefill", sd);
    assert_close(lm_logits(&b, &ids2, 0), omni_tensor_data(&ref2), VOC, TOL, what);
    lm_logits(&a, &ids2, 0);
    for (int k = 0; k < NSTEPS; k++) {
        struct omni_tensor one;
        const int32_t tok = (int32_t)(7 + 13 * k);
        make_ids(&one, 1, 1, &tok);
        float la[VOC];
        memcpy(la, lm_logits(&a, &one, 1), sizeof la);
        const float *lb = lm_logits(&b, &one, 1);
        omni_tensor_release(&one);
        snprintf(what, sizeof what, "%s state, ngroups 2: step %d", sd, k);
        assert_close(lb, la, VOC, tol16, what);
    }
    lm_free(&a);
    lm_free(&b);
    omni_tensor_release(&ids2);
    omni_tensor_release(&ref2);
    omni_weights_close(ex2);
    omni_tensor_release(&ids);
    omni_tensor_release(&steps);
    omni_tensor_release(&gids);
    omni_tensor_release(&pre);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_bad_state_dtype)
{
    struct omni_harness *h = NULL;
    ck_assert_int_eq(omni_harness_new(&h, "mamba2", "state_dtype: i32", &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "state_dtype") && strstr(err.msg, "i32"), "%s", err.msg);
    ck_assert_ptr_null(h);
}
END_TEST

START_TEST(test_half_weights_stay_close_to_reference)
{
    static const char *const dt[2] = {"f16", "bf16"};
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "t2i.last_logits", &ref);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, dt[_i], 1);
    lm_task(&m, "t2i");
    const float *lg = lm_logits(&m, &ids, 0);
    double e = tu_rel_err(lg, omni_tensor_data(&ref), VOC);
    ck_assert_msg(!tu_has_nan(lg, VOC) && e < 2e-2, "%s weights: rel err %.3e", dt[_i], e);
    ck_assert_msg(e > 1e-7, "%s weights: suspiciously exact (%.3e): dtype not applied?", dt[_i], e);
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- consistency without a reference ---------------------------------------------------- */

/* prefill(T) then K steps == prefill(T + K) at the last K + 1 positions. */
START_TEST(test_steps_after_prefill_equal_longer_prefill)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, gids, full;
    get_ids(ex, "input_ids", &ids);
    get_ids(ex, "mmu.greedy_ids", &gids);
    int32_t all[T0 + NSTEPS];
    memcpy(all, omni_tensor_data(&ids), sizeof(int32_t) * T0);
    memcpy(all + T0, omni_tensor_data(&gids), sizeof(int32_t) * NSTEPS);
    make_ids(&full, 1, T0 + NSTEPS, all);

    struct lm a, b;
    lm_open(&a, "model.safetensors", NULL, NULL, 1);
    lm_open(&b, "model.safetensors", "all_positions: true\nchunk_size: 8", NULL, 1);
    lm_task(&a, "mmu");
    lm_task(&b, "mmu");
    float inc[(NSTEPS + 1) * VOC];
    memcpy(inc, lm_logits(&a, &ids, 0), sizeof(float) * VOC);
    for (int k = 0; k < NSTEPS; k++) {
        struct omni_tensor one;
        make_ids(&one, 1, 1, &all[T0 + k]);
        memcpy(inc + (k + 1) * VOC, lm_logits(&a, &one, 1), sizeof(float) * VOC);
        omni_tensor_release(&one);
    }
    const struct omni_tensor *h = lm_hidden(&b, &full, 0);
    for (int k = 0; k <= NSTEPS; k++) {
        char what[64];
        snprintf(what, sizeof what, "position %d", T0 - 1 + k);
        assert_close(inc + k * VOC, lm_logits_at(&b, h, 0, T0 - 1 + k), VOC, TOL, what);
    }
    lm_free(&a);
    lm_free(&b);
    omni_tensor_release(&ids);
    omni_tensor_release(&gids);
    omni_tensor_release(&full);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* A state serves the next request in place (what the executor does when it keeps a
 * loop graph): a new prefill from position 0 clears the state without moving it, and
 * scratch grown in blocks of 64 rows stays put for a prompt a few tokens longer, so the
 * stage's graph_key words are the same; the request then computes what a fresh stage
 * does. A prompt past the block changes the key (cap_rows is one of its words). */
START_TEST(test_next_request_reuses_the_state_in_place)
{
    long live = omni_buffer_live_count();
    struct tu_rng r;
    tu_rng_seed(&r, 0x5eed);
    int32_t v[80];
    for (int i = 0; i < 80; i++)
        v[i] = (int32_t)(tu_rng_u64(&r) % 300);
    struct lm a, fresh;
    lm_open(&a, "model.safetensors", "chunk_size: 8", NULL, 1);
    lm_task(&a, "t2i");
    uint64_t k1[256], k2[256], k3[256];
    int n1 = 0, n2 = 0, n3 = 0;
    struct omni_tensor p1, p2, p3, one;
    make_ids(&p1, 1, 29, v);
    make_ids(&p2, 1, 33, v + 40);
    make_ids(&p3, 1, 70, v + 5);
    make_ids(&one, 1, 1, v + 79);
    lm_hidden(&a, &p1, 0);
    lm_hidden(&a, &one, 1);
    OK(omni_harness_graph_key(a.bb, k1, 256, &n1, &err));
    ck_assert_int_gt(n1, 4);
    /* request 2: prefill of 33 from position 0, then a step */
    omni_harness_set_position(a.bb, 0);
    lm_logits(&a, &p2, 0);
    float got[2][VOC];
    memcpy(got[0], lm_logits(&a, &one, 1), sizeof got[0]);
    OK(omni_harness_graph_key(a.bb, k2, 256, &n2, &err));
    ck_assert_int_eq(n2, n1);
    for (int i = 0; i < n1; i++)
        ck_assert_msg(k2[i] == k1[i], "graph_key word %d of %d moved: %#llx, was %#llx", i, n1,
                      (unsigned long long)k2[i], (unsigned long long)k1[i]);
    lm_open(&fresh, "model.safetensors", "chunk_size: 8", NULL, 1);
    lm_task(&fresh, "t2i");
    lm_logits(&fresh, &p2, 0);
    memcpy(got[1], lm_logits(&fresh, &one, 1), sizeof got[1]);
    for (int i = 0; i < VOC; i++)
        ck_assert_msg(got[0][i] == got[1][i], "logit %d after the reused state: %g, fresh %g", i,
                      got[0][i], got[1][i]);
    /* request 3: 70 rows pass the 64-row block */
    omni_harness_set_position(a.bb, 0);
    lm_hidden(&a, &p3, 0);
    lm_hidden(&a, &one, 1);
    OK(omni_harness_graph_key(a.bb, k3, 256, &n3, &err));
    ck_assert_int_eq(n3, n1);
    ck_assert_msg(memcmp(k3, k1, sizeof(uint64_t) * (size_t)n1) != 0,
                  "the key did not change when the scratch grew");
    /* errors: a stage without graph_key, a stage before any call */
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mamba2", NULL, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_graph_key(h, k3, 256, &n3, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "before any call") != NULL, "%s", err.msg);
    ck_assert_int_eq(n3, 0);
    omni_harness_free(h);
    lm_free(&a);
    lm_free(&fresh);
    omni_tensor_release(&p1), omni_tensor_release(&p2), omni_tensor_release(&p3);
    omni_tensor_release(&one);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* A prefill continued from the state (ctx->position > 0) equals one prefill:
 * splits inside the conv window (1, 3), at a chunk edge (8) and elsewhere. */
START_TEST(test_chunked_prefill_continues_from_state)
{
    static const int splits[] = {1, 3, 8, 11, 28};
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "t2i.last_logits", &ref);
    const int32_t *v = omni_tensor_data(&ids);
    struct lm m;
    lm_open(&m, "model.safetensors", "chunk_size: 8", NULL, 1);
    lm_task(&m, "t2i");
    for (size_t s = 0; s < OMNI_ARRAY_LEN(splits); s++) {
        struct omni_tensor p1, p2;
        int n = splits[s];
        make_ids(&p1, 1, n, v);
        make_ids(&p2, 1, T0 - n, v + n);
        omni_harness_reset_state(m.bb); /* position 0 */
        lm_hidden(&m, &p1, 0);          /* position advances to n */
        const float *lg = lm_logits(&m, &p2, 0);
        char what[64];
        snprintf(what, sizeof what, "prefill %d + %d", n, T0 - n);
        assert_close(lg, omni_tensor_data(&ref), VOC, TOL, what);
        omni_tensor_release(&p1);
        omni_tensor_release(&p2);
    }
    /* and a new prefill at position 0 starts from zero states again */
    omni_harness_reset_state(m.bb);
    lm_logits(&m, &ids, 0);
    omni_harness_set_position(m.bb, 0);
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&ref), VOC, TOL,
                 "second prefill at position 0 on a used state");
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- adapters ------------------------------------------------------------------------- */

static void copy_model(const char *dst, const char *drop, const char *rename_from,
                       const char *rename_to, const char *reshape, int64_t reshape_len,
                       const char *lora_only_task)
{
    struct omni_weights *w = open_w("model.safetensors");
    size_t n = omni_weights_count(w), k = 0;
    const char **names = calloc(n, sizeof *names);
    char **own = calloc(n, sizeof *own);
    struct omni_tensor *ts = calloc(n, sizeof *ts);
    ck_assert(names && own && ts);
    for (size_t i = 0; i < n; i++) {
        const char *key = omni_weights_key(w, i);
        if (drop && !strcmp(key, drop))
            continue;
        if (lora_only_task) {
            /* keep only "<task>_lora_*" pairs, renamed to "lora.l{i}.<task>.{A,B}" */
            int layer;
            char task[8], ab;
            if (sscanf(key, "backbone.layers.%d.mixer.in_proj.%3[a-z0-9]_lora_%c0.weight", &layer,
                       task, &ab) != 3 || strcmp(task, lora_only_task))
                continue;
            own[k] = malloc(64);
            snprintf(own[k], 64, "lora.l%d.%s.%c", layer, task, ab);
            names[k] = own[k];
        } else {
            names[k] = rename_from && !strcmp(key, rename_from) ? rename_to : key;
        }
        if (reshape && !strcmp(key, reshape)) {
            OK(omni_tensor_alloc_host(&ts[k], OMNI_DTYPE_F32, 1, reshape_len));
            float *p = omni_tensor_data(&ts[k]);
            for (int64_t j = 0; j < reshape_len; j++)
                p[j] = 1.0f;
        } else {
            OK(omni_weights_get(w, NULL, key, &ts[k], &err));
        }
        k++;
    }
    OK(omni_safetensors_write(dst, k, names, ts, &err));
    for (size_t i = 0; i < k; i++) {
        omni_tensor_release(&ts[i]);
        free(own[i]);
    }
    free(ts);
    free(own);
    free(names);
    omni_weights_close(w);
}

/* A LoRA in its own file, with its own key pattern and prefix. */
START_TEST(test_lora_from_separate_file)
{
    long live = omni_buffer_live_count();
    char path[512];
    snprintf(path, sizeof path, "%s/lora_mmu.safetensors", tu_tmpdir());
    copy_model(path, NULL, NULL, NULL, NULL, 0, "mmu");
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, ref;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "mmu.last_logits", &ref);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 0);
    struct omni_harness *lo;
    OK(omni_harness_new(&lo, "lora", "task: mmu\nscale: 4\nkey_a: 'l{i}.{task}.A'\nkey_b: 'l{i}.{task}.B'", &err));
    OK(omni_harness_load_weights(lo, path, "lora.", &err));
    OK(omni_harness_attach(m.bb, "in_proj", lo, &err));
    lm_task(&m, "mmu");
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&ref), VOC, TOL, "separate LoRA file");
    lm_free(&m);
    omni_harness_free(lo);
    omni_tensor_release(&ids);
    omni_tensor_release(&ref);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* No task with adapters attached: base weights; detaching all gives the base too. */
START_TEST(test_no_task_and_detach_give_base_model)
{
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids, base, mmu;
    get_ids(ex, "input_ids", &ids);
    get_f32(ex, "nolora.last_logits", &base);
    get_f32(ex, "mmu.last_logits", &mmu);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, "");
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&base), VOC, TOL, "empty task");
    omni_harness_reset_state(m.bb);
    lm_task(&m, "mmu");
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&mmu), VOC, TOL, "mmu attached");
    OK(omni_harness_attach(m.bb, "in_proj", NULL, &err));
    omni_harness_reset_state(m.bb);
    assert_close(lm_logits(&m, &ids, 0), omni_tensor_data(&base), VOC, TOL, "after detach");
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_tensor_release(&base);
    omni_tensor_release(&mmu);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- long prompt and speed ----------------------------------------------------------------- */

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 100k tokens in chunks of 4096 with state carry: memory must not grow with
 * the length, and the result must stay finite. Reports prefill tokens/s. */
START_TEST(test_long_prompt_memory_bounded)
{
    enum { TOTAL = 100000, CHUNK = 4096 };
    long live = omni_buffer_live_count();
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, "t2i");
    int32_t *v = malloc(sizeof(int32_t) * CHUNK);
    ck_assert_ptr_nonnull(v);
    struct tu_rng r;
    tu_rng_seed(&r, 7);
    long rss0 = 0, rss_max = 0;
    double t0 = 0;
    int64_t done = 0, timed = 0;
    while (done < TOTAL) {
        int64_t n = TOTAL - done < CHUNK ? TOTAL - done : CHUNK;
        for (int64_t i = 0; i < n; i++)
            v[i] = (int32_t)(tu_rng_u64(&r) % 300);
        struct omni_tensor ids;
        make_ids(&ids, 1, n, v);
        const float *lg = lm_logits(&m, &ids, 0);
        omni_tensor_release(&ids);
        ck_assert_msg(!tu_has_nan(lg, VOC) && isfinite(tu_max_abs(lg, VOC)),
                      "non-finite logits after %lld tokens", (long long)(done + n));
        done += n;
        if (done == CHUNK) { /* first chunk sized every buffer: measure from here */
            rss0 = rss_kb();
            t0 = now_s();
        } else {
            timed += n;
            long rss = rss_kb();
            if (rss > rss_max)
                rss_max = rss;
        }
    }
    double dt = now_s() - t0;
    long growth = rss_max - rss0;
    printf("mamba2 tiny (d_model 64, 2 layers, t2i LoRA), CPU prefill: %lld tokens in chunks of %d: "
           "%.0f tokens/s; RSS %ld kB after the first chunk, growth %ld kB over the rest\n",
           (long long)TOTAL, CHUNK, (double)timed / dt, rss0, growth);
    ck_assert_msg(rss0 > 0, "cannot read VmRSS");
    ck_assert_msg(growth < 50 * 1024, "RSS grew by %ld kB over %lld tokens", growth,
                  (long long)timed);
    free(v);
    lm_free(&m);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Decode speed of the tiny model (backbone step + head + greedy sampler). */
START_TEST(test_decode_speed_report)
{
    enum { STEPS = 2000 };
    long live = omni_buffer_live_count();
    struct omni_weights *ex = open_w("expected.safetensors");
    struct omni_tensor ids;
    get_ids(ex, "input_ids", &ids);
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, "mmu");
    lm_logits(&m, &ids, 0);
    int32_t tok = lm_sample(&m);
    long live_loop = 0;
    double t0 = now_s();
    for (int k = 0; k < STEPS; k++) {
        struct omni_tensor one;
        make_ids(&one, 1, 1, &tok);
        lm_logits(&m, &one, 1);
        omni_tensor_release(&one);
        tok = lm_sample(&m);
        ck_assert(tok >= 0 && tok < VOC);
        if (k == 0)
            live_loop = omni_buffer_live_count();
        else
            ck_assert_msg(omni_buffer_live_count() == live_loop, "buffers accumulate in decode");
    }
    double dt = now_s() - t0;
    printf("mamba2 tiny (d_model 64, 2 layers, mmu LoRA), CPU decode: %d steps, %.0f tokens/s "
           "(step + head + greedy)\n",
           STEPS, STEPS / dt);
    lm_free(&m);
    omni_tensor_release(&ids);
    omni_weights_close(ex);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- the shipped tiny pipeline ------------------------------------------------------ */

static void on_stream(struct omni_request *r, const char *output, const struct omni_tensor *t,
                      void *user)
{
    (void)r;
    if (!strcmp(output, "text") && t->dtype == OMNI_DTYPE_U8)
        ++*(int *)user;
}

/* pipelines/text-tiny.yaml (tokenizer, mamba2 + two LoRAs, head, sampler,
 * streaming detokenizer) yields the tokens the stages give when driven by
 * hand. "v1.2.3" is [87, 18, 15, 19, 15, 20] in GPT-NeoX (the tokenizer's
 * test vectors), all inside the tiny vocabulary. */
START_TEST(test_text_tiny_pipeline_matches_stages)
{
    enum { MAXT = 8 };
    long live = omni_buffer_live_count();
    static const int32_t prompt[6] = {87, 18, 15, 19, 15, 20};
    struct omni_pipeline *p = NULL;
    OK(omni_pipeline_load(&p, tu_repo_path("pipelines/text-tiny.yaml"), NULL, &err));
    struct omni_request *r = omni_request_new(p);
    ck_assert_ptr_nonnull(r);
    int streamed = 0;
    OK(omni_request_set_text(r, "prompt", "v1.2.3", &err));
    omni_request_set_task(r, "mmu");
    omni_request_set_max_tokens(r, MAXT);
    omni_request_on_stream(r, on_stream, &streamed);
    OK(omni_pipeline_run(p, r, &err));
    const struct omni_tensor *tk = omni_request_tokens(r);
    ck_assert_ptr_nonnull(tk);
    ck_assert_int_eq(tk->shape[0], 1);
    const int64_t n = tk->shape[1];
    ck_assert(n >= 1 && n <= MAXT);
    const int32_t *got = omni_tensor_data(tk);

    struct lm m;
    struct omni_tensor ids;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, "mmu");
    make_ids(&ids, 1, 6, prompt);
    lm_logits(&m, &ids, 0);
    omni_tensor_release(&ids);
    int32_t tok = lm_sample(&m);
    for (int64_t k = 0; k < n; k++) {
        ck_assert_msg(got[k] == tok, "token %lld: pipeline %d, stages %d", (long long)k, got[k], tok);
        if (k + 1 < n) {
            make_ids(&ids, 1, 1, &tok);
            lm_logits(&m, &ids, 1);
            omni_tensor_release(&ids);
            tok = lm_sample(&m);
        }
    }
    ck_assert_msg(n == MAXT || got[n - 1] == 0, "stopped after %lld tokens without a stop id",
                  (long long)n);
    ck_assert_int_eq(streamed, (int)n); /* one text piece per token: prefill + each iteration */
    lm_free(&m);
    omni_request_free(r);
    omni_pipeline_free(p);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* ---- bad inputs --------------------------------------------------------------------------- */

static struct omni_harness *backbone(const char *params)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mamba2", params, &err));
    OK(omni_harness_load_weights(h, fix_path("model.safetensors"), "backbone.", &err));
    return h;
}

START_TEST(test_rejects_f32_ids)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = backbone(NULL);
    struct omni_tensor t;
    OK(omni_tensor_alloc_host(&t, OMNI_DTYPE_F32, 2, 1, 4));
    OK(omni_harness_push(h, "ids", &t, &err));
    int rc = omni_harness_forward(h, &err);
    ck_assert_int_eq(rc, OMNI_EDTYPE);
    ck_assert_msg(strstr(err.msg, "'ids'") && strstr(err.msg, "f32") && strstr(err.msg, "i32"),
                  "%s", err.msg);
    omni_tensor_release(&t);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_both_or_neither_input)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = backbone(NULL);
    int rc = omni_harness_forward(h, &err);
    ck_assert_int_eq(rc, OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "'ids'") && strstr(err.msg, "'embeds'") && strstr(err.msg, "neither"),
                  "%s", err.msg);
    struct omni_tensor ids, emb;
    int32_t v[2] = {1, 2};
    make_ids(&ids, 1, 2, v);
    OK(omni_tensor_alloc_host(&emb, OMNI_DTYPE_F32, 3, 1, 2, DM));
    OK(omni_harness_push(h, "ids", &ids, &err));
    OK(omni_harness_push(h, "embeds", &emb, &err));
    rc = omni_harness_forward(h, &err);
    ck_assert_int_eq(rc, OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "'ids'") && strstr(err.msg, "'embeds'") && strstr(err.msg, "both"),
                  "%s", err.msg);
    omni_tensor_release(&ids);
    omni_tensor_release(&emb);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_step_with_several_tokens)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = backbone(NULL);
    struct omni_tensor ids;
    int32_t v[3] = {1, 2, 3};
    make_ids(&ids, 1, 3, v);
    OK(omni_harness_push(h, "ids", &ids, &err));
    int rc = omni_harness_step(h, &err);
    ck_assert_int_eq(rc, OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "T must be 1") && strstr(err.msg, "T=3"), "%s", err.msg);
    omni_tensor_release(&ids);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_unknown_task)
{
    long live = omni_buffer_live_count();
    struct lm m;
    lm_open(&m, "model.safetensors", NULL, NULL, 1);
    lm_task(&m, "vqa");
    struct omni_tensor ids;
    int32_t v[2] = {1, 2};
    make_ids(&ids, 1, 2, v);
    OK(omni_harness_push(m.bb, "ids", &ids, &err));
    int rc = omni_harness_forward(m.bb, &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "no adapter for task 'vqa' on mamba2.in_proj (attached: mmu, t2i)"),
                  "%s", err.msg);
    omni_tensor_release(&ids);
    lm_free(&m);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_unknown_attach_target_and_non_adapter)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = backbone(NULL), *lo, *head;
    OK(omni_harness_new(&lo, "lora", "task: mmu\nalpha: 16", &err));
    OK(omni_harness_load_weights(lo, fix_path("model.safetensors"), "backbone.", &err));
    int rc = omni_harness_attach(h, "out_proj", lo, &err);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strstr(err.msg, "'out_proj'"), "%s", err.msg);
    OK(omni_harness_new(&head, "text_head", NULL, &err));
    rc = omni_harness_attach(h, "in_proj", head, &err);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strstr(err.msg, "adapter"), "%s", err.msg);
    omni_harness_free(h);
    omni_harness_free(lo);
    omni_harness_free(head);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_missing_key)
{
    long live = omni_buffer_live_count();
    char path[512];
    snprintf(path, sizeof path, "%s/missing.safetensors", tu_tmpdir());
    copy_model(path, NULL, "backbone.layers.1.mixer.conv1d.bias",
               "backbone.layers.1.mixer.conv1d.bias_renamed", NULL, 0, NULL);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mamba2", NULL, &err));
    int rc = omni_harness_load_weights(h, path, "backbone.", &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "backbone.layers.1.mixer.conv1d.bias"), "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_misshaped_weight)
{
    long live = omni_buffer_live_count();
    char path[512];
    snprintf(path, sizeof path, "%s/misshaped.safetensors", tu_tmpdir());
    copy_model(path, NULL, NULL, NULL, "backbone.layers.1.mixer.D", 9, NULL);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mamba2", NULL, &err));
    int rc = omni_harness_load_weights(h, path, "backbone.", &err);
    ck_assert_int_eq(rc, OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "backbone.layers.1.mixer.D") && strstr(err.msg, "[9]") &&
                      strstr(err.msg, "[8]"),
                  "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_param_disagreeing_with_weights)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mamba2", "d_model: 32", &err));
    int rc = omni_harness_load_weights(h, fix_path("model.safetensors"), "backbone.", &err);
    ck_assert_int_eq(rc, OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "d_model=32") && strstr(err.msg, "d_model=64") &&
                      strstr(err.msg, "backbone.layers.0.mixer.in_proj.weight"),
                  "%s", err.msg);
    omni_harness_free(h);
    OK(omni_harness_new(&h, "mamba2", "n_layer: 3", &err));
    rc = omni_harness_load_weights(h, fix_path("model.safetensors"), "backbone.", &err);
    ck_assert_int_eq(rc, OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "n_layer=3") && strstr(err.msg, "2"), "%s", err.msg);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

/* Without embedding.weight the stage loads (embeds still work) but ids are an error. */
START_TEST(test_rejects_ids_without_embedding_table)
{
    long live = omni_buffer_live_count();
    char path[512];
    snprintf(path, sizeof path, "%s/noemb.safetensors", tu_tmpdir());
    copy_model(path, "backbone.embedding.weight", NULL, NULL, NULL, 0, NULL);
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mamba2", NULL, &err));
    OK(omni_harness_load_weights(h, path, "backbone.", &err));
    struct omni_tensor ids, emb;
    int32_t v[2] = {1, 2};
    make_ids(&ids, 1, 2, v);
    OK(omni_harness_push(h, "ids", &ids, &err));
    int rc = omni_harness_forward(h, &err);
    ck_assert_int_eq(rc, OMNI_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "backbone.embedding.weight"), "%s", err.msg);
    OK(omni_harness_push(h, "ids", NULL, &err));
    OK(omni_tensor_alloc_host(&emb, OMNI_DTYPE_F32, 3, 1, 2, DM));
    tu_fill_normal(&(struct tu_rng){3}, omni_tensor_data(&emb), 2 * DM, 1.0f);
    OK(omni_harness_push(h, "embeds", &emb, &err));
    OK(omni_harness_forward(h, &err));
    omni_tensor_release(&ids);
    omni_tensor_release(&emb);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_lora_rejects_missing_task_param)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = NULL;
    int rc = omni_harness_new(&h, "lora", "alpha: 16", &err);
    ck_assert_int_eq(rc, OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "task"), "%s", err.msg);
    ck_assert_ptr_null(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *mamba2_suite(void)
{
    Suite *s = suite_create("mamba2");
    TCase *p = tcase_create("parity");
    tcase_set_timeout(p, 60);
    tcase_add_loop_test(p, test_prefill_last_logits_match_reference, 0, 3);
    tcase_add_loop_test(p, test_all_positions_logits_match_reference, 0, 3);
    tcase_add_loop_test(p, test_greedy_decode_matches_reference, 0, 3);
    tcase_add_test(p, test_short_prompt_matches_reference);
    tcase_add_test(p, test_batch_of_two_matches_reference);
    tcase_add_test(p, test_ngroups2_matches_reference);
    tcase_add_test(p, test_pth_checkpoint_matches_reference);
    tcase_add_test(p, test_embeds_input_matches_reference);
    tcase_add_test(p, test_embedding_false_skips_the_table);
    tcase_add_loop_test(p, test_16bit_state_tracks_the_f32_state, 0, 2);
    tcase_add_loop_test(p, test_half_weights_stay_close_to_reference, 0, 2);
    suite_add_tcase(s, p);

    TCase *c = tcase_create("consistency");
    tcase_set_timeout(c, 60);
    tcase_add_test(c, test_steps_after_prefill_equal_longer_prefill);
    tcase_add_test(c, test_chunked_prefill_continues_from_state);
    tcase_add_test(c, test_next_request_reuses_the_state_in_place);
    tcase_add_test(c, test_lora_from_separate_file);
    tcase_add_test(c, test_no_task_and_detach_give_base_model);
    tcase_add_test(c, test_text_tiny_pipeline_matches_stages);
    suite_add_tcase(s, c);

    TCase *l = tcase_create("long");
    tcase_set_timeout(l, 300);
    tcase_add_test(l, test_long_prompt_memory_bounded);
    tcase_add_test(l, test_decode_speed_report);
    suite_add_tcase(s, l);

    TCase *b = tcase_create("bad_inputs");
    tcase_set_timeout(b, 30);
    tcase_add_test(b, test_rejects_f32_ids);
    tcase_add_test(b, test_rejects_both_or_neither_input);
    tcase_add_test(b, test_rejects_step_with_several_tokens);
    tcase_add_test(b, test_rejects_unknown_task);
    tcase_add_test(b, test_rejects_unknown_attach_target_and_non_adapter);
    tcase_add_test(b, test_rejects_missing_key);
    tcase_add_test(b, test_rejects_bad_state_dtype);
    tcase_add_test(b, test_rejects_misshaped_weight);
    tcase_add_test(b, test_rejects_param_disagreeing_with_weights);
    tcase_add_test(b, test_rejects_ids_without_embedding_table);
    tcase_add_test(b, test_lora_rejects_missing_task_param);
    suite_add_tcase(s, b);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mamba2_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
