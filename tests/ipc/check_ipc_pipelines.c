/* Split variants of real pipelines on the real plugins: pipelines/text-tiny.yaml
 * (the tiny Mamba-2 fixture) with the language model and its LoRA adapters, the
 * head and sampler (a round trip per token), or the tokenizers (string ports) in
 * worker processes gives the single-process tokens and text, for every task.
 * The shipped split pipelines (mmu-split.yaml, t2i-split.yaml and their -tiny
 * variants) type-check and differ from their base files only by header, name
 * and placement; on the tiny OmniMamba fixture (`make tiny`) the split variants
 * give the single-process codes, pixels, tokens and text, bit for bit.
 *
 * Needs $OMNI_BUILD/plugins (make plugins) and $OMNI_BUILD/bin/omni; runs from
 * the repository root (the fixture paths in text-tiny.yaml are relative to it). */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc/ipc.h"
#include "../common/testutil.h"

static char *slurp_n(const char *path, size_t *len);
static char *slurp(const char *path)
{
    size_t n;
    return slurp_n(path, &n);
}

static char *slurp_n(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert(s != NULL);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* text-tiny.yaml + plugin_path + a placement section, in the test's folder. */
static const char *split_yaml(const char *name, const char *placement)
{
    static char path[2][512];
    static int k;
    k ^= 1;
    char plugins[PATH_MAX];
    ck_assert_msg(realpath(tu_build_path("plugins"), plugins), "no %s (make plugins)", tu_build_path("plugins"));
    snprintf(path[k], sizeof path[k], "%s/%s", tu_tmpdir(), name);
    char *base = slurp(tu_repo_path("pipelines/text-tiny.yaml"));
    FILE *f = fopen(path[k], "w");
    ck_assert(f != NULL);
    fprintf(f, "%s\nplugin_path: [%s]\n%s%s", base, plugins, placement ? "placement:\n" : "", placement ? placement : "");
    fclose(f);
    free(base);
    return path[k];
}

struct out {
    int rc;
    char msg[OMNI_ERROR_MAX];
    struct omni_tensor tokens;
    char text[512];
};

static void on_stream(struct omni_request *r, const char *output, const struct omni_tensor *t, void *user)
{
    struct out *o = user;
    size_t used = strlen(o->text);
    size_t n = strnlen(omni_tensor_data(t), (size_t)t->shape[1]);
    if (used + n < sizeof o->text) {
        memcpy(o->text + used, omni_tensor_data(t), n);
        o->text[used + n] = '\0';
    }
}

static void run(struct omni_pipeline *p, const char *task, struct out *o)
{
    memset(o, 0, sizeof *o);
    struct omni_error err;
    omni_error_clear(&err);
    struct omni_request *r = omni_request_new(p);
    ck_assert_int_eq(omni_request_set_text(r, "prompt", "v1.2.3", &err), OMNI_OK);
    if (task)
        omni_request_set_task(r, task);
    omni_request_set_max_tokens(r, 8);
    omni_request_on_stream(r, on_stream, o);
    o->rc = omni_pipeline_run(p, r, &err);
    snprintf(o->msg, sizeof o->msg, "%s", err.msg);
    if (!o->rc)
        ck_assert_int_eq(omni_tensor_copy_to(&o->tokens, omni_request_tokens(r), OMNI_CPU, &err), OMNI_OK);
    omni_request_free(r);
}

static struct omni_pipeline *load(const char *path)
{
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    ck_assert_msg(omni_pipeline_load(&p, path, NULL, &err) == OMNI_OK, "%s: %s", path, err.msg);
    return p;
}

static void compare_split(const char *placement, int n_workers)
{
    struct omni_pipeline *single = load(split_yaml("single.yaml", NULL));
    struct omni_pipeline *split = load(split_yaml("split.yaml", placement));
    pid_t pids[8];
    ck_assert_int_eq(omni__ipc_live_workers(pids, 8), n_workers);
    const char *tasks[] = {NULL, "mmu", "t2i"};
    int32_t first[3][8];
    for (int t = 0; t < 3; t++) {
        struct out a, b;
        run(single, tasks[t], &a);
        run(split, tasks[t], &b);
        ck_assert_msg(a.rc == OMNI_OK && b.rc == OMNI_OK, "task %s: %s / %s", tasks[t] ? tasks[t] : "-", a.msg, b.msg);
        ck_assert_int_eq(a.tokens.shape[1], b.tokens.shape[1]);
        ck_assert_msg(!memcmp(omni_tensor_data(&a.tokens), omni_tensor_data(&b.tokens), omni_tensor_nbytes(&a.tokens)),
                      "task %s: tokens differ", tasks[t] ? tasks[t] : "-");
        ck_assert_str_eq(a.text, b.text);
        ck_assert_int_eq(b.tokens.shape[1], 8);
        memcpy(first[t], omni_tensor_data(&b.tokens), sizeof first[t]);
        omni_tensor_release(&a.tokens);
        omni_tensor_release(&b.tokens);
    }
    /* the adapters matter: each task generates its own tokens */
    ck_assert(memcmp(first[0], first[1], sizeof first[0]) && memcmp(first[0], first[2], sizeof first[0]) &&
              memcmp(first[1], first[2], sizeof first[0]));
    omni_pipeline_free(split);
    omni_pipeline_free(single);
    for (int i = 0; i < n_workers; i++)
        ck_assert_int_eq(omni__shm_count_pid(pids[i]), 0);
    ck_assert_int_eq(omni__shm_count_pid(getpid()), 0);
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
}

START_TEST(test_text_tiny_with_the_language_model_in_a_worker)
{
    /* the recurrent backbone keeps its per-request state in the worker; its
     * LoRA adapters attach there, and the request's task picks one */
    compare_split("  - {process: lm, stages: [backbone, lora_mmu, lora_t2i]}\n", 1);
}
END_TEST

START_TEST(test_text_tiny_with_head_and_sampler_in_a_worker)
{
    compare_split("  - {process: head, stages: [head, sampler]}\n", 1); /* a round trip per token */
}
END_TEST

START_TEST(test_text_tiny_with_tokenizers_in_their_own_workers)
{
    compare_split("  - {process: tok, stages: [tokenizer]}\n  - {process: detok, stages: [detok]}\n", 2);
}
END_TEST

START_TEST(test_adapter_away_from_its_target_is_refused)
{
    struct omni_pipeline *p = NULL;
    struct omni_error err;
    omni_error_clear(&err);
    int rc = omni_pipeline_load(&p, split_yaml("bad.yaml", "  - {process: lm, stages: [backbone, lora_mmu]}\n"), NULL,
                                &err);
    ck_assert_int_eq(rc, OMNI_EPIPELINE);
    ck_assert_msg(strstr(err.msg, "stage 'lora_t2i' attaches to 'backbone', which runs in process 'lm'"), "%s",
                  err.msg);
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
}
END_TEST

/* ---- the tiny OmniMamba pipelines and their split variants (needs `make tiny`) ---- */

static void tiny_env(void)
{
    char tiny[PATH_MAX], probe[PATH_MAX + 32];
    ck_assert_msg(realpath(tu_build_path("tiny"), tiny), "no %s: run 'make tiny'", tu_build_path("tiny"));
    snprintf(probe, sizeof probe, "%s/omnimamba.pth", tiny);
    ck_assert_msg(access(probe, R_OK) == 0, "%s is missing: run 'make tiny'", probe);
    setenv("OMNI_TINY", tiny, 1);
}

/* One request; outputs copied to the host. */
static void run_tiny(const char *yaml, int mmu, struct omni_tensor *a, struct omni_tensor *b, char *text, size_t n,
                     const char *png)
{
    struct omni_pipeline *p = load(tu_repo_path(yaml));
    struct omni_error err;
    omni_error_clear(&err);
    struct omni_request *r = omni_request_new(p);
    struct out o = {0};
    if (mmu) {
        ck_assert_int_eq(omni_request_set_text(r, "image", tu_shared_path("data/images/dog_bicycle.jpg"), &err), OMNI_OK);
        ck_assert_int_eq(omni_request_set_text(r, "prompt", "Please describe it in detail.", &err), OMNI_OK);
        omni_request_set_max_tokens(r, 8);
        omni_request_on_stream(r, on_stream, &o);
    } else {
        const char *caps[2] = {"A bed in a bedroom between two lamps.", "A red bicycle"};
        ck_assert_int_eq(omni_request_set_texts(r, "prompt", caps, 2, &err), OMNI_OK);
        char opt[PATH_MAX + 32];
        snprintf(opt, sizeof opt, "writer.output=%s", png);
        ck_assert_int_eq(omni_request_set_option(r, opt, &err), OMNI_OK);
    }
    ck_assert_msg(omni_pipeline_run(p, r, &err) == OMNI_OK, "%s: %s", yaml, err.msg);
    const struct omni_tensor *x = omni_request_output(r, mmu ? "tokens" : "codes");
    const struct omni_tensor *y = mmu ? omni_request_tokens(r) : omni_request_output(r, "image");
    ck_assert(x && y);
    ck_assert_int_eq(omni_tensor_copy_to(a, x, OMNI_CPU, &err), OMNI_OK);
    ck_assert_int_eq(omni_tensor_copy_to(b, y, OMNI_CPU, &err), OMNI_OK);
    snprintf(text, n, "%s", o.text);
    omni_request_free(r);
    omni_pipeline_free(p);
}

static void same(const struct omni_tensor *a, const struct omni_tensor *b, const char *what)
{
    ck_assert_int_eq(a->ndim, b->ndim);
    for (int i = 0; i < a->ndim; i++)
        ck_assert_int_eq(a->shape[i], b->shape[i]);
    ck_assert_int_eq(a->dtype, b->dtype);
    ck_assert_msg(!memcmp(omni_tensor_data(a), omni_tensor_data(b), omni_tensor_nbytes(a)), "%s differ", what);
}

START_TEST(test_t2i_split_tiny_gives_the_single_process_image)
{
    tiny_env();
    struct omni_tensor c1, i1, c2, i2;
    char t[8], png1[PATH_MAX], png2[PATH_MAX];
    snprintf(png1, sizeof png1, "%s/single.png", tu_tmpdir());
    snprintf(png2, sizeof png2, "%s/split.png", tu_tmpdir());
    run_tiny("pipelines/t2i-tiny.yaml", 0, &c1, &i1, t, sizeof t, png1);
    run_tiny("pipelines/t2i-split-tiny.yaml", 0, &c2, &i2, t, sizeof t, png2);
    ck_assert_int_eq(c1.shape[0], 2);
    same(&c1, &c2, "codes");
    same(&i1, &i2, "pixels");
    for (int k = 0; k < 2; k++) { /* the written files too (grid: false writes one per row) */
        char a[PATH_MAX + 8], b[PATH_MAX + 8];
        snprintf(a, sizeof a, "%s/single-%d.png", tu_tmpdir(), k);
        snprintf(b, sizeof b, "%s/split-%d.png", tu_tmpdir(), k);
        size_t na, nb;
        char *x = slurp_n(a, &na), *y = slurp_n(b, &nb);
        ck_assert_msg(na > 8 && na == nb && !memcmp(x, y, na), "%s and %s differ", a, b);
        free(x);
        free(y);
    }
    omni_tensor_release(&c1);
    omni_tensor_release(&i1);
    omni_tensor_release(&c2);
    omni_tensor_release(&i2);
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
    ck_assert_int_eq(omni__shm_count_pid(getpid()), 0);
}
END_TEST

START_TEST(test_mmu_split_tiny_gives_the_single_process_answer)
{
    tiny_env();
    struct omni_tensor a1, b1, a2, b2;
    char t1[512], t2[512];
    run_tiny("pipelines/mmu-tiny.yaml", 1, &a1, &b1, t1, sizeof t1, NULL);
    run_tiny("pipelines/mmu-split-tiny.yaml", 1, &a2, &b2, t2, sizeof t2, NULL);
    ck_assert_int_eq(a1.shape[1], 8);
    same(&a1, &a2, "tokens");
    ck_assert_str_eq(t1, t2);
    ck_assert(strlen(t1) > 0);
    omni_tensor_release(&a1);
    omni_tensor_release(&b1);
    omni_tensor_release(&a2);
    omni_tensor_release(&b2);
    ck_assert_int_eq(omni__ipc_live_workers(NULL, 0), 0);
    ck_assert_int_eq(omni__shm_count_pid(getpid()), 0);
}
END_TEST

/* The split files are their base files plus placement: (comments, name aside). */
static char *strip(const char *path)
{
    char *s = slurp(path);
    char *out = calloc(strlen(s) + 1, 1);
    size_t used = 0;
    int in_placement = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !strncmp(line, "name:", 5))
            continue;
        if (!strncmp(line, "placement:", 10))
            in_placement = 1;
        else if (line[0] != ' ' && line[0] != '-')
            in_placement = 0;
        if (in_placement)
            continue;
        used += (size_t)sprintf(out + used, "%s\n", line);
    }
    free(s);
    return out;
}

START_TEST(test_shipped_split_pipelines_are_their_base_plus_placement)
{
    const char *pairs[4][2] = {{"pipelines/mmu.yaml", "pipelines/mmu-split.yaml"},
                               {"pipelines/t2i.yaml", "pipelines/t2i-split.yaml"},
                               {"pipelines/mmu-tiny.yaml", "pipelines/mmu-split-tiny.yaml"},
                               {"pipelines/t2i-tiny.yaml", "pipelines/t2i-split-tiny.yaml"}};
    for (int i = 0; i < 4; i++) {
        char base[PATH_MAX], split[PATH_MAX];
        snprintf(base, sizeof base, "%s", tu_repo_path(pairs[i][0]));
        snprintf(split, sizeof split, "%s", tu_repo_path(pairs[i][1]));
        char *a = strip(base), *b = strip(split);
        ck_assert_msg(!strcmp(a, b), "%s drifted from %s", pairs[i][1], pairs[i][0]);
        free(a);
        free(b);
        char *raw = slurp(split);
        ck_assert_msg(strstr(raw, "\nplacement:\n"), "%s has no placement", split);
        free(raw);
        /* and it type-checks, placement included (no weights are read) */
        char plugins[PATH_MAX];
        ck_assert(realpath(tu_build_path("plugins"), plugins));
        const char *dirs[1] = {plugins};
        struct omni_pipeline_options opt = {.size = sizeof opt, .plugin_dirs = dirs, .n_plugin_dirs = 1};
        struct omni_error err;
        omni_error_clear(&err);
        ck_assert_msg(omni_pipeline_validate(split, &opt, &err) == OMNI_OK, "%s: %s", split, err.msg);
    }
    /* the deployment examples type-check too */
    setenv("OMNI_DEPLOY_DIR", "/nonexistent", 1);
    const char *examples[] = {"examples/split-deploy/text-tiny-deploy.yaml", "examples/split-deploy/mmu-deploy.yaml"};
    for (int i = 0; i < 2; i++) {
        char plugins[PATH_MAX], path[PATH_MAX];
        ck_assert(realpath(tu_build_path("plugins"), plugins));
        snprintf(path, sizeof path, "%s", tu_repo_path(examples[i]));
        const char *dirs[1] = {plugins};
        struct omni_pipeline_options opt = {.size = sizeof opt, .plugin_dirs = dirs, .n_plugin_dirs = 1};
        struct omni_error err;
        omni_error_clear(&err);
        ck_assert_msg(omni_pipeline_validate(path, &opt, &err) == OMNI_OK, "%s: %s", path, err.msg);
    }
}
END_TEST

/* The operator's recipe, as its README says: two workers by hand, a coordinator
 * listing their endpoints, the single-process answer, and a clean stop. */
START_TEST(test_split_deploy_example_scripts)
{
    char omni[PATH_MAX], cmd[8192];
    ck_assert(realpath(tu_build_path("bin/omni"), omni));
    const char *dir = tu_tmpdir();
    snprintf(cmd, sizeof cmd,
             "set -e; export OMNI=%s OMNI_DEPLOY_DIR=%s/deploy; "
             "trap 'examples/split-deploy/stop-workers.sh > %s/stop.txt' EXIT; "
             "examples/split-deploy/start-workers.sh lm tok > %s/start.txt; "
             "cat $OMNI_DEPLOY_DIR/lm.pid $OMNI_DEPLOY_DIR/tok.pid > %s/pids.txt; "
             "examples/split-deploy/run.sh --prompt v1.2.3 --set loop.max_tokens=8 -q > %s/split.txt; "
             "$OMNI run pipelines/text-tiny.yaml --prompt v1.2.3 --set loop.max_tokens=8 -q > %s/single.txt",
             omni, dir, dir, dir, dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/split.txt", dir);
    char *split = slurp(path);
    snprintf(path, sizeof path, "%s/single.txt", dir);
    char *single = slurp(path);
    ck_assert_msg(strlen(single) > 2, "no text generated");
    ck_assert_str_eq(split, single);
    snprintf(path, sizeof path, "%s/pids.txt", dir);
    char *pids = slurp(path);
    for (char *t = strtok(pids, "\n"); t; t = strtok(NULL, "\n")) {
        pid_t pid = (pid_t)atol(t);
        ck_assert_msg(kill(pid, 0) != 0, "worker %ld still runs", (long)pid);
        ck_assert_int_eq(omni__shm_count_pid(pid), 0);
    }
    snprintf(path, sizeof path, "%s/deploy/lm.sock", dir);
    ck_assert(access(path, F_OK) != 0);
    free(split);
    free(single);
    free(pids);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ipc_pipelines");
    TCase *tc = tcase_create("tiny");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_text_tiny_with_the_language_model_in_a_worker);
    tcase_add_test(tc, test_text_tiny_with_head_and_sampler_in_a_worker);
    tcase_add_test(tc, test_text_tiny_with_tokenizers_in_their_own_workers);
    tcase_add_test(tc, test_adapter_away_from_its_target_is_refused);
    tcase_add_test(tc, test_shipped_split_pipelines_are_their_base_plus_placement);
    tcase_add_test(tc, test_split_deploy_example_scripts);
    tcase_add_test(tc, test_t2i_split_tiny_gives_the_single_process_image);
    tcase_add_test(tc, test_mmu_split_tiny_gives_the_single_process_answer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
