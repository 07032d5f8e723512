-- Jump clients (issue 8): deployment keys an administrator creates, and the clients that
-- registered with one. A client is known by its ed25519 public key; `last_seen` is written
-- when a link opens or closes and every few minutes for the online ones (never per heartbeat).
CREATE TABLE jump_deploy_keys (
    key_hash     TEXT PRIMARY KEY,
    label        TEXT NOT NULL DEFAULT '',
    grp          TEXT NOT NULL DEFAULT 'general',
    mode         TEXT NOT NULL,
    valid_until  INTEGER NOT NULL,
    uses_left    INTEGER NOT NULL,
    created_by   INTEGER REFERENCES users(id),
    created_at   INTEGER NOT NULL
);

CREATE TABLE jump_clients (
    id              TEXT PRIMARY KEY,
    public_key      TEXT NOT NULL,
    mode            TEXT NOT NULL,
    name            TEXT NOT NULL,
    comment         TEXT NOT NULL DEFAULT '',
    grp             TEXT NOT NULL DEFAULT 'general',
    computer        TEXT NOT NULL DEFAULT '',
    platform        TEXT NOT NULL DEFAULT '',
    logged_in_user  TEXT NOT NULL DEFAULT '',
    agent_version   TEXT NOT NULL DEFAULT '',
    wake_port       INTEGER,
    created_at      INTEGER NOT NULL,
    last_seen       INTEGER,
    removed_at      INTEGER
);
CREATE INDEX jump_clients_grp ON jump_clients(grp, name);
