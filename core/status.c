/* Status strings and the error record. */
#include <stdio.h>
#include <string.h>

#include "omni/status.h"

const char *omni_status_str(int status)
{
    switch (status) {
#define OMNI__STATUS_STR(name, value, desc) case value: return desc;
        OMNI_STATUS_MAP(OMNI__STATUS_STR)
#undef OMNI__STATUS_STR
    }
    return "unknown status";
}

const char *omni_status_name(int status)
{
    switch (status) {
#define OMNI__STATUS_NAME(name, value, desc) case value: return "OMNI_" #name;
        OMNI_STATUS_MAP(OMNI__STATUS_NAME)
#undef OMNI__STATUS_NAME
    }
    return "OMNI_UNKNOWN";
}

void omni_error_clear(struct omni_error *err)
{
    if (err) {
        err->status = OMNI_OK;
        err->msg[0] = '\0';
    }
}

int omni_error_setv(struct omni_error *err, int status, const char *fmt, va_list ap)
{
    if (err) {
        err->status = status;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return status;
}

int omni_error_set(struct omni_error *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    omni_error_setv(err, status, fmt, ap);
    va_end(ap);
    return status;
}

int omni_error_prefix(struct omni_error *err, const char *fmt, ...)
{
    if (!err)
        return OMNI_EINTERNAL;
    char head[OMNI_ERROR_MAX], old[OMNI_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t hl = strnlen(head, sizeof head - 1);
    memcpy(err->msg, head, hl);
    size_t room = sizeof err->msg - 1 - hl;
    size_t ol = strnlen(old, room);
    memcpy(err->msg + hl, old, ol);
    err->msg[hl + ol] = '\0';
    if (err->status == OMNI_OK)
        err->status = OMNI_EINTERNAL;
    return err->status;
}
