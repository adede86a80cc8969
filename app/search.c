/* search: what a caller may see and GET /api/search; the query, matching
 * and snippets are search_query.c's.
 *
 * The store's trigram index answers terms of three or more code points and
 * gives candidates newest first; shorter terms (a two-character Japanese
 * word, "go") cannot use trigrams and are checked on each candidate.
 * One request looks at no more than SEARCH_EXAMINE_MAX candidates: when it
 * stops there, `next` tells the client where to go on, so a query that
 * matches little in a large log costs every request the same bounded work. */
#include "search.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <civetweb.h>

#include "auth.h"
#include "http_api.h"
#include "proto.h"
#include "rooms.h"
#include "store.h"
#include "util.h"

#define ACCESS_CACHE_ROOMS 64 /* rooms whose access one request remembers */
#define PARAM_MAX_BYTES 512   /* of room, from and before */

/* ---------------------------------------------------------------- access */

/* Which rooms the caller may read, remembered for one request. */
struct access_cache {
    struct rooms *rooms;
    const struct auth_claims *claims;
    char *names[ACCESS_CACHE_ROOMS];
    bool allowed[ACCESS_CACHE_ROOMS];
    size_t count;
};

static bool caller_may_read(struct access_cache *cache, const char *room)
{
    for (size_t i = 0; i < cache->count; i++)
        if (strcmp(cache->names[i], room) == 0)
            return cache->allowed[i];
    enum proto_error err;
    char why[ROOMS_WHY_MAX];
    bool allowed = rooms_may_use(cache->rooms, room, cache->claims, ROOMS_READ, &err, why);
    if (cache->count < ACCESS_CACHE_ROOMS) {
        cache->names[cache->count] = xstrdup(room);
        cache->allowed[cache->count++] = allowed;
    }
    return allowed;
}

static void access_cache_dispose(struct access_cache *cache)
{
    for (size_t i = 0; i < cache->count; i++)
        free(cache->names[i]);
}

/* ---------------------------------------------------------------- GET /api/search */

/* What the request asks beyond q. */
struct search_request {
    struct search_query query;
    char room[PARAM_MAX_BYTES];
    char from[PARAM_MAX_BYTES];
    uint64_t before; /* 0: from the newest */
    int limit;
};

/* A query parameter into out: 1 present, 0 absent, -1 longer than out. */
static int query_param(const struct mg_request_info *ri, const char *name, char *out, size_t size)
{
    const char *qs = ri->query_string ? ri->query_string : "";
    int n = mg_get_var(qs, strlen(qs), name, out, size);
    if (n == -1) {
        out[0] = '\0';
        return 0;
    }
    return n < 0 ? -1 : 1;
}

/* An integer parameter in [1, INT64_MAX] into *out: 1 present, 0 absent, -1 bad. */
static int positive_param(const struct mg_request_info *ri, const char *name, int64_t *out)
{
    char number[32];
    int has = query_param(ri, name, number, sizeof(number));
    if (has <= 0)
        return has;
    return util_parse_int64(number, 1, INT64_MAX, out) == 0 ? 1 : -1;
}

/* Validate the parameters into req; false after answering 400. */
static bool read_request(struct mg_connection *mc, struct search_request *req)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    char q[SEARCH_QUERY_MAX_BYTES + 1];
    const char *why = "q is longer than 256 bytes";
    int has = query_param(ri, "q", q, sizeof(q));
    if (has < 0 || search_query_parse(has ? q : "", &req->query, &why) < 0)
        goto out_bad;
    has = query_param(ri, "room", req->room, sizeof(req->room));
    if (has < 0 || (has && !proto_room_is_valid(req->room, &why))) {
        api_send_error(mc, PROTO_ERR_ROOM_INVALID, has < 0 ? "room is too long" : why);
        return false;
    }
    why = "from is too long";
    has = query_param(ri, "from", req->from, sizeof(req->from));
    if (has < 0 || (has && !proto_user_normalize(req->from, &why)))
        goto out_bad;
    int64_t before = 0, limit = SEARCH_LIMIT_DEFAULT;
    why = "before must be the next of an earlier page: a positive integer";
    if (positive_param(ri, "before", &before) < 0)
        goto out_bad;
    why = "limit must be an integer of at least 1";
    if (positive_param(ri, "limit", &limit) < 0)
        goto out_bad;
    req->before = (uint64_t)before;
    req->limit = limit > SEARCH_LIMIT_MAX ? SEARCH_LIMIT_MAX : (int)limit;
    return true;
out_bad:
    api_send_error(mc, PROTO_ERR_BAD_REQUEST, why);
    return false;
}

/* The hits of one walk that the text check passed: at most want of them. */
struct hit_list {
    const struct search_query *query;
    struct {
        char *room;
        uint64_t id;
        uint64_t position;
    } * items;
    size_t count;
    size_t cap;
    size_t want;
};

static bool take_hit(void *ctx, const struct store_search_hit *hit)
{
    struct hit_list *list = ctx;
    if (!search_text_matches(list->query, hit->text))
        return true;
    UTIL_GROW(list->items, list->count, list->cap);
    list->items[list->count].room = xstrdup(hit->room);
    list->items[list->count].id = hit->id;
    list->items[list->count].position = hit->position;
    return ++list->count < list->want;
}

static void hit_list_dispose(struct hit_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].room);
    free(list->items);
}

/* Add the hits the caller may read to results as messages in their current
 * state, until limit; *last is the position of the last hit looked at. */
static int add_results(struct store *store, const struct search_request *req,
                       struct access_cache *cache, const struct hit_list *hits, cJSON *results,
                       int *found, uint64_t *last)
{
    for (size_t i = 0; i < hits->count && *found < req->limit; i++) {
        *last = hits->items[i].position;
        if (!caller_may_read(cache, hits->items[i].room))
            continue;
        struct chat_msg *msg = NULL;
        int rc = store_get_event(store, hits->items[i].room, hits->items[i].id, &msg);
        if (rc == -ENOENT)
            continue; /* it left the log since */
        if (rc < 0)
            return rc;
        if (msg->deleted_by) { /* deleted since the index was read */
            chat_msg_free(msg);
            continue;
        }
        cJSON *item = proto_event_object(msg, false);
        cJSON_AddItemToObject(item, "snippet", search_snippet(&req->query, msg->text));
        cJSON_AddItemToArray(results, item);
        chat_msg_free(msg);
        (*found)++;
    }
    return 0;
}

/* Walk the index from req->before, adding what answers to results, until
 * limit results or SEARCH_EXAMINE_MAX candidates. *next is where to go on
 * (0: the index has nothing further). 0 or negative. */
static int collect_results(struct store *store, const struct search_request *req,
                           struct access_cache *cache, cJSON *results, uint64_t *next)
{
    struct store_search_query q = {
        .match = req->query.match,
        .room = req->room[0] ? req->room : NULL,
        .user = req->from[0] ? req->from : NULL,
        .before = req->before,
    };
    size_t examined = 0;
    int found = 0;
    *next = 0;
    while (found < req->limit && examined < SEARCH_EXAMINE_MAX) {
        struct hit_list hits = {.query = &req->query, .want = (size_t)(req->limit - found)};
        struct store_search_walk walk;
        q.examine = (int)(SEARCH_EXAMINE_MAX - examined);
        int rc = store_search(store, &q, take_hit, &hits, &walk);
        uint64_t last = walk.last_position;
        if (rc == 0)
            rc = add_results(store, req, cache, &hits, results, &found, &last);
        hit_list_dispose(&hits);
        if (rc < 0)
            return rc;
        if (found < req->limit)
            last = walk.last_position; /* every hit was used: go on after the walk */
        examined += walk.examined;
        if (walk.exhausted && last == walk.last_position)
            return 0;
        q.before = last;
    }
    *next = q.before;
    return 0;
}

void search_answer(struct mg_connection *mc, struct store *store, struct rooms *rooms,
                   const struct auth_claims *claims)
{
    struct search_request req;
    memset(&req, 0, sizeof(req));
    if (!read_request(mc, &req)) {
        search_query_dispose(&req.query);
        return;
    }
    struct access_cache cache = {.rooms = rooms, .claims = claims};
    enum proto_error err;
    char why[ROOMS_WHY_MAX];
    if (req.room[0] && !rooms_may_use(rooms, req.room, claims, ROOMS_READ, &err, why)) {
        api_send_error(mc, err, why);
    } else {
        cJSON *body = cJSON_CreateObject();
        cJSON *results = cJSON_AddArrayToObject(body, "results");
        uint64_t next = 0;
        if (collect_results(store, &req, &cache, results, &next) < 0) {
            cJSON_Delete(body);
            api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log cannot be searched now");
        } else {
            if (next) {
                char position[24];
                snprintf(position, sizeof(position), "%" PRIu64, next);
                cJSON_AddStringToObject(body, "next", position);
            }
            api_send_object(mc, 200, body);
        }
    }
    access_cache_dispose(&cache);
    search_query_dispose(&req.query);
}
