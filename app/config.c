/* config: the effective settings of one node. Every option is one row of
 * options[] (conf key, environment name, flag, type, default, bounds, target
 * field, help). config_load applies the layers lowest first: built-in
 * default, turbochat.conf, .env, the process environment, the command line.
 * Each value is checked when its layer sets it, so a bad value is reported
 * even when a higher layer overrides it; relations between options (TLS
 * certificate and key, REDIS_URL against REDIS_HOST...) are checked once at
 * the end on the effective values. Every problem is collected, each naming
 * where the value came from. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "util.h"

#define DOTENV_FILE ".env"
#define ENV_PREFIX "TURBOCHAT_"
#define ENV_CONFIG "TURBOCHAT_CONFIG"
#define TOKEN_COMMAND "token"
#define USER_COMMAND "user"
#define BACKUP_COMMAND "backup"
#define NODE_ID_MAX 128
#define WHY_MAX 256

/* ------------------------------------------------------------------------ */
/* The option table                                                          */
/* ------------------------------------------------------------------------ */

enum opt_type {
    OPT_STRING,      /* char *, NULL when unset */
    OPT_SECRET,      /* char *, printed as **** */
    OPT_URL,         /* char *, a URL whose password is printed as **** */
    OPT_INT,         /* int in [min, max] */
    OPT_DOUBLE,      /* double in [dmin, dmax] */
    OPT_LOG_LEVEL,   /* int, enum log_level */
    OPT_TRISTATE,    /* int: -1 auto, 0 off, 1 on */
    OPT_DURATION_S,  /* int seconds; "30s", "5m", "24h", "7d" or plain seconds */
    OPT_DURATION_MS, /* int milliseconds; also "500ms"; plain number: milliseconds */
    OPT_CHOICE,      /* int: the index of the value in choices; -1 when unset (def NULL) */
};

#define OPTF_TOKEN 0x1     /* the flag is only valid after the "token" subcommand */
#define OPTF_NOT_BLANK 0x2 /* set but blank is an error, not the default */
#define AUTH_SECRET_MIN 32 /* bytes: an HS256 key as long as its hash */

/* Checks a string value beyond "not empty"; 0, or -1 with the reason in why. */
typedef int (*config_check_fn)(const char *value, char *why, size_t whylen);

struct config_option {
    const char *key;            /* turbochat.conf key; NULL: command line only */
    const char *env;            /* environment and .env name; NULL: none */
    const char *flag;           /* "--listen"; NULL: none */
    enum opt_type type;         /* how the value is parsed and printed */
    const char *def;            /* default, in the syntax of a value; NULL: unset */
    int64_t min;                /* OPT_INT and durations, in the field's unit */
    int64_t max;                /* OPT_INT and durations, in the field's unit */
    double dmin;                /* OPT_DOUBLE */
    double dmax;                /* OPT_DOUBLE */
    size_t offset;              /* of the target field in struct config */
    config_check_fn check;      /* string syntax check, NULL: any non-empty string */
    const char *const *choices; /* OPT_CHOICE: the values, NULL-terminated */
    int flags;                  /* OPTF_* */
    const char *help;           /* one line for --help */
};

static int check_listen(const char *value, char *why, size_t whylen);
static int check_node_id(const char *value, char *why, size_t whylen);
static int check_origins(const char *value, char *why, size_t whylen);
static int check_host(const char *value, char *why, size_t whylen);
static int check_redis_url(const char *value, char *why, size_t whylen);
static int check_user(const char *value, char *why, size_t whylen);
static int check_rooms(const char *value, char *why, size_t whylen);
static int check_addresses(const char *value, char *why, size_t whylen);
static int check_role(const char *value, char *why, size_t whylen);
static int check_peer_url(const char *value, char *why, size_t whylen);
static int check_auth_secret(const char *value, char *why, size_t whylen);

#define FIELD(f) offsetof(struct config, f)

#define STRING_OPT(k, e, fl, d, f, chk, h)                                                         \
    {                                                                                              \
        .key = k, .env = e, .flag = fl, .type = OPT_STRING, .def = d, .offset = FIELD(f),          \
        .check = chk, .help = h                                                                    \
    }
#define SECRET_OPT(k, e, f, h)                                                                     \
    {                                                                                              \
        .key = k, .env = e, .type = OPT_SECRET, .offset = FIELD(f), .help = h                      \
    }
#define INT_OPT(k, e, d, lo, hi, f, h)                                                             \
    {                                                                                              \
        .key = k, .env = e, .type = OPT_INT, .def = d, .min = lo, .max = hi, .offset = FIELD(f),   \
        .help = h                                                                                  \
    }
#define DOUBLE_OPT(k, e, d, lo, hi, f, h)                                                          \
    {                                                                                              \
        .key = k, .env = e, .type = OPT_DOUBLE, .def = d, .dmin = lo, .dmax = hi,                  \
        .offset = FIELD(f), .help = h                                                              \
    }
#define DURATION_OPT(k, e, t, d, lo, hi, f, h)                                                     \
    {                                                                                              \
        .key = k, .env = e, .type = t, .def = d, .min = lo, .max = hi, .offset = FIELD(f),         \
        .help = h                                                                                  \
    }

#define CHOICE_OPT(k, e, d, f, list, h)                                                            \
    {                                                                                              \
        .key = k, .env = e, .type = OPT_CHOICE, .def = d, .offset = FIELD(f), .choices = list,     \
        .help = h                                                                                  \
    }

#define DAY_S (24 * 3600)

static const char *const auth_choices[] = {"off", "token", "accounts", NULL};
static const char *const signup_choices[] = {"open", "invite", "closed", NULL};

static const struct config_option options[] = {
    /* operator interface */
    STRING_OPT("listen", "TURBOCHAT_LISTEN", "--listen", "8080", listen, check_listen,
               "listeners, comma-separated [ADDR:]PORT, 's' suffix for TLS (8443s)"),
    STRING_OPT("tls_cert", "TURBOCHAT_TLS_CERT", NULL, NULL, tls_cert, NULL,
               "TLS certificate chain (PEM) for the 's' listeners"),
    STRING_OPT("tls_key", "TURBOCHAT_TLS_KEY", NULL, NULL, tls_key, NULL,
               "TLS private key (PEM) for the 's' listeners"),
    STRING_OPT("db", "TURBOCHAT_DB", "--db", "./data/turbochat.db", db_path, NULL,
               "SQLite message log"),
    STRING_OPT("node_id", "TURBOCHAT_NODE_ID", "--node-id", NULL, node_id, check_node_id,
               "name of this node; unset: <hostname>:<first port>"),
    STRING_OPT("www", "TURBOCHAT_WWW", "--www", NULL, www_dir, NULL,
               "serve the web UI from this directory instead of the embedded copy"),
    {.key = "log_level",
     .env = "TURBOCHAT_LOG_LEVEL",
     .flag = "--log-level",
     .type = OPT_LOG_LEVEL,
     .def = "info",
     .offset = FIELD(log_level),
     .help = "debug, info, warn or error"},
    CHOICE_OPT("auth", "TURBOCHAT_AUTH", NULL, auth, auth_choices,
               "off, token (HS256 tokens signed with auth_secret) or accounts; unset: token "
               "when auth_secret is set, else off"),
    CHOICE_OPT("signup", "TURBOCHAT_SIGNUP", "open", signup, signup_choices,
               "with auth = accounts: open, invite (a code an admin made) or closed"),
    DURATION_OPT("session_ttl_s", "TURBOCHAT_SESSION_TTL_S", OPT_DURATION_S, "30d", 60, 366 * DAY_S,
                 session_ttl_s, "how long a signed-in session lasts"),
    INT_OPT("signin_rate_limit", "TURBOCHAT_SIGNIN_RATE_LIMIT", "10", 1, 100000, signin_rate_limit,
            "failed sign-ins a minute per account and per address"),
    {.key = "auth_secret",
     .env = "TURBOCHAT_AUTH_SECRET",
     .type = OPT_SECRET,
     .offset = FIELD(auth_secret),
     .check = check_auth_secret,
     .flags = OPTF_NOT_BLANK,
     .help = "HS256 token secret, at least 32 bytes; set: auth on, unset: auth off"},
    STRING_OPT("allowed_origins", "TURBOCHAT_ALLOWED_ORIGINS", NULL, NULL, allowed_origins,
               check_origins, "browser origins allowed, comma-separated; unset: own origin"),
    STRING_OPT("trusted_proxies", "TURBOCHAT_TRUSTED_PROXIES", NULL, NULL, trusted_proxies,
               check_addresses,
               "addresses or ranges (ADDRESS/BITS) of proxies (e.g. nginx) whose X-Forwarded-For "
               "names the client"),
    INT_OPT("threads", "TURBOCHAT_THREADS", "32", 8, 4096, threads,
            "HTTP worker threads (WebSockets leave them after the upgrade)"),
    DURATION_OPT("request_timeout_ms", "TURBOCHAT_REQUEST_TIMEOUT_MS", OPT_DURATION_MS, "10000",
                 100, 600000, request_timeout_ms, "HTTP read/write timeout"),
    DURATION_OPT("ws_ping_ms", "TURBOCHAT_WS_PING_MS", OPT_DURATION_MS, "20000", 1000, 3600000,
                 ws_ping_ms,
                 "idle time before the server pings a WebSocket; no answer "
                 "within as long again closes it"),
    DURATION_OPT("hello_timeout_ms", "TURBOCHAT_HELLO_TIMEOUT_MS", OPT_DURATION_MS, "10000", 100,
                 600000, hello_timeout_ms, "a WebSocket without hello by then is closed (1008)"),
    INT_OPT("loop_threads", "TURBOCHAT_LOOP_THREADS", "0", 0, 256, loop_threads,
            "event-loop threads owning the WebSockets; 0: one per core"),
    INT_OPT("max_connections", "TURBOCHAT_MAX_CONNECTIONS", "0", 0, 10000000, max_connections,
            "WebSockets per node, then 503; 0: the open-file limit less a reserve"),
    INT_OPT("max_connections_per_ip", "TURBOCHAT_MAX_CONNECTIONS_PER_IP", "1000", 0, 10000000,
            max_connections_per_ip, "WebSockets per client address, then 503; 0: no limit"),

    /* limits of PROTOCOL.md */
    INT_OPT("max_frame_bytes", "TURBOCHAT_MAX_FRAME_BYTES", "16384", 1024, 1048576, max_frame_bytes,
            "largest WebSocket message from a client (bytes)"),
    INT_OPT("max_text_chars", "TURBOCHAT_MAX_TEXT_CHARS", "4000", 1, 100000, max_text_chars,
            "longest message text (code points)"),
    INT_OPT("max_rooms_per_conn", "TURBOCHAT_MAX_ROOMS_PER_CONN", "50", 1, 10000,
            max_rooms_per_conn, "rooms one connection may join"),
    DOUBLE_OPT("rate_limit", "TURBOCHAT_RATE_LIMIT", "5", 0.01, 1000000.0, rate_limit,
               "sustained writes per second per user, over all their connections and REST"),
    INT_OPT("rate_burst", "TURBOCHAT_RATE_BURST", "20", 1, 1000000, rate_burst,
            "writes a user may burst"),
    DOUBLE_OPT("address_rate_limit", "TURBOCHAT_ADDRESS_RATE_LIMIT", "50", 0.0, 1000000.0,
               address_rate_limit, "sustained writes per second per client address; 0: no limit"),
    INT_OPT("address_rate_burst", "TURBOCHAT_ADDRESS_RATE_BURST", "200", 1, 1000000,
            address_rate_burst, "writes a client address may burst"),
    DOUBLE_OPT("join_rate_limit", "TURBOCHAT_JOIN_RATE_LIMIT", "10", 0.01, 1000000.0,
               join_rate_limit, "sustained join and leave frames per second per connection"),
    INT_OPT("join_rate_burst", "TURBOCHAT_JOIN_RATE_BURST", "60", 1, 1000000, join_rate_burst,
            "join and leave frames a connection may burst"),
    INT_OPT("max_body_bytes", "TURBOCHAT_MAX_BODY_BYTES", "65536", 1024, 16777216, max_body_bytes,
            "largest REST request body (bytes)"),
    INT_OPT("history_limit_max", "TURBOCHAT_HISTORY_LIMIT_MAX", "200", 1, 10000, history_limit_max,
            "largest history page; bigger limits are clamped"),
    DURATION_OPT("ref_ttl_s", "TURBOCHAT_REF_TTL_S", OPT_DURATION_S, "300", 1, 7 * DAY_S, ref_ttl_s,
                 "how long a send ref is remembered for idempotency"),
    DURATION_OPT("edit_window_s", "TURBOCHAT_EDIT_WINDOW_S", OPT_DURATION_S, "86400", 0,
                 366 * DAY_S, edit_window_s, "how long the author may edit a message; 0: always"),
    INT_OPT("max_reactions", "TURBOCHAT_MAX_REACTIONS", "20", 1, 1000, max_reactions,
            "distinct emoji per message"),

    /* fan-out */
    INT_OPT("outbound_max_frames", "TURBOCHAT_OUTBOUND_MAX_FRAMES", "4096", 16, 1048576,
            outbound_max_frames, "queued frames per connection before close 1013"),
    INT_OPT("outbound_max_kib", "TURBOCHAT_OUTBOUND_MAX_KIB", "4096", 16, 1048576, outbound_max_kib,
            "queued KiB per connection before close 1013"),

    /* store */
    INT_OPT("commit_batch_max", "TURBOCHAT_COMMIT_BATCH_MAX", "256", 1, 65536, commit_batch_max,
            "messages per SQLite group commit"),
    DOUBLE_OPT("retention_days", "TURBOCHAT_RETENTION_DAYS", "0", 0.0, 36500.0, retention_days,
               "days a message is kept (decimals allowed: 0.0001 is 8.64 s); 0: forever"),

    /* broker */
    {.key = "redis_url",
     .env = "REDIS_URL",
     .type = OPT_URL,
     .offset = FIELD(redis_url),
     .check = check_redis_url,
     .help = "redis[s]:// or valkey[s]://[[user]:password@]host[:port][/0]; set: cluster mode"},
    STRING_OPT("redis_host", "REDIS_HOST", NULL, NULL, redis_host, check_host,
               "Valkey host; set: cluster mode"),
    INT_OPT("redis_port", "REDIS_PORT", "6379", 1, 65535, redis_port, "Valkey port"),
    STRING_OPT("redis_username", "REDIS_USERNAME", NULL, NULL, redis_username, NULL,
               "Valkey ACL user; unset: password-only AUTH"),
    SECRET_OPT("redis_password", "REDIS_PASSWORD", redis_password, "Valkey password"),
    {.key = "redis_tls",
     .env = "REDIS_TLS",
     .type = OPT_TRISTATE,
     .def = "auto",
     .offset = FIELD(redis_tls),
     .help = "on, off or auto (on unless the host is loopback)"},
    STRING_OPT("redis_ca_file", "REDIS_CA_FILE", NULL, NULL, redis_ca_file, NULL,
               "CA bundle (PEM) for Valkey TLS; unset: system CA store"),
    DURATION_OPT("redis_timeout_ms", "TURBOCHAT_REDIS_TIMEOUT_MS", OPT_DURATION_MS, "5000", 100,
                 600000, redis_timeout_ms, "Valkey connect and command timeout"),
    INT_OPT("replay_max", "TURBOCHAT_REPLAY_MAX", "10000", 1, 10000000, replay_max,
            "messages per room kept for reconnect replay"),
    DURATION_OPT("replay_ttl_s", "TURBOCHAT_REPLAY_TTL_S", OPT_DURATION_S, "86400", 60, 30 * DAY_S,
                 replay_ttl_s, "age limit of the replay window"),
    STRING_OPT("peer_url", "TURBOCHAT_PEER_URL", NULL, NULL, peer_url, check_peer_url,
               "http://host:port other nodes copy the log from; unset: the address of the Valkey "
               "connection and the first plain listener"),
    SECRET_OPT("cluster_secret", "TURBOCHAT_CLUSTER_SECRET", cluster_secret,
               "signs the copy of the log between nodes, 32+ bytes; unset: one random secret "
               "kept in Valkey"),
    INT_OPT("sync_page_size", "TURBOCHAT_SYNC_PAGE_SIZE", "5000", 100, 20000, sync_page_size,
            "events per page when a new node copies the log from a peer"),

    /* subcommand "token" */
    {.flag = "--user",
     .type = OPT_STRING,
     .offset = FIELD(token_user),
     .check = check_user,
     .flags = OPTF_TOKEN,
     .help = "token: user name (the sub claim)"},
    {.flag = "--rooms",
     .type = OPT_STRING,
     .offset = FIELD(token_rooms),
     .check = check_rooms,
     .flags = OPTF_TOKEN,
     .help = "token: rooms or prefixes ending in *, comma-separated"},
    {.flag = "--role",
     .type = OPT_STRING,
     .offset = FIELD(token_role),
     .check = check_role,
     .flags = OPTF_TOKEN,
     .help = "token: mod (moderator of its rooms) or admin (of every room)"},
    {.key = "token_ttl_s",
     .env = "TURBOCHAT_TOKEN_TTL_S",
     .flag = "--ttl",
     .type = OPT_DURATION_S,
     .def = "86400",
     .min = 60,
     .max = 366 * DAY_S,
     .offset = FIELD(token_ttl_s),
     .flags = OPTF_TOKEN,
     .help = "token: lifetime"},
};

#define OPTION_COUNT ARRAY_LEN(options)

/* TURBOCHAT_* variables of the project's build and test tooling, not the
 * server's: ignored rather than reported as typos. */
static const char *const foreign_env[] = {
    "TURBOCHAT_CIVETWEB_CACHE",     /* scripts/deps.sh */
    "TURBOCHAT_BIN",                /* Makefile, tests/lib/server.mjs */
    "TURBOCHAT_SOURCE_DIR",         /* Makefile, CMakeLists.txt (ctest) */
    "TURBOCHAT_KEEP_TMP",           /* tests/lib/server.mjs */
    "TURBOCHAT_START_TIMEOUT_MS",   /* tests/lib/server.mjs */
    "TURBOCHAT_WAIT_MS",            /* tests/lib/client.mjs */
    "TURBOCHAT_TEST_WWW",           /* tests/browser/helpers.mjs */
    "TURBOCHAT_BROWSER_TIMEOUT_MS", /* tests/browser/helpers.mjs */
};

static size_t option_by_offset(size_t offset)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (options[i].offset == offset)
            return i;
    abort(); /* a FIELD() without a row: a bug in this file */
}

#define OPT_IDX(f) option_by_offset(FIELD(f))

static const struct config_option *option_by_key(const char *key)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (options[i].key && strcmp(options[i].key, key) == 0)
            return &options[i];
    return NULL;
}

static const struct config_option *option_by_env(const char *env)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (options[i].env && strcmp(options[i].env, env) == 0)
            return &options[i];
    return NULL;
}

static const struct config_option *option_by_flag(const char *flag, size_t len)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (options[i].flag && strlen(options[i].flag) == len &&
            memcmp(options[i].flag, flag, len) == 0)
            return &options[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static void *field_ptr(struct config *cfg, const struct config_option *opt)
{
    return (char *)cfg + opt->offset;
}

static const void *field_cptr(const struct config *cfg, const struct config_option *opt)
{
    return (const char *)cfg + opt->offset;
}

static bool opt_is_string(const struct config_option *opt)
{
    return opt->type == OPT_STRING || opt->type == OPT_SECRET || opt->type == OPT_URL;
}

static bool is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* A copy of s[0..len) without surrounding white space; the caller frees it. */
static char *trimmed_dup(const char *s, size_t len)
{
    while (len > 0 && is_blank((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_blank((unsigned char)s[len - 1]))
        len--;
    return xstrndup(s, len);
}

/* Levenshtein distance, capped for long strings; for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost =
                tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

enum name_kind { NAME_KEY, NAME_ENV, NAME_FLAG };

/* The closest known name of that kind within a small distance, or NULL. */
static const char *suggest(const char *name, enum name_kind kind)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const char *cand = kind == NAME_KEY   ? options[i].key
                           : kind == NAME_ENV ? options[i].env
                                              : options[i].flag;
        if (!cand)
            continue;
        size_t d = edit_distance(name, cand);
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    return best;
}

static bool parse_bool_word(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return true;
        }
    }
    return false;
}

/* Parse "90", "30s", "5m", "24h", "7d" (and "500ms" when ms) into the
 * field's unit: milliseconds when ms, else seconds. 0, -EINVAL or -ERANGE. */
static int parse_duration(const char *s, bool ms, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {{"", 0}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *p = s;
    int64_t n = 0;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    while (isdigit((unsigned char)*p)) {
        int d = *p++ - '0';
        if (n > (INT64_MAX - d) / 10)
            return -ERANGE;
        n = n * 10 + d;
    }
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].suffix) != 0)
            continue;
        int64_t mult = units[i].ms;
        if (mult == 0) /* plain number: the field's own unit */
            mult = ms ? 1 : 1000;
        if (!ms) {
            if (mult < 1000)
                return -EINVAL; /* "ms" for a setting kept in seconds */
            mult /= 1000;
        }
        if (n > INT64_MAX / mult)
            return -ERANGE;
        *out = n * mult;
        return 0;
    }
    return -EINVAL;
}

/* Write v (in ms when ms, else s) with the largest unit that divides it. */
static void format_duration(int64_t v, bool ms, char *buf, size_t len)
{
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    int64_t v_ms = ms ? v : v * 1000;
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (v_ms != 0 && v_ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRId64 "%s", v_ms / units[i].ms, units[i].suffix);
            return;
        }
    }
    snprintf(buf, len, "%" PRId64 "%s", v, ms ? "ms" : "s");
}

/* ------------------------------------------------------------------------ */
/* Value syntax checks                                                       */
/* ------------------------------------------------------------------------ */

struct listen_item {
    int port; /* 1..65535 */
    bool tls; /* written with an 's' suffix */
};

/* Parse one "[ADDR:]PORT[s]" of a listen list (item[0..len), trimmed). */
static int parse_listen_item(const char *item, size_t len, struct listen_item *out, char *why,
                             size_t whylen)
{
    char addr[64];
    const char *port = item;
    size_t port_len = len;

    if (len > 0 && item[0] == '[') {
        const char *close = memchr(item, ']', len);
        size_t alen = close ? (size_t)(close - item - 1) : 0;
        struct in6_addr a6;
        if (!close || alen == 0 || alen >= sizeof(addr)) {
            snprintf(why, whylen, "'%.*s': bad IPv6 address, write [ADDR]:PORT", (int)len, item);
            return -1;
        }
        memcpy(addr, item + 1, alen);
        addr[alen] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1) {
            snprintf(why, whylen, "'%.*s': '%s' is not an IPv6 address", (int)len, item, addr);
            return -1;
        }
        if ((size_t)(close + 1 - item) >= len || close[1] != ':') {
            snprintf(why, whylen, "'%.*s': a port must follow the address, as in [::1]:8080",
                     (int)len, item);
            return -1;
        }
        port = close + 2;
        port_len = len - (size_t)(port - item);
    } else {
        const char *colon = memchr(item, ':', len);
        if (colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - item))) {
            snprintf(why, whylen, "'%.*s': write IPv6 addresses in brackets, as in [::1]:8080",
                     (int)len, item);
            return -1;
        }
        if (colon) {
            size_t alen = (size_t)(colon - item);
            struct in_addr a4;
            if (alen == 0 || alen >= sizeof(addr)) {
                snprintf(why, whylen, "'%.*s': missing address before ':'", (int)len, item);
                return -1;
            }
            memcpy(addr, item, alen);
            addr[alen] = '\0';
            if (inet_pton(AF_INET, addr, &a4) != 1) {
                snprintf(why, whylen, "'%.*s': '%s' is not an IPv4 address", (int)len, item, addr);
                return -1;
            }
            port = colon + 1;
            port_len = len - alen - 1;
        }
    }

    out->tls = port_len > 0 && port[port_len - 1] == 's';
    if (out->tls)
        port_len--;
    int64_t n = 0;
    size_t i = 0;
    for (; i < port_len && isdigit((unsigned char)port[i]) && n <= 65535; i++)
        n = n * 10 + (port[i] - '0');
    if (port_len == 0 || i != port_len || n < 1 || n > 65535) {
        snprintf(why, whylen, "'%.*s': the port must be a number from 1 to 65535 (optional 's')",
                 (int)len, item);
        return -1;
    }
    out->port = (int)n;
    return 0;
}

/* Call fn on each trimmed comma-separated item of list; stop at the first
 * failure. Empty items are an error. */
static int for_each_item(const char *list, int (*fn)(const char *item, size_t len, void *arg),
                         void *arg, char *why, size_t whylen)
{
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (len > 0 && is_blank((unsigned char)*s)) {
            s++;
            len--;
        }
        while (len > 0 && is_blank((unsigned char)s[len - 1]))
            len--;
        if (len == 0) {
            snprintf(why, whylen, "empty entry in the comma-separated list");
            return -1;
        }
        if (fn(s, len, arg) != 0)
            return -1;
        if (!end)
            return 0;
        p = end + 1;
    }
}

static int collect_item(const char *item, size_t len, void *arg)
{
    struct config_list *list = arg;
    list->items = xrealloc(list->items, (list->count + 1) * sizeof(*list->items));
    list->items[list->count++] = xstrndup(item, len);
    return 0;
}

/* The items of a comma-separated list, by the rules its check applied
 * (for_each_item): every list setting is split here and nowhere else. */
static void split_list(const char *text, struct config_list *out)
{
    char why[WHY_MAX];
    memset(out, 0, sizeof(*out));
    if (text)
        for_each_item(text, collect_item, out, why, sizeof(why));
}

static void list_dispose(struct config_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof(*list));
}

struct listen_walk {
    char *why;
    size_t whylen;
    int first_port; /* 0 until the first item */
    bool any_tls;
    char tls_item[32]; /* first TLS item, for messages */
};

static int listen_walk_item(const char *item, size_t len, void *arg)
{
    struct listen_walk *w = arg;
    struct listen_item li;
    if (parse_listen_item(item, len, &li, w->why, w->whylen) != 0)
        return -1;
    if (w->first_port == 0)
        w->first_port = li.port;
    if (li.tls && !w->any_tls) {
        w->any_tls = true;
        snprintf(w->tls_item, sizeof(w->tls_item), "%.*s", (int)len, item);
    }
    return 0;
}

static int walk_listen(const char *value, struct listen_walk *w, char *why, size_t whylen)
{
    memset(w, 0, sizeof(*w));
    w->why = why;
    w->whylen = whylen;
    return for_each_item(value, listen_walk_item, w, why, whylen);
}

static int check_listen(const char *value, char *why, size_t whylen)
{
    struct listen_walk w;
    return walk_listen(value, &w, why, whylen);
}

static int check_node_id(const char *value, char *why, size_t whylen)
{
    size_t len = strlen(value);
    if (len > NODE_ID_MAX) {
        snprintf(why, whylen, "longer than %d characters", NODE_ID_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= ' ' || c >= 0x7f) {
            snprintf(why, whylen, "only printable ASCII without spaces is allowed");
            return -1;
        }
    }
    return 0;
}

struct item_check {
    char *why;
    size_t whylen;
};

static int origin_item(const char *item, size_t len, void *arg)
{
    struct item_check *c = arg;
    const char *host;
    if (len == 1 && item[0] == '*')
        return 0;
    if (len > 7 && strncasecmp(item, "http://", 7) == 0)
        host = item + 7;
    else if (len > 8 && strncasecmp(item, "https://", 8) == 0)
        host = item + 8;
    else {
        snprintf(c->why, c->whylen, "'%.*s': an origin is * or http[s]://HOST[:PORT]", (int)len,
                 item);
        return -1;
    }
    for (const char *p = host; p < item + len; p++) {
        if (*p == '/' || *p == '?' || *p == '#' || is_blank((unsigned char)*p)) {
            snprintf(
                c->why, c->whylen,
                "'%.*s': an origin has no path, not even a trailing '/' (http[s]://HOST[:PORT])",
                (int)len, item);
            return -1;
        }
    }
    return 0;
}

/* A short HS256 key can be guessed offline from one token. */
static int check_auth_secret(const char *value, char *why, size_t whylen)
{
    size_t len = strlen(value);
    if (len >= AUTH_SECRET_MIN)
        return 0;
    snprintf(why, whylen, "must be at least %d bytes (it has %zu)", AUTH_SECRET_MIN, len);
    return -1;
}

static int check_origins(const char *value, char *why, size_t whylen)
{
    struct item_check c = {why, whylen};
    return for_each_item(value, origin_item, &c, why, whylen);
}

static int check_peer_url(const char *value, char *why, size_t whylen)
{
    char host[256];
    int port;
    return util_parse_http_url(value, host, sizeof(host), &port, why, whylen);
}

static int check_host(const char *value, char *why, size_t whylen)
{
    size_t len = strlen(value);
    if (value[0] == '[') {
        snprintf(why, whylen, "write an IPv6 address without brackets");
        return -1;
    }
    if (len > 255) {
        snprintf(why, whylen, "host name longer than 255 characters");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '@') {
            snprintf(why, whylen, "'%s' is not a host name or address", value);
            return -1;
        }
    }
    return 0;
}

static int check_user(const char *value, char *why, size_t whylen)
{
    size_t len = strlen(value);
    if (!util_utf8_is_valid(value, len)) {
        snprintf(why, whylen, "not valid UTF-8");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, whylen, "control characters are not allowed");
            return -1;
        }
    }
    if (util_utf8_count(value, len) > 32) {
        snprintf(why, whylen, "longer than 32 characters");
        return -1;
    }
    /* the rest of the user-name rules: no hidden characters, one visible */
    char *copy = xstrdup(value);
    const char *reason = NULL;
    bool ok = proto_user_normalize(copy, &reason);
    free(copy);
    if (!ok) {
        snprintf(why, whylen, "%s", reason);
        return -1;
    }
    return 0;
}

static int room_item(const char *item, size_t len, void *arg)
{
    struct item_check *c = arg;
    size_t n = len;
    if (item[n - 1] == '*')
        n--; /* a prefix; "*" alone allows every room */
    if (n > 64 || (n > 0 && item[0] == '.')) {
        snprintf(c->why, c->whylen,
                 "'%.*s': a room is 1..64 of [A-Za-z0-9_.-], not starting with '.'", (int)len,
                 item);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)item[i];
        if (!isalnum(ch) && ch != '_' && ch != '.' && ch != '-') {
            snprintf(c->why, c->whylen,
                     "'%.*s': a room is 1..64 of [A-Za-z0-9_.-], optionally ending in * for a "
                     "prefix",
                     (int)len, item);
            return -1;
        }
    }
    return 0;
}

static int check_rooms(const char *value, char *why, size_t whylen)
{
    struct item_check c = {why, whylen};
    return for_each_item(value, room_item, &c, why, whylen);
}

/* The IPv4 or IPv6 address of text into net with every bit; an IPv4-mapped
 * IPv6 address becomes its IPv4 address. False when text is neither. */
static bool parse_address(const char *text, struct config_net *net)
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(net, 0, sizeof(*net));
    if (inet_pton(AF_INET, text, net->addr) == 1) {
        net->family = AF_INET;
        net->bits = 32;
    } else if (inet_pton(AF_INET6, text, net->addr) == 1) {
        net->family = AF_INET6;
        net->bits = 128;
        if (memcmp(net->addr, v4_mapped, sizeof(v4_mapped)) == 0) {
            memmove(net->addr, net->addr + sizeof(v4_mapped), 4);
            memset(net->addr + 4, 0, sizeof(net->addr) - 4);
            net->family = AF_INET;
            net->bits = 32;
        }
    } else {
        return false;
    }
    return true;
}

/* "ADDRESS" or "ADDRESS/BITS" (len bytes) into net; false when neither. */
static bool parse_net(const char *item, size_t len, struct config_net *net)
{
    char text[INET6_ADDRSTRLEN + 4];
    if (len >= sizeof(text))
        return false;
    memcpy(text, item, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    if (!parse_address(text, net))
        return false;
    int64_t bits = net->bits;
    if (slash && (!isdigit((unsigned char)slash[1]) ||
                  util_parse_int64(slash + 1, 0, net->bits, &bits) != 0))
        return false;
    net->bits = (unsigned)bits;
    return true;
}

static int address_item(const char *item, size_t len, void *arg)
{
    struct item_check *c = arg;
    struct config_net net;
    if (parse_net(item, len, &net))
        return 0;
    snprintf(c->why, c->whylen,
             "'%.*s': not an IPv4 or IPv6 address, nor a range of them (ADDRESS/BITS)", (int)len,
             item);
    return -1;
}

static int check_addresses(const char *value, char *why, size_t whylen)
{
    struct item_check c = {why, whylen};
    return for_each_item(value, address_item, &c, why, whylen);
}

static int collect_net(const char *item, size_t len, void *arg)
{
    struct config_nets *nets = arg;
    nets->items = xrealloc(nets->items, (nets->count + 1) * sizeof(*nets->items));
    return parse_net(item, len, &nets->items[nets->count++]) ? 0 : -1;
}

/* The ranges of a list of addresses its check accepted (check_addresses). */
static void split_nets(const char *text, struct config_nets *out)
{
    char why[WHY_MAX];
    memset(out, 0, sizeof(*out));
    if (text)
        for_each_item(text, collect_net, out, why, sizeof(why));
}

static bool net_contains(const struct config_net *net, const struct config_net *address)
{
    unsigned whole = net->bits / 8, rest = net->bits % 8;
    if (net->family != address->family || memcmp(net->addr, address->addr, whole) != 0)
        return false;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return rest == 0 || (net->addr[whole] & mask) == (address->addr[whole] & mask);
}

bool config_nets_contain(const struct config_nets *nets, const char *address, size_t len)
{
    char text[INET6_ADDRSTRLEN];
    struct config_net parsed;
    if (nets->count == 0 || len >= sizeof(text))
        return false;
    memcpy(text, address, len);
    text[len] = '\0';
    if (!parse_address(text, &parsed))
        return false;
    for (size_t i = 0; i < nets->count; i++)
        if (net_contains(&nets->items[i], &parsed))
            return true;
    return false;
}

static int check_role(const char *value, char *why, size_t whylen)
{
    enum auth_role role;
    if (auth_role_parse(value, &role))
        return 0;
    snprintf(why, whylen, "'%s': want mod or admin", value);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* REDIS_URL                                                                 */
/* ------------------------------------------------------------------------ */

struct redis_url {
    char *host;     /* without brackets */
    int port;       /* 0 when the URL has none */
    char *username; /* NULL when none */
    char *password; /* NULL when none */
    int tls;        /* 0 or 1, from the scheme */
};

static void redis_url_dispose(struct redis_url *u)
{
    free(u->host);
    free(u->username);
    free(u->password);
    memset(u, 0, sizeof(*u));
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode s[0..len) into a new string, or NULL when malformed. */
static char *percent_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = i + 1 < len ? hex_value((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < len ? hex_value((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Parse scheme://[[user]:password@]host[:port][/0]. The userinfo follows
 * valkey-cli: without a ':' it is the password. 0, or -1 with the reason. */
static int redis_url_parse(const char *url, struct redis_url *out, char *why, size_t whylen)
{
    static const struct {
        const char *scheme;
        int tls;
    } schemes[] = {{"redis://", 0}, {"rediss://", 1}, {"valkey://", 0}, {"valkeys://", 1}};
    const char *p = NULL;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncasecmp(url, schemes[i].scheme, n) == 0) {
            p = url + n;
            out->tls = schemes[i].tls;
            break;
        }
    }
    if (!p) {
        snprintf(why, whylen, "the scheme must be redis://, rediss://, valkey:// or valkeys://");
        return -1;
    }

    size_t auth_len = strcspn(p, "/?#");
    const char *auth_end = p + auth_len;
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pass = colon ? colon + 1 : p;
        if (colon && colon > p) {
            out->username = percent_decode(p, (size_t)(colon - p));
            if (!out->username)
                goto bad_percent;
        }
        if (at > pass) {
            out->password = percent_decode(pass, (size_t)(at - pass));
            if (!out->password)
                goto bad_percent;
        }
        p = at + 1;
    }

    const char *host_end;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        struct in6_addr a6;
        if (!close) {
            snprintf(why, whylen, "unterminated '[' in the host");
            goto out_fail;
        }
        out->host = xstrndup(p + 1, (size_t)(close - p - 1));
        if (inet_pton(AF_INET6, out->host, &a6) != 1) {
            snprintf(why, whylen, "'%s' is not an IPv6 address", out->host);
            goto out_fail;
        }
        host_end = close + 1;
        if (host_end < auth_end && *host_end != ':') {
            snprintf(why, whylen, "unexpected text after ']'");
            goto out_fail;
        }
    } else {
        host_end = memchr(p, ':', (size_t)(auth_end - p));
        if (!host_end)
            host_end = auth_end;
        out->host = xstrndup(p, (size_t)(host_end - p));
        if (out->host[0] == '\0') {
            snprintf(why, whylen, "no host");
            goto out_fail;
        }
        if (check_host(out->host, why, whylen) != 0)
            goto out_fail;
    }

    if (host_end < auth_end) { /* ":port" */
        const char *q = host_end + 1;
        int64_t port = 0;
        if (q == auth_end) {
            snprintf(why, whylen, "empty port");
            goto out_fail;
        }
        for (; q < auth_end; q++) {
            if (!isdigit((unsigned char)*q) || port > 65535)
                break;
            port = port * 10 + (*q - '0');
        }
        if (q != auth_end || port < 1 || port > 65535) {
            snprintf(why, whylen, "the port must be a number from 1 to 65535");
            goto out_fail;
        }
        out->port = (int)port;
    }

    if (*auth_end == '/') {
        const char *db = auth_end + 1;
        if (*db != '\0' && strcmp(db, "0") != 0) {
            /* not echoed: an unencoded '/' in a password lands here */
            snprintf(why, whylen,
                     "only database 0 is supported (write /0 or nothing after the "
                     "host; percent-encode '/' in a password as %%2F)");
            goto out_fail;
        }
    } else if (*auth_end != '\0') {
        snprintf(why, whylen, "query parameters and fragments are not supported");
        goto out_fail;
    }
    return 0;

bad_percent:
    snprintf(why, whylen, "bad percent-encoding in the user or password");
out_fail:
    redis_url_dispose(out);
    return -1;
}

static int check_redis_url(const char *value, char *why, size_t whylen)
{
    struct redis_url u;
    if (redis_url_parse(value, &u, why, whylen) != 0)
        return -1;
    redis_url_dispose(&u);
    return 0;
}

/* Print url with its password replaced by ****. */
static void print_masked_url(FILE *f, const char *url)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < auth + auth_len; q++)
        if (*q == '@')
            at = q;
    if (!at) {
        fputs(url, f);
        return;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *keep_end = colon ? colon + 1 : auth; /* the user name stays visible */
    fprintf(f, "%.*s****%s", (int)(keep_end - url), url, at);
}

/* ------------------------------------------------------------------------ */
/* Setting one value                                                         */
/* ------------------------------------------------------------------------ */

/* Parse value (already trimmed) for opt and store it in cfg. An empty value
 * restores the built-in default. 0, or -1 with the reason in why. */
static int set_value(struct config *cfg, const struct config_option *opt, const char *value,
                     char *why, size_t whylen)
{
    void *field = field_ptr(cfg, opt);
    char lo[32], hi[32];
    int64_t n;

    if (value == NULL || value[0] == '\0') {
        if (opt->type == OPT_CHOICE && opt->def == NULL) {
            *(int *)field = -1;
            return 0;
        }
        if (opt_is_string(opt) && opt->def == NULL) {
            char **s = field;
            free(*s);
            *s = NULL;
            return 0;
        }
        value = opt->def;
    }

    switch (opt->type) {
    case OPT_STRING:
    case OPT_SECRET:
    case OPT_URL: {
        char **s = field;
        if (opt->check && opt->check(value, why, whylen) != 0)
            return -1;
        free(*s);
        *s = xstrdup(value);
        return 0;
    }
    case OPT_INT:
        if (util_parse_int64(value, opt->min, opt->max, &n) != 0) {
            snprintf(why, whylen, "'%s': must be a whole number from %" PRId64 " to %" PRId64,
                     value, opt->min, opt->max);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    case OPT_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (end == value || *end != '\0' || errno != 0 || !isfinite(d) || d < opt->dmin ||
            d > opt->dmax) {
            snprintf(why, whylen, "'%s': must be a number from %.15g to %.15g", value, opt->dmin,
                     opt->dmax);
            return -1;
        }
        *(double *)field = d;
        return 0;
    }
    case OPT_LOG_LEVEL: {
        enum log_level level;
        char lower[16];
        size_t i = 0;
        for (; value[i] && i + 1 < sizeof(lower); i++)
            lower[i] = (char)tolower((unsigned char)value[i]);
        lower[i] = '\0';
        if (value[i] != '\0' || log_parse_level(lower, &level) != 0) {
            snprintf(why, whylen, "'%s': must be debug, info, warn or error", value);
            return -1;
        }
        *(int *)field = (int)level;
        return 0;
    }
    case OPT_CHOICE:
        for (int i = 0; opt->choices[i]; i++) {
            if (strcasecmp(value, opt->choices[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        snprintf(why, whylen, "'%s': must be %s", value, opt->choices[0]);
        for (int i = 1; opt->choices[i]; i++)
            snprintf(why + strlen(why), whylen - strlen(why), "%s%s",
                     opt->choices[i + 1] ? ", " : " or ", opt->choices[i]);
        return -1;
    case OPT_TRISTATE: {
        int b;
        if (strcasecmp(value, "auto") == 0)
            b = -1;
        else if (!parse_bool_word(value, &b)) {
            snprintf(why, whylen, "'%s': must be on, off or auto (also true/false, yes/no, 1/0)",
                     value);
            return -1;
        }
        *(int *)field = b;
        return 0;
    }
    case OPT_DURATION_S:
    case OPT_DURATION_MS: {
        bool ms = opt->type == OPT_DURATION_MS;
        if (parse_duration(value, ms, &n) != 0 || n < opt->min || n > opt->max) {
            format_duration(opt->min, ms, lo, sizeof(lo));
            format_duration(opt->max, ms, hi, sizeof(hi));
            snprintf(why, whylen,
                     "'%s': must be a duration from %s to %s (like 30s, 5m, 24h, 7d; a plain "
                     "number is %s)",
                     value, lo, hi, ms ? "milliseconds" : "seconds");
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    }
    snprintf(why, whylen, "unknown option type");
    return -1;
}

/* ------------------------------------------------------------------------ */
/* The loader: layers, origins and the error list                            */
/* ------------------------------------------------------------------------ */

enum layer { LAYER_DEFAULT = 0, LAYER_FILE, LAYER_DOTENV, LAYER_ENV, LAYER_FLAG };

/* Where the effective value of one option came from. */
struct origin {
    enum layer layer;
    const char *file; /* LAYER_FILE, LAYER_DOTENV: path as given */
    int line;         /* LAYER_FILE, LAYER_DOTENV */
};

struct loader {
    struct config *cfg;
    struct origin origin[OPTION_COUNT];
    char *err;     /* caller's buffer, may be NULL */
    size_t errlen; /* its size */
    size_t errused;
    int nerr;
};

static void add_error(struct loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_error(struct loader *ld, const char *fmt, ...)
{
    ld->nerr++;
    if (!ld->err || ld->errused + 1 >= ld->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ld->err + ld->errused, ld->errlen - ld->errused, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    ld->errused += (size_t)n;
    if (ld->errused + 1 >= ld->errlen) { /* truncated: keep it terminated */
        ld->errused = ld->errlen - 1;
        ld->err[ld->errused] = '\0';
        return;
    }
    ld->err[ld->errused++] = '\n';
    ld->err[ld->errused] = '\0';
}

/* "file:line: key", "environment NAME", "--flag" or "key (default)". */
static void format_origin(const struct config_option *opt, const struct origin *o, char *buf,
                          size_t len)
{
    switch (o->layer) {
    case LAYER_FILE:
        snprintf(buf, len, "%s:%d: %s", o->file, o->line, opt->key);
        return;
    case LAYER_DOTENV:
        snprintf(buf, len, "%s:%d: %s", o->file, o->line, opt->env);
        return;
    case LAYER_ENV:
        snprintf(buf, len, "environment %s", opt->env);
        return;
    case LAYER_FLAG:
        snprintf(buf, len, "%s", opt->flag);
        return;
    case LAYER_DEFAULT:
        break;
    }
    snprintf(buf, len, "%s (default)", opt->key ? opt->key : opt->flag);
}

/* Report a problem with the effective value of options[idx]. */
static void report(struct loader *ld, size_t idx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct loader *ld, size_t idx, const char *fmt, ...)
{
    char where[300], why[WHY_MAX + 200];
    va_list ap;
    format_origin(&options[idx], &ld->origin[idx], where, sizeof(where));
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    add_error(ld, "%s: %s", where, why);
}

/* Set options[idx] from one layer; value is trimmed here. */
static void apply(struct loader *ld, size_t idx, const char *raw, struct origin o)
{
    const struct config_option *opt = &options[idx];
    char why[WHY_MAX];
    char *value = trimmed_dup(raw, strlen(raw));

    if (value[0] == '\0' && (opt->flags & OPTF_NOT_BLANK)) {
        char where[300];
        format_origin(opt, &o, where, sizeof(where));
        add_error(ld, "%s: set but blank; remove it to leave it unset", where);
    } else if (set_value(ld->cfg, opt, value, why, sizeof(why)) != 0) {
        char where[300];
        format_origin(opt, &o, where, sizeof(where));
        add_error(ld, "%s: %s", where, why);
    } else if (value[0] == '\0') {
        ld->origin[idx] = (struct origin){LAYER_DEFAULT, NULL, 0}; /* as if never set */
    } else {
        ld->origin[idx] = o;
    }
    free(value);
}

static bool is_set(const struct loader *ld, size_t idx)
{
    return ld->origin[idx].layer != LAYER_DEFAULT;
}

/* ------------------------------------------------------------------------ */
/* Files: turbochat.conf and .env                                            */
/* ------------------------------------------------------------------------ */

/* Split one line in place into name and value. Returns 1 for a setting, 0
 * for a blank or comment line, -1 when malformed (*why says why).
 * Syntax: NAME = VALUE; '#' starts a comment at the start of a line or after
 * white space; a value may be in single quotes (literal) or double quotes
 * (\" and \\ escapes); .env lines may start with "export ". */
static int split_line(char *line, bool dotenv, char **name, char **value, const char **why)
{
    char *p = line;
    while (is_blank((unsigned char)*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    if (dotenv && strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
        p += 6;
        while (is_blank((unsigned char)*p))
            p++;
    }
    *name = p;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-')
        p++;
    char *name_end = p;
    while (*p == ' ' || *p == '\t')
        p++;
    if (name_end == *name || *p != '=') {
        *why = dotenv ? "malformed line (expected NAME=VALUE)"
                      : "malformed line (expected key = value)";
        return -1;
    }
    *name_end = '\0';
    p++;
    while (*p == ' ' || *p == '\t')
        p++;

    if (*p == '"' || *p == '\'') {
        char quote = *p++;
        char *w = p;
        *value = p;
        for (;;) {
            if (*p == '\0' || *p == '\n' || *p == '\r') {
                *why = "unterminated quoted value";
                return -1;
            }
            if (*p == quote)
                break;
            if (quote == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
                p++;
            *w++ = *p++;
        }
        p++;
        *w = '\0';
        while (is_blank((unsigned char)*p))
            p++;
        if (*p != '\0' && *p != '#') {
            *why = "text after the closing quote";
            return -1;
        }
        return 1;
    }

    *value = p;
    for (char *q = p; *q; q++) {
        if (*q == '#' && (q == p || is_blank((unsigned char)q[-1]))) {
            *q = '\0';
            break;
        }
    }
    size_t len = strlen(p);
    while (len > 0 && is_blank((unsigned char)p[len - 1]))
        p[--len] = '\0';
    return 1;
}

/* Open path for reading as a regular file; NULL with the reason in why. */
static FILE *open_regular(const char *path, char *why, size_t whylen)
{
    struct stat st;
    FILE *f;
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s: not a regular file", path);
        return NULL;
    }
    f = fopen(path, "r");
    if (!f)
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
    return f;
}

static void load_conf_file(struct loader *ld, const char *path, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;

    while (getline(&line, &cap, f) >= 0) {
        char *name, *value;
        const char *why;
        lineno++;
        int rc = split_line(line, false, &name, &value, &why);
        if (rc == 0)
            continue;
        if (rc < 0) {
            add_error(ld, "%s:%d: %s", path, lineno, why);
            continue;
        }
        const struct config_option *opt = option_by_key(name);
        if (!opt) {
            const char *hint = suggest(name, NAME_KEY);
            add_error(ld, "%s:%d: %s: unknown key%s%s%s", path, lineno, name,
                      hint ? " (did you mean " : "", hint ? hint : "", hint ? "?)" : "");
            continue;
        }
        size_t idx = (size_t)(opt - options);
        if (ld->origin[idx].layer == LAYER_FILE) {
            add_error(ld, "%s:%d: %s: set twice (also on line %d)", path, lineno, name,
                      ld->origin[idx].line);
            continue;
        }
        apply(ld, idx, value, (struct origin){LAYER_FILE, path, lineno});
    }
    if (ferror(f))
        add_error(ld, "%s: read error: %s", path, strerror(errno));
    free(line);
}

struct env_entry {
    char *name;
    char *value;
    int line;
};

struct env_list {
    struct env_entry *v;
    size_t n;
};

static void env_list_dispose(struct env_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].value);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* The lines of a .env file into a list; syntax errors are reported now. */
static void parse_dotenv(struct loader *ld, FILE *f, struct env_list *out)
{
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;

    while (getline(&line, &cap, f) >= 0) {
        char *name, *value;
        const char *bad;
        lineno++;
        int rc = split_line(line, true, &name, &value, &bad);
        if (rc == 0)
            continue;
        if (rc < 0) {
            add_error(ld, "%s:%d: %s", DOTENV_FILE, lineno, bad);
            continue;
        }
        out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
        out->v[out->n++] = (struct env_entry){xstrdup(name), xstrdup(value), lineno};
    }
    if (ferror(f))
        add_error(ld, "%s: read error: %s", DOTENV_FILE, strerror(errno));
    free(line);
}

/* Read ./.env (if there is one) into a list; syntax errors are reported now,
 * the values are applied later, above turbochat.conf. */
static void read_dotenv(struct loader *ld, struct env_list *out)
{
    char why[WHY_MAX];
    struct stat st;

    if (stat(DOTENV_FILE, &st) != 0 && errno == ENOENT)
        return;
    FILE *f = open_regular(DOTENV_FILE, why, sizeof(why));
    if (!f) {
        add_error(ld, "%s", why);
        return;
    }
    parse_dotenv(ld, f, out);
    fclose(f);
}

/* Apply one NAME=value from .env (file != NULL) or the environment. Names
 * outside ours are ignored, except unknown TURBOCHAT_* ones (typos). */
static void apply_env(struct loader *ld, const char *name, const char *value, const char *file,
                      int line)
{
    char where[300];
    const struct config_option *opt;

    if (strcmp(name, ENV_CONFIG) == 0)
        return; /* used to find turbochat.conf */
    opt = option_by_env(name);
    if (opt) {
        struct origin o = {file ? LAYER_DOTENV : LAYER_ENV, file, line};
        apply(ld, (size_t)(opt - options), value, o);
        return;
    }
    if (strncmp(name, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
        return;
    for (size_t i = 0; i < ARRAY_LEN(foreign_env); i++)
        if (strcmp(name, foreign_env[i]) == 0)
            return;
    if (file)
        snprintf(where, sizeof(where), "%s:%d: %s", file, line, name);
    else
        snprintf(where, sizeof(where), "environment %s", name);
    const char *hint = suggest(name, NAME_ENV);
    add_error(ld, "%s: unknown variable%s%s%s", where, hint ? " (did you mean " : "",
              hint ? hint : "", hint ? "?)" : "");
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

struct flag_value {
    size_t idx;        /* option row */
    const char *value; /* borrowed from argv */
};

struct cmdline {
    bool token;
    bool user;               /* turbochat user ACTION [NAME] [--admin] */
    const char *user_action; /* borrowed from argv */
    const char *user_name;
    bool user_admin;
    bool backup;             /* turbochat backup FILE [--force] */
    const char *backup_file; /* borrowed from argv */
    bool backup_force;
    bool help;
    bool version;
    bool check;
    const char *config_path; /* --config, borrowed from argv */
    struct flag_value *values;
    size_t nvalues;
};

static void parse_cmdline(struct loader *ld, int argc, char **argv, struct cmdline *cl)
{
    int i = 1;
    memset(cl, 0, sizeof(*cl));
    cl->values = xcalloc(argc > 0 ? (size_t)argc : 1, sizeof(*cl->values));
    if (argc > 1 && strcmp(argv[1], TOKEN_COMMAND) == 0) {
        cl->token = true;
        i = 2;
    } else if (argc > 1 && strcmp(argv[1], BACKUP_COMMAND) == 0) {
        cl->backup = true;
        i = 2;
        if (argc > 2 && argv[2][0] != '-') {
            cl->backup_file = argv[2];
            i = 3;
        }
    } else if (argc > 1 && strcmp(argv[1], USER_COMMAND) == 0) {
        cl->user = true;
        cl->user_action = argc > 2 ? argv[2] : NULL;
        i = 3;
        if (argc > 3 && argv[3][0] != '-') {
            cl->user_name = argv[3];
            i = 4;
        }
    }
    for (; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq;
        size_t name_len;
        bool *switch_flag = NULL;

        if (strcmp(arg, "-h") == 0) {
            cl->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (arg[0] == '-')
                add_error(ld, "%s: unknown option", arg);
            else
                add_error(ld, "'%s': unexpected argument%s", arg,
                          strcmp(arg, TOKEN_COMMAND) == 0 ? " (token must come first)" : "");
            continue;
        }
        eq = strchr(arg, '=');
        name_len = eq ? (size_t)(eq - arg) : strlen(arg);

        if (name_len == 6 && strncmp(arg, "--help", 6) == 0)
            switch_flag = &cl->help;
        else if (cl->user && name_len == 7 && strncmp(arg, "--admin", 7) == 0)
            switch_flag = &cl->user_admin;
        else if (cl->backup && name_len == 7 && strncmp(arg, "--force", 7) == 0)
            switch_flag = &cl->backup_force;
        else if (name_len == 9 && strncmp(arg, "--version", 9) == 0)
            switch_flag = &cl->version;
        else if (name_len == 14 && strncmp(arg, "--check-config", 14) == 0)
            switch_flag = &cl->check;
        if (switch_flag) {
            if (eq)
                add_error(ld, "%.*s: takes no value", (int)name_len, arg);
            *switch_flag = true;
            continue;
        }

        const struct config_option *opt = option_by_flag(arg, name_len);
        bool is_config = name_len == 8 && strncmp(arg, "--config", 8) == 0;
        if (!opt && !is_config) {
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)name_len, arg);
            const char *hint = suggest(name, NAME_FLAG);
            add_error(ld, "%s: unknown option%s%s%s", name, hint ? " (did you mean " : "",
                      hint ? hint : "", hint ? "?)" : "");
            if (!eq && i + 1 < argc && argv[i + 1][0] != '-')
                i++; /* most likely its value: one error is enough */
            continue;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            add_error(ld, "%.*s: needs a value", (int)name_len, arg);
            continue;
        }
        if (is_config) {
            cl->config_path = value;
            continue;
        }
        if ((opt->flags & OPTF_TOKEN) && !cl->token) {
            add_error(ld, "%s: only valid after the token subcommand", opt->flag);
            continue;
        }
        cl->values[cl->nvalues++] = (struct flag_value){(size_t)(opt - options), value};
    }
    if (cl->token && cl->check)
        add_error(ld, "--check-config: not valid with the token subcommand");
}

/* The user subcommand's action and name; they need auth = accounts. */
static void check_user_command(struct loader *ld, const struct cmdline *cl)
{
    static const char *const needs_name[] = {"add", "passwd", "disable", "enable"};
    const char *action = cl->user_action ? cl->user_action : "";
    bool named = false, known = strcmp(action, "list") == 0;
    for (size_t i = 0; i < ARRAY_LEN(needs_name); i++)
        named = named || strcmp(action, needs_name[i]) == 0;
    if (!named && !known)
        add_error(ld, "user: the action must be add, passwd, disable, enable or list");
    else if (named && !cl->user_name)
        add_error(ld, "user %s: NAME is required", action);
    else if (cl->user_admin && strcmp(action, "add") != 0)
        add_error(ld, "user: --admin only goes with add");
    if (ld->cfg->auth != CONFIG_AUTH_ACCOUNTS)
        add_error(ld, "user: accounts need auth = accounts (TURBOCHAT_AUTH)");
}

/* ------------------------------------------------------------------------ */
/* Checks on the effective configuration                                     */
/* ------------------------------------------------------------------------ */

static void check_readable(struct loader *ld, size_t idx)
{
    char why[WHY_MAX];
    const char *path = *(char *const *)field_cptr(ld->cfg, &options[idx]);
    if (!path)
        return;
    FILE *f = open_regular(path, why, sizeof(why));
    if (!f) {
        report(ld, idx, "cannot read %s", why);
        return;
    }
    fclose(f);
}

static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

/* Fill host, port, user, password and TLS from REDIS_URL; a part that is
 * also set on its own must agree with the URL. */
static void merge_redis_url(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    size_t url_i = OPT_IDX(redis_url);
    struct redis_url u;
    char why[WHY_MAX];

    if (!cfg->redis_url || redis_url_parse(cfg->redis_url, &u, why, sizeof(why)) != 0)
        return; /* unset, or already reported when it was set */

    size_t host_i = OPT_IDX(redis_host);
    if (is_set(ld, host_i) && strcasecmp(cfg->redis_host, u.host) != 0)
        report(ld, url_i, "host '%s' disagrees with redis_host (REDIS_HOST) '%s'", u.host,
               cfg->redis_host);
    free(cfg->redis_host);
    cfg->redis_host = xstrdup(u.host);

    if (u.port) {
        if (is_set(ld, OPT_IDX(redis_port)) && cfg->redis_port != u.port)
            report(ld, url_i, "port %d disagrees with redis_port (REDIS_PORT) %d", u.port,
                   cfg->redis_port);
        cfg->redis_port = u.port;
    }
    if (u.username) {
        if (cfg->redis_username && strcmp(cfg->redis_username, u.username) != 0)
            report(ld, url_i, "the user disagrees with redis_username (REDIS_USERNAME)");
        free(cfg->redis_username);
        cfg->redis_username = u.username;
        u.username = NULL;
    }
    if (u.password) {
        if (cfg->redis_password && strcmp(cfg->redis_password, u.password) != 0)
            report(ld, url_i, "the password disagrees with redis_password (REDIS_PASSWORD)");
        free(cfg->redis_password);
        cfg->redis_password = u.password;
        u.password = NULL;
    }
    if (cfg->redis_tls != -1 && cfg->redis_tls != u.tls)
        report(ld, url_i, "the scheme means TLS %s but redis_tls (REDIS_TLS) is %s",
               u.tls ? "on" : "off", cfg->redis_tls ? "on" : "off");
    cfg->redis_tls = u.tls;
    redis_url_dispose(&u);
}

static void finish(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    struct listen_walk lw;
    char why[WHY_MAX];

    /* HTTPS listeners */
    size_t cert_i = OPT_IDX(tls_cert), key_i = OPT_IDX(tls_key);
    check_readable(ld, cert_i);
    check_readable(ld, key_i);
    if (cfg->tls_cert && !cfg->tls_key)
        report(ld, cert_i, "set without tls_key (TURBOCHAT_TLS_KEY)");
    if (cfg->tls_key && !cfg->tls_cert)
        report(ld, key_i, "set without tls_cert (TURBOCHAT_TLS_CERT)");
    if (walk_listen(cfg->listen, &lw, why, sizeof(why)) == 0 && lw.any_tls &&
        (!cfg->tls_cert || !cfg->tls_key))
        report(ld, OPT_IDX(listen),
               "TLS listener '%s' needs tls_cert and tls_key (TURBOCHAT_TLS_CERT, "
               "TURBOCHAT_TLS_KEY)",
               lw.tls_item);

    if (cfg->www_dir) {
        struct stat st;
        if (stat(cfg->www_dir, &st) != 0)
            report(ld, OPT_IDX(www_dir), "%s: %s", cfg->www_dir, strerror(errno));
        else if (!S_ISDIR(st.st_mode))
            report(ld, OPT_IDX(www_dir), "%s: not a directory", cfg->www_dir);
    }

    /* auth: unset means as before this setting: tokens when a secret is set */
    if (cfg->auth < 0)
        cfg->auth = cfg->auth_secret ? CONFIG_AUTH_TOKEN : CONFIG_AUTH_OFF;
    if (cfg->auth == CONFIG_AUTH_TOKEN && !cfg->auth_secret)
        report(ld, OPT_IDX(auth), "token needs auth_secret (TURBOCHAT_AUTH_SECRET)");

    /* Valkey */
    merge_redis_url(ld);
    if (!cfg->redis_host) {
        static const size_t need_host[] = {FIELD(redis_username), FIELD(redis_password),
                                           FIELD(redis_ca_file)};
        for (size_t i = 0; i < ARRAY_LEN(need_host); i++) {
            size_t idx = option_by_offset(need_host[i]);
            if (*(char *const *)field_cptr(cfg, &options[idx]))
                report(ld, idx, "set without a Valkey host (REDIS_URL or REDIS_HOST)");
        }
    } else {
        if (cfg->redis_tls == -1)
            cfg->redis_tls = host_is_loopback(cfg->redis_host) ? 0 : 1;
        check_readable(ld, OPT_IDX(redis_ca_file));
        if (cfg->redis_ca_file && cfg->redis_tls == 0)
            report(ld, OPT_IDX(redis_ca_file), "set but Valkey TLS is off");
    }
    if (cfg->cluster_secret && strlen(cfg->cluster_secret) < PEER_SECRET_MIN)
        report(ld, OPT_IDX(cluster_secret), "shorter than %d bytes", PEER_SECRET_MIN);

    if (!cfg->node_id) {
        char host[256];
        int port = config_first_port(cfg);
        if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        size_t n = strlen(host) + 16;
        cfg->node_id = xmalloc(n);
        snprintf(cfg->node_id, n, "%s:%d", host, port);
    }
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */

/* Choose turbochat.conf: --config, else TURBOCHAT_CONFIG from the
 * environment, else from .env, else ./turbochat.conf when it exists.
 * Reads it when found; a missing explicit file is an error. */
static void load_config_file(struct loader *ld, const struct cmdline *cl, char **environ_vars,
                             const struct env_list *dotenv)
{
    const char *path = NULL;
    char where[300];
    char why[WHY_MAX];
    size_t pfx = strlen(ENV_CONFIG "=");

    if (cl->config_path && cl->config_path[0]) {
        path = cl->config_path;
        snprintf(where, sizeof(where), "--config");
    }
    for (char **e = environ_vars; !path && e && *e; e++) {
        if (strncmp(*e, ENV_CONFIG "=", pfx) == 0 && (*e)[pfx] != '\0') {
            path = *e + pfx;
            snprintf(where, sizeof(where), "environment %s", ENV_CONFIG);
        }
    }
    for (size_t i = 0; !path && i < dotenv->n; i++) {
        if (strcmp(dotenv->v[i].name, ENV_CONFIG) == 0 && dotenv->v[i].value[0]) {
            path = dotenv->v[i].value;
            snprintf(where, sizeof(where), "%s:%d: %s", DOTENV_FILE, dotenv->v[i].line, ENV_CONFIG);
        }
    }
    if (!path) {
        struct stat st;
        if (stat(CONFIG_DEFAULT_FILE, &st) != 0 && errno == ENOENT)
            return;
        path = CONFIG_DEFAULT_FILE;
        snprintf(where, sizeof(where), "%s", CONFIG_DEFAULT_FILE);
    }

    FILE *f = open_regular(path, why, sizeof(why));
    if (!f) {
        add_error(ld, "%s: cannot read %s", where, why);
        return;
    }
    ld->cfg->config_file = xstrdup(path);
    load_conf_file(ld, ld->cfg->config_file, f);
    fclose(f);
}

int config_load(struct config *cfg, int argc, char **argv, char **environ_vars, char *err,
                size_t errlen)
{
    struct loader ld;
    struct cmdline cl;
    struct env_list dotenv = {NULL, 0};
    char why[WHY_MAX];
    int cmd;

    memset(cfg, 0, sizeof(*cfg));
    memset(&ld, 0, sizeof(ld));
    ld.cfg = cfg;
    ld.err = err;
    ld.errlen = err ? errlen : 0;
    if (err && errlen > 0)
        err[0] = '\0';

    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (set_value(cfg, &options[i], options[i].def, why, sizeof(why)) != 0)
            add_error(&ld, "%s (default): %s", options[i].key, why);
    }

    parse_cmdline(&ld, argc, argv, &cl);
    if (cl.help) {
        cmd = CONFIG_CMD_HELP; /* whatever else is wrong */
        goto out_free_cmdline;
    }
    if (cl.version) {
        cmd = CONFIG_CMD_VERSION;
        goto out_free_cmdline;
    }

    read_dotenv(&ld, &dotenv);
    load_config_file(&ld, &cl, environ_vars, &dotenv);
    for (size_t i = 0; i < dotenv.n; i++)
        apply_env(&ld, dotenv.v[i].name, dotenv.v[i].value, DOTENV_FILE, dotenv.v[i].line);
    for (char **e = environ_vars; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e)
            continue;
        char *name = xstrndup(*e, (size_t)(eq - *e));
        apply_env(&ld, name, eq + 1, NULL, 0);
        free(name);
    }
    for (size_t i = 0; i < cl.nvalues; i++)
        apply(&ld, cl.values[i].idx, cl.values[i].value, (struct origin){LAYER_FLAG, NULL, 0});

    finish(&ld);
    split_list(cfg->allowed_origins, &cfg->origins);
    split_nets(cfg->trusted_proxies, &cfg->proxies);
    split_list(cfg->token_rooms, &cfg->token_room_list);

    if (cl.backup) {
        if (!cl.backup_file || !cl.backup_file[0])
            add_error(&ld, "backup: FILE is required (turbochat backup FILE [--force])");
        cfg->backup_file = cl.backup_file;
        cfg->backup_force = cl.backup_force;
        cmd = CONFIG_CMD_BACKUP;
    } else if (cl.user) {
        check_user_command(&ld, &cl);
        cfg->user_action = cl.user_action;
        cfg->user_name = cl.user_name;
        cfg->user_admin = cl.user_admin;
        cmd = CONFIG_CMD_USER;
    } else if (cl.token) {
        if (!cfg->token_user || !cfg->token_user[0])
            add_error(&ld, "token: --user NAME is required");
        if (!cfg->auth_secret)
            add_error(&ld, "token: auth_secret (TURBOCHAT_AUTH_SECRET) is not set");
        cmd = CONFIG_CMD_TOKEN;
    } else {
        cmd = cl.check ? CONFIG_CMD_CHECK : CONFIG_CMD_SERVE;
    }
    if (ld.nerr > 0)
        cmd = -EINVAL;

    env_list_dispose(&dotenv);
out_free_cmdline:
    free(cl.values);
    return cmd;
}

void config_dispose(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (opt_is_string(&options[i])) {
            char **s = field_ptr(cfg, &options[i]);
            free(*s);
            *s = NULL;
        }
    }
    free(cfg->config_file);
    cfg->config_file = NULL;
    list_dispose(&cfg->origins);
    free(cfg->proxies.items);
    memset(&cfg->proxies, 0, sizeof(cfg->proxies));
    list_dispose(&cfg->token_room_list);
}

bool config_is_cluster(const struct config *cfg)
{
    return cfg->redis_host != NULL;
}

int config_first_port(const struct config *cfg)
{
    struct listen_walk w;
    char why[WHY_MAX];
    if (!cfg->listen || walk_listen(cfg->listen, &w, why, sizeof(why)) != 0)
        return 0;
    return w.first_port;
}

static void print_value(FILE *f, const struct config *cfg, const struct config_option *opt)
{
    const void *field = field_cptr(cfg, opt);

    switch (opt->type) {
    case OPT_STRING:
    case OPT_SECRET:
    case OPT_URL: {
        const char *s = *(char *const *)field;
        if (!s)
            fputs("(unset)", f);
        else if (opt->type == OPT_SECRET)
            fputs("****", f);
        else if (opt->type == OPT_URL)
            print_masked_url(f, s);
        else
            fputs(s, f);
        return;
    }
    case OPT_INT:
    case OPT_DURATION_S:
    case OPT_DURATION_MS:
        fprintf(f, "%d", *(const int *)field);
        return;
    case OPT_DOUBLE:
        fprintf(f, "%.15g", *(const double *)field);
        return;
    case OPT_LOG_LEVEL:
        fputs(log_level_name((enum log_level) * (const int *)field), f);
        return;
    case OPT_TRISTATE: {
        int v = *(const int *)field;
        fputs(v < 0 ? "auto" : v ? "on" : "off", f);
        return;
    }
    case OPT_CHOICE: {
        int v = *(const int *)field;
        fputs(v < 0 ? "unset" : opt->choices[v], f);
        return;
    }
    }
}

void config_print(const struct config *cfg, void *file)
{
    FILE *f = file;
    fprintf(f, "# config file: %s\n", cfg->config_file ? cfg->config_file : "(none)");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (!options[i].key)
            continue; /* command-line only */
        fprintf(f, "%s = ", options[i].key);
        print_value(f, cfg, &options[i]);
        fputc('\n', f);
    }
    if (config_is_cluster(cfg))
        fprintf(f, "mode = cluster (Valkey %s port %d, TLS %s)\n", cfg->redis_host, cfg->redis_port,
                cfg->redis_tls == 0 ? "off" : "on");
    else
        fprintf(f, "mode = single node\n");
}

void config_print_usage(void *file)
{
    FILE *f = file;
    char def[64];

    fputs("Usage: turbochat [--config FILE] [--listen [ADDR:]PORT] [--db PATH] [--node-id ID]\n"
          "                 [--www DIR] [--log-level debug|info|warn|error]\n"
          "       turbochat --check-config | --help | --version\n"
          "       turbochat token --user NAME [--rooms LIST] [--role mod|admin] [--ttl DURATION]\n"
          "       turbochat user add NAME [--admin] | passwd NAME | disable NAME | enable NAME\n"
          "                      | list    (auth = accounts; a password is read from stdin)\n"
          "       turbochat backup FILE [--force]   (a consistent copy of db_path, also while\n"
          "                      the node serves; --force replaces an existing FILE)\n"
          "\n"
          "  --config FILE     settings file (also TURBOCHAT_CONFIG; default ./" CONFIG_DEFAULT_FILE
          " if present)\n"
          "  --check-config    check every setting, print the effective values, exit 0 or 1\n"
          "  -h, --help        print this help\n"
          "  --version         print the version\n"
          "\n"
          "Settings, lowest precedence first: built-in default, " CONFIG_DEFAULT_FILE
          " (key = value),\n"
          ".env in the working directory (NAME=value), the environment, the command line.\n"
          "An empty value restores the default. Durations: 30s, 5m, 24h, 7d.\n\n",
          f);
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const struct config_option *opt = &options[i];
        if (!opt->def)
            snprintf(def, sizeof(def), "unset");
        else if (opt->type == OPT_DURATION_S || opt->type == OPT_DURATION_MS) {
            int64_t n = 0;
            parse_duration(opt->def, opt->type == OPT_DURATION_MS, &n);
            format_duration(n, opt->type == OPT_DURATION_MS, def, sizeof(def));
        } else
            snprintf(def, sizeof(def), "%s", opt->def);
        fprintf(f, "  %-20s %-30s %-12s default: %s\n", opt->key ? opt->key : "",
                opt->env ? opt->env : "", opt->flag ? opt->flag : "", def);
        fprintf(f, "      %s\n", opt->help);
    }
}
