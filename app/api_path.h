/* api_path: the paths of the REST API (docs/PROTOCOL.md "REST") taken apart
 * without a request: the room of /api/rooms/{room}/..., a message id, and
 * what follows messages/. Pure functions, any thread; http_api.c routes on
 * them and tests/fuzz/fuzz_rest.c fuzzes them. */
#ifndef TURBOCHAT_API_PATH_H
#define TURBOCHAT_API_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a path after "/api/rooms/{room}/messages/" names. */
enum api_path_message {
    API_PATH_NO_ID = 0, /* {id} is not a message id */
    API_PATH_MESSAGE,   /* {id} */
    API_PATH_REACTION,  /* {id}/reactions/{emoji}, emoji not empty */
    API_PATH_OTHER,     /* {id}/anything else */
};

/* /api/rooms/{room}/{what}: copies room into room[0..room_size) and returns
 * what (a pointer into uri), or NULL when uri is not such a path or the room
 * does not fit. The room is not validated. */
const char *api_path_split_room(const char *uri, char *room, size_t room_size);

/* /api/rooms/{room} alone: copies room into room[0..room_size), or false when
 * uri is not such a path or the room does not fit. Not validated. */
bool api_path_room(const char *uri, char *room, size_t room_size);

/* A message id of a path, s[0..len): digits only, 1 to 2^53 - 1; 0 when not one. */
uint64_t api_path_id(const char *s, size_t len);

/* rest, what follows "messages/": *id is the message's (0 with
 * API_PATH_NO_ID); *emoji points into rest with API_PATH_REACTION. */
enum api_path_message api_path_message(const char *rest, uint64_t *id, const char **emoji);

#endif
