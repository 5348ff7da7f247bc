/* omni/log.h - logging through an application-installed sink.
 *
 * The library never writes to stderr by itself. Messages go to the sink set
 * with omni_log_set_sink(); with no sink they are dropped. The CLI installs a
 * stderr sink. The threshold comes from omni_log_set_level() or, at first use,
 * the OMNI_LOG environment variable (error, warn, info, debug, trace).
 */
#ifndef OMNI_LOG_H
#define OMNI_LOG_H

#include "omni/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum omni_log_level {
    OMNI_LOG_ERROR = 0,
    OMNI_LOG_WARN = 1,
    OMNI_LOG_INFO = 2,
    OMNI_LOG_DEBUG = 3,
    OMNI_LOG_TRACE = 4,
};

typedef void (*omni_log_sink_fn)(int level, const char *file, int line, const char *msg,
                                 void *user);

OMNI_API void omni_log_set_sink(omni_log_sink_fn fn, void *user);
OMNI_API void omni_log_set_level(int level);
OMNI_API int omni_log_get_level(void);
/* Parse "warn", "info", "3", ...; returns -1 when unknown. */
OMNI_API int omni_log_level_parse(const char *s);
OMNI_API void omni_log_write(int level, const char *file, int line, const char *fmt, ...)
    OMNI_PRINTF(4, 5);
/* A ready-made sink that writes "omni: warn: msg" lines to stderr (for programs). */
OMNI_API void omni_log_stderr_sink(int level, const char *file, int line, const char *msg,
                                   void *user);

#define OMNI_LOG(level, ...)                                                 \
    do {                                                                     \
        if ((level) <= omni_log_get_level())                                 \
            omni_log_write((level), __FILE__, __LINE__, __VA_ARGS__);        \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
