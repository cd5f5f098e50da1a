/* SPDX-License-Identifier: Apache-2.0 */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/clock.h"

/*
 * Lines are built as a jansson object and serialised with JSON_COMPACT, so
 * escaping (quotes, backslashes, newlines, control characters) is jansson's.
 * jansson refuses strings that are not valid UTF-8, so caller text is first
 * repaired: every invalid byte becomes U+FFFD and the line is still written.
 *
 * Field order: ts, level, event, req (omitted when NULL), msg, then the extra
 * fields of atr_log_fields(). An extra field may not replace a standard one:
 * such a key is written with an "x_" prefix, so callers cannot forge "level"
 * or "ts".
 */

/* Longest message kept; longer text is truncated (a log line is not a dump). */
#define LOG_MSG_MAX 8192
/* Messages up to this size are formatted on the stack. */
#define LOG_MSG_STACK 512

/* Singleton: the process-wide logger configuration and its write lock. */
static struct {
    pthread_mutex_t write_lock; /* guards out and every write to it */
    FILE *out;                  /* NULL = stderr */
    atomic_int level;
    _Atomic(const struct atr_clock *) clock; /* NULL = real clock */
} atr_logger = {PTHREAD_MUTEX_INITIALIZER, NULL, ATR_LOG_INFO, NULL};

void atr_log_set_level(atr_log_level level)
{
    if (level < ATR_LOG_DEBUG)
        level = ATR_LOG_DEBUG;
    if (level > ATR_LOG_OFF)
        level = ATR_LOG_OFF;
    atomic_store(&atr_logger.level, (int)level);
}

atr_log_level atr_log_get_level(void)
{
    return (atr_log_level)atomic_load(&atr_logger.level);
}

static const char *const level_names[] = {NULL, "debug", "info", "warn", "error", "off"};

atr_status atr_log_level_parse(const char *name, atr_log_level *out)
{
    ATR_ASSERT_ARG(out != NULL);
    if (name == NULL)
        return ATR_E_INVALID;
    for (int i = ATR_LOG_DEBUG; i <= ATR_LOG_OFF; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (atr_log_level)i;
            return ATR_OK;
        }
    }
    return ATR_E_INVALID;
}

void atr_log_set_output(FILE *out)
{
    pthread_mutex_lock(&atr_logger.write_lock);
    atr_logger.out = out;
    pthread_mutex_unlock(&atr_logger.write_lock);
}

void atr_log_set_clock(const struct atr_clock *clock)
{
    atomic_store(&atr_logger.clock, clock);
}

int atr_log_enabled(atr_log_level level)
{
    int min = atomic_load(&atr_logger.level);
    return (int)level >= min && level >= ATR_LOG_DEBUG && level < ATR_LOG_OFF;
}

/* ---- UTF-8 repair -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at @p s (RFC 3629), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/*
 * A json string for @p s: NULL -> JSON null, invalid UTF-8 bytes -> U+FFFD.
 * Returns NULL only when out of memory.
 */
static json_t *json_text(const char *s)
{
    if (s == NULL)
        return json_null();
    size_t len = strlen(s);
    const unsigned char *p = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            bad++;
            i++;
        } else {
            i += n;
        }
    }
    if (bad == 0)
        return json_stringn(s, len);
    char *fixed = atr_malloc(len + 2 * bad + 1);
    if (fixed == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(fixed + o, s + i, n);
            o += n;
            i += n;
        }
    }
    json_t *j = json_stringn(fixed, o);
    atr_free(fixed);
    return j;
}

/* ---- line assembly ------------------------------------------------------- */

static json_t *line_new(atr_log_level level, const char *event, const char *req_id, const char *msg)
{
    char ts[32];
    atr_clock_format_rfc3339(atr_clock_now_ms(atomic_load(&atr_logger.clock)), ts);
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    if (json_object_set_new(o, "ts", json_string(ts)) != 0 ||
        json_object_set_new(o, "level", json_string(level_names[level])) != 0 ||
        json_object_set_new(o, "event", json_text(event)) != 0 ||
        (req_id != NULL && json_object_set_new(o, "req", json_text(req_id)) != 0) ||
        json_object_set_new(o, "msg", json_text(msg)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int is_reserved(const char *key)
{
    static const char *const reserved[] = {"ts", "level", "event", "req", "msg"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(reserved); i++) {
        if (strcmp(key, reserved[i]) == 0)
            return 1;
    }
    return 0;
}

/* Adds @p val under @p key (renamed "x_<key>" if it is a standard field). */
static void line_add(json_t *o, const char *key, json_t *val)
{
    if (val == NULL)
        return;
    if (!is_reserved(key)) {
        json_object_set_new(o, key, val);
        return;
    }
    char renamed[64];
    snprintf(renamed, sizeof(renamed), "x_%s", key);
    json_object_set_new(o, renamed, val);
}

static void line_write(json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    pthread_mutex_lock(&atr_logger.write_lock);
    FILE *f = atr_logger.out != NULL ? atr_logger.out : stderr;
    /* one fwrite per line: the newline is part of the same write */
    text[len] = '\n';
    fwrite(text, 1, len + 1, f);
    fflush(f);
    pthread_mutex_unlock(&atr_logger.write_lock);
    text[len] = '\0';
    /* json_dumps allocates with jansson's allocator, so free with it too */
    json_malloc_t jmalloc;
    json_free_t jfree;
    json_get_alloc_funcs(&jmalloc, &jfree);
    jfree(text);
}

void atr_log(atr_log_level level, const char *event, const char *req_id, const char *fmt, ...)
{
    if (!atr_log_enabled(level))
        return;
    char stack[LOG_MSG_STACK];
    char *heap = NULL;
    const char *msg = NULL;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(stack, sizeof(stack), fmt, ap);
        va_end(ap);
        msg = stack;
        if (n < 0) {
            msg = "(unformattable log message)";
        } else if ((size_t)n >= sizeof(stack)) {
            size_t want = (size_t)n < LOG_MSG_MAX ? (size_t)n + 1 : LOG_MSG_MAX;
            heap = atr_malloc(want);
            if (heap != NULL) {
                va_start(ap, fmt);
                vsnprintf(heap, want, fmt, ap);
                va_end(ap);
                msg = heap;
            }
        }
    }
    json_t *o = line_new(level, event, req_id, msg);
    if (o != NULL) {
        line_write(o);
        json_decref(o);
    }
    atr_free(heap);
}

void atr_log_fields(atr_log_level level, const char *event, const char *req_id, const char *msg,
                    ...)
{
    if (!atr_log_enabled(level))
        return;
    json_t *o = line_new(level, event, req_id, msg);
    if (o == NULL)
        return;
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        const char *type = va_arg(ap, const char *);
        /* an unknown type leaves the argument list unreadable: stop there */
        if (type == NULL || type[0] == '\0' || type[1] != '\0')
            break;
        if (type[0] == 's') {
            line_add(o, key, json_text(va_arg(ap, const char *)));
        } else if (type[0] == 'i') {
            line_add(o, key, json_integer((json_int_t)va_arg(ap, long long)));
        } else if (type[0] == 'b') {
            line_add(o, key, json_boolean(va_arg(ap, int)));
        } else {
            break;
        }
    }
    va_end(ap);
    line_write(o);
    json_decref(o);
}
