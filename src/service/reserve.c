/* SPDX-License-Identifier: Apache-2.0 */
#include "service/reserve.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "crypto/aead.h"
#include "crypto/rand.h"

#define TENANT_MAX  64
#define SEALED_LEN  (ATR_RESERVE_DEK_LEN + ATR_AEAD_OVERHEAD)
#define WRAPPED_MAX 1024 /* CK-wrap of the inner layer (RSA-4096: 512 bytes) */

struct item {
    uint8_t sealed[SEALED_LEN]; /* GCM(process key, DEK), AAD = tenant */
    struct atr_buf blob;
};

struct pool {
    char tenant[TENANT_MAX + 1];
    struct item *items; /* size entries */
    size_t n;
};

struct atr_reserve {
    pthread_mutex_t lock;
    struct atr_aead *aead; /* the process key; never leaves this module */
    size_t size;
    struct pool *pools;
    size_t npools, cap;
};

atr_status atr_reserve_new(struct atr_reserve **out, size_t per_tenant, struct atr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || per_tenant > ATR_RESERVE_SIZE_MAX)
        return atr_err_set(err, ATR_E_INVALID, "reserve: the size must be 0 to %d",
                           ATR_RESERVE_SIZE_MAX);
    struct atr_reserve *r = atr_calloc(1, sizeof(*r));
    if (r == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "reserve: out of memory");
    r->size = per_tenant;
    struct atr_secret key = ATR_SECRET_INIT;
    atr_status rc = atr_rand_secret(&key, ATR_AEAD_KEY_LEN, err);
    if (rc == ATR_OK)
        rc = atr_aead_new(&r->aead, &key, err);
    atr_secret_cleanup(&key);
    if (rc == ATR_OK && pthread_mutex_init(&r->lock, NULL) != 0)
        rc = atr_err_set(err, ATR_E_INTERNAL, "reserve: cannot create a mutex");
    if (rc != ATR_OK) {
        atr_aead_free(r->aead);
        atr_free(r);
        return rc;
    }
    *out = r;
    return ATR_OK;
}

static void item_cleanup(struct item *it)
{
    atr_wipe(it->sealed, sizeof(it->sealed));
    atr_buf_cleanup(&it->blob);
}

static void pool_cleanup(struct pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        item_cleanup(&p->items[i]);
    atr_free(p->items);
    p->items = NULL;
    p->n = 0;
}

void atr_reserve_free(struct atr_reserve *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->npools; i++)
        pool_cleanup(&r->pools[i]);
    atr_free(r->pools);
    atr_aead_free(r->aead);
    pthread_mutex_destroy(&r->lock);
    atr_free(r);
}

size_t atr_reserve_size(const struct atr_reserve *r)
{
    return r != NULL ? r->size : 0;
}

static struct pool *find(struct atr_reserve *r, const char *tenant)
{
    for (size_t i = 0; i < r->npools; i++)
        if (strcmp(r->pools[i].tenant, tenant) == 0)
            return &r->pools[i];
    return NULL;
}

static int tenant_ok(const char *t)
{
    return t != NULL && t[0] != '\0' && strlen(t) <= TENANT_MAX;
}

size_t atr_reserve_count(struct atr_reserve *r, const char *tenant)
{
    if (r == NULL || !tenant_ok(tenant))
        return 0;
    pthread_mutex_lock(&r->lock);
    const struct pool *p = find(r, tenant);
    size_t n = p != NULL ? p->n : 0;
    pthread_mutex_unlock(&r->lock);
    return n;
}

atr_status atr_reserve_add(struct atr_reserve *r, const char *tenant, const struct atr_secret *dek,
                           struct atr_span blob, struct atr_err *err)
{
    if (r == NULL || !tenant_ok(tenant) || !atr_secret_is_set(dek) ||
        atr_secret_len(dek) != ATR_RESERVE_DEK_LEN || blob.ptr == NULL || blob.len == 0)
        return atr_err_set(err, ATR_E_INVALID, "reserve: bad argument");
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&r->lock);
    struct pool *p = find(r, tenant);
    if (p == NULL) {
        if (r->npools == r->cap) {
            size_t cap = r->cap == 0 ? 8 : r->cap * 2;
            struct pool *np = atr_realloc(r->pools, cap * sizeof(*np));
            if (np == NULL) {
                rc = atr_err_set(err, ATR_E_NOMEM, "reserve: out of memory");
                goto out;
            }
            r->pools = np;
            r->cap = cap;
        }
        p = &r->pools[r->npools++];
        memset(p, 0, sizeof(*p));
        snprintf(p->tenant, sizeof(p->tenant), "%s", tenant);
    }
    if (p->n >= r->size) {
        rc = atr_err_set(err, ATR_E_TOO_LARGE, "reserve: the tenant's reserve is full");
        goto out;
    }
    if (p->items == NULL && (p->items = atr_calloc(r->size, sizeof(*p->items))) == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "reserve: out of memory");
        goto out;
    }
    struct item *it = &p->items[p->n];
    memset(it, 0, sizeof(*it));
    atr_buf_init(&it->blob, blob.len);
    struct atr_buf sealed;
    atr_buf_init(&sealed, SEALED_LEN);
    rc = atr_aead_seal(&sealed, r->aead, atr_span_str(tenant),
                       atr_span_of(atr_secret_cdata(dek), ATR_RESERVE_DEK_LEN), err);
    if (rc == ATR_OK && sealed.len == SEALED_LEN)
        memcpy(it->sealed, sealed.ptr, SEALED_LEN);
    else if (rc == ATR_OK)
        rc = atr_err_set(err, ATR_E_INTERNAL, "reserve: unexpected sealed size");
    atr_buf_cleanup(&sealed);
    if (rc == ATR_OK)
        rc = atr_buf_append(&it->blob, blob.ptr, blob.len);
    if (rc == ATR_OK)
        p->n++;
    else
        item_cleanup(it);
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void atr_reserve_dek_cleanup(struct atr_reserve_dek *d)
{
    if (d == NULL)
        return;
    atr_secret_cleanup(&d->dek);
    atr_buf_cleanup(&d->blob);
}

atr_status atr_reserve_take(struct atr_reserve *r, const char *tenant, struct atr_reserve_dek *out,
                            size_t n, struct atr_err *err)
{
    for (size_t i = 0; out != NULL && i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        atr_buf_init(&out[i].blob, 4096);
    }
    if (r == NULL || !tenant_ok(tenant) || out == NULL || n == 0)
        return atr_err_set(err, ATR_E_INVALID, "reserve: bad argument");
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&r->lock);
    struct pool *p = find(r, tenant);
    if (p == NULL || p->n < n) {
        rc = atr_err_set(err, ATR_E_UNAVAILABLE,
                         "the tenant is locked and its reserve of pre-wrapped data keys holds %zu "
                         "of the %zu needed",
                         p != NULL ? p->n : 0, n);
        goto out;
    }
    for (size_t i = 0; rc == ATR_OK && i < n; i++) {
        struct item *it = &p->items[p->n - 1 - i];
        rc = atr_aead_open_secret(&out[i].dek, r->aead, atr_span_str(tenant),
                                  atr_span_of(it->sealed, SEALED_LEN), err);
        if (rc == ATR_OK)
            rc = atr_buf_append(&out[i].blob, it->blob.ptr, it->blob.len);
    }
    if (rc != ATR_OK) {
        for (size_t i = 0; i < n; i++)
            atr_reserve_dek_cleanup(&out[i]);
        if (rc == ATR_E_AUTH_FAILED)
            pool_cleanup(p); /* cannot happen unless memory was damaged: drop everything */
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        item_cleanup(&p->items[--p->n]);
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void atr_reserve_drop(struct atr_reserve *r, const char *tenant)
{
    if (r == NULL || !tenant_ok(tenant))
        return;
    pthread_mutex_lock(&r->lock);
    struct pool *p = find(r, tenant);
    if (p != NULL)
        pool_cleanup(p);
    pthread_mutex_unlock(&r->lock);
}

/* ---- blob ---------------------------------------------------------------------------------- */

atr_status atr_reserve_blob_encode(struct atr_buf *out, uint32_t srk_version, const char *kid,
                                   struct atr_span wrapped, struct atr_err *err)
{
    size_t k = kid != NULL ? strlen(kid) : 0;
    if (out == NULL || k == 0 || k > ATR_RESERVE_KID_MAX || wrapped.ptr == NULL ||
        wrapped.len == 0 || wrapped.len > WRAPPED_MAX)
        return atr_err_set(err, ATR_E_INVALID, "reserve: bad blob fields");
    uint8_t head[7] = {ATR_RESERVE_FORMAT,
                       (uint8_t)(srk_version >> 24),
                       (uint8_t)(srk_version >> 16),
                       (uint8_t)(srk_version >> 8),
                       (uint8_t)srk_version,
                       (uint8_t)(k >> 8),
                       (uint8_t)k};
    size_t before = out->len;
    atr_status rc = atr_buf_append(out, head, sizeof(head));
    if (rc == ATR_OK)
        rc = atr_buf_append(out, kid, k);
    if (rc == ATR_OK)
        rc = atr_buf_append(out, wrapped.ptr, wrapped.len);
    if (rc != ATR_OK) {
        if (out->ptr != NULL && out->len > before)
            out->len = before;
        return atr_err_set(err, rc, "reserve: no room for the blob");
    }
    return ATR_OK;
}

atr_status atr_reserve_blob_parse(uint32_t *srk_version, char *kid, size_t kid_cap,
                                  struct atr_span *wrapped, struct atr_span blob,
                                  struct atr_err *err)
{
    const uint8_t *b = blob.ptr;
    if (b == NULL || blob.len < 1)
        return atr_err_set(err, ATR_E_PARSE, "reserve blob: empty");
    if (b[0] != ATR_RESERVE_FORMAT)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "reserve blob: format %u is not supported",
                           (unsigned)b[0]);
    if (blob.len < 7)
        return atr_err_set(err, ATR_E_PARSE, "reserve blob: truncated");
    size_t k = ((size_t)b[5] << 8) | b[6];
    if (k == 0 || k > ATR_RESERVE_KID_MAX || k >= kid_cap || blob.len <= 7 + k ||
        blob.len - 7 - k > WRAPPED_MAX)
        return atr_err_set(err, ATR_E_PARSE, "reserve blob: bad lengths");
    for (size_t i = 0; i < k; i++)
        if (b[7 + i] < 0x21 || b[7 + i] > 0x7e)
            return atr_err_set(err, ATR_E_PARSE, "reserve blob: the kid is not printable");
    *srk_version = ((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 8) | b[4];
    memcpy(kid, b + 7, k);
    kid[k] = '\0';
    *wrapped = atr_span_of(b + 7 + k, blob.len - 7 - k);
    return ATR_OK;
}
