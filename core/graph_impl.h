/* core/graph_impl.h - the executor's CUDA pieces: graph capture and replay of
 * a run of loop stages, device counters, on-device token collection.
 * Built without CUDA every function reports OMNI_EDEVICE. Internal. */
#ifndef OMNI_GRAPH_IMPL_H
#define OMNI_GRAPH_IMPL_H

#include <stdint.h>

#include "omni/status.h"
#include "omni/tensor.h"

/* Start capturing the work that ops on dev queue from this thread (they use
 * the stream omni_cuda_set_stream sets). */
int omni__graph_begin(struct omni_device dev, void **capture_stream, struct omni_error *err);
/* End the capture; *exec is the instantiated graph (NULL and an error when
 * the capture failed). Restores the device's own stream. */
int omni__graph_end(struct omni_device dev, void *capture_stream, void **exec, struct omni_error *err);
/* omni__graph_end that first tries to update `cached` (an executable graph of
 * an earlier request with the same topology) in place: on success *exec =
 * cached and *updated = 1 (no instantiation); otherwise a new graph is
 * instantiated (*updated = 0) and cached is left alone. */
int omni__graph_end_update(struct omni_device dev, void *capture_stream, void *cached, void **exec,
                           int *updated, struct omni_error *err);
/* Give up a capture after a failed stage call (nothing ran). */
void omni__graph_abort(struct omni_device dev, void *capture_stream);
/* Replay on dev's current stream; no host wait. */
int omni__graph_launch(struct omni_device dev, void *exec, struct omni_error *err);
void omni__graph_free(void *exec);
/* dst[0] = a, dst[1] = b (int64 on dev), queued on dev's current stream from
 * pinned host memory (ordered before what follows). A source slot is reused only
 * after its earlier copy ran: the host waits when it is 64 calls ahead. */
int omni__graph_set_i64x2(struct omni_device dev, int64_t *dst, int64_t a, int64_t b,
                          struct omni_error *err);
/* Wait until dev's current stream has run everything queued on it. */
int omni__graph_sync(struct omni_device dev, struct omni_error *err);
/* Copy a [B] column of 4-byte values (src, row stride src_ld elements) into
 * column col of dst [B, ld] on dev's current stream, no host wait. */
int omni__graph_copy_column(struct omni_device dev, void *dst, int64_t ld, int64_t col,
                            const void *src, int64_t src_ld, int64_t rows, struct omni_error *err);

/* Lagged stop checks: the token column of step t is copied into a pinned
 * host slot (t % slots) with an event, so the host can read step t - lag
 * while later steps are still queued. lag_read waits for that step only.
 * A slot is reused `slots` pushes later: read index t before pushing t+slots. */
struct omni__lag;
int omni__lag_new(struct omni_device dev, int slots, int64_t rows, struct omni__lag **out,
                  struct omni_error *err);
int omni__lag_push(struct omni__lag *l, int64_t index, const void *src, int64_t src_ld,
                   struct omni_error *err);
int omni__lag_read(struct omni__lag *l, int64_t index, const int32_t **host, struct omni_error *err);
void omni__lag_free(struct omni__lag *l);

#endif
