/* broker_valkey: the cluster backend. Every node talks to one Valkey:
 *
 * - Publish: one Lua script per event (a message or a change of one) checks
 *   the idempotency ref, takes the room's next id, appends the event to the
 *   room's replay window and PUBLISHes it, atomically. A publisher thread
 *   pipelines the scripts of every queued event in one round trip. Each is
 *   acked once Valkey answered and this node's log has stored it (read your
 *   own writes), or after LOCAL_WAIT_MS without that (the subscriber is down).
 * - A subscriber thread receives every message (this node's too), stores it in
 *   the node's log and only then hands it to the hub, in id order per room. An
 *   id jump, a reconnect or start-up makes it fetch the missing ids from the
 *   replay window first (gap repair, catch-up), so every node's log converges.
 *   A message whose commit failed is stored again later and reaches the hub
 *   late, out of order (retry_unstored).
 * - Presence: nodes publish join/leave deltas and, every 10 s, a snapshot of
 *   their users; a node not heard from for 30 s is forgotten.
 *
 * Keys carry the room in a hash tag so the script runs unchanged on Valkey Cluster:
 *   turbochat:{ROOM}:seq  last id given out (INCR); never expires
 *   turbochat:{ROOM}:log  the replay window, a stream with entry ids "<id>-0" and
 *                         fields u (user), t (text), ts, r (ref, optional), x (what
 *                         else the event carries, a JSON object: proto_extras_object;
 *                         absent for a plain message); capped
 *                         with MAXLEN ~ replay_max, and PEXPIREd to replay_ttl_s on
 *                         every publish: the "24 h" is counted from the room's last
 *                         message, after which an idle room's whole window is gone
 *   turbochat:{ROOM}:ref:<len(user)>:<user>:<ref>  id the ref produced, PX ref_ttl_s
 * Channels: turbochat:messages (JSON message objects), turbochat:presence.
 *
 * Threads and state: the publisher thread owns `pub` and its connection, the
 * subscriber thread owns `sub` (its two connections, last_seen, remote nodes);
 * `query` is a third connection for replay on worker threads, under its own
 * mutex; everything else that threads share is under `lock`. No broker lock is
 * ever held while calling the store, the hub or a publish callback. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "broker_internal.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "store.h"
#include "strmap.h"
#include "util.h"
#include "valkey.h"

#define MESSAGES_CHANNEL "turbochat:messages"
#define PRESENCE_CHANNEL "turbochat:presence"
#define SEQ_PATTERN "turbochat:{*}:seq"

#define BATCH_MAX 256         /* publishes pipelined in one round trip */
#define QUEUE_MAX 65536       /* queued jobs before publish refuses */
#define CHUNK 1000            /* XRANGE, SCAN and pipelined GETs per round trip */
#define BACKOFF_MIN_MS 100    /* reconnect delay doubles from here ... */
#define BACKOFF_MAX_MS 5000   /* ... up to here, with jitter */
#define KEEPALIVE_MS 30000    /* PING the subscription after this much silence */
#define LAZY_IDLE_MS 60000    /* reopen helper connections idle this long (Aiven: 300 s) */
#define HEARTBEAT_MS 10000    /* presence snapshot interval */
#define NODE_TIMEOUT_MS 25000 /* forget a silent node: 2.5 heartbeats, under 30 s */
#define SNAPSHOT_PART_MAX 256 /* (room, user) pairs per snapshot message */
#define IN_DOUBT_MS 5000      /* how long a publish whose reply was lost waits for its fate */
#define LOCAL_WAIT_MS 5000    /* how long an accepted publish waits for this node's log */
#define TICK_MS 250           /* backoff sleeps in steps this long */
#define STORE_RETRY_MS 2000   /* between attempts to store what the store refused */
#define UNSTORED_MAX_BYTES (64u << 20) /* memory for messages kept for those attempts */
#define REASON_MAX 256

/* ---------------------------------------------------------------- state */

enum job_kind {
    JOB_MESSAGE, /* a chat message through the publish script */
    JOB_NOTICE,  /* a presence notice, PUBLISHed as is */
};

/* One unit of work for the publisher thread. */
struct job {
    struct job *next;
    enum job_kind kind;
    struct chat_msg *msg;   /* MESSAGE: owned; id and ts set before the callback */
    broker_publish_cb cb;   /* MESSAGE: runs exactly once */
    void *ctx;              /* MESSAGE */
    uint64_t started_ns;    /* MESSAGE: for publish_seconds */
    int64_t doubt_until_ms; /* MESSAGE in doubt: answered unavailable after this */
    int64_t ack_by_ms;      /* MESSAGE accepted: acked by then, stored here or not */
    bool fresh;             /* MESSAGE accepted: new, not a repeated ref */
    char *payload;          /* NOTICE: owned JSON */
};

/* Exponential reconnect delay with jitter. */
struct backoff {
    int delay_ms;  /* next base delay; 0: BACKOFF_MIN_MS */
    unsigned seed; /* rand_r state */
};

/* A connection opened on first use and reopened after a failure or when idle. */
struct lazy_conn {
    struct valkey_conn *conn; /* NULL until needed */
    int64_t used_ms;          /* monotonic time of the last use */
};

/* Publisher thread only. */
struct publisher {
    struct valkey_conn *conn;
    char sha[48];              /* of the publish script on this connection */
    int64_t next_heartbeat_ms; /* monotonic */
    uint64_t snapshot_seq;     /* numbers our snapshots */
    struct backoff backoff;
    bool connected_once; /* later connects count as reconnects */
    bool outage_logged;  /* the current outage was logged once */
    /* The last connection as the server saw it (CLIENT INFO), to kill it
     * after a reconnect: ids restart at 1 when Valkey restarts, so the id
     * alone could name a stranger; id and address together do not. */
    char client_id[24];   /* "" unknown */
    char client_addr[64]; /* "ip:port" */
};

/* What this node knows about another node's users. */
struct remote_node {
    struct strmap *entries; /* "room\x1fuser" -> non-NULL: online there */
    struct strmap *pending; /* snapshot being assembled, NULL when none */
    uint64_t pending_snap;  /* its snapshot number */
    uint64_t next_part;     /* the part expected next */
    int64_t heard_ms;       /* monotonic time of its last message */
};

/* A growable array of messages. */
struct msg_list {
    struct chat_msg **items;
    size_t count;
    size_t cap;
};

/* Subscriber thread only. */
struct subscriber {
    struct valkey_conn *conn; /* SUBSCRIBEd */
    struct lazy_conn repair;  /* XRANGE, SCAN and GET while subscribed */
    int confirmed;            /* SUBSCRIBE confirmations on this connection */
    int64_t last_rx_ms;       /* monotonic time anything arrived */
    int64_t ping_sent_ms;     /* keepalive PING outstanding since; 0: none */
    struct strmap *last_seen; /* room -> uint64_t *: highest id handed to the store */
    struct strmap *nodes;     /* node id -> struct remote_node */
    int64_t expired_ms;       /* monotonic time of the last expiry check */
    int64_t store_retry_ms;   /* when unstored messages are tried again; 0: not scheduled */
    struct backoff backoff;
    bool connected_once; /* later subscriptions count as reconnects */
    bool outage_logged;
};

struct broker_valkey {
    struct broker base;
    struct broker_deps deps;
    struct valkey_options opts; /* strings borrowed from deps.config */
    const char *node_id;        /* deps.config->node_id */

    pthread_mutex_t lock;       /* guards every field down to the threads */
    pthread_cond_t work;        /* publisher: jobs queued, snapshot due, stopping */
    pthread_cond_t wake;        /* sleeping threads: stopping */
    pthread_cond_t settled;     /* store_in_flight dropped to 0 */
    UTIL_FIFO(struct job) jobs; /* publisher queue; non-empty only while pub_up */
    size_t queued;
    struct job *doubt;        /* sent, reply lost with the connection: outcome unknown */
    struct strmap *awaiting;  /* room -> struct job_list: accepted, waiting for this
                               * node's log to store them, in the order accepted */
    int64_t overdue_check_ms; /* monotonic time ack_overdue last looked */
    bool pub_up;              /* the publisher connection works */
    bool sub_up;              /* subscribed and caught up */
    char pub_why[REASON_MAX]; /* why the publisher is down */
    char sub_why[REASON_MAX]; /* why the subscriber is not ready */
    bool snapshot_due;        /* another node asked for our presence */
    bool draining;            /* publishes refused */
    bool stopping;            /* threads end */
    size_t store_in_flight;   /* store_append callbacks still to run */
    struct strmap *delivered; /* room -> uint64_t *: highest id delivered; set at
                               * the room's first accept, before its first commit */
    struct msg_list unstored; /* received, but the store failed to commit them */
    size_t unstored_bytes;    /* their size, at most UNSTORED_MAX_BYTES */
    size_t unstored_dropped;  /* failed commits not kept: unstored was full */

    pthread_t publisher_thread;
    pthread_t subscriber_thread;
    struct publisher pub;
    struct subscriber sub;

    pthread_mutex_t query_lock; /* guards query */
    struct lazy_conn query;     /* replay reads from worker threads */
};

/* Publishes in doubt. When the publisher connection breaks after a script was
 * sent, Valkey may have run it (the reply was lost, e.g. to the RST of a
 * shutdown) or not. "unavailable" must mean "not stored", so such a job waits
 * for evidence: the subscriber receiving the message (matched on room, user,
 * ts and text; ts is ours), or, after the reconnect, a lookup of its ref or in
 * the window once the old connection is killed (so it can run nothing more).
 * Without an answer within IN_DOUBT_MS it is answered unavailable: the one
 * residual risk, for a Valkey that ran the script, lost both the reply and the
 * push, and stayed away longer than that. */

/* ---------------------------------------------------------------- scripts */

/* KEYS: seq, log, [ref]. ARGV: room, user, text, ts, ref, replay_max,
 * replay_ttl_ms, ref_ttl_ms, channel, extras (JSON object, or ""), claims
 * (one per line, or ""). Returns {2, 0} when a claim was taken before:
 * turbochat:{ROOM}:claim:<claim> holds the id of the event that took it. Returns {1, id} for a new
 * message, or {0, id[, fields]} when the ref was seen (fields: the original's stream fields while
 * it is still in the window). */
static const char PUBLISH_SCRIPT[] =
    "local seq_key, log_key, ref_key = KEYS[1], KEYS[2], KEYS[3]\n"
    "if ref_key then\n"
    "  local orig = redis.call('GET', ref_key)\n"
    "  if orig then\n"
    "    local e = redis.call('XRANGE', log_key, orig .. '-0', orig .. '-0')\n"
    "    if e[1] then return {0, tonumber(orig), e[1][2]} end\n"
    "    return {0, tonumber(orig)}\n"
    "  end\n"
    "end\n"
    "local claims = {}\n"
    "for c in string.gmatch(ARGV[11], '[^\\n]+') do\n"
    "  local k = 'turbochat:{' .. ARGV[1] .. '}:claim:' .. c\n"
    "  if redis.call('EXISTS', k) == 1 then return {2, 0} end\n"
    "  table.insert(claims, k)\n"
    "end\n"
    "local id = redis.call('INCR', seq_key)\n"
    "local sid = string.format('%d', id)\n"
    "for _, k in ipairs(claims) do redis.call('SET', k, sid) end\n"
    "local fields = {'u', ARGV[2], 't', ARGV[3], 'ts', ARGV[4]}\n"
    "local payload = '{\"room\":' .. cjson.encode(ARGV[1]) .. ',\"id\":' .. sid ..\n"
    "  ',\"user\":' .. cjson.encode(ARGV[2]) .. ',\"text\":' .. cjson.encode(ARGV[3]) ..\n"
    "  ',\"ts\":' .. ARGV[4]\n"
    "if ref_key then\n"
    "  table.insert(fields, 'r')\n"
    "  table.insert(fields, ARGV[5])\n"
    "  payload = payload .. ',\"ref\":' .. cjson.encode(ARGV[5])\n"
    "end\n"
    "if ARGV[10] ~= '' then\n"
    "  table.insert(fields, 'x')\n"
    "  table.insert(fields, ARGV[10])\n"
    "  payload = payload .. ',\"x\":' .. ARGV[10]\n"
    "end\n"
    "redis.call('XADD', log_key, 'MAXLEN', '~', ARGV[6], sid .. '-0', unpack(fields))\n"
    "redis.call('PEXPIRE', log_key, ARGV[7])\n"
    "if ref_key then redis.call('SET', ref_key, sid, 'PX', ARGV[8]) end\n"
    "redis.call('PUBLISH', ARGV[9], payload .. '}')\n"
    "return {1, id}\n";

/* KEYS: seq. ARGV: an id this node has stored. Raises seq to it, so that a
 * Valkey that lost its data (restart without persistence) never hands out an
 * id a node already has. */
static const char SEED_SCRIPT[] =
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end\n"
    "return 0\n";

/* ---------------------------------------------------------------- helpers */

/* "turbochat:{room}:<suffix>"; the caller frees it. */
static char *room_key(const char *room, const char *suffix)
{
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "turbochat:{%s}:%s", room, suffix);
    return util_buf_take(&buf, NULL);
}

/* The key of (room, user, ref); the user's length keeps user and ref apart. */
static char *ref_key(const struct chat_msg *msg)
{
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "turbochat:{%s}:ref:%zu:%s:%s", msg->room, strlen(msg->user), msg->user,
                     msg->ref);
    return util_buf_take(&buf, NULL);
}

static bool reply_is(const struct valkey_reply *r, int type)
{
    return r && r->type == type;
}

static bool reply_str_equals(const struct valkey_reply *r, const char *s)
{
    return reply_is(r, VALKEY_REPLY_STRING) && strcmp(r->str, s) == 0;
}

static void msg_list_push(struct msg_list *list, struct chat_msg *msg)
{
    UTIL_GROW(list->items, list->count, list->cap);
    list->items[list->count++] = msg;
}

static void msg_list_dispose(struct msg_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        chat_msg_free(list->items[i]);
    free(list->items);
    *list = (struct msg_list){0};
}

/* Copies of the keys of a map (room names), to visit outside its lock. */
struct room_names {
    char **names;
    size_t count;
};

static bool collect_room_name(void *ctx, const char *key, void *value)
{
    (void)value;
    struct room_names *rn = ctx;
    rn->names[rn->count++] = xstrdup(key);
    return true;
}

static struct room_names room_names_of(const struct strmap *map)
{
    struct room_names rn = {xcalloc(strmap_count(map) + 1, sizeof(char *)), 0};
    strmap_each(map, collect_room_name, &rn);
    return rn;
}

static void room_names_dispose(struct room_names *rn)
{
    for (size_t i = 0; i < rn->count; i++)
        free(rn->names[i]);
    free(rn->names);
}

/* Wait on cond (CLOCK_MONOTONIC) until deadline_ms at most. lock held. */
static void wait_until(struct broker_valkey *b, pthread_cond_t *cond, int64_t deadline_ms)
{
    util_cond_wait_ms(cond, &b->lock, deadline_ms - util_mono_ms());
}

static bool is_stopping(struct broker_valkey *b)
{
    pthread_mutex_lock(&b->lock);
    bool stopping = b->stopping;
    pthread_mutex_unlock(&b->lock);
    return stopping;
}

/* Sleep ms unless the broker stops first; true when it is stopping. */
static bool sleep_unless_stopping(struct broker_valkey *b, int ms)
{
    int64_t deadline = util_mono_ms() + ms;
    pthread_mutex_lock(&b->lock);
    while (!b->stopping && util_mono_ms() < deadline)
        wait_until(b, &b->wake, deadline);
    bool stopping = b->stopping;
    pthread_mutex_unlock(&b->lock);
    return stopping;
}

/* The next reconnect delay: the base doubles each time, the result is
 * uniformly within [base/2, base] so that nodes do not retry in step. */
static int backoff_next(struct backoff *bo)
{
    int base = bo->delay_ms ? bo->delay_ms : BACKOFF_MIN_MS;
    bo->delay_ms = base * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : base * 2;
    return base / 2 + (int)(rand_r(&bo->seed) % (unsigned)(base / 2 + 1));
}

/* Keep metrics->broker_connected in step with readiness. lock held. */
static void update_connected(struct broker_valkey *b)
{
    atomic_store(&b->deps.metrics->broker_connected, b->pub_up && b->sub_up);
}

/* A new connection with the configured options; NULL with reason in err. */
static struct valkey_conn *open_conn(struct broker_valkey *b, const char *role, char *err,
                                     size_t errlen)
{
    struct valkey_conn *conn = valkey_connect(&b->opts, err, errlen);
    if (conn)
        log_msg(LOG_DEBUG, "broker_conn_open", "role=%s", role);
    return conn;
}

/* The lazy connection, (re)opened when missing, broken or idle too long
 * (a server may have closed it meanwhile); NULL when Valkey is unreachable. */
static struct valkey_conn *lazy_conn_get(struct broker_valkey *b, struct lazy_conn *lc,
                                         const char *role)
{
    int64_t now = util_mono_ms();
    if (lc->conn && (valkey_is_broken(lc->conn) || now - lc->used_ms > LAZY_IDLE_MS)) {
        valkey_close(lc->conn);
        lc->conn = NULL;
    }
    if (!lc->conn) {
        char err[REASON_MAX];
        lc->conn = open_conn(b, role, err, sizeof(err));
        if (!lc->conn)
            log_msg(LOG_WARN, "broker_connect_failed", "role=%s reason=%s", role, log_value(err));
    }
    lc->used_ms = now;
    return lc->conn;
}

static void lazy_conn_close(struct lazy_conn *lc)
{
    valkey_close(lc->conn);
    lc->conn = NULL;
}

/* ---------------------------------------------------------------- reading the window */

/* Append to out the window's messages of room with from <= id <= to, at most
 * count, ascending. 0, or a negative errno when the connection failed. */
static int xrange(struct valkey_conn *conn, const char *room, uint64_t from, uint64_t to,
                  size_t count, struct msg_list *out)
{
    char *key = room_key(room, "log");
    char start[32], end[32], n[24];
    snprintf(start, sizeof(start), "%" PRIu64 "-0", from);
    snprintf(end, sizeof(end), "%" PRIu64 "-0", to);
    snprintf(n, sizeof(n), "%zu", count);
    const char *argv[] = {"XRANGE", key, start, end, "COUNT", n};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(conn, &r, 6, argv, NULL);
    free(key);
    if (rc < 0)
        return rc;
    if (!reply_is(r, VALKEY_REPLY_ARRAY)) {
        log_msg(LOG_WARN, "broker_xrange_failed", "room=%s reply=%s", log_value(room),
                log_value(reply_is(r, VALKEY_REPLY_ERROR) ? r->str : "unexpected"));
        valkey_reply_free(r);
        return -EPROTO;
    }
    for (size_t i = 0; i < r->elements; i++) {
        struct chat_msg *msg = broker__decode_entry(room, r->element[i]);
        if (msg)
            msg_list_push(out, msg);
        else
            log_msg(LOG_WARN, "broker_bad_entry", "room=%s", room);
    }
    valkey_reply_free(r);
    return 0;
}

/* ---------------------------------------------------------------- publisher queue */

static void job_free(struct job *job)
{
    chat_msg_free(job->msg);
    free(job->payload);
    free(job);
}

/* Fail every job of list: -TC_EUNAVAILABLE to messages, notices dropped. */
static void fail_jobs(struct job *list)
{
    while (list) {
        struct job *next = list->next;
        if (list->kind == JOB_MESSAGE)
            list->cb(list->ctx, -TC_EUNAVAILABLE, NULL);
        job_free(list);
        list = next;
    }
}

/* Append job to the queue unless the publisher cannot take it. lock held. */
static bool enqueue_locked(struct broker_valkey *b, struct job *job)
{
    if (!b->pub_up || b->queued >= QUEUE_MAX)
        return false;
    UTIL_FIFO_PUSH(&b->jobs, job, next);
    b->queued++;
    pthread_cond_signal(&b->work);
    return true;
}

/* Queue a presence notice (payload consumed); dropped while Valkey is
 * unreachable: the snapshot after the reconnect carries the state. */
static void enqueue_notice(struct broker_valkey *b, char *payload)
{
    struct job *job = xcalloc(1, sizeof(*job));
    job->kind = JOB_NOTICE;
    job->payload = payload;
    pthread_mutex_lock(&b->lock);
    bool queued = enqueue_locked(b, job);
    pthread_mutex_unlock(&b->lock);
    if (!queued)
        job_free(job);
}

/* Take the whole queue. lock held. */
static struct job *take_all_locked(struct broker_valkey *b)
{
    struct job *all;
    size_t n;
    UTIL_FIFO_TAKE(&b->jobs, SIZE_MAX, next, all, n);
    b->queued = 0;
    return all;
}

/* Take up to BATCH_MAX jobs. lock held. */
static struct job *take_batch_locked(struct broker_valkey *b)
{
    struct job *batch;
    size_t n;
    UTIL_FIFO_TAKE(&b->jobs, BATCH_MAX, next, batch, n);
    b->queued -= n;
    return batch;
}

/* ---------------------------------------------------------------- presence notices */

static char *notice_json(cJSON *obj)
{
    char *json = proto_encode_json(obj, NULL);
    cJSON_Delete(obj);
    return json;
}

static cJSON *notice_new(struct broker_valkey *b, const char *op)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "node", b->node_id);
    cJSON_AddStringToObject(obj, "op", op);
    return obj;
}

/* Hub thread, hub lock held: only build and queue the notice. */
static void valkey_presence_changed(struct broker *base, const char *room, const char *user,
                                    bool online)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    cJSON *obj = notice_new(b, online ? "join" : "leave");
    cJSON_AddStringToObject(obj, "room", room);
    cJSON_AddStringToObject(obj, "user", user);
    enqueue_notice(b, notice_json(obj));
}

/* Hub lock held: only build and queue the notice. Dropped while Valkey is away. */
static void valkey_typing(struct broker *base, const char *room, const char *user)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    cJSON *obj = notice_new(b, "typing");
    cJSON_AddStringToObject(obj, "room", room);
    cJSON_AddStringToObject(obj, "user", user);
    enqueue_notice(b, notice_json(obj));
}

/* Collects this node's presence into snapshot parts of SNAPSHOT_PART_MAX pairs. */
struct snapshot_builder {
    struct broker_valkey *b;
    uint64_t snap;  /* snapshot number */
    uint64_t part;  /* number of the part being filled */
    cJSON *obj;     /* the part being filled */
    cJSON *entries; /* its "entries" array */
    size_t count;   /* pairs in it */
};

static void snapshot_start_part(struct snapshot_builder *sb)
{
    sb->obj = notice_new(sb->b, "snapshot");
    cJSON_AddNumberToObject(sb->obj, "snap", (double)sb->snap);
    cJSON_AddNumberToObject(sb->obj, "part", (double)sb->part);
    sb->entries = cJSON_AddArrayToObject(sb->obj, "entries");
    sb->count = 0;
}

static void snapshot_send_part(struct snapshot_builder *sb, bool final)
{
    cJSON_AddBoolToObject(sb->obj, "final", final);
    enqueue_notice(sb->b, notice_json(sb->obj));
    sb->obj = NULL;
    sb->part++;
}

static void snapshot_visit(void *ctx, const char *room, const char *user)
{
    struct snapshot_builder *sb = ctx;
    if (sb->count == SNAPSHOT_PART_MAX) {
        snapshot_send_part(sb, false);
        snapshot_start_part(sb);
    }
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(room));
    cJSON_AddItemToArray(pair, cJSON_CreateString(user));
    cJSON_AddItemToArray(sb->entries, pair);
    sb->count++;
}

/* Queue this node's whole presence, in parts, as one snapshot (empty without
 * a presence source: it still keeps the connection from idling). Publisher thread. */
static void queue_snapshot(struct broker_valkey *b)
{
    struct snapshot_builder sb = {.b = b, .snap = b->pub.snapshot_seq++};
    snapshot_start_part(&sb);
    if (b->deps.listener->local_presence)
        b->deps.listener->local_presence(b->deps.listener_ctx, snapshot_visit, &sb);
    snapshot_send_part(&sb, true);
}

/* Ask every other node for its snapshot (after we subscribed). */
static void queue_sync_request(struct broker_valkey *b)
{
    if (b->deps.listener->remote_presence)
        enqueue_notice(b, notice_json(notice_new(b, "sync")));
}

/* ---------------------------------------------------------------- publisher thread */

/* The original event of a repeated ref, which replaces job's: the window's
 * fields when given, else this node's log, else the request itself with the
 * original id (set by the caller). */
static void load_original(struct broker_valkey *b, struct job *job,
                          const struct valkey_reply *fields)
{
    struct chat_msg *request = job->msg, *original = NULL;
    if (reply_is(fields, VALKEY_REPLY_ARRAY)) {
        original = chat_msg_create(request->room, "", "", request->ref);
        if (!broker__apply_fields(original, fields)) {
            chat_msg_free(original);
            original = NULL;
        }
    } else if (store_find_ref(b->deps.store, request->room, request->user, request->ref, 0,
                              &original) < 0) {
        original = NULL;
    }
    if (!original)
        return;
    original->id = request->id;
    chat_msg_free(request);
    job->msg = original;
}

/* Format the publish script call for job into the pipeline. */
static void append_publish(struct broker_valkey *b, struct job *job, bool use_eval)
{
    const struct config *cfg = b->deps.config;
    struct chat_msg *msg = job->msg;
    char *seq = room_key(msg->room, "seq"), *log = room_key(msg->room, "log");
    char *ref = msg->ref ? ref_key(msg) : NULL;
    char ts[24], max[24], ttl[24], ref_ttl[24];
    msg->ts = util_now_ms();
    snprintf(ts, sizeof(ts), "%" PRId64, msg->ts);
    snprintf(max, sizeof(max), "%d", cfg->replay_max);
    snprintf(ttl, sizeof(ttl), "%" PRId64, (int64_t)cfg->replay_ttl_s * 1000);
    snprintf(ref_ttl, sizeof(ref_ttl), "%" PRId64, (int64_t)cfg->ref_ttl_s * 1000);

    const char *argv[18];
    int argc = 0;
    argv[argc++] = use_eval ? "EVAL" : "EVALSHA";
    argv[argc++] = use_eval ? PUBLISH_SCRIPT : b->pub.sha;
    argv[argc++] = ref ? "3" : "2";
    argv[argc++] = seq;
    argv[argc++] = log;
    if (ref)
        argv[argc++] = ref;
    argv[argc++] = msg->room;
    argv[argc++] = msg->user;
    argv[argc++] = msg->text;
    argv[argc++] = ts;
    argv[argc++] = msg->ref ? msg->ref : "";
    argv[argc++] = max;
    argv[argc++] = ttl;
    argv[argc++] = ref_ttl;
    argv[argc++] = MESSAGES_CHANNEL;
    cJSON *extras = proto_extras_object(msg);
    char *extras_json = extras ? proto_encode_json(extras, NULL) : NULL;
    cJSON_Delete(extras);
    argv[argc++] = extras_json ? extras_json : "";
    argv[argc++] = msg->claim ? msg->claim : "";
    valkey_append(b->pub.conn, argc, argv, NULL);
    free(extras_json);
    free(seq);
    free(log);
    free(ref);
}

static void append_job(struct broker_valkey *b, struct job *job, bool use_eval)
{
    if (job->kind == JOB_MESSAGE) {
        append_publish(b, job, use_eval);
    } else {
        const char *argv[] = {"PUBLISH", PRESENCE_CHANNEL, job->payload};
        valkey_append(b->pub.conn, 3, argv, NULL);
    }
}

/* Answer a message job whose msg has its id: new (fresh) or a duplicate. */
static void complete_job(struct broker_valkey *b, struct job *job, bool fresh)
{
    metrics_observe(&b->deps.metrics->publish_seconds, util_mono_ns() - job->started_ns);
    atomic_fetch_add(&b->deps.metrics->messages_received, fresh);
    job->cb(job->ctx, fresh ? BROKER_ACCEPTED : BROKER_DUPLICATE, job->msg);
    job_free(job);
}

static void complete_jobs(struct broker_valkey *b, struct job *list)
{
    while (list) {
        struct job *next = list->next;
        complete_job(b, list, list->fresh);
        list = next;
    }
}

/* Jobs of one room in the order they were accepted (their ids and their
 * ack_by_ms both ascending, but for the rare publish answered out of order). */
struct job_list {
    struct job *head;
    struct job **tail;
};

static void job_list_free(void *value)
{
    struct job_list *list = value;
    fail_jobs(list->head); /* only at teardown, after complete_jobs took them */
    free(list);
}

/* Take from the front of room's awaiting jobs while due says so. lock held. */
static struct job *take_awaiting_locked(struct broker_valkey *b, const char *room,
                                        bool (*due)(const struct job *, uint64_t, int64_t),
                                        uint64_t upto, int64_t now_ms)
{
    struct job_list *list = strmap_get(b->awaiting, room);
    if (!list)
        return NULL;
    struct job *taken = list->head, **end = &list->head;
    while (*end && due(*end, upto, now_ms))
        end = &(*end)->next;
    if (end == &list->head)
        return NULL; /* nothing due */
    list->head = *end;
    *end = NULL; /* cuts the taken ones off */
    if (!list->head)
        strmap_remove(b->awaiting, room);
    return taken;
}

static bool is_stored(const struct job *job, uint64_t upto, int64_t now_ms)
{
    (void)now_ms;
    return job->msg->id <= upto;
}

static bool is_overdue(const struct job *job, uint64_t upto, int64_t now_ms)
{
    (void)upto;
    return job->ack_by_ms <= now_ms;
}

/* Answer job, whose event Valkey accepted, once this node's log has it:
 * now when it does, else when settle_accept stores it, or at LOCAL_WAIT_MS. */
static void complete_when_stored(struct broker_valkey *b, struct job *job, bool fresh)
{
    pthread_mutex_lock(&b->lock);
    uint64_t *delivered = strmap_get(b->delivered, job->msg->room);
    bool stored = delivered && *delivered >= job->msg->id;
    if (!stored) {
        struct job_list *list = strmap_get(b->awaiting, job->msg->room);
        if (!list) {
            list = xcalloc(1, sizeof(*list));
            list->tail = &list->head;
            strmap_put(b->awaiting, job->msg->room, list);
        }
        job->fresh = fresh;
        job->ack_by_ms = util_mono_ms() + LOCAL_WAIT_MS;
        job->next = NULL;
        *list->tail = job;
        list->tail = &job->next;
    }
    pthread_mutex_unlock(&b->lock);
    if (stored)
        complete_job(b, job, fresh);
}

/* Take every awaiting job whose ack_by_ms is not after now_ms. lock held. */
static struct job *take_overdue_locked(struct broker_valkey *b, int64_t now_ms)
{
    struct room_names rooms = room_names_of(b->awaiting);
    struct job *overdue = NULL;
    for (size_t i = 0; i < rooms.count; i++) {
        struct job *taken = take_awaiting_locked(b, rooms.names[i], is_overdue, 0, now_ms);
        while (taken) {
            struct job *next = taken->next;
            taken->next = overdue;
            overdue = taken;
            taken = next;
        }
    }
    room_names_dispose(&rooms);
    return overdue;
}

/* Ack what waited LOCAL_WAIT_MS for this node's log: Valkey has it, and the
 * log will once the subscriber catches up. Looks every TICK_MS at most. */
static void ack_overdue(struct broker_valkey *b)
{
    int64_t now = util_mono_ms();
    struct job *overdue = NULL;
    pthread_mutex_lock(&b->lock);
    if (now - b->overdue_check_ms >= TICK_MS) {
        b->overdue_check_ms = now;
        overdue = take_overdue_locked(b, now);
    }
    pthread_mutex_unlock(&b->lock);
    if (overdue)
        log_msg(LOG_WARN, "broker_ack_before_store", "reason=\"this node's log is behind\"");
    complete_jobs(b, overdue);
}

/* Answer the job from its reply: the callback runs here, exactly once. */
static void finish_job(struct broker_valkey *b, struct job *job, const struct valkey_reply *r)
{
    if (job->kind == JOB_NOTICE) {
        if (reply_is(r, VALKEY_REPLY_ERROR))
            log_msg(LOG_WARN, "broker_notice_failed", "reply=%s", log_value(r->str));
        job_free(job);
        return;
    }
    if (reply_is(r, VALKEY_REPLY_ARRAY) && r->elements == 2 &&
        reply_is(r->element[0], VALKEY_REPLY_INTEGER) && r->element[0]->integer == 2) {
        job->cb(job->ctx, -TC_ECLAIMED, NULL);
        job_free(job);
        return;
    }
    if (!reply_is(r, VALKEY_REPLY_ARRAY) || r->elements < 2 ||
        !reply_is(r->element[0], VALKEY_REPLY_INTEGER) ||
        !reply_is(r->element[1], VALKEY_REPLY_INTEGER) || r->element[1]->integer < 1) {
        log_msg(LOG_WARN, "broker_publish_failed", "room=%s reply=%s", log_value(job->msg->room),
                log_value(reply_is(r, VALKEY_REPLY_ERROR) ? r->str : "unexpected"));
        job->cb(job->ctx, -TC_EUNAVAILABLE, NULL);
        job_free(job);
        return;
    }
    bool fresh = r->element[0]->integer == 1;
    job->msg->id = (uint64_t)r->element[1]->integer;
    if (!fresh)
        load_original(b, job, r->elements > 2 ? r->element[2] : NULL);
    complete_when_stored(b, job, fresh);
}

static bool is_noscript(const struct valkey_reply *r)
{
    return reply_is(r, VALKEY_REPLY_ERROR) && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static void publisher_down(struct broker_valkey *b, const char *reason, struct job *unanswered);

/* Send a batch in one pipeline and answer every job in order. Jobs whose
 * script was missing (NOSCRIPT: the server's cache was flushed) go again with
 * EVAL, which also caches it. On a broken connection every job without a
 * reply fails with -TC_EUNAVAILABLE; retrying with the same ref is safe. */
static void run_batch(struct broker_valkey *b, struct job *batch, bool use_eval)
{
    struct job *retry = NULL, **retry_tail = &retry;
    for (struct job *job = batch; job; job = job->next)
        append_job(b, job, use_eval);
    for (struct job *job = batch; job;) {
        struct valkey_reply *r = NULL;
        int rc = valkey_read_reply(b->pub.conn, &r, VALKEY_TIMEOUT_COMMAND);
        if (rc < 0) {
            *retry_tail = job; /* the unanswered: retries so far, then the rest */
            publisher_down(b, valkey_last_error(b->pub.conn), retry);
            return;
        }
        struct job *next = job->next;
        if (is_noscript(r) && !use_eval) {
            job->next = NULL;
            *retry_tail = job;
            retry_tail = &job->next;
        } else {
            finish_job(b, job, r);
        }
        valkey_reply_free(r);
        job = next;
    }
    if (retry)
        run_batch(b, retry, true);
}

/* Raise every room's seq to this node's highest stored id (see SEED_SCRIPT). */
static int seed_ids(struct broker_valkey *b)
{
    struct store_room *rooms = NULL;
    size_t count = 0;
    int rc = store_list_rooms(b->deps.store, NULL, 0, &rooms, &count);
    for (size_t i = 0; rc == 0 && i < count; i += CHUNK) {
        size_t end = i + CHUNK < count ? i + CHUNK : count;
        for (size_t j = i; j < end; j++) {
            char *seq = room_key(rooms[j].name, "seq");
            char id[24];
            snprintf(id, sizeof(id), "%" PRIu64, rooms[j].last_id);
            const char *argv[] = {"EVAL", SEED_SCRIPT, "1", seq, id};
            valkey_append(b->pub.conn, 5, argv, NULL);
            free(seq);
        }
        for (size_t j = i; rc == 0 && j < end; j++) {
            struct valkey_reply *r = NULL;
            rc = valkey_read_reply(b->pub.conn, &r, VALKEY_TIMEOUT_COMMAND);
            if (rc == 0 && reply_is(r, VALKEY_REPLY_ERROR))
                rc = -EPROTO;
            valkey_reply_free(r);
        }
    }
    store_free_rooms(rooms, count);
    return rc;
}

/* SCRIPT LOAD the publish script on the new connection. */
static int load_script(struct broker_valkey *b)
{
    const char *argv[] = {"SCRIPT", "LOAD", PUBLISH_SCRIPT};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(b->pub.conn, &r, 3, argv, NULL);
    if (rc == 0 && (!reply_is(r, VALKEY_REPLY_STRING) || r->len >= sizeof(b->pub.sha)))
        rc = -EPROTO;
    if (rc == 0)
        snprintf(b->pub.sha, sizeof(b->pub.sha), "%s", r->str);
    valkey_reply_free(r);
    return rc;
}

/* Take the jobs in doubt: all of them, or those past their deadline. lock held. */
static struct job *take_doubts_locked(struct broker_valkey *b, bool all)
{
    struct job *taken = NULL, **link = &b->doubt;
    int64_t now = util_mono_ms();
    while (*link) {
        struct job *job = *link;
        if (all || job->doubt_until_ms <= now) {
            *link = job->next;
            job->next = taken;
            taken = job;
        } else {
            link = &job->next;
        }
    }
    return taken;
}

/* Answer unavailable to the jobs in doubt past their deadline (all: every one). */
static void expire_doubts(struct broker_valkey *b, bool all)
{
    pthread_mutex_lock(&b->lock);
    struct job *expired = take_doubts_locked(b, all);
    pthread_mutex_unlock(&b->lock);
    if (expired)
        log_msg(LOG_WARN, "broker_publish_in_doubt", "outcome=unavailable");
    fail_jobs(expired);
}

/* Evidence from the subscriber: msg was published. Answers the job in doubt
 * that sent it, if any. Subscriber thread. */
static void settle_doubt(struct broker_valkey *b, const struct chat_msg *msg)
{
    pthread_mutex_lock(&b->lock);
    struct job *found = NULL, **link = &b->doubt;
    for (; *link; link = &(*link)->next) {
        const struct chat_msg *m = (*link)->msg;
        if (m->ts == msg->ts && strcmp(m->room, msg->room) == 0 &&
            strcmp(m->user, msg->user) == 0 && strcmp(m->text, msg->text) == 0) {
            found = *link;
            *link = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (found) {
        found->msg->id = msg->id;
        complete_when_stored(b, found, true);
    }
}

/* The window's entry of room that carries job's (user, text, ts), searching
 * the newest CHUNK entries; its id, or 0. */
static int find_in_window(struct broker_valkey *b, const struct chat_msg *msg, uint64_t *id)
{
    char *key = room_key(msg->room, "log"), count[16];
    snprintf(count, sizeof(count), "%d", CHUNK);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", count};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(b->pub.conn, &r, 6, argv, NULL);
    free(key);
    *id = 0;
    for (size_t i = 0; rc == 0 && reply_is(r, VALKEY_REPLY_ARRAY) && i < r->elements && !*id; i++) {
        struct chat_msg *entry = broker__decode_entry(msg->room, r->element[i]);
        if (entry && entry->ts == msg->ts && strcmp(entry->user, msg->user) == 0 &&
            strcmp(entry->text, msg->text) == 0)
            *id = entry->id;
        chat_msg_free(entry);
    }
    valkey_reply_free(r);
    return rc;
}

/* The id the job's ref produced (0: none), through the new connection. */
static int find_ref(struct broker_valkey *b, const struct chat_msg *msg, uint64_t *id)
{
    char *key = ref_key(msg);
    const char *argv[] = {"GET", key};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(b->pub.conn, &r, 2, argv, NULL);
    free(key);
    *id = rc == 0 && reply_is(r, VALKEY_REPLY_STRING) ? strtoull(r->str, NULL, 10) : 0;
    valkey_reply_free(r);
    return rc;
}

/* After a reconnect: make sure the old connection runs nothing more, then
 * look every job in doubt up and answer it. Negative when the new connection
 * failed (the jobs stay in doubt). */
static int resolve_doubts(struct broker_valkey *b)
{
    if (b->pub.client_id[0] && b->pub.client_addr[0]) {
        const char *argv[] = {"CLIENT", "KILL", "ID", b->pub.client_id, "ADDR", b->pub.client_addr};
        struct valkey_reply *r = NULL;
        int rc = valkey_command(b->pub.conn, &r, 6, argv, NULL);
        valkey_reply_free(r); /* "No such client" is the usual answer */
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&b->lock);
    struct job *doubts = take_doubts_locked(b, true);
    pthread_mutex_unlock(&b->lock);
    int rc = 0;
    while (doubts) {
        struct job *job = doubts;
        doubts = job->next;
        job->next = NULL;
        uint64_t id = 0;
        bool by_ref = job->msg->ref != NULL;
        if (rc == 0)
            rc = by_ref ? find_ref(b, job->msg, &id) : find_in_window(b, job->msg, &id);
        if (rc < 0 || id == 0) {
            fail_jobs(job); /* not run: truly unavailable (or the lookup failed) */
            continue;
        }
        job->msg->id = id;
        uint64_t found = 0;
        bool ours = by_ref && find_in_window(b, job->msg, &found) == 0 && found == id;
        if (by_ref && !ours)
            load_original(b, job, NULL);
        complete_when_stored(b, job, !by_ref || ours);
    }
    return rc;
}

/* Copy the value of " key=value" in a CLIENT INFO line into out ("" if absent). */
static void client_info_field(const char *info, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t klen = strlen(key);
    for (const char *p = info; *p; p += strcspn(p, " "), p += strspn(p, " ")) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = strcspn(p + klen + 1, " \n");
            if (vlen < outlen)
                snprintf(out, outlen, "%.*s", (int)vlen, p + klen + 1);
            return;
        }
    }
}

/* Who the new connection is to the server, so that a later reconnect can kill it. */
static void remember_client(struct broker_valkey *b)
{
    const char *argv[] = {"CLIENT", "INFO"};
    struct valkey_reply *r = NULL;
    b->pub.client_id[0] = b->pub.client_addr[0] = '\0';
    if (valkey_command(b->pub.conn, &r, 2, argv, NULL) == 0 && reply_is(r, VALKEY_REPLY_STRING)) {
        client_info_field(r->str, "id", b->pub.client_id, sizeof(b->pub.client_id));
        client_info_field(r->str, "addr", b->pub.client_addr, sizeof(b->pub.client_addr));
    }
    valkey_reply_free(r);
}

/* Connect, load the script, seed the ids, then accept publishes. */
static int publisher_connect(struct broker_valkey *b)
{
    char err[REASON_MAX];
    b->pub.conn = open_conn(b, "publisher", err, sizeof(err));
    if (!b->pub.conn)
        goto out_fail;
    int rc = resolve_doubts(b);
    if (rc == 0)
        rc = load_script(b);
    if (rc == 0)
        rc = seed_ids(b);
    if (rc == 0)
        remember_client(b);
    if (rc < 0) {
        snprintf(err, sizeof(err), "set-up failed: %s",
                 valkey_is_broken(b->pub.conn) ? valkey_last_error(b->pub.conn)
                                               : "unexpected reply");
        valkey_close(b->pub.conn);
        b->pub.conn = NULL;
        goto out_fail;
    }
    if (b->pub.connected_once)
        atomic_fetch_add(&b->deps.metrics->broker_reconnects, 1);
    b->pub.connected_once = true;
    pthread_mutex_lock(&b->lock);
    b->pub_up = true;
    b->pub_why[0] = '\0';
    update_connected(b);
    pthread_mutex_unlock(&b->lock);
    b->pub.backoff.delay_ms = 0;
    b->pub.outage_logged = false;
    b->pub.next_heartbeat_ms = 0; /* announce our presence at once */
    log_msg(LOG_INFO, "broker_connected", "role=publisher host=%s port=%d tls=%s",
            log_value(b->opts.host), b->opts.port, b->opts.tls ? "on" : "off");
    return 0;

out_fail:
    pthread_mutex_lock(&b->lock);
    snprintf(b->pub_why, sizeof(b->pub_why), "%s", err);
    pthread_mutex_unlock(&b->lock);
    if (!b->pub.outage_logged)
        log_msg(LOG_WARN, "broker_connect_failed", "role=publisher reason=%s", log_value(err));
    b->pub.outage_logged = true;
    return -1;
}

/* The connection broke: refuse publishes from now on, put the sent but
 * unanswered messages in doubt, fail the rest of the queue (never sent), close. */
static void publisher_down(struct broker_valkey *b, const char *reason, struct job *unanswered)
{
    int64_t until = util_mono_ms() + IN_DOUBT_MS;
    struct job *notices = NULL;
    pthread_mutex_lock(&b->lock);
    b->pub_up = false;
    snprintf(b->pub_why, sizeof(b->pub_why), "%s", reason);
    update_connected(b);
    struct job *queued = take_all_locked(b);
    while (unanswered) {
        struct job *job = unanswered;
        unanswered = job->next;
        struct job **list = job->kind == JOB_MESSAGE ? &b->doubt : &notices;
        job->doubt_until_ms = until;
        job->next = *list;
        *list = job;
    }
    pthread_mutex_unlock(&b->lock);
    log_msg(LOG_WARN, "broker_disconnected", "role=publisher reason=%s", log_value(reason));
    b->pub.outage_logged = true;
    fail_jobs(notices);
    fail_jobs(queued);
    valkey_close(b->pub.conn);
    b->pub.conn = NULL;
}

/* Wait for work and take a batch; *snapshot when our presence is due.
 * False when stopping with nothing left to do. */
static bool next_batch(struct broker_valkey *b, struct job **batch, bool *snapshot)
{
    pthread_mutex_lock(&b->lock);
    for (;;) {
        int64_t now = util_mono_ms();
        *snapshot = b->snapshot_due || now >= b->pub.next_heartbeat_ms;
        if (!b->jobs.head && b->stopping) {
            pthread_mutex_unlock(&b->lock);
            return false;
        }
        if (b->jobs.head || *snapshot)
            break;
        wait_until(b, &b->work, b->pub.next_heartbeat_ms);
    }
    if (*snapshot) {
        b->snapshot_due = false;
        b->pub.next_heartbeat_ms = util_mono_ms() + HEARTBEAT_MS;
    }
    *batch = take_batch_locked(b);
    pthread_mutex_unlock(&b->lock);
    return true;
}

/* Sleep the next backoff delay in TICK_MS steps, calling tick after each;
 * true when the broker is stopping. */
static bool backoff_wait(struct broker_valkey *b, struct backoff *bo,
                         void (*tick)(struct broker_valkey *))
{
    int left = backoff_next(bo);
    while (left > 0) {
        int step = left < TICK_MS ? left : TICK_MS;
        if (sleep_unless_stopping(b, step))
            return true;
        tick(b);
        left -= step;
    }
    return false;
}

static void expire_some_doubts(struct broker_valkey *b)
{
    expire_doubts(b, false);
}

static void *publisher_main(void *arg)
{
    struct broker_valkey *b = arg;
    for (;;) {
        if (!b->pub.conn && publisher_connect(b) < 0) {
            if (backoff_wait(b, &b->pub.backoff, expire_some_doubts))
                break;
            continue;
        }
        struct job *batch = NULL;
        bool snapshot = false;
        if (!next_batch(b, &batch, &snapshot))
            break;
        if (snapshot)
            queue_snapshot(b);
        if (batch)
            run_batch(b, batch, false);
    }
    expire_doubts(b, true); /* shutting down: nobody will look them up */
    return NULL;
}

/* ---------------------------------------------------------------- accepting messages */

/* A message on its way through the store to the hub. */
struct accept_job {
    struct broker_valkey *b;
    struct chat_msg *msg; /* owned copy, delivered after the commit */
};

static size_t msg_bytes(const struct chat_msg *msg)
{
    size_t bytes = sizeof(*msg) + strlen(msg->room) + strlen(msg->user) + strlen(msg->text) +
                   (msg->ref ? strlen(msg->ref) : 0) + (msg->emoji ? strlen(msg->emoji) : 0) +
                   (msg->reply_text ? strlen(msg->reply_text) : 0);
    for (size_t i = 0; i < msg->mention_count; i++)
        bytes += sizeof(char *) + strlen(msg->mentions[i]);
    return bytes;
}

/* Take job's message into unstored, or count it dropped when that is full.
 * b->lock held. */
static void keep_unstored_locked(struct broker_valkey *b, struct accept_job *job, int status)
{
    size_t bytes = msg_bytes(job->msg);
    if (b->unstored_bytes + bytes > UNSTORED_MAX_BYTES) {
        if (b->unstored_dropped++ == 0)
            log_msg(LOG_ERROR, "broker_store_gave_up", "room=%s id=%" PRIu64 " unstored=%zu",
                    job->msg->room, job->msg->id, b->unstored.count);
        return;
    }
    if (b->unstored.count == 0)
        log_msg(LOG_ERROR, "broker_store_failed", "room=%s id=%" PRIu64 " status=%d retry=yes",
                job->msg->room, job->msg->id, status);
    msg_list_push(&b->unstored, job->msg);
    b->unstored_bytes += bytes;
    job->msg = NULL;
}

/* Deliver only what is committed ("delivered => stored"). A message whose
 * commit failed is kept for retry_unstored when keep is set (up to
 * UNSTORED_MAX_BYTES; beyond that it is dropped from this node and counted). */
static void settle_accept(struct accept_job *job, int status, bool keep)
{
    struct broker_valkey *b = job->b;
    if (status == 0)
        b->deps.listener->deliver(b->deps.listener_ctx, job->msg);
    pthread_mutex_lock(&b->lock);
    uint64_t *delivered = strmap_get(b->delivered, job->msg->room);
    if (status == 0 && delivered && *delivered < job->msg->id)
        *delivered = job->msg->id;
    struct job *stored =
        status == 0 ? take_awaiting_locked(b, job->msg->room, is_stored, job->msg->id, 0) : NULL;
    if (status != 0 && keep)
        keep_unstored_locked(b, job, status);
    if (--b->store_in_flight == 0)
        pthread_cond_broadcast(&b->settled);
    pthread_mutex_unlock(&b->lock);
    complete_jobs(b, stored);
    chat_msg_free(job->msg);
    free(job);
}

/* Store writer thread. */
static void on_stored(void *ctx, int status)
{
    settle_accept(ctx, status, true);
}

/* Highest id of room handed to the store, read from the store on first use;
 * NULL when the store cannot answer. Subscriber thread. */
static uint64_t *last_seen(struct broker_valkey *b, const char *room)
{
    uint64_t *last = strmap_get(b->sub.last_seen, room);
    if (last)
        return last;
    uint64_t stored = 0;
    int rc = store_last_id(b->deps.store, room, &stored);
    if (rc < 0) {
        log_msg(LOG_ERROR, "broker_store_failed", "room=%s op=last_id status=%d", room, rc);
        return NULL;
    }
    last = xmalloc(sizeof(*last));
    *last = stored;
    strmap_put(b->sub.last_seen, room, last);
    return last;
}

/* Store msg, then deliver it; advances *last unless the store refused it. */
static void accept_msg(struct broker_valkey *b, const struct chat_msg *msg, uint64_t *last,
                       bool retried)
{
    struct accept_job *job = xmalloc(sizeof(*job));
    job->b = b;
    job->msg = chat_msg_clone(msg);
    pthread_mutex_lock(&b->lock);
    b->store_in_flight++;
    if (!strmap_get(b->delivered, msg->room)) {
        uint64_t *delivered = xmalloc(sizeof(*delivered));
        *delivered = *last; /* nothing of room is in flight yet */
        strmap_put(b->delivered, msg->room, delivered);
    }
    pthread_mutex_unlock(&b->lock);
    int rc = store_append(b->deps.store, msg, on_stored, job);
    if (rc < 0) {
        /* A first attempt leaves *last put, so gap repair fetches it again;
         * a retried one is past that and is kept for the next retry. */
        log_msg(LOG_ERROR, "broker_store_failed", "room=%s id=%" PRIu64 " status=%d", msg->room,
                msg->id, rc);
        settle_accept(job, rc, retried);
        return;
    }
    *last = msg->id;
}

/* Hand the store again, every STORE_RETRY_MS, what it failed to commit (its
 * database locked by another process, say): stored and delivered late, out
 * of id order, rather than missing from this node for good. Subscriber thread. */
static void retry_unstored(struct broker_valkey *b)
{
    int64_t now = util_mono_ms();
    pthread_mutex_lock(&b->lock);
    bool due = b->unstored.count > 0 && b->sub.store_retry_ms != 0 && now >= b->sub.store_retry_ms;
    if (b->unstored.count > 0 && b->sub.store_retry_ms == 0)
        b->sub.store_retry_ms = now + STORE_RETRY_MS; /* a failure since the last round */
    struct msg_list list = {0};
    size_t dropped = b->unstored_dropped;
    if (due) {
        list = b->unstored;
        b->unstored = (struct msg_list){0};
        b->unstored_bytes = 0;
        b->unstored_dropped = 0;
        b->sub.store_retry_ms = 0;
    }
    pthread_mutex_unlock(&b->lock);
    if (!due)
        return;
    log_msg(LOG_WARN, "broker_store_retry", "messages=%zu dropped=%zu", list.count, dropped);
    for (size_t i = 0; i < list.count; i++) {
        uint64_t before = list.items[i]->id - 1;
        accept_msg(b, list.items[i], &before, true);
    }
    msg_list_dispose(&list);
}

/* Fetch ids *last+1..upto of room from the window and accept them in order.
 * Ids the window no longer has are logged and skipped. Negative when the
 * repair connection failed (the caller reconnects and catches up later). */
static int repair_range(struct broker_valkey *b, const char *room, uint64_t *last, uint64_t upto)
{
    while (*last < upto && !is_stopping(b)) {
        struct valkey_conn *conn = lazy_conn_get(b, &b->sub.repair, "repair");
        if (!conn)
            return -ENOTCONN;
        struct msg_list list = {0};
        int rc = xrange(conn, room, *last + 1, upto, CHUNK, &list);
        if (rc < 0) {
            msg_list_dispose(&list);
            return rc;
        }
        uint64_t before = *last;
        uint64_t first = list.count ? list.items[0]->id : upto + 1;
        if (first > *last + 1)
            log_msg(LOG_WARN, "broker_gap_lost",
                    "room=%s from=%" PRIu64 " to=%" PRIu64 " reason=\"not in the replay window\"",
                    room, *last + 1, first - 1);
        if (list.count == 0)
            *last = upto;
        for (size_t i = 0; i < list.count; i++) {
            settle_doubt(b, list.items[i]);
            accept_msg(b, list.items[i], last, false);
        }
        atomic_fetch_add(&b->deps.metrics->broker_gaps_repaired, list.count);
        msg_list_dispose(&list);
        if (*last == before)
            return -TC_ESTORE; /* the store refused: retry after a reconnect */
    }
    return 0;
}

/* A message from the channel: drop what we have, repair a gap before it. */
static int receive_msg(struct broker_valkey *b, const struct chat_msg *msg)
{
    uint64_t *last = last_seen(b, msg->room);
    if (!last || msg->id <= *last)
        return 0;
    if (msg->id > *last + 1) {
        log_msg(LOG_INFO, "broker_gap", "room=%s from=%" PRIu64 " to=%" PRIu64, msg->room,
                *last + 1, msg->id - 1);
        int rc = repair_range(b, msg->room, last, msg->id - 1);
        if (rc < 0)
            return rc;
    }
    if (msg->id == *last + 1)
        accept_msg(b, msg, last, false);
    return 0;
}

/* ---------------------------------------------------------------- catch-up */

/* The room of a "turbochat:{room}:seq" key (copied into out); false if not one. */
static bool seq_key_room(const char *key, char *out, size_t outlen)
{
    const char *prefix = "turbochat:{", *suffix = "}:seq";
    size_t klen = strlen(key), plen = strlen(prefix), slen = strlen(suffix);
    if (klen <= plen + slen || strncmp(key, prefix, plen) != 0 ||
        strcmp(key + klen - slen, suffix) != 0 || klen - plen - slen >= outlen)
        return false;
    memcpy(out, key + plen, klen - plen - slen);
    out[klen - plen - slen] = '\0';
    return proto_log_is_valid(out);
}

/* Every room that has a seq key, into rooms (a strmap used as a set). */
static int scan_rooms(struct broker_valkey *b, struct valkey_conn *conn, struct strmap *rooms)
{
    char cursor[32] = "0", count[16];
    snprintf(count, sizeof(count), "%d", CHUNK);
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", SEQ_PATTERN, "COUNT", count};
        struct valkey_reply *r = NULL;
        int rc = valkey_command(conn, &r, 6, argv, NULL);
        if (rc < 0)
            return rc;
        if (!reply_is(r, VALKEY_REPLY_ARRAY) || r->elements != 2 ||
            !reply_is(r->element[0], VALKEY_REPLY_STRING) ||
            !reply_is(r->element[1], VALKEY_REPLY_ARRAY)) {
            valkey_reply_free(r);
            return -EPROTO;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const struct valkey_reply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            char room[PROTO_ROOM_MAX + 1];
            if (reply_is(keys->element[i], VALKEY_REPLY_STRING) &&
                seq_key_room(keys->element[i]->str, room, sizeof(room)))
                strmap_put(rooms, room, (void *)1);
        }
        valkey_reply_free(r);
    } while (strcmp(cursor, "0") != 0 && !is_stopping(b));
    return 0;
}

/* GET the seq of names[0..n) in one pipeline into seqs. */
static int get_seqs(struct valkey_conn *conn, char **names, size_t n, uint64_t *seqs)
{
    for (size_t i = 0; i < n; i++) {
        char *key = room_key(names[i], "seq");
        const char *argv[] = {"GET", key};
        valkey_append(conn, 2, argv, NULL);
        free(key);
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct valkey_reply *r = NULL;
        int read = valkey_read_reply(conn, &r, VALKEY_TIMEOUT_COMMAND);
        if (read < 0)
            return read;
        seqs[i] = reply_is(r, VALKEY_REPLY_STRING) ? strtoull(r->str, NULL, 10) : 0;
        if (reply_is(r, VALKEY_REPLY_ERROR))
            rc = -EPROTO;
        valkey_reply_free(r);
    }
    return rc;
}

/* Accept, in id order, every message of every room that the window has beyond
 * this node's log. Runs once subscribed, so nothing published later is missed. */
static int catch_up(struct broker_valkey *b)
{
    uint64_t started = util_mono_ns();
    uint64_t repaired_before = atomic_load(&b->deps.metrics->broker_gaps_repaired);
    struct valkey_conn *conn = lazy_conn_get(b, &b->sub.repair, "repair");
    if (!conn)
        return -ENOTCONN;
    struct strmap *set = strmap_create(NULL);
    int rc = scan_rooms(b, conn, set);
    struct room_names rooms = room_names_of(set);
    strmap_free(set);
    uint64_t seqs[CHUNK];
    for (size_t i = 0; rc == 0 && i < rooms.count; i += CHUNK) {
        size_t n = rooms.count - i < CHUNK ? rooms.count - i : CHUNK;
        rc = get_seqs(conn, rooms.names + i, n, seqs);
        for (size_t j = 0; rc == 0 && j < n; j++) {
            uint64_t *last = last_seen(b, rooms.names[i + j]);
            if (last && seqs[j] > *last)
                rc = repair_range(b, rooms.names[i + j], last, seqs[j]);
        }
    }
    room_names_dispose(&rooms);
    if (rc == 0)
        log_msg(LOG_INFO, "broker_caught_up", "rooms=%zu fetched=%" PRIu64 " ms=%" PRIu64,
                rooms.count,
                (uint64_t)atomic_load(&b->deps.metrics->broker_gaps_repaired) - repaired_before,
                (util_mono_ns() - started) / 1000000u);
    return rc;
}

/* ---------------------------------------------------------------- remote presence */

static void remote_node_free(void *value)
{
    struct remote_node *node = value;
    strmap_free(node->entries);
    strmap_free(node->pending);
    free(node);
}

/* Tell the hub that the pair "room\x1fuser" came (+1) or went (-1). */
static void report_pair(struct broker_valkey *b, const char *key, int delta)
{
    const char *sep = strchr(key, '\x1f');
    char room[PROTO_ROOM_MAX + 1];
    size_t rlen = (size_t)(sep - key);
    memcpy(room, key, rlen);
    room[rlen] = '\0';
    b->deps.listener->remote_presence(b->deps.listener_ctx, room, sep + 1, delta);
}

/* The pair key, or NULL when room or user is not acceptable. */
static char *pair_key(const char *room, const char *user)
{
    if (!room || !user || !proto_room_is_valid(room, NULL) || !*user ||
        strlen(user) > PROTO_USER_MAX_BYTES || strchr(user, '\x1f'))
        return NULL;
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "%s\x1f%s", room, user);
    return util_buf_take(&buf, NULL);
}

struct pair_diff {
    struct broker_valkey *b;
    const struct strmap *other; /* pairs missing from it are reported */
    int delta;
};

static bool report_missing(void *ctx, const char *key, void *value)
{
    (void)value;
    struct pair_diff *d = ctx;
    if (!d->other || !strmap_get(d->other, key))
        report_pair(d->b, key, d->delta);
    return true;
}

/* Replace node's pairs with next (consumed; NULL: none), reporting the difference. */
static void replace_pairs(struct broker_valkey *b, struct remote_node *node, struct strmap *next)
{
    struct pair_diff gone = {b, next, -1}, came = {b, node->entries, +1};
    strmap_each(node->entries, report_missing, &gone);
    if (next)
        strmap_each(next, report_missing, &came);
    strmap_free(node->entries);
    node->entries = next ? next : strmap_create(NULL);
}

static void apply_delta(struct broker_valkey *b, struct remote_node *node, const cJSON *root,
                        bool online)
{
    bool bad = false;
    char *key =
        pair_key(proto_get_string(root, "room", &bad), proto_get_string(root, "user", &bad));
    if (!key)
        return;
    bool known = strmap_get(node->entries, key) != NULL;
    if (online && !known) {
        strmap_put(node->entries, key, (void *)1);
        report_pair(b, key, +1);
    } else if (!online && known) {
        report_pair(b, key, -1);
        strmap_remove(node->entries, key);
    }
    free(key);
}

static uint64_t number_field(const cJSON *root, const char *name)
{
    int64_t v;
    return proto_get_int(root, name, &v) && v >= 0 ? (uint64_t)v : 0;
}

/* Collect one part of a snapshot; the last part replaces the node's pairs.
 * A part out of sequence (a lost message) drops the snapshot: the next
 * heartbeat brings a whole one. */
static void apply_snapshot_part(struct broker_valkey *b, struct remote_node *node,
                                const cJSON *root)
{
    uint64_t snap = number_field(root, "snap"), part = number_field(root, "part");
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
    if (part == 0) {
        strmap_free(node->pending);
        node->pending = strmap_create(NULL);
        node->pending_snap = snap;
        node->next_part = 0;
    }
    if (!node->pending || node->pending_snap != snap || node->next_part != part ||
        !cJSON_IsArray(entries)) {
        strmap_free(node->pending);
        node->pending = NULL;
        return;
    }
    node->next_part++;
    const cJSON *pair;
    cJSON_ArrayForEach(pair, entries)
    {
        char *key = cJSON_GetArraySize(pair) == 2
                        ? pair_key(cJSON_GetStringValue(cJSON_GetArrayItem(pair, 0)),
                                   cJSON_GetStringValue(cJSON_GetArrayItem(pair, 1)))
                        : NULL;
        if (key)
            strmap_put(node->pending, key, (void *)1);
        free(key);
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "final"))) {
        replace_pairs(b, node, node->pending);
        node->pending = NULL;
    }
}

static struct remote_node *remote_node_get(struct broker_valkey *b, const char *id)
{
    struct remote_node *node = strmap_get(b->sub.nodes, id);
    if (!node) {
        node = xcalloc(1, sizeof(*node));
        node->entries = strmap_create(NULL);
        strmap_put(b->sub.nodes, id, node);
        log_msg(LOG_INFO, "broker_node_seen", "node=%s", log_value(id));
    }
    node->heard_ms = util_mono_ms();
    return node;
}

/* Another node's user is typing: valid names only, straight to the hub. */
static void receive_typing(struct broker_valkey *b, const cJSON *root)
{
    bool bad = false;
    const char *room = proto_get_string(root, "room", &bad);
    const char *user = proto_get_string(root, "user", &bad);
    if (b->deps.listener->remote_typing && room && user && proto_room_is_valid(room, NULL))
        b->deps.listener->remote_typing(b->deps.listener_ctx, room, user);
}

/* A presence notice from another node. */
static void receive_presence(struct broker_valkey *b, const char *buf, size_t len)
{
    if (!b->deps.listener->remote_presence)
        return;
    cJSON *root = proto_parse_object(buf, len);
    bool bad = false;
    const char *node_id = root ? proto_get_string(root, "node", &bad) : NULL;
    const char *op = root ? proto_get_string(root, "op", &bad) : NULL;
    if (!node_id || !op || strcmp(node_id, b->node_id) == 0)
        goto out_free;
    struct remote_node *node = remote_node_get(b, node_id);
    if (strcmp(op, "sync") == 0) {
        pthread_mutex_lock(&b->lock);
        b->snapshot_due = true;
        pthread_cond_signal(&b->work);
        pthread_mutex_unlock(&b->lock);
    } else if (strcmp(op, "join") == 0 || strcmp(op, "leave") == 0) {
        apply_delta(b, node, root, op[0] == 'j');
    } else if (strcmp(op, "snapshot") == 0) {
        apply_snapshot_part(b, node, root);
    } else if (strcmp(op, "typing") == 0) {
        receive_typing(b, root);
    }
out_free:
    cJSON_Delete(root);
}

struct expiry {
    int64_t cutoff_ms;
    char **ids;
    size_t count;
};

static bool collect_silent(void *ctx, const char *key, void *value)
{
    struct expiry *e = ctx;
    struct remote_node *node = value;
    if (node->heard_ms < e->cutoff_ms)
        e->ids[e->count++] = xstrdup(key);
    return true;
}

/* Forget nodes not heard from for NODE_TIMEOUT_MS (dead, or we lost Valkey).
 * Checks at most once a second. */
static void expire_nodes(struct broker_valkey *b)
{
    int64_t now = util_mono_ms();
    if (now - b->sub.expired_ms < 1000)
        return;
    b->sub.expired_ms = now;
    struct expiry e = {now - NODE_TIMEOUT_MS, NULL, 0};
    e.ids = xcalloc(strmap_count(b->sub.nodes) + 1, sizeof(char *));
    strmap_each(b->sub.nodes, collect_silent, &e);
    for (size_t i = 0; i < e.count; i++) {
        log_msg(LOG_INFO, "broker_node_gone", "node=%s", log_value(e.ids[i]));
        replace_pairs(b, strmap_get(b->sub.nodes, e.ids[i]), NULL);
        strmap_remove(b->sub.nodes, e.ids[i]);
        free(e.ids[i]);
    }
    free(e.ids);
}

/* ---------------------------------------------------------------- subscriber thread */

static void set_sub_state(struct broker_valkey *b, bool up, const char *why)
{
    pthread_mutex_lock(&b->lock);
    b->sub_up = up;
    snprintf(b->sub_why, sizeof(b->sub_why), "%s", why);
    update_connected(b);
    pthread_mutex_unlock(&b->lock);
}

/* Both SUBSCRIBEs are confirmed: catch up, ask for presence, become ready. */
static int on_subscribed(struct broker_valkey *b)
{
    int rc = catch_up(b);
    if (rc < 0)
        return rc;
    queue_sync_request(b);
    if (b->sub.connected_once)
        atomic_fetch_add(&b->deps.metrics->broker_reconnects, 1);
    b->sub.connected_once = true;
    b->sub.backoff.delay_ms = 0;
    b->sub.outage_logged = false;
    set_sub_state(b, true, "");
    log_msg(LOG_INFO, "broker_connected", "role=subscriber host=%s port=%d tls=%s",
            log_value(b->opts.host), b->opts.port, b->opts.tls ? "on" : "off");
    return 0;
}

/* One pub/sub push; negative when the connection must be renewed. */
static int handle_push(struct broker_valkey *b, const struct valkey_reply *r)
{
    if (!reply_is(r, VALKEY_REPLY_ARRAY) || r->elements < 1)
        return 0;
    const struct valkey_reply *kind = r->element[0];
    if (reply_str_equals(kind, "subscribe"))
        return ++b->sub.confirmed == 2 ? on_subscribed(b) : 0;
    if (!reply_str_equals(kind, "message") || r->elements != 3 ||
        !reply_is(r->element[2], VALKEY_REPLY_STRING))
        return 0; /* "pong" and anything else */
    const struct valkey_reply *payload = r->element[2];
    if (reply_str_equals(r->element[1], PRESENCE_CHANNEL)) {
        receive_presence(b, payload->str, payload->len);
        return 0;
    }
    struct chat_msg *msg = broker__decode_event(payload->str, payload->len);
    if (!msg) {
        log_msg(LOG_WARN, "broker_bad_message", "bytes=%zu", payload->len);
        return 0;
    }
    settle_doubt(b, msg);
    int rc = receive_msg(b, msg);
    chat_msg_free(msg);
    return rc;
}

/* Nothing arrived for a while: PING (Aiven drops idle connections); a PING
 * unanswered within the command timeout means the connection is dead. */
static int keepalive(struct broker_valkey *b)
{
    int64_t now = util_mono_ms();
    if (b->sub.ping_sent_ms)
        return now - b->sub.ping_sent_ms > b->opts.command_timeout_ms ? -ETIMEDOUT : 0;
    if (now - b->sub.last_rx_ms < KEEPALIVE_MS)
        return 0;
    const char *argv[] = {"PING"};
    b->sub.ping_sent_ms = now;
    int rc = valkey_append(b->sub.conn, 1, argv, NULL);
    return rc < 0 ? rc : valkey_flush(b->sub.conn);
}

/* Read and handle pushes until the connection fails or the broker stops. */
static const char *subscriber_run(struct broker_valkey *b)
{
    while (!is_stopping(b)) {
        struct valkey_reply *r = NULL;
        int rc = valkey_read_reply(b->sub.conn, &r, 1000);
        if (rc == -EAGAIN) {
            rc = keepalive(b);
        } else if (rc == 0) {
            b->sub.last_rx_ms = util_mono_ms();
            b->sub.ping_sent_ms = 0;
            rc = handle_push(b, r);
            valkey_reply_free(r);
        }
        expire_nodes(b);
        retry_unstored(b);
        ack_overdue(b);
        if (rc == -ETIMEDOUT && !valkey_is_broken(b->sub.conn))
            return "keepalive PING unanswered";
        if (rc < 0)
            return valkey_is_broken(b->sub.conn) ? valkey_last_error(b->sub.conn)
                                                 : "gap repair failed";
    }
    return NULL;
}

/* Connect and SUBSCRIBE (the confirmations arrive in subscriber_run). */
static int subscriber_connect(struct broker_valkey *b, char *err, size_t errlen)
{
    b->sub.conn = open_conn(b, "subscriber", err, errlen);
    if (!b->sub.conn)
        return -1;
    const char *argv[] = {"SUBSCRIBE", MESSAGES_CHANNEL, PRESENCE_CHANNEL};
    b->sub.confirmed = 0;
    b->sub.ping_sent_ms = 0;
    b->sub.last_rx_ms = util_mono_ms();
    if (valkey_append(b->sub.conn, 3, argv, NULL) < 0 || valkey_flush(b->sub.conn) < 0) {
        snprintf(err, errlen, "%s", valkey_last_error(b->sub.conn));
        valkey_close(b->sub.conn);
        b->sub.conn = NULL;
        return -1;
    }
    return 0;
}

static void subscriber_lost(struct broker_valkey *b, const char *reason, bool was_connected)
{
    char why[REASON_MAX];
    snprintf(why, sizeof(why), "%s", reason);
    valkey_close(b->sub.conn);
    b->sub.conn = NULL;
    lazy_conn_close(&b->sub.repair);
    set_sub_state(b, false, why);
    if (was_connected || !b->sub.outage_logged)
        log_msg(LOG_WARN, was_connected ? "broker_disconnected" : "broker_connect_failed",
                "role=subscriber reason=%s", log_value(why));
    b->sub.outage_logged = true;
}

/* What the subscriber does every tick, also while it cannot connect. */
static void subscriber_tick(struct broker_valkey *b)
{
    expire_nodes(b);
    ack_overdue(b);
}

static void *subscriber_main(void *arg)
{
    struct broker_valkey *b = arg;
    char err[REASON_MAX];
    while (!is_stopping(b)) {
        if (subscriber_connect(b, err, sizeof(err)) == 0) {
            const char *reason = subscriber_run(b);
            if (!reason)
                break;
            subscriber_lost(b, reason, true);
        } else {
            subscriber_lost(b, err, false);
        }
        if (backoff_wait(b, &b->sub.backoff, subscriber_tick))
            break;
    }
    valkey_close(b->sub.conn);
    b->sub.conn = NULL;
    lazy_conn_close(&b->sub.repair);
    return NULL;
}

/* ---------------------------------------------------------------- ops */

static int valkey_publish(struct broker *base, struct chat_msg *msg, broker_publish_cb cb,
                          void *ctx)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    struct job *job = xcalloc(1, sizeof(*job));
    job->kind = JOB_MESSAGE;
    job->msg = msg;
    job->cb = cb;
    job->ctx = ctx;
    job->started_ns = util_mono_ns();
    pthread_mutex_lock(&b->lock);
    bool queued = !b->draining && enqueue_locked(b, job);
    pthread_mutex_unlock(&b->lock);
    if (queued)
        return 0;
    job_free(job);
    return -TC_EUNAVAILABLE;
}

/* Merge two ascending lists of distinct ids into one (both consumed). */
static void merge_msgs(struct chat_msg **a, size_t na, struct msg_list *w, struct msg_list *out)
{
    size_t i = 0, j = 0;
    while (i < na || j < w->count) {
        if (j == w->count || (i < na && a[i]->id <= w->items[j]->id)) {
            if (j < w->count && a[i]->id == w->items[j]->id)
                chat_msg_free(w->items[j++]);
            msg_list_push(out, a[i++]);
        } else {
            msg_list_push(out, w->items[j++]);
        }
    }
    free(a);
    free(w->items);
    *w = (struct msg_list){0};
}

/* The window's messages of room in (after, upto], at most limit, through the
 * query connection. Negative when Valkey cannot be asked now. */
static int window_range(struct broker_valkey *b, const char *room, uint64_t after, uint64_t upto,
                        int limit, struct msg_list *out)
{
    pthread_mutex_lock(&b->lock);
    bool up = b->pub_up;
    pthread_mutex_unlock(&b->lock);
    if (!up)
        return -TC_EUNAVAILABLE; /* do not wait for connect timeouts on a worker */
    pthread_mutex_lock(&b->query_lock);
    int rc = 0;
    uint64_t from = after + 1;
    while (rc == 0 && from <= upto && out->count < (size_t)limit) {
        struct valkey_conn *conn = lazy_conn_get(b, &b->query, "query");
        size_t before = out->count;
        rc = conn ? xrange(conn, room, from, upto, CHUNK, out) : -ENOTCONN;
        if (rc < 0 || out->count == before)
            break;
        from = out->items[out->count - 1]->id + 1;
    }
    pthread_mutex_unlock(&b->query_lock);
    return rc;
}

/* The store first (it normally has everything); the window for what it lacks. */
static int valkey_replay(struct broker *base, const char *room, uint64_t after, uint64_t upto,
                         int limit, struct chat_msg ***out, size_t *count, bool *complete)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    *out = NULL;
    *count = 0;
    *complete = upto - after <= (uint64_t)limit;
    if (upto <= after || !*complete)
        return 0; /* nothing to send, or more than a replay may carry */
    struct chat_msg **stored = NULL;
    size_t n = 0;
    int rc = store_fetch_range(b->deps.store, room, after, upto, limit, &stored, &n);
    if (rc < 0)
        return rc;
    if (n < upto - after) {
        struct msg_list window = {0}, merged = {0};
        if (window_range(b, room, after, upto, limit, &window) < 0)
            log_msg(LOG_WARN, "broker_replay_partial", "room=%s after=%" PRIu64, room, after);
        merge_msgs(stored, n, &window, &merged);
        stored = merged.items;
        n = merged.count;
    }
    *complete = n == upto - after;
    *out = stored;
    *count = n;
    return 0;
}

/* The highest id delivered, not stored: a message committed but not yet
 * delivered must not count, or a join could announce it in last_id and the
 * hub then deliver it live as well. A room without an entry has nothing in
 * flight since start-up, so the store answers; the entry is made before the
 * room's first commit, so checking again after the read closes the race. */
static int valkey_last_id(struct broker *base, const char *room, uint64_t *out)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    uint64_t stored = 0;
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    uint64_t *delivered = strmap_get(b->delivered, room);
    pthread_mutex_unlock(&b->lock);
    if (!delivered)
        rc = store_last_id(b->deps.store, room, &stored);
    pthread_mutex_lock(&b->lock);
    delivered = strmap_get(b->delivered, room);
    *out = delivered ? *delivered : stored;
    pthread_mutex_unlock(&b->lock);
    return delivered ? 0 : rc;
}

static bool valkey_is_ready(struct broker *base, char *why, size_t whylen)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    pthread_mutex_lock(&b->lock);
    bool ready = false;
    if (b->draining)
        snprintf(why, whylen, "shutting down");
    else if (!b->pub_up)
        snprintf(why, whylen, "valkey unreachable: %s", b->pub_why);
    else if (!b->sub_up)
        snprintf(why, whylen, "valkey unreachable: %s", b->sub_why);
    else
        ready = true;
    pthread_mutex_unlock(&b->lock);
    if (ready && !store_is_ready(b->deps.store)) {
        snprintf(why, whylen, "store is not open");
        ready = false;
    }
    return ready;
}

static void valkey_drain(struct broker *base)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    pthread_mutex_lock(&b->lock);
    b->draining = true;
    pthread_mutex_unlock(&b->lock);
}

/* Finish queued publishes (their callbacks run), stop both threads, wait for
 * the store callbacks, close everything. */
static void valkey_free(struct broker *base)
{
    struct broker_valkey *b = (struct broker_valkey *)base;
    pthread_mutex_lock(&b->lock);
    b->draining = true;
    b->stopping = true;
    pthread_cond_broadcast(&b->work);
    pthread_cond_broadcast(&b->wake);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->publisher_thread, NULL);
    pthread_join(b->subscriber_thread, NULL);

    pthread_mutex_lock(&b->lock);
    while (b->store_in_flight > 0)
        pthread_cond_wait(&b->settled, &b->lock);
    b->pub_up = false; /* late presence notices are refused from here on */
    struct job *left = take_all_locked(b);
    struct job *accepted = take_overdue_locked(b, INT64_MAX);
    pthread_mutex_unlock(&b->lock);
    fail_jobs(left);            /* only notices queued after the publisher ended */
    complete_jobs(b, accepted); /* Valkey has them: the next start stores them */
    if (b->unstored.count > 0)
        log_msg(LOG_ERROR, "broker_unstored_at_exit", "messages=%zu", b->unstored.count);
    msg_list_dispose(&b->unstored);

    valkey_close(b->pub.conn);
    lazy_conn_close(&b->query);
    strmap_free(b->sub.last_seen);
    strmap_free(b->sub.nodes);
    strmap_free(b->delivered);
    strmap_free(b->awaiting);
    pthread_mutex_destroy(&b->query_lock);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->wake);
    pthread_cond_destroy(&b->settled);
    pthread_mutex_destroy(&b->lock);
    atomic_store(&b->deps.metrics->broker_connected, 0);
    free(b);
}

static const struct broker_ops valkey_ops = {
    .name = "valkey",
    .publish = valkey_publish,
    .replay = valkey_replay,
    .last_id = valkey_last_id,
    .is_ready = valkey_is_ready,
    .drain = valkey_drain,
    .presence_changed = valkey_presence_changed,
    .typing = valkey_typing,
    .free = valkey_free,
};

/* ---------------------------------------------------------------- create */

static void options_from_config(struct valkey_options *opts, const struct config *cfg)
{
    *opts = (struct valkey_options){
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .username = cfg->redis_username,
        .password = cfg->redis_password,
        .tls = cfg->redis_tls != 0, /* config_load resolved "auto" */
        .ca_file = cfg->redis_ca_file,
        .connect_timeout_ms = cfg->redis_timeout_ms,
        .command_timeout_ms = cfg->redis_timeout_ms,
    };
}

struct broker *broker_valkey_create(const struct broker_deps *deps, char *err, size_t errlen)
{
    const struct config *cfg = deps->config;
    if (!cfg->redis_host || !cfg->node_id) {
        snprintf(err, errlen, "cluster mode needs a Valkey host and a node id");
        return NULL;
    }
    struct broker_valkey *b = xcalloc(1, sizeof(*b));
    b->base.ops = &valkey_ops;
    b->deps = *deps;
    b->node_id = cfg->node_id;
    options_from_config(&b->opts, cfg);
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->query_lock, NULL);
    util_cond_init_monotonic(&b->work);
    util_cond_init_monotonic(&b->wake);
    pthread_cond_init(&b->settled, NULL);
    snprintf(b->pub_why, sizeof(b->pub_why), "connecting");
    snprintf(b->sub_why, sizeof(b->sub_why), "connecting");
    unsigned seed = (unsigned)util_mono_ns() ^ (unsigned)getpid();
    b->pub.backoff.seed = seed;
    b->sub.backoff.seed = seed * 2654435761u;
    b->sub.last_seen = strmap_create(free);
    b->delivered = strmap_create(free);
    b->awaiting = strmap_create(job_list_free);
    b->sub.nodes = strmap_create(remote_node_free);
    atomic_store(&deps->metrics->broker_connected, 0);
    if (pthread_create(&b->publisher_thread, NULL, publisher_main, b) != 0)
        abort(); /* like xmalloc: out of resources at start-up */
    if (pthread_create(&b->subscriber_thread, NULL, subscriber_main, b) != 0)
        abort();
    log_msg(LOG_INFO, "broker_started", "mode=cluster host=%s port=%d tls=%s node=%s",
            log_value(b->opts.host), b->opts.port, b->opts.tls ? "on" : "off",
            log_value(b->node_id));
    return &b->base;
}
