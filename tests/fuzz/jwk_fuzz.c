/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_jwk_parse, atr_jwk_import, atr_jwk_export
 * (src/crypto/jwk.c), and through them atr_b64url_decode,
 * atr_rsa_key_from_components, atr_rsa_key_get_component and the RSA key
 * validation (src/crypto/rsa.c): the path of every JWK our vault or service
 * receives.
 *
 * Input: the bytes, as JSON text.
 *
 * Properties (any violation aborts):
 *  - parsing never crashes and returns only its documented codes; on failure
 *    no key is returned and the error carries the returned code and a
 *    message starting with "JWK";
 *  - a key that imports exports again (public, and private when it has one)
 *    and the export imports to a key with the same modulus and the same
 *    private/public kind. The one allowed exception: the re-import may fail
 *    with ATR_E_INVALID, because OpenSSL's public-key check
 *    (EVP_PKEY_public_check) tests the modulus with random Miller-Rabin
 *    bases, so a malformed modulus with a smallish factor is caught by some
 *    runs and not others (never a real key: its factors are huge).
 * The secure heap is set up once (unprotected allowed) so private parts take
 * the same path as in production.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"
#include "crypto/jwk.h"
#include "crypto/rsa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_modulus(const struct atr_rsa_key *a, const struct atr_rsa_key *b)
{
    struct atr_buf n1, n2;
    atr_buf_init(&n1, 4096);
    atr_buf_init(&n2, 4096);
    int same = atr_rsa_key_get_component(&n1, a, ATR_RSA_PART_N, NULL) == ATR_OK &&
               atr_rsa_key_get_component(&n2, b, ATR_RSA_PART_N, NULL) == ATR_OK &&
               n1.len == n2.len && memcmp(n1.ptr, n2.ptr, n1.len) == 0;
    atr_buf_cleanup(&n1);
    atr_buf_cleanup(&n2);
    return same;
}

static void check_round_trip(const struct atr_rsa_key *key, atr_jwk_content what)
{
    json_t *j = NULL;
    if (atr_jwk_export(&j, key, what, NULL) != ATR_OK || j == NULL)
        abort();
    struct atr_rsa_key *back = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwk_import(&back, j, &err);
    if (rc == ATR_E_INVALID && back == NULL && err.code == ATR_E_INVALID) {
        json_decref(j);
        return;
    }
    if (rc != ATR_OK || back == NULL)
        abort();
    if (!same_modulus(key, back) ||
        atr_rsa_key_has_private(back) != (what == ATR_JWK_PRIVATE ? 1 : 0))
        abort();
    atr_rsa_key_free(back);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int heap_ready;
    if (!heap_ready) {
        if (atr_secmem_init((size_t)1 << 20, 1, NULL) != ATR_OK)
            abort();
        heap_ready = 1;
    }

    struct atr_rsa_key *key = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwk_parse(&key, (const char *)data, size, &err);
    if (rc != ATR_OK) {
        if (key != NULL || err.code != rc || strncmp(err.msg, "JWK", 3) != 0)
            abort();
        if (rc != ATR_E_PARSE && rc != ATR_E_INVALID && rc != ATR_E_UNSUPPORTED &&
            rc != ATR_E_TOO_LARGE && rc != ATR_E_NOMEM && rc != ATR_E_CRYPTO)
            abort();
        return 0;
    }
    if (key == NULL)
        abort();
    check_round_trip(key, ATR_JWK_PUBLIC);
    if (atr_rsa_key_has_private(key))
        check_round_trip(key, ATR_JWK_PRIVATE);
    atr_rsa_key_free(key);
    return 0;
}
