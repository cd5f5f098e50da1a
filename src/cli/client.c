/* SPDX-License-Identifier: Apache-2.0 */
#include "cli/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/rest.h"

#define ITEMS_MAX  100000
#define LINE_MAX_B 8192
#define TOKEN_MAX  16384

/* ------------------------------------------------------------ settings */

/* What differs between the families. */
struct family_names {
    const char *url_env;
    const char *default_url;
    const char *scope;
    const char *admin_env;      /* the secret itself (kept for compatibility) */
    const char *admin_file_env; /* a file holding it */
    const char *dev_admin;      /* in the `atrest dev` state folder */
    const char *token_env;      /* a token itself; NULL = none */
    const char *token_file_env;
};

static const struct family_names families[] = {
    [ATR_CLI_SERVICE] = {"ATREST_URL", NULL, "api://atrest/.default", "ATREST_SERVE_ADMIN_SECRET",
                         "ATREST_SERVE_ADMIN_SECRET_FILE", "service/admin.secret", "ATREST_TOKEN",
                         "ATREST_TOKEN_FILE"},
    [ATR_CLI_VAULT] = {"ATREST_VAULT_URL", "https://127.0.0.1:8445",
                       "https://vault.azure.net/.default", "ATREST_VAULT_ADMIN_SECRET",
                       "ATREST_VAULT_ADMIN_SECRET_FILE", "vault/admin.secret", NULL,
                       "ATREST_VAULT_TOKEN_FILE"},
    [ATR_CLI_IDP] = {"ATREST_IDP_URL", "https://127.0.0.1:8444", "https://vault.azure.net/.default",
                     "ATREST_IDP_ADMIN_SECRET", "ATREST_IDP_ADMIN_SECRET_FILE", "idp/admin.secret",
                     NULL, NULL},
};

void atr_cli_conf_init(struct atr_cli_conf *c, const char *cmd, enum atr_cli_family family)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->family = family;
}

static void set(struct atr_cli_value *v, const char *s, enum atr_cli_level level)
{
    if (s == NULL || s[0] == '\0' || (v->level != ATR_CLI_UNSET && v->level <= level))
        return;
    size_t n = strlen(s);
    if (n >= sizeof(v->v)) {
        fprintf(stderr, "atrest: a setting longer than %zu bytes is ignored\n", sizeof(v->v) - 1);
        return;
    }
    memcpy(v->v, s, n + 1);
    v->level = level;
}

int atr_cli_conf_opt(struct atr_cli_conf *c, int ch, const char *arg)
{
    switch (ch) {
    case ATR_CLI_OPT_URL:
        set(&c->url, arg, ATR_CLI_FLAG);
        if (c->family == ATR_CLI_IDP)
            set(&c->idp_url, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_CA:
        set(&c->ca, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_PROFILE:
        c->profile = arg;
        return 1;
    case ATR_CLI_OPT_JSON:
        c->json = 1;
        return 1;
    case ATR_CLI_OPT_TENANT:
        set(&c->tenant, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_IDP_URL:
        set(&c->idp_url, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_CLIENT_ID:
        set(&c->client_id, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_SECRET_FILE:
        set(&c->secret_file, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_TOKEN:
        c->token = arg;
        return 1;
    case ATR_CLI_OPT_TOKEN_FILE:
        set(&c->token_file, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_SCOPE:
        set(&c->scope, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_ADMIN_FILE:
        set(&c->admin_file, arg, ATR_CLI_FLAG);
        return 1;
    case ATR_CLI_OPT_YES:
        c->yes = 1;
        return 1;
    case ATR_CLI_OPT_TOKEN_DIR:
        set(&c->token_dir, arg, ATR_CLI_FLAG);
        return 1;
    default:
        return 0;
    }
}

int atr_cli_parse_args(struct atr_cli_conf *c, struct atr_cli_parse *p, int argc, char **argv)
{
    opterr = 0;
    optind = 1;
    p->npos = 0;
    int ch;
    /* "-" keeps positional arguments in order with the options */
    while ((ch = getopt_long(argc, argv, "-:h", p->longopts, NULL)) != -1) {
        if (ch == 1) {
            if (p->npos == p->maxpos)
                return atr_args_usage_error(c->cmd, "unexpected argument '%s'", optarg);
            p->pos[p->npos++] = optarg;
            continue;
        }
        if (ch == 'h') {
            p->help(stdout, p->ctx);
            return -1;
        }
        if (ch == ':' || ch == '?')
            return atr_args_getopt_error(c->cmd, ch, argv);
        if (atr_cli_conf_opt(c, ch, optarg))
            continue;
        int rc = p->own != NULL ? p->own(p->ctx, ch, optarg) : ATR_EXIT_USAGE;
        if (rc != ATR_EXIT_OK)
            return rc;
    }
    return ATR_EXIT_OK;
}

void atr_cli_conf_help(FILE *out, enum atr_cli_family family, unsigned groups)
{
    const struct family_names *f = &families[family];
    static const char *const server[] = {"the service", "the key vault", "the identity server"};
    if (groups & ATR_CLI_HELP_CONN) {
        fprintf(out,
                "\nwhere to call (flags, then environment, then profile):\n"
                "  --url URL              %s (%s)\n",
                server[family], f->url_env);
        if (f->default_url != NULL)
            fprintf(out, "                         default %s\n", f->default_url);
        fprintf(
            out,
            "  --ca FILE              CA certificate to trust (ATREST_CA; default: the system\n"
            "                         store)\n"
            "  --profile FILE         KEY=VALUE settings (ATREST_PROFILE; default .dev/profile\n"
            "                         when present, as `atrest dev` writes it)\n"
            "  --json                 print JSON (the server's answers) instead of text\n");
    }
    if (groups & ATR_CLI_HELP_AUTH) {
        fprintf(out,
                "\nas whom (the first source found: flags, environment, profile):\n"
                "  --tenant TID           the tenant: its directory id (ATREST_TENANT)\n"
                "  --token-file FILE      a bearer token (%s%s%s)\n"
                "  --client-id APPID      or client credentials of an application in the\n"
                "  --secret-file FILE     tenant's directory (ATREST_CLIENT_ID,\n"
                "                         ATREST_CLIENT_SECRET_FILE; `atrest dev` profiles: the\n"
                "                         demo application); the token comes from\n"
                "  --idp-url URL          the identity server (ATREST_IDP_URL)\n"
                "  --scope SCOPE          default %s\n"
                "  --token TOKEN          a token on the command line (other local users can\n"
                "                         see it: prefer --token-file)\n",
                f->token_file_env != NULL ? f->token_file_env : "",
                f->token_env != NULL ? "; " : "", f->token_env != NULL ? f->token_env : "",
                f->scope);
    }
    if (groups & ATR_CLI_HELP_BULK)
        fprintf(out, "  --token-dir DIR        with --from: DIR/TENANT holds each tenant's token\n"
                     "                         (ATREST_TOKEN_DIR)\n");
    if (groups & ATR_CLI_HELP_ADMIN)
        fprintf(out,
                "\nas the server's administrator:\n"
                "  --admin-secret-file F  its bootstrap secret (%s;\n"
                "                         %s holds the secret itself;\n"
                "                         `atrest dev` profiles: DIR/%s)\n",
                f->admin_file_env, f->admin_env, f->dev_admin);
    fprintf(out, "\nexit codes: 0 ok, 1 failed (the server's error on stderr), 2 usage\n");
}

/* The slot a KEY of the environment or a profile fills; NULL when none. */
static struct atr_cli_value *slot(struct atr_cli_conf *c, const char *key)
{
    const struct family_names *f = &families[c->family];
    if (strcmp(key, f->url_env) == 0)
        return &c->url;
    if (strcmp(key, f->admin_file_env) == 0)
        return &c->admin_file;
    if (f->token_file_env != NULL && strcmp(key, f->token_file_env) == 0)
        return &c->token_file;
    struct {
        const char *key;
        struct atr_cli_value *slot;
    } common[] = {
        {"ATREST_IDP_URL", &c->idp_url},
        {"ATREST_CA", &c->ca},
        {"ATREST_TENANT", &c->tenant},
        {"ATREST_CLIENT_ID", &c->client_id},
        {"ATREST_CLIENT_SECRET_FILE", &c->secret_file},
        {"ATREST_TOKEN_DIR", &c->token_dir},
        {"ATREST_DEMO_FILE", &c->demo_file},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(common); i++) {
        if (strcmp(key, common[i].key) == 0)
            return common[i].slot;
    }
    return NULL;
}

static const char *const env_keys[] = {
    "ATREST_URL",
    "ATREST_VAULT_URL",
    "ATREST_IDP_URL",
    "ATREST_CA",
    "ATREST_TENANT",
    "ATREST_CLIENT_ID",
    "ATREST_CLIENT_SECRET_FILE",
    "ATREST_TOKEN_FILE",
    "ATREST_VAULT_TOKEN_FILE",
    "ATREST_TOKEN_DIR",
    "ATREST_DEMO_FILE",
    "ATREST_SERVE_ADMIN_SECRET_FILE",
    "ATREST_VAULT_ADMIN_SECRET_FILE",
    "ATREST_IDP_ADMIN_SECRET_FILE",
};

/* Reads KEY=VALUE lines of @p path into the settings still unset. */
static atr_status read_profile(struct atr_cli_conf *c, const char *path, struct atr_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return atr_err_set(err, ATR_E_IO, "cannot read the profile %s: %s", path, strerror(errno));
    char line[2 * ATR_CLI_VALUE_MAX];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *k = line + strspn(line, " \t");
        if (strncmp(k, "export ", 7) == 0)
            k += 7 + strspn(k + 7, " \t");
        char *eq = strchr(k, '=');
        if (k[0] == '#' || eq == NULL)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        size_t n = strlen(v);
        if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
            v[n - 1] = '\0';
            v++;
        }
        struct atr_cli_value *s = slot(c, k);
        if (s != NULL)
            set(s, v, ATR_CLI_PROFILE);
    }
    fclose(f);
    snprintf(c->profile_used, sizeof(c->profile_used), "%s", path);
    return ATR_OK;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

atr_status atr_cli_conf_resolve(struct atr_cli_conf *c, struct atr_err *err)
{
    const struct family_names *f = &families[c->family];
    for (size_t i = 0; i < ATR_ARRAY_LEN(env_keys); i++) {
        struct atr_cli_value *s = slot(c, env_keys[i]);
        if (s != NULL)
            set(s, getenv(env_keys[i]), ATR_CLI_ENV);
    }
    if (f->token_env != NULL) {
        const char *t = getenv(f->token_env);
        c->token_env = t != NULL && t[0] != '\0' ? t : NULL;
    }
    const char *profile = c->profile != NULL ? c->profile : getenv("ATREST_PROFILE");
    if (profile != NULL && profile[0] != '\0') {
        ATR_TRY(read_profile(c, profile, err));
    } else if (file_exists(".dev/profile")) {
        ATR_TRY(read_profile(c, ".dev/profile", err));
    }
    if (c->profile_used[0] != '\0' && c->admin_file.level == ATR_CLI_UNSET) {
        /* a profile of `atrest dev` sits in its state folder */
        char dir[ATR_CLI_VALUE_MAX], path[2 * ATR_CLI_VALUE_MAX + 32];
        snprintf(dir, sizeof(dir), "%s", c->profile_used);
        char *slash = strrchr(dir, '/');
        if (slash != NULL)
            *slash = '\0';
        else
            snprintf(dir, sizeof(dir), ".");
        snprintf(path, sizeof(path), "%s/%s", dir, f->dev_admin);
        if (file_exists(path))
            set(&c->admin_file, path, ATR_CLI_PROFILE);
    }
    if (c->family == ATR_CLI_IDP)
        set(&c->url, c->idp_url.v, c->idp_url.level);
    set(&c->url, f->default_url, ATR_CLI_DEFAULT);
    if (c->family == ATR_CLI_IDP)
        set(&c->idp_url, c->url.v, c->url.level);
    set(&c->scope, f->scope, ATR_CLI_DEFAULT);
    /* the service and vault families name their server with --url; strip a trailing '/' */
    size_t n = strlen(c->url.v);
    while (n > 0 && c->url.v[n - 1] == '/')
        c->url.v[--n] = '\0';
    return ATR_OK;
}

const char *atr_cli_conf_ca(const struct atr_cli_conf *c)
{
    return c->ca.v[0] != '\0' ? c->ca.v : NULL;
}

/* A small file's text without trailing whitespace, into @p out. */
static atr_status read_secret_file(char *out, size_t cap, const char *path, const char *what,
                                   struct atr_err *err)
{
    if (!atr_cli_read_small_file(out, cap, path)) {
        OPENSSL_cleanse(out, cap);
        return atr_err_set(err, ATR_E_IO, "cannot read the %s from %s", what, path);
    }
    return ATR_OK;
}

atr_status atr_cli_conf_admin_secret(char *out, size_t cap, const struct atr_cli_conf *c,
                                     struct atr_err *err)
{
    const struct family_names *f = &families[c->family];
    out[0] = '\0';
    if (c->admin_file.level == ATR_CLI_FLAG)
        return read_secret_file(out, cap, c->admin_file.v, "bootstrap secret", err);
    const char *e = getenv(f->admin_env);
    if (e != NULL && e[0] != '\0') {
        snprintf(out, cap, "%s", e);
        return ATR_OK;
    }
    if (c->admin_file.level != ATR_CLI_UNSET)
        return read_secret_file(out, cap, c->admin_file.v, "bootstrap secret", err);
    return atr_err_set(err, ATR_E_INVALID,
                       "the server's bootstrap secret is needed: give --admin-secret-file FILE "
                       "(or %s, %s, or a profile of `atrest dev`)",
                       f->admin_file_env, f->admin_env);
}

void atr_cli_token_free(char *token)
{
    if (token == NULL)
        return;
    OPENSSL_cleanse(token, strlen(token));
    atr_free(token);
}

/* Appends "&name=value" (percent-encoded) to @p b. */
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

atr_status atr_cli_token_fetch(char **out, json_t **answer, struct atr_http_client *h,
                               const char *idp_url, const char *tenant, const char *client_id,
                               const char *secret, const char *scope, struct atr_err *err)
{
    *out = NULL;
    if (answer != NULL)
        *answer = NULL;
    if (!atr_cli_id_ok(tenant))
        return atr_err_set(err, ATR_E_INVALID, "'%.80s' is not a tenant (directory) id", tenant);
    char url[ATR_CLI_VALUE_MAX + 128];
    if (!atr_cli_url(url, sizeof(url), idp_url, "/%s/oauth2/v2.0/token", tenant))
        return atr_err_set(err, ATR_E_INVALID, "the identity server URL is too long");
    struct atr_buf form;
    atr_buf_init(&form, 16384);
    atr_status rc = ATR_OK;
    if (!form_add(&form, "grant_type", "client_credentials") ||
        !form_add(&form, "client_id", client_id) || !form_add(&form, "client_secret", secret) ||
        !form_add(&form, "scope", scope) || atr_buf_cstr(&form) == NULL) {
        atr_buf_cleanup(&form);
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    }
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    struct atr_cli_req rq = {
        "POST", url, NULL, atr_buf_cstr(&form), form.len, "application/x-www-form-urlencoded",
        NULL,   NULL};
    rc = atr_cli_send(&resp, h, &rq, err);
    if (rc != ATR_OK)
        rc = atr_err_wrap(err, rc, "getting a token from the identity server");
    atr_buf_cleanup(&form); /* wipes the secret */
    if (rc == ATR_OK && resp.status != 200) {
        struct atr_cli_http_error *e = atr_malloc(sizeof(*e));
        if (e != NULL)
            atr_cli_http_error_parse(e, &resp);
        rc = atr_err_set(err, ATR_E_UPSTREAM, "no token for tenant %s from %s: HTTP %u %s: %s",
                         tenant, idp_url, resp.status, e != NULL ? e->code : "",
                         e != NULL ? e->message : "");
        atr_free(e);
    }
    if (rc == ATR_OK) {
        json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
        const char *tok = json_string_value(json_object_get(j, "access_token"));
        if (tok == NULL || strlen(tok) > TOKEN_MAX) {
            rc = atr_err_set(err, ATR_E_UPSTREAM, "the identity server's answer has no token");
        } else if ((*out = atr_strdup(tok)) == NULL) {
            rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
        } else if (answer != NULL) {
            *answer = json_incref(j);
        }
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    return rc;
}

atr_status atr_cli_conf_client_secret(char *out, size_t cap, const struct atr_cli_conf *c,
                                      struct atr_err *err)
{
    out[0] = '\0';
    if (c->secret_file.level != ATR_CLI_UNSET &&
        (c->secret_arg == NULL || c->secret_file.level == ATR_CLI_FLAG))
        return read_secret_file(out, cap, c->secret_file.v, "client secret", err);
    if (c->secret_arg != NULL) {
        snprintf(out, cap, "%s", c->secret_arg);
        return ATR_OK;
    }
    if (c->demo_file.level == ATR_CLI_UNSET)
        return atr_err_set(err, ATR_E_INVALID,
                           "the client secret is needed: give --secret-file FILE (or "
                           "ATREST_CLIENT_SECRET_FILE, or a profile)");
    /* the demo application of `atrest dev` */
    json_t *demo = json_load_file(c->demo_file.v, 0, NULL);
    const char *s = json_string_value(json_object_get(demo, "secret"));
    atr_status rc = ATR_OK;
    if (s == NULL)
        rc = atr_err_set(err, ATR_E_IO, "cannot read the client secret from %s", c->demo_file.v);
    else
        snprintf(out, cap, "%s", s);
    json_decref(demo);
    return rc;
}

/* The level of the client secret; ATR_CLI_UNSET when none. */
static enum atr_cli_level secret_level(const struct atr_cli_conf *c)
{
    if (c->secret_arg != NULL)
        return ATR_CLI_FLAG;
    if (c->secret_file.level != ATR_CLI_UNSET)
        return c->secret_file.level;
    return c->demo_file.level;
}

/* The level of a single token; ATR_CLI_UNSET when none. */
static enum atr_cli_level token_level(const struct atr_cli_conf *c)
{
    if (c->token != NULL)
        return ATR_CLI_FLAG;
    if (c->token_file.level == ATR_CLI_FLAG)
        return ATR_CLI_FLAG;
    if (c->token_env != NULL)
        return ATR_CLI_ENV;
    return c->token_file.level;
}

static atr_status token_from_file(char **out, const char *path, struct atr_err *err)
{
    char *buf = atr_malloc(TOKEN_MAX + 1);
    if (buf == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    atr_status rc = read_secret_file(buf, TOKEN_MAX + 1, path, "token", err);
    if (rc == ATR_OK && (*out = atr_strdup(buf)) == NULL)
        rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
    OPENSSL_cleanse(buf, TOKEN_MAX + 1);
    atr_free(buf);
    return rc;
}

atr_status atr_cli_conf_token(char **out, const struct atr_cli_conf *c, struct atr_http_client *h,
                              const char *tenant, int bulk, struct atr_err *err)
{
    *out = NULL;
    if (tenant == NULL)
        tenant = c->tenant.v;
    if (tenant[0] == '\0')
        return atr_err_set(err, ATR_E_INVALID,
                           "the tenant is required (--tenant, ATREST_TENANT "
                           "or a profile)");
    if (bulk && c->token_dir.level != ATR_CLI_UNSET) {
        if (!atr_cli_id_ok(tenant))
            return atr_err_set(err, ATR_E_INVALID, "'%.80s' is not a tenant id", tenant);
        char path[2 * ATR_CLI_VALUE_MAX];
        snprintf(path, sizeof(path), "%s/%s", c->token_dir.v, tenant);
        return token_from_file(out, path, err);
    }
    enum atr_cli_level tl = bulk ? ATR_CLI_UNSET : token_level(c);
    enum atr_cli_level sl = secret_level(c);
    if (tl != ATR_CLI_UNSET && (sl == ATR_CLI_UNSET || tl <= sl)) {
        if (c->token != NULL || (c->token_file.level == ATR_CLI_FLAG))
            return c->token != NULL ? ((*out = atr_strdup(c->token)) != NULL
                                           ? ATR_OK
                                           : atr_err_set(err, ATR_E_NOMEM, "out of memory"))
                                    : token_from_file(out, c->token_file.v, err);
        if (c->token_env != NULL)
            return (*out = atr_strdup(c->token_env)) != NULL
                       ? ATR_OK
                       : atr_err_set(err, ATR_E_NOMEM, "out of memory");
        return token_from_file(out, c->token_file.v, err);
    }
    if (sl == ATR_CLI_UNSET)
        return atr_err_set(err, ATR_E_INVALID,
                           "no credentials: give --client-id with --secret-file (an application "
                           "of the tenant's directory)%s, or a profile",
                           bulk ? ", --token-dir DIR" : ", --token-file FILE");
    if (c->client_id.v[0] == '\0' || c->idp_url.v[0] == '\0')
        return atr_err_set(err, ATR_E_INVALID,
                           "client credentials need %s%s%s (flags, environment or profile)",
                           c->client_id.v[0] == '\0' ? "--client-id" : "",
                           c->client_id.v[0] == '\0' && c->idp_url.v[0] == '\0' ? " and " : "",
                           c->idp_url.v[0] == '\0' ? "--idp-url (the identity server)" : "");
    char secret[ATR_CLI_SECRET_MAX];
    atr_status rc = atr_cli_conf_client_secret(secret, sizeof(secret), c, err);
    if (rc == ATR_OK)
        rc = atr_cli_token_fetch(out, NULL, h, c->idp_url.v, tenant, c->client_id.v, secret,
                                 c->scope.v, err);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

/* ------------------------------------------------------------ HTTP */

atr_status atr_cli_http_new(struct atr_http_client **out, const char *ca, struct atr_err *err)
{
    struct atr_http_client_opts co;
    memset(&co, 0, sizeof(co));
    co.ca_file = ca;
    co.timeout_ms = 60000;
    co.max_response = ATR_CLI_RESPONSE_MAX;
    return atr_http_client_new(out, &co, err);
}

atr_status atr_cli_send(struct atr_http_client_resp *resp, struct atr_http_client *h,
                        const struct atr_cli_req *rq, struct atr_err *err)
{
    char *auth = NULL;
    struct atr_http_header hdrs[3];
    size_t nh = 0;
    if (rq->bearer != NULL) {
        size_t alen = strlen(rq->bearer) + 8;
        if ((auth = atr_malloc(alen)) == NULL)
            return atr_err_set(err, ATR_E_NOMEM, "out of memory");
        snprintf(auth, alen, "Bearer %s", rq->bearer);
        hdrs[nh++] = (struct atr_http_header){"Authorization", auth};
    }
    if (rq->body != NULL)
        hdrs[nh++] = (struct atr_http_header){"Content-Type",
                                              rq->ctype != NULL ? rq->ctype : "application/json"};
    if (rq->hdr_name != NULL)
        hdrs[nh++] = (struct atr_http_header){rq->hdr_name, rq->hdr_value};
    struct atr_http_client_req r;
    memset(&r, 0, sizeof(r));
    r.method = rq->method;
    r.url = rq->url;
    r.headers = hdrs;
    r.nheaders = nh;
    if (rq->body != NULL)
        r.body = atr_span_of(rq->body, rq->body_len > 0 ? rq->body_len : strlen(rq->body));
    atr_status rc = atr_http_client_send(resp, h, &r, err);
    if (auth != NULL) {
        OPENSSL_cleanse(auth, strlen(auth));
        atr_free(auth);
    }
    return rc;
}

int atr_cli_call(struct atr_http_client_resp *resp, struct atr_http_client *h,
                 const struct atr_cli_req *rq, unsigned want, const char *cmd)
{
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_cli_send(resp, h, rq, &err) != ATR_OK) {
        fprintf(stderr, "atrest %s: %s\n", cmd, atr_err_msg(&err));
        return 0;
    }
    if (resp->status != want) {
        char what[128];
        snprintf(what, sizeof(what), "atrest %s", cmd);
        atr_cli_http_error_print(what, resp);
        return 0;
    }
    return 1;
}

int atr_cli_fail(const char *cmd, atr_status rc, const struct atr_err *err)
{
    if (rc == ATR_E_INVALID)
        return atr_args_usage_error(cmd, "%s", atr_err_msg(err));
    fprintf(stderr, "atrest %s: %s\n", cmd, atr_err_msg(err));
    return ATR_EXIT_FAIL;
}

int atr_cli_url(char *out, size_t cap, const char *base, const char *fmt, ...)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    if (bl >= cap)
        return 0;
    memcpy(out, base, bl);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + bl, cap - bl, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap - bl;
}

int atr_cli_id_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 64 || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ terminal */

int atr_cli_confirm(const char *question)
{
    if (!isatty(STDIN_FILENO))
        return -1;
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    char line[64];
    if (fgets(line, sizeof(line), stdin) == NULL)
        return 0;
    line[strcspn(line, "\r\n")] = '\0';
    return strcmp(line, "y") == 0 || strcmp(line, "Y") == 0 || strcmp(line, "yes") == 0;
}

void atr_cli_progress_init(struct atr_cli_progress *p)
{
    p->tty = isatty(STDERR_FILENO);
    p->shown = 0;
}

void atr_cli_progress_show(struct atr_cli_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (p->tty)
        fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (p->tty)
        p->shown = 1;
    else
        fputc('\n', stderr);
    fflush(stderr);
}

void atr_cli_progress_note(struct atr_cli_progress *p, const char *fmt, ...)
{
    if (p->shown) {
        fputs("\r\033[K", stderr);
        p->shown = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void atr_cli_progress_done(struct atr_cli_progress *p)
{
    if (p->shown)
        fputc('\n', stderr);
    p->shown = 0;
    fflush(stderr);
}

/* ------------------------------------------------------------ bulk files */

void atr_cli_items_free(struct atr_cli_item *items, size_t n)
{
    for (size_t i = 0; items != NULL && i < n; i++) {
        atr_free(items[i].tenant);
        atr_free(items[i].arg);
    }
    atr_free(items);
}

static int item_cmp(const void *a, const void *b)
{
    const struct atr_cli_item *const *x = a, *const *y = b;
    int c = strcmp((*x)->tenant, (*y)->tenant);
    return c != 0 ? c : ((*x)->line > (*y)->line) - ((*x)->line < (*y)->line);
}

/* Fails when a tenant is listed twice (naming both lines). */
static atr_status items_unique(const struct atr_cli_item *items, size_t n, const char *path,
                               struct atr_err *err)
{
    const struct atr_cli_item **v = atr_calloc(n, sizeof(*v));
    if (v == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        v[i] = &items[i];
    qsort(v, n, sizeof(*v), item_cmp);
    atr_status rc = ATR_OK;
    for (size_t i = 1; rc == ATR_OK && i < n; i++) {
        if (strcmp(v[i]->tenant, v[i - 1]->tenant) == 0)
            rc = atr_err_set(err, ATR_E_INVALID, "%s:%u: tenant %s is already on line %u", path,
                             v[i]->line, v[i]->tenant, v[i - 1]->line);
    }
    atr_free(v);
    return rc;
}

atr_status atr_cli_items_read(struct atr_cli_item **out, size_t *n, const char *path, int want_arg,
                              struct atr_err *err)
{
    *out = NULL;
    *n = 0;
    int std = strcmp(path, "-") == 0;
    FILE *f = std ? stdin : fopen(path, "r");
    if (f == NULL)
        return atr_err_set(err, ATR_E_IO, "cannot read %s: %s", path, strerror(errno));
    struct atr_cli_item *items = NULL;
    size_t cap = 0, count = 0;
    unsigned lineno = 0;
    char line[LINE_MAX_B];
    atr_status rc = ATR_OK;
    while (rc == ATR_OK && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = atr_err_set(err, ATR_E_INVALID, "%s:%u: the line is too long", path, lineno);
            break;
        }
        char *save = NULL;
        char *tenant = strtok_r(line, " \t\r\n", &save);
        if (tenant == NULL || tenant[0] == '#')
            continue;
        char *arg = strtok_r(NULL, " \t\r\n", &save);
        char *extra = arg != NULL ? strtok_r(NULL, " \t\r\n", &save) : NULL;
        if (!atr_cli_id_ok(tenant)) {
            rc = atr_err_set(err, ATR_E_INVALID, "%s:%u: '%.80s' is not a tenant id", path, lineno,
                             tenant);
        } else if (want_arg && (arg == NULL || (extra != NULL && extra[0] != '#'))) {
            rc = atr_err_set(err, ATR_E_INVALID, "%s:%u: want \"TENANT KEY_URI\"", path, lineno);
        } else if (count == ITEMS_MAX) {
            rc = atr_err_set(err, ATR_E_INVALID, "%s: more than %d tenants; split the file", path,
                             ITEMS_MAX);
        } else {
            if (count == cap) {
                size_t nc = cap == 0 ? 64 : cap * 2;
                struct atr_cli_item *ni = atr_realloc(items, nc * sizeof(*ni));
                if (ni == NULL) {
                    rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
                    break;
                }
                items = ni;
                cap = nc;
            }
            struct atr_cli_item *it = &items[count];
            it->line = lineno;
            it->tenant = atr_strdup(tenant);
            it->arg = want_arg && arg != NULL ? atr_strdup(arg) : NULL;
            count++;
            if (it->tenant == NULL || (want_arg && it->arg == NULL))
                rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
        }
    }
    if (rc == ATR_OK && ferror(f))
        rc = atr_err_set(err, ATR_E_IO, "reading %s failed", path);
    if (!std)
        fclose(f);
    if (rc == ATR_OK && count == 0)
        rc = atr_err_set(err, ATR_E_INVALID, "%s lists no tenant", path);
    if (rc == ATR_OK)
        rc = items_unique(items, count, path, err);
    if (rc != ATR_OK) {
        atr_cli_items_free(items, count);
        return rc;
    }
    *out = items;
    *n = count;
    return ATR_OK;
}

/* ------------------------------------------------------------ time, JSON */

void atr_cli_time_format(char out[32], long long unix_s)
{
    if (unix_s <= 0) {
        snprintf(out, 32, "-");
        return;
    }
    time_t t = (time_t)unix_s;
    struct tm tmv;
    if (gmtime_r(&t, &tmv) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv) == 0)
        snprintf(out, 32, "%lld", unix_s);
}

int atr_cli_time_parse(long long *out, const char *s)
{
    unsigned long v = 0;
    if (s == NULL || s[0] == '\0')
        return 0;
    if (s[0] == '+') {
        size_t n = strlen(s);
        char num[24];
        if (n < 3 || n - 2 >= sizeof(num))
            return 0;
        memcpy(num, s + 1, n - 2);
        num[n - 2] = '\0';
        unsigned long mult = s[n - 1] == 'd'   ? 86400UL
                             : s[n - 1] == 'h' ? 3600UL
                             : s[n - 1] == 'm' ? 60UL
                             : s[n - 1] == 's' ? 1UL
                                               : 0UL;
        if (mult == 0 || !atr_args_parse_ulong(&v, num, 0, 36500UL * 86400 / mult))
            return 0;
        *out = (long long)time(NULL) + (long long)(v * mult);
        return 1;
    }
    if (atr_args_parse_ulong(&v, s, 1, 1UL << 40)) {
        *out = (long long)v;
        return 1;
    }
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, k = 0, k2 = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &k) != 3 || k != 10)
        return 0;
    if (s[k] == 'T') {
        if (sscanf(s + k, "T%2d:%2d:%2d%n", &h, &mi, &se, &k2) != 3 || k2 != 9 ||
            strcmp(s + k + k2, "Z") != 0)
            return 0;
    } else if (s[k] != '\0') {
        return 0;
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || h < 0 ||
        mi < 0 || se < 0)
        return 0;
    struct tm tmv;
    memset(&tmv, 0, sizeof(tmv));
    tmv.tm_year = y - 1900;
    tmv.tm_mon = mo - 1;
    tmv.tm_mday = d;
    tmv.tm_hour = h;
    tmv.tm_min = mi;
    tmv.tm_sec = se;
    time_t t = timegm(&tmv);
    if (t <= 0)
        return 0;
    *out = (long long)t;
    return 1;
}

void atr_cli_json_print(const json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    printf("%s\n", text != NULL ? text : "null");
    free(text);
}
