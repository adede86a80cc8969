/* store: the node's SQLite log of every event of every room.
 *
 * One read-write connection belongs to the writer thread: it takes queued
 * jobs in batches, inserts them in one transaction (group commit) and runs
 * their callbacks in submission order. Readers check a read-only connection
 * out of a small pool; WAL lets them read a consistent snapshot while the
 * writer commits, so a reader never waits for the writer. A change (edit,
 * delete, reaction) is applied to the message it targets in the transaction
 * that stores it, by rules that give the same state whatever order the rows
 * arrive in (migrations/0002_events.sql). Retention's purge is a writer job
 * too, in transactions of bounded size (migrations/0006_retention.sql); a
 * backup copies the file with SQLite's online backup API on connections of
 * its own. This is the only file that includes sqlite3.h. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "util.h"

#define STORE_READERS_MAX 8 /* read-only connections in the pool */
#define STORE_STR_(x) #x
#define STORE_STR(x) STORE_STR_(x)
#define STORE_SANCTIONS_MAX_SQL STORE_STR(STORE_SANCTIONS_MAX)
#define STORE_BUSY_TIMEOUT_MS 5000 /* wait for a lock held by another process */
#define STORE_VERSION_DIGITS 9     /* at most this many digits in "NNNN_" */
#define STORE_PROBE_MS 1000        /* between writes that test failing commits */
#define STORE_PURGE_BATCH 5000     /* rows one purge transaction deletes at most */
#define STORE_PURGE_EVERY_S 60     /* purge at least this often */
#define DAY_MS 86400000.0

/* The kinds retention removes (chat_kind_expires), as SQL. */
#define EXPIRING_KINDS "kind IN ('message', 'edit', 'delete', 'react', 'unreact')"

/* ---------------------------------------------------------------- types */

/* One queued write: a message to insert, a purge, or a barrier (neither). */
struct store_job {
    struct store_job *next;  /* queue link */
    struct chat_msg *msg;    /* owned copy; NULL for a barrier or a purge */
    bool purge;              /* expire what retention says is old at purge_now */
    int64_t purge_now;       /* ms */
    struct purge_plan *plan; /* owned; NULL until the purge's first batch */
    struct chat_msg **msgs;  /* an import (store_import): owned, n_msgs of them */
    size_t n_msgs;
    char *log;       /* an import: the log of the claims, owned */
    uint64_t begins; /* an import: where the peer's history of log begins (0, 1: at 1) */
    char **claims;   /* an import: owned, n_claims of them */
    size_t n_claims;
    store_done_cb cb; /* may be NULL */
    void *ctx;        /* passed to cb */
};

/* Prepared statements of a reader connection, indexes into stmts[]. */
enum reader_stmt {
    RS_NEWEST = 0,
    RS_BEFORE,
    RS_AFTER,
    RS_RANGE,
    RS_FIND_REF,
    RS_GET,
    RS_REACTIONS,
    RS_ROOM_USER,
    RS_ACCOUNT,
    RS_ACCOUNTS,
    RS_SESSION,
    RS_SESSION_BY_TOKEN,
    RS_CLAIM,
    RS_INVITE,
    RS_ACCOUNT_SESSIONS,
    RS_SESSION_ENDED,
    RS_ROOM_INFO,
    RS_MEMBER,
    RS_ROSTER,
    RS_UNREAD,
    RS_ROOMS,
    RS_LAST_ID,
    RS_SEARCH_MATCH,
    RS_SEARCH_RECENT,
    RS_HEAD,
    RS_MIN_RETENTION,
    RS_PING,
    RS_SANCTION,
    RS_SANCTIONS,
    RS_OWNER,
    RS_EXPORT,
    RS_CLAIMS,
    RS_HAS_ID,
    RS_RUN_END,
    RS_RUN_COUNT,
    RS_COUNT,
};

/* The columns row_to_msg reads, in its order. */
#define EVENT_COLUMNS                                                                              \
    "id, user, text, ts, ref, kind, target, emoji, reply_to, reply_user, reply_text, mentions,"    \
    " edited_ts, deleted_by"

/* Whether a search candidate passes room = ?4 and author = ?5 (either NULL:
 * any), as one column: a candidate that does not costs no more reads. */
#define SEARCH_FILTERS                                                                             \
    "(?4 IS NULL OR message_room = ?4) AND (?5 IS NULL OR message_user = ?5 COLLATE NOCASE)"

/* An account as account_from_row reads it; the first account of the
 * deployment (lowest first event) is admin unless it was given a role. */
#define ACCOUNT_COLUMNS                                                                            \
    "a.name, a.hash, coalesce(a.role, iif(a.created_id = (SELECT min(created_id) FROM"             \
    " accounts), 'admin', 'user')), a.display, a.color, a.disabled, a.created"

/* A session with its account: sid, name, expires, and whether it still holds. */
#define SESSION_COLUMNS                                                                            \
    "s.sid, a.name, s.expires, (s.ended = 0 AND a.disabled = 0 AND s.event_id >"                   \
    " a.signout_all_id) FROM sessions s JOIN accounts a ON a.name_key = s.name_key"

static const char *const reader_sql[RS_COUNT] = {
    [RS_NEWEST] = "SELECT " EVENT_COLUMNS " FROM messages WHERE room = ?1 AND kind = 'message'"
                  " ORDER BY id DESC LIMIT ?2",
    [RS_BEFORE] = "SELECT " EVENT_COLUMNS " FROM messages WHERE room = ?1 AND id < ?2"
                  " AND kind = 'message' ORDER BY id DESC LIMIT ?3",
    [RS_AFTER] = "SELECT " EVENT_COLUMNS " FROM messages WHERE room = ?1 AND id > ?2"
                 " AND kind = 'message' ORDER BY id ASC LIMIT ?3",
    [RS_RANGE] = "SELECT " EVENT_COLUMNS " FROM messages WHERE room = ?1 AND id > ?2"
                 " AND id <= ?3 ORDER BY id ASC LIMIT ?4",
    /* The lowest id wins should a ref ever have been stored twice. Without
     * statistics the planner prefers walking the whole room by primary key
     * (it avoids a sort for ORDER BY id); the ref index already holds the
     * rows of one (room, user, ref) in id order, so name it. */
    [RS_FIND_REF] = "SELECT " EVENT_COLUMNS " FROM messages INDEXED BY messages_ref"
                    " WHERE room = ?1 AND user = ?2 AND ref = ?3 AND ts >= ?4"
                    " ORDER BY id ASC LIMIT 1",
    [RS_GET] = "SELECT " EVENT_COLUMNS " FROM messages WHERE room = ?1 AND id = ?2",
    [RS_REACTIONS] = "SELECT target, emoji, user, event_id FROM reactions WHERE room = ?1"
                     " AND target >= ?2 AND target <= ?3 AND present = 1"
                     " ORDER BY target, event_id",
    /* The exact spelling first, else one that differs in ASCII case. */
    [RS_ROOM_USER] = "SELECT user FROM room_users WHERE room = ?1 AND user = ?2 COLLATE NOCASE"
                     " ORDER BY user = ?2 DESC LIMIT 1",
    [RS_ACCOUNT] = "SELECT " ACCOUNT_COLUMNS " FROM accounts a WHERE name_key = ?1",
    [RS_ACCOUNTS] = "SELECT " ACCOUNT_COLUMNS " FROM accounts a ORDER BY name_key",
    [RS_SESSION] = "SELECT " SESSION_COLUMNS " WHERE s.sid = ?1",
    [RS_SESSION_BY_TOKEN] = "SELECT " SESSION_COLUMNS " WHERE s.tid = ?1",
    [RS_CLAIM] = "SELECT 1 FROM claims WHERE room = ?1 AND claim = ?2",
    [RS_INVITE] = "SELECT expires FROM invites WHERE code = ?1",
    [RS_ACCOUNT_SESSIONS] = "SELECT " SESSION_COLUMNS " WHERE s.name_key = ?1",
    [RS_SESSION_ENDED] = "SELECT 1 FROM sessions WHERE sid = ?1 AND ended = 1",
    [RS_ROOM_INFO] = "SELECT private, dm, closed, creator FROM rooms WHERE name = ?1",
    [RS_MEMBER] = "SELECT role FROM room_members WHERE room = ?1 AND user_key = ?2 AND present = 1",
    [RS_ROSTER] = "SELECT user, role FROM room_members WHERE room = ?1 AND present = 1"
                  " ORDER BY user_key",
    /* Messages of others after the last read id, and those that mention the
     * reader: counted up to 999 each. */
    [RS_UNREAD] = "WITH last(id) AS (SELECT coalesce((SELECT last_read FROM read_state"
                  " WHERE user_key = ?2 AND room = ?1), 0))"
                  " SELECT (SELECT id FROM last),"
                  " (SELECT count(*) FROM (SELECT 1 FROM messages WHERE room = ?1"
                  " AND id > (SELECT id FROM last) AND kind = 'message' AND deleted_by IS NULL"
                  " AND user <> ?3 LIMIT 999)),"
                  " (SELECT count(*) FROM (SELECT 1 FROM message_mentions WHERE room = ?1"
                  " AND user_key = ?2 AND id > (SELECT id FROM last) LIMIT 999))",
    /* A skip scan over the primary key: one seek per room instead of a scan
     * of every message, which GROUP BY room would do; the server's own logs
     * (names from "." up to "/") are passed in one seek unless ?3 asks for
     * them too; and the rooms whose every message expired (log_heads). Rooms
     * after ?1, at most ?2: each walk stops once it has enough. */
    [RS_ROOMS] =
        "WITH RECURSIVE r(name) AS ("
        " SELECT (SELECT room FROM messages WHERE room > ?1 ORDER BY room LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT room FROM messages"
        " WHERE room > iif(r.name LIKE '.%' AND NOT ?3, '/', r.name)"
        " ORDER BY room LIMIT 1)"
        " FROM r WHERE r.name IS NOT NULL LIMIT ?2 + 2),"
        " n(name) AS (SELECT name FROM r WHERE name IS NOT NULL"
        " UNION SELECT * FROM (SELECT room FROM log_heads WHERE room > ?1 ORDER BY room LIMIT ?2))"
        " SELECT n.name, max(coalesce((SELECT MAX(id) FROM messages WHERE room = n.name),"
        " 0), coalesce(h.begins - 1, 0)),"
        " coalesce(x.private, 0), coalesce(x.dm, 0), coalesce(x.closed, 0),"
        " t.room IS NOT NULL, t.days"
        " FROM n LEFT JOIN rooms x ON x.name = n.name"
        " LEFT JOIN log_heads h ON h.room = n.name"
        " LEFT JOIN room_retention t ON t.room = n.name"
        " WHERE ?3 OR n.name NOT LIKE '.%' ORDER BY n.name LIMIT ?2",
    /* Ids are never given out twice: an expired room continues after its head. */
    [RS_LAST_ID] = "SELECT max(coalesce((SELECT MAX(id) FROM messages WHERE room = ?1), 0),"
                   " coalesce((SELECT begins - 1 FROM log_heads WHERE room = ?1), 0))",
    [RS_HEAD] = "SELECT coalesce((SELECT begins FROM log_heads WHERE room = ?1), 1),"
                " (SELECT 1 FROM room_retention WHERE room = ?1),"
                " (SELECT days FROM room_retention WHERE room = ?1)",
    [RS_MIN_RETENTION] = "SELECT min(days) FROM room_retention WHERE days > 0",
    /* The index walked by rowid descending (newest first), each row joined to
     * its message as it is now; 0005_search.sql says why that order is time. */
    /* Candidates: the index walked by rowid descending (newest first), with
     * whether each passes the room (?4) and author (?5) filters. */
    [RS_SEARCH_MATCH] = "SELECT rowid, message_room, message_id, message_text, " SEARCH_FILTERS
                        " FROM search WHERE search MATCH ?1 AND rowid < ?2"
                        " ORDER BY rowid DESC LIMIT ?3",
    [RS_SEARCH_RECENT] = "SELECT rowid, message_room, message_id, message_text, " SEARCH_FILTERS
                         " FROM search WHERE rowid < ?2 ORDER BY rowid DESC LIMIT ?3",
    [RS_PING] = "SELECT COUNT(*) FROM schema_migrations",
    [RS_EXPORT] = "SELECT " EVENT_COLUMNS ", edit_id FROM messages WHERE room = ?1 AND id > ?2"
                  " ORDER BY id ASC LIMIT ?3",
    [RS_CLAIMS] = "SELECT claim FROM claims WHERE room = ?1 ORDER BY claim",
    [RS_HAS_ID] = "SELECT 1 FROM messages WHERE room = ?1 AND id = ?2",
    /* The first id at or above ?2 whose successor is missing: the end of the
     * gapless run that starts at ?2. */
    [RS_RUN_END] = "SELECT m.id FROM messages m WHERE m.room = ?1 AND m.id >= ?2 AND NOT EXISTS"
                   " (SELECT 1 FROM messages n WHERE n.room = ?1 AND n.id = m.id + 1)"
                   " ORDER BY m.id LIMIT 1",
    /* The fast way to the same answer when the log has no gap at all. */
    [RS_RUN_COUNT] = "SELECT count(*), max(id) FROM messages WHERE room = ?1 AND id >= ?2",
    [RS_SANCTION] = "SELECT muted, banned FROM room_sanctions WHERE room = ?1 AND user_key = ?2",
    [RS_SANCTIONS] = "SELECT user, muted, mute_by, mute_ts, banned, ban_by, ban_ts FROM"
                     " room_sanctions WHERE room = ?1 AND (muted OR banned) ORDER BY user_key"
                     " LIMIT " STORE_SANCTIONS_MAX_SQL,
    [RS_OWNER] = "SELECT 1 FROM rooms WHERE name = ?1 AND private = 0 AND lower(creator) = ?2"
                 " UNION ALL SELECT 1 FROM room_members WHERE room = ?1 AND user_key = ?2"
                 " AND present = 1 AND role = 'owner'",
};

/* One read-only connection of the pool; used by one thread at a time. */
struct store_reader {
    struct store_reader *next;     /* free-list link */
    sqlite3 *db;                   /* SQLITE_OPEN_READONLY */
    sqlite3_stmt *stmts[RS_COUNT]; /* prepared once, reset after each use */
};

struct store {
    char *path;              /* database file */
    int lock_fd;             /* holds flock(LOCK_EX) on path while open; -1: none */
    struct metrics *metrics; /* may be NULL */
    int batch_max;           /* jobs per group commit */

    /* writer: wdb and its statements are used by one thread at a time
     * (store_create, then only the writer thread, then store_free) */
    sqlite3 *wdb;               /* read-write connection */
    sqlite3_stmt *ins;          /* INSERT OR IGNORE INTO messages */
    sqlite3_stmt *room_user;    /* record an author of the room */
    sqlite3_stmt *changes_of;   /* the changes stored for a message, by id */
    sqlite3_stmt *edit;         /* apply an edit */
    sqlite3_stmt *erase_late;   /* erase an edit or quote whose message is deleted */
    sqlite3_stmt *del;          /* apply a delete */
    sqlite3_stmt *erase_edits;  /* erase the edits of a deleted message */
    sqlite3_stmt *erase_quotes; /* erase the quotes of a deleted message */
    sqlite3_stmt *unreact_all;  /* drop the reactions of a deleted message */
    sqlite3_stmt *react;        /* apply a react or unreact */
    sqlite3_stmt *claim;        /* record what an event took */
    sqlite3_stmt *account;      /* apply an account record */
    sqlite3_stmt *session;      /* a session began */
    sqlite3_stmt *signout;      /* a session ended */
    sqlite3_stmt *signout_all;  /* an account's earlier sessions ended */
    sqlite3_stmt *invite;       /* an invite code was made */
    sqlite3_stmt *room;         /* a room's first event */
    sqlite3_stmt *member;       /* a member event */
    sqlite3_stmt *close_room;   /* a closed event */
    sqlite3_stmt *read;         /* a read event */
    sqlite3_stmt *mention;      /* who a message mentions */
    sqlite3_stmt *unmention;    /* a deleted message mentions nobody */
    sqlite3_stmt *search_slot;  /* is a search rowid taken */
    sqlite3_stmt *search_add;   /* index a message's text */
    sqlite3_stmt *search_text;  /* a live message's ts and text, to index it again */
    sqlite3_stmt *probe;        /* rewrite the probe row */
    sqlite3_stmt *mute;         /* a mute or unmute event */
    sqlite3_stmt *ban;          /* a ban or unban event */
    sqlite3_stmt *retention;    /* a retention event */
    sqlite3_stmt *head_of;      /* where a room's history begins */
    sqlite3_stmt *purge_rooms;  /* every room with its own retention, if any */
    sqlite3_stmt *cutoff;       /* the newest expiring event older than a time */
    sqlite3_stmt *expired;      /* a batch of expired events of a room */
    sqlite3_stmt *purge_one;    /* delete one event */
    sqlite3_stmt *set_head;     /* move a room's head forward */
    sqlite3_stmt *begin;        /* BEGIN IMMEDIATE */
    sqlite3_stmt *commit;       /* COMMIT */
    sqlite3_stmt *rollback;     /* ROLLBACK */
    pthread_t writer;           /* the writer thread */
    bool writer_started;        /* writer must be joined */

    /* queue, guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;              /* signalled on a new job and on stop */
    UTIL_FIFO(struct store_job) jobs; /* waiting for the writer, oldest first */
    size_t depth;                     /* jobs in the queue */
    bool stopping;                    /* store_free began: refuse new jobs */

    /* reader pool, guarded by pool_lock */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;  /* signalled when a reader comes back */
    struct store_reader *idle; /* connections not checked out */
    int n_readers;             /* open or being opened */

    atomic_bool ready;           /* store_create finished */
    atomic_bool commits_failing; /* the last commit failed; none has succeeded since */

    /* retention */
    _Atomic double retention_days; /* the deployment's; 0: forever */
    pthread_t purger;              /* queues a purge now and then */
    bool purger_started;           /* purger must be joined */
    pthread_cond_t purger_cond;    /* with lock: stop, or a retention event */
    bool retention_changed;        /* with lock: recompute the interval */
};

/* ---------------------------------------------------------------- helpers */

/* SQLite stores signed 64-bit integers; larger ids clamp to the largest one,
 * which keeps every comparison of a page query right. */
static sqlite3_int64 id_param(uint64_t id)
{
    return id > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)id;
}

/* mkdir -p of the directory that will hold path. */
static int make_parent_dirs(const char *path, char *err, size_t errlen)
{
    int rc = 0;
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        goto out_free_dir;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
            rc = -errno;
            util_set_err(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
            goto out_free_dir;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
out_free_dir:
    free(dir);
    return rc;
}

/* Run one constant statement that returns no rows we need. */
static int run_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        do
            rc = sqlite3_step(stmt);
        while (rc == SQLITE_ROW);
    }
    if (rc != SQLITE_DONE) {
        util_set_err(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return -TC_ESTORE;
    }
    sqlite3_finalize(stmt);
    return 0;
}

/* Run a single-value query; *out is 0 when the value is NULL. */
static int query_int64(sqlite3 *db, const char *sql, int64_t bind1, bool has_bind, int64_t *out,
                       char *err, size_t errlen)
{
    int ret = 0;
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        goto out_fail;
    if (has_bind && sqlite3_bind_int64(stmt, 1, bind1) != SQLITE_OK)
        goto out_fail;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else if (rc == SQLITE_DONE)
        *out = 0;
    else
        goto out_fail;
    goto out_finalize;
out_fail:
    util_set_err(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
    ret = -TC_ESTORE;
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

/* ---------------------------------------------------------------- migrations */

struct migration_ref {
    int64_t version;
    const struct store_migration *m;
    const char *base; /* file name without any directory */
};

/* "NNNN_name.sql", optionally behind a directory ("migrations/0001_init.sql"):
 * 1..9 digits, a version above 0, '_', then [A-Za-z0-9_-]+ and ".sql". */
static bool parse_migration_name(const char *name, int64_t *version, const char **base)
{
    const char *b = strrchr(name, '/');
    b = b ? b + 1 : name;
    int64_t v = 0;
    size_t i = 0;
    while (b[i] >= '0' && b[i] <= '9') {
        if (i == STORE_VERSION_DIGITS)
            return false;
        v = v * 10 + (b[i] - '0');
        i++;
    }
    if (i == 0 || v == 0 || b[i] != '_')
        return false;
    size_t start = ++i;
    while ((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= 'A' && b[i] <= 'Z') ||
           (b[i] >= '0' && b[i] <= '9') || b[i] == '_' || b[i] == '-')
        i++;
    if (i == start || strcmp(b + i, ".sql") != 0)
        return false;
    *version = v;
    *base = b;
    return true;
}

static int compare_migrations(const void *a, const void *b)
{
    const struct migration_ref *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

/* Apply one migration and record it, in one transaction; skip it when another
 * process recorded it first. */
static int apply_migration(sqlite3 *db, const struct migration_ref *mr, char *err, size_t errlen)
{
    int ret = 0;
    int64_t present = 0;
    sqlite3_stmt *rec = NULL;
    char *errmsg = NULL;

    ret = run_sql(db, "BEGIN IMMEDIATE", err, errlen);
    if (ret)
        return ret;
    ret = query_int64(db, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1", mr->version,
                      true, &present, err, errlen);
    if (ret || present)
        goto out_end;
    /* Multi-statement text compiled into the binary, never built from input. */
    if (sqlite3_exec(db, mr->m->sql, NULL, NULL, &errmsg) != SQLITE_OK) {
        util_set_err(err, errlen, "migration %s failed: %s", mr->base,
                     errmsg ? errmsg : sqlite3_errmsg(db));
        ret = -TC_ESTORE;
        goto out_end;
    }
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO schema_migrations (version, name, applied_at)"
                           " VALUES (?1, ?2, ?3)",
                           -1, &rec, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(rec, 1, mr->version) != SQLITE_OK ||
        sqlite3_bind_text(rec, 2, mr->base, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(rec, 3, util_now_ms()) != SQLITE_OK ||
        sqlite3_step(rec) != SQLITE_DONE) {
        util_set_err(err, errlen, "recording migration %s: %s", mr->base, sqlite3_errmsg(db));
        ret = -TC_ESTORE;
        goto out_end;
    }
    log_msg(LOG_INFO, "store_migration_applied", "name=%s version=%" PRId64, mr->base, mr->version);
out_end:
    sqlite3_finalize(rec);
    sqlite3_free(errmsg);
    if (ret == 0)
        ret = run_sql(db, "COMMIT", err, errlen);
    if (ret != 0 && !sqlite3_get_autocommit(db))
        run_sql(db, "ROLLBACK", NULL, 0);
    return ret;
}

/* Check every name and sort by version before the database is touched.
 * *out (NULL when n is 0) is the caller's to free. */
static int sort_migrations(const struct store_migration *migrations, size_t n,
                           struct migration_ref **out, char *err, size_t errlen)
{
    struct migration_ref *refs = n ? xcalloc(n, sizeof(*refs)) : NULL;

    for (size_t i = 0; i < n; i++) {
        refs[i].m = &migrations[i];
        if (!migrations[i].name || !migrations[i].sql ||
            !parse_migration_name(migrations[i].name, &refs[i].version, &refs[i].base)) {
            util_set_err(err, errlen, "malformed migration name \"%s\" (want NNNN_name.sql)",
                         migrations[i].name ? migrations[i].name : "(null)");
            goto out_free_refs;
        }
    }
    if (n)
        qsort(refs, n, sizeof(*refs), compare_migrations);
    for (size_t i = 1; i < n; i++) {
        if (refs[i].version == refs[i - 1].version) {
            util_set_err(err, errlen, "migrations %s and %s have the same version",
                         refs[i - 1].base, refs[i].base);
            goto out_free_refs;
        }
    }
    *out = refs;
    return 0;
out_free_refs:
    free(refs);
    return -EINVAL;
}

/* Refuse a database from a newer binary, then apply what is missing, in
 * version order. */
static int run_migrations(sqlite3 *db, const struct migration_ref *refs, size_t n, char *err,
                          size_t errlen)
{
    int ret = run_sql(db,
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)",
                      err, errlen);
    if (ret)
        return ret;
    int64_t db_version = 0;
    int64_t known = n ? refs[n - 1].version : 0;
    ret = query_int64(db, "SELECT MAX(version) FROM schema_migrations", 0, false, &db_version, err,
                      errlen);
    if (ret)
        return ret;
    if (db_version > known) {
        util_set_err(err, errlen,
                     "database schema version %" PRId64 " is newer than this binary (%" PRId64 ")",
                     db_version, known);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        ret = apply_migration(db, &refs[i], err, errlen);
        if (ret)
            return ret;
    }
    return 0;
}

/* ---------------------------------------------------------------- writer */

static void publish_depth(struct store *s)
{
    if (s->metrics)
        atomic_store(&s->metrics->store_queue_depth, (int_fast64_t)s->depth);
}

static int row_to_msg(sqlite3_stmt *st, const char *room, struct chat_msg **out);

/* Bind text, or NULL when text is NULL. */
static bool bind_text_or_null(sqlite3_stmt *st, int i, const char *text)
{
    return (text ? sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i)) ==
           SQLITE_OK;
}

static bool bind_id_or_null(sqlite3_stmt *st, int i, uint64_t id)
{
    return (id ? sqlite3_bind_int64(st, i, id_param(id)) : sqlite3_bind_null(st, i)) == SQLITE_OK;
}

/* The mentions as stored: names one per line (names hold no control
 * characters); NULL when none. The caller frees it. */
static char *mentions_column(const struct chat_msg *msg)
{
    if (msg->mention_count == 0)
        return NULL;
    struct util_buf buf;
    util_buf_init(&buf);
    for (size_t i = 0; i < msg->mention_count; i++)
        util_buf_appendf(&buf, "%s%s", i ? "\n" : "", msg->mentions[i]);
    return util_buf_take(&buf, NULL);
}

static bool bind_message(sqlite3_stmt *st, const struct chat_msg *msg, const char *mentions)
{
    return sqlite3_bind_text(st, 1, msg->room, -1, SQLITE_STATIC) == SQLITE_OK &&
           sqlite3_bind_int64(st, 2, (sqlite3_int64)msg->id) == SQLITE_OK &&
           sqlite3_bind_text(st, 3, msg->user, -1, SQLITE_STATIC) == SQLITE_OK &&
           sqlite3_bind_text(st, 4, msg->text, -1, SQLITE_STATIC) == SQLITE_OK &&
           sqlite3_bind_int64(st, 5, msg->ts) == SQLITE_OK && bind_text_or_null(st, 6, msg->ref) &&
           sqlite3_bind_text(st, 7, chat_kind_name(msg->kind), -1, SQLITE_STATIC) == SQLITE_OK &&
           bind_id_or_null(st, 8, msg->target) && bind_text_or_null(st, 9, msg->emoji) &&
           bind_id_or_null(st, 10, msg->reply_to) && bind_text_or_null(st, 11, msg->reply_user) &&
           bind_text_or_null(st, 12, msg->reply_text) && bind_text_or_null(st, 13, mentions);
}

/* Step a statement that returns no rows and reset it; SQLite result code. */
static int step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Bind (room, a, b) to ?1..?3 of st and step it; b is skipped when 0. */
static int run_on_message(sqlite3_stmt *st, const char *room, uint64_t a, uint64_t b)
{
    if (sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(a)) != SQLITE_OK ||
        (b && sqlite3_bind_int64(st, 3, id_param(b)) != SQLITE_OK))
        return SQLITE_ERROR;
    return step_once(st);
}

/* ---- the search index (migrations/0005_search.sql) */

#define SEARCH_SLOTS 65536              /* rowids per millisecond */
#define SEARCH_TS_MAX (INT64_MAX >> 16) /* beyond it ts * SEARCH_SLOTS overflows */

/* Index the text of message (room, id) under the first free rowid of its
 * millisecond. Text-less messages are not indexed. */
static int index_message(struct store *s, const char *room, uint64_t id, int64_t ts,
                         const char *user, const char *text)
{
    if (!text || !*text || ts < 0 || ts > SEARCH_TS_MAX)
        return SQLITE_DONE;
    /* Its id's slot first: messages of one room in one millisecond keep
     * their order, and every node numbers them alike. */
    uint32_t first = (uint32_t)(id % SEARCH_SLOTS);
    for (uint32_t k = 0; k < SEARCH_SLOTS; k++) {
        sqlite3_int64 rowid = ts * SEARCH_SLOTS + (first + k) % SEARCH_SLOTS;
        if (sqlite3_bind_int64(s->search_slot, 1, rowid) != SQLITE_OK)
            return SQLITE_ERROR;
        int rc = step_once(s->search_slot);
        if (rc == SQLITE_ROW)
            continue;
        if (rc != SQLITE_DONE)
            return rc;
        sqlite3_stmt *st = s->search_add;
        if (sqlite3_bind_int64(st, 1, rowid) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 3, room, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 4, id_param(id)) != SQLITE_OK ||
            sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC) != SQLITE_OK)
            return SQLITE_ERROR;
        return step_once(st);
    }
    return SQLITE_FULL; /* 65,536 messages in one millisecond */
}

/* Index message (room, id) as it is now, after its text changed (the
 * trigger took the old text out). */
static int reindex_message(struct store *s, const char *room, uint64_t id)
{
    sqlite3_stmt *st = s->search_text;
    if (sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(id)) != SQLITE_OK)
        return SQLITE_ERROR;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *column = (const char *)sqlite3_column_text(st, 1);
        char *text = column ? xstrdup(column) : NULL;
        column = (const char *)sqlite3_column_text(st, 2);
        char *user = column ? xstrdup(column) : NULL;
        int64_t ts = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        rc = index_message(s, room, id, ts, user, text);
        free(text);
        free(user);
        return rc;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* The edit with the highest id gives the text; an edit of a deleted message
 * keeps no text. */
static int apply_edit(struct store *s, const struct chat_msg *ev)
{
    sqlite3_stmt *st = s->edit;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(ev->target)) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, ev->text, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, ev->ts) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, id_param(ev->id)) != SQLITE_OK)
        return SQLITE_ERROR;
    int rc = step_once(st);
    if (rc == SQLITE_DONE && sqlite3_changes(s->wdb) > 0)
        rc = reindex_message(s, ev->room, ev->target);
    return rc == SQLITE_DONE ? run_on_message(s->erase_late, ev->room, ev->id, ev->target) : rc;
}

/* A delete is final: the lowest delete names who deleted; the text leaves
 * the message, its edits and the quotes of its replies, and its reactions go. */
static int apply_delete(struct store *s, const struct chat_msg *ev)
{
    sqlite3_stmt *st = s->del;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(ev->target)) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, ev->user, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, id_param(ev->id)) != SQLITE_OK)
        return SQLITE_ERROR;
    int rc = step_once(st);
    if (rc == SQLITE_DONE)
        rc = run_on_message(s->erase_edits, ev->room, ev->target, 0);
    if (rc == SQLITE_DONE)
        rc = run_on_message(s->erase_quotes, ev->room, ev->target, 0);
    if (rc == SQLITE_DONE)
        rc = run_on_message(s->unreact_all, ev->room, ev->target, 0);
    if (rc == SQLITE_DONE)
        rc = run_on_message(s->unmention, ev->room, ev->target, 0);
    return rc;
}

/* Per (message, emoji, user) the reaction event with the highest id decides. */
static int apply_reaction(struct store *s, const struct chat_msg *ev)
{
    sqlite3_stmt *st = s->react;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(ev->target)) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, ev->emoji, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 4, ev->user, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, id_param(ev->id)) != SQLITE_OK ||
        sqlite3_bind_int(st, 6, ev->kind == CHAT_REACT) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(st);
}

/* ---- account events: their record is the JSON object in text */

/* The name in ASCII lower case, into out (PROTO_USER_MAX_BYTES + 1). */
void store_name_key(const char *name, char *out, size_t outlen)
{
    size_t i = 0;
    for (; name[i] && i + 1 < outlen; i++)
        out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    out[i] = '\0';
}

static const char *json_string(const cJSON *obj, const char *name)
{
    bool bad = false;
    const char *v = proto_get_string(obj, name, &bad);
    return bad ? NULL : v;
}

static int64_t json_int(const cJSON *obj, const char *name)
{
    int64_t v;
    return proto_get_int(obj, name, &v) ? v : 0;
}

static int apply_account(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const char *name = json_string(rec, "name"), *hash = json_string(rec, "hash");
    const char *display = json_string(rec, "display"), *color = json_string(rec, "color");
    if (!name || !hash || !display || !color)
        return SQLITE_DONE; /* malformed: nothing to apply (logged by the reader) */
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    sqlite3_stmt *st = s->account;
    bool ok =
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC) == SQLITE_OK &&
        bind_text_or_null(st, 4, json_string(rec, "role")) &&
        sqlite3_bind_text(st, 5, display, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 6, color, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int(st, 7, cJSON_IsTrue(cJSON_GetObjectItem(rec, "disabled"))) == SQLITE_OK &&
        sqlite3_bind_int64(st, 8, json_int(rec, "created")) == SQLITE_OK &&
        sqlite3_bind_int64(st, 9, id_param(ev->id)) == SQLITE_OK;
    return ok ? step_once(st) : SQLITE_ERROR;
}

static int apply_session(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const char *sid = json_string(rec, "sid"), *tid = json_string(rec, "tid");
    const char *name = json_string(rec, "name");
    if (!sid)
        return SQLITE_DONE;
    sqlite3_stmt *st = ev->kind == CHAT_SESSION ? s->session : s->signout;
    if (sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC) != SQLITE_OK)
        return SQLITE_ERROR;
    if (ev->kind == CHAT_SESSION) {
        char key[PROTO_USER_MAX_BYTES + 1];
        store_name_key(name ? name : "", key, sizeof(key));
        if (!bind_text_or_null(st, 2, tid) ||
            sqlite3_bind_text(st, 3, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
            sqlite3_bind_int64(st, 4, json_int(rec, "expires")) != SQLITE_OK ||
            sqlite3_bind_int64(st, 5, id_param(ev->id)) != SQLITE_OK)
            return SQLITE_ERROR;
    }
    return step_once(st);
}

static int apply_signout_all(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const char *name = json_string(rec, "name");
    if (!name)
        return SQLITE_DONE;
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    if (sqlite3_bind_text(s->signout_all, 1, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_int64(s->signout_all, 2, id_param(ev->id)) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(s->signout_all);
}

static int apply_invite(struct store *s, const cJSON *rec)
{
    const char *code = json_string(rec, "code");
    if (!code)
        return SQLITE_DONE;
    if (sqlite3_bind_text(s->invite, 1, code, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s->invite, 2, json_int(rec, "expires")) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(s->invite);
}

/* ---- room events: the record is the JSON object in text */

/* Upsert the membership of name in ev's room as ev decides. */
static int put_member(struct store *s, const struct chat_msg *ev, const char *name,
                      const char *role, bool present)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    sqlite3_stmt *st = s->member;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 4, role, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 5, present) != SQLITE_OK ||
        sqlite3_bind_int64(st, 6, id_param(ev->id)) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(st);
}

/* A room's first event: the room, its creator (owner of a private room) and
 * the members it names (a DM's). */
static int apply_room(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    bool dm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "dm"));
    bool priv = dm || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "private"));
    sqlite3_stmt *st = s->room;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, priv) != SQLITE_OK || sqlite3_bind_int(st, 3, dm) != SQLITE_OK ||
        sqlite3_bind_text(st, 4, ev->user, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, ev->ts) != SQLITE_OK)
        return SQLITE_ERROR;
    int rc = step_once(st);
    if (rc == SQLITE_DONE && priv)
        rc = put_member(s, ev, ev->user, dm ? "member" : "owner", true);
    const cJSON *name;
    cJSON_ArrayForEach(name, cJSON_GetObjectItemCaseSensitive(rec, "members"))
    {
        if (rc == SQLITE_DONE && cJSON_IsString(name) && strcmp(name->valuestring, ev->user))
            rc = put_member(s, ev, name->valuestring, "member", true);
    }
    return rc;
}

static int apply_member(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const char *name = json_string(rec, "member"), *role = json_string(rec, "role");
    if (!name)
        return SQLITE_DONE;
    bool present = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "present"));
    return put_member(s, ev, name, role ? role : "member", present);
}

static int apply_closed(struct store *s, const struct chat_msg *ev)
{
    sqlite3_stmt *st = s->close_room;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, ev->user, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, ev->ts) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(st);
}

/* Per room the retention event with the highest id decides; days null (or
 * absent) gives the room back to the deployment's retention. */
static int apply_retention(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(rec, "days");
    sqlite3_stmt *st = s->retention;
    bool ok = sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) == SQLITE_OK &&
              (cJSON_IsNumber(days) && days->valuedouble >= 0
                   ? sqlite3_bind_double(st, 2, days->valuedouble)
                   : sqlite3_bind_null(st, 2)) == SQLITE_OK &&
              sqlite3_bind_int64(st, 3, id_param(ev->id)) == SQLITE_OK;
    int rc = ok ? step_once(st) : SQLITE_ERROR;
    if (rc == SQLITE_DONE) {
        pthread_mutex_lock(&s->lock);
        s->retention_changed = true;
        pthread_cond_signal(&s->purger_cond);
        pthread_mutex_unlock(&s->lock);
    }
    return rc;
}

static int apply_read(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const char *room = json_string(rec, "room");
    if (!room)
        return SQLITE_DONE;
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(ev->user, key, sizeof(key));
    sqlite3_stmt *st = s->read;
    if (sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, json_int(rec, "id")) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(st);
}

/* A mute, unmute, ban or unban: the record's member, as the highest event
 * id of its kind decides. */
static int apply_sanction(struct store *s, const struct chat_msg *ev, const cJSON *rec)
{
    const char *name = json_string(rec, "member");
    if (!name)
        return SQLITE_DONE;
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    bool mute = ev->kind == CHAT_MUTE || ev->kind == CHAT_UNMUTE;
    sqlite3_stmt *st = mute ? s->mute : s->ban;
    if (sqlite3_bind_text(st, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 4, ev->kind == CHAT_MUTE || ev->kind == CHAT_BAN) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, id_param(ev->id)) != SQLITE_OK ||
        sqlite3_bind_text(st, 6, ev->user, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 7, ev->ts) != SQLITE_OK)
        return SQLITE_ERROR;
    return step_once(st);
}

/* Record whom message msg mentions, for the unread mention counts. */
static int record_mentions(struct store *s, const struct chat_msg *msg)
{
    int rc = SQLITE_DONE;
    for (size_t i = 0; i < msg->mention_count && rc == SQLITE_DONE; i++) {
        char key[PROTO_USER_MAX_BYTES + 1];
        store_name_key(msg->mentions[i], key, sizeof(key));
        if (sqlite3_bind_text(s->mention, 1, msg->room, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(s->mention, 2, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
            sqlite3_bind_int64(s->mention, 3, id_param(msg->id)) != SQLITE_OK)
            return SQLITE_ERROR;
        rc = step_once(s->mention);
    }
    return rc;
}

/* An event whose record is the JSON object in its text: of the accounts log,
 * a read log, or a room's membership. */
static int apply_account_event(struct store *s, const struct chat_msg *ev)
{
    cJSON *rec = proto_parse_object(ev->text, strlen(ev->text));
    if (!rec) {
        log_msg(LOG_WARN, "store_bad_account_event", "room=%s id=%" PRIu64, ev->room, ev->id);
        return SQLITE_DONE;
    }
    int rc = SQLITE_DONE;
    switch (ev->kind) {
    case CHAT_ACCOUNT:
        rc = apply_account(s, ev, rec);
        break;
    case CHAT_SESSION:
    case CHAT_SIGNOUT:
        rc = apply_session(s, ev, rec);
        break;
    case CHAT_SIGNOUT_ALL:
        rc = apply_signout_all(s, ev, rec);
        break;
    case CHAT_INVITE:
        rc = apply_invite(s, rec);
        break;
    case CHAT_ROOM:
        rc = apply_room(s, ev, rec);
        break;
    case CHAT_MEMBER:
        rc = apply_member(s, ev, rec);
        break;
    case CHAT_CLOSED:
        rc = apply_closed(s, ev);
        break;
    case CHAT_READ:
        rc = apply_read(s, ev, rec);
        break;
    case CHAT_MUTE:
    case CHAT_UNMUTE:
    case CHAT_BAN:
    case CHAT_UNBAN:
        rc = apply_sanction(s, ev, rec);
        break;
    case CHAT_RETENTION:
        rc = apply_retention(s, ev, rec);
        break;
    default:
        break;
    }
    cJSON_Delete(rec);
    return rc;
}

/* Record each claim of ev (names one per line). */
static int record_claims(struct store *s, const struct chat_msg *ev)
{
    int rc = SQLITE_DONE;
    for (const char *c = ev->claim; c && *c && rc == SQLITE_DONE;) {
        const char *end = strchr(c, '\n');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (sqlite3_bind_text(s->claim, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(s->claim, 2, c, (int)len, SQLITE_STATIC) != SQLITE_OK)
            return SQLITE_ERROR;
        rc = step_once(s->claim);
        c = end ? end + 1 : NULL;
    }
    return rc;
}

static int apply_change(struct store *s, const struct chat_msg *ev)
{
    switch (ev->kind) {
    case CHAT_EDIT:
        return apply_edit(s, ev);
    case CHAT_DELETE:
        return apply_delete(s, ev);
    case CHAT_REACT:
    case CHAT_UNREACT:
        return apply_reaction(s, ev);
    case CHAT_MESSAGE:
        break;
    default:
        return apply_account_event(s, ev);
    }
    return SQLITE_DONE;
}

/* A message stored after changes of it (a retried commit, out of id order):
 * apply them now, in id order. */
static int apply_earlier_changes(struct store *s, const struct chat_msg *msg)
{
    sqlite3_stmt *st = s->changes_of;
    if (sqlite3_bind_text(st, 1, msg->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(msg->id)) != SQLITE_OK)
        return SQLITE_ERROR;
    struct chat_msg **changes = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        UTIL_GROW(changes, n, cap);
        if (row_to_msg(st, msg->room, &changes[n]) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        n++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (size_t i = 0; rc == SQLITE_DONE && i < n; i++)
        rc = apply_change(s, changes[i]);
    store_free_messages(changes, n);
    return rc;
}

/* Where the history of room begins: 1 unless messages expired. */
static int64_t head_of(struct store *s, const char *room)
{
    int64_t begins = 1;
    if (sqlite3_bind_text(s->head_of, 1, room, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(s->head_of) == SQLITE_ROW)
        begins = sqlite3_column_int64(s->head_of, 0);
    sqlite3_reset(s->head_of);
    sqlite3_clear_bindings(s->head_of);
    return begins;
}

/* Store one event and apply it. SQLite result code: SQLITE_DONE on success. */
static int store_event(struct store *s, const struct chat_msg *ev)
{
    /* A late copy of an event that expired here already (catch-up, gap
     * repair) is not stored again: every node's log lost it. */
    if (chat_kind_expires(ev->kind) && (int64_t)ev->id < head_of(s, ev->room))
        return SQLITE_DONE;
    char *mentions = mentions_column(ev);
    int rc = bind_message(s->ins, ev, mentions) ? step_once(s->ins) : SQLITE_ERROR;
    free(mentions);
    if (rc != SQLITE_DONE || sqlite3_changes(s->wdb) == 0)
        return rc; /* failed, or stored before: applied then */
    if (ev->claim && (rc = record_claims(s, ev)) != SQLITE_DONE)
        return rc;
    if (ev->kind != CHAT_MESSAGE)
        return apply_change(s, ev);
    if (ev->reply_to) {
        rc = run_on_message(s->erase_late, ev->room, ev->id, ev->reply_to);
        if (rc != SQLITE_DONE)
            return rc;
    }
    if ((rc = record_mentions(s, ev)) != SQLITE_DONE ||
        (rc = index_message(s, ev->room, ev->id, ev->ts, ev->user, ev->text)) != SQLITE_DONE)
        return rc;
    if (sqlite3_bind_text(s->room_user, 1, ev->room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s->room_user, 2, ev->user, -1, SQLITE_STATIC) != SQLITE_OK)
        return SQLITE_ERROR;
    rc = step_once(s->room_user);
    return rc == SQLITE_DONE ? apply_earlier_changes(s, ev) : rc;
}

/* The events and claims of an import (store_import): the events through the
 * normal path, the claims recorded as they are. */
static int import_rows(struct store *s, const struct store_job *job)
{
    int rc = job->begins > 1 ? run_on_message(s->set_head, job->log, job->begins, 0) : SQLITE_DONE;
    for (size_t i = 0; rc == SQLITE_DONE && i < job->n_msgs; i++)
        rc = store_event(s, job->msgs[i]);
    for (size_t i = 0; rc == SQLITE_DONE && i < job->n_claims; i++) {
        if (sqlite3_bind_text(s->claim, 1, job->log, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(s->claim, 2, job->claims[i], -1, SQLITE_STATIC) != SQLITE_OK)
            return SQLITE_ERROR;
        rc = step_once(s->claim);
    }
    return rc;
}

/* A commit succeeded: say so once after failures. */
static void commits_work(struct store *s)
{
    if (atomic_exchange(&s->commits_failing, false))
        log_msg(LOG_WARN, "store_commits_recovered", "path=%s", s->path);
}

/* Insert every message of the batch in one transaction. 0 or -TC_ESTORE. */
static int commit_batch(struct store *s, struct store_job *batch)
{
    size_t rows = 0;
    for (struct store_job *j = batch; j; j = j->next)
        rows += (j->msg != NULL) + j->n_msgs + j->n_claims + (j->begins > 1);
    if (rows == 0)
        return 0;

    const char *what = "begin";
    uint64_t t0 = util_mono_ns();
    int rc = step_once(s->begin);
    if (rc != SQLITE_DONE)
        goto out_fail;
    what = "insert";
    for (struct store_job *j = batch; j; j = j->next) {
        if (j->msgs || j->claims || j->begins > 1) {
            rc = import_rows(s, j);
            if (rc != SQLITE_DONE)
                goto out_fail;
        }
        if (!j->msg)
            continue;
        rc = store_event(s, j->msg);
        if (rc != SQLITE_DONE)
            goto out_fail;
    }
    what = "commit";
    rc = step_once(s->commit);
    if (rc != SQLITE_DONE)
        goto out_fail;
    commits_work(s);
    if (s->metrics) {
        metrics_observe(&s->metrics->store_commit_seconds, util_mono_ns() - t0);
        atomic_fetch_add(&s->metrics->store_commits, 1);
    }
    return 0;

out_fail:
    log_msg(LOG_ERROR, "store_commit_failed", "stage=%s rows=%zu rc=%d err=%s", what, rows, rc,
            log_value(sqlite3_errmsg(s->wdb)));
    if (!sqlite3_get_autocommit(s->wdb)) {
        rc = step_once(s->rollback);
        if (rc != SQLITE_DONE)
            log_msg(LOG_ERROR, "store_rollback_failed", "rc=%d err=%s", rc,
                    log_value(sqlite3_errmsg(s->wdb)));
    }
    if (s->metrics)
        atomic_fetch_add(&s->metrics->store_errors, 1);
    atomic_store(&s->commits_failing, true);
    return -TC_ESTORE;
}

/* After a failed commit, with nothing queued: write the probe row. */
static void probe_commits(struct store *s)
{
    if (step_once(s->begin) == SQLITE_DONE &&
        sqlite3_bind_int64(s->probe, 1, util_now_ms()) == SQLITE_OK &&
        step_once(s->probe) == SQLITE_DONE && step_once(s->commit) == SQLITE_DONE) {
        commits_work(s);
        return;
    }
    if (!sqlite3_get_autocommit(s->wdb))
        step_once(s->rollback);
}

/* Wait for jobs (lock held); while commits fail, probe them every
 * STORE_PROBE_MS meanwhile, so readiness comes back without traffic. */
static void wait_for_jobs(struct store *s)
{
    while (!s->jobs.head && !s->stopping) {
        if (!atomic_load(&s->commits_failing)) {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        util_cond_wait_ms(&s->cond, &s->lock, STORE_PROBE_MS);
        if (s->jobs.head || s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        probe_commits(s);
        pthread_mutex_lock(&s->lock);
    }
}

/* ---------------------------------------------------------------- retention */

/* The retention of a room in days: its own when a retention event set one
 * (has_own, own; own NULL reads as unset), else the deployment's. */
static double effective_days(double deployment, bool has_own, bool own_null, double own)
{
    return has_own && !own_null ? own : deployment;
}

/* Everything one expired message made besides its row: its reactions and
 * mentions (and any index of its text). The row itself is deleted by the
 * caller; edits, deletes and reactions are rows of their own. */
static int purge_message_derived(struct store *s, const char *room, uint64_t id)
{
    int rc = run_on_message(s->unreact_all, room, id, 0);
    if (rc == SQLITE_DONE)
        rc = run_on_message(s->unmention, room, id, 0);
    return rc;
}

/* What one purge removes, decided in its first transaction: per room the
 * highest expired id; next is the room the following batch starts with. */
struct purge_plan {
    char **rooms;
    int64_t *cutoff_ids;
    size_t count;
    size_t next;
};

static void purge_plan_free(struct purge_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->count; i++)
        free(plan->rooms[i]);
    free(plan->rooms);
    free(plan->cutoff_ids);
    free(plan);
}

/* The newest expiring event of room older than cutoff_ts into *cutoff_id
 * (0: none). SQLite result code. */
static int cutoff_of(struct store *s, const char *room, int64_t cutoff_ts, int64_t *cutoff_id)
{
    *cutoff_id = 0;
    if (sqlite3_bind_text(s->cutoff, 1, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s->cutoff, 2, cutoff_ts) != SQLITE_OK)
        return SQLITE_ERROR;
    int rc = sqlite3_step(s->cutoff);
    if (rc == SQLITE_ROW) {
        *cutoff_id = sqlite3_column_int64(s->cutoff, 0); /* NULL: nothing expired */
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s->cutoff);
    sqlite3_clear_bindings(s->cutoff);
    return rc;
}

/* Every room with a retention and something expired at now, with its cutoff
 * id. SQLite result code; *out is the caller's. */
static int plan_purge(struct store *s, int64_t now, struct purge_plan **out)
{
    double deployment = atomic_load(&s->retention_days);
    struct purge_plan *plan = xcalloc(1, sizeof(*plan));
    sqlite3_stmt *st = s->purge_rooms;
    size_t cap = 0, icap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        double days =
            effective_days(deployment, sqlite3_column_int(st, 1) != 0,
                           sqlite3_column_type(st, 2) == SQLITE_NULL, sqlite3_column_double(st, 2));
        if (!name || days <= 0)
            continue;
        UTIL_GROW(plan->rooms, plan->count, cap);
        UTIL_GROW(plan->cutoff_ids, plan->count, icap);
        plan->rooms[plan->count] = xstrdup(name);
        plan->cutoff_ids[plan->count] = (int64_t)(days * DAY_MS); /* the cutoff age, for now */
        plan->count++;
    }
    sqlite3_reset(st);
    size_t kept = 0, i = 0;
    for (; rc == SQLITE_DONE && i < plan->count; i++) {
        int64_t cutoff_id;
        rc = cutoff_of(s, plan->rooms[i], now - plan->cutoff_ids[i], &cutoff_id);
        if (rc == SQLITE_DONE && cutoff_id > 0) {
            plan->rooms[kept] = plan->rooms[i];
            plan->cutoff_ids[kept++] = cutoff_id;
        } else {
            free(plan->rooms[i]);
        }
    }
    for (; i < plan->count; i++)
        free(plan->rooms[i]); /* not looked at after a failure */
    plan->count = kept;
    *out = plan;
    return rc;
}

/* Delete at most *budget expired events of room up to cutoff_id, oldest
 * first, with what the messages made; the head moves past cutoff_id. */
static int purge_room(struct store *s, const char *room, int64_t cutoff_id, int *budget,
                      size_t *purged)
{
    int rc = run_on_message(s->set_head, room, (uint64_t)cutoff_id + 1, 0);
    if (rc != SQLITE_DONE)
        return rc;
    sqlite3_stmt *st = s->expired;
    if (sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, cutoff_id) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, *budget) != SQLITE_OK)
        return SQLITE_ERROR;
    int64_t *ids = NULL;
    bool *messages = NULL;
    size_t n = 0, cap = 0, mcap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        UTIL_GROW(ids, n, cap);
        UTIL_GROW(messages, n, mcap);
        ids[n] = sqlite3_column_int64(st, 0);
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        messages[n++] = kind && strcmp(kind, "message") == 0;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (size_t i = 0; rc == SQLITE_DONE && i < n; i++) {
        if (messages[i])
            rc = purge_message_derived(s, room, (uint64_t)ids[i]);
        if (rc == SQLITE_DONE)
            rc = run_on_message(s->purge_one, room, (uint64_t)ids[i], 0);
    }
    *budget -= (int)n;
    *purged += n;
    free(ids);
    free(messages);
    return rc;
}

/* One transaction of the purge as of now (planned in the first): 1 when the
 * budget ran out (more may be left), 0 when done, -TC_ESTORE. *purged counts
 * the rows deleted. */
static int purge_batch(struct store *s, int64_t now, struct purge_plan **plan, size_t *purged)
{
    int budget = STORE_PURGE_BATCH;
    *purged = 0;
    int rc = step_once(s->begin);
    if (rc == SQLITE_DONE && !*plan)
        rc = plan_purge(s, now, plan);
    while (rc == SQLITE_DONE && (*plan)->next < (*plan)->count && budget > 0) {
        struct purge_plan *p = *plan;
        rc = purge_room(s, p->rooms[p->next], p->cutoff_ids[p->next], &budget, purged);
        if (budget > 0)
            p->next++; /* the room is done: its batch was not full */
    }
    if (rc == SQLITE_DONE)
        rc = step_once(s->commit);
    if (rc != SQLITE_DONE) {
        log_msg(LOG_ERROR, "store_purge_failed", "rc=%d err=\"%s\"", rc, sqlite3_errmsg(s->wdb));
        if (!sqlite3_get_autocommit(s->wdb))
            step_once(s->rollback);
        *purged = 0;
        return -TC_ESTORE;
    }
    if (*purged) {
        log_msg(LOG_INFO, "store_purged", "rows=%zu", *purged);
        if (s->metrics)
            atomic_fetch_add(&s->metrics->retention_purged, *purged);
    }
    return budget <= 0 && (*plan)->next < (*plan)->count ? 1 : 0;
}

static int enqueue(struct store *s, struct store_job *job);

/* Run the purge job j: one bounded transaction; when more is left, the rest
 * (with j's plan and callback) goes to the back of the queue, so sends queued
 * meanwhile commit first. False when j was re-queued. */
static bool run_purge(struct store *s, struct store_job *j, int *status)
{
    size_t purged;
    int rc = purge_batch(s, j->purge_now, &j->plan, &purged);
    if (rc == 1) {
        struct store_job *next = xcalloc(1, sizeof(*next));
        *next = *j;
        next->next = NULL;
        if (enqueue(s, next) == 0)
            return false;
        free(next); /* stopping: the next start purges the rest */
        rc = 0;
    }
    purge_plan_free(j->plan);
    j->plan = NULL;
    *status = rc;
    return true;
}

static void job_free_import(struct store_job *j)
{
    store_free_messages(j->msgs, j->n_msgs);
    for (size_t i = 0; i < j->n_claims; i++)
        free(j->claims[i]);
    free(j->claims);
    free(j->log);
}

static void *writer_main(void *arg)
{
    struct store *s = arg;

    for (;;) {
        pthread_mutex_lock(&s->lock);
        wait_for_jobs(s);
        if (!s->jobs.head) {
            /* stopping and drained */
            pthread_mutex_unlock(&s->lock);
            break;
        }
        struct store_job *batch;
        size_t n;
        UTIL_FIFO_TAKE(&s->jobs, s->batch_max, next, batch, n);
        s->depth -= n;
        publish_depth(s);
        pthread_mutex_unlock(&s->lock);

        int status = commit_batch(s, batch);
        while (batch) {
            struct store_job *j = batch;
            batch = j->next;
            int purge_status = 0;
            if (j->purge && !run_purge(s, j, &purge_status)) {
                free(j);
                continue;
            }
            if (j->cb)
                j->cb(j->ctx, j->purge ? purge_status : status);
            chat_msg_free(j->msg);
            job_free_import(j);
            free(j);
        }
    }
    return NULL;
}

static int enqueue(struct store *s, struct store_job *job)
{
    pthread_mutex_lock(&s->lock);
    if (s->stopping || !s->writer_started) { /* stopping, or opened read-only */
        pthread_mutex_unlock(&s->lock);
        return s->stopping ? -ESHUTDOWN : -EROFS;
    }
    UTIL_FIFO_PUSH(&s->jobs, job, next);
    s->depth++;
    publish_depth(s);
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int store_append(struct store *store, const struct chat_msg *msg, store_done_cb cb, void *ctx)
{
    if (!store || !msg || !msg->room || !msg->user || !msg->text || msg->id == 0 ||
        msg->id > (uint64_t)INT64_MAX)
        return -EINVAL;
    struct store_job *job = xcalloc(1, sizeof(*job));
    job->msg = chat_msg_clone(msg);
    job->cb = cb;
    job->ctx = ctx;
    int rc = enqueue(store, job);
    if (rc) {
        chat_msg_free(job->msg);
        free(job);
    }
    return rc;
}

int store_barrier(struct store *store, store_done_cb cb, void *ctx)
{
    if (!store)
        return -EINVAL;
    struct store_job *job = xcalloc(1, sizeof(*job));
    job->cb = cb;
    job->ctx = ctx;
    int rc = enqueue(store, job);
    if (rc)
        free(job);
    return rc;
}

int store_import(struct store *store, const char *log, uint64_t begins, struct chat_msg **msgs,
                 size_t n_msgs, char **claims, size_t n_claims, store_done_cb cb, void *ctx)
{
    if (!store || !log)
        return -EINVAL;
    for (size_t i = 0; i < n_msgs; i++) {
        const struct chat_msg *m = msgs[i];
        if (!m->room || strcmp(m->room, log) != 0 || !m->user || !m->text || m->id == 0 ||
            m->id > (uint64_t)INT64_MAX)
            return -EINVAL;
    }
    struct store_job *job = xcalloc(1, sizeof(*job));
    job->log = xstrdup(log);
    job->begins = begins;
    job->msgs = msgs;
    job->n_msgs = n_msgs;
    job->claims = claims;
    job->n_claims = n_claims;
    job->cb = cb;
    job->ctx = ctx;
    int rc = enqueue(store, job);
    if (rc) {
        job->msgs = NULL; /* not consumed on failure */
        job->claims = NULL;
        job->n_msgs = job->n_claims = 0;
        job_free_import(job);
        free(job);
    }
    return rc;
}

size_t store_queue_depth(struct store *store)
{
    if (!store)
        return 0;
    pthread_mutex_lock(&store->lock);
    size_t depth = store->depth;
    pthread_mutex_unlock(&store->lock);
    return depth;
}

/* ---------------------------------------------------------------- reader pool */

static void reader_close(struct store_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < RS_COUNT; i++)
        sqlite3_finalize(r->stmts[i]);
    int rc = sqlite3_close(r->db);
    if (rc != SQLITE_OK)
        log_msg(LOG_ERROR, "store_close_failed", "conn=reader rc=%d", rc);
    free(r);
}

static struct store_reader *reader_open(struct store *s)
{
    struct store_reader *r = xcalloc(1, sizeof(*r));
    int rc = sqlite3_open_v2(s->path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto out_fail;
    sqlite3_busy_timeout(r->db, STORE_BUSY_TIMEOUT_MS);
    for (int i = 0; i < RS_COUNT; i++) {
        rc = sqlite3_prepare_v3(r->db, reader_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->stmts[i],
                                NULL);
        if (rc != SQLITE_OK)
            goto out_fail;
    }
    return r;
out_fail:
    log_msg(LOG_ERROR, "store_reader_open_failed", "path=%s rc=%d err=%s", log_value(s->path), rc,
            log_value(r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc)));
    reader_close(r);
    return NULL;
}

/* Check a reader out of the pool, opening one when fewer than the maximum
 * exist; waits only for another reader to come back. NULL on failure. */
static struct store_reader *reader_get(struct store *s)
{
    struct store_reader *r = NULL;
    pthread_mutex_lock(&s->pool_lock);
    while (!s->idle && s->n_readers >= STORE_READERS_MAX)
        pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    if (s->idle) {
        r = s->idle;
        s->idle = r->next;
        r->next = NULL;
        pthread_mutex_unlock(&s->pool_lock);
        return r;
    }
    s->n_readers++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&s->pool_lock);

    r = reader_open(s);
    if (!r) {
        pthread_mutex_lock(&s->pool_lock);
        s->n_readers--;
        pthread_cond_signal(&s->pool_cond);
        pthread_mutex_unlock(&s->pool_lock);
    }
    return r;
}

static void reader_put(struct store *s, struct store_reader *r)
{
    pthread_mutex_lock(&s->pool_lock);
    r->next = s->idle;
    s->idle = r;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

/* Log a failed read; internal text stays in the log. */
static int read_failed(struct store_reader *r, const char *what, int rc)
{
    log_msg(LOG_ERROR, "store_read_failed", "query=%s rc=%d err=%s", what, rc,
            log_value(sqlite3_errmsg(r->db)));
    return -TC_ESTORE;
}

static char *column_text_or_null(sqlite3_stmt *st, int col)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    return text ? xstrdup(text) : NULL;
}

/* Split the stored mentions (one name per line) into msg. */
static void add_mentions(struct chat_msg *msg, const char *column)
{
    while (column && *column) {
        const char *end = strchr(column, '\n');
        size_t len = end ? (size_t)(end - column) : strlen(column);
        char *name = xstrndup(column, len);
        chat_msg_add_mention(msg, name);
        free(name);
        column = end ? end + 1 : NULL;
    }
}

/* Copy the current row (EVENT_COLUMNS) into a new event. */
static int row_to_msg(sqlite3_stmt *st, const char *room, struct chat_msg **out)
{
    const char *user = (const char *)sqlite3_column_text(st, 1);
    const char *text = (const char *)sqlite3_column_text(st, 2);
    const char *ref = (const char *)sqlite3_column_text(st, 4);
    const char *kind = (const char *)sqlite3_column_text(st, 5);
    if (!user || !text || !kind)
        return -ENOMEM; /* the columns are NOT NULL: only OOM gives NULL */
    struct chat_msg *msg = chat_msg_create(room, user, text, ref);
    msg->id = (uint64_t)sqlite3_column_int64(st, 0);
    msg->ts = sqlite3_column_int64(st, 3);
    if (!chat_kind_parse(kind, &msg->kind)) {
        chat_msg_free(msg);
        return -EINVAL;
    }
    msg->target = (uint64_t)sqlite3_column_int64(st, 6);
    msg->emoji = column_text_or_null(st, 7);
    msg->reply_to = (uint64_t)sqlite3_column_int64(st, 8);
    msg->reply_user = column_text_or_null(st, 9);
    msg->reply_text = column_text_or_null(st, 10);
    add_mentions(msg, (const char *)sqlite3_column_text(st, 11));
    msg->edited_ts = sqlite3_column_int64(st, 12);
    msg->deleted_by = column_text_or_null(st, 13);
    *out = msg;
    return 0;
}

/* Step st to the end, collecting at most max rows; *more tells whether a row
 * beyond max existed. The statement is reset. */
static int collect_rows(struct store_reader *r, sqlite3_stmt *st, const char *what,
                        const char *room, size_t max, struct chat_msg ***out, size_t *count,
                        bool *more)
{
    struct chat_msg **msgs = NULL;
    size_t n = 0, cap = 0;
    int ret = 0, rc;

    *more = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max) {
            *more = true;
            continue;
        }
        UTIL_GROW(msgs, n, cap);
        ret = row_to_msg(st, room, &msgs[n]);
        if (ret)
            goto out_free;
        n++;
    }
    if (rc != SQLITE_DONE) {
        ret = read_failed(r, what, rc);
        goto out_free;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    *out = msgs;
    *count = n;
    return 0;
out_free:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    store_free_messages(msgs, n);
    return ret;
}

static void reverse_msgs(struct chat_msg **msgs, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        struct chat_msg *t = msgs[i];
        msgs[i] = msgs[n - 1 - i];
        msgs[n - 1 - i] = t;
    }
}

/* ---------------------------------------------------------------- reads */

/* Give the messages among msgs (ascending ids) their present reactions. */
static int attach_reactions(struct store_reader *r, const char *room, struct chat_msg **msgs,
                            size_t n)
{
    if (n == 0)
        return 0;
    sqlite3_stmt *st = r->stmts[RS_REACTIONS];
    if (sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(msgs[0]->id)) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, id_param(msgs[n - 1]->id)) != SQLITE_OK) {
        sqlite3_clear_bindings(st);
        return read_failed(r, "reactions", sqlite3_errcode(r->db));
    }
    size_t j = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t target = (uint64_t)sqlite3_column_int64(st, 0);
        const char *emoji = (const char *)sqlite3_column_text(st, 1);
        const char *user = (const char *)sqlite3_column_text(st, 2);
        while (j < n && msgs[j]->id < target)
            j++;
        if (j < n && msgs[j]->id == target && msgs[j]->kind == CHAT_MESSAGE && emoji && user)
            chat_msg_add_reaction(msgs[j], emoji, user, (uint64_t)sqlite3_column_int64(st, 3));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : read_failed(r, "reactions", rc);
}

/* collect_rows, then the reactions of the messages collected (ascending). */
static int collect_events(struct store_reader *r, sqlite3_stmt *st, const char *what,
                          const char *room, size_t max, bool descending, struct chat_msg ***out,
                          size_t *count, bool *more)
{
    int ret = collect_rows(r, st, what, room, max, out, count, more);
    if (ret)
        return ret;
    if (descending)
        reverse_msgs(*out, *count);
    ret = attach_reactions(r, room, *out, *count);
    if (ret) {
        store_free_messages(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return ret;
}

int store_fetch(struct store *store, const char *room, uint64_t before, uint64_t after,
                bool has_after, int limit, struct chat_msg ***out, size_t *count, bool *has_more)
{
    if (!store || !room || !out || !count || !has_more || limit < 1)
        return -EINVAL;
    *out = NULL;
    *count = 0;
    *has_more = false;

    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    /* One row more than asked tells whether the page has a successor. */
    sqlite3_int64 want = (sqlite3_int64)limit + 1;
    sqlite3_stmt *st;
    const char *what;
    bool ok;
    if (has_after) {
        st = r->stmts[RS_AFTER];
        what = "fetch_after";
        ok = sqlite3_bind_int64(st, 2, id_param(after)) == SQLITE_OK &&
             sqlite3_bind_int64(st, 3, want) == SQLITE_OK;
    } else if (before > 0) {
        st = r->stmts[RS_BEFORE];
        what = "fetch_before";
        ok = sqlite3_bind_int64(st, 2, id_param(before)) == SQLITE_OK &&
             sqlite3_bind_int64(st, 3, want) == SQLITE_OK;
    } else {
        st = r->stmts[RS_NEWEST];
        what = "fetch_newest";
        ok = sqlite3_bind_int64(st, 2, want) == SQLITE_OK;
    }
    int ret;
    if (!ok || sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) != SQLITE_OK) {
        ret = read_failed(r, what, sqlite3_errcode(r->db));
        sqlite3_clear_bindings(st);
        goto out_put;
    }
    /* Without after, newest first from SQLite; ascending out. */
    ret = collect_events(r, st, what, room, (size_t)limit, !has_after, out, count, has_more);
out_put:
    reader_put(store, r);
    return ret;
}

int store_fetch_range(struct store *store, const char *room, uint64_t after, uint64_t upto,
                      int limit, struct chat_msg ***out, size_t *count)
{
    if (!store || !room || !out || !count || limit < 1)
        return -EINVAL;
    *out = NULL;
    *count = 0;
    if (upto <= after)
        return 0;

    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_RANGE];
    int ret;
    bool more;
    if (sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(after)) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, id_param(upto)) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, limit) != SQLITE_OK) {
        ret = read_failed(r, "fetch_range", sqlite3_errcode(r->db));
        sqlite3_clear_bindings(st);
        goto out_put;
    }
    ret = collect_events(r, st, "fetch_range", room, (size_t)limit, false, out, count, &more);
out_put:
    reader_put(store, r);
    return ret;
}

int store_search(struct store *store, const struct store_search_query *q, store_search_fn fn,
                 void *ctx, struct store_search_walk *walk)
{
    memset(walk, 0, sizeof(*walk));
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[q->match ? RS_SEARCH_MATCH : RS_SEARCH_RECENT];
    sqlite3_int64 below =
        q->before && q->before <= INT64_MAX ? (sqlite3_int64)q->before : INT64_MAX;
    int ret = 0, rc = SQLITE_DONE;
    if ((q->match && sqlite3_bind_text(st, 1, q->match, -1, SQLITE_STATIC) != SQLITE_OK) ||
        sqlite3_bind_int64(st, 2, below) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, q->examine) != SQLITE_OK || !bind_text_or_null(st, 4, q->room) ||
        !bind_text_or_null(st, 5, q->user))
        ret = -TC_ESTORE;
    bool go_on = true;
    while (ret == 0 && go_on && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        walk->examined++;
        walk->last_position = (uint64_t)sqlite3_column_int64(st, 0);
        if (!sqlite3_column_int(st, 4))
            continue;
        const struct store_search_hit hit = {
            .position = walk->last_position,
            .room = (const char *)sqlite3_column_text(st, 1),
            .id = (uint64_t)sqlite3_column_int64(st, 2),
            .text = (const char *)sqlite3_column_text(st, 3),
        };
        if (!hit.room || !hit.text)
            ret = -ENOMEM;
        else
            go_on = fn(ctx, &hit);
    }
    if (ret == 0 && go_on && rc != SQLITE_DONE)
        ret = read_failed(r, "search", rc);
    walk->exhausted = ret == 0 && go_on && walk->examined < (size_t)q->examine;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    return ret;
}

void store_free_messages(struct chat_msg **msgs, size_t count)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < count; i++)
        chat_msg_free(msgs[i]);
    free(msgs);
}

/* The one event st selects, when bound says its parameters are bound; 0,
 * -ENOENT, or negative. */
static int collect_one(struct store_reader *r, sqlite3_stmt *st, bool bound, const char *what,
                       const char *room, struct chat_msg **out)
{
    if (!bound) {
        int ret = read_failed(r, what, sqlite3_errcode(r->db));
        sqlite3_clear_bindings(st);
        return ret;
    }
    struct chat_msg **msgs = NULL;
    size_t n = 0;
    bool more;
    int ret = collect_events(r, st, what, room, 1, false, &msgs, &n, &more);
    if (ret == 0 && n == 0)
        ret = -ENOENT;
    if (ret == 0)
        *out = msgs[0];
    free(msgs);
    return ret;
}

int store_find_ref(struct store *store, const char *room, const char *user, const char *ref,
                   int64_t since_ts, struct chat_msg **out)
{
    if (!store || !room || !user || !ref || !out)
        return -EINVAL;
    *out = NULL;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_FIND_REF];
    bool bound = sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) == SQLITE_OK &&
                 sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC) == SQLITE_OK &&
                 sqlite3_bind_text(st, 3, ref, -1, SQLITE_STATIC) == SQLITE_OK &&
                 sqlite3_bind_int64(st, 4, since_ts) == SQLITE_OK;
    int ret = collect_one(r, st, bound, "find_ref", room, out);
    reader_put(store, r);
    return ret;
}

int store_get_event(struct store *store, const char *room, uint64_t id, struct chat_msg **out)
{
    if (!store || !room || !out)
        return -EINVAL;
    *out = NULL;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_GET];
    bool bound = sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) == SQLITE_OK &&
                 sqlite3_bind_int64(st, 2, id_param(id)) == SQLITE_OK;
    int ret = collect_one(r, st, bound, "get_event", room, out);
    reader_put(store, r);
    return ret;
}

int store_find_room_user(struct store *store, const char *room, const char *name, char **out)
{
    if (!store || !room || !name || !out)
        return -EINVAL;
    *out = NULL;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ROOM_USER];
    int rc = sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = -ENOENT;
    if (rc == SQLITE_ROW) {
        *out = column_text_or_null(st, 0);
        ret = *out ? 0 : -ENOMEM;
    } else if (rc != SQLITE_DONE) {
        ret = read_failed(r, "room_user", rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    return ret;
}

/* ---------------------------------------------------------------- accounts */

static void account_from_row(sqlite3_stmt *st, struct store_account *a)
{
    a->name = column_text_or_null(st, 0);
    a->hash = column_text_or_null(st, 1);
    a->role = column_text_or_null(st, 2);
    a->display = column_text_or_null(st, 3);
    a->color = column_text_or_null(st, 4);
    a->disabled = sqlite3_column_int(st, 5) != 0;
    a->created = sqlite3_column_int64(st, 6);
}

void store_account_dispose(struct store_account *a)
{
    free(a->name);
    free(a->hash);
    free(a->role);
    free(a->display);
    free(a->color);
    memset(a, 0, sizeof(*a));
}

void store_free_accounts(struct store_account *accounts, size_t count)
{
    for (size_t i = 0; accounts && i < count; i++)
        store_account_dispose(&accounts[i]);
    free(accounts);
}

/* Step st, bound with the texts a and b (b may be NULL), to its first row:
 * SQLITE_ROW, SQLITE_DONE, or an error code; the caller reads the row, then
 * calls reader_done. */
static int first_row(sqlite3_stmt *st, const char *a, const char *b)
{
    if (sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC) != SQLITE_OK ||
        (b && sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC) != SQLITE_OK))
        return SQLITE_ERROR;
    return sqlite3_step(st);
}

static int reader_done(struct store *store, struct store_reader *r, sqlite3_stmt *st,
                       const char *what, int rc)
{
    int ret = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : read_failed(r, what, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    return ret;
}

int store_get_account(struct store *store, const char *name, struct store_account *out)
{
    memset(out, 0, sizeof(*out));
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ACCOUNT];
    int rc = first_row(st, key, NULL);
    if (rc == SQLITE_ROW)
        account_from_row(st, out);
    return reader_done(store, r, st, "account", rc);
}

int store_list_accounts(struct store *store, struct store_account **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ACCOUNTS];
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        UTIL_GROW(*out, *count, cap);
        account_from_row(st, &(*out)[(*count)++]);
    }
    sqlite3_reset(st);
    int ret = rc == SQLITE_DONE ? 0 : read_failed(r, "accounts", rc);
    reader_put(store, r);
    if (ret) {
        store_free_accounts(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return ret;
}

int store_find_session(struct store *store, const char *hash, bool by_token,
                       struct store_session *out)
{
    memset(out, 0, sizeof(*out));
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[by_token ? RS_SESSION_BY_TOKEN : RS_SESSION];
    int rc = first_row(st, hash, NULL);
    if (rc == SQLITE_ROW) {
        out->sid = column_text_or_null(st, 0);
        out->user = column_text_or_null(st, 1);
        out->expires = sqlite3_column_int64(st, 2);
        out->active = sqlite3_column_int(st, 3) != 0;
    }
    return reader_done(store, r, st, "session", rc);
}

int store_account_sessions(struct store *store, const char *name, char ***sids, size_t *count)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    *sids = NULL;
    *count = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ACCOUNT_SESSIONS];
    size_t cap = 0;
    int rc = first_row(st, key, NULL);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        if (!sqlite3_column_int(st, 3) || sqlite3_column_int64(st, 2) <= util_now_ms())
            continue; /* ended or expired */
        UTIL_GROW(*sids, *count, cap);
        (*sids)[(*count)++] = column_text_or_null(st, 0);
    }
    /* SQLITE_DONE ends the rows: success */
    return reader_done(store, r, st, "account_sessions", rc == SQLITE_DONE ? SQLITE_ROW : rc);
}

void store_session_dispose(struct store_session *session)
{
    free(session->sid);
    free(session->user);
    memset(session, 0, sizeof(*session));
}

int store_session_ended(struct store *store, const char *sid)
{
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_SESSION_ENDED];
    int ret = reader_done(store, r, st, "session_ended", first_row(st, sid, NULL));
    return ret == 0 ? 1 : ret == -ENOENT ? 0 : ret;
}

int store_has_claim(struct store *store, const char *room, const char *claim)
{
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_CLAIM];
    int ret = reader_done(store, r, st, "claim", first_row(st, room, claim));
    return ret == 0 ? 1 : ret == -ENOENT ? 0 : ret;
}

int store_invite_expires(struct store *store, const char *code, int64_t *expires)
{
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_INVITE];
    int rc = first_row(st, code, NULL);
    if (rc == SQLITE_ROW)
        *expires = sqlite3_column_int64(st, 0);
    return reader_done(store, r, st, "invite", rc);
}

/* ---------------------------------------------------------------- rooms */

int store_room_info(struct store *store, const char *room, struct store_room_info *info)
{
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ROOM_INFO];
    int rc = first_row(st, room, NULL);
    if (rc == SQLITE_ROW) {
        info->is_private = sqlite3_column_int(st, 0) != 0;
        info->dm = sqlite3_column_int(st, 1) != 0;
        info->closed = sqlite3_column_int(st, 2) != 0;
    }
    return reader_done(store, r, st, "room_info", rc);
}

int store_member_role(struct store *store, const char *room, const char *user, char **role)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(user, key, sizeof(key));
    *role = NULL;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_MEMBER];
    int rc = first_row(st, room, key);
    if (rc == SQLITE_ROW)
        *role = column_text_or_null(st, 0);
    return reader_done(store, r, st, "member", rc);
}

int store_roster(struct store *store, const char *room, char ***names, char ***roles, size_t *count)
{
    *names = *roles = NULL;
    *count = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ROSTER];
    size_t cap = 0, rcap = 0;
    int rc = first_row(st, room, NULL);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        UTIL_GROW(*names, *count, cap);
        UTIL_GROW(*roles, *count, rcap);
        (*names)[*count] = column_text_or_null(st, 0);
        (*roles)[(*count)++] = column_text_or_null(st, 1);
    }
    /* SQLITE_DONE ends the rows: success, and an empty roster is one too */
    return reader_done(store, r, st, "roster", rc == SQLITE_DONE ? SQLITE_ROW : rc);
}

int store_unread(struct store *store, const char *room, const char *user, uint64_t *last_read,
                 int *unread, int *mentions)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(user, key, sizeof(key));
    *last_read = 0;
    *unread = *mentions = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_UNREAD];
    int rc = sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC) == SQLITE_OK &&
                     sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC) == SQLITE_OK &&
                     sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC) == SQLITE_OK
                 ? sqlite3_step(st)
                 : SQLITE_ERROR;
    if (rc == SQLITE_ROW) {
        *last_read = (uint64_t)sqlite3_column_int64(st, 0);
        *unread = sqlite3_column_int(st, 1);
        *mentions = sqlite3_column_int(st, 2);
    }
    return reader_done(store, r, st, "unread", rc);
}

/* The rooms of RS_ROOMS, with the server's own logs when own_logs. */
static int list_logs(struct store *store, const char *after, int limit, bool own_logs,
                     struct store_room **out, size_t *count)
{
    if (!store || !out || !count)
        return -EINVAL;
    *out = NULL;
    *count = 0;

    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_ROOMS];
    if (sqlite3_bind_text(st, 1, after ? after : "", -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, limit > 0 ? limit : INT_MAX - 2) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, own_logs) != SQLITE_OK) {
        sqlite3_reset(st);
        reader_put(store, r);
        return -TC_ESTORE;
    }
    struct store_room *rooms = NULL;
    size_t n = 0, cap = 0;
    int ret = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name) {
            ret = -ENOMEM;
            goto out_reset;
        }
        UTIL_GROW(rooms, n, cap);
        rooms[n].name = xstrdup(name);
        rooms[n].last_id = (uint64_t)sqlite3_column_int64(st, 1);
        rooms[n].is_private = sqlite3_column_int(st, 2) != 0;
        rooms[n].dm = sqlite3_column_int(st, 3) != 0;
        rooms[n].closed = sqlite3_column_int(st, 4) != 0;
        rooms[n].retention_days =
            effective_days(atomic_load(&store->retention_days), sqlite3_column_int(st, 5) != 0,
                           sqlite3_column_type(st, 6) == SQLITE_NULL, sqlite3_column_double(st, 6));
        n++;
    }
    if (rc != SQLITE_DONE)
        ret = read_failed(r, "list_rooms", rc);
out_reset:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    if (ret) {
        store_free_rooms(rooms, n);
        return ret;
    }
    *out = rooms;
    *count = n;
    return 0;
}

int store_list_rooms(struct store *store, const char *after, int limit, struct store_room **out,
                     size_t *count)
{
    return list_logs(store, after, limit, false, out, count);
}

void store_free_rooms(struct store_room *rooms, size_t count)
{
    if (!rooms)
        return;
    for (size_t i = 0; i < count; i++)
        free(rooms[i].name);
    free(rooms);
}

int store_last_id(struct store *store, const char *room, uint64_t *out)
{
    if (!store || !room || !out)
        return -EINVAL;
    *out = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_LAST_ID];
    int ret = 0;
    int rc = sqlite3_bind_text(st, 1, room, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = (uint64_t)sqlite3_column_int64(st, 0); /* NULL reads as 0 */
    else
        ret = read_failed(r, "last_id", rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    return ret;
}

bool store_commits_failing(struct store *store)
{
    return store && atomic_load(&store->commits_failing);
}

/* ---------------------------------------------------------------- moderation */

int store_sanction(struct store *store, const char *room, const char *user,
                   struct store_sanction *out)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(user, key, sizeof(key));
    *out = (struct store_sanction){false, false};
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_SANCTION];
    int rc = first_row(st, room, key);
    if (rc == SQLITE_ROW) {
        out->muted = sqlite3_column_int(st, 0) != 0;
        out->banned = sqlite3_column_int(st, 1) != 0;
    }
    int ret = reader_done(store, r, st, "sanction", rc);
    return ret == -ENOENT ? 0 : ret;
}

int store_list_sanctions(struct store *store, const char *room, struct store_sanction_row **out,
                         size_t *count)
{
    *out = NULL;
    *count = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_SANCTIONS];
    size_t cap = 0;
    int rc = first_row(st, room, NULL);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        UTIL_GROW(*out, *count, cap);
        (*out)[(*count)++] = (struct store_sanction_row){
            .user = column_text_or_null(st, 0),
            .muted = sqlite3_column_int(st, 1) != 0,
            .mute_by = column_text_or_null(st, 2),
            .mute_ts = sqlite3_column_int64(st, 3),
            .banned = sqlite3_column_int(st, 4) != 0,
            .ban_by = column_text_or_null(st, 5),
            .ban_ts = sqlite3_column_int64(st, 6),
        };
    }
    int ret = reader_done(store, r, st, "sanctions", rc == SQLITE_DONE ? SQLITE_ROW : rc);
    if (ret < 0) {
        store_free_sanctions(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return ret;
}

void store_free_sanctions(struct store_sanction_row *rows, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(rows[i].user);
        free(rows[i].mute_by);
        free(rows[i].ban_by);
    }
    free(rows);
}

int store_is_room_owner(struct store *store, const char *room, const char *user)
{
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(user, key, sizeof(key));
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_OWNER];
    int ret = reader_done(store, r, st, "owner", first_row(st, room, key));
    return ret == 0 ? 1 : ret == -ENOENT ? 0 : ret;
}

int store_history_head(struct store *store, const char *room, uint64_t *begins, double *days)
{
    if (!store || !room || !begins || !days)
        return -EINVAL;
    *begins = 1;
    *days = atomic_load(&store->retention_days);
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_HEAD];
    int rc = first_row(st, room, NULL);
    if (rc == SQLITE_ROW) {
        *begins = (uint64_t)sqlite3_column_int64(st, 0);
        *days =
            effective_days(*days, sqlite3_column_int(st, 1) != 0,
                           sqlite3_column_type(st, 2) == SQLITE_NULL, sqlite3_column_double(st, 2));
    }
    return reader_done(store, r, st, "history_head", rc);
}

void store_set_retention(struct store *store, double days)
{
    atomic_store(&store->retention_days, days > 0 ? days : 0);
}

int store_purge(struct store *store, int64_t now_ms, store_done_cb cb, void *ctx)
{
    if (!store)
        return -EINVAL;
    struct store_job *job = xcalloc(1, sizeof(*job));
    *job = (struct store_job){.purge = true, .purge_now = now_ms, .cb = cb, .ctx = ctx};
    int rc = enqueue(store, job);
    if (rc)
        free(job);
    return rc;
}

/* How long the purger waits: 60 s, less for the shortest retention under a
 * day (a tenth of it, at least 1 s), so expiry is never late by more.
 * *any: some room has a retention (else there is nothing to purge). */
static int64_t purge_interval_ms(struct store *s, bool *any)
{
    double shortest = atomic_load(&s->retention_days);
    struct store_reader *r = reader_get(s);
    if (r) {
        sqlite3_stmt *st = r->stmts[RS_MIN_RETENTION];
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            double own = sqlite3_column_double(st, 0);
            if (shortest <= 0 || own < shortest)
                shortest = own;
        }
        sqlite3_reset(st);
        reader_put(s, r);
    }
    *any = shortest > 0;
    double ms = STORE_PURGE_EVERY_S * 1000.0;
    if (shortest > 0 && shortest * DAY_MS / 10 < ms)
        ms = shortest * DAY_MS / 10 < 1000 ? 1000 : shortest * DAY_MS / 10;
    return (int64_t)ms;
}

static void *purger_main(void *arg)
{
    struct store *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        s->retention_changed = false;
        pthread_mutex_unlock(&s->lock);
        bool any = false;
        int64_t wait_ms = purge_interval_ms(s, &any);
        if (any)
            store_purge(s, util_now_ms(), NULL, NULL);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && !s->retention_changed &&
               pthread_cond_timedwait(&s->purger_cond, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int store_retention_start(struct store *store)
{
    if (!store || store->purger_started)
        return -EINVAL;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&store->purger, NULL, purger_main, store);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    store->purger_started = true;
    return 0;
}

/* ---------------------------------------------------------------- sync */

int store_list_logs(struct store *store, struct store_room **out, size_t *count)
{
    return list_logs(store, NULL, 0, true, out, count);
}

int store_export(struct store *store, const char *log, uint64_t after, int limit,
                 struct chat_msg ***out, int64_t **edit_ids, size_t *count)
{
    if (!store || !log || !out || !edit_ids || !count || limit <= 0)
        return -EINVAL;
    *out = NULL;
    *edit_ids = NULL;
    *count = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_EXPORT];
    struct chat_msg **msgs = NULL;
    int64_t *edits = NULL;
    size_t n = 0, cap = 0, ecap = 0;
    int ret = 0, rc = SQLITE_ERROR;
    if (sqlite3_bind_text(st, 1, log, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, id_param(after)) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, limit) != SQLITE_OK)
        goto out_failed;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        UTIL_GROW(msgs, n, cap);
        UTIL_GROW(edits, n, ecap);
        ret = row_to_msg(st, log, &msgs[n]);
        if (ret)
            goto out_reset;
        edits[n] = sqlite3_column_int64(st, 14);
        n++;
    }
out_failed:
    if (rc != SQLITE_DONE)
        ret = read_failed(r, "export", rc);
out_reset:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    if (ret) {
        store_free_messages(msgs, n);
        free(edits);
        return ret;
    }
    *out = msgs;
    *edit_ids = edits;
    *count = n;
    return 0;
}

int store_claims(struct store *store, const char *log, char ***out, size_t *count)
{
    if (!store || !log || !out || !count)
        return -EINVAL;
    *out = NULL;
    *count = 0;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_CLAIMS];
    char **claims = NULL;
    size_t n = 0, cap = 0;
    int ret = 0, rc = sqlite3_bind_text(st, 1, log, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        const char *claim = (const char *)sqlite3_column_text(st, 0);
        UTIL_GROW(claims, n, cap);
        claims[n++] = xstrdup(claim ? claim : "");
    }
    if (rc != SQLITE_DONE)
        ret = read_failed(r, "claims", rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_put(store, r);
    if (ret) {
        for (size_t i = 0; i < n; i++)
            free(claims[i]);
        free(claims);
        return ret;
    }
    *out = claims;
    *count = n;
    return 0;
}

int store_run_end(struct store *store, const char *log, uint64_t begins, uint64_t *out)
{
    if (!store || !log || !out || begins == 0)
        return -EINVAL;
    *out = begins - 1;
    struct store_reader *r = reader_get(store);
    if (!r)
        return -TC_ESTORE;
    sqlite3_stmt *st = r->stmts[RS_HAS_ID];
    int ret = 0;
    int rc = sqlite3_bind_text(st, 1, log, -1, SQLITE_STATIC) == SQLITE_OK &&
                     sqlite3_bind_int64(st, 2, id_param(begins)) == SQLITE_OK
                 ? sqlite3_step(st)
                 : SQLITE_ERROR;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_ROW) {
        st = r->stmts[RS_RUN_COUNT];
        rc = sqlite3_bind_text(st, 1, log, -1, SQLITE_STATIC) == SQLITE_OK &&
                     sqlite3_bind_int64(st, 2, id_param(begins)) == SQLITE_OK
                 ? sqlite3_step(st)
                 : SQLITE_ERROR;
        bool gapless = rc == SQLITE_ROW && sqlite3_column_int64(st, 0) ==
                                               sqlite3_column_int64(st, 1) - id_param(begins) + 1;
        if (gapless)
            *out = (uint64_t)sqlite3_column_int64(st, 1);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_ROW || gapless)
            goto out_done;
        st = r->stmts[RS_RUN_END];
        rc = sqlite3_bind_text(st, 1, log, -1, SQLITE_STATIC) == SQLITE_OK &&
                     sqlite3_bind_int64(st, 2, id_param(begins)) == SQLITE_OK
                 ? sqlite3_step(st)
                 : SQLITE_ERROR;
        if (rc == SQLITE_ROW)
            *out = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
out_done:
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = read_failed(r, "run_end", rc);
    reader_put(store, r);
    return ret;
}

bool store_is_ready(struct store *store)
{
    if (!store || !atomic_load(&store->ready))
        return false;
    struct store_reader *r = reader_get(store);
    if (!r)
        return false;
    sqlite3_stmt *st = r->stmts[RS_PING];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        read_failed(r, "ping", rc);
    reader_put(store, r);
    return rc == SQLITE_ROW;
}

/* ---------------------------------------------------------------- backup */

/* fsync the file or directory at path. */
static int sync_path(const char *path, bool dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDWR);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Copy every page of src into dst, a step at a time, waiting while the
 * writer holds a lock. SQLite result code. */
static int copy_pages(sqlite3 *src, sqlite3 *dst, int *pages)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b)
        return sqlite3_errcode(dst);
    int rc;
    do {
        /* Every page in one step: one read transaction, one snapshot. */
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            sqlite3_sleep(50);
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    *pages = sqlite3_backup_pagecount(b);
    int frc = sqlite3_backup_finish(b);
    return rc == SQLITE_DONE ? frc : rc;
}

int store_backup(const char *path, const char *dest, bool force, struct store_backup_info *info,
                 char *err, size_t errlen)
{
    int ret = -TC_ESTORE;
    sqlite3 *src = NULL, *dst = NULL;
    struct stat st;
    memset(info, 0, sizeof(*info));
    if (stat(path, &st) != 0) {
        util_set_err(err, errlen, "cannot read the database %s: %s", path, strerror(errno));
        return -errno;
    }
    struct stat dst_st;
    if (stat(dest, &dst_st) == 0 && dst_st.st_dev == st.st_dev && dst_st.st_ino == st.st_ino) {
        util_set_err(err, errlen, "%s is the database itself", dest);
        return -EINVAL;
    }
    if (!force && lstat(dest, &dst_st) == 0) {
        util_set_err(err, errlen, "%s exists (--force replaces it)", dest);
        return -EEXIST;
    }
    char *tmp = xmalloc(strlen(dest) + 5);
    sprintf(tmp, "%s.tmp", dest);
    unlink(tmp);
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        util_set_err(err, errlen, "cannot open %s: %s", path, sqlite3_errmsg(src));
        goto out_close;
    }
    sqlite3_busy_timeout(src, STORE_BUSY_TIMEOUT_MS);
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        util_set_err(err, errlen, "cannot create %s: %s", tmp, sqlite3_errmsg(dst));
        goto out_close;
    }
    int rc = copy_pages(src, dst, &info->pages);
    if (rc != SQLITE_OK) {
        util_set_err(err, errlen, "copying %s to %s: %s", path, tmp, sqlite3_errstr(rc));
        goto out_close;
    }
    if (query_int64(dst, "SELECT count(*) FROM messages", 0, false, &info->events, err, errlen))
        goto out_close;
    if (sqlite3_close(dst) != SQLITE_OK) {
        util_set_err(err, errlen, "closing %s: %s", tmp, sqlite3_errmsg(dst));
        goto out_close;
    }
    dst = NULL;
    char *slash = strrchr(tmp, '/');
    char *dir = slash ? xstrndup(tmp, slash == tmp ? 1 : (size_t)(slash - tmp)) : xstrdup(".");
    rc = sync_path(tmp, false);
    if (rc == 0 && rename(tmp, dest) != 0)
        rc = -errno;
    if (rc == 0)
        rc = sync_path(dir, true);
    free(dir);
    if (rc != 0) {
        util_set_err(err, errlen, "writing %s: %s", dest, strerror(-rc));
        goto out_close;
    }
    if (stat(dest, &st) == 0)
        info->bytes = (int64_t)st.st_size;
    ret = 0;
out_close:
    sqlite3_close(dst);
    sqlite3_close(src);
    if (ret != 0)
        unlink(tmp);
    free(tmp);
    return ret;
}

/* ---------------------------------------------------------------- lifecycle */

/* Open the read-write connection and set it up for a durable WAL log. */
/* Hold an exclusive lock on the database file for as long as the store is
 * open. Two processes on one database both acked the same ids, and one acked
 * message silently went (INSERT OR IGNORE). flock, not SQLite's own POSIX
 * locks, which other processes may share and which SQLite releases. */
static int lock_database(struct store *s, char *err, size_t errlen)
{
    s->lock_fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0) {
        util_set_err(err, errlen, "cannot open %s: %s", s->path, strerror(errno));
        return -TC_ESTORE;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    if (errno == EWOULDBLOCK)
        util_set_err(err, errlen,
                     "%s is in use by another turbochat process; one database serves one node"
                     " (stop the other, or give this one its own --db)",
                     s->path);
    else
        util_set_err(err, errlen, "cannot lock %s: %s", s->path, strerror(errno));
    return -TC_ESTORE;
}

static int open_writer(struct store *s, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(
        s->path, &s->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        util_set_err(err, errlen, "cannot open %s: %s", s->path,
                     s->wdb ? sqlite3_errmsg(s->wdb) : sqlite3_errstr(rc));
        return -TC_ESTORE;
    }
    sqlite3_busy_timeout(s->wdb, STORE_BUSY_TIMEOUT_MS);

    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(s->wdb, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        util_set_err(err, errlen, "cannot open %s: %s", s->path, sqlite3_errmsg(s->wdb));
        sqlite3_finalize(st);
        return -TC_ESTORE;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        util_set_err(err, errlen, "%s: cannot switch to WAL (journal_mode is %s)", s->path,
                     mode ? mode : "unknown");
        sqlite3_finalize(st);
        return -TC_ESTORE;
    }
    sqlite3_finalize(st);

    /* FULL, not NORMAL: an ack promises the message is stored. With WAL,
     * NORMAL already survives kill -9 (the WAL is in the OS's page cache),
     * but a power loss or kernel crash can drop the last commits. FULL adds
     * one fsync of the WAL per commit, and group commit shares that fsync
     * among every message of a batch, so the cost stays small. */
    int ret = run_sql(s->wdb, "PRAGMA synchronous=FULL", err, errlen);
    if (ret == 0)
        ret = run_sql(s->wdb, "PRAGMA foreign_keys=ON", err, errlen);
    return ret;
}

/* The writer's statements, each prepared into the member at offset. */
static const struct {
    size_t offset;
    const char *sql;
} writer_sql[] = {
    {offsetof(struct store, ins),
     "INSERT OR IGNORE INTO messages (room, id, user, text, ts, ref, kind, target, emoji,"
     " reply_to, reply_user, reply_text, mentions)"
     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"},
    {offsetof(struct store, room_user),
     "INSERT OR IGNORE INTO room_users (room, user) VALUES (?1, ?2)"},
    /* Without statistics SQLite walks a room's whole primary key rather
     * than sort a few rows: the statements that look a message's changes
     * or replies up name their index (one seek, not a scan per event). */
    {offsetof(struct store, changes_of),
     "SELECT " EVENT_COLUMNS " FROM messages INDEXED BY messages_target"
     " WHERE room = ?1 AND target = ?2 ORDER BY id"},
    {offsetof(struct store, edit),
     "UPDATE messages SET text = ?3, edited_ts = ?4, edit_id = ?5"
     " WHERE room = ?1 AND id = ?2 AND kind = 'message' AND deleted_by IS NULL"
     " AND COALESCE(edit_id, 0) < ?5"},
    /* An edit, or a reply's quote, of a message deleted before it came. */
    {offsetof(struct store, erase_late),
     "UPDATE messages SET text = iif(kind = 'edit', '', text),"
     " reply_text = iif(reply_text IS NULL, NULL, '')"
     " WHERE room = ?1 AND id = ?2 AND EXISTS (SELECT 1 FROM"
     " messages t WHERE t.room = ?1 AND t.id = ?3 AND t.deleted_by IS NOT NULL)"},
    /* edit_id of a deleted message is its delete's: the lowest delete wins. */
    {offsetof(struct store, del),
     "UPDATE messages SET text = '', deleted_by = ?3, edit_id = ?4, edited_ts = NULL,"
     " mentions = NULL,"
     " reply_to = NULL, reply_user = NULL, reply_text = NULL"
     " WHERE room = ?1 AND id = ?2 AND kind = 'message'"
     " AND (deleted_by IS NULL OR edit_id > ?4)"},
    {offsetof(struct store, erase_edits), "UPDATE messages INDEXED BY messages_target SET text = ''"
                                          " WHERE room = ?1 AND target = ?2 AND kind = 'edit'"},
    {offsetof(struct store, erase_quotes),
     "UPDATE messages INDEXED BY messages_reply SET reply_text = ''"
     " WHERE room = ?1 AND reply_to = ?2"},
    {offsetof(struct store, unreact_all), "DELETE FROM reactions WHERE room = ?1 AND target = ?2"},
    {offsetof(struct store, react),
     "INSERT INTO reactions (room, target, emoji, user, event_id, present)"
     " SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS (SELECT 1 FROM messages"
     " WHERE room = ?1 AND id = ?2 AND deleted_by IS NOT NULL)"
     " ON CONFLICT (room, target, emoji, user) DO UPDATE SET event_id = excluded.event_id,"
     " present = excluded.present WHERE excluded.event_id > reactions.event_id"},
    {offsetof(struct store, claim), "INSERT OR IGNORE INTO claims (room, claim) VALUES (?1, ?2)"},
    {offsetof(struct store, account),
     "INSERT INTO accounts (name_key, name, hash, role, display, color, disabled, created,"
     " created_id, event_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)"
     " ON CONFLICT (name_key) DO UPDATE SET"
     " created_id = min(created_id, excluded.created_id),"
     " name = iif(excluded.event_id > event_id, excluded.name, name),"
     " hash = iif(excluded.event_id > event_id, excluded.hash, hash),"
     " role = iif(excluded.event_id > event_id, excluded.role, role),"
     " display = iif(excluded.event_id > event_id, excluded.display, display),"
     " color = iif(excluded.event_id > event_id, excluded.color, color),"
     " disabled = iif(excluded.event_id > event_id, excluded.disabled, disabled),"
     " created = min(created, excluded.created),"
     " event_id = max(event_id, excluded.event_id)"},
    /* A signout stored first leaves a placeholder the session fills. */
    {offsetof(struct store, session),
     "INSERT INTO sessions (sid, tid, name_key, expires, event_id) VALUES (?1, ?2, ?3, ?4, ?5)"
     " ON CONFLICT (sid) DO UPDATE SET tid = excluded.tid, name_key = excluded.name_key,"
     " expires = excluded.expires, event_id = excluded.event_id"},
    {offsetof(struct store, signout), "INSERT INTO sessions (sid, ended) VALUES (?1, 1) ON "
                                      "CONFLICT (sid) DO UPDATE SET ended = 1"},
    {offsetof(struct store, signout_all),
     "UPDATE accounts SET signout_all_id = max(signout_all_id, ?2) WHERE name_key = ?1"},
    {offsetof(struct store, invite),
     "INSERT OR IGNORE INTO invites (code, expires) VALUES (?1, ?2)"},
    {offsetof(struct store, room),
     "INSERT OR IGNORE INTO rooms (name, private, dm, creator, created) VALUES (?1, ?2, ?3,"
     " ?4, ?5)"},
    {offsetof(struct store, member),
     "INSERT INTO room_members (room, user_key, user, role, present, event_id)"
     " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (room, user_key) DO UPDATE SET"
     " user = excluded.user, role = excluded.role, present = excluded.present,"
     " event_id = excluded.event_id WHERE excluded.event_id > event_id"},
    {offsetof(struct store, close_room),
     "INSERT INTO rooms (name, private, dm, creator, created, closed) VALUES (?1, 0, 0, ?2,"
     " ?3, 1) ON CONFLICT (name) DO UPDATE SET closed = 1"},
    {offsetof(struct store, read),
     "INSERT INTO read_state (user_key, room, last_read) VALUES (?1, ?2, ?3)"
     " ON CONFLICT (user_key, room) DO UPDATE SET last_read = max(last_read, "
     "excluded.last_read)"},
    {offsetof(struct store, mention),
     "INSERT OR IGNORE INTO message_mentions (room, user_key, id) VALUES (?1, ?2, ?3)"},
    {offsetof(struct store, unmention), "DELETE FROM message_mentions WHERE room = ?1 AND id = ?2"},
    {offsetof(struct store, search_slot), "SELECT 1 FROM search WHERE rowid = ?1"},
    {offsetof(struct store, search_add),
     "INSERT INTO search (rowid, message_text, message_room, message_id, message_user)"
     " VALUES (?1, ?2, ?3, ?4, ?5)"},
    {offsetof(struct store, search_text),
     "SELECT ts, text, user FROM messages WHERE room = ?1 AND id = ?2 AND kind = 'message'"
     " AND deleted_by IS NULL"},
    {offsetof(struct store, mute),
     "INSERT INTO room_sanctions (room, user_key, user, muted, mute_id, mute_by, mute_ts)"
     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room, user_key) DO UPDATE SET"
     " user = excluded.user, muted = excluded.muted, mute_id = excluded.mute_id,"
     " mute_by = excluded.mute_by, mute_ts = excluded.mute_ts"
     " WHERE excluded.mute_id > mute_id"},
    {offsetof(struct store, ban),
     "INSERT INTO room_sanctions (room, user_key, user, banned, ban_id, ban_by, ban_ts)"
     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room, user_key) DO UPDATE SET"
     " user = excluded.user, banned = excluded.banned, ban_id = excluded.ban_id,"
     " ban_by = excluded.ban_by, ban_ts = excluded.ban_ts WHERE excluded.ban_id > ban_id"},
    {offsetof(struct store, retention),
     "INSERT INTO room_retention (room, days, event_id) VALUES (?1, ?2, ?3)"
     " ON CONFLICT (room) DO UPDATE SET days = excluded.days, event_id = excluded.event_id"
     " WHERE excluded.event_id > event_id"},
    {offsetof(struct store, head_of), "SELECT begins FROM log_heads WHERE room = ?1"},
    {offsetof(struct store, purge_rooms),
     "WITH RECURSIVE r(name) AS ("
     " SELECT (SELECT room FROM messages ORDER BY room LIMIT 1)"
     " UNION ALL"
     " SELECT (SELECT room FROM messages WHERE room > r.name ORDER BY room LIMIT 1)"
     " FROM r WHERE r.name IS NOT NULL)"
     " SELECT r.name, t.room IS NOT NULL, t.days FROM r"
     " LEFT JOIN room_retention t ON t.room = r.name"
     " WHERE r.name IS NOT NULL AND r.name NOT LIKE '.%'"},
    {offsetof(struct store, cutoff),
     "SELECT max(id) FROM messages INDEXED BY messages_ts WHERE room = ?1 AND ts < ?2"
     " AND " EXPIRING_KINDS},
    {offsetof(struct store, expired),
     "SELECT id, kind FROM messages WHERE room = ?1 AND id <= ?2 AND " EXPIRING_KINDS
     " ORDER BY id LIMIT ?3"},
    {offsetof(struct store, purge_one), "DELETE FROM messages WHERE room = ?1 AND id = ?2"},
    {offsetof(struct store, set_head),
     "INSERT INTO log_heads (room, begins) VALUES (?1, ?2)"
     " ON CONFLICT (room) DO UPDATE SET begins = max(begins, excluded.begins)"},
    {offsetof(struct store, probe),
     "INSERT INTO store_probe (id, ts) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET ts = ?1"},
    {offsetof(struct store, begin), "BEGIN IMMEDIATE"},
    {offsetof(struct store, commit), "COMMIT"},
    {offsetof(struct store, rollback), "ROLLBACK"},
};

static int prepare_writer(struct store *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < ARRAY_LEN(writer_sql); i++) {
        sqlite3_stmt **slot = (sqlite3_stmt **)((char *)s + writer_sql[i].offset);
        if (sqlite3_prepare_v3(s->wdb, writer_sql[i].sql, -1, SQLITE_PREPARE_PERSISTENT, slot,
                               NULL) != SQLITE_OK) {
            util_set_err(err, errlen, "%s: %s", writer_sql[i].sql, sqlite3_errmsg(s->wdb));
            return -TC_ESTORE;
        }
    }
    return 0;
}

/* Start the writer with every signal blocked, so signals reach main. */
static int start_writer(struct store *s, char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->writer, NULL, writer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        util_set_err(err, errlen, "cannot start the store writer: %s", strerror(rc));
        return -rc;
    }
    pthread_mutex_lock(&s->lock); /* enqueue reads it under the lock */
    s->writer_started = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static struct store *store_alloc(const char *path, int batch_max, struct metrics *metrics)
{
    struct store *s = xcalloc(1, sizeof(*s));
    s->path = xstrdup(path);
    s->lock_fd = -1;
    s->metrics = metrics;
    s->batch_max = batch_max;
    pthread_mutex_init(&s->lock, NULL);
    util_cond_init_monotonic(&s->cond);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_cond_init(&s->purger_cond, NULL);
    publish_depth(s);
    return s;
}

struct store *store_open_readonly(const char *path, char *err, size_t errlen)
{
    struct store *s = store_alloc(path, 1, NULL);
    struct store_reader *r = reader_get(s);
    if (!r) {
        util_set_err(err, errlen, "cannot open %s for reading (see the log)", path);
        store_free(s);
        return NULL;
    }
    reader_put(s, r);
    atomic_store(&s->ready, true);
    return s;
}

struct store *store_create(const char *path, const struct store_migration *migrations,
                           size_t n_migrations, int batch_max, struct metrics *metrics, char *err,
                           size_t errlen)
{
    if (!path || !*path || (n_migrations && !migrations)) {
        util_set_err(err, errlen, "no database path");
        return NULL;
    }
    if (batch_max < 1) {
        util_set_err(err, errlen, "commit batch size must be at least 1 (got %d)", batch_max);
        return NULL;
    }
    struct migration_ref *refs = NULL;
    if (sort_migrations(migrations, n_migrations, &refs, err, errlen) != 0)
        return NULL;
    struct store *s = store_alloc(path, batch_max, metrics);

    if (make_parent_dirs(path, err, errlen) != 0 || lock_database(s, err, errlen) != 0 ||
        open_writer(s, err, errlen) != 0 ||
        run_migrations(s->wdb, refs, n_migrations, err, errlen) != 0 ||
        prepare_writer(s, err, errlen) != 0)
        goto out_free;

    /* Open one reader now: a file readers cannot use fails here, not later. */
    struct store_reader *r = reader_get(s);
    if (!r) {
        util_set_err(err, errlen, "cannot open %s for reading (see the log)", path);
        goto out_free;
    }
    reader_put(s, r);

    if (start_writer(s, err, errlen) != 0)
        goto out_free;
    atomic_store(&s->ready, true);
    log_msg(LOG_INFO, "store_opened", "path=%s batch_max=%d", log_value(path), batch_max);
    free(refs);
    return s;

out_free:
    log_msg(LOG_ERROR, "store_open_failed", "path=%s reason=%s", log_value(path),
            log_value(err && errlen ? err : ""));
    store_free(s);
    free(refs);
    return NULL;
}

void store_free(struct store *store)
{
    if (!store)
        return;
    atomic_store(&store->ready, false);
    pthread_mutex_lock(&store->lock);
    store->stopping = true;
    pthread_cond_signal(&store->purger_cond);
    pthread_cond_signal(&store->cond);
    pthread_mutex_unlock(&store->lock);
    if (store->purger_started)
        pthread_join(store->purger, NULL);
    if (store->writer_started)
        pthread_join(store->writer, NULL); /* the writer drains the queue first */

    while (store->idle) {
        struct store_reader *r = store->idle;
        store->idle = r->next;
        reader_close(r);
    }
    /* Not sqlite3_next_stmt: FTS5 keeps statements of its own on wdb. */
    for (size_t i = 0; i < ARRAY_LEN(writer_sql); i++)
        sqlite3_finalize(*(sqlite3_stmt **)((char *)store + writer_sql[i].offset));
    /* The last connection to close checkpoints the WAL into the database. */
    int rc = sqlite3_close(store->wdb);
    if (rc != SQLITE_OK)
        log_msg(LOG_ERROR, "store_close_failed", "conn=writer rc=%d", rc);

    pthread_cond_destroy(&store->purger_cond);
    pthread_cond_destroy(&store->pool_cond);
    pthread_mutex_destroy(&store->pool_lock);
    pthread_cond_destroy(&store->cond);
    pthread_mutex_destroy(&store->lock);
    if (store->lock_fd >= 0)
        close(store->lock_fd); /* and with it the lock */
    free(store->path);
    free(store);
}
