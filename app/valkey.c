/* valkey: one synchronous Valkey connection, TCP or TLS, RESP2.
 *
 * The socket is non-blocking; every wait is a poll(2) against a deadline.
 * TLS runs over a pair of memory BIOs: OpenSSL never touches the socket, we
 * move the records with send(MSG_NOSIGNAL)/recv, so SSL_ERROR_WANT_WRITE
 * cannot happen, SSL_ERROR_WANT_READ means "feed the read BIO", and no write
 * can raise SIGPIPE. hiredis (0.14, no TLS) only formats commands and parses
 * replies; its reader builds our struct valkey_reply directly through custom
 * object functions, so there is no copy out of redisReply. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MSG_NOSIGNAL, SOCK_NONBLOCK, TCP_KEEPIDLE, prctl */
#endif
#include "valkey.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "util.h"

#define IO_CHUNK 16384
#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 10
#define KEEPALIVE_COUNT 3

struct valkey_conn {
    int fd;                 /* non-blocking socket */
    SSL_CTX *ctx;           /* per connection; NULL for plain TCP */
    SSL *ssl;               /* NULL for plain TCP */
    BIO *rbio;              /* records received, owned by ssl */
    BIO *wbio;              /* records to send, owned by ssl */
    redisReader *reader;    /* RESP parser producing struct valkey_reply */
    struct util_buf out;    /* formatted commands not yet written */
    bool broken;            /* a call failed; only valkey_close is useful */
    int command_timeout_ms; /* per command / flush / VALKEY_TIMEOUT_COMMAND */
    char *host;             /* for log lines */
    int port;               /* for log lines */
    char errstr[256];       /* last failure, never a secret */
};

/* ---------------------------------------------------------------------------
 * Replies: hiredis reader object functions building struct valkey_reply
 * ------------------------------------------------------------------------- */

/* These use malloc/calloc, not xmalloc: sizes come from the server, and a
 * NULL return makes the reader fail cleanly instead of aborting the node. */
static struct valkey_reply *reply_new(const redisReadTask *task, int type)
{
    struct valkey_reply *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->type = type;
    if (task->parent) {
        struct valkey_reply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *reply_create_string(const redisReadTask *task, char *str, size_t len)
{
    int type;
    switch (task->type) {
    case REDIS_REPLY_STATUS:
        type = VALKEY_REPLY_STATUS;
        break;
    case REDIS_REPLY_ERROR:
        type = VALKEY_REPLY_ERROR;
        break;
    default:
        type = VALKEY_REPLY_STRING;
        break;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, str, len);
    copy[len] = '\0';
    struct valkey_reply *r = reply_new(task, type);
    if (!r) {
        free(copy);
        return NULL;
    }
    r->str = copy;
    r->len = len;
    return r;
}

static void *reply_create_array(const redisReadTask *task, int elements)
{
    struct valkey_reply **element = NULL;
    if (elements > 0) {
        element = calloc((size_t)elements, sizeof(*element));
        if (!element)
            return NULL;
    }
    struct valkey_reply *r = reply_new(task, VALKEY_REPLY_ARRAY);
    if (!r) {
        free(element);
        return NULL;
    }
    r->element = element;
    r->elements = elements > 0 ? (size_t)elements : 0;
    return r;
}

static void *reply_create_integer(const redisReadTask *task, long long value)
{
    struct valkey_reply *r = reply_new(task, VALKEY_REPLY_INTEGER);
    if (r)
        r->integer = value;
    return r;
}

static void *reply_create_nil(const redisReadTask *task)
{
    return reply_new(task, VALKEY_REPLY_NIL);
}

void valkey_reply_free(struct valkey_reply *reply)
{
    if (!reply)
        return;
    for (size_t i = 0; i < reply->elements; i++)
        valkey_reply_free(reply->element[i]); /* NULL when parsing stopped midway */
    free(reply->element);
    free(reply->str);
    free(reply);
}

static void reply_free_object(void *reply)
{
    valkey_reply_free(reply);
}

static redisReplyObjectFunctions reply_functions = {
    .createString = reply_create_string,
    .createArray = reply_create_array,
    .createInteger = reply_create_integer,
    .createNil = reply_create_nil,
    .freeObject = reply_free_object,
};

/* ---------------------------------------------------------------------------
 * Errors and deadlines
 * ------------------------------------------------------------------------- */

#define conn_err(conn, ...) util_set_err((conn)->errstr, sizeof((conn)->errstr), __VA_ARGS__)

/* Mark the connection broken (the reason is already in errstr); pass rc on. */
static int fail(struct valkey_conn *conn, int rc)
{
    conn->broken = true;
    return rc;
}

/* The oldest OpenSSL error on this thread's queue, or a fallback. */
static void ssl_err_text(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "%s", fallback);
    ERR_clear_error();
}

static uint64_t deadline_after(int timeout_ms)
{
    return util_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
}

/* Wait for events on fd until deadline (monotonic ns). 1 ready, 0 timed out,
 * negative errno. Error and hang-up conditions count as ready: the next
 * send/recv reports them. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = util_mono_ns();
        int ms = 0;
        if (deadline > now) {
            uint64_t left = (deadline - now + 999999u) / 1000000u;
            ms = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* ---------------------------------------------------------------------------
 * Socket I/O
 * ------------------------------------------------------------------------- */

/* Send all of buf before the deadline. 0, -ETIMEDOUT or negative errno. */
static int sock_send_all(struct valkey_conn *conn, const char *buf, size_t len, uint64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(conn->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(conn->fd, POLLOUT, deadline);
            if (w == 0) {
                conn_err(conn, "write timed out");
                return -ETIMEDOUT;
            }
            if (w < 0)
                return w;
            continue;
        }
        int rc = n < 0 ? -errno : -EIO;
        conn_err(conn, "write failed: %s", strerror(-rc));
        return rc == -EPIPE ? -ECONNRESET : rc;
    }
    return 0;
}

/* Receive some bytes, waiting until the deadline. >0 bytes, -EAGAIN when
 * nothing arrived in time, -ECONNRESET on end of stream, negative errno. */
static int sock_recv(struct valkey_conn *conn, char *buf, size_t cap, uint64_t deadline)
{
    for (;;) {
        ssize_t n = recv(conn->fd, buf, cap, 0);
        if (n > 0)
            return (int)n;
        if (n == 0) {
            conn_err(conn, "server closed the connection");
            return -ECONNRESET;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(conn->fd, POLLIN, deadline);
            if (w == 0)
                return -EAGAIN;
            if (w < 0)
                return w;
            continue;
        }
        int rc = -errno;
        conn_err(conn, "read failed: %s", strerror(-rc));
        return rc;
    }
}

/* ---------------------------------------------------------------------------
 * TLS over memory BIOs
 * ------------------------------------------------------------------------- */

/* Send every record OpenSSL has queued in the write BIO. */
static int tls_flush_records(struct valkey_conn *conn, uint64_t deadline)
{
    char buf[IO_CHUNK];
    while (BIO_ctrl_pending(conn->wbio) > 0) {
        int n = BIO_read(conn->wbio, buf, sizeof(buf));
        if (n <= 0)
            break;
        int rc = sock_send_all(conn, buf, (size_t)n, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Move received bytes from the socket into the read BIO. */
static int tls_recv_records(struct valkey_conn *conn, uint64_t deadline)
{
    char buf[IO_CHUNK];
    int n = sock_recv(conn, buf, sizeof(buf), deadline);
    if (n <= 0)
        return n;
    if (BIO_write(conn->rbio, buf, n) != n) {
        conn_err(conn, "TLS: cannot buffer received data");
        return -ENOMEM;
    }
    return n;
}

/* Map a failed SSL_* call (other than WANT_READ) to an errno and a message. */
static int tls_error(struct valkey_conn *conn, int ssl_rc, const char *op)
{
    int e = SSL_get_error(conn->ssl, ssl_rc);
    char text[160];
    if (e == SSL_ERROR_ZERO_RETURN) {
        conn_err(conn, "server closed the TLS connection");
        ERR_clear_error();
        return -ECONNRESET;
    }
    ssl_err_text(text, sizeof(text), "unknown error");
    conn_err(conn, "TLS %s failed: %s", op, text);
    return -EPROTO;
}

static int tls_handshake(struct valkey_conn *conn, uint64_t deadline)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(conn->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(conn->ssl, r);
        if (r != 1 && e != SSL_ERROR_WANT_READ) {
            /* Best effort: tell the server why (the alert record). */
            char keep[sizeof(conn->errstr)];
            memcpy(keep, conn->errstr, sizeof(keep));
            (void)tls_flush_records(conn, 0);
            memcpy(conn->errstr, keep, sizeof(keep));
            long v = SSL_get_verify_result(conn->ssl);
            if (v != X509_V_OK) {
                conn_err(conn, "TLS certificate verification failed: %s",
                         X509_verify_cert_error_string(v));
                ERR_clear_error();
                return -EPROTO;
            }
            return tls_error(conn, r, "handshake");
        }
        int rc = tls_flush_records(conn, deadline);
        if (rc < 0)
            return rc;
        if (r == 1)
            return 0;
        rc = tls_recv_records(conn, deadline);
        if (rc == -EAGAIN) {
            conn_err(conn, "TLS handshake timed out");
            return -ETIMEDOUT;
        }
        if (rc < 0)
            return rc;
    }
}

/* ---------------------------------------------------------------------------
 * Transport: plaintext in and out, TCP or TLS
 * ------------------------------------------------------------------------- */

static int transport_write(struct valkey_conn *conn, const char *buf, size_t len, uint64_t deadline)
{
    if (!conn->ssl)
        return sock_send_all(conn, buf, len, deadline);
    size_t off = 0;
    while (off < len) {
        int chunk = len - off > IO_CHUNK ? IO_CHUNK : (int)(len - off);
        ERR_clear_error();
        int n = SSL_write(conn->ssl, buf + off, chunk);
        if (n <= 0) {
            /* A memory BIO accepts everything; only a renegotiation
             * (which Valkey never starts) could ask us to read first. */
            if (SSL_get_error(conn->ssl, n) == SSL_ERROR_WANT_READ) {
                int rc = tls_flush_records(conn, deadline);
                if (rc == 0)
                    rc = tls_recv_records(conn, deadline);
                if (rc == -EAGAIN) {
                    conn_err(conn, "write timed out");
                    return -ETIMEDOUT;
                }
                if (rc < 0)
                    return rc;
                continue;
            }
            return tls_error(conn, n, "write");
        }
        off += (size_t)n;
        int rc = tls_flush_records(conn, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Feed some received plaintext to the reader, waiting until deadline.
 * >0 on progress, -EAGAIN when nothing arrived in time, negative errno. */
static int transport_fill(struct valkey_conn *conn, uint64_t deadline)
{
    char buf[IO_CHUNK];
    int n;
    if (!conn->ssl) {
        n = sock_recv(conn, buf, sizeof(buf), deadline);
        if (n <= 0)
            return n;
    } else {
        for (;;) {
            ERR_clear_error();
            n = SSL_read(conn->ssl, buf, sizeof(buf));
            /* Reading may queue records (e.g. a TLS 1.3 KeyUpdate answer).
             * A failure there is fatal, so use the command timeout, not the
             * caller's possibly zero wait. */
            if (BIO_ctrl_pending(conn->wbio) > 0) {
                int rc = tls_flush_records(conn, deadline_after(conn->command_timeout_ms));
                if (rc < 0)
                    return rc == -EAGAIN ? -ETIMEDOUT : rc;
            }
            if (n > 0)
                break;
            if (SSL_get_error(conn->ssl, n) != SSL_ERROR_WANT_READ)
                return tls_error(conn, n, "read");
            int rc = tls_recv_records(conn, deadline);
            if (rc <= 0)
                return rc;
        }
    }
    if (redisReaderFeed(conn->reader, buf, (size_t)n) != REDIS_OK) {
        conn_err(conn, "reply parser: %s", conn->reader->errstr);
        return -EPROTO;
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------- */

int valkey_append(struct valkey_conn *conn, int argc, const char **argv, const size_t *argvlen)
{
    if (conn->broken)
        return -ENOTCONN;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return -ENOMEM;
    util_buf_append(&conn->out, cmd, (size_t)len);
    OPENSSL_cleanse(cmd, (size_t)len); /* it may hold a password */
    redisFreeCommand(cmd);
    return 0;
}

int valkey_flush(struct valkey_conn *conn)
{
    if (conn->broken)
        return -ENOTCONN;
    if (conn->out.len == 0)
        return 0;
    int rc = transport_write(conn, conn->out.data, conn->out.len,
                             deadline_after(conn->command_timeout_ms));
    /* Wipe what was sent: an AUTH command carries the password. */
    OPENSSL_cleanse(conn->out.data, conn->out.len);
    conn->out.len = 0;
    if (rc < 0)
        return fail(conn, rc == -EAGAIN ? -ETIMEDOUT : rc);
    return 0;
}

int valkey_read_reply(struct valkey_conn *conn, struct valkey_reply **out, int timeout_ms)
{
    *out = NULL;
    if (conn->broken)
        return -ENOTCONN;
    int rc = valkey_flush(conn);
    if (rc < 0)
        return rc;
    bool is_command = timeout_ms < 0;
    uint64_t deadline = deadline_after(is_command ? conn->command_timeout_ms : timeout_ms);
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(conn->reader, &reply) != REDIS_OK) {
            conn_err(conn, "reply parser: %s", conn->reader->errstr);
            return fail(conn, -EPROTO);
        }
        if (reply) {
            *out = reply;
            return 0;
        }
        rc = transport_fill(conn, deadline);
        if (rc == -EAGAIN) {
            if (!is_command)
                return -EAGAIN;
            conn_err(conn, "timed out: no reply within %d ms", conn->command_timeout_ms);
            return fail(conn, -ETIMEDOUT);
        }
        if (rc < 0)
            return fail(conn, rc);
    }
}

int valkey_command(struct valkey_conn *conn, struct valkey_reply **out, int argc, const char **argv,
                   const size_t *argvlen)
{
    *out = NULL;
    int rc = valkey_append(conn, argc, argv, argvlen);
    if (rc < 0)
        return rc;
    return valkey_read_reply(conn, out, VALKEY_TIMEOUT_COMMAND);
}

int valkey_fd(const struct valkey_conn *conn)
{
    return conn->fd;
}

bool valkey_is_tls(const struct valkey_conn *conn)
{
    return conn->ssl != NULL;
}

bool valkey_is_broken(const struct valkey_conn *conn)
{
    return conn->broken;
}

const char *valkey_last_error(const struct valkey_conn *conn)
{
    return conn->errstr;
}

/* ---------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------- */

static bool is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void set_socket_options(int fd)
{
    int one = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_COUNT;
    /* Best effort: a failure here costs latency or dead-peer detection,
     * not correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Try each address in turn. Returns a connected non-blocking socket or -1
 * with the reason in conn->errstr. */
static int tcp_connect(struct valkey_conn *conn, const struct valkey_options *opts,
                       uint64_t deadline, int connect_timeout_ms)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", conn->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(opts->host, portstr, &hints, &res);
    if (g != 0) {
        conn_err(conn, "cannot resolve %s: %s", opts->host,
                 g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char addr[INET6_ADDRSTRLEN] = "?";
        if (ai->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr, sizeof(addr));
        else if (ai->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr,
                      sizeof(addr));
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            conn_err(conn, "socket: %s", strerror(errno));
            continue;
        }
        int err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            if (err == EINPROGRESS || err == EINTR) {
                int w = wait_fd(fd, POLLOUT, deadline);
                socklen_t sl = sizeof(err);
                if (w == 0)
                    err = ETIMEDOUT;
                else if (w < 0)
                    err = -w;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
                    err = errno;
            }
        }
        if (err == 0)
            break;
        if (err == ETIMEDOUT)
            conn_err(conn, "connect to %s port %d (%s) timed out after %d ms", opts->host,
                     conn->port, addr, connect_timeout_ms);
        else
            conn_err(conn, "connect to %s port %d (%s) failed: %s", opts->host, conn->port, addr,
                     strerror(err));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        set_socket_options(fd);
    return fd;
}

static int tls_setup(struct valkey_conn *conn, const struct valkey_options *opts)
{
    char text[160];
    const char *name = opts->server_name && *opts->server_name ? opts->server_name : opts->host;
    ERR_clear_error();
    conn->ctx = SSL_CTX_new(TLS_client_method());
    if (!conn->ctx)
        goto out_ssl_error;
    if (SSL_CTX_set_min_proto_version(conn->ctx, TLS1_2_VERSION) != 1)
        goto out_ssl_error;
    SSL_CTX_set_verify(conn->ctx, SSL_VERIFY_PEER, NULL);
    if (opts->ca_file && *opts->ca_file) {
        if (SSL_CTX_load_verify_locations(conn->ctx, opts->ca_file, NULL) != 1) {
            ssl_err_text(text, sizeof(text), "unreadable");
            conn_err(conn, "TLS: cannot load CA file %s: %s", opts->ca_file, text);
            return -EINVAL;
        }
    } else if (SSL_CTX_set_default_verify_paths(conn->ctx) != 1) {
        goto out_ssl_error;
    }
    conn->ssl = SSL_new(conn->ctx);
    if (!conn->ssl)
        goto out_ssl_error;
    if (is_ip_literal(name)) {
        /* No SNI for addresses (RFC 6066); verify the IP SAN instead. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), name) != 1)
            goto out_ssl_error;
    } else {
        SSL_set_hostflags(conn->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set_tlsext_host_name(conn->ssl, name) != 1 || SSL_set1_host(conn->ssl, name) != 1)
            goto out_ssl_error;
    }
    conn->rbio = BIO_new(BIO_s_mem());
    conn->wbio = BIO_new(BIO_s_mem());
    if (!conn->rbio || !conn->wbio) {
        BIO_free(conn->rbio);
        BIO_free(conn->wbio);
        conn->rbio = conn->wbio = NULL;
        goto out_ssl_error;
    }
    BIO_set_mem_eof_return(conn->rbio, -1); /* empty means "retry", not EOF */
    SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
    SSL_set_connect_state(conn->ssl);
    return 0;

out_ssl_error:
    ssl_err_text(text, sizeof(text), "setup failed");
    conn_err(conn, "TLS setup: %s", text);
    return -EINVAL;
}

/* One command during valkey_connect, bounded by the connect deadline. An
 * error reply fails with -EACCES and "<rejected>: <server text>"; a transport
 * failure names the server and the command (never the arguments). */
static int handshake_command(struct valkey_conn *conn, const struct valkey_options *opts,
                             int connect_timeout_ms, const char *rejected, int argc,
                             const char **argv, uint64_t deadline)
{
    struct valkey_reply *r = NULL;
    int rc = valkey_append(conn, argc, argv, NULL);
    if (rc < 0)
        return rc;
    int saved = conn->command_timeout_ms;
    uint64_t now = util_mono_ns();
    conn->command_timeout_ms = deadline > now ? (int)((deadline - now + 999999u) / 1000000u) : 1;
    rc = valkey_read_reply(conn, &r, VALKEY_TIMEOUT_COMMAND);
    conn->command_timeout_ms = saved;
    if (rc == -ETIMEDOUT) {
        conn_err(conn, "%s port %d: timed out after %d ms waiting for the %s reply", opts->host,
                 conn->port, connect_timeout_ms, argv[0]);
        return rc;
    }
    if (rc < 0) {
        char tmp[sizeof(conn->errstr)];
        snprintf(tmp, sizeof(tmp), "%s", conn->errstr);
        conn_err(conn, "%s port %d: %s during %s%s", opts->host, conn->port, tmp, argv[0],
                 !opts->tls && rc == -ECONNRESET ? " (does the server require TLS?)" : "");
        return rc;
    }
    if (r->type == VALKEY_REPLY_ERROR) {
        conn_err(conn, "%s: %.*s", rejected, (int)(r->len > 160 ? 160 : r->len), r->str);
        valkey_reply_free(r);
        return -EACCES;
    }
    valkey_reply_free(r);
    return 0;
}

struct valkey_conn *valkey_connect(const struct valkey_options *opts, char *err, size_t errlen)
{
    util_set_err(err, errlen, "%s", "");
    if (!opts->host || !*opts->host) {
        util_set_err(err, errlen, "no Valkey host given");
        return NULL;
    }
    if (opts->port < 0 || opts->port > 65535) {
        util_set_err(err, errlen, "invalid Valkey port %d", opts->port);
        return NULL;
    }
    int connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : VALKEY_DEFAULT_CONNECT_TIMEOUT_MS;
    struct valkey_conn *conn = xcalloc(1, sizeof(*conn));
    conn->fd = -1;
    conn->port = opts->port ? opts->port : VALKEY_DEFAULT_PORT;
    conn->host = xstrdup(opts->host);
    conn->command_timeout_ms =
        opts->command_timeout_ms > 0 ? opts->command_timeout_ms : VALKEY_DEFAULT_COMMAND_TIMEOUT_MS;
    util_buf_init(&conn->out);
    conn->reader = redisReaderCreateWithFunctions(&reply_functions);
    if (!conn->reader) {
        conn_err(conn, "out of memory");
        goto out_close;
    }

    uint64_t deadline = deadline_after(connect_timeout_ms);
    conn->fd = tcp_connect(conn, opts, deadline, connect_timeout_ms);
    if (conn->fd < 0)
        goto out_close;

    if (opts->tls) {
        if (tls_setup(conn, opts) < 0)
            goto out_close;
        int rc = tls_handshake(conn, deadline);
        if (rc < 0) {
            char tmp[sizeof(conn->errstr)];
            snprintf(tmp, sizeof(tmp), "%s", conn->errstr);
            conn_err(conn, "%s port %d: %s", opts->host, conn->port, tmp);
            goto out_close;
        }
    }

    if (opts->password) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (opts->username)
            argv[argc++] = opts->username;
        argv[argc++] = opts->password;
        if (handshake_command(conn, opts, connect_timeout_ms, "authentication failed", argc, argv,
                              deadline) < 0)
            goto out_close;
    }
    if (handshake_command(conn, opts, connect_timeout_ms, "PING failed", 1,
                          (const char *[]){"PING"}, deadline) < 0)
        goto out_close;

    log_msg(
        LOG_INFO, "valkey_connected", "host=%s port=%d tls=%s user=%s", log_value(conn->host),
        conn->port, conn->ssl ? SSL_get_version(conn->ssl) : "off",
        log_value(opts->username ? opts->username : (opts->password ? "(password)" : "(none)")));
    return conn;

out_close:
    util_set_err(err, errlen, "%s", conn->errstr);
    conn->broken = true; /* no close_notify on a half-made connection */
    valkey_close(conn);
    return NULL;
}

void valkey_close(struct valkey_conn *conn)
{
    if (!conn)
        return;
    if (conn->ssl) {
        if (!conn->broken && SSL_is_init_finished(conn->ssl)) {
            /* Best effort close_notify; never wait for the socket. */
            ERR_clear_error();
            if (SSL_shutdown(conn->ssl) >= 0)
                (void)tls_flush_records(conn, 0);
        }
        ERR_clear_error();
        SSL_free(conn->ssl); /* frees rbio and wbio */
    }
    SSL_CTX_free(conn->ctx);
    if (conn->fd >= 0)
        close(conn->fd);
    redisReaderFree(conn->reader);
    if (conn->out.data)
        OPENSSL_cleanse(conn->out.data, conn->out.cap);
    util_buf_dispose(&conn->out);
    free(conn->host);
    free(conn);
}
