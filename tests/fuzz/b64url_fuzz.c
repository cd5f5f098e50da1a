/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_b64_decode, atr_b64url_decode, atr_b64_encode,
 * atr_b64url_encode (src/base/b64.c).
 *
 * Property: decoding either alphabet never crashes, and whenever it
 * succeeds, re-encoding the bytes gives back exactly the input (the decoders
 * accept canonical encodings only, so every byte string has one accepted
 * form). A failed decode must leave the output buffer empty. Any violation
 * aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/b64.h"
#include "base/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_BUF_MAX (1u << 20)

static void check(int url, const uint8_t *data, size_t size)
{
    struct atr_buf dec;
    struct atr_buf enc;
    struct atr_err err;
    atr_buf_init(&dec, FUZZ_BUF_MAX);
    atr_buf_init(&enc, FUZZ_BUF_MAX * 2);
    atr_err_clear(&err);
    const char *in = (const char *)data;
    atr_status rc =
        url ? atr_b64url_decode(&dec, in, size, &err) : atr_b64_decode(&dec, in, size, &err);
    if (rc != ATR_OK) {
        /* nothing appended on error, and the error has a message */
        if (dec.len != 0 || err.code != rc || err.msg[0] == '\0')
            abort();
        goto done;
    }
    rc = url ? atr_b64url_encode(&enc, atr_buf_span(&dec))
             : atr_b64_encode(&enc, atr_buf_span(&dec));
    if (rc != ATR_OK)
        abort();
    size_t want = url ? atr_b64url_encoded_len(dec.len) : atr_b64_encoded_len(dec.len);
    if (enc.len != size || want != size || (size > 0 && memcmp(enc.ptr, data, size) != 0))
        abort();
done:
    atr_buf_cleanup(&enc);
    atr_buf_cleanup(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_BUF_MAX)
        return 0;
    check(0, data, size);
    check(1, data, size);
    return 0;
}
