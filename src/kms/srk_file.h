/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_KMS_SRK_FILE_H
#define ATR_KMS_SRK_FILE_H

/*
 * The service root key (SRK, design section 2) kept in a local key file, and
 * the key provider (kms/provider.h) that wraps tenant keys under it.
 *
 * The SRK is AES-256 and versioned: the file holds versions 1..N (each a
 * version number, a creation time and 32 random bytes); the highest is the
 * current one, used for every new wrap. Older versions stay in the file so
 * that tenant keys wrapped under them still unwrap until they are re-wrapped
 * (docs/keys.md, "Rotating the SRK").
 *
 * File format 1 (binary, integers big-endian; docs/keys.md has the same):
 *
 *   offset     size  field
 *   0          4     magic "ASRK"
 *   4          1     format version, 1
 *   5          1     reserved, 0
 *   6          2     N, the number of key versions, 1..ATR_SRK_MAX_VERSIONS
 *   8          44*N  N entries in strictly ascending version order:
 *                      4  version (>= 1)
 *                      8  creation time, seconds since the Unix epoch (signed)
 *                     32  the AES-256 key
 *   8+44*N     32    checksum: HMAC-SHA256 of bytes [0, 8+44*N) under the
 *                    public key "atrest-srk-file-v1" (detects torn or damaged
 *                    files; it is no defence against whoever can write it)
 *
 * The file must be a regular file owned by the effective user with no group
 * or other permission bits (0600 or 0400); anything else is refused with
 * ATR_E_CONFIG and a message naming the path and the fix (design section 6).
 * It is opened with O_NOFOLLOW (a symbolic link is refused) and checked with
 * fstat() on the open descriptor, so the checked file is the one read. It is
 * read straight into secure memory and that buffer is wiped after parsing;
 * each version's key then lives in its own struct atr_secret. Key bytes never
 * appear in messages.
 *
 * Creation (first start) writes a complete file to a temporary name made
 * with open(O_CREAT|O_EXCL|O_NOFOLLOW, 0600), fsyncs it, links it to the
 * final name (link() fails if another process created the file meanwhile,
 * whose file is then used) and fsyncs the directory. Rotation writes the
 * whole new file to a temporary name the same way and rename()s it over the
 * old one, then fsyncs the directory: a crash leaves the old or the new file,
 * never a torn one. The new version is used only once the rename is durable.
 * One process owns the file: two processes rotating it at once may lose one
 * rotation (the loser's new version is unused, so nothing is lost).
 *
 * Wrapping: AES-256-GCM (crypto/aead.h) with a random 96-bit nonce under the
 * current version. The AAD binds a fixed label, the blob header (format and
 * SRK version) and the context (purpose and tenant id, length-prefixed), so
 * a blob only unwraps for the same tenant, purpose and version. Wrapped blob
 * format 1:
 *
 *   offset  size  field
 *   0       1     format version, 1
 *   1       4     SRK version (big-endian)
 *   5       12    GCM nonce
 *   17      n     ciphertext (n = secret length, 1..ATR_KMS_SECRET_MAX)
 *   17+n    16    GCM tag
 *
 *   AAD = "atrest-srk-wrap-v1" || bytes 0..4 of the blob
 *         || len(purpose) (1 byte) || purpose || len(tenant) (1 byte) || tenant
 *
 * A 32-byte tenant key wraps to 65 bytes. The key reference of version v is
 * the text "srk/v" ("srk/3"). Random nonces are safe for 2^32 wraps per
 * version; a version wraps once per tenant and re-wrap.
 *
 * Thread-safety: an SRK file object may be used from any number of threads;
 * one mutex serialises wraps, unwraps and rotation (rotation holds it while
 * it writes and syncs the file, so it briefly blocks wraps and unwraps).
 */

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/error.h"
#include "kms/provider.h"

#define ATR_SRK_KEY_LEN       32
#define ATR_SRK_MAX_VERSIONS  1024
#define ATR_SRK_FILE_FORMAT   1
#define ATR_SRK_BLOB_FORMAT   1
#define ATR_SRK_BLOB_OVERHEAD (5 + 12 + 16)
/* Length of the file holding @p n versions. */
#define ATR_SRK_FILE_LEN(n) (8 + 44 * (size_t)(n) + 32)

struct atr_srk_file;

/**
 * Opens the SRK file at @p path, creating it with one fresh version when it
 * does not exist and @p create_if_missing is non-zero.
 * @param[out] out          owned by the caller; release with
 *                          atr_srk_file_free().
 * @param[out] out_created  optional: set to 1 if this call created the file.
 * @param clock             creation times of new versions; NULL means the
 *                          real clock. Borrowed: must outlive the object.
 * @return ATR_E_NOT_FOUND when the file is missing and may not be created;
 *         ATR_E_CONFIG when it is a symbolic link, not a regular file, owned
 *         by another user, has group/other permission bits, or cannot be
 *         opened for lack of permission; ATR_E_PARSE for a truncated,
 *         oversized or damaged file (bad magic, checksum, version order);
 *         ATR_E_UNSUPPORTED for another format version; ATR_E_IO for other
 *         system errors (message names the path and the cause); ATR_E_NOMEM;
 *         ATR_E_CRYPTO when no key can be generated; ATR_E_INVALID for a NULL
 *         argument or a path longer than PATH_MAX.
 */
ATR_MUST_CHECK atr_status atr_srk_file_open(struct atr_srk_file **out, int *out_created,
                                            const char *path, int create_if_missing,
                                            const struct atr_clock *clock, struct atr_err *err);

/**
 * Drops the creator's reference (the same as atr_kms_provider_free() on
 * atr_srk_file_provider()); with the last reference every key is wiped and
 * the object freed. NULL is allowed.
 */
void atr_srk_file_free(struct atr_srk_file *f);

/**
 * The key-provider view of @p f (name "srk-file"). Borrowed: valid while a
 * reference is held; take one with atr_kms_provider_retain() to share it.
 */
struct atr_kms_provider *atr_srk_file_provider(struct atr_srk_file *f);

/**
 * Adds a version (current + 1, fresh random key, created now) and rewrites
 * the file atomically (temporary file, fsync, rename, fsync directory).
 * New wraps use the new version once this returns ATR_OK; on failure the
 * object is unchanged (the file is the old one, or a new one whose extra
 * version was never used).
 * @param[out] out_version  optional: the new current version.
 * @return ATR_E_TOO_LARGE at ATR_SRK_MAX_VERSIONS versions; ATR_E_IO (the
 *         message names the path and the failed step); ATR_E_NOMEM;
 *         ATR_E_CRYPTO; ATR_E_INVALID for NULL @p f.
 */
ATR_MUST_CHECK atr_status atr_srk_file_rotate(struct atr_srk_file *f, uint32_t *out_version,
                                              struct atr_err *err);

/** The current (highest) version; 0 for NULL. */
uint32_t atr_srk_file_current_version(struct atr_srk_file *f);

/** The number of versions in the file; 0 for NULL. */
size_t atr_srk_file_version_count(struct atr_srk_file *f);

/**
 * Version number and creation time (seconds since the epoch) of the
 * @p index-th version, 0 being the oldest. Either output may be NULL.
 * @return ATR_E_NOT_FOUND for an index past the end, ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_srk_file_version_at(uint32_t *out_version, int64_t *out_created_s,
                                                  struct atr_srk_file *f, size_t index);

/** Writes the key reference of SRK version @p version ("srk/3") into @p out. */
void atr_srk_keyref_format(struct atr_kms_keyref *out, uint32_t version);

/**
 * Parses a key reference made by atr_srk_keyref_format(): "srk/" followed by
 * a decimal version 1..4294967295 without leading zeros.
 * @return ATR_E_PARSE for anything else.
 */
ATR_MUST_CHECK atr_status atr_srk_keyref_parse(uint32_t *out_version,
                                               const struct atr_kms_keyref *ref,
                                               struct atr_err *err);

#endif /* ATR_KMS_SRK_FILE_H */
