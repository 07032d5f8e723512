-- Lifeline relay schema, version 1.
-- Times are milliseconds since the Unix epoch (INTEGER).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'rep', 'appliance-admin')),
    password_hash   TEXT NOT NULL,
    show_on_portal  INTEGER NOT NULL DEFAULT 1,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

-- Browser logins (cookie) and API bearer tokens; only SHA-256 hashes of the secrets are kept.
CREATE TABLE auth_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);

-- 7-digit keys a representative hands to a customer. The emailed link carries `link_token`.
CREATE TABLE session_keys (
    key         TEXT PRIMARY KEY,
    link_token  TEXT NOT NULL UNIQUE,
    rep_id      INTEGER NOT NULL REFERENCES users(id),
    queue       TEXT NOT NULL CHECK (queue IN ('personal', 'general')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

-- Tickets appended to downloaded clients; single use.
CREATE TABLE tickets (
    id            TEXT PRIMARY KEY,
    session_key   TEXT REFERENCES session_keys(key),
    queue         TEXT NOT NULL CHECK (queue IN ('personal', 'general')),
    rep_id        INTEGER REFERENCES users(id),
    customer_name TEXT NOT NULL DEFAULT '',
    language      TEXT NOT NULL DEFAULT 'en',
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    session_id    TEXT
);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    ticket_id          TEXT NOT NULL REFERENCES tickets(id),
    queue              TEXT NOT NULL CHECK (queue IN ('personal', 'general')),
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
    end_reason         TEXT
);
CREATE INDEX sessions_state ON sessions(state);
CREATE INDEX sessions_accepted_by ON sessions(accepted_by, created_at);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    sender      TEXT NOT NULL CHECK (sender IN ('customer', 'rep', 'system')),
    sender_name TEXT NOT NULL,
    body        TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX messages_session ON messages(session_id, id);

-- Session events (joined, left, link dropped, ...), shown in the session report.
CREATE TABLE session_events (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX session_events_session ON session_events(session_id, id);

-- Everything security-relevant: logins, key attempts, account changes.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    address     TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_action ON audit(action, at);
