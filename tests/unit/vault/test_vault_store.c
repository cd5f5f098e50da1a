/* SPDX-License-Identifier: Apache-2.0 */
/* vault/vault_store: the key vault's SQLite persistence. */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "vault/vault_store.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/atr-vaultstore-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/vault.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct atr_vault_store *open_store(void)
{
    struct atr_vault_store *s = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_vault_store_open(&s, path, &err);
    if (rc != ATR_OK)
        fail_msg("open: %s", atr_err_msg(&err));
    return s;
}

static void add_version(struct atr_vault_store *s, const char *name, const char *version,
                        int64_t created)
{
    struct atr_vault_version v;
    memset(&v, 0, sizeof(v));
    snprintf(v.name, sizeof(v.name), "%s", name);
    snprintf(v.version, sizeof(v.version), "%s", version);
    snprintf(v.kty, sizeof(v.kty), "RSA");
    v.ops = 0x3f;
    v.enabled = 1;
    v.created = v.updated = created;
    v.tags = atr_strdup("{\"a\":\"b\"}");
    v.pub = atr_strdup("{\"n\":\"AQ\",\"e\":\"AQAB\"}");
    atr_buf_init(&v.sealed, 1024);
    assert_int_equal(atr_buf_append_str(&v.sealed, "sealed-bytes"), ATR_OK);
    assert_int_equal(atr_vault_store_version_add(s, "vlt", &v, NULL), ATR_OK);
    assert_true(v.seq > 0);
    atr_vault_version_cleanup(&v);
}

static char *ver_id(char out[33], int i)
{
    snprintf(out, 33, "%032x", i);
    return out;
}

static void test_vaults(void **state)
{
    (void)state;
    struct atr_vault_store *s = open_store();
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char *text = NULL;
    assert_int_equal(atr_vault_store_vault_get(&text, s, "vlt", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(atr_vault_store_vault_put(s, "vlt", "{\"x\":1}", 10, NULL), ATR_OK);
    assert_int_equal(atr_vault_store_vault_put(s, "abc", "{}", 10, NULL), ATR_OK);
    assert_int_equal(atr_vault_store_vault_put(s, "vlt", "{\"x\":2}", 11, NULL), ATR_OK);
    assert_int_equal(atr_vault_store_vault_get(&text, s, "vlt", NULL), ATR_OK);
    assert_string_equal(text, "{\"x\":2}");
    atr_free(text);
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(atr_vault_store_vault_list(&names, &n, s, 10, NULL), ATR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "abc");
    atr_vault_store_names_free(names, n);
    assert_int_equal(atr_vault_store_vault_list(&names, &n, s, 0, NULL), ATR_E_INVALID);
    atr_vault_store_close(s);
}

static void test_versions_and_paging(void **state)
{
    (void)state;
    struct atr_vault_store *s = open_store();
    assert_int_equal(atr_vault_store_vault_put(s, "vlt", "{}", 1, NULL), ATR_OK);
    char id[33];
    for (int i = 1; i <= 5; i++)
        add_version(s, "k1", ver_id(id, i), 100 + i);
    add_version(s, "k2", ver_id(id, 9), 50);
    add_version(s, "k0", ver_id(id, 10), 50);
    /* a duplicate version is a conflict */
    struct atr_vault_version dup;
    memset(&dup, 0, sizeof(dup));
    snprintf(dup.name, sizeof(dup.name), "k1");
    snprintf(dup.version, sizeof(dup.version), "%s", ver_id(id, 1));
    assert_int_equal(atr_vault_store_version_add(s, "vlt", &dup, NULL), ATR_E_CONFLICT);

    struct atr_vault_version v;
    assert_int_equal(atr_vault_store_version_get(&v, s, "vlt", "k1", "", 1, NULL), ATR_OK);
    assert_string_equal(v.version, ver_id(id, 5)); /* latest */
    assert_string_equal((const char *)atr_buf_cstr(&v.sealed), "sealed-bytes");
    assert_string_equal(v.tags, "{\"a\":\"b\"}");
    atr_vault_version_cleanup(&v);
    assert_int_equal(atr_vault_store_version_get(&v, s, "vlt", "k1", ver_id(id, 2), 0, NULL),
                     ATR_OK);
    assert_int_equal(v.created, 102);
    assert_int_equal(v.sealed.len, 0);
    v.enabled = 0;
    v.exp = 999;
    v.updated = 200;
    assert_int_equal(atr_vault_store_version_update(s, "vlt", &v, NULL), ATR_OK);
    atr_vault_version_cleanup(&v);
    assert_int_equal(atr_vault_store_version_get(&v, s, "vlt", "k1", ver_id(id, 2), 0, NULL),
                     ATR_OK);
    assert_false(v.enabled);
    assert_int_equal(v.exp, 999);
    atr_vault_version_cleanup(&v);
    assert_int_equal(atr_vault_store_version_get(&v, s, "vlt", "nope", NULL, 0, NULL),
                     ATR_E_NOT_FOUND);

    /* versions: pages of 2 */
    struct atr_vault_version *page = NULL;
    size_t n = 0;
    int more = 0;
    int64_t after = 0;
    size_t total = 0;
    int pages = 0;
    do {
        assert_int_equal(
            atr_vault_store_versions_list(&page, &n, &more, s, "vlt", "k1", after, 2, NULL),
            ATR_OK);
        total += n;
        pages++;
        if (n > 0)
            after = page[n - 1].seq;
        atr_vault_versions_free(page, n);
    } while (more);
    assert_int_equal(total, 5);
    assert_int_equal(pages, 3);

    /* keys: by name, latest version of each */
    assert_int_equal(atr_vault_store_keys_list(&page, &n, &more, s, "vlt", 0, "", 2, NULL), ATR_OK);
    assert_int_equal(n, 2);
    assert_true(more);
    assert_string_equal(page[0].name, "k0");
    assert_string_equal(page[1].name, "k1");
    assert_string_equal(page[1].version, ver_id(id, 5));
    atr_vault_versions_free(page, n);
    assert_int_equal(atr_vault_store_keys_list(&page, &n, &more, s, "vlt", 0, "k1", 2, NULL),
                     ATR_OK);
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(page[0].name, "k2");
    atr_vault_versions_free(page, n);
    atr_vault_store_close(s);
}

static void test_delete_purge_policy(void **state)
{
    (void)state;
    struct atr_vault_store *s = open_store();
    assert_int_equal(atr_vault_store_vault_put(s, "vlt", "{}", 1, NULL), ATR_OK);
    char id[33];
    add_version(s, "k1", ver_id(id, 1), 10);
    add_version(s, "k2", ver_id(id, 2), 10);
    struct atr_vault_key_meta m;
    assert_int_equal(atr_vault_store_key_meta(&m, s, "vlt", "k1", NULL), ATR_OK);
    assert_false(m.deleted);
    assert_null(m.policy);
    atr_vault_key_meta_cleanup(&m);

    assert_int_equal(atr_vault_store_key_set_policy(s, "vlt", "k1", "{\"p\":1}", 20, NULL), ATR_OK);
    assert_int_equal(atr_vault_store_key_set_policy(s, "vlt", "k1", "{\"p\":2}", 30, NULL), ATR_OK);
    assert_int_equal(atr_vault_store_key_meta(&m, s, "vlt", "k1", NULL), ATR_OK);
    assert_string_equal(m.policy, "{\"p\":2}");
    assert_int_equal(m.policy_created, 20);
    assert_int_equal(m.policy_updated, 30);
    atr_vault_key_meta_cleanup(&m);
    struct atr_vault_key_ref *refs = NULL;
    size_t n = 0;
    assert_int_equal(atr_vault_store_scan(&refs, &n, s, 0, 0, 10, NULL), ATR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(refs[0].name, "k1");
    atr_free(refs);

    assert_int_equal(atr_vault_store_key_set_deleted(s, "vlt", "k2", 1, 100, 500, NULL), ATR_OK);
    struct atr_vault_version *page = NULL;
    int more = 0;
    assert_int_equal(atr_vault_store_keys_list(&page, &n, &more, s, "vlt", 1, "", 10, NULL),
                     ATR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].name, "k2");
    atr_vault_versions_free(page, n);
    assert_int_equal(atr_vault_store_scan(&refs, &n, s, 1, 499, 10, NULL), ATR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(atr_vault_store_scan(&refs, &n, s, 1, 500, 10, NULL), ATR_OK);
    assert_int_equal(n, 1);
    atr_free(refs);
    assert_int_equal(atr_vault_store_key_purge(s, "vlt", "k2", NULL), ATR_OK);
    assert_int_equal(atr_vault_store_key_meta(&m, s, "vlt", "k2", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(atr_vault_store_key_purge(s, "vlt", "k2", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(atr_vault_store_key_set_deleted(s, "vlt", "zz", 1, 1, 1, NULL),
                     ATR_E_NOT_FOUND);
    atr_vault_store_close(s);

    /* everything survives a reopen */
    s = open_store();
    assert_int_equal(atr_vault_store_key_meta(&m, s, "vlt", "k1", NULL), ATR_OK);
    assert_string_equal(m.policy, "{\"p\":2}");
    atr_vault_key_meta_cleanup(&m);
    atr_vault_store_close(s);
}

static void test_bad_file(void **state)
{
    (void)state;
    char p2[160];
    snprintf(p2, sizeof(p2), "%s/open.db", dir);
    FILE *f = fopen(p2, "w");
    assert_non_null(f);
    fputs("not a database at all, just text padding padding padding padding", f);
    fclose(f);
    assert_int_equal(chmod(p2, 0644), 0);
    struct atr_vault_store *s = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_vault_store_open(&s, p2, &err), ATR_E_IO);
    assert_non_null(strstr(err.msg, "0600"));
    assert_int_equal(chmod(p2, 0600), 0);
    assert_int_equal(atr_vault_store_open(&s, p2, &err), ATR_E_IO);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_and_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_purge_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
