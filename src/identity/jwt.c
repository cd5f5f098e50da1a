/* SPDX-License-Identifier: Apache-2.0 */
#include "identity/jwt.h"

#include <string.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/buf.h"
#include "crypto/sig.h"
#include "http/json.h"

/* Largest decoded signature: a 16384-bit modulus. */
#define SIG_MAX_BYTES (ATR_RSA_MAX_BITS / 8)

/* Bytes of a decoded header or payload (base64url shrinks by 3/4). */
#define PART_MAX_BYTES (ATR_JWT_MAX_LEN / 4 * 3 + 3)

/* A token split at its two dots. */
struct parts {
    const char *h;
    size_t hlen;
    const char *p;
    size_t plen;
    const char *s;
    size_t slen;
};

static atr_status unauth(struct atr_err *err, const char *what)
{
    return atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: %s", what);
}

static atr_status split(struct parts *out, const char *token, size_t len, struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (token == NULL || len == 0)
        return unauth(err, "malformed: empty token");
    if (len > ATR_JWT_MAX_LEN)
        return atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: longer than %d bytes",
                           ATR_JWT_MAX_LEN);
    size_t dots[2];
    size_t ndots = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] != '.')
            continue;
        if (ndots == 2)
            return unauth(err, "malformed: more than three parts");
        dots[ndots++] = i;
    }
    if (ndots != 2)
        return unauth(err, "malformed: fewer than three parts");
    out->h = token;
    out->hlen = dots[0];
    out->p = token + dots[0] + 1;
    out->plen = dots[1] - dots[0] - 1;
    out->s = token + dots[1] + 1;
    out->slen = len - dots[1] - 1;
    return ATR_OK;
}

/* Decodes one base64url part holding a JSON object. @p what names it. */
static atr_status decode_object(json_t **out, const char *text, size_t len, const char *what,
                                struct atr_err *err)
{
    *out = NULL;
    struct atr_buf raw;
    atr_buf_init(&raw, PART_MAX_BYTES);
    atr_status rc = atr_b64url_decode(&raw, text, len, NULL);
    if (rc != ATR_OK) {
        rc = rc == ATR_E_NOMEM ? atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory")
                               : atr_err_set(err, ATR_E_UNAUTHORIZED,
                                             "JWT: malformed: %s is not base64url", what);
        goto done;
    }
    if (raw.len == 0) {
        rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: %s is empty", what);
        goto done;
    }
    /* atr_json_parse bounds the depth and rejects duplicate keys and NULs */
    rc = atr_json_parse_object(out, atr_buf_span(&raw), NULL);
    if (rc == ATR_E_NOMEM) {
        rc = atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
    } else if (rc != ATR_OK) {
        /* the parser's message is about request bodies: use our own */
        rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: %s is not a JSON object", what);
    }
done:
    atr_buf_cleanup(&raw);
    return rc;
}

/*
 * Reads optional string member @p name of @p obj into an owned copy
 * (NULL when absent). A non-string or one longer than @p max is malformed.
 */
static atr_status dup_str(char **out, const json_t *obj, const char *name, size_t max,
                          const char *where, struct atr_err *err)
{
    *out = NULL;
    const json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return ATR_OK;
    if (!json_is_string(v))
        return atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: %s \"%s\" must be a string",
                           where, name);
    size_t n = json_string_length(v);
    if (n > max)
        return atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: %s \"%s\" is too long", where,
                           name);
    *out = atr_strndup(json_string_value(v), n);
    if (*out == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
    return ATR_OK;
}

void atr_jwt_header_cleanup(struct atr_jwt_header *h)
{
    if (h == NULL)
        return;
    atr_free(h->alg);
    atr_free(h->kid);
    atr_free(h->typ);
    atr_free(h->x5t);
    memset(h, 0, sizeof(*h));
}

static atr_status header_fill(struct atr_jwt_header *out, const json_t *hdr, struct atr_err *err)
{
    ATR_TRY(dup_str(&out->alg, hdr, "alg", ATR_JWT_MAX_STR, "header", err));
    if (out->alg == NULL)
        return unauth(err, "malformed: header has no \"alg\"");
    ATR_TRY(dup_str(&out->kid, hdr, "kid", ATR_JWT_MAX_KID, "header", err));
    ATR_TRY(dup_str(&out->typ, hdr, "typ", ATR_JWT_MAX_STR, "header", err));
    ATR_TRY(dup_str(&out->x5t, hdr, "x5t", ATR_JWT_MAX_STR, "header", err));
    return ATR_OK;
}

atr_status atr_jwt_decode_header(struct atr_jwt_header *out, const char *token, size_t len,
                                 struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    memset(out, 0, sizeof(*out));
    struct parts pt;
    ATR_TRY(split(&pt, token, len, err));
    json_t *hdr = NULL;
    ATR_TRY(decode_object(&hdr, pt.h, pt.hlen, "header", err));
    atr_status rc = header_fill(out, hdr, err);
    if (rc != ATR_OK)
        atr_jwt_header_cleanup(out);
    json_decref(hdr);
    return rc;
}

/* True if @p s is short, printable and safe to name in a message. */
static int is_plain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '+'))
            return 0;
    }
    return 1;
}

/* The header checks of verification: alg, kid, crit. */
static atr_status check_header(const json_t *hdr, const char *expected_kid, int kid_optional,
                               struct atr_err *err)
{
    struct atr_jwt_header h;
    memset(&h, 0, sizeof(h));
    atr_status rc = header_fill(&h, hdr, err);
    if (rc != ATR_OK)
        goto done;
    if (strcmp(h.alg, "RS256") != 0) {
        if (is_plain_name(h.alg))
            rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: alg \"%s\" is not allowed (only RS256)",
                             h.alg);
        else
            rc = unauth(err, "alg is not allowed (only RS256)");
        goto done;
    }
    if ((h.kid == NULL && !kid_optional) || (h.kid != NULL && h.kid[0] == '\0')) {
        rc = unauth(err, "kid: the header has no \"kid\"");
        goto done;
    }
    if (expected_kid != NULL && (h.kid == NULL || strcmp(h.kid, expected_kid) != 0)) {
        rc = unauth(err, "kid: the header's \"kid\" does not match the key");
        goto done;
    }
    if (json_object_get(hdr, "crit") != NULL) {
        rc = unauth(err, "malformed: critical header extensions are not supported");
        goto done;
    }
done:
    atr_jwt_header_cleanup(&h);
    return rc;
}

static atr_status check_signature(const struct parts *pt, const struct atr_rsa_key *key,
                                  struct atr_err *err)
{
    struct atr_buf sig;
    atr_buf_init(&sig, SIG_MAX_BYTES);
    atr_status rc = atr_b64url_decode(&sig, pt->s, pt->slen, NULL);
    if (rc == ATR_E_NOMEM) {
        rc = atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
        goto done;
    }
    if (rc != ATR_OK) {
        rc = unauth(err, "malformed: signature is not base64url");
        goto done;
    }
    /* signing input: header "." payload, i.e. the token up to the second dot */
    size_t in_len = pt->hlen + 1 + pt->plen;
    struct atr_err sub;
    atr_err_clear(&sub);
    rc = atr_sig_verify(key, ATR_SIG_RS256, atr_span_of(pt->h, in_len), atr_buf_span(&sig), &sub);
    if (rc == ATR_E_NOMEM)
        rc = atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
    else if (rc != ATR_OK)
        rc = unauth(err, "signature is invalid");
done:
    atr_buf_cleanup(&sig);
    return rc;
}

/* Reads NumericDate member @p name: 0 and *present = 0 when absent. */
static atr_status get_time(int64_t *out, int *present, const json_t *obj, const char *name,
                           struct atr_err *err)
{
    *out = 0;
    *present = 0;
    const json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return ATR_OK;
    /*
     * RFC 7519 NumericDate may be fractional, and MSAL sends iat/nbf/exp of
     * client assertions as Python floats: take the whole seconds.
     */
    json_int_t t;
    if (json_is_integer(v)) {
        t = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0.0 && d <= (double)ATR_JWT_MAX_TIME))
            return atr_err_set(err, ATR_E_UNAUTHORIZED,
                               "JWT: malformed: claim \"%s\" is out of range", name);
        t = (json_int_t)d;
    } else {
        return atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: claim \"%s\" must be a number",
                           name);
    }
    if (t < 0 || t > ATR_JWT_MAX_TIME)
        return atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: malformed: claim \"%s\" is out of range",
                           name);
    *out = (int64_t)t;
    *present = 1;
    return ATR_OK;
}

static atr_status get_roles(struct atr_jwt_claims *out, const json_t *payload, struct atr_err *err)
{
    const json_t *v = json_object_get(payload, "roles");
    if (v == NULL)
        return ATR_OK;
    if (!json_is_array(v))
        return unauth(err, "malformed: claim \"roles\" must be an array of strings");
    size_t n = json_array_size(v);
    if (n > ATR_JWT_MAX_ROLES)
        return unauth(err, "malformed: claim \"roles\" has too many entries");
    if (n == 0)
        return ATR_OK;
    out->roles = atr_calloc(n, sizeof(*out->roles));
    if (out->roles == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(v, i);
        if (!json_is_string(r))
            return unauth(err, "malformed: claim \"roles\" must be an array of strings");
        if (json_string_length(r) > ATR_JWT_MAX_STR)
            return unauth(err, "malformed: a role is too long");
        out->roles[i] = atr_strndup(json_string_value(r), json_string_length(r));
        if (out->roles[i] == NULL)
            return atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
        out->nroles = i + 1;
    }
    return ATR_OK;
}

/* Presence of the time claims, beside their values in the claims. */
struct times {
    int has_iat, has_nbf, has_exp;
};

static atr_status extract_claims(struct atr_jwt_claims *out, struct times *tm,
                                 const json_t *payload, struct atr_err *err)
{
    if (json_object_size(payload) > ATR_JWT_MAX_CLAIMS)
        return unauth(err, "malformed: too many claims");
    if (json_is_array(json_object_get(payload, "aud")))
        return unauth(err, "audience: an array \"aud\" is not supported");
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {
        {"iss", offsetof(struct atr_jwt_claims, iss)},
        {"sub", offsetof(struct atr_jwt_claims, sub)},
        {"aud", offsetof(struct atr_jwt_claims, aud)},
        {"tid", offsetof(struct atr_jwt_claims, tid)},
        {"oid", offsetof(struct atr_jwt_claims, oid)},
        {"appid", offsetof(struct atr_jwt_claims, appid)},
        {"jti", offsetof(struct atr_jwt_claims, jti)},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(strs); i++) {
        char **dst = (char **)(void *)((char *)out + strs[i].off);
        ATR_TRY(dup_str(dst, payload, strs[i].name, ATR_JWT_MAX_STR, "claim", err));
    }
    /* v2 tokens name the client "azp"; type-check it even when appid is set */
    char *azp = NULL;
    ATR_TRY(dup_str(&azp, payload, "azp", ATR_JWT_MAX_STR, "claim", err));
    if (out->appid == NULL)
        out->appid = azp;
    else
        atr_free(azp);
    ATR_TRY(get_time(&out->iat, &tm->has_iat, payload, "iat", err));
    ATR_TRY(get_time(&out->nbf, &tm->has_nbf, payload, "nbf", err));
    ATR_TRY(get_time(&out->exp, &tm->has_exp, payload, "exp", err));
    return get_roles(out, payload, err);
}

static atr_status check_claims(const struct atr_jwt_claims *c, const struct times *tm,
                               const struct atr_jwt_verify_opts *opts, struct atr_err *err)
{
    const struct atr_clock *clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    int64_t now = atr_clock_now_s(clock);
    int64_t skew = opts->skew_s;
    if (!tm->has_exp && opts->require_exp)
        return unauth(err, "expired: the token has no \"exp\"");
    if (tm->has_exp && now >= c->exp + skew)
        return unauth(err, "expired");
    if (tm->has_nbf && now < c->nbf - skew)
        return unauth(err, "not yet valid");
    if (tm->has_iat && c->iat > now + skew)
        return unauth(err, "not yet valid: issued in the future");
    if (opts->issuer != NULL && (c->iss == NULL || strcmp(c->iss, opts->issuer) != 0))
        return unauth(err, "issuer does not match");
    if (opts->audience != NULL && (c->aud == NULL || strcmp(c->aud, opts->audience) != 0))
        return unauth(err, "audience does not match");
    return ATR_OK;
}

void atr_jwt_claims_cleanup(struct atr_jwt_claims *c)
{
    if (c == NULL)
        return;
    atr_free(c->kid);
    atr_free(c->iss);
    atr_free(c->sub);
    atr_free(c->aud);
    atr_free(c->tid);
    atr_free(c->oid);
    atr_free(c->appid);
    atr_free(c->jti);
    for (size_t i = 0; i < c->nroles; i++)
        atr_free(c->roles[i]);
    atr_free(c->roles);
    memset(c, 0, sizeof(*c));
}

static atr_status verify(struct atr_jwt_claims *out, const char *token, size_t len,
                         const struct atr_rsa_key *key, const char *expected_kid, int kid_optional,
                         const struct atr_jwt_verify_opts *opts, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    memset(out, 0, sizeof(*out));
    ATR_ASSERT_ARG(key != NULL && opts != NULL);
    if (opts->skew_s < 0 || opts->skew_s > ATR_JWT_MAX_SKEW_S)
        return atr_err_set(err, ATR_E_INVALID, "JWT: clock skew out of range");
    if (atr_rsa_key_bits(key) < ATR_JWT_MIN_KEY_BITS)
        return atr_err_set(err, ATR_E_INVALID, "JWT: the verification key is too small");

    struct parts pt;
    ATR_TRY(split(&pt, token, len, err));
    json_t *hdr = NULL;
    json_t *payload = NULL;
    struct times tm = {0, 0, 0};
    atr_status rc = decode_object(&hdr, pt.h, pt.hlen, "header", err);
    if (rc != ATR_OK)
        goto done;
    rc = check_header(hdr, expected_kid, kid_optional, err);
    if (rc != ATR_OK)
        goto done;
    rc = check_signature(&pt, key, err);
    if (rc != ATR_OK)
        goto done;
    /* only authenticated bytes reach the claims parser */
    rc = decode_object(&payload, pt.p, pt.plen, "payload", err);
    if (rc != ATR_OK)
        goto done;
    rc = dup_str(&out->kid, hdr, "kid", ATR_JWT_MAX_KID, "header", err);
    if (rc != ATR_OK)
        goto done;
    rc = extract_claims(out, &tm, payload, err);
    if (rc != ATR_OK)
        goto done;
    rc = check_claims(out, &tm, opts, err);
done:
    if (rc != ATR_OK)
        atr_jwt_claims_cleanup(out);
    json_decref(hdr);
    json_decref(payload);
    return rc;
}

atr_status atr_jwt_verify_with_kid(struct atr_jwt_claims *out, const char *token, size_t len,
                                   const struct atr_rsa_key *key, const char *expected_kid,
                                   const struct atr_jwt_verify_opts *opts, struct atr_err *err)
{
    return verify(out, token, len, key, expected_kid, 0, opts, err);
}

atr_status atr_jwt_verify_with_key(struct atr_jwt_claims *out, const char *token, size_t len,
                                   const struct atr_rsa_key *key,
                                   const struct atr_jwt_verify_opts *opts, struct atr_err *err)
{
    return verify(out, token, len, key, NULL, 0, opts, err);
}

atr_status atr_jwt_verify_assertion(struct atr_jwt_claims *out, const char *token, size_t len,
                                    const struct atr_rsa_key *key,
                                    const struct atr_jwt_verify_opts *opts, struct atr_err *err)
{
    return verify(out, token, len, key, NULL, 1, opts, err);
}

static int tid_ok(const char *tid)
{
    size_t n = tid != NULL ? strlen(tid) : 0;
    if (n == 0 || n > ATR_JWT_MAX_TID)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = tid[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

atr_status atr_jwt_check_issuer_template(const struct atr_jwt_claims *claims, const char *tmpl,
                                         struct atr_err *err)
{
    static const char ph[] = "{tenantid}";
    const size_t phlen = sizeof(ph) - 1;
    ATR_ASSERT_ARG(claims != NULL);
    const char *at = tmpl != NULL ? strstr(tmpl, ph) : NULL;
    if (at == NULL || strstr(at + phlen, ph) != NULL)
        return atr_err_set(err, ATR_E_INVALID,
                           "JWT: the issuer template needs exactly one \"{tenantid}\"");
    if (!tid_ok(claims->tid))
        return unauth(err, "issuer: the token has no valid \"tid\"");
    if (claims->iss == NULL)
        return unauth(err, "issuer does not match");
    size_t pre = (size_t)(at - tmpl);
    size_t post = strlen(at + phlen);
    size_t tl = strlen(claims->tid);
    const char *iss = claims->iss;
    if (strlen(iss) != pre + tl + post || memcmp(iss, tmpl, pre) != 0 ||
        memcmp(iss + pre, claims->tid, tl) != 0 || memcmp(iss + pre + tl, at + phlen, post) != 0)
        return unauth(err, "issuer does not match");
    return ATR_OK;
}

/* Appends base64url(compact JSON of @p v) to @p out. */
static atr_status append_part(struct atr_buf *out, const json_t *v, struct atr_err *err)
{
    struct atr_buf js;
    atr_buf_init(&js, ATR_JWT_MAX_LEN);
    atr_status rc = atr_json_dump(&js, v);
    if (rc == ATR_OK)
        rc = atr_b64url_encode(out, atr_buf_span(&js));
    atr_buf_cleanup(&js);
    if (rc == ATR_E_TOO_LARGE)
        return atr_err_set(err, ATR_E_INVALID, "JWT: the token would exceed %d bytes",
                           ATR_JWT_MAX_LEN);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "JWT: cannot encode the token");
    return ATR_OK;
}

atr_status atr_jwt_sign_rs256(char **out, const struct atr_rsa_key *key, const char *kid,
                              const json_t *claims, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    ATR_ASSERT_ARG(key != NULL);
    if (!atr_rsa_key_has_private(key))
        return atr_err_set(err, ATR_E_INVALID, "JWT: signing needs a private key");
    if (kid == NULL || kid[0] == '\0' || strlen(kid) > ATR_JWT_MAX_KID)
        return atr_err_set(err, ATR_E_INVALID, "JWT: kid must be 1..%d bytes", ATR_JWT_MAX_KID);
    if (!json_is_object(claims))
        return atr_err_set(err, ATR_E_INVALID, "JWT: the claims must be a JSON object");

    atr_status rc = ATR_OK;
    struct atr_buf tok, sig;
    atr_buf_init(&tok, ATR_JWT_MAX_LEN);
    atr_buf_init(&sig, SIG_MAX_BYTES);
    /* jansson keeps insertion order: {"typ":"JWT","alg":"RS256","kid":...} */
    json_t *hdr = json_pack("{s:s,s:s,s:s}", "typ", "JWT", "alg", "RS256", "kid", kid);
    if (hdr == NULL) {
        /* json_pack fails for invalid UTF-8 as well as for memory */
        rc = atr_err_set(err, ATR_E_INVALID, "JWT: kid must be valid UTF-8");
        goto done;
    }
    if ((rc = append_part(&tok, hdr, err)) != ATR_OK)
        goto done;
    if ((rc = atr_buf_append(&tok, ".", 1)) != ATR_OK)
        goto toobig;
    if ((rc = append_part(&tok, claims, err)) != ATR_OK)
        goto done;
    rc = atr_sig_sign(&sig, key, ATR_SIG_RS256, atr_buf_span(&tok), err);
    if (rc != ATR_OK) {
        atr_err_wrap(err, rc, "JWT");
        goto done;
    }
    if ((rc = atr_buf_append(&tok, ".", 1)) != ATR_OK)
        goto toobig;
    if ((rc = atr_b64url_encode(&tok, atr_buf_span(&sig))) != ATR_OK)
        goto toobig;
    const char *s = atr_buf_cstr(&tok);
    if (s == NULL) {
        rc = ATR_E_NOMEM;
        goto toobig;
    }
    *out = atr_strndup(s, tok.len);
    if (*out == NULL)
        rc = atr_err_set(err, ATR_E_NOMEM, "JWT: out of memory");
    goto done;
toobig:
    if (rc == ATR_E_NOMEM)
        atr_err_set(err, rc, "JWT: out of memory");
    else
        rc = atr_err_set(err, ATR_E_INVALID, "JWT: the token would exceed %d bytes",
                         ATR_JWT_MAX_LEN);
done:
    json_decref(hdr);
    atr_buf_cleanup(&tok);
    atr_buf_cleanup(&sig);
    return rc;
}
