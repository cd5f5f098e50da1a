/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest dev: the whole local system in one command, with fresh TLS
 * certificates and all state in one folder (design section 1).
 *
 * One process runs the three servers on loopback: the identity server
 * (DIR/idp), the key vault (DIR/vault, test mode) and the data service
 * (DIR/service). On the first start it provisions the demo through their
 * REST APIs, as an operator would: a directory "Contoso" whose id is the
 * demo tenant, a client application with the Records.Write, Records.Read
 * and DataEncryption.Admin roles, a vault "contoso" with soft delete and
 * purge protection holding an RSA key, the service's multi-tenant
 * application (its service principal in Contoso holds list, wrapKey and
 * unwrapKey on the vault), the tenant in the service with sample records,
 * and the customer key enabled for it. Three more applications in Contoso
 * serve scripts: one with Records.Write and Records.Read, one with
 * DataEncryption.Admin, and a vault administrator holding every key
 * permission on the vault (state folders from before them get them on their
 * next start). What it made is kept in DIR/demo.json (0600) and reused on
 * later starts. DIR/profile holds the URLs and ids for the CLI and scripts;
 * DIR/dev.json (0600, rewritten on every start once everything answers,
 * removed on a clean stop) adds the customer key URI, the vault
 * administrator's credentials, two service tokens valid for hours and the
 * paths of the service's and the vault's admin.secret files.
 *
 * The service runs with its test hooks on (an offset lifecycle clock that
 * POST /admin/clock moves forward; POST /admin/monitor/run) and its key
 * monitor thread on, so a script can make hours of key-monitor behaviour
 * happen at once. The ready message includes a sign-in link of the console
 * page ({service}/console/#token=...) with the demo client's token.
 *
 * The long-lived tokens come from a second identity server object on the
 * same store (same signing keys and issuer) that issues tokens only for the
 * data service and listens only while dev.json is being made, so every
 * other token, above all the vault tokens of the service's customer-key
 * application, keeps the default lifetime.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/rest.h"
#include "http/server.h"
#include "identity/idp.h"
#include "identity/jwt.h"
#include "service/service.h"
#include "vault/vault.h"

#define DEV_DEFAULT_PORT 8443
#define DEV_VAULT        "contoso"
#define DEV_KEY          "tenant-key"
#define DEV_SVC_SCOPE    "api://atrest/.default"
#define DEV_VAULT_SCOPE  "https://vault.azure.net/.default"
/* lifetime of the service tokens in dev.json */
#define DEV_TOKEN_LIFETIME_S (8 * 3600)

/* Everything `atrest dev` runs. */
struct dev {
    const char *dir;
    char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
    struct atr_idp *idp;
    struct atr_vault *vault;
    struct atr_service *svc;
    struct atr_http_server *idp_srv, *vault_srv, *svc_srv;
    char idp_url[128], vault_url[128], svc_url[128];
    char idp_secret[ATR_CLI_SECRET_MAX], vault_secret[ATR_CLI_SECRET_MAX],
        svc_secret[ATR_CLI_SECRET_MAX];
    json_t *demo; /* tenant, appId, secret, spId, ... */
    char token[ATR_JWT_MAX_LEN + 1];
    char abs_dir[PATH_MAX];       /* DIR as an absolute path */
    char dev_json[PATH_MAX + 16]; /* DIR/dev.json, absolute */
    char key_uri[512];            /* the demo tenant's customer key */
    /* the service's lifecycle clock: POST /admin/clock moves it (test hooks on) */
    struct atr_offset_clock svc_clock;
};

static void dev_usage(FILE *out)
{
    fprintf(out,
            "usage: atrest dev [--dir DIR] [--port N]\n"
            "\n"
            "Starts the local system with its state in DIR: the identity server, the key\n"
            "vault and the data service on 127.0.0.1 with TLS certificates from a local CA\n"
            "(DIR/tls), and on the first start provisions a demo tenant with sample records.\n"
            "Prints the service URL first, then a token and example commands, and writes\n"
            "DIR/dev.json (0600) for scripts: URLs, the CA file, the tenant, the customer\n"
            "key URI, service tokens valid for 8 hours, the vault administrator's\n"
            "credentials and the admin.secret files of the service and the vault. The\n"
            "ready message has a sign-in link of the console page ({service}/console/).\n"
            "The service's test hooks are on: POST /admin/clock moves its lifecycle clock\n"
            "and POST /admin/monitor/run runs a key-monitor pass (admin secret).\n"
            "Runs until Ctrl-C (SIGINT) or SIGTERM.\n"
            "\n"
            "options:\n"
            "  --dir DIR   state folder (default .dev; created 0700)\n"
            "  --port N    service port; the identity server and vault take the next two\n"
            "              (default %d; 0 = free ports for all three)\n"
            "  --help      show this help\n",
            DEV_DEFAULT_PORT);
}

static int path_join(char *out, size_t cap, const char *a, const char *b)
{
    return snprintf(out, cap, "%s/%s", a, b) < (int)cap;
}

static int start_server(struct atr_http_server **out, char *url, size_t url_cap,
                        struct atr_http_server_opts *so, const struct atr_route *routes,
                        size_t nroutes, void *app)
{
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_server_new(out, so, routes, nroutes, app, &err) != ATR_OK ||
        atr_http_server_start(*out, &err) != ATR_OK ||
        atr_http_server_url(url, url_cap, *out) != ATR_OK) {
        fprintf(stderr, "atrest dev: %s server: %s\n", so->name, atr_err_msg(&err));
        return 0;
    }
    return 1;
}

static void base_opts(struct atr_http_server_opts *so, const struct dev *d, const char *name,
                      unsigned long port)
{
    memset(so, 0, sizeof(*so));
    so->name = name;
    so->listen_addr = "127.0.0.1";
    so->port = (uint16_t)port;
    so->cert_file = d->cert;
    so->key_file = d->key;
}

static int start_idp_vault(struct dev *d, unsigned long port)
{
    char state[PATH_MAX], path[PATH_MAX], path2[PATH_MAX];
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_http_server_opts so;
    size_t n;

    /* identity server */
    if (!path_join(state, sizeof(state), d->dir, "idp") ||
        (mkdir(state, 0700) != 0 && errno != EEXIST) ||
        !path_join(path, sizeof(path), state, "idp.db") ||
        !path_join(path2, sizeof(path2), state, "admin.secret") ||
        !atr_cli_secret_file_ensure(d->idp_secret, sizeof(d->idp_secret), path2)) {
        fprintf(stderr, "atrest dev: cannot prepare %s\n", state);
        return 0;
    }
    struct atr_idp_opts io;
    memset(&io, 0, sizeof(io));
    io.db_path = path;
    io.admin_secret = d->idp_secret;
    if (atr_idp_new(&d->idp, &io, &err) != ATR_OK) {
        fprintf(stderr, "atrest dev: identity server: %s\n", atr_err_msg(&err));
        return 0;
    }
    base_opts(&so, d, "idp", port != 0 ? port + 1 : 0);
    so.auth = atr_idp_auth;
    so.auth_ctx = d->idp;
    const struct atr_route *routes = atr_idp_routes(&n);
    if (!start_server(&d->idp_srv, d->idp_url, sizeof(d->idp_url), &so, routes, n, d->idp))
        return 0;
    if (atr_idp_set_authority(d->idp, d->idp_url, &err) != ATR_OK) {
        fprintf(stderr, "atrest dev: identity server: %s\n", atr_err_msg(&err));
        return 0;
    }

    /* key vault (test mode: faults and the clock can be driven by tests) */
    char mk[PATH_MAX];
    if (!path_join(state, sizeof(state), d->dir, "vault") ||
        (mkdir(state, 0700) != 0 && errno != EEXIST) ||
        !path_join(path, sizeof(path), state, "vault.db") ||
        !path_join(mk, sizeof(mk), state, "master.key") ||
        !path_join(path2, sizeof(path2), state, "admin.secret") ||
        !atr_cli_secret_file_ensure(d->vault_secret, sizeof(d->vault_secret), path2)) {
        fprintf(stderr, "atrest dev: cannot prepare %s\n", state);
        return 0;
    }
    struct atr_vault_opts vo;
    memset(&vo, 0, sizeof(vo));
    vo.db_path = path;
    vo.master_key_path = mk;
    vo.idp_authority = d->idp_url;
    vo.ca_file = d->ca;
    vo.default_vault = DEV_VAULT;
    vo.admin_secret = d->vault_secret;
    vo.test_mode = 1;
    if (atr_vault_new(&d->vault, &vo, &err) != ATR_OK ||
        atr_vault_ticker_start(d->vault, &err) != ATR_OK) {
        fprintf(stderr, "atrest dev: vault: %s\n", atr_err_msg(&err));
        return 0;
    }
    base_opts(&so, d, "vault", port != 0 ? port + 2 : 0);
    so.auth = atr_vault_auth;
    so.auth_ctx = d->vault;
    so.accept = atr_vault_accept;
    so.accept_ctx = d->vault;
    routes = atr_vault_routes(&n);
    if (!start_server(&d->vault_srv, d->vault_url, sizeof(d->vault_url), &so, routes, n, d->vault))
        return 0;

    return 1;
}

/* ---------------------------------------------------------------- demo */

/* One REST call; returns the parsed JSON answer (or an empty object) or NULL on failure. */
static json_t *rest(const char *url, const char *ca, const char *bearer, const char *xname,
                    const char *xvalue, const char *method, const char *path, json_t *body,
                    const char *form, unsigned want)
{
    char *b = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct atr_cli_rest t = {url, ca, bearer, xname, xvalue};
    struct atr_http_client_resp r;
    atr_http_client_resp_init(&r);
    int ok = atr_cli_rest_call(&r, &t, method, path, form != NULL ? form : b,
                               form != NULL ? "application/x-www-form-urlencoded" : NULL, want);
    json_t *out = NULL;
    if (ok) {
        const char *text = atr_buf_cstr(&r.body);
        out = text != NULL && text[0] != '\0' ? json_loads(text, 0, NULL) : json_object();
        if (out == NULL)
            out = json_object();
    }
    atr_http_client_resp_cleanup(&r);
    free(b);
    return out;
}

/*
 * A client credentials token from the identity server at @p idp_url for the
 * demo application whose id and secret are demo.json's @p app_key and
 * @p secret_key.
 */
static int token_from(char *out, size_t cap, const struct dev *d, const char *idp_url,
                      const char *app_key, const char *secret_key, const char *scope)
{
    const char *tid = json_string_value(json_object_get(d->demo, "tenant"));
    const char *app = json_string_value(json_object_get(d->demo, app_key));
    const char *sec = json_string_value(json_object_get(d->demo, secret_key));
    if (tid == NULL || app == NULL || sec == NULL)
        return 0;
    char form[1024], path[128];
    snprintf(form, sizeof(form),
             "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", app, sec,
             scope);
    snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", tid);
    json_t *r = rest(idp_url, d->ca, NULL, NULL, NULL, "POST", path, NULL, form, 200);
    OPENSSL_cleanse(form, sizeof(form));
    const char *tok = json_string_value(json_object_get(r, "access_token"));
    int ok = tok != NULL && strlen(tok) < cap;
    if (ok)
        snprintf(out, cap, "%s", tok);
    json_decref(r);
    return ok;
}

/* A token for the demo client application (all three service roles). */
static int token_for(char *out, size_t cap, const struct dev *d, const char *scope)
{
    return token_from(out, cap, d, d->idp_url, "appId", "secret", scope);
}

static int write_private(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    (void)unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return 0;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    return ok && rename(tmp, path) == 0;
}

static const char sample_actions[][16] = {"login", "download", "share", "delete", "upload"};
static const char sample_apps[][16] = {"Mail", "Files", "Chat"};

/* The first start: directory, client app, roles, vault and key, tenant, records. */
static int save_demo(const struct dev *d, const char *demo_path)
{
    char *text = json_dumps(d->demo, JSON_INDENT(2));
    int ok = text != NULL && write_private(demo_path, text);
    if (text != NULL)
        OPENSSL_cleanse(text, strlen(text));
    free(text);
    return ok;
}

/*
 * The identity and vault side of the demo: the customer's directory
 * "Contoso" (the demo tenant) with a client application holding the
 * service's three roles; the service provider's directory "atrest" with the
 * service's multi-tenant application, and its service principal in Contoso;
 * the vault "contoso" (soft delete + purge protection) granting the client
 * application everything and the service's principal list/wrapKey/unwrapKey;
 * an RSA key.
 */
static int provision_identity(struct dev *d)
{
    const char *ia = d->idp_secret;
    json_t *dir = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", "/admin/directories",
                       json_pack("{s:s}", "displayName", "Contoso"), NULL, 201);
    json_t *home = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", "/admin/directories",
                        json_pack("{s:s}", "displayName", "atrest service provider"), NULL, 201);
    const char *tid = json_string_value(json_object_get(dir, "id"));
    const char *home_tid = json_string_value(json_object_get(home, "id"));
    json_t *app = NULL, *sp = NULL, *byok = NULL, *byok_sp = NULL;
    int ok = tid != NULL && home_tid != NULL;
    char path[512];
    if (ok) {
        snprintf(path, sizeof(path), "/admin/directories/%s/applications", tid);
        app = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", path,
                   json_pack("{s:s,s:b}", "displayName", "atrest demo client", "multiTenant", 0),
                   NULL, 201);
        snprintf(path, sizeof(path), "/admin/directories/%s/applications", home_tid);
        byok = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", path,
                    json_pack("{s:s,s:b}", "displayName", "atrest", "multiTenant", 1), NULL, 201);
        ok = app != NULL && byok != NULL;
    }
    if (ok) {
        sp = rest(d->idp_url, d->ca, ia, ATR_IDP_DIRECTORY_HEADER, tid, "POST",
                  "/v1.0/servicePrincipals",
                  json_pack("{s:s}", "appId", json_string_value(json_object_get(app, "appId"))),
                  NULL, 201);
        /* the customer registers the service's application in its directory */
        byok_sp = rest(
            d->idp_url, d->ca, ia, ATR_IDP_DIRECTORY_HEADER, tid, "POST", "/v1.0/servicePrincipals",
            json_pack("{s:s}", "appId", json_string_value(json_object_get(byok, "appId"))), NULL,
            201);
    }
    const char *spid = json_string_value(json_object_get(sp, "id"));
    const char *byok_spid = json_string_value(json_object_get(byok_sp, "id"));
    ok = ok && spid != NULL && byok_spid != NULL;
    static const char *const roles[] = {ATR_ROLE_WRITE, ATR_ROLE_READ, ATR_ROLE_ADMIN};
    for (size_t i = 0; ok && i < 3; i++) {
        snprintf(path, sizeof(path), "/admin/directories/%s/servicePrincipals/%s/roles", tid, spid);
        json_t *g = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", path,
                         json_pack("{s:s}", "role", roles[i]), NULL, 200);
        ok = g != NULL;
        json_decref(g);
    }
    if (ok) {
        d->demo =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "tenant", tid, "appId",
                      json_string_value(json_object_get(app, "appId")), "secret",
                      json_string_value(json_object_get(app, "secret")), "spId", spid, "byokAppId",
                      json_string_value(json_object_get(byok, "appId")), "byokSecret",
                      json_string_value(json_object_get(byok, "secret")), "byokSpId", byok_spid,
                      "vault", DEV_VAULT, "key", DEV_KEY, "serviceReady", 0);
        ok = d->demo != NULL;
    }
    if (ok) {
        snprintf(path, sizeof(path), "/admin/vaults/%s", DEV_VAULT);
        json_t *v = rest(d->vault_url, d->ca, d->vault_secret, NULL, NULL, "PUT", path,
                         json_pack("{s:s,s:b,s:i,s:[{s:s,s:s,s:{s:[s]}},{s:s,s:s,s:{s:[s,s,s]}}]}",
                                   "directoryId", tid, "enablePurgeProtection", 1,
                                   "softDeleteRetentionInDays", 90, "accessPolicies", "tenantId",
                                   tid, "objectId", spid, "permissions", "keys", "all", "tenantId",
                                   tid, "objectId", byok_spid, "permissions", "keys", "list",
                                   "wrapKey", "unwrapKey"),
                         NULL, 201);
        ok = v != NULL;
        json_decref(v);
    }
    char vtok[ATR_JWT_MAX_LEN + 1];
    if (ok && (ok = token_for(vtok, sizeof(vtok), d, DEV_VAULT_SCOPE))) {
        snprintf(path, sizeof(path), "/keys/%s/create?api-version=7.4", DEV_KEY);
        json_t *k = rest(d->vault_url, d->ca, vtok, NULL, NULL, "POST", path,
                         json_pack("{s:s,s:i}", "kty", "RSA", "key_size", 3072), NULL, 200);
        const char *kid = json_string_value(json_object_get(json_object_get(k, "key"), "kid"));
        ok = kid != NULL;
        if (ok)
            json_object_set_new(d->demo, "keyId", json_string(kid));
        json_decref(k);
    }
    OPENSSL_cleanse(vtok, sizeof(vtok));
    json_decref(dir);
    json_decref(home);
    json_decref(app);
    json_decref(sp);
    json_decref(byok);
    json_decref(byok_sp);
    return ok;
}

/*
 * One more client application in Contoso with its service principal, the
 * service roles @p roles and, when @p vault_perm is set, that key
 * permission on the vault; kept in demo.json as {prefix}AppId,
 * {prefix}Secret and {prefix}SpId once every step succeeded.
 */
static int provision_client(struct dev *d, const char *prefix, const char *name,
                            const char *const *roles, size_t nroles, const char *vault_perm)
{
    const char *ia = d->idp_secret;
    const char *tid = json_string_value(json_object_get(d->demo, "tenant"));
    if (tid == NULL)
        return 0;
    char path[512];
    snprintf(path, sizeof(path), "/admin/directories/%s/applications", tid);
    json_t *app = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", path,
                       json_pack("{s:s,s:b}", "displayName", name, "multiTenant", 0), NULL, 201);
    const char *app_id = json_string_value(json_object_get(app, "appId"));
    const char *secret = json_string_value(json_object_get(app, "secret"));
    json_t *sp = NULL;
    if (app_id != NULL && secret != NULL)
        sp = rest(d->idp_url, d->ca, ia, ATR_IDP_DIRECTORY_HEADER, tid, "POST",
                  "/v1.0/servicePrincipals", json_pack("{s:s}", "appId", app_id), NULL, 201);
    const char *spid = json_string_value(json_object_get(sp, "id"));
    int ok = spid != NULL;
    for (size_t i = 0; ok && i < nroles; i++) {
        snprintf(path, sizeof(path), "/admin/directories/%s/servicePrincipals/%s/roles", tid, spid);
        json_t *g = rest(d->idp_url, d->ca, ia, NULL, NULL, "POST", path,
                         json_pack("{s:s}", "role", roles[i]), NULL, 200);
        ok = g != NULL;
        json_decref(g);
    }
    if (ok && vault_perm != NULL) {
        snprintf(path, sizeof(path), "/admin/vaults/%s/accessPolicies/%s", DEV_VAULT, spid);
        json_t *v =
            rest(d->vault_url, d->ca, d->vault_secret, NULL, NULL, "PUT", path,
                 json_pack("{s:s,s:{s:[s]}}", "tenantId", tid, "permissions", "keys", vault_perm),
                 NULL, 200);
        ok = v != NULL;
        json_decref(v);
    }
    static const char *const suffix[] = {"AppId", "Secret", "SpId"};
    const char *value[] = {app_id, secret, spid};
    for (size_t i = 0; ok && i < ATR_ARRAY_LEN(suffix); i++) {
        char key[64];
        snprintf(key, sizeof(key), "%s%s", prefix, suffix[i]);
        ok = json_object_set_new(d->demo, key, json_string(value[i])) == 0;
    }
    json_decref(app);
    json_decref(sp);
    return ok;
}

/*
 * The applications for scripts (dev.json), each made once: a records client
 * (Records.Write, Records.Read), an encryption admin (DataEncryption.Admin)
 * and the vault administrator (every key permission on the vault). State
 * folders from before them get them on their next start.
 */
static int provision_clients(struct dev *d, const char *demo_path)
{
    static const char *const rw[] = {ATR_ROLE_WRITE, ATR_ROLE_READ};
    static const char *const adm[] = {ATR_ROLE_ADMIN};
    static const struct {
        const char *prefix, *name;
        const char *const *roles;
        size_t nroles;
        const char *vault_perm;
    } apps[] = {
        {"records", "atrest demo records client", rw, ATR_ARRAY_LEN(rw), NULL},
        {"admin", "atrest demo encryption admin", adm, ATR_ARRAY_LEN(adm), NULL},
        {"vaultAdmin", "atrest demo vault administrator", NULL, 0, "all"},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(apps); i++) {
        char key[64];
        snprintf(key, sizeof(key), "%sAppId", apps[i].prefix);
        if (json_is_string(json_object_get(d->demo, key)))
            continue;
        if (!provision_client(d, apps[i].prefix, apps[i].name, apps[i].roles, apps[i].nroles,
                              apps[i].vault_perm) ||
            !save_demo(d, demo_path)) {
            fprintf(stderr, "atrest dev: provisioning the %s failed (see above)\n", apps[i].name);
            return 0;
        }
    }
    return 1;
}

/* The service side: the tenant, sample records, and the customer key enabled. */
static int provision_service(struct dev *d)
{
    const char *tid = json_string_value(json_object_get(d->demo, "tenant"));
    char path[512];
    char stok[ATR_JWT_MAX_LEN + 1];
    int ok = token_for(stok, sizeof(stok), d, DEV_SVC_SCOPE);
    if (ok) {
        snprintf(path, sizeof(path), "/v1/tenants/%s", tid);
        json_t *t = rest(d->svc_url, d->ca, stok, NULL, NULL, "PUT", path, NULL, NULL, 201);
        ok = t != NULL;
        json_decref(t);
    }
    if (ok) {
        /* sample activity: 60 records over the last hour */
        char *nd = NULL;
        size_t nd_len = 0;
        FILE *m = open_memstream(&nd, &nd_len);
        int64_t now = (int64_t)time(NULL);
        for (int i = 0; m != NULL && i < 60; i++) {
            time_t at = (time_t)(now - 3600 + i * 60);
            struct tm tmv;
            gmtime_r(&at, &tmv);
            char ts[32];
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tmv);
            fprintf(m,
                    "{\"time\":\"%s\",\"user\":\"user%d@contoso.example\",\"app\":\"%s\","
                    "\"action\":\"%s\",\"ip\":\"203.0.113.%d\",\"bytes\":%d}\n",
                    ts, i % 7, sample_apps[i % 3], sample_actions[i % 5], 10 + i % 50, i * 1000);
        }
        if (m != NULL)
            fclose(m);
        struct atr_cli_rest t = {d->svc_url, d->ca, stok, NULL, NULL};
        struct atr_http_client_resp r;
        atr_http_client_resp_init(&r);
        snprintf(path, sizeof(path), "/v1/tenants/%s/records", tid);
        ok = nd != NULL && atr_cli_rest_call(&r, &t, "POST", path, nd, "application/x-ndjson", 200);
        atr_http_client_resp_cleanup(&r);
        free(nd);
    }
    if (ok) {
        /* bring your own key: the versionless URI of the demo key */
        char uri[512];
        snprintf(uri, sizeof(uri), "%s/keys/%s", d->vault_url, DEV_KEY);
        snprintf(path, sizeof(path), "/v1/tenants/%s/encryption", tid);
        json_t *e = rest(d->svc_url, d->ca, stok, NULL, NULL, "PUT", path,
                         json_pack("{s:s}", "keyUri", uri), NULL, 200);
        ok = e != NULL;
        json_decref(e);
    }
    OPENSSL_cleanse(stok, sizeof(stok));
    if (ok)
        json_object_set_new(d->demo, "serviceReady", json_true());
    return ok;
}

static int write_profile(const struct dev *d)
{
    char path[PATH_MAX];
    if (!path_join(path, sizeof(path), d->dir, "profile"))
        return 0;
    const char *kid = json_string_value(json_object_get(d->demo, "keyId"));
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m == NULL)
        return 0;
    fprintf(m,
            "# written by atrest dev; source it: . %s\n"
            "ATREST_URL=%s\nATREST_IDP_URL=%s\nATREST_VAULT_URL=%s\nATREST_CA=%s\n"
            "ATREST_TENANT=%s\nATREST_CLIENT_ID=%s\nATREST_DEMO_FILE=%s/demo.json\n"
            "ATREST_VAULT_KEY_ID=%s\n",
            path, d->svc_url, d->idp_url, d->vault_url, d->ca,
            json_string_value(json_object_get(d->demo, "tenant")),
            json_string_value(json_object_get(d->demo, "appId")), d->dir, kid != NULL ? kid : "");
    int ok = fclose(m) == 0 && text != NULL && write_private(path, text);
    free(text);
    return ok;
}

/* The data service, with the demo's customer-key application. */
static int start_service(struct dev *d, unsigned long port)
{
    char state[PATH_MAX], path[PATH_MAX], path2[PATH_MAX];
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_http_server_opts so;
    size_t n;
    const struct atr_route *routes;
    /* the data service */
    char srk[PATH_MAX], db[PATH_MAX + 8];
    if (!path_join(state, sizeof(state), d->dir, "service") ||
        (mkdir(state, 0700) != 0 && errno != EEXIST) ||
        !path_join(path, sizeof(path), state, "atrest.db") ||
        snprintf(db, sizeof(db), "sqlite:%s", path) >= (int)sizeof(db) ||
        !path_join(srk, sizeof(srk), state, "srk.key") ||
        !path_join(path2, sizeof(path2), state, "admin.secret") ||
        !atr_cli_secret_file_ensure(d->svc_secret, sizeof(d->svc_secret), path2)) {
        fprintf(stderr, "atrest dev: cannot prepare %s\n", state);
        return 0;
    }
    struct atr_service_opts sv;
    memset(&sv, 0, sizeof(sv));
    sv.store_location = db;
    sv.srk_path = srk;
    sv.idp_authority = d->idp_url;
    sv.ca_file = d->ca;
    sv.admin_secret = d->svc_secret;
    /*
     * Test hooks on, monitor thread on: scripts and the console's browser test
     * move the service's clock (POST /admin/clock) and run monitor passes
     * (POST /admin/monitor/run) with the admin secret named in dev.json.
     */
    atr_offset_clock_init(&d->svc_clock, atr_clock_real());
    sv.test_clock = &d->svc_clock;
    /* bring your own key: the service's multi-tenant application, this vault only */
    char vault_host[160];
    snprintf(vault_host, sizeof(vault_host), "%s", d->vault_url + strlen("https://"));
    const char *hosts[] = {vault_host};
    sv.byok_client_id = json_string_value(json_object_get(d->demo, "byokAppId"));
    sv.byok_client_secret = json_string_value(json_object_get(d->demo, "byokSecret"));
    sv.byok_vault_hosts = hosts;
    sv.byok_nvault_hosts = 1;
    if (atr_service_new(&d->svc, &sv, &err) != ATR_OK) {
        fprintf(stderr, "atrest dev: service: %s\n", atr_err_msg(&err));
        return 0;
    }
    base_opts(&so, d, "service", port);
    so.auth = atr_service_auth;
    so.auth_ctx = d->svc;
    so.observe = atr_service_observe;
    so.observe_ctx = d->svc;
    routes = atr_service_routes(&n);
    return start_server(&d->svc_srv, d->svc_url, sizeof(d->svc_url), &so, routes, n, d->svc);
}

/*
 * Service tokens valid for DEV_TOKEN_LIFETIME_S for the records client and
 * the encryption admin. They come from a second identity server object on
 * the same store with the running one's authority, so the same issuer and
 * signing keys, that knows only the service as a resource and listens on a
 * free loopback port only while these two tokens are issued: every other
 * token keeps the default lifetime.
 */
static int long_tokens(const struct dev *d, char *records, char *admin, size_t cap)
{
    char db[PATH_MAX + 16];
    if (snprintf(db, sizeof(db), "%s/idp/idp.db", d->dir) >= (int)sizeof(db))
        return 0;
    static const char *const resources[] = {"api://atrest"};
    struct atr_idp_opts io;
    memset(&io, 0, sizeof(io));
    io.db_path = db;
    io.authority = d->idp_url;
    io.token_lifetime_s = DEV_TOKEN_LIFETIME_S;
    io.resources = resources;
    io.nresources = ATR_ARRAY_LEN(resources);
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_idp *idp = NULL;
    if (atr_idp_new(&idp, &io, &err) != ATR_OK) {
        fprintf(stderr, "atrest dev: identity server for dev.json: %s\n", atr_err_msg(&err));
        return 0;
    }
    struct atr_http_server_opts so;
    base_opts(&so, d, "idp-dev-tokens", 0);
    so.auth = atr_idp_auth;
    so.auth_ctx = idp;
    size_t n;
    const struct atr_route *routes = atr_idp_routes(&n);
    struct atr_http_server *srv = NULL;
    char url[128];
    int ok = start_server(&srv, url, sizeof(url), &so, routes, n, idp) &&
             token_from(records, cap, d, url, "recordsAppId", "recordsSecret", DEV_SVC_SCOPE) &&
             token_from(admin, cap, d, url, "adminAppId", "adminSecret", DEV_SVC_SCOPE);
    atr_http_server_free(srv);
    atr_idp_free(idp);
    return ok;
}

/*
 * DIR/dev.json for scripts, once everything answers: the service (the
 * tenant's encryption status, read with the admin token, names the customer
 * key) and the vault (the demo key, read as the vault administrator).
 */
static int write_dev_json(struct dev *d)
{
    const char *tid = json_string_value(json_object_get(d->demo, "tenant"));
    char records[ATR_JWT_MAX_LEN + 1], admin[ATR_JWT_MAX_LEN + 1], vtok[ATR_JWT_MAX_LEN + 1];
    char path[512];
    json_t *enc = NULL, *key = NULL, *doc = NULL;
    int ok = tid != NULL && long_tokens(d, records, admin, sizeof(records));
    if (ok) {
        snprintf(path, sizeof(path), "/v1/tenants/%s/encryption", tid);
        enc = rest(d->svc_url, d->ca, admin, NULL, NULL, "GET", path, NULL, NULL, 200);
        ok = enc != NULL;
    }
    if (ok && (ok = token_from(vtok, sizeof(vtok), d, d->idp_url, "vaultAdminAppId",
                               "vaultAdminSecret", DEV_VAULT_SCOPE))) {
        snprintf(path, sizeof(path), "/keys/%s?api-version=7.4", DEV_KEY);
        key = rest(d->vault_url, d->ca, vtok, NULL, NULL, "GET", path, NULL, NULL, 200);
        ok = json_string_value(json_object_get(json_object_get(key, "key"), "kid")) != NULL;
    }
    if (ok) {
        /* the URI the tenant uses; the demo key's when it has none (managed keys) */
        const char *uri = json_string_value(json_object_get(enc, "keyUri"));
        if (uri != NULL && uri[0] != '\0')
            snprintf(d->key_uri, sizeof(d->key_uri), "%s", uri);
        else
            snprintf(d->key_uri, sizeof(d->key_uri), "%s/keys/%s", d->vault_url, DEV_KEY);
        char ca[PATH_MAX + 16], profile[PATH_MAX + 16], console[160];
        char svc_admin[PATH_MAX + 32], vault_admin[PATH_MAX + 32];
        snprintf(ca, sizeof(ca), "%s/tls/ca.pem", d->abs_dir);
        snprintf(profile, sizeof(profile), "%s/profile", d->abs_dir);
        snprintf(console, sizeof(console), "%s/console/", d->svc_url);
        snprintf(svc_admin, sizeof(svc_admin), "%s/service/admin.secret", d->abs_dir);
        snprintf(vault_admin, sizeof(vault_admin), "%s/vault/admin.secret", d->abs_dir);
        doc = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s},s:{s:s,s:s,s:s}}", "service_url",
            d->svc_url, "console_url", console, "vault_url", d->vault_url, "identity_url",
            d->idp_url, "ca_file", ca, "profile", profile, "tenant_id", tid, "key_uri", d->key_uri,
            "service_admin_secret_file", svc_admin, "vault_admin_secret_file", vault_admin,
            "tokens", "records", records, "admin", admin, "vault_admin", "tenant_id", tid,
            "client_id", json_string_value(json_object_get(d->demo, "vaultAdminAppId")),
            "client_secret", json_string_value(json_object_get(d->demo, "vaultAdminSecret")));
        char *text = doc != NULL ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        ok = text != NULL && write_private(d->dev_json, text);
        if (text != NULL)
            OPENSSL_cleanse(text, strlen(text));
        free(text);
        if (!ok)
            fprintf(stderr, "atrest dev: cannot write %s\n", d->dev_json);
    }
    OPENSSL_cleanse(records, sizeof(records));
    OPENSSL_cleanse(admin, sizeof(admin));
    OPENSSL_cleanse(vtok, sizeof(vtok));
    json_decref(enc);
    json_decref(key);
    json_decref(doc);
    return ok;
}

/* The identity side (provisioned once), the service, then the service side (once). */
static int demo_ready(struct dev *d, unsigned long port)
{
    char demo_path[PATH_MAX];
    if (!path_join(demo_path, sizeof(demo_path), d->dir, "demo.json"))
        return 0;
    d->demo = json_load_file(demo_path, 0, NULL);
    if (d->demo == NULL && (!provision_identity(d) || !save_demo(d, demo_path))) {
        fprintf(stderr, "atrest dev: provisioning the demo failed (see the messages above)\n");
        return 0;
    }
    if (!provision_clients(d, demo_path) || !start_service(d, port))
        return 0;
    if (!json_is_true(json_object_get(d->demo, "serviceReady")) &&
        (!provision_service(d) || !save_demo(d, demo_path))) {
        fprintf(stderr, "atrest dev: provisioning the demo tenant failed (see above)\n");
        return 0;
    }
    if (!write_profile(d) || !token_for(d->token, sizeof(d->token), d, DEV_SVC_SCOPE))
        return 0;
    if (!write_dev_json(d)) {
        fprintf(stderr, "atrest dev: writing %s failed (see above)\n", d->dev_json);
        return 0;
    }
    return 1;
}

static void print_ready(const struct dev *d)
{
    const char *tid = json_string_value(json_object_get(d->demo, "tenant"));
    /* a line with the service URL alone comes first, so scripts can read it */
    printf("%s\n"
           "\n"
           "atrest dev is running (state in %s):\n"
           "  service          %s\n"
           "  identity server  %s\n"
           "  key vault        %s (vault \"%s\", key \"%s\")\n"
           "  demo tenant      %s (its data under the customer key in the vault)\n"
           "  customer key     %s\n"
           "  console          %s/console/\n"
           "\n"
           "Sign in to the console (Settings > Cloud Apps > Data encryption) with this link\n"
           "(the demo tenant's admin, 1 hour):\n"
           "  %s/console/#token=%s\n"
           "\n"
           "A token for the demo tenant (1 hour; roles Records.Write, Records.Read,\n"
           "DataEncryption.Admin):\n"
           "  export TOKEN=%s\n"
           "\n"
           "Try:\n"
           "  curl --cacert %s -H \"Authorization: Bearer $TOKEN\" "
           "%s/v1/tenants/%s/records\n"
           "  curl --cacert %s -H \"Authorization: Bearer $TOKEN\" "
           "%s/v1/tenants/%s/encryption\n"
           "  curl --cacert %s -H \"Authorization: Bearer $TOKEN\" "
           "-H 'Content-Type: application/x-ndjson' --data-binary "
           "'{\"time\":\"2026-01-01T00:00:00Z\",\"user\":\"u\",\"app\":\"a\","
           "\"action\":\"login\",\"ip\":\"192.0.2.1\"}' %s/v1/tenants/%s/records\n"
           "  curl --cacert %s %s/metrics\n"
           "URLs, ids, tokens (8 hours) and the vault administrator for scripts: %s\n"
           "URLs and ids for scripts: %s/profile. Stop with Ctrl-C.\n",
           d->svc_url, d->dir, d->svc_url, d->idp_url, d->vault_url, DEV_VAULT, DEV_KEY, tid,
           d->key_uri, d->svc_url, d->svc_url, d->token, d->token, d->ca, d->svc_url, tid, d->ca,
           d->svc_url, tid, d->ca, d->svc_url, tid, d->ca, d->svc_url, d->dev_json, d->dir);
    fflush(stdout);
}

static void dev_free(struct dev *d)
{
    atr_http_server_free(d->svc_srv);
    atr_http_server_free(d->vault_srv);
    atr_http_server_free(d->idp_srv);
    atr_service_free(d->svc);
    atr_vault_free(d->vault);
    atr_idp_free(d->idp);
    json_decref(d->demo);
    OPENSSL_cleanse(d->idp_secret, sizeof(d->idp_secret));
    OPENSSL_cleanse(d->vault_secret, sizeof(d->vault_secret));
    OPENSSL_cleanse(d->svc_secret, sizeof(d->svc_secret));
    OPENSSL_cleanse(d->token, sizeof(d->token));
}

int atr_cmd_dev(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"port", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct dev d;
    memset(&d, 0, sizeof(d));
    d.dir = ".dev";
    unsigned long port = DEV_DEFAULT_PORT;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            d.dir = optarg;
            break;
        case 'p':
            if (!atr_args_parse_ulong(&port, optarg, 0, 65533))
                return atr_args_usage_error(
                    "dev", "--port must be a number from 0 to 65533, not '%s'", optarg);
            break;
        case 'h':
            dev_usage(stdout);
            return ATR_EXIT_OK;
        default:
            return atr_args_getopt_error("dev", ch, argv);
        }
    }
    if (optind < argc)
        return atr_args_usage_error("dev", "unexpected argument '%s'", argv[optind]);
    if (d.dir[0] == '\0')
        return atr_args_usage_error("dev", "--dir must not be empty");

    char tls[PATH_MAX];
    if (!path_join(tls, sizeof(tls), d.dir, "tls") ||
        !path_join(d.ca, sizeof(d.ca), tls, "ca.pem") ||
        !path_join(d.cert, sizeof(d.cert), tls, "server.pem") ||
        !path_join(d.key, sizeof(d.key), tls, "server.key")) {
        fprintf(stderr, "atrest dev: the folder path is too long\n");
        return ATR_EXIT_FAIL;
    }
    if (mkdir(d.dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "atrest dev: cannot create %s: %s\n", d.dir, strerror(errno));
        return ATR_EXIT_FAIL;
    }
    /* dev.json describes a running system: the previous run's goes first */
    if (realpath(d.dir, d.abs_dir) == NULL) {
        fprintf(stderr, "atrest dev: cannot resolve %s: %s\n", d.dir, strerror(errno));
        return ATR_EXIT_FAIL;
    }
    if (snprintf(d.dev_json, sizeof(d.dev_json), "%s/dev.json", d.abs_dir) >=
        (int)sizeof(d.dev_json)) {
        fprintf(stderr, "atrest dev: the folder path is too long\n");
        return ATR_EXIT_FAIL;
    }
    if (unlink(d.dev_json) != 0 && errno != ENOENT) {
        fprintf(stderr, "atrest dev: cannot remove %s: %s\n", d.dev_json, strerror(errno));
        return ATR_EXIT_FAIL;
    }
    static const char *const hosts[] = {"localhost", "127.0.0.1"};
    int rc = atr_cli_cert_make(tls, hosts, ATR_ARRAY_LEN(hosts), 0);
    if (rc != ATR_EXIT_OK)
        return rc;
    struct atr_err err;
    atr_err_clear(&err);
    rc = ATR_EXIT_FAIL;
    if (atr_http_signals_block(&err) != ATR_OK) {
        fprintf(stderr, "atrest dev: %s\n", atr_err_msg(&err));
        return rc;
    }
    if (start_idp_vault(&d, port) && demo_ready(&d, port)) {
        print_ready(&d);
        int sig = 0;
        if (atr_http_signals_wait(&sig, &err) == ATR_OK) {
            atr_log(ATR_LOG_INFO, "dev.signal", NULL, "received %s; stopping",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT");
            rc = ATR_EXIT_OK;
        } else {
            fprintf(stderr, "atrest dev: %s\n", atr_err_msg(&err));
        }
        atr_http_server_stop(d.svc_srv);
        atr_http_server_stop(d.vault_srv);
        atr_http_server_stop(d.idp_srv);
        (void)unlink(d.dev_json);
    }
    dev_free(&d);
    return rc;
}
