/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_LOG_H
#define ATR_BASE_LOG_H

/*
 * Structured logging: one JSON object per line, e.g.
 *   {"ts":"2026-11-29T03:44:48.123Z","level":"info","event":"http.access",
 *    "req":"6f1c...","msg":"GET /healthz 200","status":200}
 * Strings are escaped by jansson, so no caller text can break the line.
 *
 * The logger is a process-wide singleton (level, output stream, clock);
 * writing a line is thread-safe and atomic (one locked write per line).
 * Never pass key bytes, tokens, passwords or plaintext records to a logger:
 * the format attributes make arguments visible to review, and a secrets test
 * scans every log line the test suites produce.
 */

#include <stdio.h>

#include "base/error.h"

struct atr_clock;

typedef enum atr_log_level {
    ATR_LOG_DEBUG = 1,
    ATR_LOG_INFO = 2,
    ATR_LOG_WARN = 3,
    ATR_LOG_ERROR = 4,
    ATR_LOG_OFF = 5,
} atr_log_level;

/** Sets the minimum level written (default ATR_LOG_INFO). */
void atr_log_set_level(atr_log_level level);
atr_log_level atr_log_get_level(void);

/** Parses "debug", "info", "warn", "error", "off". @return ATR_E_INVALID. */
ATR_MUST_CHECK atr_status atr_log_level_parse(const char *name, atr_log_level *out);

/** Sets the output stream (default stderr; borrowed, not closed). NULL = stderr. */
void atr_log_set_output(FILE *out);

/** Sets the clock for the "ts" field (default the real clock; borrowed). NULL = real. */
void atr_log_set_clock(const struct atr_clock *clock);

/** 1 if a line of @p level would be written. */
int atr_log_enabled(atr_log_level level);

/**
 * Writes one line: level, @p event (a dotted name such as "http.access"),
 * optional request id @p req_id (NULL to omit) and a printf-formatted message.
 */
void atr_log(atr_log_level level, const char *event, const char *req_id, const char *fmt, ...)
    ATR_PRINTF(4, 5);

/**
 * Like atr_log() with extra typed fields after the message, given as a
 * NULL-terminated list of (const char *key, const char *type, value) triples,
 * where type is "s" (const char *), "i" (long long) or "b" (int, boolean):
 *   atr_log_fields(ATR_LOG_INFO, "http.access", rid, "GET / 200",
 *                  "status", "i", 200LL, "path", "s", "/", NULL);
 */
void atr_log_fields(atr_log_level level, const char *event, const char *req_id, const char *msg,
                    ...);

#define atr_log_debug(event, rid, ...) atr_log(ATR_LOG_DEBUG, event, rid, __VA_ARGS__)
#define atr_log_info(event, rid, ...)  atr_log(ATR_LOG_INFO, event, rid, __VA_ARGS__)
#define atr_log_warn(event, rid, ...)  atr_log(ATR_LOG_WARN, event, rid, __VA_ARGS__)
#define atr_log_error(event, rid, ...) atr_log(ATR_LOG_ERROR, event, rid, __VA_ARGS__)

#endif /* ATR_BASE_LOG_H */
