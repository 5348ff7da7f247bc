/* core/ipc_knobs.h - the timing and size knobs of worker processes, one
 * table for the pipeline parser (the `ipc:` mapping of a pipeline file), the
 * coordinator and `omni worker --ipc KEY=VALUE`. Each knob's value comes from
 * its environment variable when that is set, else from the pipeline / the
 * worker's --ipc, else the default. Internal. */
#ifndef OMNI_IPC_KNOBS_H
#define OMNI_IPC_KNOBS_H

enum {
    OMNI__IPC_HEARTBEAT_MS,
    OMNI__IPC_DEAD_MS,
    OMNI__IPC_START_MS,
    OMNI__IPC_LOAD_MS,
    OMNI__IPC_CALL_MS,
    OMNI__IPC_MAX_MESSAGE,
    OMNI__IPC_INLINE,
    OMNI__IPC_NKNOBS
};

struct omni__ipc_knob {
    const char *key, *env;
    long def, lo, hi;
    const char *doc;
};

static const struct omni__ipc_knob omni__ipc_knobs[OMNI__IPC_NKNOBS] = {
    {"heartbeat_ms", "OMNI_IPC_HEARTBEAT_MS", 200, 5, 60000, "ping interval to each worker"},
    {"dead_ms", "OMNI_IPC_DEAD_MS", 1000, 20, 3600000,
     "a worker silent this long is dead (at least 2 heartbeats)"},
    {"start_ms", "OMNI_IPC_START_MS", 20000, 100, 3600000, "a worker's start-up"},
    {"load_ms", "OMNI_IPC_LOAD_MS", 600000, 100, 86400000, "loading a worker's stages"},
    {"call_ms", "OMNI_IPC_CALL_MS", 600000, 100, 86400000, "one stage call"},
    {"max_message", "OMNI_IPC_MAX_MESSAGE", 256L << 20, 4096, 1L << 40, "largest message, bytes"},
    {"inline", "OMNI_IPC_INLINE", 0, 0, 1, "1: tensors always as inline bytes"},
};

#endif
