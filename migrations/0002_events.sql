-- 0002_events: messages change. Every change of a message (edit, delete,
-- react, unreact) is a row of messages too, with the next id of the room, its
-- kind and the message it targets, so the log stays one gapless sequence that
-- `since`, gap repair and catch-up replay as they are. The writer applies each
-- change to its target in the same transaction; a message row therefore holds
-- its current state (text, edited_ts, deleted_by), which every history page
-- reads without folding events. Rules (PROTOCOL.md, "Message ids and events"),
-- each independent of the order rows arrive in:
--   edit      sets text and edited_ts when its id is above edit_id;
--   delete    is final: erases the text of the message, of its edits and of
--             the quotes replying to it, and drops its reactions;
--   reaction  one row per (message, emoji, user): the event with the highest
--             id decides whether it is present.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
ALTER TABLE messages ADD COLUMN target INTEGER;
ALTER TABLE messages ADD COLUMN emoji TEXT;
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN reply_user TEXT;
ALTER TABLE messages ADD COLUMN reply_text TEXT;
ALTER TABLE messages ADD COLUMN mentions TEXT; -- names, one per line; NULL when none
ALTER TABLE messages ADD COLUMN edited_ts INTEGER;
ALTER TABLE messages ADD COLUMN edit_id INTEGER; -- the edit that gave the text
ALTER TABLE messages ADD COLUMN deleted_by TEXT;

CREATE INDEX messages_target ON messages (room, target) WHERE target IS NOT NULL;
CREATE INDEX messages_reply ON messages (room, reply_to) WHERE reply_to IS NOT NULL;

CREATE TABLE reactions (
    room TEXT NOT NULL,
    target INTEGER NOT NULL,
    emoji TEXT NOT NULL,
    user TEXT NOT NULL,
    event_id INTEGER NOT NULL, -- the react or unreact that decided present
    present INTEGER NOT NULL,
    PRIMARY KEY (room, target, emoji, user)
) WITHOUT ROWID;

-- Who has written in a room: the names a mention may name.
CREATE TABLE room_users (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX room_users_nocase ON room_users (room, user COLLATE NOCASE);
INSERT OR IGNORE INTO room_users (room, user) SELECT DISTINCT room, user FROM messages;
