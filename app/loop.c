/* loop: epoll threads that own upgraded WebSockets. Each connection belongs to
 * one loop for its whole life; only that loop reads, writes, closes or frees
 * its socket and TLS session. Other threads append shared frames to the
 * connection's queue under its lock and, when it was idle, put it on the
 * loop's ready list and wake the loop through an eventfd. The loop writes
 * with sendmsg, a writev without SIGPIPE (SSL_write for TLS), until EAGAIN
 * and then waits for EPOLLOUT. A sweep every LOOP_SWEEP_MS enforces the
 * deadlines.
 * Lock order: conn->lock, then loop->lock; loops->admit_lock alone. */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "strmap.h"
#include "util.h"
#include "wsframe.h"

#define LOOP_READ_BYTES (64 * 1024) /* one read into the loop's buffer */
#define LOOP_READS_PER_EVENT 4      /* then other connections get a turn */
#define LOOP_IOV_MAX 64             /* frames per writev */
#define LOOP_EVENTS_MAX 256
#define LOOP_SWEEP_MS 250         /* deadline resolution */
#define LOOP_CLOSE_LINGER_MS 2000 /* wait for the peer's close after ours */
#define LOOP_CLOSE_REASON_MAX 64
#define LOOP_QUEUE_MIN_CAP 8

/* One frame in a connection's queue. */
struct queue_entry {
    struct loop_frame *frame;
    bool replay; /* queued by conn_send_replay: outside the caps */
};

enum conn_state {
    CONN_NEW,     /* adopted, not yet registered by its loop */
    CONN_OPEN,    /* reading and writing */
    CONN_CLOSING, /* our close frame is queued: reads are discarded */
    CONN_CLOSED,  /* socket closed; only references remain */
};

struct loop;

struct conn {
    struct loop *loop;
    atomic_int refs;
    const struct conn_handler *handler;
    void *ctx;
    char ip[48];

    /* loop thread only */
    int fd;
    SSL *ssl;
    enum conn_state state;
    struct wsframe_decoder decoder;
    unsigned char *buffered; /* bytes read by CivetWeb past the headers */
    size_t buffered_len;
    bool want_out; /* EPOLLOUT is armed */
    bool hello_done;
    bool ping_outstanding;
    int64_t opened_ms;
    int64_t last_read_ms;
    int64_t ping_sent_ms;
    int64_t mid_frame_since_ms; /* 0 when no frame is partly received */
    int64_t closing_since_ms;
    int64_t expires_ms;        /* wall clock; 0: the credentials do not end */
    const char *expiry_reason; /* the close reason once expires_ms passed */
    struct conn *prev;         /* loop->conns, loop thread only */
    struct conn *next;

    pthread_mutex_t lock;      /* guards the fields below */
    struct queue_entry *queue; /* ring buffer */
    size_t q_head;
    size_t q_len;
    size_t q_cap;
    size_t q_bytes;
    size_t replay_len;   /* entries of q_len that are replay pages */
    size_t replay_bytes; /* their bytes, not held against the caps */
    size_t head_written; /* bytes of the head frame already written */
    size_t in_flight;    /* head entries a write in progress points into */
    bool closing;        /* the close frame is queued: nothing more is accepted */
    bool drain_wanted;
    bool scheduled;          /* on the loop's ready list */
    struct conn *next_ready; /* under loop->lock */
};

struct loop {
    struct loops *loops;
    pthread_t thread;
    int epfd;
    int wakefd;
    unsigned char *rbuf; /* LOOP_READ_BYTES, loop thread only */
    struct conn *conns;  /* every connection of this loop, loop thread only */
    atomic_long count;   /* connections owned */

    pthread_mutex_t lock;         /* guards the ready list and stopping */
    UTIL_FIFO(struct conn) ready; /* connections with work for this loop */
    bool stopping;
    int close_all_code; /* shutdown: close every connection with this, 0 none */
    const char *close_all_reason;
};

struct loops {
    const struct config *config;
    struct metrics *metrics;
    struct loop *loops;
    int slots; /* loops allocated */
    int count; /* loops started */
    long max_connections;

    pthread_mutex_t admit_lock;
    pthread_cond_t admit_cond; /* signalled when admitted reaches 0 */
    long admitted;             /* slots held, node-wide */
    struct strmap *per_ip;     /* ip -> slots held (intptr_t) */
};

static void conn_finish(struct conn *conn);

/* ---------------------------------------------------------------- frames */

static struct loop_frame *frame_alloc(int opcode, const void *payload, size_t len, uint64_t msg_id)
{
    unsigned char header[10];
    size_t header_len = wsframe_encode_header(header, opcode, len);
    struct loop_frame *f = xmalloc(sizeof(*f) + header_len + len);
    atomic_init(&f->refs, 1);
    f->msg_id = msg_id;
    f->len = header_len + len;
    memcpy(f->wire, header, header_len);
    if (len > 0)
        memcpy(f->wire + header_len, payload, len);
    return f;
}

struct loop_frame *loop_frame_text(const char *json, size_t len, uint64_t msg_id)
{
    return frame_alloc(WSFRAME_TEXT, json, len, msg_id);
}

static struct loop_frame *frame_close(int code, const char *reason)
{
    unsigned char payload[2 + LOOP_CLOSE_REASON_MAX];
    size_t reason_len = strnlen(reason, LOOP_CLOSE_REASON_MAX);
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, reason_len);
    return frame_alloc(WSFRAME_CLOSE, payload, 2 + reason_len, 0);
}

void loop_frame_ref(struct loop_frame *f)
{
    if (f)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void loop_frame_unref(struct loop_frame *f)
{
    if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}

/* ---------------------------------------------------------------- queue (conn->lock held) */

static size_t queue_limit_bytes(const struct conn *conn)
{
    return (size_t)conn->loop->loops->config->outbound_max_kib * 1024;
}

static struct queue_entry *entry_at(const struct conn *conn, size_t i)
{
    return &conn->queue[(conn->q_head + i) % conn->q_cap];
}

static struct loop_frame *queue_at(const struct conn *conn, size_t i)
{
    return entry_at(conn, i)->frame;
}

static void queue_push(struct conn *conn, struct loop_frame *f, bool replay)
{
    if (conn->q_len == conn->q_cap) {
        size_t cap = conn->q_cap ? conn->q_cap * 2 : LOOP_QUEUE_MIN_CAP;
        struct queue_entry *q = xmalloc(cap * sizeof(*q));
        for (size_t i = 0; i < conn->q_len; i++)
            q[i] = *entry_at(conn, i);
        free(conn->queue);
        conn->queue = q;
        conn->q_cap = cap;
        conn->q_head = 0;
    }
    loop_frame_ref(f);
    conn->queue[(conn->q_head + conn->q_len) % conn->q_cap] = (struct queue_entry){f, replay};
    conn->q_len++;
    conn->q_bytes += f->len;
    conn->replay_len += replay;
    conn->replay_bytes += replay ? f->len : 0;
    atomic_fetch_add(&conn->loop->loops->metrics->outbound_queued, 1);
}

/* Take entry i's frame out of the counts (the caller moves the ring). */
static struct loop_frame *entry_forget(struct conn *conn, size_t i)
{
    struct queue_entry *e = entry_at(conn, i);
    conn->q_len--;
    conn->q_bytes -= e->frame->len;
    conn->replay_len -= e->replay;
    conn->replay_bytes -= e->replay ? e->frame->len : 0;
    atomic_fetch_sub(&conn->loop->loops->metrics->outbound_queued, 1);
    return e->frame;
}

static void queue_pop(struct conn *conn)
{
    struct loop_frame *f = entry_forget(conn, 0);
    conn->q_head = (conn->q_head + 1) % conn->q_cap;
    conn->head_written = 0;
    loop_frame_unref(f);
    if (conn->q_len == 0 && conn->q_cap > LOOP_QUEUE_MIN_CAP) {
        free(conn->queue); /* an idle connection keeps no large ring */
        conn->queue = NULL;
        conn->q_cap = 0;
        conn->q_head = 0;
    }
}

/* Drop what is queued, but a head frame partly written (the stream must stay
 * whole) and the frames a write in progress points into. */
static void queue_drop_unsent(struct conn *conn)
{
    size_t keep = conn->head_written > 0 ? 1 : 0;
    if (conn->in_flight > keep)
        keep = conn->in_flight;
    while (conn->q_len > keep)
        loop_frame_unref(entry_forget(conn, conn->q_len - 1));
}

/* ---------------------------------------------------------------- waking a loop */

static bool on_loop_thread(const struct loop *loop)
{
    return pthread_equal(pthread_self(), loop->thread);
}

/* Put conn on its loop's ready list and wake the loop. conn->lock held. */
static void schedule(struct conn *conn)
{
    if (conn->scheduled)
        return;
    conn->scheduled = true;
    conn_ref(conn);
    struct loop *loop = conn->loop;
    pthread_mutex_lock(&loop->lock);
    bool was_empty = loop->ready.head == NULL;
    UTIL_FIFO_PUSH(&loop->ready, conn, next_ready);
    pthread_mutex_unlock(&loop->lock);
    if (was_empty && !on_loop_thread(loop)) {
        uint64_t one = 1;
        ssize_t n = write(loop->wakefd, &one, sizeof(one));
        (void)n; /* a full counter (EAGAIN) already wakes the loop */
    }
}

static struct conn *ready_take_all(struct loop *loop)
{
    struct conn *list;
    size_t n;
    pthread_mutex_lock(&loop->lock);
    UTIL_FIFO_TAKE(&loop->ready, SIZE_MAX, next_ready, list, n);
    pthread_mutex_unlock(&loop->lock);
    (void)n;
    return list;
}

/* ---------------------------------------------------------------- sending (any thread) */

/* Mark conn closing with a close frame after what is queued. conn->lock held. */
static void close_locked(struct conn *conn, int code, const char *reason)
{
    if (conn->closing)
        return;
    conn->closing = true;
    struct loop_frame *close = frame_close(code, reason);
    queue_push(conn, close, false);
    loop_frame_unref(close);
    schedule(conn);
}

/* Queue f; a replay frame is not held against the caps (see conn_send_replay). */
static int enqueue(struct conn *conn, struct loop_frame *f, bool replay)
{
    int rc = 0;
    pthread_mutex_lock(&conn->lock);
    const struct config *config = conn->closing ? NULL : conn->loop->loops->config;
    if (!config) {
        rc = -EPIPE; /* closing: the loops may be gone already */
    } else if (!replay && (conn->q_len - conn->replay_len >= (size_t)config->outbound_max_frames ||
                           conn->q_bytes - conn->replay_bytes + f->len > queue_limit_bytes(conn))) {
        bool frames_full = conn->q_len - conn->replay_len >= (size_t)config->outbound_max_frames;
        queue_drop_unsent(conn);
        close_locked(conn, PROTO_CLOSE_TRY_AGAIN, "slow consumer");
        atomic_fetch_add(&conn->loop->loops->metrics->slow_consumers, 1);
        log_msg(LOG_WARN, "slow_consumer", "remote=%s limit=%s", log_value(conn->ip),
                frames_full ? "outbound_max_frames" : "outbound_max_kib");
        rc = -ENOBUFS;
    } else {
        queue_push(conn, f, replay);
        schedule(conn);
    }
    pthread_mutex_unlock(&conn->lock);
    return rc;
}

int conn_send(struct conn *conn, struct loop_frame *f)
{
    return enqueue(conn, f, false);
}

int conn_send_replay(struct conn *conn, struct loop_frame *f)
{
    return enqueue(conn, f, true);
}

int conn_send_text(struct conn *conn, const char *json, size_t len)
{
    struct loop_frame *f = loop_frame_text(json, len, 0);
    int rc = conn_send(conn, f);
    loop_frame_unref(f);
    return rc;
}

void conn_close(struct conn *conn, int code, const char *reason)
{
    pthread_mutex_lock(&conn->lock);
    close_locked(conn, code, reason);
    pthread_mutex_unlock(&conn->lock);
}

bool conn_is_closing(struct conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    bool closing = conn->closing;
    pthread_mutex_unlock(&conn->lock);
    return closing;
}

void conn_want_drain(struct conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    conn->drain_wanted = true;
    schedule(conn); /* the queue may be short already */
    pthread_mutex_unlock(&conn->lock);
}

bool conn_is_backlogged(struct conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    bool backlogged = conn->q_bytes >= queue_limit_bytes(conn) / 2;
    pthread_mutex_unlock(&conn->lock);
    return backlogged;
}

void conn_hello_done(struct conn *conn)
{
    conn->hello_done = true;
}

void conn_set_expiry(struct conn *conn, int64_t expires_ms, const char *reason)
{
    conn->expires_ms = expires_ms;
    conn->expiry_reason = reason;
}

/* True, after closing it with 1008, when conn's credentials have ended. */
static bool conn_close_if_expired(struct conn *conn)
{
    if (!conn->expires_ms || util_now_ms() < conn->expires_ms)
        return false;
    conn_close(conn, PROTO_CLOSE_POLICY, conn->expiry_reason);
    return true;
}

const char *conn_remote_ip(const struct conn *conn)
{
    return conn->ip;
}

void conn_ref(struct conn *conn)
{
    atomic_fetch_add_explicit(&conn->refs, 1, memory_order_relaxed);
}

void conn_unref(struct conn *conn)
{
    if (!conn || atomic_fetch_sub_explicit(&conn->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_lock(&conn->lock);
    while (conn->q_len > 0)
        queue_pop(conn);
    pthread_mutex_unlock(&conn->lock);
    free(conn->queue);
    free(conn->buffered);
    wsframe_decoder_dispose(&conn->decoder);
    pthread_mutex_destroy(&conn->lock);
    free(conn);
}

/* ---------------------------------------------------------------- epoll */

static void set_events(struct conn *conn, bool want_out)
{
    if (conn->want_out == want_out || conn->state == CONN_CLOSED)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0),
                             .data.ptr = conn};
    if (epoll_ctl(conn->loop->epfd, EPOLL_CTL_MOD, conn->fd, &ev) == 0)
        conn->want_out = want_out;
}

/* ---------------------------------------------------------------- writing (loop thread) */

enum io_result { IO_DONE, IO_AGAIN, IO_FAILED };

/* Bytes of the queue from its head, into iov. conn->lock held. */
static int queue_iov(struct conn *conn, struct iovec *iov, int max)
{
    int n = 0;
    for (size_t i = 0; i < conn->q_len && n < max; i++, n++) {
        struct loop_frame *f = queue_at(conn, i);
        size_t skip = i == 0 ? conn->head_written : 0;
        iov[n].iov_base = f->wire + skip;
        iov[n].iov_len = f->len - skip;
    }
    return n;
}

/* Account for written bytes. conn->lock held. Returns true when a close frame went out. */
static bool queue_consume(struct conn *conn, size_t written)
{
    bool close_sent = false;
    while (written > 0 && conn->q_len > 0) {
        struct loop_frame *f = queue_at(conn, 0);
        size_t left = f->len - conn->head_written;
        if (written < left) {
            conn->head_written += written;
            break;
        }
        written -= left;
        close_sent = close_sent || (f->wire[0] & 0x0F) == WSFRAME_CLOSE;
        queue_pop(conn);
    }
    return close_sent;
}

static ssize_t write_plain(struct conn *conn, const struct iovec *iov, int n)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(conn->fd, &msg, MSG_NOSIGNAL); /* writev without SIGPIPE */
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    return w < 0 ? -1 : w;
}

/* One SSL_write of the head frame; a retry after WANT_WRITE repeats the same
 * pointer and length, as OpenSSL requires. */
static ssize_t write_tls(struct conn *conn, const struct iovec *iov, int n)
{
    (void)n;
    ERR_clear_error();
    int w = SSL_write(conn->ssl, iov[0].iov_base, (int)iov[0].iov_len);
    if (w > 0)
        return w;
    int err = SSL_get_error(conn->ssl, w);
    return err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ ? 0 : -1;
}

/* Write until the queue is empty or the socket is full. */
static enum io_result write_queue(struct conn *conn, bool *close_sent)
{
    struct iovec iov[LOOP_IOV_MAX];
    for (;;) {
        pthread_mutex_lock(&conn->lock);
        int n = queue_iov(conn, iov, conn->ssl ? 1 : LOOP_IOV_MAX);
        conn->in_flight = (size_t)n; /* an overflow elsewhere must not free them */
        pthread_mutex_unlock(&conn->lock);
        if (n == 0)
            return IO_DONE;
        ssize_t w = conn->ssl ? write_tls(conn, iov, n) : write_plain(conn, iov, n);
        pthread_mutex_lock(&conn->lock);
        /* An SSL_write that would block must be retried with the same frame. */
        conn->in_flight = w == 0 && conn->ssl ? (size_t)n : 0;
        if (w > 0)
            *close_sent = queue_consume(conn, (size_t)w) || *close_sent;
        pthread_mutex_unlock(&conn->lock);
        if (w < 0)
            return IO_FAILED;
        if (w == 0)
            return IO_AGAIN;
    }
}

/* Our close frame is out: half-close and wait (briefly) for the peer to end. */
static void begin_linger(struct conn *conn)
{
    if (conn->ssl)
        SSL_shutdown(conn->ssl); /* close_notify; its answer is not awaited */
    shutdown(conn->fd, SHUT_WR);
    conn->state = CONN_CLOSING;
    if (!conn->closing_since_ms)
        conn->closing_since_ms = util_mono_ms();
}

/* Tell the owner the queue is under half its limit, once per conn_want_drain. */
static void call_drain_if_wanted(struct conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    bool call = conn->drain_wanted && !conn->closing && conn->q_bytes < queue_limit_bytes(conn) / 2;
    if (call)
        conn->drain_wanted = false;
    pthread_mutex_unlock(&conn->lock);
    if (call && conn->handler->on_drain)
        conn->handler->on_drain(conn->ctx, conn);
}

/* Write what the socket takes, then tell the owner when the queue has room
 * again; what it queues then (the next replay page) schedules the connection
 * for the loop's next pass. */
static void conn_flush(struct conn *conn)
{
    if (conn->state == CONN_CLOSED || conn->state == CONN_NEW)
        return;
    bool close_sent = false;
    enum io_result r = write_queue(conn, &close_sent);
    if (r == IO_FAILED) {
        conn_finish(conn);
        return;
    }
    if (close_sent && conn->state == CONN_OPEN)
        begin_linger(conn);
    set_events(conn, r == IO_AGAIN);
    if (conn->state == CONN_OPEN)
        call_drain_if_wanted(conn);
}

/* ---------------------------------------------------------------- reading (loop thread) */

/* A pong or ping, held against the caps like any frame: a client that
 * floods pings without reading the pongs is a slow consumer (1013). */
static void queue_control(struct conn *conn, int opcode, const char *data, size_t len)
{
    struct loop_frame *f = frame_alloc(opcode, data, len, 0);
    enqueue(conn, f, false);
    loop_frame_unref(f);
}

static int on_frame_event(void *ctx, const struct wsframe_event *ev)
{
    struct conn *conn = ctx;
    switch (ev->opcode) {
    case WSFRAME_TEXT:
        if (conn_close_if_expired(conn))
            return 1;
        return conn->handler->on_message(conn->ctx, conn, ev->data, ev->len);
    case WSFRAME_PING:
        queue_control(conn, WSFRAME_PONG, ev->data, ev->len);
        return 0;
    case WSFRAME_PONG:
        conn->ping_outstanding = false;
        return 0;
    case WSFRAME_CLOSE:
        /* Echo the peer's code, as RFC 6455 section 5.5.1 asks. */
        conn_close(conn,
                   ev->close_code == WSFRAME_CLOSE_NO_STATUS ? PROTO_CLOSE_NORMAL : ev->close_code,
                   "");
        return 1;
    default:
        return 0;
    }
}

/* Feed bytes to the decoder; false once the connection stops reading frames. */
static bool consume_input(struct conn *conn, unsigned char *data, size_t len)
{
    if (conn->state != CONN_OPEN || conn_is_closing(conn))
        return false; /* after our close frame, input is discarded */
    struct wsframe_error err = {0, NULL};
    int rc = wsframe_decode(&conn->decoder, data, len, on_frame_event, conn, &err);
    if (rc != 0 && err.code != 0) {
        atomic_fetch_add(&conn->loop->loops->metrics->frames_rejected, 1);
        conn_close(conn, err.code, err.reason);
    }
    if (wsframe_decoder_mid_frame(&conn->decoder)) {
        if (!conn->mid_frame_since_ms)
            conn->mid_frame_since_ms = util_mono_ms();
    } else {
        conn->mid_frame_since_ms = 0;
    }
    return rc == 0;
}

static ssize_t read_some(struct conn *conn, unsigned char *buf, size_t cap, bool *failed)
{
    *failed = false;
    if (conn->ssl) {
        ERR_clear_error();
        int n = SSL_read(conn->ssl, buf, (int)cap);
        if (n > 0)
            return n;
        int err = SSL_get_error(conn->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            return -1;
        if (err == SSL_ERROR_WANT_WRITE) {
            set_events(conn, true);
            return -1;
        }
        *failed = true; /* SSL_ERROR_ZERO_RETURN (close_notify), syscall or protocol error */
        return -1;
    }
    ssize_t n = read(conn->fd, buf, cap);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return -1;
    *failed = true; /* 0 is the peer's FIN */
    return -1;
}

static void conn_on_readable(struct conn *conn)
{
    for (int i = 0; conn->state != CONN_CLOSED; i++) {
        if (i >= LOOP_READS_PER_EVENT && !(conn->ssl && SSL_pending(conn->ssl) > 0))
            break; /* level-triggered epoll comes back; TLS-buffered bytes would not */
        bool failed;
        ssize_t n = read_some(conn, conn->loop->rbuf, LOOP_READ_BYTES, &failed);
        if (failed) {
            /* The peer is gone or half-closed: what is queued (the echo of
             * its close frame, say) gets one last try. */
            bool close_sent = false;
            if (conn->state == CONN_OPEN)
                write_queue(conn, &close_sent);
            conn_finish(conn);
            return;
        }
        if (n < 0)
            break;
        conn->last_read_ms = util_mono_ms();
        conn->ping_outstanding = false; /* any frame shows the peer is there */
        consume_input(conn, conn->loop->rbuf, (size_t)n);
    }
    conn_flush(conn);
}

/* ---------------------------------------------------------------- life cycle (loop thread) */

void loops_unadmit(struct loops *loops, const char *ip)
{
    pthread_mutex_lock(&loops->admit_lock);
    if (--loops->admitted == 0)
        pthread_cond_broadcast(&loops->admit_cond);
    intptr_t held = (intptr_t)strmap_get(loops->per_ip, ip) - 1;
    if (held > 0)
        strmap_put(loops->per_ip, ip, (void *)held);
    else
        strmap_remove(loops->per_ip, ip);
    pthread_mutex_unlock(&loops->admit_lock);
}

/* Close the socket, tell the owner, drop the loop's reference. */
static void conn_finish(struct conn *conn)
{
    if (conn->state == CONN_CLOSED)
        return;
    struct loop *loop = conn->loop;
    conn->state = CONN_CLOSED;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
    if (conn->ssl)
        SSL_free(conn->ssl);
    conn->ssl = NULL;
    close(conn->fd);
    conn->fd = -1;
    pthread_mutex_lock(&conn->lock);
    conn->closing = true;
    while (conn->q_len > 0)
        queue_pop(conn);
    pthread_mutex_unlock(&conn->lock);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        loop->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    atomic_fetch_sub(&loop->count, 1);
    atomic_fetch_sub(&loop->loops->metrics->connections, 1);
    loops_unadmit(loop->loops, conn->ip);
    conn->handler->on_closed(conn->ctx, conn);
    conn_unref(conn);
}

/* First turn of a new connection on its loop: register it and read what
 * CivetWeb had already read, then whatever the socket (or TLS) holds. */
static void conn_start(struct conn *conn)
{
    struct loop *loop = conn->loop;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = conn};
    conn->state = CONN_OPEN;
    conn->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = conn;
    loop->conns = conn;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, conn->fd, &ev) < 0) {
        log_msg(LOG_ERROR, "epoll_add_failed", "errno=%d", errno);
        conn_finish(conn);
        return;
    }
    if (conn->buffered_len > 0) {
        consume_input(conn, conn->buffered, conn->buffered_len);
        free(conn->buffered);
        conn->buffered = NULL;
        conn->buffered_len = 0;
    }
    conn_on_readable(conn);
}

/* One pass over the connections on the ready list now; what they schedule
 * meanwhile (the next replay page) waits for the next pass, after the socket
 * events, so one busy connection cannot hold the loop. True when more is
 * ready. */
static bool run_ready(struct loop *loop)
{
    struct conn *list = ready_take_all(loop);
    while (list) {
        struct conn *conn = list;
        list = conn->next_ready;
        pthread_mutex_lock(&conn->lock);
        conn->scheduled = false;
        pthread_mutex_unlock(&conn->lock);
        if (conn->state == CONN_NEW)
            conn_start(conn);
        else
            conn_flush(conn);
        conn_unref(conn);
    }
    pthread_mutex_lock(&loop->lock);
    bool more = loop->ready.head != NULL;
    pthread_mutex_unlock(&loop->lock);
    return more;
}

/* ---------------------------------------------------------------- deadlines */

static void sweep_conn(struct conn *conn, int64_t now)
{
    const struct config *config = conn->loop->loops->config;
    if (conn->closing_since_ms) {
        if (now - conn->closing_since_ms >= LOOP_CLOSE_LINGER_MS)
            conn_finish(conn);
        return;
    }
    if (!conn->hello_done && now - conn->opened_ms >= config->hello_timeout_ms) {
        conn_close(conn, PROTO_CLOSE_POLICY, "hello timeout");
    } else if (conn_close_if_expired(conn)) {
        /* closed */
    } else if (conn->mid_frame_since_ms &&
               now - conn->mid_frame_since_ms >= config->request_timeout_ms) {
        conn_close(conn, PROTO_CLOSE_POLICY, "message not completed in time");
    } else if (conn->ping_outstanding && now - conn->ping_sent_ms >= config->ws_ping_ms) {
        conn_close(conn, PROTO_CLOSE_GOING_AWAY, "no answer to ping");
    } else if (!conn->ping_outstanding && now - conn->last_read_ms >= config->ws_ping_ms) {
        conn->ping_outstanding = true;
        conn->ping_sent_ms = now;
        queue_control(conn, WSFRAME_PING, NULL, 0);
    }
}

static void sweep(struct loop *loop)
{
    int64_t now = util_mono_ms();
    struct conn *conn = loop->conns;
    while (conn) {
        struct conn *next = conn->next; /* conn may finish */
        if (!conn->closing_since_ms && conn_is_closing(conn))
            conn->closing_since_ms = now;
        sweep_conn(conn, now);
        conn = next;
    }
}

/* ---------------------------------------------------------------- the thread */

/* True when the loop must end; first carries out a pending close-all. */
static bool loop_should_stop(struct loop *loop)
{
    pthread_mutex_lock(&loop->lock);
    bool stop = loop->stopping;
    int code = loop->close_all_code;
    const char *reason = loop->close_all_reason;
    loop->close_all_code = 0;
    pthread_mutex_unlock(&loop->lock);
    for (struct conn *conn = loop->conns; code && conn; conn = conn->next)
        conn_close(conn, code, reason);
    return stop;
}

static void *loop_main(void *arg)
{
    struct loop *loop = arg;
    struct epoll_event events[LOOP_EVENTS_MAX];
    int64_t next_sweep = util_mono_ms() + LOOP_SWEEP_MS;
    while (!loop_should_stop(loop)) {
        bool more = run_ready(loop); /* also what the close-all request queued */
        int timeout = more ? 0 : (int)(next_sweep - util_mono_ms());
        int n = epoll_wait(loop->epfd, events, LOOP_EVENTS_MAX, timeout > 0 ? timeout : 0);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == loop) {
                uint64_t count;
                ssize_t r = read(loop->wakefd, &count, sizeof(count));
                (void)r;
                continue;
            }
            struct conn *conn = events[i].data.ptr;
            conn_ref(conn); /* it may finish while handled */
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
                conn_on_readable(conn);
            if ((events[i].events & EPOLLOUT) && conn->state != CONN_CLOSED)
                conn_flush(conn);
            conn_unref(conn);
        }
        run_ready(loop);
        if (util_mono_ms() >= next_sweep) {
            sweep(loop);
            run_ready(loop);
            next_sweep = util_mono_ms() + LOOP_SWEEP_MS;
        }
    }
    /* Close what is left; closing may schedule more (a neighbour's presence
     * frame), so run the ready list until nothing holds a reference. */
    for (;;) {
        while (run_ready(loop))
            ;
        if (!loop->conns)
            break;
        while (loop->conns)
            conn_finish(loop->conns);
    }
    return NULL;
}

/* ---------------------------------------------------------------- loops */

static int loop_init(struct loop *loop, struct loops *loops, char *err, size_t errlen)
{
    loop->loops = loops;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->wakefd < 0) {
        util_set_err(err, errlen, "event loop: %s", strerror(errno));
        return -errno;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = loop};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0) {
        util_set_err(err, errlen, "event loop: %s", strerror(errno));
        return -errno;
    }
    loop->rbuf = xmalloc(LOOP_READ_BYTES);
    pthread_mutex_init(&loop->lock, NULL);
    atomic_init(&loop->count, 0);
    if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0) {
        pthread_mutex_destroy(&loop->lock);
        util_set_err(err, errlen, "event loop: cannot start a thread");
        return -EAGAIN;
    }
    return 0;
}

/* The node's connection limit: the configured one, or what the open-file
 * limit leaves after the files a node needs besides WebSockets. */
static long connection_limit(const struct config *config)
{
    if (config->max_connections > 0)
        return config->max_connections;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 100000;
    /* Besides the WebSockets: the HTTP workers' sockets and CivetWeb's queue
     * of accepted ones, SQLite, Valkey, epoll and eventfds, logs. */
    long spare = 320 + (long)config->threads;
    return (long)rl.rlim_cur > spare + 16 ? (long)rl.rlim_cur - spare : 16;
}

struct loops *loops_create(const struct config *config, struct metrics *metrics, char *err,
                           size_t errlen)
{
    struct loops *loops = xcalloc(1, sizeof(*loops));
    loops->config = config;
    loops->metrics = metrics;
    loops->max_connections = connection_limit(config);
    loops->per_ip = strmap_create(NULL);
    pthread_mutex_init(&loops->admit_lock, NULL);
    util_cond_init_monotonic(&loops->admit_cond);
    int threads =
        config->loop_threads > 0 ? config->loop_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    loops->slots = threads > 0 ? threads : 1;
    loops->loops = xcalloc((size_t)loops->slots, sizeof(*loops->loops));
    for (int i = 0; i < loops->slots; i++) {
        if (loop_init(&loops->loops[i], loops, err, errlen) < 0) {
            loops_free(loops);
            return NULL;
        }
        loops->count++;
    }
    log_msg(LOG_INFO, "loops_started", "threads=%d max_connections=%ld max_connections_per_ip=%d",
            loops->count, loops->max_connections, config->max_connections_per_ip);
    return loops;
}

static void loop_stop(struct loop *loop)
{
    pthread_mutex_lock(&loop->lock);
    loop->stopping = true;
    pthread_mutex_unlock(&loop->lock);
    uint64_t one = 1;
    ssize_t n = write(loop->wakefd, &one, sizeof(one));
    (void)n;
    pthread_join(loop->thread, NULL);
}

void loops_free(struct loops *loops)
{
    if (!loops)
        return;
    for (int i = 0; i < loops->count; i++)
        loop_stop(&loops->loops[i]);
    for (int i = 0; i < loops->slots; i++) {
        struct loop *loop = &loops->loops[i];
        if (loop->epfd > 0)
            close(loop->epfd);
        if (loop->wakefd > 0)
            close(loop->wakefd);
        free(loop->rbuf);
        if (i < loops->count)
            pthread_mutex_destroy(&loop->lock);
    }
    free(loops->loops);
    strmap_free(loops->per_ip);
    pthread_cond_destroy(&loops->admit_cond);
    pthread_mutex_destroy(&loops->admit_lock);
    free(loops);
}

int loops_admit(struct loops *loops, const char *ip)
{
    int rc = 0;
    pthread_mutex_lock(&loops->admit_lock);
    intptr_t held = (intptr_t)strmap_get(loops->per_ip, ip);
    int per_ip = loops->config->max_connections_per_ip;
    if (loops->admitted >= loops->max_connections) {
        rc = -EBUSY;
    } else if (per_ip > 0 && held >= per_ip) {
        rc = -EUSERS;
    } else {
        loops->admitted++;
        strmap_put(loops->per_ip, ip, (void *)(held + 1));
    }
    pthread_mutex_unlock(&loops->admit_lock);
    return rc;
}

static struct loop *least_busy(struct loops *loops)
{
    struct loop *best = &loops->loops[0];
    for (int i = 1; i < loops->count; i++) {
        if (atomic_load(&loops->loops[i].count) < atomic_load(&best->count))
            best = &loops->loops[i];
    }
    return best;
}

void loops_adopt(struct loops *loops, int sock, void *ssl, const char *buffered,
                 size_t buffered_len, const char *ip, const struct conn_handler *handler, void *ctx)
{
    struct conn *conn = xcalloc(1, sizeof(*conn));
    conn->loop = least_busy(loops);
    atomic_init(&conn->refs, 1); /* the loop's, dropped when it closes */
    conn->handler = handler;
    conn->ctx = ctx;
    snprintf(conn->ip, sizeof(conn->ip), "%s", ip);
    conn->fd = sock;
    conn->ssl = ssl;
    if (conn->ssl) /* an idle session keeps no read or write buffer */
        SSL_set_mode(conn->ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int one = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    if (buffered_len > 0) {
        conn->buffered = xmalloc(buffered_len);
        memcpy(conn->buffered, buffered, buffered_len);
        conn->buffered_len = buffered_len;
    }
    wsframe_decoder_init(&conn->decoder, (size_t)loops->config->max_frame_bytes);
    int64_t now = util_mono_ms();
    conn->opened_ms = conn->last_read_ms = now;
    pthread_mutex_init(&conn->lock, NULL);
    atomic_fetch_add(&conn->loop->count, 1);
    atomic_fetch_add(&loops->metrics->connections, 1);
    atomic_fetch_add(&loops->metrics->connections_total, 1);
    pthread_mutex_lock(&conn->lock);
    schedule(conn); /* the loop registers it and reads what is buffered */
    pthread_mutex_unlock(&conn->lock);
}

long loops_connection_count(struct loops *loops)
{
    long n = 0;
    for (int i = 0; i < loops->count; i++)
        n += atomic_load(&loops->loops[i].count);
    return n;
}

void loops_close_all(struct loops *loops, int code, const char *reason, int timeout_ms)
{
    for (int i = 0; i < loops->count; i++) {
        struct loop *loop = &loops->loops[i];
        pthread_mutex_lock(&loop->lock);
        loop->close_all_code = code;
        loop->close_all_reason = reason;
        pthread_mutex_unlock(&loop->lock);
        uint64_t one = 1;
        ssize_t n = write(loop->wakefd, &one, sizeof(one));
        (void)n;
    }
    int64_t deadline = util_mono_ms() + timeout_ms;
    pthread_mutex_lock(&loops->admit_lock);
    while (loops->admitted > 0 && util_mono_ms() < deadline)
        util_cond_wait_ms(&loops->admit_cond, &loops->admit_lock, deadline - util_mono_ms());
    pthread_mutex_unlock(&loops->admit_lock);
}
