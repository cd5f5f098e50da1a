/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder: replaced by the real implementation. */
#include <stdio.h>

#include "cli/commands.h"

int atr_cmd_cert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "atrest cert: not implemented yet\n");
    return ATR_EXIT_FAIL;
}
