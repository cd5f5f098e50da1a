/* SPDX-License-Identifier: Apache-2.0 */
#include "http/json.h"

#include <string.h>

/*
 * Scans for the nesting depth before jansson parses (jansson's own limit is
 * 2048 levels, far more than any of our bodies need). Strings are skipped so
 * brackets inside them do not count. Returns the offset at which the limit
 * is passed, or (size_t)-1 when the body stays within it.
 */
static size_t depth_exceeded_at(const uint8_t *p, size_t n, unsigned max)
{
    unsigned depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\')
                i++; /* skip the escaped character */
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return i;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return (size_t)-1;
}

/* A fixed phrase for each jansson error: never echo the input. */
static const char *json_error_phrase(enum json_error_code code)
{
    switch (code) {
    case json_error_out_of_memory:
        return "out of memory";
    case json_error_stack_overflow:
        return "nesting too deep";
    case json_error_premature_end_of_input:
        return "unexpected end of input";
    case json_error_end_of_input_expected:
        return "unexpected data after the JSON value";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
        return "NUL character not allowed";
    case json_error_duplicate_key:
        return "duplicate object key";
    case json_error_numeric_overflow:
        return "number out of range";
    case json_error_invalid_syntax:
    default:
        return "invalid syntax";
    }
}

atr_status atr_json_parse(json_t **out, struct atr_span body, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (body.len == 0 || body.ptr == NULL)
        return atr_err_set(err, ATR_E_PARSE, "the request body is empty; JSON was expected");
    if (body.len > ATR_JSON_MAX_BYTES)
        return atr_err_set(err, ATR_E_TOO_LARGE, "the JSON body is larger than %zu bytes",
                           ATR_JSON_MAX_BYTES);
    size_t at = depth_exceeded_at(body.ptr, body.len, ATR_JSON_MAX_DEPTH);
    if (at != (size_t)-1)
        return atr_err_set(err, ATR_E_PARSE,
                           "the request body is not valid JSON: nesting deeper than %d levels "
                           "at byte %zu",
                           ATR_JSON_MAX_DEPTH, at);
    json_error_t je;
    json_t *v =
        json_loadb((const char *)body.ptr, body.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (v == NULL) {
        enum json_error_code code = json_error_code(&je);
        if (code == json_error_out_of_memory)
            return atr_err_set(err, ATR_E_NOMEM, "out of memory parsing JSON");
        return atr_err_set(err, ATR_E_PARSE,
                           "the request body is not valid JSON: %s at line %d, column %d "
                           "(byte %d)",
                           json_error_phrase(code), je.line, je.column, je.position);
    }
    *out = v;
    return ATR_OK;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

atr_status atr_json_parse_object(json_t **out, struct atr_span body, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    json_t *v = NULL;
    ATR_TRY(atr_json_parse(&v, body, err));
    if (!json_is_object(v)) {
        atr_status rc = atr_err_set(err, ATR_E_INVALID,
                                    "the request body must be a JSON object, not %s", type_name(v));
        json_decref(v);
        *out = NULL;
        return rc;
    }
    *out = v;
    return ATR_OK;
}

/*
 * Looks up @p field. @return ATR_OK with *out NULL when absent or null and
 * optional; ATR_E_INVALID when absent and required.
 */
static atr_status member(json_t **out, const json_t *obj, const char *field, int required,
                         struct atr_err *err)
{
    *out = NULL;
    if (obj == NULL || field == NULL || !json_is_object(obj))
        return atr_err_set(err, ATR_E_INVALID,
                           "field '%s' is read from a value that is not "
                           "an object",
                           field != NULL ? field : "?");
    json_t *v = json_object_get(obj, field);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return atr_err_set(err, ATR_E_INVALID, "field '%s' is required", field);
        return ATR_OK;
    }
    *out = v;
    return ATR_OK;
}

static atr_status wrong_type(const char *field, const char *want, struct atr_err *err)
{
    return atr_err_set(err, ATR_E_INVALID, "field '%s' must be %s", field, want);
}

static atr_status get_string(const char **out, const json_t *obj, const char *field, int required,
                             const char *dflt, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    json_t *v;
    *out = dflt;
    ATR_TRY(member(&v, obj, field, required, err));
    if (v == NULL)
        return ATR_OK;
    if (!json_is_string(v))
        return wrong_type(field, "a string", err);
    /* jansson keeps \u0000 out unless JSON_ALLOW_NUL; check for values built in code */
    if (strlen(json_string_value(v)) != json_string_length(v))
        return atr_err_set(err, ATR_E_INVALID, "field '%s' must not contain NUL characters", field);
    *out = json_string_value(v);
    return ATR_OK;
}

atr_status atr_json_get_string(const char **out, const json_t *obj, const char *field,
                               struct atr_err *err)
{
    return get_string(out, obj, field, 1, NULL, err);
}

atr_status atr_json_get_string_opt(const char **out, const json_t *obj, const char *field,
                                   const char *dflt, struct atr_err *err)
{
    return get_string(out, obj, field, 0, dflt, err);
}

static atr_status get_int(int64_t *out, const json_t *obj, const char *field, int required,
                          int64_t dflt, int64_t min, int64_t max, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    json_t *v;
    *out = dflt;
    ATR_TRY(member(&v, obj, field, required, err));
    if (v == NULL)
        return ATR_OK;
    if (!json_is_integer(v))
        return wrong_type(field, "an integer", err);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return atr_err_set(err, ATR_E_INVALID,
                           "field '%s' must be an integer between %lld and "
                           "%lld",
                           field, (long long)min, (long long)max);
    *out = (int64_t)x;
    return ATR_OK;
}

atr_status atr_json_get_int(int64_t *out, const json_t *obj, const char *field, int64_t min,
                            int64_t max, struct atr_err *err)
{
    return get_int(out, obj, field, 1, 0, min, max, err);
}

atr_status atr_json_get_int_opt(int64_t *out, const json_t *obj, const char *field, int64_t dflt,
                                int64_t min, int64_t max, struct atr_err *err)
{
    return get_int(out, obj, field, 0, dflt, min, max, err);
}

static atr_status get_bool(int *out, const json_t *obj, const char *field, int required, int dflt,
                           struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    json_t *v;
    *out = dflt;
    ATR_TRY(member(&v, obj, field, required, err));
    if (v == NULL)
        return ATR_OK;
    if (!json_is_boolean(v))
        return wrong_type(field, "a boolean", err);
    *out = json_is_true(v) ? 1 : 0;
    return ATR_OK;
}

atr_status atr_json_get_bool(int *out, const json_t *obj, const char *field, struct atr_err *err)
{
    return get_bool(out, obj, field, 1, 0, err);
}

atr_status atr_json_get_bool_opt(int *out, const json_t *obj, const char *field, int dflt,
                                 struct atr_err *err)
{
    return get_bool(out, obj, field, 0, dflt, err);
}

static atr_status get_typed(json_t **out, const json_t *obj, const char *field, int required,
                            json_type type, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    json_t *v;
    *out = NULL;
    ATR_TRY(member(&v, obj, field, required, err));
    if (v == NULL)
        return ATR_OK;
    if (json_typeof(v) != type)
        return wrong_type(field, type == JSON_OBJECT ? "an object" : "an array", err);
    *out = v;
    return ATR_OK;
}

atr_status atr_json_get_object(json_t **out, const json_t *obj, const char *field,
                               struct atr_err *err)
{
    return get_typed(out, obj, field, 1, JSON_OBJECT, err);
}

atr_status atr_json_get_object_opt(json_t **out, const json_t *obj, const char *field,
                                   struct atr_err *err)
{
    return get_typed(out, obj, field, 0, JSON_OBJECT, err);
}

atr_status atr_json_get_array(json_t **out, const json_t *obj, const char *field,
                              struct atr_err *err)
{
    return get_typed(out, obj, field, 1, JSON_ARRAY, err);
}

atr_status atr_json_get_array_opt(json_t **out, const json_t *obj, const char *field,
                                  struct atr_err *err)
{
    return get_typed(out, obj, field, 0, JSON_ARRAY, err);
}

struct dump_ctx {
    struct atr_buf *out;
    atr_status rc;
};

static int dump_cb(const char *chunk, size_t size, void *data)
{
    struct dump_ctx *dc = data;
    dc->rc = atr_buf_append(dc->out, chunk, size);
    return dc->rc == ATR_OK ? 0 : -1;
}

atr_status atr_json_dump(struct atr_buf *out, const json_t *v)
{
    ATR_ASSERT_ARG(out != NULL);
    if (v == NULL)
        return ATR_E_INVALID;
    struct dump_ctx dc = {out, ATR_OK};
    if (json_dump_callback(v, dump_cb, &dc, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        return dc.rc != ATR_OK ? dc.rc : ATR_E_INVALID;
    return ATR_OK;
}

unsigned atr_json_error_http(atr_status st)
{
    return st == ATR_OK ? atr_status_http(ATR_E_INTERNAL) : atr_status_http(st);
}

atr_status atr_json_error_new(json_t **out, atr_status st, const char *message, json_t *extra)
{
    atr_status rc = ATR_OK;
    json_t *body = NULL;
    json_t *inner = NULL;
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (st == ATR_OK)
        st = ATR_E_INTERNAL;
    if (extra != NULL && !json_is_object(extra)) {
        rc = ATR_E_INVALID;
        goto done;
    }
    inner = json_object();
    if (inner == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    if (extra != NULL && json_object_update(inner, extra) != 0) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    json_t *msg = NULL;
    if (message != NULL)
        msg = json_string(message); /* NULL for invalid UTF-8: use the public text */
    if (msg == NULL)
        msg = json_string(atr_status_str(st));
    if (json_object_set_new(inner, "code", json_string(atr_status_code(st))) != 0 ||
        json_object_set_new(inner, "message", msg) != 0) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    body = json_object();
    if (body == NULL || json_object_set(body, "error", inner) != 0) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    *out = body;
    body = NULL;
done:
    json_decref(body);
    json_decref(inner);
    json_decref(extra);
    return rc;
}
