/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_IDENTITY_IDP_H
#define ATR_IDENTITY_IDP_H

/*
 * The identity server (`atrest idp`): a Microsoft Entra ID compatible
 * subset on top of the HTTPS server (http/server.h). See docs/identity.md.
 *
 *  - POST /{tenant}/oauth2/v2.0/token            client credentials grant
 *  - GET  /{tenant}/v2.0/.well-known/openid-configuration
 *  - GET  /{tenant}/discovery/v2.0/keys          JWKS (tenant may be "common")
 *  - /v1.0/servicePrincipals[/{id}]              Graph subset (directory admin)
 *  - /admin/...                                  dev admin surface (bootstrap secret)
 *
 * An atr_idp owns the store (identity/idp_store.h), the loaded signing keys,
 * and the failed-authentication counters of the rate limiter. Access tokens
 * are RS256 JWTs signed with the current signing key (identity/jwt.h).
 *
 * Signing-key rotation: atr_idp_keys_rotate() publishes a new key at once
 * (two keys in the JWKS) which starts signing after the rollover period;
 * the previous key stays published for the retain period after that, then
 * it is deleted. All of it follows the injectable clock.
 *
 * Thread-safety: the handlers and the auth hook run on the server's pool
 * threads; an atr_idp is internally locked. new/free run on one thread
 * while no server uses the object.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/error.h"
#include "http/router.h"
#include "http/server.h"

#define ATR_IDP_AUTHORITY_MAX    256
#define ATR_IDP_MAX_RESOURCES    16
#define ATR_IDP_LIFETIME_DEFAULT 3599
/* The role that makes a token a directory admin token for Graph. */
#define ATR_IDP_GRAPH_ROLE     "Application.ReadWrite.All"
#define ATR_IDP_GRAPH_RESOURCE "https://graph.microsoft.com"
/* Header naming the directory of a Graph call made with the bootstrap secret. */
#define ATR_IDP_DIRECTORY_HEADER "X-Atrest-Directory"

struct atr_idp;

/* Settings; zero fields mean the documented default. */
struct atr_idp_opts {
    const char *db_path;           /* the SQLite file; required */
    const struct atr_clock *clock; /* NULL = the real clock */
    const char *authority;         /* "https://host:port"; may be set later */
    const char *admin_secret;      /* bootstrap secret (>= 16 chars); NULL = /admin off */
    int64_t token_lifetime_s;      /* default 3599, 300..86400 */
    /* audiences a scope may name ("{resource}/.default"); default:
     * https://vault.azure.net, https://graph.microsoft.com, api://atrest */
    const char *const *resources;
    size_t nresources;
    unsigned rl_max_failures; /* failed client authentications per window; default 5 */
    int64_t rl_window_s;      /* default 300 */
    int64_t key_rollover_s;   /* new key published before it signs; default 86400 */
    int64_t key_retain_s;     /* old key published after the switch; default 86400 */
    unsigned key_bits;        /* default 2048 */
};

/**
 * Opens the store, loads the signing keys (creating the first one when
 * there is none).
 * @param[out] out owned by the caller (atr_idp_free).
 * @return ATR_E_CONFIG (bad option), errors of atr_idp_store_open,
 *         ATR_E_CRYPTO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_idp_new(struct atr_idp **out, const struct atr_idp_opts *opts,
                                      struct atr_err *err);

/** Frees @p idp (after its server stopped). NULL is allowed. */
void atr_idp_free(struct atr_idp *idp);

/**
 * Sets the authority (base URL, no trailing slash) used in issuers and
 * metadata, e.g. the server's URL once it listens. @return ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_idp_set_authority(struct atr_idp *idp, const char *authority,
                                                struct atr_err *err);

/** The route table (static) and its length. */
const struct atr_route *atr_idp_routes(size_t *out_n);

/** The auth hook for atr_http_server_opts.auth (auth_ctx = the atr_idp). */
atr_status atr_idp_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                        const struct atr_route *route, void *auth_ctx);

/**
 * Starts a signing-key rollover: a new key is published now and signs from
 * now + @p rollover_s (negative: the configured rollover); the current key
 * is retired the retain period after that.
 * @param[out] out_kid the new key's kid (ATR_IDP_KID_MAX + 1 bytes), may be NULL.
 * @return ATR_E_CRYPTO, ATR_E_IO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_idp_keys_rotate(struct atr_idp *idp, int64_t rollover_s,
                                              char *out_kid, struct atr_err *err);

#endif /* ATR_IDENTITY_IDP_H */
