/* Type-checking a parsed pipeline before anything is created or loaded:
 * plugins resolved, ports and directions, dtypes, ranks, literal and symbolic
 * dims unified across the graph, required inputs connected, devices, adapter
 * targets, and a dependency order for each phase. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_impl.h"

#define MAXD OMNI_MAX_DIMS

struct dims {
    int any; /* "*" or absent */
    int n;
    char sym[MAXD][16]; /* "" when literal */
    int64_t lit[MAXD];
};

static void parse_dims(const char *s, struct dims *d)
{
    memset(d, 0, sizeof *d);
    if (!s || !*s || !strcmp(s, "*")) {
        d->any = 1;
        return;
    }
    while (*s && d->n < MAXD) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        size_t len = (size_t)(e - s);
        while (len && s[len - 1] == ' ')
            len--;
        if (len && s[0] >= '0' && s[0] <= '9') {
            d->lit[d->n] = strtoll(s, NULL, 10);
        } else {
            if (len >= sizeof d->sym[0])
                len = sizeof d->sym[0] - 1;
            memcpy(d->sym[d->n], s, len);
            d->sym[d->n][len] = '\0';
            if (!strcmp(d->sym[d->n], "*"))
                d->sym[d->n][0] = '?'; /* any single dim */
        }
        d->n++;
        s = *e ? e + 1 : e;
    }
}

/* union-find over (stage, symbol) variables; each class may carry a literal */
struct uf {
    int n, cap;
    int *parent, *stage;
    char (*sym)[16];
    int64_t *value; /* -1 = unbound */
};

static int uf_var(struct uf *u, int stage, const char *sym)
{
    for (int i = 0; i < u->n; i++)
        if (u->stage[i] == stage && !strcmp(u->sym[i], sym))
            return i;
    if (u->n == u->cap) {
        int cap = u->cap ? 2 * u->cap : 32;
        int *p = realloc(u->parent, (size_t)cap * sizeof *p);
        if (p) u->parent = p;
        int *s = realloc(u->stage, (size_t)cap * sizeof *s);
        if (s) u->stage = s;
        char(*y)[16] = realloc(u->sym, (size_t)cap * sizeof *y);
        if (y) u->sym = y;
        int64_t *v = realloc(u->value, (size_t)cap * sizeof *v);
        if (v) u->value = v;
        if (!p || !s || !y || !v)
            return -1;
        u->cap = cap;
    }
    int i = u->n++;
    u->parent[i] = i;
    u->stage[i] = stage;
    snprintf(u->sym[i], sizeof u->sym[i], "%s", sym);
    u->value[i] = -1;
    return i;
}

static int uf_find(struct uf *u, int i)
{
    while (u->parent[i] != i)
        i = u->parent[i] = u->parent[u->parent[i]];
    return i;
}

static void uf_free(struct uf *u)
{
    free(u->parent);
    free(u->stage);
    free(u->sym);
    free(u->value);
}

struct checker {
    struct omni__pipeline_spec *spec;
    struct omni_error *err;
    struct uf uf;
};

#define AT(loc) c->spec->file, (loc).line, (loc).col

static const struct omni_port_desc tokens_port = {"tokens", OMNI_PORT_OUT, OMNI_DTYPE_BIT(OMNI_DTYPE_I32), "B,N", 0, "loop tokens"};

/* Resolve an endpoint. dir is the direction the port must have. */
static int resolve(struct checker *c, struct omni__endpoint *ep, int dir, int allow_tokens,
                   const struct omni_port_desc **port)
{
    struct omni__pipeline_spec *spec = c->spec;
    if (!strcmp(ep->stage, "loop")) {
        if (!allow_tokens || strcmp(ep->port, "tokens"))
            return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: 'loop.%s' can only be used as 'loop.tokens', as the source of an after: edge or an output",
                                  AT(ep->loc), ep->port);
        if (!spec->has_loop)
            return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: loop.tokens used but the pipeline has no loop:", AT(ep->loc));
        ep->stage_idx = -1;
        ep->port_idx = 0;
        *port = &tokens_port;
        return OMNI_OK;
    }
    int si = omni__spec_stage_index(spec, ep->stage);
    if (si < 0) {
        char names[512] = "";
        size_t used = 0;
        for (int i = 0; i < spec->n_stages; i++)
            used += (size_t)snprintf(names + used, used < sizeof names ? sizeof names - used : 0, "%s%s",
                                     i ? ", " : "", spec->stages[i].name);
        return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: no stage '%s' (stages: %s)", AT(ep->loc),
                              ep->stage, names);
    }
    const struct omni_plugin_desc *d = spec->stages[si].plugin->desc;
    int pi = omni__plugin_port_index(d, dir, ep->port);
    if (pi < 0) {
        int other = omni__plugin_port_index(d, !dir, ep->port);
        if (other >= 0)
            return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: '%s.%s' is an %s port; it cannot be used as an %s here",
                                  AT(ep->loc), ep->stage, ep->port, dir == OMNI_PORT_IN ? "output" : "input",
                                  dir == OMNI_PORT_IN ? "input" : "output");
        char names[512] = "";
        size_t used = 0;
        for (uint32_t i = 0; i < d->n_ports; i++)
            if ((int)d->ports[i].dir == dir)
                used += (size_t)snprintf(names + used, used < sizeof names ? sizeof names - used : 0, "%s%s",
                                         used ? ", " : "", d->ports[i].name);
        return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s' (%s) has no %s port '%s' (%s ports: %s)",
                              AT(ep->loc), ep->stage, d->name, dir == OMNI_PORT_IN ? "input" : "output", ep->port,
                              dir == OMNI_PORT_IN ? "input" : "output", names[0] ? names : "none");
    }
    ep->stage_idx = si;
    ep->port_idx = pi;
    *port = omni__plugin_port(d, dir, pi);
    return OMNI_OK;
}

static int check_edge(struct checker *c, struct omni__edge *e, int allow_tokens)
{
    const struct omni_port_desc *from, *to;
    int rc = resolve(c, &e->from, OMNI_PORT_OUT, allow_tokens, &from);
    if (!rc)
        rc = resolve(c, &e->to, OMNI_PORT_IN, 0, &to);
    if (rc)
        return rc;
    if (from->dtypes && to->dtypes && !(from->dtypes & to->dtypes)) {
        char a[64], b[64];
        return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: %s.%s -> %s.%s: dtype mismatch: the output is %s, the input takes %s",
                              AT(e->loc), e->from.stage, e->from.port, e->to.stage, e->to.port,
                              omni_dtype_mask_str(from->dtypes, a, sizeof a), omni_dtype_mask_str(to->dtypes, b, sizeof b));
    }
    struct dims df, dt;
    parse_dims(from->dims, &df);
    parse_dims(to->dims, &dt);
    if (df.any || dt.any)
        return OMNI_OK;
    if (df.n != dt.n)
        return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: %s.%s -> %s.%s: rank mismatch: the output is [%s] (rank %d), the input takes [%s] (rank %d)",
                              AT(e->loc), e->from.stage, e->from.port, e->to.stage, e->to.port, from->dims,
                              df.n, to->dims, dt.n);
    for (int i = 0; i < df.n; i++) {
        int vf = -1, vt = -1;
        int64_t lf = -1, lt = -1;
        if (df.sym[i][0] == '?' || dt.sym[i][0] == '?')
            continue;
        if (df.sym[i][0])
            vf = uf_var(&c->uf, e->from.stage_idx, df.sym[i]);
        else
            lf = df.lit[i];
        if (dt.sym[i][0])
            vt = uf_var(&c->uf, e->to.stage_idx, dt.sym[i]);
        else
            lt = dt.lit[i];
        if ((df.sym[i][0] && vf < 0) || (dt.sym[i][0] && vt < 0))
            return omni_error_set(c->err, OMNI_ENOMEM, "out of memory");
        /* value of each side: literal or class value */
        if (vf >= 0)
            vf = uf_find(&c->uf, vf);
        if (vt >= 0)
            vt = uf_find(&c->uf, vt);
        int64_t valf = vf >= 0 ? c->uf.value[vf] : lf;
        int64_t valt = vt >= 0 ? c->uf.value[vt] : lt;
        if (valf >= 0 && valt >= 0 && valf != valt)
            return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: %s.%s -> %s.%s: dim %d mismatch: %lld (from [%s]) vs %lld (from [%s])",
                                  AT(e->loc), e->from.stage, e->from.port, e->to.stage, e->to.port, i,
                                  (long long)valf, from->dims, (long long)valt, to->dims);
        int64_t val = valf >= 0 ? valf : valt;
        if (vf >= 0 && vt >= 0 && vf != vt)
            c->uf.parent[vf] = vt;
        int root = vt >= 0 ? vt : vf;
        if (root >= 0)
            c->uf.value[uf_find(&c->uf, root)] = val;
    }
    return OMNI_OK;
}

static int in_phase(const int *set, int si) { return set[si]; }

/* Mark the stages of a phase and order them. */
static int order_phase(struct checker *c, int phase, struct omni__edge *edges, int n, int *member)
{
    struct omni__pipeline_spec *spec = c->spec;
    int ns = spec->n_stages;
    int *indeg = calloc((size_t)ns, sizeof *indeg);
    int *order = calloc((size_t)ns + 1, sizeof *order);
    if (!indeg || !order) {
        free(indeg);
        free(order);
        return omni_error_set(c->err, OMNI_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        struct omni__edge *e = &edges[i];
        if (e->from.stage_idx >= 0 && e->from.stage_idx != e->to.stage_idx)
            indeg[e->to.stage_idx]++;
        else if (e->from.stage_idx == e->to.stage_idx) {
            free(indeg);
            free(order);
            return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: edge from stage '%s' to itself (use loop feed: for values of the previous step)",
                                  AT(e->loc), e->from.stage);
        }
    }
    int k = 0;
    int progress = 1;
    int *done = calloc((size_t)ns, sizeof *done);
    if (!done) {
        free(indeg);
        free(order);
        return omni_error_set(c->err, OMNI_ENOMEM, "out of memory");
    }
    while (progress) {
        progress = 0;
        for (int s = 0; s < ns; s++) { /* file order among ready stages */
            if (!member[s] || done[s] || indeg[s])
                continue;
            done[s] = 1;
            order[k++] = s;
            progress = 1;
            for (int i = 0; i < n; i++)
                if (edges[i].from.stage_idx == s && edges[i].to.stage_idx != s)
                    indeg[edges[i].to.stage_idx]--;
        }
    }
    int total = 0;
    for (int s = 0; s < ns; s++)
        total += member[s];
    int rc = OMNI_OK;
    if (k != total) {
        for (int i = 0; i < n; i++)
            if (!done[edges[i].to.stage_idx]) {
                rc = omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: the %s edges form a cycle through stage '%s' (use loop feed: to pass values to the next step)",
                                    AT(edges[i].loc), phase == OMNI__PHASE_PREFILL ? "prefill" : phase == OMNI__PHASE_LOOP ? "loop" : "after",
                                    edges[i].to.stage);
                break;
            }
    }
    free(indeg);
    free(done);
    if (rc) {
        free(order);
        return rc;
    }
    spec->order[phase] = order;
    spec->n_order[phase] = k;
    return OMNI_OK;
}

/* Every required input of every member stage is fed exactly once in the phase. */
static int check_inputs(struct checker *c, int phase, int *member)
{
    struct omni__pipeline_spec *spec = c->spec;
    static const char *names[] = {"prefill", "loop", "after"};
    for (int s = 0; s < spec->n_stages; s++) {
        if (!member[s])
            continue;
        const struct omni_plugin_desc *d = spec->stages[s].plugin->desc;
        int nin = omni__plugin_port_count(d, OMNI_PORT_IN);
        for (int p = 0; p < nin; p++) {
            const struct omni_port_desc *pd = omni__plugin_port(d, OMNI_PORT_IN, p);
            int count = 0;
            struct omni__loc where = spec->stages[s].loc;
            for (int i = 0; i < spec->n_edges[phase]; i++) {
                struct omni__edge *e = &spec->edges[phase][i];
                if (e->to.stage_idx == s && e->to.port_idx == p) {
                    count++;
                    where = e->loc;
                }
            }
            if (phase == OMNI__PHASE_PREFILL)
                for (int i = 0; i < spec->n_inputs; i++)
                    if (spec->inputs[i].ep.stage_idx == s && spec->inputs[i].ep.port_idx == p) {
                        count++;
                        where = spec->inputs[i].ep.loc;
                    }
            if (phase == OMNI__PHASE_LOOP)
                for (int i = 0; i < spec->n_feed; i++)
                    if (spec->feed[i].to.stage_idx == s && spec->feed[i].to.port_idx == p) {
                        count++;
                        where = spec->feed[i].loc;
                    }
            if (count > 1)
                return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: input %s.%s is fed %d times in the %s phase",
                                      AT(where), spec->stages[s].name, pd->name, count, names[phase]);
            if (!count && !(pd->flags & OMNI_PORT_OPTIONAL))
                return omni_error_set(c->err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s' runs in the %s phase but its required input '%s' is not connected there",
                                      AT(spec->stages[s].loc), spec->stages[s].name, names[phase], pd->name);
        }
    }
    return OMNI_OK;
}

int omni__pipeline_check(struct omni__pipeline_spec *spec, struct omni_error *err)
{
    struct checker cc = {.spec = spec, .err = err}, *c = &cc;
    int rc = OMNI_OK;
    int ns = spec->n_stages;
    int *member[OMNI__NPHASES] = {0};
    /* plugins and devices */
    for (int i = 0; i < ns; i++) {
        struct omni__stage_spec *st = &spec->stages[i];
        struct omni_error local;
        omni_error_clear(&local);
        if (st->plugin_file)
            rc = omni__plugin_open_file(st->plugin_file, &st->plugin, &local);
        else
            rc = omni__plugin_find(st->type, (const char *const *)spec->plugin_dirs, spec->n_plugin_dirs, &st->plugin, &local);
        if (rc)
            return omni_error_set(err, rc, "%s:%d:%d: stage '%s': %s", AT(st->loc), st->name, local.msg);
        if (st->plugin_file && strcmp(st->plugin->desc->name, st->type))
            return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s': plugin file %s provides '%s', not '%s'",
                                  AT(st->loc), st->name, st->plugin_file, st->plugin->desc->name, st->type);
        const struct omni_plugin_desc *d = st->plugin->desc;
        if (d->devices && !(d->devices & OMNI_DEVICE_BIT(st->device.type)) && !st->device_explicit &&
            (d->devices & OMNI_DEVICE_BIT(OMNI_DEVICE_CPU))) {
            /* the pipeline's (or --device's) default: host-only stages (tokenizers, image I/O) stay on the CPU */
            OMNI_LOG(OMNI_LOG_DEBUG, "stage '%s' (%s) runs on the CPU: the plugin has no other device", st->name, d->name);
            st->device = OMNI_CPU;
        }
        if (d->devices && !(d->devices & OMNI_DEVICE_BIT(st->device.type))) {
            char ds[16];
            return omni_error_set(err, OMNI_EDEVICE, "%s:%d:%d: stage '%s': plugin '%s' cannot run on %s",
                                  AT(st->loc), st->name, d->name, omni_device_str(st->device, ds, sizeof ds));
        }
        if (st->device.type == OMNI_DEVICE_CUDA && st->device.index >= omni_cuda_device_count() && omni_cuda_device_count() >= 0) {
            /* checked again at load; validation on a machine without GPUs must still pass */
        }
        if (st->attach) {
            const char *dot = strchr(st->attach, '.');
            if (!d->adapter)
                return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s' (%s) has attach: but is not an adapter plugin",
                                      AT(st->loc), st->name, d->name);
            if (!dot)
                return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s': attach: '%s' must be stage.linear (e.g. backbone.in_proj)",
                                      AT(st->loc), st->name, st->attach);
        } else if (d->adapter) {
            return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s' (%s) is an adapter: give it attach: stage.linear",
                                  AT(st->loc), st->name, d->name);
        }
    }
    for (int i = 0; i < ns; i++) { /* adapter targets (needs every plugin resolved) */
        struct omni__stage_spec *st = &spec->stages[i];
        if (!st->attach)
            continue;
        const char *dot = strchr(st->attach, '.');
        char target[128];
        snprintf(target, sizeof target, "%.*s", (int)(dot - st->attach), st->attach);
        int ti = omni__spec_stage_index(spec, target);
        if (ti < 0)
            return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s': attach target stage '%s' does not exist",
                                  AT(st->loc), st->name, target);
        const struct omni_stage_ops *o = spec->stages[ti].plugin->desc->ops;
        if (!OMNI__HAS_OP(o, attach))
            return omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: stage '%s': target '%s' (%s) accepts no adapters",
                                  AT(st->loc), st->name, target, spec->stages[ti].plugin->desc->name);
    }
    for (int p = 0; p < OMNI__NPHASES; p++) {
        member[p] = calloc((size_t)ns + 1, sizeof *member[p]);
        if (!member[p]) {
            rc = omni_error_set(err, OMNI_ENOMEM, "out of memory");
            goto out;
        }
    }
    /* edges of every phase */
    for (int p = 0; p < OMNI__NPHASES; p++)
        for (int i = 0; i < spec->n_edges[p]; i++) {
            if ((rc = check_edge(c, &spec->edges[p][i], p == OMNI__PHASE_AFTER)))
                goto out;
            struct omni__edge *e = &spec->edges[p][i];
            if (e->from.stage_idx >= 0)
                member[p][e->from.stage_idx] = 1;
            member[p][e->to.stage_idx] = 1;
        }
    for (int i = 0; i < spec->n_feed; i++) {
        if ((rc = check_edge(c, &spec->feed[i], 0)))
            goto out;
        member[OMNI__PHASE_LOOP][spec->feed[i].to.stage_idx] = 1;
        if (!member[OMNI__PHASE_LOOP][spec->feed[i].from.stage_idx]) {
            rc = omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: feed source '%s' does not run in the loop (connect it in loop edges:)",
                                AT(spec->feed[i].loc), spec->feed[i].from.stage);
            goto out;
        }
        if (!member[OMNI__PHASE_PREFILL][spec->feed[i].from.stage_idx]) {
            rc = omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: feed source '%s' must also run in the prefill phase (it supplies the first value)",
                                AT(spec->feed[i].loc), spec->feed[i].from.stage);
            goto out;
        }
    }
    for (int i = 0; i < spec->n_inputs; i++) {
        const struct omni_port_desc *pd;
        if ((rc = resolve(c, &spec->inputs[i].ep, OMNI_PORT_IN, 0, &pd)))
            goto out;
        member[OMNI__PHASE_PREFILL][spec->inputs[i].ep.stage_idx] = 1;
    }
    for (int i = 0; i < spec->n_outputs; i++) {
        const struct omni_port_desc *pd;
        if ((rc = resolve(c, &spec->outputs[i].ep, OMNI_PORT_OUT, 1, &pd)))
            goto out;
        int si = spec->outputs[i].ep.stage_idx;
        if (si >= 0 && !member[0][si] && !member[1][si] && !member[2][si]) {
            rc = omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: output '%s' comes from stage '%s', which runs in no phase",
                                AT(spec->outputs[i].ep.loc), spec->outputs[i].name, spec->outputs[i].ep.stage);
            goto out;
        }
    }
    if (spec->has_loop) {
        const struct omni_port_desc *pd;
        if ((rc = resolve(c, &spec->loop_tokens, OMNI_PORT_OUT, 0, &pd)))
            goto out;
        if (pd->dtypes && !(pd->dtypes & OMNI_DTYPE_BIT(OMNI_DTYPE_I32))) {
            rc = omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: loop.tokens '%s.%s' must produce i32 tokens",
                                AT(spec->loop_tokens.loc), spec->loop_tokens.stage, spec->loop_tokens.port);
            goto out;
        }
        int si = spec->loop_tokens.stage_idx;
        if (!member[OMNI__PHASE_LOOP][si] || !member[OMNI__PHASE_PREFILL][si]) {
            rc = omni_error_set(err, OMNI_EPIPELINE, "%s:%d:%d: loop.tokens '%s' must run in both the prefill and the loop",
                                AT(spec->loop_tokens.loc), spec->loop_tokens.stage);
            goto out;
        }
    } else if (spec->n_edges[OMNI__PHASE_AFTER]) {
        /* after without a loop is allowed (a plain post-processing phase) */
    }
    for (int i = 0; i < ns; i++) {
        int any = member[0][i] || member[1][i] || member[2][i];
        if (!any && !spec->stages[i].attach)
            OMNI_LOG(OMNI_LOG_WARN, "%s:%d:%d: stage '%s' is not connected to anything", AT(spec->stages[i].loc),
                     spec->stages[i].name);
    }
    for (int p = 0; p < OMNI__NPHASES; p++) {
        if ((rc = check_inputs(c, p, member[p])))
            goto out;
        if ((rc = order_phase(c, p, spec->edges[p], spec->n_edges[p], member[p])))
            goto out;
    }
    (void)in_phase;
out:
    for (int p = 0; p < OMNI__NPHASES; p++)
        free(member[p]);
    uf_free(&c->uf);
    return rc;
}
