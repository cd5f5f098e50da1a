/* SPDX-License-Identifier: Apache-2.0 */
#include "vault/vault_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/alloc.h"

struct atr_vault_store {
    sqlite3 *db;
    pthread_mutex_t lock;
};

static const char schema_v1[] =
    "CREATE TABLE vaults ("
    "  name TEXT PRIMARY KEY, settings TEXT NOT NULL, created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE TABLE keys ("
    "  vault TEXT NOT NULL REFERENCES vaults(name), name TEXT NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0, deleted_date INTEGER NOT NULL DEFAULT 0,"
    "  scheduled_purge INTEGER NOT NULL DEFAULT 0, policy TEXT,"
    "  policy_created INTEGER NOT NULL DEFAULT 0, policy_updated INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (vault, name));"
    "CREATE TABLE versions ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, vault TEXT NOT NULL, name TEXT NOT NULL,"
    "  version TEXT NOT NULL, kty TEXT NOT NULL, ops INTEGER NOT NULL, enabled INTEGER NOT NULL,"
    "  nbf INTEGER NOT NULL, exp INTEGER NOT NULL, created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL, tags TEXT NOT NULL, pub TEXT NOT NULL, sealed BLOB NOT NULL,"
    "  UNIQUE (vault, name, version), FOREIGN KEY (vault, name) REFERENCES keys(vault, name));"
    "CREATE INDEX versions_by_key ON versions(vault, name, seq);"
    "PRAGMA user_version = 1;";

#define VERSION_COLS "name, version, seq, kty, ops, enabled, nbf, exp, created, updated, tags, pub"

static atr_status db_err(struct atr_err *err, sqlite3 *db, const char *what)
{
    return atr_err_set(err, ATR_E_IO, "vault store: %s: %s", what,
                       db != NULL ? sqlite3_errmsg(db) : "no database");
}

static atr_status exec_sql(sqlite3 *db, const char *sql, struct atr_err *err)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_err(err, db, "exec");
    return ATR_OK;
}

static atr_status migrate(sqlite3 *db, struct atr_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_err(err, db, "schema version");
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (version < 0)
        return db_err(err, db, "schema version");
    if (version > 1)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "vault store: schema version %d is newer than this program (1)",
                           version);
    if (version == 1)
        return ATR_OK;
    ATR_TRY(exec_sql(db, "BEGIN IMMEDIATE", err));
    atr_status rc = exec_sql(db, schema_v1, err);
    if (rc == ATR_OK)
        rc = exec_sql(db, "COMMIT", err);
    if (rc != ATR_OK)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

atr_status atr_vault_store_open(struct atr_vault_store **out, const char *path, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && path != NULL);
    *out = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "vault store: cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    int bad_mode = fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0 || !S_ISREG(sb.st_mode);
    close(fd);
    if (bad_mode)
        return atr_err_set(err, ATR_E_IO, "vault store: %s must be a regular file with mode 0600",
                           path);
    struct atr_vault_store *s = atr_calloc(1, sizeof(*s));
    if (s == NULL)
        return ATR_E_NOMEM;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        atr_free(s);
        return atr_err_set(err, ATR_E_INTERNAL, "vault store: mutex");
    }
    atr_status rc = ATR_OK;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = db_err(err, s->db, "open");
    } else {
        sqlite3_busy_timeout(s->db, 2000);
        rc = exec_sql(s->db,
                      "PRAGMA journal_mode=WAL; PRAGMA secure_delete=ON; "
                      "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;",
                      err);
        if (rc == ATR_OK)
            rc = migrate(s->db, err);
    }
    if (rc != ATR_OK) {
        atr_vault_store_close(s);
        return rc;
    }
    *out = s;
    return ATR_OK;
}

void atr_vault_store_close(struct atr_vault_store *st)
{
    if (st == NULL)
        return;
    if (st->db != NULL) {
        (void)sqlite3_exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(st->db);
    }
    pthread_mutex_destroy(&st->lock);
    atr_free(st);
}

/* ---- statements: one call = lock, prepare, bind, step, finalize, unlock ---- */

/*
 * Binds @p fmt's parameters in order: 's' text, 'i' int64, 'b' blob (a
 * struct atr_span *), 'n' text or NULL.
 */
static int bind_all(sqlite3_stmt *stmt, const char *fmt, va_list ap)
{
    int i = 1;
    for (const char *f = fmt; *f != '\0'; f++, i++) {
        int r;
        if (*f == 's' || *f == 'n') {
            const char *v = va_arg(ap, const char *);
            r = v != NULL ? sqlite3_bind_text(stmt, i, v, -1, SQLITE_TRANSIENT)
                          : sqlite3_bind_null(stmt, i);
        } else if (*f == 'i') {
            r = sqlite3_bind_int64(stmt, i, va_arg(ap, int64_t));
        } else {
            const struct atr_span *b = va_arg(ap, const struct atr_span *);
            r = sqlite3_bind_blob(stmt, i, b->len > 0 ? (const void *)b->ptr : "", (int)b->len,
                                  SQLITE_TRANSIENT);
        }
        if (r != SQLITE_OK)
            return 0;
    }
    return 1;
}

/* Prepares @p sql and binds; the caller holds the lock. */
static atr_status prep(sqlite3_stmt **out, struct atr_vault_store *s, struct atr_err *err,
                       const char *sql, const char *fmt, ...)
{
    *out = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, out, NULL) != SQLITE_OK)
        return db_err(err, s->db, "prepare");
    va_list ap;
    va_start(ap, fmt);
    int ok = bind_all(*out, fmt, ap);
    va_end(ap);
    if (!ok) {
        sqlite3_finalize(*out);
        *out = NULL;
        return db_err(err, s->db, "bind");
    }
    return ATR_OK;
}

/* Runs a statement without rows and finalizes it. */
static atr_status run(struct atr_vault_store *s, sqlite3_stmt *stmt, int *out_changes,
                      struct atr_err *err)
{
    int r = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (r == SQLITE_CONSTRAINT)
        return atr_err_set(err, ATR_E_CONFLICT, "vault store: the object exists");
    if (r != SQLITE_DONE)
        return db_err(err, s->db, "step");
    if (out_changes != NULL)
        *out_changes = sqlite3_changes(s->db);
    return ATR_OK;
}

static char *dup_col(sqlite3_stmt *stmt, int i)
{
    const unsigned char *t = sqlite3_column_text(stmt, i);
    return atr_strdup(t != NULL ? (const char *)t : "");
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *stmt, int i)
{
    const unsigned char *t = sqlite3_column_text(stmt, i);
    snprintf(dst, cap, "%s", t != NULL ? (const char *)t : "");
}

void atr_vault_version_cleanup(struct atr_vault_version *v)
{
    if (v == NULL)
        return;
    atr_free(v->tags);
    atr_free(v->pub);
    atr_buf_cleanup(&v->sealed);
    memset(v, 0, sizeof(*v));
}

void atr_vault_key_meta_cleanup(struct atr_vault_key_meta *m)
{
    if (m == NULL)
        return;
    atr_free(m->policy);
    memset(m, 0, sizeof(*m));
}

void atr_vault_versions_free(struct atr_vault_version *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        atr_vault_version_cleanup(&v[i]);
    atr_free(v);
}

void atr_vault_store_names_free(char **names, size_t n)
{
    for (size_t i = 0; names != NULL && i < n; i++)
        atr_free(names[i]);
    atr_free(names);
}

/* Reads the VERSION_COLS of the current row (and the sealed key at column 12). */
static atr_status read_version(struct atr_vault_version *v, sqlite3_stmt *stmt, int with_sealed,
                               struct atr_err *err)
{
    memset(v, 0, sizeof(*v));
    copy_col(v->name, sizeof(v->name), stmt, 0);
    copy_col(v->version, sizeof(v->version), stmt, 1);
    v->seq = sqlite3_column_int64(stmt, 2);
    copy_col(v->kty, sizeof(v->kty), stmt, 3);
    v->ops = (unsigned)sqlite3_column_int64(stmt, 4);
    v->enabled = sqlite3_column_int(stmt, 5);
    v->nbf = sqlite3_column_int64(stmt, 6);
    v->exp = sqlite3_column_int64(stmt, 7);
    v->created = sqlite3_column_int64(stmt, 8);
    v->updated = sqlite3_column_int64(stmt, 9);
    v->tags = dup_col(stmt, 10);
    v->pub = dup_col(stmt, 11);
    atr_buf_init(&v->sealed, (size_t)1 << 20);
    if (v->tags == NULL || v->pub == NULL)
        goto nomem;
    if (with_sealed) {
        const void *b = sqlite3_column_blob(stmt, 12);
        int n = sqlite3_column_bytes(stmt, 12);
        if (n > 0 && atr_buf_append(&v->sealed, b, (size_t)n) != ATR_OK)
            goto nomem;
    }
    return ATR_OK;
nomem:
    atr_vault_version_cleanup(v);
    return atr_err_set(err, ATR_E_NOMEM, "vault store: out of memory");
}

/* Steps @p stmt collecting up to @p max versions; a further row sets *out_more. */
static atr_status collect_versions(struct atr_vault_version **out, size_t *out_n, int *out_more,
                                   struct atr_vault_store *s, sqlite3_stmt *stmt, size_t max,
                                   struct atr_err *err)
{
    *out = NULL;
    *out_n = 0;
    *out_more = 0;
    struct atr_vault_version *v = atr_calloc(max > 0 ? max : 1, sizeof(*v));
    if (v == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "vault store: out of memory");
    size_t n = 0;
    atr_status rc = ATR_OK;
    int r;
    while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == max) {
            *out_more = 1;
            break;
        }
        if ((rc = read_version(&v[n], stmt, 0, err)) != ATR_OK)
            break;
        n++;
    }
    if (rc == ATR_OK && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(err, s->db, "step");
    if (rc != ATR_OK) {
        atr_vault_versions_free(v, n);
        return rc;
    }
    *out = v;
    *out_n = n;
    return ATR_OK;
}

/* ---- vaults ---- */

atr_status atr_vault_store_vault_put(struct atr_vault_store *st, const char *name,
                                     const char *settings_json, int64_t now, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = prep(&stmt, st, err,
                         "INSERT INTO vaults(name, settings, created, updated) VALUES (?,?,?,?) "
                         "ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, "
                         "updated = excluded.updated",
                         "ssii", name, settings_json, now, now);
    if (rc == ATR_OK)
        rc = run(st, stmt, NULL, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_vault_get(char **out, struct atr_vault_store *st, const char *name,
                                     struct atr_err *err)
{
    *out = NULL;
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = prep(&stmt, st, err, "SELECT settings FROM vaults WHERE name = ?", "s", name);
    if (rc == ATR_OK) {
        int r = sqlite3_step(stmt);
        if (r == SQLITE_ROW) {
            if ((*out = dup_col(stmt, 0)) == NULL)
                rc = ATR_E_NOMEM;
        } else if (r == SQLITE_DONE) {
            rc = atr_err_set(err, ATR_E_NOT_FOUND, "vault '%s' not found", name);
        } else {
            rc = db_err(err, st->db, "step");
        }
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_vault_list(char ***out, size_t *out_n, struct atr_vault_store *st,
                                      size_t max, struct atr_err *err)
{
    *out = NULL;
    *out_n = 0;
    if (max == 0 || max > 1000)
        return atr_err_set(err, ATR_E_INVALID, "vault store: list size must be 1..1000");
    char **names = atr_calloc(max, sizeof(*names));
    if (names == NULL)
        return ATR_E_NOMEM;
    size_t n = 0;
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc =
        prep(&stmt, st, err, "SELECT name FROM vaults ORDER BY name LIMIT ?", "i", (int64_t)max);
    if (rc == ATR_OK) {
        int r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW && n < max) {
            if ((names[n] = dup_col(stmt, 0)) == NULL) {
                rc = ATR_E_NOMEM;
                break;
            }
            n++;
        }
        if (rc == ATR_OK && r != SQLITE_ROW && r != SQLITE_DONE)
            rc = db_err(err, st->db, "step");
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc != ATR_OK) {
        atr_vault_store_names_free(names, n);
        return rc;
    }
    *out = names;
    *out_n = n;
    return ATR_OK;
}

/* ---- keys ---- */

atr_status atr_vault_store_key_meta(struct atr_vault_key_meta *out, struct atr_vault_store *st,
                                    const char *vault, const char *name, struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = prep(&stmt, st, err,
                         "SELECT deleted, deleted_date, scheduled_purge, policy, policy_created, "
                         "policy_updated FROM keys WHERE vault = ? AND name = ?",
                         "ss", vault, name);
    if (rc == ATR_OK) {
        int r = sqlite3_step(stmt);
        if (r == SQLITE_ROW) {
            out->deleted = sqlite3_column_int(stmt, 0);
            out->deleted_date = sqlite3_column_int64(stmt, 1);
            out->scheduled_purge = sqlite3_column_int64(stmt, 2);
            if (sqlite3_column_type(stmt, 3) != SQLITE_NULL &&
                (out->policy = dup_col(stmt, 3)) == NULL)
                rc = ATR_E_NOMEM;
            out->policy_created = sqlite3_column_int64(stmt, 4);
            out->policy_updated = sqlite3_column_int64(stmt, 5);
        } else if (r == SQLITE_DONE) {
            rc = atr_err_set(err, ATR_E_NOT_FOUND, "key not found");
        } else {
            rc = db_err(err, st->db, "step");
        }
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_version_add(struct atr_vault_store *st, const char *vault,
                                       struct atr_vault_version *v, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    struct atr_span sealed = atr_buf_span(&v->sealed);
    pthread_mutex_lock(&st->lock);
    atr_status rc = exec_sql(st->db, "BEGIN IMMEDIATE", err);
    if (rc == ATR_OK)
        rc = prep(&stmt, st, err, "INSERT OR IGNORE INTO keys(vault, name) VALUES (?,?)", "ss",
                  vault, v->name);
    if (rc == ATR_OK)
        rc = run(st, stmt, NULL, err);
    if (rc == ATR_OK)
        rc = prep(&stmt, st, err,
                  "INSERT INTO versions(vault, name, version, kty, ops, enabled, nbf, exp, "
                  "created, updated, tags, pub, sealed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                  "ssssiiiiiissb", vault, v->name, v->version, v->kty, (int64_t)v->ops,
                  (int64_t)v->enabled, v->nbf, v->exp, v->created, v->updated,
                  v->tags != NULL ? v->tags : "{}", v->pub != NULL ? v->pub : "{}", &sealed);
    if (rc == ATR_OK)
        rc = run(st, stmt, NULL, err);
    if (rc == ATR_OK) {
        v->seq = sqlite3_last_insert_rowid(st->db);
        rc = exec_sql(st->db, "COMMIT", err);
    }
    if (rc != ATR_OK)
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_version_get(struct atr_vault_version *out, struct atr_vault_store *st,
                                       const char *vault, const char *name, const char *version,
                                       int with_sealed, struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *stmt;
    int latest = version == NULL || version[0] == '\0';
    pthread_mutex_lock(&st->lock);
    atr_status rc =
        latest ? prep(&stmt, st, err,
                      "SELECT " VERSION_COLS ", sealed FROM versions WHERE vault = ? AND name = ? "
                      "ORDER BY seq DESC LIMIT 1",
                      "ss", vault, name)
               : prep(&stmt, st, err,
                      "SELECT " VERSION_COLS ", sealed FROM versions WHERE vault = ? AND name = ? "
                      "AND version = ?",
                      "sss", vault, name, version);
    if (rc == ATR_OK) {
        int r = sqlite3_step(stmt);
        if (r == SQLITE_ROW)
            rc = read_version(out, stmt, with_sealed, err);
        else if (r == SQLITE_DONE)
            rc = atr_err_set(err, ATR_E_NOT_FOUND, "key version not found");
        else
            rc = db_err(err, st->db, "step");
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_versions_list(struct atr_vault_version **out, size_t *out_n,
                                         int *out_more, struct atr_vault_store *st,
                                         const char *vault, const char *name, int64_t after_seq,
                                         size_t max, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = prep(&stmt, st, err,
                         "SELECT " VERSION_COLS " FROM versions WHERE vault = ? AND name = ? "
                         "AND seq > ? ORDER BY seq LIMIT ?",
                         "ssii", vault, name, after_seq, (int64_t)max + 1);
    if (rc == ATR_OK) {
        rc = collect_versions(out, out_n, out_more, st, stmt, max, err);
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_keys_list(struct atr_vault_version **out, size_t *out_n, int *out_more,
                                     struct atr_vault_store *st, const char *vault, int deleted,
                                     const char *after_name, size_t max, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc =
        prep(&stmt, st, err,
             "SELECT " VERSION_COLS " FROM versions v WHERE vault = ?1 AND name > ?2 AND seq = "
             "(SELECT MAX(seq) FROM versions w WHERE w.vault = v.vault AND w.name = v.name) AND "
             "EXISTS (SELECT 1 FROM keys k WHERE k.vault = v.vault AND k.name = v.name AND "
             "k.deleted = ?3) ORDER BY name LIMIT ?4",
             "ssii", vault, after_name != NULL ? after_name : "", (int64_t)(deleted != 0),
             (int64_t)max + 1);
    if (rc == ATR_OK) {
        rc = collect_versions(out, out_n, out_more, st, stmt, max, err);
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Runs one change statement; no changed row is ATR_E_NOT_FOUND. */
static atr_status change(struct atr_vault_store *st, sqlite3_stmt *stmt, struct atr_err *err)
{
    int changes = 0;
    ATR_TRY(run(st, stmt, &changes, err));
    if (changes == 0)
        return atr_err_set(err, ATR_E_NOT_FOUND, "key not found");
    return ATR_OK;
}

atr_status atr_vault_store_version_update(struct atr_vault_store *st, const char *vault,
                                          const struct atr_vault_version *v, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = prep(&stmt, st, err,
                         "UPDATE versions SET ops = ?, enabled = ?, nbf = ?, exp = ?, tags = ?, "
                         "updated = ? WHERE vault = ? AND name = ? AND version = ?",
                         "iiiisisss", (int64_t)v->ops, (int64_t)v->enabled, v->nbf, v->exp,
                         v->tags != NULL ? v->tags : "{}", v->updated, vault, v->name, v->version);
    if (rc == ATR_OK)
        rc = change(st, stmt, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_key_set_deleted(struct atr_vault_store *st, const char *vault,
                                           const char *name, int deleted, int64_t deleted_date,
                                           int64_t scheduled_purge, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc =
        prep(&stmt, st, err,
             "UPDATE keys SET deleted = ?, deleted_date = ?, scheduled_purge = ? "
             "WHERE vault = ? AND name = ?",
             "iiiss", (int64_t)(deleted != 0), deleted_date, scheduled_purge, vault, name);
    if (rc == ATR_OK)
        rc = change(st, stmt, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_key_purge(struct atr_vault_store *st, const char *vault,
                                     const char *name, struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = exec_sql(st->db, "BEGIN IMMEDIATE", err);
    if (rc == ATR_OK)
        rc = prep(&stmt, st, err, "DELETE FROM versions WHERE vault = ? AND name = ?", "ss", vault,
                  name);
    if (rc == ATR_OK)
        rc = run(st, stmt, NULL, err);
    if (rc == ATR_OK)
        rc = prep(&stmt, st, err, "DELETE FROM keys WHERE vault = ? AND name = ?", "ss", vault,
                  name);
    if (rc == ATR_OK)
        rc = change(st, stmt, err);
    if (rc == ATR_OK)
        rc = exec_sql(st->db, "COMMIT", err);
    if (rc != ATR_OK)
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_key_set_policy(struct atr_vault_store *st, const char *vault,
                                          const char *name, const char *policy_json, int64_t now,
                                          struct atr_err *err)
{
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc = prep(&stmt, st, err,
                         "UPDATE keys SET policy = ?, policy_updated = ?, policy_created = "
                         "CASE WHEN policy_created = 0 THEN ? ELSE policy_created END "
                         "WHERE vault = ? AND name = ?",
                         "niiss", policy_json, now, now, vault, name);
    if (rc == ATR_OK)
        rc = change(st, stmt, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

atr_status atr_vault_store_scan(struct atr_vault_key_ref **out, size_t *out_n,
                                struct atr_vault_store *st, int what, int64_t now, size_t max,
                                struct atr_err *err)
{
    *out = NULL;
    *out_n = 0;
    if (max == 0)
        return ATR_OK;
    struct atr_vault_key_ref *refs = atr_calloc(max, sizeof(*refs));
    if (refs == NULL)
        return ATR_E_NOMEM;
    size_t n = 0;
    sqlite3_stmt *stmt;
    pthread_mutex_lock(&st->lock);
    atr_status rc =
        what == 0 ? prep(&stmt, st, err,
                         "SELECT vault, name FROM keys WHERE deleted = 0 AND policy IS NOT NULL "
                         "ORDER BY vault, name LIMIT ?",
                         "i", (int64_t)max)
                  : prep(&stmt, st, err,
                         "SELECT vault, name FROM keys WHERE deleted = 1 AND scheduled_purge <= ? "
                         "ORDER BY vault, name LIMIT ?",
                         "ii", now, (int64_t)max);
    if (rc == ATR_OK) {
        int r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW && n < max) {
            copy_col(refs[n].vault, sizeof(refs[n].vault), stmt, 0);
            copy_col(refs[n].name, sizeof(refs[n].name), stmt, 1);
            n++;
        }
        if (r != SQLITE_ROW && r != SQLITE_DONE)
            rc = db_err(err, st->db, "step");
        sqlite3_finalize(stmt);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc != ATR_OK || n == 0) {
        atr_free(refs);
        return rc;
    }
    *out = refs;
    *out_n = n;
    return ATR_OK;
}
