/* Starting and reaping auto workers: a private runtime directory for their
 * ipc:// sockets, fork/exec of `omni worker`, a pidfd to notice a death at
 * once, and a registry of the pids this process started (tests and leak
 * checks ask it). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/ipc_impl.h"

#define REG_MAX 256

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t live[REG_MAX], started[REG_MAX];
static int n_live, n_started;

void omni__ipc_registry_add(pid_t pid)
{
    pthread_mutex_lock(&reg_mu);
    if (n_live < REG_MAX)
        live[n_live++] = pid;
    if (n_started < REG_MAX)
        started[n_started++] = pid;
    pthread_mutex_unlock(&reg_mu);
}

void omni__ipc_registry_remove(pid_t pid)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < n_live; i++)
        if (live[i] == pid) {
            live[i] = live[--n_live];
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

static int copy_pids(const pid_t *src, int n, pid_t *out, int max)
{
    int k = 0;
    for (int i = 0; i < n && k < max; i++)
        out[k++] = src[i];
    return k;
}

int omni__ipc_live_workers(pid_t *out, int max)
{
    pthread_mutex_lock(&reg_mu);
    int k = copy_pids(live, n_live, out, max);
    pthread_mutex_unlock(&reg_mu);
    return k;
}

int omni__ipc_started_workers(pid_t *out, int max)
{
    pthread_mutex_lock(&reg_mu);
    int k = copy_pids(started, n_started, out, max);
    pthread_mutex_unlock(&reg_mu);
    return k;
}

int omni__ipc_runtime_dir(char *out, size_t size, struct omni_error *err)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (xdg && xdg[0] == '/' && !stat(xdg, &st) && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
        !access(xdg, W_OK) && strlen(xdg) < 60)
        snprintf(out, size, "%s/omni-XXXXXX", xdg);
    else
        snprintf(out, size, "/tmp/omni-%ld-XXXXXX", (long)geteuid());
    if (!mkdtemp(out)) /* mode 0700 */
        return omni_error_set(err, OMNI_EIO, "cannot create a private runtime directory %s: %s", out, strerror(errno));
    return OMNI_OK;
}

static int executable(const char *p) { return p && p[0] && !access(p, X_OK); }

/* The omni executable: $OMNI_WORKER_EXE, this program when it is omni, the
 * bin/ beside the libomni.so in use, then PATH. */
static void find_exe(char *out, size_t size)
{
    const char *env = getenv("OMNI_WORKER_EXE");
    if (executable(env)) {
        snprintf(out, size, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        const char *base = strrchr(self, '/');
        if (base && !strcmp(base + 1, "omni")) {
            snprintf(out, size, "%s", self);
            return;
        }
    }
    Dl_info info;
    if (dladdr((void *)&omni__ipc_spawn, &info) && info.dli_fname) {
        char lib[PATH_MAX], cand[PATH_MAX + 16];
        if (realpath(info.dli_fname, lib)) {
            char *slash = strrchr(lib, '/');
            if (slash) {
                *slash = '\0';
                snprintf(cand, sizeof cand, "%s/../bin/omni", lib);
                if (executable(cand)) {
                    snprintf(out, size, "%s", cand);
                    return;
                }
            }
        }
    }
    snprintf(out, size, "omni");
}

int omni__ipc_spawn(const char *endpoint, const char *process, const long *ipc, pid_t *pid, int *pidfd,
                    struct omni_error *err)
{
    char exe[PATH_MAX + 16], parent[32], knob[OMNI__IPC_NKNOBS][64];
    find_exe(exe, sizeof exe);
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    char *argv[10 + 2 * OMNI__IPC_NKNOBS] = {exe, "worker", "--listen", (char *)endpoint, "--parent", parent,
                                            "--process", (char *)process};
    int argc = 8;
    for (int i = 0; ipc && i < OMNI__IPC_NKNOBS; i++) /* the pipeline's ipc: knobs */
        if (ipc[i] >= 0) {
            snprintf(knob[i], sizeof knob[i], "%s=%ld", omni__ipc_knobs[i].key, ipc[i]);
            argv[argc++] = "--ipc";
            argv[argc++] = knob[i];
        }
    argv[argc] = NULL;
    int use_path = !strchr(exe, '/');
    sigset_t none;
    sigemptyset(&none);
    pid_t p = fork();
    if (p < 0)
        return omni_error_set(err, OMNI_EIO, "fork for worker '%s': %s", process, strerror(errno));
    if (p == 0) {
        /* child: async-signal-safe calls only, then exec */
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0 && devnull != 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
            for (int fd = 3; fd < 1024; fd++)
                close(fd);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (use_path)
            execvp(exe, argv);
        else
            execv(exe, argv);
        _exit(127);
    }
    *pid = p;
    *pidfd = (int)syscall(SYS_pidfd_open, p, 0);
    if (*pidfd < 0)
        *pidfd = -1; /* old kernel: the I/O loop polls waitpid instead */
    omni__ipc_registry_add(p);
    OMNI_LOG(OMNI_LOG_DEBUG, "started worker '%s': %s worker --listen %s (pid %ld)", process, exe, endpoint, (long)p);
    return OMNI_OK;
}

int omni__ipc_reap(pid_t pid, char *why, size_t size)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == 0)
        return 0;
    if (r < 0) {
        if (errno != ECHILD)
            return 0;
        snprintf(why, size, "is gone");
    } else if (WIFSIGNALED(st)) {
        snprintf(why, size, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    } else if (WIFEXITED(st)) {
        if (WEXITSTATUS(st) == 127)
            snprintf(why, size, "exited with status 127 (could the omni executable be run? set OMNI_WORKER_EXE)");
        else
            snprintf(why, size, "exited with status %d", WEXITSTATUS(st));
    } else {
        return 0;
    }
    omni__ipc_registry_remove(pid);
    return 1;
}
