/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_FAILPOINT_H
#define ATR_BASE_FAILPOINT_H

/*
 * Failpoints for crash tests (design section 3: every transition is
 * crash-safe). In test builds (ATR_TEST_BUILD), atr_failpoint("name") kills
 * the process with SIGKILL when the environment variable ATREST_FAILPOINT
 * names that point (a comma-separated list is allowed): the nearest thing to
 * a power cut at that line. When ATREST_FAILPOINT_ARM names a file, the
 * points fire only while that file exists (a test arms them at the moment
 * it wants, in a process that already holds in-memory state). In other
 * builds it compiles to nothing. No state: the environment is read at each
 * point (they are rare).
 *
 * Points: enable.before_store, enable.after_store, disable.before_store,
 * disable.after_store, roll.before_store, roll.after_store,
 * lock.after_evict, lock.after_store, restore.after_store,
 * fold.after_block (docs/service.md).
 */

#ifdef ATR_TEST_BUILD
void atr_failpoint(const char *name);
#else
static inline void atr_failpoint(const char *name)
{
    (void)name;
}
#endif

#endif /* ATR_BASE_FAILPOINT_H */
