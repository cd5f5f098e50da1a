/* SPDX-License-Identifier: Apache-2.0 */
#include "identity/idp_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "base/alloc.h"
#include "crypto/rand.h"
#include "crypto/rsa.h"
#include "crypto/x509.h"

#define SALT_LEN 16
#define HASH_LEN 32

struct atr_idp_store {
    sqlite3 *db;
    pthread_mutex_t lock;
};

/* The app roles our services check, plus the Graph role of directory admins. */
static const char *const known_roles[] = {
    "DataEncryption.Admin",
    "Records.Write",
    "Records.Read",
    "Application.ReadWrite.All",
};

static const char schema_v1[] =
    "CREATE TABLE directories ("
    "  id TEXT PRIMARY KEY, display_name TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE applications ("
    "  app_id TEXT PRIMARY KEY, home_tid TEXT NOT NULL REFERENCES directories(id),"
    "  display_name TEXT NOT NULL, multi_tenant INTEGER NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE app_secrets ("
    "  id INTEGER PRIMARY KEY, app_id TEXT NOT NULL REFERENCES applications(app_id),"
    "  salt BLOB NOT NULL, hash BLOB NOT NULL, iterations INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE app_keys ("
    "  id INTEGER PRIMARY KEY, app_id TEXT NOT NULL REFERENCES applications(app_id),"
    "  pem TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE service_principals ("
    "  id TEXT PRIMARY KEY, tid TEXT NOT NULL REFERENCES directories(id),"
    "  app_id TEXT NOT NULL REFERENCES applications(app_id), display_name TEXT NOT NULL,"
    "  account_enabled INTEGER NOT NULL, created INTEGER NOT NULL, UNIQUE (tid, app_id));"
    "CREATE TABLE role_grants ("
    "  sp_id TEXT NOT NULL REFERENCES service_principals(id) ON DELETE CASCADE,"
    "  role TEXT NOT NULL, PRIMARY KEY (sp_id, role));"
    "CREATE TABLE signing_keys ("
    "  kid TEXT PRIMARY KEY, pem TEXT NOT NULL, publish INTEGER NOT NULL,"
    "  active INTEGER NOT NULL, retire INTEGER NOT NULL DEFAULT 0);"
    "PRAGMA user_version = 1;";

static atr_status db_err(struct atr_err *err, sqlite3 *db, const char *what)
{
    return atr_err_set(err, ATR_E_IO, "idp store: %s: %s", what,
                       db != NULL ? sqlite3_errmsg(db) : "no database");
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    snprintf(dst, cap, "%s", (const char *)src);
}

atr_status atr_idp_guid_new(char out[ATR_IDP_GUID_LEN + 1], struct atr_err *err)
{
    uint8_t b[16];
    ATR_TRY(atr_rand_bytes(b, sizeof(b), err));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, ATR_IDP_GUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return ATR_OK;
}

int atr_idp_guid_ok(const char *s)
{
    if (s == NULL || strlen(s) != ATR_IDP_GUID_LEN)
        return 0;
    for (size_t i = 0; i < ATR_IDP_GUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

int atr_idp_role_known(const char *role)
{
    if (role == NULL)
        return 0;
    for (size_t i = 0; i < ATR_ARRAY_LEN(known_roles); i++)
        if (strcmp(role, known_roles[i]) == 0)
            return 1;
    return 0;
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
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (v < 0)
        return db_err(err, db, "schema version");
    if (v > ATR_IDP_SCHEMA)
        return atr_err_set(err, ATR_E_CONFIG,
                           "idp store: schema version %d is newer than this program (%d)", v,
                           ATR_IDP_SCHEMA);
    if (v == 0) {
        ATR_TRY(exec_sql(db, "BEGIN IMMEDIATE", err));
        atr_status rc = exec_sql(db, schema_v1, err);
        if (rc != ATR_OK) {
            (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        ATR_TRY(exec_sql(db, "COMMIT", err));
    }
    return ATR_OK;
}

atr_status atr_idp_store_open(struct atr_idp_store **out, const char *path, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && path != NULL);
    *out = NULL;
    /* create the file 0600 ourselves: SQLite would honour the umask */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "idp store: cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    int bad_mode = fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0 || !S_ISREG(sb.st_mode);
    close(fd);
    if (bad_mode)
        return atr_err_set(err, ATR_E_IO, "idp store: %s must be a regular file with mode 0600",
                           path);
    struct atr_idp_store *s = atr_calloc(1, sizeof(*s));
    if (s == NULL)
        return ATR_E_NOMEM;
    atr_status rc = ATR_OK;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        atr_free(s);
        return atr_err_set(err, ATR_E_INTERNAL, "idp store: mutex");
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = db_err(err, s->db, "open");
        goto done;
    }
    sqlite3_busy_timeout(s->db, 2000);
    if ((rc = exec_sql(s->db,
                       "PRAGMA journal_mode=WAL; PRAGMA secure_delete=ON; "
                       "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;",
                       err)) != ATR_OK)
        goto done;
    if ((rc = migrate(s->db, err)) != ATR_OK)
        goto done;
done:
    if (rc != ATR_OK) {
        atr_idp_store_free(s);
        return rc;
    }
    *out = s;
    return ATR_OK;
}

void atr_idp_store_free(struct atr_idp_store *s)
{
    if (s == NULL)
        return;
    if (s->db != NULL) {
        (void)sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(s->db);
    }
    pthread_mutex_destroy(&s->lock);
    atr_free(s);
}

/* ---- statement helpers (called with the lock held) ---- */

static atr_status prep(sqlite3_stmt **out, struct atr_idp_store *s, const char *sql,
                       struct atr_err *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, out, NULL) != SQLITE_OK)
        return db_err(err, s->db, "prepare");
    return ATR_OK;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) == SQLITE_OK;
}

/* Runs a statement without rows; *out_changes gets the changed row count. */
static atr_status step_done(struct atr_idp_store *s, sqlite3_stmt *st, int *out_changes,
                            struct atr_err *err)
{
    int r = sqlite3_step(st);
    if (r == SQLITE_CONSTRAINT)
        return atr_err_set(err, ATR_E_CONFLICT, "idp store: the object already exists");
    if (r != SQLITE_DONE)
        return db_err(err, s->db, "step");
    if (out_changes != NULL)
        *out_changes = sqlite3_changes(s->db);
    return ATR_OK;
}

/*
 * Reads every row of @p st (bound, not yet stepped; the caller holds the
 * lock and finalizes) into a new array of at most @p max elements of @p size
 * bytes, filled by @p row. The array grows as rows arrive. On failure, or
 * when there is no row, nothing is handed out and @p discard releases the
 * rows already read (NULL: a plain free).
 */
typedef atr_status (*row_fn)(void *elem, sqlite3_stmt *st, struct atr_err *err);
typedef void (*rows_free_fn)(void *rows, size_t n);

static atr_status collect_rows(void **out, size_t *out_n, struct atr_idp_store *s, sqlite3_stmt *st,
                               size_t size, size_t max, row_fn row, rows_free_fn discard,
                               struct atr_err *err)
{
    uint8_t *v = NULL;
    size_t n = 0, cap = 0;
    atr_status rc = ATR_OK;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW && n < max) {
        if (n == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            if (ncap > max)
                ncap = max;
            uint8_t *nv = atr_realloc(v, ncap * size);
            if (nv == NULL) {
                rc = atr_err_set(err, ATR_E_NOMEM, "idp store: out of memory");
                break;
            }
            memset(nv + cap * size, 0, (ncap - cap) * size);
            v = nv;
            cap = ncap;
        }
        if ((rc = row(v + n * size, st, err)) != ATR_OK)
            break;
        n++;
    }
    if (rc == ATR_OK && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(err, s->db, "step");
    if (rc != ATR_OK || n == 0) {
        if (discard != NULL)
            discard(v, n);
        else
            atr_free(v);
        return rc;
    }
    *out = v;
    *out_n = n;
    return ATR_OK;
}

/* ---- directories ---- */

static void row_directory(struct atr_idp_directory *d, sqlite3_stmt *st)
{
    copy_text(d->id, sizeof(d->id), sqlite3_column_text(st, 0));
    copy_text(d->display_name, sizeof(d->display_name), sqlite3_column_text(st, 1));
    d->created_s = sqlite3_column_int64(st, 2);
}

static atr_status row_directory_elem(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    ATR_UNUSED(err);
    row_directory(elem, st);
    return ATR_OK;
}

atr_status atr_idp_store_directory_create(struct atr_idp_directory *out, struct atr_idp_store *s,
                                          const char *display_name, int64_t now_s,
                                          struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && s != NULL && display_name != NULL);
    if (strlen(display_name) > ATR_IDP_NAME_MAX)
        return atr_err_set(err, ATR_E_INVALID, "displayName is longer than %d bytes",
                           ATR_IDP_NAME_MAX);
    memset(out, 0, sizeof(*out));
    ATR_TRY(atr_idp_guid_new(out->id, err));
    snprintf(out->display_name, sizeof(out->display_name), "%s", display_name);
    out->created_s = now_s;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "INSERT INTO directories VALUES (?,?,?)", err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, out->id) || !bind_text(st, 2, display_name) ||
        sqlite3_bind_int64(st, 3, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_directory_get(struct atr_idp_directory *out, struct atr_idp_store *s,
                                       const char *id, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && s != NULL && id != NULL);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "SELECT id, display_name, created FROM directories WHERE id = ?",
                   err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, id)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        row_directory(out, st);
    else if (r == SQLITE_DONE)
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "directory not found");
    else
        rc = db_err(err, s->db, "step");
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_directory_list(struct atr_idp_directory **out, size_t *out_n,
                                        struct atr_idp_store *s, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && out_n != NULL && s != NULL);
    *out = NULL;
    *out_n = 0;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s,
                   "SELECT id, display_name, created FROM directories ORDER BY created, id "
                   "LIMIT 1000",
                   err)) == ATR_OK)
        rc = collect_rows((void **)out, out_n, s, st, sizeof(**out), ATR_IDP_LIST_MAX,
                          row_directory_elem, NULL, err);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- applications ---- */

static void row_app(struct atr_idp_app *a, sqlite3_stmt *st)
{
    copy_text(a->app_id, sizeof(a->app_id), sqlite3_column_text(st, 0));
    copy_text(a->home_tid, sizeof(a->home_tid), sqlite3_column_text(st, 1));
    copy_text(a->display_name, sizeof(a->display_name), sqlite3_column_text(st, 2));
    a->multi_tenant = sqlite3_column_int(st, 3) != 0;
    a->created_s = sqlite3_column_int64(st, 4);
}

atr_status atr_idp_store_app_create(struct atr_idp_app *out, struct atr_idp_store *s,
                                    const char *home_tid, const char *display_name,
                                    int multi_tenant, int64_t now_s, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && s != NULL && home_tid != NULL && display_name != NULL);
    if (strlen(display_name) > ATR_IDP_NAME_MAX)
        return atr_err_set(err, ATR_E_INVALID, "displayName is longer than %d bytes",
                           ATR_IDP_NAME_MAX);
    struct atr_idp_directory d;
    ATR_TRY(atr_idp_store_directory_get(&d, s, home_tid, err));
    memset(out, 0, sizeof(*out));
    ATR_TRY(atr_idp_guid_new(out->app_id, err));
    snprintf(out->home_tid, sizeof(out->home_tid), "%s", d.id);
    snprintf(out->display_name, sizeof(out->display_name), "%s", display_name);
    out->multi_tenant = multi_tenant != 0;
    out->created_s = now_s;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "INSERT INTO applications VALUES (?,?,?,?,?)", err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, out->app_id) || !bind_text(st, 2, out->home_tid) ||
        !bind_text(st, 3, display_name) ||
        sqlite3_bind_int(st, 4, out->multi_tenant) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_app_get(struct atr_idp_app *out, struct atr_idp_store *s,
                                 const char *app_id, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && s != NULL && app_id != NULL);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s,
                   "SELECT app_id, home_tid, display_name, multi_tenant, created "
                   "FROM applications WHERE app_id = ?",
                   err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, app_id)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        row_app(out, st);
    else if (r == SQLITE_DONE)
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "application not found");
    else
        rc = db_err(err, s->db, "step");
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static atr_status pbkdf2(uint8_t out[HASH_LEN], const char *secret, const uint8_t *salt,
                         size_t salt_len, int iterations, struct atr_err *err)
{
    if (PKCS5_PBKDF2_HMAC(secret, (int)strlen(secret), salt, (int)salt_len, iterations,
                          EVP_sha256(), HASH_LEN, out) != 1)
        return atr_err_set(err, ATR_E_CRYPTO, "idp store: PBKDF2 failed");
    return ATR_OK;
}

atr_status atr_idp_store_secret_add(struct atr_idp_store *s, const char *app_id, const char *secret,
                                    int64_t expires_s, int64_t now_s, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && app_id != NULL && secret != NULL);
    if (strlen(secret) < 16 || strlen(secret) > 256)
        return atr_err_set(err, ATR_E_INVALID, "a client secret has 16 to 256 characters");
    struct atr_idp_app app;
    ATR_TRY(atr_idp_store_app_get(&app, s, app_id, err));
    uint8_t salt[SALT_LEN];
    uint8_t hash[HASH_LEN];
    ATR_TRY(atr_rand_bytes(salt, sizeof(salt), err));
    atr_status rc = pbkdf2(hash, secret, salt, sizeof(salt), ATR_IDP_PBKDF2_IT, err);
    if (rc != ATR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s,
                   "INSERT INTO app_secrets (app_id, salt, hash, iterations, expires, created) "
                   "VALUES (?,?,?,?,?,?)",
                   err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, app_id) ||
        sqlite3_bind_blob(st, 2, salt, sizeof(salt), SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_blob(st, 3, hash, sizeof(hash), SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_int(st, 4, ATR_IDP_PBKDF2_IT) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, expires_s) != SQLITE_OK ||
        sqlite3_bind_int64(st, 6, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    OPENSSL_cleanse(hash, sizeof(hash));
    return rc;
}

#define MAX_SECRETS 16

atr_status atr_idp_store_secret_check(int *out_ok, struct atr_idp_store *s, const char *app_id,
                                      const char *secret, int64_t now_s, struct atr_err *err)
{
    ATR_ASSERT_ARG(out_ok != NULL && s != NULL && app_id != NULL && secret != NULL);
    *out_ok = 0;
    struct {
        uint8_t salt[SALT_LEN];
        uint8_t hash[HASH_LEN];
        int iterations;
    } rows[MAX_SECRETS];
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s,
                   "SELECT salt, hash, iterations FROM app_secrets "
                   "WHERE app_id = ? AND (expires = 0 OR expires > ?) ORDER BY id DESC LIMIT 16",
                   err)) != ATR_OK)
        goto locked_done;
    if (!bind_text(st, 1, app_id) || sqlite3_bind_int64(st, 2, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto locked_done;
    }
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW && n < MAX_SECRETS) {
        if (sqlite3_column_bytes(st, 0) != SALT_LEN || sqlite3_column_bytes(st, 1) != HASH_LEN)
            continue;
        memcpy(rows[n].salt, sqlite3_column_blob(st, 0), SALT_LEN);
        memcpy(rows[n].hash, sqlite3_column_blob(st, 1), HASH_LEN);
        rows[n].iterations = sqlite3_column_int(st, 2);
        n++;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(err, s->db, "step");
locked_done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    if (rc != ATR_OK)
        return rc;
    /* hash outside the lock: PBKDF2 is deliberately slow */
    if (strlen(secret) > 256)
        return ATR_OK;
    for (size_t i = 0; i < n; i++) {
        uint8_t h[HASH_LEN];
        if (rows[i].iterations < 1000 || rows[i].iterations > 10000000)
            continue;
        ATR_TRY(pbkdf2(h, secret, rows[i].salt, SALT_LEN, rows[i].iterations, err));
        if (CRYPTO_memcmp(h, rows[i].hash, HASH_LEN) == 0)
            *out_ok = 1;
        OPENSSL_cleanse(h, sizeof(h));
    }
    return ATR_OK;
}

atr_status atr_idp_store_cert_add(struct atr_idp_store *s, const char *app_id, const char *pem,
                                  int64_t now_s, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && app_id != NULL && pem != NULL);
    size_t len = strlen(pem);
    if (len > ATR_IDP_PEM_MAX)
        return atr_err_set(err, ATR_E_TOO_LARGE, "the key is larger than %zu bytes",
                           ATR_IDP_PEM_MAX);
    struct atr_rsa_key *k = NULL;
    char x5t[ATR_X509_X5T_LEN + 1];
    if (strstr(pem, "-----BEGIN CERTIFICATE-----") != NULL) {
        if (atr_x509_cert_rsa_key(&k, x5t, pem, len, NULL) != ATR_OK)
            return atr_err_set(err, ATR_E_INVALID,
                               "the certificate is not a PEM certificate with an RSA key");
    } else if (atr_rsa_key_parse_pem(&k, pem, len, NULL) != ATR_OK) {
        return atr_err_set(err, ATR_E_INVALID,
                           "the key is neither an RSA PUBLIC KEY nor a CERTIFICATE PEM block");
    }
    int priv = atr_rsa_key_has_private(k);
    atr_rsa_key_free(k);
    if (priv)
        return atr_err_set(err, ATR_E_INVALID, "register the public key, not the private key");
    struct atr_idp_app app;
    ATR_TRY(atr_idp_store_app_get(&app, s, app_id, err));
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "INSERT INTO app_keys (app_id, pem, created) VALUES (?,?,?)", err)) !=
        ATR_OK)
        goto done;
    if (!bind_text(st, 1, app_id) || !bind_text(st, 2, pem) ||
        sqlite3_bind_int64(st, 3, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void atr_idp_strings_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        atr_free(v[i]);
    atr_free(v);
}

/* Collects column 0 of every row (at most @p max) as strings. */
static atr_status collect_strings(char ***out, size_t *out_n, struct atr_idp_store *s,
                                  sqlite3_stmt *st, size_t max, struct atr_err *err)
{
    char **v = atr_calloc(max, sizeof(*v));
    if (v == NULL)
        return ATR_E_NOMEM;
    size_t n = 0;
    int r;
    atr_status rc = ATR_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW && n < max) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        v[n] = atr_strdup(t != NULL ? (const char *)t : "");
        if (v[n] == NULL) {
            rc = ATR_E_NOMEM;
            break;
        }
        n++;
    }
    if (rc == ATR_OK && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(err, s->db, "step");
    if (rc != ATR_OK || n == 0) {
        atr_idp_strings_free(v, n);
        return rc;
    }
    *out = v;
    *out_n = n;
    return ATR_OK;
}

atr_status atr_idp_store_cert_list(char ***out, size_t *out_n, struct atr_idp_store *s,
                                   const char *app_id, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && out_n != NULL && s != NULL && app_id != NULL);
    *out = NULL;
    *out_n = 0;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "SELECT pem FROM app_keys WHERE app_id = ? ORDER BY id LIMIT 16",
                   err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, app_id)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = collect_strings(out, out_n, s, st, 16, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- service principals ---- */

#define SP_COLUMNS "id, tid, app_id, display_name, account_enabled, created"

static void row_sp(struct atr_idp_sp *p, sqlite3_stmt *st)
{
    copy_text(p->id, sizeof(p->id), sqlite3_column_text(st, 0));
    copy_text(p->tid, sizeof(p->tid), sqlite3_column_text(st, 1));
    copy_text(p->app_id, sizeof(p->app_id), sqlite3_column_text(st, 2));
    copy_text(p->display_name, sizeof(p->display_name), sqlite3_column_text(st, 3));
    p->account_enabled = sqlite3_column_int(st, 4) != 0;
    p->created_s = sqlite3_column_int64(st, 5);
}

static atr_status row_sp_elem(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    ATR_UNUSED(err);
    row_sp(elem, st);
    return ATR_OK;
}

atr_status atr_idp_store_sp_create(struct atr_idp_sp *out, struct atr_idp_store *s, const char *tid,
                                   const char *app_id, int enabled, int64_t now_s,
                                   struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && s != NULL && tid != NULL && app_id != NULL);
    struct atr_idp_directory d;
    struct atr_idp_app app;
    ATR_TRY(atr_idp_store_directory_get(&d, s, tid, err));
    ATR_TRY(atr_idp_store_app_get(&app, s, app_id, err));
    if (!app.multi_tenant && strcmp(app.home_tid, d.id) != 0)
        return atr_err_set(err, ATR_E_FORBIDDEN,
                           "the application is single-tenant and registered in another directory");
    memset(out, 0, sizeof(*out));
    ATR_TRY(atr_idp_guid_new(out->id, err));
    snprintf(out->tid, sizeof(out->tid), "%s", d.id);
    snprintf(out->app_id, sizeof(out->app_id), "%s", app.app_id);
    snprintf(out->display_name, sizeof(out->display_name), "%s", app.display_name);
    out->account_enabled = enabled != 0;
    out->created_s = now_s;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "INSERT INTO service_principals VALUES (?,?,?,?,?,?)", err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, out->id) || !bind_text(st, 2, out->tid) ||
        !bind_text(st, 3, out->app_id) || !bind_text(st, 4, out->display_name) ||
        sqlite3_bind_int(st, 5, out->account_enabled) != SQLITE_OK ||
        sqlite3_bind_int64(st, 6, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
    if (rc == ATR_E_CONFLICT)
        atr_err_set(err, ATR_E_CONFLICT,
                    "a service principal of this application exists in the directory");
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static atr_status sp_get_by(struct atr_idp_sp *out, struct atr_idp_store *s, const char *sql,
                            const char *tid, const char *key, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && s != NULL && tid != NULL && key != NULL);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, sql, err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, tid) || !bind_text(st, 2, key)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        row_sp(out, st);
    else if (r == SQLITE_DONE)
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "service principal not found");
    else
        rc = db_err(err, s->db, "step");
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_sp_get(struct atr_idp_sp *out, struct atr_idp_store *s, const char *tid,
                                const char *id, struct atr_err *err)
{
    return sp_get_by(out, s,
                     "SELECT " SP_COLUMNS " FROM service_principals WHERE tid = ? AND id = ?", tid,
                     id, err);
}

atr_status atr_idp_store_sp_find(struct atr_idp_sp *out, struct atr_idp_store *s, const char *tid,
                                 const char *app_id, struct atr_err *err)
{
    return sp_get_by(out, s,
                     "SELECT " SP_COLUMNS " FROM service_principals WHERE tid = ? AND app_id = ?",
                     tid, app_id, err);
}

atr_status atr_idp_store_sp_list(struct atr_idp_sp **out, size_t *out_n, struct atr_idp_store *s,
                                 const char *tid, const char *app_id, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && out_n != NULL && s != NULL && tid != NULL);
    *out = NULL;
    *out_n = 0;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s,
                   "SELECT " SP_COLUMNS " FROM service_principals WHERE tid = ?1 AND "
                   "(?2 IS NULL OR app_id = ?2) ORDER BY created, id LIMIT 1000",
                   err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, tid) ||
        (app_id != NULL ? !bind_text(st, 2, app_id) : sqlite3_bind_null(st, 2) != SQLITE_OK)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = collect_rows((void **)out, out_n, s, st, sizeof(**out), ATR_IDP_LIST_MAX, row_sp_elem,
                      NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Runs @p sql binding (?1 text a, ?2 text b, ?3 int c); NOT_FOUND when nothing changed. */
static atr_status change(struct atr_idp_store *s, const char *sql, const char *a, const char *b,
                         int64_t c, const char *what, struct atr_err *err)
{
    sqlite3_stmt *st = NULL;
    int changes = 0;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, sql, err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, a) || (b != NULL && !bind_text(st, 2, b)) ||
        (sqlite3_bind_parameter_count(st) >= 3 && sqlite3_bind_int64(st, 3, c) != SQLITE_OK)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    if ((rc = step_done(s, st, &changes, err)) == ATR_OK && changes == 0)
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "%s not found", what);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_sp_set_enabled(struct atr_idp_store *s, const char *tid, const char *id,
                                        int enabled, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && tid != NULL && id != NULL);
    return change(s,
                  "UPDATE service_principals SET account_enabled = ?3 WHERE tid = ?1 AND id = ?2",
                  tid, id, enabled != 0, "service principal", err);
}

atr_status atr_idp_store_sp_delete(struct atr_idp_store *s, const char *tid, const char *id,
                                   struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && tid != NULL && id != NULL);
    return change(s, "DELETE FROM service_principals WHERE tid = ?1 AND id = ?2", tid, id, 0,
                  "service principal", err);
}

atr_status atr_idp_store_role_grant(struct atr_idp_store *s, const char *tid, const char *sp_id,
                                    const char *role, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && tid != NULL && sp_id != NULL && role != NULL);
    if (!atr_idp_role_known(role))
        return atr_err_set(err, ATR_E_INVALID, "unknown app role");
    struct atr_idp_sp sp;
    ATR_TRY(atr_idp_store_sp_get(&sp, s, tid, sp_id, err));
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "INSERT OR IGNORE INTO role_grants VALUES (?,?)", err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, sp_id) || !bind_text(st, 2, role)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_role_revoke(struct atr_idp_store *s, const char *tid, const char *sp_id,
                                     const char *role, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && tid != NULL && sp_id != NULL && role != NULL);
    struct atr_idp_sp sp;
    ATR_TRY(atr_idp_store_sp_get(&sp, s, tid, sp_id, err));
    return change(s, "DELETE FROM role_grants WHERE sp_id = ?1 AND role = ?2", sp_id, role, 0,
                  "role grant", err);
}

atr_status atr_idp_store_roles(char ***out, size_t *out_n, struct atr_idp_store *s,
                               const char *sp_id, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && out_n != NULL && s != NULL && sp_id != NULL);
    *out = NULL;
    *out_n = 0;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "SELECT role FROM role_grants WHERE sp_id = ? ORDER BY role LIMIT 64",
                   err)) != ATR_OK)
        goto done;
    if (!bind_text(st, 1, sp_id)) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = collect_strings(out, out_n, s, st, 64, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- signing keys ---- */

atr_status atr_idp_store_key_add(struct atr_idp_store *s, const char *kid, const char *pem,
                                 int64_t publish_s, int64_t active_s, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && kid != NULL && pem != NULL);
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "INSERT INTO signing_keys VALUES (?,?,?,?,0)", err)) != ATR_OK)
        goto done;
    /* SQLITE_STATIC: the PEM is not copied into an unwiped SQLite buffer */
    if (!bind_text(st, 1, kid) || sqlite3_bind_text(st, 2, pem, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, publish_s) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, active_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

atr_status atr_idp_store_key_retire(struct atr_idp_store *s, const char *kid, int64_t retire_s,
                                    struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL && kid != NULL);
    return change(s, "UPDATE signing_keys SET retire = ?3 WHERE kid = ?1", kid, NULL, retire_s,
                  "signing key", err);
}

atr_status atr_idp_store_key_purge(struct atr_idp_store *s, int64_t now_s, struct atr_err *err)
{
    ATR_ASSERT_ARG(s != NULL);
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s, "DELETE FROM signing_keys WHERE retire != 0 AND retire <= ?", err)) !=
        ATR_OK)
        goto done;
    if (sqlite3_bind_int64(st, 1, now_s) != SQLITE_OK) {
        rc = db_err(err, s->db, "bind");
        goto done;
    }
    rc = step_done(s, st, NULL, err);
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void atr_idp_key_rows_free(struct atr_idp_key_row *rows, size_t n)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        atr_secret_cleanup(&rows[i].pem);
    atr_free(rows);
}

#define MAX_KEYS 16

static atr_status row_key_elem(void *elem, sqlite3_stmt *st, struct atr_err *err)
{
    struct atr_idp_key_row *k = elem;
    copy_text(k->kid, sizeof(k->kid), sqlite3_column_text(st, 0));
    const unsigned char *pem = sqlite3_column_text(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    if (pem == NULL)
        return atr_err_set(err, ATR_E_INTERNAL, "idp store: signing key %s has no PEM", k->kid);
    ATR_TRY(atr_secret_init_copy(&k->pem, pem, len + 1));
    k->publish_s = sqlite3_column_int64(st, 2);
    k->active_s = sqlite3_column_int64(st, 3);
    k->retire_s = sqlite3_column_int64(st, 4);
    return ATR_OK;
}

static void key_rows_discard(void *rows, size_t n)
{
    atr_idp_key_rows_free(rows, n);
}

atr_status atr_idp_store_key_list(struct atr_idp_key_row **out, size_t *out_n,
                                  struct atr_idp_store *s, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && out_n != NULL && s != NULL);
    *out = NULL;
    *out_n = 0;
    sqlite3_stmt *st = NULL;
    atr_status rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = prep(&st, s,
                   "SELECT kid, pem, publish, active, retire FROM signing_keys "
                   "ORDER BY active, kid LIMIT 16",
                   err)) == ATR_OK)
        rc = collect_rows((void **)out, out_n, s, st, sizeof(**out), MAX_KEYS, row_key_elem,
                          key_rows_discard, err);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}
