/* Unit tests for proto: the validation rules of docs/PROTOCOL.md and safe
 * JSON parsing and encoding. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"
#include "test_help.h"

static int test_room_names(void)
{
    TEST_ASSERT(proto_room_is_valid("general", NULL));
    TEST_ASSERT(proto_room_is_valid("a.b-c_D9", NULL));
    TEST_ASSERT(!proto_room_is_valid("", NULL));
    TEST_ASSERT(!proto_room_is_valid(".hidden", NULL));
    TEST_ASSERT(!proto_room_is_valid("with space", NULL));
    TEST_ASSERT(!proto_room_is_valid("slash/room", NULL));
    TEST_ASSERT(!proto_room_is_valid("caf\xc3\xa9", NULL));
    char room[66];
    memset(room, 'r', 64);
    room[64] = '\0';
    TEST_ASSERT(proto_room_is_valid(room, NULL));
    room[64] = 'r';
    room[65] = '\0';
    TEST_ASSERT(!proto_room_is_valid(room, NULL));
    return 0;
}

static int test_user_names(void)
{
    char name[200];
    strcpy(name, "  alice \n");
    TEST_ASSERT(proto_user_normalize(name, NULL));
    TEST_ASSERT_STR(name, "alice");
    strcpy(name, "   ");
    TEST_ASSERT(!proto_user_normalize(name, NULL));
    strcpy(name, "bad\x01name");
    TEST_ASSERT(!proto_user_normalize(name, NULL));
    strcpy(name, "c1\xc2\x85x"); /* U+0085, a C1 control */
    TEST_ASSERT(!proto_user_normalize(name, NULL));
    /* 32 code points of 2 bytes each are fine, 33 are not. */
    name[0] = '\0';
    for (int i = 0; i < 32; i++)
        strcat(name, "\xc3\xa9");
    TEST_ASSERT(proto_user_normalize(name, NULL));
    strcat(name, "\xc3\xa9");
    TEST_ASSERT(!proto_user_normalize(name, NULL));
    strcpy(name, "\xff\xfe");
    TEST_ASSERT(!proto_user_normalize(name, NULL));
    return 0;
}

/* One name must not pose as another: invisible, zero-width, bidi and format
 * characters are refused, and a name needs a visible character. */
static int test_user_names_hidden_characters(void)
{
    static const char *const hidden[] = {
        "\xe2\x80\xae"
        "evil", /* U+202E RIGHT-TO-LEFT OVERRIDE */
        "a\xe2\x80\xaa"
        "b", /* U+202A LEFT-TO-RIGHT EMBEDDING */
        "a\xe2\x81\xa6"
        "b", /* U+2066 LEFT-TO-RIGHT ISOLATE */
        "a\xe2\x81\xa9"
        "b", /* U+2069 POP DIRECTIONAL ISOLATE */
        "al\xe2\x80\x8b"
        "ice", /* U+200B ZERO WIDTH SPACE */
        "al\xe2\x80\x8d"
        "ice",           /* U+200D ZERO WIDTH JOINER */
        "a\xe2\x80\x8f", /* U+200F RIGHT-TO-LEFT MARK */
        "a\xe2\x81\xa0"
        "b", /* U+2060 WORD JOINER */
        "\xef\xbb\xbf"
        "bob", /* U+FEFF BOM */
        "a\xc2\xad"
        "b", /* U+00AD SOFT HYPHEN */
        "a\xcd\x8f"
        "b",            /* U+034F COMBINING GRAPHEME JOINER */
        "\xe3\x85\xa4", /* U+3164 HANGUL FILLER */
        "a\xe2\x80\xa8"
        "b",                 /* U+2028 LINE SEPARATOR */
        "a\xf3\xa0\x80\x81", /* U+E0001 LANGUAGE TAG */
        "a\xd8\x9c"
        "b", /* U+061C ARABIC LETTER MARK */
    };
    char name[64];
    const char *why;
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        strcpy(name, hidden[i]);
        why = NULL;
        if (proto_user_normalize(name, &why))
            fprintf(stderr, "accepted hidden name #%zu\n", i);
        TEST_ASSERT(!proto_user_normalize(name, &why));
        TEST_ASSERT_STR(why, "name must not hold invisible, zero-width, bidi or format characters");
    }
    static const char *const blank[] = {
        "\xc2\xa0",                 /* NO-BREAK SPACE */
        "\xe3\x80\x80\xe3\x80\x80", /* IDEOGRAPHIC SPACE x2 */
        "\xe2\xa0\x80",             /* BRAILLE PATTERN BLANK */
        "\xef\xb8\x8f",             /* VARIATION SELECTOR-16 alone */
    };
    for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        strcpy(name, blank[i]);
        TEST_ASSERT(!proto_user_normalize(name, &why));
        TEST_ASSERT_STR(why, "name must have a visible character");
    }
    static const char *const fine[] = {
        "Zo\xc3\xab",                   /* Zoë */
        "\xd7\xa9\xd7\xa8\xd7\x94",     /* Hebrew, right to left by itself */
        "\xe2\x9d\xa4\xef\xb8\x8f bob", /* ❤️ bob: VS16 after a symbol */
        "ana maria",
        "\xe5\xb1\xb1\xe7\x94\xb0", /* 山田 */
    };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        strcpy(name, fine[i]);
        TEST_ASSERT(proto_user_normalize(name, NULL));
        TEST_ASSERT_STR(name, fine[i]);
    }
    return 0;
}

static int test_text_rules(void)
{
    const char *why = NULL;
    char text[20000];
    strcpy(text, " \t hello\n\tworld \r\n");
    TEST_ASSERT(proto_text_normalize(text, 4000, &why));
    TEST_ASSERT_STR(text, "hello\n\tworld");
    strcpy(text, " \n ");
    TEST_ASSERT(!proto_text_normalize(text, 4000, &why));
    TEST_ASSERT_STR(why, "text is empty");
    strcpy(text, "bell\x07");
    TEST_ASSERT(!proto_text_normalize(text, 4000, &why));
    TEST_ASSERT_STR(why, "text contains a control character");
    strcpy(text, "bad \xc0\xaf utf8");
    TEST_ASSERT(!proto_text_normalize(text, 4000, &why));
    TEST_ASSERT_STR(why, "text is not valid UTF-8");
    /* The limit counts code points, not bytes: 4000 three-byte characters pass. */
    text[0] = '\0';
    for (int i = 0; i < 4000; i++)
        memcpy(text + i * 3, "\xe2\x82\xac", 4);
    TEST_ASSERT(proto_text_normalize(text, 4000, &why));
    strcat(text, "x");
    TEST_ASSERT(!proto_text_normalize(text, 4000, &why));
    TEST_ASSERT_STR(why, "text is longer than the limit");
    return 0;
}

static int test_refs(void)
{
    TEST_ASSERT(proto_ref_is_valid("abc-123", NULL));
    TEST_ASSERT(!proto_ref_is_valid("", NULL));
    char ref[100];
    memset(ref, 'x', 64);
    ref[64] = '\0';
    TEST_ASSERT(proto_ref_is_valid(ref, NULL));
    strcat(ref, "x");
    TEST_ASSERT(!proto_ref_is_valid(ref, NULL));
    return 0;
}

static int test_parse_refuses_deep_nesting(void)
{
    /* 1.8 KB of nested arrays crashed a test server when cJSON recursed. */
    size_t depth = 900;
    char *deep = malloc(depth * 2 + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    TEST_ASSERT(proto_parse_object(deep, depth * 2) == NULL);
    free(deep);
    const char *nested_in_string = "{\"type\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    cJSON *obj = proto_parse_object(nested_in_string, strlen(nested_in_string));
    TEST_ASSERT(obj != NULL);
    cJSON_Delete(obj);
    const char *escaped_quote = "{\"a\":\"\\\"[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    obj = proto_parse_object(escaped_quote, strlen(escaped_quote));
    TEST_ASSERT(obj != NULL);
    cJSON_Delete(obj);
    return 0;
}

static int test_parse_objects_only(void)
{
    TEST_ASSERT(proto_parse_object("[1,2]", 5) == NULL);
    TEST_ASSERT(proto_parse_object("\"str\"", 5) == NULL);
    TEST_ASSERT(proto_parse_object("{\"a\":", 5) == NULL);
    TEST_ASSERT(proto_parse_object("", 0) == NULL);
    const char *ok = "{\"type\":\"send\",\"room\":\"r\",\"n\":3}";
    cJSON *obj = proto_parse_object(ok, strlen(ok));
    TEST_ASSERT(obj != NULL);
    bool bad = false;
    TEST_ASSERT_STR(proto_get_string(obj, "type", &bad), "send");
    TEST_ASSERT(!bad);
    TEST_ASSERT(proto_get_string(obj, "missing", &bad) == NULL);
    TEST_ASSERT(!bad);
    TEST_ASSERT(proto_get_string(obj, "n", &bad) == NULL);
    TEST_ASSERT(bad);
    cJSON_Delete(obj);
    return 0;
}

static int test_parse_masks_nul(void)
{
    /* cJSON would cut the string at the NUL; it must arrive as a refusable control. */
    const char *escaped = "{\"text\":\"a\\u0000b\"}";
    cJSON *obj = proto_parse_object(escaped, strlen(escaped));
    TEST_ASSERT(obj != NULL);
    bool bad = false;
    char *text = strdup(proto_get_string(obj, "text", &bad));
    TEST_ASSERT_INT(strlen(text), 3);
    const char *why = NULL;
    TEST_ASSERT(!proto_text_normalize(text, 4000, &why));
    free(text);
    cJSON_Delete(obj);
    /* An escaped backslash followed by the letters u0000 is ordinary text. */
    const char *literal = "{\"text\":\"a\\\\u0000\"}";
    obj = proto_parse_object(literal, strlen(literal));
    TEST_ASSERT(obj != NULL);
    TEST_ASSERT_STR(proto_get_string(obj, "text", &bad), "a\\u0000");
    cJSON_Delete(obj);
    const char raw[] = "{\"text\":\"a\0b\"}";
    obj = proto_parse_object(raw, sizeof(raw) - 1);
    TEST_ASSERT(obj != NULL);
    TEST_ASSERT_INT(strlen(proto_get_string(obj, "text", &bad)), 3);
    cJSON_Delete(obj);
    return 0;
}

static int test_parse_refuses_trailing_garbage(void)
{
    TEST_ASSERT(proto_parse_object("{\"a\":1} x", 10) == NULL);
    TEST_ASSERT(proto_parse_object("{\"a\":1}{}", 9) == NULL);
    cJSON *obj = proto_parse_object("{\"a\":1} \n", 9);
    TEST_ASSERT(obj != NULL);
    cJSON_Delete(obj);
    return 0;
}

static int test_encode_round_trip(void)
{
    struct chat_msg *msg = chat_msg_create("room", "bob \"b\"", "line1\n<script>", "r1");
    msg->id = 42;
    msg->ts = 1700000000123;
    size_t len;
    char *json = proto_encode_event(msg, &len);
    TEST_ASSERT(strlen(json) == len);
    cJSON *obj = proto_parse_object(json, len);
    TEST_ASSERT(obj != NULL);
    bool bad = false;
    TEST_ASSERT_STR(proto_get_string(obj, "type", &bad), "message");
    TEST_ASSERT_STR(proto_get_string(obj, "user", &bad), "bob \"b\"");
    TEST_ASSERT_STR(proto_get_string(obj, "text", &bad), "line1\n<script>");
    TEST_ASSERT_INT(cJSON_GetObjectItem(obj, "id")->valuedouble, 42);
    TEST_ASSERT_INT(cJSON_GetObjectItem(obj, "ts")->valuedouble, 1700000000123);
    cJSON_Delete(obj);
    free(json);

    json = proto_encode_ack(msg, &len);
    TEST_ASSERT(strstr(json, "\"ref\":\"r1\"") != NULL);
    free(json);
    free(msg->ref);
    msg->ref = NULL;
    json = proto_encode_ack(msg, &len);
    TEST_ASSERT(strstr(json, "\"ref\":null") != NULL);
    free(json);
    chat_msg_free(msg);

    json = proto_encode_error("room_invalid", "bad room", NULL, "r", &len);
    TEST_ASSERT_STR(json, "{\"type\":\"error\",\"code\":\"room_invalid\",\"message\":\"bad "
                          "room\",\"room\":\"r\"}");
    free(json);
    return 0;
}

/* Validators name what they refused; the error table gives code and status. */
static int test_reasons_and_error_table(void)
{
    const char *why = NULL;
    TEST_ASSERT(!proto_room_is_valid(".x", &why));
    TEST_ASSERT(why != NULL && strstr(why, "room must be") != NULL);
    why = NULL;
    TEST_ASSERT(proto_room_is_valid("ok", &why) && why == NULL);
    char name[] = "   ";
    TEST_ASSERT(!proto_user_normalize(name, &why));
    TEST_ASSERT(strstr(why, "1 to 32 characters") != NULL);
    TEST_ASSERT(!proto_ref_is_valid("", &why));
    TEST_ASSERT(strstr(why, "ref must be") != NULL);
    TEST_ASSERT_STR(proto_error_code(PROTO_ERR_RATE_LIMITED), "rate_limited");
    TEST_ASSERT_INT(proto_error_status(PROTO_ERR_RATE_LIMITED), 429);
    TEST_ASSERT_STR(proto_error_code(PROTO_ERR_METHOD_NOT_ALLOWED), "bad_request");
    TEST_ASSERT_INT(proto_error_status(PROTO_ERR_METHOD_NOT_ALLOWED), 405);
    TEST_ASSERT_INT(proto_error_status(PROTO_ERR_UNAVAILABLE), 503);
    return 0;
}

/* Emoji as people type them pass; text, digits and stray modifiers do not. */
static int test_emoji(void)
{
    const char *ok[] = {"👍", "❤️",   "👨‍👩‍👧",           "🇫🇷", "1️⃣",
                        "#⃣", "👍🏽", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "©",  "⭐"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        TEST_ASSERT(proto_emoji_is_valid(ok[i], NULL));
    const char *bad[] = {"",   "a", "1", ":)", "👍a", "\u200d👍", "\ufe0f", "1👍", "👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍",
                         "<b>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        TEST_ASSERT(!proto_emoji_is_valid(bad[i], &why));
        TEST_ASSERT(why && strstr(why, "emoji") != NULL);
    }
    return 0;
}

/* A reply quotes the first words: whole texts stay, long ones are cut at a
 * word with an ellipsis, within the limit. */
static int test_quote(void)
{
    char *q = proto_quote("short text");
    TEST_ASSERT_STR(q, "short text");
    free(q);
    char long_text[400] = "";
    for (int i = 0; i < 40; i++)
        strcat(long_text, "word ");
    q = proto_quote(long_text);
    TEST_ASSERT(strlen(q) <= PROTO_QUOTE_MAX + strlen("…"));
    TEST_ASSERT(strcmp(q + strlen(q) - strlen("…"), "…") == 0);
    TEST_ASSERT(strncmp(q + strlen(q) - strlen("…") - 4, "word", 4) == 0);
    free(q);
    char no_spaces[300];
    memset(no_spaces, 'x', 299);
    no_spaces[299] = '\0';
    q = proto_quote(no_spaces);
    TEST_ASSERT_INT(strlen(q), PROTO_QUOTE_MAX + strlen("…"));
    free(q);
    return 0;
}

/* What the broker carries of a change or a reply survives the trip, and the
 * frames show it as PROTOCOL.md says. */
static int test_extras_and_update_frames(void)
{
    struct chat_msg *msg = chat_msg_create("room", "bob", "hi @alice", NULL);
    TEST_ASSERT(proto_extras_object(msg) == NULL);
    msg->reply_to = 7;
    msg->reply_user = strdup("alice");
    msg->reply_text = strdup("first words");
    chat_msg_add_mention(msg, "alice");
    cJSON *extras = proto_extras_object(msg);
    struct chat_msg *copy = chat_msg_create("room", "bob", "hi @alice", NULL);
    TEST_ASSERT(proto_extras_apply(copy, extras));
    cJSON_Delete(extras);
    TEST_ASSERT_INT(copy->reply_to, 7);
    TEST_ASSERT_STR(copy->reply_text, "first words");
    TEST_ASSERT_INT(copy->mention_count, 1);
    size_t len;
    char *json = proto_encode_event(copy, &len);
    TEST_ASSERT(
        strstr(json, "\"reply_to\":{\"id\":7,\"user\":\"alice\",\"text\":\"first words\"}"));
    TEST_ASSERT(strstr(json, "\"mentions\":[\"alice\"]") && strstr(json, "\"edited_ts\":null"));
    TEST_ASSERT(strstr(json, "\"deleted\":false") && strstr(json, "\"reactions\":{}"));
    free(json);
    chat_msg_free(copy);
    chat_msg_free(msg);

    struct chat_msg *react = chat_msg_create("room", "carol", "", "r9");
    react->kind = CHAT_REACT;
    react->target = 3;
    react->emoji = strdup("👍");
    react->id = 12;
    extras = proto_extras_object(react);
    copy = chat_msg_create("room", "carol", "", NULL);
    TEST_ASSERT(proto_extras_apply(copy, extras));
    cJSON_Delete(extras);
    TEST_ASSERT(copy->kind == CHAT_REACT && copy->target == 3);
    TEST_ASSERT_STR(copy->emoji, "👍");
    chat_msg_free(copy);
    json = proto_encode_event(react, &len);
    TEST_ASSERT(strstr(json, "\"type\":\"update\"") && strstr(json, "\"kind\":\"react\""));
    TEST_ASSERT(strstr(json, "\"target\":3") && !strstr(json, "\"text\""));
    free(json);
    json = proto_encode_ack(react, &len);
    TEST_ASSERT(strstr(json, "\"id\":12") && strstr(json, "\"target\":3"));
    free(json);
    chat_msg_free(react);

    /* A moderation event: an update with the record's member, no target;
     * its kind survives the trip through the broker's extras. */
    static const enum chat_kind sanctions[] = {CHAT_MUTE, CHAT_UNMUTE, CHAT_BAN, CHAT_UNBAN};
    static const char *const sanction_names[] = {"mute", "unmute", "ban", "unban"};
    for (size_t i = 0; i < 4; i++) {
        struct chat_msg *ev = chat_msg_create("room", "maude", "{\"member\":\"bob\"}", NULL);
        ev->kind = sanctions[i];
        ev->id = 20;
        enum chat_kind parsed;
        TEST_ASSERT(chat_kind_parse(sanction_names[i], &parsed) && parsed == sanctions[i]);
        TEST_ASSERT(chat_kind_is_sanction(ev->kind) && chat_kind_is_room_change(ev->kind));
        json = proto_encode_event(ev, &len);
        char kind[32];
        snprintf(kind, sizeof(kind), "\"kind\":\"%s\"", sanction_names[i]);
        TEST_ASSERT(strstr(json, "\"type\":\"update\"") && strstr(json, kind));
        TEST_ASSERT(strstr(json, "\"user\":\"maude\"") && strstr(json, "\"member\":\"bob\""));
        TEST_ASSERT(!strstr(json, "\"target\""));
        free(json);
        extras = proto_extras_object(ev);
        copy = chat_msg_create("room", "maude", "{\"member\":\"bob\"}", NULL);
        TEST_ASSERT(extras && proto_extras_apply(copy, extras));
        TEST_ASSERT(copy->kind == sanctions[i]);
        cJSON_Delete(extras);
        chat_msg_free(copy);
        chat_msg_free(ev);
    }

    /* A change without its target, or a reaction without an emoji, is refused. */
    const char *bad[] = {"{\"kind\":\"edit\"}", "{\"kind\":\"react\",\"target\":2}",
                         "{\"kind\":\"shout\"}", "{\"kind\":\"message\",\"target\":2}",
                         "{\"kind\":\"delete\",\"target\":-1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *obj = proto_parse_object(bad[i], strlen(bad[i]));
        struct chat_msg *m = chat_msg_create("room", "u", "", NULL);
        TEST_ASSERT(!proto_extras_apply(m, obj));
        chat_msg_free(m);
        cJSON_Delete(obj);
    }
    return 0;
}

/* The hand-written message JSON is exactly what cJSON prints of the same
 * object: every escape, null and nested part. */
static int test_message_json_matches_cjson(void)
{
    struct chat_msg *m =
        chat_msg_create("r.1", "ann \"q\"", "tab\tnl\nbell\x07 ü \xe2\x80\xae \\ /", NULL);
    m->id = 9007199254740991ull; /* the largest id: exact, where cJSON prints 9.007e+15 */
    m->ts = 1796434449091;
    char *plain = proto_encode_event(m, NULL);
    TEST_ASSERT(strstr(plain, "\"id\":9007199254740991,") != NULL);
    free(plain);
    m->id = 123456789012;
    plain = proto_encode_event(m, NULL);
    cJSON *obj = proto_event_object(m, true);
    char *want = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    TEST_ASSERT_STR(plain, want);
    free(plain);
    free(want);
    m->edited_ts = 1796434449999;
    m->deleted_by = strdup("mod\x01");
    m->reply_to = 3;
    m->reply_user = strdup("bob");
    m->reply_text = strdup("quoted \"text\"");
    chat_msg_add_mention(m, "bob");
    chat_msg_add_mention(m, "cy");
    chat_msg_add_reaction(m, "👍", "bob", 4);
    chat_msg_add_reaction(m, "🎉", "cy", 5);
    chat_msg_add_reaction(m, "👍", "cy", 6);
    for (int with_type = 0; with_type <= 1; with_type++) {
        struct util_buf b;
        util_buf_init(&b);
        proto_append_event_json(&b, m, with_type);
        char *got = util_buf_take(&b, NULL);
        obj = proto_event_object(m, with_type);
        want = cJSON_PrintUnformatted(obj);
        cJSON_Delete(obj);
        TEST_ASSERT_STR(got, want);
        free(got);
        free(want);
    }
    chat_msg_free(m);
    return 0;
}

/* proto_frame_parse: what ws.c answers, field by field, without a session. */
/* Whole numbers from outside (peer pages, presence snapshots, stored
 * records) reach an integer only when JSON carries them exactly: 1e300 cast
 * to an integer is undefined behaviour. */
static int test_get_int(void)
{
    const char *json =
        "{\"ms\":1733374800123,\"neg\":-5,\"max\":9007199254740991,\"huge\":1e300,"
        "\"low\":-1e300,\"over\":9007199254740992,\"half\":1.5,\"text\":\"7\",\"nul\":null}";
    cJSON *o = proto_parse_object(json, strlen(json));
    TEST_ASSERT(o != NULL);
    int64_t v = -1;
    TEST_ASSERT(proto_get_int(o, "ms", &v) && v == 1733374800123);
    TEST_ASSERT(proto_get_int(o, "neg", &v) && v == -5);
    TEST_ASSERT(proto_get_int(o, "max", &v) && v == 9007199254740991);
    TEST_ASSERT(proto_get_int(o, "absent", &v) && v == 0);
    TEST_ASSERT(proto_get_int(o, "nul", &v) && v == 0);
    const char *refused[] = {"huge", "low", "over", "half", "text"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        v = -1;
        TEST_ASSERT(!proto_get_int(o, refused[i], &v) && v == 0);
    }
    cJSON_Delete(o);
    return 0;
}

static int parse_frame(const char *json, struct proto_frame *f)
{
    enum proto_error err;
    const char *why = NULL;
    return proto_frame_parse(json, strlen(json), f, &err, &why) ? 0 : -1;
}

static int test_frame_parse(void)
{
    struct proto_frame f;
    enum proto_error err;
    const char *why = NULL;
    TEST_ASSERT(!proto_frame_parse("[1]", 3, &f, &err, &why));
    TEST_ASSERT(err == PROTO_ERR_BAD_JSON && f.root == NULL);
    proto_frame_dispose(&f);
    TEST_ASSERT(!proto_frame_parse("{\"type\":1}", 10, &f, &err, &why));
    TEST_ASSERT(err == PROTO_ERR_BAD_REQUEST);
    TEST_ASSERT_STR(why, "type is required and must be a string");
    proto_frame_dispose(&f);

    TEST_ASSERT(!parse_frame("{\"type\":\"send\",\"room\":\"general\",\"text\":\"hi\","
                             "\"ref\":\"r1\",\"reply_to\":7}",
                             &f));
    TEST_ASSERT(f.type == PROTO_FRAME_SEND && !f.why && !f.room_why && !f.ref_why);
    TEST_ASSERT_STR(f.room, "general");
    TEST_ASSERT_STR(f.text, "hi");
    TEST_ASSERT_STR(f.ref, "r1");
    TEST_ASSERT_INT(f.reply_to, 7);
    proto_frame_dispose(&f);

    TEST_ASSERT(!parse_frame("{\"type\":\"send\",\"room\":\"Bad Room\",\"ref\":5}", &f));
    TEST_ASSERT(f.room == NULL && f.room_err == PROTO_ERR_ROOM_INVALID && f.room_why);
    TEST_ASSERT_STR(f.ref_why, "ref must be a string of 1 to 64 characters");
    TEST_ASSERT_STR(f.why, "text is required and must be a string");
    proto_frame_dispose(&f);

    TEST_ASSERT(!parse_frame("{\"type\":\"react\",\"room\":\"a\",\"emoji\":\"x\",\"id\":3}", &f));
    TEST_ASSERT_STR(f.why, "add is required: true or false");
    proto_frame_dispose(&f);
    TEST_ASSERT(!parse_frame("{\"type\":\"edit\",\"room\":\"a\",\"id\":0}", &f));
    TEST_ASSERT_STR(f.why, "id is required: the id of a message"); /* the id wins */
    proto_frame_dispose(&f);
    TEST_ASSERT(!parse_frame("{\"type\":\"join\",\"room\":\"a\",\"since\":1.5}", &f));
    TEST_ASSERT_STR(f.why, "since must be a non-negative integer");
    proto_frame_dispose(&f);
    TEST_ASSERT(!parse_frame("{\"type\":\"join\"}", &f));
    TEST_ASSERT(f.room_err == PROTO_ERR_BAD_REQUEST);
    TEST_ASSERT_STR(f.room_why, "room is required and must be a string");
    proto_frame_dispose(&f);
    TEST_ASSERT(!parse_frame("{\"type\":\"shout\"}", &f));
    TEST_ASSERT(f.type == PROTO_FRAME_UNKNOWN);
    proto_frame_dispose(&f);
    return 0;
}

TEST_MAIN(TEST_CASE(test_frame_parse), TEST_CASE(test_get_int),
          TEST_CASE(test_message_json_matches_cjson), TEST_CASE(test_room_names),
          TEST_CASE(test_emoji), TEST_CASE(test_quote), TEST_CASE(test_extras_and_update_frames),
          TEST_CASE(test_reasons_and_error_table), TEST_CASE(test_user_names),
          TEST_CASE(test_user_names_hidden_characters), TEST_CASE(test_text_rules),
          TEST_CASE(test_refs), TEST_CASE(test_parse_refuses_deep_nesting),
          TEST_CASE(test_parse_objects_only), TEST_CASE(test_parse_masks_nul),
          TEST_CASE(test_parse_refuses_trailing_garbage), TEST_CASE(test_encode_round_trip))
