/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_json_parse, atr_json_parse_object, atr_json_get_string,
 * atr_json_get_string_opt, atr_json_get_int, atr_json_get_int_opt,
 * atr_json_get_bool, atr_json_get_bool_opt, atr_json_get_object,
 * atr_json_get_object_opt, atr_json_get_array, atr_json_get_array_opt,
 * atr_json_dump, atr_json_error_new (src/http/json.c): the request-body
 * path of every server, without a server.
 *
 * Properties (any violation aborts):
 *  - parsing never crashes; on failure *out is NULL and the error carries
 *    the returned code and a message; on success parse_object gives an
 *    object;
 *  - every getter returns ATR_OK or ATR_E_INVALID (with a message), and a
 *    string it returns has no NUL before its length;
 *  - a parsed value serialises and parses again;
 *  - the error shape builds and serialises for any string taken from the
 *    body as message.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/error.h"
#include "http/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_INPUT_MAX ((size_t)1 << 20)

static const char *const fields[] = {"keyUri",  "kid",        "value", "alg", "limit",
                                     "enabled", "attributes", "tags",  "a",   ""};

static void check_err(atr_status rc, const struct atr_err *err)
{
    if (rc != ATR_OK && (err->code != rc || err->msg[0] == '\0'))
        abort();
}

static void getters(const json_t *obj)
{
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *f = fields[i];
        struct atr_err err;
        const char *s = NULL;
        int64_t n = 0;
        int b = 0;
        json_t *sub = NULL;
        atr_status rc;
#define GETTER(call)                                                                               \
    do {                                                                                           \
        atr_err_clear(&err);                                                                       \
        rc = (call);                                                                               \
        if (rc != ATR_OK && rc != ATR_E_INVALID)                                                   \
            abort();                                                                               \
        check_err(rc, &err);                                                                       \
    } while (0)
        GETTER(atr_json_get_string(&s, obj, f, &err));
        if (rc == ATR_OK && (s == NULL || strlen(s) != json_string_length(json_object_get(obj, f))))
            abort();
        GETTER(atr_json_get_string_opt(&s, obj, f, "dflt", &err));
        GETTER(atr_json_get_int(&n, obj, f, -1000, 1000, &err));
        if (rc == ATR_OK && (n < -1000 || n > 1000))
            abort();
        GETTER(atr_json_get_int_opt(&n, obj, f, 7, INT64_MIN, INT64_MAX, &err));
        GETTER(atr_json_get_bool(&b, obj, f, &err));
        if (rc == ATR_OK && b != 0 && b != 1)
            abort();
        GETTER(atr_json_get_bool_opt(&b, obj, f, 1, &err));
        GETTER(atr_json_get_object(&sub, obj, f, &err));
        if (rc == ATR_OK && !json_is_object(sub))
            abort();
        GETTER(atr_json_get_object_opt(&sub, obj, f, &err));
        GETTER(atr_json_get_array(&sub, obj, f, &err));
        if (rc == ATR_OK && !json_is_array(sub))
            abort();
        GETTER(atr_json_get_array_opt(&sub, obj, f, &err));
#undef GETTER
    }
}

/* Serialises @p v and parses the text again. */
static void round_trip(const json_t *v)
{
    struct atr_buf b;
    atr_buf_init(&b, ATR_JSON_MAX_BYTES);
    atr_status rc = atr_json_dump(&b, v);
    if (rc == ATR_OK) {
        json_t *again = NULL;
        if (atr_json_parse(&again, atr_buf_span(&b), NULL) != ATR_OK)
            abort();
        json_decref(again);
    } else if (rc != ATR_E_TOO_LARGE && rc != ATR_E_NOMEM) {
        abort();
    }
    atr_buf_cleanup(&b);
}

/* The error shape with a message taken from the body (any UTF-8 string). */
static void error_shape(const json_t *obj)
{
    const char *key;
    json_t *value;
    const char *msg = NULL;
    json_object_foreach((json_t *)obj, key, value)
    {
        if (json_is_string(value)) {
            msg = json_string_value(value);
            break;
        }
    }
    json_t *extra = json_pack("{s:{s:s?}}", "innererror", "code", msg);
    json_t *e = NULL;
    atr_status rc = atr_json_error_new(&e, ATR_E_INVALID, msg, extra);
    if (rc == ATR_OK) {
        json_t *inner = json_object_get(e, "error");
        if (!json_is_string(json_object_get(inner, "code")) ||
            !json_is_string(json_object_get(inner, "message")))
            abort();
        round_trip(e);
        json_decref(e);
    } else if (rc != ATR_E_NOMEM || e != NULL) {
        abort();
    }
}

/* A pointer the parser must overwrite on every path. */
static json_t poison;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_INPUT_MAX)
        return 0;
    struct atr_span body = atr_span_of(data, size);
    struct atr_err err;

    /* any JSON value */
    json_t *v = &poison; /* must be overwritten */
    atr_err_clear(&err);
    atr_status rc = atr_json_parse(&v, body, &err);
    check_err(rc, &err);
    if (rc == ATR_OK) {
        if (v == NULL)
            abort();
        round_trip(v);
        json_decref(v);
    } else if (v != NULL || (rc != ATR_E_PARSE && rc != ATR_E_TOO_LARGE && rc != ATR_E_NOMEM)) {
        abort();
    }

    /* a request body */
    json_t *obj = &poison;
    atr_err_clear(&err);
    rc = atr_json_parse_object(&obj, body, &err);
    check_err(rc, &err);
    if (rc != ATR_OK) {
        if (obj != NULL)
            abort();
        return 0;
    }
    if (!json_is_object(obj))
        abort();
    getters(obj);
    error_shape(obj);
    json_decref(obj);
    return 0;
}
