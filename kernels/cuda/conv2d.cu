/* kernels/cuda/conv2d.cu - CUDA twins of omni_conv2d_cpu and
 * omni_conv2d_fused_cpu (kernels/conv2d.h).
 *
 * The fused op (and omni_conv2d_cuda with f16/bf16 weights at stride 1):
 * f16/bf16 weights: per group of images (<= 160 MiB of scratch) one kernel
 * unfolds the transformed input (GroupNorm coefficients, SiLU, nearest x2
 * applied on the way; zero padding after the transform) in the weight dtype
 * and one strided-batched cuBLAS GEMM (f32 accumulation) writes W * col into
 * out, or adds it to the residual there (a residual other than out is copied
 * in first). The bias is two more columns of the weights (a 16-bit hi + lo
 * pair) against two rows of ones in the unfolded input.
 * f32 weights: an implicit GEMM in f32 FMA (64 x 64 tiles, K walked as
 * (block of 16 input channels, tap, channel): one source address per thread
 * and tile, nothing unfolded), the epilogue adding bias and residual.
 *
 * Unfused path (f32 weights, or stride > 1):
 * 2-D convolution, NCHW, groups 1, zero padding, as
 *   out_b (Cout x S) = W (Cout x Cin*KH*KW) · col_b (Cin*KH*KW x S) + bias
 * per image b, S = Ho*Wo. col_b is unfolded (im2col) into scratch in the
 * weight's dtype, a slice of output rows at a time so the scratch stays under
 * CONV_WS_BYTES, and the product runs on cuBLAS: f32 weights in
 * CUBLAS_COMPUTE_32F (no TF32 unless OMNI_ALLOW_TF32=1), f16/bf16 weights as
 * a 16-bit GEMM with f32 accumulation (the unfolded input is rounded to the
 * weight dtype). A 1x1, stride 1, unpadded conv with f32 weights multiplies
 * the input directly. The bias is added by a separate kernel.
 * Column-major view: out_b is (S x Cout) with ld S = col (S x K, ld slice)
 * times W (K x Cout, ld K). */
#include <cublas_v2.h>

#include "common.cuh"
#include "conv2d.h"
#include "extra.h"

#define CONV_WS_BYTES ((size_t)256 << 20)

/* col[k][s'] for k = (i, dy, dx), s' = output positions [s0, s0 + ns) of image b */
template <typename T>
__global__ void im2col_k(T *col, const float *x, struct omni_conv2d_geom g, int64_t b, int64_t s0,
                         int64_t ns)
{
    const int64_t K = g.Cin * g.KH * g.KW;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K * ns)
        return;
    const int64_t k = i / ns, sp = i % ns, s = s0 + sp;
    const int64_t dx = k % g.KW, dy = (k / g.KW) % g.KH, ci = k / (g.KW * g.KH);
    const int64_t oy = s / g.Wo, ox = s % g.Wo;
    const int64_t iy = oy * g.stride + dy - g.pad_t, ix = ox * g.stride + dx - g.pad_l;
    float v = 0.0f;
    if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W)
        v = x[((b * g.Cin + ci) * g.H + iy) * g.W + ix];
    omni__st(col + i, v);
}

__global__ void conv_bias_k(float *out, const void *bias, int bias_dtype, int64_t C, int64_t S,
                            int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    out[i] += omni__ld_dt(bias, bias_dtype, (i / S) % C);
}

/* ---- implicit GEMM ------------------------------------------------------------------------ */

struct ig_geom {
    int B, Cin, H, W; /* the input the convolution sees (after the x2 map) */
    int Hs, Ws;       /* the stored input */
    int Cout, KH, KW, KHW, pad_t, pad_l, Ho, Wo, HWo, K;
    int P;            /* B*Ho*Wo */
    long long splane; /* Hs*Ws */
    int nkt;          /* K tiles: ceil(Cin/BK) * KHW */
};

template <typename T> __device__ __forceinline__ T ig_cvt(float v);
template <> __device__ __forceinline__ float ig_cvt<float>(float v) { return v; }
template <> __device__ __forceinline__ __half ig_cvt<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 ig_cvt<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}
__device__ __forceinline__ unsigned short ig_bits(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ unsigned short ig_bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }

/* One pixel of the B operand: which image and output position. */
struct ig_pix {
    const float *xb, *cb; /* image's input and coefficient rows */
    int oy, ox, valid;
};

__device__ __forceinline__ ig_pix ig_pixel(const ig_geom &g, long long p, const float *x,
                                           const float *coef)
{
    ig_pix r;
    r.valid = p < g.P;
    int b = 0, s = 0;
    if (r.valid) {
        b = (int)(p / g.HWo);
        s = (int)(p - (long long)b * g.HWo);
    }
    r.oy = s / g.Wo;
    r.ox = s - r.oy * g.Wo;
    r.xb = x + (long long)b * g.Cin * g.splane;
    r.cb = coef ? coef + (long long)b * g.Cin * 4 : NULL;
    return r;
}

/* source offset of the tap (dy, dx) for pixel q, -1 when it reads padding */
__device__ __forceinline__ int ig_src(const ig_geom &g, const ig_pix &q, int dy, int dx, int up2)
{
    const int iy = q.oy + dy - g.pad_t, ix = q.ox + dx - g.pad_l;
    if (!q.valid || iy < 0 || iy >= g.H || ix < 0 || ix >= g.W)
        return -1;
    return up2 ? (iy >> 1) * g.Ws + (ix >> 1) : iy * g.Ws + ix;
}

/* GroupNorm coefficients and SiLU of a loaded input value */
template <int FAST>
__device__ __forceinline__ float ig_xf(float v, const float *cb, int ci, int silu)
{
    if (cb) {
        const float4 c = __ldg((const float4 *)(cb + 4 * ci));
        v = ((v - c.x) - c.y) * c.z + c.w;
    }
    if (silu)
        v = FAST ? v / (1.0f + __expf(-v)) : v / (1.0f + expf(-v));
    return v;
}

/* An output pixel: its image and position, or invalid. */
struct ig_opix {
    int b, s, valid;
};

__device__ __forceinline__ ig_opix ig_opixel(const ig_geom &g, long long p)
{
    ig_opix r;
    r.valid = p < g.P;
    r.b = r.valid ? (int)p / g.HWo : 0;
    r.s = r.valid ? (int)p - r.b * g.HWo : 0;
    return r;
}

/* out = acc + bias + residual for output channel m, pixel o */
__device__ __forceinline__ void ig_store(float *out, const ig_geom &g, int m, const ig_opix &o,
                                         float v, const void *bias, int bias_dtype,
                                         const float *res)
{
    if (m >= g.Cout || !o.valid)
        return;
    const long long i = ((long long)o.b * g.Cout + m) * g.HWo + o.s;
    if (bias)
        v += omni__ld_dt(bias, bias_dtype, m);
    if (res)
        v += res[i];
    out[i] = v;
}

#define IG_BK 32

/* f32 weights: tile 64 x 64, K tiles of 16 channels, 4 x 4 outputs per thread. */
template <typename TW>
__global__ void __launch_bounds__(256)
    conv_simt_k(float *__restrict__ out, const float *__restrict__ x, const TW *__restrict__ w,
                const void *bias, int bias_dtype, ig_geom g, const float *coef, int silu, int up2,
                const float *res)
{
    constexpr int BM = 64, BN = 64, BK = 16;
    __shared__ float As[2][BK][BM + 4], Bs[2][BK][BN + 4];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * BM;
    const long long n0 = (long long)blockIdx.x * BN;
    const int ak = tid & 15, am = tid >> 4;  /* A: channel ak, rows am + 16j */
    const int bp = tid & 63, bk0 = tid >> 6; /* B: pixel bp, channels bk0 + 4j */
    const ig_pix q = ig_pixel(g, n0 + bp, x, coef);
    const int tm = tid >> 4, tn = tid & 15;
    float areg[4], breg[4], acc[4][4] = {};
    int boff = -1, bci0 = 0;
    const int nkt = (g.Cin + BK - 1) / BK * g.KHW;

    auto load = [&](int kt) {
        const int cib = kt / g.KHW, tap = kt - cib * g.KHW;
        const int dy = tap / g.KW, dx = tap - dy * g.KW, ci0 = cib * BK;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int m = m0 + am + 16 * j, ci = ci0 + ak;
            areg[j] = m < g.Cout && ci < g.Cin ? omni__ld(w + (long long)m * g.K + ci * g.KHW + tap)
                                               : 0.0f;
        }
        boff = ig_src(g, q, dy, dx, up2);
        bci0 = ci0 + bk0;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int ci = bci0 + 4 * j;
            breg[j] = boff >= 0 && ci < g.Cin ? __ldg(q.xb + ci * g.splane + boff) : 0.0f;
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int j = 0; j < 4; j++)
            As[buf][ak][am + 16 * j] = areg[j];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int ci = bci0 + 4 * j;
            float v = breg[j];
            if (boff >= 0 && ci < g.Cin)
                v = ig_xf<0>(v, q.cb, ci, silu);
            Bs[buf][bk0 + 4 * j][bp] = v;
        }
    };
    load(0);
    store(0);
    __syncthreads();
    for (int kt = 0; kt < nkt; kt++) {
        const int buf = kt & 1;
        if (kt + 1 < nkt)
            load(kt + 1);
#pragma unroll
        for (int k = 0; k < BK; k++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                a[i] = As[buf][k][tm + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++)
                b[j] = Bs[buf][k][tn + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (kt + 1 < nkt)
            store(buf ^ 1);
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const ig_opix o = ig_opixel(g, n0 + tn + 16 * j);
#pragma unroll
        for (int i = 0; i < 4; i++)
            ig_store(out, g, m0 + tm + 16 * i, o, acc[i][j], bias, bias_dtype, res);
    }
}

/* the transformed input (GroupNorm coefficients c when coef, then SiLU) at column ix of
 * the stored row xr of the input the conv sees (up2: each stored value twice); zero
 * padding outside the image (row_ok: the row is inside) */
__device__ __forceinline__ float ig_tap(const float *xr, bool row_ok, int ix, int W, int up2,
                                        const float *coef, float4 c, int silu)
{
    float v = 0.0f;
    if (row_ok && ix >= 0 && ix < W) {
        v = __ldg(xr + (up2 ? ix >> 1 : ix));
        if (coef)
            v = ((v - c.x) - c.y) * c.z + c.w;
        if (silu)
            v = v / (1.0f + __expf(-v));
    }
    return v;
}

/* f16/bf16 weights: the transformed input unfolded in the weight dtype,
 * col[img][k][s] with k = (ci, dy, dx) in the weight's order (an image every Kp >= K
 * rows). One thread per
 * (PX output positions, input channel, image) writes every tap of its channel:
 * the channel's GroupNorm coefficients are read and the positions decoded
 * once, and with PX = 4 (Wo % 4 == 0, so the four share an output row) each
 * tap is one 8-byte store. One thread per value (2 bytes, the index math
 * redone for each) ran at about 0.3 TB/s: 477 us per 256x256 image of VQ-16's
 * 128-channel convs on an H200, 80 % of the decode.
 * grid (ceil(HWo / (256 PX)), Cin, images). */
template <typename T, int PX, int KS>
__global__ void __launch_bounds__(256)
im2col_fused_k(T *col, const float *x, ig_geom g, int Kp, int b0, const float *coef, int silu,
               int up2)
{
    const int s0 = (int)(blockIdx.x * 256 + threadIdx.x) * PX, ci = (int)blockIdx.y;
    const int bi = (int)blockIdx.z, b = b0 + bi;
    if (s0 >= g.HWo)
        return;
    const int KH = KS ? KS : g.KH, KW = KS ? KS : g.KW;
    const float *xc = x + ((long long)b * g.Cin + ci) * g.splane;
    float4 c = make_float4(0.0f, 0.0f, 1.0f, 0.0f);
    if (coef)
        c = __ldg((const float4 *)(coef + ((long long)b * g.Cin + ci) * 4));
    const int oy = s0 / g.Wo, ox = s0 - oy * g.Wo; /* PX > 1: all PX on this row */
    T *dst = col + ((long long)bi * Kp + (long long)ci * KH * KW) * g.HWo + s0;
#pragma unroll
    for (int dy = 0; dy < KH; dy++) {
        const int iy = oy + dy - g.pad_t;
        const bool row_ok = iy >= 0 && iy < g.H;
        const float *xr = xc + (long long)(up2 ? iy >> 1 : iy) * g.Ws;
#pragma unroll
        for (int dx = 0; dx < KW; dx++) {
            unsigned short o[PX];
#pragma unroll
            for (int j = 0; j < PX; j++)
                o[j] = ig_bits(ig_cvt<T>(
                    ig_tap(xr, row_ok, ox + j + dx - g.pad_l, g.W, up2, coef, c, silu)));
            if (PX == 4)
                *(uint2 *)dst = make_uint2(o[0] | (unsigned)o[PX > 1 ? 1 : 0] << 16,
                                           o[PX > 2 ? 2 : 0] | (unsigned)o[PX > 3 ? 3 : 0] << 16);
            else
                *(unsigned short *)dst = o[0];
            dst += g.HWo;
        }
    }
}

/* 3x3 taps, 8 output positions of a row per thread (Wo % 8 == 0): per kernel row dy the
 * 10 input values the three taps need are loaded and transformed once, then each tap is
 * one 16-byte store. grid (HWo / 2048 rounded up, Cin, images). */
template <typename T>
__global__ void __launch_bounds__(256)
im2col_fused3_k(T *col, const float *x, ig_geom g, int Kp, int b0, const float *coef, int silu,
                int up2)
{
    const int s0 = (int)(blockIdx.x * 256 + threadIdx.x) * 8, ci = (int)blockIdx.y;
    const int bi = (int)blockIdx.z, b = b0 + bi;
    if (s0 >= g.HWo)
        return;
    const float *xc = x + ((long long)b * g.Cin + ci) * g.splane;
    float4 c = make_float4(0.0f, 0.0f, 1.0f, 0.0f);
    if (coef)
        c = __ldg((const float4 *)(coef + ((long long)b * g.Cin + ci) * 4));
    const int oy = s0 / g.Wo, ox = s0 - oy * g.Wo;
    T *dst = col + ((long long)bi * Kp + (long long)ci * 9) * g.HWo + s0;
#pragma unroll
    for (int dy = 0; dy < 3; dy++) {
        const int iy = oy + dy - g.pad_t;
        const bool row_ok = iy >= 0 && iy < g.H;
        const float *xr = xc + (long long)(up2 ? iy >> 1 : iy) * g.Ws;
        unsigned short win[10];
#pragma unroll
        for (int j = 0; j < 10; j++)
            win[j] = ig_bits(
                ig_cvt<T>(ig_tap(xr, row_ok, ox + j - g.pad_l, g.W, up2, coef, c, silu)));
#pragma unroll
        for (int dx = 0; dx < 3; dx++) {
            uint4 o;
            o.x = win[dx] | (unsigned)win[dx + 1] << 16;
            o.y = win[dx + 2] | (unsigned)win[dx + 3] << 16;
            o.z = win[dx + 4] | (unsigned)win[dx + 5] << 16;
            o.w = win[dx + 6] | (unsigned)win[dx + 7] << 16;
            *(uint4 *)dst = o;
            dst += g.HWo;
        }
    }
}

/* col: images of Kp >= K rows (the unfolding writes rows < K) */
template <typename T>
static void im2col_fused(T *col, const float *x, const ig_geom &q, int Kp, int b0, int m,
                         const float *coef, int silu, int up2)
{
    if (q.KH == 3 && q.KW == 3 && q.Wo % 8 == 0) {
        const dim3 grid((unsigned)((q.HWo + 2047) / 2048), (unsigned)q.Cin, (unsigned)m);
        OMNI_LAUNCH(im2col_fused3_k<T>, grid, 256, 0, col, x, q, Kp, b0, coef, silu, up2);
        return;
    }
    const int px = q.Wo % 4 == 0 ? 4 : 1;
    void (*k)(T *, const float *, ig_geom, int, int, const float *, int, int) =
        px == 1                      ? im2col_fused_k<T, 1, 0>
        : q.KH == 3 && q.KW == 3     ? im2col_fused_k<T, 4, 3>
        : q.KH == 1 && q.KW == 1     ? im2col_fused_k<T, 4, 1>
                                     : im2col_fused_k<T, 4, 0>;
    const dim3 grid((unsigned)((q.HWo + 256 * px - 1) / (256 * px)), (unsigned)q.Cin, (unsigned)m);
    OMNI_LAUNCH(k, grid, 256, 0, col, x, q, Kp, b0, coef, silu, up2);
}

/* The bias rides in the GEMM: the weights are copied into wa [Cout][Kp] with two more
 * columns, the bias split into a 16-bit hi + lo pair (f32-level), and each image's
 * unfolded input gets rows K and K + 1 of ones (rows up to Kp of zeros), so the GEMM
 * writes W col + bias with beta 0, or adds it to a residual already in out (beta 1).
 * Before, a separate pass set out = bias + residual and the GEMM read it back: 4.5 ms
 * of a 34 ms VQ-16 decode of 16 images on the H200. */
template <typename T>
__global__ void conv_waug_k(T *wa, const T *w, const void *bias, int bias_dtype, int Cout, int K,
                            int Kp)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)Cout * Kp)
        return;
    const int co = (int)(i / Kp), k = (int)(i - (long long)co * Kp);
    float v = 0.0f;
    if (k < K) {
        wa[i] = w[(long long)co * K + k];
        return;
    }
    if (k <= K + 1) {
        const float b = omni__ld_dt(bias, bias_dtype, co);
        const float hi = (float)ig_cvt<T>(b);
        v = k == K ? hi : b - hi;
    }
    wa[i] = ig_cvt<T>(v);
}

/* rows K .. Kp - 1 of each image's unfolded input: ones for the two bias columns, then zeros */
template <typename T>
__global__ void conv_ones_k(T *col, int K, int Kp, int HWo, int images)
{
    const long long n = (long long)(Kp - K) * HWo, i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * images)
        return;
    const long long img = i / n, r = i - img * n, k = K + r / HWo;
    col[(img * Kp + k) * HWo + r % HWo] = ig_cvt<T>(k <= K + 1 ? 1.0f : 0.0f);
}

__global__ void conv_copy_k(float *out, const float *res, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = res[i];
}

/* Scratch per group of images. The unfolded input lands in the device's
 * growable workspace, which keeps its largest size: 160 MiB holds one VQ-16
 * image at 256x256 (K 1152 x 65536 x 2 B = 144 MiB, the least that works
 * without splitting an image) and two at 128x128; GEMMs of one or two such
 * images still fill the GPU. 512 MiB left a 630 MiB workspace behind after a
 * VQ decode of 8 images per pass. */
#define CONV_FUSED_WS_BYTES ((size_t)160 << 20)

template <typename T>
static void conv_fused_prep(void *wa, const void *w, const void *bias, int bias_dtype,
                            const ig_geom &q, int Kp)
{
    OMNI_LAUNCH(conv_waug_k<T>, omni__blocks((int64_t)q.Cout * Kp, 256), 256, 0, (T *)wa,
                (const T *)w, bias, bias_dtype, q.Cout, q.K, Kp);
}

template <typename T>
static void conv_fused_ones(void *col, const ig_geom &q, int Kp, int m)
{
    OMNI_LAUNCH(conv_ones_k<T>, omni__blocks((int64_t)(Kp - q.K) * q.HWo * m, 256), 256, 0,
                (T *)col, q.K, Kp, q.HWo, m);
}

static int conv_fused_gemm(float *out, const float *x, const void *w, int w_dtype,
                           const void *bias, int bias_dtype, const ig_geom &q, const float *coef,
                           int silu, int up2, const float *res)
{
    cublasHandle_t h = omni__cuda_blas();
    if (!h)
        return OMNI_OK; /* error recorded */
    const cudaDataType_t ab = w_dtype == OMNI_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
    const int half = w_dtype == OMNI_DTYPE_F16;
    /* K rows of the unfolded input, then (with a bias) two of ones and zeros up to a
     * multiple of 8 */
    const int Kp = bias ? (q.K + 2 + 7) / 8 * 8 : q.K;
    const size_t per_img = (size_t)Kp * (size_t)q.HWo * 2;
    const size_t wa_bytes = bias ? ((size_t)q.Cout * Kp * 2 + 255) / 256 * 256 : 0;
    int nb = (int)(CONV_FUSED_WS_BYTES / per_img);
    if (nb < 1)
        nb = 1;
    if (nb > q.B)
        nb = q.B;
    if (nb > 65535)
        nb = 65535;
    if (per_img * (size_t)nb / 2 > (size_t)INT32_MAX || Kp > 65535) {
        omni__cuda_fail(__FILE__, __LINE__, "conv2d_fused: an image's unfolded input is too large");
        return OMNI_OK;
    }
    char *ws = (char *)omni__cuda_workspace(wa_bytes + per_img * (size_t)nb);
    if (!ws)
        return OMNI_ENOMEM;
    void *wa = bias ? ws : NULL, *col = ws + wa_bytes;
    if (bias) {
        if (half)
            conv_fused_prep<__half>(wa, w, bias, bias_dtype, q, Kp);
        else
            conv_fused_prep<__nv_bfloat16>(wa, w, bias, bias_dtype, q, Kp);
    }
    const long long n = (long long)q.B * q.Cout * q.HWo;
    if (res && res != out)
        OMNI_LAUNCH(conv_copy_k, omni__blocks(n, 256), 256, 0, out, res, n);
    const float one = 1.0f, beta = res ? 1.0f : 0.0f;
    for (int b0 = 0; b0 < q.B; b0 += nb) {
        const int m = q.B - b0 < nb ? q.B - b0 : nb;
        if (half)
            im2col_fused((__half *)col, x, q, Kp, b0, m, coef, silu, up2);
        else
            im2col_fused((__nv_bfloat16 *)col, x, q, Kp, b0, m, coef, silu, up2);
        /* the ones rows: written once per workspace use, as the unfolding never touches them */
        if (bias && b0 == 0) {
            if (half)
                conv_fused_ones<__half>(col, q, Kp, m);
            else
                conv_fused_ones<__nv_bfloat16>(col, q, Kp, m);
        }
        if (OMNI_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                h, CUBLAS_OP_N, CUBLAS_OP_N, q.HWo, q.Cout, Kp, &one, col, ab, q.HWo,
                (long long)Kp * q.HWo, bias ? wa : w, ab, Kp, 0, &beta,
                out + (long long)b0 * q.Cout * q.HWo, CUDA_R_32F, q.HWo,
                (long long)q.Cout * q.HWo, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)))
            return OMNI_OK;
    }
    return OMNI_OK;
}

extern "C" int omni_conv2d_fused_cuda(float *out, const float *x, const void *w, int w_dtype,
                                      const void *bias, int bias_dtype,
                                      const struct omni_conv2d_geom *g,
                                      const struct omni_conv2d_fuse *f)
{
    const int64_t P = g->B * g->Ho * g->Wo;
    if (P == 0 || g->Cout == 0)
        return OMNI_OK;
    const int up2 = f && f->up2;
    if (g->stride != 1 || (up2 && (g->H % 2 || g->W % 2))) {
        omni__cuda_fail(__FILE__, __LINE__, "conv2d_fused: stride 1 and an even upsampled size only");
        return OMNI_OK;
    }
    if (P > INT32_MAX / 2 || g->Cin * g->KH * g->KW > INT32_MAX / 2 ||
        g->Cin * (g->H >> up2) * (g->W >> up2) > INT32_MAX / 2 || g->Cout > 65535 * 64) {
        omni__cuda_fail(__FILE__, __LINE__, "conv2d_fused dims exceed the kernel's int range");
        return OMNI_OK;
    }
    ig_geom q;
    q.B = (int)g->B;
    q.Cin = (int)g->Cin;
    q.H = (int)g->H;
    q.W = (int)g->W;
    q.Hs = q.H >> up2;
    q.Ws = q.W >> up2;
    q.Cout = (int)g->Cout;
    q.KH = (int)g->KH;
    q.KW = (int)g->KW;
    q.KHW = q.KH * q.KW;
    q.pad_t = (int)g->pad_t;
    q.pad_l = (int)g->pad_l;
    q.Ho = (int)g->Ho;
    q.Wo = (int)g->Wo;
    q.HWo = q.Ho * q.Wo;
    q.K = q.Cin * q.KHW;
    q.P = (int)P;
    q.splane = (long long)q.Hs * q.Ws;
    q.nkt = (q.Cin + IG_BK - 1) / IG_BK * q.KHW;
    const float *coef = f ? f->coef : NULL, *res = f ? f->residual : NULL;
    const int silu = f && f->silu;
    if (w_dtype == OMNI_DTYPE_F16 || w_dtype == OMNI_DTYPE_BF16) {
        return conv_fused_gemm(out, x, w, w_dtype, bias, bias_dtype, q, coef, silu, up2, res);
    } else {
        const dim3 grid((unsigned)((P + 63) / 64), (unsigned)((q.Cout + 63) / 64));
        OMNI_LAUNCH(conv_simt_k<float>, grid, 256, 0, out, x, (const float *)w, bias, bias_dtype,
                    q, coef, silu, up2, res);
    }
    return OMNI_OK;
}

/* the limits omni_conv2d_fused_cuda and conv_fused_gemm check (int index math, grid.y = K
 * <= 65535, one image's unfolded input < 2^31 values): outside them omni_conv2d_cuda keeps
 * 16-bit weights on the sliced im2col + cuBLAS path instead of failing */
static int fused_fits(const struct omni_conv2d_geom *g)
{
    const int64_t P = g->B * g->Ho * g->Wo, K = g->Cin * g->KH * g->KW;
    return P <= INT32_MAX / 2 && K <= 65535 && g->Cin * g->H * g->W <= INT32_MAX / 2 &&
           g->Cout <= 65535 * 64 && K * g->Ho * g->Wo <= (int64_t)INT32_MAX;
}

extern "C" int omni_conv2d_cuda(float *out, const float *x, const void *w, int w_dtype,
                                const void *bias, int bias_dtype, const struct omni_conv2d_geom *g)
{
    const int64_t S = g->Ho * g->Wo, K = g->Cin * g->KH * g->KW;
    if (g->B * g->Cout * S == 0)
        return OMNI_OK;
    cublasHandle_t h = omni__cuda_blas();
    if (!h)
        return OMNI_OK; /* error recorded */
    const int half = w_dtype == OMNI_DTYPE_F16 || w_dtype == OMNI_DTYPE_BF16;
    if (half && g->stride == 1 && fused_fits(g))
        return omni_conv2d_fused_cuda(out, x, w, w_dtype, bias, bias_dtype, g, NULL);
    const cudaDataType_t ab = w_dtype == OMNI_DTYPE_F16 ? CUDA_R_16F
                              : w_dtype == OMNI_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = half || !omni__cuda_allow_tf32() ? CUBLAS_COMPUTE_32F
                                                                    : CUBLAS_COMPUTE_32F_FAST_TF32;
    const float one = 1.0f, zero = 0.0f;
    const int direct = !half && g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad_t == 0 &&
                       g->pad_l == 0 && g->Ho == g->H && g->Wo == g->W;
    const size_t es = half ? 2 : 4;
    int64_t ns = S;
    if (!direct && (size_t)(K * S) * es > CONV_WS_BYTES) {
        ns = (int64_t)(CONV_WS_BYTES / ((size_t)K * es));
        if (ns >= g->Wo)
            ns -= ns % g->Wo; /* whole output rows */
        if (ns < 1)
            ns = 1;
    }
    void *col = NULL;
    if (!direct) {
        col = omni__cuda_workspace((size_t)(K * ns) * es);
        if (!col)
            return OMNI_ENOMEM;
    }
    if (S > INT32_MAX || K > INT32_MAX || g->Cout > INT32_MAX) {
        omni__cuda_fail(__FILE__, __LINE__, "conv2d dims exceed cuBLAS's int range");
        return OMNI_OK;
    }
    for (int64_t b = 0; b < g->B; b++) {
        float *ob = out + b * g->Cout * S;
        for (int64_t s0 = 0; s0 < S; s0 += ns) {
            const int64_t n = min(ns, S - s0);
            const void *A;
            int64_t lda;
            if (direct) {
                A = x + b * g->Cin * S + s0;
                lda = S;
            } else {
                if (w_dtype == OMNI_DTYPE_F16)
                    OMNI_LAUNCH(im2col_k<__half>, omni__blocks(K * n, 256), 256, 0, (__half *)col,
                                x, *g, b, s0, n);
                else if (w_dtype == OMNI_DTYPE_BF16)
                    OMNI_LAUNCH(im2col_k<__nv_bfloat16>, omni__blocks(K * n, 256), 256, 0,
                                (__nv_bfloat16 *)col, x, *g, b, s0, n);
                else
                    OMNI_LAUNCH(im2col_k<float>, omni__blocks(K * n, 256), 256, 0, (float *)col, x,
                                *g, b, s0, n);
                A = col;
                lda = n;
            }
            if (OMNI_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)g->Cout,
                                               (int)K, &one, A, ab, (int)lda, w, ab, (int)K, &zero,
                                               ob + s0, CUDA_R_32F, (int)S, ct,
                                               CUBLAS_GEMM_DEFAULT)))
                return OMNI_OK;
        }
    }
    if (bias) {
        const int64_t n = g->B * g->Cout * S;
        OMNI_LAUNCH(conv_bias_k, omni__blocks(n, 256), 256, 0, out, bias, bias_dtype, g->Cout, S, n);
    }
    return OMNI_OK;
}
