/* The coordinator side of multi-process pipelines.
 *
 * One cluster per loaded pipeline with a `placement:` section: one worker
 * connection per placement entry (a DEALER socket), all driven by one I/O
 * thread that alone touches the sockets. Callers (the executor, from any
 * thread) hand it encoded messages and wait on a condition variable; replies
 * are matched by call_id, so many calls and requests can be in flight.
 *
 * The I/O thread also: starts `endpoint: auto` workers (spawn.c) and hands
 * them their stages (Hello, then one LoadStage per stage); sends heartbeats
 * and declares a worker dead after OMNI_IPC_DEAD_MS of silence; notices an
 * auto worker's exit through its pidfd at once; fails every call in flight on
 * a dead worker with an error naming the worker, its pid and endpoint, and the
 * stage; kills (if hung) and reaps it, unlinks its shared-memory segments,
 * and starts it again (backing off when it keeps dying). A worker that never
 * got ready is not restarted: pipeline loading fails with its reason.
 *
 * Every wait is bounded: calls by OMNI_IPC_CALL_MS, loading by
 * OMNI_IPC_LOAD_MS, start-up by OMNI_IPC_START_MS, request ends by the dead
 * timeout. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/ipc_impl.h"
#include "pipeline_impl.h"

enum { W_DOWN, W_HELLO, W_LOADING, W_READY, W_FAILED };
enum { P_HELLO, P_LOAD, P_RUN, P_END, P_CANCEL };

struct pending {
    uint64_t call_id, request_id;
    int worker, kind, stage;
    void *msg;
    size_t len;
    int sent, done, orphan; /* orphan: nobody waits; the I/O thread frees it */
    int gen;                /* RUN: the worker generation the request's state lives in */
    double deadline;
    int rc;
    struct omni_error err;
    Omni__Envelope *reply;
    struct pending *next;
};

struct worker {
    int index;
    const char *process;      /* placement name (borrowed from the spec) */
    const char *configured;   /* "auto", "ipc://...", "tcp://..." */
    char endpoint[PATH_MAX];
    int is_auto, is_tcp;
    pid_t pid;                /* auto: the child; else the peer's pid from Hello */
    int pidfd;
    void *sock;
    int state, ever_ready, generation, failures;
    double last_seen, last_hb, state_since, next_start, ready_since;
    uint64_t instance, hb_seq;
    int loads_pending;
    char probe[OMNI_IPC_SHM_NAME_MAX]; /* shm probe sent with Hello, unlinked on the answer */
    struct omni__peer_caps caps;
    char why[OMNI_ERROR_MAX]; /* the last failure */
    int *stages;
    int n_stages;
};

struct omni__ipc_cluster {
    struct omni__pipeline_spec *spec;
    struct omni__ipc_config cfg;
    void *zctx;
    pthread_t thread;
    int thread_started;
    int wake_fd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct worker *w;
    int n_w;
    struct pending *pend;
    int stop;
    char rundir[PATH_MAX];
    char boot_id[64], hostname[256];
    char curve_server[41], curve_public[41], curve_secret[41];
    uint64_t next_call;
    struct omni_device *proxy_dev; /* per spec stage */
};

struct omni__ipc_request {
    uint64_t id;
    struct omni__xfer_req x;
    int *gen; /* per worker: generation that holds this request's state, 0 = unused */
};

static atomic_uint_fast64_t request_counter;

/* ---- small helpers ----------------------------------------------------------------------- */

static void read_first_line(const char *path, char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(out, (int)size, f))
        out[strcspn(out, "\r\n")] = '\0';
    fclose(f);
}

static const char *wdesc(const struct worker *w, char *buf, size_t size)
{
    if (w->pid)
        snprintf(buf, size, "worker process '%s' (pid %ld, %s)", w->process, labs((long)w->pid), w->endpoint);
    else
        snprintf(buf, size, "worker process '%s' (%s)", w->process, w->endpoint);
    return buf;
}

static void wake(struct omni__ipc_cluster *c)
{
    uint64_t one = 1;
    ssize_t r = write(c->wake_fd, &one, sizeof one);
    (void)r;
}

/* Complete p (under c->mu): remove it from the list; the waiter (or, for an
 * orphan, this function) owns it afterwards. */
static void complete(struct omni__ipc_cluster *c, struct pending *p, int rc, Omni__Envelope *reply)
{
    for (struct pending **pp = &c->pend; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->rc = rc;
    if (rc && !p->err.msg[0])
        omni_error_set(&p->err, rc, "%s", omni_status_str(rc));
    p->reply = reply;
    p->done = 1;
    free(p->msg);
    p->msg = NULL;
    if (p->orphan) {
        omni__ipc_msg_free(p->reply);
        free(p);
    }
    pthread_cond_broadcast(&c->cv);
}

static struct pending *pending_new(struct omni__ipc_cluster *c, int worker, int kind, int stage, uint64_t request,
                                   Omni__Envelope *e, int timeout_ms, struct omni_error *err)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        omni_error_set(err, OMNI_ENOMEM, "out of memory");
        return NULL;
    }
    p->worker = worker;
    p->kind = kind;
    p->stage = stage;
    p->request_id = request;
    p->deadline = omni__ipc_now_ms() + timeout_ms;
    if (omni__ipc_encode(e, &p->msg, &p->len, err)) {
        free(p);
        return NULL;
    }
    return p;
}

/* Append (under c->mu). */
static void enqueue(struct omni__ipc_cluster *c, struct pending *p)
{
    struct pending **pp = &c->pend;
    while (*pp)
        pp = &(*pp)->next;
    p->next = NULL;
    *pp = p;
}

static int send_bytes(struct worker *w, const void *data, size_t len)
{
    if (!w->sock)
        return -1;
    return zmq_send(w->sock, data, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

static int send_env(struct worker *w, Omni__Envelope *e)
{
    void *data;
    size_t len;
    if (omni__ipc_encode(e, &data, &len, NULL))
        return -1;
    int rc = send_bytes(w, data, len);
    free(data);
    return rc;
}

/* ---- worker life ----------------------------------------------------------------------- */

static void fail_worker_calls(struct omni__ipc_cluster *c, struct worker *w, int include_queued, const char *fmt_why)
{
    char wd[PATH_MAX + 128];
    wdesc(w, wd, sizeof wd);
    for (struct pending *p = c->pend, *next; p; p = next) {
        next = p->next;
        if (p->worker != w->index)
            continue;
        if (p->kind == P_HELLO || p->kind == P_LOAD) {
            p->orphan = 1;
            complete(c, p, OMNI_EPEER, NULL);
            continue;
        }
        if (!p->sent && !include_queued)
            continue;
        if (p->kind == P_RUN)
            omni_error_set(&p->err, OMNI_EPEER, "%s %s during the call%s", wd, fmt_why,
                           w->is_auto && w->ever_ready ? "; it is being restarted" : "");
        else
            omni_error_set(&p->err, OMNI_EPEER, "%s %s", wd, fmt_why);
        complete(c, p, OMNI_EPEER, NULL);
    }
}

static void close_sock(struct worker *w)
{
    if (w->sock) {
        zmq_close(w->sock);
        w->sock = NULL;
    }
    if (w->probe[0]) {
        omni__shm_unlink(w->probe);
        w->probe[0] = '\0';
    }
}

/* Stop an auto worker for good: SIGKILL, reap (bounded), unlink its segments.
 * A negative pid is one already reaped (kept for messages only). */
static void kill_and_reap(struct worker *w)
{
    if (!w->is_auto || !w->pid)
        return;
    char dummy[256];
    if (w->pid > 0 && !omni__ipc_reap(w->pid, dummy, sizeof dummy)) {
        kill(w->pid, SIGKILL);
        for (int i = 0; i < 1000; i++) { /* SIGKILL is prompt; give up after ~1 s */
            if (omni__ipc_reap(w->pid, dummy, sizeof dummy))
                break;
            usleep(1000);
        }
    }
    omni__shm_unlink_pid(w->pid > 0 ? w->pid : -w->pid);
    if (w->pidfd >= 0)
        close(w->pidfd);
    w->pidfd = -1;
    w->pid = 0;
}

/* The worker is gone or unusable: fail its calls, clean up, schedule a restart. */
static void worker_lost(struct omni__ipc_cluster *c, struct worker *w, const char *why)
{
    char wd[PATH_MAX + 128];
    wdesc(w, wd, sizeof wd);
    snprintf(w->why, sizeof w->why, "%s %s", wd, why);
    fail_worker_calls(c, w, 0, why);
    close_sock(w);
    kill_and_reap(w);
    if (!w->is_auto && w->caps.same_host && w->pid > 0 && kill(w->pid, 0) && errno == ESRCH)
        omni__shm_unlink_pid(w->pid); /* a hand-started worker on this host that died */
    if (!w->is_auto)
        w->pid = 0;
    double now = omni__ipc_now_ms();
    if (!w->ever_ready) {
        w->state = W_FAILED;
        OMNI_LOG(OMNI_LOG_ERROR, "%s", w->why);
    } else {
        if (w->ready_since && now - w->ready_since > 10000)
            w->failures = 0;
        int backoff = w->failures ? 100 << (w->failures < 5 ? w->failures - 1 : 4) : 0;
        if (backoff > 2000)
            backoff = 2000;
        w->failures++;
        w->state = W_DOWN;
        w->next_start = now + backoff;
        OMNI_LOG(OMNI_LOG_WARN, "%s; %s in %d ms", w->why, w->is_auto ? "restarting it" : "reconnecting", backoff);
    }
    w->state_since = now;
    pthread_cond_broadcast(&c->cv);
}

static int set_curve(struct omni__ipc_cluster *c, void *s)
{
    return zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->curve_server, 40) ||
           zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40) ||
           zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40);
}

static void worker_start(struct omni__ipc_cluster *c, struct worker *w)
{
    struct omni_error e;
    omni_error_clear(&e);
    double now = omni__ipc_now_ms();
    w->generation++;
    w->state_since = now;
    if (w->is_auto) {
        snprintf(w->endpoint, sizeof w->endpoint, "ipc://%s/w%d.%d.sock", c->rundir, w->index, w->generation);
        if (omni__ipc_spawn(w->endpoint, w->process, c->spec->ipc, &w->pid, &w->pidfd, &e)) {
            snprintf(w->why, sizeof w->why, "worker process '%s': %s", w->process, e.msg);
            w->state = w->ever_ready ? W_DOWN : W_FAILED;
            w->next_start = now + 1000;
            pthread_cond_broadcast(&c->cv);
            return;
        }
    } else {
        snprintf(w->endpoint, sizeof w->endpoint, "%s", w->configured);
    }
    int linger = 0, ivl = 20, ivl_max = 500;
    int64_t maxmsg = (int64_t)(2 * c->cfg.max_message);
    w->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!w->sock || zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) ||
        zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) ||
        zmq_setsockopt(w->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) || (w->is_tcp && c->curve_server[0] && set_curve(c, w->sock)) ||
        zmq_connect(w->sock, w->endpoint)) {
        char why[256];
        snprintf(why, sizeof why, "cannot connect: %s", zmq_strerror(zmq_errno()));
        worker_lost(c, w, why);
        return;
    }
    /* Hello, with a probe segment the worker tries to map: tells whether host
     * tensors can be shared by name with it */
    struct omni_buffer *probe = NULL;
    if (omni__shm_create(0, 1, w->probe, &probe, NULL))
        w->probe[0] = '\0';
    omni_buffer_unref(probe);
    Omni__Hello h = OMNI__HELLO__INIT;
    h.protocol = OMNI_IPC_PROTOCOL;
    h.abi_major = OMNI_ABI_MAJOR;
    h.abi_minor = OMNI_ABI_MINOR;
    h.build_signature = OMNI_BUILD_SIGNATURE;
    h.capabilities = OMNI_IPC_CAP_SHM | OMNI_IPC_CAP_INLINE | (omni__cuda_ipc_supported() ? OMNI_IPC_CAP_CUDA_IPC : 0);
    h.version = OMNI_VERSION;
    h.pid = getpid();
    h.hostname = c->hostname;
    h.boot_id = c->boot_id;
    h.call_id = ++c->next_call;
    h.shm_probe = w->probe;
    h.max_message = c->cfg.max_message;
    h.process = (char *)w->process;
    uint8_t uu[16][16];
    ProtobufCBinaryData ub[16];
    int nu = omni__cuda_uuids(uu, 16);
    for (int i = 0; i < nu; i++)
        ub[i] = (ProtobufCBinaryData){16, uu[i]};
    h.n_cuda_uuids = (size_t)nu;
    h.cuda_uuids = ub;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    struct pending *p = pending_new(c, w->index, P_HELLO, -1, 0, &env, c->cfg.start_ms, &e);
    if (!p) {
        worker_lost(c, w, e.msg);
        return;
    }
    p->call_id = h.call_id;
    p->orphan = 1;
    enqueue(c, p);
    w->state = W_HELLO;
    w->last_seen = w->last_hb = now;
}

struct load_buf {
    Omni__LoadStage l;
    char abs_weights[PATH_MAX], abs_plugin[PATH_MAX];
};

static int load_msg(struct omni__ipc_cluster *c, struct worker *w, int s, uint64_t call_id, Omni__Envelope *env,
                    struct load_buf *lb, struct omni_error *err)
{
    Omni__LoadStage *l = &lb->l;
    struct omni__stage_spec *st = &c->spec->stages[s];
    char where[PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%d:%d", c->spec->file, st->loc.line, st->loc.col);
    omni__load_stage__init(l);
    l->call_id = call_id;
    l->stage = st->name;
    l->type = st->type;
    l->plugin_file = st->plugin_file ? st->plugin_file : "";
    l->plugin_dirs = c->spec->plugin_dirs;
    l->n_plugin_dirs = (size_t)c->spec->n_plugin_dirs;
    l->weights = st->weights ? st->weights : "";
    /* a worker on this host may not share our working directory */
    if (w->caps.same_host && st->weights && st->weights[0] != '/' && realpath(st->weights, lb->abs_weights))
        l->weights = lb->abs_weights;
    if (w->caps.same_host && st->plugin_file && st->plugin_file[0] != '/' && realpath(st->plugin_file, lb->abs_plugin))
        l->plugin_file = lb->abs_plugin;
    l->prefix = st->prefix ? st->prefix : "";
    l->attach = st->attach ? st->attach : "";
    l->device_type = st->device.type;
    l->device_index = st->device.index;
    l->dtype = st->dtype;
    l->where = strdup(where);
    l->file = c->spec->file;
    if (!l->where)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    int rc = omni__ipc_params_flatten(st->params, &l->params, &l->n_params, err);
    if (rc) {
        free(l->where);
        return rc;
    }
    omni__envelope__init(env);
    env->body_case = OMNI__ENVELOPE__BODY_LOAD;
    env->load = l;
    return OMNI_OK;
}

static void on_hello(struct omni__ipc_cluster *c, struct worker *w, const Omni__Hello *h)
{
    if (w->probe[0]) {
        omni__shm_unlink(w->probe);
        w->probe[0] = '\0';
    }
    if (h->abi_major != OMNI_ABI_MAJOR) {
        char why[200];
        snprintf(why, sizeof why, "speaks plugin ABI %u.%u; this process has %d.%d", h->abi_major, h->abi_minor,
                 OMNI_ABI_MAJOR, OMNI_ABI_MINOR);
        w->ever_ready = 0; /* do not retry a worker that cannot work */
        worker_lost(c, w, why);
        return;
    }
    memset(&w->caps, 0, sizeof w->caps);
    w->caps.same_host = h->boot_id && h->boot_id[0] && !strcmp(h->boot_id, c->boot_id) && h->hostname &&
                        !strcmp(h->hostname, c->hostname);
    w->caps.shm_ok = w->caps.same_host && h->shm_probe_ok && (h->capabilities & OMNI_IPC_CAP_SHM);
    w->caps.force_inline = c->cfg.force_inline;
    w->caps.max_message = h->max_message;
    if (h->capabilities & OMNI_IPC_CAP_CUDA_IPC)
        for (size_t i = 0; i < h->n_cuda_uuids && i < 16; i++)
            memcpy(w->caps.cuda_uuids[w->caps.n_cuda++], h->cuda_uuids[i].data, 16);
    if (!w->is_auto)
        w->pid = (pid_t)h->pid;
    w->instance = h->instance;
    if (!w->caps.same_host)
        omni__xfer_log_once(2, "worker process '%s' is on host %s: tensors cross inline", w->process,
                            h->hostname ? h->hostname : "?");
    /* hand it its stages: plain stages first, adapters after their targets */
    w->loads_pending = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < w->n_stages; k++) {
            int s = w->stages[k];
            if ((c->spec->stages[s].attach != NULL) != pass)
                continue;
            Omni__Envelope env;
            struct load_buf *lb = malloc(sizeof *lb);
            struct omni_error e;
            omni_error_clear(&e);
            uint64_t id = ++c->next_call;
            struct pending *p = NULL;
            if (!lb)
                omni_error_set(&e, OMNI_ENOMEM, "out of memory");
            else if (!load_msg(c, w, s, id, &env, lb, &e)) {
                p = pending_new(c, w->index, P_LOAD, s, 0, &env, c->cfg.load_ms, &e);
                free(lb->l.where);
                omni__ipc_params_flat_free(lb->l.params, lb->l.n_params);
            }
            free(lb);
            if (!p) {
                w->ever_ready = 0;
                worker_lost(c, w, e.msg);
                return;
            }
            p->call_id = id;
            p->orphan = 1;
            enqueue(c, p);
            w->loads_pending++;
        }
    w->state = W_LOADING;
    w->state_since = omni__ipc_now_ms();
    if (!w->loads_pending) {
        w->state = W_READY;
        w->ever_ready = 1;
        w->ready_since = omni__ipc_now_ms();
    }
    pthread_cond_broadcast(&c->cv);
}

/* ---- the I/O thread ----------------------------------------------------------------------- */

static struct pending *find_call(struct omni__ipc_cluster *c, int worker, uint64_t call_id)
{
    for (struct pending *p = c->pend; p; p = p->next)
        if (p->worker == worker && p->call_id == call_id && p->sent)
            return p;
    return NULL;
}

static void on_message(struct omni__ipc_cluster *c, struct worker *w, Omni__Envelope *e)
{
    char wd[PATH_MAX + 128];
    w->last_seen = omni__ipc_now_ms();
    switch (e->body_case) {
    case OMNI__ENVELOPE__BODY_HELLO: {
        struct pending *p = find_call(c, w->index, e->hello->call_id);
        if (!p || p->kind != P_HELLO || w->state != W_HELLO)
            break;
        complete(c, p, OMNI_OK, NULL);
        on_hello(c, w, e->hello);
        break;
    }
    case OMNI__ENVELOPE__BODY_HEARTBEAT:
        if (e->heartbeat->instance && w->instance && e->heartbeat->instance != w->instance &&
            (w->state == W_READY || w->state == W_LOADING)) {
            worker_lost(c, w, "was restarted by someone else (its instance changed) and lost its stages");
            break;
        }
        break;
    case OMNI__ENVELOPE__BODY_DONE:
    case OMNI__ENVELOPE__BODY_ERROR: {
        int is_err = e->body_case == OMNI__ENVELOPE__BODY_ERROR;
        uint64_t id = is_err ? e->error->call_id : e->done->call_id;
        struct pending *p = id ? find_call(c, w->index, id) : NULL;
        if (!p && is_err && w->state == W_HELLO) {
            char why[OMNI_ERROR_MAX];
            snprintf(why, sizeof why, "refused our hello: %s", e->error->message);
            worker_lost(c, w, why);
            break;
        }
        if (!p) {
            if (is_err)
                OMNI_LOG(OMNI_LOG_WARN, "%s refused a message: %s", wdesc(w, wd, sizeof wd), e->error->message);
            else
                OMNI_LOG(OMNI_LOG_DEBUG, "%s: answer to call %llu that is no longer waited for",
                         wdesc(w, wd, sizeof wd), (unsigned long long)id);
            break;
        }
        if (p->kind == P_LOAD) {
            int s = p->stage;
            complete(c, p, is_err ? e->error->status : OMNI_OK, NULL);
            if (is_err) {
                char why[OMNI_ERROR_MAX];
                snprintf(why, sizeof why, "could not load stage '%s': %s", c->spec->stages[s].name, e->error->message);
                w->ever_ready = 0; /* a load that fails will fail again */
                worker_lost(c, w, why);
            } else if (--w->loads_pending == 0 && w->state == W_LOADING) {
                w->state = W_READY;
                w->ever_ready = 1;
                w->ready_since = omni__ipc_now_ms();
                OMNI_LOG(OMNI_LOG_INFO, "%s is ready (%s%s)", wdesc(w, wd, sizeof wd),
                         w->caps.same_host ? "same host" : "another host",
                         w->caps.shm_ok ? ", shared memory" : "");
                pthread_cond_broadcast(&c->cv);
            }
            break;
        }
        if (is_err)
            omni_error_set(&p->err, e->error->status, "in %s: %s", wdesc(w, wd, sizeof wd), e->error->message);
        complete(c, p, is_err ? e->error->status : OMNI_OK, is_err ? NULL : e);
        if (!is_err)
            return; /* the waiter owns e now */
        break;
    }
    default:
        OMNI_LOG(OMNI_LOG_WARN, "%s sent an unexpected message (case %d); ignored", wdesc(w, wd, sizeof wd),
                 (int)e->body_case);
        break;
    }
    omni__ipc_msg_free(e);
}

static void drain_socket(struct omni__ipc_cluster *c, struct worker *w)
{
    char wd[PATH_MAX + 128];
    for (int budget = 0; w->sock && budget < 1000; budget++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, w->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        int more = zmq_msg_more(&m);
        Omni__Envelope *e = NULL;
        struct omni_error err;
        omni_error_clear(&err);
        if (more) {
            omni_error_set(&err, OMNI_EPROTO, "multi-part message");
            while (more) {
                zmq_msg_close(&m);
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, w->sock, ZMQ_DONTWAIT) < 0)
                    break;
                more = zmq_msg_more(&m);
            }
        } else {
            omni__ipc_decode(zmq_msg_data(&m), zmq_msg_size(&m), c->cfg.max_message, &e, &err);
        }
        zmq_msg_close(&m);
        if (!e) {
            w->last_seen = omni__ipc_now_ms(); /* it is alive, if confused */
            OMNI_LOG(OMNI_LOG_WARN, "refused a message from %s: %s", wdesc(w, wd, sizeof wd), err.msg);
            if (w->state == W_HELLO) { /* its answer to hello: no point waiting for another */
                char why[OMNI_ERROR_MAX];
                snprintf(why, sizeof why, "answered hello with a message this side refuses: %s", err.msg);
                worker_lost(c, w, why);
                return;
            }
            continue;
        }
        on_message(c, w, e);
    }
}

static void send_queued(struct omni__ipc_cluster *c)
{
    for (struct pending *p = c->pend, *next; p; p = next) {
        next = p->next;
        if (p->sent)
            continue;
        struct worker *w = &c->w[p->worker];
        int can = p->kind == P_HELLO ? w->state == W_HELLO
                : p->kind == P_LOAD  ? w->state == W_LOADING || w->state == W_HELLO
                                     : w->state == W_READY;
        if (w->state == W_FAILED && p->kind != P_HELLO && p->kind != P_LOAD) {
            omni_error_set(&p->err, OMNI_EPEER, "%s", w->why);
            complete(c, p, OMNI_EPEER, NULL);
            continue;
        }
        if ((p->kind == P_END || p->kind == P_CANCEL) && w->state != W_READY) {
            complete(c, p, OMNI_OK, NULL); /* nothing left there to end */
            continue;
        }
        if (!can)
            continue;
        if (p->kind == P_RUN && p->gen != w->generation) {
            omni_error_set(&p->err, OMNI_EPEER, "%s; the request's state there was lost", w->why);
            complete(c, p, OMNI_EPEER, NULL);
            continue;
        }
        if (send_bytes(w, p->msg, p->len)) {
            char why[200];
            snprintf(why, sizeof why, "could not be sent a message (%s)", zmq_strerror(zmq_errno()));
            worker_lost(c, w, why);
            next = c->pend; /* the list changed */
            continue;
        }
        p->sent = 1;
        free(p->msg);
        p->msg = NULL;
        if (p->kind == P_RUN || p->kind == P_LOAD)
            p->deadline = omni__ipc_now_ms() + (p->kind == P_RUN ? c->cfg.call_ms : c->cfg.load_ms);
    }
}

static void send_cancel(struct worker *w, uint64_t request)
{
    Omni__Cancel k = OMNI__CANCEL__INIT;
    k.request_id = request;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_CANCEL;
    env.cancel = &k;
    send_env(w, &env);
}

static void timers(struct omni__ipc_cluster *c)
{
    double now = omni__ipc_now_ms();
    char wd[PATH_MAX + 128], why[256];
    for (int i = 0; i < c->n_w; i++) {
        struct worker *w = &c->w[i];
        if (w->is_auto && w->pid > 0 && w->pidfd < 0 && omni__ipc_reap(w->pid, why, sizeof why)) {
            w->pid = -w->pid; /* keep it for the message, but it is reaped */
            worker_lost(c, w, why);
            continue;
        }
        if (w->state == W_READY || w->state == W_LOADING) {
            if (now - w->last_seen > c->cfg.dead_ms) {
                snprintf(why, sizeof why, "did not answer heartbeats for %d ms (hung?)", c->cfg.dead_ms);
                if (w->is_auto && w->pid > 0)
                    kill(w->pid, SIGKILL);
                worker_lost(c, w, why);
                continue;
            }
            if (now - w->last_hb >= c->cfg.heartbeat_ms) {
                Omni__Heartbeat hb = OMNI__HEARTBEAT__INIT;
                hb.seq = ++w->hb_seq;
                Omni__Envelope env = OMNI__ENVELOPE__INIT;
                env.body_case = OMNI__ENVELOPE__BODY_HEARTBEAT;
                env.heartbeat = &hb;
                send_env(w, &env);
                w->last_hb = now;
            }
        } else if (w->state == W_HELLO && now - w->state_since > c->cfg.start_ms) {
            snprintf(why, sizeof why, "did not answer within %d ms of %s", c->cfg.start_ms,
                     w->is_auto ? "starting" : "connecting (is `omni worker` running there?)");
            worker_lost(c, w, why);
        } else if (w->state == W_DOWN && now >= w->next_start && !c->stop) {
            worker_start(c, w);
        }
    }
    for (struct pending *p = c->pend, *next; p; p = next) {
        next = p->next;
        if (now <= p->deadline)
            continue;
        struct worker *w = &c->w[p->worker];
        wdesc(w, wd, sizeof wd);
        if (p->kind == P_LOAD) {
            snprintf(why, sizeof why, "took longer than %d ms to load stage '%s'", c->cfg.load_ms,
                     c->spec->stages[p->stage].name);
            w->ever_ready = 0;
            worker_lost(c, w, why);
            next = c->pend;
            continue;
        }
        if (p->kind == P_HELLO) {
            p->orphan = 1;
            complete(c, p, OMNI_ETIMEOUT, NULL);
            continue;
        }
        if (p->kind == P_RUN && p->sent) {
            omni_error_set(&p->err, OMNI_ETIMEOUT, "%s did not answer within %d ms (OMNI_IPC_CALL_MS); the request "
                           "was canceled there", wd, c->cfg.call_ms);
            send_cancel(w, p->request_id);
        } else if (p->kind == P_RUN) {
            omni_error_set(&p->err, OMNI_ETIMEOUT, "%s was not ready in time%s%s", wd, w->why[0] ? ": " : "", w->why);
        } else {
            omni_error_set(&p->err, OMNI_ETIMEOUT, "%s did not confirm the end of a request", wd);
        }
        complete(c, p, OMNI_ETIMEOUT, NULL);
    }
}

static void *io_main(void *arg)
{
    struct omni__ipc_cluster *c = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the application's threads */
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n_w; i++)
        worker_start(c, &c->w[i]);
    while (!c->stop) {
        send_queued(c);
        zmq_pollitem_t items[1 + 2 * 64];
        int map[1 + 2 * 64], n = 0;
        items[n] = (zmq_pollitem_t){NULL, c->wake_fd, ZMQ_POLLIN, 0};
        map[n++] = -1;
        for (int i = 0; i < c->n_w && n < 1 + 2 * 64 - 1; i++) {
            if (c->w[i].sock) {
                items[n] = (zmq_pollitem_t){c->w[i].sock, 0, ZMQ_POLLIN, 0};
                map[n++] = i;
            }
            if (c->w[i].pidfd >= 0) {
                items[n] = (zmq_pollitem_t){NULL, c->w[i].pidfd, ZMQ_POLLIN, 0};
                map[n++] = 1000 + i;
            }
        }
        long timeout = c->cfg.heartbeat_ms < 50 ? c->cfg.heartbeat_ms : 50;
        pthread_mutex_unlock(&c->mu);
        int r = zmq_poll(items, n, timeout);
        pthread_mutex_lock(&c->mu);
        if (r < 0 && zmq_errno() != EINTR)
            usleep(1000);
        for (int k = 0; r > 0 && k < n; k++) {
            if (!(items[k].revents & ZMQ_POLLIN))
                continue;
            if (map[k] == -1) {
                uint64_t v;
                ssize_t rr = read(c->wake_fd, &v, sizeof v);
                (void)rr;
            } else if (map[k] >= 1000) {
                struct worker *w = &c->w[map[k] - 1000];
                char why[256];
                if (w->pid > 0 && omni__ipc_reap(w->pid, why, sizeof why)) {
                    w->pid = -w->pid; /* reaped: kept for the message */
                    worker_lost(c, w, why);
                }
            } else {
                drain_socket(c, &c->w[map[k]]);
            }
        }
        timers(c);
    }
    /* shutting down: auto workers get Shutdown, then SIGKILL after a grace period */
    for (int i = 0; i < c->n_w; i++) {
        struct worker *w = &c->w[i];
        if (w->is_auto && w->sock && w->pid > 0) {
            Omni__Shutdown sd = OMNI__SHUTDOWN__INIT;
            sd.reason = "pipeline freed";
            Omni__Envelope env = OMNI__ENVELOPE__INIT;
            env.body_case = OMNI__ENVELOPE__BODY_SHUTDOWN;
            env.shutdown = &sd;
            send_env(w, &env);
        }
    }
    double until = omni__ipc_now_ms() + 1000;
    for (int i = 0; i < c->n_w; i++) {
        struct worker *w = &c->w[i];
        char why[256];
        while (w->is_auto && w->pid > 0 && omni__ipc_now_ms() < until) {
            if (omni__ipc_reap(w->pid, why, sizeof why)) {
                w->pid = -w->pid;
                break;
            }
            pthread_mutex_unlock(&c->mu);
            usleep(2000);
            pthread_mutex_lock(&c->mu);
        }
        kill_and_reap(w);
        close_sock(w);
        if (w->pidfd >= 0)
            close(w->pidfd);
        w->pidfd = -1;
    }
    for (struct pending *p = c->pend, *next; p; p = next) {
        next = p->next;
        omni_error_set(&p->err, OMNI_ECANCELED, "the pipeline is being freed");
        complete(c, p, OMNI_ECANCELED, NULL);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- opening and closing ---------------------------------------------------------------- */

static int is_tcp(const char *ep) { return !strncmp(ep, "tcp://", 6); }

static int load_curve(struct omni__ipc_cluster *c, struct omni_error *err)
{
    const char *srv = getenv("OMNI_CURVE_SERVER_KEY"), *cli = getenv("OMNI_CURVE_CLIENT_KEY");
    if (!srv || !cli) {
        if (c->cfg.insecure_tcp) {
            OMNI_LOG(OMNI_LOG_WARN, "%s: tcp:// endpoints without CURVE (OMNI_IPC_INSECURE_TCP=1): anyone who can reach "
                     "the port can run stages", c->spec->file);
            return OMNI_OK;
        }
        return omni_error_set(err, OMNI_EREFUSED,
                              "%s: tcp:// endpoints need CURVE keys: set OMNI_CURVE_SERVER_KEY (the worker's .pub file) "
                              "and OMNI_CURVE_CLIENT_KEY (this side's .key file; `omni worker --keygen NAME` makes "
                              "them), or OMNI_IPC_INSECURE_TCP=1 on a trusted network",
                              c->spec->file);
    }
    int rc = omni__ipc_read_key(srv, c->curve_server, err);
    if (!rc)
        rc = omni__ipc_read_key(cli, c->curve_secret, err);
    if (!rc && zmq_curve_public(c->curve_public, c->curve_secret))
        rc = omni_error_set(err, OMNI_EINVAL, "%s: not a CURVE secret key", cli);
    return rc;
}

int omni__ipc_open(struct omni__ipc_cluster **out, struct omni__pipeline_spec *spec, struct omni_error *err)
{
    *out = NULL;
    int rc = OMNI_OK;
    /* adapters must live with the stage they attach to */
    for (int i = 0; i < spec->n_stages; i++) {
        struct omni__stage_spec *st = &spec->stages[i];
        if (!st->attach)
            continue;
        const char *dot = strchr(st->attach, '.');
        char target[256];
        snprintf(target, sizeof target, "%.*s", dot ? (int)(dot - st->attach) : (int)strlen(st->attach), st->attach);
        int t = omni__spec_stage_index(spec, target);
        if (t >= 0 && spec->stages[t].process != st->process)
            return omni_error_set(err, OMNI_EPIPELINE,
                                  "%s:%d:%d: stage '%s' attaches to '%s', which runs in %s%s%s; place an adapter in the "
                                  "same process as its target",
                                  spec->file, st->loc.line, st->loc.col, st->name, target,
                                  spec->stages[t].process >= 0 ? "process '" : "the coordinator",
                                  spec->stages[t].process >= 0 ? spec->placements[spec->stages[t].process].process : "",
                                  spec->stages[t].process >= 0 ? "'" : "");
    }
    struct omni__ipc_cluster *c = calloc(1, sizeof *c);
    if (!c)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    c->spec = spec;
    c->wake_fd = -1;
    omni__ipc_config_get(&c->cfg, spec->ipc);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    read_first_line("/proc/sys/kernel/random/boot_id", c->boot_id, sizeof c->boot_id);
    gethostname(c->hostname, sizeof c->hostname - 1);
    c->n_w = spec->n_placements;
    c->w = calloc((size_t)c->n_w, sizeof *c->w);
    c->proxy_dev = calloc((size_t)spec->n_stages + 1, sizeof *c->proxy_dev);
    if (!c->w || !c->proxy_dev) {
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto fail;
    }
    int need_rundir = 0, need_curve = 0;
    for (int i = 0; i < c->n_w; i++) {
        struct omni__placement *pl = &spec->placements[i];
        struct worker *w = &c->w[i];
        w->index = i;
        w->pidfd = -1;
        w->process = pl->process;
        w->configured = pl->endpoint;
        w->is_auto = !strcmp(pl->endpoint, "auto");
        w->is_tcp = is_tcp(pl->endpoint);
        need_rundir |= w->is_auto;
        need_curve |= w->is_tcp;
        snprintf(w->endpoint, sizeof w->endpoint, "%s", pl->endpoint);
        w->stages = calloc((size_t)spec->n_stages + 1, sizeof *w->stages);
        if (!w->stages) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto fail;
        }
        for (int s = 0; s < spec->n_stages; s++)
            if (spec->stages[s].process == i)
                w->stages[w->n_stages++] = s;
    }
    if (need_curve && (rc = load_curve(c, err)))
        goto fail;
    if (need_rundir && (rc = omni__ipc_runtime_dir(c->rundir, sizeof c->rundir, err)))
        goto fail;
    if (!(c->zctx = zmq_ctx_new()) || (c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = omni_error_set(err, OMNI_EIO, "cannot set up ZeroMQ / eventfd: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&c->thread, NULL, io_main, c)) {
        rc = omni_error_set(err, OMNI_EIO, "cannot start the IPC thread");
        goto fail;
    }
    c->thread_started = 1;
    /* wait until every worker is ready or one failed */
    double until = omni__ipc_now_ms() + c->cfg.start_ms + c->cfg.load_ms;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int ready = 0, failed = -1;
        for (int i = 0; i < c->n_w; i++) {
            ready += c->w[i].state == W_READY;
            if (c->w[i].state == W_FAILED && failed < 0)
                failed = i;
        }
        if (failed >= 0) {
            rc = omni_error_set(err, OMNI_EPEER, "%s:%d:%d: placement: %s", spec->file,
                                spec->placements[failed].loc.line, spec->placements[failed].loc.col, c->w[failed].why);
            break;
        }
        if (ready == c->n_w)
            break;
        double now = omni__ipc_now_ms();
        if (now > until) {
            rc = omni_error_set(err, OMNI_ETIMEOUT, "%s: placement: the workers were not ready within %d ms", spec->file,
                                c->cfg.start_ms + c->cfg.load_ms);
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    /* where inputs of remote stages should be before they cross */
    for (int s = 0; s < spec->n_stages; s++) {
        struct omni__stage_spec *st = &spec->stages[s];
        c->proxy_dev[s] = OMNI_CPU;
        if (st->process < 0 || st->device.type != OMNI_DEVICE_CUDA)
            continue;
        struct worker *w = &c->w[st->process];
        if (w->caps.same_host && !w->caps.force_inline && st->device.index < w->caps.n_cuda) {
            int local = omni__cuda_ordinal_of(w->caps.cuda_uuids[st->device.index], 16);
            if (local >= 0)
                c->proxy_dev[s] = (struct omni_device){OMNI_DEVICE_CUDA, local};
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (rc)
        goto fail;
    *out = c;
    return OMNI_OK;
fail:
    omni__ipc_close(c);
    return rc;
}

void omni__ipc_close(struct omni__ipc_cluster *c)
{
    if (!c)
        return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_mutex_unlock(&c->mu);
        wake(c);
        pthread_join(c->thread, NULL);
    }
    for (int i = 0; c->w && i < c->n_w; i++)
        free(c->w[i].stages);
    free(c->w);
    free(c->proxy_dev);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    if (c->rundir[0]) {
        /* our sockets were inside; the workers removed theirs on exit, or not */
        char path[PATH_MAX + 64];
        DIR *d = opendir(c->rundir);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                    snprintf(path, sizeof path, "%s/%s", c->rundir, de->d_name);
                    unlink(path);
                }
            closedir(d);
        }
        rmdir(c->rundir);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void omni__ipc_stage_proxy(struct omni__ipc_cluster *c, int stage, struct omni__stage_inst *si)
{
    struct omni__stage_spec *st = &c->spec->stages[stage];
    memset(si, 0, sizeof *si);
    si->plugin = st->plugin;
    si->name = st->name; /* borrowed: stage stays NULL, so the executor never destroys this slot */
    si->device = c->proxy_dev[stage];
    si->dtype = st->dtype;
}

/* ---- calls ---------------------------------------------------------------------------------- */

static uint64_t reserve_id(struct omni__ipc_cluster *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t id = ++c->next_call;
    pthread_mutex_unlock(&c->mu);
    return id;
}

/* Wait (bounded) until the worker is ready; its caps are copied out. */
static int wait_ready(struct omni__ipc_cluster *c, struct worker *w, struct omni__peer_caps *caps,
                      struct omni_error *err)
{
    char wd[PATH_MAX + 128];
    /* OMNI_IPC_START_MS to get an answer, plus OMNI_IPC_LOAD_MS once it loads */
    double t0 = omni__ipc_now_ms(), until = t0 + c->cfg.start_ms;
    int rc = OMNI_OK;
    pthread_mutex_lock(&c->mu);
    while (w->state != W_READY) {
        if (w->state == W_FAILED || c->stop) {
            rc = omni_error_set(err, OMNI_EPEER, "%s", w->why[0] ? w->why : "worker stopped");
            break;
        }
        if (w->state == W_LOADING && w->state_since + c->cfg.load_ms > until)
            until = w->state_since + c->cfg.load_ms;
        if (omni__ipc_now_ms() > until) {
            rc = omni_error_set(err, OMNI_ETIMEOUT, "%s was not ready after %.0f ms%s%s", wdesc(w, wd, sizeof wd),
                                omni__ipc_now_ms() - t0, w->why[0] ? "; last failure: " : "", w->why);
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    if (!rc)
        *caps = w->caps;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static struct omni__ipc_request *request_new(struct omni__ipc_cluster *c)
{
    struct omni__ipc_request *r = calloc(1, sizeof *r);
    if (!r || !(r->gen = calloc((size_t)c->n_w + 1, sizeof *r->gen))) {
        free(r);
        return NULL;
    }
    r->id = (uint64_t)atomic_fetch_add(&request_counter, 1) + 1;
    r->x.request = r->id;
    return r;
}

static int is_pipeline_output(const struct omni__ipc_cluster *c, int stage, int port)
{
    for (int i = 0; i < c->spec->n_outputs; i++)
        if (c->spec->outputs[i].ep.stage_idx == stage && c->spec->outputs[i].ep.port_idx == port)
            return 1;
    return 0;
}

int omni__ipc_call(struct omni__ipc_cluster *c, struct omni__ipc_request **reqp, int stage, int use_step,
                   struct omni_io *io, struct omni_error *err)
{
    struct omni__stage_spec *st = &c->spec->stages[stage];
    struct worker *w = &c->w[st->process];
    if (!*reqp && !(*reqp = request_new(c)))
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    struct omni__ipc_request *req = *reqp;
    struct omni__peer_caps caps;
    int rc = wait_ready(c, w, &caps, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->mu);
    int gen = w->generation;
    pthread_mutex_unlock(&c->mu);
    if (req->gen[w->index] && req->gen[w->index] != gen)
        return omni_error_set(err, OMNI_EPEER, "%s; it was restarted and this request's state there is lost", w->why);
    req->gen[w->index] = gen;
    const struct omni_run_ctx *ctx = io->ctx;
    Omni__RunStage run = OMNI__RUN_STAGE__INIT;
    Omni__TensorRef *refs = calloc((size_t)io->n_in + 1, sizeof *refs);
    Omni__TensorRef **refp = calloc((size_t)io->n_in + 1, sizeof *refp);
    Omni__KeyValue *kvs = NULL, **kvp = NULL;
    struct pending *p = NULL;
    int n_opts = 0;
    if (!refs || !refp) {
        rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < io->n_in; i++) {
        if (!io->in[i].buf)
            continue;
        const struct omni_port_desc *pd = omni__plugin_port(st->plugin->desc, OMNI_PORT_IN, (int)i);
        char what[300];
        snprintf(what, sizeof what, "input '%s'", pd ? pd->name : "?");
        Omni__TensorRef *r = &refs[run.n_inputs];
        r->port = (int32_t)i;
        if ((rc = omni__xfer_export(&req->x, &caps, &io->in[i], r, what, err)))
            goto out;
        refp[run.n_inputs++] = r;
    }
    run.inputs = refp;
    while (ctx->options && omni_params_key(ctx->options, n_opts))
        n_opts++;
    if (n_opts) {
        kvs = calloc((size_t)n_opts, sizeof *kvs);
        kvp = calloc((size_t)n_opts, sizeof *kvp);
        if (!kvs || !kvp) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < n_opts; i++) {
            omni__key_value__init(&kvs[i]);
            kvs[i].key = (char *)omni_params_key(ctx->options, i);
            kvs[i].value = (char *)omni_params_str(ctx->options, kvs[i].key, "");
            kvp[i] = &kvs[i];
        }
        run.options = kvp;
        run.n_options = (size_t)n_opts;
    }
    run.request_id = req->id;
    run.call_id = reserve_id(c);
    run.stage = st->name;
    run.step = use_step != 0;
    run.task = (char *)(ctx->task ? ctx->task : "");
    run.position = ctx->position;
    run.step_index = ctx->step;
    run.seed = ctx->seed;
    run.batch = ctx->batch;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_RUN;
    env.run = &run;
    if (!(p = pending_new(c, w->index, P_RUN, stage, req->id, &env, c->cfg.call_ms, err))) {
        rc = err ? err->status : OMNI_ENOMEM;
        goto out;
    }
    if (caps.max_message && p->len > caps.max_message) {
        rc = omni_error_set(err, OMNI_ERANGE, "a call of %zu bytes exceeds what worker process '%s' accepts (%llu bytes, "
                            "its OMNI_IPC_MAX_MESSAGE)", p->len, w->process, (unsigned long long)caps.max_message);
        goto out;
    }
    /* submit with the id already in the message */
    pthread_mutex_lock(&c->mu);
    p->call_id = run.call_id;
    p->gen = gen;
    enqueue(c, p);
    pthread_mutex_unlock(&c->mu);
    wake(c);
    pthread_mutex_lock(&c->mu);
    while (!p->done) {
        double slack = p->deadline + c->cfg.start_ms + c->cfg.load_ms + 5000 - omni__ipc_now_ms();
        if (slack <= 0) { /* cannot happen while the I/O thread runs: it enforces deadlines */
            for (struct pending **pp = &c->pend; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                    *pp = p->next;
                    break;
                }
            p->done = 1;
            p->rc = omni_error_set(&p->err, OMNI_ETIMEOUT, "no verdict from the IPC thread");
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    if (p->rc) {
        rc = omni_error_set(err, p->rc, "%s", p->err.msg);
        goto out;
    }
    const Omni__Done *d = p->reply->done;
    for (size_t k = 0; k < d->n_outputs; k++) {
        const Omni__TensorRef *r = d->outputs[k];
        if (r->port < 0 || (uint32_t)r->port >= io->n_out) {
            rc = omni_error_set(err, OMNI_EPROTO, "worker process '%s' answered with output port %d; the stage has %u",
                                w->process, r->port, io->n_out);
            goto out;
        }
        const struct omni_port_desc *pd = omni__plugin_port(st->plugin->desc, OMNI_PORT_OUT, r->port);
        omni_tensor_release(&io->out[r->port]);
        if ((rc = omni__xfer_import(&req->x, r, &io->out[r->port], err))) {
            omni_error_prefix(err, "worker process '%s', output '%s': ", w->process, pd ? pd->name : "?");
            goto out;
        }
        /* GPU memory of the worker is released when the request ends: what the
         * caller keeps beyond it (a pipeline output) gets its own copy */
        if (omni_buffer_kind(io->out[r->port].buf) == OMNI_BUFFER_CUDA_IPC && is_pipeline_output(c, stage, r->port)) {
            struct omni_tensor own;
            if ((rc = omni_tensor_copy_to(&own, &io->out[r->port], io->out[r->port].device, err)))
                goto out;
            omni_tensor_release(&io->out[r->port]);
            io->out[r->port] = own;
        }
    }
    io->advance = d->advance;
    if (d->timings)
        OMNI_LOG(OMNI_LOG_DEBUG, "stage '%s' in '%s': queued %.2f ms, import %.2f ms, run %.2f ms, export %.2f ms",
                 st->name, w->process, d->timings->queue_ms, d->timings->import_ms, d->timings->run_ms,
                 d->timings->export_ms);
    rc = d->status;
    if (rc == OMNI_DONE)
        omni_error_set(err, OMNI_DONE, "%s", d->message ? d->message : "");
out:
    if (rc < 0)
        for (uint32_t k = 0; k < io->n_out; k++)
            omni_tensor_release(&io->out[k]);
    if (p) {
        omni__ipc_msg_free(p->reply);
        free(p->msg);
        free(p);
    }
    for (size_t i = 0; refs && i < io->n_in; i++)
        omni__xfer_ref_clear(&refs[i]);
    free(refs);
    free(refp);
    free(kvs);
    free(kvp);
    return rc;
}

void omni__ipc_request_end(struct omni__ipc_cluster *c, struct omni__ipc_request *req)
{
    if (!req)
        return;
    struct pending **ends = calloc((size_t)c->n_w + 1, sizeof *ends);
    for (int i = 0; ends && i < c->n_w; i++) {
        if (!req->gen[i])
            continue;
        Omni__Cancel k = OMNI__CANCEL__INIT;
        k.request_id = req->id;
        k.call_id = reserve_id(c);
        k.finished = 1;
        Omni__Envelope env = OMNI__ENVELOPE__INIT;
        env.body_case = OMNI__ENVELOPE__BODY_CANCEL;
        env.cancel = &k;
        struct pending *p = pending_new(c, i, P_END, -1, req->id, &env, 2 * c->cfg.dead_ms, NULL);
        if (!p)
            continue;
        p->call_id = k.call_id;
        pthread_mutex_lock(&c->mu);
        enqueue(c, p);
        pthread_mutex_unlock(&c->mu);
        ends[i] = p;
    }
    wake(c);
    pthread_mutex_lock(&c->mu);
    for (int i = 0; ends && i < c->n_w; i++) {
        struct pending *p = ends[i];
        while (p && !p->done) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 20 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
            if (omni__ipc_now_ms() > p->deadline + 5000) /* the I/O thread answers first */
                break;
        }
        if (p && !p->done) {
            for (struct pending **pp = &c->pend; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                    *pp = p->next;
                    break;
                }
            p->done = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; ends && i < c->n_w; i++)
        if (ends[i]) {
            if (ends[i]->rc)
                OMNI_LOG(OMNI_LOG_DEBUG, "ending request %llu: %s", (unsigned long long)req->id, ends[i]->err.msg);
            omni__ipc_msg_free(ends[i]->reply);
            free(ends[i]->msg);
            free(ends[i]);
        }
    free(ends);
    omni__xfer_req_end(&req->x);
    free(req->gen);
    free(req);
}
