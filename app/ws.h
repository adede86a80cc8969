/* ws: the WebSocket endpoint GET /ws: CivetWeb callbacks, frame assembly and
 * limits, the frames of docs/PROTOCOL.md turned into hub and broker calls. */
#ifndef TURBOCHAT_WS_H
#define TURBOCHAT_WS_H

struct broker;
struct config;
struct hub;
struct metrics;
struct mg_context;
struct ws;

/* The endpoint; the pointers must outlive it. Free with ws_free (accepts NULL). */
struct ws *ws_create(const struct config *config, struct hub *hub, struct broker *broker,
                     struct metrics *metrics);
void ws_free(struct ws *ws);

/* Register the /ws handlers on a started CivetWeb context. Main thread. */
void ws_register(struct ws *ws, struct mg_context *ctx);

/* Tell the endpoint the node stops: new connections are refused. Any thread. */
void ws_refuse_new(struct ws *ws);

#endif
