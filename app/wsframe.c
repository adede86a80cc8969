/* wsframe: the incremental RFC 6455 decoder of client frames and the header
 * encoder of server frames. The decoder is a small state machine over one
 * frame at a time: header bytes are gathered in d->header, payload bytes are
 * unmasked in place in the caller's buffer, and only what is split over reads
 * or fragments is copied (control payloads into d->control, text into
 * d->message, which is freed as soon as its message has been delivered). */
#include "wsframe.h"

#include <string.h>

#define WS_FIN 0x80
#define WS_RSV 0x70
#define WS_OPCODE 0x0f
#define WS_MASKED 0x80
#define WS_LEN7 0x7f
#define WS_LEN16 126   /* a 16-bit length follows */
#define WS_LEN64 127   /* a 64-bit length follows */
#define WS_FAILED 0xff /* header_need of a decoder that refused its input */

/* ------------------------------------------------------------------ helpers */

/* Refuse the input with a close code. The decoder frees its message and
 * refuses every later call too (1002), rather than parse from the middle of
 * a frame: decoding is not resumed after an error. */
static int fail(struct wsframe_decoder *d, struct wsframe_error *err, int code, const char *reason)
{
    util_buf_dispose(&d->message);
    d->in_message = false;
    d->in_payload = false;
    d->header_have = 0;
    d->header_need = WS_FAILED;
    if (err) {
        err->code = code;
        err->reason = reason;
    }
    return code;
}

static bool is_control(unsigned opcode)
{
    return (opcode & 0x8) != 0;
}

static bool is_known_opcode(unsigned opcode)
{
    switch (opcode) {
    case WSFRAME_CONTINUATION:
    case WSFRAME_TEXT:
    case WSFRAME_BINARY:
    case WSFRAME_CLOSE:
    case WSFRAME_PING:
    case WSFRAME_PONG:
        return true;
    default:
        return false;
    }
}

/* RFC 6455 section 7.4: codes a peer may send (1012-1014 are IANA-registered
 * since; 1004-1006 and 1015 must never appear on the wire). */
static bool is_valid_close_code(unsigned code)
{
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}

/* XOR n bytes with the frame's mask, p being at offset bytes into the payload. */
static void unmask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset)
{
    unsigned char m[4];
    for (int i = 0; i < 4; i++)
        m[i] = mask[(offset + (unsigned)i) & 3];
    uint32_t m32;
    memcpy(&m32, m, sizeof(m32));
    uint64_t m64 = (uint64_t)m32 << 32 | m32; /* both halves equal: endian-neutral */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        w ^= m64;
        memcpy(p + i, &w, sizeof(w));
    }
    for (; i < n; i++)
        p[i] ^= m[i & 3];
}

/* Back to "expecting a header"; the message state is left alone. */
static void frame_reset(struct wsframe_decoder *d)
{
    d->header_have = 0;
    d->header_need = 0;
    d->in_payload = false;
    d->payload_len = 0;
    d->payload_have = 0;
}

/* ------------------------------------------------------------------ header */

/* The first two bytes are in: check everything they decide and work out the
 * header's full length. */
static int header_start(struct wsframe_decoder *d, struct wsframe_error *err)
{
    unsigned b0 = d->header[0], b1 = d->header[1];
    unsigned opcode = b0 & WS_OPCODE;
    unsigned len7 = b1 & WS_LEN7;

    if (b0 & WS_RSV)
        return fail(d, err, 1002, "reserved bits set");
    if (!is_known_opcode(opcode))
        return fail(d, err, 1002, "unknown opcode");
    if (!(b1 & WS_MASKED))
        return fail(d, err, 1002, "client frames must be masked");
    d->opcode = (uint8_t)opcode;
    d->fin = (b0 & WS_FIN) != 0;
    if (is_control(opcode)) {
        if (!d->fin)
            return fail(d, err, 1002, "fragmented control frame");
        if (len7 > WSFRAME_CONTROL_MAX)
            return fail(d, err, 1002, "control frame payload over 125 bytes");
    } else if (opcode == WSFRAME_CONTINUATION) {
        if (!d->in_message)
            return fail(d, err, 1002, "continuation frame without a message");
    } else if (d->in_message) {
        return fail(d, err, 1002, "new message inside a fragmented one");
    }
    d->header_need = (uint8_t)(2 + (len7 == WS_LEN16 ? 2 : len7 == WS_LEN64 ? 8 : 0) + 4);
    return 0;
}

/* The whole header is in: read the length and the mask, refuse binary and
 * oversize messages before any of their payload is read. */
static int header_end(struct wsframe_decoder *d, struct wsframe_error *err)
{
    const unsigned char *h = d->header;
    unsigned len7 = h[1] & WS_LEN7;
    uint64_t len = len7;
    size_t at = 2;

    if (len7 == WS_LEN16) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len7 == WS_LEN64) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        if (len >> 63)
            return fail(d, err, 1002, "frame length has the top bit set");
    }
    if (d->opcode == WSFRAME_BINARY)
        return fail(d, err, 1003, "binary frames are not supported");
    if (!is_control(d->opcode)) {
        size_t have = d->opcode == WSFRAME_CONTINUATION ? d->message.len : 0;
        /* have <= max_message always holds: every accepted frame was checked. */
        if (len > d->max_message - have)
            return fail(d, err, 1009, "message too large");
        if (d->opcode == WSFRAME_TEXT && !d->fin)
            d->in_message = true;
    }
    memcpy(d->mask, h + at, sizeof(d->mask));
    d->payload_len = len;
    d->payload_have = 0;
    d->header_have = 0;
    d->header_need = 0;
    d->in_payload = true;
    return 0;
}

/* --------------------------------------------------------------- frame end */

static int deliver_control(struct wsframe_decoder *d, const unsigned char *data, size_t len,
                           wsframe_event_fn fn, void *ctx, struct wsframe_error *err)
{
    struct wsframe_event ev = {d->opcode, len ? (const char *)data : "", len, 0};

    if (d->opcode == WSFRAME_CLOSE) {
        if (len == 1)
            return fail(d, err, 1002, "close payload of 1 byte");
        if (len == 0) {
            ev.close_code = WSFRAME_CLOSE_NO_STATUS;
        } else {
            unsigned code = (unsigned)data[0] << 8 | data[1];
            if (!is_valid_close_code(code))
                return fail(d, err, 1002, "invalid close code");
            ev.close_code = (int)code;
            ev.len = len - 2;
            ev.data = ev.len ? (const char *)data + 2 : "";
            if (!util_utf8_is_valid(ev.data, ev.len))
                return fail(d, err, 1007, "close reason is not valid UTF-8");
        }
    }
    frame_reset(d);
    return fn ? fn(ctx, &ev) : 0;
}

/* The last frame of a text message has ended; data is its whole payload when
 * it came in one piece (zero-copy), else NULL and the message is d->message. */
static int deliver_text(struct wsframe_decoder *d, const unsigned char *data, size_t len,
                        wsframe_event_fn fn, void *ctx, struct wsframe_error *err)
{
    struct wsframe_event ev = {WSFRAME_TEXT, (const char *)data, len, 0};

    if (!data) {
        ev.data = d->message.data;
        ev.len = d->message.len;
    }
    if (ev.len == 0)
        ev.data = ""; /* never NULL, nor a pointer past the caller's input */
    if (!util_utf8_is_valid(ev.data, ev.len))
        return fail(d, err, 1007, "text is not valid UTF-8");
    frame_reset(d);
    d->in_message = false;
    int rc = fn ? fn(ctx, &ev) : 0;
    util_buf_dispose(&d->message); /* an idle decoder holds no heap memory */
    return rc;
}

/* ----------------------------------------------------------------- the API */

void wsframe_decoder_init(struct wsframe_decoder *d, size_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->max_message = max_message;
    util_buf_init(&d->message);
}

void wsframe_decoder_dispose(struct wsframe_decoder *d)
{
    if (!d)
        return;
    util_buf_dispose(&d->message);
    frame_reset(d);
    d->in_message = false;
}

bool wsframe_decoder_mid_frame(const struct wsframe_decoder *d)
{
    return d->header_have > 0 || d->in_payload || d->in_message;
}

int wsframe_decode(struct wsframe_decoder *d, unsigned char *data, size_t len, wsframe_event_fn fn,
                   void *ctx, struct wsframe_error *err)
{
    size_t pos = 0;

    if (d->header_need == WS_FAILED)
        return fail(d, err, 1002, "input after a protocol error");
    for (;;) {
        if (!d->in_payload) {
            if (pos == len)
                return 0;
            if (d->header_have < 2) {
                size_t n = 2u - d->header_have;
                n = n < len - pos ? n : len - pos;
                memcpy(d->header + d->header_have, data + pos, n);
                d->header_have = (uint8_t)(d->header_have + n);
                pos += n;
                if (d->header_have < 2)
                    return 0;
                int rc = header_start(d, err);
                if (rc)
                    return rc;
            }
            size_t n = (size_t)(d->header_need - d->header_have);
            n = n < len - pos ? n : len - pos;
            memcpy(d->header + d->header_have, data + pos, n);
            d->header_have = (uint8_t)(d->header_have + n);
            pos += n;
            if (d->header_have < d->header_need)
                return 0;
            int rc = header_end(d, err);
            if (rc)
                return rc;
        }

        /* Payload: whatever of it this read holds (possibly nothing). */
        uint64_t left = d->payload_len - d->payload_have;
        size_t n = left < len - pos ? (size_t)left : len - pos;
        if (n == 0 && left > 0)
            return 0;
        unsigned char *p = data + pos;
        unmask(p, n, d->mask, d->payload_have);
        pos += n;
        bool whole = d->payload_have == 0 && n == d->payload_len; /* all in this read */

        if (is_control(d->opcode)) {
            if (!whole)
                memcpy(d->control + d->payload_have, p, n); /* payload_len <= 125 */
            d->payload_have += n;
            if (d->payload_have < d->payload_len)
                return 0;
            int rc =
                deliver_control(d, whole ? p : d->control, (size_t)d->payload_len, fn, ctx, err);
            if (rc)
                return rc;
            continue;
        }

        /* Text: a one-frame message wholly in this read is delivered in place. */
        bool in_place = whole && d->fin && d->opcode == WSFRAME_TEXT;
        if (!in_place && n > 0)
            util_buf_append(&d->message, p, n);
        d->payload_have += n;
        if (d->payload_have < d->payload_len)
            return 0;
        if (!d->fin) {
            frame_reset(d); /* the message goes on in a continuation frame */
            continue;
        }
        int rc = deliver_text(d, in_place ? p : NULL, (size_t)d->payload_len, fn, ctx, err);
        if (rc)
            return rc;
    }
}

size_t wsframe_encode_header(unsigned char *out, int opcode, size_t payload_len)
{
    out[0] = (unsigned char)(WS_FIN | (opcode & WS_OPCODE));
    if (payload_len < WS_LEN16) {
        out[1] = (unsigned char)payload_len;
        return 2;
    }
    if (payload_len <= 0xffff) {
        out[1] = WS_LEN16;
        out[2] = (unsigned char)(payload_len >> 8);
        out[3] = (unsigned char)payload_len;
        return 4;
    }
    out[1] = WS_LEN64;
    uint64_t len = payload_len;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}
