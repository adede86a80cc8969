/* ratelimit: a token bucket (rate per second, burst size) for one sender.
 * Not thread-safe: each bucket belongs to one connection or one client. */
#ifndef TURBOCHAT_RATELIMIT_H
#define TURBOCHAT_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    double tokens;    /* available now, at most burst */
    double rate;      /* tokens added per second */
    double burst;     /* bucket size */
    uint64_t last_ns; /* monotonic time of the last refill */
};

/* A full bucket at now_ns. */
void ratelimit_init(struct ratelimit *rl, double rate, double burst, uint64_t now_ns);

/* Take one token if there is one; false means the caller is over the rate. */
bool ratelimit_take(struct ratelimit *rl, uint64_t now_ns);

/* Seconds (rounded up, at least 1) until a token is there, 0 when one is now. */
int ratelimit_wait_s(struct ratelimit *rl, uint64_t now_ns);

#endif
