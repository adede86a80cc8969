/* broker_decode: the cluster backend's decoders of what it reads from Valkey,
 * an event published on turbochat:messages and an entry of a room's replay
 * window, into a chat_msg. Pure functions (no connection, no state), apart
 * from broker_valkey.c so that tests/fuzz/fuzz_broker.c can link them alone. */
#include "broker_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"
#include "valkey.h"

static bool reply_is(const struct valkey_reply *r, int type)
{
    return r && r->type == type;
}

/* The id of stream entry "<id>-0"; 0 when malformed. */
static uint64_t entry_id(const struct valkey_reply *r)
{
    if (!reply_is(r, VALKEY_REPLY_STRING))
        return 0;
    char *end;
    unsigned long long id = strtoull(r->str, &end, 10);
    return *end == '-' ? id : 0;
}

/* Set msg's extras from their JSON text; false when malformed. */
static bool apply_extras_text(struct chat_msg *msg, const char *json)
{
    cJSON *extras = proto_parse_object(json, strlen(json));
    bool ok = extras && proto_extras_apply(msg, extras);
    cJSON_Delete(extras);
    return ok;
}

bool broker__apply_fields(struct chat_msg *msg, const struct valkey_reply *fields)
{
    bool ok = true, seen_x = false;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const struct valkey_reply *k = fields->element[i], *v = fields->element[i + 1];
        if (!reply_is(k, VALKEY_REPLY_STRING) || !reply_is(v, VALKEY_REPLY_STRING))
            continue;
        char **target = strcmp(k->str, "u") == 0   ? &msg->user
                        : strcmp(k->str, "t") == 0 ? &msg->text
                        : strcmp(k->str, "r") == 0 ? &msg->ref
                                                   : NULL;
        if (target) {
            free(*target);
            *target = xstrdup(v->str);
        } else if (strcmp(k->str, "ts") == 0) {
            msg->ts = strtoll(v->str, NULL, 10);
        } else if (strcmp(k->str, "x") == 0) {
            /* once: applying extras again would leak the first ones */
            ok = !seen_x && apply_extras_text(msg, v->str) && ok;
            seen_x = true;
        }
    }
    return ok;
}

struct chat_msg *broker__decode_entry(const char *room, const struct valkey_reply *entry)
{
    if (!reply_is(entry, VALKEY_REPLY_ARRAY) || entry->elements != 2 ||
        !reply_is(entry->element[1], VALKEY_REPLY_ARRAY))
        return NULL;
    uint64_t id = entry_id(entry->element[0]);
    struct chat_msg *msg = xcalloc(1, sizeof(*msg));
    msg->room = xstrdup(room);
    msg->id = id;
    bool extras_ok = broker__apply_fields(msg, entry->element[1]);
    if (id == 0 || !msg->user || !msg->text || !extras_ok) {
        chat_msg_free(msg);
        return NULL;
    }
    return msg;
}

struct chat_msg *broker__decode_event(const char *buf, size_t len)
{
    cJSON *root = proto_parse_object(buf, len);
    if (!root)
        return NULL;
    bool bad = false;
    const char *room = proto_get_string(root, "room", &bad);
    const char *user = proto_get_string(root, "user", &bad);
    const char *text = proto_get_string(root, "text", &bad);
    const char *ref = proto_get_string(root, "ref", &bad);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    const cJSON *extras = cJSON_GetObjectItemCaseSensitive(root, "x");
    uint64_t id = 0;
    struct chat_msg *msg = NULL;
    if (!bad && room && user && text && proto_log_is_valid(room) && proto_get_id(root, "id", &id) &&
        id > 0 && cJSON_IsNumber(ts) && fabs(ts->valuedouble) <= PROTO_ID_MAX) {
        msg = chat_msg_create(room, user, text, ref);
        msg->id = id;
        msg->ts = (int64_t)ts->valuedouble;
        if (extras && !proto_extras_apply(msg, extras)) {
            chat_msg_free(msg);
            msg = NULL;
        }
    }
    cJSON_Delete(root);
    return msg;
}
