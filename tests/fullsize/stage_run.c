/* stage_run - run ONE omni stage on tensors read from a .safetensors file and write its
 * outputs to another .safetensors file (tests/fullsize: the full-size parity check).
 *
 *   stage_run TYPE PARAMS_YAML WEIGHTS PREFIX IN.safetensors OUT.safetensors \
 *             PORT=KEY [PORT=KEY ...] -- OUTPORT=NAME [OUTPORT=NAME ...]
 *
 * Each PORT=KEY pushes tensor KEY of IN.safetensors into input PORT (floating tensors are
 * converted to f32, integer tensors are pushed as stored); each OUTPORT=NAME writes the
 * pulled output OUTPORT as NAME. PARAMS_YAML may be "" (no params), PREFIX "" (none).
 * Device cpu, dtype f32. Prints the load and forward wall times on stdout.
 * Build: cc -std=c11 -O2 -Icore/include tests/fullsize/stage_run.c -L$BUILD/lib -lomni
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "omni/harness.h"
#include "omni/tensor.h"
#include "omni/weights.h"

#define MAX_PORTS 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int split(char *arg, char **a, char **b)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return -1;
    *eq = 0;
    *a = arg;
    *b = eq + 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 10) {
        fprintf(stderr, "usage: %s TYPE PARAMS_YAML WEIGHTS PREFIX IN.safetensors OUT.safetensors "
                        "PORT=KEY... -- OUTPORT=NAME...\n", argv[0]);
        return 2;
    }
    const char *type = argv[1], *params = argv[2], *weights = argv[3], *prefix = argv[4];
    const char *in_path = argv[5], *out_path = argv[6];
    char *in_port[MAX_PORTS], *in_key[MAX_PORTS], *out_port[MAX_PORTS], *out_name[MAX_PORTS];
    int n_in = 0, n_out = 0, i = 7;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (n_in == MAX_PORTS || split(argv[i], &in_port[n_in], &in_key[n_in])) {
            fprintf(stderr, "stage_run: bad input '%s' (PORT=KEY, at most %d)\n", argv[i], MAX_PORTS);
            return 2;
        }
        n_in++;
    }
    for (i++; i < argc; i++) {
        if (n_out == MAX_PORTS || split(argv[i], &out_port[n_out], &out_name[n_out])) {
            fprintf(stderr, "stage_run: bad output '%s' (OUTPORT=NAME, at most %d)\n", argv[i], MAX_PORTS);
            return 2;
        }
        n_out++;
    }
    if (!n_in || !n_out) {
        fprintf(stderr, "stage_run: need at least one PORT=KEY, then --, then OUTPORT=NAME\n");
        return 2;
    }

    struct omni_error err = {0};
    struct omni_harness *h = NULL;
    struct omni_weights *w = NULL;
    struct omni_tensor ins[MAX_PORTS];
    struct omni_tensor outs[MAX_PORTS];
    const char *names[MAX_PORTS];
    int n_ins = 0, rc = 1;
    memset(ins, 0, sizeof ins);

    double t0 = now_s();
    if (omni_harness_new_full(&h, type, params[0] ? params : NULL, "cpu", "f32", &err))
        goto fail;
    if (omni_harness_load_weights(h, weights, prefix[0] ? prefix : NULL, &err))
        goto fail;
    double t1 = now_s();
    if (omni_weights_open(&w, in_path, &err))
        goto fail;
    for (int k = 0; k < n_in; k++) {
        struct omni_weight_info info;
        if (omni_weights_info(w, NULL, in_key[k], &info, &err))
            goto fail;
        int fl = info.dtype == OMNI_DTYPE_F32 || info.dtype == OMNI_DTYPE_F64 || info.dtype == OMNI_DTYPE_F16 ||
                 info.dtype == OMNI_DTYPE_BF16;
        if (fl ? omni_weights_load(w, NULL, in_key[k], OMNI_DTYPE_F32, 0, NULL, &ins[k], &err)
               : omni_weights_get(w, NULL, in_key[k], &ins[k], &err))
            goto fail;
        n_ins++;
        if (omni_harness_push(h, in_port[k], &ins[k], &err))
            goto fail;
    }
    double t2 = now_s();
    if (omni_harness_forward(h, &err))
        goto fail;
    double t3 = now_s();
    for (int k = 0; k < n_out; k++) {
        const struct omni_tensor *t = omni_harness_pull(h, out_port[k]);
        if (!t) {
            omni_error_set(&err, OMNI_ENOTFOUND, "stage '%s' has no output on port '%s'", type, out_port[k]);
            goto fail;
        }
        outs[k] = *t;
        names[k] = out_name[k];
    }
    if (omni_safetensors_write(out_path, (size_t)n_out, names, outs, &err))
        goto fail;
    printf("stage_run %s: load %.2f s, forward %.2f s -> %s\n", type, t1 - t0, t3 - t2, out_path);
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "stage_run %s: error %d: %s\n", type, err.status, err.msg);
    for (int k = 0; k < n_ins; k++)
        omni_tensor_release(&ins[k]);
    if (w)
        omni_weights_close(w);
    if (h)
        omni_harness_free(h);
    return rc;
}
