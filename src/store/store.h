/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_STORE_STORE_H
#define ATR_STORE_STORE_H

/*
 * The service's storage interface (design section 4), engine-neutral: the
 * embedded SQLite engine and the PostgreSQL engine (several service nodes
 * on one database; docs/storage.md) are built in behind the same functions
 * (store/store_engine.h is the vtable).
 *
 * A store holds:
 *  - tenants: encryption state, wrapped tenant key (TK) under the service
 *    root key (SRK), the optional customer layer, and a generation that
 *    every update bumps. Updates are compare-and-set on the generation
 *    (ATR_E_CONFLICT when someone else changed the row first), which is how
 *    crash-safe transitions and, later, several nodes stay consistent;
 *  - the block catalog and the sealed blocks (store/block.h): cleartext
 *    metadata (tenant, block id, time range, record count, key reference,
 *    wrapped DEK, size) next to the sealed bytes;
 *  - the audit log;
 *  - storage statistics for metrics.
 * Nothing about a record's content is stored in clear: see docs/formats.md.
 *
 * Durability: a write is durable when its function returns ATR_OK (the
 * SQLite engine commits in WAL mode with synchronous=FULL, so the WAL is
 * fsync'ed at every commit; the PostgreSQL engine returns ATR_OK only for
 * an answered COMMIT, with synchronous_commit on). atr_store_blocks_append() writes a whole batch
 * in one transaction: several ingest batches committed together share one
 * fsync (group commit).
 *
 * Block ids: the block id is bound into the sealed bytes, so it must be
 * known before a block is sealed. The store hands ids out with
 * atr_store_block_ids_reserve() (monotonically increasing, never handed out
 * twice by one open store); the caller seals with them and then appends.
 * Reserved ids that are never appended leave gaps; after a restart, ids that
 * were reserved but never appended may be handed out again (no block was
 * stored under them).
 *
 * Every public function validates its arguments before the engine sees
 * them (ATR_E_INVALID with a message naming the argument, never its value)
 * and returns only the codes it documents plus ATR_E_IO (the engine failed;
 * the message carries the engine's text, never data values) and ATR_E_NOMEM
 * (the engine ran out of memory).
 *
 * Ownership: rows handed out are owned by the caller and released with the
 * matching free/cleanup function; wrapped keys are wiped on release.
 *
 * Thread-safety: a struct atr_store may be used by any number of threads at
 * once; each call is atomic. Rows belong to their caller.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"

/* Limits (bytes, without the terminating NUL). */
#define ATR_STORE_TENANT_ID_MAX 64
#define ATR_STORE_REASON_MAX    256
#define ATR_STORE_URI_MAX       1024 /* key URI and customer key id (kid) */
#define ATR_STORE_EXTRA_MAX     2048 /* lifecycle extras (JSON text) */
#define ATR_STORE_KEY_REF_MAX   64
#define ATR_STORE_WRAPPED_MAX   4096 /* a wrapped key blob */
#define ATR_STORE_SEALED_MAX    ((size_t)64 << 20)
#define ATR_STORE_ACTOR_MAX     256
#define ATR_STORE_ACTION_MAX    64
#define ATR_STORE_DETAIL_MAX    2048
#define ATR_STORE_LIST_MAX      1000 /* rows per list call */
#define ATR_STORE_APPEND_MAX    8192 /* blocks per append call */
/* Generation of a freshly created tenant; every update adds one. */
#define ATR_STORE_GENERATION_FIRST 1
/* Default time the engine waits for a lock held by someone else. */
#define ATR_STORE_BUSY_TIMEOUT_MS 5000

struct atr_store;

/*
 * Encryption state of a tenant (design section 3). Stored as its name.
 * Starts at 1 so that zeroed memory is no state at all (style anchors 3.3).
 */
typedef enum atr_store_state {
    ATR_STORE_STATE_MANAGED = 1,
    ATR_STORE_STATE_ENABLING = 2,
    ATR_STORE_STATE_CUSTOMER = 3,
    ATR_STORE_STATE_DEGRADED = 4,
    ATR_STORE_STATE_LOCKED = 5,
    ATR_STORE_STATE_DISABLING = 6,
} atr_store_state;
#define ATR_STORE_STATE_MAX 6

struct atr_store_opts {
    unsigned busy_timeout_ms; /* 0: ATR_STORE_BUSY_TIMEOUT_MS */
};

/*
 * A tenant row. Text fields are NUL-terminated; an empty string is "none"
 * where the column is nullable (key_uri, customer_kid). The blobs are
 * owned buffers (wiped on cleanup): initialise with atr_store_tenant_init(),
 * release with atr_store_tenant_cleanup().
 */
struct atr_store_tenant {
    char id[ATR_STORE_TENANT_ID_MAX + 1]; /* 1..64 of [A-Za-z0-9._-] */
    atr_store_state state;
    char reason[ATR_STORE_REASON_MAX + 1];    /* why the state, "" when none */
    char key_uri[ATR_STORE_URI_MAX + 1];      /* customer key URI, "" when none */
    struct atr_buf srk_blob;                  /* SRK-wrap(TK); empty only in customer mode */
    int32_t srk_version;                      /* SRK version that wrapped it, >= 0 */
    struct atr_buf customer_blob;             /* CK-wrap(SRK-wrap(TK)), empty when none */
    char customer_kid[ATR_STORE_URI_MAX + 1]; /* kid that made it, "" iff no blob */
    char extra_json[ATR_STORE_EXTRA_MAX + 1]; /* not parsed here; "" is stored as "{}" */
    int64_t created_ms;                       /* Unix milliseconds */
    int64_t updated_ms;
    int64_t generation; /* set by the store */
};

/* Tenants per state, for metrics. */
struct atr_store_tenant_counts {
    uint64_t by_state[ATR_STORE_STATE_MAX + 1]; /* index: atr_store_state; [0] unused */
    uint64_t total;
};

/*
 * Called by atr_store_tenant_rewrap_srk() once per tenant, in id order,
 * inside the store's transaction (it must not call the store).
 * @param[out] out_blob     empty, cap ATR_STORE_WRAPPED_MAX: the new
 *                          SRK-wrap(TK). Left empty: the row stays as it is.
 * @param[out] out_version  the SRK version of the new blob (>= 0); preset to
 *                          @p old_version.
 * @param old_blob          the current blob, borrowed for the call.
 * @return ATR_OK, or any code, which aborts the whole re-wrap (nothing is
 *         changed) and is returned by atr_store_tenant_rewrap_srk().
 */
typedef atr_status (*atr_store_rewrap_fn)(struct atr_buf *out_blob, int32_t *out_version, void *arg,
                                          const char *tenant_id, struct atr_span old_blob,
                                          int32_t old_version, struct atr_err *err);

/* A block to append (all fields borrowed for the call). */
struct atr_store_block_in {
    int64_t block_id;            /* from atr_store_block_ids_reserve() */
    int64_t t_min_ms;            /* earliest record time, Unix ms */
    int64_t t_max_ms;            /* latest record time, >= t_min_ms */
    int64_t records;             /* number of records, >= 0 */
    const char *key_ref;         /* which key wraps the DEK: "tk", "reserve:<id>" */
    struct atr_span wrapped_dek; /* 1..ATR_STORE_WRAPPED_MAX bytes */
    struct atr_span sealed;      /* 1..ATR_STORE_SEALED_MAX bytes (store/block.h) */
    /*
     * The block's tenant when it is not the call's (group commit: blocks of
     * several tenants in one transaction); NULL = the tenant of the call.
     */
    const char *tenant;
};

/* Catalog entry of a block (owned: release lists with atr_store_block_metas_free()). */
struct atr_store_block_meta {
    int64_t block_id;
    int64_t t_min_ms;
    int64_t t_max_ms;
    int64_t records;
    int64_t size; /* bytes of the sealed block */
    char key_ref[ATR_STORE_KEY_REF_MAX + 1];
    struct atr_buf wrapped_dek;
};

/* Position after a block in (t_min, block id) order. */
struct atr_store_block_cursor {
    int64_t t_min_ms;
    int64_t block_id;
};

/* An audit event. Key material never goes here: ids and versions only. */
struct atr_store_audit_event {
    int64_t id;                                 /* assigned by the store, increasing */
    char tenant[ATR_STORE_TENANT_ID_MAX + 1];   /* "" for service-wide events */
    int64_t time_ms;                            /* Unix ms */
    char actor[ATR_STORE_ACTOR_MAX + 1];        /* who: principal id, "monitor", ... */
    char action[ATR_STORE_ACTION_MAX + 1];      /* what: "encryption.enable", ... */
    char detail_json[ATR_STORE_DETAIL_MAX + 1]; /* JSON text, not parsed here; "" = "{}" */
};

struct atr_store_stats {
    uint64_t blocks;
    uint64_t sealed_bytes;
};

/* ---- lifecycle ---- */

/**
 * Opens the store at @p location, creating it when missing.
 * @param[out] out   owned by the caller; release with atr_store_close().
 * @param location   "sqlite:PATH" or a plain file path (SQLite);
 *                   "postgres://..." or "postgresql://..." (PostgreSQL: a
 *                   libpq connection URI, see docs/storage.md). Any other
 *                   "scheme:..." names an engine that is not built. A path
 *                   that looks like a scheme can be given as "sqlite:PATH".
 * @param opts       NULL for defaults.
 * @return ATR_E_INVALID (empty location, bad connection URI), ATR_E_UNSUPPORTED
 *         (engine not built), ATR_E_IO (cannot open or create, not a database,
 *         file readable by group or others, locked by another process, the
 *         database is unreachable),
 *         ATR_E_CONFIG (stored schema newer than this program), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_store_open(struct atr_store **out, const char *location,
                                         const struct atr_store_opts *opts, struct atr_err *err);

/** Closes the store (all calls must have returned). NULL is allowed. */
void atr_store_close(struct atr_store *s);

/** Name of the engine behind @p s ("sqlite", "postgres"; "none" for NULL); static storage. */
const char *atr_store_engine_name(const struct atr_store *s);

/* ---- tenants ---- */

/** 1 when @p id is a valid tenant id: 1..64 characters of [A-Za-z0-9._-]. */
int atr_store_tenant_id_ok(const char *id);

/** Stored name of @p st ("managed"), or NULL for a value outside the enum. */
const char *atr_store_state_name(atr_store_state st);

/**
 * The state named @p name. @param[out] out  set on ATR_OK.
 * @return ATR_E_INVALID for an unknown name.
 */
ATR_MUST_CHECK atr_status atr_store_state_parse(atr_store_state *out, const char *name);

/** Makes @p t an empty row (no state, empty buffers). Cannot fail. */
void atr_store_tenant_init(struct atr_store_tenant *t);

/** Wipes and frees the row's buffers; it is empty and reusable. NULL is allowed. */
void atr_store_tenant_cleanup(struct atr_store_tenant *t);

/** Cleans up and frees @p n rows from atr_store_tenant_list(). NULL is allowed. */
void atr_store_tenants_free(struct atr_store_tenant *rows, size_t n);

/**
 * Creates tenant @p t->id with generation ATR_STORE_GENERATION_FIRST;
 * updated_ms is set to created_ms. @p t->generation is ignored.
 * @return ATR_E_CONFLICT (the tenant exists), ATR_E_INVALID (a field:
 *         id, state, an over-long or unterminated text, empty or over-long
 *         SRK blob, negative SRK version, customer blob without kid or kid
 *         without blob), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_tenant_create(struct atr_store *s,
                                                  const struct atr_store_tenant *t,
                                                  struct atr_err *err);

/**
 * Reads tenant @p id.
 * @param[out] out  need not be initialised (any buffers it held are NOT
 *                  freed); on return it is initialised, and on ATR_OK owns
 *                  the row's buffers: release with atr_store_tenant_cleanup().
 * @return ATR_E_NOT_FOUND, ATR_E_INVALID (id), ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_tenant_get(struct atr_store_tenant *out, struct atr_store *s,
                                               const char *id, struct atr_err *err);

/**
 * Replaces every mutable field of tenant @p t->id (state, reason, key URI,
 * blobs, versions, kid, extras, updated_ms), on the condition that its
 * generation is still @p t->generation; the stored generation then becomes
 * t->generation + 1. created_ms is never changed.
 * @param[out] out_generation  the new generation (NULL allowed).
 * @return ATR_E_CONFLICT (the generation changed: re-read and retry),
 *         ATR_E_NOT_FOUND, ATR_E_INVALID (as atr_store_tenant_create()),
 *         ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_tenant_update(int64_t *out_generation, struct atr_store *s,
                                                  const struct atr_store_tenant *t,
                                                  struct atr_err *err);

/**
 * As atr_store_tenant_update(), and appends the audit event @p ev (its id
 * ignored; NULL = none) in the SAME transaction: a state change and the
 * event that records it are stored together or not at all (crash safety).
 * @return as atr_store_tenant_update(); ATR_E_INVALID also for a bad event
 *         (as atr_store_audit_append()). On any error neither is stored.
 */
ATR_MUST_CHECK atr_status atr_store_tenant_update_audited(int64_t *out_generation,
                                                          struct atr_store *s,
                                                          const struct atr_store_tenant *t,
                                                          const struct atr_store_audit_event *ev,
                                                          struct atr_err *err);

/**
 * Lists tenants in id order (bytewise), at most @p limit, starting after
 * @p after_id (NULL or "" = from the first).
 * @param[out] out    array owned by the caller (atr_store_tenants_free()),
 *                    NULL when there is no row.
 * @param[out] out_n  number of rows.
 * @param limit       1..ATR_STORE_LIST_MAX.
 * @return ATR_E_INVALID (limit, after_id), ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_tenant_list(struct atr_store_tenant **out, size_t *out_n,
                                                struct atr_store *s, const char *after_id,
                                                size_t limit, struct atr_err *err);

/**
 * Counts tenants per state. @param[out] out  filled on ATR_OK.
 * @return ATR_E_IO (also for a stored state this program does not know).
 */
ATR_MUST_CHECK atr_status atr_store_tenant_counts(struct atr_store_tenant_counts *out,
                                                  struct atr_store *s, struct atr_err *err);

/**
 * SRK rotation: calls @p fn for every tenant and stores each new SRK blob
 * and version, bumping the generation and setting updated_ms to @p now_ms,
 * all in ONE transaction: either every tenant is re-wrapped or none is.
 * Other calls on the store wait while it runs.
 * @param[out] out_n  number of tenants changed (NULL allowed).
 * @return the first error of @p fn (nothing changed), ATR_E_INVALID (a
 *         blob from @p fn is too long or the version negative),
 *         ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_tenant_rewrap_srk(size_t *out_n, struct atr_store *s,
                                                      atr_store_rewrap_fn fn, void *arg,
                                                      int64_t now_ms, struct atr_err *err);

/* ---- blocks ---- */

/**
 * Reserves @p n consecutive block ids for @p tenant: *out_first ..
 * *out_first + n - 1. Ids increase monotonically and an open store never
 * hands one out twice; this call does not write (cheap, no fsync).
 * @param n  1..ATR_STORE_APPEND_MAX.
 * @return ATR_E_INVALID (tenant id, n), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_block_ids_reserve(int64_t *out_first, struct atr_store *s,
                                                      const char *tenant, size_t n,
                                                      struct atr_err *err);

/**
 * Appends @p n blocks of @p tenant in ONE transaction, durable when this
 * returns ATR_OK; on any error nothing is stored.
 * @param blocks  1..ATR_STORE_APPEND_MAX entries, ids from
 *                atr_store_block_ids_reserve().
 * @return ATR_E_NOT_FOUND (no such tenant), ATR_E_CONFLICT (a block id is
 *         already stored), ATR_E_INVALID (tenant id, n, an id that was not
 *         reserved, t_min_ms > t_max_ms, negative record count, key
 *         reference, empty or over-long blob), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_blocks_append(struct atr_store *s, const char *tenant,
                                                  const struct atr_store_block_in *blocks, size_t n,
                                                  struct atr_err *err);

/**
 * Lists the blocks of @p tenant whose [t_min, t_max] overlaps the half-open
 * range [@p from_ms, @p to_ms), ordered by (t_min, block id), strictly
 * after @p after (NULL = from the first), at most @p limit.
 * @param[out] out    owned by the caller (atr_store_block_metas_free()),
 *                    NULL when there is no row.
 * @param[out] out_n  number of rows; fewer than @p limit means the end.
 * @return ATR_E_INVALID (tenant id, from_ms >= to_ms, limit outside
 *         1..ATR_STORE_LIST_MAX), ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_blocks_list(struct atr_store_block_meta **out, size_t *out_n,
                                                struct atr_store *s, const char *tenant,
                                                int64_t from_ms, int64_t to_ms,
                                                const struct atr_store_block_cursor *after,
                                                size_t limit, struct atr_err *err);

/**
 * Lists the blocks of @p tenant whose key reference is @p key_ref (for
 * instance the blocks sealed with reserve data keys while the tenant was
 * locked), in block id order, with ids above @p after_id, at most @p limit.
 * Outputs as atr_store_blocks_list().
 * @return ATR_E_INVALID (tenant id, key reference, negative after_id,
 *         limit), ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_blocks_by_key_ref(struct atr_store_block_meta **out,
                                                      size_t *out_n, struct atr_store *s,
                                                      const char *tenant, const char *key_ref,
                                                      int64_t after_id, size_t limit,
                                                      struct atr_err *err);

/** Wipes and frees @p n rows from atr_store_blocks_list(). NULL is allowed. */
void atr_store_block_metas_free(struct atr_store_block_meta *rows, size_t n);

/**
 * Appends the sealed bytes of one block to @p out_sealed.
 * @return ATR_E_NOT_FOUND, ATR_E_INVALID (tenant id, block id),
 *         ATR_E_TOO_LARGE (over the buffer's cap; the buffer is released),
 *         ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_block_read(struct atr_buf *out_sealed, struct atr_store *s,
                                               const char *tenant, int64_t block_id,
                                               struct atr_err *err);

/**
 * Moves one block to another wrapping key, on the condition that its key
 * reference is still @p old_key_ref: stores @p new_key_ref and
 * @p new_wrapped_dek, and, when @p new_sealed is not empty, replaces the
 * sealed bytes in the same write. Because the key reference is bound into
 * the sealed bytes (store/block.h), a caller that changes the reference
 * must re-seal the block and pass the new bytes here.
 * @return ATR_E_CONFLICT (the key reference is no longer @p old_key_ref),
 *         ATR_E_NOT_FOUND, ATR_E_INVALID (tenant id, block id, key
 *         references, blob sizes), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_block_rekey(struct atr_store *s, const char *tenant,
                                                int64_t block_id, const char *old_key_ref,
                                                const char *new_key_ref,
                                                struct atr_span new_wrapped_dek,
                                                struct atr_span new_sealed, struct atr_err *err);

/* ---- audit ---- */

/**
 * Appends @p ev (its id is ignored) to the audit log.
 * @param[out] out_id  the event's id (NULL allowed).
 * @return ATR_E_INVALID (tenant id when not empty, empty actor or action,
 *         an over-long or unterminated text), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_audit_append(int64_t *out_id, struct atr_store *s,
                                                 const struct atr_store_audit_event *ev,
                                                 struct atr_err *err);

/**
 * Lists audit events newest first (decreasing id), of @p tenant (NULL: all
 * events, service-wide ones included), with ids below @p before_id (0 =
 * from the newest), at most @p limit.
 * @param[out] out  owned by the caller (atr_free()), NULL when empty.
 * @return ATR_E_INVALID (tenant id, negative before_id, limit outside
 *         1..ATR_STORE_LIST_MAX), ATR_E_NOMEM, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_audit_list(struct atr_store_audit_event **out, size_t *out_n,
                                               struct atr_store *s, const char *tenant,
                                               int64_t before_id, size_t limit,
                                               struct atr_err *err);

/* ---- statistics ---- */

/**
 * Number of blocks and total sealed bytes of @p tenant (NULL: all tenants).
 * @param[out] out  filled on ATR_OK.
 * @return ATR_E_INVALID (tenant id), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_store_stats_get(struct atr_store_stats *out, struct atr_store *s,
                                              const char *tenant, struct atr_err *err);

#endif /* ATR_STORE_STORE_H */
