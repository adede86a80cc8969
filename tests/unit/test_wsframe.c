/* Unit tests for wsframe: every RFC 6455 rule the decoder enforces and the
 * close code it answers with, input split at every point and fed one byte at
 * a time, the 16- and 64-bit length forms, the zero-copy path, control frames
 * between fragments, the callback's stop value and the header encoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_help.h"
#include "util.h"
#include "wsframe.h"

#define FIN 0x80
#define LIMIT 100000 /* max_message unless a test says otherwise */

static const unsigned char test_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---------------------------------------------------------- frame builder */

/* Write a client frame into out: b0 is FIN/RSV/opcode as sent, form the
 * length encoding (0: the shortest, 126 or 127 to force one), declared the
 * length written in the header, payload (len bytes) masked with test_key
 * unless masked is false. Returns the frame's length. */
static size_t client_frame_ex(unsigned char *out, unsigned b0, bool masked, int form,
                              uint64_t declared, const void *payload, size_t len)
{
    size_t at = 0;
    out[at++] = (unsigned char)b0;
    unsigned char mask_bit = masked ? 0x80 : 0;
    if (form == 0)
        form = declared < 126 ? 0 : declared <= 0xffff ? 126 : 127;
    if (form == 0) {
        out[at++] = (unsigned char)(mask_bit | declared);
    } else if (form == 126) {
        out[at++] = mask_bit | 126;
        out[at++] = (unsigned char)(declared >> 8);
        out[at++] = (unsigned char)declared;
    } else {
        out[at++] = mask_bit | 127;
        for (int i = 0; i < 8; i++)
            out[at++] = (unsigned char)(declared >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(out + at, test_key, 4);
        at += 4;
    }
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++)
        out[at + i] = masked ? p[i] ^ test_key[i & 3] : p[i];
    return at + len;
}

/* A well-formed masked frame with the shortest length form. */
static size_t client_frame(unsigned char *out, unsigned b0, const void *payload, size_t len)
{
    return client_frame_ex(out, b0, true, 0, len, payload, len);
}

static size_t client_text(unsigned char *out, unsigned b0, const char *s)
{
    return client_frame(out, b0, s, strlen(s));
}

/* A close frame with a code and a reason. */
static size_t client_close(unsigned char *out, unsigned code, const void *reason, size_t len)
{
    unsigned char payload[WSFRAME_CONTROL_MAX + 2];
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, len);
    return client_frame(out, FIN | WSFRAME_CLOSE, payload, len + 2);
}

/* ---------------------------------------------------------- event record */

#define REC_MAX 16

struct rec {
    int n;
    int opcode[REC_MAX];
    char *data[REC_MAX]; /* copies, NUL-terminated */
    size_t len[REC_MAX];
    int close_code[REC_MAX];
    const char *ptr[REC_MAX]; /* ev->data as given, for the zero-copy checks */
    int stop_at;              /* return stop_rc on this event (1-based); 0: never */
    int stop_rc;
};

static int on_event(void *ctx, const struct wsframe_event *ev)
{
    struct rec *r = ctx;
    if (r->n == REC_MAX)
        return -1;
    int i = r->n++;
    r->opcode[i] = ev->opcode;
    r->data[i] = ev->data ? xstrndup(ev->data, ev->len) : NULL;
    r->len[i] = ev->len;
    r->close_code[i] = ev->close_code;
    r->ptr[i] = ev->data;
    return r->n == r->stop_at ? r->stop_rc : 0;
}

static void rec_free(struct rec *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->data[i]);
    memset(r, 0, sizeof(*r));
}

static bool rec_same(const struct rec *a, const struct rec *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++) {
        if (a->opcode[i] != b->opcode[i] || a->len[i] != b->len[i] ||
            a->close_code[i] != b->close_code[i] || memcmp(a->data[i], b->data[i], a->len[i]) != 0)
            return false;
    }
    return true;
}

/* --------------------------------------------------------------- feeding */

/* Decode a private copy of buf (decoding unmasks in place) in one call. */
static int decode_once(const unsigned char *buf, size_t len, size_t max_message, struct rec *r,
                       struct wsframe_error *err)
{
    struct wsframe_decoder d;
    wsframe_decoder_init(&d, max_message);
    unsigned char *copy = xmalloc(len);
    memcpy(copy, buf, len);
    int rc = wsframe_decode(&d, copy, len, on_event, r, err);
    free(copy);
    wsframe_decoder_dispose(&d);
    return rc;
}

/* Decode buf in reads of step bytes (the last one shorter), stopping at the
 * first non-zero result. */
static int decode_steps(struct wsframe_decoder *d, const unsigned char *buf, size_t len,
                        size_t step, struct rec *r, struct wsframe_error *err)
{
    unsigned char *copy = xmalloc(len ? len : 1);
    memcpy(copy, buf, len);
    int rc = 0;
    for (size_t at = 0; at < len && rc == 0; at += step)
        rc = wsframe_decode(d, copy + at, len - at < step ? len - at : step, on_event, r, err);
    free(copy);
    return rc;
}

/* Expect buf to be refused with code and reason, fed whole and byte by byte. */
static int expect_error(const unsigned char *buf, size_t len, size_t max_message, int code,
                        const char *reason)
{
    for (size_t step = 1; step <= len; step = step == 1 ? len : len + 1) {
        struct wsframe_decoder d;
        struct wsframe_error err = {0, NULL};
        struct rec r = {0};
        wsframe_decoder_init(&d, max_message);
        int rc = decode_steps(&d, buf, len, step, &r, &err);
        TEST_ASSERT_INT(rc, code);
        TEST_ASSERT_INT(err.code, code);
        TEST_ASSERT_STR(err.reason, reason);
        TEST_ASSERT(strlen(err.reason) <= 60);
        TEST_ASSERT(d.message.data == NULL); /* a refused message is freed */
        wsframe_decoder_dispose(&d);
        rec_free(&r);
    }
    return 0;
}

/* ----------------------------------------------------------------- tests */

static int test_struct_size(void)
{
    printf("sizeof(struct wsframe_decoder) = %zu\n", sizeof(struct wsframe_decoder));
    TEST_ASSERT(sizeof(struct wsframe_decoder) <= 256);
    return 0;
}

static int test_single_text_zero_copy(void)
{
    unsigned char buf[64];
    size_t n = client_text(buf, FIN | WSFRAME_TEXT, "hello");
    struct wsframe_decoder d;
    struct wsframe_error err = {0, NULL};
    struct rec r = {0};
    wsframe_decoder_init(&d, LIMIT);
    TEST_ASSERT_INT(wsframe_decode(&d, buf, n, on_event, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_INT(r.opcode[0], WSFRAME_TEXT);
    TEST_ASSERT_STR(r.data[0], "hello");
    TEST_ASSERT(r.ptr[0] == (const char *)buf + 6); /* in place, unmasked */
    TEST_ASSERT(memcmp(buf + 6, "hello", 5) == 0);
    TEST_ASSERT(d.message.data == NULL && d.message.cap == 0); /* nothing allocated */
    TEST_ASSERT(!wsframe_decoder_mid_frame(&d));
    TEST_ASSERT_INT(err.code, 0);
    rec_free(&r);

    /* Zero-copy also when only the header came in an earlier read. */
    n = client_text(buf, FIN | WSFRAME_TEXT, "again");
    TEST_ASSERT_INT(wsframe_decode(&d, buf, 3, on_event, &r, &err), 0);
    TEST_ASSERT(wsframe_decoder_mid_frame(&d));
    TEST_ASSERT_INT(wsframe_decode(&d, buf + 3, n - 3, on_event, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_STR(r.data[0], "again");
    TEST_ASSERT(r.ptr[0] == (const char *)buf + 6);
    TEST_ASSERT(d.message.data == NULL);
    rec_free(&r);

    /* Two messages in one read: both in place. */
    size_t a = client_text(buf, FIN | WSFRAME_TEXT, "one");
    n = a + client_text(buf + a, FIN | WSFRAME_TEXT, "two");
    TEST_ASSERT_INT(wsframe_decode(&d, buf, n, on_event, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 2);
    TEST_ASSERT_STR(r.data[0], "one");
    TEST_ASSERT_STR(r.data[1], "two");
    TEST_ASSERT(r.ptr[0] == (const char *)buf + 6);
    TEST_ASSERT(r.ptr[1] == (const char *)buf + a + 6);
    TEST_ASSERT(d.message.data == NULL);
    rec_free(&r);
    wsframe_decoder_dispose(&d);
    return 0;
}

static int test_empty_messages(void)
{
    unsigned char buf[64];
    size_t n = client_text(buf, FIN | WSFRAME_TEXT, "");
    n += client_text(buf + n, WSFRAME_TEXT, "");
    n += client_text(buf + n, WSFRAME_CONTINUATION, "");
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "");
    n += client_frame(buf + n, FIN | WSFRAME_PING, "", 0);
    struct rec r = {0};
    struct wsframe_error err = {0, NULL};
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 3);
    TEST_ASSERT_INT(r.opcode[0], WSFRAME_TEXT);
    TEST_ASSERT_INT(r.len[0], 0);
    TEST_ASSERT(r.ptr[0] != NULL);
    TEST_ASSERT_INT(r.opcode[1], WSFRAME_TEXT);
    TEST_ASSERT_INT(r.len[1], 0);
    TEST_ASSERT(r.ptr[1] != NULL);
    TEST_ASSERT_INT(r.opcode[2], WSFRAME_PING);
    TEST_ASSERT_INT(r.len[2], 0);
    rec_free(&r);
    return 0;
}

static int test_ping_pong(void)
{
    unsigned char buf[512];
    unsigned char payload[WSFRAME_CONTROL_MAX];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (unsigned char)(i * 7);
    size_t n = client_frame(buf, FIN | WSFRAME_PING, payload, sizeof(payload));
    size_t m = n + client_frame(buf + n, FIN | WSFRAME_PONG, "pong!", 5);
    for (size_t step = 1; step <= m; step++) {
        struct wsframe_decoder d;
        struct wsframe_error err = {0, NULL};
        struct rec r = {0};
        wsframe_decoder_init(&d, LIMIT);
        TEST_ASSERT_INT(decode_steps(&d, buf, m, step, &r, &err), 0);
        TEST_ASSERT_INT(r.n, 2);
        TEST_ASSERT_INT(r.opcode[0], WSFRAME_PING);
        TEST_ASSERT_INT(r.len[0], sizeof(payload));
        TEST_ASSERT(memcmp(r.data[0], payload, sizeof(payload)) == 0);
        TEST_ASSERT_INT(r.opcode[1], WSFRAME_PONG);
        TEST_ASSERT_STR(r.data[1], "pong!");
        TEST_ASSERT(d.message.data == NULL); /* control payloads never use the heap */
        wsframe_decoder_dispose(&d);
        rec_free(&r);
    }
    return 0;
}

static int test_fragmented_with_controls(void)
{
    unsigned char buf[256];
    size_t n = client_text(buf, WSFRAME_TEXT, "Hel");
    n += client_frame(buf + n, FIN | WSFRAME_PING, "p1", 2);
    n += client_text(buf + n, WSFRAME_CONTINUATION, "lo ");
    n += client_frame(buf + n, FIN | WSFRAME_PONG, "p2", 2);
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "world");
    n += client_text(buf + n, FIN | WSFRAME_TEXT, "next");

    struct wsframe_decoder d;
    struct wsframe_error err = {0, NULL};
    struct rec r = {0};
    wsframe_decoder_init(&d, LIMIT);
    unsigned char copy[256];
    memcpy(copy, buf, n);
    TEST_ASSERT_INT(wsframe_decode(&d, copy, n, on_event, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 4);
    TEST_ASSERT_INT(r.opcode[0], WSFRAME_PING);
    TEST_ASSERT_STR(r.data[0], "p1");
    TEST_ASSERT_INT(r.opcode[1], WSFRAME_PONG);
    TEST_ASSERT_STR(r.data[1], "p2");
    TEST_ASSERT_INT(r.opcode[2], WSFRAME_TEXT);
    TEST_ASSERT_STR(r.data[2], "Hello world");
    TEST_ASSERT_INT(r.opcode[3], WSFRAME_TEXT);
    TEST_ASSERT_STR(r.data[3], "next");
    TEST_ASSERT(d.message.data == NULL && d.message.cap == 0); /* freed after delivery */
    TEST_ASSERT(!d.in_message);
    wsframe_decoder_dispose(&d);
    rec_free(&r);

    /* Between fragments the decoder holds an unfinished message: that counts
     * as mid-frame, so a sender trickling empty fragments meets the deadline. */
    wsframe_decoder_init(&d, LIMIT);
    size_t first = client_text(buf, WSFRAME_TEXT, "Hel");
    memcpy(copy, buf, first);
    TEST_ASSERT_INT(wsframe_decode(&d, copy, first, on_event, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 0);
    TEST_ASSERT(wsframe_decoder_mid_frame(&d));
    TEST_ASSERT(d.in_message);
    wsframe_decoder_dispose(&d);
    TEST_ASSERT(d.message.data == NULL);
    rec_free(&r);
    return 0;
}

/* A stream of everything, decoded whole, byte by byte and split at every
 * point: the events must always be the same. */
static int test_every_split(void)
{
    static unsigned char buf[4096];
    char big[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    size_t n = client_frame(buf, FIN | WSFRAME_TEXT, big, sizeof(big)); /* 16-bit form */
    n += client_text(buf + n, WSFRAME_TEXT, "fr\xc3");                  /* é split */
    n += client_frame(buf + n, FIN | WSFRAME_PING, "ping", 4);
    n += client_text(buf + n, WSFRAME_CONTINUATION, "\xa9g");
    n += client_frame(buf + n, FIN | WSFRAME_PONG, "", 0);
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "ment");
    n += client_frame_ex(buf + n, FIN | WSFRAME_TEXT, true, 127, 5, "long5", 5);
    n += client_close(buf + n, 1001, "going away", 10);

    struct rec whole = {0};
    struct wsframe_error err = {0, NULL};
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &whole, &err), 0);
    TEST_ASSERT_INT(whole.n, 6);
    TEST_ASSERT_INT(whole.len[0], sizeof(big));
    TEST_ASSERT(memcmp(whole.data[0], big, sizeof(big)) == 0);
    TEST_ASSERT_STR(whole.data[1], "ping");
    TEST_ASSERT_INT(whole.opcode[2], WSFRAME_PONG);
    TEST_ASSERT_STR(whole.data[3], "fr\xc3\xa9gment");
    TEST_ASSERT_STR(whole.data[4], "long5");
    TEST_ASSERT_INT(whole.opcode[5], WSFRAME_CLOSE);
    TEST_ASSERT_INT(whole.close_code[5], 1001);
    TEST_ASSERT_STR(whole.data[5], "going away");

    /* One byte at a time, checking mid_frame at every byte. */
    struct wsframe_decoder d;
    struct rec r = {0};
    wsframe_decoder_init(&d, LIMIT);
    unsigned char *copy = xmalloc(n);
    memcpy(copy, buf, n);
    size_t first_len = 4 + 4 + sizeof(big);
    for (size_t i = 0; i < n; i++) {
        TEST_ASSERT_INT(wsframe_decode(&d, copy + i, 1, on_event, &r, &err), 0);
        if (i + 1 < first_len)
            TEST_ASSERT(wsframe_decoder_mid_frame(&d));
        if (i + 1 == first_len) {
            TEST_ASSERT(!wsframe_decoder_mid_frame(&d));
            TEST_ASSERT_INT(r.n, 1);
            TEST_ASSERT(d.message.data == NULL);
        }
    }
    free(copy);
    TEST_ASSERT(!wsframe_decoder_mid_frame(&d));
    TEST_ASSERT(rec_same(&whole, &r));
    wsframe_decoder_dispose(&d);
    rec_free(&r);

    /* Split in two at every point. */
    for (size_t split = 0; split <= n; split++) {
        wsframe_decoder_init(&d, LIMIT);
        copy = xmalloc(n);
        memcpy(copy, buf, n);
        TEST_ASSERT_INT(wsframe_decode(&d, copy, split, on_event, &r, &err), 0);
        TEST_ASSERT_INT(wsframe_decode(&d, copy + split, n - split, on_event, &r, &err), 0);
        free(copy);
        TEST_ASSERT(rec_same(&whole, &r));
        TEST_ASSERT(d.message.data == NULL);
        wsframe_decoder_dispose(&d);
        rec_free(&r);
    }
    TEST_ASSERT_INT(err.code, 0);
    rec_free(&whole);
    return 0;
}

static int test_length_forms(void)
{
    size_t big = 70000;
    unsigned char *payload = xmalloc(big);
    for (size_t i = 0; i < big; i++)
        payload[i] = (unsigned char)('A' + i % 50);
    unsigned char *buf = xmalloc(big + WSFRAME_HEADER_MAX);

    /* 16-bit: 126 and 65535 bytes. */
    size_t sizes[] = {126, 65535, 65536, 70000};
    for (size_t k = 0; k < ARRAY_LEN(sizes); k++) {
        size_t n = client_frame(buf, FIN | WSFRAME_TEXT, payload, sizes[k]);
        TEST_ASSERT_INT(n - sizes[k], sizes[k] <= 0xffff ? 8 : 14);
        TEST_ASSERT_INT(buf[1] & 0x7f, sizes[k] <= 0xffff ? 126 : 127);
        for (size_t step = 1; step <= n; step = step * 7 + 1) {
            struct wsframe_decoder d;
            struct wsframe_error err = {0, NULL};
            struct rec r = {0};
            wsframe_decoder_init(&d, LIMIT);
            TEST_ASSERT_INT(decode_steps(&d, buf, n, step, &r, &err), 0);
            TEST_ASSERT_INT(r.n, 1);
            TEST_ASSERT_INT(r.len[0], sizes[k]);
            TEST_ASSERT(memcmp(r.data[0], payload, sizes[k]) == 0);
            TEST_ASSERT(d.message.data == NULL);
            wsframe_decoder_dispose(&d);
            rec_free(&r);
        }
    }

    /* Longer forms than needed are accepted. */
    size_t n = client_frame_ex(buf, FIN | WSFRAME_TEXT, true, 126, 3, "abc", 3);
    n += client_frame_ex(buf + n, FIN | WSFRAME_PING, true, 0, 2, "hi", 2);
    struct rec r = {0};
    struct wsframe_error err = {0, NULL};
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 2);
    TEST_ASSERT_STR(r.data[0], "abc");
    rec_free(&r);
    free(buf);
    free(payload);
    return 0;
}

static int test_unmasked(void)
{
    unsigned char buf[64];
    size_t n = client_frame_ex(buf, FIN | WSFRAME_TEXT, false, 0, 2, "hi", 2);
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "client frames must be masked") == 0);
    n = client_frame_ex(buf, FIN | WSFRAME_PING, false, 0, 0, "", 0);
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "client frames must be masked") == 0);
    /* Refused from the first two bytes. */
    TEST_ASSERT(expect_error(buf, 2, LIMIT, 1002, "client frames must be masked") == 0);
    return 0;
}

static int test_reserved_bits(void)
{
    unsigned char buf[64];
    unsigned rsv[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < ARRAY_LEN(rsv); i++) {
        size_t n = client_text(buf, FIN | rsv[i] | WSFRAME_TEXT, "hi");
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "reserved bits set") == 0);
        n = client_frame(buf, FIN | rsv[i] | WSFRAME_PING, "", 0);
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "reserved bits set") == 0);
    }
    return 0;
}

static int test_unknown_opcodes(void)
{
    unsigned char buf[64];
    unsigned ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        size_t n = client_text(buf, FIN | ops[i], "x");
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "unknown opcode") == 0);
    }
    return 0;
}

static int test_control_rules(void)
{
    unsigned char buf[512];
    unsigned char payload[200] = {0};
    int ops[] = {WSFRAME_PING, WSFRAME_PONG, WSFRAME_CLOSE};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        /* 126 bytes: refused from the header, 16-bit or 64-bit form alike. */
        size_t n = client_frame(buf, FIN | (unsigned)ops[i], payload, 126);
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "control frame payload over 125 bytes") == 0);
        TEST_ASSERT(expect_error(buf, 2, LIMIT, 1002, "control frame payload over 125 bytes") == 0);
        n = client_frame_ex(buf, FIN | (unsigned)ops[i], true, 127, 5, "hello", 5);
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "control frame payload over 125 bytes") == 0);
        /* Without FIN. */
        n = client_frame(buf, (unsigned)ops[i], "", 0);
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "fragmented control frame") == 0);
    }
    /* 125 bytes is fine (the close frame's code 1000 and 123 bytes of reason). */
    memset(payload, 'r', sizeof(payload));
    size_t n = client_close(buf, 1000, payload, 123);
    struct rec r = {0};
    struct wsframe_error err = {0, NULL};
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_INT(r.len[0], 123);
    rec_free(&r);
    return 0;
}

static int test_fragment_order(void)
{
    unsigned char buf[128];
    size_t n = client_text(buf, FIN | WSFRAME_CONTINUATION, "x");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "continuation frame without a message") == 0);
    n = client_text(buf, WSFRAME_CONTINUATION, "x");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "continuation frame without a message") == 0);

    /* After a message ended, a continuation is again out of place. */
    n = client_text(buf, WSFRAME_TEXT, "a");
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "b");
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "c");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "continuation frame without a message") == 0);

    /* A new text frame while a message is open, with or without FIN. */
    n = client_text(buf, WSFRAME_TEXT, "a");
    n += client_text(buf + n, FIN | WSFRAME_TEXT, "b");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "new message inside a fragmented one") == 0);
    n = client_text(buf, WSFRAME_TEXT, "a");
    n += client_frame(buf + n, FIN | WSFRAME_PING, "", 0);
    n += client_text(buf + n, WSFRAME_TEXT, "b");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "new message inside a fragmented one") == 0);
    return 0;
}

static int test_binary(void)
{
    unsigned char buf[64];
    /* Header only, promising 1000 bytes that never come: refused already. */
    size_t n = client_frame_ex(buf, FIN | WSFRAME_BINARY, true, 0, 1000, "", 0);
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1003, "binary frames are not supported") == 0);
    n = client_frame(buf, WSFRAME_BINARY, "ab", 2);
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1003, "binary frames are not supported") == 0);
    /* Only from the complete header: the mask is still missing here. */
    struct wsframe_decoder d;
    struct wsframe_error err = {0, NULL};
    struct rec r = {0};
    wsframe_decoder_init(&d, LIMIT);
    TEST_ASSERT_INT(wsframe_decode(&d, buf, n - 3, on_event, &r, &err), 0);
    TEST_ASSERT_INT(wsframe_decode(&d, buf + n - 3, 1, on_event, &r, &err), 1003);
    TEST_ASSERT_INT(err.code, 1003);
    wsframe_decoder_dispose(&d);
    return 0;
}

static int test_message_size(void)
{
    unsigned char buf[512];
    unsigned char payload[200];
    memset(payload, 'x', sizeof(payload));
    struct rec r = {0};
    struct wsframe_error err = {0, NULL};

    /* A single frame: the limit itself passes, one more is refused from the
     * header alone (the payload is never sent here). */
    size_t n = client_frame(buf, FIN | WSFRAME_TEXT, payload, 100);
    TEST_ASSERT_INT(decode_once(buf, n, 100, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    rec_free(&r);
    n = client_frame_ex(buf, FIN | WSFRAME_TEXT, true, 0, 101, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1009, "message too large") == 0);
    n = client_frame_ex(buf, WSFRAME_TEXT, true, 0, 101, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1009, "message too large") == 0);
    n = client_frame_ex(buf, FIN | WSFRAME_TEXT, true, 127, (uint64_t)1 << 40, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1009, "message too large") == 0);
    n = client_frame_ex(buf, FIN | WSFRAME_TEXT, true, 127, ((uint64_t)1 << 63) - 1, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1009, "message too large") == 0);

    /* Fragments: 60 + 40 pass, 60 + 41 are refused at the second header. */
    n = client_frame(buf, WSFRAME_TEXT, payload, 60);
    n += client_frame(buf + n, FIN | WSFRAME_PING, "", 0);
    n += client_frame(buf + n, FIN | WSFRAME_CONTINUATION, payload, 40);
    TEST_ASSERT_INT(decode_once(buf, n, 100, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 2);
    TEST_ASSERT_INT(r.len[1], 100);
    rec_free(&r);
    n = client_frame(buf, WSFRAME_TEXT, payload, 60);
    n += client_frame(buf + n, WSFRAME_CONTINUATION, payload, 30);
    n += client_frame_ex(buf + n, FIN | WSFRAME_CONTINUATION, true, 0, 11, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1009, "message too large") == 0);

    /* Control frames do not count against the message. */
    n = client_frame(buf, WSFRAME_TEXT, payload, 100);
    n += client_frame(buf + n, FIN | WSFRAME_PING, payload, 100);
    n += client_frame(buf + n, FIN | WSFRAME_CONTINUATION, "", 0);
    TEST_ASSERT_INT(decode_once(buf, n, 100, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 2);
    rec_free(&r);

    /* A 64-bit length with its top bit set is a protocol error. */
    n = client_frame_ex(buf, FIN | WSFRAME_TEXT, true, 127, (uint64_t)1 << 63, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1002, "frame length has the top bit set") == 0);
    n = client_frame_ex(buf, FIN | WSFRAME_TEXT, true, 127, UINT64_MAX, "", 0);
    TEST_ASSERT(expect_error(buf, n, 100, 1002, "frame length has the top bit set") == 0);
    return 0;
}

static int test_utf8(void)
{
    unsigned char buf[256];
    struct rec r = {0};
    struct wsframe_error err = {0, NULL};

    size_t n = client_text(buf, FIN | WSFRAME_TEXT, "caf\xc3");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1007, "text is not valid UTF-8") == 0);
    n = client_text(buf, FIN | WSFRAME_TEXT, "\xed\xa0\x80"); /* a surrogate */
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1007, "text is not valid UTF-8") == 0);

    /* Split across fragments: a valid sequence passes, a broken one fails. */
    n = client_text(buf, WSFRAME_TEXT, "\xe2");
    n += client_text(buf + n, WSFRAME_CONTINUATION, "\x82");
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "\xac");
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_STR(r.data[0], "\xe2\x82\xac");
    rec_free(&r);
    n = client_text(buf, WSFRAME_TEXT, "ok \xe2\x82");
    n += client_frame(buf + n, FIN | WSFRAME_PING, "", 0);
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "x");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1007, "text is not valid UTF-8") == 0);
    n = client_text(buf, WSFRAME_TEXT, "\xf0\x9f");
    n += client_text(buf + n, FIN | WSFRAME_CONTINUATION, "");
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1007, "text is not valid UTF-8") == 0);

    /* A valid sequence split across reads of one frame. */
    n = client_text(buf, FIN | WSFRAME_TEXT, "\xf0\x9f\x98\x80!");
    struct wsframe_decoder d;
    wsframe_decoder_init(&d, LIMIT);
    TEST_ASSERT_INT(decode_steps(&d, buf, n, 8, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_STR(r.data[0], "\xf0\x9f\x98\x80!");
    TEST_ASSERT(d.message.data == NULL);
    wsframe_decoder_dispose(&d);
    rec_free(&r);
    return 0;
}

static int test_close(void)
{
    unsigned char buf[256];
    struct rec r = {0};
    struct wsframe_error err = {0, NULL};

    size_t n = client_frame(buf, FIN | WSFRAME_CLOSE, "", 0);
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_INT(r.opcode[0], WSFRAME_CLOSE);
    TEST_ASSERT_INT(r.close_code[0], WSFRAME_CLOSE_NO_STATUS);
    TEST_ASSERT_INT(r.len[0], 0);
    rec_free(&r);

    n = client_close(buf, 1000, "bye", 3);
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.close_code[0], 1000);
    TEST_ASSERT_STR(r.data[0], "bye");
    rec_free(&r);

    unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                        1010, 1011, 1012, 1014, 3000, 4999};
    for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
        n = client_close(buf, valid[i], "", 0);
        TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
        TEST_ASSERT_INT(r.n, 1);
        TEST_ASSERT_INT(r.close_code[0], valid[i]);
        TEST_ASSERT_INT(r.len[0], 0);
        rec_free(&r);
    }
    unsigned invalid[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < ARRAY_LEN(invalid); i++) {
        n = client_close(buf, invalid[i], "", 0);
        TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "invalid close code") == 0);
    }
    n = client_frame(buf, FIN | WSFRAME_CLOSE, "\x03", 1);
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1002, "close payload of 1 byte") == 0);
    n = client_close(buf, 1000, "\xff", 1);
    TEST_ASSERT(expect_error(buf, n, LIMIT, 1007, "close reason is not valid UTF-8") == 0);
    n = client_close(buf, 1000, "h\xc3\xa9", 3);
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_STR(r.data[0], "h\xc3\xa9");
    rec_free(&r);

    /* A close between fragments is delivered at once. */
    n = client_text(buf, WSFRAME_TEXT, "half");
    n += client_close(buf + n, 1001, "", 0);
    TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 0);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT_INT(r.close_code[0], 1001);
    rec_free(&r);
    TEST_ASSERT_INT(err.code, 0);
    return 0;
}

static int test_callback_stop(void)
{
    unsigned char buf[128];
    size_t n = client_text(buf, FIN | WSFRAME_TEXT, "one");
    n += client_frame(buf + n, FIN | WSFRAME_PING, "p", 1);
    n += client_text(buf + n, FIN | WSFRAME_TEXT, "three");
    for (int at = 1; at <= 3; at++) {
        struct rec r = {0};
        r.stop_at = at;
        r.stop_rc = 40 + at;
        struct wsframe_error err = {0, NULL};
        TEST_ASSERT_INT(decode_once(buf, n, LIMIT, &r, &err), 40 + at);
        TEST_ASSERT_INT(r.n, at); /* nothing after the stop */
        TEST_ASSERT_INT(err.code, 0);
        TEST_ASSERT(err.reason == NULL);
        rec_free(&r);
    }
    /* A negative value is passed through as well, also from a split message. */
    struct wsframe_decoder d;
    struct wsframe_error err = {0, NULL};
    struct rec r = {0};
    r.stop_at = 1;
    r.stop_rc = -5;
    wsframe_decoder_init(&d, LIMIT);
    TEST_ASSERT_INT(decode_steps(&d, buf, n, 3, &r, &err), -5);
    TEST_ASSERT_INT(r.n, 1);
    TEST_ASSERT(d.message.data == NULL);
    wsframe_decoder_dispose(&d);
    rec_free(&r);
    return 0;
}

static int test_after_error(void)
{
    unsigned char buf[64];
    size_t n = client_text(buf, FIN | 0x40 | WSFRAME_TEXT, "x");
    struct wsframe_decoder d;
    struct wsframe_error err = {0, NULL};
    struct rec r = {0};
    wsframe_decoder_init(&d, LIMIT);
    TEST_ASSERT_INT(wsframe_decode(&d, buf, 1, on_event, &r, &err), 0);
    TEST_ASSERT_INT(wsframe_decode(&d, buf + 1, n - 1, on_event, &r, &err), 1002);
    TEST_ASSERT(!wsframe_decoder_mid_frame(&d));
    /* Later input is refused too, never parsed from the middle of a frame. */
    n = client_text(buf, FIN | WSFRAME_TEXT, "y");
    TEST_ASSERT_INT(wsframe_decode(&d, buf, n, on_event, &r, &err), 1002);
    TEST_ASSERT_INT(r.n, 0);
    wsframe_decoder_dispose(&d);
    wsframe_decoder_dispose(NULL);
    return 0;
}

static int test_encode_header(void)
{
    unsigned char h[10];
    TEST_ASSERT_INT(wsframe_encode_header(h, WSFRAME_TEXT, 0), 2);
    TEST_ASSERT_INT(h[0], 0x81);
    TEST_ASSERT_INT(h[1], 0);
    TEST_ASSERT_INT(wsframe_encode_header(h, WSFRAME_PONG, 125), 2);
    TEST_ASSERT_INT(h[0], 0x8a);
    TEST_ASSERT_INT(h[1], 125);
    TEST_ASSERT_INT(wsframe_encode_header(h, WSFRAME_TEXT, 126), 4);
    TEST_ASSERT_INT(h[1], 126);
    TEST_ASSERT_INT(h[2], 0);
    TEST_ASSERT_INT(h[3], 126);
    TEST_ASSERT_INT(wsframe_encode_header(h, WSFRAME_CLOSE, 65535), 4);
    TEST_ASSERT_INT(h[0], 0x88);
    TEST_ASSERT_INT(h[1], 126);
    TEST_ASSERT_INT(h[2], 0xff);
    TEST_ASSERT_INT(h[3], 0xff);
    TEST_ASSERT_INT(wsframe_encode_header(h, WSFRAME_TEXT, 65536), 10);
    TEST_ASSERT_INT(h[1], 127);
    static const unsigned char len65536[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    TEST_ASSERT(memcmp(h + 2, len65536, 8) == 0);
    TEST_ASSERT_INT(wsframe_encode_header(h, WSFRAME_TEXT, (size_t)0x123456789a), 10);
    static const unsigned char len_big[8] = {0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a};
    TEST_ASSERT(memcmp(h + 2, len_big, 8) == 0);
    return 0;
}

TEST_MAIN(TEST_CASE(test_struct_size), TEST_CASE(test_single_text_zero_copy),
          TEST_CASE(test_empty_messages), TEST_CASE(test_ping_pong),
          TEST_CASE(test_fragmented_with_controls), TEST_CASE(test_every_split),
          TEST_CASE(test_length_forms), TEST_CASE(test_unmasked), TEST_CASE(test_reserved_bits),
          TEST_CASE(test_unknown_opcodes), TEST_CASE(test_control_rules),
          TEST_CASE(test_fragment_order), TEST_CASE(test_binary), TEST_CASE(test_message_size),
          TEST_CASE(test_utf8), TEST_CASE(test_close), TEST_CASE(test_callback_stop),
          TEST_CASE(test_after_error), TEST_CASE(test_encode_header))
