/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CLI_COMMANDS_H
#define ATR_CLI_COMMANDS_H

/*
 * Subcommands of the atrest executable. Each takes the arguments after its
 * own name (argv[0] is the subcommand name) and returns the process exit
 * code: 0 success, 1 failure, 2 usage error.
 */

typedef int (*atr_cli_fn)(int argc, char **argv);

struct atr_cli_command {
    const char *name;
    const char *summary;
    atr_cli_fn run;
};

int atr_cmd_cert(int argc, char **argv);
int atr_cmd_echo(int argc, char **argv);

/* Exit codes shared by every subcommand. */
#define ATR_EXIT_OK    0
#define ATR_EXIT_FAIL  1
#define ATR_EXIT_USAGE 2

#endif /* ATR_CLI_COMMANDS_H */
