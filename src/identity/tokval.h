/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_IDENTITY_TOKVAL_H
#define ATR_IDENTITY_TOKVAL_H

/*
 * Validation of the access tokens an Entra-style identity server issues to
 * callers of our servers (the vault, the data service): one object per
 * (authority, audience) holding the authority's JWKS cache
 * (identity/jwks.h) at {authority}/common/discovery/v2.0/keys, and the
 * checks every such server makes: RS256 signature by a published key,
 * issuer "{authority}/{tid}/v2.0" for the token's own tid, the audience,
 * an expiry (5 minutes of skew), from the injected clock.
 *
 * Thread-safety: a validator is thread-safe (the cache is); new/free run
 * on one thread.
 */

#include <stddef.h>

#include "base/clock.h"
#include "base/error.h"
#include "identity/jwt.h"

#define ATR_TOKVAL_AUTHORITY_MAX 256
#define ATR_TOKVAL_AUDIENCE_MAX  256

struct atr_tokval;

/**
 * Creates a validator; nothing is fetched yet.
 * @param authority the identity server's base URL (https; a trailing '/' is
 *                  dropped).
 * @param ca_file   CA to trust for the JWKS fetch; NULL = the system store.
 * @param audience  the "aud" tokens must carry.
 * @param clock     NULL = the real clock.
 * @param[out] out  owned by the caller (atr_tokval_free).
 * @return ATR_E_CONFIG (not https, too long, CA unreadable), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_tokval_new(struct atr_tokval **out, const char *authority,
                                         const char *ca_file, const char *audience,
                                         const struct atr_clock *clock, struct atr_err *err);

/** Frees @p v. NULL is allowed. */
void atr_tokval_free(struct atr_tokval *v);

/** The authority, normalised (no trailing '/'); borrowed. */
const char *atr_tokval_authority(const struct atr_tokval *v);

/**
 * Verifies @p token (NUL-terminated) as described above.
 * @param[out] out the claims (atr_jwt_claims_cleanup); empty on failure.
 * @return ATR_E_UNAUTHORIZED (the message names the failed check, e.g.
 *         "JWT: audience ..."), ATR_E_UNAVAILABLE (unknown kid and the keys
 *         cannot be fetched), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_tokval_verify(struct atr_jwt_claims *out, struct atr_tokval *v,
                                            const char *token, struct atr_err *err);

#endif /* ATR_IDENTITY_TOKVAL_H */
