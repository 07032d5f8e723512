-- Screen-sharing traffic per session: messages and bytes (frame headers included) the agent
-- sent on the screen and cursor channels, delivered to viewers, and dropped (nobody
-- watching, a viewer that fell behind, cursor messages replaced by newer ones).
-- Written every few seconds while frames flow and when the session ends, never per frame.
CREATE TABLE session_stream_counters (
    session_id        TEXT PRIMARY KEY REFERENCES sessions(id),
    screen_frames     INTEGER NOT NULL DEFAULT 0,
    screen_bytes      INTEGER NOT NULL DEFAULT 0,
    cursor_frames     INTEGER NOT NULL DEFAULT 0,
    cursor_bytes      INTEGER NOT NULL DEFAULT 0,
    delivered_frames  INTEGER NOT NULL DEFAULT 0,
    delivered_bytes   INTEGER NOT NULL DEFAULT 0,
    dropped_frames    INTEGER NOT NULL DEFAULT 0,
    dropped_bytes     INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL
);
