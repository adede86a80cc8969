/* libFuzzer target for auth_verify with a fixed secret. The first input byte
 * picks how the rest becomes a token: as it is (the parser of the three
 * segments and of the header), or as the claims (and, when the rest holds a
 * '\n', the header before it) of a token signed with the secret, so that the
 * claims parser behind the signature check is reached. An accepted token's
 * claims must be what the verifier promises. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "proto.h"
#include "util.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define SECRET "fuzz-secret-0123456789"
#define NOW_S 1700000000

static char *signed_token(const char *header, size_t hlen, const char *claims, size_t clen)
{
    char *h = auth_b64url_encode((const unsigned char *)header, hlen);
    char *c = auth_b64url_encode((const unsigned char *)claims, clen);
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "%s.%s", h, c);
    unsigned char mac[32];
    unsigned int mac_len = sizeof(mac);
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)buf.data, buf.len, mac,
         &mac_len);
    char *s = auth_b64url_encode(mac, mac_len);
    util_buf_appendf(&buf, ".%s", s);
    free(h);
    free(c);
    free(s);
    return util_buf_take(&buf, NULL);
}

static void check_claims(const struct auth_claims *claims)
{
    CHECK(claims->sub != NULL);
    char *name = xstrdup(claims->sub);
    CHECK(proto_user_normalize(name, NULL) && strcmp(name, claims->sub) == 0);
    free(name);
    CHECK(claims->exp > NOW_S);
    CHECK(claims->all_rooms ? claims->room_count == 0 : claims->rooms != NULL);
    for (size_t i = 0; i < claims->room_count; i++)
        CHECK(claims->rooms[i] != NULL);
    CHECK(claims->role == AUTH_ROLE_USER || claims->role == AUTH_ROLE_MOD ||
          claims->role == AUTH_ROLE_ADMIN);
    static const char *rooms[] = {"general", "a", "room-1", ""};
    for (size_t i = 0; i < sizeof(rooms) / sizeof(rooms[0]); i++) {
        bool allowed = auth_room_allowed(claims, rooms[i]);
        CHECK(!claims->all_rooms || allowed);
        if (auth_is_moderator(claims, rooms[i]))
            CHECK(claims->role != AUTH_ROLE_USER);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] & 1;
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    char *token;
    if (mode == 0) {
        token = xstrndup(rest, len); /* up to the first NUL, as a C string arrives */
    } else {
        const char *nl = memchr(rest, '\n', len);
        const char *header = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
        if (nl)
            token = signed_token(rest, (size_t)(nl - rest), nl + 1, len - (size_t)(nl + 1 - rest));
        else
            token = signed_token(header, strlen(header), rest, len);
    }
    struct auth_claims claims;
    const char *why = NULL;
    int rc = auth_verify(SECRET, token, NOW_S, &claims, &why);
    if (rc == 0) {
        check_claims(&claims);
    } else {
        CHECK(rc == -EACCES);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(claims.sub == NULL && claims.rooms == NULL); /* disposed */
    }
    auth_claims_dispose(&claims);
    free(token);
    return 0;
}
