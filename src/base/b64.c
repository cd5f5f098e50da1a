/* SPDX-License-Identifier: Apache-2.0 */
#include "base/b64.h"

#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/alloc.h"
#include "base/secmem.h"

/* EVP_EncodeBlock/DecodeBlock take int lengths; bound inputs well below. */
#define B64_MAX_IN ((size_t)INT_MAX / 4 * 3 - 4)

size_t atr_b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t atr_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

static atr_status encode(struct atr_buf *out, struct atr_span in, int url)
{
    if (in.len > B64_MAX_IN)
        return ATR_E_TOO_LARGE;
    size_t padded = atr_b64_encoded_len(in.len);
    ATR_TRY(atr_buf_reserve(out, padded));
    char *dst = (char *)out->ptr + out->len;
    /* EVP_EncodeBlock writes a NUL after the text; reserve() kept a spare byte */
    int n = in.len == 0 ? 0 : EVP_EncodeBlock((unsigned char *)dst, in.ptr, (int)in.len);
    if (n < 0 || (size_t)n != padded)
        return ATR_E_INTERNAL;
    size_t len = padded;
    if (url) {
        for (size_t i = 0; i < len; i++) {
            if (dst[i] == '+')
                dst[i] = '-';
            else if (dst[i] == '/')
                dst[i] = '_';
        }
        len = atr_b64url_encoded_len(in.len);
    }
    out->len += len;
    return ATR_OK;
}

atr_status atr_b64_encode(struct atr_buf *out, struct atr_span in)
{
    return encode(out, in, 0);
}

atr_status atr_b64url_encode(struct atr_buf *out, struct atr_span in)
{
    return encode(out, in, 1);
}

atr_status atr_b64url_encode_str(char **out, struct atr_span in)
{
    struct atr_buf b;
    atr_buf_init(&b, B64_MAX_IN);
    *out = NULL;
    atr_status rc = atr_b64url_encode(&b, in);
    if (rc == ATR_OK && atr_buf_cstr(&b) == NULL)
        rc = ATR_E_NOMEM;
    if (rc != ATR_OK) {
        atr_buf_cleanup(&b);
        return rc;
    }
    *out = (char *)b.ptr; /* ownership moves to the caller */
    return ATR_OK;
}

/* Value of one alphabet character, or -1. */
static int sextet(char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

static atr_status decode(struct atr_buf *out, const char *in, size_t len, int url,
                         struct atr_err *err)
{
    const char *name = url ? "base64url" : "base64";
    if (in == NULL && len != 0)
        return atr_err_set(err, ATR_E_INVALID, "%s: no input", name);
    if (len > B64_MAX_IN)
        return atr_err_set(err, ATR_E_TOO_LARGE, "%s: input too long", name);

    size_t data = len; /* characters before padding */
    if (!url) {
        if (len % 4 != 0)
            return atr_err_set(err, ATR_E_PARSE, "%s: length is not a multiple of 4", name);
        if (data > 0 && in[data - 1] == '=')
            data--;
        if (data > 0 && in[data - 1] == '=')
            data--;
    } else if (len % 4 == 1) {
        return atr_err_set(err, ATR_E_PARSE, "%s: impossible length", name);
    }
    for (size_t i = 0; i < data; i++) {
        if (sextet(in[i], url) < 0)
            return atr_err_set(err, ATR_E_PARSE, "%s: invalid character at offset %zu", name, i);
    }
    size_t rem = data % 4;
    if (rem == 1)
        return atr_err_set(err, ATR_E_PARSE, "%s: bad padding", name);
    if (rem != 0) {
        int last = sextet(in[data - 1], url);
        int unused_mask = rem == 2 ? 0x0f : 0x03;
        if ((last & unused_mask) != 0)
            return atr_err_set(err, ATR_E_PARSE, "%s: non-canonical trailing bits", name);
    }
    size_t nbytes = data / 4 * 3 + (rem == 0 ? 0 : rem - 1);
    if (data == 0)
        return ATR_OK;

    /* translate to padded standard base64 for EVP_DecodeBlock */
    size_t padded = (data + 3) / 4 * 4;
    char *tmp = atr_malloc(padded);
    if (tmp == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < data; i++) {
        char c = in[i];
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    memset(tmp + data, '=', padded - data);

    atr_status rc = atr_buf_reserve(out, padded / 4 * 3);
    if (rc != ATR_OK) {
        atr_free(tmp);
        return atr_err_set(err, rc, "%s: output too large", name);
    }
    int n = EVP_DecodeBlock(out->ptr + out->len, (const unsigned char *)tmp, (int)padded);
    atr_wipe(tmp, padded);
    atr_free(tmp);
    if (n < 0 || (size_t)n < nbytes) {
        atr_wipe(out->ptr + out->len, padded / 4 * 3);
        return atr_err_set(err, ATR_E_PARSE, "%s: invalid input", name);
    }
    /* EVP_DecodeBlock counts the bytes standing for '=' as zeros: drop them */
    atr_wipe(out->ptr + out->len + nbytes, (size_t)n - nbytes);
    out->len += nbytes;
    return ATR_OK;
}

atr_status atr_b64_decode(struct atr_buf *out, const char *in, size_t len, struct atr_err *err)
{
    return decode(out, in, len, 0, err);
}

atr_status atr_b64url_decode(struct atr_buf *out, const char *in, size_t len, struct atr_err *err)
{
    return decode(out, in, len, 1, err);
}
