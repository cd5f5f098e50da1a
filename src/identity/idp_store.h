/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_IDENTITY_IDP_STORE_H
#define ATR_IDENTITY_IDP_STORE_H

/*
 * Persistent state of the identity server (`atrest idp`), in one SQLite
 * file: directories (tenants), applications with their credentials (client
 * secrets as salted PBKDF2-HMAC-SHA256 hashes, RSA public keys for
 * client_assertion), service principals per directory, app role grants and
 * the token-signing keys.
 *
 * The file is created 0600, opened in WAL mode with secure_delete and
 * foreign keys on; the schema version lives in PRAGMA user_version and a
 * file with a newer version is refused.
 *
 * Dev grade: signing keys are stored as unencrypted PKCS#8 PEM in the same
 * file (a production identity provider keeps them in an HSM).
 *
 * Ids are GUIDs (random, version 4, lower case). Timestamps are Unix seconds
 * handed in by the caller (from the injectable clock).
 *
 * Thread-safety: one connection behind a mutex; every function may be
 * called from any thread.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/secmem.h"

#define ATR_IDP_GUID_LEN  36 /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
#define ATR_IDP_NAME_MAX  256
#define ATR_IDP_KID_MAX   64
#define ATR_IDP_ROLE_MAX  64
#define ATR_IDP_SCHEMA    1
#define ATR_IDP_PEM_MAX   ((size_t)16 * 1024)
#define ATR_IDP_LIST_MAX  1000 /* rows returned by one list call */
#define ATR_IDP_PBKDF2_IT 100000

struct atr_idp_store;

struct atr_idp_directory {
    char id[ATR_IDP_GUID_LEN + 1];
    char display_name[ATR_IDP_NAME_MAX + 1];
    int64_t created_s;
};

struct atr_idp_app {
    char app_id[ATR_IDP_GUID_LEN + 1];
    char home_tid[ATR_IDP_GUID_LEN + 1];
    char display_name[ATR_IDP_NAME_MAX + 1];
    int multi_tenant; /* 1: may get tokens in any directory with an enabled SP */
    int64_t created_s;
};

struct atr_idp_sp {
    char id[ATR_IDP_GUID_LEN + 1];
    char tid[ATR_IDP_GUID_LEN + 1];
    char app_id[ATR_IDP_GUID_LEN + 1];
    char display_name[ATR_IDP_NAME_MAX + 1];
    int account_enabled;
    int64_t created_s;
};

struct atr_idp_key_row {
    char kid[ATR_IDP_KID_MAX + 1];
    int64_t publish_s;     /* appears in the JWKS from here */
    int64_t active_s;      /* signs from here (the newest active key signs) */
    int64_t retire_s;      /* leaves the JWKS from here; 0 = not scheduled */
    struct atr_secret pem; /* PKCS#8 PEM text, NUL-terminated */
};

/** Formats a random version-4 GUID into @p out. @return ATR_E_CRYPTO. */
ATR_MUST_CHECK atr_status atr_idp_guid_new(char out[ATR_IDP_GUID_LEN + 1], struct atr_err *err);

/** 1 when @p s is a GUID in canonical text form (any case). */
int atr_idp_guid_ok(const char *s);

/**
 * Opens (creating 0600 when missing) the store at @p path and migrates it.
 * @param[out] out owned by the caller (atr_idp_store_free).
 * @return ATR_E_IO (cannot open, not a database, wrong mode), ATR_E_CONFIG
 *         (schema newer than this program), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_idp_store_open(struct atr_idp_store **out, const char *path,
                                             struct atr_err *err);

/** Closes the store. NULL is allowed. */
void atr_idp_store_free(struct atr_idp_store *s);

/* ---- directories ---- */

/** Creates a directory with a new GUID. @return ATR_E_INVALID (name), ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_directory_create(struct atr_idp_directory *out,
                                                         struct atr_idp_store *s,
                                                         const char *display_name, int64_t now_s,
                                                         struct atr_err *err);
/** @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_directory_get(struct atr_idp_directory *out,
                                                      struct atr_idp_store *s, const char *id,
                                                      struct atr_err *err);
/**
 * Lists directories (at most ATR_IDP_LIST_MAX).
 * @param[out] out array owned by the caller (atr_free), NULL when empty.
 */
ATR_MUST_CHECK atr_status atr_idp_store_directory_list(struct atr_idp_directory **out,
                                                       size_t *out_n, struct atr_idp_store *s,
                                                       struct atr_err *err);

/* ---- applications and credentials ---- */

/** Creates an application registered in @p home_tid. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_app_create(struct atr_idp_app *out, struct atr_idp_store *s,
                                                   const char *home_tid, const char *display_name,
                                                   int multi_tenant, int64_t now_s,
                                                   struct atr_err *err);
/** @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_app_get(struct atr_idp_app *out, struct atr_idp_store *s,
                                                const char *app_id, struct atr_err *err);

/**
 * Stores a salted PBKDF2-HMAC-SHA256 hash of @p secret for @p app_id.
 * @param expires_s 0 = never.
 * @return ATR_E_NOT_FOUND (app), ATR_E_INVALID, ATR_E_CRYPTO, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_idp_store_secret_add(struct atr_idp_store *s, const char *app_id,
                                                   const char *secret, int64_t expires_s,
                                                   int64_t now_s, struct atr_err *err);

/**
 * Checks @p secret against every unexpired secret of @p app_id (constant
 * time per comparison).
 * @param[out] out_ok 1 when one matches.
 * @return ATR_E_IO, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_idp_store_secret_check(int *out_ok, struct atr_idp_store *s,
                                                     const char *app_id, const char *secret,
                                                     int64_t now_s, struct atr_err *err);

/**
 * Registers a credential for client_assertion: an RSA public key ("PUBLIC
 * KEY" PEM) or an X.509 certificate with an RSA key ("CERTIFICATE" PEM, whose
 * thumbprint then matches the assertion header's x5t).
 * @return ATR_E_NOT_FOUND (app), ATR_E_INVALID (neither),
 *         ATR_E_TOO_LARGE, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_idp_store_cert_add(struct atr_idp_store *s, const char *app_id,
                                                 const char *pem, int64_t now_s,
                                                 struct atr_err *err);

/**
 * The registered public keys of @p app_id as PEM strings.
 * @param[out] out array of strings; release with atr_idp_strings_free.
 */
ATR_MUST_CHECK atr_status atr_idp_store_cert_list(char ***out, size_t *out_n,
                                                  struct atr_idp_store *s, const char *app_id,
                                                  struct atr_err *err);

/** Frees an array of @p n strings from this module. NULL is allowed. */
void atr_idp_strings_free(char **v, size_t n);

/* ---- service principals and roles ---- */

/**
 * Creates the service principal of @p app_id in @p tid.
 * @return ATR_E_NOT_FOUND (directory or app), ATR_E_FORBIDDEN (single-tenant
 *         app of another directory), ATR_E_CONFLICT (exists), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_idp_store_sp_create(struct atr_idp_sp *out, struct atr_idp_store *s,
                                                  const char *tid, const char *app_id, int enabled,
                                                  int64_t now_s, struct atr_err *err);
/** By id within @p tid. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_sp_get(struct atr_idp_sp *out, struct atr_idp_store *s,
                                               const char *tid, const char *id,
                                               struct atr_err *err);
/** By app id within @p tid. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_sp_find(struct atr_idp_sp *out, struct atr_idp_store *s,
                                                const char *tid, const char *app_id,
                                                struct atr_err *err);
/**
 * Lists the service principals of @p tid (only those of @p app_id when not
 * NULL). @param[out] out owned by the caller (atr_free), NULL when empty.
 */
ATR_MUST_CHECK atr_status atr_idp_store_sp_list(struct atr_idp_sp **out, size_t *out_n,
                                                struct atr_idp_store *s, const char *tid,
                                                const char *app_id, struct atr_err *err);
/** @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_sp_set_enabled(struct atr_idp_store *s, const char *tid,
                                                       const char *id, int enabled,
                                                       struct atr_err *err);
/** Deletes the principal and its role grants. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_sp_delete(struct atr_idp_store *s, const char *tid,
                                                  const char *id, struct atr_err *err);

/** 1 when @p role is one this server grants (see idp_store.c). */
int atr_idp_role_known(const char *role);

/**
 * Grants @p role to the principal @p sp_id of @p tid (idempotent).
 * @return ATR_E_INVALID (unknown role), ATR_E_NOT_FOUND, ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_idp_store_role_grant(struct atr_idp_store *s, const char *tid,
                                                   const char *sp_id, const char *role,
                                                   struct atr_err *err);
/** Removes a grant. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_role_revoke(struct atr_idp_store *s, const char *tid,
                                                    const char *sp_id, const char *role,
                                                    struct atr_err *err);
/** The roles of @p sp_id, sorted; release with atr_idp_strings_free. */
ATR_MUST_CHECK atr_status atr_idp_store_roles(char ***out, size_t *out_n, struct atr_idp_store *s,
                                              const char *sp_id, struct atr_err *err);

/* ---- signing keys ---- */

/** Adds a signing key. @return ATR_E_CONFLICT (kid exists), ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_key_add(struct atr_idp_store *s, const char *kid,
                                                const char *pem, int64_t publish_s,
                                                int64_t active_s, struct atr_err *err);
/** Schedules the removal of @p kid from the JWKS. @return ATR_E_NOT_FOUND, ATR_E_IO. */
ATR_MUST_CHECK atr_status atr_idp_store_key_retire(struct atr_idp_store *s, const char *kid,
                                                   int64_t retire_s, struct atr_err *err);
/** Deletes keys whose retire time is before @p now_s. */
ATR_MUST_CHECK atr_status atr_idp_store_key_purge(struct atr_idp_store *s, int64_t now_s,
                                                  struct atr_err *err);
/**
 * Every signing key, oldest first.
 * @param[out] out owned by the caller (atr_idp_key_rows_free).
 */
ATR_MUST_CHECK atr_status atr_idp_store_key_list(struct atr_idp_key_row **out, size_t *out_n,
                                                 struct atr_idp_store *s, struct atr_err *err);
/** Wipes and frees rows from atr_idp_store_key_list. NULL is allowed. */
void atr_idp_key_rows_free(struct atr_idp_key_row *rows, size_t n);

#endif /* ATR_IDENTITY_IDP_STORE_H */
