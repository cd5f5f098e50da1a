/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/digest_check.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

int atr_digest_check_set(struct atr_digest_check *c, const char *secret)
{
    memset(c, 0, sizeof(*c));
    if (secret == NULL)
        return 1;
    unsigned int len = 0;
    if (EVP_Digest(secret, strlen(secret), c->digest, &len, EVP_sha256(), NULL) != 1 ||
        len != ATR_DIGEST_CHECK_LEN) {
        OPENSSL_cleanse(c, sizeof(*c));
        return 0;
    }
    c->set = 1;
    return 1;
}

int atr_digest_check_matches(const struct atr_digest_check *c, const char *candidate)
{
    if (!c->set || candidate == NULL)
        return 0;
    uint8_t d[ATR_DIGEST_CHECK_LEN];
    unsigned int len = 0;
    if (EVP_Digest(candidate, strlen(candidate), d, &len, EVP_sha256(), NULL) != 1)
        return 0;
    int same = CRYPTO_memcmp(d, c->digest, sizeof(d)) == 0;
    OPENSSL_cleanse(d, sizeof(d));
    return same;
}

void atr_digest_check_clear(struct atr_digest_check *c)
{
    OPENSSL_cleanse(c, sizeof(*c));
}
