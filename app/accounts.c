/* accounts: every change of an account or session is an event of the one
 * accounts log, published like a message and applied by every node's store
 * (store.c, migrations/0003_accounts.sql); this module reads the store and
 * decides. A name is claimed atomically where ids are given out (Valkey's
 * script or the embedded broker), so two nodes cannot make one name twice.
 * Secrets never leave this file but as a grant to their owner: the store
 * keeps SHA-256 hashes of cookies and tokens, and Argon2id hashes of
 * passwords, and nothing here logs either. */
#define _GNU_SOURCE
#include "accounts.h"

#include <argon2.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "ratelimit.h"
#include "store.h"
#include "strmap.h"
#include "util.h"

/* Argon2id parameters (PROTOCOL.md): OWASP's minimum for Argon2id. */
#define HASH_PASSES 2
#define HASH_MEMORY_KIB 19456
#define HASH_LANES 1
#define HASH_SALT_BYTES 16
#define HASH_BYTES 32
#define HASH_ENCODED_MAX 128

#define SECRET_BYTES 32 /* of a cookie or a token */
#define TOKEN_PREFIX "tcs_"
#define SEALED_PREFIX "tco_"          /* a session sealed by one node, Valkey away */
#define SEALED_TTL_MS (3600LL * 1000) /* how long a sealed session lasts */
#define INVITE_TTL_MS (7LL * 24 * 3600 * 1000)
#define LIMITS_MAX 10000 /* sign-in buckets kept per kind; full ones are dropped first */

struct accounts {
    const struct config *config;
    struct store *store;
    struct broker *broker;
    pthread_mutex_t lock;              /* the two maps */
    struct strmap *name_limits;        /* name key -> struct ratelimit: failed sign-ins */
    struct strmap *address_limits;     /* client address -> struct ratelimit */
    char dummy_hash[HASH_ENCODED_MAX]; /* verified for unknown names: equal time */
};

/* ---------------------------------------------------------------- secrets */

/* SHA-256 of s as 64 hex digits into out[65]. */
static void sha256_hex(const char *s, char out[65])
{
    unsigned char digest[32];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), digest, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

/* prefix and SECRET_BYTES random bytes in base64url; the caller frees it. */
static char *random_secret(const char *prefix)
{
    unsigned char bytes[SECRET_BYTES];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1)
        abort(); /* no randomness: no secret may be made */
    char *b64 = auth_b64url_encode(bytes, sizeof(bytes));
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_appendf(&buf, "%s%s", prefix, b64);
    OPENSSL_cleanse(bytes, sizeof(bytes));
    free(b64);
    return util_buf_take(&buf, NULL);
}

static int hash_password(const char *password, char encoded[HASH_ENCODED_MAX])
{
    unsigned char salt[HASH_SALT_BYTES];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        abort();
    int rc =
        argon2id_hash_encoded(HASH_PASSES, HASH_MEMORY_KIB, HASH_LANES, password, strlen(password),
                              salt, sizeof(salt), HASH_BYTES, encoded, HASH_ENCODED_MAX);
    return rc == ARGON2_OK ? 0 : -EIO;
}

static bool password_matches(const char *encoded, const char *password)
{
    return argon2id_verify(encoded, password, strlen(password)) == ARGON2_OK;
}

static bool password_is_valid(const char *password, struct chat_refusal *refusal)
{
    size_t len = strlen(password);
    size_t chars = util_utf8_is_valid(password, len) ? util_utf8_count(password, len) : 0;
    if (chars < ACCOUNTS_PASSWORD_MIN || chars > ACCOUNTS_PASSWORD_MAX)
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST,
                            "password must be 8 to 256 characters of valid UTF-8", false);
    return true;
}

/* ---------------------------------------------------------------- events */

/* A colour for name: one of a fixed, readable set, always the same. */
static const char *default_color(const char *name)
{
    static const char *const colors[] = {"#4f46e5", "#0e7490", "#b45309", "#be123c",
                                         "#15803d", "#7c3aed", "#0369a1", "#a21caf"};
    unsigned h = 5381;
    for (const char *p = name; *p; p++)
        h = h * 33 + (unsigned char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    return colors[h % ARRAY_LEN(colors)];
}

/* The account record an account event carries. */
static cJSON *account_record(const char *name, const char *hash, const char *role,
                             const char *display, const char *color, bool disabled, int64_t created)
{
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "name", name);
    cJSON_AddStringToObject(rec, "hash", hash);
    if (role)
        cJSON_AddStringToObject(rec, "role", role);
    cJSON_AddStringToObject(rec, "display", display);
    cJSON_AddStringToObject(rec, "color", color);
    cJSON_AddBoolToObject(rec, "disabled", disabled);
    cJSON_AddNumberToObject(rec, "created", (double)created);
    return rec;
}

/* The record of a stored account, to publish with a change. The role of
 * the first account is written down, so a later change keeps it. */
static cJSON *record_of(const struct store_account *acc)
{
    return account_record(acc->name, acc->hash, acc->role, acc->display, acc->color, acc->disabled,
                          acc->created);
}

/* ---- sealed sessions: sign-in while Valkey is away
 *
 * A session needs its event replicated; with Valkey away a node seals one
 * instead: "tco_" HEX(name) "." expires "." nonce "." HMAC-SHA256, keyed by
 * a hash of the account's password hash, which every node has. Any node
 * checks it without a record; a new password ends it; it lasts an hour; a
 * sign-out (once Valkey is back) ends it by its SHA-256 like any session. */

static void hex_encode(const unsigned char *data, size_t len, struct util_buf *out)
{
    for (size_t i = 0; i < len; i++)
        util_buf_appendf(out, "%02x", data[i]);
}

/* The MAC of payload under the key of password hash, as hex into out[65]. */
static void seal_mac(const char *password_hash, const char *payload, size_t len, char out[65])
{
    unsigned char key[32], mac[32];
    unsigned int n = 0;
    struct util_buf k;
    util_buf_init(&k);
    util_buf_appendf(&k, "turbochat session\n%s", password_hash);
    EVP_Digest(k.data, k.len, key, &n, EVP_sha256(), NULL);
    util_buf_dispose(&k);
    HMAC(EVP_sha256(), key, (int)sizeof(key), (const unsigned char *)payload, len, mac, &n);
    OPENSSL_cleanse(key, sizeof(key));
    for (unsigned int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static int seal_session(struct accounts *a, const char *name, struct accounts_grant *grant)
{
    struct store_account acc;
    if (store_get_account(a->store, name, &acc) != 0)
        return -TC_EUNAVAILABLE;
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        abort();
    struct util_buf buf;
    util_buf_init(&buf);
    util_buf_append(&buf, SEALED_PREFIX, strlen(SEALED_PREFIX));
    hex_encode((const unsigned char *)name, strlen(name), &buf);
    grant->expires_ms = util_now_ms() + SEALED_TTL_MS;
    util_buf_appendf(&buf, ".%" PRId64 ".", grant->expires_ms);
    hex_encode(nonce, sizeof(nonce), &buf);
    char mac[65];
    seal_mac(acc.hash, buf.data, buf.len, mac);
    store_account_dispose(&acc);
    util_buf_appendf(&buf, ".%s", mac);
    free(grant->token);
    free(grant->cookie);
    grant->token = util_buf_take(&buf, NULL);
    grant->cookie = xstrdup(grant->token);
    log_msg(LOG_WARN, "session_sealed", "user=%s reason=\"the broker is unavailable\"",
            log_value(name));
    return 0;
}

/* The account name of a sealed session, if it is one and holds. */
static bool open_sealed(struct accounts *a, const char *secret, struct accounts_caller *caller)
{
    const char *p = secret + strlen(SEALED_PREFIX), *dot1 = strchr(p, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    const char *dot3 = dot2 ? strchr(dot2 + 1, '.') : NULL;
    size_t hex_len = dot1 ? (size_t)(dot1 - p) : 0;
    int64_t expires_ms = dot1 ? strtoll(dot1 + 1, NULL, 10) : 0;
    if (!dot3 || hex_len == 0 || hex_len % 2 || hex_len > 2 * PROTO_USER_MAX_BYTES ||
        expires_ms <= util_now_ms())
        return false;
    char name[PROTO_USER_MAX_BYTES + 1];
    for (size_t i = 0; i < hex_len / 2; i++) {
        unsigned v;
        if (sscanf(p + 2 * i, "%2x", &v) != 1)
            return false;
        name[i] = (char)v;
    }
    name[hex_len / 2] = '\0';
    struct store_account acc;
    if (store_get_account(a->store, name, &acc) != 0)
        return false;
    char mac[65], sid[65];
    seal_mac(acc.hash, secret, (size_t)(dot3 - secret), mac);
    bool ok = strlen(dot3 + 1) == 64 && CRYPTO_memcmp(mac, dot3 + 1, 64) == 0 && !acc.disabled;
    sha256_hex(secret, sid);
    ok = ok && store_session_ended(a->store, sid) == 0;
    if (ok) {
        caller->user = xstrdup(acc.name);
        caller->sid = xstrdup(sid);
        caller->admin = strcmp(acc.role, "admin") == 0;
        caller->expires_ms = expires_ms;
    }
    store_account_dispose(&acc);
    return ok;
}

/* Begin a session of name and fill grant; with Valkey away, a sealed one. */
static int open_session(struct accounts *a, const char *name, struct accounts_grant *grant)
{
    char sid[65], tid[65];
    grant->cookie = random_secret("");
    grant->token = random_secret(TOKEN_PREFIX);
    grant->user = xstrdup(name);
    grant->expires_ms = util_now_ms() + (int64_t)a->config->session_ttl_s * 1000;
    sha256_hex(grant->cookie, sid);
    sha256_hex(grant->token, tid);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "name", name);
    cJSON_AddStringToObject(rec, "sid", sid);
    cJSON_AddStringToObject(rec, "tid", tid);
    cJSON_AddNumberToObject(rec, "expires", (double)grant->expires_ms);
    int rc = broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG, CHAT_SESSION, name, rec, NULL);
    if (rc == -TC_EUNAVAILABLE)
        rc = seal_session(a, name, grant);
    if (rc < 0)
        accounts_grant_dispose(grant);
    return rc;
}

void accounts_grant_dispose(struct accounts_grant *grant)
{
    free(grant->user);
    if (grant->cookie)
        OPENSSL_cleanse(grant->cookie, strlen(grant->cookie));
    if (grant->token)
        OPENSSL_cleanse(grant->token, strlen(grant->token));
    free(grant->cookie);
    free(grant->token);
    memset(grant, 0, sizeof(*grant));
}

void accounts_caller_dispose(struct accounts_caller *caller)
{
    free(caller->user);
    free(caller->sid);
    memset(caller, 0, sizeof(*caller));
}

/* ---------------------------------------------------------------- sign-up */

/* The claim of an invite code (a used code is a claim), into out[80]. */
static void invite_claim(const char *code, char out[80])
{
    char hash[65];
    sha256_hex(code, hash);
    snprintf(out, 80, "invite:%s", hash);
}

static bool invite_is_usable(struct accounts *a, const char *code, struct chat_refusal *refusal)
{
    const char *why = "an invite code is required to sign up here";
    if (code) {
        char hash[65], claim[80];
        int64_t expires = 0;
        sha256_hex(code, hash);
        invite_claim(code, claim);
        why = "the invite code is unknown, used or expired";
        if (store_invite_expires(a->store, hash, &expires) == 0 && expires > util_now_ms() &&
            store_has_claim(a->store, CHAT_ACCOUNTS_LOG, claim) == 0)
            return true;
    }
    return chat_refused(refusal, PROTO_ERR_INVITE_INVALID, why, false);
}

/* Make the account name (normalized in place) with password; claims more
 * than its name when extra_claim is set. */
static int make_account(struct accounts *a, char *name, const char *password, const char *role,
                        const char *extra_claim, struct chat_refusal *refusal)
{
    const char *why;
    if (!proto_user_normalize(name, &why))
        return chat_refused(refusal, PROTO_ERR_BAD_REQUEST, why, -EINVAL);
    if (!password_is_valid(password, refusal))
        return -EINVAL;
    struct store_account existing;
    if (store_get_account(a->store, name, &existing) == 0) {
        store_account_dispose(&existing);
        return chat_refused(refusal, PROTO_ERR_NAME_TAKEN, "this name is taken", -EEXIST);
    }
    char hash[HASH_ENCODED_MAX], key[PROTO_USER_MAX_BYTES + 1];
    if (hash_password(password, hash) < 0)
        return chat_refused(refusal, PROTO_ERR_INTERNAL, "the password could not be hashed", -EIO);
    store_name_key(name, key, sizeof(key));
    struct util_buf claim;
    util_buf_init(&claim);
    util_buf_appendf(&claim, "name:%s%s%s", key, extra_claim ? "\n" : "",
                     extra_claim ? extra_claim : "");
    char *claims = util_buf_take(&claim, NULL);
    cJSON *rec = account_record(name, hash, role, name, default_color(name), false, util_now_ms());
    int rc = broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG, CHAT_ACCOUNT, name, rec, claims);
    free(claims);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == -TC_ECLAIMED && extra_claim && store_get_account(a->store, name, &existing) != 0)
        return chat_refused(refusal, PROTO_ERR_INVITE_INVALID, "the invite code was used", rc);
    if (rc == -TC_ECLAIMED)
        return chat_refused(refusal, PROTO_ERR_NAME_TAKEN, "this name is taken", rc);
    if (rc < 0)
        return chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "the account could not be made now",
                            rc);
    log_msg(LOG_INFO, "account_created", "user=%s", log_value(name));
    return 0;
}

int accounts_signup(struct accounts *a, const char *name, const char *password, const char *invite,
                    struct accounts_grant *grant, struct chat_refusal *refusal)
{
    memset(grant, 0, sizeof(*grant));
    if (a->config->signup == CONFIG_SIGNUP_CLOSED)
        return chat_refused(refusal, PROTO_ERR_SIGNUP_CLOSED, "accounts are made by an admin here",
                            -EPERM);
    char claim[80] = "";
    if (a->config->signup == CONFIG_SIGNUP_INVITE) {
        if (!invite_is_usable(a, invite, refusal))
            return -EPERM;
        invite_claim(invite, claim);
    }
    char *copy = xstrdup(name);
    int rc = make_account(a, copy, password, NULL, claim[0] ? claim : NULL, refusal);
    if (rc == 0 && (rc = open_session(a, copy, grant)) < 0)
        chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "the account was made; sign in again later",
                     rc);
    free(copy);
    return rc;
}

int accounts_add(struct accounts *a, const char *name, const char *password, const char *role,
                 struct chat_refusal *refusal)
{
    char *copy = xstrdup(name);
    int rc = make_account(a, copy, password, role, NULL, refusal);
    free(copy);
    return rc;
}

/* ---------------------------------------------------------------- sign-in */

/* The bucket of key in *map, made full when new. A flood of new names or
 * addresses beyond LIMITS_MAX starts the map afresh. lock held. */
static struct ratelimit *limit_of(struct accounts *a, struct strmap **map, const char *key)
{
    struct ratelimit *rl = strmap_get(*map, key);
    if (rl)
        return rl;
    if (strmap_count(*map) >= LIMITS_MAX) {
        strmap_free(*map);
        *map = strmap_create(free);
    }
    rl = xmalloc(sizeof(*rl));
    int per_minute = a->config->signin_rate_limit;
    ratelimit_init(rl, per_minute / 60.0, per_minute, util_mono_ns());
    strmap_put(*map, key, rl);
    return rl;
}

/* Seconds until name and address may try again: 0 when they may now. */
static int signin_wait_s(struct accounts *a, const char *key, const char *address)
{
    uint64_t now = util_mono_ns();
    pthread_mutex_lock(&a->lock);
    int by_name = ratelimit_wait_s(limit_of(a, &a->name_limits, key), now);
    int by_address = ratelimit_wait_s(limit_of(a, &a->address_limits, address), now);
    pthread_mutex_unlock(&a->lock);
    return by_name > by_address ? by_name : by_address;
}

static void count_failure(struct accounts *a, const char *key, const char *address)
{
    uint64_t now = util_mono_ns();
    pthread_mutex_lock(&a->lock);
    ratelimit_take(limit_of(a, &a->name_limits, key), now);
    ratelimit_take(limit_of(a, &a->address_limits, address), now);
    pthread_mutex_unlock(&a->lock);
}

int accounts_signin(struct accounts *a, const char *name, const char *password, const char *address,
                    struct accounts_grant *grant, struct chat_refusal *refusal, int *retry_s)
{
    memset(grant, 0, sizeof(*grant));
    char key[PROTO_USER_MAX_BYTES + 1];
    store_name_key(name, key, sizeof(key));
    *retry_s = signin_wait_s(a, key, address);
    if (*retry_s > 0) {
        log_msg(LOG_WARN, "signin_limited", "remote=%s", log_value(address));
        return chat_refused(refusal, PROTO_ERR_RATE_LIMITED, "too many failed sign-ins; wait",
                            -EAGAIN);
    }
    struct store_account acc;
    bool known = store_get_account(a->store, name, &acc) == 0;
    /* An unknown name costs one hash too, so timing does not tell names apart. */
    bool matches = password_matches(known ? acc.hash : a->dummy_hash, password);
    bool ok = known && matches && !acc.disabled;
    char *canonical = ok ? xstrdup(acc.name) : NULL;
    if (known)
        store_account_dispose(&acc);
    if (!ok) {
        count_failure(a, key, address);
        log_msg(LOG_INFO, "signin_failed", "remote=%s", log_value(address));
        return chat_refused(refusal, PROTO_ERR_UNAUTHORIZED, "wrong name or password", -EACCES);
    }
    int rc = open_session(a, canonical, grant);
    free(canonical);
    if (rc < 0)
        return chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "signing in is not possible now", rc);
    log_msg(LOG_INFO, "signin", "user=%s remote=%s", log_value(grant->user), log_value(address));
    return 0;
}

bool accounts_authenticate(struct accounts *a, const char *secret, bool by_token,
                           struct accounts_caller *caller)
{
    memset(caller, 0, sizeof(*caller));
    if (strncmp(secret, SEALED_PREFIX, strlen(SEALED_PREFIX)) == 0)
        return open_sealed(a, secret, caller);
    if (by_token && strncmp(secret, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0)
        return false;
    char hash[65];
    sha256_hex(secret, hash);
    struct store_session session;
    if (store_find_session(a->store, hash, by_token, &session) != 0)
        return false;
    bool ok = session.active && session.user && session.expires > util_now_ms();
    struct store_account acc;
    if (ok && store_get_account(a->store, session.user, &acc) == 0) {
        caller->user = xstrdup(acc.name);
        caller->sid = xstrdup(session.sid);
        caller->admin = strcmp(acc.role, "admin") == 0;
        caller->expires_ms = session.expires;
        store_account_dispose(&acc);
    }
    store_session_dispose(&session);
    return caller->user != NULL;
}

/* ---------------------------------------------------------------- changes */

int accounts_signout(struct accounts *a, const struct accounts_caller *caller, bool everywhere)
{
    cJSON *rec = cJSON_CreateObject();
    if (everywhere)
        cJSON_AddStringToObject(rec, "name", caller->user);
    else
        cJSON_AddStringToObject(rec, "sid", caller->sid);
    return broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG,
                                 everywhere ? CHAT_SIGNOUT_ALL : CHAT_SIGNOUT, caller->user, rec,
                                 NULL);
}

/* Publish name's record as change sets it; every earlier session ends with
 * end_sessions. actor is who changes it. */
static int change_account(struct accounts *a, const char *actor, const char *name,
                          bool end_sessions, void (*change)(cJSON *rec, const void *arg),
                          const void *arg, struct chat_refusal *refusal)
{
    struct store_account acc;
    if (store_get_account(a->store, name, &acc) != 0)
        return chat_refused(refusal, PROTO_ERR_NOT_FOUND, "no such account", -ENOENT);
    cJSON *rec = record_of(&acc);
    change(rec, arg);
    int rc = broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG, CHAT_ACCOUNT, actor, rec, NULL);
    if (rc == 0 && end_sessions) {
        cJSON *all = cJSON_CreateObject();
        cJSON_AddStringToObject(all, "name", acc.name);
        rc =
            broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG, CHAT_SIGNOUT_ALL, actor, all, NULL);
    }
    store_account_dispose(&acc);
    if (rc < 0)
        chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "the account could not be changed now", false);
    return rc;
}

static void replace_field(cJSON *rec, const char *name, cJSON *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(rec, name);
    cJSON_AddItemToObject(rec, name, value);
}

struct profile_change {
    const char *display;
    const char *color;
    const char *hash; /* new password hash, or NULL */
};

static void set_profile(cJSON *rec, const void *arg)
{
    const struct profile_change *p = arg;
    if (p->display)
        replace_field(rec, "display", cJSON_CreateString(p->display));
    if (p->color)
        replace_field(rec, "color", cJSON_CreateString(p->color));
    if (p->hash)
        replace_field(rec, "hash", cJSON_CreateString(p->hash));
}

static void set_disabled(cJSON *rec, const void *arg)
{
    replace_field(rec, "disabled", cJSON_CreateBool(*(const bool *)arg));
}

static bool color_is_valid(const char *color)
{
    if (strlen(color) != 7 || color[0] != '#')
        return false;
    return strspn(color + 1, "0123456789abcdefABCDEF") == 6;
}

/* End every session of the caller's account but the caller's own. */
static int end_other_sessions(struct accounts *a, const struct accounts_caller *caller)
{
    char **sids;
    size_t count;
    int rc = store_account_sessions(a->store, caller->user, &sids, &count);
    for (size_t i = 0; i < count; i++) {
        if (rc == 0 && (!caller->sid || strcmp(sids[i], caller->sid) != 0)) {
            cJSON *rec = cJSON_CreateObject();
            cJSON_AddStringToObject(rec, "sid", sids[i]);
            rc = broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG, CHAT_SIGNOUT, caller->user,
                                       rec, NULL);
        }
        free(sids[i]);
    }
    free(sids);
    return rc;
}

int accounts_update(struct accounts *a, const struct accounts_caller *caller, const char *display,
                    const char *color, const char *password, const char *old_password,
                    struct chat_refusal *refusal)
{
    char *display_copy = display ? xstrdup(display) : NULL;
    char hash[HASH_ENCODED_MAX];
    struct profile_change change = {NULL, color, NULL};
    int rc = -EINVAL;
    if (display_copy && !proto_user_normalize(display_copy, NULL)) {
        chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "display must be 1 to 32 characters", false);
        goto out;
    }
    change.display = display_copy;
    if (color && !color_is_valid(color)) {
        chat_refused(refusal, PROTO_ERR_BAD_REQUEST, "color must be # and 6 hex digits", false);
        goto out;
    }
    if (password) {
        struct store_account acc;
        bool known = store_get_account(a->store, caller->user, &acc) == 0;
        bool matches = known && old_password && password_matches(acc.hash, old_password);
        if (known)
            store_account_dispose(&acc);
        if (!matches) {
            chat_refused(refusal, PROTO_ERR_FORBIDDEN, "old_password is not the password", false);
            goto out;
        }
        if (!password_is_valid(password, refusal))
            goto out;
        if (hash_password(password, hash) < 0) {
            chat_refused(refusal, PROTO_ERR_INTERNAL, "the password could not be hashed", false);
            goto out;
        }
        change.hash = hash;
    }
    rc = change_account(a, caller->user, caller->user, false, set_profile, &change, refusal);
    if (rc == 0 && password && (rc = end_other_sessions(a, caller)) < 0)
        chat_refused(refusal, PROTO_ERR_UNAVAILABLE, "the password was changed; sign out elsewhere",
                     rc);
out:
    free(display_copy);
    OPENSSL_cleanse(hash, sizeof(hash));
    return rc;
}

int accounts_set_disabled(struct accounts *a, const char *name, bool disabled,
                          struct chat_refusal *refusal)
{
    int rc = change_account(a, name, name, disabled, set_disabled, &disabled, refusal);
    if (rc == 0)
        log_msg(LOG_INFO, disabled ? "account_disabled" : "account_enabled", "user=%s",
                log_value(name));
    return rc;
}

int accounts_set_password(struct accounts *a, const char *name, const char *password,
                          struct chat_refusal *refusal)
{
    char hash[HASH_ENCODED_MAX];
    if (!password_is_valid(password, refusal))
        return -EINVAL;
    if (hash_password(password, hash) < 0)
        return chat_refused(refusal, PROTO_ERR_INTERNAL, "the password could not be hashed", -EIO);
    struct profile_change change = {NULL, NULL, hash};
    int rc = change_account(a, name, name, true, set_profile, &change, refusal);
    OPENSSL_cleanse(hash, sizeof(hash));
    return rc;
}

int accounts_make_invite(struct accounts *a, char **code, int64_t *expires_ms)
{
    char hash[65];
    *code = random_secret("");
    *expires_ms = util_now_ms() + INVITE_TTL_MS;
    sha256_hex(*code, hash);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "code", hash);
    cJSON_AddNumberToObject(rec, "expires", (double)*expires_ms);
    int rc = broker_publish_record(a->broker, CHAT_ACCOUNTS_LOG, CHAT_INVITE, "admin", rec, NULL);
    if (rc < 0) {
        free(*code);
        *code = NULL;
    }
    return rc;
}

int accounts_get(struct accounts *a, const char *name, struct store_account *out)
{
    return store_get_account(a->store, name, out);
}

int accounts_list(struct accounts *a, struct store_account **out, size_t *count)
{
    return store_list_accounts(a->store, out, count);
}

struct cJSON *accounts_user_object(const struct store_account *acc)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "name", acc->name);
    cJSON_AddStringToObject(obj, "display", acc->display);
    cJSON_AddStringToObject(obj, "color", acc->color);
    cJSON_AddStringToObject(obj, "role", acc->role);
    cJSON_AddBoolToObject(obj, "disabled", acc->disabled);
    cJSON_AddNumberToObject(obj, "created", (double)acc->created);
    return obj;
}

/* ---------------------------------------------------------------- module */

struct accounts *accounts_create(const struct config *config, struct store *store,
                                 struct broker *broker)
{
    struct accounts *a = xcalloc(1, sizeof(*a));
    a->config = config;
    a->store = store;
    a->broker = broker;
    pthread_mutex_init(&a->lock, NULL);
    a->name_limits = strmap_create(free);
    a->address_limits = strmap_create(free);
    char *random = random_secret("");
    if (hash_password(random, a->dummy_hash) < 0)
        abort();
    free(random);
    return a;
}

void accounts_free(struct accounts *a)
{
    if (!a)
        return;
    strmap_free(a->name_limits);
    strmap_free(a->address_limits);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
