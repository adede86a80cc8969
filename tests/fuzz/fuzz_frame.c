/* libFuzzer target for the client-frame handler's parse (proto_frame_parse,
 * which app/ws.c calls on every text message): the JSON of a frame to its
 * type and fields, each valid or with the refusal the session answers. The
 * whole input is one text message. The checks: a frame either parses or has
 * an error answer; every field the session would act on is valid; every
 * refusal it would answer encodes to an error frame of docs/PROTOCOL.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto.h"
#include "util.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* The error frame ws.c would send: valid JSON, type error, the code. */
static void check_answer(enum proto_error err, const char *why, const char *ref, const char *room)
{
    CHECK(why != NULL && why[0] != '\0');
    size_t len;
    char *json = proto_encode_error(proto_error_code(err), why, ref, room, &len);
    CHECK(json && strlen(json) == len);
    cJSON *obj = cJSON_ParseWithLength(json, len);
    CHECK(obj != NULL);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
    CHECK(cJSON_IsString(type) && strcmp(type->valuestring, "error") == 0);
    CHECK(cJSON_IsString(code) && strcmp(code->valuestring, proto_error_code(err)) == 0);
    cJSON_Delete(obj);
    free(json);
}

static bool is_string_field(const cJSON *root, const char *name)
{
    return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, name));
}

static void check_frame(const struct proto_frame *f)
{
    const char *why;
    /* ref: valid or refused, never both */
    CHECK(!(f->ref && f->ref_why));
    if (f->ref)
        CHECK(proto_ref_is_valid(f->ref, NULL));
    if (f->ref_why)
        check_answer(PROTO_ERR_BAD_REQUEST, f->ref_why, NULL, NULL);
    /* room: valid, or refused with bad_request or room_invalid */
    CHECK((f->room == NULL) == (f->room_why != NULL));
    if (f->room) {
        CHECK(proto_room_is_valid(f->room, &why));
    } else {
        CHECK(f->room_err == PROTO_ERR_BAD_REQUEST || f->room_err == PROTO_ERR_ROOM_INVALID);
        check_answer(f->room_err, f->room_why, f->ref, NULL);
    }
    if (f->why)
        check_answer(PROTO_ERR_BAD_REQUEST, f->why, f->ref, f->room);
    switch (f->type) {
    case PROTO_FRAME_SEND:
        if (!f->why) {
            CHECK(f->text != NULL);
            CHECK(f->reply_to <= (uint64_t)PROTO_ID_MAX);
        } else {
            CHECK(!f->text || f->reply_to == 0);
        }
        break;
    case PROTO_FRAME_EDIT:
    case PROTO_FRAME_DELETE:
    case PROTO_FRAME_REACT:
        if (!f->why) {
            CHECK(f->id >= 1 && f->id <= (uint64_t)PROTO_ID_MAX);
            CHECK(f->type != PROTO_FRAME_EDIT || f->text);
            CHECK(f->type != PROTO_FRAME_REACT || f->emoji);
            CHECK(f->type != PROTO_FRAME_REACT ||
                  cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(f->root, "add")));
        }
        break;
    case PROTO_FRAME_JOIN:
        if (!f->why && f->has_since)
            CHECK(f->since <= (uint64_t)PROTO_ID_MAX);
        else
            CHECK(f->since == 0);
        break;
    case PROTO_FRAME_READ:
        CHECK(f->why ? f->id == 0 : f->id >= 1 && f->id <= (uint64_t)PROTO_ID_MAX);
        break;
    case PROTO_FRAME_HELLO:
        CHECK(!f->why);
        CHECK(!f->name || is_string_field(f->root, "name"));
        if (f->name) { /* what hello_user does next without auth */
            char *user = xstrdup(f->name);
            if (!proto_user_normalize(user, &why))
                check_answer(PROTO_ERR_BAD_REQUEST, why, NULL, NULL);
            free(user);
        }
        break;
    default:
        CHECK(!f->why);
        break;
    }
    if (f->text) { /* what chat does with the text of a send or an edit */
        char *text = xstrdup(f->text);
        if (!proto_text_normalize(text, 4000, &why))
            check_answer(PROTO_ERR_TEXT_INVALID, why, f->ref, f->room);
        free(text);
    }
    if (f->emoji && !proto_emoji_is_valid(f->emoji, &why))
        check_answer(PROTO_ERR_BAD_REQUEST, why, f->ref, f->room);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: the loop hands ws.c the message without a NUL. */
    char *msg = malloc(size ? size : 1);
    CHECK(msg != NULL);
    memcpy(msg, data, size);
    struct proto_frame f;
    enum proto_error err = PROTO_ERR_INTERNAL;
    const char *why = NULL;
    if (proto_frame_parse(msg, size, &f, &err, &why)) {
        CHECK(f.root != NULL && cJSON_IsObject(f.root));
        CHECK(is_string_field(f.root, "type"));
        check_frame(&f);
    } else {
        CHECK(err == PROTO_ERR_BAD_JSON || err == PROTO_ERR_BAD_REQUEST);
        check_answer(err, why, NULL, NULL);
    }
    proto_frame_dispose(&f);
    CHECK(f.root == NULL);
    free(msg);
    return 0;
}
