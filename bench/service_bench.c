/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data service benchmark (design section 8, issue 5): `atrest serve`
 * measured through HTTPS on loopback, against baselines run in the same
 * process tree, in the same run. See BENCHMARKS.md, "Data service".
 *
 * The program stands a stack up from the atrest binary, as tests/cli does:
 * a local CA and server certificate (`atrest cert`), one identity server
 * (`atrest idp serve`) and the data servers (`atrest serve`), each with its
 * own data directory and all trusting the same identity server. Tokens are
 * real: every tenant is a directory of the identity server with a service
 * principal of one multi-tenant bench application that holds the roles, and
 * the bench gets its access tokens with an RS256 client assertion (no
 * PBKDF2 secret check per token).
 *
 * 1. Ingest and query. Records of 1 KiB (time, user, app, action, ip and a
 *    text field of random printable characters, so zstd cannot make the
 *    work vanish), in batches of 1000 per POST (1 000 KiB bodies), sent by
 *    --threads client threads (one keep-alive libcurl handle each) until
 *    --batches batches are in; then the whole tenant is read back with
 *    GET ?limit=10000, following X-Next-Cursor, on one connection. Systems:
 *      enc        `atrest serve` as shipped (zstd + AES-256-GCM, DEK/TK)
 *      enc-nozstd the same with serve.compress=false (AES-GCM only)
 *      plain      `atrest serve --bench-plaintext` (parse, pack, store,
 *                 query; no DEK/TK crypto and, as the code stands, no zstd)
 *      sqlcipher  bench/sqlcipher_baseline (a child process: SQLCipher,
 *                 PRAGMA key, WAL, synchronous=FULL, one row per record,
 *                 transactions of 1000 rows; then reads every row)
 *      sqlite     the same program without a key (plain SQLite pages)
 *    Every round uses a fresh tenant; the order of the systems rotates
 *    between rounds. Ratios are taken per round, and the medians reported.
 * 2. Memory per idle tenant. A fresh `atrest serve`; after one warm-up
 *    write, VmRSS is read from /proc; then one record is written to each
 *    of --tenants new tenants (the first authorised write creates a
 *    tenant), the server is left idle, and VmRSS is read again, plus the
 *    keyring gauges from /metrics.
 *
 * Usage: bench_service [--quick] [--rounds N] [--batches N] [--threads N]
 *                      [--tenants N] [--atrest PATH] [--baseline PATH]
 *                      [--dir DIR] [--keep] [--skip-memory] [--skip-ingest]
 * "--quick" is the ctest smoke run: tiny sizes, numbers meaningless.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"
#include "crypto/rsa.h"
#include "http/client.h"
#include "identity/jwt.h"

#ifndef ATR_BENCH_ATREST
#define ATR_BENCH_ATREST "atrest"
#endif
#ifndef ATR_BENCH_BASELINE
#define ATR_BENCH_BASELINE ""
#endif

#define RECORD_BYTES  1024 /* every record line is exactly this long, '\n' included */
#define BATCH_RECORDS 1000
#define MAX_ROUNDS    15
#define MAX_SERVERS   8
#define MAX_THREADS   16
#define QUERY_LIMIT   10000
#define URL_MAX       512
#define TOKEN_MAX     8192
#define ID_MAX        64
#define RESP_MAX      ((size_t)24 << 20)

struct config {
    int quick;
    int rounds;
    size_t batches; /* per round and system */
    int threads;
    size_t tenants; /* memory part */
    const char *atrest;
    const char *baseline;
    const char *dir;
    int keep;
    int skip_memory;
    int skip_ingest;
};

/* ------------------------------------------------------------------ util */

static char g_work[1024];
static int g_keep;
static long g_idle_div = 1; /* --quick: waits for idleness are cut short */

struct child {
    char name[32];
    pid_t pid;
    char url[URL_MAX];
};
static struct child g_children[MAX_SERVERS];
static int g_nchildren;

static void cleanup(void)
{
    for (int i = 0; i < g_nchildren; i++) {
        if (g_children[i].pid > 0) {
            kill(g_children[i].pid, SIGKILL);
            (void)waitpid(g_children[i].pid, NULL, 0);
            g_children[i].pid = 0;
        }
    }
    if (g_work[0] != '\0' && !g_keep) {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_work);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_service: could not remove %s\n", g_work);
    }
}

_Noreturn static void die(const char *fmt, ...) ATR_PRINTF(1, 2);
_Noreturn static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_service: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (g_work[0] != '\0')
        fprintf(stderr, "bench_service: server logs are in %s/*.err\n", g_work);
    g_keep = 1; /* keep the logs */
    cleanup();
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *in, int n)
{
    double v[MAX_ROUNDS];
    if (n <= 0)
        return 0;
    memcpy(v, in, (size_t)n * sizeof(double));
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(out, (int)cap, f) != NULL)
        out[strcspn(out, " \n") == 0 ? 0 : strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* xorshift64*: a fast PRNG for the record text (not for keys). */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}

static char *read_small_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 4096);
    if (buf != NULL && fread(buf, 1, 4095, f) == 0) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL)
        buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ processes */

static void run_quiet(const char *const *argv)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s %s failed", argv[0], argv[1]);
}

/* Runs @p argv, its stdout into @p out (NUL-terminated, at most cap - 1 bytes). */
static int run_capture(const char *const *argv, char *out, size_t cap)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], out + n, cap - 1 - n)) > 0 && n + (size_t)r < cap - 1)
        n += (size_t)r;
    if (r > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Starts a server: argv[0] is the atrest binary; stdout goes to
 * WORK/NAME.out, stderr to WORK/NAME.err; waits up to 20 s for the URL it
 * prints. @p env NULL or "KEY=VALUE" strings added to the environment.
 */
static struct child *start_server(const char *name, const char *const *argv, const char *const *env)
{
    if (g_nchildren == MAX_SERVERS)
        die("too many servers");
    struct child *c = &g_children[g_nchildren++];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    char out[1100], errp[1100];
    snprintf(out, sizeof(out), "%s/%s.out", g_work, name);
    snprintf(errp, sizeof(errp), "%s/%s.err", g_work, name);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fo < 0 || fe < 0)
            _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        close(fo);
        close(fe);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    c->pid = pid;
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(out, "r");
        if (f != NULL) {
            char line[URL_MAX];
            while (fgets(line, sizeof(line), f) != NULL) {
                if (strncmp(line, "https://", 8) == 0) {
                    line[strcspn(line, "\r\n")] = '\0';
                    snprintf(c->url, sizeof(c->url), "%s", line);
                    break;
                }
            }
            fclose(f);
        }
        if (c->url[0] != '\0')
            return c;
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            c->pid = 0;
            die("%s exited before printing its URL", name);
        }
        sleep_ms(100);
    }
    die("%s printed no URL within 20 s", name);
}

static void stop_server(struct child *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        int st = 0;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "bench_service: %s did not stop within 10 s; killing it\n", c->name);
    kill(c->pid, SIGKILL);
    (void)waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

struct rss {
    long vm_rss_kb, rss_anon_kb, rss_file_kb, vm_hwm_kb;
};

static struct rss read_rss(pid_t pid)
{
    struct rss r = {-1, -1, -1, -1};
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("cannot read %s", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            r.vm_rss_kb = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "RssAnon:", 8) == 0)
            r.rss_anon_kb = strtol(line + 8, NULL, 10);
        else if (strncmp(line, "RssFile:", 8) == 0)
            r.rss_file_kb = strtol(line + 8, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            r.vm_hwm_kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return r;
}

/* ------------------------------------------------------------------ HTTP */

static struct atr_http_client *client_new(const char *ca)
{
    struct atr_http_client_opts o;
    memset(&o, 0, sizeof(o));
    o.ca_file = ca;
    o.timeout_ms = 300000;
    o.max_response = RESP_MAX;
    o.user_agent = "atrest-bench";
    struct atr_http_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_new(&c, &o, &err) != ATR_OK)
        die("http client: %s", atr_err_msg(&err));
    return c;
}

/* Sends one request; dies on a transport failure. */
static void http(struct atr_http_client_resp *resp, struct atr_http_client *c, const char *method,
                 const char *url, const struct atr_http_header *h, size_t nh, struct atr_span body)
{
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    rq.headers = h;
    rq.nheaders = nh;
    rq.body = body;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_send(resp, c, &rq, &err) != ATR_OK)
        die("%s %s: %s", method, url, atr_err_msg(&err));
}

static const char *resp_text(struct atr_http_client_resp *r)
{
    const char *s = atr_buf_cstr(&r->body);
    return s != NULL ? s : "";
}

/* POSTs JSON @p body to @p url with a bearer and an optional extra header;
 * dies unless the status is @p want; returns the parsed answer. */
static json_t *post_json(struct atr_http_client *c, const char *url, const char *bearer,
                         const char *xname, const char *xvalue, const char *body, unsigned want)
{
    char auth[TOKEN_MAX + 16];
    snprintf(auth, sizeof(auth), "Bearer %s", bearer);
    struct atr_http_header h[3] = {
        {"Authorization", auth}, {"Content-Type", "application/json"}, {xname, xvalue}};
    struct atr_http_client_resp r;
    http(&r, c, "POST", url, h, xname != NULL ? 3 : 2, atr_span_str(body));
    if (r.status != want)
        die("POST %s: %u %s", url, r.status, resp_text(&r));
    json_t *o = json_loadb((const char *)r.body.ptr, r.body.len, 0, NULL);
    atr_http_client_resp_cleanup(&r);
    if (o == NULL)
        die("POST %s: the answer is not JSON", url);
    return o;
}

static void copy_str(char *out, size_t cap, json_t *o, const char *key, const char *what)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || strlen(s) >= cap)
        die("%s: no \"%s\" in the answer", what, key);
    memcpy(out, s, strlen(s) + 1);
}

/* ------------------------------------------------------------------ identity */

struct idp {
    char url[URL_MAX];
    char ca[1200];
    char *secret;
    char app_id[ID_MAX];
    struct atr_rsa_key *key; /* the bench application's assertion key */
};

struct tenant {
    char id[ID_MAX];
    char *token; /* Bearer token with the tenant's roles */
};

static void idp_setup(struct idp *I, struct atr_http_client *c)
{
    char url[URL_MAX + 128];
    snprintf(url, sizeof(url), "%s/admin/directories", I->url);
    json_t *d = post_json(c, url, I->secret, NULL, NULL, "{\"displayName\":\"bench-home\"}", 201);
    char home[ID_MAX];
    copy_str(home, sizeof(home), d, "id", "directory create");
    json_decref(d);
    snprintf(url, sizeof(url), "%s/admin/directories/%s/applications", I->url, home);
    json_t *a = post_json(c, url, I->secret, NULL, NULL,
                          "{\"displayName\":\"bench\",\"multiTenant\":true}", 201);
    copy_str(I->app_id, sizeof(I->app_id), a, "appId", "app create");
    json_decref(a);
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_buf pem;
    atr_buf_init(&pem, 8192);
    if (atr_rsa_key_generate(&I->key, 2048, &err) != ATR_OK ||
        atr_rsa_key_format_pem_public(&pem, I->key, &err) != ATR_OK)
        die("assertion key: %s", atr_err_msg(&err));
    json_t *kb = json_pack("{s:s%}", "key", (const char *)pem.ptr, pem.len);
    char *kbs = json_dumps(kb, JSON_COMPACT);
    json_decref(kb);
    atr_buf_cleanup(&pem);
    if (kbs == NULL)
        die("out of memory");
    snprintf(url, sizeof(url), "%s/admin/applications/%s/keys", I->url, I->app_id);
    json_decref(post_json(c, url, I->secret, NULL, NULL, kbs, 201));
    free(kbs);
}

/* A new directory with the bench app's principal holding @p roles, and its token. */
static void idp_tenant(struct tenant *t, const struct idp *I, struct atr_http_client *c,
                       const char *const *roles, size_t nroles)
{
    char url[URL_MAX + 256], body[512];
    snprintf(url, sizeof(url), "%s/admin/directories", I->url);
    json_t *d = post_json(c, url, I->secret, NULL, NULL, "{\"displayName\":\"bench\"}", 201);
    copy_str(t->id, sizeof(t->id), d, "id", "directory create");
    json_decref(d);
    snprintf(url, sizeof(url), "%s/v1.0/servicePrincipals", I->url);
    snprintf(body, sizeof(body), "{\"appId\":\"%s\"}", I->app_id);
    json_t *sp = post_json(c, url, I->secret, "X-Atrest-Directory", t->id, body, 201);
    char spid[ID_MAX];
    copy_str(spid, sizeof(spid), sp, "id", "servicePrincipal create");
    json_decref(sp);
    for (size_t i = 0; i < nroles; i++) {
        snprintf(url, sizeof(url), "%s/admin/directories/%s/servicePrincipals/%s/roles", I->url,
                 t->id, spid);
        snprintf(body, sizeof(body), "{\"role\":\"%s\"}", roles[i]);
        json_decref(post_json(c, url, I->secret, NULL, NULL, body, 200));
    }
    /* client-credentials token with an RS256 client assertion */
    snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", I->url, t->id);
    time_t now = time(NULL);
    char jti[40];
    snprintf(jti, sizeof(jti), "%016llx%016llx", (unsigned long long)rnd(),
             (unsigned long long)rnd());
    json_t *claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "iss", I->app_id, "sub", I->app_id,
                               "aud", url, "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
                               (json_int_t)(now + 600), "jti", jti);
    char *assertion = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (claims == NULL || atr_jwt_sign_rs256(&assertion, I->key, "bench", claims, &err) != ATR_OK)
        die("assertion: %s", atr_err_msg(&err));
    json_decref(claims);
    char form[TOKEN_MAX];
    snprintf(form, sizeof(form),
             "grant_type=client_credentials&client_id=%s&scope=api%%3A%%2F%%2Fatrest%%2F.default"
             "&client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type"
             "%%3Ajwt-bearer&client_assertion=%s",
             I->app_id, assertion);
    atr_free(assertion);
    struct atr_http_header h[1] = {{"Content-Type", "application/x-www-form-urlencoded"}};
    struct atr_http_client_resp r;
    http(&r, c, "POST", url, h, 1, atr_span_str(form));
    if (r.status != 200)
        die("token: %u %s", r.status, resp_text(&r));
    json_t *o = json_loadb((const char *)r.body.ptr, r.body.len, 0, NULL);
    atr_http_client_resp_cleanup(&r);
    const char *tok = json_string_value(json_object_get(o, "access_token"));
    if (tok == NULL)
        die("token: no access_token");
    t->token = strdup(tok);
    json_decref(o);
    if (t->token == NULL)
        die("out of memory");
}

/* ------------------------------------------------------------------ records */

static const char *const ACTIONS[] = {"login",  "logout", "view",  "edit",
                                      "delete", "export", "share", "upload"};

/*
 * Writes one record of exactly RECORD_BYTES bytes ('\n' included) at @p out:
 * {"time":MS,"user":...,"app":...,"action":...,"ip":...,"text":"<random>"}.
 * The text is printable ASCII without '"' and '\' (93 symbols, about 6.5
 * bits each), so zstd saves little and JSON needs no escapes.
 */
static void make_record(char *out, int64_t time_ms)
{
    char head[256];
    uint64_t r = rnd();
    int n = snprintf(head, sizeof(head),
                     "{\"time\":%lld,\"user\":\"user-%05u\",\"app\":\"app-%02u\",\"action\":\"%s\","
                     "\"ip\":\"10.%u.%u.%u\",\"text\":\"",
                     (long long)time_ms, (unsigned)(r % 50000), (unsigned)((r >> 20) % 40),
                     ACTIONS[(r >> 30) % 8], (unsigned)((r >> 33) & 255),
                     (unsigned)((r >> 41) & 255), (unsigned)((r >> 49) & 255));
    size_t hl = (size_t)n;
    memcpy(out, head, hl);
    size_t text = RECORD_BYTES - hl - 3; /* "}\n and the closing quote */
    for (size_t i = 0; i < text; i++) {
        char ch = (char)(0x20 + (int)(rnd() % 93)); /* 0x20..0x7c */
        if (ch == '"')
            ch = '}';
        else if (ch == '\\')
            ch = '~';
        out[hl + i] = ch;
    }
    out[RECORD_BYTES - 3] = '"';
    out[RECORD_BYTES - 2] = '}';
    out[RECORD_BYTES - 1] = '\n';
}

/* All bodies of a round: @p nbatches NDJSON bodies of BATCH_RECORDS records. */
static char *make_bodies(size_t nbatches)
{
    size_t total = nbatches * BATCH_RECORDS * RECORD_BYTES;
    char *all = malloc(total);
    if (all == NULL)
        die("out of memory for %zu bytes of records", total);
    int64_t t0 = 1767225600000; /* 2026-01-01T00:00:00Z */
    for (size_t i = 0; i < nbatches * BATCH_RECORDS; i++)
        make_record(all + i * RECORD_BYTES, t0 + (int64_t)i * 7);
    return all;
}

/* ------------------------------------------------------------------ ingest and query */

struct ingest_ctx {
    const char *url; /* .../records */
    const char *auth;
    const char *bodies;
    size_t nbatches;
    atomic_size_t next;
    atomic_size_t accepted;
    atomic_int failed;
};

struct worker {
    struct ingest_ctx *ctx;
    struct atr_http_client *client;
    pthread_t th;
};

static void *ingest_worker(void *arg)
{
    struct worker *w = arg;
    struct ingest_ctx *x = w->ctx;
    struct atr_http_header h[2] = {{"Authorization", x->auth},
                                   {"Content-Type", "application/x-ndjson"}};
    for (;;) {
        size_t i = atomic_fetch_add(&x->next, 1);
        if (i >= x->nbatches || atomic_load(&x->failed))
            break;
        struct atr_span body =
            atr_span_of(x->bodies + i * BATCH_RECORDS * RECORD_BYTES, BATCH_RECORDS * RECORD_BYTES);
        struct atr_http_client_req rq;
        memset(&rq, 0, sizeof(rq));
        rq.method = "POST";
        rq.url = x->url;
        rq.headers = h;
        rq.nheaders = 2;
        rq.body = body;
        struct atr_http_client_resp r;
        struct atr_err err;
        atr_err_clear(&err);
        if (atr_http_client_send(&r, w->client, &rq, &err) != ATR_OK) {
            fprintf(stderr, "bench_service: ingest: %s\n", atr_err_msg(&err));
            atomic_store(&x->failed, 1);
        } else if (r.status != 200) {
            fprintf(stderr, "bench_service: ingest: %u %s\n", r.status, resp_text(&r));
            atomic_store(&x->failed, 1);
        } else {
            json_t *o = json_loadb((const char *)r.body.ptr, r.body.len, 0, NULL);
            json_int_t acc = json_integer_value(json_object_get(o, "accepted"));
            json_decref(o);
            if (acc != BATCH_RECORDS) {
                fprintf(stderr, "bench_service: ingest: accepted %lld of %d: %s\n", (long long)acc,
                        BATCH_RECORDS, resp_text(&r));
                atomic_store(&x->failed, 1);
            }
            atomic_fetch_add(&x->accepted, (size_t)acc);
        }
        atr_http_client_resp_cleanup(&r);
    }
    return NULL;
}

struct result {
    double ingest_rps, ingest_mbps;
    double query_rps, query_mbps;
    size_t records;
};

/* Warms a client's connection (TLS handshake, keep-alive) with GET /healthz. */
static void warm(struct atr_http_client *c, const char *base)
{
    char url[URL_MAX + 16];
    snprintf(url, sizeof(url), "%s/healthz", base);
    struct atr_http_client_resp r;
    http(&r, c, "GET", url, NULL, 0, atr_span_of(NULL, 0));
    if (r.status != 200)
        die("GET %s: %u", url, r.status);
    atr_http_client_resp_cleanup(&r);
}

static struct result run_service(const char *base, const struct tenant *t, const char *bodies,
                                 const struct config *cfg, struct atr_http_client **clients)
{
    struct result res;
    memset(&res, 0, sizeof(res));
    char url[URL_MAX + 128], auth[TOKEN_MAX + 16];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/records", base, t->id);
    snprintf(auth, sizeof(auth), "Bearer %s", t->token);
    for (int i = 0; i < cfg->threads; i++)
        warm(clients[i], base);

    struct ingest_ctx x;
    memset(&x, 0, sizeof(x));
    x.url = url;
    x.auth = auth;
    x.bodies = bodies;
    x.nbatches = cfg->batches;
    atomic_init(&x.next, 0);
    atomic_init(&x.accepted, 0);
    atomic_init(&x.failed, 0);
    struct worker w[MAX_THREADS];
    double t0 = now_s();
    for (int i = 0; i < cfg->threads; i++) {
        w[i].ctx = &x;
        w[i].client = clients[i];
        if (pthread_create(&w[i].th, NULL, ingest_worker, &w[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < cfg->threads; i++)
        pthread_join(w[i].th, NULL);
    double dt = now_s() - t0;
    if (atomic_load(&x.failed))
        die("ingest into %s failed", base);
    size_t n = atomic_load(&x.accepted);
    res.records = n;
    res.ingest_rps = (double)n / dt;
    res.ingest_mbps = (double)n * RECORD_BYTES / dt / 1e6;

    /* read the whole tenant back on one connection, following the cursor */
    struct atr_http_header h[1] = {{"Authorization", auth}};
    char *cursor = NULL;
    size_t got = 0, bytes = 0;
    t0 = now_s();
    for (;;) {
        char qurl[URL_MAX + 512];
        if (cursor == NULL)
            snprintf(qurl, sizeof(qurl), "%s?limit=%d", url, QUERY_LIMIT);
        else
            snprintf(qurl, sizeof(qurl), "%s?limit=%d&cursor=%s", url, QUERY_LIMIT, cursor);
        struct atr_http_client_resp r;
        http(&r, clients[0], "GET", qurl, h, 1, atr_span_of(NULL, 0));
        if (r.status != 200)
            die("query %s: %u %s", qurl, r.status, resp_text(&r));
        for (size_t i = 0; i < r.body.len; i++)
            got += r.body.ptr[i] == '\n';
        bytes += r.body.len;
        free(cursor);
        const char *nc = atr_http_client_resp_header(&r, "X-Next-Cursor");
        cursor = nc != NULL ? strdup(nc) : NULL;
        atr_http_client_resp_cleanup(&r);
        if (cursor == NULL)
            break;
    }
    dt = now_s() - t0;
    if (got != n)
        die("query of %s gave %zu records, want %zu", base, got, n);
    res.query_rps = (double)got / dt;
    res.query_mbps = (double)bytes / dt / 1e6;
    return res;
}

static struct result run_baseline(const struct config *cfg, const char *input, int with_key)
{
    struct result res;
    memset(&res, 0, sizeof(res));
    char db[1100], nrec[32], out[1024];
    snprintf(db, sizeof(db), "%s/baseline.db", g_work);
    snprintf(nrec, sizeof(nrec), "%zu", cfg->batches * BATCH_RECORDS);
    const char *argv[] = {cfg->baseline, "--db",      db,   "--input",
                          input,         "--records", nrec, with_key ? "--key" : "--no-key",
                          NULL};
    if (run_capture(argv, out, sizeof(out)) != 0)
        die("%s failed: %s", cfg->baseline, out);
    double ins = 0, rd = 0;
    unsigned long long recs = 0;
    const char *p = strstr(out, "insert_records_per_s=");
    const char *q = strstr(out, "read_records_per_s=");
    const char *r = strstr(out, "records=");
    if (p == NULL || q == NULL || r == NULL || sscanf(p, "insert_records_per_s=%lf", &ins) != 1 ||
        sscanf(q, "read_records_per_s=%lf", &rd) != 1 || sscanf(r, "records=%llu", &recs) != 1)
        die("cannot parse the baseline's answer: %s", out);
    res.records = (size_t)recs;
    res.ingest_rps = ins;
    res.ingest_mbps = ins * RECORD_BYTES / 1e6;
    res.query_rps = rd;
    res.query_mbps = rd * RECORD_BYTES / 1e6;
    char rm[1200];
    snprintf(rm, sizeof(rm), "%s-wal", db);
    unlink(db);
    unlink(rm);
    snprintf(rm, sizeof(rm), "%s-shm", db);
    unlink(rm);
    return res;
}

enum { SYS_ENC, SYS_ENC_NOZSTD, SYS_PLAIN, SYS_SQLCIPHER, SYS_SQLITE, SYS_N };
static const char *const SYS_NAME[SYS_N] = {
    "atrest serve (zstd + AES-GCM)", "atrest serve, compress=false (AES-GCM)",
    "atrest serve --bench-plaintext", "SQLCipher 3 (PRAGMA key)", "SQLite (same lib, no key)"};

static void bench_ingest(const struct config *cfg, struct idp *I, const char *const *tls,
                         struct atr_http_client *ic)
{
    int have_baseline =
        cfg->baseline != NULL && cfg->baseline[0] != '\0' && access(cfg->baseline, X_OK) == 0;
    if (!have_baseline)
        fprintf(stderr, "bench_service: no SQLCipher baseline program (%s); its rows are skipped\n",
                cfg->baseline != NULL && cfg->baseline[0] ? cfg->baseline : "not built");
    char dir_enc[1100], dir_noz[1100], dir_plain[1100];
    snprintf(dir_enc, sizeof(dir_enc), "%s/enc", g_work);
    snprintf(dir_noz, sizeof(dir_noz), "%s/enc-nozstd", g_work);
    snprintf(dir_plain, sizeof(dir_plain), "%s/plain", g_work);
    const char *a_enc[] = {cfg->atrest, "serve", "--dir", dir_enc, tls[0],   tls[1], tls[2], tls[3],
                           "--idp",     I->url,  "--ca",  I->ca,   "--port", "0",    NULL};
    /* a config file, not ATREST_SERVE_COMPRESS: cmd_serve.c passes the prefix "ATREST_" to
     * atr_config_load_env(), which wants "ATREST", so ATREST_SERVE_* variables are ignored */
    char noz_ini[1100];
    snprintf(noz_ini, sizeof(noz_ini), "%s/nozstd.ini", g_work);
    FILE *ini = fopen(noz_ini, "w");
    if (ini == NULL || fputs("[serve]\ncompress = false\n", ini) < 0 || fclose(ini) != 0)
        die("cannot write %s", noz_ini);
    const char *a_noz[] = {cfg->atrest, "serve", "--dir",    dir_noz, tls[0], tls[1],
                           tls[2],      tls[3],  "--idp",    I->url,  "--ca", I->ca,
                           "--port",    "0",     "--config", noz_ini, NULL};
    const char *a_plain[] = {cfg->atrest, "serve", "--dir",  dir_plain, tls[0],
                             tls[1],      tls[2],  tls[3],   "--idp",   I->url,
                             "--ca",      I->ca,   "--port", "0",       "--bench-plaintext",
                             NULL};
    struct child *srv[3];
    srv[SYS_ENC] = start_server("serve-enc", a_enc, NULL);
    srv[SYS_ENC_NOZSTD] = start_server("serve-enc-nozstd", a_noz, NULL);
    srv[SYS_PLAIN] = start_server("serve-plain", a_plain, NULL);

    fprintf(stderr, "bench_service: generating %zu records (%.1f MB)\n",
            cfg->batches * BATCH_RECORDS,
            (double)(cfg->batches * BATCH_RECORDS * RECORD_BYTES) / 1e6);
    char *bodies = make_bodies(cfg->batches);
    char input[1100];
    snprintf(input, sizeof(input), "%s/records.ndjson", g_work);
    FILE *f = fopen(input, "w");
    if (f == NULL || fwrite(bodies, RECORD_BYTES, cfg->batches * BATCH_RECORDS, f) !=
                         cfg->batches * BATCH_RECORDS)
        die("cannot write %s", input);
    fclose(f);

    struct atr_http_client *clients[MAX_THREADS];
    for (int i = 0; i < cfg->threads; i++)
        clients[i] = client_new(I->ca);

    static const char *const roles[] = {"Records.Write", "Records.Read"};
    struct result res[MAX_ROUNDS][SYS_N];
    memset(res, 0, sizeof(res));
    for (int r = 0; r < cfg->rounds; r++) {
        struct tenant t;
        memset(&t, 0, sizeof(t));
        idp_tenant(&t, I, ic, roles, 2);
        int order[SYS_N];
        int no = 0;
        for (int k = 0; k < SYS_N; k++) {
            int s = (k + r) % SYS_N;
            if ((s == SYS_SQLCIPHER || s == SYS_SQLITE) && !have_baseline)
                continue;
            order[no++] = s;
        }
        for (int k = 0; k < no; k++) {
            int s = order[k];
            char la[64];
            loadavg(la, sizeof(la));
            if (s <= SYS_PLAIN)
                res[r][s] = run_service(srv[s]->url, &t, bodies, cfg, clients);
            else
                res[r][s] = run_baseline(cfg, input, s == SYS_SQLCIPHER);
            fprintf(stderr,
                    "round %d %-40s ingest %8.0f rec/s %6.1f MB/s  query/read %8.0f rec/s "
                    "%6.1f MB/s  (load %s)\n",
                    r + 1, SYS_NAME[s], res[r][s].ingest_rps, res[r][s].ingest_mbps,
                    res[r][s].query_rps, res[r][s].query_mbps, la);
        }
        free(t.token);
    }
    for (int i = 0; i < cfg->threads; i++)
        atr_http_client_free(clients[i]);
    /* on-disk size after the rounds (database and WAL) */
    long long disk[3] = {0, 0, 0};
    const char *dirs[3] = {dir_enc, dir_noz, dir_plain};
    for (int s = 0; s < 3; s++) {
        stop_server(srv[s]);
        const char *sfx[] = {"atrest.db", "atrest.db-wal"};
        for (int k = 0; k < 2; k++) {
            char p[1200];
            struct stat st;
            snprintf(p, sizeof(p), "%s/%s", dirs[s], sfx[k]);
            if (stat(p, &st) == 0)
                disk[s] += (long long)st.st_size;
        }
    }
    free(bodies);
    unlink(input);

    int R = cfg->rounds;
    printf("\n### Ingest and query: %zu records of %d bytes per round, batches of %d, "
           "%d client threads, %d rounds (medians)\n\n",
           cfg->batches * BATCH_RECORDS, RECORD_BYTES, BATCH_RECORDS, cfg->threads, R);
    printf("| system | ingest rec/s | ingest MB/s | query/read rec/s | query/read MB/s |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (int s = 0; s < SYS_N; s++) {
        if ((s == SYS_SQLCIPHER || s == SYS_SQLITE) && !have_baseline)
            continue;
        double a[MAX_ROUNDS], b[MAX_ROUNDS], c[MAX_ROUNDS], d[MAX_ROUNDS];
        for (int r = 0; r < R; r++) {
            a[r] = res[r][s].ingest_rps;
            b[r] = res[r][s].ingest_mbps;
            c[r] = res[r][s].query_rps;
            d[r] = res[r][s].query_mbps;
        }
        printf("| %s | %.0f | %.1f | %.0f | %.1f |\n", SYS_NAME[s], median(a, R), median(b, R),
               median(c, R), median(d, R));
    }
    struct {
        const char *name;
        int num, den;
    } ratios[] = {
        {"encrypted / plaintext", SYS_ENC, SYS_PLAIN},
        {"encrypted, no zstd / plaintext", SYS_ENC_NOZSTD, SYS_PLAIN},
        {"encrypted / encrypted, no zstd (cost of zstd)", SYS_ENC, SYS_ENC_NOZSTD},
        {"encrypted / SQLCipher", SYS_ENC, SYS_SQLCIPHER},
        {"plaintext / SQLite (no key)", SYS_PLAIN, SYS_SQLITE},
        {"SQLCipher / SQLite (cost of SQLCipher's crypto)", SYS_SQLCIPHER, SYS_SQLITE},
    };
    printf("\n| ratio (median of per-round ratios) | ingest | query/read |\n|---|---:|---:|\n");
    for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
        int sq = ratios[i].num >= SYS_SQLCIPHER || ratios[i].den >= SYS_SQLCIPHER;
        if (sq && !have_baseline)
            continue;
        double a[MAX_ROUNDS], b[MAX_ROUNDS];
        for (int r = 0; r < R; r++) {
            a[r] = res[r][ratios[i].num].ingest_rps / res[r][ratios[i].den].ingest_rps;
            b[r] = res[r][ratios[i].num].query_rps / res[r][ratios[i].den].query_rps;
        }
        printf("| %s | %.3f | %.3f |\n", ratios[i].name, median(a, R), median(b, R));
    }
    printf("\nOn disk after all rounds (atrest.db + WAL): encrypted %.1f MB, encrypted without "
           "zstd %.1f MB, plaintext %.1f MB, for %.1f MB of records each.\n",
           (double)disk[0] / 1e6, (double)disk[1] / 1e6, (double)disk[2] / 1e6,
           (double)(cfg->batches * BATCH_RECORDS * RECORD_BYTES) * R / 1e6);
    fflush(stdout);
}

/* ------------------------------------------------------------------ memory per tenant */

struct prov_ctx {
    const struct idp *I;
    struct tenant *t;
    size_t n;
    atomic_size_t next;
    struct atr_http_client *client;
};

static void *prov_worker(void *arg)
{
    struct prov_ctx *p = arg;
    static const char *const roles[] = {"Records.Write"};
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            break;
        idp_tenant(&p->t[i], p->I, p->client, roles, 1);
    }
    return NULL;
}

struct one_ctx {
    const char *base;
    struct tenant *t;
    size_t n;
    atomic_size_t next;
    struct atr_http_client *client;
};

static void write_one(struct atr_http_client *c, const char *base, const struct tenant *t,
                      const char *rec)
{
    char url[URL_MAX + 128], auth[TOKEN_MAX + 16];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/records", base, t->id);
    snprintf(auth, sizeof(auth), "Bearer %s", t->token);
    struct atr_http_header h[2] = {{"Authorization", auth},
                                   {"Content-Type", "application/x-ndjson"}};
    struct atr_http_client_resp r;
    http(&r, c, "POST", url, h, 2, atr_span_of(rec, RECORD_BYTES));
    if (r.status != 200)
        die("write to tenant %s: %u %s", t->id, r.status, resp_text(&r));
    atr_http_client_resp_cleanup(&r);
}

static void *one_worker(void *arg)
{
    struct one_ctx *o = arg;
    char rec[RECORD_BYTES];
    for (;;) {
        size_t i = atomic_fetch_add(&o->next, 1);
        if (i >= o->n)
            break;
        make_record(rec, 1767225600000 + (int64_t)i);
        write_one(o->client, o->base, &o->t[i], rec);
    }
    return NULL;
}

static void write_tenants(const char *base, struct tenant *t, size_t n, const char *ca)
{
    struct one_ctx o[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        o[k].base = base;
        o[k].client = client_new(ca);
    }
    /* two workers share one index: split by halves to keep it simple */
    size_t half = n / 2;
    o[0].t = t;
    o[0].n = half;
    o[1].t = t + half;
    o[1].n = n - half;
    for (int k = 0; k < 2; k++) {
        atomic_init(&o[k].next, 0);
        if (pthread_create(&th[k], NULL, one_worker, &o[k]) != 0)
            die("pthread_create");
    }
    for (int k = 0; k < 2; k++) {
        pthread_join(th[k], NULL);
        atr_http_client_free(o[k].client);
    }
}

static double metric(struct atr_http_client *c, const char *base, const char *name)
{
    char url[URL_MAX + 16];
    snprintf(url, sizeof(url), "%s/metrics", base);
    struct atr_http_client_resp r;
    http(&r, c, "GET", url, NULL, 0, atr_span_of(NULL, 0));
    if (r.status != 200)
        die("GET /metrics: %u", r.status);
    const char *s = resp_text(&r);
    double v = -1;
    size_t nl = strlen(name);
    for (const char *p = s; p != NULL && *p != '\0';) {
        if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '{')) {
            const char *sp = strchr(p, ' ');
            if (sp != NULL) {
                v = (v < 0 ? 0 : v) + strtod(sp + 1, NULL); /* sums label sets */
            }
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    atr_http_client_resp_cleanup(&r);
    return v;
}

static void bench_memory(const struct config *cfg, struct idp *I, const char *const *tls,
                         struct atr_http_client *ic)
{
    (void)ic;
    size_t n = cfg->tenants;
    struct tenant *t = calloc(n + 1, sizeof(*t)); /* t[n] is the warm-up tenant */
    if (t == NULL)
        die("out of memory");
    fprintf(stderr,
            "bench_service: creating %zu directories, principals and tokens in the "
            "identity server\n",
            n + 1);
    double t0 = now_s();
    struct prov_ctx p[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        p[k].I = I;
        p[k].client = client_new(I->ca);
    }
    p[0].t = t;
    p[0].n = (n + 1) / 2;
    p[1].t = t + (n + 1) / 2;
    p[1].n = n + 1 - (n + 1) / 2;
    for (int k = 0; k < 2; k++) {
        atomic_init(&p[k].next, 0);
        if (pthread_create(&th[k], NULL, prov_worker, &p[k]) != 0)
            die("pthread_create");
    }
    for (int k = 0; k < 2; k++) {
        pthread_join(th[k], NULL);
        atr_http_client_free(p[k].client);
    }
    double prov_s = now_s() - t0;
    fprintf(stderr, "bench_service: identity setup took %.1f s (%.2f ms per tenant)\n", prov_s,
            prov_s * 1e3 / (double)(n + 1));

    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/mem", g_work);
    const char *a[] = {cfg->atrest, "serve", "--dir", dir,   tls[0],   tls[1], tls[2], tls[3],
                       "--idp",     I->url,  "--ca",  I->ca, "--port", "0",    NULL};
    struct child *srv = start_server("serve-mem", a, NULL);
    sleep_ms(500 / g_idle_div);
    struct rss fresh = read_rss(srv->pid);
    struct atr_http_client *c = client_new(I->ca);
    char rec[RECORD_BYTES];
    make_record(rec, 1767225600000);
    write_one(c, srv->url, &t[n], rec); /* warm-up: JWKS, TLS, threads, store */
    (void)metric(c, srv->url, "atrest_keyring_entries");
    sleep_ms(1000 / g_idle_div);
    struct rss before = read_rss(srv->pid);
    double ring0 = metric(c, srv->url, "atrest_keyring_entries");
    double sec0 = metric(c, srv->url, "atrest_secure_heap_used_bytes");

    size_t half = n / 2;
    t0 = now_s();
    write_tenants(srv->url, t, half, I->ca);
    double write_s = now_s() - t0;
    sleep_ms(2000 / g_idle_div);
    struct rss mid = read_rss(srv->pid);
    t0 = now_s();
    write_tenants(srv->url, t + half, n - half, I->ca);
    write_s += now_s() - t0;
    sleep_ms(3000 / g_idle_div); /* idle: no request in flight */
    struct rss after = read_rss(srv->pid);
    double ring1 = metric(c, srv->url, "atrest_keyring_entries");
    double sec1 = metric(c, srv->url, "atrest_secure_heap_used_bytes");
    double tenants = metric(c, srv->url, "atrest_tenants");
    atr_http_client_free(c);
    stop_server(srv);

    /* the same store after a restart: tenants exist, none is in the keyring */
    struct child *srv2 = start_server("serve-mem-restart", a, NULL);
    c = client_new(I->ca);
    make_record(rec, 1767225600001);
    write_one(c, srv2->url, &t[n], rec);
    sleep_ms(1000 / g_idle_div);
    struct rss restarted = read_rss(srv2->pid);
    double ring2 = metric(c, srv2->url, "atrest_keyring_entries");
    atr_http_client_free(c);
    stop_server(srv2);

    double per = (double)(after.vm_rss_kb - before.vm_rss_kb) * 1024.0 / (double)n;
    double per_anon = (double)(after.rss_anon_kb - before.rss_anon_kb) * 1024.0 / (double)n;
    double per_second_half =
        (double)(after.vm_rss_kb - mid.vm_rss_kb) * 1024.0 / (double)(n - half);
    printf("\n### Memory per idle tenant: %zu tenants, one record each\n\n", n);
    printf("| point | VmRSS KiB | RssAnon KiB | RssFile KiB | keyring entries |\n");
    printf("|---|---:|---:|---:|---:|\n");
    printf("| fresh server | %ld | %ld | %ld | |\n", fresh.vm_rss_kb, fresh.rss_anon_kb,
           fresh.rss_file_kb);
    printf("| after 1 warm-up write (before) | %ld | %ld | %ld | %.0f |\n", before.vm_rss_kb,
           before.rss_anon_kb, before.rss_file_kb, ring0);
    printf("| after %zu tenants | %ld | %ld | %ld | |\n", half, mid.vm_rss_kb, mid.rss_anon_kb,
           mid.rss_file_kb);
    printf("| after %zu tenants, idle 3 s (after) | %ld | %ld | %ld | %.0f |\n", n, after.vm_rss_kb,
           after.rss_anon_kb, after.rss_file_kb, ring1);
    printf("| restarted on that store, 1 write | %ld | %ld | %ld | %.0f |\n", restarted.vm_rss_kb,
           restarted.rss_anon_kb, restarted.rss_file_kb, ring2);
    printf("\nPer tenant: %.0f bytes of VmRSS ((after - before) / %zu), %.0f bytes of "
           "RssAnon; second half alone %.0f bytes/tenant. Secure heap in use %.0f -> %.0f "
           "bytes (%.1f bytes per keyring entry). atrest_tenants %.0f. Peak VmHWM %ld KiB.\n",
           per, n, per_anon, per_second_half, sec0, sec1,
           ring1 > ring0 ? (sec1 - sec0) / (ring1 - ring0) : 0.0, tenants, after.vm_hwm_kb);
    printf("Setup: identity server %.1f s (directory, principal, role, token: %.2f ms per "
           "tenant); first writes %.1f s (%.0f tenants/s, 2 client threads).\n",
           prov_s, prov_s * 1e3 / (double)(n + 1), write_s, (double)n / write_s);
    fflush(stdout);
    for (size_t i = 0; i <= n; i++)
        free(t[i].token);
    free(t);
}

/* ------------------------------------------------------------------ main */

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: bench_service [--quick] [--rounds N] [--batches N] [--threads N]\n"
            "                     [--tenants N] [--atrest PATH] [--baseline PATH] [--dir DIR]\n"
            "                     [--keep] [--skip-memory] [--skip-ingest]\n");
    exit(2);
}

static long arg_num(const char *s, long lo, long hi)
{
    char *end = NULL;
    long v = strtol(s != NULL ? s : "", &end, 10);
    if (s == NULL || *end != '\0' || v < lo || v > hi)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.rounds = 5;
    cfg.batches = 100;
    cfg.threads = 2;
    cfg.tenants = 10000;
    cfg.atrest = ATR_BENCH_ATREST;
    cfg.baseline = ATR_BENCH_BASELINE;
    int rounds_set = 0, batches_set = 0, tenants_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            cfg.quick = 1;
        } else if (strcmp(a, "--keep") == 0) {
            cfg.keep = 1;
        } else if (strcmp(a, "--skip-memory") == 0) {
            cfg.skip_memory = 1;
        } else if (strcmp(a, "--skip-ingest") == 0) {
            cfg.skip_ingest = 1;
        } else if (strcmp(a, "--rounds") == 0) {
            cfg.rounds = (int)arg_num(v, 1, MAX_ROUNDS);
            rounds_set = 1;
            i++;
        } else if (strcmp(a, "--batches") == 0) {
            cfg.batches = (size_t)arg_num(v, 1, 10000);
            batches_set = 1;
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            cfg.threads = (int)arg_num(v, 1, MAX_THREADS);
            i++;
        } else if (strcmp(a, "--tenants") == 0) {
            cfg.tenants = (size_t)arg_num(v, 2, 1000000);
            tenants_set = 1;
            i++;
        } else if (strcmp(a, "--atrest") == 0 && v != NULL) {
            cfg.atrest = v;
            i++;
        } else if (strcmp(a, "--baseline") == 0 && v != NULL) {
            cfg.baseline = v;
            i++;
        } else if (strcmp(a, "--dir") == 0 && v != NULL) {
            cfg.dir = v;
            i++;
        } else {
            usage();
        }
    }
    if (cfg.quick) {
        if (!rounds_set)
            cfg.rounds = 1;
        if (!batches_set)
            cfg.batches = 3;
        if (!tenants_set)
            cfg.tenants = 20;
    }
    g_keep = cfg.keep;
    if (cfg.quick)
        g_idle_div = 10;
    if (access(cfg.atrest, X_OK) != 0)
        die("the atrest binary %s is not executable (--atrest PATH)", cfg.atrest);

    struct atr_err err;
    atr_err_clear(&err);
    if (atr_secmem_init((size_t)1 << 16, 1, &err) != ATR_OK)
        die("secure heap: %s", atr_err_msg(&err));
    g_rng ^= (uint64_t)time(NULL) * 0x100000001b3ull ^ (uint64_t)getpid();

    if (cfg.dir != NULL) {
        snprintf(g_work, sizeof(g_work), "%s", cfg.dir);
        if (mkdir(g_work, 0700) != 0 && errno != EEXIST)
            die("cannot create %s", g_work);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_work, sizeof(g_work), "%s/atr-svcbench-XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(g_work) == NULL)
            die("mkdtemp: %s", strerror(errno));
    }
    atexit(cleanup);

    char la[64];
    loadavg(la, sizeof(la));
    fprintf(stderr, "bench_service: work dir %s, load average %s\n", g_work, la);

    char tlsdir[1100], cert[1200], key[1200];
    snprintf(tlsdir, sizeof(tlsdir), "%s/tls", g_work);
    snprintf(cert, sizeof(cert), "%s/server.pem", tlsdir);
    snprintf(key, sizeof(key), "%s/server.key", tlsdir);
    const char *cert_argv[] = {cfg.atrest,  "cert",   "--dir",     tlsdir, "--host",
                               "127.0.0.1", "--host", "localhost", NULL};
    run_quiet(cert_argv);
    const char *tls[4] = {"--cert", cert, "--key", key};

    struct idp I;
    memset(&I, 0, sizeof(I));
    snprintf(I.ca, sizeof(I.ca), "%s/ca.pem", tlsdir);
    char idpdir[1100], secret_path[1200];
    snprintf(idpdir, sizeof(idpdir), "%s/idp", g_work);
    snprintf(secret_path, sizeof(secret_path), "%s/admin.secret", idpdir);
    const char *idp_argv[] = {cfg.atrest, "idp",  "serve", "--dir",  idpdir, tls[0],
                              tls[1],     tls[2], tls[3],  "--port", "0",    NULL};
    struct child *idp = start_server("idp", idp_argv, NULL);
    snprintf(I.url, sizeof(I.url), "%s", idp->url);
    I.secret = read_small_file(secret_path);
    if (I.secret == NULL)
        die("cannot read %s", secret_path);
    struct atr_http_client *ic = client_new(I.ca);
    idp_setup(&I, ic);

    printf("## bench_service: %s, load average at start %s\n", cfg.quick ? "QUICK (smoke)" : "full",
           la);
    if (!cfg.skip_ingest)
        bench_ingest(&cfg, &I, tls, ic);
    if (!cfg.skip_memory)
        bench_memory(&cfg, &I, tls, ic);
    loadavg(la, sizeof(la));
    printf("\nLoad average at the end: %s\n", la);

    atr_http_client_free(ic);
    atr_rsa_key_free(I.key);
    free(I.secret);
    stop_server(idp);
    return 0;
}
