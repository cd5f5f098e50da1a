/* SPDX-License-Identifier: Apache-2.0 */
#include "service/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

/*
 * Layout. The route table is append-only: slot i (i < nroutes) is written
 * once under route_lock, then published by a release store of nroutes, and
 * never changes again, so lookups read it without the lock. Slot 0 is
 * "unmatched". The (route, method, code) triples live in an open-addressing
 * table keyed by a non-zero 32-bit word and claimed with a compare-and-swap;
 * keys never move or disappear, so a lookup stops at its key or at the first
 * free slot. Nothing in the hot path allocates.
 */

#define NBUCKETS     13 /* 12 finite upper edges and +Inf */
#define SERIES_BITS  10
#define METHOD_OTHER 7u

_Static_assert(ATR_METRICS_MAX_SERIES == (1u << SERIES_BITS), "series table is a power of two");
_Static_assert(ATR_METRICS_MAX_ROUTES < 0x8000, "route index fits the series key");

/* Upper bucket edges in microseconds (inclusive) and their le labels. */
static const uint64_t bucket_us[NBUCKETS - 1] = {
    1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const char *const bucket_le[NBUCKETS] = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
};

/* Index = method id; the last one stands for every other method. */
static const char *const methods[METHOD_OTHER + 1] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
};

struct counter_def {
    const char *name;
    const char *help;
};

/* Index = atr_metrics_counter. */
static const struct counter_def counters[ATR_METRICS_COUNTER_MAX + 1] = {
    [ATR_METRICS_RECORDS_INGESTED] = {"atrest_records_ingested_total",
                                      "Records accepted by ingest and committed to the store."},
    [ATR_METRICS_RECORDS_REJECTED] = {"atrest_records_rejected_total",
                                      "Records refused by ingest (invalid or over a limit)."},
    [ATR_METRICS_INGEST_BYTES] = {"atrest_ingest_bytes_total",
                                  "Bytes of record data accepted by ingest."},
    [ATR_METRICS_RECORDS_RETURNED] = {"atrest_records_returned_total",
                                      "Records returned by queries."},
    [ATR_METRICS_BLOCKS_WRITTEN] = {"atrest_blocks_written_total",
                                    "Sealed blocks written to the store."},
    [ATR_METRICS_BLOCKS_READ] = {"atrest_blocks_read_total", "Sealed blocks read from the store."},
    [ATR_METRICS_KEYRING_HITS] = {"atrest_keyring_hits_total",
                                  "Tenant key lookups answered from the keyring cache."},
    [ATR_METRICS_KEYRING_MISSES] = {"atrest_keyring_misses_total",
                                    "Tenant key lookups that missed the keyring cache."},
    [ATR_METRICS_VAULT_CALLS] = {"atrest_vault_calls_total", "Calls to a key vault."},
    [ATR_METRICS_AUDIT_EVENTS] = {"atrest_audit_events_total", "Audit events written."},
};

#define REQUESTS_NAME "atrest_http_requests_total"
#define REQUESTS_HELP "HTTP requests answered, by route pattern, method and status code."
#define DURATION_NAME "atrest_http_request_duration_seconds"
#define DURATION_HELP "Time to answer HTTP requests, by route pattern."
#define DROPPED_NAME  "atrest_metrics_dropped_total"
#define DROPPED_HELP                                                                               \
    "Observations not recorded because a label table was full or an argument was unusable."

struct route {
    char name[ATR_METRICS_ROUTE_MAX];
    _Atomic uint64_t bucket[NBUCKETS]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_us;
};

struct series {
    _Atomic uint32_t key; /* 0: free; else (route + 1) << 16 | method << 10 | status */
    _Atomic uint64_t count;
};

struct atr_metrics {
    pthread_mutex_t route_lock; /* serialises appends to routes[] */
    _Atomic unsigned nroutes;
    struct route routes[ATR_METRICS_MAX_ROUTES];
    struct series series[ATR_METRICS_MAX_SERIES];
    _Atomic uint64_t counters[ATR_METRICS_COUNTER_MAX + 1];
    _Atomic uint64_t dropped;
};

struct gauge_family {
    char *name;
    char *help;
};

struct gauge_sample {
    size_t family;
    char *label_name; /* NULL: no label */
    char *label_value;
    double value;
};

struct atr_metrics_gauges {
    atr_status err; /* first failure, sticky */
    struct gauge_family *fams;
    size_t nfams, capfams;
    struct gauge_sample *samples;
    size_t nsamples, capsamples;
};

/* ---- validation --------------------------------------------------------------------------- */

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2, min = 0x80, cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, min = 0x800, cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, min = 0x10000, cp = c & 0x07u;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0u) != 0x80u)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static int metric_name_valid(const char *s)
{
    if (s[0] == '\0' || strlen(s) > ATR_METRICS_TEXT_MAX)
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (!is_alpha_(s[i]) && s[i] != ':' && (i == 0 || !is_digit(s[i])))
            return 0;
    }
    return 1;
}

/* [a-zA-Z_][a-zA-Z0-9_]*, "__" prefix reserved by Prometheus. */
static int label_name_valid(const char *s)
{
    if (s[0] == '\0' || strlen(s) > ATR_METRICS_TEXT_MAX || strncmp(s, "__", 2) == 0)
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (!is_alpha_(s[i]) && (i == 0 || !is_digit(s[i])))
            return 0;
    }
    return 1;
}

static int text_valid(const char *s)
{
    size_t n = strnlen(s, ATR_METRICS_TEXT_MAX + 1);
    return n <= ATR_METRICS_TEXT_MAX && utf8_valid((const unsigned char *)s, n);
}

/* A name that would repeat or shadow a built-in family. */
static int name_reserved(const char *s)
{
    static const char *const fixed[] = {
        REQUESTS_NAME,        DURATION_NAME,          DURATION_NAME "_bucket",
        DURATION_NAME "_sum", DURATION_NAME "_count", DROPPED_NAME,
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(fixed); i++) {
        if (strcmp(s, fixed[i]) == 0)
            return 1;
    }
    for (size_t i = 1; i <= ATR_METRICS_COUNTER_MAX; i++) {
        if (strcmp(s, counters[i].name) == 0)
            return 1;
    }
    return 0;
}

/* ---- registry ----------------------------------------------------------------------------- */

atr_status atr_metrics_new(struct atr_metrics **out)
{
    if (out == NULL)
        return ATR_E_INVALID;
    *out = NULL;
    struct atr_metrics *m = atr_calloc(1, sizeof(*m));
    if (m == NULL)
        return ATR_E_NOMEM;
    if (pthread_mutex_init(&m->route_lock, NULL) != 0) {
        atr_free(m);
        return ATR_E_INTERNAL;
    }
    atomic_init(&m->nroutes, 1u);
    memcpy(m->routes[0].name, ATR_METRICS_ROUTE_UNMATCHED, sizeof(ATR_METRICS_ROUTE_UNMATCHED));
    *out = m;
    return ATR_OK;
}

void atr_metrics_free(struct atr_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->route_lock);
    atr_free(m);
}

static void drop(struct atr_metrics *m)
{
    atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
}

static int route_find(const struct atr_metrics *m, const char *name, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(m->routes[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* Index of the route labelled @p name, added when new; -1 when it cannot be. */
static int route_get(struct atr_metrics *m, const char *name)
{
    unsigned n = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    int i = route_find(m, name, n);
    if (i >= 0)
        return i;
    size_t len = strnlen(name, ATR_METRICS_ROUTE_MAX);
    if (len >= ATR_METRICS_ROUTE_MAX || !utf8_valid((const unsigned char *)name, len))
        return -1;
    pthread_mutex_lock(&m->route_lock);
    n = atomic_load_explicit(&m->nroutes, memory_order_relaxed);
    i = route_find(m, name, n);
    if (i < 0 && n < ATR_METRICS_MAX_ROUTES) {
        memcpy(m->routes[n].name, name, len + 1);
        atomic_store_explicit(&m->nroutes, n + 1, memory_order_release);
        i = (int)n;
    }
    pthread_mutex_unlock(&m->route_lock);
    return i;
}

static unsigned method_id(const char *method)
{
    if (method == NULL)
        return METHOD_OTHER;
    for (unsigned i = 0; i < METHOD_OTHER; i++) {
        if (strcmp(method, methods[i]) == 0)
            return i;
    }
    return METHOD_OTHER;
}

/* The counter of @p key, claiming a free slot for it; NULL when full. */
static struct series *series_get(struct atr_metrics *m, uint32_t key)
{
    uint32_t h = (uint32_t)(key * 2654435761u) >> (32 - SERIES_BITS);
    for (uint32_t i = 0; i < ATR_METRICS_MAX_SERIES; i++) {
        struct series *s = &m->series[(h + i) & (ATR_METRICS_MAX_SERIES - 1)];
        uint32_t k = atomic_load_explicit(&s->key, memory_order_acquire);
        if (k == key)
            return s;
        if (k != 0)
            continue;
        uint32_t expected = 0;
        if (atomic_compare_exchange_strong_explicit(&s->key, &expected, key, memory_order_acq_rel,
                                                    memory_order_acquire) ||
            expected == key)
            return s;
    }
    return NULL;
}

void atr_metrics_http_observe(struct atr_metrics *m, const char *route_pattern, const char *method,
                              unsigned status, int64_t duration_us)
{
    if (m == NULL)
        return;
    if (status < 100 || status > 599) {
        drop(m);
        return;
    }
    int r = route_pattern == NULL ? 0 : route_get(m, route_pattern);
    if (r < 0) {
        drop(m);
        return;
    }
    struct route *rt = &m->routes[r];
    uint64_t us = duration_us < 0 ? 0 : (uint64_t)duration_us;
    size_t b = 0;
    while (b < NBUCKETS - 1 && us > bucket_us[b])
        b++;
    atomic_fetch_add_explicit(&rt->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->sum_us, us, memory_order_relaxed);

    uint32_t key = ((uint32_t)(r + 1) << 16) | (method_id(method) << 10) | status;
    struct series *s = series_get(m, key);
    if (s == NULL) {
        drop(m);
        return;
    }
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

void atr_metrics_add(struct atr_metrics *m, atr_metrics_counter id, uint64_t n)
{
    if (m == NULL)
        return;
    if ((int)id < 1 || (int)id > ATR_METRICS_COUNTER_MAX) {
        drop(m);
        return;
    }
    atomic_fetch_add_explicit(&m->counters[id], n, memory_order_relaxed);
}

uint64_t atr_metrics_value(const struct atr_metrics *m, atr_metrics_counter id)
{
    if (m == NULL || (int)id < 1 || (int)id > ATR_METRICS_COUNTER_MAX)
        return 0;
    return atomic_load_explicit(&m->counters[id], memory_order_relaxed);
}

uint64_t atr_metrics_dropped(const struct atr_metrics *m)
{
    if (m == NULL)
        return 0;
    return atomic_load_explicit(&m->dropped, memory_order_relaxed);
}

const char *atr_metrics_counter_name(atr_metrics_counter id)
{
    if ((int)id < 1 || (int)id > ATR_METRICS_COUNTER_MAX)
        return NULL;
    return counters[id].name;
}

/* ---- gauges ------------------------------------------------------------------------------- */

static void gauges_cleanup(struct atr_metrics_gauges *g)
{
    for (size_t i = 0; i < g->nfams; i++) {
        atr_free(g->fams[i].name);
        atr_free(g->fams[i].help);
    }
    for (size_t i = 0; i < g->nsamples; i++) {
        atr_free(g->samples[i].label_name);
        atr_free(g->samples[i].label_value);
    }
    atr_free(g->fams);
    atr_free(g->samples);
    memset(g, 0, sizeof(*g));
}

/* Makes room for one more element in an array of @p size-byte elements. */
static atr_status grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return ATR_OK;
    size_t ncap = *cap == 0 ? 16 : *cap * 2;
    void *p = atr_realloc(*arr, ncap * size);
    if (p == NULL)
        return ATR_E_NOMEM;
    *arr = p;
    *cap = ncap;
    return ATR_OK;
}

static int opt_equal(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static atr_status gauge_add(struct atr_metrics_gauges *g, const char *name, const char *help,
                            const char *label_name, const char *label_value, double value)
{
    if (name == NULL || help == NULL || (label_name == NULL) != (label_value == NULL))
        return ATR_E_INVALID;
    if (!metric_name_valid(name) || name_reserved(name) || !text_valid(help))
        return ATR_E_INVALID;
    if (label_name != NULL && (!label_name_valid(label_name) || !text_valid(label_value)))
        return ATR_E_INVALID;

    size_t f = 0;
    while (f < g->nfams && strcmp(g->fams[f].name, name) != 0)
        f++;
    if (f < g->nfams) {
        if (strcmp(g->fams[f].help, help) != 0)
            return ATR_E_INVALID;
        for (size_t i = 0; i < g->nsamples; i++) {
            const struct gauge_sample *s = &g->samples[i];
            if (s->family == f && opt_equal(s->label_name, label_name) &&
                opt_equal(s->label_value, label_value))
                return ATR_E_INVALID;
        }
    }
    if (g->nsamples >= ATR_METRICS_MAX_GAUGES)
        return ATR_E_TOO_LARGE;

    ATR_TRY(grow((void **)&g->samples, &g->capsamples, g->nsamples, sizeof(*g->samples)));
    struct gauge_sample *s = &g->samples[g->nsamples];
    memset(s, 0, sizeof(*s));
    if (label_name != NULL) {
        s->label_name = atr_strdup(label_name);
        s->label_value = atr_strdup(label_value);
        if (s->label_name == NULL || s->label_value == NULL)
            goto nomem;
    }
    if (f == g->nfams) {
        if (grow((void **)&g->fams, &g->capfams, g->nfams, sizeof(*g->fams)) != ATR_OK)
            goto nomem;
        struct gauge_family *fam = &g->fams[f];
        fam->name = atr_strdup(name);
        fam->help = atr_strdup(help);
        if (fam->name == NULL || fam->help == NULL) {
            ATR_FREE(fam->name);
            ATR_FREE(fam->help);
            goto nomem;
        }
        g->nfams++;
    }
    s->family = f;
    s->value = value;
    g->nsamples++;
    return ATR_OK;
nomem:
    ATR_FREE(s->label_name);
    ATR_FREE(s->label_value);
    return ATR_E_NOMEM;
}

atr_status atr_metrics_gauge(struct atr_metrics_gauges *g, const char *name, const char *help,
                             const char *label_name, const char *label_value, double value)
{
    if (g == NULL)
        return ATR_E_INVALID;
    if (g->err != ATR_OK)
        return g->err;
    atr_status rc = gauge_add(g, name, help, label_name, label_value, value);
    g->err = rc;
    return rc;
}

/* ---- rendering ---------------------------------------------------------------------------- */

/*
 * Appends @p s escaped for the exposition format: backslash and line feed
 * always, the double quote too inside a label value.
 */
static atr_status append_escaped(struct atr_buf *out, const char *s, int label)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (label && *s == '"')
            esc = "\\\"";
        if (esc == NULL)
            continue;
        ATR_TRY(atr_buf_append(out, run, (size_t)(s - run)));
        ATR_TRY(atr_buf_append_str(out, esc));
        run = s + 1;
    }
    return atr_buf_append(out, run, (size_t)(s - run));
}

static atr_status family_head(struct atr_buf *out, const char *name, const char *help,
                              const char *type)
{
    ATR_TRY(atr_buf_printf(out, "# HELP %s ", name));
    ATR_TRY(append_escaped(out, help, 0));
    return atr_buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* `name{label="value"` without the closing brace. */
static atr_status sample_open(struct atr_buf *out, const char *name, const char *label,
                              const char *value)
{
    ATR_TRY(atr_buf_printf(out, "%s{%s=\"", name, label));
    ATR_TRY(append_escaped(out, value, 1));
    return atr_buf_append_str(out, "\"");
}

/* Shortest of %.15g / %.17g that reads back as @p v; C locale assumed. */
static void format_double(char *buf, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, n, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(buf, n, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, n, "%.17g", v);
    }
}

struct req_row {
    unsigned rank; /* position of the route in name order */
    unsigned method;
    unsigned code;
    int route;
    uint64_t count;
};

static int req_row_cmp(const void *a, const void *b)
{
    const struct req_row *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->method != y->method)
        return x->method < y->method ? -1 : 1;
    if (x->code != y->code)
        return x->code < y->code ? -1 : 1;
    return 0;
}

static atr_status render_http(struct atr_buf *out, struct atr_metrics *m)
{
    unsigned n = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    unsigned order[ATR_METRICS_MAX_ROUTES], rank[ATR_METRICS_MAX_ROUTES];
    for (unsigned i = 0; i < n; i++) {
        unsigned j = i;
        while (j > 0 && strcmp(m->routes[order[j - 1]].name, m->routes[i].name) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (unsigned i = 0; i < n; i++)
        rank[order[i]] = i;

    struct req_row *rows = atr_malloc(ATR_METRICS_MAX_SERIES * sizeof(*rows));
    if (rows == NULL)
        return ATR_E_NOMEM;
    size_t nrows = 0;
    for (size_t i = 0; i < ATR_METRICS_MAX_SERIES; i++) {
        uint32_t key = atomic_load_explicit(&m->series[i].key, memory_order_acquire);
        uint64_t count = atomic_load_explicit(&m->series[i].count, memory_order_relaxed);
        unsigned r = (key >> 16) - 1;
        /* a route published after n was read shows up in the next render */
        if (key == 0 || count == 0 || r >= n)
            continue;
        rows[nrows++] = (struct req_row){rank[r], (key >> 10) & 7u, key & 0x3ffu, (int)r, count};
    }
    qsort(rows, nrows, sizeof(*rows), req_row_cmp);

    atr_status rc = family_head(out, REQUESTS_NAME, REQUESTS_HELP, "counter");
    for (size_t i = 0; rc == ATR_OK && i < nrows; i++) {
        rc = sample_open(out, REQUESTS_NAME, "route", m->routes[rows[i].route].name);
        if (rc == ATR_OK)
            rc = atr_buf_printf(out, ",method=\"%s\",code=\"%u\"} %" PRIu64 "\n",
                                methods[rows[i].method], rows[i].code, rows[i].count);
    }
    atr_free(rows);
    if (rc != ATR_OK)
        return rc;

    ATR_TRY(family_head(out, DURATION_NAME, DURATION_HELP, "histogram"));
    for (unsigned i = 0; i < n; i++) {
        const struct route *rt = &m->routes[order[i]];
        uint64_t cum = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += atomic_load_explicit(&rt->bucket[b], memory_order_relaxed);
            ATR_TRY(sample_open(out, DURATION_NAME "_bucket", "route", rt->name));
            ATR_TRY(atr_buf_printf(out, ",le=\"%s\"} %" PRIu64 "\n", bucket_le[b], cum));
        }
        uint64_t sum = atomic_load_explicit(&rt->sum_us, memory_order_relaxed);
        ATR_TRY(sample_open(out, DURATION_NAME "_sum", "route", rt->name));
        ATR_TRY(atr_buf_printf(out, "} %" PRIu64 ".%06" PRIu64 "\n", sum / 1000000, sum % 1000000));
        ATR_TRY(sample_open(out, DURATION_NAME "_count", "route", rt->name));
        ATR_TRY(atr_buf_printf(out, "} %" PRIu64 "\n", cum));
    }
    return ATR_OK;
}

static atr_status render_counters(struct atr_buf *out, struct atr_metrics *m)
{
    for (size_t id = 1; id <= ATR_METRICS_COUNTER_MAX; id++) {
        ATR_TRY(family_head(out, counters[id].name, counters[id].help, "counter"));
        uint64_t v = atomic_load_explicit(&m->counters[id], memory_order_relaxed);
        ATR_TRY(atr_buf_printf(out, "%s %" PRIu64 "\n", counters[id].name, v));
    }
    ATR_TRY(family_head(out, DROPPED_NAME, DROPPED_HELP, "counter"));
    uint64_t d = atomic_load_explicit(&m->dropped, memory_order_relaxed);
    return atr_buf_printf(out, "%s %" PRIu64 "\n", DROPPED_NAME, d);
}

static atr_status render_gauges(struct atr_buf *out, const struct atr_metrics_gauges *g)
{
    char num[40];
    for (size_t f = 0; f < g->nfams; f++) {
        const char *name = g->fams[f].name;
        ATR_TRY(family_head(out, name, g->fams[f].help, "gauge"));
        for (size_t i = 0; i < g->nsamples; i++) {
            const struct gauge_sample *s = &g->samples[i];
            if (s->family != f)
                continue;
            if (s->label_name != NULL) {
                ATR_TRY(sample_open(out, name, s->label_name, s->label_value));
                ATR_TRY(atr_buf_append_str(out, "}"));
            } else {
                ATR_TRY(atr_buf_append_str(out, name));
            }
            format_double(num, sizeof(num), s->value);
            ATR_TRY(atr_buf_printf(out, " %s\n", num));
        }
    }
    return ATR_OK;
}

atr_status atr_metrics_render(struct atr_buf *out, struct atr_metrics *m, atr_metrics_gauge_fn fn,
                              void *ctx)
{
    if (out == NULL)
        return ATR_E_INVALID;
    struct atr_metrics_gauges g;
    memset(&g, 0, sizeof(g));
    atr_status rc = ATR_E_INVALID;
    if (m == NULL)
        goto done;
    if (fn != NULL) {
        rc = fn(&g, ctx);
        if (rc == ATR_OK)
            rc = g.err;
        if (rc != ATR_OK)
            goto done;
    }
    if ((rc = render_http(out, m)) != ATR_OK)
        goto done;
    if ((rc = render_counters(out, m)) != ATR_OK)
        goto done;
    rc = render_gauges(out, &g);
done:
    gauges_cleanup(&g);
    if (rc != ATR_OK)
        atr_buf_cleanup(out);
    return rc;
}
