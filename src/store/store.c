/* SPDX-License-Identifier: Apache-2.0 */
#include "store/store.h"

#include <string.h>

#include "base/alloc.h"
#include "store/store_engine.h"

struct atr_store {
    const struct atr_store_vt *vt;
    void *impl;
};

static const char *const state_names[ATR_STORE_STATE_MAX + 1] = {
    [ATR_STORE_STATE_MANAGED] = "managed",   [ATR_STORE_STATE_ENABLING] = "enabling",
    [ATR_STORE_STATE_CUSTOMER] = "customer", [ATR_STORE_STATE_DEGRADED] = "degraded",
    [ATR_STORE_STATE_LOCKED] = "locked",     [ATR_STORE_STATE_DISABLING] = "disabling",
};

/* ---- argument checks (messages name the argument, never its value) ---- */

static atr_status bad(struct atr_err *err, const char *what)
{
    return atr_err_set(err, ATR_E_INVALID, "store: invalid %s", what);
}

/* 1 when the fixed array @p s of @p cap bytes holds a NUL-terminated string. */
static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int atr_store_tenant_id_ok(const char *id)
{
    if (id == NULL)
        return 0;
    size_t n = 0;
    for (; id[n] != '\0'; n++)
        if (n >= ATR_STORE_TENANT_ID_MAX || !id_char(id[n]))
            return 0;
    return n > 0;
}

/* A key reference: 1..ATR_STORE_KEY_REF_MAX of [A-Za-z0-9._:-]. */
static int key_ref_ok(const char *ref)
{
    if (ref == NULL)
        return 0;
    size_t n = 0;
    for (; ref[n] != '\0'; n++)
        if (n >= ATR_STORE_KEY_REF_MAX || !(id_char(ref[n]) || ref[n] == ':'))
            return 0;
    return n > 0;
}

static int span_ok(struct atr_span s, size_t max)
{
    return s.ptr != NULL && s.len > 0 && s.len <= max;
}

static int limit_ok(size_t limit)
{
    return limit >= 1 && limit <= ATR_STORE_LIST_MAX;
}

const char *atr_store_state_name(atr_store_state st)
{
    switch (st) {
    case ATR_STORE_STATE_MANAGED:
    case ATR_STORE_STATE_ENABLING:
    case ATR_STORE_STATE_CUSTOMER:
    case ATR_STORE_STATE_DEGRADED:
    case ATR_STORE_STATE_LOCKED:
    case ATR_STORE_STATE_DISABLING:
        return state_names[st];
    default:
        return NULL; /* fail closed: no name for a value outside the enum */
    }
}

atr_status atr_store_state_parse(atr_store_state *out, const char *name)
{
    if (out == NULL || name == NULL)
        return ATR_E_INVALID;
    for (int i = 1; i <= ATR_STORE_STATE_MAX; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (atr_store_state)i;
            return ATR_OK;
        }
    }
    return ATR_E_INVALID;
}

static atr_status check_tenant_row(const struct atr_store_tenant *t, struct atr_err *err)
{
    if (t == NULL)
        return bad(err, "tenant row");
    if (!terminated(t->id, sizeof(t->id)) || !atr_store_tenant_id_ok(t->id))
        return bad(err, "tenant id");
    if (atr_store_state_name(t->state) == NULL)
        return bad(err, "tenant state");
    if (!terminated(t->reason, sizeof(t->reason)))
        return bad(err, "state reason");
    if (!terminated(t->key_uri, sizeof(t->key_uri)))
        return bad(err, "key URI");
    if (!terminated(t->customer_kid, sizeof(t->customer_kid)))
        return bad(err, "customer key id");
    if (!terminated(t->extra_json, sizeof(t->extra_json)))
        return bad(err, "extras");
    /* customer mode keeps only CK-wrap(SRK-wrap(TK)): the SRK blob is then empty */
    if (t->srk_blob.len == 0 ? t->customer_blob.len == 0
                             : !span_ok(atr_buf_span(&t->srk_blob), ATR_STORE_WRAPPED_MAX))
        return bad(err, "SRK blob");
    if (t->srk_version < 0)
        return bad(err, "SRK version");
    if (t->customer_blob.len > ATR_STORE_WRAPPED_MAX ||
        (t->customer_blob.len > 0 && t->customer_blob.ptr == NULL))
        return bad(err, "customer blob");
    if ((t->customer_blob.len > 0) != (t->customer_kid[0] != '\0'))
        return atr_err_set(err, ATR_E_INVALID, "store: a customer blob and its key id go together");
    return ATR_OK;
}

static atr_status check_tenant_arg(const char *tenant, struct atr_err *err)
{
    if (!atr_store_tenant_id_ok(tenant))
        return bad(err, "tenant id");
    return ATR_OK;
}

/* ---- lifecycle ---- */

/* Length of a URI scheme at the start of @p loc ("postgres" in "postgres://"), or 0. */
static size_t scheme_len(const char *loc)
{
    size_t n = 0;
    char c = loc[0];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
        return 0;
    for (n = 1; loc[n] != '\0' && loc[n] != ':'; n++) {
        c = loc[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return 0;
    }
    /* a single letter before ':' is not taken as a scheme */
    return loc[n] == ':' && n >= 2 ? n : 0;
}

/* 1 when @p loc is a PostgreSQL connection URI (the two prefixes libpq accepts). */
static int pg_location(const char *loc)
{
    static const char pg1[] = "postgres://", pg2[] = "postgresql://";
    return strncmp(loc, pg1, sizeof(pg1) - 1) == 0 || strncmp(loc, pg2, sizeof(pg2) - 1) == 0;
}

atr_status atr_store_open(struct atr_store **out, const char *location,
                          const struct atr_store_opts *opts, struct atr_err *err)
{
    if (out == NULL)
        return bad(err, "output pointer");
    *out = NULL;
    if (location == NULL || location[0] == '\0')
        return bad(err, "storage location (empty)");
    const char *path = location;
    static const char sqlite_prefix[] = "sqlite:";
    size_t sl = scheme_len(location);
    int pg = pg_location(location);
    if (strncmp(location, sqlite_prefix, sizeof(sqlite_prefix) - 1) == 0) {
        path = location + sizeof(sqlite_prefix) - 1;
    } else if (sl > 0 && !pg) {
        /* only the scheme is echoed: a connection string may hold a password */
        return atr_err_set(err, ATR_E_UNSUPPORTED, "storage engine not built: %.*s", (int)sl,
                           location);
    }
    if (path[0] == '\0')
        return bad(err, "storage location (empty path)");
    unsigned busy = opts != NULL && opts->busy_timeout_ms != 0 ? opts->busy_timeout_ms
                                                               : ATR_STORE_BUSY_TIMEOUT_MS;
    struct atr_store *s = atr_calloc(1, sizeof(*s));
    if (s == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "store: out of memory");
    atr_status rc = pg ? atr_store_pg_open(&s->vt, &s->impl, location, busy, err)
                       : atr_store_sqlite_open(&s->vt, &s->impl, path, busy, err);
    if (rc == ATR_OK && (s->vt == NULL || s->vt->vt_size < sizeof(struct atr_store_vt))) {
        if (s->vt != NULL)
            s->vt->close(s->impl);
        rc = atr_err_set(err, ATR_E_INTERNAL, "store: engine built against another interface");
    }
    if (rc != ATR_OK) {
        atr_free(s);
        return rc;
    }
    *out = s;
    return ATR_OK;
}

void atr_store_close(struct atr_store *s)
{
    if (s == NULL)
        return;
    s->vt->close(s->impl);
    atr_free(s);
}

const char *atr_store_engine_name(const struct atr_store *s)
{
    return s != NULL ? s->vt->name : "none";
}

/* ---- tenants ---- */

void atr_store_tenant_init(struct atr_store_tenant *t)
{
    memset(t, 0, sizeof(*t));
    atr_buf_init(&t->srk_blob, ATR_STORE_WRAPPED_MAX);
    atr_buf_init(&t->customer_blob, ATR_STORE_WRAPPED_MAX);
}

void atr_store_tenant_cleanup(struct atr_store_tenant *t)
{
    if (t == NULL)
        return;
    atr_buf_cleanup(&t->srk_blob);
    atr_buf_cleanup(&t->customer_blob);
}

void atr_store_tenants_free(struct atr_store_tenant *rows, size_t n)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        atr_store_tenant_cleanup(&rows[i]);
    atr_free(rows);
}

atr_status atr_store_tenant_create(struct atr_store *s, const struct atr_store_tenant *t,
                                   struct atr_err *err)
{
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_row(t, err));
    return s->vt->tenant_create(s->impl, t, err);
}

atr_status atr_store_tenant_get(struct atr_store_tenant *out, struct atr_store *s, const char *id,
                                struct atr_err *err)
{
    if (out == NULL)
        return bad(err, "output row");
    atr_store_tenant_init(out);
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_arg(id, err));
    atr_status rc = s->vt->tenant_get(out, s->impl, id, err);
    if (rc != ATR_OK) {
        atr_store_tenant_cleanup(out);
        atr_store_tenant_init(out);
    }
    return rc;
}

static atr_status check_event(const struct atr_store_audit_event *ev, struct atr_err *err)
{
    if (!terminated(ev->tenant, sizeof(ev->tenant)) ||
        (ev->tenant[0] != '\0' && !atr_store_tenant_id_ok(ev->tenant)))
        return bad(err, "tenant id");
    if (!terminated(ev->actor, sizeof(ev->actor)) || ev->actor[0] == '\0')
        return bad(err, "actor");
    if (!terminated(ev->action, sizeof(ev->action)) || ev->action[0] == '\0')
        return bad(err, "action");
    if (!terminated(ev->detail_json, sizeof(ev->detail_json)))
        return bad(err, "detail");
    return ATR_OK;
}

atr_status atr_store_tenant_update_audited(int64_t *out_generation, struct atr_store *s,
                                           const struct atr_store_tenant *t,
                                           const struct atr_store_audit_event *ev,
                                           struct atr_err *err)
{
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_row(t, err));
    if (t->generation < ATR_STORE_GENERATION_FIRST || t->generation == INT64_MAX)
        return bad(err, "generation");
    if (ev != NULL)
        ATR_TRY(check_event(ev, err));
    int64_t gen = 0;
    atr_status rc = s->vt->tenant_update(&gen, s->impl, t, ev, err);
    if (rc == ATR_OK && out_generation != NULL)
        *out_generation = gen;
    return rc;
}

atr_status atr_store_tenant_update(int64_t *out_generation, struct atr_store *s,
                                   const struct atr_store_tenant *t, struct atr_err *err)
{
    return atr_store_tenant_update_audited(out_generation, s, t, NULL, err);
}

atr_status atr_store_tenant_list(struct atr_store_tenant **out, size_t *out_n, struct atr_store *s,
                                 const char *after_id, size_t limit, struct atr_err *err)
{
    if (out == NULL || out_n == NULL)
        return bad(err, "output pointer");
    *out = NULL;
    *out_n = 0;
    if (s == NULL)
        return bad(err, "store");
    if (after_id != NULL && after_id[0] != '\0' && !atr_store_tenant_id_ok(after_id))
        return bad(err, "after-id cursor");
    if (!limit_ok(limit))
        return bad(err, "limit");
    atr_status rc =
        s->vt->tenant_list(out, out_n, s->impl, after_id != NULL ? after_id : "", limit, err);
    if (rc == ATR_OK && *out_n > limit)
        atr_panic("store engine returned more rows than the limit");
    return rc;
}

atr_status atr_store_tenant_counts(struct atr_store_tenant_counts *out, struct atr_store *s,
                                   struct atr_err *err)
{
    if (out == NULL)
        return bad(err, "output pointer");
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return bad(err, "store");
    return s->vt->tenant_counts(out, s->impl, err);
}

/* Checks what the caller's re-wrap function hands back before the engine stores it. */
struct rewrap_check {
    atr_store_rewrap_fn fn;
    void *arg;
};

static atr_status rewrap_checked(struct atr_buf *out_blob, int32_t *out_version, void *arg,
                                 const char *tenant_id, struct atr_span old_blob,
                                 int32_t old_version, struct atr_err *err)
{
    const struct rewrap_check *c = arg;
    ATR_TRY(c->fn(out_blob, out_version, c->arg, tenant_id, old_blob, old_version, err));
    if (out_blob->len > ATR_STORE_WRAPPED_MAX)
        return bad(err, "re-wrapped SRK blob");
    if (out_blob->len > 0 && *out_version < 0)
        return bad(err, "re-wrapped SRK version");
    return ATR_OK;
}

atr_status atr_store_tenant_rewrap_srk(size_t *out_n, struct atr_store *s, atr_store_rewrap_fn fn,
                                       void *arg, int64_t now_ms, struct atr_err *err)
{
    if (out_n != NULL)
        *out_n = 0;
    if (s == NULL || fn == NULL)
        return bad(err, "store or re-wrap function");
    struct rewrap_check c = {fn, arg};
    size_t n = 0;
    atr_status rc = s->vt->tenant_rewrap_srk(&n, s->impl, rewrap_checked, &c, now_ms, err);
    if (rc == ATR_OK && out_n != NULL)
        *out_n = n;
    return rc;
}

/* ---- blocks ---- */

atr_status atr_store_block_ids_reserve(int64_t *out_first, struct atr_store *s, const char *tenant,
                                       size_t n, struct atr_err *err)
{
    if (out_first == NULL)
        return bad(err, "output pointer");
    *out_first = 0;
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_arg(tenant, err));
    if (n < 1 || n > ATR_STORE_APPEND_MAX)
        return bad(err, "number of block ids");
    atr_status rc = s->vt->block_ids_reserve(out_first, s->impl, tenant, n, err);
    if (rc == ATR_OK && *out_first < 1)
        atr_panic("store engine reserved a block id below 1");
    return rc;
}

static atr_status check_block_in(const struct atr_store_block_in *b, struct atr_err *err)
{
    if (b->block_id < 1)
        return bad(err, "block id");
    if (b->t_min_ms > b->t_max_ms)
        return bad(err, "block time range (t_min after t_max)");
    if (b->records < 0)
        return bad(err, "record count");
    if (!key_ref_ok(b->key_ref))
        return bad(err, "key reference");
    if (!span_ok(b->wrapped_dek, ATR_STORE_WRAPPED_MAX))
        return bad(err, "wrapped DEK");
    if (!span_ok(b->sealed, ATR_STORE_SEALED_MAX))
        return bad(err, "sealed block");
    if (b->tenant != NULL)
        ATR_TRY(check_tenant_arg(b->tenant, err));
    return ATR_OK;
}

atr_status atr_store_blocks_append(struct atr_store *s, const char *tenant,
                                   const struct atr_store_block_in *blocks, size_t n,
                                   struct atr_err *err)
{
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_arg(tenant, err));
    if (blocks == NULL || n < 1 || n > ATR_STORE_APPEND_MAX)
        return bad(err, "number of blocks");
    for (size_t i = 0; i < n; i++)
        ATR_TRY(check_block_in(&blocks[i], err));
    return s->vt->blocks_append(s->impl, tenant, blocks, n, err);
}

atr_status atr_store_blocks_list(struct atr_store_block_meta **out, size_t *out_n,
                                 struct atr_store *s, const char *tenant, int64_t from_ms,
                                 int64_t to_ms, const struct atr_store_block_cursor *after,
                                 size_t limit, struct atr_err *err)
{
    if (out == NULL || out_n == NULL)
        return bad(err, "output pointer");
    *out = NULL;
    *out_n = 0;
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_arg(tenant, err));
    if (from_ms >= to_ms)
        return bad(err, "time range (from must be before to)");
    if (!limit_ok(limit))
        return bad(err, "limit");
    atr_status rc =
        s->vt->blocks_list(out, out_n, s->impl, tenant, from_ms, to_ms, after, limit, err);
    if (rc == ATR_OK && *out_n > limit)
        atr_panic("store engine returned more rows than the limit");
    return rc;
}

atr_status atr_store_blocks_by_key_ref(struct atr_store_block_meta **out, size_t *out_n,
                                       struct atr_store *s, const char *tenant, const char *key_ref,
                                       int64_t after_id, size_t limit, struct atr_err *err)
{
    if (out == NULL || out_n == NULL)
        return bad(err, "output pointer");
    *out = NULL;
    *out_n = 0;
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_arg(tenant, err));
    if (!key_ref_ok(key_ref))
        return bad(err, "key reference");
    if (after_id < 0)
        return bad(err, "block id");
    if (!limit_ok(limit))
        return bad(err, "limit");
    atr_status rc =
        s->vt->blocks_by_key_ref(out, out_n, s->impl, tenant, key_ref, after_id, limit, err);
    if (rc == ATR_OK && *out_n > limit)
        atr_panic("store engine returned more rows than the limit");
    return rc;
}

void atr_store_block_metas_free(struct atr_store_block_meta *rows, size_t n)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        atr_buf_cleanup(&rows[i].wrapped_dek);
    atr_free(rows);
}

atr_status atr_store_block_read(struct atr_buf *out_sealed, struct atr_store *s, const char *tenant,
                                int64_t block_id, struct atr_err *err)
{
    if (out_sealed == NULL || s == NULL)
        return bad(err, "output buffer or store");
    ATR_TRY(check_tenant_arg(tenant, err));
    if (block_id < 1)
        return bad(err, "block id");
    return s->vt->block_read(out_sealed, s->impl, tenant, block_id, err);
}

atr_status atr_store_block_rekey(struct atr_store *s, const char *tenant, int64_t block_id,
                                 const char *old_key_ref, const char *new_key_ref,
                                 struct atr_span new_wrapped_dek, struct atr_span new_sealed,
                                 struct atr_err *err)
{
    if (s == NULL)
        return bad(err, "store");
    ATR_TRY(check_tenant_arg(tenant, err));
    if (block_id < 1)
        return bad(err, "block id");
    if (!key_ref_ok(old_key_ref) || !key_ref_ok(new_key_ref))
        return bad(err, "key reference");
    if (!span_ok(new_wrapped_dek, ATR_STORE_WRAPPED_MAX))
        return bad(err, "wrapped DEK");
    if (new_sealed.len > 0 && !span_ok(new_sealed, ATR_STORE_SEALED_MAX))
        return bad(err, "sealed block");
    return s->vt->block_rekey(s->impl, tenant, block_id, old_key_ref, new_key_ref, new_wrapped_dek,
                              new_sealed, err);
}

/* ---- audit ---- */

atr_status atr_store_audit_append(int64_t *out_id, struct atr_store *s,
                                  const struct atr_store_audit_event *ev, struct atr_err *err)
{
    if (out_id != NULL)
        *out_id = 0;
    if (s == NULL || ev == NULL)
        return bad(err, "store or event");
    ATR_TRY(check_event(ev, err));
    int64_t id = 0;
    atr_status rc = s->vt->audit_append(&id, s->impl, ev, err);
    if (rc == ATR_OK && out_id != NULL)
        *out_id = id;
    return rc;
}

atr_status atr_store_audit_list(struct atr_store_audit_event **out, size_t *out_n,
                                struct atr_store *s, const char *tenant, int64_t before_id,
                                size_t limit, struct atr_err *err)
{
    if (out == NULL || out_n == NULL)
        return bad(err, "output pointer");
    *out = NULL;
    *out_n = 0;
    if (s == NULL)
        return bad(err, "store");
    if (tenant != NULL)
        ATR_TRY(check_tenant_arg(tenant, err));
    if (before_id < 0)
        return bad(err, "before-id cursor");
    if (!limit_ok(limit))
        return bad(err, "limit");
    atr_status rc = s->vt->audit_list(out, out_n, s->impl, tenant, before_id, limit, err);
    if (rc == ATR_OK && *out_n > limit)
        atr_panic("store engine returned more rows than the limit");
    return rc;
}

/* ---- statistics ---- */

atr_status atr_store_stats_get(struct atr_store_stats *out, struct atr_store *s, const char *tenant,
                               struct atr_err *err)
{
    if (out == NULL)
        return bad(err, "output pointer");
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return bad(err, "store");
    if (tenant != NULL)
        ATR_TRY(check_tenant_arg(tenant, err));
    return s->vt->stats_get(out, s->impl, tenant, err);
}
