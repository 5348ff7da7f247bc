/* Messages on the wire: decode with limits, structural checks, encode, and the
 * params tree <-> flat node list. No I/O here: this is what the libFuzzer
 * target (tests/fuzz/fuzz_proto.c) drives with arbitrary bytes. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ipc/ipc_impl.h"
#include "yaml_tree.h"

/* Strings in messages name stages, files and keys: generous but bounded. */
#define MAX_STRING 4096
#define MAX_PARAM_SCALAR (1u << 20)
#define MAX_ELEMS ((int64_t)1 << 48)

double omni__ipc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long env_long(const char *name, long def, long lo, long hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        OMNI_LOG(OMNI_LOG_WARN, "%s=%s is not a number in [%ld, %ld]; using %ld", name, s, lo, hi, def);
        return def;
    }
    return v;
}

void omni__ipc_config_get(struct omni__ipc_config *c, const long *given)
{
    long v[OMNI__IPC_NKNOBS];
    for (int i = 0; i < OMNI__IPC_NKNOBS; i++) {
        const struct omni__ipc_knob *k = &omni__ipc_knobs[i];
        const long def = given && given[i] >= 0 ? given[i] : k->def;
        v[i] = env_long(k->env, def, k->lo, k->hi);
        if (given && given[i] >= 0 && v[i] != given[i])
            OMNI_LOG(OMNI_LOG_INFO, "%s=%ld overrides ipc %s %ld", k->env, v[i], k->key, given[i]);
    }
    c->heartbeat_ms = (int)v[OMNI__IPC_HEARTBEAT_MS];
    c->dead_ms = (int)v[OMNI__IPC_DEAD_MS];
    if (c->dead_ms < 2 * c->heartbeat_ms)
        c->dead_ms = 2 * c->heartbeat_ms;
    c->start_ms = (int)v[OMNI__IPC_START_MS];
    c->load_ms = (int)v[OMNI__IPC_LOAD_MS];
    c->call_ms = (int)v[OMNI__IPC_CALL_MS];
    c->max_message = (size_t)v[OMNI__IPC_MAX_MESSAGE];
    c->force_inline = (int)v[OMNI__IPC_INLINE];
    c->insecure_tcp = (int)env_long("OMNI_IPC_INSECURE_TCP", 0, 0, 1); /* never from a file */
}

/* ---- tensor references ------------------------------------------------------------ */

int omni__ipc_shm_name_ok(const char *name)
{
    /* "/omni." digits "." digits "." digits */
    if (!name || strncmp(name, "/omni.", 6) || strlen(name) >= OMNI_IPC_SHM_NAME_MAX)
        return 0;
    const char *p = name + 6;
    for (int field = 0; field < 3; field++) {
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
        if (!digits || digits > 20)
            return 0;
        if (field < 2 && *p++ != '.')
            return 0;
    }
    return *p == '\0';
}

static int add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a > UINT64_MAX - b)
        return 0;
    *out = a + b;
    return 1;
}

int omni__ipc_ref_check(const Omni__TensorRef *r, uint64_t *nbytes, struct omni_error *err)
{
    if (!r)
        return omni_error_set(err, OMNI_EPROTO, "tensor reference missing");
    size_t es = omni_dtype_size(r->dtype);
    if (r->dtype <= OMNI_DTYPE_INVALID || r->dtype >= OMNI_DTYPE_COUNT || !es)
        return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: unknown dtype %d", r->port, r->dtype);
    if (r->port < 0 || r->port >= 1024)
        return omni_error_set(err, OMNI_EPROTO, "tensor reference: port index %d out of range", r->port);
    if (r->n_shape > OMNI_MAX_DIMS)
        return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: rank %zu exceeds %d", r->port,
                              r->n_shape, OMNI_MAX_DIMS);
    if (r->n_strides != r->n_shape)
        return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: %zu strides for rank %zu", r->port,
                              r->n_strides, r->n_shape);
    int64_t numel = 1;
    uint64_t last = 0; /* index of the furthest element */
    int contiguous = 1;
    int64_t expect = 1;
    for (size_t i = r->n_shape; i-- > 0;) {
        int64_t d = r->shape[i], s = r->strides[i];
        if (d < 0 || d > MAX_ELEMS || s < 0 || s > MAX_ELEMS)
            return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: dim %zu has size %lld stride %lld",
                                  r->port, i, (long long)d, (long long)s);
        if (d != 1 && s != expect)
            contiguous = 0;
        if (d && numel > MAX_ELEMS / d)
            return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: too many elements", r->port);
        numel *= d;
        expect *= d ? d : 1;
        if (d > 1) {
            uint64_t span = (uint64_t)(d - 1) * (uint64_t)s; /* both < 2^48: no overflow */
            if (!add_ok(last, span, &last) || last > (uint64_t)MAX_ELEMS)
                return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: extent overflows", r->port);
        }
    }
    uint64_t need = numel ? (last + 1) * (uint64_t)es : 0;
    if (nbytes)
        *nbytes = need;
    uint64_t end;
    switch (r->data_case) {
    case OMNI__TENSOR_REF__DATA_SHM:
        if (!r->shm || !omni__ipc_shm_name_ok(r->shm->name))
            return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: '%.80s' is not an omni segment name",
                                  r->port, r->shm && r->shm->name ? r->shm->name : "");
        if (!add_ok(r->shm->offset, need, &end) || end > r->shm->size || r->shm->size > ((uint64_t)1 << 48))
            return omni_error_set(err, OMNI_EPROTO,
                                  "tensor reference for port %d: %llu bytes at offset %llu exceed segment %s of %llu bytes",
                                  r->port, (unsigned long long)need, (unsigned long long)r->shm->offset,
                                  r->shm->name, (unsigned long long)r->shm->size);
        return OMNI_OK;
    case OMNI__TENSOR_REF__DATA_CUDA:
        if (!r->cuda || r->cuda->mem_handle.len != OMNI_IPC_CUDA_HANDLE_BYTES ||
            (r->cuda->event_handle.len && r->cuda->event_handle.len != OMNI_IPC_CUDA_HANDLE_BYTES) ||
            r->cuda->device_uuid.len != 16)
            return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d: malformed CUDA IPC handle", r->port);
        if (!add_ok(r->cuda->offset, need, &end) || end > r->cuda->size)
            return omni_error_set(err, OMNI_EPROTO,
                                  "tensor reference for port %d: %llu bytes at offset %llu exceed a CUDA block of %llu bytes",
                                  r->port, (unsigned long long)need, (unsigned long long)r->cuda->offset,
                                  (unsigned long long)r->cuda->size);
        return OMNI_OK;
    case OMNI__TENSOR_REF__DATA_INLINE_DATA:
        if (!contiguous || r->inline_data.len != need)
            return omni_error_set(err, OMNI_EPROTO,
                                  "tensor reference for port %d: %zu inline bytes for a %s tensor of %llu bytes",
                                  r->port, r->inline_data.len, contiguous ? "contiguous" : "strided",
                                  (unsigned long long)need);
        return OMNI_OK;
    default:
        return omni_error_set(err, OMNI_EPROTO, "tensor reference for port %d carries no data", r->port);
    }
}

/* ---- params trees --------------------------------------------------------------------- */

static int count_nodes(const struct omni__ynode *n, size_t *count, int depth)
{
    if (depth > 64 || ++*count > OMNI_IPC_MAX_PARAM_NODES)
        return -1;
    for (int i = 0; i < n->n; i++)
        if (count_nodes(n->items[i], count, depth + 1))
            return -1;
    return 0;
}

static int flatten_rec(const struct omni__ynode *n, int parent, const char *key, Omni__ParamNode **out,
                       size_t *used)
{
    size_t me = (*used)++;
    Omni__ParamNode *p = malloc(sizeof *p);
    if (!p)
        return -1;
    omni__param_node__init(p);
    out[me] = p;
    p->kind = n->kind == OMNI__Y_SCALAR ? 0 : n->kind == OMNI__Y_SEQ ? 1 : 2;
    p->parent = parent;
    p->quoted = n->quoted != 0;
    p->line = n->line;
    p->col = n->col;
    if (key && !(p->key = strdup(key)))
        return -1;
    if (n->kind == OMNI__Y_SCALAR && !(p->scalar = strdup(n->scalar ? n->scalar : "")))
        return -1;
    for (int i = 0; i < n->n; i++)
        if (flatten_rec(n->items[i], (int)me, n->kind == OMNI__Y_MAP ? n->keys[i] : NULL, out, used))
            return -1;
    return 0;
}

void omni__ipc_params_flat_free(Omni__ParamNode **nodes, size_t n)
{
    for (size_t i = 0; nodes && i < n; i++) {
        if (!nodes[i])
            continue;
        if (nodes[i]->key != protobuf_c_empty_string)
            free(nodes[i]->key);
        if (nodes[i]->scalar != protobuf_c_empty_string)
            free(nodes[i]->scalar);
        free(nodes[i]);
    }
    free(nodes);
}

int omni__ipc_params_flatten(const struct omni__ynode *root, Omni__ParamNode ***nodes, size_t *n,
                             struct omni_error *err)
{
    *nodes = NULL;
    *n = 0;
    if (!root)
        return OMNI_OK;
    size_t count = 0;
    if (count_nodes(root, &count, 0))
        return omni_error_set(err, OMNI_ERANGE, "stage params are too large or too deep to send (limit %d nodes)",
                              OMNI_IPC_MAX_PARAM_NODES);
    Omni__ParamNode **out = calloc(count, sizeof *out);
    size_t used = 0;
    if (!out || flatten_rec(root, -1, NULL, out, &used)) {
        omni__ipc_params_flat_free(out, count);
        return omni_error_set(err, OMNI_ENOMEM, "out of memory");
    }
    *nodes = out;
    *n = used;
    return OMNI_OK;
}

/* Capacity the tree code's grow() expects for n items (doubling from 4). */
static size_t cap_for(size_t n)
{
    size_t c = 4;
    while (c < n)
        c *= 2;
    return c;
}

static int check_param_nodes(Omni__ParamNode *const *nodes, size_t n, struct omni_error *err)
{
    if (n > OMNI_IPC_MAX_PARAM_NODES)
        return omni_error_set(err, OMNI_EPROTO, "%zu param nodes exceed the limit of %d", n, OMNI_IPC_MAX_PARAM_NODES);
    for (size_t i = 0; i < n; i++) {
        const Omni__ParamNode *p = nodes[i];
        if (!p || p->kind < 0 || p->kind > 2)
            return omni_error_set(err, OMNI_EPROTO, "param node %zu: bad kind", i);
        if (i == 0 ? p->parent != -1 : (p->parent < 0 || (size_t)p->parent >= i))
            return omni_error_set(err, OMNI_EPROTO, "param node %zu: bad parent %d", i, p->parent);
        if (i == 0 && p->kind != 2)
            return omni_error_set(err, OMNI_EPROTO, "param node 0 must be a mapping");
        if (i > 0) {
            int pk = nodes[p->parent]->kind;
            if (pk == 0)
                return omni_error_set(err, OMNI_EPROTO, "param node %zu: parent %d is a scalar", i, p->parent);
            int has_key = p->key && p->key[0];
            if ((pk == 2) != has_key)
                return omni_error_set(err, OMNI_EPROTO, "param node %zu: %s", i,
                                      pk == 2 ? "mapping item without a key" : "sequence item with a key");
        }
        if ((p->key && strlen(p->key) > MAX_STRING) || (p->scalar && strlen(p->scalar) > MAX_PARAM_SCALAR))
            return omni_error_set(err, OMNI_EPROTO, "param node %zu: string too long", i);
    }
    /* depth, so that the tree code's recursion stays shallow */
    int depth[OMNI_IPC_MAX_PARAM_NODES];
    for (size_t i = 0; i < n; i++) {
        depth[i] = i ? depth[nodes[i]->parent] + 1 : 0;
        if (depth[i] > 64)
            return omni_error_set(err, OMNI_EPROTO, "param tree deeper than 64");
    }
    return OMNI_OK;
}

int omni__ipc_params_unflatten(Omni__ParamNode *const *nodes, size_t n, const char *file,
                               struct omni__ynode **out, struct omni_error *err)
{
    *out = NULL;
    if (!n)
        return OMNI_OK;
    int rc = check_param_nodes(nodes, n, err);
    if (rc)
        return rc;
    /* Nodes come parents first: each is linked into its parent as soon as it
     * is made, so on failure freeing the root frees everything. */
    struct omni__ynode **made = calloc(n, sizeof *made);
    size_t *nchild = calloc(n, sizeof *nchild);
    char *fname = strdup(file ? file : "");
    struct omni__ynode *root = NULL;
    if (!made || !nchild || !fname)
        goto oom;
    for (size_t i = 1; i < n; i++)
        nchild[nodes[i]->parent]++;
    for (size_t i = 0; i < n; i++) {
        const Omni__ParamNode *p = nodes[i];
        struct omni__ynode *y = calloc(1, sizeof *y);
        if (!y)
            goto oom;
        y->kind = p->kind == 0 ? OMNI__Y_SCALAR : p->kind == 1 ? OMNI__Y_SEQ : OMNI__Y_MAP;
        y->quoted = p->quoted;
        y->file = fname;
        y->line = p->line;
        y->col = p->col;
        if (i == 0) {
            root = y; /* owns fname from here on */
        } else {
            struct omni__ynode *par = made[p->parent];
            char *key = NULL;
            if (par->kind == OMNI__Y_MAP && !(key = strdup(p->key))) {
                free(y);
                goto oom;
            }
            if (par->kind == OMNI__Y_MAP) {
                par->keys[par->n] = key;
                par->key_lines[par->n] = p->line;
                par->key_cols[par->n] = p->col;
            }
            par->items[par->n++] = y;
        }
        made[i] = y;
        if (y->kind == OMNI__Y_SCALAR && !(y->scalar = strdup(p->scalar ? p->scalar : "")))
            goto oom;
        if (y->kind != OMNI__Y_SCALAR && nchild[i]) {
            size_t cap = cap_for(nchild[i]);
            if (!(y->items = calloc(cap, sizeof *y->items)))
                goto oom;
            if (y->kind == OMNI__Y_MAP &&
                (!(y->keys = calloc(cap, sizeof *y->keys)) || !(y->key_lines = calloc(cap, sizeof *y->key_lines)) ||
                 !(y->key_cols = calloc(cap, sizeof *y->key_cols))))
                goto oom;
        }
    }
    *out = root;
    free(made);
    free(nchild);
    return OMNI_OK;
oom:
    if (root)
        omni__ynode_free(root); /* frees fname too */
    else
        free(fname);
    free(made);
    free(nchild);
    return omni_error_set(err, OMNI_ENOMEM, "out of memory");
}

void omni__ipc_params_free(struct omni__ynode *root) { omni__ynode_free(root); }

/* ---- whole messages ---------------------------------------------------------------------- */

static int str_ok(const char *s) { return !s || strlen(s) <= MAX_STRING; }

static int check_refs(Omni__TensorRef *const *refs, size_t n, const char *what, struct omni_error *err)
{
    if (n > OMNI_IPC_MAX_TENSORS)
        return omni_error_set(err, OMNI_EPROTO, "%s: %zu tensors exceed the limit of %d", what, n, OMNI_IPC_MAX_TENSORS);
    for (size_t i = 0; i < n; i++) {
        int rc = omni__ipc_ref_check(refs[i], NULL, err);
        if (rc)
            return omni_error_prefix(err, "%s: ", what);
        for (size_t j = 0; j < i; j++)
            if (refs[j]->port == refs[i]->port)
                return omni_error_set(err, OMNI_EPROTO, "%s: port %d given twice", what, refs[i]->port);
    }
    return OMNI_OK;
}

int omni__ipc_msg_check(const Omni__Envelope *e, struct omni_error *err)
{
    switch (e->body_case) {
    case OMNI__ENVELOPE__BODY_HELLO: {
        const Omni__Hello *h = e->hello;
        if (!str_ok(h->version) || !str_ok(h->hostname) || !str_ok(h->boot_id) || !str_ok(h->shm_probe) ||
            !str_ok(h->process))
            return omni_error_set(err, OMNI_EPROTO, "hello: string too long");
        if (h->n_cuda_uuids > 64)
            return omni_error_set(err, OMNI_EPROTO, "hello: %zu CUDA devices", h->n_cuda_uuids);
        for (size_t i = 0; i < h->n_cuda_uuids; i++)
            if (h->cuda_uuids[i].len != 16)
                return omni_error_set(err, OMNI_EPROTO, "hello: CUDA UUID %zu has %zu bytes", i, h->cuda_uuids[i].len);
        if (h->shm_probe && h->shm_probe[0] && !omni__ipc_shm_name_ok(h->shm_probe))
            return omni_error_set(err, OMNI_EPROTO, "hello: '%.80s' is not an omni segment name", h->shm_probe);
        return OMNI_OK;
    }
    case OMNI__ENVELOPE__BODY_LOAD: {
        const Omni__LoadStage *l = e->load;
        if (!l->stage || !l->stage[0] || !l->type || !l->type[0])
            return omni_error_set(err, OMNI_EPROTO, "load: stage name and type are required");
        if (!str_ok(l->stage) || !str_ok(l->type) || !str_ok(l->plugin_file) || !str_ok(l->weights) ||
            !str_ok(l->prefix) || !str_ok(l->attach) || !str_ok(l->where) || !str_ok(l->file))
            return omni_error_set(err, OMNI_EPROTO, "load: string too long");
        if (l->n_plugin_dirs > 64)
            return omni_error_set(err, OMNI_EPROTO, "load: %zu plugin folders", l->n_plugin_dirs);
        for (size_t i = 0; i < l->n_plugin_dirs; i++)
            if (!str_ok(l->plugin_dirs[i]))
                return omni_error_set(err, OMNI_EPROTO, "load: string too long");
        if (l->device_type != OMNI_DEVICE_CPU && l->device_type != OMNI_DEVICE_CUDA)
            return omni_error_set(err, OMNI_EPROTO, "load: device type %d", l->device_type);
        if (l->device_index < 0 || l->device_index > 255)
            return omni_error_set(err, OMNI_EPROTO, "load: device index %d", l->device_index);
        if (l->dtype < 0 || l->dtype >= OMNI_DTYPE_COUNT)
            return omni_error_set(err, OMNI_EPROTO, "load: dtype %d", l->dtype);
        return check_param_nodes(l->params, l->n_params, err) ? omni_error_prefix(err, "load: ") : OMNI_OK;
    }
    case OMNI__ENVELOPE__BODY_RUN: {
        const Omni__RunStage *r = e->run;
        if (!r->stage || !r->stage[0] || !str_ok(r->stage) || !str_ok(r->task))
            return omni_error_set(err, OMNI_EPROTO, "run: bad stage name or task");
        if (r->n_options > 256)
            return omni_error_set(err, OMNI_EPROTO, "run: %zu options", r->n_options);
        for (size_t i = 0; i < r->n_options; i++)
            if (!r->options[i]->key || !r->options[i]->key[0] || !str_ok(r->options[i]->key) ||
                !str_ok(r->options[i]->value))
                return omni_error_set(err, OMNI_EPROTO, "run: bad option %zu", i);
        if (r->batch < 0)
            return omni_error_set(err, OMNI_EPROTO, "run: batch %d", r->batch);
        return check_refs(r->inputs, r->n_inputs, "run inputs", err);
    }
    case OMNI__ENVELOPE__BODY_DONE:
        if (!str_ok(e->done->message))
            return omni_error_set(err, OMNI_EPROTO, "done: string too long");
        if (e->done->status != OMNI_OK && e->done->status != OMNI_DONE)
            return omni_error_set(err, OMNI_EPROTO, "done: status %d", e->done->status);
        return check_refs(e->done->outputs, e->done->n_outputs, "done outputs", err);
    case OMNI__ENVELOPE__BODY_ERROR:
        if (!str_ok(e->error->message) || !str_ok(e->error->stage))
            return omni_error_set(err, OMNI_EPROTO, "error: string too long");
        if (e->error->status >= 0)
            return omni_error_set(err, OMNI_EPROTO, "error: status %d is not an error", e->error->status);
        return OMNI_OK;
    case OMNI__ENVELOPE__BODY_HEARTBEAT:
    case OMNI__ENVELOPE__BODY_CANCEL:
        return OMNI_OK;
    case OMNI__ENVELOPE__BODY_SHUTDOWN:
        return str_ok(e->shutdown->reason) ? OMNI_OK : omni_error_set(err, OMNI_EPROTO, "shutdown: string too long");
    default:
        return omni_error_set(err, OMNI_EPROTO, "message has no body");
    }
}

int omni__ipc_decode(const void *data, size_t len, size_t max_message, Omni__Envelope **out,
                     struct omni_error *err)
{
    *out = NULL;
    if (len > max_message)
        return omni_error_set(err, OMNI_EPROTO, "message of %zu bytes exceeds the limit of %zu bytes", len, max_message);
    Omni__Envelope *e = omni__envelope__unpack(NULL, len, data);
    if (!e)
        return omni_error_set(err, OMNI_EPROTO, "malformed message (%zu bytes): not an omni Envelope", len);
    if (e->protocol != OMNI_IPC_PROTOCOL) {
        int rc = omni_error_set(err, OMNI_EPROTO, "message speaks protocol version %u; this side speaks %u",
                                e->protocol, OMNI_IPC_PROTOCOL);
        omni__envelope__free_unpacked(e, NULL);
        return rc;
    }
    int rc = omni__ipc_msg_check(e, err);
    if (rc) {
        omni__envelope__free_unpacked(e, NULL);
        return rc;
    }
    *out = e;
    return OMNI_OK;
}

void omni__ipc_msg_free(Omni__Envelope *e)
{
    if (e)
        omni__envelope__free_unpacked(e, NULL);
}

int omni__ipc_encode(Omni__Envelope *e, void **data, size_t *len, struct omni_error *err)
{
    e->protocol = OMNI_IPC_PROTOCOL;
    size_t n = omni__envelope__get_packed_size(e);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return omni_error_set(err, OMNI_ENOMEM, "out of memory encoding a %zu-byte message", n);
    size_t w = omni__envelope__pack(e, buf);
    if (w != n) {
        free(buf);
        return omni_error_set(err, OMNI_EINTERNAL, "protobuf pack wrote %zu of %zu bytes", w, n);
    }
    *data = buf;
    *len = n;
    return OMNI_OK;
}
