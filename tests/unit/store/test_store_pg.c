/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store/store_pg: the storage contract on PostgreSQL, and what is the
 * PostgreSQL engine's own: locations and the pool size parameter, schema
 * versions and racing migrations, several nodes on one database, binary
 * blobs and bytewise order, the pool under load, and a server that goes
 * down and comes back.
 *
 * Needs a server: ATREST_PG_URL names a database in which this program
 * makes one schema per test (tests/pg/pg_test.sh starts a throwaway
 * server and sets it, with ATREST_PG_STOP and ATREST_PG_START, shell
 * commands that stop and start that server, for the restart test). Without
 * ATREST_PG_URL the program is skipped (exit 77).
 */
#include "lib/testutil.h"
#include "unit/store/contract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/store.h"

static const char *base_url;
static PGconn *admin; /* on the database of ATREST_PG_URL: creates and drops the test schemas */
static unsigned db_serial;

/* ---- databases ---- */

/*
 * Runs one command of ours (no values from outside) on the admin connection,
 * once more after a reset when the server was restarted in between; 0 when it worked.
 */
static int admin_exec(const char *sql)
{
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexec(admin, sql);
        int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (ok)
            return 0;
        if (attempt == 0 && PQstatus(admin) != CONNECTION_OK) {
            PQreset(admin);
            continue;
        }
        fprintf(stderr, "pg test: %s: %s", sql, PQerrorMessage(admin));
        return -1;
    }
}

/*
 * Every test gets a schema of its own in the database of ATREST_PG_URL (a
 * database costs 250 ms to create, a schema 10 ms): its location is that
 * URL with options=-csearch_path=<schema> (where the engine then creates its
 * tables) and @p params ("k=v&...", NULL = none).
 */
static int new_store_loc(char *loc, size_t cap, const char *params)
{
    char schema[64], sql[128];
    snprintf(schema, sizeof(schema), "atr_ct_%ld_%u", (long)getpid(), ++db_serial);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    if (admin_exec(sql) != 0)
        return -1;
    int n = snprintf(loc, cap, "%s%soptions=-csearch_path%%3D%s%s%s", base_url,
                     strchr(base_url, '?') != NULL ? "&" : "?", schema, params != NULL ? "&" : "",
                     params != NULL ? params : "");
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The schema of a location from new_store_loc(). */
static void schema_of(char *out, size_t cap, const char *loc)
{
    const char *p = strstr(loc, "search_path%3D");
    assert_non_null(p);
    p += strlen("search_path%3D");
    snprintf(out, cap, "%.*s", (int)strcspn(p, "&"), p);
}

/* @p loc with @p params added to its query. */
static void loc_with(char *out, size_t cap, const char *loc, const char *params)
{
    int n = snprintf(out, cap, "%s&%s", loc, params);
    assert_true(n > 0 && (size_t)n < cap);
}

static void drop_store(const char *loc)
{
    char schema[64], sql[160];
    schema_of(schema, sizeof(schema), loc);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    (void)admin_exec(sql);
}

/* Runs @p sql in the schema of @p loc; returns the first value of the first row (static). */
static const char *db_query(const char *loc, const char *sql)
{
    static char value[128];
    value[0] = '\0';
    PGconn *c = PQconnectdb(loc);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
        snprintf(value, sizeof(value), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return value;
}

/* Connections open with application_name @p app (the engine's default is atrest). */
static int connections_named(const char *app)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'", app);
    return atoi(db_query(base_url, sql));
}

/* ---- the contract's engine description ---- */

static int pg_fresh(char *loc, size_t cap, void *arg)
{
    (void)arg;
    return new_store_loc(loc, cap, NULL);
}

static void pg_discard(const char *loc, void *arg)
{
    (void)arg;
    drop_store(loc);
}

static const struct atr_store_contract_engine pg_engine = {
    "postgres",
    pg_fresh,
    pg_discard,
    NULL,
};

/* ---- PostgreSQL-specific behaviour ---- */

struct fixture {
    char loc[ATR_CT_LOCATION_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || new_store_loc(f->loc, sizeof(f->loc), NULL) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    drop_store(f->loc);
    free(f);
    return 0;
}

static struct atr_store *open_ok(const char *loc)
{
    struct atr_store *s = NULL;
    CT_CALL(ATR_OK, atr_store_open(&s, loc, NULL, CT_ERR));
    return s;
}

/* Expects @p rc == ATR_E_IO with "unreachable" in @p err (the database is down). */
static void expect_unreachable(atr_status rc, const struct atr_err *err, const char *what)
{
    if (rc != ATR_E_IO || strstr(atr_err_msg(err), "the database is unreachable") == NULL)
        fail_msg("%s: %s (%s), expected ATR_E_IO and \"unreachable\"", what, atr_status_name(rc),
                 atr_err_msg(err));
}

static void test_locations(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = open_ok(f->loc);
    assert_string_equal(atr_store_engine_name(s), "postgres");
    atr_store_close(s);

    /* both prefixes libpq knows */
    char loc[ATR_CT_LOCATION_MAX];
    const char *tail = strstr(f->loc, "://");
    snprintf(loc, sizeof(loc), "postgres%s", tail);
    s = open_ok(loc);
    atr_store_close(s);

    /* our pool size parameter: removed before libpq sees it, checked */
    loc_with(loc, sizeof(loc), f->loc, "pool_max_conns=2");
    s = open_ok(loc);
    atr_store_close(s);
    static const char *const bad_pools[] = {"pool_max_conns=0", "pool_max_conns=65",
                                            "pool_max_conns=x",
                                            "pool_max_conns=", "pool_max_conns=100"};
    struct atr_err err;
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_pools); i++) {
        loc_with(loc, sizeof(loc), f->loc, bad_pools[i]);
        s = (struct atr_store *)1;
        atr_err_clear(&err);
        assert_int_equal(atr_store_open(&s, loc, NULL, &err), ATR_E_INVALID);
        assert_null(s);
        assert_non_null(strstr(atr_err_msg(&err), "pool_max_conns"));
    }

    /* a URI libpq cannot parse; its text (here with the password) is never echoed */
    atr_err_clear(&err);
    assert_int_equal(atr_store_open(&s, "postgresql://atr:hunter2%zz@db/atrest", NULL, &err),
                     ATR_E_INVALID);
    assert_null(strstr(atr_err_msg(&err), "hunter2"));
    assert_int_equal(atr_store_open(&s, "postgresql://db/atrest?no_such_option=1", NULL, &err),
                     ATR_E_INVALID);

    /* nobody listens: unreachable, credentials never echoed */
    atr_err_clear(&err);
    atr_status rc = atr_store_open(
        &s, "postgresql://atr:hunter2@127.0.0.1:1/atrest?connect_timeout=2", NULL, &err);
    expect_unreachable(rc, &err, "open without a server");
    assert_null(s);
    assert_null(strstr(atr_err_msg(&err), "hunter2"));

    /* "postgres:" without "//" is no URI libpq reads: an unknown engine, as before */
    assert_int_equal(atr_store_open(&s, "postgres:x", NULL, NULL), ATR_E_UNSUPPORTED);
}

static void test_schema_versions(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = open_ok(f->loc);
    atr_store_close(s);
    assert_string_equal(db_query(f->loc, "SELECT MAX(version) FROM schema_version"), "1");
    /* opening again does not migrate again */
    s = open_ok(f->loc);
    atr_store_close(s);
    assert_string_equal(db_query(f->loc, "SELECT COUNT(*) FROM schema_version"), "1");
    /* the text keys order bytewise whatever the database's collation */
    assert_string_equal(db_query(f->loc, "SELECT collation_name FROM information_schema.columns"
                                         " WHERE table_schema = current_schema()"
                                         " AND table_name = 'tenants' AND column_name = 'id'"),
                        "C");

    /* a newer schema is refused */
    (void)db_query(f->loc, "INSERT INTO schema_version (version) VALUES (99)");
    struct atr_err err;
    atr_err_clear(&err);
    s = (struct atr_store *)1;
    assert_int_equal(atr_store_open(&s, f->loc, NULL, &err), ATR_E_CONFIG);
    assert_null(s);
    assert_non_null(strstr(atr_err_msg(&err), "newer"));
}

/* ---- nodes starting together ---- */

enum { RACERS = 6 };

struct racer {
    const char *loc;
    pthread_barrier_t *start;
    atr_status rc;
    struct atr_err err;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    struct atr_store *s = NULL;
    pthread_barrier_wait(r->start);
    r->rc = atr_store_open(&s, r->loc, NULL, &r->err);
    atr_store_close(s);
    return NULL;
}

static void test_concurrent_migrations(void **state)
{
    struct fixture *f = *state;
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
    pthread_t th[RACERS];
    struct racer r[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i].loc = f->loc;
        r[i].start = &start;
        r[i].rc = ATR_E_INTERNAL;
        atr_err_clear(&r[i].err);
        assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < RACERS; i++)
        if (r[i].rc != ATR_OK)
            fail_msg("node %d: %s (%s)", i, atr_status_name(r[i].rc), atr_err_msg(&r[i].err));
    assert_string_equal(db_query(f->loc, "SELECT COUNT(*) FROM schema_version"), "1");
}

/* ---- two nodes on one database ---- */

static void test_two_nodes(void **state)
{
    struct fixture *f = *state;
    struct atr_store *a = open_ok(f->loc), *b = open_ok(f->loc);
    atr_ct_create(a, "acme", 1);

    /* both read generation 1; the first writer wins, the other one conflicts */
    struct atr_store_tenant ta, tb;
    CT_CALL(ATR_OK, atr_store_tenant_get(&ta, a, "acme", CT_ERR));
    CT_CALL(ATR_OK, atr_store_tenant_get(&tb, b, "acme", CT_ERR));
    ta.state = ATR_STORE_STATE_LOCKED;
    tb.state = ATR_STORE_STATE_DEGRADED;
    int64_t gen = 0;
    CT_CALL(ATR_OK, atr_store_tenant_update(&gen, a, &ta, CT_ERR));
    CT_CALL(ATR_E_CONFLICT, atr_store_tenant_update(NULL, b, &tb, CT_ERR));
    atr_store_tenant_cleanup(&tb);
    CT_CALL(ATR_OK, atr_store_tenant_get(&tb, b, "acme", CT_ERR));
    assert_int_equal(tb.state, ATR_STORE_STATE_LOCKED);
    assert_int_equal(tb.generation, gen);
    atr_store_tenant_cleanup(&ta);
    atr_store_tenant_cleanup(&tb);

    /* block ids of the two nodes never meet; each node's blocks are seen by the other */
    int64_t ia = 0, ib = 0, ia2 = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&ia, a, "acme", 3, CT_ERR));
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&ib, b, "acme", 3, CT_ERR));
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&ia2, a, "acme", 2, CT_ERR));
    assert_true(ia + 3 <= ib || ib + 3 <= ia);
    assert_true(ia2 >= ia + 3);
    assert_true(ia2 + 2 <= ib || ib + 3 <= ia2);
    struct atr_ct_block blk[3];
    struct atr_store_block_in in[3];
    for (int i = 0; i < 3; i++) {
        atr_ct_block(&blk[i], ib + i, i, i + 1, "tk");
        in[i] = blk[i].in;
    }
    CT_CALL(ATR_OK, atr_store_blocks_append(b, "acme", in, 3, CT_ERR));
    (void)atr_ct_append1(a, "acme", 5, 6);
    assert_int_equal(atr_ct_block_count(a, "acme"), 4);
    assert_int_equal(atr_ct_block_count(b, NULL), 4);

    /* audit ids increase across nodes */
    int64_t e1 = atr_ct_audit(a, "acme", 1, "x.a", "");
    int64_t e2 = atr_ct_audit(b, "acme", 2, "x.b", "");
    int64_t e3 = atr_ct_audit(a, "acme", 3, "x.a", "");
    assert_true(e1 < e2 && e2 < e3);

    /* a re-wrap on one node: the other node's stale reader loses */
    struct atr_store_tenant stale;
    CT_CALL(ATR_OK, atr_store_tenant_get(&stale, b, "acme", CT_ERR));
    struct atr_ct_rewrap rw = {0};
    size_t changed = 0;
    CT_CALL(ATR_OK, atr_store_tenant_rewrap_srk(&changed, a, atr_ct_rewrap_fn, &rw, 9, CT_ERR));
    assert_int_equal(changed, 1);
    CT_CALL(ATR_E_CONFLICT, atr_store_tenant_update(NULL, b, &stale, CT_ERR));
    atr_store_tenant_cleanup(&stale);
    atr_store_close(a);
    atr_store_close(b);
}

/* ---- bytes and order ---- */

struct order_rec {
    char ids[8][16];
    int n;
};

static atr_status record_order(struct atr_buf *out_blob, int32_t *out_version, void *arg,
                               const char *tenant_id, struct atr_span old_blob, int32_t old_version,
                               struct atr_err *err)
{
    (void)out_blob;
    (void)out_version;
    (void)old_blob;
    (void)old_version;
    (void)err;
    struct order_rec *o = arg;
    if (o->n < 8)
        snprintf(o->ids[o->n++], sizeof(o->ids[0]), "%s", tenant_id);
    return ATR_OK;
}

static void test_bytes_and_order(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = open_ok(f->loc);

    /* ids come back in bytewise order (a linguistic collation would mix these up) */
    static const char *const ids[] = {"ab", "a_1", "B", "a.1", "_x", "a-1", "A-2"};
    static const char *const sorted[] = {"A-2", "B", "_x", "a-1", "a.1", "a_1", "ab"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(ids); i++)
        atr_ct_create(s, ids[i], 1);
    char after[ATR_STORE_TENANT_ID_MAX + 1] = "";
    size_t seen = 0;
    for (;;) {
        struct atr_store_tenant *rows = NULL;
        size_t n = 0;
        CT_CALL(ATR_OK, atr_store_tenant_list(&rows, &n, s, after, 2, CT_ERR));
        for (size_t i = 0; i < n; i++)
            assert_string_equal(rows[i].id, sorted[seen++]);
        if (n > 0)
            snprintf(after, sizeof(after), "%s", rows[n - 1].id);
        atr_store_tenants_free(rows, n);
        if (n < 2)
            break;
    }
    assert_int_equal(seen, ATR_ARRAY_LEN(sorted));
    struct order_rec o = {.n = 0};
    CT_CALL(ATR_OK, atr_store_tenant_rewrap_srk(NULL, s, record_order, &o, 1, CT_ERR));
    assert_int_equal(o.n, ATR_ARRAY_LEN(sorted));
    for (int i = 0; i < o.n; i++)
        assert_string_equal(o.ids[i], sorted[i]);

    /* blobs are bytes: NULs and 0xff survive */
    static const uint8_t odd[] = {0x00, 0xff, 0x00, 0x5c, 0x78, 0x27, 0x00};
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "ab", CT_ERR));
    atr_buf_reset(&t.srk_blob);
    assert_int_equal(atr_buf_append(&t.srk_blob, odd, sizeof(odd)), ATR_OK);
    CT_CALL(ATR_OK, atr_store_tenant_update(NULL, s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "ab", CT_ERR));
    assert_int_equal(t.srk_blob.len, sizeof(odd));
    assert_memory_equal(t.srk_blob.ptr, odd, sizeof(odd));
    atr_store_tenant_cleanup(&t);

    /* a batch larger than one INSERT (rows and bytes), all or nothing */
    enum { N = 600, BIG = 3 << 20 };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 9));
    big[0] = 0;
    struct atr_store_block_in *in = calloc(N, sizeof(*in));
    assert_non_null(in);
    int64_t first = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&first, s, "ab", N, CT_ERR));
    for (int i = 0; i < N; i++) {
        in[i].block_id = first + i;
        in[i].t_min_ms = i;
        in[i].t_max_ms = i + 10;
        in[i].records = 1;
        in[i].key_ref = "tk";
        in[i].wrapped_dek = atr_span_of(odd, sizeof(odd));
        /* four blocks of 3 MiB among them: more than one statement's worth of bytes */
        in[i].sealed = atr_span_of(big, i % 150 == 7 ? (size_t)BIG : (size_t)100 + (size_t)i);
    }
    in[N - 1].block_id = first; /* a duplicate at the very end */
    CT_CALL(ATR_E_CONFLICT, atr_store_blocks_append(s, "ab", in, N, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, NULL), 0);
    in[N - 1].block_id = first + N - 1;
    CT_CALL(ATR_OK, atr_store_blocks_append(s, "ab", in, N, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, "ab"), N);
    struct atr_buf out;
    atr_buf_init(&out, ATR_STORE_SEALED_MAX);
    CT_CALL(ATR_OK, atr_store_block_read(&out, s, "ab", first + 157, CT_ERR));
    assert_int_equal(out.len, BIG);
    assert_memory_equal(out.ptr, big, BIG);
    atr_buf_cleanup(&out);
    struct atr_store_block_meta *rows = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK,
            atr_store_blocks_by_key_ref(&rows, &n, s, "ab", "tk", first + 590, 100, CT_ERR));
    assert_int_equal(n, 9);
    assert_int_equal(rows[0].wrapped_dek.len, sizeof(odd));
    assert_memory_equal(rows[0].wrapped_dek.ptr, odd, sizeof(odd));
    atr_store_block_metas_free(rows, n);
    free(in);
    free(big);
    atr_store_close(s);
}

static void test_text_the_database_refuses(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = open_ok(f->loc);
    struct atr_store_tenant t;
    atr_ct_tenant(&t, "acme", 1);
    snprintf(t.reason, sizeof(t.reason), "not UTF-8: \xff\xfe secret");
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_store_tenant_create(s, &t, &err), ATR_E_INVALID);
    assert_null(strstr(atr_err_msg(&err), "secret"));
    assert_null(strstr(atr_err_msg(&err), "0xff"));
    t.reason[0] = '\0';
    CT_CALL(ATR_OK, atr_store_tenant_create(s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
    struct atr_store_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.actor, sizeof(ev.actor), "me");
    snprintf(ev.action, sizeof(ev.action), "x");
    snprintf(ev.detail_json, sizeof(ev.detail_json), "{\"a\":\"\xc3\x28\"}");
    CT_CALL(ATR_E_INVALID, atr_store_audit_append(NULL, s, &ev, CT_ERR));
    atr_store_close(s);
}

/* ---- the pool ---- */

enum { POOL_THREADS = 8, POOL_ROUNDS = 15 };

struct pool_worker {
    struct atr_store *s;
    int index;
    int failures;
    char first_error[ATR_ERR_MSG_MAX];
};

static void *pool_worker_main(void *arg)
{
    struct pool_worker *w = arg;
    for (int r = 0; r < POOL_ROUNDS; r++) {
        struct atr_err err;
        atr_err_clear(&err);
        int64_t id = 0;
        atr_status rc = atr_store_block_ids_reserve(&id, w->s, "shared", 1, &err);
        struct atr_ct_block b;
        atr_ct_block(&b, id, r, r + 1, "tk");
        if (rc == ATR_OK)
            rc = atr_store_blocks_append(w->s, "shared", &b.in, 1, &err);
        for (int tries = 0; rc == ATR_OK && tries < 1000; tries++) {
            struct atr_store_tenant t;
            rc = atr_store_tenant_get(&t, w->s, "shared", &err);
            if (rc != ATR_OK)
                break;
            rc = atr_store_tenant_update(NULL, w->s, &t, &err);
            atr_store_tenant_cleanup(&t);
            if (rc != ATR_E_CONFLICT)
                break;
            rc = ATR_OK;
        }
        if (rc != ATR_OK && w->failures++ == 0)
            snprintf(w->first_error, sizeof(w->first_error), "%s", atr_err_msg(&err));
    }
    return NULL;
}

static void test_pool_under_load(void **state)
{
    struct fixture *f = *state;
    char loc[ATR_CT_LOCATION_MAX];
    loc_with(loc, sizeof(loc), f->loc, "pool_max_conns=2&application_name=atr_pool_test");
    struct atr_store *s = open_ok(loc);
    atr_ct_create(s, "shared", 1);
    pthread_t th[POOL_THREADS];
    struct pool_worker w[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].s = s;
        w[i].index = i;
        assert_int_equal(pthread_create(&th[i], NULL, pool_worker_main, &w[i]), 0);
    }
    for (int i = 0; i < POOL_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < POOL_THREADS; i++)
        if (w[i].failures != 0)
            fail_msg("worker %d: %d failures, first: %s", i, w[i].failures, w[i].first_error);
    assert_int_equal(atr_ct_block_count(s, "shared"), POOL_THREADS * POOL_ROUNDS);
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "shared", CT_ERR));
    assert_int_equal(t.generation, ATR_STORE_GENERATION_FIRST + POOL_THREADS * POOL_ROUNDS);
    atr_store_tenant_cleanup(&t);
    /* never more connections than the pool's size */
    int conns = connections_named("atr_pool_test");
    assert_true(conns >= 1 && conns <= 2);
    atr_store_close(s);
}

/* ---- a connection killed inside a transaction ---- */

/*
 * Re-wrap callback that, while its budget lasts, has the server terminate
 * the engine's connection (application_name atr_kill_test) before it
 * answers: the engine's next statement in that transaction then fails.
 */
struct killer {
    int budget;
    int calls;
};

static atr_status kill_and_wrap(struct atr_buf *out_blob, int32_t *out_version, void *arg,
                                const char *tenant_id, struct atr_span old_blob,
                                int32_t old_version, struct atr_err *err)
{
    (void)tenant_id;
    (void)old_blob;
    (void)err;
    struct killer *k = arg;
    k->calls++;
    if (k->budget > 0) {
        k->budget--;
        const char *n = db_query(base_url, "SELECT count(pg_terminate_backend(pid, 5000))"
                                           " FROM pg_stat_activity"
                                           " WHERE application_name = 'atr_kill_test'");
        if (strcmp(n, "1") != 0)
            fail_msg("terminated %s connections, expected 1", n);
    }
    ATR_TRY(atr_buf_append_str(out_blob, "w"));
    *out_version = old_version + 1;
    return ATR_OK;
}

static void test_killed_mid_transaction(void **state)
{
    struct fixture *f = *state;
    char loc[ATR_CT_LOCATION_MAX];
    loc_with(loc, sizeof(loc), f->loc, "pool_max_conns=1&application_name=atr_kill_test");
    struct atr_store *s = open_ok(loc);
    atr_ct_create(s, "t1", 1);
    atr_ct_create(s, "t2", 1);

    /* killed before COMMIT: nothing of that attempt stays; the engine reruns it once */
    struct killer k = {1, 0};
    size_t changed = 0;
    CT_CALL(ATR_OK, atr_store_tenant_rewrap_srk(&changed, s, kill_and_wrap, &k, 7, CT_ERR));
    assert_int_equal(changed, 2);
    assert_int_equal(k.calls, 3); /* t1, then t1 and t2 again */
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "t1", CT_ERR));
    assert_int_equal(t.srk_version, 2);
    assert_int_equal(t.generation, ATR_STORE_GENERATION_FIRST + 1);
    atr_store_tenant_cleanup(&t);

    /* killed on the rerun too: a clear error, nothing changed */
    k.budget = 2;
    k.calls = 0;
    struct atr_err err;
    atr_err_clear(&err);
    expect_unreachable(atr_store_tenant_rewrap_srk(&changed, s, kill_and_wrap, &k, 8, &err), &err,
                       "re-wrap killed twice");
    assert_int_equal(k.calls, 2);
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "t2", CT_ERR));
    assert_int_equal(t.srk_version, 2);
    assert_int_equal(t.generation, ATR_STORE_GENERATION_FIRST + 1);
    atr_store_tenant_cleanup(&t);
    atr_store_close(s);
}

/* ---- the server goes down and comes back ---- */

static int run_cmd(const char *what)
{
    const char *cmd = getenv(what);
    if (cmd == NULL || cmd[0] == '\0')
        return -1;
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("%s failed (%d)", what, rc);
    return 0;
}

struct reader {
    struct atr_store *s;
    atr_status rc;
    struct atr_err err;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct atr_store_tenant t;
    atr_err_clear(&r->err);
    r->rc = atr_store_tenant_get(&t, r->s, "acme", &r->err);
    atr_store_tenant_cleanup(&t);
    return NULL;
}

/* Reads with @p n threads at once (so that several pooled connections are used). */
static void read_together(struct atr_store *s, int n, atr_status want)
{
    pthread_t th[8];
    struct reader r[8];
    for (int i = 0; i < n; i++) {
        r[i].s = s;
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &r[i]), 0);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < n; i++) {
        if (want == ATR_E_IO)
            expect_unreachable(r[i].rc, &r[i].err, "read while the server is down");
        else if (r[i].rc != want)
            fail_msg("reader %d: %s (%s)", i, atr_status_name(r[i].rc), atr_err_msg(&r[i].err));
    }
}

static void test_server_restart(void **state)
{
    struct fixture *f = *state;
    if (getenv("ATREST_PG_STOP") == NULL || getenv("ATREST_PG_START") == NULL) {
        printf("skip: ATREST_PG_STOP / ATREST_PG_START not set (tests/pg/pg_test.sh sets them)\n");
        skip();
    }
    struct atr_store *s = open_ok(f->loc);
    atr_ct_create(s, "acme", 1);
    int64_t b1 = atr_ct_append1(s, "acme", 0, 1);
    read_together(s, 4, ATR_OK);

    /* down: every call fails cleanly, and so does opening */
    assert_int_equal(run_cmd("ATREST_PG_STOP"), 0);
    struct atr_err err;
    struct atr_store_tenant t;
    atr_err_clear(&err);
    expect_unreachable(atr_store_tenant_get(&t, s, "acme", &err), &err, "get");
    atr_ct_tenant(&t, "acme", 1);
    t.generation = ATR_STORE_GENERATION_FIRST;
    atr_err_clear(&err);
    expect_unreachable(atr_store_tenant_update(NULL, s, &t, &err), &err, "update");
    atr_store_tenant_cleanup(&t);
    struct atr_ct_block blk;
    atr_ct_block(&blk, b1, 0, 1, "tk");
    atr_err_clear(&err);
    int64_t id = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&id, s, "acme", 1, CT_ERR)); /* from the chunk */
    blk.in.block_id = id;
    expect_unreachable(atr_store_blocks_append(s, "acme", &blk.in, 1, &err), &err, "append");
    struct atr_store_stats st;
    atr_err_clear(&err);
    expect_unreachable(atr_store_stats_get(&st, s, NULL, &err), &err, "stats");
    read_together(s, 4, ATR_E_IO);
    struct atr_store *s2 = (struct atr_store *)1;
    atr_err_clear(&err);
    expect_unreachable(atr_store_open(&s2, f->loc, NULL, &err), &err, "open");
    assert_null(s2);

    /* back: the first call may still fail (ATR_E_IO), the next ones work */
    assert_int_equal(run_cmd("ATREST_PG_START"), 0);
    atr_err_clear(&err);
    atr_status rc = atr_store_tenant_get(&t, s, "acme", &err);
    atr_store_tenant_cleanup(&t);
    if (rc != ATR_OK)
        expect_unreachable(rc, &err, "first call after the restart");
    printf("note: first call after the restart: %s\n", atr_status_name(rc));
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "acme", CT_ERR));
    assert_int_equal(t.generation,
                     ATR_STORE_GENERATION_FIRST); /* the update while down: not stored */
    CT_CALL(ATR_OK, atr_store_tenant_update(NULL, s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
    CT_CALL(ATR_OK, atr_store_blocks_append(s, "acme", &blk.in, 1, CT_ERR));
    read_together(s, 4, ATR_OK);

    /* a restart while the store is idle: its stale connections are reset and the calls rerun */
    assert_int_equal(run_cmd("ATREST_PG_STOP"), 0);
    assert_int_equal(run_cmd("ATREST_PG_START"), 0);
    read_together(s, 4, ATR_OK);
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "acme", CT_ERR));
    CT_CALL(ATR_OK, atr_store_tenant_update(NULL, s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
    (void)atr_ct_audit(s, "acme", 5, "after.restart", "");
    assert_int_equal(atr_ct_block_count(s, "acme"), 2);
    atr_store_close(s);
}

int main(void)
{
    base_url = getenv("ATREST_PG_URL");
    if (base_url == NULL || base_url[0] == '\0') {
        printf("skip: ATREST_PG_URL is not set (tests/pg/pg_test.sh starts a server and sets "
               "it)\n");
        return 77;
    }
    admin = PQconnectdb(base_url);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "pg test: cannot connect to ATREST_PG_URL: %s", PQerrorMessage(admin));
        PQfinish(admin);
        return 1;
    }
    int failed = atr_store_contract_run(&pg_engine);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_locations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_migrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_the_database_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_mid_transaction, setup, teardown),
        /* last: it stops and starts the server */
        cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
    };
    failed += cmocka_run_group_tests_name("store_pg", tests, NULL, NULL);
    PQfinish(admin);
    return failed;
}
