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
 * out = P V by a second batched GEMM. */
#include <cublas_v2.h>

#include "attention.h"
#include "common.cuh"
#include "extra.h"
#include "sample.h"

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
        Qs[rr * Pp + p] = qi < a.S ? a.q[b * a.q_bs + qi * a.q_rs + h * P + p] * a.scale : 0.0f;
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
            Ks[j * Pp + p] = in ? a.k[b * a.k_bs + kj * a.k_rs + h * P + p] : 0.0f;
            Vs[j * Pp + p] = in ? a.v[b * a.v_bs + kj * a.v_rs + h * P + p] : 0.0f;
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
        float *o = a.out + (b * a.S + qi) * a.H * P + h * P;
#pragma unroll
        for (int i = 0; i < PT; i++) {
            const int64_t p = l4 + 4 * i;
            if (p < P)
                o[p] = acc[i] * inv;
        }
    }
}

template <int PT> static void attention_launch(const struct omni_attention_args *a)
{
    const size_t smem = (size_t)((AQ + 2 * AK) * (a->P + 1) + AQ * (AK + 1)) * sizeof(float);
    /* the opt-in above 48 KB, once per instantiation, for its largest P */
    const size_t smax = (size_t)((AQ + 2 * AK) * (4 * PT + 1) + AQ * (AK + 1)) * sizeof(float);
    static int raised;
    if (smax > 48 * 1024 && !__atomic_load_n(&raised, __ATOMIC_ACQUIRE)) {
        if (OMNI_CUDA_CHECK(cudaFuncSetAttribute(attention_k<PT>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)smax)))
            return;
        __atomic_store_n(&raised, 1, __ATOMIC_RELEASE);
    }
    const int64_t nq = (a->S + AQ - 1) / AQ;
    OMNI_LAUNCH(attention_k<PT>, (unsigned)(a->B * a->H * nq), 256, smem, *a);
}

static void attention_wide(const struct omni_attention_args *a)
{
    const int64_t B = a->B, S = a->S, P = a->P, HP = a->H * a->P;
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
                (int)a->v_rs, a->v_bs, sc, CUDA_R_32F, (int)S, S * S, &zero, a->out + h * P,
                CUDA_R_32F, (int)HP, S * HP, (int)B, ct, CUBLAS_GEMM_DEFAULT)))
            return;
    }
}

extern "C" void omni_attention_cuda(const struct omni_attention_args *a)
{
    if (a->B * a->S * a->H * a->P == 0)
        return;
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
}
