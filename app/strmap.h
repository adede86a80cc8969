/* strmap: a hash map from NUL-terminated strings (copied) to pointers, for
 * rooms, users and refs, keyed with a random seed per process so that keys a
 * client chooses cannot be made to collide. Not thread-safe: the owner holds
 * its own lock. */
#ifndef TURBOCHAT_STRMAP_H
#define TURBOCHAT_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct strmap;

/* Called on each value by strmap_free and strmap_remove when set. */
typedef void (*strmap_free_fn)(void *value);

/* An empty map; free_value may be NULL (values are then not freed). */
struct strmap *strmap_create(strmap_free_fn free_value);
/* Free the map, its keys and (with free_value) its values. Accepts NULL. */
void strmap_free(struct strmap *map);

/* The value for key, or NULL. */
void *strmap_get(const struct strmap *map, const char *key);
/* Insert or replace; a replaced value is freed with free_value. */
void strmap_put(struct strmap *map, const char *key, void *value);
/* Remove key (freeing its value with free_value); true when it was there. */
bool strmap_remove(struct strmap *map, const char *key);
size_t strmap_count(const struct strmap *map);

/* Visit every entry in no particular order; the callback must not change the map.
 * Returns early when visit returns false. */
typedef bool (*strmap_visit_fn)(void *ctx, const char *key, void *value);
void strmap_each(const struct strmap *map, strmap_visit_fn visit, void *ctx);

/* The most entries one bucket holds: what a lookup may have to walk. */
size_t strmap_longest_chain(const struct strmap *map);

#endif
