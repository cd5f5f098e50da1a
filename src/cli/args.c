/* SPDX-License-Identifier: Apache-2.0 */
#include "cli/args.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"

int atr_args_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "atrest %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'atrest %s --help' for the options.\n", cmd);
    return ATR_EXIT_USAGE;
}

int atr_args_getopt_error(const char *cmd, int ch, char **argv)
{
    if (ch == ':')
        return atr_args_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
    return atr_args_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
}

int atr_args_parse_ulong(unsigned long *out, const char *s, unsigned long min, unsigned long max)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}
