/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kms/akv: the pure parts of the Azure Key Vault client, against answers
 * shaped exactly like the real service's and Entra ID's (key URIs,
 * challenges, token answers and errors, vault errors, wrap/unwrap answers,
 * version pages, Retry-After). The network parts run end to end in cli.byok.
 */
#include "lib/testutil.h"

#include <string.h>

#include "base/alloc.h"
#include "kms/akv.h"

static struct atr_span S(const char *s) {
    return atr_span_str(s);
}

static struct atr_akv_key_uri
key_of(const char *uri)
{
    struct atr_akv_key_uri k;
    assert_int_equal(atr_akv_uri_parse(&k, uri, NULL), ATR_OK);
    return k;
}

static void test_uri(void **state)
{
    (void)state;
    struct atr_akv_key_uri k = key_of("https://Contoso.vault.azure.net/keys/tenant-key");
    assert_string_equal(k.host, "contoso.vault.azure.net");
    assert_string_equal(k.vault_url, "https://contoso.vault.azure.net");
    assert_string_equal(k.name, "tenant-key");
    assert_string_equal(k.version, "");
    k = key_of("https://v1.vault.azure.net:443/keys/k1/0123456789ABCDEF0123456789abcdef");
    assert_string_equal(k.host, "v1.vault.azure.net");
    assert_string_equal(k.version, "0123456789abcdef0123456789abcdef");
    k = key_of("https://127.0.0.1:8445/keys/k1/");
    assert_string_equal(k.host, "127.0.0.1:8445");
    char out[256];
    assert_int_equal(atr_akv_uri_format(out, sizeof(out), &k, 1), ATR_OK);
    assert_string_equal(out, "https://127.0.0.1:8445/keys/k1");
    assert_int_equal(atr_akv_uri_format(out, 10, &k, 0), ATR_E_INVALID);
    static const char *const bad[] = {
        "",
        "http://v.vault.azure.net/keys/k",
        "https://v.vault.azure.net/secrets/k",
        "https://v.vault.azure.net/keys/",
        "https://v.vault.azure.net/keys/a_b",
        "https://v.vault.azure.net/keys/k/123",
        "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdeg",
        "https://v.vault.azure.net/keys/k?api-version=7.4",
        "https://user@v.vault.azure.net/keys/k",
        "https://v.vault.azure.net/keys/k#x",
        "https:///keys/k",
        "https://v.vault.azure.net",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct atr_err err;
        atr_err_clear(&err);
        if (atr_akv_uri_parse(&k, bad[i], &err) != ATR_E_INVALID)
            fail_msg("URI %zu accepted: %s", i, bad[i]);
        assert_true(strlen(err.msg) > 0);
    }
}

static void test_challenge(void **state)
{
    (void)state;
    struct atr_akv_challenge c;
    assert_int_equal(
        atr_akv_challenge_parse(&c,
                                "Bearer authorization=\"https://login.microsoftonline.com/"
                                "72f988bf-86f1-41af-91ab-2d7cd011db47\", "
                                "resource=\"https://vault.azure.net\"",
                                NULL),
        ATR_OK);
    assert_string_equal(c.authority, "https://login.microsoftonline.com");
    assert_string_equal(c.tenant, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_string_equal(c.resource, "https://vault.azure.net");
    /* the other order, scope= with /.default, unquoted values, extra parameters */
    assert_int_equal(
        atr_akv_challenge_parse(&c,
                                "Bearer scope=\"https://vault.azure.net/.default\",  error=\"x\", "
                                "authorization_uri=https://127.0.0.1:8444/contoso.onmicrosoft.com",
                                NULL),
        ATR_OK);
    assert_string_equal(c.authority, "https://127.0.0.1:8444");
    assert_string_equal(c.tenant, "contoso.onmicrosoft.com");
    assert_string_equal(c.resource, "https://vault.azure.net");
    static const char *const bad[] = {
        "Basic realm=\"x\"",
        "Bearer resource=\"https://vault.azure.net\"",
        "Bearer authorization=\"http://login/t\", resource=\"r\"",
        "Bearer authorization=\"https://login.microsoftonline.com\", resource=\"r\"",
        "Bearer authorization=\"https://login/t\", resource=\"r",
        "Bearer authorization",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (atr_akv_challenge_parse(&c, bad[i], NULL) != ATR_E_PARSE)
            fail_msg("challenge %zu accepted: %s", i, bad[i]);
    }
}

static void test_token_answer(void **state)
{
    (void)state;
    char *tok = NULL;
    int64_t exp = 0;
    assert_int_equal(atr_akv_token_answer_parse(
                         &tok, &exp,
                         S("{\"token_type\":\"Bearer\",\"expires_in\":3599,"
                           "\"ext_expires_in\":3599,\"access_token\":\"eyJ0eXAi.eyJhdWQi.c2ln\"}"),
                         NULL),
                     ATR_OK);
    assert_string_equal(tok, "eyJ0eXAi.eyJhdWQi.c2ln");
    assert_int_equal(exp, 3599);
    atr_free(tok);
    assert_int_equal(atr_akv_token_answer_parse(&tok, &exp,
                                                S("{\"token_type\":\"Bearer\",\"expires_in\":"
                                                  "\"3600\",\"access_token\":\"a.b.c\"}"),
                                                NULL),
                     ATR_OK);
    assert_int_equal(exp, 3600);
    atr_free(tok);
    static const char *const bad[] = {
        "{}",
        "{\"token_type\":\"mac\",\"expires_in\":1,\"access_token\":\"a\"}",
        "{\"token_type\":\"Bearer\",\"expires_in\":0,\"access_token\":\"a\"}",
        "{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"a b\"}",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (atr_akv_token_answer_parse(&tok, &exp, S(bad[i]), NULL) != ATR_E_UPSTREAM)
            fail_msg("token answer %zu accepted", i);
        assert_null(tok);
    }
}

static atr_akv_cause token_cause(unsigned status, const char *body)
{
    struct atr_akv_error e;
    memset(&e, 0, sizeof(e));
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_akv_token_error_classify(&e, "login.microsoftonline.com", "contoso",
                                                 "app-1", status, NULL, S(body), &err);
    assert_int_not_equal(st, ATR_OK);
    assert_int_equal(st, atr_akv_cause_status(e.cause));
    assert_true(strlen(err.msg) > 0);
    return e.cause;
}

static void test_token_errors(void **state)
{
    (void)state;
    assert_int_equal(token_cause(400, "{\"error\":\"unauthorized_client\",\"error_description\":"
                                      "\"AADSTS700016: Application with identifier 'x' was not "
                                      "found in the directory 'Contoso'.\",\"error_codes\":"
                                      "[700016],\"timestamp\":\"2026-11-29 07:00:00Z\","
                                      "\"trace_id\":\"t\",\"correlation_id\":\"c\"}"),
                     ATR_AKV_SP_MISSING);
    assert_int_equal(token_cause(401, "{\"error\":\"unauthorized_client\",\"error_description\":"
                                      "\"AADSTS7000112: Application 'x' is disabled.\","
                                      "\"error_codes\":[7000112]}"),
                     ATR_AKV_SP_DISABLED);
    assert_int_equal(token_cause(401, "{\"error\":\"invalid_client\",\"error_description\":"
                                      "\"AADSTS7000215: Invalid client secret provided.\"}"),
                     ATR_AKV_CREDENTIAL_INVALID);
    assert_int_equal(token_cause(400, "{\"error\":\"invalid_request\",\"error_description\":"
                                      "\"AADSTS90002: Tenant 'x' not found.\","
                                      "\"error_codes\":[90002]}"),
                     ATR_AKV_DIRECTORY_UNKNOWN);
    assert_int_equal(token_cause(429, "{}"), ATR_AKV_THROTTLED);
    assert_int_equal(token_cause(503, "upstream"), ATR_AKV_SERVER);
    assert_int_equal(token_cause(400, "{\"error\":\"invalid_scope\",\"error_codes\":[70011]}"),
                     ATR_AKV_UNEXPECTED);
}

static atr_akv_cause vault_cause(atr_akv_op op, unsigned status, const char *body,
                                 struct atr_akv_error *e)
{
    struct atr_akv_key_uri k = key_of("https://v1.vault.azure.net/keys/k1");
    memset(e, 0, sizeof(*e));
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_akv_vault_error_classify(e, op, &k, status, "12", "rid-1", S(body), &err);
    assert_int_equal(st, atr_akv_cause_status(e->cause));
    return e->cause;
}

static void test_vault_errors(void **state)
{
    (void)state;
    struct atr_akv_error e;
    assert_int_equal(
        vault_cause(ATR_AKV_OP_UNWRAP, 403,
                    "{\"error\":{\"code\":\"Forbidden\",\"message\":\"The user, group or "
                    "application 'appid=a;oid=o;iss=https://sts.windows.net/t/' does not have "
                    "keys unwrapKey permission on key vault 'v1;location=westeurope'. For help "
                    "resolving this issue, please see https://go.microsoft.com/fwlink/"
                    "?linkid=2125287\",\"innererror\":{\"code\":\"AccessDenied\"}}}",
                    &e),
        ATR_AKV_PERMISSION);
    assert_string_equal(e.permission, "unwrapKey");
    assert_string_equal(e.inner_code, "AccessDenied");
    assert_string_equal(e.request_id, "rid-1");
    /* an RBAC refusal without the policy wording: the operation names it */
    assert_int_equal(vault_cause(ATR_AKV_OP_LIST, 403,
                                 "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Caller is not "
                                 "authorized to perform action on resource.\",\"innerError\":"
                                 "{\"code\":\"ForbiddenByRbac\"}}}",
                                 &e),
                     ATR_AKV_PERMISSION);
    assert_string_equal(e.permission, "list");
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 403,
                                 "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Client address "
                                 "is not authorized and caller is not a trusted service.\","
                                 "\"innererror\":{\"code\":\"ForbiddenByFirewall\"}}}",
                                 &e),
                     ATR_AKV_FIREWALL);
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 403,
                                 "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Operation "
                                 "wrapKey is not allowed on a disabled key.\",\"innererror\":"
                                 "{\"code\":\"KeyDisabled\"}}}",
                                 &e),
                     ATR_AKV_KEY_DISABLED);
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 403,
                                 "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Operation "
                                 "wrapKey is not allowed on an expired key.\"}}",
                                 &e),
                     ATR_AKV_KEY_EXPIRED);
    assert_int_equal(vault_cause(ATR_AKV_OP_LIST, 404,
                                 "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"A key with "
                                 "(name/id) k1 was not found in this key vault.\"}}",
                                 &e),
                     ATR_AKV_KEY_NOT_FOUND);
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 400,
                                 "{\"error\":{\"code\":\"BadParameter\",\"message\":\"Key type "
                                 "EC does not support the wrapKey operation: it needs an RSA "
                                 "key.\"}}",
                                 &e),
                     ATR_AKV_KEY_NOT_RSA);
    assert_int_equal(vault_cause(ATR_AKV_OP_UNWRAP, 400,
                                 "{\"error\":{\"code\":\"BadParameter\",\"message\":\"Decryption "
                                 "failed.\"}}",
                                 &e),
                     ATR_AKV_DECRYPT_FAILED);
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 429,
                                 "{\"error\":{\"code\":\"Throttled\",\"message\":\"Request was "
                                 "not processed because too many requests were received.\"}}",
                                 &e),
                     ATR_AKV_THROTTLED);
    assert_int_equal(e.retry_after_s, 12);
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 500, "", &e), ATR_AKV_SERVER);
    assert_int_equal(vault_cause(ATR_AKV_OP_WRAP, 418, "teapot", &e), ATR_AKV_UNEXPECTED);
}

static void test_key_op_answer(void **state)
{
    (void)state;
    struct atr_akv_key_uri k = key_of("https://v1.vault.azure.net/keys/k1");
    char kid[ATR_AKV_KID_MAX];
    struct atr_buf v;
    atr_buf_init(&v, 1024);
    assert_int_equal(
        atr_akv_key_op_answer_parse(kid, &v, &k,
                                    S("{\"kid\":\"https://v1.vault.azure.net/keys/k1/"
                                      "0123456789abcdef0123456789abcdef\",\"value\":\"AQID\"}"),
                                    NULL),
        ATR_OK);
    assert_string_equal(kid, "https://v1.vault.azure.net/keys/k1/0123456789abcdef0123456789abcdef");
    assert_int_equal(v.len, 3);
    atr_buf_reset(&v);
    static const char *const bad[] = {
        "{\"kid\":\"https://v1.vault.azure.net/keys/other/0123456789abcdef0123456789abcdef\","
        "\"value\":\"AQID\"}",
        "{\"kid\":\"https://evil.vault.azure.net/keys/k1/0123456789abcdef0123456789abcdef\","
        "\"value\":\"AQID\"}",
        "{\"kid\":\"https://v1.vault.azure.net/keys/k1\",\"value\":\"AQID\"}",
        "{\"kid\":\"https://v1.vault.azure.net/keys/k1/0123456789abcdef0123456789abcdef\","
        "\"value\":\"A+/=\"}",
        "{\"kid\":\"https://v1.vault.azure.net/keys/k1/0123456789abcdef0123456789abcdef\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (atr_akv_key_op_answer_parse(kid, &v, &k, S(bad[i]), NULL) == ATR_OK)
            fail_msg("answer %zu accepted", i);
        assert_int_equal(v.len, 0);
    }
    atr_buf_cleanup(&v);
}

static void test_versions_page(void **state)
{
    (void)state;
    struct atr_akv_key_uri k = key_of("https://v1.vault.azure.net/keys/k1");
    struct atr_akv_versions acc;
    memset(&acc, 0, sizeof(acc));
    char next[1024];
    const char *page1 =
        "{\"value\":[{\"kid\":\"https://v1.vault.azure.net/keys/k1/"
        "00000000000000000000000000000001\",\"attributes\":{\"enabled\":true,\"created\":100,"
        "\"updated\":100,\"recoveryLevel\":\"Recoverable\",\"recoverableDays\":90,"
        "\"exportable\":false},\"tags\":{}},{\"kid\":\"https://v1.vault.azure.net/keys/k1/"
        "00000000000000000000000000000002\",\"attributes\":{\"enabled\":false,\"created\":200,"
        "\"updated\":200,\"recoveryLevel\":\"Recoverable\"}}],\"nextLink\":\"https://"
        "v1.vault.azure.net/keys/k1/versions?api-version=7.4&$skiptoken=abc&maxresults=2\"}";
    assert_int_equal(atr_akv_versions_page_parse(&acc, next, sizeof(next), &k, 100, S(page1), NULL),
                     ATR_OK);
    assert_int_equal(acc.n, 2);
    assert_string_equal(next, "https://v1.vault.azure.net/keys/k1/versions?api-version=7.4&"
                              "$skiptoken=abc&maxresults=2");
    const char *page2 = "{\"value\":[{\"kid\":\"https://v1.vault.azure.net/keys/k1/"
                        "00000000000000000000000000000003\",\"attributes\":{\"enabled\":true,"
                        "\"created\":300,\"exp\":1000}}],\"nextLink\":null}";
    assert_int_equal(atr_akv_versions_page_parse(&acc, next, sizeof(next), &k, 100, S(page2), NULL),
                     ATR_OK);
    assert_int_equal(acc.n, 3);
    assert_string_equal(next, "");
    assert_string_equal(acc.items[0].recovery_level, "Recoverable");
    /* the latest usable: version 3 before its expiry, version 1 after */
    assert_string_equal(atr_akv_versions_latest(&acc, 500)->version,
                        "00000000000000000000000000000003");
    assert_string_equal(atr_akv_versions_latest(&acc, 1000)->version,
                        "00000000000000000000000000000001");
    /* a nextLink to another host or listing is refused */
    assert_int_equal(atr_akv_versions_page_parse(
                         &acc, next, sizeof(next), &k, 100,
                         S("{\"value\":[],\"nextLink\":\"https://evil.example/keys/k1/versions\"}"),
                         NULL),
                     ATR_E_UPSTREAM);
    assert_int_equal(atr_akv_versions_page_parse(&acc, next, sizeof(next), &k, 3, S(page2), NULL),
                     ATR_E_TOO_LARGE);
    atr_akv_versions_cleanup(&acc);
    assert_null(atr_akv_versions_latest(&acc, 0));
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(atr_akv_retry_after_parse("30", 0), 30);
    assert_int_equal(atr_akv_retry_after_parse("0", 0), 0);
    assert_int_equal(atr_akv_retry_after_parse("999999", 0), 86400);
    assert_int_equal(atr_akv_retry_after_parse(NULL, 0), 0);
    assert_int_equal(atr_akv_retry_after_parse("soon", 0), 0);
    /* Sun, 29 Nov 2026 07:00:00 GMT = 1795935600 */
    assert_int_equal(atr_akv_retry_after_parse("Sun, 29 Nov 2026 07:00:00 GMT", 1795935600 - 45),
                     45);
}

static void test_names_and_client_settings(void **state)
{
    (void)state;
    assert_string_equal(atr_akv_cause_name(ATR_AKV_KEY_NOT_RSA), "KEY_NOT_RSA");
    assert_string_equal(atr_akv_cause_name((atr_akv_cause)99), "UNKNOWN");
    assert_int_equal(atr_akv_cause_status(ATR_AKV_OK), ATR_OK);
    assert_string_equal(atr_akv_alg_name(ATR_AKV_ALG_DEFAULT), "RSA-OAEP-256");
    assert_null(atr_akv_alg_name((atr_akv_alg)9));
    struct atr_akv_client *c = NULL;
    struct atr_akv_client_opts o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(atr_akv_client_new(&c, &o, NULL), ATR_E_CONFIG);
    o.client_id = "app";
    assert_int_equal(atr_akv_client_new(&c, &o, NULL), ATR_E_CONFIG);
    o.client_secret = "s3cret";
    o.authority = "http://login";
    assert_int_equal(atr_akv_client_new(&c, &o, NULL), ATR_E_CONFIG);
    o.authority = "https://127.0.0.1:8444";
    const char *hosts[] = {"vault.azure.net", "127.0.0.1:8445"};
    o.vault_hosts = hosts;
    o.nvault_hosts = 2;
    assert_int_equal(atr_akv_client_new(&c, &o, NULL), ATR_OK);
    assert_true(atr_akv_host_allowed(c, "contoso.vault.azure.net"));
    assert_true(atr_akv_host_allowed(c, "vault.azure.net"));
    assert_false(atr_akv_host_allowed(c, "evilvault.azure.net"));
    assert_true(atr_akv_host_allowed(c, "127.0.0.1:8445"));
    assert_false(atr_akv_host_allowed(c, "127.0.0.1:8446"));
    struct atr_akv_stats st;
    atr_akv_client_stats(&st, c);
    assert_int_equal(st.token_requests, 0);
    atr_akv_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_token_answer),
        cmocka_unit_test(test_token_errors),
        cmocka_unit_test(test_vault_errors),
        cmocka_unit_test(test_key_op_answer),
        cmocka_unit_test(test_versions_page),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_names_and_client_settings),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
