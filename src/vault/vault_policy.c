/* SPDX-License-Identifier: Apache-2.0 */
#include "vault/vault_policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static const char *const perm_names[] = {
    "get",
    "list",
    "create",
    "update",
    "import",
    "delete",
    "recover",
    "backup",
    "restore",
    "decrypt",
    "encrypt",
    "unwrapKey",
    "wrapKey",
    "verify",
    "sign",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
};

static const char *const op_names[] = {
    "encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export",
};

static int id_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > ATR_VAULT_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-')
            return 0;
    }
    return 1;
}

int atr_vault_name_ok(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n < 3 || n > ATR_VAULT_NAME_MAX || !isalpha((unsigned char)name[0]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '-')
            return 0;
    }
    return name[n - 1] != '-';
}

int atr_vault_key_name_ok(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > 127)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '-')
            return 0;
    }
    return 1;
}

int atr_vault_version_ok(const char *v)
{
    if (v == NULL || strlen(v) != 32)
        return 0;
    for (size_t i = 0; i < 32; i++) {
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return 0;
    }
    return 1;
}

void atr_vault_settings_defaults(struct atr_vault_settings *out)
{
    memset(out, 0, sizeof(*out));
    out->retention_days = ATR_VAULT_RETENTION_MAX;
    out->acl_bypass = 1;
    out->limit_ops = ATR_VAULT_LIMIT_OPS_DEFAULT;
    out->limit_create = ATR_VAULT_LIMIT_CREATE_DEFAULT;
}

atr_status atr_vault_perm_parse(unsigned *out, const char *name, struct atr_err *err)
{
    if (name != NULL && strcasecmp(name, "all") == 0) {
        *out = ATR_VAULT_PERM_ALL;
        return ATR_OK;
    }
    for (size_t i = 0; name != NULL && i < sizeof(perm_names) / sizeof(perm_names[0]); i++) {
        if (strcasecmp(name, perm_names[i]) == 0) {
            *out = 1u << i;
            return ATR_OK;
        }
    }
    return atr_err_set(err, ATR_E_INVALID, "unknown key permission '%.40s'",
                       name != NULL ? name : "");
}

const char *atr_vault_perm_name(unsigned perm)
{
    for (size_t i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++) {
        if (perm == 1u << i)
            return perm_names[i];
    }
    return NULL;
}

atr_status atr_vault_op_parse(unsigned *out, const char *name, struct atr_err *err)
{
    for (size_t i = 0; name != NULL && i < sizeof(op_names) / sizeof(op_names[0]); i++) {
        if (strcmp(name, op_names[i]) == 0) {
            *out = 1u << i;
            return ATR_OK;
        }
    }
    return atr_err_set(err, ATR_E_INVALID, "unknown key operation '%.40s'",
                       name != NULL ? name : "");
}

const char *atr_vault_op_name(unsigned op)
{
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
        if (op == 1u << i)
            return op_names[i];
    }
    return NULL;
}

unsigned atr_vault_perms_of(const struct atr_vault_settings *s, const char *tid, const char *oid,
                            const char *appid)
{
    unsigned perms = 0;
    if (tid == NULL || oid == NULL)
        return 0;
    for (size_t i = 0; i < s->npolicies; i++) {
        const struct atr_vault_access_policy *p = &s->policies[i];
        if (strcasecmp(p->tenant_id, tid) != 0 || strcasecmp(p->object_id, oid) != 0)
            continue;
        if (p->application_id[0] != '\0' &&
            (appid == NULL || strcasecmp(p->application_id, appid) != 0))
            continue;
        perms |= p->keys;
    }
    return perms;
}

/* ---------------------------------------------------------------- CIDR */

atr_status atr_vault_cidr_parse(struct atr_vault_cidr *out, const char *text, struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    size_t n = text != NULL ? strlen(text) : 0;
    if (n == 0 || n >= sizeof(out->text))
        return atr_err_set(err, ATR_E_INVALID, "an IP rule must be an address or a CIDR range");
    char addr[64];
    memcpy(addr, text, n + 1);
    char *slash = strchr(addr, '/');
    long prefix = -1;
    if (slash != NULL) {
        *slash = '\0';
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return atr_err_set(err, ATR_E_INVALID, "IP rule '%s': bad prefix length", text);
        prefix = 0;
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9')
                return atr_err_set(err, ATR_E_INVALID, "IP rule '%s': bad prefix length", text);
            prefix = prefix * 10 + (*p - '0');
        }
    }
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        if (prefix < 0)
            prefix = 32;
        if (prefix > 32)
            return atr_err_set(err, ATR_E_INVALID, "IP rule '%s': prefix above 32", text);
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        if (prefix < 0)
            prefix = 128;
        if (prefix > 128)
            return atr_err_set(err, ATR_E_INVALID, "IP rule '%s': prefix above 128", text);
    } else {
        return atr_err_set(err, ATR_E_INVALID, "IP rule '%s' is not an IPv4 or IPv6 address", text);
    }
    out->prefix = (unsigned)prefix;
    memcpy(out->text, text, n + 1);
    return ATR_OK;
}

static int prefix_match(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int atr_vault_cidr_contains(const struct atr_vault_cidr *net, const char *ip)
{
    uint8_t a[16];
    if (ip == NULL)
        return 0;
    if (inet_pton(AF_INET, ip, a) == 1)
        return net->family == AF_INET && prefix_match(a, net->addr, net->prefix);
    if (inet_pton(AF_INET6, ip, a) != 1)
        return 0;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0)
        return net->family == AF_INET && prefix_match(a + 12, net->addr, net->prefix);
    return net->family == AF_INET6 && prefix_match(a, net->addr, net->prefix);
}

int atr_vault_firewall_admits(const struct atr_vault_settings *s, const char *ip,
                              int trusted_service)
{
    if (!s->acl_deny)
        return 1;
    if (s->acl_bypass && trusted_service)
        return 1;
    for (size_t i = 0; i < s->nip_rules; i++) {
        if (atr_vault_cidr_contains(&s->ip_rules[i], ip))
            return 1;
    }
    return 0;
}

const char *atr_vault_recovery_level(const struct atr_vault_settings *s)
{
    if (s->retention_days >= ATR_VAULT_RETENTION_MAX)
        return s->purge_protection ? "Recoverable" : "Recoverable+Purgeable";
    return s->purge_protection ? "CustomizedRecoverable" : "CustomizedRecoverable+Purgeable";
}

/* ------------------------------------------------------------ settings */

static atr_status bad(struct atr_err *err, const char *what)
{
    return atr_err_set(err, ATR_E_INVALID, "vault settings: %s", what);
}

static atr_status parse_policy(struct atr_vault_access_policy *p, const json_t *o,
                               struct atr_err *err)
{
    memset(p, 0, sizeof(*p));
    if (!json_is_object(o))
        return bad(err, "each access policy must be an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        if (strcmp(k, "tenantId") == 0 || strcmp(k, "objectId") == 0 ||
            strcmp(k, "applicationId") == 0) {
            if (json_is_null(v) && strcmp(k, "applicationId") == 0)
                continue;
            if (!id_ok(json_string_value(v)))
                return atr_err_set(err, ATR_E_INVALID,
                                   "vault settings: accessPolicies: %s must be 1..64 "
                                   "characters of [A-Za-z0-9-]",
                                   k);
            char *dst = k[0] == 't' ? p->tenant_id : k[0] == 'o' ? p->object_id : p->application_id;
            snprintf(dst, ATR_VAULT_ID_MAX + 1, "%s", json_string_value(v));
        } else if (strcmp(k, "permissions") == 0) {
            if (!json_is_object(v))
                return bad(err, "accessPolicies: permissions must be an object");
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv)
            {
                if (!json_is_array(pv))
                    return bad(err, "accessPolicies: each permission list must be an array");
                if (strcmp(pk, "keys") != 0)
                    continue; /* secrets, certificates, storage: not served here */
                size_t i;
                json_t *e;
                json_array_foreach(pv, i, e)
                {
                    unsigned bit = 0;
                    if (!json_is_string(e))
                        return bad(err, "accessPolicies: permissions must be strings");
                    ATR_TRY(atr_vault_perm_parse(&bit, json_string_value(e), err));
                    p->keys |= bit;
                }
            }
        } else {
            return atr_err_set(err, ATR_E_INVALID,
                               "vault settings: accessPolicies: unknown member '%.40s'", k);
        }
    }
    if (p->tenant_id[0] == '\0' || p->object_id[0] == '\0')
        return bad(err, "an access policy needs tenantId and objectId");
    return ATR_OK;
}

static atr_status parse_acls(struct atr_vault_settings *out, const json_t *o, struct atr_err *err)
{
    if (!json_is_object(o))
        return bad(err, "networkAcls must be an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        if (strcmp(k, "defaultAction") == 0) {
            const char *s = json_string_value(v);
            if (s == NULL || (strcasecmp(s, "Allow") != 0 && strcasecmp(s, "Deny") != 0))
                return bad(err, "networkAcls.defaultAction must be Allow or Deny");
            out->acl_deny = strcasecmp(s, "Deny") == 0;
        } else if (strcmp(k, "bypass") == 0) {
            const char *s = json_string_value(v);
            if (s == NULL || (strcasecmp(s, "AzureServices") != 0 && strcasecmp(s, "None") != 0))
                return bad(err, "networkAcls.bypass must be AzureServices or None");
            out->acl_bypass = strcasecmp(s, "AzureServices") == 0;
        } else if (strcmp(k, "ipRules") == 0) {
            if (!json_is_array(v))
                return bad(err, "networkAcls.ipRules must be an array");
            if (json_array_size(v) > ATR_VAULT_MAX_IP_RULES)
                return bad(err, "networkAcls.ipRules has too many rules");
            out->nip_rules = 0;
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                const char *val = json_is_object(e) ? json_string_value(json_object_get(e, "value"))
                                                    : json_string_value(e);
                if (val == NULL)
                    return bad(err, "networkAcls.ipRules entries are {\"value\": \"CIDR\"}");
                ATR_TRY(atr_vault_cidr_parse(&out->ip_rules[out->nip_rules], val, err));
                out->nip_rules++;
            }
        } else if (strcmp(k, "virtualNetworkRules") == 0) {
            if (!json_is_array(v) || json_array_size(v) != 0)
                return bad(err, "networkAcls.virtualNetworkRules are not supported (use [])");
        } else {
            return atr_err_set(err, ATR_E_INVALID,
                               "vault settings: networkAcls: unknown member '%.40s'", k);
        }
    }
    return ATR_OK;
}

static atr_status parse_limit(unsigned *out, const json_t *v, const char *name, struct atr_err *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000)
        return atr_err_set(err, ATR_E_INVALID, "vault settings: limits.%s must be 1..1000000",
                           name);
    *out = (unsigned)json_integer_value(v);
    return ATR_OK;
}

atr_status atr_vault_settings_parse(struct atr_vault_settings *out, const json_t *doc,
                                    struct atr_err *err)
{
    if (!json_is_object(doc))
        return bad(err, "the body must be a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v)
    {
        if (strcmp(k, "directoryId") == 0 || strcmp(k, "tenantId") == 0) {
            if (!id_ok(json_string_value(v)))
                return bad(err, "directoryId must be 1..64 characters of [A-Za-z0-9-]");
            snprintf(out->directory_id, sizeof(out->directory_id), "%s", json_string_value(v));
        } else if (strcmp(k, "softDeleteRetentionInDays") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < ATR_VAULT_RETENTION_MIN ||
                json_integer_value(v) > ATR_VAULT_RETENTION_MAX)
                return bad(err, "softDeleteRetentionInDays must be an integer from 7 to 90");
            out->retention_days = (int)json_integer_value(v);
        } else if (strcmp(k, "enablePurgeProtection") == 0) {
            if (!json_is_boolean(v))
                return bad(err, "enablePurgeProtection must be true or false");
            out->purge_protection = json_is_true(v);
        } else if (strcmp(k, "enableSoftDelete") == 0) {
            if (!json_is_true(v))
                return bad(err, "soft delete is always on (Azure no longer allows turning it off)");
        } else if (strcmp(k, "accessPolicies") == 0) {
            if (!json_is_array(v))
                return bad(err, "accessPolicies must be an array");
            if (json_array_size(v) > ATR_VAULT_MAX_POLICIES)
                return bad(err, "accessPolicies has too many entries");
            out->npolicies = 0;
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                ATR_TRY(parse_policy(&out->policies[out->npolicies], e, err));
                out->npolicies++;
            }
        } else if (strcmp(k, "networkAcls") == 0) {
            ATR_TRY(parse_acls(out, v, err));
        } else if (strcmp(k, "limits") == 0) {
            if (!json_is_object(v))
                return bad(err, "limits must be an object");
            const char *lk;
            json_t *lv;
            json_object_foreach(v, lk, lv)
            {
                if (strcmp(lk, "keyOperations") == 0)
                    ATR_TRY(parse_limit(&out->limit_ops, lv, lk, err));
                else if (strcmp(lk, "keyCreate") == 0)
                    ATR_TRY(parse_limit(&out->limit_create, lv, lk, err));
                else
                    return atr_err_set(err, ATR_E_INVALID,
                                       "vault settings: limits: unknown member '%.40s'", lk);
            }
        } else if (strcmp(k, "name") == 0 || strcmp(k, "recoveryLevel") == 0 ||
                   strcmp(k, "vaultUri") == 0) {
            /* read-only members of the document; ignored on input */
        } else {
            return atr_err_set(err, ATR_E_INVALID, "vault settings: unknown member '%.40s'", k);
        }
    }
    if (out->directory_id[0] == '\0')
        return bad(err, "directoryId (the vault's Entra directory) is required");
    return ATR_OK;
}

atr_status atr_vault_settings_check_update(const struct atr_vault_settings *old,
                                           const struct atr_vault_settings *next,
                                           struct atr_err *err)
{
    if (old->purge_protection && !next->purge_protection)
        return atr_err_set(err, ATR_E_CONFLICT,
                           "purge protection cannot be turned off once it is on");
    if (old->purge_protection && old->retention_days != next->retention_days)
        return atr_err_set(err, ATR_E_CONFLICT,
                           "the soft-delete retention cannot change once purge protection is on");
    return ATR_OK;
}

atr_status atr_vault_settings_to_json(json_t **out, const struct atr_vault_settings *s)
{
    *out = NULL;
    json_t *pols = json_array();
    json_t *rules = json_array();
    json_t *doc = NULL;
    if (pols == NULL || rules == NULL)
        goto nomem;
    for (size_t i = 0; i < s->npolicies; i++) {
        const struct atr_vault_access_policy *p = &s->policies[i];
        json_t *keys = json_array();
        if (keys == NULL)
            goto nomem;
        for (unsigned b = 1; b != 0 && b <= ATR_VAULT_PERM_SETROTATIONPOLICY; b <<= 1) {
            if ((p->keys & b) != 0 &&
                json_array_append_new(keys, json_string(atr_vault_perm_name(b))) != 0) {
                json_decref(keys);
                goto nomem;
            }
        }
        json_t *o =
            json_pack("{s:s,s:s,s:o,s:{s:o}}", "tenantId", p->tenant_id, "objectId", p->object_id,
                      "applicationId",
                      p->application_id[0] != '\0' ? json_string(p->application_id) : json_null(),
                      "permissions", "keys", keys);
        if (o == NULL || json_array_append_new(pols, o) != 0)
            goto nomem;
    }
    for (size_t i = 0; i < s->nip_rules; i++) {
        if (json_array_append_new(rules, json_pack("{s:s}", "value", s->ip_rules[i].text)) != 0)
            goto nomem;
    }
    doc = json_pack("{s:s,s:i,s:b,s:b,s:s,s:O,s:{s:s,s:s,s:O,s:[]},s:{s:I,s:I}}", "directoryId",
                    s->directory_id, "softDeleteRetentionInDays", s->retention_days,
                    "enableSoftDelete", 1, "enablePurgeProtection", s->purge_protection,
                    "recoveryLevel", atr_vault_recovery_level(s), "accessPolicies", pols,
                    "networkAcls", "defaultAction", s->acl_deny ? "Deny" : "Allow", "bypass",
                    s->acl_bypass ? "AzureServices" : "None", "ipRules", rules,
                    "virtualNetworkRules", "limits", "keyOperations", (json_int_t)s->limit_ops,
                    "keyCreate", (json_int_t)s->limit_create);
    if (doc == NULL)
        goto nomem;
    json_decref(pols);
    json_decref(rules);
    *out = doc;
    return ATR_OK;
nomem:
    json_decref(pols);
    json_decref(rules);
    return ATR_E_NOMEM;
}

/* ------------------------------------------------------------ durations */

atr_status atr_vault_duration_parse(int64_t *out_s, const char *text, struct atr_err *err)
{
    *out_s = 0;
    if (text == NULL || text[0] != 'P' || text[1] == '\0' || strlen(text) > 32)
        return atr_err_set(err, ATR_E_INVALID, "'%.40s' is not an ISO 8601 duration (e.g. P30D)",
                           text != NULL ? text : "");
    int in_time = 0, any = 0;
    int64_t total = 0;
    const char *p = text + 1;
    while (*p != '\0') {
        if (*p == 'T') {
            if (in_time)
                goto bad_text;
            in_time = 1;
            p++;
            if (*p == '\0')
                goto bad_text;
            continue;
        }
        int64_t n = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            n = n * 10 + (*p - '0');
            if (++digits > 6)
                goto bad_text;
            p++;
        }
        if (digits == 0)
            goto bad_text;
        int64_t unit;
        switch (*p) {
        case 'Y':
            unit = in_time ? -1 : 365 * 86400;
            break;
        case 'M':
            unit = in_time ? 60 : 30 * 86400;
            break;
        case 'W':
            unit = in_time ? -1 : 7 * 86400;
            break;
        case 'D':
            unit = in_time ? -1 : 86400;
            break;
        case 'H':
            unit = in_time ? 3600 : -1;
            break;
        case 'S':
            unit = in_time ? 1 : -1;
            break;
        default:
            unit = -1;
        }
        if (unit < 0)
            goto bad_text;
        total += n * unit;
        any = 1;
        p++;
    }
    if (!any || total <= 0)
        goto bad_text;
    *out_s = total;
    return ATR_OK;
bad_text:
    return atr_err_set(err, ATR_E_INVALID, "'%.40s' is not an ISO 8601 duration (e.g. P30D)", text);
}

/* ------------------------------------------------------- rotation policy */

#define DAY_S ((int64_t)86400)

atr_status atr_vault_rotation_parse(struct atr_vault_rotation *out, const json_t *doc,
                                    struct atr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(doc))
        return atr_err_set(err, ATR_E_INVALID, "the rotation policy must be a JSON object");
    json_t *attrs = json_object_get(doc, "attributes");
    if (attrs != NULL && !json_is_null(attrs)) {
        if (!json_is_object(attrs))
            return atr_err_set(err, ATR_E_INVALID, "attributes must be an object");
        json_t *e = json_object_get(attrs, "expiryTime");
        if (e != NULL && !json_is_null(e)) {
            ATR_TRY(atr_vault_duration_parse(&out->expiry_s, json_string_value(e), err));
            if (out->expiry_s < 28 * DAY_S)
                return atr_err_set(err, ATR_E_INVALID,
                                   "expiryTime must be at least 28 days (P28D)");
        }
    }
    json_t *acts = json_object_get(doc, "lifetimeActions");
    if (acts != NULL && !json_is_null(acts)) {
        if (!json_is_array(acts) || json_array_size(acts) > 2)
            return atr_err_set(err, ATR_E_INVALID,
                               "lifetimeActions must be an array of at most 2 actions");
        size_t i;
        json_t *a;
        json_array_foreach(acts, i, a)
        {
            json_t *trig = json_object_get(a, "trigger");
            const char *type =
                json_string_value(json_object_get(json_object_get(a, "action"), "type"));
            if (!json_is_object(trig) || type == NULL)
                return atr_err_set(err, ATR_E_INVALID,
                                   "each lifetime action needs a trigger and an action type");
            int rotate = strcasecmp(type, "Rotate") == 0;
            if (!rotate && strcasecmp(type, "Notify") != 0)
                return atr_err_set(err, ATR_E_INVALID, "the action type must be Rotate or Notify");
            json_t *tac = json_object_get(trig, "timeAfterCreate");
            json_t *tbe = json_object_get(trig, "timeBeforeExpiry");
            int has_tac = tac != NULL && !json_is_null(tac);
            int has_tbe = tbe != NULL && !json_is_null(tbe);
            if (has_tac == has_tbe)
                return atr_err_set(err, ATR_E_INVALID,
                                   "a trigger has exactly one of timeAfterCreate and "
                                   "timeBeforeExpiry");
            int64_t d = 0;
            ATR_TRY(atr_vault_duration_parse(&d, json_string_value(has_tac ? tac : tbe), err));
            if (d < 7 * DAY_S)
                return atr_err_set(err, ATR_E_INVALID, "a trigger must be at least 7 days (P7D)");
            if (!rotate && has_tac)
                return atr_err_set(err, ATR_E_INVALID, "a Notify action needs timeBeforeExpiry");
            if (has_tbe && out->expiry_s != 0 && d >= out->expiry_s)
                return atr_err_set(err, ATR_E_INVALID,
                                   "timeBeforeExpiry must be shorter than expiryTime");
            if (rotate && has_tac)
                out->rotate_after_create = d;
            else if (rotate)
                out->rotate_before_expiry = d;
        }
    }
    return ATR_OK;
}

int atr_vault_rotation_due(const struct atr_vault_rotation *r, int64_t created, int64_t exp,
                           int64_t now)
{
    if (r->rotate_after_create > 0 && now >= created + r->rotate_after_create)
        return 1;
    if (r->rotate_before_expiry > 0 && exp > 0 && now >= exp - r->rotate_before_expiry)
        return 1;
    return 0;
}
