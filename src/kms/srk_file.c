/* SPDX-License-Identifier: Apache-2.0 */
#include "kms/srk_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/secmem.h"
#include "crypto/aead.h"
#include "crypto/kdf.h"
#include "crypto/rand.h"

#define FILE_MAGIC      "ASRK"
#define FILE_HEADER_LEN 8
#define FILE_ENTRY_LEN  44
#define FILE_SUM_LEN    ATR_KDF_SHA256_LEN
#define FILE_SUM_KEY    "atrest-srk-file-v1"

#define BLOB_HEADER_LEN 5
#define AAD_LABEL       "atrest-srk-wrap-v1"
#define AAD_MAX                                                                                    \
    (sizeof(AAD_LABEL) - 1 + BLOB_HEADER_LEN + 1 + ATR_KMS_PURPOSE_MAX + 1 + ATR_KMS_TENANT_MAX)

#define KEYREF_PREFIX "srk/"

struct srk_version {
    uint32_t version;
    int64_t created_s;
    struct atr_secret key;
    struct atr_aead *aead; /* made on first use, guarded by the file's lock */
};

struct atr_srk_file {
    struct atr_kms_provider base; /* first member: the provider view */
    pthread_mutex_t lock;
    char *path;
    const struct atr_clock *clock;
    struct srk_version *versions; /* ascending; guarded by lock */
    size_t count;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void version_cleanup(struct srk_version *v)
{
    atr_aead_free(v->aead);
    v->aead = NULL;
    atr_secret_cleanup(&v->key);
}

static void versions_free(struct srk_version *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        version_cleanup(&v[i]);
    atr_free(v);
}

static struct srk_version *find_version(struct atr_srk_file *f, uint32_t version)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->versions[mid].version == version)
            return &f->versions[mid];
        if (f->versions[mid].version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static atr_status version_aead(struct atr_aead **out, struct srk_version *v, struct atr_err *err)
{
    if (v->aead == NULL) {
        atr_status rc = atr_aead_new(&v->aead, &v->key, err);
        if (rc != ATR_OK)
            return atr_err_wrap(err, rc, "SRK");
    }
    *out = v->aead;
    return ATR_OK;
}

/* ---- file format -------------------------------------------------------------------------- */

static atr_status checksum(uint8_t out[FILE_SUM_LEN], const uint8_t *data, size_t len,
                           struct atr_err *err)
{
    return atr_kdf_hmac_sha256(out, atr_span_str(FILE_SUM_KEY), atr_span_of(data, len), err);
}

/* Serialises @p n versions into @p out (an empty secret) in file format 1. */
static atr_status serialize(struct atr_secret *out, const struct srk_version *v, size_t n,
                            struct atr_err *err)
{
    size_t total = ATR_SRK_FILE_LEN(n);
    if (atr_secret_init(out, total) != ATR_OK)
        return atr_err_set(err, ATR_E_NOMEM, "SRK file: no secure memory to write %zu versions", n);
    uint8_t *p = atr_secret_data(out);
    memcpy(p, FILE_MAGIC, 4);
    p[4] = ATR_SRK_FILE_FORMAT;
    p[5] = 0;
    put_be16(p + 6, (uint16_t)n);
    uint8_t *e = p + FILE_HEADER_LEN;
    for (size_t i = 0; i < n; i++, e += FILE_ENTRY_LEN) {
        put_be32(e, v[i].version);
        put_be64(e + 4, (uint64_t)v[i].created_s);
        memcpy(e + 12, atr_secret_cdata(&v[i].key), ATR_SRK_KEY_LEN);
    }
    atr_status rc = checksum(e, p, (size_t)(e - p), err);
    if (rc != ATR_OK)
        atr_secret_cleanup(out);
    return rc;
}

/* Parses file format 1 from @p data into a new array of versions. */
static atr_status parse(struct srk_version **out, size_t *out_n, const char *path,
                        const uint8_t *data, size_t len, struct atr_err *err)
{
    *out = NULL;
    *out_n = 0;
    if (len < FILE_HEADER_LEN || memcmp(data, FILE_MAGIC, 4) != 0)
        return atr_err_set(err, ATR_E_PARSE,
                           "SRK file %s: not an SRK file (bad magic or truncated)", path);
    if (data[4] != ATR_SRK_FILE_FORMAT)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "SRK file %s: format version %u is not supported (this program reads "
                           "version %d)",
                           path, (unsigned)data[4], ATR_SRK_FILE_FORMAT);
    if (data[5] != 0)
        return atr_err_set(err, ATR_E_PARSE, "SRK file %s: reserved header byte is not zero", path);
    size_t n = get_be16(data + 6);
    if (n == 0 || n > ATR_SRK_MAX_VERSIONS)
        return atr_err_set(err, ATR_E_PARSE, "SRK file %s: %zu key versions (must be 1 to %d)",
                           path, n, ATR_SRK_MAX_VERSIONS);
    if (len != ATR_SRK_FILE_LEN(n))
        return atr_err_set(err, ATR_E_PARSE,
                           "SRK file %s: %zu bytes where %zu versions need %zu (truncated or "
                           "damaged)",
                           path, len, n, ATR_SRK_FILE_LEN(n));
    size_t body = len - FILE_SUM_LEN;
    uint8_t sum[FILE_SUM_LEN];
    ATR_TRY(checksum(sum, data, body, err));
    if (!atr_ct_equal(sum, data + body, FILE_SUM_LEN))
        return atr_err_set(err, ATR_E_PARSE, "SRK file %s: checksum mismatch (damaged file)", path);
    struct srk_version *v = atr_calloc(n, sizeof(*v));
    if (v == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "SRK file: out of memory");
    atr_status rc = ATR_OK;
    const uint8_t *e = data + FILE_HEADER_LEN;
    for (size_t i = 0; i < n; i++, e += FILE_ENTRY_LEN) {
        v[i].version = get_be32(e);
        v[i].created_s = (int64_t)get_be64(e + 4);
        if (v[i].version == 0 || (i > 0 && v[i].version <= v[i - 1].version)) {
            rc = atr_err_set(err, ATR_E_PARSE,
                             "SRK file %s: key versions are not in strictly ascending order", path);
            goto done;
        }
        if (atr_secret_init_copy(&v[i].key, e + 12, ATR_SRK_KEY_LEN) != ATR_OK) {
            rc = atr_err_set(err, ATR_E_NOMEM, "SRK file: no secure memory for the keys");
            goto done;
        }
    }
done:
    if (rc != ATR_OK) {
        versions_free(v, n);
        return rc;
    }
    *out = v;
    *out_n = n;
    return ATR_OK;
}

/* ---- file system -------------------------------------------------------------------------- */

static atr_status check_stat(const char *path, const struct stat *st, struct atr_err *err)
{
    if (!S_ISREG(st->st_mode))
        return atr_err_set(err, ATR_E_CONFIG, "SRK file %s is %s, not a regular file", path,
                           S_ISDIR(st->st_mode) ? "a directory" : "a special file");
    if (st->st_uid != geteuid())
        return atr_err_set(err, ATR_E_CONFIG,
                           "SRK file %s is owned by uid %u, not by the service's uid %u; run "
                           "chown %u %s",
                           path, (unsigned)st->st_uid, (unsigned)geteuid(), (unsigned)geteuid(),
                           path);
    unsigned mode = (unsigned)(st->st_mode & 07777);
    if ((mode & 077) != 0)
        return atr_err_set(err, ATR_E_CONFIG,
                           "SRK file %s is %s by group or others (mode %04o); run chmod 600 %s",
                           path, (mode & 044) != 0 ? "readable" : "accessible", mode, path);
    return ATR_OK;
}

static atr_status open_error(const char *path, int e, struct atr_err *err)
{
    if (e == ENOENT)
        return atr_err_set(err, ATR_E_NOT_FOUND, "SRK file %s does not exist", path);
    if (e == ELOOP)
        return atr_err_set(err, ATR_E_CONFIG,
                           "SRK file %s is a symbolic link; refusing to follow it (configure "
                           "the real path)",
                           path);
    if (e == EACCES || e == EPERM)
        return atr_err_set(err, ATR_E_CONFIG, "SRK file %s cannot be opened: %s", path,
                           strerror(e));
    return atr_err_set(err, ATR_E_IO, "SRK file %s cannot be opened: %s", path, strerror(e));
}

static atr_status read_exact(int fd, uint8_t *p, size_t n, const char *path, struct atr_err *err)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, p + off, n - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return atr_err_set(err, ATR_E_IO, "SRK file %s cannot be read: %s", path,
                               strerror(errno));
        if (r == 0)
            return atr_err_set(err, ATR_E_PARSE, "SRK file %s: truncated while reading", path);
        off += (size_t)r;
    }
    return ATR_OK;
}

/* Opens, checks and parses the file into @p f (whose versions must be empty). */
static atr_status load(struct atr_srk_file *f, struct atr_err *err)
{
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused by check_stat() */
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return open_error(f->path, errno, err);
    atr_status rc = ATR_OK;
    struct atr_secret buf = ATR_SECRET_INIT;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = atr_err_set(err, ATR_E_IO, "SRK file %s cannot be examined: %s", f->path,
                         strerror(errno));
        goto done;
    }
    if ((rc = check_stat(f->path, &st, err)) != ATR_OK)
        goto done;
    if (st.st_size < FILE_HEADER_LEN) {
        rc = atr_err_set(err, ATR_E_PARSE, "SRK file %s is truncated (%lld bytes)", f->path,
                         (long long)st.st_size);
        goto done;
    }
    if ((uint64_t)st.st_size > ATR_SRK_FILE_LEN(ATR_SRK_MAX_VERSIONS)) {
        rc = atr_err_set(err, ATR_E_PARSE, "SRK file %s is too large (%lld bytes)", f->path,
                         (long long)st.st_size);
        goto done;
    }
    size_t len = (size_t)st.st_size;
    if (atr_secret_init(&buf, len) != ATR_OK) {
        rc = atr_err_set(err, ATR_E_NOMEM, "SRK file: no secure memory to read %s", f->path);
        goto done;
    }
    if ((rc = read_exact(fd, atr_secret_data(&buf), len, f->path, err)) != ATR_OK)
        goto done;
    rc = parse(&f->versions, &f->count, f->path, atr_secret_cdata(&buf), len, err);
done:
    atr_secret_cleanup(&buf); /* wipes the key bytes read from the file */
    close(fd);
    return rc;
}

static atr_status fsync_dir(const char *path, struct atr_err *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
    } else if (slash == path) {
        memcpy(dir, "/", 2);
    } else {
        size_t n = (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "SRK file: cannot open directory %s: %s", dir,
                           strerror(errno));
    atr_status rc = ATR_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = atr_err_set(err, ATR_E_IO, "SRK file: cannot sync directory %s: %s", dir,
                         strerror(errno));
    close(fd);
    return rc;
}

/*
 * Writes @p data to a new temporary file beside the SRK file, created with
 * O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600, and syncs it. Its name is left in
 * @p tmp (PATH_MAX bytes); on failure nothing is left behind.
 */
static atr_status write_temp(char *tmp, const char *path, const uint8_t *data, size_t len,
                             struct atr_err *err)
{
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint8_t r[8];
        ATR_TRY(atr_rand_bytes(r, sizeof(r), err));
        int n = snprintf(tmp, PATH_MAX, "%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, r[0], r[1],
                         r[2], r[3], r[4], r[5], r[6], r[7]);
        if (n < 0 || n >= PATH_MAX)
            return atr_err_set(err, ATR_E_INVALID, "SRK file: path too long: %s", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return atr_err_set(err, ATR_E_IO, "SRK file: cannot create %s: %s", tmp,
                               strerror(errno));
    }
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "SRK file: cannot create a temporary file beside %s",
                           path);
    atr_status rc = ATR_OK;
    /* the umask may have removed bits we need; never more than 0600 */
    if (fchmod(fd, 0600) != 0) {
        rc = atr_err_set(err, ATR_E_IO, "SRK file: cannot set mode 0600 on %s: %s", tmp,
                         strerror(errno));
        goto done;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = atr_err_set(err, ATR_E_IO, "SRK file: cannot write %s: %s", tmp,
                             w < 0 ? strerror(errno) : "no progress");
            goto done;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        rc = atr_err_set(err, ATR_E_IO, "SRK file: cannot sync %s: %s", tmp, strerror(errno));
done:
    if (close(fd) != 0 && rc == ATR_OK)
        rc = atr_err_set(err, ATR_E_IO, "SRK file: cannot close %s: %s", tmp, strerror(errno));
    if (rc != ATR_OK)
        unlink(tmp);
    return rc;
}

/*
 * Creates the file with one fresh version. @p out_won is 0 when another
 * process created it first (its file is then kept).
 */
static atr_status create_file(int *out_won, struct atr_srk_file *f, struct atr_err *err)
{
    *out_won = 0;
    struct srk_version v = {1, atr_clock_now_s(f->clock), ATR_SECRET_INIT, NULL};
    struct atr_secret data = ATR_SECRET_INIT;
    char tmp[PATH_MAX];
    atr_status rc = atr_rand_secret(&v.key, ATR_SRK_KEY_LEN, err);
    if (rc != ATR_OK) {
        rc = atr_err_wrap(err, rc, "SRK file: cannot generate a key");
        goto done;
    }
    if ((rc = serialize(&data, &v, 1, err)) != ATR_OK)
        goto done;
    if ((rc = write_temp(tmp, f->path, atr_secret_cdata(&data), atr_secret_len(&data), err)) !=
        ATR_OK)
        goto done;
    /* link() never replaces an existing file: a concurrent creator wins */
    if (link(tmp, f->path) == 0)
        *out_won = 1;
    else if (errno != EEXIST)
        rc = atr_err_set(err, ATR_E_IO, "SRK file %s cannot be created: %s", f->path,
                         strerror(errno));
    unlink(tmp);
    if (rc == ATR_OK)
        rc = fsync_dir(f->path, err);
done:
    atr_secret_cleanup(&data);
    version_cleanup(&v);
    return rc;
}

/* ---- provider operations ------------------------------------------------------------------ */

static struct atr_srk_file *from_provider(struct atr_kms_provider *p)
{
    return (struct atr_srk_file *)(void *)p;
}

static size_t build_aad(uint8_t *aad, const uint8_t *header, const struct atr_kms_context *ctx)
{
    size_t np = strlen(ctx->purpose), nt = strlen(ctx->tenant);
    size_t off = 0;
    memcpy(aad, AAD_LABEL, sizeof(AAD_LABEL) - 1);
    off += sizeof(AAD_LABEL) - 1;
    memcpy(aad + off, header, BLOB_HEADER_LEN);
    off += BLOB_HEADER_LEN;
    aad[off++] = (uint8_t)np;
    memcpy(aad + off, ctx->purpose, np);
    off += np;
    aad[off++] = (uint8_t)nt;
    memcpy(aad + off, ctx->tenant, nt);
    off += nt;
    return off;
}

static atr_status srk_current(struct atr_kms_provider *p, struct atr_kms_keyref *out,
                              struct atr_err *err)
{
    ATR_UNUSED(err);
    struct atr_srk_file *f = from_provider(p);
    pthread_mutex_lock(&f->lock);
    atr_srk_keyref_format(out, f->versions[f->count - 1].version);
    pthread_mutex_unlock(&f->lock);
    return ATR_OK;
}

static atr_status srk_wrap(struct atr_kms_provider *p, struct atr_buf *out_blob,
                           struct atr_kms_keyref *out_ref, const struct atr_secret *secret,
                           const struct atr_kms_context *ctx, struct atr_err *err)
{
    struct atr_srk_file *f = from_provider(p);
    uint8_t header[BLOB_HEADER_LEN];
    uint8_t aad[AAD_MAX];
    struct atr_aead *aead = NULL;
    size_t before = out_blob->len;
    pthread_mutex_lock(&f->lock);
    struct srk_version *v = &f->versions[f->count - 1];
    header[0] = ATR_SRK_BLOB_FORMAT;
    put_be32(header + 1, v->version);
    size_t aad_len = build_aad(aad, header, ctx);
    atr_status rc = version_aead(&aead, v, err);
    if (rc != ATR_OK)
        goto done;
    /* reserve everything first so that nothing is half appended */
    rc = atr_buf_reserve(out_blob, BLOB_HEADER_LEN + ATR_AEAD_OVERHEAD + atr_secret_len(secret));
    if (rc != ATR_OK) {
        rc = atr_err_set(err, rc, "SRK wrap: no room for the wrapped key");
        goto done;
    }
    before = out_blob->len;
    if ((rc = atr_buf_append(out_blob, header, sizeof(header))) != ATR_OK)
        goto done;
    rc = atr_aead_seal(out_blob, aead, atr_span_of(aad, aad_len),
                       atr_span_of(atr_secret_cdata(secret), atr_secret_len(secret)), err);
    if (rc != ATR_OK) {
        if (out_blob->ptr != NULL && out_blob->len > before) {
            atr_wipe(out_blob->ptr + before, out_blob->len - before);
            out_blob->len = before;
        }
        goto done;
    }
    atr_srk_keyref_format(out_ref, v->version);
done:
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static atr_status srk_unwrap(struct atr_kms_provider *p, struct atr_secret *out,
                             const struct atr_kms_keyref *ref, struct atr_span blob,
                             const struct atr_kms_context *ctx, struct atr_err *err)
{
    struct atr_srk_file *f = from_provider(p);
    uint32_t ref_version;
    ATR_TRY(atr_srk_keyref_parse(&ref_version, ref, err));
    if (blob.len < BLOB_HEADER_LEN + 1)
        return atr_err_set(err, ATR_E_PARSE, "SRK unwrap: the wrapped key is truncated");
    if (blob.ptr[0] != ATR_SRK_BLOB_FORMAT)
        return atr_err_set(err, ATR_E_UNSUPPORTED,
                           "SRK unwrap: wrapped-key format %u is not supported",
                           (unsigned)blob.ptr[0]);
    if (blob.len < BLOB_HEADER_LEN + ATR_AEAD_OVERHEAD + 1)
        return atr_err_set(err, ATR_E_PARSE, "SRK unwrap: the wrapped key is truncated");
    if (blob.len > BLOB_HEADER_LEN + ATR_AEAD_OVERHEAD + ATR_KMS_SECRET_MAX)
        return atr_err_set(err, ATR_E_PARSE, "SRK unwrap: the wrapped key is too long");
    uint32_t version = get_be32(blob.ptr + 1);
    if (version != ref_version)
        return atr_err_set(err, ATR_E_PARSE,
                           "SRK unwrap: the key reference srk/%" PRIu32
                           " does not match the wrapped key (version %" PRIu32 ")",
                           ref_version, version);
    uint8_t aad[AAD_MAX];
    size_t aad_len = build_aad(aad, blob.ptr, ctx);
    struct atr_aead *aead = NULL;
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&f->lock);
    struct srk_version *v = find_version(f, version);
    if (v == NULL) {
        rc = atr_err_set(err, ATR_E_NOT_FOUND, "SRK unwrap: version %" PRIu32 " is not in %s",
                         version, f->path);
        goto done;
    }
    if ((rc = version_aead(&aead, v, err)) != ATR_OK)
        goto done;
    rc = atr_aead_open_secret(out, aead, atr_span_of(aad, aad_len),
                              atr_span_of(blob.ptr + BLOB_HEADER_LEN, blob.len - BLOB_HEADER_LEN),
                              err);
    if (rc == ATR_E_AUTH_FAILED)
        (void)atr_err_set(err, rc,
                          "SRK unwrap: the wrapped key does not authenticate (other tenant or "
                          "purpose, or modified)");
done:
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static void srk_destroy(struct atr_kms_provider *p)
{
    struct atr_srk_file *f = from_provider(p);
    versions_free(f->versions, f->count);
    atr_free(f->path);
    pthread_mutex_destroy(&f->lock);
    atr_free(f);
}

static const struct atr_kms_provider_ops srk_ops = {
    sizeof(struct atr_kms_provider_ops), "srk-file", srk_current, srk_wrap, srk_unwrap, srk_destroy,
};

/* ---- public API --------------------------------------------------------------------------- */

atr_status atr_srk_file_open(struct atr_srk_file **out, int *out_created, const char *path,
                             int create_if_missing, const struct atr_clock *clock,
                             struct atr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (out_created != NULL)
        *out_created = 0;
    if (out == NULL || path == NULL)
        return atr_err_set(err, ATR_E_INVALID, "SRK file: missing argument");
    size_t plen = strnlen(path, PATH_MAX);
    if (plen == 0 || plen + 32 >= PATH_MAX)
        return atr_err_set(err, ATR_E_INVALID, "SRK file: the path is empty or too long");
    struct atr_srk_file *f = atr_calloc(1, sizeof(*f));
    if (f == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "SRK file: out of memory");
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        atr_free(f);
        return atr_err_set(err, ATR_E_INTERNAL, "SRK file: cannot create a mutex");
    }
    atr_kms_provider_init(&f->base, &srk_ops);
    f->clock = clock != NULL ? clock : atr_clock_real();
    atr_status rc = ATR_OK;
    f->path = atr_strdup(path);
    if (f->path == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "SRK file: out of memory");
        goto done;
    }
    rc = load(f, err);
    if (rc == ATR_E_NOT_FOUND && create_if_missing) {
        int won = 0;
        if ((rc = create_file(&won, f, err)) != ATR_OK)
            goto done;
        /* read back what was written, or what a concurrent creator wrote */
        if ((rc = load(f, err)) == ATR_OK && won && out_created != NULL)
            *out_created = 1;
    }
done:
    if (rc != ATR_OK) {
        if (out_created != NULL)
            *out_created = 0;
        atr_kms_provider_free(&f->base);
        return rc;
    }
    *out = f;
    return ATR_OK;
}

void atr_srk_file_free(struct atr_srk_file *f)
{
    if (f != NULL)
        atr_kms_provider_free(&f->base);
}

struct atr_kms_provider *atr_srk_file_provider(struct atr_srk_file *f)
{
    return f != NULL ? &f->base : NULL;
}

atr_status atr_srk_file_rotate(struct atr_srk_file *f, uint32_t *out_version, struct atr_err *err)
{
    if (f == NULL)
        return atr_err_set(err, ATR_E_INVALID, "SRK rotate: missing argument");
    struct atr_secret data = ATR_SECRET_INIT;
    struct srk_version *nv = NULL;
    char tmp[PATH_MAX];
    atr_status rc = ATR_OK;
    pthread_mutex_lock(&f->lock);
    uint32_t cur = f->versions[f->count - 1].version;
    if (f->count >= ATR_SRK_MAX_VERSIONS || cur == UINT32_MAX) {
        rc = atr_err_set(err, ATR_E_TOO_LARGE,
                         "SRK rotate: %s already holds the maximum number of versions", f->path);
        goto done;
    }
    struct srk_version *grown = atr_realloc(f->versions, (f->count + 1) * sizeof(*grown));
    if (grown == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "SRK rotate: out of memory");
        goto done;
    }
    f->versions = grown;
    nv = &f->versions[f->count];
    memset(nv, 0, sizeof(*nv));
    nv->version = cur + 1;
    nv->created_s = atr_clock_now_s(f->clock);
    if ((rc = atr_rand_secret(&nv->key, ATR_SRK_KEY_LEN, err)) != ATR_OK) {
        rc = atr_err_wrap(err, rc, "SRK rotate: cannot generate a key");
        goto done;
    }
    if ((rc = serialize(&data, f->versions, f->count + 1, err)) != ATR_OK)
        goto done;
    if ((rc = write_temp(tmp, f->path, atr_secret_cdata(&data), atr_secret_len(&data), err)) !=
        ATR_OK)
        goto done;
    if (rename(tmp, f->path) != 0) {
        rc = atr_err_set(err, ATR_E_IO, "SRK rotate: cannot replace %s: %s", f->path,
                         strerror(errno));
        unlink(tmp);
        goto done;
    }
    /* the new version is used only once the rename is durable */
    if ((rc = fsync_dir(f->path, err)) != ATR_OK)
        goto done;
    f->count++;
    if (out_version != NULL)
        *out_version = nv->version;
done:
    if (rc != ATR_OK && nv != NULL)
        version_cleanup(nv);
    pthread_mutex_unlock(&f->lock);
    atr_secret_cleanup(&data);
    return rc;
}

uint32_t atr_srk_file_current_version(struct atr_srk_file *f)
{
    if (f == NULL)
        return 0;
    pthread_mutex_lock(&f->lock);
    uint32_t v = f->versions[f->count - 1].version;
    pthread_mutex_unlock(&f->lock);
    return v;
}

size_t atr_srk_file_version_count(struct atr_srk_file *f)
{
    if (f == NULL)
        return 0;
    pthread_mutex_lock(&f->lock);
    size_t n = f->count;
    pthread_mutex_unlock(&f->lock);
    return n;
}

atr_status atr_srk_file_version_at(uint32_t *out_version, int64_t *out_created_s,
                                   struct atr_srk_file *f, size_t index)
{
    if (f == NULL)
        return ATR_E_INVALID;
    atr_status rc = ATR_E_NOT_FOUND;
    pthread_mutex_lock(&f->lock);
    if (index < f->count) {
        if (out_version != NULL)
            *out_version = f->versions[index].version;
        if (out_created_s != NULL)
            *out_created_s = f->versions[index].created_s;
        rc = ATR_OK;
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

void atr_srk_keyref_format(struct atr_kms_keyref *out, uint32_t version)
{
    if (out == NULL)
        return;
    memset(out->id, 0, sizeof(out->id));
    snprintf(out->id, sizeof(out->id), KEYREF_PREFIX "%" PRIu32, version);
}

atr_status atr_srk_keyref_parse(uint32_t *out_version, const struct atr_kms_keyref *ref,
                                struct atr_err *err)
{
    if (out_version == NULL || ref == NULL)
        return atr_err_set(err, ATR_E_INVALID, "SRK key reference: missing argument");
    *out_version = 0;
    const size_t plen = sizeof(KEYREF_PREFIX) - 1;
    size_t n = strnlen(ref->id, ATR_KMS_KEYREF_MAX);
    if (n >= ATR_KMS_KEYREF_MAX || n <= plen || n > plen + 10 ||
        memcmp(ref->id, KEYREF_PREFIX, plen) != 0 || ref->id[plen] == '0')
        return atr_err_set(err, ATR_E_PARSE, "SRK key reference: not of the form srk/<version>");
    uint64_t v = 0;
    for (size_t i = plen; i < n; i++) {
        char c = ref->id[i];
        if (c < '0' || c > '9')
            return atr_err_set(err, ATR_E_PARSE,
                               "SRK key reference: not of the form srk/<version>");
        v = v * 10 + (uint64_t)(c - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return atr_err_set(err, ATR_E_PARSE, "SRK key reference: version out of range");
    *out_version = (uint32_t)v;
    return ATR_OK;
}
