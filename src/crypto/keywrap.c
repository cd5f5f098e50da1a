/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/keywrap.h"

#include <openssl/evp.h>

#include "crypto/ossl.h"

/* The OpenSSL cipher for a mode and KEK size, or NULL. */
static const char *cipher_name(atr_keywrap_mode mode, size_t kek_len)
{
    switch (mode) {
    case ATR_KEYWRAP_KW:
        return kek_len == 16   ? "AES-128-WRAP"
               : kek_len == 24 ? "AES-192-WRAP"
               : kek_len == 32 ? "AES-256-WRAP"
                               : NULL;
    case ATR_KEYWRAP_KWP:
        return kek_len == 16   ? "AES-128-WRAP-PAD"
               : kek_len == 24 ? "AES-192-WRAP-PAD"
               : kek_len == 32 ? "AES-256-WRAP-PAD"
                               : NULL;
    default:
        return NULL;
    }
}

size_t atr_keywrap_wrapped_len(atr_keywrap_mode mode, size_t key_len)
{
    switch (mode) {
    case ATR_KEYWRAP_KW:
        if (key_len < 16 || key_len % 8 != 0 || key_len > ATR_KEYWRAP_MAX_LEN)
            return 0;
        return key_len + 8;
    case ATR_KEYWRAP_KWP:
        if (key_len < 1 || key_len > ATR_KEYWRAP_MAX_LEN)
            return 0;
        return (key_len + 7) / 8 * 8 + 8;
    default:
        return 0;
    }
}

/* Checks the mode and KEK; sets *name. */
static atr_status check_kek(const char **name, const struct atr_secret *kek, atr_keywrap_mode mode,
                            struct atr_err *err)
{
    if (mode != ATR_KEYWRAP_KW && mode != ATR_KEYWRAP_KWP)
        return atr_err_set(err, ATR_E_INVALID, "key wrap: unknown mode");
    if (!atr_secret_is_set(kek))
        return atr_err_set(err, ATR_E_INVALID, "key wrap: no key-encryption key");
    *name = cipher_name(mode, atr_secret_len(kek));
    if (*name == NULL)
        return atr_err_set(err, ATR_E_INVALID,
                           "key wrap: the key-encryption key must be 16, 24 or 32 bytes");
    return ATR_OK;
}

/*
 * One wrap or unwrap through EVP into @p out, which has room for the
 * result. Sets *outlen. Returns 1 on success.
 */
static int run_cipher(uint8_t *out, size_t *outlen, const char *name, const struct atr_secret *kek,
                      int enc, struct atr_span in)
{
    int ok = 0;
    int n = 0, fin = 0;
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (cipher == NULL || ctx == NULL)
        goto done;
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_CipherInit_ex2(ctx, cipher, atr_secret_cdata(kek), NULL, enc, NULL) != 1)
        goto done;
    if (EVP_CipherUpdate(ctx, out, &n, in.ptr, (int)in.len) != 1 || n < 0)
        goto done;
    if (EVP_CipherFinal_ex(ctx, out + n, &fin) != 1 || fin != 0)
        goto done;
    *outlen = (size_t)n;
    ok = 1;
done:
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    return ok;
}

atr_status atr_keywrap_wrap(struct atr_buf *out, const struct atr_secret *kek,
                            atr_keywrap_mode mode, struct atr_span key, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(key.ptr != NULL || key.len == 0);
    const char *name = NULL;
    ATR_TRY(check_kek(&name, kek, mode, err));
    if (key.len > ATR_KEYWRAP_MAX_LEN)
        return atr_err_set(err, ATR_E_TOO_LARGE, "key wrap: the key is too long");
    size_t want = atr_keywrap_wrapped_len(mode, key.len);
    if (want == 0)
        return atr_err_set(err, ATR_E_INVALID,
                           mode == ATR_KEYWRAP_KW
                               ? "key wrap (KW): the key must be at least 16 bytes, a multiple of 8"
                               : "key wrap (KWP): the key must not be empty");
    atr_status rc = atr_buf_reserve(out, want);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "key wrap: no room for the wrapped key");
    uint8_t *dst = out->ptr + out->len;
    size_t n = 0;
    if (!run_cipher(dst, &n, name, kek, 1, key) || n != want) {
        atr_wipe(dst, want);
        return atr_ossl_fail(err, ATR_E_CRYPTO, "key wrap: wrapping failed");
    }
    out->len += n;
    return ATR_OK;
}

atr_status atr_keywrap_unwrap(struct atr_secret *out, const struct atr_secret *kek,
                              atr_keywrap_mode mode, struct atr_span wrapped, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(wrapped.ptr != NULL || wrapped.len == 0);
    const char *name = NULL;
    ATR_TRY(check_kek(&name, kek, mode, err));
    if (wrapped.len < (mode == ATR_KEYWRAP_KW ? 24u : 16u) || wrapped.len % 8 != 0 ||
        wrapped.len > ATR_KEYWRAP_MAX_LEN + 16)
        return atr_err_set(err, ATR_E_INVALID, "key unwrap: impossible wrapped length %zu",
                           wrapped.len);

    /* decrypt into secure memory; KWP's true length is known only after */
    struct atr_secret tmp = ATR_SECRET_INIT;
    atr_status rc = atr_secret_init(&tmp, wrapped.len);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "key unwrap: no secure memory");
    size_t n = 0;
    if (!run_cipher(atr_secret_data(&tmp), &n, name, kek, 0, wrapped) || n == 0 ||
        n > wrapped.len - 8) {
        rc = atr_ossl_fail(err, ATR_E_AUTH_FAILED,
                           "key unwrap: integrity check failed (wrong key-encryption key "
                           "or modified data)");
        goto done;
    }
    rc = atr_secret_init_copy(out, atr_secret_cdata(&tmp), n);
    if (rc != ATR_OK)
        atr_err_set(err, rc, "key unwrap: no secure memory");
done:
    atr_secret_cleanup(&tmp);
    return rc;
}
