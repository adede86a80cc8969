/* Unit tests for hub: fan-out of one shared frame, per-connection queues
 * (a blocked client delays no one, more blocked clients than senders get
 * relief senders that leave when idle, overflow closes it with 1013, queued
 * frames are coalesced), join with replay before live frames, presence, limits.
 * Connections are fake: the hub writes through a capturing writer. */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hub.h"
#include "metrics.h"
#include "proto.h"
#include "test_help.h"
#include "util.h"

#define CONNS 4
#define WAIT_MS 5000

/* What each fake connection received, and a switch to stall its writes. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct util_buf bytes[CONNS];
    int writes[CONNS];
    bool blocked[CONNS];
    bool inside[CONNS]; /* a write is waiting on blocked */
} sink = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static struct mg_connection *fake_mc(int i)
{
    return (struct mg_connection *)(uintptr_t)(i + 1);
}

static int capture_write(struct mg_connection *mc, const void *data, size_t len)
{
    int i = (int)((uintptr_t)mc - 1);
    pthread_mutex_lock(&sink.lock);
    sink.inside[i] = true;
    pthread_cond_broadcast(&sink.changed);
    while (sink.blocked[i])
        pthread_cond_wait(&sink.changed, &sink.lock);
    sink.inside[i] = false;
    util_buf_append(&sink.bytes[i], data, len);
    sink.writes[i]++;
    pthread_cond_broadcast(&sink.changed);
    pthread_mutex_unlock(&sink.lock);
    return (int)len;
}

static void set_blocked(int i, bool blocked)
{
    pthread_mutex_lock(&sink.lock);
    sink.blocked[i] = blocked;
    pthread_cond_broadcast(&sink.changed);
    pthread_mutex_unlock(&sink.lock);
}

static void reset_sink(void)
{
    pthread_mutex_lock(&sink.lock);
    for (int i = 0; i < CONNS; i++) {
        util_buf_dispose(&sink.bytes[i]);
        sink.writes[i] = 0;
        sink.blocked[i] = false;
        sink.inside[i] = false;
    }
    pthread_mutex_unlock(&sink.lock);
}

/* Count the frames written to connection i whose payload contains needle
 * (opcode 8: close frames, whose code is compared instead). sink.lock held. */
static int count_frames(int i, int opcode, const char *needle, int close_code)
{
    const unsigned char *p = (const unsigned char *)sink.bytes[i].data;
    size_t left = sink.bytes[i].len, count = 0;
    while (left >= 2) {
        size_t len = p[1] & 0x7F, header = 2;
        if (len == 126) {
            len = ((size_t)p[2] << 8) | p[3];
            header = 4;
        }
        const unsigned char *payload = p + header;
        if ((p[0] & 0x0F) == opcode) {
            if (opcode == 8)
                count += len >= 2 && ((payload[0] << 8) | payload[1]) == close_code;
            else
                count += memmem(payload, len, needle, strlen(needle)) != NULL;
        }
        p += header + len;
        left -= header + len;
    }
    return (int)count;
}

/* Wait until connection i has at least n matching text frames. */
static bool wait_frames(int i, const char *needle, int n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&sink.lock);
    int rc = 0;
    while (count_frames(i, 1, needle, 0) < n && rc == 0)
        rc = pthread_cond_timedwait(&sink.changed, &sink.lock, &deadline);
    bool ok = count_frames(i, 1, needle, 0) >= n;
    pthread_mutex_unlock(&sink.lock);
    return ok;
}

static bool wait_close(int i, int code)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&sink.lock);
    int rc = 0;
    while (count_frames(i, 8, NULL, code) == 0 && rc == 0)
        rc = pthread_cond_timedwait(&sink.changed, &sink.lock, &deadline);
    bool ok = count_frames(i, 8, NULL, code) == 1;
    pthread_mutex_unlock(&sink.lock);
    return ok;
}

/* ---------------------------------------------------------------- history stub */

static uint64_t stub_last_id;

static int stub_last(void *ctx, const char *room, uint64_t *out)
{
    (void)ctx;
    (void)room;
    *out = stub_last_id;
    return 0;
}

static int stub_replay(void *ctx, const char *room, uint64_t after, uint64_t upto, int limit,
                       struct chat_msg ***out, size_t *count, bool *complete)
{
    (void)ctx;
    (void)limit;
    *out = xcalloc(upto - after + 1, sizeof(**out));
    *count = 0;
    for (uint64_t id = after + 1; id <= upto; id++) {
        struct chat_msg *m = chat_msg_create(room, "old", "replayed", NULL);
        m->id = id;
        (*out)[(*count)++] = m;
    }
    *complete = true;
    return 0;
}

/* ---------------------------------------------------------------- fixture */

static struct config cfg;
static struct metrics *metrics;

static struct hub *new_hub(int max_frames)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.sender_threads = 2;
    cfg.sender_idle_ms = 200;
    cfg.outbound_max_frames = max_frames;
    cfg.outbound_max_kib = 1024;
    cfg.max_rooms_per_conn = 2;
    cfg.replay_max = 100;
    metrics = metrics_create();
    stub_last_id = 0;
    reset_sink();
    struct hub_history history = {stub_last, stub_replay, NULL};
    return hub_create(&cfg, metrics, &history, capture_write);
}

static struct hub_conn *new_conn(struct hub *hub, int i, const char *user)
{
    struct hub_conn *c = hub_conn_create(hub, fake_mc(i));
    hub_conn_set_user(c, user);
    return c;
}

static void deliver(struct hub *hub, const char *room, uint64_t id, const char *text)
{
    struct chat_msg *m = chat_msg_create(room, "sender", text, NULL);
    m->id = id;
    hub_deliver(hub, m);
    chat_msg_free(m);
}

static void finish(struct hub *hub, struct hub_conn **conns, int n)
{
    for (int i = 0; i < n; i++) {
        set_blocked(i, false);
        hub_conn_closed(conns[i]);
    }
    hub_free(hub);
    metrics_free(metrics);
}

/* ---------------------------------------------------------------- tests */

static int test_fanout_reaches_every_member(void)
{
    struct hub *hub = new_hub(64);
    struct hub_conn *c[3] = {new_conn(hub, 0, "a"), new_conn(hub, 1, "b"), new_conn(hub, 2, "c")};
    for (int i = 0; i < 3; i++)
        TEST_ASSERT_INT(hub_join(hub, c[i], "r", NULL), 0);
    deliver(hub, "r", 1, "hello-all");
    deliver(hub, "other", 1, "not-for-r");
    for (int i = 0; i < 3; i++) {
        TEST_ASSERT(wait_frames(i, "\"type\":\"joined\"", 1));
        TEST_ASSERT(wait_frames(i, "hello-all", 1));
    }
    pthread_mutex_lock(&sink.lock);
    TEST_ASSERT_INT(count_frames(0, 1, "not-for-r", 0), 0);
    pthread_mutex_unlock(&sink.lock);
    TEST_ASSERT_INT(atomic_load(&metrics->messages_delivered), 3);
    finish(hub, c, 3);
    return 0;
}

static int test_blocked_client_delays_no_one_and_overflows(void)
{
    struct hub *hub = new_hub(8);
    struct hub_conn *c[2] = {new_conn(hub, 0, "slow"), new_conn(hub, 1, "fast")};
    hub_join(hub, c[0], "r", NULL);
    hub_join(hub, c[1], "r", NULL);
    TEST_ASSERT(wait_frames(0, "joined", 1) && wait_frames(1, "joined", 1));
    set_blocked(0, true);
    char text[32];
    for (int i = 1; i <= 20; i++) {
        snprintf(text, sizeof(text), "m-%d-end", i);
        deliver(hub, "r", (uint64_t)i, text);
        /* The fast client gets each message while the slow one is stuck in a write. */
        TEST_ASSERT(wait_frames(1, "-end", i));
    }
    TEST_ASSERT_INT(atomic_load(&metrics->slow_consumers), 1);
    TEST_ASSERT(hub_conn_is_closing(c[0]));
    TEST_ASSERT(!hub_conn_is_closing(c[1]));
    set_blocked(0, false);
    TEST_ASSERT(wait_close(0, 1013));
    finish(hub, c, 2);
    return 0;
}

/* Poll the sender thread gauge until it is n, for up to WAIT_MS. */
static bool wait_sender_threads(int n)
{
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        if (atomic_load(&metrics->sender_threads) == n)
            return true;
        usleep(10000);
    }
    return false;
}

/* More stalled clients than sender threads: the hub adds senders, so a
 * client that reads still gets every message while the others are stuck. */
static int test_stuck_senders_are_relieved(void)
{
    struct hub *hub = new_hub(64); /* 2 sender threads */
    struct hub_conn *c[CONNS];
    for (int i = 0; i < CONNS; i++) {
        c[i] = new_conn(hub, i, i < CONNS - 1 ? "stalled" : "reader");
        hub_join(hub, c[i], "r", NULL);
        TEST_ASSERT(wait_frames(i, "joined", 1));
    }
    for (int i = 0; i < CONNS - 1; i++)
        set_blocked(i, true);
    char text[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(text, sizeof(text), "m-%d-end", i);
        deliver(hub, "r", (uint64_t)i, text);
        TEST_ASSERT(wait_frames(CONNS - 1, "-end", i));
    }
    TEST_ASSERT(atomic_load(&metrics->sender_threads) > 2);
    for (int i = 0; i < CONNS - 1; i++)
        set_blocked(i, false);
    for (int i = 0; i < CONNS - 1; i++)
        TEST_ASSERT(wait_frames(i, "-end", 5));
    TEST_ASSERT_INT(atomic_load(&metrics->slow_consumers), 0);
    /* idle for sender_idle_ms, the extra senders leave; the hub still works */
    TEST_ASSERT(wait_sender_threads(2));
    deliver(hub, "r", 6, "m-6-end");
    for (int i = 0; i < CONNS; i++)
        TEST_ASSERT(wait_frames(i, "-end", 6));
    finish(hub, c, CONNS);
    return 0;
}

static int test_queued_frames_are_coalesced(void)
{
    struct hub *hub = new_hub(64);
    struct hub_conn *c[1] = {new_conn(hub, 0, "a")};
    hub_join(hub, c[0], "r", NULL);
    TEST_ASSERT(wait_frames(0, "joined", 1));
    set_blocked(0, true);
    deliver(hub, "r", 1, "first-x");
    /* Wait until the sender is inside the blocked write, then queue more. */
    pthread_mutex_lock(&sink.lock);
    while (!sink.inside[0])
        pthread_cond_wait(&sink.changed, &sink.lock);
    pthread_mutex_unlock(&sink.lock);
    for (int i = 2; i <= 10; i++)
        deliver(hub, "r", (uint64_t)i, "more-x");
    set_blocked(0, false);
    TEST_ASSERT(wait_frames(0, "-x", 10));
    pthread_mutex_lock(&sink.lock);
    int writes = sink.writes[0];
    pthread_mutex_unlock(&sink.lock);
    /* joined, the first message, then the nine queued ones in one write. */
    TEST_ASSERT_INT(writes, 3);
    finish(hub, c, 1);
    return 0;
}

static int test_join_replays_before_live(void)
{
    struct hub *hub = new_hub(64);
    struct hub_conn *c[1] = {new_conn(hub, 0, "a")};
    stub_last_id = 3;
    uint64_t since = 1;
    TEST_ASSERT_INT(hub_join(hub, c[0], "r", &since), 0);
    deliver(hub, "r", 4, "live-four");
    TEST_ASSERT(wait_frames(0, "live-four", 1));
    pthread_mutex_lock(&sink.lock);
    const char *all = sink.bytes[0].data;
    const char *joined = strstr(all, "\"last_id\":3");
    const char *two = strstr(all, "\"id\":2");
    const char *three = strstr(all, "\"id\":3");
    const char *four = strstr(all, "\"id\":4");
    TEST_ASSERT(joined && two && three && four);
    TEST_ASSERT(joined < two && two < three && three < four);
    TEST_ASSERT(strstr(all, "\"id\":1,") == NULL); /* since=1: not replayed */
    TEST_ASSERT(strstr(all, "\"recovered\":true") != NULL);
    pthread_mutex_unlock(&sink.lock);
    finish(hub, c, 1);
    return 0;
}

static int test_presence_local_and_remote(void)
{
    struct hub *hub = new_hub(64);
    struct hub_conn *c[3] = {new_conn(hub, 0, "alice"), new_conn(hub, 1, "bob"),
                             new_conn(hub, 2, "bob")};
    hub_join(hub, c[0], "r", NULL);
    hub_join(hub, c[1], "r", NULL);
    hub_join(hub, c[2], "r", NULL); /* bob's second connection: no new presence */
    TEST_ASSERT(wait_frames(2, "joined", 1));
    hub_remote_presence(hub, "r", "carol", +1);
    TEST_ASSERT(wait_frames(0, "\"user\":\"carol\",\"event\":\"join\"", 1));
    hub_remote_typing(hub, "r", "carol");
    TEST_ASSERT(wait_frames(0, "\"type\":\"typing\",\"room\":\"r\",\"user\":\"carol\"", 1));
    char **names;
    size_t count;
    hub_room_members(hub, "r", &names, &count);
    TEST_ASSERT_INT(count, 3);
    TEST_ASSERT_STR(names[0], "alice");
    TEST_ASSERT_STR(names[1], "bob");
    TEST_ASSERT_STR(names[2], "carol");
    hub_free_names(names, count);
    hub_leave(hub, c[1], "r");
    hub_leave(hub, c[2], "r");
    TEST_ASSERT(wait_frames(0, "\"user\":\"bob\",\"event\":\"leave\"", 1));
    pthread_mutex_lock(&sink.lock);
    TEST_ASSERT_INT(count_frames(0, 1, "\"user\":\"bob\",\"event\":\"join\"", 0), 1);
    pthread_mutex_unlock(&sink.lock);
    hub_remote_presence(hub, "r", "carol", -1);
    TEST_ASSERT(wait_frames(0, "\"user\":\"carol\",\"event\":\"leave\"", 1));
    hub_room_members(hub, "r", &names, &count);
    TEST_ASSERT_INT(count, 1); /* alice */
    hub_free_names(names, count);
    finish(hub, c, 3);
    return 0;
}

static int test_room_limit_and_leave(void)
{
    struct hub *hub = new_hub(64);
    struct hub_conn *c[1] = {new_conn(hub, 0, "a")};
    TEST_ASSERT_INT(hub_join(hub, c[0], "r1", NULL), 0);
    TEST_ASSERT_INT(hub_join(hub, c[0], "r2", NULL), 0);
    TEST_ASSERT_INT(hub_join(hub, c[0], "r3", NULL), -E2BIG);
    TEST_ASSERT_INT(hub_join(hub, c[0], "r1", NULL), 0); /* re-joining is not a new room */
    TEST_ASSERT_INT(hub_leave(hub, c[0], "r3"), -ENOENT);
    TEST_ASSERT_INT(hub_leave(hub, c[0], "r2"), 0);
    TEST_ASSERT(!hub_is_member(hub, c[0], "r2"));
    TEST_ASSERT_INT(hub_room_count(hub), 1);
    finish(hub, c, 1);
    return 0;
}

TEST_MAIN(TEST_CASE(test_fanout_reaches_every_member),
          TEST_CASE(test_blocked_client_delays_no_one_and_overflows),
          TEST_CASE(test_stuck_senders_are_relieved), TEST_CASE(test_queued_frames_are_coalesced),
          TEST_CASE(test_join_replays_before_live), TEST_CASE(test_presence_local_and_remote),
          TEST_CASE(test_room_limit_and_leave))
