/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/clock.h"
#include "crypto/rsa.h"
#include "crypto/sig.h"
#include "identity/jwt.h"

#define NOW_S   ((int64_t)1700000000)
#define ISSUER  "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"
#define AUD     "api://atrest"
#define TENANT  "11111111-2222-3333-4444-555555555555"
#define HDR_KID "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"k1\"}"

static struct atr_rsa_key *key;   /* 2048-bit private key, kid "k1" */
static struct atr_rsa_key *pub;   /* its public part */
static struct atr_rsa_key *other; /* an unrelated key */
static struct atr_test_clock tclock;

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    if (atr_rsa_key_generate(&key, 2048, NULL) != ATR_OK ||
        atr_rsa_key_dup_public(&pub, key, NULL) != ATR_OK ||
        atr_rsa_key_generate(&other, 2048, NULL) != ATR_OK)
        return -1;
    if (atr_test_clock_init(&tclock, NOW_S * 1000) != ATR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atr_rsa_key_free(key);
    atr_rsa_key_free(pub);
    atr_rsa_key_free(other);
    atr_test_clock_cleanup(&tclock);
    return 0;
}

static struct atr_jwt_verify_opts opts(void)
{
    struct atr_jwt_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.clock = &tclock.base;
    o.issuer = ISSUER;
    o.audience = AUD;
    o.skew_s = 0;
    o.require_exp = 1;
    return o;
}

/* The standard claims of a valid token, a new reference. */
static json_t *good_claims(void)
{
    json_t *c =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:[s,s]}", "iss", ISSUER, "aud", AUD,
                  "sub", "subject-1", "tid", TENANT, "oid", "object-1", "appid", "app-1", "jti",
                  "id-1", "iat", (json_int_t)(NOW_S - 10), "nbf", (json_int_t)(NOW_S - 10), "exp",
                  (json_int_t)(NOW_S + 3600), "roles", "Vault.Read", "Vault.Write");
    assert_non_null(c);
    return c;
}

static char *sign(const json_t *claims)
{
    char *tok = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "k1", claims, &err), ATR_OK);
    assert_non_null(tok);
    return tok;
}

static char *b64url(const void *p, size_t n)
{
    char *s = NULL;
    assert_int_equal(atr_b64url_encode_str(&s, atr_span_of(p, n)), ATR_OK);
    return s;
}

/*
 * Builds a token from raw header and payload texts, signed with @p alg by
 * @p k (NULL: no signature, "h.p.").
 */
static char *forge(const char *hdr, const char *payload, const struct atr_rsa_key *k,
                   atr_sig_alg alg)
{
    char *h = b64url(hdr, strlen(hdr));
    char *p = b64url(payload, strlen(payload));
    struct atr_buf t;
    atr_buf_init(&t, 1 << 20);
    assert_int_equal(atr_buf_printf(&t, "%s.%s", h, p), ATR_OK);
    char *s = NULL;
    if (k != NULL) {
        struct atr_buf sig;
        atr_buf_init(&sig, 4096);
        assert_int_equal(atr_sig_sign(&sig, k, alg, atr_buf_span(&t), NULL), ATR_OK);
        s = b64url(sig.ptr, sig.len);
        atr_buf_cleanup(&sig);
    }
    assert_int_equal(atr_buf_printf(&t, ".%s", s != NULL ? s : ""), ATR_OK);
    char *out = atr_strdup(atr_buf_cstr(&t));
    assert_non_null(out);
    atr_buf_cleanup(&t);
    atr_free(h);
    atr_free(p);
    atr_free(s);
    return out;
}

/* The compact JSON of @p claims (owned). */
static char *dump(const json_t *claims)
{
    char *s = json_dumps(claims, JSON_COMPACT);
    assert_non_null(s);
    char *copy = atr_strdup(s);
    free(s);
    return copy;
}

static void assert_empty(const struct atr_jwt_claims *c)
{
    assert_null(c->kid);
    assert_null(c->iss);
    assert_null(c->sub);
    assert_null(c->aud);
    assert_null(c->tid);
    assert_null(c->oid);
    assert_null(c->appid);
    assert_null(c->jti);
    assert_null(c->roles);
    assert_int_equal(c->nroles, 0);
    assert_int_equal(c->exp, 0);
}

/* Verifies @p tok expecting rejection with a message containing @p what. */
static void expect_reject_kid(const char *tok, size_t len, const struct atr_rsa_key *k,
                              const char *kid, const struct atr_jwt_verify_opts *o,
                              const char *what)
{
    struct atr_jwt_claims c;
    memset(&c, 0x5a, sizeof(c)); /* garbage in: must be emptied */
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwt_verify_with_kid(&c, tok, len, k, kid, o, &err);
    if (rc != ATR_E_UNAUTHORIZED || strstr(err.msg, what) == NULL)
        fail_msg("want UNAUTHORIZED with \"%s\", got %s \"%s\"", what, atr_status_name(rc),
                 err.msg);
    assert_int_equal(err.code, ATR_E_UNAUTHORIZED);
    assert_int_equal(strncmp(err.msg, "JWT: ", 5), 0);
    /* never echoes the token: every token starts with base64url of '{"' */
    assert_null(strstr(err.msg, "eyJ"));
    assert_empty(&c);
}

static void expect_reject(const char *tok, const struct atr_jwt_verify_opts *o, const char *what)
{
    expect_reject_kid(tok, strlen(tok), pub, NULL, o, what);
}

/* ---- tests ---- */

static void test_round_trip(void **state)
{
    (void)state;
    json_t *claims = good_claims();
    char *tok = sign(claims);

    /* header exactly {"typ":"JWT","alg":"RS256","kid":"k1"}, payload the compact claims */
    const char *d1 = strchr(tok, '.');
    const char *d2 = strchr(d1 + 1, '.');
    struct atr_buf raw;
    atr_buf_init(&raw, 1 << 16);
    assert_int_equal(atr_b64url_decode(&raw, tok, (size_t)(d1 - tok), NULL), ATR_OK);
    assert_int_equal(raw.len, strlen(HDR_KID));
    assert_memory_equal(raw.ptr, HDR_KID, raw.len);
    atr_buf_reset(&raw);
    assert_int_equal(atr_b64url_decode(&raw, d1 + 1, (size_t)(d2 - d1 - 1), NULL), ATR_OK);
    char *compact = dump(claims);
    assert_int_equal(raw.len, strlen(compact));
    assert_memory_equal(raw.ptr, compact, raw.len);
    atr_free(compact);
    atr_buf_cleanup(&raw);

    struct atr_jwt_verify_opts o = opts();
    struct atr_jwt_claims c;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, &err), ATR_OK);
    assert_string_equal(c.kid, "k1");
    assert_string_equal(c.iss, ISSUER);
    assert_string_equal(c.aud, AUD);
    assert_string_equal(c.sub, "subject-1");
    assert_string_equal(c.tid, TENANT);
    assert_string_equal(c.oid, "object-1");
    assert_string_equal(c.appid, "app-1");
    assert_string_equal(c.jti, "id-1");
    assert_int_equal(c.iat, NOW_S - 10);
    assert_int_equal(c.nbf, NOW_S - 10);
    assert_int_equal(c.exp, NOW_S + 3600);
    assert_int_equal(c.nroles, 2);
    assert_string_equal(c.roles[0], "Vault.Read");
    assert_string_equal(c.roles[1], "Vault.Write");
    atr_jwt_claims_cleanup(&c);
    assert_empty(&c);
    atr_jwt_claims_cleanup(&c); /* repeat is fine */
    atr_jwt_claims_cleanup(NULL);

    /* the private key verifies too; the right expected kid passes */
    assert_int_equal(atr_jwt_verify_with_kid(&c, tok, strlen(tok), key, "k1", &o, NULL), ATR_OK);
    atr_jwt_claims_cleanup(&c);
    /* no issuer/audience requirements: accepted as well */
    o.issuer = NULL;
    o.audience = NULL;
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    atr_jwt_claims_cleanup(&c);
    /* the length argument counts: a NUL-free prefix is not the token */
    expect_reject_kid(tok, strlen(tok) - 1, pub, NULL, &o, "signature");

    atr_free(tok);
    json_decref(claims);
}

static void test_minimal_and_azp(void **state)
{
    (void)state;
    /* v2 style: azp instead of appid; no roles, no iat/nbf, no jti */
    json_t *claims = json_pack("{s:s,s:s,s:s,s:I}", "iss", ISSUER, "aud", AUD, "azp", "client-2",
                               "exp", (json_int_t)(NOW_S + 60));
    char *tok = sign(claims);
    struct atr_jwt_verify_opts o = opts();
    struct atr_jwt_claims c;
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_string_equal(c.appid, "client-2");
    assert_null(c.roles);
    assert_int_equal(c.nroles, 0);
    assert_null(c.tid);
    assert_int_equal(c.iat, 0);
    assert_int_equal(c.nbf, 0);
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);

    /* fractional NumericDates (MSAL's client assertions) count in whole seconds */
    json_t *frac =
        json_pack("{s:s,s:s,s:f,s:f,s:f}", "iss", ISSUER, "aud", AUD, "iat", (double)NOW_S - 0.25,
                  "nbf", (double)NOW_S - 0.25, "exp", (double)NOW_S + 60.75);
    tok = sign(frac);
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_int_equal(c.exp, NOW_S + 60);
    assert_int_equal(c.iat, NOW_S - 1);
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);
    json_decref(frac);

    /* appid wins over azp */
    json_object_set_new(claims, "appid", json_string("app-v1"));
    tok = sign(claims);
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_string_equal(c.appid, "app-v1");
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);

    /* empty roles array */
    json_object_set_new(claims, "roles", json_array());
    tok = sign(claims);
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_int_equal(c.nroles, 0);
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);
    json_decref(claims);
}

static void test_tampered(void **state)
{
    (void)state;
    json_t *claims = good_claims();
    char *tok = sign(claims);
    struct atr_jwt_verify_opts o = opts();

    /* another payload with the original header and signature */
    json_object_set_new(claims, "roles", json_pack("[s]", "Vault.Admin"));
    char *tok2 = sign(claims);
    char *d1 = strchr(tok, '.');
    char *d2 = strchr(d1 + 1, '.');
    char *e1 = strchr(tok2, '.');
    char *e2 = strchr(e1 + 1, '.');
    struct atr_buf t;
    atr_buf_init(&t, 1 << 16);
    assert_int_equal(atr_buf_append(&t, tok, (size_t)(d1 - tok) + 1), ATR_OK);
    assert_int_equal(atr_buf_append(&t, e1 + 1, (size_t)(e2 - e1 - 1)), ATR_OK);
    assert_int_equal(atr_buf_append_str(&t, d2), ATR_OK);
    expect_reject(atr_buf_cstr(&t), &o, "signature is invalid");
    atr_buf_cleanup(&t);

    /* one signature character changed (not the last: keep it canonical) */
    size_t at = strlen(tok) - 10;
    char saved = tok[at];
    tok[at] = saved == 'A' ? 'B' : 'A';
    expect_reject(tok, &o, "signature is invalid");
    tok[at] = saved;
    /* signature cut short or removed */
    expect_reject_kid(tok, strlen(tok) - 4, pub, NULL, &o, "signature");
    expect_reject_kid(tok, (size_t)(d2 - tok) + 1, pub, NULL, &o, "signature");
    /* another key */
    expect_reject_kid(tok, strlen(tok), other, NULL, &o, "signature is invalid");

    atr_free(tok);
    atr_free(tok2);
    json_decref(claims);
}

/* The compact text of the standard claims (owned). */
static char *good_payload(void)
{
    json_t *c = good_claims();
    char *s = dump(c);
    json_decref(c);
    return s;
}

static void test_alg_none(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    char *payload = good_payload();
    /* the unsigned token "h.p." */
    char *tok =
        forge("{\"alg\":\"none\",\"kid\":\"k1\",\"typ\":\"JWT\"}", payload, NULL, ATR_SIG_RS256);
    expect_reject(tok, &o, "alg \"none\" is not allowed");
    atr_free(tok);
    /* "none" with a genuine RS256 signature is still refused */
    tok = forge("{\"alg\":\"none\",\"kid\":\"k1\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "alg \"none\"");
    atr_free(tok);
    /* capitalisation games */
    tok = forge("{\"alg\":\"None\",\"kid\":\"k1\"}", payload, NULL, ATR_SIG_RS256);
    expect_reject(tok, &o, "alg \"None\"");
    atr_free(tok);
    tok = forge("{\"alg\":\"rs256\",\"kid\":\"k1\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "alg \"rs256\"");
    atr_free(tok);
    /* no alg at all, alg not a string, alg not a plain name (not echoed) */
    tok = forge("{\"kid\":\"k1\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "malformed: header has no \"alg\"");
    atr_free(tok);
    tok = forge("{\"alg\":[\"RS256\"],\"kid\":\"k1\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "malformed: header \"alg\" must be a string");
    atr_free(tok);
    tok =
        forge("{\"alg\":\"RS256 eyJhbGciOi secret\",\"kid\":\"k1\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "JWT: alg is not allowed (only RS256)");
    atr_free(tok);
    atr_free(payload);
}

/* The classic key-confusion attack: HS256 with the RSA public key as HMAC secret. */
static void test_alg_hs256_confusion(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    struct atr_buf pem;
    atr_buf_init(&pem, 1 << 16);
    assert_int_equal(atr_rsa_key_format_pem_public(&pem, pub, NULL), ATR_OK);
    char *payload = good_payload();
    static const char hdr[] = "{\"alg\":\"HS256\",\"kid\":\"k1\",\"typ\":\"JWT\"}";
    char *h = b64url(hdr, sizeof(hdr) - 1);
    char *p = b64url(payload, strlen(payload));
    struct atr_buf t;
    atr_buf_init(&t, 1 << 16);
    assert_int_equal(atr_buf_printf(&t, "%s.%s", h, p), ATR_OK);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    assert_non_null(HMAC(EVP_sha256(), pem.ptr, (int)pem.len, t.ptr, t.len, mac, &maclen));
    char *m = b64url(mac, maclen);
    assert_int_equal(atr_buf_printf(&t, ".%s", m), ATR_OK);
    expect_reject(atr_buf_cstr(&t), &o, "alg \"HS256\" is not allowed");
    atr_buf_cleanup(&t);
    atr_buf_cleanup(&pem);
    atr_free(h);
    atr_free(p);
    atr_free(m);
    atr_free(payload);
}

/* Other RSA algorithms, correctly signed by the right key, are still refused. */
static void test_alg_other_rsa(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    char *payload = good_payload();
    static const struct {
        const char *hdr;
        atr_sig_alg alg;
        const char *msg;
    } cases[] = {
        {"{\"alg\":\"RS384\",\"kid\":\"k1\"}", ATR_SIG_RS384, "alg \"RS384\""},
        {"{\"alg\":\"RS512\",\"kid\":\"k1\"}", ATR_SIG_RS512, "alg \"RS512\""},
        {"{\"alg\":\"PS256\",\"kid\":\"k1\"}", ATR_SIG_PS256, "alg \"PS256\""},
        {"{\"alg\":\"ES256\",\"kid\":\"k1\"}", ATR_SIG_RS256, "alg \"ES256\""},
        /* header says RS256 but the signature is PS256: signature check fails */
        {"{\"alg\":\"RS256\",\"kid\":\"k1\"}", ATR_SIG_PS256, "signature is invalid"},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(cases); i++) {
        char *tok = forge(cases[i].hdr, payload, key, cases[i].alg);
        expect_reject(tok, &o, cases[i].msg);
        atr_free(tok);
    }
    /* sanity: the forge helper makes acceptable tokens with RS256 */
    char *tok = forge("{\"alg\":\"RS256\",\"kid\":\"k1\"}", payload, key, ATR_SIG_RS256);
    struct atr_jwt_claims c;
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);
    atr_free(payload);
}

static void test_kid(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    json_t *claims = good_claims();
    char *tok = sign(claims);
    expect_reject_kid(tok, strlen(tok), pub, "k2", &o, "kid: the header's \"kid\" does not match");
    expect_reject_kid(tok, strlen(tok), pub, "", &o, "kid");
    expect_reject_kid(tok, strlen(tok), pub, "k1 ", &o, "kid");
    atr_free(tok);

    char *payload = dump(claims);
    /* no kid, empty kid, non-string kid */
    tok = forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "kid: the header has no \"kid\"");
    atr_free(tok);
    tok = forge("{\"alg\":\"RS256\",\"kid\":\"\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "kid");
    atr_free(tok);
    tok = forge("{\"alg\":\"RS256\",\"kid\":7}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "header \"kid\" must be a string");
    atr_free(tok);
    /* crit is refused */
    tok = forge("{\"alg\":\"RS256\",\"kid\":\"k1\",\"crit\":[\"exp\"],\"exp\":1}", payload, key,
                ATR_SIG_RS256);
    expect_reject(tok, &o, "critical");
    atr_free(tok);
    /* duplicate header members (a parser differential classic) */
    tok = forge("{\"alg\":\"RS256\",\"kid\":\"k1\",\"alg\":\"none\"}", payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "malformed: header is not a JSON object");
    atr_free(tok);
    atr_free(payload);
    json_decref(claims);
}

static void test_issuer_audience(void **state)
{
    (void)state;
    json_t *claims = good_claims();
    char *tok = sign(claims);
    struct atr_jwt_verify_opts o = opts();
    o.issuer = "https://login.microsoftonline.com/other/v2.0";
    expect_reject(tok, &o, "issuer does not match");
    o.issuer = ISSUER "/"; /* prefix games */
    expect_reject(tok, &o, "issuer does not match");
    o = opts();
    o.audience = "api://atrest2";
    expect_reject(tok, &o, "audience does not match");
    o.audience = "api://atres";
    expect_reject(tok, &o, "audience does not match");
    atr_free(tok);

    /* missing iss / aud while required */
    o = opts();
    json_t *c2 = json_deep_copy(claims);
    json_object_del(c2, "iss");
    tok = sign(c2);
    expect_reject(tok, &o, "issuer does not match");
    atr_free(tok);
    json_object_del(c2, "aud");
    json_object_set_new(c2, "iss", json_string(ISSUER));
    tok = sign(c2);
    expect_reject(tok, &o, "audience does not match");
    atr_free(tok);
    /* an array audience is rejected, even with one matching element */
    json_object_set_new(c2, "aud", json_pack("[s]", AUD));
    tok = sign(c2);
    expect_reject(tok, &o, "audience: an array \"aud\" is not supported");
    o.audience = NULL;
    expect_reject(tok, &o, "audience: an array");
    atr_free(tok);
    json_decref(c2);
    json_decref(claims);
}

/* Signs the good claims with exp/nbf/iat replaced (-1 = remove). */
static char *sign_times(int64_t iat, int64_t nbf, int64_t exp)
{
    json_t *c = good_claims();
    const char *names[] = {"iat", "nbf", "exp"};
    int64_t vals[] = {iat, nbf, exp};
    for (size_t i = 0; i < 3; i++) {
        if (vals[i] < 0)
            json_object_del(c, names[i]);
        else
            json_object_set_new(c, names[i], json_integer((json_int_t)vals[i]));
    }
    char *tok = sign(c);
    json_decref(c);
    return tok;
}

static void expect_ok(const char *tok, const struct atr_jwt_verify_opts *o)
{
    struct atr_jwt_claims c;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, o, &err);
    if (rc != ATR_OK)
        fail_msg("want OK, got %s \"%s\"", atr_status_name(rc), err.msg);
    atr_jwt_claims_cleanup(&c);
}

static void test_times_and_skew(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    char *tok;

    /* exp: valid strictly before exp (+ skew) */
    tok = sign_times(-1, -1, NOW_S + 1);
    expect_ok(tok, &o);
    atr_free(tok);
    tok = sign_times(-1, -1, NOW_S);
    expect_reject(tok, &o, "expired");
    atr_free(tok);
    tok = sign_times(-1, -1, NOW_S - 3600);
    expect_reject(tok, &o, "expired");
    atr_free(tok);
    o.skew_s = 60;
    tok = sign_times(-1, -1, NOW_S - 59);
    expect_ok(tok, &o);
    atr_free(tok);
    tok = sign_times(-1, -1, NOW_S - 60);
    expect_reject(tok, &o, "expired");
    atr_free(tok);

    /* nbf: valid from nbf - skew */
    o.skew_s = 0;
    tok = sign_times(-1, NOW_S, NOW_S + 600);
    expect_ok(tok, &o);
    atr_free(tok);
    tok = sign_times(-1, NOW_S + 1, NOW_S + 600);
    expect_reject(tok, &o, "not yet valid");
    atr_free(tok);
    o.skew_s = 60;
    tok = sign_times(-1, NOW_S + 60, NOW_S + 600);
    expect_ok(tok, &o);
    atr_free(tok);
    tok = sign_times(-1, NOW_S + 61, NOW_S + 600);
    expect_reject(tok, &o, "not yet valid");
    atr_free(tok);

    /* iat in the future */
    tok = sign_times(NOW_S + 60, -1, NOW_S + 600);
    expect_ok(tok, &o);
    atr_free(tok);
    tok = sign_times(NOW_S + 61, -1, NOW_S + 600);
    expect_reject(tok, &o, "issued in the future");
    atr_free(tok);

    /* the clock moves: a valid token expires */
    o.skew_s = 0;
    tok = sign_times(NOW_S, NOW_S, NOW_S + 300);
    expect_ok(tok, &o);
    atr_test_clock_advance(&tclock, 299 * 1000);
    expect_ok(tok, &o);
    atr_test_clock_advance(&tclock, 1000);
    expect_reject(tok, &o, "expired");
    atr_test_clock_set(&tclock, NOW_S * 1000);
    atr_free(tok);

    /* require_exp */
    tok = sign_times(-1, -1, -1);
    expect_reject(tok, &o, "expired: the token has no \"exp\"");
    o.require_exp = 0;
    expect_ok(tok, &o);
    atr_free(tok);

    /* skew out of range is an argument error */
    tok = sign_times(-1, -1, NOW_S + 10);
    struct atr_jwt_claims c;
    o.skew_s = -1;
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_E_INVALID);
    o.skew_s = ATR_JWT_MAX_SKEW_S + 1;
    assert_int_equal(atr_jwt_verify_with_key(&c, tok, strlen(tok), pub, &o, NULL), ATR_E_INVALID);
    o.skew_s = ATR_JWT_MAX_SKEW_S;
    expect_ok(tok, &o);
    atr_free(tok);
}

static void test_bad_claim_types(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    static const struct {
        const char *name;
        const char *json;
        const char *msg;
    } cases[] = {
        {"exp", "\"1700003600\"", "claim \"exp\" must be a number"},
        {"exp", "true", "claim \"exp\" must be a number"},
        {"exp", "-0.5", "claim \"exp\" is out of range"},
        {"nbf", "1e300", "claim \"nbf\" is out of range"},
        {"nbf", "-1", "claim \"nbf\" is out of range"},
        {"iat", "99999999999999", "claim \"iat\" is out of range"},
        {"iss", "7", "claim \"iss\" must be a string"},
        {"tid", "null", "claim \"tid\" must be a string"},
        {"oid", "{}", "claim \"oid\" must be a string"},
        {"azp", "[]", "claim \"azp\" must be a string"},
        {"roles", "\"Vault.Read\"", "claim \"roles\" must be an array of strings"},
        {"roles", "[\"a\",1]", "claim \"roles\" must be an array of strings"},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(cases); i++) {
        json_t *c = good_claims();
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_object_set_new(c, cases[i].name, v);
        char *tok = sign(c);
        expect_reject(tok, &o, cases[i].msg);
        atr_free(tok);
        json_decref(c);
    }
    /* too long a string claim, too many roles, too many claims */
    json_t *c = good_claims();
    char *longs = atr_malloc(ATR_JWT_MAX_STR + 2);
    memset(longs, 'a', ATR_JWT_MAX_STR + 1);
    longs[ATR_JWT_MAX_STR + 1] = '\0';
    json_object_set_new(c, "sub", json_string(longs));
    char *tok = sign(c);
    expect_reject(tok, &o, "claim \"sub\" is too long");
    atr_free(tok);
    longs[ATR_JWT_MAX_STR] = '\0'; /* exactly the limit is fine */
    json_object_set_new(c, "sub", json_string(longs));
    tok = sign(c);
    expect_ok(tok, &o);
    atr_free(tok);
    atr_free(longs);
    json_decref(c);

    c = good_claims();
    json_t *roles = json_array();
    for (int i = 0; i < ATR_JWT_MAX_ROLES + 1; i++)
        json_array_append_new(roles, json_string("r"));
    json_object_set_new(c, "roles", roles);
    tok = sign(c);
    expect_reject(tok, &o, "claim \"roles\" has too many entries");
    atr_free(tok);
    json_array_remove(roles, 0);
    tok = sign(c);
    struct atr_jwt_claims got;
    assert_int_equal(atr_jwt_verify_with_key(&got, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_int_equal(got.nroles, ATR_JWT_MAX_ROLES);
    atr_jwt_claims_cleanup(&got);
    atr_free(tok);
    json_decref(c);

    c = good_claims();
    for (int i = 0; i < ATR_JWT_MAX_CLAIMS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x%d", i);
        json_object_set_new(c, name, json_true());
    }
    tok = sign(c);
    expect_reject(tok, &o, "too many claims");
    atr_free(tok);
    json_decref(c);
}

static void test_malformed(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    json_t *claims = good_claims();
    char *tok = sign(claims);
    size_t n = strlen(tok);
    char *d1 = strchr(tok, '.');
    char *d2 = strchr(d1 + 1, '.');
    struct atr_buf t;
    atr_buf_init(&t, 1 << 20);

    /* two parts, four parts, five, one, empty, only dots */
    expect_reject_kid(tok, (size_t)(d2 - tok), pub, NULL, &o, "fewer than three parts");
    assert_int_equal(atr_buf_printf(&t, "%s.", tok), ATR_OK);
    expect_reject(atr_buf_cstr(&t), &o, "more than three parts");
    assert_int_equal(atr_buf_printf(&t, "x.y"), ATR_OK);
    expect_reject(atr_buf_cstr(&t), &o, "more than three parts");
    atr_buf_reset(&t);
    expect_reject_kid(tok, (size_t)(d1 - tok), pub, NULL, &o, "fewer than three parts");
    expect_reject("", &o, "empty token");
    expect_reject_kid(NULL, 0, pub, NULL, &o, "empty token");
    expect_reject("..", &o, "header is empty");
    expect_reject("...", &o, "more than three parts");

    /* bad base64url in each part: padding, '+', '/', whitespace, non-canonical */
    static const char *const bad[] = {"=", "+", "/", " ", "\n", "%"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        /* in the header */
        atr_buf_reset(&t);
        assert_int_equal(atr_buf_append(&t, tok, 4), ATR_OK);
        assert_int_equal(atr_buf_append_str(&t, bad[i]), ATR_OK);
        assert_int_equal(atr_buf_append_str(&t, tok + 4), ATR_OK);
        expect_reject(atr_buf_cstr(&t), &o, "header is not base64url");
        /* in the signature */
        atr_buf_reset(&t);
        assert_int_equal(atr_buf_append(&t, tok, n - 4), ATR_OK);
        assert_int_equal(atr_buf_append_str(&t, bad[i]), ATR_OK);
        assert_int_equal(atr_buf_append_str(&t, tok + n - 4), ATR_OK);
        expect_reject(atr_buf_cstr(&t), &o, "signature is not base64url");
    }
    /* a NUL inside the token */
    atr_buf_reset(&t);
    assert_int_equal(atr_buf_append(&t, tok, n), ATR_OK);
    t.ptr[5] = '\0';
    expect_reject_kid((const char *)t.ptr, n, pub, NULL, &o, "header is not base64url");

    /* non-object and non-JSON headers */
    char *payload = dump(claims);
    static const char *const hdrs[] = {"[]",
                                       "\"RS256\"",
                                       "123",
                                       "null",
                                       "{",
                                       "{\"alg\":\"RS256\"",
                                       "{\"alg\":\"RS256\",\"kid\":\"k1\"} x",
                                       "\xff\xfe"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(hdrs); i++) {
        char *bt = forge(hdrs[i], payload, key, ATR_SIG_RS256);
        expect_reject(bt, &o, "malformed: header is not a JSON object");
        atr_free(bt);
    }
    /* payload: not base64url, not an object (both properly signed) */
    static const char *const payloads[] = {"[1,2]", "\"x\"", "{\"a\":1,\"a\":2}", "{bad"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(payloads); i++) {
        char *bt = forge(HDR_KID, payloads[i], key, ATR_SIG_RS256);
        expect_reject(bt, &o, "malformed: payload is not a JSON object");
        atr_free(bt);
    }
    atr_buf_reset(&t);
    assert_int_equal(atr_buf_append(&t, tok, (size_t)(d1 - tok) + 1), ATR_OK);
    assert_int_equal(atr_buf_append_str(&t, "e30="), ATR_OK); /* padded "{}" */
    assert_int_equal(atr_buf_append_str(&t, d2), ATR_OK);
    expect_reject(atr_buf_cstr(&t), &o, "signature"); /* signature first, then payload */

    /* huge tokens */
    char *huge = atr_malloc(ATR_JWT_MAX_LEN + 2);
    memset(huge, 'A', ATR_JWT_MAX_LEN + 1);
    huge[ATR_JWT_MAX_LEN + 1] = '\0';
    memcpy(huge, tok, n); /* a real token with a long tail */
    expect_reject(huge, &o, "malformed: longer than 16384 bytes");
    atr_free(huge);

    atr_buf_cleanup(&t);
    atr_free(payload);
    atr_free(tok);
    json_decref(claims);
}

static void test_decode_header(void **state)
{
    (void)state;
    json_t *claims = good_claims();
    char *tok = sign(claims);
    struct atr_jwt_header h;
    assert_int_equal(atr_jwt_decode_header(&h, tok, strlen(tok), NULL), ATR_OK);
    assert_string_equal(h.alg, "RS256");
    assert_string_equal(h.kid, "k1");
    assert_string_equal(h.typ, "JWT");
    assert_null(h.x5t);
    atr_jwt_header_cleanup(&h);
    atr_jwt_header_cleanup(&h);
    atr_jwt_header_cleanup(NULL);
    atr_free(tok);

    /* a header that does not verify still decodes (it only picks a key) */
    tok = forge("{\"alg\":\"HS256\",\"x5t\":\"abc\"}", "{}", NULL, ATR_SIG_RS256);
    assert_int_equal(atr_jwt_decode_header(&h, tok, strlen(tok), NULL), ATR_OK);
    assert_string_equal(h.alg, "HS256");
    assert_null(h.kid);
    assert_null(h.typ);
    assert_string_equal(h.x5t, "abc");
    atr_jwt_header_cleanup(&h);
    atr_free(tok);

    static const char *const bad_tokens[] = {"", "a.b", "a.b.c.d", "!!.e30.x"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_tokens); i++) {
        struct atr_err err;
        atr_err_clear(&err);
        memset(&h, 0x5a, sizeof(h));
        assert_int_equal(atr_jwt_decode_header(&h, bad_tokens[i], strlen(bad_tokens[i]), &err),
                         ATR_E_UNAUTHORIZED);
        assert_null(h.alg);
        assert_null(h.kid);
        assert_int_equal(strncmp(err.msg, "JWT: malformed", 14), 0);
    }
    static const char *const bad_hdrs[] = {"{\"kid\":\"k\"}", "{\"alg\":\"RS256\",\"kid\":1}",
                                           "{\"alg\":\"RS256\",\"typ\":{}}", "[]"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_hdrs); i++) {
        tok = forge(bad_hdrs[i], "{}", NULL, ATR_SIG_RS256);
        memset(&h, 0x5a, sizeof(h));
        assert_int_equal(atr_jwt_decode_header(&h, tok, strlen(tok), NULL), ATR_E_UNAUTHORIZED);
        assert_null(h.alg);
        assert_null(h.kid);
        assert_null(h.typ);
        assert_null(h.x5t);
        atr_free(tok);
    }
    json_decref(claims);
}

/* Client assertions as MSAL writes them: x5t, no kid. */
static void test_assertion(void **state)
{
    (void)state;
    struct atr_jwt_verify_opts o = opts();
    char *payload = good_payload();
    struct atr_jwt_claims c;
    char *tok = forge("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"q3Kk8y7ptCcYXHy1Yq4N1y0Yxkw\"}",
                      payload, key, ATR_SIG_RS256);
    expect_reject(tok, &o, "kid: the header has no \"kid\"");
    assert_int_equal(atr_jwt_verify_assertion(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_null(c.kid);
    assert_string_equal(c.iss, ISSUER);
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);
    /* with a kid it is accepted too; an empty kid, a bad alg, a bad signature are not */
    tok = forge(HDR_KID, payload, key, ATR_SIG_RS256);
    assert_int_equal(atr_jwt_verify_assertion(&c, tok, strlen(tok), pub, &o, NULL), ATR_OK);
    assert_string_equal(c.kid, "k1");
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);
    static const struct {
        const char *hdr;
        const struct atr_rsa_key *signer;
        const char *msg;
    } bad[] = {
        {"{\"alg\":\"RS256\",\"kid\":\"\"}", NULL, "kid"},
        {"{\"alg\":\"none\"}", NULL, "alg \"none\""},
        {"{\"alg\":\"RS256\"}", NULL, "signature"},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        tok = forge(bad[i].hdr, payload, bad[i].signer, ATR_SIG_RS256);
        struct atr_err err;
        atr_err_clear(&err);
        memset(&c, 0x5a, sizeof(c));
        assert_int_equal(atr_jwt_verify_assertion(&c, tok, strlen(tok), pub, &o, &err),
                         ATR_E_UNAUTHORIZED);
        assert_non_null(strstr(err.msg, bad[i].msg));
        assert_empty(&c);
        atr_free(tok);
    }
    /* signed by another key */
    tok = forge("{\"alg\":\"RS256\"}", payload, other, ATR_SIG_RS256);
    assert_int_equal(atr_jwt_verify_assertion(&c, tok, strlen(tok), pub, &o, NULL),
                     ATR_E_UNAUTHORIZED);
    atr_free(tok);
    atr_free(payload);
}

static void test_issuer_template(void **state)
{
    (void)state;
    static const char tmpl[] = "https://login.microsoftonline.com/{tenantid}/v2.0";
    struct atr_jwt_claims c;
    memset(&c, 0, sizeof(c));
    c.iss = atr_strdup(ISSUER);
    c.tid = atr_strdup(TENANT);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwt_check_issuer_template(&c, tmpl, &err), ATR_OK);
    /* v1 issuer shape */
    assert_int_equal(atr_jwt_check_issuer_template(&c, "https://sts.windows.net/{tenantid}/", NULL),
                     ATR_E_UNAUTHORIZED);
    /* tid of another tenant */
    atr_free(c.tid);
    c.tid = atr_strdup("99999999-2222-3333-4444-555555555555");
    assert_int_equal(atr_jwt_check_issuer_template(&c, tmpl, &err), ATR_E_UNAUTHORIZED);
    assert_non_null(strstr(err.msg, "issuer does not match"));
    /* missing or odd tid */
    static const char *const bad_tids[] = {"", "a/b", "a b", "x?y"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_tids); i++) {
        atr_free(c.tid);
        c.tid = atr_strdup(bad_tids[i]);
        atr_err_clear(&err);
        assert_int_equal(atr_jwt_check_issuer_template(&c, tmpl, &err), ATR_E_UNAUTHORIZED);
        assert_non_null(strstr(err.msg, "issuer: the token has no valid \"tid\""));
    }
    atr_free(c.tid);
    c.tid = NULL;
    assert_int_equal(atr_jwt_check_issuer_template(&c, tmpl, NULL), ATR_E_UNAUTHORIZED);
    /* a tid that makes a path of the issuer */
    c.tid = atr_strdup(TENANT);
    atr_free(c.iss);
    c.iss = atr_strdup("https://login.microsoftonline.com/" TENANT "/v2.0/x");
    assert_int_equal(atr_jwt_check_issuer_template(&c, tmpl, NULL), ATR_E_UNAUTHORIZED);
    atr_free(c.iss);
    c.iss = NULL;
    assert_int_equal(atr_jwt_check_issuer_template(&c, tmpl, NULL), ATR_E_UNAUTHORIZED);
    c.iss = atr_strdup(ISSUER);
    /* template errors */
    assert_int_equal(atr_jwt_check_issuer_template(&c, ISSUER, NULL), ATR_E_INVALID);
    assert_int_equal(atr_jwt_check_issuer_template(&c, "{tenantid}{tenantid}", NULL),
                     ATR_E_INVALID);
    assert_int_equal(atr_jwt_check_issuer_template(&c, NULL, NULL), ATR_E_INVALID);
    /* the template alone */
    assert_int_equal(atr_jwt_check_issuer_template(&c, "{tenantid}", NULL), ATR_E_UNAUTHORIZED);
    atr_free(c.iss);
    c.iss = atr_strdup(TENANT);
    assert_int_equal(atr_jwt_check_issuer_template(&c, "{tenantid}", NULL), ATR_OK);
    atr_jwt_claims_cleanup(&c);
}

static void test_sign_errors(void **state)
{
    (void)state;
    json_t *claims = good_claims();
    char *tok = (char *)"x";
    assert_int_equal(atr_jwt_sign_rs256(&tok, pub, "k1", claims, NULL), ATR_E_INVALID);
    assert_null(tok);
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "", claims, NULL), ATR_E_INVALID);
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, NULL, claims, NULL), ATR_E_INVALID);
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "\xff", claims, NULL), ATR_E_INVALID);
    json_t *arr = json_array();
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "k1", arr, NULL), ATR_E_INVALID);
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "k1", NULL, NULL), ATR_E_INVALID);
    json_decref(arr);
    /* claims that would make the token too long */
    char *big = atr_malloc(ATR_JWT_MAX_LEN);
    memset(big, 'b', ATR_JWT_MAX_LEN - 1);
    big[ATR_JWT_MAX_LEN - 1] = '\0';
    json_object_set_new(claims, "big", json_string(big));
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "k1", claims, &err), ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "exceed"));
    assert_null(tok);
    atr_free(big);
    /* a kid that needs JSON escaping round-trips */
    json_object_del(claims, "big");
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "a\"b\\c/d", claims, NULL), ATR_OK);
    struct atr_jwt_verify_opts o = opts();
    struct atr_jwt_claims c;
    assert_int_equal(atr_jwt_verify_with_kid(&c, tok, strlen(tok), pub, "a\"b\\c/d", &o, NULL),
                     ATR_OK);
    assert_string_equal(c.kid, "a\"b\\c/d");
    atr_jwt_claims_cleanup(&c);
    atr_free(tok);
    json_decref(claims);
}

/* Every allocation failure is reported as ATR_E_NOMEM and leaks nothing. */
static void test_alloc_failures(void **state)
{
    (void)state;
    json_t *claims = good_claims();
    char *good = sign(claims);
    struct atr_jwt_verify_opts o = opts();
    int ok_sign = 0, ok_verify = 0;
    for (unsigned long nth = 1; nth < 200 && !(ok_sign && ok_verify); nth++) {
        char *tok = NULL;
        atr_alloc_fail_after(nth);
        atr_status rc = atr_jwt_sign_rs256(&tok, key, "k1", claims, NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK)
            ok_sign = 1;
        else
            assert_int_equal(rc, ATR_E_NOMEM);
        atr_free(tok);

        struct atr_jwt_claims c;
        atr_alloc_fail_after(nth);
        rc = atr_jwt_verify_with_key(&c, good, strlen(good), pub, &o, NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            ok_verify = 1;
            atr_jwt_claims_cleanup(&c);
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            assert_empty(&c);
        }
    }
    assert_true(ok_sign && ok_verify);
    atr_free(good);
    json_decref(claims);
}

/*
 * Known answer from an independent implementation: the fuzz seed
 * tests/fuzz/corpus/jwt/valid.jwt was made with Python's "cryptography"
 * package and this key (the one embedded in tests/fuzz/jwt_fuzz.c). We must
 * verify it, and re-signing its payload must give the same bytes (RS256 is
 * deterministic; jansson keeps the member order).
 */
static const char kat_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDDi0LgR0HCyWsV\n"
    "Q2nSTOqMFiH+cda7B3NMVYrjkQmaq3LUcz/tj4TLN+6lcV9yCNT+uZDqCsVHXSoC\n"
    "r/KMJz/TcgOKoCUb06QoWrjbsA6UKqxAhNoMIM/uRbzN2VVYda5l8a/3K5qEHOr/\n"
    "8tmafyeRVmsNdN3oJstPR6lOUcpyhYzVCfXvz2/IH29yYT8dJp08nUYm73jZlPcq\n"
    "5P6WvOTcSWLXq8wGu3Mhas+Eg5WQg1hsYNT0c2k5l1KAZ1eqVSnZDiXGQWE7OK83\n"
    "++IzqKcXRMOup6V5viMJljaG+BUfNZqGIU3/xJeWgzBirpseL0KRQWwRDkEQqMdo\n"
    "xqNkzEHXAgMBAAECggEACb6MVW8nme8ol2rVwKWVlefaciVhHSPYvTKRam1arFWj\n"
    "3MNmKaPvwE1oETWDm0P7vTp+ZrNPs70y7+cDBV9FVnea2+hxa6AR0PL9vZuEi8yj\n"
    "6yPTq9a3azkYGK1JC/tH9rY4XcRTUwcP4jOgtWAQbDUsE4PB38+Nwm8gmDxfhB0I\n"
    "0niQvxE995FL/SLzTu6BJAiY9ud+MeSteuvSTA3QpI0Rndwlew3pYiIJm0aI6yWk\n"
    "HlF3YXA6W45UL+SRZxJwsg7xa/4y08evMqkPiDhIFkMfMQ1DNjEnRjDil70cNkS2\n"
    "CctOBk5Z3lXe/rTcsvlO9amPxYKojBtP0V+eLT/+jQKBgQD7fMP1+LEC/M0QA1Bu\n"
    "WCNk7aAFRL9u84zwpczJDb4ey8iq4pJEElMZfVyIBjDaFchrIF1KHOclzP7uZSFQ\n"
    "5PjtR2wADE0kX6B5eUETeyk9afK/PlcY2WuU80PFd58hh7LQHIIwzSTdYmQPi7ma\n"
    "YmTis/4nIWg3Xn3GVFx3iWHPTQKBgQDHDYOHq2XH6IbIix67zBGtPxWHDZrBWNA/\n"
    "7k5Rh3iPI3S5qVFXoFHK5Ny4Pf7KWH8SCaOlXtlY4UymWkOPakyx5tsO4aku0Kib\n"
    "kb3CELYNBQ8DSdsuzNgQe9I3hulU8gPe3wuGXy8O2OmGTlbPwRtx/LUed+rbgUqd\n"
    "APd154ALswKBgQDCbCBrRspCTwKRwJ4r0IP8gSDXMeD1e+CYIvYA8VjsIguO4P7H\n"
    "FYudByfEGVUnJPP+rdSxeUrSFHt5/kEVcw9nEXJTTy9MUYmUn8NJtkuZqRD7/MwE\n"
    "8AGV88OPI/2oRGpfLcsQw2gepvRIeHMTAcKQ6SoxQkh5ldmSvKGH4HP3eQKBgH4x\n"
    "7hp8KnnzzEemE6UB+o74eKB3mo5LzTNK1PJRTbiJxP3T/5LrPA/CysAv5bHJKz53\n"
    "R/2WxXrY02x/u2dYACmlb2ne3RCmDs8aNdCsIY7djygJkeD4016X8a1sZc+J47RP\n"
    "ehIFlGL4WAzi65ypE8pPaVBYvFfPf0tMipaAXyiLAoGAfXEhocSsE0PSYg0SaVlP\n"
    "92FFSE5gCo9U9P5cTI0Heo4Ob8znBwqb8K1nmdse73jtkl+eqv+b4dQzAySjw7sT\n"
    "5cxby3U0b98iMuhh19U3wgAm8P6elRixpVDldwxJH2j/IVL0VtCbtyKmhZ2Fm8E0\n"
    "xrmxXaxHstHP4CsGnhE3Aus=\n"
    "-----END PRIVATE KEY-----\n";

static void test_known_answer(void **state)
{
    (void)state;
    const char *path = atr_test_source_path("tests/fuzz/corpus/jwt/valid.jwt");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char tok[4096];
    size_t n = fread(tok, 1, sizeof(tok) - 1, f);
    fclose(f);
    tok[n] = '\0';
    struct atr_rsa_key *k = NULL;
    assert_int_equal(atr_rsa_key_parse_pem(&k, kat_key_pem, sizeof(kat_key_pem) - 1, NULL), ATR_OK);
    struct atr_test_clock tc;
    assert_int_equal(atr_test_clock_init(&tc, (int64_t)1767225600 * 1000), ATR_OK);
    struct atr_jwt_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.clock = &tc.base;
    o.issuer = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0";
    o.audience = "api://atrest";
    o.require_exp = 1;
    struct atr_jwt_claims c;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwt_verify_with_kid(&c, tok, n, k, "fuzz-kid", &o, &err), ATR_OK);
    assert_string_equal(c.appid, "22222222-2222-2222-2222-222222222222");
    assert_int_equal(c.nroles, 2);
    atr_jwt_claims_cleanup(&c);

    /* re-sign the same payload */
    const char *d1 = strchr(tok, '.');
    const char *d2 = strchr(d1 + 1, '.');
    struct atr_buf raw;
    atr_buf_init(&raw, 4096);
    assert_int_equal(atr_b64url_decode(&raw, d1 + 1, (size_t)(d2 - d1 - 1), NULL), ATR_OK);
    json_t *claims = json_loadb((const char *)raw.ptr, raw.len, 0, NULL);
    assert_non_null(claims);
    char *again = NULL;
    assert_int_equal(atr_jwt_sign_rs256(&again, k, "fuzz-kid", claims, NULL), ATR_OK);
    assert_string_equal(again, tok);
    atr_free(again);
    json_decref(claims);
    atr_buf_cleanup(&raw);
    atr_test_clock_cleanup(&tc);
    atr_rsa_key_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_minimal_and_azp),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_hs256_confusion),
        cmocka_unit_test(test_alg_other_rsa),
        cmocka_unit_test(test_kid),
        cmocka_unit_test(test_issuer_audience),
        cmocka_unit_test(test_times_and_skew),
        cmocka_unit_test(test_bad_claim_types),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_decode_header),
        cmocka_unit_test(test_assertion),
        cmocka_unit_test(test_issuer_template),
        cmocka_unit_test(test_sign_errors),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_known_answer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
