/* hub: rooms, their members and presence on this node, and fan-out through
 * bounded per-connection outbound queues drained by sender threads. */
#ifndef TURBOCHAT_HUB_H
#define TURBOCHAT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chat_msg;
struct config;
struct hub;
struct hub_conn;
struct metrics;
struct mg_connection;

/* Where the hub reads history when a connection joins a room. */
struct hub_history {
    /* Highest id of room (0 when none). */
    int (*last_id)(void *ctx, const char *room, uint64_t *out);
    /* Messages with after < id <= upto, ascending, at most limit; *complete false
     * when the source does not reach back to after + 1. */
    int (*replay)(void *ctx, const char *room, uint64_t after, uint64_t upto, int limit,
                  struct chat_msg ***out, size_t *count, bool *complete);
    void *ctx;
};

/* Close codes of docs/PROTOCOL.md. */
enum hub_close_code {
    HUB_CLOSE_NORMAL = 1000,
    HUB_CLOSE_GOING_AWAY = 1001,
    HUB_CLOSE_PROTOCOL = 1002,
    HUB_CLOSE_UNSUPPORTED = 1003,
    HUB_CLOSE_INVALID_DATA = 1007,
    HUB_CLOSE_POLICY = 1008,
    HUB_CLOSE_TOO_BIG = 1009,
    HUB_CLOSE_INTERNAL = 1011,
    HUB_CLOSE_TRY_AGAIN = 1013,
};

/* Writes bytes to a connection's socket; returns what mg_write returns. */
typedef int (*hub_write_fn)(struct mg_connection *mc, const void *data, size_t len);

/* Start the hub and its sender threads. write NULL means CivetWeb's mg_write
 * under mg_lock_connection (unit tests pass their own). Free with hub_free. */
struct hub *hub_create(const struct config *config, struct metrics *metrics,
                       const struct hub_history *history, hub_write_fn write);
/* Stop the sender threads and free everything; every connection must be closed. */
void hub_free(struct hub *hub);

/* A connection for mc, with one reference held by the caller. Worker thread. */
struct hub_conn *hub_conn_create(struct hub *hub, struct mg_connection *mc);
/* Called from CivetWeb's close handler, on the connection's worker thread:
 * leaves every room, drops the queue and waits until no sender uses mc, then
 * drops the caller's reference. After it returns mc is never touched again. */
void hub_conn_closed(struct hub_conn *conn);

/* Set the user name once (after hello). Worker thread of conn. */
void hub_conn_set_user(struct hub_conn *conn, const char *user);

/* Take and drop a reference; the last unref frees the connection. Any thread. */
void hub_conn_ref(struct hub_conn *conn);
void hub_conn_unref(struct hub_conn *conn);

/* Queue one text frame (copied) for conn alone. 0, or -EPIPE when conn is closing. Any thread. */
int hub_send(struct hub_conn *conn, const char *json, size_t len);

/* On conn's worker thread: write what is queued, then a close frame with code
 * and reason; the caller then returns 0 to CivetWeb to end the connection. */
void hub_close_now(struct hub_conn *conn, int code, const char *reason);

/* True once conn is being closed (slow consumer, shutdown); the worker should end it. */
bool hub_conn_is_closing(struct hub_conn *conn);

/* Join room: queues `joined` (and, with since, the missed messages) before any
 * live frame of the room. 0, -E2BIG (rooms per connection), or negative. Worker thread. */
int hub_join(struct hub *hub, struct hub_conn *conn, const char *room, const uint64_t *since);
/* Leave room; -ENOENT when conn was not in it. Worker thread. */
int hub_leave(struct hub *hub, struct hub_conn *conn, const char *room);
bool hub_is_member(struct hub *hub, struct hub_conn *conn, const char *room);

/* Fan msg out to every member of its room on this node. Broker thread. */
void hub_deliver(struct hub *hub, const struct chat_msg *msg);
/* Tell the other members of room that conn's user is typing. */
void hub_typing(struct hub *hub, struct hub_conn *conn, const char *room);

/* Distinct user names online in room, sorted; free with hub_free_names. */
int hub_room_members(struct hub *hub, const char *room, char ***names, size_t *count);
void hub_free_names(char **names, size_t count);
/* Every room with members: names and online counts; free names with hub_free_names. */
int hub_list_rooms(struct hub *hub, char ***names, size_t **online, size_t *count);
/* Rooms with members on this node. */
long hub_room_count(struct hub *hub);

/* ---- cluster presence: the broker tells the hub about other nodes' users ---- */

/* Told when a user's first connection on this node joins room (online) or the
 * last one leaves it. Called with the hub lock held: must not block or call the hub. */
typedef void (*hub_presence_cb)(void *ctx, const char *room, const char *user, bool online);
/* Told when a user of this node is typing in room; same rules. */
typedef void (*hub_typing_cb)(void *ctx, const char *room, const char *user);
void hub_set_cluster_listener(struct hub *hub, hub_presence_cb presence, hub_typing_cb typing,
                              void *ctx);

/* Another node reports user online in room (delta +1) or gone (-1). The hub
 * keeps a count per user and announces presence to local members when the user
 * appears or disappears cluster-wide. Broker thread. */
void hub_remote_presence(struct hub *hub, const char *room, const char *user, int delta);

/* Another node's user is typing in room: tell the local members but that user. */
void hub_remote_typing(struct hub *hub, const char *room, const char *user);

/* (room, user) pairs of users connected to this node; free with hub_free_presence. */
struct hub_presence {
    char *room;
    char *user;
};
int hub_local_presence(struct hub *hub, struct hub_presence **out, size_t *count);
void hub_free_presence(struct hub_presence *entries, size_t count);

/* Shutdown: queue close 1001 on every connection and wait (at most timeout_ms)
 * until they are written. Main thread. */
void hub_close_all(struct hub *hub, int code, const char *reason, int timeout_ms);

#endif
