-- 0003_accounts: the people of auth = accounts. Their events are rows of
-- messages in the log '.accounts' (kinds account, session, signout,
-- signout_all, invite; the record as JSON in text), replicated and replayed
-- like any room; the writer applies each to these tables, by rules that give
-- the same state in any arrival order.
--   account      the whole record; the event with the highest id wins. The
--                account whose first event has the lowest id is the first
--                account of the deployment: admin unless a role was given.
--   session      a session and the hashes of its cookie and token.
--   signout      ends one session; signout_all every session of an account
--                begun before it.
CREATE TABLE accounts (
    name_key TEXT PRIMARY KEY, -- the name in ASCII lower case: names are unique so
    name TEXT NOT NULL,
    hash TEXT NOT NULL,        -- Argon2id, encoded
    role TEXT,                 -- 'admin' or 'user'; NULL: by the first-account rule
    display TEXT NOT NULL,
    color TEXT NOT NULL,
    disabled INTEGER NOT NULL,
    created INTEGER NOT NULL,  -- ms
    created_id INTEGER NOT NULL, -- id of the account's first event
    event_id INTEGER NOT NULL,   -- id of the event that gave the record
    signout_all_id INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE sessions (
    sid TEXT PRIMARY KEY, -- SHA-256 of the cookie, hex
    tid TEXT UNIQUE,      -- SHA-256 of the token, hex
    name_key TEXT,
    expires INTEGER,
    event_id INTEGER,
    ended INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_account ON sessions (name_key);

-- Invite codes (SHA-256, hex) an admin made; a used one is a claim.
CREATE TABLE invites (
    code TEXT PRIMARY KEY,
    expires INTEGER NOT NULL
) WITHOUT ROWID;

-- What events took in their log (an account's name, an invite code): only
-- one event may take each; Valkey decides in cluster mode, this table on a
-- single node and as the record.
CREATE TABLE claims (
    room TEXT NOT NULL,
    claim TEXT NOT NULL,
    PRIMARY KEY (room, claim)
) WITHOUT ROWID;
