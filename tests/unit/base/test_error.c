/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include "base/error.h"

static void test_codes_map(void **state)
{
    (void)state;
    assert_int_equal(ATR_OK, 0);
    assert_string_equal(atr_status_name(ATR_E_INVALID), "ATR_E_INVALID");
    assert_string_equal(atr_status_code(ATR_E_INVALID), "BadParameter");
    assert_int_equal(atr_status_http(ATR_E_INVALID), 400);
    assert_int_equal(atr_status_http(ATR_E_LOCKED), 423);
    assert_string_equal(atr_status_code(ATR_E_LOCKED), "TenantLocked");
    assert_int_equal(atr_status_http(ATR_E_THROTTLED), 429);
    /* out-of-range values map to the internal error, never crash */
    assert_int_equal(atr_status_http((atr_status)9999), 500);
    assert_string_equal(atr_status_code((atr_status)-1), "InternalError");
}

static void test_every_code_has_text(void **state)
{
    (void)state;
    for (int i = 0; i < ATR_STATUS_COUNT_; i++) {
        atr_status st = (atr_status)i;
        assert_true(strncmp(atr_status_name(st), "ATR_", 4) == 0);
        assert_true(strlen(atr_status_str(st)) > 0);
        assert_true(strlen(atr_status_code(st)) > 0);
        unsigned http = atr_status_http(st);
        assert_true(http >= 200 && http < 600);
    }
}

static void test_set_and_truncate(void **state)
{
    (void)state;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(err.code, ATR_OK);
    assert_int_equal(atr_err_set(&err, ATR_E_PARSE, "bad %s at %d", "thing", 7), ATR_E_PARSE);
    assert_string_equal(err.msg, "bad thing at 7");
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    atr_err_set(&err, ATR_E_INVALID, "%s", big);
    assert_int_equal(strlen(err.msg), ATR_ERR_MSG_MAX - 1);
    /* NULL err is allowed and still returns the code */
    assert_int_equal(atr_err_set(NULL, ATR_E_IO, "x"), ATR_E_IO);
}

static void test_wrap_keeps_inner(void **state)
{
    (void)state;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_err_wrap(&err, ATR_E_CONFIG, "loading"), ATR_E_CONFIG);
    assert_string_equal(err.msg, "loading: the configuration is invalid");
    atr_err_set(&err, ATR_E_NOT_FOUND, "key k1 not found");
    assert_int_equal(atr_err_wrap(&err, ATR_E_INTERNAL, "enable"), ATR_E_NOT_FOUND);
    assert_string_equal(atr_err_msg(&err), "enable: key k1 not found");
    atr_err_clear(&err);
    err.code = ATR_E_TIMEOUT;
    assert_string_equal(atr_err_msg(&err), atr_status_str(ATR_E_TIMEOUT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_map),
        cmocka_unit_test(test_every_code_has_text),
        cmocka_unit_test(test_set_and_truncate),
        cmocka_unit_test(test_wrap_keeps_inner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
