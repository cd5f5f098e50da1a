/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <string.h>

#include "base/alloc.h"
#include "base/b64.h"

/* RFC 4648 section 10 test vectors */
static const char *const rfc_plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const rfc_b64[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
static const char *const rfc_url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};

static void check_decode(int url, const char *in, const char *want)
{
    struct atr_buf b;
    atr_buf_init(&b, 4096);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = url ? atr_b64url_decode(&b, in, strlen(in), &err)
                        : atr_b64_decode(&b, in, strlen(in), &err);
    assert_int_equal(rc, ATR_OK);
    assert_int_equal(b.len, strlen(want));
    if (b.len > 0)
        assert_memory_equal(b.ptr, want, b.len);
    atr_buf_cleanup(&b);
}

static void check_reject(int url, const char *in)
{
    struct atr_buf b;
    atr_buf_init(&b, 4096);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = url ? atr_b64url_decode(&b, in, strlen(in), &err)
                        : atr_b64_decode(&b, in, strlen(in), &err);
    if (rc != ATR_E_PARSE)
        fail_msg("'%s' (url=%d) gave %s, want ATR_E_PARSE", in, url, atr_status_name(rc));
    assert_int_equal(b.len, 0);
    assert_true(strlen(err.msg) > 0);
    atr_buf_cleanup(&b);
}

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ATR_ARRAY_LEN(rfc_plain); i++) {
        struct atr_buf b;
        atr_buf_init(&b, 4096);
        assert_int_equal(atr_b64_encode(&b, atr_span_str(rfc_plain[i])), ATR_OK);
        assert_string_equal(atr_buf_cstr(&b), rfc_b64[i]);
        assert_int_equal(b.len, atr_b64_encoded_len(strlen(rfc_plain[i])));
        atr_buf_reset(&b);
        assert_int_equal(atr_b64url_encode(&b, atr_span_str(rfc_plain[i])), ATR_OK);
        assert_string_equal(atr_buf_cstr(&b), rfc_url[i]);
        assert_int_equal(b.len, atr_b64url_encoded_len(strlen(rfc_plain[i])));
        atr_buf_cleanup(&b);
        check_decode(0, rfc_b64[i], rfc_plain[i]);
        check_decode(1, rfc_url[i], rfc_plain[i]);
    }
}

static void test_url_alphabet(void **state)
{
    (void)state;
    static const uint8_t raw[] = {0xfb, 0xff, 0xbf};
    struct atr_buf b;
    atr_buf_init(&b, 64);
    assert_int_equal(atr_b64url_encode(&b, atr_span_of(raw, 3)), ATR_OK);
    assert_string_equal(atr_buf_cstr(&b), "-_-_");
    atr_buf_reset(&b);
    assert_int_equal(atr_b64_encode(&b, atr_span_of(raw, 3)), ATR_OK);
    assert_string_equal(atr_buf_cstr(&b), "+/+/");
    atr_buf_cleanup(&b);
    check_reject(1, "+/+/");
    check_reject(0, "-_-_");
    char *s = NULL;
    assert_int_equal(atr_b64url_encode_str(&s, atr_span_of(raw, 3)), ATR_OK);
    assert_string_equal(s, "-_-_");
    atr_free(s);
}

static void test_strict_rejections(void **state)
{
    (void)state;
    /* bad characters, whitespace */
    check_reject(0, "Zm9v YmFy");
    check_reject(0, "Zm9v\nYmFy");
    check_reject(1, "Zm9v!");
    check_reject(0, "Zm9v\x80YmFy");
    /* bad lengths */
    check_reject(0, "Zm9");
    check_reject(1, "Z");
    check_reject(1, "Zm9vY");
    /* padding: missing, misplaced, too much, in url form */
    check_reject(0, "Zg");
    check_reject(0, "Zg=");
    check_reject(0, "Z===");
    check_reject(0, "Zg==Zg==");
    check_reject(0, "=Zg=");
    check_reject(1, "Zg==");
    check_reject(1, "Zm8=");
    /* non-canonical trailing bits: "Zh==" and "Zm9=" decode to the same bytes */
    check_reject(0, "Zh==");
    check_reject(0, "Zm9=");
    check_reject(1, "Zh");
    check_reject(1, "Zm9");
    check_decode(1, "Zm8", "fo");
}

static void test_decode_appends_and_binary(void **state)
{
    (void)state;
    uint8_t raw[256];
    for (int i = 0; i < 256; i++)
        raw[i] = (uint8_t)i;
    for (size_t n = 0; n <= 256; n += 17) {
        struct atr_buf enc, dec;
        atr_buf_init(&enc, 4096);
        atr_buf_init(&dec, 4096);
        assert_int_equal(atr_b64url_encode(&enc, atr_span_of(raw, n)), ATR_OK);
        assert_int_equal(atr_buf_append(&dec, "XY", 2), ATR_OK);
        assert_int_equal(atr_b64url_decode(&dec, (const char *)enc.ptr, enc.len, NULL), ATR_OK);
        assert_int_equal(dec.len, n + 2);
        assert_memory_equal(dec.ptr, "XY", 2);
        if (n > 0)
            assert_memory_equal(dec.ptr + 2, raw, n);
        atr_buf_cleanup(&enc);
        atr_buf_cleanup(&dec);
    }
}

static void test_output_cap(void **state)
{
    (void)state;
    struct atr_buf b;
    atr_buf_init(&b, 2);
    assert_int_equal(atr_b64_decode(&b, "Zm9vYmFy", 8, NULL), ATR_E_TOO_LARGE);
    atr_buf_cleanup(&b);
    assert_int_equal(atr_b64_decode(&b, NULL, 3, NULL), ATR_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),   cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_strict_rejections), cmocka_unit_test(test_decode_appends_and_binary),
        cmocka_unit_test(test_output_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
