//! The warehouse's tables, each column with what it means: the one description that both
//! creates the tables and answers `stadion insight tables`.
//!
//! Every instant is two columns: `X` (ISO-8601 UTC text such as `2026-07-24T10:00:00.000Z`,
//! which sorts as time and works with SQLite's date functions) and `X_epoch` (whole seconds
//! since 1970, for arithmetic and bucketing: `at_epoch / 60 * 60` is the minute).

/// One column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    /// `TEXT`, `INTEGER` or `REAL`.
    pub sql_type: &'static str,
    pub about: &'static str,
}

/// One table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub about: &'static str,
    pub columns: &'static [Column],
}

impl Table {
    /// `CREATE TABLE` for this table.
    pub fn create_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect();
        format!("CREATE TABLE {} ({}) STRICT", self.name, columns.join(", "))
    }

    /// `INSERT` with one `?` per column, in column order.
    pub fn insert_sql(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        let marks = vec!["?"; names.len()].join(", ");
        format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            self.name,
            names.join(", ")
        )
    }
}

const fn col(name: &'static str, sql_type: &'static str, about: &'static str) -> Column {
    Column {
        name,
        sql_type,
        about,
    }
}

const ORG_ID: Column = col(
    "org_id",
    "TEXT",
    "the rights holder's id (organisation UUID)",
);
const ORG: Column = col(
    "org",
    "TEXT",
    "the rights holder's name (broadcaster), as in orgs.org",
);
const FLOW_ID: Column = col("flow_id", "TEXT", "the flow's id (UUID)");
const FLOW: Column = col("flow", "TEXT", "the flow's name, as in flows.flow");
const LICENCE_ID: Column = col(
    "licence_id",
    "TEXT",
    "the licence's id (UUID), as in licences.licence_id",
);

pub const ORGS: Table = Table {
    name: "orgs",
    about: "organisations: the host and the rights-holding broadcasters (a rights holder's token sees only its own)",
    columns: &[
        col("org_id", "TEXT", "organisation UUID"),
        col(
            "org",
            "TEXT",
            "unique name, e.g. the broadcaster's short name",
        ),
        col("kind", "TEXT", "host or rights_holder"),
        col("created", "TEXT", "when it was created"),
        col("created_epoch", "INTEGER", "the same, seconds since 1970"),
    ],
};

pub const FLOWS: Table = Table {
    name: "flows",
    about: "flows: the feeds the host offers",
    columns: &[
        col("flow_id", "TEXT", "flow UUID"),
        col(
            "flow",
            "TEXT",
            "unique name; data planes name the flow by it in the SRT stream id",
        ),
        col("description", "TEXT", "free text"),
        col("venue", "TEXT", "where it comes from"),
        col(
            "event_code",
            "TEXT",
            "sport / event code, e.g. ATH-100M-M-FNL",
        ),
        col(
            "redundancy",
            "TEXT",
            "none, failover or merge; NULL when not shown to this token (rights holders) or not configured",
        ),
        col(
            "sources",
            "INTEGER",
            "number of configured sources (0 to 2); NULL as for redundancy",
        ),
        col("created", "TEXT", "when it was created"),
        col("created_epoch", "INTEGER", "the same, seconds since 1970"),
    ],
};

pub const LICENCES: Table = Table {
    name: "licences",
    about: "licences: which rights holder may receive which flow, when, from where (never the passphrase)",
    columns: &[
        col("licence_id", "TEXT", "licence UUID"),
        ORG_ID,
        ORG,
        FLOW_ID,
        FLOW,
        col("state", "TEXT", "active, disabled or revoked"),
        col(
            "valid_from",
            "TEXT",
            "first instant of the validity window (inclusive)",
        ),
        col(
            "valid_from_epoch",
            "INTEGER",
            "the same, seconds since 1970",
        ),
        col(
            "valid_until",
            "TEXT",
            "end of the validity window (exclusive)",
        ),
        col(
            "valid_until_epoch",
            "INTEGER",
            "the same, seconds since 1970",
        ),
        col(
            "max_receivers",
            "INTEGER",
            "most receivers connected at once",
        ),
        col(
            "encryption_required",
            "INTEGER",
            "1 when receivers must use the licence's passphrase",
        ),
        col(
            "networks",
            "TEXT",
            "source networks receivers may connect from, comma-separated CIDR",
        ),
        col("created", "TEXT", "when it was granted"),
        col("created_epoch", "INTEGER", "the same, seconds since 1970"),
    ],
};

pub const SESSIONS: Table = Table {
    name: "sessions",
    about: "receiver sessions overlapping the period: one row per connection of a broadcaster's receiver",
    columns: &[
        col(
            "session_id",
            "TEXT",
            "session UUID, chosen by the data plane",
        ),
        LICENCE_ID,
        ORG_ID,
        ORG,
        FLOW_ID,
        FLOW,
        col(
            "kind",
            "TEXT",
            "srt_listener (the broadcaster called in), srt_push or udp_push (stadion sends)",
        ),
        col("peer", "TEXT", "the receiver's address and port"),
        col("connected", "TEXT", "when it connected"),
        col("connected_epoch", "INTEGER", "the same, seconds since 1970"),
        col(
            "disconnected",
            "TEXT",
            "when it ended; NULL while connected",
        ),
        col(
            "disconnected_epoch",
            "INTEGER",
            "the same, seconds since 1970",
        ),
        col("open", "INTEGER", "1 while connected (as of loading)"),
        col(
            "duration_s",
            "REAL",
            "seconds connected, up to loading time for open sessions",
        ),
        col(
            "reason",
            "TEXT",
            "why it ended: peer_closed, timeout, disabled, revoked, expired, node stopped, ...; NULL while connected",
        ),
        col("packets", "INTEGER", "packets delivered"),
        col("bytes", "INTEGER", "bytes delivered (MPEG-TS payload)"),
        col(
            "mbit_s",
            "REAL",
            "average delivered rate over the session, Mbit/s",
        ),
    ],
};

pub const USAGE_HOURLY: Table = Table {
    name: "usage_hourly",
    about: "delivered volume per rights holder, flow and hour (what billing counts); hours without delivery have no row",
    columns: &[
        col("hour", "TEXT", "start of the hour"),
        col("hour_epoch", "INTEGER", "the same, seconds since 1970"),
        ORG_ID,
        ORG,
        FLOW_ID,
        FLOW,
        col("packets", "INTEGER", "packets delivered in the hour"),
        col("bytes", "INTEGER", "bytes delivered in the hour"),
        col(
            "mbit_s",
            "REAL",
            "the hour's average delivered rate, Mbit/s (bytes * 8 / 3600 / 1e6)",
        ),
        col(
            "sessions_started",
            "INTEGER",
            "sessions of this rights holder and flow that connected in the hour",
        ),
    ],
};

pub const RECEIVERS_HOURLY: Table = Table {
    name: "receivers_hourly",
    about: "concurrent receivers per rights holder, flow and hour, computed from sessions (open ones count up to loading time); hours without receivers have no row",
    columns: &[
        col("hour", "TEXT", "start of the hour"),
        col("hour_epoch", "INTEGER", "the same, seconds since 1970"),
        ORG_ID,
        ORG,
        FLOW_ID,
        FLOW,
        col(
            "peak",
            "INTEGER",
            "most receivers connected at one instant of the hour",
        ),
        col(
            "mean",
            "REAL",
            "receivers connected on average (receiver-seconds / seconds of the hour inside the period)",
        ),
        col(
            "sessions",
            "INTEGER",
            "sessions connected at any time in the hour",
        ),
    ],
};

pub const DECISIONS: Table = Table {
    name: "decisions",
    about: "access decisions: every time a receiver (or a push output) asked to get a flow, from the audit log",
    columns: &[
        col("seq", "INTEGER", "position in the audit log"),
        col("at", "TEXT", "when it was decided"),
        col("at_epoch", "INTEGER", "the same, seconds since 1970"),
        col(
            "actor",
            "TEXT",
            "who asked: a data-plane node or an operator's token",
        ),
        ORG_ID,
        ORG,
        FLOW_ID,
        FLOW,
        LICENCE_ID,
        col("result", "TEXT", "allow or deny"),
        col(
            "reason",
            "TEXT",
            "why it was refused, e.g. source_network_not_allowed, concurrency_exceeded, expired, no_licence; NULL when allowed",
        ),
        col("source", "TEXT", "the receiver's address"),
        col(
            "connected",
            "INTEGER",
            "receivers of the licence already connected when it asked",
        ),
        col(
            "subject",
            "TEXT",
            "what was asked: access/<organisation>/<flow> as the receiver named them",
        ),
        col("detail", "TEXT", "the audit entry's full text"),
    ],
};

pub const CHANGES: Table = Table {
    name: "changes",
    about: "every other audit entry: who changed what (licences granted, disabled, revoked; flows; tokens; sessions closed by a node)",
    columns: &[
        col("seq", "INTEGER", "position in the audit log"),
        col("at", "TEXT", "when it was committed"),
        col("at_epoch", "INTEGER", "the same, seconds since 1970"),
        col(
            "actor",
            "TEXT",
            "who did it: user/<name> with its token, or a named in-process caller",
        ),
        col(
            "action",
            "TEXT",
            "what was done, e.g. licence.create, licence.revoke, flow.update",
        ),
        col("subject", "TEXT", "what it was done to, e.g. licence/<id>"),
        ORG_ID,
        ORG,
        FLOW_ID,
        FLOW,
        LICENCE_ID,
        col("detail", "TEXT", "the reason given"),
    ],
};

/// Every table, in the order `stadion insight tables` lists them.
pub const TABLES: &[Table] = &[
    ORGS,
    FLOWS,
    LICENCES,
    SESSIONS,
    USAGE_HOURLY,
    RECEIVERS_HOURLY,
    DECISIONS,
    CHANGES,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_described_once() {
        for t in TABLES {
            let mut names: Vec<_> = t.columns.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), t.columns.len(), "{}", t.name);
            for c in t.columns {
                assert!(
                    matches!(c.sql_type, "TEXT" | "INTEGER" | "REAL"),
                    "{}.{}",
                    t.name,
                    c.name
                );
                assert!(!c.about.is_empty(), "{}.{}", t.name, c.name);
            }
        }
    }
}
