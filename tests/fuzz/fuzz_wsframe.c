/* libFuzzer target for wsframe's decoder. The first input byte picks the
 * message limit (low 3 bits) and how the rest is split into reads (high 5
 * bits: whole, one byte at a time, or pseudo-random chunk sizes); each read
 * is a separate exact-size allocation so that ASan sees any access past it.
 * The same bytes are also decoded in one read, and both runs must deliver the
 * same events and end the same way. Events are checked against the rules
 * the decoder promises (sizes, UTF-8, close codes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wsframe.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static const size_t limits[8] = {0, 1, 16, 125, 126, 1000, 65536, 1u << 20};

struct run {
    size_t max_message;
    uint64_t hash; /* FNV-1a over every event */
    unsigned events;
};

static void hash_bytes(struct run *r, const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        r->hash ^= b[i];
        r->hash *= 0x100000001b3ull;
    }
}

static int on_event(void *ctx, const struct wsframe_event *ev)
{
    struct run *r = ctx;
    CHECK(ev->data != NULL);
    switch (ev->opcode) {
    case WSFRAME_TEXT:
        CHECK(ev->len <= r->max_message);
        CHECK(util_utf8_is_valid(ev->data, ev->len));
        break;
    case WSFRAME_PING:
    case WSFRAME_PONG:
        CHECK(ev->len <= WSFRAME_CONTROL_MAX);
        break;
    case WSFRAME_CLOSE:
        CHECK(ev->close_code == WSFRAME_CLOSE_NO_STATUS ? ev->len == 0
                                                        : ev->len <= WSFRAME_CONTROL_MAX - 2);
        CHECK(ev->close_code >= 1000 && ev->close_code < 5000);
        CHECK(util_utf8_is_valid(ev->data, ev->len));
        break;
    default:
        CHECK(0);
    }
    hash_bytes(r, &ev->opcode, sizeof(ev->opcode));
    hash_bytes(r, &ev->len, sizeof(ev->len));
    hash_bytes(r, &ev->close_code, sizeof(ev->close_code));
    hash_bytes(r, ev->data, ev->len); /* reads every byte: ASan checks the bounds */
    r->events++;
    return ev->opcode == WSFRAME_CLOSE ? 1 : 0; /* stop at a close, as the loop does */
}

/* The decoder's own invariants between reads. */
static void check_idle(const struct wsframe_decoder *d)
{
    if (!wsframe_decoder_mid_frame(d) && !d->in_message)
        CHECK(d->message.data == NULL); /* an idle decoder holds no heap memory */
    CHECK(d->message.len <= d->max_message);
}

/* Decode data[0..len) in reads whose sizes come from seed (0: one read). */
static int decode(struct run *r, const uint8_t *data, size_t len, unsigned seed,
                  struct wsframe_error *err)
{
    struct wsframe_decoder d;
    wsframe_decoder_init(&d, r->max_message);
    uint32_t state = seed * 2654435761u + 1;
    size_t at = 0;
    int rc = 0;
    while (at < len && rc == 0) {
        size_t n = len - at;
        if (seed == 1) {
            n = 1;
        } else if (seed > 1) {
            state = state * 1103515245u + 12345u;
            size_t pick = (state >> 16) % 24; /* mostly short reads, sometimes long */
            size_t want = pick < 16 ? pick + 1 : (size_t)1 << (pick - 12);
            n = want < n ? want : n;
        }
        unsigned char *chunk = malloc(n);
        CHECK(chunk != NULL);
        memcpy(chunk, data + at, n);
        rc = wsframe_decode(&d, chunk, n, on_event, r, err);
        free(chunk);
        at += n;
        if (rc == 0)
            check_idle(&d);
    }
    if (err->code != 0) {
        /* Refused: later input is refused too, without events. */
        struct wsframe_error again = {0, NULL};
        unsigned char byte = 0x81;
        unsigned events = r->events;
        CHECK(wsframe_decode(&d, &byte, 1, on_event, r, &again) == 1002);
        CHECK(again.code == 1002 && r->events == events);
        CHECK(!wsframe_decoder_mid_frame(&d) && d.message.data == NULL);
    }
    wsframe_decoder_dispose(&d);
    CHECK(d.message.data == NULL);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned ctl = data[0];
    data++;
    size--;

    struct run split = {limits[ctl & 7], 0xcbf29ce484222325ull, 0};
    struct run whole = split;
    struct wsframe_error split_err = {0, NULL}, whole_err = {0, NULL};
    int split_rc = decode(&split, data, size, ctl >> 3, &split_err);
    int whole_rc = decode(&whole, data, size, 0, &whole_err);

    CHECK(split_rc == 0 || split_rc == 1 || split_rc == 1002 || split_rc == 1003 ||
          split_rc == 1007 || split_rc == 1009);
    if (split_err.code != 0) {
        CHECK(split_err.code == split_rc);
        CHECK(split_err.reason != NULL && strlen(split_err.reason) <= 60);
    }
    /* Where the input is split must not change what it means. */
    CHECK(split_rc == whole_rc);
    CHECK(split_err.code == whole_err.code);
    CHECK(split_err.reason == whole_err.reason);
    CHECK(split.events == whole.events);
    CHECK(split.hash == whole.hash);

    unsigned char header[WSFRAME_HEADER_MAX];
    size_t hlen = wsframe_encode_header(header, WSFRAME_TEXT, size);
    CHECK(hlen == (size < 126 ? 2u : size <= 0xffff ? 4u : 10u));
    return 0;
}
