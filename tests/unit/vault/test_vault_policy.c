/* SPDX-License-Identifier: Apache-2.0 */
/* vault/vault_policy: settings, permissions, firewall, recovery levels, rotation policies. */
#include "lib/testutil.h"

#include <string.h>

#include <jansson.h>

#include "vault/vault_policy.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

static atr_status parse(struct atr_vault_settings *s, const char *text, struct atr_err *err)
{
    atr_vault_settings_defaults(s);
    json_t *j = J(text);
    atr_status rc = atr_vault_settings_parse(s, j, err);
    json_decref(j);
    return rc;
}

static void test_names(void **state)
{
    (void)state;
    assert_true(atr_vault_name_ok("contoso-keys"));
    assert_false(atr_vault_name_ok("v1"));     /* too short */
    assert_false(atr_vault_name_ok("1vault")); /* must start with a letter */
    assert_false(atr_vault_name_ok("vault-")); /* must not end with '-' */
    assert_false(atr_vault_name_ok("vault.x"));
    assert_false(atr_vault_name_ok("abcdefghijklmnopqrstuvwxy")); /* 25 */
    assert_true(atr_vault_key_name_ok("k"));
    assert_true(atr_vault_key_name_ok("Key-1"));
    assert_false(atr_vault_key_name_ok(""));
    assert_false(atr_vault_key_name_ok("a_b"));
    assert_false(atr_vault_key_name_ok(NULL));
    assert_true(atr_vault_version_ok("0123456789abcdef0123456789abcdef"));
    assert_false(atr_vault_version_ok("0123456789ABCDEF0123456789abcdef"));
    assert_false(atr_vault_version_ok("0123456789abcdef"));
}

static void test_settings_roundtrip(void **state)
{
    (void)state;
    struct atr_vault_settings s;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(parse(&s,
                           "{\"directoryId\":\"t-1\",\"softDeleteRetentionInDays\":30,"
                           "\"enablePurgeProtection\":true,"
                           "\"accessPolicies\":[{\"tenantId\":\"t-1\",\"objectId\":\"o-1\","
                           "\"permissions\":{\"keys\":[\"List\",\"wrapkey\",\"unwrapKey\"],"
                           "\"secrets\":[\"get\"]}}],"
                           "\"networkAcls\":{\"defaultAction\":\"Deny\",\"bypass\":\"None\","
                           "\"ipRules\":[{\"value\":\"10.0.0.0/8\"},{\"value\":\"::1\"}]},"
                           "\"limits\":{\"keyOperations\":5}}",
                           &err),
                     ATR_OK);
    assert_string_equal(s.directory_id, "t-1");
    assert_int_equal(s.retention_days, 30);
    assert_true(s.purge_protection);
    assert_int_equal(s.npolicies, 1);
    assert_int_equal(s.policies[0].keys,
                     ATR_VAULT_PERM_LIST | ATR_VAULT_PERM_WRAP | ATR_VAULT_PERM_UNWRAP);
    assert_true(s.acl_deny);
    assert_false(s.acl_bypass);
    assert_int_equal(s.nip_rules, 2);
    assert_int_equal(s.limit_ops, 5);
    assert_int_equal(s.limit_create, ATR_VAULT_LIMIT_CREATE_DEFAULT);
    assert_string_equal(atr_vault_recovery_level(&s), "CustomizedRecoverable");

    json_t *doc = NULL;
    assert_int_equal(atr_vault_settings_to_json(&doc, &s), ATR_OK);
    struct atr_vault_settings s2;
    atr_vault_settings_defaults(&s2);
    assert_int_equal(atr_vault_settings_parse(&s2, doc, &err), ATR_OK);
    json_decref(doc);
    assert_memory_equal(&s.policies[0], &s2.policies[0], sizeof(s.policies[0]));
    assert_int_equal(s2.nip_rules, 2);
    assert_string_equal(s2.ip_rules[1].text, "::1");
    assert_int_equal(s2.retention_days, 30);
    assert_int_equal(s2.limit_ops, 5);
}

static void test_settings_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]",
        "{}", /* no directory */
        "{\"directoryId\":\"t\",\"softDeleteRetentionInDays\":6}",
        "{\"directoryId\":\"t\",\"softDeleteRetentionInDays\":91}",
        "{\"directoryId\":\"t\",\"enablePurgeProtection\":1}",
        "{\"directoryId\":\"t\",\"enableSoftDelete\":false}",
        "{\"directoryId\":\"t\",\"bogus\":1}",
        "{\"directoryId\":\"bad id\"}",
        "{\"directoryId\":\"t\",\"accessPolicies\":[{\"tenantId\":\"t\"}]}",
        "{\"directoryId\":\"t\",\"accessPolicies\":[{\"tenantId\":\"t\",\"objectId\":\"o\","
        "\"permissions\":{\"keys\":[\"fly\"]}}]}",
        "{\"directoryId\":\"t\",\"networkAcls\":{\"defaultAction\":\"Maybe\"}}",
        "{\"directoryId\":\"t\",\"networkAcls\":{\"ipRules\":[{\"value\":\"10.0.0.0/33\"}]}}",
        "{\"directoryId\":\"t\",\"networkAcls\":{\"ipRules\":[{\"value\":\"300.1.1.1\"}]}}",
        "{\"directoryId\":\"t\",\"networkAcls\":{\"virtualNetworkRules\":[{}]}}",
        "{\"directoryId\":\"t\",\"limits\":{\"keyOperations\":0}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct atr_vault_settings s;
        struct atr_err err;
        atr_err_clear(&err);
        atr_status rc = parse(&s, bad[i], &err);
        if (rc != ATR_E_INVALID)
            fail_msg("case %zu (%s) gave %s", i, bad[i], atr_status_name(rc));
        assert_true(strlen(err.msg) > 0);
    }
}

static void test_update_rules(void **state)
{
    (void)state;
    struct atr_vault_settings a, b;
    atr_vault_settings_defaults(&a);
    b = a;
    b.purge_protection = 1;
    assert_int_equal(atr_vault_settings_check_update(&a, &b, NULL), ATR_OK);
    assert_int_equal(atr_vault_settings_check_update(&b, &a, NULL), ATR_E_CONFLICT);
    struct atr_vault_settings c = b;
    c.retention_days = 30;
    assert_int_equal(atr_vault_settings_check_update(&b, &c, NULL), ATR_E_CONFLICT);
}

static void test_permissions(void **state)
{
    (void)state;
    struct atr_vault_settings s;
    assert_int_equal(
        parse(&s,
              "{\"directoryId\":\"t\",\"accessPolicies\":["
              "{\"tenantId\":\"t\",\"objectId\":\"o\",\"permissions\":{\"keys\":[\"list\"]}},"
              "{\"tenantId\":\"T\",\"objectId\":\"O\",\"permissions\":{\"keys\":[\"get\"]}},"
              "{\"tenantId\":\"t\",\"objectId\":\"o\",\"applicationId\":\"app\","
              "\"permissions\":{\"keys\":[\"sign\"]}},"
              "{\"tenantId\":\"other\",\"objectId\":\"o\",\"permissions\":{\"keys\":[\"all\"]}}]}",
              NULL),
        ATR_OK);
    unsigned p = atr_vault_perms_of(&s, "t", "o", NULL);
    assert_int_equal(p, ATR_VAULT_PERM_LIST | ATR_VAULT_PERM_GET);
    p = atr_vault_perms_of(&s, "t", "o", "APP");
    assert_int_equal(p, ATR_VAULT_PERM_LIST | ATR_VAULT_PERM_GET | ATR_VAULT_PERM_SIGN);
    assert_int_equal(atr_vault_perms_of(&s, "t", "x", NULL), 0);
    assert_int_equal(atr_vault_perms_of(&s, "other", "o", NULL), ATR_VAULT_PERM_ALL);
    assert_int_equal(atr_vault_perms_of(&s, NULL, "o", NULL), 0);
    unsigned bit = 0;
    assert_int_equal(atr_vault_perm_parse(&bit, "GetRotationPolicy", NULL), ATR_OK);
    assert_int_equal(bit, ATR_VAULT_PERM_GETROTATIONPOLICY);
    assert_string_equal(atr_vault_perm_name(ATR_VAULT_PERM_UNWRAP), "unwrapKey");
    assert_int_equal(atr_vault_op_parse(&bit, "wrapKey", NULL), ATR_OK);
    assert_int_equal(bit, ATR_VAULT_OP_WRAP);
    assert_int_equal(atr_vault_op_parse(&bit, "wrapkey", NULL), ATR_E_INVALID);
}

static void test_firewall(void **state)
{
    (void)state;
    struct atr_vault_cidr c;
    assert_int_equal(atr_vault_cidr_parse(&c, "10.1.0.0/16", NULL), ATR_OK);
    assert_true(atr_vault_cidr_contains(&c, "10.1.200.3"));
    assert_false(atr_vault_cidr_contains(&c, "10.2.0.1"));
    assert_true(atr_vault_cidr_contains(&c, "::ffff:10.1.0.9")); /* v4-mapped */
    assert_false(atr_vault_cidr_contains(&c, "::1"));
    assert_false(atr_vault_cidr_contains(&c, "garbage"));
    assert_int_equal(atr_vault_cidr_parse(&c, "203.0.113.7", NULL), ATR_OK);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(atr_vault_cidr_parse(&c, "10.1.0.0/12", NULL), ATR_OK);
    assert_true(atr_vault_cidr_contains(&c, "10.15.255.255"));
    assert_false(atr_vault_cidr_contains(&c, "10.16.0.0"));
    assert_int_equal(atr_vault_cidr_parse(&c, "2001:db8::/32", NULL), ATR_OK);
    assert_true(atr_vault_cidr_contains(&c, "2001:db8:1::5"));
    assert_false(atr_vault_cidr_contains(&c, "2001:db9::1"));
    assert_int_equal(atr_vault_cidr_parse(&c, "0.0.0.0/0", NULL), ATR_OK);
    assert_true(atr_vault_cidr_contains(&c, "192.0.2.1"));
    assert_int_equal(atr_vault_cidr_parse(&c, "10.0.0.0/", NULL), ATR_E_INVALID);
    assert_int_equal(atr_vault_cidr_parse(&c, "10.0.0.0/1x", NULL), ATR_E_INVALID);
    assert_int_equal(atr_vault_cidr_parse(&c, "", NULL), ATR_E_INVALID);

    struct atr_vault_settings s;
    assert_int_equal(parse(&s,
                           "{\"directoryId\":\"t\",\"networkAcls\":{\"defaultAction\":\"Deny\","
                           "\"bypass\":\"AzureServices\",\"ipRules\":[\"192.0.2.0/24\"]}}",
                           NULL),
                     ATR_OK);
    assert_true(atr_vault_firewall_admits(&s, "192.0.2.9", 0));
    assert_false(atr_vault_firewall_admits(&s, "127.0.0.1", 0));
    assert_true(atr_vault_firewall_admits(&s, "127.0.0.1", 1)); /* trusted service */
    s.acl_bypass = 0;
    assert_false(atr_vault_firewall_admits(&s, "127.0.0.1", 1));
    s.acl_deny = 0;
    assert_true(atr_vault_firewall_admits(&s, "127.0.0.1", 0));
}

static void test_recovery_levels(void **state)
{
    (void)state;
    struct atr_vault_settings s;
    atr_vault_settings_defaults(&s);
    assert_string_equal(atr_vault_recovery_level(&s), "Recoverable+Purgeable");
    s.purge_protection = 1;
    assert_string_equal(atr_vault_recovery_level(&s), "Recoverable");
    s.retention_days = 7;
    assert_string_equal(atr_vault_recovery_level(&s), "CustomizedRecoverable");
    s.purge_protection = 0;
    assert_string_equal(atr_vault_recovery_level(&s), "CustomizedRecoverable+Purgeable");
}

static void test_durations(void **state)
{
    (void)state;
    int64_t s = 0;
    assert_int_equal(atr_vault_duration_parse(&s, "P30D", NULL), ATR_OK);
    assert_int_equal(s, 30 * 86400);
    assert_int_equal(atr_vault_duration_parse(&s, "P1Y2M10D", NULL), ATR_OK);
    assert_int_equal(s, (365 + 60 + 10) * 86400);
    assert_int_equal(atr_vault_duration_parse(&s, "P2W", NULL), ATR_OK);
    assert_int_equal(s, 14 * 86400);
    assert_int_equal(atr_vault_duration_parse(&s, "P1DT2H30M", NULL), ATR_OK);
    assert_int_equal(s, 86400 + 2 * 3600 + 30 * 60);
    assert_int_equal(atr_vault_duration_parse(&s, "PT12H", NULL), ATR_OK);
    assert_int_equal(s, 12 * 3600);
    static const char *const bad[] = {"",      "P",   "30D",  "PT",        "P1H",   "PT1D", "P-1D",
                                      "P1.5D", "P0D", "P1DT", "P9999999D", "PDT1H", "P1D2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (atr_vault_duration_parse(&s, bad[i], NULL) != ATR_E_INVALID)
            fail_msg("duration '%s' accepted", bad[i]);
    }
    assert_int_equal(atr_vault_duration_parse(&s, NULL, NULL), ATR_E_INVALID);
}

static void test_rotation(void **state)
{
    (void)state;
    struct atr_vault_rotation r;
    json_t *j = J("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\"},"
                  "\"action\":{\"type\":\"Rotate\"}},{\"trigger\":{\"timeBeforeExpiry\":"
                  "\"P10D\"},\"action\":{\"type\":\"Notify\"}}],"
                  "\"attributes\":{\"expiryTime\":\"P90D\"}}");
    assert_int_equal(atr_vault_rotation_parse(&r, j, NULL), ATR_OK);
    json_decref(j);
    assert_int_equal(r.expiry_s, 90 * 86400);
    assert_int_equal(r.rotate_after_create, 30 * 86400);
    assert_int_equal(r.rotate_before_expiry, 0);
    assert_false(atr_vault_rotation_due(&r, 1000, 0, 1000 + 30 * 86400 - 1));
    assert_true(atr_vault_rotation_due(&r, 1000, 0, 1000 + 30 * 86400));

    j = J("{\"lifetimeActions\":[{\"trigger\":{\"timeBeforeExpiry\":\"P7D\"},"
          "\"action\":{\"type\":\"rotate\"}}],\"attributes\":{\"expiryTime\":\"P28D\"}}");
    assert_int_equal(atr_vault_rotation_parse(&r, j, NULL), ATR_OK);
    json_decref(j);
    assert_false(atr_vault_rotation_due(&r, 0, 0, 1000000000)); /* no expiry: never */
    assert_true(atr_vault_rotation_due(&r, 0, 100 * 86400, 93 * 86400));
    assert_false(atr_vault_rotation_due(&r, 0, 100 * 86400, 93 * 86400 - 1));

    static const char *const bad[] = {
        "[]",
        "{\"attributes\":{\"expiryTime\":\"P27D\"}}",
        "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P6D\"},"
        "\"action\":{\"type\":\"Rotate\"}}]}",
        "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\"},"
        "\"action\":{\"type\":\"Explode\"}}]}",
        "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\","
        "\"timeBeforeExpiry\":\"P30D\"},\"action\":{\"type\":\"Rotate\"}}]}",
        "{\"lifetimeActions\":[{\"trigger\":{},\"action\":{\"type\":\"Rotate\"}}]}",
        "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\"},"
        "\"action\":{\"type\":\"Notify\"}}]}",
        "{\"attributes\":{\"expiryTime\":\"P30D\"},\"lifetimeActions\":[{\"trigger\":"
        "{\"timeBeforeExpiry\":\"P30D\"},\"action\":{\"type\":\"Rotate\"}}]}",
        "{\"lifetimeActions\":[1,2,3]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = J(bad[i]);
        atr_status rc = atr_vault_rotation_parse(&r, j, NULL);
        json_decref(j);
        if (rc != ATR_E_INVALID)
            fail_msg("policy %zu accepted: %s", i, bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),           cmocka_unit_test(test_settings_roundtrip),
        cmocka_unit_test(test_settings_errors), cmocka_unit_test(test_update_rules),
        cmocka_unit_test(test_permissions),     cmocka_unit_test(test_firewall),
        cmocka_unit_test(test_recovery_levels), cmocka_unit_test(test_durations),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
