/* broker: the publish/subscribe interface between the handlers and the rest of
 * the cluster; one backend chosen at start-up (embedded single node or Valkey). */
#ifndef TURBOCHAT_BROKER_H
#define TURBOCHAT_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct broker;
struct chat_msg;
struct cJSON;
struct config;
struct metrics;
struct store;

#define BROKER_ACCEPTED 0  /* a new message was stored */
#define BROKER_DUPLICATE 1 /* the ref was seen: msg is the original message */

/* The outcome of one publish, exactly once: BROKER_ACCEPTED or BROKER_DUPLICATE
 * with the message (id and ts set), or a negative code
 * (-TC_EUNAVAILABLE: nothing was stored; -TC_ECLAIMED: another event took
 * its claim, nothing was stored; -TC_ESTORE) with msg NULL. Runs on a
 * broker thread; must not block. msg is only valid during the call. */
typedef void (*broker_publish_cb)(void *ctx, int status, const struct chat_msg *msg);

/* Called once per (room, user) online on this node. */
typedef void (*broker_presence_visit_fn)(void *visit_ctx, const char *room, const char *user);

/* What a broker tells this node's rooms; the hub implements it
 * (hub_broker_listener). Every call runs on a broker thread with no broker
 * lock held and may take the hub lock; none may block. */
struct broker_listener {
    /* Every message of every room, each room's messages in id order, once
     * each, after the message is in this node's store. */
    void (*deliver)(void *ctx, const struct chat_msg *msg);
    /* Another node's user came online in room (delta +1) or went away (-1). */
    void (*remote_presence)(void *ctx, const char *room, const char *user, int delta);
    /* Visit every (room, user) online on this node, each once. */
    void (*local_presence)(void *ctx, broker_presence_visit_fn visit, void *visit_ctx);
    /* Another node's user is typing in room. */
    void (*remote_typing)(void *ctx, const char *room, const char *user);
};

struct broker_ops {
    const char *name;
    /* Assign msg its id and ts and make it durable, then call cb; msg is consumed. */
    int (*publish)(struct broker *broker, struct chat_msg *msg, broker_publish_cb cb, void *ctx);
    /* Messages of room with after < id <= upto, ascending, at most limit; *complete is
     * false when the replay window does not reach back to after + 1. */
    int (*replay)(struct broker *broker, const char *room, uint64_t after, uint64_t upto, int limit,
                  struct chat_msg ***out, size_t *count, bool *complete);
    /* Highest id of room known to this node (0 when none). */
    int (*last_id)(struct broker *broker, const char *room, uint64_t *out);
    /* True when publish can succeed now; else why names the reason. */
    bool (*is_ready)(struct broker *broker, char *why, size_t whylen);
    /* Refuse further publishes with -TC_EUNAVAILABLE (shutdown). */
    void (*drain)(struct broker *broker);
    /* This node's first connection of user joined room (online) or its last one
     * left. Called with the hub lock held: only queues. NULL: single node. */
    void (*presence_changed)(struct broker *broker, const char *room, const char *user,
                             bool online);
    /* A user of this node is typing in room; best effort, never stored. Hub
     * lock held: only queues. NULL: single node. */
    void (*typing)(struct broker *broker, const char *room, const char *user);
    void (*free)(struct broker *broker);
};

struct broker {
    const struct broker_ops *ops;
};

/* Everything a backend needs; the pointers outlive the broker. */
struct broker_deps {
    const struct config *config;
    struct store *store;
    struct metrics *metrics;
    const struct broker_listener *listener; /* presence and typing NULL: not shared */
    void *listener_ctx;                     /* passed to every listener call */
};

/* The embedded single-node backend: ids from the store, ack after commit. */
struct broker *broker_local_create(const struct broker_deps *deps, char *err, size_t errlen);

/* The cluster backend over the Valkey of deps->config (redis_*): cluster-wide
 * ids, replay window, gap repair, presence across nodes. Starts a publisher
 * and a subscriber thread and returns at once: an unreachable Valkey is not an
 * error (the broker is not ready and retries with backoff). NULL only when
 * the configuration cannot work, with the reason in err. Main thread. */
struct broker *broker_valkey_create(const struct broker_deps *deps, char *err, size_t errlen);

static inline int broker_publish(struct broker *b, struct chat_msg *msg, broker_publish_cb cb,
                                 void *ctx)
{
    return b->ops->publish(b, msg, cb, ctx);
}

static inline int broker_replay(struct broker *b, const char *room, uint64_t after, uint64_t upto,
                                int limit, struct chat_msg ***out, size_t *count, bool *complete)
{
    return b->ops->replay(b, room, after, upto, limit, out, count, complete);
}

static inline int broker_last_id(struct broker *b, const char *room, uint64_t *out)
{
    return b->ops->last_id(b, room, out);
}

static inline bool broker_is_ready(struct broker *b, char *why, size_t whylen)
{
    return b->ops->is_ready(b, why, whylen);
}

static inline void broker_drain(struct broker *b)
{
    b->ops->drain(b);
}

/* Tell the other nodes about a local presence change; nothing in single-node
 * mode. Matches hub_presence_cb's rules: hub lock held, never blocks. */
static inline void broker_presence_changed(struct broker *b, const char *room, const char *user,
                                           bool online)
{
    if (b->ops->presence_changed)
        b->ops->presence_changed(b, room, user, online);
}

/* Tell the other nodes that user is typing in room; nothing in single-node mode. */
static inline void broker_typing(struct broker *b, const char *room, const char *user)
{
    if (b->ops->typing)
        b->ops->typing(b, room, user);
}

/* Publish msg (consumed) and wait for the outcome: BROKER_ACCEPTED or
 * BROKER_DUPLICATE with *result the stored event (the caller frees it with
 * chat_msg_free), or a negative code as broker_publish_cb has it. Not on a
 * loop or broker thread: it blocks. */
int broker_publish_wait(struct broker *b, struct chat_msg *msg, struct chat_msg **result);

/* Publish, as actor, an event of kind to log whose text is the JSON record
 * rec (consumed), taking claim (NULL: none), and wait until it is stored
 * here: 0, -TC_ECLAIMED, or negative. Blocks as broker_publish_wait. */
int broker_publish_record(struct broker *b, const char *log, enum chat_kind kind, const char *actor,
                          struct cJSON *rec, const char *claim);

/* Free the backend; accepts NULL. Publishes in flight complete first. */
static inline void broker_free(struct broker *b)
{
    if (b)
        b->ops->free(b);
}

#endif
