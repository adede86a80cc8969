/* accounts: the people of auth = accounts: passwords (Argon2id), sessions
 * (a cookie and a token per session, stored as SHA-256 hashes), the rules of
 * signing up and in, the sign-in limits, and the events of the accounts log
 * (CHAT_ACCOUNTS_LOG) that make, change and end accounts and sessions on
 * every node. Every call may block (hashing, publishing): CivetWeb workers
 * and the command line only, never a loop or broker thread. */
#ifndef TURBOCHAT_ACCOUNTS_H
#define TURBOCHAT_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"

struct accounts;
struct broker;
struct config;
struct store;
struct store_account;

#define ACCOUNTS_PASSWORD_MIN 8   /* characters */
#define ACCOUNTS_PASSWORD_MAX 256 /* characters */

/* A session just begun: what the client is given, once. */
struct accounts_grant {
    char *user;   /* the account's name */
    char *cookie; /* the tc_session cookie's value */
    char *token;  /* the token for hello and Bearer */
    int64_t expires_ms;
};
void accounts_grant_dispose(struct accounts_grant *grant);

/* Who a request or a WebSocket is: a session of an account. */
struct accounts_caller {
    char *user;
    char *sid; /* the session's id */
    bool admin;
    int64_t expires_ms; /* when the session ends, ms since the epoch */
};
void accounts_caller_dispose(struct accounts_caller *caller);

struct accounts *accounts_create(const struct config *config, struct store *store,
                                 struct broker *broker);
void accounts_free(struct accounts *accounts);

/* Make an account and sign it in. Refusals: bad_request (name, password),
 * signup_closed, invite_invalid, name_taken, unavailable. */
int accounts_signup(struct accounts *a, const char *name, const char *password, const char *invite,
                    struct accounts_grant *grant, struct chat_refusal *refusal);

/* Check name and password; on success begin a session. Refusals:
 * unauthorized (the same for every wrong input), rate_limited (*retry_s set),
 * unavailable. */
int accounts_signin(struct accounts *a, const char *name, const char *password, const char *address,
                    struct accounts_grant *grant, struct chat_refusal *refusal, int *retry_s);

/* The caller of a cookie (by_token false) or token; false when it is no
 * active session. */
bool accounts_authenticate(struct accounts *a, const char *secret, bool by_token,
                           struct accounts_caller *caller);

/* End the caller's session, or with everywhere every session of its account. */
int accounts_signout(struct accounts *a, const struct accounts_caller *caller, bool everywhere);

/* Change the caller's profile (display, color: NULL keeps them) and, with
 * password, the password: old_password must match; every other session of
 * the account ends. */
int accounts_update(struct accounts *a, const struct accounts_caller *caller, const char *display,
                    const char *color, const char *password, const char *old_password,
                    struct chat_refusal *refusal);

/* Admin: disable or enable name (a disabled account's sessions end), set its
 * password (its sessions end), make an invite code (*code for the client). */
int accounts_set_disabled(struct accounts *a, const char *name, bool disabled,
                          struct chat_refusal *refusal);
int accounts_set_password(struct accounts *a, const char *name, const char *password,
                          struct chat_refusal *refusal);
int accounts_make_invite(struct accounts *a, char **code, int64_t *expires_ms);

/* Command line: make an account (role "admin" or NULL) without a session. */
int accounts_add(struct accounts *a, const char *name, const char *password, const char *role,
                 struct chat_refusal *refusal);

/* The account named name (any ASCII case), or every account by name: as
 * store_get_account and store_list_accounts. */
int accounts_get(struct accounts *a, const char *name, struct store_account *out);
int accounts_list(struct accounts *a, struct store_account **out, size_t *count);

/* The user object of PROTOCOL.md ({name, display, color, role, disabled,
 * created}) as a cJSON object. */
struct cJSON *accounts_user_object(const struct store_account *account);

#endif
