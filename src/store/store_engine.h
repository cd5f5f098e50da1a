/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_STORE_STORE_ENGINE_H
#define ATR_STORE_STORE_ENGINE_H

/*
 * The engine side of store/store.h: the vtable an engine implements, and
 * the open function of each built-in engine. Private to src/store: the rest
 * of the service uses store/store.h only.
 *
 * store.c validates every argument before it calls an engine (tenant ids,
 * lengths, ranges, limits, NUL-terminated texts, non-NULL pointers), so an
 * engine may rely on valid input and only maps its own failures to the
 * codes of store.h. Outputs are initialised by store.c (rows empty, lists
 * NULL/0) before the engine is called.
 *
 * Each entry has the meaning, the arguments and the error codes of the
 * store.h function of the same name, with the engine state @p impl in place
 * of the store. Every entry must be thread-safe.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "store/store.h"

struct atr_store_vt {
    size_t vt_size;   /* sizeof(struct atr_store_vt) of the engine's build */
    const char *name; /* "sqlite", "postgres" */
    void (*close)(void *impl);

    atr_status (*tenant_create)(void *impl, const struct atr_store_tenant *t, struct atr_err *err);
    atr_status (*tenant_get)(struct atr_store_tenant *out, void *impl, const char *id,
                             struct atr_err *err);
    /* @p ev (NULL = none) is appended in the same transaction as the update */
    atr_status (*tenant_update)(int64_t *out_generation, void *impl,
                                const struct atr_store_tenant *t,
                                const struct atr_store_audit_event *ev, struct atr_err *err);
    atr_status (*tenant_list)(struct atr_store_tenant **out, size_t *out_n, void *impl,
                              const char *after_id, size_t limit, struct atr_err *err);
    atr_status (*tenant_counts)(struct atr_store_tenant_counts *out, void *impl,
                                struct atr_err *err);
    atr_status (*tenant_rewrap_srk)(size_t *out_n, void *impl, atr_store_rewrap_fn fn, void *arg,
                                    int64_t now_ms, struct atr_err *err);

    atr_status (*block_ids_reserve)(int64_t *out_first, void *impl, const char *tenant, size_t n,
                                    struct atr_err *err);
    atr_status (*blocks_append)(void *impl, const char *tenant,
                                const struct atr_store_block_in *blocks, size_t n,
                                struct atr_err *err);
    atr_status (*blocks_list)(struct atr_store_block_meta **out, size_t *out_n, void *impl,
                              const char *tenant, int64_t from_ms, int64_t to_ms,
                              const struct atr_store_block_cursor *after, size_t limit,
                              struct atr_err *err);
    atr_status (*blocks_by_key_ref)(struct atr_store_block_meta **out, size_t *out_n, void *impl,
                                    const char *tenant, const char *key_ref, int64_t after_id,
                                    size_t limit, struct atr_err *err);
    atr_status (*block_read)(struct atr_buf *out_sealed, void *impl, const char *tenant,
                             int64_t block_id, struct atr_err *err);
    atr_status (*block_rekey)(void *impl, const char *tenant, int64_t block_id,
                              const char *old_key_ref, const char *new_key_ref,
                              struct atr_span new_wrapped_dek, struct atr_span new_sealed,
                              struct atr_err *err);

    atr_status (*audit_append)(int64_t *out_id, void *impl, const struct atr_store_audit_event *ev,
                               struct atr_err *err);
    atr_status (*audit_list)(struct atr_store_audit_event **out, size_t *out_n, void *impl,
                             const char *tenant, int64_t before_id, size_t limit,
                             struct atr_err *err);

    atr_status (*stats_get)(struct atr_store_stats *out, void *impl, const char *tenant,
                            struct atr_err *err);
};

/**
 * Opens the SQLite engine on the file @p path (store/store_sqlite.c).
 * @param[out] out_vt    the engine's static vtable.
 * @param[out] out_impl  engine state, released by (*out_vt)->close().
 * @param busy_timeout_ms  how long to wait for a lock held elsewhere.
 * @return as atr_store_open().
 */
ATR_MUST_CHECK atr_status atr_store_sqlite_open(const struct atr_store_vt **out_vt, void **out_impl,
                                                const char *path, unsigned busy_timeout_ms,
                                                struct atr_err *err);

/**
 * Opens the PostgreSQL engine (store/store_pg.c) on the database of the
 * libpq connection URI @p url ("postgres://..." or "postgresql://...";
 * the extra query parameter pool_max_conns=N, 1..64, sets the pool size,
 * default 4), creating or migrating its schema.
 * @param busy_timeout_ms  how long a statement waits for a row lock held
 *                         elsewhere (the sessions' lock_timeout).
 * @return as atr_store_open(); ATR_E_INVALID also for a bad URI or pool
 *         size, ATR_E_IO "the database is unreachable: ..." when no
 *         connection can be made, ATR_E_CONFIG also for a database whose
 *         encoding is not UTF8.
 */
ATR_MUST_CHECK atr_status atr_store_pg_open(const struct atr_store_vt **out_vt, void **out_impl,
                                            const char *url, unsigned busy_timeout_ms,
                                            struct atr_err *err);

#endif /* ATR_STORE_STORE_ENGINE_H */
