/* Logging through an installed sink; silent by default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "omni/log.h"

static omni_log_sink_fn sink_fn;
static void *sink_user;
static int log_level = -1; /* -1: not yet read from OMNI_LOG */

int omni_log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    if (!s || !*s)
        return -1;
    for (int i = 0; i < 5; i++)
        if (!strcasecmp(s, names[i]))
            return i;
    if (!strcasecmp(s, "warning"))
        return OMNI_LOG_WARN;
    if (s[0] >= '0' && s[0] <= '4' && s[1] == '\0')
        return s[0] - '0';
    return -1;
}

int omni_log_get_level(void)
{
    if (log_level < 0) {
        int l = omni_log_level_parse(getenv("OMNI_LOG"));
        log_level = l < 0 ? OMNI_LOG_WARN : l;
    }
    return log_level;
}

void omni_log_set_level(int level) { log_level = level; }

void omni_log_set_sink(omni_log_sink_fn fn, void *user)
{
    sink_fn = fn;
    sink_user = user;
}

void omni_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    if (!sink_fn || level > omni_log_get_level())
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sink_fn(level, file, line, msg, sink_user);
}

void omni_log_stderr_sink(int level, const char *file, int line, const char *msg, void *user)
{
    static const char *names[] = {"error", "warning", "info", "debug", "trace"};
    (void)user;
    if (level >= OMNI_LOG_DEBUG)
        fprintf(stderr, "omni: %s: %s (%s:%d)\n", names[level], msg, file, line);
    else
        fprintf(stderr, "omni: %s: %s\n", names[level < 0 ? 0 : level > 4 ? 4 : level], msg);
}
