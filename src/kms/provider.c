/* SPDX-License-Identifier: Apache-2.0 */
#include "kms/provider.h"

#include <string.h>

void atr_kms_provider_init(struct atr_kms_provider *p, const struct atr_kms_provider_ops *ops)
{
    if (p == NULL || ops == NULL || ops->vt_size < sizeof(struct atr_kms_provider_ops) ||
        ops->name == NULL || ops->current == NULL || ops->wrap == NULL || ops->unwrap == NULL ||
        ops->destroy == NULL)
        atr_panic("atr_kms_provider_init: incomplete operations table");
    p->ops = ops;
    atomic_init(&p->refs, 1);
}

void atr_kms_provider_retain(struct atr_kms_provider *p)
{
    if (p == NULL)
        atr_panic("atr_kms_provider_retain: NULL provider");
    long before = atomic_fetch_add(&p->refs, 1);
    if (before <= 0)
        atr_panic("atr_kms_provider_retain: provider already released");
}

void atr_kms_provider_free(struct atr_kms_provider *p)
{
    if (p == NULL)
        return;
    long before = atomic_fetch_sub(&p->refs, 1);
    if (before <= 0)
        atr_panic("atr_kms_provider_free: provider released too often");
    if (before == 1)
        p->ops->destroy(p);
}

const char *atr_kms_provider_name(const struct atr_kms_provider *p)
{
    return p != NULL && p->ops != NULL ? p->ops->name : "?";
}

atr_status atr_kms_context_check(const struct atr_kms_context *ctx, struct atr_err *err)
{
    if (ctx == NULL || ctx->purpose == NULL || ctx->tenant == NULL)
        return atr_err_set(err, ATR_E_INVALID, "key context: purpose and tenant are required");
    size_t np = strnlen(ctx->purpose, ATR_KMS_PURPOSE_MAX + 1);
    size_t nt = strnlen(ctx->tenant, ATR_KMS_TENANT_MAX + 1);
    if (np == 0 || np > ATR_KMS_PURPOSE_MAX)
        return atr_err_set(err, ATR_E_INVALID, "key context: the purpose must be 1 to %d bytes",
                           ATR_KMS_PURPOSE_MAX);
    if (nt == 0 || nt > ATR_KMS_TENANT_MAX)
        return atr_err_set(err, ATR_E_INVALID, "key context: the tenant id must be 1 to %d bytes",
                           ATR_KMS_TENANT_MAX);
    return ATR_OK;
}

atr_status atr_kms_keyref_set(struct atr_kms_keyref *ref, const char *id, struct atr_err *err)
{
    ATR_ASSERT_ARG(ref != NULL);
    memset(ref->id, 0, sizeof(ref->id));
    if (id == NULL)
        return atr_err_set(err, ATR_E_INVALID, "key reference: missing");
    size_t n = strnlen(id, ATR_KMS_KEYREF_MAX);
    if (n == 0 || n >= ATR_KMS_KEYREF_MAX)
        return atr_err_set(err, ATR_E_INVALID, "key reference: must be 1 to %d characters",
                           ATR_KMS_KEYREF_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x21 || c > 0x7e)
            return atr_err_set(err, ATR_E_INVALID,
                               "key reference: only printable ASCII without spaces is allowed");
    }
    memcpy(ref->id, id, n);
    return ATR_OK;
}

int atr_kms_keyref_equal(const struct atr_kms_keyref *a, const struct atr_kms_keyref *b)
{
    if (a == NULL || b == NULL)
        return 0;
    return strncmp(a->id, b->id, ATR_KMS_KEYREF_MAX) == 0;
}

/* A reference as a provider received it: NUL-terminated, non-empty. */
static int keyref_ok(const struct atr_kms_keyref *ref)
{
    size_t n = strnlen(ref->id, ATR_KMS_KEYREF_MAX);
    return n > 0 && n < ATR_KMS_KEYREF_MAX;
}

atr_status atr_kms_current(struct atr_kms_keyref *out, struct atr_kms_provider *p,
                           struct atr_err *err)
{
    if (out == NULL || p == NULL)
        return atr_err_set(err, ATR_E_INVALID, "key provider: missing argument");
    memset(out->id, 0, sizeof(out->id));
    atr_status rc = p->ops->current(p, out, err);
    if (rc == ATR_OK && !keyref_ok(out))
        rc = atr_err_set(err, ATR_E_INTERNAL, "key provider %s: returned an invalid key reference",
                         p->ops->name);
    if (rc != ATR_OK)
        memset(out->id, 0, sizeof(out->id));
    return rc;
}

atr_status atr_kms_wrap(struct atr_buf *out_blob, struct atr_kms_keyref *out_ref,
                        struct atr_kms_provider *p, const struct atr_secret *secret,
                        const struct atr_kms_context *ctx, struct atr_err *err)
{
    if (out_blob == NULL || out_ref == NULL || p == NULL || secret == NULL)
        return atr_err_set(err, ATR_E_INVALID, "key provider: missing argument");
    memset(out_ref->id, 0, sizeof(out_ref->id));
    if (!atr_secret_is_set(secret) || atr_secret_len(secret) > ATR_KMS_SECRET_MAX)
        return atr_err_set(err, ATR_E_INVALID, "key provider: the secret must be 1 to %d bytes",
                           ATR_KMS_SECRET_MAX);
    ATR_TRY(atr_kms_context_check(ctx, err));
    size_t before = out_blob->len;
    atr_status rc = p->ops->wrap(p, out_blob, out_ref, secret, ctx, err);
    if (rc == ATR_OK && (!keyref_ok(out_ref) || out_blob->len <= before))
        rc = atr_err_set(err, ATR_E_INTERNAL,
                         "key provider %s: wrap returned no blob or an invalid key reference",
                         p->ops->name);
    if (rc != ATR_OK) {
        memset(out_ref->id, 0, sizeof(out_ref->id));
        if (out_blob->ptr != NULL && out_blob->len > before) {
            atr_wipe(out_blob->ptr + before, out_blob->len - before);
            out_blob->len = before;
        }
    }
    return rc;
}

atr_status atr_kms_unwrap(struct atr_secret *out, struct atr_kms_provider *p,
                          const struct atr_kms_keyref *ref, struct atr_span blob,
                          const struct atr_kms_context *ctx, struct atr_err *err)
{
    if (out == NULL || p == NULL || ref == NULL)
        return atr_err_set(err, ATR_E_INVALID, "key provider: missing argument");
    if (atr_secret_is_set(out))
        return atr_err_set(err, ATR_E_INVALID, "key provider: the output secret is not empty");
    if (blob.ptr == NULL || blob.len == 0)
        return atr_err_set(err, ATR_E_PARSE, "key provider: the wrapped blob is empty");
    if (!keyref_ok(ref))
        return atr_err_set(err, ATR_E_PARSE,
                           "key provider: the key reference is empty or "
                           "not terminated");
    ATR_TRY(atr_kms_context_check(ctx, err));
    atr_status rc = p->ops->unwrap(p, out, ref, blob, ctx, err);
    if (rc == ATR_OK && (!atr_secret_is_set(out) || atr_secret_len(out) > ATR_KMS_SECRET_MAX))
        rc = atr_err_set(err, ATR_E_INTERNAL,
                         "key provider %s: unwrap returned an empty or oversized secret",
                         p->ops->name);
    if (rc != ATR_OK)
        atr_secret_cleanup(out);
    return rc;
}
