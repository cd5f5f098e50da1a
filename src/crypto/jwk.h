/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_JWK_H
#define ATR_CRYPTO_JWK_H

/*
 * JSON Web Keys (RFC 7517, RFC 7518 section 6.3) for RSA keys, as Azure Key
 * Vault sends and accepts them: "kty" is "RSA" or "RSA-HSM"; "n", "e" and,
 * for a private key, "d", "p", "q", "dp", "dq", "qi" are unpadded base64url
 * big-endian integers (strict decoding, base/b64.h).
 *
 * Import is strict and never trusts its input:
 *  - ATR_E_PARSE: not a JSON object, a member of the wrong JSON type, or
 *    bad base64url;
 *  - ATR_E_INVALID: missing "kty", "n" or "e"; a "kty" other than RSA or
 *    RSA-HSM; members of another key type ("k", "crv", "x", "y"); some but
 *    not all private members; a key that fails validation (size outside
 *    1024..16384 bits, bad exponent, inconsistent private parts; see
 *    crypto/rsa.h);
 *  - ATR_E_UNSUPPORTED: multi-prime keys ("oth") and HSM transfer blobs
 *    ("key_hsm" without private members).
 * Other members (kid, alg, use, key_ops, ...) are ignored (RFC 7517 section
 * 4) after a type check of the registered ones. Leading zero bytes in the
 * integers are tolerated on import; export never writes them.
 *
 * Secrets: decoded private integers are wiped after use. JSON strings,
 * however, live in jansson's ordinary heap: atr_jwk_parse() overwrites the
 * private members of the tree it parsed before freeing it, but jansson's
 * lexer buffers and any tree the caller builds or receives from
 * atr_jwk_export() are not wiped. Private JWKs are for import and tests;
 * keep their text short-lived.
 *
 * Thread-safety: reentrant.
 */

#include <stddef.h>

#include <jansson.h>

#include "base/error.h"
#include "crypto/rsa.h"

/* Largest JWK text atr_jwk_parse() accepts (a 16384-bit private key is ~15 KiB). */
#define ATR_JWK_MAX_TEXT ((size_t)64 * 1024)

/* What atr_jwk_export() writes. */
typedef enum atr_jwk_content {
    ATR_JWK_PUBLIC = 1,  /* kty, n, e */
    ATR_JWK_PRIVATE = 2, /* kty, n, e, d, p, q, dp, dq, qi */
} atr_jwk_content;

/**
 * Builds a validated key from the JWK object @p jwk (borrowed).
 * @param[out] out  owned by the caller (atr_rsa_key_free()).
 * @return ATR_E_PARSE, ATR_E_INVALID, ATR_E_UNSUPPORTED (see the module
 *         comment), ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_jwk_import(struct atr_rsa_key **out, const json_t *jwk,
                                         struct atr_err *err);

/**
 * Parses JSON text (@p len bytes, no NUL needed; duplicate member names are
 * rejected) and imports it as atr_jwk_import() does. The fuzzing entry point.
 * @return as atr_jwk_import(); ATR_E_PARSE also for invalid JSON,
 *         ATR_E_TOO_LARGE above ATR_JWK_MAX_TEXT.
 */
ATR_MUST_CHECK atr_status atr_jwk_parse(struct atr_rsa_key **out, const char *text, size_t len,
                                        struct atr_err *err);

/**
 * Exports @p key as a new JWK object with "kty":"RSA" (add "kid",
 * "key_ops" and the like to it as needed).
 * @param[out] out  a new reference owned by the caller (json_decref()).
 * @param what      ATR_JWK_PRIVATE needs a private key (see the module
 *                  comment about secrets in jansson strings).
 * @return ATR_E_INVALID (private export of a public key, bad @p what),
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_jwk_export(json_t **out, const struct atr_rsa_key *key,
                                         atr_jwk_content what, struct atr_err *err);

#endif /* ATR_CRYPTO_JWK_H */
