/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest vault: the Azure Key Vault compatible key server (see
 * docs/vault.md) and its management commands.
 *
 *   atrest vault serve --dir DIR --cert FILE --key FILE [--idp URL] [--ca FILE] ...
 *   atrest vault create|update NAME --directory TID [--retention DAYS] [--purge-protection]
 *   atrest vault show NAME | list
 *   atrest vault policy set NAME --object-id OID --permissions get,list,... [--tenant T]
 *                                [--application-id A]
 *   atrest vault policy delete NAME --object-id OID
 *   atrest vault firewall NAME --default-action Allow|Deny [--bypass AzureServices|None]
 *                              [--ip-rule CIDR]...
 *   atrest vault faults [--latency-ms N] [--error-rate R] [--error-status S]
 *                       [--refuse-seconds N]
 *   atrest vault clock --advance SECONDS
 *   atrest vault key ...                  (the keys data plane: cmd_keys.c)
 *
 * The management commands are REST clients of a running server (--url,
 * --ca) authenticated with its bootstrap secret (--admin-secret-file,
 * ATREST_VAULT_ADMIN_SECRET, or the profile; see cli/client.h).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/rest.h"
#include "cli/serving.h"
#include "http/server.h"
#include "vault/vault.h"
#include "vault/vault_policy.h"

extern char **environ;

#define VAULT_DEFAULT_PORT 8445
#define MAX_RULES          ATR_VAULT_MAX_IP_RULES

/* The usage lines of each verb; the first line of each entry names it. */
static const struct {
    const char *verb;
    const char *usage;
} vault_verbs[] = {
    {"serve", "serve --dir DIR --cert FILE --key FILE [--listen ADDR] [--port N]\n"
              "        [--idp URL] [--ca FILE] [--dns-suffix S] [--default-vault V]\n"
              "        [--trusted-app-id ID]... [--test-mode] [--config FILE]"},
    {"create", "create NAME --directory TID [--retention DAYS] [--purge-protection]\n"
               "        [--limit-ops N] [--limit-create N]"},
    {"update", "update NAME [--directory TID] [--retention DAYS] [--purge-protection]\n"
               "        [--limit-ops N] [--limit-create N]"},
    {"show", "show NAME"},
    {"list", "list"},
    {"policy", "policy set NAME --object-id OID --permissions P1,P2,... [--tenant TID]\n"
               "        [--application-id APPID]\n"
               "  atrest vault policy delete NAME --object-id OID"},
    {"firewall", "firewall NAME --default-action Allow|Deny [--bypass AzureServices|None]\n"
                 "        [--ip-rule CIDR]..."},
    {"faults", "faults [--latency-ms N] [--error-rate R] [--error-status S]\n"
               "        [--refuse-seconds N]          (server in --test-mode)"},
    {"clock", "clock --advance SECONDS               (server in --test-mode)"},
    {"key", "key list|create|show|versions|rotate|delete|recover|purge|import|update|\n"
            "        rotation-policy ...            (see 'atrest vault key --help')"},
};

/* The usage of @p verb (NULL: every verb). */
static void vault_usage_of(FILE *out, const char *verb)
{
    fprintf(out, "usage:\n");
    for (size_t i = 0; i < ATR_ARRAY_LEN(vault_verbs); i++) {
        if (verb == NULL || strcmp(verb, vault_verbs[i].verb) == 0)
            fprintf(out, "  atrest vault %s\n", vault_verbs[i].usage);
    }
    if (verb == NULL || strcmp(verb, "serve") == 0)
        fprintf(out,
                "\nserve runs the key vault server (prints its URL, stops on SIGTERM); state\n"
                "lives in DIR (vault.db, master.key, admin.secret). Tokens are checked against\n"
                "the identity server at --idp. A request's Host {vault}.{dns suffix} picks the\n"
                "vault; other hosts get --default-vault.\n");
    if (verb == NULL || strcmp(verb, "create") == 0 || strcmp(verb, "update") == 0)
        fprintf(out, "\ncreate and update set a vault's directory (whose tokens it accepts), soft\n"
                     "delete retention (7-90 days), purge protection (cannot be turned off) and\n"
                     "throttling limits (per 10 s).\n");
    if (verb == NULL || strcmp(verb, "policy") == 0)
        fprintf(out,
                "\npolicy set grants a principal (its object id in the vault's directory) key\n"
                "permissions: get list create update import delete recover backup restore\n"
                "decrypt encrypt unwrapKey wrapKey verify sign purge release rotate\n"
                "getrotationpolicy setrotationpolicy (or all). The atrest service needs\n"
                "list,wrapKey,unwrapKey.\n");
    if (verb == NULL || strcmp(verb, "firewall") == 0)
        fprintf(out, "\nfirewall sets the network rules: with Deny only --ip-rule addresses (and\n"
                     "trusted services, unless --bypass None) get through.\n");
    if (verb == NULL || strcmp(verb, "serve") != 0)
        fprintf(out, "\nThe management commands print the server's JSON answers (--json is\n"
                     "accepted for uniformity).\n");
    if (verb == NULL || strcmp(verb, "serve") != 0)
        atr_cli_conf_help(out, ATR_CLI_VAULT, ATR_CLI_HELP_CONN | ATR_CLI_HELP_ADMIN);
}

static void vault_usage(FILE *out)
{
    vault_usage_of(out, NULL);
}

/* ------------------------------------------------------------------ serve */

static int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        ATR_CLI_SERVE_LONGOPTS,
        {"idp", required_argument, NULL, 'i'},
        {"ca", required_argument, NULL, 'C'},
        {"dns-suffix", required_argument, NULL, 's'},
        {"default-vault", required_argument, NULL, 'v'},
        {"trusted-app-id", required_argument, NULL, 't'},
        {"test-mode", no_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    struct atr_cli_serving sv;
    atr_cli_serving_init(&sv, "vault serve", "vault", VAULT_DEFAULT_PORT);
    sv.so.threads = 8;
    struct atr_vault_opts vo;
    memset(&vo, 0, sizeof(vo));
    const char *trusted[ATR_VAULT_MAX_TRUSTED];
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int h = atr_cli_serving_opt(&sv, ch, optarg);
        if (h < 0)
            return -h;
        if (h > 0)
            continue;
        switch (ch) {
        case 'i':
            vo.idp_authority = optarg;
            break;
        case 'C':
            vo.ca_file = optarg;
            break;
        case 's':
            vo.dns_suffix = optarg;
            break;
        case 'v':
            vo.default_vault = optarg;
            break;
        case 't':
            if (vo.ntrusted == ATR_VAULT_MAX_TRUSTED)
                return atr_args_usage_error("vault serve", "at most %d --trusted-app-id",
                                            ATR_VAULT_MAX_TRUSTED);
            trusted[vo.ntrusted++] = optarg;
            break;
        case 'T':
            vo.test_mode = 1;
            break;
        case 'h':
            vault_usage_of(stdout, "serve");
            return ATR_EXIT_OK;
        default:
            return atr_args_getopt_error("vault serve", ch, argv);
        }
    }
    vo.trusted_app_ids = trusted;
    int rc = atr_cli_serving_prepare(&sv, argc, argv, "vault.admin_secret");
    if (rc != ATR_EXIT_OK) {
        atr_cli_serving_cleanup(&sv);
        return rc;
    }
    rc = ATR_EXIT_FAIL;
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_vault *v = NULL;
    char db[4096], mk[4096];
    if (vo.idp_authority == NULL)
        vo.idp_authority = atr_config_get(sv.cfg, "vault.idp");
    if (vo.ca_file == NULL)
        vo.ca_file = atr_config_get(sv.cfg, "vault.ca");
    if (vo.dns_suffix == NULL)
        vo.dns_suffix = atr_config_get(sv.cfg, "vault.dns_suffix");
    if (vo.default_vault == NULL)
        vo.default_vault = atr_config_get(sv.cfg, "vault.default_vault");
    vo.admin_secret = sv.secret;
    vo.db_path = db;
    vo.master_key_path = mk;
    if (vo.idp_authority == NULL)
        fprintf(stderr, "atrest: no --idp given: every data-plane call will be refused\n");
    if (!atr_cli_serving_path(db, sizeof(db), &sv, "vault.db") ||
        !atr_cli_serving_path(mk, sizeof(mk), &sv, "master.key")) {
        /* message printed */
    } else if (atr_vault_new(&v, &vo, &err) != ATR_OK ||
               atr_vault_ticker_start(v, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
    } else {
        sv.so.auth = atr_vault_auth;
        sv.so.auth_ctx = v;
        sv.so.accept = atr_vault_accept;
        sv.so.accept_ctx = v;
        size_t nroutes = 0;
        const struct atr_route *routes = atr_vault_routes(&nroutes);
        rc = atr_cli_serving_run(&sv, routes, nroutes, v, NULL, NULL);
    }
    atr_vault_free(v);
    atr_cli_serving_cleanup(&sv);
    return rc;
}

/* ---------------------------------------------------------------- clients */

struct client_opts {
    struct atr_cli_conf conf; /* --url, --ca, --admin-secret-file, --profile, --json */
    const char *url;
    const char *ca;
    const char *directory;
    const char *object_id;
    const char *tenant;
    const char *application_id;
    const char *permissions;
    const char *default_action;
    const char *bypass;
    const char *rules[MAX_RULES];
    size_t nrules;
    long retention;
    int purge_protection;
    long limit_ops;
    long limit_create;
    long latency_ms;
    const char *error_rate;
    long error_status;
    long refuse_s;
    long advance_s;
    const char *args[2]; /* positional arguments */
    size_t nargs;
};

static int parse_client(struct client_opts *o, const char *cmd, const char *verb, int argc,
                        char **argv)
{
    static const struct option longopts[] = {
        ATR_CLI_CONN_LONGOPTS,
        ATR_CLI_ADMIN_LONGOPTS,
        {"directory", required_argument, NULL, 'D'},
        {"object-id", required_argument, NULL, 'o'},
        {"tenant", required_argument, NULL, 't'},
        {"application-id", required_argument, NULL, 'a'},
        {"permissions", required_argument, NULL, 'P'},
        {"default-action", required_argument, NULL, 'A'},
        {"bypass", required_argument, NULL, 'B'},
        {"ip-rule", required_argument, NULL, 'I'},
        {"retention", required_argument, NULL, 'r'},
        {"purge-protection", no_argument, NULL, 'p'},
        {"limit-ops", required_argument, NULL, 'L'},
        {"limit-create", required_argument, NULL, 'c'},
        {"latency-ms", required_argument, NULL, 'l'},
        {"error-rate", required_argument, NULL, 'e'},
        {"error-status", required_argument, NULL, 's'},
        {"refuse-seconds", required_argument, NULL, 'R'},
        {"advance", required_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    atr_cli_conf_init(&o->conf, cmd, ATR_CLI_VAULT);
    o->retention = o->limit_ops = o->limit_create = o->latency_ms = o->error_status = o->refuse_s =
        o->advance_s = -1;
    o->purge_protection = -1;
    unsigned long v;
    opterr = 0;
    optind = 1;
    int ch;
    /* "-" keeps positional arguments in order with the options */
    while ((ch = getopt_long(argc, argv, "-:h", longopts, NULL)) != -1) {
        if (atr_cli_conf_opt(&o->conf, ch, optarg))
            continue;
        switch (ch) {
        case 1:
            if (o->nargs == 2)
                return atr_args_usage_error(cmd, "unexpected argument '%s'", optarg);
            o->args[o->nargs++] = optarg;
            break;
        case 'D':
            o->directory = optarg;
            break;
        case 'o':
            o->object_id = optarg;
            break;
        case 't':
            o->tenant = optarg;
            break;
        case 'a':
            o->application_id = optarg;
            break;
        case 'P':
            o->permissions = optarg;
            break;
        case 'A':
            o->default_action = optarg;
            break;
        case 'B':
            o->bypass = optarg;
            break;
        case 'I':
            if (o->nrules == MAX_RULES)
                return atr_args_usage_error(cmd, "at most %d --ip-rule", MAX_RULES);
            o->rules[o->nrules++] = optarg;
            break;
        case 'r':
            if (!atr_args_parse_ulong(&v, optarg, ATR_VAULT_RETENTION_MIN, ATR_VAULT_RETENTION_MAX))
                return atr_args_usage_error(cmd, "--retention must be 7..90 days, not '%s'",
                                            optarg);
            o->retention = (long)v;
            break;
        case 'p':
            o->purge_protection = 1;
            break;
        case 'L':
        case 'c':
            if (!atr_args_parse_ulong(&v, optarg, 1, 1000000))
                return atr_args_usage_error(cmd, "limits must be 1..1000000, not '%s'", optarg);
            *(ch == 'L' ? &o->limit_ops : &o->limit_create) = (long)v;
            break;
        case 'l':
            if (!atr_args_parse_ulong(&v, optarg, 0, 30000))
                return atr_args_usage_error(cmd, "--latency-ms must be 0..30000, not '%s'", optarg);
            o->latency_ms = (long)v;
            break;
        case 'e':
            o->error_rate = optarg;
            break;
        case 's':
            if (!atr_args_parse_ulong(&v, optarg, 400, 599))
                return atr_args_usage_error(cmd, "--error-status must be 400..599, not '%s'",
                                            optarg);
            o->error_status = (long)v;
            break;
        case 'R':
            if (!atr_args_parse_ulong(&v, optarg, 0, 3600))
                return atr_args_usage_error(cmd, "--refuse-seconds must be 0..3600, not '%s'",
                                            optarg);
            o->refuse_s = (long)v;
            break;
        case 'v':
            if (!atr_args_parse_ulong(&v, optarg, 0, 315360000UL))
                return atr_args_usage_error(cmd, "--advance must be seconds, not '%s'", optarg);
            o->advance_s = (long)v;
            break;
        case 'h':
            vault_usage_of(stdout, verb);
            return -1;
        default:
            return atr_args_getopt_error(cmd, ch, argv);
        }
    }
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_resolve(&o->conf, &err);
    if (st != ATR_OK)
        return atr_cli_fail(cmd, st, &err);
    o->url = o->conf.url.v;
    o->ca = atr_cli_conf_ca(&o->conf);
    return ATR_EXIT_OK;
}

/* One admin call with the bootstrap secret. */
static int admin_run(const struct client_opts *o, const char *method, const char *path,
                     json_t *body, unsigned want)
{
    char secret[ATR_CLI_SECRET_MAX];
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_admin_secret(secret, sizeof(secret), &o->conf, &err);
    if (st != ATR_OK) {
        json_decref(body);
        return atr_cli_fail(o->conf.cmd, st, &err);
    }
    struct atr_cli_rest t = {o->url, o->ca, secret, NULL, NULL};
    int rc = atr_cli_rest_run(&t, method, path, body, want, 1);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

static int need_name(const char *cmd, const struct client_opts *o)
{
    if (o->nargs != 1 || !atr_vault_name_ok(o->args[0]))
        return atr_args_usage_error(cmd, "give one vault name (3-24 of a-z, 0-9 and '-')");
    return ATR_EXIT_OK;
}

static json_t *permissions_json(const char *list)
{
    json_t *a = json_array();
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); a != NULL && t != NULL;
         t = strtok_r(NULL, ", ", &save))
        json_array_append_new(a, json_string(t));
    return a;
}

static int cmd_create(const char *cmd, const struct client_opts *o, int update)
{
    int rc = need_name(cmd, o);
    if (rc != ATR_EXIT_OK)
        return rc;
    if (!update && o->directory == NULL)
        return atr_args_usage_error(cmd, "--directory (the vault's directory id) is required");
    json_t *body = json_object();
    if (o->directory != NULL)
        json_object_set_new(body, "directoryId", json_string(o->directory));
    if (o->retention >= 0)
        json_object_set_new(body, "softDeleteRetentionInDays", json_integer(o->retention));
    if (o->purge_protection >= 0)
        json_object_set_new(body, "enablePurgeProtection", json_true());
    if (o->limit_ops >= 0 || o->limit_create >= 0) {
        json_t *l = json_object();
        if (o->limit_ops >= 0)
            json_object_set_new(l, "keyOperations", json_integer(o->limit_ops));
        if (o->limit_create >= 0)
            json_object_set_new(l, "keyCreate", json_integer(o->limit_create));
        json_object_set_new(body, "limits", l);
    }
    char path[128];
    snprintf(path, sizeof(path), "/admin/vaults/%s", o->args[0]);
    return admin_run(o, "PUT", path, body, update ? 200 : 201);
}

static int cmd_policy(const struct client_opts *o)
{
    const char *cmd = "vault policy";
    if (o->nargs != 2 || (strcmp(o->args[0], "set") != 0 && strcmp(o->args[0], "delete") != 0))
        return atr_args_usage_error(cmd, "use 'policy set NAME ...' or 'policy delete NAME ...'");
    if (!atr_vault_name_ok(o->args[1]))
        return atr_args_usage_error(cmd, "'%s' is not a vault name", o->args[1]);
    if (o->object_id == NULL)
        return atr_args_usage_error(cmd, "--object-id is required");
    char path[256];
    snprintf(path, sizeof(path), "/admin/vaults/%s/accessPolicies/%.64s", o->args[1], o->object_id);
    if (strcmp(o->args[0], "delete") == 0)
        return admin_run(o, "DELETE", path, NULL, 200);
    if (o->permissions == NULL)
        return atr_args_usage_error(cmd, "--permissions is required (e.g. list,wrapKey,unwrapKey)");
    json_t *body = json_pack("{s:{s:o}}", "permissions", "keys", permissions_json(o->permissions));
    if (o->tenant != NULL)
        json_object_set_new(body, "tenantId", json_string(o->tenant));
    if (o->application_id != NULL)
        json_object_set_new(body, "applicationId", json_string(o->application_id));
    return admin_run(o, "PUT", path, body, 200);
}

static int cmd_firewall(const struct client_opts *o)
{
    const char *cmd = "vault firewall";
    int rc = need_name(cmd, o);
    if (rc != ATR_EXIT_OK)
        return rc;
    if (o->default_action == NULL)
        return atr_args_usage_error(cmd, "--default-action Allow|Deny is required");
    json_t *rules = json_array();
    for (size_t i = 0; i < o->nrules; i++)
        json_array_append_new(rules, json_pack("{s:s}", "value", o->rules[i]));
    json_t *body = json_pack("{s:s,s:s,s:o}", "defaultAction", o->default_action, "bypass",
                             o->bypass != NULL ? o->bypass : "AzureServices", "ipRules", rules);
    char path[128];
    snprintf(path, sizeof(path), "/admin/vaults/%s/networkAcls", o->args[0]);
    return admin_run(o, "PUT", path, body, 200);
}

static int cmd_faults(const struct client_opts *o)
{
    json_t *body = json_object();
    if (o->latency_ms >= 0)
        json_object_set_new(body, "latencyMs", json_integer(o->latency_ms));
    if (o->error_rate != NULL) {
        char *end = NULL;
        double r = strtod(o->error_rate, &end);
        if (end == o->error_rate || *end != '\0' || r < 0 || r > 1) {
            json_decref(body);
            return atr_args_usage_error("vault faults", "--error-rate must be 0..1, not '%s'",
                                        o->error_rate);
        }
        json_object_set_new(body, "errorRate", json_real(r));
    }
    if (o->error_status >= 0)
        json_object_set_new(body, "errorStatus", json_integer(o->error_status));
    if (o->refuse_s >= 0)
        json_object_set_new(body, "refuseConnectionsSeconds", json_integer(o->refuse_s));
    return admin_run(o, "PUT", "/admin/faults", body, 200);
}

int atr_cmd_vault(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        vault_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(verb, "key") == 0)
        return atr_cli_vault_key(argc - 1, argv + 1);
    size_t vi = 0;
    while (vi < ATR_ARRAY_LEN(vault_verbs) && strcmp(vault_verbs[vi].verb, verb) != 0)
        vi++;
    if (vi == ATR_ARRAY_LEN(vault_verbs))
        return atr_args_usage_error("vault", "unknown command '%s'", verb);
    static struct client_opts o; /* large: the settings */
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "vault %s", verb);
    int rc = parse_client(&o, cmd, verb, argc - 1, argv + 1);
    if (rc < 0)
        return ATR_EXIT_OK;
    if (rc != ATR_EXIT_OK)
        return rc;
    if (strcmp(verb, "create") == 0 || strcmp(verb, "update") == 0)
        return cmd_create(cmd, &o, strcmp(verb, "update") == 0);
    if (strcmp(verb, "show") == 0) {
        if ((rc = need_name(cmd, &o)) != ATR_EXIT_OK)
            return rc;
        char path[128];
        snprintf(path, sizeof(path), "/admin/vaults/%s", o.args[0]);
        return admin_run(&o, "GET", path, NULL, 200);
    }
    if (strcmp(verb, "list") == 0)
        return o.nargs != 0 ? atr_args_usage_error(cmd, "list takes no argument")
                            : admin_run(&o, "GET", "/admin/vaults", NULL, 200);
    if (strcmp(verb, "policy") == 0)
        return cmd_policy(&o);
    if (strcmp(verb, "firewall") == 0)
        return cmd_firewall(&o);
    if (strcmp(verb, "faults") == 0)
        return cmd_faults(&o);
    if (strcmp(verb, "clock") == 0) {
        if (o.advance_s < 0)
            return atr_args_usage_error(cmd, "--advance SECONDS is required");
        return admin_run(&o, "POST", "/admin/clock",
                         json_pack("{s:I}", "advanceSeconds", (json_int_t)o.advance_s), 200);
    }
    return atr_args_usage_error("vault", "unknown command '%s'", verb);
}
