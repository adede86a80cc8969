/* rooms: the rules read this node's store, which every node keeps alike;
 * each change is an event of the room's own log, published and applied by
 * every store (store.c, migrations/0004_rooms.sql). A room is made once: its
 * first event claims the name where ids are given out. */
#define _GNU_SOURCE
#include "rooms.h"

#include <cjson/cJSON.h>
#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "broker.h"
#include "config.h"
#include "store.h"
#include "util.h"

#define ROOM_CLAIM "room"

struct rooms {
    const struct config *config;
    struct store *store;
    struct broker *broker;
};

struct rooms *rooms_create(const struct config *config, struct store *store, struct broker *broker)
{
    struct rooms *rooms = xcalloc(1, sizeof(*rooms));
    rooms->config = config;
    rooms->store = store;
    rooms->broker = broker;
    return rooms;
}

void rooms_free(struct rooms *rooms)
{
    free(rooms);
}

/* A room exists when it was made, is general, or has events from before
 * rooms were made (a deployment that ran with auth off). */
static bool room_exists(struct rooms *rooms, const char *room, struct store_room_info *info)
{
    uint64_t last = 0;
    if (store_room_info(rooms->store, room, info) == 0)
        return true;
    *info = (struct store_room_info){0};
    return strcmp(room, PROTO_DEFAULT_ROOM) == 0 ||
           (store_last_id(rooms->store, room, &last) == 0 && last > 0);
}

static bool is_member(struct rooms *rooms, const char *room, const char *user, bool *owner)
{
    char *role = NULL;
    bool member = store_member_role(rooms->store, room, user, &role) == 0;
    if (owner)
        *owner = member && strcmp(role, "owner") == 0;
    free(role);
    return member;
}

static bool may_enter(struct rooms *rooms, const char *room, const char *user)
{
    if (rooms->config->auth != CONFIG_AUTH_ACCOUNTS)
        return true;
    struct store_room_info info;
    if (!room_exists(rooms, room, &info) || info.closed)
        return false;
    return !info.is_private || is_member(rooms, room, user, NULL);
}

/* The sanctions part of rooms_may_use. */
static bool sanctions_allow(struct rooms *rooms, const char *room, const struct auth_claims *claims,
                            enum rooms_use use, enum proto_error *err, char *why)
{
    if (rooms->config->auth == CONFIG_AUTH_OFF || !claims || claims->role == AUTH_ROLE_ADMIN)
        return true;
    struct store_sanction sanction;
    if (store_sanction(rooms->store, room, claims->sub, &sanction) < 0) {
        *err = PROTO_ERR_UNAVAILABLE;
        snprintf(why, ROOMS_WHY_MAX, "not possible now; retry");
        return false;
    }
    *err = PROTO_ERR_FORBIDDEN;
    if (sanction.banned)
        snprintf(why, ROOMS_WHY_MAX, "you are banned from %s", room);
    else if (use == ROOMS_SPEAK && sanction.muted)
        snprintf(why, ROOMS_WHY_MAX, "you are muted in %s", room);
    else
        return true;
    return false;
}

bool rooms_may_use(struct rooms *rooms, const char *room, const struct auth_claims *claims,
                   enum rooms_use use, enum proto_error *err, char *why)
{
    if (claims && !auth_room_allowed(claims, room)) {
        *err = PROTO_ERR_FORBIDDEN;
        snprintf(why, ROOMS_WHY_MAX, "the token does not allow this room");
        return false;
    }
    if (!may_enter(rooms, room, claims ? claims->sub : NULL)) {
        *err = PROTO_ERR_NOT_FOUND;
        snprintf(why, ROOMS_WHY_MAX, "no such room");
        return false;
    }
    return sanctions_allow(rooms, room, claims, use, err, why);
}

void rooms_keep_mentions_of_members(struct rooms *rooms, struct chat_msg *msg)
{
    size_t kept = 0;
    for (size_t i = 0; i < msg->mention_count; i++) {
        if (may_enter(rooms, msg->room, msg->mentions[i]))
            msg->mentions[kept++] = msg->mentions[i];
        else
            free(msg->mentions[i]);
    }
    msg->mention_count = kept;
}

/* Publish the first event of room; members (may be NULL) for a DM. */
static int make_room(struct rooms *rooms, const char *room, const char *creator, bool is_private,
                     cJSON *members, struct chat_refusal *refusal)
{
    struct store_room_info info;
    if (room_exists(rooms, room, &info)) {
        cJSON_Delete(members);
        return chat_refused(refusal, PROTO_ERR_EXISTS, "a room of this name exists", -EEXIST);
    }
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddBoolToObject(rec, "private", is_private);
    cJSON_AddBoolToObject(rec, "dm", members != NULL);
    if (members)
        cJSON_AddItemToObject(rec, "members", members);
    int rc = broker_publish_record(rooms->broker, room, CHAT_ROOM, creator, rec, ROOM_CLAIM);
    if (rc == -TC_ECLAIMED)
        return chat_refused(refusal, PROTO_ERR_EXISTS, "a room of this name exists", rc);
    if (rc < 0)
        return chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "the room could not be made now", rc);
    return 0;
}

int rooms_make(struct rooms *rooms, const char *room, const char *creator, bool is_private,
               struct chat_refusal *refusal)
{
    const char *why;
    if (!proto_room_is_valid(room, &why))
        return chat_refused(refusal, PROTO_ERR_ROOM_INVALID, why, -EINVAL);
    if (strncmp(room, "dm-", 3) == 0)
        return chat_refused(refusal, PROTO_ERR_ROOM_INVALID, "names starting with dm- are for DMs",
                            -EINVAL);
    return make_room(rooms, room, creator, is_private, NULL, refusal);
}

int rooms_set_member(struct rooms *rooms, const char *room, const char *actor, const char *member,
                     const char *role, bool present, struct chat_refusal *refusal)
{
    struct store_room_info info;
    bool owner = false;
    if (!room_exists(rooms, room, &info) || info.closed ||
        (info.is_private && !is_member(rooms, room, actor, &owner)))
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no such room", -ENOENT);
    if (!info.is_private || info.dm)
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST,
                            "only a private room that is no DM has members to change", -EINVAL);
    bool self = strcasecmp(actor, member) == 0;
    if (!owner && !(self && !present))
        return chat_refused(refusal, PROTO_ERR_FORBIDDEN, "only an owner may change the members",
                            -EPERM);
    if (strcmp(role, "owner") != 0 && strcmp(role, "member") != 0)
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "role must be member or owner",
                            -EINVAL);
    struct store_account acc;
    if (store_get_account(rooms->store, member, &acc) != 0)
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no such account", -ENOENT);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "member", acc.name);
    cJSON_AddStringToObject(rec, "role", role);
    cJSON_AddBoolToObject(rec, "present", present);
    store_account_dispose(&acc);
    int rc = broker_publish_record(rooms->broker, room, CHAT_MEMBER, actor, rec, NULL);
    return rc < 0 ? chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "not possible now; retry", rc) : 0;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* prefix and the first 24 hex digits of the SHA-256 of text: a log name. */
static char *hashed_name(const char *prefix, const char *text, size_t len)
{
    unsigned char digest[32];
    unsigned int n = 0;
    EVP_Digest(text, len, digest, &n, EVP_sha256(), NULL);
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "%s", prefix);
    for (int i = 0; i < 12; i++)
        util_buf_appendf(&buf, "%02x", digest[i]);
    return util_buf_take(&buf, NULL);
}

/* "dm-" and 24 hex digits of SHA-256 over the sorted names, one per line. */
static char *dm_room_name(char **names, size_t count)
{
    qsort(names, count, sizeof(*names), compare_strings);
    struct util_buf buf;
    util_buf_init(&buf);
    for (size_t i = 0; i < count; i++)
        util_buf_appendf(&buf, "%s\n", names[i]);
    char *room = hashed_name("dm-", buf.data, buf.len);
    util_buf_dispose(&buf);
    return room;
}

char *rooms_read_log(const char *user)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(user, key, sizeof(key));
    return hashed_name(CHAT_READ_LOG_PREFIX, key, strlen(key));
}

int rooms_open_dm(struct rooms *rooms, const char *creator, char *const *others, size_t count,
                  char **room, struct chat_refusal *refusal)
{
    *room = NULL;
    if (count < 1 || count > ROOMS_DM_MAX - 1)
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "a DM is with 1 to 7 other people",
                            -EINVAL);
    char *keys[ROOMS_DM_MAX];
    cJSON *members = cJSON_CreateArray();
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i <= count && rc == 0; i++) {
        struct store_account acc;
        const char *name = i < count ? others[i] : creator;
        if (store_get_account(rooms->store, name, &acc) != 0) {
            rc = chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no such account", -ENOENT);
            break;
        }
        char key[PROTO_USER_MAX_BYTES + 1];
        store_name_key(acc.name, key, sizeof(key));
        bool repeated = false;
        for (size_t j = 0; j < n; j++)
            repeated = repeated || strcmp(keys[j], key) == 0;
        if (!repeated) {
            keys[n++] = xstrdup(key);
            cJSON_AddItemToArray(members, cJSON_CreateString(acc.name));
        }
        store_account_dispose(&acc);
    }
    if (rc == 0 && n < 2)
        rc = chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "a DM needs someone else", -EINVAL);
    if (rc == 0) {
        *room = dm_room_name(keys, n);
        struct store_room_info info;
        if (!room_exists(rooms, *room, &info)) {
            rc = make_room(rooms, *room, creator, true, members, refusal);
            members = NULL;
            if (rc == -TC_ECLAIMED || rc == -EEXIST)
                rc = 0; /* the others made it at the same moment */
        }
    }
    cJSON_Delete(members);
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    if (rc < 0) {
        free(*room);
        *room = NULL;
    }
    return rc;
}

int rooms_close(struct rooms *rooms, const char *room, const char *actor,
                struct chat_refusal *refusal)
{
    struct store_room_info info;
    if (!room_exists(rooms, room, &info) || info.closed)
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no such room", -ENOENT);
    int rc =
        broker_publish_record(rooms->broker, room, CHAT_CLOSED, actor, cJSON_CreateObject(), NULL);
    return rc < 0 ? chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "not possible now; retry", rc) : 0;
}

/* ---------------------------------------------------------------- moderation
 * Mutes and bans are events of the room's own log, like its members; each
 * store keeps who is muted and banned (migrations/0007_moderation.sql). */

bool rooms_is_moderator(struct rooms *rooms, const char *room, const struct auth_claims *claims)
{
    if (rooms->config->auth == CONFIG_AUTH_OFF || !claims || !claims->sub)
        return false;
    if (auth_is_moderator(claims, room))
        return true;
    return rooms->config->auth == CONFIG_AUTH_ACCOUNTS &&
           store_is_room_owner(rooms->store, room, claims->sub) == 1;
}

/* The name user as the record will have it, into name (PROTO_USER_MAX_BYTES
 * + 1 bytes): an account's spelling under auth = accounts; false after
 * filling the refusal. */
static bool sanction_target(struct rooms *rooms, const char *user, char *name,
                            struct chat_refusal *refusal)
{
    const char *why;
    char *copy = xstrdup(user);
    bool valid = proto_user_normalize(copy, &why) && strlen(copy) <= PROTO_USER_MAX_BYTES;
    if (valid)
        snprintf(name, PROTO_USER_MAX_BYTES + 1, "%s", copy);
    free(copy);
    if (!valid)
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "the user is no valid name", false);
    if (rooms->config->auth != CONFIG_AUTH_ACCOUNTS)
        return true;
    struct store_account acc;
    if (store_get_account(rooms->store, name, &acc) != 0)
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no such account", false);
    bool admin = acc.role && strcmp(acc.role, "admin") == 0;
    snprintf(name, PROTO_USER_MAX_BYTES + 1, "%s", acc.name);
    store_account_dispose(&acc);
    if (admin)
        return chat_refused(refusal, PROTO_ERR_FORBIDDEN, "an admin cannot be muted or banned",
                            false);
    return true;
}

int rooms_sanction(struct rooms *rooms, const char *room, const struct auth_claims *claims,
                   const char *user, enum chat_kind kind, struct chat_msg **event,
                   struct chat_refusal *refusal)
{
    char name[PROTO_USER_MAX_BYTES + 1];
    *event = NULL;
    assert(chat_kind_is_sanction(kind));
    if (rooms->config->auth == CONFIG_AUTH_OFF)
        return chat_refused(refusal, PROTO_ERR_FORBIDDEN,
                            "with auth = off nobody is a moderator: nobody may mute or ban",
                            -EPERM);
    if (!rooms_is_moderator(rooms, room, claims))
        return chat_refused(refusal, PROTO_ERR_FORBIDDEN,
                            "only a moderator of the room may mute or ban", -EPERM);
    if (!sanction_target(rooms, user, name, refusal))
        return -EINVAL;
    if (strcasecmp(name, claims->sub) == 0)
        return chat_refused(refusal, PROTO_ERR_FORBIDDEN,
                            "a moderator cannot mute or ban themselves", -EPERM);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "member", name);
    char *json = proto_encode_json(rec, NULL);
    cJSON_Delete(rec);
    struct chat_msg *ev = chat_msg_create(room, claims->sub, json, NULL);
    free(json);
    ev->kind = kind;
    int rc = broker_publish_wait(rooms->broker, ev, event);
    if (rc < 0)
        return chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "not possible now; retry", rc);
    return 0;
}

static cJSON *sanction_entry(const char *user, const char *by, int64_t ts)
{
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "user", user);
    cJSON_AddStringToObject(entry, "by", by ? by : "");
    cJSON_AddNumberToObject(entry, "ts", (double)ts);
    return entry;
}

struct cJSON *rooms_sanctions(struct rooms *rooms, const char *room,
                              const struct auth_claims *claims, struct chat_refusal *refusal)
{
    if (!rooms_is_moderator(rooms, room, claims)) {
        chat_refused(refusal, PROTO_ERR_FORBIDDEN, "only a moderator of the room may see this", 0);
        return NULL;
    }
    struct store_sanction_row *rows;
    size_t count;
    if (store_list_sanctions(rooms->store, room, &rows, &count) < 0) {
        chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "not possible now; retry", 0);
        return NULL;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "room", room);
    cJSON *muted = cJSON_AddArrayToObject(obj, "muted");
    cJSON *banned = cJSON_AddArrayToObject(obj, "banned");
    for (size_t i = 0; i < count; i++) {
        if (rows[i].muted)
            cJSON_AddItemToArray(muted,
                                 sanction_entry(rows[i].user, rows[i].mute_by, rows[i].mute_ts));
        if (rows[i].banned)
            cJSON_AddItemToArray(banned,
                                 sanction_entry(rows[i].user, rows[i].ban_by, rows[i].ban_ts));
    }
    store_free_sanctions(rows, count);
    return obj;
}

int rooms_set_retention(struct rooms *rooms, const char *room, const char *actor, bool has_days,
                        double days, struct chat_refusal *refusal)
{
    if (has_days && !(days >= 0 && days <= ROOMS_RETENTION_DAYS_MAX))
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST,
                            "retention_days must be a number from 0 to 36500, or null", -EINVAL);
    cJSON *rec = cJSON_CreateObject();
    if (has_days)
        cJSON_AddNumberToObject(rec, "days", days);
    else
        cJSON_AddNullToObject(rec, "days");
    cJSON_AddStringToObject(rec, "by", actor);
    int rc = broker_publish_record(rooms->broker, room, CHAT_RETENTION, actor, rec, NULL);
    return rc < 0 ? chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "not possible now; retry", rc) : 0;
}
