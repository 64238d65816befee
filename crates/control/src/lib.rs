//! stadion's control plane: organisations, users and API tokens, flows, broadcast licences,
//! the access decision the live data plane asks on every connection, and the audit log —
//! persisted in SQLite or PostgreSQL and served as a JSON HTTP API.
//!
//! - [`model`]: the domain types.
//! - [`decision`]: the pure access rule and its SRT rejection codes.
//! - [`store`]: portable SQL over `sqlx::Any`; every write one transaction with its audit entry.
//! - [`ControlPlane`]: the store plus change notifications, token checks and the decision log.
//! - [`transport`]: a flow's sources, redundancy and push outputs (the data plane's config).
//! - [`usage`]: accounting of receiver sessions and delivered volume.
//! - [`api`]: the axum router (`/api/v1/...`, OpenAPI, health, metrics).

pub mod api;
pub mod auth;
pub mod decision;
pub mod model;
mod problem;
mod service;
mod spool;
pub mod store;
pub mod transport;
pub mod usage;

pub use decision::{Decision, Denial, Grant, Refusal};
pub use model::ControlEvent;
pub use service::{AccessRequest, AuthError, ControlPlane, NodeConfig, Principal};
pub use store::{Store, StoreError};
