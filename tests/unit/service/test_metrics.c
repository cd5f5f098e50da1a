/* SPDX-License-Identifier: Apache-2.0 */
/* service/metrics: counters, histograms, gauges and the exposition format. */
#include "lib/testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "service/metrics.h"

#define PAGE_MAX ((size_t)4 << 20)

/* ---- an exposition-format checker ------------------------------------------------------- */

/*
 * Reads a page line by line against the text format 0.0.4 grammar, as
 * strictly as we write it: every line is `# HELP name text`,
 * `# TYPE name type` or `name{label="value",...} value [timestamp]`; each
 * family has at most one HELP and one TYPE, both before its samples; the
 * lines of a family are contiguous; no series appears twice; escapes are
 * only \\ \" \n in label values and \\ \n in help texts; histogram buckets
 * are cumulative with increasing le and _count equals the +Inf bucket.
 * Returns NULL when the page passes, else a message naming the line.
 */

#define CK_NAME_MAX 1100

struct ck_family {
    char name[CK_NAME_MAX];
    char type[16];
    int help, typed, samples;
};

struct ck {
    struct ck_family *fams;
    size_t nfams, capfams;
    char **series;
    size_t nseries, capseries;
    /* histogram state: the last bucket line's labels without le */
    char bucket_prefix[4096];
    double bucket_le, bucket_val, inf_val;
    int have_inf;
};

static _Thread_local char ck_msg[512];

static size_t ck_name_len(const char *p, int metric)
{
    size_t n = 0;
    for (;; n++) {
        char c = p[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (metric && c == ':') || (n > 0 && c >= '0' && c <= '9');
        if (!ok)
            return n;
    }
}

static int ck_value(const char *tok, double *out)
{
    if (strcmp(tok, "NaN") == 0) {
        *out = NAN;
        return 1;
    }
    if (strcmp(tok, "+Inf") == 0 || strcmp(tok, "-Inf") == 0) {
        *out = tok[0] == '+' ? INFINITY : -INFINITY;
        return 1;
    }
    if (tok[0] == '\0' || !(tok[0] == '-' || tok[0] == '.' || (tok[0] >= '0' && tok[0] <= '9')))
        return 0;
    char *end;
    *out = strtod(tok, &end);
    return *end == '\0';
}

static struct ck_family *ck_find(struct ck *c, const char *name)
{
    for (size_t i = 0; i < c->nfams; i++) {
        if (strcmp(c->fams[i].name, name) == 0)
            return &c->fams[i];
    }
    return NULL;
}

/* The family a line of @p name belongs to; created (as the last) when new. */
static struct ck_family *ck_family(struct ck *c, const char *name, int sample)
{
    struct ck_family *f = ck_find(c, name);
    if (f == NULL && sample) {
        static const char *const sfx[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3 && f == NULL; i++) {
            size_t n = strlen(name), k = strlen(sfx[i]);
            if (n > k && strcmp(name + n - k, sfx[i]) == 0) {
                char base[CK_NAME_MAX];
                snprintf(base, sizeof(base), "%.*s", (int)(n - k), name);
                f = ck_find(c, base);
                if (f != NULL && strcmp(f->type, "histogram") != 0 &&
                    !(i > 0 && strcmp(f->type, "summary") == 0))
                    f = NULL;
            }
        }
    }
    if (f != NULL)
        return f == &c->fams[c->nfams - 1] ? f : NULL; /* not contiguous */
    if (c->nfams == c->capfams) {
        c->capfams = c->capfams == 0 ? 16 : c->capfams * 2;
        c->fams = realloc(c->fams, c->capfams * sizeof(*c->fams));
        assert_non_null(c->fams);
    }
    f = &c->fams[c->nfams++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

static const char *ck_header(struct ck *c, const char *line)
{
    int help = strncmp(line, "# HELP ", 7) == 0;
    const char *p = line + 7;
    size_t n = ck_name_len(p, 1);
    if (n == 0 || n >= CK_NAME_MAX || p[n] != ' ')
        return "bad metric name in a HELP/TYPE line";
    char name[CK_NAME_MAX];
    snprintf(name, sizeof(name), "%.*s", (int)n, p);
    struct ck_family *f = ck_family(c, name, 0);
    if (f == NULL)
        return "family lines are not contiguous";
    if (f->samples > 0)
        return "HELP/TYPE after a sample of the family";
    p += n + 1;
    if (help) {
        if (f->help++)
            return "second HELP line";
        for (; *p != '\0'; p++) {
            if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
                return "bad escape in HELP text";
            if (*p == '\\')
                p++;
        }
        return NULL;
    }
    if (f->typed++)
        return "second TYPE line";
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(types); i++) {
        if (strcmp(p, types[i]) == 0) {
            snprintf(f->type, sizeof(f->type), "%s", p);
            return NULL;
        }
    }
    return "unknown TYPE";
}

static const char *ck_sample(struct ck *c, const char *line)
{
    const char *p = line;
    size_t n = ck_name_len(p, 1);
    if (n == 0 || n >= CK_NAME_MAX)
        return "bad metric name";
    char name[CK_NAME_MAX];
    snprintf(name, sizeof(name), "%.*s", (int)n, p);
    p += n;
    const char *le_at = NULL;
    char labels[8][CK_NAME_MAX];
    size_t nlabels = 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t ln = ck_name_len(p, 0);
            if (ln == 0 || ln >= CK_NAME_MAX || p[ln] != '=' || p[ln + 1] != '"')
                return "bad label";
            if (nlabels == 8)
                return "too many labels";
            snprintf(labels[nlabels], CK_NAME_MAX, "%.*s", (int)ln, p);
            for (size_t i = 0; i < nlabels; i++) {
                if (strcmp(labels[i], labels[nlabels]) == 0)
                    return "label repeated";
            }
            if (strcmp(labels[nlabels], "le") == 0)
                le_at = p;
            nlabels++;
            p += ln + 2;
            for (; *p != '"'; p++) {
                if (*p == '\0')
                    return "unterminated label value";
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        return "bad escape in label value";
                }
            }
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return "expected , or } after a label";
        }
        p++;
    }
    size_t key_len = (size_t)(p - line);
    if (*p != ' ')
        return "expected a space before the value";
    p++;
    char tok[64];
    size_t tl = strcspn(p, " ");
    if (tl == 0 || tl >= sizeof(tok))
        return "bad value";
    snprintf(tok, sizeof(tok), "%.*s", (int)tl, p);
    double v;
    if (!ck_value(tok, &v))
        return "bad value";
    p += tl;
    if (*p == ' ') {
        p++;
        if (*p == '-')
            p++;
        if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
            return "bad timestamp";
    }

    struct ck_family *f = ck_family(c, name, 1);
    if (f == NULL)
        return "family lines are not contiguous";
    if (!f->help || !f->typed)
        return "sample without HELP and TYPE first";
    f->samples++;
    for (size_t i = 0; i < c->nseries; i++) {
        if (strlen(c->series[i]) == key_len && strncmp(c->series[i], line, key_len) == 0)
            return "duplicate series";
    }
    if (c->nseries == c->capseries) {
        c->capseries = c->capseries == 0 ? 64 : c->capseries * 2;
        c->series = realloc(c->series, c->capseries * sizeof(*c->series));
        assert_non_null(c->series);
    }
    c->series[c->nseries] = strndup(line, key_len);
    assert_non_null(c->series[c->nseries++]);

    if (strcmp(f->type, "histogram") != 0)
        return NULL;
    size_t fl = strlen(f->name);
    if (strcmp(name + fl, "_bucket") == 0) {
        if (le_at == NULL)
            return "bucket without le";
        char le[64];
        snprintf(le, sizeof(le), "%.*s", (int)strcspn(le_at + 4, "\""), le_at + 4);
        double lev;
        if (!ck_value(le, &lev))
            return "bad le";
        char prefix[4096];
        snprintf(prefix, sizeof(prefix), "%.*s", (int)(le_at - line), line);
        if (strcmp(prefix, c->bucket_prefix) == 0) {
            if (!(lev > c->bucket_le) || v < c->bucket_val)
                return "buckets not cumulative";
        } else {
            snprintf(c->bucket_prefix, sizeof(c->bucket_prefix), "%s", prefix);
        }
        c->bucket_le = lev;
        c->bucket_val = v;
        if (isinf(lev)) {
            c->inf_val = v;
            c->have_inf = 1;
        }
    } else if (strcmp(name + fl, "_count") == 0) {
        if (!c->have_inf || c->inf_val != v)
            return "_count differs from the +Inf bucket";
        c->have_inf = 0;
    }
    return NULL;
}

static const char *check_exposition(const char *text, size_t *nsamples)
{
    struct ck c;
    memset(&c, 0, sizeof(c));
    c.bucket_le = -INFINITY;
    const char *msg = NULL;
    size_t lineno = 0, samples = 0;
    const char *p = text;
    if (*p != '\0' && p[strlen(p) - 1] != '\n')
        msg = "page does not end with a line feed";
    while (msg == NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        char *line = strndup(p, (size_t)(nl - p));
        assert_non_null(line);
        lineno++;
        if (line[0] == '\0')
            msg = "empty line";
        else if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0)
            msg = ck_header(&c, line);
        else if (line[0] == '#')
            msg = "unexpected comment";
        else if ((msg = ck_sample(&c, line)) == NULL)
            samples++;
        if (msg != NULL)
            snprintf(ck_msg, sizeof(ck_msg), "line %zu: %s: %.200s", lineno, msg, line);
        free(line);
        p = nl + 1;
    }
    for (size_t i = 0; i < c.nseries; i++)
        free(c.series[i]);
    free(c.series);
    free(c.fams);
    if (nsamples != NULL)
        *nsamples = samples;
    return msg == NULL ? NULL : ck_msg;
}

static void assert_valid(const char *text)
{
    const char *msg = check_exposition(text, NULL);
    if (msg != NULL)
        fail_msg("%s", msg);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static struct atr_metrics *metrics_new(void)
{
    struct atr_metrics *m = NULL;
    assert_int_equal(atr_metrics_new(&m), ATR_OK);
    assert_non_null(m);
    return m;
}

/* Renders @p m into @p out (initialised here) and checks the grammar. */
static const char *render(struct atr_buf *out, struct atr_metrics *m, atr_metrics_gauge_fn fn,
                          void *ctx)
{
    atr_buf_init(out, PAGE_MAX);
    assert_int_equal(atr_metrics_render(out, m, fn, ctx), ATR_OK);
    const char *text = atr_buf_cstr(out);
    assert_non_null(text);
    assert_valid(text);
    return text;
}

/* The value of the sample line `series value`, or NULL when absent. */
static const char *sample_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            static char v[64];
            snprintf(v, sizeof(v), "%.*s", (int)strcspn(p + n + 1, "\n"), p + n + 1);
            return v;
        }
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return NULL;
}

static void assert_sample(const char *text, const char *series, const char *value)
{
    const char *v = sample_value(text, series);
    if (v == NULL)
        fail_msg("no sample %s", series);
    if (strcmp(v, value) != 0)
        fail_msg("%s is %s, expected %s", series, v, value);
}

static size_t count_prefix(const char *text, const char *prefix)
{
    size_t n = 0, k = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, k) == 0)
            n++;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return n;
}

/* ---- the checker itself ------------------------------------------------------------------- */

static void test_checker_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a 1",
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a gauge\n# HELP b y\n# TYPE b gauge\nb 1\na 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n",
        "a 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"x\\t\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"x\",l=\"y\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na 1e\n",
        "# HELP a x\n# TYPE a wobble\n",
        "# HELP a x\\q\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
        "# HELP a x\n# TYPE a gauge\n\na 1\n",
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        if (check_exposition(bad[i], NULL) == NULL)
            fail_msg("checker accepted case %zu", i);
    }
    assert_null(check_exposition("", NULL));
    size_t n = 0;
    assert_null(check_exposition("# HELP a x\\\\y\\n\n# TYPE a gauge\na{l=\"\\\"\\n\\\\\"} -Inf\n"
                                 "a{l=\"b\",} 1 1700000000000\n",
                                 &n));
    assert_int_equal(n, 2);
}

/* ---- lifecycle and fixed counters --------------------------------------------------------- */

static void test_new_free(void **state)
{
    (void)state;
    assert_int_equal(atr_metrics_new(NULL), ATR_E_INVALID);
    struct atr_metrics *m = (struct atr_metrics *)(uintptr_t)1;
    atr_alloc_fail_after(1);
    assert_int_equal(atr_metrics_new(&m), ATR_E_NOMEM);
    atr_alloc_fail_reset();
    assert_null(m);
    atr_metrics_free(NULL);
    m = metrics_new();
    assert_int_equal(atr_metrics_dropped(m), 0);
    atr_metrics_free(m);
    assert_string_equal(ATR_METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

static void test_counters(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    static const char *const names[ATR_METRICS_COUNTER_MAX + 1] = {
        NULL,
        "atrest_records_ingested_total",
        "atrest_records_rejected_total",
        "atrest_ingest_bytes_total",
        "atrest_records_returned_total",
        "atrest_blocks_written_total",
        "atrest_blocks_read_total",
        "atrest_keyring_hits_total",
        "atrest_keyring_misses_total",
        "atrest_vault_calls_total",
        "atrest_audit_events_total",
    };
    for (int id = 1; id <= ATR_METRICS_COUNTER_MAX; id++) {
        assert_string_equal(atr_metrics_counter_name((atr_metrics_counter)id), names[id]);
        atr_metrics_add(m, (atr_metrics_counter)id, (uint64_t)id * 10);
        atr_metrics_add(m, (atr_metrics_counter)id, 1);
        assert_int_equal(atr_metrics_value(m, (atr_metrics_counter)id), (uint64_t)id * 10 + 1);
    }
    assert_null(atr_metrics_counter_name((atr_metrics_counter)0));
    assert_null(atr_metrics_counter_name((atr_metrics_counter)(ATR_METRICS_COUNTER_MAX + 1)));
    atr_metrics_add(m, (atr_metrics_counter)0, 5);
    atr_metrics_add(m, (atr_metrics_counter)(ATR_METRICS_COUNTER_MAX + 1), 5);
    assert_int_equal(atr_metrics_dropped(m), 2);
    assert_int_equal(atr_metrics_value(m, (atr_metrics_counter)0), 0);
    assert_int_equal(atr_metrics_value(NULL, ATR_METRICS_BLOCKS_READ), 0);
    assert_int_equal(atr_metrics_dropped(NULL), 0);
    atr_metrics_add(NULL, ATR_METRICS_BLOCKS_READ, 1);
    atr_metrics_http_observe(NULL, "/x", "GET", 200, 1);
    atr_metrics_add(m, ATR_METRICS_INGEST_BYTES, UINT64_MAX - 31); /* 31 + this = 2^64 - 1 */

    struct atr_buf out;
    const char *text = render(&out, m, NULL, NULL);
    char want[32];
    for (int id = 1; id <= ATR_METRICS_COUNTER_MAX; id++) {
        char head[128];
        snprintf(head, sizeof(head), "# TYPE %s counter\n%s ", names[id], names[id]);
        assert_non_null(strstr(text, head));
        snprintf(want, sizeof(want), "%d", id * 10 + 1);
        if (id == ATR_METRICS_INGEST_BYTES)
            snprintf(want, sizeof(want), "%llu", (unsigned long long)UINT64_MAX);
        assert_sample(text, names[id], want);
    }
    assert_sample(text, "atrest_metrics_dropped_total", "2");
    /* the unmatched route is always there, empty */
    assert_sample(
        text, "atrest_http_request_duration_seconds_bucket{route=\"unmatched\",le=\"+Inf\"}", "0");
    assert_sample(text, "atrest_http_request_duration_seconds_sum{route=\"unmatched\"}",
                  "0.000000");
    assert_int_equal(count_prefix(text, "atrest_http_requests_total{"), 0);
    /* families in the documented order */
    assert_true(strstr(text, "# HELP atrest_http_requests_total") <
                strstr(text, "# HELP atrest_http_request_duration_seconds"));
    assert_true(strstr(text, "# HELP atrest_http_request_duration_seconds") <
                strstr(text, "# HELP atrest_records_ingested_total"));
    assert_true(strstr(text, "# HELP atrest_audit_events_total") <
                strstr(text, "# HELP atrest_metrics_dropped_total"));
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static void test_histogram_buckets(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    static const int64_t us[] = {
        0, 1000, -5, 1001, 5000, 5001, 10000, 2500000, 10000000, 10000001,
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(us); i++)
        atr_metrics_http_observe(m, "/h", "GET", 200, us[i]);
    struct atr_buf out;
    const char *text = render(&out, m, NULL, NULL);
    static const char *const le[][2] = {
        {"0.001", "3"}, {"0.005", "5"}, {"0.01", "7"},  {"0.025", "7"}, {"0.05", "7"},
        {"0.1", "7"},   {"0.25", "7"},  {"0.5", "7"},   {"1", "7"},     {"2.5", "8"},
        {"5", "8"},     {"10", "9"},    {"+Inf", "10"},
    };
    char series[128];
    for (size_t i = 0; i < ATR_ARRAY_LEN(le); i++) {
        snprintf(series, sizeof(series),
                 "atrest_http_request_duration_seconds_bucket{route=\"/h\",le=\"%s\"}", le[i][0]);
        assert_sample(text, series, le[i][1]);
    }
    assert_int_equal(count_prefix(text, "atrest_http_request_duration_seconds_bucket{route=\"/h\""),
                     13);
    assert_sample(text, "atrest_http_request_duration_seconds_sum{route=\"/h\"}", "22.522003");
    assert_sample(text, "atrest_http_request_duration_seconds_count{route=\"/h\"}", "10");
    assert_sample(text, "atrest_http_requests_total{route=\"/h\",method=\"GET\",code=\"200\"}",
                  "10");
    assert_int_equal(atr_metrics_dropped(m), 0);
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

static void test_http_labels(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    atr_metrics_http_observe(m, "/v1/tenants/{t}/records", "POST", 200, 10);
    atr_metrics_http_observe(m, "/v1/tenants/{t}/records", "POST", 200, 10);
    atr_metrics_http_observe(m, "/v1/tenants/{t}/records", "POST", 413, 10);
    atr_metrics_http_observe(m, "/v1/tenants/{t}/records", "GET", 200, 10);
    atr_metrics_http_observe(m, "/healthz", "HEAD", 200, 10);
    atr_metrics_http_observe(m, NULL, "GET", 404, 10);
    atr_metrics_http_observe(m, NULL, "BREW", 405, 10);
    atr_metrics_http_observe(m, NULL, NULL, 405, 10);
    atr_metrics_http_observe(m, NULL, "get", 404, 10); /* methods are case-sensitive */
    /* the same label whatever the string's address */
    char copy[] = "/healthz";
    atr_metrics_http_observe(m, copy, "HEAD", 200, 10);
    assert_int_equal(atr_metrics_dropped(m), 0);

    /* unusable arguments are dropped, nothing else recorded */
    atr_metrics_http_observe(m, "/x", "GET", 99, 10);
    atr_metrics_http_observe(m, "/x", "GET", 600, 10);
    char longr[ATR_METRICS_ROUTE_MAX + 1];
    memset(longr, 'a', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = '\0';
    atr_metrics_http_observe(m, longr, "GET", 200, 10);
    longr[ATR_METRICS_ROUTE_MAX - 1] = '\0'; /* the longest label that fits */
    atr_metrics_http_observe(m, longr, "GET", 200, 10);
    atr_metrics_http_observe(m, "/bad\xff", "GET", 200, 10);
    atr_metrics_http_observe(m, "/bad\xc0\xaf", "GET", 200, 10); /* overlong */
    atr_metrics_http_observe(m, "/caf\xc3\xa9", "GET", 200, 10); /* UTF-8 is fine */
    assert_int_equal(atr_metrics_dropped(m), 5);

    struct atr_buf out;
    const char *text = render(&out, m, NULL, NULL);
    const char *r = "atrest_http_requests_total{route=\"/v1/tenants/{t}/records\",method=";
    char s[256];
    snprintf(s, sizeof(s), "%s\"POST\",code=\"200\"}", r);
    assert_sample(text, s, "2");
    snprintf(s, sizeof(s), "%s\"POST\",code=\"413\"}", r);
    assert_sample(text, s, "1");
    snprintf(s, sizeof(s), "%s\"GET\",code=\"200\"}", r);
    assert_sample(text, s, "1");
    assert_sample(
        text, "atrest_http_requests_total{route=\"/healthz\",method=\"HEAD\",code=\"200\"}", "2");
    assert_sample(
        text, "atrest_http_requests_total{route=\"unmatched\",method=\"GET\",code=\"404\"}", "1");
    assert_sample(
        text, "atrest_http_requests_total{route=\"unmatched\",method=\"other\",code=\"405\"}", "2");
    assert_sample(
        text, "atrest_http_requests_total{route=\"unmatched\",method=\"other\",code=\"404\"}", "1");
    assert_sample(text,
                  "atrest_http_requests_total{route=\"/caf\xc3\xa9\",method=\"GET\",code=\"200\"}",
                  "1");
    assert_sample(text, "atrest_http_request_duration_seconds_count{route=\"unmatched\"}", "4");
    assert_sample(text, "atrest_http_request_duration_seconds_count{route=\"/healthz\"}", "2");
    assert_null(strstr(text, "route=\"/x\""));
    assert_null(strstr(text, "/bad"));
    snprintf(s, sizeof(s), "atrest_http_request_duration_seconds_count{route=\"%s\"}", longr);
    assert_sample(text, s, "1");
    assert_sample(text, "atrest_metrics_dropped_total", "5");
    /* series sorted by route, then method, then code */
    const char *a = strstr(text, "route=\"/healthz\",method");
    const char *b = strstr(text, "route=\"/v1/tenants/{t}/records\",method=\"GET\"");
    const char *c = strstr(text, "route=\"/v1/tenants/{t}/records\",method=\"POST\",code=\"200\"");
    const char *d = strstr(text, "route=\"/v1/tenants/{t}/records\",method=\"POST\",code=\"413\"");
    const char *e = strstr(text, "route=\"unmatched\",method=\"GET\"");
    assert_true(a < b && b < c && c < d && d < e);
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    atr_metrics_http_observe(m, "/a\\b\"c\nd", "GET", 200, 1);
    struct atr_buf out;
    const char *text = render(&out, m, NULL, NULL);
    assert_sample(
        text, "atrest_http_requests_total{route=\"/a\\\\b\\\"c\\nd\",method=\"GET\",code=\"200\"}",
        "1");
    assert_sample(text, "atrest_http_request_duration_seconds_sum{route=\"/a\\\\b\\\"c\\nd\"}",
                  "0.000001");
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

static void test_route_overflow(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    char route[32];
    /* "unmatched" holds one of the route slots */
    for (int i = 0; i < ATR_METRICS_MAX_ROUTES - 1; i++) {
        snprintf(route, sizeof(route), "/r%d", i);
        atr_metrics_http_observe(m, route, "GET", 200, 1);
    }
    assert_int_equal(atr_metrics_dropped(m), 0);
    atr_metrics_http_observe(m, "/one-too-many", "GET", 200, 1);
    assert_int_equal(atr_metrics_dropped(m), 1);
    atr_metrics_http_observe(m, "/r7", "GET", 200, 1);
    atr_metrics_http_observe(m, NULL, "GET", 404, 1);
    assert_int_equal(atr_metrics_dropped(m), 1);

    /* 64 series so far; 2 x 500 more distinct codes overflow the 1024 series */
    for (unsigned code = 100; code <= 599; code++)
        atr_metrics_http_observe(m, "/r0", "PUT", code, 1);
    for (unsigned code = 100; code <= 599; code++)
        atr_metrics_http_observe(m, "/r1", "PUT", code, 1);
    uint64_t over = 64 + 1000 - ATR_METRICS_MAX_SERIES;
    assert_int_equal(atr_metrics_dropped(m), 1 + over);
    /* known series still count */
    atr_metrics_http_observe(m, "/r1", "GET", 200, 1);
    assert_int_equal(atr_metrics_dropped(m), 1 + over);

    struct atr_buf out;
    const char *text = render(&out, m, NULL, NULL);
    assert_int_equal(count_prefix(text, "atrest_http_requests_total{"), ATR_METRICS_MAX_SERIES);
    assert_int_equal(count_prefix(text, "atrest_http_request_duration_seconds_count{"),
                     ATR_METRICS_MAX_ROUTES);
    assert_null(strstr(text, "one-too-many"));
    char want[32];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)(1 + over));
    assert_sample(text, "atrest_metrics_dropped_total", want);
    /* the histogram still took the durations whose series did not fit */
    assert_sample(text, "atrest_http_request_duration_seconds_count{route=\"/r1\"}", "502");
    assert_sample(text, "atrest_http_requests_total{route=\"/r1\",method=\"GET\",code=\"200\"}",
                  "2");
    assert_sample(text, "atrest_http_requests_total{route=\"/r7\",method=\"GET\",code=\"200\"}",
                  "2");
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

/* ---- concurrency -------------------------------------------------------------------------- */

#define THREADS 6
#define ITERS   20000

struct worker {
    struct atr_metrics *m;
    int id;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    static const char *const routes[] = {"/a", "/b", "/c", "/d", "/e"};
    for (int i = 0; i < ITERS; i++) {
        atr_metrics_add(w->m, ATR_METRICS_RECORDS_INGESTED, 1);
        atr_metrics_add(w->m, ATR_METRICS_INGEST_BYTES, 3);
        const char *route = routes[(i + w->id) % 5];
        atr_metrics_http_observe(w->m, route, i % 2 ? "GET" : "POST", 200 + (unsigned)(i % 3),
                                 i % 3000);
    }
    return NULL;
}

static void *render_main(void *arg)
{
    struct atr_metrics *m = arg;
    for (int i = 0; i < 20; i++) {
        struct atr_buf out;
        atr_buf_init(&out, PAGE_MAX);
        if (atr_metrics_render(&out, m, NULL, NULL) != ATR_OK)
            return (void *)"render failed";
        const char *msg = check_exposition(atr_buf_cstr(&out), NULL);
        atr_buf_cleanup(&out);
        if (msg != NULL)
            return (void *)"invalid page while updating";
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    pthread_t th[THREADS], rt;
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){m, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&rt, NULL, render_main, m), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    void *rres = NULL;
    assert_int_equal(pthread_join(rt, &rres), 0);
    if (rres != NULL)
        fail_msg("%s", (const char *)rres);

    assert_int_equal(atr_metrics_value(m, ATR_METRICS_RECORDS_INGESTED), THREADS * ITERS);
    assert_int_equal(atr_metrics_value(m, ATR_METRICS_INGEST_BYTES), 3 * THREADS * ITERS);
    assert_int_equal(atr_metrics_dropped(m), 0);
    struct atr_buf out;
    const char *text = render(&out, m, NULL, NULL);
    /* every request counted exactly once, in its series and its histogram */
    unsigned long long req = 0, hist = 0;
    for (const char *p = text; (p = strstr(p, "\natrest_http_requests_total{")) != NULL; p++)
        req += strtoull(strchr(p, '}') + 2, NULL, 10);
    for (const char *p = text;
         (p = strstr(p, "\natrest_http_request_duration_seconds_count{")) != NULL; p++)
        hist += strtoull(strchr(p, '}') + 2, NULL, 10);
    assert_int_equal(req, THREADS * ITERS);
    assert_int_equal(hist, THREADS * ITERS);
    assert_int_equal(count_prefix(text, "atrest_http_requests_total{"), 5 * 2 * 3);
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

/* ---- gauges ------------------------------------------------------------------------------- */

static atr_status gauges_fn(struct atr_metrics_gauges *g, void *ctx)
{
    (void)ctx;
    static const char *const th = "Tenants by encryption state.";
    ATR_TRY(atr_metrics_gauge(g, "atrest_tenants", th, "state", "managed", 3));
    ATR_TRY(atr_metrics_gauge(g, "atrest_keyring_entries", "Cached tenant keys.", NULL, NULL, 5));
    ATR_TRY(atr_metrics_gauge(g, "atrest_tenants", th, "state", "customer", 1));
    ATR_TRY(atr_metrics_gauge(g, "atrest_store_bytes", "Bytes in the store.", NULL, NULL, 1e12));
    ATR_TRY(atr_metrics_gauge(g, "atrest_tenants", th, "state", "locked", 0));
    ATR_TRY(atr_metrics_gauge(g, "atrest_secure_heap_used_bytes", "Secure heap in use.", NULL, NULL,
                              4096));
    ATR_TRY(atr_metrics_gauge(g, "atrest_store_blocks", "Blocks in the store.", NULL, NULL, 0.1));
    ATR_TRY(atr_metrics_gauge(g, "atrest_odd", "Odd values: \\ and\nnewline \"quoted\".", "v",
                              "a\\b\"c\nd", NAN));
    ATR_TRY(atr_metrics_gauge(g, "atrest_odd", "Odd values: \\ and\nnewline \"quoted\".", "v",
                              "pos", INFINITY));
    ATR_TRY(atr_metrics_gauge(g, "atrest_odd", "Odd values: \\ and\nnewline \"quoted\".", "v",
                              "neg", -INFINITY));
    ATR_TRY(atr_metrics_gauge(g, "atrest_odd", "Odd values: \\ and\nnewline \"quoted\".", NULL,
                              NULL, -2.5));
    ATR_TRY(atr_metrics_gauge(g, "atrest:ratio", "A colon name.", NULL, NULL, 1.0 / 3.0));
    return ATR_OK;
}

static void test_gauges(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    atr_metrics_http_observe(m, "/g", "GET", 200, 1);
    struct atr_buf out;
    const char *text = render(&out, m, gauges_fn, NULL);
    size_t n = 0;
    assert_null(check_exposition(text, &n));
    assert_non_null(strstr(text, "# HELP atrest_tenants Tenants by encryption state.\n"
                                 "# TYPE atrest_tenants gauge\n"
                                 "atrest_tenants{state=\"managed\"} 3\n"
                                 "atrest_tenants{state=\"customer\"} 1\n"
                                 "atrest_tenants{state=\"locked\"} 0\n"
                                 "# HELP atrest_keyring_entries Cached tenant keys.\n"
                                 "# TYPE atrest_keyring_entries gauge\n"
                                 "atrest_keyring_entries 5\n"
                                 "# HELP atrest_store_bytes "));
    assert_sample(text, "atrest_store_bytes", "1000000000000");
    assert_sample(text, "atrest_secure_heap_used_bytes", "4096");
    assert_sample(text, "atrest_store_blocks", "0.1");
    assert_non_null(strstr(text, "# HELP atrest_odd Odd values: \\\\ and\\nnewline \"quoted\".\n"
                                 "# TYPE atrest_odd gauge\n"
                                 "atrest_odd{v=\"a\\\\b\\\"c\\nd\"} NaN\n"
                                 "atrest_odd{v=\"pos\"} +Inf\n"
                                 "atrest_odd{v=\"neg\"} -Inf\n"
                                 "atrest_odd -2.5\n"));
    const char *third = sample_value(text, "atrest:ratio");
    assert_non_null(third);
    assert_true(strtod(third, NULL) == 1.0 / 3.0);
    /* gauges come after the built-in families */
    assert_true(strstr(text, "# HELP atrest_metrics_dropped_total") <
                strstr(text, "# HELP atrest_tenants"));
    atr_buf_cleanup(&out);

    /* the page is appended to what the buffer held */
    atr_buf_init(&out, PAGE_MAX);
    assert_int_equal(atr_buf_append_str(&out, "before\n"), ATR_OK);
    assert_int_equal(atr_metrics_render(&out, m, gauges_fn, NULL), ATR_OK);
    assert_int_equal(strncmp(atr_buf_cstr(&out), "before\n# HELP ", 14), 0);
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

struct bad_case {
    const char *name, *help, *label_name, *label_value;
};

static const struct bad_case bad_cases[] = {
    {"1abc", "h", NULL, NULL},
    {"a-b", "h", NULL, NULL},
    {"", "h", NULL, NULL},
    {"a b", "h", NULL, NULL},
    {NULL, "h", NULL, NULL},
    {"ok", NULL, NULL, NULL},
    {"ok", "bad \xff help", NULL, NULL},
    {"ok", "h", "__reserved", "v"},
    {"ok", "h", "1x", "v"},
    {"ok", "h", "a:b", "v"},
    {"ok", "h", "", "v"},
    {"ok", "h", "l", NULL},
    {"ok", "h", NULL, "v"},
    {"ok", "h", "l", "\xed\xa0\x80"}, /* a UTF-16 surrogate */
    {"atrest_http_requests_total", "h", NULL, NULL},
    {"atrest_http_request_duration_seconds", "h", NULL, NULL},
    {"atrest_http_request_duration_seconds_bucket", "h", NULL, NULL},
    {"atrest_http_request_duration_seconds_count", "h", NULL, NULL},
    {"atrest_metrics_dropped_total", "h", NULL, NULL},
    {"atrest_blocks_read_total", "h", NULL, NULL},
};

struct gauge_ctx {
    int mode;
    size_t index;
    atr_status seen;
};

static atr_status bad_fn(struct atr_metrics_gauges *g, void *ctx)
{
    struct gauge_ctx *c = ctx;
    switch (c->mode) {
    case 0: { /* one invalid call, after a good one */
        const struct bad_case *b = &bad_cases[c->index];
        ATR_TRY(atr_metrics_gauge(g, "good", "h", NULL, NULL, 1));
        return atr_metrics_gauge(g, b->name, b->help, b->label_name, b->label_value, 1);
    }
    case 1: /* the same series twice */
        ATR_TRY(atr_metrics_gauge(g, "dup", "h", "l", "v", 1));
        return atr_metrics_gauge(g, "dup", "h", "l", "v", 2);
    case 2: /* the same family with another help text */
        ATR_TRY(atr_metrics_gauge(g, "fam", "h", "l", "a", 1));
        return atr_metrics_gauge(g, "fam", "other", "l", "b", 2);
    case 3: /* an error ignored by the callback still fails the render */
        c->seen = atr_metrics_gauge(g, "x", "h", "__l", "v", 1);
        c->seen = c->seen == ATR_E_INVALID ? atr_metrics_gauge(g, "y", "h", NULL, NULL, 1) : 0;
        return ATR_OK;
    case 4: /* the callback's own error */
        ATR_TRY(atr_metrics_gauge(g, "y", "h", NULL, NULL, 1));
        return ATR_E_UNAVAILABLE;
    case 5: { /* too many samples */
        char label[32];
        for (size_t i = 0; i <= ATR_METRICS_MAX_GAUGES; i++) {
            snprintf(label, sizeof(label), "t%zu", i);
            atr_status rc = atr_metrics_gauge(g, "many", "h", "tenant", label, (double)i);
            if (rc != ATR_OK)
                return i == ATR_METRICS_MAX_GAUGES ? rc : ATR_E_INTERNAL;
        }
        return ATR_OK;
    }
    case 6: { /* the longest texts allowed; index 1..4: one field one byte longer */
        char *t[5];
        for (size_t i = 0; i < 5; i++) {
            size_t n = ATR_METRICS_TEXT_MAX + (i > 0 && i == c->index);
            t[i] = malloc(n + 1);
            assert_non_null(t[i]);
            memset(t[i], 'a', n);
            t[i][n] = '\0';
        }
        atr_status rc = atr_metrics_gauge(g, t[1], t[2], t[3], t[4], 1);
        for (size_t i = 0; i < 5; i++)
            free(t[i]);
        return rc;
    }
    default: /* distinct label sets of one family, with and without labels */
        ATR_TRY(atr_metrics_gauge(g, "fam", "h", "l", "a", 1));
        ATR_TRY(atr_metrics_gauge(g, "fam", "h", "k", "a", 2));
        ATR_TRY(atr_metrics_gauge(g, "fam", "h", NULL, NULL, 3));
        return atr_metrics_gauge(g, "fam", "h", "l", "b", 4);
    }
}

static atr_status render_mode(struct atr_metrics *m, struct gauge_ctx *c)
{
    struct atr_buf out;
    atr_buf_init(&out, PAGE_MAX);
    assert_int_equal(atr_buf_append_str(&out, "held before"), ATR_OK);
    atr_status rc = atr_metrics_render(&out, m, bad_fn, c);
    if (rc != ATR_OK) {
        /* no partial page, storage released */
        assert_null(out.ptr);
        assert_int_equal(out.len, 0);
    } else {
        assert_valid(atr_buf_cstr(&out) + strlen("held before"));
    }
    atr_buf_cleanup(&out);
    return rc;
}

static void test_gauge_errors(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    struct gauge_ctx c = {0, 0, ATR_OK};
    for (c.index = 0; c.index < ATR_ARRAY_LEN(bad_cases); c.index++) {
        if (render_mode(m, &c) != ATR_E_INVALID)
            fail_msg("bad case %zu accepted", c.index);
    }
    c.mode = 1;
    assert_int_equal(render_mode(m, &c), ATR_E_INVALID);
    c.mode = 2;
    assert_int_equal(render_mode(m, &c), ATR_E_INVALID);
    c.mode = 3;
    assert_int_equal(render_mode(m, &c), ATR_E_INVALID);
    assert_int_equal(c.seen, ATR_E_INVALID); /* sticky */
    c.mode = 4;
    assert_int_equal(render_mode(m, &c), ATR_E_UNAVAILABLE);
    c.mode = 5;
    assert_int_equal(render_mode(m, &c), ATR_E_TOO_LARGE);
    c.mode = 6;
    for (c.index = 0; c.index <= 4; c.index++)
        assert_int_equal(render_mode(m, &c), c.index == 0 ? ATR_OK : ATR_E_INVALID);
    c.mode = 7;
    assert_int_equal(render_mode(m, &c), ATR_OK);
    assert_int_equal(atr_metrics_gauge(NULL, "a", "h", NULL, NULL, 1), ATR_E_INVALID);
    atr_metrics_free(m);
}

/* ---- render failures ---------------------------------------------------------------------- */

static void test_render_arguments(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    assert_int_equal(atr_metrics_render(NULL, m, NULL, NULL), ATR_E_INVALID);
    struct atr_buf out;
    atr_buf_init(&out, PAGE_MAX);
    assert_int_equal(atr_buf_append_str(&out, "x"), ATR_OK);
    assert_int_equal(atr_metrics_render(&out, NULL, NULL, NULL), ATR_E_INVALID);
    assert_null(out.ptr);
    /* a page larger than the buffer's cap */
    atr_buf_init(&out, 200);
    assert_int_equal(atr_metrics_render(&out, m, NULL, NULL), ATR_E_TOO_LARGE);
    assert_null(out.ptr);
    assert_int_equal(out.len, 0);
    atr_buf_cleanup(&out);
    atr_metrics_free(m);
}

static void test_render_nomem(void **state)
{
    (void)state;
    struct atr_metrics *m = metrics_new();
    for (int i = 0; i < 40; i++) {
        char route[32];
        snprintf(route, sizeof(route), "/route/%d", i);
        atr_metrics_http_observe(m, route, i % 2 ? "GET" : "POST", 200, i * 1000);
    }
    atr_metrics_add(m, ATR_METRICS_AUDIT_EVENTS, 7);
    struct gauge_ctx c = {7, 0, ATR_OK};
    unsigned long nth;
    atr_status rc = ATR_E_NOMEM;
    for (nth = 1; nth < 10000 && rc != ATR_OK; nth++) {
        struct atr_buf out;
        atr_buf_init(&out, PAGE_MAX);
        atr_alloc_fail_after(nth);
        rc = atr_metrics_render(&out, m, bad_fn, &c);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            assert_valid(atr_buf_cstr(&out));
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            assert_null(out.ptr);
            assert_int_equal(out.len, 0);
        }
        atr_buf_cleanup(&out);
    }
    assert_int_equal(rc, ATR_OK);
    assert_true(nth > 5); /* several allocations were failed in turn */
    /* leaks on any failure path are reported by LeakSanitizer at exit */
    atr_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects),  cmocka_unit_test(test_new_free),
        cmocka_unit_test(test_counters),         cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_http_labels),      cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_route_overflow),   cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_gauges),           cmocka_unit_test(test_gauge_errors),
        cmocka_unit_test(test_render_arguments), cmocka_unit_test(test_render_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
