/* ws: the WebSocket endpoint GET /ws: admission of the upgrade (limits,
 * origin), its handover to an event loop, and the frames of docs/PROTOCOL.md
 * turned into hub and broker calls. */
#ifndef TURBOCHAT_WS_H
#define TURBOCHAT_WS_H

struct accounts;
struct broker;
struct budgets;
struct config;
struct hub;
struct loops;
struct metrics;
struct mg_connection;
struct mg_context;
struct rooms;
struct store;
struct ws;

/* The endpoint; the pointers must outlive it. Free with ws_free (accepts NULL). */
/* accounts is NULL unless auth = accounts. */
struct ws *ws_create(const struct config *config, struct accounts *accounts, struct rooms *rooms,
                     struct hub *hub, struct broker *broker, struct store *store,
                     struct metrics *metrics, struct loops *loops, struct budgets *budgets);
void ws_free(struct ws *ws);

/* Register the /ws handlers on a started CivetWeb context. Main thread. */
void ws_register(struct ws *ws, struct mg_context *ctx);

/* CivetWeb closed mc (its connection_close callback): gives back the slot of
 * an upgrade that was admitted but never handed over. Worker thread. */
void ws_connection_closed(struct ws *ws, const struct mg_connection *mc);

/* Tell the endpoint the node stops: new connections are refused. Any thread. */
void ws_refuse_new(struct ws *ws);

#endif
