/* SPDX-License-Identifier: Apache-2.0 */
#include "base/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"

/* ---- the real clock ------------------------------------------------------ */

static int64_t timespec_ms(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000 + (int64_t)(ts->tv_nsec / 1000000);
}

static int64_t real_now_ms(const struct atr_clock *c)
{
    (void)c;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return timespec_ms(&ts);
}

static int64_t real_mono_ms(const struct atr_clock *c)
{
    (void)c;
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return timespec_ms(&ts);
}

static const struct atr_clock_ops real_ops = {real_now_ms, real_mono_ms};

/* Singleton: the read-only real clock. */
static const struct atr_clock real_clock = {&real_ops};

const struct atr_clock *atr_clock_real(void)
{
    return &real_clock;
}

/* A NULL clock means the real clock, so a forgotten injection cannot crash. */
static const struct atr_clock *clock_or_real(const struct atr_clock *c)
{
    return (c == NULL || c->ops == NULL) ? &real_clock : c;
}

int64_t atr_clock_now_ms(const struct atr_clock *c)
{
    c = clock_or_real(c);
    return c->ops->now_ms(c);
}

int64_t atr_clock_now_s(const struct atr_clock *c)
{
    int64_t ms = atr_clock_now_ms(c);
    /* floor division, so that -1 ms is second -1, not 0 */
    return ms >= 0 ? ms / 1000 : -((-(ms + 1)) / 1000) - 1;
}

int64_t atr_clock_mono_ms(const struct atr_clock *c)
{
    c = clock_or_real(c);
    return c->ops->mono_ms(c);
}

/* ---- the test clock ------------------------------------------------------ */

static void tc_lock(const struct atr_test_clock *tc)
{
    if (tc->lock != NULL)
        pthread_mutex_lock((pthread_mutex_t *)tc->lock);
}

static void tc_unlock(const struct atr_test_clock *tc)
{
    if (tc->lock != NULL)
        pthread_mutex_unlock((pthread_mutex_t *)tc->lock);
}

static int64_t test_now_ms(const struct atr_clock *c)
{
    const struct atr_test_clock *tc = (const struct atr_test_clock *)c;
    tc_lock(tc);
    int64_t v = tc->now_ms;
    tc_unlock(tc);
    return v;
}

static int64_t test_mono_ms(const struct atr_clock *c)
{
    const struct atr_test_clock *tc = (const struct atr_test_clock *)c;
    tc_lock(tc);
    int64_t v = tc->mono_ms;
    tc_unlock(tc);
    return v;
}

static const struct atr_clock_ops test_ops = {test_now_ms, test_mono_ms};

atr_status atr_test_clock_init(struct atr_test_clock *tc, int64_t start_ms)
{
    ATR_ASSERT_ARG(tc != NULL);
    tc->base.ops = &test_ops;
    tc->now_ms = start_ms;
    /* monotonic time starts equal to wall time; only differences matter */
    tc->mono_ms = start_ms;
    tc->lock = NULL;
    pthread_mutex_t *m = atr_malloc(sizeof(*m));
    if (m == NULL)
        return ATR_E_NOMEM;
    if (pthread_mutex_init(m, NULL) != 0) {
        atr_free(m);
        return ATR_E_NOMEM;
    }
    tc->lock = m;
    return ATR_OK;
}

void atr_test_clock_cleanup(struct atr_test_clock *tc)
{
    if (tc == NULL || tc->lock == NULL)
        return;
    pthread_mutex_destroy((pthread_mutex_t *)tc->lock);
    ATR_FREE(tc->lock);
}

static int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    return a + b;
}

void atr_test_clock_advance(struct atr_test_clock *tc, int64_t ms)
{
    if (tc == NULL || ms <= 0)
        return; /* time never runs backwards; negative steps are ignored */
    tc_lock(tc);
    tc->now_ms = add_sat(tc->now_ms, ms);
    tc->mono_ms = add_sat(tc->mono_ms, ms);
    tc_unlock(tc);
}

static int64_t offset_now_ms(const struct atr_clock *c)
{
    const struct atr_offset_clock *oc = (const struct atr_offset_clock *)c;
    return add_sat(atr_clock_now_ms(oc->under), atomic_load(&oc->offset_ms));
}

static int64_t offset_mono_ms(const struct atr_clock *c)
{
    const struct atr_offset_clock *oc = (const struct atr_offset_clock *)c;
    return add_sat(atr_clock_mono_ms(oc->under), atomic_load(&oc->offset_ms));
}

static const struct atr_clock_ops offset_ops = {offset_now_ms, offset_mono_ms};

void atr_offset_clock_init(struct atr_offset_clock *oc, const struct atr_clock *under)
{
    if (oc == NULL || under == NULL)
        return;
    oc->base.ops = &offset_ops;
    oc->under = under;
    atomic_init(&oc->offset_ms, 0);
}

void atr_offset_clock_advance(struct atr_offset_clock *oc, int64_t ms)
{
    if (oc == NULL || ms <= 0)
        return;
    int64_t cur = atomic_load(&oc->offset_ms);
    while (!atomic_compare_exchange_weak(&oc->offset_ms, &cur, add_sat(cur, ms))) {
    }
}

int64_t atr_offset_clock_offset(const struct atr_offset_clock *oc)
{
    return oc != NULL ? atomic_load(&oc->offset_ms) : 0;
}

void atr_test_clock_set(struct atr_test_clock *tc, int64_t now_ms)
{
    if (tc == NULL)
        return;
    tc_lock(tc);
    tc->now_ms = now_ms;
    tc_unlock(tc);
}

/* ---- formatting ---------------------------------------------------------- */

void atr_clock_format_rfc3339(int64_t ms, char out[32])
{
    /* floor division keeps pre-1970 instants correct (-1 ms = 23:59:59.999) */
    int64_t secs = ms / 1000;
    int64_t frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        /* unreachable for 64-bit time_t and int64 milliseconds */
        snprintf(out, 32, "%s", "0000-00-00T00:00:00.000Z");
        return;
    }
    /* formatted into a roomy buffer so no field width can truncate silently */
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    size_t n = strnlen(tmp, 31);
    memcpy(out, tmp, n);
    out[n] = '\0';
}
