/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the sealed block format (src/store/block.c) and the wrapped
 * DEK format (src/service/keyring.c).
 *
 * Properties, with a fixed DEK and tenant key:
 *  - the input opened as a sealed block fails cleanly (no crash, nothing
 *    appended) unless it is authentic, which random bytes never are;
 *    atr_block_peek agrees with atr_block_open about the header;
 *  - the input used as plaintext seals (compressed or not) and opens back to
 *    exactly the input; the sealed block with one byte flipped (chosen by the
 *    input) or opened under another block id fails with ATR_E_AUTH_FAILED;
 *  - the input unwrapped as a wrapped DEK fails cleanly; a DEK wrapped for
 *    one block id never unwraps for another;
 *  - the input parsed as a reserve blob (src/service/reserve.c, format 2)
 *    either fails cleanly or encodes back to exactly the input.
 * Any violation aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/secmem.h"
#include "service/keyring.h"
#include "service/reserve.h"
#include "store/block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fixed_key[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                      12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                      23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void check_open_garbage(const struct atr_secret *dek, const uint8_t *data, size_t size)
{
    struct atr_block_ctx ctx = {"tenant-a", 7, "tk"};
    struct atr_buf out;
    atr_buf_init(&out, (size_t)1 << 20);
    atr_status rc = atr_block_open(&out, &ctx, atr_span_of(data, size), dek, 0, NULL);
    if (rc == ATR_OK || out.len != 0)
        abort();
    atr_buf_cleanup(&out);
    struct atr_block_info info;
    if (atr_block_peek(&info, atr_span_of(data, size), NULL) == ATR_OK &&
        info.version != ATR_BLOCK_VERSION)
        abort();
}

static void check_roundtrip(const struct atr_secret *dek, const uint8_t *data, size_t size)
{
    struct atr_block_ctx ctx = {"tenant-a", 7, "tk"};
    for (int compress = 0; compress < 2; compress++) {
        struct atr_buf sealed, plain;
        atr_buf_init(&sealed, size + 4096);
        atr_buf_init(&plain, size + 16);
        if (atr_block_seal(&sealed, &ctx, atr_span_of(data, size), dek, compress, NULL) != ATR_OK)
            abort();
        if (atr_block_open(&plain, &ctx, atr_buf_span(&sealed), dek, size + 16, NULL) != ATR_OK ||
            plain.len != size || (size > 0 && memcmp(plain.ptr, data, size) != 0))
            abort();
        atr_buf_reset(&plain);
        struct atr_block_ctx other = {"tenant-a", 8, "tk"};
        if (atr_block_open(&plain, &other, atr_buf_span(&sealed), dek, 0, NULL) !=
            ATR_E_AUTH_FAILED)
            abort();
        size_t at = size > 0 ? data[0] % sealed.len : 0;
        sealed.ptr[at] ^= 0x40;
        atr_status rc = atr_block_open(&plain, &ctx, atr_buf_span(&sealed), dek, 0, NULL);
        /* a flipped header byte may fail as PARSE/UNSUPPORTED before authentication */
        if (rc == ATR_OK || plain.len != 0)
            abort();
        atr_buf_cleanup(&plain);
        atr_buf_cleanup(&sealed);
    }
}

static void check_wrapped_dek(const struct atr_secret *tk, const uint8_t *data, size_t size)
{
    struct atr_secret dek;
    memset(&dek, 0, sizeof(dek));
    uint8_t id1[8] = {0, 0, 0, 0, 0, 0, 0, 1}, id2[8] = {0, 0, 0, 0, 0, 0, 0, 2};
    if (atr_keyring_dek_unwrap(&dek, tk, "tenant-a", atr_span_of(id1, 8), atr_span_of(data, size),
                               NULL) == ATR_OK)
        abort();
    if (atr_secret_is_set(&dek))
        abort();
    struct atr_buf wrapped;
    atr_buf_init(&wrapped, 4096);
    if (atr_keyring_dek_new(&dek, &wrapped, tk, "tenant-a", atr_span_of(id1, 8), NULL) != ATR_OK)
        abort();
    atr_secret_cleanup(&dek);
    if (atr_keyring_dek_unwrap(&dek, tk, "tenant-a", atr_span_of(id2, 8), atr_buf_span(&wrapped),
                               NULL) == ATR_OK)
        abort();
    atr_buf_cleanup(&wrapped);
}

static void check_reserve_blob(const uint8_t *data, size_t size)
{
    uint32_t version = 0;
    char kid[ATR_RESERVE_KID_MAX + 1];
    struct atr_span wrapped = {NULL, 0};
    if (atr_reserve_blob_parse(&version, kid, sizeof(kid), &wrapped, atr_span_of(data, size),
                               NULL) != ATR_OK)
        return;
    if (wrapped.ptr < data || wrapped.ptr + wrapped.len != data + size ||
        strlen(kid) > ATR_RESERVE_KID_MAX)
        abort();
    struct atr_buf again;
    atr_buf_init(&again, size + 16);
    if (atr_reserve_blob_encode(&again, version, kid, wrapped, NULL) != ATR_OK ||
        again.len != size || memcmp(again.ptr, data, size) != 0)
        abort();
    atr_buf_cleanup(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (atr_secmem_init((size_t)1 << 20, 1, NULL) != ATR_OK)
            abort();
        ready = 1;
    }
    if (size > 64 * 1024)
        return 0;
    struct atr_secret key;
    memset(&key, 0, sizeof(key));
    if (atr_secret_init_copy(&key, fixed_key, sizeof(fixed_key)) != ATR_OK)
        abort();
    check_open_garbage(&key, data, size);
    check_roundtrip(&key, data, size);
    check_wrapped_dek(&key, data, size);
    check_reserve_blob(data, size);
    atr_secret_cleanup(&key);
    return 0;
}
