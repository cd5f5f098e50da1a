/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_KDF_H
#define ATR_CRYPTO_KDF_H

/*
 * Key derivation and message authentication with SHA-256, on OpenSSL's
 * EVP_KDF ("HKDF") and EVP_MAC ("HMAC") interfaces:
 *  - HKDF-SHA256 (RFC 5869, extract then expand) into secure memory;
 *  - HMAC-SHA256 (RFC 2104) and its constant-time verification, which also
 *    accepts tags truncated to 16..31 bytes (RFC 2104 section 5: not less
 *    than half the output).
 *
 * Owns nothing between calls. Thread-safety: reentrant.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

#define ATR_KDF_SHA256_LEN 32
/* RFC 5869 section 2.3: L <= 255 * HashLen. */
#define ATR_KDF_HKDF_SHA256_MAX (255 * ATR_KDF_SHA256_LEN)
/* Shortest HMAC tag atr_kdf_hmac_sha256_verify() accepts. */
#define ATR_KDF_HMAC_MIN_TAG 16

/**
 * Derives @p len bytes with HKDF-SHA256 into @p out (an empty secret).
 * @param ikm   input keying material, not empty (it may view an atr_secret).
 * @param salt  optional (empty means HashLen zero bytes, RFC 5869 2.2).
 * @param info  optional context and application specific information.
 * @param[out] out  owned by the caller on ATR_OK; still empty on failure.
 * @return ATR_E_INVALID for @p len 0 or above ATR_KDF_HKDF_SHA256_MAX, or an
 *         empty @p ikm; ATR_E_NOMEM; ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_kdf_hkdf_sha256(struct atr_secret *out, size_t len,
                                              struct atr_span ikm, struct atr_span salt,
                                              struct atr_span info, struct atr_err *err);

/**
 * Computes HMAC-SHA256 of @p msg under @p key (any length, empty allowed).
 * @param[out] out  ATR_KDF_SHA256_LEN bytes (wiped on failure).
 * @return ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_kdf_hmac_sha256(uint8_t *out, struct atr_span key,
                                              struct atr_span msg, struct atr_err *err);

/**
 * Checks in constant time that @p tag is HMAC-SHA256(@p key, @p msg), or its
 * first tag.len bytes for a truncated tag.
 * @return ATR_OK when it matches, ATR_E_AUTH_FAILED when it does not,
 *         ATR_E_INVALID for a tag shorter than ATR_KDF_HMAC_MIN_TAG or
 *         longer than ATR_KDF_SHA256_LEN, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_kdf_hmac_sha256_verify(struct atr_span key, struct atr_span msg,
                                                     struct atr_span tag, struct atr_err *err);

#endif /* ATR_CRYPTO_KDF_H */
