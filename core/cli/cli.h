/* core/cli/cli.h - the omni command-line tool: one function per subcommand.
 * Each returns the process exit status (0 ok, 1 failure, 2 usage error) and
 * prints its own errors to stderr (the CLI is a program, not library code). */
#ifndef OMNI_CLI_H
#define OMNI_CLI_H

#include "omni/omni.h"

int omni_cmd_run(int argc, char **argv);      /* cmd_run.c */
int omni_cmd_validate(int argc, char **argv); /* cmd_validate.c */
int omni_cmd_inspect(int argc, char **argv);  /* cmd_inspect.c */
int omni_cmd_plugins(int argc, char **argv);  /* cmd_plugins.c */
int omni_cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int omni_cmd_worker(int argc, char **argv);   /* cmd_worker.c */
int omni_cmd_bench(int argc, char **argv);    /* cmd_bench.c */

/* Shared helpers (main.c). */
void omni_cli_print_error(const char *cmd, const struct omni_error *err);
/* Install the stderr log sink at the level of OMNI_LOG / -v flags. */
void omni_cli_setup_logging(int verbosity);

#endif
