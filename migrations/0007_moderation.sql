-- 0007_moderation: mutes and bans of a room. A moderator's `mute`, `unmute`,
-- `ban` and `unban` events are rows of the room's own log (messages) whose
-- record names the user; the writer applies them here in the same
-- transaction. Per (room, user) and per sanction, the event with the highest
-- id decides, whatever order the events arrive in.
CREATE TABLE room_sanctions (
    room TEXT NOT NULL,
    user_key TEXT NOT NULL,            -- the name in ASCII lower case
    user TEXT NOT NULL,                -- as the latest event spelled it
    muted INTEGER NOT NULL DEFAULT 0,
    mute_id INTEGER NOT NULL DEFAULT 0, -- the mute or unmute event deciding muted
    mute_by TEXT,
    mute_ts INTEGER,
    banned INTEGER NOT NULL DEFAULT 0,
    ban_id INTEGER NOT NULL DEFAULT 0,  -- the ban or unban event deciding banned
    ban_by TEXT,
    ban_ts INTEGER,
    PRIMARY KEY (room, user_key)
) WITHOUT ROWID;
