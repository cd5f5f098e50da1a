/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kms/akv certificate credentials (client assertions), over real HTTPS on
 * loopback with a test CA and the injectable clock:
 *  - against our identity server (identity/idp.h, in process): an app with
 *    a registered self-signed RSA certificate and a service principal gets
 *    a token through atr_akv_token_probe(); a certificate that looks like
 *    the registered one (same subject and serial) but holds another key, an
 *    unregistered certificate, and a registered key under another
 *    certificate are refused with cause CREDENTIAL_INVALID (AADSTS700027);
 *  - against a small fake token endpoint that keeps the request bodies: the
 *    form carries client_assertion_type and client_assertion (no secret),
 *    the assertion's header and claims are as Entra ID expects them (x5t and
 *    x5t#S256 are the certificate's thumbprints, aud the token URL, iss = sub
 *    = the client id, nbf = iat = now, exp - nbf = 600), its signature
 *    verifies with the certificate's key, and two requests carry different
 *    jti values;
 *  - atr_akv_client_new() refuses a certificate and key that do not belong
 *    together, non-RSA and short keys, PKCS#1 and public keys, a certificate
 *    that is not PEM, both or neither credential.
 */
#include "lib/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/secmem.h"
#include "crypto/rsa.h"
#include "crypto/sig.h"
#include "crypto/x509.h"
#include "http/server.h"
#include "identity/idp.h"
#include "identity/idp_store.h"
#include "kms/akv.h"

#define T0_MS       1700000000000LL
#define FAKE_TENANT "contoso.example"
#define FAKE_CLIENT "app-cert-1"
#define MAX_BODIES  4

/* A credential: a key and a self-signed certificate, both PEM. */
struct cred {
    EVP_PKEY *pkey;
    char *cert_pem;
    char *key_pem; /* PKCS#8 */
};

struct world {
    char dir[64];
    char ca_pem[128], ca_key[128], srv_pem[128], srv_key[128], db[128];
    struct atr_test_clock clock;
    /* our identity server */
    struct atr_idp *idp;
    struct atr_http_server *idp_srv;
    char idp_url[64];
    struct atr_idp_store *st;
    struct atr_idp_directory dir_a;
    struct atr_idp_app app;
    struct atr_idp_sp sp;
    /* the fake token endpoint */
    struct atr_http_server *fake_srv;
    char fake_url[64];
    pthread_mutex_t lock;
    char *bodies[MAX_BODIES];
    size_t nbodies;
    /* credentials */
    struct cred a;       /* registered with the app */
    struct cred a_other; /* same subject and serial as a, another key */
    struct cred b;       /* never registered */
    struct cred a_recut; /* a's key under another certificate (other serial) */
};

static struct world W;

/* ---- credentials ---- */

static char *bio_text(BIO *b)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    assert_true(n > 0);
    char *s = atr_malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

/* A self-signed certificate for @p key (PEM). */
static char *cert_for(EVP_PKEY *key, const char *cn, long serial)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 30));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    char *s = bio_text(b);
    BIO_free(b);
    X509_free(x);
    return s;
}

/* PKCS#8 "PRIVATE KEY" PEM, or PKCS#1 "RSA PRIVATE KEY" when @p traditional. */
static char *key_pem_of(EVP_PKEY *key, int traditional)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    int ok = traditional ? PEM_write_bio_PrivateKey_traditional(b, key, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    char *s = bio_text(b);
    BIO_free(b);
    return s;
}

static char *pub_pem_of(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, key), 1);
    char *s = bio_text(b);
    BIO_free(b);
    return s;
}

static void cred_make(struct cred *c, EVP_PKEY *key, const char *cn, long serial)
{
    memset(c, 0, sizeof(*c));
    c->pkey = key;
    assert_non_null(c->pkey);
    c->cert_pem = cert_for(c->pkey, cn, serial);
    c->key_pem = key_pem_of(c->pkey, 0);
}

static void cred_free(struct cred *c, int owns_key)
{
    if (owns_key)
        EVP_PKEY_free(c->pkey);
    if (c->key_pem != NULL) {
        atr_wipe(c->key_pem, strlen(c->key_pem));
        atr_free(c->key_pem);
    }
    atr_free(c->cert_pem);
    memset(c, 0, sizeof(*c));
}

/* base64url of the @p md digest of the certificate's DER (computed here, independently). */
static char *thumbprint(const char *cert_pem, const EVP_MD *md)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    assert_non_null(b);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    assert_non_null(x);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    assert_int_equal(EVP_Digest(der, (size_t)n, d, &dlen, md, NULL), 1);
    char *s = NULL;
    assert_int_equal(atr_b64url_encode_str(&s, atr_span_of(d, dlen)), ATR_OK);
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(b);
    return s;
}

/* ---- the fake token endpoint ---- */

static atr_status h_fake_token(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    struct atr_span body = atr_http_req_body(req);
    char *copy = atr_malloc(body.len + 1);
    if (copy != NULL) {
        memcpy(copy, body.ptr, body.len);
        copy[body.len] = '\0';
    }
    pthread_mutex_lock(&W.lock);
    if (copy != NULL && W.nbodies < MAX_BODIES)
        W.bodies[W.nbodies++] = copy;
    else
        atr_free(copy);
    pthread_mutex_unlock(&W.lock);
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:s,s:i,s:i,s:s}", "token_type", "Bearer", "expires_in",
                                        3599, "ext_expires_in", 3599, "access_token", "tok-fake"));
}

static const struct atr_route fake_routes[] = {
    {"POST", "/{tenant}/oauth2/v2.0/token", h_fake_token, 0, 0, NULL},
};

/* ---- set-up ---- */

static struct atr_http_server *server_start(char *url, size_t cap, const char *name,
                                            const struct atr_route *routes, size_t nroutes,
                                            void *ctx, atr_http_auth_fn auth, void *auth_ctx)
{
    struct atr_http_server_opts o;
    memset(&o, 0, sizeof(o));
    o.name = name;
    o.cert_file = W.srv_pem;
    o.key_file = W.srv_key;
    o.threads = 2;
    o.shutdown_grace_ms = 1000;
    o.auth = auth;
    o.auth_ctx = auth_ctx;
    struct atr_http_server *s = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_server_new(&s, &o, routes, nroutes, ctx, &err) != ATR_OK ||
        atr_http_server_start(s, &err) != ATR_OK || atr_http_server_url(url, cap, s) != ATR_OK)
        fail_msg("server %s: %s", name, atr_err_msg(&err));
    return s;
}

static int world_setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    atr_log_set_level(ATR_LOG_WARN); /* no access log lines */
    memset(&W, 0, sizeof(W));
    pthread_mutex_init(&W.lock, NULL);
    snprintf(W.dir, sizeof(W.dir), "/tmp/atr-akv-cert-XXXXXX");
    if (mkdtemp(W.dir) == NULL)
        return -1;
    snprintf(W.ca_pem, sizeof(W.ca_pem), "%s/ca.pem", W.dir);
    snprintf(W.ca_key, sizeof(W.ca_key), "%s/ca.key", W.dir);
    snprintf(W.srv_pem, sizeof(W.srv_pem), "%s/server.pem", W.dir);
    snprintf(W.srv_key, sizeof(W.srv_key), "%s/server.key", W.dir);
    snprintf(W.db, sizeof(W.db), "%s/idp.db", W.dir);
    static const char *const hosts[] = {"127.0.0.1"};
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_x509_ca_create(W.ca_pem, W.ca_key, NULL, &err) != ATR_OK ||
        atr_x509_server_create(W.srv_pem, W.srv_key, W.ca_pem, W.ca_key, hosts, 1, NULL, &err) !=
            ATR_OK) {
        fprintf(stderr, "certificates: %s\n", atr_err_msg(&err));
        return -1;
    }
    if (atr_test_clock_init(&W.clock, T0_MS) != ATR_OK)
        return -1;

    /* our identity server */
    struct atr_idp_opts io;
    memset(&io, 0, sizeof(io));
    io.db_path = W.db;
    io.clock = &W.clock.base;
    io.rl_max_failures = 100; /* the refusals below must not reach the rate limit */
    if (atr_idp_new(&W.idp, &io, &err) != ATR_OK) {
        fprintf(stderr, "idp: %s\n", atr_err_msg(&err));
        return -1;
    }
    size_t nr = 0;
    const struct atr_route *routes = atr_idp_routes(&nr);
    W.idp_srv =
        server_start(W.idp_url, sizeof(W.idp_url), "idp", routes, nr, W.idp, atr_idp_auth, W.idp);
    if (atr_idp_set_authority(W.idp, W.idp_url, &err) != ATR_OK)
        return -1;
    W.fake_srv = server_start(W.fake_url, sizeof(W.fake_url), "fake-token", fake_routes,
                              ATR_ARRAY_LEN(fake_routes), NULL, NULL, NULL);

    /* credentials */
    cred_make(&W.a, EVP_RSA_gen(2048), "atrest-byok", 1001);
    cred_make(&W.a_other, EVP_RSA_gen(2048), "atrest-byok", 1001);
    cred_make(&W.b, EVP_RSA_gen(2048), "atrest-byok-unregistered", 2002);
    cred_make(&W.a_recut, W.a.pkey, "atrest-byok", 1002);

    /* a directory, an app with the certificate of a, its service principal */
    int64_t now = T0_MS / 1000;
    if (atr_idp_store_open(&W.st, W.db, &err) != ATR_OK ||
        atr_idp_store_directory_create(&W.dir_a, W.st, "Contoso", now, &err) != ATR_OK ||
        atr_idp_store_app_create(&W.app, W.st, W.dir_a.id, "byok", 0, now, &err) != ATR_OK ||
        atr_idp_store_cert_add(W.st, W.app.app_id, W.a.cert_pem, now, &err) != ATR_OK ||
        atr_idp_store_sp_create(&W.sp, W.st, W.dir_a.id, W.app.app_id, 1, now, &err) != ATR_OK) {
        fprintf(stderr, "provisioning: %s\n", atr_err_msg(&err));
        return -1;
    }
    return 0;
}

static int world_teardown(void **state)
{
    (void)state;
    atr_http_server_free(W.fake_srv);
    atr_http_server_free(W.idp_srv);
    atr_idp_free(W.idp);
    atr_idp_store_free(W.st);
    for (size_t i = 0; i < W.nbodies; i++)
        atr_free(W.bodies[i]);
    cred_free(&W.a_recut, 0);
    cred_free(&W.a, 1);
    cred_free(&W.a_other, 1);
    cred_free(&W.b, 1);
    atr_test_clock_cleanup(&W.clock);
    pthread_mutex_destroy(&W.lock);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", W.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- client helpers ---- */

static void opts_for(struct atr_akv_client_opts *o, const char *authority, const char *client_id,
                     const char *cert_pem, const char *key_pem)
{
    memset(o, 0, sizeof(*o));
    o->client_id = client_id;
    o->client_cert_pem = cert_pem;
    o->client_key_pem = key_pem != NULL ? atr_span_str(key_pem) : atr_span_of(NULL, 0);
    o->authority = authority;
    o->ca_file = W.ca_pem;
    o->connect_timeout_ms = 2000;
    o->timeout_ms = 4000;
    o->op_timeout_ms = 5000;
    o->clock = &W.clock.base;
}

/*
 * A client for the identity server with @p cert_pem and a private copy of
 * @p key_pem that is wiped and freed right after new: the client must not
 * need the PEM text afterwards.
 */
static struct atr_akv_client *idp_client(const char *cert_pem, const char *key_pem)
{
    size_t n = strlen(key_pem);
    char *copy = atr_malloc(n + 1);
    assert_non_null(copy);
    memcpy(copy, key_pem, n + 1);
    struct atr_akv_client_opts o;
    opts_for(&o, W.idp_url, W.app.app_id, cert_pem, copy);
    struct atr_akv_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_akv_client_new(&c, &o, &err);
    atr_wipe(copy, n);
    atr_free(copy);
    if (rc != ATR_OK)
        fail_msg("client: %s", atr_err_msg(&err));
    return c;
}

static void expect_refused(const struct atr_akv_client_opts *o, atr_status want, const char *words)
{
    struct atr_akv_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_akv_client_new(&c, o, &err);
    if (rc != want || c != NULL || strstr(atr_err_msg(&err), words) == NULL)
        fail_msg("expected %d with \"%s\", got %d: %s", (int)want, words, (int)rc,
                 atr_err_msg(&err));
    /* never the key's PEM text in a message */
    assert_null(strstr(atr_err_msg(&err), "PRIVATE KEY-----"));
    assert_null(strstr(atr_err_msg(&err), "MII"));
}

/* ---- tests ---- */

static void test_idp_token(void **state)
{
    (void)state;
    struct atr_akv_client *c = idp_client(W.a.cert_pem, W.a.key_pem);
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    for (int i = 0; i < 2; i++) { /* a probe always asks again: a second, fresh assertion */
        atr_status rc = atr_akv_token_probe(c, W.dir_a.id, &fail, &err);
        if (rc != ATR_OK)
            fail_msg("probe %d: %s (%s, %s)", i, atr_err_msg(&err), atr_akv_cause_name(fail.cause),
                     fail.inner_code);
        assert_int_equal(fail.cause, ATR_AKV_OK);
    }
    struct atr_akv_stats st;
    atr_akv_client_stats(&st, c);
    assert_int_equal(st.token_requests, 2);
    atr_akv_client_free(c);
}

static void expect_credential_invalid(const struct cred *cr, const char *what)
{
    struct atr_akv_client *c = idp_client(cr->cert_pem, cr->key_pem);
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_akv_token_probe(c, W.dir_a.id, &fail, &err);
    if (rc == ATR_OK || fail.cause != ATR_AKV_CREDENTIAL_INVALID)
        fail_msg("%s: %d %s %s", what, (int)rc, atr_akv_cause_name(fail.cause), atr_err_msg(&err));
    assert_int_equal(rc, atr_akv_cause_status(ATR_AKV_CREDENTIAL_INVALID));
    assert_string_equal(fail.inner_code, "AADSTS700027");
    assert_int_equal(fail.http_status, 401);
    assert_non_null(strstr(atr_err_msg(&err), "credential"));
    atr_akv_client_free(c);
}

static void test_idp_refusals(void **state)
{
    (void)state;
    /* the registered certificate's subject and serial, but another key */
    expect_credential_invalid(&W.a_other, "registered certificate, other key");
    /* a certificate the app never registered */
    expect_credential_invalid(&W.b, "unregistered certificate");
    /* the registered key under another certificate: x5t names no registered certificate */
    expect_credential_invalid(&W.a_recut, "registered key, other certificate");
}

/* Decodes a base64url JWT part into JSON. */
static json_t *jwt_json(const char *part, size_t len)
{
    struct atr_buf b;
    atr_buf_init(&b, 1 << 16);
    assert_int_equal(atr_b64url_decode(&b, part, len, NULL), ATR_OK);
    json_t *j = json_loadb((const char *)b.ptr, b.len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(j);
    atr_buf_cleanup(&b);
    return j;
}

/* Checks one captured token request; returns its jti (atr_free). */
static char *check_body(const char *body, const char *x5t, const char *x5t256,
                        const struct atr_rsa_key *pub)
{
    assert_non_null(strstr(body, "grant_type=client_credentials"));
    assert_non_null(strstr(body, "client_id=" FAKE_CLIENT));
    assert_non_null(strstr(body, "scope=https%3A%2F%2Fvault.azure.net%2F.default"));
    assert_non_null(strstr(body, "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-"
                                 "assertion-type%3Ajwt-bearer"));
    assert_null(strstr(body, "client_secret"));
    const char *a = strstr(body, "client_assertion=");
    assert_non_null(a);
    a += strlen("client_assertion=");
    size_t alen = strcspn(a, "&");
    /* base64url and dots only: nothing needed form encoding */
    for (size_t i = 0; i < alen; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", a[i]));
    const char *d1 = memchr(a, '.', alen);
    assert_non_null(d1);
    const char *d2 = memchr(d1 + 1, '.', alen - (size_t)(d1 + 1 - a));
    assert_non_null(d2);

    json_t *h = jwt_json(a, (size_t)(d1 - a));
    assert_int_equal(json_object_size(h), 4);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    assert_string_equal(json_string_value(json_object_get(h, "x5t")), x5t);
    assert_string_equal(json_string_value(json_object_get(h, "x5t#S256")), x5t256);
    json_decref(h);

    json_t *cl = jwt_json(d1 + 1, (size_t)(d2 - d1 - 1));
    char aud[256];
    snprintf(aud, sizeof(aud), "%s/%s/oauth2/v2.0/token", W.fake_url, FAKE_TENANT);
    assert_string_equal(json_string_value(json_object_get(cl, "aud")), aud);
    assert_string_equal(json_string_value(json_object_get(cl, "iss")), FAKE_CLIENT);
    assert_string_equal(json_string_value(json_object_get(cl, "sub")), FAKE_CLIENT);
    json_int_t now = (json_int_t)atr_clock_now_s(&W.clock.base);
    json_int_t nbf = json_integer_value(json_object_get(cl, "nbf"));
    assert_true(json_is_integer(json_object_get(cl, "exp")));
    assert_int_equal(nbf, now);
    assert_int_equal(json_integer_value(json_object_get(cl, "iat")), now);
    assert_int_equal(json_integer_value(json_object_get(cl, "exp")) - nbf, 600);
    const char *jti = json_string_value(json_object_get(cl, "jti"));
    assert_non_null(jti);
    assert_true(strlen(jti) >= 32);
    char *jti_copy = atr_strdup(jti);
    assert_non_null(jti_copy);
    json_decref(cl);

    /* RS256 over "header.claims" with the certificate's key */
    struct atr_buf sig;
    atr_buf_init(&sig, 4096);
    const char *s = d2 + 1;
    size_t slen = alen - (size_t)(s - a);
    assert_int_equal(atr_b64url_decode(&sig, s, slen, NULL), ATR_OK);
    assert_int_equal(atr_sig_verify(pub, ATR_SIG_RS256, atr_span_of(a, (size_t)(d2 - a)),
                                    atr_buf_span(&sig), NULL),
                     ATR_OK);
    atr_buf_cleanup(&sig);
    return jti_copy;
}

static void test_assertion_shape(void **state)
{
    (void)state;
    struct atr_akv_client_opts o;
    opts_for(&o, W.fake_url, FAKE_CLIENT, W.a.cert_pem, W.a.key_pem);
    struct atr_akv_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_client_new(&c, &o, &err) != ATR_OK)
        fail_msg("client: %s", atr_err_msg(&err));
    struct atr_akv_error fail;
    assert_int_equal(atr_akv_token_probe(c, FAKE_TENANT, &fail, &err), ATR_OK);
    atr_test_clock_advance(&W.clock, 5000); /* the second assertion has the new time */
    assert_int_equal(atr_akv_token_probe(c, FAKE_TENANT, &fail, &err), ATR_OK);
    atr_akv_client_free(c);

    pthread_mutex_lock(&W.lock);
    size_t n = W.nbodies;
    pthread_mutex_unlock(&W.lock);
    assert_int_equal(n, 2);
    char *x5t = thumbprint(W.a.cert_pem, EVP_sha1());
    char *x5t256 = thumbprint(W.a.cert_pem, EVP_sha256());
    assert_int_equal(strlen(x5t), ATR_X509_X5T_LEN);
    struct atr_rsa_key *pub = NULL;
    char *pub_pem = pub_pem_of(W.a.pkey);
    assert_int_equal(atr_rsa_key_parse_pem(&pub, pub_pem, strlen(pub_pem), NULL), ATR_OK);
    /* the first body was checked at T0, the second 5 s later */
    atr_test_clock_set(&W.clock, T0_MS);
    char *jti1 = check_body(W.bodies[0], x5t, x5t256, pub);
    atr_test_clock_set(&W.clock, T0_MS + 5000);
    char *jti2 = check_body(W.bodies[1], x5t, x5t256, pub);
    assert_string_not_equal(jti1, jti2);
    atr_test_clock_set(&W.clock, T0_MS);
    atr_free(jti1);
    atr_free(jti2);
    atr_free(x5t);
    atr_free(x5t256);
    atr_free(pub_pem);
    atr_rsa_key_free(pub);
}

static void test_new_refusals(void **state)
{
    (void)state;
    struct atr_akv_client_opts o;
    const char *url = W.idp_url;
    const char *id = W.app.app_id;

    /* a certificate and a key that do not belong together */
    opts_for(&o, url, id, W.a.cert_pem, W.b.key_pem);
    expect_refused(&o, ATR_E_INVALID, "does not belong");
    opts_for(&o, url, id, W.a_other.cert_pem, W.a.key_pem);
    expect_refused(&o, ATR_E_INVALID, "does not belong");

    /* both credentials, neither, half of one */
    opts_for(&o, url, id, W.a.cert_pem, W.a.key_pem);
    o.client_secret = "s3cret";
    expect_refused(&o, ATR_E_CONFIG, "not both");
    opts_for(&o, url, id, NULL, NULL);
    expect_refused(&o, ATR_E_CONFIG, "required");
    opts_for(&o, url, id, W.a.cert_pem, NULL);
    expect_refused(&o, ATR_E_CONFIG, "both the certificate and its private key");
    opts_for(&o, url, id, NULL, W.a.key_pem);
    expect_refused(&o, ATR_E_CONFIG, "both the certificate and its private key");

    /* a certificate that is not PEM: DER-looking junk, a key, a damaged block */
    opts_for(&o, url, id, "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", W.a.key_pem);
    expect_refused(&o, ATR_E_INVALID, "PEM");
    opts_for(&o, url, id, W.a.key_pem, W.a.key_pem);
    expect_refused(&o, ATR_E_INVALID, "PEM");
    opts_for(&o, url, id, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
             W.a.key_pem);
    expect_refused(&o, ATR_E_INVALID, "not a readable PEM certificate");

    /* keys: PKCS#1, public, non-RSA, RSA under 2048 bits */
    char *pkcs1 = key_pem_of(W.a.pkey, 1);
    opts_for(&o, url, id, W.a.cert_pem, pkcs1);
    expect_refused(&o, ATR_E_INVALID, "PKCS#8");
    char *pub = pub_pem_of(W.a.pkey);
    opts_for(&o, url, id, W.a.cert_pem, pub);
    expect_refused(&o, ATR_E_INVALID, "public key");
    struct cred ec;
    cred_make(&ec, EVP_EC_gen("P-256"), "ec", 7);
    opts_for(&o, url, id, W.a.cert_pem, ec.key_pem);
    expect_refused(&o, ATR_E_INVALID, "RSA private key");
    opts_for(&o, url, id, ec.cert_pem, ec.key_pem);
    expect_refused(&o, ATR_E_INVALID, "RSA key");
    struct cred small;
    cred_make(&small, EVP_RSA_gen(1024), "small", 8);
    opts_for(&o, url, id, small.cert_pem, small.key_pem);
    expect_refused(&o, ATR_E_INVALID, "at least 2048 bits");

    /* the good pair is accepted (and a secret alone still is) */
    struct atr_akv_client *c = NULL;
    opts_for(&o, url, id, W.a.cert_pem, W.a.key_pem);
    assert_int_equal(atr_akv_client_new(&c, &o, NULL), ATR_OK);
    atr_akv_client_free(c);
    opts_for(&o, url, id, NULL, NULL);
    o.client_secret = "s3cret";
    assert_int_equal(atr_akv_client_new(&c, &o, NULL), ATR_OK);
    atr_akv_client_free(c);

    cred_free(&ec, 1);
    cred_free(&small, 1);
    atr_wipe(pkcs1, strlen(pkcs1));
    atr_free(pkcs1);
    atr_free(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idp_token),
        cmocka_unit_test(test_idp_refusals),
        cmocka_unit_test(test_assertion_shape),
        cmocka_unit_test(test_new_refusals),
    };
    return cmocka_run_group_tests(tests, world_setup, world_teardown);
}
