/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include <openssl/crypto.h>

#include "base/secmem.h"
#include "crypto/keywrap.h"

static void secret_from_hex(struct atr_secret *s, const char *hex)
{
    struct atr_buf b;
    atr_buf_init(&b, 4096);
    atr_test_hex(&b, hex);
    assert_int_equal(atr_secret_init_copy(s, b.ptr, b.len), ATR_OK);
    atr_buf_cleanup(&b);
}

struct kat {
    atr_keywrap_mode mode;
    const char *kek, *key, *wrapped;
};

/* RFC 3394 sections 4.1 and 4.6; RFC 5649 section 6. */
static const struct kat kats[] = {
    {ATR_KEYWRAP_KW, "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
     "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
    {ATR_KEYWRAP_KW, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
     "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
    {ATR_KEYWRAP_KWP, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
     "c37b7e6492584340bed12207808941155068f738",
     "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
    {ATR_KEYWRAP_KWP, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "466f7250617369",
     "afbeb0f07dfbf5419200f2ccb50bb24f"},
};

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(kats); i++) {
        struct atr_secret kek = ATR_SECRET_INIT, back = ATR_SECRET_INIT;
        secret_from_hex(&kek, kats[i].kek);
        struct atr_buf key, want, got;
        atr_buf_init(&key, 256);
        atr_buf_init(&want, 256);
        atr_buf_init(&got, 256);
        atr_test_hex(&key, kats[i].key);
        atr_test_hex(&want, kats[i].wrapped);
        assert_int_equal(atr_keywrap_wrapped_len(kats[i].mode, key.len), want.len);
        assert_int_equal(atr_keywrap_wrap(&got, &kek, kats[i].mode, atr_buf_span(&key), NULL),
                         ATR_OK);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.ptr, want.ptr, want.len);
        assert_int_equal(atr_keywrap_unwrap(&back, &kek, kats[i].mode, atr_buf_span(&want), NULL),
                         ATR_OK);
        assert_true(CRYPTO_secure_allocated(atr_secret_cdata(&back)));
        assert_int_equal(atr_secret_len(&back), key.len);
        assert_memory_equal(atr_secret_cdata(&back), key.ptr, key.len);
        atr_secret_cleanup(&back);
        atr_secret_cleanup(&kek);
        atr_buf_cleanup(&key);
        atr_buf_cleanup(&want);
        atr_buf_cleanup(&got);
    }
}

static void test_round_trips_all_kek_sizes(void **state)
{
    (void)state;
    static const size_t kek_sizes[] = {16, 24, 32};
    static const atr_keywrap_mode modes[] = {ATR_KEYWRAP_KW, ATR_KEYWRAP_KWP};
    for (size_t k = 0; k < 3; k++) {
        struct atr_secret kek = ATR_SECRET_INIT;
        assert_int_equal(atr_secret_init_random(&kek, kek_sizes[k]), ATR_OK);
        for (size_t m = 0; m < 2; m++) {
            for (size_t n = 1; n <= 72; n++) {
                if (atr_keywrap_wrapped_len(modes[m], n) == 0)
                    continue;
                uint8_t key[72];
                for (size_t j = 0; j < n; j++)
                    key[j] = (uint8_t)(n + j);
                struct atr_buf w;
                atr_buf_init(&w, 256);
                struct atr_secret back = ATR_SECRET_INIT;
                assert_int_equal(atr_keywrap_wrap(&w, &kek, modes[m], atr_span_of(key, n), NULL),
                                 ATR_OK);
                assert_int_equal(w.len, atr_keywrap_wrapped_len(modes[m], n));
                assert_int_equal(atr_keywrap_unwrap(&back, &kek, modes[m], atr_buf_span(&w), NULL),
                                 ATR_OK);
                assert_int_equal(atr_secret_len(&back), n);
                assert_memory_equal(atr_secret_cdata(&back), key, n);
                atr_secret_cleanup(&back);
                atr_buf_cleanup(&w);
            }
        }
        atr_secret_cleanup(&kek);
    }
}

static void test_tampering_and_wrong_kek(void **state)
{
    (void)state;
    struct atr_secret kek = ATR_SECRET_INIT, other = ATR_SECRET_INIT, dek = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&kek, 32), ATR_OK);
    assert_int_equal(atr_secret_init_random(&other, 32), ATR_OK);
    assert_int_equal(atr_secret_init_random(&dek, 32), ATR_OK);
    struct atr_span dspan = atr_span_of(atr_secret_cdata(&dek), 32);
    for (int m = ATR_KEYWRAP_KW; m <= ATR_KEYWRAP_KWP; m++) {
        atr_keywrap_mode mode = (atr_keywrap_mode)m;
        struct atr_buf w;
        atr_buf_init(&w, 256);
        assert_int_equal(atr_keywrap_wrap(&w, &kek, mode, dspan, NULL), ATR_OK);
        struct atr_secret out = ATR_SECRET_INIT;
        struct atr_err err;
        for (size_t i = 0; i < w.len; i++) {
            w.ptr[i] ^= 0x40;
            atr_err_clear(&err);
            assert_int_equal(atr_keywrap_unwrap(&out, &kek, mode, atr_buf_span(&w), &err),
                             ATR_E_AUTH_FAILED);
            assert_false(atr_secret_is_set(&out));
            w.ptr[i] ^= 0x40;
        }
        assert_int_equal(atr_keywrap_unwrap(&out, &other, mode, atr_buf_span(&w), NULL),
                         ATR_E_AUTH_FAILED);
        assert_false(atr_secret_is_set(&out));
        /* truncated by one block; not a multiple of 8; too short */
        assert_int_equal(atr_keywrap_unwrap(&out, &kek, mode, atr_span_of(w.ptr, w.len - 8), NULL),
                         ATR_E_AUTH_FAILED);
        assert_int_equal(atr_keywrap_unwrap(&out, &kek, mode, atr_span_of(w.ptr, w.len - 1), NULL),
                         ATR_E_INVALID);
        assert_int_equal(atr_keywrap_unwrap(&out, &kek, mode, atr_span_of(w.ptr, 8), NULL),
                         ATR_E_INVALID);
        assert_int_equal(atr_keywrap_unwrap(&out, &kek, mode, atr_span_of(NULL, 0), NULL),
                         ATR_E_INVALID);
        assert_false(atr_secret_is_set(&out));
        atr_buf_cleanup(&w);
    }
    /* a KW wrapping handed to KWP (and back) is rejected */
    struct atr_buf w;
    atr_buf_init(&w, 256);
    struct atr_secret out = ATR_SECRET_INIT;
    assert_int_equal(atr_keywrap_wrap(&w, &kek, ATR_KEYWRAP_KW, dspan, NULL), ATR_OK);
    assert_int_equal(atr_keywrap_unwrap(&out, &kek, ATR_KEYWRAP_KWP, atr_buf_span(&w), NULL),
                     ATR_E_AUTH_FAILED);
    atr_buf_reset(&w);
    w.len = 0;
    assert_int_equal(atr_keywrap_wrap(&w, &kek, ATR_KEYWRAP_KWP, dspan, NULL), ATR_OK);
    assert_int_equal(atr_keywrap_unwrap(&out, &kek, ATR_KEYWRAP_KW, atr_buf_span(&w), NULL),
                     ATR_E_AUTH_FAILED);
    atr_buf_cleanup(&w);
    atr_secret_cleanup(&kek);
    atr_secret_cleanup(&other);
    atr_secret_cleanup(&dek);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct atr_secret kek = ATR_SECRET_INIT, k20 = ATR_SECRET_INIT, none = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&kek, 16), ATR_OK);
    assert_int_equal(atr_secret_init_random(&k20, 20), ATR_OK);
    uint8_t key[40] = {0};
    struct atr_buf w;
    atr_buf_init(&w, 256);
    struct atr_err err;
    atr_err_clear(&err);
    /* KEK sizes */
    assert_int_equal(atr_keywrap_wrap(&w, &k20, ATR_KEYWRAP_KW, atr_span_of(key, 16), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_keywrap_wrap(&w, &none, ATR_KEYWRAP_KW, atr_span_of(key, 16), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_keywrap_wrap(&w, NULL, ATR_KEYWRAP_KW, atr_span_of(key, 16), &err),
                     ATR_E_INVALID);
    /* KW lengths: at least 16, multiple of 8 */
    assert_int_equal(atr_keywrap_wrap(&w, &kek, ATR_KEYWRAP_KW, atr_span_of(key, 8), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_keywrap_wrap(&w, &kek, ATR_KEYWRAP_KW, atr_span_of(key, 20), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_keywrap_wrap(&w, &kek, ATR_KEYWRAP_KW, atr_span_of(NULL, 0), &err),
                     ATR_E_INVALID);
    /* KWP: not empty */
    assert_int_equal(atr_keywrap_wrap(&w, &kek, ATR_KEYWRAP_KWP, atr_span_of(NULL, 0), &err),
                     ATR_E_INVALID);
    /* unknown mode */
    assert_int_equal(atr_keywrap_wrap(&w, &kek, (atr_keywrap_mode)0, atr_span_of(key, 16), &err),
                     ATR_E_INVALID);
    assert_int_equal(atr_keywrap_wrapped_len((atr_keywrap_mode)9, 16), 0);
    assert_int_equal(w.len, 0);
    /* output cap */
    struct atr_buf tiny;
    atr_buf_init(&tiny, 16);
    assert_int_equal(atr_keywrap_wrap(&tiny, &kek, ATR_KEYWRAP_KW, atr_span_of(key, 16), &err),
                     ATR_E_TOO_LARGE);
    atr_buf_cleanup(&tiny);
    atr_buf_cleanup(&w);
    atr_secret_cleanup(&kek);
    atr_secret_cleanup(&k20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_round_trips_all_kek_sizes),
        cmocka_unit_test(test_tampering_and_wrong_kek),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
