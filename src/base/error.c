/* SPDX-License-Identifier: Apache-2.0 */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct status_row {
    const char *name;
    unsigned http;
    const char *code;
    const char *msg;
};

static const struct status_row status_rows[] = {
#define ATR_ERROR(name, http, code, msg) {#name, http, code, msg},
#include "base/errors.def"
#undef ATR_ERROR
};

static const struct status_row *row_of(atr_status st)
{
    if ((unsigned)st >= ATR_ARRAY_LEN(status_rows))
        return &status_rows[ATR_E_INTERNAL];
    return &status_rows[st];
}

void atr_err_clear(struct atr_err *err)
{
    if (err == NULL)
        return;
    err->code = ATR_OK;
    err->msg[0] = '\0';
}

atr_status atr_err_set(struct atr_err *err, atr_status code, const char *fmt, ...)
{
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

atr_status atr_err_wrap(struct atr_err *err, atr_status code, const char *what)
{
    if (err == NULL)
        return code;
    if (err->code == ATR_OK || err->msg[0] == '\0')
        return atr_err_set(err, code, "%s: %s", what, atr_status_str(code));
    char inner[ATR_ERR_MSG_MAX];
    memcpy(inner, err->msg, sizeof(inner));
    atr_err_set(err, err->code, "%s: %s", what, inner);
    return err->code;
}

const char *atr_err_msg(const struct atr_err *err)
{
    if (err == NULL)
        return "";
    if (err->msg[0] != '\0')
        return err->msg;
    return atr_status_str(err->code);
}

const char *atr_status_name(atr_status st)
{
    return row_of(st)->name;
}

const char *atr_status_str(atr_status st)
{
    return row_of(st)->msg;
}

const char *atr_status_code(atr_status st)
{
    return row_of(st)->code;
}

unsigned atr_status_http(atr_status st)
{
    return row_of(st)->http;
}

_Noreturn void atr_panic(const char *what)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"panic: %s\"}\n", what);
    fflush(stderr);
    abort();
}
