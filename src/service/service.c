/* SPDX-License-Identifier: Apache-2.0 */
#include "service/service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/failpoint.h"
#include "base/log.h"
#include "base/secmem.h"
#include "crypto/digest_check.h"
#include "crypto/rand.h"
#include "http/json.h"
#include "identity/tokval.h"
#include "kms/provider.h"
#include "kms/srk_file.h"
#include "service/byok.h"
#include "service/console.h"
#include "service/keyring.h"
#include "service/metrics.h"
#include "service/monitor.h"
#include "service/records.h"
#include "service/reserve.h"
#include "store/block.h"
#include "store/store.h"

#define KEY_REF_TK          "tk"
#define KEY_REF_PLAIN       "none"
#define KEY_REF_RESERVE     "reserve"
#define PURPOSE_RESERVE_DEK "reserve-dek"
#define AUDIT_PAGE_MAX      200
#define FOLD_PAGE           64
#define MONITOR_ACTOR       "monitor"

struct atr_service {
    struct atr_store *store;
    struct atr_srk_file *srk;
    struct atr_keyring *ring;
    struct atr_metrics *metrics;
    struct atr_tokval *tokval; /* NULL: no identity server configured */
    const struct atr_clock *clock;
    struct atr_digest_check admin;
    size_t block_bytes;
    size_t max_body;
    size_t max_lines;
    size_t max_line;
    int compress;
    int bench_plaintext;
    struct committer *committer;
    struct atr_byok *byok;               /* NULL: customer keys not configured */
    struct atr_monitor *monitor;         /* with byok */
    struct atr_reserve *reserve;         /* with byok, NULL with no_reserve */
    struct atr_offset_clock *test_clock; /* test mode, else NULL */
    int64_t grace_ms;
    int64_t locked_probe_ms;
    _Atomic uint64_t vault_seen; /* Key Vault client requests already added to the metric */
};

/* The caller of a request (set by the auth hook). */
struct principal {
    int admin;
    char tid[ATR_STORE_TENANT_ID_MAX + 1];
    char oid[128];
    char appid[128];
};

static int64_t now_ms(const struct atr_service *s)
{
    return atr_clock_now_ms(s->clock);
}

static atr_status fail_with(struct atr_http_req *req, atr_status rc, const struct atr_err *e)
{
    if (rc == ATR_E_IO) {
        /*
         * The store failed (a database down or restarting): nothing of this call was
         * acknowledged; the caller retries. The detail is for the operator's log only.
         */
        atr_log_fields(ATR_LOG_ERROR, "service.store", atr_http_req_id(req), "a store call failed",
                       "detail", "s", atr_err_msg(e), NULL);
        return atr_err_set(atr_http_req_err(req), ATR_E_UNAVAILABLE,
                           "the storage is unavailable; nothing of this call was stored: retry "
                           "in a few seconds");
    }
    return atr_err_set(atr_http_req_err(req), rc, "%s", atr_err_msg(e));
}

/* ------------------------------------------------------------ audit */

/* Fills @p ev (detail is consumed). */
static void audit_event(struct atr_store_audit_event *ev, struct atr_service *s, const char *tenant,
                        const char *actor, const char *action, json_t *detail)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->tenant, sizeof(ev->tenant), "%s", tenant != NULL ? tenant : "");
    snprintf(ev->actor, sizeof(ev->actor), "%s", actor != NULL ? actor : "service");
    snprintf(ev->action, sizeof(ev->action), "%s", action);
    char *d = detail != NULL ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    snprintf(ev->detail_json, sizeof(ev->detail_json), "%s", d != NULL ? d : "{}");
    free(d);
    ev->time_ms = now_ms(s);
}

static void audit(struct atr_service *s, const char *tenant, const char *actor, const char *action,
                  json_t *detail)
{
    struct atr_store_audit_event ev;
    audit_event(&ev, s, tenant, actor, action, detail);
    struct atr_err err;
    atr_err_clear(&err);
    int64_t id = 0;
    if (atr_store_audit_append(&id, s->store, &ev, &err) != ATR_OK)
        atr_log(ATR_LOG_ERROR, "service.audit", NULL, "cannot append an audit event: %s",
                atr_err_msg(&err));
    else
        atr_metrics_add(s->metrics, ATR_METRICS_AUDIT_EVENTS, 1);
}

/*
 * Stores a tenant's new row together with the audit event of the change
 * (one transaction: crash-safe, design section 3).
 */
static atr_status update_audited(struct atr_service *s, const struct atr_store_tenant *t,
                                 const struct atr_store_audit_event *ev, struct atr_err *err)
{
    atr_status rc = atr_store_tenant_update_audited(NULL, s->store, t, ev, err);
    if (rc == ATR_OK)
        atr_metrics_add(s->metrics, ATR_METRICS_AUDIT_EVENTS, 1);
    return rc;
}

/* ------------------------------------------------------------ tenant keys */

/*
 * The SRK layer of a tenant row: the stored SRK-wrap(TK), or in customer
 * mode the customer layer unwrapped through the tenant's vault. @p fail
 * (may be NULL) gets the vault's cause.
 */
static atr_status inner_blob(struct atr_buf *out, struct atr_service *s,
                             const struct atr_store_tenant *t, struct atr_akv_error *fail,
                             struct atr_err *err)
{
    if (t->customer_blob.len == 0)
        return atr_buf_append(out, t->srk_blob.ptr, t->srk_blob.len);
    if (s->byok == NULL)
        return atr_err_set(err, ATR_E_UNAVAILABLE,
                           "tenant %s uses a customer key but this service has no customer-key "
                           "settings",
                           t->id);
    return atr_byok_unwrap(out, s->byok, t->id, t->customer_kid, atr_buf_span(&t->customer_blob),
                           fail, err);
}

/* Unwraps a tenant row's TK through both layers. */
static atr_status tk_unwrap_row(struct atr_secret *out_tk, struct atr_service *s,
                                const struct atr_store_tenant *t, struct atr_akv_error *fail,
                                struct atr_err *err)
{
    struct atr_buf inner;
    atr_buf_init(&inner, ATR_STORE_WRAPPED_MAX);
    atr_status rc = inner_blob(&inner, s, t, fail, err);
    if (rc == ATR_OK) {
        struct atr_kms_keyref ref;
        atr_srk_keyref_format(&ref, (uint32_t)t->srk_version);
        rc = atr_keyring_tk_unwrap(out_tk, atr_srk_file_provider(s->srk), &ref,
                                   atr_buf_span(&inner), t->id, err);
    }
    atr_buf_cleanup(&inner);
    return rc;
}

/*
 * 1 (and @p err set) when the monitor's probes of @p tenant fail and a
 * request tried the vault less than the minimum backoff ago: requests of a
 * tenant whose key is revoked do not send one refused call each.
 */
static int monitor_failing(struct atr_service *s, const char *tenant, struct atr_err *err)
{
    struct atr_monitor_status ms;
    if (atr_monitor_may_try(s->monitor, tenant, &ms))
        return 0;
    char next[32];
    atr_clock_format_rfc3339(ms.next_probe_ms, next);
    (void)atr_err_set(err, ATR_E_UNAVAILABLE, "%s: %s (checked again at %s)", ms.code, ms.reason,
                      next);
    return 1;
}

/*
 * Keyring loader: unwraps the TK of the tenant's row through both layers.
 * A locked tenant's key is not loaded (the lock is the key's absence; only
 * the monitor restores it). A customer key's success restarts the grace
 * (the cached key's hard deadline); its failure has the monitor probe.
 */
static atr_status tk_load(struct atr_secret *out_tk, int64_t *out_deadline_ms, const char *tenant,
                          void *ctx, struct atr_err *err)
{
    struct atr_service *s = ctx;
    *out_deadline_ms = 0;
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    struct atr_akv_error fail;
    memset(&fail, 0, sizeof(fail));
    atr_status rc = atr_store_tenant_get(&t, s->store, tenant, err);
    if (rc == ATR_OK && t.state == ATR_STORE_STATE_LOCKED) {
        rc = atr_err_set(
            err, ATR_E_LOCKED, "%s",
            t.reason[0] != '\0' ? t.reason : "KeyUnavailable: the customer key is not accessible");
    } else if (rc == ATR_OK && t.customer_blob.len > 0 && monitor_failing(s, tenant, err)) {
        /* the monitor's probes fail: requests do not hammer the vault meanwhile */
        rc = ATR_E_UNAVAILABLE;
    } else if (rc == ATR_OK) {
        rc = tk_unwrap_row(out_tk, s, &t, &fail, err);
        if (t.customer_blob.len > 0 && rc == ATR_OK) {
            *out_deadline_ms = atr_clock_mono_ms(s->clock) + s->grace_ms;
            atr_monitor_note_ok(s->monitor, tenant);
        } else if (t.customer_blob.len > 0 && fail.cause != ATR_AKV_OK) {
            atr_monitor_note_failure(s->monitor, tenant);
        }
    }
    atr_store_tenant_cleanup(&t);
    return rc;
}

/* The tenant's key (a copy in secure memory), from the keyring or unwrapped now. */
static atr_status tk_get(struct atr_secret *out, struct atr_service *s, const char *tenant,
                         struct atr_err *err)
{
    struct atr_keyring_stats before, after;
    atr_keyring_stats(&before, s->ring);
    atr_status rc = atr_keyring_get_or_load(out, s->ring, tenant, tk_load, s, err);
    atr_keyring_stats(&after, s->ring);
    atr_metrics_add(s->metrics, ATR_METRICS_KEYRING_HITS, after.hits - before.hits);
    atr_metrics_add(s->metrics, ATR_METRICS_KEYRING_MISSES, after.misses - before.misses);
    if (rc == ATR_OK || rc == ATR_E_NOMEM || rc == ATR_E_NOT_FOUND || rc == ATR_E_LOCKED)
        return rc;
    if (rc == ATR_E_AUTH_FAILED) {
        /* a stored key that does not authenticate is damage on our side, never the caller's */
        atr_log_fields(ATR_LOG_ERROR, "service.key.integrity", NULL,
                       "a tenant key failed authentication", "tenant", "s", tenant, "detail", "s",
                       atr_err_msg(err), NULL);
        return atr_err_set(err, ATR_E_INTERNAL, "the key of tenant %s failed authentication",
                           tenant);
    }
    /* the customer key (or a key store) is not available now: retry later */
    char why[200];
    snprintf(why, sizeof(why), "%s", atr_err_msg(err));
    return atr_err_set(err, ATR_E_UNAVAILABLE, "the tenant's key is not available: %s", why);
}

/* The code part of a stored reason "Code: plain words" ("KeyUnavailable" when none). */
static void reason_code(char *out, size_t cap, const char *stored)
{
    size_t n = strcspn(stored, ":");
    if (n == 0 || stored[n] != ':' || n >= cap) {
        snprintf(out, cap, "KeyUnavailable");
        return;
    }
    memcpy(out, stored, n);
    out[n] = '\0';
}

/* The plain-words part of a stored reason. */
static const char *reason_text(const char *stored)
{
    const char *c = strchr(stored, ':');
    return c != NULL && c[1] == ' ' ? c + 2 : stored;
}

/*
 * Answers 423 TenantLocked with the reason (design section 3): the customer
 * key is not accessible, so the tenant's data cannot be read.
 */
static atr_status tenant_locked(struct atr_http_resp *resp, const struct atr_service *s,
                                const char *stored_reason)
{
    char code[ATR_MONITOR_CODE_MAX];
    reason_code(code, sizeof(code), stored_reason);
    char msg[ATR_STORE_REASON_MAX + 160];
    snprintf(msg, sizeof(msg),
             "the tenant is locked: its customer key is not accessible (%s). Nothing is lost; "
             "access returns once the key is usable again",
             reason_text(stored_reason));
    char after[24];
    snprintf(after, sizeof(after), "%lld", (long long)((s->locked_probe_ms + 999) / 1000));
    ATR_TRY(atr_http_resp_header(resp, "Retry-After", after));
    ATR_TRY(atr_http_resp_error(resp, ATR_E_LOCKED, msg, json_pack("{s:s}", "reason", code)));
    return ATR_E_LOCKED;
}

/*
 * Answers 503 with the reason when the tenant's key cannot be used now (its
 * customer key is unreachable or refused): the tenant admin needs the cause,
 * which is not internal detail.
 */
static atr_status key_unavailable(struct atr_http_resp *resp, const struct atr_err *err)
{
    ATR_TRY(atr_http_resp_header(resp, "Retry-After", "30"));
    ATR_TRY(atr_http_resp_error(resp, ATR_E_UNAVAILABLE, atr_err_msg(err),
                                json_pack("{s:s}", "reason", "CustomerKeyUnavailable")));
    return ATR_E_UNAVAILABLE;
}

static atr_status fold_blocks(struct atr_service *s, const char *tenant, size_t *out_n,
                              struct atr_err *err);

/* Answers 503 + Retry-After when a locked tenant's reserve cannot take a write. */
static atr_status reserve_empty(struct atr_http_resp *resp, const struct atr_service *s,
                                const struct atr_err *err)
{
    char after[24];
    snprintf(after, sizeof(after), "%lld", (long long)((s->locked_probe_ms + 999) / 1000));
    ATR_TRY(atr_http_resp_header(resp, "Retry-After", after));
    char msg[ATR_ERR_MSG_MAX + 160];
    snprintf(msg, sizeof(msg),
             "the tenant is locked and cannot accept these records now (%s); nothing was stored: "
             "send them again once the customer key is accessible",
             atr_err_msg(err));
    ATR_TRY(atr_http_resp_error(resp, ATR_E_UNAVAILABLE, msg,
                                json_pack("{s:s}", "reason", "TenantLockedReserveEmpty")));
    return ATR_E_UNAVAILABLE;
}

atr_status atr_service_tenant_ensure(struct atr_service *s, const char *tenant, const char *actor,
                                     int *out_created, struct atr_err *err)
{
    if (out_created != NULL)
        *out_created = 0;
    if (!atr_store_tenant_id_ok(tenant))
        return atr_err_set(err, ATR_E_INVALID,
                           "a tenant id is 1..64 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    atr_status rc = atr_store_tenant_get(&t, s->store, tenant, NULL);
    if (rc == ATR_OK) {
        atr_store_tenant_cleanup(&t);
        return ATR_OK;
    }
    struct atr_secret tk;
    memset(&tk, 0, sizeof(tk));
    struct atr_kms_keyref ref;
    rc = atr_keyring_tk_generate(&tk, err);
    if (rc == ATR_OK)
        rc =
            atr_keyring_tk_wrap(&t.srk_blob, &ref, atr_srk_file_provider(s->srk), &tk, tenant, err);
    uint32_t version = 0;
    if (rc == ATR_OK)
        rc = atr_srk_keyref_parse(&version, &ref, err);
    if (rc == ATR_OK) {
        snprintf(t.id, sizeof(t.id), "%s", tenant);
        t.state = ATR_STORE_STATE_MANAGED;
        t.srk_version = (int32_t)version;
        t.created_ms = t.updated_ms = now_ms(s);
        rc = atr_store_tenant_create(s->store, &t, err);
        if (rc == ATR_E_CONFLICT) { /* created meanwhile by another request */
            rc = ATR_OK;
        } else if (rc == ATR_OK) {
            if (out_created != NULL)
                *out_created = 1;
            if (atr_keyring_put(s->ring, tenant, &tk, 0, NULL) != ATR_OK)
                atr_log(ATR_LOG_DEBUG, "service.keyring", NULL,
                        "new tenant key not cached; the first use unwraps it");
            audit(s, tenant, actor, "tenant.create",
                  json_pack("{s:s,s:s}", "mode", "managed", "srkKey", ref.id));
            atr_log_fields(ATR_LOG_INFO, "service.tenant.create", NULL, "tenant created", "tenant",
                           "s", tenant, "srk", "s", ref.id, NULL);
        }
    }
    atr_secret_cleanup(&tk);
    atr_store_tenant_cleanup(&t);
    return rc;
}

struct rewrap_ctx {
    struct atr_service *s;
};

static atr_status rewrap_one(struct atr_buf *out_blob, int32_t *out_version, void *arg,
                             const char *tenant_id, struct atr_span old_blob, int32_t old_version,
                             struct atr_err *err)
{
    struct rewrap_ctx *rc_ = arg;
    if (old_blob.len == 0)
        return ATR_OK; /* customer mode: its inner layer is renewed when the key rolls */
    struct atr_kms_provider *p = atr_srk_file_provider(rc_->s->srk);
    struct atr_kms_keyref old_ref, new_ref;
    atr_srk_keyref_format(&old_ref, (uint32_t)old_version);
    struct atr_secret tk;
    memset(&tk, 0, sizeof(tk));
    atr_status rc = atr_keyring_tk_unwrap(&tk, p, &old_ref, old_blob, tenant_id, err);
    if (rc == ATR_OK)
        rc = atr_keyring_tk_wrap(out_blob, &new_ref, p, &tk, tenant_id, err);
    uint32_t v = 0;
    if (rc == ATR_OK)
        rc = atr_srk_keyref_parse(&v, &new_ref, err);
    *out_version = (int32_t)v;
    atr_secret_cleanup(&tk);
    return rc;
}

atr_status atr_service_srk_rotate(struct atr_service *s, uint32_t *out_version, size_t *out_tenants,
                                  struct atr_err *err)
{
    *out_version = 0;
    *out_tenants = 0;
    ATR_TRY(atr_srk_file_rotate(s->srk, out_version, err));
    struct rewrap_ctx ctx = {s};
    atr_status rc =
        atr_store_tenant_rewrap_srk(out_tenants, s->store, rewrap_one, &ctx, now_ms(s), err);
    if (rc == ATR_OK) {
        audit(s, NULL, "admin", "srk.rotate",
              json_pack("{s:I,s:I}", "version", (json_int_t)*out_version, "tenants",
                        (json_int_t)*out_tenants));
        atr_log_fields(ATR_LOG_INFO, "service.srk.rotate", NULL, "service root key rotated",
                       "version", "i", (long long)*out_version, "tenants", "i",
                       (long long)*out_tenants, NULL);
    }
    return rc;
}

/* ------------------------------------------------------------ auth */

static atr_status unauthorized(struct atr_http_req *req, struct atr_http_resp *resp,
                               const char *why)
{
    /* RFC 6750 3.1: no error code when the request carried no credentials */
    const char *h = atr_http_req_header(req, "Authorization");
    ATR_TRY(atr_http_resp_header(resp, "WWW-Authenticate",
                                 h != NULL ? "Bearer realm=\"atrest\", error=\"invalid_token\""
                                           : "Bearer realm=\"atrest\""));
    return atr_err_set(atr_http_req_err(req), ATR_E_UNAUTHORIZED, "%s", why);
}

atr_status atr_service_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                            const struct atr_route *route, void *auth_ctx)
{
    struct atr_service *s = auth_ctx;
    const char *h = atr_http_req_header(req, "Authorization");
    const char *token = h != NULL && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    if (token == NULL || token[0] == '\0' || strlen(token) > ATR_JWT_MAX_LEN)
        return unauthorized(req, resp, "a bearer token is required (Authorization: Bearer)");
    struct principal *p = atr_calloc(1, sizeof(*p));
    if (p == NULL)
        return ATR_E_NOMEM;
    atr_http_req_set_principal(req, p, atr_free);
    if (route->role != NULL && strcmp(route->role, "admin") == 0) {
        if (!atr_digest_check_matches(&s->admin, token))
            return unauthorized(req, resp, "the admin bootstrap secret does not match");
        p->admin = 1;
        return ATR_OK;
    }
    if (s->tokval == NULL)
        return unauthorized(req, resp, "no identity server is configured");
    struct atr_jwt_claims c;
    memset(&c, 0, sizeof(c));
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_tokval_verify(&c, s->tokval, token, &err);
    if (rc == ATR_E_UNAVAILABLE)
        return atr_err_set(atr_http_req_err(req), ATR_E_UNAVAILABLE,
                           "the identity server's keys cannot be fetched; retry later");
    if (rc != ATR_OK)
        return unauthorized(req, resp, atr_err_msg(&err));
    const char *tenant = atr_http_req_param(req, "t");
    int tenant_ok = c.tid != NULL && tenant != NULL && strcmp(c.tid, tenant) == 0;
    int role_ok = route->role == NULL;
    for (size_t i = 0; i < c.nroles && !role_ok; i++) {
        role_ok = strcmp(c.roles[i], route->role) == 0 ||
                  /* "any" routes: any of the service's roles */
                  (strcmp(route->role, "any") == 0 && (strcmp(c.roles[i], ATR_ROLE_WRITE) == 0 ||
                                                       strcmp(c.roles[i], ATR_ROLE_READ) == 0 ||
                                                       strcmp(c.roles[i], ATR_ROLE_ADMIN) == 0));
    }
    snprintf(p->tid, sizeof(p->tid), "%s", c.tid != NULL ? c.tid : "");
    snprintf(p->oid, sizeof(p->oid), "%s", c.oid != NULL ? c.oid : "");
    snprintf(p->appid, sizeof(p->appid), "%s", c.appid != NULL ? c.appid : "");
    atr_jwt_claims_cleanup(&c);
    if (!tenant_ok) {
        atr_log_fields(ATR_LOG_WARN, "service.authz", atr_http_req_id(req), "denied", "tid", "s",
                       p->tid, "oid", "s", p->oid, "reason", "s", "token of another tenant", NULL);
        return atr_err_set(atr_http_req_err(req), ATR_E_FORBIDDEN,
                           "the token's tenant (tid) is not the tenant of the path");
    }
    if (!role_ok) {
        atr_log_fields(ATR_LOG_WARN, "service.authz", atr_http_req_id(req), "denied", "tid", "s",
                       p->tid, "oid", "s", p->oid, "reason", "s", "missing role", NULL);
        return atr_err_set(atr_http_req_err(req), ATR_E_FORBIDDEN, "the token lacks the role %s",
                           strcmp(route->role, "any") == 0 ? "Records.Read, Records.Write or "
                                                             "DataEncryption.Admin"
                                                           : route->role);
    }
    return ATR_OK;
}

static const struct principal *who(struct atr_http_req *req)
{
    return atr_http_req_principal(req);
}

static void actor_of(char *out, size_t cap, const struct principal *p)
{
    if (p->admin)
        snprintf(out, cap, "admin");
    else
        snprintf(out, cap, "oid=%s;appid=%s", p->oid, p->appid);
}

/* ------------------------------------------------------------ tenants */

static json_t *tenant_json(const struct atr_store_tenant *t)
{
    char created[32], updated[32];
    atr_clock_format_rfc3339(t->created_ms, created);
    atr_clock_format_rfc3339(t->updated_ms, updated);
    return json_pack("{s:s,s:s,s:s,s:s}", "id", t->id, "state", atr_store_state_name(t->state),
                     "created", created, "updated", updated);
}

static atr_status load_tenant(struct atr_store_tenant *t, struct atr_service *s,
                              struct atr_http_req *req)
{
    const char *id = atr_http_req_param(req, "t");
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_store_tenant_get(t, s->store, id, &err);
    if (rc == ATR_E_NOT_FOUND)
        return atr_err_set(atr_http_req_err(req), ATR_E_NOT_FOUND,
                           "tenant '%s' does not exist; an admin creates it with PUT "
                           "/v1/tenants/%s, or the first record write does",
                           id, id);
    if (rc != ATR_OK)
        return fail_with(req, rc, &err);
    return ATR_OK;
}

static atr_status h_tenant_put(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    char actor[300];
    actor_of(actor, sizeof(actor), who(req));
    int created = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc =
        atr_service_tenant_ensure(s, atr_http_req_param(req, "t"), actor, &created, &err);
    if (rc != ATR_OK)
        return fail_with(req, rc, &err);
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    rc = load_tenant(&t, s, req);
    if (rc == ATR_OK)
        rc = atr_http_resp_json(resp, created ? 201 : 200, tenant_json(&t));
    atr_store_tenant_cleanup(&t);
    return rc;
}

static atr_status h_tenant_get(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    atr_status rc = load_tenant(&t, ctx, req);
    if (rc == ATR_OK)
        rc = atr_http_resp_json(resp, 200, tenant_json(&t));
    atr_store_tenant_cleanup(&t);
    return rc;
}

/* Sets @p key to @p ms in the row's extras (JSON object text); left as it is if it cannot. */
static void extra_set_time(struct atr_store_tenant *t, const char *key, int64_t ms)
{
    json_t *o = json_loads(t->extra_json[0] != '\0' ? t->extra_json : "{}", 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    char *text = NULL;
    if (o != NULL && json_object_set_new(o, key, json_integer((json_int_t)ms)) == 0)
        text = json_dumps(o, JSON_COMPACT);
    if (text != NULL && strlen(text) < sizeof(t->extra_json))
        snprintf(t->extra_json, sizeof(t->extra_json), "%s", text);
    free(text);
    json_decref(o);
}

/* A time kept in the row's extras, 0 when absent. */
static int64_t extra_time(const struct atr_store_tenant *t, const char *key)
{
    json_t *o = json_loads(t->extra_json[0] != '\0' ? t->extra_json : "{}", 0, NULL);
    json_t *v = json_object_get(o, key);
    int64_t ms = json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
    json_decref(o);
    return ms;
}

static void put_time(json_t *o, const char *key, int64_t ms)
{
    if (ms <= 0)
        return;
    char when[32];
    atr_clock_format_rfc3339(ms, when);
    json_object_set_new(o, key, json_string(when));
}

static atr_status h_encryption_get(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    atr_status rc = load_tenant(&t, s, req);
    if (rc == ATR_OK) {
        char srk[32];
        snprintf(srk, sizeof(srk), "srk/%d", (int)t.srk_version);
        int customer = t.customer_blob.len > 0;
        char code[ATR_MONITOR_CODE_MAX] = "";
        if (t.reason[0] != '\0')
            reason_code(code, sizeof(code), t.reason);
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:s?,s:s?}", "mode",
                      customer ? "customer" : "managed", "state", atr_store_state_name(t.state),
                      "serviceKey", srk, "keyUri", t.key_uri[0] != '\0' ? t.key_uri : NULL,
                      "keyVersion", t.customer_kid[0] != '\0' ? t.customer_kid : NULL, "reason",
                      code[0] != '\0' ? code : NULL, "reasonText",
                      t.reason[0] != '\0' ? reason_text(t.reason) : NULL);
        struct atr_monitor_status ms;
        if (o != NULL && customer)
            put_time(o, "lastRoll", extra_time(&t, "lastRollMs")); /* kept across restarts */
        if (o != NULL && customer && atr_monitor_status(&ms, s->monitor, t.id)) {
            put_time(o, "lastRollCheck", ms.last_roll_check_ms);
            put_time(o, "lastCheck", ms.last_check_ms);
            put_time(o, "lastSuccessfulCheck", ms.last_ok_ms);
            put_time(o, "nextCheck", ms.next_probe_ms);
            if (t.state == ATR_STORE_STATE_DEGRADED)
                put_time(o, "lockAt", ms.lock_at_ms);
            json_object_set_new(o, "failedChecks", json_integer((json_int_t)ms.failures));
        }
        if (o != NULL && customer && s->reserve != NULL)
            json_object_set_new(o, "reserve",
                                json_pack("{s:I,s:I}", "size",
                                          (json_int_t)atr_reserve_size(s->reserve), "available",
                                          (json_int_t)atr_reserve_count(s->reserve, t.id)));
        rc = atr_http_resp_json(resp, 200, o);
    }
    atr_store_tenant_cleanup(&t);
    return rc;
}

/* The SRK-wrap(TK) of @p t under the current SRK version (re-wrapped when older). */
static atr_status inner_current(struct atr_buf *out, int32_t *out_version, struct atr_service *s,
                                const struct atr_store_tenant *t, struct atr_akv_error *fail,
                                struct atr_err *err)
{
    struct atr_secret tk;
    memset(&tk, 0, sizeof(tk));
    atr_status rc = tk_unwrap_row(&tk, s, t, fail, err);
    struct atr_kms_keyref ref;
    uint32_t v = 0;
    if (rc == ATR_OK)
        rc = atr_keyring_tk_wrap(out, &ref, atr_srk_file_provider(s->srk), &tk, t->id, err);
    if (rc == ATR_OK)
        rc = atr_srk_keyref_parse(&v, &ref, err);
    *out_version = (int32_t)v;
    atr_secret_cleanup(&tk);
    return rc;
}

/* Answers a vault failure during enable/disable with its cause and fix. */
static atr_status vault_failure(struct atr_http_resp *resp, const struct atr_akv_error *fail,
                                const struct atr_err *err)
{
    char fix[ATR_BYOK_TEXT_MAX];
    const char *f = atr_byok_fix(fail, fix, sizeof(fix));
    unsigned status =
        fail->cause == ATR_AKV_THROTTLED ? 503
        : fail->cause == ATR_AKV_VAULT_UNREACHABLE || fail->cause == ATR_AKV_AUTHORITY_UNREACHABLE
            ? 504
            : 502;
    json_t *body = json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "code", "CustomerKeyUnavailable",
                             "message", atr_err_msg(err), "cause", atr_akv_cause_name(fail->cause),
                             "fix", f != NULL ? f : "");
    ATR_TRY(atr_http_resp_json(resp, status, body));
    return status == 503 ? ATR_E_UNAVAILABLE : status == 504 ? ATR_E_TIMEOUT : ATR_E_UPSTREAM;
}

static atr_status h_encryption_put(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_err *rerr = atr_http_req_err(req);
    if (s->byok == NULL)
        return atr_err_set(rerr, ATR_E_UNSUPPORTED,
                           "customer-managed keys are not configured on this service");
    json_t *body = NULL;
    ATR_TRY(atr_http_req_json(&body, req));
    const char *uri = json_string_value(json_object_get(body, "keyUri"));
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    struct atr_byok_report *rep = atr_calloc(1, sizeof(*rep));
    struct atr_buf inner, outer;
    atr_buf_init(&inner, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&outer, ATR_STORE_WRAPPED_MAX);
    struct atr_akv_error fail;
    memset(&fail, 0, sizeof(fail));
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = rep == NULL ? ATR_E_NOMEM : load_tenant(&t, s, req);
    if (rc != ATR_OK)
        goto done;
    if (t.state == ATR_STORE_STATE_LOCKED) {
        rc = atr_err_set(rerr, ATR_E_LOCKED,
                         "the tenant is locked: restore access to its current key first");
        goto done;
    }
    size_t folded = 0;
    if (t.customer_blob.len > 0 && (rc = fold_blocks(s, t.id, &folded, &err)) != ATR_OK) {
        /* blocks written during a lock still need the current key: fold them first */
        rc = rc == ATR_E_UNAVAILABLE ? key_unavailable(resp, &err) : fail_with(req, rc, &err);
        goto done;
    }
    atr_byok_validate(rep, s->byok, t.id, uri);
    if (!rep->ok) {
        const struct atr_byok_check *bad = NULL;
        for (size_t i = 0; i < rep->n && bad == NULL; i++)
            bad = rep->checks[i].outcome == 0 ? &rep->checks[i] : NULL;
        char msg[2 * ATR_BYOK_TEXT_MAX + 64];
        snprintf(msg, sizeof(msg), "check %s failed: %s", bad != NULL ? bad->name : "?",
                 bad != NULL ? bad->message : "");
        json_t *report = atr_byok_report_json(rep);
        json_t *e =
            json_pack("{s:s,s:s,s:s,s:O}", "code", rep->code, "message", msg, "fix",
                      bad != NULL ? bad->fix : "", "checks", json_object_get(report, "checks"));
        json_decref(report);
        char actor[300];
        actor_of(actor, sizeof(actor), who(req));
        audit(s, t.id, actor, "encryption.enable.refused",
              json_pack("{s:s,s:s,s:s}", "keyUri", uri != NULL ? uri : "", "check",
                        bad != NULL ? bad->name : "", "cause", bad != NULL ? bad->cause : ""));
        rc = atr_http_resp_json(resp, rep->http_status, json_pack("{s:o}", "error", e));
        if (rc == ATR_OK)
            rc = rep->http_status >= 500 ? ATR_E_UPSTREAM : ATR_E_INVALID;
        goto done;
    }
    /* the new layer: CK-wrap of SRK-wrap(TK) under the current SRK version */
    int32_t version = 0;
    char kid[ATR_AKV_KID_MAX];
    if ((rc = inner_current(&inner, &version, s, &t, &fail, &err)) != ATR_OK) {
        rc = fail.cause != ATR_AKV_OK ? vault_failure(resp, &fail, &err) : fail_with(req, rc, &err);
        goto done;
    }
    if ((rc = atr_byok_wrap(&outer, kid, s->byok, &rep->key, atr_buf_span(&inner), &fail, &err)) !=
        ATR_OK) {
        rc = vault_failure(resp, &fail, &err);
        goto done;
    }
    char key_uri[ATR_STORE_URI_MAX + 1];
    if (atr_akv_uri_format(key_uri, sizeof(key_uri), &rep->key, 0) != ATR_OK ||
        strlen(kid) > ATR_STORE_URI_MAX) {
        rc = atr_err_set(rerr, ATR_E_INVALID, "the key URI is too long");
        goto done;
    }
    char old_kid[ATR_STORE_URI_MAX + 1];
    snprintf(old_kid, sizeof(old_kid), "%s", t.customer_kid);
    snprintf(t.key_uri, sizeof(t.key_uri), "%s", key_uri);
    snprintf(t.customer_kid, sizeof(t.customer_kid), "%s", kid);
    atr_buf_reset(&t.customer_blob);
    atr_buf_reset(&t.srk_blob);
    if ((rc = atr_buf_append(&t.customer_blob, outer.ptr, outer.len)) != ATR_OK)
        goto done;
    t.srk_version = version;
    t.state = ATR_STORE_STATE_CUSTOMER;
    t.reason[0] = '\0';
    t.updated_ms = now_ms(s);
    char actor[300];
    actor_of(actor, sizeof(actor), who(req));
    struct atr_store_audit_event ev;
    audit_event(&ev, s, t.id, actor, "encryption.enable",
                json_pack("{s:s,s:s,s:s?}", "keyUri", key_uri, "keyVersion", kid,
                          "previousKeyVersion", old_kid[0] != '\0' ? old_kid : NULL));
    atr_failpoint("enable.before_store");
    rc = update_audited(s, &t, &ev, &err);
    if (rc == ATR_OK)
        atr_failpoint("enable.after_store");
    if (rc == ATR_E_CONFLICT) {
        rc = atr_err_set(rerr, ATR_E_CONFLICT,
                         "the tenant's encryption settings changed meanwhile; try again");
        goto done;
    }
    if (rc != ATR_OK) {
        rc = fail_with(req, rc, &err);
        goto done;
    }
    atr_reserve_drop(s->reserve, t.id); /* wrapped by the previous key, if any */
    if (atr_monitor_track(s->monitor, t.id, ATR_MONITOR_HEALTHY, 1, &err) != ATR_OK)
        atr_log(ATR_LOG_ERROR, "service.monitor.track", atr_http_req_id(req),
                "the monitor does not watch tenant %s: %s", t.id, atr_err_msg(&err));
    atr_log_fields(ATR_LOG_INFO, "service.encryption.enable", atr_http_req_id(req),
                   "customer key enabled", "tenant", "s", t.id, "kid", "s", kid, NULL);
    rc = atr_http_resp_json(resp, 200,
                            json_pack("{s:s,s:s,s:s,s:s,s:o}", "mode", "customer", "state",
                                      "customer", "keyUri", key_uri, "keyVersion", kid,
                                      "validation", atr_byok_report_json(rep)));
done:
    atr_buf_cleanup(&inner);
    atr_buf_cleanup(&outer);
    atr_free(rep);
    atr_store_tenant_cleanup(&t);
    json_decref(body);
    return rc;
}

static atr_status h_encryption_delete(struct atr_http_req *req, struct atr_http_resp *resp,
                                      void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_err *rerr = atr_http_req_err(req);
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    struct atr_buf inner;
    atr_buf_init(&inner, ATR_STORE_WRAPPED_MAX);
    struct atr_akv_error fail;
    memset(&fail, 0, sizeof(fail));
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = load_tenant(&t, s, req);
    if (rc != ATR_OK)
        goto done;
    if (t.customer_blob.len == 0) {
        rc = atr_err_set(rerr, ATR_E_CONFLICT, "the tenant already uses service-managed keys only");
        goto done;
    }
    if (t.state == ATR_STORE_STATE_LOCKED) {
        rc = atr_err_set(rerr, ATR_E_LOCKED,
                         "the tenant is locked: its customer key is needed to remove the "
                         "customer layer; restore access to the key first");
        goto done;
    }
    size_t folded = 0;
    if ((rc = fold_blocks(s, t.id, &folded, &err)) != ATR_OK) {
        /* blocks written during a lock are wrapped by the customer key: fold them first */
        rc = rc == ATR_E_UNAVAILABLE ? key_unavailable(resp, &err) : fail_with(req, rc, &err);
        goto done;
    }
    int32_t version = 0;
    if ((rc = inner_current(&inner, &version, s, &t, &fail, &err)) != ATR_OK) {
        rc = fail.cause != ATR_AKV_OK ? vault_failure(resp, &fail, &err) : fail_with(req, rc, &err);
        goto done;
    }
    char old_kid[ATR_STORE_URI_MAX + 1];
    snprintf(old_kid, sizeof(old_kid), "%s", t.customer_kid);
    atr_buf_reset(&t.srk_blob);
    if ((rc = atr_buf_append(&t.srk_blob, inner.ptr, inner.len)) != ATR_OK)
        goto done;
    t.srk_version = version;
    atr_buf_reset(&t.customer_blob);
    t.customer_kid[0] = '\0';
    t.key_uri[0] = '\0';
    t.reason[0] = '\0';
    t.state = ATR_STORE_STATE_MANAGED;
    t.updated_ms = now_ms(s);
    char actor[300];
    actor_of(actor, sizeof(actor), who(req));
    struct atr_store_audit_event ev;
    audit_event(&ev, s, t.id, actor, "encryption.disable",
                json_pack("{s:s}", "previousKeyVersion", old_kid));
    atr_failpoint("disable.before_store");
    rc = update_audited(s, &t, &ev, &err);
    if (rc == ATR_OK)
        atr_failpoint("disable.after_store");
    if (rc == ATR_E_CONFLICT) {
        rc = atr_err_set(rerr, ATR_E_CONFLICT,
                         "the tenant's encryption settings changed meanwhile; try again");
        goto done;
    }
    if (rc != ATR_OK) {
        rc = fail_with(req, rc, &err);
        goto done;
    }
    atr_monitor_untrack(s->monitor, t.id);
    atr_reserve_drop(s->reserve, t.id);
    atr_log_fields(ATR_LOG_INFO, "service.encryption.disable", atr_http_req_id(req),
                   "customer key removed", "tenant", "s", t.id, NULL);
    rc = atr_http_resp_json(resp, 200,
                            json_pack("{s:s,s:s,s:s}", "mode", "managed", "state", "managed",
                                      "message",
                                      "the customer layer was removed; the data stays encrypted "
                                      "with service-managed keys"));
done:
    atr_buf_cleanup(&inner);
    atr_store_tenant_cleanup(&t);
    return rc;
}

static atr_status h_audit(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    const char *tenant = atr_http_req_param(req, "t");
    const char *lim = atr_http_req_query(req, "limit");
    const char *before = atr_http_req_query(req, "before");
    long limit = 50;
    long long before_id = 0;
    char *end = NULL;
    if (lim != NULL &&
        ((limit = strtol(lim, &end, 10)) < 1 || limit > AUDIT_PAGE_MAX || *end != '\0'))
        return atr_err_set(atr_http_req_err(req), ATR_E_INVALID, "limit must be 1..%d",
                           AUDIT_PAGE_MAX);
    if (before != NULL && ((before_id = strtoll(before, &end, 10)) < 1 || *end != '\0'))
        return atr_err_set(atr_http_req_err(req), ATR_E_INVALID,
                           "before must be an event id from a previous page");
    struct atr_store_audit_event *ev = NULL;
    size_t n = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc =
        atr_store_audit_list(&ev, &n, s->store, tenant, (int64_t)before_id, (size_t)limit, &err);
    if (rc != ATR_OK)
        return fail_with(req, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        char when[32];
        atr_clock_format_rfc3339(ev[i].time_ms, when);
        json_t *detail = json_loads(ev[i].detail_json, 0, NULL);
        json_array_append_new(arr,
                              json_pack("{s:I,s:s,s:s,s:s,s:o}", "id", (json_int_t)ev[i].id, "time",
                                        when, "actor", ev[i].actor, "action", ev[i].action,
                                        "detail", detail != NULL ? detail : json_object()));
    }
    json_t *o = json_pack("{s:o}", "value", arr);
    if (o != NULL && n == (size_t)limit && n > 0)
        json_object_set_new(o, "nextBefore", json_integer(ev[n - 1].id));
    atr_free(ev);
    return atr_http_resp_json(resp, 200, o);
}

/* ------------------------------------------------------------ group commit */

/*
 * Ingest calls hand their sealed blocks to one committer thread, which
 * writes everything queued in one store transaction (one fsync), waiting up
 * to the flush interval for more calls first. A caller returns once its
 * blocks are committed (or the transaction failed for all of them).
 */
struct commit_req {
    const char *tenant;
    struct atr_store_block_in *blocks; /* the caller's; tenant set on each */
    size_t n;
    atr_status rc;
    struct atr_err err;
    int done;
    struct commit_req *next;
};

struct committer {
    struct atr_store *store;
    int64_t flush_ms;
    pthread_mutex_t lock;
    pthread_cond_t work; /* a request was queued, or stop */
    pthread_cond_t done; /* requests were completed */
    struct commit_req *head, *tail;
    size_t queued_blocks;
    int stop;
    pthread_t thread;
    uint64_t commits; /* transactions, for tests and metrics */
};

/* Takes queued requests (whole ones) up to ATR_STORE_APPEND_MAX blocks. */
static struct commit_req *take_batch(struct committer *c, size_t *out_blocks)
{
    struct commit_req *first = c->head, *last = NULL;
    size_t total = 0;
    for (struct commit_req *r = c->head; r != NULL; r = r->next) {
        if (last != NULL && total + r->n > ATR_STORE_APPEND_MAX)
            break;
        total += r->n;
        last = r;
    }
    if (last == NULL) {
        *out_blocks = 0;
        return NULL;
    }
    c->head = last->next;
    if (c->head == NULL)
        c->tail = NULL;
    last->next = NULL;
    c->queued_blocks -= total;
    *out_blocks = total;
    return first;
}

static void commit_batch(struct committer *c, struct commit_req *batch, size_t total)
{
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = ATR_OK;
    struct atr_store_block_in *all = NULL;
    if (batch->next == NULL) {
        rc = atr_store_blocks_append(c->store, batch->tenant, batch->blocks, batch->n, &err);
    } else if ((all = atr_calloc(total, sizeof(*all))) == NULL) {
        rc = atr_err_set(&err, ATR_E_NOMEM, "group commit: out of memory");
    } else {
        size_t k = 0;
        for (struct commit_req *r = batch; r != NULL; r = r->next)
            for (size_t i = 0; i < r->n; i++)
                all[k++] = r->blocks[i];
        rc = atr_store_blocks_append(c->store, batch->tenant, all, total, &err);
    }
    atr_free(all);
    pthread_mutex_lock(&c->lock);
    c->commits++;
    for (struct commit_req *r = batch; r != NULL;) {
        struct commit_req *next = r->next; /* r lives on its caller's stack */
        r->rc = rc;
        r->err = err;
        r->done = 1;
        r = next;
    }
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->lock);
}

static void *committer_main(void *arg)
{
    struct committer *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (c->head == NULL && !c->stop)
            pthread_cond_wait(&c->work, &c->lock);
        if (c->head == NULL)
            break;
        if (c->flush_ms > 0 && !c->stop && c->queued_blocks < ATR_STORE_APPEND_MAX) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (c->flush_ms % 1000) * 1000000;
            ts.tv_sec += (time_t)(c->flush_ms / 1000 + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            while (!c->stop && c->queued_blocks < ATR_STORE_APPEND_MAX &&
                   pthread_cond_timedwait(&c->work, &c->lock, &ts) == 0) {
            }
        }
        size_t total = 0;
        struct commit_req *batch = take_batch(c, &total);
        pthread_mutex_unlock(&c->lock);
        if (batch != NULL)
            commit_batch(c, batch, total);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static atr_status committer_new(struct committer **out, struct atr_store *store, int64_t flush_ms,
                                struct atr_err *err)
{
    struct committer *c = atr_calloc(1, sizeof(*c));
    if (c == NULL)
        return ATR_E_NOMEM;
    c->store = store;
    c->flush_ms = flush_ms;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->done, NULL);
    if (pthread_create(&c->thread, NULL, committer_main, c) != 0) {
        pthread_cond_destroy(&c->done);
        pthread_cond_destroy(&c->work);
        pthread_mutex_destroy(&c->lock);
        atr_free(c);
        return atr_err_set(err, ATR_E_INTERNAL, "service: cannot start the committer thread");
    }
    *out = c;
    return ATR_OK;
}

/* Commits what is queued, then stops the thread. No caller may be waiting. */
static void committer_free(struct committer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->lock);
    atr_free(c);
}

/* Queues @p blocks of @p tenant and waits until they are committed. */
static atr_status committer_append(struct committer *c, const char *tenant,
                                   struct atr_store_block_in *blocks, size_t n, struct atr_err *err)
{
    struct commit_req r;
    memset(&r, 0, sizeof(r));
    r.tenant = tenant;
    r.blocks = blocks;
    r.n = n;
    for (size_t i = 0; i < n; i++)
        blocks[i].tenant = tenant;
    pthread_mutex_lock(&c->lock);
    if (c->tail != NULL)
        c->tail->next = &r;
    else
        c->head = &r;
    c->tail = &r;
    c->queued_blocks += n;
    pthread_cond_signal(&c->work);
    while (!r.done)
        pthread_cond_wait(&c->done, &c->lock);
    pthread_mutex_unlock(&c->lock);
    if (r.rc != ATR_OK && err != NULL)
        *err = r.err;
    return r.rc;
}

/* ------------------------------------------------------------ ingest */

/* The 8-byte big-endian form of a block id, bound into its wrapped DEK. */
static void block_id_bytes(uint8_t out[8], int64_t id)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)((uint64_t)id & 0xffu);
        id = (int64_t)((uint64_t)id >> 8);
    }
}

static int ndjson_type(const char *ct)
{
    static const char *const ok[] = {"application/x-ndjson", "application/ndjson",
                                     "application/jsonl", "application/x-jsonlines"};
    if (ct == NULL)
        return 0;
    size_t n = strcspn(ct, "; \t");
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strlen(ok[i]) == n && strncasecmp(ct, ok[i], n) == 0)
            return 1;
    }
    return 0;
}

/* The ingest report: accepted, rejected, blocks, errors. */
static json_t *report_json(const struct atr_records_batch *b, size_t accepted, size_t blocks)
{
    json_t *errs = json_array();
    for (size_t i = 0; errs != NULL && i < b->n_errors; i++)
        json_array_append_new(errs, json_pack("{s:I,s:s}", "line", (json_int_t)b->errors[i].line,
                                              "message", b->errors[i].message));
    return json_pack("{s:I,s:I,s:I,s:o,s:I}", "accepted", (json_int_t)accepted, "rejected",
                     (json_int_t)b->n_rejected, "blocks", (json_int_t)blocks, "errors", errs,
                     "errorsOmitted", (json_int_t)b->errors_omitted);
}

/* Seals the packed blocks of one call and appends them in one transaction. */
static atr_status store_blocks(struct atr_service *s, const char *tenant,
                               const struct atr_records_blocks *blocks, const struct atr_secret *tk,
                               const struct atr_reserve_dek *rdeks, struct atr_err *err)
{
    size_t n = blocks->n;
    if (n > ATR_STORE_APPEND_MAX)
        return atr_err_set(err, ATR_E_TOO_LARGE,
                           "the records of this call make more than %d blocks; send fewer "
                           "records per call",
                           ATR_STORE_APPEND_MAX);
    int64_t first = 0;
    ATR_TRY(atr_store_block_ids_reserve(&first, s->store, tenant, n, err));
    struct atr_store_block_in *in = atr_calloc(n, sizeof(*in));
    struct atr_buf *sealed = atr_calloc(n, sizeof(*sealed));
    struct atr_buf *wrapped = atr_calloc(n, sizeof(*wrapped));
    atr_status rc = in == NULL || sealed == NULL || wrapped == NULL ? ATR_E_NOMEM : ATR_OK;
    for (size_t i = 0; rc == ATR_OK && i < n; i++) {
        const struct atr_records_block *b = &blocks->blocks[i];
        atr_buf_init(&sealed[i], ATR_STORE_SEALED_MAX);
        atr_buf_init(&wrapped[i], ATR_STORE_WRAPPED_MAX);
        int64_t id = first + (int64_t)i;
        const char *ref = s->bench_plaintext ? KEY_REF_PLAIN
                          : rdeks != NULL    ? KEY_REF_RESERVE
                                             : KEY_REF_TK;
        if (rdeks != NULL) {
            /* locked: a reserve DEK, already wrapped as CK-wrap(SRK-wrap(DEK)) */
            struct atr_block_ctx bc = {tenant, id, ref};
            rc = atr_buf_append(&wrapped[i], rdeks[i].blob.ptr, rdeks[i].blob.len);
            if (rc == ATR_OK)
                rc = atr_block_seal(&sealed[i], &bc, atr_buf_span(&b->plain), &rdeks[i].dek,
                                    s->compress, err);
        } else if (s->bench_plaintext) {
            /* benchmark-only pipeline: everything but the cryptography */
            rc = atr_buf_append(&wrapped[i], "-", 1);
            if (rc == ATR_OK)
                rc = atr_buf_append(&sealed[i], b->plain.ptr, b->plain.len);
        } else {
            uint8_t idb[8];
            block_id_bytes(idb, id);
            struct atr_secret dek;
            memset(&dek, 0, sizeof(dek));
            rc = atr_keyring_dek_new(&dek, &wrapped[i], tk, tenant, atr_span_of(idb, 8), err);
            struct atr_block_ctx bc = {tenant, id, ref};
            if (rc == ATR_OK)
                rc = atr_block_seal(&sealed[i], &bc, atr_buf_span(&b->plain), &dek, s->compress,
                                    err);
            atr_secret_cleanup(&dek);
        }
        in[i].block_id = id;
        in[i].t_min_ms = b->t_min_ms;
        in[i].t_max_ms = b->t_max_ms;
        in[i].records = (int64_t)b->count;
        in[i].key_ref = ref;
        in[i].wrapped_dek = atr_buf_span(&wrapped[i]);
        in[i].sealed = atr_buf_span(&sealed[i]);
    }
    if (rc == ATR_OK)
        rc = committer_append(s->committer, tenant, in, n, err);
    for (size_t i = 0; i < n && sealed != NULL && wrapped != NULL; i++) {
        atr_buf_cleanup(&sealed[i]);
        atr_buf_cleanup(&wrapped[i]);
    }
    atr_free(in);
    atr_free(sealed);
    atr_free(wrapped);
    return rc;
}

static atr_status h_ingest(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    const char *tenant = atr_http_req_param(req, "t");
    struct atr_err *rerr = atr_http_req_err(req);
    if (!ndjson_type(atr_http_req_header(req, "Content-Type")))
        return atr_err_set(rerr, ATR_E_MEDIA_TYPE,
                           "records are sent as NDJSON: Content-Type: application/x-ndjson");
    struct atr_span body = atr_http_req_body(req);
    if (body.len > s->max_body)
        return atr_err_set(rerr, ATR_E_TOO_LARGE, "the body is larger than %zu bytes", s->max_body);
    const char *atomic_q = atr_http_req_query(req, "atomic");
    int atomic = atomic_q != NULL && (strcmp(atomic_q, "true") == 0 || strcmp(atomic_q, "1") == 0);
    struct atr_records_limits lim;
    memset(&lim, 0, sizeof(lim));
    lim.max_line = s->max_line;
    lim.max_lines = s->max_lines;
    struct atr_records_batch batch;
    struct atr_records_blocks blocks;
    memset(&blocks, 0, sizeof(blocks));
    struct atr_secret tk;
    memset(&tk, 0, sizeof(tk));
    struct atr_reserve_dek *rdeks = NULL;
    size_t ndeks = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_records_parse(&batch, body, &lim, &err);
    if (rc != ATR_OK) {
        rc = fail_with(req, rc, &err);
        goto done;
    }
    atr_metrics_add(s->metrics, ATR_METRICS_RECORDS_REJECTED, batch.n_rejected);
    if (batch.n_records == 0 || (atomic && batch.n_rejected > 0)) {
        json_t *extra = report_json(&batch, 0, 0);
        rc = atr_http_resp_error(resp, ATR_E_INVALID,
                                 batch.n_lines == 0 ? "the body holds no record"
                                 : atomic ? "a line was rejected and atomic=true: nothing was "
                                            "stored"
                                          : "no record was accepted",
                                 extra);
        if (rc == ATR_OK)
            rc = ATR_E_INVALID;
        goto done;
    }
    char actor[300];
    actor_of(actor, sizeof(actor), who(req));
    int locked = 0;
    if ((rc = atr_service_tenant_ensure(s, tenant, actor, NULL, &err)) != ATR_OK ||
        (!s->bench_plaintext && (rc = tk_get(&tk, s, tenant, &err)) != ATR_OK &&
         rc != ATR_E_LOCKED) ||
        (locked = rc == ATR_E_LOCKED,
         (rc = atr_records_pack(&blocks, &batch, s->block_bytes, &err)) != ATR_OK)) {
        rc = rc == ATR_E_UNAVAILABLE ? key_unavailable(resp, &err) : fail_with(req, rc, &err);
        goto done;
    }
    if (locked) {
        /* design section 3: accepted under reserve DEKs, readable after the restore */
        size_t nb = blocks.n > 0 ? blocks.n : 1;
        if ((rdeks = atr_calloc(nb, sizeof(*rdeks))) == NULL) {
            rc = ATR_E_NOMEM;
            goto done;
        }
        ndeks = nb;
        if ((rc = atr_reserve_take(s->reserve, tenant, rdeks, blocks.n, &err)) != ATR_OK) {
            rc = rc == ATR_E_UNAVAILABLE || rc == ATR_E_INVALID ? reserve_empty(resp, s, &err)
                                                                : fail_with(req, rc, &err);
            goto done;
        }
    }
    if ((rc = store_blocks(s, tenant, &blocks, &tk, rdeks, &err)) != ATR_OK) {
        rc = rc == ATR_E_UNAVAILABLE ? key_unavailable(resp, &err) : fail_with(req, rc, &err);
        goto done;
    }
    if (locked)
        atr_log_fields(ATR_LOG_INFO, "service.reserve.use", atr_http_req_id(req),
                       "records of a locked tenant sealed with reserve data keys", "tenant", "s",
                       tenant, "blocks", "i", (long long)blocks.n, NULL);
    atr_metrics_add(s->metrics, ATR_METRICS_RECORDS_INGESTED, batch.n_records);
    atr_metrics_add(s->metrics, ATR_METRICS_INGEST_BYTES, body.len);
    atr_metrics_add(s->metrics, ATR_METRICS_BLOCKS_WRITTEN, blocks.n);
    json_t *report = report_json(&batch, batch.n_records, blocks.n);
    if (locked && report != NULL)
        json_object_set_new(report, "readableAfterRestore", json_true());
    rc = atr_http_resp_json(resp, 200, report);
done:
    for (size_t i = 0; rdeks != NULL && i < ndeks; i++)
        atr_reserve_dek_cleanup(&rdeks[i]);
    atr_free(rdeks);
    atr_secret_cleanup(&tk);
    atr_records_blocks_cleanup(&blocks);
    atr_records_batch_cleanup(&batch);
    return rc;
}

/* ------------------------------------------------------------ query */

#define QUERY_PAGE 64

struct query_out {
    struct atr_buf out; /* NDJSON being built */
    size_t limit;
    size_t count;
    size_t next_index; /* index after the last record taken */
    int full;          /* limit or byte cap reached */
};

static int query_take(struct atr_span line, int64_t time_ms, size_t index, void *ctx)
{
    struct query_out *q = ctx;
    (void)time_ms;
    if (atr_buf_append(&q->out, line.ptr, line.len) != ATR_OK ||
        atr_buf_append(&q->out, "\n", 1) != ATR_OK) {
        q->full = 2; /* out of memory or cap: stop */
        return 0;
    }
    q->count++;
    q->next_index = index + 1;
    if (q->count == q->limit || q->out.len >= ATR_SERVICE_QUERY_BYTES_MAX) {
        q->full = 1;
        return 0;
    }
    return 1;
}

/* Cursor text: base64url of "t_min:block_id:index". */
static atr_status cursor_encode(char **out, int64_t t_min, int64_t id, size_t index)
{
    char raw[80];
    snprintf(raw, sizeof(raw), "%lld:%lld:%zu", (long long)t_min, (long long)id, index);
    return atr_b64url_encode_str(out, atr_span_str(raw));
}

static int cursor_decode(int64_t *t_min, int64_t *id, size_t *index, const char *text)
{
    struct atr_buf b;
    atr_buf_init(&b, 79);
    int ok = strlen(text) < 120 && atr_b64url_decode(&b, text, strlen(text), NULL) == ATR_OK &&
             atr_buf_cstr(&b) != NULL;
    long long t = 0, i = 0;
    unsigned long long x = 0;
    char tail;
    ok = ok && sscanf(atr_buf_cstr(&b), "%lld:%lld:%llu%c", &t, &i, &x, &tail) == 3 && i >= 1;
    atr_buf_cleanup(&b);
    *t_min = t;
    *id = i;
    *index = (size_t)x;
    return ok;
}

/* Opens one block and scans it into @p q. */
static atr_status query_block(struct query_out *q, struct atr_service *s, const char *tenant,
                              const struct atr_store_block_meta *m,
                              const struct atr_records_filter *f, size_t skip,
                              const struct atr_secret *tk, struct atr_err *err)
{
    struct atr_buf sealed, plain;
    atr_buf_init(&sealed, ATR_STORE_SEALED_MAX);
    atr_buf_init(&plain, ATR_BLOCK_MAX_PLAIN_DEFAULT * 16);
    struct atr_secret dek;
    memset(&dek, 0, sizeof(dek));
    atr_status rc = atr_store_block_read(&sealed, s->store, tenant, m->block_id, err);
    if (rc == ATR_OK && strcmp(m->key_ref, KEY_REF_PLAIN) == 0) {
        rc = atr_buf_append(&plain, sealed.ptr, sealed.len);
    } else if (rc == ATR_OK && strcmp(m->key_ref, KEY_REF_TK) == 0) {
        uint8_t idb[8];
        block_id_bytes(idb, m->block_id);
        rc = atr_keyring_dek_unwrap(&dek, tk, tenant, atr_span_of(idb, 8),
                                    atr_buf_span(&m->wrapped_dek), err);
        struct atr_block_ctx bc = {tenant, m->block_id, m->key_ref};
        if (rc == ATR_OK)
            rc = atr_block_open(&plain, &bc, atr_buf_span(&sealed), &dek,
                                ATR_BLOCK_MAX_PLAIN_DEFAULT * 16, err);
    } else if (rc == ATR_OK && strcmp(m->key_ref, KEY_REF_RESERVE) == 0) {
        /* written while the tenant was locked and not folded yet: have the monitor fold it */
        atr_monitor_refill_soon(s->monitor, tenant);
        rc = atr_err_set(err, ATR_E_UNAVAILABLE,
                         "block %lld was written while the tenant was locked and is being "
                         "folded back under its key; retry in a few seconds",
                         (long long)m->block_id);
    } else if (rc == ATR_OK) {
        rc = atr_err_set(err, ATR_E_UNAVAILABLE,
                         "block %lld is sealed under key %s, which is not available",
                         (long long)m->block_id, m->key_ref);
    }
    if (rc == ATR_E_AUTH_FAILED) {
        atr_log_fields(ATR_LOG_ERROR, "service.block.integrity", NULL,
                       "a stored block failed authentication", "tenant", "s", tenant, "block", "i",
                       (long long)m->block_id, NULL);
        rc = atr_err_set(err, ATR_E_INTERNAL,
                         "block %lld of tenant %s failed authentication (tampered or misplaced)",
                         (long long)m->block_id, tenant);
    }
    if (rc == ATR_OK) {
        atr_metrics_add(s->metrics, ATR_METRICS_BLOCKS_READ, 1);
        rc = atr_records_scan(atr_buf_span(&plain), f, skip, query_take, q, err);
        if (rc == ATR_OK && q->full == 2)
            rc = atr_err_set(err, ATR_E_NOMEM, "query: out of memory");
    }
    atr_secret_cleanup(&dek);
    atr_wipe(plain.ptr, plain.len);
    atr_buf_cleanup(&plain);
    atr_buf_cleanup(&sealed);
    return rc;
}

static atr_status h_query(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    const char *tenant = atr_http_req_param(req, "t");
    struct atr_records_filter f;
    size_t limit = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_records_filter_parse(
        &f, &limit, atr_http_req_query(req, "from"), atr_http_req_query(req, "to"),
        atr_http_req_query(req, "user"), atr_http_req_query(req, "app"),
        atr_http_req_query(req, "action"), atr_http_req_query(req, "limit"), &err);
    if (rc != ATR_OK)
        return fail_with(req, rc, &err);
    struct atr_store_block_cursor after = {INT64_MIN, 0};
    int have_after = 0;
    size_t skip = 0;
    int64_t skip_block = 0;
    const char *cur = atr_http_req_query(req, "cursor");
    if (cur != NULL) {
        int64_t t_min = 0, id = 0;
        if (!cursor_decode(&t_min, &id, &skip, cur))
            return atr_err_set(atr_http_req_err(req), ATR_E_INVALID,
                               "the cursor is not one this service gave out");
        after.t_min_ms = t_min;
        after.block_id = id - 1; /* list from the cursor's block itself */
        have_after = 1;
        skip_block = id;
    }
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    rc = load_tenant(&t, s, req);
    atr_store_tenant_cleanup(&t);
    if (rc != ATR_OK)
        return rc;
    struct atr_secret tk;
    memset(&tk, 0, sizeof(tk));
    if (!s->bench_plaintext && (rc = tk_get(&tk, s, tenant, &err)) != ATR_OK)
        return rc == ATR_E_UNAVAILABLE ? key_unavailable(resp, &err)
               : rc == ATR_E_LOCKED    ? tenant_locked(resp, s, atr_err_msg(&err))
                                       : fail_with(req, rc, &err);
    struct query_out q;
    memset(&q, 0, sizeof(q));
    atr_buf_init(&q.out, ATR_SERVICE_QUERY_BYTES_MAX + ATR_BLOCK_MAX_PLAIN_DEFAULT * 16);
    q.limit = limit;
    char *next = NULL;
    int64_t from = f.from_ms, to = f.to_ms;
    for (;;) {
        struct atr_store_block_meta *metas = NULL;
        size_t n = 0;
        rc = atr_store_blocks_list(&metas, &n, s->store, tenant, from, to,
                                   have_after ? &after : NULL, QUERY_PAGE, &err);
        if (rc != ATR_OK)
            break;
        for (size_t i = 0; rc == ATR_OK && i < n && !q.full; i++) {
            size_t sk = metas[i].block_id == skip_block ? skip : 0;
            q.next_index = sk;
            rc = query_block(&q, s, tenant, &metas[i], &f, sk, &tk, &err);
            if (rc == ATR_OK && q.full)
                rc = cursor_encode(&next, metas[i].t_min_ms, metas[i].block_id, q.next_index);
            after.t_min_ms = metas[i].t_min_ms;
            after.block_id = metas[i].block_id;
            have_after = 1;
        }
        atr_store_block_metas_free(metas, n);
        if (rc != ATR_OK || q.full || n < QUERY_PAGE)
            break;
    }
    atr_secret_cleanup(&tk);
    if (rc == ATR_OK && next != NULL)
        rc = atr_http_resp_header(resp, "X-Next-Cursor", next);
    if (rc == ATR_OK) {
        atr_metrics_add(s->metrics, ATR_METRICS_RECORDS_RETURNED, q.count);
        rc = atr_http_resp_body(resp, 200, "application/x-ndjson", atr_buf_span(&q.out));
    } else {
        rc = fail_with(req, rc, &err);
    }
    atr_free(next);
    atr_wipe(q.out.ptr, q.out.len);
    atr_buf_cleanup(&q.out);
    return rc;
}

/* ------------------------------------------------------------ customer key lifecycle */

/*
 * The monitor's actions (service/monitor.h): probe, roll, health changes,
 * the reserve of pre-wrapped data keys and folding the blocks sealed with
 * it back under the tenant key. They run on the monitor's thread.
 */

/* Fills @p o from a vault failure: code, plain words and the fix. */
static void outcome_fail(struct atr_monitor_outcome *o, const struct atr_akv_error *fail,
                         const struct atr_err *err)
{
    o->ok = 0;
    if (fail->cause == ATR_AKV_OK) {
        snprintf(o->code, sizeof(o->code), "%s",
                 err->code == ATR_E_AUTH_FAILED ? "IntegrityError" : "InternalError");
        snprintf(o->reason, sizeof(o->reason), "%s", atr_err_msg(err));
        return;
    }
    char fix[ATR_BYOK_TEXT_MAX];
    const char *f = atr_byok_fix(fail, fix, sizeof(fix));
    o->transient = atr_byok_transient(fail->cause);
    o->retry_after_ms = (int64_t)fail->retry_after_s * 1000;
    snprintf(o->code, sizeof(o->code), "%s", atr_byok_code(fail->cause));
    const char *msg = atr_err_msg(err);
    size_t n = strlen(msg);
    snprintf(o->reason, sizeof(o->reason), "%s%s %s", msg, n > 0 && msg[n - 1] != '.' ? "." : "",
             f != NULL ? f : "");
}

/* Reads a tenant row for the monitor; 0 (and out->gone) when it has no customer layer. */
static int monitor_row(struct atr_store_tenant *t, struct atr_monitor_outcome *o,
                       struct atr_service *s, const char *tenant)
{
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_store_tenant_get(t, s->store, tenant, &err);
    if (rc == ATR_E_NOT_FOUND || (rc == ATR_OK && t->customer_blob.len == 0)) {
        o->gone = 1;
        return 0;
    }
    if (rc != ATR_OK) {
        o->transient = 1;
        snprintf(o->code, sizeof(o->code), "StoreError");
        snprintf(o->reason, sizeof(o->reason), "%s", atr_err_msg(&err));
        return 0;
    }
    return 1;
}

#define MONITOR_BATCH_TIMEOUT_MS 60000

/* The rows of a monitor batch: rows[i] for tenants[i]; of[0..k) index those with a customer layer.
 */
struct mon_rows {
    struct atr_store_tenant *rows;
    size_t *of;
    size_t n, k;
};

static void mon_rows_free(struct mon_rows *r)
{
    for (size_t i = 0; r->rows != NULL && i < r->n; i++)
        atr_store_tenant_cleanup(&r->rows[i]);
    atr_free(r->rows);
    atr_free(r->of);
}

/* Reads the rows; on out of memory marks every outcome transient and returns 0. */
static int mon_rows_load(struct mon_rows *r, struct atr_monitor_outcome *o, struct atr_service *s,
                         const char *const *tenants, size_t n, int extra_ok)
{
    memset(r, 0, sizeof(*r));
    r->rows = atr_calloc(n, sizeof(*r->rows));
    r->of = atr_calloc(n, sizeof(*r->of));
    if (r->rows == NULL || r->of == NULL || !extra_ok) {
        for (size_t i = 0; i < n; i++) {
            o[i].transient = 1;
            snprintf(o[i].code, sizeof(o[i].code), "InternalError");
            snprintf(o[i].reason, sizeof(o[i].reason), "out of memory");
        }
        return 0;
    }
    r->n = n;
    for (size_t i = 0; i < n; i++) {
        atr_store_tenant_init(&r->rows[i]);
        if (monitor_row(&r->rows[i], &o[i], s, tenants[i]))
            r->of[r->k++] = i;
    }
    return 1;
}

/*
 * Probes a batch of tenants: a fresh token for each directory (a cached one
 * would hide a service principal disabled or deleted in the customer's
 * directory for up to its lifetime, about an hour), then an unwrap of each
 * stored customer layer, all concurrently; then the SRK layer here.
 */
static void mon_probe(struct atr_monitor_outcome *o, const char *const *tenants, size_t n,
                      void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_byok_probe *pr = atr_calloc(n, sizeof(*pr));
    struct mon_rows r;
    if (mon_rows_load(&r, o, s, tenants, n, pr != NULL)) {
        for (size_t j = 0; j < r.k; j++) {
            const struct atr_store_tenant *t = &r.rows[r.of[j]];
            pr[j].tenant = t->id;
            pr[j].kid = t->customer_kid;
            pr[j].blob = atr_buf_span(&t->customer_blob);
        }
        atr_byok_probe_many(s->byok, pr, r.k, MONITOR_BATCH_TIMEOUT_MS);
    }
    for (size_t j = 0; j < r.k; j++) {
        size_t i = r.of[j];
        const struct atr_store_tenant *t = &r.rows[i];
        struct atr_secret tk = ATR_SECRET_INIT;
        atr_status rc = pr[j].rc;
        if (rc == ATR_OK) {
            struct atr_kms_keyref ref;
            atr_srk_keyref_format(&ref, (uint32_t)t->srk_version);
            rc = atr_keyring_tk_unwrap(&tk, atr_srk_file_provider(s->srk), &ref,
                                       atr_buf_span(&pr[j].inner), t->id, &pr[j].err);
        }
        if (rc == ATR_OK) {
            o[i].ok = 1;
            snprintf(o[i].kid, sizeof(o[i].kid), "%s", t->customer_kid);
            /* a cached key lives on for another grace */
            if (atr_keyring_set_deadline(s->ring, t->id, atr_clock_mono_ms(s->clock) + s->grace_ms,
                                         NULL) != ATR_OK) {
                /* not cached: nothing to extend */
            }
        } else {
            outcome_fail(&o[i], &pr[j].fail, &pr[j].err);
        }
        atr_secret_cleanup(&tk);
        atr_buf_cleanup(&pr[j].inner);
    }
    mon_rows_free(&r);
    atr_free(pr);
}

/* The version part of a kid ("" when it has none). */
static const char *kid_version(const char *kid)
{
    const char *slash = strrchr(kid, '/');
    return slash != NULL ? slash + 1 : "";
}

/* Rolls tenant row @p t to the version @p latest (the list was done by the caller). */
static void roll_to(struct atr_monitor_outcome *o, struct atr_service *s,
                    struct atr_store_tenant *t, const char *latest)
{
    const char *tenant = t->id;
    struct atr_buf inner, outer;
    atr_buf_init(&inner, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&outer, ATR_STORE_WRAPPED_MAX);
    struct atr_akv_error fail;
    memset(&fail, 0, sizeof(fail));
    struct atr_err err;
    atr_err_clear(&err);
    char kid[ATR_AKV_KID_MAX];
    if (strcasecmp(kid_version(latest), kid_version(t->customer_kid)) == 0) {
        o->ok = 1;
        snprintf(o->kid, sizeof(o->kid), "%s", t->customer_kid);
        goto done;
    }
    /* unwrap with the stored version (the cached key saves that call), wrap with the latest */
    int32_t version = 0;
    struct atr_secret tk = ATR_SECRET_INIT;
    atr_status rc = atr_keyring_get(&tk, s->ring, tenant, NULL);
    if (rc == ATR_OK) {
        struct atr_kms_keyref ref;
        uint32_t v = 0;
        rc = atr_keyring_tk_wrap(&inner, &ref, atr_srk_file_provider(s->srk), &tk, tenant, &err);
        if (rc == ATR_OK)
            rc = atr_srk_keyref_parse(&v, &ref, &err);
        version = (int32_t)v;
    } else {
        rc = inner_current(&inner, &version, s, t, &fail, &err);
    }
    atr_secret_cleanup(&tk);
    if (rc == ATR_OK) {
        rc = atr_byok_wrap_uri(&outer, kid, s->byok, tenant, t->key_uri, atr_buf_span(&inner),
                               &fail, &err);
    }
    if (rc != ATR_OK) {
        outcome_fail(o, &fail, &err);
        goto done;
    }
    char old_kid[ATR_STORE_URI_MAX + 1];
    snprintf(old_kid, sizeof(old_kid), "%s", t->customer_kid);
    atr_buf_reset(&t->customer_blob);
    if ((rc = atr_buf_append(&t->customer_blob, outer.ptr, outer.len)) == ATR_OK) {
        snprintf(t->customer_kid, sizeof(t->customer_kid), "%s", kid);
        t->srk_version = version;
        t->updated_ms = now_ms(s);
        extra_set_time(t, "lastRollMs", t->updated_ms);
        struct atr_store_audit_event ev;
        audit_event(&ev, s, tenant, MONITOR_ACTOR, "encryption.roll",
                    json_pack("{s:s,s:s,s:s}", "keyUri", t->key_uri, "keyVersion", kid,
                              "previousKeyVersion", old_kid));
        atr_failpoint("roll.before_store");
        rc = update_audited(s, t, &ev, &err);
        if (rc == ATR_OK)
            atr_failpoint("roll.after_store");
    }
    if (rc != ATR_OK) {
        /* a concurrent change (disable, enable) wins; the next check looks again */
        o->transient = 1;
        snprintf(o->code, sizeof(o->code), "%s", rc == ATR_E_CONFLICT ? "Busy" : "StoreError");
        snprintf(o->reason, sizeof(o->reason), "the roll could not be stored: %s",
                 atr_err_msg(&err));
        goto done;
    }
    o->ok = 1;
    o->rolled = 1;
    snprintf(o->kid, sizeof(o->kid), "%s", kid);
    /* reserve keys wrapped by the old version would need it later: make new ones */
    atr_reserve_drop(s->reserve, tenant);
    atr_log_fields(ATR_LOG_INFO, "service.encryption.roll", NULL,
                   "tenant key re-wrapped under a new customer key version", "tenant", "s", tenant,
                   "kid", "s", kid, NULL);
done:
    atr_buf_cleanup(&inner);
    atr_buf_cleanup(&outer);
}

/*
 * Roll checks for a batch of tenants: the version listings run
 * concurrently; the (rare) rolls to a newer version follow one by one.
 */
static void mon_roll(struct atr_monitor_outcome *o, const char *const *tenants, size_t n, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_byok_latest *q = atr_calloc(n, sizeof(*q));
    struct mon_rows r;
    if (mon_rows_load(&r, o, s, tenants, n, q != NULL)) {
        for (size_t j = 0; j < r.k; j++) {
            q[j].tenant = r.rows[r.of[j]].id;
            q[j].key_uri = r.rows[r.of[j]].key_uri;
        }
        atr_byok_latest_many(s->byok, q, r.k, MONITOR_BATCH_TIMEOUT_MS);
    }
    for (size_t j = 0; j < r.k; j++) {
        size_t i = r.of[j];
        if (q[j].rc != ATR_OK)
            outcome_fail(&o[i], &q[j].fail, &q[j].err);
        else
            roll_to(&o[i], s, &r.rows[i], q[j].kid);
    }
    mon_rows_free(&r);
    atr_free(q);
}

static atr_store_state state_of(atr_monitor_health h)
{
    return h == ATR_MONITOR_LOCKED     ? ATR_STORE_STATE_LOCKED
           : h == ATR_MONITOR_DEGRADED ? ATR_STORE_STATE_DEGRADED
                                       : ATR_STORE_STATE_CUSTOMER;
}

static atr_status mon_transition(const char *tenant, atr_monitor_health from, atr_monitor_health to,
                                 const struct atr_monitor_outcome *why, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_err err;
    atr_err_clear(&err);
    /* the lock is the key's absence: wipe it before anything else */
    if (to == ATR_MONITOR_LOCKED)
        (void)atr_keyring_evict(s->ring, tenant);
    char reason[ATR_STORE_REASON_MAX + 1] = "";
    if (to != ATR_MONITOR_HEALTHY) {
        /* "Code: plain words", cut to the stored size */
        size_t nc = strnlen(why->code, sizeof(why->code) - 1);
        size_t nr = strnlen(why->reason, sizeof(why->reason) - 1);
        if (nc > sizeof(reason) - 3)
            nc = sizeof(reason) - 3;
        memcpy(reason, why->code, nc);
        memcpy(reason + nc, ": ", 2);
        if (nr > sizeof(reason) - 3 - nc)
            nr = sizeof(reason) - 3 - nc;
        memcpy(reason + nc + 2, why->reason, nr);
        reason[nc + 2 + nr] = '\0';
    }
    const char *action = to == ATR_MONITOR_LOCKED     ? "encryption.lock"
                         : from == ATR_MONITOR_LOCKED ? "encryption.restore"
                         : to == ATR_MONITOR_DEGRADED ? "encryption.degrade"
                                                      : "encryption.recover";
    if (to == ATR_MONITOR_LOCKED)
        atr_failpoint("lock.after_evict");
    atr_status rc = ATR_E_CONFLICT;
    for (int attempt = 0; attempt < 3 && rc == ATR_E_CONFLICT; attempt++) {
        struct atr_store_tenant t;
        atr_store_tenant_init(&t);
        rc = atr_store_tenant_get(&t, s->store, tenant, &err);
        if (rc == ATR_OK && t.customer_blob.len == 0) {
            atr_store_tenant_cleanup(&t);
            return ATR_OK; /* the customer key was removed meanwhile */
        }
        if (rc == ATR_OK) {
            t.state = state_of(to);
            snprintf(t.reason, sizeof(t.reason), "%s", reason);
            t.updated_ms = now_ms(s);
            struct atr_store_audit_event ev;
            audit_event(&ev, s, tenant, MONITOR_ACTOR, action,
                        json_pack("{s:s,s:s,s:s,s:s?,s:s?}", "from", atr_monitor_health_name(from),
                                  "to", atr_monitor_health_name(to), "keyVersion", t.customer_kid,
                                  "reason", to != ATR_MONITOR_HEALTHY ? why->code : NULL,
                                  "reasonText", to != ATR_MONITOR_HEALTHY ? why->reason : NULL));
            rc = update_audited(s, &t, &ev, &err);
        }
        atr_store_tenant_cleanup(&t);
    }
    if (rc == ATR_OK && to == ATR_MONITOR_LOCKED)
        atr_failpoint("lock.after_store");
    if (rc == ATR_OK && from == ATR_MONITOR_LOCKED)
        atr_failpoint("restore.after_store");
    if (rc != ATR_OK) {
        atr_log_fields(ATR_LOG_ERROR, "service.monitor.transition", NULL,
                       "cannot store the tenant's new state", "tenant", "s", tenant, "detail", "s",
                       atr_err_msg(&err), NULL);
        return rc;
    }
    atr_log_fields(to == ATR_MONITOR_HEALTHY ? ATR_LOG_INFO : ATR_LOG_WARN,
                   "service.encryption.state", NULL, action, "tenant", "s", tenant, "state", "s",
                   atr_store_state_name(state_of(to)), "reason", "s",
                   to != ATR_MONITOR_HEALTHY ? why->code : "", NULL);
    if (from == ATR_MONITOR_LOCKED && to != ATR_MONITOR_LOCKED) {
        size_t folded = 0;
        if (fold_blocks(s, tenant, &folded, &err) != ATR_OK)
            atr_log_fields(ATR_LOG_WARN, "service.reserve.fold", NULL,
                           "blocks written while locked are not folded yet (retried later)",
                           "tenant", "s", tenant, "detail", "s", atr_err_msg(&err), NULL);
    }
    return ATR_OK;
}

/* Makes one reserve DEK: CK-wrap(SRK-wrap(DEK)), one vault call. */
static atr_status reserve_make(struct atr_service *s, const struct atr_store_tenant *t,
                               struct atr_err *err)
{
    struct atr_secret dek = ATR_SECRET_INIT;
    struct atr_buf inner, outer, blob;
    atr_buf_init(&inner, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&outer, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&blob, ATR_STORE_WRAPPED_MAX);
    struct atr_kms_keyref ref;
    struct atr_kms_context kc = {PURPOSE_RESERVE_DEK, t->id};
    struct atr_akv_error fail;
    memset(&fail, 0, sizeof(fail));
    char kid[ATR_AKV_KID_MAX];
    uint32_t v = 0;
    atr_status rc = atr_rand_secret(&dek, ATR_RESERVE_DEK_LEN, err);
    if (rc == ATR_OK)
        rc = atr_kms_wrap(&inner, &ref, atr_srk_file_provider(s->srk), &dek, &kc, err);
    if (rc == ATR_OK)
        rc = atr_srk_keyref_parse(&v, &ref, err);
    if (rc == ATR_OK) {
        rc = atr_byok_wrap_uri(&outer, kid, s->byok, t->id, t->key_uri, atr_buf_span(&inner), &fail,
                               err);
    }
    if (rc == ATR_OK)
        rc = atr_reserve_blob_encode(&blob, v, kid, atr_buf_span(&outer), err);
    if (rc == ATR_OK)
        rc = atr_reserve_add(s->reserve, t->id, &dek, atr_buf_span(&blob), err);
    atr_secret_cleanup(&dek);
    atr_buf_cleanup(&inner);
    atr_buf_cleanup(&outer);
    atr_buf_cleanup(&blob);
    return rc;
}

/* A healthy tenant: fold blocks left from a lock, then fill the reserve. */
static int mon_refill(const char *tenant, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_err err;
    atr_err_clear(&err);
    size_t folded = 0;
    atr_status rc = fold_blocks(s, tenant, &folded, &err);
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    if (rc == ATR_OK && s->reserve != NULL &&
        atr_reserve_count(s->reserve, tenant) < atr_reserve_size(s->reserve)) {
        rc = atr_store_tenant_get(&t, s->store, tenant, &err);
        while (rc == ATR_OK && t.customer_blob.len > 0 && t.state == ATR_STORE_STATE_CUSTOMER &&
               atr_reserve_count(s->reserve, tenant) < atr_reserve_size(s->reserve))
            rc = reserve_make(s, &t, &err);
    }
    atr_store_tenant_cleanup(&t);
    if (rc != ATR_OK)
        atr_log_fields(ATR_LOG_WARN, "service.reserve.fill", NULL,
                       "the reserve of pre-wrapped data keys is not full (retried later)", "tenant",
                       "s", tenant, "detail", "s", atr_err_msg(&err), NULL);
    return rc == ATR_OK;
}

/* Folds one block sealed with a reserve DEK back under the tenant key. */
static atr_status fold_one(struct atr_service *s, const char *tenant,
                           const struct atr_store_block_meta *m, const struct atr_secret *tk,
                           struct atr_err *err)
{
    uint32_t v = 0;
    char kid[ATR_RESERVE_KID_MAX + 1];
    struct atr_span ck;
    ATR_TRY(atr_reserve_blob_parse(&v, kid, sizeof(kid), &ck, atr_buf_span(&m->wrapped_dek), err));
    struct atr_buf inner, sealed, plain, wrapped, resealed;
    atr_buf_init(&inner, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&sealed, ATR_STORE_SEALED_MAX);
    atr_buf_init(&plain, ATR_BLOCK_MAX_PLAIN_DEFAULT * 16);
    atr_buf_init(&wrapped, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&resealed, ATR_STORE_SEALED_MAX);
    struct atr_secret dek = ATR_SECRET_INIT, dek2 = ATR_SECRET_INIT;
    struct atr_kms_keyref ref;
    atr_srk_keyref_format(&ref, v);
    struct atr_kms_context kc = {PURPOSE_RESERVE_DEK, tenant};
    atr_status rc = atr_byok_unwrap(&inner, s->byok, tenant, kid, ck, NULL, err);
    if (rc == ATR_OK)
        rc = atr_kms_unwrap(&dek, atr_srk_file_provider(s->srk), &ref, atr_buf_span(&inner), &kc,
                            err);
    if (rc == ATR_OK)
        rc = atr_store_block_read(&sealed, s->store, tenant, m->block_id, err);
    struct atr_block_ctx old_bc = {tenant, m->block_id, KEY_REF_RESERVE};
    if (rc == ATR_OK)
        rc = atr_block_open(&plain, &old_bc, atr_buf_span(&sealed), &dek,
                            ATR_BLOCK_MAX_PLAIN_DEFAULT * 16, err);
    uint8_t idb[8];
    block_id_bytes(idb, m->block_id);
    if (rc == ATR_OK)
        rc = atr_keyring_dek_new(&dek2, &wrapped, tk, tenant, atr_span_of(idb, 8), err);
    struct atr_block_ctx new_bc = {tenant, m->block_id, KEY_REF_TK};
    if (rc == ATR_OK)
        rc = atr_block_seal(&resealed, &new_bc, atr_buf_span(&plain), &dek2, s->compress, err);
    if (rc == ATR_OK)
        rc = atr_store_block_rekey(s->store, tenant, m->block_id, KEY_REF_RESERVE, KEY_REF_TK,
                                   atr_buf_span(&wrapped), atr_buf_span(&resealed), err);
    atr_secret_cleanup(&dek);
    atr_secret_cleanup(&dek2);
    atr_wipe(plain.ptr, plain.len);
    atr_buf_cleanup(&plain);
    atr_buf_cleanup(&inner);
    atr_buf_cleanup(&sealed);
    atr_buf_cleanup(&wrapped);
    atr_buf_cleanup(&resealed);
    return rc;
}

/*
 * Folds every block of @p tenant sealed with a reserve DEK back under its
 * tenant key (design section 3, restore). Each block is re-sealed with a
 * fresh DEK and swapped in one conditional write, so a crash or a second
 * folder leaves every block readable exactly once.
 */
static atr_status fold_blocks(struct atr_service *s, const char *tenant, size_t *out_n,
                              struct atr_err *err)
{
    *out_n = 0;
    struct atr_store_block_meta *rows = NULL;
    size_t n = 0;
    ATR_TRY(atr_store_blocks_by_key_ref(&rows, &n, s->store, tenant, KEY_REF_RESERVE, 0, FOLD_PAGE,
                                        err));
    if (n == 0)
        return ATR_OK;
    struct atr_secret tk = ATR_SECRET_INIT;
    atr_status rc = tk_get(&tk, s, tenant, err);
    int64_t after = 0;
    while (rc == ATR_OK && n > 0) {
        for (size_t i = 0; rc == ATR_OK && i < n; i++) {
            rc = fold_one(s, tenant, &rows[i], &tk, err);
            if (rc == ATR_OK)
                atr_failpoint("fold.after_block");
            if (rc == ATR_E_CONFLICT)
                rc = ATR_OK; /* folded by someone else meanwhile */
            else if (rc == ATR_OK)
                (*out_n)++;
            after = rows[i].block_id;
        }
        atr_store_block_metas_free(rows, n);
        rows = NULL;
        n = 0;
        if (rc == ATR_OK)
            rc = atr_store_blocks_by_key_ref(&rows, &n, s->store, tenant, KEY_REF_RESERVE, after,
                                             FOLD_PAGE, err);
    }
    atr_store_block_metas_free(rows, n);
    atr_secret_cleanup(&tk);
    if (*out_n > 0) {
        audit(s, tenant, MONITOR_ACTOR, "encryption.fold",
              json_pack("{s:I}", "blocks", (json_int_t)*out_n));
        atr_log_fields(ATR_LOG_INFO, "service.reserve.fold", NULL,
                       "blocks written while locked are folded under the tenant key", "tenant", "s",
                       tenant, "blocks", "i", (long long)*out_n, NULL);
    }
    return rc;
}

/* Starts watching every tenant that uses a customer key (at start-up). */
static atr_status monitor_track_all(struct atr_service *s, struct atr_err *err)
{
    char after[ATR_STORE_TENANT_ID_MAX + 1] = "";
    for (;;) {
        struct atr_store_tenant *rows = NULL;
        size_t n = 0;
        ATR_TRY(atr_store_tenant_list(&rows, &n, s->store, after, ATR_STORE_LIST_MAX, err));
        atr_status rc = ATR_OK;
        for (size_t i = 0; rc == ATR_OK && i < n; i++) {
            if (rows[i].customer_blob.len == 0)
                continue;
            atr_monitor_health h = rows[i].state == ATR_STORE_STATE_LOCKED ? ATR_MONITOR_LOCKED
                                   : rows[i].state == ATR_STORE_STATE_DEGRADED
                                       ? ATR_MONITOR_DEGRADED
                                       : ATR_MONITOR_HEALTHY;
            rc = atr_monitor_track(s->monitor, rows[i].id, h, 0, err);
        }
        if (n > 0)
            snprintf(after, sizeof(after), "%s", rows[n - 1].id);
        atr_store_tenants_free(rows, n);
        if (rc != ATR_OK || n < ATR_STORE_LIST_MAX)
            return rc;
    }
}

/* ------------------------------------------------------------ health, metrics, admin */

static atr_status h_healthz(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_store_tenant_counts c;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_store_tenant_counts(&c, s->store, &err) != ATR_OK) {
        atr_log(ATR_LOG_ERROR, "service.health", atr_http_req_id(req), "store: %s",
                atr_err_msg(&err));
        return atr_http_resp_json(resp, 503,
                                  json_pack("{s:s,s:s}", "status", "unavailable", "store", "down"));
    }
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:s,s:s,s:I}", "status", "ok", "store",
                                        atr_store_engine_name(s->store), "tenants",
                                        (json_int_t)c.total));
}

static atr_status gauges(struct atr_metrics_gauges *g, void *ctx)
{
    struct atr_service *s = ctx;
    if (s->byok != NULL) {
        /* vault calls as the Key Vault client counts them (401 challenges included) */
        struct atr_akv_stats st;
        atr_byok_stats(&st, s->byok);
        uint64_t seen = atomic_exchange(&s->vault_seen, (uint64_t)st.vault_requests);
        if ((uint64_t)st.vault_requests > seen)
            atr_metrics_add(s->metrics, ATR_METRICS_VAULT_CALLS, st.vault_requests - seen);
        ATR_TRY(atr_metrics_gauge(g, "atrest_vault_token_requests",
                                  "Token requests to customers' directories so far.", NULL, NULL,
                                  (double)st.token_requests));
        ATR_TRY(atr_metrics_gauge(g, "atrest_vault_challenges",
                                  "401 bearer challenges received from vaults so far.", NULL, NULL,
                                  (double)st.challenges));
    }
    struct atr_store_tenant_counts c;
    if (atr_store_tenant_counts(&c, s->store, NULL) == ATR_OK) {
        for (int st = 1; st <= ATR_STORE_STATE_MAX; st++)
            ATR_TRY(atr_metrics_gauge(g, "atrest_tenants", "Tenants by encryption state.", "state",
                                      atr_store_state_name((atr_store_state)st),
                                      (double)c.by_state[st]));
    }
    struct atr_keyring_stats ks;
    atr_keyring_stats(&ks, s->ring);
    ATR_TRY(atr_metrics_gauge(g, "atrest_keyring_entries", "Tenant keys cached in memory.", NULL,
                              NULL, (double)ks.entries));
    struct atr_store_stats ss;
    if (atr_store_stats_get(&ss, s->store, NULL, NULL) == ATR_OK) {
        ATR_TRY(atr_metrics_gauge(g, "atrest_store_blocks", "Sealed blocks stored.", NULL, NULL,
                                  (double)ss.blocks));
        ATR_TRY(atr_metrics_gauge(g, "atrest_store_bytes", "Bytes of sealed blocks stored.", NULL,
                                  NULL, (double)ss.sealed_bytes));
    }
    return atr_metrics_gauge(g, "atrest_secure_heap_used_bytes",
                             "Bytes of the locked secure heap in use.", NULL, NULL,
                             (double)atr_secmem_used());
}

static atr_status h_metrics(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    (void)req;
    struct atr_buf out;
    atr_buf_init(&out, (size_t)4 << 20);
    atr_status rc = atr_metrics_render(&out, s->metrics, gauges, s);
    if (rc == ATR_OK)
        rc = atr_http_resp_body(resp, 200, ATR_METRICS_CONTENT_TYPE, atr_buf_span(&out));
    atr_buf_cleanup(&out);
    return rc;
}

static atr_status h_admin_tenants(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_store_tenant *rows = NULL;
    size_t n = 0;
    struct atr_err err;
    atr_err_clear(&err);
    const char *after = atr_http_req_query(req, "after");
    atr_status rc = atr_store_tenant_list(&rows, &n, s->store, after, 1000, &err);
    if (rc != ATR_OK)
        return fail_with(req, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++)
        json_array_append_new(arr, tenant_json(&rows[i]));
    atr_store_tenants_free(rows, n);
    return atr_http_resp_json(resp, 200, json_pack("{s:o}", "value", arr));
}

static atr_status h_admin_srk_rotate(struct atr_http_req *req, struct atr_http_resp *resp,
                                     void *ctx)
{
    struct atr_service *s = ctx;
    uint32_t version = 0;
    size_t tenants = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_service_srk_rotate(s, &version, &tenants, &err);
    if (rc != ATR_OK)
        return fail_with(req, rc, &err);
    return atr_http_resp_json(
        resp, 200,
        json_pack("{s:I,s:I}", "version", (json_int_t)version, "tenants", (json_int_t)tenants));
}

static atr_status h_admin_monitor_run(struct atr_http_req *req, struct atr_http_resp *resp,
                                      void *ctx)
{
    struct atr_service *s = ctx;
    if (s->monitor == NULL)
        return atr_err_set(atr_http_req_err(req), ATR_E_UNSUPPORTED,
                           "customer-managed keys are not configured on this service");
    struct atr_monitor_pass p;
    atr_monitor_run(s->monitor, &p);
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "tenants",
                                        (json_int_t)atr_monitor_count(s->monitor), "probes",
                                        (json_int_t)p.probes, "rollChecks", (json_int_t)p.rolls,
                                        "rolled", (json_int_t)p.rolled, "transitions",
                                        (json_int_t)p.transitions, "locked", (json_int_t)p.locked,
                                        "restored", (json_int_t)p.restored));
}

static atr_status h_admin_clock(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_service *s = ctx;
    struct atr_err *rerr = atr_http_req_err(req);
    if (s->test_clock == NULL)
        return atr_err_set(rerr, ATR_E_NOT_FOUND, "the clock can only be moved in test mode");
    json_t *body = NULL;
    ATR_TRY(atr_http_req_json(&body, req));
    json_t *adv = json_object_get(body, "advanceSeconds");
    atr_status rc = ATR_OK;
    if (adv != NULL && (!json_is_integer(adv) || json_integer_value(adv) < 0 ||
                        json_integer_value(adv) > 10LL * 365 * 86400))
        rc = atr_err_set(rerr, ATR_E_INVALID,
                         "advanceSeconds must be a whole number of seconds, 0 to ten years");
    if (rc == ATR_OK && adv != NULL) {
        atr_offset_clock_advance(s->test_clock, (int64_t)json_integer_value(adv) * 1000);
        atr_monitor_kick(s->monitor);
    }
    json_decref(body);
    if (rc != ATR_OK)
        return rc;
    char now[32];
    atr_clock_format_rfc3339(atr_clock_now_ms(s->clock), now);
    return atr_http_resp_json(
        resp, 200,
        json_pack("{s:s,s:I}", "now", now, "offsetSeconds",
                  (json_int_t)(atr_offset_clock_offset(s->test_clock) / 1000)));
}

void atr_service_observe(const struct atr_route *route, const char *method, unsigned status,
                         int64_t duration_ms, void *observe_ctx)
{
    struct atr_service *s = observe_ctx;
    atr_metrics_http_observe(s->metrics, route != NULL ? route->pattern : NULL, method, status,
                             duration_ms * 1000);
}

/* ------------------------------------------------------------ routes */

#define AUTH ATR_ROUTE_AUTH

static const struct atr_route routes[] = {
    {"GET", "/healthz", h_healthz, 0, 0, NULL},
    {"GET", "/metrics", h_metrics, 0, 0, NULL},
    {"GET", "/console", atr_console_handle, 0, 0, NULL},
    {"GET", "/console/{file?}", atr_console_handle, 0, 0, NULL},
    {"GET", "/admin/tenants", h_admin_tenants, AUTH, 0, "admin"},
    {"POST", "/admin/srk/rotate", h_admin_srk_rotate, AUTH, 0, "admin"},
    {"POST", "/admin/monitor/run", h_admin_monitor_run, AUTH, 0, "admin"},
    {"POST", "/admin/clock", h_admin_clock, AUTH, 4096, "admin"},
    {"PUT", "/v1/tenants/{t}", h_tenant_put, AUTH, 4096, ATR_ROLE_ADMIN},
    {"GET", "/v1/tenants/{t}", h_tenant_get, AUTH, 0, "any"},
    {"POST", "/v1/tenants/{t}/records", h_ingest, AUTH, ATR_SERVICE_MAX_BODY_DEFAULT,
     ATR_ROLE_WRITE},
    {"GET", "/v1/tenants/{t}/records", h_query, AUTH, 0, ATR_ROLE_READ},
    {"GET", "/v1/tenants/{t}/encryption", h_encryption_get, AUTH, 0, ATR_ROLE_ADMIN},
    {"PUT", "/v1/tenants/{t}/encryption", h_encryption_put, AUTH, 65536, ATR_ROLE_ADMIN},
    {"DELETE", "/v1/tenants/{t}/encryption", h_encryption_delete, AUTH, 0, ATR_ROLE_ADMIN},
    {"GET", "/v1/tenants/{t}/audit", h_audit, AUTH, 0, ATR_ROLE_ADMIN},
};

const struct atr_route *atr_service_routes(size_t *out_n)
{
    *out_n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

/* ------------------------------------------------------------ lifecycle */

atr_status atr_service_new(struct atr_service **out, const struct atr_service_opts *opts,
                           struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && opts != NULL);
    *out = NULL;
    if (opts->store_location == NULL || opts->srk_path == NULL)
        return atr_err_set(err, ATR_E_CONFIG,
                           "service: the store location and the SRK path are required");
    if (opts->admin_secret != NULL && strlen(opts->admin_secret) < 16)
        return atr_err_set(err, ATR_E_CONFIG,
                           "service: the admin secret needs 16 characters or more");
    if (opts->idp_authority != NULL && (strncmp(opts->idp_authority, "https://", 8) != 0 ||
                                        strlen(opts->idp_authority) >= ATR_SERVICE_AUTHORITY_MAX))
        return atr_err_set(err, ATR_E_CONFIG,
                           "service: the identity authority must be an https URL");
    struct atr_service *s = atr_calloc(1, sizeof(*s));
    if (s == NULL)
        return ATR_E_NOMEM;
    s->test_clock = opts->test_clock;
    s->clock = opts->test_clock != NULL ? &opts->test_clock->base
               : opts->clock != NULL    ? opts->clock
                                        : atr_clock_real();
    /* tokens and the vault client follow real time even when a test moves the clock */
    const struct atr_clock *real = opts->test_clock != NULL ? atr_clock_real() : s->clock;

    s->block_bytes = opts->block_bytes != 0 ? opts->block_bytes : ATR_SERVICE_BLOCK_BYTES_DEFAULT;
    s->max_body = opts->max_body != 0 ? opts->max_body : ATR_SERVICE_MAX_BODY_DEFAULT;
    s->max_lines = opts->max_lines != 0 ? opts->max_lines : 10000;
    s->max_line = opts->max_line != 0 ? opts->max_line : 64 * 1024;
    s->compress = !opts->no_compress;
    s->bench_plaintext = opts->bench_plaintext;
    atr_status rc = atr_metrics_new(&s->metrics);
    if (rc == ATR_OK && !atr_digest_check_set(&s->admin, opts->admin_secret))
        rc = atr_err_set(err, ATR_E_CRYPTO, "service: cannot hash the admin secret");
    if (rc == ATR_OK)
        rc = atr_store_open(&s->store, opts->store_location, NULL, err);
    int created = 0;
    if (rc == ATR_OK)
        rc = atr_srk_file_open(&s->srk, &created, opts->srk_path, 1, s->clock, err);
    if (rc == ATR_OK && created)
        atr_log_fields(ATR_LOG_INFO, "service.srk.create", NULL, "service root key created", "path",
                       "s", opts->srk_path, NULL);
    if (rc == ATR_OK) {
        struct atr_keyring_opts ko;
        ko.max_entries = opts->keyring_max != 0 ? opts->keyring_max : ATR_SERVICE_KEYRING_DEFAULT;
        ko.ttl_ms = opts->tk_ttl_ms != 0 ? opts->tk_ttl_ms : 600000;
        ko.deadline_only = 1; /* customer keys live for the grace (their deadline) */
        rc = atr_keyring_new(&s->ring, &ko, s->clock, err);
    }
    if (rc == ATR_OK)
        rc = committer_new(&s->committer, s->store, opts->flush_interval_ms, err);
    if (rc == ATR_OK && opts->byok_client_id != NULL) {
        struct atr_byok_opts bo;
        memset(&bo, 0, sizeof(bo));
        bo.client_id = opts->byok_client_id;
        bo.client_secret = opts->byok_client_secret;
        bo.client_cert_pem = opts->byok_client_cert_pem;
        bo.client_key_pem = opts->byok_client_key_pem;
        bo.authority = opts->byok_authority != NULL ? opts->byok_authority : opts->idp_authority;
        bo.vault_hosts = opts->byok_vault_hosts;
        bo.nvault_hosts = opts->byok_nvault_hosts;
        bo.ca_file = opts->ca_file;
        bo.clock = real;
        rc = atr_byok_new(&s->byok, &bo, err);
    }
    struct atr_monitor_opts mo = opts->monitor;
    if (rc == ATR_OK && s->byok != NULL && !opts->no_reserve)
        rc = atr_reserve_new(
            &s->reserve, opts->reserve_size != 0 ? opts->reserve_size : ATR_RESERVE_SIZE_DEFAULT,
            err);
    if (rc == ATR_OK && s->byok != NULL) {
        struct atr_monitor_ops ops = {mon_probe, mon_roll, mon_transition, mon_refill, s};
        rc = atr_monitor_new(&s->monitor, &mo, s->clock, &ops, err);
    }
    if (rc == ATR_OK && s->monitor != NULL) {
        struct atr_monitor_opts eff;
        atr_monitor_settings(&eff, s->monitor);
        s->grace_ms = eff.grace_ms;
        s->locked_probe_ms = eff.locked_probe_ms;
        rc = monitor_track_all(s, err);
    } else {
        s->grace_ms = ATR_MONITOR_GRACE_DEFAULT_MS;
        s->locked_probe_ms = ATR_MONITOR_LOCKED_PROBE_DEFAULT_MS;
    }
    if (rc == ATR_OK && opts->idp_authority != NULL)
        rc = atr_tokval_new(&s->tokval, opts->idp_authority, opts->ca_file,
                            opts->audience != NULL ? opts->audience : ATR_SERVICE_AUDIENCE_DEFAULT,
                            real, err);
    if (rc != ATR_OK) {
        atr_service_free(s);
        return rc;
    }
    *out = s;
    return ATR_OK;
}

void atr_service_free(struct atr_service *s)
{
    if (s == NULL)
        return;
    atr_monitor_free(s->monitor); /* first: its thread uses everything below */
    committer_free(s->committer);
    atr_reserve_free(s->reserve);
    atr_byok_free(s->byok);
    atr_tokval_free(s->tokval);
    atr_keyring_free(s->ring);
    atr_srk_file_free(s->srk);
    atr_store_close(s->store);
    atr_metrics_free(s->metrics);
    atr_digest_check_clear(&s->admin);
    atr_free(s);
}
