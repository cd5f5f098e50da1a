/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_jwt_decode_header, atr_jwt_verify_with_kid,
 * atr_jwt_verify_with_key, atr_jwt_verify_assertion, atr_jwt_sign_rs256,
 * atr_jwt_claims_cleanup (src/identity/jwt.c), and through them
 * atr_b64url_decode, atr_json_parse and atr_sig_verify / atr_sig_sign
 * (src/crypto/sig.c): the path of every bearer token our vault and service
 * receive.
 *
 * Two modes, chosen by the first byte:
 *  - anything but '{': the input is a token. It is header-decoded and
 *    verified against a fixed 2048-bit key (kid "fuzz-kid", embedded below)
 *    with a fixed test clock, issuer and audience;
 *  - '{': the input is a JSON claims object. It is signed with the fixed key
 *    and verified again, so the claims parser (which only ever sees
 *    signature-checked payloads) is fuzzed too.
 *
 * Properties (any violation aborts):
 *  - no crash; only the documented codes (ATR_OK, ATR_E_UNAUTHORIZED,
 *    ATR_E_NOMEM; signing also ATR_E_INVALID for claims that do not fit);
 *  - on failure the claims are empty and the message starts with "JWT: "
 *    and never contains the token's header text;
 *  - a verified token has alg RS256 and kid "fuzz-kid" in its header;
 *  - signed claims that verify come back equal (strings, exp, roles).
 * Deterministic: fixed clock, and RS256 (PKCS#1 v1.5) signing is
 * deterministic. Everything allocated is freed.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/secmem.h"
#include "crypto/rsa.h"
#include "identity/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2026-01-01T00:00:00Z: the seed tokens are valid at this instant. */
#define FUZZ_NOW_S ((int64_t)1767225600)
#define FUZZ_KID   "fuzz-kid"
#define FUZZ_ISS   "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0"
#define FUZZ_AUD   "api://atrest"

/* A fixed test key, generated once with openssl genpkey; never used elsewhere. */
static const char fuzz_key_pem[] =
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

static struct atr_rsa_key *key;
static struct atr_test_clock tclock;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (atr_secmem_init((size_t)1 << 20, 1, NULL) != ATR_OK)
        abort();
    if (atr_rsa_key_parse_pem(&key, fuzz_key_pem, sizeof(fuzz_key_pem) - 1, NULL) != ATR_OK)
        abort();
    if (atr_test_clock_init(&tclock, FUZZ_NOW_S * 1000) != ATR_OK)
        abort();
    return 0;
}

static int claims_empty(const struct atr_jwt_claims *c)
{
    return c->kid == NULL && c->iss == NULL && c->sub == NULL && c->aud == NULL && c->tid == NULL &&
           c->oid == NULL && c->appid == NULL && c->jti == NULL && c->roles == NULL &&
           c->nroles == 0 && c->iat == 0 && c->nbf == 0 && c->exp == 0;
}

static void check_failure(atr_status rc, const struct atr_jwt_claims *c, const struct atr_err *err,
                          const char *tok, size_t len)
{
    if (rc != ATR_E_UNAUTHORIZED && rc != ATR_E_NOMEM)
        abort();
    if (!claims_empty(c) || err->code != rc || strncmp(err->msg, "JWT: ", 5) != 0)
        abort();
    /* the message never quotes the token: look for its first part */
    size_t hlen = 0;
    while (hlen < len && tok[hlen] != '.' && tok[hlen] != '\0')
        hlen++;
    if (hlen >= 12) {
        char part[13];
        memcpy(part, tok, 12);
        part[12] = '\0';
        if (strstr(err->msg, part) != NULL)
            abort();
    }
}

static void fuzz_token(const char *tok, size_t len)
{
    struct atr_err err;
    struct atr_jwt_header h;
    atr_err_clear(&err);
    atr_status hrc = atr_jwt_decode_header(&h, tok, len, &err);
    if (hrc == ATR_OK) {
        if (h.alg == NULL)
            abort();
    } else if ((hrc != ATR_E_UNAUTHORIZED && hrc != ATR_E_NOMEM) || h.alg != NULL ||
               h.kid != NULL) {
        abort();
    }

    struct atr_jwt_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.clock = &tclock.base;
    o.issuer = FUZZ_ISS;
    o.audience = FUZZ_AUD;
    o.skew_s = 300;
    o.require_exp = 1;
    struct atr_jwt_claims c;
    atr_err_clear(&err);
    atr_status rc = atr_jwt_verify_with_kid(&c, tok, len, key, FUZZ_KID, &o, &err);
    if (rc == ATR_OK) {
        if (hrc != ATR_OK || strcmp(h.alg, "RS256") != 0 || h.kid == NULL ||
            strcmp(h.kid, FUZZ_KID) != 0 || c.kid == NULL || strcmp(c.kid, FUZZ_KID) != 0 ||
            c.iss == NULL || strcmp(c.iss, FUZZ_ISS) != 0)
            abort();
        atr_jwt_claims_cleanup(&c);
        if (!claims_empty(&c))
            abort();
    } else {
        check_failure(rc, &c, &err, tok, len);
    }
    /* the same token without the kid expectation: never stricter */
    struct atr_jwt_claims c2;
    atr_status rc2 = atr_jwt_verify_with_key(&c2, tok, len, key, &o, NULL);
    if (rc == ATR_OK && rc2 != ATR_OK)
        abort();
    atr_jwt_claims_cleanup(&c2);
    /* and as a client assertion (kid optional): never stricter either */
    struct atr_jwt_claims c3;
    atr_status rc3 = atr_jwt_verify_assertion(&c3, tok, len, key, &o, NULL);
    if (rc2 == ATR_OK && rc3 != ATR_OK)
        abort();
    atr_jwt_claims_cleanup(&c3);
    atr_jwt_header_cleanup(&h);
}

/* A verified string claim equals the signed one (non-strings never verify). */
static int same_string(const char *got, const json_t *v)
{
    if (v == NULL)
        return got == NULL;
    return json_is_string(v) && got != NULL && strcmp(got, json_string_value(v)) == 0;
}

static void fuzz_claims(const uint8_t *data, size_t size)
{
    json_t *claims = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims)) {
        json_decref(claims);
        return;
    }
    char *tok = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwt_sign_rs256(&tok, key, FUZZ_KID, claims, &err);
    if (rc != ATR_OK) {
        if ((rc != ATR_E_INVALID && rc != ATR_E_NOMEM) || tok != NULL)
            abort();
        json_decref(claims);
        return;
    }
    struct atr_jwt_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.clock = &tclock.base;
    o.skew_s = 60;
    struct atr_jwt_claims c;
    atr_err_clear(&err);
    rc = atr_jwt_verify_with_kid(&c, tok, strlen(tok), key, FUZZ_KID, &o, &err);
    if (rc == ATR_OK) {
        if (!same_string(c.iss, json_object_get(claims, "iss")) ||
            !same_string(c.sub, json_object_get(claims, "sub")) ||
            !same_string(c.aud, json_object_get(claims, "aud")) ||
            !same_string(c.tid, json_object_get(claims, "tid")) ||
            !same_string(c.oid, json_object_get(claims, "oid")) ||
            !same_string(c.jti, json_object_get(claims, "jti")))
            abort();
        const json_t *exp = json_object_get(claims, "exp");
        if (exp != NULL && (!json_is_integer(exp) || json_integer_value(exp) != c.exp))
            abort();
        const json_t *roles = json_object_get(claims, "roles");
        if (json_array_size(roles) != c.nroles)
            abort();
        for (size_t i = 0; i < c.nroles; i++) {
            if (strcmp(c.roles[i], json_string_value(json_array_get(roles, i))) != 0)
                abort();
        }
        atr_jwt_claims_cleanup(&c);
    } else {
        check_failure(rc, &c, &err, tok, strlen(tok));
        /* a token we signed ourselves never fails on structure or signature */
        if (rc == ATR_E_UNAUTHORIZED &&
            (strstr(err.msg, "signature") != NULL || strstr(err.msg, "alg") != NULL ||
             strstr(err.msg, "kid") != NULL || strstr(err.msg, "base64url") != NULL))
            abort();
    }
    atr_free(tok);
    json_decref(claims);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (key == NULL)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > 2 * ATR_JWT_MAX_LEN)
        return 0;
    if (size > 0 && data[0] == '{')
        fuzz_claims(data, size);
    else
        fuzz_token((const char *)data, size);
    return 0;
}
