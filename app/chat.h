/* chat: the rules of what a user may do to a room's log, checked against
 * this node's copy of it before an event is published: a send's text, reply
 * quote and mentions; an edit's, delete's or reaction's target, permission
 * and limits. The same rules for the WebSocket and REST. */
#ifndef TURBOCHAT_CHAT_H
#define TURBOCHAT_CHAT_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

struct config;
struct store;

/* Why an event was refused: the error and its reason for the client (a
 * static string). */
struct chat_refusal {
    enum proto_error err;
    const char *why;
};

/* Fill refusal; return rc (a code, a verdict, false: whatever the caller
 * answers with). */
static inline int chat_refused(struct chat_refusal *refusal, enum proto_error err, const char *why,
                               int rc)
{
    refusal->err = err;
    refusal->why = why;
    return rc;
}

/* What chat_prepare_send or chat_prepare_change decided. */
enum chat_verdict {
    CHAT_PUBLISH, /* publish the event */
    CHAT_REFUSED, /* answer the refusal */
    CHAT_ALREADY, /* answer with *existing: the event its ref produced before (a
                   * retry, checked before anything else), or the event that
                   * added a reaction the user already has */
};

/* Make msg (kind CHAT_MESSAGE; room, user, text, ref, reply_to set) ready to
 * publish: normalize its text, quote the message it replies to, record the
 * users it mentions. With CHAT_ALREADY, *existing is the stored event (free
 * with chat_msg_free). Any thread; reads the store. */
enum chat_verdict chat_prepare_send(struct store *store, const struct config *config,
                                    struct chat_msg *msg, struct chat_msg **existing,
                                    struct chat_refusal *refusal);

/* Check the change ev (kind, room, user, ref, target; text of an edit, emoji
 * of a reaction) made by its user, a moderator of the room when moderator is
 * set: normalize an edit's text, and decide. Any thread; reads the store. */
enum chat_verdict chat_prepare_change(struct store *store, const struct config *config,
                                      struct chat_msg *ev, bool moderator,
                                      struct chat_msg **existing, struct chat_refusal *refusal);

#endif
