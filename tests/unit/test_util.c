/* Unit tests for util (UTF-8, constant-time compare, integers, buffers),
 * strmap and the ratelimit token bucket. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "budget.h"
#include "strmap.h"
#include "test_help.h"
#include "util.h"

static int test_utf8(void)
{
    TEST_ASSERT(util_utf8_is_valid("plain", 5));
    TEST_ASSERT(util_utf8_is_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    TEST_ASSERT(!util_utf8_is_valid("\xc0\xaf", 2));         /* overlong '/' */
    TEST_ASSERT(!util_utf8_is_valid("\xe0\x80\xaf", 3));     /* overlong */
    TEST_ASSERT(!util_utf8_is_valid("\xed\xa0\x80", 3));     /* surrogate */
    TEST_ASSERT(!util_utf8_is_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    TEST_ASSERT(!util_utf8_is_valid("\xe2\x82", 2));         /* truncated */
    TEST_ASSERT(!util_utf8_is_valid("\x80", 1));             /* stray continuation */
    TEST_ASSERT(util_utf8_is_valid("a\0b", 3));              /* NUL is valid UTF-8 */
    TEST_ASSERT_INT(util_utf8_count("\xc3\xa9x\xf0\x9f\x98\x80", 7), 3);
    return 0;
}

static int test_secret_equals(void)
{
    TEST_ASSERT(util_secret_equals("secret", 6, "secret", 6));
    TEST_ASSERT(!util_secret_equals("secret", 6, "secreT", 6));
    TEST_ASSERT(!util_secret_equals("secret", 6, "secret2", 7));
    TEST_ASSERT(!util_secret_equals("", 0, "x", 1));
    TEST_ASSERT(util_secret_equals("", 0, "", 0));
    return 0;
}

static int test_parse_int(void)
{
    int64_t v = 0;
    TEST_ASSERT_INT(util_parse_int64("42", 1, 100, &v), 0);
    TEST_ASSERT_INT(v, 42);
    TEST_ASSERT_INT(util_parse_int64("0", 1, 100, &v), -ERANGE);
    TEST_ASSERT_INT(util_parse_int64("101", 1, 100, &v), -ERANGE);
    TEST_ASSERT_INT(util_parse_int64("4x", 1, 100, &v), -EINVAL);
    TEST_ASSERT_INT(util_parse_int64("", 1, 100, &v), -EINVAL);
    TEST_ASSERT_INT(util_parse_int64("99999999999999999999", 1, INT64_MAX, &v), -ERANGE);
    return 0;
}

static int test_buf(void)
{
    struct util_buf b;
    util_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        util_buf_appendf(&b, "%d,", i);
    util_buf_append(&b, "end", 3);
    size_t len;
    char *s = util_buf_take(&b, &len);
    TEST_ASSERT(len == strlen(s));
    TEST_ASSERT(strncmp(s, "0,1,2,", 6) == 0);
    TEST_ASSERT(strcmp(s + len - 7, "999,end") == 0);
    free(s);
    TEST_ASSERT(b.data == NULL && b.len == 0);
    return 0;
}

static int test_strmap(void)
{
    struct strmap *map = strmap_create(free);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "room-%d", i);
        int *v = malloc(sizeof(int));
        *v = i;
        strmap_put(map, key, v);
    }
    TEST_ASSERT_INT(strmap_count(map), 5000);
    TEST_ASSERT_INT(*(int *)strmap_get(map, "room-4321"), 4321);
    int *replacement = malloc(sizeof(int));
    *replacement = -1;
    strmap_put(map, "room-7", replacement); /* the old value is freed */
    TEST_ASSERT_INT(*(int *)strmap_get(map, "room-7"), -1);
    TEST_ASSERT(strmap_remove(map, "room-7"));
    TEST_ASSERT(!strmap_remove(map, "room-7"));
    TEST_ASSERT(strmap_get(map, "room-7") == NULL);
    TEST_ASSERT_INT(strmap_count(map), 4999);
    strmap_free(map);
    return 0;
}

/* FNV-1a, the unkeyed hash strmap used to have. */
static uint64_t fnv1a(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

/* Keys a client picks to share a bucket under an unkeyed hash (here the
 * low 12 bits of FNV-1a, as a 4,096-bucket table indexes) spread out. */
static int test_strmap_resists_chosen_collisions(void)
{
    enum { KEYS = 4096, BITS_MASK = 4095 };
    struct strmap *map = strmap_create(NULL);
    char key[48];
    size_t found = 0;
    for (unsigned long i = 0; found < KEYS; i++) {
        snprintf(key, sizeof(key), "ref-%lu", i);
        if ((fnv1a(key) & BITS_MASK) != 0)
            continue;
        strmap_put(map, key, map);
        found++;
    }
    TEST_ASSERT_INT(strmap_count(map), KEYS);
    size_t longest = strmap_longest_chain(map);
    if (longest >= 32)
        fprintf(stderr, "longest chain %zu of %d colliding keys\n", longest, KEYS);
    TEST_ASSERT(longest < 32); /* unkeyed: all 4,096 in one chain */
    strmap_free(map);
    return 0;
}

/* One user's budget is shared by all their writes, an address's by all its
 * users; a flood of new users and addresses evicts the least recently used
 * buckets, never the one in use (a table wiped whole when full gave every
 * active sender a fresh burst). */
static int test_budgets(void)
{
    uint64_t t = 1000000000ull;
    struct budgets *b = budgets_create(1.0, 3.0, 1.0, 5.0, 64);
    for (int i = 0; i < 3; i++)
        TEST_ASSERT(budgets_take(b, "mallory", "10.0.0.1", t));
    TEST_ASSERT(!budgets_take(b, "mallory", "10.0.0.1", t)); /* the user's burst is spent */
    TEST_ASSERT(!budgets_take(b, "mallory", "10.0.0.2", t)); /* from any address */
    TEST_ASSERT(budgets_take(b, "alice", "10.0.0.1", t));
    TEST_ASSERT(budgets_take(b, "bob", "10.0.0.1", t));
    TEST_ASSERT(!budgets_take(b, "carol", "10.0.0.1", t)); /* the address's 5 are spent */
    char name[32], address[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        snprintf(address, sizeof(address), "10.1.%d.%d", i / 256, i % 256);
        budgets_take(b, name, address, t);
        TEST_ASSERT(!budgets_take(b, "mallory", "10.0.0.3", t));
    }
    TEST_ASSERT(budgets_count(b) <= 64);
    t += 1000000000ull; /* a second refills one */
    TEST_ASSERT(budgets_take(b, "mallory", "10.0.0.3", t));
    TEST_ASSERT(!budgets_take(b, "mallory", "10.0.0.3", t));
    budgets_free(b);

    b = budgets_create(1.0, 1.0, 0.0, 1.0, 8); /* address rate 0: no address budget */
    TEST_ASSERT(budgets_take(b, "a", "10.0.0.1", t));
    TEST_ASSERT(budgets_take(b, "b", "10.0.0.1", t));
    TEST_ASSERT(budgets_take(b, NULL, "10.0.0.1", t));
    budgets_free(b);
    return 0;
}

static int test_token_bucket(void)
{
    struct ratelimit rl;
    uint64_t t = 1000000000ull;
    ratelimit_init(&rl, 5.0, 20.0, t);
    for (int i = 0; i < 20; i++)
        TEST_ASSERT(ratelimit_take(&rl, t)); /* the burst */
    TEST_ASSERT(!ratelimit_take(&rl, t));
    t += 199000000ull; /* 0.199 s: not yet one token at 5/s */
    TEST_ASSERT(!ratelimit_take(&rl, t));
    t += 1000000ull;
    TEST_ASSERT(ratelimit_take(&rl, t));
    TEST_ASSERT(!ratelimit_take(&rl, t));
    t += 3600ull * 1000000000ull; /* an hour refills only up to the burst */
    int taken = 0;
    while (ratelimit_take(&rl, t))
        taken++;
    TEST_ASSERT_INT(taken, 20);
    return 0;
}

TEST_MAIN(TEST_CASE(test_utf8), TEST_CASE(test_secret_equals), TEST_CASE(test_parse_int),
          TEST_CASE(test_buf), TEST_CASE(test_strmap),
          TEST_CASE(test_strmap_resists_chosen_collisions), TEST_CASE(test_budgets),
          TEST_CASE(test_token_bucket))
