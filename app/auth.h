/* auth: HS256 JSON Web Tokens: verification (OpenSSL HMAC, constant-time
 * signature comparison, canonical base64url only) of the claims sub, exp,
 * nbf, rooms and role, and minting. */
#ifndef TURBOCHAT_AUTH_H
#define TURBOCHAT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a token's role claim makes its user. */
enum auth_role {
    AUTH_ROLE_USER = 0, /* no role claim */
    AUTH_ROLE_MOD,      /* "mod": a moderator of the rooms the token allows */
    AUTH_ROLE_ADMIN,    /* "admin": a moderator of every room */
};

/* The claims of an accepted token. */
struct auth_claims {
    char *sub;    /* the user name */
    int64_t exp;  /* expiry, seconds since the epoch */
    char **rooms; /* room names, or prefixes ending in '*' */
    size_t room_count;
    bool all_rooms; /* no rooms claim: every room */
    enum auth_role role;
};

/* Verify token against secret at now_s: refused when exp <= now_s or nbf is
 * more than 30 s after now_s (clock skew). 0 and *claims filled (dispose with
 * auth_claims_dispose), or -EACCES with *why naming the problem (a static
 * string, safe to show the client: never the secret). Any thread. */
int auth_verify(const char *secret, const char *token, int64_t now_s, struct auth_claims *claims,
                const char **why);

/* True when the claims allow room. */
bool auth_room_allowed(const struct auth_claims *claims, const char *room);
/* True when the claims make their user a moderator of room. */
bool auth_is_moderator(const struct auth_claims *claims, const char *room);

/* The role named by a role claim ("mod", "admin"); false when unknown. */
bool auth_role_parse(const char *name, enum auth_role *role);

/* data as unpadded base64url; the caller frees it. */
char *auth_b64url_encode(const unsigned char *data, size_t len);

/* Free what claims owns; accepts a zeroed struct. */
void auth_claims_dispose(struct auth_claims *claims);

/* A signed token for user with the rooms claim of room_count names or
 * prefixes (rooms NULL: no claim, all rooms) and the role claim (NULL: none),
 * expiring at exp. The caller frees the result. */
char *auth_mint(const char *secret, const char *user, char *const *rooms, size_t room_count,
                const char *role, int64_t exp);

#endif
