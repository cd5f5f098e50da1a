/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_config_load_string (inih underneath), atr_config_get,
 * atr_config_get_str, atr_config_get_int, atr_config_get_bool,
 * atr_config_get_duration_ms, atr_config_get_size, atr_config_key_at
 * (src/base/config.c).
 *
 * Properties: parsing never crashes; a failed load changes nothing; a
 * successful load stores only well-formed lowercase keys within the limits,
 * and loading the same text again succeeds with the same entries; every
 * getter on every stored key either succeeds within its range or fails with
 * ATR_E_CONFIG and a message naming the key. Any violation aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(atr_status rc, const struct atr_err *err, const char *key)
{
    if (rc != ATR_E_CONFIG || err->code != ATR_E_CONFIG || strstr(err->msg, key) == NULL)
        abort();
}

static void check_key(const struct atr_config *cfg, const char *key)
{
    size_t len = strlen(key);
    const char *dot = strchr(key, '.');
    if (len == 0 || len >= ATR_CONFIG_MAX_KEY || dot == NULL || dot == key || dot[1] == '\0')
        abort();
    for (const char *p = key; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || p == dot))
            abort();
    }
    const char *v = atr_config_get(cfg, key);
    if (v == NULL || strlen(v) > ATR_CONFIG_MAX_VALUE ||
        atr_config_get_str(cfg, key, "default") != v)
        abort();

    struct atr_err err;
    int64_t i = 0;
    atr_status rc = atr_config_get_int(&i, cfg, key, 0, -1000, 1000, &err);
    if (rc == ATR_OK) {
        if (i < -1000 || i > 1000)
            abort();
    } else {
        check_err(rc, &err, key);
    }
    bool b = false;
    rc = atr_config_get_bool(&b, cfg, key, false, &err);
    if (rc != ATR_OK)
        check_err(rc, &err, key);
    int64_t ms = 0;
    rc = atr_config_get_duration_ms(&ms, cfg, key, 0, 0, INT64_MAX, &err);
    if (rc == ATR_OK) {
        if (ms < 0)
            abort();
    } else {
        check_err(rc, &err, key);
    }
    uint64_t sz = 0;
    rc = atr_config_get_size(&sz, cfg, key, 0, 1, UINT64_C(1) << 40, &err);
    if (rc == ATR_OK) {
        if (sz < 1 || sz > (UINT64_C(1) << 40))
            abort();
    } else {
        check_err(rc, &err, key);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct atr_config *cfg = NULL;
    struct atr_err err;
    if (atr_config_new(&cfg) != ATR_OK)
        abort();
    atr_err_clear(&err);
    atr_status rc = atr_config_load_string(cfg, (const char *)data, size, "fuzz", &err);
    if (rc != ATR_OK) {
        if (atr_config_count(cfg) != 0 || err.code != rc || err.msg[0] == '\0')
            abort();
        goto done;
    }
    size_t n = atr_config_count(cfg);
    if (n > ATR_CONFIG_MAX_ENTRIES || atr_config_key_at(cfg, n) != NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        check_key(cfg, atr_config_key_at(cfg, i));
    /* a second load of the same text replaces every entry with itself */
    if (atr_config_load_string(cfg, (const char *)data, size, "fuzz", &err) != ATR_OK ||
        atr_config_count(cfg) != n)
        abort();
done:
    atr_config_free(cfg);
    return 0;
}
