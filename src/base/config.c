/* SPDX-License-Identifier: Apache-2.0 */
#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "base/alloc.h"

/*
 * Entries live in an unsorted array searched linearly: at most
 * ATR_CONFIG_MAX_ENTRIES of them, read at start-up.
 *
 * Every load first collects its entries in a staging configuration and only
 * then commits them: stage_commit() reserves all memory before it changes
 * anything, so a failed load leaves the target untouched.
 *
 * Error messages name keys (or environment variables and line numbers) but
 * never echo values: a mistyped value may be a secret.
 */

struct entry {
    char *key;   /* "section.key", lowercased, owned */
    char *value; /* owned */
};

struct atr_config {
    struct entry *v;
    size_t n;
    size_t cap;
};

atr_status atr_config_new(struct atr_config **out)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = atr_calloc(1, sizeof(**out));
    return *out == NULL ? ATR_E_NOMEM : ATR_OK;
}

void atr_config_free(struct atr_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        atr_free(cfg->v[i].key);
        atr_free(cfg->v[i].value);
    }
    atr_free(cfg->v);
    atr_free(cfg);
}

size_t atr_config_count(const struct atr_config *cfg)
{
    return cfg == NULL ? 0 : cfg->n;
}

const char *atr_config_key_at(const struct atr_config *cfg, size_t i)
{
    return (cfg == NULL || i >= cfg->n) ? NULL : cfg->v[i].key;
}

static struct entry *find(const struct atr_config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcasecmp(cfg->v[i].key, key) == 0)
            return &cfg->v[i];
    }
    return NULL;
}

/* Makes room for @p want entries in total. */
static atr_status reserve(struct atr_config *cfg, size_t want)
{
    if (want <= cfg->cap)
        return ATR_OK;
    size_t cap = cfg->cap < 8 ? 8 : cfg->cap;
    while (cap < want)
        cap *= 2;
    struct entry *v = atr_realloc(cfg->v, cap * sizeof(*v));
    if (v == NULL)
        return ATR_E_NOMEM;
    cfg->v = v;
    cfg->cap = cap;
    return ATR_OK;
}

/* ---- names ----------------------------------------------------------------- */

static int is_section_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_key_char(char c)
{
    return is_section_char(c) || c == '_';
}

/* 1 if the @p len bytes at @p s are a non-empty section (or key) name. */
static int valid_name(const char *s, size_t len, int key)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!(key ? is_key_char(s[i]) : is_section_char(s[i])))
            return 0;
    }
    return 1;
}

/* A printable, bounded copy of untrusted text for an error message. */
static void printable(char out[48], const char *in, size_t len)
{
    size_t i;
    for (i = 0; i < len && i < 40; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    size_t o = i;
    if (i < len)
        memcpy(out + o, "...", 4);
    else
        out[o] = '\0';
}

/* Joins section and key into a new lowercased "section.key". */
static char *join_key(const char *sec, size_t sec_len, const char *key, size_t key_len)
{
    char *k = atr_malloc(sec_len + key_len + 2);
    if (k == NULL)
        return NULL;
    for (size_t i = 0; i < sec_len; i++)
        k[i] = (char)tolower((unsigned char)sec[i]);
    k[sec_len] = '.';
    for (size_t i = 0; i < key_len; i++)
        k[sec_len + 1 + i] = (char)tolower((unsigned char)key[i]);
    k[sec_len + key_len + 1] = '\0';
    return k;
}

/* ---- staging --------------------------------------------------------------- */

/*
 * Adds key (ownership taken, also on error) = copy of value to @p stage.
 * A key already staged is replaced when @p replace, else reported as
 * ATR_E_CONFIG with *@p dup set. ATR_E_TOO_LARGE: the stage is full.
 */
static atr_status stage_put(struct atr_config *stage, char *key, const char *value, int replace,
                            int *dup)
{
    atr_status rc = ATR_OK;
    char *val = NULL;
    struct entry *e = find(stage, key);
    if (e != NULL && !replace) {
        *dup = 1;
        rc = ATR_E_CONFIG;
        goto done;
    }
    if (e == NULL && stage->n >= ATR_CONFIG_MAX_ENTRIES) {
        rc = ATR_E_TOO_LARGE;
        goto done;
    }
    if ((val = atr_strdup(value)) == NULL) {
        rc = ATR_E_NOMEM;
        goto done;
    }
    if (e != NULL) {
        atr_free(e->value);
        e->value = val;
        val = NULL;
        goto done;
    }
    if ((rc = reserve(stage, stage->n + 1)) != ATR_OK)
        goto done;
    stage->v[stage->n].key = key;
    stage->v[stage->n].value = val;
    stage->n++;
    key = NULL;
    val = NULL;
done:
    atr_free(key);
    atr_free(val);
    return rc;
}

/* Moves every staged entry into @p cfg; on error @p cfg is unchanged. */
static atr_status stage_commit(struct atr_config *cfg, struct atr_config *stage, const char *origin,
                               struct atr_err *err)
{
    size_t added = 0;
    for (size_t i = 0; i < stage->n; i++) {
        if (find(cfg, stage->v[i].key) == NULL)
            added++;
    }
    if (cfg->n + added > ATR_CONFIG_MAX_ENTRIES)
        return atr_err_set(err, ATR_E_CONFIG, "%s: more than %d configuration entries", origin,
                           ATR_CONFIG_MAX_ENTRIES);
    if (reserve(cfg, cfg->n + added) != ATR_OK)
        return atr_err_set(err, ATR_E_NOMEM, "%s: out of memory", origin);
    /* nothing below can fail */
    for (size_t i = 0; i < stage->n; i++) {
        struct entry *s = &stage->v[i];
        struct entry *e = find(cfg, s->key);
        if (e != NULL) {
            atr_free(e->value);
            e->value = s->value;
            atr_free(s->key);
        } else {
            cfg->v[cfg->n++] = *s;
        }
        s->key = NULL;
        s->value = NULL;
    }
    stage->n = 0;
    return ATR_OK;
}

static void stage_cleanup(struct atr_config *stage)
{
    for (size_t i = 0; i < stage->n; i++) {
        atr_free(stage->v[i].key);
        atr_free(stage->v[i].value);
    }
    atr_free(stage->v);
    memset(stage, 0, sizeof(*stage));
}

/* ---- INI text (inih) ------------------------------------------------------- */

struct ini_ctx {
    struct atr_config stage;
    atr_status rc; /* first error found by the handler */
    char msg[160]; /* its message, without the origin */
};

static void ctx_fail(struct ini_ctx *ctx, atr_status rc, const char *what, const char *name,
                     size_t name_len)
{
    if (ctx->rc != ATR_OK)
        return;
    char shown[48];
    printable(shown, name, name_len);
    ctx->rc = rc;
    snprintf(ctx->msg, sizeof(ctx->msg), "%s '%s'", what, shown);
}

/*
 * inih callback. It always returns 1 (success) so that the line number inih
 * reports is that of a syntax error only; handler errors are recorded in the
 * context and name the key instead.
 */
static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    if (ctx->rc != ATR_OK)
        return 1;
    size_t sec_len = strlen(section);
    size_t name_len = strlen(name);
    if (sec_len == 0) {
        ctx_fail(ctx, ATR_E_CONFIG, "entry outside of any [section]:", name, name_len);
        return 1;
    }
    if (!valid_name(section, sec_len, 0)) {
        ctx_fail(ctx, ATR_E_CONFIG, "invalid section name (use letters and digits):", section,
                 sec_len);
        return 1;
    }
    if (!valid_name(name, name_len, 1)) {
        ctx_fail(ctx, ATR_E_CONFIG, "invalid key name (use letters, digits and _):", name,
                 name_len);
        return 1;
    }
    if (sec_len + 1 + name_len >= ATR_CONFIG_MAX_KEY) {
        ctx_fail(ctx, ATR_E_CONFIG, "key name too long:", name, name_len);
        return 1;
    }
    char *key = join_key(section, sec_len, name, name_len);
    if (key == NULL) {
        ctx->rc = ATR_E_NOMEM;
        snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
        return 1;
    }
    if (strlen(value) > ATR_CONFIG_MAX_VALUE) {
        ctx_fail(ctx, ATR_E_CONFIG, "value too long for", key, strlen(key));
        atr_free(key);
        return 1;
    }
    char shown[ATR_CONFIG_MAX_KEY];
    snprintf(shown, sizeof(shown), "%s", key);
    int dup = 0;
    atr_status rc = stage_put(&ctx->stage, key, value, 0, &dup);
    if (rc == ATR_E_NOMEM) {
        ctx->rc = ATR_E_NOMEM;
        snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
    } else if (dup) {
        ctx_fail(ctx, ATR_E_CONFIG, "duplicate key", shown, strlen(shown));
    } else if (rc != ATR_OK) {
        ctx_fail(ctx, ATR_E_CONFIG, "too many entries at", shown, strlen(shown));
    }
    return 1;
}

/*
 * Checks what inih cannot report itself: NUL bytes (the text is a C string
 * for inih) and lines longer than ATR_CONFIG_MAX_LINE (inih would split them
 * at its buffer size and parse the rest as a new line).
 */
static atr_status check_lines(const char *text, size_t len, const char *origin, struct atr_err *err)
{
    size_t line = 1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] == '\0')
            return atr_err_set(err, ATR_E_CONFIG, "%s:%zu: NUL byte in configuration text", origin,
                               line);
        if (i == len || text[i] == '\n') {
            size_t n = i - start;
            if (n > 0 && text[i - 1] == '\r')
                n--;
            if (n > ATR_CONFIG_MAX_LINE)
                return atr_err_set(err, ATR_E_CONFIG, "%s:%zu: line longer than %d bytes", origin,
                                   line, ATR_CONFIG_MAX_LINE);
            line++;
            start = i + 1;
        }
    }
    return ATR_OK;
}

atr_status atr_config_load_string(struct atr_config *cfg, const char *text, size_t len,
                                  const char *origin, struct atr_err *err)
{
    ATR_ASSERT_ARG(cfg != NULL);
    ATR_ASSERT_ARG(text != NULL || len == 0);
    atr_status rc;
    char *copy = NULL;
    struct ini_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    if (origin == NULL)
        origin = "<memory>";
    if (len > ATR_CONFIG_MAX_FILE) {
        rc = atr_err_set(err, ATR_E_TOO_LARGE, "%s: configuration larger than %d bytes", origin,
                         ATR_CONFIG_MAX_FILE);
        goto done;
    }
    if ((rc = check_lines(text, len, origin, err)) != ATR_OK)
        goto done;
    if ((copy = atr_malloc(len + 1)) == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "%s: out of memory", origin);
        goto done;
    }
    if (len > 0)
        memcpy(copy, text, len);
    copy[len] = '\0';
    int line = ini_parse_string(copy, on_ini_entry, &ctx);
    if (line > 0) {
        rc = atr_err_set(err, ATR_E_CONFIG,
                         "%s:%d: syntax error (expected [section] or key = value)", origin, line);
        goto done;
    }
    if (line < 0) {
        rc = atr_err_set(err, ATR_E_NOMEM, "%s: out of memory", origin);
        goto done;
    }
    if (ctx.rc != ATR_OK) {
        rc = atr_err_set(err, ctx.rc, "%s: %s", origin, ctx.msg);
        goto done;
    }
    rc = stage_commit(cfg, &ctx.stage, origin, err);
done:
    stage_cleanup(&ctx.stage);
    atr_free(copy);
    return rc;
}

atr_status atr_config_load_file(struct atr_config *cfg, const char *path, struct atr_err *err)
{
    ATR_ASSERT_ARG(cfg != NULL);
    ATR_ASSERT_ARG(path != NULL);
    atr_status rc = ATR_OK;
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return atr_err_set(err, ATR_E_NOT_FOUND, "configuration file %s not found", path);
        return atr_err_set(err, ATR_E_IO, "cannot open configuration file %s: %s", path,
                           strerror(errno));
    }
    /* one byte more than allowed, to tell "exactly the limit" from "over" */
    if ((text = atr_malloc((size_t)ATR_CONFIG_MAX_FILE + 1)) == NULL) {
        rc = atr_err_set(err, ATR_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t len = fread(text, 1, (size_t)ATR_CONFIG_MAX_FILE + 1, f);
    if (ferror(f)) {
        rc = atr_err_set(err, ATR_E_IO, "cannot read configuration file %s", path);
        goto done;
    }
    rc = atr_config_load_string(cfg, text, len, path, err);
done:
    atr_free(text);
    fclose(f);
    return rc;
}

/* ---- environment ----------------------------------------------------------- */

extern char **environ;

atr_status atr_config_load_env(struct atr_config *cfg, const char *prefix, char *const *envp,
                               struct atr_err *err)
{
    ATR_ASSERT_ARG(cfg != NULL);
    atr_status rc = ATR_OK;
    struct atr_config stage;
    memset(&stage, 0, sizeof(stage));
    if (prefix == NULL)
        prefix = "ATREST";
    if (envp == NULL)
        envp = environ;
    size_t plen = strlen(prefix);
    if (plen == 0)
        return atr_err_set(err, ATR_E_INVALID, "empty environment prefix");
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *var = envp[i];
        const char *eq = strchr(var, '=');
        if (eq == NULL || strncmp(var, prefix, plen) != 0 || var[plen] != '_')
            continue;
        const char *sec = var + plen + 1;
        const char *us = memchr(sec, '_', (size_t)(eq - sec));
        if (us == NULL)
            continue;
        size_t sec_len = (size_t)(us - sec);
        const char *name = us + 1;
        size_t name_len = (size_t)(eq - name);
        if (!valid_name(sec, sec_len, 0) || !valid_name(name, name_len, 1))
            continue;
        size_t var_len = (size_t)(eq - var);
        if (sec_len + 1 + name_len >= ATR_CONFIG_MAX_KEY) {
            rc =
                atr_err_set(err, ATR_E_CONFIG, "environment variable %.*s: name too long", 64, var);
            goto done;
        }
        if (strlen(eq + 1) > ATR_CONFIG_MAX_VALUE) {
            rc = atr_err_set(err, ATR_E_CONFIG,
                             "environment variable %.*s: value longer than %d bytes", (int)var_len,
                             var, ATR_CONFIG_MAX_VALUE);
            goto done;
        }
        char *key = join_key(sec, sec_len, name, name_len);
        if (key == NULL) {
            rc = atr_err_set(err, ATR_E_NOMEM, "environment: out of memory");
            goto done;
        }
        int dup = 0;
        rc = stage_put(&stage, key, eq + 1, 1, &dup);
        if (rc == ATR_E_NOMEM) {
            atr_err_set(err, rc, "environment: out of memory");
            goto done;
        }
        if (rc != ATR_OK) {
            rc = atr_err_set(err, ATR_E_CONFIG,
                             "environment variable %.*s: more than %d configuration entries",
                             (int)var_len, var, ATR_CONFIG_MAX_ENTRIES);
            goto done;
        }
    }
    rc = stage_commit(cfg, &stage, "environment", err);
done:
    stage_cleanup(&stage);
    return rc;
}

/* ---- set ------------------------------------------------------------------- */

atr_status atr_config_set(struct atr_config *cfg, const char *key, const char *value,
                          struct atr_err *err)
{
    ATR_ASSERT_ARG(cfg != NULL);
    ATR_ASSERT_ARG(key != NULL);
    ATR_ASSERT_ARG(value != NULL);
    atr_status rc;
    struct atr_config stage;
    memset(&stage, 0, sizeof(stage));
    char shown[48];
    printable(shown, key, strlen(key));
    const char *dot = strchr(key, '.');
    size_t klen = strlen(key);
    if (dot == NULL || klen >= ATR_CONFIG_MAX_KEY || !valid_name(key, (size_t)(dot - key), 0) ||
        !valid_name(dot + 1, klen - (size_t)(dot - key) - 1, 1))
        return atr_err_set(err, ATR_E_INVALID, "invalid configuration key '%s' (want section.key)",
                           shown);
    if (strlen(value) > ATR_CONFIG_MAX_VALUE)
        return atr_err_set(err, ATR_E_INVALID, "%s: value longer than %d bytes", shown,
                           ATR_CONFIG_MAX_VALUE);
    char *k = join_key(key, (size_t)(dot - key), dot + 1, klen - (size_t)(dot - key) - 1);
    if (k == NULL)
        return atr_err_set(err, ATR_E_NOMEM, "out of memory");
    int dup = 0;
    if ((rc = stage_put(&stage, k, value, 1, &dup)) != ATR_OK) {
        rc = atr_err_set(err, ATR_E_NOMEM, "out of memory");
        goto done;
    }
    rc = stage_commit(cfg, &stage, shown, err);
done:
    stage_cleanup(&stage);
    return rc;
}

/* ---- getters --------------------------------------------------------------- */

const char *atr_config_get(const struct atr_config *cfg, const char *key)
{
    if (cfg == NULL || key == NULL)
        return NULL;
    const struct entry *e = find(cfg, key);
    return e == NULL ? NULL : e->value;
}

const char *atr_config_get_str(const struct atr_config *cfg, const char *key, const char *def)
{
    const char *v = atr_config_get(cfg, key);
    return v == NULL ? def : v;
}

/* Parses a run of decimal digits at *@p s; 0 if none or above @p max. */
static int parse_digits(const char **s, uint64_t max, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return 1;
}

atr_status atr_config_get_int(int64_t *out, const struct atr_config *cfg, const char *key,
                              int64_t def, int64_t min, int64_t max, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(key != NULL);
    const char *v = atr_config_get(cfg, key);
    if (v == NULL) {
        *out = def;
        return ATR_OK;
    }
    const char *p = v;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    uint64_t mag;
    int ok =
        parse_digits(&p, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &mag) && *p == '\0';
    if (!ok)
        return atr_err_set(err, ATR_E_CONFIG, "%s: not an integer in [%lld, %lld]", key,
                           (long long)min, (long long)max);
    int64_t val = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    if (val < min || val > max)
        return atr_err_set(err, ATR_E_CONFIG, "%s: must be between %lld and %lld", key,
                           (long long)min, (long long)max);
    *out = val;
    return ATR_OK;
}

atr_status atr_config_get_bool(bool *out, const struct atr_config *cfg, const char *key, bool def,
                               struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(key != NULL);
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    const char *v = atr_config_get(cfg, key);
    if (v == NULL) {
        *out = def;
        return ATR_OK;
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return ATR_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return ATR_OK;
        }
    }
    return atr_err_set(err, ATR_E_CONFIG, "%s: not a boolean (use true/false, yes/no, on/off, 1/0)",
                       key);
}

atr_status atr_config_get_duration_ms(int64_t *out, const struct atr_config *cfg, const char *key,
                                      int64_t def_ms, int64_t min_ms, int64_t max_ms,
                                      struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(key != NULL);
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *v = atr_config_get(cfg, key);
    if (v == NULL) {
        *out = def_ms;
        return ATR_OK;
    }
    const char *p = v;
    uint64_t n;
    uint64_t mult = 0;
    if (parse_digits(&p, (uint64_t)INT64_MAX, &n)) {
        for (size_t i = 0; i < ATR_ARRAY_LEN(units); i++) {
            if (strcmp(p, units[i].unit) == 0)
                mult = units[i].ms;
        }
    }
    if (mult == 0)
        return atr_err_set(err, ATR_E_CONFIG,
                           "%s: not a duration (use a whole number and ms, s, m, h or d, "
                           "e.g. 250ms, 15s, 5m)",
                           key);
    if (n > (uint64_t)INT64_MAX / mult)
        return atr_err_set(err, ATR_E_CONFIG, "%s: duration too large", key);
    int64_t ms = (int64_t)(n * mult);
    if (ms < min_ms || ms > max_ms)
        return atr_err_set(err, ATR_E_CONFIG, "%s: must be between %lld ms and %lld ms", key,
                           (long long)min_ms, (long long)max_ms);
    *out = ms;
    return ATR_OK;
}

atr_status atr_config_get_size(uint64_t *out, const struct atr_config *cfg, const char *key,
                               uint64_t def, uint64_t min, uint64_t max, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(key != NULL);
    static const struct {
        const char *unit;
        uint64_t bytes;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", UINT64_C(1) << 10},
                 {"MiB", UINT64_C(1) << 20},
                 {"GiB", UINT64_C(1) << 30},
                 {"TiB", UINT64_C(1) << 40}};
    const char *v = atr_config_get(cfg, key);
    if (v == NULL) {
        *out = def;
        return ATR_OK;
    }
    const char *p = v;
    uint64_t n;
    uint64_t mult = 0;
    if (parse_digits(&p, UINT64_MAX, &n)) {
        for (size_t i = 0; i < ATR_ARRAY_LEN(units); i++) {
            if (strcmp(p, units[i].unit) == 0)
                mult = units[i].bytes;
        }
    }
    if (mult == 0)
        return atr_err_set(err, ATR_E_CONFIG,
                           "%s: not a size (use a whole number of bytes, optionally with B, KiB, "
                           "MiB, GiB or TiB)",
                           key);
    if (n > UINT64_MAX / mult)
        return atr_err_set(err, ATR_E_CONFIG, "%s: size too large", key);
    uint64_t bytes = n * mult;
    if (bytes < min || bytes > max)
        return atr_err_set(err, ATR_E_CONFIG, "%s: must be between %llu and %llu bytes", key,
                           (unsigned long long)min, (unsigned long long)max);
    *out = bytes;
    return ATR_OK;
}
