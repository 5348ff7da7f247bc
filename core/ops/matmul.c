/* core/ops/matmul.c - omni_op_matmul/linear/add/add_row/copy: check the
 * tensors, then dispatch on the device to kernels/cpu/matmul.c (CUDA: not
 * written yet). See core/include/omni/ops/matmul.h for the contracts. */
#include "omni/ops/matmul.h"

#include "matmul.h"
#include "cuda_impl.h"
#ifdef OMNI_HAVE_CUDA
#include "cuda/extra.h"
#endif
#include "ops/op_check.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

int omni_op_matmul(struct omni_tensor *y, const struct omni_tensor *x, const struct omni_tensor *w,
                   const struct omni_tensor *bias, float alpha, float beta, struct omni_error *err)
{
    static const char op[] = "omni_op_matmul";
    TRY(omni__check_present(err, op, "y", y));
    TRY(omni__check_present(err, op, "x", x));
    TRY(omni__check_present(err, op, "w", w));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32));
    TRY(omni__check_float_dtype(err, op, "w", w));
    if (w->ndim != 2) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: w has shape %s, expected 2 dims (N,K)", op,
                              omni_shape_str(w->ndim, w->shape, a, sizeof a));
    }
    TRY(omni__check_contiguous(err, op, "w", w));
    int64_t N = w->shape[0], K = w->shape[1], M, Kx, ldx, My, Ny, ldy;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != K) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, its last dim must be K=%lld of w %s",
                              op, omni_shape_str(x->ndim, x->shape, a, sizeof a), (long long)K,
                              omni_shape_str(w->ndim, w->shape, b, sizeof b));
    }
    if (y->ndim < 1 || y->shape[y->ndim - 1] != N) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: y has shape %s, its last dim must be N=%lld of w %s",
                              op, omni_shape_str(y->ndim, y->shape, a, sizeof a), (long long)N,
                              omni_shape_str(w->ndim, w->shape, b, sizeof b));
    }
    TRY(omni__rows(err, op, "x", x, 0, &M, &Kx, &ldx));
    TRY(omni__rows(err, op, "y", y, 1, &My, &Ny, &ldy));
    if (My != M) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: y has shape %s (%lld rows) but x has shape %s (%lld rows)",
                              op, omni_shape_str(y->ndim, y->shape, a, sizeof a), (long long)My,
                              omni_shape_str(x->ndim, x->shape, b, sizeof b), (long long)M);
    }
    TRY(omni__check_writable(err, op, "y", y));
    if (bias) {
        TRY(omni__check_present(err, op, "bias", bias));
        TRY(omni__check_dtype(err, op, "bias", bias, OMNI_DTYPE_F32));
        TRY(omni__check_shape(err, op, "bias", bias, 1, &N, "N from w"));
        TRY(omni__check_contiguous(err, op, "bias", bias));
        TRY(omni__check_same_device(err, op, "bias", bias, "y", y));
    }
    TRY(omni__check_same_device(err, op, "x", x, "y", y));
    TRY(omni__check_same_device(err, op, "w", w, "y", y));
    OMNI__CUDA_DISPATCH(err, op, y->device,
                        omni_matmul_cuda(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx,
                                         omni_tensor_data(w), w->dtype,
                                         bias ? omni_tensor_data(bias) : NULL, M, N, K, alpha,
                                         beta));
    TRY(omni__cpu_only(err, op, y));
    omni_matmul_cpu(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, omni_tensor_data(w),
                    w->dtype, bias ? omni_tensor_data(bias) : NULL, M, N, K, alpha, beta);
    return OMNI_OK;
}

int omni_op_linear(struct omni_tensor *y, const struct omni_tensor *x, const struct omni_tensor *w,
                   const struct omni_tensor *bias, struct omni_error *err)
{
    int rc = omni_op_matmul(y, x, w, bias, 1.0f, 0.0f, err);
    if (rc && err && err->status == rc)
        omni_error_prefix(err, "omni_op_linear: ");
    return rc;
}

int omni_op_add(struct omni_tensor *y, const struct omni_tensor *a, const struct omni_tensor *b,
                struct omni_error *err)
{
    static const char op[] = "omni_op_add";
    TRY(omni__check_present(err, op, "y", y));
    TRY(omni__check_present(err, op, "a", a));
    TRY(omni__check_present(err, op, "b", b));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "a", a, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "b", b, OMNI_DTYPE_F32));
    TRY(omni__check_same_shape(err, op, "b", b, "a", a));
    TRY(omni__check_same_shape(err, op, "y", y, "a", a));
    TRY(omni__check_writable(err, op, "y", y));
    TRY(omni__check_same_device(err, op, "a", a, "y", y));
    TRY(omni__check_same_device(err, op, "b", b, "y", y));
    if (omni_tensor_numel(y) == 0)
        return OMNI_OK;
    if (y->ndim == 0) { /* scalar */
        OMNI__CUDA_DISPATCH(err, op, y->device,
                            omni_add_cuda(omni_tensor_data(y), 1, omni_tensor_data(a), 1,
                                          omni_tensor_data(b), 1, 1, 1));
        TRY(omni__cpu_only(err, op, y));
        omni_add_cpu(omni_tensor_data(y), 1, omni_tensor_data(a), 1, omni_tensor_data(b), 1, 1, 1);
        return OMNI_OK;
    }
    int64_t M, D, ldy, lda, ldb;
    TRY(omni__rows(err, op, "y", y, 1, &M, &D, &ldy));
    TRY(omni__rows(err, op, "a", a, 0, &M, &D, &lda));
    TRY(omni__rows(err, op, "b", b, 0, &M, &D, &ldb));
    OMNI__CUDA_DISPATCH(err, op, y->device,
                        omni_add_cuda(omni_tensor_data(y), ldy, omni_tensor_data(a), lda,
                                      omni_tensor_data(b), ldb, M, D));
    TRY(omni__cpu_only(err, op, y));
    omni_add_cpu(omni_tensor_data(y), ldy, omni_tensor_data(a), lda, omni_tensor_data(b), ldb, M, D);
    return OMNI_OK;
}

int omni_op_add_row(struct omni_tensor *y, const struct omni_tensor *row, struct omni_error *err)
{
    static const char op[] = "omni_op_add_row";
    TRY(omni__check_present(err, op, "y", y));
    TRY(omni__check_present(err, op, "row", row));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "row", row, OMNI_DTYPE_F32));
    int64_t M, D, ldy;
    TRY(omni__rows(err, op, "y", y, 1, &M, &D, &ldy));
    TRY(omni__check_shape(err, op, "row", row, 1, &D, "the last dim of y"));
    TRY(omni__check_contiguous(err, op, "row", row));
    TRY(omni__check_writable(err, op, "y", y));
    TRY(omni__check_same_device(err, op, "row", row, "y", y));
    OMNI__CUDA_DISPATCH(err, op, y->device,
                        omni_add_row_cuda(omni_tensor_data(y), ldy, omni_tensor_data(row), M, D));
    TRY(omni__cpu_only(err, op, y));
    omni_add_row_cpu(omni_tensor_data(y), ldy, omni_tensor_data(row), M, D);
    return OMNI_OK;
}

/* Walks the elements of a strided tensor in row-major order. */
struct flat_iter {
    int ndim;
    int64_t idx[OMNI_MAX_DIMS];
    int64_t off; /* elements */
};

static void iter_next(struct flat_iter *it, const struct omni_tensor *t)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        it->off += t->strides[d];
        if (++it->idx[d] < t->shape[d])
            return;
        it->off -= t->strides[d] * t->shape[d];
        it->idx[d] = 0;
    }
}

#ifdef OMNI_HAVE_CUDA
static void strided_of(struct omni__strided *s, const struct omni_tensor *t)
{
    s->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        s->shape[i] = t->shape[i];
        s->strides[i] = t->strides[i];
    }
}

/* omni_op_copy with a CUDA tensor on either side: device-to-device through
 * the conversion / strided kernels; host<->device as one cudaMemcpy when both
 * sides are contiguous and of one dtype (a copy to the host waits for it). */
static int copy_cuda(struct omni_error *err, const char *op, struct omni_tensor *dst,
                     const struct omni_tensor *src, int64_t n)
{
    const int dcu = dst->device.type == OMNI_DEVICE_CUDA, scu = src->device.type == OMNI_DEVICE_CUDA;
    const struct omni_device dev = dcu ? dst->device : src->device;
    if (dcu && scu && dst->device.index != src->device.index)
        return omni_error_set(err, OMNI_EDEVICE, "%s: copy between cuda:%d and cuda:%d is not supported",
                              op, src->device.index, dst->device.index);
    int dc = omni_tensor_is_contiguous(dst), sc = omni_tensor_is_contiguous(src);
    if (!dcu || !scu) {
        if (!dc || !sc || dst->dtype != src->dtype) {
            char a[64], b[64];
            return omni_error_set(err, OMNI_EUNSUPPORTED,
                                  "%s: a copy between host and device needs contiguous tensors of one "
                                  "dtype (dst %s, src %s)",
                                  op, omni_tensor_str(dst, a, sizeof a), omni_tensor_str(src, b, sizeof b));
        }
    }
    int rc = omni__cuda_begin(err, op, dev);
    if (rc)
        return rc;
    if (n > 0) {
        if (!dcu || !scu) {
            const size_t bytes = (size_t)n * omni_dtype_size(dst->dtype);
            if (!OMNI_CUDA_CHECK(cudaMemcpyAsync(omni_tensor_data(dst), omni_tensor_data(src), bytes,
                                                 cudaMemcpyDefault, omni__cuda_cur_stream())) &&
                !dcu)
                OMNI_CUDA_CHECK(cudaStreamSynchronize(omni__cuda_cur_stream()));
        } else if (dc && sc) {
            omni_copy_cuda(omni_tensor_data(dst), dst->dtype, omni_tensor_data(src), src->dtype, n);
        } else {
            struct omni__strided ds, ss;
            strided_of(&ds, dst);
            strided_of(&ss, src);
            omni__copy_strided_cuda(omni_tensor_data(dst), dst->dtype, &ds, omni_tensor_data(src),
                                    src->dtype, &ss, n);
        }
    }
    return omni__cuda_end(err, op);
}
#endif

int omni_op_copy(struct omni_tensor *dst, const struct omni_tensor *src, struct omni_error *err)
{
    static const char op[] = "omni_op_copy";
    TRY(omni__check_present(err, op, "dst", dst));
    TRY(omni__check_present(err, op, "src", src));
    if (dst->dtype != src->dtype) {
        TRY(omni__check_float_dtype(err, op, "dst", dst));
        TRY(omni__check_float_dtype(err, op, "src", src));
    } else if (!omni_dtype_size(dst->dtype)) {
        return omni_error_set(err, OMNI_EDTYPE, "%s: dst has invalid dtype %d", op, (int)dst->dtype);
    }
    int64_t n = omni_tensor_numel(dst);
    if (omni_tensor_numel(src) != n) {
        char a[160], b[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: dst has shape %s (%lld elements) but src has shape %s (%lld elements)",
                              op, omni_shape_str(dst->ndim, dst->shape, a, sizeof a), (long long)n,
                              omni_shape_str(src->ndim, src->shape, b, sizeof b),
                              (long long)omni_tensor_numel(src));
    }
    TRY(omni__check_writable(err, op, "dst", dst));
    if (dst->device.type != OMNI_DEVICE_CPU || src->device.type != OMNI_DEVICE_CPU) {
#ifdef OMNI_HAVE_CUDA
        if (dst->device.type == OMNI_DEVICE_CUDA || src->device.type == OMNI_DEVICE_CUDA)
            return copy_cuda(err, op, dst, src, n);
#endif
        TRY(omni__cpu_only(err, op, dst->device.type != OMNI_DEVICE_CPU ? dst : src));
    }
    if (n == 0)
        return OMNI_OK;
    size_t ds = omni_dtype_size(dst->dtype), ss = omni_dtype_size(src->dtype);
    char *dp = omni_tensor_data(dst);
    const char *sp = omni_tensor_data(src);
    if (omni_tensor_is_contiguous(dst) && omni_tensor_is_contiguous(src)) {
        omni_copy_cpu(dp, dst->dtype, sp, src->dtype, n);
        return OMNI_OK;
    }
    struct flat_iter di = {0}, si = {0};
    for (int64_t i = 0; i < n; i++) {
        omni_copy_cpu(dp + di.off * (int64_t)ds, dst->dtype, sp + si.off * (int64_t)ss, src->dtype, 1);
        iter_next(&di, dst);
        iter_next(&si, src);
    }
    return OMNI_OK;
}

int omni_op_lora_update(struct omni_tensor *y, const struct omni_tensor *x,
                        const struct omni_tensor *a, const struct omni_tensor *b, float scale,
                        struct omni_error *err)
{
    static const char op[] = "omni_op_lora_update";
    char s1[160], s2[160];
    TRY(omni__check_present(err, op, "y", y));
    TRY(omni__check_present(err, op, "x", x));
    TRY(omni__check_present(err, op, "a", a));
    TRY(omni__check_present(err, op, "b", b));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32));
    TRY(omni__check_float_dtype(err, op, "a", a));
    TRY(omni__check_dtype(err, op, "b", b, a->dtype));
    if (a->ndim != 2 || b->ndim != 2 || b->shape[1] != a->shape[0])
        return omni_error_set(err, OMNI_ESHAPE, "%s: a %s and b %s must be (R,K) and (N,R)", op,
                              omni_shape_str(a->ndim, a->shape, s1, sizeof s1),
                              omni_shape_str(b->ndim, b->shape, s2, sizeof s2));
    TRY(omni__check_contiguous(err, op, "a", a));
    TRY(omni__check_contiguous(err, op, "b", b));
    const int64_t R = a->shape[0], K = a->shape[1], N = b->shape[0];
    if (R > OMNI_LORA_MAX_R)
        return omni_error_set(err, OMNI_EINVAL, "%s: a %s has rank %lld, at most %d is supported",
                              op, omni_shape_str(a->ndim, a->shape, s1, sizeof s1), (long long)R,
                              OMNI_LORA_MAX_R);
    if (x->ndim < 1 || x->shape[x->ndim - 1] != K)
        return omni_error_set(err, OMNI_ESHAPE, "%s: x has shape %s, its last dim must be K=%lld of a %s",
                              op, omni_shape_str(x->ndim, x->shape, s1, sizeof s1), (long long)K,
                              omni_shape_str(a->ndim, a->shape, s2, sizeof s2));
    if (y->ndim < 1 || y->shape[y->ndim - 1] != N)
        return omni_error_set(err, OMNI_ESHAPE, "%s: y has shape %s, its last dim must be N=%lld of b %s",
                              op, omni_shape_str(y->ndim, y->shape, s1, sizeof s1), (long long)N,
                              omni_shape_str(b->ndim, b->shape, s2, sizeof s2));
    int64_t M, Kx, ldx, My, Ny, ldy;
    TRY(omni__rows(err, op, "x", x, 0, &M, &Kx, &ldx));
    TRY(omni__rows(err, op, "y", y, 1, &My, &Ny, &ldy));
    if (My != M)
        return omni_error_set(err, OMNI_ESHAPE, "%s: y has shape %s (%lld rows) but x has shape %s (%lld rows)",
                              op, omni_shape_str(y->ndim, y->shape, s1, sizeof s1), (long long)My,
                              omni_shape_str(x->ndim, x->shape, s2, sizeof s2), (long long)M);
    if (M > OMNI_LORA_MAX_M)
        return omni_error_set(err, OMNI_EINVAL, "%s: x %s has %lld rows, at most %d are supported",
                              op, omni_shape_str(x->ndim, x->shape, s1, sizeof s1), (long long)M,
                              OMNI_LORA_MAX_M);
    TRY(omni__check_writable(err, op, "y", y));
    TRY(omni__check_same_device(err, op, "x", x, "y", y));
    TRY(omni__check_same_device(err, op, "a", a, "y", y));
    TRY(omni__check_same_device(err, op, "b", b, "y", y));
    OMNI__CUDA_DISPATCH(err, op, y->device,
                        omni_lora_update_cuda(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx,
                                              omni_tensor_data(a), omni_tensor_data(b), a->dtype,
                                              M, N, K, R, scale));
    TRY(omni__cpu_only(err, op, y));
    omni_lora_update_cpu(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, omni_tensor_data(a),
                         omni_tensor_data(b), a->dtype, M, N, K, R, scale);
    return OMNI_OK;
}
