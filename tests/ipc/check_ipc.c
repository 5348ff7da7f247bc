/* Multi-process pipelines on the host path: `placement:` stages run in worker
 * processes (started by the coordinator, or by hand with `omni worker`) and
 * give the single-process outputs bit for bit; faults are injected and
 * handled (SIGKILL mid-request, a hung worker, malformed / oversized /
 * wrong-version messages, references to missing segments, a failing stage,
 * bad keys on tcp); no shared-memory segment outlives its request.
 *
 * Uses the test plugins (test_source, test_counter, test_sleep) from
 * $OMNI_BUILD/testplugins and the omni executable from $OMNI_BUILD/bin. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/ipc_impl.h"
#include "../common/testutil.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *tmp(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_tmpdir(), name);
    return buf[k];
}

static char plugin_dir[PATH_MAX], omni_exe[PATH_MAX];

static void setup(void)
{
    ck_assert_msg(realpath(tu_build_path("testplugins"), plugin_dir), "no %s (make tests)", tu_build_path("testplugins"));
    ck_assert_msg(realpath(tu_build_path("bin/omni"), omni_exe), "no %s (make cli)", tu_build_path("bin/omni"));
    /* quick failure detection keeps the suite fast; the defaults are tested by use */
    setenv("OMNI_IPC_START_MS", "5000", 1);
}

/* Write a pipeline: header (plugin_path filled in) + body. */
static const char *write_yaml(const char *name, const char *body)
{
    const char *path = tmp(name);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fprintf(f, "omni: 1\nname: %s\nplugin_path: [%s]\n%s", name, plugin_dir, body);
    fclose(f);
    return path;
}

struct result {
    int rc;
    char msg[OMNI_ERROR_MAX];
    struct omni_tensor out[4]; /* host copies of the named outputs */
    struct omni_tensor tokens;
};

static void result_free(struct result *r)
{
    for (int i = 0; i < 4; i++)
        omni_tensor_release(&r->out[i]);
    omni_tensor_release(&r->tokens);
}

/* One request: rows of text into "prompt" (when rows > 0), options, outputs by name. */
static void run_one(struct omni_pipeline *p, int rows, const char *const *opts, int n_opts,
                    const char *const *outs, int n_outs, struct result *res)
{
    memset(res, 0, sizeof *res);
    struct omni_error err;
    omni_error_clear(&err);
    struct omni_request *r = omni_request_new(p);
    ck_assert(r != NULL);
    if (rows > 0) {
        const char *texts[8] = {"a", "bb", "ccc", "dddd", "e", "f", "g", "h"};
        ck_assert_int_eq(omni_request_set_texts(r, "prompt", texts, rows, &err), OMNI_OK);
    }
    for (int i = 0; i < n_opts; i++)
        ck_assert_int_eq(omni_request_set_option(r, opts[i], &err), OMNI_OK);
    res->rc = omni_pipeline_run(p, r, &err);
    snprintf(res->msg, sizeof res->msg, "%s", err.msg);
    for (int i = 0; !res->rc && i < n_outs; i++) {
        const struct omni_tensor *t = omni_request_output(r, outs[i]);
        ck_assert_msg(t != NULL, "no output '%s'", outs[i]);
        ck_assert_int_eq(omni_tensor_copy_to(&res->out[i], t, OMNI_CPU, &err), OMNI_OK);
    }
    const struct omni_tensor *tok = omni_request_tokens(r);
    if (!res->rc && tok)
        ck_assert_int_eq(omni_tensor_copy_to(&res->tokens, tok, OMNI_CPU, &err), OMNI_OK);
    omni_request_free(r);
}

static struct omni_pipeline *load(const char *path)
{
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    int rc = omni_pipeline_load(&p, path, NULL, &err);
    ck_assert_msg(rc == OMNI_OK, "load %s: %s", path, err.msg);
    return p;
}

static void assert_same_tensor(const struct omni_tensor *a, const struct omni_tensor *b, const char *what)
{
    char sa[64], sb[64];
    ck_assert_msg(a->buf && b->buf, "%s: missing", what);
    ck_assert_msg(a->dtype == b->dtype && a->ndim == b->ndim, "%s: %s vs %s", what, omni_tensor_str(a, sa, sizeof sa),
                  omni_tensor_str(b, sb, sizeof sb));
    for (int i = 0; i < a->ndim; i++)
        ck_assert_int_eq(a->shape[i], b->shape[i]);
    ck_assert_msg(!memcmp(omni_tensor_data(a), omni_tensor_data(b), omni_tensor_nbytes(a)), "%s: bytes differ", what);
}

/* Every pid we know of (this process, workers it started) has no segment left. */
static void assert_no_segments(void)
{
    pid_t pids[256];
    int n = omni__ipc_started_workers(pids, 255);
    pids[n++] = getpid();
    for (int i = 0; i < n; i++)
        ck_assert_msg(omni__shm_count_pid(pids[i]) == 0, "%d segment(s) of pid %ld left in /dev/shm",
                      omni__shm_count_pid(pids[i]), (long)pids[i]);
}

static pid_t one_live_worker(void)
{
    pid_t pids[8];
    int n = omni__ipc_live_workers(pids, 8);
    ck_assert_int_eq(n, 1);
    return pids[0];
}

static int alive(pid_t pid) { return kill(pid, 0) == 0; }

/* `omni worker ARGS...` started by hand, stderr into a log file. */
static pid_t start_worker(const char *log, const char *const *args, int n_args, const char *const *env, int n_env)
{
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        for (int i = 0; i < n_env; i++)
            putenv((char *)env[i]);
        char *argv[40], parent[32];
        int k = 0;
        argv[k++] = omni_exe;
        argv[k++] = "worker";
        if (n_args && !strcmp(args[0], "--listen")) { /* a failed test leaves no worker behind */
            snprintf(parent, sizeof parent, "%ld", (long)getppid());
            argv[k++] = "--parent";
            argv[k++] = parent;
        }
        for (int i = 0; i < n_args && k < 31; i++)
            argv[k++] = (char *)args[i];
        argv[k] = NULL;
        execv(omni_exe, argv);
        _exit(127);
    }
    return pid;
}

static void wait_for_file(const char *path)
{
    for (int i = 0; i < 300 && access(path, F_OK); i++)
        usleep(10000);
    ck_assert_msg(!access(path, F_OK), "%s did not appear", path);
}

static int stop_worker(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 300; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert(f != NULL);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- pipelines -------------------------------------------------------------------------- */

/* test_source -> test_counter (recurrent: per-request state) in a loop. */
static const char *COUNTER_BODY =
    "stages:\n"
    "  src: {type: test_source, params: {value: 5}}\n"
    "  counter: {type: test_counter, params: {inc: 2}}\n"
    "inputs: {prompt: src.text}\n"
    "edges: [src.ids -> counter.ids]\n"
    "loop:\n"
    "  feed: [counter.next -> counter.ids]\n"
    "  tokens: counter.next\n"
    "  max_tokens: 6\n"
    "outputs: {log: counter.log, next: counter.next}\n";

/* gen (f32 row) -> a (x*1.7+0.3) -> b (the same buffer, passed through) -> c (x*-0.5+2). */
static const char *CHAIN_BODY =
    "stages:\n"
    "  gen: {type: test_sleep, params: {n: 96}}\n"
    "  a: {type: test_sleep, params: {mul: 1.7, add: 0.3}}\n"
    "  b: {type: test_sleep, params: {passthrough: 1}}\n"
    "  c: {type: test_sleep, params: {mul: -0.5, add: 2}}\n"
    "edges: [gen.y -> a.x, a.y -> b.x, b.y -> c.x]\n"
    "outputs: {y: c.y, mid: b.y}\n";

/* test_source -> sl (sleeps / hangs / fails on request). */
static const char *SLEEP_BODY =
    "stages:\n"
    "  src: {type: test_source, params: {value: 40}}\n"
    "  sl: {type: test_sleep}\n"
    "inputs: {prompt: src.text}\n"
    "edges: [src.ids -> sl.x]\n"
    "outputs: {y: sl.y}\n";

static const char *with_placement(const char *body, const char *placement)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%splacement:\n%s", body, placement);
    return buf[k];
}

static const char *const COUNTER_OUTS[] = {"log", "next"};

/* ---- split pipelines give the single-process outputs ------------------------------------- */

START_TEST(test_split_recurrent_stage_matches_single_process)
{
    setup();
    struct omni_pipeline *single = load(write_yaml("single.yaml", COUNTER_BODY));
    struct omni_pipeline *split =
        load(write_yaml("split.yaml", with_placement(COUNTER_BODY, "  - {process: w, stages: [counter]}\n")));
    ck_assert(alive(one_live_worker()));
    for (int rows = 1; rows <= 2; rows++) {
        struct result a, b;
        run_one(single, rows, NULL, 0, COUNTER_OUTS, 2, &a);
        run_one(split, rows, NULL, 0, COUNTER_OUTS, 2, &b);
        ck_assert_msg(a.rc == OMNI_OK && b.rc == OMNI_OK, "%s / %s", a.msg, b.msg);
        /* hand-worked: row r starts at 5 + r, +2 per call; positions 0..5 */
        ck_assert_int_eq(b.tokens.shape[0], rows);
        ck_assert_int_eq(b.tokens.shape[1], 6);
        const int32_t *tok = omni_tensor_data(&b.tokens);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < 6; k++)
                ck_assert_int_eq(tok[r * 6 + k], 5 + r + 2 * (k + 1));
        const int64_t *log = omni_tensor_data(&b.out[0]);
        ck_assert_int_eq(b.out[0].shape[1], 6);
        for (int k = 0; k < 6; k++)
            ck_assert_int_eq(log[k], k);
        assert_same_tensor(&a.out[0], &b.out[0], "log");
        assert_same_tensor(&a.out[1], &b.out[1], "next");
        assert_same_tensor(&a.tokens, &b.tokens, "tokens");
        result_free(&a);
        result_free(&b);
        assert_no_segments(); /* each request's segments are gone when it ends */
    }
    pid_t w = one_live_worker();
    omni_pipeline_free(split);
    omni_pipeline_free(single);
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
    ck_assert_msg(!alive(w), "auto worker %ld outlived its pipeline", (long)w);
    assert_no_segments();
}
END_TEST

static void check_chain(const char *placement, const char *name)
{
    struct omni_pipeline *single = load(write_yaml("chain-single.yaml", CHAIN_BODY));
    struct omni_pipeline *split = load(write_yaml(name, with_placement(CHAIN_BODY, placement)));
    const char *outs[] = {"y", "mid"};
    for (int rep = 0; rep < 3; rep++) {
        struct result a, b;
        run_one(single, 0, NULL, 0, outs, 2, &a);
        run_one(split, 0, NULL, 0, outs, 2, &b);
        ck_assert_msg(a.rc == OMNI_OK && b.rc == OMNI_OK, "%s / %s", a.msg, b.msg);
        assert_same_tensor(&a.out[0], &b.out[0], "y");
        assert_same_tensor(&a.out[1], &b.out[1], "mid");
        /* and against the map computed here, in the stage's order of float operations */
        const float *y = omni_tensor_data(&b.out[0]);
        ck_assert_int_eq(b.out[0].shape[1], 96);
        for (int i = 0; i < 96; i++) {
            float t = 0.37f * (float)i - 1.1f;
            float v = t * t * t;
            v = v * 1.7f + 0.3f;
            v = v * -0.5f + 2.0f;
            ck_assert_msg(fabsf(y[i] - v) <= 1e-6f * fabsf(v) + 1e-6f, "y[%d] = %g, expected %g", i, y[i], v);
        }
        result_free(&a);
        result_free(&b);
        assert_no_segments();
    }
    omni_pipeline_free(split);
    omni_pipeline_free(single);
    assert_no_segments();
}

START_TEST(test_split_across_two_workers_is_bit_exact)
{
    setup();
    /* a in one worker, b (passing a's shared buffer on) in another, c at home */
    check_chain("  - {process: one, stages: [a]}\n  - {process: two, stages: [b]}\n", "chain-split.yaml");
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
}
END_TEST

START_TEST(test_inline_path_matches_single_process)
{
    setup();
    setenv("OMNI_IPC_INLINE", "1", 1); /* what a peer on another host gets */
    check_chain("  - {process: one, stages: [a, b]}\n", "chain-inline.yaml");
}
END_TEST

struct conc {
    struct omni_pipeline *p;
    int rows;
    struct result res;
};

static void *conc_main(void *arg)
{
    struct conc *c = arg;
    const char *opts[] = {"sl.sleep_ms=100"};
    const char *outs[] = {"y"};
    run_one(c->p, c->rows, opts, 1, outs, 1, &c->res);
    return NULL;
}

START_TEST(test_many_requests_in_flight)
{
    setup();
    struct omni_pipeline *p =
        load(write_yaml("conc.yaml", with_placement(SLEEP_BODY, "  - {process: w, stages: [sl]}\n")));
    struct conc cs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cs[i] = (struct conc){p, i + 1, {0}};
        ck_assert_int_eq(pthread_create(&th[i], NULL, conc_main, &cs[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(cs[i].res.rc == OMNI_OK, "%s", cs[i].res.msg);
        /* each request gets its own rows back: 40, 41, ... */
        ck_assert_int_eq(cs[i].res.out[0].shape[0], i + 1);
        const int32_t *y = omni_tensor_data(&cs[i].res.out[0]);
        for (int r = 0; r <= i; r++)
            ck_assert_int_eq(y[r], 40 + r);
        result_free(&cs[i].res);
    }
    omni_pipeline_free(p);
    assert_no_segments();
}
END_TEST

/* ---- faults -------------------------------------------------------------------------------- */

struct killer {
    pid_t pid;
    int delay_ms;
    double at;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    usleep((useconds_t)k->delay_ms * 1000);
    k->at = now_ms();
    kill(k->pid, SIGKILL);
    return NULL;
}

START_TEST(test_sigkill_mid_request_fails_fast_then_restarts)
{
    setup();
    struct omni_pipeline *p =
        load(write_yaml("kill.yaml", with_placement(SLEEP_BODY, "  - {process: w, stages: [sl]}\n")));
    pid_t first = one_live_worker();
    struct killer k = {first, 300, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, killer_main, &k), 0);
    const char *slow[] = {"sl.sleep_ms=5000"};
    const char *outs[] = {"y"};
    struct result r;
    run_one(p, 1, slow, 1, outs, 1, &r);
    double failed_at = now_ms();
    pthread_join(th, NULL);
    ck_assert_int_ne(r.rc, OMNI_OK);
    ck_assert_msg(failed_at - k.at < 1000, "the request failed %.0f ms after the kill", failed_at - k.at);
    ck_assert_msg(strstr(r.msg, "stage 'sl'") && strstr(r.msg, "worker process 'w'") && strstr(r.msg, "signal 9"),
                  "message: %s", r.msg);
    /* restarted: the next request succeeds in a new process */
    struct result ok;
    run_one(p, 2, NULL, 0, outs, 1, &ok);
    ck_assert_msg(ok.rc == OMNI_OK, "%s", ok.msg);
    const int32_t *y = omni_tensor_data(&ok.out[0]);
    ck_assert_int_eq(y[0], 40);
    ck_assert_int_eq(y[1], 41);
    pid_t second = one_live_worker();
    ck_assert_int_ne(second, first);
    ck_assert(!alive(first));
    result_free(&ok);
    assert_no_segments();
    omni_pipeline_free(p);
    assert_no_segments();
}
END_TEST

START_TEST(test_hung_worker_is_detected_by_heartbeat)
{
    setup();
    setenv("OMNI_IPC_HEARTBEAT_MS", "50", 1);
    setenv("OMNI_IPC_DEAD_MS", "400", 1);
    struct omni_pipeline *p =
        load(write_yaml("hang.yaml", with_placement(SLEEP_BODY, "  - {process: w, stages: [sl]}\n")));
    pid_t first = one_live_worker();
    const char *hang[] = {"sl.stop=1"}; /* the worker SIGSTOPs itself: no more heartbeats */
    const char *outs[] = {"y"};
    struct result r;
    double t0 = now_ms();
    run_one(p, 1, hang, 1, outs, 1, &r);
    double took = now_ms() - t0;
    ck_assert_int_eq(r.rc, OMNI_EPEER);
    ck_assert_msg(strstr(r.msg, "heartbeats for 400 ms") && strstr(r.msg, "'w'"), "message: %s", r.msg);
    ck_assert_msg(took < 2000, "detection took %.0f ms", took);
    struct result ok;
    run_one(p, 1, NULL, 0, outs, 1, &ok);
    ck_assert_msg(ok.rc == OMNI_OK, "%s", ok.msg);
    ck_assert_int_ne(one_live_worker(), first);
    ck_assert(!alive(first));
    result_free(&ok);
    omni_pipeline_free(p);
    assert_no_segments();
}
END_TEST

START_TEST(test_ipc_knobs_from_the_pipeline_and_the_environment)
{
    /* the pipeline's ipc: mapping sets the heartbeat and the dead time; the
     * environment, when set, wins over it */
    setup();
    unsetenv("OMNI_IPC_HEARTBEAT_MS");
    unsetenv("OMNI_IPC_DEAD_MS");
    const char *yaml = with_placement(SLEEP_BODY, "  - {process: w, stages: [sl]}\n"
                                                  "ipc: {heartbeat_ms: 50, dead_ms: 400}\n");
    const char *hang[] = {"sl.stop=1"};
    const char *outs[] = {"y"};
    for (int env = 0; env < 2; env++) {
        if (env)
            setenv("OMNI_IPC_DEAD_MS", "600", 1);
        struct omni_pipeline *p = load(write_yaml("knobs.yaml", yaml));
        one_live_worker();
        struct result r;
        double t0 = now_ms();
        run_one(p, 1, hang, 1, outs, 1, &r);
        double took = now_ms() - t0;
        ck_assert_int_eq(r.rc, OMNI_EPEER);
        ck_assert_msg(strstr(r.msg, env ? "heartbeats for 600 ms" : "heartbeats for 400 ms"), "message: %s", r.msg);
        ck_assert_msg(took < 2000, "detection took %.0f ms", took);
        result_free(&r);
        omni_pipeline_free(p);
    }
    assert_no_segments();
}
END_TEST

START_TEST(test_slow_call_times_out_and_is_canceled_there)
{
    setup();
    setenv("OMNI_IPC_CALL_MS", "300", 1);
    struct omni_pipeline *p =
        load(write_yaml("slow.yaml", with_placement(SLEEP_BODY, "  - {process: w, stages: [sl]}\n")));
    pid_t w = one_live_worker();
    const char *slow[] = {"sl.sleep_ms=1500"};
    const char *outs[] = {"y"};
    struct result r;
    double t0 = now_ms();
    run_one(p, 1, slow, 1, outs, 1, &r);
    ck_assert_int_eq(r.rc, OMNI_ETIMEOUT);
    ck_assert_msg(now_ms() - t0 < 1000, "took %.0f ms", now_ms() - t0);
    ck_assert_msg(strstr(r.msg, "stage 'sl'") && strstr(r.msg, "did not answer within 300 ms"), "%s", r.msg);
    /* the worker is the same one, busy until the stage returns (a running call cannot be
     * interrupted; its answer is dropped); once it is free, the next request succeeds */
    usleep(1400 * 1000);
    run_one(p, 1, NULL, 0, outs, 1, &r);
    ck_assert_msg(r.rc == OMNI_OK, "%s", r.msg);
    ck_assert_int_eq(one_live_worker(), w);
    result_free(&r);
    omni_pipeline_free(p);
    assert_no_segments();
}
END_TEST

START_TEST(test_stage_error_names_worker_and_keeps_it)
{
    setup();
    struct omni_pipeline *p =
        load(write_yaml("fail.yaml", with_placement(SLEEP_BODY, "  - {process: w, stages: [sl]}\n")));
    pid_t w = one_live_worker();
    const char *fail[] = {"sl.fail=1"};
    const char *outs[] = {"y"};
    struct result r;
    run_one(p, 1, fail, 1, outs, 1, &r);
    ck_assert_int_eq(r.rc, OMNI_EINVAL);
    ck_assert_msg(strstr(r.msg, "stage 'sl' (test_sleep): in worker process 'w' (pid") &&
                      strstr(r.msg, "failing on request"),
                  "message: %s", r.msg);
    run_one(p, 1, NULL, 0, outs, 1, &r);
    ck_assert_msg(r.rc == OMNI_OK, "%s", r.msg);
    ck_assert_int_eq(one_live_worker(), w); /* a stage error is not a worker fault */
    result_free(&r);
    omni_pipeline_free(p);
    assert_no_segments();
}
END_TEST

START_TEST(test_load_error_names_process_and_stage)
{
    setup();
    const char *body = "stages:\n"
                       "  src: {type: test_source}\n"
                       "  counter: {type: test_counter, params: {inc: lots}}\n"
                       "inputs: {prompt: src.text}\n"
                       "edges: [src.ids -> counter.ids]\n"
                       "outputs: {next: counter.next}\n"
                       "placement:\n"
                       "  - {process: bad, stages: [counter]}\n";
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    int rc = omni_pipeline_load(&p, write_yaml("loaderr.yaml", body), NULL, &err);
    ck_assert_int_eq(rc, OMNI_EPEER);
    ck_assert(p == NULL);
    ck_assert_msg(strstr(err.msg, "placement") && strstr(err.msg, "'bad'") && strstr(err.msg, "stage 'counter'") &&
                      strstr(err.msg, "inc") && strstr(err.msg, "loaderr.yaml:"),
                  "message: %s", err.msg);
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
    assert_no_segments();
}
END_TEST

/* ---- raw protocol against a worker started by hand ------------------------------------------ */

struct raw {
    void *ctx, *sock;
};

static void raw_open(struct raw *r, const char *endpoint)
{
    r->ctx = zmq_ctx_new();
    r->sock = zmq_socket(r->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_connect(r->sock, endpoint), 0);
}

static void raw_close(struct raw *r)
{
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

static void raw_send_bytes(struct raw *r, const void *data, size_t n)
{
    ck_assert_int_eq(zmq_send(r->sock, data, n, 0), (int)n);
}

static void raw_send(struct raw *r, Omni__Envelope *e, uint32_t protocol)
{
    e->protocol = protocol;
    size_t n = omni__envelope__get_packed_size(e);
    uint8_t *b = malloc(n + 1);
    omni__envelope__pack(e, b);
    raw_send_bytes(r, b, n);
    free(b);
}

/* Next answer within 3 s, decoded with this suite's own code. */
static Omni__Envelope *raw_recv(struct raw *r)
{
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    ck_assert_msg(zmq_poll(&it, 1, 3000) == 1, "no answer from the worker");
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert(zmq_msg_recv(&m, r->sock, 0) >= 0);
    Omni__Envelope *e = omni__envelope__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    zmq_msg_close(&m);
    ck_assert(e != NULL);
    ck_assert_uint_eq(e->protocol, OMNI_IPC_PROTOCOL);
    return e;
}

static void expect_error(struct raw *r, int status, const char *text)
{
    Omni__Envelope *e = raw_recv(r);
    ck_assert_int_eq(e->body_case, OMNI__ENVELOPE__BODY_ERROR);
    ck_assert_int_eq(e->error->status, status);
    ck_assert_msg(strstr(e->error->message, text), "error '%s' lacks '%s'", e->error->message, text);
    omni__envelope__free_unpacked(e, NULL);
}

static void raw_hello(struct raw *r)
{
    Omni__Hello h = OMNI__HELLO__INIT;
    h.protocol = OMNI_IPC_PROTOCOL;
    h.abi_major = OMNI_ABI_MAJOR;
    h.abi_minor = OMNI_ABI_MINOR;
    h.pid = getpid();
    h.call_id = 1;
    h.hostname = "elsewhere"; /* not this host: answers come inline */
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    raw_send(r, &env, OMNI_IPC_PROTOCOL);
    Omni__Envelope *a = raw_recv(r);
    ck_assert_int_eq(a->body_case, OMNI__ENVELOPE__BODY_HELLO);
    ck_assert_uint_eq(a->hello->call_id, 1);
    ck_assert_uint_eq(a->hello->abi_major, OMNI_ABI_MAJOR);
    omni__envelope__free_unpacked(a, NULL);
}

static uint64_t raw_heartbeat(struct raw *r)
{
    Omni__Heartbeat hb = OMNI__HEARTBEAT__INIT;
    hb.seq = 9;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    raw_send(r, &env, OMNI_IPC_PROTOCOL);
    Omni__Envelope *a = raw_recv(r);
    ck_assert_int_eq(a->body_case, OMNI__ENVELOPE__BODY_HEARTBEAT);
    ck_assert_uint_eq(a->heartbeat->seq, 9);
    uint64_t refused = a->heartbeat->refused;
    omni__envelope__free_unpacked(a, NULL);
    return refused;
}

static void raw_load_sleep(struct raw *r, const char *name, const char *mul)
{
    char *dirs[1] = {plugin_dir};
    Omni__ParamNode root = OMNI__PARAM_NODE__INIT, kv = OMNI__PARAM_NODE__INIT;
    root.kind = 2;
    root.parent = -1;
    kv.kind = 0;
    kv.parent = 0;
    kv.key = "mul";
    kv.scalar = (char *)mul;
    Omni__ParamNode *params[2] = {&root, &kv};
    Omni__LoadStage l = OMNI__LOAD_STAGE__INIT;
    l.call_id = 2;
    l.stage = (char *)name;
    l.type = "test_sleep";
    l.plugin_dirs = dirs;
    l.n_plugin_dirs = 1;
    l.where = "raw:1:1";
    l.params = params;
    l.n_params = 2;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_LOAD;
    env.load = &l;
    raw_send(r, &env, OMNI_IPC_PROTOCOL);
    Omni__Envelope *a = raw_recv(r);
    ck_assert_msg(a->body_case == OMNI__ENVELOPE__BODY_DONE, "load: %s",
                  a->body_case == OMNI__ENVELOPE__BODY_ERROR ? a->error->message : "?");
    ck_assert_uint_eq(a->done->call_id, 2);
    omni__envelope__free_unpacked(a, NULL);
}

static void raw_run(struct raw *r, const char *stage, uint64_t call_id, Omni__TensorRef *in)
{
    Omni__TensorRef *ins[1] = {in};
    Omni__RunStage run = OMNI__RUN_STAGE__INIT;
    run.request_id = 77;
    run.call_id = call_id;
    run.stage = (char *)stage;
    run.step_index = -1;
    run.batch = 1;
    run.inputs = ins;
    run.n_inputs = 1;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.body_case = OMNI__ENVELOPE__BODY_RUN;
    env.run = &run;
    raw_send(r, &env, OMNI_IPC_PROTOCOL);
}

struct hand {
    pid_t pid;
    char endpoint[600];
    char log[512];
};

static void hand_start(struct hand *h, const char *name, const char *const *env, int n_env)
{
    char sock[512];
    snprintf(sock, sizeof sock, "%s", tmp(name));
    snprintf(h->endpoint, sizeof h->endpoint, "ipc://%s", sock);
    snprintf(h->log, sizeof h->log, "%s.log", sock);
    const char *args[] = {"--listen", h->endpoint, "-v"};
    h->pid = start_worker(h->log, args, 3, env, n_env);
    wait_for_file(sock);
    struct stat st;
    ck_assert_int_eq(stat(sock, &st), 0);
    ck_assert_msg((st.st_mode & 077) == 0, "socket %s is mode %o: group/others can connect", sock, st.st_mode & 0777);
}

START_TEST(test_worker_refuses_bad_messages_and_keeps_serving)
{
    setup();
    struct hand h;
    const char *env[] = {"OMNI_IPC_MAX_MESSAGE=65536"};
    hand_start(&h, "raw.sock", env, 1);
    struct raw r;
    raw_open(&r, h.endpoint);
    /* garbage */
    const uint8_t junk[] = {0xff, 0xfe, 0x00, 0x13, 0x37, 0x12, 0x99};
    raw_send_bytes(&r, junk, sizeof junk);
    expect_error(&r, OMNI_EPROTO, "malformed");
    /* larger than OMNI_IPC_MAX_MESSAGE (and below ZeroMQ's own cut-off at twice that) */
    uint8_t *big = calloc(1, 100000);
    raw_send_bytes(&r, big, 100000);
    free(big);
    expect_error(&r, OMNI_EPROTO, "exceeds the limit of 65536 bytes");
    /* another protocol version */
    Omni__Heartbeat hb = OMNI__HEARTBEAT__INIT;
    Omni__Envelope env2 = OMNI__ENVELOPE__INIT;
    env2.body_case = OMNI__ENVELOPE__BODY_HEARTBEAT;
    env2.heartbeat = &hb;
    raw_send(&r, &env2, 99);
    expect_error(&r, OMNI_EPROTO, "protocol version 99");
    /* a (well-formed) run before hello */
    float x[4] = {1.5f, -2.0f, 0.25f, 3.0f};
    int64_t shape[2] = {1, 4}, strides[2] = {4, 1};
    Omni__TensorRef in = OMNI__TENSOR_REF__INIT;
    in.dtype = OMNI_DTYPE_F32;
    in.n_shape = in.n_strides = 2;
    in.shape = shape;
    in.strides = strides;
    in.data_case = OMNI__TENSOR_REF__DATA_INLINE_DATA;
    in.inline_data = (ProtobufCBinaryData){sizeof x, (uint8_t *)x};
    raw_run(&r, "x", 3, &in);
    expect_error(&r, OMNI_EPROTO, "hello first");
    /* still serving: hello, load, and a run whose input names a segment that does not exist */
    raw_hello(&r);
    raw_load_sleep(&r, "s1", "2");
    char name[64];
    snprintf(name, sizeof name, "/omni.%ld.77.999999", (long)getpid());
    Omni__ShmRef shm = OMNI__SHM_REF__INIT;
    shm.name = name;
    shm.size = 16;
    in.dtype = OMNI_DTYPE_F32;
    in.n_shape = in.n_strides = 2;
    in.shape = shape;
    in.strides = strides;
    in.data_case = OMNI__TENSOR_REF__DATA_SHM;
    in.shm = &shm;
    raw_run(&r, "s1", 4, &in);
    expect_error(&r, OMNI_ENOTFOUND, "does not exist");
    /* a segment name outside omni's namespace is refused before any shm_open */
    shm.name = "/omni.1.2.3/../../x";
    raw_run(&r, "s1", 5, &in);
    expect_error(&r, OMNI_EPROTO, "not an omni segment name");
    /* and a good run (inline, as from another host) is answered: y = 2x */
    in.data_case = OMNI__TENSOR_REF__DATA_INLINE_DATA;
    in.inline_data = (ProtobufCBinaryData){sizeof x, (uint8_t *)x};
    raw_run(&r, "s1", 6, &in);
    Omni__Envelope *a = raw_recv(&r);
    ck_assert_int_eq(a->body_case, OMNI__ENVELOPE__BODY_DONE);
    ck_assert_uint_eq(a->done->call_id, 6);
    ck_assert_int_eq(a->done->n_outputs, 1);
    Omni__TensorRef *o = a->done->outputs[0];
    ck_assert_int_eq(o->data_case, OMNI__TENSOR_REF__DATA_INLINE_DATA);
    ck_assert_int_eq(o->inline_data.len, 16);
    const float *y = (const float *)o->inline_data.data;
    for (int i = 0; i < 4; i++)
        ck_assert(y[i] == 2 * x[i]);
    ck_assert(a->done->timings != NULL);
    omni__envelope__free_unpacked(a, NULL);
    /* the worker counted what it refused, and logged each */
    ck_assert_uint_eq(raw_heartbeat(&r), 6);
    raw_close(&r);
    ck_assert_int_eq(stop_worker(h.pid), 0);
    const char *log = read_text(h.log);
    int n = 0;
    for (const char *s = log; (s = strstr(s, "refused a message")); s++)
        n++;
    ck_assert_msg(n >= 4, "%d refusals logged:\n%s", n, log);
    ck_assert_msg(strstr(log, "does not exist"), "log:\n%s", log);
    ck_assert_int_eq(omni__shm_count_pid(h.pid), 0);
}
END_TEST

START_TEST(test_hand_started_workers_at_listed_endpoints)
{
    setup();
    struct hand h1, h2;
    hand_start(&h1, "one.sock", NULL, 0);
    hand_start(&h2, "two.sock", NULL, 0);
    char placement[2048];
    snprintf(placement, sizeof placement,
             "  - {process: one, stages: [a], endpoint: '%s'}\n  - {process: two, stages: [b], endpoint: '%s'}\n",
             h1.endpoint, h2.endpoint);
    check_chain(placement, "chain-hand.yaml");
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0); /* none started by the coordinator */
    /* a second coordinator reuses the stages the first loaded (same settings) */
    check_chain(placement, "chain-hand2.yaml");
    ck_assert(alive(h1.pid) && alive(h2.pid)); /* freeing a pipeline leaves hand-started workers running */
    ck_assert_int_eq(omni__shm_count_pid(h1.pid), 0);
    ck_assert_int_eq(omni__shm_count_pid(h2.pid), 0);
    ck_assert_int_eq(stop_worker(h1.pid), 0);
    ck_assert_int_eq(stop_worker(h2.pid), 0);
    const char *log = read_text(h2.log);
    ck_assert_msg(strstr(log, "already loaded; reusing"), "log:\n%s", log);
}
END_TEST

START_TEST(test_unreachable_endpoint_fails_in_bounded_time)
{
    setup();
    setenv("OMNI_IPC_START_MS", "500", 1);
    char placement[1024];
    snprintf(placement, sizeof placement, "  - {process: gone, stages: [sl], endpoint: 'ipc://%s'}\n",
             tmp("nobody.sock"));
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    double t0 = now_ms();
    int rc = omni_pipeline_load(&p, write_yaml("gone.yaml", with_placement(SLEEP_BODY, placement)), NULL, &err);
    ck_assert_int_eq(rc, OMNI_EPEER);
    ck_assert_msg(now_ms() - t0 < 3000, "took %.0f ms", now_ms() - t0);
    ck_assert_msg(strstr(err.msg, "'gone'") && strstr(err.msg, "did not answer within 500 ms"), "%s", err.msg);
}
END_TEST

/* A fake worker: answers the first message (the coordinator's hello) with `reply`. */
struct fake {
    char endpoint[600];
    const void *reply;
    size_t reply_len;
    int ready;
};

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s, f->endpoint))
        return NULL;
    __atomic_store_n(&f->ready, 1, __ATOMIC_SEQ_CST);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 5000) == 1) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        zmq_msg_recv(&id, s, 0);
        zmq_msg_recv(&body, s, 0);
        zmq_send(s, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE);
        zmq_send(s, f->reply, f->reply_len, 0);
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        usleep(300000);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

static void fake_worker_load_fails(const void *reply, size_t len, const char *name, const char *expect)
{
    struct fake f = {.reply = reply, .reply_len = len};
    snprintf(f.endpoint, sizeof f.endpoint, "ipc://%s", tmp(name));
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, fake_main, &f), 0);
    while (!__atomic_load_n(&f.ready, __ATOMIC_SEQ_CST))
        usleep(1000);
    char placement[1024];
    snprintf(placement, sizeof placement, "  - {process: fake, stages: [sl], endpoint: '%s'}\n", f.endpoint);
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    double t0 = now_ms();
    int rc = omni_pipeline_load(&p, write_yaml("fake.yaml", with_placement(SLEEP_BODY, placement)), NULL, &err);
    ck_assert_int_eq(rc, OMNI_EPEER);
    ck_assert_msg(now_ms() - t0 < 1500, "took %.0f ms (the start timeout is 5000)", now_ms() - t0);
    ck_assert_msg(strstr(err.msg, "'fake'") && strstr(err.msg, expect), "message: %s", err.msg);
    pthread_join(th, NULL);
}

START_TEST(test_coordinator_refuses_wrong_version_and_garbage_from_a_worker)
{
    setup();
    Omni__Hello h = OMNI__HELLO__INIT;
    h.call_id = 1;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.protocol = OMNI_IPC_PROTOCOL + 1;
    env.body_case = OMNI__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    uint8_t buf[256];
    size_t n = omni__envelope__pack(&env, buf);
    fake_worker_load_fails(buf, n, "fake1.sock", "protocol version 2");
    const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff};
    fake_worker_load_fails(junk, sizeof junk, "fake2.sock", "malformed");
}
END_TEST

/* ---- tcp -------------------------------------------------------------------------------------- */

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &n);
    close(s);
    return ntohs(a.sin_port);
}

static int run_cli(const char *const *args, int n)
{
    pid_t pid = start_worker(tmp("cli.log"), args, n, NULL, 0);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_tcp_is_opt_in_and_needs_curve_keys)
{
    setup();
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", free_port());
    /* the worker refuses tcp without keys */
    const char *args[] = {"--listen", ep};
    ck_assert_int_eq(run_cli(args, 2), 1);
    ck_assert_msg(strstr(read_text(tmp("cli.log")), "--curve-key"), "%s", read_text(tmp("cli.log")));
    /* so does the coordinator */
    unsetenv("OMNI_CURVE_SERVER_KEY");
    unsetenv("OMNI_CURVE_CLIENT_KEY");
    char placement[256];
    snprintf(placement, sizeof placement, "  - {process: far, stages: [sl], endpoint: '%s'}\n", ep);
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_pipeline_load(&p, write_yaml("tcp.yaml", with_placement(SLEEP_BODY, placement)), NULL, &err),
                     OMNI_EREFUSED);
    ck_assert_msg(strstr(err.msg, "CURVE"), "%s", err.msg);
}
END_TEST

START_TEST(test_tcp_with_curve_admits_listed_clients_only)
{
    setup();
    char server[512], client[512], intruder[512], path[600];
    snprintf(server, sizeof server, "%s", tmp("server"));
    snprintf(client, sizeof client, "%s", tmp("client"));
    snprintf(intruder, sizeof intruder, "%s", tmp("intruder"));
    const char *kg1[] = {"--keygen", server}, *kg2[] = {"--keygen", client}, *kg3[] = {"--keygen", intruder};
    ck_assert_int_eq(run_cli(kg1, 2), 0);
    ck_assert_int_eq(run_cli(kg2, 2), 0);
    ck_assert_int_eq(run_cli(kg3, 2), 0);
    struct stat st;
    snprintf(path, sizeof path, "%s.key", server);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    char ep[64], skey[600], cpub[600];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", free_port());
    snprintf(skey, sizeof skey, "%s.key", server);
    snprintf(cpub, sizeof cpub, "%s.pub", client);
    const char *args[] = {"--listen", ep, "--curve-key", skey, "--curve-clients", cpub};
    pid_t w = start_worker(tmp("tcp.log"), args, 6, NULL, 0);
    usleep(300000);
    char placement[256], spub[600], ckey[600];
    snprintf(placement, sizeof placement, "  - {process: far, stages: [sl], endpoint: '%s'}\n", ep);
    snprintf(spub, sizeof spub, "%s.pub", server);
    snprintf(ckey, sizeof ckey, "%s.key", client);
    setenv("OMNI_CURVE_SERVER_KEY", spub, 1);
    setenv("OMNI_CURVE_CLIENT_KEY", ckey, 1);
    struct omni_pipeline *p = load(write_yaml("curve.yaml", with_placement(SLEEP_BODY, placement)));
    const char *outs[] = {"y"};
    struct result r;
    run_one(p, 3, NULL, 0, outs, 1, &r);
    ck_assert_msg(r.rc == OMNI_OK, "%s", r.msg);
    ck_assert_int_eq(((const int32_t *)omni_tensor_data(&r.out[0]))[2], 42);
    result_free(&r);
    omni_pipeline_free(p);
    /* a coordinator whose key is not listed gets nothing */
    snprintf(ckey, sizeof ckey, "%s.key", intruder);
    setenv("OMNI_CURVE_CLIENT_KEY", ckey, 1);
    setenv("OMNI_IPC_START_MS", "700", 1);
    struct omni_error err;
    omni_error_clear(&err);
    p = NULL;
    ck_assert_int_eq(omni_pipeline_load(&p, write_yaml("curve2.yaml", with_placement(SLEEP_BODY, placement)), NULL, &err),
                     OMNI_EPEER);
    ck_assert_msg(strstr(err.msg, "did not answer"), "%s", err.msg);
    ck_assert_int_eq(stop_worker(w), 0);
    ck_assert_msg(strstr(read_text(tmp("tcp.log")), "not in the clients file"), "%s", read_text(tmp("tcp.log")));
    assert_no_segments();
}
END_TEST

START_TEST(test_worker_help_is_truthful)
{
    setup();
    const char *args[] = {"--help"};
    char out[600];
    snprintf(out, sizeof out, "%s", tmp("help.txt"));
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        execl(omni_exe, omni_exe, "worker", args[0], (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *help = read_text(tmp("help.txt"));
    /* every option the parser takes is documented, and nothing else */
    const char *opts[] = {"--listen", "--threads", "--curve-key", "--curve-clients", "--insecure-tcp", "--keygen",
                          "--parent", "--process", "--verbose", "--help"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        ck_assert_msg(strstr(help, opts[i]), "--help does not mention %s", opts[i]);
    const char *bad[] = {"--bogus"};
    ck_assert_int_eq(run_cli(bad, 1), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ipc");
    TCase *split = tcase_create("split");
    tcase_set_timeout(split, 10);
    tcase_add_test(split, test_split_recurrent_stage_matches_single_process);
    tcase_add_test(split, test_split_across_two_workers_is_bit_exact);
    tcase_add_test(split, test_inline_path_matches_single_process);
    tcase_add_test(split, test_many_requests_in_flight);
    tcase_add_test(split, test_hand_started_workers_at_listed_endpoints);
    suite_add_tcase(s, split);
    TCase *faults = tcase_create("faults");
    tcase_set_timeout(faults, 10);
    tcase_add_test(faults, test_sigkill_mid_request_fails_fast_then_restarts);
    tcase_add_test(faults, test_hung_worker_is_detected_by_heartbeat);
    tcase_add_test(faults, test_ipc_knobs_from_the_pipeline_and_the_environment);
    tcase_add_test(faults, test_stage_error_names_worker_and_keeps_it);
    tcase_add_test(faults, test_slow_call_times_out_and_is_canceled_there);
    tcase_add_test(faults, test_load_error_names_process_and_stage);
    tcase_add_test(faults, test_worker_refuses_bad_messages_and_keeps_serving);
    tcase_add_test(faults, test_unreachable_endpoint_fails_in_bounded_time);
    tcase_add_test(faults, test_coordinator_refuses_wrong_version_and_garbage_from_a_worker);
    suite_add_tcase(s, faults);
    TCase *tcp = tcase_create("tcp");
    tcase_set_timeout(tcp, 10);
    tcase_add_test(tcp, test_tcp_is_opt_in_and_needs_curve_keys);
    tcase_add_test(tcp, test_tcp_with_curve_admits_listed_clients_only);
    tcase_add_test(tcp, test_worker_help_is_truthful);
    suite_add_tcase(s, tcp);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
