-- One schema for SQLite and PostgreSQL: only BIGINT and TEXT columns (the types both
-- drivers map through `sqlx::Any`), times as microseconds since the Unix epoch,
-- identifiers as UUID text, booleans as 0/1.

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('host', 'rights_holder')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organisations (id),
    name        TEXT NOT NULL UNIQUE,
    email       TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    role        TEXT NOT NULL CHECK (role IN ('host_admin', 'host_operator', 'rhb_viewer')),
    label       TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE flows (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    venue       TEXT NOT NULL,
    event_code  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE licences (
    id                       TEXT PRIMARY KEY,
    org_id                   TEXT NOT NULL REFERENCES organisations (id),
    flow_id                  TEXT NOT NULL REFERENCES flows (id),
    valid_from               BIGINT NOT NULL,
    valid_until              BIGINT NOT NULL,
    max_concurrent_receivers BIGINT NOT NULL,
    allowed_networks         TEXT NOT NULL,
    encryption_required      BIGINT NOT NULL,
    passphrase               TEXT NOT NULL,
    state                    TEXT NOT NULL CHECK (state IN ('active', 'disabled', 'revoked')),
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    CHECK (valid_until > valid_from)
);
-- At most one live (not revoked) licence per rights holder and flow; a revoked one may be
-- replaced by a new licence.
CREATE UNIQUE INDEX licences_live_org_flow ON licences (org_id, flow_id) WHERE state <> 'revoked';
CREATE INDEX licences_flow ON licences (flow_id);

-- Audit sequence numbers come from this counter row, taken inside the writing transaction:
-- the row lock orders entries by commit on PostgreSQL, SQLite has one writer anyway.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('audit', 0);

CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    org_id       TEXT,
    flow_id      TEXT,
    licence_id   TEXT,
    decision     TEXT NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX audit_org ON audit_log (org_id, seq);
CREATE INDEX audit_flow ON audit_log (flow_id, seq);
CREATE INDEX audit_licence ON audit_log (licence_id, seq);
CREATE INDEX audit_at ON audit_log (at);
