/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/secmem.h"
#include "crypto/aead.h"

/* A key from hex, in secure memory. */
static void key_from_hex(struct atr_secret *key, const char *hex)
{
    struct atr_buf b;
    atr_buf_init(&b, 1024);
    atr_test_hex(&b, hex);
    assert_int_equal(atr_secret_init_copy(key, b.ptr, b.len), ATR_OK);
    atr_buf_cleanup(&b);
}

static struct atr_aead *aead_from_hex(const char *hex)
{
    struct atr_secret key = ATR_SECRET_INIT;
    key_from_hex(&key, hex);
    struct atr_aead *a = NULL;
    assert_int_equal(atr_aead_new(&a, &key, NULL), ATR_OK);
    atr_secret_cleanup(&key); /* the object does not need the caller's key */
    return a;
}

static struct atr_aead *aead_random(void)
{
    struct atr_secret key = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&key, ATR_AEAD_KEY_LEN), ATR_OK);
    struct atr_aead *a = NULL;
    assert_int_equal(atr_aead_new(&a, &key, NULL), ATR_OK);
    atr_secret_cleanup(&key);
    return a;
}

struct kat {
    const char *key, *iv, *aad, *pt, *ct, *tag;
};

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13, 14, 16. */
static const struct kat kats[] = {
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "", "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
     "49a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10"
     "56828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(kats); i++) {
        struct atr_buf iv, aad, pt, ct, tag;
        atr_buf_init(&iv, 64);
        atr_buf_init(&aad, 1024);
        atr_buf_init(&pt, 1024);
        atr_buf_init(&ct, 1024);
        atr_buf_init(&tag, 64);
        atr_test_hex(&iv, kats[i].iv);
        atr_test_hex(&aad, kats[i].aad);
        atr_test_hex(&pt, kats[i].pt);
        atr_test_hex(&ct, kats[i].ct);
        atr_test_hex(&tag, kats[i].tag);
        struct atr_aead *a = aead_from_hex(kats[i].key);

        uint8_t out[256], t[ATR_AEAD_TAG_LEN];
        assert_int_equal(
            atr_aead_seal_detached(out, t, a, iv.ptr, atr_buf_span(&aad), atr_buf_span(&pt), NULL),
            ATR_OK);
        if (pt.len > 0)
            assert_memory_equal(out, ct.ptr, ct.len);
        assert_memory_equal(t, tag.ptr, ATR_AEAD_TAG_LEN);

        uint8_t back[256];
        assert_int_equal(atr_aead_open_detached(back, a, iv.ptr, atr_buf_span(&aad),
                                                atr_buf_span(&ct), tag.ptr, NULL),
                         ATR_OK);
        if (pt.len > 0)
            assert_memory_equal(back, pt.ptr, pt.len);

        atr_aead_free(a);
        atr_buf_cleanup(&iv);
        atr_buf_cleanup(&aad);
        atr_buf_cleanup(&pt);
        atr_buf_cleanup(&ct);
        atr_buf_cleanup(&tag);
    }
}

static void test_framed_round_trip_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1024, 65536 + 3};
    struct atr_aead *a = aead_random();
    struct atr_span aad = atr_span_str("tenant=t1;block=42;v=1");
    for (size_t i = 0; i < ATR_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        uint8_t *pt = malloc(n + 1);
        assert_non_null(pt);
        for (size_t j = 0; j < n; j++)
            pt[j] = (uint8_t)(j * 7 + 1);
        struct atr_buf sealed, opened;
        atr_buf_init(&sealed, 1 << 20);
        atr_buf_init(&opened, 1 << 20);
        assert_int_equal(atr_aead_seal(&sealed, a, aad, atr_span_of(pt, n), NULL), ATR_OK);
        assert_int_equal(sealed.len, n + ATR_AEAD_OVERHEAD);
        if (n >= 16)
            assert_memory_not_equal(sealed.ptr + ATR_AEAD_NONCE_LEN, pt, 16);
        assert_int_equal(atr_aead_open(&opened, a, aad, atr_buf_span(&sealed), NULL), ATR_OK);
        assert_int_equal(opened.len, n);
        if (n > 0)
            assert_memory_equal(opened.ptr, pt, n);
        atr_buf_cleanup(&sealed);
        atr_buf_cleanup(&opened);
        free(pt);
    }
    atr_aead_free(a);
}

static void test_framed_appends_and_fresh_nonces(void **state)
{
    (void)state;
    struct atr_aead *a = aead_random();
    struct atr_buf b1, b2;
    atr_buf_init(&b1, 4096);
    atr_buf_init(&b2, 4096);
    assert_int_equal(atr_buf_append(&b1, "HDR", 3), ATR_OK);
    struct atr_span pt = atr_span_str("same plaintext");
    assert_int_equal(atr_aead_seal(&b1, a, atr_span_of(NULL, 0), pt, NULL), ATR_OK);
    assert_int_equal(atr_aead_seal(&b2, a, atr_span_of(NULL, 0), pt, NULL), ATR_OK);
    assert_memory_equal(b1.ptr, "HDR", 3);
    assert_int_equal(b1.len, 3 + b2.len);
    /* random nonces: the same plaintext seals differently */
    assert_memory_not_equal(b1.ptr + 3, b2.ptr, ATR_AEAD_NONCE_LEN);
    assert_memory_not_equal(b1.ptr + 3 + ATR_AEAD_NONCE_LEN, b2.ptr + ATR_AEAD_NONCE_LEN, pt.len);
    atr_buf_cleanup(&b1);
    atr_buf_cleanup(&b2);
    atr_aead_free(a);
}

/* Opening must fail with AUTH_FAILED, append nothing and leave no plaintext. */
static void expect_open_fails(struct atr_aead *a, struct atr_span aad, struct atr_span sealed)
{
    struct atr_buf out;
    atr_buf_init(&out, 1 << 20);
    assert_int_equal(atr_buf_append(&out, "X", 1), ATR_OK);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_aead_open(&out, a, aad, sealed, &err), ATR_E_AUTH_FAILED);
    assert_int_equal(err.code, ATR_E_AUTH_FAILED);
    assert_int_equal(out.len, 1);
    /* the space the plaintext was decrypted into has been wiped */
    if (sealed.len >= ATR_AEAD_OVERHEAD) {
        for (size_t i = 1; i < 1 + sealed.len - ATR_AEAD_OVERHEAD; i++)
            assert_int_equal(out.ptr[i], 0);
    }
    atr_buf_cleanup(&out);
}

static void test_tampering_rejected(void **state)
{
    (void)state;
    struct atr_aead *a = aead_random();
    struct atr_span aad = atr_span_str("tenant=A;block=7");
    uint8_t pt[300];
    memset(pt, 0x5a, sizeof(pt));
    struct atr_buf sealed;
    atr_buf_init(&sealed, 4096);
    assert_int_equal(atr_aead_seal(&sealed, a, aad, atr_span_of(pt, sizeof(pt)), NULL), ATR_OK);

    /* every single bit flip, in nonce, ciphertext and tag, is detected */
    for (size_t i = 0; i < sealed.len; i += 7) {
        for (int bit = 0; bit < 8; bit += 3) {
            sealed.ptr[i] ^= (uint8_t)(1u << bit);
            expect_open_fails(a, aad, atr_buf_span(&sealed));
            sealed.ptr[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* truncation at every length, including below the overhead */
    for (size_t n = 0; n < sealed.len; n += (n < 40 ? 1 : 37))
        expect_open_fails(a, aad, atr_span_of(sealed.ptr, n));
    /* an extra trailing byte */
    struct atr_buf longer;
    atr_buf_init(&longer, 4096);
    assert_int_equal(atr_buf_append(&longer, sealed.ptr, sealed.len), ATR_OK);
    assert_int_equal(atr_buf_append(&longer, "", 1), ATR_OK);
    expect_open_fails(a, aad, atr_buf_span(&longer));
    atr_buf_cleanup(&longer);

    /* tenant A's block in tenant B's slot; wrong block id; no AAD */
    expect_open_fails(a, atr_span_str("tenant=B;block=7"), atr_buf_span(&sealed));
    expect_open_fails(a, atr_span_str("tenant=A;block=8"), atr_buf_span(&sealed));
    expect_open_fails(a, atr_span_of(NULL, 0), atr_buf_span(&sealed));

    /* wrong key (another tenant key, or another version of it) */
    struct atr_aead *b = aead_random();
    expect_open_fails(b, aad, atr_buf_span(&sealed));
    atr_aead_free(b);

    /* the right inputs still open */
    struct atr_buf out;
    atr_buf_init(&out, 4096);
    assert_int_equal(atr_aead_open(&out, a, aad, atr_buf_span(&sealed), NULL), ATR_OK);
    assert_memory_equal(out.ptr, pt, sizeof(pt));
    atr_buf_cleanup(&out);
    atr_buf_cleanup(&sealed);
    atr_aead_free(a);
}

static void test_detached_failure_wipes(void **state)
{
    (void)state;
    struct atr_aead *a = aead_random();
    uint8_t nonce[ATR_AEAD_NONCE_LEN] = {1, 2, 3};
    uint8_t pt[64], ct[64], tag[ATR_AEAD_TAG_LEN], out[64];
    memset(pt, 0x11, sizeof(pt));
    assert_int_equal(atr_aead_seal_detached(ct, tag, a, nonce, atr_span_of(NULL, 0),
                                            atr_span_of(pt, sizeof(pt)), NULL),
                     ATR_OK);
    tag[0] ^= 1;
    memset(out, 0xee, sizeof(out));
    assert_int_equal(atr_aead_open_detached(out, a, nonce, atr_span_of(NULL, 0),
                                            atr_span_of(ct, sizeof(ct)), tag, NULL),
                     ATR_E_AUTH_FAILED);
    static const uint8_t zero[64];
    assert_memory_equal(out, zero, sizeof(out));
    tag[0] ^= 1;
    /* wrong nonce */
    nonce[11] ^= 0x80;
    assert_int_equal(atr_aead_open_detached(out, a, nonce, atr_span_of(NULL, 0),
                                            atr_span_of(ct, sizeof(ct)), tag, NULL),
                     ATR_E_AUTH_FAILED);
    nonce[11] ^= 0x80;
    /* in place */
    assert_int_equal(atr_aead_open_detached(ct, a, nonce, atr_span_of(NULL, 0),
                                            atr_span_of(ct, sizeof(ct)), tag, NULL),
                     ATR_OK);
    assert_memory_equal(ct, pt, sizeof(pt));
    assert_int_equal(atr_aead_seal_detached(ct, tag, a, nonce, atr_span_of(NULL, 0),
                                            atr_span_of(ct, sizeof(ct)), NULL),
                     ATR_OK);
    assert_memory_not_equal(ct, pt, sizeof(pt));
    atr_aead_free(a);
}

static void test_bad_keys(void **state)
{
    (void)state;
    struct atr_aead *a = (struct atr_aead *)&a;
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_secret k16 = ATR_SECRET_INIT, k33 = ATR_SECRET_INIT, none = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&k16, 16), ATR_OK);
    assert_int_equal(atr_secret_init_random(&k33, 33), ATR_OK);
    assert_int_equal(atr_aead_new(&a, &k16, &err), ATR_E_INVALID);
    assert_null(a);
    assert_int_equal(atr_aead_new(&a, &k33, &err), ATR_E_INVALID);
    assert_int_equal(atr_aead_new(&a, &none, &err), ATR_E_INVALID);
    assert_int_equal(atr_aead_new(&a, NULL, &err), ATR_E_INVALID);
    atr_secret_cleanup(&k16);
    atr_secret_cleanup(&k33);
    atr_aead_free(NULL);
}

static void test_dup_and_open_secret(void **state)
{
    (void)state;
    struct atr_aead *a = aead_random();
    struct atr_aead *b = NULL;
    assert_int_equal(atr_aead_dup(&b, a, NULL), ATR_OK);
    struct atr_secret dek = ATR_SECRET_INIT, back = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&dek, 32), ATR_OK);
    struct atr_buf sealed;
    atr_buf_init(&sealed, 4096);
    struct atr_span aad = atr_span_str("dek");
    assert_int_equal(atr_aead_seal(&sealed, a, aad, atr_span_of(atr_secret_cdata(&dek), 32), NULL),
                     ATR_OK);
    atr_aead_free(a); /* the copy is independent */
    assert_int_equal(atr_aead_open_secret(&back, b, aad, atr_buf_span(&sealed), NULL), ATR_OK);
    assert_int_equal(atr_secret_len(&back), 32);
    assert_memory_equal(atr_secret_cdata(&back), atr_secret_cdata(&dek), 32);
    atr_secret_cleanup(&back);

    sealed.ptr[sealed.len - 1] ^= 1;
    assert_int_equal(atr_aead_open_secret(&back, b, aad, atr_buf_span(&sealed), NULL),
                     ATR_E_AUTH_FAILED);
    assert_false(atr_secret_is_set(&back));
    assert_int_equal(atr_aead_open_secret(&back, b, aad, atr_span_of(sealed.ptr, 27), NULL),
                     ATR_E_AUTH_FAILED);
    atr_buf_reset(&sealed);
    assert_int_equal(atr_aead_seal(&sealed, b, aad, atr_span_of(NULL, 0), NULL), ATR_OK);
    assert_int_equal(atr_aead_open_secret(&back, b, aad, atr_buf_span(&sealed), NULL),
                     ATR_E_INVALID);
    assert_false(atr_secret_is_set(&back));

    atr_buf_cleanup(&sealed);
    atr_secret_cleanup(&dek);
    atr_aead_free(b);
}

static void test_buffer_cap_and_nomem(void **state)
{
    (void)state;
    struct atr_aead *a = aead_random();
    struct atr_buf small;
    atr_buf_init(&small, 40);
    uint8_t pt[13] = {0};
    assert_int_equal(atr_aead_seal(&small, a, atr_span_of(NULL, 0), atr_span_of(pt, 13), NULL),
                     ATR_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    atr_buf_cleanup(&small);

    struct atr_secret key = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&key, 32), ATR_OK);
    struct atr_aead *c = NULL;
    atr_alloc_fail_after(1);
    assert_int_equal(atr_aead_new(&c, &key, NULL), ATR_E_NOMEM);
    assert_int_equal(atr_aead_dup(&c, a, NULL), ATR_E_NOMEM);
    atr_alloc_fail_reset();
    assert_null(c);
    atr_secret_cleanup(&key);
    atr_aead_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_framed_round_trip_sizes),
        cmocka_unit_test(test_framed_appends_and_fresh_nonces),
        cmocka_unit_test(test_tampering_rejected),
        cmocka_unit_test(test_detached_failure_wipes),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_dup_and_open_secret),
        cmocka_unit_test(test_buffer_cap_and_nomem),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
