/* SPDX-License-Identifier: Apache-2.0 */
#define _XOPEN_SOURCE 700 /* strptime */
#include "kms/akv.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "http/client.h"

#define TOKEN_MAX    16384
#define MAX_TOKENS   64
#define MAX_HOSTS    64
#define FORM_MAX     4096
#define CLIENTS_IDLE 8

/* A remembered challenge of one vault host. */
struct chal_entry {
    char host[ATR_AKV_HOST_MAX];
    struct atr_akv_challenge c;
};

/* A cached token. */
struct token_entry {
    char authority[ATR_AKV_URL_MAX];
    char tenant[ATR_AKV_TENANT_MAX + 1];
    char resource[ATR_AKV_URL_MAX];
    char *token; /* wiped when dropped */
    int64_t expires_s;
};

struct atr_akv_client {
    char client_id[128];
    char *secret; /* wiped on free */
    char authority[ATR_AKV_URL_MAX];
    char resources[ATR_AKV_MAX_LIST][ATR_AKV_URL_MAX];
    size_t nresources;
    char hosts[ATR_AKV_MAX_LIST][ATR_AKV_HOST_MAX];
    size_t nhosts;
    struct atr_http_client_opts http;
    char ca_file[1024];
    unsigned op_timeout_ms;
    unsigned page_size;
    unsigned max_pages;
    const struct atr_clock *clock;

    pthread_mutex_t lock; /* everything below */
    struct chal_entry chals[MAX_HOSTS];
    size_t nchals;
    struct token_entry tokens[MAX_TOKENS];
    size_t ntokens;
    struct atr_http_client *idle[CLIENTS_IDLE];
    size_t nidle;
    struct atr_akv_stats stats;
};

/* ------------------------------------------------------------ names */

static const char *const cause_names[] = {
    "OK",
    "URI_INVALID",
    "DIRECTORY_UNKNOWN",
    "DIRECTORY_MISMATCH",
    "SP_MISSING",
    "SP_DISABLED",
    "CREDENTIAL_INVALID",
    "AUTHORITY_UNREACHABLE",
    "VAULT_UNREACHABLE",
    "TLS",
    "FIREWALL",
    "PERMISSION",
    "KEY_NOT_FOUND",
    "KEY_DISABLED",
    "KEY_EXPIRED",
    "KEY_NOT_RSA",
    "OPERATION_NOT_ALLOWED",
    "THROTTLED",
    "SERVER",
    "DECRYPT_FAILED",
    "UNEXPECTED",
    "LOCAL",
};

const char *atr_akv_cause_name(atr_akv_cause cause)
{
    if ((unsigned)cause >= sizeof(cause_names) / sizeof(cause_names[0]))
        return "UNKNOWN";
    return cause_names[cause];
}

atr_status atr_akv_cause_status(atr_akv_cause cause)
{
    switch (cause) {
    case ATR_AKV_OK:
        return ATR_OK;
    case ATR_AKV_URI_INVALID:
        return ATR_E_INVALID;
    case ATR_AKV_CREDENTIAL_INVALID:
        return ATR_E_UNAUTHORIZED;
    case ATR_AKV_AUTHORITY_UNREACHABLE:
    case ATR_AKV_VAULT_UNREACHABLE:
        return ATR_E_NETWORK;
    case ATR_AKV_TLS:
        return ATR_E_TLS;
    case ATR_AKV_KEY_NOT_FOUND:
        return ATR_E_NOT_FOUND;
    case ATR_AKV_THROTTLED:
        return ATR_E_THROTTLED;
    case ATR_AKV_SERVER:
    case ATR_AKV_UNEXPECTED:
        return ATR_E_UPSTREAM;
    case ATR_AKV_DECRYPT_FAILED:
        return ATR_E_AUTH_FAILED;
    case ATR_AKV_LOCAL:
        return ATR_E_INTERNAL;
    default:
        return ATR_E_FORBIDDEN;
    }
}

const char *atr_akv_alg_name(atr_akv_alg alg)
{
    switch (alg) {
    case ATR_AKV_ALG_DEFAULT:
    case ATR_AKV_RSA_OAEP_256:
        return "RSA-OAEP-256";
    case ATR_AKV_RSA_OAEP:
        return "RSA-OAEP";
    default:
        return NULL;
    }
}

/* Sets the failure and the message; returns the cause's status. */
static atr_status failed(struct atr_akv_error *fail, struct atr_err *err, atr_akv_cause cause,
                         const char *fmt, ...) ATR_PRINTF(4, 5);

static atr_status failed(struct atr_akv_error *fail, struct atr_err *err, atr_akv_cause cause,
                         const char *fmt, ...)
{
    fail->cause = cause;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    atr_status st = atr_akv_cause_status(cause);
    atr_err_set(err, st, "%s", msg);
    return st;
}

/* Printable ASCII copy (for remote texts kept in details). */
static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (size_t i = 0; src != NULL && src[i] != '\0' && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[o++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    dst[o] = '\0';
}

/* ------------------------------------------------------------ key URIs */

static int name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-';
}

atr_status atr_akv_uri_parse(struct atr_akv_key_uri *out, const char *uri, struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (uri == NULL || uri[0] == '\0')
        return atr_err_set(err, ATR_E_INVALID, "the key URI is empty");
    if (strlen(uri) > ATR_AKV_URI_MAX)
        return atr_err_set(err, ATR_E_INVALID, "the key URI is longer than %d characters",
                           ATR_AKV_URI_MAX);
    if (strncasecmp(uri, "https://", 8) != 0)
        return atr_err_set(err, ATR_E_INVALID, "the key URI must start with https://");
    if (strpbrk(uri, "?#@ \t\r\n\\") != NULL)
        return atr_err_set(err, ATR_E_INVALID,
                           "the key URI must not hold a query, a fragment, user information or "
                           "spaces");
    const char *host = uri + 8;
    const char *slash = strchr(host, '/');
    if (slash == NULL || slash == host)
        return atr_err_set(err, ATR_E_INVALID,
                           "the key URI has no path: expected https://{vault}/keys/{name}");
    size_t hlen = (size_t)(slash - host);
    if (hlen >= ATR_AKV_HOST_MAX)
        return atr_err_set(err, ATR_E_INVALID, "the key URI's host name is too long");
    char h[ATR_AKV_HOST_MAX];
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++) {
        char c = h[i];
        if (!(isalnum((unsigned char)c) || strchr(".-:[]", c) != NULL))
            return atr_err_set(err, ATR_E_INVALID, "the key URI's host name is not valid");
        h[i] = (char)tolower((unsigned char)c);
    }
    /* drop a default :443 */
    size_t hl = strlen(h);
    if (hl > 4 && strcmp(h + hl - 4, ":443") == 0 && h[0] != '[')
        h[hl - 4] = '\0';
    const char *path = slash;
    if (strncmp(path, "/keys/", 6) != 0)
        return atr_err_set(err, ATR_E_INVALID,
                           "the key URI's path must be /keys/{name}[/{version}] (a key, not a "
                           "secret or certificate)");
    const char *name = path + 6;
    size_t nlen = strcspn(name, "/");
    if (nlen == 0 || nlen > ATR_AKV_NAME_MAX)
        return atr_err_set(err, ATR_E_INVALID, "the key name must be 1-127 characters");
    for (size_t i = 0; i < nlen; i++) {
        if (!name_char(name[i]))
            return atr_err_set(err, ATR_E_INVALID,
                               "the key name may hold only letters, digits and '-'");
    }
    const char *rest = name + nlen;
    char version[ATR_AKV_VERSION_LEN + 1] = "";
    if (rest[0] == '/' && rest[1] != '\0') {
        const char *v = rest + 1;
        size_t vlen = strcspn(v, "/");
        if (vlen != ATR_AKV_VERSION_LEN || (v[vlen] == '/' && v[vlen + 1] != '\0'))
            return atr_err_set(err, ATR_E_INVALID,
                               "the key version must be 32 hexadecimal characters");
        for (size_t i = 0; i < vlen; i++) {
            if (!isxdigit((unsigned char)v[i]))
                return atr_err_set(err, ATR_E_INVALID,
                                   "the key version must be 32 hexadecimal characters");
            version[i] = (char)tolower((unsigned char)v[i]);
        }
        version[vlen] = '\0';
    } else if (rest[0] == '/' && rest[1] != '\0') {
        return atr_err_set(err, ATR_E_INVALID, "the key URI has extra path segments");
    }
    snprintf(out->host, sizeof(out->host), "%s", h);
    snprintf(out->vault_url, sizeof(out->vault_url), "https://%s", h);
    memcpy(out->name, name, nlen);
    out->name[nlen] = '\0';
    snprintf(out->version, sizeof(out->version), "%s", version);
    return ATR_OK;
}

atr_status atr_akv_uri_format(char *out, size_t cap, const struct atr_akv_key_uri *key,
                              int with_version)
{
    int n = with_version && key->version[0] != '\0'
                ? snprintf(out, cap, "%s/keys/%s/%s", key->vault_url, key->name, key->version)
                : snprintf(out, cap, "%s/keys/%s", key->vault_url, key->name);
    return n < 0 || (size_t)n >= cap ? ATR_E_INVALID : ATR_OK;
}

/* ------------------------------------------------------------ the client */

int atr_akv_host_allowed(const struct atr_akv_client *c, const char *host)
{
    char bare[ATR_AKV_HOST_MAX];
    snprintf(bare, sizeof(bare), "%s", host);
    if (bare[0] != '[') {
        char *colon = strrchr(bare, ':');
        if (colon != NULL)
            *colon = '\0';
    }
    for (size_t i = 0; i < c->nhosts; i++) {
        const char *e = c->hosts[i];
        if (strchr(e, ':') != NULL && e[0] != '[') {
            if (strcasecmp(e, host) == 0)
                return 1;
            continue;
        }
        size_t el = strlen(e), bl = strlen(bare);
        if (strcasecmp(e, bare) == 0 ||
            (bl > el && bare[bl - el - 1] == '.' && strcasecmp(bare + bl - el, e) == 0))
            return 1;
    }
    return 0;
}

atr_status atr_akv_client_new(struct atr_akv_client **out, const struct atr_akv_client_opts *opts,
                              struct atr_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->client_id == NULL || opts->client_id[0] == '\0' ||
        strlen(opts->client_id) >= 128)
        return atr_err_set(err, ATR_E_CONFIG, "akv: a client id is required");
    if (opts->client_cert_pem != NULL || opts->client_key_pem.len > 0)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "akv: certificate credentials are not supported yet; use a secret");
    if (opts->client_secret == NULL || opts->client_secret[0] == '\0')
        return atr_err_set(err, ATR_E_CONFIG, "akv: a client secret is required");
    if (opts->nresolve > 0)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "akv: resolve entries are not supported");
    const char *authority = opts->authority != NULL ? opts->authority : ATR_AKV_DEFAULT_AUTHORITY;
    if (strncmp(authority, "https://", 8) != 0 || strlen(authority) >= ATR_AKV_URL_MAX ||
        strchr(authority + 8, '/') != NULL || strchr(authority, '?') != NULL)
        return atr_err_set(err, ATR_E_CONFIG, "akv: the authority must be https://host[:port]");
    if (opts->nresources > ATR_AKV_MAX_LIST || opts->nvault_hosts > ATR_AKV_MAX_LIST)
        return atr_err_set(err, ATR_E_CONFIG, "akv: at most %d resources and vault hosts",
                           ATR_AKV_MAX_LIST);
    struct atr_akv_client *c = atr_calloc(1, sizeof(*c));
    if (c == NULL)
        return ATR_E_NOMEM;
    snprintf(c->client_id, sizeof(c->client_id), "%s", opts->client_id);
    c->secret = atr_strdup(opts->client_secret);
    snprintf(c->authority, sizeof(c->authority), "%s", authority);
    if (opts->nresources == 0) {
        snprintf(c->resources[0], ATR_AKV_URL_MAX, "%s", ATR_AKV_DEFAULT_RESOURCE);
        c->nresources = 1;
    }
    for (size_t i = 0; i < opts->nresources; i++)
        snprintf(c->resources[c->nresources++], ATR_AKV_URL_MAX, "%s", opts->resources[i]);
    if (opts->nvault_hosts == 0) {
        snprintf(c->hosts[0], ATR_AKV_HOST_MAX, "%s", ATR_AKV_DEFAULT_HOST);
        c->nhosts = 1;
    }
    for (size_t i = 0; i < opts->nvault_hosts; i++)
        snprintf(c->hosts[c->nhosts++], ATR_AKV_HOST_MAX, "%s", opts->vault_hosts[i]);
    if (opts->ca_file != NULL)
        snprintf(c->ca_file, sizeof(c->ca_file), "%s", opts->ca_file);
    c->http.ca_file = opts->ca_file != NULL ? c->ca_file : NULL;
    c->http.connect_timeout_ms = opts->connect_timeout_ms != 0 ? opts->connect_timeout_ms : 5000;
    c->http.timeout_ms = opts->timeout_ms != 0 ? opts->timeout_ms : 15000;
    c->http.max_response = opts->max_response != 0 ? opts->max_response : 256 * 1024;
    c->http.user_agent = NULL;
    c->op_timeout_ms = opts->op_timeout_ms != 0 ? opts->op_timeout_ms : 30000;
    c->page_size = opts->page_size >= 1 && opts->page_size <= 25 ? opts->page_size : 25;
    c->max_pages = opts->max_pages != 0 ? opts->max_pages : ATR_AKV_MAX_PAGES;
    c->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    pthread_mutex_init(&c->lock, NULL);
    if (c->secret == NULL) {
        atr_akv_client_free(c);
        return ATR_E_NOMEM;
    }
    *out = c;
    return ATR_OK;
}

static void token_drop(struct token_entry *t)
{
    if (t->token != NULL) {
        atr_wipe(t->token, strlen(t->token));
        atr_free(t->token);
    }
    memset(t, 0, sizeof(*t));
}

void atr_akv_client_forget(struct atr_akv_client *c)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->ntokens; i++)
        token_drop(&c->tokens[i]);
    c->ntokens = 0;
    c->nchals = 0;
    pthread_mutex_unlock(&c->lock);
}

void atr_akv_client_free(struct atr_akv_client *c)
{
    if (c == NULL)
        return;
    atr_akv_client_forget(c);
    for (size_t i = 0; i < c->nidle; i++)
        atr_http_client_free(c->idle[i]);
    if (c->secret != NULL) {
        atr_wipe(c->secret, strlen(c->secret));
        atr_free(c->secret);
    }
    pthread_mutex_destroy(&c->lock);
    atr_free(c);
}

void atr_akv_client_stats(struct atr_akv_stats *out, struct atr_akv_client *c)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

/* An HTTP client from the pool (connections are reused between operations). */
static atr_status http_take(struct atr_http_client **out, struct atr_akv_client *c,
                            struct atr_err *err)
{
    pthread_mutex_lock(&c->lock);
    *out = c->nidle > 0 ? c->idle[--c->nidle] : NULL;
    pthread_mutex_unlock(&c->lock);
    if (*out != NULL)
        return ATR_OK;
    return atr_http_client_new(out, &c->http, err);
}

static void http_give(struct atr_akv_client *c, struct atr_http_client *h)
{
    pthread_mutex_lock(&c->lock);
    if (c->nidle < CLIENTS_IDLE) {
        c->idle[c->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    atr_http_client_free(h);
}

/* One request; transport failures become causes against @p who. */
static atr_status send_one(struct atr_http_client_resp *resp, struct atr_akv_client *c,
                           const char *method, const char *url, const struct atr_http_header *hdrs,
                           size_t nhdrs, struct atr_span body, int to_authority, const char *host,
                           struct atr_akv_error *fail, struct atr_err *err)
{
    struct atr_http_client *h = NULL;
    struct atr_err terr;
    atr_err_clear(&terr);
    atr_status rc = http_take(&h, c, &terr);
    if (rc != ATR_OK)
        return failed(fail, err, ATR_AKV_LOCAL, "akv: %s", atr_err_msg(&terr));
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    rq.headers = hdrs;
    rq.nheaders = nhdrs;
    rq.body = body;
    rc = atr_http_client_send(resp, h, &rq, &terr);
    pthread_mutex_lock(&c->lock);
    if (to_authority)
        c->stats.token_requests++;
    else
        c->stats.vault_requests++;
    if (resp->new_connections > 0)
        c->stats.connections += (unsigned long)resp->new_connections;
    pthread_mutex_unlock(&c->lock);
    if (rc != ATR_OK) {
        atr_http_client_free(h); /* a failed connection is not reused */
        snprintf(fail->host, sizeof(fail->host), "%s", host);
        if (rc == ATR_E_TLS)
            return failed(fail, err, ATR_AKV_TLS,
                          "the TLS certificate of %s is not trusted for its host name", host);
        if (rc == ATR_E_NETWORK || rc == ATR_E_TIMEOUT)
            return failed(fail, err,
                          to_authority ? ATR_AKV_AUTHORITY_UNREACHABLE : ATR_AKV_VAULT_UNREACHABLE,
                          "%s cannot be reached (%s)", host,
                          rc == ATR_E_TIMEOUT ? "timed out" : "connection failed");
        return failed(fail, err, ATR_AKV_LOCAL, "akv: %s", atr_err_msg(&terr));
    }
    http_give(c, h);
    const char *rid = atr_http_client_resp_header(resp, "x-ms-request-id");
    if (rid != NULL)
        copy_printable(fail->request_id, sizeof(fail->request_id), rid);
    return ATR_OK;
}

/* ------------------------------------------------------------ tokens */

static struct token_entry *token_find(struct atr_akv_client *c, const char *authority,
                                      const char *tenant, const char *resource)
{
    for (size_t i = 0; i < c->ntokens; i++) {
        struct token_entry *t = &c->tokens[i];
        if (strcmp(t->authority, authority) == 0 && strcasecmp(t->tenant, tenant) == 0 &&
            strcmp(t->resource, resource) == 0)
            return t;
    }
    return NULL;
}

static void token_forget(struct atr_akv_client *c, const char *authority, const char *tenant,
                         const char *resource)
{
    pthread_mutex_lock(&c->lock);
    struct token_entry *t = token_find(c, authority, tenant, resource);
    if (t != NULL) {
        token_drop(t);
        *t = c->tokens[--c->ntokens];
        memset(&c->tokens[c->ntokens], 0, sizeof(c->tokens[0]));
    }
    pthread_mutex_unlock(&c->lock);
}

static int tenant_ok(const char *t)
{
    size_t n = t != NULL ? strlen(t) : 0;
    if (n == 0 || n > ATR_AKV_TENANT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!(isalnum((unsigned char)t[i]) || t[i] == '.' || t[i] == '-'))
            return 0;
    }
    return 1;
}

/* Appends "name=value" form-encoded. */
static int form_add(char *out, size_t cap, const char *name, const char *value)
{
    size_t o = strlen(out);
    int n = snprintf(out + o, cap - o, "%s%s=", o > 0 ? "&" : "", name);
    if (n < 0 || (size_t)n >= cap - o)
        return 0;
    o += (size_t)n;
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if (o + 4 >= cap)
            return 0;
        if (isalnum(*p) || strchr("-._~", *p) != NULL)
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
    }
    out[o] = '\0';
    return 1;
}

/* A token for (authority, tenant, resource): cached or fetched. Caller frees (wiped). */
static atr_status token_get(char **out, struct atr_akv_client *c, const char *authority,
                            const char *tenant, const char *resource, int fresh,
                            struct atr_akv_error *fail, struct atr_err *err)
{
    *out = NULL;
    int64_t now = atr_clock_now_s(c->clock);
    pthread_mutex_lock(&c->lock);
    struct token_entry *t = token_find(c, authority, tenant, resource);
    if (t != NULL && t->expires_s > now && !fresh)
        *out = atr_strdup(t->token);
    pthread_mutex_unlock(&c->lock);
    if (*out != NULL)
        return ATR_OK;
    char url[ATR_AKV_URL_MAX + 128];
    snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", authority, tenant);
    char scope[ATR_AKV_URL_MAX + 16];
    snprintf(scope, sizeof(scope), "%s/.default", resource);
    char form[FORM_MAX] = "";
    if (!form_add(form, sizeof(form), "grant_type", "client_credentials") ||
        !form_add(form, sizeof(form), "client_id", c->client_id) ||
        !form_add(form, sizeof(form), "scope", scope) ||
        !form_add(form, sizeof(form), "client_secret", c->secret)) {
        atr_wipe(form, sizeof(form));
        return failed(fail, err, ATR_AKV_LOCAL, "akv: the token request is too long");
    }
    struct atr_http_header hdr = {"Content-Type", "application/x-www-form-urlencoded"};
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    const char *host = authority + 8;
    atr_status rc =
        send_one(&resp, c, "POST", url, &hdr, 1, atr_span_str(form), 1, host, fail, err);
    atr_wipe(form, sizeof(form));
    if (rc == ATR_OK && resp.status == 200) {
        int64_t expires_in = 0;
        char *tok = NULL;
        rc = atr_akv_token_answer_parse(&tok, &expires_in, atr_buf_span(&resp.body), err);
        if (rc != ATR_OK) {
            rc = failed(fail, err, ATR_AKV_UNEXPECTED,
                        "the identity authority %s gave a "
                        "malformed token answer",
                        host);
        } else {
            int64_t margin = expires_in >= 600 ? ATR_AKV_TOKEN_MARGIN_S : expires_in / 2;
            pthread_mutex_lock(&c->lock);
            struct token_entry *e = token_find(c, authority, tenant, resource);
            if (e == NULL && c->ntokens < MAX_TOKENS)
                e = &c->tokens[c->ntokens++];
            if (e == NULL) { /* full: replace the first */
                e = &c->tokens[0];
            }
            token_drop(e);
            snprintf(e->authority, sizeof(e->authority), "%s", authority);
            snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
            snprintf(e->resource, sizeof(e->resource), "%s", resource);
            e->token = atr_strdup(tok);
            e->expires_s = now + expires_in - margin;
            pthread_mutex_unlock(&c->lock);
            *out = tok;
        }
    } else if (rc == ATR_OK) {
        snprintf(fail->host, sizeof(fail->host), "%s", host);
        rc = atr_akv_token_error_classify(fail, host, tenant, c->client_id, resp.status,
                                          atr_http_client_resp_header(&resp, "Retry-After"),
                                          atr_buf_span(&resp.body), err);
    }
    atr_wipe(resp.body.ptr, resp.body.len);
    atr_http_client_resp_cleanup(&resp);
    return rc;
}

atr_status atr_akv_token_probe(struct atr_akv_client *c, const char *tenant,
                               struct atr_akv_error *fail, struct atr_err *err)
{
    struct atr_akv_error local;
    if (fail == NULL)
        fail = &local;
    memset(fail, 0, sizeof(*fail));
    if (!tenant_ok(tenant))
        return failed(fail, err, ATR_AKV_LOCAL, "akv: bad directory id");
    char *tok = NULL;
    atr_status rc = token_get(&tok, c, c->authority, tenant, c->resources[0], 1, fail, err);
    if (tok != NULL) {
        atr_wipe(tok, strlen(tok));
        atr_free(tok);
    }
    return rc;
}

/* ------------------------------------------------------------ vault calls */

static int chal_get(struct atr_akv_challenge *out, struct atr_akv_client *c, const char *host)
{
    int found = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nchals && !found; i++) {
        if (strcmp(c->chals[i].host, host) == 0) {
            *out = c->chals[i].c;
            found = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

static void chal_put(struct atr_akv_client *c, const char *host, const struct atr_akv_challenge *ch)
{
    pthread_mutex_lock(&c->lock);
    size_t i = 0;
    while (i < c->nchals && strcmp(c->chals[i].host, host) != 0)
        i++;
    if (i == c->nchals) {
        if (c->nchals == MAX_HOSTS)
            i = 0;
        else
            c->nchals++;
    }
    snprintf(c->chals[i].host, sizeof(c->chals[i].host), "%s", host);
    c->chals[i].c = *ch;
    c->stats.challenges++;
    pthread_mutex_unlock(&c->lock);
}

/* Checks a challenge against the settings and the key's required directory. */
static atr_status chal_check(const struct atr_akv_client *c, const struct atr_akv_challenge *ch,
                             const struct atr_akv_key_uri *key, struct atr_akv_error *fail,
                             struct atr_err *err)
{
    if (strcasecmp(ch->authority, c->authority) != 0)
        return failed(fail, err, ATR_AKV_UNEXPECTED,
                      "the vault %s asks for tokens of another identity authority", key->host);
    int known = 0;
    for (size_t i = 0; i < c->nresources; i++)
        known |= strcasecmp(ch->resource, c->resources[i]) == 0;
    if (!known)
        return failed(fail, err, ATR_AKV_UNEXPECTED,
                      "the vault %s asks for tokens of an unknown resource", key->host);
    if (key->directory[0] != '\0' && strcasecmp(key->directory, ch->tenant) != 0) {
        snprintf(fail->host, sizeof(fail->host), "%s", key->host);
        return failed(fail, err, ATR_AKV_DIRECTORY_MISMATCH,
                      "the vault %s belongs to directory %s, not to this tenant's directory %s",
                      key->host, ch->tenant, key->directory);
    }
    return ATR_OK;
}

/*
 * One vault call with the bearer-challenge flow: @p path below the vault
 * URL (query included), JSON @p body or none. On ATR_OK @p resp holds an
 * answer that is not a 401 (any status).
 */
static atr_status vault_call(struct atr_http_client_resp *resp, struct atr_akv_client *c,
                             const struct atr_akv_key_uri *key, const char *method, const char *url,
                             const char *body, struct atr_akv_error *fail, struct atr_err *err)
{
    if (!atr_akv_host_allowed(c, key->host))
        return failed(fail, err, ATR_AKV_URI_INVALID,
                      "the vault host %s is not one this service may call", key->host);
    struct atr_akv_challenge ch;
    int have = chal_get(&ch, c, key->host);
    char *tok = NULL;
    atr_status rc = ATR_OK;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (have) {
            ATR_TRY(chal_check(c, &ch, key, fail, err));
            if (tok == NULL && (rc = token_get(&tok, c, ch.authority, ch.tenant, ch.resource, 0,
                                               fail, err)) != ATR_OK)
                break;
        }
        char auth[TOKEN_MAX + 16];
        struct atr_http_header hdrs[2];
        size_t nh = 0;
        if (tok != NULL) {
            snprintf(auth, sizeof(auth), "Bearer %s", tok);
            hdrs[nh++] = (struct atr_http_header){"Authorization", auth};
        }
        if (body != NULL)
            hdrs[nh++] = (struct atr_http_header){"Content-Type", "application/json"};
        atr_http_client_resp_cleanup(resp);
        atr_http_client_resp_init(resp);
        rc = send_one(resp, c, method, url, hdrs, nh,
                      body != NULL ? atr_span_str(body) : atr_span_of(NULL, 0), 0, key->host, fail,
                      err);
        atr_wipe(auth, sizeof(auth));
        if (rc != ATR_OK || resp->status != 401)
            break;
        /* 401: learn (or re-learn) the challenge, drop a refused token, retry */
        const char *www = atr_http_client_resp_header(resp, "WWW-Authenticate");
        struct atr_akv_challenge nc;
        if (www == NULL || atr_akv_challenge_parse(&nc, www, NULL) != ATR_OK) {
            rc = failed(fail, err, ATR_AKV_UNEXPECTED,
                        "the vault %s refused the call without a usable challenge", key->host);
            break;
        }
        if (tok != NULL) {
            token_forget(c, nc.authority, nc.tenant, nc.resource);
            atr_wipe(tok, strlen(tok));
            atr_free(tok);
            tok = NULL;
            if (attempt >= 1) {
                fail->http_status = 401;
                rc = failed(fail, err, ATR_AKV_CREDENTIAL_INVALID,
                            "the vault %s refused the service's token", key->host);
                break;
            }
        }
        chal_put(c, key->host, &nc);
        ch = nc;
        have = 1;
    }
    if (tok != NULL) {
        atr_wipe(tok, strlen(tok));
        atr_free(tok);
    }
    if (rc == ATR_OK && resp->status == 401) {
        fail->http_status = 401;
        rc = failed(fail, err, ATR_AKV_CREDENTIAL_INVALID,
                    "the vault %s refused the service's "
                    "token",
                    key->host);
    }
    return rc;
}

/* Classifies a non-200 vault answer. */
static atr_status vault_answer_error(const struct atr_http_client_resp *resp, atr_akv_op op,
                                     const struct atr_akv_key_uri *key, struct atr_akv_error *fail,
                                     struct atr_err *err)
{
    return atr_akv_vault_error_classify(
        fail, op, key, resp->status, atr_http_client_resp_header(resp, "Retry-After"),
        atr_http_client_resp_header(resp, "x-ms-request-id"), atr_buf_span(&resp->body), err);
}

static atr_status key_op(struct atr_buf *out_value, char out_kid[ATR_AKV_KID_MAX],
                         struct atr_akv_client *c, const struct atr_akv_key_uri *key, atr_akv_op op,
                         atr_akv_alg alg, struct atr_span value, struct atr_akv_error *fail,
                         struct atr_err *err)
{
    const char *algname = atr_akv_alg_name(alg);
    if (algname == NULL || value.len == 0 || value.len > ATR_AKV_VALUE_MAX)
        return failed(fail, err, ATR_AKV_LOCAL, "akv: bad algorithm or value size");
    char *b64 = NULL;
    if (atr_b64url_encode_str(&b64, value) != ATR_OK)
        return failed(fail, err, ATR_AKV_LOCAL, "akv: out of memory");
    json_t *j = json_pack("{s:s,s:s}", "alg", algname, "value", b64);
    char *body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    atr_wipe(b64, strlen(b64));
    atr_free(b64);
    if (body == NULL)
        return failed(fail, err, ATR_AKV_LOCAL, "akv: out of memory");
    char url[ATR_AKV_URL_MAX + ATR_AKV_NAME_MAX + 96];
    const char *verb = op == ATR_AKV_OP_WRAP ? "wrapkey" : "unwrapkey";
    if (op == ATR_AKV_OP_UNWRAP && key->version[0] != '\0')
        snprintf(url, sizeof(url), "%s/keys/%s/%s/%s?api-version=%s", key->vault_url, key->name,
                 key->version, verb, ATR_AKV_API_VERSION);
    else
        snprintf(url, sizeof(url), "%s/keys/%s/%s?api-version=%s", key->vault_url, key->name, verb,
                 ATR_AKV_API_VERSION);
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    atr_status rc = vault_call(&resp, c, key, "POST", url, body, fail, err);
    atr_wipe(body, strlen(body));
    free(body);
    if (rc == ATR_OK && resp.status == 200) {
        rc = atr_akv_key_op_answer_parse(out_kid, out_value, key, atr_buf_span(&resp.body), err);
        if (rc != ATR_OK)
            rc = failed(fail, err, ATR_AKV_UNEXPECTED, "the vault %s gave a malformed %s answer",
                        key->host, verb);
    } else if (rc == ATR_OK) {
        rc = vault_answer_error(&resp, op, key, fail, err);
    }
    atr_wipe(resp.body.ptr, resp.body.len);
    atr_http_client_resp_cleanup(&resp);
    return rc;
}

atr_status atr_akv_wrap(struct atr_buf *out, char out_kid[ATR_AKV_KID_MAX],
                        struct atr_akv_client *c, const struct atr_akv_key_uri *key,
                        atr_akv_alg alg, struct atr_span value, struct atr_akv_error *fail,
                        struct atr_err *err)
{
    struct atr_akv_error local;
    if (fail == NULL)
        fail = &local;
    memset(fail, 0, sizeof(*fail));
    out_kid[0] = '\0';
    struct atr_akv_key_uri k = *key;
    k.version[0] = '\0'; /* always the latest version */
    struct atr_buf tmp;
    atr_buf_init(&tmp, ATR_AKV_VALUE_MAX);
    atr_status rc = key_op(&tmp, out_kid, c, &k, ATR_AKV_OP_WRAP, alg, value, fail, err);
    if (rc == ATR_OK && atr_buf_append(out, tmp.ptr, tmp.len) != ATR_OK)
        rc = failed(fail, err, ATR_AKV_LOCAL, "akv: no room for the wrapped value");
    if (rc != ATR_OK)
        out_kid[0] = '\0';
    atr_buf_cleanup(&tmp);
    return rc;
}

atr_status atr_akv_unwrap(struct atr_secret *out, char *out_kid, struct atr_akv_client *c,
                          const struct atr_akv_key_uri *key, atr_akv_alg alg,
                          struct atr_span wrapped, struct atr_akv_error *fail, struct atr_err *err)
{
    struct atr_akv_error local;
    if (fail == NULL)
        fail = &local;
    memset(fail, 0, sizeof(*fail));
    char kid[ATR_AKV_KID_MAX];
    struct atr_buf tmp;
    atr_buf_init(&tmp, ATR_AKV_VALUE_MAX);
    atr_status rc = key_op(&tmp, kid, c, key, ATR_AKV_OP_UNWRAP, alg, wrapped, fail, err);
    if (rc == ATR_OK && atr_secret_init_copy(out, tmp.ptr, tmp.len) != ATR_OK)
        rc = failed(fail, err, ATR_AKV_LOCAL, "akv: out of secure memory");
    if (out_kid != NULL)
        snprintf(out_kid, ATR_AKV_KID_MAX, "%s", rc == ATR_OK ? kid : "");
    atr_wipe(tmp.ptr, tmp.len);
    atr_buf_cleanup(&tmp);
    return rc;
}

atr_status atr_akv_list_versions(struct atr_akv_versions *out, struct atr_akv_client *c,
                                 const struct atr_akv_key_uri *key, struct atr_akv_error *fail,
                                 struct atr_err *err)
{
    struct atr_akv_error local;
    if (fail == NULL)
        fail = &local;
    memset(fail, 0, sizeof(*fail));
    memset(out, 0, sizeof(*out));
    char url[2048];
    snprintf(url, sizeof(url), "%s/keys/%s/versions?api-version=%s&maxresults=%u", key->vault_url,
             key->name, ATR_AKV_API_VERSION, c->page_size);
    atr_status rc = ATR_OK;
    for (unsigned page = 0; rc == ATR_OK && url[0] != '\0'; page++) {
        if (page == c->max_pages) {
            out->truncated = 1;
            break;
        }
        struct atr_http_client_resp resp;
        atr_http_client_resp_init(&resp);
        rc = vault_call(&resp, c, key, "GET", url, NULL, fail, err);
        if (rc == ATR_OK && resp.status == 200) {
            char next[2048];
            rc = atr_akv_versions_page_parse(out, next, sizeof(next), key,
                                             (size_t)c->max_pages * ATR_AKV_PAGE_SIZE,
                                             atr_buf_span(&resp.body), err);
            if (rc != ATR_OK)
                rc = failed(fail, err, ATR_AKV_UNEXPECTED,
                            "the vault %s gave a malformed version list", key->host);
            else
                snprintf(url, sizeof(url), "%s", next);
        } else if (rc == ATR_OK) {
            rc = vault_answer_error(&resp, ATR_AKV_OP_LIST, key, fail, err);
        }
        atr_http_client_resp_cleanup(&resp);
    }
    if (rc != ATR_OK)
        atr_akv_versions_cleanup(out);
    return rc;
}

void atr_akv_versions_cleanup(struct atr_akv_versions *v)
{
    if (v == NULL)
        return;
    atr_free(v->items);
    memset(v, 0, sizeof(*v));
}

const struct atr_akv_key_version *atr_akv_versions_latest(const struct atr_akv_versions *v,
                                                          int64_t now_s)
{
    const struct atr_akv_key_version *best = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const struct atr_akv_key_version *k = &v->items[i];
        if (!k->enabled || (k->nbf != 0 && now_s < k->nbf) || (k->exp != 0 && now_s >= k->exp))
            continue;
        if (best == NULL || k->created >= best->created)
            best = k;
    }
    return best;
}

/* ------------------------------------------------------------ batches */

struct batch_op {
    atr_akv_op op;
    struct atr_akv_key_uri key;
    atr_akv_alg alg;
    struct atr_buf input;
    char tenant[ATR_AKV_TENANT_MAX + 1];
    struct atr_akv_result result;
    int taken;
};

struct atr_akv_batch {
    struct atr_akv_client *c;
    struct batch_op *ops;
    size_t n, cap;
    int ran;
};

atr_status atr_akv_batch_new(struct atr_akv_batch **out, struct atr_akv_client *c,
                             struct atr_err *err)
{
    *out = atr_calloc(1, sizeof(**out));
    if (*out == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "akv: out of memory");
    (*out)->c = c;
    return ATR_OK;
}

void atr_akv_batch_free(struct atr_akv_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        struct batch_op *o = &b->ops[i];
        atr_wipe(o->input.ptr, o->input.len);
        atr_buf_cleanup(&o->input);
        atr_buf_cleanup(&o->result.wrapped);
        atr_secret_cleanup(&o->result.unwrapped);
        atr_akv_versions_cleanup(&o->result.versions);
    }
    atr_free(b->ops);
    atr_free(b);
}

static atr_status batch_add(struct batch_op **out, size_t *out_index, struct atr_akv_batch *b,
                            atr_akv_op op, struct atr_err *err)
{
    if (b->ran)
        return atr_err_set(err, ATR_E_INVALID, "akv: the batch already ran");
    if (b->n == ATR_AKV_BATCH_MAX)
        return atr_err_set(err, ATR_E_TOO_LARGE, "akv: too many operations in one batch");
    if (b->n == b->cap) {
        size_t ncap = b->cap == 0 ? 16 : b->cap * 2;
        struct batch_op *n = atr_realloc(b->ops, ncap * sizeof(*n));
        if (n == NULL)
            return atr_err_set(err, ATR_E_NOMEM, "akv: out of memory");
        b->ops = n;
        b->cap = ncap;
    }
    struct batch_op *o = &b->ops[b->n];
    memset(o, 0, sizeof(*o));
    o->op = op;
    o->result.op = op;
    atr_buf_init(&o->input, ATR_AKV_VALUE_MAX);
    atr_buf_init(&o->result.wrapped, ATR_AKV_VALUE_MAX);
    if (out_index != NULL)
        *out_index = b->n;
    b->n++;
    *out = o;
    return ATR_OK;
}

static atr_status batch_add_value(struct atr_akv_batch *b, size_t *out_index, atr_akv_op op,
                                  const struct atr_akv_key_uri *key, atr_akv_alg alg,
                                  struct atr_span value, struct atr_err *err)
{
    if (atr_akv_alg_name(alg) == NULL || value.len == 0 || value.len > ATR_AKV_VALUE_MAX)
        return atr_err_set(err, ATR_E_INVALID, "akv: bad algorithm or value size");
    struct batch_op *o = NULL;
    ATR_TRY(batch_add(&o, out_index, b, op, err));
    o->key = *key;
    o->alg = alg;
    if (atr_buf_append(&o->input, value.ptr, value.len) != ATR_OK) {
        b->n--;
        atr_buf_cleanup(&o->input);
        return atr_err_set(err, ATR_E_NOMEM, "akv: out of memory");
    }
    return ATR_OK;
}

atr_status atr_akv_batch_add_wrap(struct atr_akv_batch *b, size_t *out_index,
                                  const struct atr_akv_key_uri *key, atr_akv_alg alg,
                                  struct atr_span value, struct atr_err *err)
{
    return batch_add_value(b, out_index, ATR_AKV_OP_WRAP, key, alg, value, err);
}

atr_status atr_akv_batch_add_unwrap(struct atr_akv_batch *b, size_t *out_index,
                                    const struct atr_akv_key_uri *key, atr_akv_alg alg,
                                    struct atr_span wrapped, struct atr_err *err)
{
    return batch_add_value(b, out_index, ATR_AKV_OP_UNWRAP, key, alg, wrapped, err);
}

atr_status atr_akv_batch_add_list_versions(struct atr_akv_batch *b, size_t *out_index,
                                           const struct atr_akv_key_uri *key, struct atr_err *err)
{
    struct batch_op *o = NULL;
    ATR_TRY(batch_add(&o, out_index, b, ATR_AKV_OP_LIST, err));
    o->key = *key;
    return ATR_OK;
}

atr_status atr_akv_batch_add_token(struct atr_akv_batch *b, size_t *out_index, const char *tenant,
                                   struct atr_err *err)
{
    if (!tenant_ok(tenant))
        return atr_err_set(err, ATR_E_INVALID, "akv: bad directory id");
    struct batch_op *o = NULL;
    ATR_TRY(batch_add(&o, out_index, b, ATR_AKV_OP_TOKEN, err));
    snprintf(o->tenant, sizeof(o->tenant), "%s", tenant);
    return ATR_OK;
}

size_t atr_akv_batch_count(const struct atr_akv_batch *b)
{
    return b->n;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

atr_status atr_akv_batch_run(struct atr_akv_batch *b, unsigned timeout_ms, struct atr_err *err)
{
    if (b->ran)
        return atr_err_set(err, ATR_E_INVALID, "akv: the batch already ran");
    b->ran = 1;
    int64_t deadline = mono_ms() + timeout_ms;
    for (size_t i = 0; i < b->n; i++) {
        struct batch_op *o = &b->ops[i];
        struct atr_akv_result *r = &o->result;
        atr_err_clear(&r->err);
        if (mono_ms() >= deadline) {
            r->status = failed(&r->fail, &r->err,
                               o->op == ATR_AKV_OP_TOKEN ? ATR_AKV_AUTHORITY_UNREACHABLE
                                                         : ATR_AKV_VAULT_UNREACHABLE,
                               "the batch's deadline passed before this operation ran");
            continue;
        }
        switch (o->op) {
        case ATR_AKV_OP_WRAP:
            r->status = atr_akv_wrap(&r->wrapped, r->kid, b->c, &o->key, o->alg,
                                     atr_buf_span(&o->input), &r->fail, &r->err);
            break;
        case ATR_AKV_OP_UNWRAP:
            r->status = atr_akv_unwrap(&r->unwrapped, r->kid, b->c, &o->key, o->alg,
                                       atr_buf_span(&o->input), &r->fail, &r->err);
            break;
        case ATR_AKV_OP_LIST:
            r->status = atr_akv_list_versions(&r->versions, b->c, &o->key, &r->fail, &r->err);
            break;
        default:
            r->status = atr_akv_token_probe(b->c, o->tenant, &r->fail, &r->err);
            break;
        }
    }
    return ATR_OK;
}

const struct atr_akv_result *atr_akv_batch_result(const struct atr_akv_batch *b, size_t index)
{
    return index < b->n ? &b->ops[index].result : NULL;
}

atr_status atr_akv_batch_take_unwrapped(struct atr_secret *out, struct atr_akv_batch *b,
                                        size_t index)
{
    if (index >= b->n || b->ops[index].op != ATR_AKV_OP_UNWRAP ||
        b->ops[index].result.status != ATR_OK || b->ops[index].taken)
        return ATR_E_INVALID;
    *out = b->ops[index].result.unwrapped;
    memset(&b->ops[index].result.unwrapped, 0, sizeof(b->ops[index].result.unwrapped));
    b->ops[index].taken = 1;
    return ATR_OK;
}

/* ------------------------------------------------------------ parsers */

/* Reads one auth-param value (quoted or token) at *p; advances. */
static int param_value(char *out, size_t cap, const char **p)
{
    const char *s = *p;
    size_t o = 0;
    if (*s == '"') {
        s++;
        while (*s != '\0' && *s != '"') {
            if (*s == '\\' && s[1] != '\0')
                s++;
            if (o + 1 >= cap)
                return 0;
            out[o++] = *s++;
        }
        if (*s != '"')
            return 0;
        s++;
    } else {
        while (*s != '\0' && *s != ',' && *s != ' ' && *s != '\t') {
            if (o + 1 >= cap)
                return 0;
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
    *p = s;
    return 1;
}

atr_status atr_akv_challenge_parse(struct atr_akv_challenge *out, const char *www,
                                   struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (www == NULL)
        return atr_err_set(err, ATR_E_PARSE, "akv: no challenge");
    const char *p = www;
    while (*p == ' ')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\0'))
        return atr_err_set(err, ATR_E_PARSE, "akv: not a Bearer challenge");
    p += 6;
    char authz[ATR_AKV_URL_MAX + ATR_AKV_TENANT_MAX + 2] = "";
    char resource[ATR_AKV_URL_MAX + 16] = "";
    while (*p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        char name[64];
        size_t n = 0;
        while (*p != '\0' && *p != '=' && *p != ' ' && n + 1 < sizeof(name))
            name[n++] = *p++;
        name[n] = '\0';
        while (*p == ' ')
            p++;
        if (*p != '=')
            return atr_err_set(err, ATR_E_PARSE, "akv: malformed challenge parameter");
        p++;
        while (*p == ' ')
            p++;
        char value[ATR_AKV_URL_MAX + ATR_AKV_TENANT_MAX + 16];
        if (!param_value(value, sizeof(value), &p))
            return atr_err_set(err, ATR_E_PARSE, "akv: malformed or too long challenge value");
        if (strcasecmp(name, "authorization") == 0 || strcasecmp(name, "authorization_uri") == 0) {
            if (strlen(value) >= sizeof(authz))
                return atr_err_set(err, ATR_E_PARSE, "akv: challenge value too long");
            memcpy(authz, value, strlen(value) + 1);
        } else if (strcasecmp(name, "resource") == 0 ||
                   (strcasecmp(name, "scope") == 0 && resource[0] == '\0')) {
            if (strlen(value) >= sizeof(resource))
                return atr_err_set(err, ATR_E_PARSE, "akv: challenge value too long");
            memcpy(resource, value, strlen(value) + 1);
        }
    }
    if (authz[0] == '\0' || resource[0] == '\0')
        return atr_err_set(err, ATR_E_PARSE, "akv: the challenge lacks authorization or resource");
    size_t rl = strlen(resource);
    if (rl > 9 && strcmp(resource + rl - 9, "/.default") == 0)
        resource[rl -= 9] = '\0';
    while (rl > 8 && resource[rl - 1] == '/')
        resource[--rl] = '\0';
    if (strncmp(authz, "https://", 8) != 0 || strpbrk(authz, "?@#") != NULL)
        return atr_err_set(err, ATR_E_PARSE, "akv: the challenge's authorization is not https");
    size_t al = strlen(authz);
    while (al > 8 && authz[al - 1] == '/')
        authz[--al] = '\0';
    char *slash = strrchr(authz + 8, '/');
    if (slash == NULL || !tenant_ok(slash + 1))
        return atr_err_set(err, ATR_E_PARSE, "akv: the challenge's authorization has no tenant");
    *slash = '\0';
    if (strlen(authz) >= sizeof(out->authority) || strlen(resource) >= sizeof(out->resource))
        return atr_err_set(err, ATR_E_PARSE, "akv: challenge values too long");
    snprintf(out->tenant, sizeof(out->tenant), "%s", slash + 1);
    memcpy(out->authority, authz, strlen(authz) + 1); /* length checked above */
    memcpy(out->resource, resource, strlen(resource) + 1);
    return ATR_OK;
}

atr_status atr_akv_token_answer_parse(char **out_token, int64_t *out_expires_in,
                                      struct atr_span body, struct atr_err *err)
{
    *out_token = NULL;
    *out_expires_in = 0;
    json_t *j = json_loadb((const char *)body.ptr, body.len, JSON_REJECT_DUPLICATES, NULL);
    const char *type = json_string_value(json_object_get(j, "token_type"));
    json_t *tok = json_object_get(j, "access_token");
    json_t *exp = json_object_get(j, "expires_in");
    int64_t e = json_is_integer(exp)  ? (int64_t)json_integer_value(exp)
                : json_is_string(exp) ? strtoll(json_string_value(exp), NULL, 10)
                                      : 0;
    const char *t = json_string_value(tok);
    int ok = j != NULL && type != NULL && strcasecmp(type, "Bearer") == 0 && t != NULL &&
             t[0] != '\0' && strlen(t) < TOKEN_MAX && strpbrk(t, " \t\r\n\"") == NULL && e >= 1 &&
             e <= 7 * 86400;
    atr_status rc = ATR_OK;
    if (!ok) {
        rc = atr_err_set(err, ATR_E_UPSTREAM, "akv: malformed token answer");
    } else if ((*out_token = atr_strdup(t)) == NULL) {
        rc = ATR_E_NOMEM;
    } else {
        *out_expires_in = e;
    }
    if (t != NULL)
        atr_wipe((char *)t, strlen(t));
    json_decref(j);
    return rc;
}

unsigned atr_akv_retry_after_parse(const char *value, int64_t now_s)
{
    if (value == NULL || value[0] == '\0')
        return 0;
    char *end = NULL;
    long long v = strtoll(value, &end, 10);
    if (end != value && *end == '\0')
        return v <= 0 ? 0 : v > 86400 ? 86400 : (unsigned)v;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *r = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (r == NULL || *r != '\0')
        return 0;
    int64_t at = (int64_t)timegm(&tm);
    int64_t d = at - now_s;
    return d <= 0 ? 0 : d > 86400 ? 86400 : (unsigned)d;
}

atr_status atr_akv_token_error_classify(struct atr_akv_error *out, const char *authority_host,
                                        const char *tenant, const char *client_id,
                                        unsigned http_status, const char *retry_after,
                                        struct atr_span body, struct atr_err *err)
{
    out->http_status = http_status;
    out->retry_after_s = atr_akv_retry_after_parse(retry_after, (int64_t)time(NULL));
    json_t *j = json_loadb((const char *)body.ptr, body.len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "error"));
    const char *desc = json_string_value(json_object_get(j, "error_description"));
    long long aadsts = json_integer_value(json_array_get(json_object_get(j, "error_codes"), 0));
    if (aadsts == 0 && desc != NULL && strncmp(desc, "AADSTS", 6) == 0)
        aadsts = strtoll(desc + 6, NULL, 10);
    copy_printable(out->code, sizeof(out->code), code);
    snprintf(out->inner_code, sizeof(out->inner_code), "AADSTS%lld", aadsts);
    copy_printable(out->detail, sizeof(out->detail), desc);
    const char *cid = json_string_value(json_object_get(j, "correlation_id"));
    if (cid != NULL)
        copy_printable(out->request_id, sizeof(out->request_id), cid);
    json_decref(j);
    if (http_status == 429)
        return failed(out, err, ATR_AKV_THROTTLED, "the identity authority %s is throttling",
                      authority_host);
    if (http_status >= 500)
        return failed(out, err, ATR_AKV_SERVER, "the identity authority %s answered %u",
                      authority_host, http_status);
    switch (aadsts) {
    case 90002:
    case 900023:
    case 90072:
        return failed(out, err, ATR_AKV_DIRECTORY_UNKNOWN,
                      "the directory %s is unknown to the identity authority (AADSTS%lld)", tenant,
                      aadsts);
    case 700016:
        return failed(out, err, ATR_AKV_SP_MISSING,
                      "the application %s has no service principal in directory %s "
                      "(AADSTS700016)",
                      client_id, tenant);
    case 7000112:
        return failed(out, err, ATR_AKV_SP_DISABLED,
                      "the service principal of application %s is disabled in directory %s "
                      "(AADSTS7000112)",
                      client_id, tenant);
    case 7000215:
    case 700027:
    case 7000222:
    case 700024:
        return failed(out, err, ATR_AKV_CREDENTIAL_INVALID,
                      "the identity authority refused the service's credential (AADSTS%lld)",
                      aadsts);
    default:
        return failed(out, err, ATR_AKV_UNEXPECTED,
                      "the identity authority refused a token for directory %s (%s, AADSTS%lld)",
                      tenant, out->code[0] != '\0' ? out->code : "no error code", aadsts);
    }
}

/* Finds "does not have keys <perm> permission" in @p msg. */
static void permission_of(char *out, size_t cap, const char *msg, atr_akv_op op)
{
    const char *p = msg != NULL ? strstr(msg, "does not have keys ") : NULL;
    if (p != NULL) {
        p += strlen("does not have keys ");
        size_t n = strcspn(p, " ");
        if (n > 0 && n < cap) {
            memcpy(out, p, n);
            out[n] = '\0';
            return;
        }
    }
    snprintf(out, cap, "%s",
             op == ATR_AKV_OP_WRAP     ? "wrapKey"
             : op == ATR_AKV_OP_UNWRAP ? "unwrapKey"
                                       : "list");
}

static int contains_ci(const char *hay, const char *needle)
{
    if (hay == NULL)
        return 0;
    size_t n = strlen(needle);
    for (const char *p = hay; *p != '\0'; p++) {
        if (strncasecmp(p, needle, n) == 0)
            return 1;
    }
    return 0;
}

atr_status atr_akv_vault_error_classify(struct atr_akv_error *out, atr_akv_op op,
                                        const struct atr_akv_key_uri *key, unsigned http_status,
                                        const char *retry_after, const char *request_id,
                                        struct atr_span body, struct atr_err *err)
{
    out->http_status = http_status;
    out->retry_after_s = atr_akv_retry_after_parse(retry_after, (int64_t)time(NULL));
    snprintf(out->host, sizeof(out->host), "%s", key->host);
    if (request_id != NULL)
        copy_printable(out->request_id, sizeof(out->request_id), request_id);
    json_t *j = json_loadb((const char *)body.ptr, body.len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    json_t *inner = json_object_get(e, "innererror");
    if (inner == NULL)
        inner = json_object_get(e, "innerError");
    const char *icode = json_string_value(json_object_get(inner, "code"));
    copy_printable(out->code, sizeof(out->code), code);
    copy_printable(out->inner_code, sizeof(out->inner_code), icode);
    copy_printable(out->detail, sizeof(out->detail), msg);
    const char *what = op == ATR_AKV_OP_WRAP     ? "wrapKey"
                       : op == ATR_AKV_OP_UNWRAP ? "unwrapKey"
                                                 : "list";
    atr_akv_cause cause = ATR_AKV_UNEXPECTED;
    if (http_status == 429)
        cause = ATR_AKV_THROTTLED;
    else if (http_status >= 500)
        cause = ATR_AKV_SERVER;
    else if (http_status == 404)
        cause = ATR_AKV_KEY_NOT_FOUND;
    else if (http_status == 401)
        cause =
            contains_ci(msg, "AKV10032") ? ATR_AKV_DIRECTORY_MISMATCH : ATR_AKV_CREDENTIAL_INVALID;
    else if (http_status == 403) {
        if (contains_ci(icode, "ForbiddenByFirewall") || contains_ci(msg, "Client address"))
            cause = ATR_AKV_FIREWALL;
        else if (contains_ci(icode, "KeyDisabled") || contains_ci(msg, "disabled key"))
            cause = ATR_AKV_KEY_DISABLED;
        else if (contains_ci(icode, "KeyExpired") || contains_ci(icode, "KeyNotYetValid") ||
                 contains_ci(msg, "expired") || contains_ci(msg, "not yet valid"))
            cause = ATR_AKV_KEY_EXPIRED;
        else if (contains_ci(icode, "OperationNotAllowed") || contains_ci(msg, "not permitted"))
            cause = ATR_AKV_OPERATION_NOT_ALLOWED;
        else
            cause = ATR_AKV_PERMISSION;
    } else if (http_status == 400) {
        if (op == ATR_AKV_OP_UNWRAP && (contains_ci(msg, "decrypt") || contains_ci(msg, "unwrap")))
            cause = ATR_AKV_DECRYPT_FAILED;
        if (contains_ci(msg, "key type") || contains_ci(msg, "RSA key") ||
            contains_ci(msg, "not compatible") || contains_ci(msg, "Invalid algorithm"))
            cause = ATR_AKV_KEY_NOT_RSA;
    }
    json_decref(j);
    switch (cause) {
    case ATR_AKV_THROTTLED:
        return failed(out, err, cause, "the vault %s is throttling requests", key->host);
    case ATR_AKV_SERVER:
        return failed(out, err, cause, "the vault %s answered %u", key->host, http_status);
    case ATR_AKV_KEY_NOT_FOUND:
        return failed(out, err, cause, "the key %s was not found in vault %s", key->name,
                      key->host);
    case ATR_AKV_DIRECTORY_MISMATCH:
        return failed(out, err, cause, "the vault %s belongs to another directory", key->host);
    case ATR_AKV_CREDENTIAL_INVALID:
        return failed(out, err, cause, "the vault %s refused the service's token", key->host);
    case ATR_AKV_FIREWALL:
        return failed(out, err, cause, "the firewall of vault %s refuses the service", key->host);
    case ATR_AKV_KEY_DISABLED:
        return failed(out, err, cause, "the key %s is disabled", key->name);
    case ATR_AKV_KEY_EXPIRED:
        return failed(out, err, cause, "the key %s is expired or not yet valid", key->name);
    case ATR_AKV_OPERATION_NOT_ALLOWED:
        return failed(out, err, cause, "the key %s does not permit %s", key->name, what);
    case ATR_AKV_PERMISSION:
        permission_of(out->permission, sizeof(out->permission), out->detail, op);
        return failed(out, err, cause,
                      "the service's application lacks the keys %s permission on vault %s",
                      out->permission, key->host);
    case ATR_AKV_DECRYPT_FAILED:
        return failed(out, err, cause, "the vault %s could not unwrap the value with key %s",
                      key->host, key->name);
    case ATR_AKV_KEY_NOT_RSA:
        return failed(out, err, cause, "the key %s is not an RSA key that can %s", key->name, what);
    default:
        return failed(out, err, ATR_AKV_UNEXPECTED, "the vault %s answered %u (%s) to %s",
                      key->host, http_status, out->code[0] != '\0' ? out->code : "no code", what);
    }
}

/* Checks that @p kid names a version of @p key; copies the version. */
static int kid_matches(const char *kid, const struct atr_akv_key_uri *key, char *version_out)
{
    struct atr_akv_key_uri k;
    if (kid == NULL || atr_akv_uri_parse(&k, kid, NULL) != ATR_OK || k.version[0] == '\0')
        return 0;
    if (strcasecmp(k.host, key->host) != 0 || strcasecmp(k.name, key->name) != 0)
        return 0;
    if (version_out != NULL)
        memcpy(version_out, k.version, ATR_AKV_VERSION_LEN + 1);
    return 1;
}

atr_status atr_akv_key_op_answer_parse(char out_kid[ATR_AKV_KID_MAX], struct atr_buf *out_value,
                                       const struct atr_akv_key_uri *key, struct atr_span body,
                                       struct atr_err *err)
{
    out_kid[0] = '\0';
    json_t *j = json_loadb((const char *)body.ptr, body.len, JSON_REJECT_DUPLICATES, NULL);
    const char *kid = json_string_value(json_object_get(j, "kid"));
    const char *value = json_string_value(json_object_get(j, "value"));
    atr_status rc = ATR_OK;
    if (j == NULL || value == NULL || !kid_matches(kid, key, NULL) ||
        strlen(kid) >= ATR_AKV_KID_MAX) {
        rc = atr_err_set(err, ATR_E_UPSTREAM, "akv: malformed key operation answer");
    } else {
        struct atr_buf tmp;
        atr_buf_init(&tmp, ATR_AKV_VALUE_MAX);
        rc = atr_b64url_decode(&tmp, value, strlen(value), NULL);
        if (rc != ATR_OK || tmp.len == 0)
            rc = atr_err_set(err, rc == ATR_E_TOO_LARGE ? ATR_E_TOO_LARGE : ATR_E_UPSTREAM,
                             "akv: the answer's value is not base64url of 1..%d bytes",
                             ATR_AKV_VALUE_MAX);
        else if ((rc = atr_buf_append(out_value, tmp.ptr, tmp.len)) == ATR_OK)
            snprintf(out_kid, ATR_AKV_KID_MAX, "%s", kid);
        atr_wipe(tmp.ptr, tmp.len);
        atr_buf_cleanup(&tmp);
        atr_wipe((char *)value, strlen(value));
    }
    json_decref(j);
    return rc;
}

atr_status atr_akv_versions_page_parse(struct atr_akv_versions *acc, char *next_link,
                                       size_t next_cap, const struct atr_akv_key_uri *key,
                                       size_t max_total, struct atr_span body, struct atr_err *err)
{
    next_link[0] = '\0';
    json_t *j = json_loadb((const char *)body.ptr, body.len, 0, NULL);
    json_t *arr = json_object_get(j, "value");
    json_t *next = json_object_get(j, "nextLink");
    atr_status rc = ATR_OK;
    if (!json_is_array(arr) || (next != NULL && !json_is_null(next) && !json_is_string(next))) {
        json_decref(j);
        return atr_err_set(err, ATR_E_UPSTREAM, "akv: malformed version list");
    }
    size_t n = json_array_size(arr);
    if (acc->n + n > max_total) {
        json_decref(j);
        return atr_err_set(err, ATR_E_TOO_LARGE, "akv: too many key versions");
    }
    struct atr_akv_key_version *items = atr_realloc(acc->items, (acc->n + n + 1) * sizeof(*items));
    if (items == NULL) {
        json_decref(j);
        return ATR_E_NOMEM;
    }
    acc->items = items;
    for (size_t i = 0; i < n && rc == ATR_OK; i++) {
        json_t *it = json_array_get(arr, i);
        struct atr_akv_key_version *v = &acc->items[acc->n];
        memset(v, 0, sizeof(*v));
        const char *kid = json_string_value(json_object_get(it, "kid"));
        json_t *a = json_object_get(it, "attributes");
        if (!kid_matches(kid, key, v->version) || strlen(kid) >= ATR_AKV_KID_MAX ||
            !json_is_object(a)) {
            rc = atr_err_set(err, ATR_E_UPSTREAM, "akv: a version list item names another key");
            break;
        }
        snprintf(v->kid, sizeof(v->kid), "%s", kid);
        v->enabled = json_is_true(json_object_get(a, "enabled"));
        v->created = json_integer_value(json_object_get(a, "created"));
        v->updated = json_integer_value(json_object_get(a, "updated"));
        v->nbf = json_integer_value(json_object_get(a, "nbf"));
        v->exp = json_integer_value(json_object_get(a, "exp"));
        copy_printable(v->recovery_level, sizeof(v->recovery_level),
                       json_string_value(json_object_get(a, "recoveryLevel")));
        v->recoverable_days = (int)json_integer_value(json_object_get(a, "recoverableDays"));
        acc->n++;
    }
    if (rc == ATR_OK && json_is_string(next)) {
        const char *nl = json_string_value(next);
        char prefix[ATR_AKV_URL_MAX + ATR_AKV_NAME_MAX + 32];
        snprintf(prefix, sizeof(prefix), "%s/keys/%s/versions?", key->vault_url, key->name);
        if (strncasecmp(nl, prefix, strlen(prefix)) != 0 || strlen(nl) + 32 >= next_cap)
            rc = atr_err_set(err, ATR_E_UPSTREAM, "akv: the nextLink leaves the key's listing");
        else if (strstr(nl, "api-version=") != NULL)
            snprintf(next_link, next_cap, "%s", nl);
        else
            snprintf(next_link, next_cap, "%s&api-version=%s", nl, ATR_AKV_API_VERSION);
    }
    json_decref(j);
    return rc;
}
