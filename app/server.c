/* server: starts CivetWeb from the configuration and serves everything that
 * is not /ws or /api: the site with ETag revalidation and a strict CSP, and
 * the operational endpoints. */
#define _GNU_SOURCE
#include "server.h"

#include <cjson/cJSON.h>
#include <civetweb.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assets.h"
#include "broker.h"
#include "config.h"
#include "http_api.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "store.h"
#include "util.h"
#include "ws.h"

#define SITE_MAX_FILE_BYTES (8 * 1024 * 1024)

struct server {
    const struct config *config;
    struct server_routes routes;
    struct mg_context *ctx;
};

static const char security_headers[] =
    "Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n";

/* ---------------------------------------------------------------- static site */

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json; charset=utf-8"},
        {".webmanifest", "application/manifest+json"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < ARRAY_LEN(types); i++) {
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* True for a site path without "..", backslashes or hidden segments. */
static bool site_path_is_safe(const char *path)
{
    return path[0] == '/' && !strstr(path, "..") && !strchr(path, '\\') && !strstr(path, "/.");
}

/* One file of the site, from the binary or from --www. */
struct site_file {
    const unsigned char *data;
    size_t size;
    char etag[40];
    char *owned; /* set when read from disk */
};

static bool load_from_dir(const char *dir, const char *path, struct site_file *file)
{
    char full[4096];
    snprintf(full, sizeof(full), "%s%s", dir, path);
    FILE *f = fopen(full, "rb");
    if (!f)
        return false;
    char *data = xmalloc(SITE_MAX_FILE_BYTES + 1);
    size_t n = fread(data, 1, SITE_MAX_FILE_BYTES, f);
    fclose(f);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)data[i]) * 1099511628211ull;
    file->owned = data;
    file->data = (const unsigned char *)data;
    file->size = n;
    snprintf(file->etag, sizeof(file->etag), "\"%016llx\"", (unsigned long long)h);
    return true;
}

static bool load_site_file(const struct config *config, const char *path, struct site_file *file)
{
    memset(file, 0, sizeof(*file));
    if (config->www_dir)
        return load_from_dir(config->www_dir, path, file);
    char key[4096];
    snprintf(key, sizeof(key), "www%s", path);
    const struct asset *asset = assets_find(key);
    if (!asset)
        return false;
    file->data = asset->data;
    file->size = asset->size;
    snprintf(file->etag, sizeof(file->etag), "%s", asset->etag);
    return true;
}

static void send_plain(struct mg_connection *mc, int status, const char *status_text,
                       const char *body)
{
    mg_printf(mc,
              "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: %zu\r\n%s\r\n%s",
              status, status_text, strlen(body), security_headers, body);
}

static int site_handler(struct mg_connection *mc, void *cbdata)
{
    struct server *server = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(mc);
    bool head = strcmp(ri->request_method, "HEAD") == 0;
    if (!head && strcmp(ri->request_method, "GET") != 0) {
        send_plain(mc, 405, "Method Not Allowed", "method not allowed\n");
        return 405;
    }
    const char *path = ri->local_uri ? ri->local_uri : "/";
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    struct site_file file;
    if (!site_path_is_safe(path) || !load_site_file(server->config, path, &file)) {
        send_plain(mc, 404, "Not Found", "not found\n");
        return 404;
    }
    const char *inm = mg_get_header(mc, "If-None-Match");
    if (inm && strcmp(inm, file.etag) == 0) {
        mg_printf(mc, "HTTP/1.1 304 Not Modified\r\nETag: %s\r\nCache-Control: no-cache\r\n%s\r\n",
                  file.etag, security_headers);
    } else {
        mg_printf(mc,
                  "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nETag: %s\r\n"
                  "Cache-Control: no-cache\r\n%s\r\n",
                  content_type(path), file.size, file.etag, security_headers);
        if (!head)
            mg_write(mc, file.data, file.size);
    }
    free(file.owned);
    return 200;
}

/* ---------------------------------------------------------------- operations */

/* {"status":"ok","node":ID}: the node tells a load balancer which one answered. */
static int healthz_handler(struct mg_connection *mc, void *cbdata)
{
    struct server *server = cbdata;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ok");
    cJSON_AddStringToObject(body, "node", server->config->node_id);
    char *json = proto_encode_json(body, NULL);
    cJSON_Delete(body);
    api_send_json(mc, 200, json, NULL);
    free(json);
    return 200;
}

static int readyz_handler(struct mg_connection *mc, void *cbdata)
{
    struct server *server = cbdata;
    char why[256] = "";
    if (!store_is_ready(server->routes.store)) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log is not open");
        return 503;
    }
    if (!broker_is_ready(server->routes.broker, why, sizeof(why))) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, why);
        return 503;
    }
    api_send_json(mc, 200, "{\"status\":\"ready\"}", NULL);
    return 200;
}

static int metrics_handler(struct mg_connection *mc, void *cbdata)
{
    struct server *server = cbdata;
    size_t len;
    char *text = metrics_render(server->routes.metrics, hub_room_count(server->routes.hub), &len);
    mg_printf(mc,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
              "Content-Length: %zu\r\nCache-Control: no-store\r\n\r\n",
              len);
    mg_write(mc, text, len);
    free(text);
    return 200;
}

/* ---------------------------------------------------------------- CivetWeb */

static int on_log_message(const struct mg_connection *mc, const char *message)
{
    (void)mc;
    log_msg(LOG_WARN, "civetweb", "message=%s", log_value(message));
    return 1;
}

/* Every connection CivetWeb closes; an upgrade admitted but never handed to a
 * loop gives its slot back here. */
static void on_connection_close(const struct mg_connection *mc)
{
    struct server *server = mg_get_user_data(mg_get_context(mc));
    ws_connection_closed(server->routes.ws, mc);
}

/* Load the certificate chain and key given as separate PEM files. */
static int on_init_ssl(void *ssl_ctx, void *user_data)
{
    const struct config *config = ((struct server *)user_data)->config;
    SSL_CTX *ctx = ssl_ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, config->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, config->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_msg(LOG_ERROR, "tls_setup_failed", "cert=%s key=%s", log_value(config->tls_cert),
                log_value(config->tls_key));
        return -1;
    }
    return 1;
}

struct server *server_start(const struct config *config, const struct server_routes *routes,
                            char *err, size_t errlen)
{
    struct server *server = xcalloc(1, sizeof(*server));
    server->config = config;
    server->routes = *routes;
    char threads[16], timeout[16];
    snprintf(threads, sizeof(threads), "%d", config->threads);
    snprintf(timeout, sizeof(timeout), "%d", config->request_timeout_ms);
    const char *options[] = {
        "listening_ports",
        config->listen,
        "num_threads",
        threads,
        "request_timeout_ms",
        timeout,
        "enable_keep_alive",
        "yes",
        "tcp_nodelay",
        "1",
        "connection_queue",
        "1024",
        "listen_backlog",
        "1024",
        "ssl_protocol_version",
        "4",
        NULL,
    };
    struct mg_callbacks callbacks = {0};
    callbacks.log_message = on_log_message;
    callbacks.connection_close = on_connection_close;
    if (config->tls_cert && config->tls_key)
        callbacks.init_ssl = on_init_ssl;
    struct mg_init_data init = {
        .callbacks = &callbacks, .user_data = server, .configuration_options = options};
    struct mg_error_data error = {.text = err, .text_buffer_size = errlen};
    server->ctx = mg_start2(&init, &error);
    if (!server->ctx) {
        free(server);
        return NULL;
    }
    ws_register(routes->ws, server->ctx);
    api_register(routes->api, server->ctx);
    mg_set_request_handler(server->ctx, "/healthz$", healthz_handler, server);
    mg_set_request_handler(server->ctx, "/readyz$", readyz_handler, server);
    mg_set_request_handler(server->ctx, "/metrics$", metrics_handler, server);
    mg_set_request_handler(server->ctx, "/", site_handler, server);
    log_msg(LOG_INFO, "listening", "listen=%s threads=%d tls=%s site=%s", log_value(config->listen),
            config->threads, config->tls_cert ? "on" : "off",
            log_value(config->www_dir ? config->www_dir : "embedded"));
    return server;
}

void server_stop(struct server *server)
{
    if (!server)
        return;
    mg_stop(server->ctx);
    free(server);
}
