/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_CRYPTO_X509_H
#define ATR_CRYPTO_X509_H

/*
 * Local X.509 certificates for TLS on every listener (design section 6):
 * a local certificate authority and server certificates signed by it, made
 * with OpenSSL's X509 API. `atrest cert` and `atrest dev` use it, and the
 * HTTPS tests make their certificates with it at run time.
 *
 * Keys are ECDSA P-256 and certificates are signed with SHA-256:
 *  - CA: basicConstraints critical CA:TRUE, pathlen:0; keyUsage critical
 *    keyCertSign, cRLSign; subject key identifier;
 *  - server: basicConstraints critical CA:FALSE; keyUsage critical
 *    digitalSignature; extendedKeyUsage serverAuth; subjectAltName with a
 *    DNS: entry per host name and an IP: entry per IPv4/IPv6 literal;
 *    subject and authority key identifiers; subject CN = the first host.
 * Serial numbers are 127 random bits. notBefore is one hour before now (for
 * clock skew); a server certificate never outlives its CA.
 *
 * Files are written to a temporary file in the same directory and renamed
 * into place, so a reader never sees half a file; private keys are created
 * with mode 0600 (certificates 0644). Existing files are replaced.
 *
 * Error messages never include OpenSSL reason strings (those go to the
 * debug log) nor key material.
 *
 * Thread-safety: reentrant.
 */

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

struct atr_clock;

/* Validity defaults and bounds, in days. */
#define ATR_X509_CA_DAYS_DEFAULT     3650
#define ATR_X509_SERVER_DAYS_DEFAULT 365
#define ATR_X509_DAYS_MAX            7300
/* Most host names/addresses in one server certificate. */
#define ATR_X509_MAX_HOSTS 32

struct atr_x509_opts {
    unsigned days;                 /* validity; 0 = the default for the kind */
    const char *common_name;       /* CA subject CN; NULL = "atrest local CA" */
    const struct atr_clock *clock; /* NULL = the real clock */
};

/**
 * Creates a CA key and self-signed CA certificate and writes them as PEM to
 * @p cert_path and @p key_path (0600). @p opts may be NULL.
 * @return ATR_E_INVALID (days out of range), ATR_E_IO (cannot write),
 *         ATR_E_CRYPTO, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_x509_ca_create(const char *cert_path, const char *key_path,
                                             const struct atr_x509_opts *opts, struct atr_err *err);

/**
 * Checks that @p cert_path and @p key_path hold a usable CA: a certificate
 * with CA:TRUE and keyCertSign, not expired, and its matching private key.
 * @return ATR_E_IO (unreadable), ATR_E_PARSE (not PEM), ATR_E_INVALID (not
 *         a CA, expired, key does not match).
 */
ATR_MUST_CHECK atr_status atr_x509_ca_check(const char *cert_path, const char *key_path,
                                            const struct atr_clock *clock, struct atr_err *err);

/**
 * Creates a server key and a certificate for @p hosts (DNS names such as
 * "localhost" or "*.example.test", and IPv4/IPv6 literals) signed by the CA
 * in @p ca_cert_path / @p ca_key_path, and writes them as PEM to
 * @p cert_path and @p key_path (0600). @p opts may be NULL.
 * @return ATR_E_INVALID (no hosts, too many, a host that is neither a DNS
 *         name nor an IP address, days out of range), ATR_E_IO, ATR_E_PARSE
 *         and errors of atr_x509_ca_check() for the CA, ATR_E_CRYPTO,
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_x509_server_create(const char *cert_path, const char *key_path,
                                                 const char *ca_cert_path, const char *ca_key_path,
                                                 const char *const *hosts, size_t nhosts,
                                                 const struct atr_x509_opts *opts,
                                                 struct atr_err *err);

/**
 * Checks PEM text in memory: @p cert_pem holds at least one certificate and
 * @p key_pem a private key matching the first certificate.
 * @return ATR_E_PARSE (not PEM), ATR_E_INVALID (key does not match).
 */
ATR_MUST_CHECK atr_status atr_x509_check_pem_pair(struct atr_span cert_pem, struct atr_span key_pem,
                                                  struct atr_err *err);

struct atr_rsa_key;

/* Length of an x5t value: base64url of a SHA-1 digest, without padding. */
#define ATR_X509_X5T_LEN 27

/**
 * Reads the first certificate of @p pem (@p len bytes) and gives its RSA
 * public key and its JOSE "x5t" thumbprint (base64url SHA-1 of the DER, the
 * value MSAL puts in a client assertion's header).
 * @param[out] out the public key, owned by the caller (atr_rsa_key_free).
 * @param[out] x5t NUL-terminated thumbprint (ATR_X509_X5T_LEN characters).
 * @return ATR_E_PARSE (no certificate), ATR_E_INVALID (not an RSA key),
 *         ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_x509_cert_rsa_key(struct atr_rsa_key **out,
                                                char x5t[ATR_X509_X5T_LEN + 1], const char *pem,
                                                size_t len, struct atr_err *err);

/** 1 if @p host is acceptable in a certificate (DNS name or IP literal). */
int atr_x509_host_ok(const char *host);

#endif /* ATR_CRYPTO_X509_H */
