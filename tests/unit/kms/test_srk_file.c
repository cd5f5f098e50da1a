/* SPDX-License-Identifier: Apache-2.0 */
/* kms/srk_file and kms/provider: the service root key file and its key provider. */
#include "lib/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/secmem.h"
#include "crypto/aead.h"
#include "crypto/kdf.h"
#include "kms/provider.h"
#include "kms/srk_file.h"

#define T0_MS 1700000000000LL

static char dir[64];
static char path[256];
static struct atr_test_clock tclock;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/atr-srk-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/srk.key", dir);
    return atr_test_clock_init(&tclock, T0_MS) == ATR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atr_test_clock_cleanup(&tclock);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const struct atr_clock *clk(void)
{
    return &tclock.base;
}

/* Number of directory entries besides . and .. (temporary files must not remain). */
static int dir_entries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static struct atr_srk_file *open_ok(int create, int *created)
{
    struct atr_srk_file *f = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_srk_file_open(&f, created, path, create, clk(), &err);
    if (rc != ATR_OK)
        fprintf(stderr, "open: %s\n", atr_err_msg(&err));
    assert_int_equal(rc, ATR_OK);
    assert_non_null(f);
    return f;
}

static atr_status open_rc(struct atr_err *err)
{
    struct atr_srk_file *f = NULL;
    atr_err_clear(err);
    atr_status rc = atr_srk_file_open(&f, NULL, path, 0, clk(), err);
    if (rc == ATR_OK)
        atr_srk_file_free(f);
    else
        assert_null(f);
    return rc;
}

static void make_tk(struct atr_secret *tk, uint8_t fill)
{
    assert_int_equal(atr_secret_init(tk, 32), ATR_OK);
    memset(atr_secret_data(tk), fill, 32);
    atr_secret_data(tk)[0] = 0x42;
}

static void wrap_ok(struct atr_buf *blob, struct atr_kms_keyref *ref, struct atr_srk_file *f,
                    const struct atr_secret *tk, const char *tenant)
{
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, tenant};
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_kms_wrap(blob, ref, atr_srk_file_provider(f), tk, &ctx, &err);
    if (rc != ATR_OK)
        fprintf(stderr, "wrap: %s\n", atr_err_msg(&err));
    assert_int_equal(rc, ATR_OK);
}

static atr_status unwrap(struct atr_secret *out, struct atr_srk_file *f,
                         const struct atr_kms_keyref *ref, struct atr_span blob, const char *tenant,
                         const char *purpose)
{
    struct atr_kms_context ctx = {purpose, tenant};
    return atr_kms_unwrap(out, atr_srk_file_provider(f), ref, blob, &ctx, NULL);
}

static void assert_unwraps_to(struct atr_srk_file *f, const struct atr_kms_keyref *ref,
                              const struct atr_buf *blob, const char *tenant,
                              const struct atr_secret *want)
{
    struct atr_secret got = ATR_SECRET_INIT;
    assert_int_equal(unwrap(&got, f, ref, atr_buf_span(blob), tenant, ATR_KMS_PURPOSE_TK), ATR_OK);
    assert_int_equal(atr_secret_len(&got), atr_secret_len(want));
    assert_memory_equal(atr_secret_cdata(&got), atr_secret_cdata(want), atr_secret_len(want));
    atr_secret_cleanup(&got);
}

static void read_file(struct atr_buf *out, const char *p)
{
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t tmp[4096];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof(tmp))) > 0)
        assert_int_equal(atr_buf_append(out, tmp, (size_t)n), ATR_OK);
    close(fd);
}

static void write_file(const char *p, const void *data, size_t len, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

struct craft_version {
    uint32_t version;
    int64_t created;
    uint8_t fill;
};

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* Builds an SRK file by hand, following the format documented in the header. */
static void craft_file(struct atr_buf *out, uint8_t format, uint8_t reserved, size_t n,
                       const struct craft_version *v)
{
    uint8_t hdr[8] = {'A', 'S', 'R', 'K', format, reserved, 0, 0};
    put_be(hdr + 6, n, 2);
    assert_int_equal(atr_buf_append(out, hdr, 8), ATR_OK);
    for (size_t i = 0; i < n; i++) {
        uint8_t e[44];
        put_be(e, v[i].version, 4);
        put_be(e + 4, (uint64_t)v[i].created, 8);
        memset(e + 12, v[i].fill, 32);
        assert_int_equal(atr_buf_append(out, e, sizeof(e)), ATR_OK);
    }
    uint8_t sum[32];
    assert_int_equal(
        atr_kdf_hmac_sha256(sum, atr_span_str("atrest-srk-file-v1"), atr_buf_span(out), NULL),
        ATR_OK);
    assert_int_equal(atr_buf_append(out, sum, sizeof(sum)), ATR_OK);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_create_then_reopen(void **state)
{
    (void)state;
    mode_t old = umask(0); /* the file must still be exactly 0600 */
    int created = -1;
    struct atr_srk_file *f = open_ok(1, &created);
    umask(old);
    assert_int_equal(created, 1);
    assert_int_equal(atr_srk_file_current_version(f), 1);
    assert_int_equal(atr_srk_file_version_count(f), 1);
    uint32_t v = 0;
    int64_t c = 0;
    assert_int_equal(atr_srk_file_version_at(&v, &c, f, 0), ATR_OK);
    assert_int_equal(v, 1);
    assert_int_equal(c, T0_MS / 1000);
    assert_int_equal(atr_srk_file_version_at(&v, &c, f, 1), ATR_E_NOT_FOUND);

    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal((size_t)st.st_size, ATR_SRK_FILE_LEN(1));
    assert_int_equal(dir_entries(), 1);

    struct atr_kms_provider *p = atr_srk_file_provider(f);
    assert_string_equal(atr_kms_provider_name(p), "srk-file");
    struct atr_kms_keyref cur;
    assert_int_equal(atr_kms_current(&cur, p, NULL), ATR_OK);
    assert_string_equal(cur.id, "srk/1");

    struct atr_secret tk = ATR_SECRET_INIT;
    make_tk(&tk, 0x11);
    struct atr_buf blob;
    atr_buf_init(&blob, 1024);
    struct atr_kms_keyref ref;
    wrap_ok(&blob, &ref, f, &tk, "tenant-a");
    assert_string_equal(ref.id, "srk/1");
    assert_true(atr_kms_keyref_equal(&ref, &cur));
    assert_int_equal(blob.len, 32 + ATR_SRK_BLOB_OVERHEAD);
    assert_int_equal(blob.ptr[0], ATR_SRK_BLOB_FORMAT);
    assert_int_equal(blob.ptr[4], 1);
    /* nonces are random: the same key wraps differently each time */
    struct atr_buf blob2;
    atr_buf_init(&blob2, 1024);
    wrap_ok(&blob2, &ref, f, &tk, "tenant-a");
    assert_memory_not_equal(blob.ptr, blob2.ptr, blob.len);
    atr_buf_cleanup(&blob2);
    atr_srk_file_free(f);

    f = open_ok(1, &created);
    assert_int_equal(created, 0);
    assert_int_equal(atr_srk_file_current_version(f), 1);
    assert_unwraps_to(f, &ref, &blob, "tenant-a", &tk);
    atr_srk_file_free(f);

    /* without create_if_missing, reopening works and a missing file is reported */
    f = open_ok(0, NULL);
    assert_unwraps_to(f, &ref, &blob, "tenant-a", &tk);
    atr_srk_file_free(f);
    assert_int_equal(unlink(path), 0);
    struct atr_err err;
    assert_int_equal(open_rc(&err), ATR_E_NOT_FOUND);
    assert_int_equal(dir_entries(), 0);

    atr_buf_cleanup(&blob);
    atr_secret_cleanup(&tk);
}

static void test_refuses_loose_modes(void **state)
{
    (void)state;
    atr_srk_file_free(open_ok(1, NULL));
    struct atr_err err;
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(open_rc(&err), ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "readable by group or others (mode 0644)"));
    assert_non_null(strstr(err.msg, "chmod 600"));

    static const mode_t bad[] = {0640, 0604, 0620, 0602, 0610, 0601, 0666, 0700 | 0070};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        assert_int_equal(open_rc(&err), ATR_E_CONFIG);
        assert_non_null(strstr(err.msg, "group or others"));
    }
    /* owner-only modes are fine, read-only included */
    static const mode_t good[] = {0600, 0400};
    for (size_t i = 0; i < ATR_ARRAY_LEN(good); i++) {
        assert_int_equal(chmod(path, good[i]), 0);
        assert_int_equal(open_rc(&err), ATR_OK);
    }
    /* another owner (only root can make one) */
    if (geteuid() == 0) {
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(chown(path, 12345, (gid_t)-1), 0);
        assert_int_equal(open_rc(&err), ATR_E_CONFIG);
        assert_non_null(strstr(err.msg, "owned by uid 12345"));
        assert_int_equal(chown(path, 0, (gid_t)-1), 0);
        assert_int_equal(open_rc(&err), ATR_OK);
    }
    /* create_if_missing never "repairs" an existing bad file */
    assert_int_equal(chmod(path, 0644), 0);
    struct atr_srk_file *f = NULL;
    assert_int_equal(atr_srk_file_open(&f, NULL, path, 1, clk(), NULL), ATR_E_CONFIG);
    assert_null(f);
}

static void test_refuses_links_directories_and_fifos(void **state)
{
    (void)state;
    char real[160];
    snprintf(real, sizeof(real), "%s/real.key", dir);
    struct atr_err err;

    /* a symbolic link to a good key file is refused */
    snprintf(path, sizeof(path), "%s", real);
    atr_srk_file_free(open_ok(1, NULL));
    snprintf(path, sizeof(path), "%s/link.key", dir);
    assert_int_equal(symlink(real, path), 0);
    assert_int_equal(open_rc(&err), ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "symbolic link"));
    assert_int_equal(unlink(path), 0);

    /* a dangling link is not followed to create a file */
    snprintf(real, sizeof(real), "%s/elsewhere.key", dir);
    assert_int_equal(symlink(real, path), 0);
    struct atr_srk_file *f = NULL;
    assert_int_equal(atr_srk_file_open(&f, NULL, path, 1, clk(), &err), ATR_E_CONFIG);
    assert_int_equal(access(real, F_OK), -1);
    assert_int_equal(unlink(path), 0);

    /* a directory */
    snprintf(path, sizeof(path), "%s/adir", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(open_rc(&err), ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "directory"));
    assert_int_equal(atr_srk_file_open(&f, NULL, path, 1, clk(), &err), ATR_E_CONFIG);

    /* a FIFO (must not block the open) */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(open_rc(&err), ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "not a regular file"));

    /* a missing directory on creation is an I/O error naming the path */
    snprintf(path, sizeof(path), "%s/missing/srk.key", dir);
    assert_int_equal(atr_srk_file_open(&f, NULL, path, 1, clk(), &err), ATR_E_IO);
    assert_non_null(strstr(err.msg, "missing"));

    /* bad arguments */
    assert_int_equal(atr_srk_file_open(&f, NULL, "", 1, clk(), NULL), ATR_E_INVALID);
    assert_int_equal(atr_srk_file_open(NULL, NULL, path, 1, clk(), NULL), ATR_E_INVALID);
    snprintf(path, sizeof(path), "%s/srk.key", dir);
}

static void test_truncated_and_garbled_files(void **state)
{
    (void)state;
    atr_srk_file_free(open_ok(1, NULL));
    struct atr_buf good;
    atr_buf_init(&good, 1 << 16);
    read_file(&good, path);
    assert_int_equal(good.len, ATR_SRK_FILE_LEN(1));
    struct atr_err err;

    /* every truncation */
    for (size_t n = 0; n < good.len; n++) {
        write_file(path, good.ptr, n, 0600);
        assert_int_equal(open_rc(&err), ATR_E_PARSE);
    }
    /* a trailing byte */
    uint8_t big[ATR_SRK_FILE_LEN(1) + 1];
    memcpy(big, good.ptr, good.len);
    big[good.len] = 0;
    write_file(path, big, sizeof(big), 0600);
    assert_int_equal(open_rc(&err), ATR_E_PARSE);

    /* every single-bit flip: parse error, except the format byte (unsupported) */
    for (size_t i = 0; i < good.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(big, good.ptr, good.len);
            big[i] ^= (uint8_t)(1u << bit);
            write_file(path, big, good.len, 0600);
            atr_status rc = open_rc(&err);
            assert_int_equal(rc, i == 4 ? ATR_E_UNSUPPORTED : ATR_E_PARSE);
        }
    }
    /* garbage of various sizes, including an oversized file */
    uint8_t junk[ATR_SRK_FILE_LEN(ATR_SRK_MAX_VERSIONS) + 8];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    static const size_t sizes[] = {1, 7, 8, 40, 84, 85, 4096, ATR_SRK_FILE_LEN(1024) + 1};
    for (size_t i = 0; i < ATR_ARRAY_LEN(sizes); i++) {
        write_file(path, junk, sizes[i], 0600);
        assert_int_equal(open_rc(&err), ATR_E_PARSE);
    }
    /* the message never carries key bytes: it names the path and the problem */
    memcpy(big, good.ptr, good.len);
    big[20] ^= 1;
    write_file(path, big, good.len, 0600);
    assert_int_equal(open_rc(&err), ATR_E_PARSE);
    assert_non_null(strstr(err.msg, "checksum"));
    assert_non_null(strstr(err.msg, path));
    atr_buf_cleanup(&good);
}

static void test_crafted_files(void **state)
{
    (void)state;
    struct atr_err err;
    struct atr_buf b;
    atr_buf_init(&b, 1 << 17);
    const struct craft_version two[] = {{3, 100, 0xa1}, {7, 200, 0xb2}};

    /* a well-formed hand-made file opens; its highest version is current */
    craft_file(&b, 1, 0, 2, two);
    write_file(path, b.ptr, b.len, 0600);
    struct atr_srk_file *f = open_ok(0, NULL);
    assert_int_equal(atr_srk_file_current_version(f), 7);
    assert_int_equal(atr_srk_file_version_count(f), 2);
    uint32_t v;
    int64_t c;
    assert_int_equal(atr_srk_file_version_at(&v, &c, f, 0), ATR_OK);
    assert_int_equal(v, 3);
    assert_int_equal(c, 100);

    /* known answer: a blob built by hand per docs/keys.md unwraps with version 3 */
    struct atr_secret k3 = ATR_SECRET_INIT;
    assert_int_equal(atr_secret_init(&k3, 32), ATR_OK);
    memset(atr_secret_data(&k3), 0xa1, 32);
    struct atr_aead *aead = NULL;
    assert_int_equal(atr_aead_new(&aead, &k3, NULL), ATR_OK);
    const uint8_t hdr[5] = {1, 0, 0, 0, 3};
    struct atr_buf aad, blob;
    atr_buf_init(&aad, 1024);
    atr_buf_init(&blob, 1024);
    assert_int_equal(atr_buf_append_str(&aad, "atrest-srk-wrap-v1"), ATR_OK);
    assert_int_equal(atr_buf_append(&aad, hdr, 5), ATR_OK);
    const uint8_t lp = (uint8_t)strlen(ATR_KMS_PURPOSE_TK), lt = 3;
    assert_int_equal(atr_buf_append(&aad, &lp, 1), ATR_OK);
    assert_int_equal(atr_buf_append_str(&aad, ATR_KMS_PURPOSE_TK), ATR_OK);
    assert_int_equal(atr_buf_append(&aad, &lt, 1), ATR_OK);
    assert_int_equal(atr_buf_append_str(&aad, "t-1"), ATR_OK);
    const uint8_t secret[32] = {9, 8, 7};
    assert_int_equal(atr_buf_append(&blob, hdr, 5), ATR_OK);
    assert_int_equal(atr_aead_seal(&blob, aead, atr_buf_span(&aad), atr_span_of(secret, 32), NULL),
                     ATR_OK);
    struct atr_kms_keyref ref;
    atr_srk_keyref_format(&ref, 3);
    struct atr_secret got = ATR_SECRET_INIT;
    assert_int_equal(unwrap(&got, f, &ref, atr_buf_span(&blob), "t-1", ATR_KMS_PURPOSE_TK), ATR_OK);
    assert_memory_equal(atr_secret_cdata(&got), secret, 32);
    atr_secret_cleanup(&got);
    atr_aead_free(aead);
    atr_secret_cleanup(&k3);
    atr_buf_cleanup(&aad);
    atr_buf_cleanup(&blob);
    atr_srk_file_free(f);

    /* another format version */
    atr_buf_reset(&b);
    craft_file(&b, 2, 0, 2, two);
    write_file(path, b.ptr, b.len, 0600);
    assert_int_equal(open_rc(&err), ATR_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "format version 2"));

    /* valid checksums over invalid content */
    const struct craft_version unordered[] = {{7, 1, 1}, {3, 1, 2}};
    const struct craft_version dup[] = {{3, 1, 1}, {3, 1, 2}};
    const struct craft_version zero[] = {{0, 1, 1}};
    const struct {
        uint8_t reserved;
        size_t n;
        const struct craft_version *v;
    } bad[] = {{0, 2, unordered}, {0, 2, dup}, {0, 1, zero}, {1, 2, two}, {0, 0, two}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        atr_buf_reset(&b);
        craft_file(&b, 1, bad[i].reserved, bad[i].n, bad[i].v);
        write_file(path, b.ptr, b.len, 0600);
        assert_int_equal(open_rc(&err), ATR_E_PARSE);
    }

    /* the maximum number of versions opens, and refuses to grow */
    static struct craft_version many[ATR_SRK_MAX_VERSIONS + 1];
    for (size_t i = 0; i <= ATR_SRK_MAX_VERSIONS; i++)
        many[i] = (struct craft_version){(uint32_t)i + 1, 5, (uint8_t)i};
    atr_buf_reset(&b);
    craft_file(&b, 1, 0, ATR_SRK_MAX_VERSIONS + 1, many);
    write_file(path, b.ptr, b.len, 0600);
    assert_int_equal(open_rc(&err), ATR_E_PARSE);
    atr_buf_reset(&b);
    craft_file(&b, 1, 0, ATR_SRK_MAX_VERSIONS, many);
    write_file(path, b.ptr, b.len, 0600);
    f = open_ok(0, NULL);
    assert_int_equal(atr_srk_file_current_version(f), ATR_SRK_MAX_VERSIONS);
    assert_int_equal(atr_srk_file_rotate(f, NULL, &err), ATR_E_TOO_LARGE);
    atr_srk_file_free(f);

    /* the highest possible version cannot be followed */
    const struct craft_version top[] = {{UINT32_MAX, 1, 1}};
    atr_buf_reset(&b);
    craft_file(&b, 1, 0, 1, top);
    write_file(path, b.ptr, b.len, 0600);
    f = open_ok(0, NULL);
    assert_int_equal(atr_srk_file_rotate(f, NULL, &err), ATR_E_TOO_LARGE);
    struct atr_kms_keyref cur;
    assert_int_equal(atr_kms_current(&cur, atr_srk_file_provider(f), NULL), ATR_OK);
    assert_string_equal(cur.id, "srk/4294967295");
    atr_srk_file_free(f);
    atr_buf_cleanup(&b);
}

static void test_rotate(void **state)
{
    (void)state;
    struct atr_srk_file *f = open_ok(1, NULL);
    struct atr_secret tk = ATR_SECRET_INIT;
    make_tk(&tk, 0x22);
    struct atr_buf b1, b2;
    atr_buf_init(&b1, 1024);
    atr_buf_init(&b2, 1024);
    struct atr_kms_keyref r1, r2;
    wrap_ok(&b1, &r1, f, &tk, "tenant-a");

    atr_test_clock_advance(&tclock, 86400 * 1000);
    uint32_t nv = 0;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_srk_file_rotate(f, &nv, &err), ATR_OK);
    assert_int_equal(nv, 2);
    assert_int_equal(atr_srk_file_current_version(f), 2);
    assert_int_equal(atr_srk_file_version_count(f), 2);
    assert_int_equal(dir_entries(), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    wrap_ok(&b2, &r2, f, &tk, "tenant-a");
    assert_string_equal(r2.id, "srk/2");
    assert_int_equal(b2.ptr[4], 2);
    assert_false(atr_kms_keyref_equal(&r1, &r2));
    assert_unwraps_to(f, &r1, &b1, "tenant-a", &tk);
    assert_unwraps_to(f, &r2, &b2, "tenant-a", &tk);

    /* a second rotation; then reopen: all versions kept, in order, with their times */
    atr_test_clock_advance(&tclock, 1000);
    assert_int_equal(atr_srk_file_rotate(f, NULL, NULL), ATR_OK);
    atr_srk_file_free(f);
    f = open_ok(0, NULL);
    assert_int_equal(atr_srk_file_version_count(f), 3);
    assert_int_equal(atr_srk_file_current_version(f), 3);
    int64_t created[3];
    for (size_t i = 0; i < 3; i++) {
        uint32_t v;
        assert_int_equal(atr_srk_file_version_at(&v, &created[i], f, i), ATR_OK);
        assert_int_equal(v, i + 1);
    }
    assert_int_equal(created[0], T0_MS / 1000);
    assert_int_equal(created[1], T0_MS / 1000 + 86400);
    assert_int_equal(created[2], T0_MS / 1000 + 86401);
    assert_unwraps_to(f, &r1, &b1, "tenant-a", &tk);
    assert_unwraps_to(f, &r2, &b2, "tenant-a", &tk);
    struct atr_kms_keyref cur;
    assert_int_equal(atr_kms_current(&cur, atr_srk_file_provider(f), NULL), ATR_OK);
    assert_string_equal(cur.id, "srk/3");

    /* a rotation that cannot replace the file leaves the object unchanged and no temp file */
    char saved[300];
    snprintf(saved, sizeof(saved), "%s.saved", path);
    assert_int_equal(rename(path, saved), 0);
    assert_int_equal(mkdir(path, 0700), 0); /* rename() of a file over a directory fails */
    assert_int_equal(atr_srk_file_rotate(f, NULL, &err), ATR_E_IO);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(atr_srk_file_current_version(f), 3);
    struct atr_buf b3;
    atr_buf_init(&b3, 1024);
    struct atr_kms_keyref r3;
    wrap_ok(&b3, &r3, f, &tk, "tenant-a");
    assert_string_equal(r3.id, "srk/3");
    atr_buf_cleanup(&b3);
    assert_int_equal(dir_entries(), 2);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rename(saved, path), 0);
    atr_srk_file_free(f);

    atr_buf_cleanup(&b1);
    atr_buf_cleanup(&b2);
    atr_secret_cleanup(&tk);
}

static void test_binding_and_versions(void **state)
{
    (void)state;
    struct atr_srk_file *f = open_ok(1, NULL);
    struct atr_secret tk = ATR_SECRET_INIT, out = ATR_SECRET_INIT;
    make_tk(&tk, 0x33);
    struct atr_buf blob;
    atr_buf_init(&blob, 1024);
    struct atr_kms_keyref ref;
    wrap_ok(&blob, &ref, f, &tk, "tenant-a");
    struct atr_span s = atr_buf_span(&blob);

    /* the AAD binds the tenant and the purpose */
    assert_int_equal(unwrap(&out, f, &ref, s, "tenant-b", ATR_KMS_PURPOSE_TK), ATR_E_AUTH_FAILED);
    assert_false(atr_secret_is_set(&out));
    assert_int_equal(unwrap(&out, f, &ref, s, "tenant-a ", ATR_KMS_PURPOSE_TK), ATR_E_AUTH_FAILED);
    assert_int_equal(unwrap(&out, f, &ref, s, "tenant-a", "dek-reserve"), ATR_E_AUTH_FAILED);
    assert_int_equal(unwrap(&out, f, &ref, s, "tenant-", ATR_KMS_PURPOSE_TK), ATR_E_AUTH_FAILED);

    /* any modified byte fails, never with a key */
    uint8_t mod[256];
    for (size_t i = 0; i < blob.len; i++) {
        memcpy(mod, blob.ptr, blob.len);
        mod[i] ^= 0x80;
        atr_status rc =
            unwrap(&out, f, &ref, atr_span_of(mod, blob.len), "tenant-a", ATR_KMS_PURPOSE_TK);
        assert_int_not_equal(rc, ATR_OK);
        assert_false(atr_secret_is_set(&out));
        if (i >= 5)
            assert_int_equal(rc, ATR_E_AUTH_FAILED);
    }
    /* truncated and extended blobs */
    for (size_t n = 1; n < blob.len; n++) {
        atr_status rc =
            unwrap(&out, f, &ref, atr_span_of(blob.ptr, n), "tenant-a", ATR_KMS_PURPOSE_TK);
        assert_true(rc == ATR_E_PARSE || rc == ATR_E_AUTH_FAILED);
    }
    memcpy(mod, blob.ptr, blob.len);
    memset(mod + blob.len, 0, 100);
    assert_int_equal(
        unwrap(&out, f, &ref, atr_span_of(mod, blob.len + 100), "tenant-a", ATR_KMS_PURPOSE_TK),
        ATR_E_PARSE);
    assert_int_equal(unwrap(&out, f, &ref, atr_span_of(NULL, 0), "tenant-a", ATR_KMS_PURPOSE_TK),
                     ATR_E_PARSE);

    /* an unknown blob format */
    memcpy(mod, blob.ptr, blob.len);
    mod[0] = 2;
    assert_int_equal(
        unwrap(&out, f, &ref, atr_span_of(mod, blob.len), "tenant-a", ATR_KMS_PURPOSE_TK),
        ATR_E_UNSUPPORTED);

    /* an unknown version: blob and reference agree on version 9 */
    memcpy(mod, blob.ptr, blob.len);
    mod[4] = 9;
    struct atr_kms_keyref r9;
    atr_srk_keyref_format(&r9, 9);
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, "tenant-a"};
    assert_int_equal(
        atr_kms_unwrap(&out, atr_srk_file_provider(f), &r9, atr_span_of(mod, blob.len), &ctx, &err),
        ATR_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "version 9"));
    /* reference and blob disagree */
    assert_int_equal(unwrap(&out, f, &r9, s, "tenant-a", ATR_KMS_PURPOSE_TK), ATR_E_PARSE);

    /* malformed references */
    static const char *bad_refs[] = {"srk/",   "srk/0", "srk/01",         "srk/x", "kv/1",
                                     "srk/1x", "SRK/1", "srk/4294967296", "srk/-1"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad_refs); i++) {
        struct atr_kms_keyref r;
        assert_int_equal(atr_kms_keyref_set(&r, bad_refs[i], NULL), ATR_OK);
        assert_int_equal(unwrap(&out, f, &r, s, "tenant-a", ATR_KMS_PURPOSE_TK), ATR_E_PARSE);
        uint32_t v;
        assert_int_equal(atr_srk_keyref_parse(&v, &r, NULL), ATR_E_PARSE);
    }
    struct atr_kms_keyref empty;
    memset(&empty, 0, sizeof(empty));
    assert_int_equal(unwrap(&out, f, &empty, s, "tenant-a", ATR_KMS_PURPOSE_TK), ATR_E_PARSE);
    uint32_t v;
    assert_int_equal(atr_srk_keyref_parse(&v, &ref, NULL), ATR_OK);
    assert_int_equal(v, 1);

    atr_buf_cleanup(&blob);
    atr_secret_cleanup(&tk);
    atr_srk_file_free(f);
}

static void test_provider_interface(void **state)
{
    (void)state;
    struct atr_srk_file *f = open_ok(1, NULL);
    struct atr_kms_provider *p = atr_srk_file_provider(f);
    struct atr_buf blob;
    atr_buf_init(&blob, 1024);
    struct atr_kms_keyref ref;
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, "t"};

    /* secret sizes: 1..64 bytes wrap; empty and 65 do not */
    struct atr_secret s = ATR_SECRET_INIT, out = ATR_SECRET_INIT;
    assert_int_equal(atr_kms_wrap(&blob, &ref, p, &s, &ctx, NULL), ATR_E_INVALID);
    assert_int_equal(atr_secret_init_random(&s, 65), ATR_OK);
    assert_int_equal(atr_kms_wrap(&blob, &ref, p, &s, &ctx, NULL), ATR_E_INVALID);
    assert_int_equal(blob.len, 0);
    atr_secret_cleanup(&s);
    static const size_t sizes[] = {1, 16, 32, 64};
    for (size_t i = 0; i < ATR_ARRAY_LEN(sizes); i++) {
        assert_int_equal(atr_secret_init_random(&s, sizes[i]), ATR_OK);
        atr_buf_reset(&blob);
        assert_int_equal(atr_kms_wrap(&blob, &ref, p, &s, &ctx, NULL), ATR_OK);
        assert_int_equal(blob.len, sizes[i] + ATR_SRK_BLOB_OVERHEAD);
        assert_int_equal(atr_kms_unwrap(&out, p, &ref, atr_buf_span(&blob), &ctx, NULL), ATR_OK);
        assert_memory_equal(atr_secret_cdata(&out), atr_secret_cdata(&s), sizes[i]);
        /* the output must be empty */
        assert_int_equal(atr_kms_unwrap(&out, p, &ref, atr_buf_span(&blob), &ctx, NULL),
                         ATR_E_INVALID);
        atr_secret_cleanup(&out);
        atr_secret_cleanup(&s);
    }

    /* contexts */
    assert_int_equal(atr_secret_init_random(&s, 32), ATR_OK);
    char longt[ATR_KMS_TENANT_MAX + 2];
    memset(longt, 't', sizeof(longt) - 1);
    longt[sizeof(longt) - 1] = '\0';
    struct atr_kms_context bad[] = {{NULL, "t"}, {"p", NULL}, {"", "t"}, {"p", ""}, {"p", longt}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++)
        assert_int_equal(atr_kms_wrap(&blob, &ref, p, &s, &bad[i], NULL), ATR_E_INVALID);
    assert_int_equal(atr_kms_wrap(&blob, &ref, p, &s, NULL, NULL), ATR_E_INVALID);
    longt[ATR_KMS_TENANT_MAX] = '\0'; /* exactly the maximum is fine */
    struct atr_kms_context maxctx = {ATR_KMS_PURPOSE_TK, longt};
    atr_buf_reset(&blob);
    assert_int_equal(atr_kms_wrap(&blob, &ref, p, &s, &maxctx, NULL), ATR_OK);
    assert_int_equal(atr_kms_unwrap(&out, p, &ref, atr_buf_span(&blob), &maxctx, NULL), ATR_OK);
    atr_secret_cleanup(&out);

    /* a buffer too small for the blob: nothing appended, an error */
    struct atr_buf tiny;
    atr_buf_init(&tiny, 10);
    assert_int_equal(atr_kms_wrap(&tiny, &ref, p, &s, &ctx, NULL), ATR_E_TOO_LARGE);
    assert_int_equal(tiny.len, 0);
    assert_int_equal(ref.id[0], '\0');
    atr_buf_cleanup(&tiny);

    /* key references */
    assert_int_equal(atr_kms_keyref_set(&ref, "has space", NULL), ATR_E_INVALID);
    assert_int_equal(atr_kms_keyref_set(&ref, "", NULL), ATR_E_INVALID);
    assert_int_equal(atr_kms_keyref_set(&ref, NULL, NULL), ATR_E_INVALID);
    assert_int_equal(atr_kms_keyref_set(&ref, "https://v.vault.azure.net/keys/k/0123", NULL),
                     ATR_OK);
    assert_false(atr_kms_keyref_equal(&ref, NULL));

    /* reference counting: a retained provider outlives the creator's free */
    atr_kms_provider_retain(p);
    atr_srk_file_free(f);
    struct atr_kms_keyref cur;
    assert_int_equal(atr_kms_current(&cur, p, NULL), ATR_OK);
    assert_string_equal(cur.id, "srk/1");
    atr_kms_provider_free(p);
    atr_kms_provider_free(NULL);
    atr_srk_file_free(NULL);
    assert_string_equal(atr_kms_provider_name(NULL), "?");
    assert_int_equal(atr_kms_current(NULL, NULL, NULL), ATR_E_INVALID);

    atr_secret_cleanup(&s);
    atr_buf_cleanup(&blob);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    /* creation */
    int done = 0, fails = 0;
    for (unsigned long nth = 1; nth < 100 && !done; nth++) {
        struct atr_srk_file *f = NULL;
        atr_alloc_fail_after(nth);
        atr_status rc = atr_srk_file_open(&f, NULL, path, 1, clk(), NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            done = 1;
            atr_srk_file_free(f);
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            fails++;
            assert_null(f);
            unlink(path);
        }
        assert_int_equal(dir_entries(), done ? 1 : 0);
    }
    assert_true(done);
    assert_true(fails > 0);
    fails = 0;

    /* reopening */
    done = 0;
    for (unsigned long nth = 1; nth < 100 && !done; nth++) {
        struct atr_srk_file *f = NULL;
        atr_alloc_fail_after(nth);
        atr_status rc = atr_srk_file_open(&f, NULL, path, 0, clk(), NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            done = 1;
            atr_srk_file_free(f);
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            fails++;
        }
    }
    assert_true(done);
    assert_true(fails > 0);
    fails = 0;

    /* wrap, unwrap and rotate */
    struct atr_srk_file *f = open_ok(0, NULL);
    struct atr_secret tk = ATR_SECRET_INIT;
    make_tk(&tk, 0x44);
    struct atr_buf blob;
    atr_buf_init(&blob, 1024);
    struct atr_kms_keyref ref;
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, "t"};
    done = 0;
    for (unsigned long nth = 1; nth < 100 && !done; nth++) {
        atr_alloc_fail_after(nth);
        atr_status rc = atr_kms_wrap(&blob, &ref, atr_srk_file_provider(f), &tk, &ctx, NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            done = 1;
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            fails++;
        }
    }
    assert_true(done);
    assert_true(fails > 0);
    fails = 0;
    atr_srk_file_free(f);
    f = open_ok(0, NULL); /* fresh object: its cipher for version 1 is not made yet */
    done = 0;
    for (unsigned long nth = 1; nth < 100 && !done; nth++) {
        struct atr_secret out = ATR_SECRET_INIT;
        atr_alloc_fail_after(nth);
        atr_status rc =
            atr_kms_unwrap(&out, atr_srk_file_provider(f), &ref, atr_buf_span(&blob), &ctx, NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            done = 1;
            assert_memory_equal(atr_secret_cdata(&out), atr_secret_cdata(&tk), 32);
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            fails++;
            assert_false(atr_secret_is_set(&out));
        }
        atr_secret_cleanup(&out);
    }
    assert_true(done);
    assert_true(fails > 0);
    fails = 0;
    done = 0;
    for (unsigned long nth = 1; nth < 100 && !done; nth++) {
        atr_alloc_fail_after(nth);
        atr_status rc = atr_srk_file_rotate(f, NULL, NULL);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            done = 1;
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
            fails++;
            assert_int_equal(atr_srk_file_current_version(f), 1);
        }
        assert_int_equal(dir_entries(), 1);
    }
    assert_true(done);
    assert_true(fails > 0);
    fails = 0;
    assert_int_equal(atr_srk_file_current_version(f), 2);
    atr_srk_file_free(f);
    atr_buf_cleanup(&blob);
    atr_secret_cleanup(&tk);
}

struct worker {
    struct atr_srk_file *f;
    char tenant[16];
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct atr_kms_provider *p = atr_srk_file_provider(w->f);
    struct atr_kms_context ctx = {ATR_KMS_PURPOSE_TK, w->tenant};
    for (int i = 0; i < 200; i++) {
        struct atr_secret tk = ATR_SECRET_INIT, out = ATR_SECRET_INIT;
        struct atr_buf blob;
        atr_buf_init(&blob, 256);
        struct atr_kms_keyref ref;
        if (atr_secret_init_random(&tk, 32) != ATR_OK ||
            atr_kms_wrap(&blob, &ref, p, &tk, &ctx, NULL) != ATR_OK ||
            atr_kms_unwrap(&out, p, &ref, atr_buf_span(&blob), &ctx, NULL) != ATR_OK ||
            !atr_ct_equal(atr_secret_cdata(&out), atr_secret_cdata(&tk), 32))
            w->failures++;
        atr_secret_cleanup(&tk);
        atr_secret_cleanup(&out);
        atr_buf_cleanup(&blob);
    }
    return NULL;
}

static void test_concurrent_use_and_rotation(void **state)
{
    (void)state;
    struct atr_srk_file *f = open_ok(1, NULL);
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i].f = f;
        w[i].failures = 0;
        snprintf(w[i].tenant, sizeof(w[i].tenant), "tenant-%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(atr_srk_file_rotate(f, NULL, NULL), ATR_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(atr_srk_file_current_version(f), 4);
    atr_srk_file_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_then_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_loose_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_links_directories_and_fifos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_garbled_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crafted_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binding_and_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_interface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_use_and_rotation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}
