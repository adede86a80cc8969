/* budget: buckets keyed "u <user>" and "a <address>" in a strmap, linked in
 * a list from most to least recently used; a new key over max_buckets
 * evicts the tail. A bucket evicted and made again starts full: with the
 * least recently used one going first, that is a bucket idle for longest,
 * which had refilled anyway. */
#include "budget.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "strmap.h"
#include "util.h"

#define BUDGET_KEY_MAX 256 /* "u " or "a " and a user name (128 bytes) or an address */

struct bucket {
    struct bucket *newer; /* towards the head: more recently used */
    struct bucket *older;
    struct ratelimit limit;
    char *key; /* owned; the strmap holds a copy */
};

struct budgets {
    pthread_mutex_t lock;   /* everything below */
    struct strmap *buckets; /* key -> struct bucket */
    struct bucket *newest;
    struct bucket *oldest;
    size_t max_buckets;
    double rate[2]; /* per user, per address */
    double burst[2];
};

enum { PER_USER, PER_ADDRESS };

static void unlink_bucket(struct budgets *b, struct bucket *k)
{
    if (k->newer)
        k->newer->older = k->older;
    else
        b->newest = k->older;
    if (k->older)
        k->older->newer = k->newer;
    else
        b->oldest = k->newer;
    k->newer = k->older = NULL;
}

static void push_newest(struct budgets *b, struct bucket *k)
{
    k->older = b->newest;
    if (b->newest)
        b->newest->newer = k;
    else
        b->oldest = k;
    b->newest = k;
}

static void bucket_free(void *value)
{
    struct bucket *k = value;
    free(k->key);
    free(k);
}

/* The bucket of name of the given kind, made (full) when new and marked
 * most recently used. lock held. */
static struct bucket *bucket_of(struct budgets *b, int kind, const char *name, uint64_t now_ns)
{
    char key[BUDGET_KEY_MAX]; /* on the stack: a write allocates only for a new bucket */
    snprintf(key, sizeof(key), "%c %s", kind == PER_USER ? 'u' : 'a', name);
    struct bucket *k = strmap_get(b->buckets, key);
    if (k) {
        unlink_bucket(b, k);
        push_newest(b, k);
        return k;
    }
    if (strmap_count(b->buckets) >= b->max_buckets && b->oldest) {
        struct bucket *evicted = b->oldest;
        unlink_bucket(b, evicted);
        strmap_remove(b->buckets, evicted->key);
    }
    k = xcalloc(1, sizeof(*k));
    k->key = xstrdup(key);
    ratelimit_init(&k->limit, b->rate[kind], b->burst[kind], now_ns);
    strmap_put(b->buckets, key, k);
    push_newest(b, k);
    return k;
}

struct budgets *budgets_create(double user_rate, double user_burst, double address_rate,
                               double address_burst, size_t max_buckets)
{
    struct budgets *b = xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    b->buckets = strmap_create(bucket_free);
    b->max_buckets = max_buckets < 2 ? 2 : max_buckets;
    b->rate[PER_USER] = user_rate;
    b->burst[PER_USER] = user_burst;
    b->rate[PER_ADDRESS] = address_rate;
    b->burst[PER_ADDRESS] = address_burst;
    return b;
}

void budgets_free(struct budgets *b)
{
    if (!b)
        return;
    strmap_free(b->buckets);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

bool budgets_take(struct budgets *b, const char *user, const char *address, uint64_t now_ns)
{
    pthread_mutex_lock(&b->lock);
    struct bucket *by_address =
        b->rate[PER_ADDRESS] > 0 ? bucket_of(b, PER_ADDRESS, address ? address : "", now_ns) : NULL;
    /* Making by_user evicts the least recently used bucket, never by_address,
     * the most recent one (max_buckets is at least 2). */
    struct bucket *by_user = user ? bucket_of(b, PER_USER, user, now_ns) : NULL;
    bool ok = (!by_address || ratelimit_wait_s(&by_address->limit, now_ns) == 0) &&
              (!by_user || ratelimit_wait_s(&by_user->limit, now_ns) == 0);
    if (ok && by_address)
        ratelimit_take(&by_address->limit, now_ns);
    if (ok && by_user)
        ratelimit_take(&by_user->limit, now_ns);
    pthread_mutex_unlock(&b->lock);
    return ok;
}

size_t budgets_count(struct budgets *b)
{
    pthread_mutex_lock(&b->lock);
    size_t n = strmap_count(b->buckets);
    pthread_mutex_unlock(&b->lock);
    return n;
}
