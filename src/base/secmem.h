/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_SECMEM_H
#define ATR_BASE_SECMEM_H

/*
 * Secure memory for key material (SRK, TK, DEK, RSA private parts).
 *
 * struct atr_secret is the only type that holds plaintext key bytes. Its
 * storage comes from OpenSSL's secure heap: mmap'ed, mlock'ed (never
 * swapped), guard-paged and marked MADV_DONTDUMP (not in core dumps).
 * Cleanup wipes before freeing and leaves the secret empty, so a second
 * cleanup is harmless (double-free guard). A magic word detects use of a
 * secret that was never initialised.
 *
 * atr_secmem_init() must run once at start-up before any secret is made;
 * without it OpenSSL silently serves plain malloc, so the atrest binary
 * refuses to start unless the heap is fully protected (see design 3.10 of
 * the style anchors). atr_secmem_harden_process() disables core dumps.
 *
 * Thread-safety: the secure heap is thread-safe; one secret has one owner.
 * There is deliberately no helper that formats or prints secret bytes.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* How well the secure heap is protected. */
typedef enum atr_secmem_level {
    ATR_SECMEM_NONE = 1,        /* not initialised */
    ATR_SECMEM_UNPROTECTED = 2, /* heap exists but mlock/madvise failed */
    ATR_SECMEM_PROTECTED = 3,   /* locked and excluded from core dumps */
} atr_secmem_level;

struct atr_secret {
    uint32_t magic; /* ATR_SECRET_MAGIC while it owns storage */
    uint8_t *ptr;   /* secure-heap storage, or NULL */
    size_t len;
};

#define ATR_SECRET_MAGIC 0x5ec7e7u
#define ATR_SECRET_INIT                                                                            \
    {                                                                                              \
        0, NULL, 0                                                                                 \
    }

/**
 * Creates the process's secure heap of @p heap_bytes (a power of two).
 * @p allow_unprotected accepts a heap whose pages could not be locked (only
 * for tests and sanitizer builds). Calling it again is a no-op.
 * @return ATR_E_NOMEM if the heap cannot be made, ATR_E_CONFIG if it is
 * unprotected and that is not allowed.
 */
ATR_MUST_CHECK atr_status atr_secmem_init(size_t heap_bytes, int allow_unprotected,
                                          struct atr_err *err);

/** The protection level reached by atr_secmem_init(). */
atr_secmem_level atr_secmem_level_get(void);

/** Bytes currently used in the secure heap (0 when not initialised). */
size_t atr_secmem_used(void);

/**
 * Process hardening for every subcommand: no core dumps (RLIMIT_CORE 0,
 * PR_SET_DUMPABLE 0). @return ATR_E_INTERNAL if a setting failed.
 */
ATR_MUST_CHECK atr_status atr_secmem_harden_process(struct atr_err *err);

/**
 * Allocates @p len zeroed secure bytes into @p s (which must be empty).
 * @return ATR_E_INVALID for len 0, ATR_E_NOMEM when the heap is exhausted.
 */
ATR_MUST_CHECK atr_status atr_secret_init(struct atr_secret *s, size_t len);

/** Allocates and copies @p len bytes from @p src. Errors as atr_secret_init(). */
ATR_MUST_CHECK atr_status atr_secret_init_copy(struct atr_secret *s, const void *src, size_t len);

/** Allocates @p len random bytes (CSPRNG). Errors as atr_secret_init(), ATR_E_CRYPTO. */
ATR_MUST_CHECK atr_status atr_secret_init_random(struct atr_secret *s, size_t len);

/** Wipes and frees; the secret is empty afterwards. NULL and repeats are fine. */
void atr_secret_cleanup(struct atr_secret *s);

/** 1 if @p s holds bytes. */
int atr_secret_is_set(const struct atr_secret *s);

/* Accessors for src/crypto; the pointer is borrowed until cleanup. */
uint8_t *atr_secret_data(struct atr_secret *s);
const uint8_t *atr_secret_cdata(const struct atr_secret *s);
size_t atr_secret_len(const struct atr_secret *s);

/** Constant-time equality of two byte strings of length @p n (CRYPTO_memcmp). */
int atr_ct_equal(const void *a, const void *b, size_t n);

/** Wipes @p n bytes at @p p in a way the compiler cannot remove. */
void atr_wipe(void *p, size_t n);

#endif /* ATR_BASE_SECMEM_H */
