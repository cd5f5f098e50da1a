/* SPDX-License-Identifier: Apache-2.0 */
#include "identity/jwks.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "base/alloc.h"
#include "crypto/jwk.h"
#include "http/client.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_TIMEOUT_MS         10000u
#define DEFAULT_MIN_REFRESH_MS     ((int64_t)300000)
#define DEFAULT_RETRY_MS           ((int64_t)10000)
#define DEFAULT_MAX_AGE_MS         ((int64_t)12 * 3600 * 1000)

/* ---- key sets ----------------------------------------------------------- */

struct jwks_entry {
    char *kid;
    struct atr_rsa_key *key;
};

struct atr_jwks {
    atomic_size_t refs;
    size_t n;
    struct jwks_entry *e;
};

static void set_free(struct atr_jwks *set)
{
    for (size_t i = 0; i < set->n; i++) {
        atr_free(set->e[i].kid);
        atr_rsa_key_free(set->e[i].key);
    }
    atr_free(set->e);
    atr_free(set);
}

void atr_jwks_retain(struct atr_jwks *set)
{
    if (set != NULL)
        atomic_fetch_add(&set->refs, 1);
}

void atr_jwks_release(struct atr_jwks *set)
{
    if (set != NULL && atomic_fetch_sub(&set->refs, 1) == 1)
        set_free(set);
}

size_t atr_jwks_count(const struct atr_jwks *set)
{
    return set != NULL ? set->n : 0;
}

const char *atr_jwks_kid_at(const struct atr_jwks *set, size_t i)
{
    return set != NULL && i < set->n ? set->e[i].kid : NULL;
}

const struct atr_rsa_key *atr_jwks_get(const struct atr_jwks *set, const char *kid)
{
    if (set == NULL || kid == NULL)
        return NULL;
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->e[i].kid, kid) == 0)
            return set->e[i].key;
    }
    return NULL;
}

static int string_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);
    return json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0;
}

/*
 * Reads optional string member @p name of entry @p i; wrong type is
 * ATR_E_PARSE.
 */
static atr_status opt_string(const json_t **out, const json_t *jwk, const char *name, size_t i,
                             struct atr_err *err)
{
    *out = json_object_get(jwk, name);
    if (*out != NULL && !json_is_string(*out))
        return atr_err_set(err, ATR_E_PARSE, "JWKS: key %zu: \"%s\" must be a string", i, name);
    return ATR_OK;
}

/* Decides whether entry @p i is for us: 1 use it, 0 skip it. */
static atr_status classify(int *use_it, const json_t *jwk, size_t i, struct atr_err *err)
{
    *use_it = 0;
    if (!json_is_object(jwk))
        return atr_err_set(err, ATR_E_PARSE, "JWKS: key %zu is not an object", i);
    const json_t *kty, *use, *alg, *kid;
    ATR_TRY(opt_string(&kty, jwk, "kty", i, err));
    ATR_TRY(opt_string(&use, jwk, "use", i, err));
    ATR_TRY(opt_string(&alg, jwk, "alg", i, err));
    ATR_TRY(opt_string(&kid, jwk, "kid", i, err));
    if (kty == NULL)
        return atr_err_set(err, ATR_E_PARSE, "JWKS: key %zu has no \"kty\"", i);
    if (!string_is(kty, "RSA") && !string_is(kty, "RSA-HSM"))
        return ATR_OK; /* EC, oct, OKP ...: not ours */
    if (use != NULL && !string_is(use, "sig"))
        return ATR_OK; /* an encryption key */
    if (alg != NULL && !string_is(alg, "RS256"))
        return ATR_OK; /* meant for another algorithm */
    if (kid == NULL)
        return ATR_OK; /* cannot be addressed by a token */
    size_t klen = json_string_length(kid);
    if (klen == 0 || klen > ATR_JWT_MAX_KID || strlen(json_string_value(kid)) != klen)
        return atr_err_set(err, ATR_E_INVALID, "JWKS: key %zu: \"kid\" must be 1..%d characters", i,
                           ATR_JWT_MAX_KID);
    static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};
    for (size_t j = 0; j < ATR_ARRAY_LEN(private_members); j++) {
        if (json_object_get(jwk, private_members[j]) != NULL)
            return atr_err_set(err, ATR_E_INVALID, "JWKS: key %zu holds private key material", i);
    }
    *use_it = 1;
    return ATR_OK;
}

atr_status atr_jwks_from_json(struct atr_jwks **out, const json_t *doc, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (!json_is_object(doc))
        return atr_err_set(err, ATR_E_PARSE, "JWKS: not a JSON object");
    const json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys))
        return atr_err_set(err, ATR_E_PARSE, "JWKS: \"keys\" must be an array");
    size_t n = json_array_size(keys);
    if (n > ATR_JWKS_MAX_KEYS)
        return atr_err_set(err, ATR_E_TOO_LARGE, "JWKS: more than %d keys", ATR_JWKS_MAX_KEYS);

    atr_status rc = ATR_OK;
    struct atr_jwks *set = atr_calloc(1, sizeof(*set));
    if (set == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "JWKS: out of memory");
    atomic_init(&set->refs, 1);
    if (n > 0 && (set->e = atr_calloc(n, sizeof(*set->e))) == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "JWKS: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *jwk = json_array_get(keys, i);
        int use_it = 0;
        if ((rc = classify(&use_it, jwk, i, err)) != ATR_OK)
            goto done;
        if (!use_it)
            continue;
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        if (atr_jwks_get(set, kid) != NULL) {
            rc = atr_err_set(err, ATR_E_INVALID, "JWKS: key %zu: duplicate \"kid\"", i);
            goto done;
        }
        struct atr_err sub;
        atr_err_clear(&sub);
        struct jwks_entry *e = &set->e[set->n];
        rc = atr_jwk_import(&e->key, jwk, &sub);
        if (rc == ATR_E_NOMEM) {
            atr_err_set(err, rc, "JWKS: out of memory");
            goto done;
        }
        if (rc != ATR_OK) {
            rc = atr_err_set(err, ATR_E_INVALID, "JWKS: key %zu: %s", i, atr_err_msg(&sub));
            goto done;
        }
        e->kid = atr_strdup(kid);
        set->n++; /* the entry is owned by the set from here on */
        if (e->kid == NULL) {
            rc = atr_err_set(err, ATR_E_NOMEM, "JWKS: out of memory");
            goto done;
        }
    }
done:
    if (rc != ATR_OK) {
        /* a failed entry may hold a key without a kid: set_free handles NULLs */
        set_free(set);
        return rc;
    }
    *out = set;
    return ATR_OK;
}

atr_status atr_jwks_parse(struct atr_jwks **out, const char *text, size_t len, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (text == NULL && len != 0)
        return atr_err_set(err, ATR_E_INVALID, "JWKS: no input");
    if (len > ATR_JWKS_MAX_TEXT)
        return atr_err_set(err, ATR_E_TOO_LARGE, "JWKS: the document is longer than %zu bytes",
                           ATR_JWKS_MAX_TEXT);
    json_error_t jerr;
    json_t *doc = json_loadb(text == NULL ? "" : text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return atr_err_set(err, ATR_E_NOMEM, "JWKS: out of memory");
        return atr_err_set(err, ATR_E_PARSE, "JWKS: not valid JSON (line %d, column %d)", jerr.line,
                           jerr.column);
    }
    atr_status rc = atr_jwks_from_json(out, doc, err);
    json_decref(doc);
    return rc;
}

/* ---- the cache ---------------------------------------------------------- */

struct atr_jwks_cache {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled when a fetch ends */
    char *uri;
    unsigned timeout_ms;
    int64_t min_refresh_ms, retry_ms, max_age_ms;
    const struct atr_clock *clock;
    struct atr_http_client *http; /* used only by the fetching thread */

    /* guarded by lock */
    struct atr_jwks *set;  /* the last good set, or NULL */
    int64_t set_mono;      /* when it was fetched */
    int attempted;         /* a fetch was ever attempted */
    int64_t attempt_mono;  /* when the last attempt started */
    int last_ok;           /* the last attempt succeeded */
    struct atr_err last;   /* why the last attempt failed */
    int fetching;          /* a thread is fetching */
    unsigned long fetches; /* attempts so far */
};

atr_status atr_jwks_cache_new(struct atr_jwks_cache **out, const struct atr_jwks_cache_opts *opts,
                              struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && opts != NULL);
    *out = NULL;
    if (opts->jwks_uri == NULL || strncmp(opts->jwks_uri, "https://", 8) != 0)
        return atr_err_set(err, ATR_E_CONFIG, "JWKS: jwks_uri must be an https URL");
    if (opts->min_refresh_interval_ms < 0 || opts->retry_interval_ms < 0 || opts->max_age_ms < 0)
        return atr_err_set(err, ATR_E_CONFIG, "JWKS: intervals must not be negative");

    struct atr_jwks_cache *c = atr_calloc(1, sizeof(*c));
    if (c == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "JWKS: out of memory");
    c->uri = atr_strdup(opts->jwks_uri);
    if (c->uri == NULL) {
        atr_free(c);
        return atr_err_set(err, ATR_E_NOMEM, "JWKS: out of memory");
    }
    c->timeout_ms = opts->timeout_ms != 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->min_refresh_ms =
        opts->min_refresh_interval_ms != 0 ? opts->min_refresh_interval_ms : DEFAULT_MIN_REFRESH_MS;
    c->retry_ms = opts->retry_interval_ms != 0 ? opts->retry_interval_ms : DEFAULT_RETRY_MS;
    c->max_age_ms = opts->max_age_ms != 0 ? opts->max_age_ms : DEFAULT_MAX_AGE_MS;
    c->clock = opts->clock != NULL ? opts->clock : atr_clock_real();
    atr_err_clear(&c->last);

    struct atr_http_client_opts ho;
    memset(&ho, 0, sizeof(ho));
    ho.ca_file = opts->ca_file;
    ho.connect_timeout_ms =
        opts->connect_timeout_ms != 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    ho.timeout_ms = c->timeout_ms;
    ho.max_response = ATR_JWKS_MAX_TEXT;
    atr_status rc = atr_http_client_new(&c->http, &ho, err);
    if (rc != ATR_OK) {
        atr_err_wrap(err, rc, "JWKS");
        atr_free(c->uri);
        atr_free(c);
        return rc;
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        atr_http_client_free(c->http);
        atr_free(c->uri);
        atr_free(c);
        return atr_err_set(err, ATR_E_INTERNAL, "JWKS: cannot create a mutex");
    }
    if (pthread_cond_init(&c->cond, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        atr_http_client_free(c->http);
        atr_free(c->uri);
        atr_free(c);
        return atr_err_set(err, ATR_E_INTERNAL, "JWKS: cannot create a condition variable");
    }
    *out = c;
    return ATR_OK;
}

void atr_jwks_cache_free(struct atr_jwks_cache *c)
{
    if (c == NULL)
        return;
    atr_jwks_release(c->set);
    atr_http_client_free(c->http);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    atr_free(c->uri);
    atr_free(c);
}

unsigned long atr_jwks_cache_fetches(struct atr_jwks_cache *c)
{
    pthread_mutex_lock(&c->lock);
    unsigned long n = c->fetches;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* One GET of the jwks_uri and a parse; no lock held. */
static atr_status fetch(struct atr_jwks **out, struct atr_jwks_cache *c, struct atr_err *err)
{
    *out = NULL;
    static const struct atr_http_header accept[] = {{"Accept", "application/json"}};
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = c->uri;
    rq.headers = accept;
    rq.nheaders = ATR_ARRAY_LEN(accept);
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    atr_status rc = atr_http_client_send(&resp, c->http, &rq, err);
    if (rc != ATR_OK) {
        atr_err_wrap(err, rc, "JWKS fetch");
        goto done;
    }
    if (resp.status != 200) {
        rc = atr_err_set(err, ATR_E_UPSTREAM, "JWKS fetch: the server answered HTTP %u",
                         resp.status);
        goto done;
    }
    struct atr_err sub;
    atr_err_clear(&sub);
    rc = atr_jwks_parse(out, (const char *)resp.body.ptr, resp.body.len, &sub);
    if (rc == ATR_E_NOMEM)
        atr_err_set(err, rc, "JWKS fetch: out of memory");
    else if (rc != ATR_OK)
        rc =
            atr_err_set(err, ATR_E_UPSTREAM, "JWKS fetch: invalid document: %s", atr_err_msg(&sub));
done:
    atr_http_client_resp_cleanup(&resp);
    return rc;
}

/*
 * Runs one fetch as the single fetcher. Called and returns with the lock
 * held; drops it during I/O. @p err receives the fetch's own error.
 */
static atr_status fetch_locked(struct atr_jwks_cache *c, struct atr_err *err)
{
    c->fetching = 1;
    c->attempted = 1;
    c->attempt_mono = atr_clock_mono_ms(c->clock);
    c->fetches++;
    pthread_mutex_unlock(&c->lock);

    struct atr_jwks *set = NULL;
    struct atr_err ferr;
    atr_err_clear(&ferr);
    atr_status rc = fetch(&set, c, &ferr);

    pthread_mutex_lock(&c->lock);
    if (rc == ATR_OK) {
        atr_jwks_release(c->set);
        c->set = set;
        c->set_mono = atr_clock_mono_ms(c->clock);
        c->last_ok = 1;
        atr_err_clear(&c->last);
    } else {
        c->last_ok = 0;
        c->last = ferr;
        if (err != NULL)
            *err = ferr;
    }
    c->fetching = 0;
    pthread_cond_broadcast(&c->cond);
    return rc;
}

atr_status atr_jwks_cache_refresh(struct atr_jwks_cache *c, struct atr_err *err)
{
    ATR_ASSERT_ARG(c != NULL);
    pthread_mutex_lock(&c->lock);
    while (c->fetching)
        pthread_cond_wait(&c->cond, &c->lock);
    atr_status rc = fetch_locked(c, err);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/*
 * May a new fetch start now? (lock held) For an unknown kid the gap after a
 * failed attempt is the short retry interval; a refresh of a stale set whose
 * keys still serve always waits the long interval, so that an unreachable
 * server costs a request thread a timeout at most once per interval.
 */
static int fetch_allowed(const struct atr_jwks_cache *c, int64_t now, int unknown_kid)
{
    if (!c->attempted)
        return 1;
    int64_t gap = c->last_ok || !unknown_kid ? c->min_refresh_ms : c->retry_ms;
    return now - c->attempt_mono >= gap;
}

atr_status atr_jwks_cache_get(struct atr_jwks **out_set, const struct atr_rsa_key **out_key,
                              struct atr_jwks_cache *c, const char *kid, struct atr_err *err)
{
    ATR_ASSERT_ARG(out_set != NULL && out_key != NULL);
    *out_set = NULL;
    *out_key = NULL;
    ATR_ASSERT_ARG(c != NULL);
    if (kid == NULL || kid[0] == '\0')
        return atr_err_set(err, ATR_E_INVALID, "JWKS: no kid");

    atr_status rc = ATR_OK;
    int fetched = 0; /* this call ran a fetch */
    pthread_mutex_lock(&c->lock);
    for (;;) {
        int64_t now = atr_clock_mono_ms(c->clock);
        const struct atr_rsa_key *key = atr_jwks_get(c->set, kid);
        int stale = c->set != NULL && now - c->set_mono >= c->max_age_ms;
        if (key != NULL && (!stale || fetched || c->fetching || !fetch_allowed(c, now, 0))) {
            /* fresh, or stale but a refresh is done, running or not allowed yet */
            atr_jwks_retain(c->set);
            *out_set = c->set;
            *out_key = key;
            rc = ATR_OK;
            break;
        }
        if (c->fetching) {
            /* an unknown kid: wait for the running fetch, then look again */
            while (c->fetching)
                pthread_cond_wait(&c->cond, &c->lock);
            fetched = 1; /* a fetch just ended: do not start another for this call */
            continue;
        }
        if (!fetched && fetch_allowed(c, now, key == NULL)) {
            (void)fetch_locked(c, NULL);
            fetched = 1;
            continue;
        }
        /* unknown kid and no (further) fetch possible now */
        if (c->last_ok)
            rc = atr_err_set(err, ATR_E_NOT_FOUND, "JWKS: no key has this kid");
        else
            rc = atr_err_set(err, ATR_E_UNAVAILABLE,
                             "JWKS: unknown kid and the keys could not be fetched (%s)",
                             atr_err_msg(&c->last));
        break;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- verification ------------------------------------------------------- */

static atr_status check_opts(const struct atr_jwks_verify_opts *opts, struct atr_err *err)
{
    if (opts->issuer_template == NULL)
        return ATR_OK;
    if (opts->jwt.issuer != NULL)
        return atr_err_set(err, ATR_E_INVALID, "JWT: set either an issuer or an issuer template");
    const char *at = strstr(opts->issuer_template, "{tenantid}");
    if (at == NULL || strstr(at + 1, "{tenantid}") != NULL)
        return atr_err_set(err, ATR_E_INVALID,
                           "JWT: the issuer template needs exactly one \"{tenantid}\"");
    return ATR_OK;
}

/* As jwt.c: an alg short and plain enough to name in a message. */
static int is_plain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '+'))
            return 0;
    }
    return 1;
}

/* Verification once the key is chosen. */
static atr_status verify_tail(struct atr_jwt_claims *out, const struct atr_rsa_key *key,
                              const char *kid, const char *token, size_t len,
                              const struct atr_jwks_verify_opts *opts, struct atr_err *err)
{
    ATR_TRY(atr_jwt_verify_with_kid(out, token, len, key, kid, &opts->jwt, err));
    if (opts->issuer_template != NULL) {
        atr_status rc = atr_jwt_check_issuer_template(out, opts->issuer_template, err);
        if (rc != ATR_OK) {
            atr_jwt_claims_cleanup(out);
            return rc;
        }
    }
    return ATR_OK;
}

atr_status atr_jwks_verify(struct atr_jwt_claims *out, const struct atr_jwks *set,
                           const char *token, size_t len, const struct atr_jwks_verify_opts *opts,
                           struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    memset(out, 0, sizeof(*out));
    ATR_ASSERT_ARG(set != NULL && opts != NULL);
    ATR_TRY(check_opts(opts, err));
    struct atr_jwt_header h;
    ATR_TRY(atr_jwt_decode_header(&h, token, len, err));
    atr_status rc;
    const struct atr_rsa_key *key = NULL;
    if (h.kid == NULL || h.kid[0] == '\0')
        rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: kid: the header has no \"kid\"");
    else if ((key = atr_jwks_get(set, h.kid)) == NULL)
        rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: kid: no key has the token's kid");
    else
        rc = verify_tail(out, key, h.kid, token, len, opts, err);
    atr_jwt_header_cleanup(&h);
    return rc;
}

atr_status atr_jwks_cache_verify(struct atr_jwt_claims *out, struct atr_jwks_cache *c,
                                 const char *token, size_t len,
                                 const struct atr_jwks_verify_opts *opts, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    memset(out, 0, sizeof(*out));
    ATR_ASSERT_ARG(c != NULL && opts != NULL);
    ATR_TRY(check_opts(opts, err));
    struct atr_jwt_header h;
    ATR_TRY(atr_jwt_decode_header(&h, token, len, err));
    atr_status rc;
    struct atr_jwks *set = NULL;
    const struct atr_rsa_key *key = NULL;
    if (strcmp(h.alg, "RS256") != 0) {
        /* before any lookup: a bad alg must not cause a fetch */
        if (is_plain_name(h.alg))
            rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: alg \"%s\" is not allowed (only RS256)",
                             h.alg);
        else
            rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: alg is not allowed (only RS256)");
        goto done;
    }
    if (h.kid == NULL || h.kid[0] == '\0') {
        rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: kid: the header has no \"kid\"");
        goto done;
    }
    struct atr_err sub;
    atr_err_clear(&sub);
    rc = atr_jwks_cache_get(&set, &key, c, h.kid, &sub);
    if (rc == ATR_E_NOT_FOUND) {
        rc = atr_err_set(err, ATR_E_UNAUTHORIZED, "JWT: kid: no key has the token's kid");
        goto done;
    }
    if (rc != ATR_OK) {
        if (err != NULL)
            *err = sub;
        goto done;
    }
    rc = verify_tail(out, key, h.kid, token, len, opts, err);
done:
    atr_jwks_release(set);
    atr_jwt_header_cleanup(&h);
    return rc;
}
