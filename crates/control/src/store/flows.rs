//! Flows with their transport (sources, redundancy) and push outputs.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{
    Actor, Arg, Conditions, LICENCE_COLUMNS, NewAudit, Scope, Store, StoreError, licence_from_row,
    micros, now_micros, parse_enum, time, uuid,
};
use crate::model::{ControlEvent, Flow, LicenceState, Passphrase};
use crate::transport::{
    FailoverSettings, FieldError, FlowSetup, MergeSettings, PushOutput, PushTarget, Redundancy,
    Source, Transport, check_name,
};

const FLOW_COLUMNS: &str = "id, name, description, venue, event_code, created_at, redundancy, \
    failover_stall_timeout_ms, failover_degrade_errors, failover_recovery_ms, failover_revertive, \
    merge_window_ms";

const SOURCE_COLUMNS: &str =
    "flow_id, position, name, kind, address, interface, stream_id, passphrase, latency_ms";

const OUTPUT_COLUMNS: &str = "p.id, p.flow_id, p.licence_id, l.org_id, p.name, p.kind, p.address, \
    p.stream_id, p.latency_ms, p.created_at";

/// The editable descriptive fields of a flow (its name is fixed: receivers use it).
#[derive(Debug, Clone)]
pub struct FlowUpdate {
    pub description: String,
    pub venue: String,
    pub event_code: String,
}

/// A new push output.
#[derive(Debug, Clone)]
pub struct NewOutput {
    pub flow_id: Uuid,
    pub licence_id: Uuid,
    pub name: String,
    pub target: PushTarget,
}

/// Which push outputs to list.
#[derive(Debug, Clone, Default)]
pub struct OutputFilter {
    pub flow_id: Option<Uuid>,
    pub org_id: Option<Uuid>,
}

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {text:?}"))
}

fn non_negative(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} {v}")))
}

fn opt_u64(row: &AnyRow, column: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} {v}"))))
        .transpose()
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    // Validation bounds these far below i64::MAX.
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn flow_from_row(row: &AnyRow) -> Result<Flow, StoreError> {
    let redundancy: String = row.try_get("redundancy")?;
    let degrade: i64 = row.try_get("failover_degrade_errors")?;
    Ok(Flow {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        venue: row.try_get("venue")?,
        event_code: row.try_get("event_code")?,
        created_at: time(row.try_get("created_at")?)?,
        transport: Some(Transport {
            redundancy: parse_enum(&redundancy, Redundancy::parse)?,
            failover: FailoverSettings {
                stall_timeout_ms: non_negative(row, "failover_stall_timeout_ms")?,
                degrade_errors: u32::try_from(degrade)
                    .map_err(|_| StoreError::Corrupt(format!("degrade_errors {degrade}")))?,
                recovery_ms: non_negative(row, "failover_recovery_ms")?,
                revertive: row.try_get::<i64, _>("failover_revertive")? != 0,
            },
            merge: MergeSettings {
                window_ms: non_negative(row, "merge_window_ms")?,
            },
            sources: Vec::new(),
        }),
    })
}

fn source_from_row(row: &AnyRow) -> Result<Source, StoreError> {
    let name: String = row.try_get("name")?;
    let kind: String = row.try_get("kind")?;
    let address = || -> Result<SocketAddr, StoreError> {
        let text: Option<String> = row.try_get("address")?;
        let text = text.unwrap_or_default();
        text.parse().map_err(|_| corrupt("address", &text))
    };
    let interface = || -> Result<Option<Ipv4Addr>, StoreError> {
        let text: Option<String> = row.try_get("interface")?;
        text.map(|t| t.parse().map_err(|_| corrupt("interface", &t)))
            .transpose()
    };
    let passphrase = || -> Result<Option<Passphrase>, StoreError> {
        let text: Option<String> = row.try_get("passphrase")?;
        text.map(|t| Passphrase::new(t).map_err(|_| StoreError::Corrupt("passphrase".into())))
            .transpose()
    };
    Ok(match kind.as_str() {
        "srt_listener" => Source::SrtListener {
            name,
            passphrase: passphrase()?,
        },
        "srt_caller" => Source::SrtCaller {
            name,
            address: address()?,
            stream_id: row.try_get("stream_id")?,
            passphrase: passphrase()?,
            latency_ms: opt_u64(row, "latency_ms")?,
        },
        "udp" => Source::Udp {
            name,
            address: address()?,
            interface: interface()?,
        },
        "rtp" => Source::Rtp {
            name,
            address: address()?,
            interface: interface()?,
        },
        other => return Err(corrupt("source kind", other)),
    })
}

fn output_from_row(row: &AnyRow) -> Result<PushOutput, StoreError> {
    let text: String = row.try_get("address")?;
    let address: SocketAddr = text.parse().map_err(|_| corrupt("address", &text))?;
    let kind: String = row.try_get("kind")?;
    let target = match kind.as_str() {
        "srt_caller" => PushTarget::SrtCaller {
            address,
            stream_id: row.try_get("stream_id")?,
            latency_ms: opt_u64(row, "latency_ms")?,
        },
        "udp" => PushTarget::Udp { address },
        other => return Err(corrupt("output kind", other)),
    };
    Ok(PushOutput {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        flow_id: uuid(&row.try_get::<String, _>("flow_id")?)?,
        licence_id: uuid(&row.try_get::<String, _>("licence_id")?)?,
        org_id: uuid(&row.try_get::<String, _>("org_id")?)?,
        name: row.try_get("name")?,
        target,
        created_at: time(row.try_get("created_at")?)?,
    })
}

/// Fills each flow's sources from one query.
async fn attach_sources(
    conn: &mut AnyConnection,
    flows: &mut [Flow],
    only: Option<Uuid>,
) -> Result<(), StoreError> {
    let rows = match only {
        Some(id) => {
            sqlx::query(&format!(
                "SELECT {SOURCE_COLUMNS} FROM flow_sources WHERE flow_id = $1 ORDER BY position"
            ))
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {SOURCE_COLUMNS} FROM flow_sources ORDER BY flow_id, position"
            ))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut by_flow: HashMap<Uuid, Vec<Source>> = HashMap::new();
    for row in &rows {
        let flow_id = uuid(&row.try_get::<String, _>("flow_id")?)?;
        by_flow
            .entry(flow_id)
            .or_default()
            .push(source_from_row(row)?);
    }
    for flow in flows {
        if let Some(t) = &mut flow.transport {
            t.sources = by_flow.remove(&flow.id).unwrap_or_default();
        }
    }
    Ok(())
}

/// Writes a flow's redundancy settings and replaces its sources (inside the caller's
/// transaction). UDP/RTP addresses another flow binds are a conflict naming the source.
async fn write_transport(
    conn: &mut AnyConnection,
    flow_id: Uuid,
    t: &Transport,
) -> Result<(), StoreError> {
    t.validate()?;
    let f = &t.failover;
    sqlx::query(
        "UPDATE flows SET redundancy = $1, failover_stall_timeout_ms = $2, \
         failover_degrade_errors = $3, failover_recovery_ms = $4, failover_revertive = $5, \
         merge_window_ms = $6 WHERE id = $7",
    )
    .bind(t.redundancy.as_str())
    .bind(opt_i64(Some(f.stall_timeout_ms)))
    .bind(i64::from(f.degrade_errors))
    .bind(opt_i64(Some(f.recovery_ms)))
    .bind(i64::from(f.revertive))
    .bind(opt_i64(Some(t.merge.window_ms)))
    .bind(flow_id.to_string())
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM flow_sources WHERE flow_id = $1")
        .bind(flow_id.to_string())
        .execute(&mut *conn)
        .await?;
    for (i, source) in t.sources.iter().enumerate() {
        let bind_key = source.bind_address().map(|a| a.to_string());
        if let Some(key) = &bind_key {
            let taken = sqlx::query(
                "SELECT f.name FROM flow_sources s JOIN flows f ON f.id = s.flow_id \
                 WHERE s.bind_key = $1",
            )
            .bind(key.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = taken {
                let other: String = row.try_get(0)?;
                return Err(StoreError::Conflict {
                    field: format!("sources[{i}].address"),
                    message: format!("flow {other:?} already receives on {key}"),
                });
            }
        }
        let (address, interface, stream_id, passphrase, latency) = match source {
            Source::SrtListener { passphrase, .. } => (None, None, None, passphrase.clone(), None),
            Source::SrtCaller {
                address,
                stream_id,
                passphrase,
                latency_ms,
                ..
            } => (
                Some(address.to_string()),
                None,
                stream_id.clone(),
                passphrase.clone(),
                opt_i64(*latency_ms),
            ),
            Source::Udp {
                address, interface, ..
            }
            | Source::Rtp {
                address, interface, ..
            } => (
                Some(address.to_string()),
                interface.map(|i| i.to_string()),
                None,
                None,
                None,
            ),
        };
        sqlx::query(
            "INSERT INTO flow_sources (flow_id, position, name, kind, address, interface, \
             stream_id, passphrase, latency_ms, bind_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(flow_id.to_string())
        .bind(i as i64)
        .bind(source.name())
        .bind(source.kind())
        .bind(address)
        .bind(interface)
        .bind(stream_id)
        .bind(passphrase.map(|p| p.expose().to_owned()))
        .bind(latency)
        .bind(bind_key)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::from_sqlx(e, "sources"))?;
    }
    Ok(())
}

/// What the audit log says about a transport: kinds and names, never passphrases.
fn transport_summary(t: &Transport) -> String {
    let sources: Vec<String> = t
        .sources
        .iter()
        .map(|s| format!("{} {}", s.kind(), s.name()))
        .collect();
    format!(
        "redundancy {}, sources [{}]",
        t.redundancy.as_str(),
        sources.join(", ")
    )
}

/// The event of a change to flow `id`, its transport or its push outputs.
fn flow_changed(id: &Uuid) -> ControlEvent {
    ControlEvent::FlowChanged { flow_id: *id }
}

fn flow_audit(actor: &Actor, action: &'static str, flow_id: Uuid, reason: String) -> NewAudit {
    let mut a = NewAudit::change(actor, action, format!("flow/{flow_id}"), reason);
    a.flow_id = Some(flow_id);
    a
}

impl Store {
    /// Creates a flow with its transport (none configured when `flow.transport` is `None`).
    pub async fn create_flow(&self, actor: &Actor, flow: Flow) -> Result<Flow, StoreError> {
        let actor = actor.clone();
        self.write("name", Some(|f: &Flow| flow_changed(&f.id)), move |c| {
            Box::pin(async move {
                let mut flow = flow;
                sqlx::query(
                    "INSERT INTO flows (id, name, description, venue, event_code, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(flow.id.to_string())
                .bind(flow.name.as_str())
                .bind(flow.description.as_str())
                .bind(flow.venue.as_str())
                .bind(flow.event_code.as_str())
                .bind(micros(flow.created_at))
                .execute(&mut *c)
                .await
                .map_err(|e| StoreError::from_sqlx(e, "name"))?;
                let transport = flow.transport.take().unwrap_or_default();
                write_transport(c, flow.id, &transport).await?;
                let reason = format!("{}: {}", flow.name, transport_summary(&transport));
                flow.transport = Some(transport);
                Ok((
                    flow.clone(),
                    vec![flow_audit(&actor, "flow.create", flow.id, reason)],
                ))
            })
        })
        .await
    }

    /// Every flow with its transport (passphrases included), by name.
    pub async fn list_flows(&self) -> Result<Vec<Flow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!("SELECT {FLOW_COLUMNS} FROM flows ORDER BY name"))
            .fetch_all(&mut *conn)
            .await?;
        let mut flows = rows
            .iter()
            .map(flow_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        attach_sources(&mut conn, &mut flows, None).await?;
        Ok(flows)
    }

    /// One flow by id or name, with its transport.
    pub async fn find_flow(&self, id_or_name: &str) -> Result<Flow, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(&format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE id = $1 OR name = $1"
        ))
        .bind(id_or_name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("flow"))?;
        let mut flows = vec![flow_from_row(&row)?];
        let id = flows[0].id;
        attach_sources(&mut conn, &mut flows, Some(id)).await?;
        Ok(flows.remove(0))
    }

    /// One flow by id, with its transport.
    pub async fn get_flow(&self, id: Uuid) -> Result<Flow, StoreError> {
        self.find_flow(&id.to_string()).await
    }

    /// Changes a flow's description, venue and event code.
    pub async fn update_flow(
        &self,
        actor: &Actor,
        id: Uuid,
        update: FlowUpdate,
    ) -> Result<Flow, StoreError> {
        let actor = actor.clone();
        self.write("id", Some(flow_changed), move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE flows SET description = $1, venue = $2, event_code = $3 WHERE id = $4",
                )
                .bind(update.description.as_str())
                .bind(update.venue.as_str())
                .bind(update.event_code.as_str())
                .bind(id.to_string())
                .execute(&mut *c)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("flow"));
                }
                let reason = format!("venue {:?}, event {:?}", update.venue, update.event_code);
                Ok((id, vec![flow_audit(&actor, "flow.update", id, reason)]))
            })
        })
        .await?;
        self.get_flow(id).await
    }

    /// Replaces a flow's transport as a whole (validated first).
    pub async fn set_transport(
        &self,
        actor: &Actor,
        id: Uuid,
        transport: Transport,
    ) -> Result<Flow, StoreError> {
        let actor = actor.clone();
        self.write("sources", Some(flow_changed), move |c| {
            Box::pin(async move {
                let exists = sqlx::query("SELECT id FROM flows WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *c)
                    .await?;
                if exists.is_none() {
                    return Err(StoreError::NotFound("flow"));
                }
                write_transport(c, id, &transport).await?;
                Ok((
                    id,
                    vec![flow_audit(
                        &actor,
                        "flow.transport",
                        id,
                        transport_summary(&transport),
                    )],
                ))
            })
        })
        .await?;
        self.get_flow(id).await
    }

    /// Deletes a flow that no licence (of any state) refers to: licences and their audit
    /// trail keep their flow.
    pub async fn delete_flow(&self, actor: &Actor, id: Uuid) -> Result<Flow, StoreError> {
        let flow = self.get_flow(id).await?;
        let actor = actor.clone();
        let name = flow.name.clone();
        self.write("id", Some(flow_changed), move |c| {
            Box::pin(async move {
                let licences: i64 = sqlx::query("SELECT COUNT(*) FROM licences WHERE flow_id = $1")
                    .bind(id.to_string())
                    .fetch_one(&mut *c)
                    .await?
                    .try_get(0)?;
                if licences > 0 {
                    return Err(StoreError::Conflict {
                        field: "id".into(),
                        message: format!("{licences} licence(s) refer to this flow; a flow with licences stays (revoke them instead)"),
                    });
                }
                sqlx::query("DELETE FROM flow_sources WHERE flow_id = $1").bind(id.to_string()).execute(&mut *c).await?;
                let done = sqlx::query("DELETE FROM flows WHERE id = $1").bind(id.to_string()).execute(&mut *c).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("flow"));
                }
                Ok((id, vec![flow_audit(&actor, "flow.delete", id, name)]))
            })
        })
        .await?;
        Ok(flow)
    }

    // ---- push outputs ---------------------------------------------------------------------

    /// Adds a push output. The licence must be this flow's and not revoked; the target must lie
    /// in the licence's allowed networks; a licence that requires encryption takes SRT only.
    pub async fn create_output(
        &self,
        actor: &Actor,
        new: NewOutput,
    ) -> Result<PushOutput, StoreError> {
        check_name("name", &new.name)?;
        new.target.validate("")?;
        let actor = actor.clone();
        self.write("name", Some(|o: &PushOutput| flow_changed(&o.flow_id)), move |c| {
            Box::pin(async move {
                let row = sqlx::query(&format!("SELECT {LICENCE_COLUMNS} FROM licences l WHERE l.id = $1"))
                    .bind(new.licence_id.to_string())
                    .fetch_optional(&mut *c)
                    .await?
                    .ok_or_else(|| FieldError { field: "licence_id".into(), message: "no such licence".into() })?;
                let licence = licence_from_row(&row)?;
                let field_error = |field: &str, message: &str| -> StoreError {
                    FieldError { field: field.into(), message: message.into() }.into()
                };
                if licence.flow_id != new.flow_id {
                    return Err(field_error("licence_id", "the licence is for another flow"));
                }
                if licence.state == LicenceState::Revoked {
                    return Err(field_error("licence_id", "the licence is revoked"));
                }
                let ip = new.target.address().ip().to_canonical();
                if !licence.allowed_networks.iter().any(|n| n.contains(&ip)) {
                    return Err(field_error("address", "outside the licence's allowed networks"));
                }
                if licence.encryption_required && matches!(new.target, PushTarget::Udp { .. }) {
                    return Err(field_error("kind", "the licence requires encryption, which UDP does not carry; use srt_caller"));
                }
                let out = PushOutput {
                    id: Uuid::new_v4(),
                    flow_id: new.flow_id,
                    licence_id: new.licence_id,
                    org_id: licence.org_id,
                    name: new.name,
                    target: new.target,
                    created_at: now_micros(),
                };
                let (stream_id, latency) = match &out.target {
                    PushTarget::SrtCaller { stream_id, latency_ms, .. } => (stream_id.clone(), opt_i64(*latency_ms)),
                    PushTarget::Udp { .. } => (None, None),
                };
                sqlx::query(
                    "INSERT INTO push_outputs (id, flow_id, licence_id, name, kind, address, stream_id, latency_ms, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(out.id.to_string())
                .bind(out.flow_id.to_string())
                .bind(out.licence_id.to_string())
                .bind(out.name.as_str())
                .bind(out.target.kind())
                .bind(out.target.address().to_string())
                .bind(stream_id)
                .bind(latency)
                .bind(micros(out.created_at))
                .execute(&mut *c)
                .await
                .map_err(|e| StoreError::from_sqlx(e, "name"))?;
                let mut a = NewAudit::change(
                    &actor,
                    "output.create",
                    format!("output/{}", out.id),
                    format!("{} {} to {}", out.target.kind(), out.name, out.target.address()),
                );
                a.org_id = Some(out.org_id);
                a.flow_id = Some(out.flow_id);
                a.licence_id = Some(out.licence_id);
                Ok((out, vec![a]))
            })
        })
        .await
    }

    /// Push outputs, oldest first; a rights holder sees its own only.
    pub async fn list_outputs(
        &self,
        filter: &OutputFilter,
        scope: Scope,
    ) -> Result<Vec<PushOutput>, StoreError> {
        let mut cond = Conditions::default();
        if let Scope::Org(id) = scope {
            cond.push_uuid("l.org_id", Some(id));
        }
        cond.push_uuid("l.org_id", filter.org_id);
        cond.push_uuid("p.flow_id", filter.flow_id);
        let sql = format!(
            "SELECT {OUTPUT_COLUMNS} FROM push_outputs p JOIN licences l ON l.id = p.licence_id {} \
             ORDER BY p.created_at, p.id",
            cond.clause()
        );
        let rows = cond.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(output_from_row).collect()
    }

    /// One push output; another rights holder's is not found.
    pub async fn get_output(&self, id: Uuid, scope: Scope) -> Result<PushOutput, StoreError> {
        let mut cond = Conditions::default();
        cond.push_uuid("p.id", Some(id));
        if let Scope::Org(org) = scope {
            cond.push("l.org_id =", Arg::Text(org.to_string()));
        }
        let sql = format!(
            "SELECT {OUTPUT_COLUMNS} FROM push_outputs p JOIN licences l ON l.id = p.licence_id {}",
            cond.clause()
        );
        let row = cond
            .bind(sqlx::query(&sql))
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("output"))?;
        output_from_row(&row)
    }

    pub async fn delete_output(&self, actor: &Actor, id: Uuid) -> Result<PushOutput, StoreError> {
        let out = self.get_output(id, Scope::All).await?;
        let actor = actor.clone();
        let o = out.clone();
        self.write("id", Some(flow_changed), move |c| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM push_outputs WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *c)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("output"));
                }
                let mut a = NewAudit::change(
                    &actor,
                    "output.delete",
                    format!("output/{id}"),
                    o.name.clone(),
                );
                a.org_id = Some(o.org_id);
                a.flow_id = Some(o.flow_id);
                a.licence_id = Some(o.licence_id);
                Ok((o.flow_id, vec![a]))
            })
        })
        .await?;
        Ok(out)
    }

    /// Every flow with its transport and push outputs: what a data plane runs.
    pub async fn flow_setups(&self) -> Result<Vec<FlowSetup>, StoreError> {
        let flows = self.list_flows().await?;
        let mut outputs: HashMap<Uuid, Vec<PushOutput>> = HashMap::new();
        for out in self
            .list_outputs(&OutputFilter::default(), Scope::All)
            .await?
        {
            outputs.entry(out.flow_id).or_default().push(out);
        }
        Ok(flows
            .into_iter()
            .map(|flow| {
                let outputs = outputs.remove(&flow.id).unwrap_or_default();
                FlowSetup { flow, outputs }
            })
            .collect())
    }

    /// One flow (by id or name) with its transport and push outputs.
    pub async fn flow_setup(&self, id_or_name: &str) -> Result<FlowSetup, StoreError> {
        let flow = self.find_flow(id_or_name).await?;
        let filter = OutputFilter {
            flow_id: Some(flow.id),
            org_id: None,
        };
        let outputs = self.list_outputs(&filter, Scope::All).await?;
        Ok(FlowSetup { flow, outputs })
    }
}
