/* kernels/cuda/sample.cu - CUDA twins of kernels/cpu/sample.c: row softmax,
 * argmax and the sampler, one block per row, same rules as the CPU twin:
 *
 * softmax: max, then the sum of exp(x - max) in double, y = exp(x - max)/sum.
 * argmax: the lowest index of the maximum; every thread starts from element
 *   0 and walks its elements in index order with `v > best`, so NaN behaves
 *   as on the CPU (a NaN at index 0 stays; later NaNs never win).
 * sample (top_k != 1): entries are ranked by the 64-bit key
 *   (order-preserving bits of the value, ~index): larger value first, lower
 *   index first among equals - the CPU's rank order.
 *   - top_k: the k best keys of the raw logits, found by an 8-pass radix
 *     select on the key (exact);
 *   - temperature divides the kept values (f32 division as on the CPU);
 *   - top_p: the CPU removes, from the worst rank up, every entry whose
 *     cumulative probability (itself included) is <= 1 - top_p, never the
 *     best. That removed set is {key <= tau}; tau is found by an 8-pass radix
 *     descent on the key with the probability mass per byte bin summed in
 *     double (the order of the sums differs from the CPU's, so a row whose
 *     cumulative lands within ~1e-16 of the cut may resolve differently);
 *   - the draw: target = u * sum_kept exp(v - vmax) (double) with u =
 *     omni__sample_uniform(seed, step, row); the first kept entry in index
 *     order whose running sum exceeds the target (a segmented block scan),
 *     the last kept entry when rounding leaves none.
 * No scratch memory: everything lives in shared memory and registers, so
 * the sampler runs inside a captured decode step. */
#include "common.cuh"
#include "sample.h"

#define SB 1024 /* threads per row */

/* ---- softmax / argmax ------------------------------------------------------------------ */

__global__ void __launch_bounds__(SB) softmax_k(float *y, int64_t ldy, const float *x, int64_t ldx,
                                                int64_t V)
{
    __shared__ float shf[32];
    __shared__ double shd[32];
    const float *xr = x + blockIdx.x * ldx;
    float *yr = y + blockIdx.x * ldy;
    float mx = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += SB)
        mx = xr[v] > mx ? xr[v] : mx;
    mx = omni__block_max(mx, shf);
    double s = 0.0;
    for (int64_t v = threadIdx.x; v < V; v += SB)
        s += exp((double)xr[v] - mx);
    s = omni__block_sum_d(s, shd);
    __syncthreads(); /* y may alias x */
    for (int64_t v = threadIdx.x; v < V; v += SB)
        yr[v] = (float)(exp((double)xr[v] - mx) / s);
}

extern "C" void omni_softmax_cuda(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t B,
                                  int64_t V)
{
    if (B == 0 || V == 0)
        return;
    OMNI_LAUNCH(softmax_k, (unsigned)B, SB, 0, y, ldy, x, ldx, V);
}

__device__ __forceinline__ void better(float &bv, int64_t &bi, float v, int64_t i)
{
    /* (v, i) replaces (bv, bi) when larger, or equal with a lower index */
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

__global__ void __launch_bounds__(SB) argmax_k(int32_t *ids, const float *logits, int64_t ld,
                                               int64_t V)
{
    __shared__ float sv[SB / 32];
    __shared__ int64_t si[SB / 32];
    const float *r = logits + blockIdx.x * ld;
    /* coalesced strided walk; (value, lowest index) wins, every thread starting
     * from element 0 as the CPU walk does (so a NaN there wins, as on the CPU) */
    float bv = r[0];
    int64_t bi = 0;
    /* 16 loads in flight per thread, then compared in index order */
    for (int64_t v0 = threadIdx.x; v0 < V; v0 += 16 * SB) {
        float t[16];
#pragma unroll
        for (int j = 0; j < 16; j++)
            t[j] = v0 + j * SB < V ? r[v0 + j * SB] : 0.0f;
#pragma unroll
        for (int j = 0; j < 16; j++)
            if (v0 + j * SB < V)
                better(bv, bi, t[j], v0 + j * SB);
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        better(bv, bi, ov, oi);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < SB / 32 ? sv[lane] : sv[0];
        bi = lane < SB / 32 ? si[lane] : si[0];
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
            better(bv, bi, ov, oi);
        }
        if (lane == 0)
            ids[blockIdx.x] = (int32_t)bi;
    }
}

extern "C" void omni_argmax_cuda(int32_t *ids, const float *logits, int64_t ld, int64_t B,
                                 int64_t V)
{
    if (B == 0)
        return;
    OMNI_LAUNCH(argmax_k, (unsigned)B, SB, 0, ids, logits, ld, V);
}

/* ---- sampler -------------------------------------------------------------------------- */

/* device copy of omni__mix64 / omni__sample_uniform (kernels/sample.h) */
__device__ __forceinline__ uint64_t dev_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ double dev_uniform(uint64_t seed, int64_t step, int64_t row)
{
    uint64_t h = dev_mix64(seed);
    h = dev_mix64(h ^ (uint64_t)step);
    h = dev_mix64(h ^ (uint64_t)row);
    return (double)(h >> 11) * 0x1p-53;
}

__device__ __forceinline__ uint64_t rank_key(float v, int64_t i)
{
    uint32_t u = __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)u << 32) | (uint64_t)(0xffffffffu - (uint32_t)i);
}

struct samp_shared {
    unsigned cnt[256];
    double mass[256];
    double scan[SB];
    float fred[32];
    double dred[32];
    uint64_t kred[32];
    uint64_t pick;
    int choose;
};

__device__ uint64_t block_max_u64(uint64_t v, uint64_t *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        const uint64_t ov = __shfl_xor_sync(0xffffffffu, v, o);
        v = ov > v ? ov : v;
    }
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    uint64_t t = lane < SB / 32 ? sh[lane] : 0;
    for (int o = 16; o > 0; o >>= 1) {
        const uint64_t ov = __shfl_xor_sync(0xffffffffu, t, o);
        t = ov > t ? ov : t;
    }
    return t;
}

__global__ void __launch_bounds__(SB) sample_k(int32_t *ids, const float *logits, int64_t ld,
                                               int64_t V, struct omni_sampling s, uint64_t seed,
                                               const int64_t *counter, int64_t step)
{
    if (counter) /* sample_at: the draw index lives on the device */
        step += *counter;
    __shared__ samp_shared sh;
    const int tid = threadIdx.x;
    const int64_t row = blockIdx.x;
    const float *r = logits + row * ld;
    const bool use_k = s.top_k > 1 && s.top_k < V;
    const bool use_t = s.temperature != 1.0f;
    const bool use_p = s.top_p > 0.0f && s.top_p < 1.0f;

    /* top-k: the k-th best raw key (radix select, most significant byte first) */
    uint64_t kth = 0;
    if (use_k) {
        uint64_t prefix = 0, mask = 0;
        unsigned remain = (unsigned)s.top_k;
        for (int sh_ = 56; sh_ >= 0; sh_ -= 8) {
            for (int i = tid; i < 256; i += SB)
                sh.cnt[i] = 0;
            __syncthreads();
            for (int64_t v = tid; v < V; v += SB) {
                const uint64_t key = rank_key(r[v], v);
                if ((key & mask) == prefix)
                    atomicAdd(&sh.cnt[(key >> sh_) & 255], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                int c = 255;
                for (; c > 0; c--) {
                    if (sh.cnt[c] >= remain)
                        break;
                    remain -= sh.cnt[c];
                }
                sh.choose = c;
            }
            __syncthreads();
            prefix |= (uint64_t)sh.choose << sh_;
            mask |= (uint64_t)255 << sh_;
            __syncthreads(); /* sh.choose is rewritten by the next pass */
        }
        kth = prefix;
    }
#define KEPT_K(v, i) (!use_k || rank_key((v), (i)) >= kth)
#define VT(v) (use_t ? (v) / s.temperature : (v))

    /* the best kept entry (ranked on the tempered values) */
    uint64_t best = 0;
    for (int64_t v = tid; v < V; v += SB) {
        const float x = r[v];
        if (KEPT_K(x, v)) {
            const uint64_t key = rank_key(VT(x), v);
            best = key > best ? key : best;
        }
    }
    best = block_max_u64(best, sh.kred);
    const int64_t best_i = (int64_t)(0xffffffffu - (uint32_t)(best & 0xffffffffu));
    const float bestv = VT(r[best_i]);

    /* top-p: entries with key <= (tau, tau_incl) are removed */
    uint64_t tau = 0;
    int tau_incl = 0, have_tau = 0;
    if (use_p) {
        double tot = 0.0;
        for (int64_t v = tid; v < V; v += SB) {
            const float x = r[v];
            if (KEPT_K(x, v))
                tot += exp((double)VT(x) - bestv);
        }
        tot = omni__block_sum_d(tot, sh.dred);
        const double cut = 1.0 - (double)s.top_p;
        double below = 0.0; /* mass of the keys already known to be below the prefix */
        uint64_t prefix = 0, mask = 0;
        for (int sh_ = 56; sh_ >= 0; sh_ -= 8) {
            for (int i = tid; i < 256; i += SB)
                sh.mass[i] = 0.0;
            __syncthreads();
            for (int64_t v = tid; v < V; v += SB) {
                const float x = r[v];
                if (!KEPT_K(x, v))
                    continue;
                const float xt = VT(x);
                const uint64_t key = rank_key(xt, v);
                if ((key & mask) == prefix)
                    atomicAdd(&sh.mass[(key >> sh_) & 255], exp((double)xt - bestv) / tot);
            }
            __syncthreads();
            if (tid == 0) {
                /* the largest c with below + sum_{b<c} mass <= cut */
                double acc = below;
                int c = 0;
                for (int b = 0; b < 256; b++) {
                    if (acc > cut)
                        break;
                    c = b;
                    acc += sh.mass[b];
                }
                double lower = below;
                for (int b = 0; b < c; b++)
                    lower += sh.mass[b];
                sh.choose = c;
                sh.scan[0] = lower;
                sh.scan[1] = lower + sh.mass[c];
            }
            __syncthreads();
            prefix |= (uint64_t)sh.choose << sh_;
            mask |= (uint64_t)255 << sh_;
            below = sh.scan[0];
            if (sh_ == 0)
                tau_incl = sh.scan[1] <= cut;
            __syncthreads();
        }
        tau = prefix;
        have_tau = 1;
    }
#define KEPT(x, v)                                                                                 \
    (KEPT_K((x), (v)) &&                                                                           \
     (!have_tau || (v) == best_i || rank_key(VT(x), (v)) > tau ||                                  \
      (rank_key(VT(x), (v)) == tau && !tau_incl)))

    /* the draw over kept entries in index order; weights exp(v - vmax), vmax = bestv */
    const int64_t seg = (V + SB - 1) / SB, lo = tid * seg, hi = min(V, lo + seg);
    double part = 0.0;
    int64_t last_kept = -1;
    for (int64_t v = lo; v < hi; v++) {
        const float x = r[v];
        if (KEPT(x, v)) {
            part += exp((double)VT(x) - bestv);
            last_kept = v;
        }
    }
    __syncthreads();
    sh.scan[tid] = part;
    __syncthreads();
    if (tid == 0) {
        double run = 0.0;
        for (int i = 0; i < SB; i++) {
            const double p = sh.scan[i];
            sh.scan[i] = run; /* exclusive prefix */
            run += p;
        }
        sh.mass[0] = run; /* total */
        sh.pick = (uint64_t)-1;
    }
    __syncthreads();
    const double total = sh.mass[0];
    const double target = dev_uniform(seed, step, row) * total;
    const double start = sh.scan[tid];
    if (part > 0.0 && start <= target && target < start + part) {
        double acc = start;
        int64_t pick = last_kept;
        for (int64_t v = lo; v < hi; v++) {
            const float x = r[v];
            if (KEPT(x, v)) {
                acc += exp((double)VT(x) - bestv);
                if (target < acc) {
                    pick = v;
                    break;
                }
            }
        }
        atomicMin((unsigned long long *)&sh.pick, (unsigned long long)pick);
    }
    /* the last kept entry overall, for rounding that leaves none */
    const uint64_t lk = block_max_u64(last_kept < 0 ? 0 : (uint64_t)last_kept + 1, sh.kred);
    __syncthreads();
    if (tid == 0)
        ids[row] = (int32_t)(sh.pick != (uint64_t)-1 ? (int64_t)sh.pick : (int64_t)lk - 1);
#undef KEPT
#undef KEPT_K
#undef VT
}

extern "C" int omni_sample_cuda(int32_t *ids, const float *logits, int64_t ld, int64_t B,
                                int64_t V, const struct omni_sampling *s, uint64_t seed,
                                int64_t step)
{
    if (B == 0)
        return OMNI_OK;
    if (s->top_k == 1) {
        omni_argmax_cuda(ids, logits, ld, B, V);
        return OMNI_OK;
    }
    OMNI_LAUNCH(sample_k, (unsigned)B, SB, 0, ids, logits, ld, V, *s, seed, (const int64_t *)nullptr,
                step);
    return OMNI_OK;
}

extern "C" int omni_sample_at_cuda(int32_t *ids, const float *logits, int64_t ld, int64_t B,
                                   int64_t V, const struct omni_sampling *s, uint64_t seed,
                                   const int64_t *counter, int64_t add)
{
    if (B == 0)
        return OMNI_OK;
    if (s->top_k == 1) {
        omni_argmax_cuda(ids, logits, ld, B, V);
        return OMNI_OK;
    }
    OMNI_LAUNCH(sample_k, (unsigned)B, SB, 0, ids, logits, ld, V, *s, seed, counter, add);
    return OMNI_OK;
}
