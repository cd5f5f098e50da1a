/* SPDX-License-Identifier: Apache-2.0 */
/* store/store_sqlite: the storage contract on SQLite, and what is SQLite's own. */
#include "lib/testutil.h"
#include "unit/store/contract.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"

#define DB_NAME "store.db"

/* ---- temporary directories ---- */

static int make_tmpdir(char *dir, size_t cap)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    int n = snprintf(dir, cap, "%s/atr-store-XXXXXX", base);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return mkdtemp(dir) != NULL ? 0 : -1;
}

/* Removes @p dir and the plain files in it (the database, its WAL). */
static void remove_tmpdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char p[600];
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            (void)unlink(p);
        }
        closedir(d);
    }
    (void)rmdir(dir);
}

/* ---- the contract's engine description ---- */

static int sqlite_fresh(char *loc, size_t cap, void *arg)
{
    (void)arg;
    char dir[400];
    if (make_tmpdir(dir, sizeof(dir)) != 0)
        return -1;
    int n = snprintf(loc, cap, "sqlite:%s/" DB_NAME, dir);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void sqlite_discard(const char *loc, void *arg)
{
    (void)arg;
    char dir[ATR_CT_LOCATION_MAX];
    snprintf(dir, sizeof(dir), "%s", loc + strlen("sqlite:"));
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        remove_tmpdir(dir);
    }
}

static const struct atr_store_contract_engine sqlite_engine = {
    "sqlite",
    sqlite_fresh,
    sqlite_discard,
    NULL,
};

/* ---- SQLite-specific behaviour ---- */

struct fixture {
    char dir[400];
    char path[500];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || make_tmpdir(f->dir, sizeof(f->dir)) != 0) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/" DB_NAME, f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    remove_tmpdir(f->dir);
    free(f);
    return 0;
}

static void test_locations(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = (struct atr_store *)1;
    struct atr_err err;
    atr_err_clear(&err);
    /* (postgres:// is built: tests/unit/store/test_store_pg.c) */
    assert_int_equal(atr_store_open(&s, "mysql://atr:hunter2@db/atrest", NULL, &err),
                     ATR_E_UNSUPPORTED);
    assert_null(s);
    assert_non_null(strstr(atr_err_msg(&err), "storage engine not built"));
    assert_non_null(strstr(atr_err_msg(&err), "mysql"));
    assert_null(strstr(atr_err_msg(&err), "hunter2")); /* credentials never echoed */
    assert_int_equal(atr_store_open(&s, "mysql:x", NULL, NULL), ATR_E_UNSUPPORTED);
    assert_int_equal(atr_store_open(&s, "", NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_store_open(&s, NULL, NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_store_open(&s, "sqlite:", NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_store_open(NULL, f->path, NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_store_open(&s, "/nonexistent-dir/x/store.db", NULL, NULL), ATR_E_IO);

    /* a plain path and the sqlite: form open the same file */
    assert_int_equal(atr_store_open(&s, f->path, NULL, &err), ATR_OK);
    assert_string_equal(atr_store_engine_name(s), "sqlite");
    struct atr_store_tenant t;
    atr_store_tenant_init(&t);
    snprintf(t.id, sizeof(t.id), "acme");
    t.state = ATR_STORE_STATE_MANAGED;
    assert_int_equal(atr_buf_append_str(&t.srk_blob, "w"), ATR_OK);
    assert_int_equal(atr_store_tenant_create(s, &t, NULL), ATR_OK);
    atr_store_tenant_cleanup(&t);
    atr_store_close(s);
    char loc[600];
    snprintf(loc, sizeof(loc), "sqlite:%s", f->path);
    struct atr_store_opts opts = {100};
    assert_int_equal(atr_store_open(&s, loc, &opts, NULL), ATR_OK);
    assert_int_equal(atr_store_tenant_get(&t, s, "acme", NULL), ATR_OK);
    atr_store_tenant_cleanup(&t);
    atr_store_close(s);
    atr_store_close(NULL);
}

static void test_file_settings(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = NULL;
    assert_int_equal(atr_store_open(&s, f->path, NULL, NULL), ATR_OK);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* one process (here: one handle) owns the file while it is open */
    struct atr_store *s2 = NULL;
    struct atr_store_opts quick = {50};
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_store_open(&s2, f->path, &quick, &err), ATR_E_IO);
    assert_null(s2);
    atr_store_close(s);

    /* the file is in WAL mode, at schema version 1 */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    /* a newer schema is refused */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    atr_err_clear(&err);
    assert_int_equal(atr_store_open(&s, f->path, NULL, &err), ATR_E_CONFIG);
    assert_null(s);
    assert_non_null(strstr(atr_err_msg(&err), "newer"));
}

static void test_refuses_bad_files(void **state)
{
    struct fixture *f = *state;
    struct atr_store *s = NULL;
    /* readable by others */
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(chmod(f->path, 0644), 0);
    assert_int_equal(atr_store_open(&s, f->path, NULL, NULL), ATR_E_IO);
    assert_null(s);
    /* not a database */
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("this is not an SQLite database, not at all, really not, no", fp);
    fclose(fp);
    assert_int_equal(chmod(f->path, 0600), 0);
    assert_int_equal(atr_store_open(&s, f->path, NULL, NULL), ATR_E_IO);
    assert_null(s);
    /* a directory */
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/sub", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(atr_store_open(&s, sub, NULL, NULL), ATR_E_IO);
    assert_int_equal(rmdir(sub), 0);
    /* a symbolic link is not followed */
    char link[600];
    snprintf(link, sizeof(link), "%s/link.db", f->dir);
    assert_int_equal(symlink(f->path, link), 0);
    assert_int_equal(atr_store_open(&s, link, NULL, NULL), ATR_E_IO);
    assert_int_equal(unlink(link), 0);
}

static void test_state_names(void **state)
{
    (void)state;
    for (int i = 1; i <= ATR_STORE_STATE_MAX; i++) {
        const char *name = atr_store_state_name((atr_store_state)i);
        assert_non_null(name);
        atr_store_state st = (atr_store_state)0;
        assert_int_equal(atr_store_state_parse(&st, name), ATR_OK);
        assert_int_equal(st, i);
    }
    assert_string_equal(atr_store_state_name(ATR_STORE_STATE_CUSTOMER), "customer");
    assert_null(atr_store_state_name((atr_store_state)0));
    assert_null(atr_store_state_name((atr_store_state)(ATR_STORE_STATE_MAX + 1)));
    atr_store_state st;
    assert_int_equal(atr_store_state_parse(&st, "Managed"), ATR_E_INVALID);
    assert_int_equal(atr_store_state_parse(&st, ""), ATR_E_INVALID);
    assert_int_equal(atr_store_state_parse(&st, NULL), ATR_E_INVALID);
}

int main(void)
{
    int failed = atr_store_contract_run(&sqlite_engine);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_locations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_bad_files, setup, teardown),
        cmocka_unit_test(test_state_names),
    };
    failed += cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
    return failed;
}
