/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/secmem.h"
#include "crypto/jwk.h"
#include "crypto/rsa.h"

static struct atr_rsa_key *key; /* 2048-bit, generated once */
static json_t *priv_jwk;        /* its private JWK */

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    if (atr_rsa_key_generate(&key, 2048, NULL) != ATR_OK)
        return -1;
    if (atr_jwk_export(&priv_jwk, key, ATR_JWK_PRIVATE, NULL) != ATR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atr_rsa_key_free(key);
    json_decref(priv_jwk);
    return 0;
}

static void same_modulus(const struct atr_rsa_key *a, const struct atr_rsa_key *b)
{
    struct atr_buf n1, n2;
    atr_buf_init(&n1, 4096);
    atr_buf_init(&n2, 4096);
    assert_int_equal(atr_rsa_key_get_component(&n1, a, ATR_RSA_PART_N, NULL), ATR_OK);
    assert_int_equal(atr_rsa_key_get_component(&n2, b, ATR_RSA_PART_N, NULL), ATR_OK);
    assert_int_equal(n1.len, n2.len);
    assert_memory_equal(n1.ptr, n2.ptr, n1.len);
    atr_buf_cleanup(&n1);
    atr_buf_cleanup(&n2);
}

static void test_export_public(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(atr_jwk_export(&j, key, ATR_JWK_PUBLIC, NULL), ATR_OK);
    assert_string_equal(json_string_value(json_object_get(j, "kty")), "RSA");
    assert_string_equal(json_string_value(json_object_get(j, "e")), "AQAB");
    assert_int_equal(json_object_size(j), 3);
    assert_null(json_object_get(j, "d"));
    /* n: 256 bytes, no leading zero byte, unpadded base64url */
    const char *n = json_string_value(json_object_get(j, "n"));
    assert_int_equal(strlen(n), atr_b64url_encoded_len(256));
    assert_null(strchr(n, '='));
    struct atr_buf raw;
    atr_buf_init(&raw, 1024);
    assert_int_equal(atr_b64url_decode(&raw, n, strlen(n), NULL), ATR_OK);
    assert_int_equal(raw.len, 256);
    assert_int_not_equal(raw.ptr[0], 0);
    atr_buf_cleanup(&raw);

    struct atr_rsa_key *pub = NULL;
    assert_int_equal(atr_jwk_import(&pub, j, NULL), ATR_OK);
    assert_false(atr_rsa_key_has_private(pub));
    same_modulus(pub, key);

    /* exporting the private part of a public key is refused */
    json_t *none = NULL;
    assert_int_equal(atr_jwk_export(&none, pub, ATR_JWK_PRIVATE, NULL), ATR_E_INVALID);
    assert_null(none);
    assert_int_equal(atr_jwk_export(&none, pub, (atr_jwk_content)0, NULL), ATR_E_INVALID);
    atr_rsa_key_free(pub);
    json_decref(j);
}

static void test_private_round_trip(void **state)
{
    (void)state;
    static const char *const members[] = {"kty", "n", "e", "d", "p", "q", "dp", "dq", "qi"};
    assert_int_equal(json_object_size(priv_jwk), 9);
    for (size_t i = 0; i < ATR_ARRAY_LEN(members); i++)
        assert_true(json_is_string(json_object_get(priv_jwk, members[i])));
    struct atr_rsa_key *k = NULL;
    assert_int_equal(atr_jwk_import(&k, priv_jwk, NULL), ATR_OK);
    assert_true(atr_rsa_key_has_private(k));
    same_modulus(k, key);
    /* it decrypts what the original key wrapped */
    uint8_t tk[32] = {1, 2, 3};
    struct atr_buf w;
    atr_buf_init(&w, 1024);
    assert_int_equal(atr_rsa_wrap(&w, key, ATR_RSA_OAEP_256, atr_span_of(tk, 32), NULL), ATR_OK);
    struct atr_secret out = ATR_SECRET_INIT;
    assert_int_equal(atr_rsa_unwrap(&out, k, ATR_RSA_OAEP_256, atr_buf_span(&w), NULL), ATR_OK);
    assert_memory_equal(atr_secret_cdata(&out), tk, 32);
    atr_secret_cleanup(&out);
    atr_buf_cleanup(&w);

    /* through text as well */
    char *text = json_dumps(priv_jwk, JSON_COMPACT);
    assert_non_null(text);
    struct atr_rsa_key *k2 = NULL;
    assert_int_equal(atr_jwk_parse(&k2, text, strlen(text), NULL), ATR_OK);
    assert_true(atr_rsa_key_has_private(k2));
    same_modulus(k2, key);
    memset(text, 0, strlen(text));
    free(text);
    atr_rsa_key_free(k);
    atr_rsa_key_free(k2);
}

static void test_azure_shapes(void **state)
{
    (void)state;
    /* an Azure Key Vault key bundle's "key": RSA-HSM, kid, key_ops */
    json_t *j = NULL;
    assert_int_equal(atr_jwk_export(&j, key, ATR_JWK_PUBLIC, NULL), ATR_OK);
    json_object_set_new(j, "kty", json_string("RSA-HSM"));
    json_object_set_new(j, "kid", json_string("https://v.vault.azure.net/keys/k/0123abcd"));
    json_object_set_new(j, "key_ops",
                        json_pack("[ssss]", "encrypt", "decrypt", "wrapKey", "unwrapKey"));
    json_object_set_new(j, "alg", json_string("RSA-OAEP-256"));
    json_object_set_new(j, "use", json_string("enc"));
    json_object_set_new(j, "ext", json_true());
    json_object_set_new(j, "x-unknown", json_integer(5)); /* ignored */
    struct atr_rsa_key *k = NULL;
    assert_int_equal(atr_jwk_import(&k, j, NULL), ATR_OK);
    atr_rsa_key_free(k);

    /* a leading zero byte on n (some producers keep a sign byte) is tolerated */
    struct atr_buf n;
    atr_buf_init(&n, 1024);
    assert_int_equal(atr_buf_append(&n, "", 1), ATR_OK);
    assert_int_equal(atr_rsa_key_get_component(&n, key, ATR_RSA_PART_N, NULL), ATR_OK);
    char *nz = NULL;
    assert_int_equal(atr_b64url_encode_str(&nz, atr_buf_span(&n)), ATR_OK);
    json_object_set_new(j, "n", json_string(nz));
    assert_int_equal(atr_jwk_import(&k, j, NULL), ATR_OK);
    same_modulus(k, key);
    atr_rsa_key_free(k);
    atr_free(nz);
    atr_buf_cleanup(&n);
    json_decref(j);
}

/* Imports @p j (consumed) and checks the status; the message must not leak d. */
static void expect_import(json_t *j, atr_status want, const char *msg_part)
{
    struct atr_rsa_key *k = (struct atr_rsa_key *)&k;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwk_import(&k, j, &err);
    if (rc != want)
        fail_msg("import gave %s (%s), wanted %s", atr_status_name(rc), atr_err_msg(&err),
                 atr_status_name(want));
    assert_null(k);
    assert_int_equal(err.code, want);
    assert_true(strncmp(err.msg, "JWK", 3) == 0);
    if (msg_part != NULL && strstr(err.msg, msg_part) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", err.msg, msg_part);
    const char *d = json_string_value(json_object_get(priv_jwk, "d"));
    assert_null(strstr(err.msg, "AQAB"));
    char head[12];
    memcpy(head, d, 11);
    head[11] = '\0';
    assert_null(strstr(err.msg, head));
    json_decref(j);
}

static json_t *priv_with(const char *member, json_t *value)
{
    json_t *j = json_deep_copy(priv_jwk);
    if (value == NULL)
        json_object_del(j, member);
    else
        json_object_set_new(j, member, value);
    return j;
}

static void test_import_rejects(void **state)
{
    (void)state;
    const char *dp = json_string_value(json_object_get(priv_jwk, "dp"));
    const char *dq = json_string_value(json_object_get(priv_jwk, "dq"));
    const char *n = json_string_value(json_object_get(priv_jwk, "n"));

    expect_import(json_array(), ATR_E_PARSE, "object");
    expect_import(json_string("RSA"), ATR_E_PARSE, NULL);
    /* kty */
    expect_import(priv_with("kty", NULL), ATR_E_INVALID, "kty");
    expect_import(priv_with("kty", json_string("EC")), ATR_E_INVALID, "kty");
    expect_import(priv_with("kty", json_string("oct")), ATR_E_INVALID, "kty");
    expect_import(priv_with("kty", json_string("rsa")), ATR_E_INVALID, "kty");
    expect_import(priv_with("kty", json_integer(1)), ATR_E_PARSE, "kty");
    expect_import(priv_with("kty", json_stringn("RSA\0x", 5)), ATR_E_INVALID, "kty");
    /* required members */
    expect_import(priv_with("n", NULL), ATR_E_INVALID, "\"n\"");
    expect_import(priv_with("e", NULL), ATR_E_INVALID, "\"e\"");
    expect_import(priv_with("n", json_null()), ATR_E_PARSE, "\"n\"");
    expect_import(priv_with("e", json_integer(65537)), ATR_E_PARSE, "\"e\"");
    expect_import(priv_with("n", json_string("")), ATR_E_PARSE, "\"n\"");
    /* bad base64url: standard alphabet, padding, whitespace, bad length, trailing bits */
    expect_import(priv_with("e", json_string("AQAB=")), ATR_E_PARSE, "base64url");
    expect_import(priv_with("e", json_string("AQ+B")), ATR_E_PARSE, "base64url");
    expect_import(priv_with("e", json_string("AQ B")), ATR_E_PARSE, "base64url");
    expect_import(priv_with("e", json_string("AQABA")), ATR_E_PARSE, "base64url");
    expect_import(priv_with("e", json_string("AQAC")), ATR_E_INVALID, NULL); /* even e */
    expect_import(priv_with("e", json_string("AQ")), ATR_E_INVALID, NULL);   /* e = 1 */
    expect_import(priv_with("e", json_string("Aw")), ATR_E_INVALID, NULL);   /* e = 3 */
    expect_import(priv_with("d", json_string("a_")), ATR_E_PARSE, "\"d\"");
    /* private members: all or none */
    expect_import(priv_with("qi", NULL), ATR_E_INVALID, "qi");
    expect_import(priv_with("p", NULL), ATR_E_INVALID, "\"p\"");
    json_t *only_d = json_deep_copy(priv_jwk);
    json_object_del(only_d, "p");
    json_object_del(only_d, "q");
    json_object_del(only_d, "dp");
    json_object_del(only_d, "dq");
    json_object_del(only_d, "qi");
    expect_import(only_d, ATR_E_INVALID, "incomplete");
    /* inconsistent private parts */
    expect_import(priv_with("dp", json_string(dq)), ATR_E_INVALID, "not valid");
    json_t *swapped = json_deep_copy(priv_jwk);
    json_object_set_new(swapped, "dq", json_string(dp));
    expect_import(swapped, ATR_E_INVALID, "not valid");
    char *d2 = strdup(json_string_value(json_object_get(priv_jwk, "d")));
    d2[10] = d2[10] == 'A' ? 'B' : 'A';
    expect_import(priv_with("d", json_string(d2)), ATR_E_INVALID, "not valid");
    free(d2);
    /* another key type's members, multi-prime, HSM blobs */
    expect_import(priv_with("crv", json_string("P-256")), ATR_E_INVALID, "crv");
    expect_import(priv_with("k", json_string("AAAA")), ATR_E_INVALID, "\"k\"");
    expect_import(priv_with("oth", json_array()), ATR_E_UNSUPPORTED, "multi-prime");
    json_t *pub = NULL;
    assert_int_equal(atr_jwk_export(&pub, key, ATR_JWK_PUBLIC, NULL), ATR_OK);
    json_object_set_new(pub, "key_hsm", json_string("AAAA"));
    expect_import(pub, ATR_E_UNSUPPORTED, "key_hsm");
    /* registered members of the wrong type */
    expect_import(priv_with("kid", json_integer(1)), ATR_E_PARSE, "kid");
    expect_import(priv_with("key_ops", json_string("wrapKey")), ATR_E_PARSE, "key_ops");
    expect_import(priv_with("key_ops", json_pack("[si]", "wrapKey", 1)), ATR_E_PARSE, "key_ops");
    expect_import(priv_with("ext", json_string("true")), ATR_E_PARSE, "ext");
    /* a small modulus: the public half of a 2048-bit n cut to 512 bits */
    char small[90];
    memcpy(small, n, 88);
    small[88] = '\0';
    json_t *sm = json_pack("{ssssss}", "kty", "RSA", "n", small, "e", "AQAB");
    expect_import(sm, ATR_E_INVALID, "size");
    /* an over-long member */
    size_t big = 30000;
    char *huge = malloc(big + 1);
    memset(huge, 'A', big);
    huge[big] = '\0';
    expect_import(priv_with("n", json_string(huge)), ATR_E_INVALID, "too long");
    free(huge);
}

static void expect_parse(const char *text, atr_status want)
{
    struct atr_rsa_key *k = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwk_parse(&k, text, text == NULL ? 3 : strlen(text), &err);
    if (rc != want)
        fail_msg("parse of %.40s gave %s (%s), wanted %s", text ? text : "(null)",
                 atr_status_name(rc), atr_err_msg(&err), atr_status_name(want));
    assert_null(k);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    expect_parse("", ATR_E_PARSE);
    expect_parse("{", ATR_E_PARSE);
    expect_parse("null", ATR_E_PARSE);
    expect_parse("[]", ATR_E_PARSE);
    expect_parse("{\"kty\":\"RSA\"} trailing", ATR_E_PARSE);
    expect_parse("{\"kty\":\"RSA\",\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", ATR_E_PARSE);
    expect_parse("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}", ATR_E_INVALID);
    expect_parse("{\"kty\":\"RSA\",\"n\":\"\\u0000\",\"e\":\"AQAB\"}", ATR_E_PARSE);
    expect_parse(NULL, ATR_E_INVALID);
    /* the error for bad JSON quotes no input, only the position */
    struct atr_rsa_key *k = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    const char *secretish = "{\"d\": SECRETVALUE}";
    assert_int_equal(atr_jwk_parse(&k, secretish, strlen(secretish), &err), ATR_E_PARSE);
    assert_null(strstr(err.msg, "SECRET"));
    /* size cap */
    size_t n = ATR_JWK_MAX_TEXT + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    assert_int_equal(atr_jwk_parse(&k, big, n, &err), ATR_E_TOO_LARGE);
    free(big);
}

static void test_corpus_seeds_parse(void **state)
{
    (void)state;
    /* the fuzz seeds: two valid keys and malformed ones, none may crash */
    static const char *const seeds[] = {"public-2048.json", "private-1024.json",
                                        "inconsistent-private.json", "bad-base64url.json",
                                        "wrong-kty.json"};
    static const atr_status want[] = {ATR_OK, ATR_OK, ATR_E_INVALID, ATR_E_PARSE, ATR_E_INVALID};
    for (size_t i = 0; i < ATR_ARRAY_LEN(seeds); i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "tests/fuzz/corpus/jwk/%s", seeds[i]);
        FILE *f = fopen(atr_test_source_path(rel), "rb");
        if (f == NULL)
            fail_msg("cannot open %s", atr_test_source_path(rel));
        char buf[16384];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        struct atr_rsa_key *k = NULL;
        struct atr_err err;
        atr_err_clear(&err);
        atr_status rc = atr_jwk_parse(&k, buf, len, &err);
        if (rc != want[i])
            fail_msg("%s: %s (%s)", seeds[i], atr_status_name(rc), atr_err_msg(&err));
        atr_rsa_key_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_public), cmocka_unit_test(test_private_round_trip),
        cmocka_unit_test(test_azure_shapes),  cmocka_unit_test(test_import_rejects),
        cmocka_unit_test(test_parse_rejects), cmocka_unit_test(test_corpus_seeds_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
