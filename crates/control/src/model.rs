//! The control plane's domain types, as the API shows them.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What an organisation is to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// The host broadcaster: owns the flows, administers the platform.
    Host,
    /// A rights-holding broadcaster (RHB): receives the flows it is licensed for.
    RightsHolder,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including organisations, tokens and licence passphrases.
    HostAdmin,
    /// Reads everything but passphrases, disables and enables licences, asks access decisions.
    HostOperator,
    /// Reads its own organisation, its own licences (with passphrases) and their audit entries.
    RhbViewer,
}

/// The life of a licence: `disabled` can go back to `active`, `revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LicenceState {
    Active,
    Disabled,
    Revoked,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The name used in the store and on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            /// Parses the name used in the store and on the wire.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
text_enum!(OrgKind { Host = "host", RightsHolder = "rights_holder" });
text_enum!(Role { HostAdmin = "host_admin", HostOperator = "host_operator", RhbViewer = "rhb_viewer" });
text_enum!(LicenceState { Active = "active", Disabled = "disabled", Revoked = "revoked" });

impl Role {
    /// The kind of organisation whose users may hold this role.
    pub fn org_kind(self) -> OrgKind {
        match self {
            Role::HostAdmin | Role::HostOperator => OrgKind::Host,
            Role::RhbViewer => OrgKind::RightsHolder,
        }
    }
}

/// An SRT passphrase. Its `Debug` is redacted so it cannot slip into a log line;
/// only [`Passphrase::expose`] and serialisation (for the API) give the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Passphrase(String);

impl Passphrase {
    /// SRT accepts passphrases of 10 to 79 characters.
    pub const LENGTH: std::ops::RangeInclusive<usize> = 10..=79;

    /// Checks the length SRT requires.
    pub fn new(text: String) -> Result<Self, String> {
        if Self::LENGTH.contains(&text.chars().count()) && text.is_ascii() {
            Ok(Self(text))
        } else {
            Err(format!(
                "an SRT passphrase is {} to {} ASCII characters",
                Self::LENGTH.start(),
                Self::LENGTH.end()
            ))
        }
    }

    /// A fresh random passphrase of 32 alphanumeric characters (about 190 bits).
    pub fn generate() -> Self {
        Self(crate::auth::random_alnum(32))
    }

    /// The secret text, for the data plane's SRT handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organisation {
    pub id: Uuid,
    pub name: String,
    pub kind: OrgKind,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A token's metadata; the secret itself is shown once, at creation, and only its hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The non-secret identifier embedded in the token (`stn_<id>_<secret>`).
    pub id: String,
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Flow {
    pub id: Uuid,
    /// Unique name; data planes identify the flow by it (e.g. in the SRT stream id).
    pub name: String,
    pub description: String,
    pub venue: String,
    /// Sport / event code, e.g. `ATH-100M-M-FNL`.
    pub event_code: String,
    pub created_at: DateTime<Utc>,
    /// Sources and redundancy. Absent for rights holders (not theirs to see); source
    /// passphrases are shown to host admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<crate::transport::Transport>,
}

/// The entitlement of one rights holder to one flow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Licence {
    pub id: Uuid,
    /// The rights-holding organisation.
    pub org_id: Uuid,
    pub flow_id: Uuid,
    /// First instant of the validity window (inclusive).
    pub valid_from: DateTime<Utc>,
    /// End of the validity window (exclusive).
    pub valid_until: DateTime<Utc>,
    pub max_concurrent_receivers: u32,
    /// Source networks receivers may connect from.
    #[schema(value_type = Vec<String>, example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub allowed_networks: Vec<IpNet>,
    pub encryption_required: bool,
    /// Present only for host admins and the owning rights holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<Passphrase>,
    pub state: LicenceState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the log; strictly increasing in commit order.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Who did it: `user/<name>` with its token, or a named in-process caller.
    pub actor: String,
    /// What was done, e.g. `licence.create`, `access.decide`.
    pub action: String,
    /// What it was done to, e.g. `licence/<id>`.
    pub subject: String,
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub licence_id: Option<Uuid>,
    /// `done` for changes, `allow` / `deny` for access decisions.
    pub decision: String,
    pub reason: String,
}

/// A change the live data plane must react to (e.g. cut receivers of a disabled licence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlEvent {
    /// A licence was created or changed state; re-check every session on it.
    LicenceChanged {
        licence_id: Uuid,
        rhb_org: Uuid,
        flow: Uuid,
        new_state: LicenceState,
    },
    /// An active licence's validity window ended (sent at `valid_until`, within milliseconds):
    /// cut its receivers.
    LicenceExpired {
        licence_id: Uuid,
        rhb_org: Uuid,
        flow: Uuid,
        valid_until: DateTime<Utc>,
    },
    /// A flow was created, deleted, or its transport, description or push outputs changed:
    /// reload it with [`crate::ControlPlane::flow_setup`] (not found: it was deleted).
    FlowChanged { flow_id: Uuid },
    /// An API token was revoked.
    TokenRevoked { token_id: String },
}

impl ControlEvent {
    /// The event of a licence created or moved to its current state.
    pub(crate) fn licence_changed(l: &Licence) -> Self {
        ControlEvent::LicenceChanged {
            licence_id: l.id,
            rhb_org: l.org_id,
            flow: l.flow_id,
            new_state: l.state,
        }
    }
}
