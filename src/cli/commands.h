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

#include <stddef.h>

struct atr_http_server_opts;

int atr_cmd_cert(int argc, char **argv);
int atr_cmd_echo(int argc, char **argv);
int atr_cmd_dev(int argc, char **argv);
int atr_cmd_idp(int argc, char **argv);
int atr_cmd_vault(int argc, char **argv);
int atr_cmd_serve(int argc, char **argv);
int atr_cmd_srk(int argc, char **argv);
int atr_cmd_records(int argc, char **argv);
int atr_cmd_encryption(int argc, char **argv);
int atr_cmd_monitor(int argc, char **argv);

/* `atrest vault key ...` (argv[0] is "key"): the Key Vault keys data plane. */
int atr_cli_vault_key(int argc, char **argv);

/*
 * Shared pieces of the subcommands (they print their own messages and
 * return an exit code).
 */

/* Creates (or reuses) the CA in @p dir and a server certificate for @p hosts. */
int atr_cli_cert_make(const char *dir, const char *const *hosts, size_t nhosts, unsigned days);

/* Called once the echo server listens, with its URL. */
typedef void (*atr_cli_ready_fn)(const char *url, void *ctx);

/*
 * Runs the TLS JSON echo server until SIGINT/SIGTERM. Prints the URL when
 * @p on_ready is NULL, else calls it.
 */
int atr_cli_echo_serve(const struct atr_http_server_opts *opts, atr_cli_ready_fn on_ready,
                       void *ready_ctx);

/* Exit codes shared by every subcommand. */
#define ATR_EXIT_OK    0
#define ATR_EXIT_FAIL  1
#define ATR_EXIT_USAGE 2

#endif /* ATR_CLI_COMMANDS_H */
