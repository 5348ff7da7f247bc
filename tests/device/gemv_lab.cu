/* tests/device/gemv_lab.cu - a standalone sweep of bf16-weight GEMV designs at
 * the decode shapes (y[M,N] = x[M,K] . W[N,K]^T, x f32, W bf16 row-major), to
 * choose the one kernels/cuda/decode.cu should use. Not part of the engine.
 *   nvcc -O3 -arch=sm_90 -o gemv_lab tests/device/gemv_lab.cu && ./gemv_lab
 * With -DLAB_PROD (and libomni.a, see tests/device/gemv_lab.sh) `gemv_lab prod` times
 * the engine's own GEMV (omni_dec_gemv_cuda) per test flag, inside CUDA graphs.
 * `gemv_lab m16`: 16-row GEMV candidates; `gemv_lab mix`: the SSD decode step at batch 16
 * with an f32 against a bf16 state; `gemv_lab tcb`: 16-row GEMVs fed by the copy engine
 * (cp.async.bulk into a shared-memory ring, stream-K units; measured slower than the tile
 * and kept only as a record) and cuBLAS GemmEx at 16 and 32 rows of bf16 x.
 * Every variant is checked against a plain f32 reference kernel (max error
 * relative to max|ref|) and timed over 200 back-to-back launches that rotate
 * through enough weight copies (>= 256 MB) that L2 never holds a matrix. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cuda/gemv_parts.cuh"

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- reference and read-bandwidth ceiling ------------------------------------------------ */

__global__ void ref_k(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    const int n = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (n >= N)
        return;
    for (int m = 0; m < M; m++) {
        float a = 0;
        for (int k = lane; k < K; k += 32)
            a += __bfloat162float(w[(int64_t)n * K + k]) * x[(int64_t)m * K + k];
        for (int o = 16; o; o >>= 1)
            a += __shfl_xor_sync(~0u, a, o);
        if (!lane)
            y[(int64_t)m * N + n] = a;
    }
}

/* read every byte once (uint4 per thread, U in flight), fold into one word per block */
template <int U> __global__ void rd_k(const uint4 *w, int64_t n16, unsigned *out)
{
    unsigned acc = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n16; i += stride * U) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * stride < n16)
                v[u] = ld_stream(w + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * stride < n16)
                acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    if (acc == 0x12345678u)
        out[blockIdx.x] = acc;
}

/* ---- FMA GEMV: a warp owns RPW rows; lane l reads 16 bytes at k = 8 l + 256 j, so one load
 * instruction covers 512 contiguous bytes of a row. x staged in shared memory (f32). --------- */
template <int M, int RPW, int U>
__global__ void __launch_bounds__(256) fma_k(float *y, const float *x, const __nv_bfloat16 *w,
                                             int N, int K)
{
    extern __shared__ float xs[]; /* [M][K] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int i = threadIdx.x * 4; i < M * K; i += blockDim.x * 4)
        *(float4 *)(xs + i) = *(const float4 *)(x + i);
    __syncthreads();
    const int n0 = (blockIdx.x * nw + warp) * RPW;
    float acc[RPW][M];
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int m = 0; m < M; m++)
            acc[r][m] = 0;
    const int nj = K / 256; /* chunks of 256 k per row */
    for (int j0 = 0; j0 < nj; j0 += U) {
        uint4 v[RPW][U];
#pragma unroll
        for (int r = 0; r < RPW; r++)
#pragma unroll
            for (int u = 0; u < U; u++)
                if (j0 + u < nj)
                    v[r][u] = ld_stream((const uint4 *)(w + (int64_t)min(n0 + r, N - 1) * K +
                                                        (j0 + u) * 256) +
                                        lane);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (j0 + u >= nj)
                break;
            const int k = (j0 + u) * 256 + lane * 8;
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                float f[8];
                bf16x8(v[r][u], f);
#pragma unroll
                for (int m = 0; m < M; m++) {
                    const float4 a = *(const float4 *)(xs + m * K + k);
                    const float4 b = *(const float4 *)(xs + m * K + k + 4);
                    acc[r][m] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x +
                                 f[5] * b.y + f[6] * b.z + f[7] * b.w;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int m = 0; m < M; m++) {
            float a = acc[r][m];
            for (int o = 16; o; o >>= 1)
                a += __shfl_xor_sync(~0u, a, o);
            if (lane == 0 && n0 + r < N)
                y[(int64_t)m * N + n0 + r] = a;
        }
}

/* ---- tensor-core GEMV (as kernels/cuda/decode.cu): a block owns 16 rows, warps split K.
 * CONTIG: warp w takes the contiguous steps [w ns/nw, (w+1) ns/nw) instead of w, w+nw, ...
 * PF: prefetch the block's tile into L2 first. -------------------------------------------- */
template <int MT, int U, bool PF, bool CONTIG>
__global__ void __launch_bounds__(512) tc_k(float *y, const float *x, const __nv_bfloat16 *w,
                                            int M, int N, int K)
{
    extern __shared__ float red[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t n0 = (int64_t)blockIdx.x * 16;
    const int64_t ra = min(n0 + g, (int64_t)N - 1), rb = min(n0 + g + 8, (int64_t)N - 1);
    if (PF)
        l2_prefetch(w + n0 * K, (min((int64_t)N, n0 + 16) - n0) * K * 2);
    const uint4 *wa = reinterpret_cast<const uint4 *>(w + ra * K) + t;
    const uint4 *wb = reinterpret_cast<const uint4 *>(w + rb * K) + t;
    const float4 *xr[MT];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        xr[mt] = reinterpret_cast<const float4 *>(x + (int64_t)min(mt * 8 + g, M - 1) * K) + 2 * t;
    float ch[MT][4], cl[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            ch[mt][i] = cl[mt][i] = 0.0f;
    const int ns = K / 32;
    const int spw = (ns + nw - 1) / nw;
    const int sbeg = CONTIG ? warp * spw : warp, send = CONTIG ? min(ns, sbeg + spw) : ns;
    const int sstep = CONTIG ? 1 : nw;
    for (int s0 = sbeg; s0 < send; s0 += U * sstep) {
        uint4 A[U], Bw[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = s0 + u * sstep;
            if (s < send) {
                A[u] = ld_stream(wa + s * 4);
                Bw[u] = ld_stream(wb + s * 4);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = s0 + u * sstep;
            if (s >= send)
                break;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const float4 x0 = __ldg(xr[mt] + s * 8), x1 = __ldg(xr[mt] + s * 8 + 1);
                uint32_t h0, l0, h1, l1, h2, l2, h3, l3;
                split2(x0.x, x0.y, h0, l0);
                split2(x0.z, x0.w, h1, l1);
                split2(x1.x, x1.y, h2, l2);
                split2(x1.z, x1.w, h3, l3);
                mma16816(ch[mt], A[u].x, Bw[u].x, A[u].y, Bw[u].y, h0, h1);
                mma16816(cl[mt], A[u].x, Bw[u].x, A[u].y, Bw[u].y, l0, l1);
                mma16816(ch[mt], A[u].z, Bw[u].z, A[u].w, Bw[u].w, h2, h3);
                mma16816(cl[mt], A[u].z, Bw[u].z, A[u].w, Bw[u].w, l2, l3);
            }
        }
    }
    float *my = red + warp * 256;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        my[g * 16 + mt * 8 + 2 * t] = ch[mt][0] + cl[mt][0];
        my[g * 16 + mt * 8 + 2 * t + 1] = ch[mt][1] + cl[mt][1];
        my[(g + 8) * 16 + mt * 8 + 2 * t] = ch[mt][2] + cl[mt][2];
        my[(g + 8) * 16 + mt * 8 + 2 * t + 1] = ch[mt][3] + cl[mt][3];
    }
    __syncthreads();
    for (int o = threadIdx.x; o < 16 * MT * 8; o += blockDim.x) {
        const int ml = o >> 4, nl = o & 15;
        const int64_t n = n0 + nl;
        if (ml < M && n < N) {
            float acc = 0.0f;
            for (int wi = 0; wi < nw; wi++)
                acc += red[wi * 256 + nl * 16 + ml];
            y[ml * (int64_t)N + n] = acc;
        }
    }
}


/* tc2_k: the contiguous tensor-core tile with MODE 0 = f32 x split per step (as tc_k),
 * 1 = hi part only (half the MMAs, no lo: not exact; measures the compute share),
 * 2 = x pre-split into bf16 hi/lo arrays (xh, xl: (M,K)) by the producer: no split work */
template <int MT, int U, int MODE>
__global__ void __launch_bounds__(512) tc2_k(float *y, const float *x, const __nv_bfloat16 *xh,
                                             const __nv_bfloat16 *xl, const __nv_bfloat16 *w,
                                             int M, int N, int K)
{
    extern __shared__ float red[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t n0 = (int64_t)blockIdx.x * 16;
    const int64_t ra = min(n0 + g, (int64_t)N - 1), rb = min(n0 + g + 8, (int64_t)N - 1);
    const uint4 *wa = reinterpret_cast<const uint4 *>(w + ra * K) + t;
    const uint4 *wb = reinterpret_cast<const uint4 *>(w + rb * K) + t;
    const int ns = K / 32, spw = (ns + nw - 1) / nw;
    const int sb = min(ns, warp * spw), se = min(ns, sb + spw);
    float ch[MT][4], cl[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            ch[mt][i] = cl[mt][i] = 0.0f;
    for (int s0 = sb; s0 < se; s0 += U) {
        uint4 A[U], Bw[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (s0 + u < se) {
                A[u] = ld_stream(wa + (s0 + u) * 4);
                Bw[u] = ld_stream(wb + (s0 + u) * 4);
            }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = s0 + u;
            if (s >= se)
                break;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int64_t row = min(mt * 8 + g, M - 1);
                uint32_t h0, l0, h1, l1, h2, l2, h3, l3;
                if (MODE == 2) {
                    const uint4 hv = __ldg(reinterpret_cast<const uint4 *>(xh + row * K) + s * 4 + t);
                    const uint4 lv = __ldg(reinterpret_cast<const uint4 *>(xl + row * K) + s * 4 + t);
                    h0 = hv.x, h1 = hv.y, h2 = hv.z, h3 = hv.w;
                    l0 = lv.x, l1 = lv.y, l2 = lv.z, l3 = lv.w;
                } else {
                    const float4 *xr = reinterpret_cast<const float4 *>(x + row * K) + 2 * t;
                    const float4 x0 = __ldg(xr + s * 8), x1 = __ldg(xr + s * 8 + 1);
                    split2(x0.x, x0.y, h0, l0);
                    split2(x0.z, x0.w, h1, l1);
                    split2(x1.x, x1.y, h2, l2);
                    split2(x1.z, x1.w, h3, l3);
                }
                mma16816(ch[mt], A[u].x, Bw[u].x, A[u].y, Bw[u].y, h0, h1);
                mma16816(ch[mt], A[u].z, Bw[u].z, A[u].w, Bw[u].w, h2, h3);
                if (MODE != 1) {
                    mma16816(cl[mt], A[u].x, Bw[u].x, A[u].y, Bw[u].y, l0, l1);
                    mma16816(cl[mt], A[u].z, Bw[u].z, A[u].w, Bw[u].w, l2, l3);
                }
            }
        }
    }
    float *my = red + warp * 256;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        my[g * 16 + mt * 8 + 2 * t] = ch[mt][0] + cl[mt][0];
        my[g * 16 + mt * 8 + 2 * t + 1] = ch[mt][1] + cl[mt][1];
        my[(g + 8) * 16 + mt * 8 + 2 * t] = ch[mt][2] + cl[mt][2];
        my[(g + 8) * 16 + mt * 8 + 2 * t + 1] = ch[mt][3] + cl[mt][3];
    }
    __syncthreads();
    for (int o = threadIdx.x; o < 16 * MT * 8; o += blockDim.x) {
        const int ml = o >> 4, nl = o & 15;
        const int64_t n = n0 + nl;
        if (ml < M && n < N) {
            float acc = 0.0f;
            for (int wi = 0; wi < nw; wi++)
                acc += red[wi * 256 + nl * 16 + ml];
            y[ml * (int64_t)N + n] = acc;
        }
    }
}

/* x (f32) -> bf16 hi and lo with the k order a lane's 16-byte chunk maps to the fragments:
 * chunk (s, t) holds x[8t .. 8t+8) of step s as pairs (0,1),(2,3),(4,5),(6,7) -> regs x,y,z,w
 * exactly as split2 pairs them in tc_k (x0.xy, x0.zw, x1.xy, x1.zw) */
__global__ void presplit_k(__nv_bfloat16 *xh, __nv_bfloat16 *xl, const float *x, int64_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const __nv_bfloat16 h = __float2bfloat16_rn(x[i]);
        xh[i] = h;
        xl[i] = __float2bfloat16_rn(x[i] - __bfloat162float(h));
    }
}


/* tc3_k: candidates for 16 rows (written in session 3, not yet run): the interleaved tile
 * with a register double buffer (the loads of the next U steps issued before the math of
 * the current ones, so about U steps stay in flight instead of 0..U), one accumulator for
 * the hi and lo products (ONEACC: 8 fewer registers; the same sums in another order), and
 * RT 16-row tiles per block (RT = 2: each split x fragment feeds two tiles' MMAs). */
template <int U, int RT, bool ONEACC>
__global__ void __launch_bounds__(512) tc3_k(float *y, const float *x, const __nv_bfloat16 *w,
                                             int M, int N, int K)
{
    extern __shared__ float red[]; /* [nw][RT][256] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t n0 = (int64_t)blockIdx.x * 16 * RT;
    const uint4 *wa[RT], *wb[RT];
#pragma unroll
    for (int q = 0; q < RT; q++) {
        const int64_t ra = min(n0 + 16 * q + g, (int64_t)N - 1);
        const int64_t rb = min(n0 + 16 * q + g + 8, (int64_t)N - 1);
        wa[q] = reinterpret_cast<const uint4 *>(w + ra * K) + t;
        wb[q] = reinterpret_cast<const uint4 *>(w + rb * K) + t;
    }
    const float4 *xr[2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
        xr[mt] = reinterpret_cast<const float4 *>(x + (int64_t)min(mt * 8 + g, M - 1) * K) + 2 * t;
    float ch[RT][2][4], cl[RT][2][4];
#pragma unroll
    for (int q = 0; q < RT; q++)
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                ch[q][mt][i] = cl[q][mt][i] = 0.0f;
    const int ns = K / 32;
    uint4 A[2][U][RT], B[2][U][RT]; /* two batches of U steps */
#define LOADB(buf, base)                                                                           \
    _Pragma("unroll") for (int u = 0; u < U; u++) {                                                \
        const int st_ = (base) + u * nw;                                                           \
        _Pragma("unroll") for (int q = 0; q < RT; q++) if (st_ < ns) {                             \
            A[buf][u][q] = ld_stream(wa[q] + st_ * 4);                                             \
            B[buf][u][q] = ld_stream(wb[q] + st_ * 4);                                             \
        }                                                                                          \
    }
#define MATH(buf, base)                                                                            \
    _Pragma("unroll") for (int u = 0; u < U; u++) {                                                \
        const int st_ = (base) + u * nw;                                                           \
        if (st_ < ns) {                                                                            \
            _Pragma("unroll") for (int mt = 0; mt < 2; mt++) {                                     \
                const float4 x0 = __ldg(xr[mt] + st_ * 8), x1 = __ldg(xr[mt] + st_ * 8 + 1);       \
                uint32_t h0, l0, h1, l1, h2, l2, h3, l3;                                           \
                split2(x0.x, x0.y, h0, l0);                                                        \
                split2(x0.z, x0.w, h1, l1);                                                        \
                split2(x1.x, x1.y, h2, l2);                                                        \
                split2(x1.z, x1.w, h3, l3);                                                        \
                _Pragma("unroll") for (int q = 0; q < RT; q++) {                                   \
                    const uint4 a = A[buf][u][q], b = B[buf][u][q];                                \
                    float *lo = ONEACC ? ch[q][mt] : cl[q][mt];                                    \
                    mma16816(ch[q][mt], a.x, b.x, a.y, b.y, h0, h1);                               \
                    mma16816(lo, a.x, b.x, a.y, b.y, l0, l1);                                      \
                    mma16816(ch[q][mt], a.z, b.z, a.w, b.w, h2, h3);                               \
                    mma16816(lo, a.z, b.z, a.w, b.w, l2, l3);                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
    const int stride = U * nw;
    LOADB(0, warp);
    for (int s0 = warp; s0 < ns; s0 += 2 * stride) {
        LOADB(1, s0 + stride);
        MATH(0, s0);
        LOADB(0, s0 + 2 * stride);
        MATH(1, s0 + stride);
    }
#undef LOADB
#undef MATH
#pragma unroll
    for (int q = 0; q < RT; q++) {
        float *my = red + (warp * RT + q) * 256;
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            my[g * 16 + mt * 8 + 2 * t] = ch[q][mt][0] + cl[q][mt][0];
            my[g * 16 + mt * 8 + 2 * t + 1] = ch[q][mt][1] + cl[q][mt][1];
            my[(g + 8) * 16 + mt * 8 + 2 * t] = ch[q][mt][2] + cl[q][mt][2];
            my[(g + 8) * 16 + mt * 8 + 2 * t + 1] = ch[q][mt][3] + cl[q][mt][3];
        }
    }
    __syncthreads();
    for (int o = threadIdx.x; o < RT * 256; o += blockDim.x) {
        const int q = o >> 8, ml = (o >> 4) & 15, nl = o & 15;
        const int64_t n = n0 + 16 * q + nl;
        if (ml < M && n < N) {
            float acc = 0.0f;
            for (int wi = 0; wi < nw; wi++)
                acc += red[(wi * RT + q) * 256 + nl * 16 + ml];
            y[ml * (int64_t)N + n] = acc;
        }
    }
}


/* ---- the SSD decode step at batch 16 with an f32 or a 16-bit state (written in session 3,
 * not yet run): the shape of kernels/cuda/decode.cu's dec_mix_k (a warp per state row of
 * N = 128 values, 8 warps per block, 8 channels of one head per block), state loaded,
 * updated and stored; measures what a bf16 state would save per layer (the f32 state of
 * 16 rows x 64 heads x 64 x 128 is 33.5 MB, read and written every step). --------------- */
__device__ __forceinline__ float st_ld(const float *p) { return *p; }
__device__ __forceinline__ float st_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void st_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

template <typename ST>
__global__ void __launch_bounds__(256) mixlab_k(float *g, const float *xbc, const float *dt,
                                                ST *state, int H, int P, int N)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int b = blockIdx.y, e = blockIdx.x * 8 + warp, h = e / P;
    ST *S = state + ((int64_t)b * H * P + e) * N;
    float sr[4];
#pragma unroll
    for (int q = 0; q < 4; q++)
        sr[q] = st_ld(S + lane + 32 * q);
    const float d = dt[b * H + h], da = __expf(-d);
    const float xv = xbc[(int64_t)b * 4352 + e];
    float acc = 0.0f;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const float Bv = xbc[(int64_t)b * 4352 + 4096 + lane + 32 * q];
        const float Cv = xbc[(int64_t)b * 4352 + 4224 + lane + 32 * q];
        sr[q] = da * sr[q] + d * Bv * xv;
        acc += sr[q] * Cv;
    }
#pragma unroll
    for (int q = 0; q < 4; q++)
        st_st(S + lane + 32 * q, sr[q]);
    for (int o = 16; o; o >>= 1)
        acc += __shfl_xor_sync(~0u, acc, o);
    if (lane == 0)
        g[(int64_t)b * H * P + e] = acc;
}

static void mix_main(void)
{
    const int B = 16, H = 64, P = 64, N = 128, L = 48;
    const int64_t ns = (int64_t)B * H * P * N;
    float *g, *xbc, *dt, *s32;
    __nv_bfloat16 *s16;
    CK(cudaMalloc(&g, sizeof(float) * B * H * P));
    CK(cudaMalloc(&xbc, sizeof(float) * B * 4352));
    CK(cudaMalloc(&dt, sizeof(float) * B * H));
    CK(cudaMemset(xbc, 0, sizeof(float) * B * 4352));
    CK(cudaMemset(dt, 0, sizeof(float) * B * H));
    CK(cudaMalloc(&s32, sizeof(float) * ns * L));
    CK(cudaMalloc(&s16, 2 * ns * L));
    CK(cudaMemset(s32, 0, sizeof(float) * ns * L));
    CK(cudaMemset(s16, 0, 2 * ns * L));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int pass = 0; pass < 2; pass++) {
        for (int rep = 0; rep < 2; rep++) {
            CK(cudaEventRecord(e0));
            for (int l = 0; l < L; l++) {
                if (pass == 0)
                    mixlab_k<float><<<dim3(H * P / 8, B), 256>>>(g, xbc, dt, s32 + l * ns, H, P, N);
                else
                    mixlab_k<__nv_bfloat16><<<dim3(H * P / 8, B), 256>>>(g, xbc, dt, s16 + l * ns, H, P, N);
            }
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            const double us = ms * 1e3 / L, bytes = (double)ns * (pass ? 2 : 4) * 2;
            if (rep)
                printf("mix batch 16, %s state: %7.2f us per layer, %5.2f TB/s (state read + write)\n",
                       pass ? "bf16" : "f32", us, bytes / us * 1e-6);
        }
    }
}

/* ---- harness ----------------------------------------------------------------------------- */

struct shape {
    const char *name;
    int N, K;
};

static float *d_x, *d_y, *d_ref;
static __nv_bfloat16 **d_w;
static int ncopy;
static unsigned *d_sink;

typedef void (*launch_fn)(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K);

static double check(int M, int N)
{
    float *a = (float *)malloc(sizeof(float) * M * N), *b = (float *)malloc(sizeof(float) * M * N);
    CK(cudaMemcpy(a, d_y, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b, d_ref, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
    double mx = 0, err = 0;
    for (int i = 0; i < M * N; i++) {
        mx = fmax(mx, fabs(b[i]));
        if (!(fabs(a[i] - b[i]) <= err))
            err = isnan(a[i]) ? INFINITY : fabs(a[i] - b[i]);
    }
    free(a);
    free(b);
    return err / (mx > 0 ? mx : 1);
}

static void timeit(const char *what, launch_fn f, int M, const struct shape *s)
{
    CK(cudaMemset(d_y, 0xff, sizeof(float) * M * s->N));
    f(d_y, d_x, d_w[0], M, s->N, s->K);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    const double rel = check(M, s->N);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 20; i++)
        f(d_y, d_x, d_w[i % ncopy], M, s->N, s->K);
    const int reps = 200;
    CK(cudaEventRecord(e0));
    for (int i = 0; i < reps; i++)
        f(d_y, d_x, d_w[i % ncopy], M, s->N, s->K);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    const double us = ms * 1e3 / reps, bytes = (double)s->N * s->K * 2;
    printf("%-9s M=%-2d %-34s %8.2f us  %5.2f TB/s  err %.1e%s\n", s->name, M, what, us,
           bytes / us * 1e-6, rel, rel < 1e-4 ? "" : "  WRONG");
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

static int g_nw;

template <int MT, int U, bool PF, bool CONTIG>
static void tc_go(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    static bool attr;
    const size_t smem = (size_t)g_nw * 256 * 4;
    if (!attr) {
        CK(cudaFuncSetAttribute(tc_k<MT, U, PF, CONTIG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                64 * 1024));
        attr = true;
    }
    tc_k<MT, U, PF, CONTIG><<<(N + 15) / 16, g_nw * 32, smem>>>(y, x, w, M, N, K);
}

template <int M, int RPW, int U>
static void fma_go(float *y, const float *x, const __nv_bfloat16 *w, int M_, int N, int K)
{
    (void)M_;
    static bool attr;
    const size_t smem = (size_t)M * K * 4;
    if (!attr) {
        CK(cudaFuncSetAttribute(fma_k<M, RPW, U>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                200 * 1024));
        attr = true;
    }
    const int rows = g_nw * RPW;
    fma_k<M, RPW, U><<<(N + rows - 1) / rows, g_nw * 32, smem>>>(y, x, w, N, K);
}

static void ref_go(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    ref_k<<<(N + 7) / 8, 256>>>(y, x, w, M, N, K);
}

template <int U> static void rd_go(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    (void)y, (void)x, (void)M;
    const int64_t n16 = (int64_t)N * K * 2 / 16;
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    rd_k<U><<<sms * g_nw, 512>>>((const uint4 *)w, n16, d_sink);
}


static __nv_bfloat16 *d_xh, *d_xl;
template <int MT, int U, int MODE>
static void tc2_go(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    static bool attr;
    if (!attr) {
        CK(cudaFuncSetAttribute(tc2_k<MT, U, MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                64 * 1024));
        attr = true;
    }
    tc2_k<MT, U, MODE><<<(N + 15) / 16, g_nw * 32, (size_t)g_nw * 256 * 4>>>(y, x, d_xh, d_xl, w, M, N, K);
}

static void tc2_sweep(const struct shape *s)
{
    char what[80];
    const int nws[] = {4, 8, 16};
    presplit_k<<<(16 * 4096 + 255) / 256, 256>>>(d_xh, d_xl, d_x, 16 * 4096);
    for (int i = 0; i < 3; i++) {
        g_nw = nws[i];
#define T2(U, MODE)                                                                                \
    snprintf(what, sizeof what, "tc2 U=%d nw=%d mode=%s", U, g_nw,                                 \
             MODE == 0 ? "split" : MODE == 1 ? "hi-only(inexact)" : "presplit");                   \
    timeit(what, tc2_go<2, U, MODE>, 16, s)
        T2(4, 0);
        T2(4, 1);
        T2(4, 2);
        T2(8, 0);
        T2(8, 1);
        T2(8, 2);
#undef T2
    }
}


template <int U, int RT, bool ONEACC>
static void tc3_go(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    static bool attr;
    if (!attr) {
        CK(cudaFuncSetAttribute(tc3_k<U, RT, ONEACC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                64 * 1024));
        attr = true;
    }
    const int rows = 16 * RT;
    tc3_k<U, RT, ONEACC><<<(N + rows - 1) / rows, g_nw * 32, (size_t)g_nw * RT * 256 * 4>>>(y, x, w,
                                                                                         M, N, K);
}

static void tc3_sweep(const struct shape *s)
{
    char what[80];
    const int nws[] = {2, 4, 8};
    for (int i = 0; i < 3; i++) {
        g_nw = nws[i];
#define T3(U, RT, ONE)                                                                             \
    snprintf(what, sizeof what, "tc3 dbuf U=%d rt=%d nw=%d%s", U, RT, g_nw, ONE ? " 1acc" : "");   \
    timeit(what, tc3_go<U, RT, ONE>, 16, s)
        T3(2, 1, false);
        T3(2, 1, true);
        T3(4, 1, true);
        T3(2, 2, true);
        T3(1, 2, true);
#undef T3
    }
}

static void tc_sweep(int M, const struct shape *s)
{
    char what[80];
    const int nws[] = {4, 8, 16};
    for (int i = 0; i < 3; i++) {
        g_nw = nws[i];
#define TC(MT, U, PF, C)                                                                           \
    snprintf(what, sizeof what, "tc U=%d nw=%d%s%s", U, g_nw, PF ? " pf" : "", C ? " contig" : ""); \
    timeit(what, tc_go<MT, U, PF, C>, M, s)
        if (M <= 8) {
            TC(1, 4, true, false);
            TC(1, 4, false, false);
            TC(1, 8, false, false);
            TC(1, 4, false, true);
            TC(1, 8, false, true);
            TC(1, 8, true, true);
        } else {
            TC(2, 4, true, false);
            TC(2, 4, false, false);
            TC(2, 8, false, false);
            TC(2, 4, false, true);
            TC(2, 8, false, true);
            TC(2, 8, true, true);
        }
#undef TC
    }
}

static void fma_sweep(int M, const struct shape *s)
{
    char what[80];
    const int nws[] = {4, 8};
    for (int i = 0; i < 2; i++) {
        g_nw = nws[i];
#define FM(MM, R, U)                                                                               \
    snprintf(what, sizeof what, "fma rpw=%d U=%d nw=%d", R, U, g_nw);                              \
    timeit(what, fma_go<MM, R, U>, M, s)
        if (M == 1) {
            FM(1, 1, 8);
            FM(1, 2, 4);
            FM(1, 2, 8);
            FM(1, 4, 4);
        } else if (M == 2) {
            FM(2, 1, 8);
            FM(2, 2, 4);
            FM(2, 2, 8);
        }
#undef FM
    }
}

/* ---- the engine's own GEMV (kernels/cuda/decode.cu through omni_dec_gemv_cuda), with the
 * decode epilogues, per test flag (omni__dec_gemv_flags); linked with libomni.a --------- */
/* ---- tcb: weights streamed by the copy engine (cp.async.bulk into a ring of shared-memory
 * stages, mbarrier hand-off), stream-K over (16-column tile, 256-k chunk) units ------------- */
__device__ __forceinline__ uint32_t sm_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_init(uint64_t *b, int n)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sm_u32(b)), "r"(n) : "memory");
}
__device__ __forceinline__ void mb_expect(uint64_t *b, uint32_t tx)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sm_u32(b)), "r"(tx)
                 : "memory");
}
__device__ __forceinline__ void mb_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(sm_u32(b)) : "memory");
}
__device__ __forceinline__ void mb_wait(uint64_t *b, uint32_t ph)
{
    uint32_t ok;
    do {
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(ok)
                     : "r"(sm_u32(b)), "r"(ph)
                     : "memory");
    } while (!ok);
}
__device__ __forceinline__ void bulk_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *b)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     sm_u32(dst)),
                 "l"(src), "r"(bytes), "r"(sm_u32(b))
                 : "memory");
}
__device__ __forceinline__ void bar_named(int id, int n) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory"); }

/* is chunk c the first of some block's range [T b / G, T (b+1) / G) ? */
__device__ __forceinline__ bool tcb_starts(int64_t c, int64_t T, int64_t G)
{
    const int64_t b = (c * G + T - 1) / T;
    return b < G && T * b / G == c;
}

template <int KC, int S, int NC, bool MATH>
__global__ void __launch_bounds__((NC + 1) * 32) tcb_k(float *y, const float *x, const __nv_bfloat16 *w,
                                                       int M, int N, int K, float *ws, unsigned *cnt)
{
    constexpr int RS = KC * 2 + 64, STAGE = 16 * RS;
    extern __shared__ __align__(128) unsigned char smem[];
    uint64_t *full = reinterpret_cast<uint64_t *>(smem), *empty = full + S;
    unsigned char *ring = smem + 256;
    float *red = reinterpret_cast<float *>(ring + S * STAGE); /* [NC][256] */
    __shared__ int is_last;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t cpt = K / KC, tiles = (N + 15) / 16, T = tiles * cpt, G = gridDim.x;
    const int64_t c0 = T * blockIdx.x / G, c1 = T * (blockIdx.x + 1) / G;
    if (threadIdx.x == 0) {
        for (int i = 0; i < S; i++) {
            mb_init(&full[i], 1);
            mb_init(&empty[i], NC);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
    if (warp == NC) { /* the producer */
        if (lane == 0)
            for (int64_t c = c0; c < c1; c++) {
                const int i = (int)((c - c0) % S);
                const uint32_t ph = (uint32_t)((c - c0) / S) & 1;
                if (c - c0 >= S)
                    mb_wait(&empty[i], ph ^ 1);
                mb_expect(&full[i], 16 * KC * 2);
                const int64_t tt = c / cpt, kc = c % cpt;
                for (int r = 0; r < 16; r++) {
                    const int64_t row = min(tt * 16 + r, (int64_t)N - 1);
                    bulk_g2s(ring + i * STAGE + r * RS, w + row * K + kc * KC, KC * 2, &full[i]);
                }
            }
        return;
    }
    const float4 *xr[2];
    for (int mt = 0; mt < 2; mt++)
        xr[mt] = reinterpret_cast<const float4 *>(x + (int64_t)min(mt * 8 + g, M - 1) * K) + 2 * t;
    float ch[2][4], cl[2][4];
    for (int mt = 0; mt < 2; mt++)
        for (int q = 0; q < 4; q++)
            ch[mt][q] = cl[mt][q] = 0.0f;
    int64_t seg0 = c0; /* first chunk of the current tile segment */
    for (int64_t c = c0; c < c1; c++) {
        const int i = (int)((c - c0) % S);
        const uint32_t ph = (uint32_t)((c - c0) / S) & 1;
        const int64_t tt = c / cpt, kc = c % cpt;
        mb_wait(&full[i], ph);
        const unsigned char *st = ring + i * STAGE;
        if (MATH) {
#pragma unroll
            for (int sl = warp; sl < KC / 32; sl += NC) {
                const uint4 A = *reinterpret_cast<const uint4 *>(st + g * RS + sl * 64 + t * 16);
                const uint4 B = *reinterpret_cast<const uint4 *>(st + (g + 8) * RS + sl * 64 + t * 16);
                const int64_t s = kc * (KC / 32) + sl;
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    const float4 x0 = __ldg(xr[mt] + s * 8), x1 = __ldg(xr[mt] + s * 8 + 1);
                    uint32_t h0, l0, h1, l1, h2, l2, h3, l3;
                    split2(x0.x, x0.y, h0, l0);
                    split2(x0.z, x0.w, h1, l1);
                    split2(x1.x, x1.y, h2, l2);
                    split2(x1.z, x1.w, h3, l3);
                    mma16816(ch[mt], A.x, B.x, A.y, B.y, h0, h1);
                    mma16816(cl[mt], A.x, B.x, A.y, B.y, l0, l1);
                    mma16816(ch[mt], A.z, B.z, A.w, B.w, h2, h3);
                    mma16816(cl[mt], A.z, B.z, A.w, B.w, l2, l3);
                }
            }
        } else if (lane == 0 && st[warp] == 0x7f) {
            y[0] = 1.0f;
        }
        __syncwarp();
        if (lane == 0)
            mb_arrive(&empty[i]);
        if (kc != cpt - 1 && c != c1 - 1)
            continue;
        /* the end of a tile segment [seg0, c] */
        float *my = red + warp * 256;
        for (int mt = 0; mt < 2; mt++) {
            my[g * 16 + mt * 8 + 2 * t] = ch[mt][0] + cl[mt][0];
            my[g * 16 + mt * 8 + 2 * t + 1] = ch[mt][1] + cl[mt][1];
            my[(g + 8) * 16 + mt * 8 + 2 * t] = ch[mt][2] + cl[mt][2];
            my[(g + 8) * 16 + mt * 8 + 2 * t + 1] = ch[mt][3] + cl[mt][3];
            for (int q = 0; q < 4; q++)
                ch[mt][q] = cl[mt][q] = 0.0f;
        }
        bar_named(1, NC * 32);
        const bool whole = seg0 % cpt == 0 && kc == cpt - 1;
        const int64_t kseg = seg0 % cpt;
        for (int o = threadIdx.x; o < 256; o += NC * 32) {
            float acc = 0.0f;
            for (int wi = 0; wi < NC; wi++)
                acc += red[wi * 256 + o];
            const int ml = o & 15, nl = o >> 4;
            const int64_t n = tt * 16 + nl;
            if (whole) {
                if (ml < M && n < N)
                    y[ml * (int64_t)N + n] = acc;
            } else {
                __stcg(ws + (tt * cpt + kseg) * 256 + o, acc);
            }
        }
        if (!whole) {
            __threadfence();
            bar_named(1, NC * 32);
            if (threadIdx.x == 0) {
                int parts = 1;
                for (int64_t k = 1; k < cpt; k++)
                    parts += tcb_starts(tt * cpt + k, T, G);
                is_last = atomicAdd(cnt + tt, 1u) == (unsigned)parts - 1;
            }
            bar_named(1, NC * 32);
            if (is_last) {
                __threadfence();
                for (int o = threadIdx.x; o < 256; o += NC * 32) {
                    float acc = 0.0f;
                    for (int64_t k = 0; k < cpt; k++)
                        if (k == 0 || tcb_starts(tt * cpt + k, T, G))
                            acc += __ldcg(ws + (tt * cpt + k) * 256 + o);
                    const int ml = o & 15, nl = o >> 4;
                    const int64_t n = tt * 16 + nl;
                    if (ml < M && n < N)
                        y[ml * (int64_t)N + n] = acc;
                }
                if (threadIdx.x == 0)
                    cnt[tt] = 0;
            }
        }
        bar_named(1, NC * 32); /* red is rewritten by the next segment */
        seg0 = c + 1;
    }
}

static float *d_ws;
static unsigned *d_cnt;
static int g_bps; /* blocks per SM */
template <int KC, int S, int NC, bool MATH>
static void tcb_go(float *y, const float *x, const __nv_bfloat16 *w, int M, int N, int K)
{
    const size_t smem = 256 + (size_t)S * 16 * (KC * 2 + 64) + (size_t)NC * 256 * 4;
    static bool attr;
    if (!attr) {
        CK(cudaFuncSetAttribute(tcb_k<KC, S, NC, MATH>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
        attr = true;
    }
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    tcb_k<KC, S, NC, MATH><<<sms * g_bps, (NC + 1) * 32, smem>>>(y, x, w, M, N, K, d_ws, d_cnt);
}

static void tcb_sweep(const struct shape *s)
{
#define TCB(KC, S, NC, BPS, MATH)                                                                  \
    do {                                                                                           \
        char what[64];                                                                             \
        g_bps = BPS;                                                                               \
        snprintf(what, sizeof what, "tcb KC=%d S=%d nc=%d %d/SM%s", KC, S, NC, BPS,                \
                 MATH ? "" : " no-math");                                                          \
        timeit(what, tcb_go<KC, S, NC, MATH>, 16, s);                                              \
    } while (0)
    TCB(256, 8, 4, 2, false);
    TCB(256, 8, 4, 2, true);
    TCB(256, 8, 8, 2, true);
    TCB(256, 4, 4, 4, true);
    TCB(256, 6, 4, 3, true);
    TCB(256, 12, 8, 1, true);
    TCB(512, 4, 4, 2, true);
    TCB(512, 6, 8, 1, true);
    TCB(512, 3, 4, 3, true);
#undef TCB
}

/* cuBLAS at the decode shapes: x rounded to bf16 (M = 16) or stacked hi and lo (M = 32) */
#include <cublas_v2.h>
static void cublas_sweep(const struct shape *s)
{
    static cublasHandle_t h;
    if (!h && cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        printf("cublasCreate failed\n");
        return;
    }
    static __nv_bfloat16 *xb;
    if (!xb)
        CK(cudaMalloc(&xb, 2 * 32 * 4096));
    {
        float *hx = (float *)malloc(4 * 32 * 4096);
        for (int i = 0; i < 32 * 4096; i++)
            hx[i] = (float)((i * 2654435761u >> 8) & 0xffff) / 65536.0f - 0.5f;
        __nv_bfloat16 *hb = (__nv_bfloat16 *)malloc(2 * 32 * 4096);
        for (int i = 0; i < 32 * 4096; i++)
            hb[i] = __float2bfloat16(hx[i]);
        CK(cudaMemcpy(xb, hb, 2 * 32 * 4096, cudaMemcpyHostToDevice));
        free(hx);
        free(hb);
    }
    for (int M = 16; M <= 32; M += 16) {
        const float one = 1.0f, zero = 0.0f;
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        for (int i = 0; i < 20; i++)
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s->N, M, s->K, &one, d_w[i % ncopy], CUDA_R_16BF,
                         s->K, xb, CUDA_R_16BF, s->K, &zero, d_y, CUDA_R_32F, s->N, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT);
        CK(cudaEventRecord(e0));
        for (int i = 0; i < 200; i++)
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s->N, M, s->K, &one, d_w[i % ncopy], CUDA_R_16BF,
                         s->K, xb, CUDA_R_16BF, s->K, &zero, d_y, CUDA_R_32F, s->N, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = ms * 1e3 / 200;
        printf("%-9s M=%-2d %-34s %8.2f us  %5.2f TB/s\n", s->name, M, "cublasGemmEx bf16 x bf16", us,
               (double)s->N * s->K * 2 / us * 1e-6);
    }
}

#ifdef LAB_PROD
#include "omni/cuda.h"
#include "../../core/cuda_impl.h"
#include "../../kernels/decode.h"

static float *dalloc_rand(int64_t n, float scale, uint64_t *st)
{
    float *h = (float *)malloc(sizeof(float) * n), *d;
    for (int64_t i = 0; i < n; i++) {
        *st ^= *st << 13, *st ^= *st >> 7, *st ^= *st << 17;
        h[i] = ((*st >> 40) / 8388608.0f - 1.0f) * scale;
    }
    CK(cudaMalloc(&d, sizeof(float) * n));
    CK(cudaMemcpy(d, h, sizeof(float) * n, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

struct pcall {
    float *y;
    const float *x;
    const __nv_bfloat16 *w;
    int64_t M, N, K;
    struct omni_dec_epi e;
};

static int g_bf16;
static void pgo2(const struct pcall *c)
{
    omni_dec_gemv_cuda(c->y, c->N, c->x, c->K, c->w, g_bf16, NULL, c->M, c->N, c->K, 1.0f,
                       c->e.cout || c->e.part ? &c->e : NULL);
}

/* `gemv_lab mixop`: the engine's decode_mix (omni_dec_mix_cuda) at batch 16, OmniMamba's
 * head shape, 48 layers back to back (a state per layer, more than L2 holds), per state
 * dtype and channels per partial sum (a block: 8 warps x chunk/8 state rows). A 64-channel
 * block (8 rows per warp) was tried: the same time as 32 (12.63 against 12.68 us with an
 * f16 state, tests/results/cuda/s4-NVIDIA-H200/run7-lab-mixop.txt) and was not kept. */
static void mixop_main(void)
{
    struct omni_error err = {0};
    const struct omni_device dev = {OMNI_DEVICE_CUDA, 0};
    if (omni__cuda_begin(&err, "gemv_lab", dev)) {
        printf("omni__cuda_begin: %s\n", err.msg);
        return;
    }
    cudaStream_t st = (cudaStream_t)omni_cuda_stream(dev);
    uint64_t seed = 7654321ull;
    const int L = 48;
    const int64_t B = 16, H = 64, P = 64, G = 1, N = 128, E = H * P, Cd = E + 2 * G * N;
    const int64_t ns = B * H * P * N;
    float *zx = dalloc_rand(B * (E + Cd + H), 1.0f, &seed), *xbc = dalloc_rand(B * Cd, 1.0f, &seed);
    float *A = dalloc_rand(H, 1.0f, &seed), *Dk = dalloc_rand(H, 1.0f, &seed);
    float *dtb = dalloc_rand(H, 1.0f, &seed), *gnw = dalloc_rand(E, 1.0f, &seed);
    float *g, *part;
    void *state;
    CK(cudaMalloc(&g, sizeof(float) * B * E));
    CK(cudaMalloc(&part, sizeof(float) * B * E / 8));
    CK(cudaMalloc(&state, sizeof(float) * ns * L));
    CK(cudaMemset(state, 0, sizeof(float) * ns * L));
    CK(cudaMemset(A, 0xbf, sizeof(float) * H)); /* A < 0 */
    const struct omni_dec_dims d = {B, H, P, G, N};
    static const int dts[3] = {OMNI_DTYPE_F32, OMNI_DTYPE_F16, OMNI_DTYPE_BF16};
    static const char *dname[3] = {"f32", "f16", "bf16"};
    static const int64_t chunks[2] = {16, 32};
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int di = 0; di < 3; di++)
        for (int ci = 0; ci < 2; ci++) {
            const int64_t np = E / chunks[ci], sz = dts[di] == OMNI_DTYPE_F32 ? 4 : 2;
            float best = 1e30f;
            for (int rep = 0; rep < 6; rep++) {
                CK(cudaEventRecord(e0, st));
                for (int l = 0; l < L; l++)
                    omni_dec_mix_cuda(g, E, part, np, np, zx, E + Cd + H, xbc, Cd, A, Dk, dtb, gnw,
                                      (char *)state + (size_t)l * ns * sz, dts[di], &d);
                CK(cudaEventRecord(e1, st));
                CK(cudaEventSynchronize(e1));
                float ms = 0.0f;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (rep && ms < best)
                    best = ms;
            }
            const double us = 1e3 * best / L;
            printf("mixop batch 16, %-4s state, %2lld channels per partial: %6.2f us per layer, "
                   "%5.2f TB/s (state read + write)\n",
                   dname[di], (long long)chunks[ci], us, 2.0 * ns * sz / (us * 1e6));
        }
    if (omni__cuda_end(&err, "gemv_lab"))
        printf("cuda error: %s\n", err.msg);
}

static void prod_main(void)
{
    struct omni_error err = {0};
    const struct omni_device dev = {OMNI_DEVICE_CUDA, 0};
    g_bf16 = OMNI_DTYPE_BF16;
    if (omni__cuda_begin(&err, "gemv_lab", dev)) {
        printf("omni__cuda_begin: %s\n", err.msg);
        return;
    }
    cudaStream_t st = (cudaStream_t)omni_cuda_stream(dev);
    uint64_t seed = 1234567ull;
    const int L = 48;
    const int64_t nin = 8512LL * 2048, nout = 2048LL * 4096;
    __nv_bfloat16 *win, *wout;
    CK(cudaMalloc(&win, nin * 2 * L));
    CK(cudaMalloc(&wout, nout * 2 * L));
    for (int l = 0; l < L; l++) {
        CK(cudaMemcpy(win + l * nin, d_w[0], nin * 2, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(wout + l * nout, d_w[1], nout * 2, cudaMemcpyDeviceToDevice));
    }
    float *xin = dalloc_rand(16 * 2048, 1.0f, &seed), *g = dalloc_rand(16 * 4096, 1.0f, &seed);
    float *zx, *yo, *cout;
    CK(cudaMalloc(&zx, sizeof(float) * 16 * 8512));
    CK(cudaMalloc(&yo, sizeof(float) * 16 * 2048));
    CK(cudaMalloc(&cout, sizeof(float) * 16 * 4352));
    float *u = dalloc_rand(16 * 8, 1.0f, &seed), *lb = dalloc_rand(8512 * 8, 0.1f, &seed);
    float *cstate = dalloc_rand(16 * 4352 * 4, 1.0f, &seed), *cw = dalloc_rand(4352 * 4, 0.5f, &seed);
    float *cb = dalloc_rand(4352, 0.5f, &seed), *part = dalloc_rand(16 * 512, 1.0f, &seed);
    CK(cudaMemset(part, 0x3f, sizeof(float) * 16 * 512)); /* positive partial sums */
    struct omni_dec_epi ein = {}, eout = {};
    ein.u = u, ein.lb = lb, ein.ldu = 8, ein.R = 8, ein.lr_scale = 2.0f;
    ein.cout = cout, ein.cstate = cstate, ein.cw = cw, ein.cbias = cb, ein.ldco = 4352;
    ein.c0 = 4096, ein.C = 4352, ein.K = 4;
    ein.css.sb = 4352 * 4, ein.css.sc = 4, ein.css.sk = 1;
    eout.part = part, eout.ldp = 512, eout.nparts = 512, eout.count = 4096, eout.eps = 1e-5f;
    static const int flags[] = {0, 1, 2, 3, 4, 6};
    static const char *fname[] = {"default", "no-pdl", "no-prewait", "no-pdl,no-prewait",
                                  "tc-contig", "tc-contig,no-prewait"};
    const int Ms[] = {1, 2, 16};
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    /* (1) correctness of each flag set against the reference kernel, no epilogue */
    for (int mi = 0; mi < 3; mi++)
        for (int fi = 0; fi < 6; fi++) {
            const int M = Ms[mi];
            omni__dec_gemv_flags(flags[fi]);
            struct shape s = {"in_proj", 8512, 2048};
            ref_go(d_ref, d_x, win, M, 8512, 2048);
            CK(cudaDeviceSynchronize());
            CK(cudaMemset(d_y, 0xff, sizeof(float) * M * 8512));
            struct pcall c = {d_y, d_x, win, M, 8512, 2048, {}};
            pgo2(&c);
            CK(cudaStreamSynchronize(st));
            const double rel = check(M, s.N);
            if (rel > 1e-4)
                printf("prod in_proj M=%d flags %s: err %.1e WRONG\n", M, fname[fi], rel);
        }
    /* (2) a graph of 48 layers x (in_proj with LoRA + conv, out_proj with row scale) */
    for (int mi = 0; mi < 3; mi++)
        for (int fi = 0; fi < 6; fi++) {
            const int M = Ms[mi];
            if (M <= 2 && (flags[fi] & 4))
                continue;
            omni__dec_gemv_flags(flags[fi]);
            cudaGraph_t gr;
            cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
            for (int l = 0; l < L; l++) {
                struct pcall a = {zx, xin, win + l * nin, M, 8512, 2048, ein};
                struct pcall b = {yo, g, wout + l * nout, M, 2048, 4096, eout};
                pgo2(&a);
                pgo2(&b);
            }
            CK(cudaStreamEndCapture(st, &gr));
            CK(cudaGraphInstantiate(&ge, gr, 0));
            CK(cudaGraphLaunch(ge, st));
            CK(cudaGraphLaunch(ge, st));
            CK(cudaEventRecord(e0, st));
            const int reps = 10;
            for (int r = 0; r < reps; r++)
                CK(cudaGraphLaunch(ge, st));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            const double us = ms * 1e3 / reps / L;
            printf("graph 48 x (in_proj+LoRA+conv, out_proj+rowscale) M=%-2d %-22s %7.2f us/layer  "
                   "%5.2f TB/s\n",
                   M, fname[fi], us, (double)(nin + nout) * 2 / us * 1e-6);
            CK(cudaGraphExecDestroy(ge));
            CK(cudaGraphDestroy(gr));
        }
    /* (3) the read-only ceiling for the same bytes: 96 kernels per graph */
    {
        cudaGraph_t gr;
        cudaGraphExec_t ge;
        g_nw = 4;
        CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
        int sms = 132;
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
        for (int l = 0; l < L; l++) {
            rd_k<4><<<sms * 4, 512, 0, st>>>((const uint4 *)(win + l * nin), nin * 2 / 16, d_sink);
            rd_k<4><<<sms * 4, 512, 0, st>>>((const uint4 *)(wout + l * nout), nout * 2 / 16, d_sink);
        }
        CK(cudaStreamEndCapture(st, &gr));
        CK(cudaGraphInstantiate(&ge, gr, 0));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(e0, st));
        for (int r = 0; r < 10; r++)
            CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = ms * 1e3 / 10 / L;
        printf("graph 48 x read-only (same bytes, 2 kernels/layer)          %7.2f us/layer  %5.2f TB/s\n",
               us, (double)(nin + nout) * 2 / us * 1e-6);
    }
    omni__dec_gemv_flags(0);
}
#endif

int main(int argc, char **argv)
{
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    printf("gemv_lab on %s (%d SMs, L2 %d MB)\n", p.name, p.multiProcessorCount,
           p.l2CacheSize >> 20);
    const struct shape shapes[] = {{"in_proj", 8512, 2048}, {"out_proj", 2048, 4096},
                                   {"text_head", 50288, 2048}, {"img_head", 16384, 2048}};
    const int Ms[] = {1, 2, 16};
    const int64_t maxw = (int64_t)50288 * 2048;
    CK(cudaMalloc(&d_x, sizeof(float) * 16 * 4096));
    CK(cudaMalloc(&d_y, sizeof(float) * 16 * 50288));
    CK(cudaMalloc(&d_ref, sizeof(float) * 16 * 50288));
    CK(cudaMalloc(&d_sink, 4096 * 4));
    ncopy = 8;
    d_w = (__nv_bfloat16 **)malloc(sizeof(*d_w) * ncopy);
    {
        uint16_t *h = (uint16_t *)malloc(maxw * 2);
        uint64_t st = 88172645463325252ull;
        for (int c = 0; c < ncopy; c++) {
            for (int64_t i = 0; c == 0 && i < maxw; i++) {
                st ^= st << 13, st ^= st >> 7, st ^= st << 17;
                const float v = ((st >> 40) / 16777216.0f - 0.5f) * 0.05f;
                uint32_t u;
                memcpy(&u, &v, 4);
                h[i] = (uint16_t)(u >> 16);
            }
            CK(cudaMalloc(&d_w[c], maxw * 2));
            CK(cudaMemcpy(d_w[c], h, maxw * 2, cudaMemcpyHostToDevice));
        }
        float *hx = (float *)malloc(sizeof(float) * 16 * 4096);
        for (int i = 0; i < 16 * 4096; i++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            hx[i] = (st >> 40) / 8388608.0f - 1.0f;
        }
        CK(cudaMemcpy(d_x, hx, sizeof(float) * 16 * 4096, cudaMemcpyHostToDevice));
        free(h);
        free(hx);
    }
#ifdef LAB_PROD
    if (argc > 1 && !strcmp(argv[1], "prod")) {
        prod_main();
        return 0;
    }
#endif
#ifdef LAB_PROD
    if (argc > 1 && !strcmp(argv[1], "mixop")) {
        mixop_main();
        return 0;
    }
#endif
    if (argc > 1 && !strcmp(argv[1], "tcb")) {
        CK(cudaMalloc(&d_ws, sizeof(float) * 256 * 50288 / 16 * 16));
        CK(cudaMalloc(&d_cnt, sizeof(unsigned) * 50288 / 16 + 64));
        CK(cudaMemset(d_cnt, 0, sizeof(unsigned) * 50288 / 16 + 64));
        for (int si = 0; si < 4; si++) {
            ref_go(d_ref, d_x, d_w[0], 16, shapes[si].N, shapes[si].K);
            CK(cudaDeviceSynchronize());
            tcb_sweep(&shapes[si]);
            cublas_sweep(&shapes[si]);
        }
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "mix")) {
        mix_main();
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "m16")) {
        CK(cudaMalloc(&d_xh, 2 * 16 * 4096));
        CK(cudaMalloc(&d_xl, 2 * 16 * 4096));
        for (int si = 0; si < 4; si++) {
            ref_go(d_ref, d_x, d_w[0], 16, shapes[si].N, shapes[si].K);
            CK(cudaDeviceSynchronize());
            tc2_sweep(&shapes[si]);
            tc3_sweep(&shapes[si]);
        }
        return 0;
    }
    (void)argc, (void)argv;
    /* the ceiling: read the same bytes with no math */
    for (int si = 0; si < 4; si++) {
        for (int nw = 1; nw <= 4; nw *= 2) {
            char what[64];
            g_nw = nw;
            snprintf(what, sizeof what, "read-only %d blocks/SM U=4", nw);
            ref_go(d_ref, d_x, d_w[0], 1, shapes[si].N, shapes[si].K);
            ref_go(d_y, d_x, d_w[0], 1, shapes[si].N, shapes[si].K);
            timeit(what, rd_go<4>, 1, &shapes[si]);
        }
    }
    for (int mi = 0; mi < 3; mi++)
        for (int si = 0; si < 4; si++) {
            const int M = Ms[mi];
            if (si >= 2 && M == 2)
                continue;
            ref_go(d_ref, d_x, d_w[0], M, shapes[si].N, shapes[si].K);
            CK(cudaDeviceSynchronize());
            tc_sweep(M, &shapes[si]);
            fma_sweep(M, &shapes[si]);
        }
    return 0;
}
