/* strmap: separate chaining with a power-of-two table that doubles when the
 * load passes 1. Clients choose many keys (refs, room names), so the hash is
 * SipHash-2-4 keyed with a random seed per process: without the seed nobody
 * can make keys that share a bucket, which with an unkeyed hash turned 200,000
 * inserts into 38 s of work under a lock. */
#define _GNU_SOURCE
#include "strmap.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct strmap_entry {
    struct strmap_entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
};

struct strmap {
    struct strmap_entry **buckets;
    size_t bucket_count; /* power of two */
    size_t count;
    strmap_free_fn free_value;
};

static uint64_t seed[2]; /* SipHash key, set once per process */
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void)
{
    if (getrandom(seed, sizeof(seed), 0) == (ssize_t)sizeof(seed))
        return;
    /* No getrandom (an old kernel, a sandbox): still unpredictable enough
     * from outside, and said in the log. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed[0] = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts;
    seed[1] = ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)seed_init ^ seed[0] * 31;
    log_msg(LOG_WARN, "strmap_weak_seed", "reason=\"getrandom failed\"");
}

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13) ^ v0;                                                                    \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16) ^ v2;                                                                    \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21) ^ v0;                                                                    \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17) ^ v2;                                                                    \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

/* SipHash-2-4 of data[0, len) under the process's seed (the reference
 * algorithm of Aumasson and Bernstein, little-endian words). */
static uint64_t siphash(const unsigned char *data, size_t len)
{
    uint64_t v0 = seed[0] ^ 0x736f6d6570736575ull, v1 = seed[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = seed[0] ^ 0x6c7967656e657261ull, v3 = seed[1] ^ 0x7465646279746573ull;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = 0;
        for (int k = 7; k >= 0; k--)
            m = (m << 8) | data[i + (size_t)k];
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t k = 0; k < len % 8; k++)
        last |= (uint64_t)data[whole + k] << (8 * k);
    v3 ^= last;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xff;
    for (int r = 0; r < 4; r++)
        SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_key(const char *key)
{
    return siphash((const unsigned char *)key, strlen(key));
}

struct strmap *strmap_create(strmap_free_fn free_value)
{
    pthread_once(&seed_once, seed_init);
    struct strmap *map = xcalloc(1, sizeof(*map));
    map->bucket_count = 16;
    map->buckets = xcalloc(map->bucket_count, sizeof(*map->buckets));
    map->free_value = free_value;
    return map;
}

void strmap_free(struct strmap *map)
{
    if (!map)
        return;
    for (size_t i = 0; i < map->bucket_count; i++) {
        struct strmap_entry *e = map->buckets[i];
        while (e) {
            struct strmap_entry *next = e->next;
            if (map->free_value)
                map->free_value(e->value);
            free(e);
            e = next;
        }
    }
    free(map->buckets);
    free(map);
}

static struct strmap_entry **find_slot(const struct strmap *map, const char *key, uint64_t hash)
{
    struct strmap_entry **slot = &map->buckets[hash & (map->bucket_count - 1)];
    while (*slot && ((*slot)->hash != hash || strcmp((*slot)->key, key) != 0))
        slot = &(*slot)->next;
    return slot;
}

void *strmap_get(const struct strmap *map, const char *key)
{
    struct strmap_entry *e = *find_slot(map, key, hash_key(key));
    return e ? e->value : NULL;
}

static void grow(struct strmap *map)
{
    size_t new_count = map->bucket_count * 2;
    struct strmap_entry **buckets = xcalloc(new_count, sizeof(*buckets));
    for (size_t i = 0; i < map->bucket_count; i++) {
        struct strmap_entry *e = map->buckets[i];
        while (e) {
            struct strmap_entry *next = e->next;
            size_t b = e->hash & (new_count - 1);
            e->next = buckets[b];
            buckets[b] = e;
            e = next;
        }
    }
    free(map->buckets);
    map->buckets = buckets;
    map->bucket_count = new_count;
}

void strmap_put(struct strmap *map, const char *key, void *value)
{
    uint64_t hash = hash_key(key);
    struct strmap_entry **slot = find_slot(map, key, hash);
    if (*slot) {
        if (map->free_value && (*slot)->value != value)
            map->free_value((*slot)->value);
        (*slot)->value = value;
        return;
    }
    size_t len = strlen(key);
    struct strmap_entry *e = xmalloc(sizeof(*e) + len + 1);
    memcpy(e->key, key, len + 1);
    e->hash = hash;
    e->value = value;
    e->next = NULL;
    *slot = e;
    if (++map->count > map->bucket_count)
        grow(map);
}

bool strmap_remove(struct strmap *map, const char *key)
{
    struct strmap_entry **slot = find_slot(map, key, hash_key(key));
    struct strmap_entry *e = *slot;
    if (!e)
        return false;
    *slot = e->next;
    if (map->free_value)
        map->free_value(e->value);
    free(e);
    map->count--;
    return true;
}

size_t strmap_count(const struct strmap *map)
{
    return map->count;
}

void strmap_each(const struct strmap *map, strmap_visit_fn visit, void *ctx)
{
    for (size_t i = 0; i < map->bucket_count; i++) {
        for (struct strmap_entry *e = map->buckets[i]; e; e = e->next) {
            if (!visit(ctx, e->key, e->value))
                return;
        }
    }
}

size_t strmap_longest_chain(const struct strmap *map)
{
    size_t longest = 0;
    for (size_t i = 0; i < map->bucket_count; i++) {
        size_t n = 0;
        for (struct strmap_entry *e = map->buckets[i]; e; e = e->next)
            n++;
        longest = n > longest ? n : longest;
    }
    return longest;
}
