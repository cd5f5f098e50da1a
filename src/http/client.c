/* SPDX-License-Identifier: Apache-2.0 */
#include "http/client.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/alloc.h"
#include "base/log.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_TIMEOUT_MS         30000u
#define DEFAULT_MAX_RESPONSE       ((size_t)4 << 20)
#define HOST_MAX                   256

struct atr_http_client {
    CURL *easy;
    char *ca_file;
    char *user_agent;
    unsigned connect_timeout_ms;
    unsigned timeout_ms;
    size_t max_response;
};

/* State of one transfer, seen by the curl callbacks. */
struct transfer {
    struct atr_http_client_resp *resp;
    int too_large;
    int nomem;
};

/* libcurl's process-wide initialisation, done once (a named singleton). */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void atr_http_client_resp_init(struct atr_http_client_resp *r)
{
    memset(r, 0, sizeof(*r));
    atr_buf_init(&r->body, 0);
}

static void headers_clear(struct atr_http_client_resp *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        atr_free(r->headers[i].name);
        atr_free(r->headers[i].value);
        r->headers[i].name = NULL;
        r->headers[i].value = NULL;
    }
    r->nheaders = 0;
    r->header_bytes = 0;
}

void atr_http_client_resp_cleanup(struct atr_http_client_resp *r)
{
    if (r == NULL)
        return;
    headers_clear(r);
    atr_buf_cleanup(&r->body);
    r->status = 0;
}

const char *atr_http_client_resp_header(const struct atr_http_client_resp *r, const char *name)
{
    if (r == NULL || name == NULL)
        return NULL;
    for (size_t i = r->nheaders; i > 0; i--) {
        if (strcasecmp(r->headers[i - 1].name, name) == 0)
            return r->headers[i - 1].value;
    }
    return NULL;
}

atr_status atr_http_client_new(struct atr_http_client **out,
                               const struct atr_http_client_opts *opts, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return atr_err_set(err, ATR_E_INTERNAL, "libcurl could not initialise");
    struct atr_http_client_opts o;
    memset(&o, 0, sizeof(o));
    if (opts != NULL)
        o = *opts;
    if (o.ca_file != NULL && access(o.ca_file, R_OK) != 0)
        return atr_err_set(err, ATR_E_CONFIG, "cannot read the CA file %s", o.ca_file);

    atr_status rc = ATR_OK;
    struct atr_http_client *c = atr_calloc(1, sizeof(*c));
    if (c == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    c->connect_timeout_ms =
        o.connect_timeout_ms != 0 ? o.connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->timeout_ms = o.timeout_ms != 0 ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_response = o.max_response != 0 ? o.max_response : DEFAULT_MAX_RESPONSE;
    c->user_agent = atr_strdup(o.user_agent != NULL ? o.user_agent : "atrest/" ATR_VERSION);
    if (c->user_agent == NULL ||
        (o.ca_file != NULL && (c->ca_file = atr_strdup(o.ca_file)) == NULL)) {
        rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
        goto fail;
    }
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "libcurl could not create a handle");
        goto fail;
    }
    *out = c;
    return ATR_OK;
fail:
    atr_http_client_free(c);
    return rc;
}

void atr_http_client_free(struct atr_http_client *c)
{
    if (c == NULL)
        return;
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    atr_free(c->ca_file);
    atr_free(c->user_agent);
    atr_free(c);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb;
    atr_status rc = atr_buf_append(&t->resp->body, ptr, n);
    if (rc == ATR_E_TOO_LARGE) {
        t->too_large = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (rc != ATR_OK) {
        t->nomem = 1;
        return 0;
    }
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
    struct transfer *t = userdata;
    struct atr_http_client_resp *r = t->resp;
    size_t n = size * nitems;
    /* a status line starts a new response (after 100 Continue, for one) */
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        headers_clear(r);
        return n;
    }
    size_t len = n;
    while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
        len--;
    const char *colon = memchr(ptr, ':', len);
    if (colon == NULL || colon == ptr)
        return n; /* blank line or malformed: ignore */
    if (r->nheaders == ATR_HTTP_CLIENT_MAX_HEADERS ||
        ATR_HTTP_CLIENT_MAX_HEADER_BYTES - r->header_bytes < len)
        return n; /* keep the first ones; never fail a transfer over headers */
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
        t->nomem = 1;
        return 0;
    }
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
    r->header_bytes += len;
    return n;
}

/* Transport failure -> status code and a message without libcurl's text. */
static atr_status map_curl(CURLcode cc, const char *method, const char *host, unsigned timeout_ms,
                           struct atr_err *err)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return atr_err_set(err, ATR_E_TIMEOUT, "%s to %s: no answer within %u ms", method, host,
                           timeout_ms);
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
        return atr_err_set(err, ATR_E_TLS, "%s to %s: TLS failed (%s)", method, host,
                           cc == CURLE_PEER_FAILED_VERIFICATION
                               ? "the server certificate is not trusted for this host"
                               : "handshake or certificate problem");
    case CURLE_COULDNT_RESOLVE_HOST:
        return atr_err_set(err, ATR_E_NETWORK, "%s to %s: cannot resolve the host name", method,
                           host);
    case CURLE_COULDNT_CONNECT:
        return atr_err_set(err, ATR_E_NETWORK, "%s to %s: connection refused or unreachable",
                           method, host);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return atr_err_set(err, ATR_E_INVALID, "%s: the URL is not a valid https URL", method);
    case CURLE_OUT_OF_MEMORY:
        return atr_err_set(err, ATR_E_NOMEM, "%s to %s: out of memory", method, host);
    case CURLE_FILESIZE_EXCEEDED:
        return atr_err_set(err, ATR_E_TOO_LARGE, "%s to %s: the response is too large", method,
                           host);
    default:
        return atr_err_set(err, ATR_E_NETWORK, "%s to %s: the connection failed (%s)", method, host,
                           curl_easy_strerror(cc));
    }
}

/* Checks that @p url is https and extracts "host[:port]" for messages. */
static atr_status url_host(char *host, size_t cap, const char *url, struct atr_err *err)
{
    atr_status rc = ATR_OK;
    char *scheme = NULL;
    char *h = NULL;
    char *port = NULL;
    CURLU *u = curl_url();
    if (u == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    if (url == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK) {
        rc = atr_err_set(err, ATR_E_INVALID, "the URL is not valid");
        goto done;
    }
    if (strcmp(scheme, "https") != 0) {
        rc = atr_err_set(err, ATR_E_INVALID, "only https URLs are allowed");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port != NULL)
        snprintf(host, cap, "%s:%s", h, port);
    else
        snprintf(host, cap, "%s", h);
done:
    curl_free(scheme);
    curl_free(h);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static int header_ok(const struct atr_http_header *h)
{
    if (h->name == NULL || h->value == NULL || h->name[0] == '\0')
        return 0;
    for (const char *p = h->name; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == ':')
            return 0;
    }
    for (const char *p = h->value; *p != '\0'; p++) {
        if (*p == '\r' || *p == '\n')
            return 0;
    }
    return 1;
}

static atr_status build_headers(struct curl_slist **out, const struct atr_http_client_req *rq,
                                int with_body, struct atr_err *err)
{
    struct curl_slist *list = NULL;
    int has_type = 0;
    for (size_t i = 0; i < rq->nheaders; i++)
        has_type |=
            rq->headers[i].name != NULL && strcasecmp(rq->headers[i].name, "Content-Type") == 0;
    /* bodies are JSON unless the caller says otherwise (not curl's form default) */
    if (with_body && !has_type) {
        list = curl_slist_append(NULL, "Content-Type: application/json");
        if (list == NULL)
            return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct atr_http_header *h = &rq->headers[i];
        if (!header_ok(h)) {
            curl_slist_free_all(list);
            return atr_err_set(err, ATR_E_INVALID, "request header %zu is malformed", i + 1);
        }
        size_t len = strlen(h->name) + strlen(h->value) + 3;
        char *line = atr_malloc(len);
        if (line == NULL) {
            curl_slist_free_all(list);
            return atr_err_set(err, ATR_E_NOMEM, "out of memory");
        }
        /* "Name;" sends an empty value; "Name: v" a value */
        if (h->value[0] == '\0')
            snprintf(line, len, "%s;", h->name);
        else
            snprintf(line, len, "%s: %s", h->name, h->value);
        struct curl_slist *next = curl_slist_append(list, line);
        /* the line may carry an Authorization value: wipe our copy */
        memset(line, 0, len);
        atr_free(line);
        if (next == NULL) {
            curl_slist_free_all(list);
            return atr_err_set(err, ATR_E_NOMEM, "out of memory");
        }
        list = next;
    }
    *out = list;
    return ATR_OK;
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK) {                                           \
            rc = atr_err_set(err, ATR_E_INTERNAL, "libcurl refused option " #opt);                 \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

atr_status atr_http_client_send(struct atr_http_client_resp *out, struct atr_http_client *c,
                                const struct atr_http_client_req *rq, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && c != NULL && rq != NULL);
    atr_http_client_resp_init(out);
    atr_buf_init(&out->body, c->max_response);
    atr_status rc = ATR_OK;
    struct curl_slist *headers = NULL;
    const char *method = rq->method != NULL ? rq->method : "GET";
    char host[HOST_MAX];
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    struct transfer t = {out, 0, 0};
    unsigned timeout_ms = rq->timeout_ms != 0 ? rq->timeout_ms : c->timeout_ms;
    CURL *e = c->easy;

    if (strlen(method) == 0 || strlen(method) > 16 || strpbrk(method, " \r\n") != NULL) {
        rc = atr_err_set(err, ATR_E_INVALID, "the request method is malformed");
        goto done;
    }
    if ((rc = url_host(host, sizeof(host), rq->url, err)) != ATR_OK)
        goto done;
    int with_body = rq->body.len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0;
    if (strcmp(method, "HEAD") == 0)
        with_body = 0;
    if ((rc = build_headers(&headers, rq, with_body, err)) != ATR_OK)
        goto done;

    /* a fresh set of options; open connections and TLS sessions are kept */
    curl_easy_reset(e);
    SETOPT(CURLOPT_URL, rq->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->ca_file != NULL)
        SETOPT(CURLOPT_CAINFO, c->ca_file);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_USERAGENT, c->user_agent);
    SETOPT(CURLOPT_ERRORBUFFER, errbuf);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, &t);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, &t);
    if (headers != NULL)
        SETOPT(CURLOPT_HTTPHEADER, headers);

    if (strcmp(method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (with_body) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body.len);
        SETOPT(CURLOPT_POSTFIELDS, rq->body.ptr != NULL ? (const char *)rq->body.ptr : "");
        if (strcmp(method, "POST") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        SETOPT(CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode cc = curl_easy_perform(e);
    long connects = 0;
    if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
        out->new_connections = connects;
    if (cc != CURLE_OK) {
        if (errbuf[0] != '\0' && atr_log_enabled(ATR_LOG_DEBUG))
            atr_log(ATR_LOG_DEBUG, "http.client", NULL, "%s to %s: %s", method, host, errbuf);
        if (t.too_large)
            rc =
                atr_err_set(err, ATR_E_TOO_LARGE, "%s to %s: the response is larger than %zu bytes",
                            method, host, c->max_response);
        else if (t.nomem)
            rc = atr_err_set(err, ATR_E_NOMEM, "%s to %s: out of memory", method, host);
        else if (cc == CURLE_FILESIZE_EXCEEDED)
            rc =
                atr_err_set(err, ATR_E_TOO_LARGE, "%s to %s: the response is larger than %zu bytes",
                            method, host, c->max_response);
        else
            rc = map_curl(cc, method, host, timeout_ms, err);
        goto done;
    }
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    out->status = (unsigned)status;
done:
    if (c->easy != NULL) {
        /* drop pointers into this call's stack before returning */
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
    }
    curl_slist_free_all(headers);
    if (rc != ATR_OK) {
        atr_buf_cleanup(&out->body);
        out->status = 0;
    }
    return rc;
}
