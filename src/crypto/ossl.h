/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_OSSL_H
#define ATR_CRYPTO_OSSL_H

/*
 * OpenSSL glue shared by the src/crypto modules (style anchors 3.2).
 *
 * Translates an OpenSSL failure into an atr_status and a one-line message
 * of our own, and drains OpenSSL's thread-local error queue so that a stale
 * error never surfaces in a later, unrelated call. OpenSSL reason strings are
 * never copied into the message (they may name internal states that help an
 * attacker, and they are not part of our error contract).
 *
 * Internal to src/crypto: other layers use the module APIs, never this.
 *
 * Thread-safety: reentrant; OpenSSL's error queue is per thread.
 */

#include "base/error.h"

/**
 * Drains OpenSSL's error queue and records @p code with a formatted message
 * in @p err (NULL allowed).
 * @return @p code.
 */
atr_status atr_ossl_fail(struct atr_err *err, atr_status code, const char *fmt, ...)
    ATR_PRINTF(3, 4);

/*
 * Return-style guard for OpenSSL calls that report success as 1, for
 * functions that hold nothing to release: on failure drains the queue and
 * returns @p code with a message naming the call.
 */
#define ATR_TRY_OSSL(call, code, err)                                                              \
    do {                                                                                           \
        if ((call) != 1)                                                                           \
            return atr_ossl_fail((err), (code), "%s failed", #call);                               \
    } while (0)

#endif /* ATR_CRYPTO_OSSL_H */
