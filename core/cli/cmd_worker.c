/* omni worker: host pipeline stages for coordinators in other processes. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ipc/ipc_impl.h"

static volatile int stop_flag;
static const char *log_name = "";

/* Worker lines say which worker wrote them (its output mixes with the
 * coordinator's when the coordinator started it). */
static void log_sink(int level, const char *file, int line, const char *msg, void *user)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    fprintf(stderr, "omni worker%s%s%s[%ld]: %s: %s\n", log_name[0] ? " '" : "", log_name, log_name[0] ? "'" : "",
            (long)getpid(), level >= 0 && level <= 4 ? names[level] : "log", msg);
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void help(FILE *f)
{
    fprintf(f,
            "usage: omni worker --listen ENDPOINT [options]\n"
            "       omni worker --keygen NAME\n\n"
            "Hosts pipeline stages for coordinators in other processes: a pipeline whose\n"
            "placement: entry lists this worker's endpoint sends it the stages to create and\n"
            "load (same plugins, same weights paths - as seen from this machine), then one\n"
            "message per forward/step call. Host tensors cross by POSIX shared memory and GPU\n"
            "tensors by CUDA IPC when the coordinator is on this host (and sees the same GPU),\n"
            "inline in messages otherwise. Stages stay loaded between coordinators and are\n"
            "reused when a coordinator loads the same stage with the same settings again.\n"
            "The worker answers heartbeats while stages compute; it refuses (and logs)\n"
            "malformed, oversized or wrong-version messages and keeps serving.\n"
            "Coordinators start their own workers for `endpoint: auto`; this command is for\n"
            "workers started by hand (see examples/split-deploy/).\n\n"
            "options:\n"
            "  --listen ENDPOINT      ipc:///path/to/socket (the socket file is made owner-only)\n"
            "                         or tcp://HOST:PORT (needs CURVE keys or --insecure-tcp)\n"
            "  --threads N            job threads: loads and calls of different stages run in\n"
            "                         parallel; one call at a time per stage (default 2)\n"
            "  --curve-key FILE       tcp: this worker's CURVE secret key (from --keygen)\n"
            "  --curve-clients FILE   tcp: public keys of the coordinators allowed in, one per line\n"
            "  --insecure-tcp         tcp without CURVE (a trusted network only)\n"
            "  --keygen NAME          write a CURVE keypair NAME.key (secret, 0600) and NAME.pub\n"
            "                         and exit\n"
            "  --parent PID           exit when process PID is gone (set by coordinators)\n"
            "  --process NAME         placement name, for log lines (set by coordinators)\n"
            "  --ipc KEY=VALUE        a knob of the pipeline's ipc: mapping (repeatable; set by\n"
            "                         coordinators from their pipeline): dead_ms, call_ms,\n"
            "                         max_message, inline (heartbeat_ms, start_ms, load_ms are\n"
            "                         accepted and only matter to coordinators)\n"
            "  -v, --verbose          more log output (repeatable)\n"
            "  -h, --help             this text\n\n"
            "Environment: OMNI_PLUGIN_PATH (plugin folders), OMNI_LOG (log level),\n"
            "OMNI_IPC_DEAD_MS (a coordinator silent for 10x this, at least 5 s, is dropped\n"
            "with its requests; default 1000), OMNI_IPC_MAX_MESSAGE (largest accepted\n"
            "message in bytes; default 268435456; ZeroMQ drops a peer that sends more than\n"
            "twice that), OMNI_IPC_CALL_MS (bound on waiting for a call to end),\n"
            "OMNI_IPC_INLINE; each wins over the same knob given by --ipc.\n"
            "Stops on SIGINT/SIGTERM, on a Shutdown message from its coordinator (auto\n"
            "workers), or when --parent is gone; shared-memory segments it made are removed.\n");
}

int omni_cmd_worker(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, 0, 'l'},
                                             {"threads", required_argument, 0, 't'},
                                             {"curve-key", required_argument, 0, 'k'},
                                             {"curve-clients", required_argument, 0, 'c'},
                                             {"insecure-tcp", no_argument, 0, 'I'},
                                             {"keygen", required_argument, 0, 'g'},
                                             {"parent", required_argument, 0, 'p'},
                                             {"process", required_argument, 0, 'n'},
                                             {"ipc", required_argument, 0, 'K'},
                                             {"verbose", no_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    struct omni__worker_options o = {.threads = 2, .process = ""};
    long knobs[OMNI__IPC_NKNOBS];
    for (int i = 0; i < OMNI__IPC_NKNOBS; i++)
        knobs[i] = -1;
    o.ipc = knobs;
    const char *keygen = NULL;
    int verbose = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 't':
            o.threads = (int)strtol(optarg, &end, 10);
            if (*end || o.threads < 1 || o.threads > 256) {
                fprintf(stderr, "omni worker: error: --threads %s: expected 1..256\n", optarg);
                return 2;
            }
            break;
        case 'k': o.curve_secret = optarg; break;
        case 'c': o.curve_clients = optarg; break;
        case 'I': o.insecure_tcp = 1; break;
        case 'g': keygen = optarg; break;
        case 'p':
            o.parent = (pid_t)strtol(optarg, &end, 10);
            if (*end || o.parent <= 0) {
                fprintf(stderr, "omni worker: error: --parent %s: expected a process id\n", optarg);
                return 2;
            }
            break;
        case 'n': o.process = optarg; break;
        case 'K': {
            const char *eq = strchr(optarg, '=');
            int i = 0;
            while (eq && i < OMNI__IPC_NKNOBS &&
                   (strlen(omni__ipc_knobs[i].key) != (size_t)(eq - optarg) ||
                    strncmp(omni__ipc_knobs[i].key, optarg, (size_t)(eq - optarg))))
                i++;
            if (!eq || i == OMNI__IPC_NKNOBS) {
                fprintf(stderr, "omni worker: error: --ipc %s: expected KEY=VALUE with KEY one of heartbeat_ms, "
                                "dead_ms, start_ms, load_ms, call_ms, max_message, inline\n", optarg);
                return 2;
            }
            long v = strtol(eq + 1, &end, 10);
            if (end == eq + 1 || *end || v < omni__ipc_knobs[i].lo || v > omni__ipc_knobs[i].hi) {
                fprintf(stderr, "omni worker: error: --ipc %s: %s must be an integer in [%ld, %ld]\n", optarg,
                        omni__ipc_knobs[i].key, omni__ipc_knobs[i].lo, omni__ipc_knobs[i].hi);
                return 2;
            }
            knobs[i] = v;
            break;
        }
        case 'v': verbose++; break;
        case 'h': help(stdout); return 0;
        default: fprintf(stderr, "try 'omni worker --help'\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "omni worker: error: unexpected argument '%s'\ntry 'omni worker --help'\n", argv[optind]);
        return 2;
    }
    struct omni_error err;
    omni_error_clear(&err);
    if (keygen) {
        if (omni__ipc_keygen(keygen, &err)) {
            omni_cli_print_error("worker", &err);
            return 1;
        }
        printf("wrote %s.key (secret: keep it on this machine) and %s.pub\n", keygen, keygen);
        return 0;
    }
    if (!o.listen) {
        fprintf(stderr, "omni worker: error: --listen ENDPOINT is required\ntry 'omni worker --help'\n");
        return 2;
    }
    omni_cli_setup_logging(verbose);
    log_name = o.process;
    omni_log_set_sink(log_sink, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    o.stop = &stop_flag;
    if (omni__ipc_worker_serve(&o, &err)) {
        omni_cli_print_error("worker", &err);
        return 1;
    }
    return 0;
}
