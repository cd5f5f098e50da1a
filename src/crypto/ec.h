/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_EC_H
#define ATR_CRYPTO_EC_H

/*
 * Elliptic-curve keys and ECDSA signatures as Azure Key Vault uses them
 * (key types "EC" and "EC-HSM"), on OpenSSL's EVP_PKEY interface. EC keys
 * sign and verify only: key wrapping stays RSA (crypto/rsa.h).
 *
 * Curves by their JOSE / Azure names (RFC 7518 section 6.2.1.1, Key Vault's
 * JsonWebKeyCurveName):
 *   "P-256"   NIST P-256 (prime256v1)   32-byte coordinates
 *   "P-384"   NIST P-384 (secp384r1)    48-byte coordinates
 *   "P-521"   NIST P-521 (secp521r1)    66-byte coordinates
 *   "P-256K"  secp256k1                 32-byte coordinates
 * Signature algorithms (RFC 7518 section 3.4, RFC 8812 section 3.2), each
 * bound to one curve: ES256 (P-256, SHA-256), ES384 (P-384, SHA-384),
 * ES512 (P-521, SHA-512), ES256K (P-256K, SHA-256).
 *
 * struct atr_ec_key wraps one EVP_PKEY, public or private, on one of these
 * curves. Keys are made by generation, from JWK members (crv, x, y and an
 * optional d, unpadded base64url of exactly the curve's field size, as RFC
 * 7518 section 6.2 requires), or from DER (PKCS#8 PrivateKeyInfo or
 * SubjectPublicKeyInfo). Every imported key is validated before use: the
 * curve must be one of the four (keys on other curves, or with explicit
 * curve parameters that are not one of them, are ATR_E_UNSUPPORTED); the
 * public point must lie on the curve and have the group order
 * (EVP_PKEY_public_check); a private scalar must be in [1, n-1] and match
 * the point (EVP_PKEY_check, which includes the pairwise check).
 *
 * Signatures work on a precomputed digest, as Key Vault's sign and verify
 * operations take it; the digest length must equal the algorithm's digest
 * length. A signature is the JWS form r || s, each a big-endian integer
 * left-padded to the field size (64, 96, 132 or 64 bytes), not OpenSSL's
 * DER ECDSA-Sig-Value. Verification returns ATR_OK only for a valid
 * signature; any invalid one -- wrong length, r or s zero or not below the
 * group order, wrong key, tampered digest -- is ATR_E_AUTH_FAILED with the
 * one message "signature verification failed"; never a crash. Other codes
 * mean the check could not be made (bad arguments, out of memory).
 *
 * Secrets: the private scalar lives where OpenSSL keeps it (its secure heap
 * once atr_secmem_init() has run); DER private keys are returned in a
 * struct atr_secret; decoded JWK scalars are wiped after use. JSON strings
 * live in jansson's ordinary heap and are not wiped (see crypto/jwk.h):
 * keep private JWKs short-lived.
 *
 * Ownership: a key owns its EVP_PKEY.
 *
 * Thread-safety: a key is immutable after creation and may be used by many
 * threads at once (each operation makes its own EVP_PKEY_CTX). Free it only
 * when no other thread uses it.
 */

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

/* Curves; values start at 1 so that zeroed memory is no curve. */
typedef enum atr_ec_curve {
    ATR_EC_P256 = 1,  /* "P-256" */
    ATR_EC_P384 = 2,  /* "P-384" */
    ATR_EC_P521 = 3,  /* "P-521" */
    ATR_EC_P256K = 4, /* "P-256K" (secp256k1) */
} atr_ec_curve;

/* ECDSA algorithms; values start at 1 so that zeroed memory is no algorithm. */
typedef enum atr_ec_alg {
    ATR_EC_ES256 = 1,  /* P-256, SHA-256 */
    ATR_EC_ES384 = 2,  /* P-384, SHA-384 */
    ATR_EC_ES512 = 3,  /* P-521, SHA-512 */
    ATR_EC_ES256K = 4, /* P-256K, SHA-256 */
} atr_ec_alg;

/* Largest field size of any curve in bytes (P-521). */
#define ATR_EC_MAX_FIELD 66
/* Longest signature of any algorithm (ES512: 2 * 66 bytes). */
#define ATR_EC_MAX_SIG (2 * ATR_EC_MAX_FIELD)

struct atr_ec_key;

/* ---- curves and algorithms ---------------------------------------------- */

/**
 * Maps a JOSE / Azure curve name ("P-256", "P-384", "P-521", "P-256K";
 * exact, case-sensitive) to @p out.
 * @return ATR_E_UNSUPPORTED for any other name, ATR_E_INVALID for NULL.
 */
ATR_MUST_CHECK atr_status atr_ec_curve_from_name(atr_ec_curve *out, const char *name,
                                                 struct atr_err *err);

/** The JOSE name of @p curve, or NULL for a value outside the enum. */
const char *atr_ec_curve_name(atr_ec_curve curve);

/** The field size of @p curve in bytes (32, 48, 66, 32), or 0 outside the enum. */
size_t atr_ec_curve_size(atr_ec_curve curve);

/**
 * Maps a JOSE algorithm name ("ES256", "ES384", "ES512", "ES256K"; exact,
 * case-sensitive) to @p out.
 * @return ATR_E_UNSUPPORTED for any other name, ATR_E_INVALID for NULL.
 */
ATR_MUST_CHECK atr_status atr_ec_alg_from_name(atr_ec_alg *out, const char *name,
                                               struct atr_err *err);

/** The JOSE name of @p alg, or NULL for a value outside the enum. */
const char *atr_ec_alg_name(atr_ec_alg alg);

/** The curve @p alg signs with; 0 (no curve) for a value outside the enum. */
atr_ec_curve atr_ec_alg_curve(atr_ec_alg alg);

/** The digest length of @p alg in bytes (32, 48, 64), or 0 outside the enum. */
size_t atr_ec_alg_digest_len(atr_ec_alg alg);

/* ---- lifecycle ---------------------------------------------------------- */

/**
 * Generates a new key pair on @p curve.
 * @param[out] out  owned by the caller (atr_ec_key_free()).
 * @return ATR_E_INVALID for a curve outside the enum, ATR_E_NOMEM,
 *         ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_key_generate(struct atr_ec_key **out, atr_ec_curve curve,
                                              struct atr_err *err);

/** Releases @p key. NULL is allowed. */
void atr_ec_key_free(struct atr_ec_key *key);

/* ---- import and export -------------------------------------------------- */

/**
 * Builds a validated key from the JWK object @p jwk (borrowed): "kty" "EC"
 * or "EC-HSM", "crv", "x", "y" and, for a private key, "d". Other members
 * (kid, key_ops, ...) are ignored after a type check of "kid", "alg" and
 * "use".
 * @param[out] out  owned by the caller (atr_ec_key_free()).
 * @return ATR_E_PARSE for a non-object, a member of the wrong JSON type or
 *         bad base64url; ATR_E_INVALID for a missing or wrong "kty", missing
 *         "crv"/"x"/"y", members of another key type ("n", "e", "k"),
 *         coordinates or scalar not exactly the field size, a point not on
 *         the curve, or a scalar that does not match the point;
 *         ATR_E_UNSUPPORTED for another curve or an HSM transfer blob
 *         ("key_hsm" without "d"); ATR_E_NOMEM; ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_key_from_jwk(struct atr_ec_key **out, const json_t *jwk,
                                              struct atr_err *err);

/**
 * Exports @p key as a new JWK object {"kty":"EC","crv","x","y"} plus "d"
 * when @p include_private is non-zero (add "kid", "key_ops" or an "EC-HSM"
 * kty as needed). Coordinates and scalar are written at the field size.
 * @param[out] out  a new reference owned by the caller (json_decref()).
 * @return ATR_E_INVALID (private export of a public key), ATR_E_NOMEM,
 *         ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_key_to_jwk(json_t **out, const struct atr_ec_key *key,
                                            int include_private, struct atr_err *err);

/**
 * Appends the public point's big-endian coordinates, each exactly
 * atr_ec_curve_size() bytes, to @p out_x and @p out_y (the JWK "x" and "y"
 * before base64url). On failure nothing is appended.
 * @return ATR_E_TOO_LARGE (buffer cap), ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_key_public_xy(struct atr_buf *out_x, struct atr_buf *out_y,
                                               const struct atr_ec_key *key, struct atr_err *err);

/**
 * Writes the private key as an unencrypted DER PKCS#8 PrivateKeyInfo
 * (named curve, public key included) into @p out, an empty secret; for
 * storage, sealed elsewhere.
 * @param[out] out  owned by the caller on ATR_OK; still empty on failure.
 * @return ATR_E_INVALID for a public key, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_key_format_der_private(struct atr_secret *out,
                                                        const struct atr_ec_key *key,
                                                        struct atr_err *err);

/**
 * Parses and validates a DER PKCS#8 PrivateKeyInfo or SubjectPublicKeyInfo
 * of an EC key, which must fill @p der exactly. Callers that need a private
 * key check atr_ec_key_has_private().
 * @param[out] out  owned by the caller (atr_ec_key_free()).
 * @return ATR_E_PARSE for malformed DER, ATR_E_UNSUPPORTED for a non-EC key
 *         or another curve, ATR_E_INVALID for a key that fails validation,
 *         ATR_E_TOO_LARGE above 64 KiB, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_ec_key_parse_der(struct atr_ec_key **out, struct atr_span der,
                                               struct atr_err *err);

/* ---- properties --------------------------------------------------------- */

/** The curve of @p key (0 for NULL). */
atr_ec_curve atr_ec_key_curve(const struct atr_ec_key *key);

/** 1 if @p key holds a private key, else 0. */
int atr_ec_key_has_private(const struct atr_ec_key *key);

/**
 * The underlying EVP_PKEY, borrowed until atr_ec_key_free(@p key); for
 * other OpenSSL operations (certificates). Do not modify it.
 */
EVP_PKEY *atr_ec_key_pkey(const struct atr_ec_key *key);

/* ---- signatures --------------------------------------------------------- */

/**
 * Signs a precomputed @p digest (exactly atr_ec_alg_digest_len(@p alg)
 * bytes) with the private @p key, as Key Vault's sign operation, and
 * appends r || s (2 * atr_ec_curve_size() bytes) to @p out. ECDSA is
 * randomised: two signatures of one digest differ. On failure nothing is
 * appended.
 * @return ATR_E_INVALID (public key, unknown @p alg, @p alg not of the key's
 *         curve, wrong digest length), ATR_E_TOO_LARGE (buffer cap),
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_sign_digest(struct atr_buf *out, const struct atr_ec_key *key,
                                             atr_ec_alg alg, struct atr_span digest,
                                             struct atr_err *err);

/**
 * Verifies the r || s signature @p sig over a precomputed @p digest with the
 * public part of @p key, as Key Vault's verify operation.
 * @return ATR_OK for a valid signature, ATR_E_AUTH_FAILED for any invalid
 *         one (see the module comment), ATR_E_INVALID (unknown @p alg, @p alg
 *         not of the key's curve, wrong digest length), ATR_E_NOMEM,
 *         ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_ec_verify_digest(const struct atr_ec_key *key, atr_ec_alg alg,
                                               struct atr_span digest, struct atr_span sig,
                                               struct atr_err *err);

#endif /* ATR_CRYPTO_EC_H */
