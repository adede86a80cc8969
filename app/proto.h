/* proto: the wire contract of docs/PROTOCOL.md in C: the chat message,
 * validation of names and text, safe JSON parsing and frame encoding. */
#ifndef TURBOCHAT_PROTO_H
#define TURBOCHAT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define PROTO_VERSION 1
#define PROTO_ROOM_MAX 64 /* characters of a room name */
#define PROTO_USER_MAX 32 /* code points of a user name */
#define PROTO_USER_MAX_BYTES 128
#define PROTO_REF_MAX 64 /* code points of a client ref */
#define PROTO_REF_MAX_BYTES 256
#define PROTO_JSON_MAX_DEPTH 16 /* deeper JSON is refused before parsing */

/* WebSocket close codes of docs/PROTOCOL.md. */
enum proto_close_code {
    PROTO_CLOSE_NORMAL = 1000,
    PROTO_CLOSE_GOING_AWAY = 1001,
    PROTO_CLOSE_PROTOCOL = 1002,
    PROTO_CLOSE_UNSUPPORTED = 1003,
    PROTO_CLOSE_INVALID_DATA = 1007,
    PROTO_CLOSE_POLICY = 1008,
    PROTO_CLOSE_TOO_BIG = 1009,
    PROTO_CLOSE_INTERNAL = 1011,
    PROTO_CLOSE_TRY_AGAIN = 1013,
};

/* One chat message. Strings are owned by the message. */
struct chat_msg {
    uint64_t id; /* per-room, from 1; 0 until the broker assigns it */
    int64_t ts;  /* ms since epoch, set when accepted */
    char *room;
    char *user;
    char *text;
    char *ref; /* NULL when the client gave none */
};

/* Error codes of docs/PROTOCOL.md, each with the HTTP status REST answers it
 * with: X(enum suffix, wire code, status). */
#define PROTO_ERRORS(X)                                                                            \
    X(BAD_JSON, "bad_json", 400)                                                                   \
    X(BAD_REQUEST, "bad_request", 400)                                                             \
    X(HELLO_REQUIRED, "hello_required", 400)                                                       \
    X(ROOM_INVALID, "room_invalid", 400)                                                           \
    X(TEXT_INVALID, "text_invalid", 400)                                                           \
    X(TOO_MANY_ROOMS, "too_many_rooms", 400)                                                       \
    X(NOT_JOINED, "not_joined", 400)                                                               \
    X(UNAUTHORIZED, "unauthorized", 401)                                                           \
    X(FORBIDDEN, "forbidden", 403)                                                                 \
    X(NOT_FOUND, "not_found", 404)                                                                 \
    X(METHOD_NOT_ALLOWED, "bad_request", 405)                                                      \
    X(TIMEOUT, "timeout", 408)                                                                     \
    X(LENGTH_REQUIRED, "bad_request", 411)                                                         \
    X(TOO_LARGE, "too_large", 413)                                                                 \
    X(RATE_LIMITED, "rate_limited", 429)                                                           \
    X(INTERNAL, "internal", 500)                                                                   \
    X(UNAVAILABLE, "unavailable", 503)

#define PROTO_ERROR_ENUM(name, code, status) PROTO_ERR_##name,
enum proto_error { PROTO_ERRORS(PROTO_ERROR_ENUM) };
#undef PROTO_ERROR_ENUM

/* The wire code ("bad_json") and the HTTP status of err. */
const char *proto_error_code(enum proto_error err);
int proto_error_status(enum proto_error err);

/* Make a message from copies of the strings (ref may be NULL). Free with
 * chat_msg_free, which accepts NULL. */
struct chat_msg *chat_msg_create(const char *room, const char *user, const char *text,
                                 const char *ref);
struct chat_msg *chat_msg_clone(const struct chat_msg *msg);
void chat_msg_free(struct chat_msg *msg);

/* Validation; each returns true when the value follows PROTOCOL.md and
 * otherwise, where why is not NULL, sets *why to the reason for the client (a
 * static string). */
bool proto_room_is_valid(const char *room, const char **why);
/* Trims white space in place first; name must be valid UTF-8. */
bool proto_user_normalize(char *name, const char **why);
bool proto_ref_is_valid(const char *ref, const char **why);
/* Trims in place, then checks UTF-8, control characters and 1..max_chars code
 * points. On false, *why names the problem (a static string). */
bool proto_text_normalize(char *text, int max_chars, const char **why);

/* Parse untrusted JSON: refuses nesting deeper than PROTO_JSON_MAX_DEPTH
 * (cJSON recurses on small worker stacks) and anything that is not an object.
 * Returns NULL on failure. Free with cJSON_Delete. Any thread. */
struct cJSON *proto_parse_object(const char *buf, size_t len);

/* String field of obj, NULL when absent; *bad set when present but not a string. */
const char *proto_get_string(const struct cJSON *obj, const char *name, bool *bad);

/* Encode frames and REST bodies. Each returns a malloc'd NUL-terminated
 * string the caller frees; *len receives strlen when len is not NULL. */
/* The message as a cJSON object (with "type" when type is not NULL): the
 * WebSocket frame and the REST message object. Free with cJSON_Delete. */
struct cJSON *proto_message_object(const struct chat_msg *msg, const char *type);
char *proto_encode_message(const struct chat_msg *msg, const char *type, size_t *len);
char *proto_encode_error(const char *code, const char *message, const char *ref, const char *room,
                         size_t *len);
char *proto_encode_ack(const struct chat_msg *msg, size_t *len);
char *proto_encode_json(const struct cJSON *obj, size_t *len);

#endif
