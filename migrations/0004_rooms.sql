-- 0004_rooms: private rooms, direct messages and read state (auth =
-- accounts). A room's first event `room` says whether it is private (and a
-- DM); `member` events add, remove or promote its members; `closed` closes
-- it: all are rows of the room's own log (messages), applied here by the
-- writer in the same transaction. Read state is the `read` events of each
-- account's log '.read.<name>', applied as the highest id read.
CREATE TABLE rooms (
    name TEXT PRIMARY KEY,
    private INTEGER NOT NULL,
    dm INTEGER NOT NULL,
    creator TEXT NOT NULL,
    created INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Per (room, member): the member event with the highest id decides.
CREATE TABLE room_members (
    room TEXT NOT NULL,
    user_key TEXT NOT NULL, -- the name in ASCII lower case
    user TEXT NOT NULL,
    role TEXT NOT NULL,     -- 'owner' or 'member'
    present INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (room, user_key)
) WITHOUT ROWID;
CREATE INDEX room_members_user ON room_members (user_key) WHERE present = 1;

CREATE TABLE read_state (
    user_key TEXT NOT NULL,
    room TEXT NOT NULL,
    last_read INTEGER NOT NULL,
    PRIMARY KEY (user_key, room)
) WITHOUT ROWID;

-- Who each message mentions, to count a person's unread mentions.
CREATE TABLE message_mentions (
    room TEXT NOT NULL,
    user_key TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (room, user_key, id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO message_mentions (room, user_key, id)
    SELECT m.room, lower(j.value), m.id
    FROM messages m, json_each('["' || replace(replace(replace(m.mentions, '\', '\\'), '"', '\"'),
                                               char(10), '","') || '"]') j
    WHERE m.mentions IS NOT NULL AND m.kind = 'message';
