//! A flow's data-plane configuration: where its packets come from (one or two sources), how two
//! sources are combined (redundancy), and where stadion pushes it to rights holders (push
//! outputs, each tied to a licence). The JSON shapes match what the live data plane reads.
//!
//! Validation lives here, beside the types, so every way in (API, CLI, in-process callers)
//! gets the same checks and the same field names in its errors.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::{Flow, Passphrase};

/// Invalid configuration, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn invalid<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// How a flow uses its sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// One source (or none yet).
    #[default]
    None,
    /// Two sources, one at a time: the backup takes over when the main one stops or degrades.
    Failover,
    /// SMPTE 2022-7: two RTP sources at once, merged by RTP sequence number.
    Merge,
}

/// Failover parameters (used when `redundancy` is `failover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverSettings {
    /// No packet for this long and the active source counts as stopped (10 to 10 000 ms).
    pub stall_timeout_ms: u64,
    /// This many TR 101 290 priority-1 errors within a second make a source degraded (1 to 1000).
    pub degrade_errors: u32,
    /// How long the main source must be healthy again before the flow returns to it
    /// (0 to 3 600 000 ms).
    pub recovery_ms: u64,
    /// Whether to return to the main source at all.
    pub revertive: bool,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            stall_timeout_ms: 100,
            degrade_errors: 5,
            recovery_ms: 5000,
            revertive: true,
        }
    }
}

/// 2022-7 merge parameters (used when `redundancy` is `merge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MergeSettings {
    /// How long a missing packet waits for the other path: the paths' differential delay
    /// (1 to 5000 ms).
    pub window_ms: u64,
}

impl Default for MergeSettings {
    fn default() -> Self {
        Self { window_ms: 50 }
    }
}

/// One source of a flow. `name` is unique within the flow (e.g. `main`, `backup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A venue encoder calls the node's ingest SRT listener with the stream ID
    /// `#!::r=<flow>,m=publish[,u=<source name>]` and this passphrase (required: without it
    /// anyone could publish into the flow).
    SrtListener {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<Passphrase>,
    },
    /// The node calls a venue's SRT listener at `address` and receives from it.
    SrtCaller {
        name: String,
        #[schema(value_type = String, example = "198.51.100.20:9000")]
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<Passphrase>,
        /// SRT receive latency (20 to 10 000 ms); the data plane's default when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<u64>,
    },
    /// MPEG-TS datagrams sent to `address` (the node binds it; a multicast group is joined on
    /// `interface`).
    Udp {
        name: String,
        #[schema(value_type = String, example = "239.10.0.1:5000")]
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        interface: Option<Ipv4Addr>,
    },
    /// MPEG-TS in RTP (RFC 2250) sent to `address`; needed for 2022-7 merge.
    Rtp {
        name: String,
        #[schema(value_type = String, example = "239.10.0.1:5000")]
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        interface: Option<Ipv4Addr>,
    },
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::SrtListener { name, .. }
            | Source::SrtCaller { name, .. }
            | Source::Udp { name, .. }
            | Source::Rtp { name, .. } => name,
        }
    }

    /// The kind's wire name (`srt_listener`, `srt_caller`, `udp`, `rtp`).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::SrtListener { .. } => "srt_listener",
            Source::SrtCaller { .. } => "srt_caller",
            Source::Udp { .. } => "udp",
            Source::Rtp { .. } => "rtp",
        }
    }

    /// The address the node binds for this source, when it binds one of its own (UDP and
    /// RTP). Two flows cannot bind the same one.
    pub fn bind_address(&self) -> Option<SocketAddr> {
        match self {
            Source::Udp { address, .. } | Source::Rtp { address, .. } => Some(*address),
            Source::SrtListener { .. } | Source::SrtCaller { .. } => None,
        }
    }

    fn passphrase_mut(&mut self) -> Option<&mut Option<Passphrase>> {
        match self {
            Source::SrtListener { passphrase, .. } | Source::SrtCaller { passphrase, .. } => {
                Some(passphrase)
            }
            Source::Udp { .. } | Source::Rtp { .. } => None,
        }
    }

    fn validate(&self, at: &str) -> Result<(), FieldError> {
        check_name(&format!("{at}.name"), self.name())?;
        match self {
            Source::SrtListener { passphrase, .. } => match passphrase {
                None => invalid(
                    format!("{at}.passphrase"),
                    "an SRT listener source needs the publisher's passphrase",
                ),
                Some(p) => check_passphrase(&format!("{at}.passphrase"), p),
            },
            Source::SrtCaller {
                address,
                stream_id,
                passphrase,
                latency_ms,
                ..
            } => {
                check_remote(&format!("{at}.address"), address, false)?;
                if let Some(id) = stream_id {
                    check_stream_id(&format!("{at}.stream_id"), id)?;
                }
                if let Some(p) = passphrase {
                    check_passphrase(&format!("{at}.passphrase"), p)?;
                }
                if let Some(ms) = latency_ms {
                    check_range(&format!("{at}.latency_ms"), *ms, 20, 10_000)?;
                }
                Ok(())
            }
            Source::Udp {
                address, interface, ..
            }
            | Source::Rtp {
                address, interface, ..
            } => {
                if address.port() == 0 {
                    return invalid(format!("{at}.address"), "needs a port other than 0");
                }
                if interface.is_some() && !address.ip().is_multicast() {
                    return invalid(
                        format!("{at}.interface"),
                        "an interface is only for joining a multicast group; the address is unicast",
                    );
                }
                Ok(())
            }
        }
    }
}

/// Where a flow's packets come from and how two sources are combined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    #[serde(default)]
    pub redundancy: Redundancy,
    #[serde(default)]
    pub failover: FailoverSettings,
    #[serde(default)]
    pub merge: MergeSettings,
    /// No source (not yet configured), one, or two (the first is the main one).
    #[serde(default)]
    pub sources: Vec<Source>,
}

impl Transport {
    /// Checks the whole configuration; the error names the field as a JSON path.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.sources.len() > 2 {
            return invalid("sources", "a flow has at most two sources");
        }
        let mut names = HashSet::new();
        let mut binds = HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}]");
            source.validate(&at)?;
            if !names.insert(source.name()) {
                return invalid(
                    format!("{at}.name"),
                    "two sources of a flow share this name",
                );
            }
            if let Some(addr) = source.bind_address()
                && !binds.insert(addr)
            {
                return invalid(format!("{at}.address"), "both sources bind this address");
            }
        }
        match self.redundancy {
            Redundancy::None if self.sources.len() > 1 => {
                return invalid("redundancy", "two sources need `failover` or `merge`");
            }
            Redundancy::Failover | Redundancy::Merge if self.sources.len() != 2 => {
                return invalid(
                    "sources",
                    format!("`{}` needs exactly two sources", self.redundancy.as_str()),
                );
            }
            Redundancy::Merge => {
                if let Some(i) = self
                    .sources
                    .iter()
                    .position(|s| !matches!(s, Source::Rtp { .. }))
                {
                    return invalid(
                        format!("sources[{i}].kind"),
                        "2022-7 merge works on RTP sources only",
                    );
                }
            }
            _ => {}
        }
        let f = &self.failover;
        check_range("failover.stall_timeout_ms", f.stall_timeout_ms, 10, 10_000)?;
        check_range(
            "failover.degrade_errors",
            u64::from(f.degrade_errors),
            1,
            1000,
        )?;
        check_range("failover.recovery_ms", f.recovery_ms, 0, 3_600_000)?;
        check_range("merge.window_ms", self.merge.window_ms, 1, 5000)?;
        Ok(())
    }

    /// Removes the source passphrases (for callers who may not read them).
    pub fn redact(&mut self) {
        for source in &mut self.sources {
            if let Some(p) = source.passphrase_mut() {
                *p = None;
            }
        }
    }
}

/// How stadion pushes a flow to a rights holder's own receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PushTarget {
    /// stadion calls the rights holder's SRT listener, encrypting with the licence's passphrase.
    SrtCaller {
        #[schema(value_type = String, example = "203.0.113.10:9000")]
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<String>,
        /// SRT latency (20 to 10 000 ms); the data plane's default when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<u64>,
    },
    /// stadion sends plain MPEG-TS over UDP (only for licences that do not require encryption).
    Udp {
        #[schema(value_type = String, example = "203.0.113.10:5000")]
        address: SocketAddr,
    },
}

impl PushTarget {
    pub fn address(&self) -> SocketAddr {
        match self {
            PushTarget::SrtCaller { address, .. } | PushTarget::Udp { address } => *address,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PushTarget::SrtCaller { .. } => "srt_caller",
            PushTarget::Udp { .. } => "udp",
        }
    }

    /// Checks the target on its own; the licence-dependent checks are in the store.
    pub fn validate(&self, at: &str) -> Result<(), FieldError> {
        let field = |name: &str| {
            if at.is_empty() {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            }
        };
        match self {
            PushTarget::SrtCaller {
                address,
                stream_id,
                latency_ms,
            } => {
                check_remote(&field("address"), address, false)?;
                if let Some(id) = stream_id {
                    check_stream_id(&field("stream_id"), id)?;
                }
                if let Some(ms) = latency_ms {
                    check_range(&field("latency_ms"), *ms, 20, 10_000)?;
                }
                Ok(())
            }
            PushTarget::Udp { address } => check_remote(&field("address"), address, true),
        }
    }
}

/// A push output: the flow sent to a rights holder's receiver under one of its licences. The
/// data plane asks the access decision (with the target's address) before it starts pushing,
/// and stops when the licence is disabled, revoked or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushOutput {
    pub id: Uuid,
    pub flow_id: Uuid,
    pub licence_id: Uuid,
    /// The licence's rights holder.
    pub org_id: Uuid,
    /// Unique within the flow.
    pub name: String,
    pub target: PushTarget,
    pub created_at: DateTime<Utc>,
}

/// Everything a data plane needs to run one flow: the flow with its transport (passphrases
/// included) and its push outputs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowSetup {
    pub flow: Flow,
    pub outputs: Vec<PushOutput>,
}

pub(crate) fn check_name(field: &str, value: &str) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        invalid(
            field,
            "1 to 64 characters of letters, digits, `-`, `_` and `.`",
        )
    }
}

fn check_passphrase(field: &str, p: &Passphrase) -> Result<(), FieldError> {
    Passphrase::new(p.expose().to_owned())
        .map(drop)
        .map_err(|message| FieldError {
            field: field.into(),
            message,
        })
}

/// SRT carries stream IDs of up to 512 bytes.
fn check_stream_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return invalid(field, "1 to 512 bytes without control characters");
    }
    Ok(())
}

/// An address stadion sends to or calls: a real host and port (a multicast group only where
/// datagrams go, never for an SRT call).
fn check_remote(field: &str, addr: &SocketAddr, multicast_ok: bool) -> Result<(), FieldError> {
    if addr.port() == 0 {
        return invalid(field, "needs a port other than 0");
    }
    let ip: IpAddr = addr.ip().to_canonical();
    if ip.is_unspecified() || ip.is_multicast() && !multicast_ok {
        return invalid(field, format!("{ip} is not an address to call"));
    }
    Ok(())
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), FieldError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        invalid(field, format!("between {min} and {max}"))
    }
}

impl Redundancy {
    /// The name used in the store and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Redundancy::None => "none",
            Redundancy::Failover => "failover",
            Redundancy::Merge => "merge",
        }
    }

    /// Parses the name used in the store and on the wire.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Redundancy::None),
            "failover" => Some(Redundancy::Failover),
            "merge" => Some(Redundancy::Merge),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Transport {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(json: serde_json::Value) -> Option<String> {
        parse(json).validate().err().map(|e| e.field)
    }

    #[test]
    fn accepts_the_three_modes() {
        let none = serde_json::json!({"sources": [{"kind": "udp", "name": "a", "address": "239.0.0.1:5000", "interface": "10.0.0.1"}]});
        assert_eq!(field_of(none), None);
        let failover = serde_json::json!({"redundancy": "failover", "sources": [
            {"kind": "srt_listener", "name": "main", "passphrase": "0123456789"},
            {"kind": "srt_caller", "name": "backup", "address": "198.51.100.1:9000"}]});
        assert_eq!(field_of(failover), None);
        let merge = serde_json::json!({"redundancy": "merge", "sources": [
            {"kind": "rtp", "name": "a", "address": "239.0.0.1:5000"},
            {"kind": "rtp", "name": "b", "address": "239.0.0.2:5000"}]});
        assert_eq!(field_of(merge), None);
        assert_eq!(
            Transport::default().validate(),
            Ok(()),
            "no source yet is a valid (idle) flow"
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let rtp = |name: &str, addr: &str| serde_json::json!({"kind": "rtp", "name": name, "address": addr});
        for (json, field) in [
            (
                serde_json::json!({"redundancy": "merge", "sources": [rtp("a", "239.0.0.1:1"), rtp("b", "239.0.0.1:1")]}),
                "sources[1].address",
            ),
            (
                serde_json::json!({"redundancy": "merge", "sources": [rtp("a", "239.0.0.1:1")]}),
                "sources",
            ),
            (
                serde_json::json!({"sources": [rtp("a", "239.0.0.1:0")]}),
                "sources[0].address",
            ),
            (
                serde_json::json!({"sources": [rtp("", "239.0.0.1:1")]}),
                "sources[0].name",
            ),
            (
                serde_json::json!({"failover": {"recovery_ms": 4_000_000}}),
                "failover.recovery_ms",
            ),
            (
                serde_json::json!({"failover": {"degrade_errors": 0}}),
                "failover.degrade_errors",
            ),
            (
                serde_json::json!({"sources": [{"kind": "srt_caller", "name": "a", "address": "239.0.0.1:9000"}]}),
                "sources[0].address",
            ),
            (
                serde_json::json!({"sources": [{"kind": "srt_caller", "name": "a", "address": "198.51.100.1:9000", "stream_id": ""}]}),
                "sources[0].stream_id",
            ),
        ] {
            assert_eq!(field_of(json.clone()).as_deref(), Some(field), "{json}");
        }
    }

    #[test]
    fn redaction_removes_every_passphrase() {
        let mut t = parse(serde_json::json!({"redundancy": "failover", "sources": [
            {"kind": "srt_listener", "name": "main", "passphrase": "0123456789"},
            {"kind": "srt_caller", "name": "backup", "address": "198.51.100.1:9000", "passphrase": "abcdefghijk"}]}));
        t.redact();
        let text = serde_json::to_string(&t).unwrap();
        assert!(
            !text.contains("0123456789") && !text.contains("abcdefghijk"),
            "{text}"
        );
    }

    #[test]
    fn push_targets_refuse_unusable_addresses() {
        let srt = |addr: &str| PushTarget::SrtCaller {
            address: addr.parse().unwrap(),
            stream_id: None,
            latency_ms: None,
        };
        assert_eq!(srt("203.0.113.1:9000").validate("target"), Ok(()));
        assert_eq!(
            srt("0.0.0.0:9000").validate("target").unwrap_err().field,
            "target.address"
        );
        assert_eq!(
            srt("239.1.1.1:9000").validate("").unwrap_err().field,
            "address"
        );
        let udp = PushTarget::Udp {
            address: "239.1.1.1:5000".parse().unwrap(),
        };
        assert_eq!(udp.validate(""), Ok(()), "UDP may go to a multicast group");
    }
}
