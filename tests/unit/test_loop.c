/* Unit tests for loop: real event loops over socketpair(AF_UNIX) sockets. The
 * test holds the client end: it writes masked client frames and reads the
 * server's frames; a small conn_handler records what the loop hands over.
 * Covered: text messages, bytes buffered before the adoption, shared frames,
 * ping/pong, the close handshake, protocol errors (1002, 1009), the stalled
 * frame and keepalive deadlines, the outbound caps (1013, and a stuck peer
 * delays no one), replay frames over the cap and drains, the hello deadline,
 * admission limits, loops_close_all and loops_free. Every wait has a deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "loop.h"
#include "metrics.h"
#include "proto.h"
#include "test_help.h"
#include "util.h"

#define WAIT_MS 10000 /* any single wait; generous for sanitizer builds */
#define MAX_MSGS 16   /* messages a peer records */
#define OP_TEXT 0x1
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

/* ---------------------------------------------------------------- fixture */

static struct {
    pthread_mutex_t lock; /* guards every peer's handler-side fields */
    pthread_cond_t cond;  /* broadcast whenever a handler ran */
    bool cond_ready;
    struct config *cfg; /* per test: loops of a failed test may still read theirs */
    struct metrics *metrics;
    struct loops *loops;
} fx = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* One connection: the client end the test drives and what its handler saw. */
struct peer {
    int fd;                /* the test's end; -1 once closed */
    char ip[48];           /* as admitted */
    bool hello_on_message; /* on_message calls conn_hello_done */

    /* under fx.lock, written on the loop thread */
    struct conn *conn; /* bound by the first message, referenced until peer_free */
    char *msgs[MAX_MSGS];
    int msg_count;
    int drains;  /* on_drain calls */
    bool closed; /* on_closed ran */

    /* test thread only */
    struct util_buf in; /* bytes read from the server */
    size_t in_off;      /* of them, already parsed */
};

/* Evaluate pred under fx.lock until it holds or WAIT_MS pass; true when it held. */
#define WAIT_UNTIL(pred)                                                                           \
    __extension__({                                                                                \
        int64_t wait_deadline_ = util_mono_ms() + WAIT_MS;                                         \
        pthread_mutex_lock(&fx.lock);                                                              \
        while (!(pred) && util_mono_ms() < wait_deadline_)                                         \
            util_cond_wait_ms(&fx.cond, &fx.lock, wait_deadline_ - util_mono_ms());                \
        bool wait_ok_ = (pred);                                                                    \
        pthread_mutex_unlock(&fx.lock);                                                            \
        wait_ok_;                                                                                  \
    })

/* Poll a condition that no handler signals, with the same deadline. */
#define POLL_UNTIL(pred)                                                                           \
    __extension__({                                                                                \
        int64_t poll_deadline_ = util_mono_ms() + WAIT_MS;                                         \
        while (!(pred) && util_mono_ms() < poll_deadline_)                                         \
            usleep(1000);                                                                          \
        (pred);                                                                                    \
    })

static void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    c->threads = 4;
    c->request_timeout_ms = 10000;
    c->ws_ping_ms = 600000; /* no server ping disturbs a test */
    c->hello_timeout_ms = 600000;
    c->loop_threads = 1;
    c->max_connections = 64;
    c->max_connections_per_ip = 0;
    c->max_frame_bytes = 16384;
    c->outbound_max_frames = 4096;
    c->outbound_max_kib = 1024;
    c->max_rooms_per_conn = 50;
    c->replay_max = 10000;
}

/* Defaults into a fresh fx.cfg; the test adjusts it, then calls fx_start. */
static void fx_init(void)
{
    if (!fx.cond_ready) {
        util_cond_init_monotonic(&fx.cond);
        fx.cond_ready = true;
        signal(SIGPIPE, SIG_IGN); /* as main.c: the loops write with writev */
    }
    fx.cfg = xcalloc(1, sizeof(*fx.cfg));
    config_defaults(fx.cfg);
    fx.metrics = metrics_create();
    fx.loops = NULL;
}

static bool fx_start(void)
{
    char err[256] = "";
    fx.loops = loops_create(fx.cfg, fx.metrics, err, sizeof(err));
    if (!fx.loops)
        fprintf(stderr, "loops_create: %s\n", err);
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
    pthread_mutex_lock(&fx.lock);
    if (!p->conn) {
        conn_ref(conn);
        p->conn = conn;
    }
    if (p->msg_count < MAX_MSGS)
        p->msgs[p->msg_count++] = xstrndup(data, len);
    pthread_cond_broadcast(&fx.cond);
    pthread_mutex_unlock(&fx.lock);
    return 0;
}

static void on_drain(void *ctx, struct conn *conn)
{
    struct peer *p = ctx;
    (void)conn;
    pthread_mutex_lock(&fx.lock);
    p->drains++;
    pthread_cond_broadcast(&fx.cond);
    pthread_mutex_unlock(&fx.lock);
}

static void on_closed(void *ctx, struct conn *conn)
{
    struct peer *p = ctx;
    (void)conn;
    pthread_mutex_lock(&fx.lock);
    p->closed = true;
    pthread_cond_broadcast(&fx.cond);
    pthread_mutex_unlock(&fx.lock);
}

static const struct conn_handler handler = {
    .on_message = on_message,
    .on_drain = on_drain,
    .on_closed = on_closed,
};

/* ---------------------------------------------------------------- client side */

static bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Append one client frame (fin set) to out, masked unless told otherwise. */
static void client_frame(struct util_buf *out, int opcode, const void *payload, size_t len,
                         bool masked)
{
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char h[14];
    size_t n = 0;
    unsigned char mbit = masked ? 0x80 : 0;
    h[n++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[n++] = (unsigned char)(mbit | len);
    } else if (len <= 0xFFFF) {
        h[n++] = mbit | 126;
        h[n++] = (unsigned char)(len >> 8);
        h[n++] = (unsigned char)len;
    } else {
        h[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (masked) {
        memcpy(h + n, mask, 4);
        n += 4;
    }
    util_buf_append(out, h, n);
    const unsigned char *src = payload;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = masked ? (unsigned char)(src[i] ^ mask[i % 4]) : src[i];
        util_buf_append(out, &c, 1);
    }
}

static bool client_send(struct peer *p, int opcode, const void *payload, size_t len)
{
    struct util_buf b;
    util_buf_init(&b);
    client_frame(&b, opcode, payload, len, true);
    bool ok = write_all(p->fd, b.data, b.len);
    util_buf_dispose(&b);
    return ok;
}

static bool client_text(struct peer *p, const char *text)
{
    return client_send(p, OP_TEXT, text, strlen(text));
}

static bool client_close(struct peer *p, int code, const char *reason)
{
    char payload[128];
    size_t len = strlen(reason);
    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    memcpy(payload + 2, reason, len);
    return client_send(p, OP_CLOSE, payload, 2 + len);
}

/* One server frame as read by the client. */
struct frame {
    int opcode;
    char *data; /* payload, NUL-terminated; for CLOSE what follows the code */
    size_t len;
    int close_code;     /* CLOSE: the code, 1005 when none */
    unsigned char *raw; /* header and payload exactly as read */
    size_t raw_len;
};

static void frame_dispose(struct frame *f)
{
    free(f->data);
    free(f->raw);
    memset(f, 0, sizeof(*f));
}

/* Parse one whole frame from the bytes already read; false when incomplete. */
static bool parse_frame(struct peer *p, struct frame *f, bool *malformed)
{
    const unsigned char *b = (const unsigned char *)p->in.data + p->in_off;
    size_t avail = p->in.len - p->in_off;
    *malformed = false;
    if (avail < 2)
        return false;
    if ((b[0] & 0x80) == 0 || (b[0] & 0x70) != 0 || (b[1] & 0x80) != 0) {
        *malformed = true; /* server frames: fin, no RSV bits, never masked */
        return false;
    }
    uint64_t len = b[1] & 0x7F;
    size_t header = len == 126 ? 4 : len == 127 ? 10 : 2;
    if (avail < header)
        return false;
    if (len == 126) {
        len = ((uint64_t)b[2] << 8) | b[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 2; i < 10; i++)
            len = (len << 8) | b[i];
    }
    if (avail < header + len)
        return false;
    memset(f, 0, sizeof(*f));
    f->opcode = b[0] & 0x0F;
    f->raw_len = header + (size_t)len;
    f->raw = xmalloc(f->raw_len);
    memcpy(f->raw, b, f->raw_len);
    const unsigned char *payload = b + header;
    if (f->opcode == OP_CLOSE) {
        f->close_code = len >= 2 ? (payload[0] << 8) | payload[1] : 1005;
        size_t skip = len >= 2 ? 2 : 0;
        f->len = (size_t)len - skip;
        f->data = xstrndup((const char *)payload + skip, f->len);
    } else {
        f->len = (size_t)len;
        f->data = xmalloc(f->len + 1);
        memcpy(f->data, payload, f->len);
        f->data[f->len] = '\0';
    }
    p->in_off += f->raw_len;
    if (p->in_off == p->in.len) {
        p->in.len = 0;
        p->in_off = 0;
    } else if (p->in_off > 65536) {
        memmove(p->in.data, p->in.data + p->in_off, p->in.len - p->in_off);
        p->in.len -= p->in_off;
        p->in_off = 0;
    }
    return true;
}

/* Read the next server frame within WAIT_MS: 1, 0 on timeout, -1 at EOF,
 * on a read error or a malformed frame. */
static int read_frame(struct peer *p, struct frame *f)
{
    int64_t deadline = util_mono_ms() + WAIT_MS;
    for (;;) {
        bool malformed;
        if (parse_frame(p, f, &malformed))
            return 1;
        if (malformed) {
            fprintf(stderr, "malformed server frame\n");
            return -1;
        }
        int64_t left = deadline - util_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n <= 0)
            continue; /* EINTR or the deadline: checked above */
        char buf[65536];
        ssize_t r = read(p->fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        util_buf_append(&p->in, buf, (size_t)r);
    }
}

/* The next frame is opcode with exactly payload (NULL: any payload). */
static bool expect_frame(struct peer *p, int opcode, const char *payload)
{
    struct frame f;
    int rc = read_frame(p, &f);
    if (rc != 1) {
        fprintf(stderr, "expected opcode %d \"%s\": %s\n", opcode, payload ? payload : "",
                rc == 0 ? "timeout" : "EOF or error");
        return false;
    }
    bool ok = f.opcode == opcode &&
              (!payload || (f.len == strlen(payload) && memcmp(f.data, payload, f.len) == 0));
    if (!ok)
        fprintf(stderr, "expected opcode %d \"%s\", got %d \"%.80s\"\n", opcode,
                payload ? payload : "", f.opcode, f.data);
    frame_dispose(&f);
    return ok;
}

/* The next frame is a close with code. */
static bool expect_close(struct peer *p, int code)
{
    struct frame f;
    int rc = read_frame(p, &f);
    bool ok = rc == 1 && f.opcode == OP_CLOSE && f.close_code == code;
    if (!ok)
        fprintf(stderr, "expected close %d, got rc=%d opcode=%d code=%d\n", code, rc,
                rc == 1 ? f.opcode : -1, rc == 1 ? f.close_code : -1);
    if (rc == 1)
        frame_dispose(&f);
    return ok;
}

/* The server ends its side: EOF with nothing unread before it. */
static bool expect_eof(struct peer *p)
{
    struct frame f;
    int rc = read_frame(p, &f);
    if (rc == 1)
        frame_dispose(&f);
    return rc == -1 && p->in.len == p->in_off;
}

/* ---------------------------------------------------------------- peers */

static struct peer *peer_new(const char *ip)
{
    struct peer *p = xcalloc(1, sizeof(*p));
    p->fd = -1;
    snprintf(p->ip, sizeof(p->ip), "%s", ip);
    util_buf_init(&p->in);
    return p;
}

/* A socketpair whose server end the loops adopt, with buffered given as read
 * past the headers and early written to the socket first. The slot for p->ip
 * must have been admitted. sndbuf > 0 shrinks the server's send buffer. */
static bool peer_adopt_admitted(struct peer *p, const void *buffered, size_t buffered_len,
                                const void *early, size_t early_len, int sndbuf)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    if (sndbuf > 0)
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    p->fd = sv[0];
    if (early_len > 0 && !write_all(p->fd, early, early_len))
        return false;
    loops_adopt(fx.loops, sv[1], NULL, buffered, buffered_len, p->ip, &handler, p);
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
    if (!client_text(p, text) || !WAIT_UNTIL(p->conn != NULL))
        return NULL;
    pthread_mutex_lock(&fx.lock);
    struct conn *conn = p->conn;
    pthread_mutex_unlock(&fx.lock);
    return conn;
}

static void peer_close_fd(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

/* Close the client end, wait for on_closed, free. False when on_closed did
 * not run in time (p is leaked then: the loop still points at it). */
static bool peer_free(struct peer *p)
{
    if (!p)
        return true;
    peer_close_fd(p);
    if (!WAIT_UNTIL(p->closed))
        return false;
    conn_unref(p->conn);
    for (int i = 0; i < p->msg_count; i++)
        free(p->msgs[i]);
    util_buf_dispose(&p->in);
    free(p);
    return true;
}

static bool peer_is_closed(struct peer *p)
{
    pthread_mutex_lock(&fx.lock);
    bool closed = p->closed;
    pthread_mutex_unlock(&fx.lock);
    return closed;
}

/* True when the handler recorded text as message i. */
static bool peer_msg_is(struct peer *p, int i, const char *text)
{
    pthread_mutex_lock(&fx.lock);
    bool ok = i < p->msg_count && strcmp(p->msgs[i], text) == 0;
    if (!ok)
        fprintf(stderr, "message %d: expected \"%s\", got \"%s\"\n", i, text,
                i < p->msg_count ? p->msgs[i] : "(none)");
    pthread_mutex_unlock(&fx.lock);
    return ok;
}

/* ---------------------------------------------------------------- tests */

static int test_text_reaches_on_message(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(peer_bind(p, "hello") != NULL);
    TEST_ASSERT(client_text(p, "{\"type\":\"ping\"}"));
    /* a message in two frames (text + continuation) arrives once, whole */
    struct util_buf b;
    util_buf_init(&b);
    unsigned char h[6] = {0x01, 0x80 | 3, 0, 0, 0, 0}; /* text, no fin, zero mask */
    util_buf_append(&b, h, sizeof(h));
    util_buf_append(&b, "abc", 3);
    client_frame(&b, 0x0, "def", 3, true); /* continuation with fin */
    TEST_ASSERT(write_all(p->fd, b.data, b.len));
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
    for (int i = 0; i < 3; i++) {
        p[i] = peer_open(false, 0);
        TEST_ASSERT(p[i]);
        TEST_ASSERT(peer_bind(p[i], "hello") != NULL);
    }
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
            TEST_ASSERT_INT(read_frame(p[i], &f), 1);
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
    TEST_ASSERT(expect_frame(p[1], OP_TEXT, "{\"x\":1}"));
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
    TEST_ASSERT(client_send(p, OP_PING, "are-you-there", 13));
    TEST_ASSERT(expect_frame(p, OP_PONG, "are-you-there"));
    TEST_ASSERT(client_send(p, OP_PING, "", 0));
    TEST_ASSERT(expect_frame(p, OP_PONG, ""));
    TEST_ASSERT(client_send(p, OP_PONG, "unsolicited", 11)); /* ignored */
    TEST_ASSERT(client_send(p, OP_PING, "again", 5));
    TEST_ASSERT(expect_frame(p, OP_PONG, "again"));
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
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    struct conn *conn = peer_bind(p, "hello");
    TEST_ASSERT(conn);
    TEST_ASSERT(client_close(p, 1000, "bye"));
    TEST_ASSERT(expect_close(p, 1000));
    TEST_ASSERT(expect_eof(p));
    TEST_ASSERT(conn_is_closing(conn));
    TEST_ASSERT_INT(conn_send_text(conn, "{}", 2), -EPIPE);
    peer_close_fd(p);
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
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    struct conn *conn = peer_bind(p, "hello");
    TEST_ASSERT(conn);
    TEST_ASSERT_INT(conn_send_text(conn, "one", 3), 0);
    TEST_ASSERT_INT(conn_send_text(conn, "two", 3), 0);
    conn_close(conn, 4000, "done here");
    conn_close(conn, 4001, "second close is ignored");
    TEST_ASSERT_INT(conn_send_text(conn, "three", 5), -EPIPE);
    TEST_ASSERT(expect_frame(p, OP_TEXT, "one"));
    TEST_ASSERT(expect_frame(p, OP_TEXT, "two"));
    struct frame f;
    TEST_ASSERT_INT(read_frame(p, &f), 1);
    TEST_ASSERT_INT(f.opcode, OP_CLOSE);
    TEST_ASSERT_INT(f.close_code, 4000);
    TEST_ASSERT_STR(f.data, "done here");
    frame_dispose(&f);
    TEST_ASSERT(expect_eof(p));
    TEST_ASSERT(client_close(p, 4000, "")); /* the answer, then our FIN */
    TEST_ASSERT(peer_free(p));
    fx_stop();
    return 0;
}

/* An unmasked client frame breaks RFC 6455: close 1002, nothing delivered. */
static int test_unmasked_frame_gets_1002(void)
{
    fx_init();
    TEST_ASSERT(fx_start());
    struct peer *p = peer_open(false, 0);
    TEST_ASSERT(p);
    TEST_ASSERT(peer_bind(p, "hello") != NULL);
    struct util_buf b;
    util_buf_init(&b);
    client_frame(&b, OP_TEXT, "naked", 5, false);
    TEST_ASSERT(write_all(p->fd, b.data, b.len));
    util_buf_dispose(&b);
    TEST_ASSERT(expect_close(p, PROTO_CLOSE_PROTOCOL));
    TEST_ASSERT(expect_eof(p));
    TEST_ASSERT_INT(atomic_load(&fx.metrics->frames_rejected), 1);
    pthread_mutex_lock(&fx.lock);
    int count = p->msg_count;
    pthread_mutex_unlock(&fx.lock);
    TEST_ASSERT_INT(count, 1); /* only the hello */
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
    TEST_ASSERT(client_text(p, text)); /* exactly the limit: fine */
    TEST_ASSERT(WAIT_UNTIL(p->msg_count == 1));
    struct util_buf b;
    util_buf_init(&b);
    char big[101];
    memset(big, 'b', sizeof(big));
    client_frame(&b, OP_TEXT, big, sizeof(big), true);
    TEST_ASSERT(write_all(p->fd, b.data, b.len));
    util_buf_dispose(&b);
    TEST_ASSERT(expect_close(p, PROTO_CLOSE_TOO_BIG));
    TEST_ASSERT(expect_eof(p));
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
    TEST_ASSERT(write_all(p->fd, b.data, 8)); /* header, mask and two bytes */
    util_buf_dispose(&b);
    TEST_ASSERT(expect_close(p, PROTO_CLOSE_POLICY));
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
        TEST_ASSERT(expect_frame(answering, OP_PING, ""));
        TEST_ASSERT(client_send(answering, OP_PONG, "", 0));
    }
    TEST_ASSERT(expect_frame(silent, OP_PING, ""));
    TEST_ASSERT(expect_close(silent, PROTO_CLOSE_GOING_AWAY));
    TEST_ASSERT(peer_free(silent));
    TEST_ASSERT(expect_frame(answering, OP_PING, ""));
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
    if (read_frame(p, &f) != 1)
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
    struct peer *stuck = peer_open(false, 4096);
    struct peer *late = peer_open(false, 4096);
    struct peer *reader = peer_open(false, 0);
    TEST_ASSERT(stuck && late && reader);
    TEST_ASSERT(peer_bind(stuck, "hello") && peer_bind(late, "hello") &&
                peer_bind(reader, "hello"));
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
        TEST_ASSERT_INT(read_frame(late, &fr), 1);
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
    TEST_ASSERT(expect_eof(late));
    TEST_ASSERT(peer_free(late));

    /* stuck never reads: the loop gives up after its close linger */
    TEST_ASSERT(WAIT_UNTIL(stuck->closed));
    TEST_ASSERT(!peer_is_closed(reader));
    TEST_ASSERT(peer_free(stuck));
    TEST_ASSERT_INT(conn_send_text(reader->conn, "still", 5), 0);
    TEST_ASSERT(expect_frame(reader, OP_TEXT, "still"));
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
    struct peer *p = peer_open(false, 4096);
    TEST_ASSERT(p);
    TEST_ASSERT(peer_bind(p, "hello"));
    int rc = 0, sent = 0;
    while (rc == 0 && sent < 5000) {
        struct loop_frame *f = numbered_frame(sent, 100);
        rc = conn_send(p->conn, f);
        loop_frame_unref(f);
        sent++;
    }
    TEST_ASSERT_INT(rc, -ENOBUFS);
    TEST_ASSERT_INT(atomic_load(&fx.metrics->slow_consumers), 1);
    for (int i = 0;; i++) {
        struct frame fr;
        TEST_ASSERT_INT(read_frame(p, &fr), 1);
        bool close = fr.opcode == OP_CLOSE;
        int code = fr.close_code;
        frame_dispose(&fr);
        if (close) {
            TEST_ASSERT_INT(code, PROTO_CLOSE_TRY_AGAIN);
            break;
        }
        TEST_ASSERT(i < sent);
    }
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
    struct peer *p = peer_open(false, 4096);
    TEST_ASSERT(p);
    TEST_ASSERT(peer_bind(p, "hello"));
    for (int i = 0; i < 40; i++) {
        struct loop_frame *f = numbered_frame(i, 1000);
        int rc = conn_send_replay(p->conn, f);
        loop_frame_unref(f);
        TEST_ASSERT_INT(rc, 0);
    }
    TEST_ASSERT(conn_is_backlogged(p->conn));
    TEST_ASSERT(!conn_is_closing(p->conn));
    conn_want_drain(p->conn);
    pthread_mutex_lock(&fx.lock);
    int drains = p->drains; /* the socket holds a few KB: 40 KB cannot have drained */
    pthread_mutex_unlock(&fx.lock);
    TEST_ASSERT_INT(drains, 0);
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
    struct peer *greeted = peer_open(true, 0);
    TEST_ASSERT(greeted);
    TEST_ASSERT(peer_bind(greeted, "hello"));
    int64_t opened = util_mono_ms();
    struct peer *silent = peer_open(false, 0);
    TEST_ASSERT(silent);
    TEST_ASSERT(client_text(silent, "not a hello")); /* a message is not a hello */
    TEST_ASSERT(expect_close(silent, PROTO_CLOSE_POLICY));
    TEST_ASSERT(util_mono_ms() - opened >= 300);
    TEST_ASSERT(expect_eof(silent));
    TEST_ASSERT(peer_free(silent));
    /* greeted was opened earlier: its deadline passed too, in the same sweep
     * or before. A ping round trip shows no close frame was queued for it. */
    TEST_ASSERT(client_send(greeted, OP_PING, "alive", 5));
    TEST_ASSERT(expect_frame(greeted, OP_PONG, "alive"));
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
    TEST_ASSERT(client_close(p, 1000, ""));
    TEST_ASSERT(expect_close(p, 1000));
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
        struct frame f;
        r->codes[i] = -1;
        while (read_frame(r->peers[i], &f) == 1) {
            bool close = f.opcode == OP_CLOSE;
            int code = f.close_code;
            frame_dispose(&f);
            if (close) {
                r->codes[i] = code;
                break;
            }
        }
        peer_close_fd(r->peers[i]);
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
    for (int i = 0; i < 4; i++) {
        p[i] = peer_open(false, 0);
        TEST_ASSERT(p[i]);
        TEST_ASSERT(peer_bind(p[i], "hello"));
        TEST_ASSERT_INT(conn_send_text(p[i]->conn, "queued", 6), 0);
    }
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
    for (int i = 0; i < 3; i++) {
        p[i] = peer_open(false, 0);
        TEST_ASSERT(p[i]);
        TEST_ASSERT(peer_bind(p[i], "hello"));
    }
    loops_free(fx.loops); /* joins the threads: on_closed has run when it returns */
    fx.loops = NULL;
    for (int i = 0; i < 3; i++) {
        TEST_ASSERT(peer_is_closed(p[i]));
        struct frame f;
        int rc;
        while ((rc = read_frame(p[i], &f)) == 1)
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
          TEST_CASE(test_replay_over_cap_and_drain), TEST_CASE(test_hello_deadline),
          TEST_CASE(test_admission_limits), TEST_CASE(test_close_all),
          TEST_CASE(test_free_closes_open_connections))
