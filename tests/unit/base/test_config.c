/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/config.h"

static struct atr_config *cfg_new(void)
{
    struct atr_config *cfg = NULL;
    assert_int_equal(atr_config_new(&cfg), ATR_OK);
    assert_non_null(cfg);
    return cfg;
}

/* Loads @p text, expecting @p want; on error the message must contain @p needle. */
static void load_expect(struct atr_config *cfg, const char *text, atr_status want,
                        const char *needle)
{
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_config_load_string(cfg, text, strlen(text), "t.ini", &err);
    if (rc != want)
        fail_msg("load gave %s (%s), want %s for:\n%s", atr_status_name(rc), err.msg,
                 atr_status_name(want), text);
    if (needle != NULL && strstr(err.msg, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

/* Writes @p text to a temporary file; returns its path (static storage). */
static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/atr_cfg_test_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* A mutable copy of a NULL-terminated list (envp holds char *, -Wwrite-strings). */
static char **env_dup(const char *const *list)
{
    size_t n = 0;
    while (list[n] != NULL)
        n++;
    char **out = calloc(n + 1, sizeof(*out));
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(list[i]);
        assert_non_null(out[i]);
    }
    return out;
}

static void env_free(char **env)
{
    for (size_t i = 0; env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

static void test_load_string_basic(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    load_expect(cfg,
                "; comment\n"
                "# another\n"
                "[Server]\n"
                "Port = 8443\n"
                "bind=127.0.0.1 ; inline comment\n"
                "\n"
                "[log]\r\n"
                "level = debug\r\n"
                "path = a;b\n"
                "empty =\n",
                ATR_OK, NULL);
    assert_int_equal(atr_config_count(cfg), 5);
    assert_string_equal(atr_config_get(cfg, "server.port"), "8443");
    assert_string_equal(atr_config_get(cfg, "SERVER.PORT"), "8443");
    assert_string_equal(atr_config_get(cfg, "server.bind"), "127.0.0.1");
    assert_string_equal(atr_config_get(cfg, "log.level"), "debug");
    assert_string_equal(atr_config_get(cfg, "log.path"), "a;b");
    assert_string_equal(atr_config_get(cfg, "log.empty"), "");
    assert_null(atr_config_get(cfg, "log.nothing"));
    assert_string_equal(atr_config_get_str(cfg, "log.nothing", "dflt"), "dflt");
    assert_string_equal(atr_config_get_str(cfg, "log.level", "dflt"), "debug");
    assert_null(atr_config_get(NULL, "x.y"));
    /* an empty text is fine */
    load_expect(cfg, "", ATR_OK, NULL);
    assert_int_equal(atr_config_count(cfg), 5);
    atr_config_free(cfg);
    atr_config_free(NULL);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    load_expect(cfg, "[a]\nx = 1\nno equals sign\n", ATR_E_CONFIG, "t.ini:3: syntax error");
    load_expect(cfg, "[a\nx = 1\n", ATR_E_CONFIG, "t.ini:1: syntax error");
    load_expect(cfg, "[a]\nx=1\n\n\n[b]\ny=2\nz\nw\n", ATR_E_CONFIG, "t.ini:7:");
    load_expect(cfg, "x = 1\n", ATR_E_CONFIG, "outside of any [section]");
    load_expect(cfg, "[a.b]\nx = 1\n", ATR_E_CONFIG, "invalid section name");
    load_expect(cfg, "[a_b]\nx = 1\n", ATR_E_CONFIG, "invalid section name");
    load_expect(cfg, "[a]\nx.y = 1\n", ATR_E_CONFIG, "invalid key name");
    load_expect(cfg, "[a]\n= 1\n", ATR_E_CONFIG, "invalid key name");
    load_expect(cfg, "[a]\nx = 1\nX = 2\n", ATR_E_CONFIG, "duplicate key 'a.x'");
    load_expect(cfg, "[a]\nx = 1\n  continued\n", ATR_E_CONFIG, "duplicate key 'a.x'");
    load_expect(cfg, "[a]\nx = 1\n[A]\nx = 2\n", ATR_E_CONFIG, "duplicate key");
    static const char nul[] = "[a]\nx = 1\ny = \0\n";
    struct atr_err err;
    assert_int_equal(atr_config_load_string(cfg, nul, sizeof(nul) - 1, NULL, &err), ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "<memory>:3: NUL byte"));
    /* nothing of the failed loads was applied */
    assert_int_equal(atr_config_count(cfg), 0);
    atr_config_free(cfg);
}

static void test_limits(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    char text[1024];
    char val[ATR_CONFIG_MAX_LINE + 2];

    /* a line of exactly ATR_CONFIG_MAX_LINE bytes is read whole by inih */
    size_t vlen = ATR_CONFIG_MAX_LINE - strlen("k=");
    memset(val, 'v', vlen);
    val[vlen] = '\0';
    snprintf(text, sizeof(text), "[s]\r\nk=%s\r\nafter=1\r\n", val);
    load_expect(cfg, text, ATR_OK, NULL);
    assert_string_equal(atr_config_get(cfg, "s.k"), val);
    assert_string_equal(atr_config_get(cfg, "s.after"), "1");

    /* one byte more is rejected with its line number, never split */
    snprintf(text, sizeof(text), "[t]\n\nk=%sv\n", val);
    load_expect(cfg, text, ATR_E_CONFIG, "t.ini:3: line longer than");
    snprintf(text, sizeof(text), "[t]\nk=%svv", val);
    load_expect(cfg, text, ATR_E_CONFIG, "t.ini:2: line longer than");
    atr_config_free(cfg);

    /* entry count */
    cfg = cfg_new();
    size_t cap = 64 + ATR_CONFIG_MAX_ENTRIES * 16;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t off = (size_t)snprintf(big, cap, "[s]\n");
    for (int i = 0; i < ATR_CONFIG_MAX_ENTRIES; i++)
        off += (size_t)snprintf(big + off, cap - off, "k%d=%d\n", i, i);
    load_expect(cfg, big, ATR_OK, NULL);
    assert_int_equal(atr_config_count(cfg), ATR_CONFIG_MAX_ENTRIES);
    /* overriding existing keys is fine, a new one is not */
    load_expect(cfg, "[s]\nk0=x\n", ATR_OK, NULL);
    load_expect(cfg, "[s]\nk0=y\nnew=1\n", ATR_E_CONFIG, "more than");
    assert_string_equal(atr_config_get(cfg, "s.k0"), "x");
    struct atr_err err;
    assert_int_equal(atr_config_set(cfg, "s.other", "1", &err), ATR_E_CONFIG);
    static const char *const env_new[] = {"ATREST_S_ENVNEW=1", NULL};
    char **env = env_dup(env_new);
    assert_int_equal(atr_config_load_env(cfg, NULL, env, &err), ATR_E_CONFIG);
    env_free(env);
    atr_config_free(cfg);

    cfg = cfg_new();
    off += (size_t)snprintf(big + off, cap - off, "one=more\n");
    load_expect(cfg, big, ATR_E_CONFIG, "too many entries");
    assert_int_equal(atr_config_count(cfg), 0);
    free(big);

    /* size of the whole text */
    char *huge = calloc(1, (size_t)ATR_CONFIG_MAX_FILE + 2);
    assert_non_null(huge);
    memset(huge, '\n', (size_t)ATR_CONFIG_MAX_FILE + 1);
    assert_int_equal(atr_config_load_string(cfg, huge, (size_t)ATR_CONFIG_MAX_FILE + 1, NULL, &err),
                     ATR_E_TOO_LARGE);
    assert_int_equal(atr_config_load_string(cfg, huge, ATR_CONFIG_MAX_FILE, NULL, &err), ATR_OK);
    free(huge);

    /* key and value lengths through set */
    char longval[ATR_CONFIG_MAX_VALUE + 2];
    memset(longval, 'x', sizeof(longval) - 1);
    longval[sizeof(longval) - 1] = '\0';
    assert_int_equal(atr_config_set(cfg, "a.b", longval, &err), ATR_E_INVALID);
    longval[ATR_CONFIG_MAX_VALUE] = '\0';
    assert_int_equal(atr_config_set(cfg, "a.b", longval, &err), ATR_OK);
    char longkey[ATR_CONFIG_MAX_KEY + 1];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[0] = 'a';
    longkey[1] = '.';
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(atr_config_set(cfg, longkey, "1", &err), ATR_E_INVALID);
    atr_config_free(cfg);
}

static void test_file_and_env_precedence(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    const char *path = write_tmp("[server]\nport = 8443\nbind = 0.0.0.0\n[log]\nlevel = info\n");
    assert_int_equal(atr_config_load_file(cfg, path, &err), ATR_OK);
    unlink(path);
    static const char *const env_list[] = {
        "PATH=/usr/bin",
        "ATREST_SERVER_PORT=9443",
        "ATREST_SERVER_MAX_BODY=1MiB",
        "atrest_server_bind=lower-prefix-ignored",
        "ATREST_CONFIG=/etc/atrest.ini", /* no key part: ignored */
        "ATREST_=x",
        "ATREST__X=x",
        "ATREST_S_=x",
        "ATREST_A-B_C=x", /* invalid section: ignored */
        "ATREST_LOG_LEVEL",
        "ATRESTX_LOG_LEVEL=error",
        "ATREST_Log_Level=debug",
        "ATREST_LOG_LEVEL=warn", /* later wins */
        NULL,
    };
    char **env = env_dup(env_list);
    assert_int_equal(atr_config_load_env(cfg, NULL, env, &err), ATR_OK);
    env_free(env);
    assert_string_equal(atr_config_get(cfg, "server.port"), "9443");
    assert_string_equal(atr_config_get(cfg, "server.max_body"), "1MiB");
    assert_string_equal(atr_config_get(cfg, "server.bind"), "0.0.0.0");
    assert_string_equal(atr_config_get(cfg, "log.level"), "warn");
    assert_int_equal(atr_config_count(cfg), 4);
    /* defaults come last */
    int64_t port;
    assert_int_equal(atr_config_get_int(&port, cfg, "server.port", 1, 1, 65535, &err), ATR_OK);
    assert_int_equal(port, 9443);
    int64_t workers;
    assert_int_equal(atr_config_get_int(&workers, cfg, "server.workers", 4, 1, 64, &err), ATR_OK);
    assert_int_equal(workers, 4);
    /* explicit sets win over both */
    assert_int_equal(atr_config_set(cfg, "Server.Port", "10443", &err), ATR_OK);
    assert_string_equal(atr_config_get(cfg, "server.port"), "10443");

    /* custom prefix */
    static const char *const env2_list[] = {"MYAPP_DB_URL=sqlite:x", "ATREST_DB_URL=no", NULL};
    char **env2 = env_dup(env2_list);
    assert_int_equal(atr_config_load_env(cfg, "MYAPP", env2, &err), ATR_OK);
    assert_string_equal(atr_config_get(cfg, "db.url"), "sqlite:x");
    assert_int_equal(atr_config_load_env(cfg, "", env2, &err), ATR_E_INVALID);
    env_free(env2);

    /* too long a value names the variable, nothing is applied */
    size_t n = ATR_CONFIG_MAX_VALUE + 64;
    char *longvar = malloc(n);
    assert_non_null(longvar);
    int pre = snprintf(longvar, n, "ATREST_DB_URL=");
    memset(longvar + pre, 'u', n - (size_t)pre - 1);
    longvar[n - 1] = '\0';
    const char *const env3_list[] = {"ATREST_DB_NEW=1", longvar, NULL};
    char **env3 = env_dup(env3_list);
    assert_int_equal(atr_config_load_env(cfg, NULL, env3, &err), ATR_E_CONFIG);
    env_free(env3);
    assert_non_null(strstr(err.msg, "ATREST_DB_URL"));
    assert_null(atr_config_get(cfg, "db.new"));
    free(longvar);

    /* the process environment */
    setenv("ATREST_PROC_FLAG", "on", 1);
    assert_int_equal(atr_config_load_env(cfg, NULL, NULL, &err), ATR_OK);
    unsetenv("ATREST_PROC_FLAG");
    bool flag = false;
    assert_int_equal(atr_config_get_bool(&flag, cfg, "proc.flag", false, &err), ATR_OK);
    assert_true(flag);
    atr_config_free(cfg);
}

static void test_file_errors(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    assert_int_equal(atr_config_load_file(cfg, "/nonexistent/atrest.ini", &err), ATR_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/atrest.ini"));
    assert_int_equal(atr_config_load_file(cfg, "/tmp", &err), ATR_E_IO);
    assert_non_null(strstr(err.msg, "/tmp"));
    const char *path = write_tmp("[a]\nx = 1\n\nbroken line\n");
    assert_int_equal(atr_config_load_file(cfg, path, &err), ATR_E_CONFIG);
    char want[96];
    snprintf(want, sizeof(want), "%s:4: syntax error", path);
    assert_non_null(strstr(err.msg, want));
    unlink(path);
    assert_int_equal(atr_config_count(cfg), 0);
    atr_config_free(cfg);
}

static void test_set_keys(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    static const char *const bad[] = {"nodot", ".x", "x.", "a.b.c", "a b.c", "a.b c", "a_b.c", ""};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        atr_err_clear(&err);
        if (atr_config_set(cfg, bad[i], "v", &err) != ATR_E_INVALID)
            fail_msg("key '%s' accepted", bad[i]);
        assert_true(strlen(err.msg) > 0);
    }
    assert_int_equal(atr_config_set(cfg, "a.b_c", "1", &err), ATR_OK);
    assert_int_equal(atr_config_set(cfg, "A.B_C", "2", &err), ATR_OK);
    assert_int_equal(atr_config_count(cfg), 1);
    assert_string_equal(atr_config_get(cfg, "a.b_c"), "2");
    atr_config_free(cfg);
}

static void test_get_int(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    static const struct {
        const char *v;
        int64_t want;
    } ok[] = {{"0", 0},
              {"-0", 0},
              {"8443", 8443},
              {"-12", -12},
              {"007", 7},
              {"9223372036854775807", INT64_MAX},
              {"-9223372036854775808", INT64_MIN}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(ok); i++) {
        assert_int_equal(atr_config_set(cfg, "a.n", ok[i].v, &err), ATR_OK);
        int64_t out = 42;
        assert_int_equal(atr_config_get_int(&out, cfg, "a.n", 0, INT64_MIN, INT64_MAX, &err),
                         ATR_OK);
        assert_true(out == ok[i].want);
    }
    static const char *const bad[] = {"",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "0x10",
                                      "1e3",
                                      "1.0",
                                      "-",
                                      "--1",
                                      "abc",
                                      "12a",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "99999999999999999999"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        assert_int_equal(atr_config_set(cfg, "a.n", bad[i], &err), ATR_OK);
        int64_t out = 42;
        atr_err_clear(&err);
        if (atr_config_get_int(&out, cfg, "a.n", 0, INT64_MIN, INT64_MAX, &err) != ATR_E_CONFIG)
            fail_msg("'%s' accepted as integer", bad[i]);
        assert_int_equal(out, 42);
        assert_non_null(strstr(err.msg, "a.n"));
    }
    assert_int_equal(atr_config_set(cfg, "server.port", "70000", &err), ATR_OK);
    int64_t port = 0;
    assert_int_equal(atr_config_get_int(&port, cfg, "server.port", 8443, 1, 65535, &err),
                     ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "server.port"));
    assert_non_null(strstr(err.msg, "65535"));
    assert_null(strstr(err.msg, "70000")); /* values are never echoed */
    assert_int_equal(atr_config_set(cfg, "server.port", "0", &err), ATR_OK);
    assert_int_equal(atr_config_get_int(&port, cfg, "server.port", 8443, 1, 65535, &err),
                     ATR_E_CONFIG);
    assert_int_equal(atr_config_get_int(&port, cfg, "server.other", 8443, 1, 65535, &err), ATR_OK);
    assert_int_equal(port, 8443);
    atr_config_free(cfg);
}

static void test_get_bool(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    static const char *const yes[] = {"true", "TRUE", "yes", "Yes", "on", "1"};
    static const char *const no[] = {"false", "False", "no", "NO", "off", "0"};
    static const char *const bad[] = {"", "y", "n", "2", "enabled", "true ", "tru", "01"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(yes); i++) {
        bool out = false;
        assert_int_equal(atr_config_set(cfg, "a.b", yes[i], &err), ATR_OK);
        assert_int_equal(atr_config_get_bool(&out, cfg, "a.b", false, &err), ATR_OK);
        assert_true(out);
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(no); i++) {
        bool out = true;
        assert_int_equal(atr_config_set(cfg, "a.b", no[i], &err), ATR_OK);
        assert_int_equal(atr_config_get_bool(&out, cfg, "a.b", true, &err), ATR_OK);
        assert_false(out);
    }
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        bool out = true;
        assert_int_equal(atr_config_set(cfg, "a.b", bad[i], &err), ATR_OK);
        if (atr_config_get_bool(&out, cfg, "a.b", true, &err) != ATR_E_CONFIG)
            fail_msg("'%s' accepted as boolean", bad[i]);
        assert_non_null(strstr(err.msg, "a.b"));
        assert_true(out);
    }
    bool out = false;
    assert_int_equal(atr_config_get_bool(&out, cfg, "a.unset", true, &err), ATR_OK);
    assert_true(out);
    atr_config_free(cfg);
}

static void test_get_duration(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    static const struct {
        const char *v;
        int64_t want;
    } ok[] = {{"250ms", 250},
              {"15s", 15000},
              {"5m", 300000},
              {"1h", 3600000},
              {"2d", 172800000},
              {"0s", 0},
              {"0ms", 0},
              {"007s", 7000},
              {"9223372036854775807ms", INT64_MAX},
              {"106751991167d", 106751991167LL * 86400000LL}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(ok); i++) {
        int64_t out = -1;
        assert_int_equal(atr_config_set(cfg, "t.d", ok[i].v, &err), ATR_OK);
        if (atr_config_get_duration_ms(&out, cfg, "t.d", 0, 0, INT64_MAX, &err) != ATR_OK)
            fail_msg("'%s' rejected: %s", ok[i].v, err.msg);
        assert_true(out == ok[i].want);
    }
    static const char *const bad[] = {"",
                                      "15",
                                      "s",
                                      "-1s",
                                      "+1s",
                                      "1.5s",
                                      "1h30m",
                                      "15 s",
                                      " 15s",
                                      "15S",
                                      "15sec",
                                      "15us",
                                      "1w",
                                      "abc",
                                      "9223372036854775808ms",
                                      "9223372036854775807s",
                                      "106751991167301d",
                                      "99999999999999999999999s"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        int64_t out = -1;
        assert_int_equal(atr_config_set(cfg, "t.d", bad[i], &err), ATR_OK);
        atr_err_clear(&err);
        if (atr_config_get_duration_ms(&out, cfg, "t.d", 0, 0, INT64_MAX, &err) != ATR_E_CONFIG)
            fail_msg("'%s' accepted as duration", bad[i]);
        assert_int_equal(out, -1);
        assert_non_null(strstr(err.msg, "t.d"));
    }
    /* range */
    int64_t out = -1;
    assert_int_equal(atr_config_set(cfg, "t.d", "2h", &err), ATR_OK);
    assert_int_equal(atr_config_get_duration_ms(&out, cfg, "t.d", 0, 1000, 3600000, &err),
                     ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "t.d: must be between 1000 ms and 3600000 ms"));
    assert_int_equal(atr_config_get_duration_ms(&out, cfg, "t.unset", 1500, 0, 10, &err), ATR_OK);
    assert_int_equal(out, 1500);
    atr_config_free(cfg);
}

static void test_get_size(void **state)
{
    (void)state;
    struct atr_config *cfg = cfg_new();
    struct atr_err err;
    static const struct {
        const char *v;
        uint64_t want;
    } ok[] = {{"0", 0},
              {"65536", 65536},
              {"100B", 100},
              {"64KiB", 65536},
              {"1MiB", 1048576},
              {"2GiB", 2147483648ULL},
              {"1TiB", 1099511627776ULL},
              {"18446744073709551615", UINT64_MAX},
              {"16777215TiB", 16777215ULL << 40}};
    for (size_t i = 0; i < ATR_ARRAY_LEN(ok); i++) {
        uint64_t out = 1;
        assert_int_equal(atr_config_set(cfg, "s.z", ok[i].v, &err), ATR_OK);
        if (atr_config_get_size(&out, cfg, "s.z", 0, 0, UINT64_MAX, &err) != ATR_OK)
            fail_msg("'%s' rejected: %s", ok[i].v, err.msg);
        assert_true(out == ok[i].want);
    }
    static const char *const bad[] = {"",
                                      "KiB",
                                      "-1",
                                      "+1",
                                      "1.5MiB",
                                      "1 MiB",
                                      "1KB",
                                      "1MB",
                                      "1k",
                                      "1K",
                                      "1kib",
                                      "1M",
                                      "0x10",
                                      "1PiB",
                                      "1MiBx",
                                      " 1",
                                      "18446744073709551616",
                                      "16777216TiB"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        uint64_t out = 1;
        assert_int_equal(atr_config_set(cfg, "s.z", bad[i], &err), ATR_OK);
        atr_err_clear(&err);
        if (atr_config_get_size(&out, cfg, "s.z", 0, 0, UINT64_MAX, &err) != ATR_E_CONFIG)
            fail_msg("'%s' accepted as size", bad[i]);
        assert_int_equal(out, 1);
        assert_non_null(strstr(err.msg, "s.z"));
    }
    uint64_t out = 0;
    assert_int_equal(atr_config_set(cfg, "s.z", "2MiB", &err), ATR_OK);
    assert_int_equal(atr_config_get_size(&out, cfg, "s.z", 0, 1, 1048576, &err), ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "s.z: must be between 1 and 1048576 bytes"));
    assert_int_equal(atr_config_get_size(&out, cfg, "s.unset", 4096, 0, 1, &err), ATR_OK);
    assert_int_equal(out, 4096);
    atr_config_free(cfg);
}

/* Every allocation failure is reported as ATR_E_NOMEM and leaves cfg intact. */
static void test_nomem(void **state)
{
    (void)state;
    const char *text = "[a]\nx = 1\ny = 2\n[b]\nz = 3\n";
    static const char *const env_list[] = {"ATREST_C_W=4", "ATREST_A_X=5", NULL};
    char **env = env_dup(env_list);
    int ok = 0;
    for (unsigned long nth = 1; nth < 200 && !ok; nth++) {
        struct atr_config *cfg = NULL;
        struct atr_err err;
        atr_alloc_fail_after(nth);
        atr_status rc = atr_config_new(&cfg);
        if (rc == ATR_OK)
            rc = atr_config_load_string(cfg, text, strlen(text), NULL, &err);
        if (rc == ATR_OK)
            rc = atr_config_load_env(cfg, NULL, env, &err);
        if (rc == ATR_OK)
            rc = atr_config_set(cfg, "d.v", "6", &err);
        atr_alloc_fail_reset();
        if (rc == ATR_OK) {
            ok = 1;
            assert_string_equal(atr_config_get(cfg, "a.x"), "5");
            assert_int_equal(atr_config_count(cfg), 5);
        } else {
            assert_int_equal(rc, ATR_E_NOMEM);
        }
        atr_config_free(cfg);
    }
    env_free(env);
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_string_basic),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_file_and_env_precedence),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_set_keys),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_get_duration),
        cmocka_unit_test(test_get_size),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
