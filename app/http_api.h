/* http_api: the REST API under /api/ of docs/PROTOCOL.md: who the caller is
 * (by auth mode), rooms (and, with accounts, making them, their members,
 * DMs and the admin's list), a moderator's change of a room (its retention),
 * history paging (with where history begins) and events, posting and changing
 * messages, members, mutes and bans; JSON in and out through cJSON. The account endpoints
 * are http_accounts'. */
#ifndef TURBOCHAT_HTTP_API_H
#define TURBOCHAT_HTTP_API_H

#include <stdbool.h>

#include "proto.h"

struct accounts;
struct api;
struct broker;
struct budgets;
struct cJSON;
struct config;
struct hub;
struct metrics;
struct mg_connection;
struct rooms;
struct mg_context;
struct store;

/* The API; the pointers must outlive it. Free with api_free (accepts NULL). */
/* accounts is NULL unless auth = accounts. */
struct api *api_create(const struct config *config, struct accounts *accounts, struct rooms *rooms,
                       struct store *store, struct broker *broker, struct hub *hub,
                       struct metrics *metrics, struct budgets *budgets);
void api_free(struct api *api);

/* Register the /api handler on a started CivetWeb context. Main thread. */
void api_register(struct api *api, struct mg_context *ctx);

/* True when the request carries no Origin header (not a browser), or one that
 * allowed_origins lists ("*" allows all), or, by default, the server's own
 * origin (the listener's scheme, http or https, and the Host header).
 * Worker thread. */
bool api_origin_is_allowed(const struct mg_connection *mc, const struct config *config);

#define API_ADDRESS_MAX 48 /* an IPv6 address and its NUL */

/* The client's address: the peer's, or, when the peer is one of
 * trusted_proxies, the rightmost address of X-Forwarded-For that is not a
 * trusted proxy's. Worker thread. */
void api_client_address(const struct mg_connection *mc, const struct config *config, char *out,
                        size_t outlen);

/* Send {"error":{"code","message"}} with status. Worker thread. */
void api_send_error(struct mg_connection *mc, enum proto_error err, const char *message);
/* The same with extra header lines (each ending in CRLF), e.g. Retry-After. */
void api_send_error_headers(struct mg_connection *mc, enum proto_error err, const char *message,
                            const char *extra_headers);

/* Send obj (consumed) as the JSON body with status. Worker thread. */
void api_send_object(struct mg_connection *mc, int status, struct cJSON *obj);

/* The request body's JSON object into *out (the caller deletes it): within
 * max_body_bytes and request_timeout_ms, with a Content-Length. With optional
 * a request without a body gives *out NULL. False after answering the error. */
bool api_read_json_body(const struct config *config, struct mg_connection *mc, bool optional,
                        struct cJSON **out);

/* The Strict-Transport-Security header line (CRLF-terminated) for a
 * request that came over TLS, else "". Static storage. Worker thread. */
const char *api_hsts_header(const struct mg_connection *mc);

/* Send a JSON body (a NUL-terminated string) with status. Worker thread. */
void api_send_json(struct mg_connection *mc, int status, const char *json,
                   const char *extra_headers);

#endif
