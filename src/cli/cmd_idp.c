/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest idp: the identity server (a Microsoft Entra ID compatible subset,
 * see docs/identity.md) and its admin commands.
 *
 *   atrest idp serve --dir DIR --cert FILE --key FILE [--listen A] [--port N] [--config FILE]
 *   atrest idp directory create [--name N]
 *   atrest idp app create --tenant T [--name N] [--multi-tenant]
 *   atrest idp app add-key --app-id A --key-file PEM
 *   atrest idp sp create --tenant T --app-id A
 *   atrest idp sp enable|disable|show|delete --tenant T (--id ID | --app-id A)
 *   atrest idp sp grant --tenant T --id ID --role R
 *   atrest idp keys list | rotate [--rollover SECONDS]
 *   atrest idp token --tenant T --client-id C (--secret S | --secret-file F) [--scope S]
 *
 * The admin commands are REST clients of a running server (--url, --ca);
 * they never touch its state files. They authenticate with the bootstrap
 * secret (--admin-secret-file FILE or ATREST_IDP_ADMIN_SECRET).
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
#include "cli/commands.h"
#include "cli/rest.h"
#include "cli/serving.h"
#include "crypto/rand.h"
#include "http/client.h"
#include "http/server.h"
#include "identity/idp.h"

extern char **environ;

#define IDP_DEFAULT_PORT 8444

static void idp_usage(FILE *out)
{
    fprintf(
        out,
        "usage: atrest idp serve --dir DIR --cert FILE --key FILE [--listen ADDR] [--port N]\n"
        "                        [--config FILE]\n"
        "       atrest idp directory create [--name NAME]\n"
        "       atrest idp app create --tenant TID [--name NAME] [--multi-tenant]\n"
        "       atrest idp app add-key --app-id APPID --key-file PUBLIC.pem\n"
        "       atrest idp sp create --tenant TID --app-id APPID\n"
        "       atrest idp sp enable|disable|show|delete --tenant TID (--id ID | --app-id A)\n"
        "       atrest idp sp grant --tenant TID --id ID --role ROLE\n"
        "       atrest idp keys list | rotate [--rollover SECONDS]\n"
        "       atrest idp token --tenant TID --client-id APPID (--secret S | --secret-file F)\n"
        "                        [--scope SCOPE]\n"
        "\n"
        "serve runs the identity server (prints its URL, stops on SIGTERM); state lives in\n"
        "DIR (idp.db, admin.secret). The other commands call a running server:\n"
        "  --url URL                the server (default https://127.0.0.1:%d)\n"
        "  --ca FILE                CA certificate to trust\n"
        "  --admin-secret-file FILE bootstrap secret (or ATREST_IDP_ADMIN_SECRET)\n"
        "Roles: DataEncryption.Admin, Records.Write, Records.Read, Application.ReadWrite.All\n",
        IDP_DEFAULT_PORT);
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
            idp_usage(stdout);
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
    const char *url;
    const char *ca;
    const char *secret_file;
    const char *tenant;
    const char *app_id;
    const char *id;
    const char *name;
    const char *role;
    const char *client_id;
    const char *client_secret;
    const char *client_secret_file;
    const char *scope;
    const char *key_file;
    long rollover;
    int multi_tenant;
};

/* Parses the shared options of the client commands; argv[0] is the verb. */
static int parse_client(struct client_opts *o, const char *cmd, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"ca", required_argument, NULL, 'C'},
        {"admin-secret-file", required_argument, NULL, 'S'},
        {"tenant", required_argument, NULL, 't'},
        {"app-id", required_argument, NULL, 'a'},
        {"id", required_argument, NULL, 'i'},
        {"name", required_argument, NULL, 'n'},
        {"role", required_argument, NULL, 'r'},
        {"client-id", required_argument, NULL, 'c'},
        {"secret", required_argument, NULL, 's'},
        {"secret-file", required_argument, NULL, 'F'},
        {"scope", required_argument, NULL, 'o'},
        {"key-file", required_argument, NULL, 'k'},
        {"rollover", required_argument, NULL, 'R'},
        {"multi-tenant", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->rollover = -1;
    unsigned long v;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            o->url = optarg;
            break;
        case 'C':
            o->ca = optarg;
            break;
        case 'S':
            o->secret_file = optarg;
            break;
        case 't':
            o->tenant = optarg;
            break;
        case 'a':
            o->app_id = optarg;
            break;
        case 'i':
            o->id = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 'r':
            o->role = optarg;
            break;
        case 'c':
            o->client_id = optarg;
            break;
        case 's':
            o->client_secret = optarg;
            break;
        case 'F':
            o->client_secret_file = optarg;
            break;
        case 'o':
            o->scope = optarg;
            break;
        case 'k':
            o->key_file = optarg;
            break;
        case 'R':
            if (!atr_args_parse_ulong(&v, optarg, 0, 366UL * 86400))
                return atr_args_usage_error(cmd, "--rollover must be seconds, not '%s'", optarg);
            o->rollover = (long)v;
            break;
        case 'm':
            o->multi_tenant = 1;
            break;
        case 'h':
            idp_usage(stdout);
            return -1;
        default:
            return atr_args_getopt_error(cmd, ch, argv);
        }
    }
    if (optind < argc)
        return atr_args_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (o->url == NULL) {
        static char def[64];
        snprintf(def, sizeof(def), "https://127.0.0.1:%d", IDP_DEFAULT_PORT);
        o->url = def;
    }
    return ATR_EXIT_OK;
}

/* One call (with the bootstrap secret when @p admin); 0 unless the status is @p want. */
static int call(struct atr_http_client_resp *resp, const struct client_opts *o, const char *method,
                const char *path, const char *body, const char *ctype, int admin, unsigned want)
{
    char secret[ATR_CLI_SECRET_MAX];
    secret[0] = '\0';
    if (admin &&
        !atr_cli_secret_read(secret, sizeof(secret), o->secret_file, "ATREST_IDP_ADMIN_SECRET"))
        return 0;
    struct atr_cli_rest t = {o->url, o->ca, admin ? secret : NULL,
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

static int need(const char *cmd, const char *v, const char *opt)
{
    if (v == NULL) {
        atr_args_usage_error(cmd, "%s is required", opt);
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
            fprintf(stderr, "atrest: no service principal of %s in %s\n", o->app_id, o->tenant);
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&r);
    return ok;
}

static int cmd_directory(int argc, char **argv)
{
    struct client_opts o;
    int rc = parse_client(&o, "idp directory", argc, argv);
    if (rc != 0)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (strcmp(argv[0], "create") == 0)
        return run(&o, "POST", "/admin/directories",
                   json_pack("{s:s}", "displayName", o.name != NULL ? o.name : "Directory"), 1, 201,
                   1);
    if (strcmp(argv[0], "list") == 0)
        return run(&o, "GET", "/admin/directories", NULL, 1, 200, 1);
    return atr_args_usage_error("idp directory", "unknown verb '%s'", argv[0]);
}

static int cmd_app(int argc, char **argv)
{
    struct client_opts o;
    int rc = parse_client(&o, "idp app", argc, argv);
    if (rc != 0)
        return rc < 0 ? ATR_EXIT_OK : rc;
    char path[256];
    if (strcmp(argv[0], "create") == 0) {
        if (!need("idp app", o.tenant, "--tenant"))
            return ATR_EXIT_USAGE;
        snprintf(path, sizeof(path), "/admin/directories/%.40s/applications", o.tenant);
        const char *t = o.tenant;
        o.tenant = NULL;
        ATR_UNUSED(t);
        return run(&o, "POST", path,
                   json_pack("{s:s,s:b}", "displayName", o.name != NULL ? o.name : "Application",
                             "multiTenant", o.multi_tenant),
                   1, 201, 1);
    }
    if (strcmp(argv[0], "add-key") == 0) {
        if (!need("idp app", o.app_id, "--app-id") || !need("idp app", o.key_file, "--key-file"))
            return ATR_EXIT_USAGE;
        char pem[16384];
        FILE *f = fopen(o.key_file, "r");
        if (f == NULL) {
            fprintf(stderr, "atrest: cannot read %s\n", o.key_file);
            return ATR_EXIT_FAIL;
        }
        size_t n = fread(pem, 1, sizeof(pem) - 1, f);
        fclose(f);
        pem[n] = '\0';
        snprintf(path, sizeof(path), "/admin/applications/%.40s/keys", o.app_id);
        return run(&o, "POST", path, json_pack("{s:s}", "key", pem), 1, 201, 1);
    }
    if (strcmp(argv[0], "add-secret") == 0) {
        if (!need("idp app", o.app_id, "--app-id"))
            return ATR_EXIT_USAGE;
        snprintf(path, sizeof(path), "/admin/applications/%.40s/secrets", o.app_id);
        return run(&o, "POST", path, NULL, 1, 201, 1);
    }
    return atr_args_usage_error("idp app", "unknown verb '%s'", argv[0]);
}

static int cmd_sp(int argc, char **argv)
{
    struct client_opts o;
    int rc = parse_client(&o, "idp sp", argc, argv);
    if (rc != 0)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (!need("idp sp", o.tenant, "--tenant"))
        return ATR_EXIT_USAGE;
    const char *verb = argv[0];
    char path[256];
    char id[64];
    if (strcmp(verb, "create") == 0) {
        if (!need("idp sp", o.app_id, "--app-id"))
            return ATR_EXIT_USAGE;
        return run(&o, "POST", "/v1.0/servicePrincipals", json_pack("{s:s}", "appId", o.app_id), 1,
                   201, 1);
    }
    if (strcmp(verb, "list") == 0)
        return run(&o, "GET", "/v1.0/servicePrincipals", NULL, 1, 200, 1);
    if (o.id == NULL && o.app_id == NULL)
        return atr_args_usage_error("idp sp", "--id or --app-id is required");
    if (!sp_id_of(id, &o))
        return ATR_EXIT_FAIL;
    snprintf(path, sizeof(path), "/v1.0/servicePrincipals/%.40s", id);
    if (strcmp(verb, "enable") == 0 || strcmp(verb, "disable") == 0) {
        rc = run(&o, "PATCH", path,
                 json_pack("{s:b}", "accountEnabled", strcmp(verb, "enable") == 0), 1, 204, 0);
        if (rc == ATR_EXIT_OK)
            printf("%s %sd\n", id, verb);
        return rc;
    }
    if (strcmp(verb, "show") == 0)
        return run(&o, "GET", path, NULL, 1, 200, 1);
    if (strcmp(verb, "delete") == 0)
        return run(&o, "DELETE", path, NULL, 1, 204, 0);
    if (strcmp(verb, "grant") == 0) {
        if (!need("idp sp", o.role, "--role"))
            return ATR_EXIT_USAGE;
        snprintf(path, sizeof(path), "/admin/directories/%.40s/servicePrincipals/%.40s/roles",
                 o.tenant, id);
        return run(&o, "POST", path, json_pack("{s:s}", "role", o.role), 1, 200, 1);
    }
    return atr_args_usage_error("idp sp", "unknown verb '%s'", verb);
}

static int cmd_keys(int argc, char **argv)
{
    struct client_opts o;
    int rc = parse_client(&o, "idp keys", argc, argv);
    if (rc != 0)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (strcmp(argv[0], "list") == 0)
        return run(&o, "GET", "/admin/keys", NULL, 1, 200, 1);
    if (strcmp(argv[0], "rotate") == 0)
        return run(&o, "POST", "/admin/keys/rotate",
                   o.rollover >= 0 ? json_pack("{s:I}", "rolloverSeconds", (json_int_t)o.rollover)
                                   : json_object(),
                   1, 200, 1);
    return atr_args_usage_error("idp keys", "unknown verb '%s'", argv[0]);
}

/* Appends name=urlencoded(value)& to @p b. */
static int form_add(struct atr_buf *b, const char *name, const char *value)
{
    if (atr_buf_printf(b, "%s%s=", b->len > 0 ? "&" : "", name) != ATR_OK)
        return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        if ((plain ? atr_buf_append(b, p, 1) : atr_buf_printf(b, "%%%02X", *p)) != ATR_OK)
            return 0;
    }
    return 1;
}

static int cmd_token(int argc, char **argv)
{
    struct client_opts o;
    int rc = parse_client(&o, "idp token", argc, argv);
    if (rc != 0)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (!need("idp token", o.tenant, "--tenant") || !need("idp token", o.client_id, "--client-id"))
        return ATR_EXIT_USAGE;
    char secret[ATR_CLI_SECRET_MAX];
    if (o.client_secret_file != NULL) {
        if (!atr_cli_read_small_file(secret, sizeof(secret), o.client_secret_file)) {
            fprintf(stderr, "atrest: cannot read %s\n", o.client_secret_file);
            return ATR_EXIT_FAIL;
        }
    } else if (o.client_secret != NULL) {
        snprintf(secret, sizeof(secret), "%s", o.client_secret);
    } else {
        return atr_args_usage_error("idp token", "--secret or --secret-file is required");
    }
    struct atr_buf form;
    atr_buf_init(&form, 16384);
    char path[128];
    snprintf(path, sizeof(path), "/%.40s/oauth2/v2.0/token", o.tenant);
    const char *tenant = o.tenant;
    o.tenant = NULL; /* no X-Atrest-Directory on the token call */
    ATR_UNUSED(tenant);
    rc = ATR_EXIT_FAIL;
    if (form_add(&form, "grant_type", "client_credentials") &&
        form_add(&form, "client_id", o.client_id) && form_add(&form, "client_secret", secret) &&
        form_add(&form, "scope", o.scope != NULL ? o.scope : "https://vault.azure.net/.default")) {
        struct atr_http_client_resp r;
        atr_http_client_resp_init(&r);
        if (call(&r, &o, "POST", path, atr_buf_cstr(&form), "application/x-www-form-urlencoded", 0,
                 200)) {
            json_t *j = json_loads(atr_buf_cstr(&r.body), 0, NULL);
            const char *tok = json_string_value(json_object_get(j, "access_token"));
            if (tok != NULL) {
                printf("%s\n", tok);
                rc = ATR_EXIT_OK;
            }
            json_decref(j);
        }
        atr_http_client_resp_cleanup(&r);
    }
    atr_buf_cleanup(&form);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

int atr_cmd_idp(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        idp_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(sub, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    int (*fn)(int, char **) = NULL;
    if (strcmp(sub, "directory") == 0)
        fn = cmd_directory;
    else if (strcmp(sub, "app") == 0)
        fn = cmd_app;
    else if (strcmp(sub, "sp") == 0)
        fn = cmd_sp;
    else if (strcmp(sub, "keys") == 0)
        fn = cmd_keys;
    if (fn == NULL)
        return atr_args_usage_error("idp", "unknown command '%s'", sub);
    if (argc < 3 || argv[2][0] == '-')
        return atr_args_usage_error("idp", "'%s' needs a verb (see atrest idp --help)", sub);
    return fn(argc - 2, argv + 2);
}
