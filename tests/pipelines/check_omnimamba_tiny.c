/* The shipped pipelines end to end on the tiny OmniMamba fixture (real key
 * names and file layouts; tests/fixtures/gen_omnimamba_tiny.py), against the
 * independent PyTorch reference: T2I codes and pixels, MMU greedy tokens and
 * logits, the VQ round trip; plus the bad inputs a user can give the CLI.
 * Needs `make tiny` (build/tiny) — `make test` does it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char tiny[1024], omni_bin[1024];
static const char *EXP = "tests/fixtures/data/omnimamba_tiny/";

static void setup(void)
{
    snprintf(tiny, sizeof tiny, "%s", tu_build_path("tiny"));
    snprintf(omni_bin, sizeof omni_bin, "%s", tu_build_path("bin/omni"));
    setenv("OMNI_TINY", tiny, 1);
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/omnimamba.pth", tiny);
    if (access(probe, R_OK)) {
        fprintf(stderr, "check_omnimamba_tiny: %s is missing: run 'make tiny'\n", probe);
        exit(1);
    }
}

static struct omni_weights *expected(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", EXP, name);
    struct omni_weights *w;
    struct omni_error err;
    ck_assert_msg(omni_weights_open(&w, path, &err) == OMNI_OK, "%s", err.msg);
    return w;
}

static struct omni_tensor load_f32(struct omni_weights *w, const char *key)
{
    struct omni_tensor t;
    struct omni_error err;
    ck_assert_msg(omni_weights_load(w, NULL, key, OMNI_DTYPE_F32, 0, NULL, &t, &err) == OMNI_OK, "%s", err.msg);
    return t;
}

static struct omni_tensor load_i32(struct omni_weights *w, const char *key)
{
    struct omni_tensor raw, t;
    struct omni_error err;
    ck_assert_msg(omni_weights_get(w, NULL, key, &raw, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(omni_tensor_convert(&t, &raw, OMNI_DTYPE_I32, &err), OMNI_OK);
    omni_tensor_release(&raw);
    return t;
}

static struct omni_pipeline *load_pipeline(const char *path)
{
    struct omni_pipeline *p;
    struct omni_error err;
    omni_error_clear(&err);
    ck_assert_msg(omni_pipeline_load(&p, path, NULL, &err) == OMNI_OK, "%s", err.msg);
    return p;
}

START_TEST(test_t2i_codes_and_pixels_match_the_reference)
{
    long before = omni_buffer_live_count();
    struct omni_weights *ex = expected("expected_t2i.safetensors");
    struct omni_pipeline *p = load_pipeline("pipelines/t2i-tiny.yaml");
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    /* the fixture's captions: test vectors 119 and 420 (106 ids: the slot keeps the first 68) */
    FILE *f = fopen(tu_shared_path("data/tokenizer/gpt-neox-20b-testvectors.jsonl"), "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL, *texts[2] = {0};
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        const char *want[2] = {"{\"i\":119,", "{\"i\":420,"};
        for (int k = 0; k < 2; k++)
            if (!strncmp(line, want[k], strlen(want[k]))) {
                /* "text":"..." with JSON escapes: only \n and \" occur in these two */
                char *s = strstr(line, "\"text\":\"") + 8, *o = malloc(strlen(s) + 1), *d = o;
                for (; *s && !(s[0] == '"' && s[-1] != '\\'); s++) {
                    if (s[0] == '\\' && s[1] == 'n') { *d++ = '\n'; s++; }
                    else if (s[0] == '\\' && s[1]) { *d++ = s[1]; s++; }
                    else *d++ = *s;
                }
                *d = 0;
                texts[k] = o;
            }
    }
    free(line);
    fclose(f);
    ck_assert(texts[0] && texts[1]);
    ck_assert_int_eq(omni_request_set_texts(r, "prompt", (const char *const *)texts, 2, &err), OMNI_OK);
    char out[1200];
    snprintf(out, sizeof out, "writer.output=%s/tiny.png", tu_tmpdir());
    ck_assert_int_eq(omni_request_set_option(r, out, &err), OMNI_OK);
    char dump[1200];
    snprintf(dump, sizeof dump, "%s/t2i.safetensors", tu_tmpdir());
    omni_request_set_dump(r, dump);
    ck_assert_msg(omni_pipeline_run(p, r, &err) == OMNI_OK, "%s", err.msg);

    struct omni_tensor want = load_i32(ex, "codes");
    const struct omni_tensor *got = omni_request_output(r, "codes");
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(got->shape[0], 2);
    ck_assert_int_eq(got->shape[1], 16);
    ck_assert_mem_eq(omni_tensor_data(got), omni_tensor_data(&want), 2 * 16 * 4);
    omni_tensor_release(&want);

    /* pixels: the reference converts its own float image; ours may sit across an integer: +-1 */
    struct omni_tensor wpx;
    ck_assert_int_eq(omni_weights_get(ex, NULL, "image_u8", &wpx, &err), OMNI_OK);
    const struct omni_tensor *px = omni_request_output(r, "image");
    ck_assert_ptr_nonnull(px);
    ck_assert_int_eq(omni_tensor_numel(px), omni_tensor_numel(&wpx));
    const uint8_t *a = omni_tensor_data(px), *b = omni_tensor_data(&wpx);
    int worst = 0;
    for (int64_t i = 0; i < omni_tensor_numel(px); i++)
        worst = abs((int)a[i] - (int)b[i]) > worst ? abs((int)a[i] - (int)b[i]) : worst;
    ck_assert_int_le(worst, 1);
    omni_tensor_release(&wpx);
    omni_request_free(r);

    /* stage dumps: the prefill input and the first image-head logits */
    struct omni_weights *d;
    ck_assert_int_eq(omni_weights_open(&d, dump, &err), OMNI_OK);
    struct omni_tensor ge = load_f32(d, "prefix.embeds"), we = load_f32(ex, "prefix_embeds");
    ck_assert_int_eq(omni_tensor_numel(&ge), omni_tensor_numel(&we));
    ck_assert_double_lt(tu_rel_err(omni_tensor_data(&ge), omni_tensor_data(&we), (size_t)omni_tensor_numel(&we)), 1e-4);
    struct omni_tensor gl = load_f32(d, "head.logits"), wl = load_f32(ex, "logits");
    /* wl: [2, 16, 512]; the prefill logits are step 0 of each row */
    float ref[2 * 512];
    for (int bi = 0; bi < 2; bi++)
        memcpy(ref + bi * 512, (const float *)omni_tensor_data(&wl) + bi * 16 * 512, 512 * 4);
    ck_assert_double_lt(tu_rel_err(omni_tensor_data(&gl), ref, 2 * 512), 1e-4);
    omni_tensor_release(&ge);
    omni_tensor_release(&we);
    omni_tensor_release(&gl);
    omni_tensor_release(&wl);
    omni_weights_close(d);
    omni_weights_close(ex);
    omni_pipeline_free(p);
    free(texts[0]);
    free(texts[1]);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_mmu_greedy_tokens_and_logits_match_the_reference)
{
    long before = omni_buffer_live_count();
    struct omni_weights *ex = expected("expected_mmu.safetensors");
    struct omni_pipeline *p = load_pipeline("pipelines/mmu-tiny.yaml");
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    ck_assert_int_eq(omni_request_set_text(r, "image", tu_shared_path("data/images/dog_bicycle.jpg"), &err), OMNI_OK);
    ck_assert_int_eq(omni_request_set_text(r, "prompt", "Please describe it in detail.", &err), OMNI_OK);
    omni_request_set_max_tokens(r, 8);
    char dump[1200];
    snprintf(dump, sizeof dump, "%s/mmu.safetensors", tu_tmpdir());
    omni_request_set_dump(r, dump);
    ck_assert_msg(omni_pipeline_run(p, r, &err) == OMNI_OK, "%s", err.msg);
    struct omni_tensor want = load_i32(ex, "generated_ids");
    const struct omni_tensor *got = omni_request_output(r, "tokens");
    ck_assert_int_eq(got->shape[1], 8);
    ck_assert_mem_eq(omni_tensor_data(got), omni_tensor_data(&want), 8 * 4);
    omni_tensor_release(&want);
    omni_request_free(r);
    struct omni_weights *d;
    ck_assert_int_eq(omni_weights_open(&d, dump, &err), OMNI_OK);
    static const char *pairs[][2] = {{"dino_pre.pixels", "dino_input"}, {"siglip_pre.pixels", "siglip_input"},
                                     {"dino.features", "dino_features"}, {"siglip.features", "siglip_features"},
                                     {"projector.embeds", "projector_out"}, {"assemble.embeds", "x0"},
                                     {"head.logits", "prefill_logits"}, {"head.logits.step0", "step1_logits"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        struct omni_tensor g = load_f32(d, pairs[i][0]), w = load_f32(ex, pairs[i][1]);
        ck_assert_int_eq(omni_tensor_numel(&g), omni_tensor_numel(&w));
        double e = tu_rel_err(omni_tensor_data(&g), omni_tensor_data(&w), (size_t)omni_tensor_numel(&w));
        ck_assert_msg(e < 1e-4, "%s vs %s: rel err %g", pairs[i][0], pairs[i][1], e);
        omni_tensor_release(&g);
        omni_tensor_release(&w);
    }
    omni_weights_close(d);
    omni_weights_close(ex);
    omni_pipeline_free(p);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_vq_roundtrip_codes_match_the_reference)
{
    struct omni_weights *ex = expected("expected_vq.safetensors");
    struct omni_pipeline *p = load_pipeline("pipelines/vq-roundtrip-tiny.yaml");
    struct omni_request *r = omni_request_new(p);
    struct omni_error err;
    ck_assert_int_eq(omni_request_set_text(r, "image", tu_shared_path("data/images/dog_bicycle.jpg"), &err), OMNI_OK);
    char out[1200];
    snprintf(out, sizeof out, "writer.output=%s/rt.png", tu_tmpdir());
    ck_assert_int_eq(omni_request_set_option(r, out, &err), OMNI_OK);
    ck_assert_msg(omni_pipeline_run(p, r, &err) == OMNI_OK, "%s", err.msg);
    struct omni_tensor want = load_i32(ex, "codes");
    const struct omni_tensor *got = omni_request_output(r, "codes");
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(omni_tensor_numel(got), 16);
    ck_assert_mem_eq(omni_tensor_data(got), omni_tensor_data(&want), 16 * 4);
    omni_tensor_release(&want);
    omni_request_free(r);
    omni_pipeline_free(p);
    omni_weights_close(ex);
}
END_TEST

/* ---- the CLI on bad input: a clear message, exit status 1, no crash ---------------------- */

static int run_cli(const char *args, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", omni_bin, args);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define EXPECT_CLI(args, status, needle)                                                  \
    do {                                                                                  \
        char o_[8192];                                                                    \
        int s_ = run_cli(args, o_, sizeof o_);                                            \
        ck_assert_msg(s_ == (status), "'%s' exited %d:\n%s", args, s_, o_);              \
        ck_assert_msg(strstr(o_, needle), "'%s' output lacks '%s':\n%s", args, needle, o_); \
    } while (0)

static const char *tmpfile_with(const char *name, const void *data, size_t n)
{
    static char path[1200];
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

START_TEST(test_cli_prompts_file_with_an_empty_line)
{
    const char *path = tmpfile_with("prompts.txt", "a cat\n\na dog\n", 13);
    char args[2048];
    snprintf(args, sizeof args, "run pipelines/t2i-tiny.yaml -q --prompts %s", path);
    EXPECT_CLI(args, 1, "prompts.txt:2: empty line");
}
END_TEST

START_TEST(test_cli_corrupt_and_truncated_images)
{
    char args[2048];
    const char *garbage = tmpfile_with("garbage.png", "\x89PNG\r\n\x1a\nnot really", 18);
    snprintf(args, sizeof args, "run pipelines/mmu-tiny.yaml -q --prompt hi --image %s", garbage);
    EXPECT_CLI(args, 1, "garbage.png");
    /* a truncated copy of a real JPEG */
    FILE *f = fopen(tu_shared_path("data/images/dog_bicycle.jpg"), "rb");
    char buf[4000];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *cut = tmpfile_with("cut.jpg", buf, n);
    snprintf(args, sizeof args, "run pipelines/mmu-tiny.yaml -q --prompt hi --image %s", cut);
    EXPECT_CLI(args, 1, "cut.jpg");
    snprintf(args, sizeof args, "run pipelines/mmu-tiny.yaml -q --prompt hi --image %s/none.png", tu_tmpdir());
    EXPECT_CLI(args, 1, "none.png");
}
END_TEST

START_TEST(test_cli_missing_weight_file_names_it)
{
    EXPECT_CLI("run pipelines/t2i-tiny.yaml -q --prompt x --set vq.weights=/nonexistent/vq.pth", 1, "/nonexistent/vq.pth");
}
END_TEST

START_TEST(test_cli_checkpoint_without_tower_keys)
{
    /* the OmniMamba checkpoint has no vision towers: pointing the tower at it names the missing key */
    char args[2048];
    snprintf(args, sizeof args, "run pipelines/mmu-tiny.yaml -q --prompt hi --image x.png --set dino.weights=%s/omnimamba.pth", tiny);
    EXPECT_CLI(args, 1, "patch_embed.proj.weight");
}
END_TEST

START_TEST(test_cli_too_long_mmu_sequence_is_refused_before_running)
{
    /* 128 position rows in the tiny model: 16 visual + 4 specials + the question */
    char q[3000] = "";
    for (int i = 0; i < 120; i++)
        strcat(q, "word ");
    char args[4096];
    snprintf(args, sizeof args, "run pipelines/mmu-tiny.yaml -q --image %s --prompt '%s'",
             tu_shared_path("data/images/dog_bicycle.jpg"), q);
    EXPECT_CLI(args, 1, "128");
}
END_TEST

START_TEST(test_cli_writes_the_png)
{
    char args[2048], png[1200];
    snprintf(png, sizeof png, "%s/cli.png", tu_tmpdir());
    snprintf(args, sizeof args, "run pipelines/t2i-tiny.yaml -q --prompt 'A bed in a bedroom between two lamps.' -o %s", png);
    char o[8192];
    ck_assert_int_eq(run_cli(args, o, sizeof o), 0);
    struct omni_tensor img;
    struct omni_error err;
    ck_assert_msg(omni_image_load(png, &img, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(img.shape[0], 16);
    ck_assert_int_eq(img.shape[1], 16);
    omni_tensor_release(&img);
}
END_TEST

int main(void)
{
    setup();
    Suite *s = suite_create("omnimamba_tiny");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_t2i_codes_and_pixels_match_the_reference);
    tcase_add_test(tc, test_mmu_greedy_tokens_and_logits_match_the_reference);
    tcase_add_test(tc, test_vq_roundtrip_codes_match_the_reference);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("bad_input");
    tcase_set_timeout(tb, 120);
    tcase_add_test(tb, test_cli_prompts_file_with_an_empty_line);
    tcase_add_test(tb, test_cli_corrupt_and_truncated_images);
    tcase_add_test(tb, test_cli_missing_weight_file_names_it);
    tcase_add_test(tb, test_cli_checkpoint_without_tower_keys);
    tcase_add_test(tb, test_cli_too_long_mmu_sequence_is_refused_before_running);
    tcase_add_test(tb, test_cli_writes_the_png);
    suite_add_tcase(s, tb);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
