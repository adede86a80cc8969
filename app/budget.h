/* budget: how fast each user and each client address may write (send, edit,
 * delete, react), shared by all of their WebSockets and REST requests on this
 * node, so that neither opening more connections nor switching between
 * WebSocket and REST multiplies the rate. Token buckets in one table of
 * bounded size: the least recently used bucket makes room for a new one.
 * Thread-safe. */
#ifndef TURBOCHAT_BUDGET_H
#define TURBOCHAT_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct budgets;

/* Buckets of user_rate per second (user_burst at most) per user and of
 * address_rate (address_burst) per address (none when address_rate is 0);
 * at most max_buckets of them. */
struct budgets *budgets_create(double user_rate, double user_burst, double address_rate,
                               double address_burst, size_t max_buckets);
void budgets_free(struct budgets *budgets);

/* Take one write from the budget of user (NULL: none, e.g. before sign-in)
 * and of address: true when both had one, and then both lose it. */
bool budgets_take(struct budgets *budgets, const char *user, const char *address, uint64_t now_ns);

/* Buckets held now (at most max_buckets). */
size_t budgets_count(struct budgets *budgets);

#endif
