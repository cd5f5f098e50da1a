/* SPDX-License-Identifier: Apache-2.0 */
/* service/keyring: the tenant-key cache, tenant keys and data keys. */
#include "lib/testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/secmem.h"
#include "kms/provider.h"
#include "kms/srk_file.h"
#include "service/keyring.h"

#define T0_MS 1700000000000LL

static struct atr_test_clock tclock;

static int setup(void **state)
{
    (void)state;
    return atr_test_clock_init(&tclock, T0_MS) == ATR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atr_test_clock_cleanup(&tclock);
    return 0;
}

static int64_t mono(void)
{
    return atr_clock_mono_ms(&tclock.base);
}

static struct atr_keyring *ring_new(size_t max, int64_t ttl)
{
    struct atr_keyring_opts o = {max, ttl, 0};
    struct atr_keyring *r = NULL;
    assert_int_equal(atr_keyring_new(&r, &o, &tclock.base, NULL), ATR_OK);
    return r;
}

static void key_of(struct atr_secret *k, uint8_t fill)
{
    assert_int_equal(atr_secret_init(k, 32), ATR_OK);
    memset(atr_secret_data(k), fill, 32);
}

static void put(struct atr_keyring *r, const char *tenant, uint8_t fill, int64_t deadline)
{
    struct atr_secret k = ATR_SECRET_INIT;
    key_of(&k, fill);
    assert_int_equal(atr_keyring_put(r, tenant, &k, deadline, NULL), ATR_OK);
    atr_secret_cleanup(&k);
}

/* ATR_OK and the fill byte of the key, or the error. */
static atr_status get(struct atr_keyring *r, const char *tenant, int *fill)
{
    struct atr_secret k = ATR_SECRET_INIT;
    atr_status rc = atr_keyring_get(&k, r, tenant, NULL);
    if (rc == ATR_OK) {
        assert_int_equal(atr_secret_len(&k), 32);
        *fill = atr_secret_cdata(&k)[0];
    } else {
        assert_false(atr_secret_is_set(&k));
    }
    atr_secret_cleanup(&k);
    return rc;
}

static int hit(struct atr_keyring *r, const char *tenant)
{
    int fill;
    return get(r, tenant, &fill) == ATR_OK;
}

/* ---- cache -------------------------------------------------------------------------------- */

static void test_new_arguments(void **state)
{
    (void)state;
    struct atr_keyring *r = NULL;
    struct atr_keyring_opts o = {0, 1000, 0};
    assert_int_equal(atr_keyring_new(&r, &o, &tclock.base, NULL), ATR_E_INVALID);
    o.max_entries = ATR_KEYRING_MAX_ENTRIES_HARD + 1;
    assert_int_equal(atr_keyring_new(&r, &o, &tclock.base, NULL), ATR_E_INVALID);
    o.max_entries = 4;
    o.ttl_ms = 0;
    assert_int_equal(atr_keyring_new(&r, &o, &tclock.base, NULL), ATR_E_INVALID);
    o.ttl_ms = 1000;
    assert_int_equal(atr_keyring_new(&r, &o, NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_new(&r, NULL, &tclock.base, NULL), ATR_E_INVALID);
    assert_null(r);
    for (unsigned long nth = 1; nth <= 2; nth++) {
        atr_alloc_fail_after(nth);
        assert_int_equal(atr_keyring_new(&r, &o, &tclock.base, NULL), ATR_E_NOMEM);
        atr_alloc_fail_reset();
        assert_null(r);
    }
    atr_keyring_free(NULL);
}

static atr_status use_fn(const struct atr_secret *tk, void *ctx, struct atr_err *err)
{
    (void)err;
    *(int *)ctx = atr_secret_cdata(tk)[0];
    return ATR_OK;
}

static atr_status use_fail(const struct atr_secret *tk, void *ctx, struct atr_err *err)
{
    (void)tk;
    (void)ctx;
    return atr_err_set(err, ATR_E_CRYPTO, "callback failed");
}

static void test_put_get_use_counters(void **state)
{
    (void)state;
    struct atr_keyring *r = ring_new(8, 60000);
    int fill = 0;
    assert_int_equal(get(r, "a", &fill), ATR_E_NOT_FOUND);
    put(r, "a", 0xa1, 0);
    put(r, "b", 0xb1, 0);
    assert_int_equal(get(r, "a", &fill), ATR_OK);
    assert_int_equal(fill, 0xa1);
    assert_int_equal(get(r, "b", &fill), ATR_OK);
    assert_int_equal(fill, 0xb1);
    assert_int_equal(atr_keyring_count(r), 2);

    /* put replaces */
    put(r, "a", 0xa2, 0);
    assert_int_equal(get(r, "a", &fill), ATR_OK);
    assert_int_equal(fill, 0xa2);
    assert_int_equal(atr_keyring_count(r), 2);

    /* borrowing through a callback */
    int seen = 0;
    assert_int_equal(atr_keyring_use(r, "b", use_fn, &seen, NULL), ATR_OK);
    assert_int_equal(seen, 0xb1);
    assert_int_equal(atr_keyring_use(r, "zz", use_fn, &seen, NULL), ATR_E_NOT_FOUND);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_keyring_use(r, "b", use_fail, NULL, &err), ATR_E_CRYPTO);
    assert_string_equal(err.msg, "callback failed");

    struct atr_keyring_stats st;
    atr_keyring_stats(&st, r);
    assert_int_equal(st.hits, 5);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions + st.expirations + st.removals + st.loads, 0);

    /* arguments */
    struct atr_secret k = ATR_SECRET_INIT, small = ATR_SECRET_INIT;
    assert_int_equal(atr_keyring_put(r, "a", &k, 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_secret_init(&small, 16), ATR_OK);
    assert_int_equal(atr_keyring_put(r, "a", &small, 0, NULL), ATR_E_INVALID);
    key_of(&k, 1);
    assert_int_equal(atr_keyring_put(r, "", &k, 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_put(r, NULL, &k, 0, NULL), ATR_E_INVALID);
    char longt[ATR_KEYRING_TENANT_MAX + 2];
    memset(longt, 'x', sizeof(longt) - 1);
    longt[sizeof(longt) - 1] = '\0';
    assert_int_equal(atr_keyring_put(r, longt, &k, 0, NULL), ATR_E_INVALID);
    longt[ATR_KEYRING_TENANT_MAX] = '\0';
    assert_int_equal(atr_keyring_put(r, longt, &k, 0, NULL), ATR_OK);
    assert_true(hit(r, longt));
    /* get needs an empty output */
    assert_int_equal(atr_keyring_get(&k, r, "a", NULL), ATR_E_INVALID);
    assert_int_equal(atr_secret_cdata(&k)[0], 1);
    atr_secret_cleanup(&k);
    atr_secret_cleanup(&small);
    atr_keyring_free(r);
}

static void test_ttl_expiry(void **state)
{
    (void)state;
    size_t base = atr_secmem_used();
    struct atr_keyring *r = ring_new(8, 1000);
    put(r, "a", 1, 0);
    atr_test_clock_advance(&tclock, 500);
    put(r, "b", 2, 0);
    atr_test_clock_advance(&tclock, 499);
    assert_true(hit(r, "a")); /* a hit does not extend the lifetime */
    atr_test_clock_advance(&tclock, 1);
    assert_false(hit(r, "a"));
    assert_int_equal(atr_keyring_count(r), 1); /* met by the lookup: wiped at once */
    assert_true(hit(r, "b"));
    struct atr_keyring_stats st;
    atr_keyring_stats(&st, r);
    assert_int_equal(st.expirations, 1);

    /* putting again restarts the lifetime */
    atr_test_clock_advance(&tclock, 499);
    put(r, "b", 3, 0);
    atr_test_clock_advance(&tclock, 999);
    assert_true(hit(r, "b"));
    atr_test_clock_advance(&tclock, 1);
    assert_false(hit(r, "b"));
    assert_int_equal(atr_keyring_count(r), 0);
    assert_int_equal(atr_secmem_used(), base);
    atr_keyring_free(r);
}

/* deadline_only: a key with a deadline outlives the TTL (the BYOK grace), one without does not */
static void test_deadline_only(void **state)
{
    (void)state;
    struct atr_keyring *r = NULL;
    struct atr_keyring_opts o = {8, 1000, 1};
    assert_int_equal(atr_keyring_new(&r, &o, &tclock.base, NULL), ATR_OK);
    int64_t t = mono();
    put(r, "grace", 1, t + 5000);
    put(r, "plain", 2, 0);
    atr_test_clock_advance(&tclock, 1000);
    assert_false(hit(r, "plain"));
    assert_true(hit(r, "grace"));
    /* a probe extends the grace; clearing the deadline brings the TTL back */
    assert_int_equal(atr_keyring_set_deadline(r, "grace", mono() + 8000, NULL), ATR_OK);
    atr_test_clock_advance(&tclock, 6000);
    assert_true(hit(r, "grace"));
    assert_int_equal(atr_keyring_set_deadline(r, "grace", 0, NULL), ATR_OK);
    atr_test_clock_advance(&tclock, 999);
    assert_true(hit(r, "grace"));
    atr_test_clock_advance(&tclock, 1);
    assert_false(hit(r, "grace"));
    put(r, "late", 3, mono() + 3000);
    atr_test_clock_advance(&tclock, 3000);
    assert_false(hit(r, "late")); /* the deadline still ends it */
    atr_keyring_free(r);
}

static void test_hard_deadline(void **state)
{
    (void)state;
    struct atr_keyring *r = ring_new(8, 10000);
    int64_t t = mono();
    put(r, "a", 1, t + 500);
    put(r, "late", 2, t + 20000); /* later than the TTL: the TTL wins */
    atr_test_clock_advance(&tclock, 499);
    assert_true(hit(r, "a"));
    atr_test_clock_advance(&tclock, 1);
    assert_false(hit(r, "a"));

    /* the deadline can be moved (the grace extended after a probe) or cleared */
    put(r, "b", 3, mono() + 100);
    assert_int_equal(atr_keyring_set_deadline(r, "b", mono() + 300, NULL), ATR_OK);
    atr_test_clock_advance(&tclock, 200);
    assert_true(hit(r, "b"));
    assert_int_equal(atr_keyring_set_deadline(r, "b", 0, NULL), ATR_OK);
    atr_test_clock_advance(&tclock, 200);
    assert_true(hit(r, "b"));
    assert_int_equal(atr_keyring_set_deadline(r, "b", mono(), NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_set_deadline(r, "nobody", mono() + 5, NULL), ATR_E_NOT_FOUND);
    assert_int_equal(atr_keyring_set_deadline(r, "b", -5, NULL), ATR_E_INVALID);

    /* a deadline already past is refused */
    struct atr_secret k = ATR_SECRET_INIT;
    key_of(&k, 9);
    assert_int_equal(atr_keyring_put(r, "c", &k, mono(), NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_put(r, "c", &k, mono() - 1, NULL), ATR_E_INVALID);
    assert_false(hit(r, "c"));
    atr_secret_cleanup(&k);

    atr_test_clock_advance(&tclock, 10000 - 900);
    assert_false(hit(r, "late"));
    atr_keyring_free(r);
}

static void test_evict_expired(void **state)
{
    (void)state;
    size_t base = atr_secmem_used();
    struct atr_keyring *r = ring_new(8, 1000);
    int64_t t = mono();
    put(r, "a", 1, t + 100);
    put(r, "b", 2, t + 200);
    put(r, "c", 3, 0);
    assert_int_equal(atr_keyring_evict_expired(r, t + 99), 0);
    assert_int_equal(atr_keyring_evict_expired(r, t + 200), 2);
    assert_int_equal(atr_keyring_count(r), 1);
    assert_true(hit(r, "c"));
    assert_int_equal(atr_keyring_evict_expired(r, t + 1000), 1);
    assert_int_equal(atr_keyring_count(r), 0);
    assert_int_equal(atr_secmem_used(), base);
    struct atr_keyring_stats st;
    atr_keyring_stats(&st, r);
    assert_int_equal(st.expirations, 3);
    atr_keyring_free(r);
}

static void test_lru_eviction_wipes(void **state)
{
    (void)state;
    size_t base = atr_secmem_used();
    struct atr_keyring *r = ring_new(3, 60000);
    put(r, "a", 1, 0);
    put(r, "b", 2, 0);
    put(r, "c", 3, 0);
    size_t full = atr_secmem_used();
    assert_true(full > base);
    assert_true(hit(r, "a")); /* now b is the least recently used */
    put(r, "d", 4, 0);
    assert_int_equal(atr_keyring_count(r), 3);
    assert_int_equal(atr_secmem_used(), full); /* b's key was released (wiped) */
    assert_false(hit(r, "b"));
    assert_true(hit(r, "a"));
    assert_true(hit(r, "c"));
    assert_true(hit(r, "d"));
    /* order now: d c a (most recent first); a is next */
    put(r, "e", 5, 0);
    assert_false(hit(r, "a"));
    struct atr_keyring_stats st;
    atr_keyring_stats(&st, r);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.entries, 3);

    /* out of memory while full: nothing is evicted */
    atr_alloc_fail_after(1);
    struct atr_secret k = ATR_SECRET_INIT;
    key_of(&k, 6);
    assert_int_equal(atr_keyring_put(r, "f", &k, 0, NULL), ATR_E_NOMEM);
    atr_alloc_fail_after(2);
    assert_int_equal(atr_keyring_put(r, "f", &k, 0, NULL), ATR_E_NOMEM);
    atr_alloc_fail_reset();
    atr_secret_cleanup(&k);
    assert_int_equal(atr_keyring_count(r), 3);
    assert_true(hit(r, "c"));
    assert_true(hit(r, "d"));
    assert_true(hit(r, "e"));

    atr_keyring_free(r);
    assert_int_equal(atr_secmem_used(), base);
}

static void test_evict(void **state)
{
    (void)state;
    size_t base = atr_secmem_used();
    struct atr_keyring *r = ring_new(8, 60000);
    put(r, "a", 1, 0);
    size_t one = atr_secmem_used();
    put(r, "b", 2, 0);
    assert_int_equal(atr_keyring_evict(r, "b"), 1);
    assert_int_equal(atr_secmem_used(), one);
    assert_int_equal(atr_keyring_evict(r, "b"), 0);
    assert_int_equal(atr_keyring_evict(r, "nobody"), 0);
    assert_int_equal(atr_keyring_evict(r, NULL), 0);
    assert_int_equal(atr_keyring_evict(NULL, "a"), 0);
    assert_false(hit(r, "b"));
    assert_true(hit(r, "a"));
    assert_int_equal(atr_keyring_evict(r, "a"), 1);
    assert_int_equal(atr_secmem_used(), base);
    struct atr_keyring_stats st;
    atr_keyring_stats(&st, r);
    assert_int_equal(st.removals, 2);
    assert_int_equal(st.entries, 0);
    atr_keyring_free(r);
}

/* ---- loading ------------------------------------------------------------------------------ */

struct loader_ctx {
    atomic_int calls;
    atr_status rc;
    size_t len;
    int64_t deadline;
    uint8_t fill;
    /* for the blocking loader */
    atomic_int started;
    atomic_int go;
    int wait_for; /* spin until this many callers have started */
    atomic_int *callers;
};

static atr_status loader(struct atr_secret *out, int64_t *deadline, const char *tenant, void *vctx,
                         struct atr_err *err)
{
    (void)tenant;
    struct loader_ctx *c = vctx;
    atomic_fetch_add(&c->calls, 1);
    atomic_store(&c->started, 1);
    if (c->callers != NULL)
        while (atomic_load(c->callers) < c->wait_for)
            sched_yield();
    while (!atomic_load(&c->go))
        sched_yield();
    if (c->rc != ATR_OK)
        return atr_err_set(err, c->rc, "vault said no");
    *deadline = c->deadline;
    ATR_TRY(atr_secret_init(out, c->len));
    memset(atr_secret_data(out), c->fill, c->len);
    return ATR_OK;
}

static atr_status load(struct atr_keyring *r, const char *tenant, struct loader_ctx *c, int *fill,
                       struct atr_err *err)
{
    struct atr_secret k = ATR_SECRET_INIT;
    atr_status rc = atr_keyring_get_or_load(&k, r, tenant, loader, c, err);
    if (rc == ATR_OK)
        *fill = atr_secret_cdata(&k)[0];
    else
        assert_false(atr_secret_is_set(&k));
    atr_secret_cleanup(&k);
    return rc;
}

static void test_get_or_load(void **state)
{
    (void)state;
    struct atr_keyring *r = ring_new(8, 1000);
    struct loader_ctx c = {.rc = ATR_OK, .len = 32, .fill = 0x5a};
    atomic_store(&c.go, 1);
    int fill = 0;
    assert_int_equal(load(r, "a", &c, &fill, NULL), ATR_OK);
    assert_int_equal(fill, 0x5a);
    assert_int_equal(load(r, "a", &c, &fill, NULL), ATR_OK);
    assert_int_equal(atomic_load(&c.calls), 1);
    assert_true(hit(r, "a"));

    /* after the TTL it loads again */
    atr_test_clock_advance(&tclock, 1000);
    assert_int_equal(load(r, "a", &c, &fill, NULL), ATR_OK);
    assert_int_equal(atomic_load(&c.calls), 2);

    /* a deadline from the loader */
    c.deadline = mono() + 10;
    assert_int_equal(load(r, "d", &c, &fill, NULL), ATR_OK);
    atr_test_clock_advance(&tclock, 10);
    assert_false(hit(r, "d"));
    c.deadline = mono();
    assert_int_equal(load(r, "d", &c, &fill, NULL), ATR_E_UNAVAILABLE);
    c.deadline = 0;

    /* a failing loader: its code and message, nothing cached */
    struct atr_err err;
    atr_err_clear(&err);
    c.rc = ATR_E_FORBIDDEN;
    assert_int_equal(load(r, "f", &c, &fill, &err), ATR_E_FORBIDDEN);
    assert_string_equal(err.msg, "vault said no");
    assert_false(hit(r, "f"));
    /* a loader returning a key of the wrong size */
    c.rc = ATR_OK;
    c.len = 16;
    assert_int_equal(load(r, "f", &c, &fill, &err), ATR_E_INTERNAL);
    assert_false(hit(r, "f"));
    c.len = 32;

    struct atr_keyring_stats st;
    atr_keyring_stats(&st, r);
    assert_int_equal(st.loads, 6);
    assert_int_equal(st.load_failures, 3);

    /* out of memory for the flight or the entry */
    for (unsigned long nth = 1; nth <= 4; nth++) {
        atr_alloc_fail_after(nth);
        atr_status rc = load(r, "m", &c, &fill, NULL);
        atr_alloc_fail_reset();
        assert_int_equal(rc, ATR_E_NOMEM);
        assert_false(hit(r, "m"));
    }
    assert_int_equal(load(r, "m", &c, &fill, NULL), ATR_OK);

    struct atr_secret k = ATR_SECRET_INIT;
    assert_int_equal(atr_keyring_get_or_load(&k, r, "a", NULL, &c, NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_get_or_load(&k, r, "", loader, &c, NULL), ATR_E_INVALID);
    atr_keyring_free(r);
}

struct caller {
    struct atr_keyring *r;
    struct loader_ctx *c;
    const char *tenant;
    atomic_int *callers;
    atr_status rc;
    int fill;
};

static void *caller_main(void *arg)
{
    struct caller *cl = arg;
    atomic_fetch_add(cl->callers, 1);
    struct atr_secret k = ATR_SECRET_INIT;
    cl->rc = atr_keyring_get_or_load(&k, cl->r, cl->tenant, loader, cl->c, NULL);
    if (cl->rc == ATR_OK)
        cl->fill = atr_secret_cdata(&k)[0];
    atr_secret_cleanup(&k);
    return NULL;
}

static void test_single_flight(void **state)
{
    (void)state;
    enum { N = 6 };
    for (int fail = 0; fail <= 1; fail++) {
        struct atr_keyring *r = ring_new(8, 60000);
        atomic_int callers;
        atomic_init(&callers, 0);
        struct loader_ctx c = {.rc = fail ? ATR_E_TIMEOUT : ATR_OK, .len = 32, .fill = 0x77};
        c.callers = &callers;
        c.wait_for = N;
        atomic_store(&c.go, 1);
        struct caller cl[N];
        pthread_t th[N];
        for (int i = 0; i < N; i++) {
            cl[i] = (struct caller){r, &c, "shared", &callers, ATR_E_INTERNAL, 0};
            assert_int_equal(pthread_create(&th[i], NULL, caller_main, &cl[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            assert_int_equal(cl[i].rc, fail ? ATR_E_TIMEOUT : ATR_OK);
            if (!fail)
                assert_int_equal(cl[i].fill, 0x77);
        }
        /* every caller started before the load could finish: one load served them all
         * on success; on failure, late arrivals may start another load */
        if (!fail)
            assert_int_equal(atomic_load(&c.calls), 1);
        else
            assert_true(atomic_load(&c.calls) >= 1 && atomic_load(&c.calls) <= N);
        struct atr_keyring_stats st;
        atr_keyring_stats(&st, r);
        assert_int_equal(st.hits + st.misses, N);
        atr_keyring_free(r);
    }
}

static void test_evict_cancels_load(void **state)
{
    (void)state;
    struct atr_keyring *r = ring_new(8, 60000);
    atomic_int callers;
    atomic_init(&callers, 0);
    struct loader_ctx c = {.rc = ATR_OK, .len = 32, .fill = 0x31};
    struct caller cl = {r, &c, "t", &callers, ATR_E_INTERNAL, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, caller_main, &cl), 0);
    while (!atomic_load(&c.started))
        sched_yield();
    assert_int_equal(atr_keyring_evict(r, "t"), 1); /* lockdown while the vault answers */
    atomic_store(&c.go, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(cl.rc, ATR_E_UNAVAILABLE);
    assert_int_equal(atr_keyring_count(r), 0);
    assert_false(hit(r, "t"));
    atr_keyring_free(r);
}

struct mixer {
    struct atr_keyring *r;
    int id;
    int errors;
};

static void *mixer_main(void *arg)
{
    struct mixer *m = arg;
    struct loader_ctx c = {.rc = ATR_OK, .len = 32, .fill = 0};
    atomic_store(&c.go, 1);
    char tenant[16];
    for (int i = 0; i < 2000; i++) {
        int t = (i * 7 + m->id) % 12;
        snprintf(tenant, sizeof(tenant), "t%d", t);
        struct atr_secret k = ATR_SECRET_INIT;
        atr_status rc = ATR_OK;
        switch (i % 5) {
        case 0: {
            struct atr_secret v = ATR_SECRET_INIT;
            if (atr_secret_init(&v, 32) != ATR_OK) {
                m->errors++;
                break;
            }
            memset(atr_secret_data(&v), t, 32);
            rc = atr_keyring_put(m->r, tenant, &v, 0, NULL);
            atr_secret_cleanup(&v);
            break;
        }
        case 1:
        case 2:
            rc = atr_keyring_get(&k, m->r, tenant, NULL);
            if (rc == ATR_E_NOT_FOUND)
                rc = ATR_OK;
            break;
        case 3:
            c.fill = (uint8_t)t;
            rc = atr_keyring_get_or_load(&k, m->r, tenant, loader, &c, NULL);
            break;
        default:
            (void)atr_keyring_evict(m->r, tenant);
            (void)atr_keyring_evict_expired(m->r, mono());
            break;
        }
        /* whatever path served it, a tenant's key is always its own */
        if (rc == ATR_E_UNAVAILABLE)
            rc = ATR_OK; /* evicted while loading */
        if (rc != ATR_OK || (atr_secret_is_set(&k) && atr_secret_cdata(&k)[31] != t))
            m->errors++;
        atr_secret_cleanup(&k);
    }
    return NULL;
}

static void test_concurrent_get_put(void **state)
{
    (void)state;
    size_t base = atr_secmem_used();
    struct atr_keyring *r = ring_new(8, 50);
    enum { N = 4 };
    struct mixer m[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        m[i] = (struct mixer){r, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, mixer_main, &m[i]), 0);
    }
    for (int i = 0; i < 200; i++) {
        atr_test_clock_advance(&tclock, 7);
        sched_yield();
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(m[i].errors, 0);
    }
    assert_true(atr_keyring_count(r) <= 8);
    atr_keyring_free(r);
    assert_int_equal(atr_secmem_used(), base);
}

/* ---- tenant keys and data keys ------------------------------------------------------------ */

static void test_dek_round_trip_and_binding(void **state)
{
    (void)state;
    struct atr_secret tk = ATR_SECRET_INIT, tk2 = ATR_SECRET_INIT;
    assert_int_equal(atr_keyring_tk_generate(&tk, NULL), ATR_OK);
    assert_int_equal(atr_secret_len(&tk), 32);
    assert_int_equal(atr_keyring_tk_generate(&tk, NULL), ATR_E_INVALID); /* not empty */
    assert_int_equal(atr_keyring_tk_generate(&tk2, NULL), ATR_OK);
    assert_false(atr_ct_equal(atr_secret_cdata(&tk), atr_secret_cdata(&tk2), 32));

    struct atr_span blk = atr_span_str("block-000042");
    struct atr_secret dek = ATR_SECRET_INIT, back = ATR_SECRET_INIT;
    struct atr_buf w;
    atr_buf_init(&w, 1024);
    assert_int_equal(atr_keyring_dek_new(&dek, &w, &tk, "tenant-a", blk, NULL), ATR_OK);
    assert_int_equal(atr_secret_len(&dek), ATR_KEYRING_DEK_LEN);
    assert_int_equal(w.len, ATR_KEYRING_WRAPPED_DEK_LEN);
    assert_int_equal(w.ptr[0], ATR_KEYRING_DEK_FORMAT);
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk, "tenant-a", blk, atr_buf_span(&w), NULL),
                     ATR_OK);
    assert_memory_equal(atr_secret_cdata(&back), atr_secret_cdata(&dek), 32);
    atr_secret_cleanup(&back);

    /* other tenant, other block, other tenant key */
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk, "tenant-b", blk, atr_buf_span(&w), &err),
                     ATR_E_AUTH_FAILED);
    assert_false(atr_secret_is_set(&back));
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk, "tenant-a", atr_span_str("block-000043"),
                                            atr_buf_span(&w), NULL),
                     ATR_E_AUTH_FAILED);
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk2, "tenant-a", blk, atr_buf_span(&w), NULL),
                     ATR_E_AUTH_FAILED);
    /* length prefixes keep tenant and block apart */
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk, "tenant-ab", atr_span_str("lock-000042"),
                                            atr_buf_span(&w), NULL),
                     ATR_E_AUTH_FAILED);

    /* corrupted: every byte, truncations, extension, format */
    uint8_t mod[ATR_KEYRING_WRAPPED_DEK_LEN + 1];
    for (size_t i = 0; i < w.len; i++) {
        memcpy(mod, w.ptr, w.len);
        mod[i] ^= 0x01;
        atr_status rc =
            atr_keyring_dek_unwrap(&back, &tk, "tenant-a", blk, atr_span_of(mod, w.len), NULL);
        assert_int_equal(rc, i == 0 ? ATR_E_UNSUPPORTED : ATR_E_AUTH_FAILED);
        assert_false(atr_secret_is_set(&back));
    }
    for (size_t n = 0; n < w.len; n++)
        assert_int_equal(
            atr_keyring_dek_unwrap(&back, &tk, "tenant-a", blk, atr_span_of(w.ptr, n), NULL),
            ATR_E_PARSE);
    memcpy(mod, w.ptr, w.len);
    mod[w.len] = 0;
    assert_int_equal(
        atr_keyring_dek_unwrap(&back, &tk, "tenant-a", blk, atr_span_of(mod, w.len + 1), NULL),
        ATR_E_PARSE);

    /* re-wrapping an existing DEK (e.g. a reserve DEK) */
    atr_buf_reset(&w);
    assert_int_equal(atr_keyring_dek_wrap(&w, &tk2, &dek, "tenant-a", blk, NULL), ATR_OK);
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk2, "tenant-a", blk, atr_buf_span(&w), NULL),
                     ATR_OK);
    assert_memory_equal(atr_secret_cdata(&back), atr_secret_cdata(&dek), 32);
    atr_secret_cleanup(&back);

    /* arguments */
    struct atr_secret empty = ATR_SECRET_INIT, d2 = ATR_SECRET_INIT;
    atr_buf_reset(&w);
    assert_int_equal(atr_keyring_dek_new(&d2, &w, &empty, "t", blk, NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_dek_new(&d2, &w, &tk, "", blk, NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_dek_new(&d2, &w, &tk, "t", atr_span_of(NULL, 0), NULL),
                     ATR_E_INVALID);
    uint8_t longblk[ATR_KEYRING_BLOCK_ID_MAX + 1] = {0};
    assert_int_equal(
        atr_keyring_dek_new(&d2, &w, &tk, "t", atr_span_of(longblk, sizeof(longblk)), NULL),
        ATR_E_INVALID);
    assert_int_equal(atr_keyring_dek_new(&d2, &w, &tk, "t",
                                         atr_span_of(longblk, ATR_KEYRING_BLOCK_ID_MAX), NULL),
                     ATR_OK);
    assert_int_equal(atr_keyring_dek_new(&d2, &w, &tk, "t", blk, NULL), ATR_E_INVALID); /* set */
    atr_secret_cleanup(&d2);
    assert_int_equal(atr_keyring_dek_wrap(&w, &tk, &empty, "t", blk, NULL), ATR_E_INVALID);
    assert_int_equal(atr_keyring_dek_unwrap(&back, &tk, "t", blk, atr_span_of(NULL, 0), NULL),
                     ATR_E_PARSE);

    /* no room in the output: nothing appended, no DEK */
    struct atr_buf tiny;
    atr_buf_init(&tiny, ATR_KEYRING_WRAPPED_DEK_LEN - 1);
    assert_int_equal(atr_keyring_dek_new(&d2, &tiny, &tk, "t", blk, NULL), ATR_E_TOO_LARGE);
    assert_false(atr_secret_is_set(&d2));
    assert_int_equal(tiny.len, 0);
    atr_buf_cleanup(&tiny);

    /* out of memory */
    for (unsigned long nth = 1; nth <= 2; nth++) {
        atr_buf_cleanup(&w);
        atr_alloc_fail_after(nth);
        atr_status rc = atr_keyring_dek_new(&d2, &w, &tk, "t", blk, NULL);
        atr_alloc_fail_reset();
        assert_int_equal(rc, ATR_E_NOMEM);
        assert_false(atr_secret_is_set(&d2));
    }

    atr_buf_cleanup(&w);
    atr_secret_cleanup(&dek);
    atr_secret_cleanup(&tk);
    atr_secret_cleanup(&tk2);
}

struct srk_loader_ctx {
    struct atr_kms_provider *p;
    struct atr_kms_keyref ref;
    struct atr_buf blob;
};

static atr_status srk_loader(struct atr_secret *out, int64_t *deadline, const char *tenant,
                             void *vctx, struct atr_err *err)
{
    (void)deadline;
    struct srk_loader_ctx *c = vctx;
    return atr_keyring_tk_unwrap(out, c->p, &c->ref, atr_buf_span(&c->blob), tenant, err);
}

static void test_tk_through_srk_provider(void **state)
{
    (void)state;
    char dir[64], path[128];
    snprintf(dir, sizeof(dir), "/tmp/atr-keyring-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/srk.key", dir);
    struct atr_srk_file *srk = NULL;
    assert_int_equal(atr_srk_file_open(&srk, NULL, path, 1, &tclock.base, NULL), ATR_OK);

    struct atr_secret tk = ATR_SECRET_INIT, got = ATR_SECRET_INIT;
    assert_int_equal(atr_keyring_tk_generate(&tk, NULL), ATR_OK);
    struct srk_loader_ctx c = {atr_srk_file_provider(srk), {{0}}, {0}};
    atr_buf_init(&c.blob, 1024);
    assert_int_equal(atr_keyring_tk_wrap(&c.blob, &c.ref, c.p, &tk, "tenant-a", NULL), ATR_OK);
    assert_string_equal(c.ref.id, "srk/1");

    /* a loader made of tk_unwrap fills the cache */
    struct atr_keyring *r = ring_new(4, 60000);
    assert_int_equal(atr_keyring_get_or_load(&got, r, "tenant-a", srk_loader, &c, NULL), ATR_OK);
    assert_memory_equal(atr_secret_cdata(&got), atr_secret_cdata(&tk), 32);
    atr_secret_cleanup(&got);
    /* the blob of tenant-a does not load as tenant-b */
    assert_int_equal(atr_keyring_get_or_load(&got, r, "tenant-b", srk_loader, &c, NULL),
                     ATR_E_AUTH_FAILED);
    assert_int_equal(atr_keyring_count(r), 1);

    /* a secret of another size wrapped with the TK purpose is not a tenant key */
    struct atr_secret small = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&small, 16), ATR_OK);
    assert_int_equal(atr_keyring_tk_wrap(&c.blob, &c.ref, c.p, &small, "tenant-a", NULL),
                     ATR_E_INVALID);
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, "tenant-c"};
    atr_buf_reset(&c.blob);
    assert_int_equal(atr_kms_wrap(&c.blob, &c.ref, c.p, &small, &ctx, NULL), ATR_OK);
    assert_int_equal(
        atr_keyring_tk_unwrap(&got, c.p, &c.ref, atr_buf_span(&c.blob), "tenant-c", NULL),
        ATR_E_AUTH_FAILED);
    assert_false(atr_secret_is_set(&got));

    atr_keyring_free(r);
    atr_secret_cleanup(&small);
    atr_secret_cleanup(&tk);
    atr_buf_cleanup(&c.blob);
    atr_srk_file_free(srk);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_use_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hard_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_eviction_wipes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_or_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_cancels_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_get_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dek_round_trip_and_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tk_through_srk_provider, setup, teardown),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
