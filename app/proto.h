/* proto: the wire contract of docs/PROTOCOL.md in C: the chat message,
 * validation of names and text, safe JSON parsing and frame encoding. */
#ifndef TURBOCHAT_PROTO_H
#define TURBOCHAT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define PROTO_VERSION 2
#define PROTO_ROOM_MAX 64            /* characters of a room name */
#define PROTO_DEFAULT_ROOM "general" /* the room everyone starts in */
#define PROTO_USER_MAX 32            /* code points of a user name */
#define PROTO_USER_MAX_BYTES 128
#define PROTO_REF_MAX 64 /* code points of a client ref */
#define PROTO_REF_MAX_BYTES 256
#define PROTO_JSON_MAX_DEPTH 16         /* deeper JSON is refused before parsing */
#define PROTO_ID_MAX 9007199254740991.0 /* 2^53 - 1: the largest id JSON carries exactly */
#define PROTO_EMOJI_MAX 16              /* code points of one emoji */
#define PROTO_EMOJI_MAX_BYTES 64
#define PROTO_QUOTE_MAX 100   /* code points of a reply's quote of the original */
#define PROTO_MENTIONS_MAX 20 /* distinct names recorded per message */

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

/* What an event of a room's log is: a message, a change of one, or (in the
 * logs whose names start with '.', which no client can name) a change of the
 * cluster's accounts and sessions, carried as a JSON object in text. */
enum chat_kind {
    CHAT_MESSAGE = 0,
    CHAT_EDIT,
    CHAT_DELETE,
    CHAT_REACT,
    CHAT_UNREACT,
    CHAT_ACCOUNT,     /* an account made or changed: the whole record */
    CHAT_SESSION,     /* a session began */
    CHAT_SIGNOUT,     /* a session ended */
    CHAT_SIGNOUT_ALL, /* every earlier session of an account ended */
    CHAT_INVITE,      /* an admin made an invite code */
    CHAT_ROOM,        /* a room's first event: public or private, a DM */
    CHAT_MEMBER,      /* a member of a private room added, removed or promoted */
    CHAT_CLOSED,      /* an admin closed the room */
    CHAT_READ,        /* an account read a room up to an id (its read log) */
    CHAT_MUTE,        /* a moderator muted a user in the room */
    CHAT_UNMUTE,      /* ... and lifted it */
    CHAT_BAN,         /* a moderator banned a user from the room */
    CHAT_UNBAN,       /* ... and lifted it */
    CHAT_RETENTION,   /* a moderator set how long the room's messages are kept */
    CHAT_KIND_COUNT,
};

/* The log of an account's read state: ".read." and a hash of its name. */
#define CHAT_READ_LOG_PREFIX ".read."

/* True for a moderation event: its record names the user (member). */
static inline bool chat_kind_is_sanction(int kind)
{
    return kind >= CHAT_MUTE && kind <= CHAT_UNBAN;
}

/* True for the kinds of a room's own log that change who may be in it (or
 * speak there): their record is the JSON object in text. */
static inline bool chat_kind_is_room_change(int kind)
{
    return kind == CHAT_ROOM || kind == CHAT_MEMBER || kind == CHAT_CLOSED ||
           chat_kind_is_sanction(kind);
}

/* True for the kinds retention removes: messages and their changes. The
 * others make a room's state and are kept forever. */
static inline bool chat_kind_expires(int kind)
{
    return kind >= CHAT_MESSAGE && kind <= CHAT_UNREACT;
}

/* The log of accounts, sessions and invites: one for the cluster, so that
 * its events (the first account's above all) have one order everywhere. */
#define CHAT_ACCOUNTS_LOG ".accounts"

/* True for the kinds that change a message (they have a target). */
static inline bool chat_kind_is_change(int kind)
{
    return kind >= CHAT_EDIT && kind <= CHAT_UNREACT;
}

/* One user's reaction to a message. */
struct chat_reaction {
    char *emoji;
    char *user;
    uint64_t event_id; /* the react that added it */
};

/* One event of a room's log: a chat message (kind CHAT_MESSAGE) or a change
 * of the message `target`. Strings are owned by the event. */
struct chat_msg {
    uint64_t id; /* per-room, from 1; 0 until the broker assigns it */
    int64_t ts;  /* ms since epoch, set when accepted */
    char *room;
    char *user;  /* the author; of a change: who made it */
    char *text;  /* "" for a delete or a reaction; JSON for an account event */
    char *ref;   /* NULL when the client gave none */
    char *claim; /* a name only this event may take in its log (NULL: none): an
                  * event whose claim another took is refused (BROKER_CLAIMED) */
    enum chat_kind kind;
    uint64_t target; /* a change: the message it changes */
    char *emoji;     /* CHAT_REACT, CHAT_UNREACT */
    /* A message that replies: the original's id (0: none), with its author and
     * first words when the reply was accepted. */
    uint64_t reply_to;
    char *reply_user;
    char *reply_text;
    char **mentions; /* user names the text mentions */
    size_t mention_count;
    /* A message as the log holds it now (not carried by the broker). */
    int64_t edited_ts;               /* 0: never edited */
    char *deleted_by;                /* NULL: not deleted */
    struct chat_reaction *reactions; /* present ones, in the order of the wire */
    size_t reaction_count;
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
    X(EDIT_WINDOW, "edit_window", 403)                                                             \
    X(TOO_MANY_REACTIONS, "too_many_reactions", 409)                                               \
    X(NAME_TAKEN, "name_taken", 409)                                                               \
    X(EXISTS, "exists", 409)                                                                       \
    X(SIGNUP_CLOSED, "signup_closed", 403)                                                         \
    X(INVITE_INVALID, "invite_invalid", 403)                                                       \
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
/* Append a copy of name to msg->mentions, or of (emoji, user) to msg->reactions. */
void chat_msg_add_mention(struct chat_msg *msg, const char *name);
void chat_msg_add_reaction(struct chat_msg *msg, const char *emoji, const char *user,
                           uint64_t event_id);

/* The wire name of kind ("message", "edit", ...), and back; false when unknown. */
const char *chat_kind_name(enum chat_kind kind);
bool chat_kind_parse(const char *name, enum chat_kind *kind);

/* Validation; each returns true when the value follows PROTOCOL.md and
 * otherwise, where why is not NULL, sets *why to the reason for the client (a
 * static string). */
bool proto_room_is_valid(const char *room, const char **why);
/* A room name, or the name of one of the server's own logs: '.' and then a
 * room name (no client can name those). */
bool proto_log_is_valid(const char *log);
/* Trims white space in place first; name must be valid UTF-8, hold no
 * control, format, zero-width or bidi character and a visible one. */
bool proto_user_normalize(char *name, const char **why);
bool proto_ref_is_valid(const char *ref, const char **why);
/* Trims in place, then checks UTF-8, control characters and 1..max_chars code
 * points. On false, *why names the problem (a static string). */
bool proto_text_normalize(char *text, int max_chars, const char **why);
/* One emoji as PROTOCOL.md allows it. */
bool proto_emoji_is_valid(const char *emoji, const char **why);
/* The quote of a reply: the first PROTO_QUOTE_MAX code points of text, cut at
 * a word where it can be, with "…" when cut. The caller frees it. */
char *proto_quote(const char *text);

/* Parse untrusted JSON: refuses nesting deeper than PROTO_JSON_MAX_DEPTH
 * (cJSON recurses on small worker stacks) and anything that is not an object.
 * Returns NULL on failure. Free with cJSON_Delete. Any thread. */
struct cJSON *proto_parse_object(const char *buf, size_t len);

/* String field of obj, NULL when absent; *bad set when present but not a string. */
const char *proto_get_string(const struct cJSON *obj, const char *name, bool *bad);

/* Encode frames and REST bodies. Each returns a malloc'd NUL-terminated
 * string the caller frees; *len receives strlen when len is not NULL. */
/* An event as a cJSON object: a message as the `message` frame and REST
 * message object, a change as the `update` frame; with "type" when with_type.
 * Free with cJSON_Delete. */
struct cJSON *proto_event_object(const struct chat_msg *msg, bool with_type);
/* The event as its frame: `message` or `update`. */
char *proto_encode_event(const struct chat_msg *msg, size_t *len);
/* The same object as proto_event_object, appended to b as JSON text; a
 * message is written without building a cJSON tree (the hot paths). */
struct util_buf;
void proto_append_event_json(struct util_buf *b, const struct chat_msg *msg, bool with_type);
/* s as a JSON string, quoted and escaped as cJSON does. */
void proto_append_json_string(struct util_buf *b, const char *s);
/* The `mention` frame of a message. */
char *proto_encode_mention(const struct chat_msg *msg, size_t *len);

/* What the broker carries of an event beyond room, id, user, text, ts and ref:
 * kind, target, emoji, the reply and the mentions. NULL for a plain message.
 * Free with cJSON_Delete. */
struct cJSON *proto_extras_object(const struct chat_msg *msg);
/* Set those fields of msg from such an object; false when it is malformed. */
bool proto_extras_apply(struct chat_msg *msg, const struct cJSON *extras);

/* A positive integer id field of obj (at most PROTO_ID_MAX): 0 when absent or
 * null; false when present but not such an integer. */
bool proto_get_id(const struct cJSON *obj, const char *name, uint64_t *out);
/* A whole-number field of obj within +-PROTO_ID_MAX (the integers JSON
 * carries exactly), such as a time in ms: 0 when absent or null; false when
 * present but not such a number, which no cast may then see (1e300 to an
 * integer is undefined). */
bool proto_get_int(const struct cJSON *obj, const char *name, int64_t *out);
char *proto_encode_error(const char *code, const char *message, const char *ref, const char *room,
                         size_t *len);
char *proto_encode_ack(const struct chat_msg *msg, size_t *len);
char *proto_encode_json(const struct cJSON *obj, size_t *len);

/* ---------------------------------------------------------------- client frames */

/* The types of the client frames of docs/PROTOCOL.md. */
enum proto_frame_type {
    PROTO_FRAME_UNKNOWN = 0, /* a type string no frame has */
    PROTO_FRAME_HELLO,
    PROTO_FRAME_JOIN,
    PROTO_FRAME_LEAVE,
    PROTO_FRAME_SEND,
    PROTO_FRAME_EDIT,
    PROTO_FRAME_DELETE,
    PROTO_FRAME_REACT,
    PROTO_FRAME_TYPING,
    PROTO_FRAME_PING,
    PROTO_FRAME_READ,
};

/* A client frame taken apart without any session state. Each field is as the
 * frame has it (NULL or 0 when absent), with the refusal a session answers
 * when, in its own order of checks, it comes to that field. Strings point
 * into root. */
struct proto_frame {
    struct cJSON *root; /* the frame; proto_frame_dispose frees it */
    enum proto_frame_type type;
    const char *ref;           /* NULL: none */
    const char *ref_why;       /* set: ref is refused (bad_request) */
    const char *room;          /* valid, or NULL when room_why is set */
    enum proto_error room_err; /* with room_why: bad_request or room_invalid */
    const char *room_why;      /* set: room is absent or refused */
    const char *name;          /* hello: not normalized */
    const char *token;         /* hello */
    const char *text;          /* send, edit: not normalized */
    const char *emoji;         /* react */
    bool add;                  /* react */
    uint64_t id;               /* edit, delete, react, read */
    uint64_t reply_to;         /* send; 0: not a reply */
    bool has_since;            /* join */
    uint64_t since;
    const char *why; /* set: a field of this type of frame is refused (bad_request) */
};

/* Parse one client text message into f: true, or false with *err
 * (bad_json or bad_request) and *why the answer. Dispose of f either way
 * with proto_frame_dispose. Any thread. */
bool proto_frame_parse(const char *data, size_t len, struct proto_frame *f, enum proto_error *err,
                       const char **why);
void proto_frame_dispose(struct proto_frame *f);

#endif
