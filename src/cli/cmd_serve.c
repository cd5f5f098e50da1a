/* SPDX-License-Identifier: Apache-2.0 */
/*
 * atrest serve: the data service (see docs/service.md), and
 * atrest srk rotate: its service-root-key rotation (a REST client).
 *
 *   atrest serve --dir DIR --cert FILE --key FILE --idp URL [--ca FILE] [--port N] ...
 *   atrest srk rotate [--url URL] [--ca FILE] [--admin-secret-file FILE]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/rest.h"
#include "cli/serving.h"
#include "http/server.h"
#include "service/reserve.h"
#include "service/service.h"

extern char **environ;

#define SERVE_DEFAULT_PORT 8446
#define BYOK_MAX_HOSTS     16

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: atrest serve --dir DIR --cert FILE --key FILE --idp URL [--ca FILE]\n"
            "                    [--listen ADDR] [--port N] [--audience AUD] [--config FILE]\n"
            "\n"
            "Runs the data service (prints its URL, stops on SIGTERM). State lives in DIR:\n"
            "atrest.db (records, tenants, audit; or serve.storage = postgres://... for a\n"
            "PostgreSQL database shared by several nodes), srk.key (the service root key, 0600,\n"
            "created on first start), admin.secret (bootstrap secret of /admin).\n"
            "Tokens are checked against the identity server at --idp (audience\n"
            "api://atrest unless --audience). Settings (config file [serve] or\n"
            "ATREST_SERVE_*): block_bytes, flush_interval, max_body, max_lines, max_line,\n"
            "compress, tk_ttl, keyring_max, threads, byok_client_id, byok_client_secret.\n"
            "Key monitor: roll_interval (1m), probe_interval (5m), grace (1h),\n"
            "locked_probe (15s), locked_probe_max (5m), backoff_min (5s), backoff_max (5m),\n"
            "reserve_size (8 pre-wrapped data keys per tenant; 0 = none), test_clock\n"
            "(true: POST /admin/clock moves the service's clock forward; tests only),\n"
            "monitor_thread (false: passes run only on POST /admin/monitor/run; tests only).\n"
            "Customer keys: --byok-client-id APPID --byok-secret-file FILE (the service's\n"
            "multi-tenant application), or a certificate credential instead of the secret:\n"
            "--byok-cert-file CERT.pem --byok-key-file KEY.pem (PKCS#8 RSA, mode 0600;\n"
            "serve.byok_cert_file, serve.byok_key_file), and --byok-vault-host HOST\n"
            "(allowed vault hosts; default vault.azure.net).\n"
            "  --port N   default %d (0 = any free port)\n",
            SERVE_DEFAULT_PORT);
}

static int cfg_size(size_t *out, const struct atr_config *cfg, const char *key, size_t def,
                    size_t min, size_t max, struct atr_err *err)
{
    uint64_t v = 0;
    if (atr_config_get_size(&v, cfg, key, def, min, max, err) != ATR_OK)
        return 0;
    *out = (size_t)v;
    return 1;
}

/* Reads the serve.* settings of the configuration into @p vo and @p so. */
static int serve_settings(struct atr_service_opts *vo, struct atr_http_server_opts *so,
                          bool *want_test_clock, const struct atr_config *cfg)
{
    struct atr_err err;
    atr_err_clear(&err);
    if (vo->idp_authority == NULL)
        vo->idp_authority = atr_config_get(cfg, "serve.idp");
    if (vo->ca_file == NULL)
        vo->ca_file = atr_config_get(cfg, "serve.ca");
    int64_t ms = 0, threads = 0, lines = 0;
    bool compress = true;
    if (!cfg_size(&vo->block_bytes, cfg, "serve.block_bytes", ATR_SERVICE_BLOCK_BYTES_DEFAULT, 1024,
                  (size_t)1 << 20, &err) ||
        !cfg_size(&vo->max_body, cfg, "serve.max_body", ATR_SERVICE_MAX_BODY_DEFAULT, 1024,
                  ATR_SERVICE_MAX_BODY_DEFAULT, &err) ||
        !cfg_size(&vo->max_line, cfg, "serve.max_line", 64 * 1024, 256, (size_t)1 << 20, &err) ||
        !cfg_size(&vo->keyring_max, cfg, "serve.keyring_max", ATR_SERVICE_KEYRING_DEFAULT, 1,
                  ATR_SERVICE_KEYRING_MAX, &err) ||
        atr_config_get_int(&lines, cfg, "serve.max_lines", 10000, 1, 1000000, &err) != ATR_OK ||
        atr_config_get_bool(&compress, cfg, "serve.compress", true, &err) != ATR_OK ||
        atr_config_get_duration_ms(&ms, cfg, "serve.tk_ttl", 600000, 1000, 86400000, &err) !=
            ATR_OK ||
        atr_config_get_int(&threads, cfg, "serve.threads", 8, 1, 256, &err) != ATR_OK ||
        atr_config_get_duration_ms(&vo->flush_interval_ms, cfg, "serve.flush_interval", 0, 0, 1000,
                                   &err) != ATR_OK) {
        fprintf(stderr, "atrest: config: %s\n", atr_err_msg(&err));
        return 0;
    }
    /* the key monitor (design section 3): intervals and the reserve */
    struct atr_monitor_opts *mo = &vo->monitor;
    const struct {
        const char *key;
        int64_t *out;
        int64_t def;
    } monitor[] = {
        {"serve.roll_interval", &mo->roll_interval_ms, ATR_MONITOR_ROLL_DEFAULT_MS},
        {"serve.probe_interval", &mo->probe_interval_ms, ATR_MONITOR_PROBE_DEFAULT_MS},
        {"serve.grace", &mo->grace_ms, ATR_MONITOR_GRACE_DEFAULT_MS},
        {"serve.locked_probe", &mo->locked_probe_ms, ATR_MONITOR_LOCKED_PROBE_DEFAULT_MS},
        {"serve.locked_probe_max", &mo->locked_probe_max_ms, ATR_MONITOR_LOCKED_MAX_DEFAULT_MS},
        {"serve.backoff_min", &mo->backoff_min_ms, ATR_MONITOR_BACKOFF_MIN_DEFAULT_MS},
        {"serve.backoff_max", &mo->backoff_max_ms, ATR_MONITOR_BACKOFF_MAX_DEFAULT_MS},
    };
    for (size_t i = 0; i < sizeof(monitor) / sizeof(monitor[0]); i++) {
        if (atr_config_get_duration_ms(monitor[i].out, cfg, monitor[i].key, monitor[i].def, 100,
                                       7 * 86400000LL, &err) != ATR_OK) {
            fprintf(stderr, "atrest: config: %s\n", atr_err_msg(&err));
            return 0;
        }
    }
    bool test_clock = false, thread = true;
    if (!cfg_size(&vo->reserve_size, cfg, "serve.reserve_size", ATR_RESERVE_SIZE_DEFAULT, 0,
                  ATR_RESERVE_SIZE_MAX, &err) ||
        atr_config_get_bool(&test_clock, cfg, "serve.test_clock", false, &err) != ATR_OK ||
        atr_config_get_bool(&thread, cfg, "serve.monitor_thread", true, &err) != ATR_OK) {
        fprintf(stderr, "atrest: config: %s\n", atr_err_msg(&err));
        return 0;
    }
    vo->no_reserve = vo->reserve_size == 0;
    mo->no_thread = !thread;
    *want_test_clock = test_clock;
    vo->max_lines = (size_t)lines;
    vo->no_compress = !compress;
    vo->tk_ttl_ms = ms;
    so->threads = (unsigned)threads;
    return 1;
}

int atr_cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        ATR_CLI_SERVE_LONGOPTS,
        {"idp", required_argument, NULL, 'i'},
        {"ca", required_argument, NULL, 'C'},
        {"audience", required_argument, NULL, 'a'},
        {"bench-plaintext", no_argument, NULL, 'B'},
        {"byok-client-id", required_argument, NULL, 'I'},
        {"byok-secret-file", required_argument, NULL, 'S'},
        {"byok-vault-host", required_argument, NULL, 'V'},
        {"byok-cert-file", required_argument, NULL, 'P'},
        {"byok-key-file", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    struct atr_cli_serving sv;
    atr_cli_serving_init(&sv, "serve", "service", SERVE_DEFAULT_PORT);
    struct atr_service_opts vo;
    memset(&vo, 0, sizeof(vo));
    const char *vault_hosts[BYOK_MAX_HOSTS];
    const char *byok_secret_file = NULL, *byok_cert_file = NULL, *byok_key_file = NULL;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int h = atr_cli_serving_opt(&sv, ch, optarg);
        if (h < 0)
            return -h;
        if (h > 0)
            continue;
        switch (ch) {
        case 'i':
            vo.idp_authority = optarg;
            break;
        case 'C':
            vo.ca_file = optarg;
            break;
        case 'a':
            vo.audience = optarg;
            break;
        case 'I':
            vo.byok_client_id = optarg;
            break;
        case 'S':
            byok_secret_file = optarg;
            break;
        case 'P':
            byok_cert_file = optarg;
            break;
        case 'K':
            byok_key_file = optarg;
            break;
        case 'V':
            if (vo.byok_nvault_hosts == BYOK_MAX_HOSTS)
                return atr_args_usage_error("serve", "at most %d --byok-vault-host",
                                            BYOK_MAX_HOSTS);
            vault_hosts[vo.byok_nvault_hosts++] = optarg;
            break;
        case 'B':
#ifdef ATR_TEST_BUILD
            vo.bench_plaintext = 1;
            break;
#else
            return atr_args_usage_error("serve", "--bench-plaintext exists only in test builds");
#endif
        case 'h':
            serve_usage(stdout);
            return ATR_EXIT_OK;
        default:
            return atr_args_getopt_error("serve", ch, argv);
        }
    }
    int rc = atr_cli_serving_prepare(&sv, argc, argv, "serve.admin_secret");
    if (rc != ATR_EXIT_OK) {
        atr_cli_serving_cleanup(&sv);
        return rc;
    }
    rc = ATR_EXIT_FAIL;
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_service *svc = NULL;
    char path[4096], db[4096 + 8], srk[4096];
    char byok_secret[ATR_CLI_SECRET_MAX];
    byok_secret[0] = '\0';
    char byok_cert[16384], byok_key[16384]; /* a certificate credential (the key is wiped) */
    byok_cert[0] = byok_key[0] = '\0';
    bool want_test_clock = false;
    struct atr_offset_clock test_clock;
    vo.byok_vault_hosts = vault_hosts;
    if (vo.byok_client_id == NULL)
        vo.byok_client_id = atr_config_get(sv.cfg, "serve.byok_client_id");
    if (byok_cert_file == NULL)
        byok_cert_file = atr_config_get(sv.cfg, "serve.byok_cert_file");
    if (byok_key_file == NULL)
        byok_key_file = atr_config_get(sv.cfg, "serve.byok_key_file");
    if (vo.byok_client_id != NULL && (byok_cert_file != NULL || byok_key_file != NULL)) {
        /* a certificate credential: client assertions instead of a secret */
        struct stat st;
        if (byok_cert_file == NULL || byok_key_file == NULL || byok_secret_file != NULL) {
            atr_cli_serving_cleanup(&sv);
            return atr_args_usage_error("serve", "a certificate credential needs both "
                                                 "--byok-cert-file and --byok-key-file, and no "
                                                 "--byok-secret-file");
        }
        if (stat(byok_key_file, &st) != 0 || (st.st_mode & 077) != 0) {
            fprintf(stderr, "atrest: %s must exist and be readable by its owner only (chmod 600)\n",
                    byok_key_file);
            atr_cli_serving_cleanup(&sv);
            return ATR_EXIT_FAIL;
        }
        if (!atr_cli_read_small_file(byok_cert, sizeof(byok_cert), byok_cert_file) ||
            !atr_cli_read_small_file(byok_key, sizeof(byok_key), byok_key_file)) {
            fprintf(stderr, "atrest: cannot read %s or %s\n", byok_cert_file, byok_key_file);
            OPENSSL_cleanse(byok_key, sizeof(byok_key));
            atr_cli_serving_cleanup(&sv);
            return ATR_EXIT_FAIL;
        }
        vo.byok_client_cert_pem = byok_cert;
        vo.byok_client_key_pem = atr_span_str(byok_key);
        if (vo.byok_nvault_hosts == 0)
            vault_hosts[vo.byok_nvault_hosts++] = "vault.azure.net";
    } else if (vo.byok_client_id != NULL) {
        const char *cfg_secret = atr_config_get(sv.cfg, "serve.byok_client_secret");
        if (byok_secret_file != NULL) {
            if (!atr_cli_read_small_file(byok_secret, sizeof(byok_secret), byok_secret_file)) {
                fprintf(stderr, "atrest: cannot read %s\n", byok_secret_file);
                atr_cli_serving_cleanup(&sv);
                return ATR_EXIT_FAIL;
            }
        } else if (cfg_secret != NULL) {
            snprintf(byok_secret, sizeof(byok_secret), "%s", cfg_secret);
        } else {
            atr_cli_serving_cleanup(&sv);
            return atr_args_usage_error("serve", "--byok-client-id needs --byok-secret-file");
        }
        vo.byok_client_secret = byok_secret;
        if (vo.byok_nvault_hosts == 0)
            vault_hosts[vo.byok_nvault_hosts++] = "vault.azure.net";
    }
    vo.admin_secret = sv.secret;
    vo.store_location = db;
    vo.srk_path = srk;
    if (!atr_cli_serving_path(path, sizeof(path), &sv, "atrest.db") ||
        !atr_cli_serving_path(srk, sizeof(srk), &sv, "srk.key") ||
        !serve_settings(&vo, &sv.so, &want_test_clock, sv.cfg)) {
        /* message printed */
    } else {
        /* serve.storage: a postgres:// URL (several nodes on one database); default SQLite */
        const char *storage = atr_config_get(sv.cfg, "serve.storage");
        if (storage != NULL && storage[0] != '\0')
            vo.store_location = storage;
        else
            snprintf(db, sizeof(db), "sqlite:%s", path);
        if (want_test_clock) {
            atr_offset_clock_init(&test_clock, atr_clock_real());
            vo.test_clock = &test_clock;
            fprintf(stderr, "atrest: test clock on: POST /admin/clock moves the service's time\n");
        }
        if (vo.idp_authority == NULL)
            fprintf(stderr, "atrest: no --idp given: every /v1 call will be refused\n");
        atr_status new_rc = atr_service_new(&svc, &vo, &err);
        /* the client holds its own copy of the key (secure heap): wipe ours now */
        OPENSSL_cleanse(byok_key, sizeof(byok_key));
        vo.byok_client_key_pem = atr_span_of(NULL, 0);
        if (new_rc != ATR_OK) {
            fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        } else {
            sv.so.auth = atr_service_auth;
            sv.so.auth_ctx = svc;
            sv.so.observe = atr_service_observe;
            sv.so.observe_ctx = svc;
            size_t nroutes = 0;
            const struct atr_route *routes = atr_service_routes(&nroutes);
            rc = atr_cli_serving_run(&sv, routes, nroutes, svc, NULL, NULL);
        }
    }
    atr_service_free(svc);
    atr_cli_serving_cleanup(&sv);
    OPENSSL_cleanse(byok_secret, sizeof(byok_secret));
    OPENSSL_cleanse(byok_key, sizeof(byok_key));
    return rc;
}

int atr_cmd_srk(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"ca", required_argument, NULL, 'C'},
        {"admin-secret-file", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *ca = NULL, *secret_file = NULL;
    if (argc < 2 || strcmp(argv[1], "rotate") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            printf("usage: atrest srk rotate [--url URL] [--ca FILE] [--admin-secret-file F]\n"
                   "Adds a service root key version to a running service and re-wraps every\n"
                   "tenant key under it (records are not touched). The secret may also come\n"
                   "from ATREST_SERVE_ADMIN_SECRET.\n");
            return ATR_EXIT_OK;
        }
        return atr_args_usage_error("srk", "use 'atrest srk rotate'");
    }
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 'C':
            ca = optarg;
            break;
        case 'S':
            secret_file = optarg;
            break;
        case 'h':
            printf("usage: atrest srk rotate [--url URL] [--ca FILE] [--admin-secret-file F]\n");
            return ATR_EXIT_OK;
        default:
            return atr_args_getopt_error("srk rotate", ch, argv + 1);
        }
    }
    if (optind < argc - 1)
        return atr_args_usage_error("srk rotate", "unexpected argument '%s'", argv[optind + 1]);
    char def[64];
    snprintf(def, sizeof(def), "https://127.0.0.1:%d", SERVE_DEFAULT_PORT);
    char secret[ATR_CLI_SECRET_MAX];
    if (!atr_cli_secret_read(secret, sizeof(secret), secret_file, "ATREST_SERVE_ADMIN_SECRET"))
        return ATR_EXIT_FAIL;
    struct atr_cli_rest t = {url != NULL ? url : def, ca, secret, NULL, NULL};
    int rc = atr_cli_rest_run(&t, "POST", "/admin/srk/rotate", NULL, 200, 1);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}
