/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/ec.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "crypto/ossl.h"

struct atr_ec_key {
    EVP_PKEY *pkey;
    atr_ec_curve curve;
    int priv;
};

#define VERIFY_FAILED_MSG "signature verification failed"

/* Longest DER input accepted (an EC PKCS#8 key is under 400 bytes). */
#define EC_MAX_DER ((size_t)64 * 1024)
/* Room for a DER ECDSA-Sig-Value of any curve (P-521: at most 141 bytes). */
#define EC_MAX_DER_SIG 256
/* Room for the base64url text of one coordinate or scalar. */
#define EC_MAX_B64 (ATR_EC_MAX_FIELD * 4 / 3 + 4)

struct curve_info {
    const char *name; /* JOSE / Azure */
    const char *ossl; /* OpenSSL group name */
    int nid;
    size_t size; /* field size in bytes */
};

/* Indexed by atr_ec_curve - 1. */
static const struct curve_info curves[] = {
    {"P-256", "prime256v1", NID_X9_62_prime256v1, 32},
    {"P-384", "secp384r1", NID_secp384r1, 48},
    {"P-521", "secp521r1", NID_secp521r1, 66},
    {"P-256K", "secp256k1", NID_secp256k1, 32},
};

struct alg_info {
    const char *name;
    atr_ec_curve curve;
    size_t digest_len;
};

/* Indexed by atr_ec_alg - 1. */
static const struct alg_info algs[] = {
    {"ES256", ATR_EC_P256, 32},
    {"ES384", ATR_EC_P384, 48},
    {"ES512", ATR_EC_P521, 64},
    {"ES256K", ATR_EC_P256K, 32},
};

static const struct curve_info *curve_get(atr_ec_curve curve)
{
    switch (curve) {
    case ATR_EC_P256:
    case ATR_EC_P384:
    case ATR_EC_P521:
    case ATR_EC_P256K:
        return &curves[curve - 1];
    default:
        return NULL;
    }
}

static const struct alg_info *alg_get(atr_ec_alg alg)
{
    switch (alg) {
    case ATR_EC_ES256:
    case ATR_EC_ES384:
    case ATR_EC_ES512:
    case ATR_EC_ES256K:
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

/* ---- curves and algorithms ------------------------------------------------- */

atr_status atr_ec_curve_from_name(atr_ec_curve *out, const char *name, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    if (name == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC: no curve name");
    for (size_t i = 0; i < ATR_ARRAY_LEN(curves); i++) {
        if (strcmp(name, curves[i].name) == 0) {
            *out = (atr_ec_curve)(i + 1);
            return ATR_OK;
        }
    }
    /* The name is attacker-controlled text: do not echo it. */
    return atr_err_set(err, ATR_E_UNSUPPORTED,
                       "EC: unsupported curve (expected P-256, P-384, P-521 or P-256K)");
}

const char *atr_ec_curve_name(atr_ec_curve curve)
{
    const struct curve_info *c = curve_get(curve);
    return c != NULL ? c->name : NULL;
}

size_t atr_ec_curve_size(atr_ec_curve curve)
{
    const struct curve_info *c = curve_get(curve);
    return c != NULL ? c->size : 0;
}

atr_status atr_ec_alg_from_name(atr_ec_alg *out, const char *name, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    if (name == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC: no algorithm name");
    for (size_t i = 0; i < ATR_ARRAY_LEN(algs); i++) {
        if (strcmp(name, algs[i].name) == 0) {
            *out = (atr_ec_alg)(i + 1);
            return ATR_OK;
        }
    }
    return atr_err_set(err, ATR_E_UNSUPPORTED,
                       "EC: unsupported algorithm (expected ES256, ES384, ES512 or ES256K)");
}

const char *atr_ec_alg_name(atr_ec_alg alg)
{
    const struct alg_info *a = alg_get(alg);
    return a != NULL ? a->name : NULL;
}

atr_ec_curve atr_ec_alg_curve(atr_ec_alg alg)
{
    const struct alg_info *a = alg_get(alg);
    return a != NULL ? a->curve : (atr_ec_curve)0;
}

size_t atr_ec_alg_digest_len(atr_ec_alg alg)
{
    const struct alg_info *a = alg_get(alg);
    return a != NULL ? a->digest_len : 0;
}

/* ---- keys ------------------------------------------------------------------ */

static int pkey_has_param(const EVP_PKEY *pkey, const char *name)
{
    BIGNUM *bn = NULL;
    ERR_set_mark();
    int ok = EVP_PKEY_get_bn_param(pkey, name, &bn) == 1;
    ERR_pop_to_mark();
    BN_clear_free(bn);
    return ok;
}

/* The curve of @p pkey, or 0 when it is not a named curve of ours. */
static atr_ec_curve pkey_curve(const EVP_PKEY *pkey)
{
    char name[80];
    size_t len = 0;
    ERR_set_mark();
    int ok = EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len) == 1;
    ERR_pop_to_mark();
    if (!ok || len == 0 || len >= sizeof(name))
        return (atr_ec_curve)0;
    name[len] = '\0';
    /* OpenSSL reports short names ("prime256v1"); accept NIST aliases too */
    int nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    for (size_t i = 0; i < ATR_ARRAY_LEN(curves); i++) {
        if (nid != NID_undef && nid == curves[i].nid)
            return (atr_ec_curve)(i + 1);
    }
    return (atr_ec_curve)0;
}

/*
 * Wraps @p pkey (ownership taken in every case) into a new key after
 * checking type and curve and, if @p validate, the key itself.
 */
static atr_status adopt(struct atr_ec_key **out, EVP_PKEY *pkey, int validate, struct atr_err *err)
{
    atr_status rc = ATR_OK;
    EVP_PKEY_CTX *ctx = NULL;
    if (!EVP_PKEY_is_a(pkey, "EC")) {
        rc = atr_ossl_fail(err, ATR_E_UNSUPPORTED, "not an EC key");
        goto done;
    }
    /*
     * Named curves only (RFC 5480 section 2.1.1.1, RFC 5915 section 3):
     * OpenSSL maps explicit parameters that equal a named curve to its name,
     * but we neither store nor pass on such encodings.
     */
    char enc[32] = {0};
    size_t enclen = 0;
    ERR_set_mark();
    int named = EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_EC_ENCODING, enc,
                                               sizeof(enc) - 1, &enclen) == 1 &&
                enclen < sizeof(enc) && strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) == 0;
    ERR_pop_to_mark();
    atr_ec_curve curve = pkey_curve(pkey);
    if (!named || curve_get(curve) == NULL) {
        rc = atr_ossl_fail(err, ATR_E_UNSUPPORTED,
                           "EC key: only the named curves P-256, P-384, P-521 and P-256K are "
                           "supported (no explicit curve parameters)");
        goto done;
    }
    int priv = pkey_has_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY);
    if (validate) {
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (ctx == NULL) {
            rc = atr_ossl_fail(err, ATR_E_NOMEM, "EC: out of memory");
            goto done;
        }
        if (EVP_PKEY_public_check(ctx) != 1) {
            rc = atr_ossl_fail(err, ATR_E_INVALID,
                               "EC key: the public point is not a valid point of the curve");
            goto done;
        }
        /* private scalar in [1, n-1] and the pairwise check d*G == Q */
        if (priv && EVP_PKEY_check(ctx) != 1) {
            rc = atr_ossl_fail(err, ATR_E_INVALID,
                               "EC key: the private key does not match the public point");
            goto done;
        }
    }
    struct atr_ec_key *key = atr_calloc(1, sizeof(*key));
    if (key == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "EC: out of memory");
        goto done;
    }
    key->pkey = pkey;
    key->curve = curve;
    key->priv = priv;
    pkey = NULL;
    *out = key;
done:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return rc;
}

atr_status atr_ec_key_generate(struct atr_ec_key **out, atr_ec_curve curve, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    const struct curve_info *c = curve_get(curve);
    if (c == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC: unknown curve");
    atr_status rc = ATR_OK;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "EC: out of memory");
        goto done;
    }
    if (EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_CTX_set_group_name(ctx, c->ossl) != 1 ||
        EVP_PKEY_generate(ctx, &pkey) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC %s key generation failed", c->name);
        goto done;
    }
    rc = adopt(out, pkey, 0, err);
done:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

void atr_ec_key_free(struct atr_ec_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    atr_free(key);
}

/*
 * Builds and validates a key on @p c from coordinates @p x, @p y (field
 * size each) and, when @p d is not empty, the private scalar (field size).
 */
static atr_status from_parts(struct atr_ec_key **out, const struct curve_info *c, struct atr_span x,
                             struct atr_span y, struct atr_span d, struct atr_err *err)
{
    /* SEC 1 section 2.3.3 uncompressed point: 0x04 || x || y */
    uint8_t point[1 + 2 * ATR_EC_MAX_FIELD];
    point[0] = 0x04;
    memcpy(point + 1, x.ptr, c->size);
    memcpy(point + 1 + c->size, y.ptr, c->size);
    int priv = d.len > 0;

    atr_status rc = ATR_OK;
    BIGNUM *bn = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->ossl, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * c->size) !=
            1) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "EC: out of memory");
        goto done;
    }
    if (priv) {
        /* a secure BIGNUM makes the builder keep its copy in secure memory */
        bn = BN_secure_new();
        if (bn == NULL || BN_bin2bn(d.ptr, (int)d.len, bn) == NULL ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn) != 1) {
            rc = atr_ossl_fail(err, ATR_E_NOMEM, "EC: out of memory");
            goto done;
        }
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "EC: out of memory");
        goto done;
    }
    /* fails for a point that is not on the curve */
    if (EVP_PKEY_fromdata(ctx, &pkey, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1) {
        rc = atr_ossl_fail(err, ATR_E_INVALID,
                           "EC key: the key parts were not accepted (the point must lie on %s)",
                           c->name);
        goto done;
    }
    rc = adopt(out, pkey, 1, err);
    pkey = NULL;
done:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params); /* clears the secure part */
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(bn);
    return rc;
}

/* ---- JWK ------------------------------------------------------------------- */

static int string_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);
    return json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0;
}

/* Rejects members of other key types; type-checks registered string members. */
static atr_status check_members(const json_t *jwk, struct atr_err *err)
{
    static const char *const foreign[] = {"n", "e", "p", "q", "dp", "dq", "qi", "oth", "k"};
    static const char *const strings[] = {"kid", "alg", "use"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(foreign); i++) {
        if (json_object_get(jwk, foreign[i]) != NULL)
            return atr_err_set(err, ATR_E_INVALID,
                               "EC JWK: member \"%s\" does not belong to an EC key", foreign[i]);
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(strings); i++) {
        const json_t *v = json_object_get(jwk, strings[i]);
        if (v != NULL && !json_is_string(v))
            return atr_err_set(err, ATR_E_PARSE, "EC JWK: \"%s\" must be a string", strings[i]);
    }
    const json_t *ops = json_object_get(jwk, "key_ops");
    if (ops != NULL) {
        int ok = json_is_array(ops);
        for (size_t i = 0; ok && i < json_array_size(ops); i++)
            ok = json_is_string(json_array_get(ops, i));
        if (!ok)
            return atr_err_set(err, ATR_E_PARSE, "EC JWK: \"key_ops\" must be an array of strings");
    }
    return ATR_OK;
}

/*
 * Decodes member @p name, which must be the base64url of exactly @p size
 * bytes, into @p out (an empty buffer).
 */
static atr_status decode_fixed(struct atr_buf *out, const json_t *jwk, const char *name,
                               const struct curve_info *c, struct atr_err *err)
{
    const json_t *v = json_object_get(jwk, name);
    if (v == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC JWK: \"%s\" is missing", name);
    if (!json_is_string(v))
        return atr_err_set(err, ATR_E_PARSE, "EC JWK: \"%s\" must be a base64url string", name);
    size_t len = json_string_length(v);
    if (len != atr_b64url_encoded_len(c->size))
        return atr_err_set(err, ATR_E_INVALID,
                           "EC JWK: \"%s\" must encode exactly %zu bytes for %s", name, c->size,
                           c->name);
    struct atr_err sub;
    atr_err_clear(&sub);
    atr_status rc = atr_b64url_decode(out, json_string_value(v), len, &sub);
    if (rc == ATR_E_PARSE)
        return atr_err_set(err, ATR_E_PARSE, "EC JWK: \"%s\" is not valid base64url (%s)", name,
                           atr_err_msg(&sub));
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "EC JWK: \"%s\": %s", name, atr_err_msg(&sub));
    if (out->len != c->size)
        return atr_err_set(err, ATR_E_INVALID,
                           "EC JWK: \"%s\" must encode exactly %zu bytes for %s", name, c->size,
                           c->name);
    return ATR_OK;
}

atr_status atr_ec_key_from_jwk(struct atr_ec_key **out, const json_t *jwk, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (!json_is_object(jwk))
        return atr_err_set(err, ATR_E_PARSE, "EC JWK: not a JSON object");
    const json_t *kty = json_object_get(jwk, "kty");
    if (kty == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC JWK: \"kty\" is missing");
    if (!json_is_string(kty))
        return atr_err_set(err, ATR_E_PARSE, "EC JWK: \"kty\" must be a string");
    if (!string_is(kty, "EC") && !string_is(kty, "EC-HSM"))
        return atr_err_set(err, ATR_E_INVALID,
                           "EC JWK: unsupported key type (\"kty\" must be \"EC\" or \"EC-HSM\")");
    ATR_TRY(check_members(jwk, err));
    const json_t *crv = json_object_get(jwk, "crv");
    if (crv == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC JWK: \"crv\" is missing");
    if (!json_is_string(crv))
        return atr_err_set(err, ATR_E_PARSE, "EC JWK: \"crv\" must be a string");
    atr_ec_curve curve = (atr_ec_curve)0;
    if (strlen(json_string_value(crv)) != json_string_length(crv) ||
        atr_ec_curve_from_name(&curve, json_string_value(crv), NULL) != ATR_OK)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "EC JWK: unsupported curve (expected P-256, P-384, P-521 or P-256K)");
    const struct curve_info *c = curve_get(curve);
    const json_t *d = json_object_get(jwk, "d");
    if (json_object_get(jwk, "key_hsm") != NULL && d == NULL)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "EC JWK: HSM key transfer blobs (\"key_hsm\") are not supported");

    atr_status rc = ATR_OK;
    struct atr_buf x, y, dbuf;
    atr_buf_init(&x, ATR_EC_MAX_FIELD);
    atr_buf_init(&y, ATR_EC_MAX_FIELD);
    atr_buf_init(&dbuf, ATR_EC_MAX_FIELD);
    if ((rc = decode_fixed(&x, jwk, "x", c, err)) != ATR_OK ||
        (rc = decode_fixed(&y, jwk, "y", c, err)) != ATR_OK)
        goto done;
    if (d != NULL && (rc = decode_fixed(&dbuf, jwk, "d", c, err)) != ATR_OK)
        goto done;
    rc = from_parts(out, c, atr_buf_span(&x), atr_buf_span(&y), atr_buf_span(&dbuf), err);
done:
    atr_buf_cleanup(&x);
    atr_buf_cleanup(&y);
    atr_buf_cleanup(&dbuf); /* wipes the private scalar */
    return rc;
}

/* Reads one big-endian integer parameter of @p key, left-padded to @p size bytes. */
static atr_status get_fixed(uint8_t *dst, const struct atr_ec_key *key, const char *name,
                            size_t size, struct atr_err *err)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(key->pkey, name, &bn) != 1)
        return atr_ossl_fail(err, ATR_E_CRYPTO, "EC: cannot read a key part");
    int n = BN_bn2binpad(bn, dst, (int)size);
    BN_clear_free(bn);
    if (n != (int)size) {
        atr_wipe(dst, size);
        return atr_ossl_fail(err, ATR_E_CRYPTO, "EC: a key part is larger than the field");
    }
    return ATR_OK;
}

atr_status atr_ec_key_public_xy(struct atr_buf *out_x, struct atr_buf *out_y,
                                const struct atr_ec_key *key, struct atr_err *err)
{
    ATR_ASSERT_ARG(out_x != NULL && out_y != NULL && key != NULL && out_x != out_y);
    size_t size = atr_ec_curve_size(key->curve);
    uint8_t x[ATR_EC_MAX_FIELD], y[ATR_EC_MAX_FIELD];
    ATR_TRY(get_fixed(x, key, OSSL_PKEY_PARAM_EC_PUB_X, size, err));
    ATR_TRY(get_fixed(y, key, OSSL_PKEY_PARAM_EC_PUB_Y, size, err));
    atr_status rc = atr_buf_reserve(out_x, size);
    if (rc == ATR_OK)
        rc = atr_buf_reserve(out_y, size);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "EC: no room for the public point");
    memcpy(out_x->ptr + out_x->len, x, size);
    out_x->len += size;
    memcpy(out_y->ptr + out_y->len, y, size);
    out_y->len += size;
    return ATR_OK;
}

/* Adds member @p name holding the base64url of @p bytes. */
static atr_status add_b64(json_t *obj, const char *name, struct atr_span bytes, struct atr_err *err)
{
    struct atr_buf text;
    atr_buf_init(&text, EC_MAX_B64);
    atr_status rc = atr_b64url_encode(&text, bytes);
    if (rc != ATR_OK) {
        atr_err_set(err, rc, "EC JWK: cannot encode \"%s\"", name);
        goto done;
    }
    json_t *s = json_stringn((const char *)text.ptr, text.len);
    if (s == NULL || json_object_set_new(obj, name, s) != 0) {
        rc = atr_err_set(err, ATR_E_NOMEM, "EC JWK: out of memory");
        goto done;
    }
done:
    atr_buf_cleanup(&text); /* wipes "d" */
    return rc;
}

atr_status atr_ec_key_to_jwk(json_t **out, const struct atr_ec_key *key, int include_private,
                             struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    *out = NULL;
    if (include_private && !key->priv)
        return atr_err_set(err, ATR_E_INVALID, "EC JWK: the key has no private part");
    const struct curve_info *c = curve_get(key->curve);
    atr_status rc = ATR_OK;
    struct atr_secret d = ATR_SECRET_INIT;
    struct atr_buf x, y;
    atr_buf_init(&x, ATR_EC_MAX_FIELD);
    atr_buf_init(&y, ATR_EC_MAX_FIELD);
    json_t *obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "kty", json_string("EC")) != 0 ||
        json_object_set_new(obj, "crv", json_string(c->name)) != 0) {
        rc = atr_err_set(err, ATR_E_NOMEM, "EC JWK: out of memory");
        goto done;
    }
    if ((rc = atr_ec_key_public_xy(&x, &y, key, err)) != ATR_OK ||
        (rc = add_b64(obj, "x", atr_buf_span(&x), err)) != ATR_OK ||
        (rc = add_b64(obj, "y", atr_buf_span(&y), err)) != ATR_OK)
        goto done;
    if (include_private) {
        if ((rc = atr_secret_init(&d, c->size)) != ATR_OK) {
            atr_err_set(err, rc, "EC JWK: no secure memory for the private key");
            goto done;
        }
        if ((rc = get_fixed(atr_secret_data(&d), key, OSSL_PKEY_PARAM_PRIV_KEY, c->size, err)) !=
                ATR_OK ||
            (rc = add_b64(obj, "d", atr_span_of(atr_secret_cdata(&d), c->size), err)) != ATR_OK)
            goto done;
    }
done:
    atr_secret_cleanup(&d);
    atr_buf_cleanup(&x);
    atr_buf_cleanup(&y);
    if (rc != ATR_OK) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return ATR_OK;
}

/* ---- DER ------------------------------------------------------------------- */

atr_status atr_ec_key_format_der_private(struct atr_secret *out, const struct atr_ec_key *key,
                                         struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    if (!key->priv)
        return atr_err_set(err, ATR_E_INVALID, "DER: the key has no private part");
    atr_status rc = ATR_OK;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key->pkey);
    if (p8 == NULL) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "DER: cannot encode the private key");
        goto done;
    }
    int n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
    if (n <= 0) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "DER: cannot encode the private key");
        goto done;
    }
    if ((rc = atr_secret_init(out, (size_t)n)) != ATR_OK) {
        atr_err_set(err, rc, "DER: no secure memory for the private key");
        goto done;
    }
    unsigned char *p = atr_secret_data(out);
    if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
        atr_secret_cleanup(out);
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "DER: cannot encode the private key");
        goto done;
    }
done:
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key octets */
    return rc;
}

static atr_status parse_pkcs8(struct atr_ec_key **out, const uint8_t *der, size_t len,
                              struct atr_err *err)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (p8 == NULL || p != der + len) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return atr_ossl_fail(err, ATR_E_PARSE, "not a well-formed PKCS#8 private key");
    }
    EVP_PKEY *pkey = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (pkey == NULL)
        return atr_ossl_fail(err, ATR_E_PARSE, "the PKCS#8 private key could not be decoded");
    if (EVP_PKEY_is_a(pkey, "EC") && !pkey_has_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY)) {
        EVP_PKEY_free(pkey);
        return atr_ossl_fail(err, ATR_E_PARSE, "the PKCS#8 key has no private part");
    }
    return adopt(out, pkey, 1, err);
}

static atr_status parse_spki(struct atr_ec_key **out, const uint8_t *der, size_t len,
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

atr_status atr_ec_key_parse_der(struct atr_ec_key **out, struct atr_span der, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(der.ptr != NULL || der.len == 0);
    *out = NULL;
    if (der.len == 0)
        return atr_err_set(err, ATR_E_PARSE, "DER: empty input");
    if (der.len > EC_MAX_DER)
        return atr_err_set(err, ATR_E_TOO_LARGE, "DER: input too long");
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

/* ---- properties ------------------------------------------------------------ */

atr_ec_curve atr_ec_key_curve(const struct atr_ec_key *key)
{
    return key == NULL ? (atr_ec_curve)0 : key->curve;
}

int atr_ec_key_has_private(const struct atr_ec_key *key)
{
    return key != NULL && key->priv;
}

EVP_PKEY *atr_ec_key_pkey(const struct atr_ec_key *key)
{
    return key == NULL ? NULL : key->pkey;
}

/* ---- signatures ------------------------------------------------------------ */

/* Checks @p alg against @p key and the digest length. */
static atr_status check_alg(const struct alg_info **out, const struct atr_ec_key *key,
                            atr_ec_alg alg, struct atr_span digest, struct atr_err *err)
{
    const struct alg_info *a = alg_get(alg);
    if (a == NULL)
        return atr_err_set(err, ATR_E_INVALID, "EC signature: unknown algorithm");
    if (a->curve != key->curve)
        return atr_err_set(err, ATR_E_INVALID, "EC signature: %s needs a %s key, not %s", a->name,
                           atr_ec_curve_name(a->curve), atr_ec_curve_name(key->curve));
    if (digest.len != a->digest_len)
        return atr_err_set(err, ATR_E_INVALID, "EC signature: %s needs a %zu-byte digest", a->name,
                           a->digest_len);
    *out = a;
    return ATR_OK;
}

/* A context for signing (1) or verifying (0) a digest of @p a. */
static atr_status digest_ctx(EVP_PKEY_CTX **out, const struct atr_ec_key *key,
                             const struct alg_info *a, int sign, struct atr_err *err)
{
    *out = NULL;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
    if (pctx == NULL)
        return atr_ossl_fail(err, ATR_E_NOMEM, "EC signature: out of memory");
    /* the digest type makes OpenSSL check the digest length too */
    int ok = (sign ? EVP_PKEY_sign_init(pctx) : EVP_PKEY_verify_init(pctx)) == 1 &&
             EVP_PKEY_CTX_set_signature_md(pctx, alg_md(a)) > 0;
    if (!ok) {
        EVP_PKEY_CTX_free(pctx);
        return atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: cannot set up %s %s", a->name,
                             sign ? "signing" : "verification");
    }
    *out = pctx;
    return ATR_OK;
}

atr_status atr_ec_sign_digest(struct atr_buf *out, const struct atr_ec_key *key, atr_ec_alg alg,
                              struct atr_span digest, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL && key != NULL);
    ATR_ASSERT_ARG(digest.ptr != NULL || digest.len == 0);
    const struct alg_info *a = NULL;
    ATR_TRY(check_alg(&a, key, alg, digest, err));
    if (!key->priv)
        return atr_err_set(err, ATR_E_INVALID, "EC signature: signing needs a private key");
    size_t size = atr_ec_curve_size(key->curve);
    atr_status rc = atr_buf_reserve(out, 2 * size);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "EC signature: no room for the signature");

    ECDSA_SIG *sig = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    ATR_TRY(digest_ctx(&pctx, key, a, 1, err));
    uint8_t der[EC_MAX_DER_SIG];
    size_t derlen = sizeof(der);
    if (EVP_PKEY_sign(pctx, der, &derlen, digest.ptr, digest.len) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: %s signing failed", a->name);
        goto done;
    }
    /* DER ECDSA-Sig-Value (RFC 3279 section 2.2.3) to r || s (RFC 7518 section 3.4) */
    const unsigned char *p = der;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (sig == NULL || p != der + derlen) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: %s signing failed", a->name);
        goto done;
    }
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    uint8_t *dst = out->ptr + out->len;
    if (BN_bn2binpad(r, dst, (int)size) != (int)size ||
        BN_bn2binpad(s, dst + size, (int)size) != (int)size) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: %s signing failed", a->name);
        goto done;
    }
    out->len += 2 * size;
done:
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(pctx);
    return rc;
}

atr_status atr_ec_verify_digest(const struct atr_ec_key *key, atr_ec_alg alg,
                                struct atr_span digest, struct atr_span sig, struct atr_err *err)
{
    ATR_ASSERT_ARG(key != NULL);
    ATR_ASSERT_ARG(digest.ptr != NULL || digest.len == 0);
    ATR_ASSERT_ARG(sig.ptr != NULL || sig.len == 0);
    const struct alg_info *a = NULL;
    ATR_TRY(check_alg(&a, key, alg, digest, err));
    size_t size = atr_ec_curve_size(key->curve);
    if (sig.len != 2 * size)
        return atr_err_set(err, ATR_E_AUTH_FAILED, VERIFY_FAILED_MSG);

    atr_status rc = ATR_OK;
    EVP_PKEY_CTX *pctx = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = BN_bin2bn(sig.ptr, (int)size, NULL);
    BIGNUM *s = BN_bin2bn(sig.ptr + size, (int)size, NULL);
    if (r == NULL || s == NULL || (es = ECDSA_SIG_new()) == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "EC signature: out of memory");
        goto done;
    }
    /* OpenSSL rejects these too; r, s must be in [1, n-1] (SEC 1 section 4.1.4) */
    if (BN_is_zero(r) || BN_is_zero(s)) {
        rc = atr_err_set(err, ATR_E_AUTH_FAILED, VERIFY_FAILED_MSG);
        goto done;
    }
    if (ECDSA_SIG_set0(es, r, s) != 1) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: cannot set up verification");
        goto done;
    }
    r = s = NULL; /* owned by es */
    uint8_t der[EC_MAX_DER_SIG];
    int derlen = i2d_ECDSA_SIG(es, NULL);
    if (derlen <= 0 || (size_t)derlen > sizeof(der)) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: cannot set up verification");
        goto done;
    }
    unsigned char *p = der;
    if (i2d_ECDSA_SIG(es, &p) != derlen) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "EC signature: cannot set up verification");
        goto done;
    }
    if ((rc = digest_ctx(&pctx, key, a, 0, err)) != ATR_OK)
        goto done;
    /* 1 valid; 0 invalid; negative for an error such as r or s >= n */
    if (EVP_PKEY_verify(pctx, der, (size_t)derlen, digest.ptr, digest.len) != 1)
        rc = atr_ossl_fail(err, ATR_E_AUTH_FAILED, VERIFY_FAILED_MSG);
done:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(pctx);
    return rc;
}
