/* http_accounts: the REST endpoints of accounts (docs/PROTOCOL.md,
 * "Accounts"): which sign-in a page offers, sign-up, sign-in and sign-out
 * with the session cookie, the caller's profile, invite codes, and the
 * admin's list and actions on accounts. The rules are accounts'. */
#ifndef TURBOCHAT_HTTP_ACCOUNTS_H
#define TURBOCHAT_HTTP_ACCOUNTS_H

#include <stdbool.h>

struct accounts;
struct accounts_caller;
struct config;
struct mg_connection;

#define HTTP_ACCOUNTS_COOKIE "tc_session"

/* The paths anyone may call: GET /api/auth/mode in every auth mode, and
 * sign-up and sign-in with auth = accounts. True when uri was one of them
 * and has been answered. Worker thread. */
bool http_accounts_public(struct accounts *accounts, const struct config *config,
                          struct mg_connection *mc, const char *uri);

/* The paths of a signed-in caller: /api/me, /api/auth/signout,
 * /api/auth/invites, /api/admin/users*; true when uri was one of them and
 * has been answered. Worker thread. */
bool http_accounts_route(struct accounts *accounts, const struct config *config,
                         struct mg_connection *mc, const char *uri,
                         const struct accounts_caller *caller);

#endif
