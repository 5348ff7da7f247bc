/* omni_hello - the smallest useful custom stage: greets each text row.
 *
 * Copy this folder to start a plugin. One file, one descriptor, one entry
 * symbol. Build it on its own against an installed omni:
 *   cc -shared -fPIC -o omni_hello.so omni_hello.c $(pkg-config --cflags --libs omni)
 * and put the folder holding omni_hello.so on OMNI_PLUGIN_PATH.
 *
 * Ports:  in  text      u8 [B,N]  NUL-padded UTF-8 strings
 *         out greeting  u8 [B,M]  "<greeting>, <text>!" per row
 * Params: greeting (default "Hello")
 */
#include <stdlib.h>
#include <string.h>

#include "omni/plugin.h"

struct hello {
    struct omni_stage base; /* first: the core sees every stage as struct omni_stage */
    char greeting[64];
};

static int hello_create(const struct omni_stage_config *cfg, struct omni_stage **out,
                        struct omni_error *err)
{
    const char *g = omni_params_str(cfg->params, "greeting", "Hello");
    if (strlen(g) >= sizeof((struct hello *)0)->greeting)
        return omni_error_set(err, OMNI_EINVAL, "param 'greeting' is longer than 63 bytes");
    struct hello *h = calloc(1, sizeof *h);
    if (!h)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    strcpy(h->greeting, g);
    *out = &h->base;
    return OMNI_OK;
}

static void hello_destroy(struct omni_stage *s) { free(s); }

static int hello_forward(struct omni_stage *s, void *state, struct omni_io *io, struct omni_error *err)
{
    const struct hello *h = (const struct hello *)s;
    const struct omni_tensor *in = &io->in[0];
    int rc = omni_check_tensor(s, "text", in, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), 2, NULL, err);
    if (rc)
        return rc;
    int64_t rows = in->shape[0], w = in->shape[1];
    int64_t ow = w + (int64_t)strlen(h->greeting) + 4; /* ", " + "!" + NUL */
    int64_t shape[2] = {rows, ow};
    if ((rc = omni_tensor_alloc(&io->out[0], OMNI_DTYPE_U8, 2, shape, OMNI_CPU, err)))
        return rc;
    const char *src = omni_tensor_data(in);
    char *dst = omni_tensor_data(&io->out[0]);
    for (int64_t b = 0; b < rows; b++) {
        size_t n = strnlen(src + b * w, (size_t)w);
        char *d = dst + b * ow;
        memcpy(d, h->greeting, strlen(h->greeting));
        d += strlen(h->greeting);
        memcpy(d, ", ", 2);
        memcpy(d + 2, src + b * w, n);
        d[2 + n] = '!';
    }
    return OMNI_OK;
}

static const struct omni_stage_ops hello_ops = {
    .size = sizeof hello_ops,
    .create = hello_create,
    .destroy = hello_destroy,
    .forward = hello_forward,
};

static const struct omni_port_desc hello_ports[] = {
    {"text", OMNI_PORT_IN, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,N", OMNI_PORT_STRING, "text to greet"},
    {"greeting", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_U8), "B,M", OMNI_PORT_STRING, "the greeting"},
};

static const struct omni_plugin_desc hello_desc = {
    OMNI_PLUGIN_HEADER,
    .name = "hello",
    .version = "1.0",
    .description = "example: greets each row of text",
    .ops = &hello_ops,
    .ports = hello_ports,
    .n_ports = OMNI_ARRAY_LEN(hello_ports),
    .devices = OMNI_DEVICE_BIT(OMNI_DEVICE_CPU),
    .params_doc = "greeting: the word to greet with (default Hello)",
};

OMNI_PLUGIN_DEFINE(hello_desc)
