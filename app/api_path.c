/* api_path: the REST paths taken apart (see api_path.h). */
#include "api_path.h"

#include <string.h>

#include "proto.h"
#include "util.h"

const char *api_path_split_room(const char *uri, char *room, size_t room_size)
{
    const char *prefix = "/api/rooms/";
    if (strncmp(uri, prefix, strlen(prefix)) != 0)
        return NULL;
    const char *start = uri + strlen(prefix);
    const char *slash = strchr(start, '/');
    if (!slash || (size_t)(slash - start) >= room_size)
        return NULL;
    memcpy(room, start, (size_t)(slash - start));
    room[slash - start] = '\0';
    return slash + 1;
}

uint64_t api_path_id(const char *s, size_t len)
{
    char digits[20];
    int64_t id;
    if (len == 0 || len >= sizeof(digits) || strspn(s, "0123456789") < len)
        return 0;
    memcpy(digits, s, len);
    digits[len] = '\0';
    return util_parse_int64(digits, 1, (int64_t)PROTO_ID_MAX, &id) == 0 ? (uint64_t)id : 0;
}

enum api_path_message api_path_message(const char *rest, uint64_t *id, const char **emoji)
{
    const char *slash = strchr(rest, '/');
    const char *reactions = "/reactions/";
    *emoji = NULL;
    *id = api_path_id(rest, slash ? (size_t)(slash - rest) : strlen(rest));
    if (*id == 0)
        return API_PATH_NO_ID;
    if (!slash)
        return API_PATH_MESSAGE;
    if (strncmp(slash, reactions, strlen(reactions)) == 0 && slash[strlen(reactions)] != '\0') {
        *emoji = slash + strlen(reactions);
        return API_PATH_REACTION;
    }
    return API_PATH_OTHER;
}

bool api_path_room(const char *uri, char *room, size_t room_size)
{
    const char *prefix = "/api/rooms/";
    if (strncmp(uri, prefix, strlen(prefix)) != 0)
        return false;
    size_t len = strlen(uri + strlen(prefix));
    if (len == 0 || len >= room_size || strchr(uri + strlen(prefix), '/'))
        return false;
    memcpy(room, uri + strlen(prefix), len + 1);
    return true;
}
