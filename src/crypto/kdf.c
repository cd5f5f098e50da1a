/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/kdf.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "crypto/ossl.h"

atr_status atr_kdf_hkdf_sha256(struct atr_secret *out, size_t len, struct atr_span ikm,
                               struct atr_span salt, struct atr_span info, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(ikm.ptr != NULL || ikm.len == 0);
    ATR_ASSERT_ARG(salt.ptr != NULL || salt.len == 0);
    ATR_ASSERT_ARG(info.ptr != NULL || info.len == 0);
    if (len == 0 || len > ATR_KDF_HKDF_SHA256_MAX)
        return atr_err_set(err, ATR_E_INVALID,
                           "HKDF-SHA256: output length must be 1..%d bytes (asked for %zu)",
                           ATR_KDF_HKDF_SHA256_MAX, len);
    if (ikm.len == 0)
        return atr_err_set(err, ATR_E_INVALID, "HKDF-SHA256: the input key material is empty");

    atr_status rc = atr_secret_init(out, len);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "HKDF-SHA256: no secure memory for the output");
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf == NULL ? NULL : EVP_KDF_CTX_new(kdf);
    if (ctx == NULL) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "HKDF-SHA256 is not available");
        goto done;
    }
    OSSL_PARAM params[5];
    size_t i = 0;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm.ptr, ikm.len);
    if (salt.len > 0)
        params[i++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt.ptr, salt.len);
    if (info.len > 0)
        params[i++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info.ptr, info.len);
    params[i] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, atr_secret_data(out), len, params) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "HKDF-SHA256: derivation failed");
        goto done;
    }
done:
    EVP_KDF_CTX_free(ctx); /* the provider clears its copy of the key */
    EVP_KDF_free(kdf);
    if (rc != ATR_OK)
        atr_secret_cleanup(out);
    return rc;
}

atr_status atr_kdf_hmac_sha256(uint8_t *out, struct atr_span key, struct atr_span msg,
                               struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(key.ptr != NULL || key.len == 0);
    ATR_ASSERT_ARG(msg.ptr != NULL || msg.len == 0);
    atr_status rc = ATR_OK;
    /* EVP_MAC_init() treats a NULL key as "keep the old one": give it a pointer */
    static const uint8_t empty[1] = {0};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac == NULL ? NULL : EVP_MAC_CTX_new(mac);
    if (ctx == NULL) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "HMAC-SHA256 is not available");
        goto done;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t outl = 0;
    if (EVP_MAC_init(ctx, key.len > 0 ? key.ptr : empty, key.len, params) != 1 ||
        EVP_MAC_update(ctx, msg.len > 0 ? msg.ptr : empty, msg.len) != 1 ||
        EVP_MAC_final(ctx, out, &outl, ATR_KDF_SHA256_LEN) != 1 || outl != ATR_KDF_SHA256_LEN) {
        atr_wipe(out, ATR_KDF_SHA256_LEN);
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "HMAC-SHA256: computation failed");
        goto done;
    }
done:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

atr_status atr_kdf_hmac_sha256_verify(struct atr_span key, struct atr_span msg, struct atr_span tag,
                                      struct atr_err *err)
{
    ATR_ASSERT_ARG(tag.ptr != NULL || tag.len == 0);
    if (tag.len < ATR_KDF_HMAC_MIN_TAG || tag.len > ATR_KDF_SHA256_LEN)
        return atr_err_set(err, ATR_E_INVALID, "HMAC-SHA256: a tag must be %d..%d bytes, not %zu",
                           ATR_KDF_HMAC_MIN_TAG, ATR_KDF_SHA256_LEN, tag.len);
    uint8_t mac[ATR_KDF_SHA256_LEN];
    atr_status rc = atr_kdf_hmac_sha256(mac, key, msg, err);
    if (rc == ATR_OK && CRYPTO_memcmp(mac, tag.ptr, tag.len) != 0)
        rc = atr_err_set(err, ATR_E_AUTH_FAILED, "HMAC-SHA256: the tag does not match");
    atr_wipe(mac, sizeof(mac));
    return rc;
}
