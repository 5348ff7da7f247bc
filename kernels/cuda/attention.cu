/* kernels/cuda/attention.cu - CUDA twin of kernels/cpu/attention.c: scaled
 * dot-product attention without a mask, fused (flash-attention style, f32):
 *
 *   out[b,i,hP:hP+P] = sum_j softmax_j(scale * q_i . k_j) v_j
 *
 * One block of 256 threads per (b, h, 64 query rows); the query tile stays in
 * shared memory, keys and values stream through in tiles of 32. Four threads
 * share a query row: each forms 8 of the row's 32 scores per tile and owns
 * the output columns p = lane4 + 4 i. The row maximum m and sum l are kept
 * online (scores rescaled by exp(m_old - m_new)); the score tile never leaves
 * shared memory. Finally out = acc / l. Layouts as kernels/attention.h
 * (q, k, v strided (B,S,H*P) views with a contiguous last dim, out
 * contiguous). Heads up to P = 256.
 *
 * Wider heads (the VQ decoder's single 512-wide head over 256 positions)
 * take a materialised path instead: per head, scores = scale Q Kᵀ for all
 * batches by one strided-batched cuBLAS GEMM (f32, no TF32 unless allowed)
 * into the prefill workspace (B S S floats), the row softmax kernel, then
 * out = P V by a second batched GEMM.
 *
 * 16-bit precision (a.precision F16/BF16, P <= 128): attention_mma_k, a
 * tensor-core flash kernel. NW warps per block, 16 query rows per warp;
 * keys and values stream through shared memory in tiles of 64 (read as f32
 * into registers one tile ahead, then bias added, rounded to the 16-bit type
 * and stored). Per tile each warp forms
 * its 16 x 64 scores with mma.sync m16n8k16 (f32 accumulation), scales them
 * by scale*log2(e), updates the running maxima (exp2), rounds the weights
 * exp2(s - m) to the 16-bit type (their sum l uses the rounded values) and
 * feeds them, still in registers, as the A operand of O += P V (V fragments
 * by ldmatrix.trans). Head dims are padded with zeros to PK = 32, 64, 80 or
 * 128. The CPU twin emulates these roundings (kernels/cpu/attention.c). */
#include <cublas_v2.h>

#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "common.cuh"
#include "extra.h"
#include "sample.h"

/* out[i] = v in the out dtype */
__device__ __forceinline__ void st_out(void *out, int dtype, int64_t i, float v)
{
    if (dtype == OMNI_DTYPE_BF16)
        ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(v);
    else if (dtype == OMNI_DTYPE_F16)
        ((__half *)out)[i] = __float2half_rn(v);
    else
        ((float *)out)[i] = v;
}

#define AQ 64 /* query rows per block */
#define AK 32 /* keys per tile */

template <int PT> /* PT = output columns per thread = ceil(P / 4) */
__global__ void __launch_bounds__(256) attention_k(struct omni_attention_args a)
{
    extern __shared__ float smem[];
    const int64_t P = a.P, Pp = P + 1; /* padded rows: no bank conflicts */
    float *Qs = smem;              /* [AQ][Pp] */
    float *Ks = Qs + AQ * Pp;      /* [AK][Pp] */
    float *Vs = Ks + AK * Pp;      /* [AK][Pp] */
    float *Ss = Vs + AK * Pp;      /* [AQ][AK + 1] */
    const int64_t nq = (a.S + AQ - 1) / AQ;
    const int64_t qt = blockIdx.x % nq, bh = blockIdx.x / nq, h = bh % a.H, b = bh / a.H;
    const int tid = threadIdx.x, r = tid >> 2, l4 = tid & 3;
    const int64_t q0 = qt * AQ;
    for (int64_t i = tid; i < AQ * P; i += 256) {
        const int64_t rr = i / P, p = i % P, qi = q0 + rr;
        Qs[rr * Pp + p] = qi < a.S ? (a.q[b * a.q_bs + qi * a.q_rs + h * P + p] +
                                      (a.q_bias ? a.q_bias[h * P + p] : 0.0f)) * a.scale
                                   : 0.0f;
    }
    float acc[PT];
#pragma unroll
    for (int i = 0; i < PT; i++)
        acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t k0 = 0; k0 < a.S; k0 += AK) {
        __syncthreads();
        for (int64_t i = tid; i < AK * P; i += 256) {
            const int64_t j = i / P, p = i % P, kj = k0 + j;
            const bool in = kj < a.S;
            Ks[j * Pp + p] = in ? a.k[b * a.k_bs + kj * a.k_rs + h * P + p] +
                                      (a.k_bias ? a.k_bias[h * P + p] : 0.0f)
                                : 0.0f;
            Vs[j * Pp + p] = in ? a.v[b * a.v_bs + kj * a.v_rs + h * P + p] +
                                      (a.v_bias ? a.v_bias[h * P + p] : 0.0f)
                                : 0.0f;
        }
        __syncthreads();
        /* 8 scores of row r: keys j = l4*8 .. l4*8+7 */
        float s[8];
#pragma unroll
        for (int jj = 0; jj < 8; jj++)
            s[jj] = 0.0f;
        for (int64_t p = 0; p < P; p++) {
            const float qv = Qs[r * Pp + p];
#pragma unroll
            for (int jj = 0; jj < 8; jj++)
                s[jj] += qv * Ks[(l4 * 8 + jj) * Pp + p];
        }
        float mx = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < 8; jj++) {
            if (k0 + l4 * 8 + jj >= a.S)
                s[jj] = -INFINITY;
            mx = fmaxf(mx, s[jj]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m, mx);
        const float corr = expf(m - mn); /* m = -inf on the first tile: 0 */
        float ls = 0.0f;
#pragma unroll
        for (int jj = 0; jj < 8; jj++) {
            const float e = expf(s[jj] - mn);
            Ss[r * (AK + 1) + l4 * 8 + jj] = e;
            ls += e;
        }
        ls += __shfl_xor_sync(0xffffffffu, ls, 1);
        ls += __shfl_xor_sync(0xffffffffu, ls, 2);
        l = l * corr + ls;
        m = mn;
        __syncwarp();
#pragma unroll
        for (int i = 0; i < PT; i++)
            acc[i] *= corr;
        for (int j = 0; j < AK; j++) {
            const float w = Ss[r * (AK + 1) + j];
#pragma unroll
            for (int i = 0; i < PT; i++) {
                const int64_t p = l4 + 4 * i;
                if (p < P)
                    acc[i] += w * Vs[j * Pp + p];
            }
        }
    }
    const int64_t qi = q0 + r;
    if (qi < a.S) {
        const float inv = 1.0f / l;
        const int64_t o = (b * a.S + qi) * a.H * P + h * P;
#pragma unroll
        for (int i = 0; i < PT; i++) {
            const int64_t p = l4 + 4 * i;
            if (p < P)
                st_out(a.out, a.out_dtype, o + p, acc[i] * inv);
        }
    }
}

template <int PT> static void attention_launch(const struct omni_attention_args *a)
{
    const size_t smem = (size_t)((AQ + 2 * AK) * (a->P + 1) + AQ * (AK + 1)) * sizeof(float);
    /* the opt-in above 48 KB, once per instantiation, for its largest P */
    const size_t smax = (size_t)((AQ + 2 * AK) * (4 * PT + 1) + AQ * (AK + 1)) * sizeof(float);
    static int raised[64]; /* the attribute is per device */
    int dev = 0;
    if (OMNI_CUDA_CHECK(cudaGetDevice(&dev)))
        return;
    int *r = dev >= 0 && dev < 64 ? &raised[dev] : nullptr;
    if (smax > 48 * 1024 && !(r && __atomic_load_n(r, __ATOMIC_ACQUIRE))) {
        if (OMNI_CUDA_CHECK(cudaFuncSetAttribute(attention_k<PT>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)smax)))
            return;
        if (r)
            __atomic_store_n(r, 1, __ATOMIC_RELEASE);
    }
    const int64_t nq = (a->S + AQ - 1) / AQ;
    OMNI_LAUNCH(attention_k<PT>, (unsigned)(a->B * a->H * nq), 256, smem, *a);
}

static void attention_wide(const struct omni_attention_args *a)
{
    const int64_t B = a->B, S = a->S, P = a->P, HP = a->H * a->P;
    if (a->q_bias || a->k_bias || a->v_bias ||
        (a->out_dtype != 0 && a->out_dtype != OMNI_DTYPE_F32)) {
        omni__cuda_fail(__FILE__, __LINE__,
                        "attention with heads wider than 256 takes no biases and writes f32 only");
        return;
    }
    if (S > INT32_MAX / 2 || HP > INT32_MAX || a->q_rs > INT32_MAX || a->k_rs > INT32_MAX ||
        a->v_rs > INT32_MAX) {
        omni__cuda_fail(__FILE__, __LINE__, "attention dims exceed cuBLAS's int range");
        return;
    }
    cublasHandle_t hd = omni__cuda_blas();
    if (!hd)
        return;
    float *sc = (float *)omni__cuda_workspace((size_t)(B * S * S) * sizeof(float));
    if (!sc)
        return;
    const cublasComputeType_t ct = omni__cuda_allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float zero = 0.0f, one = 1.0f, scale = a->scale;
    for (int64_t h = 0; h < a->H; h++) {
        /* sc[b][i][j] = scale * q_i . k_j: column-major (S_j x S_i) = K^T Q */
        if (OMNI_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                hd, CUBLAS_OP_T, CUBLAS_OP_N, (int)S, (int)S, (int)P, &scale, a->k + h * P, CUDA_R_32F,
                (int)a->k_rs, a->k_bs, a->q + h * P, CUDA_R_32F, (int)a->q_rs, a->q_bs, &zero, sc,
                CUDA_R_32F, (int)S, S * S, (int)B, ct, CUBLAS_GEMM_DEFAULT)))
            return;
        omni_softmax_cuda(sc, S, sc, S, B * S, S);
        /* out[b][i][hP + p] = sum_j sc[b][i][j] v_j[p]: column-major (P x S_i) = V sc */
        if (OMNI_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                hd, CUBLAS_OP_N, CUBLAS_OP_N, (int)P, (int)S, (int)S, &one, a->v + h * P, CUDA_R_32F,
                (int)a->v_rs, a->v_bs, sc, CUDA_R_32F, (int)S, S * S, &zero, (float *)a->out + h * P,
                CUDA_R_32F, (int)HP, S * HP, (int)B, ct, CUBLAS_GEMM_DEFAULT)))
            return;
    }
}

/* ---- 16-bit tensor-core path ------------------------------------------------------------- */

#define MK 64 /* keys per tile */

__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __nv_bfloat16 *)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __half *)
{
    __half2 v = __floats2half2_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}
/* the sum of the two values packed in u */
__device__ __forceinline__ float sum2(uint32_t u, const __nv_bfloat16 *)
{
    __nv_bfloat162 v;
    memcpy(&v, &u, 4);
    return __low2float(v) + __high2float(v);
}
__device__ __forceinline__ float sum2(uint32_t u, const __half *)
{
    __half2 v;
    memcpy(&v, &u, 4);
    return __low2float(v) + __high2float(v);
}

/* c (16x8 f32) += a (16x16, row) b (16x8, col) */
__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1,
                                         const __nv_bfloat16 *)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1,
                                         const __half *)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t *r, const void *p)
{
    const unsigned addr = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ uint32_t lds32(const void *p) { return *(const uint32_t *)p; }

/* A tile of MK rows of src (rows r0.., columns 0..P of a row stride rs),
 * fetched raw into registers: thread tid owns the column pair c = 2 (tid %
 * HP) of rows tid / HP + RPP j (threads past RPP * HP idle). The loads have
 * no consumer until store_tile, so all of them (and, one tile ahead, the
 * whole next tile) are in flight together. */
template <int PK, int NT> struct tile_regs {
    static constexpr int HP = PK / 2, RPP = NT / HP, IT = (MK + RPP - 1) / RPP;
    float x0[IT], x1[IT];
};

template <int PK, int NT>
__device__ __forceinline__ void fetch_tile(tile_regs<PK, NT> &t, const float *src, int64_t rs,
                                           int64_t r0, int64_t S, int64_t P, int tid)
{
    typedef tile_regs<PK, NT> TR;
    const int c = (tid % TR::HP) * 2, rt = tid / TR::HP;
#pragma unroll
    for (int j = 0; j < TR::IT; j++) {
        const int r = rt + j * TR::RPP;
        const int64_t row = r0 + r;
        float x0 = 0.0f, x1 = 0.0f;
        if (rt < TR::RPP && r < MK && row < S) {
            const float *sp = src + row * rs;
            if (c < P)
                x0 = sp[c];
            if (c + 1 < P)
                x1 = sp[c + 1];
        }
        t.x0[j] = x0;
        t.x1[j] = x1;
    }
}

/* dst[r][c] = round(fetched + bias pair (b0, b1)), row stride PK + 8 (rows
 * past S hold the bias: their keys are masked, their weights 0) */
template <typename T, int PK, int NT>
__device__ __forceinline__ void store_tile(T *dst, const tile_regs<PK, NT> &t, float b0, float b1,
                                           int tid)
{
    typedef tile_regs<PK, NT> TR;
    constexpr int LD = PK + 8;
    const int c = (tid % TR::HP) * 2, rt = tid / TR::HP;
#pragma unroll
    for (int j = 0; j < TR::IT; j++) {
        const int r = rt + j * TR::RPP;
        if (rt < TR::RPP && r < MK)
            *(uint32_t *)(dst + r * LD + c) = pack2(t.x0[j] + b0, t.x1[j] + b1, (const T *)0);
    }
}

/* this thread's bias pair (zeros past P or without a bias) */
__device__ __forceinline__ void bias_pair(const float *bias, int c, int64_t P, float *b0, float *b1)
{
    *b0 = bias && c < P ? bias[c] : 0.0f;
    *b1 = bias && c + 1 < P ? bias[c + 1] : 0.0f;
}

template <typename T, int PK, int NW>
__global__ void __launch_bounds__(NW * 32) attention_mma_k(struct omni_attention_args a, float sl2)
{
    constexpr int LD = PK + 8, NT = NW * 32, TQ = NW * 16;
    static_assert(TQ <= 2 * MK, "the query tile is staged in the key and value tiles");
    __shared__ __align__(16) T sm[2 * MK * LD]; /* the query tile first, then keys and values */
    T *const Ks = sm, *const Vs = sm + MK * LD;
    const T *tag = (const T *)0;
    const int64_t nq = (a.S + TQ - 1) / TQ;
    const int64_t qt = blockIdx.x % nq, bh = blockIdx.x / nq, h = bh % a.H, b = bh / a.H;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int64_t P = a.P, S = a.S, q0 = qt * TQ;

    tile_regs<PK, NT> kr, vr;
    const int cpair = (tid % (PK / 2)) * 2;
    {
        const float *qs = a.q + b * a.q_bs + h * P;
        float b0, b1;
        bias_pair(a.q_bias ? a.q_bias + h * P : NULL, cpair, P, &b0, &b1);
#pragma unroll
        for (int part = 0; part < TQ / MK; part++) {
            fetch_tile<PK, NT>(kr, qs, a.q_rs, q0 + part * MK, S, P, tid);
            store_tile<T, PK, NT>(sm + part * MK * LD, kr, b0, b1, tid);
        }
    }
    __syncthreads();
    uint32_t qa[PK / 16][4];
    {
        const T *r0 = sm + (warp * 16 + g) * LD + 2 * t, *r1 = r0 + 8 * LD;
#pragma unroll
        for (int kk = 0; kk < PK / 16; kk++) {
            qa[kk][0] = lds32(r0 + kk * 16);
            qa[kk][1] = lds32(r1 + kk * 16);
            qa[kk][2] = lds32(r0 + kk * 16 + 8);
            qa[kk][3] = lds32(r1 + kk * 16 + 8);
        }
    }
    float o[PK / 8][4];
#pragma unroll
    for (int i = 0; i < PK / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    float kb0, kb1, vb0, vb1;
    bias_pair(a.k_bias ? a.k_bias + h * P : NULL, cpair, P, &kb0, &kb1);
    bias_pair(a.v_bias ? a.v_bias + h * P : NULL, cpair, P, &vb0, &vb1);
    const float *ksrc = a.k + b * a.k_bs + h * P, *vsrc = a.v + b * a.v_bs + h * P;
    fetch_tile<PK, NT>(kr, ksrc, a.k_rs, 0, S, P, tid);
    fetch_tile<PK, NT>(vr, vsrc, a.v_rs, 0, S, P, tid);
    for (int64_t k0 = 0; k0 < S; k0 += MK) {
        __syncthreads(); /* the previous tile (or the query tile) is consumed */
        store_tile<T, PK, NT>(Ks, kr, kb0, kb1, tid);
        store_tile<T, PK, NT>(Vs, vr, vb0, vb1, tid);
        __syncthreads();
        if (k0 + MK < S) { /* the next tile's loads fly while this one is computed */
            fetch_tile<PK, NT>(kr, ksrc, a.k_rs, k0 + MK, S, P, tid);
            fetch_tile<PK, NT>(vr, vsrc, a.v_rs, k0 + MK, S, P, tid);
        }
        float s[MK / 8][4];
#pragma unroll
        for (int nb = 0; nb < MK / 8; nb++)
            s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < PK / 16; kk++)
#pragma unroll
            for (int nb = 0; nb < MK / 8; nb++) {
                const T *kr = Ks + (nb * 8 + g) * LD + kk * 16 + 2 * t;
                mma16816(s[nb], qa[kk], lds32(kr), lds32(kr + 8), tag);
            }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < MK / 8; nb++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const bool in = k0 + nb * 8 + 2 * t + e < S;
                s[nb][e] = in ? s[nb][e] * sl2 : -INFINITY;
                s[nb][2 + e] = in ? s[nb][2 + e] * sl2 : -INFINITY;
                mx0 = fmaxf(mx0, s[nb][e]);
                mx1 = fmaxf(mx1, s[nb][2 + e]);
            }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1); /* finite: key k0 exists */
        const float c0 = exp2f(m0 - mn0), c1 = exp2f(m1 - mn1); /* 0 on the first tile */
        m0 = mn0, m1 = mn1;
        l0 *= c0, l1 *= c1;
#pragma unroll
        for (int i = 0; i < PK / 8; i++)
            o[i][0] *= c0, o[i][1] *= c0, o[i][2] *= c1, o[i][3] *= c1;
        uint32_t pa[MK / 16][4];
#pragma unroll
        for (int nb = 0; nb < MK / 8; nb++) {
            const uint32_t w0 = pack2(exp2f(s[nb][0] - mn0), exp2f(s[nb][1] - mn0), tag);
            const uint32_t w1 = pack2(exp2f(s[nb][2] - mn1), exp2f(s[nb][3] - mn1), tag);
            l0 += sum2(w0, tag);
            l1 += sum2(w1, tag);
            pa[nb / 2][(nb & 1) * 2] = w0;
            pa[nb / 2][(nb & 1) * 2 + 1] = w1;
        }
#pragma unroll
        for (int kc = 0; kc < MK / 16; kc++)
#pragma unroll
            for (int np = 0; np < PK / 16; np++) {
                uint32_t bv[4];
                ldsm_x4_trans(bv, Vs + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
                                      np * 16 + (lane >> 4) * 8);
                mma16816(o[2 * np], pa[kc], bv[0], bv[1], tag);
                mma16816(o[2 * np + 1], pa[kc], bv[2], bv[3], tag);
            }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    const int64_t r0 = q0 + warp * 16 + g, r1 = r0 + 8, HP = a.H * P;
#pragma unroll
    for (int i = 0; i < PK / 8; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int64_t c = i * 8 + 2 * t + e;
            if (c >= P)
                continue;
            if (r0 < S)
                st_out(a.out, a.out_dtype, (b * S + r0) * HP + h * P + c, o[i][e] * inv0);
            if (r1 < S)
                st_out(a.out, a.out_dtype, (b * S + r1) * HP + h * P + c, o[i][2 + e] * inv1);
        }
}

template <typename T, int PK> static void mma_launch(const struct omni_attention_args *a, int nw)
{
    const float sl2 = a->scale * 1.4426950408889634f;
    if (nw == 8) {
        const int64_t nq = (a->S + 127) / 128;
        OMNI_LAUNCH((attention_mma_k<T, PK, 8>), (unsigned)(a->B * a->H * nq), 256, 0, *a, sl2);
    } else {
        const int64_t nq = (a->S + 63) / 64;
        OMNI_LAUNCH((attention_mma_k<T, PK, 4>), (unsigned)(a->B * a->H * nq), 128, 0, *a, sl2);
    }
}

template <typename T> static void mma_dispatch(const struct omni_attention_args *a, int nw)
{
    if (a->P <= 32)
        mma_launch<T, 32>(a, nw);
    else if (a->P <= 64)
        mma_launch<T, 64>(a, nw);
    else if (a->P <= 80)
        mma_launch<T, 80>(a, nw);
    else
        mma_launch<T, 128>(a, nw);
}

/* 8 warps (128 query rows per block; measured faster on the H200 than 4),
 * OMNI_ATTN_WARPS=4: 64 rows (a tuning knob) */
static int mma_warps(void)
{
    static int nw;
    int v = __atomic_load_n(&nw, __ATOMIC_RELAXED);
    if (!v) {
        const char *e = getenv("OMNI_ATTN_WARPS");
        v = e && atoi(e) == 4 ? 4 : 8;
        __atomic_store_n(&nw, v, __ATOMIC_RELAXED);
    }
    return v;
}

extern "C" int omni_attention_cuda(const struct omni_attention_args *a)
{
    if (a->B * a->S * a->H * a->P == 0)
        return 0;
    if (a->P <= 128 && (a->precision == OMNI_DTYPE_BF16 || a->precision == OMNI_DTYPE_F16)) {
        if (a->precision == OMNI_DTYPE_BF16)
            mma_dispatch<__nv_bfloat16>(a, mma_warps());
        else
            mma_dispatch<__half>(a, mma_warps());
        return 0;
    }
    const int64_t pt = (a->P + 3) / 4;
    if (pt <= 8)
        attention_launch<8>(a);
    else if (pt <= 16)
        attention_launch<16>(a);
    else if (pt <= 24)
        attention_launch<24>(a);
    else if (pt <= 32)
        attention_launch<32>(a);
    else if (pt <= 64)
        attention_launch<64>(a);
    else
        attention_wide(a);
    return 0;
}
