/* SPDX-License-Identifier: Apache-2.0 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/secmem.h"
#include "crypto/rand.h"
#include "crypto/x509.h"
#include "http/json.h"

/* Defaults (see struct atr_http_server_opts). */
#define DEFAULT_THREADS         4u
#define DEFAULT_MAX_CONNECTIONS 512u
#define DEFAULT_IDLE_TIMEOUT_S  60u
#define DEFAULT_GRACE_MS        5000u
#define MAX_THREADS             256u
/* Per-connection memory for the request line and headers (bearer JWTs fit). */
#define CONN_MEMORY_LIMIT ((size_t)64 << 10)
/* Largest certificate or key file accepted. */
#define PEM_FILE_MAX ((size_t)1 << 20)
/*
 * A body that cannot be used (over its limit, or the request already
 * failed) is read and dropped before the error is sent, up to this many
 * bytes; past it the connection is closed instead.
 */
#define DISCARD_MAX ((size_t)16 << 20)
/* Response headers a handler may add. */
#define MAX_RESP_HEADERS 32
/* Bytes of the path written to the access log. */
#define LOG_PATH_MAX 256
/* Block size asked of streamed bodies. */
#define STREAM_BLOCK 16384
/* TLS 1.2 and 1.3 only. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct resp_header {
    char *name;
    char *value;
};

struct stream_state;

struct atr_http_resp {
    unsigned status; /* 0 = nothing set */
    int has_body;    /* body or stream set */
    char *content_type;
    struct atr_buf body;
    struct resp_header headers[MAX_RESP_HEADERS];
    size_t nheaders;
    atr_http_stream_fn stream_fn;
    void *stream_ctx;
    atr_http_stream_free_fn stream_free;
};

enum req_state {
    REQ_NEW = 1,      /* headers not seen yet */
    REQ_BODY = 2,     /* reading the body */
    REQ_DROP = 3,     /* dropping any body, then answering with `pending` */
    REQ_ANSWERED = 4, /* response queued */
};

struct atr_http_req {
    struct atr_http_server *srv;
    struct MHD_Connection *conn;
    enum req_state state;
    int64_t start_ms;
    char method[32];
    char *uri;       /* raw request target, owned */
    size_t path_len; /* bytes of the path in uri */
    char *path;      /* raw path, owned, NUL-terminated */
    char id[ATR_HTTP_REQ_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    size_t body_limit;
    size_t discarded;
    atr_status pending; /* the error to answer with in REQ_DROP */
    struct atr_buf body;
    struct atr_router_match match;
    struct atr_router_query query;
    struct atr_err err;
    void *principal;
    void (*principal_free)(void *);
    struct atr_http_resp resp;
    unsigned status_sent;
    _Atomic uint64_t bytes_sent;
    struct stream_state *stream; /* live streamed body, or NULL */
};

struct atr_http_server {
    char *name;
    char *listen_addr;
    uint16_t port_opt;
    unsigned threads;
    unsigned max_connections;
    unsigned max_per_ip;
    unsigned idle_timeout_s;
    unsigned grace_ms;
    atr_http_auth_fn auth;
    void *auth_ctx;
    int (*accept)(const char *client_ip, void *accept_ctx);
    void *accept_ctx;
    void (*observe)(const struct atr_route *route, const char *method, unsigned status,
                    int64_t duration_ms, void *observe_ctx);
    void *observe_ctx;
    const struct atr_clock *clock;
    const struct atr_route *routes;
    size_t nroutes;
    void *app_ctx;
    char *cert_pem;            /* NUL-terminated */
    struct atr_secret key_pem; /* NUL-terminated, secure heap */
    struct MHD_Daemon *daemon;
    uint16_t port;
    int ipv6;
    atomic_int stopping;
    atomic_ulong id_counter;
    pthread_mutex_t lock; /* guards inflight */
    pthread_cond_t idle;  /* signalled when inflight drops to 0 */
    unsigned inflight;
};

/* A streamed body handed to libmicrohttpd; outlives the handler call. */
struct stream_state {
    struct atr_http_req *req; /* NULL once the request completed */
    atr_http_stream_fn fn;
    void *ctx;
    atr_http_stream_free_fn free_fn;
    int eof;
};

/* ---- responses ---------------------------------------------------------- */

static void resp_init(struct atr_http_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    atr_buf_init(&resp->body, SIZE_MAX - 1);
}

static void resp_clear_body(struct atr_http_resp *resp)
{
    atr_buf_cleanup(&resp->body);
    ATR_FREE(resp->content_type);
    if (resp->stream_free != NULL)
        resp->stream_free(resp->stream_ctx);
    resp->stream_fn = NULL;
    resp->stream_ctx = NULL;
    resp->stream_free = NULL;
    resp->has_body = 0;
}

static void resp_cleanup(struct atr_http_resp *resp)
{
    resp_clear_body(resp);
    for (size_t i = 0; i < resp->nheaders; i++) {
        atr_free(resp->headers[i].name);
        atr_free(resp->headers[i].value);
    }
    resp->nheaders = 0;
}

static int token_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 128)
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c) != NULL)
            return 0;
    }
    return 1;
}

static int header_value_ok(const char *s)
{
    if (s == NULL)
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\r' || *p == '\n')
            return 0;
    }
    return strlen(s) <= 8192;
}

atr_status atr_http_resp_header(struct atr_http_resp *resp, const char *name, const char *value)
{
    ATR_ASSERT_ARG(resp != NULL);
    if (!token_ok(name) || !header_value_ok(value))
        return ATR_E_INVALID;
    if (resp->nheaders == MAX_RESP_HEADERS)
        return ATR_E_TOO_LARGE;
    char *n = atr_strdup(name);
    char *v = atr_strdup(value);
    if (n == NULL || v == NULL) {
        atr_free(n);
        atr_free(v);
        return ATR_E_NOMEM;
    }
    resp->headers[resp->nheaders].name = n;
    resp->headers[resp->nheaders].value = v;
    resp->nheaders++;
    return ATR_OK;
}

atr_status atr_http_resp_body(struct atr_http_resp *resp, unsigned status, const char *content_type,
                              struct atr_span body)
{
    ATR_ASSERT_ARG(resp != NULL);
    if (status < 100 || status > 599 || (content_type != NULL && !header_value_ok(content_type)))
        return ATR_E_INVALID;
    resp_clear_body(resp);
    if (content_type != NULL && (resp->content_type = atr_strdup(content_type)) == NULL)
        return ATR_E_NOMEM;
    ATR_TRY(atr_buf_append(&resp->body, body.ptr, body.len));
    resp->status = status;
    resp->has_body = 1;
    return ATR_OK;
}

atr_status atr_http_resp_json(struct atr_http_resp *resp, unsigned status, json_t *body)
{
    atr_status rc;
    ATR_ASSERT_ARG(resp != NULL);
    if (body == NULL)
        return ATR_E_NOMEM;
    if (status < 100 || status > 599) {
        rc = ATR_E_INVALID;
        goto done;
    }
    resp_clear_body(resp);
    if ((resp->content_type = atr_strdup("application/json; charset=utf-8")) == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    if ((rc = atr_json_dump(&resp->body, body)) != ATR_OK)
        goto done;
    resp->status = status;
    resp->has_body = 1;
done:
    json_decref(body);
    return rc;
}

atr_status atr_http_resp_error(struct atr_http_resp *resp, atr_status st, const char *message,
                               json_t *extra)
{
    ATR_ASSERT_ARG(resp != NULL);
    json_t *body = NULL;
    ATR_TRY(atr_json_error_new(&body, st, message, extra));
    return atr_http_resp_json(resp, atr_json_error_http(st), body);
}

atr_status atr_http_resp_stream(struct atr_http_resp *resp, unsigned status,
                                const char *content_type, atr_http_stream_fn fn, void *ctx,
                                atr_http_stream_free_fn free_fn)
{
    atr_status rc = ATR_OK;
    if (resp == NULL || fn == NULL || status < 100 || status > 599 ||
        (content_type != NULL && !header_value_ok(content_type))) {
        rc = ATR_E_INVALID;
        goto fail;
    }
    resp_clear_body(resp);
    if (content_type != NULL && (resp->content_type = atr_strdup(content_type)) == NULL) {
        rc = ATR_E_NOMEM;
        goto fail;
    }
    resp->status = status;
    resp->has_body = 1;
    resp->stream_fn = fn;
    resp->stream_ctx = ctx;
    resp->stream_free = free_fn;
    return ATR_OK;
fail:
    if (free_fn != NULL)
        free_fn(ctx);
    return rc;
}

/* ---- requests ----------------------------------------------------------- */

const char *atr_http_req_method(const struct atr_http_req *req)
{
    return req->method;
}

const char *atr_http_req_path(const struct atr_http_req *req)
{
    return req->path != NULL ? req->path : "";
}

const char *atr_http_req_param(const struct atr_http_req *req, const char *name)
{
    return atr_router_param(&req->match, name);
}

const char *atr_http_req_query(const struct atr_http_req *req, const char *name)
{
    return atr_router_query_get(&req->query, name);
}

const char *atr_http_req_header(const struct atr_http_req *req, const char *name)
{
    if (req->conn == NULL || name == NULL)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct atr_span atr_http_req_body(const struct atr_http_req *req)
{
    return atr_buf_span(&req->body);
}

const char *atr_http_req_client_ip(const struct atr_http_req *req)
{
    return req->client_ip;
}

const char *atr_http_req_id(const struct atr_http_req *req)
{
    return req->id;
}

const struct atr_route *atr_http_req_route(const struct atr_http_req *req)
{
    return req->match.route;
}

struct atr_err *atr_http_req_err(struct atr_http_req *req)
{
    return &req->err;
}

atr_status atr_http_req_json(json_t **out, struct atr_http_req *req)
{
    return atr_json_parse_object(out, atr_buf_span(&req->body), &req->err);
}

void atr_http_req_set_principal(struct atr_http_req *req, void *principal, void (*free_fn)(void *))
{
    if (req->principal_free != NULL)
        req->principal_free(req->principal);
    req->principal = principal;
    req->principal_free = free_fn;
}

void *atr_http_req_principal(const struct atr_http_req *req)
{
    return req->principal;
}

static int64_t mono_ms(const struct atr_http_server *srv)
{
    return atr_clock_mono_ms(srv->clock);
}

static void req_free(struct atr_http_req *req)
{
    if (req == NULL)
        return;
    if (req->stream != NULL)
        req->stream->req = NULL;
    if (req->principal_free != NULL)
        req->principal_free(req->principal);
    resp_cleanup(&req->resp);
    atr_buf_cleanup(&req->body);
    atr_free(req->uri);
    atr_free(req->path);
    atr_free(req);
}

/* A client-chosen request id: 1..64 characters from [A-Za-z0-9._:-]. */
static int req_id_ok(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strnlen(s, ATR_HTTP_REQ_ID_MAX + 1);
    if (n == 0 || n > ATR_HTTP_REQ_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

static void req_id_make(struct atr_http_req *req)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[16];
    if (atr_rand_bytes(rnd, sizeof(rnd), NULL) != ATR_OK) {
        /* the CSPRNG failing is not the client's problem: stay unique */
        unsigned long n = atomic_fetch_add(&req->srv->id_counter, 1);
        snprintf(req->id, sizeof(req->id), "local-%016lx", n);
        return;
    }
    for (size_t i = 0; i < sizeof(rnd); i++) {
        req->id[2 * i] = hex[rnd[i] >> 4];
        req->id[2 * i + 1] = hex[rnd[i] & 0xf];
    }
    req->id[2 * sizeof(rnd)] = '\0';
}

/* ---- libmicrohttpd callbacks ------------------------------------------- */

static void inflight_add(struct atr_http_server *srv, int delta)
{
    pthread_mutex_lock(&srv->lock);
    if (delta > 0)
        srv->inflight++;
    else if (srv->inflight > 0)
        srv->inflight--;
    if (srv->inflight == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
}

/* Writes the address of @p sa as text ("unknown" when not IPv4/IPv6). */
static void addr_text(char out[INET6_ADDRSTRLEN], const struct sockaddr *sa)
{
    strcpy(out, "unknown");
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  INET6_ADDRSTRLEN);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  INET6_ADDRSTRLEN);
}

/* libmicrohttpd's accept policy: the application's admission hook. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct atr_http_server *srv = cls;
    (void)addrlen;
    if (srv->accept == NULL)
        return MHD_YES;
    char ip[INET6_ADDRSTRLEN];
    addr_text(ip, addr);
    return srv->accept(ip, srv->accept_ctx) ? MHD_YES : MHD_NO;
}

/*
 * Called once per request with the raw request target, before headers are
 * parsed: makes the request object (freed in on_completed).
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct atr_http_server *srv = cls;
    struct atr_http_req *req = atr_calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->srv = srv;
    req->conn = conn;
    req->state = REQ_NEW;
    req->start_ms = mono_ms(srv);
    atr_buf_init(&req->body, 0);
    resp_init(&req->resp);
    atr_err_clear(&req->err);
    /* libmicrohttpd bounds the request line by CONN_MEMORY_LIMIT */
    req->uri = atr_strdup(uri);
    if (req->uri == NULL) {
        atr_free(req);
        return NULL;
    }
    size_t n = strlen(req->uri);
    const char *q = memchr(req->uri, '?', n);
    req->path_len = q != NULL ? (size_t)(q - req->uri) : n;
    req->path = atr_strndup(req->uri, req->path_len);
    if (req->path == NULL) {
        req_free(req);
        return NULL;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    addr_text(req->client_ip, ci != NULL ? ci->client_addr : NULL);
    inflight_add(srv, 1);
    return req;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR:
        return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR:
        return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return "client_abort";
    default:
        return "other";
    }
}

/* The access log line: never headers, query or body (they may carry secrets). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct atr_http_server *srv = cls;
    ATR_UNUSED(conn);
    struct atr_http_req *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    int64_t ms = mono_ms(srv) - req->start_ms;
    char path[LOG_PATH_MAX + 4];
    size_t plen = req->path_len;
    if (plen > LOG_PATH_MAX) {
        memcpy(path, req->path, LOG_PATH_MAX);
        memcpy(path + LOG_PATH_MAX, "...", 4);
    } else {
        memcpy(path, req->path, plen + 1);
    }
    const char *method = req->method[0] != '\0' ? req->method : "-";
    char msg[LOG_PATH_MAX + 64];
    snprintf(msg, sizeof(msg), "%s %s %u", method, path, req->status_sent);
    atr_log_fields(ATR_LOG_INFO, "http.access", req->id[0] != '\0' ? req->id : NULL, msg, "server",
                   "s", srv->name, "method", "s", method, "path", "s", path, "status", "i",
                   (long long)req->status_sent, "bytes", "i",
                   (long long)atomic_load(&req->bytes_sent), "ms", "i", (long long)ms, "ip", "s",
                   req->client_ip, "route", "s",
                   req->match.route != NULL ? req->match.route->pattern : "-", "end", "s",
                   termination_name(toe), NULL);
    if (srv->observe != NULL)
        srv->observe(req->match.route, method, req->status_sent, ms, srv->observe_ctx);
    req_free(req);
    inflight_add(srv, -1);
}

/* libmicrohttpd hands us its own printf format */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) ATR_PRINTF(2, 0);

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct atr_http_server *srv = cls;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    atr_log(ATR_LOG_WARN, "http.mhd", NULL, "%s: %s", srv->name, buf);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_state *ss = cls;
    ATR_UNUSED(pos);
    if (ss->eof)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = 0;
    int eof = 0;
    atr_status rc = ss->fn(&n, &eof, (uint8_t *)buf, max, ss->ctx);
    if (rc != ATR_OK || n > max) {
        if (ss->req != NULL)
            atr_log(ATR_LOG_WARN, "http.stream", ss->req->id, "streamed body failed: %s",
                    atr_status_name(rc));
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (eof)
        ss->eof = 1;
    if (n == 0)
        return eof ? MHD_CONTENT_READER_END_OF_STREAM : 0;
    if (ss->req != NULL)
        atomic_fetch_add(&ss->req->bytes_sent, (uint64_t)n);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream_state *ss = cls;
    if (ss->req != NULL)
        ss->req->stream = NULL;
    if (ss->free_fn != NULL)
        ss->free_fn(ss->ctx);
    atr_free(ss);
}

struct body_holder {
    struct atr_buf buf;
};

static void body_free(void *cls)
{
    struct body_holder *h = cls;
    atr_buf_cleanup(&h->buf); /* wipes: bodies may carry plaintext records */
    atr_free(h);
}

static int add_header(struct MHD_Response *r, const char *name, const char *value)
{
    return MHD_add_response_header(r, name, value) == MHD_YES;
}

/*
 * Sends req->resp: the handler's body or stream, or an error shape. The
 * response object takes over the body buffer or the stream.
 */
static enum MHD_Result send_resp(struct atr_http_req *req, int close_conn)
{
    struct atr_http_resp *resp = &req->resp;
    struct MHD_Response *r = NULL;
    if (resp->stream_fn != NULL) {
        struct stream_state *ss = atr_calloc(1, sizeof(*ss));
        if (ss == NULL)
            return MHD_NO;
        ss->req = req;
        ss->fn = resp->stream_fn;
        ss->ctx = resp->stream_ctx;
        ss->free_fn = resp->stream_free;
        resp->stream_fn = NULL;
        resp->stream_ctx = NULL;
        resp->stream_free = NULL;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, ss,
                                              stream_free);
        if (r == NULL) {
            stream_free(ss);
            return MHD_NO;
        }
        req->stream = ss;
    } else {
        struct body_holder *h = atr_malloc(sizeof(*h));
        if (h == NULL)
            return MHD_NO;
        h->buf = resp->body; /* move */
        atr_buf_init(&resp->body, 0);
        size_t len = h->buf.len;
        void *ptr = h->buf.ptr != NULL ? h->buf.ptr : (void *)"";
        r = MHD_create_response_from_buffer_with_free_callback_cls(len, ptr, body_free, h);
        if (r == NULL) {
            body_free(h);
            return MHD_NO;
        }
        atomic_store(&req->bytes_sent, (uint64_t)len);
    }
    int ok = add_header(r, "X-Request-Id", req->id) && add_header(r, "x-ms-request-id", req->id) &&
             add_header(r, "Cache-Control", "no-store") &&
             add_header(r, "X-Content-Type-Options", "nosniff");
    if (ok && resp->content_type != NULL)
        ok = add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    const char *client_id = atr_http_req_header(req, "x-ms-client-request-id");
    if (ok && req_id_ok(client_id))
        ok = add_header(r, "x-ms-client-request-id", client_id);
    for (size_t i = 0; ok && i < resp->nheaders; i++)
        ok = add_header(r, resp->headers[i].name, resp->headers[i].value);
    if (ok && close_conn)
        ok = add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (!ok) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    req->status_sent = resp->status;
    req->state = REQ_ANSWERED;
    enum MHD_Result mr = MHD_queue_response(req->conn, resp->status, r);
    MHD_destroy_response(r);
    return mr;
}

/*
 * Sends the error shape of @p st. The message is the request's detail for
 * 4xx statuses when it belongs to @p st, else the public message; detail of
 * 5xx statuses is logged only.
 */
static enum MHD_Result send_error(struct atr_http_req *req, atr_status st, int close_conn)
{
    if (st == ATR_OK)
        st = ATR_E_INTERNAL;
    unsigned http = atr_json_error_http(st);
    const char *msg = NULL;
    if (req->err.code == st && req->err.msg[0] != '\0') {
        if (http < 500)
            msg = req->err.msg;
        else
            atr_log(ATR_LOG_ERROR, "http.error", req->id, "%s %s: %s: %s", req->method,
                    req->match.route != NULL ? req->match.route->pattern : "-", atr_status_name(st),
                    req->err.msg);
    }
    if (!req->resp.has_body || req->resp.status < 400) {
        if (atr_http_resp_error(&req->resp, st, msg, NULL) != ATR_OK)
            return MHD_NO;
    }
    return send_resp(req, close_conn);
}

/* The declared Content-Length: 1 and *out when present and numeric. */
static int content_length(const struct atr_http_req *req, unsigned long long *out)
{
    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL || cl[0] == '\0')
        return 0;
    unsigned long long v = 0;
    for (const char *p = cl; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return 0; /* libmicrohttpd rejects malformed lengths itself */
        if (v > (ULLONG_MAX - 9) / 10) {
            v = ULLONG_MAX;
            break;
        }
        v = v * 10 + (unsigned long long)(*p - '0');
    }
    *out = v;
    return 1;
}

/* 1 if the request announces a body (libmicrohttpd has not read it yet). */
static int has_body(const struct atr_http_req *req)
{
    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return te != NULL || (cl != NULL && strcmp(cl, "0") != 0);
}

/* 1 if the client waits for "100 Continue" before sending the body. */
static int expects_continue(const struct atr_http_req *req)
{
    const char *e = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    return e != NULL && strcasecmp(e, "100-continue") == 0;
}

/*
 * First call for a request (headers parsed): request id, route, query,
 * declared length, auth. @return ATR_OK to read the body and dispatch, or
 * the status of the error to answer with.
 */
static atr_status begin(struct atr_http_req *req, const char *method)
{
    struct atr_http_server *srv = req->srv;
    const char *rid = atr_http_req_header(req, "x-ms-client-request-id");
    if (!req_id_ok(rid))
        rid = atr_http_req_header(req, "X-Request-Id");
    if (req_id_ok(rid))
        memcpy(req->id, rid, strlen(rid) + 1);
    else
        req_id_make(req);

    size_t mlen = strlen(method);
    if (mlen >= sizeof(req->method)) {
        memcpy(req->method, "?", 2);
        return atr_err_set(&req->err, ATR_E_INVALID, "the request method is too long");
    }
    memcpy(req->method, method, mlen + 1);
    if (atomic_load(&srv->stopping))
        return ATR_E_UNAVAILABLE;

    atr_status rc = atr_router_match(&req->match, srv->routes, srv->nroutes, req->method, req->path,
                                     req->path_len, &req->err);
    if (rc == ATR_E_METHOD &&
        atr_http_resp_header(&req->resp, MHD_HTTP_HEADER_ALLOW, req->match.allow) != ATR_OK)
        rc = ATR_E_NOMEM;
    if (rc == ATR_OK) {
        const char *q = strchr(req->uri, '?');
        if (q != NULL)
            rc = atr_router_parse_query(&req->query, q + 1, strlen(q + 1), &req->err);
    }
    if (rc != ATR_OK)
        return rc;
    req->body_limit = atr_route_body_limit(req->match.route);
    unsigned long long declared;
    if (content_length(req, &declared) && declared > req->body_limit)
        return atr_err_set(&req->err, ATR_E_TOO_LARGE, "the request body is larger than %zu bytes",
                           req->body_limit);
    atr_buf_init(&req->body, req->body_limit);
    if ((req->match.route->flags & ATR_ROUTE_AUTH) != 0)
        return srv->auth(req, &req->resp, req->match.route, srv->auth_ctx);
    return ATR_OK;
}

static enum MHD_Result dispatch(struct atr_http_req *req)
{
    struct atr_http_server *srv = req->srv;
    int close_conn = atomic_load(&srv->stopping) != 0;
    if (req->state == REQ_DROP)
        return send_error(req, req->pending, close_conn);
    atr_status rc = req->match.route->handler(req, &req->resp, srv->app_ctx);
    close_conn = atomic_load(&srv->stopping) != 0;
    if (rc != ATR_OK)
        return send_error(req, rc, close_conn);
    if (req->resp.status == 0) {
        atr_err_set(&req->err, ATR_E_INTERNAL, "the handler set no response");
        return send_error(req, ATR_E_INTERNAL, close_conn);
    }
    return send_resp(req, close_conn);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    ATR_UNUSED(cls);
    ATR_UNUSED(url);
    ATR_UNUSED(version);
    ATR_UNUSED(conn);
    struct atr_http_req *req = *con_cls;
    if (req == NULL)
        return MHD_NO; /* out of memory in on_uri: drop the connection */
    switch (req->state) {
    case REQ_NEW: {
        atr_status rc = begin(req, method);
        if (rc == ATR_OK) {
            req->state = REQ_BODY;
            return MHD_YES;
        }
        /*
         * Answering now makes libmicrohttpd close the connection without
         * reading the body. That is right when the client waits for
         * "100 Continue" (it has sent nothing) or announces more than we
         * are willing to drop. Otherwise the body is read and dropped first:
         * closing a TLS connection with unread data resets it, and the client
         * would see a send error instead of our answer (a 401 it must act
         * on, a 413). Without a body the connection stays alive.
         */
        unsigned long long declared = 0;
        if (has_body(req) &&
            (expects_continue(req) || (content_length(req, &declared) && declared > DISCARD_MAX)))
            return send_error(req, rc, atomic_load(&req->srv->stopping) != 0);
        req->state = REQ_DROP;
        req->pending = rc;
        return MHD_YES;
    }
    case REQ_BODY:
    case REQ_DROP:
        if (*upload_data_size == 0)
            return dispatch(req);
        if (req->state == REQ_BODY) {
            atr_status rc = atr_buf_append(&req->body, upload_data, *upload_data_size);
            if (rc != ATR_OK) {
                /* past the limit (storage released), or out of memory */
                req->state = REQ_DROP;
                req->pending = rc == ATR_E_TOO_LARGE ? ATR_E_TOO_LARGE : ATR_E_NOMEM;
                if (rc == ATR_E_TOO_LARGE)
                    atr_err_set(&req->err, ATR_E_TOO_LARGE,
                                "the request body is larger than %zu bytes", req->body_limit);
            }
        }
        if (req->state == REQ_DROP) {
            req->discarded += *upload_data_size;
            if (req->discarded > DISCARD_MAX)
                return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    case REQ_ANSWERED:
    default:
        return MHD_NO;
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

static atr_status read_file(struct atr_buf *out, const char *path, const char *what,
                            struct atr_err *err)
{
    atr_status rc = ATR_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return atr_err_set(err, ATR_E_CONFIG, "cannot open the TLS %s file %s: %s", what, path,
                           strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > PEM_FILE_MAX) {
        rc = atr_err_set(err, ATR_E_CONFIG,
                         "the TLS %s file %s is not a regular file of 1 byte "
                         "to 1 MiB",
                         what, path);
        goto done;
    }
    atr_buf_init(out, PEM_FILE_MAX);
    uint8_t chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = atr_err_set(err, ATR_E_CONFIG, "cannot read the TLS %s file %s: %s", what, path,
                             strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        if ((rc = atr_buf_append(out, chunk, (size_t)n)) != ATR_OK) {
            atr_err_set(err, rc == ATR_E_NOMEM ? ATR_E_NOMEM : ATR_E_CONFIG,
                        "cannot read the TLS %s file %s", what, path);
            rc = rc == ATR_E_NOMEM ? ATR_E_NOMEM : ATR_E_CONFIG;
            goto done;
        }
    }
    if (atr_buf_cstr(out) == NULL)
        rc = atr_err_set(err, ATR_E_NOMEM, "out of memory reading %s", path);
done:
    atr_wipe(chunk, sizeof(chunk));
    close(fd);
    if (rc != ATR_OK)
        atr_buf_cleanup(out);
    return rc;
}

static atr_status load_tls(struct atr_http_server *srv, const char *cert_file, const char *key_file,
                           struct atr_err *err)
{
    atr_status rc;
    struct atr_buf cert;
    struct atr_buf key;
    atr_buf_init(&cert, 0);
    atr_buf_init(&key, 0);
    if ((rc = read_file(&cert, cert_file, "certificate", err)) != ATR_OK ||
        (rc = read_file(&key, key_file, "key", err)) != ATR_OK)
        goto done;
    struct atr_err pair_err;
    atr_err_clear(&pair_err);
    if (atr_x509_check_pem_pair(atr_buf_span(&cert), atr_buf_span(&key), &pair_err) != ATR_OK) {
        rc = atr_err_set(err, ATR_E_CONFIG, "TLS certificate %s and key %s: %s", cert_file,
                         key_file, atr_err_msg(&pair_err));
        goto done;
    }
    if ((srv->cert_pem = atr_strndup((const char *)cert.ptr, cert.len)) == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
        goto done;
    }
    /* the key text lives in the secure heap, NUL-terminated for libmicrohttpd */
    if ((rc = atr_secret_init(&srv->key_pem, key.len + 1)) != ATR_OK) {
        atr_err_set(err, rc, "cannot allocate secure memory for the TLS key");
        goto done;
    }
    memcpy(atr_secret_data(&srv->key_pem), key.ptr, key.len);
done:
    atr_buf_cleanup(&cert);
    atr_buf_cleanup(&key);
    return rc;
}

atr_status atr_http_server_new(struct atr_http_server **out,
                               const struct atr_http_server_opts *opts,
                               const struct atr_route *routes, size_t nroutes, void *app_ctx,
                               struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && opts != NULL);
    *out = NULL;
    atr_status rc;
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "libmicrohttpd was built without TLS");
    ATR_TRY(atr_router_check(routes, nroutes, err));
    int needs_auth = 0;
    for (size_t i = 0; i < nroutes; i++)
        needs_auth |= (routes[i].flags & ATR_ROUTE_AUTH) != 0;
    if (needs_auth && opts->auth == NULL)
        return atr_err_set(err, ATR_E_CONFIG,
                           "routes require authentication but the server has "
                           "no auth hook");
    if (opts->cert_file == NULL || opts->key_file == NULL)
        return atr_err_set(err, ATR_E_CONFIG, "a TLS certificate and key file are required");
    if (opts->threads > MAX_THREADS)
        return atr_err_set(err, ATR_E_CONFIG, "at most %u worker threads", MAX_THREADS);

    struct atr_http_server *srv = atr_calloc(1, sizeof(*srv));
    if (srv == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&srv->lock, NULL) != 0) {
        atr_free(srv);
        return atr_err_set(err, ATR_E_INTERNAL, "cannot create a mutex");
    }
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&srv->idle, &ca) != 0) {
        pthread_mutex_destroy(&srv->lock);
        atr_free(srv);
        return atr_err_set(err, ATR_E_INTERNAL, "cannot create a condition variable");
    }
    pthread_condattr_destroy(&ca);
    srv->routes = routes;
    srv->nroutes = nroutes;
    srv->app_ctx = app_ctx;
    srv->port_opt = opts->port;
    srv->threads = opts->threads != 0 ? opts->threads : DEFAULT_THREADS;
    srv->max_connections =
        opts->max_connections != 0 ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
    srv->max_per_ip = opts->max_per_ip;
    srv->idle_timeout_s = opts->idle_timeout_s != 0 ? opts->idle_timeout_s : DEFAULT_IDLE_TIMEOUT_S;
    srv->grace_ms = opts->shutdown_grace_ms != 0 ? opts->shutdown_grace_ms : DEFAULT_GRACE_MS;
    srv->auth = opts->auth;
    srv->auth_ctx = opts->auth_ctx;
    srv->accept = opts->accept;
    srv->accept_ctx = opts->accept_ctx;
    srv->observe = opts->observe;
    srv->observe_ctx = opts->observe_ctx;
    srv->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    srv->name = atr_strdup(opts->name != NULL ? opts->name : "http");
    srv->listen_addr = atr_strdup(opts->listen_addr != NULL ? opts->listen_addr : "127.0.0.1");
    if (srv->name == NULL || srv->listen_addr == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = load_tls(srv, opts->cert_file, opts->key_file, err)) != ATR_OK)
        goto fail;
    *out = srv;
    return ATR_OK;
fail:
    atr_http_server_free(srv);
    return rc;
}

static atr_status resolve(struct sockaddr_storage *out, int *ipv6, const char *host, uint16_t port,
                          struct atr_err *err)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0 || res == NULL)
        return atr_err_set(err, ATR_E_IO, "cannot resolve the listen address '%s': %s", host,
                           gai_strerror(gai));
    memset(out, 0, sizeof(*out));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *ipv6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return ATR_OK;
}

atr_status atr_http_server_start(struct atr_http_server *srv, struct atr_err *err)
{
    ATR_ASSERT_ARG(srv != NULL);
    if (srv->daemon != NULL)
        return atr_err_set(err, ATR_E_INVALID, "the server is already running");
    struct sockaddr_storage addr;
    int ipv6 = 0;
    ATR_TRY(resolve(&addr, &ipv6, srv->listen_addr, srv->port_opt, err));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_TLS |
                     MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    atomic_store(&srv->stopping, 0);
    srv->daemon = MHD_start_daemon(
        flags, 0, on_accept, srv, on_access, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, srv->threads,
        MHD_OPTION_CONNECTION_LIMIT, srv->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        srv->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, srv->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY_LIMIT, MHD_OPTION_HTTPS_MEM_CERT,
        srv->cert_pem, MHD_OPTION_HTTPS_MEM_KEY, (const char *)atr_secret_cdata(&srv->key_pem),
        MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_STRICT_FOR_CLIENT, 1,
        MHD_OPTION_END);
    if (srv->daemon == NULL)
        return atr_err_set(err, ATR_E_IO,
                           "cannot start the %s server on %s port %u (address in use, or TLS "
                           "set-up refused; see the log)",
                           srv->name, srv->listen_addr, (unsigned)srv->port_opt);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di != NULL ? di->port : srv->port_opt;
    srv->ipv6 = ipv6;
    atr_log_fields(ATR_LOG_INFO, "http.start", NULL, "listening", "server", "s", srv->name, "addr",
                   "s", srv->listen_addr, "port", "i", (long long)srv->port, "threads", "i",
                   (long long)srv->threads, NULL);
    return ATR_OK;
}

uint16_t atr_http_server_port(const struct atr_http_server *srv)
{
    return srv != NULL && srv->daemon != NULL ? srv->port : 0;
}

atr_status atr_http_server_url(char *out, size_t cap, const struct atr_http_server *srv)
{
    ATR_ASSERT_ARG(out != NULL);
    if (srv == NULL || srv->daemon == NULL)
        return ATR_E_INVALID;
    int n = srv->ipv6 ? snprintf(out, cap, "https://[%s]:%u", srv->listen_addr, srv->port)
                      : snprintf(out, cap, "https://%s:%u", srv->listen_addr, srv->port);
    if (n < 0 || (size_t)n >= cap)
        return ATR_E_INVALID;
    return ATR_OK;
}

unsigned atr_http_server_inflight(const struct atr_http_server *srv)
{
    struct atr_http_server *s = (struct atr_http_server *)srv;
    pthread_mutex_lock(&s->lock);
    unsigned n = s->inflight;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void atr_http_server_stop(struct atr_http_server *srv)
{
    if (srv == NULL || srv->daemon == NULL)
        return;
    atomic_store(&srv->stopping, 1);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    /*
     * The socket may only be closed after MHD_stop_daemon(); until then the
     * kernel would still complete handshakes nobody serves. shutdown() on a
     * listening socket makes Linux refuse them at once.
     */
    if (fd != MHD_INVALID_SOCKET)
        shutdown(fd, SHUT_RDWR);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(srv->grace_ms / 1000);
    deadline.tv_nsec += (long)(srv->grace_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&srv->lock);
    while (srv->inflight > 0) {
        if (pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline) == ETIMEDOUT)
            break;
    }
    unsigned left = srv->inflight;
    pthread_mutex_unlock(&srv->lock);
    if (left > 0)
        atr_log(ATR_LOG_WARN, "http.stop", NULL,
                "%s: %u requests still running after the %u ms grace period; closing", srv->name,
                left, srv->grace_ms);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    if (fd != MHD_INVALID_SOCKET)
        close(fd); /* after MHD_stop_daemon, as libmicrohttpd requires */
    atr_log_fields(ATR_LOG_INFO, "http.stop", NULL, "stopped", "server", "s", srv->name, "port",
                   "i", (long long)srv->port, NULL);
    srv->port = 0;
}

void atr_http_server_free(struct atr_http_server *srv)
{
    if (srv == NULL)
        return;
    atr_http_server_stop(srv);
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    atr_secret_cleanup(&srv->key_pem);
    atr_free(srv->cert_pem);
    atr_free(srv->name);
    atr_free(srv->listen_addr);
    atr_free(srv);
}

/* ---- signals ------------------------------------------------------------ */

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

atr_status atr_http_signals_block(struct atr_err *err)
{
    sigset_t set;
    stop_signals(&set);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0)
        return atr_err_set(err, ATR_E_INTERNAL, "cannot block signals: %s", strerror(rc));
    return ATR_OK;
}

atr_status atr_http_signals_wait(int *out_signo, struct atr_err *err)
{
    ATR_ASSERT_ARG(out_signo != NULL);
    sigset_t set;
    stop_signals(&set);
    int sig = 0;
    int rc = sigwait(&set, &sig);
    if (rc != 0)
        return atr_err_set(err, ATR_E_INTERNAL, "cannot wait for signals: %s", strerror(rc));
    *out_signo = sig;
    return ATR_OK;
}
