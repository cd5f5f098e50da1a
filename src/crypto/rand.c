/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/rand.h"

#include <limits.h>
#include <stdint.h>

#include <openssl/rand.h>

#include "crypto/ossl.h"

/* RAND_bytes takes an int length: feed long requests in pieces. */
#define RAND_CHUNK ((size_t)1 << 30)

static atr_status fill(uint8_t *p, size_t len, int priv, struct atr_err *err)
{
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < RAND_CHUNK ? len - done : RAND_CHUNK;
        int ok = priv ? RAND_priv_bytes(p + done, (int)n) : RAND_bytes(p + done, (int)n);
        if (ok != 1) {
            atr_wipe(p, len);
            return atr_ossl_fail(err, ATR_E_CRYPTO, "the random generator failed");
        }
        done += n;
    }
    return ATR_OK;
}

atr_status atr_rand_bytes(void *out, size_t len, struct atr_err *err)
{
    if (out == NULL && len != 0)
        return atr_err_set(err, ATR_E_INVALID, "random bytes: no output buffer");
    return fill(out, len, 0, err);
}

atr_status atr_rand_priv_bytes(void *out, size_t len, struct atr_err *err)
{
    if (out == NULL && len != 0)
        return atr_err_set(err, ATR_E_INVALID, "random bytes: no output buffer");
    return fill(out, len, 1, err);
}

atr_status atr_rand_secret(struct atr_secret *out, size_t len, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    if (len == 0)
        return atr_err_set(err, ATR_E_INVALID, "random secret: length is zero");
    atr_status rc = atr_secret_init(out, len);
    if (rc != ATR_OK)
        return atr_err_set(err, rc, "random secret: %s", atr_status_str(rc));
    rc = fill(atr_secret_data(out), len, 1, err);
    if (rc != ATR_OK)
        atr_secret_cleanup(out);
    return rc;
}
