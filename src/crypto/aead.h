/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_AEAD_H
#define ATR_CRYPTO_AEAD_H

/*
 * AES-256-GCM authenticated encryption (NIST SP 800-38D) with 96-bit nonces
 * and 128-bit tags, on OpenSSL's EVP interface.
 *
 * A struct atr_aead is made once per key: it holds the fetched cipher and two
 * ready cipher contexts (one sealing, one opening) whose key schedule is set
 * at creation, so each message only sets its nonce. Two forms:
 *  - detached: the caller supplies the nonce and gets ciphertext and tag
 *    separately (used where a format stores them apart, and by the vectors);
 *  - framed: atr_aead_seal() draws a random nonce and appends
 *    nonce || ciphertext || tag (ATR_AEAD_OVERHEAD bytes more than the
 *    plaintext) to an atr_buf; atr_aead_open() reverses it.
 * Random 96-bit nonces are safe for up to 2^32 messages per key (SP 800-38D
 * section 8.3); keys in atrest (DEKs) protect far fewer.
 *
 * Opening writes plaintext into the output as it decrypts, but returns it
 * only after the tag has been verified: on any failure the output bytes are
 * wiped and nothing is appended. Callers must not read the output unless the
 * call returned ATR_OK.
 *
 * Ownership: the object owns its OpenSSL contexts. The raw key stays with the
 * caller's struct atr_secret; the expanded key schedule lives inside the
 * OpenSSL contexts (ordinary heap, cleared by OpenSSL when freed).
 *
 * Thread-safety: an object is NOT thread-safe (its contexts change on every
 * call). Give each thread its own, cheaply, with atr_aead_dup().
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

#define ATR_AEAD_KEY_LEN   32
#define ATR_AEAD_NONCE_LEN 12
#define ATR_AEAD_TAG_LEN   16
/* Framed form: bytes added to the plaintext (nonce and tag). */
#define ATR_AEAD_OVERHEAD (ATR_AEAD_NONCE_LEN + ATR_AEAD_TAG_LEN)
/* Longest plaintext GCM allows under one nonce: 2^39 - 256 bits. */
#define ATR_AEAD_MAX_LEN (((uint64_t)1 << 36) - 32)

struct atr_aead;

/**
 * Creates a sealing/opening object for the AES-256 key in @p key.
 * @param[out] out  owned by the caller; release with atr_aead_free().
 * @param key       exactly ATR_AEAD_KEY_LEN bytes; only read during the call.
 * @return ATR_E_INVALID for a missing or wrong-size key, ATR_E_NOMEM,
 *         ATR_E_CRYPTO if OpenSSL cannot provide AES-256-GCM.
 */
ATR_MUST_CHECK atr_status atr_aead_new(struct atr_aead **out, const struct atr_secret *key,
                                       struct atr_err *err);

/**
 * Copies @p src (key schedule included, no re-expansion) for use by another
 * thread. @param[out] out  owned by the caller.
 * @return ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_aead_dup(struct atr_aead **out, const struct atr_aead *src,
                                       struct atr_err *err);

/** Releases @p aead and its key schedule. NULL is allowed. */
void atr_aead_free(struct atr_aead *aead);

/**
 * Encrypts @p pt under @p nonce and authenticates it together with @p aad.
 * A nonce must never be used twice with one key.
 * @param[out] ct   pt.len bytes; may be exactly pt.ptr (in place), must not
 *                  otherwise overlap it. May be NULL when pt.len is 0.
 * @param[out] tag  ATR_AEAD_TAG_LEN bytes.
 * @param nonce     ATR_AEAD_NONCE_LEN bytes.
 * @return ATR_E_TOO_LARGE above ATR_AEAD_MAX_LEN, ATR_E_CRYPTO (ct and tag
 *         are wiped then).
 */
ATR_MUST_CHECK atr_status atr_aead_seal_detached(uint8_t *ct, uint8_t *tag, struct atr_aead *aead,
                                                 const uint8_t *nonce, struct atr_span aad,
                                                 struct atr_span pt, struct atr_err *err);

/**
 * Verifies @p tag over @p aad and @p ct and decrypts @p ct.
 * @param[out] pt  ct.len bytes; may be exactly ct.ptr, must not otherwise
 *                 overlap it. Meaningful only when ATR_OK is returned: on
 *                 failure it is wiped.
 * @return ATR_E_AUTH_FAILED when the tag does not verify (wrong key, nonce
 *         or AAD, or modified data), ATR_E_TOO_LARGE, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_aead_open_detached(uint8_t *pt, struct atr_aead *aead,
                                                 const uint8_t *nonce, struct atr_span aad,
                                                 struct atr_span ct, const uint8_t *tag,
                                                 struct atr_err *err);

/**
 * Seals @p pt under a fresh random nonce and appends
 * nonce || ciphertext || tag (pt.len + ATR_AEAD_OVERHEAD bytes) to @p out.
 * @p aad and @p pt must not point into @p out (it may be reallocated).
 * @return ATR_E_TOO_LARGE (input above ATR_AEAD_MAX_LEN or the buffer's
 *         cap; the buffer is then released, as atr_buf_reserve() does),
 *         ATR_E_NOMEM, ATR_E_CRYPTO. On failure nothing is appended.
 */
ATR_MUST_CHECK atr_status atr_aead_seal(struct atr_buf *out, struct atr_aead *aead,
                                        struct atr_span aad, struct atr_span pt,
                                        struct atr_err *err);

/**
 * Opens a message made by atr_aead_seal() and appends the plaintext
 * (sealed.len - ATR_AEAD_OVERHEAD bytes) to @p out. @p sealed must not
 * point into @p out.
 * @return ATR_E_AUTH_FAILED if @p sealed is truncated or does not verify
 *         (nothing appended, no plaintext left in @p out), ATR_E_TOO_LARGE,
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_aead_open(struct atr_buf *out, struct atr_aead *aead,
                                        struct atr_span aad, struct atr_span sealed,
                                        struct atr_err *err);

/**
 * As atr_aead_open() for sealed key material: the plaintext goes straight
 * into secure memory.
 * @param[out] out  an empty secret; owned by the caller on ATR_OK, still
 *                  empty on failure.
 * @return ATR_E_AUTH_FAILED, ATR_E_INVALID for an empty plaintext,
 *         ATR_E_NOMEM, ATR_E_TOO_LARGE, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_aead_open_secret(struct atr_secret *out, struct atr_aead *aead,
                                               struct atr_span aad, struct atr_span sealed,
                                               struct atr_err *err);

#endif /* ATR_CRYPTO_AEAD_H */
