/* libFuzzer target for what a REST request's path and query carry: the
 * room path /api/rooms/{room}/{what} (api_path.c), a message's sub-path
 * messages/{id}[/reactions/{emoji}], and GET /api/search's q
 * (search_query.c) with the matching and the snippet of a text. The first
 * input byte picks the parser; for search the rest is q, '\n', a text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api_path.h"
#include "proto.h"
#include "search.h"
#include "util.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static void check_message_path(const char *rest)
{
    uint64_t id;
    const char *emoji;
    enum api_path_message kind = api_path_message(rest, &id, &emoji);
    switch (kind) {
    case API_PATH_NO_ID:
        CHECK(id == 0 && emoji == NULL);
        break;
    case API_PATH_MESSAGE:
    case API_PATH_OTHER:
        CHECK(id >= 1 && id <= (uint64_t)PROTO_ID_MAX && emoji == NULL);
        CHECK((kind == API_PATH_MESSAGE) == (strchr(rest, '/') == NULL));
        break;
    case API_PATH_REACTION:
        CHECK(id >= 1 && id <= (uint64_t)PROTO_ID_MAX);
        CHECK(emoji && emoji > rest && emoji < rest + strlen(rest) && *emoji);
        break;
    default:
        CHECK(0);
    }
    if (id) { /* the id is the decimal digits before the first '/' */
        char digits[24];
        int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)id);
        CHECK(n > 0 && (strncmp(rest, digits, (size_t)n) == 0 || rest[0] == '0'));
    }
}

static void fuzz_room_path(const char *uri)
{
    char room[PROTO_ROOM_MAX + 2];
    memset(room, 0x55, sizeof(room));
    const char *what = api_path_split_room(uri, room, sizeof(room));
    if (!what)
        return;
    CHECK(strncmp(uri, "/api/rooms/", 11) == 0);
    CHECK(what > uri && what <= uri + strlen(uri) && what[-1] == '/');
    CHECK(strlen(room) < sizeof(room) && strchr(room, '/') == NULL);
    const char *why = NULL;
    if (!proto_room_is_valid(room, &why))
        CHECK(why && why[0]);
    if (strncmp(what, "messages/", 9) == 0)
        check_message_path(what + 9);
}

static void fuzz_search(const char *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    char *q = xstrndup(data, nl ? (size_t)(nl - data) : size);
    char *text = nl ? xstrndup(nl + 1, size - (size_t)(nl + 1 - data)) : xstrdup("");
    struct search_query query;
    const char *why = NULL;
    if (search_query_parse(q, &query, &why) == 0) {
        CHECK(query.term_count >= 1 && query.term_count <= SEARCH_TERMS_MAX);
        for (size_t i = 0; i < query.term_count; i++)
            CHECK(query.terms[i] && query.terms[i][0] && strstr(q, query.terms[i]));
        if (query.match)
            CHECK(query.match[0] == '"');
        search_text_matches(&query, text);
        if (util_utf8_is_valid(text, strlen(text))) {
            /* Only stored texts, always valid UTF-8, get snippets. */
            cJSON *parts = search_snippet(&query, text);
            CHECK(cJSON_IsArray(parts));
            const cJSON *part;
            cJSON_ArrayForEach(part, parts)
            {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                CHECK(cJSON_IsString(t));
                CHECK(util_utf8_is_valid(t->valuestring, strlen(t->valuestring)));
            }
            char *json = cJSON_PrintUnformatted(parts);
            CHECK(json != NULL);
            free(json);
            cJSON_Delete(parts);
        }
    } else {
        CHECK(why && why[0]);
    }
    search_query_dispose(&query);
    free(q);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size--;
    if (data[0] & 1) {
        fuzz_search(rest, size);
        return 0;
    }
    char *uri = xstrndup(rest, size);
    fuzz_room_path(uri);
    check_message_path(uri);
    free(uri);
    return 0;
}
