/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_RESERVE_H
#define ATR_SERVICE_RESERVE_H

/*
 * The reserve of pre-wrapped data keys (design section 3, ingest while
 * locked). The service has no "get" permission, so it cannot encrypt to the
 * customer key by itself; while a tenant is healthy the monitor makes a few
 * fresh DEKs and wraps each through the vault as CK-wrap(SRK-wrap(DEK)).
 * When the tenant is locked, each new block is sealed with one reserve DEK
 * and stores that wrapped form: the data is accepted, and it is readable
 * only once the customer key is back (the blocks are then folded under the
 * tenant key). A reserve DEK protects exactly one block and only data
 * written after the lock.
 *
 * Memory. A reserve DEK waits in ordinary memory sealed (AES-256-GCM, AAD =
 * tenant id) under one process key held in locked memory, so thousands of
 * tenants' reserves cost one secure allocation; a taken DEK is unsealed into
 * locked memory and wiped when its block is sealed. The reserve is never
 * written to disk (SRK-wrap(DEK) on disk would let the service read
 * locked-period data without the customer): after a restart it is empty
 * until the tenant is healthy again.
 *
 * Blob (the wrapped DEK stored with a reserve block; docs/keys.md):
 *
 *   offset  size  field
 *   0       1     format, 2 (format 1 is a DEK wrapped by the tenant key)
 *   1       4     SRK version of the inner layer, big-endian
 *   5       2     length k of the kid, big-endian, 1..ATR_RESERVE_KID_MAX
 *   7       k     kid (customer key version) that wrapped the outer layer
 *   7+k     rest  CK-wrap(SRK-wrap(DEK)), 1..ATR_AKV_VALUE_MAX bytes
 *
 * Thread-safety: every function may be called from any thread except
 * new/free.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

#define ATR_RESERVE_FORMAT       2
#define ATR_RESERVE_KID_MAX      1024
#define ATR_RESERVE_SIZE_DEFAULT 8
#define ATR_RESERVE_SIZE_MAX     1024
#define ATR_RESERVE_DEK_LEN      32

struct atr_reserve;

/* A reserve DEK taken for a block: the DEK (locked memory) and its blob. */
struct atr_reserve_dek {
    struct atr_secret dek;
    struct atr_buf blob;
};

/**
 * Makes an empty reserve holding up to @p per_tenant DEKs per tenant
 * (0..ATR_RESERVE_SIZE_MAX; 0 = no reserve).
 * @return ATR_E_INVALID, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_reserve_new(struct atr_reserve **out, size_t per_tenant,
                                          struct atr_err *err);

/** Wipes and frees everything. NULL is allowed. */
void atr_reserve_free(struct atr_reserve *r);

/** DEKs a tenant should hold. */
size_t atr_reserve_size(const struct atr_reserve *r);

/** DEKs held for @p tenant now. */
size_t atr_reserve_count(struct atr_reserve *r, const char *tenant);

/**
 * Adds a DEK and its blob for @p tenant (both copied).
 * @return ATR_E_TOO_LARGE (the tenant's reserve is full), ATR_E_INVALID,
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_reserve_add(struct atr_reserve *r, const char *tenant,
                                          const struct atr_secret *dek, struct atr_span blob,
                                          struct atr_err *err);

/**
 * Takes @p n DEKs of @p tenant, all or none.
 * @param[out] out  @p n entries, initialised here; release each with
 *                  atr_reserve_dek_cleanup() (also on failure).
 * @return ATR_E_UNAVAILABLE (fewer than @p n held: none taken),
 *         ATR_E_INVALID, ATR_E_NOMEM, ATR_E_AUTH_FAILED (a sealed DEK did
 *         not open: dropped).
 */
ATR_MUST_CHECK atr_status atr_reserve_take(struct atr_reserve *r, const char *tenant,
                                           struct atr_reserve_dek *out, size_t n,
                                           struct atr_err *err);

/** Wipes a taken DEK and frees its blob. */
void atr_reserve_dek_cleanup(struct atr_reserve_dek *d);

/** Drops (wipes) every DEK of @p tenant, e.g. when its customer key changes. */
void atr_reserve_drop(struct atr_reserve *r, const char *tenant);

/**
 * Encodes a blob (format above), appended to @p out.
 * @return ATR_E_INVALID (kid or wrapped value size), ATR_E_NOMEM, ATR_E_TOO_LARGE.
 */
ATR_MUST_CHECK atr_status atr_reserve_blob_encode(struct atr_buf *out, uint32_t srk_version,
                                                  const char *kid, struct atr_span wrapped,
                                                  struct atr_err *err);

/**
 * Parses a blob.
 * @param[out] kid      the kid, NUL-terminated (@p kid_cap > ATR_RESERVE_KID_MAX suffices).
 * @param[out] wrapped  points into @p blob.
 * @return ATR_E_PARSE (truncated, bad lengths), ATR_E_UNSUPPORTED (format).
 */
ATR_MUST_CHECK atr_status atr_reserve_blob_parse(uint32_t *srk_version, char *kid, size_t kid_cap,
                                                 struct atr_span *wrapped, struct atr_span blob,
                                                 struct atr_err *err);

#endif /* ATR_SERVICE_RESERVE_H */
