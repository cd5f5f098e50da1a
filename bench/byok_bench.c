/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Customer-key (bring your own key) lifecycle benchmark: enable, roll and
 * disable for N tenants, vault calls per GB ingested, and the time from a
 * revocation to the lockdown and from the restore to full access. See
 * BENCHMARKS.md, "Customer keys: enable, roll, disable, lockdown".
 *
 * Everything runs in this process on loopback TLS, as `atrest dev` does: the
 * identity server, the key vault (test mode) and the data services, each on
 * its own HTTPS server (http/server.h) with a certificate from a local CA
 * that also covers "*.vault.azure.net". The bench talks to all of them
 * through their REST APIs, like any client.
 *
 * Tenants. A service tenant is a directory of the identity server, and its
 * vault must belong to that directory, so every tenant gets its own
 * directory, the service's multi-tenant application's principal in it
 * (list, wrapKey, unwrapKey on the vault), a bench admin principal (the
 * service roles, every key permission), its own vault "bvNNNNNN" with purge
 * protection and an imported RSA-2048 key "k". Two RSA keys are generated
 * once and imported everywhere; importing again under the same name adds a
 * version (the roll's "newer version"). Provisioning is timed but is not
 * part of any measured figure.
 *
 * Vault host names. The vault picks the vault from the Host header
 * ("{vault}.vault.azure.net"), and the service's Key Vault client keeps one
 * challenge and one token per host and directory, so every tenant needs a
 * host name of its own. Nothing in the service can map host names to
 * addresses (the Key Vault client's resolve entries are not exposed, and
 * refused), so this program interposes getaddrinfo(): every name ending in
 * ".vault.azure.net" resolves to 127.0.0.1. All other names go to the C
 * library untouched.
 *
 * Counting. The vault server's observe hook counts every request by
 * operation (list = GET /keys/{name}/versions, wrap = POST
 * /keys/{name}/wrapkey, unwrap = POST /keys/{name}/{version}/unwrapkey) and
 * outcome (2xx, 401 challenge, other); the identity server's counts token
 * requests. The service's own atrest_vault_calls_total (GET /metrics) is
 * read too and reported beside them. A phase's figures are the differences
 * of these counters; nothing else talks to the vault during a phase.
 *
 * Measured, per set of N tenants (a fresh data service per set, its monitor
 * without a thread: passes run through POST /admin/monitor/run, time moves
 * through POST /admin/clock):
 *   enable    PUT /v1/tenants/{t}/encryption for every tenant from
 *             --clients threads;
 *   fill      the first monitor pass: the reserve of pre-wrapped data keys;
 *   roll      a new version imported everywhere, the clock moved past the
 *             roll interval, one pass (tenant keys cached: an active tenant);
 *             the roll part and the reserve renewal are timed apart (every
 *             roll of a pass comes before its refills);
 *   check     one more pass a roll interval later: no new version;
 *   cold roll a third version, the clock moved past the keyring lifetime,
 *             one pass (tenant keys no longer cached: an idle tenant);
 *   probe     the clock moved past the probe interval, one pass;
 *   disable   DELETE /v1/tenants/{t}/encryption from --clients threads.
 * The service of the sets runs with roll interval 1 h, probe 12 h, grace
 * 24 h and tk_ttl 4 h, so that each pass holds only the work it measures
 * (its offset clock also follows real time, and a large set takes minutes).
 * Baseline of every phase: the same vault calls made directly with the Key
 * Vault client the service uses (kms/akv.h, same application and secret),
 * at the same concurrency: --clients threads of blocking calls for
 * enable/disable; for the passes, tokens, unwraps and listings in batches
 * of ATR_MONITOR_BATCH and the roll's and reserve's calls one by one, as
 * the monitor runs them. Each baseline runs right before its phase.
 *
 * Then, on services with the default monitor settings (and one with probe
 * 10 s, grace 60 s): ingest --ingest-mb into a customer-key tenant and into
 * a managed tenant (the baseline; requests interleaved, 5 rounds), counting
 * vault calls; and the lockdown:
 * unwrapKey is removed from two tenants' access policies, the clock steps
 * forward (10 s, 1 s with short settings), a pass runs and each tenant's
 * encryption state and a read are checked at every step until it is
 * locked; unwrapKey is put back (tenant A at once, tenant B after 30 min of
 * lock) and the clock steps by 1 s until the state is "customer" and a read
 * succeeds. Tenant A is revoked right after a successful unwrap (its
 * enable), tenant B one step before its first probe.
 *
 * Counts are checked (vault operations per phase as docs/service.md states
 * them, rolls, locks, restores); a mismatch is reported and makes the exit
 * status 1, timings never do.
 *
 * In-process differences from production: one secure heap for what runs as
 * three processes (--secure-heap-mb, default 64: the vault keeps every
 * private key it used there), servers accepting 8192 connections, and each
 * new key version warmed by one admin wrap (the vault checks a private key
 * on its first load).
 *
 * Usage: bench_byok [--quick] [--tenants 1,100,500] [--clients N]
 *                   [--ingest-mb N] [--no-baseline] [--no-lockdown]
 *                   [--no-default-lockdown] [--secure-heap-mb 2^k]
 *                   [--log-level L] [--dir DIR] [--keep]
 */
#define _GNU_SOURCE /* RTLD_NEXT */

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/secmem.h"
#include "crypto/jwk.h"
#include "crypto/rand.h"
#include "crypto/rsa.h"
#include "crypto/x509.h"
#include "http/client.h"
#include "http/server.h"
#include "identity/idp.h"
#include "identity/jwt.h"
#include "kms/akv.h"
#include "service/monitor.h"
#include "service/service.h"
#include "vault/vault.h"

#ifndef ATR_BENCH_BUILD
#define ATR_BENCH_BUILD "unknown"
#endif

#define VAULT_SUFFIX  ".vault.azure.net"
#define ID_MAX        64
#define URL_MAX       512
#define SECRET_HEX    32
#define MAX_SETS      8
#define RESERVE       8  /* the service's default reserve size (ATR_RESERVE_SIZE_DEFAULT) */
#define INNER_LEN     65 /* SRK-wrap of a 32-byte key: what the service sends to wrapkey */
#define RECORD_BYTES  1024
#define BATCH_RECORDS 1000
#define SVC_ROLES     3
/* monitor settings of the sets' services (seconds), see run_set() */
#define SET_ROLL_S   3600LL
#define SET_TK_TTL_S (4 * 3600LL)
#define SET_PROBE_S  (12 * 3600LL)
#define SET_GRACE_S  (24 * 3600LL)

/* ------------------------------------------------------------------ util */

static char g_work[1024];
static int g_keep;
static int g_failed; /* a count check failed */

static void rm_work(void)
{
    if (g_work[0] != '\0' && !g_keep) {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_work);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_byok: could not remove %s\n", g_work);
    }
}

_Noreturn static void die(const char *fmt, ...) ATR_PRINTF(1, 2);
_Noreturn static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_byok: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (g_work[0] != '\0')
        fprintf(stderr, "bench_byok: the servers' log is %s/bench.log\n", g_work);
    g_keep = 1;
    /* the servers run in this process: exit without tearing them down */
    _exit(1);
}

static void note(const char *fmt, ...) ATR_PRINTF(1, 2);
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_byok: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
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

static void loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(out, (int)cap, f) != NULL)
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

static void random_hex(char *out, size_t nbytes)
{
    uint8_t b[64];
    if (nbytes > sizeof(b) || atr_rand_bytes(b, nbytes, NULL) != ATR_OK)
        die("random bytes");
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void check_count(const char *what, size_t n, unsigned long got, unsigned long want)
{
    if (got == want)
        return;
    fprintf(stderr, "bench_byok: COUNT CHECK FAILED: %s (N=%zu): %lu, want %lu\n", what, n, got,
            want);
    g_failed = 1;
}

static void check_true(const char *what, int ok)
{
    if (ok)
        return;
    fprintf(stderr, "bench_byok: CHECK FAILED: %s\n", what);
    g_failed = 1;
}

/* The version part of a kid ("" without one). */
static const char *kid_version(const char *kid)
{
    const char *s = kid != NULL ? strrchr(kid, '/') : NULL;
    return s != NULL ? s + 1 : "";
}

/* ------------------------------------------------------------------ name resolution */

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
static gai_fn g_real_gai;
static pthread_once_t g_gai_once = PTHREAD_ONCE_INIT;
static atomic_ulong g_gai_mapped;

static void gai_init(void)
{
    void *p = dlsym(RTLD_NEXT, "getaddrinfo");
    memcpy(&g_real_gai, &p, sizeof(p));
}

/*
 * Interposed for the whole process (libcurl's resolver thread included):
 * "{vault}.vault.azure.net" is 127.0.0.1, where the bench's vault listens.
 */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    pthread_once(&g_gai_once, gai_init);
    if (g_real_gai == NULL)
        return EAI_FAIL;
    size_t n = node != NULL ? strlen(node) : 0, sl = strlen(VAULT_SUFFIX);
    if (n > sl && strcasecmp(node + n - sl, VAULT_SUFFIX) == 0) {
        atomic_fetch_add(&g_gai_mapped, 1);
        node = "127.0.0.1";
    }
    return g_real_gai(node, service, hints, res);
}

/* ------------------------------------------------------------------ counters */

enum { OP_LIST, OP_WRAP, OP_UNWRAP, OP_OTHER, OP_N };

static struct {
    atomic_ulong ok[OP_N], chal[OP_N], bad[OP_N];
    atomic_ulong tokens; /* token requests to the identity server */
    atomic_ulong wrap_ok;
    atomic_ulong split_at;    /* wrap_ok value that ends the roll part of a pass */
    _Atomic int64_t split_ns; /* monotonic ns when it was reached */
} g_c;

struct counts {
    unsigned long ok[OP_N], chal[OP_N], bad[OP_N];
    unsigned long tokens;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void vault_observe(const struct atr_route *route, const char *method, unsigned status,
                          int64_t duration_ms, void *ctx)
{
    (void)duration_ms;
    (void)ctx;
    int op = OP_OTHER;
    if (route != NULL && method != NULL) {
        if (strcmp(method, "GET") == 0 && strcmp(route->pattern, "/keys/{name}/versions") == 0)
            op = OP_LIST;
        else if (strcmp(method, "POST") == 0 && strcmp(route->pattern, "/keys/{name}/{op}") == 0)
            op = OP_WRAP;
        else if (strcmp(method, "POST") == 0 &&
                 strcmp(route->pattern, "/keys/{name}/{version?}/{op}") == 0)
            op = OP_UNWRAP;
    }
    if (status == 401)
        atomic_fetch_add(&g_c.chal[op], 1);
    else if (status >= 200 && status < 300)
        atomic_fetch_add(&g_c.ok[op], 1);
    else
        atomic_fetch_add(&g_c.bad[op], 1);
    if (op == OP_WRAP && status == 200) {
        unsigned long n = atomic_fetch_add(&g_c.wrap_ok, 1) + 1;
        if (n == atomic_load(&g_c.split_at))
            atomic_store(&g_c.split_ns, mono_ns());
    }
}

static void idp_observe(const struct atr_route *route, const char *method, unsigned status,
                        int64_t duration_ms, void *ctx)
{
    (void)method;
    (void)status;
    (void)duration_ms;
    (void)ctx;
    if (route != NULL && strstr(route->pattern, "oauth2/v2.0/token") != NULL)
        atomic_fetch_add(&g_c.tokens, 1);
}

static struct counts counts_now(void)
{
    struct counts c;
    for (int i = 0; i < OP_N; i++) {
        c.ok[i] = atomic_load(&g_c.ok[i]);
        c.chal[i] = atomic_load(&g_c.chal[i]);
        c.bad[i] = atomic_load(&g_c.bad[i]);
    }
    c.tokens = atomic_load(&g_c.tokens);
    return c;
}

static struct counts counts_diff(const struct counts *a, const struct counts *b)
{
    struct counts d;
    for (int i = 0; i < OP_N; i++) {
        d.ok[i] = b->ok[i] - a->ok[i];
        d.chal[i] = b->chal[i] - a->chal[i];
        d.bad[i] = b->bad[i] - a->bad[i];
    }
    d.tokens = b->tokens - a->tokens;
    return d;
}

/* Vault requests of the key operations: successes, challenges and refusals. */
static unsigned long vault_calls(const struct counts *c)
{
    unsigned long n = 0;
    for (int i = 0; i < OP_OTHER; i++)
        n += c->ok[i] + c->chal[i] + c->bad[i];
    return n;
}

static unsigned long vault_chal(const struct counts *c)
{
    return c->chal[OP_LIST] + c->chal[OP_WRAP] + c->chal[OP_UNWRAP];
}

/* ------------------------------------------------------------------ HTTP */

static char g_ca[1100];

static struct atr_http_client *client_new(void)
{
    struct atr_http_client_opts o;
    memset(&o, 0, sizeof(o));
    o.ca_file = g_ca;
    o.timeout_ms = 300000;
    o.max_response = (size_t)16 << 20;
    o.user_agent = "atrest-bench-byok";
    struct atr_http_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_new(&c, &o, &err) != ATR_OK)
        die("http client: %s", atr_err_msg(&err));
    return c;
}

/*
 * One request; @p body (stolen) is sent as JSON, or @p raw with @p ctype.
 * Returns the status; *out (may be NULL) gets the parsed answer or NULL, and
 * @p text (may be NULL) the start of the answer for messages.
 */
static unsigned rest(json_t **out, char *text, size_t text_cap, struct atr_http_client *c,
                     const char *method, const char *url, const char *bearer, const char *xname,
                     const char *xvalue, json_t *body, const char *raw, size_t raw_len,
                     const char *ctype)
{
    char auth[12288];
    struct atr_http_header h[3];
    size_t nh = 0;
    if (bearer != NULL) {
        snprintf(auth, sizeof(auth), "Bearer %s", bearer);
        h[nh++] = (struct atr_http_header){"Authorization", auth};
    }
    char *b = NULL;
    if (body != NULL) {
        b = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (b == NULL)
            die("out of memory");
        raw = b;
        raw_len = strlen(b);
        ctype = "application/json";
    }
    if (ctype != NULL)
        h[nh++] = (struct atr_http_header){"Content-Type", ctype};
    if (xname != NULL)
        h[nh++] = (struct atr_http_header){xname, xvalue};
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    rq.headers = h;
    rq.nheaders = nh;
    rq.body = atr_span_of(raw, raw != NULL ? raw_len : 0);
    struct atr_http_client_resp r;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_send(&r, c, &rq, &err) != ATR_OK)
        die("%s %s: %s", method, url, atr_err_msg(&err));
    free(b);
    unsigned st = r.status;
    if (out != NULL)
        *out = r.body.len > 0 ? json_loadb((const char *)r.body.ptr, r.body.len, 0, NULL) : NULL;
    if (text != NULL && text_cap > 0)
        snprintf(text, text_cap, "%.*s", (int)(r.body.len < text_cap ? r.body.len : text_cap - 1),
                 r.body.len > 0 ? (const char *)r.body.ptr : "");
    atr_http_client_resp_cleanup(&r);
    return st;
}

/* As rest() with a JSON body; dies unless the status is @p want. */
static json_t *rest_ok(struct atr_http_client *c, const char *method, const char *url,
                       const char *bearer, const char *xname, const char *xvalue, json_t *body,
                       unsigned want)
{
    json_t *o = NULL;
    char text[600];
    unsigned st =
        rest(&o, text, sizeof(text), c, method, url, bearer, xname, xvalue, body, NULL, 0, NULL);
    if (st != want)
        die("%s %s: %u, want %u: %s", method, url, st, want, text);
    if (o == NULL)
        o = json_object();
    return o;
}

static void copy_str(char *out, size_t cap, json_t *o, const char *key, const char *what)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || strlen(s) >= cap)
        die("%s: no \"%s\" in the answer", what, key);
    memcpy(out, s, strlen(s) + 1);
}

/* ------------------------------------------------------------------ the world */

struct world {
    char cert[1100], key[1100];
    struct atr_idp *idp;
    struct atr_http_server *idp_srv;
    char idp_url[128], idp_secret[2 * SECRET_HEX + 1];
    struct atr_vault *vault;
    struct atr_http_server *vault_srv;
    char vault_url[128], vault_secret[2 * SECRET_HEX + 1];
    unsigned vault_port;
    char byok_app[ID_MAX];
    char *byok_secret;
    char bench_app[ID_MAX];
    struct atr_rsa_key *bench_key; /* the bench admin application's assertion key */
    json_t *ck_jwk[2];             /* the customer keys, private JWKs for import */
    atomic_uint next_vault;
};
static struct world W;

struct tenant {
    char tid[ID_MAX];
    char byok_sp[ID_MAX];
    char bench_sp[ID_MAX];
    char vault[32];
    char key_uri[256];
    char kid[ATR_AKV_KID_MAX]; /* the newest imported version */
    char *stok;                /* service token: the three roles */
    char *vtok;                /* vault token of the bench admin (imports) */
    /* the raw baseline's own wrapped value and the version that wrapped it */
    uint8_t raw_blob[ATR_AKV_VALUE_MAX];
    size_t raw_len;
    char raw_kid[ATR_AKV_KID_MAX];
};

static void start_server(struct atr_http_server **out, char *url, size_t cap, const char *name,
                         unsigned threads, const struct atr_route *routes, size_t nroutes,
                         void *app, atr_http_auth_fn auth, void *auth_ctx,
                         void (*observe)(const struct atr_route *, const char *, unsigned, int64_t,
                                         void *),
                         void *observe_ctx, int (*accept)(const char *, void *), void *accept_ctx)
{
    struct atr_http_server_opts so;
    memset(&so, 0, sizeof(so));
    so.name = name;
    so.listen_addr = "127.0.0.1";
    so.cert_file = W.cert;
    so.key_file = W.key;
    so.threads = threads;
    /*
     * Every tenant's vault is its own host name, so clients keep a connection
     * per vault host; all of them end at this one vault server (and the
     * token requests at this one identity server), far beyond the default 512.
     */
    so.max_connections = 8192;
    so.auth = auth;
    so.auth_ctx = auth_ctx;
    so.observe = observe;
    so.observe_ctx = observe_ctx;
    so.accept = accept;
    so.accept_ctx = accept_ctx;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_server_new(out, &so, routes, nroutes, app, &err) != ATR_OK ||
        atr_http_server_start(*out, &err) != ATR_OK ||
        atr_http_server_url(url, cap, *out) != ATR_OK)
        die("%s server: %s", name, atr_err_msg(&err));
}

/* A client-credentials token of the bench admin application in directory @p tid. */
static char *bench_token(struct atr_http_client *c, const char *tid, const char *scope)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", W.idp_url, tid);
    time_t now = time(NULL);
    char jti[33];
    random_hex(jti, 16);
    json_t *claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "iss", W.bench_app, "sub",
                               W.bench_app, "aud", url, "iat", (json_int_t)now, "nbf",
                               (json_int_t)now, "exp", (json_int_t)(now + 600), "jti", jti);
    char *assertion = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (claims == NULL ||
        atr_jwt_sign_rs256(&assertion, W.bench_key, "bench", claims, &err) != ATR_OK)
        die("assertion: %s", atr_err_msg(&err));
    json_decref(claims);
    char form[8192];
    snprintf(form, sizeof(form),
             "grant_type=client_credentials&client_id=%s&scope=%s"
             "&client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type"
             "%%3Ajwt-bearer&client_assertion=%s",
             W.bench_app, scope, assertion);
    atr_free(assertion);
    json_t *o = NULL;
    char text[400];
    unsigned st = rest(&o, text, sizeof(text), c, "POST", url, NULL, NULL, NULL, NULL, form,
                       strlen(form), "application/x-www-form-urlencoded");
    const char *tok = json_string_value(json_object_get(o, "access_token"));
    if (st != 200 || tok == NULL)
        die("token for %s: %u %s", tid, st, text);
    char *t = strdup(tok);
    json_decref(o);
    if (t == NULL)
        die("out of memory");
    return t;
}

static void world_start(void)
{
    struct atr_err err;
    atr_err_clear(&err);
    char cakey[1100];
    snprintf(g_ca, sizeof(g_ca), "%s/ca.pem", g_work);
    snprintf(cakey, sizeof(cakey), "%s/ca.key", g_work);
    snprintf(W.cert, sizeof(W.cert), "%s/server.pem", g_work);
    snprintf(W.key, sizeof(W.key), "%s/server.key", g_work);
    static const char *const hosts[] = {"127.0.0.1", "localhost", "*.vault.azure.net"};
    if (atr_x509_ca_create(g_ca, cakey, NULL, &err) != ATR_OK ||
        atr_x509_server_create(W.cert, W.key, g_ca, cakey, hosts, ATR_ARRAY_LEN(hosts), NULL,
                               &err) != ATR_OK)
        die("certificates: %s", atr_err_msg(&err));

    /* identity server (4 pool threads, as `atrest idp serve`) */
    char path[1200], path2[1200];
    snprintf(path, sizeof(path), "%s/idp.db", g_work);
    random_hex(W.idp_secret, SECRET_HEX);
    struct atr_idp_opts io;
    memset(&io, 0, sizeof(io));
    io.db_path = path;
    io.admin_secret = W.idp_secret;
    if (atr_idp_new(&W.idp, &io, &err) != ATR_OK)
        die("identity server: %s", atr_err_msg(&err));
    size_t n = 0;
    const struct atr_route *routes = atr_idp_routes(&n);
    start_server(&W.idp_srv, W.idp_url, sizeof(W.idp_url), "idp", 4, routes, n, W.idp, atr_idp_auth,
                 W.idp, idp_observe, NULL, NULL, NULL);
    if (atr_idp_set_authority(W.idp, W.idp_url, &err) != ATR_OK)
        die("identity server: %s", atr_err_msg(&err));

    /* key vault, test mode (8 pool threads, as `atrest vault serve`); no ticker */
    snprintf(path, sizeof(path), "%s/vault.db", g_work);
    snprintf(path2, sizeof(path2), "%s/vault.key", g_work);
    random_hex(W.vault_secret, SECRET_HEX);
    struct atr_vault_opts vo;
    memset(&vo, 0, sizeof(vo));
    vo.db_path = path;
    vo.master_key_path = path2;
    vo.idp_authority = W.idp_url;
    vo.ca_file = g_ca;
    vo.admin_secret = W.vault_secret;
    vo.test_mode = 1;
    if (atr_vault_new(&W.vault, &vo, &err) != ATR_OK)
        die("vault: %s", atr_err_msg(&err));
    routes = atr_vault_routes(&n);
    start_server(&W.vault_srv, W.vault_url, sizeof(W.vault_url), "vault", 8, routes, n, W.vault,
                 atr_vault_auth, W.vault, vault_observe, NULL, atr_vault_accept, W.vault);
    W.vault_port = atr_http_server_port(W.vault_srv);

    /* the service provider's directory: the service's app, the bench admin app */
    struct atr_http_client *c = client_new();
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/admin/directories", W.idp_url);
    json_t *d = rest_ok(c, "POST", url, W.idp_secret, NULL, NULL,
                        json_pack("{s:s}", "displayName", "atrest service provider"), 201);
    char home[ID_MAX];
    copy_str(home, sizeof(home), d, "id", "directory create");
    json_decref(d);
    snprintf(url, sizeof(url), "%s/admin/directories/%s/applications", W.idp_url, home);
    json_t *a = rest_ok(c, "POST", url, W.idp_secret, NULL, NULL,
                        json_pack("{s:s,s:b}", "displayName", "atrest", "multiTenant", 1), 201);
    copy_str(W.byok_app, sizeof(W.byok_app), a, "appId", "app create");
    const char *sec = json_string_value(json_object_get(a, "secret"));
    if (sec == NULL || (W.byok_secret = strdup(sec)) == NULL)
        die("app create: no secret");
    json_decref(a);
    a = rest_ok(c, "POST", url, W.idp_secret, NULL, NULL,
                json_pack("{s:s,s:b}", "displayName", "bench admin", "multiTenant", 1), 201);
    copy_str(W.bench_app, sizeof(W.bench_app), a, "appId", "app create");
    json_decref(a);
    struct atr_buf pem;
    atr_buf_init(&pem, 8192);
    if (atr_rsa_key_generate(&W.bench_key, 2048, &err) != ATR_OK ||
        atr_rsa_key_format_pem_public(&pem, W.bench_key, &err) != ATR_OK)
        die("assertion key: %s", atr_err_msg(&err));
    snprintf(url, sizeof(url), "%s/admin/applications/%s/keys", W.idp_url, W.bench_app);
    json_decref(rest_ok(c, "POST", url, W.idp_secret, NULL, NULL,
                        json_pack("{s:s%}", "key", (const char *)pem.ptr, pem.len), 201));
    atr_buf_cleanup(&pem);
    atr_http_client_free(c);

    /* two customer keys, imported into every vault */
    for (int i = 0; i < 2; i++) {
        struct atr_rsa_key *k = NULL;
        if (atr_rsa_key_generate(&k, 2048, &err) != ATR_OK ||
            atr_jwk_export(&W.ck_jwk[i], k, ATR_JWK_PRIVATE, &err) != ATR_OK)
            die("customer key: %s", atr_err_msg(&err));
        atr_rsa_key_free(k);
    }
}

static void world_stop(void)
{
    atr_http_server_stop(W.vault_srv);
    atr_http_server_stop(W.idp_srv);
    atr_http_server_free(W.vault_srv);
    atr_http_server_free(W.idp_srv);
    atr_vault_free(W.vault);
    atr_idp_free(W.idp);
    atr_rsa_key_free(W.bench_key);
    json_decref(W.ck_jwk[0]);
    json_decref(W.ck_jwk[1]);
    free(W.byok_secret);
}

/* ------------------------------------------------------------------ parallel jobs */

typedef void (*job_fn)(size_t i, struct atr_http_client *c, void *ctx);

struct pool {
    size_t n;
    job_fn fn;
    void *ctx;
    atomic_size_t next;
    int want_client;
};

static void *pool_main(void *arg)
{
    struct pool *p = arg;
    struct atr_http_client *c = p->want_client ? client_new() : NULL;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            break;
        p->fn(i, c, p->ctx);
    }
    if (c != NULL)
        atr_http_client_free(c);
    return NULL;
}

/* Runs fn(0..n-1) on @p threads threads; returns the wall time in seconds. */
static double run_jobs(size_t n, int threads, job_fn fn, void *ctx, int want_client)
{
    struct pool p;
    p.n = n;
    p.fn = fn;
    p.ctx = ctx;
    p.want_client = want_client;
    atomic_init(&p.next, 0);
    pthread_t th[64];
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, pool_main, &p) != 0)
            die("pthread_create");
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return now_s() - t0;
}

/* ------------------------------------------------------------------ provisioning */

struct set_ctx {
    struct tenant *t;
    struct svc *S;
    int which_key; /* the JWK to import next */
    struct atr_akv_client *raw;
    int raw_kind;
};

static void import_key(struct tenant *t, struct atr_http_client *c, int which)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "https://%s%s:%u/keys/k?api-version=7.4", t->vault, VAULT_SUFFIX,
             W.vault_port);
    json_t *k = rest_ok(c, "PUT", url, t->vtok, NULL, NULL,
                        json_pack("{s:O}", "key", W.ck_jwk[which]), 200);
    const char *kid = json_string_value(json_object_get(json_object_get(k, "key"), "kid"));
    if (kid == NULL || strlen(kid) >= sizeof(t->kid))
        die("import into %s: no kid", t->vault);
    snprintf(t->kid, sizeof(t->kid), "%s", kid);
    json_decref(k);
    /*
     * The vault validates a private key when it first loads it (tens of ms)
     * and caches it: one wrap as the admin, so that neither the service nor
     * the raw baseline pays that first load.
     */
    snprintf(url, sizeof(url), "https://%s%s:%u/keys/k/wrapkey?api-version=7.4", t->vault,
             VAULT_SUFFIX, W.vault_port);
    json_decref(rest_ok(c, "POST", url, t->vtok, NULL, NULL,
                        json_pack("{s:s,s:s}", "alg", "RSA-OAEP-256", "value",
                                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                        200));
}

/* Directory, principals, roles, tokens, vault and key of one tenant. */
static void job_provision(size_t i, struct atr_http_client *c, void *ctx)
{
    struct set_ctx *x = ctx;
    struct tenant *t = &x->t[i];
    unsigned vid = atomic_fetch_add(&W.next_vault, 1);
    char url[URL_MAX], body[256];
    snprintf(url, sizeof(url), "%s/admin/directories", W.idp_url);
    snprintf(body, sizeof(body), "byok bench %u", vid);
    json_t *d = rest_ok(c, "POST", url, W.idp_secret, NULL, NULL,
                        json_pack("{s:s}", "displayName", body), 201);
    copy_str(t->tid, sizeof(t->tid), d, "id", "directory create");
    json_decref(d);
    snprintf(url, sizeof(url), "%s/v1.0/servicePrincipals", W.idp_url);
    json_t *sp = rest_ok(c, "POST", url, W.idp_secret, "X-Atrest-Directory", t->tid,
                         json_pack("{s:s}", "appId", W.byok_app), 201);
    copy_str(t->byok_sp, sizeof(t->byok_sp), sp, "id", "servicePrincipal create");
    json_decref(sp);
    sp = rest_ok(c, "POST", url, W.idp_secret, "X-Atrest-Directory", t->tid,
                 json_pack("{s:s}", "appId", W.bench_app), 201);
    copy_str(t->bench_sp, sizeof(t->bench_sp), sp, "id", "servicePrincipal create");
    json_decref(sp);
    static const char *const roles[SVC_ROLES] = {ATR_ROLE_ADMIN, ATR_ROLE_WRITE, ATR_ROLE_READ};
    snprintf(url, sizeof(url), "%s/admin/directories/%s/servicePrincipals/%s/roles", W.idp_url,
             t->tid, t->bench_sp);
    for (int r = 0; r < SVC_ROLES; r++)
        json_decref(rest_ok(c, "POST", url, W.idp_secret, NULL, NULL,
                            json_pack("{s:s}", "role", roles[r]), 200));
    t->stok = bench_token(c, t->tid, "api%3A%2F%2Fatrest%2F.default");
    t->vtok = bench_token(c, t->tid, "https%3A%2F%2Fvault.azure.net%2F.default");

    snprintf(t->vault, sizeof(t->vault), "bv%06u", vid);
    snprintf(url, sizeof(url), "%s/admin/vaults/%s", W.vault_url, t->vault);
    json_decref(rest_ok(c, "PUT", url, W.vault_secret, NULL, NULL,
                        json_pack("{s:s,s:b,s:i,s:[{s:s,s:s,s:{s:[s]}},{s:s,s:s,s:{s:[s,s,s]}}]}",
                                  "directoryId", t->tid, "enablePurgeProtection", 1,
                                  "softDeleteRetentionInDays", 90, "accessPolicies", "tenantId",
                                  t->tid, "objectId", t->bench_sp, "permissions", "keys", "all",
                                  "tenantId", t->tid, "objectId", t->byok_sp, "permissions", "keys",
                                  "list", "wrapKey", "unwrapKey"),
                        201));
    import_key(t, c, 0);
    snprintf(t->key_uri, sizeof(t->key_uri), "https://%s%s:%u/keys/k", t->vault, VAULT_SUFFIX,
             W.vault_port);
}

/* Moves the vault's test clock, so that the next imports are strictly newer. */
static void vault_tick(void)
{
    struct atr_http_client *c = client_new();
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/admin/clock", W.vault_url);
    json_decref(rest_ok(c, "POST", url, W.vault_secret, NULL, NULL,
                        json_pack("{s:i}", "advanceSeconds", 1), 200));
    atr_http_client_free(c);
}

static void job_import(size_t i, struct atr_http_client *c, void *ctx)
{
    struct set_ctx *x = ctx;
    import_key(&x->t[i], c, x->which_key);
}

/* Grants (or takes back) unwrapKey to the service's principal in @p t's vault. */
static void set_unwrap(struct tenant *t, int allowed)
{
    struct atr_http_client *c = client_new();
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/admin/vaults/%s/accessPolicies/%s", W.vault_url, t->vault,
             t->byok_sp);
    json_t *perms = allowed ? json_pack("[s,s,s]", "list", "wrapKey", "unwrapKey")
                            : json_pack("[s,s]", "list", "wrapKey");
    json_decref(
        rest_ok(c, "PUT", url, W.vault_secret, NULL, NULL,
                json_pack("{s:s,s:{s:o}}", "tenantId", t->tid, "permissions", "keys", perms), 200));
    atr_http_client_free(c);
}

/* ------------------------------------------------------------------ a data service */

struct svc {
    char dir[1100], db[1200], srk[1200];
    char secret[2 * SECRET_HEX + 1];
    struct atr_offset_clock clock;
    struct atr_service *s;
    struct atr_http_server *srv;
    char url[128];
    struct atr_http_client *c; /* the main thread's */
    int64_t advanced_s;        /* seconds the clock was moved */
};

static void svc_start(struct svc *S, const char *name, const struct atr_monitor_opts *mo,
                      int64_t tk_ttl_ms)
{
    memset(S, 0, sizeof(*S));
    snprintf(S->dir, sizeof(S->dir), "%s/%s", g_work, name);
    if (mkdir(S->dir, 0700) != 0)
        die("mkdir %s: %s", S->dir, strerror(errno));
    snprintf(S->db, sizeof(S->db), "sqlite:%s/atrest.db", S->dir);
    snprintf(S->srk, sizeof(S->srk), "%s/srk.key", S->dir);
    random_hex(S->secret, SECRET_HEX);
    atr_offset_clock_init(&S->clock, atr_clock_real());
    static const char *const hosts[] = {"vault.azure.net"};
    struct atr_service_opts o;
    memset(&o, 0, sizeof(o));
    o.store_location = S->db;
    o.srk_path = S->srk;
    o.idp_authority = W.idp_url;
    o.ca_file = g_ca;
    o.admin_secret = S->secret;
    o.tk_ttl_ms = tk_ttl_ms;
    o.byok_client_id = W.byok_app;
    o.byok_client_secret = W.byok_secret;
    o.byok_vault_hosts = hosts;
    o.byok_nvault_hosts = 1;
    o.monitor = *mo;
    o.monitor.no_thread = 1;
    o.test_clock = &S->clock;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_service_new(&S->s, &o, &err) != ATR_OK)
        die("service %s: %s", name, atr_err_msg(&err));
    size_t n = 0;
    const struct atr_route *routes = atr_service_routes(&n);
    start_server(&S->srv, S->url, sizeof(S->url), name, 8, routes, n, S->s, atr_service_auth, S->s,
                 atr_service_observe, S->s, NULL, NULL);
    S->c = client_new();
}

static void svc_stop(struct svc *S)
{
    atr_http_client_free(S->c);
    atr_http_server_stop(S->srv);
    atr_http_server_free(S->srv);
    atr_service_free(S->s);
    S->s = NULL;
}

/* @p mo with the monitor's defaults applied (service/monitor.h). */
static struct atr_monitor_opts effective(const struct atr_monitor_opts *mo)
{
    struct atr_monitor_opts o = *mo;
    o.roll_interval_ms = o.roll_interval_ms ? o.roll_interval_ms : ATR_MONITOR_ROLL_DEFAULT_MS;
    o.probe_interval_ms = o.probe_interval_ms ? o.probe_interval_ms : ATR_MONITOR_PROBE_DEFAULT_MS;
    o.grace_ms = o.grace_ms ? o.grace_ms : ATR_MONITOR_GRACE_DEFAULT_MS;
    o.locked_probe_ms = o.locked_probe_ms ? o.locked_probe_ms : ATR_MONITOR_LOCKED_PROBE_DEFAULT_MS;
    o.locked_probe_max_ms =
        o.locked_probe_max_ms ? o.locked_probe_max_ms : ATR_MONITOR_LOCKED_MAX_DEFAULT_MS;
    o.backoff_min_ms = o.backoff_min_ms ? o.backoff_min_ms : ATR_MONITOR_BACKOFF_MIN_DEFAULT_MS;
    o.backoff_max_ms = o.backoff_max_ms ? o.backoff_max_ms : ATR_MONITOR_BACKOFF_MAX_DEFAULT_MS;
    return o;
}

struct pass {
    long tenants, probes, roll_checks, rolled, transitions, locked, restored;
};

static struct pass svc_pass(struct svc *S)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/admin/monitor/run", S->url);
    json_t *o = rest_ok(S->c, "POST", url, S->secret, NULL, NULL, NULL, 200);
    struct pass p;
    p.tenants = (long)json_integer_value(json_object_get(o, "tenants"));
    p.probes = (long)json_integer_value(json_object_get(o, "probes"));
    p.roll_checks = (long)json_integer_value(json_object_get(o, "rollChecks"));
    p.rolled = (long)json_integer_value(json_object_get(o, "rolled"));
    p.transitions = (long)json_integer_value(json_object_get(o, "transitions"));
    p.locked = (long)json_integer_value(json_object_get(o, "locked"));
    p.restored = (long)json_integer_value(json_object_get(o, "restored"));
    json_decref(o);
    return p;
}

static void svc_advance(struct svc *S, int64_t seconds)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/admin/clock", S->url);
    json_decref(rest_ok(S->c, "POST", url, S->secret, NULL, NULL,
                        json_pack("{s:I}", "advanceSeconds", (json_int_t)seconds), 200));
    S->advanced_s += seconds;
}

/* A counter of GET /metrics (label sets summed); -1 when absent. */
static double svc_metric(struct svc *S, const char *name)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/metrics", S->url);
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    struct atr_http_client_resp r;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_send(&r, S->c, &rq, &err) != ATR_OK || r.status != 200)
        die("GET /metrics: %s", atr_err_msg(&err));
    const char *s = atr_buf_cstr(&r.body);
    double v = -1;
    size_t nl = strlen(name);
    for (const char *p = s; p != NULL && *p != '\0';) {
        if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '{')) {
            const char *sp = strchr(p, ' ');
            if (sp != NULL)
                v = (v < 0 ? 0 : v) + strtod(sp + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    atr_http_client_resp_cleanup(&r);
    return v;
}

/* GET /v1/tenants/{t}/encryption: its "state" (copied to @p state) and the whole answer. */
static json_t *svc_encryption(struct svc *S, struct atr_http_client *c, const struct tenant *t,
                              char *state, size_t cap)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/encryption", S->url, t->tid);
    json_t *o = rest_ok(c, "GET", url, t->stok, NULL, NULL, NULL, 200);
    if (state != NULL) {
        const char *s = json_string_value(json_object_get(o, "state"));
        snprintf(state, cap, "%s", s != NULL ? s : "?");
    }
    return o;
}

/* GET /v1/tenants/{t}/records?limit=1: the status. */
static unsigned svc_read(struct svc *S, const struct tenant *t)
{
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/records?limit=1", S->url, t->tid);
    return rest(NULL, NULL, 0, S->c, "GET", url, t->stok, NULL, NULL, NULL, NULL, 0, NULL);
}

static void job_create(size_t i, struct atr_http_client *c, void *ctx)
{
    struct set_ctx *x = ctx;
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s", x->S->url, x->t[i].tid);
    json_decref(rest_ok(c, "PUT", url, x->t[i].stok, NULL, NULL, NULL, 201));
}

static void job_enable(size_t i, struct atr_http_client *c, void *ctx)
{
    struct set_ctx *x = ctx;
    struct tenant *t = &x->t[i];
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/encryption", x->S->url, t->tid);
    json_t *o =
        rest_ok(c, "PUT", url, t->stok, NULL, NULL, json_pack("{s:s}", "keyUri", t->key_uri), 200);
    const char *mode = json_string_value(json_object_get(o, "mode"));
    const char *kid = json_string_value(json_object_get(o, "keyVersion"));
    if (mode == NULL || strcmp(mode, "customer") != 0 || kid == NULL ||
        strcasecmp(kid_version(kid), kid_version(t->kid)) != 0)
        die("enable %s: mode %s, key version %s, want %s", t->tid, mode ? mode : "?",
            kid ? kid : "?", t->kid);
    json_decref(o);
}

static void job_disable(size_t i, struct atr_http_client *c, void *ctx)
{
    struct set_ctx *x = ctx;
    struct tenant *t = &x->t[i];
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/encryption", x->S->url, t->tid);
    json_t *o = rest_ok(c, "DELETE", url, t->stok, NULL, NULL, NULL, 200);
    const char *mode = json_string_value(json_object_get(o, "mode"));
    if (mode == NULL || strcmp(mode, "managed") != 0)
        die("disable %s: mode %s", t->tid, mode ? mode : "?");
    json_decref(o);
}

/* ------------------------------------------------------------------ the raw baseline */

enum raw_kind { RAW_ENABLE, RAW_FILL, RAW_ROLL, RAW_CHECK, RAW_COLD, RAW_PROBE, RAW_DISABLE };

static struct atr_akv_client *raw_client(void)
{
    static const char *const hosts[] = {"vault.azure.net"};
    struct atr_akv_client_opts ao;
    memset(&ao, 0, sizeof(ao));
    ao.client_id = W.byok_app;
    ao.client_secret = W.byok_secret;
    ao.authority = W.idp_url;
    ao.vault_hosts = hosts;
    ao.nvault_hosts = 1;
    ao.ca_file = g_ca;
    struct atr_akv_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_client_new(&c, &ao, &err) != ATR_OK)
        die("key vault client: %s", atr_err_msg(&err));
    return c;
}

static void raw_key(struct atr_akv_key_uri *k, const struct tenant *t, const char *uri)
{
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_uri_parse(k, uri, &err) != ATR_OK)
        die("key URI %s: %s", uri, atr_err_msg(&err));
    snprintf(k->directory, sizeof(k->directory), "%s", t->tid);
}

static void raw_token(struct atr_akv_client *c, const struct tenant *t)
{
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_token_probe(c, t->tid, &fail, &err) != ATR_OK)
        die("raw token for %s: %s", t->tid, atr_err_msg(&err));
}

static void raw_list(struct atr_akv_client *c, const struct tenant *t)
{
    struct atr_akv_key_uri k;
    raw_key(&k, t, t->key_uri);
    struct atr_akv_versions v;
    memset(&v, 0, sizeof(v));
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_list_versions(&v, c, &k, &fail, &err) != ATR_OK ||
        atr_akv_versions_latest(&v, (int64_t)time(NULL)) == NULL)
        die("raw list for %s: %s", t->tid, atr_err_msg(&err));
    atr_akv_versions_cleanup(&v);
}

static void raw_wrap(struct atr_akv_client *c, struct tenant *t)
{
    struct atr_akv_key_uri k;
    raw_key(&k, t, t->key_uri);
    uint8_t value[INNER_LEN];
    if (atr_rand_bytes(value, sizeof(value), NULL) != ATR_OK)
        die("random");
    struct atr_buf out;
    atr_buf_init(&out, ATR_AKV_VALUE_MAX);
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_wrap(&out, t->raw_kid, c, &k, ATR_AKV_RSA_OAEP_256,
                     atr_span_of(value, sizeof(value)), &fail, &err) != ATR_OK ||
        out.len > sizeof(t->raw_blob))
        die("raw wrap for %s: %s", t->tid, atr_err_msg(&err));
    memcpy(t->raw_blob, out.ptr, out.len);
    t->raw_len = out.len;
    atr_buf_cleanup(&out);
}

static void raw_unwrap(struct atr_akv_client *c, struct tenant *t)
{
    struct atr_akv_key_uri k;
    raw_key(&k, t, t->raw_kid);
    struct atr_secret s;
    memset(&s, 0, sizeof(s));
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_unwrap(&s, NULL, c, &k, ATR_AKV_RSA_OAEP_256, atr_span_of(t->raw_blob, t->raw_len),
                       &fail, &err) != ATR_OK ||
        atr_secret_len(&s) != INNER_LEN)
        die("raw unwrap for %s: %s", t->tid, atr_err_msg(&err));
    atr_secret_cleanup(&s);
}

/* enable and disable: blocking calls from the request threads */
static void job_raw(size_t i, struct atr_http_client *hc, void *ctx)
{
    (void)hc;
    struct set_ctx *x = ctx;
    struct tenant *t = &x->t[i];
    struct atr_akv_client *c = x->raw;
    if (x->raw_kind == RAW_ENABLE) {
        raw_token(c, t);
        raw_list(c, t);
        raw_wrap(c, t);
        raw_unwrap(c, t);
        raw_wrap(c, t);
    } else {
        raw_unwrap(c, t);
    }
}

enum batch_op { B_TOKEN, B_UNWRAP, B_LIST };

/* One operation per tenant in batches of ATR_MONITOR_BATCH, as the monitor runs them. */
static void raw_batch(struct atr_akv_client *c, struct tenant *t, size_t n, enum batch_op op)
{
    for (size_t at = 0; at < n; at += ATR_MONITOR_BATCH) {
        size_t m = n - at < ATR_MONITOR_BATCH ? n - at : ATR_MONITOR_BATCH;
        struct atr_akv_batch *b = NULL;
        struct atr_err err;
        atr_err_clear(&err);
        if (atr_akv_batch_new(&b, c, &err) != ATR_OK)
            die("batch: %s", atr_err_msg(&err));
        for (size_t i = at; i < at + m; i++) {
            struct atr_akv_key_uri k;
            atr_status rc = ATR_OK;
            if (op == B_TOKEN) {
                rc = atr_akv_batch_add_token(b, NULL, t[i].tid, &err);
            } else if (op == B_UNWRAP) {
                raw_key(&k, &t[i], t[i].raw_kid);
                rc = atr_akv_batch_add_unwrap(b, NULL, &k, ATR_AKV_RSA_OAEP_256,
                                              atr_span_of(t[i].raw_blob, t[i].raw_len), &err);
            } else {
                raw_key(&k, &t[i], t[i].key_uri);
                k.version[0] = '\0';
                rc = atr_akv_batch_add_list_versions(b, NULL, &k, &err);
            }
            if (rc != ATR_OK)
                die("batch add: %s", atr_err_msg(&err));
        }
        if (atr_akv_batch_run(b, 60000, &err) != ATR_OK)
            die("batch run: %s", atr_err_msg(&err));
        for (size_t j = 0; j < m; j++) {
            const struct atr_akv_result *r = atr_akv_batch_result(b, j);
            if (r == NULL || r->status != ATR_OK)
                die("raw batch for %s: %s", t[at + j].tid,
                    r != NULL ? atr_err_msg(&r->err) : "no result");
        }
        atr_akv_batch_free(b);
    }
}

/*
 * The monitor's passes, raw: probes (a token batch, then an unwrap batch,
 * per 256 tenants), roll checks (list batches), the rolls one by one (an
 * unwrap when the key is not cached, a wrap), then the reserves one by
 * one. Returns the time at which the rolls were done (0 = no rolls).
 */
static double raw_monitor(struct set_ctx *x, size_t n, enum raw_kind k, double t0)
{
    struct atr_akv_client *c = x->raw;
    struct tenant *t = x->t;
    double split = 0;
    if (k == RAW_PROBE) {
        for (size_t at = 0; at < n; at += ATR_MONITOR_BATCH) {
            size_t m = n - at < ATR_MONITOR_BATCH ? n - at : ATR_MONITOR_BATCH;
            raw_batch(c, t + at, m, B_TOKEN);
            raw_batch(c, t + at, m, B_UNWRAP);
        }
    }
    if (k == RAW_ROLL || k == RAW_COLD || k == RAW_CHECK || k == RAW_PROBE)
        raw_batch(c, t, n, B_LIST);
    if (k == RAW_ROLL || k == RAW_COLD) {
        for (size_t i = 0; i < n; i++) {
            if (k == RAW_COLD)
                raw_unwrap(c, &t[i]);
            raw_wrap(c, &t[i]);
        }
        split = now_s() - t0;
    }
    if (k == RAW_ROLL || k == RAW_COLD || k == RAW_FILL)
        for (size_t i = 0; i < n; i++)
            for (int r = 0; r < RESERVE; r++)
                raw_wrap(c, &t[i]);
    return split;
}

/* ------------------------------------------------------------------ phases */

struct phase {
    int done;
    double wall_s;
    struct counts c;
    double metric;  /* atrest_vault_calls_total delta, -1 without a service */
    double split_s; /* roll passes: the end of the roll part (from the start), 0 = none */
    int has_base;
    double base_s, base_split_s;
    struct counts base_c;
};

struct mark {
    double t;
    struct counts c;
    double metric;
};

static void settle(void)
{
    sleep_ms(30); /* observe hooks run just after the answer is sent */
}

static void mark_begin(struct mark *m, struct svc *S)
{
    settle();
    m->c = counts_now();
    m->metric = S != NULL ? svc_metric(S, "atrest_vault_calls_total") : 0;
    m->t = now_s();
}

static void mark_end(struct phase *p, const struct mark *m, struct svc *S)
{
    p->wall_s = now_s() - m->t;
    settle();
    struct counts c = counts_now();
    p->c = counts_diff(&m->c, &c);
    p->metric = S != NULL ? svc_metric(S, "atrest_vault_calls_total") - m->metric : -1;
    p->done = 1;
}

static void run_raw(struct phase *p, struct set_ctx *x, size_t n, enum raw_kind k, int threads)
{
    struct mark m;
    x->raw_kind = k;
    mark_begin(&m, NULL);
    double split = 0;
    if (k == RAW_ENABLE || k == RAW_DISABLE)
        (void)run_jobs(n, threads, job_raw, x, 0);
    else
        split = raw_monitor(x, n, k, m.t);
    struct phase b;
    memset(&b, 0, sizeof(b));
    mark_end(&b, &m, NULL);
    p->has_base = 1;
    p->base_s = b.wall_s;
    p->base_split_s = split;
    p->base_c = b.c;
}

/* One pass whose rolls end at the @p rolls-th successful wrap from now. */
static struct pass timed_pass(struct phase *p, struct svc *S, size_t rolls)
{
    struct mark m;
    mark_begin(&m, S);
    atomic_store(&g_c.split_ns, 0);
    atomic_store(&g_c.split_at, rolls > 0 ? atomic_load(&g_c.wrap_ok) + rolls : 0);
    int64_t t0 = mono_ns();
    struct pass r = svc_pass(S);
    mark_end(p, &m, S);
    int64_t sp = atomic_load(&g_c.split_ns);
    p->split_s = rolls > 0 && sp > 0 ? (double)(sp - t0) / 1e9 : 0;
    atomic_store(&g_c.split_at, 0);
    return r;
}

struct set_result {
    size_t n;
    double prov_s, create_s, import_s;
    double heap_per_key; /* secure heap bytes per provisioned tenant */
    struct phase enable, fill, roll, check, cold, probe, disable;
    unsigned long other_calls; /* vault requests outside the key operations during phases */
};

static void check_ops(const char *what, size_t n, const struct phase *p, unsigned long list,
                      unsigned long wrap, unsigned long unwrap)
{
    char w[96];
    snprintf(w, sizeof(w), "%s: list", what);
    check_count(w, n, p->c.ok[OP_LIST], list);
    snprintf(w, sizeof(w), "%s: wrapkey", what);
    check_count(w, n, p->c.ok[OP_WRAP], wrap);
    snprintf(w, sizeof(w), "%s: unwrapkey", what);
    check_count(w, n, p->c.ok[OP_UNWRAP], unwrap);
    snprintf(w, sizeof(w), "%s: refused vault calls", what);
    check_count(w, n, p->c.bad[OP_LIST] + p->c.bad[OP_WRAP] + p->c.bad[OP_UNWRAP], 0);
    if (p->has_base) {
        snprintf(w, sizeof(w), "%s baseline: list", what);
        check_count(w, n, p->base_c.ok[OP_LIST], list);
        snprintf(w, sizeof(w), "%s baseline: wrapkey", what);
        check_count(w, n, p->base_c.ok[OP_WRAP], wrap);
        snprintf(w, sizeof(w), "%s baseline: unwrapkey", what);
        check_count(w, n, p->base_c.ok[OP_UNWRAP], unwrap);
    }
}

static void check_pass(const char *what, size_t n, const struct pass *p, long probes, long rolls,
                       long rolled)
{
    char w[96];
    snprintf(w, sizeof(w), "%s: pass probes", what);
    check_count(w, n, (unsigned long)p->probes, (unsigned long)probes);
    snprintf(w, sizeof(w), "%s: pass roll checks", what);
    check_count(w, n, (unsigned long)p->roll_checks, (unsigned long)rolls);
    snprintf(w, sizeof(w), "%s: pass rolled", what);
    check_count(w, n, (unsigned long)p->rolled, (unsigned long)rolled);
    snprintf(w, sizeof(w), "%s: pass transitions", what);
    check_count(w, n, (unsigned long)p->transitions, 0);
}

/* A few tenants' encryption status: the newest version, a full reserve, state customer. */
static void check_sample(struct svc *S, struct tenant *t, size_t n, const char *what)
{
    size_t step = n > 5 ? n / 5 : 1;
    for (size_t i = 0; i < n; i += step) {
        char state[32];
        json_t *o = svc_encryption(S, S->c, &t[i], state, sizeof(state));
        const char *kid = json_string_value(json_object_get(o, "keyVersion"));
        json_t *res = json_object_get(o, "reserve");
        char w[160];
        snprintf(w, sizeof(w), "%s: tenant %zu state %s, key version %s, reserve %lld/%lld", what,
                 i, state, kid_version(kid),
                 (long long)json_integer_value(json_object_get(res, "available")),
                 (long long)json_integer_value(json_object_get(res, "size")));
        check_true(w, strcmp(state, "customer") == 0 && kid != NULL &&
                          strcasecmp(kid_version(kid), kid_version(t[i].kid)) == 0 &&
                          json_integer_value(json_object_get(res, "available")) == RESERVE);
        json_decref(o);
    }
}

/*
 * Established TCP connections in this process's network namespace whose
 * local (@p local 1) or remote port is @p port (both ends are here).
 */
static unsigned tcp_conns(unsigned port, int local)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return 0;
    char line[512];
    unsigned n = 0;
    if (fgets(line, sizeof(line), f) == NULL) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned lp = 0, rp = 0, st = 0;
        if (sscanf(line, " %*d: %*8x:%x %*8x:%x %x", &lp, &rp, &st) == 3 && st == 1 &&
            (local ? lp : rp) == port)
            n++;
    }
    fclose(f);
    return n;
}

static unsigned url_port(const char *url)
{
    const char *c = strrchr(url, ':');
    return c != NULL ? (unsigned)strtoul(c + 1, NULL, 10) : 0;
}

static void phase_note(const char *name, size_t n, const struct phase *p)
{
    note("  %-8s N=%zu: %.2f s (%.2f ms/tenant), vault %lu (list %lu, wrap %lu, unwrap %lu, 401 "
         "%lu), tokens %lu, metric %.0f, secure heap %zu bytes",
         name, n, p->wall_s, p->wall_s * 1e3 / (double)n, vault_calls(&p->c), p->c.ok[OP_LIST],
         p->c.ok[OP_WRAP], p->c.ok[OP_UNWRAP], vault_chal(&p->c), p->c.tokens, p->metric,
         atr_secmem_used());
    note("  %-8s open connections: to the identity server %u, to the vault %u", "",
         tcp_conns(url_port(W.idp_url), 0), tcp_conns(W.vault_port, 0));
    if (p->has_base)
        note("  %-8s raw: %.2f s (%.2f ms/tenant), vault %lu (401 %lu), tokens %lu", "", p->base_s,
             p->base_s * 1e3 / (double)n, vault_calls(&p->base_c), vault_chal(&p->base_c),
             p->base_c.tokens);
}

struct config {
    int quick;
    size_t sets[MAX_SETS];
    size_t nsets;
    int clients;
    size_t ingest_mb;
    int baseline;
    int lockdown;
    int lock_default;
    const char *dir;
    const char *log_level;
    size_t heap_mb;
};

static void run_set(struct set_result *R, size_t n, const struct config *cfg)
{
    memset(R, 0, sizeof(*R));
    R->n = n;
    struct tenant *t = calloc(n, sizeof(*t));
    if (t == NULL)
        die("out of memory");
    struct set_ctx x;
    memset(&x, 0, sizeof(x));
    x.t = t;
    note("set N=%zu: provisioning %zu directories, principals, vaults and keys", n, n);
    size_t heap0 = atr_secmem_used();
    R->prov_s = run_jobs(n, cfg->clients, job_provision, &x, 1);
    R->heap_per_key = ((double)atr_secmem_used() - (double)heap0) / (double)n;
    note("  provisioning: %.1f s (%.2f ms per tenant); secure heap +%.0f bytes per tenant (the "
         "vault's cached key)",
         R->prov_s, R->prov_s * 1e3 / (double)n, R->heap_per_key);

    /*
     * The service of the set: in every pass only the measured work is due (its
     * clock also follows real time, and a large set takes minutes to enable).
     */
    struct svc S;
    struct atr_monitor_opts mo;
    memset(&mo, 0, sizeof(mo));
    mo.roll_interval_ms = SET_ROLL_S * 1000;
    mo.probe_interval_ms = SET_PROBE_S * 1000;
    mo.grace_ms = SET_GRACE_S * 1000;
    char name[32];
    snprintf(name, sizeof(name), "svc-%zu", n);
    svc_start(&S, name, &mo, SET_TK_TTL_S * 1000);
    x.S = &S;
    R->create_s = run_jobs(n, cfg->clients, job_create, &x, 1);
    note("  tenants created in the service: %.1f s", R->create_s);
    x.raw = raw_client();
    struct counts c0 = counts_now();

    /* enable */
    if (cfg->baseline)
        run_raw(&R->enable, &x, n, RAW_ENABLE, cfg->clients);
    struct mark m;
    mark_begin(&m, &S);
    (void)run_jobs(n, cfg->clients, job_enable, &x, 1);
    mark_end(&R->enable, &m, &S);
    phase_note("enable", n, &R->enable);
    check_ops("enable", n, &R->enable, n, 2 * n, n);

    /* the first pass fills the reserves */
    if (cfg->baseline)
        run_raw(&R->fill, &x, n, RAW_FILL, 1);
    struct pass p = timed_pass(&R->fill, &S, 0);
    phase_note("fill", n, &R->fill);
    check_pass("fill", n, &p, 0, 0, 0);
    check_ops("fill", n, &R->fill, 0, (unsigned long)RESERVE * n, 0);

    /* roll with the tenant keys cached */
    double t0 = now_s();
    x.which_key = 1;
    vault_tick();
    (void)run_jobs(n, cfg->clients, job_import, &x, 1);
    R->import_s = now_s() - t0;
    if (cfg->baseline)
        run_raw(&R->roll, &x, n, RAW_ROLL, 1);
    svc_advance(&S, SET_ROLL_S + 1);
    p = timed_pass(&R->roll, &S, n);
    phase_note("roll", n, &R->roll);
    check_pass("roll", n, &p, 0, (long)n, (long)n);
    check_ops("roll", n, &R->roll, n, (unsigned long)(RESERVE + 1) * n, 0);
    check_sample(&S, t, n, "after the roll");

    /* a roll check that finds nothing new */
    if (cfg->baseline)
        run_raw(&R->check, &x, n, RAW_CHECK, 1);
    svc_advance(&S, SET_ROLL_S + 1);
    p = timed_pass(&R->check, &S, 0);
    phase_note("check", n, &R->check);
    check_pass("check", n, &p, 0, (long)n, 0);
    check_ops("check", n, &R->check, n, 0, 0);

    /* roll after the tenant keys left the keyring (tk_ttl) */
    x.which_key = 0;
    vault_tick();
    (void)run_jobs(n, cfg->clients, job_import, &x, 1);
    if (cfg->baseline)
        run_raw(&R->cold, &x, n, RAW_COLD, 1);
    svc_advance(&S, SET_TK_TTL_S - 2 * SET_ROLL_S + 1);
    p = timed_pass(&R->cold, &S, n);
    phase_note("cold", n, &R->cold);
    check_pass("cold roll", n, &p, 0, (long)n, (long)n);
    check_ops("cold roll", n, &R->cold, n, (unsigned long)(RESERVE + 1) * n, n);
    check_sample(&S, t, n, "after the cold roll");

    /* every tenant's probe (and its roll check) */
    if (cfg->baseline)
        run_raw(&R->probe, &x, n, RAW_PROBE, 1);
    svc_advance(&S, SET_PROBE_S);
    p = timed_pass(&R->probe, &S, 0);
    phase_note("probe", n, &R->probe);
    check_pass("probe", n, &p, (long)n, (long)n, 0);
    check_ops("probe", n, &R->probe, n, 0, n);

    /* disable */
    if (cfg->baseline)
        run_raw(&R->disable, &x, n, RAW_DISABLE, cfg->clients);
    mark_begin(&m, &S);
    (void)run_jobs(n, cfg->clients, job_disable, &x, 1);
    mark_end(&R->disable, &m, &S);
    phase_note("disable", n, &R->disable);
    check_ops("disable", n, &R->disable, 0, 0, n);
    struct counts c1 = counts_now();
    R->other_calls = c1.ok[OP_OTHER] + c1.chal[OP_OTHER] + c1.bad[OP_OTHER] - c0.ok[OP_OTHER] -
                     c0.chal[OP_OTHER] - c0.bad[OP_OTHER];
    note("  other vault requests during the set (imports and their warm-up wraps are key "
         "operations, counted outside the phases): %lu",
         R->other_calls);

    atr_akv_client_free(x.raw);
    svc_stop(&S);
    for (size_t i = 0; i < n; i++) {
        free(t[i].stok);
        free(t[i].vtok);
    }
    free(t);
}

/* ------------------------------------------------------------------ ingest */

/* xorshift64*: record text (not for keys) */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}

static const char *const ACTIONS[] = {"login",  "logout", "view",  "edit",
                                      "delete", "export", "share", "upload"};

/* One record of exactly RECORD_BYTES bytes, '\n' included (as bench_service). */
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
    size_t text = RECORD_BYTES - hl - 3;
    for (size_t i = 0; i < text; i++) {
        char ch = (char)(0x20 + (int)(rnd() % 93));
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

/*
 * Interleaved ingest: request i goes to the customer-key tenant when i is
 * even, to the managed one when odd, so both see the same moments of the
 * run (group commits, WAL checkpoints, load from other processes); each
 * tenant's time is the sum of its requests' latencies.
 */
struct ingest_ctx {
    struct svc *S;
    const struct tenant *t[2]; /* [0] customer key, [1] managed */
    const char *bodies;
    size_t per; /* batches per tenant */
    atomic_size_t accepted[2];
    _Atomic int64_t ns[2];
};

static void job_ingest(size_t i, struct atr_http_client *c, void *ctx)
{
    struct ingest_ctx *x = ctx;
    int k = (int)(i % 2);
    const struct tenant *t = x->t[k];
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/records", x->S->url, t->tid);
    json_t *o = NULL;
    char text[300];
    int64_t t0 = mono_ns();
    unsigned st = rest(&o, text, sizeof(text), c, "POST", url, t->stok, NULL, NULL, NULL,
                       x->bodies + (i / 2) * BATCH_RECORDS * RECORD_BYTES,
                       BATCH_RECORDS * RECORD_BYTES, "application/x-ndjson");
    atomic_fetch_add(&x->ns[k], mono_ns() - t0);
    json_int_t acc = json_integer_value(json_object_get(o, "accepted"));
    json_decref(o);
    if (st != 200 || acc != BATCH_RECORDS)
        die("ingest into %s: %u %s", t->tid, st, text);
    atomic_fetch_add(&x->accepted[k], (size_t)acc);
}

#define INGEST_ROUNDS 5

struct ingest_result {
    int done;
    size_t mb; /* per tenant, all rounds */
    int rounds;
    double wall_s;               /* both tenants */
    double cust_s, managed_s;    /* summed request latencies */
    double ratio[INGEST_ROUNDS]; /* customer / managed throughput, per round */
    double ratio_median;
    struct counts c; /* vault calls during the ingest (the managed tenant makes none) */
    double metric;
    double keyring_misses;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * --ingest-mb into customer-key tenant @p cu and managed tenant @p mg,
 * interleaved, in INGEST_ROUNDS rounds; the ratio is taken per round and
 * the median reported.
 */
static void run_ingest(struct ingest_result *R, struct svc *S, const struct tenant *cu,
                       const struct tenant *mg, size_t mb)
{
    memset(R, 0, sizeof(*R));
    R->rounds = INGEST_ROUNDS;
    size_t per = mb / INGEST_ROUNDS > 0 ? mb / INGEST_ROUNDS : 1; /* batches of ~1 MB */
    R->mb = per * INGEST_ROUNDS;
    char *bodies = malloc(per * BATCH_RECORDS * RECORD_BYTES);
    if (bodies == NULL)
        die("out of memory");
    for (size_t i = 0; i < per * BATCH_RECORDS; i++)
        make_record(bodies + i * RECORD_BYTES, 1767225600000 + (int64_t)i * 7);
    double miss0 = svc_metric(S, "atrest_keyring_misses_total");
    struct mark m;
    mark_begin(&m, S);
    for (int round = 0; round < INGEST_ROUNDS; round++) {
        struct ingest_ctx x;
        memset(&x, 0, sizeof(x));
        x.S = S;
        x.t[0] = cu;
        x.t[1] = mg;
        x.bodies = bodies;
        x.per = per;
        for (int k = 0; k < 2; k++) {
            atomic_init(&x.accepted[k], 0);
            atomic_init(&x.ns[k], 0);
        }
        R->wall_s += run_jobs(2 * per, 2, job_ingest, &x, 1);
        double cs = (double)atomic_load(&x.ns[0]) / 1e9, ms = (double)atomic_load(&x.ns[1]) / 1e9;
        for (int k = 0; k < 2; k++)
            check_count("ingest: records accepted", 1, (unsigned long)atomic_load(&x.accepted[k]),
                        (unsigned long)(per * BATCH_RECORDS));
        R->cust_s += cs;
        R->managed_s += ms;
        R->ratio[round] = ms / cs; /* equal bytes: the inverse time ratio */
        note("ingest round %d: customer key %.2f s, managed %.2f s (summed latencies), ratio %.3f",
             round + 1, cs, ms, R->ratio[round]);
    }
    struct phase p;
    memset(&p, 0, sizeof(p));
    mark_end(&p, &m, S);
    R->c = p.c;
    R->metric = p.metric;
    double v[INGEST_ROUNDS];
    memcpy(v, R->ratio, sizeof(v));
    qsort(v, INGEST_ROUNDS, sizeof(double), cmp_double);
    R->ratio_median = v[INGEST_ROUNDS / 2];
    R->keyring_misses = svc_metric(S, "atrest_keyring_misses_total") - miss0;
    free(bodies);
    R->done = 1;
    note("ingest: %zu MB per tenant in %.2f s; vault calls %lu, tokens %lu, metric %.0f", R->mb,
         R->wall_s, vault_calls(&R->c), R->c.tokens, R->metric);
    check_count("ingest: vault calls", 1, vault_calls(&R->c), 0);
}

/* A few records, so that reads return something. */
static void seed_records(struct svc *S, const struct tenant *t)
{
    char body[4 * RECORD_BYTES];
    for (int i = 0; i < 4; i++)
        make_record(body + i * RECORD_BYTES, 1767225600000 + i);
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/tenants/%s/records", S->url, t->tid);
    char text[300];
    unsigned st = rest(NULL, text, sizeof(text), S->c, "POST", url, t->stok, NULL, NULL, NULL, body,
                       sizeof(body), "application/x-ndjson");
    if (st != 200)
        die("records into %s: %u %s", t->tid, st, text);
}

static void enable_one(struct svc *S, struct tenant *t)
{
    struct set_ctx x;
    memset(&x, 0, sizeof(x));
    x.t = t;
    x.S = S;
    job_enable(0, S->c, &x);
}

/* ------------------------------------------------------------------ lockdown */

struct lock_tenant {
    const char *label;
    struct tenant *t;
    double restore_delay; /* seconds of lock before unwrapKey is put back */
    int phase;            /* 0 revoked, 1 locked, 2 restored (waiting for access), 3 done */
    double degraded, first_fail, locked, restored_at, state_ok, full;
    unsigned fail_status, locked_read;
    unsigned long calls_revoked, tokens_revoked; /* vault calls / tokens while revoked */
};

struct lock_result {
    int done;
    const char *label;
    struct atr_monitor_opts mo; /* effective */
    double step, fine;
    struct lock_tenant lt[2];
    unsigned steps;
    double wall_s;
};

static double since(const struct svc *S, int64_t adv0, double real0)
{
    return (double)(S->advanced_s - adv0) + (now_s() - real0);
}

/*
 * Tenant B is enabled, the clock moved to one step before B's first probe;
 * tenant A is enabled; both lose unwrapKey at once. Then steps of @p step
 * seconds (a pass, the state and a read of each) until both are locked;
 * A gets unwrapKey back at once, B after @p b_delay seconds of lock, and
 * steps of 1 s run until each is back to "customer" with a working read.
 */
static void run_lockdown(struct lock_result *R, const char *label,
                         const struct atr_monitor_opts *mo, double step, double b_delay,
                         double limit_s)
{
    memset(R, 0, sizeof(*R));
    R->label = label;
    struct tenant *t = calloc(2, sizeof(*t));
    if (t == NULL)
        die("out of memory");
    struct set_ctx x;
    memset(&x, 0, sizeof(x));
    x.t = t;
    (void)run_jobs(2, 2, job_provision, &x, 1);
    struct svc S;
    char name[48];
    snprintf(name, sizeof(name), "lock-%s", label);
    svc_start(&S, name, mo, 0);
    R->mo = effective(mo);
    x.S = &S;
    (void)run_jobs(2, 1, job_create, &x, 1);
    seed_records(&S, &t[0]);
    seed_records(&S, &t[1]);
    R->step = step;
    R->fine = 1;
    struct lock_tenant *A = &R->lt[0], *B = &R->lt[1];
    A->label = "A (revoked right after an unwrap)";
    A->t = &t[0];
    A->restore_delay = 0;
    B->label = "B (revoked one step before its first probe)";
    B->t = &t[1];
    B->restore_delay = b_delay;

    /* B first, then the clock to one step before B's probe, then A */
    enable_one(&S, B->t);
    double probe_s = (double)R->mo.probe_interval_ms / 1000.0;
    double moved = 0;
    while (moved + 2 * step <= probe_s + 1e-9) {
        svc_advance(&S, (int64_t)step);
        moved += step;
        (void)svc_pass(&S);
    }
    enable_one(&S, A->t);
    for (int i = 0; i < 2; i++) {
        check_count("lockdown: read before the revocation", 1, svc_read(&S, R->lt[i].t), 200);
        R->lt[i].degraded = R->lt[i].first_fail = R->lt[i].locked = -1;
        R->lt[i].restored_at = R->lt[i].state_ok = R->lt[i].full = -1;
    }
    note("lockdown %s: revoking unwrapKey (B was enabled %.0f s earlier)", label, moved);
    set_unwrap(A->t, 0);
    set_unwrap(B->t, 0);
    int64_t adv0 = S.advanced_s;
    double real0 = now_s();
    struct counts c0 = counts_now();
    double wall0 = now_s();
    for (;;) {
        int fine = 0, all_done = 1, any_revoked = 0;
        for (int i = 0; i < 2; i++) {
            fine |= R->lt[i].phase == 2;
            all_done &= R->lt[i].phase == 3;
            any_revoked |= R->lt[i].phase == 0;
        }
        if (all_done)
            break;
        double now = since(&S, adv0, real0);
        if (now > limit_s) {
            note("lockdown %s: gave up after %.0f simulated seconds", label, now);
            break;
        }
        double d = fine ? R->fine : any_revoked ? step : 10;
        /* never step over a restore moment */
        for (int i = 0; i < 2; i++) {
            struct lock_tenant *L = &R->lt[i];
            if (L->phase == 1 && L->locked + L->restore_delay - now > 0 &&
                L->locked + L->restore_delay - now < d)
                d = L->locked + L->restore_delay - now;
        }
        if (d < 1)
            d = 1;
        svc_advance(&S, (int64_t)d);
        (void)svc_pass(&S);
        R->steps++;
        now = since(&S, adv0, real0);
        for (int i = 0; i < 2; i++) {
            struct lock_tenant *L = &R->lt[i];
            if (L->phase == 3)
                continue;
            char state[32];
            json_decref(svc_encryption(&S, S.c, L->t, state, sizeof(state)));
            unsigned rd = svc_read(&S, L->t);
            if (L->phase == 0) {
                if (L->degraded < 0 && strcmp(state, "degraded") == 0)
                    L->degraded = now;
                if (L->first_fail < 0 && rd != 200) {
                    L->first_fail = now;
                    L->fail_status = rd;
                }
                if (strcmp(state, "locked") == 0) {
                    L->locked = now;
                    L->locked_read = rd;
                    L->phase = 1;
                    struct counts c = counts_now();
                    struct counts dc = counts_diff(&c0, &c);
                    L->calls_revoked = vault_calls(&dc);
                    L->tokens_revoked = dc.tokens;
                    note("  %s: locked at +%.0f s (read %u)", L->label, now, rd);
                }
            }
            if (L->phase == 1 && now >= L->locked + L->restore_delay) {
                set_unwrap(L->t, 1);
                L->restored_at = now;
                L->phase = 2;
                continue;
            }
            if (L->phase == 2) {
                if (L->state_ok < 0 && strcmp(state, "customer") == 0)
                    L->state_ok = now;
                if (strcmp(state, "customer") == 0 && rd == 200) {
                    L->full = now;
                    L->phase = 3;
                    note("  %s: full access %.0f s after unwrapKey came back", L->label,
                         L->full - L->restored_at);
                }
            }
        }
    }
    R->wall_s = now_s() - wall0;
    for (int i = 0; i < 2; i++) {
        struct lock_tenant *L = &R->lt[i];
        char w[160];
        snprintf(w, sizeof(w), "lockdown %s %s: locked", label, L->label);
        check_true(w, L->locked >= 0);
        snprintf(w, sizeof(w), "lockdown %s %s: reads refused with 423 when locked", label,
                 L->label);
        check_true(w, L->locked < 0 || L->locked_read == 423);
        snprintf(w, sizeof(w), "lockdown %s %s: full access after the restore", label, L->label);
        check_true(w, L->full >= 0);
    }
    svc_stop(&S);
    for (int i = 0; i < 2; i++) {
        free(t[i].stok);
        free(t[i].vtok);
    }
    free(t);
    R->done = 1;
}

/* ------------------------------------------------------------------ report */

static void print_phase_table(const char *title, const struct set_result *R, size_t nsets,
                              size_t off, const char *calls_note)
{
    printf("\n#### %s\n\n", title);
    if (calls_note != NULL)
        printf("%s\n\n", calls_note);
    printf("| N | wall s | ms/tenant | vault calls/tenant | list / wrap / unwrap per tenant | 401 "
           "challenges/tenant | tokens/tenant | atrest_vault_calls_total/tenant | raw ms/tenant | "
           "time ÷ raw |\n");
    printf("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < nsets; i++) {
        const struct phase *p = (const struct phase *)((const char *)&R[i] + off);
        if (!p->done)
            continue;
        double n = (double)R[i].n;
        char base[64] = "", ratio[32] = "";
        if (p->has_base) {
            snprintf(base, sizeof(base), "%.2f", p->base_s * 1e3 / n);
            snprintf(ratio, sizeof(ratio), "%.2f", p->wall_s / p->base_s);
        }
        printf("| %zu | %.2f | %.2f | %.2f | %.2f / %.2f / %.2f | %.2f | %.2f | %.2f | %s | %s |\n",
               R[i].n, p->wall_s, p->wall_s * 1e3 / n, (double)vault_calls(&p->c) / n,
               (double)p->c.ok[OP_LIST] / n, (double)p->c.ok[OP_WRAP] / n,
               (double)p->c.ok[OP_UNWRAP] / n, (double)vault_chal(&p->c) / n,
               (double)p->c.tokens / n, p->metric / n, base, ratio);
    }
}

static void print_split_table(const struct set_result *R, size_t nsets)
{
    printf("\n#### Roll passes split: the rolls, then the reserve renewal\n\n");
    printf("| N | pass | roll part ms/tenant | raw ms/tenant | time ÷ raw | reserve part "
           "ms/tenant | raw ms/tenant | time ÷ raw |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < nsets; i++) {
        const struct phase *ph[2] = {&R[i].roll, &R[i].cold};
        static const char *const names[2] = {"roll (key cached)", "cold roll (key not cached)"};
        for (int k = 0; k < 2; k++) {
            const struct phase *p = ph[k];
            if (!p->done || p->split_s <= 0)
                continue;
            double n = (double)R[i].n;
            double roll = p->split_s, res = p->wall_s - p->split_s;
            printf("| %zu | %s | %.2f |", R[i].n, names[k], roll * 1e3 / n);
            if (p->has_base && p->base_split_s > 0)
                printf(" %.2f | %.2f |", p->base_split_s * 1e3 / n, roll / p->base_split_s);
            else
                printf(" | |");
            printf(" %.2f |", res * 1e3 / n);
            if (p->has_base && p->base_split_s > 0)
                printf(" %.2f | %.2f |\n", (p->base_s - p->base_split_s) * 1e3 / n,
                       res / (p->base_s - p->base_split_s));
            else
                printf(" | |\n");
        }
    }
}

static void print_time(double v)
{
    if (v < 0)
        printf(" — |");
    else
        printf(" %.0f s (%s%.1f min) |", v, "", v / 60.0);
}

static void print_lock(const struct lock_result *L)
{
    printf("\n#### Lockdown and restore: %s (probe %lld s, grace %lld s, locked probe %lld…%lld s, "
           "step %.0f s, 1 s after a restore)\n\n",
           L->label, (long long)(L->mo.probe_interval_ms / 1000),
           (long long)(L->mo.grace_ms / 1000), (long long)(L->mo.locked_probe_ms / 1000),
           (long long)(L->mo.locked_probe_max_ms / 1000), L->step);
    printf("| tenant | degraded after | first refused read (status) | locked after | read when "
           "locked | vault calls / tokens until locked (both) | unwrapKey back after | "
           "state customer after the restore | full access after the restore |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 2; i++) {
        const struct lock_tenant *T = &L->lt[i];
        printf("| %s |", T->label);
        print_time(T->degraded);
        if (T->first_fail < 0)
            printf(" — |");
        else
            printf(" %.0f s (%u) |", T->first_fail, T->fail_status);
        print_time(T->locked);
        printf(" %u | %lu / %lu |", T->locked_read, T->calls_revoked, T->tokens_revoked);
        if (T->restored_at < 0)
            printf(" — |");
        else
            printf(" %.0f s of lock |", T->restored_at - T->locked);
        print_time(T->state_ok < 0 ? -1 : T->state_ok - T->restored_at);
        print_time(T->full < 0 ? -1 : T->full - T->restored_at);
        printf("\n");
    }
    printf("\n%u steps, %.1f s of wall time. Times are simulated seconds since the revocation "
           "(restore columns: since unwrapKey was granted again).\n",
           L->steps, L->wall_s);
}

/* ------------------------------------------------------------------ main */

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: bench_byok [--quick] [--tenants N[,N...]] [--clients N] [--ingest-mb N]\n"
            "                  [--no-baseline] [--no-lockdown] [--no-default-lockdown]\n"
            "                  [--secure-heap-mb 2^k] [--log-level debug|info|warn|error|off]\n"
            "                  [--dir DIR] [--keep]\n");
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

static void parse_sets(struct config *cfg, const char *s)
{
    if (s == NULL)
        usage();
    cfg->nsets = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (cfg->nsets == MAX_SETS)
            usage();
        cfg->sets[cfg->nsets++] = (size_t)arg_num(tok, 1, 100000);
    }
    if (cfg->nsets == 0)
        usage();
}

int main(int argc, char **argv)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.clients = 4;
    cfg.ingest_mb = 256;
    cfg.baseline = 1;
    cfg.lockdown = 1;
    cfg.lock_default = 1;
    cfg.log_level = "info";
    cfg.heap_mb = 64;
    int sets_set = 0, ingest_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            cfg.quick = 1;
        } else if (strcmp(a, "--keep") == 0) {
            g_keep = 1;
        } else if (strcmp(a, "--no-baseline") == 0) {
            cfg.baseline = 0;
        } else if (strcmp(a, "--no-lockdown") == 0) {
            cfg.lockdown = 0;
        } else if (strcmp(a, "--no-default-lockdown") == 0) {
            cfg.lock_default = 0;
        } else if (strcmp(a, "--tenants") == 0) {
            parse_sets(&cfg, v);
            sets_set = 1;
            i++;
        } else if (strcmp(a, "--clients") == 0) {
            cfg.clients = (int)arg_num(v, 1, 64);
            i++;
        } else if (strcmp(a, "--ingest-mb") == 0) {
            cfg.ingest_mb = (size_t)arg_num(v, 0, 65536);
            ingest_set = 1;
            i++;
        } else if (strcmp(a, "--secure-heap-mb") == 0) {
            cfg.heap_mb = (size_t)arg_num(v, 1, 1024);
            if ((cfg.heap_mb & (cfg.heap_mb - 1)) != 0)
                usage();
            i++;
        } else if (strcmp(a, "--log-level") == 0 && v != NULL) {
            cfg.log_level = v;
            i++;
        } else if (strcmp(a, "--dir") == 0 && v != NULL) {
            cfg.dir = v;
            i++;
        } else {
            usage();
        }
    }
    if (!sets_set) {
        if (cfg.quick) {
            cfg.sets[0] = 2;
            cfg.nsets = 1;
        } else {
            cfg.sets[0] = 1;
            cfg.sets[1] = 100;
            cfg.sets[2] = 500;
            cfg.nsets = 3;
        }
    }
    if (cfg.quick) {
        if (!ingest_set)
            cfg.ingest_mb = 4;
        cfg.lock_default = 0;
    }

    struct atr_err err;
    atr_err_clear(&err);
    /*
     * One process holds what runs as three in production (each with the
     * atrest binary's 1 MiB): the vault keeps every private key it has used
     * in the secure heap (about 0.9 KiB per RSA-2048 key), so sets of 1000
     * tenants and more need a larger heap here (see BENCHMARKS.md).
     */
    if (atr_secmem_init((size_t)cfg.heap_mb << 20, 1, &err) != ATR_OK)
        die("secure heap: %s", atr_err_msg(&err));
    signal(SIGPIPE, SIG_IGN);
    g_rng ^= (uint64_t)time(NULL) * 0x100000001b3ull ^ (uint64_t)getpid();

    if (cfg.dir != NULL) {
        snprintf(g_work, sizeof(g_work), "%s", cfg.dir);
        if (mkdir(g_work, 0700) != 0)
            die("cannot create %s: %s (it must not exist)", g_work, strerror(errno));
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_work, sizeof(g_work), "%s/atr-byokbench-XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(g_work) == NULL)
            die("mkdtemp: %s", strerror(errno));
    }
    char logpath[1100];
    snprintf(logpath, sizeof(logpath), "%s/bench.log", g_work);
    FILE *logf = fopen(logpath, "w");
    atr_log_level lvl;
    if (logf == NULL || atr_log_level_parse(cfg.log_level, &lvl) != ATR_OK)
        die("log %s / level %s", logpath, cfg.log_level);
    atr_log_set_output(logf);
    atr_log_set_level(lvl);

    char la[64];
    loadavg(la, sizeof(la));
    note("work dir %s, load average %s", g_work, la);
    double wall0 = now_s();
    world_start();
    note("identity server %s, vault %s (vault hosts *%s:%u)", W.idp_url, W.vault_url, VAULT_SUFFIX,
         W.vault_port);

    struct set_result R[MAX_SETS];
    memset(R, 0, sizeof(R));
    for (size_t i = 0; i < cfg.nsets; i++)
        run_set(&R[i], cfg.sets[i], &cfg);

    /* ingest and lockdown: services with the default monitor settings */
    struct ingest_result IR;
    memset(&IR, 0, sizeof(IR));
    struct lock_result LD, LS;
    memset(&LD, 0, sizeof(LD));
    memset(&LS, 0, sizeof(LS));
    if (cfg.ingest_mb > 0) {
        struct tenant *t = calloc(2, sizeof(*t));
        if (t == NULL)
            die("out of memory");
        struct set_ctx x;
        memset(&x, 0, sizeof(x));
        x.t = t;
        (void)run_jobs(2, 2, job_provision, &x, 1);
        struct svc S;
        struct atr_monitor_opts mo;
        memset(&mo, 0, sizeof(mo));
        svc_start(&S, "ingest", &mo, 0);
        x.S = &S;
        (void)run_jobs(2, 1, job_create, &x, 1);
        enable_one(&S, &t[0]);
        run_ingest(&IR, &S, &t[0], &t[1], cfg.ingest_mb);
        svc_stop(&S);
        for (int i = 0; i < 2; i++) {
            free(t[i].stok);
            free(t[i].vtok);
        }
        free(t);
    }
    if (cfg.lockdown) {
        struct atr_monitor_opts mo;
        if (cfg.lock_default) {
            memset(&mo, 0, sizeof(mo));
            run_lockdown(&LD, "default settings", &mo, 10, 1800, 4 * 3600);
        }
        memset(&mo, 0, sizeof(mo));
        mo.probe_interval_ms = 10000;
        mo.grace_ms = 60000;
        run_lockdown(&LS, "probe 10 s, grace 60 s", &mo, 1, cfg.quick ? 120 : 1800, 4 * 3600);
    }
    double wall = now_s() - wall0;
    loadavg(la, sizeof(la));

    /* the report */
    printf("## bench_byok: %s, build %s, %d client threads, load average at the end %s, "
           "total %.0f s\n",
           cfg.quick ? "QUICK (smoke)" : "full", ATR_BENCH_BUILD, cfg.clients, la, wall);
    printf("\n#### Provisioning (not part of the figures)\n\n");
    printf("| N | directories, principals, roles, tokens, vault, key: s | ms/tenant | service "
           "tenants s | imports of a new version s | secure heap bytes/tenant |\n"
           "|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < cfg.nsets; i++)
        printf("| %zu | %.1f | %.2f | %.1f | %.1f | %.0f |\n", R[i].n, R[i].prov_s,
               R[i].prov_s * 1e3 / (double)R[i].n, R[i].create_s, R[i].import_s, R[i].heap_per_key);
    print_phase_table("Enable (PUT /v1/tenants/{t}/encryption)", R, cfg.nsets,
                      offsetof(struct set_result, enable),
                      "Raw: token + list + wrap + unwrap + wrap per tenant, blocking calls from "
                      "the same number of threads.");
    print_phase_table("Reserve fill (the first pass after the enables)", R, cfg.nsets,
                      offsetof(struct set_result, fill),
                      "Raw: 8 wrap per tenant, one after another.");
    print_phase_table("Roll, tenant key cached (one pass: rolls, then reserve renewal)", R,
                      cfg.nsets, offsetof(struct set_result, roll),
                      "Raw: list (batches of 256), then wrap per tenant, then 8 wrap per tenant.");
    print_phase_table("Roll check, no new version (one pass)", R, cfg.nsets,
                      offsetof(struct set_result, check), "Raw: list (batches of 256).");
    print_phase_table(
        "Cold roll, tenant key not cached (one pass: rolls, then reserve renewal)", R, cfg.nsets,
        offsetof(struct set_result, cold),
        "Raw: list (batches of 256), then unwrap + wrap per tenant, then 8 wrap per tenant.");
    print_phase_table("Probe pass (probe and roll check of every tenant)", R, cfg.nsets,
                      offsetof(struct set_result, probe),
                      "Raw: token, then unwrap (batches of 256), then list (batches of 256).");
    print_phase_table("Disable (DELETE /v1/tenants/{t}/encryption)", R, cfg.nsets,
                      offsetof(struct set_result, disable),
                      "Raw: unwrap per tenant, blocking calls from the same number of threads.");
    print_split_table(R, cfg.nsets);
    if (IR.done) {
        double bytes = (double)IR.mb * BATCH_RECORDS * RECORD_BYTES;
        printf("\n#### Ingest: %zu × 1000 records of 1 KiB per tenant (%.3f GB each), 2 client "
               "threads, the two tenants' requests interleaved, %d rounds\n\n",
               IR.mb, bytes / 1e9, IR.rounds);
        printf("| tenant | MB/s (bytes ÷ summed request latencies) | vault calls | per GB | tokens "
               "| atrest_vault_calls_total | keyring misses (both) |\n"
               "|---|---:|---:|---:|---:|---:|---:|\n");
        printf("| customer key | %.1f | %lu | %.2f | %lu | %.0f | %.0f |\n",
               bytes / 1e6 / IR.cust_s, vault_calls(&IR.c),
               (double)vault_calls(&IR.c) / (bytes / 1e9), IR.c.tokens, IR.metric,
               IR.keyring_misses);
        printf("| managed key (baseline) | %.1f | | | | | |\n", bytes / 1e6 / IR.managed_s);
        printf("\nBoth tenants together: %.1f MB/s of wall time. Ratio customer / managed "
               "throughput, median of the per-round ratios: %.3f (rounds:",
               2 * bytes / 1e6 / IR.wall_s, IR.ratio_median);
        for (int i = 0; i < IR.rounds; i++)
            printf(" %.3f", IR.ratio[i]);
        printf(")\n");
    }
    if (LD.done)
        print_lock(&LD);
    if (LS.done)
        print_lock(&LS);
    printf("\nLookups mapped to 127.0.0.1 by the bench's getaddrinfo: %lu.%s\n",
           atomic_load(&g_gai_mapped), g_failed ? " SOME CHECKS FAILED (see stderr)." : "");
    fflush(stdout);

    world_stop();
    atr_log_set_output(stderr);
    fclose(logf);
    rm_work();
    return g_failed ? 1 : 0;
}
