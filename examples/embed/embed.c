/* embed - generate one image from a prompt through libomni's public API.
 *
 *   make install PREFIX=$HOME/.local
 *   cc -o embed embed.c $(PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig pkg-config --cflags --libs omni)
 *   OMNI_WEIGHTS=weights ./embed pipelines/t2i.yaml "A red bicycle" bike.png
 *
 * The pipeline's image_write stage writes the file; this program passes the
 * path as that stage's per-request "output" option, runs one request, prints
 * progress, and checks what came back. */
#include <stdio.h>
#include <string.h>

#include <omni/omni.h>

static void progress(struct omni_request *r, int64_t done, int64_t total, void *user)
{
    (void)r;
    (void)user;
    fprintf(stderr, "\rimage tokens %lld/%lld", (long long)done, (long long)total);
    if (done == total)
        fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PIPELINE.yaml PROMPT OUT.png\n", argv[0]);
        return 2;
    }
    struct omni_error err;
    struct omni_pipeline *p = NULL;
    omni_log_set_sink(omni_log_stderr_sink, NULL); /* the library itself never prints */
    if (omni_pipeline_load(&p, argv[1], NULL, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    struct omni_request *r = omni_request_new(p);
    int status = 1;
    if (!r) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    if (omni_request_set_text(r, "prompt", argv[2], &err))
        goto fail;
    /* tell every image_write stage where to write */
    for (int i = 0; i < omni_pipeline_stage_count(p); i++) {
        if (strcmp(omni_pipeline_stage_type(p, i), "image_write"))
            continue;
        char opt[4096];
        snprintf(opt, sizeof opt, "%s.output=%s", omni_pipeline_stage_name(p, i), argv[3]);
        if (omni_request_set_option(r, opt, &err))
            goto fail;
    }
    omni_request_on_progress(r, progress, NULL);
    if (omni_pipeline_run(p, r, &err))
        goto fail;
    const struct omni_tensor *codes = omni_request_tokens(r);
    char desc[128];
    if (codes)
        printf("generated %s image codes\n", omni_tensor_str(codes, desc, sizeof desc));
    printf("wrote %s\n", argv[3]);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
out:
    omni_request_free(r);
    omni_pipeline_free(p);
    return status;
}
