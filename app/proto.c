/* proto: the wire contract of docs/PROTOCOL.md in C: chat messages, the
 * validation rules for rooms, users, refs and text, safe JSON in and out. */
#define _GNU_SOURCE
#include "proto.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct chat_msg *chat_msg_create(const char *room, const char *user, const char *text,
                                 const char *ref)
{
    struct chat_msg *msg = xcalloc(1, sizeof(*msg));
    msg->room = xstrdup(room);
    msg->user = xstrdup(user);
    msg->text = xstrdup(text);
    msg->ref = ref ? xstrdup(ref) : NULL;
    return msg;
}

struct chat_msg *chat_msg_clone(const struct chat_msg *msg)
{
    struct chat_msg *copy = chat_msg_create(msg->room, msg->user, msg->text, msg->ref);
    copy->id = msg->id;
    copy->ts = msg->ts;
    return copy;
}

void chat_msg_free(struct chat_msg *msg)
{
    if (!msg)
        return;
    free(msg->room);
    free(msg->user);
    free(msg->text);
    free(msg->ref);
    free(msg);
}

/* ---------------------------------------------------------------- validation */

#define PROTO_ERROR_ROW(name, code, status) {code, status},
static const struct {
    const char *code;
    int status;
} proto_errors[] = {PROTO_ERRORS(PROTO_ERROR_ROW)};
#undef PROTO_ERROR_ROW

const char *proto_error_code(enum proto_error err)
{
    return proto_errors[err].code;
}

int proto_error_status(enum proto_error err)
{
    return proto_errors[err].status;
}

/* Set *why when the caller wants the reason; returns false for chaining. */
static bool refuse(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return false;
}

static bool room_chars_are_valid(const char *room, size_t len)
{
    if (len == 0 || len > PROTO_ROOM_MAX || room[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = room[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool proto_room_is_valid(const char *room, const char **why)
{
    if (room_chars_are_valid(room, strlen(room)))
        return true;
    return refuse(why, "room must be 1 to 64 characters of A-Z a-z 0-9 _ . - and not start with .");
}

static bool is_trimmable(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Remove leading and trailing ASCII white space in place; returns the new length. */
static size_t trim_in_place(char *s)
{
    size_t len = strlen(s);
    size_t start = 0;
    while (start < len && is_trimmable((unsigned char)s[start]))
        start++;
    while (len > start && is_trimmable((unsigned char)s[len - 1]))
        len--;
    memmove(s, s + start, len - start);
    s[len - start] = '\0';
    return len - start;
}

/* True when s (valid UTF-8) holds a C0, DEL or C1 control character. */
static bool has_control_char(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] == 0x7F)
            return true;
        if (u[i] == 0xC2 && i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F)
            return true;
    }
    return false;
}

bool proto_user_normalize(char *name, const char **why)
{
    size_t len = trim_in_place(name);
    if (len == 0 || !util_utf8_is_valid(name, len) || has_control_char(name, len) ||
        util_utf8_count(name, len) > PROTO_USER_MAX)
        return refuse(why, "name is required: 1 to 32 characters without control characters");
    return true;
}

bool proto_ref_is_valid(const char *ref, const char **why)
{
    size_t len = strlen(ref);
    if (len == 0 || len > PROTO_REF_MAX_BYTES || !util_utf8_is_valid(ref, len) ||
        has_control_char(ref, len) || util_utf8_count(ref, len) > PROTO_REF_MAX)
        return refuse(why, "ref must be a string of 1 to 64 characters");
    return true;
}

bool proto_text_normalize(char *text, int max_chars, const char **why)
{
    size_t len = trim_in_place(text);
    if (!util_utf8_is_valid(text, len)) {
        *why = "text is not valid UTF-8";
        return false;
    }
    if (len == 0) {
        *why = "text is empty";
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            *why = "text contains a control character";
            return false;
        }
    }
    if (util_utf8_count(text, len) > (size_t)max_chars) {
        *why = "text is longer than the limit";
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- JSON */

/* Deepest nesting of arrays and objects in buf, counting only outside strings;
 * stops early once limit is exceeded. */
static int json_depth(const char *buf, size_t len, int limit)
{
    int depth = 0, deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest)
                deepest = depth;
            if (deepest > limit)
                return deepest;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return deepest;
}

/* cJSON ends its strings at a NUL, which would cut "a\u0000b" to "a". Turn raw
 * NUL bytes and \u0000 escapes into U+0001 instead, so a NUL inside a string
 * is refused as a control character like any other. Returns a modified copy, or
 * NULL when buf has no NUL. */
static char *mask_nul(const char *buf, size_t len)
{
    char *copy = NULL;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\0') {
            if (!copy)
                copy = xstrndup(buf, len);
            copy[i] = '\x01';
        } else if (in_string && buf[i] == '\\') {
            if (i + 5 < len && memcmp(buf + i + 1, "u0000", 5) == 0) {
                if (!copy)
                    copy = xstrndup(buf, len);
                copy[i + 5] = '1';
            }
            i++;
        } else if (buf[i] == '"') {
            in_string = !in_string;
        }
    }
    return copy;
}

struct cJSON *proto_parse_object(const char *buf, size_t len)
{
    if (len == 0 || json_depth(buf, len, PROTO_JSON_MAX_DEPTH) > PROTO_JSON_MAX_DEPTH)
        return NULL;
    char *masked = mask_nul(buf, len);
    const char *text = masked ? masked : buf;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    /* Anything but white space after the object makes the frame malformed. */
    while (root && end < text + len && is_trimmable((unsigned char)*end))
        end++;
    bool trailing = root && end != text + len;
    free(masked);
    if (root && (trailing || !cJSON_IsObject(root))) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

const char *proto_get_string(const struct cJSON *obj, const char *name, bool *bad)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!item || cJSON_IsNull(item))
        return NULL;
    if (!cJSON_IsString(item)) {
        *bad = true;
        return NULL;
    }
    return item->valuestring;
}

char *proto_encode_json(const struct cJSON *obj, size_t *len)
{
    char *out = cJSON_PrintUnformatted(obj);
    if (!out)
        abort(); /* cJSON fails only when malloc does */
    if (len)
        *len = strlen(out);
    return out;
}

static char *encode_and_free(cJSON *obj, size_t *len)
{
    char *out = proto_encode_json(obj, len);
    cJSON_Delete(obj);
    return out;
}

struct cJSON *proto_message_object(const struct chat_msg *msg, const char *type)
{
    cJSON *obj = cJSON_CreateObject();
    if (type)
        cJSON_AddStringToObject(obj, "type", type);
    cJSON_AddStringToObject(obj, "room", msg->room);
    cJSON_AddNumberToObject(obj, "id", (double)msg->id);
    cJSON_AddStringToObject(obj, "user", msg->user);
    cJSON_AddStringToObject(obj, "text", msg->text);
    cJSON_AddNumberToObject(obj, "ts", (double)msg->ts);
    return obj;
}

char *proto_encode_message(const struct chat_msg *msg, const char *type, size_t *len)
{
    return encode_and_free(proto_message_object(msg, type), len);
}

char *proto_encode_error(const char *code, const char *message, const char *ref, const char *room,
                         size_t *len)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "error");
    cJSON_AddStringToObject(obj, "code", code);
    cJSON_AddStringToObject(obj, "message", message);
    if (ref)
        cJSON_AddStringToObject(obj, "ref", ref);
    if (room)
        cJSON_AddStringToObject(obj, "room", room);
    return encode_and_free(obj, len);
}

char *proto_encode_ack(const struct chat_msg *msg, size_t *len)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "ack");
    if (msg->ref)
        cJSON_AddStringToObject(obj, "ref", msg->ref);
    else
        cJSON_AddNullToObject(obj, "ref");
    cJSON_AddStringToObject(obj, "room", msg->room);
    cJSON_AddNumberToObject(obj, "id", (double)msg->id);
    cJSON_AddNumberToObject(obj, "ts", (double)msg->ts);
    return encode_and_free(obj, len);
}
