/* loop: the event-loop threads that own WebSocket connections once CivetWeb
 * has finished their handshake (epoll, one thread per core by default). A
 * loop reads and decodes a connection's frames (wsframe), hands each whole
 * text message to the connection's handler, writes its bounded queue of
 * shared, reference-counted frames without ever blocking, and enforces its
 * deadlines: hello, keepalive ping, a frame stalled midway, the close
 * handshake, the end of the credentials the hello gave. It also admits connections: per node and
 * per IP address. Other threads never touch a socket: they queue frames and wake the loop. */
#ifndef TURBOCHAT_LOOP_H
#define TURBOCHAT_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct conn;
struct loops;
struct metrics;

/* One server-to-client frame, encoded once and shared by every queue it is in. */
struct loop_frame {
    atomic_int refs;
    uint64_t msg_id;      /* chat message id, 0 for other frames */
    size_t len;           /* bytes of wire */
    unsigned char wire[]; /* header and payload, ready to write */
};

/* A text frame of json (copied), with one reference for the caller. */
struct loop_frame *loop_frame_text(const char *json, size_t len, uint64_t msg_id);
/* Take and drop a reference; the last drop frees it. Any thread; NULL is fine. */
void loop_frame_ref(struct loop_frame *f);
void loop_frame_unref(struct loop_frame *f);

/* What the owner of a connection (ws.c) is told, always on the connection's
 * loop thread and never with a loop lock held. */
struct conn_handler {
    /* A whole text message, valid UTF-8. Return 0, or non-zero after
     * conn_close() to stop reading the connection. */
    int (*on_message)(void *ctx, struct conn *conn, const char *data, size_t len);
    /* The queue fell under half its byte limit after conn_want_drain(). */
    void (*on_drain)(void *ctx, struct conn *conn);
    /* The connection is gone: the socket is closed and no other handler will
     * run. The owner drops its references here. */
    void (*on_closed)(void *ctx, struct conn *conn);
};

/* Start config->loop_threads loops. NULL with the reason in err. Main thread. */
struct loops *loops_create(const struct config *config, struct metrics *metrics, char *err,
                           size_t errlen);
/* Close every connection at once and stop the threads; accepts NULL. Main thread. */
void loops_free(struct loops *loops);

/* Admission, before the handshake: 0 and a slot held for ip, or -EBUSY
 * (the node holds max_connections) or -EUSERS (ip holds
 * max_connections_per_ip). Any thread. */
int loops_admit(struct loops *loops, const char *ip);
/* Give back a slot whose connection never reached loops_adopt. Any thread. */
void loops_unadmit(struct loops *loops, const char *ip);

/* Take over an upgraded socket (and its SSL *, or NULL) with the bytes already
 * read past the request headers (copied), using the slot admitted for ip.
 * The least busy loop owns it from now on and calls handler with ctx there,
 * the first time possibly before this returns: ctx must be ready. HTTP worker. */
void loops_adopt(struct loops *loops, int sock, void *ssl, const char *buffered,
                 size_t buffered_len, const char *ip, const struct conn_handler *handler,
                 void *ctx);

/* Shutdown: close every connection with code and wait at most timeout_ms for
 * the close frames to go out. Main thread. */
void loops_close_all(struct loops *loops, int code, const char *reason, int timeout_ms);

/* Connections held now (gauge). Any thread. */
long loops_connection_count(struct loops *loops);

/* ---- one connection; every function may be called from any thread ---- */

void conn_ref(struct conn *conn);
void conn_unref(struct conn *conn);

/* Queue f (taking a reference) after what is queued. 0; -EPIPE when the
 * connection is closing; -ENOBUFS when its queue was over its frame or byte
 * cap, and it is now being closed with 1013. */
int conn_send(struct conn *conn, struct loop_frame *f);
/* The same for a replay page: it is queued whatever the caps, and replay
 * frames are not held against them when conn_send checks, as the replay asks
 * for more only when the queue has drained (conn_want_drain). */
int conn_send_replay(struct conn *conn, struct loop_frame *f);
/* Queue a copy of json as one text frame. Same returns as conn_send. */
int conn_send_text(struct conn *conn, const char *json, size_t len);

/* Close: what is queued is written, then a close frame with code and reason
 * (at most 64 bytes), then the socket closes. The first call wins. */
void conn_close(struct conn *conn, int code, const char *reason);
bool conn_is_closing(struct conn *conn);

/* Ask for one on_drain call once the queue is under half its byte limit. */
void conn_want_drain(struct conn *conn);
/* True when the queue holds at least half its byte limit. */
bool conn_is_backlogged(struct conn *conn);

/* The hello arrived: the hello deadline no longer applies. Loop thread. */
void conn_hello_done(struct conn *conn);

/* The hello's credentials (a token's exp, a session's end) are valid until
 * expires_ms, wall clock in ms since the epoch (0: no end). From then on the
 * connection is closed with 1008 and reason (a static string, at most 64
 * bytes): checked before each text message and by the sweep, so a silent
 * connection goes too, within LOOP_SWEEP_MS. Loop thread. */
void conn_set_expiry(struct conn *conn, int64_t expires_ms, const char *reason);

/* The peer's address, as admitted. */
const char *conn_remote_ip(const struct conn *conn);

#endif
