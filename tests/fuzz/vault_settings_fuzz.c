/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the key vault's management and rotation-policy bodies
 * (src/vault/vault_policy.c): atr_vault_settings_parse,
 * atr_vault_settings_to_json, atr_vault_rotation_parse,
 * atr_vault_duration_parse, atr_vault_cidr_parse / _contains.
 *
 * Properties: nothing crashes; accepted settings stay within their limits
 * (retention 7..90, at most the maximum policies and rules, limits >= 1)
 * and survive a round trip through their canonical document unchanged; an
 * accepted rotation policy has positive durations that obey Azure's
 * minimums; every string of the input is also tried as a duration and as a
 * CIDR. Any violation aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vault/vault_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_strings(const json_t *v, int depth)
{
    if (depth > 4)
        return;
    if (json_is_string(v)) {
        int64_t s = 0;
        if (atr_vault_duration_parse(&s, json_string_value(v), NULL) == ATR_OK && s <= 0)
            abort();
        struct atr_vault_cidr c;
        if (atr_vault_cidr_parse(&c, json_string_value(v), NULL) == ATR_OK) {
            if (c.prefix > (c.family == 2 ? 32u : 128u))
                abort();
            (void)atr_vault_cidr_contains(&c, "127.0.0.1");
            (void)atr_vault_cidr_contains(&c, "::1");
        }
        return;
    }
    const char *k;
    json_t *e;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e) try_strings(e, depth + 1);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e) try_strings(e, depth + 1);
    }
}

static void check_settings(const json_t *doc)
{
    static struct atr_vault_settings s, s2;
    atr_vault_settings_defaults(&s);
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_vault_settings_parse(&s, doc, &err) != ATR_OK) {
        if (err.msg[0] == '\0')
            abort();
        return;
    }
    if (s.retention_days < ATR_VAULT_RETENTION_MIN || s.retention_days > ATR_VAULT_RETENTION_MAX ||
        s.npolicies > ATR_VAULT_MAX_POLICIES || s.nip_rules > ATR_VAULT_MAX_IP_RULES ||
        s.limit_ops < 1 || s.limit_create < 1 || s.directory_id[0] == '\0')
        abort();
    json_t *back = NULL;
    if (atr_vault_settings_to_json(&back, &s) != ATR_OK)
        return; /* out of memory only */
    atr_vault_settings_defaults(&s2);
    if (atr_vault_settings_parse(&s2, back, NULL) != ATR_OK)
        abort();
    json_decref(back);
    if (s2.retention_days != s.retention_days || s2.purge_protection != s.purge_protection ||
        s2.npolicies != s.npolicies || s2.nip_rules != s.nip_rules || s2.acl_deny != s.acl_deny ||
        s2.acl_bypass != s.acl_bypass || strcmp(s2.directory_id, s.directory_id) != 0 ||
        memcmp(s2.policies, s.policies, s.npolicies * sizeof(s.policies[0])) != 0)
        abort();
    (void)atr_vault_firewall_admits(&s, "127.0.0.1", 0);
    (void)atr_vault_perms_of(&s, "t", "o", "a");
}

static void check_rotation(const json_t *doc)
{
    struct atr_vault_rotation r;
    if (atr_vault_rotation_parse(&r, doc, NULL) != ATR_OK)
        return;
    if (r.expiry_s < 0 || (r.expiry_s != 0 && r.expiry_s < 28 * 86400) ||
        (r.rotate_after_create != 0 && r.rotate_after_create < 7 * 86400) ||
        (r.rotate_before_expiry != 0 && r.rotate_before_expiry < 7 * 86400))
        abort();
    (void)atr_vault_rotation_due(&r, 1000, 5000000, 4000000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL)
        return 0;
    check_settings(doc);
    check_rotation(doc);
    try_strings(doc, 0);
    json_decref(doc);
    return 0;
}
