/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_ERROR_H
#define ATR_BASE_ERROR_H

/*
 * Status codes and error detail.
 *
 * Every fallible function returns an atr_status (ATR_OK == 0) and is marked
 * ATR_MUST_CHECK. Detail for operators travels in an optional struct atr_err
 * (the last parameter, NULL allowed): the code plus one bounded line of text.
 * Setting an error never allocates, so it is safe on hot paths and under
 * out-of-memory conditions. Messages never carry key bytes, tokens,
 * plaintext or raw OpenSSL reason strings (design section 6).
 *
 * Thread-safety: a struct atr_err belongs to one caller; nothing is global.
 */

#include <stddef.h>

#define ATR_MUST_CHECK               __attribute__((warn_unused_result))
#define ATR_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define ATR_UNUSED(x)                ((void)(x))
#define ATR_ARRAY_LEN(a)             (sizeof(a) / sizeof((a)[0]))

/* Statics reachable from unit tests: static in production builds only. */
#ifdef ATR_TEST_BUILD
#define ATR_TESTABLE
#else
#define ATR_TESTABLE static
#endif

typedef enum atr_status {
#define ATR_ERROR(name, http, code, msg) name,
#include "base/errors.def"
#undef ATR_ERROR
    ATR_STATUS_COUNT_
} atr_status;

/* Maximum length of an error message, including the terminating NUL. */
#define ATR_ERR_MSG_MAX 256

struct atr_err {
    atr_status code;
    char msg[ATR_ERR_MSG_MAX];
};

/** Resets @p err to ATR_OK with an empty message. NULL is allowed. */
void atr_err_clear(struct atr_err *err);

/**
 * Records @p code and a formatted one-line message in @p err (NULL allowed;
 * the message is then dropped). The message is truncated to fit.
 * @return @p code, so that `return atr_err_set(err, ATR_E_INVALID, ...)` works.
 */
atr_status atr_err_set(struct atr_err *err, atr_status code, const char *fmt, ...) ATR_PRINTF(3, 4);

/**
 * Adds context to an error a callee already recorded: if @p err holds a
 * non-OK code with a message, that (more specific) code and text are kept and
 * the text is prefixed with "@p what: ". Otherwise behaves like atr_err_set()
 * with the public message of @p code.
 * @return the code now held by @p err (@p code when @p err is NULL).
 */
atr_status atr_err_wrap(struct atr_err *err, atr_status code, const char *what);

/** The message of @p err, or the fixed public message of its code if empty. */
const char *atr_err_msg(const struct atr_err *err);

/** Symbolic name of @p st ("ATR_E_INVALID"); never NULL. */
const char *atr_status_name(atr_status st);

/** Fixed public message of @p st ("invalid argument"); never NULL. */
const char *atr_status_str(atr_status st);

/** Public JSON error code of @p st ("BadParameter"); never NULL. */
const char *atr_status_code(atr_status st);

/** HTTP status that @p st maps to (500 for unknown values). */
unsigned atr_status_http(atr_status st);

/**
 * Aborts the process after logging @p what. Only for broken internal
 * invariants; never for anything network input can cause.
 */
_Noreturn void atr_panic(const char *what);

/* Debug builds assert; release builds return ATR_E_INVALID (git2 assert_safe). */
#ifdef NDEBUG
#define ATR_ASSERT_ARG(x)                                                                          \
    do {                                                                                           \
        if (!(x))                                                                                  \
            return ATR_E_INVALID;                                                                  \
    } while (0)
#else
#define ATR_ASSERT_ARG(x)                                                                          \
    do {                                                                                           \
        if (!(x))                                                                                  \
            atr_panic("invalid argument: " #x);                                                    \
    } while (0)
#endif

/* Return-style guard, only in functions that hold nothing to release. */
#define ATR_TRY(expr)                                                                              \
    do {                                                                                           \
        atr_status atr_try_rc_ = (expr);                                                           \
        if (atr_try_rc_ != ATR_OK)                                                                 \
            return atr_try_rc_;                                                                    \
    } while (0)

#endif /* ATR_BASE_ERROR_H */
