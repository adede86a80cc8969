/* auth: JWT with HS256 only. The header must say alg HS256 (alg none and every
 * other algorithm are refused), the signature is compared in constant time,
 * sub must be a valid user name, exp in the future and nbf, when present, not
 * more than AUTH_NBF_SKEW_S ahead. Segments must be canonical base64url, so
 * that a token has exactly one spelling. */
#include "auth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"

#define AUTH_TOKEN_MAX 8192
#define AUTH_ROOMS_MAX 256
#define AUTH_NBF_SKEW_S 30 /* an issuer's clock may run this far ahead of ours */

/* ---------------------------------------------------------------- base64url */

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *auth_b64url_encode(const unsigned char *data, size_t len)
{
    char *out = xmalloc(len * 4 / 3 + 4);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = b64url_chars[(v >> 18) & 63];
        out[o++] = b64url_chars[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64url_chars[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64url_chars[v & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_value(char c)
{
    const char *p = c ? strchr(b64url_chars, c) : NULL;
    return p ? (int)(p - b64url_chars) : -1;
}

/* Decode len characters of unpadded base64url; NULL when malformed or not
 * canonical: no padding, no '+' or '/', and the bits of the last character
 * that encode no byte must be zero (else one value has several spellings). */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *out_len)
{
    if (len % 4 == 1)
        return NULL;
    unsigned char *out = xmalloc(len * 3 / 4 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* ---------------------------------------------------------------- verify */

static void hs256(const char *secret, const char *data, size_t len, unsigned char mac[32])
{
    unsigned int mac_len = 32;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, len, mac,
         &mac_len);
}

/* Decode one base64url JSON object segment; NULL when malformed. */
static cJSON *decode_segment(const char *seg, size_t len)
{
    size_t n;
    unsigned char *json = b64url_decode(seg, len, &n);
    if (!json)
        return NULL;
    cJSON *obj = util_utf8_is_valid((char *)json, n) ? proto_parse_object((char *)json, n) : NULL;
    free(json);
    return obj;
}

static bool signature_matches(const char *secret, const char *token, size_t signed_len,
                              const char *sig, size_t sig_len)
{
    unsigned char expected[32];
    hs256(secret, token, signed_len, expected);
    size_t n = 0;
    unsigned char *given = b64url_decode(sig, sig_len, &n);
    if (!given)
        return false;
    bool ok = util_secret_equals((char *)given, n, (char *)expected, sizeof(expected));
    free(given);
    return ok;
}

static bool header_is_hs256(const char *seg, size_t len)
{
    cJSON *header = decode_segment(seg, len);
    bool bad = false;
    const char *alg = header ? proto_get_string(header, "alg", &bad) : NULL;
    bool ok = alg && strcmp(alg, "HS256") == 0;
    cJSON_Delete(header);
    return ok;
}

/* Read the rooms claim; false when it is present but malformed. */
static bool read_rooms(const cJSON *payload, struct auth_claims *claims)
{
    const cJSON *rooms = cJSON_GetObjectItemCaseSensitive(payload, "rooms");
    if (!rooms || cJSON_IsNull(rooms)) {
        claims->all_rooms = true;
        return true;
    }
    int n = cJSON_IsArray(rooms) ? cJSON_GetArraySize(rooms) : -1;
    if (n < 0 || n > AUTH_ROOMS_MAX)
        return false;
    claims->rooms = xcalloc((size_t)n + 1, sizeof(char *));
    const cJSON *item;
    cJSON_ArrayForEach(item, rooms)
    {
        if (!cJSON_IsString(item))
            return false;
        claims->rooms[claims->room_count++] = xstrdup(item->valuestring);
    }
    return true;
}

static int read_claims(const cJSON *payload, int64_t now_s, struct auth_claims *claims,
                       const char **why)
{
    bool bad = false;
    const char *sub = proto_get_string(payload, "sub", &bad);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(payload, "exp");
    if (!sub || !cJSON_IsNumber(exp)) {
        *why = "the token needs sub and exp claims";
        return -EACCES;
    }
    claims->sub = xstrdup(sub);
    if (!proto_user_normalize(claims->sub, NULL)) {
        *why = "the token's sub is not a valid user name";
        return -EACCES;
    }
    /* JSON numbers reach 1e308 and cJSON reads 1e999 as infinity: converting
     * those to int64_t is undefined, so exp must first fit a JSON integer. */
    if (!(fabs(exp->valuedouble) <= PROTO_ID_MAX)) {
        *why = "the token's exp claim is out of range";
        return -EACCES;
    }
    claims->exp = (int64_t)exp->valuedouble;
    if (claims->exp <= now_s) {
        *why = "the token has expired";
        return -EACCES;
    }
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(payload, "nbf");
    if (nbf && !cJSON_IsNumber(nbf)) {
        *why = "the token's nbf claim must be a number";
        return -EACCES;
    }
    if (nbf && nbf->valuedouble > (double)(now_s + AUTH_NBF_SKEW_S)) {
        *why = "the token is not valid yet (nbf)";
        return -EACCES;
    }
    if (!read_rooms(payload, claims)) {
        *why = "the token's rooms claim must be an array of strings";
        return -EACCES;
    }
    const char *role = proto_get_string(payload, "role", &bad);
    if (bad || (role && !auth_role_parse(role, &claims->role))) {
        *why = "the token's role claim must be \"mod\" or \"admin\"";
        return -EACCES;
    }
    return 0;
}

int auth_verify(const char *secret, const char *token, int64_t now_s, struct auth_claims *claims,
                const char **why)
{
    memset(claims, 0, sizeof(*claims));
    size_t len = strlen(token);
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (len > AUTH_TOKEN_MAX || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        *why = "the token is not a JWT";
        return -EACCES;
    }
    if (!header_is_hs256(token, (size_t)(dot1 - token))) {
        *why = "the token must be signed with HS256";
        return -EACCES;
    }
    if (!signature_matches(secret, token, (size_t)(dot2 - token), dot2 + 1,
                           len - (size_t)(dot2 + 1 - token))) {
        *why = "the token's signature is not valid";
        return -EACCES;
    }
    cJSON *payload = decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    int rc = -EACCES;
    *why = "the token's claims are not a JSON object";
    if (payload)
        rc = read_claims(payload, now_s, claims, why);
    cJSON_Delete(payload);
    if (rc < 0)
        auth_claims_dispose(claims);
    return rc;
}

bool auth_room_allowed(const struct auth_claims *claims, const char *room)
{
    if (claims->all_rooms)
        return true;
    for (size_t i = 0; i < claims->room_count; i++) {
        const char *pattern = claims->rooms[i];
        size_t n = strlen(pattern);
        if (n > 0 && pattern[n - 1] == '*' ? strncmp(room, pattern, n - 1) == 0
                                           : strcmp(room, pattern) == 0)
            return true;
    }
    return false;
}

bool auth_is_moderator(const struct auth_claims *claims, const char *room)
{
    return claims->role == AUTH_ROLE_ADMIN ||
           (claims->role == AUTH_ROLE_MOD && auth_room_allowed(claims, room));
}

bool auth_role_parse(const char *name, enum auth_role *role)
{
    if (strcmp(name, "mod") == 0)
        *role = AUTH_ROLE_MOD;
    else if (strcmp(name, "admin") == 0)
        *role = AUTH_ROLE_ADMIN;
    else
        return false;
    return true;
}

void auth_claims_dispose(struct auth_claims *claims)
{
    free(claims->sub);
    for (size_t i = 0; i < claims->room_count; i++)
        free(claims->rooms[i]);
    free(claims->rooms);
    memset(claims, 0, sizeof(*claims));
}

/* ---------------------------------------------------------------- mint */

static char *encode_object(cJSON *obj)
{
    char *json = proto_encode_json(obj, NULL);
    cJSON_Delete(obj);
    char *out = auth_b64url_encode((unsigned char *)json, strlen(json));
    free(json);
    return out;
}

char *auth_mint(const char *secret, const char *user, char *const *rooms, size_t room_count,
                const char *role, int64_t exp)
{
    cJSON *header = cJSON_CreateObject();
    cJSON_AddStringToObject(header, "alg", "HS256");
    cJSON_AddStringToObject(header, "typ", "JWT");
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "sub", user);
    cJSON_AddNumberToObject(payload, "exp", (double)exp);
    if (rooms) {
        cJSON *list = cJSON_AddArrayToObject(payload, "rooms");
        for (size_t i = 0; i < room_count; i++)
            cJSON_AddItemToArray(list, cJSON_CreateString(rooms[i]));
    }
    if (role)
        cJSON_AddStringToObject(payload, "role", role);
    struct util_buf b;
    util_buf_init(&b);
    char *h = encode_object(header), *p = encode_object(payload);
    util_buf_appendf(&b, "%s.%s", h, p);
    free(h);
    free(p);
    unsigned char mac[32];
    hs256(secret, b.data, b.len, mac);
    char *sig = auth_b64url_encode(mac, sizeof(mac));
    util_buf_appendf(&b, ".%s", sig);
    free(sig);
    return util_buf_take(&b, NULL);
}
