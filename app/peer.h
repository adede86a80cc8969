/* peer: copying the log between nodes. A node that starts in cluster mode
 * copies, before it reports ready, every event its log lacks from a live peer
 * (the client half: one thread, plain HTTP with timeouts, one store
 * transaction per page); a node that is ready announces its internal address
 * in Valkey and serves its log to the others under /internal/ (the server
 * half), signed with the cluster secret (an HMAC, the secret never travels). */
#ifndef TURBOCHAT_PEER_H
#define TURBOCHAT_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct mg_context;
struct peer;
struct store;

#define PEER_SECRET_MIN 32             /* bytes of cluster_secret */
#define PEER_HEADER "X-TurboChat-Peer" /* "<unix ms>.<hex HMAC-SHA256>" */
#define PEER_AUTH_WINDOW_MS 60000      /* a signature this far from now is refused */
#define PEER_HEADER_MAX 96             /* room for a header value, NUL included */

/* The header value that signs a request: "<now_ms>.<hex HMAC-SHA256(secret,
 * method "\n" target "\n" now_ms)>" into out (PEER_HEADER_MAX bytes); target
 * is the path with its query. Any thread. */
void peer_sign(const char *secret, const char *method, const char *target, int64_t now_ms,
               char *out, size_t outlen);

/* True when header (may be NULL) signs (method, target) with secret within
 * PEER_AUTH_WINDOW_MS of now_ms; compared in constant time. Any thread. */
bool peer_auth_is_valid(const char *secret, const char *method, const char *target,
                        const char *header, int64_t now_ms);

/* Start the peer thread of a cluster node: learn the cluster secret, copy
 * what the log lacks from a live peer, then announce this node every 10 s.
 * The pointers outlive the peer. Free with peer_free. Main thread. */
struct peer *peer_create(const struct config *config, struct store *store);

/* Serve /internal/ on a started CivetWeb context. Main thread. */
void peer_register(struct peer *peer, struct mg_context *ctx);

/* Where the copy stands. */
struct peer_progress {
    bool done;       /* copied, skipped or given up: the node may be ready */
    char from[256];  /* the peer copied from now; "" while looking for one */
    uint64_t copied; /* events copied so far */
    uint64_t total;  /* events to copy, as far as known */
};

/* The progress into *out; a NULL peer (single node) is done. Any thread. */
void peer_get_progress(struct peer *peer, struct peer_progress *out);

/* Stop the thread, withdraw the announcement, free. Accepts NULL. Main thread. */
void peer_free(struct peer *peer);

#endif
