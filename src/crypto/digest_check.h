/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_DIGEST_CHECK_H
#define ATR_CRYPTO_DIGEST_CHECK_H

/*
 * Checking a presented secret (the bootstrap secret of a management API)
 * without keeping the secret: only its SHA-256 is stored, and a candidate
 * is compared by digest in constant time, so neither the comparison time
 * nor the stored state reveals the secret or its length.
 *
 * Thread-safety: a digest is immutable after atr_digest_check_set();
 * atr_digest_check_matches() may run concurrently.
 */

#include <stdint.h>

#define ATR_DIGEST_CHECK_LEN 32

struct atr_digest_check {
    uint8_t digest[ATR_DIGEST_CHECK_LEN];
    int set; /* 0: nothing matches */
};

/**
 * Stores the digest of @p secret (NUL-terminated); NULL leaves the check
 * empty (nothing matches). @return 1 on success, 0 if hashing failed (the
 * check is then empty).
 */
int atr_digest_check_set(struct atr_digest_check *c, const char *secret);

/** 1 if @p candidate (NUL-terminated, may be NULL) is the stored secret. */
int atr_digest_check_matches(const struct atr_digest_check *c, const char *candidate);

/** Wipes the stored digest. */
void atr_digest_check_clear(struct atr_digest_check *c);

#endif /* ATR_CRYPTO_DIGEST_CHECK_H */
