/* plugins/mamba2/mamba2.h - what mamba2.c (create, load, attach, states,
 * descriptor) and forward.c (the forward pass and the decode step) share.
 * Internal to the plugin. */
#ifndef OMNI_PLUGIN_MAMBA2_H
#define OMNI_PLUGIN_MAMBA2_H

#include <stddef.h>
#include <stdint.h>

#include "omni/plugin.h"

#define M2_MAX_ADAPTERS 16
#define M2_KEY_MAX 512

enum { PORT_IDS = 0, PORT_EMBEDS = 1 };      /* inputs */
enum { PORT_HIDDEN = 0 };                     /* outputs */

struct m2_layer {
    struct omni_tensor norm_w;   /* (D) f32 */
    struct omni_tensor in_proj;  /* (F, D) stage dtype */
    struct omni_tensor conv_w;   /* (Cd, K) f32 */
    struct omni_tensor conv_b;   /* (Cd) f32 */
    struct omni_tensor dt_bias;  /* (H) f32 */
    struct omni_tensor A;        /* (H) f32, -exp(A_log) */
    struct omni_tensor Dskip;    /* (H) f32 */
    struct omni_tensor gnorm_w;  /* (E) f32 */
    struct omni_tensor out_proj; /* (D, E) stage dtype */
};

/* Hyper-parameters; -1 = not given in params (inferred from the weights). */
struct m2_dims {
    int64_t d_model, n_layer, d_inner, nheads, headdim, d_state, ngroups, d_conv, expand, vocab;
};

struct m2_stage {
    struct omni_stage base;
    struct m2_dims given; /* from params */
    struct m2_dims dim;   /* effective, after load */
    int64_t d_in_proj, conv_dim;
    int64_t chunk;
    double eps;
    int all_positions;
    int load_embedding; /* param embedding (default true): load embedding.weight when present */
    int sdtype;         /* param state_dtype: storage of the SSM state (f32, f16, bf16) */
    int wdtype;
    int loaded;
    char *name;
    char *prefix; /* the weights prefix, for messages */
    struct omni_tensor embedding; /* (V, D) stage dtype; .buf NULL when absent */
    struct omni_tensor norm_f;    /* (D) f32 */
    struct m2_layer *layers;
    struct omni_stage *adapters[M2_MAX_ADAPTERS];
    int n_adapters;
};

/* Scratch buffers: one per activation, capacity in rows. */
enum { SC_RESID, SC_NORMED, SC_ZXBCDT, SC_XBC, SC_Y, SC_YN, SC_MIX, SC_RES2, SC_PART, SC_U,
       SC_COUNT };

struct m2_state {
    int64_t batch; /* 0 until known */
    struct omni_tensor conv; /* (L, B, Cd, K) f32 */
    struct omni_tensor ssm;  /* (L, B, H, P, N) in the stage's state_dtype */
    struct omni_tensor ssm32; /* (B, H, P, N) f32: one layer's state while a 16-bit state is
                               * scanned or stepped op by op; unallocated for an f32 state */
    int dirty;               /* states hold something other than zeros */
    int parked;              /* conv/ssm/ssm32 handed their memory back (m2_state_park) */
    int64_t cap_rows;
    struct omni_buffer *scratch[SC_COUNT];
    int64_t out_cap;         /* elements of out */
    struct omni_buffer *out; /* the hidden output (returned by reference) */
};

/* ---- shared by mamba2.c and forward.c ---------------------------------------------------- */

void m2_view(struct omni_tensor *v, const struct omni_tensor *base, int64_t elem_off,
                    int ndim, const int64_t *shape, const int64_t *strides);
void m2_buf_view(struct omni_tensor *v, struct omni_buffer *buf, struct omni_device dev,
                        int ndim, const int64_t *shape);
int m2_state_alloc(struct m2_stage *s, struct m2_state *x, int64_t B,
                          struct omni_error *err);
/* A parked state takes its memory again (at the same addresses) for a prefill from
 * position 0; OMNI_ESTATE for any other call. */
int m2_state_unpark(struct m2_stage *s, struct m2_state *x, int from_zero,
                    struct omni_error *err);
int m2_state_zero(struct m2_stage *s, struct m2_state *x, struct omni_error *err);
int m2_scratch(struct m2_stage *s, struct m2_state *x, int64_t rows, int64_t out_elems,
                      struct omni_error *err);
int m2_active_adapters(struct m2_stage *s, const struct omni_run_ctx *ctx, int is_step,
                              struct omni_stage **act, int *n_act, struct omni_error *err);
int m2_forward(struct omni_stage *st, void *state, struct omni_io *io,
                      struct omni_error *err);
int m2_step(struct omni_stage *st, void *state, struct omni_io *io, struct omni_error *err);

#endif
