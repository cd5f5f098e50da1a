/* SPDX-License-Identifier: Apache-2.0 */
#include "crypto/x509.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/clock.h"
#include "base/log.h"
#include "crypto/ossl.h"
#include "crypto/rsa.h"

#define CA_CN_DEFAULT "atrest local CA"
#define ORG_NAME      "atrest"

/*
 * Records a failed OpenSSL call: the reason string goes to the debug log
 * only (style anchors 3.2); atr_ossl_fail() drains the queue so no stale
 * error surfaces later and gives @p err our own text.
 */
static atr_status ossl_fail(struct atr_err *err, atr_status code, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    if (e != 0 && atr_log_enabled(ATR_LOG_DEBUG)) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        atr_log(ATR_LOG_DEBUG, "crypto.openssl", NULL, "%s: %s", what, buf);
    }
    return atr_ossl_fail(err, code, "%s", what);
}

/* PEM password callback that never prompts: encrypted keys are refused. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    ATR_UNUSED(buf);
    ATR_UNUSED(size);
    ATR_UNUSED(rwflag);
    ATR_UNUSED(u);
    return -1;
}

static time_t clock_now(const struct atr_clock *clock)
{
    return (time_t)atr_clock_now_s(clock != NULL ? clock : atr_clock_real());
}

int atr_x509_host_ok(const char *host)
{
    if (host == NULL)
        return 0;
    unsigned char addr[16];
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        return 1;
    size_t n = strlen(host);
    if (n == 0 || n > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = host[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || host[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (label == 0 && c == '-')
            return 0;
        /* a wildcard is only "*" as the whole first label, followed by more */
        if (c == '*') {
            if (i != 0 || host[1] != '.' || n < 3)
                return 0;
            label++;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        label++;
    }
    return 1;
}

/* Writes @p len bytes to @p path atomically (temp file + rename) with @p mode. */
static atr_status write_file(const char *path, const void *data, size_t len, mode_t mode,
                             struct atr_err *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return atr_err_set(err, ATR_E_IO, "path too long: %s", path);
    int fd = mkstemp(tmp); /* created 0600 */
    if (fd < 0)
        return atr_err_set(err, ATR_E_IO, "cannot create a file next to %s: %s", path,
                           strerror(errno));
    atr_status rc = ATR_OK;
    if (fchmod(fd, mode) != 0) {
        rc = atr_err_set(err, ATR_E_IO, "cannot set the mode of %s: %s", path, strerror(errno));
        goto done;
    }
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = atr_err_set(err, ATR_E_IO, "cannot write %s: %s", path, strerror(errno));
            goto done;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = atr_err_set(err, ATR_E_IO, "cannot sync %s: %s", path, strerror(errno));
        goto done;
    }
done:
    if (close(fd) != 0 && rc == ATR_OK)
        rc = atr_err_set(err, ATR_E_IO, "cannot close %s: %s", path, strerror(errno));
    if (rc == ATR_OK && rename(tmp, path) != 0)
        rc = atr_err_set(err, ATR_E_IO, "cannot rename into %s: %s", path, strerror(errno));
    if (rc != ATR_OK)
        unlink(tmp);
    return rc;
}

/* Writes the certificate (0644) and the key (0600, PEM in secure memory). */
static atr_status write_pair(const char *cert_path, const char *key_path, X509 *cert, EVP_PKEY *key,
                             struct atr_err *err)
{
    atr_status rc = ATR_OK;
    BIO *cb = BIO_new(BIO_s_mem());
    BIO *kb = BIO_new(BIO_s_secmem());
    char *data;
    long n;
    if (cb == NULL || kb == NULL) {
        rc = ossl_fail(err, ATR_E_NOMEM, "out of memory writing PEM");
        goto done;
    }
    if (PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(cb, cert) != 1) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot encode the certificate or key as PEM");
        goto done;
    }
    n = BIO_get_mem_data(kb, &data);
    if (n <= 0) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot encode the key as PEM");
        goto done;
    }
    if ((rc = write_file(key_path, data, (size_t)n, 0600, err)) != ATR_OK)
        goto done;
    n = BIO_get_mem_data(cb, &data);
    if (n <= 0) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot encode the certificate as PEM");
        goto done;
    }
    rc = write_file(cert_path, data, (size_t)n, 0644, err);
done:
    BIO_free(cb);
    BIO_free(kb); /* secure-memory BIO: cleared on free */
    return rc;
}

static atr_status days_of(unsigned *out, const struct atr_x509_opts *opts, unsigned dflt,
                          struct atr_err *err)
{
    unsigned d = opts != NULL && opts->days != 0 ? opts->days : dflt;
    if (d > ATR_X509_DAYS_MAX)
        return atr_err_set(err, ATR_E_INVALID, "validity must be 1 to %d days", ATR_X509_DAYS_MAX);
    *out = d;
    return ATR_OK;
}

/* Version 3, random serial, validity from an hour ago to @p days from now. */
static atr_status cert_base(X509 *x, time_t now, unsigned days, struct atr_err *err)
{
    atr_status rc = ATR_OK;
    BIGNUM *bn = BN_new();
    if (bn == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot set the certificate serial number");
        goto done;
    }
    time_t t = now;
    if (X509_time_adj_ex(X509_getm_notBefore(x), 0, -3600, &t) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &t) == NULL) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot set the certificate validity");
        goto done;
    }
done:
    BN_free(bn);
    return rc;
}

static atr_status set_name(X509_NAME *name, const char *cn, struct atr_err *err)
{
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)ORG_NAME, -1,
                                   -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1)
        return ossl_fail(err, ATR_E_INVALID, "cannot set the certificate subject name");
    return ATR_OK;
}

static atr_status add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, struct atr_err *err)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return ossl_fail(err, ATR_E_CRYPTO, "cannot build a certificate extension");
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return ossl_fail(err, ATR_E_CRYPTO, "cannot add a certificate extension");
    return ATR_OK;
}

static EVP_PKEY *new_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

atr_status atr_x509_ca_create(const char *cert_path, const char *key_path,
                              const struct atr_x509_opts *opts, struct atr_err *err)
{
    ATR_ASSERT_ARG(cert_path != NULL && key_path != NULL);
    atr_status rc = ATR_OK;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    unsigned days;
    if ((rc = days_of(&days, opts, ATR_X509_CA_DAYS_DEFAULT, err)) != ATR_OK)
        goto done;
    const char *cn = opts != NULL && opts->common_name != NULL ? opts->common_name : CA_CN_DEFAULT;
    key = new_key();
    x = X509_new();
    if (key == NULL || x == NULL) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot generate the CA key");
        goto done;
    }
    if ((rc = cert_base(x, clock_now(opts != NULL ? opts->clock : NULL), days, err)) != ATR_OK ||
        (rc = set_name(X509_get_subject_name(x), cn, err)) != ATR_OK)
        goto done;
    if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 || X509_set_pubkey(x, key) != 1) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot set the CA issuer or public key");
        goto done;
    }
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if ((rc = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err)) !=
            ATR_OK ||
        (rc = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign", err)) != ATR_OK ||
        (rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash", err)) != ATR_OK)
        goto done;
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot sign the CA certificate");
        goto done;
    }
    rc = write_pair(cert_path, key_path, x, key, err);
done:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static atr_status load_cert(X509 **out, const char *path, struct atr_err *err)
{
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        ERR_clear_error();
        return atr_err_set(err, ATR_E_IO, "cannot read %s: %s", path, strerror(errno));
    }
    *out = PEM_read_bio_X509(b, NULL, no_password, NULL);
    BIO_free(b);
    if (*out == NULL)
        return ossl_fail(err, ATR_E_PARSE, "not a PEM certificate");
    return ATR_OK;
}

static atr_status load_key(EVP_PKEY **out, const char *path, struct atr_err *err)
{
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        ERR_clear_error();
        return atr_err_set(err, ATR_E_IO, "cannot read %s: %s", path, strerror(errno));
    }
    *out = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
    BIO_free(b);
    if (*out == NULL)
        return ossl_fail(err, ATR_E_PARSE, "not an unencrypted PEM private key");
    return ATR_OK;
}

static atr_status check_ca(X509 *ca, EVP_PKEY *ca_key, time_t now, struct atr_err *err)
{
    if (X509_check_ca(ca) == 0 || (X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) == 0) {
        ERR_clear_error();
        return atr_err_set(err, ATR_E_INVALID, "the CA certificate is not a signing CA");
    }
    time_t t = now;
    if (X509_cmp_time(X509_get0_notAfter(ca), &t) <= 0) {
        ERR_clear_error();
        return atr_err_set(err, ATR_E_INVALID,
                           "the CA certificate has expired; remove it to make a new CA");
    }
    if (X509_check_private_key(ca, ca_key) != 1)
        return ossl_fail(err, ATR_E_INVALID, "the CA key does not match the CA certificate");
    return ATR_OK;
}

atr_status atr_x509_ca_check(const char *cert_path, const char *key_path,
                             const struct atr_clock *clock, struct atr_err *err)
{
    ATR_ASSERT_ARG(cert_path != NULL && key_path != NULL);
    atr_status rc;
    X509 *ca = NULL;
    EVP_PKEY *key = NULL;
    if ((rc = load_cert(&ca, cert_path, err)) != ATR_OK ||
        (rc = load_key(&key, key_path, err)) != ATR_OK)
        goto done;
    rc = check_ca(ca, key, clock_now(clock), err);
done:
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

/* Builds the subjectAltName list: IP: for address literals, DNS: otherwise. */
static atr_status add_san(X509 *x, const char *const *hosts, size_t nhosts, struct atr_err *err)
{
    atr_status rc = ATR_OK;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL) {
        rc = ossl_fail(err, ATR_E_NOMEM, "out of memory building subjectAltName");
        goto done;
    }
    for (size_t i = 0; i < nhosts; i++) {
        GENERAL_NAME *gen = GENERAL_NAME_new();
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(hosts[i]);
        ERR_clear_error(); /* a2i_IPADDRESS queues an error for DNS names */
        int ok;
        if (gen == NULL) {
            ok = 0;
        } else if (ip != NULL) {
            GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
            ip = NULL;
            ok = 1;
        } else {
            ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
            ok = dns != NULL && ASN1_STRING_set(dns, hosts[i], -1) == 1;
            if (ok)
                GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
            else
                ASN1_IA5STRING_free(dns);
        }
        ASN1_OCTET_STRING_free(ip);
        if (!ok || sk_GENERAL_NAME_push(gens, gen) <= 0) {
            GENERAL_NAME_free(gen);
            rc = ossl_fail(err, ATR_E_NOMEM, "out of memory building subjectAltName");
            goto done;
        }
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot add subjectAltName");
        goto done;
    }
done:
    GENERAL_NAMES_free(gens);
    return rc;
}

atr_status atr_x509_server_create(const char *cert_path, const char *key_path,
                                  const char *ca_cert_path, const char *ca_key_path,
                                  const char *const *hosts, size_t nhosts,
                                  const struct atr_x509_opts *opts, struct atr_err *err)
{
    ATR_ASSERT_ARG(cert_path != NULL && key_path != NULL);
    ATR_ASSERT_ARG(ca_cert_path != NULL && ca_key_path != NULL);
    atr_status rc = ATR_OK;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    unsigned days;
    if ((rc = days_of(&days, opts, ATR_X509_SERVER_DAYS_DEFAULT, err)) != ATR_OK)
        goto done;
    if (hosts == NULL || nhosts == 0 || nhosts > ATR_X509_MAX_HOSTS) {
        rc = atr_err_set(err, ATR_E_INVALID, "a server certificate needs 1 to %d hosts",
                         ATR_X509_MAX_HOSTS);
        goto done;
    }
    for (size_t i = 0; i < nhosts; i++) {
        if (!atr_x509_host_ok(hosts[i])) {
            rc = atr_err_set(err, ATR_E_INVALID,
                             "host '%.64s' is neither a DNS name nor an IP address",
                             hosts[i] != NULL ? hosts[i] : "");
            goto done;
        }
    }
    time_t now = clock_now(opts != NULL ? opts->clock : NULL);
    if ((rc = load_cert(&ca, ca_cert_path, err)) != ATR_OK ||
        (rc = load_key(&ca_key, ca_key_path, err)) != ATR_OK ||
        (rc = check_ca(ca, ca_key, now, err)) != ATR_OK)
        goto done;
    key = new_key();
    x = X509_new();
    if (key == NULL || x == NULL) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot generate the server key");
        goto done;
    }
    if ((rc = cert_base(x, now, days, err)) != ATR_OK ||
        (rc = set_name(X509_get_subject_name(x), hosts[0], err)) != ATR_OK)
        goto done;
    /* never outlive the CA */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0 &&
        X509_set1_notAfter(x, X509_get0_notAfter(ca)) != 1) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot set the certificate validity");
        goto done;
    }
    if (X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 || X509_set_pubkey(x, key) != 1) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot set the issuer or public key");
        goto done;
    }
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
    if ((rc = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE", err)) != ATR_OK ||
        (rc = add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature", err)) != ATR_OK ||
        (rc = add_ext(x, &ctx, NID_ext_key_usage, "serverAuth", err)) != ATR_OK ||
        (rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash", err)) != ATR_OK ||
        (rc = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", err)) != ATR_OK ||
        (rc = add_san(x, hosts, nhosts, err)) != ATR_OK)
        goto done;
    if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        rc = ossl_fail(err, ATR_E_CRYPTO, "cannot sign the server certificate");
        goto done;
    }
    rc = write_pair(cert_path, key_path, x, key, err);
done:
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}

atr_status atr_x509_check_pem_pair(struct atr_span cert_pem, struct atr_span key_pem,
                                   struct atr_err *err)
{
    atr_status rc = ATR_OK;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    BIO *cb = NULL;
    BIO *kb = NULL;
    if (cert_pem.len == 0 || cert_pem.len > INT_MAX || key_pem.len == 0 || key_pem.len > INT_MAX) {
        rc = atr_err_set(err, ATR_E_PARSE, "empty or oversized PEM input");
        goto done;
    }
    cb = BIO_new_mem_buf(cert_pem.ptr, (int)cert_pem.len);
    kb = BIO_new_mem_buf(key_pem.ptr, (int)key_pem.len);
    if (cb == NULL || kb == NULL) {
        rc = ossl_fail(err, ATR_E_NOMEM, "out of memory reading PEM");
        goto done;
    }
    x = PEM_read_bio_X509(cb, NULL, no_password, NULL);
    if (x == NULL) {
        rc = ossl_fail(err, ATR_E_PARSE, "the certificate is not PEM");
        goto done;
    }
    key = PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL);
    if (key == NULL) {
        rc = ossl_fail(err, ATR_E_PARSE, "the key is not an unencrypted PEM private key");
        goto done;
    }
    if (X509_check_private_key(x, key) != 1) {
        rc = ossl_fail(err, ATR_E_INVALID, "the private key does not match the certificate");
        goto done;
    }
done:
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

atr_status atr_x509_cert_rsa_key(struct atr_rsa_key **out, char x5t[ATR_X509_X5T_LEN + 1],
                                 const char *pem, size_t len, struct atr_err *err)
{
    *out = NULL;
    x5t[0] = '\0';
    if (len > INT32_MAX)
        return atr_err_set(err, ATR_E_TOO_LARGE, "certificate too large");
    atr_status rc = ATR_OK;
    X509 *cert = NULL;
    unsigned char *der = NULL;
    struct atr_buf b64;
    atr_buf_init(&b64, 64);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        rc = atr_ossl_fail(err, ATR_E_NOMEM, "certificate: out of memory");
        goto done;
    }
    cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (cert == NULL) {
        rc = atr_ossl_fail(err, ATR_E_PARSE, "no PEM certificate found");
        goto done;
    }
    unsigned char sha1[EVP_MAX_MD_SIZE];
    unsigned int sha1_len = 0;
    if (X509_digest(cert, EVP_sha1(), sha1, &sha1_len) != 1 || sha1_len != 20) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "certificate: cannot compute the thumbprint");
        goto done;
    }
    if ((rc = atr_b64url_encode(&b64, atr_span_of(sha1, sha1_len))) != ATR_OK ||
        b64.len != ATR_X509_X5T_LEN) {
        rc = atr_err_set(err, rc != ATR_OK ? rc : ATR_E_INTERNAL, "certificate: thumbprint");
        goto done;
    }
    memcpy(x5t, b64.ptr, ATR_X509_X5T_LEN);
    x5t[ATR_X509_X5T_LEN] = '\0';
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    if (pub == NULL || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
        rc = atr_err_set(err, ATR_E_INVALID, "the certificate does not hold an RSA key");
        goto done;
    }
    int n = i2d_PUBKEY(pub, &der);
    if (n <= 0) {
        rc = atr_ossl_fail(err, ATR_E_CRYPTO, "certificate: cannot encode the public key");
        goto done;
    }
    rc = atr_rsa_key_parse_der(out, atr_span_of(der, (size_t)n), err);
done:
    if (rc != ATR_OK)
        x5t[0] = '\0';
    OPENSSL_free(der);
    atr_buf_cleanup(&b64);
    X509_free(cert);
    BIO_free(bio);
    return rc;
}
