/* metrics: atomic counters and latency histograms shared by every thread,
 * rendered in the Prometheus text exposition format. */
#define _GNU_SOURCE
#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Upper bounds of the histogram buckets, in seconds (the last is +Inf). */
static const double bucket_bounds[METRICS_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 0,
};

struct metrics *metrics_create(void)
{
    return xcalloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    free(m);
}

void metrics_observe(struct metrics_histogram *h, uint64_t elapsed_ns)
{
    double seconds = (double)elapsed_ns / 1e9;
    size_t i = 0;
    while (i < METRICS_BUCKETS - 1 && seconds > bucket_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, elapsed_ns / 1000, memory_order_relaxed);
}

void metrics_observe_since_ms(struct metrics_histogram *h, int64_t ts_ms)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t elapsed = ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec) - ts_ms * 1000000;
    metrics_observe(h, elapsed > 0 ? (uint64_t)elapsed : 0);
}

/* Resident set size in bytes from /proc/self/statm; -1 when unreadable. */
static long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    unsigned long long size, resident;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    return n == 2 ? (long long)(resident * (unsigned long long)sysconf(_SC_PAGESIZE)) : -1;
}

/* Open file descriptors (entries of /proc/self/fd but the one reading it). */
static long long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static void render_histogram(struct util_buf *b, const char *name, const char *help,
                             struct metrics_histogram *h)
{
    util_buf_appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < METRICS_BUCKETS - 1)
            util_buf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_bounds[i],
                             (unsigned long long)cumulative);
        else
            util_buf_appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                             (unsigned long long)cumulative);
    }
    util_buf_appendf(b, "%s_sum %.6f\n%s_count %llu\n", name, (double)atomic_load(&h->sum_us) / 1e6,
                     name, (unsigned long long)atomic_load(&h->count));
}

static void render_value(struct util_buf *b, const char *name, const char *type, const char *help,
                         long long value)
{
    util_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name,
                     value);
}

char *metrics_render(struct metrics *m, long rooms, size_t *len)
{
    struct util_buf b;
    util_buf_init(&b);
    render_value(&b, "turbochat_connections", "gauge", "Open WebSocket connections.",
                 (long long)atomic_load(&m->connections));
    render_value(&b, "turbochat_connections_accepted_total", "counter",
                 "WebSocket connections accepted.", (long long)atomic_load(&m->connections_total));
    render_value(&b, "turbochat_rooms", "gauge", "Rooms with members on this node.", rooms);
    render_value(&b, "turbochat_messages_received_total", "counter",
                 "Events (messages and their changes) accepted from clients of this node.",
                 (long long)atomic_load(&m->messages_received));
    render_value(&b, "turbochat_messages_delivered_total", "counter",
                 "Message frames queued to clients of this node.",
                 (long long)atomic_load(&m->messages_delivered));
    render_value(&b, "turbochat_frames_rejected_total", "counter",
                 "Client frames answered with an error.",
                 (long long)atomic_load(&m->frames_rejected));
    render_value(&b, "turbochat_rate_limited_total", "counter",
                 "Writes, joins and leaves refused by a rate limit.",
                 (long long)atomic_load(&m->rate_limited));
    render_value(&b, "turbochat_slow_consumer_disconnects_total", "counter",
                 "Connections closed with 1013 because their outbound queue overflowed.",
                 (long long)atomic_load(&m->slow_consumers));
    render_value(&b, "turbochat_outbound_queue_frames", "gauge",
                 "Frames waiting in outbound queues.", (long long)atomic_load(&m->outbound_queued));
    render_value(&b, "turbochat_connections_refused_total", "counter",
                 "WebSocket upgrades answered 503: the node's or the address's limit.",
                 (long long)atomic_load(&m->connections_refused));
    render_value(&b, "turbochat_store_queue_depth", "gauge",
                 "Messages waiting for the SQLite writer.",
                 (long long)atomic_load(&m->store_queue_depth));
    render_value(&b, "turbochat_store_commits_total", "counter", "SQLite group commits.",
                 (long long)atomic_load(&m->store_commits));
    render_value(&b, "turbochat_store_errors_total", "counter", "Failed SQLite commits.",
                 (long long)atomic_load(&m->store_errors));
    render_value(&b, "turbochat_retention_purged_total", "counter",
                 "Events removed from the log by retention.",
                 (long long)atomic_load(&m->retention_purged));
    render_value(&b, "turbochat_broker_connected", "gauge", "1 when the broker accepts messages.",
                 (long long)atomic_load(&m->broker_connected));
    render_value(&b, "turbochat_broker_reconnects_total", "counter", "Valkey reconnects.",
                 (long long)atomic_load(&m->broker_reconnects));
    render_value(&b, "turbochat_broker_gaps_repaired_total", "counter",
                 "Messages fetched from the replay window to fill gaps.",
                 (long long)atomic_load(&m->broker_gaps_repaired));
    render_histogram(&b, "turbochat_store_commit_seconds", "Latency of SQLite group commits.",
                     &m->store_commit_seconds);
    render_histogram(&b, "turbochat_publish_seconds",
                     "Time from accepting a message to its acknowledgement.", &m->publish_seconds);
    render_histogram(&b, "turbochat_delivery_seconds",
                     "Wall-clock time from an event's ts (its acceptance, on any node) to its "
                     "frame being queued to this node's members; one observation per event "
                     "that reached a member.",
                     &m->delivery_seconds);
    render_histogram(&b, "turbochat_history_seconds",
                     "Time to answer GET /api/rooms/{room}/messages (store read, encoding, write).",
                     &m->history_seconds);
    render_histogram(&b, "turbochat_replay_read_seconds",
                     "Time to read one page of a join's replay from history.",
                     &m->replay_read_seconds);
    long long rss = resident_bytes(), fds = open_fds();
    struct rlimit lim;
    if (rss >= 0)
        render_value(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                     rss);
    if (fds >= 0)
        render_value(&b, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
        render_value(&b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                     (long long)lim.rlim_cur);
    return util_buf_take(&b, len);
}
