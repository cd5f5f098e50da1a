/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_IDENTITY_JWT_H
#define ATR_IDENTITY_JWT_H

/*
 * JSON Web Tokens as Microsoft Entra ID issues them: JWS compact
 * serialisation, RS256 only (RFC 7515, 7519). The identity server signs
 * access tokens with it; the identity server (client assertions), the vault
 * and the service verify with it.
 *
 * Verification is strict: alg must be RS256 (never "none", HS*, or anything
 * the key did not ask for), the header's kid must match the key used, every
 * part is strict base64url of a JSON object, sizes are bounded, and the
 * registered claims are checked against the options (issuer, audience,
 * exp/nbf with a small skew, from an injectable clock).
 *
 * Thread-safety: all functions are reentrant; claims belong to their owner.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/error.h"
#include "crypto/rsa.h"

/* Longest token accepted, in bytes. */
#define ATR_JWT_MAX_LEN 16384

/* The claims our services use; strings owned, NULL when absent. */
struct atr_jwt_claims {
    char *kid; /* from the header */
    char *iss;
    char *sub;
    char *aud; /* a single audience (an array audience is rejected) */
    char *tid;
    char *oid;
    char *appid; /* "appid" (v1) or "azp" (v2) */
    char *jti;
    int64_t iat; /* 0 when absent */
    int64_t nbf; /* 0 when absent */
    int64_t exp; /* 0 when absent */
    char **roles;
    size_t nroles;
};

struct atr_jwt_verify_opts {
    const struct atr_clock *clock; /* NULL: the real clock */
    const char *issuer;            /* exact match when non-NULL */
    const char *audience;          /* exact match when non-NULL */
    int64_t skew_s;                /* allowed clock skew in seconds (0 means 0) */
    int require_exp;               /* 1: a token without exp is rejected */
};

/**
 * Signs @p claims (a JSON object, borrowed) as an RS256 token whose header is
 * {"typ":"JWT","alg":"RS256","kid":@p kid}. @p key must hold a private key.
 * @param[out] out the token, a NUL-terminated string owned by the caller
 *             (atr_free).
 * @return ATR_E_INVALID (no private key, claims not an object), ATR_E_CRYPTO,
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwt_sign_rs256(char **out, const struct atr_rsa_key *key,
                                             const char *kid, const json_t *claims,
                                             struct atr_err *err);

/**
 * Verifies @p token (@p len bytes) with the public part of @p key and checks
 * its claims against @p opts. On success fills @p out (release with
 * atr_jwt_claims_cleanup); on failure @p out is empty.
 * @return ATR_E_UNAUTHORIZED with a message naming the failed check
 *         (malformed, alg, kid, signature, expired, not yet valid, issuer,
 *         audience), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwt_verify_with_key(struct atr_jwt_claims *out, const char *token,
                                                  size_t len, const struct atr_rsa_key *key,
                                                  const struct atr_jwt_verify_opts *opts,
                                                  struct atr_err *err);

/** Releases the strings of @p c and empties it. NULL and repeats are fine. */
void atr_jwt_claims_cleanup(struct atr_jwt_claims *c);

/* ---- additions (jwt.c) -------------------------------------------------- */

/*
 * Further bounds of verification (beyond ATR_JWT_MAX_LEN); a token past any
 * of them is rejected as malformed:
 *  - the payload has at most ATR_JWT_MAX_CLAIMS members;
 *  - every string claim we read (iss, sub, aud, tid, oid, appid/azp, jti) and
 *    every role is at most ATR_JWT_MAX_STR bytes; "kid" at most
 *    ATR_JWT_MAX_KID bytes; at most ATR_JWT_MAX_ROLES roles;
 *  - iat, nbf and exp are JSON numbers in [0, ATR_JWT_MAX_TIME]; fractional
 *    NumericDates (RFC 7519 allows them; MSAL's client assertions use them)
 *    count in whole seconds, rounded down;
 *  - the header has no "crit" member (no extension is understood);
 *  - the verification key has at least ATR_JWT_MIN_KEY_BITS bits and the
 *    clock skew (opts->skew_s) is in [0, ATR_JWT_MAX_SKEW_S], else the call
 *    fails with ATR_E_INVALID (caller errors, not token errors).
 * Time checks, with now = the clock's wall time in whole seconds:
 *  expired when now >= exp + skew; not yet valid when now < nbf - skew;
 *  issued in the future when iat > now + skew.
 * "aud" must be a single string: an array (even of one element) is
 * rejected, as Entra access tokens always carry one audience.
 * Claims are parsed only after the signature has been verified.
 */
#define ATR_JWT_MAX_CLAIMS   128
#define ATR_JWT_MAX_STR      1024
#define ATR_JWT_MAX_KID      256
#define ATR_JWT_MAX_ROLES    256
#define ATR_JWT_MAX_TIME     ((int64_t)253402300799) /* 9999-12-31T23:59:59Z */
#define ATR_JWT_MAX_SKEW_S   ((int64_t)86400)
#define ATR_JWT_MIN_KEY_BITS 2048
#define ATR_JWT_MAX_TID      128 /* "tid" length for issuer templates */

/* The JOSE header of a token, decoded but NOT verified; strings owned. */
struct atr_jwt_header {
    char *alg; /* always set after a successful decode */
    char *kid; /* NULL when absent */
    char *typ; /* NULL when absent */
    char *x5t; /* NULL when absent */
};

/**
 * Decodes only the header of @p token (@p len bytes) to choose a key: the
 * token must have exactly three parts, the header must be strict base64url
 * of a JSON object with a string "alg"; "kid", "typ", "x5t" must be strings
 * when present. Nothing is verified: never trust these values beyond
 * picking a key.
 * @param[out] out filled on success (release with atr_jwt_header_cleanup);
 *             empty on failure.
 * @return ATR_E_UNAUTHORIZED ("JWT: malformed ..."), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwt_decode_header(struct atr_jwt_header *out, const char *token,
                                                size_t len, struct atr_err *err);

/** Releases the strings of @p h and empties it. NULL and repeats are fine. */
void atr_jwt_header_cleanup(struct atr_jwt_header *h);

/**
 * As atr_jwt_verify_with_key(), and the header's "kid" must equal
 * @p expected_kid (the kid under which the caller found @p key) when
 * @p expected_kid is non-NULL. A token without "kid" is always rejected.
 * @return as atr_jwt_verify_with_key(); ATR_E_INVALID for bad arguments.
 */
ATR_MUST_CHECK atr_status atr_jwt_verify_with_kid(struct atr_jwt_claims *out, const char *token,
                                                  size_t len, const struct atr_rsa_key *key,
                                                  const char *expected_kid,
                                                  const struct atr_jwt_verify_opts *opts,
                                                  struct atr_err *err);

/**
 * As atr_jwt_verify_with_key() for RFC 7523 client assertions, which MSAL
 * and the Azure SDKs write with the signing certificate's thumbprint
 * ("x5t", "x5t#S256") in the header and usually without "kid": here "kid"
 * may be absent. Every other check is the same; the caller chooses @p key
 * (e.g. among the application's registered certificates).
 * @return as atr_jwt_verify_with_key().
 */
ATR_MUST_CHECK atr_status atr_jwt_verify_assertion(struct atr_jwt_claims *out, const char *token,
                                                   size_t len, const struct atr_rsa_key *key,
                                                   const struct atr_jwt_verify_opts *opts,
                                                   struct atr_err *err);

/**
 * Checks a verified token's issuer against a multi-tenant template holding
 * exactly one "{tenantid}", e.g.
 * "https://login.microsoftonline.com/{tenantid}/v2.0": "iss" must equal the
 * template with "{tenantid}" replaced by the token's own "tid", which must
 * be 1..ATR_JWT_MAX_TID characters of [A-Za-z0-9._-].
 * @return ATR_E_UNAUTHORIZED ("JWT: issuer ..."), ATR_E_INVALID (a template
 *         without exactly one "{tenantid}"), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwt_check_issuer_template(const struct atr_jwt_claims *claims,
                                                        const char *tmpl, struct atr_err *err);

#endif /* ATR_IDENTITY_JWT_H */
