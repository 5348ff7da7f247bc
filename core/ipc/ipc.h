/* core/ipc/ipc.h - multi-process pipelines (internal to libomni).
 *
 * A pipeline's `placement:` entries put stages into worker processes (`omni
 * worker`). The coordinator (the process that called omni_pipeline_load)
 * starts the `endpoint: auto` workers itself (fork/exec of `omni worker`, an
 * ipc:// socket in a private 0700 runtime directory) or connects to the
 * listed endpoints of workers started by hand. Control messages are protobuf-c
 * Envelopes (proto/omni.proto), one per ZeroMQ frame, DEALER (coordinator) to
 * ROUTER (worker). Tensors cross as references (xfer.c): a POSIX
 * shared-memory segment for host tensors, a CUDA IPC memory handle plus an IPC
 * event for GPU tensors on the same host (cuda_ipc.c), inline bytes for a
 * peer on another host.
 *
 * Files: wire.c (encode/decode/validate, no I/O: the fuzz target's surface),
 * shm.c (segments), cuda_ipc.c (GPU path, OMNI_HAVE_CUDA only), xfer.c
 * (tensor <-> reference), client.c (the coordinator side), spawn.c (starting
 * and reaping auto workers), worker.c (the worker side).
 *
 * Lifetimes: every shm segment and exported GPU block belongs to one request
 * of one process (its name is /omni.<pid>.<request>.<counter>); the creator
 * unlinks / releases it when the request ends (the coordinator tells each
 * worker with Cancel{finished}), on every error path, and a peer unlinks the
 * segments of a process it saw die.
 *
 * Tunables (environment, read when a pipeline is loaded / a worker starts):
 *   OMNI_IPC_HEARTBEAT_MS  heartbeat interval (200)
 *   OMNI_IPC_DEAD_MS       silence after which a peer counts as dead (1000)
 *   OMNI_IPC_START_MS      spawn/connect to the first answer (20000)
 *   OMNI_IPC_LOAD_MS       creating and loading one stage (600000)
 *   OMNI_IPC_CALL_MS       one forward/step call (600000)
 *   OMNI_IPC_MAX_MESSAGE   largest accepted message in bytes (268435456);
 *                          ZeroMQ itself drops a peer that sends more than twice that
 *   OMNI_IPC_INLINE        1: send tensors inline even on one host (tests)
 *   OMNI_IPC_INSECURE_TCP  1: allow tcp:// endpoints without CURVE keys
 *   OMNI_CURVE_SERVER_KEY  file with the worker's public key (Z85), for tcp://
 *   OMNI_CURVE_CLIENT_KEY  file with this coordinator's secret key (Z85), for tcp://
 *   OMNI_WORKER_EXE        the omni executable to start auto workers with
 */
#ifndef OMNI_IPC_H
#define OMNI_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ipc_knobs.h"
#include "omni/plugin.h"
#include "omni/status.h"
#include "omni/tensor.h"

/* Bumped on any incompatible change of proto/omni.proto semantics. */
#define OMNI_IPC_PROTOCOL 1u

/* Capability bits (proto Capability). */
#define OMNI_IPC_CAP_SHM 1u
#define OMNI_IPC_CAP_CUDA_IPC 2u
#define OMNI_IPC_CAP_INLINE 4u

#define OMNI_IPC_SHM_NAME_MAX 64
#define OMNI_IPC_CUDA_HANDLE_BYTES 64 /* sizeof(cudaIpcMemHandle_t), sizeof(cudaIpcEventHandle_t) */
#define OMNI_IPC_MAX_PARAM_NODES 4096
#define OMNI_IPC_MAX_TENSORS 256 /* per message */

struct omni__ipc_config {
    int heartbeat_ms;
    int dead_ms;
    int start_ms;
    int load_ms;
    int call_ms;
    size_t max_message;
    int force_inline;
    int insecure_tcp;
};

/* The knobs of core/ipc_knobs.h: the environment, else given[i] when >= 0
 * (the pipeline's ipc: mapping, a worker's --ipc), else the default; given may
 * be NULL. insecure_tcp comes from the environment only. */
void omni__ipc_config_get(struct omni__ipc_config *c, const long *given);
double omni__ipc_now_ms(void); /* CLOCK_MONOTONIC */

/* ---- client.c: the coordinator (what core/executor.c calls) ------------------------
 * Declared weak so that a program built from the core sources without core/ipc (the
 * libFuzzer targets) still links; libomni always has them. */
#define OMNI__IPC_WEAK __attribute__((weak))

struct omni__pipeline_spec;
struct omni__stage_inst;
struct omni__ipc_cluster;
struct omni__ipc_request;

/* Start (endpoint: auto) or connect to every placement's worker, hand it its
 * stages, and wait until all are loaded (bounded). (transfer full) */
OMNI__IPC_WEAK int omni__ipc_open(struct omni__ipc_cluster **out, struct omni__pipeline_spec *spec,
                   struct omni_error *err);
/* Shut down auto workers (SIGKILL after a grace period), disconnect from
 * listed ones, remove the runtime directory. NULL is fine. */
OMNI__IPC_WEAK void omni__ipc_close(struct omni__ipc_cluster *c);
/* Fill the executor's instance slot for a stage hosted by a worker: plugin
 * (for its ports), name (borrowed from the spec), and the device inputs
 * should be on before they cross (the worker's GPU when it is shared by CUDA
 * IPC, else the host); stage stays NULL. */
OMNI__IPC_WEAK void omni__ipc_stage_proxy(struct omni__ipc_cluster *c, int stage, struct omni__stage_inst *si);
/* One forward (use_step 0) or step call of a remote stage, shaped like the
 * stage op: io->in in, io->out and io->advance out. *req is created on first
 * use within a run. Errors name the worker process, its pid and endpoint. */
OMNI__IPC_WEAK int omni__ipc_call(struct omni__ipc_cluster *c, struct omni__ipc_request **req, int stage,
                   int use_step, struct omni_io *io, struct omni_error *err);
/* End of a run: workers free the request's state and segments; this side
 * unlinks its segments. NULL req is fine. */
OMNI__IPC_WEAK void omni__ipc_request_end(struct omni__ipc_cluster *c, struct omni__ipc_request *req);

/* Auto workers alive in this process (tests, diagnostics): pids into out. */
OMNI_API int omni__ipc_live_workers(pid_t *out, int max);
/* Every worker pid this process has started (alive or not), for leak checks. */
OMNI_API int omni__ipc_started_workers(pid_t *out, int max);
/* Unlink every /dev/shm/omni.<pid>.* segment (a dead peer's); returns how many. */
OMNI_API int omni__shm_unlink_pid(pid_t pid);
/* Count /dev/shm/omni.<pid>.* segments (tests). */
OMNI_API int omni__shm_count_pid(pid_t pid);

#endif
