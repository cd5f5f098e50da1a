/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/log.h"

/* Per-test capture: a tmpfile as log output and a test clock for "ts". */
struct capture {
    FILE *f;
    struct atr_test_clock tc;
    json_t *lines[16];
    size_t n;
};

static int setup(void **state)
{
    struct capture *cap = calloc(1, sizeof(*cap));
    assert_non_null(cap);
    cap->f = tmpfile();
    assert_non_null(cap->f);
    assert_int_equal(atr_test_clock_init(&cap->tc, 1795923888123), ATR_OK);
    atr_log_set_output(cap->f);
    atr_log_set_clock(&cap->tc.base);
    atr_log_set_level(ATR_LOG_DEBUG);
    *state = cap;
    return 0;
}

static int teardown(void **state)
{
    struct capture *cap = *state;
    atr_log_set_output(NULL);
    atr_log_set_clock(NULL);
    atr_log_set_level(ATR_LOG_INFO);
    for (size_t i = 0; i < cap->n; i++)
        json_decref(cap->lines[i]);
    fclose(cap->f);
    atr_test_clock_cleanup(&cap->tc);
    free(cap);
    return 0;
}

/* Reads back everything written so far; each line must be one JSON object. */
static void read_lines(struct capture *cap)
{
    for (size_t i = 0; i < cap->n; i++)
        json_decref(cap->lines[i]);
    cap->n = 0;
    rewind(cap->f);
    char line[16384];
    while (fgets(line, sizeof(line), cap->f) != NULL) {
        size_t len = strlen(line);
        assert_true(len > 0 && line[len - 1] == '\n');
        /* exactly one newline per record: none inside the JSON text */
        assert_null(memchr(line, '\n', len - 1));
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        if (j == NULL)
            fail_msg("line is not JSON (%s): %s", jerr.text, line);
        assert_true(json_is_object(j));
        assert_true(cap->n < ATR_ARRAY_LEN(cap->lines));
        cap->lines[cap->n++] = j;
    }
}

static const char *str_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void test_basic_line(void **state)
{
    struct capture *cap = *state;
    atr_log_info("http.access", "6f1c", "GET %s %d", "/healthz", 200);
    read_lines(cap);
    assert_int_equal(cap->n, 1);
    json_t *o = cap->lines[0];
    assert_string_equal(str_field(o, "ts"), "2026-11-29T03:44:48.123Z");
    assert_string_equal(str_field(o, "level"), "info");
    assert_string_equal(str_field(o, "event"), "http.access");
    assert_string_equal(str_field(o, "req"), "6f1c");
    assert_string_equal(str_field(o, "msg"), "GET /healthz 200");
    assert_int_equal(json_object_size(o), 5);

    /* field order is stable: ts first */
    char head[8] = {0};
    rewind(cap->f);
    assert_non_null(fgets(head, sizeof(head), cap->f));
    assert_string_equal(head, "{\"ts\":\"");
}

static void test_req_omitted_and_nulls(void **state)
{
    struct capture *cap = *state;
    atr_log(ATR_LOG_WARN, "x.y", NULL, "no request");
    atr_log(ATR_LOG_ERROR, NULL, NULL, NULL);
    atr_log_fields(ATR_LOG_INFO, NULL, NULL, NULL, "s", "s", (const char *)NULL, NULL);
    read_lines(cap);
    assert_int_equal(cap->n, 3);
    assert_null(json_object_get(cap->lines[0], "req"));
    assert_string_equal(str_field(cap->lines[0], "level"), "warn");
    assert_true(json_is_null(json_object_get(cap->lines[1], "event")));
    assert_true(json_is_null(json_object_get(cap->lines[1], "msg")));
    assert_string_equal(str_field(cap->lines[1], "level"), "error");
    assert_true(json_is_null(json_object_get(cap->lines[2], "s")));
}

static void test_escaping(void **state)
{
    struct capture *cap = *state;
    const char *nasty = "a\"b\\c\nd\re\tf\x01g\x1fh</script>";
    atr_log_info("esc", "r\"\n", "%s", nasty);
    /* invalid UTF-8 is repaired, not dropped */
    atr_log_info("utf8", NULL, "bad \xff\xc0\x80 ok \xc3\xa9 \xed\xa0\x80 trunc \xe2\x82");
    read_lines(cap);
    assert_int_equal(cap->n, 2);
    assert_string_equal(str_field(cap->lines[0], "msg"), nasty);
    assert_string_equal(str_field(cap->lines[0], "req"), "r\"\n");
    assert_string_equal(str_field(cap->lines[1], "msg"),
                        "bad \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD ok \xc3\xa9 "
                        "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD trunc \xEF\xBF\xBD\xEF\xBF\xBD");
}

static void test_level_filter(void **state)
{
    struct capture *cap = *state;
    atr_log_set_level(ATR_LOG_WARN);
    assert_int_equal(atr_log_get_level(), ATR_LOG_WARN);
    assert_false(atr_log_enabled(ATR_LOG_INFO));
    assert_true(atr_log_enabled(ATR_LOG_ERROR));
    atr_log_debug("d", NULL, "debug");
    atr_log_info("i", NULL, "info");
    atr_log_fields(ATR_LOG_INFO, "i", NULL, "info", "k", "i", 1LL, NULL);
    atr_log_warn("w", NULL, "warn");
    atr_log_error("e", NULL, "error");
    atr_log_set_level(ATR_LOG_OFF);
    assert_false(atr_log_enabled(ATR_LOG_ERROR));
    assert_false(atr_log_enabled(ATR_LOG_OFF));
    atr_log_error("e", NULL, "dropped");
    read_lines(cap);
    assert_int_equal(cap->n, 2);
    assert_string_equal(str_field(cap->lines[0], "event"), "w");
    assert_string_equal(str_field(cap->lines[1], "event"), "e");
}

static void test_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        atr_log_level want;
    } ok[] = {{"debug", ATR_LOG_DEBUG}, {"info", ATR_LOG_INFO}, {"warn", ATR_LOG_WARN},
              {"error", ATR_LOG_ERROR}, {"off", ATR_LOG_OFF},   {"INFO", ATR_LOG_INFO}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(ok); i++) {
        atr_log_level l = ATR_LOG_OFF;
        assert_int_equal(atr_log_level_parse(ok[i].name, &l), ATR_OK);
        assert_int_equal(l, ok[i].want);
    }
    atr_log_level l = ATR_LOG_INFO;
    assert_int_equal(atr_log_level_parse("verbose", &l), ATR_E_INVALID);
    assert_int_equal(atr_log_level_parse("", &l), ATR_E_INVALID);
    assert_int_equal(atr_log_level_parse("info ", &l), ATR_E_INVALID);
    assert_int_equal(atr_log_level_parse(NULL, &l), ATR_E_INVALID);
    assert_int_equal(l, ATR_LOG_INFO);
}

static void test_fields(void **state)
{
    struct capture *cap = *state;
    atr_log_fields(ATR_LOG_INFO, "http.access", "rid", "GET / 200", "status", "i", 200LL, "path",
                   "s", "/a\"b", "tls", "b", 1, "big", "i", -9007199254740993LL, "level", "s",
                   "forged", NULL);
    /* an unknown type stops reading the list, keeping what came before */
    atr_log_fields(ATR_LOG_INFO, "e", NULL, "m", "a", "i", 1LL, "b", "q", 2LL, "c", "i", 3LL, NULL);
    read_lines(cap);
    assert_int_equal(cap->n, 2);
    json_t *o = cap->lines[0];
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_string_equal(str_field(o, "path"), "/a\"b");
    assert_true(json_is_true(json_object_get(o, "tls")));
    assert_true(json_integer_value(json_object_get(o, "big")) == -9007199254740993LL);
    assert_string_equal(str_field(o, "level"), "info");
    assert_string_equal(str_field(o, "x_level"), "forged");
    assert_non_null(json_object_get(cap->lines[1], "a"));
    assert_null(json_object_get(cap->lines[1], "b"));
    assert_null(json_object_get(cap->lines[1], "c"));
}

static void test_clock_stamp(void **state)
{
    struct capture *cap = *state;
    atr_log_info("a", NULL, "one");
    atr_test_clock_advance(&cap->tc, 1500);
    atr_log_info("b", NULL, "two");
    atr_test_clock_set(&cap->tc, 0);
    atr_log_info("c", NULL, "three");
    read_lines(cap);
    assert_int_equal(cap->n, 3);
    assert_string_equal(str_field(cap->lines[0], "ts"), "2026-11-29T03:44:48.123Z");
    assert_string_equal(str_field(cap->lines[1], "ts"), "2026-11-29T03:44:49.623Z");
    assert_string_equal(str_field(cap->lines[2], "ts"), "1970-01-01T00:00:00.000Z");
}

static void test_long_message(void **state)
{
    struct capture *cap = *state;
    static char big[20000];
    memset(big, 'a', sizeof(big) - 1);
    atr_log_info("long", NULL, "%s", big);
    char mid[700];
    memset(mid, 'b', sizeof(mid) - 1);
    mid[sizeof(mid) - 1] = '\0';
    atr_log_info("mid", NULL, "%s", mid);
    read_lines(cap);
    assert_int_equal(cap->n, 2);
    size_t len = strlen(str_field(cap->lines[0], "msg"));
    assert_true(len > 1000 && len < sizeof(big) - 1); /* truncated, still one line */
    assert_string_equal(str_field(cap->lines[1], "msg"), mid);
}

#define THREADS          4
#define LINES_PER_THREAD 250

static void *log_thread(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; i < LINES_PER_THREAD; i++)
        atr_log_fields(ATR_LOG_INFO, "thread", NULL, "a line with some text to make it longer",
                       "thread", "i", (long long)id, "i", "i", (long long)i, NULL);
    return NULL;
}

/* Lines written concurrently never interleave: each one parses on its own. */
static void test_threads(void **state)
{
    struct capture *cap = *state;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    rewind(cap->f);
    char line[1024];
    long seen[THREADS] = {0};
    long total = 0;
    while (fgets(line, sizeof(line), cap->f) != NULL) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        json_int_t id = json_integer_value(json_object_get(j, "thread"));
        json_int_t i = json_integer_value(json_object_get(j, "i"));
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(i, seen[id]); /* each thread's lines in its order */
        seen[id]++;
        total++;
        json_decref(j);
    }
    assert_int_equal(total, THREADS * LINES_PER_THREAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_omitted_and_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_stamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
