/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded storage engine: one SQLite file (design section 4).
 *
 * Settings, and why:
 *  - journal_mode=WAL with synchronous=FULL: every COMMIT appends to the
 *    write-ahead log and fsyncs it before returning, so an acknowledged
 *    write survives a power loss (NORMAL would only sync at checkpoints).
 *    SQLite also fsyncs the directory when it creates the WAL file; we
 *    fsync it when we create the database file.
 *  - locking_mode=EXCLUSIVE: one process owns the file while it is open
 *    (another one gets ATR_E_IO, "database is locked"). The block id counter
 *    lives in memory (below), which is only sound with a single owner; it
 *    also keeps the WAL index in process memory instead of a -shm file.
 *  - secure_delete=ON: deleted or overwritten rows (old wrapped keys) are
 *    zeroed in the file, not left in free pages.
 *  - foreign_keys=ON: a block needs its tenant.
 *  - the file is created 0600 by us (SQLite would honour the umask) and a
 *    file readable or writable by group or others is refused.
 *  - the schema version is PRAGMA user_version; migrations[] takes a file
 *    from version i to i + 1, each step in its own transaction; a newer
 *    file is refused (ATR_E_CONFIG).
 *
 * Concurrency: one connection behind one mutex, held for the whole of each
 * call, so calls are serialised (a read waits for a commit's fsync). This is
 * simple and correct; more readers (WAL allows them) can come later with a
 * connection pool if measurements ask for it.
 *
 * Block ids: a global counter (unique across tenants, hence per tenant),
 * initialised at open from the largest stored id. A reservation only moves
 * the counter; ids reserved but never committed before a crash may be handed
 * out again after it, which is harmless because no block was stored under
 * them.
 *
 * Errors: ATR_E_IO carries sqlite3_errmsg(), which names tables and columns
 * but never values; constraint failures become ATR_E_CONFLICT (key exists)
 * or ATR_E_NOT_FOUND (the tenant of a block does not exist).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/alloc.h"
#include "store/store_engine.h"

#define SCHEMA_VERSION 1
#define REWRAP_CHUNK   64

struct eng {
    sqlite3 *db;
    pthread_mutex_t lock;
    int64_t next_block_id; /* next id to reserve; guarded by lock */
};

/*
 * Schema version 1. Plain tables and types PostgreSQL also accepts, except
 * the audit id (INTEGER PRIMARY KEY is SQLite's rowid; a PostgreSQL engine
 * uses BIGINT GENERATED ALWAYS AS IDENTITY) and BLOB (bytea there).
 * The sealed bytes are the last column of blocks so that catalog queries
 * never read the overflow pages that hold them.
 */
static const char schema_v1[] = "CREATE TABLE tenants ("
                                " id TEXT NOT NULL PRIMARY KEY,"
                                " created_ms BIGINT NOT NULL,"
                                " updated_ms BIGINT NOT NULL,"
                                " state TEXT NOT NULL,"
                                " state_reason TEXT NOT NULL,"
                                " key_uri TEXT,"
                                " srk_blob BLOB NOT NULL,"
                                " srk_version INTEGER NOT NULL,"
                                " customer_blob BLOB,"
                                " customer_kid TEXT,"
                                " generation BIGINT NOT NULL,"
                                " extra TEXT NOT NULL);"
                                "CREATE TABLE blocks ("
                                " tenant TEXT NOT NULL REFERENCES tenants (id),"
                                " block_id BIGINT NOT NULL,"
                                " t_min BIGINT NOT NULL,"
                                " t_max BIGINT NOT NULL,"
                                " records BIGINT NOT NULL,"
                                " key_ref TEXT NOT NULL,"
                                " wrapped_dek BLOB NOT NULL,"
                                " size BIGINT NOT NULL,"
                                " sealed BLOB NOT NULL,"
                                " PRIMARY KEY (tenant, block_id));"
                                "CREATE INDEX blocks_by_time ON blocks (tenant, t_min, block_id);"
                                "CREATE INDEX blocks_by_id ON blocks (block_id);"
                                "CREATE TABLE audit ("
                                " id INTEGER PRIMARY KEY,"
                                " tenant TEXT,"
                                " time_ms BIGINT NOT NULL,"
                                " actor TEXT NOT NULL,"
                                " action TEXT NOT NULL,"
                                " detail TEXT NOT NULL);"
                                "CREATE INDEX audit_by_tenant ON audit (tenant, id);";

/* migrations[i] takes the schema from version i to i + 1. */
static const char *const migrations[SCHEMA_VERSION] = {schema_v1};

static atr_status db_err(struct atr_err *err, sqlite3 *db, const char *what)
{
    return atr_err_set(err, ATR_E_IO, "sqlite store: %s: %s", what,
                       db != NULL ? sqlite3_errmsg(db) : "no database");
}

static atr_status corrupt(struct atr_err *err, const char *what)
{
    return atr_err_set(err, ATR_E_IO, "sqlite store: stored %s is not valid", what);
}

static atr_status exec_sql(sqlite3 *db, const char *sql, struct atr_err *err)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_err(err, db, "exec");
    return ATR_OK;
}

static atr_status tx_begin(struct eng *e, struct atr_err *err)
{
    return exec_sql(e->db, "BEGIN IMMEDIATE", err);
}

static atr_status tx_commit(struct eng *e, struct atr_err *err)
{
    if (sqlite3_exec(e->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        atr_status rc = db_err(err, e->db, "commit");
        (void)sqlite3_exec(e->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return ATR_OK;
}

static void tx_rollback(struct eng *e)
{
    if (!sqlite3_get_autocommit(e->db))
        (void)sqlite3_exec(e->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- the statement helper ----
 *
 * A struct sq carries one prepared statement and a sticky status: binds
 * after a failure do nothing, steps after a failure report no row, and
 * sq_end() finalizes and returns the first failure. Call sites then read
 * as a list of binds and one check. Called with the engine lock held.
 */
struct sq {
    struct eng *e;
    sqlite3_stmt *st;
    int idx; /* last bound parameter */
    atr_status rc;
    struct atr_err *err;
};

static void sq_prep(struct sq *q, struct eng *e, const char *sql, struct atr_err *err)
{
    q->e = e;
    q->st = NULL;
    q->idx = 0;
    q->err = err;
    q->rc = ATR_OK;
    if (sqlite3_prepare_v2(e->db, sql, -1, &q->st, NULL) != SQLITE_OK)
        q->rc = db_err(err, e->db, "prepare");
}

static void sq_bound(struct sq *q, int r)
{
    if (r != SQLITE_OK && q->rc == ATR_OK)
        q->rc = r == SQLITE_NOMEM ? atr_err_set(q->err, ATR_E_NOMEM, "sqlite store: out of memory")
                                  : db_err(q->err, q->e->db, "bind");
}

static void sq_i64(struct sq *q, int64_t v)
{
    if (q->rc == ATR_OK)
        sq_bound(q, sqlite3_bind_int64(q->st, ++q->idx, v));
}

/* Binds @p v as text; NULL binds SQL NULL. */
static void sq_text(struct sq *q, const char *v)
{
    if (q->rc != ATR_OK)
        return;
    if (v == NULL)
        sq_bound(q, sqlite3_bind_null(q->st, ++q->idx));
    else
        sq_bound(q, sqlite3_bind_text64(q->st, ++q->idx, v, strlen(v), SQLITE_STATIC, SQLITE_UTF8));
}

/* Binds @p v, or SQL NULL when it is "" (nullable text columns). */
static void sq_text_or_null(struct sq *q, const char *v)
{
    sq_text(q, v[0] != '\0' ? v : NULL);
}

/* Binds the bytes of @p v (borrowed until the step), or SQL NULL when empty. */
static void sq_blob(struct sq *q, struct atr_span v)
{
    if (q->rc != ATR_OK)
        return;
    if (v.len == 0)
        sq_bound(q, sqlite3_bind_null(q->st, ++q->idx));
    else
        sq_bound(q, sqlite3_bind_blob64(q->st, ++q->idx, v.ptr, v.len, SQLITE_STATIC));
}

/* As sq_blob, but an empty value is an empty blob, not NULL (NOT NULL columns). */
static void sq_blob_nn(struct sq *q, struct atr_span v)
{
    if (q->rc == ATR_OK && v.len == 0)
        sq_bound(q, sqlite3_bind_zeroblob(q->st, ++q->idx, 0));
    else
        sq_blob(q, v);
}

static atr_status step_fail(struct sq *q, int r)
{
    switch (r) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return atr_err_set(q->err, ATR_E_CONFLICT, "store: it already exists");
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return atr_err_set(q->err, ATR_E_NOT_FOUND, "store: tenant not found");
    case SQLITE_NOMEM:
        return atr_err_set(q->err, ATR_E_NOMEM, "sqlite store: out of memory");
    default:
        return db_err(q->err, q->e->db, "step");
    }
}

/* Steps once: 1 with a row, 0 when done or failed (then q->rc says why). */
static int sq_row(struct sq *q)
{
    if (q->rc != ATR_OK)
        return 0;
    int r = sqlite3_step(q->st);
    if (r == SQLITE_ROW)
        return 1;
    if (r != SQLITE_DONE)
        q->rc = step_fail(q, r);
    return 0;
}

/* Runs a statement that returns no rows; @p out_changes (NULL ok) gets the count. */
static void sq_exec(struct sq *q, int *out_changes)
{
    if (q->rc != ATR_OK)
        return;
    int r = sqlite3_step(q->st);
    if (r == SQLITE_ROW || r == SQLITE_DONE) {
        if (out_changes != NULL)
            *out_changes = sqlite3_changes(q->e->db);
        return;
    }
    q->rc = step_fail(q, r);
}

/* Makes the statement ready for new bindings (same SQL). */
static void sq_reset(struct sq *q)
{
    if (q->st != NULL) {
        sqlite3_reset(q->st);
        sqlite3_clear_bindings(q->st);
    }
    q->idx = 0;
}

static atr_status sq_end(struct sq *q)
{
    sqlite3_finalize(q->st);
    q->st = NULL;
    return q->rc;
}

/* ---- column readers ---- */

/* Copies a text column into @p dst of @p cap bytes; NULL reads as "". */
static atr_status col_text(char *dst, size_t cap, sqlite3_stmt *st, int i, const char *what,
                           struct atr_err *err)
{
    dst[0] = '\0';
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return ATR_OK;
    const unsigned char *p = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (p == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "sqlite store: out of memory");
    if (n < 0 || (size_t)n >= cap || memchr(p, '\0', (size_t)n) != NULL)
        return corrupt(err, what);
    memcpy(dst, p, (size_t)n);
    dst[n] = '\0';
    return ATR_OK;
}

/* Appends a blob column to @p dst; NULL reads as empty. */
static atr_status col_blob(struct atr_buf *dst, sqlite3_stmt *st, int i, const char *what,
                           struct atr_err *err)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return ATR_OK;
    const void *p = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (n <= 0)
        return ATR_OK;
    if (p == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "sqlite store: out of memory");
    atr_status rc = atr_buf_append(dst, p, (size_t)n);
    if (rc == ATR_E_NOMEM)
        return atr_err_set(err, rc, "sqlite store: out of memory");
    if (rc != ATR_OK)
        return corrupt(err, what);
    return ATR_OK;
}

/*
 * Reads every row of the prepared, bound statement of @p q into a new array
 * of at most @p max elements of @p size bytes (zeroed before @p row fills
 * one; @p row cleans its own element when it fails). On failure, or with
 * no row, nothing is handed out and @p discard releases the rows read.
 */
typedef atr_status (*row_fn)(void *elem, sqlite3_stmt *st, struct atr_err *err);
typedef void (*rows_free_fn)(void *rows, size_t n);

static void rows_free_plain(void *rows, size_t n)
{
    ATR_UNUSED(n);
    atr_free(rows);
}

static atr_status collect(void **out, size_t *out_n, struct sq *q, size_t size, size_t max,
                          row_fn row, rows_free_fn discard)
{
    uint8_t *v = NULL;
    size_t n = 0, cap = 0;
    while (n < max && sq_row(q)) {
        if (n == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            if (ncap > max)
                ncap = max;
            uint8_t *nv = atr_realloc(v, ncap * size);
            if (nv == NULL) {
                q->rc = atr_err_set(q->err, ATR_E_NOMEM, "store: out of memory");
                break;
            }
            v = nv;
            cap = ncap;
        }
        memset(v + n * size, 0, size);
        if ((q->rc = row(v + n * size, q->st, q->err)) != ATR_OK)
            break;
        n++;
    }
    if (q->rc != ATR_OK || n == 0) {
        discard(v, n);
        return q->rc;
    }
    *out = v;
    *out_n = n;
    return ATR_OK;
}

/* ---- open / close ---- */

/* fsyncs the directory holding @p path, so a new file's name is durable. */
static void sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Creates the file 0600 when missing and refuses one that others may read. */
static atr_status prepare_file(const char *path, struct atr_err *err)
{
    int created = 1;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "sqlite store: cannot open %s: %s", path,
                           strerror(errno));
    struct stat sb;
    int bad_mode = fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0;
    if (created && !bad_mode)
        (void)fsync(fd);
    close(fd);
    if (bad_mode)
        return atr_err_set(err, ATR_E_IO,
                           "sqlite store: %s must be a regular file that only its owner may "
                           "read or write (mode 0600)",
                           path);
    if (created)
        sync_parent_dir(path);
    return ATR_OK;
}

static atr_status pragma_text(sqlite3 *db, const char *sql, const char *want, struct atr_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(err, db, "pragma");
    atr_status rc = ATR_OK;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = db_err(err, db, "pragma");
    } else {
        const unsigned char *v = sqlite3_column_text(st, 0);
        if (v == NULL || strcmp((const char *)v, want) != 0)
            rc = atr_err_set(err, ATR_E_IO, "sqlite store: cannot set %s", sql);
    }
    sqlite3_finalize(st);
    return rc;
}

static atr_status query_int64(int64_t *out, sqlite3 *db, const char *sql, struct atr_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(err, db, "prepare");
    atr_status rc = ATR_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = db_err(err, db, "step");
    sqlite3_finalize(st);
    return rc;
}

static atr_status migrate(sqlite3 *db, struct atr_err *err)
{
    int64_t v = -1;
    ATR_TRY(query_int64(&v, db, "PRAGMA user_version", err));
    if (v > SCHEMA_VERSION)
        return atr_err_set(err, ATR_E_CONFIG,
                           "sqlite store: schema version %lld is newer than this program (%d)",
                           (long long)v, SCHEMA_VERSION);
    if (v < 0)
        return corrupt(err, "schema version");
    for (; v < SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %lld", (long long)v + 1);
        ATR_TRY(exec_sql(db, "BEGIN IMMEDIATE", err));
        atr_status rc = exec_sql(db, migrations[v], err);
        if (rc == ATR_OK)
            rc = exec_sql(db, bump, err);
        if (rc == ATR_OK)
            rc = exec_sql(db, "COMMIT", err);
        if (rc != ATR_OK) {
            (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    return ATR_OK;
}

static void eng_close(void *impl)
{
    struct eng *e = impl;
    if (e == NULL)
        return;
    if (e->db != NULL) {
        /* fold the WAL into the file and truncate it: no stale pages left behind */
        (void)sqlite3_exec(e->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(e->db);
    }
    pthread_mutex_destroy(&e->lock);
    atr_free(e);
}

/* ---- tenants ---- */

#define TENANT_COLS                                                                                \
    "id, created_ms, updated_ms, state, state_reason, key_uri, srk_blob, srk_version, "            \
    "customer_blob, customer_kid, generation, extra"

static atr_status row_tenant(struct atr_store_tenant *t, sqlite3_stmt *st, struct atr_err *err)
{
    atr_store_tenant_init(t);
    char state[32];
    atr_status rc;
    if ((rc = col_text(t->id, sizeof(t->id), st, 0, "tenant id", err)) != ATR_OK)
        goto done;
    t->created_ms = sqlite3_column_int64(st, 1);
    t->updated_ms = sqlite3_column_int64(st, 2);
    if ((rc = col_text(state, sizeof(state), st, 3, "tenant state", err)) != ATR_OK)
        goto done;
    if (atr_store_state_parse(&t->state, state) != ATR_OK) {
        rc = corrupt(err, "tenant state");
        goto done;
    }
    if ((rc = col_text(t->reason, sizeof(t->reason), st, 4, "state reason", err)) != ATR_OK ||
        (rc = col_text(t->key_uri, sizeof(t->key_uri), st, 5, "key URI", err)) != ATR_OK ||
        (rc = col_blob(&t->srk_blob, st, 6, "SRK blob", err)) != ATR_OK)
        goto done;
    int64_t ver = sqlite3_column_int64(st, 7);
    if (ver < 0 || ver > INT32_MAX) {
        rc = corrupt(err, "SRK version");
        goto done;
    }
    t->srk_version = (int32_t)ver;
    if ((rc = col_blob(&t->customer_blob, st, 8, "customer blob", err)) != ATR_OK ||
        (rc = col_text(t->customer_kid, sizeof(t->customer_kid), st, 9, "customer key id", err)) !=
            ATR_OK)
        goto done;
    t->generation = sqlite3_column_int64(st, 10);
    rc = col_text(t->extra_json, sizeof(t->extra_json), st, 11, "extras", err);
done:
    if (rc != ATR_OK)
        atr_store_tenant_cleanup(t);
    return rc;
}

static atr_status row_tenant_elem(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    return row_tenant(elem, st, err);
}

static void rows_free_tenants(void *rows, size_t n)
{
    atr_store_tenants_free(rows, n);
}

static const char *extra_or_default(const char *json)
{
    return json[0] != '\0' ? json : "{}";
}

static atr_status eng_tenant_create(void *impl, const struct atr_store_tenant *t,
                                    struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e, "INSERT INTO tenants (" TENANT_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", err);
    sq_text(&q, t->id);
    sq_i64(&q, t->created_ms);
    sq_i64(&q, t->created_ms);
    sq_text(&q, atr_store_state_name(t->state));
    sq_text(&q, t->reason);
    sq_text_or_null(&q, t->key_uri);
    sq_blob_nn(&q, atr_buf_span(&t->srk_blob));
    sq_i64(&q, t->srk_version);
    sq_blob(&q, atr_buf_span(&t->customer_blob));
    sq_text_or_null(&q, t->customer_kid);
    sq_i64(&q, ATR_STORE_GENERATION_FIRST);
    sq_text(&q, extra_or_default(t->extra_json));
    sq_exec(&q, NULL);
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    if (rc == ATR_E_CONFLICT)
        rc = atr_err_set(err, rc, "store: the tenant already exists");
    return rc;
}

/* Reads one tenant; called with the lock held. */
static atr_status get_tenant_locked(struct atr_store_tenant *out, struct eng *e, const char *id,
                                    struct atr_err *err)
{
    struct sq q;
    sq_prep(&q, e, "SELECT " TENANT_COLS " FROM tenants WHERE id = ?", err);
    sq_text(&q, id);
    if (sq_row(&q))
        q.rc = row_tenant(out, q.st, err);
    else if (q.rc == ATR_OK)
        q.rc = atr_err_set(err, ATR_E_NOT_FOUND, "store: tenant not found");
    return sq_end(&q);
}

static atr_status eng_tenant_get(struct atr_store_tenant *out, void *impl, const char *id,
                                 struct atr_err *err)
{
    struct eng *e = impl;
    pthread_mutex_lock(&e->lock);
    atr_status rc = get_tenant_locked(out, e, id, err);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* After a compare-and-set changed no row: tells a stale generation from a missing row. */
static atr_status cas_miss(struct eng *e, const char *sql, const char *tenant, int64_t block_id,
                           const char *conflict_msg, const char *missing_msg, struct atr_err *err)
{
    struct sq q;
    sq_prep(&q, e, sql, err);
    sq_text(&q, tenant);
    if (block_id > 0)
        sq_i64(&q, block_id);
    int exists = sq_row(&q);
    atr_status rc = sq_end(&q);
    if (rc != ATR_OK)
        return rc;
    return exists ? atr_err_set(err, ATR_E_CONFLICT, "store: %s", conflict_msg)
                  : atr_err_set(err, ATR_E_NOT_FOUND, "store: %s", missing_msg);
}

/* Inserts one audit event (engine lock held). */
static atr_status audit_insert(int64_t *out_id, struct eng *e,
                               const struct atr_store_audit_event *ev, struct atr_err *err)
{
    struct sq q;
    sq_prep(&q, e, "INSERT INTO audit (tenant, time_ms, actor, action, detail) VALUES (?,?,?,?,?)",
            err);
    sq_text_or_null(&q, ev->tenant);
    sq_i64(&q, ev->time_ms);
    sq_text(&q, ev->actor);
    sq_text(&q, ev->action);
    sq_text(&q, extra_or_default(ev->detail_json));
    sq_exec(&q, NULL);
    atr_status rc = sq_end(&q);
    if (rc == ATR_OK && out_id != NULL)
        *out_id = sqlite3_last_insert_rowid(e->db);
    return rc;
}

static atr_status eng_tenant_update(int64_t *out_generation, void *impl,
                                    const struct atr_store_tenant *t,
                                    const struct atr_store_audit_event *ev, struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    int changes = 0;
    pthread_mutex_lock(&e->lock);
    atr_status rc = ev != NULL ? tx_begin(e, err) : ATR_OK;
    if (rc != ATR_OK) {
        pthread_mutex_unlock(&e->lock);
        return rc;
    }
    sq_prep(&q, e,
            "UPDATE tenants SET state = ?, state_reason = ?, key_uri = ?, srk_blob = ?,"
            " srk_version = ?, customer_blob = ?, customer_kid = ?, extra = ?, updated_ms = ?,"
            " generation = generation + 1 WHERE id = ? AND generation = ?",
            err);
    sq_text(&q, atr_store_state_name(t->state));
    sq_text(&q, t->reason);
    sq_text_or_null(&q, t->key_uri);
    sq_blob_nn(&q, atr_buf_span(&t->srk_blob));
    sq_i64(&q, t->srk_version);
    sq_blob(&q, atr_buf_span(&t->customer_blob));
    sq_text_or_null(&q, t->customer_kid);
    sq_text(&q, extra_or_default(t->extra_json));
    sq_i64(&q, t->updated_ms);
    sq_text(&q, t->id);
    sq_i64(&q, t->generation);
    sq_exec(&q, &changes);
    rc = sq_end(&q);
    if (rc == ATR_OK && changes == 0)
        rc = cas_miss(e, "SELECT 1 FROM tenants WHERE id = ?", t->id, 0,
                      "the tenant changed since it was read (generation mismatch)",
                      "tenant not found", err);
    if (rc == ATR_OK && ev != NULL)
        rc = audit_insert(NULL, e, ev, err);
    if (ev != NULL) {
        if (rc == ATR_OK)
            rc = tx_commit(e, err);
        else
            tx_rollback(e);
    }
    pthread_mutex_unlock(&e->lock);
    if (rc == ATR_OK)
        *out_generation = t->generation + 1;
    return rc;
}

static atr_status eng_tenant_list(struct atr_store_tenant **out, size_t *out_n, void *impl,
                                  const char *after_id, size_t limit, struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e, "SELECT " TENANT_COLS " FROM tenants WHERE id > ? ORDER BY id LIMIT ?", err);
    sq_text(&q, after_id);
    sq_i64(&q, (int64_t)limit);
    if (q.rc == ATR_OK)
        (void)collect((void **)out, out_n, &q, sizeof(**out), limit, row_tenant_elem,
                      rows_free_tenants);
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static atr_status eng_tenant_counts(struct atr_store_tenant_counts *out, void *impl,
                                    struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e, "SELECT state, COUNT(*) FROM tenants GROUP BY state", err);
    while (sq_row(&q)) {
        char name[32];
        atr_store_state st;
        if ((q.rc = col_text(name, sizeof(name), q.st, 0, "tenant state", err)) != ATR_OK)
            break;
        if (atr_store_state_parse(&st, name) != ATR_OK) {
            q.rc = corrupt(err, "tenant state");
            break;
        }
        uint64_t n = (uint64_t)sqlite3_column_int64(q.st, 1);
        out->by_state[st] += n;
        out->total += n;
    }
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* One tenant's SRK layer during a re-wrap. */
struct srk_row {
    char id[ATR_STORE_TENANT_ID_MAX + 1];
    struct atr_buf blob;
    int32_t version;
};

static atr_status row_srk(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    struct srk_row *r = elem;
    atr_buf_init(&r->blob, ATR_STORE_WRAPPED_MAX);
    atr_status rc = col_text(r->id, sizeof(r->id), st, 0, "tenant id", err);
    if (rc == ATR_OK)
        rc = col_blob(&r->blob, st, 1, "SRK blob", err);
    int64_t v = sqlite3_column_int64(st, 2);
    if (rc == ATR_OK && (v < 0 || v > INT32_MAX))
        rc = corrupt(err, "SRK version");
    r->version = (int32_t)v;
    if (rc != ATR_OK)
        atr_buf_cleanup(&r->blob);
    return rc;
}

static void rows_free_srk(void *rows, size_t n)
{
    struct srk_row *v = rows;
    for (size_t i = 0; v != NULL && i < n; i++)
        atr_buf_cleanup(&v[i].blob);
    atr_free(rows);
}

/* Re-wraps one chunk of tenants; called inside the transaction. */
static atr_status rewrap_chunk(size_t *changed, struct eng *e, struct srk_row *rows, size_t n,
                               atr_store_rewrap_fn fn, void *arg, int64_t now_ms,
                               struct atr_err *err)
{
    struct atr_buf blob;
    atr_buf_init(&blob, ATR_STORE_WRAPPED_MAX);
    struct sq q;
    sq_prep(&q, e,
            "UPDATE tenants SET srk_blob = ?, srk_version = ?, updated_ms = ?,"
            " generation = generation + 1 WHERE id = ?",
            err);
    for (size_t i = 0; i < n && q.rc == ATR_OK; i++) {
        int32_t version = rows[i].version;
        atr_buf_reset(&blob);
        q.rc =
            fn(&blob, &version, arg, rows[i].id, atr_buf_span(&rows[i].blob), rows[i].version, err);
        if (q.rc != ATR_OK || blob.len == 0)
            continue;
        sq_reset(&q);
        sq_blob(&q, atr_buf_span(&blob));
        sq_i64(&q, version);
        sq_i64(&q, now_ms);
        sq_text(&q, rows[i].id);
        sq_exec(&q, NULL);
        if (q.rc == ATR_OK)
            (*changed)++;
    }
    atr_buf_cleanup(&blob);
    return sq_end(&q);
}

static atr_status eng_tenant_rewrap_srk(size_t *out_n, void *impl, atr_store_rewrap_fn fn,
                                        void *arg, int64_t now_ms, struct atr_err *err)
{
    struct eng *e = impl;
    char after[ATR_STORE_TENANT_ID_MAX + 1] = "";
    size_t changed = 0;
    pthread_mutex_lock(&e->lock);
    atr_status rc = tx_begin(e, err);
    while (rc == ATR_OK) {
        struct srk_row *rows = NULL;
        size_t n = 0;
        struct sq q;
        sq_prep(&q, e,
                "SELECT id, srk_blob, srk_version FROM tenants WHERE id > ? ORDER BY id LIMIT ?",
                err);
        sq_text(&q, after);
        sq_i64(&q, REWRAP_CHUNK);
        if (q.rc == ATR_OK)
            (void)collect((void **)&rows, &n, &q, sizeof(*rows), REWRAP_CHUNK, row_srk,
                          rows_free_srk);
        /* the select is finished before its rows are updated */
        rc = sq_end(&q);
        if (rc == ATR_OK && n > 0) {
            rc = rewrap_chunk(&changed, e, rows, n, fn, arg, now_ms, err);
            memcpy(after, rows[n - 1].id, sizeof(after));
        }
        rows_free_srk(rows, n);
        if (n < REWRAP_CHUNK)
            break;
    }
    if (rc == ATR_OK)
        rc = tx_commit(e, err);
    else
        tx_rollback(e);
    pthread_mutex_unlock(&e->lock);
    if (rc == ATR_OK)
        *out_n = changed;
    return rc;
}

/* ---- blocks ---- */

static atr_status eng_block_ids_reserve(int64_t *out_first, void *impl, const char *tenant,
                                        size_t n, struct atr_err *err)
{
    struct eng *e = impl;
    ATR_UNUSED(tenant); /* one counter for every tenant */
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&e->lock);
    if (e->next_block_id > INT64_MAX - (int64_t)n) {
        rc = atr_err_set(err, ATR_E_IO, "sqlite store: block ids exhausted");
    } else {
        *out_first = e->next_block_id;
        e->next_block_id += (int64_t)n;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static atr_status eng_blocks_append(void *impl, const char *tenant,
                                    const struct atr_store_block_in *blocks, size_t n,
                                    struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    atr_status rc = ATR_OK;
    for (size_t i = 0; i < n && rc == ATR_OK; i++)
        if (blocks[i].block_id >= e->next_block_id)
            rc = atr_err_set(err, ATR_E_INVALID, "store: block id was not reserved");
    if (rc == ATR_OK)
        rc = tx_begin(e, err);
    if (rc != ATR_OK) {
        pthread_mutex_unlock(&e->lock);
        return rc;
    }
    sq_prep(&q, e,
            "INSERT INTO blocks (tenant, block_id, t_min, t_max, records, key_ref, wrapped_dek,"
            " size, sealed) VALUES (?,?,?,?,?,?,?,?,?)",
            err);
    for (size_t i = 0; i < n && q.rc == ATR_OK; i++) {
        const struct atr_store_block_in *b = &blocks[i];
        sq_reset(&q);
        sq_text(&q, b->tenant != NULL ? b->tenant : tenant);
        sq_i64(&q, b->block_id);
        sq_i64(&q, b->t_min_ms);
        sq_i64(&q, b->t_max_ms);
        sq_i64(&q, b->records);
        sq_text(&q, b->key_ref);
        sq_blob(&q, b->wrapped_dek);
        sq_i64(&q, (int64_t)b->sealed.len);
        sq_blob(&q, b->sealed);
        sq_exec(&q, NULL);
    }
    rc = sq_end(&q);
    if (rc == ATR_OK)
        rc = tx_commit(e, err);
    else
        tx_rollback(e);
    pthread_mutex_unlock(&e->lock);
    if (rc == ATR_E_CONFLICT)
        rc = atr_err_set(err, rc, "store: a block with this id is already stored");
    return rc;
}

static atr_status row_block_meta(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    struct atr_store_block_meta *m = elem;
    atr_buf_init(&m->wrapped_dek, ATR_STORE_WRAPPED_MAX);
    m->block_id = sqlite3_column_int64(st, 0);
    m->t_min_ms = sqlite3_column_int64(st, 1);
    m->t_max_ms = sqlite3_column_int64(st, 2);
    m->records = sqlite3_column_int64(st, 3);
    m->size = sqlite3_column_int64(st, 6);
    atr_status rc = col_text(m->key_ref, sizeof(m->key_ref), st, 4, "key reference", err);
    if (rc == ATR_OK)
        rc = col_blob(&m->wrapped_dek, st, 5, "wrapped DEK", err);
    if (rc != ATR_OK)
        atr_buf_cleanup(&m->wrapped_dek);
    return rc;
}

static void rows_free_metas(void *rows, size_t n)
{
    atr_store_block_metas_free(rows, n);
}

static atr_status eng_blocks_list(struct atr_store_block_meta **out, size_t *out_n, void *impl,
                                  const char *tenant, int64_t from_ms, int64_t to_ms,
                                  const struct atr_store_block_cursor *after, size_t limit,
                                  struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    /* without a cursor, start before every (t_min, id): ids are >= 1 */
    int64_t c_tmin = after != NULL ? after->t_min_ms : INT64_MIN;
    int64_t c_id = after != NULL ? after->block_id : 0;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e,
            "SELECT block_id, t_min, t_max, records, key_ref, wrapped_dek, size FROM blocks"
            " WHERE tenant = ?1 AND t_min < ?2 AND t_max >= ?3"
            " AND (t_min > ?4 OR (t_min = ?4 AND block_id > ?5))"
            " ORDER BY t_min, block_id LIMIT ?6",
            err);
    sq_text(&q, tenant);
    sq_i64(&q, to_ms);
    sq_i64(&q, from_ms);
    sq_i64(&q, c_tmin);
    sq_i64(&q, c_id);
    sq_i64(&q, (int64_t)limit);
    if (q.rc == ATR_OK)
        (void)collect((void **)out, out_n, &q, sizeof(**out), limit, row_block_meta,
                      rows_free_metas);
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static atr_status eng_blocks_by_key_ref(struct atr_store_block_meta **out, size_t *out_n,
                                        void *impl, const char *tenant, const char *key_ref,
                                        int64_t after_id, size_t limit, struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e,
            "SELECT block_id, t_min, t_max, records, key_ref, wrapped_dek, size FROM blocks"
            " WHERE tenant = ?1 AND key_ref = ?2 AND block_id > ?3 ORDER BY block_id LIMIT ?4",
            err);
    sq_text(&q, tenant);
    sq_text(&q, key_ref);
    sq_i64(&q, after_id);
    sq_i64(&q, (int64_t)limit);
    if (q.rc == ATR_OK)
        (void)collect((void **)out, out_n, &q, sizeof(**out), limit, row_block_meta,
                      rows_free_metas);
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static atr_status eng_block_read(struct atr_buf *out_sealed, void *impl, const char *tenant,
                                 int64_t block_id, struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e, "SELECT sealed FROM blocks WHERE tenant = ? AND block_id = ?", err);
    sq_text(&q, tenant);
    sq_i64(&q, block_id);
    if (sq_row(&q)) {
        const void *p = sqlite3_column_blob(q.st, 0);
        int n = sqlite3_column_bytes(q.st, 0);
        if (p == NULL || n <= 0) {
            q.rc = corrupt(err, "sealed block");
        } else if ((q.rc = atr_buf_append(out_sealed, p, (size_t)n)) != ATR_OK) {
            q.rc = atr_err_set(err, q.rc, "store: no room for the sealed block");
        }
    } else if (q.rc == ATR_OK) {
        q.rc = atr_err_set(err, ATR_E_NOT_FOUND, "store: block not found");
    }
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static atr_status eng_block_rekey(void *impl, const char *tenant, int64_t block_id,
                                  const char *old_key_ref, const char *new_key_ref,
                                  struct atr_span new_wrapped_dek, struct atr_span new_sealed,
                                  struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    int changes = 0;
    pthread_mutex_lock(&e->lock);
    sq_prep(&q, e,
            "UPDATE blocks SET key_ref = ?, wrapped_dek = ?, sealed = COALESCE(?, sealed),"
            " size = COALESCE(?, size) WHERE tenant = ? AND block_id = ? AND key_ref = ?",
            err);
    sq_text(&q, new_key_ref);
    sq_blob(&q, new_wrapped_dek);
    sq_blob(&q, new_sealed);
    if (new_sealed.len > 0)
        sq_i64(&q, (int64_t)new_sealed.len);
    else
        sq_text(&q, NULL);
    sq_text(&q, tenant);
    sq_i64(&q, block_id);
    sq_text(&q, old_key_ref);
    sq_exec(&q, &changes);
    atr_status rc = sq_end(&q);
    if (rc == ATR_OK && changes == 0)
        rc = cas_miss(e, "SELECT 1 FROM blocks WHERE tenant = ? AND block_id = ?", tenant, block_id,
                      "the block's key reference changed", "block not found", err);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* ---- audit ---- */

static atr_status eng_audit_append(int64_t *out_id, void *impl,
                                   const struct atr_store_audit_event *ev, struct atr_err *err)
{
    struct eng *e = impl;
    pthread_mutex_lock(&e->lock);
    atr_status rc = audit_insert(out_id, e, ev, err);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static atr_status row_audit(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    struct atr_store_audit_event *ev = elem;
    ev->id = sqlite3_column_int64(st, 0);
    ev->time_ms = sqlite3_column_int64(st, 2);
    atr_status rc = col_text(ev->tenant, sizeof(ev->tenant), st, 1, "audit tenant", err);
    if (rc == ATR_OK)
        rc = col_text(ev->actor, sizeof(ev->actor), st, 3, "audit actor", err);
    if (rc == ATR_OK)
        rc = col_text(ev->action, sizeof(ev->action), st, 4, "audit action", err);
    if (rc == ATR_OK)
        rc = col_text(ev->detail_json, sizeof(ev->detail_json), st, 5, "audit detail", err);
    return rc;
}

static atr_status eng_audit_list(struct atr_store_audit_event **out, size_t *out_n, void *impl,
                                 const char *tenant, int64_t before_id, size_t limit,
                                 struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    if (tenant != NULL) {
        sq_prep(&q, e,
                "SELECT id, tenant, time_ms, actor, action, detail FROM audit"
                " WHERE tenant = ? AND id < ? ORDER BY id DESC LIMIT ?",
                err);
        sq_text(&q, tenant);
    } else {
        sq_prep(&q, e,
                "SELECT id, tenant, time_ms, actor, action, detail FROM audit"
                " WHERE id < ? ORDER BY id DESC LIMIT ?",
                err);
    }
    sq_i64(&q, before_id > 0 ? before_id : INT64_MAX);
    sq_i64(&q, (int64_t)limit);
    if (q.rc == ATR_OK)
        (void)collect((void **)out, out_n, &q, sizeof(**out), limit, row_audit, rows_free_plain);
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* ---- statistics ---- */

static atr_status eng_stats_get(struct atr_store_stats *out, void *impl, const char *tenant,
                                struct atr_err *err)
{
    struct eng *e = impl;
    struct sq q;
    pthread_mutex_lock(&e->lock);
    if (tenant != NULL) {
        sq_prep(&q, e, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blocks WHERE tenant = ?", err);
        sq_text(&q, tenant);
    } else {
        sq_prep(&q, e, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blocks", err);
    }
    if (sq_row(&q)) {
        out->blocks = (uint64_t)sqlite3_column_int64(q.st, 0);
        out->sealed_bytes = (uint64_t)sqlite3_column_int64(q.st, 1);
    } else if (q.rc == ATR_OK) {
        q.rc = db_err(err, e->db, "statistics");
    }
    atr_status rc = sq_end(&q);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static const struct atr_store_vt sqlite_vt = {
    .vt_size = sizeof(struct atr_store_vt),
    .name = "sqlite",
    .close = eng_close,
    .tenant_create = eng_tenant_create,
    .tenant_get = eng_tenant_get,
    .tenant_update = eng_tenant_update,
    .tenant_list = eng_tenant_list,
    .tenant_counts = eng_tenant_counts,
    .tenant_rewrap_srk = eng_tenant_rewrap_srk,
    .block_ids_reserve = eng_block_ids_reserve,
    .blocks_append = eng_blocks_append,
    .blocks_list = eng_blocks_list,
    .block_read = eng_block_read,
    .block_rekey = eng_block_rekey,
    .blocks_by_key_ref = eng_blocks_by_key_ref,
    .audit_append = eng_audit_append,
    .audit_list = eng_audit_list,
    .stats_get = eng_stats_get,
};

atr_status atr_store_sqlite_open(const struct atr_store_vt **out_vt, void **out_impl,
                                 const char *path, unsigned busy_timeout_ms, struct atr_err *err)
{
    *out_vt = NULL;
    *out_impl = NULL;
    ATR_TRY(prepare_file(path, err));
    struct eng *e = atr_calloc(1, sizeof(*e));
    if (e == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "store: out of memory");
    if (pthread_mutex_init(&e->lock, NULL) != 0) {
        atr_free(e);
        return atr_err_set(err, ATR_E_INTERNAL, "sqlite store: cannot make a mutex");
    }
    atr_status rc = ATR_OK;
    /* NOMUTEX: our own mutex serialises every use of the connection */
    if (sqlite3_open_v2(path, &e->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = db_err(err, e->db, "open");
        goto done;
    }
    sqlite3_extended_result_codes(e->db, 1);
    sqlite3_busy_timeout(e->db, busy_timeout_ms > INT32_MAX ? INT32_MAX : (int)busy_timeout_ms);
    if ((rc = exec_sql(e->db, "PRAGMA locking_mode = EXCLUSIVE", err)) != ATR_OK ||
        (rc = pragma_text(e->db, "PRAGMA journal_mode = WAL", "wal", err)) != ATR_OK ||
        (rc = exec_sql(e->db,
                       "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;"
                       " PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
                       err)) != ATR_OK)
        goto done;
    if ((rc = migrate(e->db, err)) != ATR_OK)
        goto done;
    int64_t max_id = 0;
    if ((rc = query_int64(&max_id, e->db, "SELECT COALESCE(MAX(block_id), 0) FROM blocks", err)) !=
        ATR_OK)
        goto done;
    if (max_id < 0 || max_id == INT64_MAX) {
        rc = corrupt(err, "block id");
        goto done;
    }
    e->next_block_id = max_id + 1;
done:
    if (rc != ATR_OK) {
        eng_close(e);
        return rc;
    }
    *out_vt = &sqlite_vt;
    *out_impl = e;
    return ATR_OK;
}
