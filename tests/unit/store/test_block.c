/* SPDX-License-Identifier: Apache-2.0 */
/* store/block: the sealed block format, version 1 (docs/formats.md). */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "base/alloc.h"
#include "base/secmem.h"
#include "crypto/aead.h"
#include "crypto/rand.h"
#include "store/block.h"

static const struct atr_block_ctx ctx_acme = {"acme", 7, "tk"};

static void dek_random(struct atr_secret *dek)
{
    assert_int_equal(atr_secret_init_random(dek, ATR_AEAD_KEY_LEN), ATR_OK);
}

/* NDJSON records: repetitive enough to compress well. */
static void records(struct atr_buf *b, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(atr_buf_printf(b,
                                        "{\"time\":%d,\"user\":\"alice@acme\",\"app\":\"mail\","
                                        "\"action\":\"login\",\"ip\":\"10.0.0.%d\"}\n",
                                        1700000000 + i, i % 250),
                         ATR_OK);
}

static void seal_ok(struct atr_buf *sealed, const struct atr_block_ctx *ctx, struct atr_span pt,
                    const struct atr_secret *dek, int compress)
{
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_block_seal(sealed, ctx, pt, dek, compress, &err);
    if (rc != ATR_OK)
        fail_msg("seal: %s", atr_err_msg(&err));
}

static void open_expect(atr_status want, const struct atr_block_ctx *ctx, struct atr_span sealed,
                        const struct atr_secret *dek, size_t max_plain, struct atr_span want_pt)
{
    struct atr_buf out;
    atr_buf_init(&out, (size_t)64 << 20);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_block_open(&out, ctx, sealed, dek, max_plain, &err);
    if (rc != want)
        fail_msg("open returned %s (%s), expected %s", atr_status_name(rc), atr_err_msg(&err),
                 atr_status_name(want));
    if (rc == ATR_OK) {
        assert_int_equal(out.len, want_pt.len);
        if (want_pt.len > 0)
            assert_memory_equal(out.ptr, want_pt.ptr, want_pt.len);
    } else {
        assert_int_equal(out.len, 0);
    }
    atr_buf_cleanup(&out);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    struct atr_buf pt, sealed;
    atr_buf_init(&pt, 1 << 20);
    atr_buf_init(&sealed, 1 << 20);
    records(&pt, 200);

    /* uncompressed: header, nonce, ciphertext, tag */
    seal_ok(&sealed, &ctx_acme, atr_buf_span(&pt), &dek, 0);
    assert_int_equal(sealed.len, pt.len + ATR_BLOCK_OVERHEAD);
    assert_memory_equal(sealed.ptr, "ATRB\x01\x00", 6);
    struct atr_block_info info;
    assert_int_equal(atr_block_peek(&info, atr_buf_span(&sealed), NULL), ATR_OK);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.flags, 0);
    assert_int_equal(info.cipher_len, pt.len);
    open_expect(ATR_OK, &ctx_acme, atr_buf_span(&sealed), &dek, 0, atr_buf_span(&pt));

    /* compressed: flag set, much smaller */
    atr_buf_reset(&sealed);
    seal_ok(&sealed, &ctx_acme, atr_buf_span(&pt), &dek, 1);
    assert_int_equal(atr_block_peek(&info, atr_buf_span(&sealed), NULL), ATR_OK);
    assert_int_equal(info.flags, ATR_BLOCK_FLAG_ZSTD);
    assert_true(sealed.len < pt.len / 4);
    open_expect(ATR_OK, &ctx_acme, atr_buf_span(&sealed), &dek, 0, atr_buf_span(&pt));
    /* the limit applies to the decompressed size */
    open_expect(ATR_E_TOO_LARGE, &ctx_acme, atr_buf_span(&sealed), &dek, pt.len - 1,
                atr_buf_span(&pt));
    open_expect(ATR_OK, &ctx_acme, atr_buf_span(&sealed), &dek, pt.len, atr_buf_span(&pt));

    /* incompressible data is stored as it is even when compression is asked for */
    uint8_t noise[300];
    assert_int_equal(atr_rand_bytes(noise, sizeof(noise), NULL), ATR_OK);
    atr_buf_reset(&sealed);
    seal_ok(&sealed, &ctx_acme, atr_span_of(noise, sizeof(noise)), &dek, 1);
    assert_int_equal(atr_block_peek(&info, atr_buf_span(&sealed), NULL), ATR_OK);
    assert_int_equal(info.flags, 0);
    assert_int_equal(sealed.len, sizeof(noise) + ATR_BLOCK_OVERHEAD);
    open_expect(ATR_OK, &ctx_acme, atr_buf_span(&sealed), &dek, 0,
                atr_span_of(noise, sizeof(noise)));
    /* an uncompressed plaintext over the limit */
    open_expect(ATR_E_TOO_LARGE, &ctx_acme, atr_buf_span(&sealed), &dek, sizeof(noise) - 1,
                atr_span_of(noise, 0));

    /* the plaintext is appended after what the buffer held */
    struct atr_buf out;
    atr_buf_init(&out, 1 << 20);
    assert_int_equal(atr_buf_append_str(&out, "keep:"), ATR_OK);
    assert_int_equal(atr_block_open(&out, &ctx_acme, atr_buf_span(&sealed), &dek, 0, NULL), ATR_OK);
    assert_int_equal(out.len, 5 + sizeof(noise));
    assert_memory_equal(out.ptr, "keep:", 5);
    assert_memory_equal(out.ptr + 5, noise, sizeof(noise));
    /* no room in the output buffer */
    struct atr_buf small;
    atr_buf_init(&small, 10);
    assert_int_equal(atr_block_open(&small, &ctx_acme, atr_buf_span(&sealed), &dek, 0, NULL),
                     ATR_E_TOO_LARGE);
    atr_buf_cleanup(&small);
    atr_buf_init(&small, 10);
    assert_int_equal(atr_block_seal(&small, &ctx_acme, atr_span_of(noise, 50), &dek, 0, NULL),
                     ATR_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    atr_buf_cleanup(&small);

    atr_buf_cleanup(&out);
    atr_buf_cleanup(&pt);
    atr_buf_cleanup(&sealed);
    atr_secret_cleanup(&dek);
}

static void test_empty_plaintext(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    for (int compress = 0; compress <= 1; compress++) {
        struct atr_buf sealed;
        atr_buf_init(&sealed, 1024);
        seal_ok(&sealed, &ctx_acme, atr_span_of(NULL, 0), &dek, compress);
        assert_int_equal(sealed.len, ATR_BLOCK_OVERHEAD);
        open_expect(ATR_OK, &ctx_acme, atr_buf_span(&sealed), &dek, 0, atr_span_of(NULL, 0));
        atr_buf_cleanup(&sealed);
    }
    atr_secret_cleanup(&dek);
}

static void test_aad_binding(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT, other = ATR_SECRET_INIT;
    dek_random(&dek);
    dek_random(&other);
    struct atr_span pt = atr_span_str("{\"user\":\"alice\"}\n");
    for (int compress = 0; compress <= 1; compress++) {
        const struct atr_block_ctx ctx = {"ab", 7, "reserve:1"};
        struct atr_buf sealed;
        atr_buf_init(&sealed, 1024);
        seal_ok(&sealed, &ctx, pt, &dek, compress);
        struct atr_span s = atr_buf_span(&sealed);
        open_expect(ATR_OK, &ctx, s, &dek, 0, pt);
        /* another tenant, block id or key reference: the block does not open */
        const struct atr_block_ctx swapped[] = {
            {"ac", 7, "reserve:1"},  {"abc", 7, "reserve:1"}, {"a", 7, "breserve:1"},
            {"ab", 8, "reserve:1"},  {"ab", 6, "reserve:1"},  {"ab", 7 + (1LL << 32), "reserve:1"},
            {"ab", 7, "reserve:2"},  {"ab", 7, "tk"},         {"ab", 7, "reserve:1 "},
            {"ab7", 7, "reserve:1"},
        };
        for (size_t i = 0; i < ATR_ARRAY_LEN(swapped); i++)
            open_expect(ATR_E_AUTH_FAILED, &swapped[i], s, &dek, 0, pt);
        /* another DEK */
        open_expect(ATR_E_AUTH_FAILED, &ctx, s, &other, 0, pt);
        /* the compression flag is bound too */
        sealed.ptr[5] ^= ATR_BLOCK_FLAG_ZSTD;
        open_expect(ATR_E_AUTH_FAILED, &ctx, s, &dek, 0, pt);
        atr_buf_cleanup(&sealed);
    }
    atr_secret_cleanup(&dek);
    atr_secret_cleanup(&other);
}

static void test_header_errors(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    struct atr_buf sealed;
    atr_buf_init(&sealed, 1024);
    seal_ok(&sealed, &ctx_acme, atr_span_str("{}\n"), &dek, 0);
    struct atr_span s = atr_buf_span(&sealed);
    struct atr_buf out;
    atr_buf_init(&out, 1024);
    struct atr_err err;

    /* unknown versions say so */
    for (unsigned v = 0; v < 256; v += 1) {
        if (v == ATR_BLOCK_VERSION)
            continue;
        sealed.ptr[4] = (uint8_t)v;
        atr_err_clear(&err);
        assert_int_equal(atr_block_open(&out, &ctx_acme, s, &dek, 0, &err), ATR_E_UNSUPPORTED);
        char want[64];
        snprintf(want, sizeof(want), "format version %u is not supported", v);
        assert_non_null(strstr(atr_err_msg(&err), want));
    }
    sealed.ptr[4] = ATR_BLOCK_VERSION;
    /* unknown flags */
    sealed.ptr[5] = 0x80;
    assert_int_equal(atr_block_open(&out, &ctx_acme, s, &dek, 0, NULL), ATR_E_UNSUPPORTED);
    sealed.ptr[5] = 0;
    /* not a block */
    sealed.ptr[0] = 'X';
    atr_err_clear(&err);
    assert_int_equal(atr_block_open(&out, &ctx_acme, s, &dek, 0, &err), ATR_E_PARSE);
    assert_non_null(strstr(atr_err_msg(&err), "not a sealed block"));
    sealed.ptr[0] = 'A';
    assert_int_equal(out.len, 0);
    assert_int_equal(atr_block_open(&out, &ctx_acme, s, &dek, 0, NULL), ATR_OK);

    /* bad arguments */
    const struct atr_block_ctx bad_ctx[] = {
        {"", 7, "tk"},      {NULL, 7, "tk"}, {"acme", 0, "tk"},
        {"acme", -1, "tk"}, {"acme", 7, ""}, {"acme", 7, NULL},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_ctx); i++) {
        assert_int_equal(atr_block_open(&out, &bad_ctx[i], s, &dek, 0, NULL), ATR_E_INVALID);
        assert_int_equal(atr_block_seal(&out, &bad_ctx[i], atr_span_str("x"), &dek, 0, NULL),
                         ATR_E_INVALID);
    }
    char long_name[ATR_BLOCK_NAME_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const struct atr_block_ctx too_long = {long_name, 7, "tk"};
    assert_int_equal(atr_block_seal(&out, &too_long, atr_span_str("x"), &dek, 0, NULL),
                     ATR_E_INVALID);
    long_name[ATR_BLOCK_NAME_MAX] = '\0'; /* the longest allowed */
    size_t before = out.len;
    assert_int_equal(atr_block_seal(&out, &too_long, atr_span_str("x"), &dek, 0, NULL), ATR_OK);
    assert_int_equal(out.len, before + 1 + ATR_BLOCK_OVERHEAD);
    struct atr_secret short_key = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init_random(&short_key, 16), ATR_OK);
    assert_int_equal(atr_block_open(&out, &ctx_acme, s, &short_key, 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_block_seal(&out, &ctx_acme, atr_span_str("x"), &short_key, 0, NULL),
                     ATR_E_INVALID);
    struct atr_secret empty = ATR_SECRET_INIT;
    assert_int_equal(atr_block_open(&out, &ctx_acme, s, &empty, 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_block_open(NULL, &ctx_acme, s, &dek, 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_block_open(&out, &ctx_acme, atr_span_of(NULL, 5), &dek, 0, NULL),
                     ATR_E_INVALID);
    assert_int_equal(atr_block_peek(NULL, s, NULL), ATR_E_INVALID);
    atr_secret_cleanup(&short_key);
    atr_buf_cleanup(&out);
    atr_buf_cleanup(&sealed);
    atr_secret_cleanup(&dek);
}

/* Every prefix, every single-bit change and random bytes fail cleanly. */
static void test_hostile_inputs(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    struct atr_buf pt, out;
    atr_buf_init(&pt, 1 << 20);
    atr_buf_init(&out, 1 << 20);
    records(&pt, 20);
    for (int compress = 0; compress <= 1; compress++) {
        struct atr_buf sealed;
        atr_buf_init(&sealed, 1 << 20);
        seal_ok(&sealed, &ctx_acme, atr_buf_span(&pt), &dek, compress);
        /* truncation at every length, into an exact-size copy so ASan sees overreads */
        for (size_t len = 0; len < sealed.len; len++) {
            uint8_t *copy = malloc(len == 0 ? 1 : len);
            assert_non_null(copy);
            memcpy(copy, sealed.ptr, len);
            atr_status rc = atr_block_open(&out, &ctx_acme, atr_span_of(copy, len), &dek, 0, NULL);
            assert_true(rc == ATR_E_PARSE || rc == ATR_E_AUTH_FAILED);
            assert_int_equal(out.len, 0);
            free(copy);
        }
        /* every bit flipped */
        for (size_t i = 0; i < sealed.len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                sealed.ptr[i] ^= (uint8_t)(1u << bit);
                atr_status rc =
                    atr_block_open(&out, &ctx_acme, atr_buf_span(&sealed), &dek, 0, NULL);
                assert_true(rc == ATR_E_PARSE || rc == ATR_E_UNSUPPORTED ||
                            rc == ATR_E_AUTH_FAILED);
                assert_int_equal(out.len, 0);
                sealed.ptr[i] ^= (uint8_t)(1u << bit);
            }
        }
        /* an appended byte */
        assert_int_equal(atr_buf_append(&sealed, "x", 1), ATR_OK);
        assert_int_equal(atr_block_open(&out, &ctx_acme, atr_buf_span(&sealed), &dek, 0, NULL),
                         ATR_E_AUTH_FAILED);
        atr_buf_cleanup(&sealed);
    }
    /* random bytes, half of them behind a valid header */
    for (int i = 0; i < 3000; i++) {
        uint8_t rnd[2];
        assert_int_equal(atr_rand_bytes(rnd, sizeof(rnd), NULL), ATR_OK);
        size_t len = (size_t)rnd[0] + (rnd[1] & 1 ? 256 : 0);
        uint8_t *buf = malloc(len == 0 ? 1 : len);
        assert_non_null(buf);
        assert_int_equal(atr_rand_bytes(buf, len, NULL), ATR_OK);
        if ((i & 1) && len >= ATR_BLOCK_HEADER_LEN) {
            memcpy(buf, "ATRB\x01", 5);
            buf[5] &= ATR_BLOCK_FLAG_ZSTD;
        }
        atr_status rc = atr_block_open(&out, &ctx_acme, atr_span_of(buf, len), &dek, 0, NULL);
        assert_true(rc == ATR_E_PARSE || rc == ATR_E_UNSUPPORTED || rc == ATR_E_AUTH_FAILED);
        struct atr_block_info info;
        if (atr_block_peek(&info, atr_span_of(buf, len), NULL) == ATR_OK)
            assert_int_equal(info.cipher_len, len - ATR_BLOCK_OVERHEAD);
        free(buf);
    }
    assert_int_equal(out.len, 0);
    atr_buf_cleanup(&out);
    atr_buf_cleanup(&pt);
    atr_secret_cleanup(&dek);
}

/*
 * Seals @p body by hand, exactly as docs/formats.md specifies version 1:
 * header | nonce | AES-256-GCM(body) | tag, with
 * AAD = header | len(tenant) | tenant | be64(block id) | len(key ref) | key ref.
 */
static void seal_by_hand(struct atr_buf *out, const struct atr_block_ctx *ctx, uint8_t flags,
                         struct atr_span body, const struct atr_secret *dek)
{
    uint8_t header[6] = {'A', 'T', 'R', 'B', 1, flags};
    struct atr_buf aad;
    atr_buf_init(&aad, 1024);
    assert_int_equal(atr_buf_append(&aad, header, sizeof(header)), ATR_OK);
    uint8_t tl = (uint8_t)strlen(ctx->tenant);
    assert_int_equal(atr_buf_append(&aad, &tl, 1), ATR_OK);
    assert_int_equal(atr_buf_append_str(&aad, ctx->tenant), ATR_OK);
    for (int i = 7; i >= 0; i--) {
        uint8_t b = (uint8_t)((uint64_t)ctx->block_id >> (8 * i));
        assert_int_equal(atr_buf_append(&aad, &b, 1), ATR_OK);
    }
    uint8_t kl = (uint8_t)strlen(ctx->key_ref);
    assert_int_equal(atr_buf_append(&aad, &kl, 1), ATR_OK);
    assert_int_equal(atr_buf_append_str(&aad, ctx->key_ref), ATR_OK);
    struct atr_aead *a = NULL;
    assert_int_equal(atr_aead_new(&a, dek, NULL), ATR_OK);
    assert_int_equal(atr_buf_append(out, header, sizeof(header)), ATR_OK);
    assert_int_equal(atr_aead_seal(out, a, atr_buf_span(&aad), body, NULL), ATR_OK);
    atr_aead_free(a);
    atr_buf_cleanup(&aad);
}

static void test_format_is_as_documented(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    struct atr_span pt = atr_span_str("{\"a\":1}\n{\"a\":2}\n");
    struct atr_buf sealed;
    atr_buf_init(&sealed, 1024);
    const struct atr_block_ctx ctx = {"tenant-x", 0x0102030405060708LL, "reserve:42"};
    seal_by_hand(&sealed, &ctx, 0, pt, &dek);
    open_expect(ATR_OK, &ctx, atr_buf_span(&sealed), &dek, 0, pt);
    atr_buf_reset(&sealed);
    uint8_t frame[256];
    size_t fn = ZSTD_compress(frame, sizeof(frame), pt.ptr, pt.len, 1);
    assert_false(ZSTD_isError(fn));
    seal_by_hand(&sealed, &ctx, ATR_BLOCK_FLAG_ZSTD, atr_span_of(frame, fn), &dek);
    open_expect(ATR_OK, &ctx, atr_buf_span(&sealed), &dek, 0, pt);
    atr_buf_cleanup(&sealed);
    atr_secret_cleanup(&dek);
}

/* Opens a hand-sealed compressed body into a zeroed buffer: must fail and leave zeros. */
static void bomb_expect(atr_status want, struct atr_span frame, const struct atr_secret *dek)
{
    struct atr_buf sealed;
    atr_buf_init(&sealed, (size_t)8 << 20);
    seal_by_hand(&sealed, &ctx_acme, ATR_BLOCK_FLAG_ZSTD, frame, dek);
    struct atr_buf out;
    atr_buf_init(&out, (size_t)8 << 20);
    assert_int_equal(atr_buf_reserve(&out, 4096), ATR_OK);
    memset(out.ptr, 0, out.cap);
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_block_open(&out, &ctx_acme, atr_buf_span(&sealed), dek, 0, &err);
    if (rc != want)
        fail_msg("open returned %s (%s), expected %s", atr_status_name(rc), atr_err_msg(&err),
                 atr_status_name(want));
    assert_int_equal(out.len, 0);
    for (size_t i = 0; out.ptr != NULL && i < out.cap; i++)
        if (out.ptr[i] != 0)
            fail_msg("byte %zu of the output holds partial plaintext", i);
    atr_buf_cleanup(&out);
    atr_buf_cleanup(&sealed);
}

static void test_decompression_bombs(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    size_t big = (size_t)2 << 20;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);

    /* an honest frame of 2 MiB: refused under the default 1 MiB, fine with a larger limit */
    struct atr_buf sealed;
    atr_buf_init(&sealed, (size_t)8 << 20);
    seal_ok(&sealed, &ctx_acme, atr_span_of(zeros, big), &dek, 1);
    assert_true(sealed.len < 4096);
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_buf out;
    atr_buf_init(&out, (size_t)8 << 20);
    assert_int_equal(atr_block_open(&out, &ctx_acme, atr_buf_span(&sealed), &dek, 0, &err),
                     ATR_E_TOO_LARGE);
    assert_non_null(strstr(atr_err_msg(&err), "exceeds"));
    assert_int_equal(out.len, 0);
    assert_null(out.ptr); /* refused before anything was allocated for it */
    open_expect(ATR_OK, &ctx_acme, atr_buf_span(&sealed), &dek, big, atr_span_of(zeros, big));
    atr_buf_cleanup(&out);
    atr_buf_cleanup(&sealed);

    /* a frame that claims 1000 bytes but produces 2 MiB */
    size_t zcap = ZSTD_compressBound(big);
    uint8_t *z = malloc(zcap);
    assert_non_null(z);
    size_t zn = ZSTD_compress(z, zcap, zeros, big, 3);
    assert_false(ZSTD_isError(zn));
    uint8_t fhd = z[4];
    assert_int_equal(fhd >> 6, 2); /* a 4-byte content size field */
    size_t fcs_at = 5 + ((fhd & 0x20) ? 0 : 1) + (size_t)((const int[]){0, 1, 2, 4}[fhd & 3]);
    z[fcs_at] = 1000 & 0xff;
    z[fcs_at + 1] = 1000 >> 8;
    z[fcs_at + 2] = 0;
    z[fcs_at + 3] = 0;
    assert_int_equal(ZSTD_getFrameContentSize(z, zn), 1000);
    bomb_expect(ATR_E_PARSE, atr_span_of(z, zn), &dek);

    /* a frame that does not declare its size */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
    zn = ZSTD_compress2(cctx, z, zcap, zeros, big);
    assert_false(ZSTD_isError(zn));
    ZSTD_freeCCtx(cctx);
    assert_true(ZSTD_getFrameContentSize(z, zn) == ZSTD_CONTENTSIZE_UNKNOWN);
    bomb_expect(ATR_E_PARSE, atr_span_of(z, zn), &dek);

    /* a small frame followed by a big one */
    size_t n1 = ZSTD_compress(z, zcap, zeros, 1000, 3);
    assert_false(ZSTD_isError(n1));
    size_t n2 = ZSTD_compress(z + n1, zcap - n1, zeros, big, 3);
    assert_false(ZSTD_isError(n2));
    bomb_expect(ATR_E_PARSE, atr_span_of(z, n1 + n2), &dek);

    /* garbage where the frame should be, and an empty body */
    bomb_expect(ATR_E_PARSE, atr_span_str("not a zstd frame at all"), &dek);
    bomb_expect(ATR_E_PARSE, atr_span_of(NULL, 0), &dek);

    free(z);
    free(zeros);
    atr_secret_cleanup(&dek);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    struct atr_secret dek = ATR_SECRET_INIT;
    dek_random(&dek);
    struct atr_buf pt;
    atr_buf_init(&pt, 1 << 20);
    records(&pt, 50);
    for (int compress = 0; compress <= 1; compress++) {
        struct atr_buf sealed;
        atr_buf_init(&sealed, 1 << 20);
        int failures = 0;
        for (unsigned long k = 1;; k++) {
            atr_alloc_fail_after(k);
            atr_status rc =
                atr_block_seal(&sealed, &ctx_acme, atr_buf_span(&pt), &dek, compress, NULL);
            atr_alloc_fail_reset();
            if (rc == ATR_OK)
                break;
            assert_int_equal(rc, ATR_E_NOMEM);
            assert_int_equal(sealed.len, 0);
            failures++;
        }
        assert_true(failures > 0);
        failures = 0;
        for (unsigned long k = 1;; k++) {
            struct atr_buf out;
            atr_buf_init(&out, 1 << 20);
            atr_alloc_fail_after(k);
            atr_status rc = atr_block_open(&out, &ctx_acme, atr_buf_span(&sealed), &dek, 0, NULL);
            atr_alloc_fail_reset();
            if (rc == ATR_OK) {
                assert_int_equal(out.len, pt.len);
                atr_buf_cleanup(&out);
                break;
            }
            assert_int_equal(rc, ATR_E_NOMEM);
            assert_int_equal(out.len, 0);
            atr_buf_cleanup(&out);
            failures++;
        }
        assert_true(failures > 0);
        atr_buf_cleanup(&sealed);
    }
    atr_buf_cleanup(&pt);
    atr_secret_cleanup(&dek);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),          cmocka_unit_test(test_empty_plaintext),
        cmocka_unit_test(test_aad_binding),         cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_hostile_inputs),      cmocka_unit_test(test_format_is_as_documented),
        cmocka_unit_test(test_decompression_bombs), cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
