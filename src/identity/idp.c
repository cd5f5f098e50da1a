/* SPDX-License-Identifier: Apache-2.0 */
#include "identity/idp.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/log.h"
#include "crypto/digest_check.h"
#include "crypto/jwk.h"
#include "crypto/rand.h"
#include "crypto/rsa.h"
#include "crypto/x509.h"
#include "http/json.h"
#include "identity/idp_store.h"
#include "identity/jwt.h"

#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define MAX_KEYS       16
#define RL_SLOTS       1024
#define RL_KEY_MAX     96
#define FORM_MAX       32
#define TOKEN_BODY_MAX ((size_t)64 * 1024)
#define ADMIN_BODY_MAX ((size_t)64 * 1024)
#define SECRET_BYTES   30 /* 40 base64url characters, like Entra's secrets */

struct signing_key {
    char kid[ATR_IDP_KID_MAX + 1];
    struct atr_rsa_key *key;
    int64_t publish_s, active_s, retire_s;
};

struct rl_slot {
    char key[RL_KEY_MAX];
    int64_t window_start_s;
    unsigned failures;
};

struct atr_idp {
    struct atr_idp_store *store;
    const struct atr_clock *clock;
    struct atr_digest_check admin; /* the bootstrap secret's digest; unset = /admin off */
    int64_t lifetime_s;
    char *resources[ATR_IDP_MAX_RESOURCES];
    size_t nresources;
    unsigned rl_max;
    int64_t rl_window_s;
    int64_t rollover_s;
    int64_t retain_s;
    unsigned key_bits;

    pthread_mutex_t lock; /* authority, keys */
    char authority[ATR_IDP_AUTHORITY_MAX];
    struct signing_key keys[MAX_KEYS];
    size_t nkeys;

    pthread_mutex_t rl_lock;
    struct rl_slot rl[RL_SLOTS];
};

/* The principal of an authenticated Graph or admin call. */
struct idp_principal {
    char tid[ATR_IDP_GUID_LEN + 1]; /* empty for admin calls */
    int bootstrap;
};

static const char *const default_resources[] = {
    "https://vault.azure.net",
    ATR_IDP_GRAPH_RESOURCE,
    "api://atrest",
};

/* ------------------------------------------------------------------ keys */

static int64_t now_s(const struct atr_idp *idp)
{
    return atr_clock_now_s(idp->clock);
}

/* RFC 7638 thumbprint of the public key, base64url: the kid. */
static atr_status make_kid(char out[ATR_IDP_KID_MAX + 1], const struct atr_rsa_key *key,
                           struct atr_err *err)
{
    json_t *jwk = NULL;
    char *canon = NULL;
    char *b64 = NULL;
    atr_status rc = atr_jwk_export(&jwk, key, ATR_JWK_PUBLIC, err);
    if (rc != ATR_OK)
        return rc;
    const char *n = json_string_value(json_object_get(jwk, "n"));
    const char *e = json_string_value(json_object_get(jwk, "e"));
    if (n == NULL || e == NULL) {
        rc = atr_err_set(err, ATR_E_CRYPTO, "key export without n or e");
        goto done;
    }
    size_t len = strlen(n) + strlen(e) + 32;
    canon = atr_malloc(len);
    if (canon == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    snprintf(canon, len, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e, n);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        rc = atr_err_set(err, ATR_E_CRYPTO, "SHA-256 failed");
        goto done;
    }
    if ((rc = atr_b64url_encode_str(&b64, atr_span_of(md, 32))) != ATR_OK)
        goto done;
    snprintf(out, ATR_IDP_KID_MAX + 1, "%s", b64);
done:
    atr_free(b64);
    atr_free(canon);
    json_decref(jwk);
    return rc;
}

static void keys_clear(struct atr_idp *idp)
{
    for (size_t i = 0; i < idp->nkeys; i++)
        atr_rsa_key_free(idp->keys[i].key);
    memset(idp->keys, 0, sizeof(idp->keys));
    idp->nkeys = 0;
}

/* Reloads the key cache from the store; called with idp->lock held. */
static atr_status keys_reload(struct atr_idp *idp, struct atr_err *err)
{
    struct atr_idp_key_row *rows = NULL;
    size_t n = 0;
    ATR_TRY(atr_idp_store_key_purge(idp->store, now_s(idp), err));
    ATR_TRY(atr_idp_store_key_list(&rows, &n, idp->store, err));
    keys_clear(idp);
    atr_status rc = ATR_OK;
    for (size_t i = 0; i < n && i < MAX_KEYS; i++) {
        struct signing_key *k = &idp->keys[idp->nkeys];
        const char *pem = (const char *)atr_secret_data(&rows[i].pem);
        if ((rc = atr_rsa_key_parse_pem(&k->key, pem, strlen(pem), err)) != ATR_OK)
            break;
        snprintf(k->kid, sizeof(k->kid), "%s", rows[i].kid);
        k->publish_s = rows[i].publish_s;
        k->active_s = rows[i].active_s;
        k->retire_s = rows[i].retire_s;
        idp->nkeys++;
    }
    atr_idp_key_rows_free(rows, n);
    return rc;
}

static int key_published(const struct signing_key *k, int64_t now)
{
    return k->publish_s <= now && (k->retire_s == 0 || k->retire_s > now);
}

/* The signing key at @p now (newest active, published), or NULL; lock held. */
static const struct signing_key *key_current(const struct atr_idp *idp, int64_t now)
{
    const struct signing_key *best = NULL;
    for (size_t i = 0; i < idp->nkeys; i++) {
        const struct signing_key *k = &idp->keys[i];
        if (k->active_s <= now && key_published(k, now) &&
            (best == NULL || k->active_s >= best->active_s))
            best = k;
    }
    return best;
}

/* Generates a key and stores it (publish, active); no lock needed. */
static atr_status key_create(char out_kid[ATR_IDP_KID_MAX + 1], struct atr_idp *idp,
                             int64_t publish_s, int64_t active_s, struct atr_err *err)
{
    struct atr_rsa_key *key = NULL;
    struct atr_secret pem;
    memset(&pem, 0, sizeof(pem));
    atr_status rc = atr_rsa_key_generate(&key, idp->key_bits, err);
    if (rc != ATR_OK)
        return rc;
    if ((rc = make_kid(out_kid, key, err)) != ATR_OK)
        goto done;
    if ((rc = atr_rsa_key_format_pem_private(&pem, key, err)) != ATR_OK)
        goto done;
    /* the PEM secret is NUL-terminated? copy into a terminated secret */
    struct atr_secret z;
    memset(&z, 0, sizeof(z));
    if ((rc = atr_secret_init(&z, atr_secret_len(&pem) + 1)) != ATR_OK)
        goto done;
    memcpy(atr_secret_data(&z), atr_secret_data(&pem), atr_secret_len(&pem));
    atr_secret_data(&z)[atr_secret_len(&pem)] = 0;
    rc = atr_idp_store_key_add(idp->store, out_kid, (const char *)atr_secret_data(&z), publish_s,
                               active_s, err);
    atr_secret_cleanup(&z);
done:
    atr_secret_cleanup(&pem);
    atr_rsa_key_free(key);
    return rc;
}

atr_status atr_idp_keys_rotate(struct atr_idp *idp, int64_t rollover_s, char *out_kid,
                               struct atr_err *err)
{
    ATR_ASSERT_ARG(idp != NULL);
    if (rollover_s < 0)
        rollover_s = idp->rollover_s;
    int64_t now = now_s(idp);
    char kid[ATR_IDP_KID_MAX + 1];
    ATR_TRY(key_create(kid, idp, now, now + rollover_s, err));
    pthread_mutex_lock(&idp->lock);
    atr_status rc = ATR_OK;
    /* every key active now stops being published retain_s after the switch */
    for (size_t i = 0; i < idp->nkeys && rc == ATR_OK; i++) {
        struct signing_key *k = &idp->keys[i];
        if (k->active_s <= now && k->retire_s == 0)
            rc =
                atr_idp_store_key_retire(idp->store, k->kid, now + rollover_s + idp->retain_s, err);
    }
    if (rc == ATR_OK)
        rc = keys_reload(idp, err);
    pthread_mutex_unlock(&idp->lock);
    if (rc == ATR_OK && out_kid != NULL)
        snprintf(out_kid, ATR_IDP_KID_MAX + 1, "%s", kid);
    atr_log_info("idp.key.rotate", NULL, "new signing key %s signs from +%llds", kid,
                 (long long)rollover_s);
    return rc;
}

/* ------------------------------------------------------------- lifecycle */

atr_status atr_idp_set_authority(struct atr_idp *idp, const char *authority, struct atr_err *err)
{
    ATR_ASSERT_ARG(idp != NULL && authority != NULL);
    size_t len = strlen(authority);
    while (len > 0 && authority[len - 1] == '/')
        len--;
    if (len == 0 || len >= ATR_IDP_AUTHORITY_MAX || strncmp(authority, "https://", 8) != 0)
        return atr_err_set(err, ATR_E_INVALID, "the authority must be an https:// URL");
    pthread_mutex_lock(&idp->lock);
    memcpy(idp->authority, authority, len);
    idp->authority[len] = '\0';
    pthread_mutex_unlock(&idp->lock);
    return ATR_OK;
}

static void authority_get(char out[ATR_IDP_AUTHORITY_MAX], struct atr_idp *idp)
{
    pthread_mutex_lock(&idp->lock);
    memcpy(out, idp->authority, ATR_IDP_AUTHORITY_MAX);
    pthread_mutex_unlock(&idp->lock);
}

atr_status atr_idp_new(struct atr_idp **out, const struct atr_idp_opts *opts, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && opts != NULL);
    *out = NULL;
    if (opts->db_path == NULL)
        return atr_err_set(err, ATR_E_CONFIG, "idp: no database path");
    if (opts->admin_secret != NULL && strlen(opts->admin_secret) < 16)
        return atr_err_set(err, ATR_E_CONFIG, "idp: the admin secret needs 16 characters or more");
    if (opts->nresources > ATR_IDP_MAX_RESOURCES)
        return atr_err_set(err, ATR_E_CONFIG, "idp: more than %d resources", ATR_IDP_MAX_RESOURCES);
    int64_t lifetime =
        opts->token_lifetime_s != 0 ? opts->token_lifetime_s : ATR_IDP_LIFETIME_DEFAULT;
    if (lifetime < 300 || lifetime > 86400)
        return atr_err_set(err, ATR_E_CONFIG, "idp: the token lifetime must be 300..86400 s");
    struct atr_idp *idp = atr_calloc(1, sizeof(*idp));
    if (idp == NULL)
        return ATR_E_NOMEM;
    pthread_mutex_init(&idp->lock, NULL);
    pthread_mutex_init(&idp->rl_lock, NULL);
    idp->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    idp->lifetime_s = lifetime;
    idp->rl_max = opts->rl_max_failures != 0 ? opts->rl_max_failures : 5;
    idp->rl_window_s = opts->rl_window_s > 0 ? opts->rl_window_s : 300;
    idp->rollover_s = opts->key_rollover_s > 0 ? opts->key_rollover_s : 86400;
    idp->retain_s = opts->key_retain_s > 0 ? opts->key_retain_s : 86400;
    idp->key_bits = opts->key_bits != 0 ? opts->key_bits : 2048;
    atr_status rc = ATR_OK;
    const char *const *res = opts->nresources != 0 ? opts->resources : default_resources;
    size_t nres = opts->nresources != 0 ? opts->nresources : ATR_ARRAY_LEN(default_resources);
    for (size_t i = 0; i < nres; i++) {
        if (res[i] == NULL || res[i][0] == '\0' || strlen(res[i]) > 512) {
            rc = atr_err_set(err, ATR_E_CONFIG, "idp: bad resource");
            goto done;
        }
        idp->resources[i] = atr_strdup(res[i]);
        if (idp->resources[i] == NULL) {
            rc = ATR_E_NOMEM;
            goto done;
        }
        idp->nresources++;
    }
    if (!atr_digest_check_set(&idp->admin, opts->admin_secret)) {
        rc = atr_err_set(err, ATR_E_CRYPTO, "idp: cannot hash the admin secret");
        goto done;
    }
    if (opts->authority != NULL &&
        (rc = atr_idp_set_authority(idp, opts->authority, err)) != ATR_OK)
        goto done;
    if ((rc = atr_idp_store_open(&idp->store, opts->db_path, err)) != ATR_OK)
        goto done;
    pthread_mutex_lock(&idp->lock);
    rc = keys_reload(idp, err);
    int need = rc == ATR_OK && key_current(idp, now_s(idp)) == NULL;
    pthread_mutex_unlock(&idp->lock);
    if (rc == ATR_OK && need) {
        char kid[ATR_IDP_KID_MAX + 1];
        int64_t now = now_s(idp);
        if ((rc = key_create(kid, idp, now, now, err)) != ATR_OK)
            goto done;
        pthread_mutex_lock(&idp->lock);
        rc = keys_reload(idp, err);
        pthread_mutex_unlock(&idp->lock);
    }
done:
    if (rc != ATR_OK) {
        atr_idp_free(idp);
        return rc;
    }
    *out = idp;
    return ATR_OK;
}

void atr_idp_free(struct atr_idp *idp)
{
    if (idp == NULL)
        return;
    keys_clear(idp);
    atr_idp_store_free(idp->store);
    for (size_t i = 0; i < idp->nresources; i++)
        atr_free(idp->resources[i]);
    atr_digest_check_clear(&idp->admin);
    pthread_mutex_destroy(&idp->lock);
    pthread_mutex_destroy(&idp->rl_lock);
    atr_free(idp);
}

/* ------------------------------------------------------------ rate limit */

/* The slot of @p key (creating it, evicting the stalest); rl_lock held. */
static struct rl_slot *rl_slot(struct atr_idp *idp, const char *key, int create, int64_t now)
{
    struct rl_slot *free_slot = NULL;
    struct rl_slot *oldest = NULL;
    for (size_t i = 0; i < RL_SLOTS; i++) {
        struct rl_slot *s = &idp->rl[i];
        if (s->key[0] != '\0' && strcmp(s->key, key) == 0) {
            if (now - s->window_start_s >= idp->rl_window_s) {
                s->window_start_s = now;
                s->failures = 0;
            }
            return s;
        }
        if (s->key[0] == '\0' || now - s->window_start_s >= idp->rl_window_s) {
            if (free_slot == NULL)
                free_slot = s;
        } else if (oldest == NULL || s->window_start_s < oldest->window_start_s) {
            oldest = s;
        }
    }
    if (!create)
        return NULL;
    struct rl_slot *s = free_slot != NULL ? free_slot : oldest;
    snprintf(s->key, sizeof(s->key), "%s", key);
    s->window_start_s = now;
    s->failures = 0;
    return s;
}

static void rl_keys(char ckey[RL_KEY_MAX], char ikey[RL_KEY_MAX], const char *client_id,
                    const char *ip)
{
    snprintf(ckey, RL_KEY_MAX, "c:%.80s", client_id);
    snprintf(ikey, RL_KEY_MAX, "i:%.80s", ip != NULL ? ip : "-");
}

/* 0 when allowed, else the seconds until the window ends. */
static int64_t rl_check(struct atr_idp *idp, const char *client_id, const char *ip)
{
    char ck[RL_KEY_MAX], ik[RL_KEY_MAX];
    rl_keys(ck, ik, client_id, ip);
    int64_t now = now_s(idp);
    int64_t wait = 0;
    pthread_mutex_lock(&idp->rl_lock);
    const char *keys[2] = {ck, ik};
    /* per IP the limit is higher: several clients may share an address */
    unsigned limits[2] = {idp->rl_max, idp->rl_max * 4};
    for (int i = 0; i < 2; i++) {
        struct rl_slot *s = rl_slot(idp, keys[i], 0, now);
        if (s != NULL && s->failures >= limits[i]) {
            int64_t w = s->window_start_s + idp->rl_window_s - now;
            if (w > wait)
                wait = w;
        }
    }
    pthread_mutex_unlock(&idp->rl_lock);
    return wait;
}

static void rl_fail(struct atr_idp *idp, const char *client_id, const char *ip)
{
    char ck[RL_KEY_MAX], ik[RL_KEY_MAX];
    rl_keys(ck, ik, client_id, ip);
    int64_t now = now_s(idp);
    pthread_mutex_lock(&idp->rl_lock);
    rl_slot(idp, ck, 1, now)->failures++;
    rl_slot(idp, ik, 1, now)->failures++;
    pthread_mutex_unlock(&idp->rl_lock);
}

static void rl_success(struct atr_idp *idp, const char *client_id)
{
    char ck[RL_KEY_MAX], ik[RL_KEY_MAX];
    rl_keys(ck, ik, client_id, NULL);
    pthread_mutex_lock(&idp->rl_lock);
    struct rl_slot *s = rl_slot(idp, ck, 0, now_s(idp));
    if (s != NULL)
        memset(s, 0, sizeof(*s));
    pthread_mutex_unlock(&idp->rl_lock);
}

/* ------------------------------------------------------- token endpoint */

struct form {
    size_t n;
    const char *names[FORM_MAX];
    const char *values[FORM_MAX];
    char *storage;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one component in place from [p, end) into dst; 0 on bad input. */
static int form_decode(char *dst, const char *p, const char *end)
{
    while (p < end) {
        char c = *p++;
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (end - p < 2 || hexval(p[0]) < 0 || hexval(p[1]) < 0)
                return 0;
            c = (char)(hexval(p[0]) * 16 + hexval(p[1]));
            p += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f)
            return 0;
        *dst++ = c;
    }
    *dst = '\0';
    return 1;
}

/* Parses an application/x-www-form-urlencoded body; 0 on malformed or duplicate. */
static int form_parse(struct form *f, struct atr_span body)
{
    memset(f, 0, sizeof(*f));
    f->storage = atr_malloc(body.len * 2 + 2);
    if (f->storage == NULL)
        return -1;
    char *out = f->storage;
    const char *p = (const char *)body.ptr;
    const char *end = p + body.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp != NULL ? amp : end;
        if (pe > p) {
            const char *eq = memchr(p, '=', (size_t)(pe - p));
            const char *ne = eq != NULL ? eq : pe;
            if (f->n == FORM_MAX || ne == p)
                return 0;
            char *name = out;
            if (!form_decode(name, p, ne))
                return 0;
            out += strlen(name) + 1;
            char *value = out;
            if (!form_decode(value, eq != NULL ? eq + 1 : pe, pe))
                return 0;
            out += strlen(value) + 1;
            for (size_t i = 0; i < f->n; i++)
                if (strcmp(f->names[i], name) == 0)
                    return 0;
            f->names[f->n] = name;
            f->values[f->n] = value;
            f->n++;
        }
        p = pe + (amp != NULL ? 1 : 0);
    }
    return 1;
}

static const char *form_get(const struct form *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0)
            return f->values[i][0] != '\0' ? f->values[i] : NULL;
    return NULL;
}

/* Entra's error body: error, error_description "AADSTSn: ...", codes, ids. */
static atr_status token_error(struct atr_idp *idp, struct atr_http_req *req,
                              struct atr_http_resp *resp, unsigned status, const char *error,
                              long code, const char *fmt, ...) ATR_PRINTF(7, 8);

static atr_status token_error(struct atr_idp *idp, struct atr_http_req *req,
                              struct atr_http_resp *resp, unsigned status, const char *error,
                              long code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char trace[ATR_IDP_GUID_LEN + 1];
    char corr[ATR_IDP_GUID_LEN + 1];
    ATR_TRY(atr_idp_guid_new(trace, NULL));
    const char *cid = atr_http_req_header(req, "client-request-id");
    if (atr_idp_guid_ok(cid))
        snprintf(corr, sizeof(corr), "%s", cid);
    else
        ATR_TRY(atr_idp_guid_new(corr, NULL));
    time_t t = (time_t)now_s(idp);
    struct tm tm;
    char ts[32];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%SZ", &tm);
    char desc[1024];
    snprintf(desc, sizeof(desc), "AADSTS%ld: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
             code, msg, trace, corr, ts);
    atr_log_info("idp.token.error", atr_http_req_id(req), "AADSTS%ld %s", code, error);
    return atr_http_resp_json(resp, status,
                              json_pack("{s:s,s:s,s:[I],s:s,s:s,s:s,s:s}", "error", error,
                                        "error_description", desc, "error_codes", (json_int_t)code,
                                        "timestamp", ts, "trace_id", trace, "correlation_id", corr,
                                        "error_uri", "https://login.microsoftonline.com/error"));
}

/* Matches scope "{resource}/.default" against the resources; out = the resource. */
static int scope_resource(const struct atr_idp *idp, const char *scope, const char **out)
{
    const char *p = scope;
    const char *found = NULL;
    size_t found_len = 0;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ' ')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 0)
            break;
        if ((len == 6 && strncmp(p, "openid", 6) == 0) ||
            (len == 7 && strncmp(p, "profile", 7) == 0) ||
            (len == 14 && strncmp(p, "offline_access", 14) == 0)) {
            p = e;
            continue;
        }
        if (found != NULL)
            return 0; /* client credentials take one resource */
        found = p;
        found_len = len;
        p = e;
    }
    static const char suffix[] = "/.default";
    if (found == NULL || found_len <= sizeof(suffix) - 1 ||
        strncmp(found + found_len - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) != 0)
        return 0;
    size_t rlen = found_len - (sizeof(suffix) - 1);
    if (rlen > 0 && found[rlen - 1] == '/')
        rlen--; /* "https://vault.azure.net//.default" */
    for (size_t i = 0; i < idp->nresources; i++) {
        if (strlen(idp->resources[i]) == rlen && strncmp(idp->resources[i], found, rlen) == 0) {
            *out = idp->resources[i];
            return 1;
        }
    }
    return 0;
}

/*
 * Compares an assertion header's x5t with a certificate's thumbprint. MSAL
 * sends it padded (Python's urlsafe_b64encode), RFC 7515 unpadded: accept
 * both, nothing else.
 */
static int x5t_equal(const char *given, const char *want)
{
    size_t n = strlen(want);
    if (strncmp(given, want, n) != 0)
        return 0;
    return given[n] == '\0' || strcmp(given + n, "=") == 0;
}

/* Verifies a client assertion against the app's registered keys. */
static int assertion_ok(struct atr_idp *idp, const char *client_id, const char *assertion,
                        const char *audience, char *why, size_t why_cap)
{
    char **pems = NULL;
    size_t n = 0;
    int ok = 0;
    snprintf(why, why_cap, "no key is registered for the application");
    if (atr_idp_store_cert_list(&pems, &n, idp->store, client_id, NULL) != ATR_OK)
        return 0;
    size_t alen = strlen(assertion);
    /* MSAL names the certificate by its thumbprint (x5t) and usually sends no kid */
    struct atr_jwt_header hdr;
    memset(&hdr, 0, sizeof(hdr));
    if (atr_jwt_decode_header(&hdr, assertion, alen, NULL) != ATR_OK) {
        snprintf(why, why_cap, "the assertion is not a well-formed JWT");
        atr_idp_strings_free(pems, n);
        return 0;
    }
    for (size_t i = 0; i < n && !ok; i++) {
        struct atr_rsa_key *key = NULL;
        char x5t[ATR_X509_X5T_LEN + 1] = "";
        atr_status lrc = strstr(pems[i], "-----BEGIN CERTIFICATE-----") != NULL
                             ? atr_x509_cert_rsa_key(&key, x5t, pems[i], strlen(pems[i]), NULL)
                             : atr_rsa_key_parse_pem(&key, pems[i], strlen(pems[i]), NULL);
        if (lrc != ATR_OK)
            continue;
        if (hdr.x5t != NULL && x5t[0] != '\0' && !x5t_equal(hdr.x5t, x5t)) {
            snprintf(why, why_cap, "no registered certificate has the assertion's x5t");
            atr_rsa_key_free(key);
            continue;
        }
        struct atr_jwt_verify_opts o;
        memset(&o, 0, sizeof(o));
        o.clock = idp->clock;
        o.issuer = client_id;
        o.audience = audience;
        o.skew_s = 60;
        o.require_exp = 1;
        struct atr_jwt_claims c;
        memset(&c, 0, sizeof(c));
        struct atr_err e;
        atr_err_clear(&e);
        if (atr_jwt_verify_assertion(&c, assertion, alen, key, &o, &e) == ATR_OK) {
            if (c.sub != NULL && strcmp(c.sub, client_id) == 0)
                ok = 1;
            else
                snprintf(why, why_cap, "the assertion's sub must be the client id");
        } else {
            snprintf(why, why_cap, "%s", atr_err_msg(&e));
        }
        atr_jwt_claims_cleanup(&c);
        atr_rsa_key_free(key);
    }
    atr_jwt_header_cleanup(&hdr);
    atr_idp_strings_free(pems, n);
    return ok;
}

static atr_status issue_token(char **out, struct atr_idp *idp, const char *authority,
                              const struct atr_idp_sp *sp, const char *resource, int acr,
                              int64_t now, struct atr_err *err)
{
    char **roles = NULL;
    size_t nroles = 0;
    json_t *claims = NULL;
    char uti[ATR_IDP_GUID_LEN + 1];
    char iss[ATR_IDP_AUTHORITY_MAX + 64];
    atr_status rc = atr_idp_store_roles(&roles, &nroles, idp->store, sp->id, err);
    if (rc != ATR_OK)
        return rc;
    if ((rc = atr_idp_guid_new(uti, err)) != ATR_OK)
        goto done;
    snprintf(iss, sizeof(iss), "%s/%s/v2.0", authority, sp->tid);
    const char *acr_s = acr == 2 ? "2" : "1";
    claims = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "aud",
                       resource, "iss", iss, "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
                       (json_int_t)(now + idp->lifetime_s), "appid", sp->app_id, "appidacr", acr_s,
                       "azp", sp->app_id, "azpacr", acr_s, "idp", iss, "oid", sp->id, "sub", sp->id,
                       "tid", sp->tid, "uti", uti, "ver", "2.0", "idtyp", "app");
    if (claims == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    if (nroles > 0) {
        json_t *arr = json_array();
        if (arr == NULL || json_object_set_new(claims, "roles", arr) != 0) {
            rc = ATR_E_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < nroles; i++)
            if (json_array_append_new(arr, json_string(roles[i])) != 0) {
                rc = ATR_E_NOMEM;
                goto done;
            }
    }
    pthread_mutex_lock(&idp->lock);
    const struct signing_key *k = key_current(idp, now);
    if (k == NULL)
        rc = atr_err_set(err, ATR_E_UNAVAILABLE, "no signing key is active");
    else
        rc = atr_jwt_sign_rs256(out, k->key, k->kid, claims, err);
    pthread_mutex_unlock(&idp->lock);
done:
    json_decref(claims);
    atr_idp_strings_free(roles, nroles);
    return rc;
}

static void lower(char *s)
{
    for (; *s != '\0'; s++)
        *s = (char)tolower((unsigned char)*s);
}

static atr_status h_token(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    char authority[ATR_IDP_AUTHORITY_MAX];
    authority_get(authority, idp);
    if (authority[0] == '\0')
        return ATR_E_UNAVAILABLE;
    char tid[ATR_IDP_GUID_LEN + 1];
    const char *tenant = atr_http_req_param(req, "tenant");
    struct form f;
    atr_status rc = ATR_OK;
    const char *ct = atr_http_req_header(req, "Content-Type");
    int parsed = form_parse(&f, atr_http_req_body(req));
    if (parsed < 0) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    if (!parsed || ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        rc = token_error(idp, req, resp, 400, "invalid_request", 9002313,
                         "Invalid request. Request is malformed or invalid.");
        goto done;
    }
    const char *grant = form_get(&f, "grant_type");
    const char *client_id = form_get(&f, "client_id");
    const char *scope = form_get(&f, "scope");
    const char *secret = form_get(&f, "client_secret");
    const char *assertion = form_get(&f, "client_assertion");
    const char *atype = form_get(&f, "client_assertion_type");
    if (grant == NULL) {
        rc = token_error(idp, req, resp, 400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'grant_type'.");
        goto done;
    }
    if (strcmp(grant, "client_credentials") != 0) {
        rc = token_error(idp, req, resp, 400, "unsupported_grant_type", 70003,
                         "The app requested an unsupported grant type '%.64s'.", grant);
        goto done;
    }
    if (client_id == NULL) {
        rc = token_error(idp, req, resp, 400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'client_id'.");
        goto done;
    }
    if (!atr_idp_guid_ok(client_id)) {
        rc = token_error(idp, req, resp, 400, "unauthorized_client", 700016,
                         "Application with identifier '%.64s' was not found in the directory "
                         "'%.64s'.",
                         client_id, tenant);
        goto done;
    }
    struct atr_idp_directory dir;
    if (!atr_idp_guid_ok(tenant)) {
        rc = token_error(idp, req, resp, 400, "invalid_request", 90002,
                         "Tenant '%.64s' not found. Check to make sure you have the correct "
                         "tenant ID and are signing into the correct cloud.",
                         tenant);
        goto done;
    }
    snprintf(tid, sizeof(tid), "%s", tenant);
    lower(tid);
    char cid[ATR_IDP_GUID_LEN + 1];
    snprintf(cid, sizeof(cid), "%s", client_id);
    lower(cid);
    struct atr_err e;
    atr_err_clear(&e);
    rc = atr_idp_store_directory_get(&dir, idp->store, tid, &e);
    if (rc == ATR_E_NOT_FOUND) {
        rc = token_error(idp, req, resp, 400, "invalid_request", 90002,
                         "Tenant '%s' not found. Check to make sure you have the correct tenant "
                         "ID and are signing into the correct cloud.",
                         tid);
        goto done;
    }
    if (rc != ATR_OK)
        goto done;
    const char *resource = NULL;
    if (scope == NULL) {
        rc = token_error(idp, req, resp, 400, "invalid_scope", 70011,
                         "The provided request must include a 'scope' input parameter.");
        goto done;
    }
    if (!scope_resource(idp, scope, &resource)) {
        rc = token_error(idp, req, resp, 400, "invalid_scope", 70011,
                         "The provided value for the input parameter 'scope' is not valid. The "
                         "scope %.200s is not valid.",
                         scope);
        goto done;
    }
    const char *ip = atr_http_req_client_ip(req);
    int64_t wait = rl_check(idp, cid, ip);
    if (wait > 0) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)wait);
        if ((rc = atr_http_resp_header(resp, "Retry-After", ra)) != ATR_OK)
            goto done;
        rc = token_error(idp, req, resp, 429, "temporarily_unavailable", 50196,
                         "The server terminated an operation because too many client "
                         "authentications failed. Retry in %lld seconds.",
                         (long long)wait);
        goto done;
    }
    struct atr_idp_app app;
    rc = atr_idp_store_app_get(&app, idp->store, cid, &e);
    struct atr_idp_sp sp;
    atr_status sp_rc = ATR_E_NOT_FOUND;
    if (rc == ATR_OK)
        sp_rc = atr_idp_store_sp_find(&sp, idp->store, tid, cid, &e);
    if (rc == ATR_E_NOT_FOUND ||
        (rc == ATR_OK && !app.multi_tenant && strcmp(app.home_tid, tid) != 0)) {
        rl_fail(idp, cid, ip);
        rc = token_error(idp, req, resp, 400, "unauthorized_client", 700016,
                         "Application with identifier '%s' was not found in the directory '%s'. "
                         "This can happen if the application has not been installed by the "
                         "administrator of the tenant or consented to by any user in the tenant.",
                         cid, dir.display_name);
        goto done;
    }
    if (rc != ATR_OK)
        goto done;
    if (sp_rc != ATR_OK && sp_rc != ATR_E_NOT_FOUND) {
        rc = sp_rc;
        goto done;
    }
    /* client authentication */
    int acr = 1;
    int64_t now = now_s(idp);
    if (secret != NULL && assertion != NULL) {
        rc = token_error(idp, req, resp, 401, "invalid_client", 7000218,
                         "The request body must contain only one of 'client_assertion' or "
                         "'client_secret'.");
        goto done;
    }
    if (secret != NULL) {
        int ok = 0;
        if ((rc = atr_idp_store_secret_check(&ok, idp->store, cid, secret, now, &e)) != ATR_OK)
            goto done;
        if (!ok) {
            rl_fail(idp, cid, ip);
            rc = token_error(idp, req, resp, 401, "invalid_client", 7000215,
                             "Invalid client secret provided. Ensure the secret being sent in "
                             "the request is the client secret value, not the client secret ID, "
                             "for a secret added to app '%s'.",
                             cid);
            goto done;
        }
    } else if (assertion != NULL) {
        acr = 2;
        char aud[ATR_IDP_AUTHORITY_MAX + 80];
        snprintf(aud, sizeof(aud), "%s/%s/oauth2/v2.0/token", authority, tenant);
        char why[ATR_ERR_MSG_MAX];
        if (atype == NULL || strcmp(atype, ASSERTION_TYPE) != 0) {
            rl_fail(idp, cid, ip);
            rc = token_error(idp, req, resp, 401, "invalid_client", 700027,
                             "Client assertion failed: client_assertion_type must be '%s'.",
                             ASSERTION_TYPE);
            goto done;
        }
        if (!assertion_ok(idp, cid, assertion, aud, why, sizeof(why))) {
            rl_fail(idp, cid, ip);
            rc = token_error(idp, req, resp, 401, "invalid_client", 700027,
                             "Client assertion failed signature validation or its claims are "
                             "not valid (%s).",
                             why);
            goto done;
        }
    } else {
        rc = token_error(idp, req, resp, 401, "invalid_client", 7000218,
                         "The request body must contain the following parameter: "
                         "'client_assertion' or 'client_secret'.");
        goto done;
    }
    rl_success(idp, cid);
    if (sp_rc == ATR_E_NOT_FOUND) {
        rc = token_error(idp, req, resp, 400, "unauthorized_client", 700016,
                         "Application with identifier '%s' was not found in the directory '%s'. "
                         "This can happen if the application has not been installed by the "
                         "administrator of the tenant or consented to by any user in the tenant.",
                         cid, dir.display_name);
        goto done;
    }
    if (!sp.account_enabled) {
        rc = token_error(idp, req, resp, 401, "unauthorized_client", 7000112,
                         "Application '%s'(%s) is disabled.", cid, app.display_name);
        goto done;
    }
    char *tok = NULL;
    if ((rc = issue_token(&tok, idp, authority, &sp, resource, acr, now, atr_http_req_err(req))) !=
        ATR_OK)
        goto done;
    rc = atr_http_resp_json(resp, 200,
                            json_pack("{s:s,s:I,s:I,s:s}", "token_type", "Bearer", "expires_in",
                                      (json_int_t)idp->lifetime_s, "ext_expires_in",
                                      (json_int_t)idp->lifetime_s, "access_token", tok));
    OPENSSL_cleanse(tok, strlen(tok));
    atr_free(tok);
    atr_log_info("idp.token.issued", atr_http_req_id(req), "app %s sp %s tid %s aud %s", cid, sp.id,
                 tid, resource);
done:
    atr_free(f.storage);
    return rc;
}

/* -------------------------------------------------- metadata and JWKS */

static atr_status h_openid(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    char authority[ATR_IDP_AUTHORITY_MAX];
    authority_get(authority, idp);
    if (authority[0] == '\0')
        return ATR_E_UNAVAILABLE;
    char tid[ATR_IDP_GUID_LEN + 1];
    const char *tenant = atr_http_req_param(req, "tenant");
    const char *issuer_tid;
    if (strcmp(tenant, "common") == 0 || strcmp(tenant, "organizations") == 0) {
        issuer_tid = "{tenantid}";
        snprintf(tid, sizeof(tid), "%s", tenant);
    } else {
        struct atr_idp_directory d;
        atr_status rc = ATR_E_NOT_FOUND;
        if (atr_idp_guid_ok(tenant)) {
            snprintf(tid, sizeof(tid), "%s", tenant);
            lower(tid);
            rc = atr_idp_store_directory_get(&d, idp->store, tid, NULL);
        }
        if (rc == ATR_E_NOT_FOUND)
            return token_error(idp, req, resp, 400, "invalid_tenant", 90002,
                               "Tenant '%.64s' not found. Check to make sure you have the "
                               "correct tenant ID and are signing into the correct cloud.",
                               tenant);
        if (rc != ATR_OK)
            return rc;
        issuer_tid = tid;
    }
    char base[ATR_IDP_AUTHORITY_MAX + 64];
    char issuer[ATR_IDP_AUTHORITY_MAX + 64];
    char token_ep[ATR_IDP_AUTHORITY_MAX + 96];
    char authz_ep[ATR_IDP_AUTHORITY_MAX + 96];
    char jwks[ATR_IDP_AUTHORITY_MAX + 96];
    char logout[ATR_IDP_AUTHORITY_MAX + 96];
    snprintf(base, sizeof(base), "%s/%s", authority, tid);
    snprintf(issuer, sizeof(issuer), "%s/%s/v2.0", authority, issuer_tid);
    snprintf(token_ep, sizeof(token_ep), "%s/oauth2/v2.0/token", base);
    snprintf(authz_ep, sizeof(authz_ep), "%s/oauth2/v2.0/authorize", base);
    snprintf(logout, sizeof(logout), "%s/oauth2/v2.0/logout", base);
    snprintf(jwks, sizeof(jwks), "%s/discovery/v2.0/keys", base);
    const char *host = strstr(authority, "://") != NULL ? strstr(authority, "://") + 3 : authority;
    json_t *doc = json_pack(
        "{s:s,s:[s,s],s:s,s:[s,s,s],s:[s],s:[s],s:[s,s,s,s],s:s,s:b,s:s,s:b,s:s,s:[s,s,s,s],"
        "s:s,s:s,s:s,s:s,s:[s,s,s,s,s,s]}",
        "token_endpoint", token_ep, "token_endpoint_auth_methods_supported", "client_secret_post",
        "private_key_jwt", "jwks_uri", jwks, "response_modes_supported", "query", "fragment",
        "form_post", "subject_types_supported", "pairwise", "id_token_signing_alg_values_supported",
        "RS256", "response_types_supported", "code", "id_token", "code id_token", "id_token token",
        "issuer", issuer, "request_uri_parameter_supported", 0, "authorization_endpoint", authz_ep,
        "http_logout_supported", 1, "end_session_endpoint", logout, "scopes_supported", "openid",
        "profile", "email", "offline_access", "tenant_region_scope", "WW", "cloud_instance_name",
        host, "cloud_graph_host_name", host, "msgraph_host", host, "claims_supported", "sub", "iss",
        "aud", "exp", "iat", "tid");
    return atr_http_resp_json(resp, 200, doc);
}

static atr_status h_jwks(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    ATR_UNUSED(req);
    struct atr_idp *idp = ctx;
    json_t *keys = json_array();
    if (keys == NULL)
        return ATR_E_NOMEM;
    atr_status rc = ATR_OK;
    int64_t now = now_s(idp);
    pthread_mutex_lock(&idp->lock);
    for (size_t i = 0; i < idp->nkeys && rc == ATR_OK; i++) {
        const struct signing_key *k = &idp->keys[i];
        if (!key_published(k, now))
            continue;
        json_t *jwk = NULL;
        if ((rc = atr_jwk_export(&jwk, k->key, ATR_JWK_PUBLIC, atr_http_req_err(req))) != ATR_OK)
            break;
        if (json_object_set_new(jwk, "use", json_string("sig")) != 0 ||
            json_object_set_new(jwk, "kid", json_string(k->kid)) != 0 ||
            json_array_append_new(keys, jwk) != 0)
            rc = ATR_E_NOMEM;
    }
    pthread_mutex_unlock(&idp->lock);
    if (rc != ATR_OK) {
        json_decref(keys);
        return rc;
    }
    return atr_http_resp_json(resp, 200, json_pack("{s:o}", "keys", keys));
}

/* ------------------------------------------------------------ auth hook */

static const struct idp_principal *principal(const struct atr_http_req *req)
{
    return atr_http_req_principal(req);
}

/* Graph's error body {"error":{"code","message","innerError":{...}}}. */
static atr_status graph_error(const struct atr_idp *idp, struct atr_http_req *req,
                              struct atr_http_resp *resp, unsigned status, const char *code,
                              const char *message)
{
    char date[32];
    time_t t = (time_t)now_s(idp);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    const char *crid = atr_http_req_header(req, "client-request-id");
    return atr_http_resp_json(
        resp, status,
        json_pack("{s:{s:s,s:s,s:{s:s,s:s,s:s}}}", "error", "code", code, "message", message,
                  "innerError", "date", date, "request-id", atr_http_req_id(req),
                  "client-request-id",
                  crid != NULL && strlen(crid) <= 64 ? crid : atr_http_req_id(req)));
}

/* Checks a Graph admin token; fills tid. */
static int graph_token_ok(struct atr_idp *idp, const char *token, char tid[ATR_IDP_GUID_LEN + 1])
{
    char authority[ATR_IDP_AUTHORITY_MAX];
    authority_get(authority, idp);
    size_t len = strlen(token);
    int ok = 0;
    struct atr_jwt_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.clock = idp->clock;
    o.audience = ATR_IDP_GRAPH_RESOURCE;
    o.skew_s = 60;
    o.require_exp = 1;
    int64_t now = now_s(idp);
    pthread_mutex_lock(&idp->lock);
    for (size_t i = 0; i < idp->nkeys && !ok; i++) {
        if (!key_published(&idp->keys[i], now))
            continue;
        struct atr_jwt_claims c;
        memset(&c, 0, sizeof(c));
        if (atr_jwt_verify_with_kid(&c, token, len, idp->keys[i].key, idp->keys[i].kid, &o, NULL) ==
                ATR_OK &&
            c.tid != NULL && atr_idp_guid_ok(c.tid) && c.iss != NULL && c.kid != NULL &&
            strcmp(c.kid, idp->keys[i].kid) == 0) {
            char want[ATR_IDP_AUTHORITY_MAX + 64];
            snprintf(want, sizeof(want), "%s/%s/v2.0", authority, c.tid);
            int role = 0;
            for (size_t r = 0; r < c.nroles; r++)
                role |= strcmp(c.roles[r], ATR_IDP_GRAPH_ROLE) == 0;
            if (strcmp(c.iss, want) == 0 && role) {
                snprintf(tid, ATR_IDP_GUID_LEN + 1, "%s", c.tid);
                ok = 1;
            }
        }
        atr_jwt_claims_cleanup(&c);
    }
    pthread_mutex_unlock(&idp->lock);
    return ok;
}

atr_status atr_idp_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                        const struct atr_route *route, void *auth_ctx)
{
    struct atr_idp *idp = auth_ctx;
    int graph = route->role != NULL && strcmp(route->role, "graph") == 0;
    const char *h = atr_http_req_header(req, "Authorization");
    const char *token = NULL;
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0)
        token = h + 7;
    if (token == NULL || token[0] == '\0' || strlen(token) > ATR_JWT_MAX_LEN) {
        ATR_TRY(atr_http_resp_header(resp, "WWW-Authenticate", "Bearer realm=\"atrest-idp\""));
        if (graph) {
            ATR_TRY(graph_error(idp, req, resp, 401, "InvalidAuthenticationToken",
                                "Access token is empty."));
            return ATR_E_UNAUTHORIZED;
        }
        return atr_err_set(atr_http_req_err(req), ATR_E_UNAUTHORIZED,
                           "the admin bootstrap secret is required (Authorization: Bearer)");
    }
    struct idp_principal *p = atr_calloc(1, sizeof(*p));
    if (p == NULL)
        return ATR_E_NOMEM;
    if (atr_digest_check_matches(&idp->admin, token)) {
        p->bootstrap = 1;
        if (graph) {
            const char *d = atr_http_req_header(req, ATR_IDP_DIRECTORY_HEADER);
            if (!atr_idp_guid_ok(d)) {
                atr_free(p);
                ATR_TRY(graph_error(idp, req, resp, 400, "Request_BadRequest",
                                    "Calls with the bootstrap secret name the directory in "
                                    "X-Atrest-Directory."));
                return ATR_E_INVALID;
            }
            snprintf(p->tid, sizeof(p->tid), "%s", d);
            lower(p->tid);
        }
    } else if (graph && graph_token_ok(idp, token, p->tid)) {
        p->bootstrap = 0;
    } else {
        atr_free(p);
        ATR_TRY(atr_http_resp_header(resp, "WWW-Authenticate", "Bearer realm=\"atrest-idp\""));
        if (graph) {
            ATR_TRY(graph_error(idp, req, resp, 401, "InvalidAuthenticationToken",
                                "Access token validation failure. Invalid audience, issuer, "
                                "role or signature."));
            return ATR_E_UNAUTHORIZED;
        }
        return atr_err_set(atr_http_req_err(req), ATR_E_UNAUTHORIZED,
                           "the admin bootstrap secret does not match");
    }
    atr_http_req_set_principal(req, p, atr_free);
    return ATR_OK;
}

/* ---------------------------------------------------------------- Graph */

static json_t *sp_json(const struct atr_idp_sp *sp, const char *home_tid, int entity)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:s?,s:s,s:[s]}", "id", sp->id, "appId", sp->app_id,
                          "displayName", sp->display_name, "accountEnabled", sp->account_enabled,
                          "appOwnerOrganizationId", home_tid, "servicePrincipalType", "Application",
                          "servicePrincipalNames", sp->app_id);
    if (o != NULL && entity &&
        json_object_set_new(o, "@odata.context",
                            json_string("https://graph.microsoft.com/v1.0/"
                                        "$metadata#servicePrincipals/$entity")) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static atr_status not_found(const struct atr_idp *idp, struct atr_http_req *req,
                            struct atr_http_resp *resp, const char *id)
{
    char msg[256];
    snprintf(msg, sizeof(msg),
             "Resource '%.64s' does not exist or one of its queried reference-property objects "
             "are not present.",
             id);
    return graph_error(idp, req, resp, 404, "Request_ResourceNotFound", msg);
}

static atr_status h_sp_create(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    const struct idp_principal *p = principal(req);
    json_t *body = NULL;
    if (atr_http_req_json(&body, req) != ATR_OK)
        return graph_error(idp, req, resp, 400, "Request_BadRequest",
                           atr_err_msg(atr_http_req_err(req)));
    const char *app_id = json_string_value(json_object_get(body, "appId"));
    json_t *en = json_object_get(body, "accountEnabled");
    atr_status rc = ATR_OK;
    if (app_id == NULL || !atr_idp_guid_ok(app_id) || (en != NULL && !json_is_boolean(en))) {
        rc = graph_error(idp, req, resp, 400, "Request_BadRequest",
                         "appId (a GUID) is required; accountEnabled must be a boolean.");
        goto done;
    }
    char aid[ATR_IDP_GUID_LEN + 1];
    snprintf(aid, sizeof(aid), "%s", app_id);
    lower(aid);
    struct atr_idp_sp sp;
    struct atr_err e;
    atr_err_clear(&e);
    rc = atr_idp_store_sp_create(&sp, idp->store, p->tid, aid, en == NULL || json_is_true(en),
                                 now_s(idp), &e);
    if (rc == ATR_E_NOT_FOUND || rc == ATR_E_FORBIDDEN) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "The appId '%s' of the service principal does not reference a valid "
                 "application object.",
                 aid);
        rc = graph_error(idp, req, resp, 400, "Request_BadRequest", msg);
        goto done;
    }
    if (rc == ATR_E_CONFLICT) {
        rc = graph_error(idp, req, resp, 409, "Request_MultipleObjectsWithSameKeyValue",
                         "Another object with the same value for property servicePrincipalNames "
                         "already exists.");
        goto done;
    }
    if (rc != ATR_OK)
        goto done;
    struct atr_idp_app app;
    if ((rc = atr_idp_store_app_get(&app, idp->store, aid, &e)) != ATR_OK)
        goto done;
    rc = atr_http_resp_json(resp, 201, sp_json(&sp, app.home_tid, 1));
    atr_log_info("idp.sp.create", atr_http_req_id(req), "sp %s app %s tid %s", sp.id, aid, p->tid);
done:
    json_decref(body);
    return rc;
}

/* Parses "appId eq 'GUID'"; 1 and out filled on success. */
static int parse_filter(char out[ATR_IDP_GUID_LEN + 1], const char *f)
{
    while (*f == ' ')
        f++;
    if (strncasecmp(f, "appId", 5) != 0)
        return 0;
    f += 5;
    while (*f == ' ')
        f++;
    if (strncasecmp(f, "eq", 2) != 0)
        return 0;
    f += 2;
    while (*f == ' ')
        f++;
    if (*f != '\'')
        return 0;
    f++;
    const char *q = strchr(f, '\'');
    if (q == NULL || q - f != ATR_IDP_GUID_LEN)
        return 0;
    memcpy(out, f, ATR_IDP_GUID_LEN);
    out[ATR_IDP_GUID_LEN] = '\0';
    for (q++; *q == ' '; q++)
        ;
    if (*q != '\0' || !atr_idp_guid_ok(out))
        return 0;
    lower(out);
    return 1;
}

static atr_status h_sp_list(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    const struct idp_principal *p = principal(req);
    const char *filter = atr_http_req_query(req, "$filter");
    char aid[ATR_IDP_GUID_LEN + 1];
    if (filter != NULL && !parse_filter(aid, filter))
        return graph_error(idp, req, resp, 400, "Request_UnsupportedQuery",
                           "Unsupported query: only $filter=appId eq '{guid}' is supported.");
    struct atr_idp_sp *v = NULL;
    size_t n = 0;
    ATR_TRY(atr_idp_store_sp_list(&v, &n, idp->store, p->tid, filter != NULL ? aid : NULL,
                                  atr_http_req_err(req)));
    json_t *arr = json_array();
    atr_status rc = arr != NULL ? ATR_OK : ATR_E_NOMEM;
    for (size_t i = 0; i < n && rc == ATR_OK; i++) {
        struct atr_idp_app app;
        const char *home = NULL;
        if (atr_idp_store_app_get(&app, idp->store, v[i].app_id, NULL) == ATR_OK)
            home = app.home_tid;
        if (json_array_append_new(arr, sp_json(&v[i], home, 0)) != 0)
            rc = ATR_E_NOMEM;
    }
    atr_free(v);
    if (rc != ATR_OK) {
        json_decref(arr);
        return rc;
    }
    return atr_http_resp_json(
        resp, 200,
        json_pack("{s:s,s:o}", "@odata.context",
                  "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals", "value", arr));
}

static atr_status h_sp_item(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    const struct idp_principal *p = principal(req);
    const char *method = atr_http_req_method(req);
    const char *id_in = atr_http_req_param(req, "id");
    if (!atr_idp_guid_ok(id_in))
        return not_found(idp, req, resp, id_in);
    char id[ATR_IDP_GUID_LEN + 1];
    snprintf(id, sizeof(id), "%s", id_in);
    lower(id);
    struct atr_idp_sp sp;
    struct atr_err e;
    atr_err_clear(&e);
    atr_status rc = atr_idp_store_sp_get(&sp, idp->store, p->tid, id, &e);
    if (rc == ATR_E_NOT_FOUND)
        return not_found(idp, req, resp, id);
    if (rc != ATR_OK)
        return rc;
    if (strcmp(method, "DELETE") == 0) {
        rc = atr_idp_store_sp_delete(idp->store, p->tid, id, &e);
        if (rc == ATR_E_NOT_FOUND)
            return not_found(idp, req, resp, id);
        ATR_TRY(rc);
        atr_log_info("idp.sp.delete", atr_http_req_id(req), "sp %s tid %s", id, p->tid);
        return atr_http_resp_body(resp, 204, NULL, atr_span_of(NULL, 0));
    }
    if (strcmp(method, "PATCH") == 0) {
        json_t *body = NULL;
        if (atr_http_req_json(&body, req) != ATR_OK)
            return graph_error(idp, req, resp, 400, "Request_BadRequest",
                               atr_err_msg(atr_http_req_err(req)));
        json_t *en = json_object_get(body, "accountEnabled");
        if (en != NULL && !json_is_boolean(en)) {
            json_decref(body);
            return graph_error(idp, req, resp, 400, "Request_BadRequest",
                               "accountEnabled must be a boolean.");
        }
        int enabled = en != NULL ? json_is_true(en) : sp.account_enabled;
        json_decref(body);
        if (en != NULL) {
            rc = atr_idp_store_sp_set_enabled(idp->store, p->tid, id, enabled, &e);
            if (rc == ATR_E_NOT_FOUND)
                return not_found(idp, req, resp, id);
            ATR_TRY(rc);
            atr_log_info("idp.sp.update", atr_http_req_id(req), "sp %s tid %s accountEnabled %s",
                         id, p->tid, enabled ? "true" : "false");
        }
        return atr_http_resp_body(resp, 204, NULL, atr_span_of(NULL, 0));
    }
    struct atr_idp_app app;
    const char *home = NULL;
    if (atr_idp_store_app_get(&app, idp->store, sp.app_id, NULL) == ATR_OK)
        home = app.home_tid;
    return atr_http_resp_json(resp, 200, sp_json(&sp, home, 1));
}

/* ---------------------------------------------------------------- admin */

static atr_status admin_body(json_t **out, struct atr_http_req *req)
{
    struct atr_span b = atr_http_req_body(req);
    if (b.len == 0) {
        *out = json_object();
        return *out != NULL ? ATR_OK : ATR_E_NOMEM;
    }
    return atr_http_req_json(out, req);
}

static atr_status h_dir_create(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    json_t *body = NULL;
    ATR_TRY(admin_body(&body, req));
    const char *name = NULL;
    atr_status rc =
        atr_json_get_string_opt(&name, body, "displayName", "Directory", atr_http_req_err(req));
    struct atr_idp_directory d;
    if (rc == ATR_OK)
        rc =
            atr_idp_store_directory_create(&d, idp->store, name, now_s(idp), atr_http_req_err(req));
    if (rc == ATR_OK) {
        rc = atr_http_resp_json(resp, 201,
                                json_pack("{s:s,s:s}", "id", d.id, "displayName", d.display_name));
        atr_log_info("idp.directory.create", atr_http_req_id(req), "directory %s", d.id);
    }
    json_decref(body);
    return rc;
}

static atr_status h_dir_list(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    struct atr_idp_directory *v = NULL;
    size_t n = 0;
    ATR_TRY(atr_idp_store_directory_list(&v, &n, idp->store, atr_http_req_err(req)));
    json_t *arr = json_array();
    atr_status rc = arr != NULL ? ATR_OK : ATR_E_NOMEM;
    for (size_t i = 0; i < n && rc == ATR_OK; i++)
        if (json_array_append_new(
                arr, json_pack("{s:s,s:s}", "id", v[i].id, "displayName", v[i].display_name)) != 0)
            rc = ATR_E_NOMEM;
    atr_free(v);
    if (rc != ATR_OK) {
        json_decref(arr);
        return rc;
    }
    return atr_http_resp_json(resp, 200, json_pack("{s:o}", "value", arr));
}

static atr_status new_secret(char **out, struct atr_idp *idp, const char *app_id,
                             struct atr_err *err)
{
    uint8_t raw[SECRET_BYTES];
    ATR_TRY(atr_rand_bytes(raw, sizeof(raw), err));
    atr_status rc = atr_b64url_encode_str(out, atr_span_of(raw, sizeof(raw)));
    OPENSSL_cleanse(raw, sizeof(raw));
    if (rc != ATR_OK)
        return rc;
    rc = atr_idp_store_secret_add(idp->store, app_id, *out, 0, now_s(idp), err);
    if (rc != ATR_OK) {
        OPENSSL_cleanse(*out, strlen(*out));
        ATR_FREE(*out);
    }
    return rc;
}

static atr_status h_app_create(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    struct atr_err *err = atr_http_req_err(req);
    json_t *body = NULL;
    char *secret = NULL;
    ATR_TRY(admin_body(&body, req));
    const char *name = NULL;
    int multi = 0;
    struct atr_idp_app app;
    atr_status rc = atr_json_get_string_opt(&name, body, "displayName", "Application", err);
    if (rc == ATR_OK)
        rc = atr_json_get_bool_opt(&multi, body, "multiTenant", 0, err);
    if (rc != ATR_OK)
        goto done;
    char tid[ATR_IDP_GUID_LEN + 1];
    if (!atr_idp_guid_ok(atr_http_req_param(req, "tid"))) {
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "directory not found");
        goto done;
    }
    snprintf(tid, sizeof(tid), "%s", atr_http_req_param(req, "tid"));
    lower(tid);
    rc = atr_idp_store_app_create(&app, idp->store, tid, name, multi, now_s(idp), err);
    if (rc != ATR_OK)
        goto done;
    if ((rc = new_secret(&secret, idp, app.app_id, err)) != ATR_OK)
        goto done;
    rc = atr_http_resp_json(resp, 201,
                            json_pack("{s:s,s:s,s:s,s:b,s:s}", "appId", app.app_id, "displayName",
                                      app.display_name, "homeTenantId", app.home_tid, "multiTenant",
                                      app.multi_tenant, "secret", secret));
    atr_log_info("idp.app.create", atr_http_req_id(req), "app %s home %s", app.app_id, tid);
done:
    if (secret != NULL) {
        OPENSSL_cleanse(secret, strlen(secret));
        atr_free(secret);
    }
    json_decref(body);
    return rc;
}

static atr_status h_app_secret(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    char *secret = NULL;
    char aid[ATR_IDP_GUID_LEN + 1];
    if (!atr_idp_guid_ok(atr_http_req_param(req, "appId")))
        return atr_err_set(atr_http_req_err(req), ATR_E_NOT_FOUND, "application not found");
    snprintf(aid, sizeof(aid), "%s", atr_http_req_param(req, "appId"));
    lower(aid);
    ATR_TRY(new_secret(&secret, idp, aid, atr_http_req_err(req)));
    atr_status rc =
        atr_http_resp_json(resp, 201, json_pack("{s:s,s:s}", "appId", aid, "secret", secret));
    OPENSSL_cleanse(secret, strlen(secret));
    atr_free(secret);
    return rc;
}

static atr_status h_app_key(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    json_t *body = NULL;
    const char *pem = NULL;
    char aid[ATR_IDP_GUID_LEN + 1];
    if (!atr_idp_guid_ok(atr_http_req_param(req, "appId")))
        return atr_err_set(atr_http_req_err(req), ATR_E_NOT_FOUND, "application not found");
    ATR_TRY(atr_http_req_json(&body, req));
    snprintf(aid, sizeof(aid), "%s", atr_http_req_param(req, "appId"));
    lower(aid);
    atr_status rc = atr_json_get_string(&pem, body, "key", atr_http_req_err(req));
    if (rc == ATR_OK)
        rc = atr_idp_store_cert_add(idp->store, aid, pem, now_s(idp), atr_http_req_err(req));
    if (rc == ATR_OK)
        rc = atr_http_resp_json(resp, 201, json_pack("{s:s}", "appId", aid));
    json_decref(body);
    return rc;
}

static atr_status h_role_grant(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    struct atr_err *err = atr_http_req_err(req);
    json_t *body = NULL;
    ATR_TRY(atr_http_req_json(&body, req));
    const char *role = NULL;
    char tid[ATR_IDP_GUID_LEN + 1];
    char id[ATR_IDP_GUID_LEN + 1];
    if (!atr_idp_guid_ok(atr_http_req_param(req, "tid")) ||
        !atr_idp_guid_ok(atr_http_req_param(req, "id"))) {
        json_decref(body);
        return atr_err_set(err, ATR_E_NOT_FOUND, "service principal not found");
    }
    snprintf(tid, sizeof(tid), "%s", atr_http_req_param(req, "tid"));
    snprintf(id, sizeof(id), "%s", atr_http_req_param(req, "id"));
    lower(tid);
    lower(id);
    char **roles = NULL;
    size_t n = 0;
    atr_status rc = atr_json_get_string(&role, body, "role", err);
    if (rc == ATR_OK)
        rc = atr_idp_store_role_grant(idp->store, tid, id, role, err);
    if (rc == ATR_OK)
        rc = atr_idp_store_roles(&roles, &n, idp->store, id, err);
    if (rc == ATR_OK) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr != NULL; i++)
            if (json_array_append_new(arr, json_string(roles[i])) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        rc = atr_http_resp_json(
            resp, 200, arr != NULL ? json_pack("{s:s,s:o}", "id", id, "roles", arr) : NULL);
        atr_log_info("idp.role.grant", atr_http_req_id(req), "sp %s role %s", id, role);
    }
    atr_idp_strings_free(roles, n);
    json_decref(body);
    return rc;
}

static atr_status h_keys_list(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    ATR_UNUSED(req);
    struct atr_idp *idp = ctx;
    json_t *arr = json_array();
    if (arr == NULL)
        return ATR_E_NOMEM;
    int64_t now = now_s(idp);
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&idp->lock);
    const struct signing_key *cur = key_current(idp, now);
    for (size_t i = 0; i < idp->nkeys && rc == ATR_OK; i++) {
        const struct signing_key *k = &idp->keys[i];
        const char *state = k == cur                 ? "signing"
                            : !key_published(k, now) ? (k->publish_s > now ? "pending" : "retired")
                            : k->active_s > now      ? "published"
                                                     : "retiring";
        if (json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:I,s:I}", "kid", k->kid, "state",
                                                 state, "publishAt", (json_int_t)k->publish_s,
                                                 "activeAt", (json_int_t)k->active_s, "retireAt",
                                                 (json_int_t)k->retire_s)) != 0)
            rc = ATR_E_NOMEM;
    }
    pthread_mutex_unlock(&idp->lock);
    if (rc != ATR_OK) {
        json_decref(arr);
        return rc;
    }
    return atr_http_resp_json(resp, 200, json_pack("{s:o}", "keys", arr));
}

static atr_status h_keys_rotate(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct atr_idp *idp = ctx;
    json_t *body = NULL;
    ATR_TRY(admin_body(&body, req));
    int64_t rollover = -1;
    char kid[ATR_IDP_KID_MAX + 1];
    atr_status rc = atr_json_get_int_opt(&rollover, body, "rolloverSeconds", -1, -1,
                                         (int64_t)366 * 86400, atr_http_req_err(req));
    json_decref(body);
    ATR_TRY(rc);
    ATR_TRY(atr_idp_keys_rotate(idp, rollover, kid, atr_http_req_err(req)));
    return atr_http_resp_json(resp, 200, json_pack("{s:s}", "kid", kid));
}

static atr_status h_health(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    ATR_UNUSED(req);
    ATR_UNUSED(ctx);
    return atr_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct atr_route idp_routes[] = {
    {"GET", "/healthz", h_health, 0, 0, NULL},
    {"GET", "/v1.0/servicePrincipals", h_sp_list, ATR_ROUTE_AUTH, 0, "graph"},
    {"POST", "/v1.0/servicePrincipals", h_sp_create, ATR_ROUTE_AUTH, ADMIN_BODY_MAX, "graph"},
    {"GET", "/v1.0/servicePrincipals/{id}", h_sp_item, ATR_ROUTE_AUTH, 0, "graph"},
    {"PATCH", "/v1.0/servicePrincipals/{id}", h_sp_item, ATR_ROUTE_AUTH, ADMIN_BODY_MAX, "graph"},
    {"DELETE", "/v1.0/servicePrincipals/{id}", h_sp_item, ATR_ROUTE_AUTH, 0, "graph"},
    {"GET", "/admin/directories", h_dir_list, ATR_ROUTE_AUTH, 0, "admin"},
    {"POST", "/admin/directories", h_dir_create, ATR_ROUTE_AUTH, ADMIN_BODY_MAX, "admin"},
    {"POST", "/admin/directories/{tid}/applications", h_app_create, ATR_ROUTE_AUTH, ADMIN_BODY_MAX,
     "admin"},
    {"POST", "/admin/applications/{appId}/secrets", h_app_secret, ATR_ROUTE_AUTH, ADMIN_BODY_MAX,
     "admin"},
    {"POST", "/admin/applications/{appId}/keys", h_app_key, ATR_ROUTE_AUTH, ADMIN_BODY_MAX,
     "admin"},
    {"POST", "/admin/directories/{tid}/servicePrincipals/{id}/roles", h_role_grant, ATR_ROUTE_AUTH,
     ADMIN_BODY_MAX, "admin"},
    {"GET", "/admin/keys", h_keys_list, ATR_ROUTE_AUTH, 0, "admin"},
    {"POST", "/admin/keys/rotate", h_keys_rotate, ATR_ROUTE_AUTH, ADMIN_BODY_MAX, "admin"},
    {"GET", "/{tenant}/discovery/v2.0/keys", h_jwks, 0, 0, NULL},
    {"GET", "/{tenant}/v2.0/.well-known/openid-configuration", h_openid, 0, 0, NULL},
    {"POST", "/{tenant}/oauth2/v2.0/token", h_token, 0, TOKEN_BODY_MAX, NULL},
};

const struct atr_route *atr_idp_routes(size_t *out_n)
{
    *out_n = ATR_ARRAY_LEN(idp_routes);
    return idp_routes;
}
