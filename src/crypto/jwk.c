/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/jwk.h"

#include <string.h>

#include "base/b64.h"
#include "base/buf.h"
#include "base/secmem.h"

/* The eight integer members, in atr_rsa_part order (N = 1 ... QI = 8). */
static const char *const int_members[8] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};

/* Longest base64url text of one integer member (16384 bits plus slack). */
#define JWK_MAX_INT_TEXT ((ATR_RSA_MAX_BITS / 8 + 8) * 4 / 3 + 4)

static int string_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);
    return json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0;
}

/* Checks the JSON type of registered members that we otherwise ignore. */
static atr_status check_registered(const json_t *jwk, struct atr_err *err)
{
    static const char *const strings[] = {"kid", "alg", "use", "x5u", "x5t", "x5t#S256"};
    static const char *const string_arrays[] = {"key_ops", "x5c"};
    static const char *const foreign[] = {"k", "crv", "x", "y"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(foreign); i++) {
        if (json_object_get(jwk, foreign[i]) != NULL)
            return atr_err_set(err, ATR_E_INVALID,
                               "JWK: member \"%s\" does not belong to an RSA key", foreign[i]);
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(strings); i++) {
        const json_t *v = json_object_get(jwk, strings[i]);
        if (v != NULL && !json_is_string(v))
            return atr_err_set(err, ATR_E_PARSE, "JWK: \"%s\" must be a string", strings[i]);
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(string_arrays); i++) {
        const json_t *v = json_object_get(jwk, string_arrays[i]);
        if (v == NULL)
            continue;
        if (!json_is_array(v))
            return atr_err_set(err, ATR_E_PARSE, "JWK: \"%s\" must be an array of strings",
                               string_arrays[i]);
        for (size_t j = 0; j < json_array_size(v); j++) {
            if (!json_is_string(json_array_get(v, j)))
                return atr_err_set(err, ATR_E_PARSE, "JWK: \"%s\" must be an array of strings",
                                   string_arrays[i]);
        }
    }
    const json_t *ext = json_object_get(jwk, "ext");
    if (ext != NULL && !json_is_boolean(ext))
        return atr_err_set(err, ATR_E_PARSE, "JWK: \"ext\" must be a boolean");
    return ATR_OK;
}

/* Decodes member @p name into @p out (left empty when the member is absent). */
static atr_status decode_int(struct atr_buf *out, const json_t *jwk, const char *name,
                             struct atr_err *err)
{
    const json_t *v = json_object_get(jwk, name);
    if (v == NULL)
        return ATR_OK;
    if (!json_is_string(v))
        return atr_err_set(err, ATR_E_PARSE, "JWK: \"%s\" must be a base64url string", name);
    size_t len = json_string_length(v);
    if (len == 0)
        return atr_err_set(err, ATR_E_PARSE, "JWK: \"%s\" is empty", name);
    if (len > JWK_MAX_INT_TEXT)
        return atr_err_set(err, ATR_E_INVALID, "JWK: \"%s\" is too long for an RSA key", name);
    struct atr_err sub;
    atr_err_clear(&sub);
    atr_status rc = atr_b64url_decode(out, json_string_value(v), len, &sub);
    if (rc == ATR_E_PARSE)
        return atr_err_set(err, ATR_E_PARSE, "JWK: \"%s\" is not valid base64url (%s)", name,
                           atr_err_msg(&sub));
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "JWK: \"%s\": %s", name, atr_err_msg(&sub));
    return ATR_OK;
}

atr_status atr_jwk_import(struct atr_rsa_key **out, const json_t *jwk, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (!json_is_object(jwk))
        return atr_err_set(err, ATR_E_PARSE, "JWK: not a JSON object");
    const json_t *kty = json_object_get(jwk, "kty");
    if (kty == NULL)
        return atr_err_set(err, ATR_E_INVALID, "JWK: \"kty\" is missing");
    if (!json_is_string(kty))
        return atr_err_set(err, ATR_E_PARSE, "JWK: \"kty\" must be a string");
    if (!string_is(kty, "RSA") && !string_is(kty, "RSA-HSM"))
        return atr_err_set(err, ATR_E_INVALID,
                           "JWK: unsupported key type (\"kty\" must be \"RSA\" or \"RSA-HSM\")");
    ATR_TRY(check_registered(jwk, err));
    if (json_object_get(jwk, "oth") != NULL)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "JWK: multi-prime RSA keys are not supported");
    if (json_object_get(jwk, "n") == NULL || json_object_get(jwk, "e") == NULL)
        return atr_err_set(err, ATR_E_INVALID, "JWK: \"%s\" is missing",
                           json_object_get(jwk, "n") == NULL ? "n" : "e");
    if (json_object_get(jwk, "key_hsm") != NULL && json_object_get(jwk, "d") == NULL)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "JWK: HSM key transfer blobs (\"key_hsm\") are not supported");

    atr_status rc = ATR_OK;
    struct atr_buf parts[8];
    for (size_t i = 0; i < 8; i++)
        atr_buf_init(&parts[i], ATR_RSA_MAX_BITS / 8 + 8);
    for (size_t i = 0; i < 8; i++) {
        rc = decode_int(&parts[i], jwk, int_members[i], err);
        if (rc != ATR_OK)
            goto done;
    }
    struct atr_rsa_components c = {
        .n = atr_buf_span(&parts[0]),
        .e = atr_buf_span(&parts[1]),
        .d = atr_buf_span(&parts[2]),
        .p = atr_buf_span(&parts[3]),
        .q = atr_buf_span(&parts[4]),
        .dp = atr_buf_span(&parts[5]),
        .dq = atr_buf_span(&parts[6]),
        .qi = atr_buf_span(&parts[7]),
    };
    rc = atr_rsa_key_from_components(out, &c, err);
    if (rc != ATR_OK)
        atr_err_wrap(err, rc, "JWK");
done:
    for (size_t i = 0; i < 8; i++)
        atr_buf_cleanup(&parts[i]); /* wipes the private integers */
    return rc;
}

/* Overwrites the private members of a tree we parsed ourselves. */
static void wipe_private_members(json_t *root)
{
    if (!json_is_object(root))
        return;
    for (size_t i = 2; i < 8; i++) {
        json_t *v = json_object_get(root, int_members[i]);
        if (json_is_string(v))
            atr_wipe((char *)json_string_value(v), json_string_length(v));
    }
}

atr_status atr_jwk_parse(struct atr_rsa_key **out, const char *text, size_t len,
                         struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (text == NULL && len != 0)
        return atr_err_set(err, ATR_E_INVALID, "JWK: no input");
    if (len > ATR_JWK_MAX_TEXT)
        return atr_err_set(err, ATR_E_TOO_LARGE, "JWK: the text is longer than %zu bytes",
                           ATR_JWK_MAX_TEXT);
    json_error_t jerr;
    json_t *root = json_loadb(text == NULL ? "" : text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        /* jansson's text may quote the input (secrets): only the position */
        return atr_err_set(err, ATR_E_PARSE, "JWK: not valid JSON (line %d, column %d)", jerr.line,
                           jerr.column);
    atr_status rc = atr_jwk_import(out, root, err);
    wipe_private_members(root);
    json_decref(root);
    return rc;
}

/* Adds member @p name holding the base64url of one key integer. */
static atr_status add_int(json_t *obj, const struct atr_rsa_key *key, atr_rsa_part part,
                          struct atr_err *err)
{
    struct atr_buf raw, text;
    atr_buf_init(&raw, ATR_RSA_MAX_BITS / 8 + 8);
    atr_buf_init(&text, JWK_MAX_INT_TEXT);
    atr_status rc = atr_rsa_key_get_component(&raw, key, part, err);
    if (rc != ATR_OK)
        goto done;
    rc = atr_b64url_encode(&text, atr_buf_span(&raw));
    if (rc != ATR_OK) {
        atr_err_set(err, rc, "JWK: cannot encode \"%s\"", int_members[part - 1]);
        goto done;
    }
    json_t *s = json_stringn((const char *)text.ptr, text.len);
    if (s == NULL || json_object_set_new(obj, int_members[part - 1], s) != 0) {
        rc = atr_err_set(err, ATR_E_NOMEM, "JWK: out of memory");
        goto done;
    }
done:
    atr_buf_cleanup(&raw);
    atr_buf_cleanup(&text);
    return rc;
}

atr_status atr_jwk_export(json_t **out, const struct atr_rsa_key *key, atr_jwk_content what,
                          struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    *out = NULL;
    if (what != ATR_JWK_PUBLIC && what != ATR_JWK_PRIVATE)
        return atr_err_set(err, ATR_E_INVALID, "JWK: unknown export content");
    if (what == ATR_JWK_PRIVATE && !atr_rsa_key_has_private(key))
        return atr_err_set(err, ATR_E_INVALID, "JWK: the key has no private part");
    atr_status rc = ATR_OK;
    json_t *obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "kty", json_string("RSA")) != 0) {
        rc = atr_err_set(err, ATR_E_NOMEM, "JWK: out of memory");
        goto done;
    }
    int last = what == ATR_JWK_PRIVATE ? ATR_RSA_PART_QI : ATR_RSA_PART_E;
    for (int p = ATR_RSA_PART_N; p <= last; p++) {
        rc = add_int(obj, key, (atr_rsa_part)p, err);
        if (rc != ATR_OK)
            goto done;
    }
done:
    if (rc != ATR_OK) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return ATR_OK;
}
