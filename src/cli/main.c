/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The atrest executable: one binary, git/openssl-style subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/secmem.h"
#include "cli/args.h"
#include "cli/commands.h"

/* Secure heap for key material: 1 MiB, enough for thousands of cached keys. */
#define ATR_SECURE_HEAP_BYTES (1u << 20)

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const struct atr_cli_command commands[] = {
    {"help", "show this help", cmd_help},
    {"version", "print the version", cmd_version},
    {"cert", "create a local CA and TLS server certificates", atr_cmd_cert},
    {"echo", "run a TLS JSON echo server (plumbing demo)", atr_cmd_echo},
    {"dev", "start the whole system locally with a demo", atr_cmd_dev},
    {"idp", "run the identity server (Entra ID subset) and its admin commands", atr_cmd_idp},
    {"vault", "run the key vault server (Azure Key Vault keys) and its admin commands",
     atr_cmd_vault},
    {"serve", "run the data service (tenants, encrypted records, audit, metrics)", atr_cmd_serve},
    {"srk", "rotate the service root key of a running service", atr_cmd_srk},
    {"records", "ingest and query a tenant's records (client of the service)", atr_cmd_records},
    {"encryption",
     "a tenant's customer key: status, enable, disable, audit (client of the service)",
     atr_cmd_encryption},
    {"monitor", "run a pass of the service's key monitor now (rolls, checks; admin)",
     atr_cmd_monitor},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: atrest <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < ATR_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nRun 'atrest <command> --help' (or 'atrest help <command>') for the options of a\n"
            "command. The client commands take their settings from flags, then ATREST_*\n"
            "environment variables, then a profile file (--profile, ATREST_PROFILE, or\n"
            ".dev/profile as `atrest dev` writes it); see docs/cli.md.\n"
            "Exit codes: 0 ok, 1 failed, 2 usage.\n");
}

static const struct atr_cli_command *find(const char *name)
{
    for (size_t i = 0; i < ATR_ARRAY_LEN(commands); i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* atrest help [COMMAND]: the list, or COMMAND --help. */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return ATR_EXIT_OK;
    }
    const struct atr_cli_command *c = find(argv[1]);
    if (c != NULL && argc == 2 && c->run == cmd_help) {
        usage(stdout);
        return ATR_EXIT_OK;
    }
    if (c == NULL || argc > 2)
        return atr_args_usage_error("help",
                                    argv[1][0] == '-' ? "unknown option '%s'" : "no command '%s'",
                                    argc > 2 ? argv[2] : argv[1]);
    char *sub[] = {argv[1], (char *)"--help", NULL};
    return c->run(2, sub);
}

static int cmd_version(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: atrest version\nPrints the version of atrest.\n");
        return ATR_EXIT_OK;
    }
    if (argc >= 2)
        return atr_args_usage_error("version", "unexpected argument '%s'", argv[1]);
    printf("atrest %s\n", ATR_VERSION);
    return ATR_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ATR_EXIT_USAGE;
    }
    /*
     * Every subcommand runs without core dumps and with a locked secure heap;
     * sanitizer builds may run with an unlocked one (ASan maps shadow memory
     * that can push mlock past RLIMIT_MEMLOCK).
     */
    struct atr_err err;
    atr_err_clear(&err);
#ifdef ATR_SANITIZED
    const int allow_unprotected = 1;
#else
    const int allow_unprotected = 0;
#endif
    if (atr_secmem_harden_process(&err) != ATR_OK ||
        atr_secmem_init(ATR_SECURE_HEAP_BYTES, allow_unprotected, &err) != ATR_OK) {
        fprintf(stderr, "atrest: %s\n", atr_err_msg(&err));
        return ATR_EXIT_FAIL;
    }

    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    if (strcmp(name, "--version") == 0)
        name = "version";
    const struct atr_cli_command *c = find(name);
    if (c != NULL)
        return c->run(argc - 1, argv + 1);
    fprintf(stderr, "atrest: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return ATR_EXIT_USAGE;
}
