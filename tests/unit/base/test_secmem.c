/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include "base/secmem.h"

static void test_secret_lifecycle(void **state)
{
    (void)state;
    struct atr_secret s = ATR_SECRET_INIT;
    assert_false(atr_secret_is_set(&s));
    assert_null(atr_secret_data(&s));
    assert_int_equal(atr_secret_init(&s, 32), ATR_OK);
    assert_true(atr_secret_is_set(&s));
    assert_int_equal(atr_secret_len(&s), 32);
    /* the storage really is in OpenSSL's secure heap */
    assert_true(CRYPTO_secure_allocated(atr_secret_data(&s)));
    static const uint8_t zero[32];
    assert_memory_equal(atr_secret_cdata(&s), zero, 32);
    size_t used = atr_secmem_used();
    assert_true(used >= 32);
    atr_secret_cleanup(&s);
    assert_false(atr_secret_is_set(&s));
    assert_true(atr_secmem_used() < used);
    /* double cleanup is harmless */
    atr_secret_cleanup(&s);
    atr_secret_cleanup(NULL);
}

static void test_secret_copy_random(void **state)
{
    (void)state;
    struct atr_secret a = ATR_SECRET_INIT, b = ATR_SECRET_INIT, c = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_copy(&a, "0123456789abcdef", 16), ATR_OK);
    assert_memory_equal(atr_secret_cdata(&a), "0123456789abcdef", 16);
    assert_int_equal(atr_secret_init_random(&b, 32), ATR_OK);
    assert_int_equal(atr_secret_init_random(&c, 32), ATR_OK);
    assert_false(atr_ct_equal(atr_secret_cdata(&b), atr_secret_cdata(&c), 32));
    struct atr_secret empty = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init(&empty, 0), ATR_E_INVALID);
    atr_secret_cleanup(&a);
    atr_secret_cleanup(&b);
    atr_secret_cleanup(&c);
}

static void test_wipe_on_cleanup(void **state)
{
    (void)state;
    /*
     * After cleanup the secure heap hands the same chunk out again; it must
     * come back zeroed, proving the old bytes were wiped, not just released.
     */
    struct atr_secret s = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init(&s, 64), ATR_OK);
    uint8_t *p = atr_secret_data(&s);
    memset(p, 0xA5, 64);
    atr_secret_cleanup(&s);
    struct atr_secret t = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init(&t, 64), ATR_OK);
    static const uint8_t zero[64];
    assert_memory_equal(atr_secret_cdata(&t), zero, 64);
    atr_secret_cleanup(&t);
}

static void test_exhaustion_is_nomem(void **state)
{
    (void)state;
    struct atr_secret big = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init(&big, (size_t)1 << 24), ATR_E_NOMEM);
    assert_false(atr_secret_is_set(&big));
}

static void test_level_and_harden(void **state)
{
    (void)state;
    atr_secmem_level lvl = atr_secmem_level_get();
    assert_true(lvl == ATR_SECMEM_PROTECTED || lvl == ATR_SECMEM_UNPROTECTED);
    struct atr_err err;
    atr_err_clear(&err);
    /* asking again for a protected heap fails only when it is unprotected */
    atr_status rc = atr_secmem_init(1u << 20, 0, &err);
    assert_int_equal(rc, lvl == ATR_SECMEM_PROTECTED ? ATR_OK : ATR_E_CONFIG);
    assert_int_equal(atr_secmem_harden_process(&err), ATR_OK);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
    assert_int_equal(rl.rlim_cur, 0);
    assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
}

static void test_ct_equal_and_wipe(void **state)
{
    (void)state;
    assert_true(atr_ct_equal("abc", "abc", 3));
    assert_false(atr_ct_equal("abc", "abd", 3));
    char buf[8] = "secret!";
    atr_wipe(buf, sizeof(buf));
    static const char zero[8];
    assert_memory_equal(buf, zero, 8);
    atr_wipe(NULL, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_lifecycle),  cmocka_unit_test(test_secret_copy_random),
        cmocka_unit_test(test_wipe_on_cleanup),   cmocka_unit_test(test_exhaustion_is_nomem),
        cmocka_unit_test(test_ct_equal_and_wipe), cmocka_unit_test(test_level_and_harden),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
