/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_MONITOR_H
#define ATR_SERVICE_MONITOR_H

/*
 * The key monitor (design section 3): one thread that watches the customer
 * key of every tenant in customer mode, for all tenants at once (no thread
 * per tenant).
 *
 * For each tracked tenant it keeps a health (healthy, degraded, locked) and
 * a schedule, on the injected clock:
 *
 *   probe    unwrap the stored customer layer every probe interval (default
 *            5 min), so a revocation is noticed without traffic;
 *   roll     look for a newer enabled key version every roll interval
 *            (default 1 min) and re-wrap under it (healthy tenants only);
 *   degraded a failed probe or roll: the tenant keeps working from its
 *            cached key; failed probes are retried with exponential backoff
 *            (backoff_min .. backoff_max) and jitter (each delay is drawn
 *            from [d/2, d]), never sooner than the vault's Retry-After;
 *   locked   no unwrap has succeeded for the grace (default 1 h) since the
 *            last success: the owner wipes the key (its transition callback)
 *            and every tenant call is refused. Throttling and server errors
 *            are retried like any failure and cannot extend the grace: only
 *            a successful unwrap does;
 *   restore  a locked tenant is probed every locked_probe (default 15 s),
 *            doubling on failure up to locked_probe_max; the first success
 *            restores it (healthy, or degraded while its roll check fails).
 *
 * The monitor decides; the owner acts, through callbacks that run on the
 * monitor's thread (probes and roll checks of many tenants in one call, so
 * their vault calls can run concurrently) (or on the caller of atr_monitor_run()) without any
 * monitor lock held: probe and roll talk to the vault, transition persists
 * a health change (state, reason, audit) and refill keeps the reserve of
 * pre-wrapped data keys full while a tenant is healthy. A transition that
 * fails is not applied and is retried on a later pass.
 *
 * Request threads report what they saw: atr_monitor_note_ok() after a
 * successful unwrap (it restarts the grace), atr_monitor_note_failure()
 * after a failed one (the tenant is probed at once).
 *
 * Thread-safety: every function may be called from any thread, except
 * new/free. Passes are serialised (the thread and atr_monitor_run() never
 * overlap).
 */

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/error.h"

#define ATR_MONITOR_CODE_MAX   48
#define ATR_MONITOR_REASON_MAX 512
#define ATR_MONITOR_KID_MAX    1025 /* a kid (ATR_STORE_URI_MAX) plus NUL */
#define ATR_MONITOR_BATCH      256  /* tenants per probe or roll call */

#define ATR_MONITOR_ROLL_DEFAULT_MS         60000
#define ATR_MONITOR_PROBE_DEFAULT_MS        300000
#define ATR_MONITOR_GRACE_DEFAULT_MS        3600000
#define ATR_MONITOR_LOCKED_PROBE_DEFAULT_MS 15000
#define ATR_MONITOR_LOCKED_MAX_DEFAULT_MS   300000
#define ATR_MONITOR_BACKOFF_MIN_DEFAULT_MS  5000
#define ATR_MONITOR_BACKOFF_MAX_DEFAULT_MS  300000

typedef enum {
    ATR_MONITOR_HEALTHY = 1,
    ATR_MONITOR_DEGRADED = 2,
    ATR_MONITOR_LOCKED = 3,
} atr_monitor_health;

struct atr_monitor;

/* Settings; 0 means the default above. Every value must be positive. */
struct atr_monitor_opts {
    int64_t roll_interval_ms;
    int64_t probe_interval_ms;
    int64_t grace_ms;
    int64_t locked_probe_ms;
    int64_t locked_probe_max_ms;
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
    int no_thread; /* 1: no thread; passes run only through atr_monitor_run() */
};

/* What a probe or a roll found. */
struct atr_monitor_outcome {
    int ok;                        /* 1: the vault did what was asked */
    int gone;                      /* the tenant no longer uses a customer key: stop watching it */
    int transient;                 /* failure: throttling, server error, unreachable */
    int64_t retry_after_ms;        /* the vault's Retry-After, 0 = none */
    int rolled;                    /* roll: moved to a new version */
    char kid[ATR_MONITOR_KID_MAX]; /* the key version in use after the call, "" unknown */
    char code[ATR_MONITOR_CODE_MAX];     /* failure: "PermissionMissing", ... */
    char reason[ATR_MONITOR_REASON_MAX]; /* failure: what happened and what fixes it */
};

/*
 * Probe and roll work on up to ATR_MONITOR_BATCH tenants per call, so the
 * owner can run their vault calls concurrently: out[i] (zeroed) is the
 * outcome for tenants[i].
 */
struct atr_monitor_ops {
    void (*probe)(struct atr_monitor_outcome *out, const char *const *tenants, size_t n, void *ctx);
    void (*roll)(struct atr_monitor_outcome *out, const char *const *tenants, size_t n, void *ctx);
    /* persists from -> to (@p why: the failure, or the success that restores) */
    atr_status (*transition)(const char *tenant, atr_monitor_health from, atr_monitor_health to,
                             const struct atr_monitor_outcome *why, void *ctx);
    /* a healthy tenant (after an enable, a restore, a start): 1 done, 0 retry later; may be NULL */
    int (*refill)(const char *tenant, void *ctx);
    void *ctx;
};

/* What the monitor knows of one tenant (wall times in Unix ms, 0 = never). */
struct atr_monitor_status {
    atr_monitor_health health;
    int64_t last_ok_ms;    /* last successful unwrap (probe or request) */
    int64_t last_check_ms; /* last probe, successful or not */
    int64_t last_roll_ms;  /* last move to a new key version */
    int64_t last_roll_check_ms;
    int64_t next_probe_ms;
    int64_t lock_at_ms; /* when the grace ends unless an unwrap succeeds */
    unsigned failures;  /* consecutive failed probes */
    char code[ATR_MONITOR_CODE_MAX];
    char reason[ATR_MONITOR_REASON_MAX];
};

/* Counters of one pass (atr_monitor_run). */
struct atr_monitor_pass {
    size_t probes, rolls, rolled, transitions, locked, restored;
};

/**
 * Makes a monitor and, unless opts->no_thread, starts its thread.
 * @param clock  borrowed, must outlive the monitor.
 * @param ops    copied; probe, roll and transition are required.
 * @return ATR_E_INVALID (a negative setting, missing callback),
 *         ATR_E_NOMEM, ATR_E_INTERNAL (thread).
 */
ATR_MUST_CHECK atr_status atr_monitor_new(struct atr_monitor **out,
                                          const struct atr_monitor_opts *opts,
                                          const struct atr_clock *clock,
                                          const struct atr_monitor_ops *ops, struct atr_err *err);

/** Stops the thread (waiting for a pass in progress) and frees. NULL is allowed. */
void atr_monitor_free(struct atr_monitor *m);

/** The settings in force (defaults applied). */
void atr_monitor_settings(struct atr_monitor_opts *out, const struct atr_monitor *m);

/**
 * Starts watching @p tenant with health @p health (as stored). @p fresh: 1
 * after an enable (the key was just proven; next probe and roll one
 * interval away), 0 at start-up (probe and roll spread over one interval;
 * a locked tenant is probed at once). Tracking a tracked tenant updates its
 * health only.
 * @return ATR_E_INVALID, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_monitor_track(struct atr_monitor *m, const char *tenant,
                                            atr_monitor_health health, int fresh,
                                            struct atr_err *err);

/** Stops watching @p tenant (customer key removed). Unknown tenants are ignored. */
void atr_monitor_untrack(struct atr_monitor *m, const char *tenant);

/**
 * Whether a request may try to unwrap @p tenant's key through the vault now:
 * always while the monitor's probes succeed (or the tenant is unknown); while
 * they fail, once per backoff_min per tenant (the attempt is recorded), so a
 * revoked key with traffic does not send one refused call per request.
 * @return 1 yes, 0 no (@p out, may be NULL, then gets the monitor's view).
 */
int atr_monitor_may_try(struct atr_monitor *m, const char *tenant, struct atr_monitor_status *out);

/** A successful unwrap outside the monitor: restarts the grace. */
void atr_monitor_note_ok(struct atr_monitor *m, const char *tenant);

/** A failed unwrap outside the monitor: the tenant is probed on the next pass. */
void atr_monitor_note_failure(struct atr_monitor *m, const char *tenant);

/**
 * Asks for the refill callback of @p tenant on the next pass once it is
 * healthy (the owner folds leftovers of a lock there). Unknown tenants are
 * ignored.
 */
void atr_monitor_refill_soon(struct atr_monitor *m, const char *tenant);

/**
 * Copies what the monitor knows of @p tenant.
 * @return 1 when the tenant is tracked, 0 otherwise (@p out zeroed).
 */
int atr_monitor_status(struct atr_monitor_status *out, struct atr_monitor *m, const char *tenant);

/** Number of tracked tenants. */
size_t atr_monitor_count(struct atr_monitor *m);

/**
 * Runs one pass now: every due lock, probe, roll and refill (what the
 * thread does when it wakes). @p out (may be NULL) gets the counters.
 */
void atr_monitor_run(struct atr_monitor *m, struct atr_monitor_pass *out);

/** Wakes the thread for a pass now (after the clock was moved). */
void atr_monitor_kick(struct atr_monitor *m);

/** Stable name of @p h ("healthy", "degraded", "locked"). */
const char *atr_monitor_health_name(atr_monitor_health h);

#endif /* ATR_SERVICE_MONITOR_H */
