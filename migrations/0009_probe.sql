-- 0009_probe: one row the writer rewrites, after a commit failed (a full
-- disk, a file size limit), to learn when commits work again: /readyz says
-- 503 from the failure until such a write succeeds.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ts INTEGER NOT NULL
);
