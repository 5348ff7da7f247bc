/* core/ops/sample.c - omni_op_softmax/argmax/sample and omni_sample_uniform:
 * check, then dispatch to kernels/cpu/sample.c (CUDA: not written yet).
 * Contracts in core/include/omni/ops/sample.h. */
#include "omni/ops/sample.h"

#include <math.h>

#include "cuda_impl.h"
#include "ops/op_check.h"
#include "sample.h"

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

double omni_sample_uniform(uint64_t seed, int64_t step, int64_t row)
{
    return omni__sample_uniform(seed, step, row);
}

int omni_op_softmax(struct omni_tensor *y, const struct omni_tensor *x, struct omni_error *err)
{
    static const char op[] = "omni_op_softmax";
    TRY(omni__check_present(err, op, "y", y));
    TRY(omni__check_present(err, op, "x", x));
    TRY(omni__check_dtype(err, op, "y", y, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "x", x, OMNI_DTYPE_F32));
    TRY(omni__check_same_shape(err, op, "y", y, "x", x));
    int64_t M, V, ldx, ldy;
    TRY(omni__rows(err, op, "x", x, 0, &M, &V, &ldx));
    TRY(omni__rows(err, op, "y", y, 1, &M, &V, &ldy));
    TRY(omni__check_writable(err, op, "y", y));
    TRY(omni__check_same_device(err, op, "y", y, "x", x));
    OMNI__CUDA_DISPATCH(err, op, x->device,
                        omni_softmax_cuda(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, M, V));
    TRY(omni__cpu_only(err, op, x));
    omni_softmax_cpu(omni_tensor_data(y), ldy, omni_tensor_data(x), ldx, M, V);
    return OMNI_OK;
}

/* logits (B, V) f32 rows with V >= 1; ids (B) i32 contiguous */
static int check_ids_logits(struct omni_error *err, const char *op, struct omni_tensor *ids,
                            const struct omni_tensor *logits, int64_t *B, int64_t *V, int64_t *ld)
{
    TRY(omni__check_present(err, op, "ids", ids));
    TRY(omni__check_present(err, op, "logits", logits));
    TRY(omni__check_dtype(err, op, "logits", logits, OMNI_DTYPE_F32));
    TRY(omni__check_dtype(err, op, "ids", ids, OMNI_DTYPE_I32));
    if (logits->ndim != 2) {
        char a[160];
        return omni_error_set(err, OMNI_ESHAPE, "%s: logits has shape %s, expected 2 dims (B,V)", op,
                              omni_shape_str(logits->ndim, logits->shape, a, sizeof a));
    }
    TRY(omni__rows(err, op, "logits", logits, 0, B, V, ld));
    if (*V < 1 || *V > INT32_MAX)
        return omni_error_set(err, OMNI_ESHAPE, "%s: logits has V=%lld, expected 1..2^31-1", op,
                              (long long)*V);
    TRY(omni__check_shape(err, op, "ids", ids, 1, B, "B of logits"));
    TRY(omni__check_contiguous(err, op, "ids", ids));
    TRY(omni__check_writable(err, op, "ids", ids));
    return omni__check_same_device(err, op, "ids", ids, "logits", logits);
}

int omni_op_argmax(struct omni_tensor *ids, const struct omni_tensor *logits, struct omni_error *err)
{
    static const char op[] = "omni_op_argmax";
    int64_t B, V, ld;
    TRY(check_ids_logits(err, op, ids, logits, &B, &V, &ld));
    OMNI__CUDA_DISPATCH(err, op, logits->device,
                        omni_argmax_cuda(omni_tensor_data(ids), omni_tensor_data(logits), ld, B, V));
    TRY(omni__cpu_only(err, op, logits));
    omni_argmax_cpu(omni_tensor_data(ids), omni_tensor_data(logits), ld, B, V);
    return OMNI_OK;
}

static int check_sampling(struct omni_error *err, const char *op, const struct omni_sampling *s)
{
    if (!s)
        return omni_error_set(err, OMNI_EINVAL, "%s: sampling parameters are NULL", op);
    if (s->top_k < 0)
        return omni_error_set(err, OMNI_EINVAL, "%s: top_k %d must be >= 0 (0 = all)", op, (int)s->top_k);
    if (s->top_k != 1 && !(s->temperature > 0.0f && isfinite(s->temperature)))
        return omni_error_set(err, OMNI_EINVAL,
                              "%s: temperature %g must be finite and > 0 unless top_k == 1", op,
                              (double)s->temperature);
    if (isnan(s->top_p))
        return omni_error_set(err, OMNI_EINVAL, "%s: top_p is NaN", op);
    return OMNI_OK;
}

int omni_op_sample(struct omni_tensor *ids, const struct omni_tensor *logits,
                   const struct omni_sampling *s, uint64_t seed, int64_t step,
                   struct omni_error *err)
{
    static const char op[] = "omni_op_sample";
    int64_t B, V, ld;
    TRY(check_ids_logits(err, op, ids, logits, &B, &V, &ld));
    TRY(check_sampling(err, op, s));
    OMNI__CUDA_DISPATCH(err, op, logits->device,
                        omni_sample_cuda(omni_tensor_data(ids), omni_tensor_data(logits), ld, B, V, s,
                                         seed, step));
    TRY(omni__cpu_only(err, op, logits));
    int rc = omni_sample_cpu(omni_tensor_data(ids), omni_tensor_data(logits), ld, B, V, s, seed, step);
    if (rc)
        return omni_error_set(err, rc, "%s: out of memory for V=%lld sampling scratch", op, (long long)V);
    return OMNI_OK;
}

int omni_op_sample_at(struct omni_tensor *ids, const struct omni_tensor *logits,
                      const struct omni_sampling *s, uint64_t seed,
                      const struct omni_tensor *counter, int64_t add, struct omni_error *err)
{
    static const char op[] = "omni_op_sample_at";
    int64_t B, V, ld;
    TRY(check_ids_logits(err, op, ids, logits, &B, &V, &ld));
    TRY(check_sampling(err, op, s));
    TRY(omni__check_present(err, op, "counter", counter));
    TRY(omni__check_dtype(err, op, "counter", counter, OMNI_DTYPE_I64));
    if (omni_tensor_numel(counter) < 1)
        return omni_error_set(err, OMNI_ESHAPE, "%s: counter is empty", op);
    TRY(omni__check_same_device(err, op, "counter", counter, "logits", logits));
    OMNI__CUDA_DISPATCH(err, op, logits->device,
                        omni_sample_at_cuda(omni_tensor_data(ids), omni_tensor_data(logits), ld, B, V,
                                            s, seed, omni_tensor_data(counter), add));
    TRY(omni__cpu_only(err, op, logits));
    int rc = omni_sample_at_cpu(omni_tensor_data(ids), omni_tensor_data(logits), ld, B, V, s, seed,
                                omni_tensor_data(counter), add);
    if (rc)
        return omni_error_set(err, rc, "%s: out of memory for V=%lld sampling scratch", op, (long long)V);
    return OMNI_OK;
}
