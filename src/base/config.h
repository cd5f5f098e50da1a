/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_BASE_CONFIG_H
#define ATR_BASE_CONFIG_H

/*
 * Configuration: a flat map "section.key" -> value string, filled from INI
 * files (parsed by inih, never by hand), the environment and explicit sets,
 * read back through typed getters that validate strictly and name the key in
 * every error message.
 *
 * Precedence is the order of loading, later wins; the service loads
 * defaults (getter arguments) < file < environment < command line.
 *
 * File syntax (inih): "[section]" lines, "key = value" lines, comments start
 * with ';' or '#' at the beginning of a line or with " ;" after a value.
 * Section and key names are case-insensitive and stored lowercased; a section
 * is [a-z0-9]+, a key [a-z0-9_]+, so that every key has an environment name.
 * Every entry must be inside a section; a key may appear once per file;
 * continuation lines are not supported. Whitespace around names and values
 * is stripped; quotes are not special.
 *
 * Environment mapping: PREFIX_SECTION_KEY=value sets section.key, with the
 * section ending at the first '_' after the prefix and both names lowercased:
 * ATREST_SERVER_PORT=8443 -> server.port, ATREST_SERVER_MAX_BODY=1MiB ->
 * server.max_body. Variables with the prefix that do not have this shape
 * (ATREST_CONFIG, ATREST_X) are ignored.
 *
 * Limits: ATR_CONFIG_MAX_LINE bytes per file line, ATR_CONFIG_MAX_VALUE bytes
 * per value, ATR_CONFIG_MAX_ENTRIES entries, ATR_CONFIG_MAX_FILE bytes per
 * file. Every load is all-or-nothing: on error @p cfg is unchanged.
 *
 * Thread-safety: a struct atr_config is not locked; load it at start-up and
 * share it read-only afterwards (getters do not modify it).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Longest line of a file, without its line terminator. */
#define ATR_CONFIG_MAX_LINE 190
/* Longest value (file, environment or atr_config_set). */
#define ATR_CONFIG_MAX_VALUE 4096
/* Longest "section.key" name. */
#define ATR_CONFIG_MAX_KEY 128
/* Most distinct entries one configuration holds. */
#define ATR_CONFIG_MAX_ENTRIES 512
/* Largest configuration file or in-memory text. */
#define ATR_CONFIG_MAX_FILE (1024 * 1024)

struct atr_config;

/** Creates an empty configuration. @return ATR_E_NOMEM. */
ATR_MUST_CHECK atr_status atr_config_new(struct atr_config **out);

/** Frees @p cfg and every value it holds (NULL allowed). */
void atr_config_free(struct atr_config *cfg);

/**
 * Parses the INI file at @p path and sets its entries (overriding earlier
 * values). On error nothing is set.
 * @return ATR_E_NOT_FOUND (no such file), ATR_E_IO (unreadable),
 *         ATR_E_CONFIG (syntax error, message "path:LINE: ..."; invalid name,
 *         duplicate key, limit exceeded, message naming the key),
 *         ATR_E_TOO_LARGE (file over ATR_CONFIG_MAX_FILE), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_config_load_file(struct atr_config *cfg, const char *path,
                                               struct atr_err *err);

/**
 * Like atr_config_load_file() for @p len bytes of INI text at @p text (need
 * not be NUL-terminated). @p origin names the text in messages (NULL:
 * "<memory>"). A NUL byte in the text is an ATR_E_CONFIG error.
 * @return ATR_E_CONFIG, ATR_E_TOO_LARGE, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_config_load_string(struct atr_config *cfg, const char *text,
                                                 size_t len, const char *origin,
                                                 struct atr_err *err);

/**
 * Sets every PREFIX_SECTION_KEY=value of @p envp (NULL-terminated "NAME=value"
 * strings; NULL = the process environment) as section.key, see the mapping
 * above. @p prefix without the trailing '_' (NULL = "ATREST"). On error
 * nothing is set.
 * @return ATR_E_CONFIG (value too long or too many entries, message naming
 *         the variable), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_config_load_env(struct atr_config *cfg, const char *prefix,
                                              char *const *envp, struct atr_err *err);

/**
 * Sets @p key ("section.key", case-insensitive) to a copy of @p value.
 * @return ATR_E_INVALID (malformed key or value too long), ATR_E_CONFIG (too
 *         many entries), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_config_set(struct atr_config *cfg, const char *key, const char *value,
                                         struct atr_err *err);

/** Number of entries held. */
size_t atr_config_count(const struct atr_config *cfg);

/**
 * The key ("section.key", lowercased) of entry @p i in load order, or NULL
 * when @p i >= atr_config_count(); e.g. to warn about unknown keys.
 * Borrowed like atr_config_get().
 */
const char *atr_config_key_at(const struct atr_config *cfg, size_t i);

/**
 * The raw value of @p key, or NULL when unset. Borrowed: valid until the
 * next set/load on @p cfg or atr_config_free().
 */
const char *atr_config_get(const struct atr_config *cfg, const char *key);

/**
 * The value of @p key, or @p def when unset (borrowed like atr_config_get()).
 */
const char *atr_config_get_str(const struct atr_config *cfg, const char *key, const char *def);

/**
 * Reads @p key as a decimal integer ("-12", "8443"; no '+', spaces, hex or
 * suffix) within [@p min, @p max]; @p def when unset (not range-checked).
 * On error *@p out is untouched.
 * @return ATR_E_CONFIG naming the key (not an integer, overflow, out of range).
 */
ATR_MUST_CHECK atr_status atr_config_get_int(int64_t *out, const struct atr_config *cfg,
                                             const char *key, int64_t def, int64_t min, int64_t max,
                                             struct atr_err *err);

/**
 * Reads @p key as a boolean: true/yes/on/1 or false/no/off/0 (case-
 * insensitive); @p def when unset.
 * @return ATR_E_CONFIG naming the key.
 */
ATR_MUST_CHECK atr_status atr_config_get_bool(bool *out, const struct atr_config *cfg,
                                              const char *key, bool def, struct atr_err *err);

/**
 * Reads @p key as a duration in milliseconds: digits followed by one unit,
 * "ms", "s", "m", "h" or "d" ("250ms", "15s", "5m", "1h", "2d"); a unit is
 * required, "0s" is allowed, negatives, fractions, compound forms ("1h30m")
 * and overflow are rejected. Must lie in [@p min_ms, @p max_ms]; @p def_ms
 * when unset (not range-checked).
 * @return ATR_E_CONFIG naming the key.
 */
ATR_MUST_CHECK atr_status atr_config_get_duration_ms(int64_t *out, const struct atr_config *cfg,
                                                     const char *key, int64_t def_ms,
                                                     int64_t min_ms, int64_t max_ms,
                                                     struct atr_err *err);

/**
 * Reads @p key as a size in bytes: digits with an optional binary unit,
 * "B", "KiB", "MiB", "GiB", "TiB" ("65536", "64KiB", "1MiB"); decimal units
 * (KB, MB) are rejected as ambiguous. Must lie in [@p min, @p max]; @p def
 * when unset (not range-checked).
 * @return ATR_E_CONFIG naming the key.
 */
ATR_MUST_CHECK atr_status atr_config_get_size(uint64_t *out, const struct atr_config *cfg,
                                              const char *key, uint64_t def, uint64_t min,
                                              uint64_t max, struct atr_err *err);

#endif /* ATR_BASE_CONFIG_H */
