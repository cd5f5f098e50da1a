/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder: replaced by the real implementation. */
#include <stdio.h>

#include "cli/commands.h"

int atr_cmd_echo(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "atrest echo: not implemented yet\n");
    return ATR_EXIT_FAIL;
}
