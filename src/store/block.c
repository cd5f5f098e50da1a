/* SPDX-License-Identifier: Apache-2.0 */
#include "store/block.h"

#include <string.h>

#include <zstd.h>

#include "base/alloc.h"
#include "crypto/aead.h"

/* Header, length-prefixed tenant and key reference, block id. */
#define AAD_MAX (ATR_BLOCK_HEADER_LEN + 1 + ATR_BLOCK_NAME_MAX + 8 + 1 + ATR_BLOCK_NAME_MAX)

_Static_assert(ATR_BLOCK_OVERHEAD == ATR_BLOCK_HEADER_LEN + ATR_AEAD_OVERHEAD,
               "block overhead is header, nonce and tag");

static atr_status check_ctx(const struct atr_block_ctx *ctx, struct atr_err *err)
{
    if (ctx == NULL || ctx->tenant == NULL || ctx->key_ref == NULL)
        return atr_err_set(err, ATR_E_INVALID, "block: missing tenant or key reference");
    size_t tl = strlen(ctx->tenant);
    size_t kl = strlen(ctx->key_ref);
    if (tl == 0 || tl > ATR_BLOCK_NAME_MAX)
        return atr_err_set(err, ATR_E_INVALID, "block: the tenant id must have 1 to %d bytes",
                           ATR_BLOCK_NAME_MAX);
    if (kl == 0 || kl > ATR_BLOCK_NAME_MAX)
        return atr_err_set(err, ATR_E_INVALID, "block: the key reference must have 1 to %d bytes",
                           ATR_BLOCK_NAME_MAX);
    if (ctx->block_id < 1)
        return atr_err_set(err, ATR_E_INVALID, "block: the block id must be positive");
    return ATR_OK;
}

/*
 * The associated data of version 1 (docs/formats.md):
 *   header (6) | len(tenant) (1) | tenant | block id (8, big-endian)
 *   | len(key_ref) (1) | key_ref
 * Every variable field is length-prefixed, so no two contexts share an AAD.
 * @p ctx has been checked; returns the length written to @p aad.
 */
static size_t build_aad(uint8_t aad[AAD_MAX], const uint8_t header[ATR_BLOCK_HEADER_LEN],
                        const struct atr_block_ctx *ctx)
{
    size_t n = 0;
    size_t tl = strlen(ctx->tenant);
    size_t kl = strlen(ctx->key_ref);
    memcpy(aad, header, ATR_BLOCK_HEADER_LEN);
    n += ATR_BLOCK_HEADER_LEN;
    aad[n++] = (uint8_t)tl;
    memcpy(aad + n, ctx->tenant, tl);
    n += tl;
    uint64_t id = (uint64_t)ctx->block_id;
    for (int i = 7; i >= 0; i--)
        aad[n++] = (uint8_t)(id >> (8 * i));
    aad[n++] = (uint8_t)kl;
    memcpy(aad + n, ctx->key_ref, kl);
    n += kl;
    return n;
}

static void make_header(uint8_t header[ATR_BLOCK_HEADER_LEN], unsigned flags)
{
    memcpy(header, ATR_BLOCK_MAGIC, ATR_BLOCK_MAGIC_LEN);
    header[4] = ATR_BLOCK_VERSION;
    header[5] = (uint8_t)flags;
}

atr_status atr_block_peek(struct atr_block_info *out, struct atr_span sealed, struct atr_err *err)
{
    if (out == NULL || (sealed.ptr == NULL && sealed.len != 0))
        return atr_err_set(err, ATR_E_INVALID, "block: missing argument");
    memset(out, 0, sizeof(*out));
    if (sealed.len < ATR_BLOCK_MAGIC_LEN ||
        memcmp(sealed.ptr, ATR_BLOCK_MAGIC, ATR_BLOCK_MAGIC_LEN) != 0)
        return atr_err_set(err, ATR_E_PARSE, "block: not a sealed block (bad magic)");
    if (sealed.len < ATR_BLOCK_HEADER_LEN)
        return atr_err_set(err, ATR_E_PARSE, "block: truncated header (%zu bytes)", sealed.len);
    unsigned version = sealed.ptr[4];
    unsigned flags = sealed.ptr[5];
    if (version != ATR_BLOCK_VERSION)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "block: format version %u is not supported (this build reads "
                           "version %d)",
                           version, ATR_BLOCK_VERSION);
    if ((flags & ~ATR_BLOCK_FLAG_ZSTD) != 0)
        return atr_err_set(err, ATR_E_UNSUPPORTED, "block: unknown flags 0x%02x", flags);
    if (sealed.len < ATR_BLOCK_OVERHEAD)
        return atr_err_set(err, ATR_E_PARSE, "block: truncated (%zu bytes, at least %d needed)",
                           sealed.len, ATR_BLOCK_OVERHEAD);
    out->version = version;
    out->flags = flags;
    out->cipher_len = sealed.len - ATR_BLOCK_OVERHEAD;
    return ATR_OK;
}

atr_status atr_block_seal(struct atr_buf *out, const struct atr_block_ctx *ctx,
                          struct atr_span plaintext, const struct atr_secret *dek, int compress,
                          struct atr_err *err)
{
    if (out == NULL || (plaintext.ptr == NULL && plaintext.len != 0))
        return atr_err_set(err, ATR_E_INVALID, "block: missing argument");
    ATR_TRY(check_ctx(ctx, err));
    struct atr_aead *aead = NULL;
    ATR_TRY(atr_aead_new(&aead, dek, err));

    atr_status rc = ATR_OK;
    uint8_t *zbuf = NULL;
    size_t zcap = 0;
    struct atr_span body = plaintext;
    unsigned flags = 0;
    size_t start = out->len;
    if (compress && plaintext.len > 0) {
        size_t bound = ZSTD_compressBound(plaintext.len);
        if (ZSTD_isError(bound)) {
            rc = atr_err_set(err, ATR_E_TOO_LARGE, "block: plaintext too large to compress");
            goto done;
        }
        zbuf = atr_malloc(bound);
        if (zbuf == NULL) {
            rc = atr_err_set(err, ATR_E_NOMEM, "block: out of memory");
            goto done;
        }
        zcap = bound;
        size_t zn = ZSTD_compress(zbuf, bound, plaintext.ptr, plaintext.len, ATR_BLOCK_ZSTD_LEVEL);
        if (ZSTD_isError(zn)) {
            rc = atr_err_set(err, ATR_E_INTERNAL, "block: zstd compression failed");
            goto done;
        }
        if (zn < plaintext.len) {
            body = atr_span_of(zbuf, zn);
            flags = ATR_BLOCK_FLAG_ZSTD;
        }
    }

    uint8_t header[ATR_BLOCK_HEADER_LEN];
    make_header(header, flags);
    uint8_t aad[AAD_MAX];
    size_t aad_len = build_aad(aad, header, ctx);
    if (body.len > SIZE_MAX - ATR_BLOCK_OVERHEAD) {
        rc = atr_err_set(err, ATR_E_TOO_LARGE, "block: plaintext too large");
        goto done;
    }
    /* reserve the whole block first: the appends below then cannot fail */
    if ((rc = atr_buf_reserve(out, body.len + ATR_BLOCK_OVERHEAD)) != ATR_OK) {
        rc = atr_err_set(err, rc, "block: no room for the sealed block");
        goto done;
    }
    if ((rc = atr_buf_append(out, header, sizeof(header))) != ATR_OK)
        goto done;
    if ((rc = atr_aead_seal(out, aead, atr_span_of(aad, aad_len), body, err)) != ATR_OK) {
        atr_wipe(out->ptr + start, out->len - start);
        out->len = start;
        goto done;
    }
done:
    if (zbuf != NULL) {
        atr_wipe(zbuf, zcap);
        atr_free(zbuf);
    }
    atr_aead_free(aead);
    return rc;
}

/*
 * Decompresses the one zstd frame in @p z into @p out. The frame must fill
 * @p z exactly and declare its size, which must be at most @p max_plain;
 * decompression writes into exactly that many bytes, so a frame that would
 * produce more fails instead of growing anything.
 */
static atr_status inflate(struct atr_buf *out, struct atr_span z, size_t max_plain,
                          struct atr_err *err)
{
    size_t framed = ZSTD_findFrameCompressedSize(z.ptr, z.len);
    if (ZSTD_isError(framed) || framed != z.len)
        return atr_err_set(err, ATR_E_PARSE, "block: the compressed data is not one zstd frame");
    unsigned long long declared = ZSTD_getFrameContentSize(z.ptr, z.len);
    if (declared == ZSTD_CONTENTSIZE_UNKNOWN)
        return atr_err_set(err, ATR_E_PARSE,
                           "block: the zstd frame does not declare its content size");
    if (declared == ZSTD_CONTENTSIZE_ERROR)
        return atr_err_set(err, ATR_E_PARSE, "block: bad zstd frame header");
    if (declared > max_plain)
        return atr_err_set(err, ATR_E_TOO_LARGE,
                           "block: plaintext of %llu bytes exceeds the limit of %zu", declared,
                           max_plain);
    size_t n = (size_t)declared;
    atr_status rc = atr_buf_reserve(out, n);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "block: no room for the plaintext");
    uint8_t *dst = out->ptr + out->len;
    size_t got = ZSTD_decompress(dst, n, z.ptr, z.len);
    if (ZSTD_isError(got) || got != n) {
        atr_wipe(dst, n);
        return atr_err_set(err, ATR_E_PARSE, "block: corrupt zstd frame");
    }
    out->len += n;
    return ATR_OK;
}

atr_status atr_block_open(struct atr_buf *out_plain, const struct atr_block_ctx *ctx,
                          struct atr_span sealed, const struct atr_secret *dek, size_t max_plain,
                          struct atr_err *err)
{
    if (out_plain == NULL)
        return atr_err_set(err, ATR_E_INVALID, "block: missing output buffer");
    struct atr_block_info info;
    ATR_TRY(atr_block_peek(&info, sealed, err));
    ATR_TRY(check_ctx(ctx, err));
    if (max_plain == 0)
        max_plain = ATR_BLOCK_MAX_PLAIN_DEFAULT;
    int zipped = (info.flags & ATR_BLOCK_FLAG_ZSTD) != 0;
    /* a frame of a plaintext within the limit is never longer than this */
    size_t zlimit = ZSTD_compressBound(max_plain);
    if (!zipped && info.cipher_len > max_plain)
        return atr_err_set(err, ATR_E_TOO_LARGE, "block: plaintext of %zu bytes exceeds %zu",
                           info.cipher_len, max_plain);
    if (zipped && (ZSTD_isError(zlimit) || info.cipher_len > zlimit))
        return atr_err_set(err, ATR_E_TOO_LARGE,
                           "block: compressed plaintext of %zu bytes exceeds the limit",
                           info.cipher_len);

    struct atr_aead *aead = NULL;
    ATR_TRY(atr_aead_new(&aead, dek, err));
    uint8_t aad[AAD_MAX];
    size_t aad_len = build_aad(aad, sealed.ptr, ctx);
    struct atr_span aad_span = atr_span_of(aad, aad_len);
    struct atr_span framed =
        atr_span_of(sealed.ptr + ATR_BLOCK_HEADER_LEN, sealed.len - ATR_BLOCK_HEADER_LEN);
    atr_status rc;
    if (!zipped) {
        rc = atr_aead_open(out_plain, aead, aad_span, framed, err);
        atr_aead_free(aead);
        return rc;
    }
    /* the compressed plaintext is plaintext too: the temporary is wiped */
    struct atr_buf z;
    atr_buf_init(&z, info.cipher_len);
    rc = atr_aead_open(&z, aead, aad_span, framed, err);
    atr_aead_free(aead);
    if (rc == ATR_OK)
        rc = inflate(out_plain, atr_buf_span(&z), max_plain, err);
    atr_buf_cleanup(&z);
    return rc;
}
