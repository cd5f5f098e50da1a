/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "base/buf.h"
#include "crypto/rsa.h"
#include "crypto/sig.h"

static struct atr_rsa_key *key;   /* 2048-bit private key */
static struct atr_rsa_key *pub;   /* its public part */
static struct atr_rsa_key *other; /* an unrelated key */

static const atr_sig_alg all_algs[] = {ATR_SIG_RS256, ATR_SIG_RS384, ATR_SIG_RS512,
                                       ATR_SIG_PS256, ATR_SIG_PS384, ATR_SIG_PS512};

static const char msg_text[] = "the quick brown fox jumps over the lazy dog";

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    if (atr_rsa_key_generate(&key, 2048, NULL) != ATR_OK ||
        atr_rsa_key_dup_public(&pub, key, NULL) != ATR_OK ||
        atr_rsa_key_generate(&other, 2048, NULL) != ATR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atr_rsa_key_free(key);
    atr_rsa_key_free(pub);
    atr_rsa_key_free(other);
    return 0;
}

static struct atr_span msg(void)
{
    return atr_span_of(msg_text, sizeof(msg_text) - 1);
}

static void expect_bad(atr_sig_alg alg, struct atr_span m, struct atr_span sig)
{
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_sig_verify(pub, alg, m, sig, &err), ATR_E_AUTH_FAILED);
    assert_int_equal(err.code, ATR_E_AUTH_FAILED);
    assert_string_equal(err.msg, "signature verification failed");
}

static void test_names(void **state)
{
    (void)state;
    static const char *const names[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"};
    static const size_t lens[] = {32, 48, 64, 32, 48, 64};
    for (size_t i = 0; i < ATR_ARRAY_LEN(names); i++) {
        atr_sig_alg a = (atr_sig_alg)0;
        assert_int_equal(atr_sig_alg_from_name(&a, names[i], NULL), ATR_OK);
        assert_int_equal(a, all_algs[i]);
        assert_string_equal(atr_sig_alg_name(a), names[i]);
        assert_int_equal(atr_sig_alg_digest_len(a), lens[i]);
    }
    static const char *const bad[] = {"none", "HS256", "rs256", "RS256 ", "ES256", "", "RS1"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        atr_sig_alg a = ATR_SIG_RS256;
        struct atr_err err;
        atr_err_clear(&err);
        assert_int_equal(atr_sig_alg_from_name(&a, bad[i], &err), ATR_E_UNSUPPORTED);
        assert_int_equal(a, ATR_SIG_RS256); /* untouched */
    }
    atr_sig_alg a;
    assert_int_equal(atr_sig_alg_from_name(&a, NULL, NULL), ATR_E_INVALID);
    assert_null(atr_sig_alg_name((atr_sig_alg)0));
    assert_null(atr_sig_alg_name((atr_sig_alg)7));
    assert_int_equal(atr_sig_alg_digest_len((atr_sig_alg)0), 0);
}

static void test_round_trip_and_tamper(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_algs); i++) {
        atr_sig_alg alg = all_algs[i];
        struct atr_buf sig;
        atr_buf_init(&sig, 1024);
        assert_int_equal(atr_sig_sign(&sig, key, alg, msg(), NULL), ATR_OK);
        assert_int_equal(sig.len, 256);
        assert_int_equal(atr_sig_verify(pub, alg, msg(), atr_buf_span(&sig), NULL), ATR_OK);
        assert_int_equal(atr_sig_verify(key, alg, msg(), atr_buf_span(&sig), NULL), ATR_OK);

        /* a different message */
        expect_bad(alg, atr_span_of(msg_text, sizeof(msg_text) - 2), atr_buf_span(&sig));
        /* every region of the signature matters */
        static const size_t at[] = {0, 1, 100, 254, 255};
        for (size_t j = 0; j < ATR_ARRAY_LEN(at); j++) {
            sig.ptr[at[j]] ^= 0x01;
            expect_bad(alg, msg(), atr_buf_span(&sig));
            sig.ptr[at[j]] ^= 0x01;
        }
        /* wrong lengths: truncated, extended, empty */
        expect_bad(alg, msg(), atr_span_of(sig.ptr, 255));
        expect_bad(alg, msg(), atr_span_of(sig.ptr + 1, 255));
        expect_bad(alg, msg(), atr_span_of(NULL, 0));
        uint8_t longer[257];
        memcpy(longer, sig.ptr, 256);
        longer[256] = 0;
        expect_bad(alg, msg(), atr_span_of(longer, sizeof(longer)));
        /* all zeros and all ones */
        uint8_t fill[256];
        memset(fill, 0, sizeof(fill));
        expect_bad(alg, msg(), atr_span_of(fill, sizeof(fill)));
        memset(fill, 0xff, sizeof(fill));
        expect_bad(alg, msg(), atr_span_of(fill, sizeof(fill)));
        /* another key */
        assert_int_equal(atr_sig_verify(other, alg, msg(), atr_buf_span(&sig), NULL),
                         ATR_E_AUTH_FAILED);
        /* every other algorithm rejects it */
        for (size_t k = 0; k < ATR_ARRAY_LEN(all_algs); k++) {
            if (k != i)
                expect_bad(all_algs[k], msg(), atr_buf_span(&sig));
        }
        /* still valid after all that */
        assert_int_equal(atr_sig_verify(pub, alg, msg(), atr_buf_span(&sig), NULL), ATR_OK);
        atr_buf_cleanup(&sig);
    }
}

static void test_empty_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_algs); i++) {
        struct atr_buf sig;
        atr_buf_init(&sig, 1024);
        assert_int_equal(atr_sig_sign(&sig, key, all_algs[i], atr_span_of(NULL, 0), NULL), ATR_OK);
        assert_int_equal(
            atr_sig_verify(pub, all_algs[i], atr_span_of(NULL, 0), atr_buf_span(&sig), NULL),
            ATR_OK);
        expect_bad(all_algs[i], atr_span_of("x", 1), atr_buf_span(&sig));
        atr_buf_cleanup(&sig);
    }
}

/* PKCS#1 v1.5 is deterministic, PSS is randomised. */
static void test_determinism(void **state)
{
    (void)state;
    struct atr_buf a, b;
    atr_buf_init(&a, 1024);
    atr_buf_init(&b, 1024);
    assert_int_equal(atr_sig_sign(&a, key, ATR_SIG_RS256, msg(), NULL), ATR_OK);
    assert_int_equal(atr_sig_sign(&b, key, ATR_SIG_RS256, msg(), NULL), ATR_OK);
    assert_memory_equal(a.ptr, b.ptr, 256);
    atr_buf_reset(&a);
    atr_buf_reset(&b);
    assert_int_equal(atr_sig_sign(&a, key, ATR_SIG_PS256, msg(), NULL), ATR_OK);
    assert_int_equal(atr_sig_sign(&b, key, ATR_SIG_PS256, msg(), NULL), ATR_OK);
    assert_memory_not_equal(a.ptr, b.ptr, 256);
    atr_buf_cleanup(&a);
    atr_buf_cleanup(&b);
}

/* Digest form and message form agree, both ways, for every algorithm. */
static void test_digest_form(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_algs); i++) {
        atr_sig_alg alg = all_algs[i];
        uint8_t d[ATR_SIG_MAX_DIGEST];
        size_t dlen = 0;
        assert_int_equal(atr_sig_digest(d, &dlen, alg, msg(), NULL), ATR_OK);
        assert_int_equal(dlen, atr_sig_alg_digest_len(alg));

        struct atr_buf s1, s2;
        atr_buf_init(&s1, 1024);
        atr_buf_init(&s2, 1024);
        assert_int_equal(atr_sig_sign_digest(&s1, key, alg, atr_span_of(d, dlen), NULL), ATR_OK);
        assert_int_equal(s1.len, 256);
        assert_int_equal(atr_sig_sign(&s2, key, alg, msg(), NULL), ATR_OK);
        /* digest-signed verifies as a message signature and vice versa */
        assert_int_equal(atr_sig_verify(pub, alg, msg(), atr_buf_span(&s1), NULL), ATR_OK);
        assert_int_equal(
            atr_sig_verify_digest(pub, alg, atr_span_of(d, dlen), atr_buf_span(&s2), NULL), ATR_OK);
        assert_int_equal(
            atr_sig_verify_digest(pub, alg, atr_span_of(d, dlen), atr_buf_span(&s1), NULL), ATR_OK);
        if (i < 3) /* PKCS#1 v1.5: byte-identical */
            assert_memory_equal(s1.ptr, s2.ptr, 256);

        /* negative: tampered digest, tampered signature, wrong length */
        struct atr_err err;
        d[0] ^= 1;
        atr_err_clear(&err);
        assert_int_equal(
            atr_sig_verify_digest(pub, alg, atr_span_of(d, dlen), atr_buf_span(&s1), &err),
            ATR_E_AUTH_FAILED);
        assert_string_equal(err.msg, "signature verification failed");
        d[0] ^= 1;
        s1.ptr[17] ^= 0x80;
        assert_int_equal(
            atr_sig_verify_digest(pub, alg, atr_span_of(d, dlen), atr_buf_span(&s1), NULL),
            ATR_E_AUTH_FAILED);
        s1.ptr[17] ^= 0x80;
        assert_int_equal(
            atr_sig_verify_digest(pub, alg, atr_span_of(d, dlen), atr_span_of(s1.ptr, 128), NULL),
            ATR_E_AUTH_FAILED);
        /* a digest of the wrong length is an argument error */
        assert_int_equal(
            atr_sig_verify_digest(pub, alg, atr_span_of(d, dlen - 1), atr_buf_span(&s1), NULL),
            ATR_E_INVALID);
        size_t before = s2.len;
        assert_int_equal(atr_sig_sign_digest(&s2, key, alg, atr_span_of(d, dlen + 1), NULL),
                         ATR_E_INVALID);
        assert_int_equal(s2.len, before);
        assert_int_equal(atr_sig_sign_digest(&s2, key, alg, atr_span_of(msg_text, 20), NULL),
                         ATR_E_INVALID);
        atr_buf_cleanup(&s1);
        atr_buf_cleanup(&s2);
    }
}

/* Interoperability: PSS as OpenSSL makes it with salt = digest length verifies; other salts do not.
 */
static void test_pss_parameters(void **state)
{
    (void)state;
    static const struct {
        int saltlen;
        atr_status want;
    } cases[] = {{32, ATR_OK}, {0, ATR_E_AUTH_FAILED}, {20, ATR_E_AUTH_FAILED}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(cases); i++) {
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        assert_non_null(mctx);
        assert_int_equal(EVP_DigestSignInit(mctx, &pctx, EVP_sha256(), NULL, atr_rsa_key_pkey(key)),
                         1);
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, cases[i].saltlen) > 0);
        uint8_t sig[256];
        size_t slen = sizeof(sig);
        assert_int_equal(
            EVP_DigestSign(mctx, sig, &slen, (const uint8_t *)msg_text, sizeof(msg_text) - 1), 1);
        EVP_MD_CTX_free(mctx);
        assert_int_equal(atr_sig_verify(pub, ATR_SIG_PS256, msg(), atr_span_of(sig, slen), NULL),
                         cases[i].want);
    }
    /* and a plain OpenSSL RS256 signature verifies */
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    assert_non_null(mctx);
    assert_int_equal(EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, atr_rsa_key_pkey(key)), 1);
    uint8_t sig[256];
    size_t slen = sizeof(sig);
    assert_int_equal(
        EVP_DigestSign(mctx, sig, &slen, (const uint8_t *)msg_text, sizeof(msg_text) - 1), 1);
    EVP_MD_CTX_free(mctx);
    assert_int_equal(atr_sig_verify(pub, ATR_SIG_RS256, msg(), atr_span_of(sig, slen), NULL),
                     ATR_OK);
}

static void test_argument_errors(void **state)
{
    (void)state;
    struct atr_buf sig;
    atr_buf_init(&sig, 1024);
    struct atr_err err;
    atr_err_clear(&err);
    /* signing with a public key */
    assert_int_equal(atr_sig_sign(&sig, pub, ATR_SIG_RS256, msg(), &err), ATR_E_INVALID);
    assert_int_equal(sig.len, 0);
    uint8_t d[32] = {0};
    assert_int_equal(atr_sig_sign_digest(&sig, pub, ATR_SIG_PS256, atr_span_of(d, 32), NULL),
                     ATR_E_INVALID);
    /* an algorithm outside the enum */
    assert_int_equal(atr_sig_sign(&sig, key, (atr_sig_alg)0, msg(), NULL), ATR_E_INVALID);
    assert_int_equal(atr_sig_sign(&sig, key, (atr_sig_alg)7, msg(), NULL), ATR_E_INVALID);
    assert_int_equal(atr_sig_verify(pub, (atr_sig_alg)0, msg(), atr_span_of(d, 32), NULL),
                     ATR_E_INVALID);
    assert_int_equal(atr_sig_sign_digest(&sig, key, (atr_sig_alg)9, atr_span_of(d, 32), NULL),
                     ATR_E_INVALID);
    assert_int_equal(
        atr_sig_verify_digest(pub, (atr_sig_alg)0, atr_span_of(d, 32), atr_span_of(d, 32), NULL),
        ATR_E_INVALID);
    size_t dl = 0;
    uint8_t dd[ATR_SIG_MAX_DIGEST];
    assert_int_equal(atr_sig_digest(dd, &dl, (atr_sig_alg)0, msg(), NULL), ATR_E_INVALID);
    assert_int_equal(sig.len, 0);
    atr_buf_cleanup(&sig);

    /* a buffer without room for the signature */
    struct atr_buf small;
    atr_buf_init(&small, 100);
    assert_int_equal(atr_sig_sign(&small, key, ATR_SIG_RS256, msg(), NULL), ATR_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    atr_buf_cleanup(&small);

    /* signatures append */
    struct atr_buf two;
    atr_buf_init(&two, 1024);
    assert_int_equal(atr_buf_append(&two, "ab", 2), ATR_OK);
    assert_int_equal(atr_sig_sign(&two, key, ATR_SIG_RS512, msg(), NULL), ATR_OK);
    assert_int_equal(two.len, 258);
    assert_memory_equal(two.ptr, "ab", 2);
    assert_int_equal(atr_sig_verify(pub, ATR_SIG_RS512, msg(), atr_span_of(two.ptr + 2, 256), NULL),
                     ATR_OK);
    atr_buf_cleanup(&two);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),           cmocka_unit_test(test_round_trip_and_tamper),
        cmocka_unit_test(test_empty_message),   cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_digest_form),     cmocka_unit_test(test_pss_parameters),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
