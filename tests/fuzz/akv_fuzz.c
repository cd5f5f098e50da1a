/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the parsers of the Azure Key Vault client (src/kms/akv.c),
 * which read what a customer's vault and an identity authority send, and
 * the key URIs tenant admins paste: atr_akv_uri_parse,
 * atr_akv_challenge_parse, atr_akv_token_answer_parse,
 * atr_akv_token_error_classify, atr_akv_vault_error_classify,
 * atr_akv_key_op_answer_parse, atr_akv_versions_page_parse,
 * atr_akv_retry_after_parse.
 *
 * Properties: nothing crashes; an accepted key URI formats back to a URI
 * that parses to the same key; an accepted challenge has an https
 * authority and a tenant; classification always yields a failure cause
 * with a message; an accepted wrap answer names a version of the key and
 * holds 1..ATR_AKV_VALUE_MAX bytes; accepted version items all name the key.
 * Any violation aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "kms/akv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16 * 1024)
        return 0;
    char *text = atr_malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct atr_span body = atr_span_of(data, size);

    struct atr_akv_key_uri k;
    if (atr_akv_uri_parse(&k, text, NULL) == ATR_OK) {
        char back[ATR_AKV_URI_MAX + 64];
        struct atr_akv_key_uri k2;
        if (atr_akv_uri_format(back, sizeof(back), &k, 1) != ATR_OK ||
            atr_akv_uri_parse(&k2, back, NULL) != ATR_OK || strcmp(k.host, k2.host) != 0 ||
            strcmp(k.name, k2.name) != 0 || strcmp(k.version, k2.version) != 0)
            abort();
    }
    struct atr_akv_challenge c;
    if (atr_akv_challenge_parse(&c, text, NULL) == ATR_OK &&
        (strncmp(c.authority, "https://", 8) != 0 || c.tenant[0] == '\0'))
        abort();
    char *tok = NULL;
    int64_t exp = 0;
    if (atr_akv_token_answer_parse(&tok, &exp, body, NULL) == ATR_OK) {
        if (tok == NULL || exp < 1)
            abort();
        atr_free(tok);
    }
    struct atr_akv_error e;
    memset(&e, 0, sizeof(e));
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_token_error_classify(&e, "login", "t", "app", 400, text, body, &err) == ATR_OK ||
        e.cause == ATR_AKV_OK || err.msg[0] == '\0')
        abort();
    struct atr_akv_key_uri key;
    if (atr_akv_uri_parse(&key, "https://v1.vault.azure.net/keys/k1", NULL) != ATR_OK)
        abort();
    static const unsigned statuses[] = {400, 401, 403, 404, 409, 429, 500};
    memset(&e, 0, sizeof(e));
    if (atr_akv_vault_error_classify(&e, ATR_AKV_OP_UNWRAP, &key, statuses[size % 7], text, text,
                                     body, NULL) == ATR_OK ||
        e.cause == ATR_AKV_OK)
        abort();
    char kid[ATR_AKV_KID_MAX];
    struct atr_buf v;
    atr_buf_init(&v, ATR_AKV_VALUE_MAX);
    if (atr_akv_key_op_answer_parse(kid, &v, &key, body, NULL) == ATR_OK &&
        (v.len == 0 || v.len > ATR_AKV_VALUE_MAX ||
         strncasecmp(kid, "https://v1.vault.azure.net/keys/k1/", 35) != 0))
        abort();
    atr_buf_cleanup(&v);
    struct atr_akv_versions acc;
    memset(&acc, 0, sizeof(acc));
    char next[1024];
    if (atr_akv_versions_page_parse(&acc, next, sizeof(next), &key, 50, body, NULL) == ATR_OK) {
        for (size_t i = 0; i < acc.n; i++) {
            if (strlen(acc.items[i].version) != ATR_AKV_VERSION_LEN)
                abort();
        }
    }
    atr_akv_versions_cleanup(&acc);
    (void)atr_akv_retry_after_parse(text, 0);
    atr_free(text);
    return 0;
}
