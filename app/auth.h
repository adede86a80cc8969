/* auth: HS256 JSON Web Tokens: verification (OpenSSL HMAC, constant-time
 * signature comparison) of the claims sub, exp and rooms, and minting. */
#ifndef TURBOCHAT_AUTH_H
#define TURBOCHAT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The claims of an accepted token. */
struct auth_claims {
    char *sub;    /* the user name */
    int64_t exp;  /* expiry, seconds since the epoch */
    char **rooms; /* room names, or prefixes ending in '*' */
    size_t room_count;
    bool all_rooms; /* no rooms claim: every room */
};

/* Verify token against secret at now_s. 0 and *claims filled (dispose with
 * auth_claims_dispose), or -EACCES with *why naming the problem (a static
 * string, safe to show the client: never the secret). Any thread. */
int auth_verify(const char *secret, const char *token, int64_t now_s, struct auth_claims *claims,
                const char **why);

/* True when the claims allow room. */
bool auth_room_allowed(const struct auth_claims *claims, const char *room);

/* Free what claims owns; accepts a zeroed struct. */
void auth_claims_dispose(struct auth_claims *claims);

/* A signed token for user with the comma-separated rooms (NULL: all rooms)
 * expiring at exp. The caller frees the result. */
char *auth_mint(const char *secret, const char *user, const char *rooms_csv, int64_t exp);

#endif
