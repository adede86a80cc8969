/* broker: the publish/subscribe interface between the handlers and the rest of
 * the cluster; one backend chosen at start-up (embedded single node or Valkey). */
#ifndef TURBOCHAT_BROKER_H
#define TURBOCHAT_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct chat_msg;
struct config;
struct metrics;
struct store;

/* Every message of every room, each room's messages in id order, once each,
 * after the message is in this node's store. Runs on a broker thread; must not block. */
typedef void (*broker_deliver_cb)(void *ctx, const struct chat_msg *msg);

#define BROKER_ACCEPTED 0  /* a new message was stored */
#define BROKER_DUPLICATE 1 /* the ref was seen: msg is the original message */

/* The outcome of one publish, exactly once: BROKER_ACCEPTED or BROKER_DUPLICATE
 * with the message (id and ts set), or a negative code
 * (-TC_EUNAVAILABLE: nothing was stored; -TC_ESTORE) with msg NULL. Runs on a
 * broker thread; must not block. msg is only valid during the call. */
typedef void (*broker_publish_cb)(void *ctx, int status, const struct chat_msg *msg);

struct broker_ops {
    const char *name;
    /* Assign msg its id and ts and make it durable, then call cb; msg is consumed. */
    int (*publish)(struct broker *broker, struct chat_msg *msg, broker_publish_cb cb, void *ctx);
    /* Messages of room with after < id <= upto, ascending, at most limit; *complete is
     * false when the replay window does not reach back to after + 1. */
    int (*replay)(struct broker *broker, const char *room, uint64_t after, uint64_t upto,
                  int limit, struct chat_msg ***out, size_t *count, bool *complete);
    /* Highest id of room known to this node (0 when none). */
    int (*last_id)(struct broker *broker, const char *room, uint64_t *out);
    /* True when publish can succeed now; else why names the reason. */
    bool (*is_ready)(struct broker *broker, char *why, size_t whylen);
    /* Refuse further publishes with -TC_EUNAVAILABLE (shutdown). */
    void (*drain)(struct broker *broker);
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
    broker_deliver_cb deliver;
    void *deliver_ctx;
};

/* The embedded single-node backend: ids from the store, ack after commit. */
struct broker *broker_local_create(const struct broker_deps *deps, char *err, size_t errlen);

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

/* Free the backend; accepts NULL. Publishes in flight complete first. */
static inline void broker_free(struct broker *b)
{
    if (b)
        b->ops->free(b);
}

#endif
