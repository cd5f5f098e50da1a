/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* memmem */
/*
 * Activity records: NDJSON batch parsing (required members, time forms,
 * addresses, line splitting, limits, duplicate keys, nesting, the error
 * cap), the canonical form byte for byte, block packing boundaries, query
 * filters, block scans (filters, skip, malformed blocks) and out-of-memory
 * paths.
 */
#include "lib/testutil.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "service/records.h"

/* 2026-11-29T06:00:00Z */
#define T0 1795932000000LL

/* A valid record line with @p time (raw JSON) and user/app/action/ip. */
static void line_of(char *out, size_t n, const char *time, const char *user, const char *app,
                    const char *action, const char *ip)
{
    snprintf(out, n, "{\"time\":%s,\"user\":%s,\"app\":%s,\"action\":%s,\"ip\":%s}", time, user,
             app, action, ip);
}

static atr_status parse_str(struct atr_records_batch *b, const char *body,
                            const struct atr_records_limits *lim, struct atr_err *err)
{
    return atr_records_parse(b, atr_span_str(body), lim, err);
}

/* Parses one line; expects it accepted with @p want_ms. */
static void expect_ok(const char *line, int64_t want_ms)
{
    struct atr_records_batch b;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(parse_str(&b, line, NULL, &err), ATR_OK);
    if (b.n_records != 1)
        fail_msg("'%s' rejected: %s", line, b.n_errors > 0 ? b.errors[0].message : "?");
    if (b.records[0].time_ms != want_ms)
        fail_msg("'%s' gave %lld, want %lld", line, (long long)b.records[0].time_ms,
                 (long long)want_ms);
    atr_records_batch_cleanup(&b);
}

/* Parses one line; expects it rejected with a message containing @p fragment. */
static void expect_rejected(const char *line, const char *fragment)
{
    struct atr_records_batch b;
    assert_int_equal(parse_str(&b, line, NULL, NULL), ATR_OK);
    if (b.n_records != 0 || b.n_errors != 1)
        fail_msg("'%.80s' was accepted", line);
    assert_int_equal(b.n_rejected, 1);
    assert_int_equal(b.errors[0].line, 1);
    if (strstr(b.errors[0].message, fragment) == NULL)
        fail_msg("'%.80s': message '%s' lacks '%s'", line, b.errors[0].message, fragment);
    atr_records_batch_cleanup(&b);
}

static void expect_time_ok(const char *time, int64_t want_ms)
{
    char line[512];
    line_of(line, sizeof(line), time, "\"u\"", "\"a\"", "\"x\"", "\"10.0.0.1\"");
    expect_ok(line, want_ms);
}

static void expect_time_bad(const char *time, const char *fragment)
{
    char line[512];
    line_of(line, sizeof(line), time, "\"u\"", "\"a\"", "\"x\"", "\"10.0.0.1\"");
    expect_rejected(line, fragment);
}

static void test_round_trip(void **state)
{
    (void)state;
    const char *body =
        "{ \"time\" : \"2026-11-29T07:30:00.123456+01:30\", \"user\": \"alice\",\n"
        "  \"extra\": {\"a\": [1, 2.5, true, null], \"s\": \"\\u00e9\"}, \"app\": \"crm\", "
        "\"action\": \"login\", \"ip\": \"192.0.2.1\"}\n"
        "{\"action\":\"read\",\"ip\":\"2001:db8::1\",\"app\":\"crm\",\"user\":\"bob\","
        "\"time\":1764396000000}\n"
        "{\"time\":\"2026-11-29t06:00:00z\",\"user\":\"c\",\"app\":\"d\",\"action\":\"e\","
        "\"ip\":\"::1\",\"n\":-0.0,\"k\":\"\\/x\"}";
    struct atr_records_batch b;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(parse_str(&b, body, NULL, &err), ATR_OK);
    /* line 1 spans two physical lines: it is two invalid lines */
    assert_int_equal(b.n_lines, 4);
    assert_int_equal(b.n_records, 2);
    assert_int_equal(b.n_rejected, 2);
    assert_int_equal(b.errors[0].line, 1);
    assert_int_equal(b.errors[1].line, 2);
    atr_records_batch_cleanup(&b);

    body = "{ \"time\" : \"2026-11-29T07:30:00.123456+01:30\", \"user\": \"alice\", "
           "\"extra\": {\"a\": [1, 2.5, true, null], \"s\": \"\\u00e9\"}, \"app\": \"crm\", "
           "\"action\": \"login\", \"ip\": \"192.0.2.1\"}\n"
           "{\"action\":\"read\",\"ip\":\"2001:db8::1\",\"app\":\"crm\",\"user\":\"bob\","
           "\"time\":1764396000000}\n"
           "{\"time\":\"2026-11-29t06:00:00z\",\"user\":\"c\",\"app\":\"d\",\"action\":\"e\","
           "\"ip\":\"::1\",\"n\":-0.0,\"k\":\"\\/x\"}";
    assert_int_equal(parse_str(&b, body, NULL, &err), ATR_OK);
    assert_int_equal(b.n_lines, 3);
    assert_int_equal(b.n_records, 3);
    assert_int_equal(b.n_rejected, 0);
    assert_int_equal(b.n_errors, 0);
    assert_int_equal(b.records[0].line, 1);
    assert_int_equal(b.records[1].line, 2);
    assert_int_equal(b.records[2].line, 3);
    assert_int_equal(b.records[0].time_ms, T0 + 123);
    assert_int_equal(b.records[1].time_ms, 1764396000000LL);
    assert_int_equal(b.records[2].time_ms, T0);

    /* the canonical form, exact bytes */
    const char *c0 = "{\"time\":\"2026-11-29T06:00:00.123Z\",\"user\":\"alice\",\"extra\":{\"a\":"
                     "[1,2.5,true,null],\"s\":\"\xc3\xa9\"},\"app\":\"crm\",\"action\":\"login\","
                     "\"ip\":\"192.0.2.1\"}";
    const char *c1 = "{\"action\":\"read\",\"ip\":\"2001:db8::1\",\"app\":\"crm\",\"user\":\"bob\","
                     "\"time\":\"2025-11-29T06:00:00.000Z\"}";
    const char *c2 = "{\"time\":\"2026-11-29T06:00:00.000Z\",\"user\":\"c\",\"app\":\"d\","
                     "\"action\":\"e\",\"ip\":\"::1\",\"n\":-0.0,\"k\":\"/x\"}";
    struct atr_span s = atr_records_line(&b, 0);
    assert_int_equal(s.len, strlen(c0));
    assert_memory_equal(s.ptr, c0, s.len);
    s = atr_records_line(&b, 1);
    assert_int_equal(s.len, strlen(c1));
    assert_memory_equal(s.ptr, c1, s.len);
    s = atr_records_line(&b, 2);
    assert_int_equal(s.len, strlen(c2));
    assert_memory_equal(s.ptr, c2, s.len);
    /* the canon buffer is exactly the lines, each followed by '\n' */
    char all[1024];
    snprintf(all, sizeof(all), "%s\n%s\n%s\n", c0, c1, c2);
    assert_int_equal(b.canon.len, strlen(all));
    assert_memory_equal(b.canon.ptr, all, b.canon.len);

    /* canonicalising is idempotent */
    struct atr_records_batch again;
    assert_int_equal(atr_records_parse(&again, atr_buf_span(&b.canon), NULL, NULL), ATR_OK);
    assert_int_equal(again.n_records, 3);
    assert_int_equal(again.canon.len, b.canon.len);
    assert_memory_equal(again.canon.ptr, b.canon.ptr, b.canon.len);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(again.records[i].time_ms, b.records[i].time_ms);
    atr_records_batch_cleanup(&again);

    atr_records_batch_cleanup(&b);
    atr_records_batch_cleanup(&b); /* idempotent */
    atr_records_batch_cleanup(NULL);

    /* an empty body is an empty batch */
    assert_int_equal(atr_records_parse(&b, atr_span_of(NULL, 0), NULL, NULL), ATR_OK);
    assert_int_equal(b.n_lines, 0);
    assert_int_equal(b.n_records, 0);
    atr_records_batch_cleanup(&b);
}

static void test_required_members(void **state)
{
    (void)state;
    const char *t = "\"2026-11-29T06:00:00Z\"";
    char line[1024];
    /* every member missing */
    expect_rejected("{\"user\":\"u\",\"app\":\"a\",\"action\":\"x\",\"ip\":\"10.0.0.1\"}",
                    "missing \"time\"");
    snprintf(line, sizeof(line), "{\"time\":%s,\"app\":\"a\",\"action\":\"x\",\"ip\":\"::1\"}", t);
    expect_rejected(line, "missing \"user\"");
    snprintf(line, sizeof(line), "{\"time\":%s,\"user\":\"u\",\"action\":\"x\",\"ip\":\"::1\"}", t);
    expect_rejected(line, "missing \"app\"");
    snprintf(line, sizeof(line), "{\"time\":%s,\"user\":\"u\",\"app\":\"a\",\"ip\":\"::1\"}", t);
    expect_rejected(line, "missing \"action\"");
    snprintf(line, sizeof(line), "{\"time\":%s,\"user\":\"u\",\"app\":\"a\",\"action\":\"x\"}", t);
    expect_rejected(line, "missing \"ip\"");
    expect_rejected("{}", "missing \"time\"");
    /* names are case-sensitive: "User" is a free field */
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"User\":\"u\",\"app\":\"a\",\"action\":\"x\",\"ip\":\"::1\"}", t);
    expect_rejected(line, "missing \"user\"");

    /* wrong types */
    static const char *const wrong[] = {"1", "1.5", "true", "null", "[\"u\"]", "{\"u\":1}"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(wrong); i++) {
        line_of(line, sizeof(line), t, wrong[i], "\"a\"", "\"x\"", "\"::1\"");
        expect_rejected(line, "\"user\" must be a string");
        line_of(line, sizeof(line), t, "\"u\"", wrong[i], "\"x\"", "\"::1\"");
        expect_rejected(line, "\"app\" must be a string");
        line_of(line, sizeof(line), t, "\"u\"", "\"a\"", wrong[i], "\"::1\"");
        expect_rejected(line, "\"action\" must be a string");
        line_of(line, sizeof(line), t, "\"u\"", "\"a\"", "\"x\"", wrong[i]);
        expect_rejected(line, "\"ip\" must be a string");
    }
    line_of(line, sizeof(line), t, "null", "\"a\"", "\"x\"", "\"::1\"");
    expect_rejected(line, "\"user\" must be a string, not null");
    static const char *const wrong_time[] = {"1.5e12", "true", "null", "[1]", "{}"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(wrong_time); i++)
        expect_time_bad(wrong_time[i], "\"time\" must be an RFC 3339 string or an integer");

    /* lengths */
    char big[400];
    line_of(line, sizeof(line), t, "\"\"", "\"a\"", "\"x\"", "\"::1\"");
    expect_rejected(line, "\"user\" must be 1 to 256 bytes long");
    memset(big, 'u', sizeof(big));
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"%.256s\",\"app\":\"a\",\"action\":\"x\","
             "\"ip\":\"::1\"}",
             t, big);
    expect_ok(line, T0);
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"%.257s\",\"app\":\"a\",\"action\":\"x\","
             "\"ip\":\"::1\"}",
             t, big);
    expect_rejected(line, "\"user\" must be 1 to 256 bytes long");
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"u\",\"app\":\"%.257s\",\"action\":\"x\","
             "\"ip\":\"::1\"}",
             t, big);
    expect_rejected(line, "\"app\" must be 1 to 256 bytes long");
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"u\",\"app\":\"a\",\"action\":\"%.128s\","
             "\"ip\":\"::1\"}",
             t, big);
    expect_ok(line, T0);
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"u\",\"app\":\"a\",\"action\":\"%.129s\","
             "\"ip\":\"::1\"}",
             t, big);
    expect_rejected(line, "\"action\" must be 1 to 128 bytes long");
    /* bytes, not characters: 128 two-byte characters are 256 bytes */
    char wide[600] = "";
    for (int i = 0; i < 128; i++)
        strcat(wide, "\xc3\xa9");
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"%s\",\"app\":\"a\",\"action\":\"x\","
             "\"ip\":\"::1\"}",
             t, wide);
    expect_ok(line, T0);
    snprintf(line, sizeof(line),
             "{\"time\":%s,\"user\":\"u\",\"app\":\"a\",\"action\":\"%s\","
             "\"ip\":\"::1\"}",
             t, wide);
    expect_rejected(line, "\"action\" must be 1 to 128 bytes long");
}

static void test_times(void **state)
{
    (void)state;
    expect_time_ok("\"2026-11-29T06:00:00Z\"", T0);
    expect_time_ok("\"2026-11-29T06:00:00.5Z\"", T0 + 500);
    expect_time_ok("\"2026-11-29T06:00:00.123456789Z\"", T0 + 123);
    expect_time_ok("\"2026-11-29T06:00:00.999999999Z\"", T0 + 999);
    expect_time_ok("\"2026-11-29T08:00:00+02:00\"", T0);
    expect_time_ok("\"2026-11-29T00:30:00-05:30\"", T0);
    expect_time_ok("\"2026-11-29T06:00:00-00:00\"", T0);
    expect_time_ok("\"2026-11-29T06:00:00+00:00\"", T0);
    expect_time_ok("\"2026-11-30T05:59:00+23:59\"", T0);
    expect_time_ok("\"2024-02-29T00:00:00Z\"", 1709164800000LL);
    expect_time_ok("\"2000-02-29T00:00:00Z\"", 951782400000LL);
    expect_time_ok("\"1970-01-01T00:00:00Z\"", 0);
    expect_time_ok("\"1969-12-31T23:59:59.999Z\"", -1);
    expect_time_ok("\"0000-01-01T00:00:00Z\"", ATR_RECORDS_TIME_MIN_MS);
    expect_time_ok("\"9999-12-31T23:59:59.999Z\"", ATR_RECORDS_TIME_MAX_MS);
    expect_time_ok("1795932000000", T0);
    expect_time_ok("0", 0);
    expect_time_ok("-1", -1);
    expect_time_ok("253402300799999", ATR_RECORDS_TIME_MAX_MS);
    expect_time_ok("-62167219200000", ATR_RECORDS_TIME_MIN_MS);

    expect_time_bad("\"2026-13-01T00:00:00Z\"", "\"time\" has an invalid month");
    expect_time_bad("\"2026-00-01T00:00:00Z\"", "invalid month");
    expect_time_bad("\"2026-02-30T00:00:00Z\"", "\"time\" has an invalid day of the month");
    expect_time_bad("\"2025-02-29T00:00:00Z\"", "invalid day of the month");
    expect_time_bad("\"1900-02-29T00:00:00Z\"", "invalid day of the month");
    expect_time_bad("\"2026-04-31T00:00:00Z\"", "invalid day of the month");
    expect_time_bad("\"2026-04-00T00:00:00Z\"", "invalid day of the month");
    expect_time_bad("\"2026-11-29T24:00:00Z\"", "invalid hour");
    expect_time_bad("\"2026-11-29T06:60:00Z\"", "invalid minute");
    expect_time_bad("\"2026-12-31T23:59:60Z\"", "leap second");
    expect_time_bad("\"2026-11-29T06:00:61Z\"", "invalid second");
    expect_time_bad("\"2026-11-29T06:00:00+24:00\"", "invalid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00+01:60\"", "invalid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00+0100\"", "invalid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00+01\"", "invalid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00+1:00\"", "invalid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00\"", "no valid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00UTC\"", "no valid UTC offset");
    expect_time_bad("\"2026-11-29T06:00:00.1234567890Z\"", "more than 9 fractional digits");
    expect_time_bad("\"2026-11-29T06:00:00.Z\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"2026-11-29T06:00:00,5Z\"", "no valid UTC offset");
    expect_time_bad("\"2026-11-29 06:00:00Z\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"2026-11-29\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"26-11-29T06:00:00Z\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"+2026-11-29T06:00:00Z\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"2026-11-29T06:00:00Z \"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"2026-11-29T06:00:00+01:00x\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"1795932000000\"", "is not an RFC 3339 timestamp");
    expect_time_bad("\"0000-01-01T00:00:00+00:01\"", "out of range");
    expect_time_bad("\"9999-12-31T23:59:59.999-00:01\"", "out of range");
    expect_time_bad("253402300800000", "out of range");
    expect_time_bad("-62167219200001", "out of range");
    expect_time_bad("9223372036854775807", "out of range");
    expect_time_bad("99999999999999999999", "number out of range");

    /* the extremes format back to four-digit years */
    struct atr_records_batch b;
    char body[512];
    line_of(body, sizeof(body), "-62167219200000", "\"u\"", "\"a\"", "\"x\"", "\"::1\"");
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, 1);
    assert_non_null(memmem(b.canon.ptr, b.canon.len, "\"0000-01-01T00:00:00.000Z\"",
                           strlen("\"0000-01-01T00:00:00.000Z\"")));
    atr_records_batch_cleanup(&b);
    line_of(body, sizeof(body), "\"9999-12-31T23:59:59.999999999Z\"", "\"u\"", "\"a\"", "\"x\"",
            "\"::1\"");
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, 1);
    assert_non_null(memmem(b.canon.ptr, b.canon.len, "\"9999-12-31T23:59:59.999Z\"",
                           strlen("\"9999-12-31T23:59:59.999Z\"")));
    atr_records_batch_cleanup(&b);
}

static void test_ip(void **state)
{
    (void)state;
    static const char *const good[] = {"\"10.0.0.1\"", "\"0.0.0.0\"",        "\"::1\"",
                                       "\"::\"",       "\"2001:db8::1\"",    "\"::ffff:192.0.2.1\"",
                                       "\"FE80::1\"",  "\"255.255.255.255\""};
    static const char *const bad[] = {
        "\"999.1.1.1\"",   "\"1.2.3\"",        "\"1.2.3.4.5\"",
        "\"::g\"",         "\"fe80::1%eth0\"", "\"\"",
        "\" 1.2.3.4\"",    "\"1.2.3.4 \"",     "\"1:2:3:4:5:6:7:8:9\"",
        "\"10.0.0.1/24\"", "\"localhost\""};
    char line[512];
    for (size_t i = 0; i < ATR_ARRAY_LEN(good); i++) {
        line_of(line, sizeof(line), "0", "\"u\"", "\"a\"", "\"x\"", good[i]);
        expect_ok(line, 0);
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        line_of(line, sizeof(line), "0", "\"u\"", "\"a\"", "\"x\"", bad[i]);
        expect_rejected(line, "\"ip\" is not an IPv4 or IPv6 address");
    }
}

static void test_line_splitting(void **state)
{
    (void)state;
    char l1[256], l2[256];
    line_of(l1, sizeof(l1), "1", "\"u\"", "\"a\"", "\"x\"", "\"::1\"");
    line_of(l2, sizeof(l2), "2", "\"u\"", "\"a\"", "\"x\"", "\"::1\"");
    char body[2048];
    struct atr_records_batch b;
    struct atr_err err;

    /* CRLF, blank lines (empty, spaces, tabs, CR alone), a last line without LF */
    snprintf(body, sizeof(body), "\r\n%s\r\n\n  \t \r\n\r\n%s", l1, l2);
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_lines, 2);
    assert_int_equal(b.n_records, 2);
    assert_int_equal(b.records[0].line, 2);
    assert_int_equal(b.records[0].time_ms, 1);
    assert_int_equal(b.records[1].line, 6);
    assert_int_equal(b.records[1].time_ms, 2);
    /* no CR in the canonical form */
    assert_null(memchr(b.canon.ptr, '\r', b.canon.len));
    atr_records_batch_cleanup(&b);

    /* a final LF does not make another line; only blank lines */
    snprintf(body, sizeof(body), "%s\n%s\n\n\n", l1, l2);
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_lines, 2);
    assert_int_equal(b.n_records, 2);
    atr_records_batch_cleanup(&b);
    assert_int_equal(parse_str(&b, "\n\n \n\r\n", NULL, NULL), ATR_OK);
    assert_int_equal(b.n_lines, 0);
    assert_int_equal(b.n_records, 0);
    atr_records_batch_cleanup(&b);

    /* a CR not before LF stays in the line (JSON whitespace at the end) */
    snprintf(body, sizeof(body), "%s\r\r\n%s\r", l1, l2);
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, 2);
    atr_records_batch_cleanup(&b);
    /* ... and two objects on one line are one bad line */
    snprintf(body, sizeof(body), "%s\r%s\n", l1, l2);
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, 0);
    assert_int_equal(b.n_errors, 1);
    assert_string_equal(b.errors[0].message,
                        "not a JSON object: unexpected data after the object at column 57");
    atr_records_batch_cleanup(&b);

    /* a byte order mark refuses the batch */
    snprintf(body, sizeof(body), "\xef\xbb\xbf%s\n", l1);
    atr_err_clear(&err);
    assert_int_equal(parse_str(&b, body, NULL, &err), ATR_E_PARSE);
    assert_int_equal(err.code, ATR_E_PARSE);
    assert_non_null(strstr(err.msg, "byte order mark"));
    assert_int_equal(b.n_records, 0);
    assert_null(b.records);
    atr_records_batch_cleanup(&b);
    /* ... at the start only; elsewhere it is a bad line */
    snprintf(body, sizeof(body), "%s\n\xef\xbb\xbf%s\n", l1, l2);
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, 1);
    assert_int_equal(b.n_errors, 1);
    assert_int_equal(b.errors[0].line, 2);
    assert_non_null(strstr(b.errors[0].message, "not a JSON object"));
    atr_records_batch_cleanup(&b);
}

static void test_line_too_long(void **state)
{
    (void)state;
    struct atr_records_limits lim = {.max_line = 100};
    char base[256];
    line_of(base, sizeof(base), "0", "\"u\"", "\"a\"", "\"x\"", "\"::1\"");
    /* pad with a free field to exactly 100 bytes: base minus '}' plus ,"p":"..."} */
    size_t fixed = strlen(base) - 1 + strlen(",\"p\":\"\"}");
    char line[256];
    char pad[128];
    memset(pad, 'p', sizeof(pad));
    snprintf(line, sizeof(line), "%.*s,\"p\":\"%.*s\"}", (int)(strlen(base) - 1), base,
             (int)(100 - fixed), pad);
    assert_int_equal(strlen(line), 100);
    char body[1024];
    snprintf(body, sizeof(body), "%s\r\n", line); /* the CR is not counted */
    struct atr_records_batch b;
    assert_int_equal(parse_str(&b, body, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_records, 1);
    atr_records_batch_cleanup(&b);
    snprintf(line, sizeof(line), "%.*s,\"p\":\"%.*s\"}", (int)(strlen(base) - 1), base,
             (int)(101 - fixed), pad);
    snprintf(body, sizeof(body), "%s\n%s\n", base, line);
    assert_int_equal(parse_str(&b, body, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_records, 1);
    assert_int_equal(b.n_errors, 1);
    assert_int_equal(b.errors[0].line, 2);
    assert_string_equal(b.errors[0].message, "the line is longer than 100 bytes");
    atr_records_batch_cleanup(&b);

    /* the default, 64 KiB */
    size_t n = ATR_RECORDS_MAX_LINE_DEFAULT + 1;
    char *big = atr_malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    assert_int_equal(parse_str(&b, big, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_errors, 1);
    assert_string_equal(b.errors[0].message, "the line is longer than 65536 bytes");
    atr_records_batch_cleanup(&b);
    atr_free(big);
}

static char *repeat_lines(size_t count, const char *line, const char *sep)
{
    size_t n = count * (strlen(line) + strlen(sep)) + 1;
    char *s = atr_malloc(n);
    assert_non_null(s);
    s[0] = '\0';
    char *p = s;
    for (size_t i = 0; i < count; i++)
        p += sprintf(p, "%s%s", line, sep);
    return s;
}

static void test_too_many_lines(void **state)
{
    (void)state;
    char l[256];
    line_of(l, sizeof(l), "0", "\"u\"", "\"a\"", "\"x\"", "\"::1\"");
    struct atr_records_limits lim = {.max_lines = 3};
    struct atr_records_batch b;
    struct atr_err err;
    /* three records and any number of blank lines */
    char *s = repeat_lines(3, l, "\n\n\n");
    assert_int_equal(parse_str(&b, s, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_records, 3);
    atr_records_batch_cleanup(&b);
    atr_free(s);
    /* four lines, even bad ones, refuse the batch */
    s = repeat_lines(4, "x", "\n");
    atr_err_clear(&err);
    assert_int_equal(parse_str(&b, s, &lim, &err), ATR_E_TOO_LARGE);
    assert_int_equal(err.code, ATR_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "more than 3 records"));
    assert_int_equal(b.n_records, 0);
    assert_int_equal(b.n_lines, 0);
    atr_records_batch_cleanup(&b);
    atr_free(s);
    /* the default: 10000 */
    s = repeat_lines(ATR_RECORDS_MAX_LINES_DEFAULT, l, "\n");
    assert_int_equal(parse_str(&b, s, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, ATR_RECORDS_MAX_LINES_DEFAULT);
    atr_records_batch_cleanup(&b);
    atr_free(s);
    s = repeat_lines(ATR_RECORDS_MAX_LINES_DEFAULT + 1, "{}", "\n");
    assert_int_equal(parse_str(&b, s, NULL, NULL), ATR_E_TOO_LARGE);
    atr_records_batch_cleanup(&b);
    atr_free(s);
}

static char *nested_line(unsigned extra_depth)
{
    size_t n = 200 + 2 * (size_t)extra_depth;
    char *s = atr_malloc(n);
    assert_non_null(s);
    char *p = s + sprintf(s, "{\"time\":0,\"user\":\"u\",\"app\":\"a\",\"action\":\"x\","
                             "\"ip\":\"::1\",\"d\":");
    for (unsigned i = 0; i < extra_depth; i++)
        *p++ = '[';
    for (unsigned i = 0; i < extra_depth; i++)
        *p++ = ']';
    if (extra_depth == 0)
        *p++ = '0';
    *p++ = '}';
    *p = '\0';
    return s;
}

static void test_json_errors(void **state)
{
    (void)state;
    const char *t = "\"time\":0,\"user\":\"u\",\"app\":\"a\",\"action\":\"x\",\"ip\":\"::1\"";
    char line[512];
    /* duplicate members, required or free */
    snprintf(line, sizeof(line), "{%s,\"user\":\"v\"}", t);
    expect_rejected(line, "not a JSON object: duplicate member name at column");
    snprintf(line, sizeof(line), "{%s,\"f\":1,\"f\":2}", t);
    expect_rejected(line, "duplicate member name");
    snprintf(line, sizeof(line), "{%s,\"f\":{\"g\":1,\"g\":1}}", t);
    expect_rejected(line, "duplicate member name");
    /* not objects */
    expect_rejected("[1,2]", "not a JSON object: an array");
    expect_rejected("\"x\"", "not a JSON object: a string");
    expect_rejected("12", "not a JSON object: a number");
    expect_rejected("null", "not a JSON object: null");
    expect_rejected("true", "not a JSON object: a boolean");
    /* syntax, with the column; values are never quoted */
    expect_rejected("{\"time\":", "not a JSON object: unexpected end of line at column");
    expect_rejected("{\"a\":1,}", "not a JSON object: invalid syntax at column 8");
    expect_rejected("{\"password\": hunter2}", "invalid syntax at column");
    struct atr_records_batch b;
    assert_int_equal(parse_str(&b, "{\"password\": hunter2}", NULL, NULL), ATR_OK);
    assert_null(strstr(b.errors[0].message, "hunter"));
    atr_records_batch_cleanup(&b);
    assert_int_equal(parse_str(&b, "{\"secret\":1,\"secret\":2}", NULL, NULL), ATR_OK);
    assert_null(strstr(b.errors[0].message, "secret"));
    atr_records_batch_cleanup(&b);
    snprintf(line, sizeof(line), "{%s} {}", t);
    expect_rejected(line, "unexpected data after the object");
    snprintf(line, sizeof(line), "{%s,\"s\":\"\xff\"}", t);
    expect_rejected(line, "invalid UTF-8");
    snprintf(line, sizeof(line), "{%s,\"s\":\"a\\u0000b\"}", t);
    expect_rejected(line, "NUL character not allowed");
    snprintf(line, sizeof(line), "{%s,\"n\":1e999}", t);
    expect_rejected(line, "number out of range");
    /* a raw NUL byte inside the line */
    char raw[] = "{\"a\":\0}";
    assert_int_equal(atr_records_parse(&b, atr_span_of(raw, sizeof(raw) - 1), NULL, NULL), ATR_OK);
    assert_int_equal(b.n_rejected, 1);
    atr_records_batch_cleanup(&b);

    /* nesting: the object is level 1; 32 levels pass, 33 do not */
    char *ok = nested_line(ATR_RECORDS_MAX_DEPTH_DEFAULT - 1);
    expect_ok(ok, 0);
    atr_free(ok);
    char *deep = nested_line(ATR_RECORDS_MAX_DEPTH_DEFAULT);
    expect_rejected(deep, "not a JSON object: nesting deeper than 32 levels at byte");
    atr_free(deep);
    char *very = nested_line(30000);
    struct atr_records_limits lim = {.max_line = 100000};
    assert_int_equal(parse_str(&b, very, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_rejected, 1);
    assert_non_null(strstr(b.errors[0].message, "nesting deeper than 32 levels"));
    atr_records_batch_cleanup(&b);
    atr_free(very);
    /* a smaller limit */
    lim.max_depth = 2;
    char *two = nested_line(1);
    assert_int_equal(parse_str(&b, two, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_records, 1);
    atr_records_batch_cleanup(&b);
    atr_free(two);
    char *three = nested_line(2);
    assert_int_equal(parse_str(&b, three, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_records, 0);
    assert_non_null(strstr(b.errors[0].message, "nesting deeper than 2 levels"));
    atr_records_batch_cleanup(&b);
    atr_free(three);
}

static void test_error_cap(void **state)
{
    (void)state;
    char good[256];
    line_of(good, sizeof(good), "0", "\"u\"", "\"a\"", "\"x\"", "\"::1\"");
    char body[8192] = "";
    /* lines 1..12 bad (with a good one at 4 and 9) */
    for (int i = 1; i <= 14; i++) {
        strcat(body, i == 4 || i == 9 ? good : "{\"time\":0}");
        strcat(body, "\n");
    }
    struct atr_records_limits lim = {.max_errors = 5};
    struct atr_records_batch b;
    assert_int_equal(parse_str(&b, body, &lim, NULL), ATR_OK);
    assert_int_equal(b.n_lines, 14);
    assert_int_equal(b.n_records, 2);
    assert_int_equal(b.records[0].line, 4);
    assert_int_equal(b.records[1].line, 9);
    assert_int_equal(b.n_rejected, 12);
    assert_int_equal(b.n_errors, 5);
    assert_int_equal(b.errors_omitted, 7);
    static const size_t want[] = {1, 2, 3, 5, 6};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(b.errors[i].line, want[i]);
        assert_string_equal(b.errors[i].message, "missing \"user\"");
    }
    atr_records_batch_cleanup(&b);

    /* the default keeps 100 */
    char *s = repeat_lines(150, "x", "\n");
    assert_int_equal(parse_str(&b, s, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_errors, ATR_RECORDS_MAX_ERRORS_DEFAULT);
    assert_int_equal(b.errors_omitted, 50);
    assert_int_equal(b.n_rejected, 150);
    assert_int_equal(b.errors[99].line, 100);
    atr_records_batch_cleanup(&b);
    atr_free(s);
}

/* ---- packing ------------------------------------------------------------- */

/*
 * A body of @p n records whose canonical lines are each @p sizes[i] bytes
 * ('\n' excluded), with time T0 + times[i] and user "u<i%3>".
 */
static void batch_of_sizes(struct atr_records_batch *b, size_t n, const size_t *sizes,
                           const int64_t *times)
{
    struct atr_buf body;
    atr_buf_init(&body, (size_t)1 << 24);
    for (size_t i = 0; i < n; i++) {
        char head[256];
        int64_t t = T0 + times[i];
        snprintf(head, sizeof(head),
                 "{\"time\":%lld,\"user\":\"u%zu\",\"app\":\"a%zu\",\"action\":\"x%zu\","
                 "\"ip\":\"::1\",\"p\":\"",
                 (long long)t, i % 3, i % 2, i % 5);
        /* canonical time is "YYYY-MM-DDTHH:MM:SS.mmmZ" quoted: 26 bytes for 13 digits */
        size_t canon_head = strlen(head) - 13 + 26;
        size_t tail = 2; /* "} */
        assert_true(sizes[i] >= canon_head + tail);
        assert_int_equal(atr_buf_append_str(&body, head), ATR_OK);
        for (size_t k = 0; k < sizes[i] - canon_head - tail; k++)
            assert_int_equal(atr_buf_append(&body, "p", 1), ATR_OK);
        assert_int_equal(atr_buf_append_str(&body, "\"}\n"), ATR_OK);
    }
    struct atr_records_limits lim = {.max_line = (size_t)1 << 20};
    assert_int_equal(atr_records_parse(b, atr_buf_span(&body), &lim, NULL), ATR_OK);
    assert_int_equal(b->n_records, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(b->records[i].len, sizes[i]);
    atr_buf_cleanup(&body);
}

static void check_blocks(const struct atr_records_batch *b, const struct atr_records_blocks *bl,
                         size_t block_bytes, const size_t *counts, size_t n_blocks)
{
    assert_int_equal(bl->n, n_blocks);
    size_t rec = 0;
    size_t off = 0;
    for (size_t i = 0; i < bl->n; i++) {
        const struct atr_records_block *k = &bl->blocks[i];
        assert_int_equal(k->count, counts[i]);
        assert_int_equal(k->first, rec);
        assert_true(k->plain.len <= block_bytes || k->count == 1);
        assert_memory_equal(k->plain.ptr, b->canon.ptr + off, k->plain.len);
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (size_t r = rec; r < rec + k->count; r++) {
            lo = b->records[r].time_ms < lo ? b->records[r].time_ms : lo;
            hi = b->records[r].time_ms > hi ? b->records[r].time_ms : hi;
        }
        assert_int_equal(k->t_min_ms, lo);
        assert_int_equal(k->t_max_ms, hi);
        off += k->plain.len;
        rec += k->count;
    }
    assert_int_equal(rec, b->n_records);
    assert_int_equal(off, b->canon.len);
}

static void test_pack_boundaries(void **state)
{
    (void)state;
    struct atr_records_batch b;
    struct atr_records_blocks bl;
    size_t sizes[7];
    static const int64_t times[7] = {50, -20, 70, 10, 10, -5, 99};
    for (size_t i = 0; i < 7; i++)
        sizes[i] = 99; /* 100 bytes with the '\n' */
    batch_of_sizes(&b, 7, sizes, times);

    /* exactly three records fill 300 bytes */
    assert_int_equal(atr_records_pack(&bl, &b, 300, NULL), ATR_OK);
    static const size_t c300[] = {3, 3, 1};
    check_blocks(&b, &bl, 300, c300, 3);
    assert_int_equal(bl.blocks[0].plain.len, 300);
    assert_int_equal(bl.blocks[0].t_min_ms, T0 - 20);
    assert_int_equal(bl.blocks[0].t_max_ms, T0 + 70);
    assert_int_equal(bl.blocks[1].t_min_ms, T0 - 5);
    assert_int_equal(bl.blocks[1].t_max_ms, T0 + 10);
    assert_int_equal(bl.blocks[2].t_min_ms, T0 + 99);
    assert_int_equal(bl.blocks[2].t_max_ms, T0 + 99);
    atr_records_blocks_cleanup(&bl);
    atr_records_blocks_cleanup(&bl); /* idempotent */
    atr_records_blocks_cleanup(NULL);
    /* one byte less: two per block */
    assert_int_equal(atr_records_pack(&bl, &b, 299, NULL), ATR_OK);
    static const size_t c299[] = {2, 2, 2, 1};
    check_blocks(&b, &bl, 299, c299, 4);
    atr_records_blocks_cleanup(&bl);
    /* one byte more: still three */
    assert_int_equal(atr_records_pack(&bl, &b, 301, NULL), ATR_OK);
    check_blocks(&b, &bl, 301, c300, 3);
    atr_records_blocks_cleanup(&bl);
    /* smaller than any record: one per block */
    assert_int_equal(atr_records_pack(&bl, &b, 1, NULL), ATR_OK);
    static const size_t c1[] = {1, 1, 1, 1, 1, 1, 1};
    check_blocks(&b, &bl, 1, c1, 7);
    atr_records_blocks_cleanup(&bl);
    /* the default holds them all */
    assert_int_equal(atr_records_pack(&bl, &b, 0, NULL), ATR_OK);
    static const size_t call[] = {7};
    check_blocks(&b, &bl, ATR_RECORDS_BLOCK_BYTES_DEFAULT, call, 1);
    atr_records_blocks_cleanup(&bl);
    atr_records_batch_cleanup(&b);

    /* one huge record in the middle makes its own block */
    size_t hs[5] = {99, 99, 1000, 99, 99};
    batch_of_sizes(&b, 5, hs, times);
    assert_int_equal(atr_records_pack(&bl, &b, 300, NULL), ATR_OK);
    static const size_t chuge[] = {2, 1, 2};
    check_blocks(&b, &bl, 300, chuge, 3);
    assert_int_equal(bl.blocks[1].plain.len, 1001);
    assert_int_equal(bl.blocks[1].t_min_ms, T0 + 70);
    atr_records_blocks_cleanup(&bl);
    atr_records_batch_cleanup(&b);
    /* a record larger than the default block */
    size_t big[2] = {ATR_RECORDS_BLOCK_BYTES_DEFAULT + 10, 99};
    batch_of_sizes(&b, 2, big, times);
    assert_int_equal(atr_records_pack(&bl, &b, 0, NULL), ATR_OK);
    static const size_t cbig[] = {1, 1};
    check_blocks(&b, &bl, ATR_RECORDS_BLOCK_BYTES_DEFAULT, cbig, 2);
    atr_records_blocks_cleanup(&bl);
    atr_records_batch_cleanup(&b);

    /* many small ones with the default size */
    enum { MANY = 3000 };
    size_t *ms = atr_calloc(MANY, sizeof(size_t));
    int64_t *mt = atr_calloc(MANY, sizeof(int64_t));
    assert_non_null(ms);
    assert_non_null(mt);
    for (size_t i = 0; i < MANY; i++) {
        ms[i] = 99 + i % 17;
        mt[i] = (int64_t)((i * 7919) % 1000);
    }
    batch_of_sizes(&b, MANY, ms, mt);
    assert_int_equal(atr_records_pack(&bl, &b, 0, NULL), ATR_OK);
    assert_true(bl.n >= 5);
    size_t total = 0;
    for (size_t i = 0; i < bl.n; i++) {
        assert_true(bl.blocks[i].plain.len <= ATR_RECORDS_BLOCK_BYTES_DEFAULT);
        /* full: the next record would not have fitted */
        if (i + 1 < bl.n)
            assert_true(bl.blocks[i].plain.len + b.records[bl.blocks[i + 1].first].len + 1 >
                        ATR_RECORDS_BLOCK_BYTES_DEFAULT);
        total += bl.blocks[i].count;
    }
    assert_int_equal(total, MANY);
    size_t *counts = atr_calloc(bl.n, sizeof(size_t));
    assert_non_null(counts);
    for (size_t i = 0; i < bl.n; i++)
        counts[i] = bl.blocks[i].count;
    check_blocks(&b, &bl, ATR_RECORDS_BLOCK_BYTES_DEFAULT, counts, bl.n);
    atr_free(counts);
    atr_records_blocks_cleanup(&bl);
    atr_records_batch_cleanup(&b);
    atr_free(ms);
    atr_free(mt);

    /* an empty batch has no blocks */
    assert_int_equal(parse_str(&b, "x\n", NULL, NULL), ATR_OK);
    assert_int_equal(atr_records_pack(&bl, &b, 0, NULL), ATR_OK);
    assert_int_equal(bl.n, 0);
    assert_null(bl.blocks);
    atr_records_blocks_cleanup(&bl);
    atr_records_batch_cleanup(&b);
}

/* ---- scanning ------------------------------------------------------------ */

struct seen {
    size_t n;
    size_t index[64];
    int64_t time[64];
    size_t stop_after; /* 0: never stop */
};

static int collect(struct atr_span line, int64_t time_ms, size_t index, void *ctx)
{
    struct seen *s = ctx;
    assert_true(line.len > 0);
    assert_int_equal(line.ptr[0], '{');
    assert_int_not_equal(line.ptr[line.len - 1], '\n');
    assert_true(s->n < 64);
    s->index[s->n] = index;
    s->time[s->n] = time_ms;
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

/* Scans @p plain with @p f from @p skip; expects exactly the indexes @p want. */
static void expect_scan(struct atr_span plain, const struct atr_records_filter *f, size_t skip,
                        const size_t *want, size_t n_want)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(atr_records_scan(plain, f, skip, collect, &s, NULL), ATR_OK);
    if (s.n != n_want)
        fail_msg("scan gave %zu records, want %zu", s.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_int_equal(s.index[i], want[i]);
}

static void test_scan(void **state)
{
    (void)state;
    /* index: time offset, user, app, action */
    const char *body =
        "{\"time\":\"2026-11-29T06:00:00Z\",\"user\":\"alice\",\"app\":\"crm\",\"action\":"
        "\"login\","
        "\"ip\":\"::1\"}\n"
        "{\"time\":\"2026-11-29T06:00:01Z\",\"user\":\"bob\",\"app\":\"crm\",\"action\":\"read\","
        "\"ip\":\"::1\"}\n"
        "{\"time\":\"2026-11-29T05:59:59.999Z\",\"user\":\"alice\",\"app\":\"mail\","
        "\"action\":\"read\",\"ip\":\"::1\"}\n"
        "{\"time\":\"2026-11-29T06:00:02Z\",\"user\":\"alice\",\"app\":\"crm\",\"action\":\"read\","
        "\"ip\":\"::1\"}\n"
        "{\"time\":\"2026-11-29T06:00:01Z\",\"user\":\"Alice\",\"app\":\"crm\",\"action\":\"read\","
        "\"ip\":\"::1\",\"note\":{\"user\":\"bob\"}}\n";
    struct atr_records_batch b;
    struct atr_records_blocks bl;
    assert_int_equal(parse_str(&b, body, NULL, NULL), ATR_OK);
    assert_int_equal(b.n_records, 5);
    assert_int_equal(atr_records_pack(&bl, &b, 0, NULL), ATR_OK);
    assert_int_equal(bl.n, 1);
    struct atr_span plain = atr_buf_span(&bl.blocks[0].plain);

    struct atr_records_filter f;
    atr_records_filter_init(&f);
    static const size_t all[] = {0, 1, 2, 3, 4};
    expect_scan(plain, NULL, 0, all, 5);
    expect_scan(plain, &f, 0, all, 5);
    /* times and lines come through */
    struct seen s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(atr_records_scan(plain, &f, 0, collect, &s, NULL), ATR_OK);
    assert_int_equal(s.time[0], T0);
    assert_int_equal(s.time[2], T0 - 1);
    assert_int_equal(s.time[3], T0 + 2000);

    /* from inclusive, to exclusive */
    f.from_ms = T0;
    f.to_ms = T0 + 2000;
    static const size_t range[] = {0, 1, 4};
    expect_scan(plain, &f, 0, range, 3);
    f.from_ms = T0 + 1000;
    f.to_ms = T0 + 1000;
    expect_scan(plain, &f, 0, NULL, 0);
    f.to_ms = T0 + 1001;
    static const size_t one_ms[] = {1, 4};
    expect_scan(plain, &f, 0, one_ms, 2);

    /* exact strings: case matters, nested members do not count */
    atr_records_filter_init(&f);
    f.user = "alice";
    static const size_t alice[] = {0, 2, 3};
    expect_scan(plain, &f, 0, alice, 3);
    f.user = "bob";
    static const size_t bob[] = {1};
    expect_scan(plain, &f, 0, bob, 1);
    f.user = "ali";
    expect_scan(plain, &f, 0, NULL, 0);
    atr_records_filter_init(&f);
    f.app = "mail";
    static const size_t mail[] = {2};
    expect_scan(plain, &f, 0, mail, 1);
    atr_records_filter_init(&f);
    f.action = "read";
    static const size_t read[] = {1, 2, 3, 4};
    expect_scan(plain, &f, 0, read, 4);
    /* all together */
    f.user = "alice";
    f.app = "crm";
    f.from_ms = T0;
    static const size_t combo[] = {3};
    expect_scan(plain, &f, 0, combo, 1);

    /* skip resumes inside the block; indexes stay block indexes */
    static const size_t from2[] = {2, 3, 4};
    expect_scan(plain, NULL, 2, from2, 3);
    atr_records_filter_init(&f);
    f.user = "alice";
    static const size_t alice_from1[] = {2, 3};
    expect_scan(plain, &f, 1, alice_from1, 2);
    expect_scan(plain, NULL, 5, NULL, 0);
    expect_scan(plain, NULL, 1000, NULL, 0);

    /* the callback stops the scan */
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    assert_int_equal(atr_records_scan(plain, NULL, 1, collect, &s, NULL), ATR_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.index[1], 2);

    /* an empty block */
    expect_scan(atr_span_of(NULL, 0), NULL, 0, NULL, 0);

    atr_records_filter_cleanup(&f);
    assert_null(f.user);
    atr_records_filter_cleanup(NULL);
    atr_records_blocks_cleanup(&bl);
    atr_records_batch_cleanup(&b);
}

static void expect_scan_error(const char *plain, size_t skip, const char *fragment)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_records_scan(atr_span_str(plain), NULL, skip, collect, &s, &err),
                     ATR_E_PARSE);
    assert_int_equal(err.code, ATR_E_PARSE);
    if (strstr(err.msg, fragment) == NULL)
        fail_msg("'%.60s': message '%s' lacks '%s'", plain, err.msg, fragment);
}

static void test_scan_malformed(void **state)
{
    (void)state;
    const char *good = "{\"time\":\"2026-11-29T06:00:00.000Z\",\"user\":\"u\",\"app\":\"a\","
                       "\"action\":\"x\",\"ip\":\"::1\"}";
    char buf[1024];
    expect_scan_error("not json\n", 0, "block record 0 is not a JSON object");
    expect_scan_error("[1]\n", 0, "block record 0 is not a JSON object");
    snprintf(buf, sizeof(buf), "%s\n%s", good, good);
    expect_scan_error(buf, 0, "block record 1 has no line end");
    snprintf(buf, sizeof(buf), "%s\n\n%s\n", good, good);
    expect_scan_error(buf, 0, "block record 1 is an empty line");
    expect_scan_error("{\"time\":\"2026-11-29T06:00:00.000Z\",\"app\":\"a\",\"action\":\"x\"}\n", 0,
                      "block record 0 lacks a valid");
    expect_scan_error("{\"time\":1,\"user\":\"u\",\"app\":\"a\",\"action\":\"x\"}\n", 0,
                      "lacks a valid");
    expect_scan_error("{\"time\":\"2026-02-30T00:00:00Z\",\"user\":\"u\",\"app\":\"a\","
                      "\"action\":\"x\"}\n",
                      0, "lacks a valid");
    expect_scan_error("{\"time\":\"x\",\"time\":\"y\"}\n", 0, "not a JSON object");
    expect_scan_error("\xff\xfe\x01\n", 0, "not a JSON object");
    /* the message never quotes the block */
    struct atr_err err;
    atr_err_clear(&err);
    struct seen s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(
        atr_records_scan(atr_span_str("{\"secret\": hunter2}\n"), NULL, 0, collect, &s, &err),
        ATR_E_PARSE);
    assert_null(strstr(err.msg, "hunter"));
    /* good records before the bad one were delivered */
    snprintf(buf, sizeof(buf), "%s\n%s\ngarbage\n", good, good);
    memset(&s, 0, sizeof(s));
    assert_int_equal(atr_records_scan(atr_span_str(buf), NULL, 0, collect, &s, NULL), ATR_E_PARSE);
    assert_int_equal(s.n, 2);
    /* lines before skip are only counted */
    snprintf(buf, sizeof(buf), "garbage\n%s\n", good);
    static const size_t after[] = {1};
    expect_scan(atr_span_str(buf), NULL, 1, after, 1);
    /* ... but a missing line end is always an error */
    expect_scan_error("garbage", 5, "has no line end");
    /* deep nesting is refused, not a crash */
    size_t n = 200000;
    char *deep = atr_malloc(n + 2);
    assert_non_null(deep);
    memset(deep, '[', n);
    deep[n] = '\n';
    deep[n + 1] = '\0';
    expect_scan_error(deep, 0, "not a JSON object");
    atr_free(deep);
}

/* ---- query parameters ---------------------------------------------------- */

static void expect_filter_error(const char *from, const char *to, const char *user,
                                const char *limit, const char *fragment)
{
    struct atr_records_filter f;
    size_t lim = 0;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_records_filter_parse(&f, &lim, from, to, user, NULL, NULL, limit, &err),
                     ATR_E_INVALID);
    assert_int_equal(err.code, ATR_E_INVALID);
    if (strstr(err.msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", err.msg, fragment);
    /* reset to match-all */
    assert_int_equal(f.from_ms, INT64_MIN);
    assert_int_equal(f.to_ms, INT64_MAX);
    assert_null(f.user);
}

static void test_filter_parse(void **state)
{
    (void)state;
    struct atr_records_filter f;
    size_t lim = 0;
    assert_int_equal(atr_records_filter_parse(&f, &lim, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                     ATR_OK);
    assert_int_equal(f.from_ms, INT64_MIN);
    assert_int_equal(f.to_ms, INT64_MAX);
    assert_null(f.user);
    assert_null(f.app);
    assert_null(f.action);
    assert_int_equal(lim, ATR_RECORDS_LIMIT_DEFAULT);
    /* limit may be NULL when no limit text is given */
    assert_int_equal(atr_records_filter_parse(&f, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                     ATR_OK);

    const char *user = "alice", *app = "crm", *action = "read";
    assert_int_equal(atr_records_filter_parse(&f, &lim, "2026-11-29T07:00:00+01:00",
                                              "1795932060000", user, app, action, "25", NULL),
                     ATR_OK);
    assert_int_equal(f.from_ms, T0);
    assert_int_equal(f.to_ms, T0 + 60000);
    assert_ptr_equal(f.user, user);
    assert_ptr_equal(f.app, app);
    assert_ptr_equal(f.action, action);
    assert_int_equal(lim, 25);
    assert_int_equal(
        atr_records_filter_parse(&f, &lim, "-1000", "0", NULL, NULL, NULL, "10000", NULL), ATR_OK);
    assert_int_equal(f.from_ms, -1000);
    assert_int_equal(f.to_ms, 0);
    assert_int_equal(lim, 10000);
    /* an empty range is allowed */
    assert_int_equal(atr_records_filter_parse(&f, &lim, "5", "5", NULL, NULL, NULL, "0001", NULL),
                     ATR_OK);
    assert_int_equal(lim, 1);
    atr_records_filter_cleanup(&f);

    expect_filter_error("10", "9", NULL, NULL, "parameter \"to\" is before \"from\"");
    expect_filter_error("2026-11-29T06:00:01Z", "2026-11-29T06:00:00Z", NULL, NULL,
                        "\"to\" is before \"from\"");
    expect_filter_error("2026-13-01T00:00:00Z", NULL, NULL, NULL,
                        "parameter \"from\" has an invalid month (RFC 3339 or Unix "
                        "milliseconds expected)");
    expect_filter_error(NULL, "2026-02-30T00:00:00Z", NULL, NULL,
                        "parameter \"to\" has an invalid day");
    expect_filter_error("yesterday", NULL, NULL, NULL, "parameter \"from\" is not an RFC 3339");
    expect_filter_error("", NULL, NULL, NULL, "parameter \"from\" is empty");
    expect_filter_error(NULL, "", NULL, NULL, "parameter \"to\" is empty");
    expect_filter_error("-", NULL, NULL, NULL, "parameter \"from\" is not");
    expect_filter_error("1.5", NULL, NULL, NULL, "parameter \"from\" is not");
    expect_filter_error("+5", NULL, NULL, NULL, "parameter \"from\" is not");
    expect_filter_error("253402300800000", NULL, NULL, NULL, "\"from\" is out of range");
    expect_filter_error(NULL, "99999999999999999999999999", NULL, NULL, "\"to\" is out of range");
    expect_filter_error(NULL, "-99999999999999999999999999", NULL, NULL, "out of range");
    expect_filter_error(NULL, NULL, "", NULL, "parameter \"user\" must be 1 to 256 bytes");
    char big[300];
    memset(big, 'u', 257);
    big[257] = '\0';
    expect_filter_error(NULL, NULL, big, NULL, "parameter \"user\" must be 1 to 256 bytes");
    static const char *const bad_limits[] = {
        "0", "10001", "-1", "", "1.0", " 5", "5x", "99999999999999999999999", "+5"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_limits); i++)
        expect_filter_error(NULL, NULL, NULL, bad_limits[i],
                            "parameter \"limit\" must be an integer from 1 to 10000");
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_records_filter_parse(&f, &lim, NULL, NULL, NULL, "", NULL, NULL, &err),
                     ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "\"app\""));
    memset(big, 'x', 129);
    big[129] = '\0';
    assert_int_equal(atr_records_filter_parse(&f, &lim, NULL, NULL, NULL, NULL, big, NULL, &err),
                     ATR_E_INVALID);
    assert_non_null(strstr(err.msg, "parameter \"action\" must be 1 to 128 bytes"));
}

/* ---- out of memory ------------------------------------------------------- */

static void test_alloc_failures(void **state)
{
    (void)state;
    /* good and bad lines, so records, errors and the canon buffer all allocate */
    struct atr_buf body;
    atr_buf_init(&body, 1 << 20);
    for (int i = 0; i < 40; i++) {
        char l[256];
        if (i % 3 == 2)
            snprintf(l, sizeof(l), "{\"time\":%d}", i);
        else
            line_of(l, sizeof(l), "12345", "\"a user\"", "\"an app\"", "\"an action\"",
                    "\"10.1.2.3\"");
        assert_int_equal(atr_buf_append_str(&body, l), ATR_OK);
        assert_int_equal(atr_buf_append_str(&body, "\n"), ATR_OK);
    }
    struct atr_records_limits lim = {.max_errors = 20};
    struct atr_records_batch b;
    struct atr_err err;
    unsigned long nth;
    atr_status rc = ATR_E_NOMEM;
    for (nth = 1; nth < 1000 && rc != ATR_OK; nth++) {
        atr_err_clear(&err);
        atr_alloc_fail_after(nth);
        rc = atr_records_parse(&b, atr_buf_span(&body), &lim, &err);
        atr_alloc_fail_reset();
        if (rc != ATR_OK) {
            assert_int_equal(rc, ATR_E_NOMEM);
            assert_int_equal(err.code, ATR_E_NOMEM);
            assert_null(b.records);
            assert_null(b.errors);
            assert_null(b.canon.ptr);
            assert_int_equal(b.n_records, 0);
        }
        atr_records_batch_cleanup(&b);
    }
    assert_int_equal(rc, ATR_OK);
    assert_true(nth > 3);

    assert_int_equal(atr_records_parse(&b, atr_buf_span(&body), &lim, NULL), ATR_OK);
    assert_int_equal(b.n_records, 27);
    struct atr_records_blocks bl;
    rc = ATR_E_NOMEM;
    for (nth = 1; nth < 1000 && rc != ATR_OK; nth++) {
        atr_alloc_fail_after(nth);
        rc = atr_records_pack(&bl, &b, 200, &err);
        atr_alloc_fail_reset();
        if (rc != ATR_OK) {
            assert_int_equal(rc, ATR_E_NOMEM);
            assert_null(bl.blocks);
            assert_int_equal(bl.n, 0);
        }
        atr_records_blocks_cleanup(&bl);
    }
    assert_int_equal(rc, ATR_OK);
    assert_true(nth > 3);
    atr_records_batch_cleanup(&b);
    atr_buf_cleanup(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_required_members),
        cmocka_unit_test(test_times),          cmocka_unit_test(test_ip),
        cmocka_unit_test(test_line_splitting), cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_too_many_lines), cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_error_cap),      cmocka_unit_test(test_pack_boundaries),
        cmocka_unit_test(test_scan),           cmocka_unit_test(test_scan_malformed),
        cmocka_unit_test(test_filter_parse),   cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
