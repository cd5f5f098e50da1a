/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CLI_ARGS_H
#define ATR_CLI_ARGS_H

/*
 * Argument helpers shared by the subcommands: one wording for usage errors
 * (exit code 2) and strict number parsing. Not thread-safe (getopt state).
 */

#include "base/error.h"

/**
 * Prints "atrest CMD: <message>" and a pointer to --help on stderr.
 * @return ATR_EXIT_USAGE (2), to be returned by the subcommand.
 */
int atr_args_usage_error(const char *cmd, const char *fmt, ...) ATR_PRINTF(2, 3);

/**
 * The usage error for what getopt_long() returned as ':' (missing value) or
 * '?' (unknown option); @p argv and optind as getopt left them.
 */
int atr_args_getopt_error(const char *cmd, int ch, char **argv);

/**
 * Parses a decimal number in [@p min, @p max] with nothing around it (no
 * sign, no spaces, no suffix). @return 1 on success, 0 otherwise.
 */
int atr_args_parse_ulong(unsigned long *out, const char *s, unsigned long min, unsigned long max);

#endif /* ATR_CLI_ARGS_H */
