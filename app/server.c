/* server: starts CivetWeb from the configuration, refuses requests whose
 * body framing is ambiguous, and serves everything that is not /ws or /api:
 * the site with ETag revalidation and a strict CSP, and the operational
 * endpoints. */
#define _GNU_SOURCE
#include "server.h"

#include <cjson/cJSON.h>
#include <civetweb.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assets.h"
#include "broker.h"
#include "config.h"
#include "http_api.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "proto.h"
#include "store.h"
#include "util.h"
#include "ws.h"

#define SITE_CHUNK_BYTES (64 * 1024) /* --www files are streamed in pieces of this */

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
    const unsigned char *data; /* embedded: its bytes; NULL for --www */
    FILE *disk;                /* --www: the open file, streamed; else NULL */
    size_t size;
    char etag[64];
};

/* A regular file under dir; a directory or anything else is not found. Its
 * ETag comes from its inode, size and modification time, since the file is
 * streamed rather than read whole. */
static bool load_from_dir(const char *dir, const char *path, struct site_file *file)
{
    char full[4096];
    if ((size_t)snprintf(full, sizeof(full), "%s%s", dir, path) >= sizeof(full))
        return false;
    /* O_NONBLOCK: a FIFO put in the directory must not hold the worker */
    int fd = open(full, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    FILE *f = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !(f = fdopen(fd, "rb"))) {
        close(fd);
        return false;
    }
    file->disk = f;
    file->size = (size_t)st.st_size;
    snprintf(file->etag, sizeof(file->etag), "\"%llx-%llx-%llx.%09ld\"",
             (unsigned long long)st.st_ino, (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    return true;
}

/* Write size bytes of f in pieces no larger than the file. False when the
 * file ended early or the client went away; the response is then cut short
 * and the connection must close. */
static bool stream_file(struct mg_connection *mc, FILE *f, size_t size)
{
    size_t cap = size < SITE_CHUNK_BYTES ? size : SITE_CHUNK_BYTES;
    char *buf = xmalloc(cap ? cap : 1);
    size_t left = size;
    while (left > 0) {
        size_t n = fread(buf, 1, left < cap ? left : cap, f);
        if (n == 0 || mg_write(mc, buf, n) <= 0)
            break;
        left -= n;
    }
    free(buf);
    return left == 0;
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
              "Content-Length: %zu\r\n%s%s\r\n%s",
              status, status_text, strlen(body), security_headers, api_hsts_header(mc), body);
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
        mg_printf(mc,
                  "HTTP/1.1 304 Not Modified\r\nETag: %s\r\nCache-Control: no-cache\r\n%s%s\r\n",
                  file.etag, security_headers, api_hsts_header(mc));
    } else {
        mg_printf(mc,
                  "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nETag: %s\r\n"
                  "Cache-Control: no-cache\r\n%s%s\r\n",
                  content_type(path), file.size, file.etag, security_headers, api_hsts_header(mc));
        if (!head && file.data)
            mg_write(mc, file.data, file.size);
        else if (!head && !stream_file(mc, file.disk, file.size))
            mg_disable_connection_keep_alive(mc);
    }
    if (file.disk)
        fclose(file.disk);
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

/* 503 while a new node copies the log, with the progress. */
static void send_copying(struct mg_connection *mc, const struct peer_progress *copy)
{
    char message[512];
    if (copy->from[0])
        snprintf(message, sizeof(message), "copying the log from %s: %llu of %llu events",
                 copy->from, (unsigned long long)copy->copied, (unsigned long long)copy->total);
    else
        snprintf(message, sizeof(message), "copying the log: looking for a peer");
    cJSON *body = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(body, "error");
    cJSON_AddStringToObject(error, "code", proto_error_code(PROTO_ERR_UNAVAILABLE));
    cJSON_AddStringToObject(error, "message", message);
    cJSON *progress = cJSON_AddObjectToObject(body, "copy");
    if (copy->from[0])
        cJSON_AddStringToObject(progress, "peer", copy->from);
    else
        cJSON_AddNullToObject(progress, "peer");
    cJSON_AddNumberToObject(progress, "copied", (double)copy->copied);
    cJSON_AddNumberToObject(progress, "total", (double)copy->total);
    api_send_object(mc, 503, body);
}

static int readyz_handler(struct mg_connection *mc, void *cbdata)
{
    struct server *server = cbdata;
    char why[256] = "";
    if (!store_is_ready(server->routes.store)) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, "the message log is not open");
        return 503;
    }
    if (store_commits_failing(server->routes.store)) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE,
                       "commits to the message log fail (a full disk?): sends are refused");
        return 503;
    }
    if (!broker_is_ready(server->routes.broker, why, sizeof(why))) {
        api_send_error(mc, PROTO_ERR_UNAVAILABLE, why);
        return 503;
    }
    struct peer_progress copy;
    peer_get_progress(server->routes.peer, &copy);
    if (!copy.done) {
        send_copying(mc, &copy);
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
              "Content-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
              len, api_hsts_header(mc));
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

/* The number of digits a Content-Length value starts with, when only spaces
 * and tabs follow them (CivetWeb keeps trailing whitespace); else 0. */
static size_t length_digits(const char *value)
{
    size_t n = strspn(value, "0123456789");
    return n > 0 && value[n + strspn(value + n, " \t")] == '\0' ? n : 0;
}

/* Before any handler: refuse a request whose body two HTTP parsers could
 * delimit differently (RFC 9112 section 6.3): Content-Length with
 * Transfer-Encoding, Content-Lengths that disagree, or one that is not a
 * number. CivetWeb would pick one reading and a proxy in front of it may pick
 * another, and the rest of the connection would be a request smuggled past
 * the proxy; so 400, and the connection closes. */
static int on_begin_request(struct mg_connection *mc)
{
    const struct mg_request_info *ri = mg_get_request_info(mc);
    const char *length = NULL;
    size_t length_len = 0;
    const char *why = NULL;
    bool encoded = false;
    for (int i = 0; i < ri->num_headers && !why; i++) {
        const char *name = ri->http_headers[i].name;
        const char *value = ri->http_headers[i].value;
        if (strcasecmp(name, "Transfer-Encoding") == 0) {
            encoded = true;
        } else if (strcasecmp(name, "Content-Length") == 0) {
            size_t n = length_digits(value);
            if (n == 0)
                why = "Content-Length is not a number";
            else if (length && (n != length_len || strncmp(length, value, n) != 0))
                why = "two different Content-Length headers";
            length = value;
            length_len = n;
        }
    }
    if (!why && encoded && length)
        why = "Content-Length together with Transfer-Encoding";
    if (!why)
        return 0;
    mg_disable_connection_keep_alive(mc);
    api_send_error_headers(mc, PROTO_ERR_BAD_REQUEST, why, "Connection: close\r\n");
    return 400;
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
        /* No CORS of CivetWeb's own (its default is "*" for everyone): the
         * /api handler answers preflights by allowed_origins. */
        "access_control_allow_origin",
        "",
        "access_control_allow_methods",
        "",
        "access_control_allow_headers",
        "",
        NULL,
    };
    struct mg_callbacks callbacks = {0};
    callbacks.log_message = on_log_message;
    callbacks.begin_request = on_begin_request;
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
    peer_register(routes->peer, server->ctx);
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
