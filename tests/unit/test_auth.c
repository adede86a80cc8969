/* Unit tests for auth: HS256 tokens minted and verified, and every way a
 * token is refused (signature, algorithm, expiry, claims, shape). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
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

/* A token whose payload is the JSON text claims, signed with SECRET. */
static char *sign(const char *claims)
{
    static const char head[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *h = auth_b64url_encode((const unsigned char *)head, strlen(head));
    char *p = auth_b64url_encode((const unsigned char *)claims, strlen(claims));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    unsigned char mac[32];
    unsigned int mac_len = sizeof(mac);
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)signing, strlen(signing),
         mac, &mac_len);
    char *sig = auth_b64url_encode(mac, sizeof(mac));
    size_t m = n + strlen(sig) + 1;
    char *token = malloc(m);
    snprintf(token, m, "%s.%s", signing, sig);
    free(h);
    free(p);
    free(signing);
    free(sig);
    return token;
}

static int b64url_index(char c)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = strchr(chars, c);
    return p ? (int)(p - chars) : -1;
}

/* A signature has one spelling: the unused low bits of its last character
 * must be zero, and padding, '+' and '/' are refused. */
static int test_canonical_base64url(void)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *token = auth_mint(SECRET, "alice", NULL, 0, NULL, NOW + 60);
    size_t len = strlen(token);
    struct auth_claims claims;
    const char *why = NULL;
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    auth_claims_dispose(&claims);

    /* 32 bytes are 43 characters: the last one carries 2 unused bits */
    int v = b64url_index(token[len - 1]);
    TEST_ASSERT(v >= 0 && (v & 3) == 0);
    for (int extra = 1; extra < 4; extra++) {
        char *other = strdup(token);
        other[len - 1] = chars[v | extra];
        TEST_ASSERT(!expect_refused(SECRET, other, "the token's signature is not valid"));
        free(other);
    }

    char *padded = malloc(len + 2);
    snprintf(padded, len + 2, "%s=", token);
    TEST_ASSERT(!expect_refused(SECRET, padded, "the token's signature is not valid"));
    free(padded);

    /* the standard alphabet's spelling of a '-' or '_' in the signature */
    char *std = strdup(token);
    char *sig = strrchr(std, '.') + 1;
    bool changed = false;
    for (char *c = sig; *c; c++) {
        if (*c == '-' || *c == '_') {
            *c = *c == '-' ? '+' : '/';
            changed = true;
        }
    }
    if (changed)
        TEST_ASSERT(!expect_refused(SECRET, std, "the token's signature is not valid"));
    free(std);
    free(token);
    return 0;
}

/* nbf: refused while more than 30 s ahead (clock skew), accepted after. */
static int test_not_before(void)
{
    char json[128];
    snprintf(json, sizeof(json), "{\"sub\":\"alice\",\"exp\":%d,\"nbf\":%d}", NOW + 600, NOW + 60);
    char *token = sign(json);
    TEST_ASSERT(!expect_refused(SECRET, token, "the token is not valid yet (nbf)"));
    struct auth_claims claims;
    const char *why = NULL;
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW + 30, &claims, &why), 0); /* skew */
    auth_claims_dispose(&claims);
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW + 60, &claims, &why), 0);
    auth_claims_dispose(&claims);
    free(token);

    snprintf(json, sizeof(json), "{\"sub\":\"alice\",\"exp\":%d,\"nbf\":%d}", NOW + 600, NOW - 5);
    token = sign(json);
    TEST_ASSERT_INT(auth_verify(SECRET, token, NOW, &claims, &why), 0);
    auth_claims_dispose(&claims);
    free(token);

    snprintf(json, sizeof(json), "{\"sub\":\"alice\",\"exp\":%d,\"nbf\":\"soon\"}", NOW + 600);
    token = sign(json);
    TEST_ASSERT(!expect_refused(SECRET, token, "the token's nbf claim must be a number"));
    free(token);
    return 0;
}

/* Found by tests/fuzz/fuzz_auth.c: an exp of 1e999 (infinity to cJSON) or
 * 1e300 was converted to int64_t, which is undefined (UBSan aborted). */
static int test_exp_out_of_range(void)
{
    static const char *claims[] = {
        "{\"sub\":\"bob\",\"exp\":1e999}",
        "{\"sub\":\"bob\",\"exp\":-1e999}",
        "{\"sub\":\"bob\",\"exp\":1e300}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        char *token = sign(claims[i]);
        TEST_ASSERT(!expect_refused(SECRET, token, "the token's exp claim is out of range"));
        free(token);
    }
    char *token = sign("{\"sub\":\"bob\",\"exp\":9007199254740991}");
    struct auth_claims ok;
    const char *why = NULL;
    TEST_ASSERT(auth_verify(SECRET, token, NOW, &ok, &why) == 0);
    TEST_ASSERT(ok.exp == 9007199254740991LL);
    auth_claims_dispose(&ok);
    free(token);
    return 0;
}

TEST_MAIN(TEST_CASE(test_round_trip), TEST_CASE(test_refusals), TEST_CASE(test_canonical_base64url),
          TEST_CASE(test_not_before), TEST_CASE(test_exp_out_of_range))
