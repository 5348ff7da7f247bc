/* core/ipc/ipc_impl.h - internals of core/ipc: messages, segments, the GPU
 * path, tensor references, spawning, the worker. See ipc.h for the design. */
#ifndef OMNI_IPC_IMPL_H
#define OMNI_IPC_IMPL_H

#include "ipc/ipc.h"
#include "omni.pb-c.h"

/* ---- wire.c: messages (no I/O) ---------------------------------------------------- */

/* Decode one frame. Refuses (OMNI_EPROTO, message says why) a frame larger
 * than max_message, one that is not an Envelope, a protocol other than
 * OMNI_IPC_PROTOCOL, an empty body, and any body that fails
 * omni__ipc_msg_check. (transfer full: omni__ipc_msg_free) */
OMNI_API int omni__ipc_decode(const void *data, size_t len, size_t max_message,
                              Omni__Envelope **out, struct omni_error *err);
OMNI_API void omni__ipc_msg_free(Omni__Envelope *e);
/* Structural checks of a decoded body: tensor references, param trees,
 * counts and string sizes. */
OMNI_API int omni__ipc_msg_check(const Omni__Envelope *e, struct omni_error *err);
/* Pack e (its protocol field is set here) into a new malloc'd buffer.
 * (transfer full: free) */
OMNI_API int omni__ipc_encode(Omni__Envelope *e, void **data, size_t *len, struct omni_error *err);

/* A tensor reference is well formed: known dtype, rank <= OMNI_MAX_DIMS,
 * non-negative dims and strides, no overflow, and every element lies inside
 * the segment / block / inline bytes it names. *nbytes (may be NULL) gets the
 * byte extent from element 0. */
OMNI_API int omni__ipc_ref_check(const Omni__TensorRef *r, uint64_t *nbytes, struct omni_error *err);
/* "/omni.<pid>.<request>.<counter>" and nothing else. */
OMNI_API int omni__ipc_shm_name_ok(const char *name);

struct omni__ynode;
/* Params tree <-> flat ParamNode list. flat_free frees what flatten made. */
int omni__ipc_params_flatten(const struct omni__ynode *root, Omni__ParamNode ***nodes, size_t *n,
                             struct omni_error *err);
void omni__ipc_params_flat_free(Omni__ParamNode **nodes, size_t n);
/* (transfer full: omni__ynode_free); *out is NULL when n == 0. */
OMNI_API int omni__ipc_params_unflatten(Omni__ParamNode *const *nodes, size_t n, const char *file,
                                        struct omni__ynode **out, struct omni_error *err);
OMNI_API void omni__ipc_params_free(struct omni__ynode *root); /* omni__ynode_free, for tests */

/* ---- shm.c: segments ---------------------------------------------------------- */

/* Create /omni.<pid>.<request>.<counter> of size bytes, mapped read-write.
 * The segment is recorded as linked and owned by `request` until
 * omni__shm_unlink. (transfer full: the buffer maps it; unlinking is separate) */
int omni__shm_create(uint64_t request, size_t size, char name[OMNI_IPC_SHM_NAME_MAX],
                     struct omni_buffer **buf, struct omni_error *err);
/* Map a peer's segment read-only; size must equal the segment's. */
int omni__shm_map(const char *name, uint64_t size, uint64_t request, struct omni_buffer **buf,
                  struct omni_error *err);
/* Name of the linked segment buf maps, when it belongs to `request`; NULL otherwise. */
const char *omni__shm_name_of(const struct omni_buffer *buf, uint64_t request, char *name,
                              size_t size);
void omni__shm_unlink(const char *name);

/* ---- cuda_ipc.c: the GPU path (stubs without OMNI_HAVE_CUDA) -------------------- */

struct omni__cuda_exports; /* what a process exported for one request */
int omni__cuda_ipc_supported(void);
/* UUIDs of the visible devices (16 bytes each) by ordinal; returns the count. */
int omni__cuda_uuids(uint8_t uuids[][16], int max);
/* Export t (on a CUDA device) into ref->cuda: the block is kept alive (and not
 * reused) until omni__cuda_exports_release. */
int omni__cuda_export(const struct omni_tensor *t, struct omni__cuda_exports **keep,
                      Omni__CudaIpcRef *ref, struct omni_error *err);
/* Open ref on the local ordinal whose UUID matches; the stream waits on the
 * exporter's event. (transfer full) */
int omni__cuda_import(const Omni__CudaIpcRef *ref, struct omni_tensor *t, struct omni_error *err);
/* Wait for the device, then free what was exported for a request. */
void omni__cuda_exports_release(struct omni__cuda_exports *x);
void omni__cuda_ref_clear(Omni__CudaIpcRef *ref); /* frees what export put into ref */
/* Close imported handles nothing uses any more, after a device sync. */
void omni__cuda_imports_flush(void);
/* Local ordinal whose UUID is uuid, or -1. */
int omni__cuda_ordinal_of(const uint8_t *uuid, size_t n);

/* ---- xfer.c: tensors <-> references --------------------------------------------- */

/* What the receiving peer can take. */
struct omni__peer_caps {
    int same_host;  /* same boot id */
    int shm_ok;     /* it mapped our probe segment (host tensors by reference) */
    int n_cuda;     /* its visible CUDA devices */
    uint8_t cuda_uuids[16][16];
    int force_inline;
    uint64_t max_message; /* the largest message it accepts (0: unknown) */
};

/* Per-request bookkeeping of the exporting side. */
struct omni__xfer_req {
    uint64_t request;
    char (*segs)[OMNI_IPC_SHM_NAME_MAX]; /* created here: unlinked at the end */
    int n_segs, cap_segs;
    struct omni__cuda_exports *cuda;
    int used_cuda;
    int logged_copy; /* "fell back to a copy" said once per request */
};

/* Describe t for peer: reference to the same memory when possible, else one
 * copy into a new segment (or inline bytes). Fills ref (port set by caller). */
int omni__xfer_export(struct omni__xfer_req *x, const struct omni__peer_caps *peer,
                      const struct omni_tensor *t, Omni__TensorRef *ref, const char *what,
                      struct omni_error *err);
void omni__xfer_ref_clear(Omni__TensorRef *ref);
/* Import a checked reference as a tensor (mapping / opening, no copy except
 * inline bytes). (transfer full) */
int omni__xfer_import(struct omni__xfer_req *x, const Omni__TensorRef *ref, struct omni_tensor *t,
                      struct omni_error *err);
/* Unlink every segment this side created for the request, release GPU exports. */
void omni__xfer_req_end(struct omni__xfer_req *x);

/* The "copy instead of share" note is logged once per process and reason. */
void omni__xfer_log_once(int reason, const char *fmt, ...) OMNI_PRINTF(2, 3);

/* ---- spawn.c ----------------------------------------------------------------------- */

/* A private runtime directory (0700): $XDG_RUNTIME_DIR/omni-XXXXXX or
 * /tmp/omni-<uid>-XXXXXX. */
int omni__ipc_runtime_dir(char *out, size_t size, struct omni_error *err);
/* fork/exec `omni worker --listen endpoint --parent <pid> --process name`
 * (+ `--ipc key=value` for each knob >= 0 in ipc, which may be NULL);
 * *pidfd is a pollable pidfd or -1. */
int omni__ipc_spawn(const char *endpoint, const char *process, const long *ipc, pid_t *pid,
                    int *pidfd, struct omni_error *err);
/* Non-blocking reap of pid: 1 and a description when it has exited. */
int omni__ipc_reap(pid_t pid, char *why, size_t size);
void omni__ipc_registry_add(pid_t pid);
void omni__ipc_registry_remove(pid_t pid);

/* ---- CURVE keys (worker.c) ------------------------------------------------------- */

/* Read a Z85 key (40 chars) from the first line of a file. */
int omni__ipc_read_key(const char *path, char key[41], struct omni_error *err);
/* Write a new keypair: <prefix>.key (secret, 0600) and <prefix>.pub. */
OMNI_API int omni__ipc_keygen(const char *prefix, struct omni_error *err);

/* ---- worker.c ------------------------------------------------------------------------- */

struct omni__worker_options {
    const char *listen;        /* endpoint to bind */
    const char *process;       /* name for logs ("" when started by hand) */
    pid_t parent;              /* exit when this process is gone (0: never) */
    int threads;               /* job threads (>= 1) */
    const char *curve_secret;  /* file: the worker's secret key (tcp) */
    const char *curve_clients; /* file: allowed client public keys, one per line */
    int insecure_tcp;          /* allow tcp without CURVE */
    volatile int *stop;        /* set (by a signal handler) to stop serving */
    const long *ipc;           /* knobs (core/ipc_knobs.h), -1 = not given; NULL: none */
};

/* Serve until *stop, Shutdown, or the parent dies. */
OMNI_API int omni__ipc_worker_serve(const struct omni__worker_options *o, struct omni_error *err);

#endif
