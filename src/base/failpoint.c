/* SPDX-License-Identifier: Apache-2.0 */
#include "base/failpoint.h"

#ifdef ATR_TEST_BUILD
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void atr_failpoint(const char *name)
{
    const char *list = getenv("ATREST_FAILPOINT");
    if (list == NULL || name == NULL || name[0] == '\0')
        return;
    const char *arm = getenv("ATREST_FAILPOINT_ARM");
    if (arm != NULL && access(arm, F_OK) != 0)
        return;
    size_t n = strlen(name);
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0) {
            static const char msg[] = "atrest: failpoint reached: killing the process\n";
            (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
            raise(SIGKILL);
        }
        p += len;
        if (*p == ',')
            p++;
    }
}
#else
/* ISO C forbids an empty translation unit */
typedef int atr_failpoint_unused;
#endif
