-- 0006_retention: messages expire. A room's `retention` events (its own log)
-- set how long its messages are kept, the event with the highest id winning;
-- without one (or after one with days null) the deployment's retention_days
-- holds. Each node purges by the same rule (store.c, "retention"): the
-- message-like events (message, edit, delete, react, unreact) up to the
-- highest such id whose ts is before now - retention leave the log with what
-- they made (reactions, mentions). Room-state events and the server's own
-- logs ('.'-names) stay. log_heads records where each room's history begins,
-- so ids are never given out again and late copies of expired events are
-- not stored again.
CREATE TABLE room_retention (
    room TEXT PRIMARY KEY,
    days REAL,                 -- NULL: the deployment's retention_days
    event_id INTEGER NOT NULL  -- the retention event that decided
) WITHOUT ROWID;

CREATE TABLE log_heads (
    room TEXT PRIMARY KEY,
    begins INTEGER NOT NULL    -- the lowest id history may still serve
) WITHOUT ROWID;

-- The expiry cutoff of a room: its newest message-like event older than a
-- time, from the index alone, without walking the whole room.
CREATE INDEX messages_ts ON messages (room, ts, kind);

-- The mentions of one message, for its expiry (and its delete), without
-- walking every mention of the room.
CREATE INDEX message_mentions_id ON message_mentions (room, id);
