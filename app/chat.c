/* chat: the rules of what a user may do to a room's log. Every check reads
 * this node's log, which holds every event the user can have seen: an event
 * reaches a client only after this node stored it. Two nodes may accept
 * changes of one message at once; the log resolves them the same way on every
 * node (store), so these checks only keep out what is wrong on its face. */
#define _GNU_SOURCE
#include "chat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "store.h"
#include "util.h"

#define MENTION_SCAN_MAX 50 /* '@' signs looked at per message */

/* The message id of room as it is now, for a change or a reply; false with
 * not_found when there is no such message (or only a change), or it is
 * deleted. *out is the caller's. */
static bool load_target(struct store *store, const char *room, uint64_t id, struct chat_msg **out,
                        struct chat_refusal *refusal)
{
    int rc = store_get_event(store, room, id, out);
    if (rc == -ENOENT || (rc == 0 && (*out)->kind != CHAT_MESSAGE)) {
        chat_msg_free(*out);
        *out = NULL;
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no message with this id in the room",
                            false);
    }
    if (rc < 0)
        return chat_refused(refusal, PROTO_ERR_INTERNAL, "the log could not be read", false);
    if ((*out)->deleted_by) {
        chat_msg_free(*out);
        *out = NULL;
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "the message was deleted", false);
    }
    return true;
}

/* ---------------------------------------------------------------- mentions */

static bool is_ascii_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A byte that may end a mentioned name: the end, white space or ASCII
 * punctuation. */
static bool ends_name(unsigned char c)
{
    return c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           (c < 0x80 && c > 0x20 && !is_ascii_alnum(c));
}

static bool has_mention(const struct chat_msg *msg, const char *name)
{
    for (size_t i = 0; i < msg->mention_count; i++) {
        if (strcmp(msg->mentions[i], name) == 0)
            return true;
    }
    return false;
}

/* The longest name of the room's authors that text (just after an '@')
 * starts with, up to a name end; NULL when none. The caller frees it. */
static char *mentioned_name(struct store *store, const char *room, const char *text)
{
    size_t ends[PROTO_USER_MAX];
    size_t n = 0, chars = 0;
    for (size_t i = 0; text[i] && chars < PROTO_USER_MAX && i < PROTO_USER_MAX_BYTES; chars++) {
        i++;
        while ((text[i] & 0xC0) == 0x80)
            i++; /* the rest of this code point */
        if (ends_name((unsigned char)text[i]))
            ends[n++] = i;
    }
    while (n-- > 0) {
        char *candidate = xstrndup(text, ends[n]);
        char *name = NULL;
        int rc = store_find_room_user(store, room, candidate, &name);
        free(candidate);
        if (rc == 0)
            return name;
    }
    return NULL;
}

/* Record on msg the users its text mentions (PROTOCOL.md, mentions). */
static void find_mentions(struct store *store, struct chat_msg *msg)
{
    int scanned = 0;
    for (const char *at = strchr(msg->text, '@'); at && scanned < MENTION_SCAN_MAX;
         at = strchr(at + 1, '@'), scanned++) {
        if (at > msg->text && ((unsigned char)at[-1] >= 0x80 || is_ascii_alnum(at[-1])))
            continue; /* inside a word, like an e-mail address */
        char *name = mentioned_name(store, msg->room, at + 1);
        if (name && !has_mention(msg, name) && msg->mention_count < PROTO_MENTIONS_MAX)
            chat_msg_add_mention(msg, name);
        free(name);
    }
}

/* ---------------------------------------------------------------- retries */

/* True when ev's ref already produced an event within the idempotency window:
 * a retry is answered with it, whatever the log's state now (the message it
 * deleted is gone, the reaction it removed is absent). */
static bool find_retry(struct store *store, const struct config *config, const struct chat_msg *ev,
                       struct chat_msg **existing)
{
    int64_t since_ms = util_now_ms() - (int64_t)config->ref_ttl_s * 1000;
    return ev->ref && store_find_ref(store, ev->room, ev->user, ev->ref, since_ms, existing) == 0;
}

/* ---------------------------------------------------------------- sends */

enum chat_verdict chat_prepare_send(struct store *store, const struct config *config,
                                    struct chat_msg *msg, struct chat_msg **existing,
                                    struct chat_refusal *refusal)
{
    const char *why;
    *existing = NULL;
    if (!proto_text_normalize(msg->text, config->max_text_chars, &why))
        return chat_refused(refusal, PROTO_ERR_TEXT_INVALID, why, CHAT_REFUSED);
    if (msg->reply_to) {
        /* The broker answers a retried send with its original; only a
         * reply, whose original may be deleted since, is looked up first. */
        if (find_retry(store, config, msg, existing))
            return CHAT_ALREADY;
        struct chat_msg *original;
        if (!load_target(store, msg->room, msg->reply_to, &original, refusal))
            return CHAT_REFUSED;
        msg->reply_user = xstrdup(original->user);
        msg->reply_text = proto_quote(original->text);
        chat_msg_free(original);
    }
    find_mentions(store, msg);
    return CHAT_PUBLISH;
}

/* ---------------------------------------------------------------- changes */

static bool check_edit(const struct config *config, struct chat_msg *ev,
                       const struct chat_msg *target, struct chat_refusal *refusal)
{
    const char *why;
    if (strcmp(target->user, ev->user) != 0)
        return chat_refused(refusal, PROTO_ERR_FORBIDDEN, "only the author may edit a message",
                            false);
    if (config->edit_window_s > 0 &&
        util_now_ms() - target->ts > (int64_t)config->edit_window_s * 1000)
        return chat_refused(refusal, PROTO_ERR_EDIT_WINDOW,
                            "the time to edit this message has passed", false);
    if (!proto_text_normalize(ev->text, config->max_text_chars, &why))
        return chat_refused(refusal, PROTO_ERR_TEXT_INVALID, why, false);
    return true;
}

/* The reaction (emoji, user) target has, or NULL. */
static const struct chat_reaction *find_reaction(const struct chat_msg *target, const char *emoji,
                                                 const char *user)
{
    for (size_t i = 0; i < target->reaction_count; i++) {
        const struct chat_reaction *r = &target->reactions[i];
        if (strcmp(r->emoji, emoji) == 0 && strcmp(r->user, user) == 0)
            return r;
    }
    return NULL;
}

static bool has_emoji(const struct chat_msg *target, const char *emoji)
{
    for (size_t i = 0; i < target->reaction_count; i++) {
        if (strcmp(target->reactions[i].emoji, emoji) == 0)
            return true;
    }
    return false;
}

/* Distinct emoji of target's reactions. */
static int count_emoji(const struct chat_msg *target)
{
    int n = 0;
    for (size_t i = 0; i < target->reaction_count; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(target->reactions[j].emoji, target->reactions[i].emoji) == 0;
        n += !seen;
    }
    return n;
}

static enum chat_verdict check_reaction(struct store *store, const struct config *config,
                                        const struct chat_msg *ev, const struct chat_msg *target,
                                        struct chat_msg **existing, struct chat_refusal *refusal)
{
    const char *why;
    if (!proto_emoji_is_valid(ev->emoji, &why)) {
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST, why, CHAT_REFUSED);
    }
    const struct chat_reaction *mine = find_reaction(target, ev->emoji, ev->user);
    if (ev->kind == CHAT_UNREACT) {
        if (mine)
            return CHAT_PUBLISH;
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "you have not reacted with this emoji",
                            CHAT_REFUSED);
    }
    if (mine) {
        int rc = store_get_event(store, ev->room, mine->event_id, existing);
        if (rc == 0)
            return CHAT_ALREADY;
        return chat_refused(refusal, PROTO_ERR_INTERNAL, "the log could not be read", CHAT_REFUSED);
    }
    if (!has_emoji(target, ev->emoji) && count_emoji(target) >= config->max_reactions) {
        return chat_refused(refusal, PROTO_ERR_TOO_MANY_REACTIONS,
                            "the message has its maximum of emoji", CHAT_REFUSED);
    }
    return CHAT_PUBLISH;
}

enum chat_verdict chat_prepare_change(struct store *store, const struct config *config,
                                      struct chat_msg *ev, bool moderator,
                                      struct chat_msg **existing, struct chat_refusal *refusal)
{
    *existing = NULL;
    if (find_retry(store, config, ev, existing))
        return CHAT_ALREADY;
    struct chat_msg *target;
    if (!load_target(store, ev->room, ev->target, &target, refusal))
        return CHAT_REFUSED;
    enum chat_verdict verdict = CHAT_PUBLISH;
    switch (ev->kind) {
    case CHAT_EDIT:
        verdict = check_edit(config, ev, target, refusal) ? CHAT_PUBLISH : CHAT_REFUSED;
        break;
    case CHAT_DELETE:
        if (!moderator && strcmp(target->user, ev->user) != 0)
            verdict =
                chat_refused(refusal, PROTO_ERR_FORBIDDEN,
                             "only the author or a moderator may delete a message", CHAT_REFUSED);
        break;
    case CHAT_REACT:
    case CHAT_UNREACT:
        verdict = check_reaction(store, config, ev, target, existing, refusal);
        break;
    default:
        verdict = chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "not a change", CHAT_REFUSED);
        break;
    }
    chat_msg_free(target);
    return verdict;
}
