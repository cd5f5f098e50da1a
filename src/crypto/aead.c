/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/aead.h"

#include <limits.h>

#include <openssl/evp.h>

#include "base/alloc.h"
#include "crypto/ossl.h"
#include "crypto/rand.h"

struct atr_aead {
    EVP_CIPHER *cipher;
    EVP_CIPHER_CTX *seal; /* key schedule set, encrypt direction */
    EVP_CIPHER_CTX *open; /* key schedule set, decrypt direction */
};

/* EVP_*Update take int lengths: longer inputs go in pieces of this size. */
#define UPDATE_CHUNK ((size_t)1 << 30)

static int seal_update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
    while (len > 0) {
        int n = (int)(len < UPDATE_CHUNK ? len : UPDATE_CHUNK);
        int outl = 0;
        if (EVP_EncryptUpdate(ctx, out, &outl, in, n) != 1 || outl != n)
            return 0;
        if (out != NULL)
            out += n;
        in += n;
        len -= (size_t)n;
    }
    return 1;
}

static int open_update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
    while (len > 0) {
        int n = (int)(len < UPDATE_CHUNK ? len : UPDATE_CHUNK);
        int outl = 0;
        if (EVP_DecryptUpdate(ctx, out, &outl, in, n) != 1 || outl != n)
            return 0;
        if (out != NULL)
            out += n;
        in += n;
        len -= (size_t)n;
    }
    return 1;
}

atr_status atr_aead_new(struct atr_aead **out, const struct atr_secret *key, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (!atr_secret_is_set(key) || atr_secret_len(key) != ATR_AEAD_KEY_LEN)
        return atr_err_set(err, ATR_E_INVALID, "AES-256-GCM needs a %d-byte key", ATR_AEAD_KEY_LEN);
    atr_status rc = ATR_OK;
    struct atr_aead *a = atr_calloc(1, sizeof(*a));
    if (a == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "AES-256-GCM: out of memory");
    a->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    a->seal = EVP_CIPHER_CTX_new();
    a->open = EVP_CIPHER_CTX_new();
    if (a->cipher == NULL || a->seal == NULL || a->open == NULL) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "AES-256-GCM is not available");
        goto done;
    }
    const uint8_t *k = atr_secret_cdata(key);
    if (EVP_EncryptInit_ex2(a->seal, a->cipher, k, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex2(a->open, a->cipher, k, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_get_iv_length(a->seal) != ATR_AEAD_NONCE_LEN) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "AES-256-GCM: cannot set the key");
        goto done;
    }
done:
    if (rc != ATR_OK) {
        atr_aead_free(a);
        return rc;
    }
    *out = a;
    return ATR_OK;
}

atr_status atr_aead_dup(struct atr_aead **out, const struct atr_aead *src, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && src != NULL);
    *out = NULL;
    atr_status rc = ATR_OK;
    struct atr_aead *a = atr_calloc(1, sizeof(*a));
    if (a == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "AES-256-GCM: out of memory");
    if (EVP_CIPHER_up_ref(src->cipher) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "AES-256-GCM: cannot copy the cipher");
        goto done;
    }
    a->cipher = src->cipher;
    a->seal = EVP_CIPHER_CTX_new();
    a->open = EVP_CIPHER_CTX_new();
    if (a->seal == NULL || a->open == NULL || EVP_CIPHER_CTX_copy(a->seal, src->seal) != 1 ||
        EVP_CIPHER_CTX_copy(a->open, src->open) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "AES-256-GCM: cannot copy the context");
        goto done;
    }
done:
    if (rc != ATR_OK) {
        atr_aead_free(a);
        return rc;
    }
    *out = a;
    return ATR_OK;
}

void atr_aead_free(struct atr_aead *aead)
{
    if (aead == NULL)
        return;
    EVP_CIPHER_CTX_free(aead->seal); /* the provider clears its key schedule */
    EVP_CIPHER_CTX_free(aead->open);
    EVP_CIPHER_free(aead->cipher);
    atr_free(aead);
}

atr_status atr_aead_seal_detached(uint8_t *ct, uint8_t *tag, struct atr_aead *aead,
                                  const uint8_t *nonce, struct atr_span aad, struct atr_span pt,
                                  struct atr_err *err)
{
    ATR_ASSERT_ARG(aead != NULL && tag != NULL && nonce != NULL);
    ATR_ASSERT_ARG((ct != NULL && pt.ptr != NULL) || pt.len == 0);
    ATR_ASSERT_ARG(aad.ptr != NULL || aad.len == 0);
    if ((uint64_t)pt.len > ATR_AEAD_MAX_LEN)
        return atr_err_set(err, ATR_E_TOO_LARGE, "AES-256-GCM: plaintext too long");
    EVP_CIPHER_CTX *ctx = aead->seal;
    uint8_t fin[ATR_AEAD_TAG_LEN]; /* GCM's final step writes no bytes */
    int finl = 0;
    if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
        !seal_update(ctx, NULL, aad.ptr, aad.len) || !seal_update(ctx, ct, pt.ptr, pt.len) ||
        EVP_EncryptFinal_ex(ctx, fin, &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, ATR_AEAD_TAG_LEN, tag) != 1) {
        if (ct != NULL)
            atr_wipe(ct, pt.len);
        atr_wipe(tag, ATR_AEAD_TAG_LEN);
        return atr_ossl_fail(err, ATR_E_CRYPTO, "AES-256-GCM: sealing failed");
    }
    return ATR_OK;
}

atr_status atr_aead_open_detached(uint8_t *pt, struct atr_aead *aead, const uint8_t *nonce,
                                  struct atr_span aad, struct atr_span ct, const uint8_t *tag,
                                  struct atr_err *err)
{
    ATR_ASSERT_ARG(aead != NULL && tag != NULL && nonce != NULL);
    ATR_ASSERT_ARG((pt != NULL && ct.ptr != NULL) || ct.len == 0);
    ATR_ASSERT_ARG(aad.ptr != NULL || aad.len == 0);
    if ((uint64_t)ct.len > ATR_AEAD_MAX_LEN)
        return atr_err_set(err, ATR_E_TOO_LARGE, "AES-256-GCM: ciphertext too long");
    EVP_CIPHER_CTX *ctx = aead->open;
    uint8_t fin[ATR_AEAD_TAG_LEN];
    int finl = 0;
    if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, ATR_AEAD_TAG_LEN, (void *)tag) != 1 ||
        !open_update(ctx, NULL, aad.ptr, aad.len) || !open_update(ctx, pt, ct.ptr, ct.len)) {
        if (pt != NULL)
            atr_wipe(pt, ct.len);
        return atr_ossl_fail(err, ATR_E_CRYPTO, "AES-256-GCM: decryption failed");
    }
    /* the tag is checked here; nothing decrypted is valid before it */
    if (EVP_DecryptFinal_ex(ctx, fin, &finl) != 1) {
        if (pt != NULL)
            atr_wipe(pt, ct.len);
        return atr_ossl_fail(err, ATR_E_AUTH_FAILED,
                             "AES-256-GCM: the message does not authenticate "
                             "(wrong key, nonce or associated data, or modified data)");
    }
    return ATR_OK;
}

atr_status atr_aead_seal(struct atr_buf *out, struct atr_aead *aead, struct atr_span aad,
                         struct atr_span pt, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && aead != NULL);
    if ((uint64_t)pt.len > ATR_AEAD_MAX_LEN)
        return atr_err_set(err, ATR_E_TOO_LARGE, "AES-256-GCM: plaintext too long");
    size_t total = pt.len + ATR_AEAD_OVERHEAD;
    atr_status rc = atr_buf_reserve(out, total);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "AES-256-GCM: no room for the sealed message");
    uint8_t *nonce = out->ptr + out->len;
    uint8_t *ct = nonce + ATR_AEAD_NONCE_LEN;
    rc = atr_rand_bytes(nonce, ATR_AEAD_NONCE_LEN, err);
    if (rc != ATR_OK)
        return rc;
    rc = atr_aead_seal_detached(ct, ct + pt.len, aead, nonce, aad, pt, err);
    if (rc != ATR_OK) {
        atr_wipe(nonce, total);
        return rc;
    }
    out->len += total;
    return ATR_OK;
}

atr_status atr_aead_open(struct atr_buf *out, struct atr_aead *aead, struct atr_span aad,
                         struct atr_span sealed, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && aead != NULL);
    ATR_ASSERT_ARG(sealed.ptr != NULL || sealed.len == 0);
    if (sealed.len < ATR_AEAD_OVERHEAD)
        return atr_err_set(err, ATR_E_AUTH_FAILED, "AES-256-GCM: the sealed message is truncated");
    size_t n = sealed.len - ATR_AEAD_OVERHEAD;
    atr_status rc = atr_buf_reserve(out, n);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "AES-256-GCM: no room for the plaintext");
    const uint8_t *nonce = sealed.ptr;
    struct atr_span ct = atr_span_of(sealed.ptr + ATR_AEAD_NONCE_LEN, n);
    rc = atr_aead_open_detached(out->ptr + out->len, aead, nonce, aad, ct,
                                sealed.ptr + ATR_AEAD_NONCE_LEN + n, err);
    if (rc != ATR_OK)
        return rc;
    out->len += n;
    return ATR_OK;
}

atr_status atr_aead_open_secret(struct atr_secret *out, struct atr_aead *aead, struct atr_span aad,
                                struct atr_span sealed, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && aead != NULL);
    ATR_ASSERT_ARG(sealed.ptr != NULL || sealed.len == 0);
    if (sealed.len < ATR_AEAD_OVERHEAD)
        return atr_err_set(err, ATR_E_AUTH_FAILED, "AES-256-GCM: the sealed message is truncated");
    size_t n = sealed.len - ATR_AEAD_OVERHEAD;
    if (n == 0)
        return atr_err_set(err, ATR_E_INVALID, "AES-256-GCM: the sealed key is empty");
    atr_status rc = atr_secret_init(out, n);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "AES-256-GCM: no secure memory for the key");
    struct atr_span ct = atr_span_of(sealed.ptr + ATR_AEAD_NONCE_LEN, n);
    rc = atr_aead_open_detached(atr_secret_data(out), aead, sealed.ptr, aad, ct,
                                sealed.ptr + ATR_AEAD_NONCE_LEN + n, err);
    if (rc != ATR_OK)
        atr_secret_cleanup(out);
    return rc;
}
