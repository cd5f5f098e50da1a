/* SPDX-License-Identifier: Apache-2.0 */
#include "service/byok.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/secmem.h"
#include "crypto/rand.h"

#define PROBE_LEN 32

struct atr_byok {
    struct atr_akv_client *akv;
    char client_id[128];
    const struct atr_clock *clock;
};

/* Per cause: the API error code, the HTTP status, the fix (NULL: computed). */
static const struct {
    atr_akv_cause cause;
    const char *code;
    unsigned status;
    const char *fix;
} causes[] = {
    {ATR_AKV_URI_INVALID, "InvalidKeyUri", 400,
     "Paste the key identifier shown by your vault: "
     "https://{vault}.vault.azure.net/keys/{name}[/{version}]."},
    {ATR_AKV_DIRECTORY_UNKNOWN, "DirectoryUnknown", 400,
     "The identity service does not know this tenant's directory; check the tenant id."},
    {ATR_AKV_DIRECTORY_MISMATCH, "DirectoryMismatch", 400,
     "Use a key vault that belongs to this tenant's own directory."},
    {ATR_AKV_SP_MISSING, "ServicePrincipalMissing", 400, NULL},
    {ATR_AKV_SP_DISABLED, "ServicePrincipalDisabled", 400, NULL},
    {ATR_AKV_CREDENTIAL_INVALID, "ServiceCredentialInvalid", 502,
     "The identity service refused the service's own credential; contact the operator of "
     "the service."},
    {ATR_AKV_AUTHORITY_UNREACHABLE, "IdentityUnreachable", 504,
     "The identity service cannot be reached from the service; try again later."},
    {ATR_AKV_VAULT_UNREACHABLE, "VaultUnreachable", 504,
     "Check that the vault exists and that its host name resolves and is reachable from "
     "the service."},
    {ATR_AKV_TLS, "VaultTlsError", 502,
     "The vault's TLS certificate is not trusted for its host name; check the key URI's host."},
    {ATR_AKV_FIREWALL, "VaultFirewall", 400,
     "Let the service through the vault's firewall: add its address to the network rules, "
     "or allow trusted services."},
    {ATR_AKV_PERMISSION, "PermissionMissing", 400, NULL},
    {ATR_AKV_KEY_NOT_FOUND, "KeyNotFound", 400,
     "Check the key name in the URI; a soft-deleted key must be recovered first."},
    {ATR_AKV_KEY_DISABLED, "KeyDisabled", 400, "Enable the key's latest version in the vault."},
    {ATR_AKV_KEY_EXPIRED, "KeyExpired", 400,
     "The key's latest version is expired or not yet valid: rotate the key or change its "
     "activation and expiration dates."},
    {ATR_AKV_KEY_NOT_RSA, "KeyNotRsa", 400,
     "Use an RSA key (2048, 3072 or 4096 bits): EC and symmetric keys cannot wrap keys."},
    {ATR_AKV_OPERATION_NOT_ALLOWED, "KeyOperationNotAllowed", 400,
     "Allow the wrapKey and unwrapKey operations on the key (its permitted operations)."},
    {ATR_AKV_THROTTLED, "VaultThrottled", 503,
     "The vault is throttling requests; try again in a moment."},
    {ATR_AKV_SERVER, "VaultError", 502, "The vault answered with a server error; try again later."},
    {ATR_AKV_DECRYPT_FAILED, "UnwrapFailed", 400,
     "The vault could not unwrap a value it wrapped; check that the key version was not "
     "replaced."},
    {ATR_AKV_UNEXPECTED, "UnexpectedAnswer", 502,
     "The vault gave an unexpected answer; try again, and report the request id if it "
     "persists."},
    {ATR_AKV_LOCAL, "InternalError", 500, "Try again; report the request id if it persists."},
};

static size_t cause_index(atr_akv_cause c)
{
    for (size_t i = 0; i < sizeof(causes) / sizeof(causes[0]); i++) {
        if (causes[i].cause == c)
            return i;
    }
    return sizeof(causes) / sizeof(causes[0]) - 1; /* LOCAL */
}

const char *atr_byok_fix(const struct atr_akv_error *fail, char *buf, size_t cap)
{
    switch (fail->cause) {
    case ATR_AKV_PERMISSION:
        snprintf(buf, cap,
                 "Grant the service's application the key permission '%s' in the vault's "
                 "access policy (it needs list, wrapKey and unwrapKey).",
                 fail->permission[0] != '\0' ? fail->permission : "list, wrapKey, unwrapKey");
        return buf;
    case ATR_AKV_SP_MISSING:
        snprintf(buf, cap,
                 "Register the service's application in your directory "
                 "(New-MgServicePrincipal -AppId <the service's application id>).");
        return buf;
    case ATR_AKV_SP_DISABLED:
        snprintf(buf, cap,
                 "Enable the service's service principal in your directory "
                 "(Update-MgServicePrincipal -AccountEnabled:$true).");
        return buf;
    default:
        return causes[cause_index(fail->cause)].fix;
    }
}

atr_status atr_byok_new(struct atr_byok **out, const struct atr_byok_opts *opts,
                        struct atr_err *err)
{
    *out = NULL;
    if (opts->client_id == NULL || (opts->client_secret == NULL && opts->client_cert_pem == NULL) ||
        opts->authority == NULL || opts->nvault_hosts == 0)
        return atr_err_set(err, ATR_E_CONFIG,
                           "byok: the client id, its secret or certificate, the authority and "
                           "the allowed vault hosts are required");
    struct atr_byok *b = atr_calloc(1, sizeof(*b));
    if (b == NULL)
        return ATR_E_NOMEM;
    snprintf(b->client_id, sizeof(b->client_id), "%s", opts->client_id);
    b->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    struct atr_akv_client_opts ao;
    memset(&ao, 0, sizeof(ao));
    ao.client_id = opts->client_id;
    ao.client_secret = opts->client_secret;
    ao.client_cert_pem = opts->client_cert_pem;
    ao.client_key_pem = opts->client_key_pem;
    ao.authority = opts->authority;
    ao.vault_hosts = opts->vault_hosts;
    ao.nvault_hosts = opts->nvault_hosts;
    ao.ca_file = opts->ca_file;
    ao.clock = opts->clock;
    atr_status rc = atr_akv_client_new(&b->akv, &ao, err);
    if (rc != ATR_OK) {
        atr_free(b);
        return rc;
    }
    *out = b;
    return ATR_OK;
}

void atr_byok_free(struct atr_byok *b)
{
    if (b == NULL)
        return;
    atr_akv_client_free(b->akv);
    atr_free(b);
}

/* Starts check @p name; returns it. */
static struct atr_byok_check *check_begin(struct atr_byok_report *r, const char *name)
{
    struct atr_byok_check *c = &r->checks[r->n++];
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->outcome = -1;
    return c;
}

static void check_pass(struct atr_byok_check *c, const char *note)
{
    c->outcome = 1;
    snprintf(c->message, sizeof(c->message), "%s", note != NULL ? note : "");
}

/* Records a failure of @p c from an akv error and sets the report's status. */
static void check_fail(struct atr_byok_report *r, struct atr_byok_check *c,
                       const struct atr_akv_error *fail, const struct atr_err *err)
{
    c->outcome = 0;
    size_t i = cause_index(fail->cause);
    snprintf(c->cause, sizeof(c->cause), "%s", atr_akv_cause_name(fail->cause));
    snprintf(c->message, sizeof(c->message), "%s", atr_err_msg(err));
    char buf[ATR_BYOK_TEXT_MAX];
    const char *fix = atr_byok_fix(fail, buf, sizeof(buf));
    snprintf(c->fix, sizeof(c->fix), "%s", fix != NULL ? fix : "");
    r->http_status = causes[i].status;
    snprintf(r->code, sizeof(r->code), "%s", causes[i].code);
}

/* A failure of our own checks (no akv cause). */
static void check_fail_own(struct atr_byok_report *r, struct atr_byok_check *c, const char *code,
                           const char *cause, const char *message, const char *fix)
{
    c->outcome = 0;
    snprintf(c->cause, sizeof(c->cause), "%s", cause);
    snprintf(c->message, sizeof(c->message), "%s", message);
    snprintf(c->fix, sizeof(c->fix), "%s", fix);
    r->http_status = 400;
    snprintf(r->code, sizeof(r->code), "%s", code);
}

void atr_byok_validate(struct atr_byok_report *r, struct atr_byok *b, const char *tenant,
                       const char *key_uri)
{
    memset(r, 0, sizeof(*r));
    struct atr_err err;
    struct atr_akv_error fail;
    atr_err_clear(&err);
    memset(&fail, 0, sizeof(fail));
    struct atr_akv_versions versions;
    memset(&versions, 0, sizeof(versions));
    struct atr_buf wrapped;
    atr_buf_init(&wrapped, ATR_AKV_VALUE_MAX);
    struct atr_secret probe, back;
    memset(&probe, 0, sizeof(probe));
    memset(&back, 0, sizeof(back));

    struct atr_byok_check *c = check_begin(r, "uri");
    if (key_uri == NULL || atr_akv_uri_parse(&r->key, key_uri, &err) != ATR_OK) {
        fail.cause = ATR_AKV_URI_INVALID;
        if (key_uri == NULL)
            atr_err_set(&err, ATR_E_INVALID, "keyUri is required");
        check_fail(r, c, &fail, &err);
        goto done;
    }
    if (!atr_akv_host_allowed(b->akv, r->key.host)) {
        fail.cause = ATR_AKV_URI_INVALID;
        atr_err_set(&err, ATR_E_INVALID, "the vault host %s is not one this service may call",
                    r->key.host);
        check_fail(r, c, &fail, &err);
        goto done;
    }
    snprintf(r->key.directory, sizeof(r->key.directory), "%s", tenant);
    check_pass(c, r->key.version[0] != '\0'
                      ? "the version in the URI is ignored: the latest version is always used"
                      : NULL);

    c = check_begin(r, "servicePrincipal");
    if (atr_akv_token_probe(b->akv, tenant, &fail, &err) != ATR_OK) {
        check_fail(r, c, &fail, &err);
        goto done;
    }
    check_pass(c, NULL);

    c = check_begin(r, "list");
    if (atr_akv_list_versions(&versions, b->akv, &r->key, &fail, &err) != ATR_OK) {
        check_fail(r, c, &fail, &err);
        goto done;
    }
    int64_t now = atr_clock_now_s(b->clock);
    const struct atr_akv_key_version *latest = atr_akv_versions_latest(&versions, now);
    if (latest == NULL) {
        check_fail_own(r, c, "NoUsableVersion", "NO_USABLE_VERSION",
                       "the key has no enabled version that is valid now",
                       "Enable a version of the key, or create a new version (rotate).");
        goto done;
    }
    check_pass(c, NULL);

    c = check_begin(r, "wrap");
    if (atr_secret_init_random(&probe, PROBE_LEN) != ATR_OK) {
        fail.cause = ATR_AKV_LOCAL;
        atr_err_set(&err, ATR_E_CRYPTO, "no random probe value");
        check_fail(r, c, &fail, &err);
        goto done;
    }
    if (atr_akv_wrap(&wrapped, r->kid, b->akv, &r->key, ATR_AKV_RSA_OAEP_256,
                     atr_span_of(atr_secret_cdata(&probe), PROBE_LEN), &fail, &err) != ATR_OK) {
        check_fail(r, c, &fail, &err);
        goto done;
    }
    check_pass(c, NULL);

    c = check_begin(r, "unwrap");
    struct atr_akv_key_uri at;
    if (atr_akv_uri_parse(&at, r->kid, &err) != ATR_OK) {
        fail.cause = ATR_AKV_UNEXPECTED;
        check_fail(r, c, &fail, &err);
        goto done;
    }
    snprintf(at.directory, sizeof(at.directory), "%s", tenant);
    if (atr_akv_unwrap(&back, NULL, b->akv, &at, ATR_AKV_RSA_OAEP_256, atr_buf_span(&wrapped),
                       &fail, &err) != ATR_OK) {
        check_fail(r, c, &fail, &err);
        goto done;
    }
    if (atr_secret_len(&back) != PROBE_LEN ||
        !atr_ct_equal(atr_secret_cdata(&back), atr_secret_cdata(&probe), PROBE_LEN)) {
        check_fail_own(r, c, "UnwrapMismatch", "UNWRAP_MISMATCH",
                       "the vault unwrapped the probe to another value",
                       "Check the vault: a wrapped value must come back unchanged.");
        goto done;
    }
    check_pass(c, NULL);

    c = check_begin(r, "purgeProtection");
    const char *level = latest->recovery_level;
    if (level[0] == '\0') {
        check_pass(c, "the vault does not report its recovery level");
    } else if (strcmp(level, "Recoverable") == 0 || strcmp(level, "CustomizedRecoverable") == 0 ||
               strstr(level, "+ProtectedSubscription") != NULL) {
        check_pass(c, level);
    } else {
        char msg[ATR_BYOK_TEXT_MAX];
        snprintf(msg, sizeof(msg),
                 "the vault's recovery level is %s: keys can be purged, and with them every "
                 "record of the tenant",
                 level);
        check_fail_own(r, c, "PurgeProtectionOff", "PURGE_PROTECTION_OFF", msg,
                       "Turn on purge protection for the vault (it cannot be turned off "
                       "afterwards).");
        goto done;
    }
    r->ok = 1;
done:
    for (size_t i = r->n; i < ATR_BYOK_MAX_CHECKS && i < 6; i++) {
        static const char *const names[] = {"uri",  "servicePrincipal", "list",
                                            "wrap", "unwrap",           "purgeProtection"};
        r->checks[i].name = names[i];
        r->checks[i].outcome = -1;
        r->n = i + 1;
    }
    atr_secret_cleanup(&probe);
    atr_secret_cleanup(&back);
    atr_buf_cleanup(&wrapped);
    atr_akv_versions_cleanup(&versions);
}

json_t *atr_byok_report_json(const struct atr_byok_report *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < r->n; i++) {
        const struct atr_byok_check *c = &r->checks[i];
        json_t *o = json_pack("{s:s,s:s}", "name", c->name, "outcome",
                              c->outcome > 0    ? "passed"
                              : c->outcome == 0 ? "failed"
                                                : "not run");
        if (o != NULL && c->message[0] != '\0')
            json_object_set_new(o, "message", json_string(c->message));
        if (o != NULL && c->outcome == 0) {
            json_object_set_new(o, "cause", json_string(c->cause));
            json_object_set_new(o, "fix", json_string(c->fix));
        }
        json_array_append_new(arr, o);
    }
    return json_pack("{s:b,s:o}", "ok", r->ok, "checks", arr);
}

atr_status atr_byok_wrap(struct atr_buf *out, char out_kid[ATR_AKV_KID_MAX], struct atr_byok *b,
                         const struct atr_akv_key_uri *key, struct atr_span inner,
                         struct atr_akv_error *fail, struct atr_err *err)
{
    return atr_akv_wrap(out, out_kid, b->akv, key, ATR_AKV_RSA_OAEP_256, inner, fail, err);
}

atr_status atr_byok_unwrap(struct atr_buf *out_inner, struct atr_byok *b, const char *tenant,
                           const char *kid, struct atr_span blob, struct atr_akv_error *fail,
                           struct atr_err *err)
{
    struct atr_akv_key_uri key;
    if (atr_akv_uri_parse(&key, kid, err) != ATR_OK || key.version[0] == '\0')
        return atr_err_set(err, ATR_E_INVALID,
                           "byok: the stored key id is not a versioned key URI");
    snprintf(key.directory, sizeof(key.directory), "%s", tenant);
    struct atr_secret inner;
    memset(&inner, 0, sizeof(inner));
    atr_status rc =
        atr_akv_unwrap(&inner, NULL, b->akv, &key, ATR_AKV_RSA_OAEP_256, blob, fail, err);
    if (rc == ATR_OK)
        rc = atr_buf_append(out_inner, atr_secret_cdata(&inner), atr_secret_len(&inner));
    atr_secret_cleanup(&inner);
    return rc;
}

const char *atr_byok_code(atr_akv_cause cause)
{
    return causes[cause_index(cause)].code;
}

int atr_byok_transient(atr_akv_cause cause)
{
    return cause == ATR_AKV_THROTTLED || cause == ATR_AKV_SERVER ||
           cause == ATR_AKV_VAULT_UNREACHABLE || cause == ATR_AKV_AUTHORITY_UNREACHABLE;
}

static atr_status stored_uri(struct atr_akv_key_uri *key, const char *tenant, const char *key_uri,
                             struct atr_akv_error *fail, struct atr_err *err)
{
    if (key_uri == NULL || atr_akv_uri_parse(key, key_uri, err) != ATR_OK) {
        if (fail != NULL)
            fail->cause = ATR_AKV_URI_INVALID;
        return atr_err_set(err, ATR_E_INVALID, "byok: the stored key URI is not valid");
    }
    snprintf(key->directory, sizeof(key->directory), "%s", tenant);
    key->version[0] = '\0';
    return ATR_OK;
}

atr_status atr_byok_wrap_uri(struct atr_buf *out, char out_kid[ATR_AKV_KID_MAX], struct atr_byok *b,
                             const char *tenant, const char *key_uri, struct atr_span inner,
                             struct atr_akv_error *fail, struct atr_err *err)
{
    struct atr_akv_key_uri key;
    ATR_TRY(stored_uri(&key, tenant, key_uri, fail, err));
    return atr_byok_wrap(out, out_kid, b, &key, inner, fail, err);
}

/* Marks every entry of a failed batch set-up with @p rc and @p err. */
static void probes_fail(struct atr_byok_probe *p, size_t n, atr_status rc, const struct atr_err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].rc != ATR_OK)
            continue;
        p[i].rc = rc;
        p[i].fail.cause = ATR_AKV_LOCAL;
        p[i].err = *e;
    }
}

void atr_byok_probe_many(struct atr_byok *b, struct atr_byok_probe *p, size_t n,
                         unsigned timeout_ms)
{
    struct atr_err err;
    atr_err_clear(&err);
    size_t *idx = atr_calloc(n > 0 ? n : 1, sizeof(*idx));
    struct atr_akv_key_uri *keys = atr_calloc(n > 0 ? n : 1, sizeof(*keys));
    for (size_t i = 0; i < n; i++) {
        memset(&p[i].fail, 0, sizeof(p[i].fail));
        atr_err_clear(&p[i].err);
        atr_buf_init(&p[i].inner, ATR_AKV_VALUE_MAX);
        p[i].rc = ATR_OK;
    }
    if (idx == NULL || keys == NULL) {
        atr_err_set(&err, ATR_E_NOMEM, "byok: out of memory");
        probes_fail(p, n, ATR_E_NOMEM, &err);
        goto out;
    }
    /* step 1: a fresh token per directory (one request per directory, shared) */
    struct atr_akv_batch *tb = NULL;
    atr_status rc = atr_akv_batch_new(&tb, b->akv, &err);
    for (size_t i = 0; rc == ATR_OK && i < n; i++)
        rc = atr_akv_batch_add_token(tb, &idx[i], p[i].tenant, &p[i].err);
    if (rc == ATR_OK)
        rc = atr_akv_batch_run(tb, timeout_ms, &err);
    if (rc != ATR_OK) {
        atr_akv_batch_free(tb);
        probes_fail(p, n, rc, &err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct atr_akv_result *r = atr_akv_batch_result(tb, idx[i]);
        if (r != NULL && r->status != ATR_OK) {
            p[i].rc = r->status;
            p[i].fail = r->fail;
            p[i].err = r->err;
        }
    }
    atr_akv_batch_free(tb);
    /* step 2: unwrap each stored layer with the version that made it */
    struct atr_akv_batch *ub = NULL;
    if ((rc = atr_akv_batch_new(&ub, b->akv, &err)) != ATR_OK) {
        probes_fail(p, n, rc, &err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i].rc != ATR_OK)
            continue;
        if (atr_akv_uri_parse(&keys[i], p[i].kid, &p[i].err) != ATR_OK ||
            keys[i].version[0] == '\0') {
            p[i].rc = atr_err_set(&p[i].err, ATR_E_INVALID,
                                  "byok: the stored key id is not a versioned key URI");
            p[i].fail.cause = ATR_AKV_LOCAL;
            continue;
        }
        snprintf(keys[i].directory, sizeof(keys[i].directory), "%s", p[i].tenant);
        p[i].rc = atr_akv_batch_add_unwrap(ub, &idx[i], &keys[i], ATR_AKV_RSA_OAEP_256, p[i].blob,
                                           &p[i].err);
        if (p[i].rc != ATR_OK)
            p[i].fail.cause = ATR_AKV_LOCAL;
    }
    if ((rc = atr_akv_batch_run(ub, timeout_ms, &err)) != ATR_OK) {
        atr_akv_batch_free(ub);
        probes_fail(p, n, rc, &err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i].rc != ATR_OK)
            continue;
        const struct atr_akv_result *r = atr_akv_batch_result(ub, idx[i]);
        if (r == NULL || r->status != ATR_OK) {
            p[i].rc = r != NULL ? r->status : ATR_E_INTERNAL;
            if (r != NULL) {
                p[i].fail = r->fail;
                p[i].err = r->err;
            }
            continue;
        }
        struct atr_secret v = ATR_SECRET_INIT;
        p[i].rc = atr_akv_batch_take_unwrapped(&v, ub, idx[i]);
        if (p[i].rc == ATR_OK)
            p[i].rc = atr_buf_append(&p[i].inner, atr_secret_cdata(&v), atr_secret_len(&v));
        if (p[i].rc != ATR_OK) {
            (void)atr_err_set(&p[i].err, p[i].rc, "byok: cannot keep the unwrapped value");
            p[i].fail.cause = ATR_AKV_LOCAL;
        }
        atr_secret_cleanup(&v);
    }
    atr_akv_batch_free(ub);
out:
    atr_free(idx);
    atr_free(keys);
}

void atr_byok_latest_many(struct atr_byok *b, struct atr_byok_latest *q, size_t n,
                          unsigned timeout_ms)
{
    struct atr_err err;
    atr_err_clear(&err);
    size_t *idx = atr_calloc(n > 0 ? n : 1, sizeof(*idx));
    struct atr_akv_batch *lb = NULL;
    atr_status rc = idx == NULL ? atr_err_set(&err, ATR_E_NOMEM, "byok: out of memory")
                                : atr_akv_batch_new(&lb, b->akv, &err);
    for (size_t i = 0; i < n; i++) {
        memset(&q[i].fail, 0, sizeof(q[i].fail));
        atr_err_clear(&q[i].err);
        q[i].kid[0] = '\0';
        q[i].rc = rc;
        if (rc != ATR_OK) {
            q[i].err = err;
            q[i].fail.cause = ATR_AKV_LOCAL;
            continue;
        }
        struct atr_akv_key_uri key;
        q[i].rc = stored_uri(&key, q[i].tenant, q[i].key_uri, &q[i].fail, &q[i].err);
        if (q[i].rc == ATR_OK)
            q[i].rc = atr_akv_batch_add_list_versions(lb, &idx[i], &key, &q[i].err);
    }
    if (rc == ATR_OK && (rc = atr_akv_batch_run(lb, timeout_ms, &err)) != ATR_OK) {
        for (size_t i = 0; i < n; i++) {
            if (q[i].rc == ATR_OK) {
                q[i].rc = rc;
                q[i].err = err;
                q[i].fail.cause = ATR_AKV_LOCAL;
            }
        }
    }
    int64_t now = atr_clock_now_s(b->clock);
    for (size_t i = 0; rc == ATR_OK && i < n; i++) {
        if (q[i].rc != ATR_OK)
            continue;
        const struct atr_akv_result *r = atr_akv_batch_result(lb, idx[i]);
        if (r == NULL || r->status != ATR_OK) {
            q[i].rc = r != NULL ? r->status : ATR_E_INTERNAL;
            if (r != NULL) {
                q[i].fail = r->fail;
                q[i].err = r->err;
            }
            continue;
        }
        const struct atr_akv_key_version *latest = atr_akv_versions_latest(&r->versions, now);
        if (latest == NULL) {
            q[i].fail.cause = ATR_AKV_KEY_DISABLED;
            q[i].rc = atr_err_set(&q[i].err, ATR_E_UNAVAILABLE,
                                  "the key has no enabled version that is valid now");
        } else {
            snprintf(q[i].kid, sizeof(q[i].kid), "%s", latest->kid);
        }
    }
    atr_akv_batch_free(lb);
    atr_free(idx);
}

void atr_byok_stats(struct atr_akv_stats *out, struct atr_byok *b)
{
    atr_akv_client_stats(out, b->akv);
}
