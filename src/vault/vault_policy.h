/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_VAULT_POLICY_H
#define ATR_VAULT_POLICY_H

/*
 * The settings of one vault of the key vault server (`atrest vault`) and the
 * pure decisions made from them: which permission an access policy grants,
 * whether the firewall admits a client address, which recovery level the
 * vault reports, and when a rotation policy asks for a new key version.
 *
 * Settings travel as the JSON document of the management API
 * (docs/vault.md), the names Azure's ARM uses:
 *   {"directoryId": "...", "softDeleteRetentionInDays": 90,
 *    "enablePurgeProtection": true,
 *    "accessPolicies": [{"tenantId","objectId","applicationId"?,
 *                        "permissions": {"keys": ["get", "wrapKey", ...]}}],
 *    "networkAcls": {"defaultAction": "Allow"|"Deny",
 *                    "bypass": "AzureServices"|"None",
 *                    "ipRules": [{"value": "203.0.113.0/24"}]},
 *    "limits": {"keyOperations": 4000, "keyCreate": 10}}
 * atr_vault_settings_parse() validates all of it and fills a struct;
 * atr_vault_settings_to_json() writes the canonical document back.
 *
 * Thread-safety: every function is reentrant; a settings struct is a value
 * owned by its holder.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/error.h"

#define ATR_VAULT_NAME_MAX      24 /* Azure: 3-24 characters */
#define ATR_VAULT_ID_MAX        64 /* directory, object and application ids */
#define ATR_VAULT_MAX_POLICIES  64 /* Azure allows 1024; plenty for tests */
#define ATR_VAULT_MAX_IP_RULES  64
#define ATR_VAULT_RETENTION_MIN 7
#define ATR_VAULT_RETENTION_MAX 90
/* Azure's published key limits per vault per 10 seconds (software RSA). */
#define ATR_VAULT_LIMIT_OPS_DEFAULT    4000
#define ATR_VAULT_LIMIT_CREATE_DEFAULT 10
#define ATR_VAULT_LIMIT_WINDOW_S       10

/* Key permissions of an access policy, by Azure's names. */
typedef enum atr_vault_perm {
    ATR_VAULT_PERM_GET = 1u << 0,
    ATR_VAULT_PERM_LIST = 1u << 1,
    ATR_VAULT_PERM_CREATE = 1u << 2,
    ATR_VAULT_PERM_UPDATE = 1u << 3,
    ATR_VAULT_PERM_IMPORT = 1u << 4,
    ATR_VAULT_PERM_DELETE = 1u << 5,
    ATR_VAULT_PERM_RECOVER = 1u << 6,
    ATR_VAULT_PERM_BACKUP = 1u << 7,
    ATR_VAULT_PERM_RESTORE = 1u << 8,
    ATR_VAULT_PERM_DECRYPT = 1u << 9,
    ATR_VAULT_PERM_ENCRYPT = 1u << 10,
    ATR_VAULT_PERM_UNWRAP = 1u << 11,
    ATR_VAULT_PERM_WRAP = 1u << 12,
    ATR_VAULT_PERM_VERIFY = 1u << 13,
    ATR_VAULT_PERM_SIGN = 1u << 14,
    ATR_VAULT_PERM_PURGE = 1u << 15,
    ATR_VAULT_PERM_RELEASE = 1u << 16,
    ATR_VAULT_PERM_ROTATE = 1u << 17,
    ATR_VAULT_PERM_GETROTATIONPOLICY = 1u << 18,
    ATR_VAULT_PERM_SETROTATIONPOLICY = 1u << 19,
} atr_vault_perm;
#define ATR_VAULT_PERM_ALL ((1u << 20) - 1u)

/* JSON Web Key operations ("key_ops"). */
typedef enum atr_vault_op {
    ATR_VAULT_OP_ENCRYPT = 1u << 0,
    ATR_VAULT_OP_DECRYPT = 1u << 1,
    ATR_VAULT_OP_SIGN = 1u << 2,
    ATR_VAULT_OP_VERIFY = 1u << 3,
    ATR_VAULT_OP_WRAP = 1u << 4,
    ATR_VAULT_OP_UNWRAP = 1u << 5,
    ATR_VAULT_OP_IMPORT = 1u << 6,
    ATR_VAULT_OP_EXPORT = 1u << 7,
} atr_vault_op;
/* The default key_ops of a new RSA key, as Azure gives them. */
#define ATR_VAULT_OPS_RSA_DEFAULT 0x3fu
/* ... and of a new EC key. */
#define ATR_VAULT_OPS_EC_DEFAULT (ATR_VAULT_OP_SIGN | ATR_VAULT_OP_VERIFY)

struct atr_vault_access_policy {
    char tenant_id[ATR_VAULT_ID_MAX + 1];
    char object_id[ATR_VAULT_ID_MAX + 1];
    char application_id[ATR_VAULT_ID_MAX + 1]; /* "" = any application */
    unsigned keys;                             /* atr_vault_perm bits */
};

/* An IPv4 or IPv6 network (address + prefix length). */
struct atr_vault_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
    char text[64]; /* as given, for the settings document */
};

struct atr_vault_settings {
    char directory_id[ATR_VAULT_ID_MAX + 1];
    int retention_days;   /* 7..90 */
    int purge_protection; /* 0/1; once 1 it cannot become 0 */
    size_t npolicies;
    struct atr_vault_access_policy policies[ATR_VAULT_MAX_POLICIES];
    int acl_deny;   /* defaultAction Deny */
    int acl_bypass; /* bypass AzureServices */
    size_t nip_rules;
    struct atr_vault_cidr ip_rules[ATR_VAULT_MAX_IP_RULES];
    unsigned limit_ops;    /* key operations per 10 s (weighted, see vault.h) */
    unsigned limit_create; /* key creations per 10 s */
};

/** 1 if @p name is a valid vault name (3-24 of [0-9a-zA-Z-], starting with a letter). */
int atr_vault_name_ok(const char *name);

/** 1 if @p name is a valid key name (1-127 of [0-9a-zA-Z-]). */
int atr_vault_key_name_ok(const char *name);

/** 1 if @p v is a key version (32 lowercase hex characters). */
int atr_vault_version_ok(const char *v);

/** Fills @p out with the defaults (retention 90, no purge protection, Allow, limits). */
void atr_vault_settings_defaults(struct atr_vault_settings *out);

/**
 * Parses a management settings document @p doc into @p out. Members absent
 * from @p doc keep the values @p out already has (so a caller can start from
 * the current settings for an update, or from the defaults).
 * @return ATR_E_INVALID with a message naming the member (unknown member,
 *         wrong type, retention outside 7..90, unknown permission, bad CIDR,
 *         bad action, too many entries, an id that is not 1..64 characters
 *         of [A-Za-z0-9-]).
 */
ATR_MUST_CHECK atr_status atr_vault_settings_parse(struct atr_vault_settings *out,
                                                   const json_t *doc, struct atr_err *err);

/**
 * Writes @p s as the canonical settings document.
 * @param[out] out a new JSON object (json_decref).
 * @return ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_vault_settings_to_json(json_t **out,
                                                     const struct atr_vault_settings *s);

/**
 * Checks an update: purge protection cannot be turned off once on, and the
 * retention cannot change once purge protection is on (Azure's rules).
 * @return ATR_E_CONFLICT with the reason.
 */
ATR_MUST_CHECK atr_status atr_vault_settings_check_update(const struct atr_vault_settings *old,
                                                          const struct atr_vault_settings *next,
                                                          struct atr_err *err);

/**
 * Parses one permission name, case-insensitively ("unwrapKey",
 * "UnwrapKey", "unwrapkey"); "all" gives every permission.
 * @return ATR_E_INVALID for an unknown name.
 */
ATR_MUST_CHECK atr_status atr_vault_perm_parse(unsigned *out, const char *name,
                                               struct atr_err *err);

/** Azure's spelling of one permission bit ("unwrapKey"), or NULL. */
const char *atr_vault_perm_name(unsigned perm);

/**
 * The permissions held by the caller (@p tid, @p oid, @p appid; appid may be
 * NULL) under the vault's access policies: the union of every policy for
 * the tenant and object (and, for a compound policy, the application).
 */
unsigned atr_vault_perms_of(const struct atr_vault_settings *s, const char *tid, const char *oid,
                            const char *appid);

/** Parses a key operation name ("wrapKey"; exact case). @return ATR_E_INVALID. */
ATR_MUST_CHECK atr_status atr_vault_op_parse(unsigned *out, const char *name, struct atr_err *err);

/** The name of one key operation bit, or NULL. */
const char *atr_vault_op_name(unsigned op);

/**
 * Parses a CIDR ("10.0.0.0/8", "2001:db8::/32") or a bare address (a /32 or
 * /128 network), as Azure's ipRules accept them.
 * @return ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_vault_cidr_parse(struct atr_vault_cidr *out, const char *text,
                                               struct atr_err *err);

/** 1 if the address @p ip (text, v4 or v6; v4-mapped v6 counts as v4) is in @p net. */
int atr_vault_cidr_contains(const struct atr_vault_cidr *net, const char *ip);

/**
 * The firewall decision for a client address: 1 = admitted. A Deny default
 * admits addresses in an IP rule, and trusted services (@p trusted_service
 * = the caller's appid is in the configured list) when bypass is
 * AzureServices.
 */
int atr_vault_firewall_admits(const struct atr_vault_settings *s, const char *ip,
                              int trusted_service);

/**
 * The recovery level Azure reports for these settings: "Recoverable"
 * (purge protection, 90 days), "Recoverable+Purgeable" (90 days),
 * "CustomizedRecoverable" / "CustomizedRecoverable+Purgeable" (7..89 days).
 */
const char *atr_vault_recovery_level(const struct atr_vault_settings *s);

/**
 * Parses an ISO 8601 duration of the forms rotation policies use: "P30D",
 * "P1Y2M10D", "P2W", "PT12H", "P1DT2H30M" (years count 365 days, months
 * 30 days).
 * @param[out] out_s the duration in seconds (> 0).
 * @return ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_vault_duration_parse(int64_t *out_s, const char *text,
                                                   struct atr_err *err);

/* A parsed key rotation policy. */
struct atr_vault_rotation {
    int64_t expiry_s;             /* attributes.expiryTime; 0 = none */
    int64_t rotate_after_create;  /* a Rotate action's timeAfterCreate; 0 = none */
    int64_t rotate_before_expiry; /* a Rotate action's timeBeforeExpiry; 0 = none */
};

/**
 * Validates a rotation policy document (the body of PUT rotationpolicy:
 * "lifetimeActions" of at most 2 actions with one trigger each, action type
 * Rotate or Notify, "attributes.expiryTime") and fills @p out.
 * Azure's rules: expiryTime at least 28 days; timeAfterCreate at least 7
 * days; timeBeforeExpiry at least 7 days and below expiryTime; a Notify
 * action needs timeBeforeExpiry.
 * @return ATR_E_INVALID with a message naming the rule.
 */
ATR_MUST_CHECK atr_status atr_vault_rotation_parse(struct atr_vault_rotation *out,
                                                   const json_t *doc, struct atr_err *err);

/**
 * 1 if the policy asks for a new version now: @p created and @p exp
 * (0 = none) are the latest version's, @p now the clock's, all in seconds.
 */
int atr_vault_rotation_due(const struct atr_vault_rotation *r, int64_t created, int64_t exp,
                           int64_t now);

#endif /* ATR_VAULT_POLICY_H */
