/* http_api: REST handlers. Every request is validated before anything is
 * read or written; every answer is JSON, errors as {"error":{...}}. */
#define _GNU_SOURCE
#include "http_api.h"

#include <arpa/inet.h>

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
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
#include "budget.h"
#include "rooms.h"
#include "search.h"
#include "store.h"
#include "strmap.h"
#include "util.h"

#define API_ROOMS_PAGE 200     /* rooms per page of a room list */
#define API_ROOMS_PAGE_MAX 500 /* and at most */
#define API_DEFAULT_LIMIT 50

struct api {
    const struct config *config;
    struct accounts *accounts; /* auth = accounts; NULL otherwise */
    struct rooms *rooms;
    struct store *store;
    struct broker *broker;
    struct hub *hub;
    struct metrics *metrics;
    struct budgets *budgets; /* the write rate, shared with the WebSockets */
};

/* ---------------------------------------------------------------- responses */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
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

const char *api_hsts_header(const struct mg_connection *mc)
{
    /* A year, the usual choice; without includeSubDomains, which is the
     * domain owner's decision rather than one chat server's. */
    return mg_get_request_info(mc)->is_ssl ? "Strict-Transport-Security: max-age=31536000\r\n" : "";
}

void api_send_json(struct mg_connection *mc, int status, const char *json,
                   const char *extra_headers)
{
    size_t len = strlen(json);
    struct util_buf b;
    util_buf_init(&b);
    util_buf_appendf(&b,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "%s%s\r\n",
                     status, status_text(status), len, api_hsts_header(mc),
                     extra_headers ? extra_headers : "");
    if (strcmp(mg_get_request_info(mc)->request_method, "HEAD") != 0)
        util_buf_append(&b, json, len);
    mg_write(mc, b.data, b.len); /* one write: one system call for a whole answer */
    util_buf_dispose(&b);
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

/* True when list names origin, or (with star) holds "*". */
static bool origin_in_list(const char *origin, const struct config_list *list, bool star)
{
    for (size_t i = 0; i < list->count; i++)
        if ((star && strcmp(list->items[i], "*") == 0) || strcmp(list->items[i], origin) == 0)
            return true;
    return false;
}

/* The rightmost address of the X-Forwarded-For list that is not a trusted
 * proxy's, into out when it is an address; false otherwise. */
static bool forwarded_for(const char *header, const struct config_nets *proxies, char *out,
                          size_t outlen)
{
    for (size_t end = strlen(header); end > 0;) {
        size_t start = end;
        while (start > 0 && header[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && (header[a] == ' ' || header[a] == '\t'))
            a++;
        while (b > a && (header[b - 1] == ' ' || header[b - 1] == '\t'))
            b--;
        if (!config_nets_contain(proxies, header + a, b - a)) {
            unsigned char bin[sizeof(struct in6_addr)];
            if (b - a >= outlen)
                return false;
            memcpy(out, header + a, b - a);
            out[b - a] = '\0';
            return inet_pton(AF_INET, out, bin) == 1 || inet_pton(AF_INET6, out, bin) == 1;
        }
        end = start > 0 ? start - 1 : 0;
    }
    return false;
}

void api_client_address(const struct mg_connection *mc, const struct config *config, char *out,
                        size_t outlen)
{
    const char *peer = mg_get_request_info(mc)->remote_addr;
    const char *header = mg_get_header(mc, "X-Forwarded-For");
    if (header && config_nets_contain(&config->proxies, peer, strlen(peer)) &&
        forwarded_for(header, &config->proxies, out, outlen))
        return;
    snprintf(out, outlen, "%s", peer);
}

/* Whether the client spoke TLS: to this listener, or, from a trusted proxy
 * that says so in X-Forwarded-Proto, to the proxy. */
static bool request_is_https(const struct mg_connection *mc, const struct config *config)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    const char *proto = mg_get_header(mc, "X-Forwarded-Proto");
    if (proto && config_nets_contain(&config->proxies, ri->remote_addr, strlen(ri->remote_addr)))
        return strcasecmp(proto, "https") == 0;
    return ri->is_ssl;
}

bool api_origin_is_allowed(const struct mg_connection *mc, const struct config *config)
{
    const char *origin = mg_get_header(mc, "Origin");
    if (!origin)
        return true;
    if (config->allowed_origins)
        return origin_in_list(origin, &config->origins, true);
    /* The server's own origin: the request's scheme and the Host header. */
    const char *host = mg_get_header(mc, "Host");
    const char *scheme = request_is_https(mc, config) ? "https://" : "http://";
    size_t scheme_len = strlen(scheme);
    return host && strncmp(origin, scheme, scheme_len) == 0 &&
           strcmp(origin + scheme_len, host) == 0;
}

/* OPTIONS on /api: a CORS preflight (an Origin) is answered by the origin
 * policy: an allowed origin gets itself back with the methods and headers the
 * API uses (and, with auth = accounts, leave to send the session cookie when
 * it is the server's own or listed by name, not only by "*");
 * another gets 403 and no Access-Control-Allow-Origin, so the browser does
 * not send the request. Without an Origin, 204 with Allow. */
static void answer_options(struct api *api, struct mg_connection *mc)
{
    static const char methods[] = "GET, HEAD, POST, PATCH, PUT, DELETE";
    const char *origin = mg_get_header(mc, "Origin");
    if (!origin) {
        mg_printf(mc, "HTTP/1.1 204 No Content\r\nAllow: %s, OPTIONS\r\n%s\r\n", methods,
                  api_hsts_header(mc));
        return;
    }
    if (!api_origin_is_allowed(mc, api->config)) {
        api_send_error_headers(mc, PROTO_ERR_FORBIDDEN, "this origin may not call the API",
                               "Vary: Origin\r\n");
        return;
    }
    bool credentials =
        api->config->auth == CONFIG_AUTH_ACCOUNTS &&
        (!api->config->allowed_origins || origin_in_list(origin, &api->config->origins, false));
    mg_printf(mc,
              "HTTP/1.1 204 No Content\r\n"
              "Access-Control-Allow-Origin: %s\r\n"
              "Vary: Origin\r\n"
              "Access-Control-Allow-Methods: %s\r\n"
              "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
              "Access-Control-Max-Age: 600\r\n"
              "%s%s\r\n",
              origin, methods, credentials ? "Access-Control-Allow-Credentials: true\r\n" : "",
              api_hsts_header(mc));
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
    if (row->stored && row->stored->retention_days > 0)
        cJSON_AddNumberToObject(room, "retention_days", row->stored->retention_days);
    return room;
}

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

/* The page a room list asks for: after (a room name, "" from the first) and
 * limit (API_ROOMS_PAGE by default, at most API_ROOMS_PAGE_MAX). False after
 * answering 400. */
static bool rooms_page(struct mg_connection *mc, char *after, size_t after_size, int *limit)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    const char *qs = ri->query_string ? ri->query_string : "";
    const char *why = "after is not a room name";
    int n = mg_get_var(qs, strlen(qs), "after", after, after_size);
    if (n == -1)
        after[0] = '\0';
    else if (n < 0 || !proto_room_is_valid(after, &why)) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, why);
        return false;
    }
    int64_t value = API_ROOMS_PAGE;
    if (query_int(ri, "limit", 1, INT64_MAX, &value) < 0) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "limit must be an integer of at least 1");
        return false;
    }
    *limit = value > API_ROOMS_PAGE_MAX ? API_ROOMS_PAGE_MAX : (int)value;
    return true;
}

/* A page of the rooms after `after`: *more when the log has rooms beyond it. */
static int stored_rooms_page(struct api *api, const char *after, int limit,
                             struct store_room **stored, size_t *count, bool *more)
{
    int rc = store_list_rooms(api->store, after[0] ? after : NULL, limit + 1, stored, count);
    *more = rc == 0 && *count > (size_t)limit;
    if (*more) {
        free((*stored)[limit].name); /* the one that told there are more */
        *count = (size_t)limit;
    }
    return rc;
}

/* True when name falls in the page (after, last]; last NULL: no upper end. */
static bool in_page(const char *name, const char *after, const char *last)
{
    return strcmp(name, after) > 0 && (!last || strcmp(name, last) <= 0);
}

/* Rooms of the log and rooms with members, those the caller may see (with
 * a token: those it allows; with accounts: public and its own private
 * ones), by name, a page at a time. */
static void get_rooms(struct api *api, struct mg_connection *mc, const struct auth_claims *claims)
{
    char after[PROTO_ROOM_MAX + 2];
    int limit;
    struct store_room *stored = NULL;
    size_t stored_count = 0;
    bool more = false;
    if (!rooms_page(mc, after, sizeof(after), &limit))
        return;
    if (stored_rooms_page(api, after, limit, &stored, &stored_count, &more) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log cannot be read now");
        return;
    }
    const char *last = more ? stored[stored_count - 1].name : NULL;
    char **live = NULL;
    size_t *online = NULL;
    size_t live_count = 0;
    hub_list_rooms(api->hub, &live, &online, &live_count);
    struct room_row *rows = xcalloc(stored_count + live_count + 2, sizeof(*rows));
    size_t n = 0;
    for (size_t i = 0; i < stored_count; i++)
        rows[n++] = (struct room_row){stored[i].name, stored[i].last_id, 0, &stored[i]};
    qsort(rows, n, sizeof(*rows), compare_rows);
    struct room_row general = {PROTO_DEFAULT_ROOM, 0, 0, NULL};
    if (api->config->auth == CONFIG_AUTH_ACCOUNTS && in_page(general.name, after, last) &&
        !bsearch(&general, rows, n, sizeof(*rows), compare_rows))
        rows[n++] = general; /* it exists from the start */
    qsort(rows, n, sizeof(*rows), compare_rows);
    size_t sorted = n;
    for (size_t i = 0; i < live_count; i++) {
        struct room_row key = {live[i], 0, 0, NULL};
        struct room_row *row = bsearch(&key, rows, sorted, sizeof(*rows), compare_rows);
        if (!row && !in_page(live[i], after, last))
            continue;
        if (!row)
            row = &rows[n++], *row = key;
        row->online = online[i];
    }
    qsort(rows, n, sizeof(*rows), compare_rows);
    cJSON *obj = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(obj, "rooms");
    const char *user = claims ? claims->sub : NULL;
    for (size_t i = 0; i < n; i++) {
        enum proto_error err;
        char why[ROOMS_WHY_MAX];
        if (rooms_may_use(api->rooms, rows[i].name, claims, ROOMS_READ, &err, why))
            cJSON_AddItemToArray(list, room_object(api, &rows[i], user));
    }
    if (more)
        cJSON_AddStringToObject(obj, "next", last);
    api_send_object(mc, 200, obj);
    free(rows);
    hub_free_names(live, live_count);
    free(online);
    store_free_rooms(stored, stored_count);
}

/* ---------------------------------------------------------------- GET messages */

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

/* Answer {"room", key: [events], "has_more"}, with begins (where history
 * begins) and retention_days when head is not NULL; frees msgs. */
static void send_events(struct mg_connection *mc, const char *room, const char *key,
                        struct chat_msg **msgs, size_t count, bool has_more, bool with_type,
                        struct api *head)
{
    struct util_buf b;
    util_buf_init(&b);
    util_buf_append(&b, "{\"room\":", 8);
    proto_append_json_string(&b, room);
    uint64_t begins = 1;
    double days = 0;
    if (head && store_history_head(head->store, room, &begins, &days) == 0) {
        util_buf_appendf(&b, ",\"begins\":%" PRIu64, begins);
        if (days > 0)
            util_buf_appendf(&b, ",\"retention_days\":%.17g", days);
    }
    util_buf_appendf(&b, ",\"%s\":[", key);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            util_buf_append(&b, ",", 1);
        proto_append_event_json(&b, msgs[i], with_type);
    }
    util_buf_appendf(&b, "],\"has_more\":%s}", has_more ? "true" : "false");
    store_free_messages(msgs, count);
    char *json = util_buf_take(&b, NULL);
    api_send_json(mc, 200, json, NULL);
    free(json);
}

static void get_messages(struct api *api, struct mg_connection *mc, const char *room)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    uint64_t t0 = util_mono_ns();
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
    send_events(mc, room, "messages", msgs, count, has_more, false, api);
    metrics_observe(&api->metrics->history_seconds, util_mono_ns() - t0);
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
    send_events(mc, room, "events", msgs, count, has_more, true, NULL);
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

/* Read the whole body into a NUL-terminated buffer; NULL after answering
 * 400, 408, 411 or 413 and marking the connection to close (what follows
 * cannot be told from the rest of the body). The body has one deadline,
 * request_timeout_ms from now, however slowly its bytes arrive. */
static char *read_body(const struct config *config, struct mg_connection *mc, size_t *len)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    size_t limit = (size_t)config->max_body_bytes;
    if (ri->content_length > (long long)limit) {
        mg_disable_connection_keep_alive(mc);
        api_send_error(mc, PROTO_ERR_TOO_LARGE, "the request body is too large");
        return NULL;
    }
    if (ri->content_length < 0) {
        /* A chunked body restarts CivetWeb's read deadline with every chunk. */
        mg_disable_connection_keep_alive(mc);
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
        mg_disable_connection_keep_alive(mc);
        api_send_error(mc, PROTO_ERR_TOO_LARGE, "the request body is too large");
        return NULL;
    }
    /* CivetWeb's own read timeout (the same length, begun a little earlier)
     * may end the read just before our deadline: that is a late body too,
     * unlike one whose client closed early. */
    if (n < (size_t)ri->content_length &&
        util_mono_ms() >= deadline - config->request_timeout_ms / 10)
        late = true;
    if (late) {
        free(body);
        mg_disable_connection_keep_alive(mc);
        api_send_error(mc, PROTO_ERR_TIMEOUT, "the request body did not arrive in time");
        return NULL;
    }
    if (n < (size_t)ri->content_length) {
        free(body);
        mg_disable_connection_keep_alive(mc);
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
    char address[API_ADDRESS_MAX];
    api_client_address(mc, api->config, address, sizeof(address));
    if (!budgets_take(api->budgets, user, address, util_mono_ns())) {
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

/* False after answering the refusal when the caller may not use room so
 * (rooms_may_use). */
static bool may_use(struct api *api, struct mg_connection *mc, const char *room,
                    const struct auth_claims *claims, enum rooms_use use)
{
    enum proto_error err;
    char why[ROOMS_WHY_MAX];
    if (rooms_may_use(api->rooms, room, claims, use, &err, why))
        return true;
    api_send_error(mc, err, why);
    return false;
}

static void post_message(struct api *api, struct mg_connection *mc, const char *room,
                         const struct auth_claims *claims)
{
    cJSON *body;
    if (!may_use(api, mc, room, claims, ROOMS_SPEAK))
        return;
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
    /* A muted user may still delete their own messages. */
    if (kind != CHAT_DELETE && !may_use(api, mc, room, claims, ROOMS_SPEAK))
        return;
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

/* ---------------------------------------------------------------- moderation */

static bool method_is(const struct mg_request_info *ri, const char *method);

/* PUT or DELETE /api/rooms/{room}/mutes/{user} and .../bans/{user}: put
 * (kind) or lift (lift) a sanction; 200 with the event. */
static void change_sanction(struct api *api, struct mg_connection *mc, const char *room,
                            const char *user, enum chat_kind kind, enum chat_kind lift,
                            const struct auth_claims *claims)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    bool put = method_is(ri, "PUT");
    if (!put && !method_is(ri, "DELETE")) {
        method_not_allowed(mc, "PUT, DELETE");
        return;
    }
    cJSON *body = NULL;
    if (!api_origin_is_allowed(mc, api->config)) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "this origin may not write");
        return;
    }
    if (!api_read_json_body(api->config, mc, true, &body))
        return;
    cJSON_Delete(body);
    char address[API_ADDRESS_MAX];
    api_client_address(mc, api->config, address, sizeof(address));
    if (!budgets_take(api->budgets, claims ? claims->sub : NULL, address, util_mono_ns())) {
        atomic_fetch_add(&api->metrics->rate_limited, 1);
        api_send_error(mc, PROTO_ERR_RATE_LIMITED, "too many changes; slow down");
        return;
    }
    struct chat_msg *ev;
    struct chat_refusal refusal;
    if (rooms_sanction(api->rooms, room, claims, user, put ? kind : lift, &ev, &refusal) == 0)
        api_send_object(mc, 200, proto_event_object(ev, false));
    else
        api_send_error(mc, refusal.err, refusal.why);
    chat_msg_free(ev);
}

/* The moderation routes of room; false when what is none of them. */
static bool route_moderation(struct api *api, struct mg_connection *mc, const char *room,
                             const char *what, const struct auth_claims *claims)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    struct chat_refusal refusal;
    if (strncmp(what, "mutes/", 6) == 0 && what[6]) {
        change_sanction(api, mc, room, what + 6, CHAT_MUTE, CHAT_UNMUTE, claims);
    } else if (strncmp(what, "bans/", 5) == 0 && what[5]) {
        change_sanction(api, mc, room, what + 5, CHAT_BAN, CHAT_UNBAN, claims);
    } else if (strcmp(what, "moderation") != 0) {
        return false;
    } else if (!method_is(ri, "GET") && !method_is(ri, "HEAD")) {
        method_not_allowed(mc, "GET, HEAD");
    } else {
        cJSON *obj = rooms_sanctions(api->rooms, room, claims, &refusal);
        if (obj)
            api_send_object(mc, 200, obj);
        else
            api_send_error(mc, refusal.err, refusal.why);
    }
    return true;
}

/* ---------------------------------------------------------------- rooms of accounts
 * (routed only under auth = accounts: claims are the caller's session) */

/* The room object of room as GET /api/rooms has it, for user. */
static cJSON *room_object_of(struct api *api, const char *room, const char *user)
{
    struct store_room stored = {(char *)room, 0, false, false, false, 0};
    uint64_t begins;
    store_history_head(api->store, room, &begins, &stored.retention_days);
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
    if (stored && stored->retention_days > 0)
        cJSON_AddNumberToObject(r, "retention_days", stored->retention_days);
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
    char after[PROTO_ROOM_MAX + 2];
    int limit;
    struct store_room *stored;
    size_t count;
    bool more;
    if (!rooms_page(mc, after, sizeof(after), &limit))
        return;
    if (stored_rooms_page(api, after, limit, &stored, &count, &more) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the rooms cannot be read now");
        return;
    }
    const char *last = more ? stored[count - 1].name : NULL;
    cJSON *obj = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(obj, "rooms");
    bool general = !in_page(PROTO_DEFAULT_ROOM, after, last);
    for (size_t i = 0; i < count && !general; i++)
        general = strcmp(stored[i].name, PROTO_DEFAULT_ROOM) == 0;
    for (size_t i = 0; i < count; i++) {
        if (!general && strcmp(stored[i].name, PROTO_DEFAULT_ROOM) > 0) {
            cJSON_AddItemToArray(list, admin_room_object(api, PROTO_DEFAULT_ROOM, NULL));
            general = true;
        }
        cJSON_AddItemToArray(list, admin_room_object(api, stored[i].name, &stored[i]));
    }
    if (!general)
        cJSON_AddItemToArray(list, admin_room_object(api, PROTO_DEFAULT_ROOM, NULL));
    if (more)
        cJSON_AddStringToObject(obj, "next", last);
    store_free_rooms(stored, count);
    api_send_object(mc, 200, obj);
}

/* ---------------------------------------------------------------- retention */

/* True when the caller moderates room: a token's admin, or mod of the
 * room; under accounts an admin account or an owner of the room. */
/* PATCH /api/rooms/{room} {"retention_days": N | null}. */
static void patch_room(struct api *api, struct mg_connection *mc, const char *room,
                       const struct auth_claims *claims)
{
    if (!rooms_is_moderator(api->rooms, room, claims)) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "only a moderator of the room may change it");
        return;
    }
    cJSON *body;
    if (!write_body(api, mc, false, &body))
        return;
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(body, "retention_days");
    struct chat_refusal refusal = {PROTO_ERR_BAD_REQUEST,
                                   "retention_days must be a number from 0 to 36500, or null"};
    int rc = -1;
    if (cJSON_IsNumber(days) || cJSON_IsNull(days))
        rc = rooms_set_retention(api->rooms, room, claims->sub, cJSON_IsNumber(days),
                                 cJSON_IsNumber(days) ? days->valuedouble : 0, &refusal);
    cJSON_Delete(body);
    if (rc != 0) {
        api_send_error(mc, refusal.err, refusal.why);
        return;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddItemToObject(obj, "room", room_object_of(api, room, claims->sub));
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
    if (!may_use(api, mc, room, claims, ROOMS_READ) ||
        route_moderation(api, mc, room, what, claims))
        return;
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

/* /api/rooms/{room}: its settings. */
static void route_room_itself(struct api *api, struct mg_connection *mc, const char *room,
                              const struct auth_claims *claims)
{
    if (!may_use(api, mc, room, claims, ROOMS_READ))
        return;
    if (method_is(mg_get_request_info(mc), "PATCH"))
        patch_room(api, mc, room, claims);
    else
        method_not_allowed(mc, "PATCH");
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
    } else if (api_path_room(uri, room, sizeof(room))) {
        const char *why;
        if (!proto_room_is_valid(room, &why))
            api_send_error(mc, PROTO_ERR_ROOM_INVALID, why);
        else
            route_room_itself(api, mc, room, claims);
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
    if (strcmp(mg_get_request_info(mc)->request_method, "OPTIONS") == 0) {
        answer_options(api, mc); /* before auth: a preflight carries no credentials */
        return 1;
    }
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
                       struct metrics *metrics, struct budgets *budgets)
{
    struct api *api = xcalloc(1, sizeof(*api));
    api->config = config;
    api->accounts = accounts;
    api->rooms = rooms;
    api->store = store;
    api->broker = broker;
    api->hub = hub;
    api->metrics = metrics;
    api->budgets = budgets;
    return api;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    free(api);
}

void api_register(struct api *api, struct mg_context *ctx)
{
    mg_set_request_handler(ctx, "/api", api_handler, api);
}
