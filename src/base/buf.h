/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_BUF_H
#define ATR_BASE_BUF_H

/*
 * Byte views and growable byte buffers.
 *
 * struct atr_span is a borrowed view (never freed through the span).
 * struct atr_buf owns its storage, grows on append up to a hard cap given at
 * init (curl dynbuf's "toobig"), and releases its storage when an append
 * fails, so a failed append never leaves a half-built buffer behind.
 * Cleanup wipes the bytes before freeing: buffers often carry wrapped keys or
 * plaintext records. Key material itself lives in base/secmem.h.
 *
 * Thread-safety: none; a buffer belongs to one owner.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct atr_span {
    const uint8_t *ptr;
    size_t len;
};

struct atr_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    size_t max; /* hard cap on len */
};

static inline struct atr_span atr_span_of(const void *p, size_t n)
{
    struct atr_span s = {(const uint8_t *)p, n};
    return s;
}

/* A span over a NUL-terminated string (without the NUL). */
struct atr_span atr_span_str(const char *s);

/** Prepares an empty buffer that may hold at most @p max bytes. Cannot fail. */
void atr_buf_init(struct atr_buf *b, size_t max);

/** Wipes and frees the storage; the buffer is empty and reusable. NULL ok. */
void atr_buf_cleanup(struct atr_buf *b);

/** Sets len to 0 and wipes the bytes, keeping the storage. */
void atr_buf_reset(struct atr_buf *b);

/**
 * Ensures room for @p extra more bytes.
 * @return ATR_E_TOO_LARGE past the cap (storage released), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_buf_reserve(struct atr_buf *b, size_t extra);

/** Appends @p n bytes. Errors as atr_buf_reserve(). */
ATR_MUST_CHECK atr_status atr_buf_append(struct atr_buf *b, const void *p, size_t n);

/** Appends a string without its NUL. Errors as atr_buf_reserve(). */
ATR_MUST_CHECK atr_status atr_buf_append_str(struct atr_buf *b, const char *s);

/** Appends formatted text (no NUL kept in len). Errors as atr_buf_reserve(). */
ATR_MUST_CHECK atr_status atr_buf_printf(struct atr_buf *b, const char *fmt, ...) ATR_PRINTF(2, 3);

/**
 * Makes the content a NUL-terminated string (the NUL is stored after len and
 * not counted). Returns the string, borrowed from @p b, or NULL on failure.
 */
const char *atr_buf_cstr(struct atr_buf *b);

/** A span over the current content, valid until the next change of @p b. */
struct atr_span atr_buf_span(const struct atr_buf *b);

#endif /* ATR_BASE_BUF_H */
