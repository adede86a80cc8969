/* ws: one session per WebSocket on its CivetWeb worker thread. Assembles
 * fragments, enforces the frame and rate limits, validates every frame and
 * answers with the frames of docs/PROTOCOL.md. Writing goes through the hub. */
#define _GNU_SOURCE
#include "ws.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "broker.h"
#include "config.h"
#include "http_api.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "ratelimit.h"
#include "util.h"

#define TYPING_RATE 1.0  /* typing frames per second, sustained */
#define TYPING_BURST 3.0 /* excess typing frames are dropped silently */

struct ws {
    const struct config *config;
    struct hub *hub;
    struct broker *broker;
    struct metrics *metrics;
    atomic_bool refusing;
};

/* State of one WebSocket; only its worker thread touches it. */
struct ws_session {
    struct ws *ws;
    struct hub_conn *conn;
    char *user;                /* NULL until hello */
    struct auth_claims claims; /* with auth on: what the token allows */
    struct ratelimit sends;
    struct ratelimit typing;
    struct util_buf fragments; /* a text message arriving in pieces */
    bool in_fragments;
};

/* A send waiting for the broker; holds a reference on conn. */
struct pending_send {
    struct hub_conn *conn;
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
    hub_send(s->conn, json, len);
    free(json);
}

static void send_error_to(struct hub_conn *conn, struct metrics *metrics, const char *code,
                          const char *message, const char *ref, const char *room)
{
    size_t len;
    char *json = proto_encode_error(code, message, ref, room, &len);
    hub_send(conn, json, len);
    free(json);
    atomic_fetch_add(&metrics->frames_rejected, 1);
}

static void send_error(struct ws_session *s, const char *code, const char *message, const char *ref,
                       const char *room)
{
    send_error_to(s->conn, s->ws->metrics, code, message, ref, room);
}

static cJSON *frame_object(const char *type)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", type);
    return obj;
}

/* ---------------------------------------------------------------- fields */

/* The room field: NULL after answering the error. */
static const char *require_room(struct ws_session *s, const cJSON *frame, const char *ref)
{
    bool bad = false;
    const char *room = proto_get_string(frame, "room", &bad);
    if (!room) {
        send_error(s, "bad_request", "room is required and must be a string", ref, NULL);
        return NULL;
    }
    if (!proto_room_is_valid(room)) {
        send_error(s, "room_invalid",
                   "room must be 1 to 64 characters of A-Z a-z 0-9 _ . - and not start with .", ref,
                   NULL);
        return NULL;
    }
    if (s->ws->config->auth_secret && !auth_room_allowed(&s->claims, room)) {
        send_error(s, "forbidden", "the token does not allow this room", ref, room);
        return NULL;
    }
    return room;
}

/* The optional ref field; false after answering the error. */
static bool optional_ref(struct ws_session *s, const cJSON *frame, const char **ref)
{
    bool bad = false;
    *ref = proto_get_string(frame, "ref", &bad);
    if (bad || (*ref && !proto_ref_is_valid(*ref))) {
        send_error(s, "bad_request", "ref must be a string of 1 to 64 characters", NULL, NULL);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- frames */

/* The user name of a hello: from the token with auth on, else from name.
 * NULL after answering the error. */
static char *hello_user(struct ws_session *s, const cJSON *frame)
{
    bool bad = false;
    const char *secret = s->ws->config->auth_secret;
    if (secret) {
        const char *token = proto_get_string(frame, "token", &bad);
        const char *why = "a token is required";
        if (!token || auth_verify(secret, token, util_now_ms() / 1000, &s->claims, &why) < 0) {
            send_error(s, "unauthorized", why, NULL, NULL);
            return NULL;
        }
        return xstrdup(s->claims.sub);
    }
    const char *name = proto_get_string(frame, "name", &bad);
    char *user = name ? xstrdup(name) : NULL;
    if (!user || !proto_user_normalize(user)) {
        free(user);
        send_error(s, "bad_request",
                   "name is required: 1 to 32 characters without control characters", NULL, NULL);
        return NULL;
    }
    return user;
}

/* hello: returns false when the connection must close (1008). */
static bool on_hello(struct ws_session *s, const cJSON *frame)
{
    if (s->user) {
        send_error(s, "bad_request", "hello was already received", NULL, NULL);
        return true;
    }
    char *user = hello_user(s, frame);
    if (!user)
        return false;
    s->user = user;
    hub_conn_set_user(s->conn, user);
    cJSON *welcome = frame_object("welcome");
    cJSON_AddStringToObject(welcome, "user", user);
    cJSON_AddStringToObject(welcome, "node", s->ws->config->node_id);
    cJSON_AddNumberToObject(welcome, "server_time", (double)util_now_ms());
    cJSON_AddNumberToObject(welcome, "protocol", PROTO_VERSION);
    send_json(s, welcome);
    return true;
}

static void on_join(struct ws_session *s, const cJSON *frame)
{
    const char *room = require_room(s, frame, NULL);
    if (!room)
        return;
    const cJSON *since_item = cJSON_GetObjectItemCaseSensitive(frame, "since");
    uint64_t since = 0;
    bool has_since = since_item && !cJSON_IsNull(since_item);
    if (has_since) {
        double v = cJSON_IsNumber(since_item) ? since_item->valuedouble : -1;
        if (v < 0 || v > 9007199254740991.0 || floor(v) != v) {
            send_error(s, "bad_request", "since must be a non-negative integer", NULL, room);
            return;
        }
        since = (uint64_t)v;
    }
    int rc = hub_join(s->ws->hub, s->conn, room, has_since ? &since : NULL);
    if (rc == -E2BIG)
        send_error(s, "too_many_rooms", "too many rooms joined on this connection", NULL, room);
    else if (rc < 0)
        send_error(s, "internal", "could not join the room", NULL, room);
}

static void on_leave(struct ws_session *s, const cJSON *frame)
{
    const char *room = require_room(s, frame, NULL);
    if (!room)
        return;
    if (hub_leave(s->ws->hub, s->conn, room) < 0) {
        send_error(s, "not_joined", "not a member of this room", NULL, room);
        return;
    }
    cJSON *left = frame_object("left");
    cJSON_AddStringToObject(left, "room", room);
    send_json(s, left);
}

/* Broker thread: the message was accepted (ack) or refused (error). */
static void on_published(void *ctx, int status, const struct chat_msg *msg)
{
    struct pending_send *p = ctx;
    if (status >= 0) {
        size_t len;
        char *json = proto_encode_ack(msg, &len);
        hub_send(p->conn, json, len);
        free(json);
    } else if (status == -TC_EUNAVAILABLE) {
        send_error_to(p->conn, p->metrics, "unavailable",
                      "the message could not be accepted now; retry with the same ref", p->ref,
                      p->room);
    } else {
        send_error_to(p->conn, p->metrics, "internal", "the message could not be stored", p->ref,
                      p->room);
    }
    hub_conn_unref(p->conn);
    free(p->ref);
    free(p->room);
    free(p);
}

static void on_send(struct ws_session *s, const cJSON *frame)
{
    const char *ref;
    if (!optional_ref(s, frame, &ref))
        return;
    if (!ratelimit_take(&s->sends, util_mono_ns())) {
        atomic_fetch_add(&s->ws->metrics->rate_limited, 1);
        send_error(s, "rate_limited", "too many messages; slow down", ref, NULL);
        return;
    }
    const char *room = require_room(s, frame, ref);
    if (!room)
        return;
    bool bad = false;
    const char *text = proto_get_string(frame, "text", &bad);
    if (!text) {
        send_error(s, "bad_request", "text is required and must be a string", ref, room);
        return;
    }
    if (!hub_is_member(s->ws->hub, s->conn, room)) {
        send_error(s, "not_joined", "join the room before sending to it", ref, room);
        return;
    }
    struct chat_msg *msg = chat_msg_create(room, s->user, text, ref);
    const char *why = NULL;
    if (!proto_text_normalize(msg->text, s->ws->config->max_text_chars, &why)) {
        chat_msg_free(msg);
        send_error(s, "text_invalid", why, ref, room);
        return;
    }
    struct pending_send *p = xcalloc(1, sizeof(*p));
    p->conn = s->conn;
    p->metrics = s->ws->metrics;
    p->ref = ref ? xstrdup(ref) : NULL;
    p->room = xstrdup(room);
    hub_conn_ref(s->conn);
    int rc = broker_publish(s->ws->broker, msg, on_published, p);
    if (rc < 0)
        on_published(p, rc, NULL);
}

static void on_typing(struct ws_session *s, const cJSON *frame)
{
    const char *room = require_room(s, frame, NULL);
    if (!room)
        return;
    if (!hub_is_member(s->ws->hub, s->conn, room)) {
        send_error(s, "not_joined", "join the room first", NULL, room);
        return;
    }
    if (ratelimit_take(&s->typing, util_mono_ns()))
        hub_typing(s->ws->hub, s->conn, room);
}

static void on_ping(struct ws_session *s, const cJSON *frame)
{
    cJSON *pong = frame_object("pong");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(frame, "ref");
    cJSON_AddItemToObject(pong, "ref", ref ? cJSON_Duplicate(ref, true) : cJSON_CreateNull());
    send_json(s, pong);
}

/* One complete text message. Returns false when the connection must close. */
static bool on_text(struct ws_session *s, const char *data, size_t len)
{
    cJSON *frame = proto_parse_object(data, len);
    if (!frame) {
        send_error(s, "bad_json", "the frame is not a JSON object (or is nested too deeply)", NULL,
                   NULL);
        return true;
    }
    bool keep_open = true;
    bool bad = false;
    const char *type = proto_get_string(frame, "type", &bad);
    if (!type) {
        send_error(s, "bad_request", "type is required and must be a string", NULL, NULL);
    } else if (strcmp(type, "hello") == 0) {
        keep_open = on_hello(s, frame);
    } else if (!s->user) {
        send_error(s, "hello_required", "the first frame must be hello", NULL, NULL);
    } else if (strcmp(type, "join") == 0) {
        on_join(s, frame);
    } else if (strcmp(type, "leave") == 0) {
        on_leave(s, frame);
    } else if (strcmp(type, "send") == 0) {
        on_send(s, frame);
    } else if (strcmp(type, "typing") == 0) {
        on_typing(s, frame);
    } else if (strcmp(type, "ping") == 0) {
        on_ping(s, frame);
    } else {
        send_error(s, "bad_request", "unknown frame type", NULL, NULL);
    }
    cJSON_Delete(frame);
    return keep_open;
}

/* Validate and dispatch a whole text message; false closes the connection. */
static int handle_message(struct ws_session *s, const char *data, size_t len)
{
    if (!util_utf8_is_valid(data, len)) {
        hub_close_now(s->conn, HUB_CLOSE_INVALID_DATA, "text frame is not valid UTF-8");
        return 0;
    }
    if (!on_text(s, data, len)) {
        hub_close_now(s->conn, HUB_CLOSE_POLICY, "hello refused");
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- CivetWeb callbacks */

/* 0 accepts the handshake. A browser page of another origin is refused, so a
 * foreign site cannot chat in the name of a visitor. */
static int ws_on_connect(const struct mg_connection *mc, void *cbdata)
{
    struct ws *ws = cbdata;
    if (atomic_load(&ws->refusing))
        return 1;
    if (!api_origin_is_allowed(mc, ws->config)) {
        log_msg(LOG_INFO, "ws_origin_refused", "remote=%s", mg_get_request_info(mc)->remote_addr);
        return 1;
    }
    return 0;
}

/* The session is made here, not in the connect handler: CivetWeb calls the close
 * handler only for connections whose handshake succeeded. */
static void ws_on_ready(struct mg_connection *mc, void *cbdata)
{
    struct ws *ws = cbdata;
    struct ws_session *s = xcalloc(1, sizeof(*s));
    s->ws = ws;
    s->conn = hub_conn_create(ws->hub, mc);
    uint64_t now = util_mono_ns();
    ratelimit_init(&s->sends, ws->config->rate_limit, ws->config->rate_burst, now);
    ratelimit_init(&s->typing, TYPING_RATE, TYPING_BURST, now);
    util_buf_init(&s->fragments);
    mg_set_user_connection_data(mc, s);
}

static int close_too_big(struct ws_session *s)
{
    hub_close_now(s->conn, HUB_CLOSE_TOO_BIG, "message too large");
    return 0;
}

/* Fragment assembly: 1 to go on, 0 to close. */
static int on_fragment(struct ws_session *s, int opcode, bool fin, const char *data, size_t len)
{
    size_t limit = (size_t)s->ws->config->max_frame_bytes;
    if (opcode == MG_WEBSOCKET_OPCODE_TEXT ? s->in_fragments : !s->in_fragments) {
        hub_close_now(s->conn, HUB_CLOSE_PROTOCOL, "unexpected continuation frame");
        return 0;
    }
    if (s->fragments.len + len > limit)
        return close_too_big(s);
    util_buf_append(&s->fragments, data, len);
    s->in_fragments = !fin;
    if (!fin)
        return 1;
    int rc = handle_message(s, s->fragments.data, s->fragments.len);
    util_buf_dispose(&s->fragments);
    return rc;
}

static int ws_on_data(struct mg_connection *mc, int bits, char *data, size_t len, void *cbdata)
{
    (void)cbdata;
    struct ws_session *s = mg_get_user_connection_data(mc);
    int opcode = bits & 0x0F;
    bool fin = (bits & 0x80) != 0;
    if (!s || hub_conn_is_closing(s->conn))
        return 0;
    switch (opcode) {
    case MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE:
        hub_close_now(s->conn, HUB_CLOSE_NORMAL, "");
        return 0;
    case MG_WEBSOCKET_OPCODE_PING:
    case MG_WEBSOCKET_OPCODE_PONG:
        return 1;
    case MG_WEBSOCKET_OPCODE_BINARY:
        hub_close_now(s->conn, HUB_CLOSE_UNSUPPORTED, "binary frames are not supported");
        return 0;
    case MG_WEBSOCKET_OPCODE_TEXT:
    case MG_WEBSOCKET_OPCODE_CONTINUATION:
        if (fin && opcode == MG_WEBSOCKET_OPCODE_TEXT && !s->in_fragments) {
            if (len > (size_t)s->ws->config->max_frame_bytes)
                return close_too_big(s);
            return handle_message(s, data, len);
        }
        return on_fragment(s, opcode, fin, data, len);
    default:
        hub_close_now(s->conn, HUB_CLOSE_PROTOCOL, "unknown opcode");
        return 0;
    }
}

static void ws_on_close(const struct mg_connection *mc, void *cbdata)
{
    (void)cbdata;
    struct ws_session *s = mg_get_user_connection_data(mc);
    if (!s)
        return;
    hub_conn_closed(s->conn);
    auth_claims_dispose(&s->claims);
    util_buf_dispose(&s->fragments);
    free(s->user);
    free(s);
}

/* ---------------------------------------------------------------- module */

struct ws *ws_create(const struct config *config, struct hub *hub, struct broker *broker,
                     struct metrics *metrics)
{
    struct ws *ws = xcalloc(1, sizeof(*ws));
    ws->config = config;
    ws->hub = hub;
    ws->broker = broker;
    ws->metrics = metrics;
    atomic_init(&ws->refusing, false);
    return ws;
}

void ws_free(struct ws *ws)
{
    free(ws);
}

void ws_register(struct ws *ws, struct mg_context *ctx)
{
    mg_set_websocket_handler(ctx, "/ws", ws_on_connect, ws_on_ready, ws_on_data, ws_on_close, ws);
}

void ws_refuse_new(struct ws *ws)
{
    atomic_store(&ws->refusing, true);
}
