/* SPDX-License-Identifier: Apache-2.0 */
#include "service/records.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "http/json.h"

/* Cap of the canonical buffer: far above any body the caller accepts. */
#define CANON_MAX (SIZE_MAX / 4)

static const char *const TIME_SYNTAX = "is not an RFC 3339 timestamp (like 2026-11-29T06:00:00Z)";

/* ---- time --------------------------------------------------------------- */

/* Reads exactly @p n decimal digits. */
static int read_digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10u + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static int is_leap(unsigned y)
{
    return (y % 4u == 0 && y % 100u != 0) || y % 400u == 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29u : dim[m - 1];
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (y >= 0). */
static int64_t days_from_civil(unsigned y, unsigned m, unsigned d)
{
    /* a year that starts in March puts the leap day last (H. Hinnant's method) */
    int64_t yy = (int64_t)y - (m <= 2 ? 1 : 0);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t mp = m > 2 ? (int64_t)m - 3 : (int64_t)m + 9;
    int64_t doy = (153 * mp + 2) / 5 + (int64_t)d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/*
 * Parses an RFC 3339 timestamp of @p n bytes (rules in records.h).
 * @return NULL on success, else the phrase that follows the member's name.
 */
static const char *time_parse(int64_t *out, const char *s, size_t n)
{
    unsigned y, mo, d, h, mi, sec;
    if (n < 19 || !read_digits(s, 4, &y) || s[4] != '-' || !read_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !read_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !read_digits(s + 11, 2, &h) || s[13] != ':' || !read_digits(s + 14, 2, &mi) ||
        s[16] != ':' || !read_digits(s + 17, 2, &sec))
        return TIME_SYNTAX;
    size_t i = 19;
    int64_t frac_ms = 0;
    if (i < n && s[i] == '.') {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        size_t nd = i - start;
        if (nd == 0)
            return TIME_SYNTAX;
        if (nd > 9)
            return "has more than 9 fractional digits";
        /* truncated to milliseconds */
        for (size_t k = 0; k < 3; k++)
            frac_ms = frac_ms * 10 + (k < nd ? s[start + k] - '0' : 0);
    }
    int64_t off_min = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        unsigned oh, om;
        if (n - i < 6 || !read_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !read_digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return "has an invalid UTC offset (Z or +hh:mm / -hh:mm expected)";
        off_min = (int64_t)(oh * 60u + om);
        if (s[i] == '-')
            off_min = -off_min;
        i += 6;
    } else {
        return "has no valid UTC offset (Z or +hh:mm / -hh:mm expected)";
    }
    if (i != n)
        return TIME_SYNTAX;
    if (mo < 1 || mo > 12)
        return "has an invalid month";
    if (d < 1 || d > days_in_month(y, mo))
        return "has an invalid day of the month";
    if (h > 23)
        return "has an invalid hour";
    if (mi > 59)
        return "has an invalid minute";
    if (sec == 60)
        return "is a leap second (:60), which is not supported";
    if (sec > 59)
        return "has an invalid second";
    int64_t ms = days_from_civil(y, mo, d) * 86400000 + (int64_t)h * 3600000 + (int64_t)mi * 60000 +
                 (int64_t)sec * 1000 + frac_ms - off_min * 60000;
    if (ms < ATR_RECORDS_TIME_MIN_MS || ms > ATR_RECORDS_TIME_MAX_MS)
        return "is out of range (years 0000 to 9999 in UTC)";
    *out = ms;
    return NULL;
}

static int time_ms_in_range(long long v)
{
    return v >= ATR_RECORDS_TIME_MIN_MS && v <= ATR_RECORDS_TIME_MAX_MS;
}

/* ---- JSON helpers ---------------------------------------------------------- */

/*
 * The offset at which nesting passes @p max levels, or (size_t)-1. Strings
 * are skipped so brackets inside them do not count (as http/json.c does
 * for request bodies).
 */
static size_t depth_exceeded_at(const uint8_t *p, size_t n, unsigned max)
{
    unsigned depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return i;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return (size_t)-1;
}

/* A fixed phrase per jansson error: jansson's own text quotes the input. */
static const char *json_phrase(enum json_error_code code)
{
    switch (code) {
    case json_error_out_of_memory:
        return "out of memory";
    case json_error_stack_overflow:
        return "nesting too deep";
    case json_error_premature_end_of_input:
        return "unexpected end of line";
    case json_error_end_of_input_expected:
        return "unexpected data after the object";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
        return "NUL character not allowed";
    case json_error_duplicate_key:
        return "duplicate member name";
    case json_error_numeric_overflow:
        return "number out of range";
    case json_error_invalid_syntax:
    default:
        return "invalid syntax";
    }
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/* ---- lines --------------------------------------------------------------- */

/* Next line of @p body from *pos: LF-separated, a CR before the LF dropped. */
static int next_line(struct atr_span body, size_t *pos, struct atr_span *line)
{
    if (*pos >= body.len)
        return 0;
    const uint8_t *start = body.ptr + *pos;
    size_t rest = body.len - *pos;
    const uint8_t *nl = memchr(start, '\n', rest);
    size_t n = nl != NULL ? (size_t)(nl - start) : rest;
    *pos += nl != NULL ? n + 1 : n;
    if (nl != NULL && n > 0 && start[n - 1] == '\r')
        n--;
    *line = atr_span_of(start, n);
    return 1;
}

static int is_blank(struct atr_span line)
{
    for (size_t i = 0; i < line.len; i++) {
        uint8_t c = line.ptr[i];
        if (c != ' ' && c != '\t' && c != '\r')
            return 0;
    }
    return 1;
}

/* ---- parse --------------------------------------------------------------- */

struct parser {
    struct atr_records_batch *b;
    size_t max_line;
    size_t max_errors;
    unsigned max_depth;
    size_t cap_errors;
};

/* Records a rejected line (a kept message or a count). ATR_E_NOMEM only. */
static atr_status reject(struct parser *p, size_t line, const char *fmt, ...) ATR_PRINTF(3, 4);

static atr_status reject(struct parser *p, size_t line, const char *fmt, ...)
{
    struct atr_records_batch *b = p->b;
    b->n_rejected++;
    if (b->n_errors >= p->max_errors) {
        b->errors_omitted++;
        return ATR_OK;
    }
    if (b->n_errors == p->cap_errors) {
        size_t cap = p->cap_errors == 0 ? 8 : p->cap_errors * 2;
        if (cap > p->max_errors)
            cap = p->max_errors;
        struct atr_records_error *e = atr_realloc(b->errors, cap * sizeof(*e));
        if (e == NULL)
            return ATR_E_NOMEM;
        b->errors = e;
        p->cap_errors = cap;
    }
    struct atr_records_error *e = &b->errors[b->n_errors++];
    e->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return ATR_OK;
}

/* A required string member of 1..@p max bytes; 0 with @p msg set otherwise. */
static int check_string(const json_t *obj, const char *name, size_t max, char *msg, size_t msg_len)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL) {
        snprintf(msg, msg_len, "missing \"%s\"", name);
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(msg, msg_len, "\"%s\" must be a string, not %s", name, type_name(v));
        return 0;
    }
    size_t n = json_string_length(v);
    if (n < 1 || n > max) {
        snprintf(msg, msg_len, "\"%s\" must be 1 to %zu bytes long", name, max);
        return 0;
    }
    return 1;
}

/* Checks the required members; 1 with *time_ms set, or 0 with @p msg set. */
static int validate(const json_t *obj, int64_t *time_ms, char *msg, size_t msg_len)
{
    json_t *t = json_object_get(obj, "time");
    if (t == NULL) {
        snprintf(msg, msg_len, "missing \"time\"");
        return 0;
    }
    if (json_is_string(t)) {
        const char *why = time_parse(time_ms, json_string_value(t), json_string_length(t));
        if (why != NULL) {
            snprintf(msg, msg_len, "\"time\" %s", why);
            return 0;
        }
    } else if (json_is_integer(t)) {
        json_int_t v = json_integer_value(t);
        if (!time_ms_in_range(v)) {
            snprintf(msg, msg_len, "\"time\" is out of range (years 0000 to 9999 in UTC)");
            return 0;
        }
        *time_ms = (int64_t)v;
    } else {
        snprintf(msg, msg_len,
                 "\"time\" must be an RFC 3339 string or an integer of Unix milliseconds, "
                 "not %s",
                 type_name(t));
        return 0;
    }
    if (!check_string(obj, "user", ATR_RECORDS_USER_MAX, msg, msg_len) ||
        !check_string(obj, "app", ATR_RECORDS_APP_MAX, msg, msg_len) ||
        !check_string(obj, "action", ATR_RECORDS_ACTION_MAX, msg, msg_len))
        return 0;
    json_t *ip = json_object_get(obj, "ip");
    if (ip == NULL) {
        snprintf(msg, msg_len, "missing \"ip\"");
        return 0;
    }
    if (!json_is_string(ip)) {
        snprintf(msg, msg_len, "\"ip\" must be a string, not %s", type_name(ip));
        return 0;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    const char *text = json_string_value(ip);
    if (inet_pton(AF_INET, text, addr) != 1 && inet_pton(AF_INET6, text, addr) != 1) {
        snprintf(msg, msg_len, "\"ip\" is not an IPv4 or IPv6 address");
        return 0;
    }
    return 1;
}

/* One non-blank line. Rejections are recorded; only ATR_E_NOMEM fails. */
static atr_status parse_line(struct parser *p, size_t lineno, struct atr_span line)
{
    atr_status rc = ATR_OK;
    json_t *obj = NULL;
    struct atr_records_batch *b = p->b;

    if (line.len > p->max_line)
        return reject(p, lineno, "the line is longer than %zu bytes", p->max_line);
    size_t at = depth_exceeded_at(line.ptr, line.len, p->max_depth);
    if (at != (size_t)-1)
        return reject(p, lineno, "not a JSON object: nesting deeper than %u levels at byte %zu",
                      p->max_depth, at + 1);
    json_error_t je;
    obj =
        json_loadb((const char *)line.ptr, line.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (obj == NULL) {
        enum json_error_code code = json_error_code(&je);
        if (code == json_error_out_of_memory)
            return ATR_E_NOMEM;
        return reject(p, lineno, "not a JSON object: %s at column %d", json_phrase(code),
                      je.column);
    }
    if (!json_is_object(obj)) {
        rc = reject(p, lineno, "not a JSON object: %s", type_name(obj));
        goto done;
    }
    int64_t time_ms = 0;
    char msg[ATR_RECORDS_MSG_MAX];
    if (!validate(obj, &time_ms, msg, sizeof(msg))) {
        rc = reject(p, lineno, "%s", msg);
        goto done;
    }
    char canon_time[32];
    atr_clock_format_rfc3339(time_ms, canon_time);
    /* replacing a member keeps its position (jansson keeps insertion order) */
    if (json_object_set_new(obj, "time", json_string(canon_time)) != 0) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    size_t off = b->canon.len;
    if ((rc = atr_json_dump(&b->canon, obj)) != ATR_OK)
        goto done;
    size_t len = b->canon.len - off;
    if ((rc = atr_buf_append(&b->canon, "\n", 1)) != ATR_OK)
        goto done;
    /* records was sized by the first pass for every non-blank line */
    struct atr_records_record *r = &b->records[b->n_records++];
    r->line = lineno;
    r->time_ms = time_ms;
    r->off = off;
    r->len = len;
done:
    json_decref(obj);
    return rc;
}

static void batch_zero(struct atr_records_batch *b)
{
    memset(b, 0, sizeof(*b));
    atr_buf_init(&b->canon, CANON_MAX);
}

atr_status atr_records_parse(struct atr_records_batch *out, struct atr_span body,
                             const struct atr_records_limits *lim, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    batch_zero(out);
    ATR_ASSERT_ARG(body.ptr != NULL || body.len == 0);
    atr_status rc = ATR_OK;
    struct parser p = {out, ATR_RECORDS_MAX_LINE_DEFAULT, ATR_RECORDS_MAX_ERRORS_DEFAULT,
                       ATR_RECORDS_MAX_DEPTH_DEFAULT, 0};
    size_t max_lines = ATR_RECORDS_MAX_LINES_DEFAULT;
    if (lim != NULL) {
        if (lim->max_line != 0)
            p.max_line = lim->max_line;
        if (lim->max_lines != 0)
            max_lines = lim->max_lines;
        if (lim->max_errors != 0)
            p.max_errors = lim->max_errors;
        if (lim->max_depth != 0)
            p.max_depth = lim->max_depth;
    }
    if (body.len >= 3 && body.ptr[0] == 0xEF && body.ptr[1] == 0xBB && body.ptr[2] == 0xBF)
        return atr_err_set(err, ATR_E_PARSE,
                           "the body starts with a UTF-8 byte order mark; send NDJSON without "
                           "one");

    /* first pass: refuse an oversized batch before parsing anything */
    size_t count = 0;
    size_t pos = 0;
    struct atr_span line;
    while (next_line(body, &pos, &line)) {
        if (is_blank(line))
            continue;
        if (++count > max_lines)
            return atr_err_set(err, ATR_E_TOO_LARGE,
                               "the batch has more than %zu records (non-blank lines); split it",
                               max_lines);
    }
    if (count == 0)
        return ATR_OK;
    out->records = atr_calloc(count, sizeof(*out->records));
    if (out->records == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }

    size_t lineno = 0;
    pos = 0;
    while (next_line(body, &pos, &line)) {
        lineno++;
        if (is_blank(line))
            continue;
        out->n_lines++;
        if ((rc = parse_line(&p, lineno, line)) != ATR_OK)
            goto done;
    }
done:
    if (rc != ATR_OK) {
        atr_records_batch_cleanup(out);
        if (rc == ATR_E_NOMEM)
            return atr_err_set(err, rc, "out of memory parsing records");
        return atr_err_set(err, rc, "records could not be parsed");
    }
    return ATR_OK;
}

void atr_records_batch_cleanup(struct atr_records_batch *b)
{
    if (b == NULL)
        return;
    atr_free(b->records);
    atr_free(b->errors);
    atr_buf_cleanup(&b->canon);
    batch_zero(b);
}

/* ---- pack ---------------------------------------------------------------- */

/* The records [i, end) of the next block starting at record @p i. */
static size_t block_end(const struct atr_records_batch *batch, size_t i, size_t block_bytes)
{
    size_t size = batch->records[i].len + 1;
    size_t end = i + 1;
    while (end < batch->n_records && size <= block_bytes &&
           batch->records[end].len + 1 <= block_bytes - size) {
        size += batch->records[end].len + 1;
        end++;
    }
    return end;
}

atr_status atr_records_pack(struct atr_records_blocks *out, const struct atr_records_batch *batch,
                            size_t block_bytes, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    out->blocks = NULL;
    out->n = 0;
    ATR_ASSERT_ARG(batch != NULL);
    atr_status rc = ATR_OK;
    if (block_bytes == 0)
        block_bytes = ATR_RECORDS_BLOCK_BYTES_DEFAULT;
    if (batch->n_records == 0)
        return ATR_OK;

    /* the canonical lines are contiguous, each followed by '\n' */
    size_t expect = 0;
    for (size_t i = 0; i < batch->n_records; i++) {
        const struct atr_records_record *r = &batch->records[i];
        if (r->off != expect || r->len >= batch->canon.len - r->off ||
            batch->canon.ptr[r->off + r->len] != '\n')
            return atr_err_set(err, ATR_E_INVALID, "records pack: inconsistent batch");
        expect = r->off + r->len + 1;
    }

    size_t nblocks = 0;
    for (size_t i = 0; i < batch->n_records; i = block_end(batch, i, block_bytes))
        nblocks++;
    out->blocks = atr_calloc(nblocks, sizeof(*out->blocks));
    if (out->blocks == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < batch->n_records;) {
        size_t end = block_end(batch, i, block_bytes);
        struct atr_records_block *blk = &out->blocks[out->n];
        size_t from = batch->records[i].off;
        size_t to = batch->records[end - 1].off + batch->records[end - 1].len + 1;
        atr_buf_init(&blk->plain, to - from);
        out->n++;
        if ((rc = atr_buf_append(&blk->plain, batch->canon.ptr + from, to - from)) != ATR_OK)
            goto done;
        blk->first = i;
        blk->count = end - i;
        blk->t_min_ms = batch->records[i].time_ms;
        blk->t_max_ms = batch->records[i].time_ms;
        for (size_t k = i + 1; k < end; k++) {
            int64_t t = batch->records[k].time_ms;
            if (t < blk->t_min_ms)
                blk->t_min_ms = t;
            if (t > blk->t_max_ms)
                blk->t_max_ms = t;
        }
        i = end;
    }
done:
    if (rc != ATR_OK) {
        atr_records_blocks_cleanup(out);
        return atr_err_set(err, rc, "out of memory packing records");
    }
    return ATR_OK;
}

void atr_records_blocks_cleanup(struct atr_records_blocks *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        atr_buf_cleanup(&b->blocks[i].plain);
    atr_free(b->blocks);
    b->blocks = NULL;
    b->n = 0;
}

/* ---- filter -------------------------------------------------------------- */

void atr_records_filter_init(struct atr_records_filter *f)
{
    if (f == NULL)
        return;
    f->from_ms = INT64_MIN;
    f->to_ms = INT64_MAX;
    f->user = NULL;
    f->app = NULL;
    f->action = NULL;
}

void atr_records_filter_cleanup(struct atr_records_filter *f)
{
    atr_records_filter_init(f);
}

/* A time parameter: Unix milliseconds (an optional '-' and digits) or RFC 3339. */
static atr_status param_time(int64_t *out, const char *name, const char *text, struct atr_err *err)
{
    size_t n = strlen(text);
    if (n == 0)
        return atr_err_set(err, ATR_E_INVALID, "parameter \"%s\" is empty", name);
    size_t i = text[0] == '-' ? 1 : 0;
    int all_digits = i < n;
    for (size_t k = i; k < n; k++)
        if (text[k] < '0' || text[k] > '9')
            all_digits = 0;
    if (all_digits) {
        /* bounded accumulation: anything past 10^15 is out of range anyway */
        int64_t v = 0;
        for (size_t k = i; k < n && v <= 1000000000000000LL; k++)
            v = v * 10 + (text[k] - '0');
        if (i == 1)
            v = -v;
        if (!time_ms_in_range(v))
            return atr_err_set(err, ATR_E_INVALID,
                               "parameter \"%s\" is out of range (years 0000 to 9999 in UTC)",
                               name);
        *out = v;
        return ATR_OK;
    }
    const char *why = time_parse(out, text, n);
    if (why != NULL)
        return atr_err_set(err, ATR_E_INVALID,
                           "parameter \"%s\" %s (RFC 3339 or Unix milliseconds expected)", name,
                           why);
    return ATR_OK;
}

static atr_status param_string(const char *name, const char *text, size_t max, struct atr_err *err)
{
    size_t n = strlen(text);
    if (n < 1 || n > max)
        return atr_err_set(err, ATR_E_INVALID, "parameter \"%s\" must be 1 to %zu bytes long", name,
                           max);
    return ATR_OK;
}

atr_status atr_records_filter_parse(struct atr_records_filter *out, size_t *limit,
                                    const char *from_text, const char *to_text, const char *user,
                                    const char *app, const char *action, const char *limit_text,
                                    struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    atr_records_filter_init(out);
    ATR_ASSERT_ARG(limit != NULL || limit_text == NULL);
    struct atr_records_filter f;
    atr_records_filter_init(&f);
    if (from_text != NULL)
        ATR_TRY(param_time(&f.from_ms, "from", from_text, err));
    if (to_text != NULL)
        ATR_TRY(param_time(&f.to_ms, "to", to_text, err));
    if (f.to_ms < f.from_ms)
        return atr_err_set(err, ATR_E_INVALID, "parameter \"to\" is before \"from\"");
    if (user != NULL)
        ATR_TRY(param_string("user", user, ATR_RECORDS_USER_MAX, err));
    if (app != NULL)
        ATR_TRY(param_string("app", app, ATR_RECORDS_APP_MAX, err));
    if (action != NULL)
        ATR_TRY(param_string("action", action, ATR_RECORDS_ACTION_MAX, err));
    size_t lim = ATR_RECORDS_LIMIT_DEFAULT;
    if (limit_text != NULL) {
        size_t n = strlen(limit_text);
        size_t v = 0;
        int ok = n > 0;
        for (size_t k = 0; k < n && ok; k++) {
            if (limit_text[k] < '0' || limit_text[k] > '9' || v > ATR_RECORDS_LIMIT_MAX)
                ok = 0;
            else
                v = v * 10 + (size_t)(limit_text[k] - '0');
        }
        if (!ok || v < 1 || v > ATR_RECORDS_LIMIT_MAX)
            return atr_err_set(err, ATR_E_INVALID,
                               "parameter \"limit\" must be an integer from 1 to %d",
                               ATR_RECORDS_LIMIT_MAX);
        lim = v;
    }
    f.user = user;
    f.app = app;
    f.action = action;
    *out = f;
    if (limit != NULL)
        *limit = lim;
    return ATR_OK;
}

/* ---- scan ---------------------------------------------------------------- */

static int string_member(const json_t *obj, const char *name, const char **out)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        return 0;
    *out = json_string_value(v);
    return 1;
}

static int matches(const struct atr_records_filter *f, int64_t t, const char *user, const char *app,
                   const char *action)
{
    if (f == NULL)
        return 1;
    if (t < f->from_ms || t >= f->to_ms)
        return 0;
    if (f->user != NULL && strcmp(f->user, user) != 0)
        return 0;
    if (f->app != NULL && strcmp(f->app, app) != 0)
        return 0;
    if (f->action != NULL && strcmp(f->action, action) != 0)
        return 0;
    return 1;
}

atr_status atr_records_scan(struct atr_span block_plain, const struct atr_records_filter *f,
                            size_t skip, atr_records_scan_fn cb, void *ctx, struct atr_err *err)
{
    ATR_ASSERT_ARG(cb != NULL);
    ATR_ASSERT_ARG(block_plain.ptr != NULL || block_plain.len == 0);
    size_t pos = 0;
    for (size_t index = 0; pos < block_plain.len; index++) {
        const uint8_t *start = block_plain.ptr + pos;
        const uint8_t *nl = memchr(start, '\n', block_plain.len - pos);
        if (nl == NULL)
            return atr_err_set(err, ATR_E_PARSE, "block record %zu has no line end", index);
        size_t n = (size_t)(nl - start);
        pos += n + 1;
        if (index < skip)
            continue;
        if (n == 0)
            return atr_err_set(err, ATR_E_PARSE, "block record %zu is an empty line", index);
        json_error_t je;
        json_t *obj = json_loadb((const char *)start, n, JSON_REJECT_DUPLICATES, &je);
        if (obj == NULL) {
            if (json_error_code(&je) == json_error_out_of_memory)
                return atr_err_set(err, ATR_E_NOMEM, "out of memory scanning records");
            return atr_err_set(err, ATR_E_PARSE, "block record %zu is not a JSON object: %s", index,
                               json_phrase(json_error_code(&je)));
        }
        if (!json_is_object(obj)) {
            const char *what = type_name(obj);
            json_decref(obj);
            return atr_err_set(err, ATR_E_PARSE, "block record %zu is not a JSON object: %s", index,
                               what);
        }
        const char *time_text = NULL, *user = NULL, *app = NULL, *action = NULL;
        int64_t t = 0;
        int ok =
            string_member(obj, "time", &time_text) &&
            time_parse(&t, time_text, json_string_length(json_object_get(obj, "time"))) == NULL &&
            string_member(obj, "user", &user) && string_member(obj, "app", &app) &&
            string_member(obj, "action", &action);
        int match = ok && matches(f, t, user, app, action);
        json_decref(obj);
        if (!ok)
            return atr_err_set(err, ATR_E_PARSE,
                               "block record %zu lacks a valid \"time\", \"user\", \"app\" or "
                               "\"action\"",
                               index);
        if (match && !cb(atr_span_of(start, n), t, index, ctx))
            return ATR_OK;
    }
    return ATR_OK;
}
