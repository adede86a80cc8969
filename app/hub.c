/* hub: rooms and members of this node, presence and typing, and fan-out:
 * a room's events (messages and their changes) to its members, a mention to
 * every connection of the user it names.
 * A broadcast is encoded once into a shared frame (loop_frame) that each
 * member's connection queues. A join's replay is read from history in pages:
 * the first before `joined` is answered, the next ones each time the
 * connection's queue has drained (hub_conn_drained), so a replay larger than
 * the queue arrives whole with memory bounded per connection. Lock order:
 * hub->lock, then the connection's own lock (inside loop). */
#define _GNU_SOURCE
#include "hub.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "proto.h"
#include "strmap.h"
#include "util.h"

#define HUB_REPLAY_PAGE 64 /* messages read from history per page */

/* Where a membership is in its join. */
enum member_state {
    MEMBER_JOINING,   /* before `joined` is queued: nothing is sent */
    MEMBER_REPLAYING, /* live messages are dropped: the replay reads them */
    MEMBER_LIVE,
};

/* conn in room. Both indexes point at it: room->members and hc->rooms. */
struct membership {
    struct hub_room *room;
    struct hub_conn *hc;
    enum member_state state;
    uint64_t skip_upto;    /* LIVE: messages with id <= this were sent or are in joined.last_id */
    uint64_t replay_after; /* REPLAYING: the next page starts after this id */
};

struct hub_room {
    char *name;
    struct membership **members;
    size_t member_count;
    size_t member_cap;
    uint64_t last_id;      /* highest id delivered or read from history */
    struct strmap *remote; /* user -> number of other nodes reporting them (intptr_t) */
};

struct hub_conn {
    struct hub *hub;
    struct conn *conn;                /* the socket side, referenced */
    char *user;                       /* set once after hello; under hub->lock */
    const struct auth_claims *claims; /* with auth on: the rooms it may read */
    char *sid;                        /* auth = accounts: its session; under hub->lock */
    uint64_t serial;                  /* names it among this node's connections */
    struct membership **rooms;        /* under hub->lock */
    size_t room_count;
    size_t room_cap;
};

struct hub {
    const struct config *config;
    struct metrics *metrics;
    struct broker *broker; /* history and presence out; set before connections */

    pthread_mutex_t lock;         /* rooms, memberships, users */
    struct strmap *rooms;         /* name -> struct hub_room */
    struct strmap *users;         /* name -> struct hub_user: connections after hello */
    atomic_uint_fast64_t serials; /* the last hub_conn serial given */
};

/* The connections of one user on this node. */
struct hub_user {
    struct hub_conn **conns;
    size_t count;
    size_t cap;
};

static struct loop_frame *frame_from_json(cJSON *obj)
{
    size_t len;
    char *json = proto_encode_json(obj, &len);
    cJSON_Delete(obj);
    struct loop_frame *f = loop_frame_text(json, len, 0);
    free(json);
    return f;
}

/* A room's event as its frame (`message` or `update`), ordered by its id. */
static struct loop_frame *frame_from_event(const struct chat_msg *msg)
{
    size_t len;
    char *json = proto_encode_event(msg, &len);
    struct loop_frame *f = loop_frame_text(json, len, msg->id);
    free(json);
    return f;
}

/* ---------------------------------------------------------------- hub */

static void room_free(void *value)
{
    struct hub_room *room = value;
    strmap_free(room->remote);
    free(room->members);
    free(room->name);
    free(room);
}

static void user_free(void *value)
{
    struct hub_user *u = value;
    free(u->conns);
    free(u);
}

struct hub *hub_create(const struct config *config, struct metrics *metrics)
{
    struct hub *hub = xcalloc(1, sizeof(*hub));
    hub->config = config;
    hub->metrics = metrics;
    pthread_mutex_init(&hub->lock, NULL);
    hub->rooms = strmap_create(room_free);
    hub->users = strmap_create(user_free);
    return hub;
}

void hub_free(struct hub *hub)
{
    if (!hub)
        return;
    strmap_free(hub->rooms);
    strmap_free(hub->users);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

/* ---------------------------------------------------------------- connections */

struct hub_conn *hub_conn_create(struct hub *hub, struct conn *conn)
{
    struct hub_conn *hc = xcalloc(1, sizeof(*hc));
    hc->hub = hub;
    hc->conn = conn;
    hc->serial = atomic_fetch_add(&hub->serials, 1) + 1;
    conn_ref(conn);
    return hc;
}

void hub_conn_origin(const struct hub_conn *hc, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%" PRIu64, hc->hub->config->node_id, hc->serial);
}

struct conn *hub_conn_socket(struct hub_conn *hc)
{
    return hc->conn;
}

void hub_conn_set_user(struct hub_conn *hc, const char *user, const char *sid,
                       const struct auth_claims *claims)
{
    struct hub *hub = hc->hub;
    pthread_mutex_lock(&hub->lock);
    hc->user = xstrdup(user);
    hc->sid = sid ? xstrdup(sid) : NULL;
    hc->claims = claims;
    struct hub_user *u = strmap_get(hub->users, user);
    if (!u) {
        u = xcalloc(1, sizeof(*u));
        strmap_put(hub->users, user, u);
    }
    UTIL_GROW(u->conns, u->count, u->cap);
    u->conns[u->count++] = hc;
    pthread_mutex_unlock(&hub->lock);
}

/* Take hc out of its user's connections. hub->lock held. */
static void user_forget(struct hub *hub, struct hub_conn *hc)
{
    struct hub_user *u = hc->user ? strmap_get(hub->users, hc->user) : NULL;
    if (!u)
        return;
    for (size_t i = 0; i < u->count; i++) {
        if (u->conns[i] == hc) {
            u->conns[i] = u->conns[--u->count];
            break;
        }
    }
    if (u->count == 0)
        strmap_remove(hub->users, hc->user);
}

/* ---------------------------------------------------------------- rooms */

/* Number of user's connections in room. hub->lock held. */
static size_t room_user_connections(const struct hub_room *room, const char *user)
{
    size_t n = 0;
    for (size_t i = 0; i < room->member_count; i++) {
        const char *u = room->members[i]->hc->user;
        n += u && strcmp(u, user) == 0;
    }
    return n;
}

static struct membership *find_membership(struct hub_conn *hc, const char *room)
{
    for (size_t i = 0; i < hc->room_count; i++) {
        if (strcmp(hc->rooms[i]->room->name, room) == 0)
            return hc->rooms[i];
    }
    return NULL;
}

/* Give f to one member, unless its join has not reached live frames of this
 * kind yet: nothing before `joined`, no message during the replay (the replay
 * reads it from history). hub->lock held. */
static void member_push(struct membership *m, struct loop_frame *f)
{
    if (m->state == MEMBER_JOINING || (f->msg_id != 0 && m->state == MEMBER_REPLAYING))
        return;
    if (f->msg_id != 0 && f->msg_id <= m->skip_upto)
        return;
    conn_send(m->hc->conn, f);
}

/* Send f to every member of room except those of user skip_user. hub->lock held.
 * Returns how many members it reached. */
static size_t room_broadcast(struct hub_room *room, struct loop_frame *f, const char *skip_user)
{
    size_t reached = 0;
    for (size_t i = 0; i < room->member_count; i++) {
        struct membership *m = room->members[i];
        if (skip_user && m->hc->user && strcmp(m->hc->user, skip_user) == 0)
            continue;
        member_push(m, f);
        reached++;
    }
    return reached;
}

/* True when user is online in room through another node. hub->lock held. */
static bool room_has_remote_user(const struct hub_room *room, const char *user)
{
    return room->remote && strmap_get(room->remote, user) != NULL;
}

static void broadcast_presence(struct hub_room *room, const char *user, const char *event)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "presence");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddStringToObject(obj, "user", user);
    cJSON_AddStringToObject(obj, "event", event);
    struct loop_frame *f = frame_from_json(obj);
    room_broadcast(room, f, user);
    loop_frame_unref(f);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct name_list {
    char **names;
    size_t count;
};

static bool collect_name(void *ctx, const char *key, void *value)
{
    struct name_list *list = ctx;
    (void)value;
    list->names[list->count++] = (char *)key;
    return true;
}

/* Distinct user names of room, local and remote, sorted. hub->lock held. */
static char **room_names(const struct hub_room *room, size_t *count)
{
    size_t remote = room->remote ? strmap_count(room->remote) : 0;
    struct name_list list = {xcalloc(room->member_count + remote + 1, sizeof(char *)), 0};
    for (size_t i = 0; i < room->member_count; i++) {
        const char *u = room->members[i]->hc->user;
        if (u)
            list.names[list.count++] = (char *)u;
    }
    if (room->remote)
        strmap_each(room->remote, collect_name, &list);
    char **names = list.names;
    size_t n = list.count;
    qsort(names, n, sizeof(*names), compare_names);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (distinct == 0 || strcmp(names[distinct - 1], names[i]) != 0)
            names[distinct++] = names[i];
    }
    for (size_t i = 0; i < distinct; i++)
        names[i] = xstrdup(names[i]);
    *count = distinct;
    return names;
}

void hub_free_names(char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static struct hub_room *room_get_or_create(struct hub *hub, const char *name)
{
    struct hub_room *room = strmap_get(hub->rooms, name);
    if (!room) {
        room = xcalloc(1, sizeof(*room));
        room->name = xstrdup(name);
        strmap_put(hub->rooms, name, room);
    }
    return room;
}

/* Forget a room nobody is in, here or elsewhere. hub->lock held. */
static void room_release_if_empty(struct hub *hub, struct hub_room *room)
{
    if (room->member_count == 0 && (!room->remote || strmap_count(room->remote) == 0))
        strmap_remove(hub->rooms, room->name);
}

/* Add hc to room, before its `joined`, announcing a new user. hub->lock held. */
static struct membership *membership_add(struct hub *hub, struct hub_conn *hc,
                                         struct hub_room *room)
{
    struct membership *m = xcalloc(1, sizeof(*m));
    m->room = room;
    m->hc = hc;
    m->state = MEMBER_JOINING;
    if (hc->user && room_user_connections(room, hc->user) == 0) {
        if (!room_has_remote_user(room, hc->user))
            broadcast_presence(room, hc->user, "join");
        if (hub->broker)
            broker_presence_changed(hub->broker, room->name, hc->user, true);
    }
    UTIL_GROW(room->members, room->member_count, room->member_cap);
    room->members[room->member_count++] = m;
    UTIL_GROW(hc->rooms, hc->room_count, hc->room_cap);
    hc->rooms[hc->room_count++] = m;
    return m;
}

/* Remove m from both indexes, announce the user's departure, free m and an
 * empty room. hub->lock held. */
static void membership_remove(struct hub *hub, struct membership *m)
{
    struct hub_room *room = m->room;
    struct hub_conn *hc = m->hc;
    for (size_t i = 0; i < room->member_count; i++) {
        if (room->members[i] == m) {
            room->members[i] = room->members[--room->member_count];
            break;
        }
    }
    for (size_t i = 0; i < hc->room_count; i++) {
        if (hc->rooms[i] == m) {
            hc->rooms[i] = hc->rooms[--hc->room_count];
            break;
        }
    }
    free(m);
    if (hc->user && room_user_connections(room, hc->user) == 0) {
        if (!room_has_remote_user(room, hc->user))
            broadcast_presence(room, hc->user, "leave");
        if (hub->broker)
            broker_presence_changed(hub->broker, room->name, hc->user, false);
    }
    room_release_if_empty(hub, room);
}

static struct loop_frame *joined_frame(struct hub_room *room, bool recovered,
                                       const struct hub_read_state *read)
{
    size_t count;
    char **names = room_names(room, &count);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "joined");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddNumberToObject(obj, "last_id", (double)room->last_id);
    cJSON *members = cJSON_AddArrayToObject(obj, "members");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(members, cJSON_CreateString(names[i]));
    cJSON_AddBoolToObject(obj, "recovered", recovered);
    struct hub_read_state none = {.begins = 1};
    read = read ? read : &none;
    cJSON_AddNumberToObject(obj, "unread", read->unread);
    cJSON_AddNumberToObject(obj, "mentions", read->mentions);
    cJSON_AddNumberToObject(obj, "last_read", (double)read->last_read);
    cJSON_AddBoolToObject(obj, "muted", read->muted);
    cJSON_AddNumberToObject(obj, "begins", read->begins ? (double)read->begins : 1);
    if (read->retention_days > 0)
        cJSON_AddNumberToObject(obj, "retention_days", read->retention_days);
    hub_free_names(names, count);
    return frame_from_json(obj);
}

/* ---------------------------------------------------------------- replay */

/* One page of a replay, read outside the hub lock. */
struct replay_page {
    struct chat_msg **msgs;
    size_t count;
    bool complete; /* the history had every message of the range */
};

static void page_read(struct hub *hub, const char *room, uint64_t after, uint64_t upto,
                      struct replay_page *page)
{
    memset(page, 0, sizeof(*page));
    uint64_t end = upto - after > HUB_REPLAY_PAGE ? after + HUB_REPLAY_PAGE : upto;
    if (end <= after) {
        page->complete = true;
        return;
    }
    uint64_t t0 = util_mono_ns();
    int rc = broker_replay(hub->broker, room, after, end, HUB_REPLAY_PAGE, &page->msgs,
                           &page->count, &page->complete);
    metrics_observe(&hub->metrics->replay_read_seconds, util_mono_ns() - t0);
    if (rc < 0) {
        page->msgs = NULL;
        page->count = 0;
        page->complete = false;
    }
}

static void page_free(struct replay_page *page)
{
    for (size_t i = 0; i < page->count; i++)
        chat_msg_free(page->msgs[i]);
    free(page->msgs);
}

/* Queue a page read up to upto for m and move its cursor; when the cursor has
 * reached the room's last id the member goes live, else the connection is
 * asked for the next page once its queue drains. A page history could not
 * serve whole would leave a hole the client cannot see (its `joined` said
 * recovered): the connection is closed with 1011 instead, and the client's
 * re-join with since learns whether history can still serve it.
 * hub->lock held. */
static void page_send(struct membership *m, const struct replay_page *page, uint64_t upto)
{
    if (!page->complete) {
        log_msg(LOG_WARN, "replay_incomplete", "room=%s after=%" PRIu64, m->room->name,
                m->replay_after);
        conn_close(m->hc->conn, PROTO_CLOSE_INTERNAL, "history unavailable; join again");
        return;
    }
    for (size_t i = 0; i < page->count; i++) {
        struct loop_frame *f = frame_from_event(page->msgs[i]);
        conn_send_replay(m->hc->conn, f);
        loop_frame_unref(f);
    }
    if (upto > m->replay_after)
        m->replay_after = upto;
    if (m->replay_after >= m->room->last_id) {
        m->state = MEMBER_LIVE;
        m->skip_upto = m->replay_after;
    } else {
        conn_want_drain(m->hc->conn);
    }
}

/* The end of the next page of m, which is REPLAYING. hub->lock held. */
static uint64_t page_end(const struct membership *m)
{
    uint64_t last = m->room->last_id;
    return last - m->replay_after > HUB_REPLAY_PAGE ? m->replay_after + HUB_REPLAY_PAGE : last;
}

/* A membership of hc still replaying, or NULL. hub->lock held. */
static struct membership *replaying_membership(struct hub_conn *hc)
{
    for (size_t i = 0; i < hc->room_count; i++) {
        if (hc->rooms[i]->state == MEMBER_REPLAYING)
            return hc->rooms[i];
    }
    return NULL;
}

void hub_conn_drained(struct hub_conn *hc)
{
    struct hub *hub = hc->hub;
    pthread_mutex_lock(&hub->lock);
    struct membership *m = replaying_membership(hc);
    if (!m || conn_is_closing(hc->conn) || conn_is_backlogged(hc->conn)) {
        if (m && !conn_is_closing(hc->conn))
            conn_want_drain(hc->conn); /* goes on when the queue has room */
        pthread_mutex_unlock(&hub->lock);
        return;
    }
    char *room = xstrdup(m->room->name);
    uint64_t after = m->replay_after, upto = page_end(m);
    pthread_mutex_unlock(&hub->lock);
    /* One page per call: the loop serves its other connections between pages. */
    struct replay_page page;
    page_read(hub, room, after, upto, &page);
    pthread_mutex_lock(&hub->lock);
    m = find_membership(hc, room); /* only this loop thread removes it */
    if (m && m->state == MEMBER_REPLAYING && m->replay_after == after)
        page_send(m, &page, upto);
    if (replaying_membership(hc) && !conn_is_closing(hc->conn))
        conn_want_drain(hc->conn); /* this room's next page, or another room's */
    pthread_mutex_unlock(&hub->lock);
    page_free(&page);
    free(room);
}

/* ---------------------------------------------------------------- join and leave */

/* The highest id history knows for room (0 on error). Outside the hub lock. */
static uint64_t history_last_id(struct hub *hub, const char *room)
{
    uint64_t stored = 0;
    if (broker_last_id(hub->broker, room, &stored) < 0)
        stored = 0;
    return stored;
}

/* Answer a join of a room hc is already in: `joined`, no second replay. */
static void join_again(struct membership *m, const struct hub_read_state *read)
{
    struct loop_frame *joined = joined_frame(m->room, true, read);
    conn_send(m->hc->conn, joined);
    loop_frame_unref(joined);
}

int hub_join(struct hub *hub, struct hub_conn *hc, const char *room_name, const uint64_t *since,
             const struct hub_read_state *read)
{
    pthread_mutex_lock(&hub->lock);
    struct membership *m = find_membership(hc, room_name);
    if (m) {
        join_again(m, read);
        pthread_mutex_unlock(&hub->lock);
        return 0;
    }
    if (hc->room_count >= (size_t)hub->config->max_rooms_per_conn) {
        pthread_mutex_unlock(&hub->lock);
        return -E2BIG;
    }
    m = membership_add(hub, hc, room_get_or_create(hub, room_name));
    uint64_t delivered = m->room->last_id;
    pthread_mutex_unlock(&hub->lock);

    /* Outside the lock: the member gets no frame of the room meanwhile. A
     * since beyond the room's last id (a client of a log since reset) counts
     * as up to date. */
    uint64_t stored = history_last_id(hub, room_name);
    uint64_t upto = stored > delivered ? stored : delivered;
    uint64_t from = since && *since < upto ? *since : upto;
    /* Expired history is not replayed, nor fetched from the replay window:
     * a replay starts where history begins. */
    if (read && read->begins > 1 && from < read->begins - 1 && read->begins - 1 <= upto)
        from = read->begins - 1;
    bool recovered = !since || upto - from <= (uint64_t)hub->config->replay_max;
    struct replay_page page = {NULL, 0, true};
    uint64_t page_upto = from;
    if (since && recovered && from < upto) {
        page_upto = upto - from > HUB_REPLAY_PAGE ? from + HUB_REPLAY_PAGE : upto;
        page_read(hub, room_name, from, page_upto, &page);
        recovered = page.complete;
    }

    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = m->room;
    if (upto > room->last_id)
        room->last_id = upto;
    struct loop_frame *joined = joined_frame(room, recovered, read);
    conn_send(hc->conn, joined);
    loop_frame_unref(joined);
    if (since && recovered) {
        /* Every message after since, also those delivered while the first
         * page was read, comes from history, in pages, then live ones. */
        m->state = MEMBER_REPLAYING;
        m->replay_after = from;
        /* The first page, read for recovered, is queued only while the
         * queue has room: joins in a loop by a client that does not read
         * must not pile up pages. Else the drain reads it again. */
        if (!conn_is_backlogged(hc->conn))
            page_send(m, &page, page_upto);
        else
            conn_want_drain(hc->conn);
    } else {
        /* joined.last_id tells the client that history holds everything up to
         * it: a message committed before the join but delivered after it must
         * not arrive a second time as a live frame. */
        m->state = MEMBER_LIVE;
        m->skip_upto = room->last_id;
    }
    pthread_mutex_unlock(&hub->lock);
    page_free(&page);
    return 0;
}

int hub_leave(struct hub *hub, struct hub_conn *hc, const char *room)
{
    pthread_mutex_lock(&hub->lock);
    struct membership *m = find_membership(hc, room);
    if (m)
        membership_remove(hub, m);
    pthread_mutex_unlock(&hub->lock);
    return m ? 0 : -ENOENT;
}

bool hub_is_member(struct hub *hub, struct hub_conn *hc, const char *room)
{
    pthread_mutex_lock(&hub->lock);
    bool member = find_membership(hc, room) != NULL;
    pthread_mutex_unlock(&hub->lock);
    return member;
}

void hub_conn_closed(struct hub_conn *hc)
{
    struct hub *hub = hc->hub;
    pthread_mutex_lock(&hub->lock);
    while (hc->room_count > 0)
        membership_remove(hub, hc->rooms[hc->room_count - 1]);
    user_forget(hub, hc);
    pthread_mutex_unlock(&hub->lock);
    conn_unref(hc->conn);
    free(hc->rooms);
    free(hc->user);
    free(hc->sid);
    free(hc);
}

/* ---------------------------------------------------------------- fan-out */

/* Give the `mention` frame of msg to every connection of each user it
 * mentions that may read the room, the author's own excepted. hub->lock held. */
static void send_mentions(struct hub *hub, const struct chat_msg *msg)
{
    struct loop_frame *f = NULL;
    for (size_t i = 0; i < msg->mention_count; i++) {
        struct hub_user *u = strmap_get(hub->users, msg->mentions[i]);
        if (!u || strcmp(msg->mentions[i], msg->user) == 0)
            continue;
        if (!f) {
            size_t len;
            char *json = proto_encode_mention(msg, &len);
            f = loop_frame_text(json, len, 0);
            free(json);
        }
        for (size_t j = 0; j < u->count; j++) {
            const struct auth_claims *claims = u->conns[j]->claims;
            if (!claims || auth_room_allowed(claims, msg->room))
                conn_send(u->conns[j]->conn, f);
        }
    }
    if (f)
        loop_frame_unref(f);
}

/* Close, with 1008, the connections of user (any ASCII case) on this node,
 * or with sid only those of that session. hub->lock held. */
static void end_sessions(struct hub *hub, const char *user, const char *sid)
{
    struct hub_user *u = strmap_get(hub->users, user);
    for (size_t i = 0; u && i < u->count; i++) {
        struct hub_conn *hc = u->conns[i];
        if (!sid || (hc->sid && strcmp(hc->sid, sid) == 0))
            conn_close(hc->conn, PROTO_CLOSE_POLICY, "signed out");
    }
}

/* An event of the accounts log: a session that ends closes its connections. */
static void apply_account_event(struct hub *hub, const struct chat_msg *msg)
{
    cJSON *rec = proto_parse_object(msg->text, strlen(msg->text));
    bool bad = false;
    const char *name = rec ? proto_get_string(rec, "name", &bad) : NULL;
    const char *sid = rec ? proto_get_string(rec, "sid", &bad) : NULL;
    bool disabled = rec && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "disabled"));
    pthread_mutex_lock(&hub->lock);
    if (msg->kind == CHAT_SIGNOUT && sid)
        end_sessions(hub, msg->user, sid);
    else if (name && (msg->kind == CHAT_SIGNOUT_ALL || (msg->kind == CHAT_ACCOUNT && disabled)))
        end_sessions(hub, name, NULL);
    pthread_mutex_unlock(&hub->lock);
    cJSON_Delete(rec);
}

/* A read event of an account's read log: `read {room, id}` to every other
 * connection of the account on this node. */
static void send_read(struct hub *hub, const struct chat_msg *msg)
{
    cJSON *rec = proto_parse_object(msg->text, strlen(msg->text));
    bool bad = false;
    const char *room = rec ? proto_get_string(rec, "room", &bad) : NULL;
    const char *origin = rec ? proto_get_string(rec, "origin", &bad) : NULL;
    const cJSON *id = rec ? cJSON_GetObjectItemCaseSensitive(rec, "id") : NULL;
    if (room && cJSON_IsNumber(id)) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "type", "read");
        cJSON_AddStringToObject(obj, "room", room);
        cJSON_AddNumberToObject(obj, "id", id->valuedouble);
        struct loop_frame *f = frame_from_json(obj);
        pthread_mutex_lock(&hub->lock);
        struct hub_user *u = strmap_get(hub->users, msg->user);
        for (size_t i = 0; u && i < u->count; i++) {
            char mine[PROTO_ROOM_MAX * 4];
            hub_conn_origin(u->conns[i], mine, sizeof(mine));
            if (!origin || strcmp(origin, mine) != 0)
                conn_send(u->conns[i]->conn, f); /* not to the one that read */
        }
        pthread_mutex_unlock(&hub->lock);
        loop_frame_unref(f);
    }
    cJSON_Delete(rec);
}

/* Take the connections of user (NULL: everyone) out of room, each told
 * `left` with reason: a member removed or banned (an admin's connections
 * stay: no ban holds them), or the room closed. hub->lock held. */
static void send_away(struct hub *hub, struct hub_room *room, const char *user, const char *reason)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "left");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddStringToObject(obj, "reason", reason);
    struct loop_frame *f = frame_from_json(obj);
    for (size_t i = room->member_count; i-- > 0;) {
        struct membership *m = room->members[i];
        if (user && (!m->hc->user || strcasecmp(m->hc->user, user) != 0))
            continue;
        if (strcmp(reason, "banned") == 0 && m->hc->claims &&
            m->hc->claims->role == AUTH_ROLE_ADMIN)
            continue;
        conn_send(m->hc->conn, f);
        bool last = room->member_count == 1;
        membership_remove(hub, m);
        if (last)
            break; /* the room went with its last member */
    }
    loop_frame_unref(f);
}

/* After a member event, a ban or a closing is delivered: who must leave
 * leaves. */
static void apply_room_change(struct hub *hub, const struct chat_msg *msg)
{
    cJSON *rec = proto_parse_object(msg->text, strlen(msg->text));
    bool bad = false;
    const char *member = rec ? proto_get_string(rec, "member", &bad) : NULL;
    bool removed = msg->kind == CHAT_MEMBER && member &&
                   !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "present"));
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, msg->room);
    if (room && removed)
        send_away(hub, room, member, "removed");
    else if (room && msg->kind == CHAT_BAN && member)
        send_away(hub, room, member, "banned");
    else if (room && msg->kind == CHAT_CLOSED)
        send_away(hub, room, NULL, "closed");
    pthread_mutex_unlock(&hub->lock);
    cJSON_Delete(rec);
}

void hub_deliver(struct hub *hub, const struct chat_msg *msg)
{
    if (strcmp(msg->room, CHAT_ACCOUNTS_LOG) == 0) {
        apply_account_event(hub, msg);
        return;
    }
    if (msg->kind == CHAT_READ) {
        send_read(hub, msg);
        return;
    }
    struct loop_frame *f = frame_from_event(msg);
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, msg->room);
    size_t reached = 0;
    if (room) {
        if (msg->id > room->last_id)
            room->last_id = msg->id;
        reached = room_broadcast(room, f, NULL);
    }
    send_mentions(hub, msg);
    pthread_mutex_unlock(&hub->lock);
    loop_frame_unref(f);
    atomic_fetch_add(&hub->metrics->messages_delivered, reached);
    if (reached > 0)
        metrics_observe_since_ms(&hub->metrics->delivery_seconds, msg->ts);
    if (msg->kind == CHAT_MEMBER || msg->kind == CHAT_CLOSED || msg->kind == CHAT_BAN)
        apply_room_change(hub, msg);
}

/* Tell the members of room but user's own connections that user is typing. hub->lock held. */
static void broadcast_typing(struct hub_room *room, const char *user)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", "typing");
    cJSON_AddStringToObject(obj, "room", room->name);
    cJSON_AddStringToObject(obj, "user", user);
    struct loop_frame *f = frame_from_json(obj);
    room_broadcast(room, f, user);
    loop_frame_unref(f);
}

void hub_typing(struct hub *hub, struct hub_conn *hc, const char *room_name)
{
    pthread_mutex_lock(&hub->lock);
    struct membership *m = find_membership(hc, room_name);
    if (m && hc->user) {
        broadcast_typing(m->room, hc->user);
        if (hub->broker)
            broker_typing(hub->broker, room_name, hc->user);
    }
    pthread_mutex_unlock(&hub->lock);
}

void hub_remote_typing(struct hub *hub, const char *room_name, const char *user)
{
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, room_name);
    if (room)
        broadcast_typing(room, user);
    pthread_mutex_unlock(&hub->lock);
}

int hub_room_members(struct hub *hub, const char *room_name, char ***names, size_t *count)
{
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room = strmap_get(hub->rooms, room_name);
    if (room) {
        *names = room_names(room, count);
    } else {
        *names = xcalloc(1, sizeof(char *));
        *count = 0;
    }
    pthread_mutex_unlock(&hub->lock);
    return 0;
}

struct room_list {
    char **names;
    size_t *online;
    size_t count;
};

static bool collect_room(void *ctx, const char *key, void *value)
{
    struct room_list *list = ctx;
    size_t online;
    char **names = room_names(value, &online);
    hub_free_names(names, online);
    list->names[list->count] = xstrdup(key);
    list->online[list->count] = online;
    list->count++;
    return true;
}

int hub_list_rooms(struct hub *hub, char ***names, size_t **online, size_t *count)
{
    pthread_mutex_lock(&hub->lock);
    size_t n = strmap_count(hub->rooms);
    struct room_list list = {xcalloc(n + 1, sizeof(char *)), xcalloc(n + 1, sizeof(size_t)), 0};
    strmap_each(hub->rooms, collect_room, &list);
    pthread_mutex_unlock(&hub->lock);
    *names = list.names;
    *online = list.online;
    *count = list.count;
    return 0;
}

long hub_room_count(struct hub *hub)
{
    pthread_mutex_lock(&hub->lock);
    long n = (long)strmap_count(hub->rooms);
    pthread_mutex_unlock(&hub->lock);
    return n;
}

/* ---------------------------------------------------------------- cluster presence */

void hub_set_broker(struct hub *hub, struct broker *broker)
{
    pthread_mutex_lock(&hub->lock);
    hub->broker = broker;
    pthread_mutex_unlock(&hub->lock);
}

void hub_remote_presence(struct hub *hub, const char *room_name, const char *user, int delta)
{
    pthread_mutex_lock(&hub->lock);
    struct hub_room *room =
        delta > 0 ? room_get_or_create(hub, room_name) : strmap_get(hub->rooms, room_name);
    if (!room)
        goto out_unlock;
    if (!room->remote)
        room->remote = strmap_create(NULL);
    intptr_t before = (intptr_t)strmap_get(room->remote, user);
    intptr_t after = before + delta;
    if (after < 0)
        after = 0;
    if (after > 0)
        strmap_put(room->remote, user, (void *)after);
    else
        strmap_remove(room->remote, user);
    bool local = room_user_connections(room, user) > 0;
    if (!local && before == 0 && after > 0)
        broadcast_presence(room, user, "join");
    else if (!local && before > 0 && after == 0)
        broadcast_presence(room, user, "leave");
    room_release_if_empty(hub, room);
out_unlock:
    pthread_mutex_unlock(&hub->lock);
}

struct presence_snapshot {
    struct hub_presence *entries;
    size_t count;
    size_t cap;
};

static bool snapshot_room(void *ctx, const char *key, void *value)
{
    struct presence_snapshot *snap = ctx;
    struct hub_room *room = value;
    size_t count;
    char **names = xcalloc(room->member_count + 1, sizeof(char *));
    count = 0;
    for (size_t i = 0; i < room->member_count; i++) {
        const char *u = room->members[i]->hc->user;
        bool seen = false;
        for (size_t j = 0; u && j < count && !seen; j++)
            seen = strcmp(names[j], u) == 0;
        if (u && !seen)
            names[count++] = (char *)u;
    }
    for (size_t i = 0; i < count; i++) {
        UTIL_GROW(snap->entries, snap->count, snap->cap);
        snap->entries[snap->count].room = xstrdup(key);
        snap->entries[snap->count].user = xstrdup(names[i]);
        snap->count++;
    }
    free(names);
    return true;
}

int hub_local_presence(struct hub *hub, struct hub_presence **out, size_t *count)
{
    struct presence_snapshot snap = {NULL, 0, 0};
    pthread_mutex_lock(&hub->lock);
    strmap_each(hub->rooms, snapshot_room, &snap);
    pthread_mutex_unlock(&hub->lock);
    *out = snap.entries;
    *count = snap.count;
    return 0;
}

void hub_free_presence(struct hub_presence *entries, size_t count)
{
    for (size_t i = 0; entries && i < count; i++) {
        free(entries[i].room);
        free(entries[i].user);
    }
    free(entries);
}

/* ---------------------------------------------------------------- the broker's listener */

static void listener_deliver(void *ctx, const struct chat_msg *msg)
{
    hub_deliver(ctx, msg);
}

static void listener_remote_presence(void *ctx, const char *room, const char *user, int delta)
{
    hub_remote_presence(ctx, room, user, delta);
}

/* Visits outside the hub lock: the broker's visitor takes its own locks. */
static void listener_local_presence(void *ctx, broker_presence_visit_fn visit, void *visit_ctx)
{
    struct hub_presence *entries = NULL;
    size_t count = 0;
    hub_local_presence(ctx, &entries, &count);
    for (size_t i = 0; i < count; i++)
        visit(visit_ctx, entries[i].room, entries[i].user);
    hub_free_presence(entries, count);
}

static void listener_remote_typing(void *ctx, const char *room, const char *user)
{
    hub_remote_typing(ctx, room, user);
}

const struct broker_listener hub_broker_listener = {
    .deliver = listener_deliver,
    .remote_presence = listener_remote_presence,
    .local_presence = listener_local_presence,
    .remote_typing = listener_remote_typing,
};
