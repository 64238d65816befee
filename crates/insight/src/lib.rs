//! Analytics for stadion: what the platform did, as tables you can query and plot.
//!
//! The records the control plane keeps (organisations, flows, licences, receiver sessions,
//! hourly usage, the audit log) are read through its HTTP API ([`fetch`], so a rights
//! holder's token sees only its own organisation), decoded with the path of any bad field
//! ([`records`]), and loaded into an in-memory SQLite warehouse of typed tables
//! ([`Warehouse`], described column by column in [`schema::TABLES`]). Users run their own SQL
//! on it, read-only ([`readonly`]); [`report`] draws the pictures an operator asks for most.
//! Nothing secret (passphrases, tokens) is decoded, so nothing secret can reach a table.

pub mod fetch;
pub mod occupancy;
pub mod readonly;
pub mod records;
pub mod report;
pub mod schema;
mod warehouse;

#[cfg(test)]
mod fixture;

pub use fetch::{Api, Period, fetch};
pub use occupancy::{Occupancy, Resolution};
pub use records::Snapshot;
pub use report::{Report, plot};
pub use warehouse::{Cell, QueryResult, Warehouse};

/// Everything that can go wrong between the API and a picture; each says what and where.
#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    /// The API could not be asked (network, status, authorisation).
    #[error("GET {path}: {message}")]
    Api { path: String, message: String },
    /// An answer of the API did not have the expected shape; `field` is the path inside the
    /// answer, e.g. `[3].connected_at` or `entries[0].seq`.
    #[error("GET {path}: field `{field}`: {message}")]
    Record {
        path: String,
        field: String,
        message: String,
    },
    /// A period whose end is not after its start.
    #[error("the period ends ({until}) before or when it starts ({from})")]
    Period { from: String, until: String },
    /// The user's SQL would change the warehouse (or is not one statement).
    #[error("only one read-only statement (SELECT, WITH ... SELECT or VALUES) is allowed: {0}")]
    NotReadOnly(String),
    /// SQLite refused or failed the statement.
    #[error("SQL: {0}")]
    Sql(#[from] sqlx::Error),
    /// A file could not be written.
    #[error("{path}: {message}")]
    Write { path: String, message: String },
    /// A report had no data in the loaded period.
    #[error("nothing to plot for `{report}`: {why}")]
    NothingToPlot { report: &'static str, why: String },
}
