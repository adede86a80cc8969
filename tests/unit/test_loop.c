/* Unit tests for loop: real event loops over socketpair(AF_UNIX) sockets. The
 * test holds the client end (test_ws.h): it writes masked client frames and
 * reads the server's frames; a small conn_handler records what the loop hands
 * over. Covered: text messages, bytes buffered before the adoption, shared
 * frames, ping/pong, the close handshake, protocol errors (1002, 1009), the
 * stalled frame and keepalive deadlines, the outbound caps (1013, and a stuck
 * peer delays no one), replay frames over the cap and drains, the hello
 * deadline, admission limits, loops_close_all and loops_free. Every wait has a
 * deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "loop.h"
#include "metrics.h"
#include "proto.h"
#include "test_help.h"
#include "test_ws.h"
#include "util.h"

#define MAX_MSGS 16 /* messages a peer records */

/* ---------------------------------------------------------------- fixture */

/* What a test runs against; what the handlers write is under test_sync.lock
 * (test_ws.h). */
static struct {
    struct config *cfg; /* per test: loops of a failed test may still read theirs */
    struct metrics *metrics;
    struct loops *loops;
} fx;

/* One connection: the client end the test drives and what its handler saw. */
struct peer {
    struct client ws;      /* the test's end */
    char ip[48];           /* as admitted */
    bool hello_on_message; /* on_message calls conn_hello_done */

    /* under test_sync.lock, written on the loop thread */
    struct conn *conn; /* bound by the first message, referenced until peer_free */
    char *msgs[MAX_MSGS];
    int msg_count;
    int drains;  /* on_drain calls */
    bool closed; /* on_closed ran */
};

/* Defaults into a fresh fx.cfg; the test adjusts it, then calls fx_start. */
static void fx_init(void)
{
    fixture_once();
    fx.cfg = fixture_config(1);
    fx.metrics = metrics_create();
    fx.loops = NULL;
}

static bool fx_start(void)
{
    fx.loops = fixture_loops(fx.cfg, fx.metrics);
    return fx.loops != NULL;
}

static void fx_stop(void)
{
    loops_free(fx.loops);
    metrics_free(fx.metrics);
    free(fx.cfg);
    fx.loops = NULL;
    fx.metrics = NULL;
    fx.cfg = NULL;
}

/* ---------------------------------------------------------------- handler */

static int on_message(void *ctx, struct conn *conn, const char *data, size_t len)
{
    struct peer *p = ctx;
    if (p->hello_on_message)
        conn_hello_done(conn);
    pthread_mutex_lock(&test_sync.lock);
    if (!p->conn) {
        conn_ref(conn);
        p->conn = conn;
    }
    if (p->msg_count < MAX_MSGS)
        p->msgs[p->msg_count++] = xstrndup(data, len);
    pthread_cond_broadcast(&test_sync.cond);
    pthread_mutex_unlock(&test_sync.lock);
    return 0;
}

static void on_drain(void *ctx, struct conn *conn)
{
    struct peer *p = ctx;
    (void)conn;
    pthread_mutex_lock(&test_sync.lock);
    p->drains++;
    pthread_cond_broadcast(&test_sync.cond);
    pthread_mutex_unlock(&test_sync.lock);
}

static void on_closed(void *ctx, struct conn *conn)
{
    struct peer *p = ctx;
    (void)conn;
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

/* ---------------------------------------------------------------- peers */

static struct peer *peer_new(const char *ip)
{
    struct peer *p = xcalloc(1, sizeof(*p));
    client_init(&p->ws);
    snprintf(p->ip, sizeof(p->ip), "%s", ip);
    return p;
}

/* A socketpair whose server end the loops adopt, with buffered given as read
 * past the headers and early written to the socket first. The slot for p->ip
 * must have been admitted. sndbuf > 0 shrinks the server's send buffer. */
static bool peer_adopt_admitted(struct peer *p, const void *buffered, size_t buffered_len,
                                const void *early, size_t early_len, int sndbuf)
{
    int sock = client_connect(&p->ws, sndbuf);
    if (sock < 0)
        return false;
    if (early_len > 0 && !write_all(p->ws.fd, early, early_len))
        return false;
    loops_adopt(fx.loops, sock, NULL, buffered, buffered_len, p->ip, &handler, p);
    return true;
}

/* Admit and adopt a plain peer of 127.0.0.1. NULL on failure. */
static struct peer *peer_open(bool hello_on_message, int sndbuf)
{
    struct peer *p = peer_new("127.0.0.1");
    p->hello_on_message = hello_on_message;
    int rc = loops_admit(fx.loops, p->ip);
    if (rc != 0) {
        fprintf(stderr, "loops_admit: %d\n", rc);
        return NULL;
    }
    return peer_adopt_admitted(p, NULL, 0, NULL, 0, sndbuf) ? p : NULL;
}

/* Send a first message so that the handler learns the conn; returns it. */
static struct conn *peer_bind(struct peer *p, const char *text)
{
    if (!client_text(&p->ws, text) || !WAIT_UNTIL(p->conn != NULL))
        return NULL;
    return LOCKED(p->conn);
}

/* peer_open, then peer_bind with "hello": a peer whose conn is known. NULL on
 * failure, with the reason printed. */
static struct peer *peer_bound(bool hello_on_message, int sndbuf)
{
    struct peer *p = peer_open(hello_on_message, sndbuf);
    if (p && !peer_bind(p, "hello")) {
        fprintf(stderr, "the hello did not reach on_message\n");
        return NULL;
    }
    return p;
}

/* n peers from peer_bound(false, 0) into p; false when one failed. */
static bool peers_bound(struct peer **p, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = peer_bound(false, 0);
        if (!p[i])
            return false;
    }
    return true;
}

/* Close the client end, wait for on_closed, free. False when on_closed did
 * not run in time (p is leaked then: the loop still points at it). */
static bool peer_free(struct peer *p)
{
    if (!p)
        return true;
    client_hang_up(&p->ws);
    if (!WAIT_UNTIL(p->closed))
        return false;
    conn_unref(p->conn);
    for (int i = 0; i < p->msg_count; i++)
        free(p->msgs[i]);
    client_dispose(&p->ws);
    free(p);
    return true;
}

static bool peer_is_closed(struct peer *p)
{
    return LOCKED(p->closed);
}

/* True when the handler recorded text as message i. */
static bool peer_msg_is(struct peer *p, int i, const char *text)
{
    pthread_mutex_lock(&test_sync.lock);
    bool ok = i < p->msg_count && strcmp(p->msgs[i], text) == 0;
    if (!ok)
        fprintf(stderr, "message %d: expected \"%s\", got \"%s\"\n", i, text,
                i < p->msg_count ? p->msgs[i] : "(none)");
    pthread_mutex_unlock(&test_sync.lock);
    return ok;
}

/* Read frames up to the close: its code, or -1 when the connection ended or
 * the wait ran out first. *frames (when not NULL) counts those before it. */
static int skip_to_close(struct peer *p, int *frames)
{
    struct frame f;
    int n = 0;
    int code = -1;
    while (read_frame(&p->ws, &f) == 1) {
        bool close = f.opcode == OP_CLOSE;
        if (close)
            code = f.close_code;
        frame_dispose(&f);
        if (close)
            break;
        n++;
    }
    if (frames)
        *frames = n;
    return code;
}

/* ---------------------------------------------------------------- tests */

static int test_text_reaches_on_message(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(client_text(&p->ws, "{\"type\":\"ping\"}"));
    /* a message in two frames (text + continuation) arrives once, whole */
    struct util_buf b;
    util_buf_init(&b);
    unsigned char h[6] = {0x01, 0x80 | 3, 0, 0, 0, 0}; /* text, no fin, zero mask */
    util_buf_append(&b, h, sizeof(h));
    util_buf_append(&b, "abc", 3);
    client_frame(&b, 0x0, "def", 3, true); /* continuation with fin */
    TEST_ASSERT(write_all(p->ws.fd, b.data, b.len));
    util_buf_dispose(&b);
    TEST_ASSERT(WAIT_UNTIL(p->msg_count == 3));
    TEST_ASSERT(peer_msg_is(p, 0, "hello"));
    TEST_ASSERT(peer_msg_is(p, 1, "{\"type\":\"ping\"}"));
    TEST_ASSERT(peer_msg_is(p, 2, "abcdef"));
    TEST_ASSERT_STR(conn_remote_ip(p->conn), "127.0.0.1");
    TEST_ASSERT_INT(loops_connection_count(fx.loops), 1);
    TEST_ASSERT_INT(atomic_load(&fx.metrics->connections), 1);
    TEST_ASSERT(peer_free(p));
    TEST_ASSERT_INT(loops_connection_count(fx.loops), 0);
    TEST_ASSERT_INT(atomic_load(&fx.metrics->connections), 0);
    fx_stop();
    return 0;
}

/* The first frame came in the same packet as the upgrade request: CivetWeb
 * hands it over as buffered, and it is decoded before what the socket holds,
 * even a frame split between the two. */
static int test_buffered_bytes_come_first(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct util_buf buffered, early;
    util_buf_init(&buffered);
    util_buf_init(&early);
    client_frame(&buffered, OP_TEXT, "first", 5, true);
    client_frame(&buffered, OP_TEXT, "second", 6, true);
    struct util_buf third;
    util_buf_init(&third);
    client_frame(&third, OP_TEXT, "third-split", 11, true);
    util_buf_append(&buffered, third.data, 5); /* its header and a byte */
    util_buf_append(&early, third.data + 5, third.len - 5);
    client_frame(&early, OP_TEXT, "fourth", 6, true);
    util_buf_dispose(&third);

    struct peer *p = peer_new("127.0.0.1");
    TEST_ASSERT_INT(loops_admit(fx.loops, p->ip), 0);
    TEST_ASSERT(peer_adopt_admitted(p, buffered.data, buffered.len, early.data, early.len, 0));
    util_buf_dispose(&buffered); /* loops_adopt copied it */
    util_buf_dispose(&early);
    TEST_ASSERT(WAIT_UNTIL(p->msg_count == 4));
    TEST_ASSERT(peer_msg_is(p, 0, "first"));
    TEST_ASSERT(peer_msg_is(p, 1, "second"));
    TEST_ASSERT(peer_msg_is(p, 2, "third-split"));
    TEST_ASSERT(peer_msg_is(p, 3, "fourth"));
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* One shared frame queued to connections on two loops: each gets the same
 * bytes, and once written the queues drop their references. */
static int test_shared_frame_reaches_each(void)
{
    fx_init();
    fx.cfg->loop_threads = 2;
    TEST_ASSERT(fx_start());
    struct peer *p[3];
    TEST_ASSERT(peers_bound(p, 3));
    char big[300];
    memset(big, 'b', sizeof(big));
    const char *json = "{\"type\":\"message\",\"id\":7}";
    struct loop_frame *frames[2] = {loop_frame_text(json, strlen(json), 7),
                                    loop_frame_text(big, sizeof(big), 0)};
    TEST_ASSERT_INT(frames[0]->msg_id, 7);
    TEST_ASSERT_INT(frames[1]->len, sizeof(big) + 4); /* 16-bit length header */
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++)
            TEST_ASSERT_INT(conn_send(p[i]->conn, frames[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++) {
            struct frame f;
            TEST_ASSERT_INT(read_frame(&p[i]->ws, &f), 1);
            TEST_ASSERT_INT(f.raw_len, frames[k]->len);
            TEST_ASSERT(memcmp(f.raw, frames[k]->wire, f.raw_len) == 0);
            frame_dispose(&f);
        }
    }
    /* every queue let go of both frames: only the test's references remain */
    TEST_ASSERT(
        POLL_UNTIL(atomic_load(&frames[0]->refs) == 1 && atomic_load(&frames[1]->refs) == 1));
    TEST_ASSERT(POLL_UNTIL(atomic_load(&fx.metrics->outbound_queued) == 0));
    loop_frame_unref(frames[0]);
    loop_frame_unref(frames[1]);
    TEST_ASSERT_INT(conn_send_text(p[1]->conn, "{\"x\":1}", 7), 0);
    TEST_ASSERT(expect_frame(&p[1]->ws, OP_TEXT, "{\"x\":1}"));
    for (int i = 0; i < 3; i++)
        TEST_ASSERT(peer_free(p[i]));
    fx_stop();
    return 0;
}

static int test_ping_gets_pong(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(client_send(&p->ws, OP_PING, "are-you-there", 13));
    TEST_ASSERT(expect_frame(&p->ws, OP_PONG, "are-you-there"));
    TEST_ASSERT(client_send(&p->ws, OP_PING, "", 0));
    TEST_ASSERT(expect_frame(&p->ws, OP_PONG, ""));
    TEST_ASSERT(client_send(&p->ws, OP_PONG, "unsolicited", 11)); /* ignored */
    TEST_ASSERT(client_send(&p->ws, OP_PING, "again", 5));
    TEST_ASSERT(expect_frame(&p->ws, OP_PONG, "again"));
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* The client closes with 1000: the server echoes 1000, ends its side, and
 * on_closed runs once the client has gone too. */
static int test_client_close_is_echoed(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 0);
    TEST_ASSERT(p);
    struct conn *conn = p->conn;
    TEST_ASSERT(client_close(&p->ws, 1000, "bye"));
    TEST_ASSERT(expect_close(&p->ws, 1000));
    TEST_ASSERT(expect_eof(&p->ws));
    TEST_ASSERT(conn_is_closing(conn));
    TEST_ASSERT_INT(conn_send_text(conn, "{}", 2), -EPIPE);
    client_hang_up(&p->ws);
    TEST_ASSERT(WAIT_UNTIL(p->closed));
    TEST_ASSERT_INT(loops_connection_count(fx.loops), 0);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* conn_close from another thread: what is queued goes out first, then the
 * close frame with the code and reason. */
static int test_server_close_after_queued(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 0);
    TEST_ASSERT(p);
    struct conn *conn = p->conn;
    TEST_ASSERT_INT(conn_send_text(conn, "one", 3), 0);
    TEST_ASSERT_INT(conn_send_text(conn, "two", 3), 0);
    conn_close(conn, 4000, "done here");
    conn_close(conn, 4001, "second close is ignored");
    TEST_ASSERT_INT(conn_send_text(conn, "three", 5), -EPIPE);
    TEST_ASSERT(expect_frame(&p->ws, OP_TEXT, "one"));
    TEST_ASSERT(expect_frame(&p->ws, OP_TEXT, "two"));
    struct frame f;
    TEST_ASSERT_INT(read_frame(&p->ws, &f), 1);
    TEST_ASSERT_INT(f.opcode, OP_CLOSE);
    TEST_ASSERT_INT(f.close_code, 4000);
    TEST_ASSERT_STR(f.data, "done here");
    frame_dispose(&f);
    TEST_ASSERT(expect_eof(&p->ws));
    TEST_ASSERT(client_close(&p->ws, 4000, "")); /* the answer, then our FIN */
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* An unmasked client frame breaks RFC 6455: close 1002, nothing delivered. */
static int test_unmasked_frame_gets_1002(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(client_send_frame(&p->ws, OP_TEXT, "naked", 5, false));
    TEST_ASSERT(expect_close(&p->ws, PROTO_CLOSE_PROTOCOL));
    TEST_ASSERT(expect_eof(&p->ws));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->frames_rejected), 1);
    TEST_ASSERT_INT(LOCKED(p->msg_count), 1); /* only the hello */
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* A message over max_frame_bytes: close 1009 before its payload is read. */
static int test_oversize_message_gets_1009(void)
{
    fx_init();
    fx.cfg->max_frame_bytes = 100;
    TEST_ASSERT(fx_start());
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    char text[101];
    memset(text, 'a', 100);
    text[100] = '\0';
    TEST_ASSERT(client_text(&p->ws, text)); /* exactly the limit: fine */
    TEST_ASSERT(WAIT_UNTIL(p->msg_count == 1));
    char big[101];
    memset(big, 'b', sizeof(big));
    TEST_ASSERT(client_send(&p->ws, OP_TEXT, big, sizeof(big)));
    TEST_ASSERT(expect_close(&p->ws, PROTO_CLOSE_TOO_BIG));
    TEST_ASSERT(expect_eof(&p->ws));
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* A frame started but not finished within request_timeout_ms: close 1008. */
static int test_stalled_frame_is_closed(void)
{
    fx_init();
    fx.cfg->request_timeout_ms = 300;
    TEST_ASSERT(fx_start());
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    struct util_buf b;
    util_buf_init(&b);
    client_frame(&b, OP_TEXT, "never finished", 14, true);
    int64_t start = util_mono_ms();
    TEST_ASSERT(write_all(p->ws.fd, b.data, 8)); /* header, mask and two bytes */
    util_buf_dispose(&b);
    TEST_ASSERT(expect_close(&p->ws, PROTO_CLOSE_POLICY));
    TEST_ASSERT(util_mono_ms() - start >= 300);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* After ws_ping_ms without input the server pings; a pong keeps the
 * connection, silence for another ws_ping_ms closes it with 1001. */
static int test_keepalive_ping(void)
{
    fx_init();
    fx.cfg->ws_ping_ms = 300;
    TEST_ASSERT(fx_start());
    struct peer *answering = peer_open(false, 0);
    struct peer *silent = peer_open(false, 0);
    TEST_ASSERT(answering && silent);
    for (int i = 0; i < 2; i++) {
        TEST_ASSERT(expect_frame(&answering->ws, OP_PING, ""));
        TEST_ASSERT(client_send(&answering->ws, OP_PONG, "", 0));
    }
    TEST_ASSERT(expect_frame(&silent->ws, OP_PING, ""));
    TEST_ASSERT(expect_close(&silent->ws, PROTO_CLOSE_GOING_AWAY));
    TEST_ASSERT(peer_free(silent));
    TEST_ASSERT(expect_frame(&answering->ws, OP_PING, ""));
    TEST_ASSERT(!peer_is_closed(answering));
    TEST_ASSERT(peer_free(answering));
    fx_stop();
    return 0;
}

/* Payload of frame seq: the number, then filler, len bytes in all. */
static struct loop_frame *numbered_frame(int seq, size_t len)
{
    char *payload = xmalloc(len);
    memset(payload, 'x', len);
    char head[16];
    int n = snprintf(head, sizeof(head), "%06d", seq);
    memcpy(payload, head, (size_t)n);
    struct loop_frame *f = loop_frame_text(payload, len, 0);
    free(payload);
    return f;
}

/* The next frame is text numbered seq. */
static bool expect_numbered(struct peer *p, int seq)
{
    struct frame f;
    if (read_frame(&p->ws, &f) != 1)
        return false;
    char head[16];
    snprintf(head, sizeof(head), "%06d", seq);
    bool ok = f.opcode == OP_TEXT && f.len >= 6 && memcmp(f.data, head, 6) == 0;
    if (!ok)
        fprintf(stderr, "expected frame %s, got opcode %d \"%.6s\"\n", head, f.opcode, f.data);
    frame_dispose(&f);
    return ok;
}

/* Two peers stop reading while frames are queued past outbound_max_kib: each
 * is refused with -ENOBUFS and closed with 1013, while a reader on the same
 * (single) loop gets every frame meanwhile. The one that never reads again
 * is dropped after the close linger; the one that reads again gets whole
 * frames, then the close. */
static int test_overflow_closes_slow_peer_only(void)
{
    fx_init();
    fx.cfg->outbound_max_kib = 16;
    TEST_ASSERT(fx_start());
    struct peer *stuck = peer_bound(false, 4096);
    struct peer *late = peer_bound(false, 4096);
    struct peer *reader = peer_bound(false, 0);
    TEST_ASSERT(stuck && late && reader);
    int rc_stuck = 0, rc_late = 0, seq;
    for (seq = 0; seq < 5000 && (rc_stuck == 0 || rc_late == 0); seq++) {
        struct loop_frame *f = numbered_frame(seq, 1000);
        if (rc_stuck == 0)
            rc_stuck = conn_send(stuck->conn, f);
        if (rc_late == 0)
            rc_late = conn_send(late->conn, f);
        int rc_reader = conn_send(reader->conn, f);
        loop_frame_unref(f);
        TEST_ASSERT_INT(rc_reader, 0);
        TEST_ASSERT(expect_numbered(reader, seq)); /* not held up by the others */
    }
    TEST_ASSERT_INT(rc_stuck, -ENOBUFS);
    TEST_ASSERT_INT(rc_late, -ENOBUFS);
    TEST_ASSERT(conn_is_closing(stuck->conn) && conn_is_closing(late->conn));
    TEST_ASSERT(!conn_is_closing(reader->conn));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 2);
    struct loop_frame *f = numbered_frame(seq, 1000);
    TEST_ASSERT_INT(conn_send(stuck->conn, f), -EPIPE);
    for (int i = 0; i < 5; i++)
        TEST_ASSERT_INT(conn_send(reader->conn, f), 0);
    loop_frame_unref(f);
    for (int i = 0; i < 5; i++)
        TEST_ASSERT(expect_numbered(reader, seq));

    /* late reads again: whole frames in order, then 1013, then the end */
    int next = 0;
    for (;;) {
        struct frame fr;
        TEST_ASSERT_INT(read_frame(&late->ws, &fr), 1);
        if (fr.opcode == OP_CLOSE) {
            TEST_ASSERT_INT(fr.close_code, PROTO_CLOSE_TRY_AGAIN);
            frame_dispose(&fr);
            break;
        }
        char head[16];
        snprintf(head, sizeof(head), "%06d", next++);
        TEST_ASSERT(fr.opcode == OP_TEXT && fr.len == 1000 && memcmp(fr.data, head, 6) == 0);
        frame_dispose(&fr);
    }
    TEST_ASSERT(next > 0);
    TEST_ASSERT(expect_eof(&late->ws));
    TEST_ASSERT(peer_free(late));

    /* stuck never reads: the loop gives up after its close linger */
    TEST_ASSERT(WAIT_UNTIL(stuck->closed));
    TEST_ASSERT(!peer_is_closed(reader));
    TEST_ASSERT(peer_free(stuck));
    TEST_ASSERT_INT(conn_send_text(reader->conn, "still", 5), 0);
    TEST_ASSERT(expect_frame(&reader->ws, OP_TEXT, "still"));
    TEST_ASSERT(peer_free(reader));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->outbound_queued), 0);
    fx_stop();
    return 0;
}

/* Too many frames (outbound_max_frames) is an overflow as well. */
static int test_overflow_by_frame_count(void)
{
    fx_init();
    fx.cfg->outbound_max_frames = 16;
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 4096);
    TEST_ASSERT(p);
    int rc = 0, sent = 0;
    while (rc == 0 && sent < 5000) {
        struct loop_frame *f = numbered_frame(sent, 100);
        rc = conn_send(p->conn, f);
        loop_frame_unref(f);
        sent++;
    }
    TEST_ASSERT_INT(rc, -ENOBUFS);
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 1);
    int before;
    TEST_ASSERT_INT(skip_to_close(p, &before), PROTO_CLOSE_TRY_AGAIN);
    TEST_ASSERT(before <= sent);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* Pongs count against the caps: a peer that floods pings and never reads the
 * answers is closed as a slow consumer instead of growing its queue. */
static int test_ping_flood_without_reading(void)
{
    fx_init();
    fx.cfg->outbound_max_frames = 16;
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 4096);
    TEST_ASSERT(p);
    char payload[125];
    memset(payload, 'p', sizeof(payload));
    for (int i = 0; i < 3000 && atomic_load(&fx.metrics->slow_consumers) == 0; i++)
        TEST_ASSERT(client_send(&p->ws, OP_PING, payload, sizeof(payload)));
    TEST_ASSERT(POLL_UNTIL(atomic_load(&fx.metrics->slow_consumers) == 1));
    int pongs;
    TEST_ASSERT_INT(skip_to_close(p, &pongs), PROTO_CLOSE_TRY_AGAIN);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* Replay pages may fill the queue past its cap without a close; a wanted
 * drain is reported once the client has read enough. */
static int test_replay_over_cap_and_drain(void)
{
    fx_init();
    fx.cfg->outbound_max_kib = 16;
    TEST_ASSERT(fx_start());
    struct peer *p = peer_bound(false, 4096);
    TEST_ASSERT(p);
    for (int i = 0; i < 40; i++) {
        struct loop_frame *f = numbered_frame(i, 1000);
        int rc = conn_send_replay(p->conn, f);
        loop_frame_unref(f);
        TEST_ASSERT_INT(rc, 0);
    }
    TEST_ASSERT(conn_is_backlogged(p->conn));
    TEST_ASSERT(!conn_is_closing(p->conn));
    conn_want_drain(p->conn);
    /* the socket holds a few KB: 40 KB cannot have drained */
    TEST_ASSERT_INT(LOCKED(p->drains), 0);
    for (int i = 0; i < 40; i++)
        TEST_ASSERT(expect_numbered(p, i));
    TEST_ASSERT(WAIT_UNTIL(p->drains == 1));
    TEST_ASSERT(!conn_is_backlogged(p->conn));
    conn_want_drain(p->conn); /* already empty: reported at once */
    TEST_ASSERT(WAIT_UNTIL(p->drains == 2));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 0);
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* Without conn_hello_done in time: close 1008. A connection whose handler
 * called conn_hello_done (on its loop thread) stays open. */
static int test_hello_deadline(void)
{
    fx_init();
    fx.cfg->hello_timeout_ms = 300;
    TEST_ASSERT(fx_start());
    struct peer *greeted = peer_bound(true, 0);
    TEST_ASSERT(greeted);
    int64_t opened = util_mono_ms();
    struct peer *silent = peer_open(false, 0);
    TEST_ASSERT(silent);
    TEST_ASSERT(client_text(&silent->ws, "not a hello")); /* a message is not a hello */
    TEST_ASSERT(expect_close(&silent->ws, PROTO_CLOSE_POLICY));
    TEST_ASSERT(util_mono_ms() - opened >= 300);
    TEST_ASSERT(expect_eof(&silent->ws));
    TEST_ASSERT(peer_free(silent));
    /* greeted was opened earlier: its deadline passed too, in the same sweep
     * or before. A ping round trip shows no close frame was queued for it. */
    TEST_ASSERT(client_send(&greeted->ws, OP_PING, "alive", 5));
    TEST_ASSERT(expect_frame(&greeted->ws, OP_PONG, "alive"));
    TEST_ASSERT(!conn_is_closing(greeted->conn));
    TEST_ASSERT(!peer_is_closed(greeted));
    TEST_ASSERT(peer_free(greeted));
    fx_stop();
    return 0;
}

static int test_admission_limits(void)
{
    /* node-wide */
    fx_init();
    fx.cfg->max_connections = 2;
    TEST_ASSERT(fx_start());
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.1"), 0);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.2"), 0);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.3"), -EBUSY);
    loops_unadmit(fx.loops, "10.0.0.2");
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.3"), 0);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.4"), -EBUSY);
    /* an adopted connection gives its slot back once closed */
    loops_unadmit(fx.loops, "10.0.0.3");
    struct peer *p = peer_new("10.0.0.5");
    TEST_ASSERT_INT(loops_admit(fx.loops, p->ip), 0);
    TEST_ASSERT(peer_adopt_admitted(p, NULL, 0, NULL, 0, 0));
    TEST_ASSERT(peer_bind(p, "hello"));
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.6"), -EBUSY);
    TEST_ASSERT(peer_free(p)); /* on_closed ran: the slot is back */
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.6"), 0);
    loops_unadmit(fx.loops, "10.0.0.6");
    loops_unadmit(fx.loops, "10.0.0.1");
    fx_stop();

    /* per address */
    fx_init();
    fx.cfg->max_connections = 10;
    fx.cfg->max_connections_per_ip = 1;
    TEST_ASSERT(fx_start());
    p = peer_new("10.0.0.1");
    TEST_ASSERT_INT(loops_admit(fx.loops, p->ip), 0);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.1"), -EUSERS);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.2"), 0);
    loops_unadmit(fx.loops, "10.0.0.2");
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.2"), 0);
    loops_unadmit(fx.loops, "10.0.0.2");
    TEST_ASSERT(peer_adopt_admitted(p, NULL, 0, NULL, 0, 0));
    TEST_ASSERT(peer_bind(p, "hello"));
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.1"), -EUSERS);
    TEST_ASSERT(client_close(&p->ws, 1000, ""));
    TEST_ASSERT(expect_close(&p->ws, 1000));
    TEST_ASSERT(peer_free(p));
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.1"), 0);
    loops_unadmit(fx.loops, "10.0.0.1");
    /* the address's entry is gone, not left at zero: it admits once more */
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.1"), 0);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.0.0.1"), -EUSERS);
    loops_unadmit(fx.loops, "10.0.0.1");
    fx_stop();
    return 0;
}

/* What a client does on shutdown: read until the close, note its code, hang up. */
struct responder {
    struct peer **peers;
    int count;
    int codes[8];
};

static void *respond_to_close(void *arg)
{
    struct responder *r = arg;
    for (int i = 0; i < r->count; i++) {
        r->codes[i] = skip_to_close(r->peers[i], NULL);
        client_hang_up(&r->peers[i]->ws);
    }
    return NULL;
}

static int test_close_all(void)
{
    fx_init();
    fx.cfg->loop_threads = 2;
    fx.cfg->max_connections = 4;
    TEST_ASSERT(fx_start());
    struct peer *p[4];
    TEST_ASSERT(peers_bound(p, 4));
    for (int i = 0; i < 4; i++)
        TEST_ASSERT_INT(conn_send_text(p[i]->conn, "queued", 6), 0);
    TEST_ASSERT_INT(loops_connection_count(fx.loops), 4);
    struct responder r = {.peers = p, .count = 4};
    pthread_t thread;
    TEST_ASSERT_INT(pthread_create(&thread, NULL, respond_to_close, &r), 0);
    int64_t start = util_mono_ms();
    loops_close_all(fx.loops, PROTO_CLOSE_GOING_AWAY, "server shutting down", WAIT_MS);
    int64_t took = util_mono_ms() - start;
    pthread_join(thread, NULL);
    TEST_ASSERT(took < WAIT_MS); /* returned when the slots were back, not at the timeout */
    TEST_ASSERT_INT(loops_connection_count(fx.loops), 0);
    for (int i = 0; i < 4; i++)
        TEST_ASSERT_INT(r.codes[i], PROTO_CLOSE_GOING_AWAY);
    for (int i = 0; i < 4; i++)
        TEST_ASSERT(WAIT_UNTIL(p[i]->closed));
    /* every slot is back */
    for (int i = 0; i < 4; i++)
        TEST_ASSERT_INT(loops_admit(fx.loops, "10.1.1.1"), 0);
    TEST_ASSERT_INT(loops_admit(fx.loops, "10.1.1.1"), -EBUSY);
    for (int i = 0; i < 4; i++)
        loops_unadmit(fx.loops, "10.1.1.1");
    for (int i = 0; i < 4; i++)
        TEST_ASSERT(peer_free(p[i]));
    fx_stop();
    return 0;
}

/* loops_free with connections still open: each is closed and told. */
static int test_free_closes_open_connections(void)
{
    fx_init();
    fx.cfg->loop_threads = 2;
    TEST_ASSERT(fx_start());
    struct peer *p[3];
    TEST_ASSERT(peers_bound(p, 3));
    loops_free(fx.loops); /* joins the threads: on_closed has run when it returns */
    fx.loops = NULL;
    for (int i = 0; i < 3; i++) {
        TEST_ASSERT(peer_is_closed(p[i]));
        struct frame f;
        int rc;
        while ((rc = read_frame(&p[i]->ws, &f)) == 1)
            frame_dispose(&f);   /* a close frame may or may not have made it */
        TEST_ASSERT_INT(rc, -1); /* the socket is closed */
        TEST_ASSERT(peer_free(p[i]));
    }
    fx_stop();
    return 0;
}

TEST_MAIN(TEST_CASE(test_text_reaches_on_message), TEST_CASE(test_buffered_bytes_come_first),
          TEST_CASE(test_shared_frame_reaches_each), TEST_CASE(test_ping_gets_pong),
          TEST_CASE(test_client_close_is_echoed), TEST_CASE(test_server_close_after_queued),
          TEST_CASE(test_unmasked_frame_gets_1002), TEST_CASE(test_oversize_message_gets_1009),
          TEST_CASE(test_stalled_frame_is_closed), TEST_CASE(test_keepalive_ping),
          TEST_CASE(test_overflow_closes_slow_peer_only), TEST_CASE(test_overflow_by_frame_count),
          TEST_CASE(test_ping_flood_without_reading), TEST_CASE(test_replay_over_cap_and_drain),
          TEST_CASE(test_hello_deadline), TEST_CASE(test_admission_limits),
          TEST_CASE(test_close_all), TEST_CASE(test_free_closes_open_connections))
