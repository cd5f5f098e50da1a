/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crypto core benchmark (design section 8): our API against a bare OpenSSL
 * EVP loop on the same buffers, in the same run.
 *
 *  - AES-256-GCM seal and open of 1 KiB, 16 KiB and 64 KiB messages with a
 *    32-byte AAD: atr_aead_seal_detached()/atr_aead_open_detached() against
 *    an EVP_CIPHER_CTX whose key is set once and whose nonce is set per
 *    message (the fastest correct EVP usage);
 *  - RSA-OAEP-256 unwrap of a 32-byte key with 2048-, 3072- and 4096-bit
 *    keys: atr_rsa_unwrap() against an EVP_PKEY_CTX prepared once and
 *    EVP_PKEY_decrypt() in a loop.
 *
 * Each measurement is repeated in rounds; inside a round the baseline and
 * our API run back to back, alternating which goes first, and the ratio of
 * the two is taken per round. The table shows the medians (throughput and
 * per-round ratio), which keeps frequency changes and noisy neighbours out
 * of the ratio. "--quick" uses tiny iteration counts (ctest smoke run; the
 * numbers then mean nothing).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/secmem.h"
#include "crypto/aead.h"
#include "crypto/rsa.h"

#define MAX_ROUNDS 31

struct config {
    int quick;
    int rounds;
    size_t gcm_bytes_per_run; /* bytes processed per timed run */
    int rsa_ops_per_run[3];   /* per key size */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_crypto: %s\n", what);
    exit(1);
}

/* ---- AES-256-GCM ---------------------------------------------------------------- */

struct gcm_bench {
    size_t len;
    uint8_t *pt, *ct, *out;
    uint8_t *sealed;              /* framed: nonce || ct || tag */
    struct atr_buf fsealed, fout; /* the same for our framed API */
    uint8_t aad[32];
    uint8_t tag[16];
    uint8_t nonce[12];
    EVP_CIPHER_CTX *enc, *dec; /* baseline contexts, key set once */
    struct atr_aead *aead;
};

static void bump_nonce(uint8_t *nonce)
{
    for (int i = 11; i >= 0; i--) {
        if (++nonce[i] != 0)
            break;
    }
}

static void base_seal(struct gcm_bench *b, long iters)
{
    int outl = 0;
    uint8_t fin[16];
    for (long i = 0; i < iters; i++) {
        bump_nonce(b->nonce);
        if (EVP_EncryptInit_ex2(b->enc, NULL, NULL, b->nonce, NULL) != 1 ||
            EVP_EncryptUpdate(b->enc, NULL, &outl, b->aad, (int)sizeof(b->aad)) != 1 ||
            EVP_EncryptUpdate(b->enc, b->ct, &outl, b->pt, (int)b->len) != 1 ||
            EVP_EncryptFinal_ex(b->enc, fin, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(b->enc, EVP_CTRL_AEAD_GET_TAG, 16, b->tag) != 1)
            die("EVP seal failed");
    }
}

static void ours_seal(struct gcm_bench *b, long iters)
{
    struct atr_span aad = atr_span_of(b->aad, sizeof(b->aad));
    struct atr_span pt = atr_span_of(b->pt, b->len);
    for (long i = 0; i < iters; i++) {
        bump_nonce(b->nonce);
        if (atr_aead_seal_detached(b->ct, b->tag, b->aead, b->nonce, aad, pt, NULL) != ATR_OK)
            die("atr_aead_seal_detached failed");
    }
}

static void base_open(struct gcm_bench *b, long iters)
{
    int outl = 0;
    uint8_t fin[16];
    for (long i = 0; i < iters; i++) {
        if (EVP_DecryptInit_ex2(b->dec, NULL, NULL, b->nonce, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(b->dec, EVP_CTRL_AEAD_SET_TAG, 16, b->tag) != 1 ||
            EVP_DecryptUpdate(b->dec, NULL, &outl, b->aad, (int)sizeof(b->aad)) != 1 ||
            EVP_DecryptUpdate(b->dec, b->out, &outl, b->ct, (int)b->len) != 1 ||
            EVP_DecryptFinal_ex(b->dec, fin, &outl) != 1)
            die("EVP open failed");
    }
}

static void ours_open(struct gcm_bench *b, long iters)
{
    struct atr_span aad = atr_span_of(b->aad, sizeof(b->aad));
    struct atr_span ct = atr_span_of(b->ct, b->len);
    for (long i = 0; i < iters; i++) {
        if (atr_aead_open_detached(b->out, b->aead, b->nonce, aad, ct, b->tag, NULL) != ATR_OK)
            die("atr_aead_open_detached failed");
    }
}

/* Framed form, equal work: a random nonce per message, nonce || ct || tag. */
static void base_seal_framed(struct gcm_bench *b, long iters)
{
    int outl = 0;
    uint8_t fin[16];
    for (long i = 0; i < iters; i++) {
        uint8_t *nonce = b->sealed, *ct = b->sealed + 12;
        if (RAND_bytes(nonce, 12) != 1 ||
            EVP_EncryptInit_ex2(b->enc, NULL, NULL, nonce, NULL) != 1 ||
            EVP_EncryptUpdate(b->enc, NULL, &outl, b->aad, (int)sizeof(b->aad)) != 1 ||
            EVP_EncryptUpdate(b->enc, ct, &outl, b->pt, (int)b->len) != 1 ||
            EVP_EncryptFinal_ex(b->enc, fin, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(b->enc, EVP_CTRL_AEAD_GET_TAG, 16, ct + b->len) != 1)
            die("EVP framed seal failed");
    }
}

static void ours_seal_framed(struct gcm_bench *b, long iters)
{
    struct atr_span aad = atr_span_of(b->aad, sizeof(b->aad));
    struct atr_span pt = atr_span_of(b->pt, b->len);
    for (long i = 0; i < iters; i++) {
        b->fsealed.len = 0; /* reuse the storage, as a block writer would */
        if (atr_aead_seal(&b->fsealed, b->aead, aad, pt, NULL) != ATR_OK)
            die("atr_aead_seal failed");
    }
}

static void base_open_framed(struct gcm_bench *b, long iters)
{
    int outl = 0;
    uint8_t fin[16];
    for (long i = 0; i < iters; i++) {
        const uint8_t *nonce = b->sealed, *ct = b->sealed + 12;
        if (EVP_DecryptInit_ex2(b->dec, NULL, NULL, nonce, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(b->dec, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(ct + b->len)) != 1 ||
            EVP_DecryptUpdate(b->dec, NULL, &outl, b->aad, (int)sizeof(b->aad)) != 1 ||
            EVP_DecryptUpdate(b->dec, b->out, &outl, ct, (int)b->len) != 1 ||
            EVP_DecryptFinal_ex(b->dec, fin, &outl) != 1)
            die("EVP framed open failed");
    }
}

static void ours_open_framed(struct gcm_bench *b, long iters)
{
    struct atr_span aad = atr_span_of(b->aad, sizeof(b->aad));
    struct atr_span sealed = atr_buf_span(&b->fsealed);
    for (long i = 0; i < iters; i++) {
        b->fout.len = 0;
        if (atr_aead_open(&b->fout, b->aead, aad, sealed, NULL) != ATR_OK)
            die("atr_aead_open failed");
    }
}

static void gcm_setup(struct gcm_bench *b, size_t len, const struct atr_secret *key)
{
    memset(b, 0, sizeof(*b));
    b->len = len;
    b->pt = malloc(len);
    b->ct = malloc(len);
    b->out = malloc(len);
    b->sealed = malloc(len + ATR_AEAD_OVERHEAD);
    if (b->pt == NULL || b->ct == NULL || b->out == NULL || b->sealed == NULL)
        die("out of memory");
    atr_buf_init(&b->fsealed, len + ATR_AEAD_OVERHEAD);
    atr_buf_init(&b->fout, len);
    for (size_t i = 0; i < len; i++)
        b->pt[i] = (uint8_t)(i * 31 + 7);
    memset(b->aad, 0xa5, sizeof(b->aad));
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    b->enc = EVP_CIPHER_CTX_new();
    b->dec = EVP_CIPHER_CTX_new();
    if (c == NULL || b->enc == NULL || b->dec == NULL ||
        EVP_EncryptInit_ex2(b->enc, c, atr_secret_cdata(key), NULL, NULL) != 1 ||
        EVP_DecryptInit_ex2(b->dec, c, atr_secret_cdata(key), NULL, NULL) != 1)
        die("EVP set-up failed");
    EVP_CIPHER_free(c);
    if (atr_aead_new(&b->aead, key, NULL) != ATR_OK)
        die("atr_aead_new failed");
}

static void gcm_teardown(struct gcm_bench *b)
{
    free(b->pt);
    free(b->ct);
    free(b->out);
    free(b->sealed);
    atr_buf_cleanup(&b->fsealed);
    atr_buf_cleanup(&b->fout);
    EVP_CIPHER_CTX_free(b->enc);
    EVP_CIPHER_CTX_free(b->dec);
    atr_aead_free(b->aead);
}

struct result {
    double base, ours, ratio; /* medians: units per second, and per-round ratio */
};

typedef void (*loop_fn)(void *ctx, long iters);

/* Runs base and ours in alternating order for @p rounds; medians. */
static struct result measure(loop_fn base, loop_fn ours, void *ctx, long iters, int rounds,
                             double units_per_iter)
{
    double b[MAX_ROUNDS], o[MAX_ROUNDS], r[MAX_ROUNDS];
    base(ctx, iters > 8 ? iters / 8 : 1); /* warm up both */
    ours(ctx, iters > 8 ? iters / 8 : 1);
    for (int i = 0; i < rounds; i++) {
        double tb, to;
        if (i % 2 == 0) {
            double t0 = now_s();
            base(ctx, iters);
            double t1 = now_s();
            ours(ctx, iters);
            double t2 = now_s();
            tb = t1 - t0;
            to = t2 - t1;
        } else {
            double t0 = now_s();
            ours(ctx, iters);
            double t1 = now_s();
            base(ctx, iters);
            double t2 = now_s();
            to = t1 - t0;
            tb = t2 - t1;
        }
        b[i] = units_per_iter * (double)iters / tb;
        o[i] = units_per_iter * (double)iters / to;
        r[i] = o[i] / b[i];
    }
    struct result res = {median(b, rounds), median(o, rounds), median(r, rounds)};
    return res;
}

static void gcm_seal_base(void *p, long n)
{
    base_seal(p, n);
}
static void gcm_seal_ours(void *p, long n)
{
    ours_seal(p, n);
}
static void gcm_open_base(void *p, long n)
{
    base_open(p, n);
}
static void gcm_open_ours(void *p, long n)
{
    ours_open(p, n);
}
static void gcm_fseal_base(void *p, long n)
{
    base_seal_framed(p, n);
}
static void gcm_fseal_ours(void *p, long n)
{
    ours_seal_framed(p, n);
}
static void gcm_fopen_base(void *p, long n)
{
    base_open_framed(p, n);
}
static void gcm_fopen_ours(void *p, long n)
{
    ours_open_framed(p, n);
}

/* ---- RSA-OAEP-256 unwrap -------------------------------------------------------- */

struct rsa_bench {
    struct atr_rsa_key *key;
    EVP_PKEY_CTX *ctx; /* baseline: prepared once */
    uint8_t ct[512];
    size_t ctlen;
};

static void rsa_base(void *p, long iters)
{
    struct rsa_bench *b = p;
    uint8_t out[512];
    for (long i = 0; i < iters; i++) {
        size_t outlen = sizeof(out);
        if (EVP_PKEY_decrypt(b->ctx, out, &outlen, b->ct, b->ctlen) != 1 || outlen != 32)
            die("EVP_PKEY_decrypt failed");
    }
    OPENSSL_cleanse(out, sizeof(out));
}

static void rsa_ours(void *p, long iters)
{
    struct rsa_bench *b = p;
    for (long i = 0; i < iters; i++) {
        struct atr_secret s = ATR_SECRET_INIT;
        if (atr_rsa_unwrap(&s, b->key, ATR_RSA_OAEP_256, atr_span_of(b->ct, b->ctlen), NULL) !=
                ATR_OK ||
            atr_secret_len(&s) != 32)
            die("atr_rsa_unwrap failed");
        atr_secret_cleanup(&s);
    }
}

static void rsa_setup(struct rsa_bench *b, unsigned bits)
{
    memset(b, 0, sizeof(*b));
    if (atr_rsa_key_generate(&b->key, bits, NULL) != ATR_OK)
        die("key generation failed");
    uint8_t tk[32];
    memset(tk, 0x3c, sizeof(tk));
    struct atr_buf w;
    atr_buf_init(&w, sizeof(b->ct));
    if (atr_rsa_wrap(&w, b->key, ATR_RSA_OAEP_256, atr_span_of(tk, 32), NULL) != ATR_OK)
        die("wrap failed");
    memcpy(b->ct, w.ptr, w.len);
    b->ctlen = w.len;
    atr_buf_cleanup(&w);
    b->ctx = EVP_PKEY_CTX_new_from_pkey(NULL, atr_rsa_key_pkey(b->key), NULL);
    if (b->ctx == NULL || EVP_PKEY_decrypt_init(b->ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(b->ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(b->ctx, EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(b->ctx, EVP_sha256()) != 1)
        die("EVP_PKEY_CTX set-up failed");
}

/* ---- main --------------------------------------------------------------------------- */

static void print_env(const struct config *cfg)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *v = strchr(line, ':');
                if (v != NULL) {
                    snprintf(model, sizeof(model), "%s", v + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    printf("# bench_crypto%s\n", cfg->quick ? " --quick (smoke run: numbers are meaningless)" : "");
    printf("CPU: %s; %s; %d rounds, medians\n\n", model, OpenSSL_version(OPENSSL_VERSION),
           cfg->rounds);
}

int main(int argc, char **argv)
{
    struct config cfg = {0, 15, (size_t)32 << 20, {400, 150, 60}};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            cfg.quick = 1;
            cfg.rounds = 3;
            cfg.gcm_bytes_per_run = (size_t)256 << 10;
            cfg.rsa_ops_per_run[0] = cfg.rsa_ops_per_run[1] = cfg.rsa_ops_per_run[2] = 2;
        } else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_secmem_init((size_t)1 << 20, 1, &err) != ATR_OK)
        die(atr_err_msg(&err));
    print_env(&cfg);

    struct atr_secret key = ATR_SECRET_INIT;
    if (atr_secret_init_random(&key, 32) != ATR_OK)
        die("no key");
    printf("| operation | size | bare EVP | atrest API | ratio |\n");
    printf("|---|---:|---:|---:|---:|\n");
    static const size_t sizes[] = {1024, 16384, 65536};
    for (size_t s = 0; s < 3; s++) {
        struct gcm_bench b;
        gcm_setup(&b, sizes[s], &key);
        long iters = (long)(cfg.gcm_bytes_per_run / sizes[s]);
        double mb = (double)sizes[s] / 1e6;
        struct result seal = measure(gcm_seal_base, gcm_seal_ours, &b, iters, cfg.rounds, mb);
        /* open needs a valid (nonce, ct, tag): seal once with the current nonce */
        ours_seal(&b, 1);
        struct result open = measure(gcm_open_base, gcm_open_ours, &b, iters, cfg.rounds, mb);
        struct result fseal = measure(gcm_fseal_base, gcm_fseal_ours, &b, iters, cfg.rounds, mb);
        /* both framed opens read a valid message of their own layout */
        base_seal_framed(&b, 1);
        struct result fopen = measure(gcm_fopen_base, gcm_fopen_ours, &b, iters, cfg.rounds, mb);
        printf("| AES-256-GCM seal | %zu KiB | %.0f MB/s | %.0f MB/s | %.3f |\n", sizes[s] / 1024,
               seal.base, seal.ours, seal.ratio);
        printf("| AES-256-GCM open | %zu KiB | %.0f MB/s | %.0f MB/s | %.3f |\n", sizes[s] / 1024,
               open.base, open.ours, open.ratio);
        printf("| AES-256-GCM seal, framed | %zu KiB | %.0f MB/s | %.0f MB/s | %.3f |\n",
               sizes[s] / 1024, fseal.base, fseal.ours, fseal.ratio);
        printf("| AES-256-GCM open, framed | %zu KiB | %.0f MB/s | %.0f MB/s | %.3f |\n",
               sizes[s] / 1024, fopen.base, fopen.ours, fopen.ratio);
        fflush(stdout);
        gcm_teardown(&b);
    }
    atr_secret_cleanup(&key);

    static const unsigned bits[] = {2048, 3072, 4096};
    for (size_t k = 0; k < 3; k++) {
        struct rsa_bench b;
        rsa_setup(&b, bits[k]);
        struct result r = measure(rsa_base, rsa_ours, &b, cfg.rsa_ops_per_run[k], cfg.rounds, 1.0);
        printf("| RSA-OAEP-256 unwrap | %u bits | %.0f ops/s | %.0f ops/s | %.3f |\n", bits[k],
               r.base, r.ours, r.ratio);
        fflush(stdout);
        EVP_PKEY_CTX_free(b.ctx);
        atr_rsa_key_free(b.key);
    }
    return 0;
}
