/* main: reads the configuration, starts the modules in order (metrics, store,
 * hub, broker, endpoints, server), waits for SIGINT/SIGTERM and stops them in
 * reverse, flushing the store, within the shutdown budget. */
#define _GNU_SOURCE
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts.h"
#include "assets.h"
#include "auth.h"
#include "broker.h"
#include "config.h"
#include "http_api.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
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

struct app {
    struct config config;
    struct metrics *metrics;
    struct store *store;
    struct hub *hub;
    struct loops *loops;
    struct broker *broker;
    struct accounts *accounts; /* auth = accounts only */
    struct rooms *rooms;
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
    app->ws = ws_create(&app->config, app->accounts, app->rooms, app->hub, app->broker, app->store,
                        app->metrics, app->loops);
    app->api = api_create(&app->config, app->accounts, app->rooms, app->store, app->broker,
                          app->hub, app->metrics);
    struct server_routes routes = {app->ws,     app->api,   app->hub,
                                   app->broker, app->store, app->metrics};
    app->server = server_start(&app->config, &routes, err, sizeof(err));
    if (!app->server)
        goto out_fail;
    return 0;
out_fail:
    log_msg(LOG_ERROR, "start_failed", "reason=\"%s\"", err);
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
    loops_free(app->loops); /* the last connections go, leaving their rooms */
    api_free(app->api);
    ws_free(app->ws);
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
}

static int serve(struct app *app)
{
    sigset_t set;
    block_signals(&set);
    log_set_level((enum log_level)app->config.log_level);
    mg_init_library(MG_FEATURES_TLS | MG_FEATURES_IPV6 | MG_FEATURES_WEBSOCKET);
    int rc = start(app);
    if (rc == 0) {
        log_msg(LOG_INFO, "started", "version=%s node=%s db=%s mode=%s", TURBOCHAT_VERSION,
                app->config.node_id, app->config.db_path,
                config_is_cluster(&app->config) ? "cluster" : "single-node");
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
    char *token = auth_mint(config->auth_secret, config->token_user, config->token_rooms,
                            config->token_role, exp);
    printf("%s\n", token);
    free(token);
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
    default:
        fprintf(stderr, "turbochat: invalid configuration:\n%s", err);
        status = 1;
        break;
    }
    config_dispose(&app.config);
    return status;
}
