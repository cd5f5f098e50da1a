/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CLI_CLIENT_H
#define ATR_CLI_CLIENT_H

/*
 * What the client subcommands share (records, encryption, monitor, vault,
 * vault key, idp): their settings, resolved in one order, flags first, then
 * the environment, then a profile file (--profile FILE, ATREST_PROFILE, or
 * .dev/profile when it exists); credentials and bearer tokens; one HTTPS
 * client per command (connections are reused); confirmation prompts and
 * progress lines on stderr; files of tenants for bulk operations.
 *
 * A profile holds KEY=VALUE lines with the environment's names (an
 * "export " prefix and quotes are allowed; '#' starts a comment). It may
 * name secret files, never secrets. A profile written by `atrest dev` sits
 * in the state folder DIR, so the servers' bootstrap secrets are found in
 * DIR/{service,vault,idp}/admin.secret.
 *
 * Not thread-safe (getopt state, stdio); called from main's thread only.
 */

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "base/error.h"
#include "http/client.h"

#define ATR_CLI_VALUE_MAX 1024

/* The server a command talks to; it picks the names of its settings. */
enum atr_cli_family {
    ATR_CLI_SERVICE, /* ATREST_URL; tokens for api://atrest; ATREST_SERVE_ADMIN_SECRET */
    ATR_CLI_VAULT,   /* ATREST_VAULT_URL; tokens for https://vault.azure.net */
    ATR_CLI_IDP,     /* ATREST_IDP_URL */
};

/* Where a setting came from; a lower level wins. */
enum atr_cli_level {
    ATR_CLI_UNSET = 0,
    ATR_CLI_FLAG,
    ATR_CLI_ENV,
    ATR_CLI_PROFILE,
    ATR_CLI_DEFAULT,
};

struct atr_cli_value {
    char v[ATR_CLI_VALUE_MAX];
    enum atr_cli_level level;
};

/* The settings of one client command. */
struct atr_cli_conf {
    const char *cmd; /* "encryption enable", for messages */
    enum atr_cli_family family;
    struct atr_cli_value url;             /* the family's server */
    struct atr_cli_value idp_url;         /* where tokens come from */
    struct atr_cli_value ca;              /* CA file to trust; empty = the system store */
    struct atr_cli_value tenant;          /* the tenant (a directory id) */
    struct atr_cli_value client_id;       /* an application for client credentials */
    struct atr_cli_value secret_file;     /* its client secret */
    struct atr_cli_value token_file;      /* a bearer token */
    struct atr_cli_value token_dir;       /* bulk: a token file per tenant, DIR/TENANT */
    struct atr_cli_value admin_file;      /* the bootstrap secret of the family's server */
    struct atr_cli_value demo_file;       /* `atrest dev`: JSON whose "secret" is the client's */
    struct atr_cli_value scope;           /* the token's scope */
    const char *token;                    /* --token (argv: prefer --token-file) */
    const char *secret_arg;               /* --secret (argv: prefer --secret-file) */
    const char *token_env;                /* the token read from the environment */
    const char *profile;                  /* --profile */
    char profile_used[ATR_CLI_VALUE_MAX]; /* the profile read; "" when none */
    int json;
    int yes;
};

/* getopt_long values of the shared options (above any character). */
enum {
    ATR_CLI_OPT_URL = 0x100,
    ATR_CLI_OPT_CA,
    ATR_CLI_OPT_PROFILE,
    ATR_CLI_OPT_JSON,
    ATR_CLI_OPT_TENANT,
    ATR_CLI_OPT_IDP_URL,
    ATR_CLI_OPT_CLIENT_ID,
    ATR_CLI_OPT_SECRET_FILE,
    ATR_CLI_OPT_TOKEN,
    ATR_CLI_OPT_TOKEN_FILE,
    ATR_CLI_OPT_SCOPE,
    ATR_CLI_OPT_ADMIN_FILE,
    ATR_CLI_OPT_YES,
    ATR_CLI_OPT_TOKEN_DIR,
};

/* Where to call: --url, --ca, --profile, --json, --help ('h'). */
#define ATR_CLI_CONN_LONGOPTS                                                                      \
    {"url", required_argument, NULL, ATR_CLI_OPT_URL},                                             \
        {"ca", required_argument, NULL, ATR_CLI_OPT_CA},                                           \
        {"profile", required_argument, NULL, ATR_CLI_OPT_PROFILE},                                 \
        {"json", no_argument, NULL, ATR_CLI_OPT_JSON},                                             \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* As whom, with a token: --tenant, --idp-url, --client-id, --secret-file, --token(-file). */
#define ATR_CLI_AUTH_LONGOPTS                                                                      \
    {"tenant", required_argument, NULL, ATR_CLI_OPT_TENANT},                                       \
        {"idp-url", required_argument, NULL, ATR_CLI_OPT_IDP_URL},                                 \
        {"client-id", required_argument, NULL, ATR_CLI_OPT_CLIENT_ID},                             \
        {"secret-file", required_argument, NULL, ATR_CLI_OPT_SECRET_FILE},                         \
        {"token", required_argument, NULL, ATR_CLI_OPT_TOKEN},                                     \
        {"token-file", required_argument, NULL, ATR_CLI_OPT_TOKEN_FILE},                           \
    {                                                                                              \
        "scope", required_argument, NULL, ATR_CLI_OPT_SCOPE                                        \
    }

/* Bulk: --token-dir. */
#define ATR_CLI_BULK_LONGOPTS                                                                      \
    {                                                                                              \
        "token-dir", required_argument, NULL, ATR_CLI_OPT_TOKEN_DIR                                \
    }

/* Asking for no confirmation: --yes. */
#define ATR_CLI_YES_LONGOPTS                                                                       \
    {                                                                                              \
        "yes", no_argument, NULL, ATR_CLI_OPT_YES                                                  \
    }

/* As the server's administrator: --admin-secret-file. */
#define ATR_CLI_ADMIN_LONGOPTS                                                                     \
    {                                                                                              \
        "admin-secret-file", required_argument, NULL, ATR_CLI_OPT_ADMIN_FILE                       \
    }

/* The option groups atr_cli_conf_help() describes. */
#define ATR_CLI_HELP_CONN  1u /* --url --ca --profile --json */
#define ATR_CLI_HELP_AUTH  2u /* --tenant and the token options */
#define ATR_CLI_HELP_ADMIN 4u /* --admin-secret-file */
#define ATR_CLI_HELP_BULK  8u /* --token-dir */

/** Prints the shared options of @p groups for @p family, and the exit codes. */
void atr_cli_conf_help(FILE *out, enum atr_cli_family family, unsigned groups);

/* How to parse one command's arguments. */
struct atr_cli_parse {
    const struct option *longopts; /* the shared options' macros plus the command's own */
    /* takes an option that is not shared: 0, or an exit code after a usage error */
    int (*own)(void *ctx, int ch, const char *arg);
    void *ctx;
    void (*help)(FILE *out, void *ctx); /* --help */
    const char **pos;                   /* positional arguments, in order */
    size_t maxpos;
    size_t npos;
};

/**
 * Parses @p argv (argv[0] is the command's name; options and positional
 * arguments in any order) into @p c and @p p.
 * @return ATR_EXIT_OK, ATR_EXIT_USAGE (printed), or -1 after printing the help.
 */
int atr_cli_parse_args(struct atr_cli_conf *c, struct atr_cli_parse *p, int argc, char **argv);

/** Empty settings for command @p cmd of @p family. */
void atr_cli_conf_init(struct atr_cli_conf *c, const char *cmd, enum atr_cli_family family);

/**
 * Takes one shared option (ATR_CLI_OPT_*).
 * @return 1 when @p ch is a shared option, else 0.
 */
int atr_cli_conf_opt(struct atr_cli_conf *c, int ch, const char *arg);

/**
 * After the flags: fills what is still unset from the environment, then the
 * profile, then the family's defaults (the vault at https://127.0.0.1:8445,
 * the identity server at https://127.0.0.1:8444; the service has none).
 * @return ATR_OK, or ATR_E_IO when a profile that was asked for is unreadable.
 */
ATR_MUST_CHECK atr_status atr_cli_conf_resolve(struct atr_cli_conf *c, struct atr_err *err);

/** The CA file, or NULL for the system store. */
const char *atr_cli_conf_ca(const struct atr_cli_conf *c);

/**
 * Reads the family's bootstrap secret: --admin-secret-file, the variable
 * ATREST_{SERVE,VAULT,IDP}_ADMIN_SECRET (the value) or
 * ..._ADMIN_SECRET_FILE, the profile's ..._ADMIN_SECRET_FILE, or the
 * `atrest dev` state folder's.
 * @return ATR_OK, ATR_E_INVALID (none configured), ATR_E_IO (unreadable).
 */
ATR_MUST_CHECK atr_status atr_cli_conf_admin_secret(char *out, size_t cap,
                                                    const struct atr_cli_conf *c,
                                                    struct atr_err *err);

/**
 * A bearer token for @p tenant (NULL: the configured tenant) and the
 * configured scope. The source of the lowest level wins; at one level a
 * token wins over client credentials:
 *   --token-file / --token, ATREST_TOKEN_FILE / ATREST_TOKEN (service) or
 *   ATREST_VAULT_TOKEN_FILE (vault), the profile's token file;
 *   client credentials: --client-id with --secret-file (or the profile's
 *   ATREST_CLIENT_SECRET_FILE, or the `atrest dev` demo application),
 *   fetched from {idp}/{tenant}/oauth2/v2.0/token.
 * With @p bulk, single tokens are ignored: a token comes from
 * --token-dir DIR/TENANT or from client credentials, per tenant.
 * @param[out] out a NUL-terminated token (atr_cli_token_free()).
 * @return ATR_OK; ATR_E_INVALID (nothing configured), ATR_E_IO (a file),
 *         ATR_E_UPSTREAM (the identity server refused), transport errors.
 */
ATR_MUST_CHECK atr_status atr_cli_conf_token(char **out, const struct atr_cli_conf *c,
                                             struct atr_http_client *h, const char *tenant,
                                             int bulk, struct atr_err *err);

/**
 * The client secret: --secret-file, --secret, ATREST_CLIENT_SECRET_FILE, the
 * profile's, or the `atrest dev` demo application's (first found).
 * @return ATR_OK, ATR_E_INVALID (none configured), ATR_E_IO.
 */
ATR_MUST_CHECK atr_status atr_cli_conf_client_secret(char *out, size_t cap,
                                                     const struct atr_cli_conf *c,
                                                     struct atr_err *err);

/** Wipes and frees a token of atr_cli_conf_token() or atr_cli_token_fetch(). NULL ok. */
void atr_cli_token_free(char *token);

/**
 * Client credentials grant at {@p idp_url}/{@p tenant}/oauth2/v2.0/token.
 * @param[out] answer when not NULL, the whole JSON answer (json_decref()).
 * @return as atr_cli_conf_token().
 */
ATR_MUST_CHECK atr_status atr_cli_token_fetch(char **out, json_t **answer,
                                              struct atr_http_client *h, const char *idp_url,
                                              const char *tenant, const char *client_id,
                                              const char *secret, const char *scope,
                                              struct atr_err *err);

/** A new HTTPS client trusting @p ca (NULL: the system store). */
ATR_MUST_CHECK atr_status atr_cli_http_new(struct atr_http_client **out, const char *ca,
                                           struct atr_err *err);

/* One request of a client command; everything borrowed. */
struct atr_cli_req {
    const char *method;
    const char *url;                  /* full URL */
    const char *bearer;               /* Authorization: Bearer value; NULL = none */
    const char *body;                 /* NULL = none */
    size_t body_len;                  /* 0 = strlen(body) */
    const char *ctype;                /* NULL = application/json (with a body) */
    const char *hdr_name, *hdr_value; /* one more header, or NULL */
};

/**
 * Sends @p rq. An HTTP error status is not a failure here (read resp->status).
 * @return ATR_OK, or a transport error (ATR_E_NETWORK, ATR_E_TLS, ...).
 */
ATR_MUST_CHECK atr_status atr_cli_send(struct atr_http_client_resp *resp, struct atr_http_client *h,
                                       const struct atr_cli_req *rq, struct atr_err *err);

/**
 * Sends @p rq and checks the status is @p want; otherwise prints the
 * server's error ("atrest CMD: HTTP ... code: message", "fix: ...") or the
 * transport error on stderr.
 * @return 1 on @p want, else 0.
 */
int atr_cli_call(struct atr_http_client_resp *resp, struct atr_http_client *h,
                 const struct atr_cli_req *rq, unsigned want, const char *cmd);

/**
 * Reports a local failure of command @p cmd: ATR_E_INVALID is a usage error
 * (one line and "try --help", exit 2); anything else prints "atrest CMD:
 * message" (exit 1).
 * @return ATR_EXIT_USAGE or ATR_EXIT_FAIL.
 */
int atr_cli_fail(const char *cmd, atr_status rc, const struct atr_err *err);

/** "BASE" + formatted path into @p out (BASE's trailing '/' dropped). @return 1, or 0 when too
 * long. */
int atr_cli_url(char *out, size_t cap, const char *base, const char *fmt, ...) ATR_PRINTF(4, 5);

/** 1 when @p s is 1..64 of A-Z a-z 0-9 . _ - (a tenant or object id fit for a path). */
int atr_cli_id_ok(const char *s);

/**
 * Asks @p question on stderr and reads the answer from the terminal.
 * @return 1 (y/yes), 0 (anything else), -1 when stdin is not a terminal.
 */
int atr_cli_confirm(const char *question);

/* Progress of a long operation on stderr: one rewritten line on a terminal, else a line per step.
 */
struct atr_cli_progress {
    int tty;
    int shown; /* a rewritable line is on screen */
};

void atr_cli_progress_init(struct atr_cli_progress *p);

/** Shows the progress line (formatted). */
void atr_cli_progress_show(struct atr_cli_progress *p, const char *fmt, ...) ATR_PRINTF(2, 3);

/** Prints a message line on stderr above the progress line. */
void atr_cli_progress_note(struct atr_cli_progress *p, const char *fmt, ...) ATR_PRINTF(2, 3);

/** Ends the progress line. */
void atr_cli_progress_done(struct atr_cli_progress *p);

/* One line of a bulk file: "TENANT [ARG]". */
struct atr_cli_item {
    char *tenant;
    char *arg; /* NULL when absent */
    unsigned line;
};

/**
 * Reads a bulk file ("-" = stdin): lines "TENANT KEY_URI" when @p want_arg,
 * else "TENANT" (anything after it ignored); blank lines and '#' comments
 * skipped; at most 100 000 tenants, each once.
 * @param[out] out the items (atr_cli_items_free()).
 * @return ATR_OK, ATR_E_IO (unreadable), ATR_E_INVALID (a bad line, said
 *         with its number; or no tenant at all).
 */
ATR_MUST_CHECK atr_status atr_cli_items_read(struct atr_cli_item **out, size_t *n, const char *path,
                                             int want_arg, struct atr_err *err);

void atr_cli_items_free(struct atr_cli_item *items, size_t n);

/** Unix seconds as RFC 3339 UTC ("-" for 0). */
void atr_cli_time_format(char out[32], long long unix_s);

/**
 * Parses a time: Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, or +N with
 * a unit d, h, m or s (from now).
 * @return 1 on success, else 0.
 */
int atr_cli_time_parse(long long *out, const char *s);

/** Prints @p j (compact) and a newline on stdout. */
void atr_cli_json_print(const json_t *j);

#endif /* ATR_CLI_CLIENT_H */
