/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CLI_REST_H
#define ATR_CLI_REST_H

/*
 * The REST calls of the admin subcommands (`atrest idp ...`,
 * `atrest vault ...`): one HTTPS request to a running server with an
 * optional bearer secret, printing failures in one wording. Never touches
 * a server's state files.
 */

#include <stddef.h>

#include <jansson.h>

#include "http/client.h"

#define ATR_CLI_SECRET_MAX 512

/* Largest response body a client command reads (a records page is at most 8 MiB). */
#define ATR_CLI_RESPONSE_MAX ((size_t)16 << 20)

/*
 * An error answer, whatever its shape: atrest's and Key Vault's
 * {"error":{"code","message","fix"?,"reason"?,"innererror"?}}, Graph's, and
 * OAuth's {"error":"invalid_client","error_description":"AADSTS..."}.
 * Text is one line, control characters replaced; empty when absent.
 */
struct atr_cli_http_error {
    unsigned status;
    char code[128];  /* error.code, or OAuth's error */
    char inner[128]; /* innererror.code (Key Vault), reason or cause (atrest) */
    char message[1024];
    char fix[1024];
    char retry_after[32]; /* the Retry-After header */
};

/** Reads the error of @p r into @p e (never fails; a body that is not JSON is the message). */
void atr_cli_http_error_parse(struct atr_cli_http_error *e, const struct atr_http_client_resp *r);

/**
 * Prints the error of @p r on stderr:
 * "PREFIX: HTTP 400 Code (inner): message", then "  fix: ..." and
 * "  retry after: N s" when the answer gives them.
 */
void atr_cli_http_error_print(const char *prefix, const struct atr_http_client_resp *r);

/* Where and how to call. */
struct atr_cli_rest {
    const char *url;        /* base URL, e.g. https://127.0.0.1:8445 */
    const char *ca;         /* CA file to trust; NULL = system store */
    const char *bearer;     /* Authorization: Bearer value; NULL = none */
    const char *extra_name; /* one extra header (may be NULL) */
    const char *extra_value;
};

/**
 * Reads a secret: the file @p file when given, else the environment
 * variable @p env. Trailing newlines and spaces are dropped.
 * @return 1 when a non-empty secret was read; else prints why and returns 0.
 */
int atr_cli_secret_read(char *out, size_t cap, const char *file, const char *env);

/**
 * Reads the bootstrap secret in @p path, or creates the file (0600, O_EXCL)
 * with 32 random bytes in base64url when it does not exist.
 * @return 1 on success, 0 on failure (nothing printed).
 */
int atr_cli_secret_file_ensure(char *out, size_t cap, const char *path);

/** Reads a small text file (trailing whitespace dropped). @return 1 if not empty. */
int atr_cli_read_small_file(char *out, size_t cap, const char *path);

/**
 * Sends one request (@p body text or NULL, of type @p ctype; NULL means
 * application/json) and checks the status.
 * @param[out] resp the response (release with atr_http_client_resp_cleanup).
 * @return 1 when the status is @p want; else prints the failure, returns 0.
 */
int atr_cli_rest_call(struct atr_http_client_resp *resp, const struct atr_cli_rest *t,
                      const char *method, const char *path, const char *body, const char *ctype,
                      unsigned want);

/**
 * As atr_cli_rest_call() with a JSON body built by the caller (stolen; may
 * be NULL), printing the response body to stdout on success when @p print.
 * @return ATR_EXIT_OK or ATR_EXIT_FAIL.
 */
int atr_cli_rest_run(const struct atr_cli_rest *t, const char *method, const char *path,
                     json_t *body, unsigned want, int print);

#endif /* ATR_CLI_REST_H */
