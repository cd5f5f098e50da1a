/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/sig.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "crypto/ossl.h"

#define VERIFY_FAILED_MSG "signature verification failed"

struct alg_info {
    const char *name;
    int pss;
    size_t digest_len;
};

/* Indexed by atr_sig_alg - 1. */
static const struct alg_info algs[] = {
    {"RS256", 0, 32}, {"RS384", 0, 48}, {"RS512", 0, 64},
    {"PS256", 1, 32}, {"PS384", 1, 48}, {"PS512", 1, 64},
};

static const struct alg_info *alg_get(atr_sig_alg alg)
{
    switch (alg) {
    case ATR_SIG_RS256:
    case ATR_SIG_RS384:
    case ATR_SIG_RS512:
    case ATR_SIG_PS256:
    case ATR_SIG_PS384:
    case ATR_SIG_PS512:
        return &algs[alg - 1];
    default:
        return NULL;
    }
}

static const EVP_MD *alg_md(const struct alg_info *a)
{
    switch (a->digest_len) {
    case 32:
        return EVP_sha256();
    case 48:
        return EVP_sha384();
    case 64:
        return EVP_sha512();
    default:
        return NULL;
    }
}

atr_status atr_sig_alg_from_name(atr_sig_alg *out, const char *name, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    if (name == NULL)
        return atr_err_set(err, ATR_E_INVALID, "signature algorithm: no name");
    for (size_t i = 0; i < ATR_ARRAY_LEN(algs); i++) {
        if (strcmp(name, algs[i].name) == 0) {
            *out = (atr_sig_alg)(i + 1);
            return ATR_OK;
        }
    }
    /* The name is attacker-controlled text: do not echo it. */
    return atr_err_set(err, ATR_E_UNSUPPORTED, "signature algorithm not supported");
}

const char *atr_sig_alg_name(atr_sig_alg alg)
{
    const struct alg_info *a = alg_get(alg);
    return a != NULL ? a->name : NULL;
}

size_t atr_sig_alg_digest_len(atr_sig_alg alg)
{
    const struct alg_info *a = alg_get(alg);
    return a != NULL ? a->digest_len : 0;
}

atr_status atr_sig_digest(uint8_t *out, size_t *out_len, atr_sig_alg alg, struct atr_span msg,
                          struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && out_len != NULL);
    ATR_ASSERT_ARG(msg.ptr != NULL || msg.len == 0);
    *out_len = 0;
    const struct alg_info *a = alg_get(alg);
    if (a == NULL)
        return atr_err_set(err, ATR_E_INVALID, "signature: unknown algorithm");
    unsigned n = 0;
    ATR_TRY_OSSL(
        EVP_Digest(msg.len > 0 ? msg.ptr : (const uint8_t *)"", msg.len, out, &n, alg_md(a), NULL),
        ATR_E_CRYPTO, err);
    *out_len = n;
    return ATR_OK;
}

/* Sets RSA padding (and PSS parameters) on a context prepared for @p a. */
static int set_padding(EVP_PKEY_CTX *pctx, const struct alg_info *a)
{
    if (!a->pss)
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, alg_md(a)) > 0;
}

/* Common checks of the sign functions; reserves room in @p out. */
static atr_status sign_prepare(const struct alg_info **out_alg, size_t *out_siglen,
                               struct atr_buf *out, const struct atr_rsa_key *key, atr_sig_alg alg,
                               struct atr_err *err)
{
    const struct alg_info *a = alg_get(alg);
    if (a == NULL)
        return atr_err_set(err, ATR_E_INVALID, "signature: unknown algorithm");
    if (!atr_rsa_key_has_private(key))
        return atr_err_set(err, ATR_E_INVALID, "signature: signing needs a private key");
    size_t siglen = atr_rsa_key_size(key);
    atr_status rc = atr_buf_reserve(out, siglen);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "signature: no room for the signature");
    *out_alg = a;
    *out_siglen = siglen;
    return ATR_OK;
}

atr_status atr_sig_sign(struct atr_buf *out, const struct atr_rsa_key *key, atr_sig_alg alg,
                        struct atr_span msg, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    ATR_ASSERT_ARG(msg.ptr != NULL || msg.len == 0);
    const struct alg_info *a = NULL;
    size_t cap = 0;
    ATR_TRY(sign_prepare(&a, &cap, out, key, alg, err));

    atr_status rc = ATR_OK;
    EVP_PKEY_CTX *pctx = NULL; /* owned by mctx */
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "signature: out of memory");
        goto done;
    }
    if (EVP_DigestSignInit(mctx, &pctx, alg_md(a), NULL, atr_rsa_key_pkey(key)) != 1 ||
        !set_padding(pctx, a)) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "signature: cannot set up %s signing", a->name);
        goto done;
    }
    size_t siglen = cap;
    if (EVP_DigestSign(mctx, out->ptr + out->len, &siglen,
                       msg.len > 0 ? msg.ptr : (const uint8_t *)"", msg.len) != 1 ||
        siglen != cap) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "signature: %s signing failed", a->name);
        goto done;
    }
    out->len += siglen;
done:
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* The verdict of an OpenSSL verify call: 1 valid, anything else invalid. */
static atr_status verdict(int r, struct atr_err *err)
{
    if (r == 1)
        return ATR_OK;
    return atr_ossl_fail(err, ATR_E_AUTH_FAILED, VERIFY_FAILED_MSG);
}

atr_status atr_sig_verify(const struct atr_rsa_key *key, atr_sig_alg alg, struct atr_span msg,
                          struct atr_span sig, struct atr_err *err)
{
    ATR_ASSERT_ARG(key != NULL);
    ATR_ASSERT_ARG(msg.ptr != NULL || msg.len == 0);
    ATR_ASSERT_ARG(sig.ptr != NULL || sig.len == 0);
    const struct alg_info *a = alg_get(alg);
    if (a == NULL)
        return atr_err_set(err, ATR_E_INVALID, "signature: unknown algorithm");
    if (sig.len != atr_rsa_key_size(key))
        return atr_err_set(err, ATR_E_AUTH_FAILED, VERIFY_FAILED_MSG);

    atr_status rc = ATR_OK;
    EVP_PKEY_CTX *pctx = NULL; /* owned by mctx */
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "signature: out of memory");
        goto done;
    }
    if (EVP_DigestVerifyInit(mctx, &pctx, alg_md(a), NULL, atr_rsa_key_pkey(key)) != 1 ||
        !set_padding(pctx, a)) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "signature: cannot set up %s verification", a->name);
        goto done;
    }
    rc = verdict(EVP_DigestVerify(mctx, sig.ptr, sig.len,
                                  msg.len > 0 ? msg.ptr : (const uint8_t *)"", msg.len),
                 err);
done:
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* A context for the digest form: sign (1) or verify (0) with @p a. */
static atr_status digest_ctx(EVP_PKEY_CTX **out, const struct atr_rsa_key *key,
                             const struct alg_info *a, int sign, struct atr_err *err)
{
    *out = NULL;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(atr_rsa_key_pkey(key), NULL);
    if (pctx == NULL)
        return atr_ossl_fail(err, ATR_E_NOMEM, "signature: out of memory");
    int ok = (sign ? EVP_PKEY_sign_init(pctx) : EVP_PKEY_verify_init(pctx)) == 1 &&
             EVP_PKEY_CTX_set_signature_md(pctx, alg_md(a)) > 0 && set_padding(pctx, a);
    if (!ok) {
        EVP_PKEY_CTX_free(pctx);
        return atr_ossl_fail(err, ATR_E_CRYPTO, "signature: cannot set up %s %s", a->name,
                             sign ? "signing" : "verification");
    }
    *out = pctx;
    return ATR_OK;
}

atr_status atr_sig_sign_digest(struct atr_buf *out, const struct atr_rsa_key *key, atr_sig_alg alg,
                               struct atr_span digest, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    ATR_ASSERT_ARG(digest.ptr != NULL || digest.len == 0);
    const struct alg_info *a = alg_get(alg);
    if (a != NULL && digest.len != a->digest_len)
        return atr_err_set(err, ATR_E_INVALID, "signature: %s needs a %zu-byte digest", a->name,
                           a->digest_len);
    size_t cap = 0;
    ATR_TRY(sign_prepare(&a, &cap, out, key, alg, err));

    EVP_PKEY_CTX *pctx = NULL;
    ATR_TRY(digest_ctx(&pctx, key, a, 1, err));
    atr_status rc = ATR_OK;
    size_t siglen = cap;
    if (EVP_PKEY_sign(pctx, out->ptr + out->len, &siglen, digest.ptr, digest.len) != 1 ||
        siglen != cap) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "signature: %s signing failed", a->name);
        goto done;
    }
    out->len += siglen;
done:
    EVP_PKEY_CTX_free(pctx);
    return rc;
}

atr_status atr_sig_verify_digest(const struct atr_rsa_key *key, atr_sig_alg alg,
                                 struct atr_span digest, struct atr_span sig, struct atr_err *err)
{
    ATR_ASSERT_ARG(key != NULL);
    ATR_ASSERT_ARG(digest.ptr != NULL || digest.len == 0);
    ATR_ASSERT_ARG(sig.ptr != NULL || sig.len == 0);
    const struct alg_info *a = alg_get(alg);
    if (a == NULL)
        return atr_err_set(err, ATR_E_INVALID, "signature: unknown algorithm");
    if (digest.len != a->digest_len)
        return atr_err_set(err, ATR_E_INVALID, "signature: %s needs a %zu-byte digest", a->name,
                           a->digest_len);
    if (sig.len != atr_rsa_key_size(key))
        return atr_err_set(err, ATR_E_AUTH_FAILED, VERIFY_FAILED_MSG);

    EVP_PKEY_CTX *pctx = NULL;
    ATR_TRY(digest_ctx(&pctx, key, a, 0, err));
    atr_status rc = verdict(EVP_PKEY_verify(pctx, sig.ptr, sig.len, digest.ptr, digest.len), err);
    EVP_PKEY_CTX_free(pctx);
    return rc;
}
