/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unit.service.monitor: the key monitor's decisions on a test clock with
 * scripted probe/roll outcomes: probe and roll intervals, degraded on the
 * first failure, backoff with jitter within bounds and never below
 * Retry-After, lockdown exactly at the grace (transient failures do not
 * extend it), locked probes at the locked interval with a capped backoff,
 * restore on the first success, a failing transition retried, request
 * notes, untracking, and the thread doing the same on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "base/clock.h"
#include "service/monitor.h"

#define S 1000LL
#define M (60 * S)

static struct atr_test_clock tclock;

struct fake {
    int probe_ok, roll_ok, rolled_next, transient;
    int64_t retry_after_ms;
    int fail_transition;
    int probes, rolls, refills, probe_calls;
    size_t max_batch;
    int64_t probe_at[64];
    atr_monitor_health last_from, last_to;
    int transitions;
    char last_code[ATR_MONITOR_CODE_MAX];
};

static void f_probe1(struct atr_monitor_outcome *o, struct fake *f)
{
    if (f->probes < 64)
        f->probe_at[f->probes] = atr_clock_mono_ms(&tclock.base);
    f->probes++;
    o->ok = f->probe_ok;
    if (!o->ok) {
        o->transient = f->transient;
        o->retry_after_ms = f->retry_after_ms;
        snprintf(o->code, sizeof(o->code), "%s", f->transient ? "VaultThrottled" : "KeyDisabled");
        snprintf(o->reason, sizeof(o->reason), "scripted failure");
    }
}

static void f_probe(struct atr_monitor_outcome *o, const char *const *tenants, size_t n, void *ctx)
{
    struct fake *f = ctx;
    (void)tenants;
    f->probe_calls++;
    if (n > f->max_batch)
        f->max_batch = n;
    for (size_t i = 0; i < n; i++)
        f_probe1(&o[i], f);
}

static void f_roll(struct atr_monitor_outcome *o, const char *const *tenants, size_t n, void *ctx)
{
    struct fake *f = ctx;
    (void)tenants;
    for (size_t i = 0; i < n; i++) {
        f->rolls++;
        o[i].ok = f->roll_ok;
        o[i].rolled = f->roll_ok && f->rolled_next;
        if (!o[i].ok)
            snprintf(o[i].code, sizeof(o[i].code), "PermissionMissing");
    }
    f->rolled_next = 0;
}

static atr_status f_transition(const char *tenant, atr_monitor_health from, atr_monitor_health to,
                               const struct atr_monitor_outcome *why, void *ctx)
{
    struct fake *f = ctx;
    (void)tenant;
    if (f->fail_transition)
        return ATR_E_IO;
    f->transitions++;
    f->last_from = from;
    f->last_to = to;
    snprintf(f->last_code, sizeof(f->last_code), "%s", why->code);
    return ATR_OK;
}

static int f_refill(const char *tenant, void *ctx)
{
    struct fake *f = ctx;
    (void)tenant;
    f->refills++;
    return 1;
}

static struct atr_monitor *make(struct fake *f, int thread)
{
    memset(f, 0, sizeof(*f));
    f->probe_ok = f->roll_ok = 1;
    struct atr_monitor_opts o;
    memset(&o, 0, sizeof(o));
    o.no_thread = !thread;
    struct atr_monitor_ops ops = {f_probe, f_roll, f_transition, f_refill, f};
    struct atr_monitor *m = NULL;
    assert_int_equal(atr_monitor_new(&m, &o, &tclock.base, &ops, NULL), ATR_OK);
    return m;
}

static atr_monitor_health health(struct atr_monitor *m)
{
    struct atr_monitor_status st;
    assert_true(atr_monitor_status(&st, m, "t1"));
    return st.health;
}

static void step(struct atr_monitor *m, int64_t ms)
{
    atr_test_clock_advance(&tclock, ms);
    atr_monitor_run(m, NULL);
}

static int setup(void **state)
{
    (void)state;
    return atr_test_clock_init(&tclock, 1700000000000LL) == ATR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atr_test_clock_cleanup(&tclock);
    return 0;
}

static void test_defaults_and_arguments(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    struct atr_monitor_opts o;
    atr_monitor_settings(&o, m);
    assert_int_equal(o.roll_interval_ms, 1 * M);
    assert_int_equal(o.probe_interval_ms, 5 * M);
    assert_int_equal(o.grace_ms, 60 * M);
    assert_int_equal(o.locked_probe_ms, 15 * S);
    assert_int_equal(atr_monitor_track(m, "", ATR_MONITOR_HEALTHY, 1, NULL), ATR_E_INVALID);
    assert_int_equal(atr_monitor_track(m, "t1", 0, 1, NULL), ATR_E_INVALID);
    struct atr_monitor_status st;
    assert_false(atr_monitor_status(&st, m, "nobody"));
    atr_monitor_free(m);

    struct atr_monitor_opts bad;
    memset(&bad, 0, sizeof(bad));
    bad.grace_ms = -1;
    bad.no_thread = 1;
    struct atr_monitor_ops ops = {f_probe, f_roll, f_transition, NULL, &f};
    assert_int_equal(atr_monitor_new(&m, &bad, &tclock.base, &ops, NULL), ATR_E_INVALID);
    ops.probe = NULL;
    bad.grace_ms = 0;
    assert_int_equal(atr_monitor_new(&m, &bad, &tclock.base, &ops, NULL), ATR_E_INVALID);
}

static void test_intervals(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    atr_monitor_run(m, NULL);
    assert_int_equal(f.probes, 0);  /* just enabled: proven now */
    assert_int_equal(f.refills, 1); /* the reserve is filled at once */
    step(m, 1 * M - 1);
    assert_int_equal(f.rolls, 0);
    step(m, 1);
    assert_int_equal(f.rolls, 1);
    for (int i = 0; i < 4; i++)
        step(m, 1 * M);
    assert_int_equal(f.rolls, 5);
    assert_int_equal(f.probes, 1); /* at 5 min */
    /* an hour of health: 12 probes, 60 roll checks, never locked */
    for (int i = 0; i < 60; i++)
        step(m, 1 * M);
    assert_int_equal(f.probes, 13);
    assert_int_equal(f.rolls, 65);
    assert_int_equal(f.transitions, 0);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY);
    /* a roll to a new version is reported and refills the reserve */
    f.rolled_next = 1;
    struct atr_monitor_pass p;
    atr_test_clock_advance(&tclock, 1 * M);
    atr_monitor_run(m, &p);
    assert_int_equal(p.rolled, 1);
    struct atr_monitor_status st;
    assert_true(atr_monitor_status(&st, m, "t1"));
    assert_int_equal(st.last_roll_ms, atr_clock_now_ms(&tclock.base));
    assert_int_equal(f.refills, 2);
    atr_monitor_free(m);
}

static void test_degraded_backoff_lock_restore(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    int64_t t_ok = atr_clock_mono_ms(&tclock.base);
    f.probe_ok = 0;
    step(m, 5 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    assert_int_equal(f.last_to, ATR_MONITOR_DEGRADED);
    assert_int_equal(f.refills, 0); /* never refilled while unhealthy */
    assert_string_equal(f.last_code, "KeyDisabled");
    /* roll checks pause while the unwrap fails */
    int rolls = f.rolls;
    /* retries: each delay within [d/2, d] of 5 s, 10 s, 20 s ... capped at 5 min */
    int64_t d = 5 * S;
    for (int k = 0; k < 8; k++) {
        int before = f.probes;
        int64_t from = f.probe_at[before - 1];
        while (f.probes == before)
            step(m, 100);
        int64_t gap = f.probe_at[before] - from;
        assert_true(gap >= d / 2);
        assert_true(gap <= d + 100);
        d = d * 2 > 5 * M ? 5 * M : d * 2;
    }
    assert_int_equal(f.rolls, rolls);
    /* the lock comes exactly at the grace after the last success, whatever the retries */
    int64_t lock_at = t_ok + 60 * M;
    while (health(m) != ATR_MONITOR_LOCKED) {
        assert_true(atr_clock_mono_ms(&tclock.base) <= lock_at);
        step(m, 1 * S);
    }
    assert_true(atr_clock_mono_ms(&tclock.base) >= lock_at);
    assert_int_equal(f.last_to, ATR_MONITOR_LOCKED);
    /* locked: probed after 15 s (jittered), then backing off up to 5 min */
    int before = f.probes;
    int64_t locked_at = atr_clock_mono_ms(&tclock.base);
    while (f.probes == before)
        step(m, 100);
    assert_true(f.probe_at[before] - locked_at <= 15 * S + 100);
    for (int k = 0; k < 12; k++) {
        int b = f.probes;
        while (f.probes == b)
            step(m, 1 * S);
        assert_true(f.probe_at[b] - f.probe_at[b - 1] <= 5 * M + 1 * S);
    }
    /* restore on the first good probe */
    f.probe_ok = 1;
    while (health(m) == ATR_MONITOR_LOCKED)
        step(m, 1 * S);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY);
    assert_int_equal(f.last_from, ATR_MONITOR_LOCKED);
    assert_int_equal(f.refills, 1); /* the restore refills (and the owner folds) */
    atr_monitor_free(m);
}

static void test_retry_after_and_transient(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    int64_t t_ok = atr_clock_mono_ms(&tclock.base);
    f.probe_ok = 0;
    f.transient = 1;
    f.retry_after_ms = 120 * S;
    step(m, 5 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    int before = f.probes;
    step(m, 119 * S);
    assert_int_equal(f.probes, before); /* honours Retry-After */
    step(m, 1 * S);
    assert_int_equal(f.probes, before + 1);
    /* throttling never extends the key's life past the grace */
    while (health(m) != ATR_MONITOR_LOCKED)
        step(m, 30 * S);
    assert_true(atr_clock_mono_ms(&tclock.base) - t_ok <= 60 * M + 30 * S);
    atr_monitor_free(m);
}

static void test_roll_failure_and_notes(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    f.roll_ok = 0;
    step(m, 1 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    assert_string_equal(f.last_code, "PermissionMissing");
    /* unwraps still work: good probes keep it from locking, but it stays degraded */
    for (int i = 0; i < 90; i++)
        step(m, 1 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    f.roll_ok = 1;
    step(m, 1 * M);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY);

    /* a request's successful unwrap restarts the grace; a failure has it probed at once */
    f.probe_ok = 0;
    step(m, 5 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    step(m, 50 * M);
    atr_monitor_note_ok(m, "t1");
    step(m, 30 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    f.probe_ok = 1;
    atr_monitor_note_failure(m, "t1");
    step(m, 5 * M);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY);
    atr_monitor_free(m);
}

static void test_transition_failure_and_untrack(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    f.probe_ok = 0;
    f.fail_transition = 1;
    step(m, 5 * M);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY); /* not stored: not applied */
    f.fail_transition = 0;
    step(m, 5 * S);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    atr_monitor_untrack(m, "t1");
    assert_int_equal(atr_monitor_count(m), 0);
    int probes = f.probes;
    step(m, 2 * 60 * M);
    assert_int_equal(f.probes, probes);
    /* at start-up a locked tenant is probed at once */
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_LOCKED, 0, NULL), ATR_OK);
    f.probe_ok = 1;
    atr_monitor_run(m, NULL);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY);
    atr_monitor_free(m);
}

/* while probes fail, requests may try the vault once per backoff_min; a success recovers */
static void test_may_try(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    assert_true(atr_monitor_may_try(m, "t1", NULL));
    assert_true(atr_monitor_may_try(m, "t1", NULL)); /* healthy: always */
    assert_true(atr_monitor_may_try(m, "unknown", NULL));
    f.probe_ok = 0;
    step(m, 5 * M);
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    struct atr_monitor_status st;
    assert_true(atr_monitor_may_try(m, "t1", &st));
    assert_false(atr_monitor_may_try(m, "t1", &st));
    assert_string_equal(st.code, "KeyDisabled");
    atr_test_clock_advance(&tclock, 5 * S);
    assert_true(atr_monitor_may_try(m, "t1", NULL));
    assert_false(atr_monitor_may_try(m, "t1", NULL));
    /* a request's unwrap worked: the next pass probes at once and recovers */
    f.probe_ok = 1;
    atr_monitor_note_ok(m, "t1");
    int probes = f.probes;
    atr_monitor_run(m, NULL);
    assert_int_equal(f.probes, probes + 1);
    assert_int_equal(health(m), ATR_MONITOR_HEALTHY);
    assert_true(atr_monitor_may_try(m, "t1", NULL));
    atr_monitor_free(m);
}

/* a reader that met an unfolded block asks for a refill (fold); only a healthy tenant gets it */
static void test_refill_soon(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    atr_monitor_run(m, NULL);
    assert_int_equal(f.refills, 1);
    atr_monitor_run(m, NULL);
    assert_int_equal(f.refills, 1);
    atr_monitor_refill_soon(m, "t1");
    atr_monitor_refill_soon(m, "nobody");
    atr_monitor_run(m, NULL);
    assert_int_equal(f.refills, 2);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_LOCKED, 0, NULL), ATR_OK);
    f.probe_ok = 0;
    atr_monitor_refill_soon(m, "t1");
    atr_monitor_run(m, NULL);
    assert_int_equal(f.refills, 2);
    atr_monitor_free(m);
}

/* many tenants: probed in batches of at most ATR_MONITOR_BATCH, each once per interval */
static void test_batches(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 0);
    char name[32];
    for (int i = 0; i < 600; i++) {
        snprintf(name, sizeof(name), "tenant-%03d", i);
        assert_int_equal(atr_monitor_track(m, name, ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    }
    assert_int_equal(atr_monitor_count(m), 600);
    step(m, 5 * M);
    assert_int_equal(f.probes, 600);
    assert_int_equal(f.probe_calls, 3); /* 256 + 256 + 88 */
    assert_int_equal(f.max_batch, ATR_MONITOR_BATCH);
    atr_monitor_free(m);
}

static void test_thread(void **state)
{
    (void)state;
    struct fake f;
    struct atr_monitor *m = make(&f, 1);
    assert_int_equal(atr_monitor_track(m, "t1", ATR_MONITOR_HEALTHY, 1, NULL), ATR_OK);
    f.probe_ok = 0;
    atr_test_clock_advance(&tclock, 5 * M);
    atr_monitor_kick(m);
    /* the thread sees the moved clock within a second; bounded wait */
    for (int i = 0; i < 300 && health(m) != ATR_MONITOR_DEGRADED; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(health(m), ATR_MONITOR_DEGRADED);
    atr_test_clock_advance(&tclock, 61 * M);
    atr_monitor_kick(m);
    for (int i = 0; i < 300 && health(m) != ATR_MONITOR_LOCKED; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(health(m), ATR_MONITOR_LOCKED);
    atr_monitor_free(m); /* stops and joins the thread */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intervals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_degraded_backoff_lock_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_and_transient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roll_failure_and_notes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transition_failure_and_untrack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refill_soon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_may_try, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
