/* omni bench - throughput and latency of the t2i and mmu pipelines at full
 * size, with synthetic weights that omni makes itself (deterministic from
 * --seed; bench_model.c), so it runs on any machine.
 *
 * Cases (each after a short warm-up of the same chain):
 *   t2i_b1, t2i_b16  caption -> prefill (72 positions) -> 255 decode steps ->
 *                    VQ decode of the 256 codes: images/s, prefill ms, ms per
 *                    decode step, VQ decode ms.
 *   vq_b1, vq_b16    the VQ decoder alone on random codes (after one warm-up
 *                    decode): ms per decode of B images (mean and best of 5).
 *   mmu              a 384x384 image and a 12-token question: time to first
 *                    token = vision (DINOv2 + SigLIP + projector) + prefill
 *                    (745 positions, head, sampler); then 256 decode tokens/s.
 *   mmu_16k          a 16384-position context prefill (backbone + head), then
 *                    256 decode steps fed by embeddings: tokens/s.
 * Every case reports the most device memory omni held (weights, states,
 * activations, workspaces); t2i and mmu also by phase (open, warm-up,
 * [VQ warm-up,] [vision,] prefill, decode[, VQ]: the memory held when the
 * phase began and its peak; JSON "memory_phases", and on a GPU an indented
 * line under the case's row). With OMNI_CUDA_MEMLOG=1 they add the largest
 * live allocations at the peak, grouped by stage and size ("memory_at_peak"
 * and a second indented line). On CUDA the whole decode step (token embedding,
 * backbone step, head, sampler) is captured once per request as a CUDA graph
 * and replayed (--no-graph runs it eagerly); position and step reach the
 * graph through device counters, as under the executor.
 * Timings are host wall clock around work that ends with
 * omni_cuda_synchronize. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_mem.h"
#include "bench_model.h"
#include "cli.h"
#include "omni/cuda.h"

#ifdef OMNI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

struct opts {
    const char *device, *dtype, *dir, *json, *markdown, *commit, *state_dtype;
    char cases[256];
    uint64_t seed;
    int steps, mmu_tokens, context, graph, warm;
};

struct ctx {
    struct opts o;
    struct omni_device dev;
    struct omb_paths paths;
    cJSON *root, *cases;
    char card[256];
    char extra[1536]; /* indented lines printed under the case's table row */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int sync_dev(struct ctx *c, struct omni_error *err)
{
    return c->dev.type == OMNI_DEVICE_CUDA ? omni_cuda_synchronize(c->dev, err) : OMNI_OK;
}

static double gib(size_t b) { return (double)b / (double)(1u << 30); }

/* The phases of mem into out ("memory_phases", and "memory_at_peak" with
 * OMNI_CUDA_MEMLOG) and c->extra (on a GPU). */
static void mem_report(struct ctx *c, const struct omb_mem *mem, cJSON *out)
{
    cJSON *arr = cJSON_AddArrayToObject(out, "memory_phases");
    for (int i = 0; arr && i < mem->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "phase", mem->p[i].name);
        cJSON_AddNumberToObject(o, "start_gib", gib(mem->p[i].start));
        cJSON_AddNumberToObject(o, "peak_gib", gib(mem->p[i].peak));
        cJSON_AddItemToArray(arr, o);
    }
    if (c->dev.type != OMNI_DEVICE_CUDA)
        return;
    char buf[1024];
    size_t u = (size_t)snprintf(c->extra, sizeof c->extra, "    memory GiB (start/peak): %s",
                                omb_mem_line(mem, buf, sizeof buf));
    if (mem->n_log > 0 && mem->peak_phase >= 0) {
        cJSON *a = cJSON_AddObjectToObject(out, "memory_at_peak");
        cJSON_AddStringToObject(a, "phase", mem->p[mem->peak_phase].name);
        cJSON *top = cJSON_AddArrayToObject(a, "top");
        for (int i = 0; i < mem->n_log; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "tag", mem->log[i].tag);
            cJSON_AddNumberToObject(o, "bytes", (double)mem->log[i].bytes);
            cJSON_AddNumberToObject(o, "count", (double)mem->log[i].count);
            cJSON_AddNumberToObject(o, "total_gib", gib(mem->log[i].bytes * (size_t)mem->log[i].count));
            cJSON_AddItemToArray(top, o);
        }
        if (u < sizeof c->extra)
            snprintf(c->extra + u, sizeof c->extra - u, "\n    at the peak (%s): %s",
                     mem->p[mem->peak_phase].name, omb_mem_log_line(mem, 8, buf, sizeof buf));
    }
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        if ((rc = (expr)) < 0)                                                                     \
            goto done;                                                                             \
    } while (0)

/* push t into port `port` of h and run it (forward or step) */
static int run1(struct omni_harness *h, const char *port, const struct omni_tensor *t, int step,
                struct omni_error *err)
{
    int rc = t ? omni_harness_push(h, port, t, err) : OMNI_OK;
    if (!rc)
        rc = step ? omni_harness_step(h, err) : omni_harness_forward(h, err);
    return rc;
}

/* The decode chain of one step: the token embedding of `tok` (when embed is
 * given), backbone step, head, sampler. */
struct chain {
    struct omni_harness *embed, *bb, *head, *smp;
};

static int lm_step(const struct chain *ch, const struct omni_tensor *in, struct omni_error *err)
{
    int rc = OMNI_OK;
    if (ch->embed) {
        rc = run1(ch->embed, "ids", in, 0, err);
        in = omni_harness_pull(ch->embed, "embeds");
    }
    if (rc == OMNI_OK)
        rc = run1(ch->bb, "embeds", in, 1, err);
    if (!rc)
        rc = run1(ch->head, "hidden", omni_harness_pull(ch->bb, "hidden"), 0, err);
    if (!rc)
        rc = run1(ch->smp, "logits", omni_harness_pull(ch->head, "logits"), 0, err);
    return rc;
}

/* A decode step captured as a CUDA graph (exec), or nothing (eager); ctr is
 * the device (position, step) pair the graph-safe stages read. */
struct step_graph {
    void *exec; /* cudaGraphExec_t */
    struct omni_tensor ctr;
    int64_t *ring; /* pinned host slots for the counter uploads */
    int slot;
};

static int graph_init(struct ctx *c, struct step_graph *g, const struct chain *ch, struct omni_error *err)
{
    memset(g, 0, sizeof *g);
#ifdef OMNI_HAVE_CUDA
    if (!c->o.graph || c->dev.type != OMNI_DEVICE_CUDA)
        return OMNI_OK;
    const int64_t sh[1] = {2};
    int rc = omni_tensor_alloc(&g->ctr, OMNI_DTYPE_I64, 1, sh, c->dev, err);
    if (rc)
        return rc;
    cudaError_t ce = cudaMallocHost((void **)&g->ring, 64 * 2 * sizeof *g->ring);
    if (ce != cudaSuccess)
        return omni_error_set(err, OMNI_ECUDA, "cudaMallocHost: %s", cudaGetErrorString(ce));
    const int64_t *p = omni_tensor_data(&g->ctr);
    if (ch->embed)
        omni_harness_set_counters(ch->embed, p, p + 1);
    omni_harness_set_counters(ch->smp, p, p + 1);
#else
    (void)c, (void)ch, (void)err;
#endif
    return OMNI_OK;
}

/* Run step k at `position` from token `tok`: eagerly for k == 0 (it sizes
 * every buffer), captured at k == 1, replayed after. */
static int graph_step(struct ctx *c, struct step_graph *g, const struct chain *ch, int64_t position,
                      int64_t k, const struct omni_tensor *tok, struct omni_error *err)
{
    if (ch->embed)
        omni_harness_set_position(ch->embed, position);
#ifdef OMNI_HAVE_CUDA
    if (g->ctr.buf) {
        cudaStream_t s = (cudaStream_t)omni_cuda_stream(c->dev);
        int64_t *src = g->ring + 2 * g->slot;
        g->slot = (g->slot + 1) % 64; /* a queued upload never sees its source change */
        src[0] = position, src[1] = k;
        cudaError_t ce = cudaMemcpyAsync(omni_tensor_data(&g->ctr), src, 2 * sizeof *src,
                                         cudaMemcpyHostToDevice, s);
        if (ce != cudaSuccess)
            return omni_error_set(err, OMNI_ECUDA, "counter upload: %s", cudaGetErrorString(ce));
        if (k >= 1 && !g->exec) {
            cudaGraph_t graph = NULL;
            cudaGraphExec_t exec = NULL;
            ce = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
            if (ce != cudaSuccess)
                return omni_error_set(err, OMNI_ECUDA, "cudaStreamBeginCapture: %s", cudaGetErrorString(ce));
            int rc = lm_step(ch, tok, err);
            ce = cudaStreamEndCapture(s, &graph);
            if (rc < 0)
                return omni_error_prefix(err, "capturing the decode step: ");
            if (ce != cudaSuccess)
                return omni_error_set(err, OMNI_ECUDA, "capturing the decode step: %s", cudaGetErrorString(ce));
            ce = cudaGraphInstantiate(&exec, graph, 0);
            cudaGraphDestroy(graph);
            if (ce != cudaSuccess)
                return omni_error_set(err, OMNI_ECUDA, "cudaGraphInstantiate: %s", cudaGetErrorString(ce));
            g->exec = exec;
        }
        if (g->exec) {
            ce = cudaGraphLaunch((cudaGraphExec_t)g->exec, s);
            return ce == cudaSuccess ? OMNI_OK
                                     : omni_error_set(err, OMNI_ECUDA, "cudaGraphLaunch: %s", cudaGetErrorString(ce));
        }
    }
#endif
    (void)c;
    return lm_step(ch, tok, err);
}

static void graph_free(struct ctx *c, struct step_graph *g, const struct chain *ch)
{
#ifdef OMNI_HAVE_CUDA
    if (g->ctr.buf) /* nothing queued may still read the counters or the ring */
        cudaStreamSynchronize((cudaStream_t)omni_cuda_stream(c->dev));
    if (g->exec)
        cudaGraphExecDestroy((cudaGraphExec_t)g->exec);
    if (g->ring)
        cudaFreeHost(g->ring);
#endif
    (void)c;
    if (ch->embed)
        omni_harness_set_counters(ch->embed, NULL, NULL);
    if (ch->smp)
        omni_harness_set_counters(ch->smp, NULL, NULL);
    omni_tensor_release(&g->ctr);
    memset(g, 0, sizeof *g);
}

/* host i32 (B, n) of pseudo-random text ids below 50000 */
static int rand_ids(struct omni_tensor *t, int64_t B, int64_t n, uint64_t seed, struct omni_error *err)
{
    const int64_t sh[2] = {B, n};
    int rc = omni_tensor_alloc(t, OMNI_DTYPE_I32, 2, sh, OMNI_CPU, err);
    if (rc)
        return rc;
    int32_t *p = omni_tensor_data(t);
    for (int64_t i = 0; i < B * n; i++)
        p[i] = (int32_t)(omni_sample_uniform(seed, 7, i) * 50000.0);
    return OMNI_OK;
}

/* device f32 tensor of `shape` filled with U(-a, a) */
static int rand_f32(struct ctx *c, struct omni_tensor *t, int ndim, const int64_t *shape, float a,
                    uint64_t salt, struct omni_error *err)
{
    struct omni_tensor h;
    int rc = omni_tensor_alloc(&h, OMNI_DTYPE_F32, ndim, shape, OMNI_CPU, err);
    if (rc)
        return rc;
    float *p = omni_tensor_data(&h);
    for (int64_t i = 0; i < omni_tensor_numel(&h); i++)
        p[i] = a * (float)(2.0 * omni_sample_uniform(c->o.seed ^ salt, 3, i) - 1.0);
    if (c->dev.type == OMNI_DEVICE_CPU) {
        *t = h;
        return OMNI_OK;
    }
    rc = omni_tensor_copy_to(t, &h, c->dev, err);
    omni_tensor_release(&h);
    return rc;
}

/* ---- t2i ------------------------------------------------------------------------------- */

struct t2i_res {
    double prefill_ms, step_ms, vq_ms, total_s, images_per_s;
};

/* One request of B images with `steps` decode steps; codes (B, steps + 1) on the device. */
static int t2i_once(struct ctx *c, struct omb_t2i *m, int64_t B, int steps, int do_vq,
                    struct omb_mem *mem, struct t2i_res *r, struct omni_error *err)
{
    struct omni_tensor ids = {0}, codes = {0};
    struct step_graph g = {0};
    const struct chain ch = {m->embed, m->bb, m->head, m->smp};
    int rc;
    const int64_t csh[2] = {B, steps + 1};
    TRY(rand_ids(&ids, B, 12, c->o.seed + (uint64_t)B, err));
    TRY(omni_tensor_alloc(&codes, OMNI_DTYPE_I32, 2, csh, c->dev, err));
    omni_harness_reset_state(m->bb);
    TRY(sync_dev(c, err));
    if (mem)
        omb_mem_phase(mem, "prefill");
    double t0 = now_s();
    TRY(run1(m->prefix, "ids", &ids, 0, err));
    TRY(run1(m->bb, "embeds", omni_harness_pull(m->prefix, "embeds"), 0, err));
    TRY(run1(m->head, "hidden", omni_harness_pull(m->bb, "hidden"), 0, err));
    TRY(run1(m->smp, "logits", omni_harness_pull(m->head, "logits"), 0, err));
    TRY(sync_dev(c, err));
    double t1 = now_s();
    struct omni_tensor col = codes; /* column k of codes, (B, 1) */
    col.shape[1] = 1;
    if (mem)
        omb_mem_phase(mem, "decode");
    TRY(graph_init(c, &g, &ch, err));
    for (int k = 0; k < steps; k++) {
        const struct omni_tensor *tok = omni_harness_pull(m->smp, "token");
        col.offset = codes.offset + (int64_t)k * 4;
        TRY(omni_op_copy(&col, tok, err));
        TRY(graph_step(c, &g, &ch, OMB_T2I_PREFIX + k, k, tok, err));
    }
    col.offset = codes.offset + (int64_t)steps * 4;
    TRY(omni_op_copy(&col, omni_harness_pull(m->smp, "token"), err));
    TRY(sync_dev(c, err));
    double t2 = now_s(), t2b = t2, t3 = t2;
    if (do_vq && m->vq && steps + 1 == OMB_T2I_CODES) {
        /* as the executor does before its after phase: the backbone's states are
         * not needed by the VQ decode (1.6 GB at batch 16) */
        graph_free(c, &g, &ch);
        omni_harness_reset_state(m->bb);
        if (mem)
            omb_mem_phase(mem, "vq");
        t2b = now_s();
        TRY(run1(m->vq, "codes", &codes, 0, err));
        TRY(sync_dev(c, err));
        t3 = now_s();
    }
    r->prefill_ms = 1e3 * (t1 - t0);
    r->step_ms = steps ? 1e3 * (t2 - t1) / steps : 0;
    r->vq_ms = 1e3 * (t3 - t2b);
    r->total_s = t3 - t0;
    r->images_per_s = (double)B / r->total_s;
done:
    graph_free(c, &g, &ch);
    omni_tensor_release(&ids);
    omni_tensor_release(&codes);
    return rc;
}

static int case_t2i(struct ctx *c, int64_t B, cJSON *out, char *line, size_t n, struct omni_error *err)
{
    struct omb_t2i m;
    struct t2i_res warm, r;
    struct omb_mem mem;
    int rc;
    omb_mem_init(&mem, c->dev);
    omb_mem_phase(&mem, "open");
    double t0 = now_s();
    if ((rc = omb_t2i_open(&m, &c->paths, c->o.device, c->o.dtype, 1, err)))
        return rc;
    double load_s = now_s() - t0;
    omb_mem_phase(&mem, "warmup");
    if ((rc = t2i_once(c, &m, B, c->o.warm, 0, NULL, &warm, err)))
        goto done;
    if (m.vq && c->o.steps + 1 == OMB_T2I_CODES) {
        /* the warm-up's few codes make no image: warm the VQ decoder on zeros,
         * after freeing the backbone's states as the real request does below
         * (held through this warm-up they made the case's peak: 1.7 GiB of
         * states and scratch at batch 16 on top of the VQ decoder's passes) */
        struct omni_tensor z;
        omni_harness_reset_state(m.bb);
        omb_mem_phase(&mem, "warmup_vq");
        const int64_t zsh[2] = {B, OMB_T2I_CODES};
        if ((rc = omni_tensor_alloc(&z, OMNI_DTYPE_I32, 2, zsh, c->dev, err)))
            goto done;
        rc = run1(m.vq, "codes", &z, 0, err);
        omni_tensor_release(&z);
        if (rc < 0 || (rc = sync_dev(c, err)))
            goto done;
    }
    if ((rc = t2i_once(c, &m, B, c->o.steps, 1, &mem, &r, err)))
        goto done;
    omb_mem_end(&mem);
    const double peak = gib(omb_mem_peak(&mem));
    cJSON_AddNumberToObject(out, "batch", (double)B);
    cJSON_AddNumberToObject(out, "images_per_s", r.images_per_s);
    cJSON_AddNumberToObject(out, "prefill_ms", r.prefill_ms);
    cJSON_AddNumberToObject(out, "decode_ms_per_step", r.step_ms);
    cJSON_AddNumberToObject(out, "decode_steps", c->o.steps);
    cJSON_AddNumberToObject(out, "vq_decode_ms", r.vq_ms);
    cJSON_AddNumberToObject(out, "total_s", r.total_s);
    cJSON_AddNumberToObject(out, "load_s", load_s);
    cJSON_AddNumberToObject(out, "peak_gib", peak);
    mem_report(c, &mem, out);
    snprintf(line, n, "| t2i batch %-3lld | %8.2f img/s | prefill %7.1f ms | step %6.3f ms | VQ %7.1f ms | peak %5.2f GiB |",
             (long long)B, r.images_per_s, r.prefill_ms, r.step_ms, r.vq_ms, peak);
done:
    omb_t2i_close(&m);
    return rc;
}

/* ---- vq alone --------------------------------------------------------------------------- */

#define VQ_RUNS 5

static int case_vq(struct ctx *c, int64_t B, cJSON *out, char *line, size_t n, struct omni_error *err)
{
    struct omni_harness *vq = NULL;
    struct omni_tensor codes = {0};
    int rc;
    omni_cuda_memory_reset_peak(c->dev);
    const int64_t csh[2] = {B, OMB_T2I_CODES};
    TRY(omb_vq_open(&vq, &c->paths, c->o.device, c->o.dtype, err));
    TRY(omni_tensor_alloc(&codes, OMNI_DTYPE_I32, 2, csh, OMNI_CPU, err));
    int32_t *cp = omni_tensor_data(&codes);
    for (int64_t i = 0; i < B * OMB_T2I_CODES; i++)
        cp[i] = (int32_t)(omni_sample_uniform(c->o.seed + 5, 9, i) * 16384.0) & 16383;
    TRY(run1(vq, "codes", &codes, 0, err)); /* warm-up */
    TRY(sync_dev(c, err));
    double sum = 0, best = 1e30;
    for (int k = 0; k < VQ_RUNS; k++) {
        double t0 = now_s();
        TRY(run1(vq, "codes", &codes, 0, err));
        TRY(sync_dev(c, err));
        const double ms = 1e3 * (now_s() - t0);
        sum += ms;
        best = ms < best ? ms : best;
    }
    const double mean = sum / VQ_RUNS, peak = gib(omni_cuda_memory_peak(c->dev));
    cJSON_AddNumberToObject(out, "batch", (double)B);
    cJSON_AddNumberToObject(out, "vq_decode_ms", mean);
    cJSON_AddNumberToObject(out, "vq_decode_best_ms", best);
    cJSON_AddNumberToObject(out, "images_per_s", 1e3 * (double)B / mean);
    cJSON_AddNumberToObject(out, "peak_gib", peak);
    snprintf(line, n, "| vq batch %-3lld  | VQ %7.2f ms (best %7.2f) | %8.1f img/s | peak %5.2f GiB |",
             (long long)B, mean, best, 1e3 * (double)B / mean, peak);
done:
    omni_tensor_release(&codes);
    omni_harness_free(vq);
    return rc;
}

/* ---- mmu ------------------------------------------------------------------------------- */

struct mmu_res {
    double vision_ms, prefill_ms, ttft_ms, tok_per_s, step_ms;
};

static int mmu_once(struct ctx *c, struct omb_mmu *m, const struct omni_tensor *pix, int tokens,
                    struct omb_mem *mem, struct mmu_res *r, struct omni_error *err)
{
    struct omni_tensor q = {0};
    struct step_graph g = {0};
    const struct chain ch = {m->embed, m->bb, m->head, m->smp};
    int rc;
    TRY(rand_ids(&q, 1, 12, c->o.seed + 99, err));
    omni_harness_reset_state(m->bb);
    TRY(sync_dev(c, err));
    if (mem)
        omb_mem_phase(mem, "vision");
    double t0 = now_s();
    TRY(run1(m->dino, "pixels", pix, 0, err));
    TRY(run1(m->siglip, "pixels", pix, 0, err));
    TRY(omni_harness_push(m->proj, "x1", omni_harness_pull(m->siglip, "features"), err));
    TRY(run1(m->proj, "x0", omni_harness_pull(m->dino, "features"), 0, err));
    TRY(sync_dev(c, err));
    double t1 = now_s();
    if (mem)
        omb_mem_phase(mem, "prefill");
    TRY(omni_harness_push(m->assemble, "ids", &q, err));
    TRY(run1(m->assemble, "visual", omni_harness_pull(m->proj, "embeds"), 0, err));
    const struct omni_tensor *emb = omni_harness_pull(m->assemble, "embeds");
    const int64_t L = emb->shape[1];
    TRY(run1(m->bb, "embeds", emb, 0, err));
    TRY(run1(m->head, "hidden", omni_harness_pull(m->bb, "hidden"), 0, err));
    TRY(run1(m->smp, "logits", omni_harness_pull(m->head, "logits"), 0, err));
    TRY(sync_dev(c, err));
    double t2 = now_s();
    if (mem)
        omb_mem_phase(mem, "decode");
    TRY(graph_init(c, &g, &ch, err));
    for (int k = 0; k < tokens; k++) {
        TRY(graph_step(c, &g, &ch, L + k, k, omni_harness_pull(m->smp, "token"), err));
        if (rc == OMNI_DONE)
            break;
    }
    TRY(sync_dev(c, err));
    double t3 = now_s();
    r->vision_ms = 1e3 * (t1 - t0);
    r->prefill_ms = 1e3 * (t2 - t1);
    r->ttft_ms = 1e3 * (t2 - t0);
    r->step_ms = tokens ? 1e3 * (t3 - t2) / tokens : 0;
    r->tok_per_s = tokens ? tokens / (t3 - t2) : 0;
done:
    graph_free(c, &g, &ch);
    omni_tensor_release(&q);
    return rc;
}

static int case_mmu(struct ctx *c, cJSON *out, char *line, size_t n, struct omni_error *err)
{
    struct omb_mmu m;
    struct mmu_res warm, r;
    struct omni_tensor pix = {0};
    struct omb_mem mem;
    int rc;
    omb_mem_init(&mem, c->dev);
    omb_mem_phase(&mem, "open");
    double t0 = now_s();
    if ((rc = omb_mmu_open(&m, &c->paths, c->o.device, c->o.dtype, 1, err)))
        return rc;
    double load_s = now_s() - t0;
    const int64_t sh[4] = {1, 3, OMB_IMAGE, OMB_IMAGE};
    omb_mem_phase(&mem, "warmup");
    if ((rc = rand_f32(c, &pix, 4, sh, 2.0f, 11, err)) ||
        (rc = mmu_once(c, &m, &pix, c->o.warm, NULL, &warm, err)) ||
        (rc = mmu_once(c, &m, &pix, c->o.mmu_tokens, &mem, &r, err)))
        goto done;
    omb_mem_end(&mem);
    const double peak = gib(omb_mem_peak(&mem));
    cJSON_AddNumberToObject(out, "ttft_ms", r.ttft_ms);
    cJSON_AddNumberToObject(out, "vision_ms", r.vision_ms);
    cJSON_AddNumberToObject(out, "prefill_ms", r.prefill_ms);
    cJSON_AddNumberToObject(out, "decode_tokens_per_s", r.tok_per_s);
    cJSON_AddNumberToObject(out, "decode_ms_per_token", r.step_ms);
    cJSON_AddNumberToObject(out, "decode_tokens", c->o.mmu_tokens);
    cJSON_AddNumberToObject(out, "load_s", load_s);
    cJSON_AddNumberToObject(out, "peak_gib", peak);
    mem_report(c, &mem, out);
    snprintf(line, n, "| mmu 384px+12  | TTFT %7.1f ms (vision %6.1f + prefill %6.1f) | decode %7.1f tok/s | peak %5.2f GiB |",
             r.ttft_ms, r.vision_ms, r.prefill_ms, r.tok_per_s, peak);
done:
    omni_tensor_release(&pix);
    omb_mmu_close(&m);
    return rc;
}

static int case_long(struct ctx *c, cJSON *out, char *line, size_t n, struct omni_error *err)
{
    struct omb_mmu m;
    struct omni_tensor ctxe = {0}, warme = {0}, e1 = {0};
    struct step_graph g = {0};
    struct chain ch = {0};
    int rc;
    omni_cuda_memory_reset_peak(c->dev);
    if ((rc = omb_mmu_open(&m, &c->paths, c->o.device, c->o.dtype, 0, err)))
        return rc;
    ch = (struct chain){NULL, m.bb, m.head, m.smp};
    const int64_t T = c->o.context, shw[3] = {1, 256, 2048}, sh[3] = {1, T, 2048}, sh1[3] = {1, 1, 2048};
    TRY(rand_f32(c, &warme, 3, shw, 0.05f, 21, err));
    TRY(rand_f32(c, &e1, 3, sh1, 0.05f, 23, err));
    /* warm-up: a short prefill and a few steps (none with --warmup 0) */
    omni_harness_reset_state(m.bb);
    if (c->o.warm > 0)
        TRY(run1(m.bb, "embeds", &warme, 0, err));
    for (int k = 0; k < c->o.warm; k++)
        TRY(lm_step(&ch, &e1, err));
    omni_tensor_release(&warme);
    TRY(rand_f32(c, &ctxe, 3, sh, 0.05f, 22, err));
    omni_harness_reset_state(m.bb);
    TRY(sync_dev(c, err));
    double t0 = now_s();
    TRY(run1(m.bb, "embeds", &ctxe, 0, err));
    TRY(run1(m.head, "hidden", omni_harness_pull(m.bb, "hidden"), 0, err));
    TRY(run1(m.smp, "logits", omni_harness_pull(m.head, "logits"), 0, err));
    TRY(sync_dev(c, err));
    double t1 = now_s();
    omni_tensor_release(&ctxe);
    TRY(graph_init(c, &g, &ch, err));
    TRY(sync_dev(c, err));
    double t2 = now_s();
    for (int k = 0; k < c->o.mmu_tokens; k++)
        TRY(graph_step(c, &g, &ch, T + k, k, &e1, err));
    TRY(sync_dev(c, err));
    double t3 = now_s();
    const double peak = gib(omni_cuda_memory_peak(c->dev));
    const double tps = c->o.mmu_tokens / (t3 - t2);
    cJSON_AddNumberToObject(out, "context", (double)T);
    cJSON_AddNumberToObject(out, "prefill_ms", 1e3 * (t1 - t0));
    cJSON_AddNumberToObject(out, "decode_tokens_per_s", tps);
    cJSON_AddNumberToObject(out, "decode_ms_per_token", 1e3 * (t3 - t2) / c->o.mmu_tokens);
    cJSON_AddNumberToObject(out, "peak_gib", peak);
    snprintf(line, n, "| mmu %5lld ctx  | prefill %8.1f ms | decode %7.1f tok/s | peak %5.2f GiB |",
             (long long)T, 1e3 * (t1 - t0), tps, peak);
done:
    graph_free(c, &g, &ch);
    omni_tensor_release(&ctxe);
    omni_tensor_release(&warme);
    omni_tensor_release(&e1);
    omb_mmu_close(&m);
    return rc;
}

/* ---- driver ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: omni bench [options]\n\n"
            "Full-size OmniMamba-1.3B throughput and latency with synthetic weights made by omni\n"
            "(deterministic from --seed, written once as bf16 .safetensors under --dir).\n\n"
            "cases: t2i_b1, t2i_b16 (images/s; prefill, ms per decode step, VQ decode), vq_b1, vq_b16\n"
            "(the VQ decoder alone on random codes: ms per decode, mean and best of 5), mmu (384x384\n"
            "image + 12-token question: time to first token = vision + prefill; decode tokens/s over\n"
            "256 tokens), mmu_16k (decode after a 16384-position context); peak device memory each,\n"
            "by phase for t2i and mmu (OMNI_CUDA_MEMLOG=1 adds the largest allocations at the peak).\n\n"
            "options:\n"
            "  --device DEV      cuda:0 (default when a GPU is present) or cpu\n"
            "  --dtype DT        bf16 (default), f16 or f32 weights\n"
            "  --state-dtype DT  storage of the backbone's SSM state: f32 (default), f16 or bf16\n"
            "  --cases LIST      comma-separated subset (default: all)\n"
            "  --dir DIR         where the synthetic weights live (default $TMPDIR/omni-bench)\n"
            "  --seed N          weights seed (default 1)\n"
            "  --steps N         t2i decode steps (default 255: 256 codes and a VQ decode)\n"
            "  --tokens N        mmu decode tokens (default 256)\n"
            "  --context N       positions of the long-context case (default 16384)\n"
            "  --warmup N        decode steps of the warm-up request (default 8)\n"
            "  --no-graph        run decode steps eagerly (default on CUDA: one CUDA graph per step)\n"
            "  --json FILE       write the JSON report to FILE (default: stdout after the table)\n"
            "  --markdown FILE   append the table, with date, card and commit, to FILE\n"
            "  --commit REV      commit to record (default $OMNI_COMMIT)\n"
            "  -h, --help        this text\n");
}

static int want(const struct opts *o, const char *name)
{
    if (!o->cases[0])
        return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", o->cases);
    for (char *s = strtok(buf, ","); s; s = strtok(NULL, ","))
        if (!strcmp(s, name))
            return 1;
    return 0;
}

int omni_cmd_bench(int argc, char **argv)
{
    struct ctx c;
    struct omni_error err = {0};
    int rc = 0, status = 0;
    memset(&c, 0, sizeof c);
    const char *tmp = getenv("TMPDIR");
    static char dirbuf[1024];
    snprintf(dirbuf, sizeof dirbuf, "%s/omni-bench", tmp && *tmp ? tmp : "/tmp");
    c.o = (struct opts){.device = NULL, .dtype = "bf16", .dir = dirbuf, .seed = 1, .steps = 255,
                        .mmu_tokens = 256, .context = 16384, .graph = 1, .warm = 8,
                        .commit = getenv("OMNI_COMMIT")};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (ARG("--device")) {
            c.o.device = v;
        } else if (ARG("--dtype")) {
            c.o.dtype = v;
        } else if (ARG("--state-dtype")) {
            c.o.state_dtype = v;
        } else if (ARG("--cases")) {
            snprintf(c.o.cases, sizeof c.o.cases, "%s", v);
        } else if (ARG("--dir")) {
            c.o.dir = v;
        } else if (ARG("--seed")) {
            c.o.seed = strtoull(v, NULL, 0);
        } else if (ARG("--steps")) {
            c.o.steps = atoi(v);
        } else if (ARG("--tokens")) {
            c.o.mmu_tokens = atoi(v);
        } else if (ARG("--context")) {
            c.o.context = atoi(v);
        } else if (ARG("--warmup")) {
            c.o.warm = atoi(v);
        } else if (!strcmp(a, "--no-graph")) {
            c.o.graph = 0;
        } else if (ARG("--json")) {
            c.o.json = v;
        } else if (ARG("--markdown")) {
            c.o.markdown = v;
        } else if (ARG("--commit")) {
            c.o.commit = v;
        } else {
            fprintf(stderr, "omni bench: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (c.o.steps < 0 || c.o.mmu_tokens < 1 || c.o.context < 1 || c.o.warm < 0) {
        fprintf(stderr, "omni bench: --steps, --tokens, --context and --warmup must be positive\n");
        return 2;
    }
    if (c.o.state_dtype) {
        const int sd = omni_dtype_parse(c.o.state_dtype);
        if (sd != OMNI_DTYPE_F32 && sd != OMNI_DTYPE_F16 && sd != OMNI_DTYPE_BF16) {
            fprintf(stderr, "omni bench: --state-dtype must be f32, f16 or bf16, got '%s'\n",
                    c.o.state_dtype);
            return 2;
        }
    }
    if (!c.o.device)
        c.o.device = omni_cuda_device_count() > 0 ? "cuda:0" : "cpu";
    if ((rc = omni_device_parse(c.o.device, &c.dev, &err))) {
        omni_cli_print_error("bench", &err);
        return 2;
    }
    snprintf(c.card, sizeof c.card, "CPU");
    if (c.dev.type == OMNI_DEVICE_CUDA) {
        struct omni_cuda_info info;
        if ((rc = omni_cuda_device_info(c.dev, &info, &err))) {
            omni_cli_print_error("bench", &err);
            return 1;
        }
        snprintf(c.card, sizeof c.card, "%s", info.name);
    }
    int which = 0;
    if (want(&c.o, "t2i_b1") || want(&c.o, "t2i_b16"))
        which |= OMB_LM | OMB_VQ;
    if (want(&c.o, "vq_b1") || want(&c.o, "vq_b16"))
        which |= OMB_VQ;
    if (want(&c.o, "mmu"))
        which |= OMB_LM | OMB_VISION;
    if (want(&c.o, "mmu_16k"))
        which |= OMB_LM;
    double tw = now_s();
    if ((rc = omb_weights(c.o.dir, c.o.seed, which, &c.paths, &err))) {
        omni_cli_print_error("bench", &err);
        return 1;
    }
    fprintf(stderr, "omni bench: weights ready in %.1f s (%s)\n", now_s() - tw, c.o.dir);
    if (c.o.state_dtype)
        snprintf(c.paths.bb_params, sizeof c.paths.bb_params, "state_dtype: %s", c.o.state_dtype);

    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    c.root = cJSON_CreateObject();
    cJSON_AddStringToObject(c.root, "card", c.card);
    cJSON_AddStringToObject(c.root, "device", c.o.device);
    cJSON_AddStringToObject(c.root, "dtype", c.o.dtype);
    cJSON_AddStringToObject(c.root, "state_dtype", c.o.state_dtype ? c.o.state_dtype : "f32");
    cJSON_AddStringToObject(c.root, "date", date);
    cJSON_AddStringToObject(c.root, "commit", c.o.commit ? c.o.commit : "unknown");
    cJSON_AddBoolToObject(c.root, "cuda_graph", c.o.graph && c.dev.type == OMNI_DEVICE_CUDA);
    c.cases = cJSON_AddObjectToObject(c.root, "cases");
    char lines[8][256], extras[8][sizeof c.extra];
    int nl = 0;
    static const struct {
        const char *name;
        int kind;
        int64_t B;
    } all[] = {{"t2i_b1", 0, 1}, {"t2i_b16", 0, 16}, {"vq_b1", 3, 1},
               {"vq_b16", 3, 16}, {"mmu", 1, 1}, {"mmu_16k", 2, 1}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (!want(&c.o, all[i].name))
            continue;
        cJSON *o = cJSON_AddObjectToObject(c.cases, all[i].name);
        omni_error_clear(&err);
        c.extra[0] = '\0';
        fprintf(stderr, "omni bench: %s ...\n", all[i].name);
        rc = all[i].kind == 0   ? case_t2i(&c, all[i].B, o, lines[nl], sizeof lines[nl], &err)
             : all[i].kind == 3 ? case_vq(&c, all[i].B, o, lines[nl], sizeof lines[nl], &err)
             : all[i].kind == 1 ? case_mmu(&c, o, lines[nl], sizeof lines[nl], &err)
                                : case_long(&c, o, lines[nl], sizeof lines[nl], &err);
        if (rc < 0) {
            omni_cli_print_error("bench", &err);
            cJSON_AddStringToObject(o, "error", err.msg);
            snprintf(lines[nl], sizeof lines[nl], "| %s | failed: %.180s |", all[i].name, err.msg);
            status = 1;
        }
        snprintf(extras[nl], sizeof extras[nl], "%s", c.extra);
        nl++;
    }
    printf("omni bench - %s, %s weights%s%s%s, %s, commit %s%s\n", c.card, c.o.dtype,
           c.o.state_dtype ? " (" : "", c.o.state_dtype ? c.o.state_dtype : "",
           c.o.state_dtype ? " SSM state)" : "", date, c.o.commit ? c.o.commit : "unknown",
           c.o.graph && c.dev.type == OMNI_DEVICE_CUDA ? ", decode steps as CUDA graphs" : "");
    for (int i = 0; i < nl; i++)
        printf("%s\n%s%s", lines[i], extras[i], extras[i][0] ? "\n" : "");
    char *js = cJSON_Print(c.root);
    if (c.o.json) {
        FILE *f = fopen(c.o.json, "w");
        if (!f || fputs(js, f) < 0) {
            fprintf(stderr, "omni bench: cannot write %s\n", c.o.json);
            status = 1;
        }
        if (f)
            fclose(f);
    } else {
        printf("%s\n", js);
    }
    if (c.o.markdown) {
        FILE *f = fopen(c.o.markdown, "a");
        if (f) {
            fprintf(f, "\n## %s - %s - commit %s\n\n%s weights%s; synthetic full-size weights (seed %llu).\n\n",
                    date, c.card, c.o.commit ? c.o.commit : "unknown", c.o.dtype,
                    c.o.graph && c.dev.type == OMNI_DEVICE_CUDA ? ", decode steps replayed as CUDA graphs" : "",
                    (unsigned long long)c.o.seed);
            fprintf(f, "```text\n");
            for (int i = 0; i < nl; i++)
                fprintf(f, "%s\n%s%s", lines[i], extras[i], extras[i][0] ? "\n" : "");
            fprintf(f, "```\n\n```json\n%s\n```\n", js);
            fclose(f);
        } else {
            fprintf(stderr, "omni bench: cannot append to %s\n", c.o.markdown);
            status = 1;
        }
    }
    cJSON_free(js);
    cJSON_Delete(c.root);
    return status;
}
