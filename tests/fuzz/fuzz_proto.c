/* libFuzzer target: arbitrary bytes as every IPC message a peer can send.
 *
 * Each input is decoded as a whole frame (omni__ipc_decode: size limit,
 * Envelope, protocol version, structural checks) and, independently, as each
 * message type on its own, whose checks (tensor-reference validator, params
 * tree rebuild, segment names) then run on what protobuf-c accepted. A frame
 * that decodes is also re-encoded and decoded again. No I/O: nothing
 * here maps segments or opens handles.
 *
 * Seeds: OMNI_FUZZ_SEEDS=DIR makes the target write one valid frame of each
 * message type into DIR at start-up, e.g.
 *   mkdir -p /tmp/seeds && OMNI_FUZZ_SEEDS=/tmp/seeds build/fuzz/fuzz_proto -runs=0
 *   build/fuzz/fuzz_proto /tmp/seeds -max_total_time=60
 *
 * Build: make fuzz (needs the core/ipc sources, the generated omni.pb-c.c, libzmq and
 * libprotobuf-c on the fuzz rule's command line). Run:
 *   build/fuzz/fuzz_proto -max_total_time=60 -max_len=65536 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc_impl.h"

#define LIMIT (1u << 20)

static void exercise(Omni__Envelope *e)
{
    struct omni_error err;
    omni_error_clear(&err);
    if (omni__ipc_msg_check(e, &err) != OMNI_OK)
        return;
    switch (e->body_case) {
    case OMNI__ENVELOPE__BODY_LOAD: {
        struct omni__ynode *root = NULL;
        if (omni__ipc_params_unflatten(e->load->params, e->load->n_params, e->load->file, &root, &err) == OMNI_OK)
            omni__ipc_params_free(root);
        break;
    }
    case OMNI__ENVELOPE__BODY_RUN:
        for (size_t i = 0; i < e->run->n_inputs; i++) {
            uint64_t n;
            omni__ipc_ref_check(e->run->inputs[i], &n, &err);
        }
        break;
    case OMNI__ENVELOPE__BODY_DONE:
        for (size_t i = 0; i < e->done->n_outputs; i++) {
            uint64_t n;
            omni__ipc_ref_check(e->done->outputs[i], &n, &err);
        }
        break;
    case OMNI__ENVELOPE__BODY_HELLO:
        omni__ipc_shm_name_ok(e->hello->shm_probe);
        break;
    default:
        break;
    }
}

/* Decode `data` as one message type, then check it as the body of an Envelope. */
#define AS(type, lower, CASE, member)                                                              \
    do {                                                                                           \
        Omni__##type *m = omni__##lower##__unpack(NULL, size, data);                               \
        if (m) {                                                                                   \
            Omni__Envelope env = OMNI__ENVELOPE__INIT;                                             \
            env.protocol = OMNI_IPC_PROTOCOL;                                                      \
            env.body_case = OMNI__ENVELOPE__BODY_##CASE;                                           \
            env.member = m;                                                                        \
            exercise(&env);                                                                        \
            omni__##lower##__free_unpacked(m, NULL);                                               \
        }                                                                                          \
    } while (0)

static void seed(const char *dir, const char *name, Omni__Envelope *e)
{
    void *buf;
    size_t n;
    if (omni__ipc_encode(e, &buf, &n, NULL))
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(buf, 1, n, f);
        fclose(f);
    }
    free(buf);
}

static void write_seeds(const char *dir)
{
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    uint8_t uuid[16] = {7}, handle[64] = {1};
    ProtobufCBinaryData uu = {16, uuid};
    Omni__Hello h = OMNI__HELLO__INIT;
    h.protocol = OMNI_IPC_PROTOCOL;
    h.abi_major = 1;
    h.pid = 42;
    h.hostname = "host";
    h.boot_id = "b00t";
    h.shm_probe = "/omni.42.0.1";
    h.cuda_uuids = &uu;
    h.n_cuda_uuids = 1;
    env.body_case = OMNI__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    seed(dir, "hello", &env);
    Omni__ParamNode root = OMNI__PARAM_NODE__INIT, k = OMNI__PARAM_NODE__INIT, sq = OMNI__PARAM_NODE__INIT,
                    it = OMNI__PARAM_NODE__INIT;
    root.kind = 2;
    root.parent = -1;
    k.parent = 0;
    k.key = "mul";
    k.scalar = "1.5";
    sq.kind = 1;
    sq.parent = 0;
    sq.key = "list";
    it.parent = 2;
    it.scalar = "3";
    Omni__ParamNode *params[4] = {&root, &k, &sq, &it};
    char *dirs[1] = {"/plugins"};
    Omni__LoadStage l = OMNI__LOAD_STAGE__INIT;
    l.call_id = 2;
    l.stage = "s";
    l.type = "test_sleep";
    l.plugin_dirs = dirs;
    l.n_plugin_dirs = 1;
    l.params = params;
    l.n_params = 4;
    env.body_case = OMNI__ENVELOPE__BODY_LOAD;
    env.load = &l;
    seed(dir, "load", &env);
    int64_t shape[2] = {2, 3}, strides[2] = {3, 1};
    float vals[6] = {1, 2, 3, 4, 5, 6};
    Omni__ShmRef shm = OMNI__SHM_REF__INIT;
    shm.name = "/omni.42.7.3";
    shm.size = 4096;
    Omni__CudaIpcRef cu = OMNI__CUDA_IPC_REF__INIT;
    cu.mem_handle = (ProtobufCBinaryData){64, handle};
    cu.event_handle = (ProtobufCBinaryData){64, handle};
    cu.device_uuid = uu;
    cu.size = 1 << 20;
    Omni__TensorRef refs[3];
    Omni__TensorRef *rp[3];
    for (int i = 0; i < 3; i++) {
        omni__tensor_ref__init(&refs[i]);
        refs[i].port = i;
        refs[i].dtype = OMNI_DTYPE_F32;
        refs[i].n_shape = refs[i].n_strides = 2;
        refs[i].shape = shape;
        refs[i].strides = strides;
        rp[i] = &refs[i];
    }
    refs[0].data_case = OMNI__TENSOR_REF__DATA_SHM;
    refs[0].shm = &shm;
    refs[1].data_case = OMNI__TENSOR_REF__DATA_CUDA;
    refs[1].cuda = &cu;
    refs[2].data_case = OMNI__TENSOR_REF__DATA_INLINE_DATA;
    refs[2].inline_data = (ProtobufCBinaryData){sizeof vals, (uint8_t *)vals};
    Omni__KeyValue kv = OMNI__KEY_VALUE__INIT, *kvp = &kv;
    kv.key = "sleep_ms";
    kv.value = "5";
    Omni__RunStage run = OMNI__RUN_STAGE__INIT;
    run.request_id = 7;
    run.call_id = 3;
    run.stage = "s";
    run.task = "t2i";
    run.step_index = -1;
    run.options = &kvp;
    run.n_options = 1;
    run.inputs = rp;
    run.n_inputs = 3;
    env.body_case = OMNI__ENVELOPE__BODY_RUN;
    env.run = &run;
    seed(dir, "run", &env);
    Omni__Timings tm = OMNI__TIMINGS__INIT;
    tm.run_ms = 1.5;
    Omni__Done d = OMNI__DONE__INIT;
    d.call_id = 3;
    d.outputs = rp;
    d.n_outputs = 3;
    d.timings = &tm;
    env.body_case = OMNI__ENVELOPE__BODY_DONE;
    env.done = &d;
    seed(dir, "done", &env);
    Omni__Error er = OMNI__ERROR__INIT;
    er.call_id = 3;
    er.status = OMNI_EPROTO;
    er.message = "bad";
    er.stage = "s";
    env.body_case = OMNI__ENVELOPE__BODY_ERROR;
    env.error = &er;
    seed(dir, "error", &env);
    Omni__Heartbeat hb = OMNI__HEARTBEAT__INIT;
    hb.seq = 9;
    env.body_case = OMNI__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    seed(dir, "heartbeat", &env);
    Omni__Cancel c = OMNI__CANCEL__INIT;
    c.request_id = 7;
    c.call_id = 4;
    c.finished = 1;
    env.body_case = OMNI__ENVELOPE__BODY_CANCEL;
    env.cancel = &c;
    seed(dir, "cancel", &env);
    Omni__Shutdown sd = OMNI__SHUTDOWN__INIT;
    sd.reason = "bye";
    env.body_case = OMNI__ENVELOPE__BODY_SHUTDOWN;
    env.shutdown = &sd;
    seed(dir, "shutdown", &env);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("OMNI_FUZZ_SEEDS");
    if (dir && *dir)
        write_seeds(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct omni_error err;
    omni_error_clear(&err);
    Omni__Envelope *e = NULL;
    if (omni__ipc_decode(data, size, LIMIT, &e, &err) == OMNI_OK) {
        exercise(e);
        void *buf;
        size_t n;
        if (omni__ipc_encode(e, &buf, &n, &err) == OMNI_OK) {
            /* Not required to decode again: protobuf-c re-emits unknown and
             * repeated-scalar fields of a hostile frame in its own way, and
             * omni never re-sends a message it received. Packing must not crash. */
            Omni__Envelope *again = NULL;
            if (omni__ipc_decode(buf, n, LIMIT, &again, &err) == OMNI_OK)
                exercise(again);
            omni__ipc_msg_free(again);
            free(buf);
        }
        omni__ipc_msg_free(e);
    }
    AS(Hello, hello, HELLO, hello);
    AS(LoadStage, load_stage, LOAD, load);
    AS(RunStage, run_stage, RUN, run);
    AS(Done, done, DONE, done);
    AS(Error, error, ERROR, error);
    AS(Heartbeat, heartbeat, HEARTBEAT, heartbeat);
    AS(Cancel, cancel, CANCEL, cancel);
    AS(Shutdown, shutdown, SHUTDOWN, shutdown);
    Omni__TensorRef *r = omni__tensor_ref__unpack(NULL, size, data);
    if (r) {
        uint64_t n;
        omni__ipc_ref_check(r, &n, &err);
        omni__tensor_ref__free_unpacked(r, NULL);
    }
    Omni__ParamNode *p = omni__param_node__unpack(NULL, size, data);
    if (p) {
        struct omni__ynode *root = NULL;
        Omni__ParamNode *one[1] = {p};
        if (omni__ipc_params_unflatten(one, 1, "fuzz", &root, &err) == OMNI_OK)
            omni__ipc_params_free(root);
        omni__param_node__free_unpacked(p, NULL);
    }
    return 0;
}
