/* POSIX shared-memory segments for host tensors that cross processes.
 *
 * Names are /omni.<pid>.<request>.<counter>: unique per creating process,
 * request and segment, so that a peer can clean up after a process it saw
 * die (omni__shm_unlink_pid) and tests can look for leftovers in /dev/shm.
 * Segments are created 0600 and refused when owned by another user. Every
 * mapping is an omni buffer of kind OMNI_BUFFER_SHM; a registry remembers
 * which segment a mapping belongs to, so that a tensor already in shared
 * memory crosses again by name instead of by copy (while its request lasts). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc/ipc_impl.h"

struct shm_map {
    void *base;
    size_t size;
    char name[OMNI_IPC_SHM_NAME_MAX];
    uint64_t request;
    int linked;
    struct shm_map *next;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shm_map *reg_head;
static atomic_uint_fast64_t seg_counter;

static void reg_add(struct shm_map *m)
{
    pthread_mutex_lock(&reg_mu);
    m->next = reg_head;
    reg_head = m;
    pthread_mutex_unlock(&reg_mu);
}

static void unmap_fn(void *user)
{
    struct shm_map *m = user;
    pthread_mutex_lock(&reg_mu);
    for (struct shm_map **pp = &reg_head; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    munmap(m->base, m->size ? m->size : 1);
    free(m);
}

static struct omni_buffer *wrap(void *base, size_t size, const char *name, uint64_t request,
                                struct omni_error *err)
{
    struct shm_map *m = calloc(1, sizeof *m);
    if (!m) {
        munmap(base, size ? size : 1);
        omni_error_set(err, OMNI_ENOMEM, "out of memory");
        return NULL;
    }
    m->base = base;
    m->size = size;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->request = request;
    m->linked = 1;
    struct omni_buffer *b = omni_buffer_wrap(OMNI_CPU, base, size, OMNI_BUFFER_SHM, unmap_fn, m, err);
    if (!b) {
        munmap(base, size ? size : 1);
        free(m);
        return NULL;
    }
    reg_add(m);
    return b;
}

int omni__shm_create(uint64_t request, size_t size, char name[OMNI_IPC_SHM_NAME_MAX],
                     struct omni_buffer **buf, struct omni_error *err)
{
    *buf = NULL;
    unsigned long long n = (unsigned long long)atomic_fetch_add(&seg_counter, 1);
    snprintf(name, OMNI_IPC_SHM_NAME_MAX, "/omni.%ld.%llu.%llu", (long)getpid(), (unsigned long long)request, n);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return omni_error_set(err, errno == ENOSPC || errno == ENOMEM ? OMNI_ENOMEM : OMNI_EIO,
                              "shm_open(%s): %s", name, strerror(errno));
    size_t map = size ? size : 1;
    if (ftruncate(fd, (off_t)map)) {
        int e = errno;
        close(fd);
        shm_unlink(name);
        return omni_error_set(err, OMNI_ENOMEM, "shared memory segment %s of %zu bytes: %s", name, size, strerror(e));
    }
    void *base = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (base == MAP_FAILED) {
        shm_unlink(name);
        return omni_error_set(err, OMNI_ENOMEM, "mmap of segment %s (%zu bytes): %s", name, size, strerror(e));
    }
    *buf = wrap(base, map, name, request, err);
    if (!*buf) {
        shm_unlink(name);
        return err ? err->status : OMNI_ENOMEM;
    }
    return OMNI_OK;
}

int omni__shm_map(const char *name, uint64_t size, uint64_t request, struct omni_buffer **buf,
                  struct omni_error *err)
{
    *buf = NULL;
    if (!omni__ipc_shm_name_ok(name))
        return omni_error_set(err, OMNI_EPROTO, "'%.80s' is not an omni segment name", name);
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return omni_error_set(err, errno == ENOENT ? OMNI_ENOTFOUND : OMNI_EIO,
                              "shared memory segment %s: %s", name,
                              errno == ENOENT ? "does not exist" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return omni_error_set(err, OMNI_EIO, "fstat of segment %s: %s", name, strerror(e));
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return omni_error_set(err, OMNI_EREFUSED, "shared memory segment %s belongs to uid %ld, not to this user",
                              name, (long)st.st_uid);
    }
    uint64_t expect = size ? size : 1;
    if ((uint64_t)st.st_size != expect) {
        close(fd);
        return omni_error_set(err, OMNI_EPROTO, "shared memory segment %s has %lld bytes, the reference says %llu",
                              name, (long long)st.st_size, (unsigned long long)expect);
    }
    void *base = mmap(NULL, (size_t)expect, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (base == MAP_FAILED)
        return omni_error_set(err, OMNI_ENOMEM, "mmap of segment %s (%llu bytes): %s", name,
                              (unsigned long long)expect, strerror(e));
    *buf = wrap(base, (size_t)expect, name, request, err);
    return *buf ? OMNI_OK : (err ? err->status : OMNI_ENOMEM);
}

const char *omni__shm_name_of(const struct omni_buffer *buf, uint64_t request, char *name, size_t size)
{
    if (omni_buffer_kind(buf) != OMNI_BUFFER_SHM)
        return NULL;
    const char *found = NULL;
    void *base = omni_buffer_data(buf);
    pthread_mutex_lock(&reg_mu);
    for (struct shm_map *m = reg_head; m; m = m->next)
        if (m->base == base && m->linked && m->request == request) {
            snprintf(name, size, "%s", m->name);
            found = name;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    return found;
}

void omni__shm_unlink(const char *name)
{
    pthread_mutex_lock(&reg_mu);
    for (struct shm_map *m = reg_head; m; m = m->next)
        if (!strcmp(m->name, name))
            m->linked = 0;
    pthread_mutex_unlock(&reg_mu);
    shm_unlink(name);
}

static int scan_pid(pid_t pid, int do_unlink)
{
    char prefix[40];
    snprintf(prefix, sizeof prefix, "omni.%ld.", (long)pid);
    size_t pl = strlen(prefix);
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, pl))
            continue;
        n++;
        if (do_unlink) {
            char name[OMNI_IPC_SHM_NAME_MAX + 2];
            snprintf(name, sizeof name, "/%s", de->d_name);
            if (omni__ipc_shm_name_ok(name))
                omni__shm_unlink(name);
        }
    }
    closedir(d);
    return n;
}

int omni__shm_unlink_pid(pid_t pid) { return pid > 0 ? scan_pid(pid, 1) : 0; }
int omni__shm_count_pid(pid_t pid) { return pid > 0 ? scan_pid(pid, 0) : 0; }
