/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest dev: the whole local system in one command, with fresh TLS
 * certificates and all state in one folder.
 *
 * Today the system is the HTTPS plumbing: a local CA and server certificate
 * in DIR/tls and the JSON echo server. As the identity server, the vault and
 * the service land, this command starts them too and provisions the demo
 * tenant (design section 1).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "http/server.h"

#define DEV_DEFAULT_PORT 8443

struct dev_ctx {
    const char *ca_file;
};

static void dev_usage(FILE *out)
{
    fprintf(out,
            "usage: atrest dev [--dir DIR] [--port N]\n"
            "\n"
            "Starts the local system with fresh TLS certificates and its state in DIR:\n"
            "a local CA and server certificate in DIR/tls, and the HTTPS demo server.\n"
            "Runs until Ctrl-C (SIGINT) or SIGTERM.\n"
            "\n"
            "options:\n"
            "  --dir DIR   state folder (default .dev; created 0700)\n"
            "  --port N    TCP port on 127.0.0.1, 0 for any free port (default %d)\n"
            "  --help      show this help\n",
            DEV_DEFAULT_PORT);
}

static void dev_ready(const char *url, void *ctx)
{
    const struct dev_ctx *dc = ctx;
    /* a line with the URL alone comes first, so scripts can read it */
    printf("%s\n"
           "\n"
           "atrest dev is running. Try:\n"
           "  curl --cacert %s %s/healthz\n"
           "  curl --cacert %s -H 'Content-Type: application/json' -d '{\"hello\":\"world\"}' "
           "%s/echo\n"
           "\n"
           "Stop with Ctrl-C.\n",
           url, dc->ca_file, url, dc->ca_file, url);
}

int atr_cmd_dev(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"port", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = ".dev";
    unsigned long port = DEV_DEFAULT_PORT;

    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            dir = optarg;
            break;
        case 'p':
            if (!atr_args_parse_ulong(&port, optarg, 0, 65535))
                return atr_args_usage_error(
                    "dev", "--port must be a number from 0 to 65535, not '%s'", optarg);
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
    if (dir[0] == '\0')
        return atr_args_usage_error("dev", "--dir must not be empty");

    char tls[PATH_MAX], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
    if (snprintf(tls, sizeof(tls), "%s/tls", dir) >= (int)sizeof(tls) ||
        snprintf(ca, sizeof(ca), "%s/ca.pem", tls) >= (int)sizeof(ca) ||
        snprintf(cert, sizeof(cert), "%s/server.pem", tls) >= (int)sizeof(cert) ||
        snprintf(key, sizeof(key), "%s/server.key", tls) >= (int)sizeof(key)) {
        fprintf(stderr, "atrest dev: the folder path is too long\n");
        return ATR_EXIT_FAIL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "atrest dev: cannot create %s: %s\n", dir, strerror(errno));
        return ATR_EXIT_FAIL;
    }
    static const char *const hosts[] = {"localhost", "127.0.0.1"};
    int rc = atr_cli_cert_make(tls, hosts, ATR_ARRAY_LEN(hosts), 0);
    if (rc != ATR_EXIT_OK)
        return rc;

    struct atr_http_server_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.name = "dev";
    opts.listen_addr = "127.0.0.1";
    opts.port = (uint16_t)port;
    opts.cert_file = cert;
    opts.key_file = key;
    struct dev_ctx dc = {ca};
    return atr_cli_echo_serve(&opts, dev_ready, &dc);
}
