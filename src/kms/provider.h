/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_KMS_PROVIDER_H
#define ATR_KMS_PROVIDER_H

/*
 * The key-provider interface: something that wraps and unwraps small secrets
 * (the 32-byte tenant keys, design section 2) under a versioned root key it
 * holds and never hands out.
 *
 * A provider is a struct atr_kms_provider embedded as the first member of
 * the implementation's own object, with a const table of operations (the
 * esdk keyring / materials pattern). Callers use only the public wrappers
 * below, which validate arguments before the call and the result after it:
 * atr_kms_unwrap() wipes whatever the provider produced when it reports an
 * error, and refuses an empty or oversized result.
 *
 *  - current: the key reference wraps would use now (the newest version);
 *  - wrap: secret + context -> opaque blob + the key reference of the version
 *    actually used (store both: the reference is needed to unwrap);
 *  - unwrap: blob + key reference + the same context -> secret;
 *  - destroy: releases the provider (reached through atr_kms_provider_free()).
 *
 * Key references are text (struct atr_kms_keyref): "srk/3" for version 3 of
 * the service root key file (kms/srk_file.h), a key identifier with version
 * ("https://v.vault.azure.net/keys/k/0123...") for Azure Key Vault, a slot
 * label and version for a PKCS#11 token. They are not secret and may be
 * logged and stored beside the blob. Two references name the same key
 * version exactly when their texts are equal, so "is this blob wrapped under
 * the current version?" is a string comparison with current().
 *
 * The context (struct atr_kms_context: a purpose and a tenant id) is bound
 * to the blob by providers that can authenticate associated data (the SRK
 * file uses it as AES-GCM AAD), so a blob of tenant A does not unwrap as
 * tenant B's, nor a tenant key as some other kind of secret. Providers whose
 * primitive cannot bind data (Key Vault's RSA-OAEP wrapKey) ignore it; in
 * atrest they only ever wrap blobs already made by the SRK provider
 * (CK-wrap(SRK-wrap(TK)), design section 2), whose inner layer binds it.
 *
 * Remote providers. An HSM (PKCS#11) or the Azure Key Vault client implements
 * the same operations: calls may then block for a network round trip and
 * fail with ATR_E_NETWORK, ATR_E_TLS, ATR_E_TIMEOUT, ATR_E_FORBIDDEN (access
 * policy, firewall, disabled principal), ATR_E_THROTTLED, ATR_E_UNAVAILABLE,
 * ATR_E_NOT_FOUND (key or version deleted or purged) or ATR_E_UPSTREAM; they
 * must bound their own time (timeouts), because callers run them outside
 * their locks but wait for them. The vault client's asynchronous form (many
 * concurrent calls on the libcurl multi interface) will be a sibling
 * interface with start/complete callbacks; vt_size lets this table grow
 * without breaking existing providers.
 *
 * Ownership and thread-safety: providers are long-lived and shared, so they
 * are reference counted: the creator holds one reference;
 * atr_kms_provider_retain() adds one and atr_kms_provider_free() drops one,
 * destroying the provider with the last. Every provider must be safe to call
 * from several threads at once (each documents how).
 */

#include <stdatomic.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

/* Longest key reference, terminating NUL included (a Key Vault kid fits). */
#define ATR_KMS_KEYREF_MAX 512
/* Longest secret a provider wraps; tenant keys are 32 bytes. */
#define ATR_KMS_SECRET_MAX 64
/* Longest purpose and tenant id in a context, in bytes (no NUL counted). */
#define ATR_KMS_PURPOSE_MAX 64
#define ATR_KMS_TENANT_MAX  255

/* Purpose of a wrapped tenant key (design section 2: SRK-wrap(TK)). */
#define ATR_KMS_PURPOSE_TK "tenant-key"

/** A key reference: NUL-terminated printable ASCII, not secret. */
struct atr_kms_keyref {
    char id[ATR_KMS_KEYREF_MAX];
};

/** What a wrapped secret is bound to (both members required, non-empty). */
struct atr_kms_context {
    const char *purpose; /* e.g. ATR_KMS_PURPOSE_TK; at most ATR_KMS_PURPOSE_MAX bytes */
    const char *tenant;  /* tenant id; at most ATR_KMS_TENANT_MAX bytes */
};

struct atr_kms_provider;

/*
 * Operations of a provider. The wrappers below have validated every argument
 * before an operation runs; out-parameters are empty (buffers are appended
 * to). An operation that fails must leave no output behind: nothing appended
 * to the buffer and the secret empty (the unwrap wrapper also enforces it).
 */
struct atr_kms_provider_ops {
    size_t vt_size;   /* sizeof(struct atr_kms_provider_ops) the provider was built with */
    const char *name; /* short, static: "srk-file", "pkcs11", "akv" */
    atr_status (*current)(struct atr_kms_provider *p, struct atr_kms_keyref *out,
                          struct atr_err *err);
    atr_status (*wrap)(struct atr_kms_provider *p, struct atr_buf *out_blob,
                       struct atr_kms_keyref *out_ref, const struct atr_secret *secret,
                       const struct atr_kms_context *ctx, struct atr_err *err);
    atr_status (*unwrap)(struct atr_kms_provider *p, struct atr_secret *out,
                         const struct atr_kms_keyref *ref, struct atr_span blob,
                         const struct atr_kms_context *ctx, struct atr_err *err);
    void (*destroy)(struct atr_kms_provider *p);
};

/** The interface object; the first member of every provider. */
struct atr_kms_provider {
    const struct atr_kms_provider_ops *ops;
    atomic_long refs;
};

/**
 * For implementers: sets @p p up with @p ops and one reference (the
 * creator's). Cannot fail; @p ops must have every member set and outlive
 * the provider.
 */
void atr_kms_provider_init(struct atr_kms_provider *p, const struct atr_kms_provider_ops *ops);

/** Adds a reference to @p p (not NULL); release it with atr_kms_provider_free(). */
void atr_kms_provider_retain(struct atr_kms_provider *p);

/**
 * Drops one reference; the last one destroys the provider (which wipes the
 * root keys it holds). NULL is allowed.
 */
void atr_kms_provider_free(struct atr_kms_provider *p);

/** The provider's static name ("srk-file"); "?" for NULL. */
const char *atr_kms_provider_name(const struct atr_kms_provider *p);

/**
 * The reference of the key version wraps would use now.
 * @param[out] out  set on ATR_OK (emptied on failure).
 * @return ATR_E_INVALID for NULL arguments; remote providers also the
 *         network codes listed above.
 */
ATR_MUST_CHECK atr_status atr_kms_current(struct atr_kms_keyref *out, struct atr_kms_provider *p,
                                          struct atr_err *err);

/**
 * Wraps @p secret, bound to @p ctx, under the provider's current key version.
 * @param[out] out_blob  the wrapped form is appended (opaque; its format is
 *                       the provider's, see docs/keys.md); nothing is
 *                       appended on failure.
 * @param[out] out_ref   the reference of the version used; store it with the
 *                       blob.
 * @param secret         1..ATR_KMS_SECRET_MAX bytes; only read.
 * @return ATR_E_INVALID (missing argument, secret size, context empty or too
 *         long), ATR_E_NOMEM, ATR_E_TOO_LARGE (the buffer's cap), ATR_E_CRYPTO,
 *         ATR_E_IO; remote providers also the network codes listed above.
 */
ATR_MUST_CHECK atr_status atr_kms_wrap(struct atr_buf *out_blob, struct atr_kms_keyref *out_ref,
                                       struct atr_kms_provider *p, const struct atr_secret *secret,
                                       const struct atr_kms_context *ctx, struct atr_err *err);

/**
 * Unwraps @p blob made by atr_kms_wrap() with the reference it returned and
 * the same context.
 * @param[out] out  an empty secret; on ATR_OK it holds 1..ATR_KMS_SECRET_MAX
 *                  bytes owned by the caller; on failure it is empty.
 * @return ATR_E_AUTH_FAILED when the blob does not authenticate (other
 *         tenant or purpose, modified blob, wrong key), ATR_E_NOT_FOUND when
 *         the referenced version is unknown, ATR_E_PARSE for a malformed
 *         blob or reference, ATR_E_UNSUPPORTED for an unknown blob format
 *         version, ATR_E_INVALID for bad arguments, ATR_E_NOMEM,
 *         ATR_E_CRYPTO; remote providers also the network codes above.
 */
ATR_MUST_CHECK atr_status atr_kms_unwrap(struct atr_secret *out, struct atr_kms_provider *p,
                                         const struct atr_kms_keyref *ref, struct atr_span blob,
                                         const struct atr_kms_context *ctx, struct atr_err *err);

/**
 * Checks @p ctx: both members present, non-empty, within their maximum
 * lengths. For providers that encode the context themselves.
 * @return ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_kms_context_check(const struct atr_kms_context *ctx,
                                                struct atr_err *err);

/**
 * Sets @p ref to the text @p id.
 * @return ATR_E_INVALID if @p id is empty, too long, or not printable ASCII
 *         (@p ref is then emptied).
 */
ATR_MUST_CHECK atr_status atr_kms_keyref_set(struct atr_kms_keyref *ref, const char *id,
                                             struct atr_err *err);

/** 1 if @p a and @p b name the same key version (both non-NULL). */
int atr_kms_keyref_equal(const struct atr_kms_keyref *a, const struct atr_kms_keyref *b);

#endif /* ATR_KMS_PROVIDER_H */
