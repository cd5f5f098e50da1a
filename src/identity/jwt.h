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

#endif /* ATR_IDENTITY_JWT_H */
