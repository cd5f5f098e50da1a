/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/secmem.h"
#include "crypto/ec.h"

static const atr_ec_curve all_curves[] = {ATR_EC_P256, ATR_EC_P384, ATR_EC_P521, ATR_EC_P256K};
static const atr_ec_alg all_algs[] = {ATR_EC_ES256, ATR_EC_ES384, ATR_EC_ES512, ATR_EC_ES256K};

static struct atr_ec_key *keys[4];  /* one private key per curve, in all_curves order */
static struct atr_ec_key *pubs[4];  /* their public parts */
static struct atr_ec_key *other256; /* an unrelated P-256 key */

/* RFC 6979 appendix A.2.5: P-256 key pair, and the ECDSA signature of "sample" with SHA-256. */
static const char kat_x[] = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
static const char kat_ux[] = "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
static const char kat_uy[] = "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
static const char kat_r[] = "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716";
static const char kat_s[] = "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8";
/* The order n of P-256 (SEC 2 section 2.4.2). */
static const char p256_n[] = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

/* ---- helpers ------------------------------------------------------------- */

static struct atr_ec_key *public_of(const struct atr_ec_key *k)
{
    json_t *j = NULL;
    struct atr_ec_key *p = NULL;
    assert_int_equal(atr_ec_key_to_jwk(&j, k, 0, NULL), ATR_OK);
    assert_int_equal(atr_ec_key_from_jwk(&p, j, NULL), ATR_OK);
    json_decref(j);
    assert_false(atr_ec_key_has_private(p));
    return p;
}

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_curves); i++) {
        if (atr_ec_key_generate(&keys[i], all_curves[i], NULL) != ATR_OK)
            return -1;
        pubs[i] = public_of(keys[i]);
    }
    if (atr_ec_key_generate(&other256, ATR_EC_P256, NULL) != ATR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(keys); i++) {
        atr_ec_key_free(keys[i]);
        atr_ec_key_free(pubs[i]);
    }
    atr_ec_key_free(other256);
    return 0;
}

/* Hashes @p text with the digest of @p alg into @p out; returns the length. */
static size_t digest_of(uint8_t *out, atr_ec_alg alg, const char *text)
{
    const EVP_MD *md = atr_ec_alg_digest_len(alg) == 32   ? EVP_sha256()
                       : atr_ec_alg_digest_len(alg) == 48 ? EVP_sha384()
                                                          : EVP_sha512();
    unsigned n = 0;
    assert_int_equal(EVP_Digest(text, strlen(text), out, &n, md, NULL), 1);
    assert_int_equal(n, atr_ec_alg_digest_len(alg));
    return n;
}

/* Sets member @p name of @p j to the base64url of @p bytes. */
static void set_b64(json_t *j, const char *name, struct atr_span bytes)
{
    struct atr_buf t;
    atr_buf_init(&t, 4096);
    assert_int_equal(atr_b64url_encode(&t, bytes), ATR_OK);
    assert_int_equal(json_object_set_new(j, name, json_stringn((const char *)t.ptr, t.len)), 0);
    atr_buf_cleanup(&t);
}

/* Sets member @p name of @p j to the base64url of the bytes given in hex. */
static void set_hex(json_t *j, const char *name, const char *hex)
{
    struct atr_buf b;
    atr_buf_init(&b, 4096);
    atr_test_hex(&b, hex);
    set_b64(j, name, atr_buf_span(&b));
    atr_buf_cleanup(&b);
}

/* Decodes member @p name of @p j into @p out. */
static void get_b64(struct atr_buf *out, const json_t *j, const char *name)
{
    const json_t *v = json_object_get(j, name);
    assert_non_null(v);
    assert_int_equal(atr_b64url_decode(out, json_string_value(v), json_string_length(v), NULL),
                     ATR_OK);
}

/* Imports @p j (consumed) and expects @p want. */
static void expect_import(json_t *j, atr_status want)
{
    struct atr_ec_key *k = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_ec_key_from_jwk(&k, j, &err), want);
    if (want == ATR_OK) {
        assert_non_null(k);
    } else {
        assert_null(k);
        assert_int_equal(err.code, want);
    }
    atr_ec_key_free(k);
    json_decref(j);
}

static json_t *jwk_of(const struct atr_ec_key *k, int priv)
{
    json_t *j = NULL;
    assert_int_equal(atr_ec_key_to_jwk(&j, k, priv, NULL), ATR_OK);
    return j;
}

static void expect_bad_sig(const struct atr_ec_key *k, atr_ec_alg alg, struct atr_span digest,
                           struct atr_span sig)
{
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_ec_verify_digest(k, alg, digest, sig, &err), ATR_E_AUTH_FAILED);
    assert_int_equal(err.code, ATR_E_AUTH_FAILED);
    assert_string_equal(err.msg, "signature verification failed");
}

static json_t *kat_public_jwk(void)
{
    json_t *j = json_pack("{s:s, s:s}", "kty", "EC", "crv", "P-256");
    assert_non_null(j);
    set_hex(j, "x", kat_ux);
    set_hex(j, "y", kat_uy);
    return j;
}

/* ---- names ----------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    static const char *const cnames[] = {"P-256", "P-384", "P-521", "P-256K"};
    static const size_t sizes[] = {32, 48, 66, 32};
    for (size_t i = 0; i < ATR_ARRAY_LEN(cnames); i++) {
        atr_ec_curve c = (atr_ec_curve)0;
        assert_int_equal(atr_ec_curve_from_name(&c, cnames[i], NULL), ATR_OK);
        assert_int_equal(c, all_curves[i]);
        assert_string_equal(atr_ec_curve_name(c), cnames[i]);
        assert_int_equal(atr_ec_curve_size(c), sizes[i]);
    }
    static const char *const anames[] = {"ES256", "ES384", "ES512", "ES256K"};
    static const size_t dlens[] = {32, 48, 64, 32};
    for (size_t i = 0; i < ATR_ARRAY_LEN(anames); i++) {
        atr_ec_alg a = (atr_ec_alg)0;
        assert_int_equal(atr_ec_alg_from_name(&a, anames[i], NULL), ATR_OK);
        assert_int_equal(a, all_algs[i]);
        assert_string_equal(atr_ec_alg_name(a), anames[i]);
        assert_int_equal(atr_ec_alg_digest_len(a), dlens[i]);
        assert_int_equal(atr_ec_alg_curve(a), all_curves[i]);
    }
    static const char *const bad[] = {"p-256", "P256", "P-256 ", "secp256k1", "P-224", "", "ES256"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        atr_ec_curve c = ATR_EC_P384;
        assert_int_equal(atr_ec_curve_from_name(&c, bad[i], NULL), ATR_E_UNSUPPORTED);
        assert_int_equal(c, ATR_EC_P384);
    }
    static const char *const bad_alg[] = {"es256", "ES256k", "RS256", "none", "", "P-256"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_alg); i++) {
        atr_ec_alg a = ATR_EC_ES384;
        assert_int_equal(atr_ec_alg_from_name(&a, bad_alg[i], NULL), ATR_E_UNSUPPORTED);
        assert_int_equal(a, ATR_EC_ES384);
    }
    atr_ec_curve c;
    atr_ec_alg a;
    assert_int_equal(atr_ec_curve_from_name(&c, NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_ec_alg_from_name(&a, NULL, NULL), ATR_E_INVALID);
    assert_null(atr_ec_curve_name((atr_ec_curve)0));
    assert_null(atr_ec_curve_name((atr_ec_curve)5));
    assert_int_equal(atr_ec_curve_size((atr_ec_curve)0), 0);
    assert_null(atr_ec_alg_name((atr_ec_alg)0));
    assert_null(atr_ec_alg_name((atr_ec_alg)5));
    assert_int_equal(atr_ec_alg_digest_len((atr_ec_alg)5), 0);
    assert_int_equal(atr_ec_alg_curve((atr_ec_alg)0), 0);
}

/* ---- generation and signatures ------------------------------------------- */

static void test_generate(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_curves); i++) {
        assert_int_equal(atr_ec_key_curve(keys[i]), all_curves[i]);
        assert_int_equal(atr_ec_key_curve(pubs[i]), all_curves[i]);
        assert_true(atr_ec_key_has_private(keys[i]));
        assert_false(atr_ec_key_has_private(pubs[i]));
        assert_non_null(atr_ec_key_pkey(keys[i]));
        struct atr_buf x, y;
        atr_buf_init(&x, 256);
        atr_buf_init(&y, 256);
        assert_int_equal(atr_ec_key_public_xy(&x, &y, keys[i], NULL), ATR_OK);
        assert_int_equal(x.len, atr_ec_curve_size(all_curves[i]));
        assert_int_equal(y.len, atr_ec_curve_size(all_curves[i]));
        atr_buf_cleanup(&x);
        atr_buf_cleanup(&y);
    }
    struct atr_ec_key *k = NULL;
    assert_int_equal(atr_ec_key_generate(&k, (atr_ec_curve)0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_ec_key_generate(&k, (atr_ec_curve)5, NULL), ATR_E_INVALID);
    assert_null(k);
    /* two keys differ */
    struct atr_buf x1, y1, x2, y2;
    atr_buf_init(&x1, 64);
    atr_buf_init(&y1, 64);
    atr_buf_init(&x2, 64);
    atr_buf_init(&y2, 64);
    assert_int_equal(atr_ec_key_public_xy(&x1, &y1, keys[0], NULL), ATR_OK);
    assert_int_equal(atr_ec_key_public_xy(&x2, &y2, other256, NULL), ATR_OK);
    assert_memory_not_equal(x1.ptr, x2.ptr, 32);
    atr_buf_cleanup(&x1);
    atr_buf_cleanup(&y1);
    atr_buf_cleanup(&x2);
    atr_buf_cleanup(&y2);
    atr_ec_key_free(NULL);
    assert_int_equal(atr_ec_key_curve(NULL), 0);
    assert_false(atr_ec_key_has_private(NULL));
    assert_null(atr_ec_key_pkey(NULL));
}

static void test_sign_verify(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_algs); i++) {
        atr_ec_alg alg = all_algs[i];
        size_t size = atr_ec_curve_size(all_curves[i]);
        uint8_t d[64];
        size_t dlen = digest_of(d, alg, "the quick brown fox");
        struct atr_span digest = atr_span_of(d, dlen);
        struct atr_buf sig, sig2;
        atr_buf_init(&sig, 256);
        atr_buf_init(&sig2, 256);
        assert_int_equal(atr_ec_sign_digest(&sig, keys[i], alg, digest, NULL), ATR_OK);
        assert_int_equal(sig.len, 2 * size);
        assert_int_equal(atr_ec_verify_digest(pubs[i], alg, digest, atr_buf_span(&sig), NULL),
                         ATR_OK);
        assert_int_equal(atr_ec_verify_digest(keys[i], alg, digest, atr_buf_span(&sig), NULL),
                         ATR_OK);
        /* randomised: a second signature differs and verifies too */
        assert_int_equal(atr_ec_sign_digest(&sig2, keys[i], alg, digest, NULL), ATR_OK);
        assert_memory_not_equal(sig.ptr, sig2.ptr, sig.len);
        assert_int_equal(atr_ec_verify_digest(pubs[i], alg, digest, atr_buf_span(&sig2), NULL),
                         ATR_OK);

        /* tampered digest */
        d[dlen - 1] ^= 0x80;
        expect_bad_sig(pubs[i], alg, digest, atr_buf_span(&sig));
        d[dlen - 1] ^= 0x80;
        /* every region of r and s matters */
        const size_t at[] = {0, 1, size - 1, size, size + 1, 2 * size - 1};
        for (size_t j = 0; j < ATR_ARRAY_LEN(at); j++) {
            sig.ptr[at[j]] ^= 0x01;
            expect_bad_sig(pubs[i], alg, digest, atr_buf_span(&sig));
            sig.ptr[at[j]] ^= 0x01;
        }
        /* r and s swapped */
        uint8_t swapped[ATR_EC_MAX_SIG];
        memcpy(swapped, sig.ptr + size, size);
        memcpy(swapped + size, sig.ptr, size);
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(swapped, 2 * size));
        /* wrong lengths */
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(sig.ptr, 2 * size - 1));
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(NULL, 0));
        uint8_t longer[ATR_EC_MAX_SIG + 1];
        memcpy(longer + 1, sig.ptr, 2 * size);
        longer[0] = 0; /* a leading zero byte is still the wrong length */
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(longer, 2 * size + 1));
        /* all zeros, all ones, r zero, s zero */
        uint8_t fill[ATR_EC_MAX_SIG];
        memset(fill, 0, sizeof(fill));
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(fill, 2 * size));
        memset(fill, 0xff, sizeof(fill));
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(fill, 2 * size));
        memcpy(fill, sig.ptr, 2 * size);
        memset(fill, 0, size);
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(fill, 2 * size));
        memcpy(fill, sig.ptr, 2 * size);
        memset(fill + size, 0, size);
        expect_bad_sig(pubs[i], alg, digest, atr_span_of(fill, 2 * size));
        /* another key of the same curve */
        if (all_curves[i] == ATR_EC_P256)
            expect_bad_sig(other256, alg, digest, atr_buf_span(&sig));
        /* still valid after all that */
        assert_int_equal(atr_ec_verify_digest(pubs[i], alg, digest, atr_buf_span(&sig), NULL),
                         ATR_OK);
        atr_buf_cleanup(&sig);
        atr_buf_cleanup(&sig2);
    }
}

/* ES256 and ES256K share length and digest, but not the curve. */
static void test_wrong_alg_and_arguments(void **state)
{
    (void)state;
    uint8_t d[64] = {0};
    struct atr_buf sig;
    atr_buf_init(&sig, 256);
    struct atr_err err;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_curves); i++) {
        for (size_t a = 0; a < ATR_ARRAY_LEN(all_algs); a++) {
            if (a == i)
                continue;
            struct atr_span digest = atr_span_of(d, atr_ec_alg_digest_len(all_algs[a]));
            atr_err_clear(&err);
            assert_int_equal(atr_ec_sign_digest(&sig, keys[i], all_algs[a], digest, &err),
                             ATR_E_INVALID);
            assert_int_equal(sig.len, 0);
            uint8_t fake[ATR_EC_MAX_SIG] = {1};
            size_t slen = 2 * atr_ec_curve_size(all_curves[i]);
            assert_int_equal(
                atr_ec_verify_digest(pubs[i], all_algs[a], digest, atr_span_of(fake, slen), &err),
                ATR_E_INVALID);
        }
        /* unknown algorithms */
        assert_int_equal(atr_ec_sign_digest(&sig, keys[i], (atr_ec_alg)0, atr_span_of(d, 32), NULL),
                         ATR_E_INVALID);
        assert_int_equal(atr_ec_verify_digest(pubs[i], (atr_ec_alg)5, atr_span_of(d, 32),
                                              atr_span_of(d, 64), NULL),
                         ATR_E_INVALID);
    }
    /* the ES256 signature of a P-256 key does not verify as ES256K on a P-256K key */
    uint8_t dg[32];
    digest_of(dg, ATR_EC_ES256, "m");
    assert_int_equal(atr_ec_sign_digest(&sig, keys[0], ATR_EC_ES256, atr_span_of(dg, 32), NULL),
                     ATR_OK);
    expect_bad_sig(pubs[3], ATR_EC_ES256K, atr_span_of(dg, 32), atr_buf_span(&sig));
    atr_buf_reset(&sig);

    /* digest lengths must match the algorithm */
    static const size_t bad_len[] = {0, 20, 31, 33, 48, 64};
    for (size_t j = 0; j < ATR_ARRAY_LEN(bad_len); j++) {
        atr_err_clear(&err);
        assert_int_equal(
            atr_ec_sign_digest(&sig, keys[0], ATR_EC_ES256, atr_span_of(d, bad_len[j]), &err),
            ATR_E_INVALID);
        uint8_t fake[64] = {1};
        assert_int_equal(atr_ec_verify_digest(pubs[0], ATR_EC_ES256, atr_span_of(d, bad_len[j]),
                                              atr_span_of(fake, 64), &err),
                         ATR_E_INVALID);
    }
    assert_int_equal(atr_ec_sign_digest(&sig, keys[2], ATR_EC_ES512, atr_span_of(d, 48), NULL),
                     ATR_E_INVALID);
    /* a public key cannot sign */
    atr_err_clear(&err);
    assert_int_equal(atr_ec_sign_digest(&sig, pubs[0], ATR_EC_ES256, atr_span_of(d, 32), &err),
                     ATR_E_INVALID);
    assert_int_equal(sig.len, 0);
    atr_buf_cleanup(&sig);

    /* buffer cap: nothing appended */
    struct atr_buf small;
    atr_buf_init(&small, 63);
    assert_int_equal(atr_ec_sign_digest(&small, keys[0], ATR_EC_ES256, atr_span_of(d, 32), NULL),
                     ATR_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    atr_buf_cleanup(&small);
}

/* r or s equal to the group order n, or above it, is rejected. */
static void test_out_of_range_signature(void **state)
{
    (void)state;
    uint8_t d[32];
    digest_of(d, ATR_EC_ES256, "range");
    struct atr_buf sig, n;
    atr_buf_init(&sig, 64);
    atr_buf_init(&n, 32);
    atr_test_hex(&n, p256_n);
    assert_int_equal(atr_ec_sign_digest(&sig, keys[0], ATR_EC_ES256, atr_span_of(d, 32), NULL),
                     ATR_OK);
    uint8_t bad[64];
    memcpy(bad, sig.ptr, 64);
    memcpy(bad, n.ptr, 32); /* r = n */
    expect_bad_sig(pubs[0], ATR_EC_ES256, atr_span_of(d, 32), atr_span_of(bad, 64));
    memcpy(bad, sig.ptr, 64);
    memcpy(bad + 32, n.ptr, 32); /* s = n */
    expect_bad_sig(pubs[0], ATR_EC_ES256, atr_span_of(d, 32), atr_span_of(bad, 64));
    memcpy(bad, sig.ptr, 64);
    memcpy(bad, n.ptr, 32);
    bad[31] = (uint8_t)(bad[31] + 1); /* r = n + 1 */
    expect_bad_sig(pubs[0], ATR_EC_ES256, atr_span_of(d, 32), atr_span_of(bad, 64));
    atr_buf_cleanup(&sig);
    atr_buf_cleanup(&n);
}

/* RFC 6979 appendix A.2.5, P-256 with SHA-256, message "sample". */
static void test_known_answer(void **state)
{
    (void)state;
    struct atr_ec_key *k = NULL;
    json_t *j = kat_public_jwk();
    assert_int_equal(atr_ec_key_from_jwk(&k, j, NULL), ATR_OK);
    assert_false(atr_ec_key_has_private(k));
    assert_int_equal(atr_ec_key_curve(k), ATR_EC_P256);

    uint8_t d[32];
    digest_of(d, ATR_EC_ES256, "sample");
    struct atr_buf sig;
    atr_buf_init(&sig, 64);
    atr_test_hex(&sig, kat_r);
    atr_test_hex(&sig, kat_s);
    assert_int_equal(sig.len, 64);
    assert_int_equal(
        atr_ec_verify_digest(k, ATR_EC_ES256, atr_span_of(d, 32), atr_buf_span(&sig), NULL),
        ATR_OK);
    /* one bit flipped anywhere fails */
    static const size_t at[] = {0, 17, 31, 32, 50, 63};
    for (size_t i = 0; i < ATR_ARRAY_LEN(at); i++) {
        sig.ptr[at[i]] ^= 0x10;
        expect_bad_sig(k, ATR_EC_ES256, atr_span_of(d, 32), atr_buf_span(&sig));
        sig.ptr[at[i]] ^= 0x10;
    }
    d[0] ^= 1;
    expect_bad_sig(k, ATR_EC_ES256, atr_span_of(d, 32), atr_buf_span(&sig));
    d[0] ^= 1;
    /* "test" has a different signature */
    uint8_t d2[32];
    digest_of(d2, ATR_EC_ES256, "test");
    expect_bad_sig(k, ATR_EC_ES256, atr_span_of(d2, 32), atr_buf_span(&sig));

    /* the private key x of the RFC matches (Ux, Uy); its signatures verify with the public key */
    struct atr_ec_key *kp = NULL;
    set_hex(j, "d", kat_x);
    assert_int_equal(atr_ec_key_from_jwk(&kp, j, NULL), ATR_OK);
    assert_true(atr_ec_key_has_private(kp));
    struct atr_buf s2;
    atr_buf_init(&s2, 64);
    assert_int_equal(atr_ec_sign_digest(&s2, kp, ATR_EC_ES256, atr_span_of(d, 32), NULL), ATR_OK);
    assert_int_equal(
        atr_ec_verify_digest(k, ATR_EC_ES256, atr_span_of(d, 32), atr_buf_span(&s2), NULL), ATR_OK);
    /* export writes the same members back */
    json_t *out = NULL;
    assert_int_equal(atr_ec_key_to_jwk(&out, kp, 1, NULL), ATR_OK);
    static const char *const members[] = {"kty", "crv", "x", "y", "d"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(members); i++)
        assert_string_equal(json_string_value(json_object_get(out, members[i])),
                            json_string_value(json_object_get(j, members[i])));
    json_decref(out);
    atr_buf_cleanup(&s2);
    atr_buf_cleanup(&sig);
    atr_ec_key_free(kp);
    atr_ec_key_free(k);
    json_decref(j);
}

/* ---- JWK ------------------------------------------------------------------- */

static void test_jwk_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_curves); i++) {
        size_t size = atr_ec_curve_size(all_curves[i]);
        json_t *pubj = jwk_of(keys[i], 0);
        json_t *privj = jwk_of(keys[i], 1);
        assert_int_equal(json_object_size(pubj), 4);
        assert_int_equal(json_object_size(privj), 5);
        assert_string_equal(json_string_value(json_object_get(pubj, "kty")), "EC");
        assert_string_equal(json_string_value(json_object_get(pubj, "crv")),
                            atr_ec_curve_name(all_curves[i]));
        assert_null(json_object_get(pubj, "d"));
        static const char *const m[] = {"x", "y", "d"};
        for (size_t j = 0; j < 3; j++) {
            const json_t *v = json_object_get(privj, m[j]);
            assert_int_equal(json_string_length(v), atr_b64url_encoded_len(size));
        }
        /* x and y are what public_xy gives */
        struct atr_buf x, y, jx;
        atr_buf_init(&x, 66);
        atr_buf_init(&y, 66);
        atr_buf_init(&jx, 66);
        assert_int_equal(atr_ec_key_public_xy(&x, &y, keys[i], NULL), ATR_OK);
        get_b64(&jx, pubj, "x");
        assert_int_equal(jx.len, size);
        assert_memory_equal(jx.ptr, x.ptr, size);

        /* private import: signs, and the original verifies */
        struct atr_ec_key *k = NULL;
        assert_int_equal(atr_ec_key_from_jwk(&k, privj, NULL), ATR_OK);
        assert_true(atr_ec_key_has_private(k));
        assert_int_equal(atr_ec_key_curve(k), all_curves[i]);
        uint8_t d[64];
        size_t dlen = digest_of(d, all_algs[i], "jwk");
        struct atr_buf sig;
        atr_buf_init(&sig, 256);
        assert_int_equal(atr_ec_sign_digest(&sig, k, all_algs[i], atr_span_of(d, dlen), NULL),
                         ATR_OK);
        assert_int_equal(atr_ec_verify_digest(pubs[i], all_algs[i], atr_span_of(d, dlen),
                                              atr_buf_span(&sig), NULL),
                         ATR_OK);
        /* the re-export is identical */
        json_t *again = jwk_of(k, 1);
        assert_true(json_equal(again, privj));
        json_decref(again);
        /* public-only export of the imported key matches */
        again = jwk_of(k, 0);
        assert_true(json_equal(again, pubj));
        json_decref(again);
        /* a public key cannot export a private JWK */
        json_t *none = NULL;
        assert_int_equal(atr_ec_key_to_jwk(&none, pubs[i], 1, NULL), ATR_E_INVALID);
        assert_null(none);
        /* EC-HSM and extra members are accepted */
        json_object_set_new(pubj, "kty", json_string("EC-HSM"));
        json_object_set_new(pubj, "kid", json_string("https://v/keys/k/1"));
        json_object_set_new(pubj, "key_ops", json_pack("[s,s]", "sign", "verify"));
        expect_import(json_deep_copy(pubj), ATR_OK);

        atr_ec_key_free(k);
        atr_buf_cleanup(&sig);
        atr_buf_cleanup(&x);
        atr_buf_cleanup(&y);
        atr_buf_cleanup(&jx);
        json_decref(pubj);
        json_decref(privj);
    }
}

/* A point that is not on the curve, or with a coordinate not below p, is rejected. */
static void test_jwk_point_not_on_curve(void **state)
{
    (void)state;
    /* (Ux, Uy + 1) */
    json_t *j = kat_public_jwk();
    struct atr_buf y;
    atr_buf_init(&y, 64);
    atr_test_hex(&y, kat_uy);
    y.ptr[31] ^= 0x01;
    set_b64(j, "y", atr_buf_span(&y));
    expect_import(j, ATR_E_INVALID);
    /* x = y = all ones (x >= p) */
    uint8_t ff[32];
    memset(ff, 0xff, sizeof(ff));
    j = kat_public_jwk();
    set_b64(j, "x", atr_span_of(ff, 32));
    set_b64(j, "y", atr_span_of(ff, 32));
    expect_import(j, ATR_E_INVALID);
    /* (0, 0) */
    memset(ff, 0, sizeof(ff));
    j = kat_public_jwk();
    set_b64(j, "x", atr_span_of(ff, 32));
    set_b64(j, "y", atr_span_of(ff, 32));
    expect_import(j, ATR_E_INVALID);
    /* a valid P-256 point presented as a P-256K point */
    j = kat_public_jwk();
    json_object_set_new(j, "crv", json_string("P-256K"));
    expect_import(j, ATR_E_INVALID);
    /* with a matching private key too */
    j = kat_public_jwk();
    set_b64(j, "y", atr_buf_span(&y));
    set_hex(j, "d", kat_x);
    expect_import(j, ATR_E_INVALID);
    atr_buf_cleanup(&y);
}

static void test_jwk_lengths(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_curves); i++) {
        size_t size = atr_ec_curve_size(all_curves[i]);
        static const char *const m[] = {"x", "y", "d"};
        for (size_t k = 0; k < 3; k++) {
            json_t *j = jwk_of(keys[i], 1);
            struct atr_buf v;
            atr_buf_init(&v, 128);
            get_b64(&v, j, m[k]);
            assert_int_equal(v.len, size);
            /* one byte short (as if a leading zero had been stripped) */
            json_t *c = json_deep_copy(j);
            set_b64(c, m[k], atr_span_of(v.ptr + 1, size - 1));
            expect_import(c, ATR_E_INVALID);
            /* one byte long (a leading zero added) */
            uint8_t longer[ATR_EC_MAX_FIELD + 1] = {0};
            memcpy(longer + 1, v.ptr, size);
            c = json_deep_copy(j);
            set_b64(c, m[k], atr_span_of(longer, size + 1));
            expect_import(c, ATR_E_INVALID);
            /* empty */
            c = json_deep_copy(j);
            json_object_set_new(c, m[k], json_string(""));
            expect_import(c, ATR_E_INVALID);
            atr_buf_cleanup(&v);
            json_decref(j);
        }
        /* coordinates of another curve's size */
        if (i != 0) {
            json_t *j = jwk_of(keys[i], 0);
            json_t *o = jwk_of(keys[0], 0);
            json_object_set(j, "x", json_object_get(o, "x"));
            json_object_set(j, "y", json_object_get(o, "y"));
            expect_import(j, ATR_E_INVALID);
            json_decref(o);
        }
    }
}

static void test_jwk_private_mismatch(void **state)
{
    (void)state;
    /* keys[0]'s point with other256's scalar */
    json_t *j = jwk_of(keys[0], 0);
    json_t *o = jwk_of(other256, 1);
    json_object_set(j, "d", json_object_get(o, "d"));
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_ec_key *k = NULL;
    assert_int_equal(atr_ec_key_from_jwk(&k, j, &err), ATR_E_INVALID);
    assert_null(k);
    /* the message never carries key bytes */
    assert_null(strstr(err.msg, json_string_value(json_object_get(o, "d"))));
    json_decref(j);
    json_decref(o);

    /* d = 0, d = n, d = all ones */
    uint8_t zero[32] = {0}, ff[32];
    memset(ff, 0xff, sizeof(ff));
    j = kat_public_jwk();
    set_b64(j, "d", atr_span_of(zero, 32));
    expect_import(j, ATR_E_INVALID);
    j = kat_public_jwk();
    set_hex(j, "d", p256_n);
    expect_import(j, ATR_E_INVALID);
    j = kat_public_jwk();
    set_b64(j, "d", atr_span_of(ff, 32));
    expect_import(j, ATR_E_INVALID);
    /* d + n would give the same point: still rejected because d >= n */
}

static void test_jwk_malformed(void **state)
{
    (void)state;
    expect_import(json_array(), ATR_E_PARSE);
    expect_import(json_string("EC"), ATR_E_PARSE);

    json_t *base = kat_public_jwk();
    json_t *j = json_deep_copy(base);
    json_object_del(j, "kty");
    expect_import(j, ATR_E_INVALID);
    static const char *const bad_kty[] = {"RSA", "ec", "EC ", "OKP", "oct", ""};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_kty); i++) {
        j = json_deep_copy(base);
        json_object_set_new(j, "kty", json_string(bad_kty[i]));
        expect_import(j, ATR_E_INVALID);
    }
    j = json_deep_copy(base);
    json_object_set_new(j, "kty", json_integer(2));
    expect_import(j, ATR_E_PARSE);

    j = json_deep_copy(base);
    json_object_del(j, "crv");
    expect_import(j, ATR_E_INVALID);
    static const char *const bad_crv[] = {"P-224", "secp256k1", "p-256", "Ed25519", ""};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_crv); i++) {
        j = json_deep_copy(base);
        json_object_set_new(j, "crv", json_string(bad_crv[i]));
        expect_import(j, ATR_E_UNSUPPORTED);
    }
    j = json_deep_copy(base);
    json_object_set_new(j, "crv", json_stringn("P-256\0x", 7));
    expect_import(j, ATR_E_UNSUPPORTED);
    j = json_deep_copy(base);
    json_object_set_new(j, "crv", json_integer(256));
    expect_import(j, ATR_E_PARSE);

    static const char *const coords[] = {"x", "y"};
    for (size_t i = 0; i < 2; i++) {
        j = json_deep_copy(base);
        json_object_del(j, coords[i]);
        expect_import(j, ATR_E_INVALID);
        j = json_deep_copy(base);
        json_object_set_new(j, coords[i], json_integer(1));
        expect_import(j, ATR_E_PARSE);
        /* right length, not base64url ('+' and '=' belong to base64) */
        j = json_deep_copy(base);
        char text[44];
        memset(text, 'A', 43);
        text[0] = '+';
        text[43] = '\0';
        json_object_set_new(j, coords[i], json_string(text));
        expect_import(j, ATR_E_PARSE);
        /* non-canonical last character (unused bits set) */
        j = json_deep_copy(base);
        memset(text, 'A', 43);
        text[42] = 'B';
        json_object_set_new(j, coords[i], json_string(text));
        expect_import(j, ATR_E_PARSE);
    }
    j = json_deep_copy(base);
    json_object_set_new(j, "d", json_null());
    expect_import(j, ATR_E_PARSE);

    static const char *const foreign[] = {"n", "e", "k", "p", "oth"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(foreign); i++) {
        j = json_deep_copy(base);
        json_object_set_new(j, foreign[i], json_string("AQAB"));
        expect_import(j, ATR_E_INVALID);
    }
    j = json_deep_copy(base);
    json_object_set_new(j, "kid", json_integer(1));
    expect_import(j, ATR_E_PARSE);
    j = json_deep_copy(base);
    json_object_set_new(j, "key_ops", json_pack("[s,i]", "sign", 1));
    expect_import(j, ATR_E_PARSE);
    j = json_deep_copy(base);
    json_object_set_new(j, "key_hsm", json_string("AAAA"));
    expect_import(j, ATR_E_UNSUPPORTED);
    /* the base itself is fine */
    expect_import(base, ATR_OK);
}

/* ---- DER ------------------------------------------------------------------- */

static void same_point(const struct atr_ec_key *a, const struct atr_ec_key *b)
{
    struct atr_buf x1, y1, x2, y2;
    atr_buf_init(&x1, 66);
    atr_buf_init(&y1, 66);
    atr_buf_init(&x2, 66);
    atr_buf_init(&y2, 66);
    assert_int_equal(atr_ec_key_public_xy(&x1, &y1, a, NULL), ATR_OK);
    assert_int_equal(atr_ec_key_public_xy(&x2, &y2, b, NULL), ATR_OK);
    assert_int_equal(x1.len, x2.len);
    assert_memory_equal(x1.ptr, x2.ptr, x1.len);
    assert_memory_equal(y1.ptr, y2.ptr, y1.len);
    atr_buf_cleanup(&x1);
    atr_buf_cleanup(&y1);
    atr_buf_cleanup(&x2);
    atr_buf_cleanup(&y2);
}

static void test_der_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(all_curves); i++) {
        struct atr_secret der = ATR_SECRET_INIT;
        assert_int_equal(atr_ec_key_format_der_private(&der, keys[i], NULL), ATR_OK);
        assert_true(CRYPTO_secure_allocated(atr_secret_cdata(&der)));
        assert_int_equal(atr_secret_cdata(&der)[0], 0x30);
        struct atr_ec_key *k = NULL;
        struct atr_span s = atr_span_of(atr_secret_cdata(&der), atr_secret_len(&der));
        assert_int_equal(atr_ec_key_parse_der(&k, s, NULL), ATR_OK);
        assert_true(atr_ec_key_has_private(k));
        assert_int_equal(atr_ec_key_curve(k), all_curves[i]);
        same_point(k, keys[i]);
        /* the private scalar survived: same private JWK */
        json_t *a = jwk_of(k, 1), *b = jwk_of(keys[i], 1);
        assert_true(json_equal(a, b));
        json_decref(a);
        json_decref(b);
        /* a second encoding is identical */
        struct atr_secret der2 = ATR_SECRET_INIT;
        assert_int_equal(atr_ec_key_format_der_private(&der2, k, NULL), ATR_OK);
        assert_int_equal(atr_secret_len(&der2), atr_secret_len(&der));
        assert_memory_equal(atr_secret_cdata(&der2), atr_secret_cdata(&der), atr_secret_len(&der));
        atr_secret_cleanup(&der2);
        atr_ec_key_free(k);
        k = NULL;

        /* truncated and extended inputs */
        assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(s.ptr, s.len - 1), NULL),
                         ATR_E_PARSE);
        uint8_t longer[512];
        assert_true(s.len < sizeof(longer));
        memcpy(longer, s.ptr, s.len);
        longer[s.len] = 0;
        assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(longer, s.len + 1), NULL),
                         ATR_E_PARSE);
        assert_null(k);
        atr_secret_cleanup(&der);
        atr_secret_cleanup(&der); /* idempotent */

        /* SubjectPublicKeyInfo gives a public key */
        unsigned char *spki = NULL;
        int n = i2d_PUBKEY(atr_ec_key_pkey(keys[i]), &spki);
        assert_true(n > 0);
        assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(spki, (size_t)n), NULL), ATR_OK);
        assert_false(atr_ec_key_has_private(k));
        same_point(k, keys[i]);
        OPENSSL_free(spki);
        atr_ec_key_free(k);
    }
    /* a public key has no private DER */
    struct atr_secret der = ATR_SECRET_INIT;
    assert_int_equal(atr_ec_key_format_der_private(&der, pubs[0], NULL), ATR_E_INVALID);
    assert_false(atr_secret_is_set(&der));
}

static void test_der_rejects(void **state)
{
    (void)state;
    struct atr_ec_key *k = NULL;
    assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(NULL, 0), NULL), ATR_E_PARSE);
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(junk, sizeof(junk)), NULL), ATR_E_PARSE);
    /* keys of another type or another curve */
    static const char *const other[][2] = {{"EC", "P-224"}, {"X25519", NULL}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(other); i++) {
        EVP_PKEY *p = other[i][1] != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", other[i][1])
                                          : EVP_PKEY_Q_keygen(NULL, NULL, other[i][0]);
        assert_non_null(p);
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(p, &der);
        assert_true(n > 0);
        struct atr_err err;
        atr_err_clear(&err);
        assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(der, (size_t)n), &err),
                         ATR_E_UNSUPPORTED);
        OPENSSL_free(der);
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(p);
        assert_non_null(p8);
        der = NULL;
        n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
        assert_true(n > 0);
        assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(der, (size_t)n), NULL),
                         ATR_E_UNSUPPORTED);
        OPENSSL_clear_free(der, (size_t)n);
        PKCS8_PRIV_KEY_INFO_free(p8);
        EVP_PKEY_free(p);
        assert_null(k);
    }
    /* explicit curve parameters, even those of P-256 */
    EVP_PKEY *p = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING,
                                         (char *)OSSL_PKEY_EC_ENCODING_EXPLICIT, 0),
        OSSL_PARAM_construct_end(),
    };
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_params(ctx, params), 1);
    assert_int_equal(EVP_PKEY_generate(ctx, &p), 1);
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(p, &der);
    assert_true(n > 100); /* explicit: much longer than the 91 bytes of a named-curve SPKI */
    assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(der, (size_t)n), NULL),
                     ATR_E_UNSUPPORTED);
    OPENSSL_free(der);
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(p);
    assert_non_null(p8);
    der = NULL;
    n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    assert_true(n > 0);
    assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(der, (size_t)n), NULL),
                     ATR_E_UNSUPPORTED);
    assert_null(k);
    OPENSSL_clear_free(der, (size_t)n);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(p);
    EVP_PKEY_CTX_free(ctx);

    /* oversized input */
    size_t big = 64 * 1024 + 1;
    uint8_t *huge = calloc(1, big);
    assert_non_null(huge);
    assert_int_equal(atr_ec_key_parse_der(&k, atr_span_of(huge, big), NULL), ATR_E_TOO_LARGE);
    free(huge);
}

/* ---- allocation failures ---------------------------------------------------- */

/*
 * Runs @p op failing the n-th allocation for n = 1, 2, ... until it
 * succeeds; every failure must be ATR_E_NOMEM (leaks show up under ASan).
 */
#define NOMEM_LOOP(setup_stmt, op, cleanup_stmt)                                                   \
    do {                                                                                           \
        atr_status rc_ = ATR_E_NOMEM;                                                              \
        unsigned long n_ = 1;                                                                      \
        for (; n_ < 100; n_++) {                                                                   \
            setup_stmt;                                                                            \
            atr_alloc_fail_after(n_);                                                              \
            rc_ = (op);                                                                            \
            atr_alloc_fail_reset();                                                                \
            cleanup_stmt;                                                                          \
            if (rc_ == ATR_OK)                                                                     \
                break;                                                                             \
            assert_int_equal(rc_, ATR_E_NOMEM);                                                    \
        }                                                                                          \
        assert_int_equal(rc_, ATR_OK);                                                             \
        assert_true(n_ > 1); /* at least one failure was injected */                               \
    } while (0)

static void test_alloc_failures(void **state)
{
    (void)state;
    struct atr_ec_key *k = NULL;
    NOMEM_LOOP(k = NULL, atr_ec_key_generate(&k, ATR_EC_P256, NULL), atr_ec_key_free(k));

    json_t *privj = jwk_of(keys[1], 1);
    NOMEM_LOOP(k = NULL, atr_ec_key_from_jwk(&k, privj, NULL), atr_ec_key_free(k));
    json_t *out = NULL;
    NOMEM_LOOP(out = NULL, atr_ec_key_to_jwk(&out, keys[1], 1, NULL), json_decref(out));
    json_decref(privj);

    struct atr_secret der = ATR_SECRET_INIT;
    assert_int_equal(atr_ec_key_format_der_private(&der, keys[2], NULL), ATR_OK);
    NOMEM_LOOP(
        k = NULL,
        atr_ec_key_parse_der(&k, atr_span_of(atr_secret_cdata(&der), atr_secret_len(&der)), NULL),
        atr_ec_key_free(k));
    atr_secret_cleanup(&der);

    struct atr_buf sig, x, y;
    uint8_t d[32] = {0};
    NOMEM_LOOP(atr_buf_init(&sig, 64),
               atr_ec_sign_digest(&sig, keys[0], ATR_EC_ES256, atr_span_of(d, 32), NULL),
               atr_buf_cleanup(&sig));
    NOMEM_LOOP((atr_buf_init(&x, 64), atr_buf_init(&y, 64)),
               atr_ec_key_public_xy(&x, &y, keys[3], NULL),
               (atr_buf_cleanup(&x), atr_buf_cleanup(&y)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_wrong_alg_and_arguments),
        cmocka_unit_test(test_out_of_range_signature),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_jwk_round_trip),
        cmocka_unit_test(test_jwk_point_not_on_curve),
        cmocka_unit_test(test_jwk_lengths),
        cmocka_unit_test(test_jwk_private_mismatch),
        cmocka_unit_test(test_jwk_malformed),
        cmocka_unit_test(test_der_round_trip),
        cmocka_unit_test(test_der_rejects),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
