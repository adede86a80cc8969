/* store: the node's SQLite log of every event (message or change of one) of
 * every room and of the server's own logs (accounts, read state), with what
 * the events made: each message's current state, accounts and sessions,
 * private rooms and their members, read state, mutes and bans, each room's
 * retention and where its history begins. Migrations at start-up, one writer
 * thread with group commit (and retention's purge, in bounded batches),
 * readers that never wait; the online backup of the database file; whole
 * pages of a log out and in for a new node's copy (peer). */
#ifndef TURBOCHAT_STORE_H
#define TURBOCHAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chat_msg;
struct store;
struct metrics;

/* One migration: file name "NNNN_name.sql" and its SQL text. */
struct store_migration {
    const char *name;
    const char *sql;
};

/* Called on the writer thread once per submitted job after its transaction
 * committed (status 0) or failed (negative); must not block. */
typedef void (*store_done_cb)(void *ctx, int status);

/* Open (creating the file and its directory) the database at path, set WAL,
 * apply the migrations not yet applied, in name order, each in a transaction,
 * and start the writer thread. A database whose schema version is newer than
 * the last migration is refused. NULL on failure with the reason in err.
 * metrics may be NULL. Free with store_free. */
struct store *store_create(const char *path, const struct store_migration *migrations,
                           size_t n_migrations, int batch_max, struct metrics *metrics, char *err,
                           size_t errlen);

/* The database at path (made and migrated by a node) for reading only:
 * no writer, no lock, so another process may serve it meanwhile; its write
 * functions fail. For the command line beside a running node. Free with
 * store_free. NULL with the reason in err. */
struct store *store_open_readonly(const char *path, char *err, size_t errlen);

/* Commit everything queued, stop the writer thread, close. Accepts NULL. */
void store_free(struct store *store);

/* Queue the event msg (copied) for insertion; INSERT OR IGNORE on (room, id),
 * so an event stored twice is stored once. A change is applied to the message
 * it targets in the same transaction. cb runs exactly once on the writer
 * thread after the commit, in submission order, when this returns 0.
 * cb may be NULL. Any thread. */
int store_append(struct store *store, const struct chat_msg *msg, store_done_cb cb, void *ctx);

/* Queue a job with nothing to write: cb runs after every job queued before it. */
int store_barrier(struct store *store, store_done_cb cb, void *ctx);

/* Number of jobs waiting for the writer. */
size_t store_queue_depth(struct store *store);

/* A page of the messages of room (not their changes) in their current state,
 * in ascending id order. With has_after: the oldest limit with id > after;
 * else with before > 0: the newest limit with id < before; else the newest
 * limit. *has_more tells whether more exist in the paging direction. The
 * array and messages are the caller's: free with store_free_messages. 0 or
 * negative. Any thread; never waits for the writer. */
int store_fetch(struct store *store, const char *room, uint64_t before, uint64_t after,
                bool has_after, int limit, struct chat_msg ***out, size_t *count, bool *has_more);

/* Every event of room with after < id <= upto, ascending, at most limit;
 * messages in their current state. */
int store_fetch_range(struct store *store, const char *room, uint64_t after, uint64_t upto,
                      int limit, struct chat_msg ***out, size_t *count);

void store_free_messages(struct chat_msg **msgs, size_t count);

/* A walk down the search index (migrations/0005_search.sql), newest first. */
struct store_search_query {
    const char *match; /* FTS5 expression (trigram phrases); NULL: every message */
    const char *room;  /* only this room; NULL: any */
    const char *user;  /* only by this author (ASCII case aside); NULL: any */
    uint64_t before;   /* only positions below it; 0: from the newest */
    int examine;       /* look at no more than this many candidates */
};
/* A live message (of any room, not the server's own logs) that matched, as
 * the index holds it: its current text. Valid during the callback only. */
struct store_search_hit {
    uint64_t position; /* its place in the order: pass it as before to go on */
    const char *room;
    uint64_t id;
    const char *text;
};
/* Takes a hit; false stops the walk after it. Must not use the store. */
typedef bool (*store_search_fn)(void *ctx, const struct store_search_hit *hit);
/* How far a walk went. */
struct store_search_walk {
    size_t examined;        /* candidates looked at, those the filters refused too */
    uint64_t last_position; /* of the last one looked at; 0: none */
    bool exhausted;         /* the index has nothing further */
};
/* Hand fn every candidate of q that passes its room and user filters, in
 * order, until fn says stop or q->examine candidates were looked at. 0 or
 * negative. Any thread; never waits for the writer. */
int store_search(struct store *store, const struct store_search_query *q, store_search_fn fn,
                 void *ctx, struct store_search_walk *walk);

/* The event that (room, user, ref) produced at or after since_ts, copied into
 * *out (caller frees with chat_msg_free). 0, -ENOENT, or negative. */
int store_find_ref(struct store *store, const char *room, const char *user, const char *ref,
                   int64_t since_ts, struct chat_msg **out);

/* The event id of room, copied into *out (free with chat_msg_free); a message
 * in its current state. 0, -ENOENT, or negative. */
int store_get_event(struct store *store, const char *room, uint64_t id, struct chat_msg **out);

/* The name of a user who has sent a message in room, as they spell it, that
 * equals name but for ASCII case (the exact spelling first); *out is the
 * caller's to free. 0, -ENOENT, or negative. */
int store_find_room_user(struct store *store, const char *room, const char *name, char **out);

/* One row per room in the log. */
struct store_room {
    char *name;
    uint64_t last_id;
    bool is_private;
    bool dm;
    bool closed;
    double retention_days; /* effective: the room's own or the deployment's; 0 forever */
};
/* The rooms (not the logs whose names start with '.'; also those whose every
 * message expired) with names after after (NULL: from the first), at most
 * limit of them (0: all), with their highest id and kind, sorted by name;
 * free with store_free_rooms. */
int store_list_rooms(struct store *store, const char *after, int limit, struct store_room **out,
                     size_t *count);
void store_free_rooms(struct store_room *rooms, size_t count);

/* ---- accounts (auth = accounts): what the events of CHAT_ACCOUNTS_LOG made */

/* The name in ASCII lower case, as names are unique: out holds outlen bytes. */
void store_name_key(const char *name, char *out, size_t outlen);

/* An account; strings owned, free with store_account_dispose. */
struct store_account {
    char *name;
    char *hash; /* Argon2id, encoded: never leaves the node */
    char *role; /* "admin" or "user" */
    char *display;
    char *color;
    bool disabled;
    int64_t created; /* ms */
};
/* The account named name in any ASCII case: 0, -ENOENT, or negative. */
int store_get_account(struct store *store, const char *name, struct store_account *out);
/* Every account by name; free with store_free_accounts. */
int store_list_accounts(struct store *store, struct store_account **out, size_t *count);
void store_account_dispose(struct store_account *account);
void store_free_accounts(struct store_account *accounts, size_t count);

/* A session; free with store_session_dispose. */
struct store_session {
    char *sid;  /* the session's id: SHA-256 of its cookie, hex */
    char *user; /* the account's name */
    int64_t expires;
    bool active; /* not ended, not signed out everywhere since, account enabled */
};
/* The session whose cookie (or, with by_token, token) has the SHA-256 hash
 * (hex): 0, -ENOENT, or negative. Expiry is the caller's to check. */
int store_find_session(struct store *store, const char *hash, bool by_token,
                       struct store_session *out);
void store_session_dispose(struct store_session *session);
/* The ids of the active, unexpired sessions of the account name: *sids and
 * each id are the caller's to free. */
int store_account_sessions(struct store *store, const char *name, char ***sids, size_t *count);

/* 1 when a signout ended the session sid (also one no node has a record
 * of: a sealed one), 0 when none did, or negative. */
int store_session_ended(struct store *store, const char *sid);

/* 1 when an event of room took claim, 0 when none did, or negative. */
int store_has_claim(struct store *store, const char *room, const char *claim);
/* When the invite code (SHA-256, hex) expires: 0, -ENOENT, or negative. */
int store_invite_expires(struct store *store, const char *code, int64_t *expires);

/* ---- rooms, members and read state (auth = accounts) */

/* What a room's first event and its closing said. */
struct store_room_info {
    bool is_private;
    bool dm;
    bool closed;
};
/* 0 with *info, -ENOENT when room has no such event (a room of auth off or
 * token, or none), or negative. */
int store_room_info(struct store *store, const char *room, struct store_room_info *info);
/* The role ("owner", "member") of user, a present member of room, in *role
 * (the caller frees it): 0, -ENOENT, or negative. */
int store_member_role(struct store *store, const char *room, const char *user, char **role);
/* The present members of room and their roles, by name: names[i], roles[i];
 * free both with hub-style free of each string and the arrays. */
int store_roster(struct store *store, const char *room, char ***names, char ***roles,
                 size_t *count);
/* For user in room: the last id read (0: never), and how many messages of
 * others came after it and how many of those mention user (each at most 999). */
int store_unread(struct store *store, const char *room, const char *user, uint64_t *last_read,
                 int *unread, int *mentions);

/* ---- moderation: what the mute, unmute, ban and unban events of a room made */

#define STORE_SANCTIONS_MAX 1000 /* rows store_list_sanctions returns at most */

/* Whether user (any ASCII case) is muted or banned in room. */
struct store_sanction {
    bool muted;
    bool banned;
};
/* One primary-key lookup: 0 with *out (both false when never sanctioned),
 * or negative. Any thread; never waits for the writer. */
int store_sanction(struct store *store, const char *room, const char *user,
                   struct store_sanction *out);
/* A user muted or banned in a room: who did it (the deciding event's user)
 * and when (ms). */
struct store_sanction_row {
    char *user;
    bool muted;
    char *mute_by; /* NULL when never muted */
    int64_t mute_ts;
    bool banned;
    char *ban_by; /* NULL when never banned */
    int64_t ban_ts;
};
/* The users muted or banned now in room, by name, at most
 * STORE_SANCTIONS_MAX; free with store_free_sanctions. 0 or negative. */
int store_list_sanctions(struct store *store, const char *room, struct store_sanction_row **out,
                         size_t *count);
void store_free_sanctions(struct store_sanction_row *rows, size_t count);
/* 1 when user made the public room room or is an owner of the private room
 * room, 0 when not, or negative. */
int store_is_room_owner(struct store *store, const char *room, const char *user);

/* True from a failed commit until one succeeds (the writer tries a small
 * write every second meanwhile): readiness says 503 then. */
bool store_commits_failing(struct store *store);

/* Highest id stored for room, 0 when none; negative on error. Never below
 * where its history begins, less one: ids of expired messages are not given
 * out again. */
int store_last_id(struct store *store, const char *room, uint64_t *out);

/* ---- retention: messages expire (migrations/0006_retention.sql) */

/* Where room's history begins (the lowest id it may serve; 1 when nothing
 * expired) and its effective retention in days (0: forever). 0 or negative.
 * Any thread. */
int store_history_head(struct store *store, const char *room, uint64_t *begins, double *days);

/* The deployment's retention in days (0: forever), which rooms without a
 * retention event of their own follow. Any thread. */
void store_set_retention(struct store *store, double days);

/* Queue a purge as of now_ms: in every room with a retention, the
 * message-like events (chat_kind_expires) up to the highest such id whose
 * ts < now_ms - retention leave the log with what they made, and the room's
 * history begins after it. Runs on the writer in transactions of at most
 * 5,000 rows, queued behind the jobs waiting meanwhile; cb runs once at the
 * end (0 or negative). Any thread. */
int store_purge(struct store *store, int64_t now_ms, store_done_cb cb, void *ctx);

/* Start the thread that queues a purge now, then every 60 s, or for a
 * retention under a day every tenth of it (at least 1 s). store_free stops
 * it. 0 or negative. Main thread, once. */
int store_retention_start(struct store *store);

/* ---- backup */

/* What store_backup copied. */
struct store_backup_info {
    int64_t bytes;  /* size of the copy */
    int64_t events; /* rows of the log */
    int pages;      /* database pages */
};

/* Copy the database at path (which must exist; a node may be serving it)
 * with SQLite's online backup API into dest: a consistent snapshot written
 * to dest.tmp in the same directory, fsynced, then renamed to dest (and the
 * directory fsynced). An existing dest is refused unless force. 0 with *info,
 * or negative with the reason in err. Any thread; opens its own connections. */
int store_backup(const char *path, const char *dest, bool force, struct store_backup_info *info,
                 char *err, size_t errlen);
/* ---- sync: copying the log between nodes (peer) */

/* Every log, the server's own ('.accounts', '.read.*') too, as
 * store_list_rooms lists rooms, sorted by name; free with store_free_rooms.
 * Any thread. */
int store_list_logs(struct store *store, struct store_room **out, size_t *count);
/* The events of log with id > after, ascending, at most limit, as stored now
 * (current state), and each one's edit_id column (0: NULL) in (*edit_ids)[i].
 * Free with store_free_messages and free(). Any thread. */
int store_export(struct store *store, const char *log, uint64_t after, int limit,
                 struct chat_msg ***out, int64_t **edit_ids, size_t *count);
/* What the events of log took (the claims table), sorted; *out and each
 * string are the caller's to free. Any thread. */
int store_claims(struct store *store, const char *log, char ***out, size_t *count);
/* The end of the gapless run of ids of log that starts at begins (>= 1):
 * begins - 1 when begins itself is missing. Any thread. */
int store_run_end(struct store *store, const char *log, uint64_t begins, uint64_t *out);
/* Queue one import of log: where its history begins on the peer (begins >
 * 1: the ids before it expired there, and do here), the events
 * msgs[0..n_msgs) (each of log) through the path of store_append, and the
 * claims, in one transaction. On 0 the arrays and what they hold are
 * consumed, and cb runs exactly once on the writer thread after the commit;
 * on failure nothing is consumed. Any thread. */
int store_import(struct store *store, const char *log, uint64_t begins, struct chat_msg **msgs,
                 size_t n_msgs, char **claims, size_t n_claims, store_done_cb cb, void *ctx);

/* True once store_create succeeded and the database answers. */
bool store_is_ready(struct store *store);

#endif
