/* strmap: separate chaining with a power-of-two table that doubles when the
 * load passes 1; FNV-1a hashing of the key. */
#define _GNU_SOURCE
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

struct strmap *strmap_create(strmap_free_fn free_value)
{
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
