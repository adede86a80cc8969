/* ws: the WebSocket endpoint. On a CivetWeb worker it admits the upgrade (node
 * and per-IP limits, origin) and hands the upgraded socket to an event loop;
 * from then on one session per connection runs on that loop: it enforces the
 * rate limits, validates every frame and answers with the frames of
 * docs/PROTOCOL.md. Framing itself (RFC 6455) is wsframe's, in loop. */
#define _GNU_SOURCE
#include "ws.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accounts.h"
#include "auth.h"
#include "broker.h"
#include "chat.h"
#include "config.h"
#include "http_accounts.h"
#include "http_api.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "proto.h"
#include "budget.h"
#include "ratelimit.h"
#include "rooms.h"
#include "store.h"
#include "util.h"

#define TYPING_RATE 1.0  /* typing frames per second, sustained */
#define TYPING_BURST 3.0 /* excess typing frames are dropped silently */
#define RETRY_AFTER_S 5  /* what a refused upgrade is told */

struct ws {
    const struct config *config;
    struct accounts *accounts; /* auth = accounts only */
    struct rooms *rooms;
    struct hub *hub;
    struct broker *broker;
    struct store *store;
    struct metrics *metrics;
    struct loops *loops;
    struct budgets *budgets;
    atomic_bool refusing;
};

/* State of one WebSocket; only its loop thread touches it. */
struct ws_session {
    struct ws *ws;
    struct conn *conn;         /* set by the first handler call */
    struct hub_conn *hc;       /* likewise */
    char *user;                /* NULL until hello */
    struct auth_claims claims; /* with auth on: what the token allows */
    char *cookie_user;         /* auth = accounts: the session of the upgrade's cookie */
    char *cookie_sid;
    bool cookie_admin;
    int64_t cookie_expires_ms;
    char *sid;     /* auth = accounts: the session this connection belongs to */
    char *address; /* the client's, whose write budget it shares */
    struct ratelimit typing;
    struct ratelimit joins; /* join and leave frames */
};

/* A send waiting for the broker; holds a reference on conn. */
struct pending_send {
    struct conn *conn;
    struct metrics *metrics;
    char *ref;
    char *room;
};

/* ---------------------------------------------------------------- replies */

static void send_json(struct ws_session *s, cJSON *obj)
{
    size_t len;
    char *json = proto_encode_json(obj, &len);
    cJSON_Delete(obj);
    conn_send_text(s->conn, json, len);
    free(json);
}

static void send_error_to(struct conn *conn, struct metrics *metrics, enum proto_error err,
                          const char *message, const char *ref, const char *room)
{
    size_t len;
    char *json = proto_encode_error(proto_error_code(err), message, ref, room, &len);
    conn_send_text(conn, json, len);
    free(json);
    atomic_fetch_add(&metrics->frames_rejected, 1);
}

static void send_error(struct ws_session *s, enum proto_error err, const char *message,
                       const char *ref, const char *room)
{
    send_error_to(s->conn, s->ws->metrics, err, message, ref, room);
}

static cJSON *frame_object(const char *type)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", type);
    return obj;
}

/* ---------------------------------------------------------------- fields */

/* The claims of the session: none under auth = off. */
static const struct auth_claims *claims_of(const struct ws_session *s)
{
    return s->ws->config->auth != CONFIG_AUTH_OFF ? &s->claims : NULL;
}

/* The room field, which the user may use so: NULL after answering the error. */
static const char *require_room(struct ws_session *s, const struct proto_frame *f,
                                enum rooms_use use, const char *ref)
{
    const char *room = f->room;
    if (f->room_why) {
        send_error(s, f->room_err, f->room_why, ref, NULL);
        return NULL;
    }
    enum proto_error err;
    char why[ROOMS_WHY_MAX];
    if (!rooms_may_use(s->ws->rooms, room, claims_of(s), use, &err, why)) {
        send_error(s, err, why, ref, room);
        return NULL;
    }
    return room;
}

/* The optional ref field; false after answering the error. */
static bool optional_ref(struct ws_session *s, const struct proto_frame *f, const char **ref)
{
    *ref = f->ref;
    if (f->ref_why) {
        send_error(s, PROTO_ERR_BAD_REQUEST, f->ref_why, NULL, NULL);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- frames */

/* Claims of an account's session: every room, moderator everywhere when
 * admin, valid until the session ends. */
static void session_claims(struct ws_session *s, const char *user, const char *sid, bool admin,
                           int64_t expires_ms)
{
    s->claims.sub = xstrdup(user);
    s->claims.exp = expires_ms / 1000;
    s->claims.all_rooms = true;
    s->claims.role = admin ? AUTH_ROLE_ADMIN : AUTH_ROLE_USER;
    s->sid = sid ? xstrdup(sid) : NULL;
}

/* auth = accounts: the session of the hello's token, or of the upgrade's
 * cookie; a JWT too when auth_secret is set. */
static bool hello_account(struct ws_session *s, const char *token, const char **why)
{
    struct accounts_caller caller;
    if (token && accounts_authenticate(s->ws->accounts, token, true, &caller)) {
        session_claims(s, caller.user, caller.sid, caller.admin, caller.expires_ms);
        accounts_caller_dispose(&caller);
        return true;
    }
    if (token && s->ws->config->auth_secret)
        return auth_verify(s->ws->config->auth_secret, token, util_now_ms() / 1000, &s->claims,
                           why) == 0;
    if (!token && s->cookie_user) {
        session_claims(s, s->cookie_user, s->cookie_sid, s->cookie_admin, s->cookie_expires_ms);
        return true;
    }
    *why = token ? "the token is not a session's" : "sign in first";
    return false;
}

/* The user name of a hello: from the token or session with auth on, else
 * from name. NULL after answering the error. */
static char *hello_user(struct ws_session *s, const struct proto_frame *f)
{
    const struct config *config = s->ws->config;
    if (config->auth != CONFIG_AUTH_OFF) {
        const char *token = f->token;
        const char *why = "a token is required";
        bool ok = config->auth == CONFIG_AUTH_ACCOUNTS
                      ? hello_account(s, token, &why)
                      : token && auth_verify(config->auth_secret, token, util_now_ms() / 1000,
                                             &s->claims, &why) == 0;
        if (!ok) {
            send_error(s, PROTO_ERR_UNAUTHORIZED, why, NULL, NULL);
            return NULL;
        }
        return xstrdup(s->claims.sub);
    }
    char *user = f->name ? xstrdup(f->name) : NULL;
    const char *why = "name is required and must be a string";
    if (!user || !proto_user_normalize(user, &why)) {
        free(user);
        send_error(s, PROTO_ERR_BAD_REQUEST, why, NULL, NULL);
        return NULL;
    }
    return user;
}

/* hello: returns false when the connection must close (1008). */
static bool on_hello(struct ws_session *s, const struct proto_frame *f)
{
    if (s->user) {
        send_error(s, PROTO_ERR_BAD_REQUEST, "hello was already received", NULL, NULL);
        return true;
    }
    char *user = hello_user(s, f);
    if (!user)
        return false;
    s->user = user;
    hub_conn_set_user(s->hc, user, s->sid, claims_of(s));
    conn_hello_done(s->conn);
    if (s->ws->config->auth != CONFIG_AUTH_OFF && s->claims.exp > 0)
        conn_set_expiry(s->conn, s->claims.exp * 1000,
                        s->sid ? "session expired" : "token expired");
    cJSON *welcome = frame_object("welcome");
    cJSON_AddStringToObject(welcome, "user", user);
    cJSON_AddStringToObject(welcome, "node", s->ws->config->node_id);
    cJSON_AddNumberToObject(welcome, "server_time", (double)util_now_ms());
    cJSON_AddNumberToObject(welcome, "protocol", PROTO_VERSION);
    send_json(s, welcome);
    return true;
}

/* join and leave: false after answering rate_limited. */
static bool take_join_token(struct ws_session *s, const char *room)
{
    if (ratelimit_take(&s->joins, util_mono_ns()))
        return true;
    atomic_fetch_add(&s->ws->metrics->rate_limited, 1);
    send_error(s, PROTO_ERR_RATE_LIMITED, "too many joins and leaves; slow down", NULL, room);
    return false;
}

/* True when the user may speak in room: a mute is silent in a joined frame
 * and in typing. */
static bool may_speak(struct ws_session *s, const char *room)
{
    enum proto_error err;
    char why[ROOMS_WHY_MAX];
    return rooms_may_use(s->ws->rooms, room, claims_of(s), ROOMS_SPEAK, &err, why);
}

static void on_join(struct ws_session *s, const struct proto_frame *f)
{
    const char *room = require_room(s, f, ROOMS_READ, NULL);
    if (!room || !take_join_token(s, room))
        return;
    if (f->why) {
        send_error(s, PROTO_ERR_BAD_REQUEST, f->why, NULL, room);
        return;
    }
    uint64_t since = f->since;
    bool has_since = f->has_since;
    struct hub_read_state read = {.begins = 1};
    read.muted = !may_speak(s, room);
    if (s->ws->accounts)
        store_unread(s->ws->store, room, s->user, &read.last_read, &read.unread, &read.mentions);
    store_history_head(s->ws->store, room, &read.begins, &read.retention_days);
    int rc = hub_join(s->ws->hub, s->hc, room, has_since ? &since : NULL, &read);
    if (rc == -E2BIG)
        send_error(s, PROTO_ERR_TOO_MANY_ROOMS, "too many rooms joined on this connection", NULL,
                   room);
    else if (rc < 0)
        send_error(s, PROTO_ERR_INTERNAL, "could not join the room", NULL, room);
}

static void on_leave(struct ws_session *s, const struct proto_frame *f)
{
    const char *room = require_room(s, f, ROOMS_READ, NULL);
    if (!room || !take_join_token(s, room))
        return;
    if (hub_leave(s->ws->hub, s->hc, room) < 0) {
        send_error(s, PROTO_ERR_NOT_JOINED, "not a member of this room", NULL, room);
        return;
    }
    cJSON *left = frame_object("left");
    cJSON_AddStringToObject(left, "room", room);
    send_json(s, left);
}

static void send_ack_to(struct conn *conn, const struct chat_msg *msg)
{
    size_t len;
    char *json = proto_encode_ack(msg, &len);
    conn_send_text(conn, json, len);
    free(json);
}

static void send_ack(struct ws_session *s, const struct chat_msg *msg)
{
    send_ack_to(s->conn, msg);
}

/* Broker thread: the event was accepted (ack) or refused (error). */
static void on_published(void *ctx, int status, const struct chat_msg *msg)
{
    struct pending_send *p = ctx;
    if (status >= 0) {
        send_ack_to(p->conn, msg);
    } else if (status == -TC_EUNAVAILABLE) {
        send_error_to(p->conn, p->metrics, PROTO_ERR_UNAVAILABLE,
                      "the message could not be accepted now; retry with the same ref", p->ref,
                      p->room);
    } else {
        send_error_to(p->conn, p->metrics, PROTO_ERR_INTERNAL, "the message could not be stored",
                      p->ref, p->room);
    }
    conn_unref(p->conn);
    free(p->ref);
    free(p->room);
    free(p);
}

/* Publish ev (consumed); the outcome answers ack or error. */
static void publish_event(struct ws_session *s, struct chat_msg *ev)
{
    struct pending_send *p = xcalloc(1, sizeof(*p));
    p->conn = s->conn;
    p->metrics = s->ws->metrics;
    p->ref = ev->ref ? xstrdup(ev->ref) : NULL;
    p->room = xstrdup(ev->room);
    conn_ref(s->conn);
    int rc = broker_publish(s->ws->broker, ev, on_published, p);
    if (rc < 0)
        on_published(p, rc, NULL);
}

/* send, edit, delete and react take from the budget of the user and of the
 * address, shared with their other connections and REST; false after
 * answering. */
static bool take_send_token(struct ws_session *s, const char *ref)
{
    if (budgets_take(s->ws->budgets, s->user, s->address, util_mono_ns()))
        return true;
    atomic_fetch_add(&s->ws->metrics->rate_limited, 1);
    send_error(s, PROTO_ERR_RATE_LIMITED, "too many messages; slow down", ref, NULL);
    return false;
}

/* The room of a send, change or typing, which the connection must have joined; NULL
 * after answering the error. */
static const char *require_joined_room(struct ws_session *s, const struct proto_frame *f,
                                       enum rooms_use use, const char *ref)
{
    const char *room = require_room(s, f, use, ref);
    if (room && !hub_is_member(s->ws->hub, s->hc, room)) {
        send_error(s, PROTO_ERR_NOT_JOINED, "join the room first", ref, room);
        return NULL;
    }
    return room;
}

/* Act on chat's verdict on ev (consumed): publish it, answer the earlier
 * event (existing, freed) with ev's ref, or answer the refusal. */
static void answer_verdict(struct ws_session *s, struct chat_msg *ev, enum chat_verdict verdict,
                           struct chat_msg *existing, const struct chat_refusal *refusal)
{
    switch (verdict) {
    case CHAT_PUBLISH:
        publish_event(s, ev);
        return;
    case CHAT_ALREADY:
        free(existing->ref);
        existing->ref = ev->ref ? xstrdup(ev->ref) : NULL;
        send_ack(s, existing);
        chat_msg_free(existing);
        break;
    case CHAT_REFUSED:
        send_error(s, refusal->err, refusal->why, ev->ref, ev->room);
        break;
    }
    chat_msg_free(ev);
}

static void on_send(struct ws_session *s, const struct proto_frame *f)
{
    const char *ref;
    if (!optional_ref(s, f, &ref) || !take_send_token(s, ref))
        return;
    const char *room = require_joined_room(s, f, ROOMS_SPEAK, ref);
    if (!room)
        return;
    if (f->why) {
        send_error(s, PROTO_ERR_BAD_REQUEST, f->why, ref, room);
        return;
    }
    struct chat_msg *msg = chat_msg_create(room, s->user, f->text, ref);
    msg->reply_to = f->reply_to;
    struct chat_msg *existing;
    struct chat_refusal refusal;
    enum chat_verdict verdict =
        chat_prepare_send(s->ws->store, s->ws->config, msg, &existing, &refusal);
    rooms_keep_mentions_of_members(s->ws->rooms, msg);
    answer_verdict(s, msg, verdict, existing, &refusal);
}

/* The change a frame of type edit, delete or react asks for; NULL after
 * answering the error. */
static struct chat_msg *parse_change(struct ws_session *s, const struct proto_frame *f,
                                     enum chat_kind kind, const char *ref, const char *room)
{
    if (f->why) {
        send_error(s, PROTO_ERR_BAD_REQUEST, f->why, ref, room);
        return NULL;
    }
    struct chat_msg *ev = chat_msg_create(room, s->user, kind == CHAT_EDIT ? f->text : "", ref);
    ev->kind = kind;
    if (kind == CHAT_REACT) {
        ev->emoji = xstrdup(f->emoji);
        if (!f->add)
            ev->kind = CHAT_UNREACT;
    }
    ev->target = f->id;
    return ev;
}

/* edit, delete and react. */
static void on_change(struct ws_session *s, const struct proto_frame *f, enum chat_kind kind)
{
    const char *ref;
    if (!optional_ref(s, f, &ref) || !take_send_token(s, ref))
        return;
    /* A muted user may still delete their own messages. */
    const char *room =
        require_joined_room(s, f, kind == CHAT_DELETE ? ROOMS_READ : ROOMS_SPEAK, ref);
    struct chat_msg *ev = room ? parse_change(s, f, kind, ref, room) : NULL;
    if (!ev)
        return;
    bool moderator = s->ws->config->auth != CONFIG_AUTH_OFF && auth_is_moderator(&s->claims, room);
    struct chat_msg *existing;
    struct chat_refusal refusal;
    enum chat_verdict verdict =
        chat_prepare_change(s->ws->store, s->ws->config, ev, moderator, &existing, &refusal);
    answer_verdict(s, ev, verdict, existing, &refusal);
}

static void on_typing(struct ws_session *s, const struct proto_frame *f)
{
    /* a malformed frame is answered; excess typing is dropped before the
     * room is looked up, so a flood costs no store reads */
    if (f->room_why) {
        send_error(s, f->room_err, f->room_why, NULL, NULL);
        return;
    }
    if (!ratelimit_take(&s->typing, util_mono_ns()))
        return;
    const char *room = require_joined_room(s, f, ROOMS_READ, NULL);
    /* a muted user's typing is dropped as silently: the composer of a muted
     * user says so already */
    if (room && may_speak(s, room))
        hub_typing(s->ws->hub, s->hc, room);
}

/* A read event's outcome: nothing to answer (a lost one is read again). */
static void ignore_outcome(void *ctx, int status, const struct chat_msg *msg)
{
    (void)ctx;
    (void)status;
    (void)msg;
}

/* read {room, id}: the account read room up to id; its other connections,
 * on every node, are told through the account's read log. No answer. */
static void on_read(struct ws_session *s, const struct proto_frame *f)
{
    uint64_t id = f->id;
    const char *room = require_room(s, f, ROOMS_READ, NULL);
    if (!room || !take_join_token(s, room))
        return;
    if (!s->ws->accounts) {
        send_error(s, PROTO_ERR_BAD_REQUEST, "read state is kept with auth = accounts", NULL, room);
        return;
    }
    if (f->why) {
        send_error(s, PROTO_ERR_BAD_REQUEST, f->why, NULL, room);
        return;
    }
    char origin[PROTO_ROOM_MAX * 4];
    hub_conn_origin(s->hc, origin, sizeof(origin));
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "room", room);
    cJSON_AddNumberToObject(rec, "id", (double)id);
    cJSON_AddStringToObject(rec, "origin", origin);
    char *json = proto_encode_json(rec, NULL);
    cJSON_Delete(rec);
    char *log_name = rooms_read_log(s->user);
    struct chat_msg *ev = chat_msg_create(log_name, s->user, json, NULL);
    ev->kind = CHAT_READ;
    free(log_name);
    free(json);
    if (broker_publish(s->ws->broker, ev, ignore_outcome, NULL) < 0)
        log_msg(LOG_WARN, "read_not_published", "room=%s", room);
}

static void on_ping(struct ws_session *s, const struct proto_frame *f)
{
    cJSON *pong = frame_object("pong");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(f->root, "ref");
    cJSON_AddItemToObject(pong, "ref", ref ? cJSON_Duplicate(ref, true) : cJSON_CreateNull());
    send_json(s, pong);
}

/* One complete text message. Returns false when the connection must close. */
static bool on_text(struct ws_session *s, const char *data, size_t len)
{
    struct proto_frame f;
    enum proto_error err;
    const char *why;
    if (!proto_frame_parse(data, len, &f, &err, &why)) {
        send_error(s, err, why, NULL, NULL);
        proto_frame_dispose(&f);
        return true;
    }
    bool keep_open = true;
    if (f.type == PROTO_FRAME_HELLO) {
        keep_open = on_hello(s, &f);
    } else if (!s->user) {
        send_error(s, PROTO_ERR_HELLO_REQUIRED, "the first frame must be hello", NULL, NULL);
    } else {
        switch (f.type) {
        case PROTO_FRAME_JOIN:
            on_join(s, &f);
            break;
        case PROTO_FRAME_LEAVE:
            on_leave(s, &f);
            break;
        case PROTO_FRAME_SEND:
            on_send(s, &f);
            break;
        case PROTO_FRAME_EDIT:
            on_change(s, &f, CHAT_EDIT);
            break;
        case PROTO_FRAME_DELETE:
            on_change(s, &f, CHAT_DELETE);
            break;
        case PROTO_FRAME_REACT:
            on_change(s, &f, CHAT_REACT);
            break;
        case PROTO_FRAME_TYPING:
            on_typing(s, &f);
            break;
        case PROTO_FRAME_PING:
            on_ping(s, &f);
            break;
        case PROTO_FRAME_READ:
            on_read(s, &f);
            break;
        default:
            send_error(s, PROTO_ERR_BAD_REQUEST, "unknown frame type", NULL, NULL);
            break;
        }
    }
    proto_frame_dispose(&f);
    return keep_open;
}

/* ---------------------------------------------------------------- session, on its loop */

/* The first call on the loop binds the session to its connection. */
static struct ws_session *session_bind(void *ctx, struct conn *conn)
{
    struct ws_session *s = ctx;
    if (!s->conn) {
        s->conn = conn;
        s->hc = hub_conn_create(s->ws->hub, conn);
    }
    return s;
}

static int session_on_message(void *ctx, struct conn *conn, const char *data, size_t len)
{
    struct ws_session *s = session_bind(ctx, conn);
    if (on_text(s, data, len))
        return 0;
    conn_close(conn, PROTO_CLOSE_POLICY, "hello refused");
    return 1;
}

static void session_on_drain(void *ctx, struct conn *conn)
{
    struct ws_session *s = session_bind(ctx, conn);
    hub_conn_drained(s->hc);
}

static void session_on_closed(void *ctx, struct conn *conn)
{
    struct ws_session *s = ctx;
    (void)conn;
    if (s->hc)
        hub_conn_closed(s->hc);
    auth_claims_dispose(&s->claims);
    free(s->cookie_user);
    free(s->cookie_sid);
    free(s->sid);
    free(s->address);
    free(s->user);
    free(s);
}

static const struct conn_handler session_handler = {
    .on_message = session_on_message,
    .on_drain = session_on_drain,
    .on_closed = session_on_closed,
};

static struct ws_session *session_create(struct ws *ws, const char *address)
{
    struct ws_session *s = xcalloc(1, sizeof(*s));
    const struct config *config = ws->config;
    uint64_t now = util_mono_ns();
    s->ws = ws;
    s->address = xstrdup(address);
    ratelimit_init(&s->typing, TYPING_RATE, TYPING_BURST, now);
    ratelimit_init(&s->joins, config->join_rate_limit, config->join_rate_burst, now);
    return s;
}

/* auth = accounts: remember the session of the upgrade's cookie, so that a
 * page of this origin may say hello without a token. Worker thread. */
static void session_read_cookie(struct ws_session *s, const struct mg_connection *mc)
{
    const char *cookies = mg_get_header(mc, "Cookie");
    char cookie[512];
    struct accounts_caller caller;
    if (s->ws->accounts && cookies &&
        mg_get_cookie(cookies, HTTP_ACCOUNTS_COOKIE, cookie, sizeof(cookie)) > 0 &&
        accounts_authenticate(s->ws->accounts, cookie, false, &caller)) {
        s->cookie_user = caller.user;
        s->cookie_sid = caller.sid;
        s->cookie_admin = caller.admin;
        s->cookie_expires_ms = caller.expires_ms;
    }
}

/* ---------------------------------------------------------------- CivetWeb callbacks */

/* Refuse an upgrade with 503 and Retry-After; the handshake does not happen. */
static int refuse_upgrade(const struct mg_connection *mc, const char *why)
{
    char headers[64];
    snprintf(headers, sizeof(headers), "Retry-After: %d\r\nConnection: close\r\n", RETRY_AFTER_S);
    api_send_error_headers((struct mg_connection *)mc, PROTO_ERR_UNAVAILABLE, why, headers);
    return 1;
}

/* 0 accepts the handshake and holds a connection slot for it. A browser page
 * of another origin is refused with 403, so a foreign site cannot chat in the name of
 * a visitor; over the node's or the address's connection limit, 503. */
static int ws_on_connect(const struct mg_connection *mc, void *cbdata)
{
    struct ws *ws = cbdata;
    char ip[API_ADDRESS_MAX];
    api_client_address(mc, ws->config, ip, sizeof(ip));
    if (atomic_load(&ws->refusing))
        return refuse_upgrade(mc, "the server is shutting down");
    if (!api_origin_is_allowed(mc, ws->config)) {
        log_msg(LOG_INFO, "ws_origin_refused", "remote=%s", log_value(ip));
        /* An answer, not a hang-up: a proxy takes a hang-up for a failed
         * node, retries the others and leaves them all out for a while. */
        api_send_error_headers((struct mg_connection *)mc, PROTO_ERR_FORBIDDEN,
                               "this origin may not open a WebSocket", "Connection: close\r\n");
        return 1;
    }
    int rc = loops_admit(ws->loops, ip);
    if (rc < 0) {
        bool node_full = rc == -EBUSY;
        atomic_fetch_add(&ws->metrics->connections_refused, 1);
        log_msg(LOG_WARN, "ws_refused", "remote=%s reason=%s", log_value(ip),
                node_full ? "max_connections" : "max_connections_per_ip");
        return refuse_upgrade(mc, node_full ? "this node holds its maximum of connections"
                                            : "too many connections from this address");
    }
    mg_set_user_connection_data(mc, ws); /* marks the slot as held */
    return 0;
}

/* The handshake is done: the connection leaves CivetWeb for an event loop,
 * and this worker returns to the pool. */
static void ws_on_ready(struct mg_connection *mc, void *cbdata)
{
    struct ws *ws = cbdata;
    char ip[API_ADDRESS_MAX];
    api_client_address(mc, ws->config, ip, sizeof(ip));
    struct mg_detached_websocket detached;
    mg_set_user_connection_data(mc, NULL);
    if (mg_websocket_detach(mc, &detached) < 0) {
        loops_unadmit(ws->loops, ip);
        return;
    }
    struct ws_session *s = session_create(ws, ip);
    session_read_cookie(s, mc);
    loops_adopt(ws->loops, detached.sock, detached.ssl, detached.buffered, detached.buffered_len,
                ip, &session_handler, s);
}

/* ---------------------------------------------------------------- module */

struct ws *ws_create(const struct config *config, struct accounts *accounts, struct rooms *rooms,
                     struct hub *hub, struct broker *broker, struct store *store,
                     struct metrics *metrics, struct loops *loops, struct budgets *budgets)
{
    struct ws *ws = xcalloc(1, sizeof(*ws));
    ws->budgets = budgets;
    ws->config = config;
    ws->accounts = accounts;
    ws->rooms = rooms;
    ws->hub = hub;
    ws->broker = broker;
    ws->store = store;
    ws->metrics = metrics;
    ws->loops = loops;
    atomic_init(&ws->refusing, false);
    return ws;
}

void ws_free(struct ws *ws)
{
    free(ws);
}

void ws_register(struct ws *ws, struct mg_context *ctx)
{
    mg_set_websocket_handler(ctx, "/ws", ws_on_connect, ws_on_ready, NULL, NULL, ws);
}

void ws_connection_closed(struct ws *ws, const struct mg_connection *mc)
{
    char ip[API_ADDRESS_MAX];
    if (mg_get_user_connection_data(mc) != ws)
        return;
    api_client_address(mc, ws->config, ip, sizeof(ip));
    loops_unadmit(ws->loops, ip);
}

void ws_refuse_new(struct ws *ws)
{
    atomic_store(&ws->refusing, true);
}
