/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_BYOK_H
#define ATR_SERVICE_BYOK_H

/*
 * The customer-key layer of the data service (bring your own key, design
 * sections 2 and 3): the checks that validate a key URI before it is
 * enabled, and the wrap/unwrap of the customer layer
 * CK-wrap(SRK-wrap(TK)) through the tenant's Azure Key Vault (kms/akv.h).
 *
 * The service's application (a multi-tenant app registration with a
 * service principal in each customer's directory) needs exactly the key
 * permissions list, wrapKey and unwrapKey; nothing here calls "get". A
 * tenant of the service is a directory, so the vault of a tenant's key must
 * belong to that directory.
 *
 * Validation (atr_byok_validate) runs the checks in order and stops at the
 * first failure; each check has a name, an outcome, and for a failure the
 * cause, a message and the fix:
 *   uri               https URI /keys/{name}[/{version}] on an allowed vault host
 *   servicePrincipal  a token for the tenant's directory (the service
 *                     principal exists and is enabled there)
 *   list              the versions of the key can be listed; one is enabled
 *   wrap              the latest version wraps a random probe (also proves the
 *                     vault is reachable, the firewall lets us in, the key is
 *                     enabled, not expired and RSA)
 *   unwrap            the probe comes back unchanged through the kid that wrapped it
 *   purgeProtection   the vault reports purge protection (recovery level
 *                     "Recoverable" or "CustomizedRecoverable"); a vault that
 *                     reports no recovery level passes with a note
 *
 * Thread-safety: an atr_byok is thread-safe (the client is internally
 * locked); new/free run on one thread.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "kms/akv.h"

#define ATR_BYOK_MAX_CHECKS 8
#define ATR_BYOK_TEXT_MAX   320

struct atr_byok;

/* Settings of the customer-key layer. */
struct atr_byok_opts {
    const char *client_id;          /* the service's application id; required */
    const char *client_secret;      /* its secret, or NULL with a certificate */
    const char *client_cert_pem;    /* certificate registered for the application (PEM) */
    struct atr_span client_key_pem; /* its PKCS#8 RSA private key (PEM); read during new */
    const char *authority;          /* identity authority (https); required */
    const char *const *vault_hosts; /* allowed vault hosts (see kms/akv.h); required */
    size_t nvault_hosts;
    const char *ca_file;           /* CAs to trust; NULL = system */
    const struct atr_clock *clock; /* NULL = real */
};

/* One check of a validation. */
struct atr_byok_check {
    const char *name;                /* "uri", "servicePrincipal", ... (static) */
    int outcome;                     /* 1 passed, 0 failed, -1 not run */
    char cause[32];                  /* failure: atr_akv_cause_name(), or ours */
    char message[ATR_BYOK_TEXT_MAX]; /* what happened (passes may carry a note) */
    char fix[ATR_BYOK_TEXT_MAX];     /* failure: what the admin should do */
};

/* The outcome of atr_byok_validate(). */
struct atr_byok_report {
    struct atr_byok_check checks[ATR_BYOK_MAX_CHECKS];
    size_t n;
    int ok;                     /* every check passed */
    unsigned http_status;       /* for a failure: 400 (fix it), 502/503/504 (try later) */
    char code[48];              /* for a failure: the API error code, e.g. "KeyDisabled" */
    struct atr_akv_key_uri key; /* the parsed URI (directory = the tenant) */
    char kid[ATR_AKV_KID_MAX];  /* the version the probe was wrapped with */
};

/**
 * Creates the layer (its Key Vault client).
 * @return ATR_E_CONFIG (missing setting), errors of atr_akv_client_new.
 */
ATR_MUST_CHECK atr_status atr_byok_new(struct atr_byok **out, const struct atr_byok_opts *opts,
                                       struct atr_err *err);

/** Frees @p b. NULL is allowed. */
void atr_byok_free(struct atr_byok *b);

/** Runs the checks for @p key_uri of tenant (directory) @p tenant. Never fails itself. */
void atr_byok_validate(struct atr_byok_report *out, struct atr_byok *b, const char *tenant,
                       const char *key_uri);

/** The report as JSON: {"ok", "checks":[{"name","outcome","cause","message","fix"}]}. */
json_t *atr_byok_report_json(const struct atr_byok_report *r);

/**
 * Wraps @p inner (SRK-wrap(TK)) with the latest version of @p key.
 * @param[out] out     appended with CK-wrap(inner).
 * @param[out] out_kid the kid used.
 * @param[out] fail    the cause on failure (may be NULL).
 * @return as atr_akv_wrap().
 */
ATR_MUST_CHECK atr_status atr_byok_wrap(struct atr_buf *out, char out_kid[ATR_AKV_KID_MAX],
                                        struct atr_byok *b, const struct atr_akv_key_uri *key,
                                        struct atr_span inner, struct atr_akv_error *fail,
                                        struct atr_err *err);

/**
 * Unwraps the customer layer @p blob with the version named by @p kid in
 * directory @p tenant, appending SRK-wrap(TK) to @p out_inner.
 * @return ATR_E_INVALID (a kid that is not a key URI with a version), and as
 *         atr_akv_unwrap().
 */
ATR_MUST_CHECK atr_status atr_byok_unwrap(struct atr_buf *out_inner, struct atr_byok *b,
                                          const char *tenant, const char *kid, struct atr_span blob,
                                          struct atr_akv_error *fail, struct atr_err *err);

/**
 * As atr_byok_wrap() for a stored key URI of directory @p tenant (its
 * version, if any, is ignored: the latest wraps).
 */
ATR_MUST_CHECK atr_status atr_byok_wrap_uri(struct atr_buf *out, char out_kid[ATR_AKV_KID_MAX],
                                            struct atr_byok *b, const char *tenant,
                                            const char *key_uri, struct atr_span inner,
                                            struct atr_akv_error *fail, struct atr_err *err);

/* One tenant of atr_byok_probe_many(). */
struct atr_byok_probe {
    const char *tenant;   /* in: the directory */
    const char *kid;      /* in: the stored kid (with version) */
    struct atr_span blob; /* in: the stored customer layer */
    atr_status rc;        /* out */
    struct atr_akv_error fail;
    struct atr_err err;
    struct atr_buf inner; /* out: SRK-wrap(TK) on ATR_OK (initialised by the call; the
                             caller cleans it up) */
};

/**
 * Probes many tenants at once (the key monitor): a fresh token for each
 * directory (a disabled service principal shows at once, not when a cached
 * token expires), then an unwrap of each stored customer layer, each step
 * one concurrent batch (kms/akv.h) bounded by @p timeout_ms.
 */
void atr_byok_probe_many(struct atr_byok *b, struct atr_byok_probe *p, size_t n,
                         unsigned timeout_ms);

/* One tenant of atr_byok_latest_many(). */
struct atr_byok_latest {
    const char *tenant;  /* in */
    const char *key_uri; /* in: the stored key URI */
    atr_status rc;       /* out */
    struct atr_akv_error fail;
    struct atr_err err;
    char kid[ATR_AKV_KID_MAX]; /* out: the newest usable version */
};

/**
 * The version a roll should use, for many tenants in one concurrent batch
 * (roll checks): lists each key's versions and picks the newest enabled one
 * valid now. rc ATR_E_UNAVAILABLE with cause ATR_AKV_KEY_DISABLED when no
 * version is usable, ATR_E_INVALID for a stored URI that does not parse.
 */
void atr_byok_latest_many(struct atr_byok *b, struct atr_byok_latest *q, size_t n,
                          unsigned timeout_ms);

/** The Key Vault client's counters (requests, token requests, challenges). */
void atr_byok_stats(struct atr_akv_stats *out, struct atr_byok *b);

/** The API code of a cause ("KeyDisabled", "PermissionMissing", ...). */
const char *atr_byok_code(atr_akv_cause cause);

/** 1 for causes that say "try again" (throttling, server errors, unreachable), not revocation. */
int atr_byok_transient(atr_akv_cause cause);

/** The fix an admin should apply for @p fail, one sentence (static or in @p buf). */
const char *atr_byok_fix(const struct atr_akv_error *fail, char *buf, size_t cap);

#endif /* ATR_SERVICE_BYOK_H */
