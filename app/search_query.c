/* search_query: the pure half of search (search.h): the query a person
 * types split into terms and their FTS5 expression, the check of the terms
 * the index cannot answer (case folded across Unicode by glibc's built-in
 * C.UTF-8), and the snippet that marks each match. No store, no request:
 * tests/fuzz/fuzz_rest.c links it alone. */
#define _GNU_SOURCE
#include "search.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <cjson/cJSON.h>

#include "util.h"

#define SNIPPET_CHARS 160       /* code points of a snippet */
#define SNIPPET_LEAD_CHARS 40   /* of them before the first match */
#define SNIPPET_RANGES_MAX 32   /* marked matches per snippet */
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
