/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_SERVICE_H
#define ATR_SERVICE_SERVICE_H

/*
 * The data service (`atrest serve`): tenants, encrypted ingest and query of
 * activity records, the tenant's encryption status, audit log, health and
 * metrics, on the HTTPS server (http/server.h). See docs/service.md.
 *
 *   PUT  /v1/tenants/{t}                 create a tenant (DataEncryption.Admin)
 *   GET  /v1/tenants/{t}                 the tenant (any role of the tenant)
 *   POST /v1/tenants/{t}/records         NDJSON ingest (Records.Write)
 *   GET  /v1/tenants/{t}/records         query, NDJSON (Records.Read)
 *   GET  /v1/tenants/{t}/encryption      encryption status (DataEncryption.Admin)
 *   PUT  /v1/tenants/{t}/encryption      enable a customer key {"keyUri"} (validation report)
 *   DELETE /v1/tenants/{t}/encryption    remove the customer layer
 *   GET  /v1/tenants/{t}/audit           audit events (DataEncryption.Admin)
 *   GET  /healthz, GET /metrics          no authentication
 *   GET  /admin/tenants, POST /admin/srk/rotate   bootstrap secret
 *   POST /admin/monitor/run              one monitor pass now (bootstrap secret)
 *   POST /admin/clock                    test mode: {"advanceSeconds": N}
 *
 * Callers present bearer JWTs of the identity server (JWKS, issuer
 * "{authority}/{tid}/v2.0", audience api://atrest by default); "tid" must
 * equal the path tenant and the route's role must be among "roles".
 *
 * Key hierarchy (design section 2, docs/keys.md): each tenant has a random
 * tenant key (TK) stored only as SRK-wrap(TK); the keyring caches unwrapped
 * TKs for a bounded time; each block of records is sealed under a fresh DEK
 * wrapped by the TK. A 2xx answer to an ingest means every accepted record
 * is committed to the store (one transaction, fsync'ed).
 *
 * Thread-safety: handlers run concurrently on the server's pool; the
 * object is internally synchronised. new/free run on one thread while no
 * server uses the object.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/error.h"
#include "http/router.h"
#include "http/server.h"
#include "service/monitor.h"

#define ATR_SERVICE_AUDIENCE_DEFAULT    "api://atrest"
#define ATR_SERVICE_AUTHORITY_MAX       256
#define ATR_SERVICE_BLOCK_BYTES_DEFAULT ((size_t)64 * 1024)
#define ATR_SERVICE_MAX_BODY_DEFAULT    ((size_t)8 << 20)
#define ATR_SERVICE_QUERY_BYTES_MAX     ((size_t)8 << 20)
/*
 * Cached tenant keys. Each takes a 32-byte allocation of the locked secure
 * heap (1 MiB in the atrest binary, about 32 000 small allocations), which
 * the keyring must never exhaust: past it every new data key fails. The
 * default leaves half the heap to data keys and other secrets in flight.
 */
#define ATR_SERVICE_KEYRING_DEFAULT 16384
#define ATR_SERVICE_KEYRING_MAX     16384

/* Roles of the service's app registration. */
#define ATR_ROLE_WRITE "Records.Write"
#define ATR_ROLE_READ  "Records.Read"
#define ATR_ROLE_ADMIN "DataEncryption.Admin"

struct atr_service;

/* Settings; zero fields mean the documented default. */
struct atr_service_opts {
    const char *store_location;    /* "sqlite:PATH" or a path; required */
    const char *srk_path;          /* service root key file, created when missing; required */
    const char *idp_authority;     /* identity server base URL; required for /v1 */
    const char *ca_file;           /* CA to trust for its JWKS; NULL = system */
    const char *audience;          /* default ATR_SERVICE_AUDIENCE_DEFAULT */
    const char *admin_secret;      /* bootstrap secret of /admin (>= 16 chars); NULL = off */
    const struct atr_clock *clock; /* NULL = the real clock */
    size_t block_bytes;            /* plaintext bytes per block; default 64 KiB */
    size_t max_body;               /* ingest body limit; default 8 MiB */
    size_t max_lines;              /* records per ingest call; default 10000 */
    size_t max_line;               /* bytes per record; default 64 KiB */
    int no_compress;               /* 1: blocks are not zstd-compressed */
    int64_t tk_ttl_ms;             /* keyring lifetime of a TK; default 10 min */
    size_t keyring_max;            /* cached TKs; default ATR_SERVICE_KEYRING_DEFAULT */
    int64_t flush_interval_ms;     /* group commit: wait this long for more calls; default 0 */
    int bench_plaintext;           /* benchmark builds only: store blocks unsealed */
    /* customer keys (bring your own key); byok_client_id NULL = not offered */
    const char *byok_client_id;          /* the service's multi-tenant application */
    const char *byok_client_secret;      /* its client secret, or NULL with a certificate */
    const char *byok_client_cert_pem;    /* or its certificate (PEM) ... */
    struct atr_span byok_client_key_pem; /* ... and private key (PEM; read during new) */
    const char *byok_authority;          /* default idp_authority */
    const char *const *byok_vault_hosts; /* vault hosts allowed (kms/akv.h); required with byok */
    size_t byok_nvault_hosts;
    /* the key monitor (service/monitor.h): intervals, zero = defaults */
    struct atr_monitor_opts monitor;
    size_t reserve_size; /* pre-wrapped DEKs per customer-key tenant; 0 = 8 */
    int no_reserve;      /* 1: no reserve (ingest while locked answers 503) */
    /*
     * Test mode: the lifecycle clock (monitor, grace, audit times) is this
     * offset clock, which POST /admin/clock moves forward; tokens and the
     * vault client keep the real clock. NULL = off (opts.clock applies).
     */
    struct atr_offset_clock *test_clock;
};

/**
 * Opens the store and the service root key (creating the key file on
 * first start; refusing one with group/other access or another owner).
 * @param[out] out owned by the caller (atr_service_free).
 * @return ATR_E_CONFIG (bad option, SRK file mode/owner), ATR_E_IO,
 *         ATR_E_UNSUPPORTED (storage engine), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_service_new(struct atr_service **out,
                                          const struct atr_service_opts *opts, struct atr_err *err);

/** Frees @p s (after its server stopped). NULL is allowed. */
void atr_service_free(struct atr_service *s);

/** The route table (static) and its length. */
const struct atr_route *atr_service_routes(size_t *out_n);

/** The auth hook for atr_http_server_opts.auth (auth_ctx = the service). */
atr_status atr_service_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                            const struct atr_route *route, void *auth_ctx);

/** The observe hook for atr_http_server_opts.observe (metrics). */
void atr_service_observe(const struct atr_route *route, const char *method, unsigned status,
                         int64_t duration_ms, void *observe_ctx);

/**
 * Creates tenant @p tenant with a fresh tenant key (idempotent: an
 * existing tenant is left as it is and *out_created is 0).
 * @return ATR_E_INVALID (bad id), ATR_E_IO, ATR_E_CRYPTO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_service_tenant_ensure(struct atr_service *s, const char *tenant,
                                                    const char *actor, int *out_created,
                                                    struct atr_err *err);

/**
 * Adds a service root key version and re-wraps every tenant key under it,
 * in one store transaction; records are not touched.
 * @param[out] out_version the new SRK version; out_tenants the count.
 * @return ATR_E_IO, ATR_E_CRYPTO, ATR_E_NOMEM (the store is unchanged on
 *         failure; the new SRK version stays in the file, unused).
 */
ATR_MUST_CHECK atr_status atr_service_srk_rotate(struct atr_service *s, uint32_t *out_version,
                                                 size_t *out_tenants, struct atr_err *err);

#endif /* ATR_SERVICE_SERVICE_H */
