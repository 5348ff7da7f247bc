/* omni run: load a pipeline and run one request per batch of prompts. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "omni/cuda.h"

#define RUN_MAX_DEV 16 /* devices whose memory a request reports */

static void help(FILE *f)
{
    fprintf(f,
            "usage: omni run PIPELINE.yaml [options]\n\n"
            "Runs a pipeline. Text outputs stream to stdout; image outputs are written by the\n"
            "pipeline's image_write stage (see -o).\n\n"
            "inputs:\n"
            "  --prompt TEXT          set the input 'prompt'\n"
            "  --prompts FILE         one prompt per line (each line one request row; an empty\n"
            "                         line is an error); rows are batched by --batch\n"
            "  --image PATH           set the input 'image' (an image file path)\n"
            "  --input NAME=TEXT      set any text input\n"
            "  -o, --output PATH      where image_write stages write (out.png; a batch writes\n"
            "                         out-0.png, ... or one grid, as the stage's grid param says)\n"
            "generation:\n"
            "  --max-tokens N         cap the tokens the loop collects\n"
            "  --seed N               sampling seed (default 0)\n"
            "  --temperature T, --top-k K, --top-p P   sampling options for every sampler stage\n"
            "  --task NAME            request task (selects LoRA adapters; default: the pipeline's)\n"
            "  --batch N              rows per request with --prompts (default 16)\n"
            "pipeline:\n"
            "  --set STAGE.KEY=VALUE  override a stage field or param before loading (repeatable)\n"
            "  --option STAGE.KEY=V   per-request option for one stage (repeatable)\n"
            "  --device DEV           run every stage on DEV (cpu, cuda, cuda:N)\n"
            "  --dtype DT             weights dtype of every stage (f32, f16, bf16)\n"
            "  --dump FILE            write every prefill edge tensor and loop output to a\n"
            "                         .safetensors file (<stage>.<port>, <stage>.<port>.step<N>)\n"
            "  -q, --quiet            no progress or timing lines on stderr\n"
            "  -v, --verbose          more log output (repeatable)\n"
            "  -h, --help             this text\n");
}

struct stream_state {
    int printed;
};

static void on_stream(struct omni_request *r, const char *output, const struct omni_tensor *t, void *user)
{
    struct stream_state *st = user;
    if (t->dtype != OMNI_DTYPE_U8 || t->device.type != OMNI_DEVICE_CPU || t->ndim != 2)
        return;
    const char *s = omni_tensor_data(t);
    int64_t rows = t->shape[0], w = t->shape[1];
    for (int64_t b = 0; b < rows; b++) {
        const char *row = s + b * w;
        size_t n = strnlen(row, (size_t)w);
        if (rows > 1 && n)
            printf("[%lld] ", (long long)b);
        fwrite(row, 1, n, stdout);
        st->printed += (int)n;
    }
    fflush(stdout);
}

static void on_progress(struct omni_request *r, int64_t done, int64_t total, void *user)
{
    fprintf(stderr, "\romni: generating %lld/%lld", (long long)done, (long long)total);
    if (done >= total)
        fprintf(stderr, "\n");
    fflush(stderr);
}

static int read_prompts(const char *path, char ***out, int *n)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "omni run: error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, count = 0, alloc = 0;
    char **list = NULL;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        int blank = 1;
        for (ssize_t i = 0; i < len; i++)
            blank &= line[i] == ' ' || line[i] == '\t';
        if (blank) {
            fprintf(stderr, "omni run: error: %s:%d: empty line (every line must hold a prompt)\n", path, lineno);
            rc = -1;
            break;
        }
        if (count == alloc) {
            alloc = alloc ? 2 * alloc : 16;
            char **r = realloc(list, (size_t)alloc * sizeof *list);
            if (!r) {
                rc = -1;
                break;
            }
            list = r;
        }
        list[count++] = strdup(line);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (!rc && count == 0) {
        fprintf(stderr, "omni run: error: %s: no prompts\n", path);
        rc = -1;
    }
    if (rc) {
        for (int i = 0; i < count; i++)
            free(list[i]);
        free(list);
        return -1;
    }
    *out = list;
    *n = count;
    return 0;
}

static int add_str(const char ***list, int *n, const char *s)
{
    const char **r = realloc(*list, (size_t)(*n + 1) * sizeof **list);
    if (!r)
        return -1;
    r[(*n)++] = s;
    *list = r;
    return 0;
}

static int set_for_type(struct omni_pipeline *p, struct omni_request *r, const char *type, const char *key,
                        const char *value, struct omni_error *err)
{
    int found = 0;
    for (int i = 0; i < omni_pipeline_stage_count(p); i++) {
        if (strcmp(omni_pipeline_stage_type(p, i), type))
            continue;
        char opt[1024];
        snprintf(opt, sizeof opt, "%s.%s=%s", omni_pipeline_stage_name(p, i), key, value);
        int rc = omni_request_set_option(r, opt, err);
        if (rc)
            return rc;
        found++;
    }
    return found;
}

int omni_cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"prompt", required_argument, 0, 'p'},  {"prompts", required_argument, 0, 'P'},
        {"image", required_argument, 0, 'i'},   {"input", required_argument, 0, 'I'},
        {"output", required_argument, 0, 'o'},  {"max-tokens", required_argument, 0, 'm'},
        {"seed", required_argument, 0, 's'},    {"temperature", required_argument, 0, 'T'},
        {"top-k", required_argument, 0, 'k'},   {"top-p", required_argument, 0, 'u'},
        {"task", required_argument, 0, 't'},    {"batch", required_argument, 0, 'b'},
        {"set", required_argument, 0, 'S'},     {"option", required_argument, 0, 'O'},
        {"device", required_argument, 0, 'd'},  {"dtype", required_argument, 0, 'D'},
        {"dump", required_argument, 0, 'x'},    {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *prompt = NULL, *prompts_file = NULL, *image = NULL, *output = NULL, *task = NULL;
    const char *temperature = NULL, *top_k = NULL, *top_p = NULL, *device = NULL, *dtype = NULL, *dump = NULL;
    const char **sets = NULL, **options = NULL, **inputs = NULL;
    int n_sets = 0, n_options = 0, n_inputs = 0, quiet = 0, verbose = 0, batch = 16;
    long long max_tokens = -1;
    unsigned long long seed = 0;
    int c, status = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:qvh", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'P': prompts_file = optarg; break;
        case 'i': image = optarg; break;
        case 'I': add_str(&inputs, &n_inputs, optarg); break;
        case 'o': output = optarg; break;
        case 'm':
            max_tokens = strtoll(optarg, &end, 10);
            if (*end || max_tokens < 1) {
                fprintf(stderr, "omni run: error: --max-tokens needs a positive integer, not '%s'\n", optarg);
                goto out_usage;
            }
            break;
        case 's':
            seed = strtoull(optarg, &end, 0);
            if (*end) {
                fprintf(stderr, "omni run: error: --seed needs an integer, not '%s'\n", optarg);
                goto out_usage;
            }
            break;
        case 'T': temperature = optarg; break;
        case 'k': top_k = optarg; break;
        case 'u': top_p = optarg; break;
        case 't': task = optarg; break;
        case 'b':
            batch = (int)strtol(optarg, &end, 10);
            if (*end || batch < 1) {
                fprintf(stderr, "omni run: error: --batch needs a positive integer, not '%s'\n", optarg);
                goto out_usage;
            }
            break;
        case 'S': add_str(&sets, &n_sets, optarg); break;
        case 'O': add_str(&options, &n_options, optarg); break;
        case 'd': device = optarg; break;
        case 'D': dtype = optarg; break;
        case 'x': dump = optarg; break;
        case 'q': quiet = 1; break;
        case 'v': verbose++; break;
        case 'h': help(stdout); status = 0; goto out;
        default: goto out_usage;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "omni run: error: expected exactly one pipeline file\n");
        goto out_usage;
    }
    if (prompt && prompts_file) {
        fprintf(stderr, "omni run: error: --prompt and --prompts cannot be combined\n");
        goto out_usage;
    }
    omni_cli_setup_logging(verbose);
    const char *path = argv[optind];
    struct omni_error err;
    omni_error_clear(&err);
    struct omni_pipeline_options po = {.size = sizeof po, .sets = sets, .n_sets = n_sets, .device = device, .dtype = dtype};
    struct omni_pipeline *p = NULL;
    if (!quiet)
        fprintf(stderr, "omni: loading %s\n", path);
    if (omni_pipeline_load(&p, path, &po, &err)) {
        omni_cli_print_error("run", &err);
        goto out;
    }
    char **rows = NULL;
    int n_rows = 0;
    if (prompts_file && read_prompts(prompts_file, &rows, &n_rows))
        goto out_pipeline;
    if (!rows) {
        rows = calloc(1, sizeof *rows);
        n_rows = 1;
        if (!rows)
            goto out_pipeline;
        rows[0] = prompt ? strdup(prompt) : NULL;
    }
    status = 0;
    int n_requests = (n_rows + batch - 1) / batch;
    for (int q = 0; q < n_requests && !status; q++) {
        for (int d = 0; d < RUN_MAX_DEV; d++) /* the request's own peak */
            omni_cuda_memory_reset_peak((struct omni_device){OMNI_DEVICE_CUDA, d});
        struct omni_request *r = omni_request_new(p);
        if (!r) {
            fprintf(stderr, "omni run: error: out of memory\n");
            status = 1;
            break;
        }
        int first = q * batch, nb = n_rows - first < batch ? n_rows - first : batch;
        int rc = 0;
        if (rows[first])
            rc = omni_request_set_texts(r, "prompt", (const char *const *)rows + first, nb, &err);
        if (!rc && image)
            rc = omni_request_set_text(r, "image", image, &err);
        for (int i = 0; !rc && i < n_inputs; i++) {
            const char *eq = strchr(inputs[i], '=');
            if (!eq) {
                rc = omni_error_set(&err, OMNI_EINVAL, "--input '%s' must be NAME=TEXT", inputs[i]);
                break;
            }
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - inputs[i]), inputs[i]);
            rc = omni_request_set_text(r, name, eq + 1, &err);
        }
        if (!rc && output) {
            char path_q[4096];
            if (n_requests > 1) {
                const char *dot = strrchr(output, '.');
                int stem = dot ? (int)(dot - output) : (int)strlen(output);
                snprintf(path_q, sizeof path_q, "%.*s-batch%d%s", stem, output, q, dot ? dot : "");
            } else {
                snprintf(path_q, sizeof path_q, "%s", output);
            }
            int found = set_for_type(p, r, "image_write", "output", path_q, &err);
            if (found == 0)
                fprintf(stderr, "omni run: warning: -o given but the pipeline has no image_write stage\n");
            rc = found < 0 ? found : 0;
        }
        if (!rc && temperature)
            rc = set_for_type(p, r, "sampler", "temperature", temperature, &err) < 0;
        if (!rc && top_k)
            rc = set_for_type(p, r, "sampler", "top_k", top_k, &err) < 0;
        if (!rc && top_p)
            rc = set_for_type(p, r, "sampler", "top_p", top_p, &err) < 0;
        for (int i = 0; !rc && i < n_options; i++)
            rc = omni_request_set_option(r, options[i], &err);
        if (rc) {
            omni_cli_print_error("run", &err);
            omni_request_free(r);
            status = 1;
            break;
        }
        if (task)
            omni_request_set_task(r, task);
        omni_request_set_seed(r, seed);
        if (max_tokens > 0)
            omni_request_set_max_tokens(r, max_tokens);
        if (dump)
            omni_request_set_dump(r, dump);
        struct stream_state ss = {0};
        int streams = 0;
        for (int i = 0; omni_pipeline_output_name(p, i); i++)
            streams |= omni_pipeline_output_streams(p, i);
        omni_request_on_stream(r, on_stream, &ss);
        if (!quiet && !streams && omni_pipeline_has_loop(p))
            omni_request_on_progress(r, on_progress, NULL);
        if (omni_pipeline_run(p, r, &err)) {
            if (ss.printed)
                printf("\n");
            omni_cli_print_error("run", &err);
            omni_request_free(r);
            status = 1;
            break;
        }
        if (ss.printed)
            printf("\n");
        /* non-streamed text outputs are printed at the end */
        for (int i = 0; omni_pipeline_output_name(p, i); i++) {
            const struct omni_tensor *t = omni_request_output(r, omni_pipeline_output_name(p, i));
            if (!t || omni_pipeline_output_streams(p, i))
                continue;
            if (t->dtype == OMNI_DTYPE_U8 && t->ndim == 2 && !strcmp(omni_pipeline_output_name(p, i), "text")) {
                struct stream_state once = {0};
                on_stream(r, "text", t, &once);
                printf("\n");
            } else if (!quiet) {
                char desc[200];
                fprintf(stderr, "omni: output '%s': %s\n", omni_pipeline_output_name(p, i),
                        omni_tensor_str(t, desc, sizeof desc));
            }
        }
        if (!quiet) {
            struct omni_run_stats st;
            omni_request_stats(r, &st);
            fprintf(stderr, "omni: prefill %.1f ms, loop %.1f ms (%lld steps%s), after %.1f ms\n", st.prefill_ms,
                    st.loop_ms, (long long)st.steps, "", st.after_ms);
            for (int d = 0; d < RUN_MAX_DEV; d++) {
                const struct omni_device dv = {OMNI_DEVICE_CUDA, d};
                const size_t peak = omni_cuda_memory_peak(dv);
                if (peak)
                    fprintf(stderr, "omni: cuda:%d memory held by omni: peak %.2f GiB during the request, %.2f GiB after it\n",
                            d, (double)peak / (1 << 30), (double)omni_cuda_memory_used(dv) / (1 << 30));
            }
            if (dump)
                fprintf(stderr, "omni: wrote %s\n", dump);
        }
        omni_request_free(r);
    }
    for (int i = 0; i < n_rows; i++)
        free(rows[i]);
    free(rows);
out_pipeline:
    omni_pipeline_free(p);
out:
    free(sets);
    free(options);
    free(inputs);
    return status;
out_usage:
    fprintf(stderr, "try 'omni run --help'\n");
    status = 2;
    goto out;
}
