/* The plugin loader, the pipeline YAML (each error class with its
 * file:line:col), the graph type-checker, the executor's generation loop,
 * overrides and --dump, and the stage harness; driven by the test plugins in
 * tests/testplugins (built into $OMNI_BUILD/testplugins). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char plugdir[1024];

static void setup(void)
{
    snprintf(plugdir, sizeof plugdir, "%s", tu_build_path("testplugins"));
    setenv("OMNI_PLUGIN_PATH", plugdir, 1);
}

static const char *write_yaml(const char *name, const char *text)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Validate text; expect failure with every needle in the message. */
static void expect_invalid(const char *text, const char *const *needles)
{
    const char *path = write_yaml("bad.yaml", text);
    struct omni_error err;
    omni_error_clear(&err);
    int rc = omni_pipeline_validate(path, NULL, &err);
    ck_assert_msg(rc < 0, "expected an error for:\n%s", text);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(err.msg, needles[i]), "message '%s' lacks '%s'", err.msg, needles[i]);
}

#define EXPECT_INVALID(text, ...)                                   \
    do {                                                            \
        const char *needles_[] = {__VA_ARGS__, NULL};              \
        expect_invalid(text, needles_);                             \
    } while (0)

/* ---- loader ------------------------------------------------------------------------- */

static void expect_refused(const char *name, const char *reason)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/omni_%s.so", plugdir, name);
    const struct omni_plugin_desc *d = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_plugin_open(path, &d, &err), OMNI_EPLUGIN);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err.msg, path), "message '%s' does not name the file", err.msg);
    ck_assert_msg(strstr(err.msg, reason), "message '%s' lacks reason '%s'", err.msg, reason);
}

START_TEST(test_loader_rejects_missing_entry_symbol) { expect_refused("broken_nosym", "entry symbol 'omni_plugin_entry' not found"); }
END_TEST
START_TEST(test_loader_rejects_abi_major_mismatch) { expect_refused("broken_major", "major version differs"); }
END_TEST
START_TEST(test_loader_rejects_newer_minor)
{
    char want[64]; /* the test plugin says one minor more than this build */
    snprintf(want, sizeof want, "needs ABI %d.%d", OMNI_ABI_MAJOR, OMNI_ABI_MINOR + 1);
    expect_refused("broken_minor", want);
}
END_TEST
START_TEST(test_loader_rejects_wrong_build_signature) { expect_refused("broken_signature", "build signature"); }
END_TEST
START_TEST(test_loader_rejects_missing_required_op) { expect_refused("broken_noforward", "lacks the required op 'forward'"); }
END_TEST
START_TEST(test_loader_rejects_name_mismatch) { expect_refused("broken_misnamed", "does not match the file name"); }
END_TEST

START_TEST(test_loader_finds_plugins_on_the_path)
{
    const struct omni_plugin_desc *d;
    struct omni_error err;
    char path[1024];
    ck_assert_int_eq(omni_plugin_find("test_counter", &d, path, sizeof path, &err), OMNI_OK);
    ck_assert_str_eq(d->name, "test_counter");
    ck_assert_ptr_nonnull(strstr(path, "omni_test_counter.so"));
    ck_assert_int_eq(omni_plugin_find("no_such_plugin", &d, NULL, 0, &err), OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "OMNI_PLUGIN_PATH"));
    ck_assert_int_eq(omni_plugin_find("../evil", &d, NULL, 0, &err), OMNI_EINVAL);
}
END_TEST

/* ---- YAML errors, each with its location -------------------------------------------------- */

#define HEAD "omni: 1\nstages:\n  src: {type: test_source}\n  counter: {type: test_counter}\n"

START_TEST(test_yaml_syntax_error_has_location)
{
    EXPECT_INVALID("omni: 1\nstages:\n  src: {type: test_source\n", "bad.yaml:", "YAML syntax error");
}
END_TEST

START_TEST(test_yaml_missing_version_key)
{
    EXPECT_INVALID("stages:\n  a: {type: test_source}\n", "bad.yaml:1:1:", "omni: 1");
}
END_TEST

START_TEST(test_yaml_unknown_top_level_key)
{
    EXPECT_INVALID(HEAD "edgez: []\n", "bad.yaml:5:1:", "unknown top-level key 'edgez'");
}
END_TEST

START_TEST(test_yaml_unknown_stage_key)
{
    EXPECT_INVALID("omni: 1\nstages:\n  src:\n    type: test_source\n    wieghts: x.pth\n", "bad.yaml:5:5:", "unknown key 'wieghts'");
}
END_TEST

START_TEST(test_yaml_stage_without_type)
{
    EXPECT_INVALID("omni: 1\nstages:\n  src: {params: {value: 1}}\n", "bad.yaml:3:3:", "has no type");
}
END_TEST

START_TEST(test_yaml_unknown_plugin)
{
    EXPECT_INVALID("omni: 1\nstages:\n  x: {type: nope_plugin}\n", "bad.yaml:3:3:", "plugin 'nope_plugin' not found");
}
END_TEST

START_TEST(test_yaml_duplicate_key)
{
    EXPECT_INVALID("omni: 1\nstages:\n  a: {type: test_source}\n  a: {type: test_source}\n", "bad.yaml:4:3:", "duplicate key 'a'");
}
END_TEST

START_TEST(test_yaml_bad_device_and_dtype)
{
    EXPECT_INVALID("omni: 1\nstages:\n  a: {type: test_source, device: tpu}\n", "bad.yaml:3:34:", "unknown device 'tpu'");
    EXPECT_INVALID("omni: 1\ndtype: f8\nstages:\n  a: {type: test_source}\n", "bad.yaml:2:8:", "unknown dtype 'f8'");
}
END_TEST

START_TEST(test_yaml_unset_variable)
{
    unsetenv("OMNI_TEST_UNSET_VAR");
    EXPECT_INVALID("omni: 1\nstages:\n  a:\n    type: test_source\n    weights: ${OMNI_TEST_UNSET_VAR}/x.pth\n",
                   "bad.yaml:5:14:", "variable 'OMNI_TEST_UNSET_VAR' is not set");
}
END_TEST

START_TEST(test_edge_to_unknown_stage)
{
    EXPECT_INVALID(HEAD "edges:\n  - src.ids -> countr.ids\n", "bad.yaml:6:5:", "no stage 'countr'", "stages: src, counter");
}
END_TEST

START_TEST(test_edge_to_unknown_port_lists_ports)
{
    EXPECT_INVALID(HEAD "edges:\n  - src.ids -> counter.idz\n", "bad.yaml:6:5:", "no input port 'idz'", "input ports: ids");
}
END_TEST

START_TEST(test_edge_direction_checked)
{
    EXPECT_INVALID(HEAD "edges:\n  - counter.ids -> src.text\n", "bad.yaml:6:5:", "'counter.ids' is an input port");
}
END_TEST

START_TEST(test_edge_without_arrow)
{
    EXPECT_INVALID(HEAD "edges:\n  - src.ids counter.ids\n", "bad.yaml:6:5:", "has no '->'");
}
END_TEST

START_TEST(test_edge_dtype_mismatch)
{
    EXPECT_INVALID("omni: 1\nstages:\n  src: {type: test_source}\n  f: {type: test_float}\nedges:\n  - src.ids -> f.x\n",
                   "bad.yaml:6:5:", "dtype mismatch", "i32", "f32");
}
END_TEST

START_TEST(test_edge_literal_dim_mismatch)
{
    EXPECT_INVALID("omni: 1\nstages:\n  a: {type: test_float}\n  b: {type: test_float}\nedges:\n  - a.y -> b.wide\n",
                   "bad.yaml:6:5:", "dim 1 mismatch", "4", "8");
}
END_TEST

START_TEST(test_symbolic_dims_unify_across_the_graph)
{
    /* a.y is [B,4]; b.x [B,4]: B unifies, fine. Then c.wide [B,8] fed from b.y [B,4]: literal clash */
    EXPECT_INVALID("omni: 1\nstages:\n  a: {type: test_float}\n  b: {type: test_float}\n  c: {type: test_float}\n"
                   "edges:\n  - a.y -> b.x\n  - b.y -> c.wide\n",
                   "bad.yaml:8:5:", "mismatch");
}
END_TEST

START_TEST(test_required_input_not_connected)
{
    EXPECT_INVALID(HEAD "inputs: {prompt: src.text}\nedges: []\nloop:\n  feed: [counter.next -> counter.ids]\n  tokens: counter.next\n",
                   "counter", "feed source 'counter' must also run in the prefill");
    EXPECT_INVALID("omni: 1\nstages:\n  a: {type: test_float}\n  c: {type: test_counter}\nedges:\n  - a.y -> a.x\n",
                   "bad.yaml:6:5:", "to itself");
}
END_TEST

START_TEST(test_input_fed_twice)
{
    EXPECT_INVALID("omni: 1\nstages:\n  s1: {type: test_source}\n  s2: {type: test_source}\n  c: {type: test_counter}\n"
                   "edges:\n  - s1.ids -> c.ids\n  - s2.ids -> c.ids\n",
                   "input c.ids is fed 2 times");
}
END_TEST

START_TEST(test_loop_needs_tokens_and_feed)
{
    EXPECT_INVALID(HEAD "edges: [src.ids -> counter.ids]\nloop:\n  feed: [counter.next -> counter.ids]\n", "bad.yaml:7:3:", "loop needs tokens:");
    EXPECT_INVALID(HEAD "edges: [src.ids -> counter.ids]\nloop:\n  tokens: counter.next\n", "loop needs at least one feed");
}
END_TEST

START_TEST(test_loop_bad_max_tokens)
{
    EXPECT_INVALID(HEAD "edges: [src.ids -> counter.ids]\nloop:\n  feed: [counter.next -> counter.ids]\n  tokens: counter.next\n  max_tokens: -3\n",
                   "bad.yaml:9:15:", "max_tokens must be an integer >= 1");
}
END_TEST

START_TEST(test_adapter_checks)
{
    EXPECT_INVALID(HEAD "  a: {type: test_float, attach: counter.in_proj}\n", "bad.yaml:5:3:", "not an adapter plugin");
}
END_TEST

START_TEST(test_placement_checks)
{
    EXPECT_INVALID(HEAD "placement:\n  - {process: w, stages: [nope]}\n", "bad.yaml:6:27:", "placement: no stage 'nope'");
    EXPECT_INVALID(HEAD "placement:\n  - {process: w, stages: [src], endpoint: udp://x}\n", "must be auto, ipc://PATH or tcp://HOST:PORT");
    /* the ipc: knobs */
    EXPECT_INVALID(HEAD "ipc: {dead_ms: 5}\n", "bad.yaml:5:16:", "ipc: dead_ms must be an integer in [20, 3600000], not '5'");
    EXPECT_INVALID(HEAD "ipc: {call_ms: soon}\n", "bad.yaml:5:16:", "ipc: call_ms must be an integer");
    EXPECT_INVALID(HEAD "ipc: {inline: maybe}\n", "ipc: inline must be true, false or an integer in [0, 1]");
    EXPECT_INVALID(HEAD "ipc:\n  heartbeat: 50\n", "bad.yaml:6:3:", "ipc: unknown key 'heartbeat'", "heartbeat_ms");
    EXPECT_INVALID(HEAD "ipc: [1]\n", "bad.yaml:5:6:", "ipc");
}
END_TEST

START_TEST(test_set_override_errors)
{
    const char *path = write_yaml("ok.yaml", HEAD "edges: [src.ids -> counter.ids]\n");
    struct omni_error err;
    const char *sets[] = {"nostage.value=3"};
    struct omni_pipeline_options po = {.size = sizeof po, .sets = sets, .n_sets = 1};
    ck_assert_int_eq(omni_pipeline_validate(path, &po, &err), OMNI_EPIPELINE);
    ck_assert_ptr_nonnull(strstr(err.msg, "no stage 'nostage'"));
    const char *sets2[] = {"novalue"};
    po.sets = sets2;
    ck_assert_int_eq(omni_pipeline_validate(path, &po, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "expected stage.key=value"));
}
END_TEST

/* ---- executor -------------------------------------------------------------------------------- */

static const char *COUNT_YAML =
    "omni: 1\n"
    "name: count\n"
    "stages:\n"
    "  src: {type: test_source, params: {value: \"${OMNI_TEST_START:-10}\"}}\n"
    "  counter: {type: test_counter}\n"
    "inputs: {prompt: src.text}\n"
    "edges:\n"
    "  - src.ids -> counter.ids\n"
    "loop:\n"
    "  feed: [counter.next -> counter.ids]\n"
    "  tokens: counter.next\n"
    "  max_tokens: 6\n"
    "  stop_ids: [15]\n"
    "outputs: {tokens: loop.tokens, log: counter.log}\n";

static struct omni_pipeline *load(const char *text, const char *const *sets, int n_sets)
{
    const char *path = write_yaml("run.yaml", text);
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    struct omni_pipeline_options po = {.size = sizeof po, .sets = sets, .n_sets = n_sets};
    int rc = omni_pipeline_load(&p, path, &po, &err);
    ck_assert_msg(rc == OMNI_OK, "load failed: %s", err.msg);
    return p;
}

static void run_tokens(struct omni_pipeline *p, int64_t max_tokens, int32_t *out, int64_t *n, const char *dump)
{
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    ck_assert_int_eq(omni_request_set_text(r, "prompt", "x", &err), OMNI_OK);
    if (max_tokens > 0)
        omni_request_set_max_tokens(r, max_tokens);
    if (dump)
        omni_request_set_dump(r, dump);
    int rc = omni_pipeline_run(p, r, &err);
    ck_assert_msg(rc == OMNI_OK, "run failed: %s", err.msg);
    const struct omni_tensor *t = omni_request_output(r, "tokens");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, OMNI_DTYPE_I32);
    *n = t->shape[1];
    memcpy(out, omni_tensor_data(t), (size_t)*n * 4);
    omni_request_free(r);
}

START_TEST(test_loop_stops_at_stop_id)
{
    long before = omni_buffer_live_count();
    struct omni_pipeline *p = load(COUNT_YAML, NULL, 0);
    int32_t tok[64];
    int64_t n;
    run_tokens(p, -1, tok, &n, NULL);
    /* prefill: 10+1 = 11; then 12, 13, 14, 15 (stop id) */
    ck_assert_int_eq(n, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(tok[i], 11 + i);
    omni_pipeline_free(p);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_after_phase_runs_without_the_loop_states)
{
    /* the loop's recurrent state (counter) is freed before the after phase,
     * which only sees the probe's own state */
    static const char *yaml =
        "omni: 1\n"
        "stages:\n"
        "  src: {type: test_source, params: {value: 10}}\n"
        "  counter: {type: test_counter}\n"
        "  probe: {type: test_counter}\n"
        "inputs: {prompt: src.text}\n"
        "edges: [src.ids -> counter.ids]\n"
        "loop:\n"
        "  feed: [counter.next -> counter.ids]\n"
        "  tokens: counter.next\n"
        "  max_tokens: 3\n"
        "after:\n"
        "  edges: [loop.tokens -> probe.ids]\n"
        "outputs: {live: probe.live, tokens: loop.tokens}\n";
    long before = omni_buffer_live_count();
    struct omni_pipeline *p = load(yaml, NULL, 0);
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    ck_assert_int_eq(omni_request_set_text(r, "prompt", "x", &err), OMNI_OK);
    int rc = omni_pipeline_run(p, r, &err);
    ck_assert_msg(rc == OMNI_OK, "run failed: %s", err.msg);
    const struct omni_tensor *live = omni_request_output(r, "live");
    ck_assert_ptr_nonnull(live);
    ck_assert_int_eq(*(const int64_t *)omni_tensor_data(live), 1);
    ck_assert_int_eq(omni_request_output(r, "tokens")->shape[1], 3);
    omni_request_free(r);
    omni_pipeline_free(p);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_loop_stops_at_max_tokens_and_request_override)
{
    struct omni_pipeline *p = load(COUNT_YAML, NULL, 0);
    int32_t tok[64];
    int64_t n;
    run_tokens(p, 3, tok, &n, NULL);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(tok[2], 13);
    omni_pipeline_free(p);
    const char *sets[] = {"loop.max_tokens=2", "src.value=100"};
    p = load(COUNT_YAML, sets, 2);
    run_tokens(p, -1, tok, &n, NULL);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(tok[0], 101);
    omni_pipeline_free(p);
}
END_TEST

START_TEST(test_variables_expand_from_the_environment)
{
    setenv("OMNI_TEST_START", "40", 1);
    struct omni_pipeline *p = load(COUNT_YAML, NULL, 0);
    unsetenv("OMNI_TEST_START");
    int32_t tok[64];
    int64_t n;
    run_tokens(p, 2, tok, &n, NULL);
    ck_assert_int_eq(tok[0], 41);
    omni_pipeline_free(p);
}
END_TEST

START_TEST(test_positions_follow_prefill_length)
{
    /* the counter records the position of each call: prefill at 0 (advance T=1),
     * loop iteration k at 1 + k */
    struct omni_pipeline *p = load(COUNT_YAML, NULL, 0);
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    omni_request_set_text(r, "prompt", "x", &err);
    ck_assert_int_eq(omni_pipeline_run(p, r, &err), OMNI_OK);
    const struct omni_tensor *log = omni_request_output(r, "log");
    ck_assert_ptr_nonnull(log);
    const int64_t *pos = omni_tensor_data(log);
    ck_assert_int_eq(log->shape[1], 5); /* prefill + 4 steps */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(pos[i], i);
    omni_request_free(r);
    omni_pipeline_free(p);
}
END_TEST

START_TEST(test_stage_can_end_the_loop_with_done)
{
    const char *sets[] = {"counter.stop_at=3"};
    struct omni_pipeline *p = load(COUNT_YAML, sets, 1);
    int32_t tok[64];
    int64_t n;
    run_tokens(p, -1, tok, &n, NULL);
    ck_assert_int_eq(n, 3); /* positions 0 (prefill), 1, 2; the call at 3 says done */
    omni_pipeline_free(p);
}
END_TEST

START_TEST(test_batch_rows_stop_only_when_all_hit)
{
    struct omni_pipeline *p = load(COUNT_YAML, NULL, 0);
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    const char *texts[] = {"a", "b"};
    ck_assert_int_eq(omni_request_set_texts(r, "prompt", texts, 2, &err), OMNI_OK);
    ck_assert_int_eq(omni_pipeline_run(p, r, &err), OMNI_OK);
    const struct omni_tensor *t = omni_request_output(r, "tokens");
    ck_assert_int_eq(t->shape[0], 2);
    /* row 0 hits 15 at the 5th token but row 1 (one ahead) passed it: max_tokens (6) ends it */
    ck_assert_int_eq(t->shape[1], 6);
    const int32_t *v = omni_tensor_data(t);
    ck_assert_int_eq(v[0], 11);
    ck_assert_int_eq(v[6], 12);
    omni_request_free(r);
    omni_pipeline_free(p);
}
END_TEST

START_TEST(test_dump_writes_every_edge_and_step)
{
    char dump[1024];
    snprintf(dump, sizeof dump, "%s/dump.safetensors", tu_tmpdir());
    struct omni_pipeline *p = load(COUNT_YAML, NULL, 0);
    int32_t tok[64];
    int64_t n;
    run_tokens(p, 3, tok, &n, dump);
    omni_pipeline_free(p);
    struct omni_weights *w;
    struct omni_error err;
    ck_assert_int_eq(omni_weights_open(&w, dump, &err), OMNI_OK);
    ck_assert(omni_weights_has(w, NULL, "src.ids"));
    ck_assert(omni_weights_has(w, NULL, "counter.next"));
    ck_assert(omni_weights_has(w, NULL, "counter.next.step0"));
    ck_assert(omni_weights_has(w, NULL, "counter.next.step1"));
    ck_assert(!omni_weights_has(w, NULL, "counter.next.step2"));
    ck_assert(omni_weights_has(w, NULL, "loop.tokens"));
    struct omni_tensor t;
    ck_assert_int_eq(omni_weights_get(w, NULL, "counter.next.step1", &t, &err), OMNI_OK);
    ck_assert_int_eq(((const int32_t *)omni_tensor_data(&t))[0], 13);
    omni_tensor_release(&t);
    omni_weights_close(w);
}
END_TEST

START_TEST(test_missing_request_input_is_an_error)
{
    struct omni_pipeline *p = load("omni: 1\nstages:\n  f: {type: test_float}\n  g: {type: test_float}\n"
                                   "inputs: {x: f.x}\nedges: [f.y -> g.x]\noutputs: {y: g.y}\n", NULL, 0);
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    /* every declared input is required, even one bound to an optional port */
    ck_assert_int_eq(omni_pipeline_run(p, r, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "needs input 'x' (for f.x)"));
    ck_assert_int_eq(omni_request_set_text(r, "nope", "x", &err), OMNI_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "inputs: x"));
    omni_request_free(r);
    omni_pipeline_free(p);
}
END_TEST

/* ---- harness ---------------------------------------------------------------------------------- */

START_TEST(test_harness_drives_one_stage_and_releases_everything)
{
    long before = omni_buffer_live_count();
    struct omni_harness *h;
    struct omni_error err;
    ck_assert_int_eq(omni_harness_new(&h, "test_counter", "inc: 5", &err), OMNI_OK);
    struct omni_tensor ids;
    int64_t shape[2] = {1, 3};
    ck_assert_int_eq(omni_tensor_alloc(&ids, OMNI_DTYPE_I32, 2, shape, OMNI_CPU, &err), OMNI_OK);
    int32_t *v = omni_tensor_data(&ids);
    v[0] = 1, v[1] = 2, v[2] = 3;
    ck_assert_int_eq(omni_harness_push(h, "ids", &ids, &err), OMNI_OK);
    omni_tensor_release(&ids);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_OK);
    const struct omni_tensor *next = omni_harness_pull(h, "next");
    ck_assert_ptr_nonnull(next);
    ck_assert_int_eq(((const int32_t *)omni_tensor_data(next))[0], 8);
    ck_assert_ptr_null(omni_harness_pull(h, "nope"));
    /* step takes one token: pushing the 3-token tensor again fails with a message */
    ck_assert_int_eq(omni_harness_step(h, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "one token"));
    ck_assert_int_eq(omni_harness_push(h, "bogus", next, &err), OMNI_ENOTFOUND);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_harness_rejects_wrong_dtype)
{
    struct omni_harness *h;
    struct omni_error err;
    ck_assert_int_eq(omni_harness_new(&h, "test_counter", NULL, &err), OMNI_OK);
    struct omni_tensor f;
    int64_t shape[2] = {1, 2};
    omni_tensor_alloc(&f, OMNI_DTYPE_F32, 2, shape, OMNI_CPU, &err);
    omni_harness_push(h, "ids", &f, &err);
    omni_tensor_release(&f);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_EDTYPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "port 'ids' has dtype f32, expected i32"));
    omni_harness_free(h);
}
END_TEST

START_TEST(test_harness_bad_params_name_the_key)
{
    struct omni_harness *h;
    struct omni_error err;
    ck_assert_int_eq(omni_harness_new(&h, "test_counter", "inc: lots", &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "param 'inc'"));
    ck_assert_int_eq(omni_harness_new(&h, "no_such", NULL, &err), OMNI_ENOTFOUND);
}
END_TEST

int main(void)
{
    setup();
    Suite *s = suite_create("pipeline");
    TCase *tl = tcase_create("loader");
    tcase_add_test(tl, test_loader_rejects_missing_entry_symbol);
    tcase_add_test(tl, test_loader_rejects_abi_major_mismatch);
    tcase_add_test(tl, test_loader_rejects_newer_minor);
    tcase_add_test(tl, test_loader_rejects_wrong_build_signature);
    tcase_add_test(tl, test_loader_rejects_missing_required_op);
    tcase_add_test(tl, test_loader_rejects_name_mismatch);
    tcase_add_test(tl, test_loader_finds_plugins_on_the_path);
    suite_add_tcase(s, tl);
    TCase *ty = tcase_create("yaml");
    tcase_add_test(ty, test_yaml_syntax_error_has_location);
    tcase_add_test(ty, test_yaml_missing_version_key);
    tcase_add_test(ty, test_yaml_unknown_top_level_key);
    tcase_add_test(ty, test_yaml_unknown_stage_key);
    tcase_add_test(ty, test_yaml_stage_without_type);
    tcase_add_test(ty, test_yaml_unknown_plugin);
    tcase_add_test(ty, test_yaml_duplicate_key);
    tcase_add_test(ty, test_yaml_bad_device_and_dtype);
    tcase_add_test(ty, test_yaml_unset_variable);
    tcase_add_test(ty, test_edge_to_unknown_stage);
    tcase_add_test(ty, test_edge_to_unknown_port_lists_ports);
    tcase_add_test(ty, test_edge_direction_checked);
    tcase_add_test(ty, test_edge_without_arrow);
    tcase_add_test(ty, test_edge_dtype_mismatch);
    tcase_add_test(ty, test_edge_literal_dim_mismatch);
    tcase_add_test(ty, test_symbolic_dims_unify_across_the_graph);
    tcase_add_test(ty, test_required_input_not_connected);
    tcase_add_test(ty, test_input_fed_twice);
    tcase_add_test(ty, test_loop_needs_tokens_and_feed);
    tcase_add_test(ty, test_loop_bad_max_tokens);
    tcase_add_test(ty, test_adapter_checks);
    tcase_add_test(ty, test_placement_checks);
    tcase_add_test(ty, test_set_override_errors);
    suite_add_tcase(s, ty);
    TCase *te = tcase_create("executor");
    tcase_add_test(te, test_loop_stops_at_stop_id);
    tcase_add_test(te, test_after_phase_runs_without_the_loop_states);
    tcase_add_test(te, test_loop_stops_at_max_tokens_and_request_override);
    tcase_add_test(te, test_variables_expand_from_the_environment);
    tcase_add_test(te, test_positions_follow_prefill_length);
    tcase_add_test(te, test_stage_can_end_the_loop_with_done);
    tcase_add_test(te, test_batch_rows_stop_only_when_all_hit);
    tcase_add_test(te, test_dump_writes_every_edge_and_step);
    tcase_add_test(te, test_missing_request_input_is_an_error);
    suite_add_tcase(s, te);
    TCase *th = tcase_create("harness");
    tcase_add_test(th, test_harness_drives_one_stage_and_releases_everything);
    tcase_add_test(th, test_harness_rejects_wrong_dtype);
    tcase_add_test(th, test_harness_bad_params_name_the_key);
    suite_add_tcase(s, th);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
