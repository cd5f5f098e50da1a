/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest records ingest|query: clients of the data service's records API
 * (docs/service.md). Settings and tokens as every client command
 * (cli/client.h): flags, then ATREST_* variables, then the profile.
 *
 * Exit codes: 0 ok, 1 failed (the server's error is printed), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/rest.h"

#define BODY_MAX ((size_t)8 << 20)

struct rec_opts {
    const char *verb;
    const char *file;
    const char *from, *to, *user, *app, *action, *limit;
    int atomic;
    int all;
};

static void records_help(FILE *out, void *ctx)
{
    const struct rec_opts *o = ctx;
    int all = o == NULL || o->verb == NULL;
    fprintf(out, "usage:\n");
    if (all || strcmp(o->verb, "ingest") == 0)
        fprintf(out, "  atrest records ingest [--file FILE|-] [--atomic] [options]\n");
    if (all || strcmp(o->verb, "query") == 0)
        fprintf(out,
                "  atrest records query [--from T] [--to T] [--user U] [--app A] [--action X]\n"
                "                       [--limit N] [--all] [options]\n");
    if (all || strcmp(o->verb, "ingest") == 0)
        fprintf(out, "\ningest posts NDJSON records (one JSON object per line: time, user, app,\n"
                     "action, ip, free fields) from FILE or standard input (at most 8 MiB a call)\n"
                     "and prints the report: accepted, rejected and why. --atomic stores nothing\n"
                     "when a line is bad. Needs the role Records.Write.\n");
    if (all || strcmp(o->verb, "query") == 0)
        fprintf(out,
                "\nquery prints the tenant's records as NDJSON: --from (inclusive) and --to\n"
                "(exclusive) are RFC 3339 or Unix milliseconds; --user, --app, --action match\n"
                "exactly; --limit 1..10000 records per page (default 1000); --all follows the\n"
                "continuation cursor to the end (a line on stderr every 10 pages). Needs\n"
                "Records.Read.\n");
    atr_cli_conf_help(out, ATR_CLI_SERVICE, ATR_CLI_HELP_CONN | ATR_CLI_HELP_AUTH);
}

static int records_opt(void *ctx, int ch, const char *arg)
{
    struct rec_opts *o = ctx;
    int ingest = strcmp(o->verb, "ingest") == 0;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "records %s", o->verb);
    /* each verb takes only its own options */
    if ((ingest && strchr("FA", ch) == NULL) || (!ingest && strchr("foUaxlL", ch) == NULL))
        return atr_args_usage_error(cmd, "this option does not apply to '%s'", o->verb);
    switch (ch) {
    case 'F':
        o->file = arg;
        break;
    case 'f':
        o->from = arg;
        break;
    case 'o':
        o->to = arg;
        break;
    case 'U':
        o->user = arg;
        break;
    case 'a':
        o->app = arg;
        break;
    case 'x':
        o->action = arg;
        break;
    case 'l':
        o->limit = arg;
        break;
    case 'A':
        o->atomic = 1;
        break;
    case 'L':
        o->all = 1;
        break;
    default:
        return atr_args_usage_error(cmd, "unknown option");
    }
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
        fprintf(stderr, "atrest records ingest: cannot read %s: %s\n", file, strerror(errno));
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
        fprintf(stderr, "atrest records ingest: the input is larger than %zu bytes; split it\n",
                BODY_MAX);
    return ok;
}

static int do_ingest(const struct atr_cli_conf *c, const struct rec_opts *o,
                     struct atr_http_client *h, const char *token)
{
    struct atr_buf body;
    atr_buf_init(&body, BODY_MAX);
    if (!read_all(&body, o->file) || atr_buf_cstr(&body) == NULL) {
        atr_buf_cleanup(&body);
        return ATR_EXIT_FAIL;
    }
    char url[2 * ATR_CLI_VALUE_MAX];
    atr_cli_url(url, sizeof(url), c->url.v, "/v1/tenants/%s/records%s", c->tenant.v,
                o->atomic ? "?atomic=true" : "");
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    struct atr_cli_req rq = {.method = "POST",
                             .url = url,
                             .bearer = token,
                             .body = atr_buf_cstr(&body),
                             .body_len = body.len,
                             .ctype = "application/x-ndjson"};
    int ok = body.len > 0 && atr_cli_call(&resp, h, &rq, 200, c->cmd);
    if (body.len == 0)
        fprintf(stderr, "atrest records ingest: the input is empty\n");
    if (ok) {
        json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
        if (c->json || j == NULL) {
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
            if (json_is_true(json_object_get(j, "readableAfterRestore")))
                printf("the tenant is locked: these records are readable once its key is "
                       "restored\n");
        }
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    atr_buf_cleanup(&body);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

static int do_query(const struct atr_cli_conf *c, const struct rec_opts *o,
                    struct atr_http_client *h, const char *token)
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
        char url[ATR_CLI_VALUE_MAX + 9000];
        ok = ok && atr_cli_url(url, sizeof(url), c->url.v, "/v1/tenants/%s/records%s", c->tenant.v,
                               q.len > 0 ? atr_buf_cstr(&q) : "");
        struct atr_http_client_resp resp;
        atr_http_client_resp_init(&resp);
        struct atr_cli_req rq = {.method = "GET", .url = url, .bearer = token};
        ok = ok && atr_cli_call(&resp, h, &rq, 200, c->cmd);
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
        if (pages > 0 && pages % 10 == 0 && cursor != NULL)
            fprintf(stderr, "atrest: %ld pages so far\n", pages);
    } while (rc == ATR_EXIT_OK && cursor != NULL);
    atr_free(cursor);
    fflush(stdout);
    return rc;
}

int atr_cmd_records(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        records_help(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "ingest") != 0 && strcmp(verb, "query") != 0)
        return atr_args_usage_error("records", "unknown command '%s'", verb);
    static const struct option longopts[] = {
        ATR_CLI_CONN_LONGOPTS,
        ATR_CLI_AUTH_LONGOPTS,
        {"file", required_argument, NULL, 'F'},
        {"atomic", no_argument, NULL, 'A'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 'o'},
        {"user", required_argument, NULL, 'U'},
        {"app", required_argument, NULL, 'a'},
        {"action", required_argument, NULL, 'x'},
        {"limit", required_argument, NULL, 'l'},
        {"all", no_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "records %s", verb);
    struct rec_opts o;
    memset(&o, 0, sizeof(o));
    o.verb = verb;
    struct atr_cli_conf c;
    atr_cli_conf_init(&c, cmd, ATR_CLI_SERVICE);
    struct atr_cli_parse p = {longopts, records_opt, &o, records_help, NULL, 0, 0};
    int rc = atr_cli_parse_args(&c, &p, argc - 1, argv + 1);
    if (rc != ATR_EXIT_OK)
        return rc < 0 ? ATR_EXIT_OK : rc;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_resolve(&c, &err);
    if (st != ATR_OK)
        return atr_cli_fail(cmd, st, &err);
    if (c.url.v[0] == '\0' || c.tenant.v[0] == '\0')
        return atr_args_usage_error(cmd, "the service URL and the tenant are required "
                                         "(--url, --tenant, environment or profile)");
    if (!atr_cli_id_ok(c.tenant.v))
        return atr_args_usage_error(cmd, "'%s' is not a tenant id", c.tenant.v);
    struct atr_http_client *h = NULL;
    char *token = NULL;
    if ((st = atr_cli_http_new(&h, atr_cli_conf_ca(&c), &err)) != ATR_OK ||
        (st = atr_cli_conf_token(&token, &c, h, NULL, 0, &err)) != ATR_OK) {
        atr_http_client_free(h);
        return atr_cli_fail(cmd, st, &err);
    }
    rc = strcmp(verb, "ingest") == 0 ? do_ingest(&c, &o, h, token) : do_query(&c, &o, h, token);
    atr_cli_token_free(token);
    atr_http_client_free(h);
    return rc;
}
