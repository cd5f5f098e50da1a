/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_SIG_H
#define ATR_CRYPTO_SIG_H

/*
 * RSA signatures with the JOSE / Azure Key Vault algorithm names
 * (RFC 7518 section 3.3 and 3.5):
 *   RS256, RS384, RS512  RSASSA-PKCS1-v1_5 with SHA-256/384/512
 *   PS256, PS384, PS512  RSASSA-PSS with SHA-256/384/512, MGF1 with the same
 *                        digest, salt length = digest length
 *
 * Two forms of each operation:
 *  - message form (atr_sig_sign / atr_sig_verify): the message is hashed
 *    here (EVP_DigestSign / EVP_DigestVerify); JWTs use it;
 *  - digest form (atr_sig_sign_digest / atr_sig_verify_digest): the caller
 *    gives the digest, as Azure Key Vault's sign and verify operations take
 *    it (EVP_PKEY_sign / EVP_PKEY_verify with the digest type set). The
 *    digest length must equal the algorithm's digest length.
 * Both forms give the same signature for the same message.
 *
 * Verification outcome: ATR_OK only for a valid signature. Any invalid
 * signature -- wrong length (it must be exactly the modulus size), bad
 * padding, wrong key, tampered message -- is ATR_E_AUTH_FAILED with one
 * message, "signature verification failed"; never a crash. Other codes mean
 * the check could not be made (bad arguments, out of memory).
 * PSS verification insists on salt length = digest length, as Key Vault
 * produces it.
 *
 * Thread-safety: reentrant; a key may be used by many threads at once
 * (each call makes its own contexts).
 */

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"
#include "crypto/rsa.h"

/* Signature algorithms; values start at 1 so that zeroed memory is no algorithm. */
typedef enum atr_sig_alg {
    ATR_SIG_RS256 = 1,
    ATR_SIG_RS384 = 2,
    ATR_SIG_RS512 = 3,
    ATR_SIG_PS256 = 4,
    ATR_SIG_PS384 = 5,
    ATR_SIG_PS512 = 6,
} atr_sig_alg;

/* Longest digest of any algorithm (SHA-512). */
#define ATR_SIG_MAX_DIGEST 64

/**
 * Maps a JOSE name ("RS256" ... "PS512"; exact, case-sensitive) to @p out.
 * @return ATR_E_UNSUPPORTED for any other name (e.g. "none", "HS256",
 *         "ES256"), ATR_E_INVALID for NULL.
 */
ATR_MUST_CHECK atr_status atr_sig_alg_from_name(atr_sig_alg *out, const char *name,
                                                struct atr_err *err);

/** The JOSE name of @p alg, or NULL for a value outside the enum. */
const char *atr_sig_alg_name(atr_sig_alg alg);

/** The digest length of @p alg in bytes (32, 48, 64), or 0 outside the enum. */
size_t atr_sig_alg_digest_len(atr_sig_alg alg);

/**
 * Hashes @p msg with the digest of @p alg and writes the digest to @p out
 * (at least ATR_SIG_MAX_DIGEST bytes), its length to @p out_len.
 * @return ATR_E_INVALID (unknown @p alg), ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_sig_digest(uint8_t *out, size_t *out_len, atr_sig_alg alg,
                                         struct atr_span msg, struct atr_err *err);

/**
 * Signs @p msg with the private @p key and appends the signature
 * (atr_rsa_key_size() bytes) to @p out. On failure nothing is appended.
 * @return ATR_E_INVALID (public key, unknown @p alg), ATR_E_TOO_LARGE
 *         (buffer cap), ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_sig_sign(struct atr_buf *out, const struct atr_rsa_key *key,
                                       atr_sig_alg alg, struct atr_span msg, struct atr_err *err);

/**
 * Verifies @p sig over @p msg with the public part of @p key.
 * @return ATR_OK for a valid signature, ATR_E_AUTH_FAILED for any invalid
 *         one (see the module comment), ATR_E_INVALID (unknown @p alg),
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_sig_verify(const struct atr_rsa_key *key, atr_sig_alg alg,
                                         struct atr_span msg, struct atr_span sig,
                                         struct atr_err *err);

/**
 * Signs a precomputed @p digest (exactly atr_sig_alg_digest_len(@p alg)
 * bytes), as Azure Key Vault's sign operation, and appends the signature to
 * @p out. On failure nothing is appended.
 * @return as atr_sig_sign(); ATR_E_INVALID also for a wrong digest length.
 */
ATR_MUST_CHECK atr_status atr_sig_sign_digest(struct atr_buf *out, const struct atr_rsa_key *key,
                                              atr_sig_alg alg, struct atr_span digest,
                                              struct atr_err *err);

/**
 * Verifies @p sig over a precomputed @p digest, as Azure Key Vault's verify.
 * @return as atr_sig_verify(); ATR_E_INVALID also for a wrong digest length.
 */
ATR_MUST_CHECK atr_status atr_sig_verify_digest(const struct atr_rsa_key *key, atr_sig_alg alg,
                                                struct atr_span digest, struct atr_span sig,
                                                struct atr_err *err);

#endif /* ATR_CRYPTO_SIG_H */
