/* hub: rooms and members of this node, presence and typing, and fan-out.
 * A broadcast is encoded once into a reference-counted WebSocket frame; each
 * connection has a bounded queue; sender threads write queues to sockets,
 * never under the hub lock. A write can block (CivetWeb has no non-blocking
 * one) until a client that stopped reading times out, so a relief thread
 * adds senders while too many are stuck and work waits; extra senders exit
 * after config->sender_idle_ms without work. Lock order: hub->lock, then
 * conn->lock, then hub->pending_lock. */
#define _GNU_SOURCE
#include "hub.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "strmap.h"
#include "util.h"

#define HUB_WRITE_BATCH_BYTES (64 * 1024) /* coalesce queued frames up to this */
#define HUB_CLOSE_REASON_MAX 64
#define HUB_SENDER_STUCK_MS 100  /* a write this long: its client is not reading */
#define HUB_EXTRA_SENDERS_MAX 64 /* relief senders on top of config->sender_threads */
#define HUB_THREAD_RETRY_MS 1000 /* after the system refused a thread */

/* One server-to-client WebSocket frame, shared by every queue it is in. */
struct hub_frame {
    atomic_int refs;
    uint64_t msg_id;      /* chat message id, 0 for other frames */
    size_t len;           /* bytes of wire */
    unsigned char wire[]; /* header and payload, ready to write */
};

/* conn in room. Both indexes point at it: room->members and conn->rooms. */
struct membership {
    struct hub_room *room;
    struct hub_conn *conn;
    bool syncing;            /* join in progress: live frames are held */
    uint64_t skip_upto;      /* messages with id <= this are in joined.last_id or replayed */
    struct hub_frame **held; /* frames that arrived while syncing */
    size_t held_count;
    size_t held_cap;
};

struct hub_room {
    char *name;
    struct membership **members;
    size_t member_count;
    size_t member_cap;
    uint64_t last_id;      /* highest id delivered or read from history */
    bool last_id_known;    /* last_id includes the history's */
    struct strmap *remote; /* user -> number of other nodes reporting them (intptr_t) */
};

struct hub_conn {
    struct hub *hub;
    struct mg_connection *mc; /* valid until hub_conn_closed returns */
    atomic_int refs;
    char *user;                /* set once after hello */
    struct membership **rooms; /* under hub->lock */
    size_t room_count;
    size_t room_cap;
    struct hub_conn *prev_conn; /* hub->conns list, under hub->lock */
    struct hub_conn *next_conn;

    pthread_mutex_t lock;     /* guards the fields below */
    pthread_cond_t idle;      /* signalled when writing ends */
    struct hub_frame **queue; /* ring buffer */
    size_t q_head;
    size_t q_len;
    size_t q_cap;
    size_t q_bytes;
    bool scheduled; /* in the pending list or being drained */
    bool writing;   /* a thread is writing to mc */
    bool closing;   /* no more frames are accepted */
    bool closed;    /* the close handler ran: never touch mc */
    int close_code; /* close frame still to write, 0 none */
    char close_reason[HUB_CLOSE_REASON_MAX];
    struct hub_conn *next_pending; /* under hub->pending_lock */
};

/* One sender thread. */
struct hub_sender {
    struct hub *hub;
    pthread_t thread;
    atomic_int_fast64_t writing_since_ms; /* monotonic start of the write under way, 0 none */
};

struct hub {
    const struct config *config;
    struct metrics *metrics;
    struct hub_history history;
    hub_write_fn write;

    pthread_mutex_t lock;        /* rooms, memberships, conns list */
    struct strmap *rooms;        /* name -> struct hub_room */
    struct hub_conn *conns;      /* every open connection */
    hub_presence_cb presence_cb; /* told of local presence changes (cluster) */
    hub_typing_cb typing_cb;     /* told of local typing (cluster) */
    void *presence_ctx;

    pthread_mutex_t pending_lock;
    pthread_cond_t pending_cond;
    struct hub_conn *pending_head;
    struct hub_conn *pending_tail;
    bool stopping;
    struct hub_sender *senders; /* room for sender_max */
    int sender_count;           /* threads started; under pending_lock */
    int sender_max;
    int senders_idle;           /* waiting for work; under pending_lock */
    pthread_cond_t relief_cond; /* work is pending and no sender is idle */
    bool relief_sleeping;       /* relief waits for relief_cond with no timeout */
    pthread_t relief;
};

/* ---------------------------------------------------------------- frames */

static struct hub_frame *frame_alloc(int opcode, const void *payload, size_t len, uint64_t msg_id)
{
    unsigned char header[10];
    size_t header_len;
    header[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        header[1] = (unsigned char)len;
        header_len = 2;
    } else if (len <= 0xFFFF) {
        header[1] = 126;
        header[2] = (unsigned char)(len >> 8);
        header[3] = (unsigned char)len;
        header_len = 4;
    } else {
        header[1] = 127;
        for (int i = 0; i < 8; i++)
            header[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        header_len = 10;
    }
    struct hub_frame *f = xmalloc(sizeof(*f) + header_len + len);
    atomic_init(&f->refs, 1);
    f->msg_id = msg_id;
    f->len = header_len + len;
    memcpy(f->wire, header, header_len);
    memcpy(f->wire + header_len, payload, len);
    return f;
}

static struct hub_frame *frame_text(const char *json, size_t len, uint64_t msg_id)
{
    return frame_alloc(MG_WEBSOCKET_OPCODE_TEXT, json, len, msg_id);
}

static struct hub_frame *frame_close(int code, const char *reason)
{
    unsigned char payload[2 + HUB_CLOSE_REASON_MAX];
    size_t reason_len = strnlen(reason, HUB_CLOSE_REASON_MAX);
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, reason_len);
    return frame_alloc(MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, 2 + reason_len, 0);
}

static void frame_ref(struct hub_frame *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

static void frame_unref(struct hub_frame *f)
{
    if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}

/* Encode a cJSON object into a frame and free the object. */
static struct hub_frame *frame_from_json(cJSON *obj)
{
    size_t len;
    char *json = proto_encode_json(obj, &len);
    cJSON_Delete(obj);
    struct hub_frame *f = frame_text(json, len, 0);
    free(json);
    return f;
}

/* ---------------------------------------------------------------- queues */

static size_t queue_limit_bytes(const struct hub *hub)
{
    return (size_t)hub->config->outbound_max_kib * 1024;
}

/* Drop every queued frame. conn->lock held. */
static void queue_clear(struct hub_conn *conn)
{
    struct metrics *m = conn->hub->metrics;
    while (conn->q_len > 0) {
        frame_unref(conn->queue[conn->q_head]);
        conn->q_head = (conn->q_head + 1) % conn->q_cap;
        conn->q_len--;
        atomic_fetch_sub(&m->outbound_queued, 1);
    }
    conn->q_bytes = 0;
}

/* Put conn on the pending list for a sender. conn->lock held. */
static void schedule(struct hub_conn *conn)
{
    struct hub *hub = conn->hub;
    if (conn->scheduled)
        return;
    conn->scheduled = true;
    hub_conn_ref(conn);
    pthread_mutex_lock(&hub->pending_lock);
    conn->next_pending = NULL;
    if (hub->pending_tail)
        hub->pending_tail->next_pending = conn;
    else
        hub->pending_head = conn;
    hub->pending_tail = conn;
    if (hub->senders_idle > 0)
        pthread_cond_signal(&hub->pending_cond);
    else if (hub->relief_sleeping)
        pthread_cond_signal(&hub->relief_cond);
    pthread_mutex_unlock(&hub->pending_lock);
}

/* A slow consumer: forget its queue and close it with 1013. conn->lock held. */
static void mark_overflow(struct hub_conn *conn)
{
    queue_clear(conn);
    conn->closing = true;
    conn->close_code = HUB_CLOSE_TRY_AGAIN;
    snprintf(conn->close_reason, sizeof(conn->close_reason), "slow consumer");
    atomic_fetch_add(&conn->hub->metrics->slow_consumers, 1);
    log_msg(LOG_WARN, "slow_consumer", "user=%s queued_bytes_limit=%zu",
            conn->user ? conn->user : "-", queue_limit_bytes(conn->hub));
    schedule(conn);
}

/* Queue f (taking a reference) for conn. 0, -EPIPE when closing, -ENOBUFS on overflow. */
static int conn_enqueue(struct hub_conn *conn, struct hub_frame *f)
{
    struct hub *hub = conn->hub;
    int rc = 0;
    pthread_mutex_lock(&conn->lock);
    if (conn->closing) {
        rc = -EPIPE;
        goto out_unlock;
    }
    if (conn->q_len >= (size_t)hub->config->outbound_max_frames ||
        conn->q_bytes + f->len > queue_limit_bytes(hub)) {
        mark_overflow(conn);
        rc = -ENOBUFS;
        goto out_unlock;
    }
    if (conn->q_len == conn->q_cap) {
        size_t cap = conn->q_cap ? conn->q_cap * 2 : 16;
        struct hub_frame **q = xmalloc(cap * sizeof(*q));
        for (size_t i = 0; i < conn->q_len; i++)
            q[i] = conn->queue[(conn->q_head + i) % conn->q_cap];
        free(conn->queue);
        conn->queue = q;
        conn->q_cap = cap;
        conn->q_head = 0;
    }
    frame_ref(f);
    conn->queue[(conn->q_head + conn->q_len) % conn->q_cap] = f;
    conn->q_len++;
    conn->q_bytes += f->len;
    atomic_fetch_add(&hub->metrics->outbound_queued, 1);
    schedule(conn);
out_unlock:
    pthread_mutex_unlock(&conn->lock);
    return rc;
}

/* Move up to max_bytes of queued frames (at least one) into out. conn->lock held. */
static size_t queue_take(struct hub_conn *conn, struct hub_frame ***out, size_t max_bytes)
{
    size_t n = 0, bytes = 0;
    while (n < conn->q_len) {
        struct hub_frame *f = conn->queue[(conn->q_head + n) % conn->q_cap];
        if (n > 0 && bytes + f->len > max_bytes)
            break;
        bytes += f->len;
        n++;
    }
    if (n == 0)
        return 0;
    struct hub_frame **frames = xmalloc(n * sizeof(*frames));
    for (size_t i = 0; i < n; i++) {
        frames[i] = conn->queue[conn->q_head];
        conn->q_head = (conn->q_head + 1) % conn->q_cap;
    }
    conn->q_len -= n;
    conn->q_bytes -= bytes;
    atomic_fetch_sub(&conn->hub->metrics->outbound_queued, (int_fast64_t)n);
    *out = frames;
    return n;
}

/* Write frames (and a close frame when close is not NULL) to mc in one write.
 * Called with conn->writing set, without any lock. True when all was written. */
static bool write_frames(struct hub_conn *conn, struct hub_frame **frames, size_t n,
                         struct hub_frame *close, struct util_buf *scratch)
{
    const void *data;
    size_t len;
    if (n == 1 && !close) {
        data = frames[0]->wire;
        len = frames[0]->len;
    } else {
        scratch->len = 0;
        for (size_t i = 0; i < n; i++)
            util_buf_append(scratch, frames[i]->wire, frames[i]->len);
        if (close)
            util_buf_append(scratch, close->wire, close->len);
        data = scratch->data;
        len = scratch->len;
    }
    if (len == 0)
        return true;
    return conn->hub->write(conn->mc, data, len) == (int)len;
}

/* Write out what conn has queued; on sender's thread. */
static void drain_conn(struct hub_sender *sender, struct hub_conn *conn, struct util_buf *scratch)
{
    struct hub_frame **frames = NULL;
    struct hub_frame *close = NULL;
    pthread_mutex_lock(&conn->lock);
    size_t n = conn->closed ? 0 : queue_take(conn, &frames, HUB_WRITE_BATCH_BYTES);
    if (!conn->closed && conn->q_len == 0 && conn->close_code) {
        close = frame_close(conn->close_code, conn->close_reason);
        conn->close_code = 0;
    }
    if (n == 0 && !close) {
        conn->scheduled = false;
        pthread_mutex_unlock(&conn->lock);
        return;
    }
    conn->writing = true;
    pthread_mutex_unlock(&conn->lock);

    atomic_store(&sender->writing_since_ms, util_mono_ms());
    bool ok = write_frames(conn, frames, n, close, scratch);
    atomic_store(&sender->writing_since_ms, 0);
    for (size_t i = 0; i < n; i++)
        frame_unref(frames[i]);
    free(frames);
    frame_unref(close);

    pthread_mutex_lock(&conn->lock);
    conn->writing = false;
    if (!ok) {
        /* A failed or partial write leaves the stream unusable: stop writing. */
        conn->closing = true;
        conn->close_code = 0;
        queue_clear(conn);
    }
    pthread_cond_broadcast(&conn->idle);
    conn->scheduled = false;
    if (!conn->closed && (conn->q_len > 0 || conn->close_code))
        schedule(conn);
    pthread_mutex_unlock(&conn->lock);
}

/* Wait for work. An extra sender idle for config->sender_idle_ms returns
 * false when it is the newest one (so the others keep their slots) and has
 * left the pool; the next newest is then woken to look at its own idle time.
 * hub->pending_lock held. */
static bool await_work_locked(struct hub_sender *sender)
{
    struct hub *hub = sender->hub;
    bool extra = sender - hub->senders >= hub->config->sender_threads;
    int64_t idle_since = util_mono_ms();
    hub->senders_idle++;
    while (!hub->pending_head && !hub->stopping) {
        int64_t left = idle_since + hub->config->sender_idle_ms - util_mono_ms();
        bool newest = sender == &hub->senders[hub->sender_count - 1];
        if (!extra || (left <= 0 && !newest)) {
            pthread_cond_wait(&hub->pending_cond, &hub->pending_lock);
        } else if (left > 0) {
            util_cond_wait_ms(&hub->pending_cond, &hub->pending_lock, left);
        } else {
            hub->senders_idle--;
            hub->sender_count--;
            atomic_store(&hub->metrics->sender_threads, hub->sender_count);
            pthread_detach(pthread_self()); /* nobody joins a sender that left */
            pthread_cond_broadcast(&hub->pending_cond);
            return false;
        }
    }
    hub->senders_idle--;
    return true;
}

static void *sender_main(void *arg)
{
    struct hub_sender *sender = arg;
    struct hub *hub = sender->hub;
    struct util_buf scratch;
    util_buf_init(&scratch);
    for (;;) {
        pthread_mutex_lock(&hub->pending_lock);
        if (!await_work_locked(sender)) {
            pthread_mutex_unlock(&hub->pending_lock);
            break; /* from here on nothing of the hub is touched */
        }
        struct hub_conn *conn = hub->pending_head;
        if (!conn) {
            pthread_mutex_unlock(&hub->pending_lock);
            break;
        }
        hub->pending_head = conn->next_pending;
        if (!hub->pending_head)
            hub->pending_tail = NULL;
        else if (hub->senders_idle == 0 && hub->relief_sleeping)
            pthread_cond_signal(&hub->relief_cond); /* work left and no one free */
        pthread_mutex_unlock(&hub->pending_lock);
        drain_conn(sender, conn, &scratch);
        hub_conn_unref(conn);
    }
    util_buf_dispose(&scratch);
    return NULL;
}

/* Start one more sender thread; false when the system refused a thread.
 * hub->pending_lock held. */
static bool add_sender_locked(struct hub *hub)
{
    struct hub_sender *sender = &hub->senders[hub->sender_count];
    sender->hub = hub;
    atomic_init(&sender->writing_since_ms, 0);
    if (pthread_create(&sender->thread, NULL, sender_main, sender) != 0)
        return false;
    hub->sender_count++;
    atomic_store(&hub->metrics->sender_threads, hub->sender_count);
    return true;
}

/* Senders not stuck in a write for HUB_SENDER_STUCK_MS. hub->pending_lock held. */
static int senders_moving_locked(struct hub *hub)
{
    int64_t now = util_mono_ms();
    int moving = 0;
    for (int i = 0; i < hub->sender_count; i++) {
        int64_t since = atomic_load(&hub->senders[i].writing_since_ms);
        moving += since == 0 || now - since < HUB_SENDER_STUCK_MS;
    }
    return moving;
}

/* While work waits and no sender is idle, look every half stuck-interval:
 * when fewer than config->sender_threads senders are moving (the others are
 * stuck writing to clients that stopped reading), add one. */
static void *relief_main(void *arg)
{
    struct hub *hub = arg;
    int64_t refused_until = 0; /* the system refused a thread: wait until then */
    pthread_mutex_lock(&hub->pending_lock);
    while (!hub->stopping) {
        bool waiting = hub->pending_head && hub->senders_idle == 0;
        if (!waiting) {
            hub->relief_sleeping = true;
            pthread_cond_wait(&hub->relief_cond, &hub->pending_lock);
            hub->relief_sleeping = false;
            continue;
        }
        if (hub->sender_count < hub->sender_max && util_mono_ms() >= refused_until &&
            senders_moving_locked(hub) < hub->config->sender_threads) {
            bool added = add_sender_locked(hub);
            if (!added)
                refused_until = util_mono_ms() + HUB_THREAD_RETRY_MS;
            int senders = hub->sender_count;
            pthread_mutex_unlock(&hub->pending_lock);
            log_msg(added ? LOG_WARN : LOG_ERROR, "senders_stuck", "senders=%d added=%s", senders,
                    added ? "yes" : "no (thread refused)");
            pthread_mutex_lock(&hub->pending_lock);
            continue;
        }
        util_cond_wait_ms(&hub->relief_cond, &hub->pending_lock, HUB_SENDER_STUCK_MS / 2);
    }
    pthread_mutex_unlock(&hub->pending_lock);
    return NULL;
}

/* ---------------------------------------------------------------- hub */

static void room_free(void *value)
{
    struct hub_room *room = value;
    strmap_free(room->remote);
    free(room->members);
    free(room->name);
    free(room);
}

/* The production writer: one mg_write under CivetWeb's connection lock, which
 * its own PING and close replies take too. */
static int civetweb_write(struct mg_connection *mc, const void *data, size_t len)
{
    mg_lock_connection(mc);
    int written = mg_write(mc, data, len);
    mg_unlock_connection(mc);
    return written;
}

struct hub *hub_create(const struct config *config, struct metrics *metrics,
                       const struct hub_history *history, hub_write_fn write)
{
    struct hub *hub = xcalloc(1, sizeof(*hub));
    hub->write = write ? write : civetweb_write;
    hub->config = config;
    hub->metrics = metrics;
    hub->history = *history;
    pthread_mutex_init(&hub->lock, NULL);
    pthread_mutex_init(&hub->pending_lock, NULL);
    util_cond_init_monotonic(&hub->pending_cond); /* extra senders wait with a timeout */
    util_cond_init_monotonic(&hub->relief_cond);
    hub->rooms = strmap_create(room_free);
    hub->sender_max = config->sender_threads + HUB_EXTRA_SENDERS_MAX;
    hub->senders = xcalloc((size_t)hub->sender_max, sizeof(*hub->senders));
    pthread_mutex_lock(&hub->pending_lock);
    for (int i = 0; i < config->sender_threads; i++) {
        if (!add_sender_locked(hub)) {
            log_msg(LOG_ERROR, "thread_failed", "what=hub_sender");
            abort();
        }
    }
    pthread_mutex_unlock(&hub->pending_lock);
    if (pthread_create(&hub->relief, NULL, relief_main, hub) != 0) {
        log_msg(LOG_ERROR, "thread_failed", "what=hub_relief");
        abort();
    }
    return hub;
}

void hub_free(struct hub *hub)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->pending_lock);
    hub->stopping = true;
    pthread_cond_broadcast(&hub->pending_cond);
    pthread_cond_signal(&hub->relief_cond);
    pthread_mutex_unlock(&hub->pending_lock);
    pthread_join(hub->relief, NULL); /* no sender starts after this */
    for (int i = 0; i < hub->sender_count; i++)
        pthread_join(hub->senders[i].thread, NULL);
    free(hub->senders);
    strmap_free(hub->rooms);
    pthread_cond_destroy(&hub->relief_cond);
    pthread_cond_destroy(&hub->pending_cond);
    pthread_mutex_destroy(&hub->pending_lock);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

/* ---------------------------------------------------------------- connections */

struct hub_conn *hub_conn_create(struct hub *hub, struct mg_connection *mc)
{
    struct hub_conn *conn = xcalloc(1, sizeof(*conn));
    conn->hub = hub;
    conn->mc = mc;
    atomic_init(&conn->refs, 1);
    pthread_mutex_init(&conn->lock, NULL);
    pthread_cond_init(&conn->idle, NULL);
    pthread_mutex_lock(&hub->lock);
    conn->next_conn = hub->conns;
    if (hub->conns)
        hub->conns->prev_conn = conn;
    hub->conns = conn;
    pthread_mutex_unlock(&hub->lock);
    atomic_fetch_add(&hub->metrics->connections, 1);
    atomic_fetch_add(&hub->metrics->connections_total, 1);
    return conn;
}

void hub_conn_ref(struct hub_conn *conn)
{
    atomic_fetch_add_explicit(&conn->refs, 1, memory_order_relaxed);
}

void hub_conn_unref(struct hub_conn *conn)
{
    if (!conn || atomic_fetch_sub_explicit(&conn->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(conn->queue);
    free(conn->rooms);
    free(conn->user);
    pthread_cond_destroy(&conn->idle);
    pthread_mutex_destroy(&conn->lock);
    free(conn);
}

void hub_conn_set_user(struct hub_conn *conn, const char *user)
{
    pthread_mutex_lock(&conn->hub->lock);
    free(conn->user);
    conn->user = xstrdup(user);
    pthread_mutex_unlock(&conn->hub->lock);
}

bool hub_conn_is_closing(struct hub_conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    bool closing = conn->closing;
    pthread_mutex_unlock(&conn->lock);
    return closing;
}

int hub_send(struct hub_conn *conn, const char *json, size_t len)
{
    struct hub_frame *f = frame_text(json, len, 0);
    int rc = conn_enqueue(conn, f);
    frame_unref(f);
    return rc;
}

/* Wait until no thread writes to conn, then claim writing. conn->lock held. */
static void claim_writer(struct hub_conn *conn)
{
    while (conn->writing)
        pthread_cond_wait(&conn->idle, &conn->lock);
    conn->writing = true;
}

void hub_close_now(struct hub_conn *conn, int code, const char *reason)
{
    struct hub_frame **frames = NULL;
    struct util_buf scratch;
    util_buf_init(&scratch);
    pthread_mutex_lock(&conn->lock);
    claim_writer(conn);
    bool already_closed = conn->closed;
    bool stream_broken = conn->closing && !conn->close_code && conn->q_len == 0;
    size_t n = already_closed ? 0 : queue_take(conn, &frames, SIZE_MAX);
    conn->closing = true;
    conn->close_code = 0;
    pthread_mutex_unlock(&conn->lock);

    if (!already_closed && !stream_broken) {
        struct hub_frame *close = frame_close(code, reason);
        write_frames(conn, frames, n, close, &scratch);
        frame_unref(close);
    }
    for (size_t i = 0; i < n; i++)
        frame_unref(frames[i]);
    free(frames);
    util_buf_dispose(&scratch);

    pthread_mutex_lock(&conn->lock);
    conn->writing = false;
    pthread_cond_broadcast(&conn->idle);
    pthread_mutex_unlock(&conn->lock);
}

/* ---------------------------------------------------------------- rooms */

/* Number of user's connections in room. hub->lock held. */
static size_t room_user_connections(const struct hub_room *room, const char *user)
{
    size_t n = 0;
    for (size_t i = 0; i < room->member_count; i++) {
        const char *u = room->members[i]->conn->user;
        n += u && strcmp(u, user) == 0;
    }
    return n;
}

static struct membership *find_membership(struct hub_conn *conn, const char *room)
{
    for (size_t i = 0; i < conn->room_count; i++) {
        if (strcmp(conn->rooms[i]->room->name, room) == 0)
            return conn->rooms[i];
    }
    return NULL;
}

/* Give f to one member: held while it syncs, else queued. hub->lock held. */
static void member_push(struct membership *m, struct hub_frame *f)
{
    if (f->msg_id != 0 && f->msg_id <= m->skip_upto)
        return;
    if (!m->syncing) {
        conn_enqueue(m->conn, f);
        return;
    }
    if (m->held_count >= (size_t)m->conn->hub->config->outbound_max_frames) {
        pthread_mutex_lock(&m->conn->lock);
        if (!m->conn->closing)
            mark_overflow(m->conn);
        pthread_mutex_unlock(&m->conn->lock);
        return;
    }
    if (m->held_count == m->held_cap) {
        m->held_cap = m->held_cap ? m->held_cap * 2 : 8;
        m->held = xrealloc(m->held, m->held_cap * sizeof(*m->held));
    }
    frame_ref(f);
    m->held[m->held_count++] = f;
}

/* Send f to every member of room except those of user skip_user. hub->lock held.
 * Returns how many members it reached. */
static size_t room_broadcast(struct hub_room *room, struct hub_frame *f, const char *skip_user)
{
    size_t reached = 0;
    for (size_t i = 0; i < room->member_count; i++) {
        struct membership *m = room->members[i];
        if (skip_user && m->conn->user && strcmp(m->conn->user, skip_user) == 0)
            continue;
        member_push(m, f);
        reached++;
    }
    return reached;
}

/* True when user is online in room through another node. hub->lock held. */
static bool room_has_remote_user(const struct hub_room *room, const char *user)
{
    return room->remote && strmap_get(room->remote, user) != NULL;
}

static void broadcast_presence(struct hub_room *room, const char *user, const char *event)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "presence");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddStringToObject(obj, "user", user);
    cJSON_AddStringToObject(obj, "event", event);
    struct hub_frame *f = frame_from_json(obj);
    room_broadcast(room, f, user);
    frame_unref(f);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct name_list {
    char **names;
    size_t count;
};

static bool collect_name(void *ctx, const char *key, void *value)
{
    struct name_list *list = ctx;
    (void)value;
    list->names[list->count++] = (char *)key;
    return true;
}

/* Distinct user names of room, local and remote, sorted. hub->lock held. */
static char **room_names(const struct hub_room *room, size_t *count)
{
    size_t remote = room->remote ? strmap_count(room->remote) : 0;
    struct name_list list = {xcalloc(room->member_count + remote + 1, sizeof(char *)), 0};
    for (size_t i = 0; i < room->member_count; i++) {
        const char *u = room->members[i]->conn->user;
        if (u)
            list.names[list.count++] = (char *)u;
    }
    if (room->remote)
        strmap_each(room->remote, collect_name, &list);
    char **names = list.names;
    size_t n = list.count;
    qsort(names, n, sizeof(*names), compare_names);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (distinct == 0 || strcmp(names[distinct - 1], names[i]) != 0)
            names[distinct++] = names[i];
    }
    for (size_t i = 0; i < distinct; i++)
        names[i] = xstrdup(names[i]);
    *count = distinct;
    return names;
}

void hub_free_names(char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static struct hub_room *room_get_or_create(struct hub *hub, const char *name)
{
    struct hub_room *room = strmap_get(hub->rooms, name);
    if (!room) {
        room = xcalloc(1, sizeof(*room));
        room->name = xstrdup(name);
        strmap_put(hub->rooms, name, room);
    }
    return room;
}

/* Forget a room nobody is in, here or elsewhere. hub->lock held. */
static void room_release_if_empty(struct hub *hub, struct hub_room *room)
{
    if (room->member_count == 0 && (!room->remote || strmap_count(room->remote) == 0))
        strmap_remove(hub->rooms, room->name);
}

/* Add conn to room in the syncing state, announcing a new user. hub->lock held. */
static struct membership *membership_add(struct hub *hub, struct hub_conn *conn,
                                         struct hub_room *room)
{
    struct membership *m = xcalloc(1, sizeof(*m));
    m->room = room;
    m->conn = conn;
    m->syncing = true;
    if (conn->user && room_user_connections(room, conn->user) == 0) {
        if (!room_has_remote_user(room, conn->user))
            broadcast_presence(room, conn->user, "join");
        if (hub->presence_cb)
            hub->presence_cb(hub->presence_ctx, room->name, conn->user, true);
    }
    if (room->member_count == room->member_cap) {
        room->member_cap = room->member_cap ? room->member_cap * 2 : 4;
        room->members = xrealloc(room->members, room->member_cap * sizeof(*room->members));
    }
    room->members[room->member_count++] = m;
    if (conn->room_count == conn->room_cap) {
        conn->room_cap = conn->room_cap ? conn->room_cap * 2 : 4;
        conn->rooms = xrealloc(conn->rooms, conn->room_cap * sizeof(*conn->rooms));
    }
    conn->rooms[conn->room_count++] = m;
    return m;
}

static void held_clear(struct membership *m)
{
    for (size_t i = 0; i < m->held_count; i++)
        frame_unref(m->held[i]);
    free(m->held);
    m->held = NULL;
    m->held_count = m->held_cap = 0;
}

/* Remove m from both indexes, announce the user's departure, free m and an
 * empty room. hub->lock held. */
static void membership_remove(struct hub *hub, struct membership *m)
{
    struct hub_room *room = m->room;
    struct hub_conn *conn = m->conn;
    for (size_t i = 0; i < room->member_count; i++) {
        if (room->members[i] == m) {
            room->members[i] = room->members[--room->member_count];
            break;
        }
    }
    for (size_t i = 0; i < conn->room_count; i++) {
        if (conn->rooms[i] == m) {
            conn->rooms[i] = conn->rooms[--conn->room_count];
            break;
        }
    }
    held_clear(m);
    free(m);
    if (conn->user && room_user_connections(room, conn->user) == 0) {
        if (!room_has_remote_user(room, conn->user))
            broadcast_presence(room, conn->user, "leave");
        if (hub->presence_cb)
            hub->presence_cb(hub->presence_ctx, room->name, conn->user, false);
    }
    room_release_if_empty(hub, room);
}

static struct hub_frame *joined_frame(struct hub_room *room, bool recovered)
{
    size_t count;
    char **names = room_names(room, &count);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "joined");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddNumberToObject(obj, "last_id", (double)room->last_id);
    cJSON *members = cJSON_AddArrayToObject(obj, "members");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(members, cJSON_CreateString(names[i]));
    cJSON_AddBoolToObject(obj, "recovered", recovered);
    hub_free_names(names, count);
    return frame_from_json(obj);
}

/* Queue the replayed messages and then the held frames not already replayed. hub->lock held. */
static void finish_sync(struct membership *m, struct chat_msg **replay, size_t replay_count)
{
    struct hub_conn *conn = m->conn;
    for (size_t i = 0; i < replay_count; i++) {
        size_t len;
        char *json = proto_encode_message(replay[i], "message", &len);
        struct hub_frame *f = frame_text(json, len, replay[i]->id);
        free(json);
        conn_enqueue(conn, f);
        frame_unref(f);
        if (replay[i]->id > m->skip_upto)
            m->skip_upto = replay[i]->id;
    }
    for (size_t i = 0; i < m->held_count; i++) {
        struct hub_frame *f = m->held[i];
        if (f->msg_id == 0 || f->msg_id > m->skip_upto)
            conn_enqueue(conn, f);
    }
    held_clear(m);
    m->syncing = false;
}

int hub_join(struct hub *hub, struct hub_conn *conn, const char *room_name, const uint64_t *since)
{
    pthread_mutex_lock(&hub->lock);
    struct membership *m = find_membership(conn, room_name);
    if (!m) {
        if (conn->room_count >= (size_t)hub->config->max_rooms_per_conn) {
            pthread_mutex_unlock(&hub->lock);
            return -E2BIG;
        }
        m = membership_add(hub, conn, room_get_or_create(hub, room_name));
    } else {
        m->syncing = true;
    }
    uint64_t delivered = m->room->last_id;
    pthread_mutex_unlock(&hub->lock);

    /* Outside the lock: live frames for this room are held meanwhile. */
    uint64_t stored = 0;
    if (hub->history.last_id(hub->history.ctx, room_name, &stored) < 0)
        stored = 0;
    uint64_t upto = stored > delivered ? stored : delivered;
    struct chat_msg **replay = NULL;
    size_t replay_count = 0;
    bool recovered = true;
    if (since && *since < upto) {
        int rc = hub->history.replay(hub->history.ctx, room_name, *since, upto,
                                     hub->config->replay_max, &replay, &replay_count, &recovered);
        if (rc < 0) {
            replay_count = 0;
            recovered = false;
        }
    }

    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = m->room;
    if (upto > room->last_id)
        room->last_id = upto;
    room->last_id_known = true;
    /* Without since, joined.last_id tells the client that history holds
     * everything up to it: a message committed before the join but delivered
     * after it must not arrive a second time as a live frame. */
    m->skip_upto = since && *since < room->last_id ? *since : room->last_id;
    struct hub_frame *joined = joined_frame(room, recovered);
    conn_enqueue(conn, joined);
    frame_unref(joined);
    finish_sync(m, replay, replay_count);
    pthread_mutex_unlock(&hub->lock);

    for (size_t i = 0; i < replay_count; i++)
        chat_msg_free(replay[i]);
    free(replay);
    return 0;
}

int hub_leave(struct hub *hub, struct hub_conn *conn, const char *room)
{
    pthread_mutex_lock(&hub->lock);
    struct membership *m = find_membership(conn, room);
    if (m)
        membership_remove(hub, m);
    pthread_mutex_unlock(&hub->lock);
    return m ? 0 : -ENOENT;
}

bool hub_is_member(struct hub *hub, struct hub_conn *conn, const char *room)
{
    pthread_mutex_lock(&hub->lock);
    bool member = find_membership(conn, room) != NULL;
    pthread_mutex_unlock(&hub->lock);
    return member;
}

void hub_conn_closed(struct hub_conn *conn)
{
    struct hub *hub = conn->hub;
    pthread_mutex_lock(&conn->lock);
    conn->closing = true;
    conn->closed = true;
    while (conn->writing)
        pthread_cond_wait(&conn->idle, &conn->lock);
    queue_clear(conn);
    conn->close_code = 0;
    pthread_cond_broadcast(&conn->idle); /* hub_close_all may be waiting */
    pthread_mutex_unlock(&conn->lock);

    pthread_mutex_lock(&hub->lock);
    while (conn->room_count > 0)
        membership_remove(hub, conn->rooms[conn->room_count - 1]);
    if (conn->prev_conn)
        conn->prev_conn->next_conn = conn->next_conn;
    else
        hub->conns = conn->next_conn;
    if (conn->next_conn)
        conn->next_conn->prev_conn = conn->prev_conn;
    pthread_mutex_unlock(&hub->lock);
    atomic_fetch_sub(&hub->metrics->connections, 1);
    hub_conn_unref(conn);
}

/* ---------------------------------------------------------------- fan-out */

void hub_deliver(struct hub *hub, const struct chat_msg *msg)
{
    size_t len;
    char *json = proto_encode_message(msg, "message", &len);
    struct hub_frame *f = frame_text(json, len, msg->id);
    free(json);
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, msg->room);
    size_t reached = 0;
    if (room) {
        if (msg->id > room->last_id)
            room->last_id = msg->id;
        reached = room_broadcast(room, f, NULL);
    }
    pthread_mutex_unlock(&hub->lock);
    frame_unref(f);
    atomic_fetch_add(&hub->metrics->messages_delivered, reached);
}

/* Tell the members of room but user's own connections that user is typing. hub->lock held. */
static void broadcast_typing(struct hub_room *room, const char *user)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "typing");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddStringToObject(obj, "user", user);
    struct hub_frame *f = frame_from_json(obj);
    room_broadcast(room, f, user);
    frame_unref(f);
}

void hub_typing(struct hub *hub, struct hub_conn *conn, const char *room_name)
{
    pthread_mutex_lock(&hub->lock);
    struct membership *m = find_membership(conn, room_name);
    if (m && conn->user) {
        broadcast_typing(m->room, conn->user);
        if (hub->typing_cb)
            hub->typing_cb(hub->presence_ctx, room_name, conn->user);
    }
    pthread_mutex_unlock(&hub->lock);
}

void hub_remote_typing(struct hub *hub, const char *room_name, const char *user)
{
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, room_name);
    if (room)
        broadcast_typing(room, user);
    pthread_mutex_unlock(&hub->lock);
}

int hub_room_members(struct hub *hub, const char *room_name, char ***names, size_t *count)
{
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, room_name);
    if (room) {
        *names = room_names(room, count);
    } else {
        *names = xcalloc(1, sizeof(char *));
        *count = 0;
    }
    pthread_mutex_unlock(&hub->lock);
    return 0;
}

struct room_list {
    char **names;
    size_t *online;
    size_t count;
};

static bool collect_room(void *ctx, const char *key, void *value)
{
    struct room_list *list = ctx;
    size_t online;
    char **names = room_names(value, &online);
    hub_free_names(names, online);
    list->names[list->count] = xstrdup(key);
    list->online[list->count] = online;
    list->count++;
    return true;
}

int hub_list_rooms(struct hub *hub, char ***names, size_t **online, size_t *count)
{
    pthread_mutex_lock(&hub->lock);
    size_t n = strmap_count(hub->rooms);
    struct room_list list = {xcalloc(n + 1, sizeof(char *)), xcalloc(n + 1, sizeof(size_t)), 0};
    strmap_each(hub->rooms, collect_room, &list);
    pthread_mutex_unlock(&hub->lock);
    *names = list.names;
    *online = list.online;
    *count = list.count;
    return 0;
}

long hub_room_count(struct hub *hub)
{
    pthread_mutex_lock(&hub->lock);
    long n = (long)strmap_count(hub->rooms);
    pthread_mutex_unlock(&hub->lock);
    return n;
}

/* ---------------------------------------------------------------- shutdown */

/* True when conn still has something to write. conn->lock held. */
static bool conn_busy(const struct hub_conn *conn)
{
    return !conn->closed && (conn->writing || conn->q_len > 0 || conn->close_code);
}

/* Queue the close frame on every connection; returns them, each with a
 * reference the caller drops. */
static struct hub_conn **close_every_conn(struct hub *hub, int code, const char *reason,
                                          size_t *count)
{
    pthread_mutex_lock(&hub->lock);
    size_t n = 0, cap = 16;
    struct hub_conn **conns = xmalloc(cap * sizeof(*conns));
    for (struct hub_conn *conn = hub->conns; conn; conn = conn->next_conn) {
        pthread_mutex_lock(&conn->lock);
        if (!conn->closing) {
            conn->closing = true;
            conn->close_code = code;
            snprintf(conn->close_reason, sizeof(conn->close_reason), "%s", reason);
            schedule(conn);
        }
        pthread_mutex_unlock(&conn->lock);
        if (n == cap)
            conns = xrealloc(conns, (cap *= 2) * sizeof(*conns));
        hub_conn_ref(conn);
        conns[n++] = conn;
    }
    pthread_mutex_unlock(&hub->lock);
    *count = n;
    return conns;
}

void hub_close_all(struct hub *hub, int code, const char *reason, int timeout_ms)
{
    size_t count;
    struct hub_conn **conns = close_every_conn(hub, code, reason, &count);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    /* Senders signal idle after every write; wait for each close frame to go. */
    for (size_t i = 0; i < count; i++) {
        struct hub_conn *conn = conns[i];
        pthread_mutex_lock(&conn->lock);
        int rc = 0;
        while (conn_busy(conn) && rc == 0)
            rc = pthread_cond_timedwait(&conn->idle, &conn->lock, &deadline);
        pthread_mutex_unlock(&conn->lock);
        hub_conn_unref(conn);
    }
    free(conns);
}

/* ---------------------------------------------------------------- cluster presence */

void hub_set_cluster_listener(struct hub *hub, hub_presence_cb presence, hub_typing_cb typing,
                              void *ctx)
{
    pthread_mutex_lock(&hub->lock);
    hub->presence_cb = presence;
    hub->typing_cb = typing;
    hub->presence_ctx = ctx;
    pthread_mutex_unlock(&hub->lock);
}

void hub_remote_presence(struct hub *hub, const char *room_name, const char *user, int delta)
{
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room =
        delta > 0 ? room_get_or_create(hub, room_name) : strmap_get(hub->rooms, room_name);
    if (!room)
        goto out_unlock;
    if (!room->remote)
        room->remote = strmap_create(NULL);
    intptr_t before = (intptr_t)strmap_get(room->remote, user);
    intptr_t after = before + delta;
    if (after < 0)
        after = 0;
    if (after > 0)
        strmap_put(room->remote, user, (void *)after);
    else
        strmap_remove(room->remote, user);
    bool local = room_user_connections(room, user) > 0;
    if (!local && before == 0 && after > 0)
        broadcast_presence(room, user, "join");
    else if (!local && before > 0 && after == 0)
        broadcast_presence(room, user, "leave");
    room_release_if_empty(hub, room);
out_unlock:
    pthread_mutex_unlock(&hub->lock);
}

struct presence_snapshot {
    struct hub_presence *entries;
    size_t count;
    size_t cap;
};

static bool snapshot_room(void *ctx, const char *key, void *value)
{
    struct presence_snapshot *snap = ctx;
    struct hub_room *room = value;
    size_t count;
    char **names = xcalloc(room->member_count + 1, sizeof(char *));
    count = 0;
    for (size_t i = 0; i < room->member_count; i++) {
        const char *u = room->members[i]->conn->user;
        bool seen = false;
        for (size_t j = 0; u && j < count && !seen; j++)
            seen = strcmp(names[j], u) == 0;
        if (u && !seen)
            names[count++] = (char *)u;
    }
    for (size_t i = 0; i < count; i++) {
        if (snap->count == snap->cap) {
            snap->cap = snap->cap ? snap->cap * 2 : 16;
            snap->entries = xrealloc(snap->entries, snap->cap * sizeof(*snap->entries));
        }
        snap->entries[snap->count].room = xstrdup(key);
        snap->entries[snap->count].user = xstrdup(names[i]);
        snap->count++;
    }
    free(names);
    return true;
}

int hub_local_presence(struct hub *hub, struct hub_presence **out, size_t *count)
{
    struct presence_snapshot snap = {NULL, 0, 0};
    pthread_mutex_lock(&hub->lock);
    strmap_each(hub->rooms, snapshot_room, &snap);
    pthread_mutex_unlock(&hub->lock);
    *out = snap.entries;
    *count = snap.count;
    return 0;
}

void hub_free_presence(struct hub_presence *entries, size_t count)
{
    for (size_t i = 0; entries && i < count; i++) {
        free(entries[i].room);
        free(entries[i].user);
    }
    free(entries);
}
