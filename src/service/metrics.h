/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_METRICS_H
#define ATR_SERVICE_METRICS_H

/*
 * The data service's Prometheus metrics: a small registry the service owns
 * (one struct atr_metrics per service, no global state) and its rendering in
 * the Prometheus text exposition format, version 0.0.4, for GET /metrics
 * (answer it with Content-Type ATR_METRICS_CONTENT_TYPE).
 *
 * What it counts:
 *
 *  - HTTP requests, through atr_metrics_http_observe():
 *      atrest_http_requests_total{route,method,code}          counter
 *      atrest_http_request_duration_seconds{route}            histogram
 *    route is the route's pattern ("/v1/tenants/{t}/records"), never the raw
 *    path, or "unmatched" when no route matched; method is one of GET, HEAD,
 *    POST, PUT, PATCH, DELETE, OPTIONS, or "other" for anything else (the
 *    method is client input and must not create label values); code is the
 *    status sent ("200"). Histogram buckets (seconds, upper edges inclusive):
 *    0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf, with _sum
 *    (exact to the microsecond) and _count.
 *    Cardinality is bounded: at most ATR_METRICS_MAX_ROUTES distinct routes
 *    ("unmatched" is always one of them) and ATR_METRICS_MAX_SERIES distinct
 *    (route, method, code) triples. An observation that does not fit, or
 *    whose arguments are unusable (route of ATR_METRICS_ROUTE_MAX bytes or
 *    more, or not UTF-8; status outside 100..599), is not recorded and counts
 *    once in atrest_metrics_dropped_total. When only the triple table is
 *    full, the duration is still recorded in the route's histogram.
 *
 *  - Fixed, label-free counters by id (enum atr_metrics_counter,
 *    atr_metrics_add()): atrest_records_ingested_total,
 *    atrest_records_rejected_total, atrest_ingest_bytes_total,
 *    atrest_records_returned_total, atrest_blocks_written_total,
 *    atrest_blocks_read_total, atrest_keyring_hits_total,
 *    atrest_keyring_misses_total, atrest_vault_calls_total,
 *    atrest_audit_events_total; and atrest_metrics_dropped_total.
 *
 *  - Gauges, read at render time: atr_metrics_render() calls the caller's
 *    callback, which reports each gauge sample with atr_metrics_gauge()
 *    (atrest_tenants{state="managed"}, atrest_keyring_entries,
 *    atrest_store_blocks, ...). Samples may be reported in any order; the
 *    output groups them per family under one # HELP and one # TYPE line, in
 *    order of each family's first sample.
 *
 * The output is valid exposition format by construction: every family has
 * one # HELP and one # TYPE line before its samples, samples of a family are
 * contiguous, no family or series appears twice, label values are escaped
 * (backslash, double quote, line feed) and help texts too (backslash, line
 * feed). Built-in families come first, in the order listed above, then the
 * gauges. Output bytes are deterministic for a given state (series sorted
 * by route, method, code).
 *
 * Thread-safety: atr_metrics_http_observe(), atr_metrics_add() and the
 * readers may be called from any thread at any time, concurrently with each
 * other and with atr_metrics_render(); they never allocate and never block
 * except for a short mutex held the first time a route is seen. Counters are
 * C11 atomics, so concurrent increments sum exactly. A render reads each
 * counter atomically but not all of them at one instant: a histogram's _sum
 * may lag its _count by observations in flight (the +Inf bucket always
 * equals _count). atr_metrics_new() and atr_metrics_free() must not run
 * concurrently with any other call on the same object. A struct
 * atr_metrics_gauges belongs to the render call that made it.
 */

#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"

/* The Content-Type of a rendering. */
#define ATR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Distinct route labels, "unmatched" included. */
#define ATR_METRICS_MAX_ROUTES 64
/* Longest route label plus its NUL. */
#define ATR_METRICS_ROUTE_MAX 128
/* Distinct (route, method, code) series of atrest_http_requests_total. */
#define ATR_METRICS_MAX_SERIES 1024
/* Gauge samples one render may carry. */
#define ATR_METRICS_MAX_GAUGES 1024
/* Longest gauge name, label name, label value or help text, in bytes. */
#define ATR_METRICS_TEXT_MAX 1024

/* Label value of requests no route matched. */
#define ATR_METRICS_ROUTE_UNMATCHED "unmatched"

/*
 * The fixed counters. Starts at 1 so that a zeroed id is no counter
 * (style anchors 3.3).
 */
typedef enum atr_metrics_counter {
    ATR_METRICS_RECORDS_INGESTED = 1, /* atrest_records_ingested_total */
    ATR_METRICS_RECORDS_REJECTED = 2, /* atrest_records_rejected_total */
    ATR_METRICS_INGEST_BYTES = 3,     /* atrest_ingest_bytes_total */
    ATR_METRICS_RECORDS_RETURNED = 4, /* atrest_records_returned_total */
    ATR_METRICS_BLOCKS_WRITTEN = 5,   /* atrest_blocks_written_total */
    ATR_METRICS_BLOCKS_READ = 6,      /* atrest_blocks_read_total */
    ATR_METRICS_KEYRING_HITS = 7,     /* atrest_keyring_hits_total */
    ATR_METRICS_KEYRING_MISSES = 8,   /* atrest_keyring_misses_total */
    ATR_METRICS_VAULT_CALLS = 9,      /* atrest_vault_calls_total */
    ATR_METRICS_AUDIT_EVENTS = 10,    /* atrest_audit_events_total */
} atr_metrics_counter;
#define ATR_METRICS_COUNTER_MAX 10

struct atr_metrics;
struct atr_metrics_gauges;

/**
 * Reports the gauges of one render through atr_metrics_gauge() on @p g.
 * Runs on the rendering thread, before any output is written, and must not
 * keep @p g. Returning anything but ATR_OK fails the render with that code;
 * a callback that prefers a partial page skips the gauge it could not read
 * and returns ATR_OK.
 */
typedef atr_status (*atr_metrics_gauge_fn)(struct atr_metrics_gauges *g, void *ctx);

/**
 * Creates an empty registry (every counter 0, the "unmatched" route
 * present).
 * @param[out] out the registry, owned by the caller (atr_metrics_free());
 *             NULL on failure.
 * @return ATR_E_INVALID (@p out NULL), ATR_E_NOMEM, ATR_E_INTERNAL (the
 *         route mutex could not be created).
 */
ATR_MUST_CHECK atr_status atr_metrics_new(struct atr_metrics **out);

/** Frees the registry. NULL is allowed. No other call may be running on it. */
void atr_metrics_free(struct atr_metrics *m);

/**
 * Records one completed HTTP request. Cannot fail: what cannot be recorded
 * counts in atrest_metrics_dropped_total (see the module comment).
 * @param m             the registry; NULL makes the call a no-op.
 * @param route_pattern the matched route's pattern, borrowed for the call
 *                      (copied the first time it is seen); NULL means no
 *                      route matched (label "unmatched").
 * @param method        request method, borrowed; NULL or unknown: "other".
 * @param status        HTTP status sent, 100..599.
 * @param duration_us   time to answer, in microseconds; negative counts as 0.
 */
void atr_metrics_http_observe(struct atr_metrics *m, const char *route_pattern, const char *method,
                              unsigned status, int64_t duration_us);

/**
 * Adds @p n to the fixed counter @p id (wrapping modulo 2^64). Cannot fail:
 * an id outside the enum adds 1 to atrest_metrics_dropped_total instead.
 * @p m NULL makes the call a no-op.
 */
void atr_metrics_add(struct atr_metrics *m, atr_metrics_counter id, uint64_t n);

/** Current value of the fixed counter @p id; 0 for @p m NULL or a bad id. */
uint64_t atr_metrics_value(const struct atr_metrics *m, atr_metrics_counter id);

/** Current value of atrest_metrics_dropped_total; 0 for @p m NULL. */
uint64_t atr_metrics_dropped(const struct atr_metrics *m);

/** Metric name of the fixed counter @p id, or NULL outside the enum. */
const char *atr_metrics_counter_name(atr_metrics_counter id);

/**
 * Appends the exposition text of every metric to @p out: first the gauge
 * callback runs (when @p fn is not NULL) and its samples are collected,
 * then the page is written.
 * @param out  an initialised buffer (base/buf.h); its cap bounds the page.
 *             On success the page is appended to its content. On failure
 *             its storage is released (atr_buf_cleanup()), whatever it held
 *             before, so no partial page is ever left behind.
 * @param m    the registry, read concurrently with updates.
 * @param fn   gauge callback, or NULL for no gauges.
 * @param ctx  handed to @p fn.
 * @return ATR_E_INVALID (@p out or @p m NULL), ATR_E_NOMEM, ATR_E_TOO_LARGE
 *         (the page exceeds @p out's cap), the code @p fn returned, or the
 *         first error atr_metrics_gauge() returned during the callback (kept
 *         even when the callback ignored it and returned ATR_OK).
 */
ATR_MUST_CHECK atr_status atr_metrics_render(struct atr_buf *out, struct atr_metrics *m,
                                             atr_metrics_gauge_fn fn, void *ctx);

/**
 * Reports one gauge sample from inside an atr_metrics_gauge_fn. Every
 * string is copied (borrowed for the call only).
 * @param g           the collector handed to the callback.
 * @param name        metric name, [a-zA-Z_:][a-zA-Z0-9_:]*, not a built-in
 *                    family's name (nor a histogram's _bucket/_sum/_count).
 * @param help        help text, valid UTF-8; a family's samples must all
 *                    give the same text.
 * @param label_name  NULL for a sample without labels, else
 *                    [a-zA-Z_][a-zA-Z0-9_]* not starting with "__".
 * @param label_value NULL exactly when @p label_name is; valid UTF-8.
 * @param value       any double; NaN and infinities are written as NaN,
 *                    +Inf and -Inf.
 * @return ATR_E_INVALID (NULL @p g, @p name or @p help; a name, label or text
 *         breaking the rules above or longer than ATR_METRICS_TEXT_MAX; a
 *         family whose help text differs; the same name and label pair
 *         reported twice), ATR_E_TOO_LARGE (more than ATR_METRICS_MAX_GAUGES
 *         samples), ATR_E_NOMEM. Once a call fails, every later call on @p g
 *         returns the same code and the render fails with it.
 */
ATR_MUST_CHECK atr_status atr_metrics_gauge(struct atr_metrics_gauges *g, const char *name,
                                            const char *help, const char *label_name,
                                            const char *label_value, double value);

#endif /* ATR_SERVICE_METRICS_H */
