/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local X.509: a CA and server certificates that OpenSSL verifies for the
 * given DNS names and IP addresses, with the right extensions, validity
 * (test clock, clamping to the CA), file modes, and every rejection path
 * (bad hosts, bad CA, mismatched keys, encrypted keys, unwritable places).
 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/clock.h"
#include "crypto/x509.h"

struct paths {
    char dir[64];
    char ca_pem[128], ca_key[128], srv_pem[128], srv_key[128];
};

static struct paths P;

static int setup(void **state)
{
    (void)state;
    snprintf(P.dir, sizeof(P.dir), "/tmp/atr-x509-test-XXXXXX");
    if (mkdtemp(P.dir) == NULL)
        return -1;
    snprintf(P.ca_pem, sizeof(P.ca_pem), "%s/ca.pem", P.dir);
    snprintf(P.ca_key, sizeof(P.ca_key), "%s/ca.key", P.dir);
    snprintf(P.srv_pem, sizeof(P.srv_pem), "%s/server.pem", P.dir);
    snprintf(P.srv_key, sizeof(P.srv_key), "%s/server.key", P.dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", P.dir);
    return system(cmd) == 0 ? 0 : -1;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

static unsigned file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 0777);
}

static void make_ca(void)
{
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_x509_ca_create(P.ca_pem, P.ca_key, NULL, &err) != ATR_OK)
        fail_msg("ca: %s", err.msg);
}

/* Verifies @p leaf against @p ca with OpenSSL's chain verification. */
static int verify(X509 *ca, X509 *leaf)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void test_ca(void **state)
{
    (void)state;
    make_ca();
    assert_int_equal(file_mode(P.ca_key), 0600);
    assert_int_equal(file_mode(P.ca_pem), 0644);
    X509 *ca = read_cert(P.ca_pem);
    EVP_PKEY *key = read_key(P.ca_key);
    assert_int_equal(X509_check_private_key(ca, key), 1);
    assert_true(X509_check_ca(ca) >= 1);
    assert_true((X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) != 0);
    assert_int_equal(X509_get_version(ca), X509_VERSION_3);
    assert_int_equal(X509_verify(ca, key), 1); /* self-signed */
    assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
    char cn[64];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "atrest local CA");
    /* about ATR_X509_CA_DAYS_DEFAULT days */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca), X509_get0_notAfter(ca)),
                     1);
    assert_int_equal(days, ATR_X509_CA_DAYS_DEFAULT);
    assert_int_equal(secs, 3600);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_x509_ca_check(P.ca_pem, P.ca_key, NULL, &err), ATR_OK);
    X509_free(ca);
    EVP_PKEY_free(key);
}

static void test_server_cert(void **state)
{
    (void)state;
    make_ca();
    const char *hosts[] = {"localhost", "127.0.0.1", "::1", "*.example.test", "svc-1.local"};
    struct atr_x509_opts opts = {30, NULL, NULL};
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 5, &opts, &err) !=
        ATR_OK)
        fail_msg("server: %s", err.msg);
    assert_int_equal(file_mode(P.srv_key), 0600);
    X509 *ca = read_cert(P.ca_pem);
    X509 *x = read_cert(P.srv_pem);
    EVP_PKEY *key = read_key(P.srv_key);
    assert_int_equal(X509_check_private_key(x, key), 1);
    assert_int_equal(verify(ca, x), 1);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true((X509_get_extended_key_usage(x) & XKU_SSL_SERVER) != 0);
    assert_true((X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE) != 0);
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "svc-1.local", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "a.example.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "other.test", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.2", 0), 0);
    char cn[64];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "localhost");
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_int_equal(days, 30);
    /* a different serial each time */
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(ca)),
                         0);
    /* a second certificate replaces the first, still 0600 */
    chmod(P.srv_key, 0644);
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 1, NULL, NULL),
        ATR_OK);
    assert_int_equal(file_mode(P.srv_key), 0600);
    /* the PEM pair check used by the server */
    struct atr_buf cb, kb;
    atr_buf_init(&cb, 1 << 16);
    atr_buf_init(&kb, 1 << 16);
    FILE *f = fopen(P.srv_pem, "r");
    char chunk[4096];
    size_t n = fread(chunk, 1, sizeof(chunk), f);
    fclose(f);
    assert_int_equal(atr_buf_append(&cb, chunk, n), ATR_OK);
    f = fopen(P.srv_key, "r");
    n = fread(chunk, 1, sizeof(chunk), f);
    fclose(f);
    assert_int_equal(atr_buf_append(&kb, chunk, n), ATR_OK);
    assert_int_equal(atr_x509_check_pem_pair(atr_buf_span(&cb), atr_buf_span(&kb), NULL), ATR_OK);
    atr_buf_cleanup(&kb);
    f = fopen(P.ca_key, "r");
    n = fread(chunk, 1, sizeof(chunk), f);
    fclose(f);
    assert_int_equal(atr_buf_append(&kb, chunk, n), ATR_OK);
    atr_err_clear(&err);
    assert_int_equal(atr_x509_check_pem_pair(atr_buf_span(&cb), atr_buf_span(&kb), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_x509_check_pem_pair(atr_span_str("junk"), atr_buf_span(&kb), NULL),
                     ATR_E_PARSE);
    assert_int_equal(atr_x509_check_pem_pair(atr_buf_span(&cb), atr_span_str("junk"), NULL),
                     ATR_E_PARSE);
    assert_int_equal(atr_x509_check_pem_pair(atr_span_of(NULL, 0), atr_buf_span(&kb), NULL),
                     ATR_E_PARSE);
    atr_buf_cleanup(&cb);
    atr_buf_cleanup(&kb);
    X509_free(ca);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void test_validity_from_clock(void **state)
{
    (void)state;
    struct atr_test_clock tc;
    /* 2030-01-01T00:00:00Z */
    assert_int_equal(atr_test_clock_init(&tc, 1893456000000LL), ATR_OK);
    struct atr_x509_opts ca_opts = {10, "Test CA", &tc.base};
    assert_int_equal(atr_x509_ca_create(P.ca_pem, P.ca_key, &ca_opts, NULL), ATR_OK);
    X509 *ca = read_cert(P.ca_pem);
    /* notBefore is an hour before the clock, for skew */
    ASN1_TIME *expect = ASN1_TIME_set(NULL, (time_t)1893456000 - 3600);
    assert_non_null(expect);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notBefore(ca), expect), 0);
    ASN1_TIME_free(expect);
    char cn[64];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "Test CA");

    /* a server certificate never outlives its CA */
    const char *hosts[] = {"localhost"};
    struct atr_x509_opts srv_opts = {365, NULL, &tc.base};
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 1, &srv_opts, NULL),
        ATR_OK);
    X509 *x = read_cert(P.srv_pem);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)), 0);

    /* eleven days later the CA has expired */
    atr_test_clock_advance(&tc, 11LL * 86400 * 1000);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_x509_ca_check(P.ca_pem, P.ca_key, &tc.base, &err), ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "expired"));
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 1, &srv_opts, NULL),
        ATR_E_INVALID);
    X509_free(x);
    X509_free(ca);
    atr_test_clock_cleanup(&tc);
}

static void test_bad_hosts_and_days(void **state)
{
    (void)state;
    make_ca();
    static const char *const bad[] = {
        "",        "a b", "-a.test", "a-.test", "a..test",       ".a",        "a.", "*", "a.*.test",
        "*a.test", "a/b", "a:b",     "a_b",     "\xc3\xa9.test", "1.2.3.4:5",
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        if (atr_x509_host_ok(bad[i]))
            fail_msg("host %zu accepted", i);
        const char *hosts[] = {bad[i]};
        struct atr_err err;
        atr_err_clear(&err);
        atr_status rc =
            atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 1, NULL, &err);
        if (rc != ATR_E_INVALID)
            fail_msg("host '%s' gave %s", bad[i], atr_status_name(rc));
    }
    assert_false(atr_x509_host_ok(NULL));
    char label[80];
    memset(label, 'a', 64);
    strcpy(label + 64, ".test");
    assert_false(atr_x509_host_ok(label));
    strcpy(label + 63, ".test"); /* 63 characters: the longest label */
    assert_true(atr_x509_host_ok(label));
    assert_true(atr_x509_host_ok("fe80::1"));
    assert_true(atr_x509_host_ok("10.0.0.1"));

    const char *hosts[ATR_X509_MAX_HOSTS + 1];
    for (size_t i = 0; i < ATR_ARRAY_LEN(hosts); i++)
        hosts[i] = "localhost";
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 0, NULL, NULL),
        ATR_E_INVALID);
    assert_int_equal(atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts,
                                            ATR_X509_MAX_HOSTS + 1, NULL, NULL),
                     ATR_E_INVALID);
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, NULL, 1, NULL, NULL),
        ATR_E_INVALID);
    struct atr_x509_opts opts = {ATR_X509_DAYS_MAX + 1, NULL, NULL};
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 1, &opts, NULL),
        ATR_E_INVALID);
    assert_int_equal(atr_x509_ca_create(P.srv_pem, P.srv_key, &opts, NULL), ATR_E_INVALID);
}

static void test_bad_ca(void **state)
{
    (void)state;
    make_ca();
    const char *hosts[] = {"localhost"};
    struct atr_err err;
    /* missing files */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.pem", P.dir);
    atr_err_clear(&err);
    assert_int_equal(atr_x509_ca_check(missing, P.ca_key, NULL, &err), ATR_E_IO);
    assert_int_equal(atr_x509_ca_check(P.ca_pem, missing, NULL, NULL), ATR_E_IO);
    /* not PEM */
    char junk[160];
    snprintf(junk, sizeof(junk), "%s/junk.pem", P.dir);
    FILE *f = fopen(junk, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    assert_int_equal(atr_x509_ca_check(junk, P.ca_key, NULL, NULL), ATR_E_PARSE);
    assert_int_equal(atr_x509_ca_check(P.ca_pem, junk, NULL, NULL), ATR_E_PARSE);
    /* a server certificate is not a CA */
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, P.ca_key, hosts, 1, NULL, NULL),
        ATR_OK);
    atr_err_clear(&err);
    assert_int_equal(atr_x509_ca_check(P.srv_pem, P.srv_key, NULL, &err), ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "not a signing CA"));
    /* the key of another CA does not match */
    char other_pem[160], other_key[160];
    snprintf(other_pem, sizeof(other_pem), "%s/other.pem", P.dir);
    snprintf(other_key, sizeof(other_key), "%s/other.key", P.dir);
    assert_int_equal(atr_x509_ca_create(other_pem, other_key, NULL, NULL), ATR_OK);
    atr_err_clear(&err);
    assert_int_equal(atr_x509_ca_check(P.ca_pem, other_key, NULL, &err), ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "does not match"));
    assert_int_equal(
        atr_x509_server_create(P.srv_pem, P.srv_key, P.ca_pem, other_key, hosts, 1, NULL, NULL),
        ATR_E_INVALID);
    /* an encrypted key is refused without prompting for a password */
    char enc_key[160];
    snprintf(enc_key, sizeof(enc_key), "%s/enc.key", P.dir);
    EVP_PKEY *k = read_key(P.ca_key);
    f = fopen(enc_key, "w");
    assert_int_equal(
        PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), (unsigned char *)"pw", 2, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(k);
    atr_err_clear(&err);
    assert_int_equal(atr_x509_ca_check(P.ca_pem, enc_key, NULL, &err), ATR_E_PARSE);
    assert_non_null(strstr(err.msg, "unencrypted"));
    /* the OpenSSL error queue is left empty */
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_unwritable(void **state)
{
    (void)state;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(
        atr_x509_ca_create("/nonexistent-dir/ca.pem", "/nonexistent-dir/ca.key", NULL, &err),
        ATR_E_IO);
    assert_true(strlen(err.msg) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validity_from_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_hosts_and_days, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ca, setup, teardown),
        cmocka_unit_test(test_unwritable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
