/* server: the embedded CivetWeb: listeners and TLS, request framing checks,
 * the static site (embedded or --www), /healthz, /readyz (with a new node's
 * copy), /metrics, and the /ws, /api and /internal/ (peer) handlers. */
#ifndef TURBOCHAT_SERVER_H
#define TURBOCHAT_SERVER_H

#include <stddef.h>

struct api;
struct broker;
struct config;
struct hub;
struct metrics;
struct peer;
struct server;
struct store;
struct ws;

/* What the server routes requests to; every pointer outlives the server. */
struct server_routes {
    struct ws *ws;
    struct api *api;
    struct hub *hub;
    struct broker *broker;
    struct store *store;
    struct metrics *metrics;
    struct peer *peer; /* NULL: single node */
};

/* Start listening and serving. NULL with the reason in err. Main thread. */
struct server *server_start(const struct config *config, const struct server_routes *routes,
                            char *err, size_t errlen);

/* Stop accepting, wait for every worker to finish, free. Accepts NULL. Main thread. */
void server_stop(struct server *server);

#endif
