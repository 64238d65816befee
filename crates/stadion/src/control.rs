//! The control plane's command line: `stadion serve` runs the service; `stadion org`, `user`,
//! `token`, `flow`, `licence` and `audit` administer it over its HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Deserialize;
use serde_json::{Value, json};
use stadion_control::{ControlPlane, NodeConfig};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: HTTP API, access decisions, audit log.
    ///
    /// On first start it creates the host organisation and prints a one-time admin token to
    /// standard error (or adopts STADION_ADMIN_TOKEN). Settings come from flags, then STADION_*
    /// environment variables, then the --config file, then the defaults.
    Serve(ServeArgs),
    /// Organisations: the host and the rights-holding broadcasters.
    Org {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Users of an organisation (tokens belong to users).
    User {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens: mint (shown once), list, revoke.
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Flows: the feeds the host offers.
    Flow {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: FlowCommand,
    },
    /// Licences: which rights holder may receive which flow, when, from where.
    Licence {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: LicenceCommand,
    },
    /// Push outputs: a flow sent to a rights holder's own SRT listener or UDP address.
    Output {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: OutputCommand,
    },
    /// Delivered volume per rights holder and flow (for billing).
    Usage {
        #[command(flatten)]
        filter: OrgFlowFilter,
        /// From this hour on (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
    /// Receiver sessions, newest first.
    Sessions {
        #[command(flatten)]
        filter: OrgFlowFilter,
        /// Only sessions connected now.
        #[arg(long)]
        open: bool,
        /// Most sessions to show (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Read the audit log (oldest first; page with --after).
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        query: AuditArgs,
    },
}

/// The server to ask and an optional organisation and flow to narrow a report to.
#[derive(Debug, Args)]
pub struct OrgFlowFilter {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this organisation (name or id).
    #[arg(long)]
    org: Option<String>,
    /// Only this flow (name or id).
    #[arg(long)]
    flow: Option<String>,
}

impl OrgFlowFilter {
    /// The client, and the query string of the filter (organisation and flow resolved to
    /// ids) followed by the `extra` parameters that are set.
    fn query(self, extra: &[(&str, Option<String>)]) -> anyhow::Result<(Client, String)> {
        let c = Client::new(self.client)?;
        let org = self
            .org
            .map(|o| c.resolve("/api/v1/orgs", "organisation", &o))
            .transpose()?;
        let flow = self
            .flow
            .map(|f| c.resolve("/api/v1/flows", "flow", &f))
            .transpose()?;
        let mut pairs = vec![("org_id", org), ("flow_id", flow)];
        pairs.extend_from_slice(extra);
        Ok((c, query_string(&pairs)))
    }
}

// ---- serve --------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the embedded SQLite store [default: ./stadion-data].
    #[arg(long, env = "STADION_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address and port the HTTP API listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "STADION_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Store URL: `postgres://USER@HOST:PORT/DB` for PostgreSQL, `sqlite://PATH` for a SQLite
    /// file [default: sqlite://DATA_DIR/stadion.db].
    #[arg(long, env = "STADION_STORE", value_name = "URL")]
    store: Option<String>,
    /// Name of the host organisation created on first start [default: host].
    #[arg(long, env = "STADION_HOST_NAME", value_name = "NAME")]
    host_name: Option<String>,
    /// This node's name among the nodes sharing the store: stable across restarts (the
    /// receiver sessions a crash left open are closed at the next start) and unique
    /// [default: the machine's host name].
    #[arg(long, env = "STADION_NODE", value_name = "NAME")]
    node: Option<String>,
    /// UDP address where venue encoders publish flows over SRT [default: 0.0.0.0:9000].
    #[arg(long, env = "STADION_SRT_INGEST", value_name = "ADDR:PORT")]
    srt_ingest: Option<SocketAddr>,
    /// UDP address where broadcasters receive flows over SRT [default: 0.0.0.0:9001].
    #[arg(long, env = "STADION_SRT_RECEIVE", value_name = "ADDR:PORT")]
    srt_receive: Option<SocketAddr>,
    /// SRT latency offered to encoders and broadcasters, in milliseconds [default: 120].
    #[arg(long, env = "STADION_SRT_LATENCY_MS", value_name = "MS")]
    srt_latency_ms: Option<u64>,
    /// TOML file with any of `data_dir`, `listen`, `store`, `host_name`, `node`, `srt_ingest`,
    /// `srt_receive`, `srt_latency_ms`; flags and environment variables override it.
    #[arg(long, env = "STADION_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The `--config` file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    store: Option<String>,
    host_name: Option<String>,
    node: Option<String>,
    srt_ingest: Option<SocketAddr>,
    srt_receive: Option<SocketAddr>,
    srt_latency_ms: Option<u64>,
}

/// Settings after merging flags > environment > file > defaults.
#[derive(Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub store: String,
    pub host_name: String,
    pub node: String,
    pub live: crate::live::LiveSettings,
}

impl ServeArgs {
    fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("config file {}", path.display()))?
            }
            None => ConfigFile::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("stadion-data"));
        let store = match self.store.or(file.store) {
            Some(url) => url,
            None => format!("sqlite://{}", data_dir.join("stadion.db").display()),
        };
        Ok(ServeConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            host_name: self
                .host_name
                .or(file.host_name)
                .unwrap_or_else(|| "host".into()),
            node: self
                .node
                .or(file.node)
                .unwrap_or_else(|| NodeConfig::from_host().name),
            data_dir,
            store,
            live: crate::live::LiveSettings {
                ingest: self
                    .srt_ingest
                    .or(file.srt_ingest)
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9000))),
                receive: self
                    .srt_receive
                    .or(file.srt_receive)
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9001))),
                latency: std::time::Duration::from_millis(
                    self.srt_latency_ms.or(file.srt_latency_ms).unwrap_or(120),
                ),
            },
        })
    }
}

/// `stadion serve`: build the control plane, then run the services on it.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let control = open_control_plane(&config).await?;
        run_services(&config, control).await
    })
}

/// Opens (and on first start bootstraps) the control plane described by `config`.
pub async fn open_control_plane(config: &ServeConfig) -> anyhow::Result<ControlPlane> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // The data directory holds the node's decision spool on a PostgreSQL store.
    let node = NodeConfig {
        data_dir: Some(config.data_dir.clone()),
        ..NodeConfig::named(&config.node)
    };
    let control = ControlPlane::open_node(&config.store, node)
        .await
        .with_context(|| format!("opening the store {}", redact_url(&config.store)))?;
    let preset = std::env::var("STADION_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let adopted = preset.is_some();
    match control
        .bootstrap(&config.host_name, preset)
        .await
        .context("creating the host organisation")?
    {
        Some(_) if adopted => eprintln!(
            "stadion: first start: host organisation {:?} created; admin token taken from STADION_ADMIN_TOKEN",
            config.host_name
        ),
        Some(token) => eprintln!(
            "\nstadion: first start: host organisation {:?} created.\n\
             Admin token (shown this once, store it now):\n\n    {}\n\n\
             Use it with: export STADION_TOKEN=<token>\n",
            config.host_name,
            token.expose()
        ),
        None => {}
    }
    Ok(control)
}

/// Runs every service of `stadion serve` on the control plane until Ctrl-C: the HTTP server
/// with the control API and the live outputs status, and the live data plane beside it.
pub async fn run_services(config: &ServeConfig, control: ControlPlane) -> anyhow::Result<()> {
    let (data_plane, live_routes) =
        crate::live::DataPlane::start(control.clone(), &config.live).await?;
    let app = stadion_control::api::router(control.clone()).merge(live_routes);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(listen = %config.listen, store = %redact_url(&config.store), "control plane serving");
    eprintln!(
        "stadion: serving the control API on http://{} (store {})",
        config.listen,
        redact_url(&config.store)
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("HTTP server");
    data_plane.stop().await;
    // Every access decision answered is committed before the process ends.
    control.shutdown().await;
    served
}

/// A store URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{}{user}{hidden}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

// ---- the HTTP client ----------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Base URL of the control plane.
    #[arg(
        long,
        env = "STADION_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// API token (prefer the environment variable: command lines are visible to other users).
    #[arg(long, env = "STADION_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
    json: bool,
}

impl Client {
    pub(crate) fn new(args: ClientArgs) -> anyhow::Result<Client> {
        let token = args
            .token
            .context("no API token: set STADION_TOKEN or pass --token")?;
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .build(),
        );
        Ok(Client {
            agent,
            base: args.server.trim_end_matches('/').to_owned(),
            token,
            json: args.json,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            ("PUT", Some(body)) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body),
            (_, Some(body)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
        };
        let mut response =
            sent.with_context(|| format!("cannot reach the control plane at {}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let detail = value["detail"].as_str().unwrap_or("");
            let field = value["field"]
                .as_str()
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default();
            bail!("{method} {path}: HTTP {status}: {detail}{field}");
        }
        Ok(value)
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call("POST", path, Some(body))
    }

    /// An id given as a UUID is used as is; otherwise it is looked up by name in `list_path`.
    fn resolve(&self, list_path: &str, what: &str, text: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(text).is_ok() {
            return Ok(text.to_owned());
        }
        let list = self.get(list_path)?;
        list.as_array()
            .into_iter()
            .flatten()
            .find(|item| item["name"] == text)
            .and_then(|item| item["id"].as_str().map(str::to_owned))
            .with_context(|| format!("no {what} named {text:?}"))
    }

    /// Prints `value` as JSON, or its rows as a table with the given (header, field) columns.
    fn show(&self, value: &Value, columns: &[(&str, &str)]) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
            return;
        }
        let rows = match value {
            Value::Array(rows) => rows.clone(),
            one => vec![one.clone()],
        };
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(columns.iter().map(|(h, _)| *h));
        for row in &rows {
            table.add_row(columns.iter().map(|(_, key)| cell(&row[*key])));
        }
        println!("{table}");
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

const ORG_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("kind", "kind"),
    ("created", "created_at"),
];
const USER_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("org", "org_id"),
    ("email", "email"),
];
const TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("role", "role"),
    ("label", "label"),
    ("user", "user_id"),
    ("created", "created_at"),
    ("revoked", "revoked_at"),
];
const SOURCE_COLUMNS: &[(&str, &str)] = &[
    ("name", "name"),
    ("kind", "kind"),
    ("address", "address"),
    ("interface", "interface"),
    ("stream id", "stream_id"),
    ("passphrase", "passphrase"),
];
const OUTPUT_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("flow", "flow_id"),
    ("licence", "licence_id"),
    ("org", "org_id"),
    ("target", "target"),
];
const USAGE_COLUMNS: &[(&str, &str)] = &[
    ("org", "org_name"),
    ("flow", "flow_name"),
    ("bytes", "bytes"),
    ("packets", "packets"),
    ("sessions", "sessions"),
    ("open", "open_sessions"),
];
const SESSION_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("org", "org_id"),
    ("flow", "flow_id"),
    ("kind", "kind"),
    ("peer", "peer"),
    ("connected", "connected_at"),
    ("disconnected", "disconnected_at"),
    ("reason", "disconnect_reason"),
    ("bytes", "bytes"),
];
const FLOW_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("venue", "venue"),
    ("event", "event_code"),
    ("description", "description"),
];
const LICENCE_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("org", "org_id"),
    ("flow", "flow_id"),
    ("state", "state"),
    ("from", "valid_from"),
    ("until", "valid_until"),
    ("max rx", "max_concurrent_receivers"),
    ("networks", "allowed_networks"),
    ("encrypted", "encryption_required"),
];
const AUDIT_COLUMNS: &[(&str, &str)] = &[
    ("seq", "seq"),
    ("at", "at"),
    ("actor", "actor"),
    ("action", "action"),
    ("subject", "subject"),
    ("decision", "decision"),
    ("reason", "reason"),
];

// ---- admin subcommands ----------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List organisations.
    List,
    /// Create an organisation.
    Create {
        /// Unique short name, e.g. `nbc`.
        #[arg(long)]
        name: String,
        /// `rights-holder` for a broadcaster licensing flows; there is one `host`.
        #[arg(long, value_enum, default_value = "rights-holder")]
        kind: Kind,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Host,
    RightsHolder,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    List,
    /// Create a user in an organisation.
    Create {
        /// Organisation name or id.
        #[arg(long)]
        org: String,
        /// Unique user name.
        #[arg(long)]
        name: String,
        /// Contact address.
        #[arg(long)]
        email: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List tokens (metadata only; secrets are never stored).
    List,
    /// Mint a token for a user and print it once.
    Create {
        /// User name or id.
        #[arg(long)]
        user: String,
        /// `host-admin` / `host-operator` for host users, `rhb-viewer` for a rights holder's.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// What the token is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        /// Token id (the part after `stn_`, as `token list` shows it).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    HostAdmin,
    HostOperator,
    RhbViewer,
}

#[derive(Debug, Subcommand)]
pub enum FlowCommand {
    /// List flows.
    List,
    /// Create a flow.
    Create {
        /// Unique name, used by receivers in the SRT stream id.
        #[arg(long)]
        name: String,
        /// Venue, e.g. `Stade de France`.
        #[arg(long)]
        venue: String,
        /// Sport / event code, e.g. `ATH-100M-M-FNL`.
        #[arg(long)]
        event_code: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// JSON file with the sources and redundancy (see `docs/control.md`); `-` reads
        /// standard input.
        #[arg(long, value_name = "FILE")]
        transport: Option<PathBuf>,
    },
    /// Show one flow with its sources (passphrases for host admins only).
    Show {
        /// Flow name or id.
        flow: String,
    },
    /// Replace a flow's sources and redundancy from a JSON file (`-`: standard input).
    SetTransport {
        /// Flow name or id.
        flow: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a flow that no licence refers to.
    Delete {
        /// Flow name or id.
        flow: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutputCommand {
    /// List push outputs.
    List {
        /// Only this flow (name or id).
        #[arg(long)]
        flow: Option<String>,
    },
    /// Push a flow to a rights holder under one of its licences.
    Create {
        /// Flow name or id.
        #[arg(long)]
        flow: String,
        /// The licence (id) the push is made under.
        #[arg(long)]
        licence: String,
        /// Unique name within the flow.
        #[arg(long)]
        name: String,
        /// `srt-caller` (encrypted with the licence's passphrase) or `udp` (clear).
        #[arg(long, value_enum)]
        kind: PushKind,
        /// Destination IP:PORT, inside the licence's allowed networks.
        #[arg(long)]
        address: String,
        /// SRT stream ID to send.
        #[arg(long)]
        stream_id: Option<String>,
        /// SRT latency in milliseconds.
        #[arg(long)]
        latency_ms: Option<u64>,
    },
    /// Remove a push output.
    Delete {
        /// Output id.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PushKind {
    SrtCaller,
    Udp,
}

#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// List licences (optionally of one organisation, flow or state).
    List {
        /// Organisation name or id.
        #[arg(long)]
        org: Option<String>,
        /// Flow name or id.
        #[arg(long)]
        flow: Option<String>,
        /// `active`, `disabled` or `revoked`.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one licence (with its passphrase, for host admins and its holder).
    Show {
        /// Licence id.
        id: String,
    },
    /// Grant a rights holder a licence to a flow.
    Create {
        /// Rights-holding organisation, name or id.
        #[arg(long)]
        org: String,
        /// Flow, name or id.
        #[arg(long)]
        flow: String,
        /// Start of the validity window, RFC 3339 (e.g. 2026-07-24T08:00:00Z).
        #[arg(long)]
        from: String,
        /// End of the validity window (exclusive), RFC 3339.
        #[arg(long)]
        until: String,
        /// Most receivers connected at once.
        #[arg(long, default_value_t = 2)]
        max_receivers: u32,
        /// Allowed source network in CIDR form; repeat for several.
        #[arg(long = "network", required = true)]
        networks: Vec<String>,
        /// Let receivers connect without SRT encryption.
        #[arg(long)]
        no_encryption: bool,
        /// Read the SRT passphrase (10-79 characters) from this environment variable instead
        /// of generating one (a passphrase on the command line would be visible to others).
        #[arg(long, value_name = "VAR")]
        passphrase_env: Option<String>,
    },
    /// Disable a licence (reversible): its receivers are cut.
    Disable {
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Enable a disabled licence.
    Enable {
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a licence (final): its receivers are cut.
    Revoke {
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Ask the access decision as a data plane would.
    Check {
        /// Rights holder, name or id.
        #[arg(long)]
        org: String,
        /// Flow, name or id.
        #[arg(long)]
        flow: String,
        /// The receiver's source address.
        #[arg(long)]
        source: String,
        /// Receivers already connected on the licence.
        #[arg(long, default_value_t = 0)]
        connected: u32,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries about this organisation (id).
    #[arg(long)]
    org: Option<String>,
    /// Only entries about this flow (id).
    #[arg(long)]
    flow: Option<String>,
    /// Only entries about this licence (id).
    #[arg(long)]
    licence: Option<String>,
    /// Only this action, e.g. `licence.revoke` or `access.decide`.
    #[arg(long)]
    action: Option<String>,
    /// Entries at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Entries before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Entries after this sequence number (the `next` shown below the previous page).
    #[arg(long)]
    after: Option<i64>,
    /// Entries per page (1-1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// Reads a JSON document from a file, or from standard input for `-`.
fn read_json(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn value_name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().replace('-', "_"))
        .unwrap_or_default()
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args),
        Command::Org { client, command } => {
            let c = Client::new(client)?;
            let out = match command {
                OrgCommand::List => c.get("/api/v1/orgs")?,
                OrgCommand::Create { name, kind } => c.post(
                    "/api/v1/orgs",
                    json!({"name": name, "kind": value_name(kind)}),
                )?,
            };
            c.show(&out, ORG_COLUMNS);
            Ok(())
        }
        Command::User { client, command } => {
            let c = Client::new(client)?;
            let out = match command {
                UserCommand::List => c.get("/api/v1/users")?,
                UserCommand::Create { org, name, email } => {
                    let org_id = c.resolve("/api/v1/orgs", "organisation", &org)?;
                    c.post(
                        "/api/v1/users",
                        json!({"org_id": org_id, "name": name, "email": email}),
                    )?
                }
            };
            c.show(&out, USER_COLUMNS);
            Ok(())
        }
        Command::Token { client, command } => {
            let c = Client::new(client)?;
            match command {
                TokenCommand::List => c.show(&c.get("/api/v1/tokens")?, TOKEN_COLUMNS),
                TokenCommand::Create { user, role, label } => {
                    let user_id = c.resolve("/api/v1/users", "user", &user)?;
                    let out = c.post(
                        "/api/v1/tokens",
                        json!({"user_id": user_id, "role": value_name(role), "label": label}),
                    )?;
                    if c.json {
                        c.show(&out, &[]);
                    } else {
                        c.show(&out["info"], TOKEN_COLUMNS);
                        eprintln!("Token (shown this once):");
                        println!("{}", out["token"].as_str().unwrap_or_default());
                    }
                }
                TokenCommand::Revoke { id } => c.show(
                    &c.call(
                        "POST",
                        &format!("/api/v1/tokens/{}/revoke", encode(&id)),
                        None,
                    )?,
                    TOKEN_COLUMNS,
                ),
            }
            Ok(())
        }
        Command::Flow { client, command } => {
            let c = Client::new(client)?;
            let out = match command {
                FlowCommand::List => c.get("/api/v1/flows")?,
                FlowCommand::Create {
                    name,
                    venue,
                    event_code,
                    description,
                    transport,
                } => {
                    let transport = transport.map(|f| read_json(&f)).transpose()?;
                    c.post(
                        "/api/v1/flows",
                        json!({"name": name, "venue": venue, "event_code": event_code, "description": description, "transport": transport}),
                    )?
                }
                FlowCommand::Show { flow } => {
                    let id = c.resolve("/api/v1/flows", "flow", &flow)?;
                    let f = c.get(&format!("/api/v1/flows/{}", encode(&id)))?;
                    if !c.json {
                        c.show(&f, FLOW_COLUMNS);
                        println!("redundancy: {}", cell(&f["transport"]["redundancy"]));
                        c.show(&f["transport"]["sources"], SOURCE_COLUMNS);
                        return Ok(());
                    }
                    f
                }
                FlowCommand::SetTransport { flow, file } => {
                    let id = c.resolve("/api/v1/flows", "flow", &flow)?;
                    c.call(
                        "PUT",
                        &format!("/api/v1/flows/{}/transport", encode(&id)),
                        Some(read_json(&file)?),
                    )?
                }
                FlowCommand::Delete { flow } => {
                    let id = c.resolve("/api/v1/flows", "flow", &flow)?;
                    c.call("DELETE", &format!("/api/v1/flows/{}", encode(&id)), None)?
                }
            };
            c.show(&out, FLOW_COLUMNS);
            Ok(())
        }
        Command::Output { client, command } => {
            let c = Client::new(client)?;
            let out = match command {
                OutputCommand::List { flow } => {
                    let flow = flow
                        .map(|f| c.resolve("/api/v1/flows", "flow", &f))
                        .transpose()?;
                    c.get(&format!(
                        "/api/v1/outputs{}",
                        query_string(&[("flow_id", flow)])
                    ))?
                }
                OutputCommand::Create {
                    flow,
                    licence,
                    name,
                    kind,
                    address,
                    stream_id,
                    latency_ms,
                } => {
                    let flow_id = c.resolve("/api/v1/flows", "flow", &flow)?;
                    let target = match kind {
                        PushKind::SrtCaller => {
                            json!({"kind": "srt_caller", "address": address, "stream_id": stream_id, "latency_ms": latency_ms})
                        }
                        PushKind::Udp => json!({"kind": "udp", "address": address}),
                    };
                    c.post("/api/v1/outputs", json!({"flow_id": flow_id, "licence_id": licence, "name": name, "target": target}))?
                }
                OutputCommand::Delete { id } => {
                    c.call("DELETE", &format!("/api/v1/outputs/{}", encode(&id)), None)?
                }
            };
            c.show(&out, OUTPUT_COLUMNS);
            Ok(())
        }
        Command::Usage {
            filter,
            since,
            until,
        } => {
            let (c, q) = filter.query(&[("since", since), ("until", until)])?;
            c.show(&c.get(&format!("/api/v1/usage{q}"))?, USAGE_COLUMNS);
            Ok(())
        }
        Command::Sessions {
            filter,
            open,
            limit,
        } => {
            let (c, q) = filter.query(&[
                ("open", open.then(|| "true".to_owned())),
                ("limit", Some(limit.to_string())),
            ])?;
            c.show(&c.get(&format!("/api/v1/sessions{q}"))?, SESSION_COLUMNS);
            Ok(())
        }
        Command::Licence { client, command } => licence(Client::new(client)?, command),
        Command::Audit { client, query } => {
            let c = Client::new(client)?;
            let q = query_string(&[
                ("org_id", query.org),
                ("flow_id", query.flow),
                ("licence_id", query.licence),
                ("action", query.action),
                ("since", query.since),
                ("until", query.until),
                ("after", query.after.map(|a| a.to_string())),
                ("limit", Some(query.limit.to_string())),
            ]);
            let page = c.get(&format!("/api/v1/audit{q}"))?;
            if c.json {
                c.show(&page, &[]);
            } else {
                c.show(&page["entries"], AUDIT_COLUMNS);
                if let Some(next) = page["next_after"].as_i64() {
                    eprintln!("more: --after {next}");
                }
            }
            Ok(())
        }
    }
}

fn licence(c: Client, command: LicenceCommand) -> anyhow::Result<()> {
    let out = match command {
        LicenceCommand::List { org, flow, state } => {
            let org = org
                .map(|o| c.resolve("/api/v1/orgs", "organisation", &o))
                .transpose()?;
            let flow = flow
                .map(|f| c.resolve("/api/v1/flows", "flow", &f))
                .transpose()?;
            c.get(&format!(
                "/api/v1/licences{}",
                query_string(&[("org_id", org), ("flow_id", flow), ("state", state)])
            ))?
        }
        LicenceCommand::Show { id } => {
            let l = c.get(&format!("/api/v1/licences/{}", encode(&id)))?;
            if !c.json {
                let mut cols = LICENCE_COLUMNS.to_vec();
                cols.push(("passphrase", "passphrase"));
                c.show(&l, &cols);
                return Ok(());
            }
            l
        }
        LicenceCommand::Create {
            org,
            flow,
            from,
            until,
            max_receivers,
            networks,
            no_encryption,
            passphrase_env,
        } => {
            let org_id = c.resolve("/api/v1/orgs", "organisation", &org)?;
            let flow_id = c.resolve("/api/v1/flows", "flow", &flow)?;
            let passphrase = passphrase_env
                .map(|var| {
                    std::env::var(&var).with_context(|| {
                        format!("environment variable {var} (for --passphrase-env) is not set")
                    })
                })
                .transpose()?;
            c.post(
                "/api/v1/licences",
                json!({
                    "org_id": org_id, "flow_id": flow_id, "valid_from": from, "valid_until": until,
                    "max_concurrent_receivers": max_receivers, "allowed_networks": networks,
                    "encryption_required": !no_encryption, "passphrase": passphrase,
                }),
            )?
        }
        LicenceCommand::Disable { id, reason } => c.post(
            &format!("/api/v1/licences/{}/disable", encode(&id)),
            json!({"reason": reason}),
        )?,
        LicenceCommand::Enable { id, reason } => c.post(
            &format!("/api/v1/licences/{}/enable", encode(&id)),
            json!({"reason": reason}),
        )?,
        LicenceCommand::Revoke { id, reason } => c.post(
            &format!("/api/v1/licences/{}/revoke", encode(&id)),
            json!({"reason": reason}),
        )?,
        LicenceCommand::Check {
            org,
            flow,
            source,
            connected,
        } => {
            let answer = c.post(
                "/api/v1/access/decide",
                json!({"org": org, "flow": flow, "source": source, "connected": connected}),
            )?;
            if c.json {
                c.show(&answer, &[]);
            } else if answer["allowed"] == true {
                println!(
                    "allowed: licence {} until {}",
                    cell(&answer["grant"]["licence_id"]),
                    cell(&answer["grant"]["valid_until"])
                );
            } else {
                println!(
                    "refused: {} (SRT rejection code {})",
                    cell(&answer["denial"]["reason"]),
                    cell(&answer["denial"]["srt_reject_code"])
                );
            }
            return Ok(());
        }
    };
    c.show(&out, LICENCE_COLUMNS);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flags_then_file_then_defaults() {
        let dir = tempfile_dir();
        let file = dir.join("stadion.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nhost_name = \"obs\"\ndata_dir = \"/tmp/x\"\nnode = \"venue-7\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: None,
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            store: None,
            host_name: None,
            node: None,
            srt_ingest: None,
            srt_receive: None,
            srt_latency_ms: None,
            config: Some(file),
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.listen.port(), 9100, "the flag beats the file");
        assert_eq!(c.host_name, "obs", "the file beats the default");
        assert_eq!(c.node, "venue-7");
        assert_eq!(c.store, "sqlite:///tmp/x/stadion.db");
        let defaults = ServeArgs {
            data_dir: None,
            listen: None,
            store: None,
            host_name: None,
            node: None,
            srt_ingest: None,
            srt_receive: None,
            srt_latency_ms: None,
            config: None,
        }
        .resolve()
        .unwrap();
        assert_eq!(defaults.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(defaults.store, "sqlite://stadion-data/stadion.db");
        std::fs::write(dir.join("bad.toml"), "colour = 1\n").unwrap();
        let bad = ServeArgs {
            data_dir: None,
            listen: None,
            store: None,
            host_name: None,
            node: None,
            srt_ingest: None,
            srt_receive: None,
            srt_latency_ms: None,
            config: Some(dir.join("bad.toml")),
        };
        assert!(format!("{:#}", bad.resolve().unwrap_err()).contains("colour"));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stadion-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite://data/stadion.db"),
            "sqlite://data/stadion.db"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_string(&[("a", Some("x y&z".into())), ("b", None)]),
            "?a=x%20y%26z"
        );
        assert_eq!(query_string(&[("b", None)]), "");
    }
}
