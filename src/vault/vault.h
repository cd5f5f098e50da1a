/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_VAULT_VAULT_H
#define ATR_VAULT_VAULT_H

/*
 * The key vault server (`atrest vault`): Azure Key Vault's keys data plane
 * and a small management surface, on the HTTPS server (http/server.h).
 * See docs/vault.md for the routes and behaviour, and the Key Vault
 * reference the project follows for the wire format.
 *
 * Request pipeline of a data-plane call (the auth hook, before the body is
 * read):
 *  1. vault selection: the Host header "{vault}.{dns_suffix}[:port]" names
 *     the vault; any other host means the default vault;
 *  2. api-version must be 7.0 .. 7.5 (previews included);
 *  3. authentication: a bearer token from the configured identity server
 *     (JWKS, issuer "{authority}/{tid}/v2.0", audience
 *     https://vault.azure.net, expiry; tid = the vault's directory), else
 *     401 with the WWW-Authenticate challenge;
 *  4. firewall (network ACLs; trusted services bypass), else 403
 *     ForbiddenByFirewall;
 *  5. access policy: the permission the operation needs, else 403
 *     AccessDenied naming the caller and the permission;
 *  6. throttling per vault per 10 s (weighted by key type and size), else
 *     429 with Retry-After;
 *  7. injected faults (test mode only): latency, error rate.
 * Every decision is logged ("vault.authz").
 *
 * Key material: private keys are sealed with AES-256-GCM under the vault
 * master key (a 32-byte file, 0600, created on first start) before they
 * reach SQLite; unsealed keys are cached in memory for the process's life
 * (the private-key check costs milliseconds). Backups are sealed under a
 * key derived from the master key, so a backup restores into any vault of
 * the same server, as Azure restores within its geography.
 *
 * Time: key lifecycle (nbf/exp, created/updated, rotation policy, soft
 * delete and purge dates) follows the injected clock, which test mode lets
 * an operator advance (POST /admin/clock); token expiry follows the real
 * clock. atr_vault_tick() applies due rotations and purges; the server runs
 * it from a background thread every second.
 *
 * Thread-safety: handlers run concurrently; the object is internally
 * locked. new/free/ticker calls run on one controlling thread.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/error.h"
#include "http/router.h"
#include "http/server.h"

#define ATR_VAULT_AUDIENCE      "https://vault.azure.net"
#define ATR_VAULT_DNS_SUFFIX    "vault.azure.net"
#define ATR_VAULT_MAX_TRUSTED   16
#define ATR_VAULT_AUTHORITY_MAX 256

struct atr_vault;

/* Settings; zero fields mean the documented default. */
struct atr_vault_opts {
    const char *db_path;         /* SQLite file; required */
    const char *master_key_path; /* 32-byte key file (0600), created when missing; required */
    const char *idp_authority;   /* identity server base URL; required for the data plane */
    const char *ca_file;         /* CA to trust when fetching its keys; NULL = system */
    const char *dns_suffix;      /* default ATR_VAULT_DNS_SUFFIX */
    const char *default_vault;   /* answers hosts without the suffix; NULL = none (404) */
    const char *admin_secret;    /* bootstrap secret of /admin (>= 16 chars); NULL = off */
    const char *const *trusted_app_ids; /* "trusted services" for the firewall bypass */
    size_t ntrusted;
    int test_mode;                 /* enables /admin/faults and /admin/clock */
    const struct atr_clock *clock; /* key lifecycle clock; NULL = real (test mode: a test clock) */
};

/**
 * Opens the store and the master key (creating both when missing).
 * @param[out] out owned by the caller (atr_vault_free).
 * @return ATR_E_CONFIG (bad option; master key file of the wrong size or
 *         mode), ATR_E_IO, ATR_E_NOMEM, errors of the JWKS cache.
 */
ATR_MUST_CHECK atr_status atr_vault_new(struct atr_vault **out, const struct atr_vault_opts *opts,
                                        struct atr_err *err);

/** Stops the ticker and frees @p v (after its server stopped). NULL is allowed. */
void atr_vault_free(struct atr_vault *v);

/** The route table (static) and its length. */
const struct atr_route *atr_vault_routes(size_t *out_n);

/** The auth hook for atr_http_server_opts.auth (auth_ctx = the atr_vault). */
atr_status atr_vault_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                          const struct atr_route *route, void *auth_ctx);

/** The accept hook for atr_http_server_opts.accept (injected connection refusal). */
int atr_vault_accept(const char *client_ip, void *accept_ctx);

/**
 * Applies what is due now: rotations asked for by rotation policies, and
 * purges of soft-deleted keys past their retention.
 * @param[out] out_rotated / out_purged counts (may be NULL).
 * @return ATR_E_IO, ATR_E_CRYPTO, ATR_E_NOMEM (the first failure; the
 *         remaining keys are still processed).
 */
ATR_MUST_CHECK atr_status atr_vault_tick(struct atr_vault *v, unsigned *out_rotated,
                                         unsigned *out_purged, struct atr_err *err);

/** Starts the background thread calling atr_vault_tick() every second. */
ATR_MUST_CHECK atr_status atr_vault_ticker_start(struct atr_vault *v, struct atr_err *err);

/** Stops the background thread (idempotent). */
void atr_vault_ticker_stop(struct atr_vault *v);

#endif /* ATR_VAULT_VAULT_H */
