/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_TESTS_TESTUTIL_H
#define ATR_TESTS_TESTUTIL_H

/*
 * Helpers shared by the unit tests: cmocka includes in the right order, a
 * secure-heap set-up, and small hex helpers for known-answer tests.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/buf.h"

/* Initialises the secure heap (unprotected allowed); for cmocka group setup. */
int atr_test_setup_secmem(void **state);

/* Decodes lowercase/uppercase hex into @p out; fails the test on bad input. */
void atr_test_hex(struct atr_buf *out, const char *hex);

/* Path under the source tree (e.g. "tests/fuzz/corpus"); static storage. */
const char *atr_test_source_path(const char *rel);

#endif /* ATR_TESTS_TESTUTIL_H */
