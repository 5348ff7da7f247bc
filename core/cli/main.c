/* omni - command-line entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Subcommands live in their own files; weak references let a partial build
 * still link and say which command is missing. */
#pragma weak omni_cmd_run
#pragma weak omni_cmd_validate
#pragma weak omni_cmd_inspect
#pragma weak omni_cmd_plugins
#pragma weak omni_cmd_tokenize
#pragma weak omni_cmd_worker
#pragma weak omni_cmd_bench

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", omni_cmd_run, "run a pipeline: omni run PIPELINE.yaml [--prompt ...] [--set k=v]"},
    {"validate", omni_cmd_validate, "parse and type-check a pipeline without loading weights"},
    {"inspect", omni_cmd_inspect, "list the tensors of a .safetensors or .pth file"},
    {"plugins", omni_cmd_plugins, "list plugins and their ports, or show one: omni plugins [NAME]"},
    {"tokenize", omni_cmd_tokenize, "GPT-NeoX BPE: text to ids, or --decode ids to text"},
    {"worker", omni_cmd_worker, "host pipeline stages for other processes: omni worker --listen EP"},
    {"bench", omni_cmd_bench, "measure throughput and latency (JSON and a table)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: omni COMMAND [ARGS...]\n\n"
               "omni is an inference engine for OmniMamba: image understanding and\n"
               "text-to-image generation with a Mamba-2 backbone, as YAML pipelines of plugins.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].fn ? "" : " (not built)");
    fprintf(f, "\n'omni COMMAND --help' describes each command.\n"
               "Environment: OMNI_PLUGIN_PATH (plugin folders, ':'-separated), OMNI_LOG\n"
               "(error, warn, info, debug, trace), OMNI_WEIGHTS (folder of weight files).\n");
}

void omni_cli_print_error(const char *cmd, const struct omni_error *err)
{
    fprintf(stderr, "omni %s: error: %s\n", cmd,
            err && err->msg[0] ? err->msg : omni_status_str(err ? err->status : OMNI_EINTERNAL));
}

void omni_cli_setup_logging(int verbosity)
{
    int level = omni_log_get_level() + verbosity;
    omni_log_set_level(level > OMNI_LOG_TRACE ? OMNI_LOG_TRACE : level);
    omni_log_set_sink(omni_log_stderr_sink, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("omni %s (plugin ABI %d.%d%s)\n", OMNI_VERSION, OMNI_ABI_MAJOR, OMNI_ABI_MINOR,
#ifdef OMNI_HAVE_CUDA
               ", CUDA"
#else
               ", CPU only"
#endif
        );
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(cmd, commands[i].name))
            continue;
        if (!commands[i].fn) {
            fprintf(stderr, "omni: command '%s' is not part of this build\n", cmd);
            return 2;
        }
        omni_cli_setup_logging(0);
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "omni: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
