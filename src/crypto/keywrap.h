/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_KEYWRAP_H
#define ATR_CRYPTO_KEYWRAP_H

/*
 * AES key wrap: RFC 3394 (NIST SP 800-38F "KW") and AES key wrap with
 * padding, RFC 5649 (SP 800-38F "KWP"), with 128-, 192- or 256-bit KEKs,
 * on OpenSSL's "AES-*-WRAP" and "AES-*-WRAP-PAD" ciphers.
 *
 * Wrapping is deterministic and authenticated by the integrity check value
 * built into the construction: unwrapping with the wrong KEK, or of modified
 * or truncated data, fails with ATR_E_AUTH_FAILED. Unwrapped key material is
 * returned only in a struct atr_secret (secure memory); temporaries are wiped
 * on every path.
 *
 * Lengths: KW wraps 16 bytes or more, a multiple of 8 (RFC 3394 section 2);
 * KWP wraps 1 byte or more. The wrapped form is 8 bytes longer (KWP: after
 * padding the key to a multiple of 8). Inputs are capped at
 * ATR_KEYWRAP_MAX_LEN.
 *
 * Owns nothing between calls. Thread-safety: reentrant.
 */

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

typedef enum atr_keywrap_mode {
    ATR_KEYWRAP_KW = 1,  /* RFC 3394, no padding */
    ATR_KEYWRAP_KWP = 2, /* RFC 5649, with padding */
} atr_keywrap_mode;

/* Longest key accepted for wrapping (1 MiB); far above any real key. */
#define ATR_KEYWRAP_MAX_LEN ((size_t)1 << 20)

/**
 * Length of the wrapped form of a @p key_len-byte key, or 0 if @p mode
 * cannot wrap that length.
 */
size_t atr_keywrap_wrapped_len(atr_keywrap_mode mode, size_t key_len);

/**
 * Wraps @p key under @p kek and appends the result to @p out.
 * @param kek  16, 24 or 32 bytes (AES-128/192/256).
 * @param key  the key material to wrap (it may view an atr_secret).
 * @return ATR_E_INVALID for a bad mode, KEK size or key length,
 *         ATR_E_TOO_LARGE (input, or the buffer's cap: then the buffer is
 *         released as atr_buf_reserve() does), ATR_E_NOMEM, ATR_E_CRYPTO.
 *         On failure nothing is appended.
 */
ATR_MUST_CHECK atr_status atr_keywrap_wrap(struct atr_buf *out, const struct atr_secret *kek,
                                           atr_keywrap_mode mode, struct atr_span key,
                                           struct atr_err *err);

/**
 * Unwraps @p wrapped under @p kek into @p out (an empty secret).
 * @param[out] out  owned by the caller on ATR_OK; still empty on failure.
 * @return ATR_E_AUTH_FAILED when the integrity check fails (wrong KEK,
 *         modified data, bad KWP padding or length indicator),
 *         ATR_E_INVALID for a bad mode, KEK size or wrapped length,
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_keywrap_unwrap(struct atr_secret *out, const struct atr_secret *kek,
                                             atr_keywrap_mode mode, struct atr_span wrapped,
                                             struct atr_err *err);

#endif /* ATR_CRYPTO_KEYWRAP_H */
