-- The console's jump list and "Jump" (issue 8): who owns a personal jump client (the
-- representative who created its deployment key), and which teams a user belongs to (for
-- jump clients of a `team:<name>` group).
ALTER TABLE jump_clients ADD COLUMN owner_id INTEGER REFERENCES users(id);
UPDATE jump_clients SET owner_id = (
    SELECT u.id FROM users u WHERE 'personal:' || u.username = jump_clients.grp
) WHERE grp LIKE 'personal:%';

CREATE TABLE user_teams (
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    team     TEXT NOT NULL,
    PRIMARY KEY (user_id, team)
);
CREATE INDEX user_teams_team ON user_teams(team);
