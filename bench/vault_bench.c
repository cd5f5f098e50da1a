/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Key vault benchmark (design section 8, issue 4): unwrapKey of
 * `atrest vault serve` over HTTPS on loopback, against raw RSA private-key
 * operations in one process, measured in the same run. See BENCHMARKS.md,
 * "Key vault unwrapkey over HTTPS".
 *
 * Baseline: atr_rsa_unwrap() with RSA-OAEP-256 of a 32-byte value, on one
 * shared key, from --threads threads (default: the online CPUs, which is
 * what the server gets), for --seconds. That is the ceiling for a server
 * whose only work is the RSA operation.
 *
 * The stack is stood up from the atrest binary with its CLI, as the CLI
 * tests do: `atrest cert`, `atrest idp serve --port 0`, a directory, an
 * application and its service principal (`atrest idp directory|app|sp
 * create`), `atrest vault serve --port 0 --idp ... --default-vault benchv`,
 * `atrest vault create benchv --directory TID --limit-ops 1000000`,
 * `atrest vault policy set benchv --object-id SPID --permissions all`, and a
 * token from `atrest idp token`. Through the REST API the bench then creates
 * one RSA key per size and wraps one random 32-byte value with each.
 *
 * Load: one thread drives libcurl's multi interface with N easy handles,
 * so N requests are always in flight on N keep-alive HTTPS connections
 * (HTTP/1.1, no pipelining) and the client costs as little CPU as
 * possible (it shares the machine with the server). Each point has a
 * warm-up (TLS handshakes, first requests) and then a timed window of
 * --seconds; throughput counts the requests completed in the window, and
 * p50/p99 are over their latencies (request added to the multi handle ->
 * response complete). Every response must be 200 with the expected body
 * (the unwrapped value, or a key bundle); any other answer or transport
 * error counts as an error and fails the run. CPU time of the vault
 * process (/proc/PID/stat) and of the bench process (getrusage) is read at
 * the edges of each window, to split where the cycles went.
 *
 * Points: unwrapkey at each of --conns (default 1,4,16,64) for RSA-2048 and
 * RSA-3072, and GET /keys/{name} at --get-conns (default 16). A round is:
 * for each key size, the baseline, the unwrap points, the baseline again;
 * then the get point. The round's baseline is the mean of the two runs that
 * bracket the points (a warning is printed when they differ by > 10 %, the
 * sign of load from another process). --rounds rounds (default 3); the
 * table shows per-point medians, and each ratio (unwrap ops/s over raw RSA
 * ops/s of the same round and key size) is the median of the per-round
 * ratios. Goal: >= 0.7.
 *
 * Usage: bench_vault [--quick] [--seconds S] [--warmup S] [--rounds N]
 *                    [--conns LIST] [--get-conns N] [--threads N]
 *                    [--atrest PATH] [--dir DIR] [--keep]
 * "--quick" is the ctest smoke run (0.3 s per point, 1 and 4 connections,
 * one round): it checks that everything runs and answers 200, never the
 * timings.
 *
 * Every process the bench starts is stopped at exit (SIGTERM with a
 * bounded wait, then SIGKILL), also on failure, and gets SIGKILL from the
 * kernel should the bench itself die (PR_SET_PDEATHSIG).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"
#include "crypto/rand.h"
#include "crypto/rsa.h"
#include "http/client.h"

#ifndef ATR_BENCH_ATREST
#define ATR_BENCH_ATREST ""
#endif

#define MAX_ROUNDS   15
#define MAX_CONNS    8 /* connection-count points */
#define MAX_CONN_N   256
#define MAX_THREADS  64
#define MAX_CHILDREN 4
#define NSIZES       2
#define URL_MAX      512
#define TOKEN_MAX    8192
#define ID_MAX       64
#define PATH_MAX_B   1200
#define DIR_B        1100 /* a folder under the work dir (1024) */
#define VAULT_NAME   "benchv"
#define API          "api-version=7.4"

static const unsigned SIZES[NSIZES] = {2048, 3072};

struct config {
    int quick;
    double seconds;
    double warmup;
    int rounds;
    int conns[MAX_CONNS];
    int nconns;
    int get_conns;
    int threads;
    const char *atrest;
    const char *dir;
    int keep;
};

/* ------------------------------------------------------------------ util */

static char g_work[1024];
static int g_keep;

struct child {
    char name[32];
    pid_t pid;
    char url[URL_MAX];
};
static struct child g_children[MAX_CHILDREN];
static int g_nchildren;

static void kill_children(void)
{
    for (int i = 0; i < g_nchildren; i++) {
        if (g_children[i].pid > 0) {
            kill(g_children[i].pid, SIGKILL);
            (void)waitpid(g_children[i].pid, NULL, 0);
            g_children[i].pid = 0;
        }
    }
}

static void cleanup(void)
{
    kill_children();
    if (g_work[0] != '\0' && !g_keep) {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_work);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_vault: could not remove %s\n", g_work);
        g_work[0] = '\0';
    }
}

static void on_signal(int sig)
{
    /* async-signal-safe: kill() and _exit() only; the work dir stays */
    for (int i = 0; i < g_nchildren; i++) {
        if (g_children[i].pid > 0)
            kill(g_children[i].pid, SIGKILL);
    }
    _exit(128 + sig);
}

_Noreturn static void die(const char *fmt, ...) ATR_PRINTF(1, 2);
_Noreturn static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_vault: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (g_work[0] != '\0')
        fprintf(stderr, "bench_vault: server logs are kept in %s/*.err\n", g_work);
    g_keep = 1;
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

/* The @p q quantile (0..1) of @p v (sorted in place), nearest rank. */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(double), cmp_double);
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static void loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(out, (int)cap, f) != NULL) {
        /* the three averages only */
        char *p = out;
        for (int i = 0; i < 3 && p != NULL; i++) {
            p = strchr(p, ' ');
            if (p != NULL)
                p++;
        }
        if (p != NULL && p > out)
            p[-1] = '\0';
    }
    fclose(f);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("cannot write %s: %s", path, strerror(errno));
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n)
        die("cannot write %s", path);
    close(fd);
}

/* CPU seconds (user + system) used so far by process @p pid. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the ")" of the command: state is field 3; utime 14, stime 15 */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    p += 2;
    unsigned long long ut = 0, st = 0;
    for (int field = 3; field < 14 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    if (p == NULL || sscanf(p, "%llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#define MAX_TASKS 64

/* CPU ticks per thread of @p pid: ids into @p tid, ticks into @p ticks. */
static int task_ticks(pid_t pid, long *tid, unsigned long long *ticks)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    int n = 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < MAX_TASKS) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char sp[320], buf[1024];
        snprintf(sp, sizeof(sp), "/proc/%d/task/%s/stat", (int)pid, de->d_name);
        FILE *f = fopen(sp, "r");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *p = strrchr(buf, ')');
        if (p == NULL)
            continue;
        p += 2;
        for (int field = 3; field < 14 && p != NULL; field++) {
            p = strchr(p, ' ');
            if (p != NULL)
                p++;
        }
        unsigned long long ut = 0, st = 0;
        if (p == NULL || sscanf(p, "%llu %llu", &ut, &st) != 2)
            continue;
        tid[n] = strtol(de->d_name, NULL, 10);
        ticks[n] = ut + st;
        n++;
    }
    closedir(d);
    return n;
}

struct task_snap {
    int n;
    long tid[MAX_TASKS];
    unsigned long long ticks[MAX_TASKS];
};

/* Threads of the vault that used >= 10 % of a core in the window, and the
 * busiest thread's share of a core. */
static void task_spread(const struct task_snap *a, const struct task_snap *b, double window_s,
                        int *busy, double *max_core)
{
    *busy = 0;
    *max_core = 0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    for (int i = 0; i < b->n; i++) {
        unsigned long long before = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i])
                before = a->ticks[j];
        double core = (double)(b->ticks[i] - before) / hz / window_s;
        if (core >= 0.10)
            (*busy)++;
        if (core > *max_core)
            *max_core = core;
    }
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ processes */

static void child_setup(void)
{
    /* the server dies with the bench, whatever kills the bench */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

/* Runs @p argv (argv[0] a path), its stdout into @p out (NUL-terminated);
 * stderr goes to WORK/cli.err. Dies unless it exits 0. */
static void run_capture(const char *const *argv, char *out, size_t cap)
{
    char errp[PATH_MAX_B];
    snprintf(errp, sizeof(errp), "%s/cli.err", g_work);
    int p[2];
    if (pipe(p) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        child_setup();
        int fe = open(errp, O_WRONLY | O_CREAT | O_APPEND, 0600);
        close(p[0]);
        dup2(p[1], 1);
        close(p[1]);
        if (fe >= 0) {
            dup2(fe, 2);
            close(fe);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r = 0;
    char sink[256];
    for (;;) {
        if (n < cap - 1)
            r = read(p[0], out + n, cap - 1 - n);
        else
            r = read(p[0], sink, sizeof(sink)); /* drain what does not fit */
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (n < cap - 1)
            n += (size_t)r;
    }
    out[n] = '\0';
    close(p[0]);
    int st = 0;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char cmd[256] = "";
        for (size_t i = 1; argv[i] != NULL && i < 4; i++) {
            strncat(cmd, " ", sizeof(cmd) - strlen(cmd) - 1);
            strncat(cmd, argv[i], sizeof(cmd) - strlen(cmd) - 1);
        }
        die("atrest%s failed (see %s)", cmd, errp);
    }
}

/* Runs a CLI command that prints one JSON object; returns it. */
static json_t *run_json(const char *const *argv)
{
    char out[16384];
    run_capture(argv, out, sizeof(out));
    json_t *o = json_loads(out, 0, NULL);
    if (o == NULL)
        die("atrest %s %s printed no JSON: %.200s", argv[1], argv[2], out);
    return o;
}

static void copy_str(char *out, size_t cap, json_t *o, const char *key, const char *what)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || strlen(s) >= cap)
        die("%s: no \"%s\" in the answer", what, key);
    memcpy(out, s, strlen(s) + 1);
}

/*
 * Starts a server: argv[0] is the atrest binary; stdout goes to
 * WORK/NAME.out, stderr to WORK/NAME.err; waits up to 20 s for the URL it
 * prints.
 */
static struct child *start_server(const char *name, const char *const *argv)
{
    if (g_nchildren == MAX_CHILDREN)
        die("too many servers");
    struct child *c = &g_children[g_nchildren++];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    char out[PATH_MAX_B], errp[PATH_MAX_B];
    snprintf(out, sizeof(out), "%s/%s.out", g_work, name);
    snprintf(errp, sizeof(errp), "%s/%s.err", g_work, name);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        child_setup();
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fo < 0 || fe < 0)
            _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        close(fo);
        close(fe);
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

/* SIGTERM, up to 10 s for a clean exit, then SIGKILL. */
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
    fprintf(stderr, "bench_vault: %s did not stop within 10 s; killing it\n", c->name);
    kill(c->pid, SIGKILL);
    (void)waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

/* ------------------------------------------------------------------ baseline */

struct raw_ctx {
    const struct atr_rsa_key *key;
    struct atr_span ct;
    pthread_barrier_t start;
    atomic_int stop;
    atomic_int failed;
};

struct raw_thread {
    struct raw_ctx *ctx;
    pthread_t th;
    unsigned long ops;
};

static void *raw_worker(void *arg)
{
    struct raw_thread *t = arg;
    struct raw_ctx *x = t->ctx;
    pthread_barrier_wait(&x->start);
    while (!atomic_load_explicit(&x->stop, memory_order_relaxed)) {
        struct atr_secret s;
        memset(&s, 0, sizeof(s));
        if (atr_rsa_unwrap(&s, x->key, ATR_RSA_OAEP_256, x->ct, NULL) != ATR_OK ||
            atr_secret_len(&s) != 32) {
            atomic_store(&x->failed, 1);
            atr_secret_cleanup(&s);
            break;
        }
        atr_secret_cleanup(&s);
        t->ops++;
    }
    return NULL;
}

/* Raw atr_rsa_unwrap() ops/s from @p threads threads for @p seconds;
 * *cpu_us_per_op the process CPU time per operation (only these threads
 * run in the bench at that time). */
static double raw_rsa(const struct atr_rsa_key *key, struct atr_span ct, int threads,
                      double seconds, double *cpu_us_per_op)
{
    struct raw_ctx x;
    memset(&x, 0, sizeof(x));
    x.key = key;
    x.ct = ct;
    atomic_init(&x.stop, 0);
    atomic_init(&x.failed, 0);
    if (pthread_barrier_init(&x.start, NULL, (unsigned)threads + 1) != 0)
        die("pthread_barrier_init");
    struct raw_thread t[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        t[i].ctx = &x;
        t[i].ops = 0;
        if (pthread_create(&t[i].th, NULL, raw_worker, &t[i]) != 0)
            die("pthread_create");
    }
    pthread_barrier_wait(&x.start);
    double t0 = now_s(), c0 = self_cpu_s();
    sleep_ms((long)(seconds * 1000));
    atomic_store(&x.stop, 1);
    unsigned long ops = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].th, NULL);
        ops += t[i].ops;
    }
    /* each thread finishes the operation it is in: count the time too */
    double el = now_s() - t0, cpu = self_cpu_s() - c0;
    pthread_barrier_destroy(&x.start);
    if (atomic_load(&x.failed) || ops == 0)
        die("atr_rsa_unwrap failed in the baseline");
    *cpu_us_per_op = cpu * 1e6 / (double)ops;
    return (double)ops / el;
}

/* ------------------------------------------------------------------ REST set-up */

static struct atr_http_client *client_new(const char *ca)
{
    struct atr_http_client_opts o;
    memset(&o, 0, sizeof(o));
    o.ca_file = ca;
    o.timeout_ms = 120000;
    o.user_agent = "atrest-bench";
    struct atr_http_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_new(&c, &o, &err) != ATR_OK)
        die("http client: %s", atr_err_msg(&err));
    return c;
}

/* POSTs JSON @p body with the bearer; dies unless 200; returns the answer. */
static json_t *post_json(struct atr_http_client *c, const char *url, const char *auth,
                         const char *body)
{
    struct atr_http_header h[2] = {{"Authorization", auth}, {"Content-Type", "application/json"}};
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = "POST";
    rq.url = url;
    rq.headers = h;
    rq.nheaders = 2;
    rq.body = atr_span_str(body);
    struct atr_http_client_resp r;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_send(&r, c, &rq, &err) != ATR_OK)
        die("POST %s: %s", url, atr_err_msg(&err));
    const char *text = atr_buf_cstr(&r.body);
    if (r.status != 200)
        die("POST %s: %u %s", url, r.status, text != NULL ? text : "");
    json_t *o = json_loadb((const char *)r.body.ptr, r.body.len, 0, NULL);
    atr_http_client_resp_cleanup(&r);
    if (o == NULL)
        die("POST %s: the answer is not JSON", url);
    return o;
}

/* One key under test: its URLs, the wrapped value and the expected answer. */
struct key_under_test {
    unsigned bits;
    char name[32];
    char version[64];
    char plain_b64[64];
    char *unwrap_body; /* {"alg":"RSA-OAEP-256","value":"<wrapped>"} */
    char unwrap_url[URL_MAX + 256];
    char get_url[URL_MAX + 256];
    char expect[96];         /* "value":"<plain_b64>" */
    struct atr_rsa_key *raw; /* the baseline's own key of the same size */
    uint8_t raw_ct[1024];
    size_t raw_ctlen;
};

static void make_key(struct key_under_test *k, struct atr_http_client *c, const char *base,
                     const char *auth, unsigned bits)
{
    memset(k, 0, sizeof(*k));
    k->bits = bits;
    snprintf(k->name, sizeof(k->name), "bench-rsa%u", bits);
    char url[URL_MAX + 256], body[256];
    snprintf(url, sizeof(url), "%s/keys/%s/create?" API, base, k->name);
    snprintf(body, sizeof(body), "{\"kty\":\"RSA\",\"key_size\":%u}", bits);
    json_t *o = post_json(c, url, auth, body);
    const char *kid = json_string_value(json_object_get(json_object_get(o, "key"), "kid"));
    const char *slash = kid != NULL ? strrchr(kid, '/') : NULL;
    if (slash == NULL || strlen(slash + 1) == 0 || strlen(slash + 1) >= sizeof(k->version))
        die("key create: no kid in the answer");
    snprintf(k->version, sizeof(k->version), "%s", slash + 1);
    json_decref(o);

    uint8_t plain[32];
    if (atr_rand_bytes(plain, sizeof(plain), NULL) != ATR_OK)
        die("random bytes");
    char *b64 = NULL;
    if (atr_b64url_encode_str(&b64, atr_span_of(plain, sizeof(plain))) != ATR_OK)
        die("base64");
    snprintf(k->plain_b64, sizeof(k->plain_b64), "%s", b64);
    atr_free(b64);
    snprintf(url, sizeof(url), "%s/keys/%s/%s/wrapkey?" API, base, k->name, k->version);
    snprintf(body, sizeof(body), "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%s\"}", k->plain_b64);
    o = post_json(c, url, auth, body);
    const char *wrapped = json_string_value(json_object_get(o, "value"));
    if (wrapped == NULL)
        die("wrapkey: no value in the answer");
    json_t *ub = json_pack("{s:s,s:s}", "alg", "RSA-OAEP-256", "value", wrapped);
    k->unwrap_body = json_dumps(ub, JSON_COMPACT);
    json_decref(ub);
    json_decref(o);
    if (k->unwrap_body == NULL)
        die("out of memory");
    /* from local copies: gcc's -Wrestrict cannot tell the members apart */
    char kname[sizeof(k->name)], kver[sizeof(k->version)], kplain[sizeof(k->plain_b64)];
    memcpy(kname, k->name, sizeof(kname));
    memcpy(kver, k->version, sizeof(kver));
    memcpy(kplain, k->plain_b64, sizeof(kplain));
    snprintf(k->unwrap_url, sizeof(k->unwrap_url), "%s/keys/%s/%s/unwrapkey?" API, base, kname,
             kver);
    snprintf(k->get_url, sizeof(k->get_url), "%s/keys/%s?" API, base, kname);
    snprintf(k->expect, sizeof(k->expect), "\"value\":\"%s\"", kplain);

    /* one round trip by hand: the answer must hold the value we wrapped */
    o = post_json(c, k->unwrap_url, auth, k->unwrap_body);
    const char *back = json_string_value(json_object_get(o, "value"));
    if (back == NULL || strcmp(back, k->plain_b64) != 0)
        die("unwrapkey gave back another value");
    json_decref(o);

    /* the baseline's key: same size, generated here, same 32-byte value */
    struct atr_buf w;
    atr_buf_init(&w, sizeof(k->raw_ct));
    if (atr_rsa_key_generate(&k->raw, bits, NULL) != ATR_OK ||
        atr_rsa_wrap(&w, k->raw, ATR_RSA_OAEP_256, atr_span_of(plain, sizeof(plain)), NULL) !=
            ATR_OK ||
        w.len > sizeof(k->raw_ct))
        die("baseline key");
    memcpy(k->raw_ct, w.ptr, w.len);
    k->raw_ctlen = w.len;
    atr_buf_cleanup(&w);
}

/* ------------------------------------------------------------------ load (curl multi) */

struct conn {
    CURL *e;
    char *buf;
    size_t len, cap;
    double started;
};

struct load_spec {
    const char *url;
    const char *body;   /* NULL = GET */
    const char *expect; /* substring every 200 body must hold */
    const char *ca;
    struct curl_slist *headers;
    int nconns;
    double warmup, seconds;
    pid_t server;
};

struct point {
    double ops; /* per second, completed in the window */
    double p50_ms, p99_ms;
    double server_cpu_us; /* vault CPU per request */
    double client_cpu_us; /* bench CPU per request */
    double server_cores;  /* vault CPU seconds per wall second */
    unsigned long done;   /* requests in the window */
    unsigned long total;  /* every completed request, warm-up and drain included */
    unsigned long errors;
    int busy_threads;  /* vault threads at >= 10 % of a core in the window */
    double max_thread; /* the busiest vault thread, in cores */
    long new_conns;    /* connections opened during the window (0 = keep-alive held) */
    char first_error[256];
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct conn *c = ud;
    size_t len = size * n;
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap * 2 > c->len + len + 1 ? c->cap * 2 : c->len + len + 1;
        if (cap > ((size_t)1 << 20))
            return 0; /* abort: far bigger than any answer here */
        char *nb = realloc(c->buf, cap);
        if (nb == NULL)
            return 0;
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, p, len);
    c->len += len;
    c->buf[c->len] = '\0';
    return len;
}

static void conn_start(CURLM *m, struct conn *c)
{
    c->len = 0;
    if (c->buf != NULL)
        c->buf[0] = '\0';
    c->started = now_s();
    if (curl_multi_add_handle(m, c->e) != CURLM_OK)
        die("curl_multi_add_handle");
}

static void note_error(struct point *pt, const char *fmt, ...) ATR_PRINTF(2, 3);
static void note_error(struct point *pt, const char *fmt, ...)
{
    pt->errors++;
    if (pt->first_error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pt->first_error, sizeof(pt->first_error), fmt, ap);
    va_end(ap);
}

static struct point run_load(const struct load_spec *ls)
{
    struct point pt;
    memset(&pt, 0, sizeof(pt));
    CURLM *m = curl_multi_init();
    if (m == NULL)
        die("curl_multi_init");
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)ls->nconns);
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    struct conn *cs = calloc((size_t)ls->nconns, sizeof(*cs));
    if (cs == NULL)
        die("out of memory");
    for (int i = 0; i < ls->nconns; i++) {
        struct conn *c = &cs[i];
        c->cap = 4096;
        c->buf = malloc(c->cap);
        c->e = curl_easy_init();
        if (c->buf == NULL || c->e == NULL)
            die("out of memory");
        curl_easy_setopt(c->e, CURLOPT_URL, ls->url);
        curl_easy_setopt(c->e, CURLOPT_CAINFO, ls->ca);
        curl_easy_setopt(c->e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, ls->headers);
        curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c->e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->e, CURLOPT_TIMEOUT_MS, 60000L);
        curl_easy_setopt(c->e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(c->e, CURLOPT_USERAGENT, "atrest-bench");
        if (ls->body != NULL) {
            curl_easy_setopt(c->e, CURLOPT_POST, 1L);
            curl_easy_setopt(c->e, CURLOPT_POSTFIELDS, ls->body);
            curl_easy_setopt(c->e, CURLOPT_POSTFIELDSIZE, (long)strlen(ls->body));
        }
    }

    size_t lat_cap = 1 << 16, nlat = 0;
    double *lat = malloc(lat_cap * sizeof(double));
    if (lat == NULL)
        die("out of memory");
    double t_begin = now_s();
    double t_w0 = t_begin + ls->warmup, t_w1 = t_w0 + ls->seconds;
    double win_start = 0, win_end = 0, srv0 = 0, srv1 = 0, cli0 = 0, cli1 = 0;
    struct task_snap ts0, ts1;
    memset(&ts0, 0, sizeof(ts0));
    memset(&ts1, 0, sizeof(ts1));
    int phase = 0; /* 0 warm-up, 1 window, 2 drain */
    int running = 0;
    for (int i = 0; i < ls->nconns; i++)
        conn_start(m, &cs[i]);
    double drain_limit = 0;
    for (;;) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            die("curl_multi_perform");
        double t = now_s();
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode res = msg->data.result;
            char *priv = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            struct conn *c = (struct conn *)(void *)priv;
            long status = 0, nconn = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nconn);
            curl_multi_remove_handle(m, e);
            pt.total++;
            if (res != CURLE_OK)
                note_error(&pt, "transport: %s", curl_easy_strerror(res));
            else if (status != 200)
                note_error(&pt, "status %ld: %.200s", status, c->buf);
            else if (ls->expect != NULL && strstr(c->buf, ls->expect) == NULL)
                note_error(&pt, "200 without the expected body: %.200s", c->buf);
            if (phase == 1) {
                pt.done++;
                pt.new_conns += nconn;
                if (nlat == lat_cap) {
                    lat_cap *= 2;
                    double *nl = realloc(lat, lat_cap * sizeof(double));
                    if (nl == NULL)
                        die("out of memory");
                    lat = nl;
                }
                lat[nlat++] = (t - c->started) * 1e3;
            }
            if (phase < 2)
                conn_start(m, c);
        }
        if (phase == 0 && t >= t_w0) {
            phase = 1;
            win_start = t;
            srv0 = proc_cpu_s(ls->server);
            cli0 = self_cpu_s();
            ts0.n = task_ticks(ls->server, ts0.tid, ts0.ticks);
        } else if (phase == 1 && t >= t_w1) {
            phase = 2;
            win_end = t;
            srv1 = proc_cpu_s(ls->server);
            cli1 = self_cpu_s();
            ts1.n = task_ticks(ls->server, ts1.tid, ts1.ticks);
            drain_limit = t + 30.0;
        }
        if (phase == 2 && running == 0)
            break;
        if (phase == 2 && t > drain_limit) {
            note_error(&pt, "requests still open 30 s after the window");
            break;
        }
        double until = phase == 0 ? t_w0 - t : phase == 1 ? t_w1 - t : 0.1;
        int timeout_ms = (int)(until * 1000) + 1;
        if (timeout_ms > 100)
            timeout_ms = 100;
        if (timeout_ms < 1)
            timeout_ms = 1;
        if (curl_multi_poll(m, NULL, 0, timeout_ms, NULL) != CURLM_OK)
            die("curl_multi_poll");
    }
    for (int i = 0; i < ls->nconns; i++) {
        curl_multi_remove_handle(m, cs[i].e);
        curl_easy_cleanup(cs[i].e);
        free(cs[i].buf);
    }
    free(cs);
    curl_multi_cleanup(m);

    double win = win_end - win_start;
    pt.ops = win > 0 ? (double)pt.done / win : 0;
    pt.p50_ms = quantile(lat, nlat, 0.50);
    pt.p99_ms = quantile(lat, nlat, 0.99);
    free(lat);
    if (pt.done > 0) {
        pt.server_cpu_us = (srv1 - srv0) * 1e6 / (double)pt.done;
        pt.client_cpu_us = (cli1 - cli0) * 1e6 / (double)pt.done;
    }
    pt.server_cores = win > 0 ? (srv1 - srv0) / win : 0;
    if (win > 0)
        task_spread(&ts0, &ts1, win, &pt.busy_threads, &pt.max_thread);
    return pt;
}

/* ------------------------------------------------------------------ main */

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: bench_vault [--quick] [--seconds S] [--warmup S] [--rounds N]\n"
                    "                   [--conns N,N,...] [--get-conns N] [--threads N]\n"
                    "                   [--atrest PATH] [--dir DIR] [--keep]\n");
    exit(2);
}

static double arg_num(const char *s, double lo, double hi)
{
    char *end = NULL;
    double v = strtod(s != NULL ? s : "", &end);
    if (s == NULL || end == s || *end != '\0' || !(v >= lo && v <= hi))
        usage();
    return v;
}

static void parse_conns(struct config *cfg, const char *s)
{
    if (s == NULL)
        usage();
    cfg->nconns = 0;
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", s);
    for (char *save = NULL, *tok = strtok_r(tmp, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (cfg->nconns == MAX_CONNS)
            usage();
        cfg->conns[cfg->nconns++] = (int)arg_num(tok, 1, MAX_CONN_N);
    }
    if (cfg->nconns == 0)
        usage();
}

/* The atrest binary: --atrest, the build's own (compile time), or ../atrest
 * next to this program's directory (build/bench/bench_vault -> build/atrest). */
static const char *find_atrest(const char *given, char *buf, size_t cap)
{
    if (given != NULL)
        return given;
    if (ATR_BENCH_ATREST[0] != '\0' && access(ATR_BENCH_ATREST, X_OK) == 0)
        return ATR_BENCH_ATREST;
    ssize_t n = readlink("/proc/self/exe", buf, cap - 16);
    if (n > 0) {
        buf[n] = '\0';
        char *s = strrchr(buf, '/');
        if (s != NULL) {
            strcpy(s, "/../atrest");
            if (access(buf, X_OK) == 0)
                return buf;
        }
    }
    return "atrest";
}

int main(int argc, char **argv)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.seconds = 3.0;
    cfg.warmup = 0.5;
    cfg.rounds = 3;
    cfg.get_conns = 16;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.threads = ncpu > 0 && ncpu <= MAX_THREADS ? (int)ncpu : 2;
    const char *atrest_arg = NULL;
    int seconds_set = 0, rounds_set = 0, conns_set = 0, warm_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            cfg.quick = 1;
        } else if (strcmp(a, "--keep") == 0) {
            cfg.keep = 1;
        } else if (strcmp(a, "--seconds") == 0) {
            cfg.seconds = arg_num(v, 0.05, 600);
            seconds_set = 1;
            i++;
        } else if (strcmp(a, "--warmup") == 0) {
            cfg.warmup = arg_num(v, 0.0, 60);
            warm_set = 1;
            i++;
        } else if (strcmp(a, "--rounds") == 0) {
            cfg.rounds = (int)arg_num(v, 1, MAX_ROUNDS);
            rounds_set = 1;
            i++;
        } else if (strcmp(a, "--conns") == 0) {
            parse_conns(&cfg, v);
            conns_set = 1;
            i++;
        } else if (strcmp(a, "--get-conns") == 0) {
            cfg.get_conns = (int)arg_num(v, 0, MAX_CONN_N); /* 0 = skip */
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            cfg.threads = (int)arg_num(v, 1, MAX_THREADS);
            i++;
        } else if (strcmp(a, "--atrest") == 0 && v != NULL) {
            atrest_arg = v;
            i++;
        } else if (strcmp(a, "--dir") == 0 && v != NULL) {
            cfg.dir = v;
            i++;
        } else {
            usage();
        }
    }
    if (!conns_set) {
        static const int def[] = {1, 4, 16, 64}, quick[] = {1, 4};
        const int *src = cfg.quick ? quick : def;
        cfg.nconns = cfg.quick ? 2 : 4;
        memcpy(cfg.conns, src, (size_t)cfg.nconns * sizeof(int));
    }
    if (cfg.quick) {
        if (!seconds_set)
            cfg.seconds = 0.3;
        if (!warm_set)
            cfg.warmup = 0.1;
        if (!rounds_set)
            cfg.rounds = 1;
    }
    char exe[PATH_MAX_B];
    cfg.atrest = find_atrest(atrest_arg, exe, sizeof(exe));
    g_keep = cfg.keep;
    if (access(cfg.atrest, X_OK) != 0)
        die("the atrest binary %s is not executable (--atrest PATH)", cfg.atrest);

    struct atr_err err;
    atr_err_clear(&err);
    /* as the atrest binary: a 1 MiB secure heap (RSA private parts live there) */
    if (atr_secmem_init((size_t)1 << 20, 1, &err) != ATR_OK)
        die("secure heap: %s", atr_err_msg(&err));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("curl_global_init");

    if (cfg.dir != NULL) {
        snprintf(g_work, sizeof(g_work), "%s", cfg.dir);
        if (mkdir(g_work, 0700) != 0 && errno != EEXIST)
            die("cannot create %s", g_work);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_work, sizeof(g_work), "%s/atr-vaultbench-XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(g_work) == NULL)
            die("mkdtemp: %s", strerror(errno));
    }
    atexit(cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);

    char la_start[64];
    loadavg(la_start, sizeof(la_start));
    fprintf(stderr, "bench_vault: atrest %s, work dir %s, load average %s\n", cfg.atrest, g_work,
            la_start);

    /* ---- the stack, through the CLI */
    char tlsdir[DIR_B], cert[PATH_MAX_B], key[PATH_MAX_B], ca[PATH_MAX_B];
    snprintf(tlsdir, sizeof(tlsdir), "%s/tls", g_work);
    snprintf(cert, sizeof(cert), "%s/server.pem", tlsdir);
    snprintf(key, sizeof(key), "%s/server.key", tlsdir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", tlsdir);
    char sink[4096];
    const char *cert_argv[] = {cfg.atrest,  "cert",   "--dir",     tlsdir, "--host",
                               "127.0.0.1", "--host", "localhost", NULL};
    run_capture(cert_argv, sink, sizeof(sink));

    char idpdir[DIR_B], idp_secret[PATH_MAX_B];
    snprintf(idpdir, sizeof(idpdir), "%s/idp", g_work);
    snprintf(idp_secret, sizeof(idp_secret), "%s/admin.secret", idpdir);
    const char *idp_argv[] = {cfg.atrest, "idp",   "serve", "--dir",  idpdir, "--cert",
                              cert,       "--key", key,     "--port", "0",    NULL};
    struct child *idp = start_server("idp", idp_argv);
    const char *iu = idp->url;

    char tid[ID_MAX], appid[ID_MAX], spid[ID_MAX], app_secret_file[PATH_MAX_B];
    const char *dir_argv[] = {
        cfg.atrest, "idp",    "directory", "create", "--url", iu, "--ca", ca, "--admin-secret-file",
        idp_secret, "--name", "Bench",     NULL};
    json_t *o = run_json(dir_argv);
    copy_str(tid, sizeof(tid), o, "id", "idp directory create");
    json_decref(o);
    const char *app_argv[] = {
        cfg.atrest, "idp",      "app", "create", "--url", iu,  "--ca", ca, "--admin-secret-file",
        idp_secret, "--tenant", tid,   "--name", "bench", NULL};
    o = run_json(app_argv);
    copy_str(appid, sizeof(appid), o, "appId", "idp app create");
    snprintf(app_secret_file, sizeof(app_secret_file), "%s/app.secret", g_work);
    const char *app_secret = json_string_value(json_object_get(o, "secret"));
    if (app_secret == NULL)
        die("idp app create: no secret");
    write_file(app_secret_file, app_secret);
    json_decref(o);
    const char *sp_argv[] = {
        cfg.atrest, "idp",      "sp", "create",   "--url", iu,  "--ca", ca, "--admin-secret-file",
        idp_secret, "--tenant", tid,  "--app-id", appid,   NULL};
    o = run_json(sp_argv);
    copy_str(spid, sizeof(spid), o, "id", "idp sp create");
    json_decref(o);

    char vaultdir[DIR_B], vault_secret[PATH_MAX_B];
    snprintf(vaultdir, sizeof(vaultdir), "%s/vault", g_work);
    snprintf(vault_secret, sizeof(vault_secret), "%s/admin.secret", vaultdir);
    const char *vault_argv[] = {
        cfg.atrest, "vault", "serve", "--dir",           vaultdir,   "--cert",
        cert,       "--key", key,     "--port",          "0",        "--idp",
        iu,         "--ca",  ca,      "--default-vault", VAULT_NAME, NULL};
    struct child *vault = start_server("vault", vault_argv);
    const char *vu = vault->url;
    fprintf(stderr, "bench_vault: vault %s (pid %d), identity server %s (pid %d)\n", vu,
            (int)vault->pid, iu, (int)idp->pid);
    const char *vc_argv[] = {cfg.atrest,
                             "vault",
                             "create",
                             VAULT_NAME,
                             "--directory",
                             tid,
                             "--limit-ops",
                             "1000000",
                             "--url",
                             vu,
                             "--ca",
                             ca,
                             "--admin-secret-file",
                             vault_secret,
                             NULL};
    run_capture(vc_argv, sink, sizeof(sink));
    const char *vp_argv[] = {cfg.atrest,   "vault",
                             "policy",     "set",
                             VAULT_NAME,   "--object-id",
                             spid,         "--permissions",
                             "all",        "--url",
                             vu,           "--ca",
                             ca,           "--admin-secret-file",
                             vault_secret, NULL};
    run_capture(vp_argv, sink, sizeof(sink));
    char token[TOKEN_MAX];
    const char *tok_argv[] = {
        cfg.atrest,    "idp", "token",         "--url",         iu,  "--ca", ca, "--tenant", tid,
        "--client-id", appid, "--secret-file", app_secret_file, NULL};
    run_capture(tok_argv, token, sizeof(token));
    token[strcspn(token, "\r\n")] = '\0';
    if (strlen(token) < 32)
        die("atrest idp token printed no token");
    char auth[TOKEN_MAX + 32];
    snprintf(auth, sizeof(auth), "Bearer %s", token);
    char auth_hdr[TOKEN_MAX + 64];
    snprintf(auth_hdr, sizeof(auth_hdr), "Authorization: %s", auth);

    struct atr_http_client *hc = client_new(ca);
    struct key_under_test keys[NSIZES];
    for (int k = 0; k < NSIZES; k++)
        make_key(&keys[k], hc, vu, auth, SIZES[k]);
    atr_http_client_free(hc);

    struct curl_slist *post_h = NULL, *get_h = NULL;
    post_h = curl_slist_append(post_h, auth_hdr);
    post_h = curl_slist_append(post_h, "Content-Type: application/json");
    post_h = curl_slist_append(post_h, "Expect:");
    get_h = curl_slist_append(get_h, auth_hdr);
    if (post_h == NULL || get_h == NULL)
        die("out of memory");

    /* ---- measurement */
    printf("## bench_vault: %s, %d round(s), %.2f s per point (+%.2f s warm-up), "
           "baseline %d thread(s), load average at start %s\n",
           cfg.quick ? "QUICK (smoke)" : "full", cfg.rounds, cfg.seconds, cfg.warmup, cfg.threads,
           la_start);
    fflush(stdout);
    /* raw: mean of the baseline before and after the HTTPS points of a size */
    double raw[NSIZES][MAX_ROUNDS], raw_before[NSIZES][MAX_ROUNDS], raw_cpu[NSIZES][MAX_ROUNDS];
    int disturbed = 0;
    struct point up[NSIZES][MAX_CONNS][MAX_ROUNDS];
    struct point gp[MAX_ROUNDS];
    memset(gp, 0, sizeof(gp));
    unsigned long errors = 0, requests = 0;
    char first_error[300] = "";
    double t_all = now_s();
    for (int r = 0; r < cfg.rounds; r++) {
        for (int k = 0; k < NSIZES; k++) {
            struct key_under_test *K = &keys[k];
            raw_before[k][r] = raw_rsa(K->raw, atr_span_of(K->raw_ct, K->raw_ctlen), cfg.threads,
                                       cfg.seconds, &raw_cpu[k][r]);
            fprintf(stderr, "bench_vault: round %d RSA-%u raw %.0f ops/s, %.0f us CPU/op\n", r + 1,
                    K->bits, raw_before[k][r], raw_cpu[k][r]);
            for (int c = 0; c < cfg.nconns; c++) {
                struct load_spec ls = {K->unwrap_url, K->unwrap_body, K->expect,  ca,
                                       post_h,        cfg.conns[c],   cfg.warmup, cfg.seconds,
                                       vault->pid};
                struct point *p = &up[k][c][r];
                *p = run_load(&ls);
                errors += p->errors;
                requests += p->total;
                if (p->errors > 0 && first_error[0] == '\0')
                    snprintf(first_error, sizeof(first_error), "%s", p->first_error);
                fprintf(stderr,
                        "bench_vault: round %d RSA-%u unwrap %3d conns: %7.0f ops/s p50 %.2f ms "
                        "p99 %.2f ms, vault %.2f cores (%d threads busy, top %.2f), %.0f us "
                        "vault + %.0f us bench CPU/req, %lu errors\n",
                        r + 1, K->bits, cfg.conns[c], p->ops, p->p50_ms, p->p99_ms, p->server_cores,
                        p->busy_threads, p->max_thread, p->server_cpu_us, p->client_cpu_us,
                        p->errors);
            }
            /* the baseline again: its mean brackets the HTTPS points in time */
            double cpu_after = 0;
            double after = raw_rsa(K->raw, atr_span_of(K->raw_ct, K->raw_ctlen), cfg.threads,
                                   cfg.seconds, &cpu_after);
            fprintf(stderr, "bench_vault: round %d RSA-%u raw %.0f ops/s, %.0f us CPU/op (after)\n",
                    r + 1, K->bits, after, cpu_after);
            raw[k][r] = (raw_before[k][r] + after) / 2;
            raw_cpu[k][r] = (raw_cpu[k][r] + cpu_after) / 2;
            double hi = after > raw_before[k][r] ? after : raw_before[k][r];
            double lo = after > raw_before[k][r] ? raw_before[k][r] : after;
            if (hi > 0 && (hi - lo) / hi > 0.10) {
                disturbed++;
                fprintf(stderr,
                        "bench_vault: round %d RSA-%u: the baseline moved %.0f%% between "
                        "before and after (load from another process?)\n",
                        r + 1, K->bits, (hi - lo) * 100 / hi);
            }
        }
        if (cfg.get_conns > 0) {
            struct load_spec ls = {keys[0].get_url, NULL,       "\"kid\"",   ca,        get_h,
                                   cfg.get_conns,   cfg.warmup, cfg.seconds, vault->pid};
            gp[r] = run_load(&ls);
            errors += gp[r].errors;
            requests += gp[r].total;
            if (gp[r].errors > 0 && first_error[0] == '\0')
                snprintf(first_error, sizeof(first_error), "%s", gp[r].first_error);
            fprintf(stderr,
                    "bench_vault: round %d get key %3d conns: %7.0f ops/s p50 %.2f ms p99 %.2f "
                    "ms, vault %.2f cores (%d threads busy), %.0f us vault + %.0f us bench "
                    "CPU/req\n",
                    r + 1, cfg.get_conns, gp[r].ops, gp[r].p50_ms, gp[r].p99_ms, gp[r].server_cores,
                    gp[r].busy_threads, gp[r].server_cpu_us, gp[r].client_cpu_us);
        }
    }
    double elapsed = now_s() - t_all;

    /* ---- report */
    int R = cfg.rounds;
    double v[MAX_ROUNDS];
    printf("\n| operation | key | conns | ops/s | p50 ms | p99 ms | vault cores (threads busy) | "
           "vault CPU µs/op | bench CPU µs/op | ratio to raw RSA |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    double best_ratio[NSIZES];
    for (int k = 0; k < NSIZES; k++) {
        for (int r = 0; r < R; r++)
            v[r] = raw[k][r];
        double raw_med = median(v, R);
        for (int r = 0; r < R; r++)
            v[r] = raw_cpu[k][r];
        printf("| raw atr_rsa_unwrap, %d threads (baseline) | RSA-%u | | %.0f | | | | %.0f | | "
               "1 |\n",
               cfg.threads, SIZES[k], raw_med, median(v, R));
        best_ratio[k] = 0;
        for (int c = 0; c < cfg.nconns; c++) {
            double ops[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], scpu[MAX_ROUNDS],
                ccpu[MAX_ROUNDS], ratio[MAX_ROUNDS], cores[MAX_ROUNDS], busy[MAX_ROUNDS];
            for (int r = 0; r < R; r++) {
                const struct point *p = &up[k][c][r];
                ops[r] = p->ops;
                p50[r] = p->p50_ms;
                p99[r] = p->p99_ms;
                scpu[r] = p->server_cpu_us;
                ccpu[r] = p->client_cpu_us;
                cores[r] = p->server_cores;
                busy[r] = p->busy_threads;
                ratio[r] = raw[k][r] > 0 ? p->ops / raw[k][r] : 0;
            }
            double rm = median(ratio, R);
            if (rm > best_ratio[k])
                best_ratio[k] = rm;
            printf("| unwrapkey over HTTPS | RSA-%u | %d | %.0f | %.2f | %.2f | %.2f (%.0f) | %.0f "
                   "| %.0f | %.3f |\n",
                   SIZES[k], cfg.conns[c], median(ops, R), median(p50, R), median(p99, R),
                   median(cores, R), median(busy, R), median(scpu, R), median(ccpu, R), rm);
        }
    }
    if (cfg.get_conns > 0) {
        double ops[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], scpu[MAX_ROUNDS],
            ccpu[MAX_ROUNDS], cores[MAX_ROUNDS], busy[MAX_ROUNDS];
        for (int r = 0; r < R; r++) {
            ops[r] = gp[r].ops;
            p50[r] = gp[r].p50_ms;
            p99[r] = gp[r].p99_ms;
            scpu[r] = gp[r].server_cpu_us;
            ccpu[r] = gp[r].client_cpu_us;
            cores[r] = gp[r].server_cores;
            busy[r] = gp[r].busy_threads;
        }
        printf("| get key over HTTPS | RSA-2048 | %d | %.0f | %.2f | %.2f | %.2f (%.0f) | %.0f | "
               "%.0f | |\n",
               cfg.get_conns, median(ops, R), median(p50, R), median(p99, R), median(cores, R),
               median(busy, R), median(scpu, R), median(ccpu, R));
    }
    printf("\nGoal: unwrap over HTTPS / raw RSA >= 0.7. Best ratio: ");
    for (int k = 0; k < NSIZES; k++)
        printf("%sRSA-%u %.3f (%s)", k ? ", " : "", SIZES[k], best_ratio[k],
               best_ratio[k] >= 0.7 ? "meets the goal" : "below the goal");
    printf(".\n");
    long new_conns = 0;
    for (int k = 0; k < NSIZES; k++)
        for (int c = 0; c < cfg.nconns; c++)
            for (int r = 0; r < R; r++)
                new_conns += up[k][c][r].new_conns;
    char la_end[64];
    loadavg(la_end, sizeof(la_end));
    if (disturbed > 0)
        printf("WARNING: in %d (round, key size) pair(s) the baseline before and after the "
               "HTTPS points differed by more than 10 %%: another process loaded the machine; "
               "rerun when it is quiet.\n",
               disturbed);
    printf("%lu requests in %.1f s, %lu errors; %ld connections opened inside timed windows "
           "(0 = keep-alive held); load average at the end %s.\n",
           requests, elapsed, errors, new_conns, la_end);
    fflush(stdout);

    /* ---- tear down */
    curl_slist_free_all(post_h);
    curl_slist_free_all(get_h);
    for (int k = 0; k < NSIZES; k++) {
        free(keys[k].unwrap_body);
        atr_rsa_key_free(keys[k].raw);
    }
    stop_server(vault);
    stop_server(idp);
    curl_global_cleanup();
    if (errors > 0) {
        fprintf(stderr, "bench_vault: %lu of %lu requests failed; first: %s\n", errors, requests,
                first_error);
        g_keep = 1;
        fprintf(stderr, "bench_vault: server logs are kept in %s/*.err\n", g_work);
        return 1;
    }
    return 0;
}
