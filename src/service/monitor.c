/* SPDX-License-Identifier: Apache-2.0 */
#include "service/monitor.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/log.h"
#include "crypto/rand.h"

#define TENANT_MAX   64
#define WAIT_MIN_MS  5
#define WAIT_MAX_MS  1000 /* a moved clock is seen within a second */
#define BACKOFF_BITS 20   /* doubling stops long before an overflow */

struct entry {
    char tenant[TENANT_MAX + 1];
    atr_monitor_health health;
    int64_t last_ok;    /* monotonic ms of the last successful unwrap */
    int64_t next_probe; /* monotonic ms */
    int64_t next_roll;  /* monotonic ms */
    unsigned failures;  /* consecutive failed probes */
    int roll_failing;   /* the last roll check failed */
    int refill_due;     /* call refill when healthy */
    int refill_retry;   /* the last refill failed: again after the next good probe */
    int64_t last_try;   /* monotonic ms of a request's unwrap while probes fail, 0 none */
    int64_t w_last_ok, w_last_check, w_last_roll, w_last_roll_check; /* wall ms */
    char code[ATR_MONITOR_CODE_MAX];
    char reason[ATR_MONITOR_REASON_MAX];
    char roll_code[ATR_MONITOR_CODE_MAX];
    char roll_reason[ATR_MONITOR_REASON_MAX];
};

struct atr_monitor {
    struct atr_monitor_opts o;
    const struct atr_clock *clock;
    struct atr_monitor_ops ops;
    pthread_mutex_t lock; /* the table and the flags below */
    pthread_cond_t wake;
    pthread_mutex_t run_lock; /* one pass at a time */
    struct entry *e;
    size_t n, cap;
    int stop, kicked, has_thread;
    pthread_t thread;
};

static int64_t mono(const struct atr_monitor *m)
{
    return atr_clock_mono_ms(m->clock);
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return b > 0 && a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* A uniformly random delay in [d/2, d] (jitter: tenants that failed together spread out). */
static int64_t jitter(int64_t d)
{
    uint32_t r = 0;
    if (d < 2 || atr_rand_bytes(&r, sizeof(r), NULL) != ATR_OK)
        return d;
    int64_t half = d / 2;
    return half + (int64_t)((uint64_t)r % (uint64_t)(d - half + 1));
}

/* base * 2^(k-1), capped (k >= 1). */
static int64_t backoff(int64_t base, int64_t cap, unsigned k)
{
    int64_t d = base;
    for (unsigned i = 1; i < k && i < BACKOFF_BITS && d < cap; i++)
        d *= 2;
    return d < cap ? d : cap;
}

static struct entry *find(struct atr_monitor *m, const char *tenant)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].tenant, tenant) == 0)
            return &m->e[i];
    return NULL;
}

const char *atr_monitor_health_name(atr_monitor_health h)
{
    switch (h) {
    case ATR_MONITOR_HEALTHY:
        return "healthy";
    case ATR_MONITOR_DEGRADED:
        return "degraded";
    case ATR_MONITOR_LOCKED:
        return "locked";
    }
    return "unknown";
}

/* ---- the pass ------------------------------------------------------------------------------ */

struct work {
    char tenant[TENANT_MAX + 1];
    int lock, probe, roll;
};

/* Applies a health change through the owner; updates the entry when it worked. */
static int move(struct atr_monitor *m, const char *tenant, atr_monitor_health from,
                atr_monitor_health to, const struct atr_monitor_outcome *why,
                struct atr_monitor_pass *p)
{
    if (from == to)
        return 1;
    if (m->ops.transition(tenant, from, to, why, m->ops.ctx) != ATR_OK)
        return 0;
    p->transitions++;
    if (to == ATR_MONITOR_LOCKED)
        p->locked++;
    if (from == ATR_MONITOR_LOCKED)
        p->restored++;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL)
        e->health = to;
    pthread_mutex_unlock(&m->lock);
    return 1;
}

static void copy_reason(char *code, char *reason, const struct atr_monitor_outcome *o)
{
    snprintf(code, ATR_MONITOR_CODE_MAX, "%s", o->code[0] != '\0' ? o->code : "KeyUnavailable");
    snprintf(reason, ATR_MONITOR_REASON_MAX, "%s",
             o->reason[0] != '\0' ? o->reason : "the customer key could not be used");
}

/* The health a tenant whose unwrap works should have, and the outcome that says why. */
static atr_monitor_health working_health(const struct entry *e, struct atr_monitor_outcome *why)
{
    memset(why, 0, sizeof(*why));
    if (!e->roll_failing) {
        why->ok = 1;
        return ATR_MONITOR_HEALTHY;
    }
    snprintf(why->code, sizeof(why->code), "%s", e->roll_code);
    snprintf(why->reason, sizeof(why->reason), "%s", e->roll_reason);
    return ATR_MONITOR_DEGRADED;
}

static void do_lock(struct atr_monitor *m, const char *tenant, struct atr_monitor_pass *p)
{
    struct atr_monitor_outcome why;
    memset(&why, 0, sizeof(why));
    atr_monitor_health from;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e == NULL || e->health == ATR_MONITOR_LOCKED) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    from = e->health;
    snprintf(why.code, sizeof(why.code), "%s", e->code[0] != '\0' ? e->code : "GraceExpired");
    snprintf(why.reason, sizeof(why.reason), "%s",
             e->reason[0] != '\0' ? e->reason
                                  : "no unwrap with the customer key succeeded within the grace");
    pthread_mutex_unlock(&m->lock);
    if (move(m, tenant, from, ATR_MONITOR_LOCKED, &why, p)) {
        pthread_mutex_lock(&m->lock);
        if ((e = find(m, tenant)) != NULL) {
            e->failures = 0;
            e->next_probe = add_sat(mono(m), jitter(m->o.locked_probe_ms));
            snprintf(e->code, sizeof(e->code), "%s", why.code);
            snprintf(e->reason, sizeof(e->reason), "%s", why.reason);
        }
        pthread_mutex_unlock(&m->lock);
    }
}

/* Applies the outcome @p op of a probe of @p tenant. */
static void apply_probe(struct atr_monitor *m, const char *tenant,
                        const struct atr_monitor_outcome *op, struct atr_monitor_pass *p)
{
    struct atr_monitor_outcome o = *op;
    p->probes++;
    if (o.gone) {
        atr_monitor_untrack(m, tenant);
        return;
    }
    int64_t now = mono(m), wall = atr_clock_now_ms(m->clock);
    atr_monitor_health from, to;
    struct atr_monitor_outcome why;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e == NULL) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    from = e->health;
    e->w_last_check = wall;
    if (o.ok) {
        e->last_ok = now;
        e->w_last_ok = wall;
        e->failures = 0;
        e->last_try = 0;
        e->next_probe = add_sat(now, m->o.probe_interval_ms);
        to = working_health(e, &why);
        if (to == ATR_MONITOR_HEALTHY) {
            e->code[0] = e->reason[0] = '\0';
            if (from != ATR_MONITOR_HEALTHY || e->refill_retry)
                e->refill_due = 1;
        } else {
            snprintf(e->code, sizeof(e->code), "%s", e->roll_code);
            snprintf(e->reason, sizeof(e->reason), "%s", e->roll_reason);
        }
        if (from == ATR_MONITOR_LOCKED)
            e->next_roll = now; /* a version may have appeared meanwhile */
    } else {
        e->failures++;
        copy_reason(e->code, e->reason, &o);
        int64_t d = from == ATR_MONITOR_LOCKED
                        ? backoff(m->o.locked_probe_ms, m->o.locked_probe_max_ms, e->failures + 1)
                        : backoff(m->o.backoff_min_ms, m->o.backoff_max_ms, e->failures);
        d = jitter(d);
        if (o.retry_after_ms > d)
            d = o.retry_after_ms;
        e->next_probe = add_sat(now, d);
        to = from == ATR_MONITOR_LOCKED ? ATR_MONITOR_LOCKED : ATR_MONITOR_DEGRADED;
        why = o;
        copy_reason(why.code, why.reason, &o);
    }
    pthread_mutex_unlock(&m->lock);
    if (!move(m, tenant, from, to, &why, p)) {
        /* not persisted: try again soon */
        pthread_mutex_lock(&m->lock);
        if ((e = find(m, tenant)) != NULL)
            e->next_probe = add_sat(now, m->o.backoff_min_ms);
        pthread_mutex_unlock(&m->lock);
    }
}

/* Applies the outcome @p op of a roll check of @p tenant. */
static void apply_roll(struct atr_monitor *m, const char *tenant,
                       const struct atr_monitor_outcome *op, struct atr_monitor_pass *p)
{
    struct atr_monitor_outcome o = *op;
    p->rolls++;
    if (o.gone) {
        atr_monitor_untrack(m, tenant);
        return;
    }
    if (o.rolled)
        p->rolled++;
    int64_t now = mono(m), wall = atr_clock_now_ms(m->clock);
    atr_monitor_health from, to = 0;
    struct atr_monitor_outcome why;
    memset(&why, 0, sizeof(why));
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e == NULL) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    from = e->health;
    e->w_last_roll_check = wall;
    e->next_roll = add_sat(now, m->o.roll_interval_ms);
    if (o.ok) {
        if (o.rolled)
            e->w_last_roll = wall;
        e->roll_failing = 0;
        e->roll_code[0] = e->roll_reason[0] = '\0';
        /* a roll unwraps with the stored version: it is also a successful unwrap */
        if (o.rolled) {
            e->last_ok = now;
            e->w_last_ok = wall;
        }
        to = from;
        if (from == ATR_MONITOR_DEGRADED && e->failures == 0) {
            to = working_health(e, &why);
            e->code[0] = e->reason[0] = '\0';
        }
        if (o.rolled)
            e->refill_due = 1; /* the owner dropped reserve keys of the old version */
    } else {
        e->roll_failing = 1;
        copy_reason(e->roll_code, e->roll_reason, &o);
        to = from;
        if (from == ATR_MONITOR_HEALTHY) {
            to = ATR_MONITOR_DEGRADED;
            why = o;
            copy_reason(why.code, why.reason, &o);
            snprintf(e->code, sizeof(e->code), "%s", why.code);
            snprintf(e->reason, sizeof(e->reason), "%s", why.reason);
        }
        if (o.retry_after_ms > m->o.roll_interval_ms)
            e->next_roll = add_sat(now, o.retry_after_ms);
    }
    pthread_mutex_unlock(&m->lock);
    (void)move(m, tenant, from, to, &why, p);
}

/* Collects the due work; returns how many items (the array is owned by the caller). */
static size_t collect(struct atr_monitor *m, struct work **out)
{
    *out = NULL;
    int64_t now = mono(m);
    pthread_mutex_lock(&m->lock);
    size_t n = 0;
    struct work *w = m->n > 0 ? atr_calloc(m->n, sizeof(*w)) : NULL;
    for (size_t i = 0; w != NULL && i < m->n; i++) {
        const struct entry *e = &m->e[i];
        int lock = e->health != ATR_MONITOR_LOCKED && now >= add_sat(e->last_ok, m->o.grace_ms);
        int probe = now >= e->next_probe;
        int roll =
            !lock && e->health != ATR_MONITOR_LOCKED && e->failures == 0 && now >= e->next_roll;
        if (lock || probe || roll) {
            snprintf(w[n].tenant, sizeof(w[n].tenant), "%s", e->tenant);
            w[n].lock = lock;
            w[n].probe = probe;
            w[n].roll = roll;
            n++;
        }
    }
    pthread_mutex_unlock(&m->lock);
    *out = w;
    return w != NULL ? n : 0;
}

/* Calls refill for every healthy tenant that needs it (after an enable, a probe, a restore). */
static void refill_due(struct atr_monitor *m)
{
    if (m->ops.refill == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    size_t n = 0;
    struct work *w = m->n > 0 ? atr_calloc(m->n, sizeof(*w)) : NULL;
    for (size_t i = 0; w != NULL && i < m->n; i++) {
        struct entry *e = &m->e[i];
        if (e->health == ATR_MONITOR_HEALTHY && e->refill_due) {
            e->refill_due = 0;
            snprintf(w[n++].tenant, sizeof(w[0].tenant), "%s", e->tenant);
        }
    }
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        int done = m->ops.refill(w[i].tenant, m->ops.ctx);
        pthread_mutex_lock(&m->lock);
        struct entry *e = find(m, w[i].tenant);
        if (e != NULL)
            e->refill_retry = !done;
        pthread_mutex_unlock(&m->lock);
    }
    atr_free(w);
}

void atr_monitor_run(struct atr_monitor *m, struct atr_monitor_pass *out)
{
    struct atr_monitor_pass p;
    memset(&p, 0, sizeof(p));
    if (m == NULL) {
        if (out != NULL)
            *out = p;
        return;
    }
    pthread_mutex_lock(&m->run_lock);
    struct work *w = NULL;
    size_t n = collect(m, &w);
    const char **names = n > 0 ? atr_calloc(n, sizeof(*names)) : NULL;
    struct atr_monitor_outcome *outs =
        n > 0 ? atr_calloc(n < ATR_MONITOR_BATCH ? n : ATR_MONITOR_BATCH, sizeof(*outs)) : NULL;
    if (n > 0 && (names == NULL || outs == NULL))
        n = 0; /* out of memory: the next pass tries again */
    for (size_t i = 0; i < n; i++)
        if (w[i].lock)
            do_lock(m, w[i].tenant, &p);
    /* probes, a batch at a time */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].probe)
            names[k++] = w[i].tenant;
    for (size_t at = 0; at < k; at += ATR_MONITOR_BATCH) {
        size_t c = k - at < ATR_MONITOR_BATCH ? k - at : ATR_MONITOR_BATCH;
        memset(outs, 0, c * sizeof(*outs));
        m->ops.probe(outs, names + at, c, m->ops.ctx);
        for (size_t j = 0; j < c; j++)
            apply_probe(m, names[at + j], &outs[j], &p);
    }
    /* roll checks, only where the unwrap works (this pass's probe included) */
    k = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = w[i].roll ? find(m, w[i].tenant) : NULL;
        if (e != NULL && e->health != ATR_MONITOR_LOCKED && e->failures == 0)
            names[k++] = w[i].tenant;
    }
    pthread_mutex_unlock(&m->lock);
    for (size_t at = 0; at < k; at += ATR_MONITOR_BATCH) {
        size_t c = k - at < ATR_MONITOR_BATCH ? k - at : ATR_MONITOR_BATCH;
        memset(outs, 0, c * sizeof(*outs));
        m->ops.roll(outs, names + at, c, m->ops.ctx);
        for (size_t j = 0; j < c; j++)
            apply_roll(m, names[at + j], &outs[j], &p);
    }
    atr_free(outs);
    atr_free(names);
    atr_free(w);
    refill_due(m);
    pthread_mutex_unlock(&m->run_lock);
    if (p.transitions > 0 || p.rolled > 0)
        atr_log_fields(ATR_LOG_INFO, "service.monitor.pass", NULL, "monitor pass", "probes", "i",
                       (long long)p.probes, "rolled", "i", (long long)p.rolled, "locked", "i",
                       (long long)p.locked, "restored", "i", (long long)p.restored, NULL);
    if (out != NULL)
        *out = p;
}

/* ---- the thread ---------------------------------------------------------------------------- */

/* Milliseconds until the next due item, clamped to [WAIT_MIN_MS, WAIT_MAX_MS]. */
static int64_t next_wait(struct atr_monitor *m)
{
    int64_t now = mono(m), next = INT64_MAX;
    for (size_t i = 0; i < m->n; i++) {
        const struct entry *e = &m->e[i];
        if (e->next_probe < next)
            next = e->next_probe;
        if (e->health != ATR_MONITOR_LOCKED) {
            if (e->failures == 0 && e->next_roll < next)
                next = e->next_roll;
            int64_t lock_at = add_sat(e->last_ok, m->o.grace_ms);
            if (lock_at < next)
                next = lock_at;
        }
    }
    int64_t d = next == INT64_MAX ? WAIT_MAX_MS : next - now;
    return d < WAIT_MIN_MS ? WAIT_MIN_MS : d > WAIT_MAX_MS ? WAIT_MAX_MS : d;
}

static void *monitor_main(void *arg)
{
    struct atr_monitor *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        int64_t d = next_wait(m);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (d % 1000) * 1000000;
        ts.tv_sec += (time_t)(d / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!m->stop && !m->kicked && pthread_cond_timedwait(&m->wake, &m->lock, &ts) == 0) {
        }
        if (m->stop)
            break;
        m->kicked = 0;
        pthread_mutex_unlock(&m->lock);
        atr_monitor_run(m, NULL);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ---- lifecycle and tracking ---------------------------------------------------------------- */

static atr_status apply_defaults(struct atr_monitor_opts *o, struct atr_err *err)
{
    int64_t *v[] = {&o->roll_interval_ms, &o->probe_interval_ms,   &o->grace_ms,
                    &o->locked_probe_ms,  &o->locked_probe_max_ms, &o->backoff_min_ms,
                    &o->backoff_max_ms};
    const int64_t d[] = {ATR_MONITOR_ROLL_DEFAULT_MS,       ATR_MONITOR_PROBE_DEFAULT_MS,
                         ATR_MONITOR_GRACE_DEFAULT_MS,      ATR_MONITOR_LOCKED_PROBE_DEFAULT_MS,
                         ATR_MONITOR_LOCKED_MAX_DEFAULT_MS, ATR_MONITOR_BACKOFF_MIN_DEFAULT_MS,
                         ATR_MONITOR_BACKOFF_MAX_DEFAULT_MS};
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        if (*v[i] < 0)
            return atr_err_set(err, ATR_E_INVALID, "monitor: intervals must be positive");
        if (*v[i] == 0)
            *v[i] = d[i];
    }
    if (o->locked_probe_max_ms < o->locked_probe_ms)
        o->locked_probe_max_ms = o->locked_probe_ms;
    if (o->backoff_max_ms < o->backoff_min_ms)
        o->backoff_max_ms = o->backoff_min_ms;
    return ATR_OK;
}

atr_status atr_monitor_new(struct atr_monitor **out, const struct atr_monitor_opts *opts,
                           const struct atr_clock *clock, const struct atr_monitor_ops *ops,
                           struct atr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || clock == NULL || ops == NULL || ops->probe == NULL || ops->roll == NULL ||
        ops->transition == NULL)
        return atr_err_set(err, ATR_E_INVALID, "monitor: missing argument");
    struct atr_monitor_opts o;
    memset(&o, 0, sizeof(o));
    if (opts != NULL)
        o = *opts;
    ATR_TRY(apply_defaults(&o, err));
    struct atr_monitor *m = atr_calloc(1, sizeof(*m));
    if (m == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "monitor: out of memory");
    m->o = o;
    m->clock = clock;
    m->ops = *ops;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int bad = pthread_mutex_init(&m->lock, NULL) != 0;
    bad |= pthread_mutex_init(&m->run_lock, NULL) != 0;
    bad |= pthread_cond_init(&m->wake, &ca) != 0;
    pthread_condattr_destroy(&ca);
    if (bad) {
        atr_free(m);
        return atr_err_set(err, ATR_E_INTERNAL, "monitor: cannot create its locks");
    }
    if (!o.no_thread) {
        if (pthread_create(&m->thread, NULL, monitor_main, m) != 0) {
            atr_monitor_free(m);
            return atr_err_set(err, ATR_E_INTERNAL, "monitor: cannot start its thread");
        }
        m->has_thread = 1;
    }
    *out = m;
    return ATR_OK;
}

void atr_monitor_free(struct atr_monitor *m)
{
    if (m == NULL)
        return;
    if (m->has_thread) {
        pthread_mutex_lock(&m->lock);
        m->stop = 1;
        pthread_cond_broadcast(&m->wake);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->run_lock);
    pthread_mutex_destroy(&m->lock);
    atr_free(m->e);
    atr_free(m);
}

void atr_monitor_settings(struct atr_monitor_opts *out, const struct atr_monitor *m)
{
    *out = m->o;
}

static int64_t spread(int64_t interval)
{
    uint32_t r = 0;
    if (interval < 2 || atr_rand_bytes(&r, sizeof(r), NULL) != ATR_OK)
        return 0;
    return (int64_t)((uint64_t)r % (uint64_t)interval);
}

atr_status atr_monitor_track(struct atr_monitor *m, const char *tenant, atr_monitor_health health,
                             int fresh, struct atr_err *err)
{
    if (m == NULL || tenant == NULL || tenant[0] == '\0' || strlen(tenant) > TENANT_MAX ||
        health < ATR_MONITOR_HEALTHY || health > ATR_MONITOR_LOCKED)
        return atr_err_set(err, ATR_E_INVALID, "monitor: bad tenant or health");
    int64_t now = mono(m);
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL) {
        e->health = health;
        if (fresh) {
            e->last_ok = now;
            e->w_last_ok = atr_clock_now_ms(m->clock);
            e->failures = 0;
            e->roll_failing = 0;
            e->code[0] = e->reason[0] = '\0';
            e->next_probe = add_sat(now, m->o.probe_interval_ms);
            e->next_roll = add_sat(now, m->o.roll_interval_ms);
            e->refill_due = 1;
        }
        goto out;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap == 0 ? 16 : m->cap * 2;
        struct entry *ne = atr_realloc(m->e, cap * sizeof(*ne));
        if (ne == NULL) {
            rc = atr_err_set(err, ATR_E_NOMEM, "monitor: out of memory");
            goto out;
        }
        m->e = ne;
        m->cap = cap;
    }
    e = &m->e[m->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    e->health = health;
    /* the grace starts now: a key cached before a restart is gone anyway */
    e->last_ok = now;
    e->refill_due = 1;
    if (fresh) {
        e->w_last_ok = atr_clock_now_ms(m->clock);
        e->next_probe = add_sat(now, m->o.probe_interval_ms);
        e->next_roll = add_sat(now, m->o.roll_interval_ms);
    } else if (health == ATR_MONITOR_HEALTHY) {
        e->next_probe = add_sat(now, spread(m->o.probe_interval_ms));
        e->next_roll = add_sat(now, spread(m->o.roll_interval_ms));
    } else {
        e->next_probe = now; /* learn the truth at once */
        e->next_roll = add_sat(now, m->o.roll_interval_ms);
    }
out:
    if (rc == ATR_OK) {
        m->kicked = 1;
        pthread_cond_broadcast(&m->wake);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void atr_monitor_untrack(struct atr_monitor *m, const char *tenant)
{
    if (m == NULL || tenant == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL) {
        size_t i = (size_t)(e - m->e);
        m->e[i] = m->e[m->n - 1];
        m->n--;
    }
    pthread_mutex_unlock(&m->lock);
}

static void status_locked(struct atr_monitor_status *out, const struct atr_monitor *m,
                          const struct entry *e);

int atr_monitor_may_try(struct atr_monitor *m, const char *tenant, struct atr_monitor_status *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (m == NULL || tenant == NULL)
        return 1;
    int ok = 1;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL && e->failures > 0) {
        int64_t now = mono(m);
        if (e->last_try != 0 && now - e->last_try < m->o.backoff_min_ms)
            ok = 0;
        else
            e->last_try = now;
        if (out != NULL)
            status_locked(out, m, e);
    }
    pthread_mutex_unlock(&m->lock);
    return ok;
}

void atr_monitor_note_ok(struct atr_monitor *m, const char *tenant)
{
    if (m == NULL || tenant == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL && e->health != ATR_MONITOR_LOCKED) {
        e->last_ok = mono(m);
        e->w_last_ok = atr_clock_now_ms(m->clock);
        if (e->failures > 0) {
            /* the key works again: let a probe confirm it and recover now */
            e->next_probe = e->last_ok;
            e->last_try = 0;
            m->kicked = 1;
            pthread_cond_broadcast(&m->wake);
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void atr_monitor_note_failure(struct atr_monitor *m, const char *tenant)
{
    if (m == NULL || tenant == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    int64_t now = mono(m);
    /* probe soon, but never hammer the vault faster than the backoff allows */
    if (e != NULL && e->failures == 0 && e->next_probe > now) {
        e->next_probe = now;
        m->kicked = 1;
        pthread_cond_broadcast(&m->wake);
    }
    pthread_mutex_unlock(&m->lock);
}

void atr_monitor_refill_soon(struct atr_monitor *m, const char *tenant)
{
    if (m == NULL || tenant == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL && !e->refill_due) {
        e->refill_due = 1;
        m->kicked = 1;
        pthread_cond_broadcast(&m->wake);
    }
    pthread_mutex_unlock(&m->lock);
}

int atr_monitor_status(struct atr_monitor_status *out, struct atr_monitor *m, const char *tenant)
{
    memset(out, 0, sizeof(*out));
    if (m == NULL || tenant == NULL)
        return 0;
    pthread_mutex_lock(&m->lock);
    struct entry *e = find(m, tenant);
    if (e != NULL)
        status_locked(out, m, e);
    pthread_mutex_unlock(&m->lock);
    return e != NULL;
}

static void status_locked(struct atr_monitor_status *out, const struct atr_monitor *m,
                          const struct entry *e)
{
    {
        int64_t now = mono(m), wall = atr_clock_now_ms(m->clock);
        out->health = e->health;
        out->last_ok_ms = e->w_last_ok;
        out->last_check_ms = e->w_last_check;
        out->last_roll_ms = e->w_last_roll;
        out->last_roll_check_ms = e->w_last_roll_check;
        out->next_probe_ms = add_sat(wall, e->next_probe - now);
        out->lock_at_ms =
            e->health == ATR_MONITOR_LOCKED ? 0 : add_sat(wall, e->last_ok + m->o.grace_ms - now);
        out->failures = e->failures;
        snprintf(out->code, sizeof(out->code), "%s", e->code);
        snprintf(out->reason, sizeof(out->reason), "%s", e->reason);
    }
}

size_t atr_monitor_count(struct atr_monitor *m)
{
    if (m == NULL)
        return 0;
    pthread_mutex_lock(&m->lock);
    size_t n = m->n;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void atr_monitor_kick(struct atr_monitor *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->kicked = 1;
    pthread_cond_broadcast(&m->wake);
    pthread_mutex_unlock(&m->lock);
}
