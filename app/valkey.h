/* valkey: one synchronous connection to a Valkey (or Redis) server over TCP
 * or TLS (OpenSSL), with AUTH (ACL user or password only), RESP2 commands,
 * pipelining and pub/sub reads. hiredis supplies only the RESP formatter and
 * reader; the transport is ours. A connection is used by one thread at a time;
 * each thread that talks to Valkey (publisher, subscriber) owns its own.
 *
 * Errors: actions return 0 or a negative errno. Except for -EAGAIN from
 * valkey_read_reply, every failure leaves the connection broken: all later
 * calls return -ENOTCONN, and the caller closes it and reconnects.
 *
 * SIGPIPE: plain and TLS writes both go through send(..., MSG_NOSIGNAL)
 * (TLS uses memory BIOs, never a socket BIO), so this module never raises
 * SIGPIPE; the program need not ignore it on our account. */
#ifndef TURBOCHAT_VALKEY_H
#define TURBOCHAT_VALKEY_H

#include <stdbool.h>
#include <stddef.h>

#define VALKEY_DEFAULT_PORT 6379
#define VALKEY_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define VALKEY_DEFAULT_COMMAND_TIMEOUT_MS 5000

/* valkey_read_reply: wait as long as the connection's command timeout and
 * treat running out as a failure (-ETIMEDOUT, connection broken). */
#define VALKEY_TIMEOUT_COMMAND (-1)

/* Reply types, as in RESP2. */
#define VALKEY_REPLY_STRING 1
#define VALKEY_REPLY_ARRAY 2
#define VALKEY_REPLY_INTEGER 3
#define VALKEY_REPLY_NIL 4
#define VALKEY_REPLY_STATUS 5
#define VALKEY_REPLY_ERROR 6

struct valkey_conn;

/* How to reach and log in to the server. The strings are borrowed: they only
 * have to live for the duration of valkey_connect. */
struct valkey_options {
    const char *host;        /* DNS name, IPv4 or IPv6 literal */
    int port;                /* 0: VALKEY_DEFAULT_PORT */
    const char *username;    /* ACL user; NULL: "AUTH password" (or no AUTH) */
    const char *password;    /* NULL: no AUTH at all */
    bool tls;                /* TLS 1.2+ with chain and name verification */
    const char *ca_file;     /* PEM CA bundle; NULL: the system CA store */
    const char *server_name; /* SNI and certificate name; NULL: host */
    int connect_timeout_ms;  /* bounds TCP+TLS+AUTH+PING (not DNS); <= 0: default */
    int command_timeout_ms;  /* per command / flush; <= 0: default */
};

/* One reply, deep-copied out of the RESP reader so callers need no hiredis.
 * str is NUL-terminated (and may also contain NULs) for STRING, STATUS and
 * ERROR; NULL otherwise. */
struct valkey_reply {
    int type;                      /* VALKEY_REPLY_* */
    long long integer;             /* INTEGER */
    char *str;                     /* STRING, STATUS, ERROR */
    size_t len;                    /* length of str without the NUL */
    size_t elements;               /* ARRAY: number of elements */
    struct valkey_reply **element; /* ARRAY: the elements, owned */
};

/* Resolve host (getaddrinfo, IPv4 or IPv6; this step is blocking and not
 * bounded by connect_timeout_ms), connect with TCP_NODELAY and TCP keepalive,
 * do the TLS handshake when opts->tls, then AUTH when a password is set, then
 * PING. Never sends HELLO: the protocol is RESP2.
 * Returns a new connection (free with valkey_close) or NULL with the reason in
 * err (DNS, refused, timeout, TLS verification, authentication failed...);
 * the reason never contains the password. err may be NULL when errlen is 0.
 * Any thread; logs "valkey_connected" at info level on success. */
struct valkey_conn *valkey_connect(const struct valkey_options *opts, char *err, size_t errlen);

/* Close the socket (sending TLS close_notify when possible) and free
 * everything, including buffered unsent commands. Accepts NULL. */
void valkey_close(struct valkey_conn *conn);

/* Send one command and wait for its reply, up to the command timeout.
 * argvlen may be NULL when every argument is a C string.
 * Only valid when no pipelined reply is outstanding and the connection is not
 * in subscribe mode (then use valkey_append/valkey_read_reply).
 * Returns 0 and *out (caller frees with valkey_reply_free); a server error is
 * a success with type VALKEY_REPLY_ERROR. Otherwise a negative errno
 * (-ETIMEDOUT, -ECONNRESET, -EPROTO, -ENOTCONN...) and the connection is
 * broken. Owner thread only. */
int valkey_command(struct valkey_conn *conn, struct valkey_reply **out, int argc, const char **argv,
                   const size_t *argvlen);

/* Format one command into the connection's output buffer; nothing is sent
 * until valkey_flush (or valkey_read_reply, which flushes first). Arguments
 * are copied. 0, -ENOTCONN or -ENOMEM. Owner thread only. */
int valkey_append(struct valkey_conn *conn, int argc, const char **argv, const size_t *argvlen);

/* Write every buffered command, waiting up to the command timeout.
 * 0 or a negative errno (connection broken). Owner thread only. */
int valkey_flush(struct valkey_conn *conn);

/* Read the next reply (to a pipelined command, or a pub/sub push), flushing
 * buffered commands first.
 * timeout_ms > 0 waits that long, 0 only takes what has already arrived;
 * then -EAGAIN means no complete reply yet and the connection stays usable
 * (a partial reply stays buffered). VALKEY_TIMEOUT_COMMAND waits the command
 * timeout and returns -ETIMEDOUT (connection broken) when it runs out.
 * Returns 0 and *out (caller frees with valkey_reply_free), or a negative
 * errno (connection broken). Owner thread only. */
int valkey_read_reply(struct valkey_conn *conn, struct valkey_reply **out, int timeout_ms);

/* The socket, for poll(2) by a caller multiplexing with other descriptors.
 * Bytes may already be buffered in user space (TLS records, a partial reply),
 * so drain with valkey_read_reply(conn, &r, 0) until -EAGAIN before polling. */
int valkey_fd(const struct valkey_conn *conn);

/* True when the connection runs over TLS. */
bool valkey_is_tls(const struct valkey_conn *conn);

/* True once a call has failed; the connection is then useless. */
bool valkey_is_broken(const struct valkey_conn *conn);

/* Text of the last failure on this connection, for the log ("" if none).
 * Never contains secrets. Owned by conn, valid until the next call on it. */
const char *valkey_last_error(const struct valkey_conn *conn);

/* Free a reply and all its elements. Accepts NULL. Any thread. */
void valkey_reply_free(struct valkey_reply *reply);

#endif
