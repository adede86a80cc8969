/* search: finding messages by what they say. The query a person types
 * (terms, and what each asks of the index), which hits the caller may see,
 * the snippet that marks each match, and GET /api/search of
 * docs/PROTOCOL.md. The index itself is the store's (0005_search.sql). */
#ifndef TURBOCHAT_SEARCH_H
#define TURBOCHAT_SEARCH_H

#include <stdbool.h>
#include <stddef.h>

struct auth_claims;
struct cJSON;
struct mg_connection;
struct rooms;
struct store;

#define SEARCH_QUERY_MAX_BYTES 256 /* of q */
#define SEARCH_TERMS_MAX 8         /* words of q */
#define SEARCH_TRIGRAM 3           /* code points a term needs to use the index */
#define SEARCH_LIMIT_DEFAULT 20
#define SEARCH_LIMIT_MAX 100
#define SEARCH_EXAMINE_MAX 5000 /* candidates one request looks at */

/* A parsed query: q split at white space into terms, every one of which a
 * result's text must contain (case-insensitive for ASCII and, through the
 * index, for the rest of Unicode). */
struct search_query {
    char *terms[SEARCH_TERMS_MAX];
    size_t term_count;
    /* The FTS5 expression of the terms of SEARCH_TRIGRAM or more code points,
     * each a quoted phrase; NULL when every term is shorter (those are
     * checked against each candidate instead). */
    char *match;
};

/* Parse q (NUL-terminated, any bytes): 0, or -EINVAL with *why naming what
 * was wrong (empty, too long, not UTF-8, too many words). Dispose with
 * search_query_dispose, also after a failure. */
int search_query_parse(const char *q, struct search_query *query, const char **why);
void search_query_dispose(struct search_query *query);

/* True when text contains every term of query. */
bool search_text_matches(const struct search_query *query, const char *text);

/* The snippet of text around its first match: an array of parts
 * {"text": "..."} and {"text": "...", "match": true}, at most about 160 code
 * points, "…" where text was cut. */
struct cJSON *search_snippet(const struct search_query *query, const char *text);

/* Answer GET /api/search (docs/PROTOCOL.md "Search") for the caller with
 * claims (NULL under auth off). Worker thread; reads the store. */
void search_answer(struct mg_connection *mc, struct store *store, struct rooms *rooms,
                   const struct auth_claims *claims);

#endif
