/* test_config: config_load layering (default < turbochat.conf < .env <
 * environment < flags), every error path naming its origin, REDIS_URL
 * parsing, listen and TLS checks, secret masking and the commands. Each test
 * runs in a fresh temporary directory so the files it writes are the only
 * turbochat.conf and .env config_load can see. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "test_help.h"

#define SRC_SUFFIX "tests/unit/test_config.c"

static char err[16384];
static char orig_cwd[PATH_MAX];
static char tmp_dir[PATH_MAX];
static char made[32][PATH_MAX]; /* files and directories to remove, in order */
static int nmade;

/* ---- temporary working directory ---------------------------------------- */

static int enter_tmpdir(void)
{
    if (orig_cwd[0] == '\0' && !getcwd(orig_cwd, sizeof(orig_cwd)))
        return -1;
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_config.XXXXXX");
    if (!mkdtemp(tmp_dir))
        return -1;
    nmade = 0;
    return chdir(tmp_dir);
}

static void leave_tmpdir(void)
{
    while (nmade > 0)
        remove(made[--nmade]);
    if (chdir(orig_cwd) != 0)
        perror("chdir");
    rmdir(tmp_dir);
}

static int write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    if (!f)
        return -1;
    fputs(text, f);
    fclose(f);
    if (nmade < 32)
        snprintf(made[nmade++], PATH_MAX, "%s", name);
    return 0;
}

static int make_dir(const char *name)
{
    if (mkdir(name, 0700) != 0)
        return -1;
    snprintf(made[nmade++], PATH_MAX, "%s", name);
    return 0;
}

/* The repository's turbochat.conf, found from this file's path. */
static void repo_conf_path(char *buf, size_t len)
{
    size_t n = strlen(__FILE__) - strlen(SRC_SUFFIX);
    if (__FILE__[0] == '/')
        snprintf(buf, len, "%.*s%s", (int)n, __FILE__, CONFIG_DEFAULT_FILE);
    else
        snprintf(buf, len, "%s/%.*s%s", orig_cwd, (int)n, __FILE__, CONFIG_DEFAULT_FILE);
}

/* ---- loading ------------------------------------------------------------ */

/* argv and env are NULL-terminated; argv[0] is added here. */
static int load(struct config *cfg, const char *const *args, const char *const *env)
{
    char *argv[32];
    int argc = 0;
    static char prog[] = "turbochat";
    argv[argc++] = prog;
    for (; args && *args && argc < 31; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return config_load(cfg, argc, argv, (char **)env, err, sizeof(err));
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

#define ERR_HAS(text)                                                                              \
    do {                                                                                           \
        if (!strstr(err, (text))) {                                                                \
            fprintf(stderr, "%s:%d: error text lacks \"%s\"; it is:\n%s", __FILE__, __LINE__,      \
                    (text), err);                                                                  \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define LOAD_OK(cfg, args, env, want)                                                              \
    do {                                                                                           \
        int rc_ = load((cfg), (args), (env));                                                      \
        if (rc_ != (want))                                                                         \
            fprintf(stderr, "%s:%d: load returned %d, errors:\n%s", __FILE__, __LINE__, rc_, err); \
        TEST_ASSERT_INT(rc_, want);                                                                \
        TEST_ASSERT_STR(err, "");                                                                  \
    } while (0)

/* Loads expecting failure; leaves the errors in err. */
#define LOAD_FAILS(cfg, args, env)                                                                 \
    do {                                                                                           \
        int rc_ = load((cfg), (args), (env));                                                      \
        TEST_ASSERT(rc_ < 0);                                                                      \
        TEST_ASSERT(err[0] != '\0');                                                               \
    } while (0)

/* A test body runs inside a temp dir; the wrapper always cleans up. */
#define IN_TMPDIR(name)                                                                            \
    static int name##_body(struct config *cfg);                                                    \
    static int name(void)                                                                          \
    {                                                                                              \
        struct config cfg;                                                                         \
        memset(&cfg, 0, sizeof(cfg));                                                              \
        if (enter_tmpdir() != 0) {                                                                 \
            perror("tmpdir");                                                                      \
            return 1;                                                                              \
        }                                                                                          \
        int rc = name##_body(&cfg);                                                                \
        config_dispose(&cfg);                                                                      \
        leave_tmpdir();                                                                            \
        return rc;                                                                                 \
    }                                                                                              \
    static int name##_body(struct config *cfg)

/* Reload into cfg: dispose what the previous load left first. */
#define RELOAD(cfg) config_dispose(cfg)

/* ---- tests -------------------------------------------------------------- */

IN_TMPDIR(test_defaults)
{
    char host[256], want[300];
    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->listen, "8080");
    TEST_ASSERT_STR(cfg->db_path, "./data/turbochat.db");
    TEST_ASSERT(cfg->tls_cert == NULL && cfg->tls_key == NULL);
    TEST_ASSERT(cfg->www_dir == NULL && cfg->auth_secret == NULL);
    TEST_ASSERT(cfg->allowed_origins == NULL && cfg->config_file == NULL);
    TEST_ASSERT_INT(cfg->log_level, LOG_INFO);
    TEST_ASSERT_INT(cfg->threads, 32);
    TEST_ASSERT_INT(cfg->request_timeout_ms, 10000);
    TEST_ASSERT_INT(cfg->ws_ping_ms, 20000);
    TEST_ASSERT_INT(cfg->hello_timeout_ms, 10000);
    TEST_ASSERT_INT(cfg->loop_threads, 0);
    TEST_ASSERT_INT(cfg->max_connections, 0);
    TEST_ASSERT_INT(cfg->max_connections_per_ip, 1000);
    TEST_ASSERT_INT(cfg->max_frame_bytes, 16384);
    TEST_ASSERT_INT(cfg->max_text_chars, 4000);
    TEST_ASSERT_INT(cfg->max_rooms_per_conn, 50);
    TEST_ASSERT(cfg->rate_limit == 5.0);
    TEST_ASSERT_INT(cfg->rate_burst, 20);
    TEST_ASSERT(cfg->join_rate_limit == 10.0);
    TEST_ASSERT_INT(cfg->join_rate_burst, 60);
    TEST_ASSERT_INT(cfg->max_body_bytes, 65536);
    TEST_ASSERT_INT(cfg->history_limit_max, 200);
    TEST_ASSERT_INT(cfg->ref_ttl_s, 300);
    TEST_ASSERT_INT(cfg->outbound_max_frames, 4096);
    TEST_ASSERT_INT(cfg->outbound_max_kib, 4096);
    TEST_ASSERT_INT(cfg->commit_batch_max, 256);
    TEST_ASSERT(cfg->redis_url == NULL && cfg->redis_host == NULL);
    TEST_ASSERT_INT(cfg->redis_port, 6379);
    TEST_ASSERT_INT(cfg->redis_tls, -1);
    TEST_ASSERT_INT(cfg->redis_timeout_ms, 5000);
    TEST_ASSERT_INT(cfg->replay_max, 10000);
    TEST_ASSERT_INT(cfg->replay_ttl_s, 86400);
    TEST_ASSERT_INT(cfg->token_ttl_s, 86400);
    TEST_ASSERT(cfg->token_user == NULL && cfg->token_rooms == NULL);
    TEST_ASSERT(!config_is_cluster(cfg));
    TEST_ASSERT_INT(config_first_port(cfg), 8080);
    TEST_ASSERT(gethostname(host, sizeof(host)) == 0);
    host[sizeof(host) - 1] = '\0';
    snprintf(want, sizeof(want), "%s:8080", host);
    TEST_ASSERT_STR(cfg->node_id, want);
    return 0;
}

IN_TMPDIR(test_precedence)
{
    TEST_ASSERT(write_file("turbochat.conf", "# every layer sets some keys\n"
                                             "listen = 1001\n"
                                             "db = conf.db\n"
                                             "threads = 100\n"
                                             "rate_burst = 30\n"
                                             "max_rooms_per_conn = 60\n"
                                             "log_level = debug\n"
                                             "redis_timeout_ms = 1s\n") == 0);
    TEST_ASSERT(write_file(".env", "TURBOCHAT_LISTEN=1002\n"
                                   "TURBOCHAT_DB=dotenv.db\n"
                                   "TURBOCHAT_RATE_BURST=31\n"
                                   "TURBOCHAT_MAX_ROOMS_PER_CONN=61\n"
                                   "PATH_UNRELATED=whatever\n") == 0);
    LOAD_OK(cfg, ARGS("--listen", "1004", "--db=flag.db"),
            ARGS("TURBOCHAT_LISTEN=1003", "TURBOCHAT_DB=env.db", "TURBOCHAT_MAX_ROOMS_PER_CONN=62",
                 "TURBOCHAT_NODE_ID=node-a", "HOME=/root", "REDIS_SOMETHING_ELSE=1"),
            CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->config_file, "turbochat.conf");
    TEST_ASSERT_INT(cfg->threads, 100);           /* file only */
    TEST_ASSERT_INT(cfg->redis_timeout_ms, 1000); /* file only, a duration */
    TEST_ASSERT_INT(cfg->rate_burst, 31);         /* .env over file */
    TEST_ASSERT_INT(cfg->max_rooms_per_conn, 62); /* environment over .env */
    TEST_ASSERT_STR(cfg->listen, "1004");         /* flag over everything */
    TEST_ASSERT_STR(cfg->db_path, "flag.db");     /* --flag=value form */
    TEST_ASSERT_INT(cfg->log_level, LOG_DEBUG);
    TEST_ASSERT_STR(cfg->node_id, "node-a");
    TEST_ASSERT_INT(config_first_port(cfg), 1004);

    /* without the flags the environment wins, then .env */
    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("TURBOCHAT_DB=env.db"), CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->listen, "1002");
    TEST_ASSERT_STR(cfg->db_path, "env.db");
    TEST_ASSERT_INT(cfg->max_rooms_per_conn, 61);
    return 0;
}

IN_TMPDIR(test_config_file_choice)
{
    TEST_ASSERT(write_file("turbochat.conf", "threads = 10\n") == 0);
    TEST_ASSERT(write_file("a.conf", "threads = 11\n") == 0);
    TEST_ASSERT(write_file("b.conf", "threads = 12\n") == 0);
    TEST_ASSERT(write_file("c.conf", "threads = 13\n") == 0);

    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->threads, 10);

    RELOAD(cfg);
    LOAD_OK(cfg, ARGS("--config", "a.conf"), ARGS("TURBOCHAT_CONFIG=b.conf"), CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->threads, 11);
    TEST_ASSERT_STR(cfg->config_file, "a.conf");

    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("TURBOCHAT_CONFIG=b.conf"), CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->threads, 12);

    TEST_ASSERT(write_file(".env", "TURBOCHAT_CONFIG=c.conf\n") == 0);
    RELOAD(cfg);
    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->threads, 13);
    TEST_ASSERT_STR(cfg->config_file, "c.conf");

    /* a missing explicit file is an error, whichever layer named it */
    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--config=nope.conf"), NONE);
    ERR_HAS("--config: cannot read nope.conf: No such file or directory");
    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, ARGS("TURBOCHAT_CONFIG=/nonexistent/x.conf"));
    ERR_HAS("environment TURBOCHAT_CONFIG: cannot read /nonexistent/x.conf");
    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--config", "."), NONE);
    ERR_HAS("--config: cannot read .: not a regular file");
    return 0;
}

IN_TMPDIR(test_file_syntax)
{
    TEST_ASSERT(write_file("turbochat.conf",
                           "\n"
                           "   # indented comment\n"
                           "listen=9000   # trailing comment\n"
                           "auth_secret = \"a \\\"quoted\\\" #secret, 32 bytes or more\"  # c\n"
                           "db = 'single # kept'\n"
                           "node_id =   spaced-node   \n"
                           "allowed_origins = https://chat.example.com, http://localhost:8080\n"
                           "www = \n"
                           "log_level = WARN\r\n") == 0);
    TEST_ASSERT(write_file(".env", "# a comment\n"
                                   "export TURBOCHAT_RATE_LIMIT=2.5\n"
                                   "TURBOCHAT_RATE_BURST = \"7\"\n"
                                   "  TURBOCHAT_MAX_TEXT_CHARS='100'\n") == 0);
    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->listen, "9000");
    TEST_ASSERT_STR(cfg->auth_secret, "a \"quoted\" #secret, 32 bytes or more");
    TEST_ASSERT_STR(cfg->db_path, "single # kept");
    TEST_ASSERT_STR(cfg->node_id, "spaced-node");
    TEST_ASSERT_STR(cfg->allowed_origins, "https://chat.example.com, http://localhost:8080");
    TEST_ASSERT(cfg->www_dir == NULL);
    TEST_ASSERT_INT(cfg->log_level, LOG_WARN);
    TEST_ASSERT(cfg->rate_limit == 2.5);
    TEST_ASSERT_INT(cfg->rate_burst, 7);
    TEST_ASSERT_INT(cfg->max_text_chars, 100);
    return 0;
}

IN_TMPDIR(test_empty_restores_default)
{
    TEST_ASSERT(write_file("turbochat.conf", "threads = 100\n"
                                             "listen = 9000\n"
                                             "redis_host = valkey.internal\n") == 0);
    LOAD_OK(cfg, NONE, ARGS("TURBOCHAT_THREADS=  ", "TURBOCHAT_LISTEN=", "REDIS_HOST="),
            CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->threads, 32);
    TEST_ASSERT_STR(cfg->listen, "8080");
    TEST_ASSERT(cfg->redis_host == NULL);
    TEST_ASSERT(!config_is_cluster(cfg));
    return 0;
}

/* auth_secret: blank is an error (it used to turn auth off silently), and
 * a secret shorter than 32 bytes is refused, for the server and for token. */
IN_TMPDIR(test_auth_secret_rules)
{
    TEST_ASSERT(write_file("turbochat.conf", "auth_secret = 0123456789abcdef0123456789abcdef\n") ==
                0);
    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->auth_secret, "0123456789abcdef0123456789abcdef");
    TEST_ASSERT_INT(cfg->auth, CONFIG_AUTH_TOKEN);

    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, ARGS("TURBOCHAT_AUTH_SECRET=  "));
    ERR_HAS("environment TURBOCHAT_AUTH_SECRET: set but blank; remove it to leave it unset\n");
    TEST_ASSERT_INT(count_lines(err), 1);

    RELOAD(cfg);
    TEST_ASSERT(write_file("turbochat.conf", "auth_secret = \"\"\n") == 0);
    LOAD_FAILS(cfg, NONE, NONE);
    ERR_HAS("turbochat.conf:1: auth_secret: set but blank; remove it to leave it unset\n");

    RELOAD(cfg);
    TEST_ASSERT(write_file("turbochat.conf", "auth_secret = 0123456789abcdef0123456789abcde\n") ==
                0);
    LOAD_FAILS(cfg, NONE, NONE);
    ERR_HAS("turbochat.conf:1: auth_secret: must be at least 32 bytes (it has 31)\n");
    TEST_ASSERT(strstr(err, "0123456789") == NULL); /* never the secret itself */

    RELOAD(cfg);
    TEST_ASSERT(write_file("turbochat.conf", "threads = 10\n") == 0);
    LOAD_FAILS(cfg, ARGS("token", "--user", "alice"), ARGS("TURBOCHAT_AUTH_SECRET=short"));
    ERR_HAS("environment TURBOCHAT_AUTH_SECRET: must be at least 32 bytes (it has 5)\n");
    return 0;
}

IN_TMPDIR(test_errors_name_origin)
{
    TEST_ASSERT(write_file("turbochat.conf", "listen = 8080\n"
                                             "thread = 64\n"
                                             "this line is wrong\n"
                                             "threads = lots\n"
                                             "listen = 9090\n"
                                             "ref_ttl_s = 5 minutes\n"
                                             "auth_secret = \"unterminated\n"
                                             "rate_limit = 0\n") == 0);
    TEST_ASSERT(write_file(".env", "REDIS_PORT=70000\n"
                                   "TURBOCHAT_LOOP_THREAD=2\n"
                                   "garbage\n") == 0);
    LOAD_FAILS(cfg, ARGS("--listen", "0", "--bogus", "x", "--log-levl=debug", "stray"),
               ARGS("REDIS_TLS=maybe", "TURBOCHAT_THREDS=9", "TURBOCHAT_CIVETWEB_CACHE=/x",
                    "TURBOCHAT_BIN=/y", "TURBOCHAT_MAX_FRAME_BYTES=2000000"));
    ERR_HAS("turbochat.conf:2: thread: unknown key (did you mean threads?)\n");
    ERR_HAS("turbochat.conf:3: malformed line (expected key = value)\n");
    ERR_HAS("turbochat.conf:4: threads: 'lots': must be a whole number from 8 to 4096\n");
    ERR_HAS("turbochat.conf:5: listen: set twice (also on line 1)\n");
    ERR_HAS("turbochat.conf:6: ref_ttl_s: '5 minutes': must be a duration from 1s to 7d");
    ERR_HAS("turbochat.conf:7: unterminated quoted value\n");
    ERR_HAS("turbochat.conf:8: rate_limit: '0': must be a number from 0.01 to 1000000\n");
    ERR_HAS(".env:1: REDIS_PORT: '70000': must be a whole number from 1 to 65535\n");
    ERR_HAS(".env:2: TURBOCHAT_LOOP_THREAD: unknown variable (did you mean "
            "TURBOCHAT_LOOP_THREADS?)\n");
    ERR_HAS(".env:3: malformed line (expected NAME=VALUE)\n");
    ERR_HAS("environment REDIS_TLS: 'maybe': must be on, off or auto");
    ERR_HAS("environment TURBOCHAT_THREDS: unknown variable (did you mean TURBOCHAT_THREADS?)\n");
    ERR_HAS("environment TURBOCHAT_MAX_FRAME_BYTES: '2000000': must be a whole number from 1024 "
            "to 1048576\n");
    ERR_HAS("--listen: '0': the port must be a number from 1 to 65535");
    ERR_HAS("--bogus: unknown option\n");
    ERR_HAS("--log-levl: unknown option (did you mean --log-level?)\n");
    ERR_HAS("'stray': unexpected argument\n");
    /* the build and test tools' variables are not typos */
    TEST_ASSERT(strstr(err, "CIVETWEB") == NULL && strstr(err, "TURBOCHAT_BIN") == NULL);
    TEST_ASSERT_INT(count_lines(err), 17);
    TEST_ASSERT(strstr(err, "'x'") == NULL); /* the unknown option's value */
    return 0;
}

IN_TMPDIR(test_numbers_and_durations)
{
    LOAD_OK(cfg, NONE,
            ARGS("TURBOCHAT_THREADS=4096", "TURBOCHAT_RATE_LIMIT=0.5", "TURBOCHAT_REF_TTL_S=5m",
                 "TURBOCHAT_REPLAY_TTL_S=2d", "TURBOCHAT_WS_PING_MS=1500ms",
                 "TURBOCHAT_REQUEST_TIMEOUT_MS=30s", "TURBOCHAT_REDIS_TIMEOUT_MS=250",
                 "TURBOCHAT_TOKEN_TTL_S=3600", "TURBOCHAT_LOG_LEVEL=Error"),
            CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->threads, 4096);
    TEST_ASSERT(cfg->rate_limit == 0.5);
    TEST_ASSERT_INT(cfg->ref_ttl_s, 300);
    TEST_ASSERT_INT(cfg->replay_ttl_s, 2 * 86400);
    TEST_ASSERT_INT(cfg->ws_ping_ms, 1500);
    TEST_ASSERT_INT(cfg->request_timeout_ms, 30000);
    TEST_ASSERT_INT(cfg->redis_timeout_ms, 250);
    TEST_ASSERT_INT(cfg->token_ttl_s, 3600);
    TEST_ASSERT_INT(cfg->log_level, LOG_ERROR);

    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE,
               ARGS("TURBOCHAT_THREADS=7", "TURBOCHAT_LOOP_THREADS=257",
                    "TURBOCHAT_RATE_LIMIT=fast", "TURBOCHAT_RATE_BURST=-1",
                    "TURBOCHAT_REF_TTL_S=500ms", "TURBOCHAT_REQUEST_TIMEOUT_MS=1h",
                    "TURBOCHAT_WS_PING_MS=99999999999999999999", "TURBOCHAT_LOG_LEVEL=verbose",
                    "TURBOCHAT_RATE_LIMIT=inf"));
    ERR_HAS("environment TURBOCHAT_THREADS: '7': must be a whole number from 8 to 4096\n");
    ERR_HAS("environment TURBOCHAT_LOOP_THREADS: '257': must be a whole number from 0 to 256\n");
    ERR_HAS("environment TURBOCHAT_RATE_LIMIT: 'fast': must be a number");
    ERR_HAS("environment TURBOCHAT_RATE_LIMIT: 'inf': must be a number");
    ERR_HAS("environment TURBOCHAT_RATE_BURST: '-1'");
    ERR_HAS("environment TURBOCHAT_REF_TTL_S: '500ms': must be a duration from 1s to 7d (like "
            "30s, 5m, 24h, 7d; a plain number is seconds)\n");
    ERR_HAS("environment TURBOCHAT_REQUEST_TIMEOUT_MS: '1h': must be a duration from 100ms to 10m "
            "(like 30s, 5m, 24h, 7d; a plain number is milliseconds)\n");
    ERR_HAS("environment TURBOCHAT_WS_PING_MS: '99999999999999999999'");
    ERR_HAS("environment TURBOCHAT_LOG_LEVEL: 'verbose': must be debug, info, warn or error\n");
    TEST_ASSERT_INT(count_lines(err), 9);
    return 0;
}

IN_TMPDIR(test_listen)
{
    LOAD_OK(cfg, ARGS("--listen", " 127.0.0.1:8081 , [::1]:9090,7000"), NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(config_first_port(cfg), 8081);
    TEST_ASSERT(strstr(cfg->node_id, ":8081") != NULL);

    static const struct {
        const char *value;
        const char *why;
    } bad[] = {
        {"0", "'0': the port must be a number from 1 to 65535"},
        {"65536", "'65536': the port must be"},
        {"http", "'http': the port must be"},
        {"8080x", "'8080x': the port must be"},
        {"::1:80", "'::1:80': write IPv6 addresses in brackets"},
        {"1.2.3:80", "'1.2.3:80': '1.2.3' is not an IPv4 address"},
        {"localhost:80", "'localhost:80': 'localhost' is not an IPv4 address"},
        {"8080,,8081", "empty entry in the comma-separated list"},
        {"[::1]8080", "'[::1]8080': a port must follow the address"},
        {"[::g]:80", "'[::g]:80': '::g' is not an IPv6 address"},
        {":80", "':80': missing address before ':'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char line[200];
        RELOAD(cfg);
        LOAD_FAILS(cfg, ARGS("--listen", bad[i].value), NONE);
        snprintf(line, sizeof(line), "--listen: %s", bad[i].why);
        ERR_HAS(line);
        TEST_ASSERT_INT(count_lines(err), 1);
    }
    return 0;
}

IN_TMPDIR(test_tls_listener)
{
    /* an 's' port needs a certificate and a key */
    LOAD_FAILS(cfg, ARGS("--listen", "8080,8443s"), NONE);
    ERR_HAS("--listen: TLS listener '8443s' needs tls_cert and tls_key");
    TEST_ASSERT_INT(count_lines(err), 1);

    TEST_ASSERT(write_file("cert.pem", "not checked here\n") == 0);
    TEST_ASSERT(write_file("key.pem", "not checked here\n") == 0);
    TEST_ASSERT(write_file("turbochat.conf", "listen = 8443s\ntls_cert = cert.pem\n") == 0);
    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, NONE);
    ERR_HAS("turbochat.conf:2: tls_cert: set without tls_key (TURBOCHAT_TLS_KEY)\n");
    ERR_HAS("turbochat.conf:1: listen: TLS listener '8443s' needs tls_cert and tls_key");
    TEST_ASSERT_INT(count_lines(err), 2);

    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("TURBOCHAT_TLS_KEY=key.pem"), CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->tls_key, "key.pem");
    TEST_ASSERT_INT(config_first_port(cfg), 8443);

    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, ARGS("TURBOCHAT_TLS_KEY=missing.pem"));
    ERR_HAS("environment TURBOCHAT_TLS_KEY: cannot read missing.pem: No such file or directory");
    TEST_ASSERT_INT(count_lines(err), 1);
    return 0;
}

IN_TMPDIR(test_redis_url)
{
    LOAD_OK(cfg, NONE, ARGS("REDIS_URL=rediss://ch%40t:p%3As%25w@cache.example.com:6380/0"),
            CONFIG_CMD_SERVE);
    TEST_ASSERT(config_is_cluster(cfg));
    TEST_ASSERT_STR(cfg->redis_host, "cache.example.com");
    TEST_ASSERT_INT(cfg->redis_port, 6380);
    TEST_ASSERT_STR(cfg->redis_username, "ch@t");
    TEST_ASSERT_STR(cfg->redis_password, "p:s%w");
    TEST_ASSERT_INT(cfg->redis_tls, 1);

    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("REDIS_URL=valkey://[::1]:7000"), CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->redis_host, "::1");
    TEST_ASSERT_INT(cfg->redis_port, 7000);
    TEST_ASSERT(cfg->redis_username == NULL && cfg->redis_password == NULL);
    TEST_ASSERT_INT(cfg->redis_tls, 0);

    /* valkey-cli's rule: userinfo without ':' is the password */
    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("REDIS_URL=VALKEYS://hunter2@10.0.0.5/"), CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->redis_host, "10.0.0.5");
    TEST_ASSERT_INT(cfg->redis_port, 6379);
    TEST_ASSERT(cfg->redis_username == NULL);
    TEST_ASSERT_STR(cfg->redis_password, "hunter2");
    TEST_ASSERT_INT(cfg->redis_tls, 1);

    /* REDIS_URL without a port or password: the separate variables fill in */
    RELOAD(cfg);
    LOAD_OK(cfg, NONE,
            ARGS("REDIS_URL=redis://valkey.internal", "REDIS_PORT=6390", "REDIS_PASSWORD=pw",
                 "REDIS_HOST=VALKEY.internal"),
            CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->redis_host, "valkey.internal");
    TEST_ASSERT_INT(cfg->redis_port, 6390);
    TEST_ASSERT_STR(cfg->redis_password, "pw");
    TEST_ASSERT_INT(cfg->redis_tls, 0);

    static const struct {
        const char *url;
        const char *why;
    } bad[] = {
        {"http://h:1", "the scheme must be redis://, rediss://, valkey:// or valkeys://"},
        {"redis://h:0", "the port must be a number from 1 to 65535"},
        {"redis://h:", "empty port"},
        {"redis://h:99999", "the port must be"},
        {"redis://h/3", "only database 0 is supported"},
        {"redis://u:pa/ss@h", "the port must be"},
        {"redis://h?timeout=1", "query parameters and fragments are not supported"},
        {"redis://u:p%zz@h", "bad percent-encoding"},
        {"redis://u:p%00@h", "bad percent-encoding"},
        {"redis://[::1", "unterminated '['"},
        {"redis://[nothex]:1", "'nothex' is not an IPv6 address"},
        {"redis://", "no host"},
        {"redis://:pw@", "no host"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char env[100], line[200];
        const char *envp[] = {env, NULL};
        snprintf(env, sizeof(env), "REDIS_URL=%s", bad[i].url);
        snprintf(line, sizeof(line), "environment REDIS_URL: %s", bad[i].why);
        RELOAD(cfg);
        LOAD_FAILS(cfg, NONE, envp);
        ERR_HAS(line);
        TEST_ASSERT_INT(count_lines(err), 1);
        TEST_ASSERT(strstr(err, "ss@h") == NULL); /* no piece of a password */
        TEST_ASSERT(!config_is_cluster(cfg));
    }
    return 0;
}

IN_TMPDIR(test_redis_conflicts)
{
    TEST_ASSERT(write_file("turbochat.conf", "redis_host = other.example\n") == 0);
    LOAD_FAILS(cfg, NONE,
               ARGS("REDIS_URL=rediss://u:secretpw@cache.example:6380", "REDIS_PORT=6381",
                    "REDIS_TLS=off", "REDIS_USERNAME=v", "REDIS_PASSWORD=otherpw"));
    ERR_HAS("environment REDIS_URL: host 'cache.example' disagrees with redis_host (REDIS_HOST) "
            "'other.example'\n");
    ERR_HAS("environment REDIS_URL: port 6380 disagrees with redis_port (REDIS_PORT) 6381\n");
    ERR_HAS("environment REDIS_URL: the scheme means TLS on but redis_tls (REDIS_TLS) is off\n");
    ERR_HAS("environment REDIS_URL: the user disagrees with redis_username (REDIS_USERNAME)\n");
    ERR_HAS("environment REDIS_URL: the password disagrees with redis_password (REDIS_PASSWORD)\n");
    TEST_ASSERT(strstr(err, "secretpw") == NULL && strstr(err, "otherpw") == NULL);
    TEST_ASSERT_INT(count_lines(err), 5);

    /* credentials and a CA file mean nothing without a host */
    RELOAD(cfg);
    TEST_ASSERT(write_file("turbochat.conf", "") == 0);
    TEST_ASSERT(write_file(".env", "REDIS_USERNAME=chat\nREDIS_CA_FILE=ca.pem\n") == 0);
    LOAD_FAILS(cfg, NONE, ARGS("REDIS_PASSWORD=pw"));
    ERR_HAS(".env:1: REDIS_USERNAME: set without a Valkey host (REDIS_URL or REDIS_HOST)\n");
    ERR_HAS(".env:2: REDIS_CA_FILE: set without a Valkey host (REDIS_URL or REDIS_HOST)\n");
    ERR_HAS("environment REDIS_PASSWORD: set without a Valkey host (REDIS_URL or REDIS_HOST)\n");
    TEST_ASSERT_INT(count_lines(err), 3);
    return 0;
}

IN_TMPDIR(test_tls_auto)
{
    static const struct {
        const char *host;
        const char *tls;
        int want;
    } cases[] = {
        {"127.0.0.1", NULL, 0},   {"127.9.9.9", NULL, 0},       {"localhost", NULL, 0},
        {"::1", NULL, 0},         {"10.0.0.7", NULL, 1},        {"valkey.example", NULL, 1},
        {"::2", NULL, 1},         {"valkey.example", "off", 0}, {"localhost", "yes", 1},
        {"localhost", "TRUE", 1}, {"10.0.0.7", "0", 0},         {"10.0.0.7", "auto", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[80], tls[40];
        const char *envp[] = {host, cases[i].tls ? tls : NULL, NULL};
        snprintf(host, sizeof(host), "REDIS_HOST=%s", cases[i].host);
        snprintf(tls, sizeof(tls), "REDIS_TLS=%s", cases[i].tls ? cases[i].tls : "");
        RELOAD(cfg);
        LOAD_OK(cfg, NONE, envp, CONFIG_CMD_SERVE);
        if (cfg->redis_tls != cases[i].want)
            fprintf(stderr, "case %zu: %s %s\n", i, cases[i].host, tls);
        TEST_ASSERT_INT(cfg->redis_tls, cases[i].want);
        TEST_ASSERT(config_is_cluster(cfg));
    }

    /* the CA file must be readable and only makes sense with TLS */
    TEST_ASSERT(write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n") == 0);
    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("REDIS_HOST=valkey.example", "REDIS_CA_FILE=ca.pem"), CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->redis_ca_file, "ca.pem");
    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, ARGS("REDIS_HOST=127.0.0.1", "REDIS_CA_FILE=ca.pem"));
    ERR_HAS("environment REDIS_CA_FILE: set but Valkey TLS is off\n");
    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, ARGS("REDIS_HOST=valkey.example", "REDIS_CA_FILE=nope.pem"));
    ERR_HAS("environment REDIS_CA_FILE: cannot read nope.pem: No such file or directory\n");
    RELOAD(cfg);
    LOAD_FAILS(cfg, NONE, ARGS("REDIS_HOST=[::1]"));
    ERR_HAS("environment REDIS_HOST: write an IPv6 address without brackets\n");
    return 0;
}

static bool trusts(const struct config *cfg, const char *address)
{
    return config_nets_contain(&cfg->proxies, address, strlen(address));
}

/* trusted_proxies takes addresses and ranges: a proxy fleet (a Kubernetes
 * pod network, an autoscaled balancer) has no fixed address. */
IN_TMPDIR(test_trusted_proxies)
{
    LOAD_OK(cfg, NONE,
            ARGS("TURBOCHAT_TRUSTED_PROXIES=10.0.0.0/8, 192.168.1.7 ,::1,\tfd00::/8, 172.16.0.0/12,"
                 "::ffff:100.64.0.1"),
            CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->proxies.count, 6);
    const char *inside[] = {"10.200.3.4", "10.0.0.0",       "192.168.1.7",     "::1",
                            "fd12::5",    "172.31.255.255", "::ffff:10.1.1.1", "100.64.0.1"};
    for (size_t i = 0; i < sizeof(inside) / sizeof(*inside); i++)
        TEST_ASSERT(trusts(cfg, inside[i]));
    const char *outside[] = {"11.0.0.1",   "192.168.1.8", "::2",       "fe80::1",    "172.32.0.0",
                             "172.15.0.1", "10.0.0.1/8",  "localhost", "10.0.0.1 x", ""};
    for (size_t i = 0; i < sizeof(outside) / sizeof(*outside); i++)
        TEST_ASSERT(!trusts(cfg, outside[i]));

    const char *bad[] = {"10.0.0.0/33", "::/129",      "10.0.0.0/",   "10.0.0.0/a",
                         "/8",          "10.0.0.0/+8", "10.0.0.0/ 8", "nginx"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char var[64];
        snprintf(var, sizeof(var), "TURBOCHAT_TRUSTED_PROXIES=%s", bad[i]);
        RELOAD(cfg);
        LOAD_FAILS(cfg, NONE, ARGS(var));
        ERR_HAS("not an IPv4 or IPv6 address, nor a range of them (ADDRESS/BITS)");
    }
    RELOAD(cfg);
    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT(!trusts(cfg, "127.0.0.1"));
    return 0;
}

IN_TMPDIR(test_other_values)
{
    TEST_ASSERT(make_dir("site") == 0);
    LOAD_OK(cfg, ARGS("--www", "site", "--node-id", "n1.example:8080"),
            ARGS("TURBOCHAT_ALLOWED_ORIGINS=*,https://a.example:8443"), CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->www_dir, "site");
    TEST_ASSERT_STR(cfg->node_id, "n1.example:8080");

    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--www", "nothere", "--node-id", "has space"),
               ARGS("TURBOCHAT_ALLOWED_ORIGINS=https://a.example/"));
    ERR_HAS("--www: nothere: No such file or directory\n");
    ERR_HAS("--node-id: only printable ASCII without spaces is allowed\n");
    ERR_HAS("environment TURBOCHAT_ALLOWED_ORIGINS: 'https://a.example/': an origin has no path");
    TEST_ASSERT_INT(count_lines(err), 3);

    TEST_ASSERT(write_file("file.txt", "x") == 0);
    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--www=file.txt"), ARGS("TURBOCHAT_ALLOWED_ORIGINS=chat.example"));
    ERR_HAS("--www: file.txt: not a directory\n");
    ERR_HAS("environment TURBOCHAT_ALLOWED_ORIGINS: 'chat.example': an origin is * or "
            "http[s]://HOST[:PORT]\n");
    return 0;
}

IN_TMPDIR(test_flag_forms)
{
    LOAD_OK(cfg, ARGS("--listen=9001", "--log-level", "debug", "--node-id=x"), NONE,
            CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->listen, "9001");
    TEST_ASSERT_INT(cfg->log_level, LOG_DEBUG);

    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--db", "--listen", "9000", "--check-config=yes", "-x", "--node-id"),
               NONE);
    ERR_HAS("--db: needs a value\n");
    ERR_HAS("--check-config: takes no value\n");
    ERR_HAS("-x: unknown option\n");
    ERR_HAS("--node-id: needs a value\n");
    TEST_ASSERT_INT(count_lines(err), 4);

    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--user", "bob", "--ttl=1h"), NONE);
    ERR_HAS("--user: only valid after the token subcommand\n");
    ERR_HAS("--ttl: only valid after the token subcommand\n");
    return 0;
}

IN_TMPDIR(test_commands)
{
    LOAD_OK(cfg, ARGS("--help"), NONE, CONFIG_CMD_HELP);
    RELOAD(cfg);
    TEST_ASSERT_INT(load(cfg, ARGS("--bogus", "-h"), ARGS("REDIS_PORT=x")), CONFIG_CMD_HELP);
    RELOAD(cfg);
    LOAD_OK(cfg, ARGS("--version"), NONE, CONFIG_CMD_VERSION);
    RELOAD(cfg);
    LOAD_OK(cfg, ARGS("--check-config"), NONE, CONFIG_CMD_CHECK);
    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--check-config"), ARGS("TURBOCHAT_THREADS=1"));
    ERR_HAS("environment TURBOCHAT_THREADS: '1'");

    /* the usage text lists the synopsis and every setting with its variable */
    FILE *f = tmpfile();
    char text[16384];
    TEST_ASSERT(f != NULL);
    config_print_usage(f);
    rewind(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    static const char *const want[] = {
        "turbochat [--config FILE] [--listen [ADDR:]PORT] [--db PATH] [--node-id ID]",
        "[--www DIR] [--log-level debug|info|warn|error]",
        "turbochat --check-config | --help | --version",
        "turbochat token --user NAME [--rooms LIST] [--role mod|admin] [--ttl DURATION]",
        "TURBOCHAT_LISTEN",
        "TURBOCHAT_TLS_CERT",
        "TURBOCHAT_TLS_KEY",
        "TURBOCHAT_DB",
        "TURBOCHAT_NODE_ID",
        "TURBOCHAT_AUTH_SECRET",
        "TURBOCHAT_RATE_LIMIT",
        "TURBOCHAT_RATE_BURST",
        "TURBOCHAT_ALLOWED_ORIGINS",
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_USERNAME",
        "REDIS_PASSWORD",
        "REDIS_TLS",
        "REDIS_CA_FILE",
        "TURBOCHAT_CONFIG",
        "default: ./data/turbochat.db",
        "default: 1d",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(text, want[i]))
            fprintf(stderr, "usage lacks \"%s\"\n", want[i]);
        TEST_ASSERT(strstr(text, want[i]) != NULL);
    }
    return 0;
}

IN_TMPDIR(test_token)
{
    const char *const secret[] = {"TURBOCHAT_AUTH_SECRET=k-0123456789abcdef0123456789abcdef", NULL};
    LOAD_OK(cfg, ARGS("token", "--user", "alice", "--rooms", "general,team-*", "--ttl", "2h"),
            secret, CONFIG_CMD_TOKEN);
    TEST_ASSERT_STR(cfg->token_user, "alice");
    TEST_ASSERT_STR(cfg->token_rooms, "general,team-*");
    TEST_ASSERT_INT(cfg->token_ttl_s, 7200);

    /* Lists are split once, here, with the blanks around each item gone:
     * `--rooms 'team-* , lobby'` used to mint the claim "team-* ". */
    RELOAD(cfg);
    LOAD_OK(cfg, ARGS("token", "--user", "alice", "--rooms", "team-* , lobby\t,\tx"), secret,
            CONFIG_CMD_TOKEN);
    TEST_ASSERT_INT(cfg->token_room_list.count, 3);
    TEST_ASSERT_STR(cfg->token_room_list.items[0], "team-*");
    TEST_ASSERT_STR(cfg->token_room_list.items[1], "lobby");
    TEST_ASSERT_STR(cfg->token_room_list.items[2], "x");
    RELOAD(cfg);
    const char *const origins[] = {
        "TURBOCHAT_ALLOWED_ORIGINS= https://a.example ,\thttp://b.example", NULL};
    LOAD_OK(cfg, NONE, origins, CONFIG_CMD_SERVE);
    TEST_ASSERT_INT(cfg->origins.count, 2);
    TEST_ASSERT_STR(cfg->origins.items[0], "https://a.example");
    TEST_ASSERT_STR(cfg->origins.items[1], "http://b.example");
    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("token", "--user", "alice", "--rooms", "lobby, ,x"), secret);
    ERR_HAS("empty entry");

    RELOAD(cfg);
    LOAD_OK(cfg, ARGS("token", "--user=bob"), secret, CONFIG_CMD_TOKEN);
    TEST_ASSERT_INT(cfg->token_ttl_s, 86400);
    TEST_ASSERT(cfg->token_rooms == NULL);

    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("token"), NONE);
    ERR_HAS("token: --user NAME is required\n");
    ERR_HAS("token: auth_secret (TURBOCHAT_AUTH_SECRET) is not set\n");
    TEST_ASSERT_INT(count_lines(err), 2);

    RELOAD(cfg);
    LOAD_FAILS(cfg,
               ARGS("token", "--user", "this-name-is-far-too-long-for-a-user-name", "--rooms",
                    ".hidden,ok", "--ttl", "1s", "--check-config"),
               secret);
    ERR_HAS("--user: longer than 32 characters\n");
    ERR_HAS("--rooms: '.hidden': a room is 1..64 of [A-Za-z0-9_.-]");
    ERR_HAS("--ttl: '1s': must be a duration from 1m to 366d");
    ERR_HAS("--check-config: not valid with the token subcommand\n");
    ERR_HAS("token: --user NAME is required\n");
    TEST_ASSERT_INT(count_lines(err), 5);

    RELOAD(cfg);
    LOAD_FAILS(cfg,
               ARGS("token", "--user",
                    "\xe2\x80\xae"
                    "evil"),
               secret);
    ERR_HAS("--user: name must not hold invisible, zero-width, bidi or format characters\n");

    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--user", "x", "token"), secret);
    ERR_HAS("'token': unexpected argument (token must come first)\n");
    return 0;
}

/* backup FILE [--force] with the node's settings; retention_days is a
 * decimal number of days in range. */
IN_TMPDIR(test_backup_and_retention)
{
    const char *const env[] = {"TURBOCHAT_RETENTION_DAYS=0.0001", NULL};
    LOAD_OK(cfg, ARGS("backup", "/tmp/x.db", "--db", "/tmp/node.db", "--force"), env,
            CONFIG_CMD_BACKUP);
    TEST_ASSERT_STR(cfg->backup_file, "/tmp/x.db");
    TEST_ASSERT_STR(cfg->db_path, "/tmp/node.db");
    TEST_ASSERT(cfg->backup_force);
    TEST_ASSERT(cfg->retention_days > 0.00009 && cfg->retention_days < 0.00011);

    RELOAD(cfg);
    LOAD_OK(cfg, ARGS("backup", "copy.db"), NONE, CONFIG_CMD_BACKUP);
    TEST_ASSERT(!cfg->backup_force);
    TEST_ASSERT(cfg->retention_days == 0);

    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("backup"), NONE);
    ERR_HAS("backup: FILE is required");
    RELOAD(cfg);
    LOAD_FAILS(cfg, ARGS("--force"), NONE);
    ERR_HAS("--force: unknown option");
    RELOAD(cfg);
    const char *const bad[] = {"TURBOCHAT_RETENTION_DAYS=-1", NULL};
    LOAD_FAILS(cfg, NONE, bad);
    ERR_HAS("TURBOCHAT_RETENTION_DAYS");
    return 0;
}

static int read_print(const struct config *cfg, char *text, size_t len)
{
    FILE *f = tmpfile();
    if (!f)
        return -1;
    config_print(cfg, f);
    rewind(f);
    size_t n = fread(text, 1, len - 1, f);
    text[n] = '\0';
    fclose(f);
    return 0;
}

IN_TMPDIR(test_print_masks_secrets)
{
    char text[8192];
    LOAD_OK(cfg, ARGS("--node-id", "n7"),
            ARGS("TURBOCHAT_AUTH_SECRET=topsecretvalue-0123456789abcdef-0123",
                 "REDIS_URL=rediss://chat:hunter%32pw@cache.example:6380"),
            CONFIG_CMD_SERVE);
    TEST_ASSERT(read_print(cfg, text, sizeof(text)) == 0);
    TEST_ASSERT(strstr(text, "topsecret") == NULL);
    TEST_ASSERT(strstr(text, "hunter") == NULL);
    TEST_ASSERT(strstr(text, "auth_secret = ****\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_password = ****\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_url = rediss://chat:****@cache.example:6380\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_username = chat\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_host = cache.example\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_tls = on\n") != NULL);
    TEST_ASSERT(strstr(text, "tls_cert = (unset)\n") != NULL);
    TEST_ASSERT(strstr(text, "node_id = n7\n") != NULL);
    TEST_ASSERT(strstr(text, "log_level = info\n") != NULL);
    TEST_ASSERT(strstr(text, "rate_limit = 5\n") != NULL);
    TEST_ASSERT(strstr(text, "listen = 8080\n") != NULL);
    TEST_ASSERT(strstr(text, "mode = cluster") != NULL);
    /* table order: listen first, replay_ttl_s after redis_* */
    TEST_ASSERT(strstr(text, "listen =") < strstr(text, "db ="));
    TEST_ASSERT(strstr(text, "redis_port =") < strstr(text, "replay_ttl_s ="));

    /* a password-only URL masks the whole userinfo */
    RELOAD(cfg);
    LOAD_OK(cfg, NONE, ARGS("REDIS_URL=redis://justapassword@127.0.0.1"), CONFIG_CMD_SERVE);
    TEST_ASSERT(read_print(cfg, text, sizeof(text)) == 0);
    TEST_ASSERT(strstr(text, "justapassword") == NULL);
    TEST_ASSERT(strstr(text, "redis_url = redis://****@127.0.0.1\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_tls = off\n") != NULL);

    RELOAD(cfg);
    LOAD_OK(cfg, NONE, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT(read_print(cfg, text, sizeof(text)) == 0);
    TEST_ASSERT(strstr(text, "auth_secret = (unset)\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_password = (unset)\n") != NULL);
    TEST_ASSERT(strstr(text, "redis_tls = auto\n") != NULL);
    TEST_ASSERT(strstr(text, "mode = single node\n") != NULL);
    return 0;
}

/* The turbochat.conf shipped at the repository root loads as is and
 * documents every key config_print knows. */
IN_TMPDIR(test_shipped_conf)
{
    char path[PATH_MAX + 32], text[8192], conf[32768];
    const char *args[] = {"--config", path, NULL};
    repo_conf_path(path, sizeof(path));
    LOAD_OK(cfg, args, NONE, CONFIG_CMD_SERVE);
    TEST_ASSERT_STR(cfg->listen, "8080");

    FILE *f = fopen(path, "r");
    TEST_ASSERT(f != NULL);
    size_t n = fread(conf, 1, sizeof(conf) - 1, f);
    conf[n] = '\0';
    fclose(f);
    TEST_ASSERT(read_print(cfg, text, sizeof(text)) == 0);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64], want[80];
        if (line[0] == '#' || sscanf(line, "%63s =", key) != 1 || strcmp(key, "mode") == 0)
            continue;
        snprintf(want, sizeof(want), "\n%s =", key);
        char commented[80];
        snprintf(commented, sizeof(commented), "\n# %s =", key);
        if (!strstr(conf, want) && !strstr(conf, commented))
            fprintf(stderr, "turbochat.conf lacks key %s\n", key);
        TEST_ASSERT(strstr(conf, want) || strstr(conf, commented));
    }
    return 0;
}

static int test_dispose_accepts_zeroed(void)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    config_dispose(&cfg);
    config_dispose(NULL);
    TEST_ASSERT(!config_is_cluster(&cfg));
    TEST_ASSERT_INT(config_first_port(&cfg), 0);
    return 0;
}

IN_TMPDIR(test_error_buffer_bounds)
{
    char small[40];
    char *argv[] = {"turbochat", "--threads-typo", "--other", "--third", NULL};
    int rc = config_load(cfg, 4, argv, NULL, small, sizeof(small));
    TEST_ASSERT(rc < 0);
    TEST_ASSERT(strlen(small) < sizeof(small));
    config_dispose(cfg);
    rc = config_load(cfg, 4, argv, NULL, NULL, 0);
    TEST_ASSERT(rc < 0);
    return 0;
}

TEST_MAIN(TEST_CASE(test_defaults), TEST_CASE(test_precedence), TEST_CASE(test_config_file_choice),
          TEST_CASE(test_file_syntax), TEST_CASE(test_empty_restores_default),
          TEST_CASE(test_auth_secret_rules), TEST_CASE(test_errors_name_origin),
          TEST_CASE(test_numbers_and_durations), TEST_CASE(test_listen),
          TEST_CASE(test_tls_listener), TEST_CASE(test_redis_url), TEST_CASE(test_redis_conflicts),
          TEST_CASE(test_tls_auto), TEST_CASE(test_trusted_proxies), TEST_CASE(test_other_values),
          TEST_CASE(test_flag_forms), TEST_CASE(test_commands), TEST_CASE(test_token),
          TEST_CASE(test_backup_and_retention), TEST_CASE(test_print_masks_secrets),
          TEST_CASE(test_shipped_conf), TEST_CASE(test_dispose_accepts_zeroed),
          TEST_CASE(test_error_buffer_bounds))
