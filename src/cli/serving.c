/* SPDX-License-Identifier: Apache-2.0 */
#include "cli/serving.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"

extern char **environ;

void atr_cli_serving_init(struct atr_cli_serving *s, const char *cmd, const char *name,
                          unsigned port)
{
    memset(s, 0, sizeof(*s));
    s->cmd = cmd;
    s->so.name = name;
    s->so.port = (uint16_t)port;
}

int atr_cli_serving_opt(struct atr_cli_serving *s, int ch, const char *arg)
{
    unsigned long v;
    switch (ch) {
    case 'd':
        s->dir = arg;
        return 1;
    case 'c':
        s->so.cert_file = arg;
        return 1;
    case 'k':
        s->so.key_file = arg;
        return 1;
    case 'l':
        s->so.listen_addr = arg;
        return 1;
    case 'f':
        s->config_file = arg;
        return 1;
    case 'p':
        if (!atr_args_parse_ulong(&v, arg, 0, 65535))
            return -atr_args_usage_error(s->cmd, "--port must be 0..65535, not '%s'", arg);
        s->so.port = (uint16_t)v;
        return 1;
    default:
        return 0;
    }
}

int atr_cli_serving_path(char *out, size_t cap, const struct atr_cli_serving *s, const char *name)
{
    if (snprintf(out, cap, "%s/%s", s->dir, name) >= (int)cap) {
        fprintf(stderr, "atrest: the path %s/%s is too long\n", s->dir, name);
        return 0;
    }
    return 1;
}

int atr_cli_serving_prepare(struct atr_cli_serving *s, int argc, char **argv,
                            const char *secret_key)
{
    if (optind < argc)
        return atr_args_usage_error(s->cmd, "unexpected argument '%s'", argv[optind]);
    if (s->dir == NULL || s->so.cert_file == NULL || s->so.key_file == NULL)
        return atr_args_usage_error(s->cmd, "--dir, --cert and --key are required");
    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "atrest: cannot create %s: %s\n", s->dir, strerror(errno));
        return ATR_EXIT_FAIL;
    }
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_config_new(&s->cfg) != ATR_OK ||
        (s->config_file != NULL && atr_config_load_file(s->cfg, s->config_file, &err) != ATR_OK) ||
        atr_config_load_env(s->cfg, "ATREST", environ, &err) != ATR_OK) {
        fprintf(stderr, "atrest: config: %s\n", atr_err_msg(&err));
        return ATR_EXIT_FAIL;
    }
    const char *cfg_secret = atr_config_get(s->cfg, secret_key);
    char path[4096];
    if (cfg_secret != NULL) {
        snprintf(s->secret, sizeof(s->secret), "%s", cfg_secret);
    } else if (!atr_cli_serving_path(path, sizeof(path), s, "admin.secret") ||
               !atr_cli_secret_file_ensure(s->secret, sizeof(s->secret), path)) {
        fprintf(stderr, "atrest: cannot read or create %s/admin.secret\n", s->dir);
        return ATR_EXIT_FAIL;
    } else {
        fprintf(stderr, "atrest: admin bootstrap secret in %s\n", path);
    }
    if (atr_http_signals_block(&err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        return ATR_EXIT_FAIL;
    }
    return ATR_EXIT_OK;
}

int atr_cli_serving_run(struct atr_cli_serving *s, const struct atr_route *routes, size_t nroutes,
                        void *app, int (*on_url)(const char *url, void *ctx), void *ctx)
{
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_http_server *srv = NULL;
    int rc = ATR_EXIT_FAIL;
    char url[128];
    if (atr_http_server_new(&srv, &s->so, routes, nroutes, app, &err) != ATR_OK ||
        atr_http_server_start(srv, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        goto done;
    }
    if (atr_http_server_url(url, sizeof(url), srv) != ATR_OK) {
        fprintf(stderr, "atrest: cannot format the server URL\n");
        goto done;
    }
    if (on_url != NULL && !on_url(url, ctx))
        goto done;
    printf("%s\n", url);
    fflush(stdout);
    int sig = 0;
    if (atr_http_signals_wait(&sig, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        goto done;
    }
    atr_log_fields(ATR_LOG_INFO, "server.signal", NULL, "stopping", "server", "s", s->so.name,
                   "signal", "s", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    atr_http_server_stop(srv);
    rc = ATR_EXIT_OK;
done:
    atr_http_server_free(srv);
    return rc;
}

void atr_cli_serving_cleanup(struct atr_cli_serving *s)
{
    atr_config_free(s->cfg);
    s->cfg = NULL;
    OPENSSL_cleanse(s->secret, sizeof(s->secret));
}
