/* SPDX-License-Identifier: Apache-2.0 */
#include "service/keyring.h"

#include <pthread.h>
#include <string.h>

#include "base/alloc.h"
#include "crypto/aead.h"
#include "crypto/rand.h"

#define DEK_AAD_LABEL "atrest-dek-wrap-v1"
#define DEK_AAD_MAX                                                                                \
    (sizeof(DEK_AAD_LABEL) - 1 + 1 + 1 + ATR_KEYRING_TENANT_MAX + 1 + ATR_KEYRING_BLOCK_ID_MAX)

struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU list: head is the most recently used */
    uint64_t hash;
    char *tenant;
    struct atr_secret tk;
    int64_t ttl_end_ms;  /* put time + TTL */
    int64_t deadline_ms; /* hard deadline, 0 for none */
};

/* A load in progress (single-flight), shared by the loader and its waiters. */
struct flight {
    struct flight *next;
    char *tenant;
    unsigned refs; /* the leader and every waiter */
    int done;
    int cancelled; /* atr_keyring_evict() ran during the load */
    atr_status rc;
    struct atr_err err;
};

struct atr_keyring {
    pthread_mutex_t lock;
    pthread_cond_t loaded; /* broadcast when a flight completes */
    const struct atr_clock *clock;
    size_t max_entries;
    int64_t ttl_ms;
    int deadline_only;
    uint64_t seed;
    struct entry **buckets; /* nbuckets, a power of two */
    size_t nbuckets;
    struct entry *head, *tail;
    size_t count;
    struct flight *flights;
    struct atr_keyring_stats st;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static int tenant_ok(const char *tenant)
{
    if (tenant == NULL)
        return 0;
    size_t n = strnlen(tenant, ATR_KEYRING_TENANT_MAX + 1);
    return n > 0 && n <= ATR_KEYRING_TENANT_MAX;
}

static int key_ok(const struct atr_secret *k, size_t len)
{
    return atr_secret_is_set(k) && atr_secret_len(k) == len;
}

/* FNV-1a with a per-ring seed and a final mix (splitmix64). */
static uint64_t hash_tenant(const struct atr_keyring *ring, const char *tenant)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ ring->seed;
    for (const unsigned char *p = (const unsigned char *)tenant; *p != '\0'; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static struct entry **bucket_of(struct atr_keyring *ring, uint64_t hash)
{
    return &ring->buckets[hash & (ring->nbuckets - 1)];
}

static struct entry *find(struct atr_keyring *ring, const char *tenant, uint64_t hash)
{
    for (struct entry *e = *bucket_of(ring, hash); e != NULL; e = e->hnext)
        if (e->hash == hash && strcmp(e->tenant, tenant) == 0)
            return e;
    return NULL;
}

static void lru_unlink(struct atr_keyring *ring, struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        ring->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        ring->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct atr_keyring *ring, struct entry *e)
{
    e->prev = NULL;
    e->next = ring->head;
    if (ring->head != NULL)
        ring->head->prev = e;
    ring->head = e;
    if (ring->tail == NULL)
        ring->tail = e;
}

static void entry_destroy(struct entry *e)
{
    atr_secret_cleanup(&e->tk);
    atr_free(e->tenant);
    atr_free(e);
}

/* Unlinks @p e from the table and the LRU list, wipes and frees it. */
static void entry_remove(struct atr_keyring *ring, struct entry *e)
{
    struct entry **pp = bucket_of(ring, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ring, e);
    ring->count--;
    entry_destroy(e);
}

static int entry_expired(const struct entry *e, int64_t now)
{
    return now >= e->ttl_end_ms || (e->deadline_ms != 0 && now >= e->deadline_ms);
}

/* A valid entry for @p tenant (made most recently used), or NULL; drops an expired one. */
static struct entry *lookup(struct atr_keyring *ring, const char *tenant, int64_t now)
{
    struct entry *e = find(ring, tenant, hash_tenant(ring, tenant));
    if (e == NULL)
        return NULL;
    if (entry_expired(e, now)) {
        entry_remove(ring, e);
        ring->st.expirations++;
        return NULL;
    }
    lru_unlink(ring, e);
    lru_push_front(ring, e);
    return e;
}

/*
 * Caches @p tk (moved: @p tk is empty afterwards on ATR_OK, untouched on
 * failure) for @p tenant. Called with the lock held.
 */
static atr_status insert_locked(struct atr_keyring *ring, const char *tenant, struct atr_secret *tk,
                                int64_t deadline_ms, int64_t now, struct atr_err *err)
{
    uint64_t hash = hash_tenant(ring, tenant);
    struct entry *e = find(ring, tenant, hash);
    if (e != NULL) {
        atr_secret_cleanup(&e->tk);
        lru_unlink(ring, e);
    } else {
        e = atr_calloc(1, sizeof(*e));
        char *name = atr_strdup(tenant);
        if (e == NULL || name == NULL) {
            atr_free(e);
            atr_free(name);
            return atr_err_set(err, ATR_E_NOMEM, "keyring: out of memory");
        }
        /* make room only once the new entry exists */
        if (ring->count >= ring->max_entries) {
            entry_remove(ring, ring->tail);
            ring->st.evictions++;
        }
        e->tenant = name;
        e->hash = hash;
        struct entry **b = bucket_of(ring, hash);
        e->hnext = *b;
        *b = e;
        ring->count++;
    }
    e->tk = *tk;
    *tk = (struct atr_secret)ATR_SECRET_INIT;
    if (deadline_ms != 0 && ring->deadline_only)
        e->ttl_end_ms = INT64_MAX;
    else
        e->ttl_end_ms = now > INT64_MAX - ring->ttl_ms ? INT64_MAX : now + ring->ttl_ms;
    e->deadline_ms = deadline_ms;
    lru_push_front(ring, e);
    return ATR_OK;
}

static int64_t now_ms(const struct atr_keyring *ring)
{
    return atr_clock_mono_ms(ring->clock);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

atr_status atr_keyring_new(struct atr_keyring **out, const struct atr_keyring_opts *opts,
                           const struct atr_clock *clock, struct atr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || opts == NULL || clock == NULL)
        return atr_err_set(err, ATR_E_INVALID, "keyring: missing argument");
    if (opts->max_entries == 0 || opts->max_entries > ATR_KEYRING_MAX_ENTRIES_HARD)
        return atr_err_set(err, ATR_E_INVALID, "keyring: max entries must be 1 to %u",
                           ATR_KEYRING_MAX_ENTRIES_HARD);
    if (opts->ttl_ms <= 0)
        return atr_err_set(err, ATR_E_INVALID, "keyring: the TTL must be positive");
    struct atr_keyring *ring = atr_calloc(1, sizeof(*ring));
    if (ring == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "keyring: out of memory");
    ring->clock = clock;
    ring->max_entries = opts->max_entries;
    ring->ttl_ms = opts->ttl_ms;
    ring->deadline_only = opts->deadline_only != 0;
    ring->nbuckets = 16;
    while (ring->nbuckets < ring->max_entries)
        ring->nbuckets *= 2;
    ring->buckets = atr_calloc(ring->nbuckets, sizeof(*ring->buckets));
    if (ring->buckets == NULL) {
        atr_free(ring);
        return atr_err_set(err, ATR_E_NOMEM, "keyring: out of memory");
    }
    atr_status rc = atr_rand_bytes(&ring->seed, sizeof(ring->seed), err);
    if (rc != ATR_OK) {
        atr_free(ring->buckets);
        atr_free(ring);
        return rc;
    }
    if (pthread_mutex_init(&ring->lock, NULL) != 0) {
        atr_free(ring->buckets);
        atr_free(ring);
        return atr_err_set(err, ATR_E_INTERNAL, "keyring: cannot create a mutex");
    }
    if (pthread_cond_init(&ring->loaded, NULL) != 0) {
        pthread_mutex_destroy(&ring->lock);
        atr_free(ring->buckets);
        atr_free(ring);
        return atr_err_set(err, ATR_E_INTERNAL, "keyring: cannot create a condition variable");
    }
    *out = ring;
    return ATR_OK;
}

void atr_keyring_free(struct atr_keyring *ring)
{
    if (ring == NULL)
        return;
    while (ring->head != NULL)
        entry_remove(ring, ring->head);
    /* flights only exist while calls run, which the contract excludes */
    pthread_cond_destroy(&ring->loaded);
    pthread_mutex_destroy(&ring->lock);
    atr_free(ring->buckets);
    atr_free(ring);
}

/* ---- cache operations --------------------------------------------------------------------- */

atr_status atr_keyring_get(struct atr_secret *out, struct atr_keyring *ring, const char *tenant,
                           struct atr_err *err)
{
    if (out == NULL || ring == NULL || !tenant_ok(tenant) || atr_secret_is_set(out))
        return atr_err_set(err, ATR_E_INVALID, "keyring: bad argument");
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&ring->lock);
    struct entry *e = lookup(ring, tenant, now_ms(ring));
    if (e == NULL) {
        ring->st.misses++;
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "keyring: no cached key for the tenant");
    } else {
        ring->st.hits++;
        if (atr_secret_init_copy(out, atr_secret_cdata(&e->tk), atr_secret_len(&e->tk)) != ATR_OK)
            rc = atr_err_set(err, ATR_E_NOMEM, "keyring: no secure memory for the key");
    }
    pthread_mutex_unlock(&ring->lock);
    return rc;
}

atr_status atr_keyring_use(struct atr_keyring *ring, const char *tenant, atr_keyring_use_fn fn,
                           void *ctx, struct atr_err *err)
{
    if (ring == NULL || fn == NULL || !tenant_ok(tenant))
        return atr_err_set(err, ATR_E_INVALID, "keyring: bad argument");
    atr_status rc;
    pthread_mutex_lock(&ring->lock);
    struct entry *e = lookup(ring, tenant, now_ms(ring));
    if (e == NULL) {
        ring->st.misses++;
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "keyring: no cached key for the tenant");
    } else {
        ring->st.hits++;
        rc = fn(&e->tk, ctx, err);
    }
    pthread_mutex_unlock(&ring->lock);
    return rc;
}

atr_status atr_keyring_put(struct atr_keyring *ring, const char *tenant,
                           const struct atr_secret *tk, int64_t deadline_ms, struct atr_err *err)
{
    if (ring == NULL || !tenant_ok(tenant))
        return atr_err_set(err, ATR_E_INVALID, "keyring: bad argument");
    if (!key_ok(tk, ATR_KEYRING_TK_LEN))
        return atr_err_set(err, ATR_E_INVALID, "keyring: a tenant key must be %d bytes",
                           ATR_KEYRING_TK_LEN);
    struct atr_secret copy = ATR_SECRET_INIT;
    if (atr_secret_init_copy(&copy, atr_secret_cdata(tk), ATR_KEYRING_TK_LEN) != ATR_OK)
        return atr_err_set(err, ATR_E_NOMEM, "keyring: no secure memory for the key");
    pthread_mutex_lock(&ring->lock);
    int64_t now = now_ms(ring);
    atr_status rc;
    if (deadline_ms != 0 && deadline_ms <= now)
        rc = atr_err_set(err, ATR_E_INVALID, "keyring: the deadline has already passed");
    else
        rc = insert_locked(ring, tenant, &copy, deadline_ms, now, err);
    pthread_mutex_unlock(&ring->lock);
    atr_secret_cleanup(&copy); /* empty when it was moved into the ring */
    return rc;
}

atr_status atr_keyring_set_deadline(struct atr_keyring *ring, const char *tenant,
                                    int64_t deadline_ms, struct atr_err *err)
{
    if (ring == NULL || !tenant_ok(tenant) || deadline_ms < 0)
        return atr_err_set(err, ATR_E_INVALID, "keyring: bad argument");
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&ring->lock);
    int64_t now = now_ms(ring);
    struct entry *e = lookup(ring, tenant, now);
    if (e == NULL)
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "keyring: no cached key for the tenant");
    else if (deadline_ms != 0 && deadline_ms <= now)
        rc = atr_err_set(err, ATR_E_INVALID, "keyring: the deadline has already passed");
    else {
        e->deadline_ms = deadline_ms;
        if (ring->deadline_only)
            e->ttl_end_ms =
                deadline_ms != 0 || now > INT64_MAX - ring->ttl_ms ? INT64_MAX : now + ring->ttl_ms;
    }
    pthread_mutex_unlock(&ring->lock);
    return rc;
}

static struct flight *find_flight(struct atr_keyring *ring, const char *tenant)
{
    for (struct flight *f = ring->flights; f != NULL; f = f->next)
        if (strcmp(f->tenant, tenant) == 0)
            return f;
    return NULL;
}

static void flight_unlink(struct atr_keyring *ring, struct flight *fl)
{
    struct flight **pp = &ring->flights;
    while (*pp != NULL && *pp != fl)
        pp = &(*pp)->next;
    if (*pp == fl)
        *pp = fl->next;
}

static void flight_release(struct flight *fl)
{
    if (--fl->refs == 0) {
        atr_free(fl->tenant);
        atr_free(fl);
    }
}

/* Runs the loader for @p fl (the lock is NOT held) and checks its result. */
static atr_status run_loader(struct atr_secret *tk, int64_t *deadline, const char *tenant,
                             atr_keyring_loader_fn loader, void *ctx, struct atr_err *lerr)
{
    *deadline = 0;
    atr_status rc = loader(tk, deadline, tenant, ctx, lerr);
    if (rc == ATR_OK && !key_ok(tk, ATR_KEYRING_TK_LEN))
        rc = atr_err_set(lerr, ATR_E_INTERNAL,
                         "keyring: the loader returned a tenant key that is not %d bytes",
                         ATR_KEYRING_TK_LEN);
    if (rc == ATR_OK && *deadline < 0)
        rc = atr_err_set(lerr, ATR_E_INTERNAL, "keyring: the loader returned a negative deadline");
    if (rc == ATR_OK)
        return ATR_OK;
    if (lerr->code == ATR_OK)
        (void)atr_err_set(lerr, rc, "keyring: loading the tenant key failed");
    atr_secret_cleanup(tk);
    return rc;
}

/*
 * Loads the TK of @p tenant as the leader of a new flight: called and
 * returning with the lock held; runs the loader without it.
 */
static atr_status lead_load(struct atr_secret *out, struct atr_keyring *ring, const char *tenant,
                            atr_keyring_loader_fn loader, void *ctx, struct atr_err *err)
{
    struct flight *fl = atr_calloc(1, sizeof(*fl));
    char *name = atr_strdup(tenant);
    if (fl == NULL || name == NULL) {
        atr_free(fl);
        atr_free(name);
        return atr_err_set(err, ATR_E_NOMEM, "keyring: out of memory");
    }
    fl->tenant = name;
    fl->refs = 1;
    fl->next = ring->flights;
    ring->flights = fl;
    ring->st.loads++;
    pthread_mutex_unlock(&ring->lock);

    struct atr_secret tk = ATR_SECRET_INIT;
    struct atr_err lerr;
    atr_err_clear(&lerr);
    int64_t deadline = 0;
    atr_status rc = run_loader(&tk, &deadline, tenant, loader, ctx, &lerr);

    pthread_mutex_lock(&ring->lock);
    int64_t now = now_ms(ring);
    if (rc == ATR_OK && fl->cancelled)
        rc = atr_err_set(&lerr, ATR_E_UNAVAILABLE,
                         "keyring: the tenant key was evicted while it was loading");
    if (rc == ATR_OK && deadline != 0 && deadline <= now)
        rc = atr_err_set(&lerr, ATR_E_UNAVAILABLE,
                         "keyring: the tenant key's deadline passed while it was loading");
    if (rc == ATR_OK &&
        atr_secret_init_copy(out, atr_secret_cdata(&tk), ATR_KEYRING_TK_LEN) != ATR_OK)
        rc = atr_err_set(&lerr, ATR_E_NOMEM, "keyring: no secure memory for the key");
    if (rc == ATR_OK) {
        rc = insert_locked(ring, tenant, &tk, deadline, now, &lerr);
        if (rc != ATR_OK)
            atr_secret_cleanup(out);
    }
    atr_secret_cleanup(&tk);
    if (rc != ATR_OK) {
        ring->st.load_failures++;
        if (err != NULL)
            *err = lerr;
    }
    fl->rc = rc;
    fl->err = lerr;
    fl->done = 1;
    flight_unlink(ring, fl);
    pthread_cond_broadcast(&ring->loaded);
    flight_release(fl);
    return rc;
}

atr_status atr_keyring_get_or_load(struct atr_secret *out, struct atr_keyring *ring,
                                   const char *tenant, atr_keyring_loader_fn loader, void *ctx,
                                   struct atr_err *err)
{
    if (out == NULL || ring == NULL || loader == NULL || !tenant_ok(tenant) ||
        atr_secret_is_set(out))
        return atr_err_set(err, ATR_E_INVALID, "keyring: bad argument");
    atr_status rc = ATR_OK;
    int first = 1; /* each call counts once: a hit only if the first lookup found the key */
    pthread_mutex_lock(&ring->lock);
    for (;; first = 0) {
        struct entry *e = lookup(ring, tenant, now_ms(ring));
        if (e != NULL) {
            if (first)
                ring->st.hits++;
            else
                ring->st.misses++;
            if (atr_secret_init_copy(out, atr_secret_cdata(&e->tk), ATR_KEYRING_TK_LEN) != ATR_OK)
                rc = atr_err_set(err, ATR_E_NOMEM, "keyring: no secure memory for the key");
            break;
        }
        struct flight *fl = find_flight(ring, tenant);
        if (fl != NULL) {
            /* another caller is loading this tenant: wait for its result */
            fl->refs++;
            while (!fl->done)
                pthread_cond_wait(&ring->loaded, &ring->lock);
            rc = fl->rc;
            if (rc != ATR_OK && err != NULL)
                *err = fl->err;
            flight_release(fl);
            if (rc == ATR_OK)
                continue; /* cached by the leader: look again */
            ring->st.misses++;
            break;
        }
        /* lead the load of this tenant */
        ring->st.misses++;
        rc = lead_load(out, ring, tenant, loader, ctx, err);
        break;
    }
    pthread_mutex_unlock(&ring->lock);
    return rc;
}

int atr_keyring_evict(struct atr_keyring *ring, const char *tenant)
{
    if (ring == NULL || !tenant_ok(tenant))
        return 0;
    int found = 0;
    pthread_mutex_lock(&ring->lock);
    struct entry *e = find(ring, tenant, hash_tenant(ring, tenant));
    if (e != NULL) {
        entry_remove(ring, e);
        ring->st.removals++;
        found = 1;
    }
    struct flight *fl = find_flight(ring, tenant);
    if (fl != NULL && !fl->done) {
        fl->cancelled = 1;
        found = 1;
    }
    pthread_mutex_unlock(&ring->lock);
    return found;
}

size_t atr_keyring_evict_expired(struct atr_keyring *ring, int64_t now)
{
    if (ring == NULL)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&ring->lock);
    for (struct entry *e = ring->tail, *prev; e != NULL; e = prev) {
        prev = e->prev;
        if (entry_expired(e, now)) {
            entry_remove(ring, e);
            n++;
        }
    }
    ring->st.expirations += n;
    pthread_mutex_unlock(&ring->lock);
    return n;
}

size_t atr_keyring_count(struct atr_keyring *ring)
{
    if (ring == NULL)
        return 0;
    pthread_mutex_lock(&ring->lock);
    size_t n = ring->count;
    pthread_mutex_unlock(&ring->lock);
    return n;
}

void atr_keyring_stats(struct atr_keyring_stats *out, struct atr_keyring *ring)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (ring == NULL)
        return;
    pthread_mutex_lock(&ring->lock);
    *out = ring->st;
    out->entries = ring->count;
    pthread_mutex_unlock(&ring->lock);
}

/* ---- tenant keys -------------------------------------------------------------------------- */

atr_status atr_keyring_tk_generate(struct atr_secret *out, struct atr_err *err)
{
    if (out == NULL || atr_secret_is_set(out))
        return atr_err_set(err, ATR_E_INVALID, "keyring: the output secret must be empty");
    return atr_rand_secret(out, ATR_KEYRING_TK_LEN, err);
}

atr_status atr_keyring_tk_wrap(struct atr_buf *out_blob, struct atr_kms_keyref *out_ref,
                               struct atr_kms_provider *provider, const struct atr_secret *tk,
                               const char *tenant, struct atr_err *err)
{
    if (!key_ok(tk, ATR_KEYRING_TK_LEN))
        return atr_err_set(err, ATR_E_INVALID, "keyring: a tenant key must be %d bytes",
                           ATR_KEYRING_TK_LEN);
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, tenant};
    return atr_kms_wrap(out_blob, out_ref, provider, tk, &ctx, err);
}

atr_status atr_keyring_tk_unwrap(struct atr_secret *out, struct atr_kms_provider *provider,
                                 const struct atr_kms_keyref *ref, struct atr_span blob,
                                 const char *tenant, struct atr_err *err)
{
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, tenant};
    ATR_TRY(atr_kms_unwrap(out, provider, ref, blob, &ctx, err));
    if (atr_secret_len(out) != ATR_KEYRING_TK_LEN) {
        atr_secret_cleanup(out);
        return atr_err_set(err, ATR_E_AUTH_FAILED,
                           "keyring: the unwrapped tenant key is not %d bytes", ATR_KEYRING_TK_LEN);
    }
    return ATR_OK;
}

/* ---- data keys ---------------------------------------------------------------------------- */

static atr_status dek_args(const struct atr_secret *tk, const char *tenant,
                           struct atr_span block_id, struct atr_err *err)
{
    if (!key_ok(tk, ATR_KEYRING_TK_LEN))
        return atr_err_set(err, ATR_E_INVALID, "DEK: the tenant key must be %d bytes",
                           ATR_KEYRING_TK_LEN);
    if (!tenant_ok(tenant))
        return atr_err_set(err, ATR_E_INVALID, "DEK: the tenant id must be 1 to %d bytes",
                           ATR_KEYRING_TENANT_MAX);
    if (block_id.ptr == NULL || block_id.len == 0 || block_id.len > ATR_KEYRING_BLOCK_ID_MAX)
        return atr_err_set(err, ATR_E_INVALID, "DEK: the block id must be 1 to %d bytes",
                           ATR_KEYRING_BLOCK_ID_MAX);
    return ATR_OK;
}

static size_t dek_aad(uint8_t *aad, uint8_t format, const char *tenant, struct atr_span block_id)
{
    size_t nt = strlen(tenant);
    size_t off = sizeof(DEK_AAD_LABEL) - 1;
    memcpy(aad, DEK_AAD_LABEL, off);
    aad[off++] = format;
    aad[off++] = (uint8_t)nt;
    memcpy(aad + off, tenant, nt);
    off += nt;
    aad[off++] = (uint8_t)block_id.len;
    memcpy(aad + off, block_id.ptr, block_id.len);
    return off + block_id.len;
}

atr_status atr_keyring_dek_wrap(struct atr_buf *out_wrapped, const struct atr_secret *tk,
                                const struct atr_secret *dek, const char *tenant,
                                struct atr_span block_id, struct atr_err *err)
{
    if (out_wrapped == NULL)
        return atr_err_set(err, ATR_E_INVALID, "DEK: missing output buffer");
    ATR_TRY(dek_args(tk, tenant, block_id, err));
    if (!key_ok(dek, ATR_KEYRING_DEK_LEN))
        return atr_err_set(err, ATR_E_INVALID, "DEK: a data key must be %d bytes",
                           ATR_KEYRING_DEK_LEN);
    /* reserve everything first so that nothing is half appended */
    atr_status rc = atr_buf_reserve(out_wrapped, ATR_KEYRING_WRAPPED_DEK_LEN);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "DEK: no room for the wrapped key");
    struct atr_aead *aead = NULL;
    ATR_TRY(atr_aead_new(&aead, tk, err));
    uint8_t aad[DEK_AAD_MAX];
    const uint8_t format = ATR_KEYRING_DEK_FORMAT;
    size_t aad_len = dek_aad(aad, format, tenant, block_id);
    size_t before = out_wrapped->len;
    if ((rc = atr_buf_append(out_wrapped, &format, 1)) == ATR_OK)
        rc = atr_aead_seal(out_wrapped, aead, atr_span_of(aad, aad_len),
                           atr_span_of(atr_secret_cdata(dek), ATR_KEYRING_DEK_LEN), err);
    if (rc != ATR_OK && out_wrapped->ptr != NULL && out_wrapped->len > before) {
        atr_wipe(out_wrapped->ptr + before, out_wrapped->len - before);
        out_wrapped->len = before;
    }
    atr_aead_free(aead);
    return rc;
}

atr_status atr_keyring_dek_new(struct atr_secret *out_dek, struct atr_buf *out_wrapped,
                               const struct atr_secret *tk, const char *tenant,
                               struct atr_span block_id, struct atr_err *err)
{
    if (out_dek == NULL || atr_secret_is_set(out_dek))
        return atr_err_set(err, ATR_E_INVALID, "DEK: the output secret must be empty");
    ATR_TRY(dek_args(tk, tenant, block_id, err));
    ATR_TRY(atr_rand_secret(out_dek, ATR_KEYRING_DEK_LEN, err));
    atr_status rc = atr_keyring_dek_wrap(out_wrapped, tk, out_dek, tenant, block_id, err);
    if (rc != ATR_OK)
        atr_secret_cleanup(out_dek);
    return rc;
}

atr_status atr_keyring_dek_unwrap(struct atr_secret *out_dek, const struct atr_secret *tk,
                                  const char *tenant, struct atr_span block_id,
                                  struct atr_span wrapped, struct atr_err *err)
{
    if (out_dek == NULL || atr_secret_is_set(out_dek))
        return atr_err_set(err, ATR_E_INVALID, "DEK: the output secret must be empty");
    ATR_TRY(dek_args(tk, tenant, block_id, err));
    if (wrapped.ptr == NULL || wrapped.len == 0)
        return atr_err_set(err, ATR_E_PARSE, "DEK: the wrapped key is empty");
    if (wrapped.ptr[0] != ATR_KEYRING_DEK_FORMAT)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "DEK: wrapped-key format %u is not supported",
                           (unsigned)wrapped.ptr[0]);
    if (wrapped.len != ATR_KEYRING_WRAPPED_DEK_LEN)
        return atr_err_set(err, ATR_E_PARSE, "DEK: the wrapped key is %zu bytes, not %d",
                           wrapped.len, ATR_KEYRING_WRAPPED_DEK_LEN);
    struct atr_aead *aead = NULL;
    ATR_TRY(atr_aead_new(&aead, tk, err));
    uint8_t aad[DEK_AAD_MAX];
    size_t aad_len = dek_aad(aad, wrapped.ptr[0], tenant, block_id);
    atr_status rc = atr_aead_open_secret(out_dek, aead, atr_span_of(aad, aad_len),
                                         atr_span_of(wrapped.ptr + 1, wrapped.len - 1), err);
    if (rc == ATR_E_AUTH_FAILED)
        (void)atr_err_set(err, rc,
                          "DEK: the wrapped key does not authenticate (other tenant, block or "
                          "tenant key, or modified)");
    atr_aead_free(aead);
    return rc;
}
