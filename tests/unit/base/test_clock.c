/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/clock.h"

static void test_real_clock(void **state)
{
    (void)state;
    const struct atr_clock *c = atr_clock_real();
    assert_non_null(c);
    assert_ptr_equal(c, atr_clock_real());
    int64_t before = (int64_t)time(NULL) * 1000;
    int64_t now = atr_clock_now_ms(c);
    assert_true(now >= before - 1000);
    assert_true(now <= before + 5000);
    int64_t s = atr_clock_now_s(c);
    assert_true(s >= before / 1000 - 1 && s <= before / 1000 + 5);
    int64_t m1 = atr_clock_mono_ms(c);
    int64_t m2 = atr_clock_mono_ms(c);
    assert_true(m2 >= m1);
    /* NULL means the real clock */
    assert_true(atr_clock_now_ms(NULL) >= now);
}

static void test_test_clock_advance_set(void **state)
{
    (void)state;
    struct atr_test_clock tc;
    assert_int_equal(atr_test_clock_init(&tc, 1700000000123), ATR_OK);
    const struct atr_clock *c = &tc.base;
    assert_int_equal(atr_clock_now_ms(c), 1700000000123);
    assert_int_equal(atr_clock_now_s(c), 1700000000);
    int64_t m0 = atr_clock_mono_ms(c);

    atr_test_clock_advance(&tc, 3600 * 1000);
    assert_int_equal(atr_clock_now_ms(c), 1700000000123 + 3600 * 1000);
    assert_int_equal(atr_clock_mono_ms(c), m0 + 3600 * 1000);

    /* set moves wall time only, backwards too */
    atr_test_clock_set(&tc, 1000);
    assert_int_equal(atr_clock_now_ms(c), 1000);
    assert_int_equal(atr_clock_mono_ms(c), m0 + 3600 * 1000);

    /* negative and zero steps are ignored; large steps saturate */
    atr_test_clock_advance(&tc, -5);
    atr_test_clock_advance(&tc, 0);
    assert_int_equal(atr_clock_now_ms(c), 1000);
    atr_test_clock_advance(&tc, INT64_MAX);
    assert_int_equal(atr_clock_now_ms(c), INT64_MAX);

    atr_test_clock_set(&tc, -1);
    assert_int_equal(atr_clock_now_s(c), -1);

    atr_test_clock_cleanup(&tc);
    assert_null(tc.lock);
    atr_test_clock_cleanup(&tc); /* idempotent */
    atr_test_clock_cleanup(NULL);
}

static void test_test_clock_nomem(void **state)
{
    (void)state;
    struct atr_test_clock tc;
    atr_alloc_fail_after(1);
    atr_status rc = atr_test_clock_init(&tc, 0);
    atr_alloc_fail_reset();
    assert_int_equal(rc, ATR_E_NOMEM);
    assert_null(tc.lock);
    atr_test_clock_cleanup(&tc);
}

static void *advance_thread(void *arg)
{
    struct atr_test_clock *tc = arg;
    for (int i = 0; i < 10000; i++)
        atr_test_clock_advance(tc, 1);
    return NULL;
}

static void test_test_clock_threads(void **state)
{
    (void)state;
    struct atr_test_clock tc;
    assert_int_equal(atr_test_clock_init(&tc, 0), ATR_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, advance_thread, &tc), 0);
    int64_t last = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t now = atr_clock_mono_ms(&tc.base);
        assert_true(now >= last);
        last = now;
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(atr_clock_now_ms(&tc.base), 20000);
    assert_int_equal(atr_clock_mono_ms(&tc.base), 20000);
    atr_test_clock_cleanup(&tc);
}

static void check_format(int64_t ms, const char *want)
{
    char out[32];
    memset(out, 'x', sizeof(out));
    atr_clock_format_rfc3339(ms, out);
    assert_string_equal(out, want);
}

static void test_format_rfc3339(void **state)
{
    (void)state;
    check_format(0, "1970-01-01T00:00:00.000Z");
    check_format(1, "1970-01-01T00:00:00.001Z");
    check_format(999, "1970-01-01T00:00:00.999Z");
    check_format(-1, "1969-12-31T23:59:59.999Z");
    check_format(-1000, "1969-12-31T23:59:59.000Z");
    check_format(1795923888123, "2026-11-29T03:44:48.123Z");
    check_format(951782400000, "2000-02-29T00:00:00.000Z");
    check_format(253402300799999, "9999-12-31T23:59:59.999Z");
    /* extremes do not crash and stay NUL-terminated within 32 bytes */
    char out[32];
    atr_clock_format_rfc3339(INT64_MAX, out);
    assert_true(strlen(out) < 32);
    atr_clock_format_rfc3339(INT64_MIN, out);
    assert_true(strlen(out) < 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_clock),       cmocka_unit_test(test_test_clock_advance_set),
        cmocka_unit_test(test_test_clock_nomem), cmocka_unit_test(test_test_clock_threads),
        cmocka_unit_test(test_format_rfc3339),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
