/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest idp: the identity server (a Microsoft Entra ID compatible subset,
 * see docs/identity.md) and its admin commands.
 *
 *   atrest idp serve --dir DIR --cert FILE --key FILE [--listen A] [--port N] [--config FILE]
 *   atrest idp directory create [--name N] | list
 *   atrest idp app create --tenant T [--name N] [--multi-tenant]
 *   atrest idp app add-secret --app-id A
 *   atrest idp app add-key --app-id A --key-file PEM
 *   atrest idp sp create --tenant T --app-id A
 *   atrest idp sp enable|disable|show|delete --tenant T (--id ID | --app-id A)
 *   atrest idp sp grant --tenant T --id ID --role R
 *   atrest idp keys list | rotate [--rollover SECONDS]
 *   atrest idp token --tenant T --client-id C (--secret S | --secret-file F) [--scope S]
 *
 * The admin commands are REST clients of a running server (--url, --ca);
 * they never touch its state files. They authenticate with the bootstrap
 * secret (--admin-secret-file FILE, ATREST_IDP_ADMIN_SECRET, or the
 * profile; see cli/client.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/rest.h"
#include "cli/serving.h"
#include "crypto/rand.h"
#include "http/client.h"
#include "http/server.h"
#include "identity/idp.h"

extern char **environ;

#define IDP_DEFAULT_PORT 8444

/* Usage lines per command group. */
static const struct {
    const char *group;
    const char *usage;
    const char *about;
} idp_groups[] = {
    {"serve",
     "serve --dir DIR --cert FILE --key FILE [--listen ADDR] [--port N]\n"
     "        [--config FILE]",
     "runs the identity server (prints its URL, stops on SIGTERM); state lives in DIR\n"
     "(idp.db, admin.secret)"},
    {"directory", "directory create [--name NAME] | directory list",
     "creates or lists directories (tenants); create prints the new directory id"},
    {"app",
     "app create --tenant TID [--name NAME] [--multi-tenant]\n"
     "  atrest idp app add-secret --app-id APPID\n"
     "  atrest idp app add-key --app-id APPID --key-file CERT.pem",
     "registers an application in its home directory (the answer holds its secret,\n"
     "shown once), adds a secret, or adds a certificate / public key for assertions"},
    {"sp",
     "sp create --tenant TID --app-id APPID | sp list --tenant TID\n"
     "  atrest idp sp enable|disable|show|delete --tenant TID (--id ID | --app-id A)\n"
     "  atrest idp sp grant --tenant TID (--id ID | --app-id A) --role ROLE",
     "manages an application's service principal in a directory (Graph API) and its\n"
     "app roles: DataEncryption.Admin, Records.Write, Records.Read,\n"
     "Application.ReadWrite.All"},
    {"keys", "keys list | keys rotate [--rollover SECONDS]",
     "lists or rotates the token-signing keys"},
    {"token", "token --tenant TID --client-id APPID --secret-file FILE [--scope SCOPE]",
     "prints an access token (client credentials; --json: the whole answer); default\n"
     "scope https://vault.azure.net/.default. --secret SECRET works too but puts the\n"
     "secret on the command line"},
};

/* The usage of @p group (NULL: every group). */
static void idp_usage_of(FILE *out, const char *group)
{
    fprintf(out, "usage:\n");
    for (size_t i = 0; i < ATR_ARRAY_LEN(idp_groups); i++) {
        if (group == NULL || strcmp(group, idp_groups[i].group) == 0)
            fprintf(out, "  atrest idp %s\n", idp_groups[i].usage);
    }
    fprintf(out, "\n");
    for (size_t i = 0; i < ATR_ARRAY_LEN(idp_groups); i++) {
        if (group == NULL || strcmp(group, idp_groups[i].group) == 0)
            fprintf(out, "%s: %s.\n", idp_groups[i].group, idp_groups[i].about);
    }
    if (group != NULL && strcmp(group, "serve") == 0)
        return;
    fprintf(out, "\nThe commands other than serve call a running server and print its JSON\n"
                 "answers (--json is accepted for uniformity; token prints the token alone\n"
                 "unless --json). --tenant also comes from ATREST_TENANT, --client-id from\n"
                 "ATREST_CLIENT_ID, --secret-file from ATREST_CLIENT_SECRET_FILE, or a profile.\n");
    atr_cli_conf_help(out, ATR_CLI_IDP, ATR_CLI_HELP_CONN | ATR_CLI_HELP_ADMIN);
}

static void idp_usage(FILE *out)
{
    idp_usage_of(out, NULL);
}

/* ------------------------------------------------------------------ serve */

struct idp_run {
    struct atr_idp *idp;
    int authority_set;
};

static int idp_on_url(const char *url, void *ctx)
{
    struct idp_run *r = ctx;
    struct atr_err err;
    atr_err_clear(&err);
    if (!r->authority_set && atr_idp_set_authority(r->idp, url, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        return 0;
    }
    return 1;
}

/* Reads the idp.* settings into @p io; @p res_copy keeps the resources' storage. */
static int idp_settings(struct atr_idp_opts *io, const char **resources, char **res_copy,
                        const struct atr_config *cfg)
{
    struct atr_err err;
    atr_err_clear(&err);
    io->authority = atr_config_get(cfg, "idp.authority");
    int64_t ms = 0, n = 0;
    if (atr_config_get_duration_ms(&ms, cfg, "idp.token_lifetime", 3599000, 300000, 86400000,
                                   &err) != ATR_OK)
        goto cfg_err;
    io->token_lifetime_s = ms / 1000;
    if (atr_config_get_int(&n, cfg, "idp.rate_limit_failures", 5, 1, 10000, &err) != ATR_OK)
        goto cfg_err;
    io->rl_max_failures = (unsigned)n;
    if (atr_config_get_duration_ms(&ms, cfg, "idp.rate_limit_window", 300000, 1000, 86400000,
                                   &err) != ATR_OK)
        goto cfg_err;
    io->rl_window_s = ms / 1000;
    if (atr_config_get_duration_ms(&ms, cfg, "idp.key_rollover", 86400000, 1000,
                                   (int64_t)366 * 86400000, &err) != ATR_OK)
        goto cfg_err;
    io->key_rollover_s = ms / 1000;
    if (atr_config_get_duration_ms(&ms, cfg, "idp.key_retain", 86400000, 1000,
                                   (int64_t)366 * 86400000, &err) != ATR_OK)
        goto cfg_err;
    io->key_retain_s = ms / 1000;
    const char *res = atr_config_get(cfg, "idp.resources");
    if (res != NULL) {
        if ((*res_copy = atr_strdup(res)) == NULL)
            return 0;
        char *save = NULL;
        for (char *t = strtok_r(*res_copy, ", ", &save); t != NULL;
             t = strtok_r(NULL, ", ", &save)) {
            if (io->nresources == ATR_IDP_MAX_RESOURCES) {
                fprintf(stderr, "atrest: config: idp.resources lists more than %d resources\n",
                        ATR_IDP_MAX_RESOURCES);
                return 0;
            }
            resources[io->nresources++] = t;
        }
        io->resources = resources;
    }
    return 1;
cfg_err:
    fprintf(stderr, "atrest: config: %s\n", atr_err_msg(&err));
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {ATR_CLI_SERVE_LONGOPTS, {NULL, 0, NULL, 0}};
    struct atr_cli_serving sv;
    atr_cli_serving_init(&sv, "idp serve", "idp", IDP_DEFAULT_PORT);
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int h = atr_cli_serving_opt(&sv, ch, optarg);
        if (h < 0)
            return -h;
        if (h > 0)
            continue;
        if (ch == 'h') {
            idp_usage_of(stdout, "serve");
            return ATR_EXIT_OK;
        }
        return atr_args_getopt_error("idp serve", ch, argv);
    }
    int rc = atr_cli_serving_prepare(&sv, argc, argv, "idp.admin_secret");
    if (rc != ATR_EXIT_OK) {
        atr_cli_serving_cleanup(&sv);
        return rc;
    }
    rc = ATR_EXIT_FAIL;
    struct atr_err err;
    atr_err_clear(&err);
    struct idp_run run = {NULL, 0};
    char db[4096];
    char *res_copy = NULL;
    const char *resources[ATR_IDP_MAX_RESOURCES];
    struct atr_idp_opts io;
    memset(&io, 0, sizeof(io));
    io.db_path = db;
    io.admin_secret = sv.secret;
    if (atr_cli_serving_path(db, sizeof(db), &sv, "idp.db") &&
        idp_settings(&io, resources, &res_copy, sv.cfg)) {
        if (atr_idp_new(&run.idp, &io, &err) != ATR_OK) {
            fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        } else {
            run.authority_set = io.authority != NULL;
            sv.so.auth = atr_idp_auth;
            sv.so.auth_ctx = run.idp;
            size_t nroutes = 0;
            const struct atr_route *routes = atr_idp_routes(&nroutes);
            rc = atr_cli_serving_run(&sv, routes, nroutes, run.idp, idp_on_url, &run);
        }
    }
    atr_idp_free(run.idp);
    atr_free(res_copy);
    atr_cli_serving_cleanup(&sv);
    return rc;
}

/* ---------------------------------------------------------------- clients */

struct client_opts {
    struct atr_cli_conf conf; /* --url --ca --profile --json --admin-secret-file --tenant ... */
    const char *verb;
    char cmd[64];
    const char *tenant; /* NULL when none */
    const char *app_id;
    const char *id;
    const char *name;
    const char *role;
    const char *key_file;
    long rollover;
    int multi_tenant;
};

static int client_opt(void *ctx, int ch, const char *arg)
{
    struct client_opts *o = ctx;
    unsigned long v;
    switch (ch) {
    case 'a':
        o->app_id = arg;
        break;
    case 'i':
        o->id = arg;
        break;
    case 'n':
        o->name = arg;
        break;
    case 'r':
        o->role = arg;
        break;
    case 's':
        o->conf.secret_arg = arg;
        break;
    case 'k':
        o->key_file = arg;
        break;
    case 'R':
        if (!atr_args_parse_ulong(&v, arg, 0, 366UL * 86400))
            return atr_args_usage_error(o->cmd, "--rollover must be seconds, not '%s'", arg);
        o->rollover = (long)v;
        break;
    case 'm':
        o->multi_tenant = 1;
        break;
    default:
        return atr_args_usage_error(o->cmd, "unknown option");
    }
    return ATR_EXIT_OK;
}

static void client_help(FILE *out, void *ctx)
{
    const struct client_opts *o = ctx;
    char group[32];
    snprintf(group, sizeof(group), "%.*s", (int)strcspn(o->cmd + 4, " "), o->cmd + 4);
    idp_usage_of(out, group);
}

/*
 * Parses the options of a client command; argv[0] is the verb (the group's
 * name for token).
 * @return ATR_EXIT_OK, ATR_EXIT_USAGE, or -1 after the help.
 */
static int parse_client(struct client_opts *o, const char *group, int argc, char **argv)
{
    static const struct option longopts[] = {
        ATR_CLI_CONN_LONGOPTS,
        ATR_CLI_ADMIN_LONGOPTS,
        {"tenant", required_argument, NULL, ATR_CLI_OPT_TENANT},
        {"client-id", required_argument, NULL, ATR_CLI_OPT_CLIENT_ID},
        {"secret-file", required_argument, NULL, ATR_CLI_OPT_SECRET_FILE},
        {"scope", required_argument, NULL, ATR_CLI_OPT_SCOPE},
        {"app-id", required_argument, NULL, 'a'},
        {"id", required_argument, NULL, 'i'},
        {"name", required_argument, NULL, 'n'},
        {"role", required_argument, NULL, 'r'},
        {"secret", required_argument, NULL, 's'},
        {"key-file", required_argument, NULL, 'k'},
        {"rollover", required_argument, NULL, 'R'},
        {"multi-tenant", no_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->rollover = -1;
    o->verb = argv[0];
    if (strcmp(group, "token") == 0)
        snprintf(o->cmd, sizeof(o->cmd), "idp token");
    else
        snprintf(o->cmd, sizeof(o->cmd), "idp %s %.20s", group, argv[0]);
    atr_cli_conf_init(&o->conf, o->cmd, ATR_CLI_IDP);
    struct atr_cli_parse p = {longopts, client_opt, o, client_help, NULL, 0, 0};
    int rc = atr_cli_parse_args(&o->conf, &p, argc, argv);
    if (rc != ATR_EXIT_OK)
        return rc;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_resolve(&o->conf, &err);
    if (st != ATR_OK)
        return atr_cli_fail(o->cmd, st, &err);
    o->tenant = o->conf.tenant.v[0] != '\0' ? o->conf.tenant.v : NULL;
    if (o->tenant != NULL && !atr_cli_id_ok(o->tenant))
        return atr_args_usage_error(o->cmd, "'%s' is not a directory id", o->tenant);
    return ATR_EXIT_OK;
}

/* One call (with the bootstrap secret when @p admin); 0 unless the status is @p want. */
static int call(struct atr_http_client_resp *resp, const struct client_opts *o, const char *method,
                const char *path, const char *body, const char *ctype, int admin, unsigned want)
{
    char secret[ATR_CLI_SECRET_MAX];
    secret[0] = '\0';
    if (admin) {
        struct atr_err err;
        atr_err_clear(&err);
        atr_status st = atr_cli_conf_admin_secret(secret, sizeof(secret), &o->conf, &err);
        if (st != ATR_OK) {
            atr_cli_fail(o->cmd, st, &err);
            return 0;
        }
    }
    struct atr_cli_rest t = {o->conf.url.v, atr_cli_conf_ca(&o->conf), admin ? secret : NULL,
                             o->tenant != NULL ? ATR_IDP_DIRECTORY_HEADER : NULL, o->tenant};
    int ok = atr_cli_rest_call(resp, &t, method, path, body, ctype, want);
    OPENSSL_cleanse(secret, sizeof(secret));
    return ok;
}

static int run(const struct client_opts *o, const char *method, const char *path, json_t *body,
               int admin, unsigned want, int print)
{
    char *b = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct atr_http_client_resp r;
    atr_http_client_resp_init(&r);
    int ok = call(&r, o, method, path, b, NULL, admin, want);
    if (ok && print) {
        const char *text = atr_buf_cstr(&r.body);
        printf("%s\n", text != NULL ? text : "");
    }
    atr_http_client_resp_cleanup(&r);
    free(b);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

static int need(const struct client_opts *o, const char *v, const char *opt)
{
    if (v == NULL) {
        atr_args_usage_error(o->cmd, "%s is required", opt);
        return 0;
    }
    return 1;
}

/* Finds the service principal id of --app-id in --tenant via Graph. */
static int sp_id_of(char out[64], const struct client_opts *o)
{
    if (o->id != NULL) {
        snprintf(out, 64, "%s", o->id);
        return 1;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1.0/servicePrincipals?$filter=appId%%20eq%%20'%.40s'",
             o->app_id);
    struct atr_http_client_resp r;
    atr_http_client_resp_init(&r);
    int ok = call(&r, o, "GET", path, NULL, NULL, 1, 200);
    if (ok) {
        json_t *j = json_loads(atr_buf_cstr(&r.body), 0, NULL);
        const char *id = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "value"), 0), "id"));
        ok = id != NULL;
        if (ok)
            snprintf(out, 64, "%s", id);
        else
            fprintf(stderr, "atrest %s: no service principal of %s in %s\n", o->cmd, o->app_id,
                    o->tenant);
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&r);
    return ok;
}

static int ids_ok(const struct client_opts *o)
{
    const char *v[] = {o->app_id, o->id};
    for (size_t i = 0; i < ATR_ARRAY_LEN(v); i++) {
        if (v[i] != NULL && !atr_cli_id_ok(v[i])) {
            atr_args_usage_error(o->cmd, "'%s' is not an id", v[i]);
            return 0;
        }
    }
    return 1;
}

static int cmd_directory(struct client_opts *o)
{
    if (strcmp(o->verb, "create") == 0)
        return run(o, "POST", "/admin/directories",
                   json_pack("{s:s}", "displayName", o->name != NULL ? o->name : "Directory"), 1,
                   201, 1);
    if (strcmp(o->verb, "list") == 0)
        return run(o, "GET", "/admin/directories", NULL, 1, 200, 1);
    return atr_args_usage_error("idp directory", "unknown verb '%s'", o->verb);
}

static int cmd_app(struct client_opts *o)
{
    char path[256];
    if (strcmp(o->verb, "create") == 0) {
        if (!need(o, o->tenant, "--tenant"))
            return ATR_EXIT_USAGE;
        snprintf(path, sizeof(path), "/admin/directories/%.64s/applications", o->tenant);
        return run(o, "POST", path,
                   json_pack("{s:s,s:b}", "displayName", o->name != NULL ? o->name : "Application",
                             "multiTenant", o->multi_tenant),
                   1, 201, 1);
    }
    if (strcmp(o->verb, "add-key") == 0) {
        if (!need(o, o->app_id, "--app-id") || !need(o, o->key_file, "--key-file"))
            return ATR_EXIT_USAGE;
        char pem[16384];
        FILE *f = fopen(o->key_file, "r");
        if (f == NULL) {
            fprintf(stderr, "atrest %s: cannot read %s\n", o->cmd, o->key_file);
            return ATR_EXIT_FAIL;
        }
        size_t n = fread(pem, 1, sizeof(pem) - 1, f);
        fclose(f);
        pem[n] = '\0';
        snprintf(path, sizeof(path), "/admin/applications/%.64s/keys", o->app_id);
        return run(o, "POST", path, json_pack("{s:s}", "key", pem), 1, 201, 1);
    }
    if (strcmp(o->verb, "add-secret") == 0) {
        if (!need(o, o->app_id, "--app-id"))
            return ATR_EXIT_USAGE;
        snprintf(path, sizeof(path), "/admin/applications/%.64s/secrets", o->app_id);
        return run(o, "POST", path, NULL, 1, 201, 1);
    }
    return atr_args_usage_error("idp app", "unknown verb '%s'", o->verb);
}

static int cmd_sp(struct client_opts *o)
{
    static const char *const verbs[] = {"create", "list",   "enable", "disable",
                                        "show",   "delete", "grant"};
    size_t vi = 0;
    while (vi < ATR_ARRAY_LEN(verbs) && strcmp(verbs[vi], o->verb) != 0)
        vi++;
    if (vi == ATR_ARRAY_LEN(verbs))
        return atr_args_usage_error("idp sp", "unknown verb '%s'", o->verb);
    if (!need(o, o->tenant, "--tenant"))
        return ATR_EXIT_USAGE;
    const char *verb = o->verb;
    char path[256];
    char id[64];
    if (strcmp(verb, "create") == 0) {
        if (!need(o, o->app_id, "--app-id"))
            return ATR_EXIT_USAGE;
        return run(o, "POST", "/v1.0/servicePrincipals", json_pack("{s:s}", "appId", o->app_id), 1,
                   201, 1);
    }
    if (strcmp(verb, "list") == 0)
        return run(o, "GET", "/v1.0/servicePrincipals", NULL, 1, 200, 1);
    if (o->id == NULL && o->app_id == NULL)
        return atr_args_usage_error(o->cmd, "--id or --app-id is required");
    if (strcmp(verb, "grant") == 0 && !need(o, o->role, "--role"))
        return ATR_EXIT_USAGE;
    if (!sp_id_of(id, o))
        return ATR_EXIT_FAIL;
    snprintf(path, sizeof(path), "/v1.0/servicePrincipals/%.40s", id);
    if (strcmp(verb, "enable") == 0 || strcmp(verb, "disable") == 0) {
        int enable = strcmp(verb, "enable") == 0;
        int rc = run(o, "PATCH", path, json_pack("{s:b}", "accountEnabled", enable), 1, 204, 0);
        if (rc == ATR_EXIT_OK && o->conf.json)
            printf("{\"id\":\"%s\",\"accountEnabled\":%s}\n", id, enable ? "true" : "false");
        else if (rc == ATR_EXIT_OK)
            printf("%s %sd\n", id, verb);
        return rc;
    }
    if (strcmp(verb, "show") == 0)
        return run(o, "GET", path, NULL, 1, 200, 1);
    if (strcmp(verb, "delete") == 0) {
        int rc = run(o, "DELETE", path, NULL, 1, 204, 0);
        if (rc == ATR_EXIT_OK && o->conf.json)
            printf("{\"id\":\"%s\",\"deleted\":true}\n", id);
        return rc;
    }
    /* grant */
    snprintf(path, sizeof(path), "/admin/directories/%.64s/servicePrincipals/%.40s/roles",
             o->tenant, id);
    return run(o, "POST", path, json_pack("{s:s}", "role", o->role), 1, 200, 1);
}

static int cmd_keys(struct client_opts *o)
{
    if (strcmp(o->verb, "list") == 0)
        return run(o, "GET", "/admin/keys", NULL, 1, 200, 1);
    if (strcmp(o->verb, "rotate") == 0)
        return run(o, "POST", "/admin/keys/rotate",
                   o->rollover >= 0 ? json_pack("{s:I}", "rolloverSeconds", (json_int_t)o->rollover)
                                    : json_object(),
                   1, 200, 1);
    return atr_args_usage_error("idp keys", "unknown verb '%s'", o->verb);
}

static int cmd_token(struct client_opts *o)
{
    if (!need(o, o->tenant, "--tenant") ||
        !need(o, o->conf.client_id.v[0] != '\0' ? o->conf.client_id.v : NULL, "--client-id"))
        return ATR_EXIT_USAGE;
    struct atr_err err;
    atr_err_clear(&err);
    char secret[ATR_CLI_SECRET_MAX];
    atr_status st = atr_cli_conf_client_secret(secret, sizeof(secret), &o->conf, &err);
    if (st != ATR_OK)
        return atr_cli_fail(o->cmd, st, &err);
    struct atr_http_client *h = NULL;
    char *token = NULL;
    json_t *answer = NULL;
    if ((st = atr_cli_http_new(&h, atr_cli_conf_ca(&o->conf), &err)) == ATR_OK)
        st = atr_cli_token_fetch(&token, &answer, h, o->conf.url.v, o->tenant, o->conf.client_id.v,
                                 secret, o->conf.scope.v, &err);
    OPENSSL_cleanse(secret, sizeof(secret));
    atr_http_client_free(h);
    if (st != ATR_OK)
        return atr_cli_fail(o->cmd, st, &err);
    /* printing the token is this command's purpose */
    if (o->conf.json)
        atr_cli_json_print(answer);
    else
        printf("%s\n", token);
    json_decref(answer);
    atr_cli_token_free(token);
    return ATR_EXIT_OK;
}

int atr_cmd_idp(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        idp_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    int (*fn)(struct client_opts *) = NULL;
    if (strcmp(sub, "directory") == 0)
        fn = cmd_directory;
    else if (strcmp(sub, "app") == 0)
        fn = cmd_app;
    else if (strcmp(sub, "sp") == 0)
        fn = cmd_sp;
    else if (strcmp(sub, "keys") == 0)
        fn = cmd_keys;
    else if (strcmp(sub, "token") == 0)
        fn = cmd_token;
    if (fn == NULL)
        return atr_args_usage_error("idp", "unknown command '%s'", sub);
    int token = fn == cmd_token;
    if (!token && argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        idp_usage_of(stdout, sub);
        return ATR_EXIT_OK;
    }
    if (!token && (argc < 3 || argv[2][0] == '-')) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "idp %s", sub);
        return atr_args_usage_error(cmd, "'%s' needs a verb (see atrest idp %s --help)", sub, sub);
    }
    static struct client_opts o; /* large: the settings */
    int rc = token ? parse_client(&o, sub, argc - 1, argv + 1)
                   : parse_client(&o, sub, argc - 2, argv + 2);
    if (rc != ATR_EXIT_OK)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (!ids_ok(&o))
        return ATR_EXIT_USAGE;
    return fn(&o);
}
