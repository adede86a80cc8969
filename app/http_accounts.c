/* http_accounts: JSON in, JSON out, every field checked before accounts is
 * called; the session cookie is set here and nowhere else. */
#define _GNU_SOURCE
#include "http_accounts.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "config.h"
#include "http_api.h"
#include "store.h"
#include "util.h"

static const char *const auth_names[] = {"off", "token", "accounts"};
static const char *const signup_names[] = {"open", "invite", "closed"};

static bool method_is(struct mg_connection *mc, const char *method)
{
    return strcmp(mg_get_request_info(mc)->request_method, method) == 0;
}

static void send_refusal(struct mg_connection *mc, const struct chat_refusal *refusal)
{
    api_send_error(mc, refusal->err, refusal->why);
}

/* A string field of body; NULL when absent, after answering 400 when it is
 * not a string (*bad set). */
static const char *field(struct mg_connection *mc, const cJSON *body, const char *name, bool *bad)
{
    bool wrong = false;
    const char *value = body ? proto_get_string(body, name, &wrong) : NULL;
    if (wrong && !*bad) {
        char why[64];
        snprintf(why, sizeof(why), "%s must be a string", name);
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, why);
    }
    *bad = *bad || wrong;
    return value;
}

/* Answer {user, token} with the session cookie of grant. */
static void send_grant(struct accounts *accounts, struct mg_connection *mc, int status,
                       const struct accounts_grant *grant, const struct config *config)
{
    char headers[512];
    snprintf(headers, sizeof(headers),
             "Set-Cookie: " HTTP_ACCOUNTS_COOKIE "=%s; Path=/; Max-Age=%d; HttpOnly; "
             "SameSite=Strict%s\r\n",
             grant->cookie, config->session_ttl_s,
             mg_get_request_info(mc)->is_ssl ? "; Secure" : "");
    struct store_account acc;
    cJSON *obj = cJSON_CreateObject();
    if (accounts_get(accounts, grant->user, &acc) == 0) {
        cJSON_AddItemToObject(obj, "user", accounts_user_object(&acc));
        store_account_dispose(&acc);
    }
    cJSON_AddStringToObject(obj, "token", grant->token);
    char *json = proto_encode_json(obj, NULL);
    cJSON_Delete(obj);
    api_send_json(mc, status, json, headers);
    free(json);
}

/* The user object of name, answered with status; 404 when it is gone. */
static void send_user(struct accounts *accounts, struct mg_connection *mc, const char *name)
{
    struct store_account acc;
    if (accounts_get(accounts, name, &acc) != 0) {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such account");
        return;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddItemToObject(obj, "user", accounts_user_object(&acc));
    store_account_dispose(&acc);
    api_send_object(mc, 200, obj);
}

static void get_mode(const struct config *config, struct mg_connection *mc)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "auth", auth_names[config->auth]);
    cJSON_AddStringToObject(obj, "signup", signup_names[config->signup]);
    api_send_object(mc, 200, obj);
}

/* POST /api/auth/signup and /api/auth/signin. */
static void sign_up_or_in(struct accounts *accounts, const struct config *config,
                          struct mg_connection *mc, bool signup)
{
    cJSON *body;
    if (!api_read_json_body(config, mc, false, &body))
        return;
    bool bad = false;
    const char *name = field(mc, body, "name", &bad);
    const char *password = field(mc, body, "password", &bad);
    const char *invite = field(mc, body, "invite", &bad);
    if (!bad && (!name || !password)) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "name and password are required strings");
        bad = true;
    }
    struct accounts_grant grant;
    struct chat_refusal refusal;
    int retry_s = 0;
    int rc = -1;
    char address[API_ADDRESS_MAX];
    api_client_address(mc, config, address, sizeof(address));
    if (!bad)
        rc = signup
                 ? accounts_signup(accounts, name, password, invite, &grant, &refusal)
                 : accounts_signin(accounts, name, password, address, &grant, &refusal, &retry_s);
    cJSON_Delete(body);
    if (bad)
        return;
    if (rc == 0) {
        send_grant(accounts, mc, signup ? 201 : 200, &grant, config);
        accounts_grant_dispose(&grant);
    } else if (retry_s > 0) {
        char header[48];
        snprintf(header, sizeof(header), "Retry-After: %d\r\n", retry_s);
        api_send_error_headers(mc, refusal.err, refusal.why, header);
    } else {
        send_refusal(mc, &refusal);
    }
}

bool http_accounts_public(struct accounts *accounts, const struct config *config,
                          struct mg_connection *mc, const char *uri)
{
    if (strcmp(uri, "/api/auth/mode") == 0) {
        get_mode(config, mc);
        return true;
    }
    bool signup = strcmp(uri, "/api/auth/signup") == 0;
    if (config->auth != CONFIG_AUTH_ACCOUNTS || (!signup && strcmp(uri, "/api/auth/signin") != 0))
        return false;
    if (method_is(mc, "POST"))
        sign_up_or_in(accounts, config, mc, signup);
    else
        api_send_error_headers(mc, PROTO_ERR_METHOD_NOT_ALLOWED, "use POST", "Allow: POST\r\n");
    return true;
}

/* ---------------------------------------------------------------- the caller */

static void sign_out(struct accounts *accounts, const struct config *config,
                     struct mg_connection *mc, const struct accounts_caller *caller)
{
    cJSON *body;
    if (!api_read_json_body(config, mc, true, &body))
        return;
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(body, "everywhere");
    bool everywhere = cJSON_IsTrue(field), valid = !field || cJSON_IsBool(field);
    cJSON_Delete(body);
    if (!valid) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "everywhere must be true or false");
        return;
    }
    if (!caller->sid && !everywhere) {
        api_send_error(mc, PROTO_ERR_BAD_REQUEST, "an app's token is no session to end");
        return;
    }
    if (accounts_signout(accounts, caller, everywhere) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "signing out is not possible now; retry");
        return;
    }
    api_send_json(mc, 200, "{}",
                  "Set-Cookie: " HTTP_ACCOUNTS_COOKIE "=; Path=/; Max-Age=0; HttpOnly; "
                  "SameSite=Strict\r\n");
}

static void patch_me(struct accounts *accounts, const struct config *config,
                     struct mg_connection *mc, const struct accounts_caller *caller)
{
    cJSON *body;
    if (!api_read_json_body(config, mc, false, &body))
        return;
    bool bad = false;
    const char *display = field(mc, body, "display", &bad);
    const char *color = field(mc, body, "color", &bad);
    const char *password = field(mc, body, "password", &bad);
    const char *old_password = field(mc, body, "old_password", &bad);
    struct chat_refusal refusal;
    int rc =
        bad ? -1
            : accounts_update(accounts, caller, display, color, password, old_password, &refusal);
    cJSON_Delete(body);
    if (bad)
        return;
    if (rc < 0)
        send_refusal(mc, &refusal);
    else
        send_user(accounts, mc, caller->user);
}

static void make_invite(struct accounts *accounts, struct mg_connection *mc)
{
    char *code;
    int64_t expires;
    if (accounts_make_invite(accounts, &code, &expires) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "no invite could be made now");
        return;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "code", code);
    cJSON_AddNumberToObject(obj, "expires", (double)expires);
    free(code);
    api_send_object(mc, 201, obj);
}

/* ---------------------------------------------------------------- admin */

static void list_users(struct accounts *accounts, struct mg_connection *mc)
{
    struct store_account *all;
    size_t count;
    if (accounts_list(accounts, &all, &count) < 0) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the accounts cannot be read now");
        return;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(obj, "users");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, accounts_user_object(&all[i]));
    store_free_accounts(all, count);
    api_send_object(mc, 200, obj);
}

/* POST /api/admin/users/{name}/{action}: rest is "{name}/{action}". */
static void act_on_user(struct accounts *accounts, const struct config *config,
                        struct mg_connection *mc, const char *rest)
{
    const char *slash = strrchr(rest, '/');
    char name[PROTO_USER_MAX_BYTES + 1];
    if (!slash || (size_t)(slash - rest) >= sizeof(name) || slash == rest) {
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource");
        return;
    }
    memcpy(name, rest, (size_t)(slash - rest));
    name[slash - rest] = '\0';
    const char *action = slash + 1;
    struct chat_refusal refusal = {PROTO_ERR_NOT_FOUND, "no such action"};
    int rc = -1;
    if (strcmp(action, "disable") == 0 || strcmp(action, "enable") == 0) {
        rc = accounts_set_disabled(accounts, name, action[0] == 'd', &refusal);
    } else if (strcmp(action, "password") == 0) {
        cJSON *body;
        if (!api_read_json_body(config, mc, false, &body))
            return;
        bool bad = false;
        const char *password = field(mc, body, "password", &bad);
        if (bad) {
            cJSON_Delete(body);
            return;
        }
        refusal = (struct chat_refusal){PROTO_ERR_BAD_REQUEST, "password is required"};
        rc = password ? accounts_set_password(accounts, name, password, &refusal) : -1;
        cJSON_Delete(body);
    }
    if (rc < 0)
        send_refusal(mc, &refusal);
    else
        send_user(accounts, mc, name);
}

static void route_admin(struct accounts *accounts, const struct config *config,
                        struct mg_connection *mc, const char *uri)
{
    const char *users = "/api/admin/users/";
    if (strcmp(uri, "/api/admin/users") == 0 && method_is(mc, "GET"))
        list_users(accounts, mc);
    else if (strncmp(uri, users, strlen(users)) == 0 && method_is(mc, "POST"))
        act_on_user(accounts, config, mc, uri + strlen(users));
    else
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource");
}

bool http_accounts_route(struct accounts *accounts, const struct config *config,
                         struct mg_connection *mc, const char *uri,
                         const struct accounts_caller *caller)
{
    bool me = strcmp(uri, "/api/me") == 0;
    bool admin_path = strncmp(uri, "/api/admin/users", 16) == 0;
    bool invites = strcmp(uri, "/api/auth/invites") == 0;
    if (strcmp(uri, "/api/auth/signout") == 0 && method_is(mc, "POST"))
        sign_out(accounts, config, mc, caller);
    else if (me && method_is(mc, "GET"))
        send_user(accounts, mc, caller->user);
    else if (me && method_is(mc, "PATCH"))
        patch_me(accounts, config, mc, caller);
    else if ((admin_path || invites) && !caller->admin)
        api_send_error(mc, PROTO_ERR_FORBIDDEN, "only an admin may do this");
    else if (invites && method_is(mc, "POST"))
        make_invite(accounts, mc);
    else if (admin_path)
        route_admin(accounts, config, mc, uri);
    else if (me || strncmp(uri, "/api/auth/", 10) == 0)
        api_send_error(mc, PROTO_ERR_NOT_FOUND, "no such resource, or not with this method");
    else
        return false;
    return true;
}
