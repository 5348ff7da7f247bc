/* tests/cuda/check_cuda_stages.c - stages on CUDA against the same stages on
 * the CPU (f32 both: 1e-4 of max|ref| per stage output; a bf16 CUDA stage
 * within 2e-2), through the harness:
 *   - mamba2 on the tiny fixture (chunk 8, a LoRA attached, batch 2): prefill,
 *     a chunked-prefill continuation and decode steps;
 *   - mamba2 with two layers at the 1.3B widths and random weights: prefill
 *     of 300 positions (batch 1) and 72 (batch 16), then decode steps;
 *   - vit (DINOv2-like and SigLIP-like tiny towers), projector, vq decoder on
 *     their tiny fixtures;
 *   - both pipelines end to end at full size with the synthetic weights of
 *     `omni bench` (core/cli/bench_model.c): t2i (caption prefix, backbone +
 *     t2i LoRA, image head, greedy sampler, image-token embedding with
 *     project_in, VQ decoder) and mmu (DINOv2-L, SigLIP so400m, projector,
 *     assemble, backbone + mmu LoRA, text head). CPU-f32 and CUDA-f32 must
 *     pick the same greedy tokens; decode runs teacher-forced on the CPU's
 *     tokens and every step's logits must agree within 1e-3.
 *     OMNI_E2E_STEPS (default 16) sets the decode steps compared;
 *     OMNI_BENCH_DIR the weights folder (default $TMPDIR/omni-bench, shared
 *     with omni bench, seed 1).
 * Skips without a device unless OMNI_REQUIRE_CUDA is set. */
#include <math.h>
#include <time.h>

#include "../../core/cli/bench_model.h"
#include "cudatest.h"

#ifdef OMNI_HAVE_CUDA

static struct omni_error err;

#define OK(call)                                                                                   \
    do {                                                                                           \
        omni_error_clear(&err);                                                                    \
        int rc_ = (call);                                                                          \
        ck_assert_msg(rc_ >= 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg);            \
    } while (0)


/* host copy of any tensor (for comparisons); waits for the device */
static void host_of(struct omni_tensor *h, const struct omni_tensor *t)
{
    if (t->device.type == OMNI_DEVICE_CUDA)
        ct_sync();
    OK(omni_tensor_copy_to(h, t, OMNI_CPU, &err));
}

static void cmp_out(const char *what, const struct omni_tensor *cuda, const struct omni_tensor *cpu,
                    double tol)
{
    struct omni_tensor a, b;
    ck_assert_ptr_nonnull(cuda);
    ck_assert_ptr_nonnull(cpu);
    ck_assert_msg(cuda->device.type == OMNI_DEVICE_CUDA, "%s: the CUDA stage's output is not on the device", what);
    ck_assert_int_eq(omni_tensor_numel(cuda), omni_tensor_numel(cpu));
    host_of(&a, cuda);
    host_of(&b, cpu);
    ct_cmp(what, omni_tensor_data(&a), omni_tensor_data(&b), (size_t)omni_tensor_numel(&b), tol);
    omni_tensor_release(&a);
    omni_tensor_release(&b);
}

static struct omni_harness *mk(const char *type, const char *params, const char *device,
                               const char *dtype, const char *file, const char *prefix)
{
    struct omni_harness *h;
    OK(omni_harness_new_full(&h, type, params, device, dtype, &err));
    if (file)
        OK(omni_harness_load_weights(h, file, prefix, &err));
    return h;
}

/* device copy for a CUDA harness (host tensors stay for the CPU one) */
static void push2(struct omni_harness *hc, struct omni_harness *hg, const char *port,
                  const struct omni_tensor *t)
{
    struct omni_tensor d;
    OK(omni_harness_push(hc, port, t, &err));
    OK(omni_tensor_copy_to(&d, t, CT_DEV, &err));
    OK(omni_harness_push(hg, port, &d, &err));
    omni_tensor_release(&d);
}

/* ---- mamba2 ---------------------------------------------------------------------------- */

static void rand_ids(struct omni_tensor *t, int64_t B, int64_t T, int64_t V)
{
    OK(omni_tensor_alloc(t, OMNI_DTYPE_I32, 2, SH(B, T), OMNI_CPU, &err));
    for (int64_t i = 0; i < B * T; i++)
        ((int32_t *)omni_tensor_data(t))[i] = (int32_t)(tu_rng_u64(&R) % (uint64_t)V);
}

static void tiny_mamba(const char *dtype, double tol)
{
    const char *file = tu_repo_path("tests/fixtures/data/mamba2_tiny/model.safetensors");
    char path[1024];
    snprintf(path, sizeof path, "%s", file);
    struct omni_harness *c = mk("mamba2", "chunk_size: 8", "cpu", NULL, path, "backbone.");
    struct omni_harness *g = mk("mamba2", "chunk_size: 8", "cuda:0", dtype, path, "backbone.");
    struct omni_harness *lc = mk("lora", "task: mmu", "cpu", NULL, path, "backbone.");
    struct omni_harness *lg = mk("lora", "task: mmu", "cuda:0", NULL, path, "backbone.");
    OK(omni_harness_attach(c, "in_proj", lc, &err));
    OK(omni_harness_attach(g, "in_proj", lg, &err));
    omni_harness_set_task(c, "mmu");
    omni_harness_set_task(g, "mmu");
    struct omni_tensor ids;
    /* prefill 13 (chunks 8 + 5), continuation 4, then 6 steps */
    static const int64_t Ts[3] = {13, 4, 1};
    for (int phase = 0; phase < 3; phase++) {
        for (int rep = 0; rep < (phase == 2 ? 6 : 1); rep++) {
            rand_ids(&ids, 2, Ts[phase], 300);
            push2(c, g, "ids", &ids);
            omni_tensor_release(&ids);
            if (phase == 2) {
                OK(omni_harness_step(c, &err));
                OK(omni_harness_step(g, &err));
            } else {
                OK(omni_harness_forward(c, &err));
                OK(omni_harness_forward(g, &err));
            }
            cmp_out(phase == 0 ? "mamba2 tiny prefill" : phase == 1 ? "mamba2 tiny continuation" : "mamba2 tiny step",
                    omni_harness_pull(g, "hidden"), omni_harness_pull(c, "hidden"), tol);
        }
    }
    omni_harness_free(c);
    omni_harness_free(g);
    omni_harness_free(lc);
    omni_harness_free(lg);
}

START_TEST(test_mamba2_tiny_on_cuda_matches_cpu)
{
    tiny_mamba(NULL, 1e-4);
    tiny_mamba("bf16", 2e-2);
}
END_TEST

/* The decode step allocates nothing and never waits for the device: it can
 * be captured once in a CUDA graph and replayed with new inputs written into
 * the same device buffer, matching the CPU stage step by step. */
/* n steps of 2 random ids: the CUDA harness g by replaying exec (which reads its ids
 * from dstep), the CPU harness c by stepping; the hidden outputs agree. */
static void replay_steps(struct omni_harness *c, struct omni_harness *g, cudaGraphExec_t exec,
                         cudaStream_t s, struct omni_tensor *hstep, struct omni_tensor *dstep,
                         int n, const char *what)
{
    for (int k = 0; k < n; k++) {
        for (int b = 0; b < 2; b++)
            ((int32_t *)omni_tensor_data(hstep))[b] = (int32_t)(tu_rng_u64(&R) % 300u);
        CT_CUDA(cudaMemcpy(omni_tensor_data(dstep), omni_tensor_data(hstep), 8, cudaMemcpyHostToDevice));
        CT_CUDA(cudaGraphLaunch(exec, s));
        OK(omni_harness_push(c, "ids", hstep, &err));
        OK(omni_harness_step(c, &err));
        cmp_out(what, omni_harness_pull(g, "hidden"), omni_harness_pull(c, "hidden"), 1e-4);
    }
}

START_TEST(test_mamba2_decode_step_replays_as_a_cuda_graph)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_repo_path("tests/fixtures/data/mamba2_tiny/model.safetensors"));
    struct omni_harness *c = mk("mamba2", "chunk_size: 8", "cpu", NULL, path, "backbone.");
    struct omni_harness *g = mk("mamba2", "chunk_size: 8", "cuda:0", NULL, path, "backbone.");
    struct omni_harness *lc = mk("lora", "task: t2i", "cpu", NULL, path, "backbone.");
    struct omni_harness *lg = mk("lora", "task: t2i", "cuda:0", NULL, path, "backbone.");
    OK(omni_harness_attach(c, "in_proj", lc, &err));
    OK(omni_harness_attach(g, "in_proj", lg, &err));
    omni_harness_set_task(c, "t2i");
    omni_harness_set_task(g, "t2i");
    struct omni_tensor ids, hstep, dstep;
    rand_ids(&ids, 2, 9, 300);
    push2(c, g, "ids", &ids);
    omni_tensor_release(&ids);
    OK(omni_harness_forward(c, &err));
    OK(omni_harness_forward(g, &err));
    /* the step input lives in one device buffer for the whole loop */
    rand_ids(&hstep, 2, 1, 300);
    OK(omni_tensor_copy_to(&dstep, &hstep, CT_DEV, &err));
    OK(omni_harness_push(g, "ids", &dstep, &err));
    ct_sync();
    cudaStream_t s = (cudaStream_t)omni_cuda_stream(CT_DEV);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    CT_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    omni_error_clear(&err);
    int rc = omni_harness_step(g, &err);
    CT_CUDA(cudaStreamEndCapture(s, &graph));
    ck_assert_msg(rc == OMNI_OK, "step under capture: %s", err.msg);
    CT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    replay_steps(c, g, exec, s, &hstep, &dstep, 6, "mamba2 step replayed from a CUDA graph");
    /* the next request (a prefill of 11 from position 0) clears the state in place: the
     * graph_key words stay, and the same graph replays its steps */
    uint64_t k0[256], k1[256];
    int n0 = 0, n1 = 0;
    OK(omni_harness_graph_key(g, k0, 256, &n0, &err));
    omni_harness_set_position(c, 0);
    omni_harness_set_position(g, 0);
    rand_ids(&ids, 2, 11, 300);
    push2(c, g, "ids", &ids);
    omni_tensor_release(&ids);
    OK(omni_harness_forward(c, &err));
    OK(omni_harness_forward(g, &err));
    cmp_out("mamba2 prefill of the next request", omni_harness_pull(g, "hidden"),
            omni_harness_pull(c, "hidden"), 1e-4);
    OK(omni_harness_push(g, "ids", &dstep, &err));
    OK(omni_harness_graph_key(g, k1, 256, &n1, &err));
    ck_assert_int_eq(n1, n0);
    for (int i = 0; i < n0; i++)
        ck_assert_msg(k1[i] == k0[i], "graph_key word %d of %d moved at the next prefill: %#llx, was %#llx",
                      i, n0, (unsigned long long)k1[i], (unsigned long long)k0[i]);
    replay_steps(c, g, exec, s, &hstep, &dstep, 3,
                 "mamba2 step of the next request replayed from the first one's graph");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    omni_tensor_release(&hstep);
    omni_tensor_release(&dstep);
    omni_harness_free(c);
    omni_harness_free(g);
    omni_harness_free(lc);
    omni_harness_free(lg);
}
END_TEST

/* two layers at the 1.3B widths, random f32 weights */
static void write_wide(const char *path)
{
    const int64_t D = 2048, E = 4096, H = 64, N = 128, F = 2 * E + 2 * N + H, Cd = E + 2 * N;
    const char *names[2 * 9 + 1];
    struct omni_tensor t[2 * 9 + 1];
    char buf[2 * 9 + 1][96];
    int n = 0;
    for (int l = 0; l < 2; l++) {
        struct {
            const char *k;
            int nd;
            int64_t s[3];
            float a;
            int kind; /* 0 uniform, 1 norm 1+, 2 A_log, 3 dt_bias */
        } spec[9] = {{"norm.weight", 1, {D}, 0.1f, 1},
                     {"mixer.in_proj.weight", 2, {F, D}, 0.038f, 0},
                     {"mixer.conv1d.weight", 3, {Cd, 1, 4}, 0.5f, 0},
                     {"mixer.conv1d.bias", 1, {Cd}, 0.1f, 0},
                     {"mixer.dt_bias", 1, {H}, 0, 3},
                     {"mixer.A_log", 1, {H}, 0, 2},
                     {"mixer.D", 1, {H}, 0.5f, 1},
                     {"mixer.norm.weight", 1, {E}, 0.1f, 1},
                     {"mixer.out_proj.weight", 2, {D, E}, 0.01f, 0}};
        for (int i = 0; i < 9; i++) {
            snprintf(buf[n], sizeof buf[n], "layers.%d.%s", l, spec[i].k);
            names[n] = buf[n];
            OK(omni_tensor_alloc(&t[n], OMNI_DTYPE_F32, spec[i].nd, spec[i].s, OMNI_CPU, &err));
            float *p = omni_tensor_data(&t[n]);
            for (int64_t j = 0; j < omni_tensor_numel(&t[n]); j++) {
                const float u = tu_rng_uniform(&R, 0.0f, 1.0f);
                p[j] = spec[i].kind == 0   ? spec[i].a * (2 * u - 1)
                       : spec[i].kind == 1 ? 1.0f + spec[i].a * (2 * u - 1)
                       : spec[i].kind == 2 ? logf(1.0f + 15.0f * u)
                                           : logf(expm1f(1e-3f + 0.099f * u));
            }
            n++;
        }
    }
    snprintf(buf[n], sizeof buf[n], "norm_f.weight");
    names[n] = buf[n];
    OK(omni_tensor_alloc(&t[n], OMNI_DTYPE_F32, 1, SH(D), OMNI_CPU, &err));
    for (int64_t j = 0; j < D; j++)
        ((float *)omni_tensor_data(&t[n]))[j] = 1.0f;
    n++;
    OK(omni_safetensors_write(path, (size_t)n, names, t, &err));
    for (int i = 0; i < n; i++)
        omni_tensor_release(&t[i]);
}

START_TEST(test_mamba2_two_layers_at_full_width_match_cpu)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/wide.safetensors", tu_tmpdir());
    write_wide(path);
    static const int64_t cases[2][2] = {{1, 300}, {16, 72}};
    for (int k = 0; k < 2; k++) {
        const int64_t B = cases[k][0], T = cases[k][1];
        struct omni_harness *c = mk("mamba2", NULL, "cpu", NULL, path, "");
        struct omni_harness *g = mk("mamba2", NULL, "cuda:0", NULL, path, "");
        struct omni_tensor e;
        ct_hrand(&e, &R, OMNI_DTYPE_F32, 1.0f, 3, SH(B, T, 2048));
        push2(c, g, "embeds", &e);
        kt_release(&e);
        OK(omni_harness_forward(c, &err));
        OK(omni_harness_forward(g, &err));
        cmp_out("mamba2 wide prefill", omni_harness_pull(g, "hidden"), omni_harness_pull(c, "hidden"), 1e-4);
        for (int s = 0; s < 4; s++) {
            ct_hrand(&e, &R, OMNI_DTYPE_F32, 1.0f, 3, SH(B, 1, 2048));
            push2(c, g, "embeds", &e);
            kt_release(&e);
            OK(omni_harness_step(c, &err));
            OK(omni_harness_step(g, &err));
            cmp_out("mamba2 wide step", omni_harness_pull(g, "hidden"), omni_harness_pull(c, "hidden"), 1e-4);
        }
        omni_harness_free(c);
        omni_harness_free(g);
    }
}
END_TEST

/* ---- vision / VQ stages on their tiny fixtures ------------------------------------------ */

static void vit_pair(const char *params, const char *file, const char *prefix, int64_t side,
                     const char *dtype, double tol)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_repo_path(file));
    struct omni_harness *c = mk("vit", params, "cpu", NULL, path, prefix);
    struct omni_harness *g = mk("vit", params, "cuda:0", dtype, path, prefix);
    struct omni_tensor px;
    ct_hrand(&px, &R, OMNI_DTYPE_F32, 1.0f, 4, SH(2, 3, side, side));
    push2(c, g, "pixels", &px);
    kt_release(&px);
    OK(omni_harness_forward(c, &err));
    OK(omni_harness_forward(g, &err));
    cmp_out(file, omni_harness_pull(g, "features"), omni_harness_pull(c, "features"), tol);
    omni_harness_free(c);
    omni_harness_free(g);
}

START_TEST(test_vision_towers_projector_and_vq_on_cuda_match_cpu)
{
    vit_pair("variant: custom\nheads: 2\nimage_size: 56", "tests/fixtures/data/vision/dino_tiny.safetensors",
             "vision_backbone.dino_featurizer.", 56, NULL, 1e-4);
    vit_pair("variant: custom\nheads: 2\nimage_size: 56", "tests/fixtures/data/vision/dino_tiny.safetensors",
             "vision_backbone.dino_featurizer.", 56, "bf16", 2e-2);
    vit_pair("variant: custom\nheads: 2\nimage_size: 60", "tests/fixtures/data/vision/siglip_tiny.pth",
             "visual.trunk.", 60, NULL, 1e-4);
    {
        char path[1024];
        snprintf(path, sizeof path, "%s", tu_repo_path("tests/fixtures/data/vision/projector_tiny.safetensors"));
        struct omni_harness *c = mk("projector", NULL, "cpu", NULL, path, "projector.");
        struct omni_harness *g = mk("projector", NULL, "cuda:0", NULL, path, "projector.");
        struct omni_weights *w;
        struct omni_tensor x0, x1;
        OK(omni_weights_open(&w, tu_repo_path("tests/fixtures/data/vision/projector_tiny_expected.safetensors"), &err));
        OK(omni_weights_load(w, NULL, "x0", OMNI_DTYPE_F32, 0, NULL, &x0, &err));
        OK(omni_weights_load(w, NULL, "x1", OMNI_DTYPE_F32, 0, NULL, &x1, &err));
        omni_weights_close(w);
        push2(c, g, "x0", &x0);
        push2(c, g, "x1", &x1);
        omni_tensor_release(&x0);
        omni_tensor_release(&x1);
        OK(omni_harness_forward(c, &err));
        OK(omni_harness_forward(g, &err));
        cmp_out("projector", omni_harness_pull(g, "embeds"), omni_harness_pull(c, "embeds"), 1e-4);
        omni_harness_free(c);
        omni_harness_free(g);
    }
    {
        char path[1024];
        snprintf(path, sizeof path, "%s", tu_repo_path("tests/fixtures/data/vq/tiny.pth"));
        static const char params[] = "grid: 4\nnorm_groups: 4\n";
        struct omni_harness *c = mk("vq", params, "cpu", NULL, path, "model.");
        struct omni_harness *g = mk("vq", params, "cuda:0", NULL, path, "model.");
        struct omni_weights *w;
        struct omni_tensor codes;
        OK(omni_weights_open(&w, tu_repo_path("tests/fixtures/data/vq/expected.safetensors"), &err));
        OK(omni_weights_load(w, NULL, "codes", OMNI_DTYPE_I32, 0, NULL, &codes, &err));
        omni_weights_close(w);
        push2(c, g, "codes", &codes);
        omni_tensor_release(&codes);
        OK(omni_harness_forward(c, &err));
        OK(omni_harness_forward(g, &err));
        cmp_out("vq decode", omni_harness_pull(g, "image"), omni_harness_pull(c, "image"), 1e-4);
        omni_harness_free(c);
        omni_harness_free(g);
    }
}
END_TEST

/* ---- both pipelines end to end at full size -------------------------------------------- */

static const char *bench_dir(void)
{
    static char d[1024];
    const char *e = getenv("OMNI_BENCH_DIR"), *t = getenv("TMPDIR");
    if (e && *e)
        snprintf(d, sizeof d, "%s", e);
    else
        snprintf(d, sizeof d, "%s/omni-bench", t && *t ? t : "/tmp");
    return d;
}

static int e2e_steps(void)
{
    const char *s = getenv("OMNI_E2E_STEPS");
    int n = s ? atoi(s) : 16;
    return n > 0 ? n : 16;
}

/* greedy token of a (B,1) i32 output, row b */
static int32_t token_at(const struct omni_tensor *t, int64_t b)
{
    struct omni_tensor h;
    host_of(&h, t);
    int32_t v = ((int32_t *)omni_tensor_data(&h))[b];
    omni_tensor_release(&h);
    return v;
}

/* compare the heads' logits, then the greedy tokens of every row */
static void cmp_step(const char *what, int step, struct omni_harness *hc, struct omni_harness *hg,
                     struct omni_harness *sc, struct omni_harness *sg, int64_t B)
{
    char w[128];
    snprintf(w, sizeof w, "%s logits (step %d)", what, step);
    cmp_out(w, omni_harness_pull(hg, "logits"), omni_harness_pull(hc, "logits"), 1e-3);
    for (int64_t b = 0; b < B; b++) {
        const int32_t tc = token_at(omni_harness_pull(sc, "token"), b);
        const int32_t tg = token_at(omni_harness_pull(sg, "token"), b);
        ck_assert_msg(tc == tg, "%s: greedy token of row %lld at step %d: CPU %d, CUDA %d", what,
                      (long long)b, step, tc, tg);
    }
}

START_TEST(test_t2i_full_size_cuda_f32_matches_cpu_f32)
{
    struct omb_paths p;
    struct omb_t2i c, g;
    OK(omb_weights(bench_dir(), 1, OMB_LM | OMB_VQ, &p, &err));
    OK(omb_t2i_open(&c, &p, "cpu", "f32", 1, &err));
    OK(omb_t2i_open(&g, &p, "cuda:0", "f32", 1, &err));
    const int64_t B = 2;
    struct omni_tensor ids;
    rand_ids(&ids, B, 12, 50000);
    OK(omni_harness_push(c.prefix, "ids", &ids, &err));
    OK(omni_harness_push(g.prefix, "ids", &ids, &err)); /* a host port */
    omni_tensor_release(&ids);
    OK(omni_harness_forward(c.prefix, &err));
    OK(omni_harness_forward(g.prefix, &err));
    cmp_out("t2i prefix embeds", omni_harness_pull(g.prefix, "embeds"), omni_harness_pull(c.prefix, "embeds"), 1e-4);
    struct omb_t2i *m[2] = {&c, &g};
    for (int i = 0; i < 2; i++) {
        OK(omni_harness_push(m[i]->bb, "embeds", omni_harness_pull(m[i]->prefix, "embeds"), &err));
        OK(omni_harness_forward(m[i]->bb, &err));
        OK(omni_harness_push(m[i]->head, "hidden", omni_harness_pull(m[i]->bb, "hidden"), &err));
        OK(omni_harness_forward(m[i]->head, &err));
        OK(omni_harness_push(m[i]->smp, "logits", omni_harness_pull(m[i]->head, "logits"), &err));
        OK(omni_harness_forward(m[i]->smp, &err));
    }
    cmp_step("t2i", 0, c.head, g.head, c.smp, g.smp, B);
    const int steps = e2e_steps();
    for (int k = 0; k < steps; k++) {
        /* teacher forcing: both take the CPU's tokens */
        struct omni_tensor tok;
        OK(omni_tensor_copy_to(&tok, omni_harness_pull(c.smp, "token"), OMNI_CPU, &err));
        for (int i = 0; i < 2; i++) {
            omni_harness_set_position(m[i]->embed, OMB_T2I_PREFIX + k);
            if (i == 0)
                OK(omni_harness_push(m[i]->embed, "ids", &tok, &err));
            else
                push2(c.embed, g.embed, "ids", &tok);
            OK(omni_harness_forward(m[i]->embed, &err));
        }
        omni_tensor_release(&tok);
        cmp_out("t2i token embedding", omni_harness_pull(g.embed, "embeds"), omni_harness_pull(c.embed, "embeds"), 1e-4);
        for (int i = 0; i < 2; i++) {
            OK(omni_harness_push(m[i]->bb, "embeds", omni_harness_pull(m[i]->embed, "embeds"), &err));
            OK(omni_harness_step(m[i]->bb, &err));
            OK(omni_harness_push(m[i]->head, "hidden", omni_harness_pull(m[i]->bb, "hidden"), &err));
            OK(omni_harness_forward(m[i]->head, &err));
            OK(omni_harness_push(m[i]->smp, "logits", omni_harness_pull(m[i]->head, "logits"), &err));
            OK(omni_harness_forward(m[i]->smp, &err));
        }
        cmp_step("t2i", k + 1, c.head, g.head, c.smp, g.smp, B);
    }
    /* the VQ decoder at full size on one set of 256 codes */
    struct omni_tensor codes;
    rand_ids(&codes, 1, OMB_T2I_CODES, 16384);
    push2(c.vq, g.vq, "codes", &codes);
    omni_tensor_release(&codes);
    OK(omni_harness_forward(c.vq, &err));
    OK(omni_harness_forward(g.vq, &err));
    cmp_out("t2i VQ decode", omni_harness_pull(g.vq, "image"), omni_harness_pull(c.vq, "image"), 1e-3);
    printf("t2i end to end: prefill + %d teacher-forced steps, batch %lld: tokens equal\n", steps, (long long)B);
    omb_t2i_close(&c);
    omb_t2i_close(&g);
}
END_TEST

START_TEST(test_mmu_full_size_cuda_f32_matches_cpu_f32)
{
    struct omb_paths p;
    struct omb_mmu c, g;
    OK(omb_weights(bench_dir(), 1, OMB_LM | OMB_VISION, &p, &err));
    OK(omb_mmu_open(&c, &p, "cpu", "f32", 1, &err));
    OK(omb_mmu_open(&g, &p, "cuda:0", "f32", 1, &err));
    struct omni_tensor px, q;
    ct_hrand(&px, &R, OMNI_DTYPE_F32, 1.0f, 4, SH(1, 3, OMB_IMAGE, OMB_IMAGE));
    push2(c.dino, g.dino, "pixels", &px);
    push2(c.siglip, g.siglip, "pixels", &px);
    kt_release(&px);
    struct omb_mmu *m[2] = {&c, &g};
    for (int i = 0; i < 2; i++) {
        OK(omni_harness_forward(m[i]->dino, &err));
        OK(omni_harness_forward(m[i]->siglip, &err));
    }
    cmp_out("DINOv2-L features", omni_harness_pull(g.dino, "features"), omni_harness_pull(c.dino, "features"), 1e-3);
    cmp_out("SigLIP features", omni_harness_pull(g.siglip, "features"), omni_harness_pull(c.siglip, "features"), 1e-3);
    rand_ids(&q, 1, 12, 50000);
    for (int i = 0; i < 2; i++) {
        OK(omni_harness_push(m[i]->proj, "x0", omni_harness_pull(m[i]->dino, "features"), &err));
        OK(omni_harness_push(m[i]->proj, "x1", omni_harness_pull(m[i]->siglip, "features"), &err));
        OK(omni_harness_forward(m[i]->proj, &err));
        OK(omni_harness_push(m[i]->assemble, "visual", omni_harness_pull(m[i]->proj, "embeds"), &err));
        OK(omni_harness_push(m[i]->assemble, "ids", &q, &err));
        OK(omni_harness_forward(m[i]->assemble, &err));
        OK(omni_harness_push(m[i]->bb, "embeds", omni_harness_pull(m[i]->assemble, "embeds"), &err));
        OK(omni_harness_forward(m[i]->bb, &err));
        OK(omni_harness_push(m[i]->head, "hidden", omni_harness_pull(m[i]->bb, "hidden"), &err));
        OK(omni_harness_forward(m[i]->head, &err));
        OK(omni_harness_push(m[i]->smp, "logits", omni_harness_pull(m[i]->head, "logits"), &err));
        OK(omni_harness_forward(m[i]->smp, &err));
    }
    omni_tensor_release(&q);
    cmp_out("mmu assembled embeds", omni_harness_pull(g.assemble, "embeds"), omni_harness_pull(c.assemble, "embeds"), 1e-3);
    cmp_step("mmu", 0, c.head, g.head, c.smp, g.smp, 1);
    const int64_t L = omni_harness_pull(c.assemble, "embeds")->shape[1];
    const int steps = e2e_steps();
    for (int k = 0; k < steps; k++) {
        struct omni_tensor tok;
        OK(omni_tensor_copy_to(&tok, omni_harness_pull(c.smp, "token"), OMNI_CPU, &err));
        omni_harness_set_position(c.embed, L + k);
        omni_harness_set_position(g.embed, L + k);
        push2(c.embed, g.embed, "ids", &tok);
        omni_tensor_release(&tok);
        for (int i = 0; i < 2; i++) {
            OK(omni_harness_forward(m[i]->embed, &err));
            OK(omni_harness_push(m[i]->bb, "embeds", omni_harness_pull(m[i]->embed, "embeds"), &err));
            OK(omni_harness_step(m[i]->bb, &err));
            OK(omni_harness_push(m[i]->head, "hidden", omni_harness_pull(m[i]->bb, "hidden"), &err));
            OK(omni_harness_forward(m[i]->head, &err));
            OK(omni_harness_push(m[i]->smp, "logits", omni_harness_pull(m[i]->head, "logits"), &err));
            OK(omni_harness_forward(m[i]->smp, &err));
        }
        cmp_step("mmu", k + 1, c.head, g.head, c.smp, g.smp, 1);
    }
    printf("mmu end to end: vision + prefill of %lld positions + %d teacher-forced steps: tokens equal\n",
           (long long)L, steps);
    omb_mmu_close(&c);
    omb_mmu_close(&g);
}
END_TEST

/* One request of the tiny T2I pipeline (15 loop steps, top-k sampling with `seed`): its
 * codes (host copy) and graph counts. */
/* A request of `batch` captions (1 to 3) on the tiny T2I pipeline. */
static void tiny_t2i_batch(struct omni_pipeline *p, int batch, uint64_t seed,
                           struct omni_tensor *codes, int *rec, int *rep)
{
    static const char *const caps[3] = {"A bed in a bedroom between two lamps.",
                                        "A red bicycle leaning on a wall.",
                                        "A bowl of fruit on a wooden table."};
    struct omni_request *r = omni_request_new(p);
    ck_assert_ptr_nonnull(r);
    ck_assert(batch >= 1 && batch <= 3);
    if (batch == 1)
        OK(omni_request_set_text(r, "prompt", caps[0], &err));
    else
        OK(omni_request_set_texts(r, "prompt", caps, batch, &err));
    omni_request_set_seed(r, seed);
    OK(omni_request_set_option(r, "sampler.top_k=5", &err));
    OK(omni_request_set_option(r, "sampler.temperature=0.9", &err));
    char out[1200];
    snprintf(out, sizeof out, "writer.output=%s/tiny-graphs.png", tu_tmpdir());
    OK(omni_request_set_option(r, out, &err));
    ck_assert_msg(omni_pipeline_run(p, r, &err) == OMNI_OK, "%s", err.msg);
    const struct omni_tensor *c = omni_request_output(r, "codes");
    ck_assert_ptr_nonnull(c);
    OK(omni_tensor_copy_to(codes, c, OMNI_CPU, &err));
    omni_request_graph_stats(r, rec, rep);
    omni_request_free(r);
}

static void tiny_t2i(struct omni_pipeline *p, uint64_t seed, struct omni_tensor *codes, int *rec,
                     int *rep)
{
    tiny_t2i_batch(p, 1, seed, codes, rec, rep);
}

/* The loop's CUDA graph across requests (the tiny T2I pipeline on cuda:0, batch 1: the loop
 * stages' states are kept between requests): a request with the settings of the one before
 * replays the graph that one recorded, without recording; another seed records again (the
 * sampler bakes it), and so does the seed after it; every request's codes equal the same
 * request run eagerly (OMNI_CUDA_GRAPHS=0) on a fresh pipeline. */
/* Over OMNI_KEEP_LOOP_STATES (2 here) the loop states are kept parked: the backbone's
 * state memory goes back to the device between requests (less in use than with the
 * states kept whole), and the next request of that batch still replays the graph and
 * gives what it gives eagerly. */
START_TEST(test_parked_loop_states_give_memory_back_and_replay)
{
    const struct omni_pipeline_options o = {.size = sizeof o, .device = "cuda:0"};
    struct omni_tensor got[2][2], want;
    size_t used[2];
    setenv("OMNI_CUDA_GRAPHS", "1", 1);
    for (int whole = 0; whole < 2; whole++) {
        struct omni_pipeline *p;
        setenv("OMNI_KEEP_LOOP_STATES", whole ? "8" : "2", 1);
        OK(omni_pipeline_load(&p, "pipelines/t2i-tiny.yaml", &o, &err));
        for (int i = 0; i < 2; i++) {
            int rec = -1, rep = -1;
            tiny_t2i_batch(p, 3, 7, &got[whole][i], &rec, &rep);
            ct_sync();
            if (i == 0)
                used[whole] = omni_cuda_memory_used(CT_DEV);
            printf("tiny t2i batch 3, states kept %s, request %d: graphs recorded %d, replayed "
                   "%d; %zu bytes in use after the first\n",
                   whole ? "whole" : "parked", i, rec, rep, used[whole]);
            ck_assert_msg(rec == (i == 0) && rep == (i == 1),
                          "states kept %s, request %d: recorded %d, replayed %d",
                          whole ? "whole" : "parked", i, rec, rep);
        }
        omni_pipeline_free(p);
    }
    /* the tiny backbone's conv and ssm states: at least one page each (2 MiB on the H200) */
    ck_assert_msg(used[0] + ((size_t)2 << 20) <= used[1],
                  "parked states use %zu bytes of device memory, whole ones %zu", used[0], used[1]);
    setenv("OMNI_CUDA_GRAPHS", "0", 1);
    unsetenv("OMNI_KEEP_LOOP_STATES");
    struct omni_pipeline *p;
    OK(omni_pipeline_load(&p, "pipelines/t2i-tiny.yaml", &o, &err));
    int rec = -1, rep = -1;
    tiny_t2i_batch(p, 3, 7, &want, &rec, &rep);
    ck_assert_int_eq(rec + rep, 0);
    for (int whole = 0; whole < 2; whole++)
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(omni_tensor_numel(&want), omni_tensor_numel(&got[whole][i]));
            ck_assert_msg(!memcmp(omni_tensor_data(&want), omni_tensor_data(&got[whole][i]),
                                  omni_tensor_nbytes(&want)),
                          "states kept %s, request %d: codes differ from eager",
                          whole ? "whole" : "parked", i);
            omni_tensor_release(&got[whole][i]);
        }
    omni_tensor_release(&want);
    omni_pipeline_free(p);
    unsetenv("OMNI_CUDA_GRAPHS");
}
END_TEST

START_TEST(test_loop_graph_is_replayed_across_requests)
{
    const struct omni_pipeline_options o = {.size = sizeof o, .device = "cuda:0"};
    const uint64_t seeds[4] = {1, 1, 2, 1};
    const int want_rec[4] = {1, 0, 1, 1}, want_rep[4] = {0, 1, 0, 0};
    struct omni_tensor got[4];
    struct omni_pipeline *p;
    setenv("OMNI_CUDA_GRAPHS", "1", 1);
    OK(omni_pipeline_load(&p, "pipelines/t2i-tiny.yaml", &o, &err));
    for (int i = 0; i < 4; i++) {
        int rec = -1, rep = -1;
        tiny_t2i(p, seeds[i], &got[i], &rec, &rep);
        printf("tiny t2i request %d (seed %llu): graphs recorded %d, replayed %d\n", i,
               (unsigned long long)seeds[i], rec, rep);
        ck_assert_msg(rec == want_rec[i] && rep == want_rep[i],
                      "request %d (seed %llu): recorded %d, replayed %d; expected %d, %d", i,
                      (unsigned long long)seeds[i], rec, rep, want_rec[i], want_rep[i]);
    }
    omni_pipeline_free(p);
    setenv("OMNI_CUDA_GRAPHS", "0", 1);
    OK(omni_pipeline_load(&p, "pipelines/t2i-tiny.yaml", &o, &err));
    for (int i = 0; i < 4; i++) {
        struct omni_tensor want;
        int rec = -1, rep = -1;
        tiny_t2i(p, seeds[i], &want, &rec, &rep);
        ck_assert_int_eq(rec + rep, 0);
        ck_assert_int_eq(omni_tensor_numel(&want), omni_tensor_numel(&got[i]));
        ck_assert_msg(!memcmp(omni_tensor_data(&want), omni_tensor_data(&got[i]),
                              omni_tensor_nbytes(&want)),
                      "request %d (seed %llu): codes differ between graphs and eager", i,
                      (unsigned long long)seeds[i]);
        omni_tensor_release(&want);
        omni_tensor_release(&got[i]);
    }
    omni_pipeline_free(p);
    unsetenv("OMNI_CUDA_GRAPHS");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cuda_stages");
    TCase *t = tcase_create("stages");
    tcase_add_checked_fixture(t, ct_setup, ct_teardown);
    tcase_set_timeout(t, 600);
    tcase_add_test(t, test_mamba2_tiny_on_cuda_matches_cpu);
    tcase_add_test(t, test_mamba2_decode_step_replays_as_a_cuda_graph);
    tcase_add_test(t, test_mamba2_two_layers_at_full_width_match_cpu);
    tcase_add_test(t, test_vision_towers_projector_and_vq_on_cuda_match_cpu);
    tcase_add_test(t, test_t2i_full_size_cuda_f32_matches_cpu_f32);
    tcase_add_test(t, test_mmu_full_size_cuda_f32_matches_cpu_f32);
    tcase_add_test(t, test_loop_graph_is_replayed_across_requests);
    tcase_add_test(t, test_parked_loop_states_give_memory_back_and_replay);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return ct_main("check_cuda_stages", suite); }

#else /* !OMNI_HAVE_CUDA */

int main(void) { return ct_main_without_cuda("check_cuda_stages"); }

#endif
