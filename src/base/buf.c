/* SPDX-License-Identifier: Apache-2.0 */
#include "base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/alloc.h"

struct atr_span atr_span_str(const char *s)
{
    return atr_span_of(s, s == NULL ? 0 : strlen(s));
}

void atr_buf_init(struct atr_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void atr_buf_cleanup(struct atr_buf *b)
{
    if (b == NULL)
        return;
    if (b->ptr != NULL) {
        OPENSSL_cleanse(b->ptr, b->cap);
        atr_free(b->ptr);
    }
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

void atr_buf_reset(struct atr_buf *b)
{
    if (b->ptr != NULL)
        OPENSSL_cleanse(b->ptr, b->cap);
    b->len = 0;
}

atr_status atr_buf_reserve(struct atr_buf *b, size_t extra)
{
    /* one spare byte so atr_buf_cstr() never needs to grow past the cap */
    if (extra > b->max - b->len) {
        atr_buf_cleanup(b);
        return ATR_E_TOO_LARGE;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return ATR_OK;
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    /* grow by copy, not realloc, so the old bytes can be wiped */
    uint8_t *p = atr_malloc(cap);
    if (p == NULL) {
        atr_buf_cleanup(b);
        return ATR_E_NOMEM;
    }
    if (b->ptr != NULL) {
        memcpy(p, b->ptr, b->len);
        OPENSSL_cleanse(b->ptr, b->cap);
        atr_free(b->ptr);
    }
    b->ptr = p;
    b->cap = cap;
    return ATR_OK;
}

atr_status atr_buf_append(struct atr_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return ATR_OK;
    ATR_TRY(atr_buf_reserve(b, n));
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return ATR_OK;
}

atr_status atr_buf_append_str(struct atr_buf *b, const char *s)
{
    return atr_buf_append(b, s, strlen(s));
}

atr_status atr_buf_printf(struct atr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ATR_E_INVALID;
    ATR_TRY(atr_buf_reserve(b, (size_t)n));
    va_start(ap, fmt);
    vsnprintf((char *)b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return ATR_OK;
}

const char *atr_buf_cstr(struct atr_buf *b)
{
    if (b->ptr == NULL && atr_buf_reserve(b, 0) != ATR_OK)
        return NULL;
    b->ptr[b->len] = '\0';
    return (const char *)b->ptr;
}

struct atr_span atr_buf_span(const struct atr_buf *b)
{
    return atr_span_of(b->ptr, b->len);
}
