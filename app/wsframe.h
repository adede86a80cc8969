/* wsframe: RFC 6455 framing on the server side, with no I/O and no threads:
 * an incremental decoder of client frames that enforces every rule of the
 * RFC (masking, RSV bits, opcodes, control-frame size and fragmentation,
 * close payloads, UTF-8 of text messages, the message size limit), and the
 * header encoder of server frames. The event loops own one decoder per
 * connection; the fuzz target drives it directly. */
#ifndef TURBOCHAT_WSFRAME_H
#define TURBOCHAT_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum wsframe_opcode {
    WSFRAME_CONTINUATION = 0x0,
    WSFRAME_TEXT = 0x1,
    WSFRAME_BINARY = 0x2,
    WSFRAME_CLOSE = 0x8,
    WSFRAME_PING = 0x9,
    WSFRAME_PONG = 0xA,
};

#define WSFRAME_CONTROL_MAX 125      /* payload bytes of a control frame */
#define WSFRAME_HEADER_MAX 14        /* 2 + 8 extended length + 4 mask */
#define WSFRAME_CLOSE_NO_STATUS 1005 /* a close frame without a payload */

/* What a complete message or control frame delivers. data points into the
 * caller's input or the decoder's buffer and is valid only during the call. */
struct wsframe_event {
    int opcode;       /* WSFRAME_TEXT (a whole message), _PING, _PONG or _CLOSE */
    const char *data; /* unmasked payload; for CLOSE the reason (after the code) */
    size_t len;
    int close_code; /* CLOSE: the peer's code, WSFRAME_CLOSE_NO_STATUS when none */
};

/* Called once per event; return 0 to go on, anything else stops decoding and
 * is returned by wsframe_decode. */
typedef int (*wsframe_event_fn)(void *ctx, const struct wsframe_event *ev);

/* Why decoding failed: the close code to send and a reason for a person. */
struct wsframe_error {
    int code;           /* 1002, 1003, 1007 or 1009 */
    const char *reason; /* static string, at most 60 bytes */
};

/* One connection's decoder state. Small while idle: a message buffer is
 * allocated only while a message is split over several reads or frames. */
struct wsframe_decoder {
    size_t max_message; /* payload bytes of a whole (reassembled) data message */
    unsigned char header[WSFRAME_HEADER_MAX];
    uint8_t header_have;   /* bytes of the current header received */
    uint8_t header_need;   /* bytes the current header has, once known */
    uint8_t opcode;        /* of the current frame */
    bool fin;              /* of the current frame */
    bool in_payload;       /* the header is complete, payload bytes follow */
    bool in_message;       /* a fragmented text message is being assembled */
    uint64_t payload_len;  /* of the current frame */
    uint64_t payload_have; /* bytes of it received */
    unsigned char mask[4];
    struct util_buf message;                    /* text payload split over reads or frames */
    unsigned char control[WSFRAME_CONTROL_MAX]; /* control payload split over reads */
};

/* Start decoding with a message limit in bytes. Free with wsframe_decoder_dispose. */
void wsframe_decoder_init(struct wsframe_decoder *d, size_t max_message);
void wsframe_decoder_dispose(struct wsframe_decoder *d);

/* Feed len bytes (unmasked in place, so data must be writable). Calls fn for
 * every complete text message and control frame, in order. Returns 0 when all
 * bytes were consumed; a positive close code with *err filled when the peer
 * broke the protocol (decoding must not be resumed); or the first non-zero
 * value fn returned. Binary messages are refused with 1003 from their header,
 * and oversize ones with 1009 before their payload is read. */
int wsframe_decode(struct wsframe_decoder *d, unsigned char *data, size_t len, wsframe_event_fn fn,
                   void *ctx, struct wsframe_error *err);

/* True while a frame, or a fragmented message, has been started but not
 * finished (a stalled or trickling sender). */
bool wsframe_decoder_mid_frame(const struct wsframe_decoder *d);

/* Write the header of an unmasked server frame with fin set into out (at
 * least 10 bytes); returns its length. */
size_t wsframe_encode_header(unsigned char *out, int opcode, size_t payload_len);

#endif
