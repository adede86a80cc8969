/* proto: the wire contract of docs/PROTOCOL.md in C: chat messages, the
 * validation rules for rooms, users, refs and text, safe JSON in and out. */
#define _GNU_SOURCE
#include "proto.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
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

static char *strdup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

struct chat_msg *chat_msg_clone(const struct chat_msg *msg)
{
    struct chat_msg *copy = chat_msg_create(msg->room, msg->user, msg->text, msg->ref);
    copy->id = msg->id;
    copy->ts = msg->ts;
    copy->kind = msg->kind;
    copy->claim = strdup_or_null(msg->claim);
    copy->target = msg->target;
    copy->emoji = strdup_or_null(msg->emoji);
    copy->reply_to = msg->reply_to;
    copy->reply_user = strdup_or_null(msg->reply_user);
    copy->reply_text = strdup_or_null(msg->reply_text);
    for (size_t i = 0; i < msg->mention_count; i++)
        chat_msg_add_mention(copy, msg->mentions[i]);
    copy->edited_ts = msg->edited_ts;
    copy->deleted_by = strdup_or_null(msg->deleted_by);
    for (size_t i = 0; i < msg->reaction_count; i++)
        chat_msg_add_reaction(copy, msg->reactions[i].emoji, msg->reactions[i].user,
                              msg->reactions[i].event_id);
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
    free(msg->claim);
    free(msg->emoji);
    free(msg->reply_user);
    free(msg->reply_text);
    for (size_t i = 0; i < msg->mention_count; i++)
        free(msg->mentions[i]);
    free(msg->mentions);
    free(msg->deleted_by);
    for (size_t i = 0; i < msg->reaction_count; i++) {
        free(msg->reactions[i].emoji);
        free(msg->reactions[i].user);
    }
    free(msg->reactions);
    free(msg);
}

void chat_msg_add_mention(struct chat_msg *msg, const char *name)
{
    msg->mentions = xrealloc(msg->mentions, (msg->mention_count + 1) * sizeof(*msg->mentions));
    msg->mentions[msg->mention_count++] = xstrdup(name);
}

void chat_msg_add_reaction(struct chat_msg *msg, const char *emoji, const char *user,
                           uint64_t event_id)
{
    msg->reactions = xrealloc(msg->reactions, (msg->reaction_count + 1) * sizeof(*msg->reactions));
    msg->reactions[msg->reaction_count++] =
        (struct chat_reaction){xstrdup(emoji), xstrdup(user), event_id};
}

static const char *const kind_names[] = {
    [CHAT_MESSAGE] = "message",     [CHAT_EDIT] = "edit",       [CHAT_DELETE] = "delete",
    [CHAT_REACT] = "react",         [CHAT_UNREACT] = "unreact", [CHAT_ACCOUNT] = "account",
    [CHAT_SESSION] = "session",     [CHAT_SIGNOUT] = "signout", [CHAT_SIGNOUT_ALL] = "signout_all",
    [CHAT_INVITE] = "invite",       [CHAT_ROOM] = "room",       [CHAT_MEMBER] = "member",
    [CHAT_CLOSED] = "closed",       [CHAT_READ] = "read",       [CHAT_MUTE] = "mute",
    [CHAT_UNMUTE] = "unmute",       [CHAT_BAN] = "ban",         [CHAT_UNBAN] = "unban",
    [CHAT_RETENTION] = "retention",
};
_Static_assert(ARRAY_LEN(kind_names) == CHAT_KIND_COUNT, "every kind has its name");

const char *chat_kind_name(enum chat_kind kind)
{
    return kind_names[kind];
}

bool chat_kind_parse(const char *name, enum chat_kind *kind)
{
    for (size_t i = 0; i < ARRAY_LEN(kind_names); i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (enum chat_kind)i;
            return true;
        }
    }
    return false;
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

bool proto_log_is_valid(const char *log)
{
    return log[0] == '.' ? room_chars_are_valid(log + 1, strlen(log + 1))
                         : room_chars_are_valid(log, strlen(log));
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

static uint32_t utf8_next(const char **p);

/* Code points a name may not hold: they render as nothing or reorder what
 * follows, so one name can pose as another. Format characters (Cf, bidi
 * embeddings, overrides and isolates among them), zero-width characters and
 * the other default-ignorables, Hangul fillers, the line and paragraph
 * separators. The emoji presentation selectors U+FE0E and U+FE0F stay. */
static bool is_hidden_code_point(uint32_t cp)
{
    static const uint32_t ranges[][2] = {
        {0x00AD, 0x00AD},   {0x034F, 0x034F},   {0x0600, 0x0605},   {0x061C, 0x061C},
        {0x06DD, 0x06DD},   {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},
        {0x115F, 0x1160},   {0x17B4, 0x17B5},   {0x180B, 0x180F},   {0x200B, 0x200F},
        {0x2028, 0x202E},   {0x2060, 0x206F},   {0x3164, 0x3164},   {0xFE00, 0xFE0D},
        {0xFEFF, 0xFEFF},   {0xFFA0, 0xFFA0},   {0xFFF0, 0xFFFB},   {0x110BD, 0x110BD},
        {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
        {0xE0000, 0xE0FFF},
    };
    for (size_t i = 0; i < ARRAY_LEN(ranges); i++) {
        if (cp >= ranges[i][0] && cp <= ranges[i][1])
            return true;
    }
    return false;
}

/* Characters that show as blank space (or nothing) without being refused. */
static bool is_blank_code_point(uint32_t cp)
{
    return cp == ' ' || cp == 0x00A0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x202F || cp == 0x205F || cp == 0x2800 || cp == 0x3000 || cp == 0xFE0E ||
           cp == 0xFE0F;
}

bool proto_user_normalize(char *name, const char **why)
{
    size_t len = trim_in_place(name);
    if (len == 0 || !util_utf8_is_valid(name, len) || has_control_char(name, len) ||
        util_utf8_count(name, len) > PROTO_USER_MAX)
        return refuse(why, "name is required: 1 to 32 characters without control characters");
    bool visible = false;
    for (const char *p = name; *p;) {
        uint32_t cp = utf8_next(&p);
        if (is_hidden_code_point(cp))
            return refuse(why, "name must not hold invisible, zero-width, bidi or format "
                               "characters");
        visible = visible || !is_blank_code_point(cp);
    }
    if (!visible)
        return refuse(why, "name must have a visible character");
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

/* Decode the code point at *p (valid UTF-8) and advance *p past it. */
static uint32_t utf8_next(const char **p)
{
    const unsigned char *u = (const unsigned char *)*p;
    uint32_t cp;
    int n;
    if (u[0] < 0x80) {
        cp = u[0];
        n = 1;
    } else if (u[0] < 0xE0) {
        cp = u[0] & 0x1F;
        n = 2;
    } else if (u[0] < 0xF0) {
        cp = u[0] & 0x0F;
        n = 3;
    } else {
        cp = u[0] & 0x07;
        n = 4;
    }
    for (int i = 1; i < n; i++)
        cp = (cp << 6) | (u[i] & 0x3F);
    *p += n;
    return cp;
}

/* A code point that is an emoji by itself: pictographs, symbols, dingbats,
 * arrows, regional indicators and the few emoji elsewhere in the BMP. */
static bool is_emoji_base(uint32_t cp)
{
    static const uint32_t ranges[][2] = {
        {0x1F000, 0x1FAFF}, {0x2600, 0x27BF}, {0x2300, 0x23FF}, {0x2B00, 0x2BFF}, {0x2190, 0x21FF},
        {0x25A0, 0x25FF},   {0x2100, 0x214F}, {0x2934, 0x2935}, {0x203C, 0x203C}, {0x2049, 0x2049},
        {0x3030, 0x3030},   {0x303D, 0x303D}, {0x3297, 0x3297}, {0x3299, 0x3299}, {0x00A9, 0x00A9},
        {0x00AE, 0x00AE},   {0x24C2, 0x24C2},
    };
    for (size_t i = 0; i < ARRAY_LEN(ranges); i++) {
        if (cp >= ranges[i][0] && cp <= ranges[i][1])
            return true;
    }
    return false;
}

/* Code points that only shape an emoji: ZWJ, variation selectors, the keycap,
 * tags. */
static bool is_emoji_modifier(uint32_t cp)
{
    return cp == 0x200D || cp == 0xFE0F || cp == 0xFE0E || cp == 0x20E3 ||
           (cp >= 0xE0020 && cp <= 0xE007F);
}

static bool is_keycap_base(uint32_t cp)
{
    return (cp >= '0' && cp <= '9') || cp == '#' || cp == '*';
}

bool proto_emoji_is_valid(const char *emoji, const char **why)
{
    const char *reason = "emoji must be one emoji";
    size_t len = strlen(emoji);
    if (len == 0 || len > PROTO_EMOJI_MAX_BYTES || !util_utf8_is_valid(emoji, len) ||
        util_utf8_count(emoji, len) > PROTO_EMOJI_MAX)
        return refuse(why, reason);
    const char *p = emoji;
    uint32_t first = utf8_next(&p);
    if (is_keycap_base(first)) {
        uint32_t next = *p ? utf8_next(&p) : 0;
        if (next == 0xFE0F)
            next = *p ? utf8_next(&p) : 0;
        return next == 0x20E3 && *p == '\0' ? true : refuse(why, reason);
    }
    if (!is_emoji_base(first))
        return refuse(why, reason);
    while (*p) {
        uint32_t cp = utf8_next(&p);
        if (!is_emoji_base(cp) && !is_emoji_modifier(cp))
            return refuse(why, reason);
    }
    return true;
}

char *proto_quote(const char *text)
{
    const char *p = text, *cut = NULL, *last_space = NULL;
    size_t n = 0;
    while (*p) {
        if (n == PROTO_QUOTE_MAX) {
            cut = p;
            break;
        }
        if (is_trimmable((unsigned char)*p) && n > PROTO_QUOTE_MAX / 2)
            last_space = p; /* a word boundary late enough to keep most words */
        utf8_next(&p);
        n++;
    }
    if (!cut)
        return xstrdup(text);
    if (last_space)
        cut = last_space;
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_append(&buf, text, (size_t)(cut - text));
    while (buf.len > 0 && is_trimmable((unsigned char)buf.data[buf.len - 1]))
        buf.len--;
    util_buf_append(&buf, "\u2026", strlen("\u2026"));
    return util_buf_take(&buf, NULL);
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

static void add_id(cJSON *obj, const char *name, uint64_t id)
{
    cJSON_AddNumberToObject(obj, name, (double)id);
}

static void add_string_or_null(cJSON *obj, const char *name, const char *value)
{
    if (value)
        cJSON_AddStringToObject(obj, name, value);
    else
        cJSON_AddNullToObject(obj, name);
}

/* {emoji: [users]}, emoji in the order of their first reaction. */
static cJSON *reactions_object(const struct chat_msg *msg)
{
    cJSON *obj = cJSON_CreateObject();
    for (size_t i = 0; i < msg->reaction_count; i++) {
        const struct chat_reaction *r = &msg->reactions[i];
        cJSON *users = cJSON_GetObjectItemCaseSensitive(obj, r->emoji);
        if (!users)
            users = cJSON_AddArrayToObject(obj, r->emoji);
        cJSON_AddItemToArray(users, cJSON_CreateString(r->user));
    }
    return obj;
}

static cJSON *reply_object(const struct chat_msg *msg)
{
    if (!msg->reply_to)
        return cJSON_CreateNull();
    cJSON *obj = cJSON_CreateObject();
    add_id(obj, "id", msg->reply_to);
    cJSON_AddStringToObject(obj, "user", msg->reply_user ? msg->reply_user : "");
    cJSON_AddStringToObject(obj, "text", msg->reply_text ? msg->reply_text : "");
    return obj;
}

static cJSON *names_array(char *const *names, size_t count)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
    return arr;
}

/* {type (when not NULL), room, id} of an event. */
static cJSON *event_head(const struct chat_msg *msg, const char *type)
{
    cJSON *obj = cJSON_CreateObject();
    if (type)
        cJSON_AddStringToObject(obj, "type", type);
    cJSON_AddStringToObject(obj, "room", msg->room);
    add_id(obj, "id", msg->id);
    return obj;
}

static cJSON *message_object(const struct chat_msg *msg, bool with_type)
{
    cJSON *obj = event_head(msg, with_type ? "message" : NULL);
    cJSON_AddStringToObject(obj, "user", msg->user);
    cJSON_AddStringToObject(obj, "text", msg->text);
    cJSON_AddNumberToObject(obj, "ts", (double)msg->ts);
    if (msg->edited_ts)
        cJSON_AddNumberToObject(obj, "edited_ts", (double)msg->edited_ts);
    else
        cJSON_AddNullToObject(obj, "edited_ts");
    cJSON_AddBoolToObject(obj, "deleted", msg->deleted_by != NULL);
    add_string_or_null(obj, "deleted_by", msg->deleted_by);
    cJSON_AddItemToObject(obj, "reactions", reactions_object(msg));
    cJSON_AddItemToObject(obj, "reply_to", reply_object(msg));
    cJSON_AddItemToObject(obj, "mentions", names_array(msg->mentions, msg->mention_count));
    return obj;
}

/* The record of a room's membership event, its fields beside the event's. */
static void add_record(cJSON *obj, const char *json)
{
    cJSON *rec = proto_parse_object(json, strlen(json));
    cJSON *item;
    while (rec && (item = rec->child) != NULL) {
        cJSON_DetachItemViaPointer(rec, item);
        if (cJSON_GetObjectItemCaseSensitive(obj, item->string))
            cJSON_Delete(item);
        else
            cJSON_AddItemToObject(obj, item->string, item);
    }
    cJSON_Delete(rec);
}

static cJSON *update_object(const struct chat_msg *msg, bool with_type)
{
    cJSON *obj = event_head(msg, with_type ? "update" : NULL);
    if (chat_kind_is_change(msg->kind))
        add_id(obj, "target", msg->target);
    cJSON_AddStringToObject(obj, "kind", chat_kind_name(msg->kind));
    cJSON_AddStringToObject(obj, "user", msg->user);
    cJSON_AddNumberToObject(obj, "ts", (double)msg->ts);
    if (msg->kind == CHAT_EDIT)
        cJSON_AddStringToObject(obj, "text", msg->text);
    if (msg->emoji)
        cJSON_AddStringToObject(obj, "emoji", msg->emoji);
    if (chat_kind_is_room_change(msg->kind) || msg->kind == CHAT_RETENTION)
        add_record(obj, msg->text);
    return obj;
}

struct cJSON *proto_event_object(const struct chat_msg *msg, bool with_type)
{
    return msg->kind == CHAT_MESSAGE ? message_object(msg, with_type)
                                     : update_object(msg, with_type);
}

/* ---- messages written straight to JSON: history pages and message frames
 * are the hot paths, and a cJSON tree of a message costs a dozen allocations
 * and a print that parses every number back. The output is what
 * cJSON_PrintUnformatted makes of message_object (a unit test compares). */

void proto_append_json_string(struct util_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    util_buf_append(b, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = *p == '"'    ? "\\\""
                          : *p == '\\' ? "\\\\"
                          : *p == '\b' ? "\\b"
                          : *p == '\f' ? "\\f"
                          : *p == '\n' ? "\\n"
                          : *p == '\r' ? "\\r"
                          : *p == '\t' ? "\\t"
                                       : NULL;
        if (!esc && *p >= 0x20)
            continue;
        util_buf_append(b, run, (size_t)((const char *)p - run));
        if (esc) {
            util_buf_append(b, esc, strlen(esc));
        } else {
            char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            util_buf_append(b, u, sizeof(u));
        }
        run = (const char *)p + 1;
    }
    util_buf_append(b, run, strlen(run));
    util_buf_append(b, "\"", 1);
}

/* A string literal appended without printf: the hot path formats nothing. */
#define APPEND_LITERAL(b, lit) util_buf_append((b), (lit), sizeof(lit) - 1)

static void append_u64(struct util_buf *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    util_buf_append(b, digits + sizeof(digits) - n, n);
}

static void append_i64(struct util_buf *b, int64_t v)
{
    if (v < 0) {
        APPEND_LITERAL(b, "-");
        append_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        append_u64(b, (uint64_t)v);
    }
}

static void append_reactions(struct util_buf *b, const struct chat_msg *msg)
{
    util_buf_append(b, "{", 1);
    for (size_t i = 0; i < msg->reaction_count; i++) {
        const char *emoji = msg->reactions[i].emoji;
        size_t first = 0;
        while (strcmp(msg->reactions[first].emoji, emoji) != 0)
            first++;
        if (first < i)
            continue; /* listed with its first reaction */
        if (i > 0)
            util_buf_append(b, ",", 1);
        proto_append_json_string(b, emoji);
        util_buf_append(b, ":[", 2);
        const char *sep = "";
        for (size_t k = i; k < msg->reaction_count; k++) {
            if (strcmp(msg->reactions[k].emoji, emoji) != 0)
                continue;
            util_buf_append(b, sep, strlen(sep));
            proto_append_json_string(b, msg->reactions[k].user);
            sep = ",";
        }
        util_buf_append(b, "]", 1);
    }
    util_buf_append(b, "}", 1);
}

static void append_message(struct util_buf *b, const struct chat_msg *msg, bool with_type)
{
    if (with_type)
        APPEND_LITERAL(b, "{\"type\":\"message\",\"room\":");
    else
        APPEND_LITERAL(b, "{\"room\":");
    proto_append_json_string(b, msg->room);
    APPEND_LITERAL(b, ",\"id\":");
    append_u64(b, msg->id);
    APPEND_LITERAL(b, ",\"user\":");
    proto_append_json_string(b, msg->user);
    APPEND_LITERAL(b, ",\"text\":");
    proto_append_json_string(b, msg->text);
    APPEND_LITERAL(b, ",\"ts\":");
    append_i64(b, msg->ts);
    APPEND_LITERAL(b, ",\"edited_ts\":");
    if (msg->edited_ts)
        append_i64(b, msg->edited_ts);
    else
        APPEND_LITERAL(b, "null");
    if (msg->deleted_by) {
        APPEND_LITERAL(b, ",\"deleted\":true,\"deleted_by\":");
        proto_append_json_string(b, msg->deleted_by);
    } else {
        APPEND_LITERAL(b, ",\"deleted\":false,\"deleted_by\":null");
    }
    APPEND_LITERAL(b, ",\"reactions\":");
    append_reactions(b, msg);
    APPEND_LITERAL(b, ",\"reply_to\":");
    if (msg->reply_to) {
        APPEND_LITERAL(b, "{\"id\":");
        append_u64(b, msg->reply_to);
        APPEND_LITERAL(b, ",\"user\":");
        proto_append_json_string(b, msg->reply_user ? msg->reply_user : "");
        APPEND_LITERAL(b, ",\"text\":");
        proto_append_json_string(b, msg->reply_text ? msg->reply_text : "");
        APPEND_LITERAL(b, "}");
    } else {
        APPEND_LITERAL(b, "null");
    }
    APPEND_LITERAL(b, ",\"mentions\":[");
    for (size_t i = 0; i < msg->mention_count; i++) {
        if (i > 0)
            APPEND_LITERAL(b, ",");
        proto_append_json_string(b, msg->mentions[i]);
    }
    APPEND_LITERAL(b, "]}");
}

void proto_append_event_json(struct util_buf *b, const struct chat_msg *msg, bool with_type)
{
    if (msg->kind == CHAT_MESSAGE) {
        append_message(b, msg, with_type);
        return;
    }
    size_t len;
    char *json = encode_and_free(update_object(msg, with_type), &len);
    util_buf_append(b, json, len);
    free(json);
}

char *proto_encode_event(const struct chat_msg *msg, size_t *len)
{
    struct util_buf b;
    util_buf_init(&b);
    proto_append_event_json(&b, msg, true);
    return util_buf_take(&b, len);
}

char *proto_encode_mention(const struct chat_msg *msg, size_t *len)
{
    cJSON *obj = event_head(msg, "mention");
    cJSON_AddStringToObject(obj, "user", msg->user);
    cJSON_AddStringToObject(obj, "text", msg->text);
    cJSON_AddNumberToObject(obj, "ts", (double)msg->ts);
    return encode_and_free(obj, len);
}

struct cJSON *proto_extras_object(const struct chat_msg *msg)
{
    if (msg->kind == CHAT_MESSAGE && !msg->reply_to && msg->mention_count == 0)
        return NULL;
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "kind", chat_kind_name(msg->kind));
    if (msg->claim)
        cJSON_AddStringToObject(obj, "claim", msg->claim);
    if (msg->target)
        add_id(obj, "target", msg->target);
    if (msg->emoji)
        cJSON_AddStringToObject(obj, "emoji", msg->emoji);
    if (msg->reply_to) {
        add_id(obj, "reply_to", msg->reply_to);
        cJSON_AddStringToObject(obj, "reply_user", msg->reply_user ? msg->reply_user : "");
        cJSON_AddStringToObject(obj, "reply_text", msg->reply_text ? msg->reply_text : "");
    }
    if (msg->mention_count)
        cJSON_AddItemToObject(obj, "mentions", names_array(msg->mentions, msg->mention_count));
    return obj;
}

bool proto_get_id(const struct cJSON *obj, const char *name, uint64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = 0;
    if (!item || cJSON_IsNull(item))
        return true;
    if (!cJSON_IsNumber(item) || item->valuedouble < 1 || item->valuedouble > PROTO_ID_MAX ||
        item->valuedouble != (double)(uint64_t)item->valuedouble)
        return false;
    *out = (uint64_t)item->valuedouble;
    return true;
}

bool proto_get_int(const struct cJSON *obj, const char *name, int64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = 0;
    if (!item || cJSON_IsNull(item))
        return true;
    if (!cJSON_IsNumber(item) || !(fabs(item->valuedouble) <= PROTO_ID_MAX) ||
        floor(item->valuedouble) != item->valuedouble)
        return false;
    *out = (int64_t)item->valuedouble;
    return true;
}

bool proto_extras_apply(struct chat_msg *msg, const struct cJSON *extras)
{
    bool bad = false;
    const char *kind = proto_get_string(extras, "kind", &bad);
    const char *emoji = proto_get_string(extras, "emoji", &bad);
    const char *reply_user = proto_get_string(extras, "reply_user", &bad);
    const char *reply_text = proto_get_string(extras, "reply_text", &bad);
    const char *claim = proto_get_string(extras, "claim", &bad);
    const cJSON *mentions = cJSON_GetObjectItemCaseSensitive(extras, "mentions");
    if (bad || !kind || !chat_kind_parse(kind, &msg->kind) ||
        !proto_get_id(extras, "target", &msg->target) ||
        !proto_get_id(extras, "reply_to", &msg->reply_to) || (mentions && !cJSON_IsArray(mentions)))
        return false;
    if (chat_kind_is_change(msg->kind) != (msg->target != 0) ||
        (msg->kind == CHAT_REACT || msg->kind == CHAT_UNREACT) != (emoji != NULL))
        return false;
    msg->emoji = emoji ? xstrdup(emoji) : NULL;
    msg->claim = claim ? xstrdup(claim) : NULL;
    if (msg->reply_to) {
        msg->reply_user = xstrdup(reply_user ? reply_user : "");
        msg->reply_text = xstrdup(reply_text ? reply_text : "");
    }
    const cJSON *name;
    cJSON_ArrayForEach(name, mentions)
    {
        if (cJSON_IsString(name) && msg->mention_count < PROTO_MENTIONS_MAX)
            chat_msg_add_mention(msg, name->valuestring);
    }
    return true;
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
    add_string_or_null(obj, "ref", msg->ref);
    cJSON_AddStringToObject(obj, "room", msg->room);
    add_id(obj, "id", msg->id);
    cJSON_AddNumberToObject(obj, "ts", (double)msg->ts);
    if (chat_kind_is_change(msg->kind)) {
        add_id(obj, "target", msg->target);
        cJSON_AddStringToObject(obj, "kind", chat_kind_name(msg->kind));
    }
    return encode_and_free(obj, len);
}

/* ---------------------------------------------------------------- client frames */

static const char *const frame_names[] = {
    [PROTO_FRAME_HELLO] = "hello", [PROTO_FRAME_JOIN] = "join",     [PROTO_FRAME_LEAVE] = "leave",
    [PROTO_FRAME_SEND] = "send",   [PROTO_FRAME_EDIT] = "edit",     [PROTO_FRAME_DELETE] = "delete",
    [PROTO_FRAME_REACT] = "react", [PROTO_FRAME_TYPING] = "typing", [PROTO_FRAME_PING] = "ping",
    [PROTO_FRAME_READ] = "read",
};

static void frame_room(struct proto_frame *f)
{
    bool bad = false;
    const char *room = proto_get_string(f->root, "room", &bad);
    if (!room) {
        f->room_err = PROTO_ERR_BAD_REQUEST;
        f->room_why = "room is required and must be a string";
    } else if (!proto_room_is_valid(room, &f->room_why)) {
        f->room_err = PROTO_ERR_ROOM_INVALID;
    } else {
        f->room = room;
    }
}

static void frame_ref(struct proto_frame *f)
{
    bool bad = false;
    f->ref = proto_get_string(f->root, "ref", &bad);
    const char *why = "ref must be a string of 1 to 64 characters";
    if (bad || (f->ref && !proto_ref_is_valid(f->ref, &why))) {
        f->ref = NULL;
        f->ref_why = why;
    }
}

/* since of a join: a non-negative integer or absent/null. */
static void frame_since(struct proto_frame *f)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(f->root, "since");
    f->has_since = item && !cJSON_IsNull(item);
    if (!f->has_since)
        return;
    double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
    if (v < 0 || v > PROTO_ID_MAX || floor(v) != v)
        f->why = "since must be a non-negative integer";
    else
        f->since = (uint64_t)v;
}

/* The fields of edit, delete and react. */
static void frame_change(struct proto_frame *f)
{
    bool bad = false;
    f->text = proto_get_string(f->root, "text", &bad);
    f->emoji = proto_get_string(f->root, "emoji", &bad);
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(f->root, "add");
    f->add = cJSON_IsTrue(add);
    if (f->type == PROTO_FRAME_EDIT && !f->text)
        f->why = "text is required and must be a string";
    if (f->type == PROTO_FRAME_REACT && !f->emoji)
        f->why = "emoji is required and must be a string";
    else if (f->type == PROTO_FRAME_REACT && !cJSON_IsBool(add))
        f->why = "add is required: true or false";
    if (!proto_get_id(f->root, "id", &f->id) || f->id == 0)
        f->why = "id is required: the id of a message";
}

bool proto_frame_parse(const char *data, size_t len, struct proto_frame *f, enum proto_error *err,
                       const char **why)
{
    memset(f, 0, sizeof(*f));
    f->root = proto_parse_object(data, len);
    if (!f->root) {
        *err = PROTO_ERR_BAD_JSON;
        *why = "the frame is not a JSON object (or is nested too deeply)";
        return false;
    }
    bool bad = false;
    const char *type = proto_get_string(f->root, "type", &bad);
    if (!type) {
        *err = PROTO_ERR_BAD_REQUEST;
        *why = "type is required and must be a string";
        return false;
    }
    for (size_t i = 1; i < sizeof(frame_names) / sizeof(frame_names[0]); i++)
        if (strcmp(type, frame_names[i]) == 0)
            f->type = (enum proto_frame_type)i;
    frame_ref(f);
    frame_room(f);
    switch (f->type) {
    case PROTO_FRAME_HELLO:
        f->token = proto_get_string(f->root, "token", &bad);
        f->name = proto_get_string(f->root, "name", &bad);
        break;
    case PROTO_FRAME_JOIN:
        frame_since(f);
        break;
    case PROTO_FRAME_SEND:
        f->text = proto_get_string(f->root, "text", &bad);
        if (!f->text)
            f->why = "text is required and must be a string";
        else if (!proto_get_id(f->root, "reply_to", &f->reply_to))
            f->why = "reply_to must be the id of a message";
        break;
    case PROTO_FRAME_EDIT:
    case PROTO_FRAME_DELETE:
    case PROTO_FRAME_REACT:
        frame_change(f);
        break;
    case PROTO_FRAME_READ:
        if (!proto_get_id(f->root, "id", &f->id) || f->id == 0)
            f->why = "id is required: the id read up to";
        break;
    default:
        break;
    }
    return true;
}

void proto_frame_dispose(struct proto_frame *f)
{
    cJSON_Delete(f->root);
    memset(f, 0, sizeof(*f));
}
