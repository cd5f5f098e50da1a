/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/secmem.h"
#include "crypto/rsa.h"

/* Generated once: 4096-bit generation takes seconds. */
static struct atr_rsa_key *k2048, *k3072, *k4096;

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    if (atr_rsa_key_generate(&k2048, 2048, NULL) != ATR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atr_rsa_key_free(k2048);
    atr_rsa_key_free(k3072);
    atr_rsa_key_free(k4096);
    return 0;
}

static struct atr_rsa_key *key_of(unsigned bits)
{
    struct atr_rsa_key **slot = bits == 2048 ? &k2048 : bits == 3072 ? &k3072 : &k4096;
    if (*slot == NULL)
        assert_int_equal(atr_rsa_key_generate(slot, bits, NULL), ATR_OK);
    return *slot;
}

static void test_generate_sizes(void **state)
{
    (void)state;
    struct atr_rsa_key *k = (struct atr_rsa_key *)&k;
    struct atr_err err;
    atr_err_clear(&err);
    static const unsigned bad[] = {0, 512, 1024, 2047, 2049, 8192, 16384};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        assert_int_equal(atr_rsa_key_generate(&k, bad[i], &err), ATR_E_INVALID);
        assert_null(k);
    }
    struct atr_rsa_key *a = key_of(2048);
    assert_int_equal(atr_rsa_key_bits(a), 2048);
    assert_int_equal(atr_rsa_key_size(a), 256);
    assert_true(atr_rsa_key_has_private(a));
    assert_non_null(atr_rsa_key_pkey(a));
    assert_int_equal(atr_rsa_key_bits(NULL), 0);
    assert_false(atr_rsa_key_has_private(NULL));
    atr_rsa_key_free(NULL);

    /* e is 65537, n has no leading zero byte */
    struct atr_buf e, n;
    atr_buf_init(&e, 16);
    atr_buf_init(&n, 1024);
    assert_int_equal(atr_rsa_key_get_component(&e, a, ATR_RSA_PART_E, NULL), ATR_OK);
    assert_int_equal(e.len, 3);
    assert_memory_equal(e.ptr, "\x01\x00\x01", 3);
    assert_int_equal(atr_rsa_key_get_component(&n, a, ATR_RSA_PART_N, NULL), ATR_OK);
    assert_int_equal(n.len, 256);
    assert_true(n.ptr[0] & 0x80);
    atr_buf_cleanup(&e);
    atr_buf_cleanup(&n);
}

static void test_alg_names(void **state)
{
    (void)state;
    static const char *const names[] = {"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"};
    static const atr_rsa_alg algs[] = {ATR_RSA_OAEP, ATR_RSA_OAEP_256, ATR_RSA1_5};
    for (size_t i = 0; i < 3; i++) {
        atr_rsa_alg a = (atr_rsa_alg)0;
        assert_int_equal(atr_rsa_alg_from_name(&a, names[i], NULL), ATR_OK);
        assert_int_equal(a, algs[i]);
        assert_string_equal(atr_rsa_alg_name(algs[i]), names[i]);
    }
    atr_rsa_alg a = ATR_RSA_OAEP;
    static const char *const bad[] = {"rsa-oaep", "RSA-OAEP-384", "RSA-OAEP ", "", "RS256"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++)
        assert_int_equal(atr_rsa_alg_from_name(&a, bad[i], NULL), ATR_E_UNSUPPORTED);
    assert_int_equal(atr_rsa_alg_from_name(&a, NULL, NULL), ATR_E_INVALID);
    assert_null(atr_rsa_alg_name((atr_rsa_alg)0));
    assert_null(atr_rsa_alg_name((atr_rsa_alg)4));
    struct atr_rsa_padding p;
    assert_int_equal(atr_rsa_alg_padding(&p, ATR_RSA_OAEP), ATR_OK);
    assert_int_equal(p.pad, ATR_RSA_PAD_OAEP);
    assert_int_equal(p.oaep_md, ATR_RSA_MD_SHA1);
    assert_int_equal(p.mgf1_md, ATR_RSA_MD_SHA1);
    assert_int_equal(atr_rsa_alg_padding(&p, ATR_RSA_OAEP_256), ATR_OK);
    assert_int_equal(p.oaep_md, ATR_RSA_MD_SHA256);
    assert_int_equal(p.mgf1_md, ATR_RSA_MD_SHA256);
    assert_int_equal(atr_rsa_alg_padding(&p, ATR_RSA1_5), ATR_OK);
    assert_int_equal(p.pad, ATR_RSA_PAD_PKCS1);
    assert_int_equal(atr_rsa_alg_padding(&p, (atr_rsa_alg)0), ATR_E_INVALID);
}

/* wrap with a public copy, unwrap with the private key, for every algorithm */
static void round_trips(unsigned bits)
{
    struct atr_rsa_key *priv = key_of(bits);
    struct atr_rsa_key *pub = NULL;
    assert_int_equal(atr_rsa_key_dup_public(&pub, priv, NULL), ATR_OK);
    assert_false(atr_rsa_key_has_private(pub));
    assert_int_equal(atr_rsa_key_bits(pub), bits);
    struct atr_secret tk = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&tk, 32), ATR_OK);
    struct atr_span plain = atr_span_of(atr_secret_cdata(&tk), 32);
    for (int a = ATR_RSA_OAEP; a <= ATR_RSA1_5; a++) {
        struct atr_buf w1, w2;
        atr_buf_init(&w1, 1024);
        atr_buf_init(&w2, 1024);
        assert_int_equal(atr_rsa_wrap(&w1, pub, (atr_rsa_alg)a, plain, NULL), ATR_OK);
        assert_int_equal(w1.len, bits / 8);
        assert_int_equal(atr_rsa_wrap(&w2, priv, (atr_rsa_alg)a, plain, NULL), ATR_OK);
        /* randomized padding */
        assert_memory_not_equal(w1.ptr, w2.ptr, w1.len);
        struct atr_secret out = ATR_SECRET_INIT;
        assert_int_equal(atr_rsa_unwrap(&out, priv, (atr_rsa_alg)a, atr_buf_span(&w1), NULL),
                         ATR_OK);
        assert_true(CRYPTO_secure_allocated(atr_secret_cdata(&out)));
        assert_int_equal(atr_secret_len(&out), 32);
        assert_memory_equal(atr_secret_cdata(&out), atr_secret_cdata(&tk), 32);
        atr_secret_cleanup(&out);
        assert_int_equal(atr_rsa_unwrap(&out, priv, (atr_rsa_alg)a, atr_buf_span(&w2), NULL),
                         ATR_OK);
        atr_secret_cleanup(&out);
        /* a public key cannot unwrap */
        assert_int_equal(atr_rsa_unwrap(&out, pub, (atr_rsa_alg)a, atr_buf_span(&w1), NULL),
                         ATR_E_INVALID);
        atr_buf_cleanup(&w1);
        atr_buf_cleanup(&w2);
    }
    atr_secret_cleanup(&tk);
    atr_rsa_key_free(pub);
}

static void test_round_trip_2048(void **state)
{
    (void)state;
    round_trips(2048);
}

static void test_round_trip_3072(void **state)
{
    (void)state;
    round_trips(3072);
}

static void test_round_trip_4096(void **state)
{
    (void)state;
    round_trips(4096);
}

static void test_unwrap_rejections(void **state)
{
    (void)state;
    struct atr_rsa_key *priv = key_of(2048);
    struct atr_rsa_key *other = key_of(3072);
    uint8_t tk[32];
    memset(tk, 0x42, sizeof(tk));
    for (int a = ATR_RSA_OAEP; a <= ATR_RSA1_5; a++) {
        struct atr_buf w;
        atr_buf_init(&w, 1024);
        assert_int_equal(atr_rsa_wrap(&w, priv, (atr_rsa_alg)a, atr_span_of(tk, 32), NULL), ATR_OK);
        struct atr_secret out = ATR_SECRET_INIT;
        struct atr_err err;
        char first_msg[ATR_ERR_MSG_MAX] = "";
        /* tampering anywhere: one code and one message for every padding failure */
        for (size_t i = 0; i < w.len; i += 17) {
            w.ptr[i] ^= 0x01;
            atr_err_clear(&err);
            atr_status rc = atr_rsa_unwrap(&out, priv, (atr_rsa_alg)a, atr_buf_span(&w), &err);
            w.ptr[i] ^= 0x01;
            if (rc == ATR_OK) {
                /* PKCS#1 v1.5 has no integrity: a flip may still give valid padding */
                assert_int_equal(a, ATR_RSA1_5);
                assert_memory_not_equal(atr_secret_cdata(&out), tk,
                                        atr_secret_len(&out) < 32 ? atr_secret_len(&out) : 32);
                atr_secret_cleanup(&out);
                continue;
            }
            assert_int_equal(rc, ATR_E_AUTH_FAILED);
            assert_false(atr_secret_is_set(&out));
            if (first_msg[0] == '\0')
                memcpy(first_msg, err.msg, sizeof(first_msg));
            assert_string_equal(err.msg, first_msg);
        }
        /* the wrong algorithm (except where PKCS#1 is asked to read OAEP, also rejected) */
        int wrong = a == ATR_RSA_OAEP ? ATR_RSA_OAEP_256 : ATR_RSA_OAEP;
        assert_int_equal(atr_rsa_unwrap(&out, priv, (atr_rsa_alg)wrong, atr_buf_span(&w), NULL),
                         ATR_E_AUTH_FAILED);
        /* the wrong key: wrong length for 3072 bits */
        assert_int_equal(atr_rsa_unwrap(&out, other, (atr_rsa_alg)a, atr_buf_span(&w), NULL),
                         ATR_E_INVALID);
        /* truncated, extended, empty */
        assert_int_equal(
            atr_rsa_unwrap(&out, priv, (atr_rsa_alg)a, atr_span_of(w.ptr, w.len - 1), NULL),
            ATR_E_INVALID);
        assert_int_equal(atr_buf_append(&w, "", 1), ATR_OK);
        assert_int_equal(atr_rsa_unwrap(&out, priv, (atr_rsa_alg)a, atr_buf_span(&w), NULL),
                         ATR_E_INVALID);
        assert_int_equal(atr_rsa_unwrap(&out, priv, (atr_rsa_alg)a, atr_span_of(NULL, 0), NULL),
                         ATR_E_INVALID);
        /* unknown algorithm */
        assert_int_equal(atr_rsa_unwrap(&out, priv, (atr_rsa_alg)0, atr_span_of(w.ptr, 256), NULL),
                         ATR_E_INVALID);
        assert_false(atr_secret_is_set(&out));
        atr_buf_cleanup(&w);
    }
    /* a ciphertext >= n (all 0xff) */
    uint8_t big[256];
    memset(big, 0xff, sizeof(big));
    struct atr_secret out = ATR_SECRET_INIT;
    assert_int_equal(atr_rsa_unwrap(&out, priv, ATR_RSA_OAEP_256, atr_span_of(big, 256), NULL),
                     ATR_E_AUTH_FAILED);
    /* wrapping nothing, or too much */
    struct atr_buf w;
    atr_buf_init(&w, 1024);
    assert_int_equal(atr_rsa_wrap(&w, priv, ATR_RSA_OAEP, atr_span_of(NULL, 0), NULL),
                     ATR_E_INVALID);
    assert_int_equal(atr_rsa_wrap(&w, priv, (atr_rsa_alg)7, atr_span_of(tk, 32), NULL),
                     ATR_E_INVALID);
    atr_buf_cleanup(&w);
}

static void test_low_level_oaep_params(void **state)
{
    (void)state;
    struct atr_rsa_key *k = key_of(2048);
    struct atr_rsa_padding p = {ATR_RSA_PAD_OAEP, ATR_RSA_MD_SHA256, ATR_RSA_MD_SHA1,
                                atr_span_str("label")};
    struct atr_buf ct, pt;
    atr_buf_init(&ct, 1024);
    atr_buf_init(&pt, 1024);
    /* longest message: k - 2*hLen - 2 */
    uint8_t msg[256];
    memset(msg, 7, sizeof(msg));
    size_t max = 256 - 2 * 32 - 2;
    assert_int_equal(atr_rsa_encrypt(&ct, k, &p, atr_span_of(msg, max + 1), NULL), ATR_E_INVALID);
    assert_int_equal(atr_rsa_encrypt(&ct, k, &p, atr_span_of(msg, max), NULL), ATR_OK);
    assert_int_equal(atr_rsa_decrypt(&pt, k, &p, atr_buf_span(&ct), NULL), ATR_OK);
    assert_int_equal(pt.len, max);
    assert_memory_equal(pt.ptr, msg, max);
    /* MGF1 digest set on its own: using SHA-256 for MGF1 too must fail */
    struct atr_rsa_padding q = p;
    q.mgf1_md = ATR_RSA_MD_SHA256;
    atr_buf_reset(&pt);
    pt.len = 0;
    assert_int_equal(atr_rsa_decrypt(&pt, k, &q, atr_buf_span(&ct), NULL), ATR_E_AUTH_FAILED);
    /* other label, no label */
    q = p;
    q.label = atr_span_str("labem");
    assert_int_equal(atr_rsa_decrypt(&pt, k, &q, atr_buf_span(&ct), NULL), ATR_E_AUTH_FAILED);
    q.label = atr_span_of(NULL, 0);
    assert_int_equal(atr_rsa_decrypt(&pt, k, &q, atr_buf_span(&ct), NULL), ATR_E_AUTH_FAILED);
    assert_int_equal(pt.len, 0);
    /* an empty message is fine at this level */
    atr_buf_reset(&ct);
    ct.len = 0;
    assert_int_equal(atr_rsa_encrypt(&ct, k, &p, atr_span_of(NULL, 0), NULL), ATR_OK);
    assert_int_equal(atr_rsa_decrypt(&pt, k, &p, atr_buf_span(&ct), NULL), ATR_OK);
    assert_int_equal(pt.len, 0);
    /* bad parameters */
    q = p;
    q.oaep_md = (atr_rsa_md)0;
    assert_int_equal(atr_rsa_encrypt(&ct, k, &q, atr_span_of(msg, 1), NULL), ATR_E_INVALID);
    q = p;
    q.pad = (atr_rsa_pad)9;
    assert_int_equal(atr_rsa_decrypt(&pt, k, &q, atr_buf_span(&ct), NULL), ATR_E_INVALID);
    assert_int_equal(atr_rsa_decrypt(&pt, k, NULL, atr_buf_span(&ct), NULL), ATR_E_INVALID);
    /* PKCS#1 v1.5: at most k - 11 */
    struct atr_rsa_padding v15 = {ATR_RSA_PAD_PKCS1, (atr_rsa_md)0, (atr_rsa_md)0,
                                  atr_span_of(NULL, 0)};
    atr_buf_reset(&ct);
    ct.len = 0;
    assert_int_equal(atr_rsa_encrypt(&ct, k, &v15, atr_span_of(msg, 246), NULL), ATR_E_INVALID);
    assert_int_equal(atr_rsa_encrypt(&ct, k, &v15, atr_span_of(msg, 245), NULL), ATR_OK);
    atr_buf_reset(&pt);
    pt.len = 0;
    assert_int_equal(atr_rsa_decrypt(&pt, k, &v15, atr_buf_span(&ct), NULL), ATR_OK);
    assert_int_equal(pt.len, 245);
    atr_buf_cleanup(&ct);
    atr_buf_cleanup(&pt);
}

static void test_pem_round_trip(void **state)
{
    (void)state;
    struct atr_rsa_key *k = key_of(2048);
    struct atr_secret priv_pem = ATR_SECRET_INIT;
    struct atr_buf pub_pem, n1, n2;
    atr_buf_init(&pub_pem, 1 << 16);
    atr_buf_init(&n1, 1024);
    atr_buf_init(&n2, 1024);
    assert_int_equal(atr_rsa_key_format_pem_private(&priv_pem, k, NULL), ATR_OK);
    assert_true(CRYPTO_secure_allocated(atr_secret_cdata(&priv_pem)));
    assert_memory_equal(atr_secret_cdata(&priv_pem), "-----BEGIN PRIVATE KEY-----\n", 28);
    assert_int_equal(atr_rsa_key_format_pem_public(&pub_pem, k, NULL), ATR_OK);
    assert_memory_equal(pub_pem.ptr, "-----BEGIN PUBLIC KEY-----\n", 27);

    struct atr_rsa_key *a = NULL, *b = NULL;
    assert_int_equal(atr_rsa_key_parse_pem(&a, (const char *)atr_secret_cdata(&priv_pem),
                                           atr_secret_len(&priv_pem), NULL),
                     ATR_OK);
    assert_true(atr_rsa_key_has_private(a));
    assert_int_equal(atr_rsa_key_parse_pem(&b, (const char *)pub_pem.ptr, pub_pem.len, NULL),
                     ATR_OK);
    assert_false(atr_rsa_key_has_private(b));
    assert_int_equal(atr_rsa_key_get_component(&n1, a, ATR_RSA_PART_N, NULL), ATR_OK);
    assert_int_equal(atr_rsa_key_get_component(&n2, b, ATR_RSA_PART_N, NULL), ATR_OK);
    assert_int_equal(n1.len, n2.len);
    assert_memory_equal(n1.ptr, n2.ptr, n1.len);

    /* the public PEM of the re-imported key is byte-identical */
    struct atr_buf again;
    atr_buf_init(&again, 1 << 16);
    assert_int_equal(atr_rsa_key_format_pem_public(&again, b, NULL), ATR_OK);
    assert_int_equal(again.len, pub_pem.len);
    assert_memory_equal(again.ptr, pub_pem.ptr, pub_pem.len);
    atr_buf_cleanup(&again);

    /* surrounding whitespace is fine */
    struct atr_buf padded;
    atr_buf_init(&padded, 1 << 16);
    assert_int_equal(atr_buf_append_str(&padded, "\n  \n"), ATR_OK);
    assert_int_equal(atr_buf_append(&padded, pub_pem.ptr, pub_pem.len), ATR_OK);
    assert_int_equal(atr_buf_append_str(&padded, "\n\n"), ATR_OK);
    struct atr_rsa_key *c = NULL;
    assert_int_equal(atr_rsa_key_parse_pem(&c, (const char *)padded.ptr, padded.len, NULL), ATR_OK);
    atr_rsa_key_free(c);
    atr_buf_cleanup(&padded);

    /* a public key has no private PEM and no private parts */
    struct atr_secret none = ATR_SECRET_INIT;
    assert_int_equal(atr_rsa_key_format_pem_private(&none, b, NULL), ATR_E_INVALID);
    assert_false(atr_secret_is_set(&none));
    assert_int_equal(atr_rsa_key_get_component(&n1, b, ATR_RSA_PART_D, NULL), ATR_E_INVALID);
    assert_int_equal(atr_rsa_key_get_component(&n1, b, (atr_rsa_part)0, NULL), ATR_E_INVALID);

    atr_rsa_key_free(a);
    atr_rsa_key_free(b);
    atr_secret_cleanup(&priv_pem);
    atr_buf_cleanup(&pub_pem);
    atr_buf_cleanup(&n1);
    atr_buf_cleanup(&n2);
}

static void test_der_import(void **state)
{
    (void)state;
    struct atr_rsa_key *k = key_of(2048);
    EVP_PKEY *pkey = atr_rsa_key_pkey(k);
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pkey, &der);
    assert_true(n > 0);
    struct atr_rsa_key *pub = NULL;
    assert_int_equal(atr_rsa_key_parse_der(&pub, atr_span_of(der, (size_t)n), NULL), ATR_OK);
    assert_false(atr_rsa_key_has_private(pub));
    atr_rsa_key_free(pub);
    /* trailing byte, truncation */
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_rsa_key_parse_der(&pub, atr_span_of(der, (size_t)n - 1), &err),
                     ATR_E_PARSE);
    OPENSSL_free(der);

    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pkey);
    assert_non_null(p8);
    der = NULL;
    n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    assert_true(n > 0);
    struct atr_rsa_key *priv = NULL;
    assert_int_equal(atr_rsa_key_parse_der(&priv, atr_span_of(der, (size_t)n), NULL), ATR_OK);
    assert_true(atr_rsa_key_has_private(priv));
    atr_rsa_key_free(priv);
    unsigned char *longer = OPENSSL_malloc((size_t)n + 1);
    memcpy(longer, der, (size_t)n);
    longer[n] = 0;
    assert_int_equal(atr_rsa_key_parse_der(&priv, atr_span_of(longer, (size_t)n + 1), NULL),
                     ATR_E_PARSE);
    assert_null(priv);
    OPENSSL_clear_free(longer, (size_t)n + 1);
    OPENSSL_clear_free(der, (size_t)n);
    assert_int_equal(atr_rsa_key_parse_der(&priv, atr_span_of(NULL, 0), NULL), ATR_E_PARSE);
    assert_int_equal(atr_rsa_key_parse_der(&priv, atr_span_str("\x30\x03\x02\x01\x00"), NULL),
                     ATR_E_PARSE);
}

/* PEM text of an OpenSSL key in the given form. */
static char *pem_of(EVP_PKEY *pkey, int which)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    if (which == 0)
        assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    else if (which == 1)
        assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    else /* PKCS#1 "RSA PRIVATE KEY" */
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL, NULL),
                         1);
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    char *s = calloc(1, (size_t)n + 1);
    memcpy(s, p, (size_t)n);
    BIO_free(bio);
    return s;
}

static void expect_pem(const char *pem, atr_status want)
{
    struct atr_rsa_key *k = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_rsa_key_parse_pem(&k, pem, strlen(pem), &err);
    if (rc != want)
        fail_msg("PEM parse gave %s (%s), wanted %s", atr_status_name(rc), atr_err_msg(&err),
                 atr_status_name(want));
    if (rc == ATR_OK) {
        assert_non_null(k);
        atr_rsa_key_free(k);
    } else {
        assert_null(k);
        assert_int_equal(err.code, want);
        assert_true(strlen(err.msg) > 0);
    }
}

static void test_pem_rejections(void **state)
{
    (void)state;
    EVP_PKEY *pkey = atr_rsa_key_pkey(key_of(2048));
    char *pub = pem_of(pkey, 1);
    char *priv = pem_of(pkey, 0);
    char *pkcs1 = pem_of(pkey, 2);

    expect_pem(pub, ATR_OK);
    expect_pem(priv, ATR_OK);
    expect_pem(pkcs1, ATR_E_UNSUPPORTED);
    expect_pem("", ATR_E_PARSE);
    expect_pem("hello", ATR_E_PARSE);
    expect_pem("junk\n-----BEGIN PUBLIC KEY-----\n", ATR_E_PARSE);
    expect_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", ATR_E_PARSE);
    expect_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ATR_E_UNSUPPORTED);
    expect_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
               ATR_E_UNSUPPORTED);

    /* truncated: the END line missing */
    char *cut = strdup(pub);
    cut[strlen(cut) - 20] = '\0';
    expect_pem(cut, ATR_E_PARSE);
    free(cut);
    /* a corrupted base64 character */
    char *bad = strdup(pub);
    bad[40] = '*';
    expect_pem(bad, ATR_E_PARSE);
    /* a modified modulus byte (the key no longer parses, or is not valid) */
    free(bad);
    /* trailing data after the block */
    size_t n = strlen(pub);
    char *trail = calloc(1, n + 8);
    memcpy(trail, pub, n);
    memcpy(trail + n, "xyz\n", 4);
    expect_pem(trail, ATR_E_PARSE);
    free(trail);

    /* an EC key is not an RSA key */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    char *ecpem = pem_of(ec, 1);
    expect_pem(ecpem, ATR_E_UNSUPPORTED);
    char *ecpriv = pem_of(ec, 0);
    expect_pem(ecpriv, ATR_E_UNSUPPORTED);
    free(ecpem);
    free(ecpriv);
    EVP_PKEY_free(ec);

    /* too small (512 bits) and smallest accepted (1024 bits) */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    assert_non_null(small);
    char *smallpem = pem_of(small, 0);
    expect_pem(smallpem, ATR_E_INVALID);
    free(smallpem);
    EVP_PKEY_free(small);
    EVP_PKEY *k1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(k1024);
    char *pem1024 = pem_of(k1024, 0);
    expect_pem(pem1024, ATR_OK);
    free(pem1024);
    EVP_PKEY_free(k1024);

    free(pub);
    OPENSSL_cleanse(priv, strlen(priv));
    free(priv);
    OPENSSL_cleanse(pkcs1, strlen(pkcs1));
    free(pkcs1);
}

static void test_components(void **state)
{
    (void)state;
    struct atr_rsa_key *k = key_of(2048);
    struct atr_buf part[8];
    for (int i = 0; i < 8; i++) {
        atr_buf_init(&part[i], 1024);
        assert_int_equal(atr_rsa_key_get_component(&part[i], k, (atr_rsa_part)(i + 1), NULL),
                         ATR_OK);
    }
    struct atr_rsa_components c = {
        atr_buf_span(&part[0]), atr_buf_span(&part[1]), atr_buf_span(&part[2]),
        atr_buf_span(&part[3]), atr_buf_span(&part[4]), atr_buf_span(&part[5]),
        atr_buf_span(&part[6]), atr_buf_span(&part[7]),
    };
    struct atr_rsa_key *a = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_rsa_key_from_components(&a, &c, NULL), ATR_OK);
    assert_true(atr_rsa_key_has_private(a));
    atr_rsa_key_free(a);

    /* public only */
    struct atr_rsa_components pc = {.n = c.n, .e = c.e};
    assert_int_equal(atr_rsa_key_from_components(&a, &pc, NULL), ATR_OK);
    assert_false(atr_rsa_key_has_private(a));
    atr_rsa_key_free(a);

    /* a leading zero byte is harmless */
    struct atr_buf nz;
    atr_buf_init(&nz, 1024);
    assert_int_equal(atr_buf_append(&nz, "", 1), ATR_OK);
    assert_int_equal(atr_buf_append(&nz, part[0].ptr, part[0].len), ATR_OK);
    pc.n = atr_buf_span(&nz);
    assert_int_equal(atr_rsa_key_from_components(&a, &pc, NULL), ATR_OK);
    atr_rsa_key_free(a);
    atr_buf_cleanup(&nz);

    /* incomplete private key */
    struct atr_rsa_components ic = c;
    ic.dq = atr_span_of(NULL, 0);
    assert_int_equal(atr_rsa_key_from_components(&a, &ic, &err), ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "dq"));
    /* inconsistent: dp and dq swapped; d changed; p and q from another key */
    ic = c;
    ic.dp = c.dq;
    ic.dq = c.dp;
    assert_int_equal(atr_rsa_key_from_components(&a, &ic, &err), ATR_E_INVALID);
    part[2].ptr[part[2].len - 1] ^= 2;
    assert_int_equal(atr_rsa_key_from_components(&a, &c, &err), ATR_E_INVALID);
    part[2].ptr[part[2].len - 1] ^= 2;
    /* e = 3 and e = 1 are refused; missing n */
    struct atr_rsa_components e3 = {.n = c.n, .e = atr_span_of("\x03", 1)};
    assert_int_equal(atr_rsa_key_from_components(&a, &e3, &err), ATR_E_INVALID);
    e3.e = atr_span_of("\x01", 1);
    assert_int_equal(atr_rsa_key_from_components(&a, &e3, &err), ATR_E_INVALID);
    struct atr_rsa_components none = {.n = atr_span_of(NULL, 0), .e = c.e};
    assert_int_equal(atr_rsa_key_from_components(&a, &none, &err), ATR_E_INVALID);
    /* even modulus; modulus too small */
    struct atr_buf even;
    atr_buf_init(&even, 1024);
    assert_int_equal(atr_buf_append(&even, part[0].ptr, part[0].len), ATR_OK);
    even.ptr[even.len - 1] &= 0xfe;
    struct atr_rsa_components ev = {.n = atr_buf_span(&even), .e = c.e};
    assert_int_equal(atr_rsa_key_from_components(&a, &ev, &err), ATR_E_INVALID);
    ev.n = atr_span_of(part[0].ptr, 64);
    assert_int_equal(atr_rsa_key_from_components(&a, &ev, &err), ATR_E_INVALID);
    assert_null(a);
    atr_buf_cleanup(&even);
    for (int i = 0; i < 8; i++)
        atr_buf_cleanup(&part[i]);
}

struct thread_arg {
    struct atr_rsa_key *key;
    struct atr_span wrapped;
    int ok;
};

static void *unwrap_thread(void *p)
{
    struct thread_arg *a = p;
    a->ok = 1;
    for (int i = 0; i < 5; i++) {
        struct atr_secret s = ATR_SECRET_INIT;
        if (atr_rsa_unwrap(&s, a->key, ATR_RSA_OAEP_256, a->wrapped, NULL) != ATR_OK ||
            atr_secret_len(&s) != 32)
            a->ok = 0;
        atr_secret_cleanup(&s);
    }
    return NULL;
}

static void test_shared_between_threads(void **state)
{
    (void)state;
    struct atr_rsa_key *k = key_of(2048);
    uint8_t tk[32] = {9};
    struct atr_buf w;
    atr_buf_init(&w, 1024);
    assert_int_equal(atr_rsa_wrap(&w, k, ATR_RSA_OAEP_256, atr_span_of(tk, 32), NULL), ATR_OK);
    pthread_t t[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){k, atr_buf_span(&w), 0};
        assert_int_equal(pthread_create(&t[i], NULL, unwrap_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(args[i].ok);
    }
    atr_buf_cleanup(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_sizes),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_round_trip_2048),
        cmocka_unit_test(test_round_trip_3072),
        cmocka_unit_test(test_round_trip_4096),
        cmocka_unit_test(test_unwrap_rejections),
        cmocka_unit_test(test_low_level_oaep_params),
        cmocka_unit_test(test_pem_round_trip),
        cmocka_unit_test(test_der_import),
        cmocka_unit_test(test_pem_rejections),
        cmocka_unit_test(test_components),
        cmocka_unit_test(test_shared_between_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
