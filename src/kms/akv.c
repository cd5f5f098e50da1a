/* SPDX-License-Identifier: Apache-2.0 */
#define _XOPEN_SOURCE 700 /* strptime */
#include "kms/akv.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/log.h"
#include "crypto/rand.h"
#include "crypto/rsa.h"
#include "crypto/sig.h"
#include "crypto/x509.h"
#include "http/client.h"

#define TOKEN_MAX        16384
#define MAX_TOKENS       65536 /* cached tokens: one per directory (tenant) in use */
#define MAX_HOSTS        65536 /* cached challenges: one per vault host */
#define FORM_MAX         4096
#define URL_MAX          2048 /* a request URL (a listing's nextLink included) */
#define ENGINES_IDLE     8    /* multi handles (with their connections) kept between runs */
#define EASY_IDLE        64   /* easy handles kept per multi handle */
#define RUN_MAX_INFLIGHT 64   /* requests in flight in one run, all hosts together */
#define HOST_CONNS_MAX   256  /* upper bound of opts.max_host_connections */
#define HOST_CONNS_DEF   16
#define FLIGHT_POLL_MS   5 /* how often a run looks at another run's token request */
#define RUN_POLL_MAX_MS  250
#define MSG_MAX          1400        /* a transport message: method, host, CA file path */
#define CERT_PEM_MAX     (64 * 1024) /* the client certificate's PEM text */
#define CERT_MIN_BITS    2048        /* smallest RSA key of a certificate credential */
#define X5T_S256_LEN     43          /* base64url of a SHA-256 digest, unpadded */
#define ASSERTION_LIFE_S 600         /* exp - nbf of a client assertion */
#define ASSERTION_MAX    8192        /* a client assertion (RS256 up to 16384-bit keys) */
#define JTI_BYTES        16          /* random bytes of an assertion's jti (hex) */

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
    uint64_t serial; /* tells this token from a later one of the same directory */
};

/* A token request in progress or just finished (single flight, see token_acquire). */
enum flight_state { FLIGHT_BUSY, FLIGHT_OK, FLIGHT_FAILED, FLIGHT_ABANDONED };

struct token_flight {
    struct token_flight *next; /* in the client's list while busy */
    char authority[ATR_AKV_URL_MAX];
    char tenant[ATR_AKV_TENANT_MAX + 1];
    char resource[ATR_AKV_URL_MAX];
    const void *owner; /* the run sending the request */
    unsigned refs;     /* the owner and every waiting operation */
    enum flight_state state;
    int64_t started_s; /* the clock when the request was decided (token lifetime) */
    char *token;       /* FLIGHT_OK: a copy for the waiters; wiped when freed */
    uint64_t serial;
    atr_status rc; /* FLIGHT_FAILED: the outcome every waiter gets */
    struct atr_akv_error fail;
    struct atr_err err;
};

struct engine;

struct atr_akv_client {
    char client_id[128];
    char *secret;                    /* wiped on free; NULL with a certificate */
    struct atr_rsa_key *cert_key;    /* the certificate's private key; NULL with a secret */
    char x5t[ATR_X509_X5T_LEN + 1];  /* base64url SHA-1 of the certificate's DER */
    char x5t_s256[X5T_S256_LEN + 1]; /* base64url SHA-256 of the certificate's DER */
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
    unsigned max_host_conns;
    const struct atr_clock *clock;

    pthread_mutex_t lock;     /* everything below */
    struct chal_entry *chals; /* grows up to MAX_HOSTS */
    size_t nchals, capchals;
    struct token_entry *tokens; /* grows up to MAX_TOKENS */
    size_t ntokens, captokens;
    uint64_t next_serial;
    struct token_flight *flights; /* busy token requests */
    struct engine *idle[ENGINES_IDLE];
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

static void engine_free(struct engine *e);

/* libcurl's process-wide initialisation (reference-counted by libcurl, so the HTTP client's
 * own initialisation does not conflict). */
static pthread_once_t akv_curl_once = PTHREAD_ONCE_INIT;
static CURLcode akv_curl_rc = CURLE_FAILED_INIT;

static void akv_curl_init(void)
{
    akv_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The PEM reader's password callback: no PEM here is encrypted, and nothing may prompt. */
static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* base64url of the @p md digest of @p cert's DER into @p out (@p len characters and a NUL). */
static atr_status cert_thumbprint(char *out, size_t len, X509 *cert, const EVP_MD *md)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (X509_digest(cert, md, d, &dlen) != 1)
        return ATR_E_CRYPTO;
    struct atr_buf b;
    atr_buf_init(&b, 128);
    atr_status rc = atr_b64url_encode(&b, atr_span_of(d, dlen));
    if (rc == ATR_OK && b.len != len)
        rc = ATR_E_INTERNAL;
    if (rc == ATR_OK) {
        memcpy(out, b.ptr, len);
        out[len] = '\0';
    }
    atr_buf_cleanup(&b);
    return rc;
}

/*
 * The certificate credential: reads the certificate (the first PEM
 * "CERTIFICATE" block of @p cert_pem) and the PKCS#8 RSA private key in
 * @p key_pem (parsed straight from the caller's memory; nothing of it is
 * copied out of OpenSSL's secure heap), checks that they belong together,
 * keeps the key and the certificate's thumbprints in @p c.
 */
static atr_status cert_load(struct atr_akv_client *c, const char *cert_pem, struct atr_span key_pem,
                            struct atr_err *err)
{
    atr_status rc = ATR_OK;
    X509 *cert = NULL;
    BIO *bio = NULL;
    struct atr_err sub;
    atr_err_clear(&sub);
    size_t clen = strlen(cert_pem);
    const char *p = cert_pem;
    while (*p != '\0' && isspace((unsigned char)*p))
        p++;
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    if (clen > CERT_PEM_MAX || strncmp(p, begin, sizeof(begin) - 1) != 0)
        return atr_err_set(err, ATR_E_INVALID,
                           "akv: the client certificate must be a PEM \"CERTIFICATE\" block "
                           "(at most %d KiB)",
                           CERT_PEM_MAX / 1024);
    bio = BIO_new_mem_buf(cert_pem, (int)clen);
    if (bio == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    cert = PEM_read_bio_X509(bio, NULL, pem_no_password, NULL);
    if (cert == NULL) {
        rc = atr_err_set(err, ATR_E_INVALID,
                         "akv: the client certificate is not a readable PEM certificate");
        goto done;
    }
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    if (pub == NULL || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
        rc = atr_err_set(err, ATR_E_INVALID,
                         "akv: the client certificate must hold an RSA key (Entra ID signs "
                         "assertions with RS256)");
        goto done;
    }
    rc = atr_rsa_key_parse_pem(&c->cert_key, (const char *)key_pem.ptr, key_pem.len, &sub);
    if (rc == ATR_E_NOMEM)
        goto done;
    if (rc != ATR_OK) {
        rc = atr_err_set(err, ATR_E_INVALID,
                         "akv: the client key must be an unencrypted PKCS#8 RSA private key in "
                         "PEM (%s)",
                         atr_err_msg(&sub));
        goto done;
    }
    if (!atr_rsa_key_has_private(c->cert_key)) {
        rc = atr_err_set(err, ATR_E_INVALID,
                         "akv: the client key is a public key; give the certificate's PKCS#8 "
                         "private key");
        goto done;
    }
    if (atr_rsa_key_bits(c->cert_key) < CERT_MIN_BITS) {
        rc = atr_err_set(err, ATR_E_INVALID,
                         "akv: the client key has %u bits; certificate credentials need RSA keys "
                         "of at least %d bits",
                         atr_rsa_key_bits(c->cert_key), CERT_MIN_BITS);
        goto done;
    }
    if (EVP_PKEY_eq(pub, atr_rsa_key_pkey(c->cert_key)) != 1) {
        rc = atr_err_set(err, ATR_E_INVALID,
                         "akv: the client key does not belong to the client certificate");
        goto done;
    }
    if ((rc = cert_thumbprint(c->x5t, ATR_X509_X5T_LEN, cert, EVP_sha1())) != ATR_OK ||
        (rc = cert_thumbprint(c->x5t_s256, X5T_S256_LEN, cert, EVP_sha256())) != ATR_OK) {
        if (rc != ATR_E_NOMEM)
            rc = atr_err_set(err, rc, "akv: cannot compute the client certificate's thumbprint");
        goto done;
    }
done:
    if (rc != ATR_OK) {
        atr_rsa_key_free(c->cert_key);
        c->cert_key = NULL;
    }
    atr_err_clear(&sub);
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

atr_status atr_akv_client_new(struct atr_akv_client **out, const struct atr_akv_client_opts *opts,
                              struct atr_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->client_id == NULL || opts->client_id[0] == '\0' ||
        strlen(opts->client_id) >= 128)
        return atr_err_set(err, ATR_E_CONFIG, "akv: a client id is required");
    int has_secret = opts->client_secret != NULL && opts->client_secret[0] != '\0';
    int has_cert = (opts->client_cert_pem != NULL && opts->client_cert_pem[0] != '\0') ||
                   opts->client_key_pem.len > 0;
    if (has_secret && has_cert)
        return atr_err_set(err, ATR_E_CONFIG,
                           "akv: give either a client secret or a client certificate, not both");
    if (!has_secret && !has_cert)
        return atr_err_set(err, ATR_E_CONFIG,
                           "akv: a client secret, or a client certificate and its private key, is "
                           "required");
    if (has_cert && (opts->client_cert_pem == NULL || opts->client_cert_pem[0] == '\0' ||
                     opts->client_key_pem.len == 0 || opts->client_key_pem.ptr == NULL))
        return atr_err_set(err, ATR_E_CONFIG,
                           "akv: a certificate credential needs both the certificate and its "
                           "private key");
    if (opts->nresolve > 0)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "akv: resolve entries are not supported");
    const char *authority = opts->authority != NULL ? opts->authority : ATR_AKV_DEFAULT_AUTHORITY;
    if (strncmp(authority, "https://", 8) != 0 || strlen(authority) >= ATR_AKV_URL_MAX ||
        strchr(authority + 8, '/') != NULL || strchr(authority, '?') != NULL)
        return atr_err_set(err, ATR_E_CONFIG, "akv: the authority must be https://host[:port]");
    if (opts->nresources > ATR_AKV_MAX_LIST || opts->nvault_hosts > ATR_AKV_MAX_LIST)
        return atr_err_set(err, ATR_E_CONFIG, "akv: at most %d resources and vault hosts",
                           ATR_AKV_MAX_LIST);
    pthread_once(&akv_curl_once, akv_curl_init);
    if (akv_curl_rc != CURLE_OK)
        return atr_err_set(err, ATR_E_INTERNAL, "akv: libcurl could not initialise");
    struct atr_akv_client *c = atr_calloc(1, sizeof(*c));
    if (c == NULL)
        return ATR_E_NOMEM;
    snprintf(c->client_id, sizeof(c->client_id), "%s", opts->client_id);
    pthread_mutex_init(&c->lock, NULL);
    if (has_cert) {
        atr_status rc = cert_load(c, opts->client_cert_pem, opts->client_key_pem, err);
        if (rc != ATR_OK) {
            atr_akv_client_free(c);
            return rc;
        }
    } else if ((c->secret = atr_strdup(opts->client_secret)) == NULL) {
        atr_akv_client_free(c);
        return ATR_E_NOMEM;
    }
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
    c->max_host_conns = opts->max_host_connections == 0               ? HOST_CONNS_DEF
                        : opts->max_host_connections > HOST_CONNS_MAX ? HOST_CONNS_MAX
                                                                      : opts->max_host_connections;
    c->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
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
        engine_free(c->idle[i]);
    atr_free(c->tokens);
    atr_free(c->chals);
    if (c->secret != NULL) {
        atr_wipe(c->secret, strlen(c->secret));
        atr_free(c->secret);
    }
    atr_rsa_key_free(c->cert_key);
    pthread_mutex_destroy(&c->lock);
    atr_free(c);
}

void atr_akv_client_stats(struct atr_akv_stats *out, struct atr_akv_client *c)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ transport (libcurl multi) */

/*
 * An engine is a libcurl multi handle with its connection cache (and DNS
 * cache), a share of TLS sessions and a few idle easy handles. One run
 * (a batch, or a blocking call: a batch of one) uses one engine at a time;
 * between runs the client keeps it, so connections are reused.
 */
struct engine {
    CURLM *multi;
    CURLSH *share;
    CURL *idle[EASY_IDLE];
    size_t nidle;
};

static void engine_free(struct engine *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->nidle; i++)
        curl_easy_cleanup(e->idle[i]);
    if (e->multi != NULL)
        curl_multi_cleanup(e->multi); /* closes the cached connections */
    if (e->share != NULL)
        curl_share_cleanup(e->share);
    atr_free(e);
}

static atr_status engine_take(struct engine **out, struct atr_akv_client *c, struct atr_err *err)
{
    pthread_mutex_lock(&c->lock);
    *out = c->nidle > 0 ? c->idle[--c->nidle] : NULL;
    pthread_mutex_unlock(&c->lock);
    if (*out != NULL)
        return ATR_OK;
    struct engine *e = atr_calloc(1, sizeof(*e));
    if (e == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "akv: out of memory");
    e->multi = curl_multi_init();
    e->share = curl_share_init();
    if (e->multi == NULL || e->share == NULL ||
        curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->max_host_conns) !=
            CURLM_OK ||
        curl_multi_setopt(
            e->multi, CURLMOPT_MAXCONNECTS,
            (long)(RUN_MAX_INFLIGHT > c->max_host_conns ? RUN_MAX_INFLIGHT : c->max_host_conns)) !=
            CURLM_OK ||
        curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        engine_free(e);
        return atr_err_set(err, ATR_E_INTERNAL, "akv: libcurl could not create a multi handle");
    }
    *out = e;
    return ATR_OK;
}

static void engine_give(struct atr_akv_client *c, struct engine *e)
{
    pthread_mutex_lock(&c->lock);
    if (c->nidle < ENGINES_IDLE) {
        c->idle[c->nidle++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    engine_free(e);
}

/* One HTTP request of a run. */
struct xfer {
    CURL *easy;
    int added;   /* in the multi handle */
    int in_slot; /* counted in the run's connection limits */
    size_t hidx; /* the run's host entry */
    struct curl_slist *headers;
    char *owned_post; /* a body the transfer owns (token forms); wiped */
    size_t owned_len;
    struct atr_http_client_resp resp;
    char errbuf[CURL_ERROR_SIZE];
    const char *method;
    char host[ATR_AKV_HOST_MAX]; /* for messages */
    int clamped;                 /* the timeout was cut to the run's deadline */
    int too_large;
    int nomem;
    int done;
    CURLcode cc;
};

/* A host's share of a run: requests in flight and the challenge discovery. */
struct run_host {
    char host[ATR_AKV_HOST_MAX];
    unsigned active;
    int discovering; /* an operation is asking the vault for its challenge */
    int discovered;  /* that request is over (whatever it gave) */
};

struct batch_op;

struct run {
    struct atr_akv_client *c;
    struct engine *eng;
    struct batch_op *ops;
    size_t n;
    int64_t deadline; /* monotonic ms */
    struct run_host *hosts;
    size_t nhosts, caphosts;
    unsigned active; /* requests in flight */
    unsigned max_host;
    unsigned max_total;
    int foreign_wait; /* an operation waits for another run's token request */
    int expired;      /* the deadline passed: nothing new starts */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The run's entry of @p host (case-insensitive), made when new; SIZE_MAX out of memory. */
static size_t host_index(struct run *r, const char *host)
{
    for (size_t i = 0; i < r->nhosts; i++) {
        if (strcasecmp(r->hosts[i].host, host) == 0)
            return i;
    }
    if (r->nhosts == r->caphosts) {
        size_t ncap = r->caphosts == 0 ? 4 : r->caphosts * 2;
        struct run_host *n = atr_realloc(r->hosts, ncap * sizeof(*n));
        if (n == NULL)
            return SIZE_MAX;
        r->hosts = n;
        r->caphosts = ncap;
    }
    struct run_host *h = &r->hosts[r->nhosts];
    memset(h, 0, sizeof(*h));
    snprintf(h->host, sizeof(h->host), "%s", host);
    return r->nhosts++;
}

static int slot_free(const struct run *r, size_t hidx)
{
    return r->active < r->max_total && r->hosts[hidx].active < r->max_host;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;
    atr_status rc = atr_buf_append(&x->resp.body, ptr, n);
    if (rc == ATR_E_TOO_LARGE) {
        x->too_large = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (rc != ATR_OK) {
        x->nomem = 1;
        return 0;
    }
    return n;
}

/* Keeps the response headers as http/client.c does (the last response's, bounded). */
static size_t on_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
    struct xfer *x = userdata;
    struct atr_http_client_resp *r = &x->resp;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        for (size_t i = 0; i < r->nheaders; i++) {
            atr_free(r->headers[i].name);
            atr_free(r->headers[i].value);
            r->headers[i].name = NULL;
            r->headers[i].value = NULL;
        }
        r->nheaders = 0;
        r->header_bytes = 0;
        return n;
    }
    size_t len = n;
    while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
        len--;
    const char *colon = memchr(ptr, ':', len);
    if (colon == NULL || colon == ptr)
        return n;
    if (r->nheaders == ATR_HTTP_CLIENT_MAX_HEADERS ||
        ATR_HTTP_CLIENT_MAX_HEADER_BYTES - r->header_bytes < len)
        return n;
    size_t name_len = (size_t)(colon - ptr);
    const char *v = colon + 1;
    size_t vlen = len - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    char *name = atr_strndup(ptr, name_len);
    char *value = atr_strndup(v, vlen);
    if (name == NULL || value == NULL) {
        atr_free(name);
        atr_free(value);
        x->nomem = 1;
        return 0;
    }
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
    r->header_bytes += len;
    return n;
}

/* Frees the header list after wiping it (it may hold a bearer token). */
static void headers_wipe_free(struct curl_slist *list)
{
    for (struct curl_slist *s = list; s != NULL; s = s->next)
        atr_wipe(s->data, strlen(s->data));
    curl_slist_free_all(list);
}

/* Takes the transfer out of the run's limits. */
static void xfer_unslot(struct run *r, struct xfer *x)
{
    if (x->in_slot) {
        r->active--;
        r->hosts[x->hidx].active--;
        x->in_slot = 0;
    }
}

/* Ends a transfer (finished or not) and frees it; the easy handle goes back to the engine. */
static void xfer_free(struct run *r, struct xfer *x)
{
    if (x == NULL)
        return;
    xfer_unslot(r, x);
    if (x->easy != NULL) {
        if (x->added)
            curl_multi_remove_handle(r->eng->multi, x->easy);
        curl_easy_reset(x->easy); /* drops every pointer into this transfer */
        if (r->eng->nidle < EASY_IDLE)
            r->eng->idle[r->eng->nidle++] = x->easy;
        else
            curl_easy_cleanup(x->easy);
    }
    headers_wipe_free(x->headers);
    if (x->owned_post != NULL) {
        atr_wipe(x->owned_post, x->owned_len);
        atr_free(x->owned_post);
    }
    atr_wipe(x->resp.body.ptr, x->resp.body.len);
    atr_http_client_resp_cleanup(&x->resp);
    atr_free(x);
}

#define XSETOPT(opt, val)                                                                          \
    do {                                                                                           \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK) {                                           \
            what = #opt;                                                                           \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/*
 * Starts a request: https only, peer and host verified, no redirects,
 * TLS 1.2 or later, the client's connect timeout, and a total timeout of
 * the client's request timeout cut to the run's deadline. @p lines are
 * complete header lines ("Name: value"); @p post (borrowed, or @p owned_post,
 * which the transfer takes in every case) is the body of a POST.
 * @return ATR_OK, or ATR_E_NOMEM / ATR_E_INTERNAL / ATR_E_CONFIG with @p msg.
 */
static atr_status xfer_start(struct xfer **out, struct run *r, const char *method, const char *url,
                             const char *const *lines, size_t nlines, struct atr_span post,
                             char *owned_post, const char *host, size_t hidx, char *msg,
                             size_t msg_cap)
{
    struct atr_akv_client *c = r->c;
    const char *what = NULL;
    *out = NULL;
    struct xfer *x = atr_calloc(1, sizeof(*x));
    if (x == NULL) {
        if (owned_post != NULL) {
            atr_wipe(owned_post, post.len);
            atr_free(owned_post);
        }
        snprintf(msg, msg_cap, "out of memory");
        return ATR_E_NOMEM;
    }
    x->owned_post = owned_post;
    x->owned_len = owned_post != NULL ? post.len : 0;
    x->method = method;
    x->hidx = hidx;
    snprintf(x->host, sizeof(x->host), "%s", host);
    atr_http_client_resp_init(&x->resp);
    atr_buf_init(&x->resp.body, c->http.max_response);
    if (c->http.ca_file != NULL && access(c->http.ca_file, R_OK) != 0) {
        snprintf(msg, msg_cap, "cannot read the CA file %s", c->http.ca_file);
        xfer_free(r, x);
        return ATR_E_CONFIG;
    }
    for (size_t i = 0; i < nlines; i++) {
        if (strpbrk(lines[i], "\r\n") != NULL) {
            snprintf(msg, msg_cap, "request header %zu is malformed", i + 1);
            xfer_free(r, x);
            return ATR_E_INVALID;
        }
        struct curl_slist *next = curl_slist_append(x->headers, lines[i]);
        if (next == NULL) {
            snprintf(msg, msg_cap, "out of memory");
            xfer_free(r, x);
            return ATR_E_NOMEM;
        }
        x->headers = next;
    }
    x->easy = r->eng->nidle > 0 ? r->eng->idle[--r->eng->nidle] : curl_easy_init();
    if (x->easy == NULL) {
        snprintf(msg, msg_cap, "libcurl could not create a handle");
        xfer_free(r, x);
        return ATR_E_NOMEM;
    }
    unsigned timeout_ms = c->http.timeout_ms;
    int64_t left = r->deadline - mono_ms();
    if (left < (int64_t)timeout_ms) {
        timeout_ms = left < 1 ? 1 : (unsigned)left;
        x->clamped = 1;
    }
    CURL *e = x->easy;
    XSETOPT(CURLOPT_URL, url);
    XSETOPT(CURLOPT_PROTOCOLS_STR, "https");
    XSETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    XSETOPT(CURLOPT_NOSIGNAL, 1L);
    XSETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    XSETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    XSETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->http.ca_file != NULL)
        XSETOPT(CURLOPT_CAINFO, c->http.ca_file);
    XSETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)c->http.connect_timeout_ms);
    XSETOPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    XSETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    XSETOPT(CURLOPT_USERAGENT, "atrest/" ATR_VERSION);
    XSETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
    XSETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->http.max_response);
    XSETOPT(CURLOPT_WRITEFUNCTION, on_body);
    XSETOPT(CURLOPT_WRITEDATA, x);
    XSETOPT(CURLOPT_HEADERFUNCTION, on_header);
    XSETOPT(CURLOPT_HEADERDATA, x);
    XSETOPT(CURLOPT_PRIVATE, (void *)x);
    XSETOPT(CURLOPT_SHARE, r->eng->share);
    if (x->headers != NULL)
        XSETOPT(CURLOPT_HTTPHEADER, x->headers);
    if (strcmp(method, "POST") == 0) {
        XSETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post.len);
        XSETOPT(CURLOPT_POSTFIELDS, post.ptr != NULL ? (const char *)post.ptr : "");
    } else {
        XSETOPT(CURLOPT_HTTPGET, 1L);
    }
    if (curl_multi_add_handle(r->eng->multi, e) != CURLM_OK) {
        what = "add_handle";
        goto fail;
    }
    x->added = 1;
    x->in_slot = 1;
    r->active++;
    r->hosts[hidx].active++;
    *out = x;
    return ATR_OK;
fail:
    snprintf(msg, msg_cap, "libcurl refused %s", what);
    xfer_free(r, x);
    return ATR_E_INTERNAL;
}

/* Collects the finished transfers of the run's multi handle; returns how many. */
static size_t run_collect(struct run *r)
{
    size_t n = 0;
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(r->eng->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode cc = m->data.result; /* read before the message goes away */
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct xfer *x = (struct xfer *)(void *)priv;
        curl_multi_remove_handle(r->eng->multi, e);
        if (x == NULL)
            continue;
        x->added = 0;
        x->done = 1;
        x->cc = cc;
        long status = 0, connects = 0;
        if (cc == CURLE_OK && curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
            x->resp.status = (unsigned)status;
        if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
            x->resp.new_connections = connects;
        if (cc != CURLE_OK && x->errbuf[0] != '\0' && atr_log_enabled(ATR_LOG_DEBUG))
            atr_log(ATR_LOG_DEBUG, "akv.http", NULL, "%s to %s: %s", x->method, x->host, x->errbuf);
        xfer_unslot(r, x);
        n++;
    }
    return n;
}

/* The transport outcome of a finished transfer, as http/client.c maps it. */
static atr_status xfer_status(const struct xfer *x, char *msg, size_t cap)
{
    if (x->cc == CURLE_OK)
        return ATR_OK;
    if (x->too_large || x->cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(msg, cap, "%s to %s: the response is larger than %zu bytes", x->method, x->host,
                 x->resp.body.max);
        return ATR_E_TOO_LARGE;
    }
    if (x->nomem || x->cc == CURLE_OUT_OF_MEMORY) {
        snprintf(msg, cap, "%s to %s: out of memory", x->method, x->host);
        return ATR_E_NOMEM;
    }
    switch (x->cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ATR_E_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CLIENTCERT:
        return ATR_E_TLS;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(msg, cap, "%s: the URL is not a valid https URL", x->method);
        return ATR_E_INVALID;
    default:
        return ATR_E_NETWORK;
    }
}

/*
 * Counts a finished request and turns a transport failure into a cause
 * against @p host (the vault or the authority); on success copies the
 * answer's x-ms-request-id into @p fail.
 */
static atr_status xfer_result(struct run *r, const struct xfer *x, int to_authority,
                              const char *host, struct atr_akv_error *fail, struct atr_err *err)
{
    struct atr_akv_client *c = r->c;
    pthread_mutex_lock(&c->lock);
    if (to_authority)
        c->stats.token_requests++;
    else
        c->stats.vault_requests++;
    if (x->resp.new_connections > 0)
        c->stats.connections += (unsigned long)x->resp.new_connections;
    pthread_mutex_unlock(&c->lock);
    char msg[MSG_MAX] = "";
    atr_status rc = xfer_status(x, msg, sizeof(msg));
    if (rc != ATR_OK) {
        snprintf(fail->host, sizeof(fail->host), "%s", host);
        atr_akv_cause unreachable =
            to_authority ? ATR_AKV_AUTHORITY_UNREACHABLE : ATR_AKV_VAULT_UNREACHABLE;
        if (rc == ATR_E_TLS)
            return failed(fail, err, ATR_AKV_TLS,
                          "the TLS certificate of %s is not trusted for its host name", host);
        if (rc == ATR_E_TIMEOUT && x->clamped)
            return failed(fail, err, unreachable, "%s did not answer before the deadline", host);
        if (rc == ATR_E_NETWORK || rc == ATR_E_TIMEOUT)
            return failed(fail, err, unreachable, "%s cannot be reached (%s)", host,
                          rc == ATR_E_TIMEOUT ? "timed out" : "connection failed");
        return failed(fail, err, ATR_AKV_LOCAL, "akv: %s", msg);
    }
    const char *rid = atr_http_client_resp_header(&x->resp, "x-ms-request-id");
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

/* Drops the cached token @p serial if it is still cached (a later one is kept). */
static void token_forget_serial(struct atr_akv_client *c, uint64_t serial)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->ntokens; i++) {
        struct token_entry *t = &c->tokens[i];
        if (t->serial == serial) {
            token_drop(t);
            *t = c->tokens[--c->ntokens];
            memset(&c->tokens[c->ntokens], 0, sizeof(c->tokens[0]));
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* Caches @p tok (copied); lock held. Returns the serial. */
static uint64_t token_put_locked(struct atr_akv_client *c, const char *authority,
                                 const char *tenant, const char *resource, const char *tok,
                                 int64_t expires_s)
{
    struct token_entry *e = token_find(c, authority, tenant, resource);
    if (e == NULL && c->ntokens == c->captokens && c->captokens < MAX_TOKENS) {
        size_t cap = c->captokens == 0 ? 64 : c->captokens * 2;
        struct token_entry *nt = atr_realloc(c->tokens, cap * sizeof(*nt));
        if (nt != NULL) {
            memset(nt + c->captokens, 0, (cap - c->captokens) * sizeof(*nt));
            c->tokens = nt;
            c->captokens = cap;
        }
    }
    if (e == NULL && c->ntokens < c->captokens)
        e = &c->tokens[c->ntokens++];
    if (e == NULL && c->ntokens > 0) {
        /* full: replace an expired token, else the oldest */
        int64_t now = atr_clock_now_s(c->clock);
        e = &c->tokens[0];
        for (size_t i = 0; i < c->ntokens; i++) {
            if (c->tokens[i].expires_s <= now) {
                e = &c->tokens[i];
                break;
            }
            if (c->tokens[i].serial < e->serial)
                e = &c->tokens[i];
        }
    }
    if (e == NULL) /* no memory for a cache: the next call asks again */
        return ++c->next_serial;
    token_drop(e);
    uint64_t serial = ++c->next_serial;
    e->token = atr_strdup(tok);
    if (e->token == NULL) { /* not cached: the next call asks again */
        *e = c->tokens[--c->ntokens];
        memset(&c->tokens[c->ntokens], 0, sizeof(c->tokens[0]));
        return serial;
    }
    snprintf(e->authority, sizeof(e->authority), "%s", authority);
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    snprintf(e->resource, sizeof(e->resource), "%s", resource);
    e->expires_s = expires_s;
    e->serial = serial;
    return serial;
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

/* Lock held: the busy request for (authority, tenant, resource), or NULL. */
static struct token_flight *flight_find(struct atr_akv_client *c, const char *authority,
                                        const char *tenant, const char *resource)
{
    for (struct token_flight *f = c->flights; f != NULL; f = f->next) {
        if (strcmp(f->authority, authority) == 0 && strcasecmp(f->tenant, tenant) == 0 &&
            strcmp(f->resource, resource) == 0)
            return f;
    }
    return NULL;
}

/* Lock held: takes a busy request out of the list of busy ones. */
static void flight_unlink(struct atr_akv_client *c, struct token_flight *f)
{
    for (struct token_flight **p = &c->flights; *p != NULL; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            f->next = NULL;
            return;
        }
    }
}

/* Lock held: drops one reference; the last one wipes and frees. */
static void flight_unref(struct token_flight *f)
{
    if (--f->refs > 0)
        return;
    if (f->token != NULL) {
        atr_wipe(f->token, strlen(f->token));
        atr_free(f->token);
    }
    atr_wipe(f, sizeof(*f));
    atr_free(f);
}

/* ------------------------------------------------------------ challenges */

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
    if (i == c->nchals && c->nchals == c->capchals && c->capchals < MAX_HOSTS) {
        size_t cap = c->capchals == 0 ? 16 : c->capchals * 2;
        struct chal_entry *nc = atr_realloc(c->chals, cap * sizeof(*nc));
        if (nc != NULL) {
            c->chals = nc;
            c->capchals = cap;
        }
    }
    if (i == c->nchals) {
        if (c->nchals == c->capchals) {
            /* full (or no memory): not cached, the next call learns it again */
            c->stats.challenges++;
            pthread_mutex_unlock(&c->lock);
            return;
        }
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

/* ------------------------------------------------------------ operations */

/*
 * Each operation of a run is a small state machine:
 *
 *   START -> PREP (one vault call: challenge known? -> token) -> VAULT_READY -> VAULT_SENT
 *   VAULT_SENT: 401 with a challenge -> PREP again (at most as the blocking flow allowed);
 *               a listing's nextLink -> PREP for the next page; else DONE
 *   token steps: TOKEN (cache, or join a request in flight, or own a new one)
 *                -> FLIGHT_WAIT, or TOKEN_READY -> TOKEN_SENT -> FLIGHT_WAIT
 *   DISCOVER_WAIT: another operation of the run is asking the same vault for its challenge
 *
 * READY states wait for a connection slot (max_host_connections per host,
 * RUN_MAX_INFLIGHT in all); WAIT states for another operation.
 */
enum op_state {
    OS_START = 0,
    OS_PREP,
    OS_DISCOVER_WAIT,
    OS_TOKEN,
    OS_FLIGHT_WAIT,
    OS_TOKEN_READY,
    OS_TOKEN_SENT,
    OS_VAULT_READY,
    OS_VAULT_SENT,
    OS_DONE,
};

struct batch_op {
    atr_akv_op op;
    struct atr_akv_key_uri key;
    atr_akv_alg alg;
    struct atr_buf input;
    char tenant[ATR_AKV_TENANT_MAX + 1];
    struct atr_akv_result result;
    int taken;
    /* the run's state */
    enum op_state state;
    int attempt;                 /* of the current vault call (the blocking flow's loop) */
    int have_chal;               /* ch holds the vault's challenge */
    struct atr_akv_challenge ch; /* the challenge the next request answers */
    char *tok;                   /* the bearer token of the next request; wiped */
    uint64_t tok_serial;         /* its cache serial */
    const char *tk_authority;    /* the token wanted: (authority, tenant, resource), */
    const char *tk_tenant;       /* borrowed from ch, the client or the operation */
    const char *tk_resource;     /*   */
    int fresh;                   /* the token must not come from the cache (probes) */
    struct token_flight *flight; /* the token request waited for (a reference) */
    int flight_owner;            /* this operation sends it */
    size_t tk_hidx;              /* the authority's host entry */
    struct xfer *xfer;           /* the request in flight */
    char *url;                   /* the next vault request (owned) */
    char *body;                  /* wrap/unwrap JSON (owned, wiped) */
    unsigned page;               /* listing pages fetched */
    size_t hidx;                 /* the vault's host entry */
    int discovering;             /* this operation asks the vault for its challenge */
};

static void op_drop_token(struct batch_op *o)
{
    if (o->tok != NULL) {
        atr_wipe(o->tok, strlen(o->tok));
        atr_free(o->tok);
        o->tok = NULL;
    }
    o->tok_serial = 0;
}

/* Releases the operation's hold on a token request (abandoning it if the owner). */
static void op_drop_flight(struct run *r, struct batch_op *o)
{
    struct token_flight *f = o->flight;
    if (f == NULL)
        return;
    struct atr_akv_client *c = r->c;
    pthread_mutex_lock(&c->lock);
    if (o->flight_owner && f->state == FLIGHT_BUSY) {
        flight_unlink(c, f);
        f->state = FLIGHT_ABANDONED; /* waiters ask again themselves */
    }
    flight_unref(f);
    pthread_mutex_unlock(&c->lock);
    o->flight = NULL;
    o->flight_owner = 0;
}

/* Ends the operation with @p st (its failure and message are already set). */
static void op_finish(struct run *r, struct batch_op *o, atr_status st)
{
    o->result.status = st;
    if (o->xfer != NULL) {
        xfer_free(r, o->xfer);
        o->xfer = NULL;
    }
    if (o->discovering) {
        r->hosts[o->hidx].discovering = 0;
        r->hosts[o->hidx].discovered = 1;
        o->discovering = 0;
    }
    op_drop_flight(r, o);
    op_drop_token(o);
    if (o->body != NULL) {
        atr_wipe(o->body, strlen(o->body));
        free(o->body); /* jansson's allocation */
        o->body = NULL;
    }
    atr_free(o->url);
    o->url = NULL;
    if (st != ATR_OK) {
        o->result.kid[0] = '\0';
        atr_akv_versions_cleanup(&o->result.versions);
    }
    o->state = OS_DONE;
}

static void op_fail(struct run *r, struct batch_op *o, atr_akv_cause cause, const char *fmt, ...)
    ATR_PRINTF(4, 5);

static void op_fail(struct run *r, struct batch_op *o, atr_akv_cause cause, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    op_finish(r, o, failed(&o->result.fail, &o->result.err, cause, "%s", msg));
}

/* One vault call begins (the blocking flow's vault_call): the challenge as remembered. */
static void op_call_begin(struct run *r, struct batch_op *o)
{
    o->attempt = 0;
    o->have_chal = chal_get(&o->ch, r->c, o->key.host);
    op_drop_token(o);
    o->state = OS_PREP;
}

static void op_begin(struct run *r, struct batch_op *o)
{
    struct atr_akv_client *c = r->c;
    struct atr_akv_result *res = &o->result;
    atr_err_clear(&res->err);
    memset(&res->fail, 0, sizeof(res->fail));
    res->kid[0] = '\0';
    if (o->op == ATR_AKV_OP_TOKEN) {
        o->tk_authority = c->authority;
        o->tk_tenant = o->tenant;
        o->tk_resource = c->resources[0];
        o->fresh = 1;
        o->state = OS_TOKEN;
        return;
    }
    size_t url_cap = URL_MAX;
    o->url = atr_malloc(url_cap);
    if (o->url == NULL) {
        op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
        return;
    }
    if (o->op == ATR_AKV_OP_LIST) {
        snprintf(o->url, url_cap, "%s/keys/%s/versions?api-version=%s&maxresults=%u",
                 o->key.vault_url, o->key.name, ATR_AKV_API_VERSION, c->page_size);
    } else {
        if (o->op == ATR_AKV_OP_WRAP)
            o->key.version[0] = '\0'; /* always the latest version */
        const char *algname = atr_akv_alg_name(o->alg);
        struct atr_span value = atr_buf_span(&o->input);
        if (algname == NULL || value.len == 0 || value.len > ATR_AKV_VALUE_MAX) {
            op_fail(r, o, ATR_AKV_LOCAL, "akv: bad algorithm or value size");
            return;
        }
        char *b64 = NULL;
        if (atr_b64url_encode_str(&b64, value) != ATR_OK) {
            op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
            return;
        }
        json_t *j = json_pack("{s:s,s:s}", "alg", algname, "value", b64);
        o->body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        atr_wipe(b64, strlen(b64));
        atr_free(b64);
        if (o->body == NULL) {
            op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
            return;
        }
        const char *verb = o->op == ATR_AKV_OP_WRAP ? "wrapkey" : "unwrapkey";
        if (o->op == ATR_AKV_OP_UNWRAP && o->key.version[0] != '\0')
            snprintf(o->url, url_cap, "%s/keys/%s/%s/%s?api-version=%s", o->key.vault_url,
                     o->key.name, o->key.version, verb, ATR_AKV_API_VERSION);
        else
            snprintf(o->url, url_cap, "%s/keys/%s/%s?api-version=%s", o->key.vault_url, o->key.name,
                     verb, ATR_AKV_API_VERSION);
    }
    if (!atr_akv_host_allowed(c, o->key.host)) {
        op_fail(r, o, ATR_AKV_URI_INVALID, "the vault host %s is not one this service may call",
                o->key.host);
        return;
    }
    o->hidx = host_index(r, o->key.host);
    if (o->hidx == SIZE_MAX) {
        op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
        return;
    }
    op_call_begin(r, o);
}

static void op_prep(struct run *r, struct batch_op *o)
{
    struct atr_akv_result *res = &o->result;
    if (o->have_chal) {
        atr_status rc = chal_check(r->c, &o->ch, &o->key, &res->fail, &res->err);
        if (rc != ATR_OK) {
            op_finish(r, o, rc);
            return;
        }
        if (o->tok == NULL) {
            o->tk_authority = o->ch.authority;
            o->tk_tenant = o->ch.tenant;
            o->tk_resource = o->ch.resource;
            o->fresh = 0;
            o->state = OS_TOKEN;
            return;
        }
        o->state = OS_VAULT_READY;
        return;
    }
    /* no challenge known: one operation of the run asks the vault, the others wait for it */
    struct run_host *h = &r->hosts[o->hidx];
    if (h->discovering) {
        o->state = OS_DISCOVER_WAIT;
        return;
    }
    if (!h->discovered) {
        h->discovering = 1;
        o->discovering = 1;
    }
    o->state = OS_VAULT_READY;
}

/* A token from the cache, or a reference to the request that will bring one. */
static void op_token(struct run *r, struct batch_op *o)
{
    struct atr_akv_client *c = r->c;
    int64_t now = atr_clock_now_s(c->clock);
    int nomem = 0;
    pthread_mutex_lock(&c->lock);
    struct token_entry *t =
        o->fresh ? NULL : token_find(c, o->tk_authority, o->tk_tenant, o->tk_resource);
    if (t != NULL && t->expires_s > now && t->token != NULL) {
        o->tok = atr_strdup(t->token);
        o->tok_serial = t->serial;
        nomem = o->tok == NULL;
    } else {
        struct token_flight *f = flight_find(c, o->tk_authority, o->tk_tenant, o->tk_resource);
        if (f != NULL) {
            f->refs++;
            o->flight = f;
        } else if ((f = atr_calloc(1, sizeof(*f))) != NULL) {
            snprintf(f->authority, sizeof(f->authority), "%s", o->tk_authority);
            snprintf(f->tenant, sizeof(f->tenant), "%s", o->tk_tenant);
            snprintf(f->resource, sizeof(f->resource), "%s", o->tk_resource);
            f->owner = r;
            f->refs = 1;
            f->state = FLIGHT_BUSY;
            f->started_s = now;
            f->next = c->flights;
            c->flights = f;
            o->flight = f;
            o->flight_owner = 1;
        } else {
            nomem = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (nomem) {
        op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
    } else if (o->tok != NULL) {
        if (o->op == ATR_AKV_OP_TOKEN)
            op_finish(r, o, ATR_OK);
        else
            o->state = OS_VAULT_READY;
    } else if (!o->flight_owner) {
        o->state = OS_FLIGHT_WAIT;
    } else {
        o->tk_hidx = host_index(r, o->tk_authority + 8);
        if (o->tk_hidx == SIZE_MAX)
            op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
        else
            o->state = OS_TOKEN_READY;
    }
}

/* The owner's request is over: every operation waiting for it gets the outcome. */
static void flight_complete(struct run *r, struct batch_op *o, atr_status rc, char *tok,
                            int64_t expires_in, const struct atr_akv_error *tf,
                            const struct atr_err *terr)
{
    struct atr_akv_client *c = r->c;
    struct token_flight *f = o->flight;
    pthread_mutex_lock(&c->lock);
    flight_unlink(c, f);
    f->fail = *tf;
    if (rc == ATR_OK) {
        int64_t margin = expires_in >= 600 ? ATR_AKV_TOKEN_MARGIN_S : expires_in / 2;
        f->serial = token_put_locked(c, f->authority, f->tenant, f->resource, tok,
                                     f->started_s + expires_in - margin);
        f->token = tok;
        f->state = FLIGHT_OK;
    } else {
        f->rc = rc;
        f->err = *terr;
        f->state = FLIGHT_FAILED;
    }
    pthread_mutex_unlock(&c->lock);
    o->flight_owner = 0; /* it now reads the outcome like the others */
    o->state = OS_FLIGHT_WAIT;
}

/* Reads the outcome of the awaited token request when it has one. */
static void op_flight_wait(struct run *r, struct batch_op *o)
{
    struct atr_akv_client *c = r->c;
    struct atr_akv_result *res = &o->result;
    struct token_flight *f = o->flight;
    atr_status rc = ATR_OK;
    int nomem = 0;
    pthread_mutex_lock(&c->lock);
    enum flight_state st = f->state;
    if (st == FLIGHT_BUSY) {
        if (f->owner != r)
            r->foreign_wait = 1;
        pthread_mutex_unlock(&c->lock);
        return;
    }
    /* what the token request wrote over the operation's details (request ids only when sent) */
    char rid[ATR_AKV_REQUEST_ID_MAX];
    memcpy(rid, res->fail.request_id, sizeof(rid));
    if (st == FLIGHT_OK) {
        o->tok = atr_strdup(f->token);
        o->tok_serial = f->serial;
        nomem = o->tok == NULL;
        if (f->fail.request_id[0] != '\0')
            memcpy(res->fail.request_id, f->fail.request_id, sizeof(rid));
    } else if (st == FLIGHT_FAILED) {
        rc = f->rc;
        res->fail = f->fail;
        if (res->fail.request_id[0] == '\0')
            memcpy(res->fail.request_id, rid, sizeof(rid));
        res->err = f->err;
    }
    flight_unref(f);
    pthread_mutex_unlock(&c->lock);
    o->flight = NULL;
    if (st == FLIGHT_ABANDONED)
        o->state = OS_TOKEN; /* its owner's run ended: ask again */
    else if (st == FLIGHT_FAILED)
        op_finish(r, o, rc);
    else if (nomem)
        op_fail(r, o, ATR_AKV_LOCAL, "akv: out of memory");
    else if (o->op == ATR_AKV_OP_TOKEN)
        op_finish(r, o, ATR_OK);
    else
        o->state = OS_VAULT_READY;
}

/* Appends base64url of the compact JSON of @p v to @p out. */
static atr_status jwt_part(struct atr_buf *out, json_t *v)
{
    if (v == NULL)
        return ATR_E_NOMEM;
    char *js = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (js == NULL)
        return ATR_E_NOMEM;
    atr_status rc = atr_b64url_encode(out, atr_span_str(js));
    free(js);
    return rc;
}

/*
 * A fresh client assertion (RFC 7523, as Entra ID expects it) for the token
 * endpoint @p aud: header {"alg":"RS256","typ":"JWT","x5t","x5t#S256"},
 * claims {"aud","iss","sub","jti","nbf","iat","exp"} from the client's clock,
 * signed with the certificate's key.
 * @param[out] out NUL-terminated (atr_free after atr_wipe).
 */
static atr_status assertion_make(char **out, const struct atr_akv_client *c, const char *aud,
                                 struct atr_err *err)
{
    *out = NULL;
    uint8_t rnd[JTI_BYTES];
    char jti[2 * JTI_BYTES + 1];
    atr_status rc = atr_rand_bytes(rnd, sizeof(rnd), err);
    if (rc != ATR_OK)
        return rc;
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
    int64_t now = atr_clock_now_s(c->clock);
    json_t *hdr = json_pack("{s:s,s:s,s:s,s:s}", "alg", "RS256", "typ", "JWT", "x5t", c->x5t,
                            "x5t#S256", c->x5t_s256);
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "aud", aud, "iss", c->client_id,
                               "sub", c->client_id, "jti", jti, "nbf", (json_int_t)now, "iat",
                               (json_int_t)now, "exp", (json_int_t)(now + ASSERTION_LIFE_S));
    struct atr_buf jwt, sig;
    atr_buf_init(&jwt, ASSERTION_MAX);
    atr_buf_init(&sig, ATR_RSA_MAX_BITS / 8);
    if (hdr == NULL || claims == NULL) { /* out of memory, or a client id that is not UTF-8 */
        rc = atr_err_set(err, ATR_E_INVALID, "akv: cannot encode the client assertion");
        goto done;
    }
    if ((rc = jwt_part(&jwt, hdr)) != ATR_OK || (rc = atr_buf_append_str(&jwt, ".")) != ATR_OK ||
        (rc = jwt_part(&jwt, claims)) != ATR_OK) {
        rc = atr_err_set(err, rc == ATR_E_TOO_LARGE ? ATR_E_INVALID : ATR_E_NOMEM,
                         "akv: cannot encode the client assertion");
        goto done;
    }
    if ((rc = atr_sig_sign(&sig, c->cert_key, ATR_SIG_RS256, atr_buf_span(&jwt), err)) != ATR_OK)
        goto done;
    const char *text = NULL;
    if ((rc = atr_buf_append_str(&jwt, ".")) != ATR_OK ||
        (rc = atr_b64url_encode(&jwt, atr_buf_span(&sig))) != ATR_OK ||
        (text = atr_buf_cstr(&jwt)) == NULL || (*out = atr_strdup(text)) == NULL) {
        rc = atr_err_set(err, rc == ATR_E_TOO_LARGE ? ATR_E_INVALID : ATR_E_NOMEM,
                         "akv: cannot encode the client assertion");
        goto done;
    }
done:
    atr_buf_cleanup(&sig);
    atr_buf_cleanup(&jwt);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

/* The owner sends the client-credentials request. */
static void op_token_send(struct run *r, struct batch_op *o)
{
    struct atr_akv_client *c = r->c;
    struct atr_akv_error tf;
    memset(&tf, 0, sizeof(tf));
    struct atr_err terr;
    atr_err_clear(&terr);
    char url[ATR_AKV_URL_MAX + 128];
    snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", o->tk_authority, o->tk_tenant);
    char scope[ATR_AKV_URL_MAX + 16];
    snprintf(scope, sizeof(scope), "%s/.default", o->tk_resource);
    /* a certificate: a fresh assertion (new jti) for every request, its aud this very URL */
    char *assertion = NULL;
    if (c->cert_key != NULL) {
        struct atr_err aerr;
        atr_err_clear(&aerr);
        if (assertion_make(&assertion, c, url, &aerr) != ATR_OK) {
            flight_complete(r, o, failed(&tf, &terr, ATR_AKV_LOCAL, "%s", atr_err_msg(&aerr)), NULL,
                            0, &tf, &terr);
            return;
        }
    }
    size_t form_cap = FORM_MAX + (assertion != NULL ? strlen(assertion) : 0);
    char *form = atr_calloc(1, form_cap);
    if (form == NULL) {
        if (assertion != NULL) {
            atr_wipe(assertion, strlen(assertion));
            atr_free(assertion);
        }
        flight_complete(r, o, failed(&tf, &terr, ATR_AKV_LOCAL, "akv: out of memory"), NULL, 0, &tf,
                        &terr);
        return;
    }
    int form_ok = form_add(form, form_cap, "grant_type", "client_credentials") &&
                  form_add(form, form_cap, "client_id", c->client_id) &&
                  form_add(form, form_cap, "scope", scope);
    if (assertion != NULL) {
        form_ok = form_ok &&
                  form_add(form, form_cap, "client_assertion_type",
                           "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") &&
                  form_add(form, form_cap, "client_assertion", assertion);
        atr_wipe(assertion, strlen(assertion));
        atr_free(assertion);
    } else {
        form_ok = form_ok && form_add(form, form_cap, "client_secret", c->secret);
    }
    if (!form_ok) {
        atr_wipe(form, form_cap);
        atr_free(form);
        flight_complete(r, o,
                        failed(&tf, &terr, ATR_AKV_LOCAL, "akv: the token request is too long"),
                        NULL, 0, &tf, &terr);
        return;
    }
    static const char *const lines[] = {"Content-Type: application/x-www-form-urlencoded"};
    char msg[MSG_MAX];
    struct atr_span post = atr_span_of(form, strlen(form));
    atr_status rc = xfer_start(&o->xfer, r, "POST", url, lines, 1, post, form, o->tk_authority + 8,
                               o->tk_hidx, msg, sizeof(msg));
    if (rc != ATR_OK) {
        flight_complete(r, o, failed(&tf, &terr, ATR_AKV_LOCAL, "akv: %s", msg), NULL, 0, &tf,
                        &terr);
        return;
    }
    o->state = OS_TOKEN_SENT;
}

/* The token answer: cached and handed to every waiter, or the failure they all get. */
static void op_token_answer(struct run *r, struct batch_op *o)
{
    struct atr_akv_client *c = r->c;
    struct xfer *x = o->xfer;
    const char *host = o->tk_authority + 8;
    struct atr_akv_error tf;
    memset(&tf, 0, sizeof(tf));
    struct atr_err terr;
    atr_err_clear(&terr);
    char *tok = NULL;
    int64_t expires_in = 0;
    atr_status rc = xfer_result(r, x, 1, host, &tf, &terr);
    if (rc == ATR_OK && x->resp.status == 200) {
        rc = atr_akv_token_answer_parse(&tok, &expires_in, atr_buf_span(&x->resp.body), &terr);
        if (rc != ATR_OK)
            rc = failed(&tf, &terr, ATR_AKV_UNEXPECTED,
                        "the identity authority %s gave a malformed token answer", host);
    } else if (rc == ATR_OK) {
        snprintf(tf.host, sizeof(tf.host), "%s", host);
        rc = atr_akv_token_error_classify(&tf, host, o->tk_tenant, c->client_id, x->resp.status,
                                          atr_http_client_resp_header(&x->resp, "Retry-After"),
                                          atr_buf_span(&x->resp.body), &terr);
    }
    xfer_free(r, x); /* wipes the answer */
    o->xfer = NULL;
    flight_complete(r, o, rc, tok, expires_in, &tf, &terr);
}

static void op_vault_send(struct run *r, struct batch_op *o)
{
    char auth[TOKEN_MAX + 32];
    const char *lines[2];
    size_t nl = 0;
    if (o->tok != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->tok);
        lines[nl++] = auth;
    }
    if (o->body != NULL)
        lines[nl++] = "Content-Type: application/json";
    char msg[MSG_MAX];
    struct atr_span post =
        o->body != NULL ? atr_span_of(o->body, strlen(o->body)) : atr_span_of(NULL, 0);
    atr_status rc = xfer_start(&o->xfer, r, o->body != NULL ? "POST" : "GET", o->url, lines, nl,
                               post, NULL, o->key.host, o->hidx, msg, sizeof(msg));
    atr_wipe(auth, sizeof(auth));
    if (rc != ATR_OK) {
        op_fail(r, o, ATR_AKV_LOCAL, "akv: %s", msg);
        return;
    }
    o->state = OS_VAULT_SENT;
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

/* A vault answer that is not a 401. Returns 1 when the operation goes on (the next page). */
static int op_vault_final(struct run *r, struct batch_op *o,
                          const struct atr_http_client_resp *resp, atr_status *out_rc)
{
    struct atr_akv_client *c = r->c;
    struct atr_akv_result *res = &o->result;
    struct atr_akv_error *fail = &res->fail;
    struct atr_err *err = &res->err;
    atr_status rc;
    if (o->op == ATR_AKV_OP_LIST) {
        if (resp->status != 200) {
            *out_rc = vault_answer_error(resp, ATR_AKV_OP_LIST, &o->key, fail, err);
            return 0;
        }
        char next[URL_MAX];
        rc = atr_akv_versions_page_parse(&res->versions, next, sizeof(next), &o->key,
                                         (size_t)c->max_pages * ATR_AKV_PAGE_SIZE,
                                         atr_buf_span(&resp->body), err);
        if (rc != ATR_OK) {
            *out_rc = failed(fail, err, ATR_AKV_UNEXPECTED,
                             "the vault %s gave a malformed version list", o->key.host);
            return 0;
        }
        *out_rc = ATR_OK;
        if (next[0] == '\0')
            return 0;
        if (++o->page == c->max_pages) {
            res->versions.truncated = 1;
            return 0;
        }
        snprintf(o->url, URL_MAX, "%s", next);
        return 1;
    }
    const char *verb = o->op == ATR_AKV_OP_WRAP ? "wrapkey" : "unwrapkey";
    if (resp->status != 200) {
        *out_rc = vault_answer_error(resp, o->op, &o->key, fail, err);
        return 0;
    }
    char kid[ATR_AKV_KID_MAX];
    struct atr_buf tmp;
    atr_buf_init(&tmp, ATR_AKV_VALUE_MAX);
    rc = atr_akv_key_op_answer_parse(kid, &tmp, &o->key, atr_buf_span(&resp->body), err);
    if (rc != ATR_OK) {
        rc = failed(fail, err, ATR_AKV_UNEXPECTED, "the vault %s gave a malformed %s answer",
                    o->key.host, verb);
    } else if (o->op == ATR_AKV_OP_WRAP) {
        if (atr_buf_append(&res->wrapped, tmp.ptr, tmp.len) != ATR_OK)
            rc = failed(fail, err, ATR_AKV_LOCAL, "akv: no room for the wrapped value");
    } else if (atr_secret_init_copy(&res->unwrapped, tmp.ptr, tmp.len) != ATR_OK) {
        rc = failed(fail, err, ATR_AKV_LOCAL, "akv: out of secure memory");
    }
    if (rc == ATR_OK)
        snprintf(res->kid, sizeof(res->kid), "%s", kid);
    atr_wipe(tmp.ptr, tmp.len);
    atr_buf_cleanup(&tmp);
    *out_rc = rc;
    return 0;
}

/* The vault's answer: done, a retry after a 401 challenge, or the next page. */
static void op_vault_answer(struct run *r, struct batch_op *o)
{
    struct atr_akv_client *c = r->c;
    struct atr_akv_result *res = &o->result;
    struct xfer *x = o->xfer;
    if (o->discovering) {
        r->hosts[o->hidx].discovering = 0;
        r->hosts[o->hidx].discovered = 1;
        o->discovering = 0;
    }
    atr_status rc = xfer_result(r, x, 0, o->key.host, &res->fail, &res->err);
    if (rc != ATR_OK) {
        op_finish(r, o, rc);
        return;
    }
    if (x->resp.status != 401) {
        int more = op_vault_final(r, o, &x->resp, &rc);
        xfer_free(r, x);
        o->xfer = NULL;
        if (rc == ATR_OK && more)
            op_call_begin(r, o);
        else
            op_finish(r, o, rc);
        return;
    }
    /* 401: learn (or re-learn) the challenge, drop a refused token, retry */
    const char *www = atr_http_client_resp_header(&x->resp, "WWW-Authenticate");
    struct atr_akv_challenge nc;
    int usable = www != NULL && atr_akv_challenge_parse(&nc, www, NULL) == ATR_OK;
    xfer_free(r, x);
    o->xfer = NULL;
    if (!usable) {
        op_fail(r, o, ATR_AKV_UNEXPECTED,
                "the vault %s refused the call without a usable challenge", o->key.host);
        return;
    }
    if (o->tok != NULL) {
        token_forget_serial(c, o->tok_serial);
        op_drop_token(o);
        if (o->attempt >= 1) {
            res->fail.http_status = 401;
            op_fail(r, o, ATR_AKV_CREDENTIAL_INVALID, "the vault %s refused the service's token",
                    o->key.host);
            return;
        }
    }
    chal_put(c, o->key.host, &nc);
    o->ch = nc;
    o->have_chal = 1;
    if (++o->attempt == 3) {
        res->fail.http_status = 401;
        op_fail(r, o, ATR_AKV_CREDENTIAL_INVALID, "the vault %s refused the service's token",
                o->key.host);
        return;
    }
    o->state = OS_PREP;
}

/* Advances @p o as far as it goes without waiting; returns 1 if it moved. */
static int op_step(struct run *r, struct batch_op *o)
{
    int moved = 0;
    for (;;) {
        enum op_state before = o->state;
        if (r->expired &&
            (before == OS_START || before == OS_TOKEN_READY || before == OS_VAULT_READY))
            return moved; /* the deadline passed: op_expire says so */
        switch (o->state) {
        case OS_START:
            op_begin(r, o);
            break;
        case OS_PREP:
            op_prep(r, o);
            break;
        case OS_DISCOVER_WAIT:
            if (!r->hosts[o->hidx].discovering) {
                o->have_chal = chal_get(&o->ch, r->c, o->key.host);
                o->state = OS_PREP;
            }
            break;
        case OS_TOKEN:
            op_token(r, o);
            break;
        case OS_FLIGHT_WAIT:
            op_flight_wait(r, o);
            break;
        case OS_TOKEN_READY:
            if (slot_free(r, o->tk_hidx))
                op_token_send(r, o);
            break;
        case OS_TOKEN_SENT:
            if (o->xfer->done)
                op_token_answer(r, o);
            break;
        case OS_VAULT_READY:
            if (slot_free(r, o->hidx))
                op_vault_send(r, o);
            break;
        case OS_VAULT_SENT:
            if (o->xfer->done)
                op_vault_answer(r, o);
            break;
        case OS_DONE:
            return moved;
        }
        if (o->state == before)
            return moved;
        moved = 1;
    }
}

/* The run's deadline passed: every open operation fails with the cause of what it waited for. */
static void op_expire(struct run *r, struct batch_op *o)
{
    int authority = o->op == ATR_AKV_OP_TOKEN || o->state == OS_TOKEN ||
                    o->state == OS_FLIGHT_WAIT || o->state == OS_TOKEN_READY ||
                    o->state == OS_TOKEN_SENT;
    atr_akv_cause cause = authority ? ATR_AKV_AUTHORITY_UNREACHABLE : ATR_AKV_VAULT_UNREACHABLE;
    if (o->state == OS_START) {
        op_fail(r, o, cause, "the batch's deadline passed before this operation ran");
    } else if (o->xfer != NULL) {
        char host[ATR_AKV_HOST_MAX];
        snprintf(host, sizeof(host), "%s", o->xfer->host);
        snprintf(o->result.fail.host, sizeof(o->result.fail.host), "%s", host);
        op_fail(r, o, cause, "%s did not answer before the deadline", host);
    } else {
        op_fail(r, o, cause, "the batch's deadline passed before this operation finished");
    }
}

/* Runs @p ops (fresh, state START) concurrently until all are done or @p timeout_ms passed. */
static atr_status run_ops(struct atr_akv_client *c, struct batch_op *ops, size_t n,
                          unsigned timeout_ms, struct atr_err *err)
{
    struct run r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.ops = ops;
    r.n = n;
    r.deadline = mono_ms() + timeout_ms;
    r.max_host = c->max_host_conns;
    r.max_total = RUN_MAX_INFLIGHT > r.max_host ? RUN_MAX_INFLIGHT : r.max_host;
    ATR_TRY(engine_take(&r.eng, c, err));
    for (;;) {
        size_t open;
        int moved;
        do {
            moved = 0;
            open = 0;
            r.foreign_wait = 0;
            r.expired = mono_ms() >= r.deadline;
            for (size_t i = 0; i < n; i++) {
                moved |= op_step(&r, &ops[i]);
                open += ops[i].state != OS_DONE;
            }
        } while (moved && open > 0);
        if (open == 0)
            break;
        int64_t now = mono_ms();
        if (now >= r.deadline) {
            for (size_t i = 0; i < n; i++) {
                if (ops[i].state != OS_DONE)
                    op_expire(&r, &ops[i]);
            }
            break;
        }
        int running = 0;
        curl_multi_perform(r.eng->multi, &running);
        if (run_collect(&r) > 0)
            continue;
        long to = -1;
        curl_multi_timeout(r.eng->multi, &to);
        int64_t wait = r.deadline - now;
        if (to >= 0 && to < wait)
            wait = to;
        if (r.foreign_wait && wait > FLIGHT_POLL_MS)
            wait = FLIGHT_POLL_MS;
        if (wait > RUN_POLL_MAX_MS)
            wait = RUN_POLL_MAX_MS;
        if (wait > 0)
            curl_multi_poll(r.eng->multi, NULL, 0, (int)wait, NULL);
    }
    engine_give(c, r.eng);
    atr_free(r.hosts);
    return ATR_OK;
}

/* ------------------------------------------------------------ blocking calls (a batch of one) */

static void op_init(struct batch_op *o, atr_akv_op op)
{
    memset(o, 0, sizeof(*o));
    o->op = op;
    o->result.op = op;
    atr_buf_init(&o->input, ATR_AKV_VALUE_MAX);
    atr_buf_init(&o->result.wrapped, ATR_AKV_VALUE_MAX);
}

static void op_cleanup(struct batch_op *o)
{
    atr_wipe(o->input.ptr, o->input.len);
    atr_buf_cleanup(&o->input);
    atr_buf_cleanup(&o->result.wrapped);
    atr_secret_cleanup(&o->result.unwrapped);
    atr_akv_versions_cleanup(&o->result.versions);
}

/* Runs one operation with the deadline opts.op_timeout_ms; copies its failure out. */
static atr_status run_single(struct batch_op *o, struct atr_akv_client *c,
                             struct atr_akv_error *fail, struct atr_err *err)
{
    struct atr_err rerr;
    atr_err_clear(&rerr);
    atr_status rc = run_ops(c, o, 1, c->op_timeout_ms, &rerr);
    if (rc != ATR_OK) {
        memset(fail, 0, sizeof(*fail));
        return failed(fail, err, ATR_AKV_LOCAL, "%s", atr_err_msg(&rerr));
    }
    *fail = o->result.fail;
    if (o->result.status != ATR_OK && err != NULL)
        *err = o->result.err;
    return o->result.status;
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
    struct batch_op o;
    op_init(&o, ATR_AKV_OP_TOKEN);
    snprintf(o.tenant, sizeof(o.tenant), "%s", tenant);
    atr_status rc = run_single(&o, c, fail, err);
    op_cleanup(&o);
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
    struct batch_op o;
    op_init(&o, ATR_AKV_OP_WRAP);
    o.key = *key;
    o.alg = alg;
    if (value.len <= ATR_AKV_VALUE_MAX &&
        atr_buf_append(&o.input, value.ptr, value.len) != ATR_OK) {
        op_cleanup(&o);
        return failed(fail, err, ATR_AKV_LOCAL, "akv: out of memory");
    }
    atr_status rc = run_single(&o, c, fail, err);
    if (rc == ATR_OK && atr_buf_append(out, o.result.wrapped.ptr, o.result.wrapped.len) != ATR_OK)
        rc = failed(fail, err, ATR_AKV_LOCAL, "akv: no room for the wrapped value");
    if (rc == ATR_OK)
        snprintf(out_kid, ATR_AKV_KID_MAX, "%s", o.result.kid);
    op_cleanup(&o);
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
    if (out_kid != NULL)
        out_kid[0] = '\0';
    struct batch_op o;
    op_init(&o, ATR_AKV_OP_UNWRAP);
    o.key = *key;
    o.alg = alg;
    if (wrapped.len <= ATR_AKV_VALUE_MAX &&
        atr_buf_append(&o.input, wrapped.ptr, wrapped.len) != ATR_OK) {
        op_cleanup(&o);
        return failed(fail, err, ATR_AKV_LOCAL, "akv: out of memory");
    }
    atr_status rc = run_single(&o, c, fail, err);
    if (rc == ATR_OK) {
        *out = o.result.unwrapped; /* moved */
        memset(&o.result.unwrapped, 0, sizeof(o.result.unwrapped));
        if (out_kid != NULL)
            snprintf(out_kid, ATR_AKV_KID_MAX, "%s", o.result.kid);
    }
    op_cleanup(&o);
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
    struct batch_op o;
    op_init(&o, ATR_AKV_OP_LIST);
    o.key = *key;
    atr_status rc = run_single(&o, c, fail, err);
    if (rc == ATR_OK) {
        *out = o.result.versions; /* moved */
        memset(&o.result.versions, 0, sizeof(o.result.versions));
    }
    op_cleanup(&o);
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
    for (size_t i = 0; i < b->n; i++)
        op_cleanup(&b->ops[i]);
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
    op_init(o, op);
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
        op_cleanup(o);
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
    if (o == NULL) /* cannot happen: batch_add sets it on ATR_OK */
        return atr_err_set(err, ATR_E_INTERNAL, "akv: no operation slot");
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

atr_status atr_akv_batch_run(struct atr_akv_batch *b, unsigned timeout_ms, struct atr_err *err)
{
    if (b->ran)
        return atr_err_set(err, ATR_E_INVALID, "akv: the batch already ran");
    b->ran = 1;
    if (b->n == 0)
        return ATR_OK;
    struct atr_err rerr;
    atr_err_clear(&rerr);
    atr_status rc = run_ops(b->c, b->ops, b->n, timeout_ms, &rerr);
    if (rc != ATR_OK) {
        /* no operation ran: each says why, so none reads as a success */
        for (size_t i = 0; i < b->n; i++) {
            struct atr_akv_result *r = &b->ops[i].result;
            memset(&r->fail, 0, sizeof(r->fail));
            r->status = failed(&r->fail, &r->err, ATR_AKV_LOCAL, "%s", atr_err_msg(&rerr));
        }
        return atr_err_set(err, rc, "%s", atr_err_msg(&rerr));
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
    case 7000215: /* invalid client secret */
    case 7000222: /* the secret has expired */
    case 700027:  /* assertion: bad signature, certificate not registered, … */
    case 700024:  /* assertion: not within its valid time range */
    case 700021:  /* assertion: iss/sub not the client id */
    case 700023:  /* assertion: aud not the token endpoint */
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
