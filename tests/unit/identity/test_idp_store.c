/* SPDX-License-Identifier: Apache-2.0 */
/* identity/idp_store: the identity server's SQLite persistence. */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/alloc.h"
#include "base/secmem.h"
#include "crypto/rsa.h"
#include "identity/idp_store.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/atr-idpstore-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/idp.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct atr_idp_store *open_store(void)
{
    struct atr_idp_store *s = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_idp_store_open(&s, path, &err);
    if (rc != ATR_OK)
        fprintf(stderr, "open: %s\n", atr_err_msg(&err));
    assert_int_equal(rc, ATR_OK);
    return s;
}

static void test_guid(void **state)
{
    (void)state;
    char g[ATR_IDP_GUID_LEN + 1];
    assert_int_equal(atr_idp_guid_new(g, NULL), ATR_OK);
    assert_true(atr_idp_guid_ok(g));
    assert_int_equal(g[14], '4');
    assert_false(atr_idp_guid_ok("not-a-guid"));
    assert_false(atr_idp_guid_ok("0000000000000000000000000000000000000"));
    assert_false(atr_idp_guid_ok(NULL));
    assert_true(atr_idp_guid_ok("ABCDEF00-0000-4000-8000-000000000000"));
}

static void test_directories_apps_sps(void **state)
{
    (void)state;
    struct atr_idp_store *s = open_store();
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    struct atr_idp_directory a, b, got;
    assert_int_equal(atr_idp_store_directory_create(&a, s, "A", 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_directory_create(&b, s, "B", 101, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_directory_get(&got, s, a.id, NULL), ATR_OK);
    assert_string_equal(got.display_name, "A");
    assert_int_equal(
        atr_idp_store_directory_get(&got, s, "00000000-0000-4000-8000-000000000000", NULL),
        ATR_E_NOT_FOUND);
    struct atr_idp_directory *list = NULL;
    size_t n = 0;
    assert_int_equal(atr_idp_store_directory_list(&list, &n, s, NULL), ATR_OK);
    assert_int_equal(n, 2);
    atr_free(list);

    struct atr_idp_app single, multi;
    assert_int_equal(atr_idp_store_app_create(&single, s, a.id, "single", 0, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_app_create(&multi, s, a.id, "multi", 1, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_app_create(&multi, s, "00000000-0000-4000-8000-000000000000",
                                              "x", 1, 100, NULL),
                     ATR_E_NOT_FOUND);
    assert_int_equal(atr_idp_store_app_create(&multi, s, a.id, "multi", 1, 100, NULL), ATR_OK);

    /* secrets: salted hashes, checked in constant time, expiry honoured */
    const char *sec = "0123456789abcdef-secret";
    assert_int_equal(atr_idp_store_secret_add(s, single.app_id, sec, 0, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_secret_add(s, single.app_id, "short", 0, 100, NULL),
                     ATR_E_INVALID);
    int ok = -1;
    assert_int_equal(atr_idp_store_secret_check(&ok, s, single.app_id, sec, 100, NULL), ATR_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(
        atr_idp_store_secret_check(&ok, s, single.app_id, "0123456789abcdef-secreT", 100, NULL),
        ATR_OK);
    assert_int_equal(ok, 0);
    assert_int_equal(atr_idp_store_secret_check(&ok, s, multi.app_id, sec, 100, NULL), ATR_OK);
    assert_int_equal(ok, 0);
    assert_int_equal(atr_idp_store_secret_add(s, multi.app_id, sec, 200, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_secret_check(&ok, s, multi.app_id, sec, 150, NULL), ATR_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(atr_idp_store_secret_check(&ok, s, multi.app_id, sec, 200, NULL), ATR_OK);
    assert_int_equal(ok, 0);

    /* service principals */
    struct atr_idp_sp sp, sp2, spb;
    assert_int_equal(atr_idp_store_sp_create(&sp, s, a.id, single.app_id, 1, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_sp_create(&sp2, s, a.id, single.app_id, 1, 100, NULL),
                     ATR_E_CONFLICT);
    assert_int_equal(atr_idp_store_sp_create(&sp2, s, b.id, single.app_id, 1, 100, NULL),
                     ATR_E_FORBIDDEN);
    assert_int_equal(atr_idp_store_sp_create(&spb, s, b.id, multi.app_id, 0, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_sp_get(&sp2, s, a.id, sp.id, NULL), ATR_OK);
    assert_int_equal(sp2.account_enabled, 1);
    assert_int_equal(atr_idp_store_sp_get(&sp2, s, b.id, sp.id, NULL), ATR_E_NOT_FOUND);
    assert_int_equal(atr_idp_store_sp_find(&sp2, s, b.id, multi.app_id, NULL), ATR_OK);
    assert_string_equal(sp2.id, spb.id);
    assert_int_equal(sp2.account_enabled, 0);
    assert_int_equal(atr_idp_store_sp_set_enabled(s, b.id, spb.id, 1, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_sp_set_enabled(s, a.id, spb.id, 1, NULL), ATR_E_NOT_FOUND);
    struct atr_idp_sp *sps = NULL;
    assert_int_equal(atr_idp_store_sp_list(&sps, &n, s, a.id, NULL, NULL), ATR_OK);
    assert_int_equal(n, 1);
    atr_free(sps);
    assert_int_equal(atr_idp_store_sp_list(&sps, &n, s, a.id, multi.app_id, NULL), ATR_OK);
    assert_int_equal(n, 0);
    assert_null(sps);

    /* roles */
    assert_int_equal(atr_idp_store_role_grant(s, a.id, sp.id, "Records.Read", NULL), ATR_OK);
    assert_int_equal(atr_idp_store_role_grant(s, a.id, sp.id, "Records.Read", NULL), ATR_OK);
    assert_int_equal(atr_idp_store_role_grant(s, a.id, sp.id, "DataEncryption.Admin", NULL),
                     ATR_OK);
    assert_int_equal(atr_idp_store_role_grant(s, a.id, sp.id, "Root", NULL), ATR_E_INVALID);
    assert_int_equal(atr_idp_store_role_grant(s, b.id, sp.id, "Records.Read", NULL),
                     ATR_E_NOT_FOUND);
    char **roles = NULL;
    assert_int_equal(atr_idp_store_roles(&roles, &n, s, sp.id, NULL), ATR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(roles[0], "DataEncryption.Admin");
    assert_string_equal(roles[1], "Records.Read");
    atr_idp_strings_free(roles, n);
    assert_int_equal(atr_idp_store_role_revoke(s, a.id, sp.id, "Records.Read", NULL), ATR_OK);
    assert_int_equal(atr_idp_store_role_revoke(s, a.id, sp.id, "Records.Read", NULL),
                     ATR_E_NOT_FOUND);

    /* client assertion keys: public RSA keys only */
    struct atr_rsa_key *k = NULL;
    assert_int_equal(atr_rsa_key_generate(&k, 2048, NULL), ATR_OK);
    struct atr_buf pub;
    atr_buf_init(&pub, 1 << 16);
    assert_int_equal(atr_rsa_key_format_pem_public(&pub, k, NULL), ATR_OK);
    struct atr_secret priv;
    memset(&priv, 0, sizeof(priv));
    assert_int_equal(atr_rsa_key_format_pem_private(&priv, k, NULL), ATR_OK);
    char *privz = atr_calloc(1, atr_secret_len(&priv) + 1);
    memcpy(privz, atr_secret_data(&priv), atr_secret_len(&priv));
    assert_int_equal(atr_idp_store_cert_add(s, single.app_id, privz, 100, NULL), ATR_E_INVALID);
    assert_int_equal(atr_idp_store_cert_add(s, single.app_id, "garbage", 100, NULL), ATR_E_INVALID);
    assert_int_equal(atr_idp_store_cert_add(s, single.app_id, atr_buf_cstr(&pub), 100, NULL),
                     ATR_OK);
    char **pems = NULL;
    assert_int_equal(atr_idp_store_cert_list(&pems, &n, s, single.app_id, NULL), ATR_OK);
    assert_int_equal(n, 1);
    atr_idp_strings_free(pems, n);

    /* signing keys */
    assert_int_equal(atr_idp_store_key_add(s, "k1", privz, 100, 100, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_key_add(s, "k1", privz, 100, 100, NULL), ATR_E_CONFLICT);
    assert_int_equal(atr_idp_store_key_add(s, "k2", privz, 150, 200, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_key_retire(s, "k1", 300, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_key_retire(s, "nope", 300, NULL), ATR_E_NOT_FOUND);
    OPENSSL_cleanse(privz, strlen(privz));
    atr_free(privz);
    atr_secret_cleanup(&priv);
    atr_buf_cleanup(&pub);
    atr_rsa_key_free(k);
    atr_idp_store_free(s);

    /* survives a restart */
    s = open_store();
    assert_int_equal(atr_idp_store_sp_get(&sp2, s, b.id, spb.id, NULL), ATR_OK);
    assert_int_equal(sp2.account_enabled, 1);
    struct atr_idp_key_row *rows = NULL;
    assert_int_equal(atr_idp_store_key_list(&rows, &n, s, NULL), ATR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].kid, "k1");
    assert_int_equal(rows[0].retire_s, 300);
    assert_non_null(strstr((const char *)atr_secret_data(&rows[1].pem), "PRIVATE KEY"));
    atr_idp_key_rows_free(rows, n);
    assert_int_equal(atr_idp_store_key_purge(s, 300, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_key_list(&rows, &n, s, NULL), ATR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].kid, "k2");
    atr_idp_key_rows_free(rows, n);

    assert_int_equal(atr_idp_store_sp_delete(s, b.id, spb.id, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_sp_delete(s, b.id, spb.id, NULL), ATR_E_NOT_FOUND);
    atr_idp_store_free(s);
}

static void test_list_many_and_out_of_memory(void **state)
{
    (void)state;
    struct atr_idp_store *s = open_store();
    /* more rows than the first allocation holds: the list grows and keeps order */
    enum { N = 40 };
    char ids[N][ATR_IDP_GUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        struct atr_idp_directory d;
        char name[16];
        snprintf(name, sizeof(name), "dir-%02d", i);
        assert_int_equal(atr_idp_store_directory_create(&d, s, name, 1000 + i, NULL), ATR_OK);
        memcpy(ids[i], d.id, sizeof(ids[i]));
    }
    struct atr_idp_directory *list = NULL;
    size_t n = 0;
    assert_int_equal(atr_idp_store_directory_list(&list, &n, s, NULL), ATR_OK);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "dir-%02d", i);
        assert_string_equal(list[i].id, ids[i]);
        assert_string_equal(list[i].display_name, name);
        assert_int_equal(list[i].created_s, 1000 + i);
    }
    atr_free(list);

    /* an allocation failure while growing hands out nothing and says so */
    list = NULL;
    n = 7;
    struct atr_err err;
    atr_err_clear(&err);
    atr_alloc_fail_after(2);
    atr_status rc = atr_idp_store_directory_list(&list, &n, s, &err);
    atr_alloc_fail_reset();
    assert_int_equal(rc, ATR_E_NOMEM);
    assert_null(list);
    assert_int_equal(n, 0);
    atr_idp_store_free(s);
}

static void test_refuses_bad_files(void **state)
{
    (void)state;
    /* a newer schema is refused */
    struct atr_idp_store *s = open_store();
    atr_idp_store_free(s);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = NULL;
    assert_int_equal(atr_idp_store_open(&s, path, NULL), ATR_E_CONFIG);
    assert_null(s);
    /* a world-readable file is refused */
    char p2[160];
    snprintf(p2, sizeof(p2), "%s/open.db", dir);
    FILE *f = fopen(p2, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(chmod(p2, 0644), 0);
    assert_int_equal(atr_idp_store_open(&s, p2, NULL), ATR_E_IO);
    /* not a database */
    snprintf(p2, sizeof(p2), "%s/junk.db", dir);
    f = fopen(p2, "w");
    assert_non_null(f);
    fputs("this is not an SQLite database, not at all, really not", f);
    fclose(f);
    assert_int_equal(chmod(p2, 0600), 0);
    assert_int_equal(atr_idp_store_open(&s, p2, NULL), ATR_E_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guid),
        cmocka_unit_test_setup_teardown(test_directories_apps_sps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_many_and_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
