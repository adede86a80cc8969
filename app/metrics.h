/* metrics: the node's atomic counters, gauges and histograms, and their
 * Prometheus text exposition for GET /metrics (with the process's resident
 * memory and file descriptors, read at render time). */
#ifndef TURBOCHAT_METRICS_H
#define TURBOCHAT_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_BUCKETS 16

/* A latency histogram in seconds with fixed bucket bounds. */
struct metrics_histogram {
    atomic_uint_fast64_t buckets[METRICS_BUCKETS]; /* cumulative at output time */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
};

struct metrics {
    atomic_int_fast64_t connections;           /* open WebSockets (gauge) */
    atomic_uint_fast64_t connections_total;    /* WebSockets ever accepted */
    atomic_uint_fast64_t messages_received;    /* chat messages accepted from clients */
    atomic_uint_fast64_t messages_delivered;   /* message frames queued to clients */
    atomic_uint_fast64_t frames_rejected;      /* client frames answered with an error */
    atomic_uint_fast64_t slow_consumers;       /* connections closed with 1013 */
    atomic_uint_fast64_t rate_limited;         /* sends refused by the token bucket */
    atomic_uint_fast64_t store_commits;        /* group commits */
    atomic_uint_fast64_t store_errors;         /* failed commits */
    atomic_int_fast64_t store_queue_depth;     /* jobs waiting for the writer (gauge) */
    atomic_int_fast64_t outbound_queued;       /* frames waiting in outbound queues (gauge) */
    atomic_uint_fast64_t connections_refused;  /* upgrades answered 503 (limits) */
    atomic_uint_fast64_t broker_reconnects;    /* Valkey reconnects */
    atomic_uint_fast64_t broker_gaps_repaired; /* messages fetched to fill gaps */
    atomic_int_fast64_t broker_connected;      /* 1 when the broker is usable (gauge) */
    atomic_uint_fast64_t retention_purged;     /* events removed by retention */
    struct metrics_histogram store_commit_seconds;
    struct metrics_histogram publish_seconds;
    struct metrics_histogram delivery_seconds;    /* event ts -> frames queued here */
    struct metrics_histogram history_seconds;     /* GET /api/rooms/{room}/messages */
    struct metrics_histogram replay_read_seconds; /* one join-replay page read */
};

/* Zeroed metrics; free with metrics_free (accepts NULL). */
struct metrics *metrics_create(void);
void metrics_free(struct metrics *m);

/* Record one observation of elapsed nanoseconds. Any thread. */
void metrics_observe(struct metrics_histogram *h, uint64_t elapsed_ns);
/* Record the wall-clock time elapsed since ts_ms (ms since the epoch, as an
 * event's ts); a ts ahead of this clock (skew between nodes) counts as 0.
 * Any thread. */
void metrics_observe_since_ms(struct metrics_histogram *h, int64_t ts_ms);

/* Render the exposition; rooms is the number of rooms with members.
 * Returns a malloc'd string the caller frees. */
char *metrics_render(struct metrics *m, long rooms, size_t *len);

#endif
