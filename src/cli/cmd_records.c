/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest records ingest|query and atrest encryption status: clients of the
 * data service's REST API (docs/service.md).
 *
 * Where to call and as whom, first match wins:
 *   --url, --ca, --tenant            flags
 *   ATREST_URL, ATREST_CA, ATREST_TENANT   environment
 *   --profile FILE (default DIR/profile of `atrest dev`, .dev/profile)
 * The bearer token: --token, ATREST_TOKEN, or a client-credentials token
 * fetched from the identity server with the demo application of the
 * profile (ATREST_IDP_URL, ATREST_CLIENT_ID and the secret in
 * ATREST_DEMO_FILE).
 *
 * Exit codes: 0 ok, 1 failed (the server's error is printed), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/rest.h"

#define BODY_MAX      ((size_t)8 << 20)
#define TOKEN_MAX     16384
#define PROFILE_VALUE 1024

struct rec_opts {
    const char *cmd;
    char url[PROFILE_VALUE];
    char ca[PROFILE_VALUE];
    char tenant[PROFILE_VALUE];
    char idp_url[PROFILE_VALUE];
    char client_id[PROFILE_VALUE];
    char demo_file[PROFILE_VALUE];
    const char *token;
    const char *profile;
    const char *file;
    const char *from, *to, *user, *app, *action, *limit;
    int atomic;
    int all;
    int json;
};

static void records_usage(FILE *out)
{
    fprintf(out,
            "usage: atrest records ingest [--file FILE|-] [--atomic] [common options]\n"
            "       atrest records query [--from T] [--to T] [--user U] [--app A] [--action X]\n"
            "                            [--limit N] [--all] [common options]\n"
            "       atrest encryption status [common options]\n"
            "\n"
            "ingest posts NDJSON records (one JSON object per line: time, user, app, action,\n"
            "ip, free fields) from FILE or standard input and prints the report; query prints\n"
            "NDJSON records (--all follows the continuation cursor to the end); status prints\n"
            "the tenant's data encryption settings.\n"
            "\n"
            "common options:\n"
            "  --url URL        the service (or ATREST_URL)\n"
            "  --ca FILE        CA certificate to trust (or ATREST_CA)\n"
            "  --tenant T       the tenant (or ATREST_TENANT)\n"
            "  --token TOKEN    bearer token (or ATREST_TOKEN); otherwise one is fetched for\n"
            "                   the demo application of the profile\n"
            "  --profile FILE   settings written by `atrest dev` (default .dev/profile)\n"
            "  --json           machine-readable output\n"
            "exit codes: 0 ok, 1 failed, 2 usage\n");
}

/* Sets @p dst from the environment variable @p env when it is still empty. */
static void from_env(char *dst, const char *env)
{
    const char *v = getenv(env);
    if (dst[0] == '\0' && v != NULL)
        snprintf(dst, PROFILE_VALUE, "%s", v);
}

/* Reads KEY=VALUE lines of the profile into the fields still empty. */
static void from_profile(struct rec_opts *o)
{
    const char *path = o->profile != NULL ? o->profile : ".dev/profile";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (o->profile != NULL)
            fprintf(stderr, "atrest: cannot read the profile %s: %s\n", path, strerror(errno));
        return;
    }
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"ATREST_URL", offsetof(struct rec_opts, url)},
        {"ATREST_CA", offsetof(struct rec_opts, ca)},
        {"ATREST_TENANT", offsetof(struct rec_opts, tenant)},
        {"ATREST_IDP_URL", offsetof(struct rec_opts, idp_url)},
        {"ATREST_CLIENT_ID", offsetof(struct rec_opts, client_id)},
        {"ATREST_DEMO_FILE", offsetof(struct rec_opts, demo_file)},
    };
    char line[2 * PROFILE_VALUE];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (line[0] == '#' || eq == NULL)
            continue;
        *eq = '\0';
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            char *dst = (char *)o + keys[i].off;
            if (strcmp(line, keys[i].key) == 0 && dst[0] == '\0')
                snprintf(dst, PROFILE_VALUE, "%s", eq + 1);
        }
    }
    fclose(f);
}

/* A token for the service: given, or fetched for the profile's demo application. */
static char *token_get(const struct rec_opts *o)
{
    const char *t = o->token != NULL ? o->token : getenv("ATREST_TOKEN");
    if (t != NULL && t[0] != '\0')
        return atr_strdup(t);
    if (o->idp_url[0] == '\0' || o->client_id[0] == '\0' || o->demo_file[0] == '\0') {
        fprintf(stderr, "atrest: give --token or ATREST_TOKEN (or a profile of `atrest dev`)\n");
        return NULL;
    }
    json_t *demo = json_load_file(o->demo_file, 0, NULL);
    const char *secret = json_string_value(json_object_get(demo, "secret"));
    if (secret == NULL) {
        fprintf(stderr, "atrest: cannot read the client secret from %s\n", o->demo_file);
        json_decref(demo);
        return NULL;
    }
    char form[2048], path[PROFILE_VALUE + 32];
    snprintf(form, sizeof(form),
             "grant_type=client_credentials&client_id=%s&client_secret=%s&scope="
             "api%%3A%%2F%%2Fatrest%%2F.default",
             o->client_id, secret);
    json_decref(demo);
    snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", o->tenant);
    struct atr_cli_rest r = {o->idp_url, o->ca[0] != '\0' ? o->ca : NULL, NULL, NULL, NULL};
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    char *out = NULL;
    if (atr_cli_rest_call(&resp, &r, "POST", path, form, "application/x-www-form-urlencoded",
                          200)) {
        json_t *j = json_loads(atr_buf_cstr(&resp.body), 0, NULL);
        const char *tok = json_string_value(json_object_get(j, "access_token"));
        if (tok != NULL)
            out = atr_strdup(tok);
        json_decref(j);
    }
    OPENSSL_cleanse(form, sizeof(form));
    atr_http_client_resp_cleanup(&resp);
    return out;
}

static int parse(struct rec_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"ca", required_argument, NULL, 'C'},
        {"tenant", required_argument, NULL, 't'},
        {"token", required_argument, NULL, 'T'},
        {"profile", required_argument, NULL, 'P'},
        {"file", required_argument, NULL, 'F'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 'o'},
        {"user", required_argument, NULL, 'U'},
        {"app", required_argument, NULL, 'a'},
        {"action", required_argument, NULL, 'x'},
        {"limit", required_argument, NULL, 'l'},
        {"atomic", no_argument, NULL, 'A'},
        {"all", no_argument, NULL, 'L'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            snprintf(o->url, sizeof(o->url), "%s", optarg);
            break;
        case 'C':
            snprintf(o->ca, sizeof(o->ca), "%s", optarg);
            break;
        case 't':
            snprintf(o->tenant, sizeof(o->tenant), "%s", optarg);
            break;
        case 'T':
            o->token = optarg;
            break;
        case 'P':
            o->profile = optarg;
            break;
        case 'F':
            o->file = optarg;
            break;
        case 'f':
            o->from = optarg;
            break;
        case 'o':
            o->to = optarg;
            break;
        case 'U':
            o->user = optarg;
            break;
        case 'a':
            o->app = optarg;
            break;
        case 'x':
            o->action = optarg;
            break;
        case 'l':
            o->limit = optarg;
            break;
        case 'A':
            o->atomic = 1;
            break;
        case 'L':
            o->all = 1;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            records_usage(stdout);
            return -1;
        default:
            return atr_args_getopt_error(o->cmd, ch, argv);
        }
    }
    if (optind < argc)
        return atr_args_usage_error(o->cmd, "unexpected argument '%s'", argv[optind]);
    from_env(o->url, "ATREST_URL");
    from_env(o->ca, "ATREST_CA");
    from_env(o->tenant, "ATREST_TENANT");
    from_profile(o);
    if (o->url[0] == '\0' || o->tenant[0] == '\0')
        return atr_args_usage_error(o->cmd, "the service URL and the tenant are required "
                                            "(--url, --tenant, environment or profile)");
    return ATR_EXIT_OK;
}

/* Appends "&name=value" (value percent-encoded) to @p q. */
static int query_add(struct atr_buf *q, const char *name, const char *value)
{
    if (value == NULL)
        return 1;
    if (atr_buf_printf(q, "%s%s=", q->len == 0 ? "?" : "&", name) != ATR_OK)
        return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL;
        if (plain ? atr_buf_append(q, p, 1) != ATR_OK : atr_buf_printf(q, "%%%02X", *p) != ATR_OK)
            return 0;
    }
    return 1;
}

static int read_all(struct atr_buf *out, const char *file)
{
    FILE *f = file == NULL || strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (f == NULL) {
        fprintf(stderr, "atrest: cannot read %s: %s\n", file, strerror(errno));
        return 0;
    }
    uint8_t chunk[65536];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = atr_buf_append(out, chunk, n) == ATR_OK;
    if (f != stdin)
        fclose(f);
    if (!ok)
        fprintf(stderr, "atrest: the input is larger than %zu bytes; split it\n", BODY_MAX);
    return ok;
}

static int do_ingest(const struct rec_opts *o, const struct atr_cli_rest *r)
{
    struct atr_buf body;
    atr_buf_init(&body, BODY_MAX);
    if (!read_all(&body, o->file)) {
        atr_buf_cleanup(&body);
        return ATR_EXIT_FAIL;
    }
    char path[PROFILE_VALUE + 64];
    snprintf(path, sizeof(path), "/v1/tenants/%s/records%s", o->tenant,
             o->atomic ? "?atomic=true" : "");
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    const char *text = atr_buf_cstr(&body);
    int ok = text != NULL &&
             atr_cli_rest_call(&resp, r, "POST", path, text, "application/x-ndjson", 200);
    if (ok) {
        json_t *j = json_loads(atr_buf_cstr(&resp.body), 0, NULL);
        if (o->json || j == NULL) {
            printf("%s\n", atr_buf_cstr(&resp.body));
        } else {
            printf("accepted %lld, rejected %lld, blocks %lld\n",
                   (long long)json_integer_value(json_object_get(j, "accepted")),
                   (long long)json_integer_value(json_object_get(j, "rejected")),
                   (long long)json_integer_value(json_object_get(j, "blocks")));
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(j, "errors"), i, e) printf(
                "  line %lld: %s\n", (long long)json_integer_value(json_object_get(e, "line")),
                json_string_value(json_object_get(e, "message")));
        }
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    atr_buf_cleanup(&body);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

static int do_query(const struct rec_opts *o, const struct atr_cli_rest *r)
{
    char *cursor = NULL;
    int rc = ATR_EXIT_OK;
    long pages = 0;
    do {
        struct atr_buf q;
        atr_buf_init(&q, 8192);
        int ok = query_add(&q, "from", o->from) && query_add(&q, "to", o->to) &&
                 query_add(&q, "user", o->user) && query_add(&q, "app", o->app) &&
                 query_add(&q, "action", o->action) && query_add(&q, "limit", o->limit) &&
                 query_add(&q, "cursor", cursor);
        char path[PROFILE_VALUE + 64];
        snprintf(path, sizeof(path), "/v1/tenants/%s/records", o->tenant);
        struct atr_buf full;
        atr_buf_init(&full, 16384);
        ok = ok && atr_buf_printf(&full, "%s%s", path, q.len > 0 ? atr_buf_cstr(&q) : "") == ATR_OK;
        struct atr_http_client_resp resp;
        atr_http_client_resp_init(&resp);
        ok = ok && atr_cli_rest_call(&resp, r, "GET", atr_buf_cstr(&full), NULL, NULL, 200);
        atr_free(cursor);
        cursor = NULL;
        if (ok) {
            fwrite(resp.body.ptr, 1, resp.body.len, stdout);
            const char *next = atr_http_client_resp_header(&resp, "X-Next-Cursor");
            if (next != NULL && o->all)
                cursor = atr_strdup(next);
            else if (next != NULL && !o->all)
                fprintf(stderr, "atrest: more records follow (--all fetches them)\n");
            pages++;
        } else {
            rc = ATR_EXIT_FAIL;
        }
        atr_http_client_resp_cleanup(&resp);
        atr_buf_cleanup(&q);
        atr_buf_cleanup(&full);
        if (pages > 0 && pages % 10 == 0 && cursor != NULL)
            fprintf(stderr, "atrest: %ld pages so far\n", pages);
    } while (rc == ATR_EXIT_OK && cursor != NULL);
    atr_free(cursor);
    fflush(stdout);
    return rc;
}

static int do_status(const struct rec_opts *o, const struct atr_cli_rest *r)
{
    char path[PROFILE_VALUE + 64];
    snprintf(path, sizeof(path), "/v1/tenants/%s/encryption", o->tenant);
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    int ok = atr_cli_rest_call(&resp, r, "GET", path, NULL, NULL, 200);
    if (ok) {
        json_t *j = json_loads(atr_buf_cstr(&resp.body), 0, NULL);
        if (o->json || j == NULL) {
            printf("%s\n", atr_buf_cstr(&resp.body));
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(j, k, v)
            {
                if (json_is_string(v))
                    printf("%-12s %s\n", k, json_string_value(v));
            }
        }
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

static int run(const char *group, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        records_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    const char *verb = argv[1];
    int records = strcmp(group, "records") == 0;
    if ((records && strcmp(verb, "ingest") != 0 && strcmp(verb, "query") != 0) ||
        (!records && strcmp(verb, "status") != 0))
        return atr_args_usage_error(group, "unknown command '%s'", verb);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%s %s", group, verb);
    struct rec_opts o;
    memset(&o, 0, sizeof(o));
    o.cmd = cmd;
    int rc = parse(&o, argc - 1, argv + 1);
    if (rc != ATR_EXIT_OK)
        return rc < 0 ? ATR_EXIT_OK : rc;
    char *token = token_get(&o);
    if (token == NULL)
        return ATR_EXIT_FAIL;
    struct atr_cli_rest r = {o.url, o.ca[0] != '\0' ? o.ca : NULL, token, NULL, NULL};
    if (strcmp(verb, "ingest") == 0)
        rc = do_ingest(&o, &r);
    else if (strcmp(verb, "query") == 0)
        rc = do_query(&o, &r);
    else
        rc = do_status(&o, &r);
    OPENSSL_cleanse(token, strlen(token));
    atr_free(token);
    return rc;
}

int atr_cmd_records(int argc, char **argv)
{
    return run("records", argc, argv);
}

int atr_cmd_encryption(int argc, char **argv)
{
    return run("encryption", argc, argv);
}
