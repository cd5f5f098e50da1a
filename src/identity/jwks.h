/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_IDENTITY_JWKS_H
#define ATR_IDENTITY_JWKS_H

/*
 * JSON Web Key Sets (RFC 7517 section 5) of token issuers, and a cache of
 * the set published at an issuer's jwks_uri, for verifying Entra-style
 * access tokens (identity/jwt.h) by their header's "kid".
 *
 * A set (struct atr_jwks) maps kid -> public RSA key. Parsing is strict:
 * the document is an object with a "keys" array of at most ATR_JWKS_MAX_KEYS
 * entries; entries with another "kty" (EC, oct, OKP ...), with "use" other
 * than "sig", with an "alg" other than "RS256", or without "kid" are
 * skipped; every remaining entry must import as a valid public RSA key
 * (crypto/jwk.h), must not carry private members, and its kid must be
 * unique, else the whole document is rejected (a set is all or nothing).
 * Sets are immutable and reference-counted, so a cache can replace its set
 * while other threads still verify with keys of the old one.
 *
 * The cache (struct atr_jwks_cache) fetches the set over HTTPS
 * (http/client.h; peer verification always on, optional CA file, connect
 * and total timeouts, body capped at ATR_JWKS_MAX_TEXT) and:
 *  - serves known kids from memory, without I/O;
 *  - on an unknown kid refetches, but at most once per
 *    min_refresh_interval_ms after a successful fetch and once per
 *    retry_interval_ms after a failed one (monotonic time of the injected
 *    clock): a flood of tokens with random kids costs the issuer at most one
 *    request per interval;
 *  - refetches when the set is older than max_age_ms (on the next lookup,
 *    by the thread doing it; at most once per min_refresh_interval_ms even
 *    when fetches fail), for key rotation without unknown kids;
 *  - keeps serving the last good set when a refetch fails (the server is
 *    down, answers garbage, or an invalid document);
 *  - fetches single-flight: one thread fetches (the one whose lookup needed
 *    it); lookups of known kids never wait for another thread's fetch, and
 *    lookups that need the fetch wait for its result instead of fetching
 *    again.
 *
 * Thread-safety: sets are immutable (retain/release are atomic). A cache
 * is thread-safe (one mutex; the HTTP client is used by one fetching thread
 * at a time).
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/error.h"
#include "crypto/rsa.h"
#include "identity/jwt.h"

/* Entries of "keys" accepted (skipped ones included). */
#define ATR_JWKS_MAX_KEYS 64
/* Largest JWKS document, in bytes. */
#define ATR_JWKS_MAX_TEXT ((size_t)256 * 1024)

struct atr_jwks;
struct atr_jwks_cache;

/* ---- key sets ----------------------------------------------------------- */

/**
 * Builds a set from a parsed JWKS document @p doc (borrowed).
 * @param[out] out a set holding one reference (atr_jwks_release).
 * @return ATR_E_PARSE (not an object, no "keys" array, an entry not an
 *         object, "kty"/"kid"/"use"/"alg" of the wrong type),
 *         ATR_E_INVALID (a key that does not import, a private key, a
 *         duplicate kid; the message names the entry's index),
 *         ATR_E_TOO_LARGE (more than ATR_JWKS_MAX_KEYS entries),
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwks_from_json(struct atr_jwks **out, const json_t *doc,
                                             struct atr_err *err);

/**
 * Parses JSON text (@p len bytes; duplicate member names rejected) and
 * builds a set as atr_jwks_from_json() does.
 * @return as atr_jwks_from_json(); ATR_E_PARSE also for invalid JSON,
 *         ATR_E_TOO_LARGE above ATR_JWKS_MAX_TEXT.
 */
ATR_MUST_CHECK atr_status atr_jwks_parse(struct atr_jwks **out, const char *text, size_t len,
                                         struct atr_err *err);

/** Adds a reference to @p set (NULL is allowed). */
void atr_jwks_retain(struct atr_jwks *set);

/** Drops a reference; the last one frees the set and its keys. NULL ok. */
void atr_jwks_release(struct atr_jwks *set);

/** Number of keys in the set (skipped entries are not counted). */
size_t atr_jwks_count(const struct atr_jwks *set);

/** The kid of key @p i (< atr_jwks_count()), borrowed from @p set. */
const char *atr_jwks_kid_at(const struct atr_jwks *set, size_t i);

/**
 * The public key for @p kid (exact match), borrowed from @p set (valid while
 * the caller holds a reference to the set), or NULL.
 */
const struct atr_rsa_key *atr_jwks_get(const struct atr_jwks *set, const char *kid);

/* ---- the cache ---------------------------------------------------------- */

/* Settings of a cache; zero fields mean the documented default. */
struct atr_jwks_cache_opts {
    const char *jwks_uri;            /* https URL of the JWKS; required */
    const char *ca_file;             /* PEM CAs to trust; NULL = the system store */
    unsigned connect_timeout_ms;     /* default 5000 */
    unsigned timeout_ms;             /* whole request; default 10000 */
    int64_t min_refresh_interval_ms; /* after a successful fetch; default 300000 (5 min) */
    int64_t retry_interval_ms;       /* after a failed fetch; default 10000 */
    int64_t max_age_ms;              /* refetch a set older than this; default 12 h */
    const struct atr_clock *clock;   /* NULL = the real clock */
};

/**
 * Creates a cache; nothing is fetched yet (see atr_jwks_cache_refresh()).
 * @param[out] out owned by the caller (atr_jwks_cache_free).
 * @return ATR_E_CONFIG (no or non-https jwks_uri, negative intervals, CA
 *         file unreadable), ATR_E_NOMEM, ATR_E_INTERNAL.
 */
ATR_MUST_CHECK atr_status atr_jwks_cache_new(struct atr_jwks_cache **out,
                                             const struct atr_jwks_cache_opts *opts,
                                             struct atr_err *err);

/** Frees the cache (its set is released). No call may be running. NULL ok. */
void atr_jwks_cache_free(struct atr_jwks_cache *c);

/**
 * Fetches the set now, ignoring the rate limits (start-up, operators), and
 * installs it on success; on failure the previous set stays.
 * @return ATR_E_NETWORK, ATR_E_TLS, ATR_E_TIMEOUT, ATR_E_TOO_LARGE (transport),
 *         ATR_E_UPSTREAM (a status other than 200, or a document that does
 *         not parse as a JWKS; the message says which), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwks_cache_refresh(struct atr_jwks_cache *c, struct atr_err *err);

/**
 * Looks up @p kid, refetching as the module comment describes.
 * @param[out] out_set a reference to the set holding the key (release it
 *             with atr_jwks_release() when done with the key).
 * @param[out] out_key the key, borrowed from *@p out_set.
 * @return ATR_E_NOT_FOUND (no such kid after a refetch, or the refetch is
 *         rate-limited), ATR_E_UNAVAILABLE (unknown kid and the refetch
 *         failed; the message gives the cause), ATR_E_INVALID, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwks_cache_get(struct atr_jwks **out_set,
                                             const struct atr_rsa_key **out_key,
                                             struct atr_jwks_cache *c, const char *kid,
                                             struct atr_err *err);

/** Number of fetch attempts so far (for tests and metrics). */
unsigned long atr_jwks_cache_fetches(struct atr_jwks_cache *c);

/* ---- verification ------------------------------------------------------- */

struct atr_jwks_verify_opts {
    struct atr_jwt_verify_opts jwt; /* jwt.issuer: exact issuer */
    /*
     * Multi-tenant issuer instead of jwt.issuer (set at most one): a
     * template with one "{tenantid}" that must equal the token's "tid",
     * e.g. "https://login.microsoftonline.com/{tenantid}/v2.0"
     * (atr_jwt_check_issuer_template()).
     */
    const char *issuer_template;
};

/**
 * Verifies @p token with the key of @p set named by the token's "kid"
 * (atr_jwt_verify_with_kid()) and checks the issuer template if set.
 * @return ATR_E_UNAUTHORIZED (as atr_jwt_verify_with_key(); "JWT: kid: ..."
 *         when no key has the token's kid), ATR_E_INVALID (both issuer and
 *         issuer_template set, bad template), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_jwks_verify(struct atr_jwt_claims *out, const struct atr_jwks *set,
                                          const char *token, size_t len,
                                          const struct atr_jwks_verify_opts *opts,
                                          struct atr_err *err);

/**
 * As atr_jwks_verify() with the key from @p c: reads "kid" (and checks
 * "alg") from the header before any lookup, so malformed tokens never cause
 * a fetch.
 * @return as atr_jwks_verify(); ATR_E_UNAVAILABLE when the token's kid is
 *         unknown and the keys could not be refetched.
 */
ATR_MUST_CHECK atr_status atr_jwks_cache_verify(struct atr_jwt_claims *out,
                                                struct atr_jwks_cache *c, const char *token,
                                                size_t len, const struct atr_jwks_verify_opts *opts,
                                                struct atr_err *err);

#endif /* ATR_IDENTITY_JWKS_H */
