/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_HTTP_JSON_H
#define ATR_HTTP_JSON_H

/*
 * JSON for HTTP bodies (jansson): parsing request bodies with clear 400
 * errors, typed field getters with precise messages, serialisation, and the
 * one error shape shared by every server (design section 5):
 *
 *   {"error":{"code":"BadParameter","message":"field 'keyUri' must be a string"}}
 *
 * Parsing never crashes on hostile input: the size and the nesting depth are
 * bounded before jansson sees the bytes, duplicate keys, NUL characters
 * (\u0000) and invalid UTF-8 are rejected, and error messages are built from
 * fixed phrases plus a position, never from the input itself, so a body that
 * carries a secret cannot have it echoed into an error or a log line.
 *
 * Ownership follows jansson: a json_t * returned through `out` by a parse or
 * _new function is owned by the caller (json_decref); getters return values
 * borrowed from the object they read, valid while that object lives.
 *
 * Thread-safety: reentrant; a json_t belongs to one thread at a time.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/error.h"

/* Deepest nesting of arrays and objects accepted in a body. */
#define ATR_JSON_MAX_DEPTH 32
/* Largest body the parser looks at; servers usually cap lower per route. */
#define ATR_JSON_MAX_BYTES ((size_t)16 << 20)

/**
 * Parses @p body as one JSON value of any type.
 * @param[out] out the value, owned by the caller.
 * @return ATR_E_PARSE (empty, invalid syntax, invalid UTF-8, NUL, duplicate
 *         key, too deep, number out of range; the message gives line, column
 *         and byte offset), ATR_E_TOO_LARGE (over ATR_JSON_MAX_BYTES),
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_json_parse(json_t **out, struct atr_span body, struct atr_err *err);

/**
 * Parses @p body as a JSON object (the top level of every request body).
 * @param[out] out the object, owned by the caller.
 * @return as atr_json_parse(), and ATR_E_INVALID when the top level is not
 *         an object.
 */
ATR_MUST_CHECK atr_status atr_json_parse_object(json_t **out, struct atr_span body,
                                                struct atr_err *err);

/*
 * Typed getters. Each reads member @p field of object @p obj. The plain form
 * requires the member; the _opt form returns the default when the member is
 * absent or null. A member of the wrong type is ATR_E_INVALID with a message
 * such as "field 'keyUri' must be a string"; a missing required member is
 * ATR_E_INVALID "field 'keyUri' is required".
 */

/** @param[out] out the string, borrowed from @p obj; never contains NUL. */
ATR_MUST_CHECK atr_status atr_json_get_string(const char **out, const json_t *obj,
                                              const char *field, struct atr_err *err);
ATR_MUST_CHECK atr_status atr_json_get_string_opt(const char **out, const json_t *obj,
                                                  const char *field, const char *dflt,
                                                  struct atr_err *err);

/** Integers only (1.0 is rejected), in [@p min, @p max]; else ATR_E_INVALID. */
ATR_MUST_CHECK atr_status atr_json_get_int(int64_t *out, const json_t *obj, const char *field,
                                           int64_t min, int64_t max, struct atr_err *err);
ATR_MUST_CHECK atr_status atr_json_get_int_opt(int64_t *out, const json_t *obj, const char *field,
                                               int64_t dflt, int64_t min, int64_t max,
                                               struct atr_err *err);

/** @param[out] out 1 for true, 0 for false. */
ATR_MUST_CHECK atr_status atr_json_get_bool(int *out, const json_t *obj, const char *field,
                                            struct atr_err *err);
ATR_MUST_CHECK atr_status atr_json_get_bool_opt(int *out, const json_t *obj, const char *field,
                                                int dflt, struct atr_err *err);

/** @param[out] out the member object (borrowed); _opt gives NULL when absent. */
ATR_MUST_CHECK atr_status atr_json_get_object(json_t **out, const json_t *obj, const char *field,
                                              struct atr_err *err);
ATR_MUST_CHECK atr_status atr_json_get_object_opt(json_t **out, const json_t *obj,
                                                  const char *field, struct atr_err *err);

/** @param[out] out the member array (borrowed); _opt gives NULL when absent. */
ATR_MUST_CHECK atr_status atr_json_get_array(json_t **out, const json_t *obj, const char *field,
                                             struct atr_err *err);
ATR_MUST_CHECK atr_status atr_json_get_array_opt(json_t **out, const json_t *obj, const char *field,
                                                 struct atr_err *err);

/**
 * Appends the compact serialisation of @p v to @p out (no NUL counted).
 * @return ATR_E_TOO_LARGE (past the buffer's cap), ATR_E_NOMEM,
 *         ATR_E_INVALID (@p v NULL or not serialisable).
 */
ATR_MUST_CHECK atr_status atr_json_dump(struct atr_buf *out, const json_t *v);

/**
 * Builds the error shape for status @p st:
 *   {"error":{"code":atr_status_code(st),"message":message}}
 * @p message NULL means the fixed public message atr_status_str(st). The
 * members of @p extra (an object, may be NULL; its reference is stolen, even
 * on failure) are added to the inner "error" object, e.g.
 * {"innererror":{"code":"KeyDisabled"}} or {"reason":"..."}; "code" and
 * "message" cannot be overridden. ATR_OK is reported as ATR_E_INTERNAL; a
 * message that is not valid UTF-8 is replaced by the public message.
 * @param[out] out the body, owned by the caller.
 * @return ATR_E_NOMEM, ATR_E_INVALID (@p extra not an object).
 */
ATR_MUST_CHECK atr_status atr_json_error_new(json_t **out, atr_status st, const char *message,
                                             json_t *extra);

/** The HTTP status of the error shape of @p st (atr_status_http, ATR_OK as 500). */
unsigned atr_json_error_http(atr_status st);

#endif /* ATR_HTTP_JSON_H */
