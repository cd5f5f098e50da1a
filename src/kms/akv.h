/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_KMS_AKV_H
#define ATR_KMS_AKV_H

/*
 * The Azure Key Vault client of the bring-your-own-key layer (design
 * sections 2 and 3). It talks to the real service (and to `atrest vault`,
 * its test peer) with exactly the three key permissions the design allows:
 *
 *   list       GET  {vault}/keys/{name}/versions?api-version=7.4&maxresults=25
 *              (following "nextLink" on the same host, a bounded number of pages)
 *   wrapKey    POST {vault}/keys/{name}/wrapkey                (versionless: the latest)
 *   unwrapKey  POST {vault}/keys/{name}/{version}/unwrapkey    (or versionless)
 *
 * with RSA-OAEP-256 (default) or RSA-OAEP and base64url values. It never
 * calls "get". The answer's "kid" names the version that was used.
 *
 * Authentication follows the Azure SDKs: the first call to a vault goes
 * without a token (or with a cached one); the 401 answer's challenge
 *   WWW-Authenticate: Bearer authorization="{authority}/{tenant}", resource="{resource}"
 * (or scope="{resource}/.default") names the customer's directory and the
 * resource. The client checks the challenge before it trusts it: the
 * authority must be the configured one (same scheme, host and port), the
 * resource must be one of the configured resources, and for DNS-named
 * vaults the resource's host must be a DNS suffix of the vault's host (the
 * SDKs' verify_challenge_resource). It then gets a token with the client
 * credentials grant
 *   POST {authority}/{tenant}/oauth2/v2.0/token
 *   grant_type=client_credentials&client_id=…&scope={resource}/.default
 *   &client_secret=…   or   &client_assertion_type=…jwt-bearer&client_assertion=<RS256 JWT>
 * (the assertion: header x5t = the certificate's SHA-1 thumbprint, x5t#S256
 * its SHA-256 one; aud = the token endpoint; iss = sub = client id; jti
 * random; nbf/iat now; exp now + 10 minutes; see Credentials below) and
 * retries the call once. Challenges are remembered per vault host and
 * tokens per (authority, tenant, resource) until 5 minutes
 * before "expires_in" (half the lifetime for tokens shorter than 10
 * minutes), so later calls go with a token at once. A 401 answered to a
 * cached token drops that token and is retried once with a fresh one;
 * nothing else is retried: 429 and 5xx are returned with Retry-After and the
 * caller (the key monitor) owns backoff.
 *
 * Host restrictions. Key URIs come from tenant administrators, so the
 * client only calls vault hosts that match the configured list (by default
 * the Azure public cloud's "vault.azure.net"), and an operation may name the
 * directory its vault must belong to (struct atr_akv_key_uri.directory):
 * otherwise a URI pointing at a host that answers with another directory's
 * challenge could make the service fetch, and hand over, a Key Vault token
 * of that directory.
 *
 * Transport: libcurl's multi interface. A call or a batch runs on an
 * engine (a multi handle with its connection and DNS caches, a share of TLS
 * sessions and idle easy handles) that the client keeps between runs, so
 * connections are reused from one call or batch to the next. Every request
 * is HTTPS with peer and host verification (a CA file may be given;
 * verification cannot be turned off), TLS 1.2 or later, redirects are not
 * followed, and each has a connect timeout, a total timeout (opts.timeout_ms,
 * cut to the run's deadline) and a response size cap. Loopback works as any
 * other host (tests use https://127.0.0.1:PORT).
 *
 * Batches (atr_akv_batch_*) take many operations (for example, unwraps for
 * many tenants) and give each its own result. A run drives all of them at
 * once, each a small state machine (token if needed -> vault request -> on
 * a 401 challenge: token -> retry; listings follow nextLink), with at most
 * opts.max_host_connections requests in flight per host and 64 in all
 * (more wait for a free slot). Within a run, one operation asks a vault
 * without a known challenge for it while the others to that vault wait, and
 * a token is requested once per (authority, directory, resource) however
 * many operations need it: concurrent needs, in the same run or in runs of
 * other threads, share the one request in flight and its outcome. A blocking
 * call is a batch of one. Results (causes, messages, kid, values, versions)
 * are those of the blocking calls.
 *
 * Errors: every failure has a cause (atr_akv_cause) an administrator can act
 * on, an atr_status, and a one-line message in struct atr_err saying what to
 * fix. Messages never carry tokens, secrets, key material or wrapped values;
 * struct atr_akv_error keeps Azure's own error code, inner code, message
 * text and request id for the audit log and the console.
 *
 * Credentials: a client secret, or a certificate credential (exactly one).
 * With a certificate, every token request carries a fresh client assertion
 * (RFC 7523, as Entra ID expects it):
 *   client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
 *   client_assertion=<JWT>
 *   header  {"alg":"RS256","typ":"JWT","x5t":<base64url SHA-1 of the certificate's
 *           DER>,"x5t#S256":<base64url SHA-256 of it>}
 *   claims  {"aud":<the token endpoint URL the request goes to>,"iss":client_id,
 *           "sub":client_id,"jti":<16 random bytes, hex>,"nbf":now,"iat":now,
 *           "exp":now+600}   (now: opts.clock)
 * signed with the certificate's private key. The certificate must hold an
 * RSA key of at least 2048 bits and the PKCS#8 private key must be its own;
 * the key is parsed once by atr_akv_client_new() (straight from the
 * caller's span into OpenSSL's secure heap; the PEM text is not copied or
 * kept) and the client keeps only the key object and the thumbprints.
 * Entra ID's answers to a refused assertion (AADSTS700027, 700024, 700021,
 * 700023) are cause CREDENTIAL_INVALID, as a wrong secret (7000215). Curl
 * resolve entries are refused (ATR_E_UNSUPPORTED).
 *
 * Ownership: a client owns copies of all its settings (the client secret is
 * wiped on free; the certificate's private key is freed with the client),
 * its caches (tokens are wiped when dropped) and its pool. A batch owns
 * copies of its inputs and its results; unwrapped values are struct
 * atr_secret (secure memory) and are moved to the caller with
 * atr_akv_batch_take_unwrapped() or wiped with the batch.
 *
 * Thread-safety: a client is internally locked and may be used by any
 * number of threads at once; each call or batch run takes its own engine
 * (caches and token requests in flight are shared). A batch belongs to one
 * thread.
 *
 * Time: token lifetimes and assertion times follow the injected clock
 * (opts.clock); network deadlines follow the real monotonic clock.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/secmem.h"

#define ATR_AKV_API_VERSION       "7.4"
#define ATR_AKV_DEFAULT_AUTHORITY "https://login.microsoftonline.com"
#define ATR_AKV_DEFAULT_RESOURCE  "https://vault.azure.net"
#define ATR_AKV_DEFAULT_HOST      "vault.azure.net"

#define ATR_AKV_URI_MAX        2048 /* longest key URI accepted, in characters */
#define ATR_AKV_NAME_MAX       127  /* key name: 1..127 of [0-9A-Za-z-] */
#define ATR_AKV_VERSION_LEN    32   /* key version: 32 hexadecimal characters */
#define ATR_AKV_HOST_MAX       264  /* "host[:port]" plus NUL */
#define ATR_AKV_URL_MAX        300  /* "https://host[:port]" plus NUL */
#define ATR_AKV_KID_MAX        512  /* a kid with version plus NUL (= ATR_KMS_KEYREF_MAX) */
#define ATR_AKV_TENANT_MAX     64   /* directory id or domain name, without NUL */
#define ATR_AKV_VALUE_MAX      1024 /* largest value sent to or accepted from wrap/unwrap, bytes */
#define ATR_AKV_CODE_MAX       64
#define ATR_AKV_DETAIL_MAX     512
#define ATR_AKV_PERMISSION_MAX 24
#define ATR_AKV_REQUEST_ID_MAX 80
#define ATR_AKV_PAGE_SIZE      25   /* maxresults of a version listing (Azure's maximum) */
#define ATR_AKV_MAX_PAGES      40   /* default bound of pages per listing */
#define ATR_AKV_TOKEN_MARGIN_S 300  /* tokens are renewed this long before they expire */
#define ATR_AKV_BATCH_MAX      4096 /* operations in one batch */
#define ATR_AKV_MAX_LIST       16   /* entries of the host, resource and resolve lists */

/*
 * Why an operation failed, for the administrator (console, audit, metrics).
 * ATR_AKV_OK is the only success value. Store and compare the names
 * (atr_akv_cause_name), not the numbers.
 */
typedef enum atr_akv_cause {
    ATR_AKV_OK = 0,
    /* the key URI is malformed, or names a vault host that is not allowed */
    ATR_AKV_URI_INVALID = 1,
    /* the directory named by the vault's challenge does not exist (AADSTS90002, 900023) */
    ATR_AKV_DIRECTORY_UNKNOWN = 2,
    /* the vault belongs to another directory than the one the caller required */
    ATR_AKV_DIRECTORY_MISMATCH = 3,
    /* the application has no service principal in the directory (AADSTS700016) */
    ATR_AKV_SP_MISSING = 4,
    /* the service principal is disabled (AADSTS7000112) */
    ATR_AKV_SP_DISABLED = 5,
    /* the service's own secret or certificate was refused (AADSTS7000215, 700027, …) */
    ATR_AKV_CREDENTIAL_INVALID = 6,
    /* the identity authority cannot be reached (DNS, connect, timeout) */
    ATR_AKV_AUTHORITY_UNREACHABLE = 7,
    /* the vault cannot be reached (DNS, connect, reset, timeout) */
    ATR_AKV_VAULT_UNREACHABLE = 8,
    /* a server's TLS certificate is not trusted for its host (vault or authority) */
    ATR_AKV_TLS = 9,
    /* 403 ForbiddenByFirewall: the vault's network rules refuse the service */
    ATR_AKV_FIREWALL = 10,
    /* 403 AccessDenied / ForbiddenByRbac; atr_akv_error.permission names the permission */
    ATR_AKV_PERMISSION = 11,
    /* 404 KeyNotFound (also a deleted key, and a vault the host does not serve) */
    ATR_AKV_KEY_NOT_FOUND = 12,
    /* 403 KeyDisabled */
    ATR_AKV_KEY_DISABLED = 13,
    /* 403 KeyExpired or KeyNotYetValid */
    ATR_AKV_KEY_EXPIRED = 14,
    /* the key is not an RSA key usable with the algorithm (EC, oct keys) */
    ATR_AKV_KEY_NOT_RSA = 15,
    /* the key's key_ops do not include the operation */
    ATR_AKV_OPERATION_NOT_ALLOWED = 16,
    /* 429 (vault or authority); atr_akv_error.retry_after_s when given */
    ATR_AKV_THROTTLED = 17,
    /* 5xx from the vault or the authority; retry later (Retry-After when given) */
    ATR_AKV_SERVER = 18,
    /* 400 on unwrap: the value was not wrapped by this key version, or is damaged */
    ATR_AKV_DECRYPT_FAILED = 19,
    /* anything else: an answer this client does not understand (status kept) */
    ATR_AKV_UNEXPECTED = 20,
    /* a failure inside this process: out of memory, bad argument, deadline of a run */
    ATR_AKV_LOCAL = 21,
} atr_akv_cause;

/* Key-wrap algorithms; 0 means the default, RSA-OAEP-256. */
typedef enum atr_akv_alg {
    ATR_AKV_ALG_DEFAULT = 0,
    ATR_AKV_RSA_OAEP_256 = 1,
    ATR_AKV_RSA_OAEP = 2,
} atr_akv_alg;

/* Operations (for error classification and results). */
typedef enum atr_akv_op {
    ATR_AKV_OP_WRAP = 1,
    ATR_AKV_OP_UNWRAP = 2,
    ATR_AKV_OP_LIST = 3,
    ATR_AKV_OP_TOKEN = 4, /* only a token for a directory (atr_akv_token_probe) */
} atr_akv_op;

/** A parsed customer key URI. */
struct atr_akv_key_uri {
    char vault_url[ATR_AKV_URL_MAX]; /* "https://host[:port]", lower-case host, no :443 */
    char host[ATR_AKV_HOST_MAX];     /* "host[:port]" as in vault_url */
    char name[ATR_AKV_NAME_MAX + 1]; /* as written (Azure compares names case-insensitively) */
    char version[ATR_AKV_VERSION_LEN + 1];  /* lower-case hex, or "" when the URI has none */
    char directory[ATR_AKV_TENANT_MAX + 1]; /* optional, set by the caller: the directory the
                                               vault must belong to ("" = any) */
};

/** Details of a failure, beyond the cause and the one-line message. */
struct atr_akv_error {
    atr_akv_cause cause;
    unsigned http_status;   /* status of the failing answer; 0 when there was none */
    unsigned retry_after_s; /* Retry-After of a 429/5xx answer in seconds; 0 = not given */
    char permission[ATR_AKV_PERMISSION_MAX]; /* PERMISSION: "wrapKey", "unwrapKey", "list" */
    char code[ATR_AKV_CODE_MAX];             /* remote code: "Forbidden", "invalid_client" */
    char inner_code[ATR_AKV_CODE_MAX];       /* innermost: "KeyDisabled", "AADSTS7000112" */
    char detail[ATR_AKV_DETAIL_MAX];         /* the remote message text, printable ASCII,
                                                truncated; never holds tokens or key bytes */
    char request_id[ATR_AKV_REQUEST_ID_MAX]; /* x-ms-request-id, or Entra's correlation id */
    char host[ATR_AKV_HOST_MAX];             /* the host that failed (vault or authority) */
};

/** One version of a key, as a version listing shows it (no key material). */
struct atr_akv_key_version {
    char kid[ATR_AKV_KID_MAX];
    char version[ATR_AKV_VERSION_LEN + 1];
    int enabled;
    int64_t created; /* Unix seconds; 0 when absent */
    int64_t updated;
    int64_t nbf; /* 0 when not set */
    int64_t exp; /* 0 when not set */
    char recovery_level[48];
    int recoverable_days; /* 0 when absent */
};

/** The versions of a key; release with atr_akv_versions_cleanup(). */
struct atr_akv_versions {
    struct atr_akv_key_version *items; /* owned */
    size_t n;
    int truncated; /* 1: the vault had more pages than the client's max_pages */
};

/** Settings of a client; zero fields mean the documented default. */
struct atr_akv_client_opts {
    const char *client_id;          /* the application (client) id; required */
    const char *client_secret;      /* a client secret, or NULL with a certificate */
    const char *client_cert_pem;    /* certificate (PEM; the first CERTIFICATE block counts)
                                       registered for the application, or NULL with a secret */
    struct atr_span client_key_pem; /* its unencrypted PKCS#8 RSA private key (PEM, >= 2048
                                       bits); only read during new (the caller wipes it) */
    const char *authority;          /* default ATR_AKV_DEFAULT_AUTHORITY; https, no path */
    const char *const *resources;   /* resources a challenge may name; default
                                       {ATR_AKV_DEFAULT_RESOURCE} */
    size_t nresources;
    const char *const *vault_hosts; /* hosts the client may call: "suffix" (a DNS suffix at a
                                       label boundary, any port), "host" or "host:port"
                                       (exact); default {ATR_AKV_DEFAULT_HOST} */
    size_t nvault_hosts;
    const char *const *resolve; /* curl CURLOPT_RESOLVE entries "host:port:address"
                                   (tests, split-horizon DNS); NULL = none */
    size_t nresolve;
    const char *ca_file;           /* PEM CAs to trust; NULL = the system store */
    unsigned connect_timeout_ms;   /* default 5000 */
    unsigned timeout_ms;           /* one HTTP request; default 15000 */
    unsigned op_timeout_ms;        /* deadline of a blocking call; default 30000 */
    size_t max_response;           /* response body cap in bytes; default 256 KiB */
    unsigned max_host_connections; /* parallel requests per host in a run; default 16, max 256 */
    unsigned page_size;            /* maxresults of listings, 1..25; default 25 */
    unsigned max_pages;            /* pages per listing; default ATR_AKV_MAX_PAGES */
    const char *user_agent;        /* default "atrest/<version>" */
    const struct atr_clock *clock; /* token lifetimes, assertions; NULL = the real clock */
};

/** Counters of a client (for tests and metrics). */
struct atr_akv_stats {
    unsigned long token_requests; /* token endpoint calls */
    unsigned long vault_requests; /* vault calls (401s included) */
    unsigned long challenges;     /* 401 challenges received */
    unsigned long connections;    /* new TCP connections opened */
};

/** The result of one operation of a batch. */
struct atr_akv_result {
    atr_akv_op op;
    atr_status status;           /* ATR_OK, or the failure's status (see atr_akv_cause_status) */
    struct atr_err err;          /* the one-line message saying what to fix */
    struct atr_akv_error fail;   /* cause and remote details (cause ATR_AKV_OK on success) */
    char kid[ATR_AKV_KID_MAX];   /* wrap/unwrap: the kid (with version) the vault used */
    struct atr_buf wrapped;      /* wrap: the wrapped value */
    struct atr_secret unwrapped; /* unwrap: the value; see atr_akv_batch_take_unwrapped */
    struct atr_akv_versions versions; /* list */
};

struct atr_akv_client;
struct atr_akv_batch;

/* ---- names ---------------------------------------------------------------------------------- */

/** Stable upper-case name of @p cause ("KEY_DISABLED"); "UNKNOWN" outside the enum. */
const char *atr_akv_cause_name(atr_akv_cause cause);

/** The atr_status a cause is reported with (ATR_OK for ATR_AKV_OK). */
atr_status atr_akv_cause_status(atr_akv_cause cause);

/** Azure's name of @p alg ("RSA-OAEP-256"), or NULL outside the enum. */
const char *atr_akv_alg_name(atr_akv_alg alg);

/* ---- key URIs ------------------------------------------------------------------------------- */

/**
 * Parses a customer key URI "https://{host}[:{port}]/keys/{name}[/{version}]":
 * https only; the host a DNS name or an IP literal (IPv6 in brackets); no
 * user information, query or fragment; name 1..127 characters of
 * [0-9A-Za-z-]; version 32 hexadecimal characters (normalised to lower
 * case); one trailing '/' after the name is accepted. The version is kept
 * for unwrapping but ignored for wrapping (the latest is always used).
 * Host allow-lists are checked when the URI is used, not here.
 * @param[out] out filled on success (directory set to ""); emptied on failure.
 * @return ATR_E_INVALID with a message naming the defect (cause URI_INVALID).
 */
ATR_MUST_CHECK atr_status atr_akv_uri_parse(struct atr_akv_key_uri *out, const char *uri,
                                            struct atr_err *err);

/**
 * Formats "{vault_url}/keys/{name}" and, when @p with_version and the URI
 * has one, "/{version}" into @p out.
 * @return ATR_E_INVALID when @p cap is too small.
 */
ATR_MUST_CHECK atr_status atr_akv_uri_format(char *out, size_t cap,
                                             const struct atr_akv_key_uri *key, int with_version);

/* ---- the client ----------------------------------------------------------------------------- */

/**
 * Creates a client for one application identity: a client secret, or a
 * certificate and its private key (which must belong together).
 * @param[out] out owned by the caller (atr_akv_client_free).
 * @return ATR_E_CONFIG (no or both credentials, a certificate without its
 *         key or a key without its certificate, unreadable CA file,
 *         authority not an https URL without path, bad list entry),
 *         ATR_E_INVALID (certificate not PEM or without an RSA key, key
 *         not an unencrypted PKCS#8 RSA private key, under 2048 bits, or
 *         not the certificate's), each with a message saying which;
 *         ATR_E_NOMEM, ATR_E_INTERNAL (libcurl).
 */
ATR_MUST_CHECK atr_status atr_akv_client_new(struct atr_akv_client **out,
                                             const struct atr_akv_client_opts *opts,
                                             struct atr_err *err);

/** Closes the connections, wipes the caches and credentials, frees. NULL is allowed. */
void atr_akv_client_free(struct atr_akv_client *c);

/** Copies the counters of @p c into @p out. */
void atr_akv_client_stats(struct atr_akv_stats *out, struct atr_akv_client *c);

/** 1 if the client may call vault host @p host ("host[:port]"; see opts.vault_hosts). */
int atr_akv_host_allowed(const struct atr_akv_client *c, const char *host);

/** Drops every cached token and challenge (they are fetched again on the next call). */
void atr_akv_client_forget(struct atr_akv_client *c);

/* ---- blocking operations (a batch of one; deadline opts.op_timeout_ms) ---------------------- */
/*
 * Each returns ATR_OK or the status of the cause (atr_akv_cause_status): the
 * message in @p err says what to fix and @p fail (may be NULL) holds the
 * cause and the remote details. Causes by operation:
 *  all         URI_INVALID (host not allowed), DIRECTORY_UNKNOWN, DIRECTORY_MISMATCH,
 *              SP_MISSING, SP_DISABLED, CREDENTIAL_INVALID, AUTHORITY_UNREACHABLE,
 *              VAULT_UNREACHABLE, TLS, FIREWALL, PERMISSION, KEY_NOT_FOUND, THROTTLED,
 *              SERVER, UNEXPECTED, LOCAL
 *  wrap        KEY_DISABLED, KEY_EXPIRED, KEY_NOT_RSA, OPERATION_NOT_ALLOWED
 *  unwrap      as wrap, and DECRYPT_FAILED
 */

/**
 * Wraps @p value (1..ATR_AKV_VALUE_MAX bytes) with the latest version of the
 * key (the versionless URI; key->version is ignored).
 * @param[out] out     the wrapped value is appended (nothing on failure).
 * @param[out] out_kid the kid of the version used (emptied on failure).
 */
ATR_MUST_CHECK atr_status atr_akv_wrap(struct atr_buf *out, char out_kid[ATR_AKV_KID_MAX],
                                       struct atr_akv_client *c, const struct atr_akv_key_uri *key,
                                       atr_akv_alg alg, struct atr_span value,
                                       struct atr_akv_error *fail, struct atr_err *err);

/**
 * Unwraps @p wrapped with the version in @p key (the versionless URI, the
 * latest version, when it has none).
 * @param[out] out     an empty secret; holds the value on ATR_OK (the
 *                     caller's), stays empty on failure.
 * @param[out] out_kid the kid the vault used (emptied on failure); may be NULL.
 */
ATR_MUST_CHECK atr_status atr_akv_unwrap(struct atr_secret *out, char *out_kid,
                                         struct atr_akv_client *c,
                                         const struct atr_akv_key_uri *key, atr_akv_alg alg,
                                         struct atr_span wrapped, struct atr_akv_error *fail,
                                         struct atr_err *err);

/**
 * Lists the versions of the key (every page up to opts.max_pages).
 * @param[out] out filled on ATR_OK (release with atr_akv_versions_cleanup),
 *                 empty on failure.
 */
ATR_MUST_CHECK atr_status atr_akv_list_versions(struct atr_akv_versions *out,
                                                struct atr_akv_client *c,
                                                const struct atr_akv_key_uri *key,
                                                struct atr_akv_error *fail, struct atr_err *err);

/**
 * Asks the authority for a fresh token for directory @p tenant and the
 * first configured resource (never the cached one; the new token is cached),
 * without calling a vault: proves the application's service principal
 * exists and is enabled there now (design section 3, enable).
 * Causes: DIRECTORY_UNKNOWN, SP_MISSING, SP_DISABLED, CREDENTIAL_INVALID,
 * AUTHORITY_UNREACHABLE, TLS, THROTTLED, SERVER, UNEXPECTED, LOCAL.
 */
ATR_MUST_CHECK atr_status atr_akv_token_probe(struct atr_akv_client *c, const char *tenant,
                                              struct atr_akv_error *fail, struct atr_err *err);

/** Frees the versions and empties @p v. NULL and repeats are fine. */
void atr_akv_versions_cleanup(struct atr_akv_versions *v);

/**
 * The newest version usable at @p now_s (enabled, nbf <= now < exp), by
 * "created" (ties: the later one in the list), or NULL; borrowed from @p v.
 */
const struct atr_akv_key_version *atr_akv_versions_latest(const struct atr_akv_versions *v,
                                                          int64_t now_s);

/* ---- batches -------------------------------------------------------------------------------- */

/**
 * Creates an empty batch for @p c (which must outlive it).
 * @param[out] out owned by the caller (atr_akv_batch_free).
 * @return ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_akv_batch_new(struct atr_akv_batch **out, struct atr_akv_client *c,
                                            struct atr_err *err);

/** Frees the batch, its inputs and results (unwrapped values are wiped). NULL is allowed. */
void atr_akv_batch_free(struct atr_akv_batch *b);

/*
 * Adding operations: the inputs are copied; @p out_index (may be NULL) is
 * the operation's index for atr_akv_batch_result(). Only before the run.
 * @return ATR_E_INVALID (value empty or over ATR_AKV_VALUE_MAX, unknown alg,
 *         batch already run), ATR_E_TOO_LARGE (ATR_AKV_BATCH_MAX operations),
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_akv_batch_add_wrap(struct atr_akv_batch *b, size_t *out_index,
                                                 const struct atr_akv_key_uri *key, atr_akv_alg alg,
                                                 struct atr_span value, struct atr_err *err);
ATR_MUST_CHECK atr_status atr_akv_batch_add_unwrap(struct atr_akv_batch *b, size_t *out_index,
                                                   const struct atr_akv_key_uri *key,
                                                   atr_akv_alg alg, struct atr_span wrapped,
                                                   struct atr_err *err);
ATR_MUST_CHECK atr_status atr_akv_batch_add_list_versions(struct atr_akv_batch *b,
                                                          size_t *out_index,
                                                          const struct atr_akv_key_uri *key,
                                                          struct atr_err *err);
/** @p tenant: 1..ATR_AKV_TENANT_MAX characters of [A-Za-z0-9.-]. */
ATR_MUST_CHECK atr_status atr_akv_batch_add_token(struct atr_akv_batch *b, size_t *out_index,
                                                  const char *tenant, struct atr_err *err);

/** Number of operations in @p b. */
size_t atr_akv_batch_count(const struct atr_akv_batch *b);

/**
 * Runs every operation concurrently (see the module comment) until all are
 * done or @p timeout_ms (real time) has passed. Requests are cut to the
 * deadline; operations not done by then fail with cause VAULT_UNREACHABLE or
 * AUTHORITY_UNREACHABLE, whichever they were waiting for (a message says
 * whether they had not started, were waiting, or had a request unanswered).
 * A batch runs once. When the run cannot start, every result says why
 * (cause LOCAL).
 * @return ATR_OK when the run took place (read each result: operations fail
 *         individually), ATR_E_INVALID (already run), ATR_E_NOMEM /
 *         ATR_E_INTERNAL when the run itself could not start.
 */
ATR_MUST_CHECK atr_status atr_akv_batch_run(struct atr_akv_batch *b, unsigned timeout_ms,
                                            struct atr_err *err);

/** The result of operation @p index (borrowed from @p b), or NULL out of range. */
const struct atr_akv_result *atr_akv_batch_result(const struct atr_akv_batch *b, size_t index);

/**
 * Moves the unwrapped value of operation @p index into @p out (an empty
 * secret); the batch no longer holds it.
 * @return ATR_E_INVALID (index, not a successful unwrap, already taken).
 */
ATR_MUST_CHECK atr_status atr_akv_batch_take_unwrapped(struct atr_secret *out,
                                                       struct atr_akv_batch *b, size_t index);

/* ---- the parsers (pure; exposed for tests and fuzzing) -------------------------------------- */

/** A parsed 401 bearer challenge. */
struct atr_akv_challenge {
    char authority[ATR_AKV_URL_MAX]; /* "https://host[:port][/path]" without the tenant */
    char tenant[ATR_AKV_TENANT_MAX + 1];
    char resource[ATR_AKV_URL_MAX]; /* without "/.default" and without a trailing '/' */
};

/**
 * Parses a WWW-Authenticate value holding a Bearer challenge with
 * "authorization" (or "authorization_uri") and "resource" (or "scope",
 * "/.default" removed): parameters in any order, quoted or token values,
 * other parameters ignored. The authorization URL must be https without
 * query or user information and end in the tenant (1..ATR_AKV_TENANT_MAX
 * characters of [A-Za-z0-9.-]). Nothing is checked against settings here.
 * @return ATR_E_PARSE (no Bearer challenge, malformed parameters, a member
 *         missing or too long, bad URL or tenant).
 */
ATR_MUST_CHECK atr_status atr_akv_challenge_parse(struct atr_akv_challenge *out,
                                                  const char *www_authenticate,
                                                  struct atr_err *err);

/**
 * Parses a 200 answer of the token endpoint: "token_type" Bearer,
 * "access_token" (printable, no spaces, at most 16 KiB), "expires_in" (a
 * number or numeric string, 1..86400*7). The jansson copy of the token is
 * wiped before the tree is freed.
 * @param[out] out_token a NUL-terminated copy (atr_free after atr_wipe).
 * @return ATR_E_UPSTREAM (malformed answer), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_akv_token_answer_parse(char **out_token, int64_t *out_expires_in,
                                                     struct atr_span body, struct atr_err *err);

/**
 * Classifies an error answer of the token endpoint (Entra's
 * {"error","error_description","error_codes":[…],"correlation_id"}): the
 * AADSTS code (from error_codes, else the description's "AADSTSn:" prefix)
 * gives the cause (see atr_akv_cause); 429 is THROTTLED, 5xx SERVER.
 * @p authority_host, @p tenant, @p client_id name things in the message.
 * @return the status of the cause (never ATR_OK); @p out and @p err filled.
 */
atr_status atr_akv_token_error_classify(struct atr_akv_error *out, const char *authority_host,
                                        const char *tenant, const char *client_id,
                                        unsigned http_status, const char *retry_after,
                                        struct atr_span body, struct atr_err *err);

/**
 * Classifies an error answer of a vault ({"error":{"code","message",
 * "innererror":{"code"}}}; "innerError" accepted) to operation @p op on
 * @p key: by status, inner code, code and Azure's message texts (see
 * atr_akv_cause). For PERMISSION the permission comes from "does not have
 * keys <perm> permission", from an RBAC "Action: '…/keys/<x>/action'", or
 * else from @p op. @p request_id may be NULL.
 * @return the status of the cause (never ATR_OK); @p out and @p err filled.
 */
atr_status atr_akv_vault_error_classify(struct atr_akv_error *out, atr_akv_op op,
                                        const struct atr_akv_key_uri *key, unsigned http_status,
                                        const char *retry_after, const char *request_id,
                                        struct atr_span body, struct atr_err *err);

/**
 * Parses a 200 answer of wrapkey/unwrapkey {"kid","value"}: "kid" must be a
 * key URI with a version for the same host and (case-insensitively) name as
 * @p key; "value" strict base64url of 1..ATR_AKV_VALUE_MAX bytes, appended
 * to @p out_value (the jansson copy is wiped).
 * @return ATR_E_UPSTREAM (malformed answer, another key), ATR_E_TOO_LARGE,
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_akv_key_op_answer_parse(char out_kid[ATR_AKV_KID_MAX],
                                                      struct atr_buf *out_value,
                                                      const struct atr_akv_key_uri *key,
                                                      struct atr_span body, struct atr_err *err);

/**
 * Parses one page of a version listing {"value":[{"kid","attributes"}],
 * "nextLink": url|null} and appends its items to @p acc (at most @p max_total
 * items in all; past that the page is refused). Every kid must name a
 * version of @p key. @p next_link receives the next page's URL ("" when
 * none); it must be https on the same host with the path
 * /keys/{name}/versions, and gets "api-version" added when it lacks one.
 * @return ATR_E_UPSTREAM (malformed page, foreign kid or nextLink),
 *         ATR_E_TOO_LARGE (more than @p max_total items), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_akv_versions_page_parse(struct atr_akv_versions *acc, char *next_link,
                                                      size_t next_cap,
                                                      const struct atr_akv_key_uri *key,
                                                      size_t max_total, struct atr_span body,
                                                      struct atr_err *err);

/**
 * Retry-After as seconds: delta-seconds, or an HTTP date relative to
 * @p now_s; capped at 86400; 0 when absent or malformed.
 */
unsigned atr_akv_retry_after_parse(const char *value, int64_t now_s);

#endif /* ATR_KMS_AKV_H */
