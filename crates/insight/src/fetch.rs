//! Reading a [`Snapshot`] through the control plane's HTTP API, as any admin command does:
//! the token's scope applies, so a rights holder's snapshot holds only its own organisation.
//!
//! The API lists at most 1000 sessions per request (newest first) and reports usage per
//! period, so sessions are asked per licence when the first list is full, and usage is
//! asked hour by hour for the hours some session was connected in (every delivery belongs
//! to a session), or for every hour of the period when the sessions could not all be read.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::de::DeserializeOwned;

use crate::InsightError;
use crate::occupancy::Resolution;
use crate::records::{
    AuditPage, Flow, HourUsage, Licence, Org, Session, Snapshot, UsageRow, decode,
};

/// The most the API returns per request.
const PAGE: usize = 1000;

/// The control plane's API: `GET path` (with its query string), the answer as JSON.
pub trait Api {
    fn get(&mut self, path: &str) -> Result<serde_json::Value, String>;
}

/// What to load; without `from`, from the first organisation's creation or the first session
/// (whichever is earlier: everything); without `until`, up to now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

fn get<T: DeserializeOwned>(api: &mut impl Api, path: &str) -> Result<T, InsightError> {
    let answer = api.get(path).map_err(|message| InsightError::Api {
        path: path.to_owned(),
        message,
    })?;
    decode(path, answer)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads everything in `period` as of `now`.
pub fn fetch(
    api: &mut impl Api,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Snapshot, InsightError> {
    let orgs: Vec<Org> = get(api, "/api/v1/orgs")?;
    let flows: Vec<Flow> = get(api, "/api/v1/flows")?;
    let licences: Vec<Licence> = get(api, "/api/v1/licences")?;
    let mut notes = Vec::new();

    let mut sessions: Vec<Session> = get(api, &format!("/api/v1/sessions?limit={PAGE}"))?;
    let mut complete = sessions.len() < PAGE;
    if !complete {
        sessions.clear();
        complete = true;
        for l in &licences {
            let path = format!("/api/v1/sessions?licence_id={}&limit={PAGE}", l.id);
            let some: Vec<Session> = get(api, &path)?;
            if some.len() == PAGE {
                complete = false;
                notes.push(format!(
                    "licence {} has more than {PAGE} sessions: only its newest {PAGE} are loaded \
                     (the API has no older pages); sessions and receivers_hourly miss the older ones",
                    l.id
                ));
            }
            sessions.extend(some);
        }
    }
    let until = period.until.unwrap_or(now);
    let from = period.from.unwrap_or_else(|| {
        let orgs = orgs.iter().map(|o| o.created_at);
        let first = orgs.chain(sessions.iter().map(|x| x.connected_at)).min();
        first.unwrap_or(until).min(until - Duration::hours(1))
    });
    if until <= from {
        return Err(InsightError::Period {
            from: stamp(from),
            until: stamp(until),
        });
    }
    sessions.retain(|x| x.connected_at < until && x.disconnected_at.is_none_or(|d| d > from));

    let mut audit = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut path = format!(
            "/api/v1/audit?since={}&until={}&limit={PAGE}",
            stamp(from),
            stamp(until)
        );
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let page: AuditPage = get(api, &path)?;
        audit.extend(page.entries);
        match page.next_after {
            Some(next) if after != Some(next) => after = Some(next),
            _ => break,
        }
    }

    let hours = if complete {
        session_hours(&sessions, from, until, now)
    } else {
        all_hours(from, until)
    };
    let mut usage = Vec::new();
    for hour in hours {
        let start = DateTime::from_timestamp(hour, 0).unwrap_or_default();
        let path = format!(
            "/api/v1/usage?since={}&until={}",
            stamp(start),
            stamp(start + Duration::hours(1))
        );
        let rows: Vec<UsageRow> = get(api, &path)?;
        usage.push(HourUsage { hour: start, rows });
    }

    Ok(Snapshot {
        as_of: now,
        from,
        until,
        orgs,
        flows,
        licences,
        sessions,
        usage,
        audit,
        notes,
    })
}

/// Starts (seconds) of the hours in `[from, until)` in which some session was connected.
pub fn session_hours(
    sessions: &[Session],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<i64> {
    let h = Resolution::Hour;
    let mut hours = BTreeSet::new();
    for x in sessions {
        let start = x.connected_at.max(from).timestamp();
        let end = x.disconnected_at.unwrap_or(now).min(until).timestamp();
        let mut hour = h.floor(start);
        // The hour of the end itself: a delivery reported at disconnection is counted there.
        while hour <= h.floor(end) {
            hours.insert(hour);
            hour += h.seconds();
        }
    }
    hours
        .into_iter()
        .filter(|&t| t < until.timestamp())
        .collect()
}

fn all_hours(from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<i64> {
    let h = Resolution::Hour;
    (h.floor(from.timestamp())..until.timestamp())
        .step_by(h.seconds() as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    /// Canned answers by path; records every path asked.
    struct Canned {
        answers: BTreeMap<String, Value>,
        asked: Vec<String>,
    }

    impl Api for Canned {
        fn get(&mut self, path: &str) -> Result<Value, String> {
            self.asked.push(path.to_owned());
            self.answers
                .get(path)
                .cloned()
                .or_else(|| path.starts_with("/api/v1/usage").then(|| json!([])))
                .ok_or_else(|| format!("HTTP 404 for {path}"))
        }
    }

    const ORG: &str = "0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a23";

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 24, h, m, 0).unwrap()
    }

    fn session(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> Value {
        json!({"id": uuid::Uuid::new_v4(), "licence_id": uuid::Uuid::new_v4(), "org_id": ORG,
               "flow_id": uuid::Uuid::new_v4(), "kind": "srt_listener", "peer": "203.0.113.7:40000",
               "connected_at": from, "disconnected_at": to, "disconnect_reason": null, "packets": 1, "bytes": 1316})
    }

    fn canned(sessions: Vec<Value>) -> Canned {
        let mut answers = BTreeMap::new();
        answers.insert(
            "/api/v1/orgs".to_owned(),
            json!([{"id": ORG, "name": "rhb-one", "kind": "rights_holder", "created_at": t(8, 15)}]),
        );
        answers.insert("/api/v1/flows".to_owned(), json!([]));
        answers.insert("/api/v1/licences".to_owned(), json!([]));
        answers.insert(
            "/api/v1/sessions?limit=1000".to_owned(),
            Value::Array(sessions),
        );
        Canned {
            answers,
            asked: Vec::new(),
        }
    }

    #[test]
    fn usage_is_asked_for_the_hours_sessions_were_connected() {
        let mut api = canned(vec![
            session(t(9, 30), Some(t(11, 5))),
            session(t(13, 59), None),
        ]);
        let first = "/api/v1/audit?since=2026-07-24T08:15:00.000000Z&until=2026-07-24T14:30:00.000000Z&limit=1000";
        api.answers.insert(
            first.to_owned(),
            json!({"entries": [{"seq": 7, "at": t(9, 0), "actor": "live", "action": "access.decide",
                    "subject": "access/rhb-one/final", "org_id": ORG, "flow_id": null, "licence_id": null,
                    "decision": "deny", "reason": "no_licence: 203.0.113.7 (0 connected)"}], "next_after": 7}),
        );
        api.answers.insert(
            format!("{first}&after=7"),
            json!({"entries": [], "next_after": null}),
        );
        let snap = fetch(&mut api, Period::default(), t(14, 30)).unwrap();
        assert_eq!(snap.from, t(8, 15));
        assert_eq!(snap.audit.len(), 1);
        let hours: Vec<_> = snap.usage.iter().map(|u| u.hour).collect();
        assert_eq!(hours, [t(9, 0), t(10, 0), t(11, 0), t(13, 0), t(14, 0)]);
        assert!(api.asked.contains(
            &"/api/v1/usage?since=2026-07-24T10:00:00.000000Z&until=2026-07-24T11:00:00.000000Z".to_owned()
        ));
        assert!(snap.notes.is_empty());
    }

    #[test]
    fn a_full_session_list_is_asked_again_per_licence() {
        let full: Vec<Value> = (0..PAGE).map(|_| session(t(9, 0), Some(t(9, 1)))).collect();
        let mut api = canned(full);
        let licence = "0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a22";
        api.answers.insert(
            "/api/v1/licences".to_owned(),
            json!([{"id": licence, "org_id": ORG, "flow_id": ORG, "valid_from": t(0, 0), "valid_until": t(23, 0),
                    "max_concurrent_receivers": 2, "allowed_networks": ["0.0.0.0/0"], "encryption_required": true,
                    "passphrase": "never-read-this-0001", "state": "active", "created_at": t(8, 0)}]),
        );
        let per_licence: Vec<Value> = (0..PAGE)
            .map(|_| session(t(10, 0), Some(t(10, 1))))
            .collect();
        api.answers.insert(
            format!("/api/v1/sessions?licence_id={licence}&limit=1000"),
            Value::Array(per_licence),
        );
        api.answers.insert(
            "/api/v1/audit?since=2026-07-24T09:00:00.000000Z&until=2026-07-24T12:00:00.000000Z&limit=1000".to_owned(),
            json!({"entries": [], "next_after": null}),
        );
        let period = Period {
            from: Some(t(9, 0)),
            until: Some(t(12, 0)),
        };
        let snap = fetch(&mut api, period, t(12, 30)).unwrap();
        assert_eq!(snap.sessions.len(), PAGE);
        assert_eq!(snap.notes.len(), 1, "{:?}", snap.notes);
        // Sessions incomplete: every hour of the period is asked.
        assert_eq!(snap.usage.len(), 3);
    }

    #[test]
    fn api_failures_and_bad_periods_say_where() {
        let mut api = canned(vec![]);
        api.answers.remove("/api/v1/flows");
        let err = fetch(&mut api, Period::default(), t(12, 0))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "GET /api/v1/flows: HTTP 404 for /api/v1/flows");
        let mut api = canned(vec![]);
        let backwards = Period {
            from: Some(t(12, 0)),
            until: Some(t(11, 0)),
        };
        assert!(matches!(
            fetch(&mut api, backwards, t(12, 0)),
            Err(InsightError::Period { .. })
        ));
    }
}
