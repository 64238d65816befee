-- Data-plane nodes and the receiver sessions they hold: a node's sessions are closed when it
-- restarts or stops reporting, and only live nodes' sessions count against concurrency.
CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
ALTER TABLE receiver_sessions ADD COLUMN node TEXT;
CREATE INDEX receiver_sessions_open_node ON receiver_sessions (node) WHERE disconnected_at IS NULL;
CREATE INDEX receiver_sessions_open_licence ON receiver_sessions (licence_id) WHERE disconnected_at IS NULL;
