/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest echo: a TLS JSON echo server, the demonstration of the HTTP
 * plumbing (server, router, JSON error shape, request ids, access log,
 * graceful shutdown) until the real servers exist.
 *
 *   GET  /healthz  -> {"status":"ok"}
 *   POST /echo     -> {"echo":<the request's JSON object>,"requestId":"..."}
 *
 * It prints the URL it listens on as one line on stdout and runs until
 * SIGINT or SIGTERM, then stops gracefully and exits 0.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "base/error.h"
#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "http/server.h"

#define ECHO_DEFAULT_PORT 8443

static atr_status healthz(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    ATR_UNUSED(req);
    ATR_UNUSED(ctx);
    return atr_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static atr_status echo(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    ATR_UNUSED(ctx);
    json_t *body = NULL;
    ATR_TRY(atr_http_req_json(&body, req));
    /* "o" steals the reference of body */
    return atr_http_resp_json(
        resp, 200, json_pack("{s:o,s:s}", "echo", body, "requestId", atr_http_req_id(req)));
}

static const struct atr_route echo_routes[] = {
    {"GET", "/healthz", healthz, 0, 0, NULL},
    {"POST", "/echo", echo, 0, 0, NULL},
};

static void echo_usage(FILE *out)
{
    fprintf(out,
            "usage: atrest echo --cert FILE --key FILE [--listen ADDR] [--port N] "
            "[--threads N]\n"
            "\n"
            "Runs a TLS JSON echo server: GET /healthz, POST /echo (a JSON object).\n"
            "Prints the URL it listens on, runs until SIGINT or SIGTERM.\n"
            "\n"
            "options:\n"
            "  --cert FILE    PEM server certificate (e.g. from 'atrest cert')\n"
            "  --key FILE     PEM private key\n"
            "  --listen ADDR  address to listen on (default 127.0.0.1)\n"
            "  --port N       TCP port, 0 for any free port (default %d)\n"
            "  --threads N    worker threads (default 4)\n"
            "  --help         show this help\n",
            ECHO_DEFAULT_PORT);
}

int atr_cmd_echo(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"listen", required_argument, NULL, 'l'},
        {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct atr_http_server_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.name = "echo";
    opts.port = ECHO_DEFAULT_PORT;
    unsigned long v;

    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opts.cert_file = optarg;
            break;
        case 'k':
            opts.key_file = optarg;
            break;
        case 'l':
            opts.listen_addr = optarg;
            break;
        case 'p':
            if (!atr_args_parse_ulong(&v, optarg, 0, 65535))
                return atr_args_usage_error(
                    "echo", "--port must be a number from 0 to 65535, not '%s'", optarg);
            opts.port = (uint16_t)v;
            break;
        case 't':
            if (!atr_args_parse_ulong(&v, optarg, 1, 256))
                return atr_args_usage_error(
                    "echo", "--threads must be a number from 1 to 256, not '%s'", optarg);
            opts.threads = (unsigned)v;
            break;
        case 'h':
            echo_usage(stdout);
            return ATR_EXIT_OK;
        default:
            return atr_args_getopt_error("echo", ch, argv);
        }
    }
    if (optind < argc)
        return atr_args_usage_error("echo", "unexpected argument '%s'", argv[optind]);
    if (opts.cert_file == NULL || opts.key_file == NULL)
        return atr_args_usage_error("echo", "--cert and --key are required");

    return atr_cli_echo_serve(&opts, NULL, NULL);
}

int atr_cli_echo_serve(const struct atr_http_server_opts *opts, atr_cli_ready_fn on_ready,
                       void *ready_ctx)
{
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_http_server *srv = NULL;
    int rc = ATR_EXIT_FAIL;
    /* before any thread exists, so only atr_http_signals_wait() sees them */
    if (atr_http_signals_block(&err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        goto done;
    }
    if (atr_http_server_new(&srv, opts, echo_routes, ATR_ARRAY_LEN(echo_routes), NULL, &err) !=
            ATR_OK ||
        atr_http_server_start(srv, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        goto done;
    }
    char url[128];
    if (atr_http_server_url(url, sizeof(url), srv) != ATR_OK) {
        fprintf(stderr, "atrest: cannot format the server URL\n");
        goto done;
    }
    if (on_ready != NULL)
        on_ready(url, ready_ctx);
    else
        printf("%s\n", url);
    fflush(stdout);
    int sig = 0;
    if (atr_http_signals_wait(&sig, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        goto done;
    }
    atr_log(ATR_LOG_INFO, "echo.signal", NULL, "received %s; stopping",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    atr_http_server_stop(srv);
    rc = ATR_EXIT_OK;
done:
    atr_http_server_free(srv);
    return rc;
}
