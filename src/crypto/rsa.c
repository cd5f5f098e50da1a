/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/rsa.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base/alloc.h"
#include "crypto/ossl.h"

struct atr_rsa_key {
    EVP_PKEY *pkey;
    unsigned bits;
    int priv;
};

/* Longest PEM or DER input accepted (far above a 16384-bit private key). */
#define RSA_MAX_INPUT ((size_t)1 << 20)
/* Longest integer component accepted before the size check (bytes). */
#define RSA_MAX_COMPONENT (ATR_RSA_MAX_BITS / 8 + 8)
/* Longest OAEP label accepted. */
#define RSA_MAX_LABEL ((size_t)1 << 16)

/* A readable pointer for zero-length inputs (OpenSSL may memcpy from it). */
static const uint8_t empty_input[1] = {0};

/* ---- keys ---------------------------------------------------------------- */

static int pkey_has_param(const EVP_PKEY *pkey, const char *name)
{
    BIGNUM *bn = NULL;
    ERR_set_mark();
    int ok = EVP_PKEY_get_bn_param(pkey, name, &bn) == 1;
    ERR_pop_to_mark();
    BN_clear_free(bn);
    return ok;
}

/*
 * The public exponent policy of SP 800-56B rev. 2 section 6.2 and FIPS 186-5:
 * odd, 2^16 < e < 2^256. OpenSSL's non-FIPS checks accept any odd e > 1.
 */
static int exponent_ok(const EVP_PKEY *pkey)
{
    BIGNUM *e = NULL;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
        return 0;
    int bits = BN_num_bits(e);
    int ok = BN_is_odd(e) && bits > 16 && bits <= 256;
    BN_free(e);
    return ok;
}

/*
 * Wraps @p pkey (ownership taken in every case) into a new key after
 * checking type and size and, if @p validate, the key itself.
 */
static atr_status adopt(struct atr_rsa_key **out, EVP_PKEY *pkey, int validate, struct atr_err *err)
{
    atr_status rc = ATR_OK;
    EVP_PKEY_CTX *ctx = NULL;
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        rc = atr_ossl_fail(err, ATR_E_UNSUPPORTED, "not an RSA key");
        goto done;
    }
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < ATR_RSA_MIN_BITS || bits > ATR_RSA_MAX_BITS) {
        rc = atr_ossl_fail(err, ATR_E_INVALID, "RSA key size %d bits is outside %d..%d", bits,
                           ATR_RSA_MIN_BITS, ATR_RSA_MAX_BITS);
        goto done;
    }
    int priv = pkey_has_param(pkey, OSSL_PKEY_PARAM_RSA_D);
    if (validate && !exponent_ok(pkey)) {
        rc = atr_ossl_fail(err, ATR_E_INVALID,
                           "the RSA public exponent must be odd and in [65537, 2^256)");
        goto done;
    }
    if (validate) {
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (ctx == NULL) {
            rc = atr_ossl_fail(err, ATR_E_NOMEM, "RSA: out of memory");
            goto done;
        }
        if (EVP_PKEY_public_check(ctx) != 1) {
            rc = atr_ossl_fail(err, ATR_E_INVALID, "the RSA public key is not valid (bad modulus)");
            goto done;
        }
        if (priv && EVP_PKEY_check(ctx) != 1) {
            rc = atr_ossl_fail(err, ATR_E_INVALID,
                               "the RSA private key is not valid (its parts are inconsistent)");
            goto done;
        }
    }
    struct atr_rsa_key *key = atr_calloc(1, sizeof(*key));
    if (key == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "RSA: out of memory");
        goto done;
    }
    key->pkey = pkey;
    key->bits = (unsigned)bits;
    key->priv = priv;
    pkey = NULL;
    *out = key;
done:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return rc;
}

atr_status atr_rsa_key_generate(struct atr_rsa_key **out, unsigned bits, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (bits != 2048 && bits != 3072 && bits != 4096)
        return atr_err_set(err, ATR_E_INVALID,
                           "RSA keys are generated with 2048, 3072 or 4096 bits, not %u", bits);
    atr_status rc = ATR_OK;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) != 1 ||
        EVP_PKEY_generate(ctx, &pkey) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "RSA key generation failed");
        goto done;
    }
    rc = adopt(out, pkey, 0, err);
done:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

void atr_rsa_key_free(struct atr_rsa_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    atr_free(key);
}

/* Makes a key from BIGNUMs: n, e and, when @p priv, the six private parts. */
static atr_status from_bignums(struct atr_rsa_key **out, BIGNUM *const bn[8], int priv,
                               int validate, struct atr_err *err)
{
    static const char *const names[8] = {
        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
    };
    atr_status rc = ATR_OK;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "RSA: out of memory");
        goto done;
    }
    for (size_t i = 0; i < (priv ? 8u : 2u); i++) {
        /* secure BIGNUMs make the builder put their copies in secure memory */
        if (OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i]) != 1) {
            rc = atr_ossl_fail(err, ATR_E_NOMEM, "RSA: out of memory");
            goto done;
        }
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "RSA: out of memory");
        goto done;
    }
    if (EVP_PKEY_fromdata(ctx, &pkey, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1) {
        rc = atr_ossl_fail(err, ATR_E_INVALID, "the RSA key parts were not accepted");
        goto done;
    }
    rc = adopt(out, pkey, validate, err);
    pkey = NULL;
done:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params); /* clears the secure part */
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

atr_status atr_rsa_key_dup_public(struct atr_rsa_key **out, const struct atr_rsa_key *key,
                                  struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    *out = NULL;
    BIGNUM *bn[8] = {NULL};
    atr_status rc = ATR_OK;
    if (EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_RSA_N, &bn[0]) != 1 ||
        EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_RSA_E, &bn[1]) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "RSA: cannot read the public key");
        goto done;
    }
    rc = from_bignums(out, bn, 0, 0, err);
done:
    BN_free(bn[0]);
    BN_free(bn[1]);
    return rc;
}

static int span_set(struct atr_span s)
{
    return s.ptr != NULL && s.len > 0;
}

atr_status atr_rsa_key_from_components(struct atr_rsa_key **out, const struct atr_rsa_components *c,
                                       struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && c != NULL);
    *out = NULL;
    static const char *const part_names[8] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
    const struct atr_span parts[8] = {c->n, c->e, c->d, c->p, c->q, c->dp, c->dq, c->qi};
    if (!span_set(c->n) || !span_set(c->e))
        return atr_err_set(err, ATR_E_INVALID, "RSA key: the modulus and exponent are required");
    size_t npriv = 0;
    for (size_t i = 2; i < 8; i++)
        npriv += span_set(parts[i]) ? 1 : 0;
    if (npriv != 0 && npriv != 6) {
        for (size_t i = 2; i < 8; i++) {
            if (!span_set(parts[i]))
                return atr_err_set(err, ATR_E_INVALID,
                                   "RSA key: the private key is incomplete (\"%s\" is missing)",
                                   part_names[i]);
        }
    }
    for (size_t i = 0; i < 8; i++) {
        if (parts[i].len > RSA_MAX_COMPONENT)
            return atr_err_set(err, ATR_E_INVALID, "RSA key: \"%s\" is too long", part_names[i]);
    }
    int priv = npriv == 6;
    atr_status rc = ATR_OK;
    BIGNUM *bn[8] = {NULL};
    for (size_t i = 0; i < (priv ? 8u : 2u); i++) {
        BIGNUM *b = i < 2 ? BN_new() : BN_secure_new();
        bn[i] = b;
        if (b == NULL || BN_bin2bn(parts[i].ptr, (int)parts[i].len, b) == NULL) {
            rc = atr_ossl_fail(err, ATR_E_NOMEM, "RSA: out of memory");
            goto done;
        }
    }
    int nbits = BN_num_bits(bn[0]);
    if (nbits < ATR_RSA_MIN_BITS || nbits > ATR_RSA_MAX_BITS) {
        rc = atr_err_set(err, ATR_E_INVALID, "RSA key size %d bits is outside %d..%d", nbits,
                         ATR_RSA_MIN_BITS, ATR_RSA_MAX_BITS);
        goto done;
    }
    rc = from_bignums(out, bn, priv, 1, err);
done:
    for (size_t i = 0; i < 8; i++)
        BN_clear_free(bn[i]);
    return rc;
}

/* ---- import and export ----------------------------------------------------- */

static atr_status parse_pkcs8(struct atr_rsa_key **out, const uint8_t *der, size_t len,
                              struct atr_err *err)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (p8 == NULL || p != der + len) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return atr_ossl_fail(err, ATR_E_PARSE, "not a well-formed PKCS#8 private key");
    }
    EVP_PKEY *pkey = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key octets */
    if (pkey == NULL)
        return atr_ossl_fail(err, ATR_E_PARSE, "the PKCS#8 private key could not be decoded");
    if (!pkey_has_param(pkey, OSSL_PKEY_PARAM_RSA_D) && EVP_PKEY_is_a(pkey, "RSA")) {
        EVP_PKEY_free(pkey);
        return atr_ossl_fail(err, ATR_E_PARSE, "the PKCS#8 key has no private part");
    }
    return adopt(out, pkey, 1, err);
}

static atr_status parse_spki(struct atr_rsa_key **out, const uint8_t *der, size_t len,
                             struct atr_err *err)
{
    const unsigned char *p = der;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)len);
    if (pkey == NULL || p != der + len) {
        EVP_PKEY_free(pkey);
        return atr_ossl_fail(err, ATR_E_PARSE, "not a well-formed SubjectPublicKeyInfo");
    }
    return adopt(out, pkey, 1, err);
}

static int all_space(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isspace((unsigned char)p[i]))
            return 0;
    }
    return 1;
}

atr_status atr_rsa_key_parse_pem(struct atr_rsa_key **out, const char *pem, size_t len,
                                 struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(pem != NULL || len == 0);
    *out = NULL;
    if (len > RSA_MAX_INPUT)
        return atr_err_set(err, ATR_E_TOO_LARGE, "PEM: input too long");
    size_t lead = 0;
    while (lead < len && isspace((unsigned char)pem[lead]))
        lead++;
    static const char begin[] = "-----BEGIN ";
    if (len - lead < sizeof(begin) - 1 || memcmp(pem + lead, begin, sizeof(begin) - 1) != 0)
        return atr_err_set(err, ATR_E_PARSE, "PEM: the input does not start with -----BEGIN");

    atr_status rc = ATR_OK;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    BIO *bio = BIO_new_mem_buf(pem + lead, (int)(len - lead));
    if (bio == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "PEM: out of memory");
        goto done;
    }
    /* secure: the body of a private key PEM is the key */
    if (PEM_read_bio_ex(bio, &name, &header, &data, &dlen, PEM_FLAG_SECURE | PEM_FLAG_ONLY_B64) !=
            1 ||
        dlen <= 0) {
        rc = atr_ossl_fail(err, ATR_E_PARSE, "PEM: not a well-formed PEM block");
        goto done;
    }
    char *rest = NULL;
    long nrest = BIO_get_mem_data(bio, &rest);
    if (nrest > 0 && !all_space(rest, (size_t)nrest)) {
        rc = atr_err_set(err, ATR_E_PARSE, "PEM: unexpected data after the PEM block");
        goto done;
    }
    if (header != NULL && header[0] != '\0') {
        rc =
            atr_err_set(err, ATR_E_UNSUPPORTED, "PEM: encrypted or annotated PEM is not supported");
        goto done;
    }
    if (strcmp(name, "PRIVATE KEY") == 0)
        rc = parse_pkcs8(out, data, (size_t)dlen, err);
    else if (strcmp(name, "PUBLIC KEY") == 0)
        rc = parse_spki(out, data, (size_t)dlen, err);
    else if (strcmp(name, "RSA PRIVATE KEY") == 0)
        rc = atr_err_set(err, ATR_E_UNSUPPORTED,
                         "PEM: PKCS#1 \"RSA PRIVATE KEY\" is not supported; use PKCS#8 "
                         "(openssl pkey -in key.pem)");
    else if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0)
        rc = atr_err_set(err, ATR_E_UNSUPPORTED, "PEM: encrypted private keys are not supported");
    else
        rc = atr_err_set(err, ATR_E_UNSUPPORTED, "PEM: expected a PRIVATE KEY or PUBLIC KEY block");
done:
    if (data != NULL)
        OPENSSL_secure_clear_free(data, (size_t)dlen);
    OPENSSL_secure_free(name);
    OPENSSL_secure_free(header);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

atr_status atr_rsa_key_parse_der(struct atr_rsa_key **out, struct atr_span der, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(der.ptr != NULL || der.len == 0);
    *out = NULL;
    if (der.len == 0)
        return atr_err_set(err, ATR_E_PARSE, "DER: empty input");
    if (der.len > RSA_MAX_INPUT)
        return atr_err_set(err, ATR_E_TOO_LARGE, "DER: input too long");
    /* PrivateKeyInfo starts with an INTEGER after the SEQUENCE, SPKI with a SEQUENCE */
    const unsigned char *p = der.ptr;
    ERR_set_mark();
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der.len);
    ERR_pop_to_mark();
    int is_p8 = p8 != NULL;
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (is_p8)
        return parse_pkcs8(out, der.ptr, der.len, err);
    atr_status rc = parse_spki(out, der.ptr, der.len, err);
    if (rc == ATR_E_PARSE)
        return atr_err_set(err, ATR_E_PARSE,
                           "DER: neither a PKCS#8 private key nor a SubjectPublicKeyInfo");
    return rc;
}

atr_status atr_rsa_key_format_pem_public(struct atr_buf *out, const struct atr_rsa_key *key,
                                         struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    atr_status rc = ATR_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key->pkey) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "PEM: cannot encode the public key");
        goto done;
    }
    char *text = NULL;
    long n = BIO_get_mem_data(bio, &text);
    if (n <= 0) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "PEM: cannot encode the public key");
        goto done;
    }
    rc = atr_buf_append(out, text, (size_t)n);
    if (rc != ATR_OK)
        atr_err_set(err, rc, "PEM: no room for the public key");
done:
    BIO_free(bio);
    return rc;
}

atr_status atr_rsa_key_format_pem_private(struct atr_secret *out, const struct atr_rsa_key *key,
                                          struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    if (!key->priv)
        return atr_err_set(err, ATR_E_INVALID, "PEM: the key has no private part");
    atr_status rc = ATR_OK;
    /* a secure-memory BIO: the text is the key */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "PEM: cannot encode the private key");
        goto done;
    }
    char *text = NULL;
    long n = BIO_get_mem_data(bio, &text);
    if (n <= 0) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "PEM: cannot encode the private key");
        goto done;
    }
    rc = atr_secret_init_copy(out, text, (size_t)n);
    if (rc != ATR_OK)
        atr_err_set(err, rc, "PEM: no secure memory for the private key");
done:
    BIO_free(bio); /* secmem BIOs clear their buffer */
    return rc;
}

atr_status atr_rsa_key_get_component(struct atr_buf *out, const struct atr_rsa_key *key,
                                     atr_rsa_part part, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    const char *name = NULL;
    switch (part) {
    case ATR_RSA_PART_N:
        name = OSSL_PKEY_PARAM_RSA_N;
        break;
    case ATR_RSA_PART_E:
        name = OSSL_PKEY_PARAM_RSA_E;
        break;
    case ATR_RSA_PART_D:
        name = OSSL_PKEY_PARAM_RSA_D;
        break;
    case ATR_RSA_PART_P:
        name = OSSL_PKEY_PARAM_RSA_FACTOR1;
        break;
    case ATR_RSA_PART_Q:
        name = OSSL_PKEY_PARAM_RSA_FACTOR2;
        break;
    case ATR_RSA_PART_DP:
        name = OSSL_PKEY_PARAM_RSA_EXPONENT1;
        break;
    case ATR_RSA_PART_DQ:
        name = OSSL_PKEY_PARAM_RSA_EXPONENT2;
        break;
    case ATR_RSA_PART_QI:
        name = OSSL_PKEY_PARAM_RSA_COEFFICIENT1;
        break;
    default:
        return atr_err_set(err, ATR_E_INVALID, "RSA: unknown key part");
    }
    if (part != ATR_RSA_PART_N && part != ATR_RSA_PART_E && !key->priv)
        return atr_err_set(err, ATR_E_INVALID, "RSA: the key has no private part");
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(key->pkey, name, &bn) != 1)
        return atr_ossl_fail(err, ATR_E_CRYPTO, "RSA: cannot read a key part");
    size_t n = (size_t)BN_num_bytes(bn);
    atr_status rc = atr_buf_reserve(out, n);
    if (rc != ATR_OK) {
        atr_err_set(err, rc, "RSA: no room for a key part");
        goto done;
    }
    if (BN_bn2bin(bn, out->ptr + out->len) != (int)n) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "RSA: cannot read a key part");
        goto done;
    }
    out->len += n;
done:
    BN_clear_free(bn);
    return rc;
}

unsigned atr_rsa_key_bits(const struct atr_rsa_key *key)
{
    return key == NULL ? 0 : key->bits;
}

size_t atr_rsa_key_size(const struct atr_rsa_key *key)
{
    return key == NULL ? 0 : ((size_t)key->bits + 7) / 8;
}

int atr_rsa_key_has_private(const struct atr_rsa_key *key)
{
    return key != NULL && key->priv;
}

EVP_PKEY *atr_rsa_key_pkey(const struct atr_rsa_key *key)
{
    return key == NULL ? NULL : key->pkey;
}

/* ---- algorithms ------------------------------------------------------------ */

atr_status atr_rsa_alg_from_name(atr_rsa_alg *out, const char *name, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    if (name == NULL)
        return atr_err_set(err, ATR_E_INVALID, "RSA: no algorithm name");
    if (strcmp(name, "RSA-OAEP") == 0)
        *out = ATR_RSA_OAEP;
    else if (strcmp(name, "RSA-OAEP-256") == 0)
        *out = ATR_RSA_OAEP_256;
    else if (strcmp(name, "RSA1_5") == 0)
        *out = ATR_RSA1_5;
    else
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "RSA: unsupported algorithm (expected RSA-OAEP, RSA-OAEP-256 or "
                           "RSA1_5)");
    return ATR_OK;
}

const char *atr_rsa_alg_name(atr_rsa_alg alg)
{
    switch (alg) {
    case ATR_RSA_OAEP:
        return "RSA-OAEP";
    case ATR_RSA_OAEP_256:
        return "RSA-OAEP-256";
    case ATR_RSA1_5:
        return "RSA1_5";
    default:
        return NULL;
    }
}

atr_status atr_rsa_alg_padding(struct atr_rsa_padding *out, atr_rsa_alg alg)
{
    ATR_ASSERT_ARG(out != NULL);
    memset(out, 0, sizeof(*out));
    switch (alg) {
    case ATR_RSA_OAEP:
        out->pad = ATR_RSA_PAD_OAEP;
        out->oaep_md = ATR_RSA_MD_SHA1;
        out->mgf1_md = ATR_RSA_MD_SHA1;
        return ATR_OK;
    case ATR_RSA_OAEP_256:
        out->pad = ATR_RSA_PAD_OAEP;
        out->oaep_md = ATR_RSA_MD_SHA256;
        out->mgf1_md = ATR_RSA_MD_SHA256;
        return ATR_OK;
    case ATR_RSA1_5:
        out->pad = ATR_RSA_PAD_PKCS1;
        return ATR_OK;
    default:
        return ATR_E_INVALID;
    }
}

/* ---- encryption ------------------------------------------------------------ */

/* OpenSSL name and output size of a digest; NULL for a value outside the enum. */
static const char *md_name(atr_rsa_md md, size_t *len)
{
    switch (md) {
    case ATR_RSA_MD_SHA1:
        *len = 20;
        return "SHA1";
    case ATR_RSA_MD_SHA224:
        *len = 28;
        return "SHA224";
    case ATR_RSA_MD_SHA256:
        *len = 32;
        return "SHA256";
    case ATR_RSA_MD_SHA384:
        *len = 48;
        return "SHA384";
    case ATR_RSA_MD_SHA512:
        *len = 64;
        return "SHA512";
    default:
        return NULL;
    }
}

/*
 * Checks @p pad and fills @p params (room for 6) for EVP_PKEY_*_init_ex.
 * Sets *overhead to the bytes the padding adds (RFC 8017 7.1.1, 7.2.1).
 */
static atr_status padding_params(OSSL_PARAM *params, size_t *overhead,
                                 const struct atr_rsa_padding *pad, int decrypt,
                                 unsigned *implicit_rejection, struct atr_err *err)
{
    size_t i = 0;
    if (pad == NULL)
        return atr_err_set(err, ATR_E_INVALID, "RSA: no padding parameters");
    switch (pad->pad) {
    case ATR_RSA_PAD_OAEP: {
        size_t hlen = 0, mlen = 0;
        const char *md = md_name(pad->oaep_md, &hlen);
        const char *mgf = md_name(pad->mgf1_md, &mlen);
        if (md == NULL || mgf == NULL)
            return atr_err_set(err, ATR_E_INVALID, "RSA-OAEP: unknown digest");
        if ((pad->label.ptr == NULL && pad->label.len != 0) || pad->label.len > RSA_MAX_LABEL)
            return atr_err_set(err, ATR_E_INVALID, "RSA-OAEP: bad label");
        *overhead = 2 * hlen + 2;
        params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE,
                                                       (char *)OSSL_PKEY_RSA_PAD_MODE_OAEP, 0);
        params[i++] =
            OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, (char *)md, 0);
        params[i++] =
            OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, (char *)mgf, 0);
        if (pad->label.len > 0)
            params[i++] = OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL,
                                                            (void *)pad->label.ptr, pad->label.len);
        break;
    }
    case ATR_RSA_PAD_PKCS1:
        *overhead = 11;
        params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE,
                                                       (char *)OSSL_PKEY_RSA_PAD_MODE_PKCSV15, 0);
#ifdef OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION
        /* OpenSSL 3.2+: report bad padding instead of returning random bytes */
        if (decrypt) {
            *implicit_rejection = 0;
            params[i++] = OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION,
                                                    implicit_rejection);
        }
#endif
        break;
    default:
        return atr_err_set(err, ATR_E_INVALID, "RSA: unknown padding");
    }
    (void)decrypt;
    (void)implicit_rejection;
    params[i] = OSSL_PARAM_construct_end();
    return ATR_OK;
}

atr_status atr_rsa_encrypt(struct atr_buf *out, const struct atr_rsa_key *key,
                           const struct atr_rsa_padding *pad, struct atr_span in,
                           struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    ATR_ASSERT_ARG(in.ptr != NULL || in.len == 0);
    OSSL_PARAM params[6];
    size_t overhead = 0;
    unsigned implicit = 0;
    ATR_TRY(padding_params(params, &overhead, pad, 0, &implicit, err));
    size_t k = atr_rsa_key_size(key);
    if (overhead > k || in.len > k - overhead)
        return atr_err_set(err, ATR_E_INVALID,
                           "RSA: %zu bytes are too long for a %u-bit key with this padding", in.len,
                           key->bits);
    atr_status rc = atr_buf_reserve(out, k);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "RSA: no room for the ciphertext");
    uint8_t *dst = out->ptr + out->len;
    size_t outlen = k;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
    if (ctx == NULL || EVP_PKEY_encrypt_init_ex(ctx, params) != 1 ||
        EVP_PKEY_encrypt(ctx, dst, &outlen, in.len > 0 ? in.ptr : empty_input, in.len) != 1 ||
        outlen != k) {
        atr_wipe(dst, k);
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "RSA encryption failed");
        goto done;
    }
    out->len += k;
done:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/*
 * Decrypts into @p tmp, an empty secret that receives modulus-size storage;
 * *outlen is the message length. On failure @p tmp is empty.
 */
static atr_status decrypt_secure(struct atr_secret *tmp, size_t *outlen,
                                 const struct atr_rsa_key *key, const struct atr_rsa_padding *pad,
                                 struct atr_span ct, struct atr_err *err)
{
    OSSL_PARAM params[6];
    size_t overhead = 0;
    unsigned implicit = 0;
    ATR_TRY(padding_params(params, &overhead, pad, 1, &implicit, err));
    if (!key->priv)
        return atr_err_set(err, ATR_E_INVALID, "RSA: decryption needs a private key");
    size_t k = atr_rsa_key_size(key);
    if (ct.len != k)
        return atr_err_set(err, ATR_E_INVALID,
                           "RSA: the ciphertext must be %zu bytes for a %u-bit key, not %zu", k,
                           key->bits, ct.len);
    atr_status rc = atr_secret_init(tmp, k);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "RSA: no secure memory for the plaintext");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
    if (ctx == NULL || EVP_PKEY_decrypt_init_ex(ctx, params) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "RSA: cannot set up decryption");
        goto done;
    }
    *outlen = k;
    if (EVP_PKEY_decrypt(ctx, atr_secret_data(tmp), outlen, ct.ptr, ct.len) != 1 || *outlen > k) {
        /* one error for every padding failure (no padding oracle in messages) */
        rc = atr_ossl_fail(err, ATR_E_AUTH_FAILED, "RSA decryption failed");
        goto done;
    }
done:
    EVP_PKEY_CTX_free(ctx);
    if (rc != ATR_OK)
        atr_secret_cleanup(tmp);
    return rc;
}

atr_status atr_rsa_decrypt(struct atr_buf *out, const struct atr_rsa_key *key,
                           const struct atr_rsa_padding *pad, struct atr_span ct,
                           struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    ATR_ASSERT_ARG(ct.ptr != NULL || ct.len == 0);
    struct atr_secret tmp = ATR_SECRET_INIT;
    size_t n = 0;
    ATR_TRY(decrypt_secure(&tmp, &n, key, pad, ct, err));
    atr_status rc = atr_buf_append(out, atr_secret_cdata(&tmp), n);
    if (rc != ATR_OK)
        atr_err_set(err, rc, "RSA: no room for the plaintext");
    atr_secret_cleanup(&tmp);
    return rc;
}

atr_status atr_rsa_wrap(struct atr_buf *out, const struct atr_rsa_key *key, atr_rsa_alg alg,
                        struct atr_span plain, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    struct atr_rsa_padding pad;
    if (atr_rsa_alg_padding(&pad, alg) != ATR_OK)
        return atr_err_set(err, ATR_E_INVALID, "RSA: unknown key-wrap algorithm");
    if (plain.len == 0)
        return atr_err_set(err, ATR_E_INVALID, "RSA: nothing to wrap");
    return atr_rsa_encrypt(out, key, &pad, plain, err);
}

atr_status atr_rsa_unwrap(struct atr_secret *out, const struct atr_rsa_key *key, atr_rsa_alg alg,
                          struct atr_span wrapped, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    ATR_ASSERT_ARG(wrapped.ptr != NULL || wrapped.len == 0);
    struct atr_rsa_padding pad;
    if (atr_rsa_alg_padding(&pad, alg) != ATR_OK)
        return atr_err_set(err, ATR_E_INVALID, "RSA: unknown key-wrap algorithm");
    struct atr_secret tmp = ATR_SECRET_INIT;
    size_t n = 0;
    ATR_TRY(decrypt_secure(&tmp, &n, key, &pad, wrapped, err));
    atr_status rc = ATR_OK;
    if (n == 0)
        rc = atr_err_set(err, ATR_E_AUTH_FAILED, "RSA decryption failed");
    else if ((rc = atr_secret_init_copy(out, atr_secret_cdata(&tmp), n)) != ATR_OK)
        atr_err_set(err, rc, "RSA: no secure memory for the unwrapped key");
    atr_secret_cleanup(&tmp);
    return rc;
}
