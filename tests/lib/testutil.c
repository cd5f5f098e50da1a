/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/secmem.h"

int atr_test_setup_secmem(void **state)
{
    (void)state;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_secmem_init(1u << 20, 1, &err) != ATR_OK) {
        fprintf(stderr, "secure heap: %s\n", atr_err_msg(&err));
        return -1;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void atr_test_hex(struct atr_buf *out, const char *hex)
{
    size_t n = strlen(hex);
    assert_int_equal(n % 2, 0);
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(hex[i]);
        int lo = hexval(hex[i + 1]);
        assert_true(hi >= 0 && lo >= 0);
        uint8_t b = (uint8_t)(hi << 4 | lo);
        assert_int_equal(atr_buf_append(out, &b, 1), ATR_OK);
    }
}

const char *atr_test_source_path(const char *rel)
{
    static char path[4096];
    const char *root = getenv("ATR_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/%s", root != NULL ? root : ".", rel);
    return path;
}
