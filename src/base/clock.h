/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_CLOCK_H
#define ATR_BASE_CLOCK_H

/*
 * An injectable clock. Everything that depends on time (token lifetimes,
 * key validity, probe and roll intervals, the lockdown grace, log stamps)
 * reads a struct atr_clock passed to it, never time() directly, so tests
 * drive hours of behaviour in microseconds (design section 3).
 *
 * Three kinds: the real clock (a read-only singleton, atr_clock_real()), a
 * test clock that only moves when told to, and an offset clock: another
 * clock plus an offset that an operator can move forward (a server's test
 * mode: time runs as usual and a test skips an hour without waiting). Test
 * and offset clocks are thread-safe: readers and advances may run on
 * different threads.
 */

#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"

struct atr_clock;

struct atr_clock_ops {
    /* wall time, milliseconds since the Unix epoch */
    int64_t (*now_ms)(const struct atr_clock *c);
    /* monotonic time in milliseconds, for intervals and deadlines */
    int64_t (*mono_ms)(const struct atr_clock *c);
};

struct atr_clock {
    const struct atr_clock_ops *ops;
};

/** The real clock (CLOCK_REALTIME / CLOCK_MONOTONIC); a static singleton. */
const struct atr_clock *atr_clock_real(void);

/** Wall time in milliseconds since the epoch. */
int64_t atr_clock_now_ms(const struct atr_clock *c);
/** Wall time in whole seconds since the epoch. */
int64_t atr_clock_now_s(const struct atr_clock *c);
/** Monotonic milliseconds. */
int64_t atr_clock_mono_ms(const struct atr_clock *c);

/** A clock for tests: starts at @p start_ms and moves only when advanced. */
struct atr_test_clock {
    struct atr_clock base; /* first member: &tc->base is a struct atr_clock * */
    int64_t now_ms;        /* guarded by lock */
    int64_t mono_ms;       /* guarded by lock */
    void *lock;            /* pthread mutex, owned */
};

ATR_MUST_CHECK atr_status atr_test_clock_init(struct atr_test_clock *tc, int64_t start_ms);
void atr_test_clock_cleanup(struct atr_test_clock *tc);
/** Moves both wall and monotonic time forward by @p ms (>= 0). */
void atr_test_clock_advance(struct atr_test_clock *tc, int64_t ms);
/** Sets wall time (monotonic time is unaffected, like a real clock step). */
void atr_test_clock_set(struct atr_test_clock *tc, int64_t now_ms);

/** A clock running with another one, plus an offset moved by atr_offset_clock_advance(). */
struct atr_offset_clock {
    struct atr_clock base; /* first member */
    const struct atr_clock *under;
    _Atomic int64_t offset_ms;
};

/** Makes @p oc follow @p under (borrowed, must outlive it) with offset 0. Cannot fail. */
void atr_offset_clock_init(struct atr_offset_clock *oc, const struct atr_clock *under);
/** Moves wall and monotonic time forward by @p ms (> 0; smaller values are ignored). */
void atr_offset_clock_advance(struct atr_offset_clock *oc, int64_t ms);
/** The offset so far, in milliseconds. */
int64_t atr_offset_clock_offset(const struct atr_offset_clock *oc);

/**
 * Formats @p ms since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-29T03:44:48.123Z") into @p out (at least 25 bytes).
 */
void atr_clock_format_rfc3339(int64_t ms, char out[32]);

#endif /* ATR_BASE_CLOCK_H */
