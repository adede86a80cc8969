/* http_api: REST handlers. Every request is validated before anything is
 * read or written; every answer is JSON, errors as {"error":{...}}. */
#define _GNU_SOURCE
#include "http_api.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accounts.h"
#include "api_path.h"
#include "auth.h"
#include "broker.h"
#include "chat.h"
#include "config.h"
#include "http_accounts.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "ratelimit.h"
#include "rooms.h"
#include "search.h"
#include "store.h"
#include "strmap.h"
#include "util.h"

#define API_CLIENTS_MAX 10000 /* rate-limit buckets kept before they are reset */
#define API_DEFAULT_LIMIT 50

struct api {
    const struct config *config;
    struct accounts *accounts; /* auth = accounts; NULL otherwise */
    struct rooms *rooms;
    struct store *store;
    struct broker *broker;
    struct hub *hub;
    struct metrics *metrics;
    pthread_mutex_t clients_lock;
    struct strmap *clients; /* remote address -> struct ratelimit, for POST */
};

/* ---------------------------------------------------------------- responses */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

void api_send_json(struct mg_connection *mc, int status, const char *json,
                   const char *extra_headers)
{
    size_t len = strlen(json);
    mg_printf(mc,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: application/json; charset=utf-8\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "%s\r\n",
              status, status_text(status), len, extra_headers ? extra_headers : "");
    if (strcmp(mg_get_request_info(mc)->request_method, "HEAD") != 0)
        mg_write(mc, json, len);
}

void api_send_error_headers(struct mg_connection *mc, enum proto_error err, const char *message,
                            const char *extra_headers)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(obj, "error");
    cJSON_AddStringToObject(error, "code", proto_error_code(err));
    cJSON_AddStringToObject(error, "message", message);
    char *json = proto_encode_json(obj, NULL);
    cJSON_Delete(obj);
    api_send_json(mc, proto_error_status(err), json, extra_headers);
    free(json);
}

void api_send_error(struct mg_connection *mc, enum proto_error err, const char *message)
{
    api_send_error_headers(mc, err, message, NULL);
}

void api_send_object(struct mg_connection *mc, int status, cJSON *obj)
{
    char *json = proto_encode_json(obj, NULL);
    cJSON_Delete(obj);
    api_send_json(mc, status, json, NULL);
    free(json);
}

static void method_not_allowed(struct mg_connection *mc, const char *allow)
{
    char header[64];
    snprintf(header, sizeof(header), "Allow: %s\r\n", allow);
    api_send_error_headers(mc, PROTO_ERR_METHOD_NOT_ALLOWED, "method not allowed", header);
}

/* ---------------------------------------------------------------- origins */

static bool origin_in_list(const char *origin, const char *list)
{
    size_t len = strlen(origin);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && *p == ' ')
            p++, n--;
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if ((n == 1 && *p == '*') || (n == len && strncmp(p, origin, n) == 0))
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

bool api_origin_is_allowed(const struct mg_connection *mc, const struct config *config)
{
    const char *origin = mg_get_header(mc, "Origin");
    if (!origin)
        return true;
    if (config->allowed_origins)
        return origin_in_list(origin, config->allowed_origins);
    const char *host = mg_get_header(mc, "Host");
    const char *scheme_end = strstr(origin, "://");
    return host && scheme_end && strcmp(scheme_end + 3, host) == 0 &&
           (strncmp(origin, "http://", 7) == 0 || strncmp(origin, "https://", 8) == 0);
}

/* ---------------------------------------------------------------- GET /api/rooms */

struct room_row {
    const char *name;
    uint64_t last_id;
    size_t online;
    const struct store_room *stored; /* NULL: a room with members but no log yet */
};

static int compare_rows(const void *a, const void *b)
{
    return strcmp(((const struct room_row *)a)->name, ((const struct room_row *)b)->name);
}

/* The names of room's present members, by name, as a JSON array. */
static cJSON *member_names(struct api *api, const char *room)
{
    cJSON *list = cJSON_CreateArray();
    char **names, **roles;
    size_t count = 0;
    if (store_roster(api->store, room, &names, &roles, &count) == 0) {
        for (size_t i = 0; i < count; i++)
            cJSON_AddItemToArray(list, cJSON_CreateString(names[i]));
        hub_free_names(names, count);
        hub_free_names(roles, count);
    }
    return list;
}

/* The room object of GET /api/rooms for the caller user (NULL: auth off):
 * with auth = accounts its unread counts, and a DM's members. */
static cJSON *room_object(struct api *api, const struct room_row *row, const char *user)
{
    cJSON *room = cJSON_CreateObject();
    cJSON_AddStringToObject(room, "name", row->name);
    cJSON_AddNumberToObject(room, "last_id", (double)row->last_id);
    cJSON_AddNumberToObject(room, "online", (double)row->online);
    bool dm = row->stored && row->stored->dm;
    cJSON_AddBoolToObject(room, "private", row->stored && row->stored->is_private);
    cJSON_AddBoolToObject(room, "dm", dm);
    uint64_t last_read = 0;
    int unread = 0, mentions = 0;
    if (api->config->auth == CONFIG_AUTH_ACCOUNTS && user)
        store_unread(api->store, row->name, user, &last_read, &unread, &mentions);
    cJSON_AddNumberToObject(room, "unread", unread);
    cJSON_AddNumberToObject(room, "mentions", mentions);
    if (dm)
        cJSON_AddItemToObject(room, "members", member_names(api, row->name));
    return room;
}

/* Rooms of the log and rooms with members, those the caller may see (with
 * a token: those it allows; with accounts: public and its own private
 * ones), by name. */
static void get_rooms(struct api *api, struct mg_connection *mc, const struct auth_claims *claims)
{
    struct store_room *stored = NULL;
    size_t stored_count = 0;
    char **live = NULL;
    size_t *online = NULL;
    size_t live_count = 0;
    if (store_list_rooms(api->store, &stored, &stored_count) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log cannot be read now");
        return;
    }
    hub_list_rooms(api->hub, &live, &online, &live_count);
    struct room_row *rows = xcalloc(stored_count + live_count + 2, sizeof(*rows));
    size_t n = 0;
    for (size_t i = 0; i < stored_count; i++)
        rows[n++] = (struct room_row){stored[i].name, stored[i].last_id, 0, &stored[i]};
    qsort(rows, n, sizeof(*rows), compare_rows);
    struct room_row general = {PROTO_DEFAULT_ROOM, 0, 0, NULL};
    if (api->config->auth == CONFIG_AUTH_ACCOUNTS &&
        !bsearch(&general, rows, n, sizeof(*rows), compare_rows))
        rows[n++] = general; /* it exists from the start */
    qsort(rows, n, sizeof(*rows), compare_rows);
    size_t sorted = n;
    for (size_t i = 0; i < live_count; i++) {
        struct room_row key = {live[i], 0, 0, NULL};
        struct room_row *row = bsearch(&key, rows, sorted, sizeof(*rows), compare_rows);
        if (!row)
            row = &rows[n++], *row = key;
        row->online = online[i];
    }
    qsort(rows, n, sizeof(*rows), compare_rows);
    cJSON *obj = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(obj, "rooms");
    const char *user = claims ? claims->sub : NULL;
    for (size_t i = 0; i < n; i++) {
        if ((claims && !auth_room_allowed(claims, rows[i].name)) ||
            !rooms_may_enter(api->rooms, rows[i].name, user))
            continue;
        cJSON_AddItemToArray(list, room_object(api, &rows[i], user));
    }
    api_send_object(mc, 200, obj);
    free(rows);
    hub_free_names(live, live_count);
    free(online);
    store_free_rooms(stored, stored_count);
}

/* ---------------------------------------------------------------- GET messages */

/* Read a query parameter as an integer in [min, max]. 1 found, 0 absent, -1 bad. */
static int query_int(const struct mg_request_info *ri, const char *name, int64_t min, int64_t max,
                     int64_t *out)
{
    char value[32];
    const char *qs = ri->query_string ? ri->query_string : "";
    int n = mg_get_var(qs, strlen(qs), name, value, sizeof(value));
    if (n == -1)
        return 0;
    if (n < 0 || util_parse_int64(value, min, max, out) < 0)
        return -1;
    return 1;
}

/* The limit parameter, default API_DEFAULT_LIMIT, clamped to the page size;
 * false after answering 400. */
static bool page_limit(struct api *api, struct mg_connection *mc, int *limit)
{
    int64_t value = API_DEFAULT_LIMIT;
    if (query_int(mg_get_request_info(mc), "limit", 1, INT64_MAX, &value) < 0) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "limit must be an integer of at least 1");
        return false;
    }
    *limit = value > api->config->history_limit_max ? api->config->history_limit_max : (int)value;
    return true;
}

/* Answer {"room", key: [events], "has_more"}; frees msgs. */
static void send_events(struct mg_connection *mc, const char *room, const char *key,
                        struct chat_msg **msgs, size_t count, bool has_more, bool with_type)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "room", room);
    cJSON *list = cJSON_AddArrayToObject(obj, key);
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, proto_event_object(msgs[i], with_type));
    cJSON_AddBoolToObject(obj, "has_more", has_more);
    store_free_messages(msgs, count);
    api_send_object(mc, 200, obj);
}

static void get_messages(struct api *api, struct mg_connection *mc, const char *room)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    int64_t before = 0, after = 0;
    int limit;
    int has_after = query_int(ri, "after", 0, INT64_MAX, &after);
    if (query_int(ri, "before", 1, INT64_MAX, &before) < 0 || has_after < 0) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "before and after must be non-negative integers");
        return;
    }
    if (!page_limit(api, mc, &limit))
        return;
    struct chat_msg **msgs = NULL;
    size_t count = 0;
    bool has_more = false;
    /* after=0 is a real bound: the oldest page. */
    if (store_fetch(api->store, room, (uint64_t)before, (uint64_t)after, has_after > 0, limit,
                    &msgs, &count, &has_more) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log cannot be read now");
        return;
    }
    send_events(mc, room, "messages", msgs, count, has_more, false);
}

/* GET /api/rooms/{room}/events: every event after an id, for sync. */
static void get_events(struct api *api, struct mg_connection *mc, const char *room)
{
    int64_t after = 0;
    int limit;
    if (query_int(mg_get_request_info(mc), "after", 0, INT64_MAX, &after) < 0) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "after must be a non-negative integer");
        return;
    }
    if (!page_limit(api, mc, &limit))
        return;
    struct chat_msg **msgs = NULL;
    size_t count = 0;
    if (store_fetch_range(api->store, room, (uint64_t)after, UINT64_MAX, limit + 1, &msgs, &count) <
        0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log cannot be read now");
        return;
    }
    bool has_more = count > (size_t)limit;
    if (has_more)
        chat_msg_free(msgs[--count]);
    send_events(mc, room, "events", msgs, count, has_more, true);
}

/* GET /api/rooms/{room}/messages/{id}: one message as it is now. */
static void get_message(struct api *api, struct mg_connection *mc, const char *room, uint64_t id)
{
    struct chat_msg *msg = NULL;
    int rc = store_get_event(api->store, room, id, &msg);
    if (rc == -ENOENT || (rc == 0 && msg->kind != CHAT_MESSAGE))
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no message with this id in the room");
    else if (rc < 0)
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log cannot be read now");
    else
        api_send_object(mc, 200, proto_event_object(msg, false));
    chat_msg_free(msg);
}

/* ---------------------------------------------------------------- POST messages */

/* True when the remote address is within the send rate. */
static bool client_within_rate(struct api *api, const struct mg_request_info *ri)
{
    pthread_mutex_lock(&api->clients_lock);
    if (strmap_count(api->clients) >= API_CLIENTS_MAX) {
        strmap_free(api->clients);
        api->clients = strmap_create(free);
    }
    struct ratelimit *rl = strmap_get(api->clients, ri->remote_addr);
    uint64_t now = util_mono_ns();
    if (!rl) {
        rl = xmalloc(sizeof(*rl));
        ratelimit_init(rl, api->config->rate_limit, api->config->rate_burst, now);
        strmap_put(api->clients, ri->remote_addr, rl);
    }
    bool ok = ratelimit_take(rl, now);
    pthread_mutex_unlock(&api->clients_lock);
    return ok;
}

/* Read the whole body into a NUL-terminated buffer; NULL after answering
 * 400, 408, 411 or 413. The body has one deadline, request_timeout_ms from
 * now, however slowly its bytes arrive. */
static char *read_body(const struct config *config, struct mg_connection *mc, size_t *len)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    size_t limit = (size_t)config->max_body_bytes;
    if (ri->content_length > (long long)limit) {
        api_send_error(mc, PROTO_ERR_TOO_LARGE, "the request body is too large");
        return NULL;
    }
    if (ri->content_length < 0) {
        /* A chunked body restarts CivetWeb's read deadline with every chunk. */
        api_send_error(mc, PROTO_ERR_LENGTH_REQUIRED, "the body needs a Content-Length");
        return NULL;
    }
    int64_t deadline = util_mono_ms() + config->request_timeout_ms;
    bool late = false;
    char *body = xmalloc(limit + 2);
    size_t n = 0;
    int r;
    while (n <= limit && !late && (r = mg_read(mc, body + n, limit + 1 - n)) > 0) {
        n += (size_t)r;
        late = util_mono_ms() > deadline && n < (size_t)ri->content_length;
    }
    if (n > limit) {
        free(body);
        api_send_error(mc, PROTO_ERR_TOO_LARGE, "the request body is too large");
        return NULL;
    }
    if (late) {
        free(body);
        api_send_error(mc, PROTO_ERR_TIMEOUT, "the request body did not arrive in time");
        return NULL;
    }
    if (n < (size_t)ri->content_length) {
        free(body);
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "the body is shorter than its Content-Length");
        return NULL;
    }
    body[n] = '\0';
    *len = n;
    return body;
}

/* The JSON object of the request body; with optional set, a request without
 * a body (no Content-Length, no Transfer-Encoding, or a length of 0) gives
 * *out NULL. False after answering. */
bool api_read_json_body(const struct config *config, struct mg_connection *mc, bool optional,
                        cJSON **out)
{
    *out = NULL;
    const char *length = mg_get_header(mc, "Content-Length");
    if (optional && !mg_get_header(mc, "Transfer-Encoding") &&
        (!length || mg_get_request_info(mc)->content_length == 0))
        return true;
    size_t len = 0;
    char *body = read_body(config, mc, &len);
    if (!body)
        return false;
    *out = util_utf8_is_valid(body, len) ? proto_parse_object(body, len) : NULL;
    free(body);
    if (!*out)
        api_send_error(mc, PROTO_ERR_BAD_JSON, "the body is not a JSON object");
    return *out != NULL;
}

/* A string field of the body, else the query parameter of that name, copied
 * into *out (NULL when neither has it); false when the field is not a string
 * or the parameter is too long. */
static bool body_or_query(struct mg_connection *mc, const cJSON *body, const char *name, char **out)
{
    bool bad = false;
    const char *value = body ? proto_get_string(body, name, &bad) : NULL;
    *out = value ? xstrdup(value) : NULL;
    if (bad || value)
        return !bad;
    const char *qs = mg_get_request_info(mc)->query_string;
    char buf[PROTO_REF_MAX_BYTES + 1];
    int n = qs ? mg_get_var(qs, strlen(qs), name, buf, sizeof(buf)) : -1;
    if (n >= 0)
        *out = xstrdup(buf);
    return n >= -1;
}

/* Who writes, and the request's ref: the token's user with auth on, else
 * `user` of the body or the query. False after answering 400. */
static bool read_writer(struct mg_connection *mc, const cJSON *body,
                        const struct auth_claims *claims, char **user, char **ref)
{
    *user = NULL;
    if (!body_or_query(mc, body, "ref", ref) || (*ref && !proto_ref_is_valid(*ref, NULL))) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "ref must be a string of 1 to 64 characters");
        goto out_fail;
    }
    if (claims) {
        *user = xstrdup(claims->sub);
        return true;
    }
    if (!body_or_query(mc, body, "user", user) || !*user || !proto_user_normalize(*user, NULL)) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST,
                       "user is required: 1 to 32 characters without control characters");
        goto out_fail;
    }
    return true;
out_fail:
    free(*ref);
    free(*user);
    *ref = *user = NULL;
    return false;
}

/* A request that writes: the origin policy, then the body (required unless
 * body_optional), the writer and the rate. NULL after answering; else a new
 * event of room by the writer (text "") and *body (may be NULL; the caller
 * deletes it). */
static struct chat_msg *begin_write(struct api *api, struct mg_connection *mc, const char *room,
                                    const struct auth_claims *claims, bool body_optional,
                                    cJSON **body)
{
    if (!api_origin_is_allowed(mc, api->config)) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "this origin may not write");
        return NULL;
    }
    char *user = NULL, *ref = NULL;
    if (!api_read_json_body(api->config, mc, body_optional, body))
        return NULL;
    if (!read_writer(mc, *body, claims, &user, &ref))
        goto out_fail;
    if (!client_within_rate(api, mg_get_request_info(mc))) {
        atomic_fetch_add(&api->metrics->rate_limited, 1);
        api_send_error(mc, PROTO_ERR_RATE_LIMITED, "too many messages; slow down");
        goto out_fail;
    }
    struct chat_msg *ev = chat_msg_create(room, user, "", ref);
    free(user);
    free(ref);
    return ev;
out_fail:
    free(user);
    free(ref);
    cJSON_Delete(*body);
    *body = NULL;
    return NULL;
}

/* The text field of body into ev; false after answering 400. */
static bool take_text(struct mg_connection *mc, const cJSON *body, struct chat_msg *ev)
{
    bool bad = false;
    const char *text = body ? proto_get_string(body, "text", &bad) : NULL;
    if (!text) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "text is required and must be a string");
        return false;
    }
    free(ev->text);
    ev->text = xstrdup(text);
    return true;
}

/* Publish ev (consumed) and answer with the stored event: created_status
 * when it is new, 200 for a retried ref. */
static void publish_and_answer(struct api *api, struct mg_connection *mc, struct chat_msg *ev,
                               int created_status)
{
    struct chat_msg *stored = NULL;
    int rc = broker_publish_wait(api->broker, ev, &stored);
    if (rc < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE,
                       "the message could not be accepted now; retry with the same ref");
        return;
    }
    api_send_object(mc, rc == BROKER_DUPLICATE ? 200 : created_status,
                    proto_event_object(stored, false));
    chat_msg_free(stored);
}

/* Act on chat's verdict on ev (consumed): publish it and answer the stored
 * event (created_status when new), answer the earlier event (existing,
 * freed) with 200, or answer the refusal. */
static void answer_verdict(struct api *api, struct mg_connection *mc, struct chat_msg *ev,
                           enum chat_verdict verdict, struct chat_msg *existing,
                           const struct chat_refusal *refusal, int created_status)
{
    switch (verdict) {
    case CHAT_PUBLISH:
        publish_and_answer(api, mc, ev, created_status);
        return;
    case CHAT_ALREADY:
        api_send_object(mc, 200, proto_event_object(existing, false));
        chat_msg_free(existing);
        break;
    case CHAT_REFUSED:
        api_send_error(mc, refusal->err, refusal->why);
        break;
    }
    chat_msg_free(ev);
}

static void post_message(struct api *api, struct mg_connection *mc, const char *room,
                         const struct auth_claims *claims)
{
    cJSON *body;
    struct chat_msg *msg = begin_write(api, mc, room, claims, false, &body);
    if (!msg)
        return;
    bool ok = take_text(mc, body, msg);
    if (ok && !proto_get_id(body, "reply_to", &msg->reply_to)) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "reply_to must be the id of a message");
        ok = false;
    }
    cJSON_Delete(body);
    if (!ok) {
        chat_msg_free(msg);
        return;
    }
    struct chat_msg *existing;
    struct chat_refusal refusal;
    enum chat_verdict verdict =
        chat_prepare_send(api->store, api->config, msg, &existing, &refusal);
    rooms_keep_mentions_of_members(api->rooms, msg);
    answer_verdict(api, mc, msg, verdict, existing, &refusal, 201);
}

/* PATCH and DELETE of a message, PUT and DELETE of a reaction: the change
 * kind of target (with emoji for a reaction). */
static void change_message(struct api *api, struct mg_connection *mc, const char *room,
                           uint64_t target, enum chat_kind kind, const char *emoji,
                           const struct auth_claims *claims)
{
    cJSON *body;
    struct chat_msg *ev = begin_write(api, mc, room, claims, kind != CHAT_EDIT, &body);
    if (!ev)
        return;
    bool ok = kind != CHAT_EDIT || take_text(mc, body, ev);
    cJSON_Delete(body);
    if (!ok) {
        chat_msg_free(ev);
        return;
    }
    ev->kind = kind;
    ev->target = target;
    ev->emoji = emoji ? xstrdup(emoji) : NULL;
    bool moderator = claims && auth_is_moderator(claims, room);
    struct chat_msg *existing;
    struct chat_refusal refusal;
    enum chat_verdict verdict =
        chat_prepare_change(api->store, api->config, ev, moderator, &existing, &refusal);
    answer_verdict(api, mc, ev, verdict, existing, &refusal, 200);
}

/* ---------------------------------------------------------------- members */

static void get_members(struct api *api, struct mg_connection *mc, const char *room)
{
    char **names, **roles;
    size_t count;
    hub_room_members(api->hub, room, &names, &count);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "room", room);
    cJSON *list = cJSON_AddArrayToObject(obj, "members");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(names[i]));
    hub_free_names(names, count);
    struct store_room_info info;
    if (store_room_info(api->store, room, &info) == 0 && info.is_private &&
        store_roster(api->store, room, &names, &roles, &count) == 0) {
        cJSON *roster = cJSON_AddArrayToObject(obj, "roster");
        for (size_t i = 0; i < count; i++) {
            cJSON *entry = cJSON_CreateObject();
            cJSON_AddStringToObject(entry, "user", names[i]);
            cJSON_AddStringToObject(entry, "role", roles[i]);
            cJSON_AddItemToArray(roster, entry);
        }
        hub_free_names(names, count);
        hub_free_names(roles, count);
    }
    api_send_object(mc, 200, obj);
}

/* ---------------------------------------------------------------- rooms of accounts
 * (routed only under auth = accounts: claims are the caller's session) */

/* The room object of room as GET /api/rooms has it, for user. */
static cJSON *room_object_of(struct api *api, const char *room, const char *user)
{
    struct store_room stored = {(char *)room, 0, false, false, false};
    struct store_room_info info;
    if (store_room_info(api->store, room, &info) == 0) {
        stored.is_private = info.is_private;
        stored.dm = info.dm;
    }
    store_last_id(api->store, room, &stored.last_id);
    struct room_row row = {room, stored.last_id, 0, &stored};
    return room_object(api, &row, user);
}

/* The body of a write by the caller; false after answering. */
static bool write_body(struct api *api, struct mg_connection *mc, bool optional, cJSON **body)
{
    if (!api_origin_is_allowed(mc, api->config)) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "this origin may not write");
        return false;
    }
    return api_read_json_body(api->config, mc, optional, body);
}

/* POST /api/rooms {name, private}. */
static void post_room(struct api *api, struct mg_connection *mc, const char *user)
{
    cJSON *body;
    if (!write_body(api, mc, false, &body))
        return;
    bool bad = false;
    const char *name = proto_get_string(body, "name", &bad);
    const cJSON *priv = cJSON_GetObjectItemCaseSensitive(body, "private");
    struct chat_refusal refusal = {PROTO_ERR_BAD_REQUEST, "name is required; private is a boolean"};
    int rc = -1;
    if (name && !bad && (!priv || cJSON_IsBool(priv)))
        rc = rooms_make(api->rooms, name, user, cJSON_IsTrue(priv), &refusal);
    if (rc == 0) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToObject(obj, "room", room_object_of(api, name, user));
        api_send_object(mc, 201, obj);
    } else {
        api_send_error(mc, refusal.err, refusal.why);
    }
    cJSON_Delete(body);
}

/* POST /api/rooms/{room}/members {user, role?}, and DELETE .../members/{user}. */
static void change_member(struct api *api, struct mg_connection *mc, const char *room,
                          const char *member, const char *actor)
{
    cJSON *body = NULL;
    if (!write_body(api, mc, member != NULL, &body))
        return;
    bool bad = false;
    const char *role = proto_get_string(body, "role", &bad);
    const char *name = member ? member : proto_get_string(body, "user", &bad);
    struct chat_refusal refusal = {PROTO_ERR_BAD_REQUEST, "user is required; role is a string"};
    int rc = -1;
    if (name && !bad)
        rc = rooms_set_member(api->rooms, room, actor, name, role ? role : "member", !member,
                              &refusal);
    if (rc == 0) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "room", room);
        cJSON_AddStringToObject(obj, "user", name);
        if (!member)
            cJSON_AddStringToObject(obj, "role", role ? role : "member");
        api_send_object(mc, 200, obj);
    } else {
        api_send_error(mc, refusal.err, refusal.why);
    }
    cJSON_Delete(body);
}

/* POST /api/dms {users}. */
static void post_dm(struct api *api, struct mg_connection *mc, const char *user)
{
    cJSON *body;
    if (!write_body(api, mc, false, &body))
        return;
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(body, "users");
    char *names[ROOMS_DM_MAX];
    size_t count = 0;
    bool ok = cJSON_IsArray(users) && cJSON_GetArraySize(users) < ROOMS_DM_MAX;
    const cJSON *item;
    const cJSON *list = ok ? users : NULL;
    cJSON_ArrayForEach(item, list)
    {
        ok = ok && cJSON_IsString(item);
        if (ok)
            names[count++] = item->valuestring;
    }
    struct chat_refusal refusal = {PROTO_ERR_BAD_REQUEST, "users is an array of 1 to 7 names"};
    char *room = NULL;
    if (ok && rooms_open_dm(api->rooms, user, names, count, &room, &refusal) == 0) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "room", room);
        api_send_object(mc, 200, obj);
    } else {
        api_send_error(mc, refusal.err, refusal.why);
    }
    free(room);
    cJSON_Delete(body);
}

/* A room of GET /api/admin/rooms, with a private room's members; stored
 * NULL: general before its first event. */
static cJSON *admin_room_object(struct api *api, const char *name, const struct store_room *stored)
{
    cJSON *r = cJSON_CreateObject();
    bool is_private = stored && stored->is_private;
    cJSON_AddItemToObject(r, "members", is_private ? member_names(api, name) : cJSON_CreateArray());
    cJSON_AddStringToObject(r, "name", name);
    cJSON_AddBoolToObject(r, "private", stored && stored->is_private);
    cJSON_AddBoolToObject(r, "dm", stored && stored->dm);
    cJSON_AddBoolToObject(r, "closed", stored && stored->closed);
    cJSON_AddNumberToObject(r, "last_id", stored ? (double)stored->last_id : 0);
    return r;
}

/* GET /api/admin/rooms and DELETE /api/admin/rooms/{room}. */
static void admin_rooms(struct api *api, struct mg_connection *mc, const char *room,
                        const struct auth_claims *claims)
{
    if (!claims || claims->role != AUTH_ROLE_ADMIN) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "only an admin may do this");
        return;
    }
    const char *method = mg_get_request_info(mc)->request_method;
    if (room && strcmp(method, "DELETE") == 0) {
        struct chat_refusal refusal;
        if (rooms_close(api->rooms, room, claims->sub, &refusal) == 0)
            api_send_json(mc, 200, "{}", NULL);
        else
            api_send_error(mc, refusal.err, refusal.why);
        return;
    }
    if (room || strcmp(method, "GET") != 0) {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource");
        return;
    }
    struct store_room *stored;
    size_t count;
    if (store_list_rooms(api->store, &stored, &count) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the rooms cannot be read now");
        return;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(obj, "rooms");
    bool general = false;
    for (size_t i = 0; i < count; i++)
        general = general || strcmp(stored[i].name, PROTO_DEFAULT_ROOM) == 0;
    if (!general)
        cJSON_AddItemToArray(list, admin_room_object(api, PROTO_DEFAULT_ROOM, NULL));
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, admin_room_object(api, stored[i].name, &stored[i]));
    store_free_rooms(stored, count);
    api_send_object(mc, 200, obj);
}

/* ---------------------------------------------------------------- routing */

static bool method_is(const struct mg_request_info *ri, const char *method)
{
    return strcmp(ri->request_method, method) == 0;
}

/* /api/rooms/{room}/messages/{id}[/reactions/{emoji}]: rest is what follows
 * "messages/". */
static void route_message(struct api *api, struct mg_connection *mc, const char *room,
                          const char *rest, const struct auth_claims *claims)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    uint64_t id;
    const char *emoji;
    enum api_path_message path = api_path_message(rest, &id, &emoji);
    if (path == API_PATH_NO_ID) {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such message: ids are positive integers");
    } else if (path == API_PATH_MESSAGE) {
        if (method_is(ri, "GET") || method_is(ri, "HEAD"))
            get_message(api, mc, room, id);
        else if (method_is(ri, "PATCH"))
            change_message(api, mc, room, id, CHAT_EDIT, NULL, claims);
        else if (method_is(ri, "DELETE"))
            change_message(api, mc, room, id, CHAT_DELETE, NULL, claims);
        else
            method_not_allowed(mc, "GET, HEAD, PATCH, DELETE");
    } else if (path == API_PATH_REACTION) {
        if (method_is(ri, "PUT"))
            change_message(api, mc, room, id, CHAT_REACT, emoji, claims);
        else if (method_is(ri, "DELETE"))
            change_message(api, mc, room, id, CHAT_UNREACT, emoji, claims);
        else
            method_not_allowed(mc, "PUT, DELETE");
    } else {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource");
    }
}

static void route_room(struct api *api, struct mg_connection *mc, const char *room,
                       const char *what, const struct auth_claims *claims)
{
    if (claims && !auth_room_allowed(claims, room)) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "the token does not allow this room");
        return;
    }
    if (!rooms_may_enter(api->rooms, room, claims ? claims->sub : NULL)) {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such room");
        return;
    }
    const struct mg_request_info *ri = mg_get_request_info(mc);
    bool get = method_is(ri, "GET") || method_is(ri, "HEAD");
    if (strcmp(what, "messages") == 0) {
        if (get)
            get_messages(api, mc, room);
        else if (method_is(ri, "POST"))
            post_message(api, mc, room, claims);
        else
            method_not_allowed(mc, "GET, HEAD, POST");
    } else if (strncmp(what, "messages/", 9) == 0) {
        route_message(api, mc, room, what + 9, claims);
    } else if (strcmp(what, "events") == 0) {
        if (get)
            get_events(api, mc, room);
        else
            method_not_allowed(mc, "GET, HEAD");
    } else if (strcmp(what, "members") == 0) {
        bool accounts = api->config->auth == CONFIG_AUTH_ACCOUNTS;
        if (get)
            get_members(api, mc, room);
        else if (method_is(ri, "POST") && accounts)
            change_member(api, mc, room, NULL, claims->sub);
        else
            method_not_allowed(mc, accounts ? "GET, HEAD, POST" : "GET, HEAD");
    } else if (strncmp(what, "members/", 8) == 0 && what[8] &&
               api->config->auth == CONFIG_AUTH_ACCOUNTS) {
        if (method_is(ri, "DELETE"))
            change_member(api, mc, room, what + 8, claims->sub);
        else
            method_not_allowed(mc, "DELETE");
    } else {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource");
    }
}

/* With auth on: the bearer token's claims, or false after answering 401. */
static bool authenticate(struct api *api, struct mg_connection *mc, struct auth_claims *claims)
{
    const char *header = mg_get_header(mc, "Authorization");
    const char *why = "an Authorization: Bearer token is required";
    if (header && strncasecmp(header, "Bearer ", 7) == 0 &&
        auth_verify(api->config->auth_secret, header + 7, util_now_ms() / 1000, claims, &why) == 0)
        return true;
    api_send_error(mc, PROTO_ERR_UNAUTHORIZED, why);
    return false;
}

static void route(struct api *api, struct mg_connection *mc, const struct auth_claims *claims)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    /* decoded but not cleaned: CivetWeb's cleaning drops a trailing "." that
     * room names may end with */
    const char *uri = ri->local_uri_raw ? ri->local_uri_raw : "";
    char room[PROTO_ROOM_MAX + 2];
    const char *what;
    const char *admin_rooms_prefix = "/api/admin/rooms/";
    if (strcmp(uri, "/api/rooms") == 0 || strcmp(uri, "/api/rooms/") == 0) {
        if (method_is(ri, "GET") || method_is(ri, "HEAD"))
            get_rooms(api, mc, claims);
        else if (method_is(ri, "POST") && api->config->auth == CONFIG_AUTH_ACCOUNTS)
            post_room(api, mc, claims->sub);
        else
            method_not_allowed(mc, api->config->auth == CONFIG_AUTH_ACCOUNTS ? "GET, HEAD, POST"
                                                                             : "GET, HEAD");
    } else if (strcmp(uri, "/api/search") == 0) {
        if (method_is(ri, "GET") || method_is(ri, "HEAD"))
            search_answer(mc, api->store, api->rooms, claims);
        else
            method_not_allowed(mc, "GET, HEAD");
    } else if (strcmp(uri, "/api/dms") == 0 && method_is(ri, "POST") &&
               api->config->auth == CONFIG_AUTH_ACCOUNTS) {
        post_dm(api, mc, claims->sub);
    } else if (strcmp(uri, "/api/admin/rooms") == 0) {
        admin_rooms(api, mc, NULL, claims);
    } else if (strncmp(uri, admin_rooms_prefix, strlen(admin_rooms_prefix)) == 0) {
        admin_rooms(api, mc, uri + strlen(admin_rooms_prefix), claims);
    } else if ((what = api_path_split_room(uri, room, sizeof(room))) != NULL) {
        const char *why;
        if (!proto_room_is_valid(room, &why))
            api_send_error(mc, PROTO_ERR_ROOM_INVALID, why);
        else
            route_room(api, mc, room, what, claims);
    } else {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource");
    }
}

/* The session of the request's Bearer token (a session token, or a JWT
 * when auth_secret is set) or tc_session cookie into caller, and the claims
 * the room routes read. A write by cookie needs an allowed Origin: with
 * SameSite=Strict it keeps other sites from writing as a visitor. False
 * after answering 401 or 403. */
static bool authenticate_session(struct api *api, struct mg_connection *mc,
                                 struct accounts_caller *caller, struct auth_claims *claims)
{
    const char *header = mg_get_header(mc, "Authorization");
    const char *cookies = mg_get_header(mc, "Cookie");
    const char *method = mg_get_request_info(mc)->request_method;
    char cookie[512];
    const char *why = NULL;
    bool ok;
    memset(claims, 0, sizeof(*claims));
    if (header && strncasecmp(header, "Bearer ", 7) == 0) {
        ok = accounts_authenticate(api->accounts, header + 7, true, caller);
        if (!ok && api->config->auth_secret &&
            auth_verify(api->config->auth_secret, header + 7, util_now_ms() / 1000, claims, &why) ==
                0) {
            caller->user = xstrdup(claims->sub);
            return true;
        }
    } else {
        ok = cookies && mg_get_cookie(cookies, HTTP_ACCOUNTS_COOKIE, cookie, sizeof(cookie)) > 0 &&
             accounts_authenticate(api->accounts, cookie, false, caller);
        bool write = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
        if (ok && write &&
            (!mg_get_header(mc, "Origin") || !api_origin_is_allowed(mc, api->config))) {
            accounts_caller_dispose(caller);
            api_send_error(mc, PROTO_ERR_FORBIDDEN, "a write by cookie needs this site's Origin");
            return false;
        }
    }
    if (!ok) {
        auth_claims_dispose(claims);
        api_send_error(mc, PROTO_ERR_UNAUTHORIZED, why ? why : "sign in first");
        return false;
    }
    claims->sub = xstrdup(caller->user);
    claims->all_rooms = true;
    claims->role = caller->admin ? AUTH_ROLE_ADMIN : AUTH_ROLE_USER;
    return true;
}

static void handle_accounts_mode(struct api *api, struct mg_connection *mc, const char *uri)
{
    struct accounts_caller caller = {0};
    struct auth_claims claims;
    if (!authenticate_session(api, mc, &caller, &claims))
        return;
    if (!http_accounts_route(api->accounts, api->config, mc, uri, &caller))
        route(api, mc, &claims);
    auth_claims_dispose(&claims);
    accounts_caller_dispose(&caller);
}

static int api_handler(struct mg_connection *mc, void *cbdata)
{
    struct api *api = cbdata;
    const char *uri = mg_get_request_info(mc)->local_uri_raw;
    if (http_accounts_public(api->accounts, api->config, mc, uri ? uri : ""))
        return 1;
    if (api->config->auth == CONFIG_AUTH_OFF) {
        route(api, mc, NULL);
    } else if (api->config->auth == CONFIG_AUTH_ACCOUNTS) {
        handle_accounts_mode(api, mc, uri ? uri : "");
    } else {
        struct auth_claims claims;
        if (authenticate(api, mc, &claims)) {
            route(api, mc, &claims);
            auth_claims_dispose(&claims);
        }
    }
    return 1;
}

/* ---------------------------------------------------------------- module */

struct api *api_create(const struct config *config, struct accounts *accounts, struct rooms *rooms,
                       struct store *store, struct broker *broker, struct hub *hub,
                       struct metrics *metrics)
{
    struct api *api = xcalloc(1, sizeof(*api));
    api->config = config;
    api->accounts = accounts;
    api->rooms = rooms;
    api->store = store;
    api->broker = broker;
    api->hub = hub;
    api->metrics = metrics;
    pthread_mutex_init(&api->clients_lock, NULL);
    api->clients = strmap_create(free);
    return api;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    strmap_free(api->clients);
    pthread_mutex_destroy(&api->clients_lock);
    free(api);
}

void api_register(struct api *api, struct mg_context *ctx)
{
    mg_set_request_handler(ctx, "/api", api_handler, api);
}
