/* test_store: the SQLite log against real database files in a temporary
 * directory: migrations, the writer queue and its callbacks, paging,
 * idempotency, rooms, refs, durability across reopen and readers running
 * while the writer commits. */
#include <errno.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assets.h"
#include "metrics.h"
#include "proto.h"
#include "store.h"
#include "test_help.h"
#include "util.h"

/* ---------------------------------------------------------------- fixtures */

#define MAX_MIGRATIONS 16

static char tmp_dir[256];
static char db_path[512];

/* The embedded migrations/ files, as main.c passes them, plus extra ones a
 * test appends; n_base counts the embedded ones. */
static struct store_migration migs[MAX_MIGRATIONS];
static size_t n_base;

/* rm -r path */
static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[1024];
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        if (d)
            closedir(d);
    }
    remove(path);
}

/* Fresh directory and database path for each test; db in a subdirectory
 * that does not exist yet, so store_create has to make it. */
static int setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_store.XXXXXX");
    if (!mkdtemp(tmp_dir))
        return -1;
    snprintf(db_path, sizeof(db_path), "%s/data/nested/chat.db", tmp_dir);

    size_t n = 0;
    const struct asset *all = assets_all(&n);
    n_base = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(all[i].path, "migrations/", 11) != 0 || n_base == MAX_MIGRATIONS)
            continue;
        migs[n_base].name = all[i].path;
        migs[n_base].sql = (const char *)all[i].data;
        n_base++;
    }
    return n_base > 0 ? 0 : -1;
}

static void teardown(void)
{
    remove_tree(tmp_dir);
}

static struct store *open_store(size_t n_migs, int batch_max, struct metrics *m)
{
    char err[256] = "";
    struct store *s = store_create(db_path, migs, n_migs, batch_max, m, err, sizeof(err));
    if (!s)
        fprintf(stderr, "store_create: %s\n", err);
    return s;
}

static struct chat_msg *make_msg(const char *room, uint64_t id, const char *user, const char *text,
                                 const char *ref, int64_t ts)
{
    struct chat_msg *m = chat_msg_create(room, user, text, ref);
    m->id = id;
    m->ts = ts;
    return m;
}

/* Counts callbacks; wait_for blocks until n have run. */
struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;        /* callbacks run */
    int failed;      /* callbacks with status != 0 */
    int last_status; /* status of the latest callback */
};

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void waiter_dispose(struct waiter *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void waiter_cb(void *ctx, int status)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->done++;
    w->failed += status != 0;
    w->last_status = status;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_for(struct waiter *w, int n)
{
    pthread_mutex_lock(&w->mu);
    while (w->done < n)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* Append one message and wait for its callback; returns its status. */
static int append_sync(struct store *s, struct chat_msg *msg)
{
    struct waiter w;
    waiter_init(&w);
    int rc = store_append(s, msg, waiter_cb, &w);
    if (rc == 0) {
        wait_for(&w, 1);
        rc = w.last_status;
    }
    waiter_dispose(&w);
    chat_msg_free(msg);
    return rc;
}

/* Wait until every job queued so far has been committed. */
static int flush(struct store *s)
{
    struct waiter w;
    waiter_init(&w);
    int rc = store_barrier(s, waiter_cb, &w);
    if (rc == 0) {
        wait_for(&w, 1);
        rc = w.last_status;
    }
    waiter_dispose(&w);
    return rc;
}

/* Queue ids first..last of room without waiting. */
static int append_range(struct store *s, const char *room, uint64_t first, uint64_t last)
{
    for (uint64_t id = first; id <= last; id++) {
        char text[32];
        snprintf(text, sizeof(text), "m%llu", (unsigned long long)id);
        struct chat_msg *m = make_msg(room, id, "u", text, NULL, 1000 + (int64_t)id);
        int rc = store_append(s, m, NULL, NULL);
        chat_msg_free(m);
        if (rc)
            return rc;
    }
    return 0;
}

/* True when msgs holds exactly ids first, first+1, ... (count of them). */
static bool ids_are(struct chat_msg **msgs, size_t count, uint64_t first, size_t want)
{
    if (count != want)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (msgs[i]->id != first + i)
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- migrations */

static int test_migrations_applied_once(void)
{
    TEST_ASSERT(setup() == 0);
    migs[n_base] =
        (struct store_migration){"migrations/0900_extra.sql", "CREATE TABLE extra (x INTEGER);"};

    struct store *s = open_store(n_base + 1, 8, NULL);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT(store_is_ready(s));
    store_free(s);

    /* Reapplying 0900 would fail: the table exists. */
    s = open_store(n_base + 1, 8, NULL);
    TEST_ASSERT(s != NULL);
    store_free(s);

    /* The version was recorded: a binary that knows only the shipped ones is refused. */
    char err[256] = "";
    s = store_create(db_path, migs, n_base, 8, NULL, err, sizeof(err));
    TEST_ASSERT(s == NULL);
    TEST_ASSERT(strstr(err, "database schema version 900 is newer than this binary (") != NULL);
    teardown();
    return 0;
}

static int test_newer_version_refused(void)
{
    TEST_ASSERT(setup() == 0);
    /* Stands for a newer binary that already ran: a row with version 999. */
    migs[n_base] = (struct store_migration){
        "0900_future.sql",
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 0);"};
    struct store *s = open_store(n_base + 1, 8, NULL);
    TEST_ASSERT(s != NULL);
    store_free(s);

    char err[256] = "";
    s = store_create(db_path, migs, n_base + 1, 8, NULL, err, sizeof(err));
    TEST_ASSERT(s == NULL);
    TEST_ASSERT_STR(err, "database schema version 999 is newer than this binary (900)");
    teardown();
    return 0;
}

static int test_migration_names_and_failures(void)
{
    TEST_ASSERT(setup() == 0);
    static const char *const bad[] = {
        "init.sql",  "0001init.sql", "0000_zero.sql",    "0001_.sql",      "0001_x.txt",
        "abc_x.sql", "0001_a b.sql", "1234567890_x.sql", "0001_x.sql.bak", "migrations/_x.sql",
    };
    char err[256];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct store_migration m = {bad[i], "CREATE TABLE t (x);"};
        err[0] = '\0';
        TEST_ASSERT(store_create(db_path, &m, 1, 8, NULL, err, sizeof(err)) == NULL);
        TEST_ASSERT(strstr(err, "malformed migration name") != NULL);
    }
    struct store_migration null_name = {NULL, "SELECT 1;"};
    TEST_ASSERT(store_create(db_path, &null_name, 1, 8, NULL, err, sizeof(err)) == NULL);

    /* Two files with one version. */
    struct store_migration dup[] = {{"0001_a.sql", "CREATE TABLE a (x);"},
                                    {"001_b.sql", "CREATE TABLE b (x);"}};
    TEST_ASSERT(store_create(db_path, dup, 2, 8, NULL, err, sizeof(err)) == NULL);
    TEST_ASSERT(strstr(err, "same version") != NULL);

    /* A failing migration is rolled back whole, its first statement included:
     * the fixed one applies cleanly afterwards. Order is by version, not by
     * position in the array. */
    struct store_migration listed[MAX_MIGRATIONS + 1] = {
        {"0900_two.sql", "CREATE TABLE two (x); NOT SQL;"}};
    memcpy(listed + 1, migs, n_base * sizeof(*migs));
    TEST_ASSERT(store_create(db_path, listed, n_base + 1, 8, NULL, err, sizeof(err)) == NULL);
    TEST_ASSERT(strstr(err, "migration 0900_two.sql failed") != NULL);
    listed[0].sql = "CREATE TABLE two (x);";
    struct store *s = store_create(db_path, listed, n_base + 1, 8, NULL, err, sizeof(err));
    TEST_ASSERT(s != NULL);
    store_free(s);

    /* Nonsense arguments. */
    TEST_ASSERT(store_create(db_path, migs, n_base, 0, NULL, err, sizeof(err)) == NULL);
    TEST_ASSERT(store_create(NULL, migs, n_base, 8, NULL, err, sizeof(err)) == NULL);
    teardown();
    return 0;
}

static int test_not_a_database(void)
{
    TEST_ASSERT(setup() == 0);
    snprintf(db_path, sizeof(db_path), "%s/garbage.db", tmp_dir);
    FILE *f = fopen(db_path, "w");
    TEST_ASSERT(f != NULL);
    for (int i = 0; i < 256; i++)
        fputs("this is not an sqlite database\n", f);
    fclose(f);
    char err[256] = "";
    TEST_ASSERT(store_create(db_path, migs, n_base, 8, NULL, err, sizeof(err)) == NULL);
    TEST_ASSERT(err[0] != '\0');
    teardown();
    return 0;
}

/* ---------------------------------------------------------------- writer */

/* Records the order callbacks ran in. */
struct order_rec {
    pthread_mutex_t mu;
    int *seen;      /* job index per callback, in callback order */
    int n;          /* callbacks run */
    int bad_status; /* callbacks with status != 0 */
};

struct order_slot {
    struct order_rec *rec;
    int index;
};

static void order_cb(void *ctx, int status)
{
    struct order_slot *slot = ctx;
    pthread_mutex_lock(&slot->rec->mu);
    slot->rec->seen[slot->rec->n++] = slot->index;
    slot->rec->bad_status += status != 0;
    pthread_mutex_unlock(&slot->rec->mu);
}

static int test_append_and_barrier_order(void)
{
    TEST_ASSERT(setup() == 0);
    struct metrics *m = metrics_create();
    struct store *s = open_store(n_base, 32, m);
    TEST_ASSERT(s != NULL);

    enum { JOBS = 2000 };
    struct order_rec rec = {.seen = calloc(JOBS, sizeof(int))};
    pthread_mutex_init(&rec.mu, NULL);
    struct order_slot *slots = calloc(JOBS, sizeof(*slots));
    uint64_t ids[2] = {0, 0};
    for (int i = 0; i < JOBS; i++) {
        slots[i] = (struct order_slot){&rec, i};
        if (i % 97 == 0) {
            TEST_ASSERT(store_barrier(s, order_cb, &slots[i]) == 0);
            continue;
        }
        const char *room = i % 2 ? "odd" : "even";
        struct chat_msg *msg = make_msg(room, ++ids[i % 2], "alice", "hi", NULL, i);
        TEST_ASSERT(store_append(s, msg, order_cb, &slots[i]) == 0);
        chat_msg_free(msg);
    }
    TEST_ASSERT(flush(s) == 0);

    pthread_mutex_lock(&rec.mu);
    int n = rec.n, bad = rec.bad_status;
    bool in_order = true;
    for (int i = 0; i < n; i++)
        in_order = in_order && rec.seen[i] == i;
    pthread_mutex_unlock(&rec.mu);
    TEST_ASSERT_INT(n, JOBS);
    TEST_ASSERT_INT(bad, 0);
    TEST_ASSERT(in_order);

    uint64_t last = 0;
    TEST_ASSERT(store_last_id(s, "odd", &last) == 0);
    TEST_ASSERT_INT(last, ids[1]);
    TEST_ASSERT(store_last_id(s, "even", &last) == 0);
    TEST_ASSERT_INT(last, ids[0]);

    TEST_ASSERT_INT(store_queue_depth(s), 0);
    TEST_ASSERT_INT(atomic_load(&m->store_queue_depth), 0);
    uint64_t commits = atomic_load(&m->store_commits);
    TEST_ASSERT(commits > 0 && commits <= JOBS);
    TEST_ASSERT_INT(atomic_load(&m->store_commit_seconds.count), commits);
    TEST_ASSERT_INT(atomic_load(&m->store_errors), 0);

    store_free(s);
    metrics_free(m);
    pthread_mutex_destroy(&rec.mu);
    free(rec.seen);
    free(slots);
    teardown();
    return 0;
}

static int test_insert_or_ignore(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);

    TEST_ASSERT(append_sync(s, make_msg("r", 1, "alice", "first", "a", 10)) == 0);
    TEST_ASSERT(append_sync(s, make_msg("r", 1, "bob", "second", NULL, 20)) == 0);
    TEST_ASSERT(append_sync(s, make_msg("other", 1, "carol", "elsewhere", NULL, 30)) == 0);

    struct chat_msg **msgs = NULL;
    size_t count = 0;
    bool more = true;
    TEST_ASSERT(store_fetch(s, "r", 0, 0, false, 10, &msgs, &count, &more) == 0);
    TEST_ASSERT_INT(count, 1);
    TEST_ASSERT(!more);
    TEST_ASSERT_STR(msgs[0]->room, "r");
    TEST_ASSERT_STR(msgs[0]->user, "alice");
    TEST_ASSERT_STR(msgs[0]->text, "first");
    TEST_ASSERT_STR(msgs[0]->ref, "a");
    TEST_ASSERT_INT(msgs[0]->ts, 10);
    store_free_messages(msgs, count);

    TEST_ASSERT(store_fetch(s, "other", 0, 0, false, 10, &msgs, &count, &more) == 0);
    TEST_ASSERT_INT(count, 1);
    TEST_ASSERT_STR(msgs[0]->text, "elsewhere");
    TEST_ASSERT(msgs[0]->ref == NULL);
    store_free_messages(msgs, count);

    /* Bad jobs are refused up front and their callbacks never run. */
    struct chat_msg *zero = make_msg("r", 0, "alice", "no id yet", NULL, 1);
    TEST_ASSERT_INT(store_append(s, zero, NULL, NULL), -EINVAL);
    chat_msg_free(zero);
    TEST_ASSERT_INT(store_append(s, NULL, NULL, NULL), -EINVAL);
    TEST_ASSERT_INT(store_barrier(NULL, NULL, NULL), -EINVAL);

    store_free(s);
    teardown();
    return 0;
}

/* A trigger makes one message fail: its batch rolls back, gets a negative
 * status, and the writer goes on with the next batch. */
static int test_commit_failure(void)
{
    TEST_ASSERT(setup() == 0);
    migs[n_base] = (struct store_migration){
        "0900_boom.sql", "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.text = 'boom'"
                         " BEGIN SELECT RAISE(ABORT, 'boom'); END;"};
    struct metrics *m = metrics_create();
    struct store *s = open_store(n_base + 1, 8, m);
    TEST_ASSERT(s != NULL);

    TEST_ASSERT(append_sync(s, make_msg("r", 1, "u", "fine", NULL, 1)) == 0);
    TEST_ASSERT_INT(append_sync(s, make_msg("r", 2, "u", "boom", NULL, 2)), -TC_ESTORE);
    TEST_ASSERT(append_sync(s, make_msg("r", 3, "u", "fine again", NULL, 3)) == 0);
    TEST_ASSERT_INT(atomic_load(&m->store_errors), 1);

    struct chat_msg **msgs = NULL;
    size_t count = 0;
    bool more;
    TEST_ASSERT(store_fetch(s, "r", 0, 0, false, 10, &msgs, &count, &more) == 0);
    TEST_ASSERT_INT(count, 2);
    TEST_ASSERT_INT(msgs[0]->id, 1);
    TEST_ASSERT_INT(msgs[1]->id, 3);
    store_free_messages(msgs, count);

    store_free(s);
    metrics_free(m);
    teardown();
    return 0;
}

/* A callback that blocks the writer until the test opens the gate. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered; /* the writer is in gate_cb */
    bool open;    /* gate_cb may return */
};

static void gate_init(struct gate *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gate_dispose(struct gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void gate_cb(void *ctx, int status)
{
    struct gate *g = ctx;
    (void)status;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int test_free_drains_queue(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 16, NULL);
    TEST_ASSERT(s != NULL);

    /* Hold the writer in a callback until everything is queued. */
    struct gate g;
    gate_init(&g);
    TEST_ASSERT(store_barrier(s, gate_cb, &g) == 0);
    gate_wait_entered(&g);

    enum { JOBS = 5000 };
    struct order_rec rec = {.seen = calloc(JOBS, sizeof(int))};
    pthread_mutex_init(&rec.mu, NULL);
    struct order_slot *slots = calloc(JOBS, sizeof(*slots));
    for (int i = 0; i < JOBS; i++) {
        slots[i] = (struct order_slot){&rec, i};
        struct chat_msg *msg = make_msg("q", (uint64_t)i + 1, "u", "queued", NULL, i);
        TEST_ASSERT(store_append(s, msg, order_cb, &slots[i]) == 0);
        chat_msg_free(msg);
    }
    TEST_ASSERT_INT(store_queue_depth(s), JOBS);
    gate_open(&g);
    store_free(s);
    gate_dispose(&g);

    TEST_ASSERT_INT(rec.n, JOBS);
    TEST_ASSERT_INT(rec.bad_status, 0);
    for (int i = 0; i < JOBS; i++)
        TEST_ASSERT_INT(rec.seen[i], i);

    s = open_store(n_base, 16, NULL);
    TEST_ASSERT(s != NULL);
    uint64_t last = 0;
    TEST_ASSERT(store_last_id(s, "q", &last) == 0);
    TEST_ASSERT_INT(last, JOBS);
    store_free(s);

    pthread_mutex_destroy(&rec.mu);
    free(rec.seen);
    free(slots);
    teardown();
    return 0;
}

/* ---------------------------------------------------------------- reads */

/* Check one page: ids first.. (n of them) and has_more. */
#define TEST_PAGE(s, room, before, after, limit, first, n, more)                                   \
    do {                                                                                           \
        struct chat_msg **pm_ = NULL;                                                              \
        size_t pc_ = 99;                                                                           \
        bool pmore_ = !(more);                                                                     \
        TEST_ASSERT_INT(store_fetch((s), (room), (before), (after), (after) > 0, (limit), &pm_,    \
                                    &pc_, &pmore_),                                                \
                        0);                                                                        \
        bool ok_ = ids_are(pm_, pc_, (first), (n));                                                \
        store_free_messages(pm_, pc_);                                                             \
        TEST_ASSERT(ok_);                                                                          \
        TEST_ASSERT_INT(pmore_, (more));                                                           \
    } while (0)

static int test_paging(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 4, NULL);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT(append_range(s, "p", 1, 10) == 0);
    TEST_ASSERT(flush(s) == 0);

    /* newest */
    TEST_PAGE(s, "p", 0, 0, 3, 8, 3, true);
    TEST_PAGE(s, "p", 0, 0, 9, 2, 9, true);
    TEST_PAGE(s, "p", 0, 0, 10, 1, 10, false);
    TEST_PAGE(s, "p", 0, 0, 200, 1, 10, false);
    /* before */
    TEST_PAGE(s, "p", 5, 0, 3, 2, 3, true);
    TEST_PAGE(s, "p", 4, 0, 3, 1, 3, false);
    TEST_PAGE(s, "p", 2, 0, 3, 1, 1, false);
    TEST_PAGE(s, "p", 1, 0, 3, 0, 0, false);
    TEST_PAGE(s, "p", 11, 0, 10, 1, 10, false);
    TEST_PAGE(s, "p", UINT64_MAX, 0, 2, 9, 2, true);
    /* after */
    TEST_PAGE(s, "p", 0, 6, 3, 7, 3, true);
    TEST_PAGE(s, "p", 0, 7, 3, 8, 3, false);
    TEST_PAGE(s, "p", 0, 9, 3, 10, 1, false);
    TEST_PAGE(s, "p", 0, 10, 3, 0, 0, false);
    TEST_PAGE(s, "p", 0, UINT64_MAX, 3, 0, 0, false);
    TEST_PAGE(s, "p", 0, 1, 9, 2, 9, false);
    TEST_PAGE(s, "p", 0, 1, 8, 2, 8, true);
    /* after wins over before */
    TEST_PAGE(s, "p", 3, 4, 2, 5, 2, true);
    /* unknown room */
    TEST_PAGE(s, "nowhere", 0, 0, 50, 0, 0, false);
    TEST_PAGE(s, "P", 0, 0, 50, 0, 0, false); /* case-sensitive */

    struct chat_msg **msgs = NULL;
    size_t count = 0;
    bool more;
    TEST_ASSERT_INT(store_fetch(s, "p", 0, 0, false, 0, &msgs, &count, &more), -EINVAL);
    TEST_ASSERT_INT(store_fetch(s, NULL, 0, 0, false, 5, &msgs, &count, &more), -EINVAL);

    /* ranges: after < id <= upto */
    TEST_ASSERT(store_fetch_range(s, "p", 2, 5, 10, &msgs, &count) == 0);
    TEST_ASSERT(ids_are(msgs, count, 3, 3));
    TEST_ASSERT_STR(msgs[0]->text, "m3");
    TEST_ASSERT_INT(msgs[0]->ts, 1003);
    store_free_messages(msgs, count);
    TEST_ASSERT(store_fetch_range(s, "p", 2, 5, 2, &msgs, &count) == 0);
    TEST_ASSERT(ids_are(msgs, count, 3, 2));
    store_free_messages(msgs, count);
    TEST_ASSERT(store_fetch_range(s, "p", 5, 5, 10, &msgs, &count) == 0);
    TEST_ASSERT_INT(count, 0);
    store_free_messages(msgs, count);
    TEST_ASSERT(store_fetch_range(s, "p", 0, UINT64_MAX, 100, &msgs, &count) == 0);
    TEST_ASSERT(ids_are(msgs, count, 1, 10));
    store_free_messages(msgs, count);

    /* a room with holes: pages count rows, not ids */
    struct chat_msg *m;
    static const uint64_t holes[] = {2, 5, 9, 30};
    for (size_t i = 0; i < ARRAY_LEN(holes); i++) {
        m = make_msg("h", holes[i], "u", "x", NULL, 1);
        TEST_ASSERT(store_append(s, m, NULL, NULL) == 0);
        chat_msg_free(m);
    }
    TEST_ASSERT(flush(s) == 0);
    TEST_ASSERT(store_fetch(s, "h", 30, 0, false, 2, &msgs, &count, &more) == 0);
    TEST_ASSERT_INT(count, 2);
    TEST_ASSERT_INT(msgs[0]->id, 5);
    TEST_ASSERT_INT(msgs[1]->id, 9);
    TEST_ASSERT(more);
    store_free_messages(msgs, count);
    TEST_ASSERT(store_fetch(s, "h", 0, 5, true, 2, &msgs, &count, &more) == 0);
    TEST_ASSERT_INT(count, 2);
    TEST_ASSERT_INT(msgs[0]->id, 9);
    TEST_ASSERT_INT(msgs[1]->id, 30);
    TEST_ASSERT(!more);
    store_free_messages(msgs, count);

    uint64_t id = 99;
    TEST_ASSERT(store_last_id(s, "h", &id) == 0);
    TEST_ASSERT_INT(id, 30);
    TEST_ASSERT(store_last_id(s, "nowhere", &id) == 0);
    TEST_ASSERT_INT(id, 0);

    store_free(s);
    teardown();
    return 0;
}

static int test_text_round_trip(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    const char *text = "h\xc3\xa9llo \xf0\x9f\x98\x80 '); DROP TABLE messages; --\n\t\"x\"";
    TEST_ASSERT(append_sync(s, make_msg("room.with-odd_name", 1, "\xc3\xa9ve", text, "r'1",
                                        1700000000123)) == 0);
    struct chat_msg **msgs = NULL;
    size_t count = 0;
    bool more;
    TEST_ASSERT(store_fetch(s, "room.with-odd_name", 0, 0, false, 1, &msgs, &count, &more) == 0);
    TEST_ASSERT_INT(count, 1);
    TEST_ASSERT_STR(msgs[0]->text, text);
    TEST_ASSERT_STR(msgs[0]->user, "\xc3\xa9ve");
    TEST_ASSERT_STR(msgs[0]->ref, "r'1");
    TEST_ASSERT_INT(msgs[0]->ts, 1700000000123);
    store_free_messages(msgs, count);
    store_free(s);
    teardown();
    return 0;
}

static int test_list_rooms(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);

    struct store_room *rooms = NULL;
    size_t count = 99;
    TEST_ASSERT(store_list_rooms(s, NULL, 0, &rooms, &count) == 0);
    TEST_ASSERT_INT(count, 0);
    store_free_rooms(rooms, count);

    TEST_ASSERT(append_range(s, "general", 1, 7) == 0);
    TEST_ASSERT(append_range(s, "b-room", 1, 3) == 0);
    TEST_ASSERT(append_range(s, "a.room", 1, 12) == 0);
    TEST_ASSERT(append_range(s, "Zed", 5, 5) == 0);
    TEST_ASSERT(append_range(s, "b", 1, 1) == 0);
    TEST_ASSERT(flush(s) == 0);

    TEST_ASSERT(store_list_rooms(s, NULL, 0, &rooms, &count) == 0);
    TEST_ASSERT_INT(count, 5);
    static const char *const names[] = {"Zed", "a.room", "b", "b-room", "general"};
    static const uint64_t last[] = {5, 12, 1, 3, 7};
    for (size_t i = 0; i < count; i++) {
        TEST_ASSERT_STR(rooms[i].name, names[i]);
        TEST_ASSERT_INT(rooms[i].last_id, last[i]);
    }
    store_free_rooms(rooms, count);

    /* In pages, past the server's own logs ("." names sort among rooms). */
    TEST_ASSERT(append_range(s, ".accounts", 1, 2) == 0);
    TEST_ASSERT(append_range(s, ".read.abc", 1, 2) == 0);
    TEST_ASSERT(append_range(s, "-dash", 1, 1) == 0);
    TEST_ASSERT(flush(s) == 0);
    static const char *const paged[] = {"-dash", "Zed", "a.room", "b", "b-room", "general"};
    const char *after = NULL;
    char *last_name = NULL;
    size_t seen = 0;
    do {
        TEST_ASSERT(store_list_rooms(s, after, 2, &rooms, &count) == 0);
        TEST_ASSERT(count <= 2);
        for (size_t i = 0; i < count; i++)
            TEST_ASSERT_STR(rooms[i].name, paged[seen++]);
        free(last_name);
        last_name = count ? strdup(rooms[count - 1].name) : NULL;
        after = last_name;
        store_free_rooms(rooms, count);
    } while (count == 2);
    free(last_name);
    TEST_ASSERT_INT(seen, 6);
    store_free(s);
    teardown();
    return 0;
}

static int test_find_ref(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    int64_t now = util_now_ms();
    TEST_ASSERT(append_sync(s, make_msg("r", 1, "alice", "hello", "k1", now - 1000)) == 0);
    TEST_ASSERT(append_sync(s, make_msg("r", 2, "bob", "other user", "k1", now)) == 0);
    TEST_ASSERT(append_sync(s, make_msg("r", 3, "alice", "no ref", NULL, now)) == 0);
    TEST_ASSERT(append_sync(s, make_msg("r", 4, "alice", "retry", "k1", now)) == 0);
    TEST_ASSERT(append_sync(s, make_msg("old", 1, "alice", "ancient", "k2", now - 600000)) == 0);

    struct chat_msg *m = NULL;
    /* within the window: the first message with that ref */
    TEST_ASSERT(store_find_ref(s, "r", "alice", "k1", now - 300000, &m) == 0);
    TEST_ASSERT_INT(m->id, 1);
    TEST_ASSERT_STR(m->text, "hello");
    TEST_ASSERT_STR(m->room, "r");
    TEST_ASSERT_STR(m->user, "alice");
    TEST_ASSERT_STR(m->ref, "k1");
    TEST_ASSERT_INT(m->ts, now - 1000);
    chat_msg_free(m);
    TEST_ASSERT(store_find_ref(s, "r", "bob", "k1", now - 300000, &m) == 0);
    TEST_ASSERT_INT(m->id, 2);
    chat_msg_free(m);
    /* since_ts is inclusive */
    TEST_ASSERT(store_find_ref(s, "old", "alice", "k2", now - 600000, &m) == 0);
    TEST_ASSERT_INT(m->id, 1);
    chat_msg_free(m);

    /* outside the window, other user, room or ref */
    m = NULL;
    TEST_ASSERT_INT(store_find_ref(s, "old", "alice", "k2", now - 300000, &m), -ENOENT);
    TEST_ASSERT(m == NULL);
    TEST_ASSERT_INT(store_find_ref(s, "r", "carol", "k1", 0, &m), -ENOENT);
    TEST_ASSERT_INT(store_find_ref(s, "old", "alice", "k1", 0, &m), -ENOENT);
    TEST_ASSERT_INT(store_find_ref(s, "r", "alice", "k3", 0, &m), -ENOENT);
    TEST_ASSERT_INT(store_find_ref(s, "r", "alice", "K1", 0, &m), -ENOENT);
    TEST_ASSERT_INT(store_find_ref(s, "r", "alice", NULL, 0, &m), -EINVAL);
    store_free(s);
    teardown();
    return 0;
}

static int test_survives_reopen(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT(append_range(s, "keep", 1, 300) == 0);
    TEST_ASSERT(append_sync(s, make_msg("keep", 301, "u", "last", "ref", 5)) == 0);
    store_free(s);

    s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT(store_is_ready(s));
    TEST_PAGE(s, "keep", 0, 0, 50, 252, 50, true);
    uint64_t last = 0;
    TEST_ASSERT(store_last_id(s, "keep", &last) == 0);
    TEST_ASSERT_INT(last, 301);
    struct chat_msg *m = NULL;
    TEST_ASSERT(store_find_ref(s, "keep", "u", "ref", 0, &m) == 0);
    TEST_ASSERT_STR(m->text, "last");
    chat_msg_free(m);
    store_free(s);
    teardown();
    return 0;
}

static int test_null_safety(void)
{
    store_free(NULL);
    store_free_messages(NULL, 0);
    store_free_rooms(NULL, 0);
    TEST_ASSERT(!store_is_ready(NULL));
    TEST_ASSERT_INT(store_queue_depth(NULL), 0);
    uint64_t id;
    TEST_ASSERT_INT(store_last_id(NULL, "r", &id), -EINVAL);
    return 0;
}

/* ---------------------------------------------------------------- concurrency */

#define CONC_ROWS 20000
#define CONC_READERS 12 /* more than the pool holds: some wait for a connection */

struct conc {
    struct store *s;
    atomic_bool done;  /* the writer finished */
    atomic_int errors; /* failed calls or broken invariants */
    atomic_long reads; /* pages read */
};

static void conc_fail(struct conc *c, const char *what, long a, long b)
{
    if (atomic_fetch_add(&c->errors, 1) < 5)
        fprintf(stderr, "reader: %s (%ld, %ld)\n", what, a, b);
}

/* Every snapshot a reader sees must be a prefix 1..k of the room: batches
 * become visible whole and in order. */
static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    uint64_t seen_last = 0, cursor = 0;
    while (!atomic_load(&c->done) || cursor < CONC_ROWS) {
        uint64_t last = 0;
        if (store_last_id(c->s, "c", &last) != 0) {
            conc_fail(c, "last_id", 0, 0);
            break;
        }
        if (last < seen_last)
            conc_fail(c, "last_id went back", (long)last, (long)seen_last);
        seen_last = last;

        struct chat_msg **msgs = NULL;
        size_t count = 0;
        bool more = false;
        if (store_fetch(c->s, "c", 0, 0, false, 50, &msgs, &count, &more) != 0) {
            conc_fail(c, "fetch newest", 0, 0);
            break;
        }
        if (count > 0) {
            uint64_t top = msgs[count - 1]->id;
            if (top < last)
                conc_fail(c, "newest page older than last_id", (long)top, (long)last);
            if (!ids_are(msgs, count, msgs[0]->id, count))
                conc_fail(c, "newest page not contiguous", (long)msgs[0]->id, (long)count);
            if (more != (msgs[0]->id > 1))
                conc_fail(c, "has_more wrong", (long)msgs[0]->id, more);
        }
        store_free_messages(msgs, count);

        /* Walk forward like a client catching up. after = 0 means "no
         * after" to store_fetch, so the first step is a range. */
        int rc = cursor == 0
                     ? store_fetch_range(c->s, "c", 0, UINT64_MAX, 200, &msgs, &count)
                     : store_fetch(c->s, "c", 0, cursor, cursor > 0, 200, &msgs, &count, &more);
        if (rc != 0) {
            conc_fail(c, "fetch after", (long)cursor, 0);
            break;
        }
        if (!ids_are(msgs, count, cursor + 1, count))
            conc_fail(c, "after page not contiguous", (long)cursor, (long)count);
        cursor += count;
        store_free_messages(msgs, count);
        atomic_fetch_add(&c->reads, 1);
    }
    if (cursor != CONC_ROWS)
        conc_fail(c, "reader did not reach the end", (long)cursor, CONC_ROWS);
    return NULL;
}

static int test_readers_during_writes(void)
{
    TEST_ASSERT(setup() == 0);
    struct metrics *m = metrics_create();
    struct conc c = {.s = open_store(n_base, 64, m)};
    TEST_ASSERT(c.s != NULL);

    pthread_t readers[CONC_READERS];
    for (int i = 0; i < CONC_READERS; i++)
        TEST_ASSERT(pthread_create(&readers[i], NULL, conc_reader, &c) == 0);

    struct waiter w;
    waiter_init(&w);
    for (uint64_t id = 1; id <= CONC_ROWS; id++) {
        struct chat_msg *msg = make_msg("c", id, "writer", "payload", NULL, (int64_t)id);
        TEST_ASSERT(store_append(c.s, msg, waiter_cb, &w) == 0);
        chat_msg_free(msg);
        if (id % 1000 == 0) /* let readers interleave with many commits */
            wait_for(&w, (int)id - 500);
    }
    wait_for(&w, CONC_ROWS);
    atomic_store(&c.done, true);
    for (int i = 0; i < CONC_READERS; i++)
        pthread_join(readers[i], NULL);

    TEST_ASSERT_INT(w.failed, 0);
    TEST_ASSERT_INT(atomic_load(&c.errors), 0);
    TEST_ASSERT(atomic_load(&c.reads) > 0);
    TEST_ASSERT(atomic_load(&m->store_commits) >= CONC_ROWS / 64);
    waiter_dispose(&w);
    store_free(c.s);
    metrics_free(m);
    teardown();
    return 0;
}

/* ---------------------------------------------------------------- changes */

/* The events of one story of message 1 in room: edits, reactions, a reply,
 * and last a delete by a moderator. */
static struct chat_msg *story_event(const char *room, int i)
{
    struct chat_msg *ev;
    switch (i) {
    case 0:
        return make_msg(room, 1, "alice", "hello", NULL, 1000);
    case 1:
        ev = make_msg(room, 2, "bob", "hi @alice", NULL, 1001);
        ev->reply_to = 1;
        ev->reply_user = strdup("alice");
        ev->reply_text = strdup("hello");
        chat_msg_add_mention(ev, "alice");
        return ev;
    case 2:
    case 6:
        ev = make_msg(room, i + 1, "alice", i == 2 ? "hello there" : "final", NULL, 1000 + i);
        ev->kind = CHAT_EDIT;
        break;
    case 3:
    case 4:
    case 5:
        ev = make_msg(room, i + 1, i == 4 ? "carol" : "bob", "", NULL, 1000 + i);
        ev->kind = i == 5 ? CHAT_UNREACT : CHAT_REACT;
        ev->emoji = strdup("👍");
        break;
    default:
        ev = make_msg(room, 8, "mod", "", NULL, 1007);
        ev->kind = CHAT_DELETE;
        break;
    }
    ev->target = 1;
    return ev;
}

/* Search hits into buf, as "index ID: TEXT" lines (room NULL: every room,
 * as "ROOM/ID" joined by commas). */
struct index_dump {
    struct util_buf *buf;
    const char *room;
    const char *sep;
};

static bool dump_hit(void *ctx, const struct store_search_hit *hit)
{
    struct index_dump *d = ctx;
    if (!d->room) {
        util_buf_appendf(d->buf, "%s%s/%" PRIu64, d->sep, hit->room, hit->id);
        d->sep = ",";
    } else if (strcmp(hit->room, d->room) == 0) {
        util_buf_appendf(d->buf, "index %" PRIu64 ": %s\n", hit->id, hit->text);
    }
    return true;
}

/* Every event of room as JSON, the room name left out, for comparing rooms. */
static char *room_state(struct store *s, const char *room)
{
    struct chat_msg **msgs = NULL;
    size_t count = 0;
    if (store_fetch_range(s, room, 0, 100, 100, &msgs, &count) != 0)
        return NULL;
    struct util_buf buf;
    util_buf_init(&buf);
    for (size_t i = 0; i < count; i++) {
        free(msgs[i]->room);
        msgs[i]->room = strdup("-");
        char *json = proto_encode_event(msgs[i], NULL);
        util_buf_appendf(&buf, "%s\n", json);
        free(json);
    }
    store_free_messages(msgs, count);
    /* and what the search index holds of it */
    struct index_dump dump = {&buf, room, ""};
    struct store_search_query q = {.examine = 100};
    struct store_search_walk walk;
    if (store_search(s, &q, dump_hit, &dump, &walk) != 0) {
        util_buf_dispose(&buf);
        return NULL;
    }
    return util_buf_take(&buf, NULL);
}

/* A change applies to its message: the highest edit gives the text, the last
 * reaction event of (emoji, user) decides, a delete erases the text of the
 * message, its edits and its replies' quotes. */
static int test_changes_apply(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    for (int i = 0; i < 7; i++)
        TEST_ASSERT_INT(append_sync(s, story_event("a", i)), 0);
    struct chat_msg *m = NULL;
    TEST_ASSERT_INT(store_get_event(s, "a", 1, &m), 0);
    TEST_ASSERT_STR(m->text, "final");
    TEST_ASSERT_INT(m->edited_ts, 1006);
    TEST_ASSERT_INT(m->reaction_count, 1);
    TEST_ASSERT_STR(m->reactions[0].user, "carol");
    TEST_ASSERT_INT(m->reactions[0].event_id, 5);
    chat_msg_free(m);
    char *name = NULL;
    TEST_ASSERT_INT(store_find_room_user(s, "a", "ALICE", &name), 0);
    TEST_ASSERT_STR(name, "alice");
    free(name);
    TEST_ASSERT_INT(store_find_room_user(s, "a", "carol", &name), -ENOENT); /* only reacted */

    TEST_ASSERT_INT(append_sync(s, story_event("a", 7)), 0);
    TEST_ASSERT_INT(store_get_event(s, "a", 1, &m), 0);
    TEST_ASSERT(m->deleted_by && strcmp(m->deleted_by, "mod") == 0);
    TEST_ASSERT_STR(m->text, "");
    TEST_ASSERT_INT(m->reaction_count, 0);
    chat_msg_free(m);
    for (uint64_t id = 2; id <= 7; id += 5) {
        TEST_ASSERT_INT(store_get_event(s, "a", id == 2 ? 3 : 7, &m), 0);
        TEST_ASSERT_STR(m->text, ""); /* the edits' text is gone too */
        chat_msg_free(m);
    }
    TEST_ASSERT_INT(store_get_event(s, "a", 2, &m), 0);
    TEST_ASSERT_STR(m->reply_text, "");
    TEST_ASSERT_INT(m->reply_to, 1);
    TEST_ASSERT_INT(m->mention_count, 1);
    chat_msg_free(m);
    /* History lists messages, not their changes. */
    struct chat_msg **msgs = NULL;
    size_t count = 0;
    bool more;
    TEST_ASSERT_INT(store_fetch(s, "a", 0, 0, false, 50, &msgs, &count, &more), 0);
    TEST_ASSERT_INT(count, 2);
    store_free_messages(msgs, count);
    /* alice has one unread message of others, which mentions her; once it
     * is deleted it counts for neither. */
    uint64_t last_read;
    int unread, mentions;
    TEST_ASSERT_INT(store_unread(s, "a", "alice", &last_read, &unread, &mentions), 0);
    TEST_ASSERT(last_read == 0 && unread == 1 && mentions == 1);
    struct chat_msg *del = make_msg("a", 9, "bob", "", NULL, 1009);
    del->kind = CHAT_DELETE;
    del->target = 2;
    TEST_ASSERT_INT(append_sync(s, del), 0);
    TEST_ASSERT_INT(store_unread(s, "a", "alice", &last_read, &unread, &mentions), 0);
    TEST_ASSERT(unread == 0 && mentions == 0);
    store_free(s);
    teardown();
    return 0;
}

/* Whatever order a node stores the events in (a retried commit comes late),
 * it ends in the same state as a node that stored them in id order. */
static int test_changes_converge_in_any_order(void)
{
    static const int orders[][8] = {
        {0, 1, 2, 3, 4, 5, 6, 7}, {7, 6, 5, 4, 3, 2, 1, 0}, {6, 2, 0, 5, 3, 4, 7, 1},
        {1, 3, 7, 0, 6, 5, 2, 4}, {0, 6, 2, 4, 5, 3, 1, 7},
    };
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    char *expected = NULL;
    for (size_t o = 0; o < ARRAY_LEN(orders); o++) {
        char room[8];
        snprintf(room, sizeof(room), "o%zu", o);
        for (int i = 0; i < 8; i++)
            TEST_ASSERT_INT(append_sync(s, story_event(room, orders[o][i])), 0);
        char *state = room_state(s, room);
        TEST_ASSERT(state != NULL);
        if (!expected) {
            expected = state;
            continue;
        }
        if (strcmp(state, expected) != 0)
            fprintf(stderr, "order %zu:\n%s\nexpected:\n%s\n", o, state, expected);
        TEST_ASSERT_STR(state, expected);
        free(state);
    }
    /* Without the delete the edits and reactions converge too. */
    free(expected);
    expected = NULL;
    for (size_t o = 0; o < ARRAY_LEN(orders); o++) {
        char room[8];
        snprintf(room, sizeof(room), "p%zu", o);
        for (int i = 0; i < 8; i++) {
            if (orders[o][i] != 7)
                TEST_ASSERT_INT(append_sync(s, story_event(room, orders[o][i])), 0);
        }
        char *state = room_state(s, room);
        TEST_ASSERT(state && strstr(state, "\"text\":\"final\""));
        if (!expected) {
            expected = state;
            continue;
        }
        TEST_ASSERT_STR(state, expected);
        free(state);
    }
    free(expected);
    store_free(s);
    teardown();
    return 0;
}

/* The ids store_search gives for match, newest first, as "a/3,a/1". */
static char *search_ids(struct store *s, const char *match, uint64_t before, int limit,
                        uint64_t *last_position)
{
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_append(&buf, "", 0);
    struct index_dump dump = {&buf, NULL, ""};
    struct store_search_query q = {.match = match, .before = before, .examine = limit};
    struct store_search_walk walk;
    if (store_search(s, &q, dump_hit, &dump, &walk) != 0) {
        util_buf_dispose(&buf);
        return NULL;
    }
    *last_position = walk.last_position;
    return util_buf_take(&buf, NULL);
}

#define TEST_ASSERT_SEARCH(s, match, expected)                                                     \
    do {                                                                                           \
        uint64_t pos_;                                                                             \
        char *ids_ = search_ids((s), (match), 0, 50, &pos_);                                       \
        TEST_ASSERT(ids_ != NULL);                                                                 \
        TEST_ASSERT_STR(ids_, (expected));                                                         \
        free(ids_);                                                                                \
    } while (0)

/* The index finds substrings in any script, newest first by ts whatever the
 * order of storing, follows edits, forgets deletes, and pages by position;
 * messages stored before the index existed are indexed by its migration. */
static int test_search_index(void)
{
    TEST_ASSERT(setup() == 0);
    /* A message already in the log when the search migration runs. */
    size_t search_mig = 0;
    while (search_mig < n_base && !strstr(migs[search_mig].name, "_search"))
        search_mig++;
    TEST_ASSERT(search_mig > 0 && search_mig < n_base);
    struct util_buf seeded;
    util_buf_init(&seeded);
    util_buf_appendf(&seeded,
                     "%s;\nINSERT INTO messages (room, id, user, text, ts)"
                     " VALUES ('a', 1, 'alice', 'Hello World', 5000);",
                     migs[search_mig - 1].sql);
    char *seeded_sql = util_buf_take(&seeded, NULL);
    const char *real_sql = migs[search_mig - 1].sql;
    migs[search_mig - 1].sql = seeded_sql;
    struct store *s = open_store(n_base, 8, NULL);
    migs[search_mig - 1].sql = real_sql;
    free(seeded_sql);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT_INT(append_sync(s, make_msg("b", 1, "bob", "東京タワーに行きました", NULL, 7000)),
                    0);
    TEST_ASSERT_INT(append_sync(s, make_msg("a", 2, "bob", "hello again", NULL, 6000)), 0);
    TEST_ASSERT_INT(append_sync(s, make_msg("a", 3, "bob", "same millisecond hello", NULL, 6000)),
                    0);
    TEST_ASSERT_SEARCH(s, "\"ELLO\"", "a/3,a/2,a/1"); /* 6000 twice: both found */
    TEST_ASSERT_SEARCH(s, "\"タワー\"", "b/1");
    TEST_ASSERT_SEARCH(s, "\"ello\" \"again\"", "a/2");
    TEST_ASSERT_SEARCH(s, NULL, "b/1,a/3,a/2,a/1");

    uint64_t position = 0;
    char *page = search_ids(s, NULL, 0, 2, &position);
    TEST_ASSERT_STR(page, "b/1,a/3");
    free(page);
    page = search_ids(s, NULL, position, 2, &position);
    TEST_ASSERT_STR(page, "a/2,a/1");
    free(page);

    struct chat_msg *edit = make_msg("a", 4, "alice", "Goodbye", NULL, 8000);
    edit->kind = CHAT_EDIT;
    edit->target = 1;
    TEST_ASSERT_INT(append_sync(s, edit), 0);
    TEST_ASSERT_SEARCH(s, "\"hello\"", "a/3,a/2");
    TEST_ASSERT_SEARCH(s, "\"goodbye\"", "a/1");
    struct chat_msg *del = make_msg("a", 5, "alice", "", NULL, 9000);
    del->kind = CHAT_DELETE;
    del->target = 1;
    TEST_ASSERT_INT(append_sync(s, del), 0);
    TEST_ASSERT_SEARCH(s, "\"goodbye\"", "");
    TEST_ASSERT_SEARCH(s, NULL, "b/1,a/3,a/2");
    store_free(s);
    teardown();
    return 0;
}

/* ---------------------------------------------------------------- accounts */

static struct chat_msg *account_event(uint64_t id, enum chat_kind kind, const char *json,
                                      const char *claim)
{
    struct chat_msg *ev = make_msg(CHAT_ACCOUNTS_LOG, id, "x", json, NULL, 1000 + (int64_t)id);
    ev->kind = kind;
    ev->claim = claim ? strdup(claim) : NULL;
    return ev;
}

/* Accounts, sessions and their ends, as the events of the accounts log make
 * them: the first account is admin, the latest record wins, a signout ends
 * one session and signout_all every earlier one, whatever the order. */
static int test_account_events(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    const char *bob = "{\"name\":\"Bob\",\"hash\":\"h1\",\"display\":\"Bob\",\"color\":\"#000000\","
                      "\"disabled\":false,\"created\":5}";
    const char *bob2 = "{\"name\":\"Bob\",\"hash\":\"h2\",\"display\":\"Bobby\","
                       "\"color\":\"#000000\",\"disabled\":true,\"created\":5}";
    const char *amy = "{\"name\":\"amy\",\"hash\":\"h3\",\"display\":\"amy\",\"color\":\"#111111\","
                      "\"disabled\":false,\"created\":3}";
    /* Bob's change (id 4) is stored before his creation (id 2): the record of
     * id 4 holds; amy (id 1) arrives last and is still the first account. */
    TEST_ASSERT_INT(append_sync(s, account_event(4, CHAT_ACCOUNT, bob2, NULL)), 0);
    TEST_ASSERT_INT(append_sync(s, account_event(2, CHAT_ACCOUNT, bob, "name:bob")), 0);
    struct store_account acc;
    TEST_ASSERT_INT(store_get_account(s, "BOB", &acc), 0);
    TEST_ASSERT_STR(acc.display, "Bobby");
    TEST_ASSERT(acc.disabled);
    TEST_ASSERT_STR(acc.role, "admin");
    store_account_dispose(&acc);
    TEST_ASSERT_INT(append_sync(s, account_event(1, CHAT_ACCOUNT, amy, "name:amy")), 0);
    TEST_ASSERT_INT(store_get_account(s, "bob", &acc), 0);
    TEST_ASSERT_STR(acc.role, "user");
    store_account_dispose(&acc);
    TEST_ASSERT_INT(store_get_account(s, "Amy", &acc), 0);
    TEST_ASSERT_STR(acc.role, "admin");
    store_account_dispose(&acc);
    TEST_ASSERT_INT(store_has_claim(s, CHAT_ACCOUNTS_LOG, "name:bob"), 1);
    TEST_ASSERT_INT(store_has_claim(s, CHAT_ACCOUNTS_LOG, "name:carl"), 0);

    /* amy's sessions: s1 ends by signout (stored before the session), s2 by
     * signout_all, s3 (after it) holds. */
    TEST_ASSERT_INT(append_sync(s, account_event(6, CHAT_SIGNOUT, "{\"sid\":\"s1\"}", NULL)), 0);
    const char *fmt = "{\"name\":\"amy\",\"sid\":\"%s\",\"tid\":\"t%s\",\"expires\":99}";
    char json[128];
    snprintf(json, sizeof(json), fmt, "s1", "1");
    TEST_ASSERT_INT(append_sync(s, account_event(5, CHAT_SESSION, json, NULL)), 0);
    snprintf(json, sizeof(json), fmt, "s2", "2");
    TEST_ASSERT_INT(append_sync(s, account_event(7, CHAT_SESSION, json, NULL)), 0);
    TEST_ASSERT_INT(append_sync(s, account_event(8, CHAT_SIGNOUT_ALL, "{\"name\":\"AMY\"}", NULL)),
                    0);
    snprintf(json, sizeof(json), fmt, "s3", "3");
    TEST_ASSERT_INT(append_sync(s, account_event(9, CHAT_SESSION, json, NULL)), 0);
    struct store_session session;
    const char *ids[] = {"s1", "s2", "s3"};
    for (int i = 0; i < 3; i++) {
        TEST_ASSERT_INT(store_find_session(s, ids[i], false, &session), 0);
        TEST_ASSERT_STR(session.user, "amy");
        TEST_ASSERT(session.active == (i == 2));
        store_session_dispose(&session);
    }
    TEST_ASSERT_INT(store_find_session(s, "t3", true, &session), 0);
    TEST_ASSERT_STR(session.sid, "s3");
    store_session_dispose(&session);
    TEST_ASSERT_INT(store_find_session(s, "nope", true, &session), -ENOENT);
    store_free(s);
    teardown();
    return 0;
}

/* ---------------------------------------------------------------- moderation */

static struct chat_msg *sanction_event(const char *room, uint64_t id, enum chat_kind kind,
                                       const char *by)
{
    struct chat_msg *ev = make_msg(room, id, by, "{\"member\":\"Bob\"}", NULL, 100 + (int64_t)id);
    ev->kind = kind;
    return ev;
}

/* Mutes and bans: per (room, user) and per sanction the highest event id
 * decides, in whatever order the events are stored. */
static int test_sanctions_converge_in_any_order(void)
{
    static const enum chat_kind kinds[] = {CHAT_MUTE,  CHAT_BAN, CHAT_UNMUTE,
                                           CHAT_UNBAN, CHAT_BAN, CHAT_MUTE};
    static const char *const by[] = {"amy", "amy", "amy", "carl", "carl", "dan"};
    static const int orders[][6] = {
        {0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {4, 0, 5, 3, 1, 2}, {2, 5, 1, 0, 4, 3}};
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    for (size_t o = 0; o < ARRAY_LEN(orders); o++) {
        char room[16];
        snprintf(room, sizeof(room), "r%zu", o);
        for (int i = 0; i < 6; i++) {
            int k = orders[o][i];
            TEST_ASSERT_INT(append_sync(s, sanction_event(room, (uint64_t)k + 1, kinds[k], by[k])),
                            0);
        }
        struct store_sanction sanction;
        TEST_ASSERT_INT(store_sanction(s, room, "BOB", &sanction), 0);
        TEST_ASSERT(sanction.muted && sanction.banned);
        struct store_sanction_row *rows;
        size_t count;
        TEST_ASSERT_INT(store_list_sanctions(s, room, &rows, &count), 0);
        TEST_ASSERT_INT(count, 1);
        TEST_ASSERT_STR(rows[0].user, "Bob");
        TEST_ASSERT_STR(rows[0].mute_by, "dan");
        TEST_ASSERT_INT(rows[0].mute_ts, 106);
        TEST_ASSERT_STR(rows[0].ban_by, "carl");
        TEST_ASSERT_INT(rows[0].ban_ts, 105);
        store_free_sanctions(rows, count);
    }
    /* Lifted: no longer listed, and a user never sanctioned is neither. */
    TEST_ASSERT_INT(append_sync(s, sanction_event("r0", 8, CHAT_UNBAN, "amy")), 0);
    TEST_ASSERT_INT(append_sync(s, sanction_event("r0", 7, CHAT_UNMUTE, "amy")), 0);
    TEST_ASSERT_INT(append_sync(s, sanction_event("r0", 9, CHAT_MUTE, "amy")), 0);
    struct store_sanction sanction;
    TEST_ASSERT_INT(store_sanction(s, "r0", "bob", &sanction), 0);
    TEST_ASSERT(sanction.muted && !sanction.banned);
    TEST_ASSERT_INT(append_sync(s, sanction_event("r0", 10, CHAT_UNMUTE, "amy")), 0);
    struct store_sanction_row *rows;
    size_t count;
    TEST_ASSERT_INT(store_list_sanctions(s, "r0", &rows, &count), 0);
    TEST_ASSERT_INT(count, 0);
    store_free_sanctions(rows, count);
    TEST_ASSERT_INT(store_sanction(s, "r1", "carl", &sanction), 0);
    TEST_ASSERT(!sanction.muted && !sanction.banned);
    /* The maker of a public room owns it; nobody owns a room of no event. */
    struct chat_msg *made = make_msg("pub", 1, "Amy", "{\"private\":false}", NULL, 1);
    made->kind = CHAT_ROOM;
    TEST_ASSERT_INT(append_sync(s, made), 0);
    TEST_ASSERT_INT(store_is_room_owner(s, "pub", "amy"), 1);
    TEST_ASSERT_INT(store_is_room_owner(s, "pub", "bob"), 0);
    TEST_ASSERT_INT(store_is_room_owner(s, "r0", "amy"), 0);
    store_free(s);
    teardown();
    return 0;
}

/* ---------------------------------------------------------------- retention */

/* An event of room: kind, target (for changes), text (a record for state). */
static struct chat_msg *kind_event(const char *room, uint64_t id, enum chat_kind kind,
                                   uint64_t target, const char *text, int64_t ts)
{
    struct chat_msg *ev = make_msg(room, id, "amy", text, NULL, ts);
    ev->kind = kind;
    ev->target = target;
    if (kind == CHAT_REACT)
        ev->emoji = strdup("👍");
    return ev;
}

static int purge_sync(struct store *s, int64_t now)
{
    struct waiter w;
    waiter_init(&w);
    int rc = store_purge(s, now, waiter_cb, &w);
    if (rc == 0) {
        wait_for(&w, 1);
        rc = w.last_status;
    }
    waiter_dispose(&w);
    return rc;
}

/* The ids of every event of room, as "1,5,6". */
static void event_ids(struct store *s, const char *room, char *out, size_t outlen)
{
    struct chat_msg **msgs = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (store_fetch_range(s, room, 0, UINT64_MAX, 1000, &msgs, &n) != 0)
        return;
    size_t len = 0;
    for (size_t i = 0; i < n && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s%llu", i ? "," : "",
                                (unsigned long long)msgs[i]->id);
    store_free_messages(msgs, n);
}

/* Retention removes the message-like events up to the newest one older than
 * the cutoff, with their reactions and mentions; room-state events, later
 * changes and the server's logs stay; history begins after the cutoff; ids
 * continue after it, also once every message expired and after a reopen;
 * late copies of expired events are not stored again. */
static int test_retention_purge(void)
{
    TEST_ASSERT(setup() == 0);
    struct metrics *m = metrics_create();
    struct store *s = open_store(n_base, 8, m);
    TEST_ASSERT(s != NULL);
    store_set_retention(s, 3000.0 / 86400000.0); /* 3 s */
    struct chat_msg *mention = kind_event("r", 2, CHAT_MESSAGE, 0, "hi @bob", 1000);
    chat_msg_add_mention(mention, "bob");
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 1, CHAT_ROOM, 0, "{\"private\":false}", 100)),
                    0);
    TEST_ASSERT_INT(append_sync(s, mention), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 3, CHAT_REACT, 2, "", 1100)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 4, CHAT_MESSAGE, 0, "old", 2000)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 5, CHAT_EDIT, 4, "late edit", 5000)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 6, CHAT_RETENTION, 0, "{\"days\":null}", 1500)),
                    0);
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 7, CHAT_MESSAGE, 0, "new", 9000)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event(".read.x", 1, CHAT_MESSAGE, 0, "{}", 10)), 0);
    for (uint64_t id = 1; id <= 3; id++)
        TEST_ASSERT_INT(append_sync(s, kind_event("x", id, CHAT_MESSAGE, 0, "gone", 1000)), 0);
    uint64_t last_read, begins;
    int unread, mentions;
    double days;
    TEST_ASSERT_INT(store_unread(s, "r", "bob", &last_read, &unread, &mentions), 0);
    TEST_ASSERT_INT(mentions, 1);
    TEST_ASSERT_INT(store_history_head(s, "r", &begins, &days), 0);
    TEST_ASSERT_INT(begins, 1);

    TEST_ASSERT_INT(purge_sync(s, 6000), 0); /* cutoff ts 3000: ids 2, 3, 4 */
    char ids[256];
    event_ids(s, "r", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "1,5,6,7");
    TEST_ASSERT_INT(store_history_head(s, "r", &begins, &days), 0);
    TEST_ASSERT_INT(begins, 5);
    TEST_ASSERT(days > 0 && days < 0.001);
    TEST_ASSERT_INT(store_unread(s, "r", "bob", &last_read, &unread, &mentions), 0);
    TEST_ASSERT_INT(mentions, 0);
    event_ids(s, ".read.x", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "1");
    event_ids(s, "x", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "");
    TEST_ASSERT_INT(atomic_load(&m->retention_purged), 6);

    /* a second purge at the same time finds nothing; late copies stay out */
    TEST_ASSERT_INT(purge_sync(s, 6000), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("x", 2, CHAT_MESSAGE, 0, "again", 1000)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("r", 3, CHAT_REACT, 2, "", 1100)), 0);
    event_ids(s, "x", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "");
    event_ids(s, "r", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "1,5,6,7");
    TEST_ASSERT_INT(atomic_load(&m->retention_purged), 6);

    uint64_t last = 0;
    TEST_ASSERT_INT(store_last_id(s, "x", &last), 0);
    TEST_ASSERT_INT(last, 3);
    struct store_room *rooms;
    size_t count;
    TEST_ASSERT_INT(store_list_rooms(s, NULL, 0, &rooms, &count), 0);
    TEST_ASSERT_INT(count, 2);
    TEST_ASSERT_STR(rooms[1].name, "x");
    TEST_ASSERT_INT(rooms[1].last_id, 3);
    TEST_ASSERT(rooms[1].retention_days > 0);
    store_free_rooms(rooms, count);
    store_free(s);
    s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT_INT(store_last_id(s, "x", &last), 0);
    TEST_ASSERT_INT(last, 3);
    TEST_ASSERT_INT(store_last_id(s, "r", &last), 0);
    TEST_ASSERT_INT(last, 7);
    store_free(s);
    metrics_free(m);
    teardown();
    return 0;
}

/* A room's own retention: the retention event with the highest id decides,
 * whatever order they arrive in; null gives the deployment's back; 0 keeps
 * the room's messages forever under a deployment retention. */
static int test_retention_per_room(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    store_set_retention(s, 3000.0 / 86400000.0);
    const char *a = "{\"days\":2,\"by\":\"amy\"}", *b = "{\"days\":0,\"by\":\"amy\"}";
    const char *none = "{\"days\":null,\"by\":\"amy\"}";
    /* p: 3 (days 2) then 5 (days 0); q: the same events in the other order */
    TEST_ASSERT_INT(append_sync(s, kind_event("p", 3, CHAT_RETENTION, 0, a, 10)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("p", 5, CHAT_RETENTION, 0, b, 10)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("q", 5, CHAT_RETENTION, 0, b, 10)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("q", 3, CHAT_RETENTION, 0, a, 10)), 0);
    /* n: 5 (null) after 3 (days 2), stored in reverse */
    TEST_ASSERT_INT(append_sync(s, kind_event("n", 5, CHAT_RETENTION, 0, none, 10)), 0);
    TEST_ASSERT_INT(append_sync(s, kind_event("n", 3, CHAT_RETENTION, 0, a, 10)), 0);
    const char *rooms[] = {"p", "q", "n"};
    for (int i = 0; i < 3; i++)
        TEST_ASSERT_INT(append_sync(s, kind_event(rooms[i], 9, CHAT_MESSAGE, 0, "m", 1000)), 0);
    uint64_t begins;
    double days;
    TEST_ASSERT_INT(store_history_head(s, "p", &begins, &days), 0);
    TEST_ASSERT(days == 0);
    TEST_ASSERT_INT(store_history_head(s, "q", &begins, &days), 0);
    TEST_ASSERT(days == 0);
    TEST_ASSERT_INT(store_history_head(s, "n", &begins, &days), 0);
    TEST_ASSERT(days > 0 && days < 0.001);
    TEST_ASSERT_INT(purge_sync(s, 10000), 0);
    char ids[64];
    event_ids(s, "p", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "3,5,9");
    event_ids(s, "q", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "3,5,9");
    event_ids(s, "n", ids, sizeof(ids));
    TEST_ASSERT_STR(ids, "3,5");
    TEST_ASSERT_INT(store_history_head(s, "n", &begins, &days), 0);
    TEST_ASSERT_INT(begins, 10);
    store_free(s);
    teardown();
    return 0;
}

/* More than one transaction's worth expires: every batch goes, and the
 * purge's callback runs once, at the end. */
static int test_retention_batches(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 256, NULL);
    TEST_ASSERT(s != NULL);
    store_set_retention(s, 1.0);
    TEST_ASSERT_INT(append_range(s, "big", 1, 12000), 0); /* ts 1001.. */
    TEST_ASSERT_INT(flush(s), 0);
    TEST_ASSERT_INT(purge_sync(s, 86400000 + 1000 + 11000), 0); /* ids up to 10999 */
    uint64_t begins;
    double days;
    TEST_ASSERT_INT(store_history_head(s, "big", &begins, &days), 0);
    TEST_ASSERT_INT(begins, 11000);
    struct chat_msg **msgs = NULL;
    size_t n = 0;
    TEST_ASSERT_INT(store_fetch_range(s, "big", 0, UINT64_MAX, 5000, &msgs, &n), 0);
    TEST_ASSERT(ids_are(msgs, n, 11000, 1001));
    store_free_messages(msgs, n);
    store_free(s);
    teardown();
    return 0;
}

/* A backup is a database a store opens, holding what was stored; an
 * existing file is kept unless force. */
static int test_backup(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    TEST_ASSERT_INT(append_range(s, "b", 1, 50), 0);
    TEST_ASSERT_INT(flush(s), 0);
    char dest[600], err[256] = "";
    snprintf(dest, sizeof(dest), "%s.bak", db_path);
    struct store_backup_info info;
    TEST_ASSERT_INT(store_backup(db_path, dest, false, &info, err, sizeof(err)), 0);
    TEST_ASSERT_INT(info.events, 50);
    TEST_ASSERT(info.bytes > 0);
    TEST_ASSERT_INT(store_backup(db_path, dest, false, &info, err, sizeof(err)), -EEXIST);
    TEST_ASSERT(strstr(err, "exists") != NULL);
    TEST_ASSERT_INT(append_range(s, "b", 51, 60), 0);
    TEST_ASSERT_INT(flush(s), 0);
    TEST_ASSERT_INT(store_backup(db_path, dest, true, &info, err, sizeof(err)), 0);
    TEST_ASSERT_INT(info.events, 60);
    TEST_ASSERT_INT(store_backup(db_path, db_path, true, &info, err, sizeof(err)), -EINVAL);
    TEST_ASSERT(strstr(err, "the database itself") != NULL);
    store_free(s);
    struct store *copy = store_create(dest, migs, n_base, 8, NULL, err, sizeof(err));
    TEST_ASSERT(copy != NULL);
    uint64_t last = 0;
    TEST_ASSERT_INT(store_last_id(copy, "b", &last), 0);
    TEST_ASSERT_INT(last, 60);
    store_free(copy);
    unlink(dest);
    char missing[600];
    snprintf(missing, sizeof(missing), "%s.none", db_path);
    TEST_ASSERT(store_backup(missing, dest, false, &info, err, sizeof(err)) < 0);
    teardown();
    return 0;
}

/* sync: the gapless run, an export of every column and an import of it
 * into another store (events, claims) that ends in the same state. */
static int test_export_import(void)
{
    TEST_ASSERT(setup() == 0);
    struct store *s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    uint64_t end = 99;
    TEST_ASSERT(store_run_end(s, "r", 1, &end) == 0);
    TEST_ASSERT_INT(end, 0);
    for (uint64_t id = 1; id <= 5; id++)
        TEST_ASSERT(append_sync(s, make_msg("r", id, "alice", "hi", NULL, (int64_t)id)) == 0);
    struct chat_msg *edit = make_msg("r", 6, "alice", "edited", NULL, 6);
    edit->kind = CHAT_EDIT;
    edit->target = 2;
    TEST_ASSERT(append_sync(s, edit) == 0);
    TEST_ASSERT(store_run_end(s, "r", 1, &end) == 0); /* gapless: counted */
    TEST_ASSERT_INT(end, 6);
    TEST_ASSERT(store_run_end(s, "r", 7, &end) == 0);
    TEST_ASSERT_INT(end, 6);
    TEST_ASSERT(append_sync(s, make_msg("r", 9, "bob", "after a gap", NULL, 9)) == 0);
    TEST_ASSERT(store_run_end(s, "r", 1, &end) == 0);
    TEST_ASSERT_INT(end, 6);

    struct chat_msg **msgs = NULL;
    int64_t *edit_ids = NULL;
    size_t n = 0;
    TEST_ASSERT(store_export(s, "r", 1, 3, &msgs, &edit_ids, &n) == 0);
    TEST_ASSERT_INT(n, 3);
    TEST_ASSERT_INT(msgs[0]->id, 2);
    TEST_ASSERT_STR(msgs[0]->text, "edited");
    TEST_ASSERT_INT(edit_ids[0], 6);
    TEST_ASSERT(msgs[0]->edited_ts == 6);
    store_free_messages(msgs, n);
    free(edit_ids);

    struct store_room *logs = NULL;
    size_t nlogs = 0;
    TEST_ASSERT(store_list_logs(s, &logs, &nlogs) == 0);
    TEST_ASSERT_INT(nlogs, 1);
    TEST_ASSERT_INT(logs[0].last_id, 9);
    store_free_rooms(logs, nlogs);

    /* into a second store: the whole log and a claim, in one import */
    TEST_ASSERT(store_export(s, "r", 0, 100, &msgs, &edit_ids, &n) == 0);
    free(edit_ids);
    store_free(s);
    snprintf(db_path + strlen(db_path), sizeof(db_path) - strlen(db_path), "2");
    s = open_store(n_base, 8, NULL);
    TEST_ASSERT(s != NULL);
    char **claims = malloc(sizeof(*claims));
    claims[0] = strdup("alice");
    struct waiter w;
    waiter_init(&w);
    TEST_ASSERT(store_import(s, "r", 0, msgs, n, claims, 1, waiter_cb, &w) == 0);
    wait_for(&w, 1);
    TEST_ASSERT_INT(w.failed, 0);
    waiter_dispose(&w);
    TEST_ASSERT_INT(store_has_claim(s, "r", "alice"), 1);
    struct chat_msg *got = NULL;
    TEST_ASSERT(store_get_event(s, "r", 2, &got) == 0);
    TEST_ASSERT_STR(got->text, "edited");
    TEST_ASSERT(got->edited_ts == 6);
    chat_msg_free(got);
    TEST_ASSERT(store_run_end(s, "r", 1, &end) == 0);
    TEST_ASSERT_INT(end, 6);
    store_free(s);
    teardown();
    return 0;
}

TEST_MAIN(TEST_CASE(test_sanctions_converge_in_any_order), TEST_CASE(test_export_import),
          TEST_CASE(test_account_events), TEST_CASE(test_changes_apply),
          TEST_CASE(test_changes_converge_in_any_order), TEST_CASE(test_search_index),
          TEST_CASE(test_migrations_applied_once), TEST_CASE(test_newer_version_refused),
          TEST_CASE(test_migration_names_and_failures), TEST_CASE(test_not_a_database),
          TEST_CASE(test_append_and_barrier_order), TEST_CASE(test_insert_or_ignore),
          TEST_CASE(test_commit_failure), TEST_CASE(test_free_drains_queue), TEST_CASE(test_paging),
          TEST_CASE(test_text_round_trip), TEST_CASE(test_list_rooms), TEST_CASE(test_find_ref),
          TEST_CASE(test_survives_reopen), TEST_CASE(test_null_safety),
          TEST_CASE(test_readers_during_writes), TEST_CASE(test_retention_purge),
          TEST_CASE(test_retention_per_room), TEST_CASE(test_retention_batches),
          TEST_CASE(test_backup))
