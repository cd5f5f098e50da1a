/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_KEYRING_H
#define ATR_SERVICE_KEYRING_H

/*
 * The keyring: the service's cache of unwrapped tenant keys (TK), and the
 * data keys (DEK) made and wrapped under them (design sections 2 and 3).
 *
 * Cache. Entries map a tenant id to its 32-byte TK, held in a struct
 * atr_secret owned by the ring. Every entry has a bounded lifetime on the
 * ring's injected clock (monotonic milliseconds, atr_clock_mono_ms()): it
 * expires ttl_ms after it was put, or at its hard deadline if the caller set
 * an earlier one (later used for the BYOK grace, design section 3: when no
 * unwrap has succeeded by the deadline the key is gone). An expired entry is
 * wiped when a lookup meets it or by atr_keyring_evict_expired(); a lookup
 * never returns it. The ring holds at most max_entries keys and evicts the
 * least recently used one, wiping it, to make room. Putting a key again (for
 * instance after a successful probe) replaces it and restarts its lifetime.
 *
 * Safe access under concurrency: the ring never hands out pointers to its
 * own entries. atr_keyring_get() copies the key into the caller's secret
 * (which the caller wipes); atr_keyring_use() runs a callback on the cached
 * key with the ring's lock held. So an eviction can never free a key
 * somebody is reading; it wipes the ring's copy at once, and copies made
 * before it live only as long as their (short, request-scoped) owners.
 *
 * Loading. atr_keyring_get_or_load() calls the caller's loader on a miss,
 * outside the lock (it may call a remote key provider). Loads are
 * single-flight per tenant: concurrent callers missing the same tenant wait
 * for the one load in progress and share its result, success or failure, so
 * a failing vault sees one call, not one per request. The loader must bound
 * its own time (waiters have no timeout). atr_keyring_evict() during a load
 * cancels it: its key is wiped instead of cached and its callers get
 * ATR_E_UNAVAILABLE. The keyring knows nothing of tenant states: refusing to
 * load the key of a locked tenant is the loader's business.
 *
 * Counters (atr_keyring_stats()) feed the metrics endpoint.
 *
 * DEKs and TKs. atr_keyring_tk_generate() makes a tenant key;
 * atr_keyring_tk_wrap()/_unwrap() wrap it through a key provider with the
 * tenant-key purpose (kms/provider.h). atr_keyring_dek_new() makes a random
 * DEK and wraps it under a TK with AES-256-GCM and a random nonce; the AAD
 * binds a fixed label (the purpose), the format version, the tenant id and
 * the block id, so a wrapped DEK moved to another tenant or block does not
 * unwrap. Wrapped DEK format 1 (61 bytes; docs/keys.md):
 *
 *   offset  size  field
 *   0       1     format version, 1
 *   1       12    GCM nonce
 *   13      32    ciphertext of the DEK
 *   45      16    GCM tag
 *
 *   AAD = "atrest-dek-wrap-v1" || byte 0 of the blob
 *         || len(tenant) (1 byte) || tenant || len(block id) (1 byte) || block id
 *
 * Random nonces are safe for 2^32 DEKs per TK (SP 800-38D 8.3).
 *
 * Thread-safety: one mutex guards the cache; every function may be called
 * from any thread, except atr_keyring_free() (no other call may be running).
 * The DEK and TK functions own nothing and are reentrant.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/secmem.h"
#include "kms/provider.h"

#define ATR_KEYRING_TK_LEN           32
#define ATR_KEYRING_DEK_LEN          32
#define ATR_KEYRING_DEK_FORMAT       1
#define ATR_KEYRING_WRAPPED_DEK_LEN  61
#define ATR_KEYRING_TENANT_MAX       ATR_KMS_TENANT_MAX
#define ATR_KEYRING_BLOCK_ID_MAX     255
#define ATR_KEYRING_MAX_ENTRIES_HARD (1u << 20)

struct atr_keyring;

struct atr_keyring_opts {
    size_t max_entries; /* 1..ATR_KEYRING_MAX_ENTRIES_HARD */
    int64_t ttl_ms;     /* lifetime of an entry after put, > 0 */
    /*
     * 1: an entry with a hard deadline lives until that deadline and its TTL
     * does not apply (customer keys: the cached key keeps a tenant working
     * through a vault outage for the whole grace, design section 3).
     */
    int deadline_only;
};

/** Counters since the ring was made (for metrics); entries is the current count. */
struct atr_keyring_stats {
    uint64_t hits;          /* lookups served from the cache */
    uint64_t misses;        /* lookups that found no valid entry */
    uint64_t loads;         /* loader calls */
    uint64_t load_failures; /* loader calls that failed (or were cancelled) */
    uint64_t evictions;     /* entries wiped to make room (least recently used) */
    uint64_t expirations;   /* entries wiped past their TTL or deadline */
    uint64_t removals;      /* entries wiped by atr_keyring_evict() */
    size_t entries;
};

/**
 * Loads the TK of @p tenant on a cache miss (typically: read the wrapped TK
 * and unwrap it with atr_keyring_tk_unwrap()). Runs outside the ring's lock
 * and must not call the ring for the same tenant.
 * @param[out] out_tk           an empty secret; set it to the 32-byte TK.
 * @param[out] out_deadline_ms  preset to 0 (none); set it to give the entry
 *                              a hard deadline (monotonic ms of the ring's
 *                              clock).
 * @return ATR_OK, or any code, which get_or_load passes on to its callers.
 */
typedef atr_status (*atr_keyring_loader_fn)(struct atr_secret *out_tk, int64_t *out_deadline_ms,
                                            const char *tenant, void *ctx, struct atr_err *err);

/**
 * Works with a cached TK, borrowed for the duration of the call only; runs
 * with the ring's lock held, so it must be short and must not call the ring.
 */
typedef atr_status (*atr_keyring_use_fn)(const struct atr_secret *tk, void *ctx,
                                         struct atr_err *err);

/**
 * Makes an empty keyring.
 * @param[out] out  owned by the caller; release with atr_keyring_free().
 * @param clock     borrowed; must outlive the ring (tests pass a test clock).
 * @return ATR_E_INVALID for a missing argument or an option out of range,
 *         ATR_E_NOMEM, ATR_E_INTERNAL (mutex), ATR_E_CRYPTO (hash seed).
 */
ATR_MUST_CHECK atr_status atr_keyring_new(struct atr_keyring **out,
                                          const struct atr_keyring_opts *opts,
                                          const struct atr_clock *clock, struct atr_err *err);

/** Wipes every cached key and frees the ring. NULL is allowed. */
void atr_keyring_free(struct atr_keyring *ring);

/**
 * Copies the cached TK of @p tenant into @p out (an empty secret, owned by
 * the caller on ATR_OK; wipe it with atr_secret_cleanup() soon).
 * @return ATR_E_NOT_FOUND on a miss (absent or expired: an expired entry is
 *         wiped now), ATR_E_NOMEM (secure heap), ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_keyring_get(struct atr_secret *out, struct atr_keyring *ring,
                                          const char *tenant, struct atr_err *err);

/**
 * Runs @p fn on the cached TK of @p tenant under the ring's lock.
 * @return what @p fn returned; ATR_E_NOT_FOUND on a miss (fn not called);
 *         ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_keyring_use(struct atr_keyring *ring, const char *tenant,
                                          atr_keyring_use_fn fn, void *ctx, struct atr_err *err);

/**
 * Caches a copy of @p tk (32 bytes; the caller keeps its own) for @p tenant,
 * replacing any entry, expiring after the TTL or at @p deadline_ms if that
 * is earlier (0: no deadline; with opts.deadline_only a deadline alone
 * applies). May evict the least recently used entry.
 * @return ATR_E_INVALID (tenant empty or too long, key not 32 bytes, a
 *         deadline already past), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_keyring_put(struct atr_keyring *ring, const char *tenant,
                                          const struct atr_secret *tk, int64_t deadline_ms,
                                          struct atr_err *err);

/**
 * Sets (or with 0 clears) the hard deadline of the cached entry of
 * @p tenant, e.g. extending the grace after a successful probe. The TTL
 * still applies.
 * @return ATR_E_NOT_FOUND if no valid entry exists, ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_keyring_set_deadline(struct atr_keyring *ring, const char *tenant,
                                                   int64_t deadline_ms, struct atr_err *err);

/**
 * Returns the TK of @p tenant from the cache, or loads it with @p loader
 * (outside the lock, single-flight per tenant), caches it and returns it.
 * @param[out] out  an empty secret; the TK (a copy) on ATR_OK.
 * @return the loader's code when it fails (shared with concurrent callers
 *         for the same tenant), ATR_E_INTERNAL if it returned a key that is
 *         not 32 bytes, ATR_E_UNAVAILABLE if the tenant was evicted during
 *         the load, ATR_E_NOMEM, ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_keyring_get_or_load(struct atr_secret *out, struct atr_keyring *ring,
                                                  const char *tenant, atr_keyring_loader_fn loader,
                                                  void *ctx, struct atr_err *err);

/**
 * Wipes and drops the entry of @p tenant now, and cancels a load in
 * progress for it (lockdown, crypto-shredding).
 * @return 1 if an entry or a load was there, 0 otherwise.
 */
int atr_keyring_evict(struct atr_keyring *ring, const char *tenant);

/**
 * Wipes and drops every entry whose TTL or deadline is at or before
 * @p now_ms (monotonic ms of the ring's clock).
 * @return the number of entries dropped.
 */
size_t atr_keyring_evict_expired(struct atr_keyring *ring, int64_t now_ms);

/** Number of cached entries (expired ones not yet dropped included). */
size_t atr_keyring_count(struct atr_keyring *ring);

/** Copies the counters into @p out. */
void atr_keyring_stats(struct atr_keyring_stats *out, struct atr_keyring *ring);

/**
 * Makes a new random tenant key (32 bytes, private DRBG, secure memory).
 * @param[out] out  an empty secret, owned by the caller on ATR_OK.
 * @return ATR_E_NOMEM, ATR_E_CRYPTO, ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_keyring_tk_generate(struct atr_secret *out, struct atr_err *err);

/**
 * Wraps the tenant key @p tk of @p tenant through @p provider with purpose
 * ATR_KMS_PURPOSE_TK (design: SRK-wrap(TK)). Outputs and errors as
 * atr_kms_wrap(); ATR_E_INVALID also for a key that is not 32 bytes.
 */
ATR_MUST_CHECK atr_status atr_keyring_tk_wrap(struct atr_buf *out_blob,
                                              struct atr_kms_keyref *out_ref,
                                              struct atr_kms_provider *provider,
                                              const struct atr_secret *tk, const char *tenant,
                                              struct atr_err *err);

/**
 * Unwraps a tenant key made by atr_keyring_tk_wrap() (usable as the body of
 * a loader). Errors as atr_kms_unwrap(); ATR_E_AUTH_FAILED also when the
 * result is not 32 bytes (then wiped).
 */
ATR_MUST_CHECK atr_status atr_keyring_tk_unwrap(struct atr_secret *out,
                                                struct atr_kms_provider *provider,
                                                const struct atr_kms_keyref *ref,
                                                struct atr_span blob, const char *tenant,
                                                struct atr_err *err);

/**
 * Makes a fresh random DEK for block @p block_id of @p tenant and wraps it
 * under @p tk.
 * @param[out] out_dek      an empty secret; the DEK (32 bytes) on ATR_OK,
 *                          owned by the caller, who wipes it as soon as the
 *                          block is sealed.
 * @param[out] out_wrapped  the wrapped DEK (ATR_KEYRING_WRAPPED_DEK_LEN
 *                          bytes) is appended; nothing on failure.
 * @param block_id          1..ATR_KEYRING_BLOCK_ID_MAX bytes chosen by the
 *                          store (opaque here).
 * @return ATR_E_INVALID (key size, tenant, block id), ATR_E_NOMEM,
 *         ATR_E_TOO_LARGE (the buffer's cap), ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_keyring_dek_new(struct atr_secret *out_dek,
                                              struct atr_buf *out_wrapped,
                                              const struct atr_secret *tk, const char *tenant,
                                              struct atr_span block_id, struct atr_err *err);

/**
 * Wraps an existing DEK under @p tk (re-wrapping a DEK made elsewhere, for
 * instance a reserve DEK folded back under the TK). Outputs and errors as
 * atr_keyring_dek_new().
 */
ATR_MUST_CHECK atr_status atr_keyring_dek_wrap(struct atr_buf *out_wrapped,
                                               const struct atr_secret *tk,
                                               const struct atr_secret *dek, const char *tenant,
                                               struct atr_span block_id, struct atr_err *err);

/**
 * Unwraps a DEK made by atr_keyring_dek_new() or _wrap() for the same
 * tenant and block id.
 * @param[out] out_dek  an empty secret; the DEK on ATR_OK, empty otherwise.
 * @return ATR_E_AUTH_FAILED (other tenant, block or TK, or modified),
 *         ATR_E_PARSE (wrong length), ATR_E_UNSUPPORTED (other format
 *         version), ATR_E_INVALID, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_keyring_dek_unwrap(struct atr_secret *out_dek,
                                                 const struct atr_secret *tk, const char *tenant,
                                                 struct atr_span block_id, struct atr_span wrapped,
                                                 struct atr_err *err);

#endif /* ATR_SERVICE_KEYRING_H */
