/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_STORE_BLOCK_H
#define ATR_STORE_BLOCK_H

/*
 * The sealed block format, version 1 (docs/formats.md, "Sealed blocks").
 *
 * A block is the NDJSON bytes of a batch of records of one tenant,
 * optionally zstd-compressed, sealed with AES-256-GCM under a 32-byte data
 * key (DEK) held in a struct atr_secret:
 *
 *   "ATRB" | version (1) | flags | nonce (12) | ciphertext | tag (16)
 *
 * The associated data binds the header (format version and flags), the
 * tenant id, the block id and the key reference, so a block copied to
 * another tenant, another block id or another key reference does not open
 * (ATR_E_AUTH_FAILED). Reading and writing of the format both live here
 * (style anchors 3.5).
 *
 * atr_block_open() is safe on any input: lengths are checked before they
 * are used, the decompressed size is bounded by the caller's limit (default
 * 1 MiB) and by the frame's declared size, and nothing decrypted is handed
 * out before the tag has verified.
 *
 * Wiping: plaintext records leave this module only in the caller's
 * struct atr_buf, which the caller owns and wipes (atr_buf_cleanup() and
 * atr_buf_reset() always wipe). Temporaries made here (the compressed
 * plaintext) are wiped before they are freed. libzstd's own work memory
 * (allocated and freed inside ZSTD_compress()/ZSTD_decompress()) is not
 * wiped: the simple API offers no hook for it.
 *
 * Owns nothing between calls. Thread-safety: every function is reentrant;
 * a DEK may be used by several threads at once (each call makes its own
 * cipher context).
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

#define ATR_BLOCK_MAGIC      "ATRB"
#define ATR_BLOCK_MAGIC_LEN  4
#define ATR_BLOCK_VERSION    1
#define ATR_BLOCK_HEADER_LEN 6 /* magic, version, flags */
/* Header, nonce and tag: the smallest sealed block (empty plaintext). */
#define ATR_BLOCK_OVERHEAD 34
/* Flag bit 0: the plaintext is one zstd frame. Other bits must be zero. */
#define ATR_BLOCK_FLAG_ZSTD 0x01u
/* Default bound on an opened block's plaintext (atr_block_open(), 0). */
#define ATR_BLOCK_MAX_PLAIN_DEFAULT ((size_t)1 << 20)
/* Longest tenant id and key reference the format can bind (one length byte). */
#define ATR_BLOCK_NAME_MAX 255
/* zstd level used when sealing with compression. */
#define ATR_BLOCK_ZSTD_LEVEL 3

/* What a block is bound to; every field takes part in the AAD. */
struct atr_block_ctx {
    const char *tenant;  /* 1..ATR_BLOCK_NAME_MAX bytes */
    int64_t block_id;    /* >= 1 */
    const char *key_ref; /* 1..ATR_BLOCK_NAME_MAX bytes, e.g. "tk", "reserve:17" */
};

/* The cleartext header of a sealed block (atr_block_peek()). */
struct atr_block_info {
    unsigned version;  /* ATR_BLOCK_VERSION */
    unsigned flags;    /* ATR_BLOCK_FLAG_* */
    size_t cipher_len; /* bytes of ciphertext between nonce and tag */
};

/**
 * Seals @p plaintext for @p ctx under @p dek and appends the sealed block
 * to @p out.
 * @param[out] out    appended to; its cap must leave room for the block
 *                    (at most plaintext.len + ATR_BLOCK_OVERHEAD bytes).
 * @param ctx         tenant, block id and key reference to bind.
 * @param plaintext   the records (NDJSON); may be empty. Not modified.
 * @param dek         a 32-byte data key; only read during the call.
 * @param compress    non-zero: compress with zstd, and keep the compressed
 *                    form only when it is smaller than the plaintext
 *                    (atr_block_peek() tells which was stored).
 * @return ATR_E_INVALID (ctx fields, DEK size), ATR_E_TOO_LARGE (no room in
 *         @p out; @p out is then released, as atr_buf_reserve() does),
 *         ATR_E_NOMEM, ATR_E_INTERNAL (zstd failed), ATR_E_CRYPTO. On
 *         failure nothing is appended.
 */
ATR_MUST_CHECK atr_status atr_block_seal(struct atr_buf *out, const struct atr_block_ctx *ctx,
                                         struct atr_span plaintext, const struct atr_secret *dek,
                                         int compress, struct atr_err *err);

/**
 * Verifies and opens a sealed block and appends its plaintext to
 * @p out_plain.
 * @param[out] out_plain  owned by the caller, who wipes it (atr_buf_cleanup
 *                        does). Nothing is appended on failure, and no
 *                        partial plaintext is left in its spare capacity.
 * @param ctx             must be the tenant, block id and key reference the
 *                        block was sealed for.
 * @param sealed          the block; must not point into @p out_plain.
 * @param max_plain       largest plaintext accepted (after decompression);
 *                        0 means ATR_BLOCK_MAX_PLAIN_DEFAULT.
 * @return ATR_E_PARSE (not a block, truncated, corrupt zstd frame inside an
 *         authentic block), ATR_E_UNSUPPORTED (unknown version or flags),
 *         ATR_E_AUTH_FAILED (wrong DEK, tenant, block id or key reference,
 *         or modified bytes), ATR_E_TOO_LARGE (plaintext above @p max_plain,
 *         or no room in @p out_plain, which is then released),
 *         ATR_E_INVALID (ctx fields, DEK size), ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_block_open(struct atr_buf *out_plain, const struct atr_block_ctx *ctx,
                                         struct atr_span sealed, const struct atr_secret *dek,
                                         size_t max_plain, struct atr_err *err);

/**
 * Parses the cleartext header of @p sealed without any key.
 * @param[out] out  filled on ATR_OK.
 * @return ATR_E_PARSE (not a block or truncated), ATR_E_UNSUPPORTED
 *         (unknown version or flags).
 */
ATR_MUST_CHECK atr_status atr_block_peek(struct atr_block_info *out, struct atr_span sealed,
                                         struct atr_err *err);

#endif /* ATR_STORE_BLOCK_H */
