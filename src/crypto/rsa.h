/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_RSA_H
#define ATR_CRYPTO_RSA_H

/*
 * RSA keys and RSA encryption on OpenSSL's EVP_PKEY interface: the customer
 * key (CK) layer of the key hierarchy (design section 2), and the keys our
 * own vault holds.
 *
 * struct atr_rsa_key wraps one EVP_PKEY, public or private. Keys are made by
 * generation (2048, 3072 or 4096 bits only), from PEM (PKCS#8 "PRIVATE KEY",
 * SubjectPublicKeyInfo "PUBLIC KEY"), from DER, from raw integer components
 * (crypto/jwk.h builds on this), or as a public-only copy. Every imported key
 * is validated before use: modulus of 1024..16384 bits; public exponent odd
 * and in [65537, 2^256) (SP 800-56B; checked here because OpenSSL's
 * non-FIPS check accepts e = 3); modulus odd, composite and free of small
 * factors (EVP_PKEY_public_check, which uses random Miller-Rabin bases, so a
 * malformed modulus can pass one import and fail the next); and for private
 * keys the full pairwise check (EVP_PKEY_check: p and q prime, n = p*q, d,
 * CRT values). That check costs about 0.25 s for a 4096-bit key and about
 * 4 s for 8192 bits, so load long-lived keys once and keep the object.
 *
 * Encryption: the Azure Key Vault algorithms (atr_rsa_alg) for wrapping and
 * unwrapping key material, and a lower-level encrypt/decrypt taking explicit
 * padding parameters (OAEP digest, a separate MGF1 digest and label, or
 * PKCS#1 v1.5). Unwrapped key material is returned only in a struct
 * atr_secret: decryption happens into secure memory and temporaries are
 * wiped. Every padding failure gives the same error (ATR_E_AUTH_FAILED,
 * same message), so the error does not tell which check failed.
 * RSA1_5 exists only for Azure compatibility; prefer RSA-OAEP-256.
 *
 * Ownership: a key owns its EVP_PKEY; private parts live where OpenSSL keeps
 * them (its secure heap once atr_secmem_init() has run).
 *
 * Thread-safety: a key is immutable after creation and may be used by many
 * threads at once (each operation makes its own EVP_PKEY_CTX). Free it only
 * when no other thread uses it.
 */

#include <stddef.h>

#include <openssl/evp.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"

/* Key sizes accepted by import (generation accepts 2048, 3072, 4096). */
#define ATR_RSA_MIN_BITS 1024
#define ATR_RSA_MAX_BITS 16384

/* Azure Key Vault key-wrap algorithms ("alg" of wrapKey/unwrapKey). */
typedef enum atr_rsa_alg {
    ATR_RSA_OAEP = 1,     /* "RSA-OAEP": OAEP, SHA-1, MGF1-SHA-1 */
    ATR_RSA_OAEP_256 = 2, /* "RSA-OAEP-256": OAEP, SHA-256, MGF1-SHA-256 */
    ATR_RSA1_5 = 3,       /* "RSA1_5": PKCS#1 v1.5 (legacy) */
} atr_rsa_alg;

/* Padding schemes of the lower-level interface. */
typedef enum atr_rsa_pad {
    ATR_RSA_PAD_OAEP = 1,  /* RSAES-OAEP, RFC 8017 section 7.1 */
    ATR_RSA_PAD_PKCS1 = 2, /* RSAES-PKCS1-v1_5, RFC 8017 section 7.2 */
} atr_rsa_pad;

/* Digests for OAEP and MGF1. */
typedef enum atr_rsa_md {
    ATR_RSA_MD_SHA1 = 1,
    ATR_RSA_MD_SHA224 = 2,
    ATR_RSA_MD_SHA256 = 3,
    ATR_RSA_MD_SHA384 = 4,
    ATR_RSA_MD_SHA512 = 5,
} atr_rsa_md;

/* Padding parameters; oaep_md, mgf1_md and label are used only with OAEP. */
struct atr_rsa_padding {
    atr_rsa_pad pad;
    atr_rsa_md oaep_md;    /* hashes the label */
    atr_rsa_md mgf1_md;    /* set separately: OpenSSL defaults it to oaep_md */
    struct atr_span label; /* usually empty */
};

/* Which integer of a key (RFC 8017 section 3). */
typedef enum atr_rsa_part {
    ATR_RSA_PART_N = 1,  /* modulus */
    ATR_RSA_PART_E = 2,  /* public exponent */
    ATR_RSA_PART_D = 3,  /* private exponent */
    ATR_RSA_PART_P = 4,  /* first prime */
    ATR_RSA_PART_Q = 5,  /* second prime */
    ATR_RSA_PART_DP = 6, /* d mod (p-1) */
    ATR_RSA_PART_DQ = 7, /* d mod (q-1) */
    ATR_RSA_PART_QI = 8, /* q^-1 mod p */
} atr_rsa_part;

/*
 * Big-endian unsigned integers of a key (leading zero bytes are allowed).
 * A public key sets n and e and leaves the rest empty; a private key sets
 * all eight (two-prime keys only).
 */
struct atr_rsa_components {
    struct atr_span n, e;
    struct atr_span d, p, q, dp, dq, qi;
};

struct atr_rsa_key;

/* ---- lifecycle ---------------------------------------------------------- */

/**
 * Generates a new key pair with public exponent 65537.
 * @param[out] out  owned by the caller (atr_rsa_key_free()).
 * @param bits      2048, 3072 or 4096.
 * @return ATR_E_INVALID for another size, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_generate(struct atr_rsa_key **out, unsigned bits,
                                               struct atr_err *err);

/** Releases @p key. NULL is allowed. */
void atr_rsa_key_free(struct atr_rsa_key *key);

/**
 * Makes a public-only copy of @p key (which may be public or private).
 * @param[out] out  owned by the caller.
 * @return ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_dup_public(struct atr_rsa_key **out,
                                                 const struct atr_rsa_key *key,
                                                 struct atr_err *err);

/**
 * Builds and validates a key from its integers (see the module comment).
 * @param[out] out  owned by the caller.
 * @return ATR_E_INVALID for a missing or incomplete set of parts, a size
 *         outside ATR_RSA_MIN_BITS..ATR_RSA_MAX_BITS, or parts that do not
 *         form a valid key; ATR_E_NOMEM; ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_from_components(struct atr_rsa_key **out,
                                                      const struct atr_rsa_components *c,
                                                      struct atr_err *err);

/* ---- import and export -------------------------------------------------- */

/**
 * Parses one PEM block: "PRIVATE KEY" (unencrypted PKCS#8) or "PUBLIC KEY"
 * (SubjectPublicKeyInfo), of an RSA key, and validates the key. Only
 * whitespace may surround the block.
 * @param pem  @p len characters (no NUL needed).
 * @param[out] out  owned by the caller.
 * @return ATR_E_PARSE for malformed PEM or DER, ATR_E_UNSUPPORTED for other
 *         PEM types (encrypted keys, PKCS#1 "RSA PRIVATE KEY", certificates)
 *         or non-RSA keys, ATR_E_INVALID for a key that fails validation,
 *         ATR_E_TOO_LARGE above 1 MiB, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_parse_pem(struct atr_rsa_key **out, const char *pem,
                                                size_t len, struct atr_err *err);

/**
 * As atr_rsa_key_parse_pem() for DER: a PKCS#8 PrivateKeyInfo or a
 * SubjectPublicKeyInfo, which must fill @p der exactly.
 * @return as atr_rsa_key_parse_pem().
 */
ATR_MUST_CHECK atr_status atr_rsa_key_parse_der(struct atr_rsa_key **out, struct atr_span der,
                                                struct atr_err *err);

/**
 * Appends the public key as a "PUBLIC KEY" PEM block to @p out.
 * @return ATR_E_TOO_LARGE (buffer cap), ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_format_pem_public(struct atr_buf *out,
                                                        const struct atr_rsa_key *key,
                                                        struct atr_err *err);

/**
 * Writes the private key as an unencrypted PKCS#8 "PRIVATE KEY" PEM block
 * into @p out (an empty secret; the text, without a NUL).
 * @return ATR_E_INVALID for a public key, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_format_pem_private(struct atr_secret *out,
                                                         const struct atr_rsa_key *key,
                                                         struct atr_err *err);

/**
 * Appends the minimal big-endian bytes of one integer of @p key to @p out
 * (no leading zero byte). Private parts copied out of secure memory this
 * way are the caller's to wipe (atr_buf_cleanup() does).
 * @return ATR_E_INVALID for a private part of a public key or an unknown
 *         part, ATR_E_TOO_LARGE, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_key_get_component(struct atr_buf *out,
                                                    const struct atr_rsa_key *key,
                                                    atr_rsa_part part, struct atr_err *err);

/* ---- properties --------------------------------------------------------- */

/** Modulus size in bits. */
unsigned atr_rsa_key_bits(const struct atr_rsa_key *key);

/** Modulus size in bytes: the length of every ciphertext. */
size_t atr_rsa_key_size(const struct atr_rsa_key *key);

/** 1 if @p key holds a private key, else 0. */
int atr_rsa_key_has_private(const struct atr_rsa_key *key);

/**
 * The underlying EVP_PKEY, borrowed until atr_rsa_key_free(@p key); for
 * other OpenSSL operations (signatures, certificates). Do not modify it.
 */
EVP_PKEY *atr_rsa_key_pkey(const struct atr_rsa_key *key);

/* ---- algorithms --------------------------------------------------------- */

/**
 * Maps an Azure algorithm name ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5";
 * exact, case-sensitive) to @p out.
 * @return ATR_E_UNSUPPORTED for any other name, ATR_E_INVALID for NULL.
 */
ATR_MUST_CHECK atr_status atr_rsa_alg_from_name(atr_rsa_alg *out, const char *name,
                                                struct atr_err *err);

/** The Azure name of @p alg, or NULL for a value outside the enum. */
const char *atr_rsa_alg_name(atr_rsa_alg alg);

/**
 * The padding parameters of @p alg (empty label).
 * @return ATR_E_INVALID for a value outside the enum.
 */
ATR_MUST_CHECK atr_status atr_rsa_alg_padding(struct atr_rsa_padding *out, atr_rsa_alg alg);

/* ---- encryption --------------------------------------------------------- */

/**
 * Encrypts @p in with the public part of @p key and appends the ciphertext
 * (atr_rsa_key_size() bytes) to @p out.
 * @return ATR_E_INVALID for bad padding parameters or an input too long for
 *         the key and padding, ATR_E_TOO_LARGE (buffer cap), ATR_E_NOMEM,
 *         ATR_E_CRYPTO. On failure nothing is appended.
 */
ATR_MUST_CHECK atr_status atr_rsa_encrypt(struct atr_buf *out, const struct atr_rsa_key *key,
                                          const struct atr_rsa_padding *pad, struct atr_span in,
                                          struct atr_err *err);

/**
 * Decrypts @p ct with the private key and appends the message to @p out
 * (it passes through secure memory; @p out itself is ordinary memory).
 * For key material use atr_rsa_unwrap(). PKCS#1 v1.5 decryption reports
 * padding errors (OpenSSL's implicit rejection is switched off where it
 * exists, OpenSSL 3.2+).
 * @return ATR_E_AUTH_FAILED for any padding or decryption failure (one
 *         message for all), ATR_E_INVALID for a public key, bad padding
 *         parameters or a ciphertext whose length is not the modulus size,
 *         ATR_E_TOO_LARGE, ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_decrypt(struct atr_buf *out, const struct atr_rsa_key *key,
                                          const struct atr_rsa_padding *pad, struct atr_span ct,
                                          struct atr_err *err);

/**
 * Wraps key material @p plain (not empty) under @p key with @p alg, as Azure
 * Key Vault's wrapKey does, and appends the result to @p out.
 * @return as atr_rsa_encrypt(); ATR_E_INVALID also for an empty input or an
 *         unknown @p alg.
 */
ATR_MUST_CHECK atr_status atr_rsa_wrap(struct atr_buf *out, const struct atr_rsa_key *key,
                                       atr_rsa_alg alg, struct atr_span plain, struct atr_err *err);

/**
 * Unwraps key material into @p out (an empty secret), as Azure Key Vault's
 * unwrapKey does.
 * @param[out] out  owned by the caller on ATR_OK; still empty on failure.
 * @return ATR_E_AUTH_FAILED (any padding failure, or an empty result),
 *         ATR_E_INVALID (public key, unknown @p alg, wrong ciphertext length),
 *         ATR_E_NOMEM, ATR_E_CRYPTO.
 */
ATR_MUST_CHECK atr_status atr_rsa_unwrap(struct atr_secret *out, const struct atr_rsa_key *key,
                                         atr_rsa_alg alg, struct atr_span wrapped,
                                         struct atr_err *err);

#endif /* ATR_CRYPTO_RSA_H */
