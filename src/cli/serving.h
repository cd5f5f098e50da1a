/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CLI_SERVING_H
#define ATR_CLI_SERVING_H

/*
 * What the three server subcommands (`idp serve`, `vault serve`, `serve`)
 * share: their common options, the state folder with its bootstrap secret,
 * the configuration (file + ATREST_* environment), and the run loop (start,
 * print the URL, wait for SIGINT/SIGTERM, stop gracefully). Not
 * thread-safe (getopt state); called from main's thread only.
 */

#include <getopt.h>
#include <stddef.h>

#include "base/config.h"
#include "cli/rest.h"
#include "http/server.h"

/* getopt_long entries of the common options; their values are the chars below. */
#define ATR_CLI_SERVE_LONGOPTS                                                                     \
    {"dir", required_argument, NULL, 'd'}, {"cert", required_argument, NULL, 'c'},                 \
        {"key", required_argument, NULL, 'k'}, {"listen", required_argument, NULL, 'l'},           \
        {"port", required_argument, NULL, 'p'}, {"config", required_argument, NULL, 'f'},          \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* The common options and what they lead to. */
struct atr_cli_serving {
    const char *cmd; /* "vault serve", for messages */
    const char *dir; /* --dir: the state folder (created 0700) */
    const char *config_file;
    struct atr_http_server_opts so; /* cert, key, listen, port, name */
    struct atr_config *cfg;         /* loaded by atr_cli_serving_prepare() */
    char secret[ATR_CLI_SECRET_MAX];
};

/** Sets defaults: server @p name, default @p port. */
void atr_cli_serving_init(struct atr_cli_serving *s, const char *cmd, const char *name,
                          unsigned port);

/**
 * Handles one option of ATR_CLI_SERVE_LONGOPTS.
 * @return 1 handled, 0 not a common option, or -ATR_EXIT_USAGE after printing
 *         the usage error.
 */
int atr_cli_serving_opt(struct atr_cli_serving *s, int ch, const char *arg);

/**
 * After the option loop: checks the required options, creates the state
 * folder, loads the configuration (--config, then ATREST_* variables), and
 * reads the bootstrap secret from @p secret_key in the configuration or
 * from DIR/admin.secret (created 0600 when missing).
 * @return ATR_EXIT_OK, ATR_EXIT_USAGE, ATR_EXIT_FAIL (message printed).
 */
int atr_cli_serving_prepare(struct atr_cli_serving *s, int argc, char **argv,
                            const char *secret_key);

/** "DIR/name" into @p out. @return 1, or 0 (message printed) when too long. */
int atr_cli_serving_path(char *out, size_t cap, const struct atr_cli_serving *s, const char *name);

/**
 * Creates and starts the server, prints its URL on stdout (then calls
 * @p on_url when not NULL, e.g. to set an authority), waits for SIGINT or
 * SIGTERM, and stops gracefully. Signals must have been blocked with
 * atr_http_signals_block() before any thread started.
 * @return ATR_EXIT_OK, or ATR_EXIT_FAIL (message printed).
 */
int atr_cli_serving_run(struct atr_cli_serving *s, const struct atr_route *routes, size_t nroutes,
                        void *app, int (*on_url)(const char *url, void *ctx), void *ctx);

/** Frees the configuration and wipes the secret. */
void atr_cli_serving_cleanup(struct atr_cli_serving *s);

#endif /* ATR_CLI_SERVING_H */
