/* rooms: who may see and enter a room under auth = accounts: public rooms
 * made with POST /api/rooms (and general, which is always there), private
 * rooms and direct messages open to their members only, owners who add and
 * remove members, rooms an admin closed; and the events of a room's own log
 * (room, member, closed, and retention under every auth mode) that make and
 * change them on every node. Under auth off and token every room is open,
 * as it always was. And moderation, under auth token and accounts: who
 * moderates a room, the mute, unmute, ban and unban events, and what a mute
 * or ban keeps a user from. */
#ifndef TURBOCHAT_ROOMS_H
#define TURBOCHAT_ROOMS_H

#include <stdbool.h>
#include <stddef.h>

#include "chat.h"

struct auth_claims;
struct broker;
struct cJSON;
struct config;
struct store;

#define ROOMS_DM_MAX 8 /* people in a direct message, its maker included */

struct rooms;

struct rooms *rooms_create(const struct config *config, struct store *store, struct broker *broker);
void rooms_free(struct rooms *rooms);

/* What a caller would do in a room: read it (join, history, search, the
 * room list, a delete of one's own message), or speak there (send, reply,
 * edit, react). */
enum rooms_use { ROOMS_READ, ROOMS_SPEAK };

/* Room of at most PROTO_ROOM_MAX code points, and the words around it. */
#define ROOMS_WHY_MAX (PROTO_ROOM_MAX * 4 + 64)

/* Whether the caller of claims (NULL under auth = off) may use room so, in
 * this order:
 * - the token's rooms (forbidden, "the token does not allow this room");
 * - under auth = accounts an open room, public or with the caller as a
 *   member (not_found, "no such room": as if it did not exist);
 * - no ban, and to speak no mute, of the caller in room (forbidden, "you are
 *   banned from <room>", "you are muted in <room>"; unavailable when the
 *   store cannot say). A token of role admin is never held back by either.
 * False after filling *err and why (ROOMS_WHY_MAX bytes). The one rule for
 * every path to a room: REST, WebSocket, the room list and search. Any
 * thread; reads the store (one primary-key read for the sanctions) but
 * under auth = off. */
bool rooms_may_use(struct rooms *rooms, const char *room, const struct auth_claims *claims,
                   enum rooms_use use, enum proto_error *err, char *why);

/* Make room, public or private, by creator (its owner when private).
 * Refusals: room_invalid, exists, unavailable. Blocks: a worker thread. */
int rooms_make(struct rooms *rooms, const char *room, const char *creator, bool is_private,
               struct chat_refusal *refusal);

/* By actor in private room: add member (role "member" or "owner"), or with
 * present false remove them. An owner may do all; anyone may remove
 * themselves. Refusals: not_found (no such room or account), forbidden,
 * bad_request, unavailable. Blocks. */
int rooms_set_member(struct rooms *rooms, const char *room, const char *actor, const char *member,
                     const char *role, bool present, struct chat_refusal *refusal);

/* The direct-message room of creator and others (1 to ROOMS_DM_MAX - 1
 * existing accounts), made on first use; *room is its name (the caller
 * frees it). Blocks. */
int rooms_open_dm(struct rooms *rooms, const char *creator, char *const *others, size_t count,
                  char **room, struct chat_refusal *refusal);

/* Keep among msg's mentions only the users who may enter its room, so that
 * nobody outside a private room is told of its messages. Any thread. */
void rooms_keep_mentions_of_members(struct rooms *rooms, struct chat_msg *msg);

/* The name of user's read log: CHAT_READ_LOG_PREFIX and a hash of the name
 * in ASCII lower case. The caller frees it. */
char *rooms_read_log(const char *user);

#define ROOMS_RETENTION_DAYS_MAX 36500.0 /* a room's retention_days, at most */

/* By actor, a moderator of room (the caller checked): keep its messages
 * days days (0: forever), or with has_days false follow the deployment's
 * retention again; a `retention` event of the room's log. Refusals:
 * bad_request, unavailable. Blocks. */
int rooms_set_retention(struct rooms *rooms, const char *room, const char *actor, bool has_days,
                        double days, struct chat_refusal *refusal);

/* Admin: close room. Blocks. */
int rooms_close(struct rooms *rooms, const char *room, const char *actor,
                struct chat_refusal *refusal);

/* ---- moderation */

/* True when claims (NULL under auth off: nobody) make their user a
 * moderator of room: a token of role admin, or mod for its rooms; under
 * auth = accounts also an admin account, or the room's owner (its maker
 * when public). Any thread; may read the store. */
bool rooms_is_moderator(struct rooms *rooms, const char *room, const struct auth_claims *claims);

/* By the moderator of claims: kind (CHAT_MUTE, CHAT_UNMUTE, CHAT_BAN,
 * CHAT_UNBAN) of user in room, published to the room's log; *event is the
 * stored event (the caller frees it with chat_msg_free). Refusals:
 * forbidden (not a moderator, auth off, oneself, an admin account),
 * bad_request (user is no valid name), not_found (no such account),
 * unavailable. Blocks: a worker thread. */
int rooms_sanction(struct rooms *rooms, const char *room, const struct auth_claims *claims,
                   const char *user, enum chat_kind kind, struct chat_msg **event,
                   struct chat_refusal *refusal);

/* {room, muted: [{user, by, ts}], banned: [...]} of room for a moderator
 * (the caller deletes it), or NULL with the refusal (forbidden,
 * unavailable). Any thread. */
struct cJSON *rooms_sanctions(struct rooms *rooms, const char *room,
                              const struct auth_claims *claims, struct chat_refusal *refusal);

#endif
