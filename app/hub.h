/* hub: rooms, their members and presence on this node, and what reaches a
 * member: live frames in id order after a join's replay, which is read from
 * history in pages as the member's queue drains. The queues and sockets
 * themselves belong to loop. */
#ifndef TURBOCHAT_HUB_H
#define TURBOCHAT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chat_msg;
struct config;
struct conn;
struct hub;
struct hub_conn;
struct metrics;

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

/* Start the hub. Free with hub_free. */
struct hub *hub_create(const struct config *config, struct metrics *metrics,
                       const struct hub_history *history);
/* Free everything; every connection must be closed. Accepts NULL. */
void hub_free(struct hub *hub);

/* The hub's side of a connection: its rooms. Takes a reference on conn until
 * hub_conn_closed. Loop thread of conn. */
struct hub_conn *hub_conn_create(struct hub *hub, struct conn *conn);
/* The connection is gone: leave every room and free. Loop thread of conn. */
void hub_conn_closed(struct hub_conn *hc);
/* The connection the hub writes to. */
struct conn *hub_conn_socket(struct hub_conn *hc);

/* Set the user name once (after hello). Loop thread of conn. */
void hub_conn_set_user(struct hub_conn *hc, const char *user);

/* The connection's queue drained: queue the next replay pages. Loop thread. */
void hub_conn_drained(struct hub_conn *hc);

/* Join room: queues `joined`, then, with since, the missed messages (in pages,
 * as the queue drains) before any live message of the room. Joining a room
 * again answers `joined` without a second replay. 0, -E2BIG (rooms per
 * connection), or negative. Loop thread of hc. */
int hub_join(struct hub *hub, struct hub_conn *hc, const char *room, const uint64_t *since);
/* Leave room; -ENOENT when hc was not in it. Loop thread of hc. */
int hub_leave(struct hub *hub, struct hub_conn *hc, const char *room);
bool hub_is_member(struct hub *hub, struct hub_conn *hc, const char *room);

/* Fan msg out to every member of its room on this node. Broker thread. */
void hub_deliver(struct hub *hub, const struct chat_msg *msg);
/* Tell the other members of room that hc's user is typing. */
void hub_typing(struct hub *hub, struct hub_conn *hc, const char *room);

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

#endif
