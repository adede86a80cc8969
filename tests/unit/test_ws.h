/* test_ws: the client side of a WebSocket over a socketpair(AF_UNIX), shared
 * by the unit tests that drive real event loops (test_loop, test_hub). It owns
 * the test's end of a connection (struct client, which each test's peer
 * embeds): the socketpair whose other end goes to loops_adopt, masked client
 * frames out, server frames read and parsed within WAIT_MS, and the
 * expectations on them. Also what the tests' handlers and the test thread
 * share (test_sync, WAIT_UNTIL, LOCKED), POLL_UNTIL, and the fixture pieces
 * both tests start their loops with. */
#ifndef TURBOCHAT_TEST_WS_H
#define TURBOCHAT_TEST_WS_H

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
#include "util.h"

#define WAIT_MS 10000 /* any single wait; generous for sanitizer builds */
#define OP_TEXT 0x1
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

/* ---------------------------------------------------------------- waits */

/* What the handlers on the loop threads share with the test thread: one per
 * test executable. */
static struct {
    pthread_mutex_t lock; /* guards every peer's handler-side fields */
    pthread_cond_t cond;  /* broadcast whenever a handler ran */
    bool cond_ready;      /* fixture_once ran */
} test_sync = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Evaluate pred under test_sync.lock until it holds or WAIT_MS pass; true
 * when it held. */
#define WAIT_UNTIL(pred)                                                                           \
    __extension__({                                                                                \
        int64_t wait_deadline_ = util_mono_ms() + WAIT_MS;                                         \
        pthread_mutex_lock(&test_sync.lock);                                                       \
        while (!(pred) && util_mono_ms() < wait_deadline_)                                         \
            util_cond_wait_ms(&test_sync.cond, &test_sync.lock, wait_deadline_ - util_mono_ms());  \
        bool wait_ok_ = (pred);                                                                    \
        pthread_mutex_unlock(&test_sync.lock);                                                     \
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

/* The value of expr, read under test_sync.lock (a field a handler writes). */
#define LOCKED(expr)                                                                               \
    __extension__({                                                                                \
        pthread_mutex_lock(&test_sync.lock);                                                       \
        __typeof__(expr) locked_value_ = (expr);                                                   \
        pthread_mutex_unlock(&test_sync.lock);                                                     \
        locked_value_;                                                                             \
    })

/* ---------------------------------------------------------------- fixture */

/* Once per process: test_sync.cond waits on the monotonic clock, and SIGPIPE
 * is ignored as in main.c (the loops write with writev). */
static inline void fixture_once(void)
{
    if (test_sync.cond_ready)
        return;
    util_cond_init_monotonic(&test_sync.cond);
    test_sync.cond_ready = true;
    signal(SIGPIPE, SIG_IGN);
}

/* The settings a test starts from, with loop_threads loops; free() it. No
 * server ping and no hello deadline disturb a test unless it asks. */
static inline struct config *fixture_config(int loop_threads)
{
    struct config *c = xcalloc(1, sizeof(*c));
    c->threads = 4;
    c->request_timeout_ms = 10000;
    c->ws_ping_ms = 600000;
    c->hello_timeout_ms = 600000;
    c->loop_threads = loop_threads;
    c->max_connections = 64;
    c->max_connections_per_ip = 0;
    c->max_frame_bytes = 16384;
    c->outbound_max_frames = 4096;
    c->outbound_max_kib = 1024;
    c->max_rooms_per_conn = 50;
    c->replay_max = 10000;
    return c;
}

/* loops_create, or NULL with the reason printed. */
static inline struct loops *fixture_loops(const struct config *cfg, struct metrics *metrics)
{
    char err[256] = "";
    struct loops *loops = loops_create(cfg, metrics, err, sizeof(err));
    if (!loops)
        fprintf(stderr, "loops_create: %s\n", err);
    return loops;
}

/* ---------------------------------------------------------------- client end */

/* The test's end of one connection; one thread at a time uses it. */
struct client {
    int fd;             /* -1 until connected and once hung up */
    struct util_buf in; /* bytes read from the server */
    size_t in_off;      /* of them, already parsed */
};

static inline void client_init(struct client *c)
{
    c->fd = -1;
    util_buf_init(&c->in);
    c->in_off = 0;
}

/* A new socketpair: c gets one end, the other is returned for loops_adopt
 * (-1 on failure). sndbuf > 0 shrinks the server end's send buffer, so that
 * the outbound queue, not the socket, holds what the client has not read. */
static inline int client_connect(struct client *c, int sndbuf)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    if (sndbuf > 0)
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    c->fd = sv[0];
    return sv[1];
}

/* Close the client end (the server reads EOF); again does nothing. */
static inline void client_hang_up(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static inline void client_dispose(struct client *c)
{
    client_hang_up(c);
    util_buf_dispose(&c->in);
}

static inline bool write_all(int fd, const void *data, size_t len)
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
static inline void client_frame(struct util_buf *out, int opcode, const void *payload, size_t len,
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

/* Write one client frame, masked unless told otherwise. */
static inline bool client_send_frame(struct client *c, int opcode, const void *payload, size_t len,
                                     bool masked)
{
    struct util_buf b;
    util_buf_init(&b);
    client_frame(&b, opcode, payload, len, masked);
    bool ok = write_all(c->fd, b.data, b.len);
    util_buf_dispose(&b);
    return ok;
}

static inline bool client_send(struct client *c, int opcode, const void *payload, size_t len)
{
    return client_send_frame(c, opcode, payload, len, true);
}

static inline bool client_text(struct client *c, const char *text)
{
    return client_send(c, OP_TEXT, text, strlen(text));
}

/* A close frame with code and reason (under 126 bytes). */
static inline bool client_close(struct client *c, int code, const char *reason)
{
    char payload[128];
    size_t len = strlen(reason);
    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    memcpy(payload + 2, reason, len);
    return client_send(c, OP_CLOSE, payload, 2 + len);
}

/* One server frame as read by the client; frame_dispose it. */
struct frame {
    int opcode;
    char *data; /* payload, NUL-terminated; for CLOSE what follows the code */
    size_t len;
    int close_code;     /* CLOSE: the code, 1005 when none */
    unsigned char *raw; /* header and payload exactly as read */
    size_t raw_len;
};

static inline void frame_dispose(struct frame *f)
{
    free(f->data);
    free(f->raw);
    memset(f, 0, sizeof(*f));
}

/* Parse one whole frame from the bytes already read; false when incomplete. */
static inline bool parse_frame(struct client *c, struct frame *f, bool *malformed)
{
    const unsigned char *b = (const unsigned char *)c->in.data + c->in_off;
    size_t avail = c->in.len - c->in_off;
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
    c->in_off += f->raw_len;
    if (c->in_off == c->in.len) {
        c->in.len = 0;
        c->in_off = 0;
    } else if (c->in_off > 65536) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    return true;
}

/* Read the next server frame within WAIT_MS: 1, 0 on timeout, -1 at EOF,
 * on a read error or a malformed frame. */
static inline int read_frame(struct client *c, struct frame *f)
{
    int64_t deadline = util_mono_ms() + WAIT_MS;
    for (;;) {
        bool malformed;
        if (parse_frame(c, f, &malformed))
            return 1;
        if (malformed) {
            fprintf(stderr, "malformed server frame\n");
            return -1;
        }
        int64_t left = deadline - util_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n <= 0)
            continue; /* EINTR or the deadline: checked above */
        char buf[65536];
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        util_buf_append(&c->in, buf, (size_t)r);
    }
}

/* The next frame is opcode with exactly payload (NULL: any payload). */
static inline bool expect_frame(struct client *c, int opcode, const char *payload)
{
    struct frame f;
    int rc = read_frame(c, &f);
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
static inline bool expect_close(struct client *c, int code)
{
    struct frame f;
    int rc = read_frame(c, &f);
    bool ok = rc == 1 && f.opcode == OP_CLOSE && f.close_code == code;
    if (!ok)
        fprintf(stderr, "expected close %d, got rc=%d opcode=%d code=%d\n", code, rc,
                rc == 1 ? f.opcode : -1, rc == 1 ? f.close_code : -1);
    if (rc == 1)
        frame_dispose(&f);
    return ok;
}

/* The server ends its side: EOF with nothing unread before it. */
static inline bool expect_eof(struct client *c)
{
    struct frame f;
    int rc = read_frame(c, &f);
    if (rc == 1)
        frame_dispose(&f);
    return rc == -1 && c->in.len == c->in_off;
}

#endif
