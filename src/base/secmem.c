/* SPDX-License-Identifier: Apache-2.0 */
#include "base/secmem.h"

#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

/* Singleton: the protection level of the process's one secure heap. */
static atr_secmem_level secmem_level = ATR_SECMEM_NONE;

atr_status atr_secmem_init(size_t heap_bytes, int allow_unprotected, struct atr_err *err)
{
    if (CRYPTO_secure_malloc_initialized()) {
        if (secmem_level == ATR_SECMEM_UNPROTECTED && !allow_unprotected)
            return atr_err_set(err, ATR_E_CONFIG, "secure memory is not locked");
        return ATR_OK;
    }
    if (heap_bytes < 4096 || (heap_bytes & (heap_bytes - 1)) != 0)
        return atr_err_set(err, ATR_E_INVALID, "secure heap size must be a power of two >= 4096");
    int rc = CRYPTO_secure_malloc_init(heap_bytes, 32);
    if (rc == 0)
        return atr_err_set(err, ATR_E_NOMEM, "cannot create the secure heap (%zu bytes)",
                           heap_bytes);
    secmem_level = rc == 1 ? ATR_SECMEM_PROTECTED : ATR_SECMEM_UNPROTECTED;
    if (secmem_level == ATR_SECMEM_UNPROTECTED && !allow_unprotected)
        return atr_err_set(err, ATR_E_CONFIG,
                           "secure memory could not be locked (mlock/madvise failed); "
                           "raise RLIMIT_MEMLOCK or run with CAP_IPC_LOCK");
    return ATR_OK;
}

atr_secmem_level atr_secmem_level_get(void)
{
    return secmem_level;
}

size_t atr_secmem_used(void)
{
    if (!CRYPTO_secure_malloc_initialized())
        return 0;
    return CRYPTO_secure_used();
}

atr_status atr_secmem_harden_process(struct atr_err *err)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        return atr_err_set(err, ATR_E_INTERNAL, "cannot disable core dumps (RLIMIT_CORE)");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return atr_err_set(err, ATR_E_INTERNAL, "cannot disable core dumps (PR_SET_DUMPABLE)");
    return ATR_OK;
}

atr_status atr_secret_init(struct atr_secret *s, size_t len)
{
    ATR_ASSERT_ARG(s != NULL);
    if (len == 0)
        return ATR_E_INVALID;
    if (s->magic == ATR_SECRET_MAGIC && s->ptr != NULL)
        atr_panic("atr_secret_init on a secret that still owns storage");
    uint8_t *p = OPENSSL_secure_zalloc(len);
    if (p == NULL)
        return ATR_E_NOMEM;
    s->magic = ATR_SECRET_MAGIC;
    s->ptr = p;
    s->len = len;
    return ATR_OK;
}

atr_status atr_secret_init_copy(struct atr_secret *s, const void *src, size_t len)
{
    ATR_TRY(atr_secret_init(s, len));
    memcpy(s->ptr, src, len);
    return ATR_OK;
}

atr_status atr_secret_init_random(struct atr_secret *s, size_t len)
{
    ATR_TRY(atr_secret_init(s, len));
    if (len > INT32_MAX || RAND_priv_bytes(s->ptr, (int)len) != 1) {
        atr_secret_cleanup(s);
        return ATR_E_CRYPTO;
    }
    return ATR_OK;
}

void atr_secret_cleanup(struct atr_secret *s)
{
    if (s == NULL)
        return;
    if (s->magic == ATR_SECRET_MAGIC && s->ptr != NULL)
        OPENSSL_secure_clear_free(s->ptr, s->len);
    s->magic = 0;
    s->ptr = NULL;
    s->len = 0;
}

int atr_secret_is_set(const struct atr_secret *s)
{
    return s != NULL && s->magic == ATR_SECRET_MAGIC && s->ptr != NULL;
}

uint8_t *atr_secret_data(struct atr_secret *s)
{
    return atr_secret_is_set(s) ? s->ptr : NULL;
}

const uint8_t *atr_secret_cdata(const struct atr_secret *s)
{
    return atr_secret_is_set(s) ? s->ptr : NULL;
}

size_t atr_secret_len(const struct atr_secret *s)
{
    return atr_secret_is_set(s) ? s->len : 0;
}

int atr_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void atr_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}
