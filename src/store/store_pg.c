/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scale-out storage engine: PostgreSQL through libpq (design section 4,
 * docs/storage.md). Several atrest nodes may open the same database.
 *
 * Location: a libpq connection URI, "postgres://..." or "postgresql://...".
 * One parameter is ours and is removed before libpq sees it:
 * pool_max_conns=N (1..64, default 4). Defaults that the URI may override:
 * connect_timeout=10, application_name=atrest, gssencmode=disable, TCP
 * keepalives and tcp_user_timeout (a dead peer is noticed in about 30 s);
 * client_encoding is always UTF8. Messages never echo the URI (it may hold a
 * password).
 *
 * Connections: a pool of up to N connections, made when first needed. A
 * call takes one connection for its whole duration (a transaction never
 * spans calls; a connection serves one thread at a time) and waits when all
 * are taken. Each session gets lock_timeout = the store's busy timeout (how
 * long a call waits for a row lock held by another call, here or on another
 * node) and synchronous_commit on if the server default turned it off.
 *
 * Broken connections: a statement that fails because the connection broke
 * (CONNECTION_BAD, SQLSTATE class 08, or 57P0x: the server shuts down) resets
 * the connection with PQreset(). When the call provably had no effect - a
 * read, or a write whose COMMIT was never sent (the server rolls back a
 * transaction whose connection is gone) - it runs once more on the reset
 * connection; otherwise, or when the reset fails, it returns ATR_E_IO with
 * "the database is unreachable: ...". A COMMIT that was sent but never
 * answered is reported as such (the change may or may not be stored).
 * Nothing is acknowledged (ATR_OK) unless its COMMIT was answered "COMMIT".
 *
 * Transactions: every write runs in BEGIN ... COMMIT at the database's
 * default isolation (READ COMMITTED on PostgreSQL), and every operation is
 * correct at READ COMMITTED:
 *  - tenant updates are compare-and-set: UPDATE ... WHERE id AND generation
 *    (a concurrent update waits for the row lock, then re-checks the
 *    generation and changes nothing: ATR_E_CONFLICT);
 *  - a state change and its audit event share one transaction;
 *  - blocks_append inserts the whole batch in one transaction (multi-row
 *    INSERTs); the foreign key turns an unknown tenant into ATR_E_NOT_FOUND;
 *  - the SRK re-wrap runs in one transaction that locks the tenant rows in
 *    id order (SELECT ... FOR NO KEY UPDATE, in chunks) before it rewrites
 *    them: a concurrent compare-and-set waits and then loses; ingest (which
 *    only needs the tenant's key) does not wait;
 *  - block_rekey is compare-and-set on the key reference.
 * A serialization failure or deadlock (40001, 40P01: engines that default
 * to SERIALIZABLE, like CockroachDB) rolls back and reruns the transaction,
 * up to SERIAL_RETRIES times.
 *
 * Block ids: a SEQUENCE hands out chunks of ID_CHUNK ids (INCREMENT BY
 * ID_CHUNK); each open store serves reservations from its current chunk
 * (monotonic for that store, unique across every node and restart: ids are
 * never handed out twice, unlike the SQLite engine after a crash). An id at
 * or above the store's next free id was not reserved (ATR_E_INVALID).
 *
 * Audit ids: an identity column (increasing in insertion order; a reader may
 * see a larger id commit before a smaller one).
 *
 * Schema: schema_version holds one row per applied version. Opening reads
 * it; when it is behind, the migrations run in one transaction under a
 * transaction-level advisory lock (so that nodes starting together do not
 * race; where the engine lacks advisory locks the transaction and a retry
 * on a duplicate object or serialization failure cover it). A schema newer
 * than this program is refused (ATR_E_CONFIG).
 *
 * Statements are parameterised (PQexecParams), parameters and results in
 * binary format; text key columns are COLLATE "C" so that ids order
 * bytewise whatever the database's default collation.
 *
 * Errors: ATR_E_IO carries the server's primary message (never DETAIL, which
 * may quote values); unique violations are ATR_E_CONFLICT, foreign key
 * violations ATR_E_NOT_FOUND, text the server cannot store (invalid UTF-8)
 * ATR_E_INVALID.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "base/alloc.h"
#include "base/secmem.h"
#include "store/store_engine.h"

#define SCHEMA_VERSION   1
#define POOL_DEFAULT     4
#define POOL_MAX         64
#define REWRAP_CHUNK     64
#define SERIAL_RETRIES   5
#define MIGRATE_RETRIES  3
#define INSERT_ROWS_MAX  256               /* blocks per INSERT statement */
#define INSERT_BYTES_MAX ((size_t)8 << 20) /* ... and sealed bytes per statement */
#define BLOCK_COLS       9
/* ids per sequence step; the sequence's INCREMENT BY (changing it needs a migration) */
#define ID_CHUNK     8192
#define ID_CHUNK_SQL "8192"
/* advisory lock key of the migrations: "atrest" and 1 */
#define MIGRATE_LOCK_KEY INT64_C(0x6174726573740001)

_Static_assert(ID_CHUNK >= ATR_STORE_APPEND_MAX, "one chunk must hold any reservation");
_Static_assert(INSERT_ROWS_MAX *BLOCK_COLS < 65535, "too many parameters per statement");

/* type OIDs of the parameters (pg_type.h is a server header) */
#define OID_BYTEA ((Oid)17)
#define OID_INT8  ((Oid)20)
#define OID_TEXT  ((Oid)25)

struct slot {
    PGconn *pg; /* NULL until first needed (or after it was dropped) */
    int busy;   /* guarded by eng.lock */
};

struct eng {
    pthread_mutex_t lock; /* the pool */
    pthread_cond_t freed;
    struct slot *slots;
    size_t nslots;
    char *conninfo; /* the URI without our parameters; wiped on close */
    unsigned busy_ms;
    pthread_mutex_t id_lock; /* the block id chunk */
    int64_t id_next;         /* next id to hand out */
    int64_t id_end;          /* end of the current chunk (exclusive) */
};

/*
 * Schema version 1: the tables of the SQLite engine (same columns, same
 * meaning) in types PostgreSQL-compatible engines accept, with bytea for
 * blobs, an identity column for audit ids, a sequence for block id chunks,
 * and an index for blocks_by_key_ref.
 */
static const char *const schema_v1[] = {
    "CREATE TABLE tenants ("
    " id TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,"
    " created_ms BIGINT NOT NULL,"
    " updated_ms BIGINT NOT NULL,"
    " state TEXT NOT NULL,"
    " state_reason TEXT NOT NULL,"
    " key_uri TEXT,"
    " srk_blob BYTEA NOT NULL,"
    " srk_version INTEGER NOT NULL,"
    " customer_blob BYTEA,"
    " customer_kid TEXT,"
    " generation BIGINT NOT NULL,"
    " extra TEXT NOT NULL)",
    "CREATE TABLE blocks ("
    " tenant TEXT COLLATE \"C\" NOT NULL REFERENCES tenants (id),"
    " block_id BIGINT NOT NULL,"
    " t_min BIGINT NOT NULL,"
    " t_max BIGINT NOT NULL,"
    " records BIGINT NOT NULL,"
    " key_ref TEXT COLLATE \"C\" NOT NULL,"
    " wrapped_dek BYTEA NOT NULL,"
    " size BIGINT NOT NULL,"
    " sealed BYTEA NOT NULL,"
    " PRIMARY KEY (tenant, block_id))",
    "CREATE INDEX blocks_by_time ON blocks (tenant, t_min, block_id)",
    "CREATE INDEX blocks_by_key_ref ON blocks (tenant, key_ref, block_id)",
    "CREATE TABLE audit ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " tenant TEXT COLLATE \"C\","
    " time_ms BIGINT NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " detail TEXT NOT NULL)",
    "CREATE INDEX audit_by_tenant ON audit (tenant, id)",
    "CREATE SEQUENCE block_ids INCREMENT BY " ID_CHUNK_SQL " MINVALUE 1 START WITH 1",
    NULL,
};

/* migrations[i] takes the schema from version i to i + 1. */
static const char *const *const migrations[SCHEMA_VERSION] = {schema_v1};

/* ---- messages ---- */

/* Copies the first lines of @p msg into @p out as one line (whitespace runs become one space). */
static const char *one_line(char *out, size_t cap, const char *msg)
{
    size_t n = 0;
    int space = 0;
    for (const char *p = msg != NULL ? msg : ""; *p != '\0' && n + 1 < cap; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < cap)
            out[n++] = ' ';
        space = 0;
        out[n++] = *p;
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, cap, "no detail");
    return out;
}

static atr_status unreachable(struct atr_err *err, const char *detail)
{
    char line[200];
    return atr_err_set(err, ATR_E_IO, "postgres store: the database is unreachable: %s",
                       one_line(line, sizeof(line), detail));
}

static atr_status corrupt(struct atr_err *err, const char *what)
{
    return atr_err_set(err, ATR_E_IO, "postgres store: stored %s is not valid", what);
}

static atr_status nomem(struct atr_err *err)
{
    return atr_err_set(err, ATR_E_NOMEM, "store: out of memory");
}

/* ---- statement parameters (binary format) ---- */

#define QP_INLINE 16

struct qp {
    int n, cap;
    Oid *types;
    const char **vals;
    int *lens;
    int *fmts;
    unsigned char (*i8)[8];
    int heap; /* the arrays were allocated (qp_init_heap) */
    Oid types_[QP_INLINE];
    const char *vals_[QP_INLINE];
    int lens_[QP_INLINE];
    int fmts_[QP_INLINE];
    unsigned char i8_[QP_INLINE][8];
};

static void qp_init(struct qp *p)
{
    p->n = 0;
    p->cap = QP_INLINE;
    p->types = p->types_;
    p->vals = p->vals_;
    p->lens = p->lens_;
    p->fmts = p->fmts_;
    p->i8 = p->i8_;
    p->heap = 0;
}

static void qp_cleanup(struct qp *p)
{
    if (p->heap) {
        atr_free(p->types);
        atr_free(p->vals);
        atr_free(p->lens);
        atr_free(p->fmts);
        atr_free(p->i8);
    }
    qp_init(p);
}

/* Room for @p cap parameters (more than QP_INLINE); release with qp_cleanup(). */
static atr_status qp_init_heap(struct qp *p, int cap, struct atr_err *err)
{
    qp_init(p);
    size_t c = (size_t)cap;
    p->types = atr_calloc(c, sizeof(*p->types));
    p->vals = atr_calloc(c, sizeof(*p->vals));
    p->lens = atr_calloc(c, sizeof(*p->lens));
    p->fmts = atr_calloc(c, sizeof(*p->fmts));
    p->i8 = atr_calloc(c, sizeof(*p->i8));
    p->heap = 1;
    p->cap = cap;
    if (p->types == NULL || p->vals == NULL || p->lens == NULL || p->fmts == NULL ||
        p->i8 == NULL) {
        qp_cleanup(p);
        return nomem(err);
    }
    return ATR_OK;
}

static int qp_next(struct qp *p)
{
    if (p->n >= p->cap)
        atr_panic("postgres store: more statement parameters than room");
    return p->n++;
}

static void qp_i64(struct qp *p, int64_t v)
{
    int i = qp_next(p);
    uint64_t u = (uint64_t)v;
    for (int k = 0; k < 8; k++)
        p->i8[i][k] = (unsigned char)(u >> (56 - 8 * k));
    p->types[i] = OID_INT8;
    p->vals[i] = (const char *)p->i8[i];
    p->lens[i] = 8;
    p->fmts[i] = 1;
}

/* Text (its bytes: the binary form of text); NULL binds SQL NULL. */
static void qp_text(struct qp *p, const char *v)
{
    int i = qp_next(p);
    p->types[i] = OID_TEXT;
    p->vals[i] = v;
    p->lens[i] = v != NULL ? (int)strlen(v) : 0;
    p->fmts[i] = 1;
}

/* Text, or SQL NULL when it is "" (nullable text columns). */
static void qp_text_or_null(struct qp *p, const char *v)
{
    qp_text(p, v[0] != '\0' ? v : NULL);
}

/* A bigint, or SQL NULL when @p null. */
static void qp_i64_or_null(struct qp *p, int64_t v, int null)
{
    qp_i64(p, v);
    if (null) {
        p->vals[p->n - 1] = NULL;
        p->lens[p->n - 1] = 0;
    }
}

/* Bytes, or SQL NULL when empty and @p null_if_empty (nullable blob columns). */
static void qp_bytes(struct qp *p, struct atr_span v, int null_if_empty)
{
    int i = qp_next(p);
    p->types[i] = OID_BYTEA;
    p->vals[i] = v.len > 0 ? (const char *)v.ptr : null_if_empty ? NULL : "";
    p->lens[i] = (int)v.len;
    p->fmts[i] = 1;
}

/* ---- result columns (binary format) ---- */

static int col_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

/* An integer column (int2, int4 or int8, big-endian); @p ok is cleared on a bad value. */
static int64_t col_i64(const PGresult *r, int row, int col, int *ok)
{
    int n = PQgetlength(r, row, col);
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    if (col_null(r, row, col) || (n != 2 && n != 4 && n != 8)) {
        *ok = 0;
        return 0;
    }
    uint64_t u = (p[0] & 0x80) ? UINT64_MAX : 0; /* sign extension */
    for (int k = 0; k < n; k++)
        u = (u << 8) | p[k];
    return (int64_t)u;
}

/* Copies a text column into @p dst of @p cap bytes; NULL reads as "". */
static atr_status col_text(char *dst, size_t cap, const PGresult *r, int row, int col,
                           const char *what, struct atr_err *err)
{
    dst[0] = '\0';
    if (col_null(r, row, col))
        return ATR_OK;
    const char *p = PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    if (n < 0 || (size_t)n >= cap || memchr(p, '\0', (size_t)n) != NULL)
        return corrupt(err, what);
    memcpy(dst, p, (size_t)n);
    dst[n] = '\0';
    return ATR_OK;
}

/* Appends a bytea column to @p dst; NULL reads as empty. */
static atr_status col_blob(struct atr_buf *dst, const PGresult *r, int row, int col,
                           const char *what, struct atr_err *err)
{
    if (col_null(r, row, col))
        return ATR_OK;
    int n = PQgetlength(r, row, col);
    if (n <= 0)
        return ATR_OK;
    atr_status rc = atr_buf_append(dst, PQgetvalue(r, row, col), (size_t)n);
    if (rc == ATR_E_NOMEM)
        return nomem(err);
    if (rc != ATR_OK)
        return corrupt(err, what);
    return ATR_OK;
}

/* ---- one call on one connection ---- */

/* The state of one call (one attempt) on its pooled connection. */
struct cx {
    PGconn *pg;
    struct atr_err *err;
    int lost;      /* the connection broke */
    int serial;    /* a serialization failure or deadlock aborted the transaction */
    int in_doubt;  /* COMMIT was sent and got no answer */
    char state[6]; /* SQLSTATE of the last failed statement, "" when none */
};

static int state_is(const char *state, const char *code)
{
    return state != NULL && strcmp(state, code) == 0;
}

/* Maps a failed statement (@p r may be NULL) to a status and sets the call's flags. */
static atr_status cx_fail(struct cx *c, const PGresult *r, const char *what)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char line[200];
    snprintf(c->state, sizeof(c->state), "%s", state != NULL ? state : "");
    if (PQstatus(c->pg) != CONNECTION_OK ||
        (state != NULL && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0))) {
        c->lost = 1;
        return unreachable(c->err, primary != NULL ? primary : PQerrorMessage(c->pg));
    }
    if (state_is(state, "40001") || state_is(state, "40P01")) {
        c->serial = 1;
        return atr_err_set(c->err, ATR_E_IO,
                           "postgres store: %s: the transaction kept conflicting with "
                           "concurrent ones: %s",
                           what, one_line(line, sizeof(line), primary));
    }
    if (state_is(state, "23505"))
        return atr_err_set(c->err, ATR_E_CONFLICT, "store: it already exists");
    if (state_is(state, "23503"))
        return atr_err_set(c->err, ATR_E_NOT_FOUND, "store: tenant not found");
    if (state_is(state, "22021") || state_is(state, "22P05"))
        return atr_err_set(c->err, ATR_E_INVALID,
                           "store: a text is not valid UTF-8 (the database refuses it)");
    if (state_is(state, "55P03"))
        return atr_err_set(c->err, ATR_E_IO,
                           "postgres store: %s: a row lock held by another call did not come "
                           "free in time",
                           what);
    return atr_err_set(
        c->err, ATR_E_IO, "postgres store: %s: %s", what,
        one_line(line, sizeof(line), primary != NULL ? primary : PQerrorMessage(c->pg)));
}

/*
 * Runs one statement with @p p (NULL: none), results in binary format.
 * On ATR_OK *out (NULL allowed: cleared at once) holds the result, for
 * PQclear(); on failure nothing is held.
 */
static atr_status cx_query(PGresult **out, struct cx *c, const char *what, const char *sql,
                           const struct qp *p)
{
    if (out != NULL)
        *out = NULL;
    PGresult *r = PQexecParams(c->pg, sql, p != NULL ? p->n : 0, p != NULL ? p->types : NULL,
                               p != NULL ? p->vals : NULL, p != NULL ? p->lens : NULL,
                               p != NULL ? p->fmts : NULL, 1);
    ExecStatusType st = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out != NULL)
            *out = r;
        else
            PQclear(r);
        return ATR_OK;
    }
    atr_status rc = cx_fail(c, r, what);
    PQclear(r);
    return rc;
}

/* Runs a statement that returns no rows; @p out_rows (NULL ok) gets the rows it changed. */
static atr_status cx_exec(int64_t *out_rows, struct cx *c, const char *what, const char *sql,
                          const struct qp *p)
{
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, what, sql, p));
    if (out_rows != NULL)
        *out_rows = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return ATR_OK;
}

/* Runs a query of one integer row and column; a NULL reads as @p if_null. */
static atr_status cx_int64(int64_t *out, struct cx *c, const char *what, const char *sql,
                           const struct qp *p, int64_t if_null)
{
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, what, sql, p));
    int ok = 1;
    if (PQntuples(r) != 1 || PQnfields(r) != 1)
        ok = 0;
    else
        *out = col_null(r, 0, 0) ? if_null : col_i64(r, 0, 0, &ok);
    PQclear(r);
    return ok ? ATR_OK : corrupt(c->err, what);
}

static atr_status cx_commit(struct cx *c)
{
    c->in_doubt = 1;
    PGresult *r = PQexecParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 1);
    if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK) {
        /* a transaction that failed earlier is answered ROLLBACK, not an error */
        int committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
        c->in_doubt = 0;
        PQclear(r);
        return committed ? ATR_OK
                         : atr_err_set(c->err, ATR_E_IO,
                                       "postgres store: the database rolled the transaction back");
    }
    atr_status rc = cx_fail(c, r, "commit");
    PQclear(r);
    if (!c->lost) {
        c->in_doubt = 0; /* an answered failure: nothing was committed */
        return rc;
    }
    char line[160];
    snprintf(line, sizeof(line), "%s", atr_err_msg(c->err));
    return atr_err_set(c->err, ATR_E_IO,
                       "%s; the commit was not confirmed: the change may or may not be stored",
                       line);
}

static void cx_rollback(struct cx *c)
{
    if (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) == PQTRANS_IDLE)
        return;
    PQclear(PQexecParams(c->pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 1));
}

/* ---- the pool ---- */

static void quiet_notices(void *arg, const char *message)
{
    ATR_UNUSED(arg);
    ATR_UNUSED(message);
}

/* Session settings, after every connect and reset. */
static atr_status session_setup(PGconn *pg, const struct eng *e, struct atr_err *err)
{
    const char *enc = PQparameterStatus(pg, "server_encoding");
    if (enc != NULL && strcmp(enc, "UTF8") != 0 && strcmp(enc, "SQL_ASCII") != 0)
        return atr_err_set(err, ATR_E_CONFIG,
                           "postgres store: the database encoding must be UTF8 (it is %.32s)", enc);
    struct cx c = {.pg = pg, .err = err};
    char sql[64];
    snprintf(sql, sizeof(sql), "SET lock_timeout = %u", e->busy_ms);
    ATR_TRY(cx_exec(NULL, &c, "session settings", sql, NULL));
    PGresult *r = NULL;
    ATR_TRY(
        cx_query(&r, &c, "session settings", "SELECT current_setting('synchronous_commit')", NULL));
    int off = PQntuples(r) == 1 && !col_null(r, 0, 0) && PQgetlength(r, 0, 0) == 3 &&
              memcmp(PQgetvalue(r, 0, 0), "off", 3) == 0;
    PQclear(r);
    /* an acknowledged write must be durable */
    if (off)
        ATR_TRY(cx_exec(NULL, &c, "session settings", "SET synchronous_commit = on", NULL));
    return ATR_OK;
}

/* Opens one connection. */
static atr_status conn_open(PGconn **out, const struct eng *e, struct atr_err *err)
{
    *out = NULL;
    /* before dbname: defaults the URI may override; after it: ours */
    static const char *const keys[] = {"connect_timeout",     "application_name",
                                       "gssencmode",          "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "tcp_user_timeout",    "dbname",
                                       "client_encoding",     NULL};
    const char *const vals[] = {"10", "atrest", "disable",   "30",   "10",
                                "3",  "30000",  e->conninfo, "UTF8", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg == NULL)
        return nomem(err);
    if (PQstatus(pg) != CONNECTION_OK) {
        atr_status rc = unreachable(err, PQerrorMessage(pg));
        PQfinish(pg);
        return rc;
    }
    PQsetNoticeProcessor(pg, quiet_notices, NULL);
    atr_status rc = session_setup(pg, e, err);
    if (rc != ATR_OK) {
        PQfinish(pg);
        return rc;
    }
    *out = pg;
    return ATR_OK;
}

/* Re-establishes a broken connection (PQreset keeps its settings and notice hook). */
static atr_status conn_reset(PGconn *pg, const struct eng *e, struct atr_err *err)
{
    PQreset(pg);
    if (PQstatus(pg) != CONNECTION_OK)
        return unreachable(err, PQerrorMessage(pg));
    return session_setup(pg, e, err);
}

static void pool_give(struct eng *e, struct slot *sl)
{
    /* a connection left inside a transaction is of no use to the next call */
    if (sl->pg != NULL && PQstatus(sl->pg) == CONNECTION_OK &&
        PQtransactionStatus(sl->pg) != PQTRANS_IDLE) {
        PQfinish(sl->pg);
        sl->pg = NULL;
    }
    pthread_mutex_lock(&e->lock);
    sl->busy = 0;
    pthread_cond_signal(&e->freed);
    pthread_mutex_unlock(&e->lock);
}

/* Takes a connection (connected, or reset when it broke), waiting while all are taken. */
static atr_status pool_take(struct slot **out, struct eng *e, struct atr_err *err)
{
    struct slot *sl = NULL;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct slot *empty = NULL;
        for (size_t i = 0; i < e->nslots && sl == NULL; i++) {
            struct slot *s = &e->slots[i];
            if (s->busy)
                continue;
            if (s->pg != NULL)
                sl = s;
            else if (empty == NULL)
                empty = s;
        }
        if (sl == NULL)
            sl = empty;
        if (sl != NULL)
            break;
        pthread_cond_wait(&e->freed, &e->lock);
    }
    sl->busy = 1;
    pthread_mutex_unlock(&e->lock);
    atr_status rc = ATR_OK;
    if (sl->pg == NULL)
        rc = conn_open(&sl->pg, e, err);
    else if (PQstatus(sl->pg) != CONNECTION_OK)
        rc = conn_reset(sl->pg, e, err);
    if (rc != ATR_OK) {
        pool_give(e, sl);
        return rc;
    }
    *out = sl;
    return ATR_OK;
}

typedef atr_status (*op_fn)(struct cx *c, void *arg);

enum { OP_READ = 0, OP_WRITE = 1 };

/*
 * Runs @p op on a pooled connection: in BEGIN ... COMMIT when @p write.
 * Reruns it once after a broken connection was reset when it provably had
 * no effect, and after serialization failures (see the top of the file).
 * @p op must start from scratch each time (it may run more than once).
 */
static atr_status run(struct eng *e, int write, op_fn op, void *arg, struct atr_err *err)
{
    struct slot *sl = NULL;
    ATR_TRY(pool_take(&sl, e, err));
    int resets = 0, conflicts = 0;
    atr_status rc;
    for (;;) {
        struct cx c = {.pg = sl->pg, .err = err};
        rc = write ? cx_exec(NULL, &c, "begin", "BEGIN", NULL) : ATR_OK;
        if (rc == ATR_OK)
            rc = op(&c, arg);
        if (write) {
            if (rc == ATR_OK)
                rc = cx_commit(&c);
            else
                cx_rollback(&c);
        }
        if (rc == ATR_OK)
            break;
        if (c.lost) {
            /* a read, or a transaction that never reached COMMIT, had no effect */
            int again = !c.in_doubt && resets++ == 0;
            struct atr_err reset_err;
            atr_err_clear(&reset_err);
            atr_status rrc = conn_reset(sl->pg, e, &reset_err);
            if (rrc == ATR_OK && again)
                continue;
            if (rrc != ATR_OK && !c.in_doubt)
                rc = atr_err_set(err, rrc, "%s", atr_err_msg(&reset_err));
            break;
        }
        if (c.serial && conflicts++ < SERIAL_RETRIES) {
            /* let the other transaction finish: 1, 2, 4 ... ms */
            struct timespec ts = {0, 1000000L << (conflicts - 1)};
            nanosleep(&ts, NULL);
            continue;
        }
        break;
    }
    pool_give(e, sl);
    return rc;
}

/* ---- rows ---- */

/* Decodes row @p row of @p r into @p elem (zeroed); cleans its own element on failure. */
typedef atr_status (*row_fn)(void *elem, const PGresult *r, int row, struct atr_err *err);
typedef void (*rows_free_fn)(void *rows, size_t n);

static void rows_free_plain(void *rows, size_t n)
{
    ATR_UNUSED(n);
    atr_free(rows);
}

/*
 * Decodes every row of @p r (at most @p max) into a new array of elements of
 * @p size bytes. With no row, or on failure, nothing is handed out.
 */
static atr_status collect(void **out, size_t *out_n, const PGresult *r, size_t size, size_t max,
                          row_fn row, rows_free_fn discard, struct atr_err *err)
{
    int nt = PQntuples(r);
    size_t n = nt > 0 ? (size_t)nt : 0;
    if (n > max)
        return atr_err_set(err, ATR_E_IO, "postgres store: more rows than asked for");
    if (n == 0)
        return ATR_OK;
    uint8_t *v = atr_calloc(n, size);
    if (v == NULL)
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        atr_status rc = row(v + i * size, r, (int)i, err);
        if (rc != ATR_OK) {
            discard(v, i);
            return rc;
        }
    }
    *out = v;
    *out_n = n;
    return ATR_OK;
}

/* ---- open / close ---- */

static void eng_close(void *impl)
{
    struct eng *e = impl;
    if (e == NULL)
        return;
    for (size_t i = 0; e->slots != NULL && i < e->nslots; i++)
        if (e->slots[i].pg != NULL)
            PQfinish(e->slots[i].pg);
    atr_free(e->slots);
    if (e->conninfo != NULL) {
        atr_wipe(e->conninfo, strlen(e->conninfo));
        atr_free(e->conninfo);
    }
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->freed);
    pthread_mutex_destroy(&e->id_lock);
    atr_free(e);
}

/*
 * Copies @p url into *out without our own query parameter pool_max_conns,
 * whose value goes to *pool (1..POOL_MAX).
 */
static atr_status split_url(char **out, size_t *pool, const char *url, struct atr_err *err)
{
    static const char key[] = "pool_max_conns=";
    size_t len = strlen(url);
    char *s = atr_malloc(len + 1);
    if (s == NULL)
        return nomem(err);
    const char *q = strchr(url, '?');
    size_t n = q != NULL ? (size_t)(q - url) : len;
    memcpy(s, url, n);
    s[n] = '\0';
    int first = 1;
    for (const char *p = q != NULL ? q + 1 : NULL; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (plen >= sizeof(key) - 1 && memcmp(p, key, sizeof(key) - 1) == 0) {
            size_t v = 0, digits = plen - (sizeof(key) - 1);
            const char *d = p + sizeof(key) - 1;
            int ok = digits >= 1 && digits <= 2;
            for (size_t i = 0; ok && i < digits; i++) {
                ok = d[i] >= '0' && d[i] <= '9';
                v = v * 10 + (size_t)(d[i] - '0');
            }
            if (!ok || v < 1 || v > POOL_MAX) {
                atr_wipe(s, len);
                atr_free(s);
                return atr_err_set(err, ATR_E_INVALID,
                                   "postgres store: pool_max_conns must be 1..%d", POOL_MAX);
            }
            *pool = v;
        } else if (plen > 0) {
            s[n++] = first ? '?' : '&';
            memcpy(s + n, p, plen);
            n += plen;
            s[n] = '\0';
            first = 0;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    *out = s;
    return ATR_OK;
}

/* Version of the stored schema, 0 when there is none yet. */
static atr_status schema_version(int64_t *out, struct cx *c)
{
    return cx_int64(out, c, "schema version", "SELECT MAX(version) FROM schema_version", NULL, 0);
}

struct migrate_arg {
    int lock;      /* take the advisory lock (cleared on an engine without it) */
    char state[6]; /* SQLSTATE of the failure */
};

static atr_status op_migrate_steps(struct cx *c, struct migrate_arg *m)
{
    struct qp p;
    qp_init(&p);
    /* a migration may wait for another node's longer than for a row */
    ATR_TRY(cx_exec(NULL, c, "migration", "SET LOCAL lock_timeout = 60000", NULL));
    if (m->lock) {
        qp_i64(&p, MIGRATE_LOCK_KEY);
        ATR_TRY(cx_exec(NULL, c, "migration lock", "SELECT pg_advisory_xact_lock($1)", &p));
    }
    ATR_TRY(cx_exec(NULL, c, "migration",
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version INTEGER NOT NULL PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                    NULL));
    int64_t v = 0;
    ATR_TRY(schema_version(&v, c));
    if (v > SCHEMA_VERSION)
        return atr_err_set(c->err, ATR_E_CONFIG,
                           "postgres store: schema version %lld is newer than this program (%d)",
                           (long long)v, SCHEMA_VERSION);
    if (v < 0)
        return corrupt(c->err, "schema version");
    for (; v < SCHEMA_VERSION; v++) {
        for (const char *const *st = migrations[v]; *st != NULL; st++)
            ATR_TRY(cx_exec(NULL, c, "migration", *st, NULL));
        qp_init(&p);
        qp_i64(&p, v + 1);
        ATR_TRY(
            cx_exec(NULL, c, "migration", "INSERT INTO schema_version (version) VALUES ($1)", &p));
    }
    return ATR_OK;
}

static atr_status op_migrate(struct cx *c, void *arg)
{
    struct migrate_arg *m = arg;
    atr_status rc = op_migrate_steps(c, m);
    memcpy(m->state, c->state, sizeof(m->state));
    return rc;
}

struct schema_check_arg {
    int64_t version;
    char state[6];
};

static atr_status op_schema_check(struct cx *c, void *arg)
{
    struct schema_check_arg *a = arg;
    atr_status rc = schema_version(&a->version, c);
    memcpy(a->state, c->state, sizeof(a->state));
    return rc;
}

/* Brings the schema to SCHEMA_VERSION (see the top of the file). */
static atr_status migrate(struct eng *e, struct atr_err *err)
{
    /* the common case: one read finds the current version */
    struct schema_check_arg chk = {0, ""};
    atr_status rc = run(e, OP_READ, op_schema_check, &chk, err);
    if (rc == ATR_OK && chk.version > SCHEMA_VERSION)
        return atr_err_set(err, ATR_E_CONFIG,
                           "postgres store: schema version %lld is newer than this program (%d)",
                           (long long)chk.version, SCHEMA_VERSION);
    if (rc == ATR_OK && chk.version == SCHEMA_VERSION)
        return ATR_OK;
    /* anything but "no schema_version table yet" (42P01) is an answer */
    if (rc != ATR_OK && strcmp(chk.state, "42P01") != 0)
        return rc;
    struct migrate_arg m = {1, ""};
    for (int attempt = 0;; attempt++) {
        rc = run(e, OP_WRITE, op_migrate, &m, err);
        if (rc == ATR_OK || attempt >= MIGRATE_RETRIES)
            return rc;
        if (strcmp(m.state, "42883") == 0 && m.lock) {
            m.lock = 0; /* undefined function: an engine without advisory locks */
            continue;
        }
        /* another node created the same objects first (an engine without the lock) */
        if (strcmp(m.state, "23505") != 0 && strcmp(m.state, "42P07") != 0 &&
            strcmp(m.state, "42710") != 0)
            return rc;
    }
}

/* ---- tenants ---- */

#define TENANT_COLS                                                                                \
    "id, created_ms, updated_ms, state, state_reason, key_uri, srk_blob, srk_version, "            \
    "customer_blob, customer_kid, generation, extra"

static atr_status row_tenant(void *elem, const PGresult *r, int row, struct atr_err *err)
{
    struct atr_store_tenant *t = elem;
    atr_store_tenant_init(t);
    char state[32];
    int ok = 1;
    atr_status rc;
    if ((rc = col_text(t->id, sizeof(t->id), r, row, 0, "tenant id", err)) != ATR_OK)
        goto done;
    t->created_ms = col_i64(r, row, 1, &ok);
    t->updated_ms = col_i64(r, row, 2, &ok);
    if ((rc = col_text(state, sizeof(state), r, row, 3, "tenant state", err)) != ATR_OK)
        goto done;
    if (atr_store_state_parse(&t->state, state) != ATR_OK) {
        rc = corrupt(err, "tenant state");
        goto done;
    }
    if ((rc = col_text(t->reason, sizeof(t->reason), r, row, 4, "state reason", err)) != ATR_OK ||
        (rc = col_text(t->key_uri, sizeof(t->key_uri), r, row, 5, "key URI", err)) != ATR_OK ||
        (rc = col_blob(&t->srk_blob, r, row, 6, "SRK blob", err)) != ATR_OK)
        goto done;
    int64_t ver = col_i64(r, row, 7, &ok);
    if (ver < 0 || ver > INT32_MAX) {
        rc = corrupt(err, "SRK version");
        goto done;
    }
    t->srk_version = (int32_t)ver;
    if ((rc = col_blob(&t->customer_blob, r, row, 8, "customer blob", err)) != ATR_OK ||
        (rc = col_text(t->customer_kid, sizeof(t->customer_kid), r, row, 9, "customer key id",
                       err)) != ATR_OK)
        goto done;
    t->generation = col_i64(r, row, 10, &ok);
    if ((rc = col_text(t->extra_json, sizeof(t->extra_json), r, row, 11, "extras", err)) != ATR_OK)
        goto done;
    if (!ok)
        rc = corrupt(err, "tenant row");
done:
    if (rc != ATR_OK)
        atr_store_tenant_cleanup(t);
    return rc;
}

static void rows_free_tenants(void *rows, size_t n)
{
    atr_store_tenants_free(rows, n);
}

static const char *extra_or_default(const char *json)
{
    return json[0] != '\0' ? json : "{}";
}

struct tenant_arg {
    const struct atr_store_tenant *t;
    const struct atr_store_audit_event *ev; /* NULL = none */
};

static atr_status op_tenant_create(struct cx *c, void *arg)
{
    const struct atr_store_tenant *t = ((const struct tenant_arg *)arg)->t;
    struct qp p;
    qp_init(&p);
    qp_text(&p, t->id);
    qp_i64(&p, t->created_ms);
    qp_i64(&p, t->created_ms);
    qp_text(&p, atr_store_state_name(t->state));
    qp_text(&p, t->reason);
    qp_text_or_null(&p, t->key_uri);
    qp_bytes(&p, atr_buf_span(&t->srk_blob), 0);
    qp_i64(&p, t->srk_version);
    qp_bytes(&p, atr_buf_span(&t->customer_blob), 1);
    qp_text_or_null(&p, t->customer_kid);
    qp_i64(&p, ATR_STORE_GENERATION_FIRST);
    qp_text(&p, extra_or_default(t->extra_json));
    atr_status rc = cx_exec(NULL, c, "tenant create",
                            "INSERT INTO tenants (" TENANT_COLS
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                            &p);
    if (rc == ATR_E_CONFLICT)
        rc = atr_err_set(c->err, rc, "store: the tenant already exists");
    return rc;
}

static atr_status eng_tenant_create(void *impl, const struct atr_store_tenant *t,
                                    struct atr_err *err)
{
    struct tenant_arg a = {t, NULL};
    return run(impl, OP_WRITE, op_tenant_create, &a, err);
}

struct tenant_get_arg {
    struct atr_store_tenant *out;
    const char *id;
};

static atr_status op_tenant_get(struct cx *c, void *arg)
{
    struct tenant_get_arg *a = arg;
    struct qp p;
    qp_init(&p);
    qp_text(&p, a->id);
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "tenant get", "SELECT " TENANT_COLS " FROM tenants WHERE id = $1", &p));
    atr_status rc = PQntuples(r) == 1
                        ? row_tenant(a->out, r, 0, c->err)
                        : atr_err_set(c->err, ATR_E_NOT_FOUND, "store: tenant not found");
    PQclear(r);
    return rc;
}

static atr_status eng_tenant_get(struct atr_store_tenant *out, void *impl, const char *id,
                                 struct atr_err *err)
{
    struct tenant_get_arg a = {out, id};
    return run(impl, OP_READ, op_tenant_get, &a, err);
}

/* After a compare-and-set changed no row: tells a stale row from a missing one. */
static atr_status cas_miss(struct cx *c, const char *sql, const char *tenant, int64_t block_id,
                           const char *conflict_msg, const char *missing_msg)
{
    struct qp p;
    qp_init(&p);
    qp_text(&p, tenant);
    if (block_id > 0)
        qp_i64(&p, block_id);
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "compare-and-set", sql, &p));
    int exists = PQntuples(r) > 0;
    PQclear(r);
    return exists ? atr_err_set(c->err, ATR_E_CONFLICT, "store: %s", conflict_msg)
                  : atr_err_set(c->err, ATR_E_NOT_FOUND, "store: %s", missing_msg);
}

static atr_status audit_insert(int64_t *out_id, struct cx *c,
                               const struct atr_store_audit_event *ev)
{
    struct qp p;
    qp_init(&p);
    qp_text_or_null(&p, ev->tenant);
    qp_i64(&p, ev->time_ms);
    qp_text(&p, ev->actor);
    qp_text(&p, ev->action);
    qp_text(&p, extra_or_default(ev->detail_json));
    int64_t id = 0;
    ATR_TRY(cx_int64(&id, c, "audit append",
                     "INSERT INTO audit (tenant, time_ms, actor, action, detail)"
                     " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                     &p, 0));
    if (id < 1)
        return corrupt(c->err, "audit id");
    if (out_id != NULL)
        *out_id = id;
    return ATR_OK;
}

static atr_status op_tenant_update(struct cx *c, void *arg)
{
    const struct tenant_arg *a = arg;
    const struct atr_store_tenant *t = a->t;
    struct qp p;
    qp_init(&p);
    qp_text(&p, atr_store_state_name(t->state));
    qp_text(&p, t->reason);
    qp_text_or_null(&p, t->key_uri);
    qp_bytes(&p, atr_buf_span(&t->srk_blob), 0);
    qp_i64(&p, t->srk_version);
    qp_bytes(&p, atr_buf_span(&t->customer_blob), 1);
    qp_text_or_null(&p, t->customer_kid);
    qp_text(&p, extra_or_default(t->extra_json));
    qp_i64(&p, t->updated_ms);
    qp_text(&p, t->id);
    qp_i64(&p, t->generation);
    int64_t changed = 0;
    ATR_TRY(cx_exec(&changed, c, "tenant update",
                    "UPDATE tenants SET state = $1, state_reason = $2, key_uri = $3,"
                    " srk_blob = $4, srk_version = $5, customer_blob = $6, customer_kid = $7,"
                    " extra = $8, updated_ms = $9, generation = generation + 1"
                    " WHERE id = $10 AND generation = $11",
                    &p));
    if (changed == 0)
        return cas_miss(c, "SELECT 1 FROM tenants WHERE id = $1", t->id, 0,
                        "the tenant changed since it was read (generation mismatch)",
                        "tenant not found");
    if (a->ev != NULL)
        ATR_TRY(audit_insert(NULL, c, a->ev));
    return ATR_OK;
}

static atr_status eng_tenant_update(int64_t *out_generation, void *impl,
                                    const struct atr_store_tenant *t,
                                    const struct atr_store_audit_event *ev, struct atr_err *err)
{
    struct tenant_arg a = {t, ev};
    atr_status rc = run(impl, OP_WRITE, op_tenant_update, &a, err);
    if (rc == ATR_OK)
        *out_generation = t->generation + 1;
    return rc;
}

/* The arguments of the list calls (each uses the fields it names). */
struct list_arg {
    void *out; /* the caller's row array pointer */
    size_t *out_n;
    const char *tenant; /* tenant_list: the after-id cursor; audit_list: NULL for all */
    const char *key_ref;
    int64_t a, b, c, d; /* blocks_list: to, from, cursor (t_min, id); others: a = id cursor */
    size_t limit;
};

static atr_status op_tenant_list(struct cx *c, void *arg)
{
    struct list_arg *a = arg;
    struct qp p;
    qp_init(&p);
    qp_text(&p, a->tenant);
    qp_i64(&p, (int64_t)a->limit);
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "tenant list",
                     "SELECT " TENANT_COLS " FROM tenants WHERE id > $1 ORDER BY id LIMIT $2", &p));
    atr_status rc = collect(a->out, a->out_n, r, sizeof(struct atr_store_tenant), a->limit,
                            row_tenant, rows_free_tenants, c->err);
    PQclear(r);
    return rc;
}

static atr_status eng_tenant_list(struct atr_store_tenant **out, size_t *out_n, void *impl,
                                  const char *after_id, size_t limit, struct atr_err *err)
{
    struct list_arg a = {(void *)out, out_n, after_id, NULL, 0, 0, 0, 0, limit};
    return run(impl, OP_READ, op_tenant_list, &a, err);
}

static atr_status op_tenant_counts(struct cx *c, void *arg)
{
    struct atr_store_tenant_counts *out = arg;
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "tenant counts", "SELECT state, COUNT(*) FROM tenants GROUP BY state",
                     NULL));
    atr_status rc = ATR_OK;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < PQntuples(r) && rc == ATR_OK; i++) {
        char name[32];
        atr_store_state st;
        int ok = 1;
        if ((rc = col_text(name, sizeof(name), r, i, 0, "tenant state", c->err)) != ATR_OK)
            break;
        int64_t n = col_i64(r, i, 1, &ok);
        if (atr_store_state_parse(&st, name) != ATR_OK || !ok || n < 0) {
            rc = corrupt(c->err, "tenant state");
            break;
        }
        out->by_state[st] += (uint64_t)n;
        out->total += (uint64_t)n;
    }
    PQclear(r);
    return rc;
}

static atr_status eng_tenant_counts(struct atr_store_tenant_counts *out, void *impl,
                                    struct atr_err *err)
{
    return run(impl, OP_READ, op_tenant_counts, out, err);
}

struct rewrap_arg {
    atr_store_rewrap_fn fn;
    void *arg;
    int64_t now_ms;
    size_t changed;
};

/* Re-wraps the tenants of one locked chunk (rows of id, srk_blob, srk_version). */
static atr_status rewrap_rows(struct cx *c, struct rewrap_arg *a, const PGresult *r)
{
    struct atr_buf old, blob;
    atr_buf_init(&old, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&blob, ATR_STORE_WRAPPED_MAX);
    atr_status rc = ATR_OK;
    for (int i = 0; i < PQntuples(r) && rc == ATR_OK; i++) {
        char id[ATR_STORE_TENANT_ID_MAX + 1];
        int ok = 1;
        atr_buf_reset(&old);
        atr_buf_reset(&blob);
        if ((rc = col_text(id, sizeof(id), r, i, 0, "tenant id", c->err)) != ATR_OK ||
            (rc = col_blob(&old, r, i, 1, "SRK blob", c->err)) != ATR_OK)
            break;
        int64_t v = col_i64(r, i, 2, &ok);
        if (!ok || v < 0 || v > INT32_MAX) {
            rc = corrupt(c->err, "SRK version");
            break;
        }
        int32_t version = (int32_t)v;
        rc = a->fn(&blob, &version, a->arg, id, atr_buf_span(&old), (int32_t)v, c->err);
        if (rc != ATR_OK || blob.len == 0)
            continue;
        struct qp p;
        qp_init(&p);
        qp_bytes(&p, atr_buf_span(&blob), 0);
        qp_i64(&p, version);
        qp_i64(&p, a->now_ms);
        qp_text(&p, id);
        rc = cx_exec(NULL, c, "re-wrap",
                     "UPDATE tenants SET srk_blob = $1, srk_version = $2, updated_ms = $3,"
                     " generation = generation + 1 WHERE id = $4",
                     &p);
        if (rc == ATR_OK)
            a->changed++;
    }
    atr_buf_cleanup(&old);
    atr_buf_cleanup(&blob);
    return rc;
}

static atr_status op_rewrap(struct cx *c, void *arg)
{
    struct rewrap_arg *a = arg;
    char after[ATR_STORE_TENANT_ID_MAX + 1] = "";
    a->changed = 0;
    for (;;) {
        struct qp p;
        qp_init(&p);
        qp_text(&p, after);
        qp_i64(&p, REWRAP_CHUNK);
        PGresult *r = NULL;
        /* lock the chunk in id order before rewriting it (NO KEY: ingest need not wait) */
        ATR_TRY(cx_query(&r, c, "re-wrap",
                         "SELECT id, srk_blob, srk_version FROM tenants WHERE id > $1"
                         " ORDER BY id LIMIT $2 FOR NO KEY UPDATE",
                         &p));
        int n = PQntuples(r);
        atr_status rc = rewrap_rows(c, a, r);
        if (rc == ATR_OK && n > 0)
            rc = col_text(after, sizeof(after), r, n - 1, 0, "tenant id", c->err);
        PQclear(r);
        /* until an empty chunk: a locking read may return fewer rows than its LIMIT */
        if (rc != ATR_OK || n == 0)
            return rc;
    }
}

static atr_status eng_tenant_rewrap_srk(size_t *out_n, void *impl, atr_store_rewrap_fn fn,
                                        void *arg, int64_t now_ms, struct atr_err *err)
{
    struct rewrap_arg a = {fn, arg, now_ms, 0};
    atr_status rc = run(impl, OP_WRITE, op_rewrap, &a, err);
    if (rc == ATR_OK)
        *out_n = a.changed;
    return rc;
}

/* ---- blocks ---- */

static atr_status op_next_chunk(struct cx *c, void *arg)
{
    return cx_int64(arg, c, "block ids", "SELECT nextval('block_ids')", NULL, 0);
}

static atr_status eng_block_ids_reserve(int64_t *out_first, void *impl, const char *tenant,
                                        size_t n, struct atr_err *err)
{
    struct eng *e = impl;
    ATR_UNUSED(tenant); /* one sequence for every tenant */
    atr_status rc = ATR_OK;
    /* a refill holds the id lock for one round trip, once per ID_CHUNK ids */
    pthread_mutex_lock(&e->id_lock);
    if (e->id_end - e->id_next < (int64_t)n) {
        int64_t first = 0;
        rc = run(e, OP_READ, op_next_chunk, &first, err);
        if (rc == ATR_OK && (first < e->id_end || first < 1 || first > INT64_MAX - ID_CHUNK))
            rc = corrupt(err, "block id sequence");
        if (rc == ATR_OK) {
            e->id_next = first;
            e->id_end = first + ID_CHUNK;
        }
    }
    if (rc == ATR_OK) {
        *out_first = e->id_next;
        e->id_next += (int64_t)n;
    }
    pthread_mutex_unlock(&e->id_lock);
    return rc;
}

struct append_arg {
    const char *tenant;
    const struct atr_store_block_in *blocks;
    size_t n;
};

/* "INSERT ... VALUES ($1, ..., $9), ..." for @p rows rows. */
static atr_status insert_sql(struct atr_buf *sql, size_t rows, struct atr_err *err)
{
    atr_buf_reset(sql);
    atr_status rc =
        atr_buf_append_str(sql, "INSERT INTO blocks (tenant, block_id, t_min, t_max,"
                                " records, key_ref, wrapped_dek, size, sealed) VALUES ");
    for (size_t i = 0; i < rows && rc == ATR_OK; i++) {
        size_t b = i * BLOCK_COLS;
        rc = atr_buf_printf(sql, "%s($%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu)",
                            i > 0 ? ", " : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7,
                            b + 8, b + 9);
    }
    if (rc == ATR_OK && atr_buf_cstr(sql) == NULL)
        rc = ATR_E_NOMEM;
    return rc == ATR_OK ? ATR_OK : nomem(err);
}

static atr_status op_blocks_append(struct cx *c, void *arg)
{
    const struct append_arg *a = arg;
    struct atr_buf sql;
    atr_buf_init(&sql, (size_t)INSERT_ROWS_MAX * 128 + 256);
    struct qp p;
    atr_status rc = qp_init_heap(&p, INSERT_ROWS_MAX * BLOCK_COLS, c->err);
    size_t sql_rows = 0;
    for (size_t i = 0; i < a->n && rc == ATR_OK;) {
        /* one statement: up to INSERT_ROWS_MAX rows and about INSERT_BYTES_MAX bytes */
        size_t rows = 0, bytes = 0;
        while (i + rows < a->n && rows < INSERT_ROWS_MAX &&
               (rows == 0 || bytes + a->blocks[i + rows].sealed.len <= INSERT_BYTES_MAX))
            bytes += a->blocks[i + rows++].sealed.len;
        if (rows != sql_rows) {
            if ((rc = insert_sql(&sql, rows, c->err)) != ATR_OK)
                break;
            sql_rows = rows;
        }
        p.n = 0;
        for (size_t k = 0; k < rows; k++) {
            const struct atr_store_block_in *b = &a->blocks[i + k];
            qp_text(&p, b->tenant != NULL ? b->tenant : a->tenant);
            qp_i64(&p, b->block_id);
            qp_i64(&p, b->t_min_ms);
            qp_i64(&p, b->t_max_ms);
            qp_i64(&p, b->records);
            qp_text(&p, b->key_ref);
            qp_bytes(&p, b->wrapped_dek, 0);
            qp_i64(&p, (int64_t)b->sealed.len);
            qp_bytes(&p, b->sealed, 0);
        }
        rc = cx_exec(NULL, c, "block append", (const char *)sql.ptr, &p);
        i += rows;
    }
    qp_cleanup(&p);
    atr_buf_cleanup(&sql);
    if (rc == ATR_E_CONFLICT)
        rc = atr_err_set(c->err, rc, "store: a block with this id is already stored");
    return rc;
}

static atr_status eng_blocks_append(void *impl, const char *tenant,
                                    const struct atr_store_block_in *blocks, size_t n,
                                    struct atr_err *err)
{
    struct eng *e = impl;
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&e->id_lock);
    for (size_t i = 0; i < n && rc == ATR_OK; i++)
        if (blocks[i].block_id >= e->id_next)
            rc = atr_err_set(err, ATR_E_INVALID, "store: block id was not reserved");
    pthread_mutex_unlock(&e->id_lock);
    if (rc != ATR_OK)
        return rc;
    struct append_arg a = {tenant, blocks, n};
    return run(e, OP_WRITE, op_blocks_append, &a, err);
}

#define META_COLS "block_id, t_min, t_max, records, key_ref, wrapped_dek, size"

static atr_status row_block_meta(void *elem, const PGresult *r, int row, struct atr_err *err)
{
    struct atr_store_block_meta *m = elem;
    atr_buf_init(&m->wrapped_dek, ATR_STORE_WRAPPED_MAX);
    int ok = 1;
    m->block_id = col_i64(r, row, 0, &ok);
    m->t_min_ms = col_i64(r, row, 1, &ok);
    m->t_max_ms = col_i64(r, row, 2, &ok);
    m->records = col_i64(r, row, 3, &ok);
    m->size = col_i64(r, row, 6, &ok);
    atr_status rc = ok ? ATR_OK : corrupt(err, "block row");
    if (rc == ATR_OK)
        rc = col_text(m->key_ref, sizeof(m->key_ref), r, row, 4, "key reference", err);
    if (rc == ATR_OK)
        rc = col_blob(&m->wrapped_dek, r, row, 5, "wrapped DEK", err);
    if (rc != ATR_OK)
        atr_buf_cleanup(&m->wrapped_dek);
    return rc;
}

static void rows_free_metas(void *rows, size_t n)
{
    atr_store_block_metas_free(rows, n);
}

static atr_status op_blocks_list(struct cx *c, void *arg)
{
    struct list_arg *a = arg;
    struct qp p;
    qp_init(&p);
    qp_text(&p, a->tenant);
    qp_i64(&p, a->a); /* to */
    qp_i64(&p, a->b); /* from */
    qp_i64(&p, a->c); /* cursor t_min */
    qp_i64(&p, a->d); /* cursor block id */
    qp_i64(&p, (int64_t)a->limit);
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "block list",
                     "SELECT " META_COLS " FROM blocks"
                     " WHERE tenant = $1 AND t_min < $2 AND t_max >= $3"
                     " AND (t_min > $4 OR (t_min = $4 AND block_id > $5))"
                     " ORDER BY t_min, block_id LIMIT $6",
                     &p));
    atr_status rc = collect(a->out, a->out_n, r, sizeof(struct atr_store_block_meta), a->limit,
                            row_block_meta, rows_free_metas, c->err);
    PQclear(r);
    return rc;
}

static atr_status eng_blocks_list(struct atr_store_block_meta **out, size_t *out_n, void *impl,
                                  const char *tenant, int64_t from_ms, int64_t to_ms,
                                  const struct atr_store_block_cursor *after, size_t limit,
                                  struct atr_err *err)
{
    /* without a cursor, start before every (t_min, id): ids are >= 1 */
    struct list_arg a = {(void *)out,
                         out_n,
                         tenant,
                         NULL,
                         to_ms,
                         from_ms,
                         after != NULL ? after->t_min_ms : INT64_MIN,
                         after != NULL ? after->block_id : 0,
                         limit};
    return run(impl, OP_READ, op_blocks_list, &a, err);
}

static atr_status op_blocks_by_key_ref(struct cx *c, void *arg)
{
    struct list_arg *a = arg;
    struct qp p;
    qp_init(&p);
    qp_text(&p, a->tenant);
    qp_text(&p, a->key_ref);
    qp_i64(&p, a->a);
    qp_i64(&p, (int64_t)a->limit);
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "blocks by key reference",
                     "SELECT " META_COLS " FROM blocks"
                     " WHERE tenant = $1 AND key_ref = $2 AND block_id > $3"
                     " ORDER BY block_id LIMIT $4",
                     &p));
    atr_status rc = collect(a->out, a->out_n, r, sizeof(struct atr_store_block_meta), a->limit,
                            row_block_meta, rows_free_metas, c->err);
    PQclear(r);
    return rc;
}

static atr_status eng_blocks_by_key_ref(struct atr_store_block_meta **out, size_t *out_n,
                                        void *impl, const char *tenant, const char *key_ref,
                                        int64_t after_id, size_t limit, struct atr_err *err)
{
    struct list_arg a = {(void *)out, out_n, tenant, key_ref, after_id, 0, 0, 0, limit};
    return run(impl, OP_READ, op_blocks_by_key_ref, &a, err);
}

struct block_read_arg {
    struct atr_buf *out;
    const char *tenant;
    int64_t block_id;
};

static atr_status op_block_read(struct cx *c, void *arg)
{
    struct block_read_arg *a = arg;
    struct qp p;
    qp_init(&p);
    qp_text(&p, a->tenant);
    qp_i64(&p, a->block_id);
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "block read",
                     "SELECT sealed FROM blocks WHERE tenant = $1 AND block_id = $2", &p));
    atr_status rc = ATR_OK;
    if (PQntuples(r) != 1) {
        rc = atr_err_set(c->err, ATR_E_NOT_FOUND, "store: block not found");
    } else if (col_null(r, 0, 0) || PQgetlength(r, 0, 0) <= 0) {
        rc = corrupt(c->err, "sealed block");
    } else {
        rc = atr_buf_append(a->out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
        if (rc != ATR_OK)
            rc = atr_err_set(c->err, rc, "store: no room for the sealed block");
    }
    PQclear(r);
    return rc;
}

static atr_status eng_block_read(struct atr_buf *out_sealed, void *impl, const char *tenant,
                                 int64_t block_id, struct atr_err *err)
{
    struct block_read_arg a = {out_sealed, tenant, block_id};
    return run(impl, OP_READ, op_block_read, &a, err);
}

struct rekey_arg {
    const char *tenant;
    int64_t block_id;
    const char *old_ref, *new_ref;
    struct atr_span dek, sealed;
};

static atr_status op_block_rekey(struct cx *c, void *arg)
{
    struct rekey_arg *a = arg;
    struct qp p;
    qp_init(&p);
    qp_text(&p, a->new_ref);
    qp_bytes(&p, a->dek, 0);
    qp_bytes(&p, a->sealed, 1);
    qp_i64_or_null(&p, (int64_t)a->sealed.len, a->sealed.len == 0); /* NULL: keep the size */
    qp_text(&p, a->tenant);
    qp_i64(&p, a->block_id);
    qp_text(&p, a->old_ref);
    int64_t changed = 0;
    ATR_TRY(
        cx_exec(&changed, c, "block rekey",
                "UPDATE blocks SET key_ref = $1, wrapped_dek = $2, sealed = COALESCE($3, sealed),"
                " size = COALESCE($4, size)"
                " WHERE tenant = $5 AND block_id = $6 AND key_ref = $7",
                &p));
    if (changed == 0)
        return cas_miss(c, "SELECT 1 FROM blocks WHERE tenant = $1 AND block_id = $2", a->tenant,
                        a->block_id, "the block's key reference changed", "block not found");
    return ATR_OK;
}

static atr_status eng_block_rekey(void *impl, const char *tenant, int64_t block_id,
                                  const char *old_key_ref, const char *new_key_ref,
                                  struct atr_span new_wrapped_dek, struct atr_span new_sealed,
                                  struct atr_err *err)
{
    struct rekey_arg a = {tenant, block_id, old_key_ref, new_key_ref, new_wrapped_dek, new_sealed};
    return run(impl, OP_WRITE, op_block_rekey, &a, err);
}

/* ---- audit ---- */

struct audit_append_arg {
    int64_t *out_id;
    const struct atr_store_audit_event *ev;
};

static atr_status op_audit_append(struct cx *c, void *arg)
{
    struct audit_append_arg *a = arg;
    return audit_insert(a->out_id, c, a->ev);
}

static atr_status eng_audit_append(int64_t *out_id, void *impl,
                                   const struct atr_store_audit_event *ev, struct atr_err *err)
{
    struct audit_append_arg a = {out_id, ev};
    return run(impl, OP_WRITE, op_audit_append, &a, err);
}

static atr_status row_audit(void *elem, const PGresult *r, int row, struct atr_err *err)
{
    struct atr_store_audit_event *ev = elem;
    int ok = 1;
    ev->id = col_i64(r, row, 0, &ok);
    ev->time_ms = col_i64(r, row, 2, &ok);
    atr_status rc = ok ? ATR_OK : corrupt(err, "audit row");
    if (rc == ATR_OK)
        rc = col_text(ev->tenant, sizeof(ev->tenant), r, row, 1, "audit tenant", err);
    if (rc == ATR_OK)
        rc = col_text(ev->actor, sizeof(ev->actor), r, row, 3, "audit actor", err);
    if (rc == ATR_OK)
        rc = col_text(ev->action, sizeof(ev->action), r, row, 4, "audit action", err);
    if (rc == ATR_OK)
        rc = col_text(ev->detail_json, sizeof(ev->detail_json), r, row, 5, "audit detail", err);
    return rc;
}

static atr_status op_audit_list(struct cx *c, void *arg)
{
    struct list_arg *a = arg;
    struct qp p;
    qp_init(&p);
    const char *sql;
    if (a->tenant != NULL) {
        qp_text(&p, a->tenant);
        qp_i64(&p, a->a);
        qp_i64(&p, (int64_t)a->limit);
        sql = "SELECT id, tenant, time_ms, actor, action, detail FROM audit"
              " WHERE tenant = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
    } else {
        qp_i64(&p, a->a);
        qp_i64(&p, (int64_t)a->limit);
        sql = "SELECT id, tenant, time_ms, actor, action, detail FROM audit"
              " WHERE id < $1 ORDER BY id DESC LIMIT $2";
    }
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "audit list", sql, &p));
    atr_status rc = collect(a->out, a->out_n, r, sizeof(struct atr_store_audit_event), a->limit,
                            row_audit, rows_free_plain, c->err);
    PQclear(r);
    return rc;
}

static atr_status eng_audit_list(struct atr_store_audit_event **out, size_t *out_n, void *impl,
                                 const char *tenant, int64_t before_id, size_t limit,
                                 struct atr_err *err)
{
    struct list_arg a = {(void *)out, out_n, tenant, NULL, before_id > 0 ? before_id : INT64_MAX,
                         0,           0,     0,      limit};
    return run(impl, OP_READ, op_audit_list, &a, err);
}

/* ---- statistics ---- */

struct stats_arg {
    struct atr_store_stats *out;
    const char *tenant;
};

static atr_status op_stats(struct cx *c, void *arg)
{
    struct stats_arg *a = arg;
    struct qp p;
    qp_init(&p);
    const char *sql = "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blocks";
    if (a->tenant != NULL) {
        qp_text(&p, a->tenant);
        sql = "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blocks"
              " WHERE tenant = $1";
    }
    PGresult *r = NULL;
    ATR_TRY(cx_query(&r, c, "statistics", sql, &p));
    int ok = PQntuples(r) == 1;
    int64_t blocks = ok ? col_i64(r, 0, 0, &ok) : 0;
    int64_t bytes = ok ? col_i64(r, 0, 1, &ok) : 0;
    PQclear(r);
    if (!ok || blocks < 0 || bytes < 0)
        return corrupt(c->err, "statistics");
    a->out->blocks = (uint64_t)blocks;
    a->out->sealed_bytes = (uint64_t)bytes;
    return ATR_OK;
}

static atr_status eng_stats_get(struct atr_store_stats *out, void *impl, const char *tenant,
                                struct atr_err *err)
{
    struct stats_arg a = {out, tenant};
    return run(impl, OP_READ, op_stats, &a, err);
}

static const struct atr_store_vt pg_vt = {
    .vt_size = sizeof(struct atr_store_vt),
    .name = "postgres",
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

atr_status atr_store_pg_open(const struct atr_store_vt **out_vt, void **out_impl, const char *url,
                             unsigned busy_timeout_ms, struct atr_err *err)
{
    *out_vt = NULL;
    *out_impl = NULL;
    struct eng *e = atr_calloc(1, sizeof(*e));
    if (e == NULL)
        return nomem(err);
    if (pthread_mutex_init(&e->lock, NULL) != 0) {
        atr_free(e);
        return atr_err_set(err, ATR_E_INTERNAL, "postgres store: cannot make a mutex");
    }
    if (pthread_cond_init(&e->freed, NULL) != 0) {
        pthread_mutex_destroy(&e->lock);
        atr_free(e);
        return atr_err_set(err, ATR_E_INTERNAL, "postgres store: cannot make a condition");
    }
    if (pthread_mutex_init(&e->id_lock, NULL) != 0) {
        pthread_cond_destroy(&e->freed);
        pthread_mutex_destroy(&e->lock);
        atr_free(e);
        return atr_err_set(err, ATR_E_INTERNAL, "postgres store: cannot make a mutex");
    }
    /* no chunk yet: every id counts as not reserved */
    e->id_next = e->id_end = 1;
    e->busy_ms = busy_timeout_ms > INT32_MAX ? INT32_MAX : busy_timeout_ms;
    size_t pool = POOL_DEFAULT;
    atr_status rc = split_url(&e->conninfo, &pool, url, err);
    if (rc != ATR_OK)
        goto done;
    /* a connection string libpq cannot parse (its message may quote the password) */
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(e->conninfo, &perr);
    if (opts == NULL) {
        rc = perr != NULL ? atr_err_set(err, ATR_E_INVALID,
                                        "postgres store: the connection URI is not valid")
                          : nomem(err);
        PQfreemem(perr);
        goto done;
    }
    PQconninfoFree(opts);
    e->slots = atr_calloc(pool, sizeof(*e->slots));
    if (e->slots == NULL) {
        rc = nomem(err);
        goto done;
    }
    e->nslots = pool;
    rc = migrate(e, err);
done:
    if (rc != ATR_OK) {
        eng_close(e);
        return rc;
    }
    *out_vt = &pg_vt;
    *out_impl = e;
    return ATR_OK;
}
