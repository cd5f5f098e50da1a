/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest encryption status|enable|disable|audit and atrest monitor run:
 * clients of the data service's customer-key API (docs/service.md).
 *
 *   encryption status [--from FILE]          GET /v1/tenants/{t}/encryption
 *   encryption enable --key-uri URI | --from FILE
 *                                            PUT /v1/tenants/{t}/encryption
 *   encryption disable [--yes]               DELETE /v1/tenants/{t}/encryption
 *   encryption audit [--limit N] [--before ID]  GET /v1/tenants/{t}/audit
 *   monitor run [--advance SECONDS]          POST /admin/monitor/run (bootstrap secret)
 *
 * Bulk (--from FILE, lines "TENANT KEY_URI" or "TENANT"): a token per
 * tenant, from DIR/TENANT with --token-dir, else by client credentials
 * of an application that holds DataEncryption.Admin in every tenant's
 * directory (a multi-tenant application with a service principal in each);
 * progress on stderr, a summary on stdout, exit 1 when any tenant failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/rest.h"

struct enc_opts {
    const char *verb;
    const char *key_uri;
    const char *from;
    const char *limit;
    const char *before;
    long advance;
};

static void encryption_help(FILE *out, void *ctx)
{
    const struct enc_opts *o = ctx;
    const char *v = o != NULL ? o->verb : NULL;
    int all = v == NULL;
    fprintf(out, "usage:\n");
    if (all || strcmp(v, "status") == 0)
        fprintf(out, "  atrest encryption status [--from FILE] [options]\n");
    if (all || strcmp(v, "enable") == 0)
        fprintf(out, "  atrest encryption enable (--key-uri URI | --from FILE) [options]\n");
    if (all || strcmp(v, "disable") == 0)
        fprintf(out, "  atrest encryption disable [--yes] [options]\n");
    if (all || strcmp(v, "audit") == 0)
        fprintf(out, "  atrest encryption audit [--limit N] [--before ID] [options]\n");
    if (all)
        fprintf(out, "\nA tenant's data encryption: service-managed keys, and on request a\n"
                     "customer key in the tenant's Azure Key Vault (bring your own key). Every\n"
                     "command needs the role DataEncryption.Admin.\n");
    if (all || strcmp(v, "status") == 0)
        fprintf(out,
                "\nstatus prints the mode (managed or customer), the state (customer, degraded,\n"
                "locked), the key version in use, the last roll and check, and the reason and\n"
                "its fix when the key cannot be used. --from FILE reads many tenants, one per\n"
                "line (anything after the tenant is ignored, so an enable file works).\n");
    if (all || strcmp(v, "enable") == 0)
        fprintf(out,
                "\nenable validates the key URI (https://{vault}.vault.azure.net/keys/{name}; a\n"
                "version in it is ignored: the latest version is used and later versions are\n"
                "rolled to automatically) and prints each check: passed, failed with its fix,\n"
                "or not run. When every check passes the tenant's key is wrapped with the\n"
                "customer key; records are not re-encrypted. A refused enable changes nothing\n"
                "and exits 1. --from FILE enables many tenants, lines \"TENANT KEY_URI\"\n"
                "('#' comments): progress on stderr, a summary on stdout, exit 1 when any\n"
                "tenant was refused or failed. Each tenant needs its own token: --token-dir,\n"
                "or client credentials of an application holding DataEncryption.Admin in\n"
                "every tenant's directory (a multi-tenant application with a service principal\n"
                "in each), a token fetched per tenant.\n");
    if (all || strcmp(v, "disable") == 0)
        fprintf(out,
                "\ndisable removes the customer-key layer: the data stays encrypted under\n"
                "service-managed keys and the vault is no longer needed. Asks for\n"
                "confirmation on a terminal; --yes skips the question (required when standard\n"
                "input is not a terminal). Refused while the tenant is locked.\n");
    if (all || strcmp(v, "audit") == 0)
        fprintf(out, "\naudit prints the tenant's key and settings events, newest first\n"
                     "(--limit, default 50; --before ID pages back).\n");
    atr_cli_conf_help(
        out, ATR_CLI_SERVICE,
        ATR_CLI_HELP_CONN | ATR_CLI_HELP_AUTH |
            (all || strcmp(v, "enable") == 0 || strcmp(v, "status") == 0 ? ATR_CLI_HELP_BULK : 0u));
}

static int encryption_opt(void *ctx, int ch, const char *arg)
{
    struct enc_opts *o = ctx;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "encryption %s", o->verb);
    static const struct {
        int ch;
        const char *verbs;
    } allowed[] = {{'k', "enable"}, {'F', "enable status"}, {'l', "audit"}, {'b', "audit"}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(allowed); i++) {
        if (allowed[i].ch == ch && strstr(allowed[i].verbs, o->verb) == NULL)
            return atr_args_usage_error(cmd, "this option does not apply to '%s'", o->verb);
    }
    unsigned long v;
    switch (ch) {
    case 'k':
        o->key_uri = arg;
        return ATR_EXIT_OK;
    case 'F':
        o->from = arg;
        return ATR_EXIT_OK;
    case 'l':
        if (!atr_args_parse_ulong(&v, arg, 1, 1000))
            return atr_args_usage_error(cmd, "--limit must be 1..1000, not '%s'", arg);
        o->limit = arg;
        return ATR_EXIT_OK;
    case 'b':
        if (!atr_args_parse_ulong(&v, arg, 1, (unsigned long)-1))
            return atr_args_usage_error(cmd, "--before must be an event id, not '%s'", arg);
        o->before = arg;
        return ATR_EXIT_OK;
    default:
        return atr_args_usage_error(cmd, "unknown option");
    }
}

/* ------------------------------------------------------------ output */

/* The validation checks of an answer: {"validation":{"checks"}} or {"error":{"checks"}}. */
static json_t *checks_of(json_t *answer)
{
    json_t *c = json_object_get(json_object_get(answer, "validation"), "checks");
    if (c == NULL)
        c = json_object_get(json_object_get(answer, "error"), "checks");
    return json_is_array(c) ? c : NULL;
}

static void print_checks(json_t *checks)
{
    size_t i;
    json_t *ck;
    json_array_foreach(checks, i, ck)
    {
        const char *outcome = json_string_value(json_object_get(ck, "outcome"));
        const char *msg = json_string_value(json_object_get(ck, "message"));
        int failed = outcome != NULL && strcmp(outcome, "failed") == 0;
        printf("  %-8s %-17s %s\n",
               failed            ? "FAILED"
               : outcome != NULL ? outcome
                                 : "?",
               json_string_value(json_object_get(ck, "name")), msg != NULL ? msg : "");
        if (failed) {
            const char *cause = json_string_value(json_object_get(ck, "cause"));
            const char *fix = json_string_value(json_object_get(ck, "fix"));
            if (cause != NULL && cause[0] != '\0')
                printf("  %-8s %-17s cause: %s\n", "", "", cause);
            if (fix != NULL && fix[0] != '\0')
                printf("  %-8s %-17s fix: %s\n", "", "", fix);
        }
    }
}

/* Prints one status answer as "name value" lines. */
static void print_status(const char *tenant, json_t *j)
{
    printf("%-20s %s\n", "tenant", tenant);
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (json_is_string(v))
            printf("%-20s %s\n", k, json_string_value(v));
        else if (json_is_integer(v))
            printf("%-20s %lld\n", k, (long long)json_integer_value(v));
        else if (json_is_object(v) && strcmp(k, "reserve") == 0)
            printf("%-20s %lld of %lld pre-wrapped data keys available\n", k,
                   (long long)json_integer_value(json_object_get(v, "available")),
                   (long long)json_integer_value(json_object_get(v, "size")));
    }
    const char *state = json_string_value(json_object_get(j, "state"));
    if (state != NULL && strcmp(state, "locked") == 0)
        printf("the tenant is locked: reads are refused until the service can use the key "
               "again (see reasonText); the monitor restores it by itself\n");
    else if (state != NULL && strcmp(state, "degraded") == 0)
        printf("the key could not be used at the last check: the tenant works from its cached "
               "key and locks at lockAt unless access is restored\n");
}

/* ------------------------------------------------------------ single tenant */

struct session {
    struct atr_cli_conf *c;
    struct atr_http_client *h;
};

static void tenant_url(char *out, size_t cap, const struct atr_cli_conf *c, const char *tenant,
                       const char *tail)
{
    atr_cli_url(out, cap, c->url.v, "/v1/tenants/%s%s", tenant, tail);
}

/* One call for @p tenant with @p token; the answer in @p resp. @return 1 when sent. */
static int tenant_call(struct atr_http_client_resp *resp, const struct session *s,
                       const char *tenant, const char *token, const char *method, const char *tail,
                       const char *body, struct atr_err *err)
{
    char url[2 * ATR_CLI_VALUE_MAX];
    tenant_url(url, sizeof(url), s->c, tenant, tail);
    struct atr_cli_req rq = {.method = method, .url = url, .bearer = token, .body = body};
    return atr_cli_send(resp, s->h, &rq, err) == ATR_OK;
}

static int do_status(const struct session *s, const char *token)
{
    struct atr_cli_conf *c = s->c;
    char url[2 * ATR_CLI_VALUE_MAX];
    tenant_url(url, sizeof(url), c, c->tenant.v, "/encryption");
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    struct atr_cli_req rq = {.method = "GET", .url = url, .bearer = token};
    int ok = atr_cli_call(&resp, s->h, &rq, 200, c->cmd);
    if (ok) {
        json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
        if (c->json || j == NULL)
            printf("%s\n", atr_buf_cstr(&resp.body));
        else
            print_status(c->tenant.v, j);
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

static char *enable_body(const char *uri)
{
    json_t *b = json_pack("{s:s}", "keyUri", uri);
    char *text = b != NULL ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    return text;
}

static int do_enable(const struct session *s, const struct enc_opts *o, const char *token)
{
    struct atr_cli_conf *c = s->c;
    char *body = enable_body(o->key_uri);
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    struct atr_err err;
    atr_err_clear(&err);
    int sent =
        body != NULL && tenant_call(&resp, s, c->tenant.v, token, "PUT", "/encryption", body, &err);
    free(body);
    if (!sent) {
        atr_http_client_resp_cleanup(&resp);
        fprintf(stderr, "atrest %s: %s\n", c->cmd, atr_err_msg(&err));
        return ATR_EXIT_FAIL;
    }
    json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
    json_t *checks = checks_of(j);
    if (c->json) {
        printf("%s\n", atr_buf_cstr(&resp.body));
    } else if (checks != NULL) {
        printf("Validation of %s for tenant %s:\n", o->key_uri, c->tenant.v);
        print_checks(checks);
    }
    int rc = ATR_EXIT_OK;
    if (resp.status == 200) {
        if (!c->json)
            printf("Enabled: the tenant's data is under the customer key %s (latest version; "
                   "new versions are rolled to automatically).\n",
                   json_string_value(json_object_get(j, "keyVersion")));
    } else {
        char what[128];
        snprintf(what, sizeof(what), "atrest %s: %s", c->cmd,
                 checks != NULL ? "refused" : "failed");
        atr_cli_http_error_print(what, &resp);
        rc = ATR_EXIT_FAIL;
    }
    json_decref(j);
    atr_http_client_resp_cleanup(&resp);
    return rc;
}

static int do_disable(const struct session *s, const char *token)
{
    struct atr_cli_conf *c = s->c;
    if (!c->yes) {
        char q[ATR_CLI_VALUE_MAX + 256];
        snprintf(q, sizeof(q),
                 "Disable the customer key of tenant %s? The customer-key layer is removed; the "
                 "data stays encrypted under service-managed keys.",
                 c->tenant.v);
        int a = atr_cli_confirm(q);
        if (a < 0)
            return atr_args_usage_error(c->cmd, "standard input is not a terminal: pass --yes "
                                                "to confirm");
        if (a == 0) {
            fprintf(stderr, "atrest %s: nothing changed\n", c->cmd);
            return ATR_EXIT_FAIL;
        }
    }
    char url[2 * ATR_CLI_VALUE_MAX];
    tenant_url(url, sizeof(url), c, c->tenant.v, "/encryption");
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    struct atr_cli_req rq = {.method = "DELETE", .url = url, .bearer = token};
    int ok = atr_cli_call(&resp, s->h, &rq, 200, c->cmd);
    if (ok && c->json)
        printf("%s\n", atr_buf_cstr(&resp.body));
    else if (ok)
        printf("Disabled: the customer-key layer of tenant %s was removed. Its data stays "
               "encrypted under service-managed keys; the vault is no longer needed for it.\n",
               c->tenant.v);
    atr_http_client_resp_cleanup(&resp);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

static int do_audit(const struct session *s, const struct enc_opts *o, const char *token)
{
    struct atr_cli_conf *c = s->c;
    char tail[128];
    snprintf(tail, sizeof(tail), "/audit?limit=%s%s%s", o->limit != NULL ? o->limit : "50",
             o->before != NULL ? "&before=" : "", o->before != NULL ? o->before : "");
    char url[2 * ATR_CLI_VALUE_MAX];
    tenant_url(url, sizeof(url), c, c->tenant.v, tail);
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    struct atr_cli_req rq = {.method = "GET", .url = url, .bearer = token};
    int ok = atr_cli_call(&resp, s->h, &rq, 200, c->cmd);
    if (ok) {
        json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
        if (c->json || j == NULL) {
            printf("%s\n", atr_buf_cstr(&resp.body));
        } else {
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(j, "value"), i, e)
            {
                char *detail = json_dumps(json_object_get(e, "detail"), JSON_COMPACT);
                printf("%-6lld %-24s %-28s %s %s\n",
                       (long long)json_integer_value(json_object_get(e, "id")),
                       json_string_value(json_object_get(e, "time")),
                       json_string_value(json_object_get(e, "action")),
                       json_string_value(json_object_get(e, "actor")),
                       detail != NULL ? detail : "");
                free(detail);
            }
            json_t *nb = json_object_get(j, "nextBefore");
            if (json_is_integer(nb))
                fprintf(stderr, "atrest: older events: --before %lld\n",
                        (long long)json_integer_value(nb));
        }
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

/* ------------------------------------------------------------ bulk */

enum outcome { DONE, REFUSED, FAILED };

/* Runs enable (@p enable) or status over the tenants of --from. */
static int do_bulk(const struct session *s, const struct enc_opts *o, int enable)
{
    struct atr_cli_conf *c = s->c;
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_cli_item *items = NULL;
    size_t n = 0;
    atr_status st = atr_cli_items_read(&items, &n, o->from, enable, &err);
    if (st != ATR_OK)
        return atr_cli_fail(c->cmd, st, &err);
    json_t *results = json_array();
    size_t count[3] = {0, 0, 0};
    struct atr_cli_progress pg;
    atr_cli_progress_init(&pg);
    const char *done_word = enable ? "enabled" : "read";
    for (size_t i = 0; i < n && results != NULL; i++) {
        const struct atr_cli_item *it = &items[i];
        char *token = NULL;
        struct atr_http_client_resp resp;
        atr_http_client_resp_init(&resp);
        enum outcome out = FAILED;
        json_t *r = json_pack("{s:s}", "tenant", it->tenant);
        if (enable)
            json_object_set_new(r, "keyUri", json_string(it->arg));
        char *body = enable ? enable_body(it->arg) : NULL;
        atr_err_clear(&err);
        st = atr_cli_conf_token(&token, c, s->h, it->tenant, 1, &err);
        if (st == ATR_OK && (!enable || body != NULL) &&
            tenant_call(&resp, s, it->tenant, token, enable ? "PUT" : "GET", "/encryption", body,
                        &err)) {
            json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
            json_object_set_new(r, "status", json_integer(resp.status));
            json_object_set(r, "answer", j != NULL ? j : json_null());
            if (resp.status == 200) {
                out = DONE;
            } else {
                struct atr_cli_http_error e;
                atr_cli_http_error_parse(&e, &resp);
                out = resp.status >= 400 && resp.status < 500 ? REFUSED : FAILED;
                if (!enable)
                    out = FAILED;
                json_object_set_new(r, "error",
                                    json_pack("{s:s,s:s}", "code", e.code, "message", e.message));
                atr_cli_progress_note(&pg, "atrest %s: %s: %s: HTTP %u %s: %s%s%s", c->cmd,
                                      it->tenant, out == REFUSED ? "refused" : "failed",
                                      resp.status, e.code, e.message, e.fix[0] ? "; fix: " : "",
                                      e.fix);
            }
            json_decref(j);
        } else {
            json_object_set_new(
                r, "error",
                json_pack("{s:s,s:s}", "code", "ClientError", "message", atr_err_msg(&err)));
            atr_cli_progress_note(&pg, "atrest %s: %s: failed: %s", c->cmd, it->tenant,
                                  atr_err_msg(&err));
        }
        free(body);
        atr_cli_token_free(token);
        atr_http_client_resp_cleanup(&resp);
        json_object_set_new(r, "outcome",
                            json_string(out == DONE      ? done_word
                                        : out == REFUSED ? "refused"
                                                         : "failed"));
        json_array_append_new(results, r);
        count[out]++;
        if (enable)
            atr_cli_progress_show(&pg, "atrest %s: %zu/%zu enabled, %zu refused, %zu failed",
                                  c->cmd, count[DONE], n, count[REFUSED], count[FAILED]);
        else
            atr_cli_progress_show(&pg, "atrest %s: %zu/%zu read, %zu failed", c->cmd, count[DONE],
                                  n, count[FAILED]);
    }
    atr_cli_progress_done(&pg);
    int rc = results != NULL && count[DONE] == n ? ATR_EXIT_OK : ATR_EXIT_FAIL;
    if (c->json) {
        json_t *sum = json_pack("{s:I,s:I,s:I,s:I,s:O}", "total", (json_int_t)n, done_word,
                                (json_int_t)count[DONE], "refused", (json_int_t)count[REFUSED],
                                "failed", (json_int_t)count[FAILED], "results",
                                results != NULL ? results : json_null());
        atr_cli_json_print(sum);
        json_decref(sum);
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(results, i, r)
        {
            const char *tenant = json_string_value(json_object_get(r, "tenant"));
            const char *outcome = json_string_value(json_object_get(r, "outcome"));
            json_t *a = json_object_get(r, "answer");
            const char *err_code =
                json_string_value(json_object_get(json_object_get(r, "error"), "code"));
            if (strcmp(outcome, done_word) != 0)
                printf("%-38s %-9s %s\n", tenant, outcome, err_code != NULL ? err_code : "");
            else if (enable)
                printf("%-38s %-9s %s\n", tenant, outcome,
                       json_string_value(json_object_get(a, "keyVersion")));
            else {
                const char *reason = json_string_value(json_object_get(a, "reason"));
                const char *ver = json_string_value(json_object_get(a, "keyVersion"));
                printf("%-38s %-8s %-9s %s\n", tenant,
                       json_string_value(json_object_get(a, "mode")),
                       json_string_value(json_object_get(a, "state")),
                       reason != NULL ? reason
                       : ver != NULL  ? ver
                                      : "");
            }
        }
        if (enable)
            printf("%zu tenants: %zu enabled, %zu refused, %zu failed\n", n, count[DONE],
                   count[REFUSED], count[FAILED]);
        else
            printf("%zu tenants: %zu read, %zu failed\n", n, count[DONE], count[FAILED]);
    }
    json_decref(results);
    atr_cli_items_free(items, n);
    return rc;
}

/* ------------------------------------------------------------ entry points */

int atr_cmd_encryption(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        encryption_help(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    const char *verb = argv[1];
    static const char *const verbs[] = {"status", "enable", "disable", "audit"};
    size_t vi = 0;
    while (vi < ATR_ARRAY_LEN(verbs) && strcmp(verbs[vi], verb) != 0)
        vi++;
    if (vi == ATR_ARRAY_LEN(verbs))
        return atr_args_usage_error("encryption", "unknown command '%s'", verb);
    static const struct option longopts[] = {
        ATR_CLI_CONN_LONGOPTS,
        ATR_CLI_AUTH_LONGOPTS,
        ATR_CLI_BULK_LONGOPTS,
        ATR_CLI_YES_LONGOPTS,
        {"key-uri", required_argument, NULL, 'k'},
        {"from", required_argument, NULL, 'F'},
        {"limit", required_argument, NULL, 'l'},
        {"before", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "encryption %s", verb);
    struct enc_opts o;
    memset(&o, 0, sizeof(o));
    o.verb = verbs[vi];
    struct atr_cli_conf c;
    atr_cli_conf_init(&c, cmd, ATR_CLI_SERVICE);
    struct atr_cli_parse p = {longopts, encryption_opt, &o, encryption_help, NULL, 0, 0};
    int rc = atr_cli_parse_args(&c, &p, argc - 1, argv + 1);
    if (rc != ATR_EXIT_OK)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (c.yes && strcmp(o.verb, "disable") != 0)
        return atr_args_usage_error(cmd, "--yes applies to 'disable' only");
    if (c.token_dir.level == ATR_CLI_FLAG && o.from == NULL)
        return atr_args_usage_error(cmd, "--token-dir goes with --from");
    int enable = strcmp(o.verb, "enable") == 0;
    if (enable && (o.key_uri == NULL) == (o.from == NULL))
        return atr_args_usage_error(cmd, "give --key-uri URI or --from FILE");
    if (o.from != NULL && (c.token != NULL || c.token_file.level == ATR_CLI_FLAG))
        return atr_args_usage_error(cmd, "with --from each tenant needs its own token: use "
                                         "--token-dir or client credentials");
    if (o.from != NULL && c.tenant.level == ATR_CLI_FLAG)
        return atr_args_usage_error(cmd, "--from names the tenants: drop --tenant");
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_resolve(&c, &err);
    if (st != ATR_OK)
        return atr_cli_fail(cmd, st, &err);
    if (c.url.v[0] == '\0')
        return atr_args_usage_error(cmd, "the service URL is required (--url, ATREST_URL or a "
                                         "profile)");
    if (o.from == NULL && c.tenant.v[0] == '\0')
        return atr_args_usage_error(cmd, "the tenant is required (--tenant, ATREST_TENANT or a "
                                         "profile)");
    if (o.from == NULL && !atr_cli_id_ok(c.tenant.v))
        return atr_args_usage_error(cmd, "'%s' is not a tenant id", c.tenant.v);
    struct session s = {&c, NULL};
    if ((st = atr_cli_http_new(&s.h, atr_cli_conf_ca(&c), &err)) != ATR_OK)
        return atr_cli_fail(cmd, st, &err);
    if (o.from != NULL) {
        rc = do_bulk(&s, &o, enable);
    } else {
        char *token = NULL;
        if ((st = atr_cli_conf_token(&token, &c, s.h, NULL, 0, &err)) != ATR_OK) {
            rc = atr_cli_fail(cmd, st, &err);
        } else if (enable) {
            rc = do_enable(&s, &o, token);
        } else if (strcmp(o.verb, "disable") == 0) {
            rc = do_disable(&s, token);
        } else if (strcmp(o.verb, "audit") == 0) {
            rc = do_audit(&s, &o, token);
        } else {
            rc = do_status(&s, token);
        }
        atr_cli_token_free(token);
    }
    atr_http_client_free(s.h);
    return rc;
}

/* ------------------------------------------------------------ monitor */

static void monitor_help(FILE *out, void *ctx)
{
    ATR_UNUSED(ctx);
    fprintf(out, "usage: atrest monitor run [--advance SECONDS] [options]\n"
                 "\n"
                 "Runs one pass of the service's key monitor now (POST /admin/monitor/run) and\n"
                 "prints its counters: tenants watched, probes, roll checks, rolled (tenants\n"
                 "re-wrapped with a newer key version), state transitions, locked, restored.\n"
                 "The monitor rolls every customer-key tenant to the latest version of its key\n"
                 "by itself (every roll_interval); this runs the due work at once, e.g. after\n"
                 "rotating keys, and waits for it. --advance first moves the service's test\n"
                 "clock forward (a service with serve.test_clock=true; tests only), which makes\n"
                 "every check due.\n");
    atr_cli_conf_help(out, ATR_CLI_SERVICE, ATR_CLI_HELP_CONN | ATR_CLI_HELP_ADMIN);
}

static int monitor_opt(void *ctx, int ch, const char *arg)
{
    struct enc_opts *o = ctx;
    unsigned long v;
    if (ch != 'a')
        return atr_args_usage_error("monitor run", "unknown option");
    if (!atr_args_parse_ulong(&v, arg, 0, 10UL * 365 * 86400))
        return atr_args_usage_error("monitor run", "--advance must be seconds, not '%s'", arg);
    o->advance = (long)v;
    return ATR_EXIT_OK;
}

/* An admin call; the answer in @p resp. @return 1 on 200. */
static int admin_call(struct atr_http_client_resp *resp, const struct session *s,
                      const char *secret, const char *path, const char *body)
{
    char url[ATR_CLI_VALUE_MAX + 64];
    atr_cli_url(url, sizeof(url), s->c->url.v, "%s", path);
    struct atr_cli_req rq = {.method = "POST", .url = url, .bearer = secret, .body = body};
    return atr_cli_call(resp, s->h, &rq, 200, s->c->cmd);
}

int atr_cmd_monitor(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        monitor_help(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    if (strcmp(argv[1], "run") != 0)
        return atr_args_usage_error("monitor", "unknown command '%s'", argv[1]);
    static const struct option longopts[] = {
        ATR_CLI_CONN_LONGOPTS,
        ATR_CLI_ADMIN_LONGOPTS,
        {"advance", required_argument, NULL, 'a'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "monitor run";
    struct enc_opts o;
    memset(&o, 0, sizeof(o));
    o.verb = "run";
    o.advance = -1;
    struct atr_cli_conf c;
    atr_cli_conf_init(&c, cmd, ATR_CLI_SERVICE);
    struct atr_cli_parse p = {longopts, monitor_opt, &o, monitor_help, NULL, 0, 0};
    int rc = atr_cli_parse_args(&c, &p, argc - 1, argv + 1);
    if (rc != ATR_EXIT_OK)
        return rc < 0 ? ATR_EXIT_OK : rc;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_resolve(&c, &err);
    if (st != ATR_OK)
        return atr_cli_fail(cmd, st, &err);
    if (c.url.v[0] == '\0')
        return atr_args_usage_error(cmd, "the service URL is required (--url, ATREST_URL or a "
                                         "profile)");
    char secret[ATR_CLI_SECRET_MAX];
    if ((st = atr_cli_conf_admin_secret(secret, sizeof(secret), &c, &err)) != ATR_OK)
        return atr_cli_fail(cmd, st, &err);
    struct session s = {&c, NULL};
    if ((st = atr_cli_http_new(&s.h, atr_cli_conf_ca(&c), &err)) != ATR_OK) {
        OPENSSL_cleanse(secret, sizeof(secret));
        return atr_cli_fail(cmd, st, &err);
    }
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    int ok = 1;
    if (o.advance >= 0) {
        char body[64];
        snprintf(body, sizeof(body), "{\"advanceSeconds\":%ld}", o.advance);
        ok = admin_call(&resp, &s, secret, "/admin/clock", body);
        atr_http_client_resp_cleanup(&resp);
    }
    struct atr_cli_progress pg;
    atr_cli_progress_init(&pg);
    if (ok) {
        atr_cli_progress_show(&pg,
                              "atrest %s: one pass of the key monitor over every "
                              "customer-key tenant...",
                              cmd);
        ok = admin_call(&resp, &s, secret, "/admin/monitor/run", "{}");
        atr_cli_progress_done(&pg);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    if (ok) {
        json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
        if (c.json || j == NULL) {
            printf("%s\n", atr_buf_cstr(&resp.body));
        } else {
            static const char *const keys[] = {"tenants",     "probes", "rollChecks", "rolled",
                                               "transitions", "locked", "restored"};
            for (size_t i = 0; i < ATR_ARRAY_LEN(keys); i++)
                printf("%-12s %lld\n", keys[i],
                       (long long)json_integer_value(json_object_get(j, keys[i])));
        }
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    atr_http_client_free(s.h);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}
