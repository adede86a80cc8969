/* Unit tests for hub, through real event loops over socketpair(AF_UNIX)
 * sockets. The test holds each client end (test_ws.h); the connection's
 * handler runs small text commands ("hello alice", "join r 5", "leave r",
 * "typing r") on the loop thread, as ws.c would, and hands drains to
 * hub_conn_drained. History is an in-memory array. Covered: joined (last_id,
 * members), fan-out to one room only, presence local and remote, the cluster
 * listener, a replay in id order before live messages, a replay larger than
 * the queue arriving whole in pages, messages delivered during a replay
 * neither lost nor duplicated, live frames, presence and a second join while
 * replay pages fill the queue, re-joining without a replay, the
 * rooms-per-connection limit. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "hub.h"
#include "loop.h"
#include "metrics.h"
#include "proto.h"
#include "test_help.h"
#include "test_ws.h"
#include "util.h"

/* ---------------------------------------------------------------- history stub */

/* Every stored message, each room's in ascending id order. */
static struct {
    pthread_mutex_t lock;
    struct chat_msg **msgs;
    size_t count;
    size_t cap;
    int replay_calls;
    int incomplete_call; /* this replay call (1-based) answers nothing, incomplete */
} hist = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void hist_add(const char *room, uint64_t id, const char *text)
{
    struct chat_msg *m = chat_msg_create(room, "poster", text, NULL);
    m->id = id;
    m->ts = 1700000000000 + (int64_t)id;
    pthread_mutex_lock(&hist.lock);
    UTIL_GROW(hist.msgs, hist.count, hist.cap);
    hist.msgs[hist.count++] = m;
    pthread_mutex_unlock(&hist.lock);
}

static void hist_clear(void)
{
    pthread_mutex_lock(&hist.lock);
    for (size_t i = 0; i < hist.count; i++)
        chat_msg_free(hist.msgs[i]);
    free(hist.msgs);
    hist.msgs = NULL;
    hist.count = hist.cap = 0;
    hist.replay_calls = 0;
    hist.incomplete_call = 0;
    pthread_mutex_unlock(&hist.lock);
}

static int hist_replay_calls(void)
{
    pthread_mutex_lock(&hist.lock);
    int n = hist.replay_calls;
    pthread_mutex_unlock(&hist.lock);
    return n;
}

static int hist_last_id(struct broker *broker, const char *room, uint64_t *out)
{
    (void)broker;
    *out = 0;
    pthread_mutex_lock(&hist.lock);
    for (size_t i = 0; i < hist.count; i++) {
        if (strcmp(hist.msgs[i]->room, room) == 0 && hist.msgs[i]->id > *out)
            *out = hist.msgs[i]->id;
    }
    pthread_mutex_unlock(&hist.lock);
    return 0;
}

static int hist_replay(struct broker *broker, const char *room, uint64_t after, uint64_t upto,
                       int limit, struct chat_msg ***out, size_t *count, bool *complete)
{
    (void)broker;
    pthread_mutex_lock(&hist.lock);
    hist.replay_calls++;
    *out = xcalloc((size_t)limit + 1, sizeof(**out));
    *count = 0;
    *complete = hist.replay_calls != hist.incomplete_call;
    for (size_t i = 0; *complete && i < hist.count && *count < (size_t)limit; i++) {
        const struct chat_msg *m = hist.msgs[i];
        if (strcmp(m->room, room) == 0 && m->id > after && m->id <= upto)
            (*out)[(*count)++] = chat_msg_clone(m);
    }
    pthread_mutex_unlock(&hist.lock);
    return 0;
}

/* The broker the hub sees: history from the stub above; what it is told of
 * presence and typing goes to the heard log (test_cluster_listener). */
static void heard_presence(struct broker *broker, const char *room, const char *user, bool online);
static void heard_typing(struct broker *broker, const char *room, const char *user);

static const struct broker_ops fake_broker_ops = {
    .name = "fake",
    .replay = hist_replay,
    .last_id = hist_last_id,
    .presence_changed = heard_presence,
    .typing = heard_typing,
};
static struct broker fake_broker = {&fake_broker_ops};

/* ---------------------------------------------------------------- fixture */

/* What a test runs against; what the handlers write is under test_sync.lock
 * (test_ws.h). */
static struct {
    struct config *cfg; /* per test: loops of a failed test may still read theirs */
    struct metrics *metrics;
    struct loops *loops;
    struct hub *hub;
} fx;

/* One connection: the client end the test drives and what its handler saw. */
struct peer {
    struct client ws; /* the test's end */

    /* under test_sync.lock, written on the loop thread */
    struct conn *conn;   /* bound by the first message, referenced until peer_free */
    struct hub_conn *hc; /* made on the first message, freed in on_closed */
    int commands;        /* commands run */
    int last_rc;         /* what the last one returned */
    int drains;          /* on_drain calls */
    bool closed;         /* on_closed ran */
};

/* Defaults into a fresh fx.cfg; the test adjusts it, then calls fx_start. */
static void fx_init(void)
{
    fixture_once();
    fx.cfg = fixture_config(2);
    fx.metrics = metrics_create();
    fx.loops = NULL;
    fx.hub = NULL;
    hist_clear();
}

static bool fx_start(void)
{
    fx.hub = hub_create(fx.cfg, fx.metrics);
    hub_set_broker(fx.hub, &fake_broker);
    fx.loops = fixture_loops(fx.cfg, fx.metrics);
    return fx.loops != NULL;
}

/* Every peer must be freed (closed) first. */
static void fx_stop(void)
{
    loops_free(fx.loops);
    hub_free(fx.hub);
    metrics_free(fx.metrics);
    free(fx.cfg);
    hist_clear();
    fx.loops = NULL;
    fx.hub = NULL;
    fx.metrics = NULL;
    fx.cfg = NULL;
}

/* ---------------------------------------------------------------- handler (loop thread) */

/* Run one command of the test's little language on the loop thread. */
static int run_command(struct hub_conn *hc, struct conn *conn, const char *cmd)
{
    char verb[16] = "", arg[128] = "";
    unsigned long long since = 0;
    int n = sscanf(cmd, "%15s %127s %llu", verb, arg, &since);
    uint64_t since64 = since;
    if (n >= 2 && strcmp(verb, "hello") == 0) {
        hub_conn_set_user(hc, arg, NULL, NULL);
        conn_hello_done(conn);
        return 0;
    }
    if (n >= 2 && strcmp(verb, "join") == 0)
        return hub_join(fx.hub, hc, arg, n == 3 ? &since64 : NULL, NULL);
    if (n == 2 && strcmp(verb, "leave") == 0)
        return hub_leave(fx.hub, hc, arg);
    if (n == 2 && strcmp(verb, "typing") == 0) {
        hub_typing(fx.hub, hc, arg);
        return 0;
    }
    return -EINVAL;
}

static int on_message(void *ctx, struct conn *conn, const char *data, size_t len)
{
    struct peer *p = ctx;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%.*s", (int)len, data);
    pthread_mutex_lock(&test_sync.lock);
    if (!p->conn) {
        conn_ref(conn);
        p->conn = conn;
        p->hc = hub_conn_create(fx.hub, conn);
    }
    struct hub_conn *hc = p->hc;
    pthread_mutex_unlock(&test_sync.lock);
    int rc = run_command(hc, conn, cmd); /* no test lock held: the hub calls back into loop */
    pthread_mutex_lock(&test_sync.lock);
    p->last_rc = rc;
    p->commands++;
    pthread_cond_broadcast(&test_sync.cond);
    pthread_mutex_unlock(&test_sync.lock);
    return 0;
}

static void on_drain(void *ctx, struct conn *conn)
{
    struct peer *p = ctx;
    (void)conn;
    pthread_mutex_lock(&test_sync.lock);
    struct hub_conn *hc = p->hc;
    p->drains++;
    pthread_mutex_unlock(&test_sync.lock);
    if (hc)
        hub_conn_drained(hc);
}

static void on_closed(void *ctx, struct conn *conn)
{
    struct peer *p = ctx;
    (void)conn;
    pthread_mutex_lock(&test_sync.lock);
    struct hub_conn *hc = p->hc;
    p->hc = NULL;
    pthread_mutex_unlock(&test_sync.lock);
    if (hc)
        hub_conn_closed(hc);
    pthread_mutex_lock(&test_sync.lock);
    p->closed = true;
    pthread_cond_broadcast(&test_sync.cond);
    pthread_mutex_unlock(&test_sync.lock);
}

static const struct conn_handler handler = {
    .on_message = on_message,
    .on_drain = on_drain,
    .on_closed = on_closed,
};

/* ---------------------------------------------------------------- client side */

/* Send a command and wait until the loop ran it: its return value, or
 * INT_MIN when it did not run in time. */
static int command(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int command(struct peer *p, const char *fmt, ...)
{
    char cmd[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int before = LOCKED(p->commands);
    if (!client_text(&p->ws, cmd) || !WAIT_UNTIL(p->commands > before)) {
        fprintf(stderr, "command \"%s\" did not run\n", cmd);
        return INT_MIN;
    }
    return LOCKED(p->last_rc);
}

/* The next frame as JSON (free with cJSON_Delete), or NULL with the reason printed. */
static cJSON *next_json(struct peer *p)
{
    struct frame f;
    int rc = read_frame(&p->ws, &f);
    if (rc != 1) {
        fprintf(stderr, "no frame: %s\n", rc == 0 ? "timeout" : "EOF or error");
        return NULL;
    }
    cJSON *obj = NULL;
    if (f.opcode == OP_TEXT)
        obj = cJSON_ParseWithLength(f.data, f.len);
    if (!obj)
        fprintf(stderr, "not a JSON text frame: opcode %d code %d \"%.120s\"\n", f.opcode,
                f.close_code, f.data);
    frame_dispose(&f);
    return obj;
}

static const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* True when obj has the string want at key. */
static bool json_str_is(const cJSON *obj, const char *key, const char *want)
{
    const char *s = json_str(obj, key);
    return s && strcmp(s, want) == 0;
}

static double json_num(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(item) ? item->valuedouble : -1;
}

static void print_unexpected(const char *want, const cJSON *obj)
{
    char *text = cJSON_PrintUnformatted(obj);
    fprintf(stderr, "expected %s, got %.200s\n", want, text);
    free(text);
}

/* The next frame is of type; returned for more checks (cJSON_Delete it). */
static cJSON *expect_type(struct peer *p, const char *type)
{
    cJSON *obj = next_json(p);
    if (obj && !json_str_is(obj, "type", type)) {
        print_unexpected(type, obj);
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* The next frame is the message id of room. */
static bool expect_message(struct peer *p, const char *room, uint64_t id)
{
    cJSON *obj = next_json(p);
    bool ok = obj && json_str_is(obj, "type", "message") && json_str_is(obj, "room", room) &&
              json_num(obj, "id") == (double)id;
    if (obj && !ok) {
        char want[96];
        snprintf(want, sizeof(want), "message %s/%llu", room, (unsigned long long)id);
        print_unexpected(want, obj);
    }
    cJSON_Delete(obj);
    return ok;
}

/* The next frame is `joined` of room with last_id, members (comma-separated,
 * sorted) and recovered. */
static bool expect_joined(struct peer *p, const char *room, uint64_t last_id, const char *members,
                          bool recovered)
{
    cJSON *obj = expect_type(p, "joined");
    if (!obj)
        return false;
    struct util_buf names;
    util_buf_init(&names);
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, "members"))
    {
        util_buf_appendf(&names, "%s%s", names.len ? "," : "",
                         cJSON_IsString(item) ? item->valuestring : "?");
    }
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(obj, "recovered");
    bool ok = json_str_is(obj, "room", room) && json_num(obj, "last_id") == (double)last_id &&
              names.len > 0 && strcmp(names.data, members) == 0 && cJSON_IsBool(rec) &&
              cJSON_IsTrue(rec) == recovered;
    if (!ok) {
        char want[160];
        snprintf(want, sizeof(want), "joined %s last_id=%llu members=%s recovered=%d", room,
                 (unsigned long long)last_id, members, recovered);
        print_unexpected(want, obj);
    }
    util_buf_dispose(&names);
    cJSON_Delete(obj);
    return ok;
}

/* The next frame is presence (or typing, event NULL) of user in room. */
static bool expect_event(struct peer *p, const char *type, const char *room, const char *user,
                         const char *event)
{
    cJSON *obj = expect_type(p, type);
    if (!obj)
        return false;
    bool ok = json_str_is(obj, "room", room) && json_str_is(obj, "user", user) &&
              (!event || json_str_is(obj, "event", event));
    if (!ok) {
        char want[128];
        snprintf(want, sizeof(want), "%s %s %s %s", type, room, user, event ? event : "");
        print_unexpected(want, obj);
    }
    cJSON_Delete(obj);
    return ok;
}

/* ---------------------------------------------------------------- peers */

/* A connection adopted by the loops; sndbuf > 0 shrinks the server's send
 * buffer so that the queue, not the socket, holds what the client has not read. */
static struct peer *peer_open_buf(int sndbuf)
{
    struct peer *p = xcalloc(1, sizeof(*p));
    client_init(&p->ws);
    if (loops_admit(fx.loops, "127.0.0.1") != 0)
        return NULL;
    int sock = client_connect(&p->ws, sndbuf);
    if (sock < 0)
        return NULL;
    loops_adopt(fx.loops, sock, NULL, NULL, 0, "127.0.0.1", &handler, p);
    return p;
}

/* An adopted connection of user (after hello). NULL on failure. */
static struct peer *peer_user_buf(const char *user, int sndbuf)
{
    struct peer *p = peer_open_buf(sndbuf);
    if (!p || command(p, "hello %s", user) != 0)
        return NULL;
    return p;
}

static struct peer *peer_user(const char *user)
{
    return peer_user_buf(user, 0);
}

static struct hub_conn *peer_hc(struct peer *p)
{
    return LOCKED(p->hc);
}

static int peer_drains(struct peer *p)
{
    return LOCKED(p->drains);
}

static bool peer_is_closed(struct peer *p)
{
    return LOCKED(p->closed);
}

/* Close the client end, wait for on_closed (the hub connection is gone then),
 * free. False when on_closed did not run in time (p is leaked then). */
static bool peer_free(struct peer *p)
{
    if (!p)
        return true;
    client_hang_up(&p->ws);
    if (!WAIT_UNTIL(p->closed))
        return false;
    conn_unref(p->conn);
    client_dispose(&p->ws);
    free(p);
    return true;
}

/* Store a message and fan it out, as the broker does. */
static void publish(const char *room, uint64_t id, const char *text)
{
    hist_add(room, id, text);
    struct chat_msg *m = chat_msg_create(room, "poster", text, NULL);
    m->id = id;
    m->ts = 1700000000000 + (int64_t)id;
    hub_deliver(fx.hub, m);
    chat_msg_free(m);
}

/* Store n messages of room, ids from+1 .. from+n, each of text_len bytes. */
static void store_many(const char *room, uint64_t from, int n, size_t text_len)
{
    char *text = xmalloc(text_len + 1);
    memset(text, 'm', text_len);
    text[text_len] = '\0';
    for (int i = 1; i <= n; i++)
        hist_add(room, from + (uint64_t)i, text);
    free(text);
}

/* ---------------------------------------------------------------- membership */

static int test_join_answers_joined(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    store_many("r", 0, 5, 10);
    struct peer *alice = peer_user("alice");
    TEST_ASSERT(alice);
    TEST_ASSERT_INT(command(alice, "join r"), 0);
    TEST_ASSERT(expect_joined(alice, "r", 5, "alice", true));
    TEST_ASSERT(hub_is_member(fx.hub, peer_hc(alice), "r"));
    TEST_ASSERT(hub_conn_socket(peer_hc(alice)) == alice->conn);

    struct peer *bob = peer_user("bob");
    TEST_ASSERT(bob);
    TEST_ASSERT_INT(command(bob, "join r"), 0);
    TEST_ASSERT(expect_joined(bob, "r", 5, "alice,bob", true));
    TEST_ASSERT(expect_event(alice, "presence", "r", "bob", "join"));

    char **names, **rooms;
    size_t count, *online;
    TEST_ASSERT_INT(hub_room_members(fx.hub, "r", &names, &count), 0);
    TEST_ASSERT_INT(count, 2);
    TEST_ASSERT_STR(names[0], "alice");
    TEST_ASSERT_STR(names[1], "bob");
    hub_free_names(names, count);
    TEST_ASSERT_INT(hub_list_rooms(fx.hub, &rooms, &online, &count), 0);
    TEST_ASSERT_INT(count, 1);
    TEST_ASSERT_STR(rooms[0], "r");
    TEST_ASSERT_INT(online[0], 2);
    hub_free_names(rooms, count);
    free(online);

    TEST_ASSERT_INT(command(bob, "leave r"), 0);
    TEST_ASSERT(expect_event(alice, "presence", "r", "bob", "leave"));
    TEST_ASSERT_INT(command(bob, "leave r"), -ENOENT);
    TEST_ASSERT(!hub_is_member(fx.hub, peer_hc(bob), "r"));
    TEST_ASSERT(peer_free(bob));
    TEST_ASSERT(peer_free(alice));
    TEST_ASSERT_INT(hub_room_count(fx.hub), 0); /* the last member left: the room is gone */
    fx_stop();
    return 0;
}

/* A ban takes every connection of its user (in any ASCII case) out of the
 * room with left {reason: banned}, after the update; the others stay. */
static int test_ban_sends_user_away(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *a = peer_user("alice"), *b1 = peer_user("bob"), *b2 = peer_user("bob");
    TEST_ASSERT(a && b1 && b2);
    TEST_ASSERT_INT(command(a, "join r"), 0);
    TEST_ASSERT(expect_joined(a, "r", 0, "alice", true));
    TEST_ASSERT_INT(command(b1, "join r"), 0);
    TEST_ASSERT(expect_joined(b1, "r", 0, "alice,bob", true));
    TEST_ASSERT(expect_event(a, "presence", "r", "bob", "join"));
    TEST_ASSERT_INT(command(b2, "join r"), 0);
    TEST_ASSERT(expect_joined(b2, "r", 0, "alice,bob", true));

    struct chat_msg *ban = chat_msg_create("r", "maude", "{\"member\":\"BOB\"}", NULL);
    ban->kind = CHAT_BAN;
    ban->id = 1;
    ban->ts = 1700000000001;
    hub_deliver(fx.hub, ban);
    chat_msg_free(ban);
    struct peer *banned[] = {b1, b2};
    for (size_t i = 0; i < 2; i++) {
        cJSON *obj = expect_type(banned[i], "update");
        TEST_ASSERT(obj && json_str_is(obj, "kind", "ban") && json_str_is(obj, "member", "BOB"));
        TEST_ASSERT(json_str_is(obj, "user", "maude"));
        cJSON_Delete(obj);
        obj = expect_type(banned[i], "left");
        TEST_ASSERT(obj && json_str_is(obj, "room", "r") && json_str_is(obj, "reason", "banned"));
        cJSON_Delete(obj);
        TEST_ASSERT(!hub_is_member(fx.hub, peer_hc(banned[i]), "r"));
    }
    cJSON *obj = expect_type(a, "update");
    TEST_ASSERT(obj && json_str_is(obj, "kind", "ban"));
    cJSON_Delete(obj);
    TEST_ASSERT(expect_event(a, "presence", "r", "bob", "leave"));
    TEST_ASSERT(hub_is_member(fx.hub, peer_hc(a), "r"));
    TEST_ASSERT(peer_free(a) && peer_free(b1) && peer_free(b2));
    fx_stop();
    return 0;
}

static int test_deliver_fans_out_to_room(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *a = peer_user("a"), *b = peer_user("b"), *c = peer_user("c");
    TEST_ASSERT(a && b && c);
    TEST_ASSERT_INT(command(a, "join r"), 0);
    TEST_ASSERT(expect_joined(a, "r", 0, "a", true));
    TEST_ASSERT_INT(command(b, "join r"), 0);
    TEST_ASSERT(expect_joined(b, "r", 0, "a,b", true));
    TEST_ASSERT(expect_event(a, "presence", "r", "b", "join"));
    TEST_ASSERT_INT(command(c, "join s"), 0);
    TEST_ASSERT(expect_joined(c, "s", 0, "c", true));

    publish("r", 1, "hello-r");
    publish("nobody-here", 1, "lost");
    publish("s", 1, "hello-s");
    publish("r", 2, "again-r");
    cJSON *obj = expect_type(a, "message");
    TEST_ASSERT(obj);
    TEST_ASSERT_STR(json_str(obj, "text"), "hello-r");
    TEST_ASSERT_STR(json_str(obj, "user"), "poster");
    TEST_ASSERT(json_num(obj, "id") == 1);
    cJSON_Delete(obj);
    TEST_ASSERT(expect_message(a, "r", 2)); /* and not s/1 between */
    TEST_ASSERT(expect_message(b, "r", 1));
    TEST_ASSERT(expect_message(b, "r", 2));
    TEST_ASSERT(expect_message(c, "s", 1)); /* and not r/1 before */
    publish("s", 2, "sentinel");
    TEST_ASSERT(expect_message(c, "s", 2)); /* nor r/2 */
    TEST_ASSERT_INT(atomic_load(&fx.metrics->messages_delivered), 2 + 0 + 1 + 2 + 1);
    TEST_ASSERT(peer_free(a) && peer_free(b) && peer_free(c));
    fx_stop();
    return 0;
}

/* Local presence, another node's users (hub_remote_presence) and typing. */
static int test_presence_local_and_remote(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *alice = peer_user("alice"), *bob1 = peer_user("bob"), *bob2 = peer_user("bob");
    TEST_ASSERT(alice && bob1 && bob2);
    TEST_ASSERT_INT(command(alice, "join r"), 0);
    TEST_ASSERT(expect_joined(alice, "r", 0, "alice", true));
    TEST_ASSERT_INT(command(bob1, "join r"), 0);
    TEST_ASSERT(expect_joined(bob1, "r", 0, "alice,bob", true));
    TEST_ASSERT_INT(command(bob2, "join r"), 0); /* bob's second connection: no presence */
    TEST_ASSERT(expect_joined(bob2, "r", 0, "alice,bob", true));
    TEST_ASSERT(expect_event(alice, "presence", "r", "bob", "join"));

    hub_remote_presence(fx.hub, "r", "carol", +1);
    TEST_ASSERT(expect_event(alice, "presence", "r", "carol", "join"));
    TEST_ASSERT(expect_event(bob2, "presence", "r", "carol", "join"));
    hub_remote_presence(fx.hub, "r", "carol", +1); /* a second node: no news */
    hub_remote_typing(fx.hub, "r", "carol");
    TEST_ASSERT(expect_event(alice, "typing", "r", "carol", NULL));
    char **names;
    size_t count;
    hub_room_members(fx.hub, "r", &names, &count);
    TEST_ASSERT_INT(count, 3);
    TEST_ASSERT_STR(names[0], "alice");
    TEST_ASSERT_STR(names[1], "bob");
    TEST_ASSERT_STR(names[2], "carol");
    hub_free_names(names, count);

    TEST_ASSERT_INT(command(alice, "typing r"), 0);
    TEST_ASSERT(expect_event(bob1, "presence", "r", "carol", "join"));
    TEST_ASSERT(expect_event(bob1, "typing", "r", "carol", NULL));
    TEST_ASSERT(expect_event(bob1, "typing", "r", "alice", NULL));
    TEST_ASSERT_INT(command(bob1, "leave r"), 0);
    TEST_ASSERT_INT(command(bob2, "leave r"), 0);
    /* one leave once bob's last connection went, and no second bob join before it */
    TEST_ASSERT(expect_event(alice, "presence", "r", "bob", "leave"));
    hub_remote_presence(fx.hub, "r", "carol", -1);
    hub_remote_presence(fx.hub, "r", "carol", -1);
    TEST_ASSERT(expect_event(alice, "presence", "r", "carol", "leave"));
    hub_room_members(fx.hub, "r", &names, &count);
    TEST_ASSERT_INT(count, 1);
    TEST_ASSERT_STR(names[0], "alice");
    hub_free_names(names, count);

    /* a remote user in a room with no local member keeps the room listed */
    hub_remote_presence(fx.hub, "far", "dave", +1);
    TEST_ASSERT_INT(hub_room_count(fx.hub), 2);
    hub_remote_presence(fx.hub, "far", "dave", -1);
    TEST_ASSERT_INT(hub_room_count(fx.hub), 1);
    TEST_ASSERT(peer_free(alice) && peer_free(bob1) && peer_free(bob2));
    fx_stop();
    return 0;
}

/* What the cluster listener heard. */
static struct {
    pthread_mutex_t lock;
    struct util_buf log; /* "+room/user;" "-room/user;" "~room/user;" */
} heard = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void heard_presence(struct broker *broker, const char *room, const char *user, bool online)
{
    (void)broker;
    pthread_mutex_lock(&heard.lock);
    util_buf_appendf(&heard.log, "%c%s/%s;", online ? '+' : '-', room, user);
    pthread_mutex_unlock(&heard.lock);
}

static void heard_typing(struct broker *broker, const char *room, const char *user)
{
    (void)broker;
    pthread_mutex_lock(&heard.lock);
    util_buf_appendf(&heard.log, "~%s/%s;", room, user);
    pthread_mutex_unlock(&heard.lock);
}

/* The listener heard exactly one of the two logs (alt may be NULL). */
static bool heard_either(const char *expected, const char *alt)
{
    pthread_mutex_lock(&heard.lock);
    const char *got = heard.log.len ? heard.log.data : "";
    bool ok = strcmp(got, expected) == 0 || (alt && strcmp(got, alt) == 0);
    if (!ok)
        fprintf(stderr, "listener heard \"%s\", expected \"%s\"\n", got, expected);
    pthread_mutex_unlock(&heard.lock);
    return ok;
}

static bool heard_is(const char *expected)
{
    return heard_either(expected, NULL);
}

/* The broker learns of a user's first connection in a room and of the last
 * one leaving, and of local typing; the local snapshot lists (room, user). */
static int test_cluster_listener(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    util_buf_dispose(&heard.log);
    util_buf_init(&heard.log);
    struct peer *a1 = peer_user("alice"), *a2 = peer_user("alice"), *bob = peer_user("bob");
    TEST_ASSERT(a1 && a2 && bob);
    TEST_ASSERT_INT(command(a1, "join r"), 0);
    TEST_ASSERT_INT(command(a2, "join r"), 0);
    TEST_ASSERT_INT(command(bob, "join r"), 0);
    TEST_ASSERT_INT(command(bob, "join s"), 0);
    TEST_ASSERT(heard_is("+r/alice;+r/bob;+s/bob;"));
    TEST_ASSERT(expect_joined(bob, "r", 0, "alice,bob", true));
    TEST_ASSERT(expect_joined(bob, "s", 0, "bob", true));

    TEST_ASSERT_INT(command(a1, "typing r"), 0);
    TEST_ASSERT(heard_is("+r/alice;+r/bob;+s/bob;~r/alice;"));
    TEST_ASSERT(expect_event(bob, "typing", "r", "alice", NULL));
    TEST_ASSERT_INT(command(a1, "typing s"), 0); /* not a member of s: nothing */

    struct hub_presence *entries;
    size_t count;
    TEST_ASSERT_INT(hub_local_presence(fx.hub, &entries, &count), 0);
    TEST_ASSERT_INT(count, 3); /* r/alice once, r/bob, s/bob */
    int r_alice = 0, r_bob = 0, s_bob = 0;
    for (size_t i = 0; i < count; i++) {
        r_alice += strcmp(entries[i].room, "r") == 0 && strcmp(entries[i].user, "alice") == 0;
        r_bob += strcmp(entries[i].room, "r") == 0 && strcmp(entries[i].user, "bob") == 0;
        s_bob += strcmp(entries[i].room, "s") == 0 && strcmp(entries[i].user, "bob") == 0;
    }
    hub_free_presence(entries, count);
    TEST_ASSERT(r_alice == 1 && r_bob == 1 && s_bob == 1);

    /* remote presence is not echoed back to the cluster */
    hub_remote_presence(fx.hub, "r", "carol", +1);
    TEST_ASSERT(expect_event(bob, "presence", "r", "carol", "join"));
    TEST_ASSERT_INT(command(a1, "leave r"), 0); /* alice is still there through a2 */
    TEST_ASSERT(peer_free(a2));                 /* her last connection closes */
    TEST_ASSERT(heard_is("+r/alice;+r/bob;+s/bob;~r/alice;-r/alice;"));
    TEST_ASSERT(expect_event(bob, "presence", "r", "alice", "leave"));
    TEST_ASSERT(peer_free(bob));
    TEST_ASSERT(heard_either("+r/alice;+r/bob;+s/bob;~r/alice;-r/alice;-r/bob;-s/bob;",
                             "+r/alice;+r/bob;+s/bob;~r/alice;-r/alice;-s/bob;-r/bob;"));
    TEST_ASSERT(peer_free(a1));
    hub_remote_presence(fx.hub, "r", "carol", -1);
    fx_stop();
    util_buf_dispose(&heard.log);
    return 0;
}

static int test_room_limit_and_rejoin(void)
{
    fx_init();
    fx.cfg->max_rooms_per_conn = 2;
    TEST_ASSERT(fx_start());
    store_many("r1", 0, 3, 10);
    struct peer *p = peer_user("a");
    TEST_ASSERT(p);
    TEST_ASSERT_INT(command(p, "join r1 0"), 0);
    TEST_ASSERT(expect_joined(p, "r1", 3, "a", true));
    for (uint64_t id = 1; id <= 3; id++)
        TEST_ASSERT(expect_message(p, "r1", id));
    TEST_ASSERT_INT(command(p, "join r2"), 0);
    TEST_ASSERT(expect_joined(p, "r2", 0, "a", true));
    TEST_ASSERT_INT(command(p, "join r3"), -E2BIG);
    TEST_ASSERT(!hub_is_member(fx.hub, peer_hc(p), "r3"));

    /* re-joining is not a new room, and answers joined without a replay */
    int replays = hist_replay_calls();
    TEST_ASSERT_INT(command(p, "join r1 0"), 0);
    TEST_ASSERT(expect_joined(p, "r1", 3, "a", true));
    TEST_ASSERT_INT(hist_replay_calls(), replays);
    publish("r1", 4, "live");
    TEST_ASSERT(expect_message(p, "r1", 4)); /* no second copy of 1..3 before it */

    TEST_ASSERT_INT(command(p, "leave r3"), -ENOENT);
    TEST_ASSERT_INT(command(p, "leave r2"), 0);
    TEST_ASSERT(!hub_is_member(fx.hub, peer_hc(p), "r2"));
    TEST_ASSERT_INT(hub_room_count(fx.hub), 1);
    TEST_ASSERT_INT(command(p, "join r3"), 0);
    TEST_ASSERT(expect_joined(p, "r3", 0, "a", true));
    TEST_ASSERT(peer_free(p));
    TEST_ASSERT_INT(hub_room_count(fx.hub), 0);
    fx_stop();
    return 0;
}

/* ---------------------------------------------------------------- replay */

static int test_replay_before_live(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    store_many("r", 0, 10, 20);
    struct peer *p = peer_user("a");
    TEST_ASSERT(p);
    TEST_ASSERT_INT(command(p, "join r 4"), 0);
    publish("r", 11, "live-eleven");
    TEST_ASSERT(expect_joined(p, "r", 10, "a", true));
    for (uint64_t id = 5; id <= 11; id++)
        TEST_ASSERT(expect_message(p, "r", id));
    publish("r", 12, "live-twelve");
    TEST_ASSERT(expect_message(p, "r", 12));

    /* since == last_id: nothing to replay */
    struct peer *q = peer_user("b");
    TEST_ASSERT(q);
    TEST_ASSERT_INT(command(q, "join r 12"), 0);
    TEST_ASSERT(expect_joined(q, "r", 12, "a,b", true));
    publish("r", 13, "live-thirteen");
    TEST_ASSERT(expect_message(q, "r", 13));
    TEST_ASSERT(peer_free(p) && peer_free(q));
    fx_stop();
    return 0;
}

/* More missed than replay_max: joined says recovered false, and no replay. */
static int test_replay_too_far_back(void)
{
    fx_init();
    fx.cfg->replay_max = 5;
    TEST_ASSERT(fx_start());
    store_many("r", 0, 10, 20);
    struct peer *p = peer_user("a");
    TEST_ASSERT(p);
    TEST_ASSERT_INT(command(p, "join r 2"), 0);
    TEST_ASSERT(expect_joined(p, "r", 10, "a", false));
    publish("r", 11, "live");
    TEST_ASSERT(expect_message(p, "r", 11));
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* Read the messages of room with ids from..to, in order, each once. */
static bool expect_run(struct peer *p, const char *room, uint64_t from, uint64_t to)
{
    for (uint64_t id = from; id <= to; id++) {
        if (!expect_message(p, room, id))
            return false;
    }
    return true;
}

/* How the replay tests start: queues capped at outbound_max_kib, in_r and in_s
 * messages of 1 KB stored in r and s, and user a, behind a small socket
 * buffer, joined to r from 0. NULL on failure, with the reason printed. */
static struct peer *replay_start(int outbound_max_kib, int in_r, int in_s)
{
    fx_init();
    fx.cfg->outbound_max_kib = outbound_max_kib;
    if (!fx_start())
        return NULL;
    store_many("r", 0, in_r, 1000);
    store_many("s", 0, in_s, 1000);
    struct peer *p = peer_user_buf("a", 8192);
    if (!p) {
        fprintf(stderr, "user a did not connect\n");
        return NULL;
    }
    int rc = command(p, "join r 0");
    if (rc != 0) {
        fprintf(stderr, "join r 0: %d\n", rc);
        return NULL;
    }
    return p;
}

/* A replay far larger than the queue (16 KiB, 300 messages of 1 KB) arrives
 * whole, in order, without a close: pages follow the drains. */
static int test_replay_larger_than_queue(void)
{
    struct peer *p = replay_start(16, 300, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(expect_joined(p, "r", 300, "a", true));
    TEST_ASSERT(expect_run(p, "r", 1, 300));
    TEST_ASSERT(peer_drains(p) >= 300 / 64);
    TEST_ASSERT(hist_replay_calls() >= 300 / 64);
    publish("r", 301, "live");
    TEST_ASSERT(expect_message(p, "r", 301));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(!peer_is_closed(p));
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* Messages delivered while a replay is under way: the client reads a few
 * frames, the broker delivers one, and so on, through the replay and past
 * it. Every id arrives once, in order. The queue is large enough for a page,
 * so only the replay's bookkeeping is on trial here. */
static int test_deliver_during_replay(void)
{
    struct peer *p = replay_start(256, 300, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(expect_joined(p, "r", 300, "a", true));
    uint64_t next_publish = 301;
    for (uint64_t id = 1; id <= 400; id++) {
        TEST_ASSERT(expect_message(p, "r", id));
        if (id % 3 == 0 && next_publish <= 400) {
            publish("r", next_publish, "during");
            next_publish++;
        }
    }
    publish("r", 401, "after");
    TEST_ASSERT(expect_message(p, "r", 401));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

struct publisher {
    const char *room;
    uint64_t from;
    uint64_t to;
};

static void *publish_paced(void *arg)
{
    struct publisher *pub = arg;
    for (uint64_t id = pub->from; id <= pub->to; id++) {
        publish(pub->room, id, "concurrent");
        usleep(200);
    }
    return NULL;
}

/* The same with the broker on its own thread, as in the server. */
static int test_concurrent_deliver_during_replay(void)
{
    struct peer *p = replay_start(256, 300, 0);
    TEST_ASSERT(p);
    struct publisher pub = {"r", 301, 500};
    pthread_t thread;
    TEST_ASSERT_INT(pthread_create(&thread, NULL, publish_paced, &pub), 0);
    bool joined = expect_joined(p, "r", 300, "a", true);
    bool run = joined && expect_run(p, "r", 1, 500);
    pthread_join(thread, NULL);
    TEST_ASSERT(joined && run);
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* With the queue at its smallest (16 KiB), a live message that arrives
 * while the replay's last page is still queued goes out after it; the
 * connection is not taken for a slow consumer. */
static int test_live_message_behind_last_page(void)
{
    struct peer *p = replay_start(16, 40, 0); /* one page, 40 KB: over the cap by itself */
    TEST_ASSERT(p);
    publish("r", 41, "live");
    TEST_ASSERT(expect_joined(p, "r", 40, "a", true));
    TEST_ASSERT(expect_run(p, "r", 1, 41));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* A second room joined while the first one's replay fills the queue (a
 * reconnecting client re-joins all its rooms with since): its `joined` and
 * its replay follow, and both replays arrive whole. */
static int test_second_join_during_replay(void)
{
    struct peer *p = replay_start(16, 200, 200);
    TEST_ASSERT(p);
    TEST_ASSERT_INT(command(p, "join s 0"), 0);
    TEST_ASSERT(expect_joined(p, "r", 200, "a", true));
    /* r 1..200 and s 1..200 each in order, the `joined` of s before any s message */
    uint64_t next_r = 1, next_s = 1;
    bool joined_s = false;
    while (next_r <= 200 || next_s <= 200) {
        cJSON *obj = next_json(p);
        if (!obj)
            fprintf(stderr, "stopped before r/%llu s/%llu (joined s: %d, drains: %d)\n",
                    (unsigned long long)next_r, (unsigned long long)next_s, joined_s,
                    peer_drains(p));
        TEST_ASSERT(obj);
        const char *type = json_str(obj, "type"), *room = json_str(obj, "room");
        bool ok = type && room;
        if (ok && strcmp(type, "message") == 0) {
            bool in_r = strcmp(room, "r") == 0;
            uint64_t *next = in_r ? &next_r : &next_s;
            ok = json_num(obj, "id") == (double)*next && (in_r || joined_s);
            (*next)++;
        } else if (ok && strcmp(type, "joined") == 0) {
            ok = strcmp(room, "s") == 0 && !joined_s && json_num(obj, "last_id") == 200;
            joined_s = true;
        } else {
            ok = false;
        }
        if (!ok)
            print_unexpected("the replays of r and s", obj);
        cJSON_Delete(obj);
        TEST_ASSERT(ok);
    }
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* A client that never reads and loops leave + join with since 0 gets at most
 * one replay page queued: later joins find the queue backlogged and leave the
 * page to a drain that never comes. */
static int test_join_loop_without_reading(void)
{
    struct peer *p = replay_start(16, 200, 0);
    TEST_ASSERT(p);
    for (int i = 0; i < 30; i++) {
        TEST_ASSERT_INT(command(p, "leave r"), 0);
        TEST_ASSERT_INT(command(p, "join r 0"), 0);
    }
    /* one page (64) and the joined/left frames; 30 pages would be 1,920 */
    TEST_ASSERT(atomic_load(&fx.metrics->outbound_queued) < 64 + 2 * 31 + 8);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* A later replay page history cannot serve whole would leave a hole behind a
 * joined that said recovered: the connection is closed with 1011 after the
 * messages before the hole, and the client's re-join learns the truth. */
static int test_incomplete_page_closes(void)
{
    fx_init();
    fx.cfg->outbound_max_kib = 16;
    TEST_ASSERT(fx_start());
    store_many("r", 0, 200, 1000);
    pthread_mutex_lock(&hist.lock);
    hist.incomplete_call = 2;
    pthread_mutex_unlock(&hist.lock);
    struct peer *p = peer_user_buf("a", 8192);
    TEST_ASSERT(p);
    TEST_ASSERT_INT(command(p, "join r 0"), 0);
    TEST_ASSERT(expect_joined(p, "r", 200, "a", true));
    TEST_ASSERT(expect_run(p, "r", 1, 64));
    TEST_ASSERT(expect_close(&p->ws, PROTO_CLOSE_INTERNAL));
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* Another user joins while a replay fills the queue: the presence frame
 * arrives (somewhere in or after the replay), and the replay arrives whole. */
static int test_presence_during_replay(void)
{
    struct peer *p = replay_start(16, 200, 0);
    TEST_ASSERT(p);
    struct peer *b = peer_user("b");
    TEST_ASSERT(b);
    TEST_ASSERT_INT(command(b, "join r"), 0);
    TEST_ASSERT(expect_joined(b, "r", 200, "a,b", true));
    TEST_ASSERT(expect_joined(p, "r", 200, "a", true));
    uint64_t next = 1;
    bool presence_b = false;
    while (next <= 200 || !presence_b) {
        cJSON *obj = next_json(p);
        TEST_ASSERT(obj);
        const char *type = json_str(obj, "type");
        bool ok = type != NULL;
        if (ok && strcmp(type, "message") == 0) {
            ok = json_num(obj, "id") == (double)next;
            next++;
        } else if (ok && strcmp(type, "presence") == 0) {
            ok = !presence_b && json_str_is(obj, "user", "b");
            presence_b = true;
        } else {
            ok = false;
        }
        if (!ok)
            print_unexpected("r 1..200 and b's presence", obj);
        cJSON_Delete(obj);
        TEST_ASSERT(ok);
    }
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(peer_free(b) && peer_free(p));
    fx_stop();
    return 0;
}

TEST_MAIN(TEST_CASE(test_join_answers_joined), TEST_CASE(test_ban_sends_user_away),
          TEST_CASE(test_deliver_fans_out_to_room), TEST_CASE(test_presence_local_and_remote),
          TEST_CASE(test_cluster_listener), TEST_CASE(test_room_limit_and_rejoin),
          TEST_CASE(test_replay_before_live), TEST_CASE(test_replay_too_far_back),
          TEST_CASE(test_replay_larger_than_queue), TEST_CASE(test_deliver_during_replay),
          TEST_CASE(test_concurrent_deliver_during_replay),
          TEST_CASE(test_live_message_behind_last_page), TEST_CASE(test_second_join_during_replay),
          TEST_CASE(test_presence_during_replay), TEST_CASE(test_join_loop_without_reading),
          TEST_CASE(test_incomplete_page_closes))
