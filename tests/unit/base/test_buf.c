/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"

static void test_append_and_cstr(void **state)
{
    (void)state;
    struct atr_buf b;
    atr_buf_init(&b, 1024);
    assert_int_equal(atr_buf_append_str(&b, "hello"), ATR_OK);
    assert_int_equal(atr_buf_printf(&b, " %d-%s", 42, "x"), ATR_OK);
    assert_string_equal(atr_buf_cstr(&b), "hello 42-x");
    assert_int_equal(b.len, 10);
    struct atr_span s = atr_buf_span(&b);
    assert_int_equal(s.len, 10);
    assert_memory_equal(s.ptr, "hello", 5);
    atr_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(atr_buf_cstr(&b), "");
    atr_buf_cleanup(&b);
    atr_buf_cleanup(&b); /* idempotent */
    assert_null(b.ptr);
}

static void test_cap_enforced_and_released(void **state)
{
    (void)state;
    struct atr_buf b;
    atr_buf_init(&b, 8);
    assert_int_equal(atr_buf_append(&b, "12345678", 8), ATR_OK);
    assert_string_equal(atr_buf_cstr(&b), "12345678");
    assert_int_equal(atr_buf_append(&b, "9", 1), ATR_E_TOO_LARGE);
    /* a failed append releases the storage: no half-built buffer survives */
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    atr_buf_init(&b, 4);
    assert_int_equal(atr_buf_printf(&b, "%s", "too long"), ATR_E_TOO_LARGE);
    atr_buf_cleanup(&b);
}

static void test_growth_many_appends(void **state)
{
    (void)state;
    struct atr_buf b;
    atr_buf_init(&b, 1 << 20);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(atr_buf_append(&b, "abcdefgh", 8), ATR_OK);
    assert_int_equal(b.len, 80000);
    assert_memory_equal(b.ptr + 79992, "abcdefgh", 8);
    atr_buf_cleanup(&b);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    struct atr_buf b;
    atr_buf_init(&b, 1024);
    atr_alloc_fail_after(1);
    assert_int_equal(atr_buf_append(&b, "x", 1), ATR_E_NOMEM);
    atr_alloc_fail_reset();
    assert_null(b.ptr);
    assert_int_equal(atr_buf_append(&b, "x", 1), ATR_OK);
    atr_buf_cleanup(&b);
}

static void test_alloc_wrappers(void **state)
{
    (void)state;
    char *s = atr_strdup("abc");
    assert_string_equal(s, "abc");
    ATR_FREE(s);
    assert_null(s);
    s = atr_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    atr_free(s);
    atr_alloc_fail_after(2);
    void *a = atr_malloc(1);
    assert_non_null(a);
    assert_null(atr_calloc(1, 1));
    assert_null(atr_strdup("x"));
    assert_int_equal(atr_alloc_count(), 3);
    atr_alloc_fail_reset();
    atr_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_cstr),
        cmocka_unit_test(test_cap_enforced_and_released),
        cmocka_unit_test(test_growth_many_appends),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_alloc_wrappers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
