/* core/ops/fill.c - omni_op_zero: checks, then dispatch to kernels/cpu/fill.c
 * or its CUDA twin. Contract in core/include/omni/ops/fill.h. */
#include "omni/ops/fill.h"

#include "cuda_impl.h"
#include "fill.h"
#include "ops/op_check.h"

int omni_op_zero(struct omni_tensor *t, struct omni_error *err)
{
    static const char op[] = "omni_op_zero";
    int rc;
    if ((rc = omni__check_present(err, op, "t", t)) ||
        (rc = omni__check_contiguous(err, op, "t", t)) ||
        (rc = omni__check_writable(err, op, "t", t)))
        return rc;
    const int64_t nbytes = (int64_t)omni_tensor_nbytes(t);
    if (nbytes == 0)
        return OMNI_OK;
    OMNI__CUDA_DISPATCH(err, op, t->device, omni_zero_cuda(omni_tensor_data(t), nbytes));
    if ((rc = omni__cpu_only(err, op, t)))
        return rc;
    omni_zero_cpu(omni_tensor_data(t), nbytes);
    return OMNI_OK;
}
