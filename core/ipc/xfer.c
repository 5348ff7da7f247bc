/* Tensors <-> tensor references (proto TensorRef).
 *
 * What crosses, by what the receiving peer can take:
 *   host tensor, peer on this host that mapped our probe segment:
 *       a segment name + offset. A tensor that already lives in a segment of
 *       the same request crosses by that name (no copy); any other host
 *       tensor is copied once into a new segment, which the peer maps.
 *   GPU tensor, peer on this host that sees the same GPU (by UUID):
 *       a CUDA IPC handle + offset + event (cuda_ipc.c).
 *   otherwise (another host, another GPU, OMNI_IPC_INLINE=1):
 *       the bytes inline; GPU tensors go through the host. Said once in the log.
 * Importing maps / opens the memory; only inline bytes are copied. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc_impl.h"

void omni__xfer_log_once(int reason, const char *fmt, ...)
{
    static atomic_int said[8];
    if (reason < 0 || reason >= 8 || atomic_exchange(&said[reason], 1))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    OMNI_LOG(OMNI_LOG_WARN, "%s", msg);
}

static int fill_layout(Omni__TensorRef *ref, const struct omni_tensor *t, int contiguous)
{
    ref->dtype = t->dtype;
    ref->n_shape = ref->n_strides = (size_t)t->ndim;
    if (t->ndim > 0) {
        ref->shape = malloc((size_t)t->ndim * sizeof *ref->shape);
        ref->strides = malloc((size_t)t->ndim * sizeof *ref->strides);
        if (!ref->shape || !ref->strides)
            return -1;
    }
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        ref->shape[i] = t->shape[i];
        ref->strides[i] = contiguous ? s : t->strides[i];
        s *= t->shape[i];
    }
    return 0;
}

static int seg_record(struct omni__xfer_req *x, const char *name)
{
    if (x->n_segs == x->cap_segs) {
        int cap = x->cap_segs ? 2 * x->cap_segs : 16;
        void *r = realloc(x->segs, (size_t)cap * sizeof *x->segs);
        if (!r)
            return -1;
        x->segs = r;
        x->cap_segs = cap;
    }
    snprintf(x->segs[x->n_segs++], OMNI_IPC_SHM_NAME_MAX, "%s", name);
    return 0;
}

static void copy_out(void *dst, const struct omni_tensor *t)
{
    size_t nbytes = omni_tensor_nbytes(t);
    if (omni_tensor_is_contiguous(t)) {
        memcpy(dst, omni_tensor_data(t), nbytes);
        return;
    }
    struct omni_tensor tmp; /* gather through the core's strided copy */
    if (omni_tensor_copy_to(&tmp, t, OMNI_CPU, NULL) == OMNI_OK) {
        memcpy(dst, omni_tensor_data(&tmp), nbytes);
        omni_tensor_release(&tmp);
    }
}

static int gpu_shared_with(const struct omni__peer_caps *peer, int ordinal)
{
    uint8_t mine[64][16];
    int n = omni__cuda_uuids(mine, 64);
    if (ordinal < 0 || ordinal >= n)
        return 0;
    for (int i = 0; i < peer->n_cuda && i < 16; i++)
        if (!memcmp(peer->cuda_uuids[i], mine[ordinal], 16))
            return 1;
    return 0;
}

int omni__xfer_export(struct omni__xfer_req *x, const struct omni__peer_caps *peer, const struct omni_tensor *t,
                      Omni__TensorRef *ref, const char *what, struct omni_error *err)
{
    int port = ref->port;
    omni__tensor_ref__init(ref);
    ref->port = port;
    struct omni_tensor host = {0};
    const struct omni_tensor *src = t;
    int rc = OMNI_OK;
    if (t->device.type == OMNI_DEVICE_CUDA) {
        if (peer->same_host && !peer->force_inline && gpu_shared_with(peer, t->device.index)) {
            Omni__CudaIpcRef *c = malloc(sizeof *c);
            if (!c || fill_layout(ref, t, 0)) {
                free(c);
                rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
                goto fail;
            }
            omni__cuda_ipc_ref__init(c);
            ref->data_case = OMNI__TENSOR_REF__DATA_CUDA;
            ref->cuda = c;
            if ((rc = omni__cuda_export(t, &x->cuda, c, err)))
                goto fail;
            x->used_cuda = 1;
            return OMNI_OK;
        }
        omni__xfer_log_once(0, "%s: the peer %s, so GPU tensors cross through host memory (a copy each way)",
                            what, peer->same_host ? "does not see the same GPU" : "is on another host");
        if ((rc = omni_tensor_copy_to(&host, t, OMNI_CPU, err)))
            goto fail;
        src = &host;
    }
    size_t nbytes = omni_tensor_nbytes(src);
    if (peer->same_host && peer->shm_ok && !peer->force_inline) {
        char name[OMNI_IPC_SHM_NAME_MAX];
        Omni__ShmRef *s = malloc(sizeof *s);
        if (!s) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto fail;
        }
        omni__shm_ref__init(s);
        ref->data_case = OMNI__TENSOR_REF__DATA_SHM;
        ref->shm = s;
        if (omni__shm_name_of(src->buf, x->request, name, sizeof name)) {
            /* already shared for this request: same memory, same layout */
            if (fill_layout(ref, src, 0) || !(s->name = strdup(name))) {
                rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
                goto fail;
            }
            s->offset = (uint64_t)src->offset;
            s->size = omni_buffer_size(src->buf);
        } else {
            struct omni_buffer *seg;
            if ((rc = omni__shm_create(x->request, nbytes, name, &seg, err)))
                goto fail;
            if (seg_record(x, name)) {
                omni_buffer_unref(seg);
                omni__shm_unlink(name);
                rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
                goto fail;
            }
            copy_out(omni_buffer_data(seg), src);
            s->size = omni_buffer_size(seg);
            omni_buffer_unref(seg); /* the segment keeps the bytes until unlinked */
            if (fill_layout(ref, src, 1) || !(s->name = strdup(name))) {
                rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
                goto fail;
            }
            s->offset = 0;
        }
    } else {
        if (!peer->force_inline)
            omni__xfer_log_once(1, "%s: the peer %s, so tensors cross inline in messages (a copy each way)", what,
                                peer->same_host ? "cannot map this process's shared memory" : "is on another host");
        ref->data_case = OMNI__TENSOR_REF__DATA_INLINE_DATA;
        if (fill_layout(ref, src, 1) || !(ref->inline_data.data = malloc(nbytes ? nbytes : 1))) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory for %zu inline bytes", nbytes);
            goto fail;
        }
        ref->inline_data.len = nbytes;
        copy_out(ref->inline_data.data, src);
    }
    omni_tensor_release(&host);
    return OMNI_OK;
fail:
    omni_tensor_release(&host);
    omni__xfer_ref_clear(ref);
    if (!rc)
        rc = OMNI_EINTERNAL;
    omni_error_prefix(err, "%s: ", what);
    return rc;
}

void omni__xfer_ref_clear(Omni__TensorRef *ref)
{
    free(ref->shape);
    free(ref->strides);
    ref->shape = ref->strides = NULL;
    ref->n_shape = ref->n_strides = 0;
    if (ref->data_case == OMNI__TENSOR_REF__DATA_SHM && ref->shm) {
        if (ref->shm->name != protobuf_c_empty_string)
            free(ref->shm->name);
        free(ref->shm);
    } else if (ref->data_case == OMNI__TENSOR_REF__DATA_CUDA && ref->cuda) {
        omni__cuda_ref_clear(ref->cuda);
        free(ref->cuda);
    } else if (ref->data_case == OMNI__TENSOR_REF__DATA_INLINE_DATA) {
        free(ref->inline_data.data);
    }
    ref->data_case = OMNI__TENSOR_REF__DATA__NOT_SET;
    ref->shm = NULL;
}

int omni__xfer_import(struct omni__xfer_req *x, const Omni__TensorRef *ref, struct omni_tensor *t,
                      struct omni_error *err)
{
    memset(t, 0, sizeof *t);
    int rc = omni__ipc_ref_check(ref, NULL, err);
    if (rc)
        return rc;
    struct omni_tensor d = {0};
    d.dtype = ref->dtype;
    d.ndim = (int32_t)ref->n_shape;
    for (int i = 0; i < d.ndim; i++) {
        d.shape[i] = ref->shape[i];
        d.strides[i] = ref->strides[i];
    }
    switch (ref->data_case) {
    case OMNI__TENSOR_REF__DATA_SHM: {
        struct omni_buffer *b;
        if ((rc = omni__shm_map(ref->shm->name, ref->shm->size, x->request, &b, err)))
            return rc;
        d.buf = b;
        d.offset = (int64_t)ref->shm->offset;
        d.device = OMNI_CPU;
        break;
    }
    case OMNI__TENSOR_REF__DATA_CUDA:
        if ((rc = omni__cuda_import(ref->cuda, &d, err)))
            return rc;
        x->used_cuda = 1;
        break;
    case OMNI__TENSOR_REF__DATA_INLINE_DATA: {
        struct omni_buffer *b = omni_buffer_new(OMNI_CPU, ref->inline_data.len, err);
        if (!b)
            return err ? err->status : OMNI_ENOMEM;
        if (ref->inline_data.len)
            memcpy(omni_buffer_data(b), ref->inline_data.data, ref->inline_data.len);
        d.buf = b;
        d.offset = 0;
        d.device = OMNI_CPU;
        break;
    }
    default:
        return omni_error_set(err, OMNI_EPROTO, "tensor reference carries no data");
    }
    *t = d;
    return OMNI_OK;
}

void omni__xfer_req_end(struct omni__xfer_req *x)
{
    for (int i = 0; i < x->n_segs; i++)
        omni__shm_unlink(x->segs[i]);
    free(x->segs);
    x->segs = NULL;
    x->n_segs = x->cap_segs = 0;
    if (x->cuda) {
        omni__cuda_exports_release(x->cuda);
        x->cuda = NULL;
    }
    if (x->used_cuda)
        omni__cuda_imports_flush();
    x->used_cuda = 0;
}
