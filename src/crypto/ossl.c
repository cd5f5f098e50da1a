/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/ossl.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>

atr_status atr_ossl_fail(struct atr_err *err, atr_status code, const char *fmt, ...)
{
    ERR_clear_error();
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        err->msg[0] = '\0';
    return code;
}
