//! The Live Cloud data plane in the binary: [`DataPlane`] runs inside `stadion serve` beside
//! the control API; `stadion live` shows what it is doing, read over that HTTP API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;
use stadion_control::store::Scope;
use stadion_control::transport::{FlowSetup, PushOutput, PushTarget as StoredTarget};
use stadion_control::{ControlEvent, ControlPlane, StoreError};
use stadion_live::access::InProcess;
use stadion_live::flow::{Flow, FlowConfig};
use stadion_live::node::{LiveNode, NodeConfig, NodeHandle};
use stadion_live::output::push::{PushSpec, PushTarget};
use stadion_live::source::srt::IngestListener;
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receivers per flow and rights holder, with what they got and their SRT statistics.
    Outputs(ClientArgs),
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Base URL of `stadion serve`.
    #[arg(long, env = "STADION_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API token (prefer the environment variable: command lines are visible to other users).
    #[arg(long, env = "STADION_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn get(args: &ClientArgs, path: &str) -> anyhow::Result<Value> {
    let token = args
        .token
        .as_deref()
        .context("no API token: set STADION_TOKEN or pass --token")?;
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut response = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach stadion at {}", args.server))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        bail!(
            "GET {path}: HTTP {status}: {}",
            value["detail"].as_str().unwrap_or("")
        );
    }
    Ok(value)
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Outputs(args) => {
            let status = get(&args, "/api/v1/live/outputs")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{}", outputs_table(&status));
            }
            Ok(())
        }
    }
}

/// One row per receiver: who, where from, how much, and how its SRT connection fares.
fn outputs_table(status: &Value) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "flow",
        "rights holder",
        "peer",
        "via",
        "since",
        "MB",
        "Mb/s",
        "RTT ms",
        "retrans",
        "NAKed",
        "dropped",
        "in buffer",
    ]);
    for flow in status["flows"].as_array().into_iter().flatten() {
        let name = flow["flow"].as_str().unwrap_or("-");
        let receivers = flow["receivers"].as_array().map_or(&[][..], Vec::as_slice);
        if receivers.is_empty() {
            table.add_row([name, "(no receivers)"]);
        }
        for r in receivers {
            let srt = &r["srt"];
            let num = |v: &Value| v.as_f64().map_or("-".to_owned(), |n| format!("{n}"));
            table.add_row([
                name.to_owned(),
                r["key"]["rhb"].as_str().unwrap_or("-").to_owned(),
                r["key"]["peer"].as_str().unwrap_or("-").to_owned(),
                r["key"]["kind"].as_str().unwrap_or("-").to_owned(),
                r["connected_at"].as_str().unwrap_or("-").to_owned(),
                format!("{:.1}", r["bytes"].as_f64().unwrap_or(0.0) / 1e6),
                srt["send_rate_bps"]
                    .as_f64()
                    .map_or("-".to_owned(), |b| format!("{:.2}", b / 1e6)),
                srt["rtt_ms"]
                    .as_f64()
                    .map_or("-".to_owned(), |ms| format!("{ms:.2}")),
                num(&srt["packets_retransmitted"]),
                num(&srt["packets_send_loss"]),
                num(&srt["packets_send_dropped"]),
                num(&srt["send_buffer_packets"]),
            ]);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_lists_every_receiver_and_empty_flows() {
        let status = json!({
            "listen": "0.0.0.0:9000",
            "flows": [
                {"flow": "ath-100m", "bytes_in": 1, "chunks_dropped": 0, "receivers": [{
                    "key": {"rhb": "rhb-one", "peer": "203.0.113.7:4000", "kind": "srt_listener"},
                    "connected_at": "2026-07-24T10:00:00Z", "bytes": 2_500_000, "packets": 1900,
                    "srt": {"send_rate_bps": 20_000_000, "rtt_ms": 0.25, "packets_retransmitted": 3,
                            "packets_send_loss": 3, "packets_send_dropped": 0, "send_buffer_packets": 12}
                }]},
                {"flow": "swm-50m", "bytes_in": 0, "chunks_dropped": 0, "receivers": []}
            ]
        });
        let text = outputs_table(&status).to_string();
        assert!(text.contains("rhb-one"), "{text}");
        assert!(text.contains("20.00"), "{text}");
        assert!(text.contains("2.5"), "{text}");
        assert!(text.contains("(no receivers)"), "{text}");
    }
}

// ---- the data plane inside `stadion serve` --------------------------------------------------

/// Where the data plane listens.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Venue encoders publish here (`#!::r=<flow>,m=publish`).
    pub ingest: SocketAddr,
    /// Rights holders receive here (`#!::r=<flow>,u=<rhb>`).
    pub receive: SocketAddr,
    /// SRT latency offered to encoders and receivers.
    pub latency: Duration,
}

/// The running data plane: the receiver node and the flows it serves.
pub struct DataPlane {
    node: LiveNode,
    follower: tokio::task::JoinHandle<()>,
}

impl DataPlane {
    /// Starts the ingest listener, the receiver node and every flow the control plane holds,
    /// then follows flow changes (created, edited, deleted) for as long as it runs. Returns the
    /// data plane and its status routes for the HTTP server.
    pub async fn start(
        control: ControlPlane,
        settings: &LiveSettings,
    ) -> anyhow::Result<(DataPlane, axum::Router)> {
        let ingest = IngestListener::bind(settings.ingest, settings.latency)
            .await
            .with_context(|| format!("binding the SRT ingest listener on {}", settings.ingest))?;
        let port = Arc::new(InProcess::new(control.clone(), "node-1"));
        let node_config = NodeConfig {
            listen: settings.receive,
            latency: settings.latency,
            ..NodeConfig::default()
        };
        let node = LiveNode::start(port, node_config)
            .await
            .context("starting the receiver node")?;
        // Subscribe before reading the flows so that no change falls between the two.
        let events = control.subscribe();
        let mut flows = Flows {
            control: control.clone(),
            node: node.handle(),
            ingest: Arc::new(ingest),
            running: HashMap::new(),
        };
        for setup in control.flow_setups().await.context("reading the flows")? {
            flows.load(setup).await;
        }
        eprintln!(
            "stadion: live data plane: encoders publish to srt://{} , broadcasters receive from srt://{} ({} flows running)",
            settings.ingest,
            node.handle().listen_addr(),
            flows.running.len()
        );
        let router = stadion_live::output::api::router(control, node.handle());
        let follower = tokio::spawn(flows.follow(events));
        Ok((DataPlane { node, follower }, router))
    }

    /// Stops following changes, disconnects every receiver and stores their usage.
    pub async fn stop(self) {
        self.follower.abort();
        self.node.stop().await;
    }
}

/// The flows this node runs, keyed by the control plane's flow id.
struct Flows {
    control: ControlPlane,
    node: NodeHandle,
    ingest: Arc<IngestListener>,
    running: HashMap<Uuid, Flow>,
}

impl Flows {
    async fn follow(mut self, mut events: broadcast::Receiver<ControlEvent>) {
        loop {
            match events.recv().await {
                Ok(ControlEvent::FlowChanged { flow_id }) => self.reload(flow_id).await,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Changes were lost: reload everything rather than guess which.
                    tracing::warn!(missed, "flow changes lost; reloading every flow");
                    let ids: Vec<Uuid> = self.running.keys().copied().collect();
                    for id in ids {
                        self.stop(id).await;
                    }
                    match self.control.flow_setups().await {
                        Ok(setups) => {
                            for setup in setups {
                                self.load(setup).await;
                            }
                        }
                        Err(error) => tracing::error!(%error, "cannot read the flows"),
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn reload(&mut self, id: Uuid) {
        self.stop(id).await;
        match self.control.flow_setup(&id.to_string()).await {
            Ok(setup) => self.load(setup).await,
            Err(StoreError::NotFound(_)) => tracing::info!(flow = %id, "flow deleted"),
            Err(error) => tracing::error!(flow = %id, %error, "cannot read the flow"),
        }
    }

    async fn stop(&mut self, id: Uuid) {
        if let Some(flow) = self.running.remove(&id) {
            let _ = self.node.detach_flow(flow.name()).await;
            drop(flow);
        }
    }

    /// Starts a flow with its pushes; a flow that cannot start is logged and left out, the
    /// others run on.
    async fn load(&mut self, setup: FlowSetup) {
        let name = setup.flow.name.clone();
        let config = match flow_config(&setup.flow) {
            Ok(Some(config)) => config,
            Ok(None) => return, // no sources yet
            Err(error) => {
                tracing::error!(flow = %name, error = format!("{error:#}"), "flow not started");
                return;
            }
        };
        let flow = match Flow::start(config, Some(self.ingest.clone())).await {
            Ok(flow) => flow,
            Err(error) => {
                tracing::error!(flow = %name, %error, "flow not started");
                return;
            }
        };
        if let Err(error) = self.node.attach_flow(&name, flow.bus().clone()).await {
            tracing::error!(flow = %name, %error, "flow not receivable");
            return;
        }
        for output in setup.outputs {
            match self.push_spec(&name, &output).await {
                Ok(spec) => {
                    if let Err(error) = self.node.add_push(spec).await {
                        tracing::error!(flow = %name, output = %output.name, %error, "push not started");
                    }
                }
                Err(error) => {
                    tracing::error!(flow = %name, output = %output.name, %error, "push not started")
                }
            }
        }
        tracing::info!(flow = %name, "flow running");
        self.running.insert(setup.flow.id, flow);
    }

    async fn push_spec(&self, flow: &str, output: &PushOutput) -> Result<PushSpec, StoreError> {
        let rhb = self
            .control
            .store()
            .get_org(output.org_id, Scope::All)
            .await?
            .name;
        let target = match &output.target {
            StoredTarget::SrtCaller {
                address,
                stream_id,
                latency_ms,
            } => PushTarget::Srt {
                addr: *address,
                stream_id: stream_id.clone(),
                latency_ms: latency_ms.unwrap_or(DEFAULT_PUSH_LATENCY_MS),
            },
            StoredTarget::Udp { address } => PushTarget::Udp {
                addr: *address,
                ttl: DEFAULT_MULTICAST_TTL,
            },
        };
        Ok(PushSpec {
            flow: flow.to_owned(),
            rhb,
            target,
        })
    }
}

const DEFAULT_PUSH_LATENCY_MS: u64 = 120;
const DEFAULT_MULTICAST_TTL: u32 = 16;

/// The data plane's view of a flow's transport. The control plane stores the same JSON shape
/// the data plane reads, with two differences: the flow's name sits beside the transport,
/// and `none` redundancy (one source) is the data plane's default mode.
fn flow_config(flow: &stadion_control::model::Flow) -> anyhow::Result<Option<FlowConfig>> {
    let Some(transport) = &flow.transport else {
        return Ok(None);
    };
    if transport.sources.is_empty() {
        return Ok(None);
    }
    let mut value = serde_json::to_value(transport).context("encoding the transport")?;
    value["name"] = Value::String(flow.name.clone());
    if value["redundancy"] == "none" {
        value
            .as_object_mut()
            .context("transport is not an object")?
            .remove("redundancy");
    }
    serde_json::from_value(value)
        .map(Some)
        .with_context(|| format!("flow {:?}: transport the data plane cannot run", flow.name))
}
