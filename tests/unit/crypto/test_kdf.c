/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include <openssl/crypto.h>

#include "base/secmem.h"
#include "crypto/kdf.h"

static void test_hkdf_rfc5869_case1(void **state)
{
    (void)state;
    struct atr_buf ikm, salt, info, okm;
    atr_buf_init(&ikm, 64);
    atr_buf_init(&salt, 64);
    atr_buf_init(&info, 64);
    atr_buf_init(&okm, 64);
    atr_test_hex(&ikm, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
    atr_test_hex(&salt, "000102030405060708090a0b0c");
    atr_test_hex(&info, "f0f1f2f3f4f5f6f7f8f9");
    atr_test_hex(&okm, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf3400"
                       "7208d5b887185865");
    struct atr_secret out = ATR_SECRET_INIT;
    assert_int_equal(atr_kdf_hkdf_sha256(&out, 42, atr_buf_span(&ikm), atr_buf_span(&salt),
                                         atr_buf_span(&info), NULL),
                     ATR_OK);
    assert_true(CRYPTO_secure_allocated(atr_secret_cdata(&out)));
    assert_int_equal(atr_secret_len(&out), 42);
    assert_memory_equal(atr_secret_cdata(&out), okm.ptr, 42);
    atr_secret_cleanup(&out);

    /* a shorter output is a prefix; other info gives other keys */
    assert_int_equal(atr_kdf_hkdf_sha256(&out, 16, atr_buf_span(&ikm), atr_buf_span(&salt),
                                         atr_buf_span(&info), NULL),
                     ATR_OK);
    assert_memory_equal(atr_secret_cdata(&out), okm.ptr, 16);
    atr_secret_cleanup(&out);
    assert_int_equal(atr_kdf_hkdf_sha256(&out, 42, atr_buf_span(&ikm), atr_buf_span(&salt),
                                         atr_span_str("other"), NULL),
                     ATR_OK);
    assert_memory_not_equal(atr_secret_cdata(&out), okm.ptr, 42);
    atr_secret_cleanup(&out);

    atr_buf_cleanup(&ikm);
    atr_buf_cleanup(&salt);
    atr_buf_cleanup(&info);
    atr_buf_cleanup(&okm);
}

static void test_hkdf_limits(void **state)
{
    (void)state;
    struct atr_secret out = ATR_SECRET_INIT;
    struct atr_span ikm = atr_span_str("input keying material");
    struct atr_span none = atr_span_of(NULL, 0);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_kdf_hkdf_sha256(&out, ATR_KDF_HKDF_SHA256_MAX, ikm, none, none, NULL),
                     ATR_OK);
    assert_int_equal(atr_secret_len(&out), 8160);
    atr_secret_cleanup(&out);
    assert_int_equal(atr_kdf_hkdf_sha256(&out, ATR_KDF_HKDF_SHA256_MAX + 1, ikm, none, none, &err),
                     ATR_E_INVALID);
    assert_int_equal(err.code, ATR_E_INVALID);
    assert_false(atr_secret_is_set(&out));
    assert_int_equal(atr_kdf_hkdf_sha256(&out, 0, ikm, none, none, NULL), ATR_E_INVALID);
    assert_int_equal(atr_kdf_hkdf_sha256(&out, 32, none, none, none, NULL), ATR_E_INVALID);
    assert_false(atr_secret_is_set(&out));
}

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t key[20];
    memset(key, 0x0b, sizeof(key));
    struct atr_buf want;
    atr_buf_init(&want, 64);
    atr_test_hex(&want, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    uint8_t mac[ATR_KDF_SHA256_LEN];
    struct atr_span k = atr_span_of(key, sizeof(key));
    struct atr_span msg = atr_span_str("Hi There");
    assert_int_equal(atr_kdf_hmac_sha256(mac, k, msg, NULL), ATR_OK);
    assert_memory_equal(mac, want.ptr, 32);
    assert_int_equal(atr_kdf_hmac_sha256_verify(k, msg, atr_buf_span(&want), NULL), ATR_OK);
    /* truncated tags from 16 to 31 bytes */
    for (size_t n = 16; n <= 32; n++)
        assert_int_equal(atr_kdf_hmac_sha256_verify(k, msg, atr_span_of(want.ptr, n), NULL),
                         ATR_OK);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_kdf_hmac_sha256_verify(k, msg, atr_span_of(want.ptr, 15), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_kdf_hmac_sha256_verify(k, msg, atr_span_of(NULL, 0), &err), ATR_E_INVALID);
    uint8_t longer[33] = {0};
    memcpy(longer, want.ptr, 32);
    assert_int_equal(atr_kdf_hmac_sha256_verify(k, msg, atr_span_of(longer, 33), &err),
                     ATR_E_INVALID);
    /* any modified byte fails */
    for (size_t i = 0; i < 32; i++) {
        want.ptr[i] ^= 1;
        assert_int_equal(atr_kdf_hmac_sha256_verify(k, msg, atr_buf_span(&want), &err),
                         ATR_E_AUTH_FAILED);
        want.ptr[i] ^= 1;
    }
    /* wrong key, wrong message */
    assert_int_equal(
        atr_kdf_hmac_sha256_verify(atr_span_of(key, 19), msg, atr_buf_span(&want), NULL),
        ATR_E_AUTH_FAILED);
    assert_int_equal(
        atr_kdf_hmac_sha256_verify(k, atr_span_str("Hi there"), atr_buf_span(&want), NULL),
        ATR_E_AUTH_FAILED);
    atr_buf_cleanup(&want);
}

static void test_hmac_empty_key_and_message(void **state)
{
    (void)state;
    struct atr_buf want;
    atr_buf_init(&want, 64);
    atr_test_hex(&want, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    uint8_t mac[32];
    assert_int_equal(atr_kdf_hmac_sha256(mac, atr_span_of(NULL, 0), atr_span_of(NULL, 0), NULL),
                     ATR_OK);
    assert_memory_equal(mac, want.ptr, 32);
    atr_buf_cleanup(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hkdf_rfc5869_case1),
        cmocka_unit_test(test_hkdf_limits),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_hmac_empty_key_and_message),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
