/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include <openssl/crypto.h>

#include "base/secmem.h"
#include "crypto/rand.h"

static void test_bytes_differ(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    static const uint8_t zero[32];
    assert_int_equal(atr_rand_bytes(a, sizeof(a), NULL), ATR_OK);
    assert_int_equal(atr_rand_bytes(b, sizeof(b), NULL), ATR_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_int_equal(atr_rand_priv_bytes(a, sizeof(a), NULL), ATR_OK);
    assert_memory_not_equal(a, b, sizeof(a));
}

static void test_zero_length_and_null(void **state)
{
    (void)state;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_rand_bytes(NULL, 0, NULL), ATR_OK);
    assert_int_equal(atr_rand_bytes(NULL, 4, &err), ATR_E_INVALID);
    assert_int_equal(err.code, ATR_E_INVALID);
    assert_int_equal(atr_rand_priv_bytes(NULL, 4, NULL), ATR_E_INVALID);
}

static void test_large_request(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    uint8_t *p = calloc(1, n);
    assert_non_null(p);
    assert_int_equal(atr_rand_bytes(p, n, NULL), ATR_OK);
    /* a 1 MiB all-zero tail would be absurd */
    static const uint8_t zero[64];
    assert_memory_not_equal(p + n - 64, zero, 64);
    free(p);
}

static void test_secret(void **state)
{
    (void)state;
    struct atr_secret s = ATR_SECRET_INIT, t = ATR_SECRET_INIT;
    assert_int_equal(atr_rand_secret(&s, 32, NULL), ATR_OK);
    assert_int_equal(atr_secret_len(&s), 32);
    assert_true(CRYPTO_secure_allocated(atr_secret_cdata(&s)));
    assert_int_equal(atr_rand_secret(&t, 32, NULL), ATR_OK);
    assert_false(atr_ct_equal(atr_secret_cdata(&s), atr_secret_cdata(&t), 32));
    atr_secret_cleanup(&s);
    atr_secret_cleanup(&t);

    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_rand_secret(&s, 0, &err), ATR_E_INVALID);
    assert_false(atr_secret_is_set(&s));
    /* larger than the whole test heap: NOMEM, secret left empty */
    assert_int_equal(atr_rand_secret(&s, (size_t)1 << 24, &err), ATR_E_NOMEM);
    assert_false(atr_secret_is_set(&s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_differ),
        cmocka_unit_test(test_zero_length_and_null),
        cmocka_unit_test(test_large_request),
        cmocka_unit_test(test_secret),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
