/* ratelimit: token bucket refilled continuously from the monotonic clock. */
#include "ratelimit.h"

void ratelimit_init(struct ratelimit *rl, double rate, double burst, uint64_t now_ns)
{
    rl->rate = rate;
    rl->burst = burst;
    rl->tokens = burst;
    rl->last_ns = now_ns;
}

static void refill(struct ratelimit *rl, uint64_t now_ns)
{
    if (now_ns > rl->last_ns) {
        rl->tokens += (double)(now_ns - rl->last_ns) / 1e9 * rl->rate;
        if (rl->tokens > rl->burst)
            rl->tokens = rl->burst;
        rl->last_ns = now_ns;
    }
}

int ratelimit_wait_s(struct ratelimit *rl, uint64_t now_ns)
{
    refill(rl, now_ns);
    if (rl->tokens >= 1.0)
        return 0;
    int s = (int)((1.0 - rl->tokens) / rl->rate) + 1;
    return s;
}

bool ratelimit_take(struct ratelimit *rl, uint64_t now_ns)
{
    refill(rl, now_ns);
    if (rl->tokens < 1.0)
        return false;
    rl->tokens -= 1.0;
    return true;
}
