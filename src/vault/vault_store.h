/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_VAULT_STORE_H
#define ATR_VAULT_STORE_H

/*
 * The key vault server's SQLite file (WAL, synchronous=FULL,
 * secure_delete, created 0600, versioned schema): vaults with their
 * settings document, keys (soft-delete state, rotation policy) and key
 * versions (public key, attributes, tags, and the private key sealed by the
 * caller under the vault master key: this module stores bytes and never
 * sees key material in clear).
 *
 * "Latest version" means the most recently created one (highest sequence
 * number), as in Azure.
 *
 * Thread-safety: one connection behind one mutex; every call is atomic.
 * Compound changes (check, then write) are serialised by the caller.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"

#define ATR_VAULT_STORE_PAGE_MAX 25 /* Azure's largest maxresults */

struct atr_vault_store;

/* One key version. Strings are owned (atr_free via atr_vault_version_cleanup). */
struct atr_vault_version {
    char name[128];
    char version[33];
    int64_t seq;
    char kty[16]; /* "RSA", "RSA-HSM", "EC", "EC-HSM" */
    unsigned ops; /* atr_vault_op bits */
    int enabled;
    int64_t nbf; /* 0 = unset */
    int64_t exp; /* 0 = unset */
    int64_t created;
    int64_t updated;
    char *tags;            /* JSON object text */
    char *pub;             /* JSON object text: the public JWK members (n, e / crv, x, y) */
    struct atr_buf sealed; /* the sealed private key; empty unless asked for */
};

/* The state of a key name. */
struct atr_vault_key_meta {
    int deleted;
    int64_t deleted_date;
    int64_t scheduled_purge;
    char *policy; /* rotation policy JSON text, NULL = none; owned */
    int64_t policy_created;
    int64_t policy_updated;
};

void atr_vault_version_cleanup(struct atr_vault_version *v);
void atr_vault_key_meta_cleanup(struct atr_vault_key_meta *m);

/**
 * Opens (creating) the store at @p path.
 * @return ATR_E_IO (cannot open, not a database, group/other permissions on
 *         the file), ATR_E_UNSUPPORTED (a newer schema), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_vault_store_open(struct atr_vault_store **out, const char *path,
                                               struct atr_err *err);

/** Closes the store. NULL is allowed. */
void atr_vault_store_close(struct atr_vault_store *st);

/* ---- vaults -------------------------------------------------------------- */

/** Creates or replaces vault @p name with the settings document @p settings_json. */
ATR_MUST_CHECK atr_status atr_vault_store_vault_put(struct atr_vault_store *st, const char *name,
                                                    const char *settings_json, int64_t now,
                                                    struct atr_err *err);

/**
 * Reads the settings document of vault @p name into @p out (a NUL-terminated
 * string, owned: atr_free).
 * @return ATR_E_NOT_FOUND, ATR_E_IO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_vault_store_vault_get(char **out, struct atr_vault_store *st,
                                                    const char *name, struct atr_err *err);

/**
 * Lists vault names in order, at most @p max (1..1000).
 * @param[out] out an array of @p *out_n owned strings (free with
 *             atr_vault_store_names_free).
 */
ATR_MUST_CHECK atr_status atr_vault_store_vault_list(char ***out, size_t *out_n,
                                                     struct atr_vault_store *st, size_t max,
                                                     struct atr_err *err);

void atr_vault_store_names_free(char **names, size_t n);

/* ---- keys ---------------------------------------------------------------- */

/**
 * The state of key @p name.
 * @return ATR_E_NOT_FOUND when the name has never been used or was purged.
 */
ATR_MUST_CHECK atr_status atr_vault_store_key_meta(struct atr_vault_key_meta *out,
                                                   struct atr_vault_store *st, const char *vault,
                                                   const char *name, struct atr_err *err);

/**
 * Adds a version (the key row is created when missing). @p v->sealed must
 * hold the sealed private key; @p v->seq is assigned.
 * @return ATR_E_CONFLICT (the version exists), ATR_E_IO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_vault_store_version_add(struct atr_vault_store *st, const char *vault,
                                                      struct atr_vault_version *v,
                                                      struct atr_err *err);

/**
 * Reads one version: @p version NULL or "" = the latest. With
 * @p with_sealed the sealed private key is read into out->sealed.
 * @return ATR_E_NOT_FOUND, ATR_E_IO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_vault_store_version_get(struct atr_vault_version *out,
                                                      struct atr_vault_store *st, const char *vault,
                                                      const char *name, const char *version,
                                                      int with_sealed, struct atr_err *err);

/**
 * Pages through the versions of a key (oldest first) after version sequence
 * @p after_seq (0 = from the start), at most @p max. Sealed keys are not read.
 * @param[out] out an array of @p *out_n versions (atr_vault_versions_free).
 * @param[out] out_more 1 when more versions follow.
 */
ATR_MUST_CHECK atr_status atr_vault_store_versions_list(
    struct atr_vault_version **out, size_t *out_n, int *out_more, struct atr_vault_store *st,
    const char *vault, const char *name, int64_t after_seq, size_t max, struct atr_err *err);

/**
 * Pages through the keys of a vault by name (after @p after_name, "" = from
 * the start), live keys or (@p deleted) soft-deleted ones, giving the latest
 * version of each.
 */
ATR_MUST_CHECK atr_status atr_vault_store_keys_list(struct atr_vault_version **out, size_t *out_n,
                                                    int *out_more, struct atr_vault_store *st,
                                                    const char *vault, int deleted,
                                                    const char *after_name, size_t max,
                                                    struct atr_err *err);

void atr_vault_versions_free(struct atr_vault_version *v, size_t n);

/**
 * Writes the mutable attributes of one version (ops, enabled, nbf, exp,
 * tags, updated) from @p v.
 * @return ATR_E_NOT_FOUND, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_vault_store_version_update(struct atr_vault_store *st,
                                                         const char *vault,
                                                         const struct atr_vault_version *v,
                                                         struct atr_err *err);

/** Marks a key deleted (@p deleted 1, with the dates) or live again (0). */
ATR_MUST_CHECK atr_status atr_vault_store_key_set_deleted(struct atr_vault_store *st,
                                                          const char *vault, const char *name,
                                                          int deleted, int64_t deleted_date,
                                                          int64_t scheduled_purge,
                                                          struct atr_err *err);

/** Removes a key and all its versions for good. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_vault_store_key_purge(struct atr_vault_store *st, const char *vault,
                                                    const char *name, struct atr_err *err);

/** Sets the rotation policy document of a key (@p policy_json NULL clears it). */
ATR_MUST_CHECK atr_status atr_vault_store_key_set_policy(struct atr_vault_store *st,
                                                         const char *vault, const char *name,
                                                         const char *policy_json, int64_t now,
                                                         struct atr_err *err);

/* A (vault, key) pair found by a scan. */
struct atr_vault_key_ref {
    char vault[32];
    char name[128];
};

/**
 * Lists live keys that have a rotation policy (@p what 0) or deleted keys
 * whose scheduled purge date is <= @p now (@p what 1), at most @p max.
 * @param[out] out an array (atr_free).
 */
ATR_MUST_CHECK atr_status atr_vault_store_scan(struct atr_vault_key_ref **out, size_t *out_n,
                                               struct atr_vault_store *st, int what, int64_t now,
                                               size_t max, struct atr_err *err);

#endif /* ATR_VAULT_STORE_H */
