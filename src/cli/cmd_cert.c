/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest cert: a local CA and a TLS server certificate for the listeners
 * (design section 6). The CA in DIR is reused when both ca.pem and ca.key
 * are there, so clients keep trusting it across runs.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/x509.h"

static void cert_usage(FILE *out)
{
    fprintf(out,
            "usage: atrest cert --dir DIR [--host NAME]... [--days N]\n"
            "\n"
            "Creates DIR/ca.pem and DIR/ca.key (a local CA; reused when present) and\n"
            "DIR/server.pem and DIR/server.key (a TLS server certificate signed by it).\n"
            "Private keys are written with mode 0600.\n"
            "\n"
            "options:\n"
            "  --dir DIR     output directory (created 0700 if missing)\n"
            "  --host NAME   DNS name or IP address for the certificate; repeatable\n"
            "                (default: localhost and 127.0.0.1)\n"
            "  --days N      server certificate validity in days (default %d, max %d)\n"
            "  --help        show this help\n",
            ATR_X509_SERVER_DAYS_DEFAULT, ATR_X509_DAYS_MAX);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

int atr_cmd_cert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"host", required_argument, NULL, 'H'},
        {"days", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    const char *hosts[ATR_X509_MAX_HOSTS];
    size_t nhosts = 0;
    unsigned days = 0;

    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            dir = optarg;
            break;
        case 'H':
            if (nhosts == ATR_X509_MAX_HOSTS)
                return atr_args_usage_error("cert", "too many --host options (at most %d)",
                                            ATR_X509_MAX_HOSTS);
            if (!atr_x509_host_ok(optarg))
                return atr_args_usage_error("cert", "'%s' is neither a DNS name nor an IP address",
                                            optarg);
            hosts[nhosts++] = optarg;
            break;
        case 'n': {
            unsigned long v;
            if (!atr_args_parse_ulong(&v, optarg, 1, ATR_X509_DAYS_MAX))
                return atr_args_usage_error("cert",
                                            "--days must be a number from 1 to %d, not '%s'",
                                            ATR_X509_DAYS_MAX, optarg);
            days = (unsigned)v;
            break;
        }
        case 'h':
            cert_usage(stdout);
            return ATR_EXIT_OK;
        default:
            return atr_args_getopt_error("cert", ch, argv);
        }
    }
    if (optind < argc)
        return atr_args_usage_error("cert", "unexpected argument '%s'", argv[optind]);
    if (dir == NULL || dir[0] == '\0')
        return atr_args_usage_error("cert", "--dir is required");
    if (nhosts == 0) {
        hosts[nhosts++] = "localhost";
        hosts[nhosts++] = "127.0.0.1";
    }

    return atr_cli_cert_make(dir, hosts, nhosts, days);
}

int atr_cli_cert_make(const char *dir, const char *const *hosts, size_t nhosts, unsigned days)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "atrest: cannot create %s: %s\n", dir, strerror(errno));
        return ATR_EXIT_FAIL;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "atrest: %s is not a directory\n", dir);
        return ATR_EXIT_FAIL;
    }
    char ca_pem[PATH_MAX], ca_key[PATH_MAX], srv_pem[PATH_MAX], srv_key[PATH_MAX];
    if (!join(ca_pem, sizeof(ca_pem), dir, "ca.pem") ||
        !join(ca_key, sizeof(ca_key), dir, "ca.key") ||
        !join(srv_pem, sizeof(srv_pem), dir, "server.pem") ||
        !join(srv_key, sizeof(srv_key), dir, "server.key")) {
        fprintf(stderr, "atrest: the directory path is too long\n");
        return ATR_EXIT_FAIL;
    }

    struct atr_err err;
    atr_err_clear(&err);
    int have_pem = file_exists(ca_pem);
    int have_key = file_exists(ca_key);
    if (have_pem != have_key) {
        fprintf(stderr,
                "atrest: found %s without %s; remove it or restore the pair to reuse "
                "the CA\n",
                have_pem ? ca_pem : ca_key, have_pem ? ca_key : ca_pem);
        return ATR_EXIT_FAIL;
    }
    if (have_pem) {
        if (atr_x509_ca_check(ca_pem, ca_key, NULL, &err) != ATR_OK) {
            fprintf(stderr, "atrest: cannot reuse the CA in %s: %s\n", dir, atr_err_msg(&err));
            return ATR_EXIT_FAIL;
        }
        printf("reusing CA     %s\n", ca_pem);
    } else {
        if (atr_x509_ca_create(ca_pem, ca_key, NULL, &err) != ATR_OK) {
            fprintf(stderr, "atrest: cannot create the CA: %s\n", atr_err_msg(&err));
            return ATR_EXIT_FAIL;
        }
        printf("created CA     %s (key %s)\n", ca_pem, ca_key);
    }
    struct atr_x509_opts opts = {days, NULL, NULL};
    if (atr_x509_server_create(srv_pem, srv_key, ca_pem, ca_key, hosts, nhosts, &opts, &err) !=
        ATR_OK) {
        fprintf(stderr, "atrest: cannot create the server certificate: %s\n", atr_err_msg(&err));
        return ATR_EXIT_FAIL;
    }
    printf("created server %s (key %s) for", srv_pem, srv_key);
    for (size_t i = 0; i < nhosts; i++)
        printf(" %s", hosts[i]);
    printf("\n");
    return ATR_EXIT_OK;
}
