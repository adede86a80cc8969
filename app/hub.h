/* hub: rooms, their members and presence on this node, and what reaches a
 * member: live frames in id order after a join's replay, which is read from
 * history in pages as the member's queue drains. The queues and sockets
 * themselves belong to loop. */
#ifndef TURBOCHAT_HUB_H
#define TURBOCHAT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_claims;
struct broker;
struct broker_listener;
struct chat_msg;
struct config;
struct conn;
struct hub;
struct hub_conn;
struct metrics;

/* Start the hub. Free with hub_free. */
struct hub *hub_create(const struct config *config, struct metrics *metrics);
/* Free everything; every connection must be closed. Accepts NULL. */
void hub_free(struct hub *hub);

/* The broker the hub reads join history from and tells of this node's
 * presence and typing; NULL detaches it (shutdown, after the last
 * connection). Main thread, before the first connection. */
void hub_set_broker(struct hub *hub, struct broker *broker);

/* The broker's listener, with the hub as its ctx: the cluster's messages,
 * presence and typing into this node's rooms. */
extern const struct broker_listener hub_broker_listener;

/* The hub's side of a connection: its rooms. Takes a reference on conn until
 * hub_conn_closed. Loop thread of conn. */
struct hub_conn *hub_conn_create(struct hub *hub, struct conn *conn);
/* The connection is gone: leave every room and free. Loop thread of conn. */
void hub_conn_closed(struct hub_conn *hc);
/* "<node id>/<serial>": names the connection in the cluster, for events it
 * caused that it must not be told of (its own read). */
void hub_conn_origin(const struct hub_conn *hc, char *out, size_t outlen);

/* The connection the hub writes to. */
struct conn *hub_conn_socket(struct hub_conn *hc);

/* Set the user name once (after hello), with its session (auth = accounts,
 * else NULL), which ends the connection when it ends, and the claims when
 * auth is on (NULL: every room; they must outlive hc): mentions reach the
 * user's connections in the rooms they may read. Loop thread of conn. */
void hub_conn_set_user(struct hub_conn *hc, const char *user, const char *sid,
                       const struct auth_claims *claims);

/* The connection's queue drained: queue the next replay page, one per call,
 * asking for another drain while a room still replays. Loop thread. */
void hub_conn_drained(struct hub_conn *hc);

/* Join room: queues `joined`, then, with since, the missed messages (in pages,
 * as the queue drains) before any live message of the room. Joining a room
 * again answers `joined` without a second replay. 0, -E2BIG (rooms per
 * connection), or negative. Loop thread of hc. */
/* The joiner's read state of the room (auth = accounts) and the room's
 * history head, for `joined`. */
struct hub_read_state {
    uint64_t last_read;
    int unread;
    int mentions;
    bool muted;      /* a moderator muted the joiner in the room */
    uint64_t begins; /* where the room's history begins (0 reads as 1): a replay starts there */
    double retention_days; /* the room's effective retention; 0: forever */
};
int hub_join(struct hub *hub, struct hub_conn *hc, const char *room, const uint64_t *since,
             const struct hub_read_state *read);
/* Leave room; -ENOENT when hc was not in it. Loop thread of hc. */
int hub_leave(struct hub *hub, struct hub_conn *hc, const char *room);
bool hub_is_member(struct hub *hub, struct hub_conn *hc, const char *room);

/* Fan the event msg out to every member of its room on this node, and a
 * message's mentions to the users it names. Broker thread. */
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
