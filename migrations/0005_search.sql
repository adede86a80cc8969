-- 0005_search: full-text search. An FTS5 index with the trigram tokenizer
-- holds the current text of every live message (not its changes, not the
-- server's own logs), so any substring of three or more characters is found,
-- in any script, Chinese, Japanese and Korean included, case-insensitively.
--
-- The index's rowid is ts * 65536 + a slot, so walking it by rowid descending
-- gives the newest messages first and a page stops as soon as it is full,
-- however many messages match. The writer (store.c) inserts a message's row in
-- the transaction that stores or edits it, trying the slot id % 65536 first:
-- the messages of one room in one millisecond keep their order, and two nodes
-- number a message alike unless two rooms' messages of one millisecond collide. The triggers below take a row out
-- whenever its message's text changes or the message leaves the log, in the
-- same transaction, whatever statement does it (an edit, a delete, an expiry).
CREATE VIRTUAL TABLE search USING fts5(
    message_text,
    message_room UNINDEXED,
    message_id UNINDEXED,
    message_user UNINDEXED, -- so that room= and from= filter without a join
    tokenize = 'trigram'
);

CREATE TRIGGER search_forget_changed AFTER UPDATE OF text ON messages
WHEN old.kind = 'message'
BEGIN
    DELETE FROM search WHERE rowid BETWEEN old.ts * 65536 AND old.ts * 65536 + 65535
        AND message_room = old.room AND message_id = old.id;
END;

CREATE TRIGGER search_forget_removed AFTER DELETE ON messages
WHEN old.kind = 'message'
BEGIN
    DELETE FROM search WHERE rowid BETWEEN old.ts * 65536 AND old.ts * 65536 + 65535
        AND message_room = old.room AND message_id = old.id;
END;

-- Backfill: the slots of one millisecond in (room, id) order.
INSERT INTO search (rowid, message_text, message_room, message_id, message_user)
    SELECT ts * 65536 + row_number() OVER (PARTITION BY ts ORDER BY room, id) - 1, text, room, id,
        user
    FROM messages
    WHERE kind = 'message' AND deleted_by IS NULL AND text <> '' AND ts >= 0;
