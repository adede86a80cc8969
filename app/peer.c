/* peer: copying the log between nodes (issue 10).
 *
 * - Secret: cluster_secret, or else one random secret every node shares
 *   through Valkey (SET turbochat:cluster-secret <64 hex> NX, then GET):
 *   whoever can write Valkey controls the cluster already.
 * - Announce: once its copy is done, a node keeps
 *   HSET turbochat:peers <node id> "<expires unix ms> <peer_url>" fresh every
 *   ANNOUNCE_MS (expiring after ANNOUNCE_TTL_MS) and HDELs it on a clean stop.
 * - Serve: GET /internal/logs and /internal/logs/{log}/events, signed with
 *   the PEER_HEADER HMAC. A page is NDJSON: a head line, one line per event
 *   as stored, and an end line (a page without it was cut short).
 * - Copy: one thread, before the node reports ready. Per log, the cursor is
 *   the end of the gapless run of ids the log already has from 1, so an older
 *   log copies only its tail; each page is one store transaction through the
 *   normal apply path (store_import), so the derived tables end as on the peer
 *   and live events stored meanwhile do no harm. A failing peer is left for
 *   another; with none left that answers while entries are unexpired, the
 *   node retries, and gives up (ready, with a warning) once none remains.
 *
 * The peer thread owns its Valkey connection; progress and the secret are
 * under lock, read by worker threads. */
#define _GNU_SOURCE
#include "peer.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "http_api.h"
#include "log.h"
#include "proto.h"
#include "store.h"
#include "util.h"
#include "valkey.h"

#define PEERS_KEY "turbochat:peers"
#define SECRET_KEY "turbochat:cluster-secret"
#define ANNOUNCE_MS 10000         /* with the node heartbeat of broker_valkey */
#define ANNOUNCE_TTL_MS 30000     /* an entry not refreshed this long is ignored */
#define RETRY_MS 1000             /* between rounds over the peers when none answered */
#define BACKOFF_MAX_MS 5000       /* Valkey reconnects */
#define IO_TIMEOUT_MS 15000       /* connect, and each read or write of a peer request */
#define POLL_STEP_MS 250          /* those waits look for a stop this often */
#define PAGE_MAX 20000            /* limit of a page request */
#define PAGE_BYTES (8u << 20)     /* a page ends after the event that crosses this */
#define LINE_MAX_BYTES (1u << 20) /* one NDJSON line a client accepts */
#define LOGS_BODY_MAX (64u << 20) /* the body of /internal/logs a client accepts */
#define URL_MAX 256

struct peer {
    const struct config *config;
    struct store *store;
    struct valkey_conn *conn; /* peer thread only */
    char url[URL_MAX];        /* this node's peer_url; "" when it has none */
    uint64_t store_wait_ns;   /* peer thread: time the copy waited for the store */
    pthread_t thread;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* stopping */
    bool stopping;
    char secret[128]; /* "" until known */
    struct peer_progress progress;
};

/* ---------------------------------------------------------------- helpers */

static void hmac_hex(const char *secret, const char *method, const char *target, int64_t ms,
                     char out[65])
{
    char msg[4096];
    int n = snprintf(msg, sizeof(msg), "%s\n%s\n%" PRId64, method, target, ms);
    if (n < 0 || (size_t)n >= sizeof(msg))
        n = 0; /* too long a target: signs nothing that verifies */
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n, mac,
         &maclen);
    for (unsigned int i = 0; i < maclen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    out[64] = '\0';
}

void peer_sign(const char *secret, const char *method, const char *target, int64_t now_ms,
               char *out, size_t outlen)
{
    char hex[65];
    hmac_hex(secret, method, target, now_ms, hex);
    snprintf(out, outlen, "%" PRId64 ".%s", now_ms, hex);
}

bool peer_auth_is_valid(const char *secret, const char *method, const char *target,
                        const char *header, int64_t now_ms)
{
    if (!secret || !*secret || !header)
        return false;
    const char *dot = strchr(header, '.');
    if (!dot || dot == header || dot - header > 15 || strlen(dot + 1) != 64)
        return false;
    int64_t ms = 0;
    for (const char *c = header; c < dot; c++) {
        if (*c < '0' || *c > '9')
            return false;
        ms = ms * 10 + (*c - '0');
    }
    if (ms < now_ms - PEER_AUTH_WINDOW_MS || ms > now_ms + PEER_AUTH_WINDOW_MS)
        return false;
    char hex[65];
    hmac_hex(secret, method, target, ms, hex);
    return CRYPTO_memcmp(hex, dot + 1, 64) == 0;
}

static bool is_stopping(struct peer *p)
{
    pthread_mutex_lock(&p->lock);
    bool stopping = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return stopping;
}

/* Sleep ms unless stopping; true when stopping. */
static bool sleep_unless_stopping(struct peer *p, int ms)
{
    pthread_mutex_lock(&p->lock);
    if (!p->stopping)
        util_cond_wait_ms(&p->wake, &p->lock, ms);
    bool stopping = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return stopping;
}

static void get_secret(struct peer *p, char *out, size_t outlen)
{
    pthread_mutex_lock(&p->lock);
    snprintf(out, outlen, "%s", p->secret);
    pthread_mutex_unlock(&p->lock);
}

/* ---------------------------------------------------------------- server half */

static void send_refusal(struct mg_connection *mc, enum proto_error err, const char *message)
{
    api_send_error(mc, err, message);
}

/* {"logs":[{"log":NAME,"last":ID,"begins"?:ID}, ...]}: begins (where the
 * log's history begins) when retention removed ids before it. */
static void serve_logs(struct peer *p, struct mg_connection *mc)
{
    struct store_room *logs = NULL;
    size_t n = 0;
    if (store_list_logs(p->store, &logs, &n) < 0) {
        send_refusal(mc, PROTO_ERR_INTERNAL, "the log could not be read");
        return;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(body, "logs");
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "log", logs[i].name);
        cJSON_AddNumberToObject(o, "last", (double)logs[i].last_id);
        uint64_t begins = 1;
        double days;
        if (store_history_head(p->store, logs[i].name, &begins, &days) == 0 && begins > 1)
            cJSON_AddNumberToObject(o, "begins", (double)begins);
        cJSON_AddItemToArray(arr, o);
    }
    store_free_rooms(logs, n);
    api_send_object(mc, 200, body);
}

/* One event as a line: the columns of messages as stored. Written by hand,
 * not through cJSON: this is most of what a peer does for a new node. */
static void append_event_line(struct util_buf *buf, const struct chat_msg *m, int64_t edit_id)
{
    util_buf_appendf(buf, "{\"id\":%" PRIu64 ",\"u\":", m->id);
    proto_append_json_string(buf, m->user);
    util_buf_append(buf, ",\"t\":", 5);
    proto_append_json_string(buf, m->text);
    util_buf_appendf(buf, ",\"ts\":%" PRId64, m->ts);
    if (m->ref) {
        util_buf_append(buf, ",\"r\":", 5);
        proto_append_json_string(buf, m->ref);
    }
    cJSON *x = proto_extras_object(m);
    if (x) {
        char *json = cJSON_PrintUnformatted(x);
        util_buf_appendf(buf, ",\"x\":%s", json);
        free(json);
        cJSON_Delete(x);
    } else {
        util_buf_appendf(buf, ",\"x\":{\"kind\":\"%s\"}", chat_kind_name(m->kind));
    }
    if (m->edited_ts)
        util_buf_appendf(buf, ",\"edited_ts\":%" PRId64, m->edited_ts);
    if (edit_id)
        util_buf_appendf(buf, ",\"edit_id\":%" PRId64, edit_id);
    if (m->deleted_by) {
        util_buf_append(buf, ",\"deleted_by\":", 14);
        proto_append_json_string(buf, m->deleted_by);
    }
    util_buf_append(buf, "}\n", 2);
}

/* A query parameter as an integer in [min, max]; def when absent. */
static bool query_int(const struct mg_request_info *ri, const char *name, int64_t min, int64_t max,
                      int64_t def, int64_t *out)
{
    char value[32];
    *out = def;
    if (!ri->query_string)
        return true;
    int n = mg_get_var(ri->query_string, strlen(ri->query_string), name, value, sizeof(value));
    if (n == -1)
        return true;
    return n > 0 && util_parse_int64(value, min, max, out) == 0;
}

static void serve_events(struct peer *p, struct mg_connection *mc, const char *log)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    int64_t after, limit, claims;
    if (!proto_log_is_valid(log)) {
        send_refusal(mc, PROTO_ERR_BAD_REQUEST, "log must be a room name or '.' and one");
        return;
    }
    if (!query_int(ri, "after", 0, (int64_t)PROTO_ID_MAX, 0, &after) ||
        !query_int(ri, "limit", 1, PAGE_MAX, p->config->sync_page_size, &limit) ||
        !query_int(ri, "claims", 0, 1, 0, &claims)) {
        send_refusal(mc, PROTO_ERR_BAD_REQUEST,
                     "after must be an id >= 0, limit 1 to 20000, claims 0 or 1");
        return;
    }
    struct chat_msg **msgs = NULL;
    int64_t *edit_ids = NULL;
    size_t n = 0;
    char **cl = NULL;
    size_t ncl = 0;
    if (store_export(p->store, log, (uint64_t)after, (int)limit, &msgs, &edit_ids, &n) < 0 ||
        (claims && store_claims(p->store, log, &cl, &ncl) < 0)) {
        store_free_messages(msgs, n);
        free(edit_ids);
        send_refusal(mc, PROTO_ERR_INTERNAL, "the log could not be read");
        return;
    }
    struct util_buf buf;
    util_buf_init(&buf);
    cJSON *head = cJSON_CreateObject();
    cJSON_AddStringToObject(head, "log", log);
    if (claims) {
        cJSON *arr = cJSON_AddArrayToObject(head, "claims");
        for (size_t i = 0; i < ncl; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(cl[i]));
    }
    char *line = cJSON_PrintUnformatted(head);
    cJSON_Delete(head);
    util_buf_appendf(&buf, "%s\n", line);
    free(line);
    size_t sent = 0;
    for (; sent < n && buf.len < PAGE_BYTES; sent++)
        append_event_line(&buf, msgs[sent], edit_ids[sent]);
    util_buf_appendf(&buf, "{\"end\":true,\"count\":%zu}\n", sent);
    mg_printf(mc,
              "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n\r\n",
              buf.len);
    mg_write(mc, buf.data, buf.len);
    util_buf_dispose(&buf);
    store_free_messages(msgs, n);
    free(edit_ids);
    for (size_t i = 0; i < ncl; i++)
        free(cl[i]);
    free(cl);
}

static int internal_handler(struct mg_connection *mc, void *cbdata)
{
    struct peer *p = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(mc);
    if (strcmp(ri->request_method, "GET") != 0) {
        send_refusal(mc, PROTO_ERR_METHOD_NOT_ALLOWED, "only GET");
        return 405;
    }
    char secret[sizeof(p->secret)];
    get_secret(p, secret, sizeof(secret));
    if (!*secret) {
        send_refusal(mc, PROTO_ERR_UNAVAILABLE, "the cluster secret is not known yet");
        return 503;
    }
    const char *path = ri->local_uri ? ri->local_uri : "";
    char target[2048];
    int tn = snprintf(target, sizeof(target), "%s%s%s", path, ri->query_string ? "?" : "",
                      ri->query_string ? ri->query_string : "");
    if (tn < 0 || (size_t)tn >= sizeof(target) ||
        !peer_auth_is_valid(secret, ri->request_method, target, mg_get_header(mc, PEER_HEADER),
                            util_now_ms())) {
        send_refusal(mc, PROTO_ERR_UNAUTHORIZED,
                     "a peer request needs a valid " PEER_HEADER " signature");
        return 401;
    }
    const char *prefix = "/internal/logs";
    size_t plen = strlen(prefix);
    if (strcmp(path, prefix) == 0) {
        serve_logs(p, mc);
        return 200;
    }
    const char *suffix = "/events";
    size_t len = strlen(path), slen = strlen(suffix);
    if (len > plen + 1 + slen && strncmp(path, prefix, plen) == 0 && path[plen] == '/' &&
        strcmp(path + len - slen, suffix) == 0 && len - plen - 1 - slen <= PROTO_ROOM_MAX + 1) {
        char log[PROTO_ROOM_MAX + 2];
        memcpy(log, path + plen + 1, len - plen - 1 - slen);
        log[len - plen - 1 - slen] = '\0';
        serve_events(p, mc, log);
        return 200;
    }
    send_refusal(mc, PROTO_ERR_NOT_FOUND, "no such internal endpoint");
    return 404;
}

void peer_register(struct peer *peer, struct mg_context *ctx)
{
    if (peer)
        mg_set_request_handler(ctx, "/internal/", internal_handler, peer);
}

/* ---------------------------------------------------------------- HTTP client */

/* One peer request: a socket and what was read of it. */
struct http_get {
    struct peer *p; /* a stop ends every wait */
    int fd;
    char *buf; /* bytes read and not yet consumed */
    size_t len;
    size_t cap;
    bool eof;
};

/* Wait for the socket to be ready for events, up to IO_TIMEOUT_MS, in
 * steps that notice a stop (the shutdown budget is shorter). */
static bool wait_fd(struct peer *p, int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (int waited = 0; waited < IO_TIMEOUT_MS && !is_stopping(p); waited += POLL_STEP_MS) {
        int rc = poll(&pfd, 1, POLL_STEP_MS);
        if (rc != 0 && !(rc < 0 && errno == EINTR))
            return rc == 1;
    }
    return false;
}

static int connect_to(struct peer *p, const char *host, int port)
{
    char ports[8];
    snprintf(ports, sizeof(ports), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, ports, &hints, &res) != 0)
        return -EHOSTUNREACH;
    int fd = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0)
            continue;
        int rc = connect(s, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            int err = 0;
            socklen_t elen = sizeof(err);
            rc = wait_fd(p, s, POLLOUT) && getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 &&
                         err == 0
                     ? 0
                     : -1;
        }
        if (rc == 0) {
            fd = s;
            break;
        }
        close(s);
    }
    freeaddrinfo(res);
    return fd;
}

/* Read more bytes into h->buf; false on a timeout or an error (EOF sets eof). */
static bool http_fill(struct http_get *h)
{
    if (h->cap - h->len < 65536) {
        h->cap = h->cap ? h->cap * 2 : 262144;
        h->buf = xrealloc(h->buf, h->cap);
    }
    for (;;) {
        ssize_t n = recv(h->fd, h->buf + h->len, h->cap - h->len - 1, 0);
        if (n > 0) {
            h->len += (size_t)n;
            h->buf[h->len] = '\0';
            return true;
        }
        if (n == 0) {
            h->eof = true;
            return true;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN || !wait_fd(h->p, h->fd, POLLIN))
            return false;
    }
}

static void http_consume(struct http_get *h, size_t n)
{
    memmove(h->buf, h->buf + n, h->len - n);
    h->len -= n;
    h->buf[h->len] = '\0';
}

static void http_close(struct http_get *h)
{
    if (h->fd >= 0)
        close(h->fd);
    free(h->buf);
    memset(h, 0, sizeof(*h));
    h->fd = -1;
}

/* Send the signed GET and read the status line and headers; on 0 the body
 * follows in h (Connection: close: it ends at EOF). why gets the reason. */
static int http_open(struct peer *p, struct http_get *h, const char *host, int port,
                     const char *secret, const char *target, char *why, size_t whylen)
{
    memset(h, 0, sizeof(*h));
    h->p = p;
    h->fd = connect_to(p, host, port);
    if (h->fd < 0) {
        snprintf(why, whylen, "cannot connect");
        return -ECONNREFUSED;
    }
    char sig[PEER_HEADER_MAX], req[4096];
    peer_sign(secret, "GET", target, util_now_ms(), sig, sizeof(sig));
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\n" PEER_HEADER
                     ": %s\r\nConnection: close\r\n\r\n",
                     target, v6 ? "[" : "", host, v6 ? "]" : "", port, sig);
    for (int off = 0; off < n;) {
        ssize_t w = send(h->fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w > 0) {
            off += (int)w;
        } else if (w < 0 && (errno == EINTR || (errno == EAGAIN && wait_fd(p, h->fd, POLLOUT)))) {
            continue;
        } else {
            snprintf(why, whylen, "send failed");
            return -EIO;
        }
    }
    char *end;
    while (!(end = strstr(h->buf ? h->buf : "", "\r\n\r\n"))) {
        if (h->eof || h->len > 65536 || !http_fill(h)) {
            snprintf(why, whylen, "no response head");
            return -EIO;
        }
    }
    int status = 0;
    if (sscanf(h->buf, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
        snprintf(why, whylen, "status %d", status);
        return -EPROTO;
    }
    http_consume(h, (size_t)(end + 4 - h->buf));
    return 0;
}

/* The next line of the body, NUL-terminated in place (valid until the next
 * call, which first consumes it); NULL at EOF or on an error. */
static char *http_line(struct http_get *h, size_t *consumed)
{
    if (*consumed) {
        http_consume(h, *consumed);
        *consumed = 0;
    }
    char *nl;
    while (!(nl = memchr(h->buf ? h->buf : "", '\n', h->len))) {
        if (h->eof || h->len > LINE_MAX_BYTES || !http_fill(h))
            return NULL;
    }
    *nl = '\0';
    *consumed = (size_t)(nl - h->buf) + 1;
    return h->buf;
}

/* ---------------------------------------------------------------- copy */

/* One announced peer. */
struct peer_entry {
    char node[256];
    char url[URL_MAX];
    bool failed; /* this round */
};

struct peer_list {
    struct peer_entry *items;
    size_t count;
    size_t cap;
};

static int valkey_ensure(struct peer *p, char *why, size_t whylen)
{
    if (p->conn && !valkey_is_broken(p->conn))
        return 0;
    valkey_close(p->conn);
    const struct config *c = p->config;
    struct valkey_options opts = {
        .host = c->redis_host,
        .port = c->redis_port,
        .username = c->redis_username,
        .password = c->redis_password,
        .tls = c->redis_tls != 0,
        .ca_file = c->redis_ca_file,
        .connect_timeout_ms = c->redis_timeout_ms,
        .command_timeout_ms = c->redis_timeout_ms,
    };
    p->conn = valkey_connect(&opts, why, whylen);
    return p->conn ? 0 : -ENOTCONN;
}

/* Unexpired announced peers but this node into list (replacing it); expired
 * entries are removed. */
static int read_peers(struct peer *p, struct peer_list *list)
{
    char why[256];
    if (valkey_ensure(p, why, sizeof(why)) < 0)
        return -ENOTCONN;
    const char *argv[] = {"HGETALL", PEERS_KEY};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(p->conn, &r, 2, argv, NULL);
    if (rc < 0)
        return rc;
    list->count = 0;
    int64_t now = util_now_ms();
    for (size_t i = 0; r->type == VALKEY_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const struct valkey_reply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != VALKEY_REPLY_STRING || v->type != VALKEY_REPLY_STRING)
            continue;
        char *sp = NULL;
        long long expires = strtoll(v->str, &sp, 10);
        if (expires < now) {
            const char *del[] = {"HDEL", PEERS_KEY, k->str};
            struct valkey_reply *dr = NULL;
            if (valkey_command(p->conn, &dr, 3, del, NULL) == 0)
                valkey_reply_free(dr);
            continue;
        }
        if (strcmp(k->str, p->config->node_id) == 0 || !sp || *sp != ' ')
            continue;
        UTIL_GROW(list->items, list->count, list->cap);
        struct peer_entry *e = &list->items[list->count++];
        memset(e, 0, sizeof(*e));
        snprintf(e->node, sizeof(e->node), "%s", k->str);
        snprintf(e->url, sizeof(e->url), "%s", sp + 1);
    }
    valkey_reply_free(r);
    return 0;
}

static void set_progress(struct peer *p, const char *from, uint64_t copied, uint64_t total)
{
    pthread_mutex_lock(&p->lock);
    if (from)
        snprintf(p->progress.from, sizeof(p->progress.from), "%s", from);
    p->progress.copied = copied;
    p->progress.total = total;
    pthread_mutex_unlock(&p->lock);
}

/* An event line of a page into a new event of log; NULL when malformed. */
static struct chat_msg *parse_event(const char *log, const char *line, size_t len)
{
    cJSON *o = proto_parse_object(line, len);
    if (!o)
        return NULL;
    bool bad = false;
    const char *u = proto_get_string(o, "u", &bad), *t = proto_get_string(o, "t", &bad);
    const char *r = proto_get_string(o, "r", &bad);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "ts");
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "x");
    uint64_t id = 0;
    int64_t ts_ms = 0;
    struct chat_msg *m = NULL;
    if (bad || !u || !t || !cJSON_IsNumber(ts) || !proto_get_int(o, "ts", &ts_ms) ||
        !cJSON_IsObject(x) || !proto_get_id(o, "id", &id) || id == 0)
        goto out;
    m = chat_msg_create(log, u, t, r);
    m->id = id;
    m->ts = ts_ms;
    if (!proto_extras_apply(m, x)) {
        chat_msg_free(m);
        m = NULL;
    }
out:
    cJSON_Delete(o);
    return m;
}

/* One page of a log as a peer served it. */
struct page {
    struct chat_msg **msgs;
    size_t n;
    char **claims;
    size_t ncl;
};

static void page_dispose(struct page *pg)
{
    store_free_messages(pg->msgs, pg->n);
    for (size_t i = 0; i < pg->ncl; i++)
        free(pg->claims[i]);
    free(pg->claims);
    memset(pg, 0, sizeof(*pg));
}

/* GET the page of log after `after` (with its claims when first) into *pg. */
static int fetch_page(struct peer *p, const char *host, int port, const char *secret,
                      const char *log, uint64_t after, bool first, struct page *pg, char *why,
                      size_t whylen)
{
    char target[512];
    snprintf(target, sizeof(target), "/internal/logs/%s/events?after=%" PRIu64 "&limit=%d%s", log,
             after, p->config->sync_page_size, first ? "&claims=1" : "");
    struct http_get h;
    int rc = http_open(p, &h, host, port, secret, target, why, whylen);
    size_t cap = 0, consumed = 0;
    bool ended = false;
    char *line;
    for (bool head = true; rc == 0 && (line = http_line(&h, &consumed)) != NULL; head = false) {
        size_t len = consumed - 1;
        if (head) {
            cJSON *o = proto_parse_object(line, len);
            const cJSON *cl = o ? cJSON_GetObjectItemCaseSensitive(o, "claims") : NULL;
            const cJSON *c;
            cJSON_ArrayForEach(c, cl)
            {
                if (cJSON_IsString(c)) {
                    pg->claims = xrealloc(pg->claims, (pg->ncl + 1) * sizeof(*pg->claims));
                    pg->claims[pg->ncl++] = xstrdup(c->valuestring);
                }
            }
            if (!o)
                rc = -EPROTO;
            cJSON_Delete(o);
            continue;
        }
        if (strncmp(line, "{\"end\":true", 11) == 0) {
            ended = true;
            break;
        }
        struct chat_msg *m = parse_event(log, line, len);
        if (!m || m->id <= (pg->n ? pg->msgs[pg->n - 1]->id : after)) {
            chat_msg_free(m);
            rc = -EPROTO;
            break;
        }
        UTIL_GROW(pg->msgs, pg->n, cap);
        pg->msgs[pg->n++] = m;
    }
    http_close(&h);
    if (rc == 0 && !ended) {
        snprintf(why, whylen, "the page was cut short");
        rc = -EIO;
    } else if (rc == -EPROTO && !why[0]) {
        snprintf(why, whylen, "a malformed page");
    }
    if (rc < 0)
        page_dispose(pg);
    return rc;
}

/* The import of one page in the store's queue: the copy fetches the next
 * page meanwhile, and waits for this one before it queues that. */
struct import_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pending; /* queued, its callback still to come or not yet waited for */
    bool done;
    int status;
    size_t n;      /* events of the page */
    uint64_t next; /* the cursor once it is committed */
};

static void on_imported(void *ctx, int status)
{
    struct import_wait *w = ctx;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    w->status = status;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Wait for the page in the store's queue, if any; advance the cursor and the
 * progress once it is committed. */
static int finish_import(struct peer *p, struct import_wait *w, uint64_t *cursor, uint64_t *copied,
                         uint64_t total, const char *url, char *why, size_t whylen)
{
    if (!w->pending)
        return 0;
    uint64_t t0 = util_mono_ns();
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    p->store_wait_ns += util_mono_ns() - t0;
    w->pending = false;
    if (w->status < 0) {
        snprintf(why, whylen, "the store refused a page");
        return -TC_ESTORE;
    }
    *copied += w->n;
    *cursor = w->next;
    set_progress(p, url, *copied, total);
    return 0;
}

/* Copy the events of log after *cursor up to last from the peer at host:port,
 * page by page, advancing *cursor and *copied as pages are committed. */
static int copy_log(struct peer *p, const char *host, int port, const char *secret, const char *log,
                    uint64_t begins, uint64_t *cursor, uint64_t last, uint64_t *copied,
                    uint64_t total, const char *url, char *why, size_t whylen)
{
    struct import_wait w = {.pending = false};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    uint64_t fetch_at = *cursor;
    int rc = 0;
    if (begins > 1) { /* the peer's history begins later: so does ours, before any page */
        w.next = *cursor;
        rc = store_import(p->store, log, begins, NULL, 0, NULL, 0, on_imported, &w);
        w.pending = rc == 0;
    }
    for (bool first = true; rc == 0 && fetch_at < last; first = false) {
        if (is_stopping(p)) {
            snprintf(why, whylen, "stopping");
            rc = -ECANCELED;
            break;
        }
        struct page pg = {0};
        rc = fetch_page(p, host, port, secret, log, fetch_at, first, &pg, why, whylen);
        if (rc == 0)
            rc = finish_import(p, &w, cursor, copied, total, url, why, whylen);
        if (rc < 0) {
            page_dispose(&pg);
            break;
        }
        w.done = false;
        w.n = pg.n;
        w.next = pg.n ? pg.msgs[pg.n - 1]->id : last;
        rc = store_import(p->store, log, 0, pg.msgs, pg.n, pg.claims, pg.ncl, on_imported, &w);
        if (rc < 0) {
            page_dispose(&pg);
            snprintf(why, whylen, "the store refused a page");
            break;
        }
        w.pending = true;
        fetch_at = w.next;
    }
    /* a page queued before a failure is committed all the same: count it */
    int last_rc = finish_import(p, &w, cursor, copied, total, url, why, whylen);
    if (rc == 0)
        rc = last_rc;
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return rc;
}

/* Copy every log from one peer. */
static int copy_from(struct peer *p, const char *url, uint64_t *copied, char *why, size_t whylen)
{
    char host[256], secret[sizeof(p->secret)];
    int port;
    if (util_parse_http_url(url, host, sizeof(host), &port, why, whylen) < 0)
        return -EINVAL;
    get_secret(p, secret, sizeof(secret));
    set_progress(p, url, *copied, *copied);
    struct http_get h;
    int rc = http_open(p, &h, host, port, secret, "/internal/logs", why, whylen);
    while (rc == 0 && !h.eof && h.len < LOGS_BODY_MAX)
        if (!http_fill(&h))
            rc = -EIO;
    cJSON *body = rc == 0 && h.eof ? proto_parse_object(h.buf ? h.buf : "", h.len) : NULL;
    http_close(&h);
    const cJSON *logs = body ? cJSON_GetObjectItemCaseSensitive(body, "logs") : NULL;
    if (rc == 0 && !cJSON_IsArray(logs)) {
        snprintf(why, whylen, "a malformed list of logs");
        rc = -EPROTO;
    }
    size_t nlogs = rc == 0 ? (size_t)cJSON_GetArraySize(logs) : 0;
    uint64_t *cursors = xcalloc(nlogs + 1, sizeof(*cursors));
    uint64_t *lasts = xcalloc(nlogs + 1, sizeof(*lasts));
    uint64_t *begins = xcalloc(nlogs + 1, sizeof(*begins));
    uint64_t total = *copied;
    for (size_t i = 0; rc == 0 && i < nlogs; i++) {
        const cJSON *e = cJSON_GetArrayItem(logs, (int)i);
        const char *name = proto_get_string(e, "log", &(bool){false});
        if (!name || !proto_log_is_valid(name) || !proto_get_id(e, "last", &lasts[i])) {
            snprintf(why, whylen, "a malformed list of logs");
            rc = -EPROTO;
            break;
        }
        if (!proto_get_id(e, "begins", &begins[i]))
            begins[i] = 1;
        rc = store_run_end(p->store, name, 1, &cursors[i]);
        if (lasts[i] > cursors[i])
            total += lasts[i] - cursors[i];
    }
    set_progress(p, url, *copied, total);
    for (size_t i = 0; rc == 0 && i < nlogs; i++) {
        const char *name = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(logs, (int)i), "log"));
        rc = copy_log(p, host, port, secret, name, begins[i], &cursors[i], lasts[i], copied, total,
                      url, why, whylen);
    }
    free(cursors);
    free(lasts);
    free(begins);
    cJSON_Delete(body);
    return rc;
}

/* Copy from live peers until one served everything, none is announced, or
 * stopping. */
static void copy_all(struct peer *p)
{
    uint64_t started = util_mono_ns(), copied = 0;
    struct peer_list list = {0};
    bool logged_start = false, done = false;
    unsigned seed = (unsigned)util_mono_ns() ^ (unsigned)getpid();
    while (!done && !is_stopping(p)) {
        if (read_peers(p, &list) < 0) {
            if (sleep_unless_stopping(p, RETRY_MS))
                break;
            continue;
        }
        if (list.count == 0) {
            if (logged_start)
                log_msg(LOG_WARN, "sync_gave_up",
                        "events=%" PRIu64 " reason=\"no announced peer answered\"", copied);
            else
                log_msg(LOG_INFO, "sync_skipped", "reason=\"no peer is announced\"");
            break;
        }
        if (!logged_start)
            log_msg(LOG_INFO, "sync_start", "peers=%zu", list.count);
        logged_start = true;
        size_t start = (size_t)rand_r(&seed) % list.count; /* spread new nodes over peers */
        for (size_t k = 0; k < list.count && !done; k++) {
            struct peer_entry *e = &list.items[(start + k) % list.count];
            char why[256] = "";
            int rc = copy_from(p, e->url, &copied, why, sizeof(why));
            if (rc == 0) {
                done = true;
                log_msg(LOG_INFO, "sync_done",
                        "peer=%s events=%" PRIu64 " seconds=%.3f store_wait_seconds=%.3f", e->url,
                        copied, (double)(util_mono_ns() - started) / 1e9,
                        (double)p->store_wait_ns / 1e9);
            } else if (rc != -ECANCELED) {
                log_msg(LOG_WARN, "sync_peer_failed", "peer=%s node=%s reason=\"%s\" status=%d",
                        e->url, e->node, why, rc);
            }
            if (is_stopping(p))
                break;
        }
        if (!done && sleep_unless_stopping(p, RETRY_MS))
            break;
    }
    free(list.items);
}

/* ---------------------------------------------------------------- thread */

/* The cluster secret: the configured one, else the one in Valkey, offering
 * ours (or, before we have one, a random one) should Valkey have none: a
 * Valkey restarted empty gets the secret of the nodes that survived it back,
 * and every node ends with the one Valkey kept. Called again with every
 * announcement. */
static int learn_secret(struct peer *p)
{
    if (p->config->cluster_secret) {
        pthread_mutex_lock(&p->lock);
        snprintf(p->secret, sizeof(p->secret), "%s", p->config->cluster_secret);
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    char why[256];
    if (valkey_ensure(p, why, sizeof(why)) < 0)
        return -ENOTCONN;
    unsigned char raw[32];
    char hex[sizeof(p->secret)];
    get_secret(p, hex, sizeof(hex));
    bool fresh = hex[0] == '\0';
    if (fresh && RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    for (size_t i = 0; fresh && i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    const char *set[] = {"SET", SECRET_KEY, hex, "NX"};
    const char *get[] = {"GET", SECRET_KEY};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(p->conn, &r, 4, set, NULL);
    valkey_reply_free(r);
    r = NULL;
    if (rc == 0)
        rc = valkey_command(p->conn, &r, 2, get, NULL);
    if (rc == 0 && (r->type != VALKEY_REPLY_STRING || r->len < PEER_SECRET_MIN))
        rc = -EPROTO;
    if (rc == 0) {
        pthread_mutex_lock(&p->lock);
        bool changed = p->secret[0] != '\0' && strcmp(p->secret, r->str) != 0;
        snprintf(p->secret, sizeof(p->secret), "%s", r->str);
        pthread_mutex_unlock(&p->lock);
        if (changed)
            log_msg(LOG_WARN, "peer_secret_changed",
                    "reason=\"another node's secret is in Valkey\"");
    }
    valkey_reply_free(r);
    return rc;
}

/* The port of the first plain-HTTP listener, and its address when it names
 * one that is not a wildcard (into host, else ""); 0 when all are TLS. */
static int first_plain_listener(const char *listen, char *host, size_t hostlen)
{
    char *copy = xstrdup(listen), *save = NULL;
    int port = 0;
    host[0] = '\0';
    for (char *item = strtok_r(copy, ",", &save); item && !port;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        size_t len = strlen(item);
        if (len == 0 || item[len - 1] == 's' || item[len - 1] == 'r')
            continue;
        char *colon = strrchr(item, ':');
        port = atoi(colon ? colon + 1 : item);
        if (colon && port) {
            *colon = '\0';
            char *a = item;
            if (*a == '[' && a[strlen(a) - 1] == ']') {
                a++;
                a[strlen(a) - 1] = '\0';
            }
            if (strcmp(a, "0.0.0.0") != 0 && strcmp(a, "::") != 0)
                snprintf(host, hostlen, "%s", a);
        }
    }
    free(copy);
    return port;
}

/* This node's peer_url: configured, or the listener's address (or else the
 * local address of the Valkey connection) and the first plain port. */
static void find_url(struct peer *p)
{
    if (p->config->peer_url) {
        snprintf(p->url, sizeof(p->url), "%s", p->config->peer_url);
        return;
    }
    char host[INET6_ADDRSTRLEN + 1];
    int port = first_plain_listener(p->config->listen, host, sizeof(host));
    if (!port) {
        log_msg(LOG_WARN, "peer_no_url",
                "reason=\"only TLS listeners: set peer_url (TURBOCHAT_PEER_URL) to a plain "
                "http:// listener so other nodes can copy the log from this one\"");
        return;
    }
    if (!host[0]) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(valkey_fd(p->conn), (struct sockaddr *)&ss, &sl) != 0)
            return;
        const void *addr = ss.ss_family == AF_INET6
                               ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                               : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
        if (!inet_ntop(ss.ss_family, addr, host, sizeof(host)))
            return;
    }
    bool v6 = strchr(host, ':') != NULL;
    snprintf(p->url, sizeof(p->url), "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

static int announce(struct peer *p)
{
    char why[256], value[URL_MAX + 32];
    if (!p->url[0])
        return 0;
    if (valkey_ensure(p, why, sizeof(why)) < 0)
        return -ENOTCONN;
    if (learn_secret(p) < 0)
        return -ENOTCONN;
    snprintf(value, sizeof(value), "%" PRId64 " %s", util_now_ms() + ANNOUNCE_TTL_MS, p->url);
    const char *argv[] = {"HSET", PEERS_KEY, p->config->node_id, value};
    struct valkey_reply *r = NULL;
    int rc = valkey_command(p->conn, &r, 4, argv, NULL);
    valkey_reply_free(r);
    return rc;
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    int backoff = 100;
    /* The secret and a connection to learn the local address from. */
    for (;;) {
        char why[256];
        if (valkey_ensure(p, why, sizeof(why)) == 0 && learn_secret(p) == 0)
            break;
        if (sleep_unless_stopping(p, backoff))
            return NULL;
        backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
    }
    find_url(p);
    copy_all(p);
    pthread_mutex_lock(&p->lock);
    p->progress.done = true;
    pthread_mutex_unlock(&p->lock);
    log_msg(LOG_INFO, "peer_announced", "url=%s", p->url[0] ? p->url : "(none)");
    do {
        if (announce(p) < 0)
            log_msg(LOG_WARN, "peer_announce_failed", "url=%s", p->url);
    } while (!sleep_unless_stopping(p, ANNOUNCE_MS));
    return NULL;
}

struct peer *peer_create(const struct config *config, struct store *store)
{
    struct peer *p = xcalloc(1, sizeof(*p));
    p->config = config;
    p->store = store;
    pthread_mutex_init(&p->lock, NULL);
    util_cond_init_monotonic(&p->wake);
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        abort(); /* like xmalloc: out of resources at start-up */
    return p;
}

void peer_get_progress(struct peer *peer, struct peer_progress *out)
{
    if (!peer) {
        *out = (struct peer_progress){.done = true};
        return;
    }
    pthread_mutex_lock(&peer->lock);
    *out = peer->progress;
    pthread_mutex_unlock(&peer->lock);
}

void peer_free(struct peer *peer)
{
    if (!peer)
        return;
    pthread_mutex_lock(&peer->lock);
    peer->stopping = true;
    bool announced = peer->progress.done;
    pthread_cond_broadcast(&peer->wake);
    pthread_mutex_unlock(&peer->lock);
    pthread_join(peer->thread, NULL);
    if (announced && peer->conn && !valkey_is_broken(peer->conn)) {
        const char *argv[] = {"HDEL", PEERS_KEY, peer->config->node_id};
        struct valkey_reply *r = NULL;
        if (valkey_command(peer->conn, &r, 3, argv, NULL) == 0)
            valkey_reply_free(r);
    }
    valkey_close(peer->conn);
    pthread_cond_destroy(&peer->wake);
    pthread_mutex_destroy(&peer->lock);
    free(peer);
}
