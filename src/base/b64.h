/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_B64_H
#define ATR_BASE_B64_H

/*
 * Base64 and base64url (RFC 4648 sections 4 and 5).
 *
 * Encoding and the bit transform use OpenSSL's EVP_EncodeBlock and
 * EVP_DecodeBlock; this module adds strict validation in front of them:
 *  - base64: length a multiple of 4, only A-Z a-z 0-9 + /, '=' padding only
 *    at the end and at most two;
 *  - base64url: only A-Z a-z 0-9 - _, no padding (JWK, JWS and Azure Key
 *    Vault send it unpadded), length mod 4 != 1;
 *  - both: no whitespace, and the unused low bits of the last character must
 *    be zero (canonical encoding), so every byte string has exactly one
 *    accepted encoding.
 *
 * Thread-safety: all functions are reentrant.
 */

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

/** Length of the base64 (padded) or base64url (unpadded) text for @p n bytes. */
size_t atr_b64_encoded_len(size_t n);
size_t atr_b64url_encoded_len(size_t n);

/**
 * Appends the encoding of @p in to @p out (no NUL counted; use
 * atr_buf_cstr() for a string). @return ATR_E_TOO_LARGE, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_b64_encode(struct atr_buf *out, struct atr_span in);
ATR_MUST_CHECK atr_status atr_b64url_encode(struct atr_buf *out, struct atr_span in);

/**
 * Encodes into a new NUL-terminated string owned by the caller (atr_free).
 * @return ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_b64url_encode_str(char **out, struct atr_span in);

/**
 * Decodes @p len characters at @p in and appends the bytes to @p out.
 * On error nothing is appended.
 * @return ATR_E_PARSE for any invalid input (message says which rule),
 *         ATR_E_TOO_LARGE, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_b64_decode(struct atr_buf *out, const char *in, size_t len,
                                         struct atr_err *err);
ATR_MUST_CHECK atr_status atr_b64url_decode(struct atr_buf *out, const char *in, size_t len,
                                            struct atr_err *err);

#endif /* ATR_BASE_B64_H */
