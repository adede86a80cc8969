/* search: the query, what a caller may see, snippets, GET /api/search.
 *
 * The store's trigram index answers terms of three or more code points and
 * gives candidates newest first; shorter terms (a two-character Japanese
 * word, "go") cannot use trigrams and are checked here on each candidate.
 * One request looks at no more than SEARCH_EXAMINE_MAX candidates: when it
 * stops there, `next` tells the client where to go on, so a query that
 * matches little in a large log costs every request the same bounded work. */
#define _GNU_SOURCE
#include "search.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <cjson/cJSON.h>
#include <civetweb.h>

#include "auth.h"
#include "http_api.h"
#include "proto.h"
#include "rooms.h"
#include "store.h"
#include "util.h"

#define SNIPPET_CHARS 160       /* code points of a snippet */
#define SNIPPET_LEAD_CHARS 40   /* of them before the first match */
#define SNIPPET_RANGES_MAX 32   /* marked matches per snippet */
#define ACCESS_CACHE_ROOMS 64   /* rooms whose access one request remembers */
#define PARAM_MAX_BYTES 512     /* of room, from and before */
#define ELLIPSIS "\xe2\x80\xa6" /* … */

/* ---------------------------------------------------------------- query */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static size_t term_chars(const char *term)
{
    return util_utf8_count(term, strlen(term));
}

/* The terms of SEARCH_TRIGRAM or more code points as FTS5 phrases, ANDed:
 * "a""b" "cde" (a quote inside a phrase is doubled). NULL when none. */
static char *match_expression(const struct search_query *query)
{
    struct util_buf buf;
    util_buf_init(&buf);
    for (size_t i = 0; i < query->term_count; i++) {
        if (term_chars(query->terms[i]) < SEARCH_TRIGRAM)
            continue;
        util_buf_append(&buf, buf.len ? " \"" : "\"", buf.len ? 2 : 1);
        for (const char *p = query->terms[i]; *p; p++)
            util_buf_append(&buf, *p == '"' ? "\"\"" : p, *p == '"' ? 2 : 1);
        util_buf_append(&buf, "\"", 1);
    }
    if (buf.len == 0) {
        util_buf_dispose(&buf);
        return NULL;
    }
    return util_buf_take(&buf, NULL);
}

int search_query_parse(const char *q, struct search_query *query, const char **why)
{
    memset(query, 0, sizeof(*query));
    size_t len = q ? strlen(q) : 0;
    if (len > SEARCH_QUERY_MAX_BYTES) {
        *why = "q is longer than 256 bytes";
        return -EINVAL;
    }
    if (!util_utf8_is_valid(q ? q : "", len)) {
        *why = "q is not valid UTF-8";
        return -EINVAL;
    }
    for (const char *p = q ? q : ""; *p;) {
        while (is_space(*p))
            p++;
        const char *start = p;
        while (*p && !is_space(*p))
            p++;
        if (p == start)
            break;
        if (query->term_count == SEARCH_TERMS_MAX) {
            *why = "q has more than 8 words";
            return -EINVAL;
        }
        query->terms[query->term_count++] = xstrndup(start, (size_t)(p - start));
    }
    if (query->term_count == 0) {
        *why = "q is required: the words to look for";
        return -EINVAL;
    }
    query->match = match_expression(query);
    return 0;
}

void search_query_dispose(struct search_query *query)
{
    for (size_t i = 0; i < query->term_count; i++)
        free(query->terms[i]);
    free(query->match);
    memset(query, 0, sizeof(*query));
}

/* ---------------------------------------------------------------- matching */

static unsigned char fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* What a byte of text is matched as: Unicode lower case, from glibc's
 * built-in C.UTF-8 (the index folds case across Unicode too). */
static locale_t utf8_locale;
static pthread_once_t utf8_locale_once = PTHREAD_ONCE_INIT;

static void utf8_locale_init(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static uint32_t fold_char(uint32_t c)
{
    if (c < 0x80)
        return fold((unsigned char)c);
    return utf8_locale ? (uint32_t)towlower_l((wint_t)c, utf8_locale) : c;
}

/* The code point at s[*i] (of len bytes), advancing *i past it; a byte that
 * does not start a well-formed sequence is taken alone. */
static uint32_t next_char(const char *s, size_t len, size_t *i)
{
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t n = p[0] < 0x80 ? 1 : p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC0 ? 2 : 0;
    if (n == 0 || *i + n > len || !util_utf8_is_valid((const char *)p, n)) {
        (*i)++;
        return 0xFFFD;
    }
    uint32_t c = n == 1 ? p[0] : p[0] & (0x7F >> n);
    for (size_t k = 1; k < n; k++)
        c = (c << 6) | (p[k] & 0x3F);
    *i += n;
    return c;
}

/* When term occurs at byte at of text, case aside, the byte after it in *end. */
static bool term_at(const char *text, size_t len, size_t at, const char *term, size_t *end)
{
    size_t tlen = strlen(term), i = at, k = 0;
    while (k < tlen) {
        if (i >= len || fold_char(next_char(text, len, &i)) != fold_char(next_char(term, tlen, &k)))
            return false;
    }
    *end = i;
    return true;
}

struct byte_range {
    size_t start;
    size_t end;
};

/* The first occurrence of term in text[from, len), case aside, into *found. */
static bool find_term(const char *text, size_t len, size_t from, const char *term,
                      struct byte_range *found)
{
    pthread_once(&utf8_locale_once, utf8_locale_init);
    for (size_t i = from; *term && i < len;) {
        if (term_at(text, len, i, term, &found->end)) {
            found->start = i;
            return true;
        }
        next_char(text, len, &i);
    }
    return false;
}

bool search_text_matches(const struct search_query *query, const char *text)
{
    /* The index checked the longer terms. */
    size_t len = strlen(text);
    struct byte_range found;
    for (size_t i = 0; i < query->term_count; i++)
        if (term_chars(query->terms[i]) < SEARCH_TRIGRAM &&
            !find_term(text, len, 0, query->terms[i], &found))
            return false;
    return true;
}

/* ---------------------------------------------------------------- snippets */

static int compare_ranges(const void *a, const void *b)
{
    const struct byte_range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Every match of every term in text, sorted and merged; at most
 * SNIPPET_RANGES_MAX. */
static size_t match_ranges(const struct search_query *query, const char *text, size_t len,
                           struct byte_range *ranges)
{
    size_t n = 0;
    for (size_t i = 0; i < query->term_count; i++) {
        struct byte_range found = {0, 0};
        while (n < SNIPPET_RANGES_MAX && find_term(text, len, found.end, query->terms[i], &found))
            ranges[n++] = found;
    }
    qsort(ranges, n, sizeof(*ranges), compare_ranges);
    size_t merged = 0;
    for (size_t i = 0; i < n; i++) {
        if (merged && ranges[i].start <= ranges[merged - 1].end) {
            if (ranges[i].end > ranges[merged - 1].end)
                ranges[merged - 1].end = ranges[i].end;
        } else {
            ranges[merged++] = ranges[i];
        }
    }
    return merged;
}

static bool is_continuation(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* The byte offset count code points before (back) or after at. */
static size_t step_chars(const char *text, size_t len, size_t at, size_t count, bool back)
{
    while (count--) {
        if (back ? at == 0 : at >= len)
            break;
        do
            at = back ? at - 1 : at + 1;
        while (at > 0 && at < len && is_continuation((unsigned char)text[at]));
    }
    return at;
}

static void add_part(cJSON *parts, const char *prefix, const char *text, size_t len,
                     const char *suffix, bool match)
{
    if (len == 0 && !*prefix && !*suffix)
        return;
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "%s%.*s%s", prefix, (int)len, text, suffix);
    char *s = util_buf_take(&buf, NULL);
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "text", s);
    if (match)
        cJSON_AddTrueToObject(part, "match");
    cJSON_AddItemToArray(parts, part);
    free(s);
}

cJSON *search_snippet(const struct search_query *query, const char *text)
{
    size_t len = strlen(text);
    struct byte_range ranges[SNIPPET_RANGES_MAX];
    size_t n = match_ranges(query, text, len, ranges);
    size_t from = n ? step_chars(text, len, ranges[0].start, SNIPPET_LEAD_CHARS, true) : 0;
    size_t to = step_chars(text, len, from, SNIPPET_CHARS, false);
    cJSON *parts = cJSON_CreateArray();
    size_t at = from;
    for (size_t i = 0; i < n && ranges[i].start < to; i++) {
        size_t end = ranges[i].end < to ? ranges[i].end : to;
        add_part(parts, at == from && from > 0 ? ELLIPSIS : "", text + at, ranges[i].start - at, "",
                 false);
        add_part(parts, "", text + ranges[i].start, end - ranges[i].start,
                 end == len || end < to ? "" : ELLIPSIS, true);
        at = end;
    }
    if (at < to || (at == from && from > 0))
        add_part(parts, at == from && from > 0 ? ELLIPSIS : "", text + at, to - at,
                 to < len ? ELLIPSIS : "", false);
    return parts;
}

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
    const struct auth_claims *claims = cache->claims;
    bool allowed = (!claims || auth_room_allowed(claims, room)) &&
                   rooms_may_enter(cache->rooms, room, claims ? claims->sub : NULL);
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
    if (req.room[0] && claims && !auth_room_allowed(claims, req.room)) {
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "the token does not allow this room");
    } else if (req.room[0] && !caller_may_read(&cache, req.room)) {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such room");
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
