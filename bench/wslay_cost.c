/* bench/wslay_cost.c: what Debian's wslay (libwslay-dev) would cost TurboChat
 * per connection and per fan-out, measured with mallinfo2: the heap one
 * server-side wslay_event context holds while idle, and the heap a 1 KiB
 * message costs when queued to N connections with wslay_event_queue_msg
 * (which copies the message into each connection's queue), against one shared
 * frame referenced from N queues as app/loop.c does.
 *   cc -O2 bench/wslay_cost.c -lwslay -o /tmp/wslay_cost && /tmp/wslay_cost */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define CONNECTIONS 1000
#define MESSAGE_BYTES 1024

static ssize_t no_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx, (void)data, (void)flags, (void)user;
    return (ssize_t)len;
}

static ssize_t no_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)ctx, (void)buf, (void)len, (void)flags, (void)user;
    return -1;
}

static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}

int main(void)
{
    static wslay_event_context_ptr ctx[CONNECTIONS];
    struct wslay_event_callbacks callbacks = {.recv_callback = no_recv,
                                              .send_callback = no_send};
    size_t before = heap_in_use();
    for (int i = 0; i < CONNECTIONS; i++)
        wslay_event_context_server_init(&ctx[i], &callbacks, NULL);
    size_t contexts = heap_in_use() - before;

    uint8_t *payload = malloc(MESSAGE_BYTES);
    memset(payload, 'x', MESSAGE_BYTES);
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, payload, MESSAGE_BYTES};
    before = heap_in_use();
    for (int i = 0; i < CONNECTIONS; i++)
        wslay_event_queue_msg(ctx[i], &msg);
    size_t queued = heap_in_use() - before;

    printf("wslay idle context:        %zu bytes per connection\n", contexts / CONNECTIONS);
    printf("wslay 1 KiB to %d queues:  %zu bytes per recipient (a copy each)\n", CONNECTIONS,
           queued / CONNECTIONS);
    printf("shared frame (app/loop.c): %d bytes once + 8 bytes per recipient (a pointer)\n",
           MESSAGE_BYTES + 2 + 24);
    for (int i = 0; i < CONNECTIONS; i++)
        wslay_event_context_free(ctx[i]);
    free(payload);
    return 0;
}
