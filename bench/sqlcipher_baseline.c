/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SQLCipher baseline of bench_service (bench/service_bench.c): the
 * leanest correct way to keep the same records encrypted at rest with the
 * same durability in one SQLite-family file, for comparison with `atrest
 * serve`. It links only libsqlcipher (whose sqlite3_* symbols would clash
 * with the SQLite that libatrest links), so it is its own program and
 * bench_service runs it as a child process.
 *
 *   sqlcipher_baseline --db PATH --input NDJSON --records N [--batch 1000]
 *                      [--key | --no-key]
 *
 * Settings: PRAGMA key with a random raw 256-bit key (x'...': no PBKDF2 at
 * open, as atrest's service root key is a raw key too), cipher_page_size
 * 4096 (SQLite's default page size, which atrest's store uses; SQLCipher
 * 3's default is 1024), journal_mode=WAL, synchronous=FULL (the WAL is
 * fsync'ed at every COMMIT, as in atrest's store), locking_mode=EXCLUSIVE
 * (as atrest's store). "--no-key" runs the same program without a key:
 * plain SQLite pages, the cost of SQLCipher's own crypto by difference.
 *
 * Work: one table (id INTEGER PRIMARY KEY, body TEXT), one row per record
 * (the record's JSON line without its newline), inserted with one prepared
 * statement in transactions of --batch rows; then the database is closed,
 * reopened and every row read back (SELECT body, its bytes touched). The
 * input lines are read into memory before timing; when the file holds
 * fewer than N lines they are reused in turn.
 *
 * Output, one line on stdout:
 *   insert_records_per_s=X read_records_per_s=Y records=N bytes=B db_bytes=D
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "sqlcipher_baseline: %s%s%s\n", what, db != NULL ? ": " : "",
            db != NULL ? sqlite3_errmsg(db) : "");
    exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sqlcipher_baseline: %s: %s\n", sql, msg != NULL ? msg : "?");
        sqlite3_free(msg);
        exit(1);
    }
}

/* The first column of the first row of @p sql as text (for PRAGMA answers). */
static void pragma_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        die(sql, db);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static sqlite3 *open_db(const char *path, const char *key_pragma)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("open", db);
    if (key_pragma != NULL) {
        exec(db, key_pragma);
        exec(db, "PRAGMA cipher_page_size = 4096");
    }
    exec(db, "PRAGMA locking_mode = EXCLUSIVE");
    char mode[32];
    pragma_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
    if (strcmp(mode, "wal") != 0)
        die("journal_mode=WAL refused", db);
    exec(db, "PRAGMA synchronous = FULL");
    return db;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *input = NULL;
    size_t records = 0, batch = 1000;
    int with_key = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--db") == 0 && v != NULL) {
            path = v;
            i++;
        } else if (strcmp(argv[i], "--input") == 0 && v != NULL) {
            input = v;
            i++;
        } else if (strcmp(argv[i], "--records") == 0 && v != NULL) {
            records = (size_t)strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(argv[i], "--batch") == 0 && v != NULL) {
            batch = (size_t)strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(argv[i], "--key") == 0) {
            with_key = 1;
        } else if (strcmp(argv[i], "--no-key") == 0) {
            with_key = 0;
        } else {
            fprintf(stderr, "usage: sqlcipher_baseline --db PATH --input NDJSON --records N "
                            "[--batch 1000] [--key|--no-key]\n");
            return 2;
        }
    }
    if (path == NULL || input == NULL || records == 0 || batch == 0) {
        fprintf(stderr, "sqlcipher_baseline: --db, --input and --records are required\n");
        return 2;
    }

    /* the records, in memory before any timing */
    FILE *f = fopen(input, "rb");
    if (f == NULL)
        die("cannot open the input", NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0)
        die("empty input", NULL);
    char *text = malloc((size_t)size + 1);
    if (text == NULL || fread(text, 1, (size_t)size, f) != (size_t)size)
        die("cannot read the input", NULL);
    fclose(f);
    text[size] = '\0';
    size_t nlines = 0;
    for (long i = 0; i < size; i++)
        nlines += text[i] == '\n';
    const char **line = malloc(nlines * sizeof(*line));
    int *len = malloc(nlines * sizeof(*len));
    if (line == NULL || len == NULL)
        die("out of memory", NULL);
    size_t k = 0;
    for (char *p = text; k < nlines;) {
        char *nl = strchr(p, '\n');
        line[k] = p;
        len[k] = (int)(nl - p);
        k++;
        p = nl + 1;
    }

    unlink(path);
    char aux[4200];
    snprintf(aux, sizeof(aux), "%s-wal", path);
    unlink(aux);
    char key_pragma[128];
    unsigned char raw[32];
    FILE *ur = fopen("/dev/urandom", "rb");
    if (ur == NULL || fread(raw, 1, sizeof(raw), ur) != sizeof(raw))
        die("cannot read /dev/urandom", NULL);
    fclose(ur);
    int n = snprintf(key_pragma, sizeof(key_pragma), "PRAGMA key = \"x'");
    for (size_t i = 0; i < sizeof(raw); i++)
        n += snprintf(key_pragma + n, sizeof(key_pragma) - (size_t)n, "%02X", raw[i]);
    snprintf(key_pragma + n, sizeof(key_pragma) - (size_t)n, "'\"");
    const char *kp = with_key ? key_pragma : NULL;

    sqlite3 *db = open_db(path, kp);
    exec(db, "CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    sqlite3_stmt *ins = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO records (body) VALUES (?)", -1, &ins, NULL) !=
        SQLITE_OK)
        die("prepare insert", db);
    size_t bytes = 0;
    double t0 = now_s();
    for (size_t i = 0; i < records;) {
        exec(db, "BEGIN IMMEDIATE");
        for (size_t j = 0; j < batch && i < records; j++, i++) {
            size_t l = i % nlines;
            sqlite3_bind_text(ins, 1, line[l], len[l], SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                die("insert", db);
            sqlite3_reset(ins);
            bytes += (size_t)len[l];
        }
        exec(db, "COMMIT");
    }
    double t_ins = now_s() - t0;
    sqlite3_finalize(ins);
    if (sqlite3_close(db) != SQLITE_OK)
        die("close", db);

    db = open_db(path, kp);
    sqlite3_stmt *sel = NULL;
    if (sqlite3_prepare_v2(db, "SELECT body FROM records ORDER BY id", -1, &sel, NULL) != SQLITE_OK)
        die("prepare select", db);
    size_t got = 0, got_bytes = 0;
    unsigned sum = 0;
    t0 = now_s();
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        const unsigned char *b = sqlite3_column_text(sel, 0);
        int bl = sqlite3_column_bytes(sel, 0);
        if (b == NULL || bl <= 0)
            die("empty row", db);
        sum += b[0] + b[bl - 1]; /* touch the value */
        got_bytes += (size_t)bl;
        got++;
    }
    double t_rd = now_s() - t0;
    if (rc != SQLITE_DONE)
        die("select", db);
    sqlite3_finalize(sel);
    sqlite3_close(db);
    if (got != records || got_bytes != bytes)
        die("read back a different number of rows or bytes", NULL);
    /* an encrypted file must not start with SQLite's plain header */
    char head[16] = {0};
    FILE *hf = fopen(path, "rb");
    if (hf == NULL || fread(head, 1, sizeof(head), hf) != sizeof(head))
        die("cannot read the database header", NULL);
    fclose(hf);
    if (with_key == (memcmp(head, "SQLite format 3", 16) == 0))
        die(with_key ? "the keyed database is not encrypted (is this SQLCipher?)"
                     : "the unkeyed database has no SQLite header",
            NULL);
    struct stat st;
    long long db_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    if (stat(aux, &st) == 0)
        db_bytes += (long long)st.st_size;
    printf("insert_records_per_s=%.1f read_records_per_s=%.1f records=%zu bytes=%zu "
           "db_bytes=%lld key=%s sqlite=%s check=%u\n",
           (double)records / t_ins, (double)got / t_rd, got, bytes, db_bytes,
           with_key ? "yes" : "no", sqlite3_libversion(), sum & 1u);
    free(line);
    free(len);
    free(text);
    return 0;
}
