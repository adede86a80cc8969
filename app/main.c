/* main: reads the configuration, starts the modules in order (metrics, store,
 * hub, broker, endpoints, server), waits for SIGINT/SIGTERM and stops them in
 * reverse, flushing the store, within the shutdown budget; or runs a
 * subcommand (token, user, backup) and exits. */
#define _GNU_SOURCE
#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "accounts.h"
#include "assets.h"
#include "auth.h"
#include "broker.h"
#include "budget.h"
#include "config.h"
#include "http_api.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "peer.h"
#include "proto.h"
#include "rooms.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "ws.h"

#ifndef TURBOCHAT_VERSION
#define TURBOCHAT_VERSION "dev"
#endif

#define SHUTDOWN_CLOSE_WAIT_MS 1500 /* of the 5 s budget, for close frames */
#define MIGRATIONS_MAX 256
#define BUDGETS_MAX 100000 /* write budgets of users and addresses kept, least recent out */

struct app {
    struct config config;
    struct metrics *metrics;
    struct store *store;
    struct hub *hub;
    struct loops *loops;
    struct broker *broker;
    struct accounts *accounts; /* auth = accounts only */
    struct rooms *rooms;
    struct budgets *budgets;
    struct peer *peer; /* cluster mode only */
    struct ws *ws;
    struct api *api;
    struct server *server;
};

/* The embedded migrations/NNNN_*.sql files, in name order. */
static size_t embedded_migrations(struct store_migration *out, size_t max)
{
    size_t count, n = 0;
    const struct asset *assets = assets_all(&count);
    const char *prefix = "migrations/";
    for (size_t i = 0; i < count && n < max; i++) {
        if (strncmp(assets[i].path, prefix, strlen(prefix)) != 0)
            continue;
        out[n].name = assets[i].path + strlen(prefix);
        out[n].sql = (const char *)assets[i].data;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- start and stop */

static struct broker *start_broker(struct app *app, char *err, size_t errlen)
{
    struct broker_deps deps = {
        .config = &app->config,
        .store = app->store,
        .metrics = app->metrics,
        .listener = &hub_broker_listener,
        .listener_ctx = app->hub,
    };
    /* Never falls back to the local broker: an unreachable Valkey only makes
     * the node not ready until it connects. */
    struct broker *broker = config_is_cluster(&app->config)
                                ? broker_valkey_create(&deps, err, errlen)
                                : broker_local_create(&deps, err, errlen);
    if (broker)
        hub_set_broker(app->hub, broker);
    return broker;
}

static int start(struct app *app)
{
    char err[512] = "";
    struct store_migration migrations[MIGRATIONS_MAX];
    size_t n_migrations = embedded_migrations(migrations, MIGRATIONS_MAX);
    app->metrics = metrics_create();
    app->store = store_create(app->config.db_path, migrations, n_migrations,
                              app->config.commit_batch_max, app->metrics, err, sizeof(err));
    if (!app->store)
        goto out_fail;
    store_set_retention(app->store, app->config.retention_days);
    if (store_retention_start(app->store) != 0) {
        snprintf(err, sizeof(err), "cannot start the retention purger");
        goto out_fail;
    }
    app->hub = hub_create(&app->config, app->metrics);
    app->loops = loops_create(&app->config, app->metrics, err, sizeof(err));
    if (!app->loops)
        goto out_fail;
    app->broker = start_broker(app, err, sizeof(err));
    if (!app->broker)
        goto out_fail;
    if (app->config.auth == CONFIG_AUTH_ACCOUNTS)
        app->accounts = accounts_create(&app->config, app->store, app->broker);
    app->rooms = rooms_create(&app->config, app->store, app->broker);
    app->budgets =
        budgets_create(app->config.rate_limit, app->config.rate_burst,
                       app->config.address_rate_limit, app->config.address_rate_burst, BUDGETS_MAX);
    app->ws = ws_create(&app->config, app->accounts, app->rooms, app->hub, app->broker, app->store,
                        app->metrics, app->loops, app->budgets);
    app->api = api_create(&app->config, app->accounts, app->rooms, app->store, app->broker,
                          app->hub, app->metrics, app->budgets);
    if (config_is_cluster(&app->config))
        app->peer = peer_create(&app->config, app->store);
    struct server_routes routes = {app->ws,    app->api,     app->hub, app->broker,
                                   app->store, app->metrics, app->peer};
    app->server = server_start(&app->config, &routes, err, sizeof(err));
    if (!app->server)
        goto out_fail;
    return 0;
out_fail:
    log_msg(LOG_ERROR, "start_failed", "reason=%s", log_value(err));
    return -1;
}

/* Stop in reverse order: no new sockets or messages, close WebSockets with
 * 1001, let workers finish, then flush and close the store. */
static void stop(struct app *app)
{
    if (app->ws)
        ws_refuse_new(app->ws);
    if (app->broker)
        broker_drain(app->broker);
    if (app->loops)
        loops_close_all(app->loops, PROTO_CLOSE_GOING_AWAY, "server shutting down",
                        SHUTDOWN_CLOSE_WAIT_MS);
    server_stop(app->server);
    peer_free(app->peer);   /* before the store: a page may be on its way in */
    loops_free(app->loops); /* the last connections go, leaving their rooms */
    api_free(app->api);
    ws_free(app->ws);
    budgets_free(app->budgets);
    accounts_free(app->accounts);
    rooms_free(app->rooms);
    if (app->hub)
        hub_set_broker(app->hub, NULL); /* before the broker goes */
    broker_free(app->broker);
    hub_free(app->hub);
    store_free(app->store);
    metrics_free(app->metrics);
}

/* Block the stop signals in every thread; main waits for them with sigwait. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Past a file size limit a write fails (EFBIG) and so does the commit,
     * as on a full disk: the node reports 503 until it can write again,
     * rather than die of the signal. */
    signal(SIGXFSZ, SIG_IGN);
}

static int serve(struct app *app)
{
    sigset_t set;
    block_signals(&set);
    log_set_level((enum log_level)app->config.log_level);
    mg_init_library(MG_FEATURES_TLS | MG_FEATURES_IPV6 | MG_FEATURES_WEBSOCKET);
    int rc = start(app);
    if (rc == 0) {
        static const char *const auth_names[] = {"off", "token", "accounts"};
        log_msg(LOG_INFO, "started", "version=%s node=%s db=%s mode=%s auth=%s auth_mode=%s",
                TURBOCHAT_VERSION, log_value(app->config.node_id), log_value(app->config.db_path),
                config_is_cluster(&app->config) ? "cluster" : "single-node",
                app->config.auth == CONFIG_AUTH_OFF ? "off" : "on", auth_names[app->config.auth]);
        int sig = 0;
        sigwait(&set, &sig);
        log_msg(LOG_INFO, "stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    stop(app);
    mg_exit_library();
    if (rc == 0)
        log_msg(LOG_INFO, "stopped", "status=clean");
    return rc == 0 ? 0 : 1;
}

/* turbochat token: print a signed token for --user, valid for --ttl. */
static int print_token(const struct config *config)
{
    int64_t exp = util_now_ms() / 1000 + config->token_ttl_s;
    const struct config_list *rooms = &config->token_room_list;
    char *token =
        auth_mint(config->auth_secret, config->token_user,
                  config->token_rooms ? rooms->items : NULL, rooms->count, config->token_role, exp);
    printf("%s\n", token);
    free(token);
    return 0;
}

/* ---------------------------------------------------------------- turbochat user */

static void ignore_event(void *ctx, const struct chat_msg *msg)
{
    (void)ctx;
    (void)msg;
}

/* The command line hears no one: events reach the nodes, not it. */
static const struct broker_listener quiet_listener = {.deliver = ignore_event};

/* A line of stdin without its newline, not echoed on a terminal; NULL at
 * end of input. The caller frees it. */
static char *read_password(void)
{
    struct termios saved, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        fputs("password: ", stderr);
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fputc('\n', stderr);
    }
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

static void print_accounts(struct accounts *accounts)
{
    struct store_account *all;
    size_t count;
    if (accounts_list(accounts, &all, &count) < 0)
        return;
    for (size_t i = 0; i < count; i++)
        printf("%s\t%s\t%s\n", all[i].name, all[i].role, all[i].disabled ? "disabled" : "enabled");
    store_free_accounts(all, count);
}

/* Do the user subcommand's action through accounts; 0 or 1. */
static int user_action(const struct config *config, struct accounts *accounts)
{
    const char *action = config->user_action, *name = config->user_name;
    struct chat_refusal refusal = {PROTO_ERR_INTERNAL, "failed"};
    int rc = 0;
    if (strcmp(action, "list") == 0) {
        print_accounts(accounts);
    } else if (strcmp(action, "add") == 0 || strcmp(action, "passwd") == 0) {
        char *password = read_password();
        refusal = (struct chat_refusal){PROTO_ERR_BAD_REQUEST, "no password on stdin"};
        const char *role = config->user_admin ? "admin" : NULL;
        if (!password)
            rc = -EINVAL;
        else if (strcmp(action, "add") == 0)
            rc = accounts_add(accounts, name, password, role, &refusal);
        else
            rc = accounts_set_password(accounts, name, password, &refusal);
        free(password);
    } else {
        rc = accounts_set_disabled(accounts, name, strcmp(action, "disable") == 0, &refusal);
    }
    if (rc < 0) {
        fprintf(stderr, "turbochat user %s: %s (%s)\n", action, refusal.why,
                proto_error_code(refusal.err));
        return 1;
    }
    if (strcmp(action, "list") != 0)
        printf("%s: %s\n", name, action);
    return 0;
}

/* Remove the scratch directory of the command's own log. */
static void remove_scratch(const char *dir)
{
    static const char *const files[] = {"log.db", "log.db-wal", "log.db-shm"};
    char path[PATH_MAX];
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Wait up to 10 s for the broker (Valkey) to take publishes. */
static bool broker_ready_soon(struct broker *broker, char *why, size_t whylen)
{
    for (int i = 0; i < 100; i++) {
        if (broker_is_ready(broker, why, whylen))
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/* turbochat user ACTION [NAME]: on a single node, through the database (the
 * server stopped); in a cluster, through Valkey to every running node, the
 * accounts read from this node's database and the broker's own log kept in
 * a scratch directory. */
static int run_user_command(struct app *app)
{
    char err[512] = "", scratch[] = "/tmp/turbochat-user-XXXXXX";
    struct store_migration migrations[MIGRATIONS_MAX];
    size_t n_migrations = embedded_migrations(migrations, MIGRATIONS_MAX);
    bool cluster = config_is_cluster(&app->config);
    int status = 1;
    app->metrics = metrics_create();
    /* A running node holds its database: beside it, in a cluster (where the
     * writes go through Valkey), the command only reads it. */
    struct store *node_store = cluster && access(app->config.db_path, F_OK) == 0
                                   ? store_open_readonly(app->config.db_path, err, sizeof(err))
                                   : store_create(app->config.db_path, migrations, n_migrations, 1,
                                                  app->metrics, err, sizeof(err));
    struct store *broker_store = node_store;
    if (node_store && cluster && mkdtemp(scratch)) {
        char path[sizeof(scratch) + 16];
        snprintf(path, sizeof(path), "%s/log.db", scratch);
        broker_store =
            store_create(path, migrations, n_migrations, 1, app->metrics, err, sizeof(err));
    }
    struct broker_deps deps = {&app->config, broker_store, app->metrics, &quiet_listener, NULL};
    struct broker *broker = !broker_store ? NULL
                            : cluster     ? broker_valkey_create(&deps, err, sizeof(err))
                                          : broker_local_create(&deps, err, sizeof(err));
    if (broker && !broker_ready_soon(broker, err, sizeof(err)))
        fprintf(stderr, "turbochat user: Valkey is not ready: %s\n", err);
    else if (broker) {
        struct accounts *accounts = accounts_create(&app->config, node_store, broker);
        status = user_action(&app->config, accounts);
        accounts_free(accounts);
    } else
        fprintf(stderr, "turbochat user: %s\n", err);
    broker_free(broker);
    if (broker_store != node_store) {
        store_free(broker_store);
        remove_scratch(scratch);
    }
    store_free(node_store);
    metrics_free(app->metrics);
    return status;
}

/* Copy the node's database to the backup subcommand's file; 0 or 1. */
static int run_backup(const struct config *config)
{
    char err[512] = "";
    struct store_backup_info info;
    if (store_backup(config->db_path, config->backup_file, config->backup_force, &info, err,
                     sizeof(err)) != 0) {
        fprintf(stderr, "turbochat backup: %s\n", err);
        return 1;
    }
    printf("turbochat backup: copied %s to %s: %" PRId64 " bytes, %d pages, %" PRId64 " events\n",
           config->db_path, config->backup_file, info.bytes, info.pages, info.events);
    return 0;
}

int main(int argc, char **argv)
{
    extern char **environ;
    static struct app app;
    char err[4096] = "";
    int cmd = config_load(&app.config, argc, argv, environ, err, sizeof(err));
    int status = 0;
    switch (cmd) {
    case CONFIG_CMD_SERVE:
        status = serve(&app);
        break;
    case CONFIG_CMD_HELP:
        config_print_usage(stdout);
        break;
    case CONFIG_CMD_VERSION:
        printf("turbochat %s (protocol %d)\n", TURBOCHAT_VERSION, PROTO_VERSION);
        break;
    case CONFIG_CMD_CHECK:
        config_print(&app.config, stdout);
        break;
    case CONFIG_CMD_TOKEN:
        status = print_token(&app.config);
        break;
    case CONFIG_CMD_USER:
        status = run_user_command(&app);
        break;
    case CONFIG_CMD_BACKUP:
        status = run_backup(&app.config);
        break;
    default:
        fprintf(stderr, "turbochat: invalid configuration:\n%s", err);
        status = 1;
        break;
    }
    config_dispose(&app.config);
    return status;
}
