/* libFuzzer target for the cluster backend's decoders (app/broker_decode.c).
 * The first input byte picks the decoder: the JSON of an event received on
 * turbochat:messages, or an entry of a room's replay window as XRANGE returns
 * it, built from the rest: '\n'-separated parts, the first the entry id and
 * then field, value, field, value...; a part starting with '#' becomes an
 * integer reply and one starting with '~' a nil (Valkey never sends those
 * there, the decoder must still cope), and bit 1 of the first byte makes the
 * outer shape wrong. A decoded message must be one the rest of the server
 * can handle: every string set and valid where the code relies on it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "broker_internal.h"
#include "proto.h"
#include "util.h"
#include "valkey.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define PARTS_MAX 64

static void check_msg(const struct chat_msg *msg)
{
    CHECK(msg->room && msg->user && msg->text);
    CHECK(msg->id > 0);
    CHECK(msg->kind >= CHAT_MESSAGE && msg->kind < CHAT_KIND_COUNT);
    CHECK(msg->mention_count == 0 || msg->mentions != NULL);
    for (size_t i = 0; i < msg->mention_count; i++)
        CHECK(msg->mentions[i] != NULL);
    if (msg->kind == CHAT_REACT || msg->kind == CHAT_UNREACT)
        CHECK(msg->emoji != NULL);
    /* What the server does next with a received event: encode it, clone it. */
    size_t len;
    char *json = proto_encode_event(msg, &len);
    CHECK(json && strlen(json) == len);
    free(json);
    struct chat_msg *copy = chat_msg_clone(msg);
    CHECK(copy && strcmp(copy->text, msg->text) == 0);
    chat_msg_free(copy);
    struct cJSON *extras = proto_extras_object(msg);
    if (extras) {
        json = proto_encode_json(extras, &len);
        free(json);
        cJSON_Delete(extras);
    }
}

static struct valkey_reply *reply_new(int type)
{
    struct valkey_reply *r = xcalloc(1, sizeof(*r));
    r->type = type;
    return r;
}

static void reply_free(struct valkey_reply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->elements; i++)
        reply_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

static struct valkey_reply *part_reply(const char *p, size_t len)
{
    if (len > 0 && p[0] == '#') {
        struct valkey_reply *r = reply_new(VALKEY_REPLY_INTEGER);
        r->integer = (long long)len;
        return r;
    }
    if (len > 0 && p[0] == '~')
        return reply_new(VALKEY_REPLY_NIL);
    struct valkey_reply *r = reply_new(VALKEY_REPLY_STRING);
    r->str = xstrndup(p, len); /* as hiredis: NUL-terminated (stops at an inner NUL) */
    r->len = strlen(r->str);
    return r;
}

static void fuzz_entry(const char *data, size_t size, bool bad_shape)
{
    struct valkey_reply *parts[PARTS_MAX];
    size_t n = 0;
    for (size_t at = 0; at <= size && n < PARTS_MAX;) {
        const char *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) : size;
        parts[n++] = part_reply(data + at, end - at);
        at = end + 1;
    }
    struct valkey_reply *fields = reply_new(VALKEY_REPLY_ARRAY);
    fields->element = xcalloc(n, sizeof(*fields->element));
    for (size_t i = 1; i < n; i++)
        fields->element[fields->elements++] = parts[i];
    struct valkey_reply *entry = reply_new(VALKEY_REPLY_ARRAY);
    entry->element = xcalloc(3, sizeof(*entry->element));
    entry->element[entry->elements++] = parts[0];
    entry->element[entry->elements++] = fields;
    if (bad_shape)
        entry->element[entry->elements++] = reply_new(VALKEY_REPLY_NIL);
    struct chat_msg *msg = broker__decode_entry("general", entry);
    if (msg) {
        CHECK(!bad_shape);
        check_msg(msg);
        CHECK(strcmp(msg->room, "general") == 0);
    }
    chat_msg_free(msg);
    /* load_original's use: the fields onto an existing message. */
    struct chat_msg *original = chat_msg_create("general", "", "", NULL);
    broker__apply_fields(original, fields);
    CHECK(original->user && original->text);
    chat_msg_free(original);
    reply_free(entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        fuzz_entry((const char *)data + 1, size - 1, (data[0] & 2) != 0);
        return 0;
    }
    struct chat_msg *msg = broker__decode_event((const char *)data + 1, size - 1);
    if (msg) {
        check_msg(msg);
        CHECK(proto_log_is_valid(msg->room));
    }
    chat_msg_free(msg);
    return 0;
}
