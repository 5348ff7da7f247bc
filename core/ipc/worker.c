/* The worker side: `omni worker --listen ENDPOINT` hosts stages for one or
 * more coordinators.
 *
 * The main thread owns the ROUTER socket: it decodes and checks every
 * message (refusing - with an Error answer and a log line - anything
 * malformed, oversized, of another protocol version, or out of order, and
 * then keeps serving), answers Hello and Heartbeat at once, and queues loads,
 * runs and request ends for the job threads, so that heartbeats are answered
 * even while a stage computes or loads weights. Job threads send their
 * answers back through an inproc socket; the main thread forwards them.
 *
 * Stages are kept by name across coordinators: loading the same stage with
 * the same settings again reuses it (a coordinator that restarts reconnects
 * fast); different settings under a taken name are refused. One call at a
 * time runs per stage. Per-request state (recurrent stages) lives here,
 * keyed by (coordinator connection, request id), and is freed when the
 * coordinator ends or cancels the request, or when it has been silent for
 * long (it died) - with the shared-memory segments made for that request. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/ipc_impl.h"
#include "pipeline_impl.h"

#define ID_MAX 256
#define RESULTS_EP "inproc://omni-worker-results"
#define ZAP_EP "inproc://zeromq.zap.01"

enum { J_LOAD, J_RUN, J_END };

struct stage_entry {
    struct omni__stage_inst si;
    char *sig;
    pthread_mutex_t mu; /* one call at a time */
    struct stage_entry *next;
};

struct peer {
    uint8_t id[ID_MAX];
    size_t id_len;
    double last_seen;
    pid_t pid;
    int hello_done;
    struct omni__peer_caps caps;
    char process[64];
    struct peer *next;
};

struct req_state {
    struct stage_entry *st;
    void *state;
};

struct wreq {
    uint8_t peer[ID_MAX];
    size_t peer_len;
    uint64_t id;
    struct req_state *states;
    int n_states;
    struct omni__xfer_req x;
    int running, canceled;
    struct wreq *next;
};

struct job {
    int kind;
    uint8_t peer[ID_MAX];
    size_t peer_len;
    Omni__Envelope *env; /* owned */
    struct omni__peer_caps caps;
    uint64_t request, call_id; /* J_END */
    int reply;                 /* J_END: answer call_id */
    double enqueued;
    struct job *next;
};

struct server {
    struct omni__worker_options opt;
    struct omni__ipc_config cfg;
    void *zctx, *router, *results;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *jobs;
    int stopping;
    int loading; /* a load job is running */
    pthread_t *threads;
    int n_threads;
    pthread_t zap;
    int zap_started;
    uint8_t (*allowed)[32];
    int n_allowed;
    struct stage_entry *stages;
    pthread_mutex_t load_mu;
    struct omni_weights **files;
    int n_files;
    struct wreq *reqs;
    struct peer *peers;
    uint64_t instance;
    atomic_uint_fast64_t served, refused;
    atomic_int in_flight;
    char boot_id[64], hostname[256];
};

static const char *peer_str(const uint8_t *id, size_t n, char *buf, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 3 < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%02x", id[i]);
    buf[k] = '\0';
    return buf;
}

/* ---- answering ---------------------------------------------------------------------------- */

/* Main thread only. */
static void send_to(struct server *S, const uint8_t *peer, size_t peer_len, const void *data, size_t len)
{
    if (zmq_send(S->router, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(S->router, data, len, ZMQ_DONTWAIT) < 0)
        OMNI_LOG(OMNI_LOG_DEBUG, "could not answer a coordinator: %s", zmq_strerror(zmq_errno()));
}

static void send_env_to(struct server *S, const uint8_t *peer, size_t peer_len, Omni__Envelope *e)
{
    void *data;
    size_t len;
    if (omni__ipc_encode(e, &data, &len, NULL))
        return;
    send_to(S, peer, peer_len, data, len);
    free(data);
}

static int encode_error(uint64_t request, uint64_t call_id, int status, const char *stage, const char *msg,
                        void **data, size_t *len)
{
    Omni__Error er = OMNI__ERROR__INIT;
    er.request_id = request;
    er.call_id = call_id;
    er.status = status < 0 ? status : OMNI_EINTERNAL;
    er.message = (char *)msg;
    er.stage = (char *)(stage ? stage : "");
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_ERROR;
    env.error = &er;
    return omni__ipc_encode(&env, data, len, NULL);
}

static void refuse(struct server *S, const uint8_t *peer, size_t peer_len, uint64_t call_id, int status,
                   const char *msg)
{
    char ps[2 * ID_MAX + 1];
    atomic_fetch_add(&S->refused, 1);
    OMNI_LOG(OMNI_LOG_WARN, "refused a message from coordinator %s: %s", peer_str(peer, peer_len, ps, sizeof ps), msg);
    void *data;
    size_t len;
    if (!encode_error(0, call_id, status, NULL, msg, &data, &len)) {
        send_to(S, peer, peer_len, data, len);
        free(data);
    }
}

/* Job threads: hand an encoded answer to the main thread. */
static void post(void *push, const uint8_t *peer, size_t peer_len, void *data, size_t len)
{
    zmq_send(push, peer, peer_len, ZMQ_SNDMORE);
    zmq_send(push, data, len, 0);
    free(data);
}

static void post_error(void *push, const struct job *j, uint64_t request, uint64_t call_id, int status,
                       const char *stage, const char *msg)
{
    void *data;
    size_t len;
    if (!encode_error(request, call_id, status, stage, msg, &data, &len))
        post(push, j->peer, j->peer_len, data, len);
}

static void post_done(void *push, const struct job *j, Omni__Done *d)
{
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_DONE;
    env.done = d;
    void *data;
    size_t len;
    struct omni_error err;
    omni_error_clear(&err);
    if (omni__ipc_encode(&env, &data, &len, &err)) {
        post_error(push, j, d->request_id, d->call_id, err.status, NULL, err.msg);
    } else if (j->caps.max_message && len > j->caps.max_message) {
        /* the coordinator would refuse it: say why instead */
        free(data);
        char msg[200];
        snprintf(msg, sizeof msg, "the answer of %zu bytes exceeds what the coordinator accepts (%llu bytes, its "
                 "OMNI_IPC_MAX_MESSAGE)", len, (unsigned long long)j->caps.max_message);
        post_error(push, j, d->request_id, d->call_id, OMNI_ERANGE, NULL, msg);
    } else {
        post(push, j->peer, j->peer_len, data, len);
    }
}

/* ---- stages and requests (under S->mu) ----------------------------------------------------- */

static struct stage_entry *stage_find(struct server *S, const char *name)
{
    for (struct stage_entry *e = S->stages; e; e = e->next)
        if (!strcmp(e->si.name, name))
            return e;
    return NULL;
}

static struct wreq *req_find(struct server *S, const uint8_t *peer, size_t peer_len, uint64_t id, int create)
{
    for (struct wreq *r = S->reqs; r; r = r->next)
        if (r->id == id && r->peer_len == peer_len && !memcmp(r->peer, peer, peer_len))
            return r;
    if (!create)
        return NULL;
    struct wreq *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    memcpy(r->peer, peer, peer_len);
    r->peer_len = peer_len;
    r->id = id;
    r->x.request = id;
    r->next = S->reqs;
    S->reqs = r;
    return r;
}

static struct peer *peer_find(struct server *S, const uint8_t *id, size_t n, int create)
{
    for (struct peer *p = S->peers; p; p = p->next)
        if (p->id_len == n && !memcmp(p->id, id, n))
            return p;
    if (!create)
        return NULL;
    struct peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    memcpy(p->id, id, n);
    p->id_len = n;
    p->next = S->peers;
    S->peers = p;
    return p;
}

/* Free a request's states and segments. Called by a job thread (state_free
 * takes the stage's lock) with no call of the request running. */
static void req_free(struct server *S, struct wreq *r)
{
    for (int i = 0; i < r->n_states; i++) {
        struct stage_entry *e = r->states[i].st;
        const struct omni_stage_ops *o = e->si.plugin->desc->ops;
        pthread_mutex_lock(&e->mu);
        if (OMNI__HAS_OP(o, state_free))
            o->state_free(e->si.stage, r->states[i].state);
        pthread_mutex_unlock(&e->mu);
    }
    free(r->states);
    omni__xfer_req_end(&r->x);
    free(r);
}

static void push_job(struct server *S, struct job *j, int front)
{
    j->enqueued = omni__ipc_now_ms();
    if (front || !S->jobs) {
        j->next = S->jobs;
        S->jobs = j;
    } else {
        struct job *t = S->jobs;
        while (t->next)
            t = t->next;
        j->next = NULL;
        t->next = j;
    }
    pthread_cond_signal(&S->cv);
}

/* Under S->mu: mark the request ended, drop its queued runs, and queue the
 * job that frees it (which answers call_id when reply is set). */
static void end_request(struct server *S, const uint8_t *peer, size_t peer_len, uint64_t request, uint64_t call_id,
                        int reply, int abandoned)
{
    struct wreq *r = req_find(S, peer, peer_len, request, 0);
    for (struct job **pp = &S->jobs; *pp;) {
        struct job *j = *pp;
        if (j->kind == J_RUN && j->env->run->request_id == request && j->peer_len == peer_len &&
            !memcmp(j->peer, peer, peer_len)) {
            *pp = j->next;
            void *data;
            size_t len;
            if (!encode_error(request, j->env->run->call_id, OMNI_ECANCELED, j->env->run->stage,
                              "the request was canceled before this call ran", &data, &len)) {
                send_to(S, peer, peer_len, data, len);
                free(data);
            }
            atomic_fetch_sub(&S->in_flight, 1);
            omni__ipc_msg_free(j->env);
            free(j);
            continue;
        }
        pp = &j->next;
    }
    if (r)
        r->canceled = 1;
    if (!r && !reply)
        return;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->kind = J_END;
    memcpy(j->peer, peer, peer_len);
    j->peer_len = peer_len;
    j->request = request;
    j->call_id = call_id;
    j->reply = reply;
    push_job(S, j, 1);
    if (abandoned)
        OMNI_LOG(OMNI_LOG_INFO, "request %llu was canceled", (unsigned long long)request);
}

/* ---- jobs ------------------------------------------------------------------------------------- */

static int open_weights(struct server *S, const char *path, struct omni_weights **out, struct omni_error *err)
{
    for (int i = 0; i < S->n_files; i++)
        if (!strcmp(omni_weights_path(S->files[i]), path)) {
            *out = S->files[i];
            return OMNI_OK;
        }
    struct omni_weights *w;
    int rc = omni_weights_open(&w, path, err);
    if (rc)
        return rc;
    void *r = realloc(S->files, (size_t)(S->n_files + 1) * sizeof *S->files);
    if (!r) {
        omni_weights_close(w);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    S->files = r;
    S->files[S->n_files++] = w;
    *out = w;
    return OMNI_OK;
}

static char *load_signature(const Omni__LoadStage *l, const struct omni__ynode *params)
{
    char pbuf[8192] = "";
    if (params)
        omni__ynode_str(params, pbuf, sizeof pbuf);
    size_t n = strlen(l->type) + strlen(l->weights) + strlen(l->prefix) + strlen(l->attach) + strlen(l->plugin_file) +
               strlen(pbuf) + 96;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s|%s|%s|%s|%s|%d:%d|%d|%s", l->type, l->plugin_file, l->weights, l->prefix, l->attach,
                 l->device_type, l->device_index, l->dtype, pbuf);
    return s;
}

static void job_load(struct server *S, void *push, struct job *j)
{
    const Omni__LoadStage *l = j->env->load;
    struct omni_error err;
    omni_error_clear(&err);
    struct omni__ynode *params = NULL;
    struct stage_entry *e = NULL;
    char *sig = NULL;
    int rc = omni__ipc_params_unflatten(l->params, l->n_params, l->file, &params, &err);
    if (!rc && !(sig = load_signature(l, params)))
        rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
    pthread_mutex_lock(&S->load_mu);
    if (!rc) {
        pthread_mutex_lock(&S->mu);
        struct stage_entry *old = stage_find(S, l->stage);
        pthread_mutex_unlock(&S->mu);
        if (old) {
            if (strcmp(old->sig, sig))
                rc = omni_error_set(&err, OMNI_ESTATE,
                                    "stage '%s' is already loaded in this worker with other settings (type, "
                                    "weights, prefix, device, dtype or params); give the stage another name",
                                    l->stage);
            else
                OMNI_LOG(OMNI_LOG_INFO, "stage '%s' is already loaded; reusing it", l->stage);
            goto answer;
        }
    }
    const struct omni__plugin *plug = NULL;
    if (!rc) {
        if (l->plugin_file[0])
            rc = omni__plugin_open_file(l->plugin_file, &plug, &err);
        else
            rc = omni__plugin_find(l->type, (const char *const *)l->plugin_dirs, (int)l->n_plugin_dirs, &plug, &err);
        if (!rc && strcmp(plug->desc->name, l->type))
            rc = omni_error_set(&err, OMNI_EPLUGIN, "plugin %s is '%s', not '%s'", plug->path, plug->desc->name, l->type);
    }
    struct omni_device dev = {l->device_type, l->device_index};
    if (!rc && dev.type == OMNI_DEVICE_CUDA && dev.index >= omni_cuda_device_count())
        rc = omni_error_set(&err, OMNI_EDEVICE, "%s: stage '%s' is placed on cuda:%d but this worker sees %d CUDA device(s)",
                            l->where, l->stage, dev.index, omni_cuda_device_count());
    if (!rc && !(e = calloc(1, sizeof *e)))
        rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
    if (!rc) {
        pthread_mutex_init(&e->mu, NULL);
        OMNI_LOG(OMNI_LOG_INFO, "creating stage '%s' (%s)", l->stage, l->type);
        rc = omni__stage_create(&e->si, plug, l->stage, params, dev, l->dtype, l->where, &err);
    }
    struct omni_weights *w = NULL;
    if (!rc && l->weights[0]) {
        struct omni_error local;
        omni_error_clear(&local);
        if ((rc = open_weights(S, l->weights, &w, &local)))
            omni_error_set(&err, rc, "%s: stage '%s': %s", l->where, l->stage, local.msg);
        else
            OMNI_LOG(OMNI_LOG_INFO, "loading weights of '%s' from %s", l->stage, l->weights);
    }
    if (!rc)
        rc = omni__stage_load(&e->si, w, l->prefix, l->where, &err);
    if (!rc && l->attach[0]) {
        const char *dot = strchr(l->attach, '.');
        char target[256];
        snprintf(target, sizeof target, "%.*s", dot ? (int)(dot - l->attach) : (int)strlen(l->attach), l->attach);
        pthread_mutex_lock(&S->mu);
        struct stage_entry *t = stage_find(S, target);
        pthread_mutex_unlock(&S->mu);
        const struct omni_stage_ops *o = t ? t->si.plugin->desc->ops : NULL;
        if (!dot || !t)
            rc = omni_error_set(&err, OMNI_ENOTFOUND, "%s: stage '%s' attaches to '%s', which is not in this worker",
                                l->where, l->stage, l->attach);
        else if (!OMNI__HAS_OP(o, attach))
            rc = omni_error_set(&err, OMNI_EUNSUPPORTED, "%s: stage '%s' accepts no adapters", l->where, target);
        else {
            struct omni_error local;
            omni_error_clear(&local);
            pthread_mutex_lock(&t->mu);
            rc = o->attach(t->si.stage, dot + 1, e->si.stage, &local);
            pthread_mutex_unlock(&t->mu);
            if (rc)
                omni_error_set(&err, rc, "%s: attaching '%s' to %s: %s", l->where, l->stage, l->attach, local.msg);
        }
    }
    if (!rc) {
        e->sig = sig;
        sig = NULL;
        pthread_mutex_lock(&S->mu);
        e->next = S->stages;
        S->stages = e;
        pthread_mutex_unlock(&S->mu);
        e = NULL;
    }
answer:
    pthread_mutex_unlock(&S->load_mu);
    if (e) {
        if (e->si.stage)
            omni__stage_destroy(&e->si);
        pthread_mutex_destroy(&e->mu);
        free(e);
    }
    free(sig);
    omni__ynode_free(params);
    if (rc) {
        OMNI_LOG(OMNI_LOG_ERROR, "loading stage '%s': %s", l->stage, err.msg);
        post_error(push, j, 0, l->call_id, rc, l->stage, err.msg);
        return;
    }
    Omni__Done d = OMNI__DONE__INIT;
    d.call_id = l->call_id;
    post_done(push, j, &d);
}

static double ms_since(double t) { return omni__ipc_now_ms() - t; }

static void job_run(struct server *S, void *push, struct job *j)
{
    const Omni__RunStage *rs = j->env->run;
    struct omni_error err;
    omni_error_clear(&err);
    Omni__Timings tm = OMNI__TIMINGS__INIT;
    tm.queue_ms = ms_since(j->enqueued);
    int rc = OMNI_OK;
    pthread_mutex_lock(&S->mu);
    struct stage_entry *e = stage_find(S, rs->stage);
    struct wreq *r = e ? req_find(S, j->peer, j->peer_len, rs->request_id, 1) : NULL;
    if (!e)
        rc = omni_error_set(&err, OMNI_ENOTFOUND, "no stage '%s' is loaded in this worker", rs->stage);
    else if (!r)
        rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
    else if (r->canceled)
        rc = omni_error_set(&err, OMNI_ECANCELED, "request %llu was canceled", (unsigned long long)rs->request_id);
    else
        r->running++;
    pthread_mutex_unlock(&S->mu);
    if (rc) {
        post_error(push, j, rs->request_id, rs->call_id, rc, rs->stage, err.msg);
        return;
    }
    const struct omni_plugin_desc *d = e->si.plugin->desc;
    const struct omni_stage_ops *o = d->ops;
    int nin = omni__plugin_port_count(d, OMNI_PORT_IN), nout = omni__plugin_port_count(d, OMNI_PORT_OUT);
    struct omni_tensor *in = calloc((size_t)nin + 1, sizeof *in);
    struct omni_tensor *out = calloc((size_t)nout + 1, sizeof *out);
    Omni__TensorRef *refs = calloc((size_t)nout + 1, sizeof *refs);
    Omni__TensorRef **refp = calloc((size_t)nout + 1, sizeof *refp);
    struct omni__ynode *opts = NULL;
    struct omni_params opt_view = {NULL};
    int64_t advance = 0;
    int status = OMNI_OK;
    char done_msg[OMNI_ERROR_MAX] = "";
    Omni__Done dn = OMNI__DONE__INIT;
    double t0;
    if (!in || !out || !refs || !refp) {
        rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
        goto answer;
    }
    /* inputs: map, then put them where the stage wants them */
    t0 = omni__ipc_now_ms();
    for (size_t k = 0; !rc && k < rs->n_inputs; k++) {
        const Omni__TensorRef *ref = rs->inputs[k];
        const struct omni_port_desc *pd = ref->port < nin ? omni__plugin_port(d, OMNI_PORT_IN, ref->port) : NULL;
        if (!pd) {
            rc = omni_error_set(&err, OMNI_EPROTO, "stage '%s' (%s) has no input port %d", rs->stage, d->name, ref->port);
            break;
        }
        struct omni_tensor t;
        if ((rc = omni__xfer_import(&r->x, ref, &t, &err))) {
            omni_error_prefix(&err, "input '%s': ", pd->name);
            atomic_fetch_add(&S->refused, 1); /* a reference we cannot honour: refused, logged below */
            break;
        }
        struct omni_device need = (pd->flags & OMNI_PORT_HOST) ? OMNI_CPU : e->si.device;
        if (omni_device_eq(t.device, need)) {
            in[ref->port] = t;
        } else {
            rc = omni_tensor_copy_to(&in[ref->port], &t, need, &err);
            omni_tensor_release(&t);
        }
    }
    tm.import_ms = omni__ipc_now_ms() - t0;
    if (!rc && rs->n_options) {
        if (!(opts = omni__ynode_new_map(NULL, 0, 0)))
            rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
        for (size_t k = 0; !rc && k < rs->n_options; k++)
            if (omni__ymap_set_scalar(opts, rs->options[k]->key, rs->options[k]->value, NULL, 0, 0))
                rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
        opt_view = omni__params_of(opts);
    }
    struct omni_run_ctx ctx = {
        .size = sizeof ctx,
        .task = rs->task,
        .position = rs->position,
        .step = rs->step_index,
        .seed = rs->seed,
        .batch = rs->batch,
        .options = opts ? &opt_view : NULL,
    };
    if (!rc) {
        t0 = omni__ipc_now_ms();
        pthread_mutex_lock(&e->mu);
        void *state = NULL;
        int found = 0;
        for (int i = 0; i < r->n_states; i++)
            if (r->states[i].st == e) {
                state = r->states[i].state;
                found = 1;
            }
        if (!found && OMNI__HAS_OP(o, state_new)) {
            struct omni_error local;
            omni_error_clear(&local);
            void *grown = realloc(r->states, (size_t)(r->n_states + 1) * sizeof *r->states);
            if (!grown)
                rc = omni_error_set(&err, OMNI_ENOMEM, "out of memory");
            else if ((r->states = grown, rc = o->state_new(e->si.stage, &ctx, &state, &local)))
                omni_error_set(&err, rc, "%s", local.msg[0] ? local.msg : omni_status_str(rc));
            else
                r->states[r->n_states++] = (struct req_state){e, state};
        }
        if (!rc) {
            struct omni_io io = {.n_in = (uint32_t)nin, .n_out = (uint32_t)nout, .in = in, .out = out, .ctx = &ctx};
            struct omni_error local;
            omni_error_clear(&local);
            int use_step = rs->step && OMNI__HAS_OP(o, step);
            rc = use_step ? o->step(e->si.stage, state, &io, &local) : o->forward(e->si.stage, state, &io, &local);
            advance = io.advance;
            if (rc == OMNI_DONE) {
                status = OMNI_DONE;
                snprintf(done_msg, sizeof done_msg, "%s", local.msg);
                rc = OMNI_OK;
            } else if (rc < 0) {
                omni_error_set(&err, rc, "%s", local.msg[0] ? local.msg : omni_status_str(rc));
            } else {
                rc = OMNI_OK;
            }
        }
        pthread_mutex_unlock(&e->mu);
        tm.run_ms = omni__ipc_now_ms() - t0;
    }
    if (!rc) {
        t0 = omni__ipc_now_ms();
        for (int k = 0; k < nout && !rc; k++) {
            if (!out[k].buf)
                continue;
            const struct omni_port_desc *pd = omni__plugin_port(d, OMNI_PORT_OUT, k);
            char what[300];
            snprintf(what, sizeof what, "output '%s'", pd ? pd->name : "?");
            Omni__TensorRef *ref = &refs[dn.n_outputs];
            ref->port = k;
            if (!(rc = omni__xfer_export(&r->x, &j->caps, &out[k], ref, what, &err)))
                refp[dn.n_outputs++] = ref;
        }
        tm.export_ms = omni__ipc_now_ms() - t0;
    }
answer:
    for (int k = 0; in && k < nin; k++)
        omni_tensor_release(&in[k]);
    for (int k = 0; out && k < nout; k++)
        omni_tensor_release(&out[k]);
    omni__ynode_free(opts);
    if (rc) {
        char ps[2 * ID_MAX + 1];
        OMNI_LOG(OMNI_LOG_WARN, "stage '%s', request %llu from %s: %s", rs->stage, (unsigned long long)rs->request_id,
                 peer_str(j->peer, j->peer_len, ps, sizeof ps), err.msg);
        post_error(push, j, rs->request_id, rs->call_id, rc, rs->stage, err.msg);
    } else {
        dn.request_id = rs->request_id;
        dn.call_id = rs->call_id;
        dn.outputs = refp;
        dn.advance = advance;
        dn.status = status;
        dn.message = done_msg;
        dn.timings = &tm;
        post_done(push, j, &dn);
    }
    for (size_t k = 0; refs && k < (size_t)nout; k++)
        omni__xfer_ref_clear(&refs[k]);
    free(refs);
    free(refp);
    free(in);
    free(out);
    pthread_mutex_lock(&S->mu);
    r->running--;
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
}

static void job_end(struct server *S, void *push, struct job *j)
{
    pthread_mutex_lock(&S->mu);
    struct wreq *r = req_find(S, j->peer, j->peer_len, j->request, 0);
    double until = omni__ipc_now_ms() + S->cfg.call_ms;
    while (r && r->running && omni__ipc_now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&S->cv, &S->mu, &ts);
        r = req_find(S, j->peer, j->peer_len, j->request, 0);
    }
    if (r && !r->running) {
        for (struct wreq **pp = &S->reqs; *pp; pp = &(*pp)->next)
            if (*pp == r) {
                *pp = r->next;
                break;
            }
    } else {
        r = NULL; /* still running after the bound: leave it to the stage, free later */
    }
    pthread_mutex_unlock(&S->mu);
    if (r)
        req_free(S, r);
    if (j->reply) {
        Omni__Done d = OMNI__DONE__INIT;
        d.request_id = j->request;
        d.call_id = j->call_id;
        post_done(push, j, &d);
    }
}

static void *job_main(void *arg)
{
    struct server *S = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    void *push = zmq_socket(S->zctx, ZMQ_PUSH);
    int linger = 1000;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(push, RESULTS_EP);
    pthread_mutex_lock(&S->mu);
    for (;;) {
        /* loads run one at a time and in the order they came (an adapter's
         * load needs its target's); runs and ends run beside them */
        struct job **pick = NULL;
        for (;;) {
            for (struct job **pp = &S->jobs; *pp && !pick; pp = &(*pp)->next)
                if ((*pp)->kind != J_LOAD || !S->loading)
                    pick = pp;
            if (pick || S->stopping)
                break;
            pthread_cond_wait(&S->cv, &S->mu);
        }
        if (!pick)
            break;
        struct job *j = *pick;
        *pick = j->next;
        if (j->kind == J_LOAD)
            S->loading = 1;
        pthread_mutex_unlock(&S->mu);
        if (j->kind == J_LOAD)
            job_load(S, push, j);
        else if (j->kind == J_RUN)
            job_run(S, push, j);
        else
            job_end(S, push, j);
        if (j->kind != J_END)
            atomic_fetch_sub(&S->in_flight, 1);
        atomic_fetch_add(&S->served, 1);
        pthread_mutex_lock(&S->mu);
        if (j->kind == J_LOAD) {
            S->loading = 0;
            pthread_cond_broadcast(&S->cv);
        }
        omni__ipc_msg_free(j->env);
        free(j);
    }
    pthread_mutex_unlock(&S->mu);
    zmq_close(push);
    return NULL;
}

/* ---- the main thread ------------------------------------------------------------------------ */

static void on_hello(struct server *S, struct peer *p, const Omni__Hello *h)
{
    if (h->abi_major != OMNI_ABI_MAJOR) {
        char msg[200];
        snprintf(msg, sizeof msg, "plugin ABI %u.%u is not this worker's %d.%d", h->abi_major, h->abi_minor,
                 OMNI_ABI_MAJOR, OMNI_ABI_MINOR);
        refuse(S, p->id, p->id_len, h->call_id, OMNI_EPROTO, msg);
        return;
    }
    int probe_ok = 0;
    if (h->shm_probe && h->shm_probe[0]) {
        struct omni_buffer *b = NULL;
        if (!omni__shm_map(h->shm_probe, 1, 0, &b, NULL))
            probe_ok = 1;
        omni_buffer_unref(b);
    }
    memset(&p->caps, 0, sizeof p->caps);
    p->caps.same_host = h->boot_id && h->boot_id[0] && !strcmp(h->boot_id, S->boot_id) && h->hostname &&
                        !strcmp(h->hostname, S->hostname);
    p->caps.shm_ok = p->caps.same_host && probe_ok && (h->capabilities & OMNI_IPC_CAP_SHM);
    p->caps.force_inline = S->cfg.force_inline;
    p->caps.max_message = h->max_message;
    if (h->capabilities & OMNI_IPC_CAP_CUDA_IPC)
        for (size_t i = 0; i < h->n_cuda_uuids && i < 16; i++)
            memcpy(p->caps.cuda_uuids[p->caps.n_cuda++], h->cuda_uuids[i].data, 16);
    p->pid = (pid_t)h->pid;
    p->hello_done = 1;
    snprintf(p->process, sizeof p->process, "%s", h->process ? h->process : "");
    char ps[2 * ID_MAX + 1];
    OMNI_LOG(OMNI_LOG_INFO, "coordinator %s (pid %lld on %s%s) connected%s%s", peer_str(p->id, p->id_len, ps, sizeof ps),
             (long long)h->pid, h->hostname ? h->hostname : "?", p->caps.same_host ? ", this host" : "",
             p->caps.shm_ok ? ", shared memory" : "", p->caps.n_cuda ? ", CUDA IPC" : "");
    Omni__Hello r = OMNI__HELLO__INIT;
    r.protocol = OMNI_IPC_PROTOCOL;
    r.abi_major = OMNI_ABI_MAJOR;
    r.abi_minor = OMNI_ABI_MINOR;
    r.build_signature = OMNI_BUILD_SIGNATURE;
    r.capabilities = OMNI_IPC_CAP_SHM | OMNI_IPC_CAP_INLINE | (omni__cuda_ipc_supported() ? OMNI_IPC_CAP_CUDA_IPC : 0);
    r.version = OMNI_VERSION;
    r.pid = getpid();
    r.hostname = S->hostname;
    r.boot_id = S->boot_id;
    r.instance = S->instance;
    r.call_id = h->call_id;
    r.shm_probe_ok = probe_ok;
    r.max_message = S->cfg.max_message;
    r.process = (char *)(S->opt.process ? S->opt.process : "");
    uint8_t uu[16][16];
    ProtobufCBinaryData ub[16];
    int nu = omni__cuda_uuids(uu, 16);
    for (int i = 0; i < nu; i++)
        ub[i] = (ProtobufCBinaryData){16, uu[i]};
    r.n_cuda_uuids = (size_t)nu;
    r.cuda_uuids = ub;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_HELLO;
    env.hello = &r;
    send_env_to(S, p->id, p->id_len, &env);
}

static void on_frame(struct server *S, const uint8_t *id, size_t id_len, const void *data, size_t len)
{
    struct omni_error err;
    omni_error_clear(&err);
    Omni__Envelope *e = NULL;
    if (omni__ipc_decode(data, len, S->cfg.max_message, &e, &err)) {
        refuse(S, id, id_len, 0, err.status, err.msg);
        return;
    }
    pthread_mutex_lock(&S->mu);
    struct peer *p = peer_find(S, id, id_len, 1);
    if (p)
        p->last_seen = omni__ipc_now_ms();
    pthread_mutex_unlock(&S->mu);
    if (!p) {
        omni__ipc_msg_free(e);
        return;
    }
    if (e->body_case != OMNI__ENVELOPE__BODY_HELLO && e->body_case != OMNI__ENVELOPE__BODY_HEARTBEAT && !p->hello_done) {
        refuse(S, id, id_len, 0, OMNI_EPROTO, "a coordinator must say hello first");
        omni__ipc_msg_free(e);
        return;
    }
    switch (e->body_case) {
    case OMNI__ENVELOPE__BODY_HELLO:
        on_hello(S, p, e->hello);
        break;
    case OMNI__ENVELOPE__BODY_HEARTBEAT: {
        Omni__Heartbeat hb = OMNI__HEARTBEAT__INIT;
        hb.seq = e->heartbeat->seq;
        hb.instance = S->instance;
        hb.in_flight = (uint32_t)atomic_load(&S->in_flight);
        hb.served = (uint64_t)atomic_load(&S->served);
        hb.refused = (uint64_t)atomic_load(&S->refused);
        Omni__Envelope env = OMNI__ENVELOPE__INIT;
        env.body_case = OMNI__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        send_env_to(S, id, id_len, &env);
        break;
    }
    case OMNI__ENVELOPE__BODY_LOAD:
    case OMNI__ENVELOPE__BODY_RUN: {
        struct job *j = calloc(1, sizeof *j);
        if (!j) {
            refuse(S, id, id_len, e->body_case == OMNI__ENVELOPE__BODY_RUN ? e->run->call_id : e->load->call_id,
                   OMNI_ENOMEM, "out of memory");
            break;
        }
        j->kind = e->body_case == OMNI__ENVELOPE__BODY_RUN ? J_RUN : J_LOAD;
        memcpy(j->peer, id, id_len);
        j->peer_len = id_len;
        j->env = e;
        pthread_mutex_lock(&S->mu);
        j->caps = p->caps;
        atomic_fetch_add(&S->in_flight, 1);
        push_job(S, j, 0);
        pthread_mutex_unlock(&S->mu);
        return; /* the job owns e */
    }
    case OMNI__ENVELOPE__BODY_CANCEL:
        pthread_mutex_lock(&S->mu);
        end_request(S, id, id_len, e->cancel->request_id, e->cancel->call_id, e->cancel->call_id != 0,
                    !e->cancel->finished);
        pthread_mutex_unlock(&S->mu);
        break; /* the END job answers call_id once the request's state is freed */
    case OMNI__ENVELOPE__BODY_SHUTDOWN:
        OMNI_LOG(OMNI_LOG_INFO, "shutting down: %s", e->shutdown->reason);
        pthread_mutex_lock(&S->mu);
        S->stopping = 1;
        pthread_cond_broadcast(&S->cv);
        pthread_mutex_unlock(&S->mu);
        break;
    default: {
        char msg[64];
        snprintf(msg, sizeof msg, "a worker does not take message type %d", (int)e->body_case);
        refuse(S, id, id_len, 0, OMNI_EPROTO, msg);
        break;
    }
    }
    omni__ipc_msg_free(e);
}

/* Coordinators silent for long are gone: free their requests; on this host,
 * unlink the segments of a coordinator process that died. */
static void reap_peers(struct server *S)
{
    double now = omni__ipc_now_ms();
    double limit = 10.0 * S->cfg.dead_ms > 5000 ? 10.0 * S->cfg.dead_ms : 5000;
    pthread_mutex_lock(&S->mu);
    for (struct peer **pp = &S->peers; *pp;) {
        struct peer *p = *pp;
        if (now - p->last_seen < limit) {
            pp = &p->next;
            continue;
        }
        char ps[2 * ID_MAX + 1];
        OMNI_LOG(OMNI_LOG_INFO, "coordinator %s (pid %ld) went silent; freeing its requests",
                 peer_str(p->id, p->id_len, ps, sizeof ps), (long)p->pid);
        for (struct wreq *r = S->reqs; r; r = r->next)
            if (r->peer_len == p->id_len && !memcmp(r->peer, p->id, p->id_len) && !r->canceled)
                end_request(S, p->id, p->id_len, r->id, 0, 0, 1);
        if (p->caps.same_host && p->pid > 0 && kill(p->pid, 0) && errno == ESRCH)
            omni__shm_unlink_pid(p->pid);
        *pp = p->next;
        free(p);
    }
    pthread_mutex_unlock(&S->mu);
}

/* ---- CURVE: the ZAP handler admits listed client keys only ------------------------------------ */

static int read_allowed(struct server *S, const char *path, struct omni_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return omni_error_set(err, OMNI_EIO, "CURVE clients file %s: %s", path, strerror(errno));
    char line[256];
    int lineno = 0, rc = OMNI_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n \t")] = '\0'; /* no comments: '#' is a Z85 digit */
        if (!line[0])
            continue;
        void *r = realloc(S->allowed, (size_t)(S->n_allowed + 1) * sizeof *S->allowed);
        if (!r) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            break;
        }
        S->allowed = r;
        if (strlen(line) != 40 || !zmq_z85_decode(S->allowed[S->n_allowed], line)) {
            rc = omni_error_set(err, OMNI_EFORMAT, "%s:%d: not a 40-character Z85 public key", path, lineno);
            break;
        }
        S->n_allowed++;
    }
    fclose(f);
    if (!rc && !S->n_allowed)
        rc = omni_error_set(err, OMNI_EFORMAT, "%s: no client keys", path);
    return rc;
}

static void *zap_main(void *arg)
{
    struct server *S = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    void *rep = zmq_socket(S->zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(rep, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(rep, ZAP_EP)) {
        zmq_close(rep);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&S->mu);
        int stop = S->stopping;
        pthread_mutex_unlock(&S->mu);
        if (stop)
            break;
        zmq_pollitem_t it = {rep, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        char frames[8][64];
        size_t sizes[8];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, rep, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            if (n < 8) {
                sizes[n] = zmq_msg_size(&m) < 64 ? zmq_msg_size(&m) : 64;
                memcpy(frames[n], zmq_msg_data(&m), sizes[n]);
                n++;
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        int ok = 0;
        if (n >= 7 && sizes[5] == 5 && !memcmp(frames[5], "CURVE", 5) && sizes[6] == 32)
            for (int i = 0; i < S->n_allowed; i++)
                ok |= !memcmp(S->allowed[i], frames[6], 32);
        if (!ok)
            OMNI_LOG(OMNI_LOG_WARN, "refused a connection: its CURVE key is not in the clients file");
        const char *status = ok ? "200" : "400";
        zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(rep, frames[1], n > 1 ? sizes[1] : 0, ZMQ_SNDMORE);
        zmq_send(rep, status, 3, ZMQ_SNDMORE);
        zmq_send(rep, ok ? "OK" : "not allowed", ok ? 2 : 11, ZMQ_SNDMORE);
        zmq_send(rep, "", 0, ZMQ_SNDMORE);
        zmq_send(rep, "", 0, 0);
    }
    zmq_close(rep);
    return NULL;
}

/* ---- serving ----------------------------------------------------------------------------------- */

static int is_loopback_tcp(const char *ep)
{
    return !strncmp(ep, "tcp://127.", 10) || !strncmp(ep, "tcp://localhost:", 16) || !strncmp(ep, "tcp://[::1]:", 12);
}

static int setup(struct server *S, struct omni_error *err)
{
    const struct omni__worker_options *o = &S->opt;
    int tcp = !strncmp(o->listen, "tcp://", 6);
    if (strncmp(o->listen, "ipc://", 6) && !tcp)
        return omni_error_set(err, OMNI_EINVAL, "--listen %s: the endpoint must be ipc://PATH or tcp://HOST:PORT",
                              o->listen);
    if (tcp && !o->curve_secret && !o->insecure_tcp)
        return omni_error_set(err, OMNI_EREFUSED,
                              "--listen %s: tcp endpoints need --curve-key FILE and --curve-clients FILE (make keys "
                              "with `omni worker --keygen NAME`), or --insecure-tcp on a trusted network",
                              o->listen);
    if (tcp && o->curve_secret && !o->curve_clients)
        return omni_error_set(err, OMNI_EINVAL, "--curve-key needs --curve-clients FILE (the coordinators allowed in)");
    if (tcp && o->insecure_tcp && !o->curve_secret)
        OMNI_LOG(OMNI_LOG_WARN, "%s without CURVE: %s", o->listen,
                 is_loopback_tcp(o->listen) ? "only this host can connect" : "anyone who reaches the port can run stages");
    S->zctx = zmq_ctx_new();
    if (!S->zctx)
        return omni_error_set(err, OMNI_EIO, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    int rc = OMNI_OK;
    char secret[41] = "";
    if (tcp && o->curve_secret) {
        if ((rc = omni__ipc_read_key(o->curve_secret, secret, err)) || (rc = read_allowed(S, o->curve_clients, err)))
            return rc;
        if (pthread_create(&S->zap, NULL, zap_main, S))
            return omni_error_set(err, OMNI_EIO, "cannot start the CURVE authentication thread");
        S->zap_started = 1;
        usleep(20000); /* let it bind before connections arrive */
    }
    S->results = zmq_socket(S->zctx, ZMQ_PULL);
    S->router = zmq_socket(S->zctx, ZMQ_ROUTER);
    int linger = 0, one = 1;
    int64_t maxmsg = (int64_t)(2 * S->cfg.max_message);
    if (!S->results || !S->router || zmq_bind(S->results, RESULTS_EP) ||
        zmq_setsockopt(S->router, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(S->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        zmq_setsockopt(S->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one))
        return omni_error_set(err, OMNI_EIO, "setting up sockets: %s", zmq_strerror(zmq_errno()));
    if (secret[0] && (zmq_setsockopt(S->router, ZMQ_CURVE_SERVER, &one, sizeof one) ||
                      zmq_setsockopt(S->router, ZMQ_CURVE_SECRETKEY, secret, 40) ||
                      zmq_setsockopt(S->router, ZMQ_ZAP_DOMAIN, "omni", 4)))
        return omni_error_set(err, OMNI_EIO, "enabling CURVE: %s", zmq_strerror(zmq_errno()));
    mode_t old = umask(077); /* the ipc:// socket file: owner only */
    int b = zmq_bind(S->router, o->listen);
    int e = zmq_errno();
    umask(old);
    if (b)
        return omni_error_set(err, OMNI_EIO, "cannot listen on %s: %s", o->listen, zmq_strerror(e));
    return OMNI_OK;
}

static void forward_results(struct server *S)
{
    for (int budget = 0; budget < 1000; budget++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, S->results, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        zmq_msg_init(&body);
        zmq_msg_recv(&body, S->results, 0);
        send_to(S, zmq_msg_data(&id), zmq_msg_size(&id), zmq_msg_data(&body), zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&id);
    }
}

static void read_router(struct server *S)
{
    for (int budget = 0; budget < 1000; budget++) {
        zmq_msg_t id;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, S->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        /* DEALER peers send one frame; anything else is refused */
        zmq_msg_t frames[2];
        int n = 0, more = zmq_msg_more(&id);
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, S->router, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (n < 2)
                frames[n++] = m;
            else
                zmq_msg_close(&m);
        }
        uint8_t pid[ID_MAX];
        size_t plen = zmq_msg_size(&id) < ID_MAX ? zmq_msg_size(&id) : ID_MAX;
        memcpy(pid, zmq_msg_data(&id), plen);
        if (n == 1)
            on_frame(S, pid, plen, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]));
        else
            refuse(S, pid, plen, 0, OMNI_EPROTO, n ? "multi-part message" : "empty message");
        for (int k = 0; k < n; k++)
            zmq_msg_close(&frames[k]);
        zmq_msg_close(&id);
    }
}

static void teardown(struct server *S, int joined)
{
    if (joined) {
        /* free what is left: requests (states first), then stages (adapters last), then files */
        while (S->reqs) {
            struct wreq *r = S->reqs;
            S->reqs = r->next;
            req_free(S, r);
        }
        for (int pass = 0; pass < 2; pass++)
            for (struct stage_entry **pp = &S->stages; *pp;) {
                struct stage_entry *e = *pp;
                int adapter = e->si.plugin->desc->adapter != NULL;
                if (adapter != pass) {
                    pp = &e->next;
                    continue;
                }
                *pp = e->next;
                omni__stage_destroy(&e->si);
                pthread_mutex_destroy(&e->mu);
                free(e->sig);
                free(e);
            }
        for (int i = 0; i < S->n_files; i++)
            omni_weights_close(S->files[i]);
        free(S->files);
        while (S->jobs) {
            struct job *j = S->jobs;
            S->jobs = j->next;
            omni__ipc_msg_free(j->env);
            free(j);
        }
        while (S->peers) {
            struct peer *p = S->peers;
            S->peers = p->next;
            free(p);
        }
    }
    omni__shm_unlink_pid(getpid()); /* whatever is left of ours */
    if (S->router)
        zmq_close(S->router);
    if (S->results)
        zmq_close(S->results);
    if (S->zap_started)
        pthread_join(S->zap, NULL);
    if (S->zctx && joined)
        zmq_ctx_term(S->zctx);
    free(S->allowed);
    free(S->threads);
}

int omni__ipc_worker_serve(const struct omni__worker_options *o, struct omni_error *err)
{
    struct server *S = calloc(1, sizeof *S);
    if (!S)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    S->opt = *o;
    if (S->opt.threads < 1)
        S->opt.threads = 1;
    omni__ipc_config_get(&S->cfg, S->opt.ipc);
    pthread_mutex_init(&S->mu, NULL);
    pthread_mutex_init(&S->load_mu, NULL);
    pthread_cond_init(&S->cv, NULL);
    atomic_init(&S->served, 0);
    atomic_init(&S->refused, 0);
    atomic_init(&S->in_flight, 0);
    {
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
        if (f) {
            if (fgets(S->boot_id, sizeof S->boot_id, f))
                S->boot_id[strcspn(S->boot_id, "\r\n")] = '\0';
            fclose(f);
        }
        gethostname(S->hostname, sizeof S->hostname - 1);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        S->instance = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
        if (!S->instance)
            S->instance = 1;
    }
    int rc = setup(S, err);
    int started = 0;
    if (!rc) {
        S->threads = calloc((size_t)S->opt.threads, sizeof *S->threads);
        for (int i = 0; S->threads && i < S->opt.threads; i++)
            if (!pthread_create(&S->threads[i], NULL, job_main, S))
                started++;
        if (!started)
            rc = omni_error_set(err, OMNI_EIO, "cannot start job threads");
    }
    if (!rc)
        OMNI_LOG(OMNI_LOG_INFO, "worker%s%s%s listening on %s (pid %ld, %d job threads)", S->opt.process && S->opt.process[0] ? " '" : "",
                 S->opt.process ? S->opt.process : "", S->opt.process && S->opt.process[0] ? "'" : "", S->opt.listen,
                 (long)getpid(), started);
    double last_reap = omni__ipc_now_ms();
    while (!rc) {
        pthread_mutex_lock(&S->mu);
        int stop = S->stopping;
        pthread_mutex_unlock(&S->mu);
        if (stop || (S->opt.stop && *S->opt.stop))
            break;
        if (S->opt.parent > 0 && getppid() != S->opt.parent) {
            OMNI_LOG(OMNI_LOG_WARN, "the coordinator (pid %ld) is gone; exiting", (long)S->opt.parent);
            omni__shm_unlink_pid(S->opt.parent);
            break;
        }
        zmq_pollitem_t items[2] = {{S->router, 0, ZMQ_POLLIN, 0}, {S->results, 0, ZMQ_POLLIN, 0}};
        int r = zmq_poll(items, 2, 100);
        if (r < 0 && zmq_errno() != EINTR)
            break;
        if (r > 0 && (items[1].revents & ZMQ_POLLIN))
            forward_results(S);
        if (r > 0 && (items[0].revents & ZMQ_POLLIN))
            read_router(S);
        if (omni__ipc_now_ms() - last_reap > 500) {
            reap_peers(S);
            last_reap = omni__ipc_now_ms();
        }
    }
    /* stop the job threads: running jobs finish (bounded wait), queued ones are dropped */
    pthread_mutex_lock(&S->mu);
    S->stopping = 1;
    for (struct wreq *r = S->reqs; r; r = r->next)
        r->canceled = 1;
    while (S->jobs) {
        struct job *j = S->jobs;
        S->jobs = j->next;
        omni__ipc_msg_free(j->env);
        free(j);
    }
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
    int joined = 1;
    for (int i = 0; i < started; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2;
        if (pthread_timedjoin_np(S->threads[i], NULL, &ts))
            joined = 0; /* a stage still computing: leave it to process exit */
    }
    forward_results(S);
    teardown(S, joined);
    if (joined) {
        pthread_cond_destroy(&S->cv);
        pthread_mutex_destroy(&S->mu);
        pthread_mutex_destroy(&S->load_mu);
        free(S);
    }
    return rc;
}
