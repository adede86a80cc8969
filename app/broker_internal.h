/* broker_internal: what the files of the Valkey backend (broker_valkey.c and
 * broker_decode.c) share and broker.h does not export: the decoders of the
 * events and stream entries read from Valkey. */
#ifndef TURBOCHAT_BROKER_INTERNAL_H
#define TURBOCHAT_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

struct chat_msg;
struct valkey_reply;

/* An event as the publish script PUBLISHes it on turbochat:messages (a JSON
 * object of buf[0..len)): a new message the caller frees with
 * chat_msg_free, or NULL when it is malformed. Any thread. */
struct chat_msg *broker__decode_event(const char *buf, size_t len);

/* One entry [id, [field, value, ...]] of room's replay window as a new
 * message (the caller frees it), or NULL when malformed. Any thread. */
struct chat_msg *broker__decode_entry(const char *room, const struct valkey_reply *entry);

/* Copy the stream fields u, t, ts, r, x (a flat key/value array) into msg;
 * false when x is malformed or repeated. */
bool broker__apply_fields(struct chat_msg *msg, const struct valkey_reply *fields);

#endif
