/* Unit tests for auth: HS256 tokens minted and verified, and every way a
 * token is refused (signature, algorithm, expiry, claims, shape). */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "test_help.h"

#define SECRET "unit-test-secret"
#define NOW 1800000000

static int test_round_trip(void)
{
    char *token = auth_mint(SECRET, "alice", (char *[]){"lobby", "team-*"}, 2, NULL, NOW + 60);
    struct auth_claims claims;
    const char *why = NULL;
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    TEST_ASSERT_STR(claims.sub, "alice");
    TEST_ASSERT_INT(claims.exp, NOW + 60);
    TEST_ASSERT(!claims.all_rooms);
    TEST_ASSERT(auth_room_allowed(&claims, "lobby"));
    TEST_ASSERT(auth_room_allowed(&claims, "team-red"));
    TEST_ASSERT(!auth_room_allowed(&claims, "lobby2"));
    TEST_ASSERT(!auth_room_allowed(&claims, "secret"));
    auth_claims_dispose(&claims);
    free(token);

    token = auth_mint(SECRET, "bob", NULL, 0, "mod", NOW + 60);
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    TEST_ASSERT(claims.all_rooms);
    TEST_ASSERT(auth_room_allowed(&claims, "anything"));
    TEST_ASSERT(auth_is_moderator(&claims, "anything"));
    auth_claims_dispose(&claims);
    free(token);

    /* A mod moderates only the rooms its token allows; an admin every room. */
    token = auth_mint(SECRET, "carol", (char *[]){"lobby"}, 1, "mod", NOW + 60);
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    TEST_ASSERT(auth_is_moderator(&claims, "lobby"));
    TEST_ASSERT(!auth_is_moderator(&claims, "other"));
    auth_claims_dispose(&claims);
    free(token);
    token = auth_mint(SECRET, "dave", (char *[]){"lobby"}, 1, "admin", NOW + 60);
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    TEST_ASSERT(auth_is_moderator(&claims, "other"));
    auth_claims_dispose(&claims);
    free(token);
    token = auth_mint(SECRET, "erin", NULL, 0, NULL, NOW + 60);
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    TEST_ASSERT(!auth_is_moderator(&claims, "lobby"));
    auth_claims_dispose(&claims);
    free(token);
    return 0;
}

static int expect_refused(const char *secret, const char *token, const char *expected_why)
{
    struct auth_claims claims;
    const char *why = NULL;
    TEST_ASSERT(auth_verify(secret, token, NOW, &claims, &why) < 0);
    TEST_ASSERT_STR(why, expected_why);
    TEST_ASSERT(claims.sub == NULL && claims.rooms == NULL);
    return 0;
}

static int test_refusals(void)
{
    char *token = auth_mint(SECRET, "alice", NULL, 0, NULL, NOW + 60);
    TEST_ASSERT(!expect_refused("other-secret", token, "the token's signature is not valid"));
    char *tampered = strdup(token);
    tampered[strlen(tampered) - 2] ^= 1;
    TEST_ASSERT(!expect_refused(SECRET, tampered, "the token's signature is not valid"));
    free(tampered);
    free(token);

    token = auth_mint(SECRET, "alice", NULL, 0, NULL, NOW - 1);
    TEST_ASSERT(!expect_refused(SECRET, token, "the token has expired"));
    free(token);

    token = auth_mint(SECRET, "frank", NULL, 0, "owner", NOW + 60);
    TEST_ASSERT(
        !expect_refused(SECRET, token, "the token's role claim must be \"mod\" or \"admin\""));
    free(token);

    /* {"alg":"none","typ":"JWT"}.{"sub":"x","exp":9999999999}. */
    TEST_ASSERT(!expect_refused(SECRET,
                                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                                "eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.",
                                "the token must be signed with HS256"));
    TEST_ASSERT(!expect_refused(SECRET, "not-a-token", "the token is not a JWT"));
    TEST_ASSERT(!expect_refused(SECRET, "a.b.c.d", "the token is not a JWT"));
    TEST_ASSERT(!expect_refused(SECRET, "!!!.b.c", "the token must be signed with HS256"));
    return 0;
}

TEST_MAIN(TEST_CASE(test_round_trip), TEST_CASE(test_refusals))
