/* SPDX-License-Identifier: Apache-2.0 */
#include "base/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Singleton: the fault-injection state shared by all allocations. */
static atomic_ulong alloc_fail_at;
static atomic_ulong alloc_counter;

static int alloc_should_fail(void)
{
    unsigned long at = atomic_load(&alloc_fail_at);
    unsigned long n = atomic_fetch_add(&alloc_counter, 1) + 1;
    return at != 0 && n >= at;
}

void atr_alloc_fail_after(unsigned long nth)
{
    atomic_store(&alloc_counter, 0);
    atomic_store(&alloc_fail_at, nth);
}

void atr_alloc_fail_reset(void)
{
    atomic_store(&alloc_fail_at, 0);
}

unsigned long atr_alloc_count(void)
{
    return atomic_load(&alloc_counter);
}

void *atr_malloc(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(n == 0 ? 1 : n);
}

void *atr_calloc(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    if (count == 0 || size == 0)
        count = size = 1;
    return calloc(count, size);
}

void *atr_realloc(void *p, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, n == 0 ? 1 : n);
}

char *atr_strndup(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    size_t len = strnlen(s, n);
    char *out = atr_malloc(len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

char *atr_strdup(const char *s)
{
    return atr_strndup(s, SIZE_MAX);
}

void atr_free(void *p)
{
    free(p);
}
