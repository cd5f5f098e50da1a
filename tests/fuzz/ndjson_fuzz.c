/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_records_parse, atr_records_batch_cleanup,
 * atr_records_pack, atr_records_blocks_cleanup, atr_records_scan,
 * atr_records_filter_init, atr_records_filter_parse (src/service/records.c):
 * the NDJSON ingest path and the block scan of queries, without a server.
 *
 * Properties (any violation aborts):
 *  - parsing never crashes; it returns ATR_OK, ATR_E_PARSE (byte order
 *    mark), ATR_E_TOO_LARGE (too many lines) or ATR_E_NOMEM, and a failure
 *    leaves an empty batch;
 *  - accepted + rejected lines = non-blank lines (counted here
 *    independently); kept + omitted errors = rejected; line numbers rise;
 *  - every canonical line re-parses as a batch of one accepted record with
 *    the same time_ms and the same canonical bytes (idempotence);
 *  - packing keeps every record, in order, within block_bytes unless a
 *    block holds one record, with the right t_min/t_max/count;
 *  - scanning each block with an empty filter yields every record (line,
 *    time, index), and with skip the records from skip on;
 *  - scanning the raw input as a block never crashes (ATR_OK or
 *    ATR_E_PARSE); filter_parse on the first line's pieces never crashes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "service/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_INPUT_MAX ((size_t)1 << 16)

/* Small limits so that every limit is reachable by small inputs. */
static const struct atr_records_limits small = {
    .max_line = 512, .max_lines = 64, .max_errors = 4, .max_depth = 6};

/* Non-blank lines by the module's rules, counted independently. */
static size_t count_non_blank(const uint8_t *p, size_t n)
{
    size_t count = 0;
    int blank = 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            count += blank ? 0 : 1;
            blank = 1;
        } else if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            blank = 0;
        }
    }
    return count + (blank ? 0 : 1);
}

struct expect {
    const struct atr_records_batch *b;
    size_t next;  /* next batch record expected */
    size_t index; /* next block index expected */
};

static int check_record(struct atr_span line, int64_t time_ms, size_t index, void *ctx)
{
    struct expect *e = ctx;
    if (e->next >= e->b->n_records || index != e->index)
        abort();
    struct atr_span want = atr_records_line(e->b, e->next);
    if (line.len != want.len || memcmp(line.ptr, want.ptr, want.len) != 0 ||
        time_ms != e->b->records[e->next].time_ms)
        abort();
    e->next++;
    e->index++;
    return 1;
}

static int count_cb(struct atr_span line, int64_t time_ms, size_t index, void *ctx)
{
    (void)line;
    (void)time_ms;
    (void)index;
    (*(size_t *)ctx)++;
    return 1;
}

/* Each canonical line alone: one accepted record, same time, same bytes. */
static void reparse(const struct atr_records_batch *b)
{
    for (size_t i = 0; i < b->n_records; i++) {
        struct atr_span line = atr_records_line(b, i);
        struct atr_records_limits lim = small;
        lim.max_line = line.len; /* canonical lines may be longer than inputs */
        struct atr_records_batch one;
        atr_status rc = atr_records_parse(&one, line, &lim, NULL);
        if (rc == ATR_E_NOMEM) {
            atr_records_batch_cleanup(&one);
            continue;
        }
        if (rc != ATR_OK || one.n_records != 1 || one.n_rejected != 0 ||
            one.records[0].time_ms != b->records[i].time_ms || one.records[0].len != line.len ||
            memcmp(one.canon.ptr, line.ptr, line.len) != 0)
            abort();
        atr_records_batch_cleanup(&one);
    }
}

static void pack_and_scan(const struct atr_records_batch *b, size_t block_bytes)
{
    struct atr_records_blocks bl;
    atr_status rc = atr_records_pack(&bl, b, block_bytes, NULL);
    if (rc != ATR_OK) {
        if (rc != ATR_E_NOMEM || bl.n != 0 || bl.blocks != NULL)
            abort();
        return;
    }
    size_t cap = block_bytes != 0 ? block_bytes : ATR_RECORDS_BLOCK_BYTES_DEFAULT;
    struct atr_records_filter any;
    atr_records_filter_init(&any);
    size_t next = 0;
    for (size_t i = 0; i < bl.n; i++) {
        const struct atr_records_block *k = &bl.blocks[i];
        if (k->first != next || k->count == 0 || (k->plain.len > cap && k->count != 1))
            abort();
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (size_t r = k->first; r < k->first + k->count; r++) {
            lo = b->records[r].time_ms < lo ? b->records[r].time_ms : lo;
            hi = b->records[r].time_ms > hi ? b->records[r].time_ms : hi;
        }
        if (k->t_min_ms != lo || k->t_max_ms != hi)
            abort();
        struct expect e = {b, k->first, 0};
        rc = atr_records_scan(atr_buf_span(&k->plain), &any, 0, check_record, &e, NULL);
        if (rc != ATR_OK && rc != ATR_E_NOMEM)
            abort();
        if (rc == ATR_OK && e.next != k->first + k->count)
            abort();
        /* from skip on */
        size_t skip = k->count / 2;
        struct expect e2 = {b, k->first + skip, skip};
        rc = atr_records_scan(atr_buf_span(&k->plain), NULL, skip, check_record, &e2, NULL);
        if (rc != ATR_OK && rc != ATR_E_NOMEM)
            abort();
        if (rc == ATR_OK && e2.next != k->first + k->count)
            abort();
        next += k->count;
    }
    if (next != b->n_records)
        abort();
    atr_records_filter_cleanup(&any);
    atr_records_blocks_cleanup(&bl);
}

/* The first line's bytes split into query parameters (NUL-terminated copies). */
static void filters(const uint8_t *data, size_t size)
{
    char buf[256];
    size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    char *parts[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    char *p = buf;
    for (size_t i = 0; i < 6 && p != NULL; i++) {
        parts[i] = p;
        p = strchr(p, '&');
        if (p != NULL)
            *p++ = '\0';
    }
    struct atr_records_filter f;
    size_t limit = 0;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_records_filter_parse(&f, &limit, parts[0], parts[1], parts[2], parts[3],
                                             parts[4], parts[5], &err);
    if (rc == ATR_OK) {
        if (f.to_ms < f.from_ms || (parts[5] != NULL && (limit < 1 || limit > 10000)))
            abort();
    } else if (rc != ATR_E_INVALID || err.code != rc || err.msg[0] == '\0') {
        abort();
    }
    atr_records_filter_cleanup(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_INPUT_MAX)
        return 0;
    struct atr_span body = atr_span_of(data, size);
    struct atr_records_batch b;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_records_parse(&b, body, &small, &err);
    if (rc != ATR_OK) {
        if ((rc != ATR_E_PARSE && rc != ATR_E_TOO_LARGE && rc != ATR_E_NOMEM) || err.code != rc ||
            err.msg[0] == '\0' || b.n_records != 0 || b.records != NULL || b.canon.ptr != NULL)
            abort();
    } else {
        if (b.n_lines != count_non_blank(data, size) || b.n_records + b.n_rejected != b.n_lines ||
            b.n_errors + b.errors_omitted != b.n_rejected || b.n_errors > small.max_errors)
            abort();
        size_t last = 0;
        for (size_t i = 0; i < b.n_records; i++) {
            if (b.records[i].line <= last)
                abort();
            last = b.records[i].line;
        }
        last = 0;
        for (size_t i = 0; i < b.n_errors; i++) {
            if (b.errors[i].line <= last || b.errors[i].message[0] == '\0')
                abort();
            last = b.errors[i].line;
        }
        reparse(&b);
        pack_and_scan(&b, 1);
        pack_and_scan(&b, 200);
        pack_and_scan(&b, 0);
    }
    atr_records_batch_cleanup(&b);

    /* the raw input as a block */
    size_t seen = 0;
    rc = atr_records_scan(body, NULL, 0, count_cb, &seen, NULL);
    if (rc != ATR_OK && rc != ATR_E_PARSE && rc != ATR_E_NOMEM)
        abort();
    rc = atr_records_scan(body, NULL, 1, count_cb, &seen, NULL);
    if (rc != ATR_OK && rc != ATR_E_PARSE && rc != ATR_E_NOMEM)
        abort();

    filters(data, size);
    return 0;
}
