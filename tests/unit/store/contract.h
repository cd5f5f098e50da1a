/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_TESTS_UNIT_STORE_CONTRACT_H
#define ATR_TESTS_UNIT_STORE_CONTRACT_H

/*
 * The storage contract (store/store.h), as cmocka tests that run against any
 * engine. Header-only and static because tests/CMakeLists.txt builds every
 * tests/unit/<area>/test_<module>.c alone: an engine's test program
 * (test_store_sqlite.c, later test_store_postgres.c) includes this file and
 * calls atr_store_contract_run() with a description of how to make a fresh,
 * empty store.
 *
 * Every test gets a new empty store (setup) and removes it (teardown); the
 * tests only use the public API, so they hold for every engine. The caller
 * initialises the secure heap if it needs one (the contract does not).
 */

#include "lib/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "store/store.h"

#define ATR_CT_LOCATION_MAX 512

struct atr_store_contract_engine {
    const char *name; /* shown in the cmocka group name */
    /* Writes the location of a new, empty store into @p loc; 0 on success. */
    int (*fresh)(char *loc, size_t cap, void *arg);
    /* Removes whatever fresh() made for @p loc (the store is closed). */
    void (*discard)(const char *loc, void *arg);
    void *arg;
};

struct atr_ct_fixture {
    const struct atr_store_contract_engine *engine;
    char loc[ATR_CT_LOCATION_MAX];
    struct atr_store *s;
};

/* Runs @p call and fails the test with the error detail unless it returns @p want. */
#define CT_CALL(want, call)                                                                        \
    do {                                                                                           \
        struct atr_err ct_err_;                                                                    \
        atr_err_clear(&ct_err_);                                                                   \
        atr_status ct_rc_ = (call);                                                                \
        if (ct_rc_ != (want))                                                                      \
            fail_msg("%s:%d: %s returned %s (%s), expected %s", __FILE__, __LINE__, #call,         \
                     atr_status_name(ct_rc_), atr_err_msg(&ct_err_), atr_status_name(want));       \
    } while (0)
#define CT_ERR (&ct_err_)

static struct atr_store *atr_ct_open(const char *loc)
{
    struct atr_store *s = NULL;
    CT_CALL(ATR_OK, atr_store_open(&s, loc, NULL, CT_ERR));
    assert_non_null(s);
    return s;
}

static int atr_ct_setup(void **state)
{
    const struct atr_store_contract_engine *engine = *state;
    struct atr_ct_fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    fx->engine = engine;
    if (engine->fresh(fx->loc, sizeof(fx->loc), engine->arg) != 0) {
        free(fx);
        return -1;
    }
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_store_open(&fx->s, fx->loc, NULL, &err) != ATR_OK) {
        fprintf(stderr, "contract: cannot open %s: %s\n", fx->loc, atr_err_msg(&err));
        engine->discard(fx->loc, engine->arg);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int atr_ct_teardown(void **state)
{
    struct atr_ct_fixture *fx = *state;
    atr_store_close(fx->s);
    fx->engine->discard(fx->loc, fx->engine->arg);
    free(fx);
    return 0;
}

/* ---- helpers ---- */

static void atr_ct_blob(struct atr_buf *b, const char *text)
{
    atr_buf_reset(b);
    assert_int_equal(atr_buf_append_str(b, text), ATR_OK);
}

/* A managed tenant row with an SRK blob that names the tenant. */
static void atr_ct_tenant(struct atr_store_tenant *t, const char *id, int64_t created_ms)
{
    atr_store_tenant_init(t);
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->state = ATR_STORE_STATE_MANAGED;
    char blob[96];
    snprintf(blob, sizeof(blob), "srk-wrap(tk of %s)", id);
    atr_ct_blob(&t->srk_blob, blob);
    t->srk_version = 1;
    t->created_ms = created_ms;
}

static void atr_ct_create(struct atr_store *s, const char *id, int64_t created_ms)
{
    struct atr_store_tenant t;
    atr_ct_tenant(&t, id, created_ms);
    CT_CALL(ATR_OK, atr_store_tenant_create(s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
}

static int atr_ct_span_is(struct atr_span s, const char *text)
{
    return s.len == strlen(text) && (s.len == 0 || memcmp(s.ptr, text, s.len) == 0);
}

/* Storage for the bytes of a test block. */
struct atr_ct_block {
    char sealed[64];
    char dek[32];
    struct atr_store_block_in in;
};

static void atr_ct_block(struct atr_ct_block *b, int64_t id, int64_t t_min, int64_t t_max,
                         const char *key_ref)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->sealed, sizeof(b->sealed), "sealed bytes of block %lld", (long long)id);
    snprintf(b->dek, sizeof(b->dek), "dek-%lld", (long long)id);
    b->in.block_id = id;
    b->in.t_min_ms = t_min;
    b->in.t_max_ms = t_max;
    b->in.records = 10 + id;
    b->in.key_ref = key_ref;
    b->in.wrapped_dek = atr_span_str(b->dek);
    b->in.sealed = atr_span_str(b->sealed);
}

/* Reserves one id and appends one block of [t_min, t_max]; returns the id. */
static int64_t atr_ct_append1(struct atr_store *s, const char *tenant, int64_t t_min, int64_t t_max)
{
    int64_t id = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&id, s, tenant, 1, CT_ERR));
    struct atr_ct_block b;
    atr_ct_block(&b, id, t_min, t_max, "tk");
    CT_CALL(ATR_OK, atr_store_blocks_append(s, tenant, &b.in, 1, CT_ERR));
    return id;
}

static uint64_t atr_ct_block_count(struct atr_store *s, const char *tenant)
{
    struct atr_store_stats st;
    CT_CALL(ATR_OK, atr_store_stats_get(&st, s, tenant, CT_ERR));
    return st.blocks;
}

/* ---- tenants ---- */

static void atr_ct_tenant_crud(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    struct atr_store_tenant t, got;
    atr_ct_tenant(&t, "acme", 1000);
    snprintf(t.reason, sizeof(t.reason), "created");
    CT_CALL(ATR_OK, atr_store_tenant_create(s, &t, CT_ERR));
    CT_CALL(ATR_E_CONFLICT, atr_store_tenant_create(s, &t, CT_ERR));

    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "acme", CT_ERR));
    assert_string_equal(got.id, "acme");
    assert_int_equal(got.state, ATR_STORE_STATE_MANAGED);
    assert_string_equal(got.reason, "created");
    assert_string_equal(got.key_uri, "");
    assert_true(atr_ct_span_is(atr_buf_span(&got.srk_blob), "srk-wrap(tk of acme)"));
    assert_int_equal(got.srk_version, 1);
    assert_int_equal(got.customer_blob.len, 0);
    assert_string_equal(got.customer_kid, "");
    assert_string_equal(got.extra_json, "{}");
    assert_int_equal(got.created_ms, 1000);
    assert_int_equal(got.updated_ms, 1000);
    assert_int_equal(got.generation, ATR_STORE_GENERATION_FIRST);
    atr_store_tenant_cleanup(&got);
    CT_CALL(ATR_E_NOT_FOUND, atr_store_tenant_get(&got, s, "nobody", CT_ERR));
    assert_int_equal(got.srk_blob.len, 0);

    /* a transition: compare-and-set on the generation */
    int64_t gen = 0;
    t.generation = ATR_STORE_GENERATION_FIRST;
    t.state = ATR_STORE_STATE_CUSTOMER;
    snprintf(t.key_uri, sizeof(t.key_uri), "https://v.vault.azure.net/keys/k");
    snprintf(t.customer_kid, sizeof(t.customer_kid), "https://v.vault.azure.net/keys/k/0123");
    atr_ct_blob(&t.customer_blob, "ck-wrap(srk-wrap(tk))");
    snprintf(t.extra_json, sizeof(t.extra_json), "{\"lastRoll\":2000}");
    t.updated_ms = 2000;
    t.created_ms = 5; /* never changed by an update */
    CT_CALL(ATR_OK, atr_store_tenant_update(&gen, s, &t, CT_ERR));
    assert_int_equal(gen, ATR_STORE_GENERATION_FIRST + 1);
    /* the same (now stale) generation again: someone else won */
    t.state = ATR_STORE_STATE_DISABLING;
    CT_CALL(ATR_E_CONFLICT, atr_store_tenant_update(&gen, s, &t, CT_ERR));

    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "acme", CT_ERR));
    assert_int_equal(got.state, ATR_STORE_STATE_CUSTOMER);
    assert_int_equal(got.generation, ATR_STORE_GENERATION_FIRST + 1);
    assert_string_equal(got.key_uri, "https://v.vault.azure.net/keys/k");
    assert_string_equal(got.customer_kid, "https://v.vault.azure.net/keys/k/0123");
    assert_true(atr_ct_span_is(atr_buf_span(&got.customer_blob), "ck-wrap(srk-wrap(tk))"));
    assert_string_equal(got.extra_json, "{\"lastRoll\":2000}");
    assert_int_equal(got.created_ms, 1000);
    assert_int_equal(got.updated_ms, 2000);

    /* the winner's next update, back to managed: nullable fields cleared */
    got.state = ATR_STORE_STATE_MANAGED;
    got.key_uri[0] = '\0';
    got.customer_kid[0] = '\0';
    atr_buf_reset(&got.customer_blob);
    got.reason[0] = '\0';
    got.updated_ms = 3000;
    CT_CALL(ATR_OK, atr_store_tenant_update(&gen, s, &got, CT_ERR));
    assert_int_equal(gen, ATR_STORE_GENERATION_FIRST + 2);
    atr_store_tenant_cleanup(&got);
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "acme", CT_ERR));
    assert_int_equal(got.state, ATR_STORE_STATE_MANAGED);
    assert_string_equal(got.key_uri, "");
    assert_string_equal(got.customer_kid, "");
    assert_int_equal(got.customer_blob.len, 0);
    assert_int_equal(got.generation, ATR_STORE_GENERATION_FIRST + 2);
    atr_store_tenant_cleanup(&got);

    /* customer mode keeps only the customer layer: the SRK blob may be empty then */
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "acme", CT_ERR));
    got.state = ATR_STORE_STATE_CUSTOMER;
    snprintf(got.customer_kid, sizeof(got.customer_kid), "https://v.vault.azure.net/keys/k/4567");
    atr_ct_blob(&got.customer_blob, "ck-wrap(inner)");
    atr_buf_reset(&got.srk_blob);
    CT_CALL(ATR_OK, atr_store_tenant_update(&gen, s, &got, CT_ERR));
    atr_store_tenant_cleanup(&got);
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "acme", CT_ERR));
    assert_int_equal(got.srk_blob.len, 0);
    assert_true(atr_ct_span_is(atr_buf_span(&got.customer_blob), "ck-wrap(inner)"));
    /* ... but a row with neither layer is refused */
    atr_buf_reset(&got.customer_blob);
    got.customer_kid[0] = '\0';
    got.state = ATR_STORE_STATE_MANAGED;
    CT_CALL(ATR_E_INVALID, atr_store_tenant_update(&gen, s, &got, CT_ERR));
    atr_store_tenant_cleanup(&got);

    /* updating a tenant that does not exist */
    snprintf(t.id, sizeof(t.id), "ghost");
    CT_CALL(ATR_E_NOT_FOUND, atr_store_tenant_update(&gen, s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
}

static void atr_ct_tenant_list_and_counts(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    enum { N = 25 };
    for (int i = 0; i < N; i++) {
        struct atr_store_tenant t;
        char id[16];
        snprintf(id, sizeof(id), "t-%02d", i);
        atr_ct_tenant(&t, id, i);
        t.state = (atr_store_state)(1 + i % ATR_STORE_STATE_MAX);
        CT_CALL(ATR_OK, atr_store_tenant_create(s, &t, CT_ERR));
        atr_store_tenant_cleanup(&t);
    }
    /* pages of 10 in id order */
    char after[ATR_STORE_TENANT_ID_MAX + 1] = "";
    int seen = 0;
    for (int page = 0; page < 4; page++) {
        struct atr_store_tenant *rows = NULL;
        size_t n = 99;
        CT_CALL(ATR_OK, atr_store_tenant_list(&rows, &n, s, after, 10, CT_ERR));
        size_t want = page < 2 ? 10 : page == 2 ? 5 : 0;
        assert_int_equal(n, want);
        if (n == 0) {
            assert_null(rows);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof(id), "t-%02d", seen);
            assert_string_equal(rows[i].id, id);
            assert_int_equal(rows[i].state, 1 + seen % ATR_STORE_STATE_MAX);
            char blob[64];
            snprintf(blob, sizeof(blob), "srk-wrap(tk of %s)", id);
            assert_true(atr_ct_span_is(atr_buf_span(&rows[i].srk_blob), blob));
            seen++;
        }
        snprintf(after, sizeof(after), "%s", rows[n - 1].id);
        atr_store_tenants_free(rows, n);
    }
    assert_int_equal(seen, N);

    struct atr_store_tenant_counts c;
    CT_CALL(ATR_OK, atr_store_tenant_counts(&c, s, CT_ERR));
    assert_int_equal(c.total, N);
    assert_int_equal(c.by_state[0], 0);
    uint64_t sum = 0;
    for (int st = 1; st <= ATR_STORE_STATE_MAX; st++) {
        uint64_t want = 0;
        for (int i = 0; i < N; i++)
            want += (1 + i % ATR_STORE_STATE_MAX) == st;
        assert_int_equal(c.by_state[st], want);
        sum += c.by_state[st];
    }
    assert_int_equal(sum, N);
}

/* Re-wrap callback: "v2:" + old blob under version 2; skips "skip-*", fails on "fail-*". */
struct atr_ct_rewrap {
    int calls;
};

static atr_status atr_ct_rewrap_fn(struct atr_buf *out_blob, int32_t *out_version, void *arg,
                                   const char *tenant_id, struct atr_span old_blob,
                                   int32_t old_version, struct atr_err *err)
{
    struct atr_ct_rewrap *r = arg;
    r->calls++;
    if (strncmp(tenant_id, "fail-", 5) == 0)
        return atr_err_set(err, ATR_E_CRYPTO, "test: cannot wrap");
    if (strncmp(tenant_id, "skip-", 5) == 0 || old_version == 2)
        return ATR_OK;
    ATR_TRY(atr_buf_append_str(out_blob, "v2:"));
    ATR_TRY(atr_buf_append(out_blob, old_blob.ptr, old_blob.len));
    *out_version = 2;
    return ATR_OK;
}

static void atr_ct_rewrap_srk(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    /* more tenants than one batch of any reasonable engine */
    enum { N = 100 };
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "r-%03d", i);
        atr_ct_create(s, id, 10);
    }
    atr_ct_create(s, "skip-me", 10);
    struct atr_ct_rewrap r = {0};
    size_t changed = 0;
    CT_CALL(ATR_OK, atr_store_tenant_rewrap_srk(&changed, s, atr_ct_rewrap_fn, &r, 500, CT_ERR));
    assert_int_equal(changed, N);
    assert_int_equal(r.calls, N + 1);
    struct atr_store_tenant got;
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "r-042", CT_ERR));
    assert_true(atr_ct_span_is(atr_buf_span(&got.srk_blob), "v2:srk-wrap(tk of r-042)"));
    assert_int_equal(got.srk_version, 2);
    assert_int_equal(got.generation, ATR_STORE_GENERATION_FIRST + 1);
    assert_int_equal(got.updated_ms, 500);
    atr_store_tenant_cleanup(&got);
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "skip-me", CT_ERR));
    assert_int_equal(got.srk_version, 1);
    assert_int_equal(got.generation, ATR_STORE_GENERATION_FIRST);
    atr_store_tenant_cleanup(&got);

    /* one failure aborts everything: "a-first" would be changed before "fail-x" */
    atr_ct_create(s, "a-first", 10);
    atr_ct_create(s, "fail-x", 10);
    r.calls = 0;
    changed = 77;
    CT_CALL(ATR_E_CRYPTO,
            atr_store_tenant_rewrap_srk(&changed, s, atr_ct_rewrap_fn, &r, 600, CT_ERR));
    assert_int_equal(changed, 0);
    assert_true(r.calls >= 2);
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "a-first", CT_ERR));
    assert_int_equal(got.srk_version, 1);
    assert_true(atr_ct_span_is(atr_buf_span(&got.srk_blob), "srk-wrap(tk of a-first)"));
    assert_int_equal(got.generation, ATR_STORE_GENERATION_FIRST);
    atr_store_tenant_cleanup(&got);

    /* a stale reader loses against the re-wrap */
    CT_CALL(ATR_OK, atr_store_tenant_get(&got, s, "r-000", CT_ERR));
    got.generation = ATR_STORE_GENERATION_FIRST;
    CT_CALL(ATR_E_CONFLICT, atr_store_tenant_update(NULL, s, &got, CT_ERR));
    atr_store_tenant_cleanup(&got);
}

/* ---- blocks ---- */

static void atr_ct_blocks_append_atomic(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    atr_ct_create(s, "acme", 1);
    int64_t first = 0, next = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&first, s, "acme", 3, CT_ERR));
    assert_true(first >= 1);
    struct atr_ct_block b[3];
    for (int i = 0; i < 3; i++)
        atr_ct_block(&b[i], first + i, 100 * i, 100 * i + 50, "tk");
    struct atr_store_block_in in[3] = {b[0].in, b[1].in, b[2].in};
    CT_CALL(ATR_OK, atr_store_blocks_append(s, "acme", in, 3, CT_ERR));
    struct atr_store_stats st;
    CT_CALL(ATR_OK, atr_store_stats_get(&st, s, "acme", CT_ERR));
    assert_int_equal(st.blocks, 3);
    assert_int_equal(st.sealed_bytes, in[0].sealed.len + in[1].sealed.len + in[2].sealed.len);

    /* sealed bytes come back as stored */
    struct atr_buf out;
    atr_buf_init(&out, 1 << 16);
    for (int i = 0; i < 3; i++) {
        atr_buf_reset(&out);
        CT_CALL(ATR_OK, atr_store_block_read(&out, s, "acme", first + i, CT_ERR));
        assert_true(atr_ct_span_is(atr_buf_span(&out), b[i].sealed));
    }
    CT_CALL(ATR_E_NOT_FOUND, atr_store_block_read(&out, s, "acme", first + 1000, CT_ERR));
    CT_CALL(ATR_E_NOT_FOUND, atr_store_block_read(&out, s, "other", first, CT_ERR));
    atr_buf_cleanup(&out);
    atr_buf_init(&out, 4);
    CT_CALL(ATR_E_TOO_LARGE, atr_store_block_read(&out, s, "acme", first, CT_ERR));
    atr_buf_cleanup(&out);

    /* ids increase */
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&next, s, "acme", 3, CT_ERR));
    assert_true(next >= first + 3);
    struct atr_ct_block c[3];
    for (int i = 0; i < 3; i++)
        atr_ct_block(&c[i], next + i, 1000, 2000, "tk");
    struct atr_store_block_in bad[3] = {c[0].in, c[1].in, c[2].in};

    /* an invalid block in a batch: nothing of the batch is stored */
    bad[2].t_min_ms = 3000;
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", bad, 3, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, "acme"), 3);
    /* a batch the engine itself rejects half-way (an id already stored) */
    bad[2] = c[2].in;
    bad[2].block_id = first;
    CT_CALL(ATR_E_CONFLICT, atr_store_blocks_append(s, "acme", bad, 3, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, "acme"), 3);
    atr_buf_init(&out, 1 << 16);
    CT_CALL(ATR_E_NOT_FOUND, atr_store_block_read(&out, s, "acme", next, CT_ERR));
    /* the same id twice in one batch */
    bad[2].block_id = next;
    CT_CALL(ATR_E_CONFLICT, atr_store_blocks_append(s, "acme", bad, 3, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, "acme"), 3);
    /* an unknown tenant */
    bad[2] = c[2].in;
    CT_CALL(ATR_E_NOT_FOUND, atr_store_blocks_append(s, "nobody", bad, 3, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, NULL), 3);
    /* an id nobody reserved */
    bad[2].block_id = next + 1000000;
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", bad, 3, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, NULL), 3);
    /* and the good batch still goes in */
    bad[2] = c[2].in;
    CT_CALL(ATR_OK, atr_store_blocks_append(s, "acme", bad, 3, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, "acme"), 6);
    CT_CALL(ATR_OK, atr_store_block_read(&out, s, "acme", next + 2, CT_ERR));
    assert_true(atr_ct_span_is(atr_buf_span(&out), c[2].sealed));
    atr_buf_cleanup(&out);
}

static void atr_ct_expect_ids(struct atr_store *s, const char *tenant, int64_t from, int64_t to,
                              const int64_t *want, size_t want_n)
{
    struct atr_store_block_meta *rows = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, s, tenant, from, to, NULL, 100, CT_ERR));
    assert_int_equal(n, want_n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rows[i].block_id, want[i]);
    atr_store_block_metas_free(rows, n);
}

/* Group commit: blocks of several tenants in one call, all or nothing. */
static void atr_ct_blocks_append_tenants(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    atr_ct_create(s, "acme", 1);
    atr_ct_create(s, "globex", 1);
    int64_t first = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&first, s, "acme", 4, CT_ERR));
    struct atr_ct_block b[4];
    struct atr_store_block_in in[4];
    for (int i = 0; i < 4; i++) {
        atr_ct_block(&b[i], first + i, 10 * i, 10 * i + 5, "tk");
        in[i] = b[i].in;
        in[i].tenant = i % 2 == 0 ? "acme" : "globex";
    }
    /* one unknown tenant among them: nothing is stored */
    in[3].tenant = "nobody";
    CT_CALL(ATR_E_NOT_FOUND, atr_store_blocks_append(s, "acme", in, 4, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, NULL), 0);
    in[3].tenant = "bad tenant id";
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", in, 4, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, NULL), 0);
    in[3].tenant = "globex";
    CT_CALL(ATR_OK, atr_store_blocks_append(s, "acme", in, 4, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, "acme"), 2);
    assert_int_equal(atr_ct_block_count(s, "globex"), 2);
    const int64_t want_acme[] = {first, first + 2}, want_globex[] = {first + 1, first + 3};
    atr_ct_expect_ids(s, "acme", 0, 100, want_acme, 2);
    atr_ct_expect_ids(s, "globex", 0, 100, want_globex, 2);
    struct atr_buf out;
    atr_buf_init(&out, 1 << 16);
    CT_CALL(ATR_E_NOT_FOUND, atr_store_block_read(&out, s, "acme", first + 1, CT_ERR));
    CT_CALL(ATR_OK, atr_store_block_read(&out, s, "globex", first + 1, CT_ERR));
    atr_buf_cleanup(&out);
}

static void atr_ct_blocks_time_query(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    atr_ct_create(s, "acme", 1);
    atr_ct_create(s, "other", 1);
    int64_t b1 = atr_ct_append1(s, "acme", 0, 9);
    int64_t b2 = atr_ct_append1(s, "acme", 10, 19);
    int64_t b3 = atr_ct_append1(s, "acme", 5, 25);
    int64_t b4 = atr_ct_append1(s, "acme", 20, 29);
    int64_t b5 = atr_ct_append1(s, "acme", 30, 30);
    int64_t b6 = atr_ct_append1(s, "acme", 10, 19);
    (void)atr_ct_append1(s, "other", 0, 100);

    /* overlap with [from, to): t_min < to and t_max >= from; order (t_min, id) */
    const int64_t q1[] = {b3, b2, b6};
    atr_ct_expect_ids(s, "acme", 10, 20, q1, 3);
    const int64_t q2[] = {b1, b3};
    atr_ct_expect_ids(s, "acme", 9, 10, q2, 2);
    const int64_t q3[] = {b5};
    atr_ct_expect_ids(s, "acme", 30, 31, q3, 1);
    atr_ct_expect_ids(s, "acme", 31, 1000, NULL, 0);
    atr_ct_expect_ids(s, "acme", -1000, 0, NULL, 0);
    const int64_t all[] = {b1, b3, b2, b6, b4, b5};
    atr_ct_expect_ids(s, "acme", INT64_MIN, INT64_MAX, all, 6);

    /* metadata comes back as appended */
    struct atr_store_block_meta *rows = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, s, "acme", 30, 31, NULL, 10, CT_ERR));
    assert_int_equal(n, 1);
    struct atr_ct_block want;
    atr_ct_block(&want, b5, 30, 30, "tk");
    assert_int_equal(rows[0].t_min_ms, 30);
    assert_int_equal(rows[0].t_max_ms, 30);
    assert_int_equal(rows[0].records, want.in.records);
    assert_int_equal(rows[0].size, strlen(want.sealed));
    assert_string_equal(rows[0].key_ref, "tk");
    assert_true(atr_ct_span_is(atr_buf_span(&rows[0].wrapped_dek), want.dek));
    atr_store_block_metas_free(rows, n);

    /* limit and cursor walk the same order one row at a time */
    struct atr_store_block_cursor cur;
    const struct atr_store_block_cursor *after = NULL;
    size_t walked = 0;
    for (;;) {
        CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, s, "acme", INT64_MIN, INT64_MAX, after, 1,
                                              CT_ERR));
        if (n == 0) {
            assert_null(rows);
            break;
        }
        assert_int_equal(n, 1);
        assert_true(walked < 6);
        assert_int_equal(rows[0].block_id, all[walked]);
        walked++;
        cur.t_min_ms = rows[0].t_min_ms;
        cur.block_id = rows[0].block_id;
        after = &cur;
        atr_store_block_metas_free(rows, n);
    }
    assert_int_equal(walked, 6);
    /* a page of 4, then the rest after its last row */
    CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, s, "acme", 0, 100, NULL, 4, CT_ERR));
    assert_int_equal(n, 4);
    cur.t_min_ms = rows[3].t_min_ms;
    cur.block_id = rows[3].block_id;
    atr_store_block_metas_free(rows, n);
    CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, s, "acme", 0, 100, &cur, 4, CT_ERR));
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].block_id, b4);
    assert_int_equal(rows[1].block_id, b5);
    atr_store_block_metas_free(rows, n);

    CT_CALL(ATR_E_INVALID, atr_store_blocks_list(&rows, &n, s, "acme", 5, 5, NULL, 4, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_blocks_list(&rows, &n, s, "acme", 6, 5, NULL, 4, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_blocks_list(&rows, &n, s, "acme", 0, 5, NULL, 0, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_blocks_list(&rows, &n, s, "acme", 0, 5, NULL,
                                                 ATR_STORE_LIST_MAX + 1, CT_ERR));
}

static void atr_ct_block_rekey(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    atr_ct_create(s, "acme", 1);
    int64_t id = 0;
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&id, s, "acme", 1, CT_ERR));
    struct atr_ct_block b;
    atr_ct_block(&b, id, 0, 10, "reserve:7");
    CT_CALL(ATR_OK, atr_store_blocks_append(s, "acme", &b.in, 1, CT_ERR));

    struct atr_span dek2 = atr_span_str("tk-wrap(dek)");
    struct atr_span none = {NULL, 0};
    /* the blocks still under a reference are found by it (folding after a lock) */
    struct atr_store_block_meta *by = NULL;
    size_t nby = 0;
    CT_CALL(ATR_OK, atr_store_blocks_by_key_ref(&by, &nby, s, "acme", "reserve:7", 0, 10, CT_ERR));
    assert_int_equal(nby, 1);
    assert_int_equal(by[0].block_id, id);
    atr_store_block_metas_free(by, nby);
    CT_CALL(ATR_OK, atr_store_blocks_by_key_ref(&by, &nby, s, "acme", "reserve:7", id, 10, CT_ERR));
    assert_int_equal(nby, 0);
    CT_CALL(ATR_OK, atr_store_blocks_by_key_ref(&by, &nby, s, "other", "reserve:7", 0, 10, CT_ERR));
    assert_int_equal(nby, 0);
    CT_CALL(ATR_E_INVALID, atr_store_blocks_by_key_ref(&by, &nby, s, "acme", "", 0, 10, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_blocks_by_key_ref(&by, &nby, s, "acme", "tk", -1, 10, CT_ERR));
    CT_CALL(ATR_OK, atr_store_block_rekey(s, "acme", id, "reserve:7", "tk", dek2, none, CT_ERR));
    CT_CALL(ATR_OK, atr_store_blocks_by_key_ref(&by, &nby, s, "acme", "reserve:7", 0, 10, CT_ERR));
    assert_int_equal(nby, 0);
    /* a second folder with the old reference loses */
    CT_CALL(ATR_E_CONFLICT,
            atr_store_block_rekey(s, "acme", id, "reserve:7", "tk", dek2, none, CT_ERR));
    CT_CALL(ATR_E_NOT_FOUND,
            atr_store_block_rekey(s, "acme", id + 1000, "tk", "tk", dek2, none, CT_ERR));
    CT_CALL(ATR_E_NOT_FOUND, atr_store_block_rekey(s, "other", id, "tk", "tk", dek2, none, CT_ERR));

    struct atr_store_block_meta *rows = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, s, "acme", 0, 100, NULL, 10, CT_ERR));
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].key_ref, "tk");
    assert_true(atr_ct_span_is(atr_buf_span(&rows[0].wrapped_dek), "tk-wrap(dek)"));
    assert_int_equal(rows[0].size, strlen(b.sealed)); /* bytes kept */
    atr_store_block_metas_free(rows, n);
    struct atr_buf out;
    atr_buf_init(&out, 1 << 16);
    CT_CALL(ATR_OK, atr_store_block_read(&out, s, "acme", id, CT_ERR));
    assert_true(atr_ct_span_is(atr_buf_span(&out), b.sealed));

    /* re-keying with re-sealed bytes replaces them and the size */
    struct atr_span resealed = atr_span_str("re-sealed bytes, longer than before");
    CT_CALL(ATR_OK, atr_store_block_rekey(s, "acme", id, "tk", "tk:2", dek2, resealed, CT_ERR));
    atr_buf_reset(&out);
    CT_CALL(ATR_OK, atr_store_block_read(&out, s, "acme", id, CT_ERR));
    assert_true(atr_ct_span_is(atr_buf_span(&out), "re-sealed bytes, longer than before"));
    atr_buf_cleanup(&out);
    struct atr_store_stats st;
    CT_CALL(ATR_OK, atr_store_stats_get(&st, s, "acme", CT_ERR));
    assert_int_equal(st.sealed_bytes, resealed.len);
}

/* ---- audit ---- */

static int64_t atr_ct_audit(struct atr_store *s, const char *tenant, int64_t time_ms,
                            const char *action, const char *detail)
{
    struct atr_store_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.tenant, sizeof(ev.tenant), "%s", tenant);
    ev.time_ms = time_ms;
    snprintf(ev.actor, sizeof(ev.actor), "admin@%s", tenant[0] != '\0' ? tenant : "service");
    snprintf(ev.action, sizeof(ev.action), "%s", action);
    snprintf(ev.detail_json, sizeof(ev.detail_json), "%s", detail);
    int64_t id = 0;
    CT_CALL(ATR_OK, atr_store_audit_append(&id, s, &ev, CT_ERR));
    assert_true(id > 0);
    return id;
}

/* A state change and its audit event are stored together or not at all. */
static void atr_ct_update_audited(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    atr_ct_create(s, "acme", 1);
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "acme", CT_ERR));
    struct atr_store_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.tenant, sizeof(ev.tenant), "acme");
    snprintf(ev.actor, sizeof(ev.actor), "monitor");
    snprintf(ev.action, sizeof(ev.action), "encryption.lock");
    snprintf(ev.detail_json, sizeof(ev.detail_json), "{\"reason\":\"KeyDisabled\"}");
    t.state = ATR_STORE_STATE_LOCKED;
    int64_t gen = 0;
    CT_CALL(ATR_OK, atr_store_tenant_update_audited(&gen, s, &t, &ev, CT_ERR));
    assert_int_equal(gen, t.generation + 1);
    struct atr_store_audit_event *evs = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK, atr_store_audit_list(&evs, &n, s, "acme", 0, 10, CT_ERR));
    assert_int_equal(n, 1);
    assert_string_equal(evs[0].action, "encryption.lock");
    atr_free(evs);
    /* a lost compare-and-set stores neither the row nor the event */
    t.state = ATR_STORE_STATE_CUSTOMER;
    snprintf(ev.action, sizeof(ev.action), "encryption.restore");
    CT_CALL(ATR_E_CONFLICT, atr_store_tenant_update_audited(NULL, s, &t, &ev, CT_ERR));
    /* a bad event stores neither */
    t.generation = gen;
    ev.actor[0] = '\0';
    CT_CALL(ATR_E_INVALID, atr_store_tenant_update_audited(NULL, s, &t, &ev, CT_ERR));
    CT_CALL(ATR_OK, atr_store_audit_list(&evs, &n, s, "acme", 0, 10, CT_ERR));
    assert_int_equal(n, 1);
    atr_free(evs);
    struct atr_store_tenant back;
    CT_CALL(ATR_OK, atr_store_tenant_get(&back, s, "acme", CT_ERR));
    assert_int_equal(back.state, ATR_STORE_STATE_LOCKED);
    assert_int_equal(back.generation, gen);
    atr_store_tenant_cleanup(&back);
    /* without an event it is a plain update */
    CT_CALL(ATR_OK, atr_store_tenant_update_audited(NULL, s, &t, NULL, CT_ERR));
    atr_store_tenant_cleanup(&t);
}

static void atr_ct_audit_order_and_cursor(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char action[32];
        snprintf(action, sizeof(action), "step.%d", i);
        ids[i] = atr_ct_audit(s, "acme", 1000 + i, action, "{\"kid\":\"k/1\"}");
        if (i > 0)
            assert_true(ids[i] > ids[i - 1]);
        if (i == 1)
            (void)atr_ct_audit(s, "other", 5, "x", "");
    }
    (void)atr_ct_audit(s, "", 7, "srk.rotate", "");

    struct atr_store_audit_event *ev = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK, atr_store_audit_list(&ev, &n, s, "acme", 0, 100, CT_ERR));
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        char action[32];
        snprintf(action, sizeof(action), "step.%d", (int)(4 - i));
        assert_int_equal(ev[i].id, ids[4 - i]);
        assert_string_equal(ev[i].action, action);
        assert_string_equal(ev[i].tenant, "acme");
        assert_string_equal(ev[i].actor, "admin@acme");
        assert_int_equal(ev[i].time_ms, 1000 + (int64_t)(4 - i));
        assert_string_equal(ev[i].detail_json, "{\"kid\":\"k/1\"}");
    }
    atr_free(ev);

    /* pages of 2 with the before-id cursor */
    int64_t before = 0;
    size_t total = 0;
    for (int page = 0; page < 3; page++) {
        CT_CALL(ATR_OK, atr_store_audit_list(&ev, &n, s, "acme", before, 2, CT_ERR));
        assert_int_equal(n, page < 2 ? 2 : 1);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(ev[i].id, ids[4 - total - i]);
        total += n;
        before = ev[n - 1].id;
        atr_free(ev);
    }
    assert_int_equal(total, 5);
    CT_CALL(ATR_OK, atr_store_audit_list(&ev, &n, s, "acme", before, 2, CT_ERR));
    assert_int_equal(n, 0);
    assert_null(ev);

    /* every event, service-wide ones included */
    CT_CALL(ATR_OK, atr_store_audit_list(&ev, &n, s, NULL, 0, 100, CT_ERR));
    assert_int_equal(n, 7);
    assert_string_equal(ev[0].tenant, "");
    assert_string_equal(ev[0].action, "srk.rotate");
    assert_string_equal(ev[0].detail_json, "{}");
    for (size_t i = 1; i < n; i++)
        assert_true(ev[i].id < ev[i - 1].id);
    atr_free(ev);
}

/* ---- persistence ---- */

static void atr_ct_reopen_persists(void **state)
{
    struct atr_ct_fixture *fx = *state;
    atr_ct_create(fx->s, "acme", 1);
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, fx->s, "acme", CT_ERR));
    t.state = ATR_STORE_STATE_LOCKED;
    snprintf(t.reason, sizeof(t.reason), "unwrapKey denied");
    CT_CALL(ATR_OK, atr_store_tenant_update(NULL, fx->s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
    int64_t b1 = atr_ct_append1(fx->s, "acme", 0, 10);
    int64_t b2 = atr_ct_append1(fx->s, "acme", 5, 20);
    int64_t a1 = atr_ct_audit(fx->s, "acme", 3, "encryption.lock", "");

    atr_store_close(fx->s);
    fx->s = atr_ct_open(fx->loc);

    CT_CALL(ATR_OK, atr_store_tenant_get(&t, fx->s, "acme", CT_ERR));
    assert_int_equal(t.state, ATR_STORE_STATE_LOCKED);
    assert_string_equal(t.reason, "unwrapKey denied");
    assert_int_equal(t.generation, ATR_STORE_GENERATION_FIRST + 1);
    assert_true(atr_ct_span_is(atr_buf_span(&t.srk_blob), "srk-wrap(tk of acme)"));
    atr_store_tenant_cleanup(&t);
    const int64_t want[] = {b1, b2};
    atr_ct_expect_ids(fx->s, "acme", 0, 100, want, 2);
    struct atr_buf out;
    atr_buf_init(&out, 1 << 16);
    CT_CALL(ATR_OK, atr_store_block_read(&out, fx->s, "acme", b2, CT_ERR));
    struct atr_ct_block wb;
    atr_ct_block(&wb, b2, 5, 20, "tk");
    assert_true(atr_ct_span_is(atr_buf_span(&out), wb.sealed));
    atr_buf_cleanup(&out);
    struct atr_store_audit_event *ev = NULL;
    size_t n = 0;
    CT_CALL(ATR_OK, atr_store_audit_list(&ev, &n, fx->s, "acme", 0, 10, CT_ERR));
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, a1);
    atr_free(ev);
    /* ids keep increasing across a restart */
    int64_t b3 = atr_ct_append1(fx->s, "acme", 0, 1);
    assert_true(b3 > b2);
    int64_t a2 = atr_ct_audit(fx->s, "acme", 4, "x", "");
    assert_true(a2 > a1);
}

/* ---- concurrency ---- */

enum { ATR_CT_THREADS = 4, ATR_CT_ROUNDS = 20 };

struct atr_ct_worker {
    struct atr_store *s;
    int index;
    int failures;
    int conflicts;
};

/* Appends 2 blocks per round and bumps a per-thread counter with a CAS loop. */
static void *atr_ct_worker_main(void *arg)
{
    struct atr_ct_worker *w = arg;
    for (int r = 0; r < ATR_CT_ROUNDS; r++) {
        int64_t first = 0;
        if (atr_store_block_ids_reserve(&first, w->s, "shared", 2, NULL) != ATR_OK) {
            w->failures++;
            continue;
        }
        struct atr_ct_block b[2];
        atr_ct_block(&b[0], first, w->index, 100 + r, "tk");
        atr_ct_block(&b[1], first + 1, w->index, 100 + r, "tk");
        struct atr_store_block_in in[2] = {b[0].in, b[1].in};
        if (atr_store_blocks_append(w->s, "shared", in, 2, NULL) != ATR_OK)
            w->failures++;
        for (;;) {
            struct atr_store_tenant t;
            if (atr_store_tenant_get(&t, w->s, "shared", NULL) != ATR_OK) {
                w->failures++;
                break;
            }
            t.updated_ms = r;
            atr_status rc = atr_store_tenant_update(NULL, w->s, &t, NULL);
            atr_store_tenant_cleanup(&t);
            if (rc == ATR_OK)
                break;
            if (rc != ATR_E_CONFLICT) {
                w->failures++;
                break;
            }
            w->conflicts++;
        }
    }
    return NULL;
}

static void atr_ct_concurrent(void **state)
{
    struct atr_ct_fixture *fx = *state;
    atr_ct_create(fx->s, "shared", 1);
    pthread_t th[ATR_CT_THREADS];
    struct atr_ct_worker w[ATR_CT_THREADS];
    for (int i = 0; i < ATR_CT_THREADS; i++) {
        w[i] = (struct atr_ct_worker){fx->s, i, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, atr_ct_worker_main, &w[i]), 0);
    }
    for (int i = 0; i < ATR_CT_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < ATR_CT_THREADS; i++)
        assert_int_equal(w[i].failures, 0);

    enum { TOTAL = ATR_CT_THREADS * ATR_CT_ROUNDS * 2 };
    assert_int_equal(atr_ct_block_count(fx->s, "shared"), TOTAL);
    /* every block is listed once, ids unique */
    int64_t ids[TOTAL];
    size_t got = 0;
    struct atr_store_block_cursor cur;
    const struct atr_store_block_cursor *after = NULL;
    for (;;) {
        struct atr_store_block_meta *rows = NULL;
        size_t n = 0;
        CT_CALL(ATR_OK, atr_store_blocks_list(&rows, &n, fx->s, "shared", INT64_MIN, INT64_MAX,
                                              after, 37, CT_ERR));
        for (size_t i = 0; i < n; i++) {
            assert_true(got < TOTAL);
            ids[got++] = rows[i].block_id;
        }
        if (n < 37) {
            atr_store_block_metas_free(rows, n);
            break;
        }
        cur.t_min_ms = rows[n - 1].t_min_ms;
        cur.block_id = rows[n - 1].block_id;
        after = &cur;
        atr_store_block_metas_free(rows, n);
    }
    assert_int_equal(got, TOTAL);
    for (size_t i = 0; i < got; i++)
        for (size_t j = i + 1; j < got; j++)
            assert_true(ids[i] != ids[j]);
    /* no update was lost: every successful CAS added exactly one */
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, fx->s, "shared", CT_ERR));
    assert_int_equal(t.generation, ATR_STORE_GENERATION_FIRST + ATR_CT_THREADS * ATR_CT_ROUNDS);
    atr_store_tenant_cleanup(&t);
}

/* ---- argument checks ---- */

static void atr_ct_bad_arguments(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    atr_ct_create(s, "acme", 1);
    static const char *const bad_ids[] = {
        "",
        "a b",
        "a/b",
        "\xc3\xbc",
        "x'; DROP TABLE tenants; --",
        "0123456789012345678901234567890123456789012345678901234567890123X", /* 65 */
    };
    assert_true(atr_store_tenant_id_ok(
        "0123456789012345678901234567890123456789012345678901234567890123")); /* 64 */
    assert_true(atr_store_tenant_id_ok("A-z_0.9"));
    struct atr_store_tenant t;
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_ids); i++) {
        assert_false(atr_store_tenant_id_ok(bad_ids[i]));
        CT_CALL(ATR_E_INVALID, atr_store_tenant_get(&t, s, bad_ids[i], CT_ERR));
        int64_t id = 0;
        CT_CALL(ATR_E_INVALID, atr_store_block_ids_reserve(&id, s, bad_ids[i], 1, CT_ERR));
        struct atr_store_stats st;
        CT_CALL(ATR_E_INVALID, atr_store_stats_get(&st, s, bad_ids[i], CT_ERR));
    }
    CT_CALL(ATR_E_INVALID, atr_store_tenant_get(&t, s, NULL, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_tenant_get(&t, NULL, "acme", CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, NULL, CT_ERR));

    /* rows: each broken field on its own */
    atr_ct_tenant(&t, "new-one", 1);
    t.state = (atr_store_state)0;
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR));
    t.state = (atr_store_state)(ATR_STORE_STATE_MAX + 1);
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR));
    t.state = ATR_STORE_STATE_MANAGED;
    memset(t.reason, 'x', sizeof(t.reason)); /* no terminating NUL */
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR));
    t.reason[0] = '\0';
    t.srk_version = -1;
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR));
    t.srk_version = 1;
    atr_ct_blob(&t.customer_blob, "ck-wrap");
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR)); /* blob without kid */
    atr_buf_reset(&t.customer_blob);
    snprintf(t.customer_kid, sizeof(t.customer_kid), "https://v/keys/k/1");
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR)); /* kid without blob */
    t.customer_kid[0] = '\0';
    atr_buf_reset(&t.srk_blob);
    CT_CALL(ATR_E_INVALID, atr_store_tenant_create(s, &t, CT_ERR)); /* no SRK layer */
    atr_ct_blob(&t.srk_blob, "srk");
    t.generation = 0;
    CT_CALL(ATR_E_INVALID, atr_store_tenant_update(NULL, s, &t, CT_ERR));
    atr_store_tenant_cleanup(&t);
    CT_CALL(ATR_E_NOT_FOUND, atr_store_tenant_get(&t, s, "new-one", CT_ERR));

    struct atr_store_tenant *rows = NULL;
    size_t n = 0;
    CT_CALL(ATR_E_INVALID, atr_store_tenant_list(&rows, &n, s, NULL, 0, CT_ERR));
    CT_CALL(ATR_E_INVALID,
            atr_store_tenant_list(&rows, &n, s, NULL, ATR_STORE_LIST_MAX + 1, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_tenant_list(&rows, &n, s, "a b", 10, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_tenant_list(NULL, &n, s, NULL, 10, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_tenant_rewrap_srk(NULL, s, NULL, NULL, 0, CT_ERR));

    /* blocks */
    int64_t id = 0;
    CT_CALL(ATR_E_INVALID, atr_store_block_ids_reserve(&id, s, "acme", 0, CT_ERR));
    CT_CALL(ATR_E_INVALID,
            atr_store_block_ids_reserve(&id, s, "acme", ATR_STORE_APPEND_MAX + 1, CT_ERR));
    CT_CALL(ATR_OK, atr_store_block_ids_reserve(&id, s, "acme", 1, CT_ERR));
    struct atr_ct_block b;
    atr_ct_block(&b, id, 0, 1, "tk");
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &b.in, 0, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", NULL, 1, CT_ERR));
    struct atr_store_block_in in = b.in;
    in.key_ref = "has space";
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &in, 1, CT_ERR));
    in.key_ref = "";
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &in, 1, CT_ERR));
    in = b.in;
    in.records = -1;
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &in, 1, CT_ERR));
    in = b.in;
    in.sealed.len = 0;
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &in, 1, CT_ERR));
    in = b.in;
    in.wrapped_dek.ptr = NULL;
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &in, 1, CT_ERR));
    in = b.in;
    in.block_id = 0;
    CT_CALL(ATR_E_INVALID, atr_store_blocks_append(s, "acme", &in, 1, CT_ERR));
    assert_int_equal(atr_ct_block_count(s, NULL), 0);
    struct atr_buf out;
    atr_buf_init(&out, 1024);
    CT_CALL(ATR_E_INVALID, atr_store_block_read(&out, s, "acme", 0, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_block_read(NULL, s, "acme", 1, CT_ERR));
    atr_buf_cleanup(&out);
    struct atr_span dek = atr_span_str("dek");
    struct atr_span none = {NULL, 0};
    CT_CALL(ATR_E_INVALID, atr_store_block_rekey(s, "acme", id, "tk", "", dek, none, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_block_rekey(s, "acme", id, NULL, "tk", dek, none, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_block_rekey(s, "acme", id, "tk", "tk", none, none, CT_ERR));

    /* audit */
    struct atr_store_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.tenant, sizeof(ev.tenant), "acme");
    snprintf(ev.action, sizeof(ev.action), "x");
    CT_CALL(ATR_E_INVALID, atr_store_audit_append(NULL, s, &ev, CT_ERR)); /* no actor */
    snprintf(ev.actor, sizeof(ev.actor), "me");
    snprintf(ev.tenant, sizeof(ev.tenant), "no way");
    CT_CALL(ATR_E_INVALID, atr_store_audit_append(NULL, s, &ev, CT_ERR));
    snprintf(ev.tenant, sizeof(ev.tenant), "acme");
    memset(ev.detail_json, '{', sizeof(ev.detail_json));
    CT_CALL(ATR_E_INVALID, atr_store_audit_append(NULL, s, &ev, CT_ERR));
    struct atr_store_audit_event *evs = NULL;
    CT_CALL(ATR_E_INVALID, atr_store_audit_list(&evs, &n, s, "acme", -1, 10, CT_ERR));
    CT_CALL(ATR_E_INVALID, atr_store_audit_list(&evs, &n, s, "acme", 0, 0, CT_ERR));
    CT_CALL(ATR_OK, atr_store_audit_list(&evs, &n, s, NULL, 0, 10, CT_ERR));
    assert_int_equal(n, 0);
}

/* ---- out of memory ---- */

/*
 * Runs @p op with the k-th allocation failing, k = 1, 2, ... until it
 * succeeds: every failure must be ATR_E_NOMEM with nothing handed out (the
 * op checks that), and the leak checker of the sanitizer build sees every
 * path.
 */
struct atr_ct_oom {
    struct atr_store *s;
    int64_t block_id; /* a block of "t-00" */
};

typedef atr_status (*atr_ct_op)(const struct atr_ct_oom *c, int *handed_out);

static void atr_ct_each_failure(const struct atr_ct_oom *c, atr_ct_op op, const char *what)
{
    int failures = 0;
    for (unsigned long k = 1; k < 10000; k++) {
        int handed_out = -1;
        atr_alloc_fail_after(k);
        atr_status rc = op(c, &handed_out);
        atr_alloc_fail_reset();
        if (rc == ATR_OK)
            break;
        if (rc != ATR_E_NOMEM)
            fail_msg("%s: allocation %lu failing gave %s", what, k, atr_status_name(rc));
        if (handed_out != 0)
            fail_msg("%s: something was handed out after a failure", what);
        failures++;
    }
    if (failures == 0)
        fail_msg("%s: no allocation was ever made", what);
}

static atr_status atr_ct_op_tenant_list(const struct atr_ct_oom *c, int *handed_out)
{
    struct atr_store *s = c->s;
    struct atr_store_tenant *rows = NULL;
    size_t n = 99;
    atr_status rc = atr_store_tenant_list(&rows, &n, s, NULL, 100, NULL);
    *handed_out = rows != NULL || n != 0;
    if (rc == ATR_OK && n != 20)
        fail_msg("tenant list: %zu rows", n);
    atr_store_tenants_free(rows, n);
    return rc;
}

static atr_status atr_ct_op_tenant_get(const struct atr_ct_oom *c, int *handed_out)
{
    struct atr_store *s = c->s;
    struct atr_store_tenant t;
    atr_status rc = atr_store_tenant_get(&t, s, "t-07", NULL);
    *handed_out = t.srk_blob.ptr != NULL || t.customer_blob.ptr != NULL;
    atr_store_tenant_cleanup(&t);
    return rc;
}

static atr_status atr_ct_op_blocks_list(const struct atr_ct_oom *c, int *handed_out)
{
    struct atr_store *s = c->s;
    struct atr_store_block_meta *rows = NULL;
    size_t n = 99;
    atr_status rc =
        atr_store_blocks_list(&rows, &n, s, "t-00", INT64_MIN, INT64_MAX, NULL, 100, NULL);
    *handed_out = rows != NULL || n != 0;
    if (rc == ATR_OK && n != 20)
        fail_msg("block list: %zu rows", n);
    atr_store_block_metas_free(rows, n);
    return rc;
}

static atr_status atr_ct_op_block_read(const struct atr_ct_oom *c, int *handed_out)
{
    struct atr_store *s = c->s;
    struct atr_buf out;
    atr_buf_init(&out, 1 << 16);
    atr_status rc = atr_store_block_read(&out, s, "t-00", c->block_id, NULL);
    *handed_out = rc != ATR_OK && out.len != 0;
    atr_buf_cleanup(&out);
    return rc;
}

static atr_status atr_ct_op_audit_list(const struct atr_ct_oom *c, int *handed_out)
{
    struct atr_store *s = c->s;
    struct atr_store_audit_event *ev = NULL;
    size_t n = 99;
    atr_status rc = atr_store_audit_list(&ev, &n, s, NULL, 0, 100, NULL);
    *handed_out = ev != NULL || n != 0;
    if (rc == ATR_OK && n != 20)
        fail_msg("audit list: %zu rows", n);
    atr_free(ev);
    return rc;
}

static atr_status atr_ct_op_rewrap(const struct atr_ct_oom *c, int *handed_out)
{
    struct atr_store *s = c->s;
    struct atr_ct_rewrap r = {0};
    size_t n = 99;
    atr_status rc = atr_store_tenant_rewrap_srk(&n, s, atr_ct_rewrap_fn, &r, 9, NULL);
    *handed_out = rc != ATR_OK && n != 0;
    return rc;
}

static void atr_ct_out_of_memory(void **state)
{
    struct atr_ct_fixture *fx = *state;
    struct atr_store *s = fx->s;
    struct atr_ct_oom c = {s, 0};
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t-%02d", i);
        atr_ct_create(s, id, i);
        int64_t b = atr_ct_append1(s, "t-00", i, i + 1);
        if (i == 0)
            c.block_id = b;
        (void)atr_ct_audit(s, id, i, "x", "");
    }
    atr_ct_each_failure(&c, atr_ct_op_tenant_list, "tenant list");
    atr_ct_each_failure(&c, atr_ct_op_tenant_get, "tenant get");
    atr_ct_each_failure(&c, atr_ct_op_blocks_list, "block list");
    atr_ct_each_failure(&c, atr_ct_op_block_read, "block read");
    atr_ct_each_failure(&c, atr_ct_op_audit_list, "audit list");
    /* a re-wrap that fails half-way changes nothing; the last try changes all */
    atr_ct_each_failure(&c, atr_ct_op_rewrap, "re-wrap");
    struct atr_store_tenant t;
    CT_CALL(ATR_OK, atr_store_tenant_get(&t, s, "t-19", CT_ERR));
    assert_int_equal(t.srk_version, 2);
    assert_int_equal(t.generation, ATR_STORE_GENERATION_FIRST + 1);
    atr_store_tenant_cleanup(&t);

    /* opening the store */
    atr_store_close(fx->s);
    fx->s = NULL;
    int failures = 0;
    for (unsigned long k = 1; k < 1000; k++) {
        struct atr_store *o = NULL;
        atr_alloc_fail_after(k);
        atr_status rc = atr_store_open(&o, fx->loc, NULL, NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            fx->s = o;
            break;
        }
        assert_int_equal(rc, ATR_E_NOMEM);
        assert_null(o);
        failures++;
    }
    assert_non_null(fx->s);
    assert_true(failures > 0);
}

/* ---- the runner ---- */

#define ATR_CT_TEST(f)                                                                             \
    cmocka_unit_test_prestate_setup_teardown(f, atr_ct_setup, atr_ct_teardown, (void *)engine)

/**
 * Runs the storage contract against @p engine; returns the number of failed
 * tests (cmocka's group result).
 */
static int atr_store_contract_run(const struct atr_store_contract_engine *engine)
{
    const struct CMUnitTest tests[] = {
        ATR_CT_TEST(atr_ct_tenant_crud),
        ATR_CT_TEST(atr_ct_tenant_list_and_counts),
        ATR_CT_TEST(atr_ct_rewrap_srk),
        ATR_CT_TEST(atr_ct_blocks_append_atomic),
        ATR_CT_TEST(atr_ct_blocks_append_tenants),
        ATR_CT_TEST(atr_ct_blocks_time_query),
        ATR_CT_TEST(atr_ct_block_rekey),
        ATR_CT_TEST(atr_ct_audit_order_and_cursor),
        ATR_CT_TEST(atr_ct_update_audited),
        ATR_CT_TEST(atr_ct_reopen_persists),
        ATR_CT_TEST(atr_ct_concurrent),
        ATR_CT_TEST(atr_ct_bad_arguments),
        ATR_CT_TEST(atr_ct_out_of_memory),
    };
    char name[128];
    snprintf(name, sizeof(name), "store contract (%s)", engine->name);
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}

#endif /* ATR_TESTS_UNIT_STORE_CONTRACT_H */
