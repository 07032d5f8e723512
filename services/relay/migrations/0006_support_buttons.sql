-- Support buttons (issue 8): a desktop entry on a customer's computer that asks for a session
-- in a chosen representative's queue (or the general queue) until it expires. Only the
-- SHA-256 of the button's token is kept.
CREATE TABLE support_buttons (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    label        TEXT NOT NULL DEFAULT '',
    queue        TEXT NOT NULL CHECK (queue IN ('personal', 'general')),
    rep_id       INTEGER REFERENCES users(id) ON DELETE SET NULL,
    expires_at   INTEGER NOT NULL,
    created_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    sessions     INTEGER NOT NULL DEFAULT 0,
    last_used    INTEGER
);
