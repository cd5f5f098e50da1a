/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_ALLOC_H
#define ATR_BASE_ALLOC_H

/*
 * All heap allocation of atrest goes through these wrappers (curl's curlx_*,
 * SQLite's pluggable allocator), so that tests can make the Nth allocation
 * fail and drive every cleanup path. Allocation failure is an ordinary,
 * tested outcome (ATR_E_NOMEM), never an abort.
 *
 * Key material never uses these: see base/secmem.h.
 *
 * Thread-safety: the wrappers are thread-safe. The fault-injection counter is
 * a process-wide singleton meant for single-threaded unit tests.
 */

#include <stddef.h>

void *atr_malloc(size_t n);
void *atr_calloc(size_t count, size_t size);
void *atr_realloc(void *p, size_t n);
char *atr_strdup(const char *s);
char *atr_strndup(const char *s, size_t n);
void atr_free(void *p);

/* Frees and NULLs a pointer variable. */
#define ATR_FREE(p)                                                                                \
    do {                                                                                           \
        atr_free(p);                                                                               \
        (p) = NULL;                                                                                \
    } while (0)

/*
 * Fault injection (test builds): the @p nth allocation from now on (1-based)
 * and every later one fail until atr_alloc_fail_reset(). 0 disables.
 */
void atr_alloc_fail_after(unsigned long nth);
void atr_alloc_fail_reset(void);
/* Number of allocations attempted since the last atr_alloc_fail_after(). */
unsigned long atr_alloc_count(void);

#endif /* ATR_BASE_ALLOC_H */
