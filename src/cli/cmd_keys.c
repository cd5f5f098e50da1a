/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest vault key ...: a client of the Key Vault keys API (the data plane
 * of `atrest vault serve`, or of Azure Key Vault itself), authenticated with
 * a token of the vault's directory for https://vault.azure.net, fetched by
 * client credentials (--tenant --client-id --secret-file, or the profile).
 *
 *   list [--deleted]                 GET /keys, /deletedkeys (all pages)
 *   create NAME [--kty] [--size] [--curve] [--ops] [--exp] [--nbf] [--disabled] [--tag]
 *   show NAME [--version V]          GET /keys/{name}[/{version}]
 *   versions NAME                    GET /keys/{name}/versions
 *   rotate NAME                      POST /keys/{name}/rotate
 *   delete NAME | recover NAME | purge NAME [--yes]
 *   import NAME --key-file FILE      PUT /keys/{name}
 *   update NAME [--version V] [--enable|--disable] [--exp T|none] [--nbf T|none] ...
 *   rotation-policy get NAME | set NAME [--rotate-after D] [--rotate-before-expiry D]
 *                   [--notify-before-expiry D] [--expiry-time D]
 *
 * NAME may also be a key identifier (https://{vault}/keys/{name}[/{version}]),
 * which names the vault too.
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
#include "crypto/jwk.h"
#include "crypto/rsa.h"

#define API_VERSION  "api-version=7.4"
#define MAX_TAGS     15
#define KEY_FILE_MAX 65536

struct verb {
    const char *name;
    int needs_name;
    const char *opts; /* option characters it takes */
    const char *usage;
    const char *about;
};

static const struct verb verbs[] = {
    {"list", 0, "d", "list [--deleted]",
     "lists the vault's keys (--deleted: the soft-deleted ones, with their purge dates)"},
    {"create", 1, "KScoenDT",
     "create NAME [--kty RSA|RSA-HSM|EC|EC-HSM] [--size 2048|3072|4096]\n"
     "           [--curve P-256|P-384|P-521|P-256K] [--ops OP,...]\n"
     "           [--exp T] [--nbf T] [--disabled] [--tag K=V]...",
     "creates a key (default RSA 2048; customer keys for atrest must be RSA with\n"
     "wrapKey and unwrapKey allowed) or, when NAME exists, a new version of it"},
    {"show", 1, "V", "show NAME [--version V]", "shows a key's latest version (or --version)"},
    {"versions", 1, "", "versions NAME", "lists a key's versions"},
    {"rotate", 1, "", "rotate NAME",
     "adds a new version of the key now; services using the key roll to it by\n"
     "themselves (atrest: at the next roll check of its key monitor)"},
    {"delete", 1, "", "delete NAME",
     "soft-deletes the key: it can be recovered until the vault's retention ends\n"
     "(with purge protection it cannot be purged before). Tenants whose data uses it\n"
     "lock within the hour: recover it soon"},
    {"recover", 1, "", "recover NAME", "recovers a soft-deleted key with all its versions"},
    {"purge", 1, "y", "purge NAME [--yes]",
     "deletes a soft-deleted key for good (refused under purge protection). Data\n"
     "under it is lost for good. Asks for confirmation on a terminal"},
    {"import", 1, "fHoenDT",
     "import NAME --key-file FILE [--hsm] [--ops OP,...] [--exp T] [--nbf T]\n"
     "           [--disabled] [--tag K=V]...",
     "imports a private key: a JWK (JSON, RSA or EC) or an RSA PKCS#8 PEM file"},
    {"update", 1, "VEDoenT",
     "update NAME [--version V] [--enable|--disable] [--exp T|none]\n"
     "           [--nbf T|none] [--ops OP,...] [--tag K=V]...",
     "changes a version's attributes (default: the latest version)"},
    {"rotation-policy get", 1, "", "rotation-policy get NAME", "prints the key's rotation policy"},
    {"rotation-policy set", 1, "RBNX",
     "rotation-policy set NAME [--rotate-after DUR] [--rotate-before-expiry DUR]\n"
     "           [--notify-before-expiry DUR] [--expiry-time DUR]",
     "sets the rotation policy: ISO 8601 durations (P90D, P1Y); triggers are at\n"
     "least P7D, --expiry-time (the expiry of new versions) at least P28D"},
};

struct key_opts {
    const struct verb *verb;
    char cmd[64];
    const char *name;
    const char *version;
    const char *kty, *curve, *ops, *key_file;
    unsigned long size;
    long long exp, nbf;
    int exp_set, nbf_set; /* 1 set, 2 cleared ("none") */
    int enabled;          /* -1 unchanged */
    int hsm, deleted;
    const char *tags[MAX_TAGS];
    size_t ntags;
    const char *rotate_after, *rotate_before, *notify_before, *expiry_time;
    char url_from_id[ATR_CLI_VALUE_MAX]; /* the vault named by a key identifier */
};

static void key_help(FILE *out, void *ctx)
{
    const struct key_opts *o = ctx;
    fprintf(out, "usage:\n");
    for (size_t i = 0; i < ATR_ARRAY_LEN(verbs); i++) {
        if (o == NULL || o->verb == &verbs[i])
            fprintf(out, "  atrest vault key %s [options]\n", verbs[i].usage);
    }
    fprintf(out, "\n");
    for (size_t i = 0; i < ATR_ARRAY_LEN(verbs); i++) {
        if (o == NULL || o->verb == &verbs[i])
            fprintf(out, "%s: %s.\n", verbs[i].name, verbs[i].about);
    }
    fprintf(out,
            "\nNAME is a key name or a key identifier (https://{vault}/keys/{name}[/{version}]),\n"
            "which also names the vault. T is a time: RFC 3339 (2027-01-01T00:00:00Z), a\n"
            "date, Unix seconds, or +N with d, h, m or s (from now). Operations: encrypt\n"
            "decrypt sign verify wrapKey unwrapKey. Text output by default; --json prints\n"
            "the vault's answers. The caller needs the matching key permission in the\n"
            "vault's access policy (list, create, get, rotate, delete, recover, purge,\n"
            "import, update, getrotationpolicy, setrotationpolicy).\n");
    atr_cli_conf_help(out, ATR_CLI_VAULT, ATR_CLI_HELP_CONN | ATR_CLI_HELP_AUTH);
}

static int key_opt(void *ctx, int ch, const char *arg)
{
    struct key_opts *o = ctx;
    if (strchr(o->verb->opts, ch) == NULL)
        return atr_args_usage_error(o->cmd, "this option does not apply to '%s'", o->verb->name);
    unsigned long v;
    switch (ch) {
    case 'K':
        o->kty = arg;
        break;
    case 'S':
        if (!atr_args_parse_ulong(&v, arg, 2048, 4096) || (v != 2048 && v != 3072 && v != 4096))
            return atr_args_usage_error(o->cmd, "--size must be 2048, 3072 or 4096, not '%s'", arg);
        o->size = v;
        break;
    case 'c':
        o->curve = arg;
        break;
    case 'o':
        o->ops = arg;
        break;
    case 'e':
    case 'n': {
        long long *t = ch == 'e' ? &o->exp : &o->nbf;
        int *flag = ch == 'e' ? &o->exp_set : &o->nbf_set;
        if (strcmp(arg, "none") == 0 && strcmp(o->verb->name, "update") == 0) {
            *flag = 2;
        } else if (atr_cli_time_parse(t, arg)) {
            *flag = 1;
        } else {
            return atr_args_usage_error(o->cmd,
                                        "'%s' is not a time (RFC 3339, a date, Unix "
                                        "seconds or +30d)",
                                        arg);
        }
        break;
    }
    case 'D':
        o->enabled = 0;
        break;
    case 'E':
        o->enabled = 1;
        break;
    case 'T':
        if (o->ntags == MAX_TAGS)
            return atr_args_usage_error(o->cmd, "at most %d --tag", MAX_TAGS);
        if (strchr(arg, '=') == NULL || arg[0] == '=')
            return atr_args_usage_error(o->cmd, "--tag wants NAME=VALUE, not '%s'", arg);
        o->tags[o->ntags++] = arg;
        break;
    case 'V':
        o->version = arg;
        break;
    case 'd':
        o->deleted = 1;
        break;
    case 'f':
        o->key_file = arg;
        break;
    case 'H':
        o->hsm = 1;
        break;
    case 'R':
        o->rotate_after = arg;
        break;
    case 'B':
        o->rotate_before = arg;
        break;
    case 'N':
        o->notify_before = arg;
        break;
    case 'X':
        o->expiry_time = arg;
        break;
    default:
        return atr_args_usage_error(o->cmd, "unknown option");
    }
    return ATR_EXIT_OK;
}

/* 1 when @p s is a key name (1-127 of 0-9 a-z A-Z -) or version (1-64 alphanumerics). */
static int name_ok(const char *s, int version)
{
    size_t n = strlen(s);
    if (n == 0 || n > (version ? 64u : 127u))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (!version && ch == '-')))
            return 0;
    }
    return 1;
}

/* NAME or https://vault/keys/NAME[/VERSION]; @p buf keeps the parts. */
static int take_name(struct key_opts *o, char *buf, size_t cap, const char *arg)
{
    snprintf(buf, cap, "%s", arg);
    if (strncmp(buf, "https://", 8) == 0) {
        char *k = strstr(buf + 8, "/keys/");
        if (k == NULL)
            return atr_args_usage_error(o->cmd, "'%s' is not a key identifier", arg);
        *k = '\0';
        snprintf(o->url_from_id, sizeof(o->url_from_id), "%s", buf);
        char *name = k + 6;
        char *slash = strchr(name, '/');
        if (slash != NULL) {
            *slash = '\0';
            if (slash[1] != '\0') {
                if (o->version != NULL && strcmp(o->version, slash + 1) != 0)
                    return atr_args_usage_error(o->cmd, "two versions: the identifier's and "
                                                        "--version");
                o->version = slash + 1;
            }
        }
        o->name = name;
    } else {
        o->name = buf;
    }
    if (!name_ok(o->name, 0))
        return atr_args_usage_error(
            o->cmd, "'%s' is not a key name (1-127 of 0-9, a-z, A-Z and '-')", o->name);
    if (o->version != NULL && !name_ok(o->version, 1))
        return atr_args_usage_error(o->cmd, "'%s' is not a key version", o->version);
    if (o->version != NULL && strcmp(o->verb->name, "show") != 0 &&
        strcmp(o->verb->name, "update") != 0)
        return atr_args_usage_error(o->cmd, "'%s' works on the whole key, not a version",
                                    o->verb->name);
    return ATR_EXIT_OK;
}

/* ------------------------------------------------------------ output */

static const char *last_segment(const char *kid)
{
    const char *s = kid != NULL ? strrchr(kid, '/') : NULL;
    return s != NULL ? s + 1 : kid != NULL ? kid : "";
}

/* The key name of a kid: https://host/keys/NAME[/VERSION]. */
static void name_of(char *out, size_t cap, const char *kid)
{
    const char *k = kid != NULL ? strstr(kid, "/keys/") : NULL;
    if (k == NULL)
        k = kid != NULL ? strstr(kid, "/deletedkeys/") : NULL;
    if (k == NULL) {
        snprintf(out, cap, "%s", kid != NULL ? kid : "");
        return;
    }
    k = strchr(k + 1, '/') + 1;
    snprintf(out, cap, "%.*s", (int)strcspn(k, "/"), k);
}

static void print_time(const char *label, json_t *v)
{
    char t[32];
    if (!json_is_integer(v))
        return;
    atr_cli_time_format(t, (long long)json_integer_value(v));
    printf("%-14s %s\n", label, t);
}

static void print_bundle(json_t *b)
{
    json_t *key = json_object_get(b, "key");
    json_t *at = json_object_get(b, "attributes");
    const char *kid = json_string_value(json_object_get(key, "kid"));
    printf("%-14s %s\n", "kid", kid != NULL ? kid : "");
    const char *kty = json_string_value(json_object_get(key, "kty"));
    const char *n = json_string_value(json_object_get(key, "n"));
    const char *crv = json_string_value(json_object_get(key, "crv"));
    if (n != NULL)
        printf("%-14s %s, %zu bits\n", "type", kty, strlen(n) * 6 / 8 * 8);
    else
        printf("%-14s %s%s%s\n", "type", kty != NULL ? kty : "?", crv != NULL ? ", " : "",
               crv != NULL ? crv : "");
    printf("%-14s %s\n", "enabled", json_is_true(json_object_get(at, "enabled")) ? "yes" : "no");
    printf("%-14s", "operations");
    size_t i;
    json_t *op;
    json_array_foreach(json_object_get(key, "key_ops"), i, op) printf(" %s", json_string_value(op));
    printf("\n");
    print_time("created", json_object_get(at, "created"));
    print_time("updated", json_object_get(at, "updated"));
    print_time("not before", json_object_get(at, "nbf"));
    print_time("expires", json_object_get(at, "exp"));
    const char *rl = json_string_value(json_object_get(at, "recoveryLevel"));
    if (rl != NULL)
        printf("%-14s %s (%lld days)\n", "recovery", rl,
               (long long)json_integer_value(json_object_get(at, "recoverableDays")));
    const char *tk;
    json_t *tv;
    json_object_foreach(json_object_get(b, "tags"), tk, tv)
        printf("%-14s %s=%s\n", "tag", tk, json_string_value(tv));
    const char *rid = json_string_value(json_object_get(b, "recoveryId"));
    if (rid != NULL) {
        printf("%-14s %s\n", "recoveryId", rid);
        print_time("deleted", json_object_get(b, "deletedDate"));
        print_time("purge date", json_object_get(b, "scheduledPurgeDate"));
    }
}

static void print_item(json_t *it, int deleted, int versions)
{
    json_t *at = json_object_get(it, "attributes");
    const char *kid = json_string_value(json_object_get(it, "kid"));
    char name[160], t1[32], t2[32];
    if (versions)
        snprintf(name, sizeof(name), "%s", last_segment(kid));
    else
        name_of(name, sizeof(name), kid);
    if (deleted) {
        atr_cli_time_format(t1, (long long)json_integer_value(json_object_get(it, "deletedDate")));
        atr_cli_time_format(
            t2, (long long)json_integer_value(json_object_get(it, "scheduledPurgeDate")));
        printf("%-40s deleted %s  purge %s\n", name, t1, t2);
        return;
    }
    atr_cli_time_format(
        t1, (long long)json_integer_value(json_object_get(at, versions ? "created" : "updated")));
    atr_cli_time_format(t2, (long long)json_integer_value(json_object_get(at, "exp")));
    printf("%-40s %-8s %s %s  expires %s\n", name,
           json_is_true(json_object_get(at, "enabled")) ? "enabled" : "disabled",
           versions ? "created" : "updated", t1, t2);
}

static void print_policy(json_t *p)
{
    const char *id = json_string_value(json_object_get(p, "id"));
    if (id != NULL)
        printf("%-18s %s\n", "id", id);
    const char *exp =
        json_string_value(json_object_get(json_object_get(p, "attributes"), "expiryTime"));
    printf("%-18s %s\n", "expiryTime", exp != NULL ? exp : "- (new versions do not expire)");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(p, "lifetimeActions"), i, a)
    {
        json_t *trig = json_object_get(a, "trigger");
        const char *type = json_string_value(json_object_get(json_object_get(a, "action"), "type"));
        const char *tac = json_string_value(json_object_get(trig, "timeAfterCreate"));
        const char *tbe = json_string_value(json_object_get(trig, "timeBeforeExpiry"));
        printf("%-18s %s %s\n", type != NULL ? type : "?",
               tac != NULL ? "after creation" : "before expiry", tac != NULL ? tac : tbe);
    }
}

/* ------------------------------------------------------------ requests */

struct key_session {
    struct atr_cli_conf *c;
    struct key_opts *o;
    struct atr_http_client *h;
    const char *token;
};

/* One call; @p path starts with '/', gets the api-version. @return 1 on 200 or 204. */
static int kv_call(struct atr_http_client_resp *resp, const struct key_session *s,
                   const char *method, const char *path, const char *body)
{
    char url[2 * ATR_CLI_VALUE_MAX + 64];
    if (strncmp(path, "https://", 8) == 0)
        snprintf(url, sizeof(url), "%s", path); /* a nextLink */
    else
        atr_cli_url(url, sizeof(url), s->c->url.v, "%s%s" API_VERSION, path,
                    strchr(path, '?') != NULL ? "&" : "?");
    struct atr_cli_req rq = {.method = method, .url = url, .bearer = s->token, .body = body};
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_cli_send(resp, s->h, &rq, &err) != ATR_OK) {
        fprintf(stderr, "atrest %s: %s\n", s->o->cmd, atr_err_msg(&err));
        return 0;
    }
    if (resp->status != 200 && resp->status != 204) {
        char what[128];
        snprintf(what, sizeof(what), "atrest %s", s->o->cmd);
        atr_cli_http_error_print(what, resp);
        return 0;
    }
    return 1;
}

/* A call whose answer is one object printed with @p print (or as JSON). */
static int kv_show(const struct key_session *s, const char *method, const char *path, json_t *body,
                   void (*print)(json_t *))
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct atr_http_client_resp resp;
    atr_http_client_resp_init(&resp);
    int ok = kv_call(&resp, s, method, path, text);
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text)); /* an imported private key */
        free(text);
    }
    if (ok) {
        json_t *j = json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL);
        if (s->c->json || j == NULL || print == NULL)
            printf("%s\n", resp.body.len > 0 ? atr_buf_cstr(&resp.body) : "{}");
        else
            print(j);
        json_decref(j);
    }
    atr_http_client_resp_cleanup(&resp);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

/* Every page of a list; --json prints {"value":[...]} with all of them. */
static int kv_list(const struct key_session *s, const char *path, int deleted, int versions)
{
    json_t *all = json_array();
    char *next = NULL;
    int ok = all != NULL;
    unsigned pages = 0;
    do {
        struct atr_http_client_resp resp;
        atr_http_client_resp_init(&resp);
        ok = kv_call(&resp, s, "GET", next != NULL ? next : path, NULL);
        atr_free(next);
        next = NULL;
        json_t *j = ok ? json_loadb((const char *)resp.body.ptr, resp.body.len, 0, NULL) : NULL;
        if (ok && j == NULL) {
            fprintf(stderr, "atrest %s: the vault's answer is not JSON\n", s->o->cmd);
            ok = 0;
        }
        json_array_extend(all, json_object_get(j, "value"));
        const char *nl = json_string_value(json_object_get(j, "nextLink"));
        if (ok && nl != NULL && nl[0] != '\0') {
            /* the vault builds it from the Host we sent: keep only its path and query */
            const char *p = strstr(nl, deleted ? "/deletedkeys" : "/keys");
            char url[2 * ATR_CLI_VALUE_MAX];
            if (p != NULL && atr_cli_url(url, sizeof(url), s->c->url.v, "%s", p))
                next = atr_strdup(url);
        }
        json_decref(j);
        atr_http_client_resp_cleanup(&resp);
        if (++pages % 20 == 0 && next != NULL)
            fprintf(stderr, "atrest %s: %zu so far\n", s->o->cmd, json_array_size(all));
    } while (ok && next != NULL && pages < 10000);
    atr_free(next);
    if (ok && s->c->json) {
        json_t *doc = json_pack("{s:O}", "value", all);
        atr_cli_json_print(doc);
        json_decref(doc);
    } else if (ok) {
        size_t i;
        json_t *it;
        json_array_foreach(all, i, it) print_item(it, deleted, versions);
    }
    json_decref(all);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

/* Adds the --ops, --exp, --nbf, --disabled/--enable and --tag of @p o to @p body. */
static void put_props(json_t *body, const struct key_opts *o)
{
    if (o->ops != NULL) {
        json_t *a = json_array();
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", o->ops);
        char *save = NULL;
        for (char *t = strtok_r(buf, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save))
            json_array_append_new(a, json_string(t));
        json_object_set_new(body, "key_ops", a);
    }
    json_t *at = json_object();
    if (o->enabled >= 0)
        json_object_set_new(at, "enabled", json_boolean(o->enabled));
    if (o->exp_set)
        json_object_set_new(at, "exp", o->exp_set == 2 ? json_null() : json_integer(o->exp));
    if (o->nbf_set)
        json_object_set_new(at, "nbf", o->nbf_set == 2 ? json_null() : json_integer(o->nbf));
    if (json_object_size(at) > 0)
        json_object_set_new(body, "attributes", at);
    else
        json_decref(at);
    if (o->ntags > 0) {
        json_t *tags = json_object();
        for (size_t i = 0; i < o->ntags; i++) {
            const char *eq = strchr(o->tags[i], '=');
            char k[256];
            snprintf(k, sizeof(k), "%.*s", (int)(eq - o->tags[i]), o->tags[i]);
            json_object_set_new(tags, k, json_string(eq + 1));
        }
        json_object_set_new(body, "tags", tags);
    }
}

/* The "key" member of an import: the JWK of --key-file (JSON, or an RSA PKCS#8 PEM). */
static json_t *import_jwk(const struct key_opts *o)
{
    char *text = atr_malloc(KEY_FILE_MAX);
    if (text == NULL)
        return NULL;
    json_t *jwk = NULL;
    FILE *f = fopen(o->key_file, "r");
    size_t n = f != NULL ? fread(text, 1, KEY_FILE_MAX - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    text[n] = '\0';
    struct atr_err err;
    atr_err_clear(&err);
    if (f == NULL || n == 0) {
        fprintf(stderr, "atrest %s: cannot read %s\n", o->cmd, o->key_file);
    } else if (text[strspn(text, " \t\r\n")] == '{') {
        jwk = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(jwk) || json_object_get(jwk, "d") == NULL) {
            fprintf(stderr, "atrest %s: %s is not a private JSON Web Key\n", o->cmd, o->key_file);
            json_decref(jwk);
            jwk = NULL;
        }
    } else {
        struct atr_rsa_key *key = NULL;
        if (atr_rsa_key_parse_pem(&key, text, n, &err) != ATR_OK ||
            atr_jwk_export(&jwk, key, ATR_JWK_PRIVATE, &err) != ATR_OK) {
            fprintf(stderr,
                    "atrest %s: %s: %s (PEM: an RSA PKCS#8 private key; EC keys as a "
                    "JWK)\n",
                    o->cmd, o->key_file, atr_err_msg(&err));
            jwk = NULL;
        }
        atr_rsa_key_free(key);
    }
    OPENSSL_cleanse(text, KEY_FILE_MAX);
    atr_free(text);
    return jwk;
}

static int do_key(const struct key_session *s)
{
    const struct key_opts *o = s->o;
    const char *v = o->verb->name;
    char path[512];
    if (strcmp(v, "list") == 0)
        return kv_list(s, o->deleted ? "/deletedkeys" : "/keys", o->deleted, 0);
    if (strcmp(v, "versions") == 0) {
        snprintf(path, sizeof(path), "/keys/%s/versions", o->name);
        return kv_list(s, path, 0, 1);
    }
    if (strcmp(v, "show") == 0) {
        snprintf(path, sizeof(path), "/keys/%s%s%s", o->name, o->version != NULL ? "/" : "",
                 o->version != NULL ? o->version : "");
        return kv_show(s, "GET", path, NULL, print_bundle);
    }
    if (strcmp(v, "create") == 0) {
        const char *kty = o->kty != NULL ? o->kty : o->curve != NULL ? "EC" : "RSA";
        int ec = strncmp(kty, "EC", 2) == 0;
        if ((ec && o->size != 0) || (!ec && o->curve != NULL))
            return atr_args_usage_error(o->cmd, "--size goes with RSA keys, --curve with EC keys");
        json_t *body = json_pack("{s:s}", "kty", kty);
        if (ec)
            json_object_set_new(body, "crv", json_string(o->curve != NULL ? o->curve : "P-256"));
        else
            json_object_set_new(body, "key_size",
                                json_integer(o->size != 0 ? (json_int_t)o->size : 2048));
        put_props(body, o);
        snprintf(path, sizeof(path), "/keys/%s/create", o->name);
        return kv_show(s, "POST", path, body, print_bundle);
    }
    if (strcmp(v, "rotate") == 0) {
        snprintf(path, sizeof(path), "/keys/%s/rotate", o->name);
        return kv_show(s, "POST", path, NULL, print_bundle);
    }
    if (strcmp(v, "delete") == 0) {
        snprintf(path, sizeof(path), "/keys/%s", o->name);
        int rc = kv_show(s, "DELETE", path, NULL, print_bundle);
        if (rc == ATR_EXIT_OK && !s->c->json)
            printf("soft-deleted: 'atrest vault key recover %s' brings it back before the purge "
                   "date\n",
                   o->name);
        return rc;
    }
    if (strcmp(v, "recover") == 0) {
        snprintf(path, sizeof(path), "/deletedkeys/%s/recover", o->name);
        return kv_show(s, "POST", path, NULL, print_bundle);
    }
    if (strcmp(v, "purge") == 0) {
        if (!s->c->yes) {
            char q[256];
            snprintf(q, sizeof(q),
                     "Purge the deleted key %s for good? Data encrypted under it can never be "
                     "read again.",
                     o->name);
            int a = atr_cli_confirm(q);
            if (a < 0)
                return atr_args_usage_error(o->cmd, "standard input is not a terminal: pass "
                                                    "--yes to confirm");
            if (a == 0) {
                fprintf(stderr, "atrest %s: nothing changed\n", o->cmd);
                return ATR_EXIT_FAIL;
            }
        }
        snprintf(path, sizeof(path), "/deletedkeys/%s", o->name);
        struct atr_http_client_resp resp;
        atr_http_client_resp_init(&resp);
        int ok = kv_call(&resp, s, "DELETE", path, NULL);
        atr_http_client_resp_cleanup(&resp);
        if (ok && s->c->json)
            printf("{\"purged\":\"%s\"}\n", o->name);
        else if (ok)
            printf("purged %s\n", o->name);
        return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
    }
    if (strcmp(v, "import") == 0) {
        if (o->key_file == NULL)
            return atr_args_usage_error(o->cmd, "--key-file FILE is required");
        json_t *jwk = import_jwk(o);
        if (jwk == NULL)
            return ATR_EXIT_FAIL;
        json_t *body = json_pack("{s:o}", "key", jwk);
        if (o->hsm)
            json_object_set_new(body, "Hsm", json_true());
        put_props(body, o);
        snprintf(path, sizeof(path), "/keys/%s", o->name);
        return kv_show(s, "PUT", path, body, print_bundle);
    }
    if (strcmp(v, "update") == 0) {
        json_t *body = json_object();
        put_props(body, o);
        if (json_object_size(body) == 0) {
            json_decref(body);
            return atr_args_usage_error(o->cmd, "nothing to change (--enable, --disable, --exp, "
                                                "--nbf, --ops, --tag)");
        }
        snprintf(path, sizeof(path), "/keys/%s%s%s", o->name, o->version != NULL ? "/" : "",
                 o->version != NULL ? o->version : "");
        return kv_show(s, "PATCH", path, body, print_bundle);
    }
    snprintf(path, sizeof(path), "/keys/%s/rotationpolicy", o->name);
    if (strcmp(v, "rotation-policy get") == 0)
        return kv_show(s, "GET", path, NULL, print_policy);
    /* rotation-policy set */
    json_t *acts = json_array();
    if (o->rotate_after != NULL)
        json_array_append_new(acts, json_pack("{s:{s:s},s:{s:s}}", "trigger", "timeAfterCreate",
                                              o->rotate_after, "action", "type", "Rotate"));
    if (o->rotate_before != NULL)
        json_array_append_new(acts, json_pack("{s:{s:s},s:{s:s}}", "trigger", "timeBeforeExpiry",
                                              o->rotate_before, "action", "type", "Rotate"));
    if (o->notify_before != NULL)
        json_array_append_new(acts, json_pack("{s:{s:s},s:{s:s}}", "trigger", "timeBeforeExpiry",
                                              o->notify_before, "action", "type", "Notify"));
    json_t *body = json_pack("{s:o}", "lifetimeActions", acts);
    if (o->expiry_time != NULL)
        json_object_set_new(body, "attributes", json_pack("{s:s}", "expiryTime", o->expiry_time));
    return kv_show(s, "PUT", path, body, print_policy);
}

int atr_cli_vault_key(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        key_help(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? ATR_EXIT_USAGE : ATR_EXIT_OK;
    }
    struct key_opts o;
    memset(&o, 0, sizeof(o));
    o.enabled = -1;
    int shift = 1;
    char verb[64];
    snprintf(verb, sizeof(verb), "%s", argv[1]);
    if (strcmp(argv[1], "rotation-policy") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            if (argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
                printf("usage:\n  atrest vault key rotation-policy get NAME [options]\n"
                       "  atrest vault key rotation-policy set NAME [options]\n"
                       "Run 'atrest vault key rotation-policy get --help' for the options.\n");
                return ATR_EXIT_OK;
            }
            return atr_args_usage_error("vault key rotation-policy", "use 'get' or 'set'");
        }
        snprintf(verb, sizeof(verb), "rotation-policy %s", argv[2]);
        shift = 2;
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(verbs) && o.verb == NULL; i++) {
        if (strcmp(verbs[i].name, verb) == 0)
            o.verb = &verbs[i];
    }
    if (o.verb == NULL)
        return atr_args_usage_error("vault key", "unknown command '%s'", verb);
    snprintf(o.cmd, sizeof(o.cmd), "vault key %s", o.verb->name);
    static const struct option longopts[] = {
        ATR_CLI_CONN_LONGOPTS,
        ATR_CLI_AUTH_LONGOPTS,
        ATR_CLI_YES_LONGOPTS,
        {"kty", required_argument, NULL, 'K'},
        {"size", required_argument, NULL, 'S'},
        {"curve", required_argument, NULL, 'c'},
        {"ops", required_argument, NULL, 'o'},
        {"exp", required_argument, NULL, 'e'},
        {"nbf", required_argument, NULL, 'n'},
        {"disabled", no_argument, NULL, 'D'},
        {"disable", no_argument, NULL, 'D'},
        {"enable", no_argument, NULL, 'E'},
        {"tag", required_argument, NULL, 'T'},
        {"version", required_argument, NULL, 'V'},
        {"deleted", no_argument, NULL, 'd'},
        {"key-file", required_argument, NULL, 'f'},
        {"hsm", no_argument, NULL, 'H'},
        {"rotate-after", required_argument, NULL, 'R'},
        {"rotate-before-expiry", required_argument, NULL, 'B'},
        {"notify-before-expiry", required_argument, NULL, 'N'},
        {"expiry-time", required_argument, NULL, 'X'},
        {NULL, 0, NULL, 0},
    };
    struct atr_cli_conf c;
    atr_cli_conf_init(&c, o.cmd, ATR_CLI_VAULT);
    const char *pos[1];
    struct atr_cli_parse p = {longopts, key_opt, &o, key_help, pos, 1, 0};
    int rc = atr_cli_parse_args(&c, &p, argc - shift, argv + shift);
    if (rc != ATR_EXIT_OK)
        return rc < 0 ? ATR_EXIT_OK : rc;
    if (c.yes && strchr(o.verb->opts, 'y') == NULL)
        return atr_args_usage_error(o.cmd, "--yes does not apply to '%s'", o.verb->name);
    char name_buf[ATR_CLI_VALUE_MAX];
    if (o.verb->needs_name && p.npos != 1)
        return atr_args_usage_error(o.cmd, "give the key's NAME");
    if (!o.verb->needs_name && p.npos != 0)
        return atr_args_usage_error(o.cmd, "unexpected argument '%s'", pos[0]);
    if (p.npos == 1 && (rc = take_name(&o, name_buf, sizeof(name_buf), pos[0])) != ATR_EXIT_OK)
        return rc;
    if (o.url_from_id[0] != '\0') {
        if (c.url.level == ATR_CLI_FLAG && strcmp(c.url.v, o.url_from_id) != 0)
            return atr_args_usage_error(o.cmd, "--url and the key identifier name two vaults");
        atr_cli_conf_opt(&c, ATR_CLI_OPT_URL, o.url_from_id);
    }
    struct atr_err err;
    atr_err_clear(&err);
    atr_status st = atr_cli_conf_resolve(&c, &err);
    struct key_session s = {&c, &o, NULL, NULL};
    char *token = NULL;
    if (st != ATR_OK || (st = atr_cli_http_new(&s.h, atr_cli_conf_ca(&c), &err)) != ATR_OK ||
        (st = atr_cli_conf_token(&token, &c, s.h, NULL, 0, &err)) != ATR_OK) {
        atr_http_client_free(s.h);
        return atr_cli_fail(o.cmd, st, &err);
    }
    s.token = token;
    rc = do_key(&s);
    atr_cli_token_free(token);
    atr_http_client_free(s.h);
    return rc;
}
