-- Issue 4: flows carry their data-plane configuration (redundancy, sources, push outputs), and
-- the data plane's accounting (receiver sessions, delivered volume per hour) is kept here.
-- Same portable subset as 0001: BIGINT and TEXT only.

ALTER TABLE flows ADD COLUMN redundancy TEXT NOT NULL DEFAULT 'none';
ALTER TABLE flows ADD COLUMN failover_stall_timeout_ms BIGINT NOT NULL DEFAULT 100;
ALTER TABLE flows ADD COLUMN failover_degrade_errors BIGINT NOT NULL DEFAULT 5;
ALTER TABLE flows ADD COLUMN failover_recovery_ms BIGINT NOT NULL DEFAULT 5000;
ALTER TABLE flows ADD COLUMN failover_revertive BIGINT NOT NULL DEFAULT 1;
ALTER TABLE flows ADD COLUMN merge_window_ms BIGINT NOT NULL DEFAULT 50;

-- A flow's sources in order (position 0 is the main one).
CREATE TABLE flow_sources (
    flow_id     TEXT NOT NULL REFERENCES flows (id),
    position    BIGINT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('srt_listener', 'srt_caller', 'udp', 'rtp')),
    address     TEXT,
    interface   TEXT,
    stream_id   TEXT,
    passphrase  TEXT,
    latency_ms  BIGINT,
    -- UDP and RTP sources bind their address on the node: two flows cannot share one.
    bind_key    TEXT UNIQUE,
    PRIMARY KEY (flow_id, position),
    UNIQUE (flow_id, name)
);

-- Pushes of a flow to a rights holder's receiver, each under one licence.
CREATE TABLE push_outputs (
    id          TEXT PRIMARY KEY,
    flow_id     TEXT NOT NULL REFERENCES flows (id),
    licence_id  TEXT NOT NULL REFERENCES licences (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('srt_caller', 'udp')),
    address     TEXT NOT NULL,
    stream_id   TEXT,
    latency_ms  BIGINT,
    created_at  BIGINT NOT NULL,
    UNIQUE (flow_id, name)
);
CREATE INDEX push_outputs_licence ON push_outputs (licence_id);

-- The expiry watcher looks for the next window end among active licences.
CREATE INDEX licences_state_until ON licences (state, valid_until);

-- One row per receiver connection; org and flow are copied from the licence at connect time.
CREATE TABLE receiver_sessions (
    id                TEXT PRIMARY KEY,
    licence_id        TEXT NOT NULL REFERENCES licences (id),
    org_id            TEXT NOT NULL,
    flow_id           TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('srt_listener', 'srt_push', 'udp_push')),
    peer              TEXT NOT NULL,
    connected_at      BIGINT NOT NULL,
    disconnected_at   BIGINT,
    disconnect_reason TEXT,
    packets           BIGINT NOT NULL DEFAULT 0,
    bytes             BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX receiver_sessions_org_flow ON receiver_sessions (org_id, flow_id, connected_at);
CREATE INDEX receiver_sessions_flow ON receiver_sessions (flow_id, connected_at);

-- Delivered volume per rights holder, flow and hour (start of the hour in microseconds).
CREATE TABLE usage_hourly (
    org_id   TEXT NOT NULL,
    flow_id  TEXT NOT NULL,
    hour     BIGINT NOT NULL,
    packets  BIGINT NOT NULL,
    bytes    BIGINT NOT NULL,
    PRIMARY KEY (org_id, flow_id, hour)
);
