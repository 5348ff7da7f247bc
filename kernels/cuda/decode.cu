/* kernels/cuda/decode.cu - CUDA twins of kernels/cpu/decode.c: the fused
 * Mamba-2 decode step (kernels/decode.h), four kernels per layer.
 *
 * The bf16 GEMV (bf16_gemv; also omni_matmul_cuda's path for bf16 weights and
 * M <= 16) has two kernels, chosen from an H200 sweep of designs
 * (tests/device/gemv_lab.cu):
 * dec_fma_k (M <= 2): a warp owns weight rows and reads 512 contiguous bytes of
 *   a row per load instruction, 8 loads in flight; x staged in shared memory as
 *   f32, products and sums in f32. 3.0-4.2 TB/s at the decode shapes.
 * dec_tc_k (M <= 16): a block owns 16 output columns; its warps split K (32
 *   values per step; warp w takes steps w, w + nw, ...) and every warp issues the 16-byte
 *   weight loads of U steps (two rows per lane, streamed past L1) before any
 *   math. The products run on the tensor cores (mma.m16n8k16,
 *   A = 16 weight rows, B = up to 8 x rows, f32 accumulate); x is split into
 *   bf16 hi + lo parts (two MMAs), so x keeps ~16 bits of mantissa and the
 *   result matches the f32-x GEMV. The 16-byte chunk a lane loads is mapped
 *   onto the MMA fragments by a fixed permutation of k applied to both
 *   operands (a dot product does not care about the order of k). Partial
 *   sums meet in shared memory in a fixed order.
 * For 8 or more rows of a wide matrix (N >= 4096, N K >= 16 Mi: in_proj and the heads at
 *   batch 16) the GEMV goes through cuBLAS instead (blas_gemv): x split into bf16 hi and
 *   lo rows, one GEMM of the 2M rows, the epilogue in its own kernel. At M = 16 on an H200
 *   cuBLAS streams those matrices at 2.6 TB/s where the tile reached 1.7.
 * Both kernels issue their first weight loads before waiting for the previous
 *   kernel (programmatic dependent launch), then run the same epilogue per
 *   (m, n): row scale from partial sums of squares (the gated RMSNorm folded
 *   into out_proj), low-rank (LoRA) term, bias, and the conv1d step of the xBC
 *   columns (in_proj).
 * dec_simple_k: the same epilogue after a plain one-warp-per-column GEMV,
 *   for shapes the bf16 kernels do not take (f32/f16 weights, K % 8 != 0).
 * dec_norm_k: residual add + RMSNorm, one block of 256 threads per row (8 values
 *   each in registers);
 *   with a LoRA A factor R more blocks per row each recompute the same
 *   normalised row (same arithmetic, same order) and form one u[m,r] = n·A[r].
 *   res_out != res_in then, so the second block reads unmodified inputs.
 * dec_mix_k: one block of 8 warps per (batch row, chunk of 8*RW channels of
 *   one head); a warp owns RW state rows of N values (lane n, n+32, ...; the
 *   state f32, f16 or bf16 in memory, f32 in registers),
 *   all loaded before the update; y, g = y·silu(z), g⊙w_norm, and the
 *   chunk's sum of g² (warp sums added in warp order: deterministic). */
#include <cuda_bf16.h>
#include <stdlib.h>

#include "common.cuh"
#include "decode.h"
#include "gemv_parts.cuh"

/* ---- programmatic dependent launch ---------------------------------------------------- */

/* Each decode kernel lets the next one launch at once (pdl_trigger), prefetches into L2
 * the large read-only data it will stream (its weight tile, its state rows), then waits
 * for the previous kernel to complete (pdl_wait) before it touches anything else. So the
 * next kernel's launch and its first DRAM traffic overlap the current one. Without the
 * launch attribute both are no-ops. L2 prefetches never return stale data (L2 is the
 * point of coherence), so they may precede the wait. */
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

/* launch with the programmatic-serialization attribute when pdl != 0 */
template <typename... P, typename... A>
static void dec_launch(int pdl, void (*k)(P...), dim3 grid, dim3 block, size_t smem, A... args)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = OMNI_STREAM;
    if (pdl) {
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at;
        cfg.numAttrs = 1;
    }
    OMNI_CUDA_CHECK(cudaLaunchKernelEx(&cfg, k, ((P)args)...));
}

/* ---- shared epilogue ------------------------------------------------------------------ */

__device__ __forceinline__ void dec_store(float *y, int64_t ldy, int m, int64_t n, float acc,
                                          float alpha, float beta, const float *bias,
                                          const float *rs, const struct omni_dec_epi &e)
{
    float v = alpha * (rs ? rs[m] : 1.0f) * acc;
    float *yp = y + m * ldy + n;
    if (beta != 0.0f)
        v += beta * *yp;
    if (bias)
        v += bias[n];
    if (e.u) {
        float t = 0.0f;
        for (int64_t r = 0; r < e.R; r++)
            t += e.u[m * e.ldu + r] * e.lb[n * e.R + r];
        v += e.lr_scale * t;
    }
    *yp = v;
    if (e.cout && n >= e.c0 && n < e.c0 + e.C) {
        const int64_t c = n - e.c0;
        float *s = e.cstate + m * e.css.sb + c * e.css.sc;
        float a = e.cbias ? e.cbias[c] : 0.0f;
        for (int64_t k = 0; k < e.K; k++) {
            const float sv = k + 1 < e.K ? s[(k + 1) * e.css.sk] : v;
            s[k * e.css.sk] = sv;
            a += e.cw[c * e.K + k] * sv;
        }
        e.cout[m * e.ldco + c] = omni__silu(a);
    }
}

/* rs[m] for m0 <= m < M (shared memory), one warp per row, fixed summation order */
__device__ __forceinline__ void dec_rowscale(float *rs, int M, const struct omni_dec_epi &e,
                                             int m0 = 0)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int m = m0 + warp; m < M; m += nw) {
        float s = 0.0f;
        const float *pr = e.part + m * e.ldp;
        /* eight loads in flight, summed in the order j = lane, lane + 32, ... */
        for (int64_t j0 = lane; j0 < e.nparts; j0 += 8 * 32) {
            float v[8];
#pragma unroll
            for (int i = 0; i < 8; i++)
                v[i] = j0 + 32 * i < e.nparts ? pr[j0 + 32 * i] : 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++)
                s += v[i];
        }
        s = omni__warp_sum(s);
        if (lane == 0)
            rs[m] = 1.0f / sqrtf(s / e.count + e.eps);
    }
}

/* ---- tensor-core GEMV ----------------------------------------------------------------- */

/* the tiles' end: warp partials meet in shared memory (red: [RT][nw][16 n][16 m]) and are
 * summed in warp order; one thread per (tile, m, n) runs the epilogue */
template <int MT, int RT>
__device__ __forceinline__ void tc_finish(float *red, float *rs, const float (&ch)[RT][MT][4],
                                          const float (&cl)[RT][MT][4], float *y, int64_t ldy,
                                          int M, int64_t N, int64_t n0, float alpha, float beta,
                                          const float *bias, const struct omni_dec_epi &e)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < RT; r++) {
        float *my = red + (r * nw + warp) * 256;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            my[g * 16 + mt * 8 + 2 * t] = ch[r][mt][0] + cl[r][mt][0];
            my[g * 16 + mt * 8 + 2 * t + 1] = ch[r][mt][1] + cl[r][mt][1];
            my[(g + 8) * 16 + mt * 8 + 2 * t] = ch[r][mt][2] + cl[r][mt][2];
            my[(g + 8) * 16 + mt * 8 + 2 * t + 1] = ch[r][mt][3] + cl[r][mt][3];
        }
    }
    if (e.part)
        dec_rowscale(rs, M, e);
    __syncthreads();
    for (int o = threadIdx.x; o < RT * 16 * MT * 8; o += blockDim.x) {
        const int r = o / (16 * MT * 8), oo = o - r * (16 * MT * 8);
        const int ml = oo >> 4, nl = oo & 15;
        const int64_t n = n0 + 16 * r + nl;
        if (ml < M && n < N) {
            float acc = 0.0f;
            for (int wi = 0; wi < nw; wi++)
                acc += red[(r * nw + wi) * 256 + nl * 16 + ml];
            dec_store(y, ldy, ml, n, acc, alpha, beta, bias, e.part ? rs : nullptr, e);
        }
    }
}

/* products of one 32-wide K step for RT tiles of 16 columns: A[r]/Bw[r] the lane's
 * 16-byte chunks of tile r's rows g and g + 8; x is loaded and split once for all tiles */
template <int MT, int RT>
__device__ __forceinline__ void tc_step(float (&ch)[RT][MT][4], float (&cl)[RT][MT][4],
                                        const uint4 (&A)[RT], const uint4 (&Bw)[RT],
                                        const float4 *const (&xr)[MT], int64_t s)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const float4 x0 = __ldg(xr[mt] + s * 8), x1 = __ldg(xr[mt] + s * 8 + 1);
        uint32_t h0, l0, h1, l1, h2, l2, h3, l3;
        split2(x0.x, x0.y, h0, l0);
        split2(x0.z, x0.w, h1, l1);
        split2(x1.x, x1.y, h2, l2);
        split2(x1.z, x1.w, h3, l3);
#pragma unroll
        for (int r = 0; r < RT; r++) {
            mma16816(ch[r][mt], A[r].x, Bw[r].x, A[r].y, Bw[r].y, h0, h1);
            mma16816(cl[r][mt], A[r].x, Bw[r].x, A[r].y, Bw[r].y, l0, l1);
            mma16816(ch[r][mt], A[r].z, Bw[r].z, A[r].w, Bw[r].w, h2, h3);
            mma16816(cl[r][mt], A[r].z, Bw[r].z, A[r].w, Bw[r].w, l2, l3);
        }
    }
}

/* test flags (omni__dec_gemv_flags), passed to the kernels */
#define GF_NO_PDL 1      /* launch no decode kernel with programmatic dependent launch */
#define GF_NO_PREWAIT 2  /* issue no weight loads before pdl_wait */
#define GF_CONTIG 4      /* tc: warp w takes a contiguous range of K steps (not w, w + nw, ...) */
#define GF_MIX_SCALAR 8  /* decode_mix: one state value per load (not runs of four) */
#define GF_ONE_TILE 16   /* tc: one 16-column tile per block, also where two are chosen */
#define GF_BLAS 32       /* bf16 GEMV with M >= 3 through cuBLAS (x split, GEMM, epilogue) */
#define GF_NO_BLAS 64    /* never through cuBLAS: the tensor-core tile where it would be chosen */
#define GF_ALL (GF_NO_PDL | GF_NO_PREWAIT | GF_CONTIG | GF_MIX_SCALAR | GF_ONE_TILE | GF_BLAS | GF_NO_BLAS)
#define GF_X_VEC 256     /* (internal) x rows 16-byte aligned: float4 staging */

/* U: K steps (of 32) whose weight loads a warp issues before any math. Warp w takes the
 * steps w, w + nw, ... (a contiguous range per warp, GF_CONTIG, measured slower inside a
 * graph); its first U weight loads are issued before pdl_wait (the weights are read-only),
 * so they overlap the previous kernel's tail. A cp.async variant that keeps the bytes in
 * flight in shared memory instead of registers was slower at 16 rows (42.8 against 36.0
 * us per layer, tests/results/cuda/s3-NVIDIA-H200/run7-cpasync-lab-prod.txt) and was dropped. */
template <int MT, int U, int RT>
__global__ void __launch_bounds__(RT == 1 ? 512 : 256)
    dec_tc_k(float *y, int64_t ldy, const float *x, int64_t ldx, const __nv_bfloat16 *w,
             const float *bias, int M, int64_t N, int64_t K, float alpha, float beta,
             struct omni_dec_epi e, int fl)
{
    extern __shared__ float red[]; /* [RT][nw][16 n][16 m] */
    __shared__ float rs[OMNI_DEC_MAX_M];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t n0 = (int64_t)blockIdx.x * 16 * RT;
    const int64_t ns = K / 32, spw = (ns + nw - 1) / nw;
    const bool il = !(fl & GF_CONTIG);
    /* steps sb, sb + st, ... < se */
    const int64_t sb = il ? warp : min(ns, warp * spw), se = il ? ns : min(ns, sb + spw);
    const int64_t st = il ? nw : 1;
    /* rows past N / M are clamped (valid memory) and their results dropped */
    const uint4 *wa[RT], *wb[RT];
#pragma unroll
    for (int r = 0; r < RT; r++) {
        wa[r] = reinterpret_cast<const uint4 *>(w + min(n0 + 16 * r + g, N - 1) * K) + t;
        wb[r] = reinterpret_cast<const uint4 *>(w + min(n0 + 16 * r + g + 8, N - 1) * K) + t;
    }
    uint4 A[U][RT], Bw[U][RT];
    pdl_trigger();
    const bool pre = !(fl & GF_NO_PREWAIT);
    if (pre) {
#pragma unroll
        for (int u = 0; u < U; u++)
            if (sb + u * st < se) {
#pragma unroll
                for (int r = 0; r < RT; r++) {
                    A[u][r] = ld_stream(wa[r] + (sb + u * st) * 4);
                    Bw[u][r] = ld_stream(wb[r] + (sb + u * st) * 4);
                }
            }
    }
    pdl_wait();
    const float4 *xr[MT];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        xr[mt] = reinterpret_cast<const float4 *>(x + (int64_t)min(mt * 8 + g, M - 1) * ldx) + 2 * t;
    float ch[RT][MT][4], cl[RT][MT][4]; /* products with the hi and the lo part of x */
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                ch[r][mt][i] = cl[r][mt][i] = 0.0f;
    for (int64_t s0 = sb; s0 < se; s0 += U * st) {
        if (s0 != sb || !pre) {
#pragma unroll
            for (int u = 0; u < U; u++)
                if (s0 + u * st < se) {
#pragma unroll
                    for (int r = 0; r < RT; r++) {
                        A[u][r] = ld_stream(wa[r] + (s0 + u * st) * 4);
                        Bw[u][r] = ld_stream(wb[r] + (s0 + u * st) * 4);
                    }
                }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t s = s0 + u * st;
            if (s >= se) /* warp-uniform */
                break;
            tc_step<MT, RT>(ch, cl, A[u], Bw[u], xr, s);
        }
    }
    tc_finish<MT, RT>(red, rs, ch, cl, y, ldy, M, N, n0, alpha, beta, bias, e);
}


/* ---- FMA GEMV for one or two rows ------------------------------------------------------ */

/* A warp owns RPW weight rows; lane l reads the 16 bytes at k = 256 j + 8 l, so one load
 * instruction covers 512 contiguous bytes of a row, and a warp keeps U such loads per row
 * in flight (the first U before pdl_wait). x (M <= MM rows) is staged in shared memory as
 * f32; products and sums in f32, lanes summed by a fixed butterfly. For M <= 2 this
 * streams the weights at 3.0-4.2 TB/s on an H200 where the tensor-core tile reaches
 * 1.8-2.5 (tests/device/gemv_lab.cu, tests/results/cuda/s3-NVIDIA-H200/run1-gemv_lab.txt). */
#define FMA_NW 8
template <int MM, int RPW, int U>
__global__ void __launch_bounds__(FMA_NW * 32)
    dec_fma_k(float *y, int64_t ldy, const float *x, int64_t ldx, const __nv_bfloat16 *w,
              const float *bias, int M, int64_t N, int64_t K, float alpha, float beta,
              struct omni_dec_epi e, int fl)
{
    extern __shared__ float xs[]; /* [MM][K] */
    __shared__ float rs[OMNI_DEC_MAX_M];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n0 = ((int64_t)blockIdx.x * FMA_NW + warp) * RPW;
    const int64_t nj = (K + 255) / 256;
    const uint4 *wr[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++)
        wr[r] = reinterpret_cast<const uint4 *>(w + min(n0 + r, N - 1) * K) + lane;
    uint4 v[RPW][U];
    pdl_trigger();
    const bool pre = !(fl & GF_NO_PREWAIT);
    if (pre) {
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < RPW; r++)
                v[r][u] = u < nj && u * 256 + lane * 8 < K ? ld_stream(wr[r] + u * 32)
                                                          : make_uint4(0, 0, 0, 0);
    }
    /* the epilogue's operands, loaded now so that their latency hides under the weight
     * stream: weights (bias, LoRA B row, conv taps) before the wait, activations after */
    float bv[RPW], lbv[RPW], cwv[RPW], cbv[RPW];
    bool cv[RPW]; /* row n is a conv channel */
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int64_t n = min(n0 + r, N - 1), c = n - e.c0;
        cv[r] = e.cout && n0 + r < N && c >= 0 && c < e.C;
        bv[r] = bias ? bias[n] : 0.0f;
        lbv[r] = e.u && lane < e.R ? e.lb[n * e.R + lane] : 0.0f;
        cwv[r] = cv[r] && lane < e.K ? e.cw[c * e.K + lane] : 0.0f;
        cbv[r] = cv[r] && e.cbias ? e.cbias[c] : 0.0f;
    }
    pdl_wait();
    float uv[MM], csv[RPW][MM], yo[RPW][MM];
#pragma unroll
    for (int m = 0; m < MM; m++) {
        uv[m] = e.u && m < M && lane < e.R ? e.u[m * e.ldu + lane] : 0.0f;
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            const int64_t c = n0 + r - e.c0;
            csv[r][m] = cv[r] && m < M && lane < e.K
                            ? e.cstate[m * e.css.sb + c * e.css.sc + lane * e.css.sk]
                            : 0.0f;
            yo[r][m] = beta != 0.0f && m < M && n0 + r < N ? y[m * ldy + n0 + r] : 0.0f;
        }
    }
    /* stage x: every thread issues its loads (up to 4 per row) before it stores any */
    for (int m = 0; m < M; m++) {
        if (fl & GF_X_VEC) {
            const float4 *xr = reinterpret_cast<const float4 *>(x + m * ldx);
            float4 *xd = reinterpret_cast<float4 *>(xs + m * K);
            const int64_t n4 = K / 4;
            for (int64_t i0 = threadIdx.x; i0 < n4; i0 += 4 * blockDim.x) {
                float4 tv[4];
#pragma unroll
                for (int u = 0; u < 4; u++)
                    if (i0 + u * blockDim.x < n4)
                        tv[u] = xr[i0 + u * blockDim.x];
#pragma unroll
                for (int u = 0; u < 4; u++)
                    if (i0 + u * blockDim.x < n4)
                        xd[i0 + u * blockDim.x] = tv[u];
            }
        } else {
            const float *xr = x + m * ldx;
            for (int64_t i0 = threadIdx.x; i0 < K; i0 += 8 * blockDim.x) {
                float tv[8];
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (i0 + u * blockDim.x < K)
                        tv[u] = xr[i0 + u * blockDim.x];
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (i0 + u * blockDim.x < K)
                        xs[m * K + i0 + u * blockDim.x] = tv[u];
            }
        }
    }
    if (e.part)
        dec_rowscale(rs, M, e);
    __syncthreads();
    float acc[RPW][MM];
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int m = 0; m < MM; m++)
            acc[r][m] = 0.0f;
    for (int64_t j0 = 0; j0 < nj; j0 += U) {
        if (j0 || !pre) {
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int r = 0; r < RPW; r++)
                    v[r][u] = j0 + u < nj && (j0 + u) * 256 + lane * 8 < K
                                  ? ld_stream(wr[r] + (j0 + u) * 32)
                                  : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t k = (j0 + u) * 256 + lane * 8;
            if (j0 + u >= nj) /* warp-uniform */
                break;
            if (k >= K)
                continue;
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                float f[8];
                bf16x8(v[r][u], f);
#pragma unroll
                for (int m = 0; m < MM; m++) {
                    if (m >= M)
                        break;
                    /* 32-byte aligned: K % 8 == 0 and k % 8 == 0 */
                    const float4 *xp = reinterpret_cast<const float4 *>(xs + m * K + k);
                    const float4 p = xp[0], q = xp[1];
                    float a = acc[r][m];
                    a = fmaf(f[0], p.x, a);
                    a = fmaf(f[1], p.y, a);
                    a = fmaf(f[2], p.z, a);
                    a = fmaf(f[3], p.w, a);
                    a = fmaf(f[4], q.x, a);
                    a = fmaf(f[5], q.y, a);
                    a = fmaf(f[6], q.z, a);
                    a = fmaf(f[7], q.w, a);
                    acc[r][m] = a;
                }
            }
        }
    }
    /* the epilogue of dec_store, spread over the warp (every lane holds the same sums:
     * the butterfly leaves the total in all lanes) */
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int m = 0; m < MM; m++) {
            if (m >= M || n0 + r >= N) /* warp-uniform */
                continue;
            const int64_t n = n0 + r;
            float val = alpha * (e.part ? rs[m] : 1.0f) * omni__warp_sum(acc[r][m]);
            if (beta != 0.0f)
                val += beta * yo[r][m];
            if (bias)
                val += bv[r];
            if (e.u)
                val += e.lr_scale * omni__warp_sum(uv[m] * lbv[r]);
            if (lane == 0)
                y[m * ldy + n] = val;
            if (cv[r]) {
                /* lane k < K holds tap k: shift left, the new value enters at K - 1 */
                const float nxt = __shfl_down_sync(0xffffffffu, csv[r][m], 1);
                const float sv = lane + 1 < e.K ? nxt : val;
                const int64_t c = n - e.c0;
                if (lane < e.K)
                    e.cstate[m * e.css.sb + c * e.css.sc + lane * e.css.sk] = sv;
                const float a = cbv[r] + omni__warp_sum(lane < e.K ? cwv[r] * sv : 0.0f);
                if (lane == 0)
                    e.cout[m * e.ldco + c] = omni__silu(a);
            }
        }
}

static int tc_force_nw, tc_force_u; /* 0: automatic (omni__dec_tc_config) */
static int tc_force_rt;             /* 0: automatic (omni__dec_tc_tiles) */
static int g_flags;                    /* GF_* (omni__dec_gemv_flags) */

extern "C" __attribute__((visibility("default"))) void omni__dec_tc_config(int nw, int u)
{
    tc_force_nw = nw;
    tc_force_u = u;
}

extern "C" __attribute__((visibility("default"))) void omni__dec_tc_tiles(int rt)
{
    tc_force_rt = rt;
}

static int g_flags_set; /* g_flags came from omni__dec_gemv_flags or the environment */

/* g_flags and g_flags_set are read and written with relaxed atomics: the flags are a
 * tuning knob read once, and any thread may make the first GEMV call */
extern "C" __attribute__((visibility("default"))) void omni__dec_gemv_flags(int flags)
{
    __atomic_store_n(&g_flags, flags & GF_ALL, __ATOMIC_RELAXED);
    __atomic_store_n(&g_flags_set, 1, __ATOMIC_RELEASE);
}

/* the flags in force: OMNI_DEC_GEMV_FLAGS, read at the first GEMV unless the test hook set
 * them (a tuning knob, see kernels/cuda/README.md) */
static int gemv_flags(void)
{
    if (!__atomic_load_n(&g_flags_set, __ATOMIC_ACQUIRE)) {
        const char *v = getenv("OMNI_DEC_GEMV_FLAGS");
        const int f = v ? (int)strtol(v, NULL, 0) & GF_ALL : 0;
        __atomic_store_n(&g_flags, f, __ATOMIC_RELAXED);
        __atomic_store_n(&g_flags_set, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&g_flags, __ATOMIC_RELAXED);
}

template <int MM, int RPW, int U>
static void fma_launch(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                       const float *bias, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                       const struct omni_dec_epi &e, int fl, int pdl)
{
    const size_t smem = (size_t)MM * K * sizeof(float);
    const int vec = ((uintptr_t)x & 15) == 0 && (M == 1 || ldx % 4 == 0) ? GF_X_VEC : 0;
    dec_launch(pdl, dec_fma_k<MM, RPW, U>, dim3(omni__blocks(N, FMA_NW * RPW)), dim3(FMA_NW * 32),
               smem, y, ldy, x, ldx, (const __nv_bfloat16 *)w, bias, (int)M, N, K, alpha, beta, e,
               fl | vec);
}

template <int MT, int U, int RT>
static void tc_launch(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                      const float *bias, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                      const struct omni_dec_epi &e, int nw, int fl, int pdl)
{
    dec_launch(pdl, dec_tc_k<MT, U, RT>, dim3(omni__blocks(N, 16 * RT)), dim3(nw * 32),
               (size_t)RT * nw * 256 * sizeof(float), y, ldy, x, ldx, (const __nv_bfloat16 *)w,
               bias, (int)M, N, K, alpha, beta, e, fl);
}

/* MT row tiles (M <= 8 or <= 16), U = 4 or 8 loads in flight, RT = 1 or 2 column tiles */
template <int MT>
static void tc_go(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                  const float *bias, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                  const struct omni_dec_epi &e, int nw, int u, int rt, int fl, int pdl)
{
    if (rt == 2) {
        if (u == 2)
            tc_launch<MT, 2, 2>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, nw, fl, pdl);
        else
            tc_launch<MT, 4, 2>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, nw, fl, pdl);
    } else if (u == 8) {
        tc_launch<MT, 8, 1>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, nw, fl, pdl);
    } else {
        tc_launch<MT, 4, 1>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, nw, fl, pdl);
    }
}

/* ---- the GEMV through cuBLAS (3 <= M <= 16, wide matrices) ------------------------------ */

/* xs rows [0, M): the bf16 hi parts of x, rows [M, 2M): the lo parts (split2, as the
 * tensor-core tile splits x) */
__global__ void __launch_bounds__(256)
    dec_split_k(__nv_bfloat16 *xs, const float *x, int64_t ldx, int M, int64_t K)
{
    pdl_trigger();
    pdl_wait();
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 2, kp = K / 2;
    if (i >= (int64_t)M * K)
        return;
    const int64_t m = i / K, k = i - m * K;
    uint32_t h, l;
    split2(x[m * ldx + k], x[m * ldx + k + 1], h, l);
    reinterpret_cast<uint32_t *>(xs)[m * kp + k / 2] = h;
    reinterpret_cast<uint32_t *>(xs)[(M + m) * kp + k / 2] = l;
}

/* y[m, n] from the two partial products y2[m, n] (hi) + y2[M + m, n] (lo), then the same
 * epilogue as the GEMV kernels; a block covers 128 columns of one row (blockIdx.y) */
__global__ void __launch_bounds__(128)
    dec_blas_epi_k(float *y, int64_t ldy, const float *y2, int M, int64_t N, float alpha,
                   float beta, const float *bias, struct omni_dec_epi e)
{
    __shared__ float rs[OMNI_DEC_MAX_M];
    pdl_trigger();
    pdl_wait();
    const int m = (int)blockIdx.y;
    if (e.part) {
        dec_rowscale(rs, m + 1, e, m);
        __syncthreads();
    }
    const int64_t n = (int64_t)blockIdx.x * 128 + threadIdx.x;
    if (n < N)
        dec_store(y, ldy, m, n, y2[m * N + n] + y2[(M + m) * N + n], alpha, beta, bias,
                  e.part ? rs : nullptr, e);
}

/* x split into bf16 hi + lo rows (2M x K), one cuBLAS GEMM of the 2M rows against the
 * weights (f32 accumulation, f32 out) and an epilogue kernel that adds the two halves:
 * the products of the tensor-core tile, in cuBLAS's summation order. The scratch is the
 * device's fixed small area (graph-capture safe). At M = 16 on an H200 cuBLAS streams
 * in_proj (8512 x 2048) in 13.4 us and the image head (16384 x 2048) in 20.4 us, where the
 * tile took 20.3 and 32.1 (gemv_lab); in the T2I batch-16 step (f32 state) 2.934 -> 2.623 ms
 * (tests/results/cuda/s5-NVIDIA-H200, run 2). out_proj (2048 x 4096) stays on the tile
 * (cuBLAS 11.2 us in the lab, the tile 9.9 in the step). Returns 0 when the scratch is too
 * small (nothing launched). */
static int blas_gemv(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                     const float *bias, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                     const struct omni_dec_epi &e, int pdl)
{
    const size_t xs_bytes = ((size_t)(2 * M * K) * 2 + 255) & ~(size_t)255;
    char *ws = (char *)omni__cuda_small_ws(xs_bytes + (size_t)(2 * M * N) * sizeof(float));
    if (!ws || N > INT32_MAX || K > INT32_MAX)
        return 0;
    cublasHandle_t h = omni__cuda_blas();
    if (!h)
        return 1; /* the error is recorded */
    __nv_bfloat16 *xs = (__nv_bfloat16 *)ws;
    float *y2 = (float *)(ws + xs_bytes);
    dec_launch(pdl, dec_split_k, dim3(omni__blocks(M * K / 2, 256)), dim3(256), 0, xs, x, ldx,
               (int)M, K);
    const float one = 1.0f, zero = 0.0f;
    if (OMNI_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)(2 * M), (int)K,
                                       &one, w, CUDA_R_16BF, (int)K, xs, CUDA_R_16BF, (int)K,
                                       &zero, y2, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT)))
        return 1;
    dec_launch(pdl, dec_blas_epi_k, dim3(omni__blocks(N, 128), (unsigned)M), dim3(128), 0, y,
               ldy, (const float *)y2, (int)M, N, alpha, beta, bias, e);
    return 1;
}

/* The bf16 GEMV: FMA rows for M <= 2 (unless a tensor-core configuration is forced), the
 * tensor-core tile otherwise. Per-shape choice of the tile's warps and loads in flight,
 * from the H200 sweeps of tests/device/gemv_lab.cu and check_cuda_decode at M = 16: the
 * heads (N K >= 32M) two tiles of 8 warps x 4 (one tile, 4 x 8, below 64 columns per
 * SM), K >= 4096 (out_proj) 16 x 8, else (in_proj) 4 x 4. */
static int bf16_gemv(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                     int w_dtype, const float *bias, int64_t M, int64_t N, int64_t K, float alpha,
                     float beta, const struct omni_dec_epi *epi, int pdl)
{
    if (w_dtype != OMNI_DTYPE_BF16 || M < 1 || M > OMNI_DEC_MAX_M || N < 1 || K < 8 ||
        ((uintptr_t)w & 15))
        return 0;
    static const struct omni_dec_epi none = {};
    const struct omni_dec_epi &e = epi ? *epi : none;
    const int fl = gemv_flags();
    if (fl & GF_NO_PDL)
        pdl = 0;
    /* x in shared memory within the 48 KB a block gets without opt-in (static part: rs) */
    if (M <= 2 && !tc_force_nw && K % 8 == 0 && (size_t)M * K * sizeof(float) <= 47 * 1024 &&
        (!e.cout || e.K <= 32) && (!e.u || e.R <= 32)) {
        if (M == 1 && K > 2048) /* every load of a row in flight at once up to K = 4096 */
            fma_launch<1, 1, 16>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, fl, pdl);
        else if (M == 1)
            fma_launch<1, 1, 8>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, fl, pdl);
        else
            fma_launch<2, 2, 4>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, fl, pdl);
        return 1;
    }
    /* wide matrices at 8 or more rows through cuBLAS (x split in two bf16 rows each), unless
     * a tile configuration is forced (tests) */
    const int forced = tc_force_nw || tc_force_u || tc_force_rt;
    if (M >= 3 && K % 2 == 0 && !(fl & GF_NO_BLAS) &&
        ((fl & GF_BLAS) ||
         (!forced && M >= 8 && N >= 4096 && (double)N * (double)K >= 16.0 * 1024 * 1024)) &&
        blas_gemv(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, pdl))
        return 1;
    if (K < 32 || K % 32 || ((uintptr_t)x & 15) || (M > 1 && ldx % 4))
        return 0;
    /* the heads (N K >= 32M): two column tiles per block (x loaded and split once for
     * both), 8 warps, 4 steps in flight; at M = 16 on the H200 32.1 us against 35.0 for
     * one tile (u 8, 4 warps). in_proj was slower with two tiles (23.3-23.9 against 22.3 us)
     * and the bench step with them 2.804 against 2.685 ms (tests/results/cuda/s4-NVIDIA-H200). */
    int nw = 4, u = 4, rt = 1;
    if ((double)N * (double)K >= 32.0 * 1024 * 1024) {
        u = 8;
        if (N >= 64 * (int64_t)omni__cuda_sm_count() && !(fl & GF_ONE_TILE))
            nw = 8, rt = 2;
    } else if (K >= 4096) {
        nw = 16, u = 8;
    }
    if (tc_force_nw)
        nw = tc_force_nw;
    if (tc_force_u)
        u = tc_force_u;
    if (tc_force_rt)
        rt = tc_force_rt;
    if (rt == 2 && u == 8) /* two tiles keep at most 4 steps of loads in flight */
        u = 4;
    if (rt == 2 && nw > 8) /* and run at most 8 warps (registers) */
        rt = 1;
    if (M > 8)
        tc_go<2>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, nw, u, rt, fl, pdl);
    else
        tc_go<1>(y, ldy, x, ldx, w, bias, M, N, K, alpha, beta, e, nw, u, rt, fl, pdl);
    return 1;
}

/* omni_matmul_cuda's entry: no programmatic launch (its inputs may come from any kernel) */
extern "C" int omni__dec_gemv_tc_cuda(float *y, int64_t ldy, const float *x, int64_t ldx,
                                      const void *w, int w_dtype, const float *bias, int64_t M,
                                      int64_t N, int64_t K, float alpha, float beta,
                                      const struct omni_dec_epi *epi)
{
    return bf16_gemv(y, ldy, x, ldx, w, w_dtype, bias, M, N, K, alpha, beta, epi, 0);
}

/* ---- plain GEMV with the same epilogue ------------------------------------------------ */

template <typename T>
__global__ void __launch_bounds__(256)
    dec_simple_k(float *y, int64_t ldy, const float *x, int64_t ldx, const T *w, const float *bias,
                 int M, int64_t N, int64_t K, float alpha, struct omni_dec_epi e)
{
    __shared__ float rs[OMNI_DEC_MAX_M];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n = (int64_t)blockIdx.x * 8 + warp;
    float acc[OMNI_DEC_MAX_M];
#pragma unroll
    for (int m = 0; m < OMNI_DEC_MAX_M; m++)
        acc[m] = 0.0f;
    if (n < N) {
        for (int64_t k = lane; k < K; k += 32) {
            const float wk = omni__ld(w + n * K + k);
#pragma unroll
            for (int m = 0; m < OMNI_DEC_MAX_M; m++)
                if (m < M)
                    acc[m] += wk * x[m * ldx + k];
        }
    }
#pragma unroll
    for (int m = 0; m < OMNI_DEC_MAX_M; m++)
        acc[m] = omni__warp_sum(acc[m]);
    if (e.part)
        dec_rowscale(rs, M, e);
    __syncthreads();
    if (lane == 0 && n < N) {
#pragma unroll
        for (int m = 0; m < OMNI_DEC_MAX_M; m++)
            if (m < M)
                dec_store(y, ldy, m, n, acc[m], alpha, 0.0f, bias, e.part ? rs : nullptr, e);
    }
}

extern "C" void omni_dec_gemv_cuda(float *y, int64_t ldy, const float *x, int64_t ldx,
                                   const void *w, int w_dtype, const float *bias, int64_t M,
                                   int64_t N, int64_t K, float alpha,
                                   const struct omni_dec_epi *epi)
{
    if (M <= 0 || N <= 0)
        return;
    if (M > OMNI_DEC_MAX_M) {
        omni__cuda_fail(__FILE__, __LINE__, "dec_gemv takes at most %d rows, got %lld",
                        OMNI_DEC_MAX_M, (long long)M);
        return;
    }
    if (bf16_gemv(y, ldy, x, ldx, w, w_dtype, bias, M, N, K, alpha, 0.0f, epi, 1))
        return;
    static const struct omni_dec_epi none = {};
    const struct omni_dec_epi e = epi ? *epi : none;
    const unsigned nb = omni__blocks(N, 8);
    if (w_dtype == OMNI_DTYPE_BF16)
        OMNI_LAUNCH(dec_simple_k<__nv_bfloat16>, nb, 256, 0, y, ldy, x, ldx,
                    (const __nv_bfloat16 *)w, bias, (int)M, N, K, alpha, e);
    else if (w_dtype == OMNI_DTYPE_F16)
        OMNI_LAUNCH(dec_simple_k<__half>, nb, 256, 0, y, ldy, x, ldx, (const __half *)w, bias,
                    (int)M, N, K, alpha, e);
    else
        OMNI_LAUNCH(dec_simple_k<float>, nb, 256, 0, y, ldy, x, ldx, (const float *)w, bias,
                    (int)M, N, K, alpha, e);
}

/* ---- residual add + RMSNorm (+ u = n·Aᵀ) ------------------------------------------------ */

#define DN_NT 256
#define DN_V 8 /* values of the row a thread keeps in registers (all of it for D <= 2048) */

/* blockIdx.y == 0: res_out and out; blockIdx.y == 1 + r: u[m, r] (same row norm, recomputed).
 * The norm weight and the LoRA row are read before the wait on the previous kernel. */
__global__ void __launch_bounds__(DN_NT)
    dec_norm_k(float *out, int64_t ldo, float *ro, int64_t ldro, const float *ri, int64_t ldri,
               const float *x, int64_t ldx, const float *w, int64_t D, float eps, const float *a,
               float *u, int64_t ldu)
{
    __shared__ float sh[32];
    const int64_t m = blockIdx.x;
    const int r = (int)blockIdx.y - 1;
    float wv[DN_V], av[DN_V], tv[DN_V];
    pdl_trigger();
#pragma unroll
    for (int j = 0; j < DN_V; j++) {
        const int64_t i = threadIdx.x + (int64_t)j * DN_NT;
        wv[j] = i < D ? w[i] : 0.0f;
        av[j] = r >= 0 && i < D ? a[r * D + i] : 0.0f;
    }
    pdl_wait();
    const float *rr = ri + m * ldri, *xr = x ? x + m * ldx : nullptr;
    float *rw = ro + m * ldro;
#pragma unroll
    for (int j = 0; j < DN_V; j++) {
        const int64_t i = threadIdx.x + (int64_t)j * DN_NT;
        tv[j] = i < D ? (xr ? rr[i] + xr[i] : rr[i]) : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < DN_V; j++) {
        const int64_t i = threadIdx.x + (int64_t)j * DN_NT;
        if (r < 0 && i < D)
            rw[i] = tv[j];
        ss += tv[j] * tv[j];
    }
    for (int64_t i = threadIdx.x + DN_V * DN_NT; i < D; i += DN_NT) { /* rows past 2048 */
        const float t = xr ? rr[i] + xr[i] : rr[i];
        if (r < 0)
            rw[i] = t;
        ss += t * t;
    }
    ss = omni__block_sum(ss, sh);
    const float rstd = 1.0f / sqrtf(ss / (float)D + eps);
    if (r < 0) {
        float *o = out + m * ldo;
#pragma unroll
        for (int j = 0; j < DN_V; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * DN_NT;
            if (i < D)
                o[i] = tv[j] * rstd * wv[j];
        }
        for (int64_t i = threadIdx.x + DN_V * DN_NT; i < D; i += DN_NT)
            o[i] = rw[i] * rstd * w[i];
        return;
    }
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < DN_V; j++)
        acc += (tv[j] * rstd * wv[j]) * av[j];
    for (int64_t i = threadIdx.x + DN_V * DN_NT; i < D; i += DN_NT) {
        const float t = xr ? rr[i] + xr[i] : rr[i];
        acc += (t * rstd * w[i]) * a[r * D + i];
    }
    acc = omni__block_sum(acc, sh);
    if (threadIdx.x == 0)
        u[m * ldu + r] = acc;
}

extern "C" void omni_dec_norm_cuda(float *out, int64_t ldo, float *res_out, int64_t ldro,
                                   const float *res_in, int64_t ldri, const float *x, int64_t ldx,
                                   const float *w, int64_t M, int64_t D, float eps, const float *a,
                                   int64_t R, float *u, int64_t ldu)
{
    if (M <= 0)
        return;
    if (a && R > OMNI_DEC_MAX_R) {
        omni__cuda_fail(__FILE__, __LINE__, "dec_norm takes rank <= %d, got %lld", OMNI_DEC_MAX_R,
                        (long long)R);
        return;
    }
    dec_launch(!(gemv_flags() & GF_NO_PDL), dec_norm_k,
               dim3((unsigned)M, a ? 1u + (unsigned)R : 1u), dim3(DN_NT), 0, out,
               ldo, res_out, ldro, res_in, ldri, x, ldx, w, D, eps, a, u, ldu);
}

/* ---- SSD step + gate ---------------------------------------------------------------------- */

/* four consecutive state values as one 16-byte (f32) or 8-byte (16-bit) access */
__device__ __forceinline__ void mix_ld4(const float *p, float (&v)[4])
{
    const float4 t = *(const float4 *)p;
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
}
__device__ __forceinline__ void mix_st4(float *p, const float (&v)[4])
{
    *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ float mix_f(unsigned short b, const __half *) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ float mix_f(unsigned short b, const __nv_bfloat16 *) { return __bfloat162float(__ushort_as_bfloat16(b)); }
__device__ __forceinline__ unsigned mix_b(float v, const __half *) { return __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ unsigned mix_b(float v, const __nv_bfloat16 *) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
template <typename ST> __device__ __forceinline__ void mix_ld4(const ST *p, float (&v)[4])
{
    const uint2 t = *(const uint2 *)p;
    v[0] = mix_f((unsigned short)(t.x & 0xffff), p), v[1] = mix_f((unsigned short)(t.x >> 16), p);
    v[2] = mix_f((unsigned short)(t.y & 0xffff), p), v[3] = mix_f((unsigned short)(t.y >> 16), p);
}
template <typename ST> __device__ __forceinline__ void mix_st4(ST *p, const float (&v)[4])
{
    *(uint2 *)p = make_uint2(mix_b(v[0], p) | mix_b(v[1], p) << 16, mix_b(v[2], p) | mix_b(v[3], p) << 16);
}

/* the state column of a lane's q-th value: lane + 32 q, or with VEC = 4 runs of four
 * (one 16- or 8-byte access each: 2-byte loads of a 16-bit state left it at 2.3 TB/s) */
template <int VEC> __device__ __forceinline__ int64_t mix_n(int lane, int q)
{
    return VEC == 1 ? lane + 32 * q : (int64_t)(q / VEC) * 32 * VEC + lane * VEC + q % VEC;
}

/* ST: the state's storage (float, __half, __nv_bfloat16); the update and y are f32, a
 * 16-bit state is stored rounded to nearest even. VEC = 4 needs N = 32 NJ (NJ % 4 == 0)
 * and a 16-byte aligned state. */
template <int NJ, int RW, typename ST, int VEC>
__global__ void __launch_bounds__(256)
    dec_mix_k(float *g, int64_t ldg, float *part, int64_t ldp, const float *zx, int64_t ldz,
              const float *xbc, int64_t ldc, const float *A, const float *Dsk,
              const float *dt_bias, const float *gnw, ST *state, int64_t H, int64_t P,
              int64_t G, int64_t N)
{
    __shared__ float wsum[8];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t b = blockIdx.y, j = blockIdx.x;
    const int64_t E = H * P, Cd = E + 2 * G * N;
    const int64_t e0 = j * (8 * RW), h = e0 / P, p0 = e0 % P + warp * RW;
    const int64_t grp = h / (H / G);
    const float *zr = zx + b * ldz, *xb = xbc + b * ldc;
    ST *S = state + ((b * H + h) * P + p0) * N;
    pdl_trigger();
    if (warp == 0 && ((N * (int64_t)sizeof(ST)) & 15) == 0)
        l2_prefetch(state + ((b * H + h) * P + e0 % P) * N, 8 * RW * N * (int64_t)sizeof(ST));
    /* the layer's parameters, before the wait on the previous kernel */
    const float Ah = A[h], Dh = Dsk[h], dtb = dt_bias[h];
    float gw[RW];
#pragma unroll
    for (int r = 0; r < RW; r++)
        gw[r] = gnw[h * P + p0 + r];
    pdl_wait();
    float Sr[RW][NJ];
#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int q = 0; q < NJ; q += VEC) {
            const int64_t n = mix_n<VEC>(lane, q);
            if (VEC == 4) {
                float v[4];
                mix_ld4(S + r * N + n, v);
#pragma unroll
                for (int i = 0; i < VEC; i++)
                    Sr[r][q + i] = v[i];
            } else {
                Sr[r][q] = n < N ? omni__ld(S + r * N + n) : 0.0f;
            }
        }
    const float dt = omni__softplus(zr[E + Cd + h] + dtb);
    const float da = expf(dt * Ah);
    float Bv[NJ], Cv[NJ];
#pragma unroll
    for (int q = 0; q < NJ; q++) {
        const int64_t n = mix_n<VEC>(lane, q);
        Bv[q] = n < N ? dt * xb[E + grp * N + n] : 0.0f;
        Cv[q] = n < N ? xb[E + G * N + grp * N + n] : 0.0f;
    }
    float ssq = 0.0f;
#pragma unroll
    for (int r = 0; r < RW; r++) {
        const int64_t e = h * P + p0 + r;
        const float xv = xb[e];
        float acc = 0.0f;
#pragma unroll
        for (int q = 0; q < NJ; q++) {
            const float s = da * Sr[r][q] + Bv[q] * xv;
            Sr[r][q] = s;
            acc += s * Cv[q];
        }
        acc = omni__warp_sum(acc);
        const float gg = (acc + Dh * xv) * omni__silu(zr[e]);
        if (lane == 0)
            g[b * ldg + e] = gg * gw[r];
        ssq += gg * gg;
    }
#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int q = 0; q < NJ; q += VEC) {
            const int64_t n = mix_n<VEC>(lane, q);
            if (VEC == 4) {
                float v[4];
#pragma unroll
                for (int i = 0; i < VEC; i++)
                    v[i] = Sr[r][q + i];
                mix_st4(S + r * N + n, v);
            } else if (n < N) {
                omni__st(S + r * N + n, Sr[r][q]);
            }
        }
    if (lane == 0)
        wsum[warp] = ssq;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
#pragma unroll
        for (int wi = 0; wi < 8; wi++)
            s += wsum[wi];
        part[b * ldp + j] = s;
    }
}

#define MIX_ST(NJ, RW, ST, VEC)                                                                    \
    dec_launch(!(gemv_flags() & GF_NO_PDL), dec_mix_k<NJ, RW, ST, VEC>, grid, dim3(256), 0, g,   \
               ldg, part, ldp, zx, ldz, xbc, ldc, A, Dsk, dt_bias, gnw, (ST *)state, d->H, d->P,  \
               d->G, d->N)
#define MIX_VEC(NJ, RW, ST)                                                                        \
    do {                                                                                           \
        if (NJ % 4 == 0 && vec4)                                                                   \
            MIX_ST(NJ, RW, ST, (NJ % 4 == 0 ? 4 : 1));                                             \
        else                                                                                       \
            MIX_ST(NJ, RW, ST, 1);                                                                 \
    } while (0)
#define MIX_GO(NJ, RW)                                                                             \
    do {                                                                                           \
        if (state_dtype == OMNI_DTYPE_BF16)                                                        \
            MIX_VEC(NJ, RW, __nv_bfloat16);                                                        \
        else if (state_dtype == OMNI_DTYPE_F16)                                                    \
            MIX_VEC(NJ, RW, __half);                                                               \
        else                                                                                       \
            MIX_VEC(NJ, RW, float);                                                                \
    } while (0)
#define MIX_RW(NJ)                                                                                 \
    do {                                                                                           \
        if (chunk == 8)                                                                            \
            MIX_GO(NJ, 1);                                                                         \
        else if (chunk == 16)                                                                      \
            MIX_GO(NJ, 2);                                                                         \
        else                                                                                       \
            MIX_GO(NJ, 4);                                                                         \
    } while (0)

extern "C" void omni_dec_mix_cuda(float *g, int64_t ldg, float *part, int64_t ldp, int64_t nparts,
                                  const float *zx, int64_t ldz, const float *xbc, int64_t ldc,
                                  const float *A, const float *Dsk, const float *dt_bias,
                                  const float *gnw, void *state, int state_dtype,
                                  const struct omni_dec_dims *d)
{
    const int64_t E = d->H * d->P;
    if (d->B <= 0 || E <= 0)
        return;
    const int64_t chunk = E / nparts, nj = (d->N + 31) / 32;
    if ((chunk != 8 && chunk != 16 && chunk != 32) || d->P % chunk || nj > 8) {
        omni__cuda_fail(__FILE__, __LINE__,
                        "dec_mix on CUDA needs a chunk of 8, 16 or 32 channels dividing P=%lld "
                        "and N <= 256 (chunk %lld, N %lld)",
                        (long long)d->P, (long long)chunk, (long long)d->N);
        return;
    }
    const dim3 grid((unsigned)nparts, (unsigned)d->B);
    /* runs of four values per lane: every lane's values are real columns and aligned */
    const int vec4 = (nj == 4 || nj == 8) && d->N == 32 * nj && ((uintptr_t)state & 15) == 0 &&
                     !(gemv_flags() & GF_MIX_SCALAR);
    if (nj <= 1)
        MIX_RW(1);
    else if (nj <= 2)
        MIX_RW(2);
    else if (nj <= 4)
        MIX_RW(4);
    else
        MIX_RW(8);
}
