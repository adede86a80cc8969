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

/* One chat message. Strings are owned by the message. */
struct chat_msg {
    uint64_t id; /* per-room, from 1; 0 until the broker assigns it */
    int64_t ts;  /* ms since epoch, set when accepted */
    char *room;
    char *user;
    char *text;
    char *ref; /* NULL when the client gave none */
};

/* Make a message from copies of the strings (ref may be NULL). Free with
 * chat_msg_free, which accepts NULL. */
struct chat_msg *chat_msg_create(const char *room, const char *user, const char *text,
                                 const char *ref);
struct chat_msg *chat_msg_clone(const struct chat_msg *msg);
void chat_msg_free(struct chat_msg *msg);

/* Validation; each returns true when the value follows PROTOCOL.md. */
bool proto_room_is_valid(const char *room);
/* Trims white space in place first; name must be valid UTF-8. */
bool proto_user_normalize(char *name);
bool proto_ref_is_valid(const char *ref);
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
