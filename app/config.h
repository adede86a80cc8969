/* config: the effective settings of one node, layered as built-in default <
 * turbochat.conf < .env < environment < command-line flag, validated in one table. */
#ifndef TURBOCHAT_CONFIG_H
#define TURBOCHAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEFAULT_FILE "turbochat.conf"

enum config_command {
    CONFIG_CMD_SERVE = 0, /* run the server */
    CONFIG_CMD_HELP,      /* --help: print usage, exit 0 */
    CONFIG_CMD_VERSION,   /* --version */
    CONFIG_CMD_CHECK,     /* --check-config: print effective config, exit 0 or 1 */
    CONFIG_CMD_TOKEN,     /* "token" subcommand: mint a JWT (auth issue) */
    CONFIG_CMD_USER,      /* "user" subcommand: add, passwd, disable, enable, list accounts */
    CONFIG_CMD_BACKUP,    /* "backup" subcommand: copy the database to a file */
};

/* How clients are authenticated (auth). */
enum config_auth {
    CONFIG_AUTH_OFF = 0,  /* a name in hello; anyone anywhere */
    CONFIG_AUTH_TOKEN,    /* HS256 tokens signed with auth_secret */
    CONFIG_AUTH_ACCOUNTS, /* accounts with passwords, sessions (and auth_secret tokens) */
};

/* Who may make an account (signup, with auth = accounts). */
enum config_signup {
    CONFIG_SIGNUP_OPEN = 0,
    CONFIG_SIGNUP_INVITE,
    CONFIG_SIGNUP_CLOSED,
};

/* A comma-separated setting, split once at load: each item without the
 * blanks (spaces, tabs) around it. Empty items are refused at load. */
struct config_list {
    char **items;
    size_t count;
};

/* An address range of trusted_proxies: the first bits of addr (4 bytes for
 * AF_INET, 16 for AF_INET6) decide. A single address has every bit. */
struct config_net {
    int family;
    unsigned char addr[16];
    unsigned bits;
};

struct config_nets {
    struct config_net *items;
    size_t count;
};

struct config {
    /* operator interface */
    char *listen;               /* "8080", "127.0.0.1:8080", "8080,8443s" */
    char *tls_cert;             /* PEM file, NULL when unset */
    char *tls_key;              /* PEM file, NULL when unset */
    char *db_path;              /* SQLite log, default ./data/turbochat.db */
    char *node_id;              /* default "<hostname>:<first port>" */
    char *www_dir;              /* serve this directory instead of the embedded site */
    int log_level;              /* enum log_level */
    int auth;                   /* enum config_auth */
    int signup;                 /* enum config_signup */
    int session_ttl_s;          /* a session's lifetime */
    int signin_rate_limit;      /* failed sign-ins a minute per account and per address */
    char *auth_secret;          /* HS256 secret; NULL: no tokens of our own minting (secret) */
    char *allowed_origins;      /* comma-separated; NULL: the server's own origin */
    struct config_list origins; /* allowed_origins, parsed */
    char *trusted_proxies;      /* comma-separated addresses and ranges (ADDRESS/BITS) */
    struct config_nets proxies; /* trusted_proxies, parsed */
    int threads;                /* CivetWeb worker threads: HTTP and upgrades only */
    int request_timeout_ms;     /* HTTP read/write timeout; a WebSocket frame's too */
    int ws_ping_ms;             /* idle time before the server pings a WebSocket */
    int hello_timeout_ms;       /* a WebSocket must send hello within this */
    int loop_threads;           /* event loops owning WebSockets; 0: one per core */
    int max_connections;        /* WebSockets per node; 0: from the open-file limit */
    int max_connections_per_ip; /* WebSockets per client address; 0: no limit */

    /* limits of PROTOCOL.md */
    int max_frame_bytes;       /* WebSocket payload from a client, 16384 */
    int max_text_chars;        /* message text in code points, 4000 */
    int max_rooms_per_conn;    /* 50 */
    double rate_limit;         /* send frames per second, sustained, 5 */
    int rate_burst;            /* token bucket size, 20 */
    double address_rate_limit; /* per client address; 0: none */
    int address_rate_burst;
    double join_rate_limit; /* join and leave frames per second, sustained, 10 */
    int join_rate_burst;    /* their bucket size, 60 */
    int max_body_bytes;     /* REST request body */
    int history_limit_max;  /* REST page size clamp, 200 */
    int ref_ttl_s;          /* idempotency window of a ref, 300 */
    int edit_window_s;      /* how long the author may edit a message; 0: always */
    int max_reactions;      /* distinct emoji per message, 20 */

    /* fan-out */
    int outbound_max_frames; /* per-connection queue bound before 1013 */
    int outbound_max_kib;    /* per-connection queue bound in KiB */

    /* store */
    int commit_batch_max;  /* messages per group commit */
    double retention_days; /* days a message is kept; 0: forever */

    /* broker (cluster mode when redis_host is set) */
    char *redis_url;      /* redis[s]:// or valkey[s]://user:pass@host:port */
    char *redis_host;     /* NULL: single node, embedded broker */
    int redis_port;       /* 6379 */
    char *redis_username; /* ACL user, NULL for password-only AUTH */
    char *redis_password; /* secret */
    int redis_tls;        /* -1 auto (on unless loopback), 0 off, 1 on */
    char *redis_ca_file;  /* PEM bundle; NULL: system CA store */
    int redis_timeout_ms; /* connect and command timeout */
    int replay_max;       /* messages kept per room in the replay window */
    int replay_ttl_s;     /* age limit of the replay window */
    char *peer_url;       /* http://host:port peers copy the log from; NULL: derived */
    char *cluster_secret; /* signs the copy between nodes (secret); NULL: kept in Valkey */
    int sync_page_size;   /* events per page of that copy */

    /* subcommand "token" */
    char *token_user;                   /* --user */
    char *token_rooms;                  /* --rooms */
    struct config_list token_room_list; /* --rooms, parsed */
    char *token_role;                   /* --role: "mod", "admin" or NULL */
    int token_ttl_s;                    /* --ttl */

    /* subcommand "user" (borrowed from argv) */
    const char *user_action; /* add, passwd, disable, enable, list */
    const char *user_name;
    bool user_admin; /* add --admin */

    /* subcommand "backup" (borrowed from argv) */
    const char *backup_file;
    bool backup_force; /* --force: replace an existing file */

    char *config_file; /* the file that was read, NULL if none */
};

/* Fill cfg from every layer. Returns the command to run, or a negative code
 * when any value is bad; then every problem ("file:line: key: reason", or
 * "environment TURBOCHAT_X: reason", or "--flag: reason") has been appended,
 * one per line, to err. Reads the files relative to the working directory.
 * The caller owns cfg and frees it with config_dispose. Main thread only. */
int config_load(struct config *cfg, int argc, char **argv, char **environ_vars, char *err,
                size_t errlen);

/* Free every string cfg owns; cfg itself is the caller's. Accepts a zeroed cfg. */
void config_dispose(struct config *cfg);

/* True when a Valkey broker is configured (cluster mode). */
bool config_is_cluster(const struct config *cfg);

/* True when address (len bytes of text) is an IPv4 or IPv6 address within
 * one of nets; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4
 * address, on either side. */
bool config_nets_contain(const struct config_nets *nets, const char *address, size_t len);

/* Port of the first listener, for the default node id and tests. */
int config_first_port(const struct config *cfg);

/* Print every effective setting as "key = value", secrets masked as "****". */
void config_print(const struct config *cfg, void *file);

/* Print --help text. */
void config_print_usage(void *file);

#endif
