-- 0001_init: the message log. One row per message; (room, id) is the
-- identity, so storing a message twice stores it once. The clustered
-- primary key serves every history page; the partial index serves the
-- idempotency lookup of a client `ref` (PROTOCOL.md, 5 minute window).
CREATE TABLE messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    ts INTEGER NOT NULL,
    ref TEXT,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;

CREATE INDEX messages_ref ON messages (room, user, ref) WHERE ref IS NOT NULL;
