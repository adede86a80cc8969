/* broker_local: the embedded single-node broker. Ids come from the store's
 * highest id per room; a message is acknowledged and delivered only after its
 * group commit, so an acked message survives kill -9. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "store.h"
#include "strmap.h"
#include "util.h"

#define REF_PRUNE_INTERVAL_MS 10000

/* A ref seen in the idempotency window: what its message got. A retry is
 * answered with that message as the store has it, so no copy of the text is
 * held here (a full copy of every message sent with a ref, for the window,
 * let 100 clients grow a node by 142 MB in 20 s). */
struct seen_ref {
    uint64_t id;
    int64_t ts;
};

struct broker_local {
    struct broker base;
    struct broker_deps deps;
    pthread_mutex_t lock;    /* everything below */
    struct strmap *next_ids; /* room -> uint64_t * : last id assigned */
    struct strmap *refs;     /* "room\x1fuser\x1fref" -> struct seen_ref */
    struct strmap *claims;   /* "room\x1fclaim" -> non-NULL: taken by this process */
    int64_t started_ms;      /* refs older than start are only in the store */
    int64_t last_prune_ms;
    bool draining;
    size_t in_flight;       /* jobs queued in the store */
    pthread_cond_t settled; /* signalled when in_flight drops to 0 */
};

/* One publish on its way through the store. */
struct publish_job {
    struct broker_local *broker;
    struct chat_msg *msg; /* owned */
    bool duplicate;       /* msg is the original of a repeated ref */
    char *ref_key;        /* owned; set for new messages with a ref */
    uint64_t started_ns;
    broker_publish_cb cb;
    void *ctx;
};

static char *ref_key(const struct chat_msg *msg)
{
    size_t len = strlen(msg->room) + strlen(msg->user) + strlen(msg->ref) + 3;
    char *key = xmalloc(len);
    snprintf(key, len, "%s\x1f%s\x1f%s", msg->room, msg->user, msg->ref);
    return key;
}

struct prune_ctx {
    int64_t cutoff_ms;
    char **expired;
    size_t count;
    size_t cap;
};

static bool collect_expired(void *ctx, const char *key, void *value)
{
    struct prune_ctx *p = ctx;
    struct seen_ref *seen = value;
    if (seen->ts >= p->cutoff_ms)
        return true;
    UTIL_GROW(p->expired, p->count, p->cap);
    p->expired[p->count++] = xstrdup(key);
    return true;
}

/* Forget refs older than the idempotency window. lock held. */
static void prune_refs(struct broker_local *b, int64_t now_ms)
{
    if (now_ms - b->last_prune_ms < REF_PRUNE_INTERVAL_MS)
        return;
    b->last_prune_ms = now_ms;
    struct prune_ctx p = {now_ms - (int64_t)b->deps.config->ref_ttl_s * 1000, NULL, 0, 0};
    strmap_each(b->refs, collect_expired, &p);
    for (size_t i = 0; i < p.count; i++) {
        strmap_remove(b->refs, p.expired[i]);
        free(p.expired[i]);
    }
    free(p.expired);
}

/* The original message of a repeated ref, or NULL; one remembered here has
 * only its id and ts so far (on_stored reads the rest from the store). lock
 * held. */
static struct chat_msg *find_original(struct broker_local *b, const struct chat_msg *msg,
                                      const char *key, int64_t now_ms)
{
    int64_t since_ms = now_ms - (int64_t)b->deps.config->ref_ttl_s * 1000;
    struct seen_ref *seen = strmap_get(b->refs, key);
    if (seen && seen->ts >= since_ms) {
        struct chat_msg *original = chat_msg_clone(msg);
        original->id = seen->id;
        original->ts = seen->ts;
        return original;
    }
    if (seen || since_ms >= b->started_ms)
        return NULL;
    /* Within one window of start-up the ref may predate this process. */
    struct chat_msg *original = NULL;
    if (store_find_ref(b->deps.store, msg->room, msg->user, msg->ref, since_ms, &original) == 0)
        return original;
    return NULL;
}

/* 0 when claim (len bytes) of room is free here and in the store, else
 * -TC_ECLAIMED (or the store's error); *key is its key in b->claims. lock held. */
static int claim_is_free(struct broker_local *b, const char *room, const char *claim, size_t len,
                         char **key)
{
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "%s\x1f%.*s", room, (int)len, claim);
    *key = util_buf_take(&buf, NULL);
    if (strmap_get(b->claims, *key))
        return -TC_ECLAIMED;
    int stored = store_has_claim(b->deps.store, room, *key + strlen(room) + 1);
    return stored < 0 ? stored : stored ? -TC_ECLAIMED : 0;
}

/* Give back the claims msg took. lock held. */
static void release_claims(struct broker_local *b, const struct chat_msg *msg)
{
    for (const char *c = msg->claim; c && *c;) {
        const char *end = strchr(c, '\n');
        struct util_buf key;
        util_buf_init(&key);
        util_buf_appendf(&key, "%s\x1f%.*s", msg->room, (int)(end ? end - c : (long)strlen(c)), c);
        char *k = util_buf_take(&key, NULL);
        strmap_remove(b->claims, k);
        free(k);
        c = end ? end + 1 : NULL;
    }
}

/* Take every claim of msg (one per line), or none when one is taken: 0 or
 * -TC_ECLAIMED. lock held. */
static int take_claims(struct broker_local *b, const struct chat_msg *msg)
{
    char *keys[8];
    size_t n = 0;
    int rc = 0;
    for (const char *c = msg->claim; c && *c && rc == 0 && n < ARRAY_LEN(keys);) {
        const char *end = strchr(c, '\n');
        rc = claim_is_free(b, msg->room, c, end ? (size_t)(end - c) : strlen(c), &keys[n++]);
        c = end ? end + 1 : NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            strmap_put(b->claims, keys[i], b);
        free(keys[i]);
    }
    return rc;
}

/* Next id of room: one more than the highest assigned or stored. lock held. */
static int next_id(struct broker_local *b, const char *room, uint64_t *out)
{
    uint64_t *last = strmap_get(b->next_ids, room);
    if (!last) {
        uint64_t stored = 0;
        int rc = store_last_id(b->deps.store, room, &stored);
        if (rc < 0)
            return rc;
        last = xmalloc(sizeof(*last));
        *last = stored;
        strmap_put(b->next_ids, room, last);
    }
    *out = ++*last;
    return 0;
}

static void job_settled(struct broker_local *b)
{
    pthread_mutex_lock(&b->lock);
    if (--b->in_flight == 0)
        pthread_cond_broadcast(&b->settled);
    pthread_mutex_unlock(&b->lock);
}

/* Writer thread: the job's transaction committed (or failed). */
static void on_stored(void *ctx, int status)
{
    struct publish_job *job = ctx;
    struct broker_local *b = job->broker;
    if (status == 0) {
        struct chat_msg *stored = NULL;
        if (job->duplicate &&
            store_get_event(b->deps.store, job->msg->room, job->msg->id, &stored) == 0) {
            chat_msg_free(job->msg); /* the retry's own copy: answer with the original */
            job->msg = stored;
        }
        if (!job->duplicate)
            b->deps.listener->deliver(b->deps.listener_ctx, job->msg);
        metrics_observe(&b->deps.metrics->publish_seconds, util_mono_ns() - job->started_ns);
        job->cb(job->ctx, job->duplicate ? BROKER_DUPLICATE : BROKER_ACCEPTED, job->msg);
    } else {
        pthread_mutex_lock(&b->lock);
        if (job->ref_key)
            strmap_remove(b->refs, job->ref_key);
        if (!job->duplicate)
            release_claims(b, job->msg); /* not stored: free for the next try */
        pthread_mutex_unlock(&b->lock);
        job->cb(job->ctx, status, NULL);
    }
    chat_msg_free(job->msg);
    free(job->ref_key);
    free(job);
    job_settled(b);
}

static int local_publish(struct broker *base, struct chat_msg *msg, broker_publish_cb cb, void *ctx)
{
    struct broker_local *b = (struct broker_local *)base;
    struct publish_job *job = xcalloc(1, sizeof(*job));
    job->broker = b;
    job->cb = cb;
    job->ctx = ctx;
    job->started_ns = util_mono_ns();
    int64_t now_ms = util_now_ms();
    bool duplicate = false;
    int rc;

    pthread_mutex_lock(&b->lock);
    if (b->draining) {
        rc = -TC_EUNAVAILABLE;
        goto out_fail;
    }
    prune_refs(b, now_ms);
    if (msg->ref) {
        job->ref_key = ref_key(msg);
        struct chat_msg *original = find_original(b, msg, job->ref_key, now_ms);
        if (original) {
            chat_msg_free(msg);
            free(job->ref_key);
            job->ref_key = NULL;
            job->msg = original;
            job->duplicate = duplicate = true;
            /* The barrier acks after the original's own commit. */
            rc = store_barrier(b->deps.store, on_stored, job);
            goto out_queued;
        }
    }
    rc = take_claims(b, msg);
    if (rc == 0)
        rc = next_id(b, msg->room, &msg->id);
    if (rc < 0)
        goto out_fail;
    msg->ts = now_ms;
    job->msg = msg;
    if (job->ref_key) {
        struct seen_ref *seen = xmalloc(sizeof(*seen));
        seen->id = msg->id;
        seen->ts = msg->ts;
        strmap_put(b->refs, job->ref_key, seen);
    }
    rc = store_append(b->deps.store, msg, on_stored, job);
out_queued:
    if (rc < 0) {
        msg = job->msg;
        if (job->ref_key)
            strmap_remove(b->refs, job->ref_key);
        goto out_fail;
    }
    /* From here the writer thread owns job and may already have freed it. */
    b->in_flight++;
    pthread_mutex_unlock(&b->lock);
    atomic_fetch_add(&b->deps.metrics->messages_received, duplicate ? 0 : 1);
    return 0;

out_fail:
    pthread_mutex_unlock(&b->lock);
    chat_msg_free(msg);
    free(job->ref_key);
    free(job);
    return rc;
}

static int local_replay(struct broker *base, const char *room, uint64_t after, uint64_t upto,
                        int limit, struct chat_msg ***out, size_t *count, bool *complete)
{
    struct broker_local *b = (struct broker_local *)base;
    *out = NULL;
    *count = 0;
    /* The log holds every message; the window is only the replay limit. */
    *complete = upto - after <= (uint64_t)limit;
    if (!*complete)
        return 0;
    return store_fetch_range(b->deps.store, room, after, upto, limit, out, count);
}

static int local_last_id(struct broker *base, const char *room, uint64_t *out)
{
    struct broker_local *b = (struct broker_local *)base;
    return store_last_id(b->deps.store, room, out);
}

static bool local_is_ready(struct broker *base, char *why, size_t whylen)
{
    struct broker_local *b = (struct broker_local *)base;
    pthread_mutex_lock(&b->lock);
    bool draining = b->draining;
    pthread_mutex_unlock(&b->lock);
    if (draining)
        snprintf(why, whylen, "shutting down");
    else if (!store_is_ready(b->deps.store))
        snprintf(why, whylen, "store is not open");
    else
        return true;
    return false;
}

static void local_drain(struct broker *base)
{
    struct broker_local *b = (struct broker_local *)base;
    pthread_mutex_lock(&b->lock);
    b->draining = true;
    pthread_mutex_unlock(&b->lock);
}

static void local_free(struct broker *base)
{
    struct broker_local *b = (struct broker_local *)base;
    pthread_mutex_lock(&b->lock);
    b->draining = true;
    while (b->in_flight > 0)
        pthread_cond_wait(&b->settled, &b->lock);
    pthread_mutex_unlock(&b->lock);
    strmap_free(b->refs);
    strmap_free(b->claims);
    strmap_free(b->next_ids);
    pthread_cond_destroy(&b->settled);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static const struct broker_ops local_ops = {
    .name = "local",
    .publish = local_publish,
    .replay = local_replay,
    .last_id = local_last_id,
    .is_ready = local_is_ready,
    .drain = local_drain,
    .free = local_free,
};

struct broker *broker_local_create(const struct broker_deps *deps, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct broker_local *b = xcalloc(1, sizeof(*b));
    b->base.ops = &local_ops;
    b->deps = *deps;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->settled, NULL);
    b->next_ids = strmap_create(free);
    b->refs = strmap_create(free);
    b->claims = strmap_create(NULL);
    b->started_ms = util_now_ms();
    b->last_prune_ms = b->started_ms;
    log_msg(LOG_INFO, "broker_ready", "mode=single-node");
    return &b->base;
}
