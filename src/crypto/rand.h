/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_RAND_H
#define ATR_CRYPTO_RAND_H

/*
 * Cryptographically secure random bytes from OpenSSL's DRBGs.
 *
 * atr_rand_bytes() draws from the public DRBG (RAND_bytes): for values that
 * are not secret once used, such as nonces, salts and probe values.
 * atr_rand_priv_bytes() and atr_rand_secret() draw from the private DRBG
 * (RAND_priv_bytes), which OpenSSL keeps separate so that a leak of public
 * outputs says nothing about key material; atr_rand_secret() writes straight
 * into secure memory (base/secmem.h) and is how key material is made.
 *
 * Owns nothing. Thread-safety: all functions are thread-safe (OpenSSL keeps
 * per-thread DRBG instances).
 */

#include <stddef.h>

#include "base/error.h"
#include "base/secmem.h"

/**
 * Fills @p out with @p len random bytes from the public DRBG.
 * @param[out] out  @p len writable bytes (may be NULL when @p len is 0).
 * @return ATR_E_CRYPTO if the DRBG fails (out is wiped then),
 *         ATR_E_INVALID for a NULL @p out with a non-zero length.
 */
ATR_MUST_CHECK atr_status atr_rand_bytes(void *out, size_t len, struct atr_err *err);

/**
 * As atr_rand_bytes() but from the private DRBG, for secret values that the
 * caller keeps in its own (wiped) storage.
 * @return ATR_E_CRYPTO, ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_rand_priv_bytes(void *out, size_t len, struct atr_err *err);

/**
 * Makes @p out (an empty secret) hold @p len fresh random bytes from the
 * private DRBG, in secure memory. On failure @p out stays empty.
 * @param[out] out  owned by the caller afterwards (atr_secret_cleanup()).
 * @return ATR_E_INVALID for @p len 0, ATR_E_NOMEM when the secure heap is
 *         exhausted, ATR_E_CRYPTO if the DRBG fails.
 */
ATR_MUST_CHECK atr_status atr_rand_secret(struct atr_secret *out, size_t len, struct atr_err *err);

#endif /* ATR_CRYPTO_RAND_H */
