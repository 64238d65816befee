-- The change feed: one row per committed change that the data plane reacts to (licence state,
-- flow configuration, token revocation), written in the change's own transaction and numbered
-- by the `changes` counter, whose row lock orders the numbers by commit. Every control plane
-- follows the feed from the last number it has handled, so a node whose PostgreSQL LISTEN
-- connection dropped, or another process on the same SQLite file, catches up on what it did
-- not hear instead of missing it. `origin` is the store handle that wrote the change (a node
-- skips its own); `event` is the event as JSON.
CREATE TABLE control_changes (
    seq     BIGINT PRIMARY KEY,
    at      BIGINT NOT NULL,
    origin  TEXT NOT NULL,
    event   TEXT NOT NULL
);
