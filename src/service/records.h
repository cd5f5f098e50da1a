/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_RECORDS_H
#define ATR_SERVICE_RECORDS_H

/*
 * Activity records: the pure, I/O-free part of ingest and query (design
 * section 4, docs/service.md). Four steps:
 *
 *  1. atr_records_parse() validates an NDJSON ingest body line by line and
 *     keeps, for every accepted line, its canonical form (the bytes that get
 *     sealed) and its time; every rejected line gets {line, message}.
 *  2. atr_records_pack() splits the accepted records, in order, into block
 *     plaintexts of at most block_bytes (store/block.h seals them).
 *  3. atr_records_filter_parse() turns the query parameters into a filter.
 *  4. atr_records_scan() walks the lines of an opened block and calls back
 *     for each record that matches a filter, from a record index on (a query
 *     cursor is (block id, record index)).
 *
 * Body. Lines are separated by LF; a CR right before the LF is dropped; a
 * last line without LF counts; lines holding only spaces, tabs and CRs are
 * blank and skipped (not errors). Line numbers are 1-based physical lines of
 * the body, blank ones included. A UTF-8 byte order mark at the start
 * refuses the whole batch (ATR_E_PARSE), as do more than max_lines
 * non-blank lines (ATR_E_TOO_LARGE); the caller bounds the body size.
 *
 * A record is one JSON object per line (duplicate member names, NUL
 * characters, invalid UTF-8 and nesting deeper than max_depth refused; at
 * most max_line bytes, the dropped CR not counted) with these members:
 *
 *   time    an RFC 3339 string, or an integer of Unix milliseconds
 *   user    string of 1..256 bytes      app  string of 1..256 bytes
 *   action  string of 1..128 bytes      ip   string, an IPv4 or IPv6 address
 *                                            (inet_pton; no zone id)
 *
 * Any other member is a free field (any JSON value; integers must fit in
 * 64 bits, as jansson reads them). A required member that is absent is
 * "missing \"user\""; one of another type (null included) is an error too.
 *
 * Time rules (ingest and the query's from/to):
 *   YYYY-MM-DD "T" hh:mm:ss [ "." 1..9 digits ] ( "Z" | ("+"|"-") hh:mm )
 *   "t" and "z" are accepted as well (RFC 3339 5.6). Month 01..12, day
 *   within the month (leap years per the Gregorian rules), hour 00..23,
 *   minute 00..59, second 00..59 (a leap second :60 is refused), offset
 *   hours 00..23 and minutes 00..59 ("-00:00" is UTC). Fractions are
 *   truncated to milliseconds. The instant, in UTC, must lie in years
 *   0000..9999 (ATR_RECORDS_TIME_MIN_MS..ATR_RECORDS_TIME_MAX_MS); Unix
 *   milliseconds must lie in the same range.
 *
 * Canonical form: the line's object serialised by jansson in compact form
 * (no whitespace, members in their original order, strings as jansson
 * escapes them, reals as "%.17g" so 0.1 becomes 0.10000000000000001), with
 * "time" rewritten as an RFC 3339 UTC string with milliseconds
 * ("2026-11-29T06:00:00.000Z"). Canonicalising is idempotent. A canonical
 * line can be longer than its input (reals, an integer time): at most about
 * five times max_line plus 32 bytes.
 *
 * Partial acceptance. atr_records_parse() reports both the accepted records
 * and the rejected lines and returns ATR_OK as long as the batch itself is
 * acceptable, even when every line was rejected. The caller stores the good
 * records and reports the bad lines (the default), or stores nothing when
 * any line was rejected and the request asked for all-or-nothing.
 *
 * Messages (batch errors in struct atr_err, line messages in the batch) name
 * members and limits, never values: a record is customer data.
 *
 * Memory: canonical lines and block plaintexts are customer data held in
 * struct atr_buf storage, wiped on cleanup. jansson's own allocations (the
 * parsed tree of one line at a time) are not wiped.
 *
 * Thread-safety: no global state; every function is reentrant, and an
 * object belongs to one thread at a time.
 */

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"

#define ATR_RECORDS_MAX_LINE_DEFAULT    ((size_t)64 << 10)
#define ATR_RECORDS_MAX_LINES_DEFAULT   ((size_t)10000)
#define ATR_RECORDS_MAX_ERRORS_DEFAULT  ((size_t)100)
#define ATR_RECORDS_MAX_DEPTH_DEFAULT   32u
#define ATR_RECORDS_BLOCK_BYTES_DEFAULT ((size_t)64 << 10)

#define ATR_RECORDS_USER_MAX   256
#define ATR_RECORDS_APP_MAX    256
#define ATR_RECORDS_ACTION_MAX 128

#define ATR_RECORDS_LIMIT_DEFAULT 1000
#define ATR_RECORDS_LIMIT_MAX     10000

/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in Unix ms */
#define ATR_RECORDS_TIME_MIN_MS (-62167219200000LL)
#define ATR_RECORDS_TIME_MAX_MS 253402300799999LL

/* Size of a line message, NUL included. */
#define ATR_RECORDS_MSG_MAX 128

/* Limits of one parse; a field left 0 takes its default. */
struct atr_records_limits {
    size_t max_line;    /* bytes per line, LF and a CR before it excluded; default 64 KiB */
    size_t max_lines;   /* non-blank lines per batch; ATR_RECORDS_MAX_LINES_DEFAULT */
    size_t max_errors;  /* rejected lines kept with a message; ATR_RECORDS_MAX_ERRORS_DEFAULT */
    unsigned max_depth; /* nesting levels, the line's object is 1; ATR_RECORDS_MAX_DEPTH_DEFAULT */
};

/* An accepted record. Its canonical line is canon.ptr[off .. off + len). */
struct atr_records_record {
    size_t line;     /* 1-based line number in the body */
    int64_t time_ms; /* Unix milliseconds */
    size_t off;      /* offset of the canonical line in the batch's canon buffer */
    size_t len;      /* its length, the '\n' that follows it not counted */
};

/* A rejected line, e.g. {3, "missing \"user\""}. */
struct atr_records_error {
    size_t line;                       /* 1-based line number in the body */
    char message[ATR_RECORDS_MSG_MAX]; /* without a "line N: " prefix */
};

/*
 * The outcome of a parse. Everything is owned by the batch and released by
 * atr_records_batch_cleanup(). Invariants: n_records + n_rejected == n_lines;
 * n_errors + errors_omitted == n_rejected; records and errors are in line
 * order; canon holds the canonical lines of records[0..n_records), in
 * order, each followed by '\n', and nothing else.
 */
struct atr_records_batch {
    struct atr_records_record *records;
    size_t n_records;
    struct atr_records_error *errors; /* the first max_errors rejected lines */
    size_t n_errors;
    size_t errors_omitted; /* rejected lines beyond max_errors */
    size_t n_rejected;
    size_t n_lines;       /* non-blank lines of the body */
    struct atr_buf canon; /* customer data: wiped on cleanup */
};

/* The plaintext of one block and its catalog entry. */
struct atr_records_block {
    struct atr_buf plain; /* canonical lines, each followed by '\n'; wiped on cleanup */
    int64_t t_min_ms;     /* earliest record time */
    int64_t t_max_ms;     /* latest record time */
    size_t count;         /* records in the block, >= 1 */
    size_t first;         /* index in the batch of the block's first record */
};

/* The blocks of a batch, in record order; owned, see atr_records_blocks_cleanup(). */
struct atr_records_blocks {
    struct atr_records_block *blocks;
    size_t n;
};

/*
 * A query filter. A record matches when from_ms <= time < to_ms and each
 * non-NULL string equals the record's member exactly (bytes). The strings
 * are borrowed: they must outlive every use of the filter.
 */
struct atr_records_filter {
    int64_t from_ms; /* inclusive */
    int64_t to_ms;   /* exclusive */
    const char *user;
    const char *app;
    const char *action;
};

/**
 * Called by atr_records_scan() for each matching record.
 * @param line    the canonical line, '\n' excluded, borrowed from the block
 *                for the duration of the call.
 * @param time_ms the record's time.
 * @param index   the record's 0-based index in the block (a resumable
 *                cursor continues at index + 1).
 * @return non-zero to continue, 0 to stop the scan (scan then returns ATR_OK).
 */
typedef int (*atr_records_scan_fn)(struct atr_span line, int64_t time_ms, size_t index, void *ctx);

/**
 * Parses an NDJSON ingest body (rules at the top of this header).
 * @param[out] out the batch; always initialised (empty on failure), to be
 *             released with atr_records_batch_cleanup() in every case.
 * @param body the body, borrowed for the duration of the call.
 * @param lim  limits; NULL means the defaults.
 * @return ATR_OK (rejected lines are not a failure: see the batch),
 *         ATR_E_PARSE (the body starts with a UTF-8 byte order mark),
 *         ATR_E_TOO_LARGE (more than max_lines non-blank lines),
 *         ATR_E_NOMEM, ATR_E_INVALID (@p out NULL, release builds).
 */
ATR_MUST_CHECK atr_status atr_records_parse(struct atr_records_batch *out, struct atr_span body,
                                            const struct atr_records_limits *lim,
                                            struct atr_err *err);

/** Wipes and frees everything @p b owns; @p b is then empty. NULL ok, idempotent. */
void atr_records_batch_cleanup(struct atr_records_batch *b);

/**
 * Packs the accepted records of @p batch, in order, into blocks: a block
 * takes records while its plaintext (canonical lines each followed by '\n')
 * stays at most @p block_bytes; a record longer than that alone makes its
 * own block. No record is split; an empty batch gives no blocks.
 * @param[out] out the blocks; always initialised (empty on failure), to be
 *             released with atr_records_blocks_cleanup() in every case.
 * @param block_bytes 0 means ATR_RECORDS_BLOCK_BYTES_DEFAULT.
 * @return ATR_E_NOMEM, ATR_E_INVALID (@p out or @p batch NULL, release
 *         builds; or a batch that breaks its invariants).
 */
ATR_MUST_CHECK atr_status atr_records_pack(struct atr_records_blocks *out,
                                           const struct atr_records_batch *batch,
                                           size_t block_bytes, struct atr_err *err);

/** Wipes and frees every block of @p b; @p b is then empty. NULL ok, idempotent. */
void atr_records_blocks_cleanup(struct atr_records_blocks *b);

/** Sets @p f to match every record (no bounds, no strings). Cannot fail. */
void atr_records_filter_init(struct atr_records_filter *f);

/**
 * Builds a filter from query parameters, each NULL when absent.
 * @param[out] out   the filter; its strings are @p user, @p app, @p action
 *                   themselves (borrowed). Reset to match-all on failure.
 * @param[out] limit the page size, 1..ATR_RECORDS_LIMIT_MAX, default
 *                   ATR_RECORDS_LIMIT_DEFAULT; may be NULL when @p limit_text is.
 * @param from_text  RFC 3339 or Unix milliseconds (an optional '-' and
 *                   digits); absent means no lower bound.
 * @param to_text    as @p from_text; absent means no upper bound.
 * @param user, app, action  exact values (1..256, 1..256, 1..128 bytes).
 * @param limit_text decimal digits.
 * @return ATR_E_INVALID naming the parameter ("parameter \"to\" is before
 *         \"from\"", "parameter \"from\" is not an RFC 3339 timestamp or
 *         Unix milliseconds: invalid month", "parameter \"limit\" must be an
 *         integer from 1 to 10000", ...). from == to is valid (an empty range).
 */
ATR_MUST_CHECK atr_status atr_records_filter_parse(struct atr_records_filter *out, size_t *limit,
                                                   const char *from_text, const char *to_text,
                                                   const char *user, const char *app,
                                                   const char *action, const char *limit_text,
                                                   struct atr_err *err);

/** Resets @p f to match-all; a filter owns nothing. NULL ok. */
void atr_records_filter_cleanup(struct atr_records_filter *f);

/**
 * Walks the records of an opened block, calling @p cb for every record at
 * index >= @p skip that matches @p f (NULL matches everything), in order.
 * The block is expected as atr_records_pack() writes it (canonical lines,
 * each ending in '\n'; an empty block has no records) but is read
 * defensively: every line from @p skip on must be a JSON object with a
 * string "time" (RFC 3339) and strings "user", "app" and "action". Lines
 * before @p skip are only counted. On an error, @p cb may already have run
 * for earlier records.
 * @return ATR_OK (also when @p cb stopped the scan or @p skip is past the
 *         end), ATR_E_PARSE (a malformed line, a missing final '\n'; the
 *         message gives the record index, never content), ATR_E_NOMEM,
 *         ATR_E_INVALID (@p cb NULL, release builds).
 */
ATR_MUST_CHECK atr_status atr_records_scan(struct atr_span block_plain,
                                           const struct atr_records_filter *f, size_t skip,
                                           atr_records_scan_fn cb, void *ctx, struct atr_err *err);

/** The canonical line of record @p i of @p b ('\n' excluded), borrowed from @p b. */
static inline struct atr_span atr_records_line(const struct atr_records_batch *b, size_t i)
{
    return atr_span_of(b->canon.ptr + b->records[i].off, b->records[i].len);
}

#endif /* ATR_SERVICE_RECORDS_H */
