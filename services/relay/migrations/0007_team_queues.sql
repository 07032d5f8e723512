-- Team queues (issue 8): a session key, ticket, session or support button may target the
-- queue of a team (`user_teams`, the same teams as the jump groups `team:<name>`). The queue
-- CHECKs gain 'team' and a `team` column names it, set exactly when queue = 'team'.
--
-- SQLite cannot alter a CHECK, so each table is rebuilt. This runs inside the migration's
-- transaction, where foreign keys stay on and cannot be switched off; so checks are deferred
-- to the commit, each table's rows are set aside, the table is dropped, created anew under
-- its own name and its rows put back (which satisfies again every row that refers to them),
-- then its indexes are re-created. Any reference left dangling fails the commit, and with it
-- the whole migration.
PRAGMA defer_foreign_keys = ON;

-- session_keys ------------------------------------------------------------------------------
CREATE TABLE migrate_0007_session_keys AS SELECT * FROM session_keys;
DROP TABLE session_keys;
CREATE TABLE session_keys (
    key         TEXT PRIMARY KEY,
    link_token  TEXT NOT NULL UNIQUE,
    rep_id      INTEGER NOT NULL REFERENCES users(id),
    queue       TEXT NOT NULL CHECK (queue IN ('personal', 'general', 'team')),
    team        TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    CHECK ((queue = 'team') = (team IS NOT NULL))
);
INSERT INTO session_keys (key, link_token, rep_id, queue, team, created_at, expires_at, used_at)
    SELECT key, link_token, rep_id, queue, NULL, created_at, expires_at, used_at
    FROM migrate_0007_session_keys;
DROP TABLE migrate_0007_session_keys;

-- tickets -----------------------------------------------------------------------------------
CREATE TABLE migrate_0007_tickets AS SELECT * FROM tickets;
DROP TABLE tickets;
CREATE TABLE tickets (
    id            TEXT PRIMARY KEY,
    session_key   TEXT REFERENCES session_keys(key),
    queue         TEXT NOT NULL CHECK (queue IN ('personal', 'general', 'team')),
    team          TEXT,
    rep_id        INTEGER REFERENCES users(id),
    customer_name TEXT NOT NULL DEFAULT '',
    language      TEXT NOT NULL DEFAULT 'en',
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    session_id    TEXT,
    CHECK ((queue = 'team') = (team IS NOT NULL))
);
INSERT INTO tickets (id, session_key, queue, team, rep_id, customer_name, language, created_at,
                     expires_at, used_at, session_id)
    SELECT id, session_key, queue, NULL, rep_id, customer_name, language, created_at,
           expires_at, used_at, session_id
    FROM migrate_0007_tickets;
DROP TABLE migrate_0007_tickets;

-- sessions ----------------------------------------------------------------------------------
CREATE TABLE migrate_0007_sessions AS SELECT * FROM sessions;
DROP TABLE sessions;
CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    ticket_id          TEXT NOT NULL REFERENCES tickets(id),
    queue              TEXT NOT NULL CHECK (queue IN ('personal', 'general', 'team')),
    team               TEXT,
    owner_id           INTEGER REFERENCES users(id),
    state              TEXT NOT NULL CHECK (state IN ('terms', 'waiting', 'active', 'ended')),
    customer_name      TEXT NOT NULL,
    computer           TEXT NOT NULL,
    platform           TEXT NOT NULL,
    language           TEXT NOT NULL,
    remote_addr        TEXT NOT NULL,
    resume_token_hash  TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    queued_at          INTEGER,
    accepted_at        INTEGER,
    accepted_by        INTEGER REFERENCES users(id),
    ended_at           INTEGER,
    ended_by           TEXT,
    end_reason         TEXT,
    CHECK ((queue = 'team') = (team IS NOT NULL))
);
INSERT INTO sessions (id, ticket_id, queue, team, owner_id, state, customer_name, computer,
                      platform, language, remote_addr, resume_token_hash, created_at, queued_at,
                      accepted_at, accepted_by, ended_at, ended_by, end_reason)
    SELECT id, ticket_id, queue, NULL, owner_id, state, customer_name, computer, platform,
           language, remote_addr, resume_token_hash, created_at, queued_at, accepted_at,
           accepted_by, ended_at, ended_by, end_reason
    FROM migrate_0007_sessions;
DROP TABLE migrate_0007_sessions;
CREATE INDEX sessions_state ON sessions(state);
CREATE INDEX sessions_accepted_by ON sessions(accepted_by, created_at);
CREATE INDEX sessions_team ON sessions(team) WHERE team IS NOT NULL;

-- support_buttons ---------------------------------------------------------------------------
CREATE TABLE migrate_0007_support_buttons AS SELECT * FROM support_buttons;
DROP TABLE support_buttons;
CREATE TABLE support_buttons (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    label        TEXT NOT NULL DEFAULT '',
    queue        TEXT NOT NULL CHECK (queue IN ('personal', 'general', 'team')),
    team         TEXT,
    rep_id       INTEGER REFERENCES users(id) ON DELETE SET NULL,
    expires_at   INTEGER NOT NULL,
    created_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    sessions     INTEGER NOT NULL DEFAULT 0,
    last_used    INTEGER,
    CHECK ((queue = 'team') = (team IS NOT NULL))
);
INSERT INTO support_buttons (id, token_hash, label, queue, team, rep_id, expires_at, created_by,
                             created_at, revoked_at, sessions, last_used)
    SELECT id, token_hash, label, queue, NULL, rep_id, expires_at, created_by, created_at,
           revoked_at, sessions, last_used
    FROM migrate_0007_support_buttons;
DROP TABLE migrate_0007_support_buttons;

-- Deployment keys can be revoked from the console (issue 8); a revoked key registers nothing.
ALTER TABLE jump_deploy_keys ADD COLUMN revoked_at INTEGER;
