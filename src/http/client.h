/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_HTTP_CLIENT_H
#define ATR_HTTP_CLIENT_H

/*
 * HTTPS client (libcurl) for calls to key vaults, identity servers and our
 * own servers.
 *
 * A client owns one curl easy handle and keeps it between requests, so
 * connections, TLS sessions and DNS answers are reused (keep-alive). Every
 * request is HTTPS with peer and host verification; there is no way to turn
 * verification off. Redirects are not followed. The client enforces a
 * connect timeout, a whole-transfer timeout and a cap on the response body
 * (the transfer is aborted when the cap is passed).
 *
 * An HTTP error status (4xx, 5xx) is not a failure of atr_http_client_send():
 * the call succeeds and the caller reads the status, the body and headers
 * such as Retry-After or WWW-Authenticate. Failures are transport failures:
 *   ATR_E_NETWORK  cannot connect, connection reset, empty reply ...
 *   ATR_E_TLS      handshake failed or the server's certificate is not
 *                  trusted for the host
 *   ATR_E_TIMEOUT  the connect or total timeout passed
 *   ATR_E_TOO_LARGE the response body passed the cap
 * Messages name the method and host, never the path, query, headers or
 * body; libcurl's error buffer (which may quote OpenSSL) goes to the debug
 * log only.
 *
 * Thread-safety: a client is not thread-safe; use one client per thread
 * (or guard it). Different clients may be used concurrently.
 */

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

struct atr_http_client;

/* Response headers kept per response, and their total size. */
#define ATR_HTTP_CLIENT_MAX_HEADERS      64
#define ATR_HTTP_CLIENT_MAX_HEADER_BYTES (64 * 1024)

/* Settings; zero fields mean the documented default. */
struct atr_http_client_opts {
    const char *ca_file;         /* PEM CAs to trust; NULL = the system store */
    unsigned connect_timeout_ms; /* default 5000 */
    unsigned timeout_ms;         /* whole request; default 30000 */
    size_t max_response;         /* response body bytes; default 4 MiB */
    const char *user_agent;      /* default "atrest/<version>" */
};

struct atr_http_header {
    const char *name;
    const char *value;
};

/* One request; everything is borrowed for the duration of the call. */
struct atr_http_client_req {
    const char *method;                    /* NULL = "GET" */
    const char *url;                       /* https://host[:port]/path?query */
    const struct atr_http_header *headers; /* extra request headers */
    size_t nheaders;
    struct atr_span body; /* sent when len > 0 or method is POST/PUT/PATCH */
    unsigned timeout_ms;  /* 0 = the client's timeout */
};

/* A response header, owned by the response. */
struct atr_http_client_header {
    char *name;
    char *value;
};

struct atr_http_client_resp {
    unsigned status;      /* final HTTP status */
    struct atr_buf body;  /* owned */
    long new_connections; /* connections opened for this request: 0 = reused */
    size_t nheaders;
    struct atr_http_client_header headers[ATR_HTTP_CLIENT_MAX_HEADERS];
    size_t header_bytes;
};

/**
 * Creates a client. @p opts may be NULL (all defaults).
 * @param[out] out the client, owned by the caller (atr_http_client_free).
 * @return ATR_E_CONFIG (CA file unreadable), ATR_E_NOMEM, ATR_E_INTERNAL
 *         (libcurl could not initialise).
 */
ATR_MUST_CHECK atr_status atr_http_client_new(struct atr_http_client **out,
                                              const struct atr_http_client_opts *opts,
                                              struct atr_err *err);

/** Closes the client's connections and frees it. NULL is allowed. */
void atr_http_client_free(struct atr_http_client *c);

/**
 * Sends @p rq and waits for the whole response.
 * @param[out] out initialised by this call; release it with
 *             atr_http_client_resp_cleanup() whatever the result.
 * @return ATR_OK (any HTTP status), ATR_E_INVALID (bad URL, not https,
 *         bad header), ATR_E_NETWORK, ATR_E_TLS, ATR_E_TIMEOUT,
 *         ATR_E_TOO_LARGE, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_http_client_send(struct atr_http_client_resp *out,
                                               struct atr_http_client *c,
                                               const struct atr_http_client_req *rq,
                                               struct atr_err *err);

/** Prepares an empty response (atr_http_client_send does it too). */
void atr_http_client_resp_init(struct atr_http_client_resp *r);

/** Frees the body and headers; the response is empty afterwards. NULL ok. */
void atr_http_client_resp_cleanup(struct atr_http_client_resp *r);

/**
 * The value of response header @p name (case-insensitive; the last one when
 * repeated), borrowed from @p r, or NULL.
 */
const char *atr_http_client_resp_header(const struct atr_http_client_resp *r, const char *name);

#endif /* ATR_HTTP_CLIENT_H */
