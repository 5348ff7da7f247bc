/* CURVE key files for tcp:// endpoints: one Z85 key (40 characters) on the
 * first line. `omni worker --keygen NAME` writes NAME.key (secret, 0600) and
 * NAME.pub; a worker is given its .key and a file of allowed client .pub
 * keys; a coordinator is given the worker's .pub and its own .key. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/ipc_impl.h"

int omni__ipc_read_key(const char *path, char key[41], struct omni_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return omni_error_set(err, OMNI_EIO, "CURVE key file %s: %s", path, strerror(errno));
    char line[256] = "";
    char *ok = fgets(line, sizeof line, f);
    fclose(f);
    line[strcspn(line, "\r\n \t")] = '\0';
    uint8_t bin[32];
    if (!ok || strlen(line) != 40 || !zmq_z85_decode(bin, line))
        return omni_error_set(err, OMNI_EFORMAT, "CURVE key file %s: the first line must be a 40-character Z85 key",
                              path);
    memcpy(key, line, 41);
    return OMNI_OK;
}

static int write_key(const char *path, const char *key, mode_t mode, struct omni_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return omni_error_set(err, OMNI_EIO, "%s: %s", path, strerror(errno));
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", key);
    int rc = write(fd, line, (size_t)n) == n ? OMNI_OK : omni_error_set(err, OMNI_EIO, "%s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int omni__ipc_keygen(const char *prefix, struct omni_error *err)
{
    if (!zmq_has("curve"))
        return omni_error_set(err, OMNI_EUNSUPPORTED, "this libzmq has no CURVE support");
    char pub[41], sec[41], path[4096];
    if (zmq_curve_keypair(pub, sec))
        return omni_error_set(err, OMNI_EIO, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    snprintf(path, sizeof path, "%s.key", prefix);
    int rc = write_key(path, sec, 0600, err);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s.pub", prefix);
    return write_key(path, pub, 0644, err);
}
