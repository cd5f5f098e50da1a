/* SPDX-License-Identifier: Apache-2.0 */
#include "vault/vault.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/log.h"
#include "base/secmem.h"
#include "crypto/aead.h"
#include "crypto/digest_check.h"
#include "crypto/ec.h"
#include "crypto/jwk.h"
#include "crypto/kdf.h"
#include "crypto/rand.h"
#include "crypto/rsa.h"
#include "crypto/sig.h"
#include "http/json.h"
#include "identity/tokval.h"
#include "vault/vault_policy.h"
#include "vault/vault_store.h"

#define MASTER_KEY_LEN  32
#define BODY_MAX        ((size_t)256 * 1024)
#define ADMIN_BODY_MAX  ((size_t)128 * 1024)
#define TAGS_MAX        15 /* Azure: at most 15 tags */
#define HOST_MAX        255
#define BACKUP_MAX_TEXT ((size_t)4 << 20)
#define TICK_BATCH      256
#define TRUSTED_ID_MAX  64

static const char backup_magic[] = "atrest-vault-backup-v1";

/* A private key of either type (exactly one member set). */
struct vkey {
    struct atr_rsa_key *rsa;
    struct atr_ec_key *ec;
};

static void vkey_cleanup(struct vkey *k)
{
    atr_rsa_key_free(k->rsa);
    atr_ec_key_free(k->ec);
    k->rsa = NULL;
    k->ec = NULL;
}

static int kty_is_ec(const char *kty)
{
    return strcmp(kty, "EC") == 0 || strcmp(kty, "EC-HSM") == 0;
}

/* An unsealed private key, shared by concurrent operations. */
struct cached_key {
    char id[192]; /* vault/name/version */
    struct vkey key;
    unsigned refs;
    int unlinked;
    struct cached_key *next;
};

/* Throttling window of one vault. */
struct throttle {
    char vault[ATR_VAULT_NAME_MAX + 1];
    int64_t window_start; /* monotonic ms */
    unsigned ops;
    unsigned creates;
    struct throttle *next;
};

struct atr_vault {
    struct atr_vault_store *store;
    struct atr_aead *master;   /* seals private keys; under lock */
    struct atr_aead *backup;   /* seals backups; under lock */
    struct atr_tokval *tokval; /* NULL: no identity server configured */
    char authority[ATR_VAULT_AUTHORITY_MAX];
    char dns_suffix[HOST_MAX + 1];
    char default_vault[ATR_VAULT_NAME_MAX + 1];
    struct atr_digest_check admin;
    char trusted[ATR_VAULT_MAX_TRUSTED][TRUSTED_ID_MAX + 1];
    size_t ntrusted;
    int test_mode;
    const struct atr_clock *clock;
    struct atr_test_clock tclock; /* test mode without an injected clock */
    int own_tclock;

    pthread_mutex_t lock;       /* cache, throttles, faults, aead objects */
    pthread_mutex_t write_lock; /* serialises compound changes of keys */
    struct cached_key *cache;   /* most recently used first */
    size_t ncache;
    struct throttle *throttles;
    unsigned fault_latency_ms;
    unsigned fault_error_permille;
    unsigned fault_error_status;
    int64_t fault_refuse_until; /* monotonic ms */
    uint64_t fault_rng;

    pthread_t ticker;
    int ticker_running;
    int ticker_stop;
    pthread_cond_t ticker_cond;
};

/* The caller of a data-plane or admin request (set by the auth hook). */
struct principal {
    int admin;
    char vault[ATR_VAULT_NAME_MAX + 1];
    char base[HOST_MAX + 16]; /* "https://host[:port]" for kids and nextLinks */
    char tid[ATR_VAULT_ID_MAX + 1];
    char oid[ATR_VAULT_ID_MAX + 1];
    char appid[ATR_VAULT_ID_MAX + 1];
    char api_version[24];
    struct atr_vault_settings settings;
};

static int64_t now_s(const struct atr_vault *v)
{
    return atr_clock_now_s(v->clock);
}

/* ------------------------------------------------------------ errors */

/*
 * Sets Azure's error body {"error":{"code","message","innererror"?}} with
 * @p status and returns the matching atr_status (the server keeps the body).
 */
static atr_status kv_error(struct atr_http_resp *resp, unsigned status, const char *code,
                           const char *inner, const char *fmt, ...) ATR_PRINTF(5, 6);

static atr_status status_of(unsigned http)
{
    switch (http) {
    case 400:
        return ATR_E_INVALID;
    case 401:
        return ATR_E_UNAUTHORIZED;
    case 403:
        return ATR_E_FORBIDDEN;
    case 404:
        return ATR_E_NOT_FOUND;
    case 405:
        return ATR_E_METHOD;
    case 409:
        return ATR_E_CONFLICT;
    case 413:
        return ATR_E_TOO_LARGE;
    case 429:
        return ATR_E_THROTTLED;
    case 503:
        return ATR_E_UNAVAILABLE;
    default:
        return http >= 500 ? ATR_E_INTERNAL : ATR_E_INVALID;
    }
}

static atr_status kv_error(struct atr_http_resp *resp, unsigned status, const char *code,
                           const char *inner, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s,s:s}", "code", code, "message", msg);
    if (e != NULL && inner != NULL)
        json_object_set_new(e, "innererror", json_pack("{s:s}", "code", inner));
    if (atr_http_resp_json(resp, status, json_pack("{s:o}", "error", e)) != ATR_OK)
        return ATR_E_NOMEM;
    return status_of(status);
}

static atr_status bad_param(struct atr_http_resp *resp, const char *fmt, ...) ATR_PRINTF(2, 3);

static atr_status bad_param(struct atr_http_resp *resp, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return kv_error(resp, 400, "BadParameter", NULL, "%s", msg);
}

static atr_status key_not_found(struct atr_http_resp *resp, const char *name)
{
    return kv_error(resp, 404, "KeyNotFound", NULL,
                    "A key with (name/id) %s was not found in this key vault. If you recently "
                    "deleted this key you may be able to recover it using the correct recovery "
                    "command. For help resolving this issue, please see "
                    "https://go.microsoft.com/fwlink/?linkid=2125182",
                    name);
}

/* Maps an internal failure to Azure's shape without detail (the detail is logged). */
static atr_status internal(struct atr_http_req *req, struct atr_http_resp *resp, atr_status rc,
                           const struct atr_err *err)
{
    if (rc == ATR_E_NOT_FOUND)
        return kv_error(resp, 404, "KeyNotFound", NULL, "The key was not found.");
    atr_log(ATR_LOG_ERROR, "vault.error", atr_http_req_id(req), "%s: %s", atr_status_name(rc),
            err != NULL ? atr_err_msg(err) : "");
    return kv_error(resp, 500, "InternalServerError", NULL,
                    "The server encountered an internal error; see the server log with the "
                    "request id.");
}

/* ------------------------------------------------------------ key cache */

/*
 * Unsealed keys kept in memory. Each takes about 1 KiB of the locked heap
 * (RSA-2048), which must not fill up: past CACHE_MAX the least recently used
 * key nobody is using is dropped (and unsealed again when next needed).
 */
#define CACHE_MAX 256

static void cached_release(struct atr_vault *v, struct cached_key *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&v->lock);
    int gone = --c->refs == 0 && c->unlinked;
    pthread_mutex_unlock(&v->lock);
    if (gone) {
        vkey_cleanup(&c->key);
        atr_free(c);
    }
}

/* Drops every cached version of vault/name (after a purge). */
static void cache_forget(struct atr_vault *v, const char *vault, const char *name)
{
    char prefix[192];
    snprintf(prefix, sizeof(prefix), "%s/%s/", vault, name);
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&v->lock);
    struct cached_key **pp = &v->cache;
    while (*pp != NULL) {
        struct cached_key *c = *pp;
        if (strncmp(c->id, prefix, plen) == 0) {
            *pp = c->next;
            v->ncache--;
            c->unlinked = 1;
            if (c->refs == 0) {
                vkey_cleanup(&c->key);
                atr_free(c);
            }
            continue;
        }
        pp = &c->next;
    }
    pthread_mutex_unlock(&v->lock);
}

/* The additional data binding a sealed private key to its name and version. */
static void key_aad(char *out, size_t cap, const char *name, const char *version)
{
    snprintf(out, cap, "atrest-vault-key-v1/%s/%s", name, version);
}

/* Seals the private key: RSA as PKCS#8 PEM, EC as PKCS#8 DER. */
static atr_status seal_private(struct atr_buf *out, struct atr_vault *v, const struct vkey *key,
                               const char *name, const char *version, struct atr_err *err)
{
    struct atr_secret pem;
    memset(&pem, 0, sizeof(pem));
    if (key->ec != NULL)
        ATR_TRY(atr_ec_key_format_der_private(&pem, key->ec, err));
    else
        ATR_TRY(atr_rsa_key_format_pem_private(&pem, key->rsa, err));
    char aad[192];
    key_aad(aad, sizeof(aad), name, version);
    pthread_mutex_lock(&v->lock);
    atr_status rc = atr_aead_seal(out, v->master, atr_span_str(aad),
                                  atr_span_of(atr_secret_cdata(&pem), atr_secret_len(&pem)), err);
    pthread_mutex_unlock(&v->lock);
    atr_secret_cleanup(&pem);
    return rc;
}

/*
 * The private key of @p ver (read with its sealed bytes), from the cache or
 * unsealed now. Release with cached_release().
 */
static atr_status key_load(struct cached_key **out, struct atr_vault *v, const char *vault,
                           const struct atr_vault_version *ver, struct atr_err *err)
{
    *out = NULL;
    char id[192];
    snprintf(id, sizeof(id), "%s/%s/%s", vault, ver->name, ver->version);
    pthread_mutex_lock(&v->lock);
    for (struct cached_key **pp = &v->cache; *pp != NULL; pp = &(*pp)->next) {
        struct cached_key *c = *pp;
        if (strcmp(c->id, id) == 0) {
            c->refs++;
            *pp = c->next; /* most recently used first */
            c->next = v->cache;
            v->cache = c;
            *out = c;
            pthread_mutex_unlock(&v->lock);
            return ATR_OK;
        }
    }
    pthread_mutex_unlock(&v->lock);

    struct atr_secret pem;
    memset(&pem, 0, sizeof(pem));
    char aad[192];
    key_aad(aad, sizeof(aad), ver->name, ver->version);
    pthread_mutex_lock(&v->lock);
    atr_status rc =
        atr_aead_open_secret(&pem, v->master, atr_span_str(aad), atr_buf_span(&ver->sealed), err);
    pthread_mutex_unlock(&v->lock);
    if (rc != ATR_OK)
        return atr_err_wrap(err, rc, "vault: cannot unseal a stored key");
    struct vkey key = {NULL, NULL};
    if (kty_is_ec(ver->kty))
        rc = atr_ec_key_parse_der(&key.ec,
                                  atr_span_of(atr_secret_cdata(&pem), atr_secret_len(&pem)), err);
    else
        rc = atr_rsa_key_parse_pem(&key.rsa, (const char *)atr_secret_cdata(&pem),
                                   atr_secret_len(&pem), err);
    atr_secret_cleanup(&pem);
    if (rc != ATR_OK)
        return rc;
    struct cached_key *c = atr_calloc(1, sizeof(*c));
    if (c == NULL) {
        vkey_cleanup(&key);
        return ATR_E_NOMEM;
    }
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->key = key;
    c->refs = 1;
    pthread_mutex_lock(&v->lock);
    /* another thread may have loaded it meanwhile: keep one */
    for (struct cached_key *o = v->cache; o != NULL; o = o->next) {
        if (strcmp(o->id, id) == 0) {
            o->refs++;
            pthread_mutex_unlock(&v->lock);
            vkey_cleanup(&c->key);
            atr_free(c);
            *out = o;
            return ATR_OK;
        }
    }
    c->next = v->cache;
    v->cache = c;
    v->ncache++;
    struct cached_key *drop = NULL;
    if (v->ncache > CACHE_MAX) {
        /* the least recently used key that no operation holds */
        struct cached_key **victim = NULL;
        for (struct cached_key **pp = &v->cache; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->refs == 0)
                victim = pp;
        if (victim != NULL) {
            drop = *victim;
            *victim = drop->next;
            v->ncache--;
        }
    }
    pthread_mutex_unlock(&v->lock);
    if (drop != NULL) {
        vkey_cleanup(&drop->key);
        atr_free(drop);
    }
    *out = c;
    return ATR_OK;
}

/* ------------------------------------------------------------ bundles */

static json_t *ops_json(unsigned ops)
{
    json_t *a = json_array();
    for (unsigned b = 1; a != NULL && b <= ATR_VAULT_OP_EXPORT; b <<= 1) {
        if ((ops & b) != 0)
            json_array_append_new(a, json_string(atr_vault_op_name(b)));
    }
    return a;
}

static json_t *attributes_json(const struct atr_vault_version *ver,
                               const struct atr_vault_settings *s)
{
    json_t *a = json_pack("{s:b,s:I,s:I,s:s,s:i,s:b}", "enabled", ver->enabled, "created",
                          (json_int_t)ver->created, "updated", (json_int_t)ver->updated,
                          "recoveryLevel", atr_vault_recovery_level(s), "recoverableDays",
                          s->retention_days, "exportable", 0);
    if (a != NULL && ver->nbf != 0)
        json_object_set_new(a, "nbf", json_integer(ver->nbf));
    if (a != NULL && ver->exp != 0)
        json_object_set_new(a, "exp", json_integer(ver->exp));
    return a;
}

static json_t *tags_json(const struct atr_vault_version *ver)
{
    json_t *t = json_loads(ver->tags != NULL ? ver->tags : "{}", 0, NULL);
    return t != NULL ? t : json_object();
}

static void kid_of(char *out, size_t cap, const struct principal *p, const char *name,
                   const char *version)
{
    if (version != NULL)
        snprintf(out, cap, "%s/keys/%s/%s", p->base, name, version);
    else
        snprintf(out, cap, "%s/keys/%s", p->base, name);
}

/* The key bundle of @p ver: {"key": JWK (public), "attributes", "tags"}. */
static json_t *bundle_json(const struct principal *p, const struct atr_vault_version *ver)
{
    json_t *key = json_loads(ver->pub != NULL ? ver->pub : "{}", 0, NULL);
    if (key == NULL)
        return NULL;
    char kid[512];
    kid_of(kid, sizeof(kid), p, ver->name, ver->version);
    json_object_set_new(key, "kid", json_string(kid));
    json_object_set_new(key, "kty", json_string(ver->kty));
    json_object_set_new(key, "key_ops", ops_json(ver->ops));
    json_t *b = json_pack("{s:o,s:o,s:o}", "key", key, "attributes",
                          attributes_json(ver, &p->settings), "tags", tags_json(ver));
    return b;
}

/* The list item of @p ver: {"kid", "attributes", "tags"} (no key material). */
static json_t *item_json(const struct principal *p, const struct atr_vault_version *ver,
                         int with_version)
{
    char kid[512];
    kid_of(kid, sizeof(kid), p, ver->name, with_version ? ver->version : NULL);
    return json_pack("{s:s,s:o,s:o}", "kid", kid, "attributes", attributes_json(ver, &p->settings),
                     "tags", tags_json(ver));
}

static void add_deleted_info(json_t *o, const struct principal *p, const char *name,
                             const struct atr_vault_key_meta *m)
{
    char rid[512];
    snprintf(rid, sizeof(rid), "%s/deletedkeys/%s", p->base, name);
    json_object_set_new(o, "recoveryId", json_string(rid));
    json_object_set_new(o, "deletedDate", json_integer(m->deleted_date));
    json_object_set_new(o, "scheduledPurgeDate", json_integer(m->scheduled_purge));
}

/* ------------------------------------------------------------ request helpers */

static struct principal *who(struct atr_http_req *req)
{
    return atr_http_req_principal(req);
}

/* Parses the body as an object; answers 400 BadParameter on failure. */
static atr_status body_json(json_t **out, struct atr_http_req *req, struct atr_http_resp *resp)
{
    *out = NULL;
    struct atr_span b = atr_http_req_body(req);
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_json_parse_object(out, b, &err) != ATR_OK)
        return bad_param(resp, "The request body is not valid JSON: %s", atr_err_msg(&err));
    return ATR_OK;
}

/* Reads tags (object of at most 15 string values) into JSON text. */
static atr_status tags_from(char **out, const json_t *tags, struct atr_http_resp *resp)
{
    *out = NULL;
    if (tags == NULL || json_is_null(tags)) {
        *out = atr_strdup("{}");
        return *out != NULL ? ATR_OK : ATR_E_NOMEM;
    }
    if (!json_is_object(tags) || json_object_size(tags) > TAGS_MAX)
        return bad_param(resp, "tags must be an object of at most %d string values", TAGS_MAX);
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)tags, k, val)
    {
        if (!json_is_string(val) || strlen(k) > 512 || json_string_length(val) > 512)
            return bad_param(resp, "tag values must be strings of at most 512 characters");
    }
    *out = json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS);
    return *out != NULL ? ATR_OK : ATR_E_NOMEM;
}

static atr_status ops_from(unsigned *out, const json_t *arr, struct atr_http_resp *resp)
{
    *out = 0;
    if (!json_is_array(arr))
        return bad_param(resp, "key_ops must be an array of operation names");
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        unsigned bit = 0;
        if (atr_vault_op_parse(&bit, json_string_value(e), NULL) != ATR_OK)
            return bad_param(resp, "Invalid key operation '%.40s'.",
                             json_is_string(e) ? json_string_value(e) : "");
        *out |= bit;
    }
    return ATR_OK;
}

/* Applies "attributes" {enabled, nbf, exp} of a request to @p ver. */
static atr_status attrs_from(struct atr_vault_version *ver, const json_t *attrs,
                             struct atr_http_resp *resp)
{
    if (attrs == NULL || json_is_null(attrs))
        return ATR_OK;
    if (!json_is_object(attrs))
        return bad_param(resp, "attributes must be an object");
    json_t *e = json_object_get(attrs, "enabled");
    if (e != NULL && !json_is_null(e)) {
        if (!json_is_boolean(e))
            return bad_param(resp, "attributes.enabled must be true or false");
        ver->enabled = json_is_true(e);
    }
    static const char *const times[] = {"nbf", "exp"};
    for (size_t i = 0; i < 2; i++) {
        json_t *t = json_object_get(attrs, times[i]);
        if (t == NULL)
            continue;
        int64_t *dst = i == 0 ? &ver->nbf : &ver->exp;
        if (json_is_null(t)) {
            *dst = 0;
        } else if (json_is_integer(t) && json_integer_value(t) > 0 &&
                   json_integer_value(t) < ((json_int_t)1 << 40)) {
            *dst = json_integer_value(t);
        } else {
            return bad_param(resp, "attributes.%s must be a Unix time in seconds", times[i]);
        }
    }
    if (ver->nbf != 0 && ver->exp != 0 && ver->exp <= ver->nbf)
        return bad_param(resp, "attributes.exp must be later than attributes.nbf");
    return ATR_OK;
}

/* The public JWK members of @p key as JSON text (n, e). */
static atr_status pub_text(char **out, const struct vkey *key, struct atr_err *err)
{
    json_t *jwk = NULL;
    if (key->ec != NULL)
        ATR_TRY(atr_ec_key_to_jwk(&jwk, key->ec, 0, err));
    else
        ATR_TRY(atr_jwk_export(&jwk, key->rsa, ATR_JWK_PUBLIC, err));
    json_object_del(jwk, "kty");
    *out = json_dumps(jwk, JSON_COMPACT);
    json_decref(jwk);
    return *out != NULL ? ATR_OK : ATR_E_NOMEM;
}

static atr_status new_version_id(char out[33], struct atr_err *err)
{
    uint8_t raw[16];
    ATR_TRY(atr_rand_bytes(raw, sizeof(raw), err));
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
    return ATR_OK;
}

/*
 * Refuses to use a name held by a soft-deleted key (409), as Azure does.
 * Returns ATR_OK when the name is free or live.
 */
static atr_status name_usable(struct atr_vault *v, const struct principal *p, const char *name,
                              struct atr_http_resp *resp)
{
    struct atr_vault_key_meta m;
    atr_status rc = atr_vault_store_key_meta(&m, v->store, p->vault, name, NULL);
    int deleted = rc == ATR_OK && m.deleted;
    atr_vault_key_meta_cleanup(&m);
    if (deleted)
        return kv_error(resp, 409, "Conflict", "ObjectIsDeletedButRecoverable",
                        "Key %s is currently in a deleted but recoverable state, and its name "
                        "cannot be reused; in this state, the key can only be recovered or purged.",
                        name);
    return ATR_OK;
}

/* Stores a new version of @p name holding @p key; fills @p ver (seq, version, sealed). */
static atr_status store_version(struct atr_vault *v, const struct principal *p,
                                struct atr_vault_version *ver, const struct vkey *key,
                                struct atr_err *err)
{
    ATR_TRY(new_version_id(ver->version, err));
    ATR_TRY(pub_text(&ver->pub, key, err));
    atr_buf_init(&ver->sealed, (size_t)1 << 20);
    ATR_TRY(seal_private(&ver->sealed, v, key, ver->name, ver->version, err));
    return atr_vault_store_version_add(v->store, p->vault, ver, err);
}

/* ------------------------------------------------------------ key handlers */

/* Key types: RSA and EC (software or "-HSM"); oct keys live only in Managed HSM. */
enum key_family { FAMILY_NONE = 0, FAMILY_RSA, FAMILY_EC };

static enum key_family kty_family(const char *kty)
{
    if (kty == NULL)
        return FAMILY_NONE;
    if (strcmp(kty, "RSA") == 0 || strcmp(kty, "RSA-HSM") == 0)
        return FAMILY_RSA;
    if (kty_is_ec(kty))
        return FAMILY_EC;
    return FAMILY_NONE;
}

static atr_status kty_refused(struct atr_http_resp *resp, const char *kty)
{
    if (kty != NULL && (strcmp(kty, "oct") == 0 || strcmp(kty, "oct-HSM") == 0))
        return bad_param(resp,
                         "Key type '%s' is not supported by a key vault (symmetric keys "
                         "exist only in Managed HSM).",
                         kty);
    return bad_param(resp, "The key type (kty) is missing or invalid: use RSA, RSA-HSM, EC or "
                           "EC-HSM.");
}

/* Applies key_ops, attributes and tags of a create or import request. */
static atr_status version_props(struct atr_vault_version *ver, const json_t *ops,
                                const json_t *body, struct atr_http_resp *resp)
{
    ver->enabled = 1;
    if (ops != NULL && !json_is_null(ops))
        ATR_TRY(ops_from(&ver->ops, ops, resp));
    ATR_TRY(attrs_from(ver, json_object_get(body, "attributes"), resp));
    return tags_from(&ver->tags, json_object_get(body, "tags"), resp);
}

/* Stores a new first-or-next version of a key (create, import). */
static atr_status add_key(struct atr_http_req *req, struct atr_http_resp *resp, struct atr_vault *v,
                          struct atr_vault_version *ver, const struct vkey *key, const char *event)
{
    struct principal *p = who(req);
    struct atr_err err;
    atr_err_clear(&err);
    ver->created = ver->updated = now_s(v);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = name_usable(v, p, ver->name, resp);
    if (rc == ATR_OK && (rc = store_version(v, p, ver, key, &err)) != ATR_OK)
        rc = internal(req, resp, rc, &err);
    pthread_mutex_unlock(&v->write_lock);
    if (rc != ATR_OK)
        return rc;
    atr_log_fields(ATR_LOG_INFO, event, atr_http_req_id(req), "key version added", "vault", "s",
                   p->vault, "key", "s", ver->name, "version", "s", ver->version, "kty", "s",
                   ver->kty, NULL);
    return atr_http_resp_json(resp, 200, bundle_json(p, ver));
}

static atr_status h_create(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    const char *name = atr_http_req_param(req, "name");
    if (!atr_vault_key_name_ok(name))
        return bad_param(resp, "The key name must be 1-127 characters of 0-9, a-z, A-Z and '-'.");
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    atr_status rc = ATR_OK;
    struct atr_vault_version ver;
    memset(&ver, 0, sizeof(ver));
    struct vkey key = {NULL, NULL};
    struct atr_err err;
    atr_err_clear(&err);
    const char *kty = json_string_value(json_object_get(body, "kty"));
    enum key_family fam = kty_family(kty);
    if (fam == FAMILY_NONE) {
        rc = kty_refused(resp, kty);
        goto done;
    }
    snprintf(ver.name, sizeof(ver.name), "%s", name);
    snprintf(ver.kty, sizeof(ver.kty), "%s", kty);
    if (fam == FAMILY_EC) {
        const char *crv = json_string_value(json_object_get(body, "crv"));
        atr_ec_curve curve = ATR_EC_P256;
        if (crv != NULL && atr_ec_curve_from_name(&curve, crv, NULL) != ATR_OK) {
            rc = bad_param(resp, "The curve must be P-256, P-384, P-521 or P-256K.");
            goto done;
        }
        ver.ops = ATR_VAULT_OPS_EC_DEFAULT;
        if ((rc = version_props(&ver, json_object_get(body, "key_ops"), body, resp)) != ATR_OK)
            goto done;
        rc = atr_ec_key_generate(&key.ec, curve, &err);
    } else {
        json_t *size = json_object_get(body, "key_size");
        json_int_t bits = size == NULL || json_is_null(size) ? 2048 : json_integer_value(size);
        if ((size != NULL && !json_is_null(size) && !json_is_integer(size)) ||
            (bits != 2048 && bits != 3072 && bits != 4096)) {
            rc = bad_param(resp, "The key size must be 2048, 3072 or 4096 bits for RSA keys.");
            goto done;
        }
        json_t *pe = json_object_get(body, "public_exponent");
        if (pe != NULL && !json_is_null(pe) && json_integer_value(pe) != 65537) {
            rc = bad_param(resp, "Only the public exponent 65537 is supported.");
            goto done;
        }
        ver.ops = ATR_VAULT_OPS_RSA_DEFAULT;
        if ((rc = version_props(&ver, json_object_get(body, "key_ops"), body, resp)) != ATR_OK)
            goto done;
        rc = atr_rsa_key_generate(&key.rsa, (unsigned)bits, &err);
    }
    if (rc != ATR_OK) {
        rc = internal(req, resp, rc, &err);
        goto done;
    }
    rc = add_key(req, resp, v, &ver, &key, "vault.key.create");
done:
    vkey_cleanup(&key);
    atr_vault_version_cleanup(&ver);
    json_decref(body);
    return rc;
}

static atr_status h_import(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    const char *name = atr_http_req_param(req, "name");
    if (!atr_vault_key_name_ok(name))
        return bad_param(resp, "The key name must be 1-127 characters of 0-9, a-z, A-Z and '-'.");
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    atr_status rc = ATR_OK;
    struct atr_vault_version ver;
    memset(&ver, 0, sizeof(ver));
    struct vkey key = {NULL, NULL};
    struct atr_err err;
    atr_err_clear(&err);
    json_t *jwk = json_object_get(body, "key");
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    enum key_family fam = kty_family(kty);
    if (!json_is_object(jwk) || fam == FAMILY_NONE) {
        rc = kty_refused(resp, kty);
        goto done;
    }
    int hsm = strstr(kty, "-HSM") != NULL || json_is_true(json_object_get(body, "Hsm"));
    /* import under the plain type whatever the -HSM suffix says */
    json_t *copy = json_deep_copy(jwk);
    if (copy == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    json_object_set_new(copy, "kty", json_string(fam == FAMILY_EC ? "EC" : "RSA"));
    json_object_del(copy, "key_ops");
    json_object_del(copy, "kid");
    if (fam == FAMILY_EC)
        rc = atr_ec_key_from_jwk(&key.ec, copy, &err);
    else
        rc = atr_jwk_import(&key.rsa, copy, &err);
    json_decref(copy);
    int priv = rc == ATR_OK && (fam == FAMILY_EC ? atr_ec_key_has_private(key.ec)
                                                 : atr_rsa_key_has_private(key.rsa));
    if (!priv) {
        rc = bad_param(resp, "The JSON Web Key is not a valid private key%s%s.",
                       rc != ATR_OK ? ": " : "", rc != ATR_OK ? atr_err_msg(&err) : "");
        goto done;
    }
    if (fam == FAMILY_RSA) {
        unsigned bits = atr_rsa_key_bits(key.rsa);
        if (bits != 2048 && bits != 3072 && bits != 4096) {
            rc = bad_param(resp, "The key size must be 2048, 3072 or 4096 bits for RSA keys.");
            goto done;
        }
    }
    snprintf(ver.name, sizeof(ver.name), "%s", name);
    snprintf(ver.kty, sizeof(ver.kty), "%s%s", fam == FAMILY_EC ? "EC" : "RSA", hsm ? "-HSM" : "");
    ver.ops = fam == FAMILY_EC ? ATR_VAULT_OPS_EC_DEFAULT : ATR_VAULT_OPS_RSA_DEFAULT;
    if ((rc = version_props(&ver, json_object_get(jwk, "key_ops"), body, resp)) != ATR_OK)
        goto done;
    rc = add_key(req, resp, v, &ver, &key, "vault.key.import");
done:
    vkey_cleanup(&key);
    atr_vault_version_cleanup(&ver);
    json_decref(body);
    return rc;
}

/*
 * Reads a live key's version (@p version "" = latest) into @p ver; answers
 * 404 when the key is missing or deleted.
 */
static atr_status live_version(struct atr_vault_version *ver, struct atr_vault *v,
                               const struct principal *p, const char *name, const char *version,
                               int with_sealed, struct atr_http_resp *resp)
{
    memset(ver, 0, sizeof(*ver));
    if (!atr_vault_key_name_ok(name) ||
        (version != NULL && version[0] != '\0' && !atr_vault_version_ok(version)))
        return key_not_found(resp, name != NULL ? name : "");
    struct atr_vault_key_meta m;
    atr_status rc = atr_vault_store_key_meta(&m, v->store, p->vault, name, NULL);
    int deleted = rc == ATR_OK && m.deleted;
    atr_vault_key_meta_cleanup(&m);
    if (rc != ATR_OK || deleted)
        return key_not_found(resp, name);
    struct atr_err err;
    atr_err_clear(&err);
    rc = atr_vault_store_version_get(ver, v->store, p->vault, name, version, with_sealed, &err);
    if (rc == ATR_E_NOT_FOUND)
        return key_not_found(resp, name);
    if (rc != ATR_OK)
        return atr_err_set(&err, rc, "%s", atr_err_msg(&err));
    return ATR_OK;
}

static atr_status h_get(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    struct atr_vault_version ver;
    const char *version = atr_http_req_param(req, "version");
    ATR_TRY(live_version(&ver, v, p, atr_http_req_param(req, "name"), version, 0, resp));
    atr_status rc = atr_http_resp_json(resp, 200, bundle_json(p, &ver));
    atr_vault_version_cleanup(&ver);
    return rc;
}

static atr_status h_update(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    struct atr_vault_version ver;
    memset(&ver, 0, sizeof(ver));
    struct atr_err err;
    atr_err_clear(&err);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = live_version(&ver, v, p, atr_http_req_param(req, "name"),
                                 atr_http_req_param(req, "version"), 0, resp);
    if (rc != ATR_OK)
        goto done;
    json_t *ops = json_object_get(body, "key_ops");
    if (ops != NULL && !json_is_null(ops) && (rc = ops_from(&ver.ops, ops, resp)) != ATR_OK)
        goto done;
    if ((rc = attrs_from(&ver, json_object_get(body, "attributes"), resp)) != ATR_OK)
        goto done;
    json_t *tags = json_object_get(body, "tags");
    if (tags != NULL && !json_is_null(tags)) {
        char *t = NULL;
        if ((rc = tags_from(&t, tags, resp)) != ATR_OK)
            goto done;
        atr_free(ver.tags);
        ver.tags = t;
    }
    ver.updated = now_s(v);
    if ((rc = atr_vault_store_version_update(v->store, p->vault, &ver, &err)) != ATR_OK) {
        rc = internal(req, resp, rc, &err);
        goto done;
    }
    atr_log_fields(ATR_LOG_INFO, "vault.key.update", atr_http_req_id(req), "key updated", "vault",
                   "s", p->vault, "key", "s", ver.name, "version", "s", ver.version, "enabled", "b",
                   ver.enabled, NULL);
    rc = atr_http_resp_json(resp, 200, bundle_json(p, &ver));
done:
    pthread_mutex_unlock(&v->write_lock);
    atr_vault_version_cleanup(&ver);
    json_decref(body);
    return rc;
}

/* Reads maxresults (1..25, default 25) and the skip token. */
static atr_status page_args(size_t *max, const char **token, struct atr_http_req *req,
                            struct atr_http_resp *resp)
{
    *max = ATR_VAULT_STORE_PAGE_MAX;
    const char *m = atr_http_req_query(req, "maxresults");
    if (m != NULL) {
        char *end = NULL;
        long n = strtol(m, &end, 10);
        if (end == m || *end != '\0' || n < 1 || n > ATR_VAULT_STORE_PAGE_MAX)
            return bad_param(resp, "maxresults must be an integer from 1 to 25.");
        *max = (size_t)n;
    }
    *token = atr_http_req_query(req, "$skiptoken");
    return ATR_OK;
}

/* Answers a page: {"value": items, "nextLink": url or null}. */
static atr_status page_answer(struct atr_http_req *req, struct atr_http_resp *resp,
                              const struct principal *p, const char *path, json_t *items,
                              const char *next_token, size_t max)
{
    json_t *next = json_null();
    if (next_token != NULL) {
        char url[1024];
        snprintf(url, sizeof(url), "%s%s?api-version=%s&$skiptoken=%s&maxresults=%zu", p->base,
                 path, p->api_version, next_token, max);
        next = json_string(url);
    }
    (void)req;
    return atr_http_resp_json(resp, 200, json_pack("{s:o,s:o}", "value", items, "nextLink", next));
}

/* Skip tokens: base64url of the last name (keys) or "seq" (versions). */
static atr_status token_decode(char *out, size_t cap, const char *token)
{
    out[0] = '\0';
    if (token == NULL || token[0] == '\0')
        return ATR_OK;
    struct atr_buf b;
    atr_buf_init(&b, cap - 1);
    atr_status rc = atr_b64url_decode(&b, token, strlen(token), NULL);
    if (rc == ATR_OK) {
        memcpy(out, b.ptr, b.len);
        out[b.len] = '\0';
    }
    atr_buf_cleanup(&b);
    return rc == ATR_OK ? ATR_OK : ATR_E_INVALID;
}

static atr_status h_list(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx,
                         int deleted)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    size_t max = 0;
    const char *token = NULL;
    ATR_TRY(page_args(&max, &token, req, resp));
    char after[160];
    if (token_decode(after, sizeof(after), token) != ATR_OK)
        return bad_param(resp, "The $skiptoken is invalid.");
    struct atr_vault_version *vers = NULL;
    size_t n = 0;
    int more = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc =
        atr_vault_store_keys_list(&vers, &n, &more, v->store, p->vault, deleted, after, max, &err);
    if (rc != ATR_OK)
        return internal(req, resp, rc, &err);
    json_t *items = json_array();
    for (size_t i = 0; items != NULL && i < n; i++) {
        json_t *it = item_json(p, &vers[i], 0);
        if (it != NULL && deleted) {
            struct atr_vault_key_meta m;
            if (atr_vault_store_key_meta(&m, v->store, p->vault, vers[i].name, NULL) == ATR_OK)
                add_deleted_info(it, p, vers[i].name, &m);
            atr_vault_key_meta_cleanup(&m);
        }
        json_array_append_new(items, it);
    }
    char *next = NULL;
    if (more && n > 0 && atr_b64url_encode_str(&next, atr_span_str(vers[n - 1].name)) != ATR_OK) {
        atr_vault_versions_free(vers, n);
        json_decref(items);
        return ATR_E_NOMEM;
    }
    rc = page_answer(req, resp, p, deleted ? "/deletedkeys" : "/keys", items, next, max);
    atr_free(next);
    atr_vault_versions_free(vers, n);
    return rc;
}

static atr_status h_list_keys(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    return h_list(req, resp, ctx, 0);
}

static atr_status h_list_deleted(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    return h_list(req, resp, ctx, 1);
}

static atr_status h_versions(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    size_t max = 0;
    const char *token = NULL;
    ATR_TRY(page_args(&max, &token, req, resp));
    char after[32];
    if (token_decode(after, sizeof(after), token) != ATR_OK)
        return bad_param(resp, "The $skiptoken is invalid.");
    int64_t after_seq = after[0] != '\0' ? strtoll(after, NULL, 10) : 0;
    struct atr_vault_key_meta m;
    if (!atr_vault_key_name_ok(name) ||
        atr_vault_store_key_meta(&m, v->store, p->vault, name, NULL) != ATR_OK)
        return key_not_found(resp, name != NULL ? name : "");
    int deleted = m.deleted;
    atr_vault_key_meta_cleanup(&m);
    if (deleted)
        return key_not_found(resp, name);
    struct atr_vault_version *vers = NULL;
    size_t n = 0;
    int more = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_vault_store_versions_list(&vers, &n, &more, v->store, p->vault, name,
                                                  after_seq, max, &err);
    if (rc != ATR_OK)
        return internal(req, resp, rc, &err);
    json_t *items = json_array();
    for (size_t i = 0; items != NULL && i < n; i++)
        json_array_append_new(items, item_json(p, &vers[i], 1));
    char *next = NULL;
    if (more && n > 0) {
        char seq[32];
        snprintf(seq, sizeof(seq), "%lld", (long long)vers[n - 1].seq);
        if (atr_b64url_encode_str(&next, atr_span_str(seq)) != ATR_OK) {
            atr_vault_versions_free(vers, n);
            json_decref(items);
            return ATR_E_NOMEM;
        }
    }
    char path[200];
    snprintf(path, sizeof(path), "/keys/%s/versions", name);
    rc = page_answer(req, resp, p, path, items, next, max);
    atr_free(next);
    atr_vault_versions_free(vers, n);
    return rc;
}

static atr_status h_delete(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_version ver;
    struct atr_err err;
    atr_err_clear(&err);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = live_version(&ver, v, p, name, NULL, 0, resp);
    if (rc != ATR_OK) {
        pthread_mutex_unlock(&v->write_lock);
        return rc;
    }
    struct atr_vault_key_meta m;
    memset(&m, 0, sizeof(m));
    m.deleted = 1;
    m.deleted_date = now_s(v);
    m.scheduled_purge = m.deleted_date + (int64_t)p->settings.retention_days * 86400;
    rc = atr_vault_store_key_set_deleted(v->store, p->vault, name, 1, m.deleted_date,
                                         m.scheduled_purge, &err);
    pthread_mutex_unlock(&v->write_lock);
    if (rc != ATR_OK) {
        atr_vault_version_cleanup(&ver);
        return internal(req, resp, rc, &err);
    }
    atr_log_fields(ATR_LOG_INFO, "vault.key.delete", atr_http_req_id(req), "key soft-deleted",
                   "vault", "s", p->vault, "key", "s", name, NULL);
    json_t *b = bundle_json(p, &ver);
    if (b != NULL)
        add_deleted_info(b, p, name, &m);
    atr_vault_version_cleanup(&ver);
    return atr_http_resp_json(resp, 200, b);
}

/* Reads a deleted key's latest version and meta; 404 when not deleted. */
static atr_status deleted_key(struct atr_vault_version *ver, struct atr_vault_key_meta *m,
                              struct atr_vault *v, const struct principal *p, const char *name,
                              struct atr_http_resp *resp)
{
    memset(ver, 0, sizeof(*ver));
    memset(m, 0, sizeof(*m));
    if (!atr_vault_key_name_ok(name) ||
        atr_vault_store_key_meta(m, v->store, p->vault, name, NULL) != ATR_OK || !m->deleted) {
        atr_vault_key_meta_cleanup(m);
        return kv_error(resp, 404, "KeyNotFound", NULL, "Deleted Key not found: %s",
                        name != NULL ? name : "");
    }
    if (atr_vault_store_version_get(ver, v->store, p->vault, name, NULL, 0, NULL) != ATR_OK) {
        atr_vault_key_meta_cleanup(m);
        return kv_error(resp, 404, "KeyNotFound", NULL, "Deleted Key not found: %s", name);
    }
    return ATR_OK;
}

static atr_status h_get_deleted(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_version ver;
    struct atr_vault_key_meta m;
    ATR_TRY(deleted_key(&ver, &m, v, p, name, resp));
    json_t *b = bundle_json(p, &ver);
    if (b != NULL)
        add_deleted_info(b, p, name, &m);
    atr_vault_version_cleanup(&ver);
    atr_vault_key_meta_cleanup(&m);
    return atr_http_resp_json(resp, 200, b);
}

static atr_status h_recover(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_version ver;
    struct atr_vault_key_meta m;
    struct atr_err err;
    atr_err_clear(&err);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = deleted_key(&ver, &m, v, p, name, resp);
    if (rc == ATR_OK) {
        atr_vault_key_meta_cleanup(&m);
        rc = atr_vault_store_key_set_deleted(v->store, p->vault, name, 0, 0, 0, &err);
        if (rc != ATR_OK)
            rc = internal(req, resp, rc, &err);
    }
    pthread_mutex_unlock(&v->write_lock);
    if (rc == ATR_OK) {
        atr_log_fields(ATR_LOG_INFO, "vault.key.recover", atr_http_req_id(req), "key recovered",
                       "vault", "s", p->vault, "key", "s", name, NULL);
        rc = atr_http_resp_json(resp, 200, bundle_json(p, &ver));
    }
    atr_vault_version_cleanup(&ver);
    return rc;
}

static atr_status h_purge(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_version ver;
    struct atr_vault_key_meta m;
    struct atr_err err;
    atr_err_clear(&err);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = deleted_key(&ver, &m, v, p, name, resp);
    if (rc == ATR_OK && p->settings.purge_protection && now_s(v) < m.scheduled_purge) {
        rc = kv_error(resp, 403, "Forbidden", "PurgeProtected",
                      "Operation \"purge\" is not allowed because purge protection is enabled "
                      "for this vault. Key Vault service will automatically purge it after the "
                      "retention period has passed.");
    } else if (rc == ATR_OK) {
        rc = atr_vault_store_key_purge(v->store, p->vault, name, &err);
        if (rc != ATR_OK)
            rc = internal(req, resp, rc, &err);
    }
    pthread_mutex_unlock(&v->write_lock);
    if (rc == ATR_OK) {
        cache_forget(v, p->vault, name);
        atr_log_fields(ATR_LOG_INFO, "vault.key.purge", atr_http_req_id(req), "key purged", "vault",
                       "s", p->vault, "key", "s", name, NULL);
        rc = atr_http_resp_body(resp, 204, NULL, atr_span_of(NULL, 0));
    }
    atr_vault_version_cleanup(&ver);
    atr_vault_key_meta_cleanup(&m);
    return rc;
}

/*
 * Adds a new version of key @p name with the properties of its latest one
 * (type, size, key_ops, tags) and the policy's expiry; the caller holds
 * write_lock. Fills @p out.
 */
static atr_status rotate_locked(struct atr_vault_version *out, struct atr_vault *v,
                                const char *vault, const char *name, struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    struct atr_vault_version cur;
    ATR_TRY(atr_vault_store_version_get(&cur, v->store, vault, name, NULL, 1, err));
    struct atr_vault_key_meta m;
    atr_status rc = atr_vault_store_key_meta(&m, v->store, vault, name, err);
    struct cached_key *ck = NULL;
    struct vkey key = {NULL, NULL};
    if (rc == ATR_OK)
        rc = key_load(&ck, v, vault, &cur, err);
    if (rc == ATR_OK && ck->key.ec != NULL)
        rc = atr_ec_key_generate(&key.ec, atr_ec_key_curve(ck->key.ec), err);
    else if (rc == ATR_OK)
        rc = atr_rsa_key_generate(&key.rsa, atr_rsa_key_bits(ck->key.rsa), err);
    if (rc == ATR_OK) {
        snprintf(out->name, sizeof(out->name), "%s", name);
        snprintf(out->kty, sizeof(out->kty), "%s", cur.kty);
        out->ops = cur.ops;
        out->enabled = 1;
        out->created = out->updated = now_s(v);
        out->tags = atr_strdup(cur.tags != NULL ? cur.tags : "{}");
        if (m.policy != NULL) {
            json_t *pol = json_loads(m.policy, 0, NULL);
            struct atr_vault_rotation r;
            if (pol != NULL && atr_vault_rotation_parse(&r, pol, NULL) == ATR_OK && r.expiry_s > 0)
                out->exp = out->created + r.expiry_s;
            json_decref(pol);
        }
        if (out->tags == NULL)
            rc = ATR_E_NOMEM;
    }
    if (rc == ATR_OK) {
        struct principal tmp;
        memset(&tmp, 0, sizeof(tmp));
        snprintf(tmp.vault, sizeof(tmp.vault), "%s", vault);
        rc = store_version(v, &tmp, out, &key, err);
    }
    cached_release(v, ck);
    vkey_cleanup(&key);
    atr_vault_key_meta_cleanup(&m);
    atr_vault_version_cleanup(&cur);
    if (rc != ATR_OK)
        atr_vault_version_cleanup(out);
    return rc;
}

static atr_status h_rotate(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_version cur, ver;
    memset(&ver, 0, sizeof(ver));
    struct atr_err err;
    atr_err_clear(&err);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = live_version(&cur, v, p, name, NULL, 0, resp);
    atr_vault_version_cleanup(&cur);
    if (rc == ATR_OK && (rc = rotate_locked(&ver, v, p->vault, name, &err)) != ATR_OK)
        rc = internal(req, resp, rc, &err);
    pthread_mutex_unlock(&v->write_lock);
    if (rc == ATR_OK) {
        atr_log_fields(ATR_LOG_INFO, "vault.key.rotate", atr_http_req_id(req), "key rotated",
                       "vault", "s", p->vault, "key", "s", name, "version", "s", ver.version,
                       "trigger", "s", "request", NULL);
        rc = atr_http_resp_json(resp, 200, bundle_json(p, &ver));
    }
    atr_vault_version_cleanup(&ver);
    return rc;
}

/* The policy document as answered: stored or Azure's default, with id and times. */
static json_t *policy_json(const struct principal *p, const char *name,
                           const struct atr_vault_key_meta *m)
{
    json_t *doc = m->policy != NULL ? json_loads(m->policy, 0, NULL) : NULL;
    if (doc == NULL)
        doc = json_pack("{s:[{s:{s:s},s:{s:s}}],s:{}}", "lifetimeActions", "trigger",
                        "timeBeforeExpiry", "P30D", "action", "type", "Notify", "attributes");
    if (doc == NULL)
        return NULL;
    char id[512];
    snprintf(id, sizeof(id), "%s/keys/%s/rotationpolicy", p->base, name);
    json_object_set_new(doc, "id", json_string(id));
    json_t *attrs = json_object_get(doc, "attributes");
    if (!json_is_object(attrs)) {
        attrs = json_object();
        json_object_set_new(doc, "attributes", attrs);
    }
    if (m->policy != NULL) {
        json_object_set_new(attrs, "created", json_integer(m->policy_created));
        json_object_set_new(attrs, "updated", json_integer(m->policy_updated));
    }
    return doc;
}

static atr_status h_policy_get(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_key_meta m;
    if (!atr_vault_key_name_ok(name) ||
        atr_vault_store_key_meta(&m, v->store, p->vault, name, NULL) != ATR_OK)
        return key_not_found(resp, name != NULL ? name : "");
    atr_status rc = m.deleted ? key_not_found(resp, name)
                              : atr_http_resp_json(resp, 200, policy_json(p, name, &m));
    atr_vault_key_meta_cleanup(&m);
    return rc;
}

static atr_status h_policy_put(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_vault_rotation r;
    atr_status rc = ATR_OK;
    char *text = NULL;
    if (atr_vault_rotation_parse(&r, body, &err) != ATR_OK) {
        rc = bad_param(resp, "Invalid rotation policy: %s", atr_err_msg(&err));
        goto done;
    }
    /* keep only the members we understand */
    json_object_del(body, "id");
    json_t *attrs = json_object_get(body, "attributes");
    if (json_is_object(attrs)) {
        json_object_del(attrs, "created");
        json_object_del(attrs, "updated");
    }
    text = json_dumps(body, JSON_COMPACT);
    if (text == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    pthread_mutex_lock(&v->write_lock);
    struct atr_vault_version cur;
    rc = live_version(&cur, v, p, name, NULL, 0, resp);
    atr_vault_version_cleanup(&cur);
    if (rc == ATR_OK && (rc = atr_vault_store_key_set_policy(v->store, p->vault, name, text,
                                                             now_s(v), &err)) != ATR_OK)
        rc = internal(req, resp, rc, &err);
    pthread_mutex_unlock(&v->write_lock);
    if (rc == ATR_OK) {
        struct atr_vault_key_meta m;
        if ((rc = atr_vault_store_key_meta(&m, v->store, p->vault, name, &err)) == ATR_OK)
            rc = atr_http_resp_json(resp, 200, policy_json(p, name, &m));
        atr_vault_key_meta_cleanup(&m);
        atr_log_fields(ATR_LOG_INFO, "vault.key.rotationpolicy", atr_http_req_id(req),
                       "rotation policy set", "vault", "s", p->vault, "key", "s", name, NULL);
    }
done:
    atr_free(text);
    json_decref(body);
    return rc;
}

/* ------------------------------------------------------------ backup */

static atr_status h_backup(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const char *name = atr_http_req_param(req, "name");
    struct atr_vault_version cur;
    ATR_TRY(live_version(&cur, v, p, name, NULL, 0, resp));
    atr_vault_version_cleanup(&cur);
    struct atr_err err;
    atr_err_clear(&err);
    json_t *versions = json_array();
    struct atr_vault_key_meta m;
    memset(&m, 0, sizeof(m));
    atr_status rc = atr_vault_store_key_meta(&m, v->store, p->vault, name, &err);
    int64_t after = 0;
    for (;;) {
        struct atr_vault_version *vers = NULL;
        size_t n = 0;
        int more = 0;
        if (rc != ATR_OK || versions == NULL)
            break;
        rc = atr_vault_store_versions_list(&vers, &n, &more, v->store, p->vault, name, after,
                                           ATR_VAULT_STORE_PAGE_MAX, &err);
        for (size_t i = 0; rc == ATR_OK && i < n; i++) {
            struct atr_vault_version full;
            rc = atr_vault_store_version_get(&full, v->store, p->vault, name, vers[i].version, 1,
                                             &err);
            char *sealed = NULL;
            if (rc == ATR_OK)
                rc = atr_b64url_encode_str(&sealed, atr_buf_span(&full.sealed));
            if (rc == ATR_OK)
                json_array_append_new(
                    versions, json_pack("{s:s,s:s,s:I,s:b,s:I,s:I,s:I,s:I,s:s,s:s,s:s}", "version",
                                        full.version, "kty", full.kty, "ops", (json_int_t)full.ops,
                                        "enabled", full.enabled, "nbf", (json_int_t)full.nbf, "exp",
                                        (json_int_t)full.exp, "created", (json_int_t)full.created,
                                        "updated", (json_int_t)full.updated, "tags", full.tags,
                                        "pub", full.pub, "sealed", sealed));
            atr_free(sealed);
            atr_vault_version_cleanup(&full);
            after = vers[i].seq;
        }
        atr_vault_versions_free(vers, n);
        if (!more)
            break;
    }
    char *text = NULL;
    if (rc == ATR_OK) {
        json_t *doc = json_pack("{s:s,s:s,s:O,s:s?}", "magic", backup_magic, "name", name,
                                "versions", versions, "policy", m.policy);
        text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (text == NULL)
            rc = ATR_E_NOMEM;
    }
    json_decref(versions);
    atr_vault_key_meta_cleanup(&m);
    struct atr_buf sealed;
    atr_buf_init(&sealed, BACKUP_MAX_TEXT);
    char *out = NULL;
    if (rc == ATR_OK) {
        pthread_mutex_lock(&v->lock);
        rc =
            atr_aead_seal(&sealed, v->backup, atr_span_str(backup_magic), atr_span_str(text), &err);
        pthread_mutex_unlock(&v->lock);
    }
    if (rc == ATR_OK)
        rc = atr_b64url_encode_str(&out, atr_buf_span(&sealed));
    atr_free(text);
    atr_buf_cleanup(&sealed);
    if (rc != ATR_OK) {
        atr_free(out);
        return internal(req, resp, rc, &err);
    }
    atr_log_fields(ATR_LOG_INFO, "vault.key.backup", atr_http_req_id(req), "key backed up", "vault",
                   "s", p->vault, "key", "s", name, NULL);
    rc = atr_http_resp_json(resp, 200, json_pack("{s:s}", "value", out));
    atr_free(out);
    return rc;
}

static atr_status h_restore(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    const char *value = json_string_value(json_object_get(body, "value"));
    struct atr_buf raw, plain;
    atr_buf_init(&raw, BACKUP_MAX_TEXT);
    atr_buf_init(&plain, BACKUP_MAX_TEXT);
    json_t *doc = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = ATR_OK;
    if (value == NULL || atr_b64url_decode(&raw, value, strlen(value), NULL) != ATR_OK) {
        rc = bad_param(resp, "The backup blob (value) is missing or not base64url.");
        goto done;
    }
    pthread_mutex_lock(&v->lock);
    rc = atr_aead_open(&plain, v->backup, atr_span_str(backup_magic), atr_buf_span(&raw), NULL);
    pthread_mutex_unlock(&v->lock);
    if (rc != ATR_OK || (doc = json_loadb((const char *)plain.ptr, plain.len,
                                          JSON_REJECT_DUPLICATES, NULL)) == NULL) {
        rc = bad_param(resp, "The backup blob is corrupt or was made by another key vault "
                             "server.");
        goto done;
    }
    const char *name = json_string_value(json_object_get(doc, "name"));
    json_t *versions = json_object_get(doc, "versions");
    if (!atr_vault_key_name_ok(name) || !json_is_array(versions) ||
        json_array_size(versions) == 0) {
        rc = bad_param(resp, "The backup blob is corrupt.");
        goto done;
    }
    pthread_mutex_lock(&v->write_lock);
    struct atr_vault_key_meta m;
    if (atr_vault_store_key_meta(&m, v->store, p->vault, name, NULL) == ATR_OK) {
        rc = m.deleted ? name_usable(v, p, name, resp)
                       : kv_error(resp, 409, "Conflict", NULL,
                                  "There was a conflict restoring the key '%s'. A key with this "
                                  "name already exists in this vault.",
                                  name);
        atr_vault_key_meta_cleanup(&m);
    }
    struct atr_vault_version last;
    memset(&last, 0, sizeof(last));
    size_t i;
    json_t *e;
    json_array_foreach(versions, i, e)
    {
        if (rc != ATR_OK)
            break;
        struct atr_vault_version ver;
        memset(&ver, 0, sizeof(ver));
        const char *version = json_string_value(json_object_get(e, "version"));
        const char *sealed = json_string_value(json_object_get(e, "sealed"));
        snprintf(ver.name, sizeof(ver.name), "%s", name);
        snprintf(ver.version, sizeof(ver.version), "%s", version != NULL ? version : "");
        snprintf(ver.kty, sizeof(ver.kty), "%s",
                 json_string_value(json_object_get(e, "kty")) != NULL
                     ? json_string_value(json_object_get(e, "kty"))
                     : "RSA");
        ver.ops = (unsigned)json_integer_value(json_object_get(e, "ops"));
        ver.enabled = json_is_true(json_object_get(e, "enabled"));
        ver.nbf = json_integer_value(json_object_get(e, "nbf"));
        ver.exp = json_integer_value(json_object_get(e, "exp"));
        ver.created = json_integer_value(json_object_get(e, "created"));
        ver.updated = json_integer_value(json_object_get(e, "updated"));
        ver.tags = atr_strdup(json_string_value(json_object_get(e, "tags")) != NULL
                                  ? json_string_value(json_object_get(e, "tags"))
                                  : "{}");
        ver.pub = atr_strdup(json_string_value(json_object_get(e, "pub")) != NULL
                                 ? json_string_value(json_object_get(e, "pub"))
                                 : "{}");
        atr_buf_init(&ver.sealed, (size_t)1 << 20);
        if (!atr_vault_version_ok(version) || sealed == NULL || ver.tags == NULL ||
            ver.pub == NULL ||
            atr_b64url_decode(&ver.sealed, sealed, strlen(sealed), NULL) != ATR_OK) {
            rc = bad_param(resp, "The backup blob is corrupt.");
        } else if ((rc = atr_vault_store_version_add(v->store, p->vault, &ver, &err)) != ATR_OK) {
            rc = internal(req, resp, rc, &err);
        }
        atr_vault_version_cleanup(&last);
        last = ver;
    }
    const char *policy = json_string_value(json_object_get(doc, "policy"));
    if (rc == ATR_OK && policy != NULL &&
        (rc = atr_vault_store_key_set_policy(v->store, p->vault, name, policy, now_s(v), &err)) !=
            ATR_OK)
        rc = internal(req, resp, rc, &err);
    if (rc != ATR_OK && last.name[0] != '\0' &&
        atr_vault_store_key_purge(v->store, p->vault, name, &err) != ATR_OK)
        atr_log(ATR_LOG_ERROR, "vault.restore", atr_http_req_id(req),
                "cannot undo a failed restore: %s", atr_err_msg(&err));
    pthread_mutex_unlock(&v->write_lock);
    if (rc == ATR_OK) {
        atr_log_fields(ATR_LOG_INFO, "vault.key.restore", atr_http_req_id(req), "key restored",
                       "vault", "s", p->vault, "key", "s", name, NULL);
        rc = atr_http_resp_json(resp, 200, bundle_json(p, &last));
    }
    atr_vault_version_cleanup(&last);
done:
    json_decref(doc);
    atr_buf_cleanup(&raw);
    atr_wipe(plain.ptr, plain.len);
    atr_buf_cleanup(&plain);
    json_decref(body);
    return rc;
}

/* ------------------------------------------------------------ cryptographic operations */

struct op_info {
    const char *path; /* the URL's last segment */
    const char *name; /* Azure's operation name */
    unsigned op;      /* key_ops bit */
    unsigned perm;    /* access policy permission */
};

static const struct op_info op_table[] = {
    {"wrapkey", "wrapKey", ATR_VAULT_OP_WRAP, ATR_VAULT_PERM_WRAP},
    {"unwrapkey", "unwrapKey", ATR_VAULT_OP_UNWRAP, ATR_VAULT_PERM_UNWRAP},
    {"encrypt", "encrypt", ATR_VAULT_OP_ENCRYPT, ATR_VAULT_PERM_ENCRYPT},
    {"decrypt", "decrypt", ATR_VAULT_OP_DECRYPT, ATR_VAULT_PERM_DECRYPT},
    {"sign", "sign", ATR_VAULT_OP_SIGN, ATR_VAULT_PERM_SIGN},
    {"verify", "verify", ATR_VAULT_OP_VERIFY, ATR_VAULT_PERM_VERIFY},
};

static const struct op_info *op_lookup(const char *path)
{
    for (size_t i = 0; path != NULL && i < sizeof(op_table) / sizeof(op_table[0]); i++) {
        if (strcmp(op_table[i].path, path) == 0)
            return &op_table[i];
    }
    return NULL;
}

/* Checks enabled, nbf/exp and key_ops; answers Azure's refusal. */
static atr_status usable(const struct atr_vault *v, const struct atr_vault_version *ver,
                         const struct op_info *oi, struct atr_http_resp *resp)
{
    int64_t now = now_s(v);
    if (!ver->enabled)
        return kv_error(resp, 403, "Forbidden", "KeyDisabled",
                        "Operation %s is not allowed on a disabled key.", oi->name);
    if (ver->nbf != 0 && now < ver->nbf)
        return kv_error(resp, 403, "Forbidden", "KeyNotYetValid",
                        "Operation %s is not allowed on a key that is not yet valid (nbf %lld).",
                        oi->name, (long long)ver->nbf);
    if (ver->exp != 0 && now >= ver->exp)
        return kv_error(resp, 403, "Forbidden", "KeyExpired",
                        "Operation %s is not allowed on an expired key (exp %lld).", oi->name,
                        (long long)ver->exp);
    if ((ver->ops & oi->op) == 0)
        return kv_error(resp, 403, "Forbidden", "OperationNotAllowed",
                        "Operation %s is not permitted for this key (not in key_ops).", oi->name);
    return ATR_OK;
}

/* Signs a digest with an RSA (RS*, PS*) or EC (ES*) key; 400 for a wrong algorithm or digest. */
static atr_status sign_op(struct atr_buf *out, const struct vkey *key, const char *alg,
                          struct atr_span digest, struct atr_http_resp *resp, struct atr_err *err)
{
    if (key->ec != NULL) {
        atr_ec_alg ea;
        if (atr_ec_alg_from_name(&ea, alg, NULL) != ATR_OK ||
            atr_ec_alg_curve(ea) != atr_ec_key_curve(key->ec))
            return bad_param(resp, "Invalid algorithm '%.32s' for this EC key.", alg);
        if (digest.len != atr_ec_alg_digest_len(ea))
            return bad_param(resp, "The digest length does not match the algorithm %s.", alg);
        return atr_ec_sign_digest(out, key->ec, ea, digest, err);
    }
    atr_sig_alg sa;
    if (atr_sig_alg_from_name(&sa, alg, NULL) != ATR_OK)
        return bad_param(resp, "Invalid algorithm '%.32s' for an RSA key.", alg);
    if (digest.len != atr_sig_alg_digest_len(sa))
        return bad_param(resp, "The digest length does not match the algorithm %s.", alg);
    return atr_sig_sign_digest(out, key->rsa, sa, digest, err);
}

/* Verifies @p sig over @p digest; *valid = 0 for a bad signature (not an error). */
static atr_status verify_op(int *valid, const struct vkey *key, const char *alg,
                            struct atr_span digest, struct atr_span sig, struct atr_http_resp *resp,
                            struct atr_err *err)
{
    atr_status vr;
    *valid = 0;
    if (key->ec != NULL) {
        atr_ec_alg ea;
        if (atr_ec_alg_from_name(&ea, alg, NULL) != ATR_OK ||
            atr_ec_alg_curve(ea) != atr_ec_key_curve(key->ec))
            return bad_param(resp, "Invalid algorithm '%.32s' for this EC key.", alg);
        if (digest.len != atr_ec_alg_digest_len(ea))
            return bad_param(resp, "The digest length does not match the algorithm %s.", alg);
        vr = atr_ec_verify_digest(key->ec, ea, digest, sig, err);
    } else {
        atr_sig_alg sa;
        if (atr_sig_alg_from_name(&sa, alg, NULL) != ATR_OK)
            return bad_param(resp, "Invalid algorithm '%.32s' for an RSA key.", alg);
        if (digest.len != atr_sig_alg_digest_len(sa))
            return bad_param(resp, "The digest length does not match the algorithm %s.", alg);
        vr = atr_sig_verify_digest(key->rsa, sa, digest, sig, err);
    }
    if (vr == ATR_E_AUTH_FAILED)
        return ATR_OK;
    *valid = vr == ATR_OK;
    return vr;
}

static atr_status h_key_op(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    struct principal *p = who(req);
    const struct op_info *oi = op_lookup(atr_http_req_param(req, "op"));
    if (oi == NULL)
        return kv_error(resp, 404, "NotFound", NULL, "Unknown key operation.");
    const char *name = atr_http_req_param(req, "name");
    const char *version = atr_http_req_param(req, "version");
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    struct atr_vault_version ver;
    memset(&ver, 0, sizeof(ver));
    struct cached_key *ck = NULL;
    struct atr_buf in, out;
    atr_buf_init(&in, 8192);
    atr_buf_init(&out, 8192);
    struct atr_secret plain;
    memset(&plain, 0, sizeof(plain));
    struct atr_err err;
    atr_err_clear(&err);
    json_t *answer = NULL;
    atr_status rc = live_version(&ver, v, p, name, version, 1, resp);
    if (rc != ATR_OK)
        goto done;
    if (kty_is_ec(ver.kty) && oi->op != ATR_VAULT_OP_SIGN && oi->op != ATR_VAULT_OP_VERIFY) {
        rc = bad_param(resp, "Key type %s does not support the %s operation: it needs an RSA key.",
                       ver.kty, oi->name);
        goto done;
    }
    if ((rc = usable(v, &ver, oi, resp)) != ATR_OK)
        goto done;
    const char *alg = json_string_value(json_object_get(body, "alg"));
    const char *value = json_string_value(json_object_get(body, "value"));
    if (alg == NULL || value == NULL) {
        rc = bad_param(resp, "The request needs \"alg\" and \"value\".");
        goto done;
    }
    if (atr_b64url_decode(&in, value, strlen(value), NULL) != ATR_OK) {
        rc = bad_param(resp, "\"value\" is not base64url.");
        goto done;
    }
    if ((rc = key_load(&ck, v, p->vault, &ver, &err)) != ATR_OK) {
        rc = internal(req, resp, rc, &err);
        goto done;
    }
    char kid[512];
    kid_of(kid, sizeof(kid), p, ver.name, ver.version);
    if (oi->op == ATR_VAULT_OP_VERIFY) {
        const char *digest = json_string_value(json_object_get(body, "digest"));
        struct atr_buf dg;
        atr_buf_init(&dg, 128);
        /* Azure's verify: "digest" is the digest and "value" the signature */
        if (digest == NULL || atr_b64url_decode(&dg, digest, strlen(digest), NULL) != ATR_OK) {
            atr_buf_cleanup(&dg);
            rc = bad_param(resp, "verify needs \"digest\" and \"value\" (the signature).");
            goto done;
        }
        int valid = 0;
        rc = verify_op(&valid, &ck->key, alg, atr_buf_span(&dg), atr_buf_span(&in), resp, &err);
        atr_buf_cleanup(&dg);
        if (rc == ATR_E_CRYPTO || rc == ATR_E_NOMEM)
            rc = internal(req, resp, rc, &err);
        if (rc != ATR_OK)
            goto done;
        answer = json_pack("{s:b}", "value", valid);
        goto send;
    }
    if (oi->op == ATR_VAULT_OP_SIGN) {
        rc = sign_op(&out, &ck->key, alg, atr_buf_span(&in), resp, &err);
        if (rc == ATR_E_CRYPTO || rc == ATR_E_NOMEM)
            rc = internal(req, resp, rc, &err);
        if (rc != ATR_OK)
            goto done;
    } else {
        atr_rsa_alg ra;
        if (atr_rsa_alg_from_name(&ra, alg, NULL) != ATR_OK) {
            rc = bad_param(resp, "Invalid algorithm '%.32s' for an RSA key.", alg);
            goto done;
        }
        if (oi->op == ATR_VAULT_OP_WRAP || oi->op == ATR_VAULT_OP_ENCRYPT) {
            rc = atr_rsa_wrap(&out, ck->key.rsa, ra, atr_buf_span(&in), &err);
            if (rc == ATR_E_INVALID) {
                rc = bad_param(resp, "The value is empty or too long for the key and algorithm.");
                goto done;
            }
        } else {
            rc = atr_rsa_unwrap(&plain, ck->key.rsa, ra, atr_buf_span(&in), &err);
            if (rc == ATR_E_AUTH_FAILED || rc == ATR_E_INVALID) {
                rc = bad_param(resp, "Decryption failed: the value does not decrypt with this "
                                     "key and algorithm.");
                goto done;
            }
            if (rc == ATR_OK)
                rc = atr_buf_append(&out, atr_secret_cdata(&plain), atr_secret_len(&plain));
        }
    }
    if (rc != ATR_OK) {
        rc = internal(req, resp, rc, &err);
        goto done;
    }
    char *b64 = NULL;
    if ((rc = atr_b64url_encode_str(&b64, atr_buf_span(&out))) != ATR_OK)
        goto done;
    answer = json_pack("{s:s,s:s}", "kid", kid, "value", b64);
    atr_wipe(b64, strlen(b64));
    atr_free(b64);
send:
    atr_log_fields(ATR_LOG_DEBUG, "vault.key.op", atr_http_req_id(req), "key operation", "vault",
                   "s", p->vault, "key", "s", ver.name, "version", "s", ver.version, "op", "s",
                   oi->name, "alg", "s", alg, NULL);
    rc = atr_http_resp_json(resp, 200, answer);
done:
    cached_release(v, ck);
    atr_secret_cleanup(&plain);
    atr_wipe(out.ptr, out.len);
    atr_buf_cleanup(&out);
    atr_buf_cleanup(&in);
    atr_vault_version_cleanup(&ver);
    json_decref(body);
    return rc;
}

static atr_status h_rng(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    json_t *c = json_object_get(body, "count");
    json_int_t n = json_integer_value(c);
    int is_int = json_is_integer(c);
    json_decref(body);
    if (!is_int || n < 1 || n > 128)
        return bad_param(resp, "count must be an integer from 1 to 128.");
    uint8_t raw[128];
    ATR_TRY(atr_rand_bytes(raw, (size_t)n, NULL));
    char *b64 = NULL;
    ATR_TRY(atr_b64url_encode_str(&b64, atr_span_of(raw, (size_t)n)));
    atr_status rc = atr_http_resp_json(resp, 200, json_pack("{s:s}", "value", b64));
    atr_free(b64);
    return rc;
}

/* ------------------------------------------------------------ management */

static atr_status settings_load(struct atr_vault_settings *out, struct atr_vault *v,
                                const char *name, struct atr_err *err)
{
    char *text = NULL;
    ATR_TRY(atr_vault_store_vault_get(&text, v->store, name, err));
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    atr_free(text);
    if (doc == NULL)
        return atr_err_set(err, ATR_E_IO, "vault '%s': stored settings do not parse", name);
    atr_vault_settings_defaults(out);
    atr_status rc = atr_vault_settings_parse(out, doc, err);
    json_decref(doc);
    return rc;
}

static atr_status settings_save(struct atr_vault *v, const char *name,
                                const struct atr_vault_settings *s, struct atr_err *err)
{
    json_t *doc = NULL;
    ATR_TRY(atr_vault_settings_to_json(&doc, s));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return ATR_E_NOMEM;
    atr_status rc = atr_vault_store_vault_put(v->store, name, text, now_s(v), err);
    atr_free(text);
    return rc;
}

static json_t *vault_doc(const struct atr_vault *v, const char *name,
                         const struct atr_vault_settings *s)
{
    json_t *doc = NULL;
    if (atr_vault_settings_to_json(&doc, s) != ATR_OK)
        return NULL;
    char uri[512];
    snprintf(uri, sizeof(uri), "https://%s.%s", name, v->dns_suffix);
    json_object_set_new(doc, "name", json_string(name));
    json_object_set_new(doc, "vaultUri", json_string(uri));
    return doc;
}

static atr_status admin_vault_name(const char **out, struct atr_http_req *req,
                                   struct atr_http_resp *resp)
{
    *out = atr_http_req_param(req, "vault");
    if (!atr_vault_name_ok(*out))
        return bad_param(resp, "A vault name is 3-24 characters of 0-9, a-z, A-Z and '-', "
                               "starting with a letter.");
    return ATR_OK;
}

static atr_status h_vaults_list(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    char **names = NULL;
    size_t n = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_vault_store_vault_list(&names, &n, v->store, 1000, &err);
    if (rc != ATR_OK)
        return internal(req, resp, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        struct atr_vault_settings *s = atr_malloc(sizeof(*s));
        if (s != NULL && settings_load(s, v, names[i], &err) == ATR_OK)
            json_array_append_new(arr, vault_doc(v, names[i], s));
        atr_free(s);
    }
    atr_vault_store_names_free(names, n);
    return atr_http_resp_json(resp, 200, json_pack("{s:o}", "value", arr));
}

static atr_status h_vault_get(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    const char *name;
    ATR_TRY(admin_vault_name(&name, req, resp));
    struct atr_vault_settings *s = atr_malloc(sizeof(*s));
    if (s == NULL)
        return ATR_E_NOMEM;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = settings_load(s, v, name, &err);
    if (rc == ATR_E_NOT_FOUND)
        rc = kv_error(resp, 404, "VaultNotFound", NULL, "The vault '%s' does not exist.", name);
    else if (rc != ATR_OK)
        rc = internal(req, resp, rc, &err);
    else
        rc = atr_http_resp_json(resp, 200, vault_doc(v, name, s));
    atr_free(s);
    return rc;
}

/*
 * The shared body of every settings change: loads the vault (or defaults
 * when @p create_ok and it does not exist), lets @p apply change a copy,
 * checks the update rules, stores it and answers the new document.
 */
typedef atr_status (*settings_apply_fn)(struct atr_vault_settings *s, const json_t *body,
                                        struct atr_http_req *req, struct atr_http_resp *resp);

static atr_status settings_change(struct atr_http_req *req, struct atr_http_resp *resp,
                                  struct atr_vault *v, int create_ok, settings_apply_fn apply)
{
    const char *name;
    ATR_TRY(admin_vault_name(&name, req, resp));
    json_t *body = NULL;
    if (strcmp(atr_http_req_method(req), "DELETE") == 0 && atr_http_req_body(req).len == 0) {
        if ((body = json_object()) == NULL)
            return ATR_E_NOMEM;
    } else {
        ATR_TRY(body_json(&body, req, resp));
    }
    struct atr_vault_settings *old = atr_malloc(sizeof(*old));
    struct atr_vault_settings *next = atr_malloc(sizeof(*next));
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = ATR_OK;
    unsigned status = 200;
    if (old == NULL || next == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    pthread_mutex_lock(&v->write_lock);
    rc = settings_load(old, v, name, &err);
    if (rc == ATR_E_NOT_FOUND && create_ok) {
        atr_vault_settings_defaults(old);
        status = 201;
        rc = ATR_OK;
    } else if (rc == ATR_E_NOT_FOUND) {
        rc = kv_error(resp, 404, "VaultNotFound", NULL, "The vault '%s' does not exist.", name);
    } else if (rc != ATR_OK) {
        rc = internal(req, resp, rc, &err);
    }
    if (rc == ATR_OK) {
        *next = *old;
        rc = apply(next, body, req, resp);
    }
    if (rc == ATR_OK && status == 200 && atr_vault_settings_check_update(old, next, &err) != ATR_OK)
        rc = kv_error(resp, 409, "Conflict", NULL, "%s", atr_err_msg(&err));
    if (rc == ATR_OK && (rc = settings_save(v, name, next, &err)) != ATR_OK)
        rc = internal(req, resp, rc, &err);
    pthread_mutex_unlock(&v->write_lock);
    if (rc == ATR_OK) {
        atr_log_fields(ATR_LOG_INFO, "vault.settings", atr_http_req_id(req),
                       "vault settings changed", "vault", "s", name, "route", "s",
                       atr_http_req_route(req)->pattern, "purge_protection", "b",
                       next->purge_protection, "policies", "i", (long long)next->npolicies,
                       "firewall_deny", "b", next->acl_deny, NULL);
        rc = atr_http_resp_json(resp, status, vault_doc(v, name, next));
    }
done:
    atr_free(old);
    atr_free(next);
    json_decref(body);
    return rc;
}

static atr_status apply_all(struct atr_vault_settings *s, const json_t *body,
                            struct atr_http_req *req, struct atr_http_resp *resp)
{
    (void)req;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_vault_settings_parse(s, body, &err) != ATR_OK)
        return bad_param(resp, "%s", atr_err_msg(&err));
    return ATR_OK;
}

static atr_status apply_acls(struct atr_vault_settings *s, const json_t *body,
                             struct atr_http_req *req, struct atr_http_resp *resp)
{
    (void)req;
    json_t *wrap = json_pack("{s:O}", "networkAcls", body);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = wrap == NULL ? ATR_E_NOMEM : atr_vault_settings_parse(s, wrap, &err);
    json_decref(wrap);
    if (rc == ATR_E_INVALID)
        return bad_param(resp, "%s", atr_err_msg(&err));
    return rc;
}

/* Replaces (or with an empty permission list removes) the policy of one object. */
static atr_status apply_policy(struct atr_vault_settings *s, const json_t *body,
                               struct atr_http_req *req, struct atr_http_resp *resp)
{
    const char *oid = atr_http_req_param(req, "objectId");
    int remove = strcmp(atr_http_req_method(req), "DELETE") == 0;
    json_t *doc = remove ? NULL : json_deep_copy(body);
    if (!remove) {
        if (doc == NULL)
            return ATR_E_NOMEM;
        json_object_set_new(doc, "objectId", json_string(oid));
        if (json_object_get(doc, "tenantId") == NULL)
            json_object_set_new(doc, "tenantId", json_string(s->directory_id));
    }
    struct atr_vault_settings *tmp = atr_malloc(sizeof(*tmp));
    json_t *wrap = remove ? json_pack("{s:[]}", "accessPolicies")
                          : json_pack("{s:[O]}", "accessPolicies", doc);
    json_decref(doc);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = tmp == NULL || wrap == NULL ? ATR_E_NOMEM : ATR_OK;
    if (rc == ATR_OK) {
        *tmp = *s;
        rc = atr_vault_settings_parse(tmp, wrap, &err);
        if (rc == ATR_E_INVALID)
            rc = bad_param(resp, "%s", atr_err_msg(&err));
    }
    if (rc == ATR_OK) {
        const struct atr_vault_access_policy *np = remove ? NULL : &tmp->policies[0];
        size_t kept = 0, removed = 0;
        for (size_t i = 0; i < s->npolicies; i++) {
            const struct atr_vault_access_policy *p = &s->policies[i];
            int same = strcasecmp(p->object_id, oid) == 0 &&
                       (np == NULL || (strcasecmp(p->tenant_id, np->tenant_id) == 0 &&
                                       strcasecmp(p->application_id, np->application_id) == 0));
            if (same) {
                removed++;
                continue;
            }
            s->policies[kept++] = *p;
        }
        s->npolicies = kept;
        if (remove && removed == 0)
            rc = kv_error(resp, 404, "NotFound", NULL, "No access policy for object %s.", oid);
        else if (!remove && s->npolicies == ATR_VAULT_MAX_POLICIES)
            rc = bad_param(resp, "The vault has the maximum number of access policies.");
        else if (!remove)
            s->policies[s->npolicies++] = *np;
    }
    json_decref(wrap);
    atr_free(tmp);
    return rc;
}

static atr_status h_vault_put(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    return settings_change(req, resp, ctx, 1, apply_all);
}

static atr_status h_acl_put(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    return settings_change(req, resp, ctx, 0, apply_acls);
}

static atr_status h_policy_set(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    return settings_change(req, resp, ctx, 0, apply_policy);
}

static atr_status h_faults(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    if (!v->test_mode)
        return kv_error(resp, 404, "NotFound", NULL, "Fault injection needs --test-mode.");
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    json_int_t lat = json_integer_value(json_object_get(body, "latencyMs"));
    double rate = json_number_value(json_object_get(body, "errorRate"));
    json_int_t st = json_integer_value(json_object_get(body, "errorStatus"));
    json_int_t refuse = json_integer_value(json_object_get(body, "refuseConnectionsSeconds"));
    json_decref(body);
    if (lat < 0 || lat > 30000 || rate < 0 || rate > 1 || (st != 0 && (st < 400 || st > 599)) ||
        refuse < 0 || refuse > 3600)
        return bad_param(resp, "latencyMs 0..30000, errorRate 0..1, errorStatus 400..599, "
                               "refuseConnectionsSeconds 0..3600");
    pthread_mutex_lock(&v->lock);
    v->fault_latency_ms = (unsigned)lat;
    v->fault_error_permille = (unsigned)(rate * 1000.0 + 0.5);
    v->fault_error_status = st != 0 ? (unsigned)st : 503;
    v->fault_refuse_until = refuse > 0 ? atr_clock_mono_ms(atr_clock_real()) + refuse * 1000 : 0;
    pthread_mutex_unlock(&v->lock);
    atr_log_fields(ATR_LOG_WARN, "vault.faults", atr_http_req_id(req), "fault injection set",
                   "latency_ms", "i", (long long)lat, "error_permille", "i",
                   (long long)(rate * 1000.0), "error_status", "i", (long long)st, "refuse_s", "i",
                   (long long)refuse, NULL);
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:I,s:f,s:I,s:I}", "latencyMs", lat, "errorRate", rate,
                                        "errorStatus", st != 0 ? st : 503,
                                        "refuseConnectionsSeconds", refuse));
}

static atr_status h_clock(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_vault *v = ctx;
    if (!v->test_mode || !v->own_tclock)
        return kv_error(resp, 404, "NotFound", NULL, "The clock can be moved only in test mode.");
    json_t *body = NULL;
    ATR_TRY(body_json(&body, req, resp));
    json_t *adv = json_object_get(body, "advanceSeconds");
    json_int_t s = json_integer_value(adv);
    int is_int = json_is_integer(adv);
    json_decref(body);
    if (!is_int || s < 0 || s > (json_int_t)3650 * 86400)
        return bad_param(resp, "advanceSeconds must be an integer from 0 to 315360000.");
    atr_test_clock_advance(&v->tclock, (int64_t)s * 1000);
    unsigned rotated = 0, purged = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_vault_tick(v, &rotated, &purged, &err);
    if (rc != ATR_OK)
        return internal(req, resp, rc, &err);
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:I,s:I,s:I}", "now", (json_int_t)now_s(v), "rotated",
                                        (json_int_t)rotated, "purged", (json_int_t)purged));
}

/* ------------------------------------------------------------ auth hook */

/* Splits the Host header into the vault name and the base URL. */
static int resolve_host(struct principal *p, const struct atr_vault *v, const char *host)
{
    if (host == NULL || host[0] == '\0' || strlen(host) > HOST_MAX)
        host = "localhost";
    for (const char *c = host; *c != '\0'; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr(".-:[]", *c) != NULL))
            return 0;
    }
    snprintf(p->base, sizeof(p->base), "https://%s", host);
    char h[HOST_MAX + 1];
    snprintf(h, sizeof(h), "%s", host);
    if (h[0] != '[') {
        char *colon = strrchr(h, ':');
        if (colon != NULL)
            *colon = '\0';
    }
    size_t hl = strlen(h), sl = strlen(v->dns_suffix);
    if (hl > sl + 1 && h[hl - sl - 1] == '.' && strcasecmp(h + hl - sl, v->dns_suffix) == 0) {
        h[hl - sl - 1] = '\0';
        if (strchr(h, '.') != NULL || !atr_vault_name_ok(h))
            return 0;
        for (char *c = h; *c != '\0'; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        snprintf(p->vault, sizeof(p->vault), "%.24s", h);
        return 1;
    }
    if (v->default_vault[0] == '\0')
        return 0;
    snprintf(p->vault, sizeof(p->vault), "%s", v->default_vault);
    return 1;
}

/* 7.0 .. 7.5 with optional "-preview[.N]". */
static int api_version_ok(const char *s)
{
    if (s == NULL || strlen(s) > 20 || s[0] != '7' || s[1] != '.' || s[2] < '0' || s[2] > '5')
        return 0;
    const char *rest = s + 3;
    if (*rest == '\0')
        return 1;
    if (strncmp(rest, "-preview", 8) != 0)
        return 0;
    rest += 8;
    if (*rest == '\0')
        return 1;
    if (*rest++ != '.' || *rest == '\0')
        return 0;
    for (; *rest != '\0'; rest++) {
        if (*rest < '0' || *rest > '9')
            return 0;
    }
    return 1;
}

static atr_status challenge(struct atr_http_resp *resp, const struct atr_vault *v,
                            const struct principal *p, const char *fmt, ...) ATR_PRINTF(4, 5);

static atr_status challenge(struct atr_http_resp *resp, const struct atr_vault *v,
                            const struct principal *p, const char *fmt, ...)
{
    char hdr[ATR_VAULT_AUTHORITY_MAX + 200];
    snprintf(hdr, sizeof(hdr), "Bearer authorization=\"%s/%s\", resource=\"%s\"", v->authority,
             p->settings.directory_id, ATR_VAULT_AUDIENCE);
    ATR_TRY(atr_http_resp_header(resp, "WWW-Authenticate", hdr));
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return kv_error(resp, 401, "Unauthorized", NULL, "%s", msg);
}

static uint64_t fault_rand(struct atr_vault *v)
{
    /* xorshift for fault decisions only (not security relevant); under v->lock */
    uint64_t x = v->fault_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v->fault_rng = x;
    return x;
}

/* Counts one call against the vault's window; 0 = over the limit (*retry_s set). */
static int throttle_admit(struct atr_vault *v, const struct principal *p, int create,
                          unsigned *retry_s)
{
    int64_t now = atr_clock_mono_ms(atr_clock_real());
    int ok = 1;
    pthread_mutex_lock(&v->lock);
    struct throttle *t = v->throttles;
    while (t != NULL && strcmp(t->vault, p->vault) != 0)
        t = t->next;
    if (t == NULL && (t = atr_calloc(1, sizeof(*t))) != NULL) {
        snprintf(t->vault, sizeof(t->vault), "%s", p->vault);
        t->window_start = now;
        t->next = v->throttles;
        v->throttles = t;
    }
    if (t != NULL) {
        if (now - t->window_start >= ATR_VAULT_LIMIT_WINDOW_S * 1000) {
            t->window_start = now;
            t->ops = t->creates = 0;
        }
        if (create ? t->creates >= p->settings.limit_create : t->ops >= p->settings.limit_ops) {
            ok = 0;
            int64_t left = t->window_start + ATR_VAULT_LIMIT_WINDOW_S * 1000 - now;
            *retry_s = (unsigned)((left + 999) / 1000);
            if (*retry_s == 0)
                *retry_s = 1;
        } else if (create) {
            t->creates++;
        } else {
            t->ops++;
        }
    }
    pthread_mutex_unlock(&v->lock);
    return ok;
}

static void log_decision(struct atr_http_req *req, const struct principal *p, const char *perm,
                         const char *decision, const char *reason)
{
    atr_log_fields(ATR_LOG_INFO, "vault.authz", atr_http_req_id(req), decision, "vault", "s",
                   p->vault, "oid", "s", p->oid, "appid", "s", p->appid, "tid", "s", p->tid,
                   "permission", "s", perm != NULL ? perm : "-", "client", "s",
                   atr_http_req_client_ip(req), "reason", "s", reason, NULL);
}

static atr_status auth_admin(struct atr_vault *v, struct atr_http_req *req,
                             struct atr_http_resp *resp)
{
    const char *h = atr_http_req_header(req, "Authorization");
    const char *token = h != NULL && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    if (!atr_digest_check_matches(&v->admin, token)) {
        ATR_TRY(atr_http_resp_header(resp, "WWW-Authenticate", "Bearer realm=\"atrest-vault\""));
        atr_log_fields(ATR_LOG_WARN, "vault.authz", atr_http_req_id(req), "denied", "route", "s",
                       atr_http_req_route(req)->pattern, "reason", "s",
                       "admin secret missing or wrong", NULL);
        return kv_error(resp, 401, "Unauthorized", NULL,
                        "The management API needs the admin bootstrap secret "
                        "(Authorization: Bearer).");
    }
    struct principal *p = atr_calloc(1, sizeof(*p));
    if (p == NULL)
        return ATR_E_NOMEM;
    p->admin = 1;
    atr_http_req_set_principal(req, p, atr_free);
    return ATR_OK;
}

atr_status atr_vault_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                          const struct atr_route *route, void *auth_ctx)
{
    struct atr_vault *v = auth_ctx;
    if (route->role != NULL && strcmp(route->role, "admin") == 0)
        return auth_admin(v, req, resp);

    struct principal *p = atr_calloc(1, sizeof(*p));
    if (p == NULL)
        return ATR_E_NOMEM;
    atr_http_req_set_principal(req, p, atr_free);
    if (!resolve_host(p, v, atr_http_req_header(req, "Host")))
        return kv_error(resp, 404, "VaultNotFound", NULL,
                        "No vault answers this host name (expected {vault}.%s).", v->dns_suffix);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = settings_load(&p->settings, v, p->vault, &err);
    if (rc == ATR_E_NOT_FOUND)
        return kv_error(resp, 404, "VaultNotFound", NULL, "The vault '%s' does not exist.",
                        p->vault);
    if (rc != ATR_OK)
        return internal(req, resp, rc, &err);
    const char *api = atr_http_req_query(req, "api-version");
    if (api == NULL)
        return bad_param(resp, "The 'api-version' query parameter is missing.");
    if (!api_version_ok(api))
        return bad_param(resp,
                         "The specified api-version (%.24s) is not recognized. Consider using "
                         "the latest supported version (7.5).",
                         api);
    snprintf(p->api_version, sizeof(p->api_version), "%s", api);

    /* authentication */
    const char *h = atr_http_req_header(req, "Authorization");
    const char *token = h != NULL && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    if (token == NULL || token[0] == '\0') {
        log_decision(req, p, NULL, "challenge", "no bearer token");
        return challenge(resp, v, p, "AKV10000: Request is missing a Bearer or PoP token.");
    }
    if (v->tokval == NULL)
        return challenge(resp, v, p, "AKV10046: No identity server is configured.");
    struct atr_jwt_claims c;
    memset(&c, 0, sizeof(c));
    rc = atr_tokval_verify(&c, v->tokval, token, &err);
    if (rc != ATR_OK) {
        log_decision(req, p, NULL, "denied", atr_err_msg(&err));
        if (rc == ATR_E_UNAVAILABLE)
            return kv_error(resp, 503, "ServiceUnavailable", NULL,
                            "The token's signing keys could not be fetched; retry later.");
        if (strstr(atr_err_msg(&err), "audience") != NULL)
            return challenge(resp, v, p, "AKV10022: Invalid audience. Expected %s.",
                             ATR_VAULT_AUDIENCE);
        if (strstr(atr_err_msg(&err), "expired") != NULL)
            return challenge(resp, v, p, "AKV10013: The access token has expired.");
        return challenge(resp, v, p, "AKV10046: Token validation failed.");
    }
    int tenant_ok = c.tid != NULL && strcasecmp(c.tid, p->settings.directory_id) == 0;
    if (c.oid != NULL)
        snprintf(p->oid, sizeof(p->oid), "%s", c.oid);
    if (c.appid != NULL)
        snprintf(p->appid, sizeof(p->appid), "%s", c.appid);
    if (c.tid != NULL)
        snprintf(p->tid, sizeof(p->tid), "%s", c.tid);
    atr_jwt_claims_cleanup(&c);
    if (!tenant_ok) {
        log_decision(req, p, NULL, "denied", "token of another directory");
        return challenge(resp, v, p,
                         "AKV10032: Invalid issuer. Expected one of %s/%s/v2.0, found a token "
                         "of directory %s.",
                         v->authority, p->settings.directory_id, p->tid);
    }
    if (p->oid[0] == '\0') {
        log_decision(req, p, NULL, "denied", "token without oid");
        return challenge(resp, v, p, "AKV10046: The token has no object id (oid).");
    }

    /* firewall */
    int trusted = 0;
    for (size_t i = 0; i < v->ntrusted; i++)
        trusted |= strcasecmp(v->trusted[i], p->appid) == 0;
    const char *ip = atr_http_req_client_ip(req);
    if (!atr_vault_firewall_admits(&p->settings, ip, trusted)) {
        log_decision(req, p, NULL, "denied", "firewall");
        return kv_error(resp, 403, "Forbidden", "ForbiddenByFirewall",
                        "Client address is not authorized and caller is not a trusted service. "
                        "Client address: %s Caller: appid=%s;oid=%s Vault: %s",
                        ip, p->appid, p->oid, p->vault);
    }

    /* access policy */
    const char *perm_name = route->role;
    unsigned need = 0;
    if (perm_name != NULL && strcmp(perm_name, "op") == 0) {
        const struct op_info *oi = op_lookup(atr_http_req_param(req, "op"));
        if (oi == NULL)
            return kv_error(resp, 404, "NotFound", NULL, "Unknown key operation.");
        need = oi->perm;
        perm_name = atr_vault_perm_name(need);
    } else if (perm_name != NULL && atr_vault_perm_parse(&need, perm_name, NULL) != ATR_OK) {
        return internal(req, resp, ATR_E_INTERNAL, NULL);
    }
    if (need != 0 && (atr_vault_perms_of(&p->settings, p->tid, p->oid, p->appid) & need) != need) {
        log_decision(req, p, perm_name, "denied", "access policy");
        return kv_error(resp, 403, "Forbidden", "AccessDenied",
                        "The user, group or application 'appid=%s;oid=%s;iss=%s/%s/v2.0' does not "
                        "have keys %s permission on key vault '%s'. For help resolving this "
                        "issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                        p->appid, p->oid, v->authority, p->tid, perm_name, p->vault);
    }

    /* throttling */
    unsigned retry = 0;
    int create = need == ATR_VAULT_PERM_CREATE || need == ATR_VAULT_PERM_IMPORT ||
                 need == ATR_VAULT_PERM_ROTATE;
    if (!throttle_admit(v, p, create, &retry)) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry);
        ATR_TRY(atr_http_resp_header(resp, "Retry-After", ra));
        log_decision(req, p, perm_name, "throttled", "request rate above the vault's limit");
        return kv_error(resp, 429, "Throttled", NULL,
                        "Request was not processed because too many requests were received. "
                        "Reason: A generic throttling limit of the vault '%s' was exceeded "
                        "(%u per %d seconds).",
                        p->vault, create ? p->settings.limit_create : p->settings.limit_ops,
                        ATR_VAULT_LIMIT_WINDOW_S);
    }

    /* injected faults */
    pthread_mutex_lock(&v->lock);
    unsigned latency = v->fault_latency_ms;
    int fail = v->fault_error_permille > 0 && fault_rand(v) % 1000 < v->fault_error_permille;
    unsigned fail_status = v->fault_error_status;
    pthread_mutex_unlock(&v->lock);
    if (latency > 0)
        usleep((useconds_t)latency * 1000u);
    if (fail) {
        log_decision(req, p, perm_name, "fault", "injected error");
        if (fail_status == 429 || fail_status == 503)
            ATR_TRY(atr_http_resp_header(resp, "Retry-After", "1"));
        return kv_error(resp, fail_status, fail_status == 429 ? "Throttled" : "ServiceUnavailable",
                        NULL, "Injected fault (test mode).");
    }
    log_decision(req, p, perm_name, "allowed", "access policy");
    return ATR_OK;
}

int atr_vault_accept(const char *client_ip, void *accept_ctx)
{
    struct atr_vault *v = accept_ctx;
    (void)client_ip;
    pthread_mutex_lock(&v->lock);
    int refuse =
        v->fault_refuse_until != 0 && atr_clock_mono_ms(atr_clock_real()) < v->fault_refuse_until;
    pthread_mutex_unlock(&v->lock);
    return !refuse;
}

/* ------------------------------------------------------------ routes */

#define DATA ATR_ROUTE_AUTH

static const struct atr_route routes[] = {
    {"GET", "/admin/vaults", h_vaults_list, DATA, 0, "admin"},
    {"GET", "/admin/vaults/{vault}", h_vault_get, DATA, 0, "admin"},
    {"PUT", "/admin/vaults/{vault}", h_vault_put, DATA, ADMIN_BODY_MAX, "admin"},
    {"PUT", "/admin/vaults/{vault}/accessPolicies/{objectId}", h_policy_set, DATA, ADMIN_BODY_MAX,
     "admin"},
    {"DELETE", "/admin/vaults/{vault}/accessPolicies/{objectId}", h_policy_set, DATA,
     ADMIN_BODY_MAX, "admin"},
    {"PUT", "/admin/vaults/{vault}/networkAcls", h_acl_put, DATA, ADMIN_BODY_MAX, "admin"},
    {"PUT", "/admin/faults", h_faults, DATA, ADMIN_BODY_MAX, "admin"},
    {"POST", "/admin/clock", h_clock, DATA, ADMIN_BODY_MAX, "admin"},

    {"GET", "/keys", h_list_keys, DATA, 0, "list"},
    {"POST", "/keys/restore", h_restore, DATA, BACKUP_MAX_TEXT * 2, "restore"},
    {"POST", "/keys/{name}/create", h_create, DATA, BODY_MAX, "create"},
    {"POST", "/keys/{name}/rotate", h_rotate, DATA, BODY_MAX, "rotate"},
    {"POST", "/keys/{name}/backup", h_backup, DATA, BODY_MAX, "backup"},
    {"GET", "/keys/{name}/versions", h_versions, DATA, 0, "list"},
    {"GET", "/keys/{name}/rotationpolicy", h_policy_get, DATA, 0, "getrotationpolicy"},
    {"PUT", "/keys/{name}/rotationpolicy", h_policy_put, DATA, BODY_MAX, "setrotationpolicy"},
    {"PUT", "/keys/{name}", h_import, DATA, BODY_MAX, "import"},
    {"DELETE", "/keys/{name}", h_delete, DATA, 0, "delete"},
    {"GET", "/keys/{name}", h_get, DATA, 0, "get"},
    {"PATCH", "/keys/{name}", h_update, DATA, BODY_MAX, "update"},
    {"GET", "/keys/{name}/{version?}", h_get, DATA, 0, "get"},
    {"PATCH", "/keys/{name}/{version?}", h_update, DATA, BODY_MAX, "update"},
    {"POST", "/keys/{name}/{op}", h_key_op, DATA, BODY_MAX, "op"},
    {"POST", "/keys/{name}/{version?}/{op}", h_key_op, DATA, BODY_MAX, "op"},
    {"GET", "/deletedkeys", h_list_deleted, DATA, 0, "list"},
    {"GET", "/deletedkeys/{name}", h_get_deleted, DATA, 0, "get"},
    {"DELETE", "/deletedkeys/{name}", h_purge, DATA, 0, "purge"},
    {"POST", "/deletedkeys/{name}/recover", h_recover, DATA, BODY_MAX, "recover"},
    {"POST", "/rng", h_rng, DATA, BODY_MAX, NULL},
};

const struct atr_route *atr_vault_routes(size_t *out_n)
{
    *out_n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

/* ------------------------------------------------------------ tick */

atr_status atr_vault_tick(struct atr_vault *v, unsigned *out_rotated, unsigned *out_purged,
                          struct atr_err *err)
{
    unsigned rotated = 0, purged = 0;
    atr_status first = ATR_OK;
    struct atr_vault_key_ref *refs = NULL;
    size_t n = 0;
    int64_t now = now_s(v);
    pthread_mutex_lock(&v->write_lock);
    atr_status rc = atr_vault_store_scan(&refs, &n, v->store, 0, now, TICK_BATCH, err);
    if (rc != ATR_OK)
        first = rc;
    for (size_t i = 0; i < n; i++) {
        struct atr_vault_key_meta m;
        struct atr_vault_version cur;
        if (atr_vault_store_key_meta(&m, v->store, refs[i].vault, refs[i].name, NULL) != ATR_OK)
            continue;
        json_t *pol = m.policy != NULL ? json_loads(m.policy, 0, NULL) : NULL;
        struct atr_vault_rotation r;
        int due = 0;
        if (pol != NULL && atr_vault_rotation_parse(&r, pol, NULL) == ATR_OK &&
            atr_vault_store_version_get(&cur, v->store, refs[i].vault, refs[i].name, NULL, 0,
                                        NULL) == ATR_OK) {
            due = atr_vault_rotation_due(&r, cur.created, cur.exp, now);
            atr_vault_version_cleanup(&cur);
        }
        json_decref(pol);
        atr_vault_key_meta_cleanup(&m);
        if (!due)
            continue;
        struct atr_vault_version nv;
        struct atr_err e2;
        atr_err_clear(&e2);
        rc = rotate_locked(&nv, v, refs[i].vault, refs[i].name, &e2);
        if (rc == ATR_OK) {
            rotated++;
            atr_log_fields(ATR_LOG_INFO, "vault.key.rotate", NULL, "key rotated", "vault", "s",
                           refs[i].vault, "key", "s", refs[i].name, "version", "s", nv.version,
                           "trigger", "s", "policy", NULL);
            atr_vault_version_cleanup(&nv);
        } else if (first == ATR_OK) {
            first = atr_err_set(err, rc, "%s", atr_err_msg(&e2));
        }
    }
    atr_free(refs);
    refs = NULL;
    n = 0;
    rc = atr_vault_store_scan(&refs, &n, v->store, 1, now, TICK_BATCH, err);
    if (rc != ATR_OK && first == ATR_OK)
        first = rc;
    for (size_t i = 0; i < n; i++) {
        if (atr_vault_store_key_purge(v->store, refs[i].vault, refs[i].name, NULL) == ATR_OK) {
            purged++;
            cache_forget(v, refs[i].vault, refs[i].name);
            atr_log_fields(ATR_LOG_INFO, "vault.key.purge", NULL, "retention ended; key purged",
                           "vault", "s", refs[i].vault, "key", "s", refs[i].name, NULL);
        }
    }
    pthread_mutex_unlock(&v->write_lock);
    atr_free(refs);
    if (out_rotated != NULL)
        *out_rotated = rotated;
    if (out_purged != NULL)
        *out_purged = purged;
    return first;
}

static void *ticker_main(void *arg)
{
    struct atr_vault *v = arg;
    pthread_mutex_lock(&v->lock);
    while (!v->ticker_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&v->ticker_cond, &v->lock, &ts);
        if (v->ticker_stop)
            break;
        pthread_mutex_unlock(&v->lock);
        struct atr_err err;
        atr_err_clear(&err);
        if (atr_vault_tick(v, NULL, NULL, &err) != ATR_OK)
            atr_log(ATR_LOG_ERROR, "vault.tick", NULL, "%s", atr_err_msg(&err));
        pthread_mutex_lock(&v->lock);
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

atr_status atr_vault_ticker_start(struct atr_vault *v, struct atr_err *err)
{
    if (v->ticker_running)
        return ATR_OK;
    v->ticker_stop = 0;
    if (pthread_create(&v->ticker, NULL, ticker_main, v) != 0)
        return atr_err_set(err, ATR_E_INTERNAL, "vault: cannot start the ticker thread");
    v->ticker_running = 1;
    return ATR_OK;
}

void atr_vault_ticker_stop(struct atr_vault *v)
{
    if (v == NULL || !v->ticker_running)
        return;
    pthread_mutex_lock(&v->lock);
    v->ticker_stop = 1;
    pthread_cond_broadcast(&v->ticker_cond);
    pthread_mutex_unlock(&v->lock);
    pthread_join(v->ticker, NULL);
    v->ticker_running = 0;
}

/* ------------------------------------------------------------ lifecycle */

/* Reads the master key file, creating it (0600, random) when missing. */
static atr_status master_key_load(struct atr_secret *out, const char *path, struct atr_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        uint8_t raw[MASTER_KEY_LEN];
        ATR_TRY(atr_rand_priv_bytes(raw, sizeof(raw), err));
        int wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        int ok =
            wfd >= 0 && write(wfd, raw, sizeof(raw)) == (ssize_t)sizeof(raw) && fsync(wfd) == 0;
        if (wfd >= 0)
            close(wfd);
        atr_wipe(raw, sizeof(raw));
        if (!ok)
            return atr_err_set(err, ATR_E_IO, "vault: cannot create the master key file %s: %s",
                               path, strerror(errno));
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "vault: cannot open the master key file %s: %s", path,
                           strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0 ||
        sb.st_uid != geteuid() || sb.st_size != MASTER_KEY_LEN) {
        close(fd);
        return atr_err_set(err, ATR_E_CONFIG,
                           "vault: the master key file %s must be a regular %d-byte file owned "
                           "by this user with mode 0600",
                           path, MASTER_KEY_LEN);
    }
    atr_status rc = atr_secret_init(out, MASTER_KEY_LEN);
    if (rc == ATR_OK && read(fd, atr_secret_data(out), MASTER_KEY_LEN) != (ssize_t)MASTER_KEY_LEN) {
        atr_secret_cleanup(out);
        rc = atr_err_set(err, ATR_E_IO, "vault: cannot read the master key file %s", path);
    }
    close(fd);
    return rc;
}

atr_status atr_vault_new(struct atr_vault **out, const struct atr_vault_opts *opts,
                         struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && opts != NULL);
    *out = NULL;
    if (opts->db_path == NULL || opts->master_key_path == NULL)
        return atr_err_set(err, ATR_E_CONFIG, "vault: the store and master key paths are required");
    if (opts->admin_secret != NULL && strlen(opts->admin_secret) < 16)
        return atr_err_set(err, ATR_E_CONFIG,
                           "vault: the admin secret needs 16 characters or more");
    if (opts->default_vault != NULL && !atr_vault_name_ok(opts->default_vault))
        return atr_err_set(err, ATR_E_CONFIG, "vault: '%s' is not a valid vault name",
                           opts->default_vault);
    if (opts->ntrusted > ATR_VAULT_MAX_TRUSTED)
        return atr_err_set(err, ATR_E_CONFIG, "vault: at most %d trusted application ids",
                           ATR_VAULT_MAX_TRUSTED);
    if (opts->idp_authority != NULL && (strncmp(opts->idp_authority, "https://", 8) != 0 ||
                                        strlen(opts->idp_authority) >= ATR_VAULT_AUTHORITY_MAX))
        return atr_err_set(err, ATR_E_CONFIG, "vault: the identity authority must be an https URL");
    struct atr_vault *v = atr_calloc(1, sizeof(*v));
    if (v == NULL)
        return ATR_E_NOMEM;
    pthread_mutex_init(&v->lock, NULL);
    pthread_mutex_init(&v->write_lock, NULL);
    pthread_cond_init(&v->ticker_cond, NULL);
    v->test_mode = opts->test_mode;
    v->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    atr_status rc = ATR_OK;
    if (opts->clock == NULL && opts->test_mode) {
        rc = atr_test_clock_init(&v->tclock, atr_clock_now_ms(atr_clock_real()));
        if (rc == ATR_OK) {
            v->own_tclock = 1;
            v->clock = &v->tclock.base;
        }
    }
    snprintf(v->dns_suffix, sizeof(v->dns_suffix), "%s",
             opts->dns_suffix != NULL ? opts->dns_suffix : ATR_VAULT_DNS_SUFFIX);
    if (opts->default_vault != NULL)
        snprintf(v->default_vault, sizeof(v->default_vault), "%s", opts->default_vault);
    for (size_t i = 0; i < opts->ntrusted; i++)
        snprintf(v->trusted[v->ntrusted++], TRUSTED_ID_MAX + 1, "%s", opts->trusted_app_ids[i]);
    if (rc == ATR_OK && !atr_digest_check_set(&v->admin, opts->admin_secret))
        rc = atr_err_set(err, ATR_E_CRYPTO, "vault: cannot hash the admin secret");
    uint8_t seed[8];
    if (rc == ATR_OK)
        rc = atr_rand_bytes(seed, sizeof(seed), err);
    memcpy(&v->fault_rng, seed, sizeof(seed));
    v->fault_rng |= 1;
    v->fault_error_status = 503;
    if (rc == ATR_OK)
        rc = atr_vault_store_open(&v->store, opts->db_path, err);
    struct atr_secret mk, bk;
    memset(&mk, 0, sizeof(mk));
    memset(&bk, 0, sizeof(bk));
    if (rc == ATR_OK)
        rc = master_key_load(&mk, opts->master_key_path, err);
    if (rc == ATR_OK)
        rc = atr_aead_new(&v->master, &mk, err);
    if (rc == ATR_OK)
        rc = atr_kdf_hkdf_sha256(&bk, 32, atr_span_of(atr_secret_cdata(&mk), atr_secret_len(&mk)),
                                 atr_span_of(NULL, 0), atr_span_str(backup_magic), err);
    if (rc == ATR_OK)
        rc = atr_aead_new(&v->backup, &bk, err);
    atr_secret_cleanup(&mk);
    atr_secret_cleanup(&bk);
    /* tokens follow the real clock, whatever the key-lifecycle clock does */
    if (rc == ATR_OK && opts->idp_authority != NULL &&
        (rc = atr_tokval_new(&v->tokval, opts->idp_authority, opts->ca_file, ATR_VAULT_AUDIENCE,
                             NULL, err)) == ATR_OK)
        snprintf(v->authority, sizeof(v->authority), "%s", atr_tokval_authority(v->tokval));
    if (rc != ATR_OK) {
        atr_vault_free(v);
        return rc;
    }
    *out = v;
    return ATR_OK;
}

void atr_vault_free(struct atr_vault *v)
{
    if (v == NULL)
        return;
    atr_vault_ticker_stop(v);
    while (v->cache != NULL) {
        struct cached_key *c = v->cache;
        v->cache = c->next;
        vkey_cleanup(&c->key);
        atr_free(c);
    }
    while (v->throttles != NULL) {
        struct throttle *t = v->throttles;
        v->throttles = t->next;
        atr_free(t);
    }
    atr_tokval_free(v->tokval);
    atr_aead_free(v->master);
    atr_aead_free(v->backup);
    atr_vault_store_close(v->store);
    if (v->own_tclock)
        atr_test_clock_cleanup(&v->tclock);
    atr_digest_check_clear(&v->admin);
    pthread_cond_destroy(&v->ticker_cond);
    pthread_mutex_destroy(&v->write_lock);
    pthread_mutex_destroy(&v->lock);
    atr_free(v);
}
