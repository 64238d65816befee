//! `stadion insight`: analytics over what the platform did. Each command reads the records
//! through the control plane's API (with the caller's token, so a rights holder sees only
//! its own organisation), loads them into an in-memory SQLite warehouse and queries, plots
//! or exports it. See docs/insight.md.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use stadion_insight::{Period, QueryResult, Report, Resolution, Warehouse, schema};

use crate::control::{Client, ClientArgs};

const QUERY_EXAMPLES: &str = "\
Examples:
  # delivered GB per broadcaster and flow
  stadion insight query \"SELECT org, flow, SUM(bytes) / 1e9 AS gb FROM usage_hourly GROUP BY org, flow ORDER BY gb DESC\"
  # refusals per reason yesterday, as CSV
  stadion insight query --from 2026-07-24T00:00:00Z --until 2026-07-25T00:00:00Z --format csv \\
      \"SELECT reason, COUNT(*) AS n FROM decisions WHERE result = 'deny' GROUP BY reason ORDER BY n DESC\"
  # the busiest hour per broadcaster
  stadion insight query \"SELECT org, hour, MAX(peak) FROM receivers_hourly GROUP BY org\"
  # sessions cut by a revocation, newest first
  stadion insight query \"SELECT org, flow, peer, connected, disconnected FROM sessions WHERE reason = 'revoked' ORDER BY connected_epoch DESC\"

`stadion insight tables` lists every table and column.";

const PLOT_EXAMPLES: &str = "\
Reports:
  delivery   delivered Mbit/s per broadcaster over time (hourly averages, usage_hourly)
  receivers  concurrent receivers per broadcaster over time (peak per minute or hour, sessions)
  decisions  access decisions per hour (or minute), stacked by outcome: allow or the refusal
  flows      bytes delivered per flow, stacked by broadcaster

Examples:
  stadion insight plot delivery --out delivery.svg
  stadion insight plot receivers --from 2026-07-24T18:00:00Z --until 2026-07-24T22:00:00Z --out final.png
  stadion insight plot decisions --resolution hour --out decisions.svg";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one read-only SQL statement on the warehouse and print the answer.
    ///
    /// The warehouse is SQLite (its functions, e.g. strftime, work), loaded from the control
    /// plane for the period asked. Only one SELECT, WITH ... SELECT or VALUES statement runs;
    /// anything that would write is refused.
    #[command(after_help = QUERY_EXAMPLES)]
    Query {
        /// The SQL statement.
        sql: String,
        /// How to print the answer.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// List the warehouse's tables and what each column means.
    Tables {
        /// As Markdown tables (what docs/insight.md shows).
        #[arg(long)]
        markdown: bool,
    },
    /// Draw a report as SVG or PNG (by the --out file's extension).
    #[command(after_help = PLOT_EXAMPLES)]
    Plot {
        #[arg(value_enum)]
        report: ReportArg,
        /// The picture to write: NAME.svg or NAME.png.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Time buckets of the receivers and decisions reports; auto is minutes for a period
        /// of up to six hours, hours beyond.
        #[arg(long, value_enum, default_value_t = ResolutionArg::Auto)]
        resolution: ResolutionArg,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write every table as CSV, and the whole warehouse as a SQLite file, into a directory.
    ///
    /// `sqlite3 DIR/stadion-insight.sqlite`, pandas, DuckDB or a spreadsheet open them.
    #[command(
        after_help = "Example:\n  stadion insight export --from 2026-07-24T00:00:00Z --out day-1/"
    )]
    Export {
        /// Directory to write into (created if missing; files in it are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
}

/// Which records to load, and from which server.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Start of the period (RFC 3339, e.g. 2026-07-24T08:00:00Z) [default: when the first
    /// organisation was created, i.e. everything].
    #[arg(long, value_name = "TIME")]
    from: Option<DateTime<Utc>>,
    /// End of the period, exclusive (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// CSV with a header line; NULL is an empty field.
    Csv,
    /// An array of objects, one per row.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportArg {
    Delivery,
    Receivers,
    Decisions,
    Flows,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResolutionArg {
    Auto,
    Minute,
    Hour,
}

/// The control plane's API as the warehouse reads it.
struct Http(Client);

impl stadion_insight::Api for Http {
    fn get(&mut self, path: &str) -> Result<serde_json::Value, String> {
        self.0.get(path).map_err(|e| {
            let text = format!("{e:#}");
            // The client's message already starts with the request; the warehouse adds it.
            let prefix = format!("GET {path}: ");
            text.strip_prefix(&prefix)
                .map(str::to_owned)
                .unwrap_or(text)
        })
    }
}

impl LoadArgs {
    /// Reads the period's records and loads them; notes about incomplete records go to
    /// standard error.
    fn load(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Warehouse> {
        let mut api = Http(Client::new(self.client)?);
        let period = Period {
            from: self.from,
            until: self.until,
        };
        let snapshot = stadion_insight::fetch(&mut api, period, Utc::now())?;
        for note in &snapshot.notes {
            eprintln!("note: {note}");
        }
        Ok(runtime.block_on(Warehouse::load(&snapshot))?)
    }
}

fn print(result: &QueryResult, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(&result.columns);
            for row in &result.rows {
                table.add_row(row.iter().map(|c| match c {
                    stadion_insight::Cell::Null => "NULL".to_owned(),
                    other => other.to_string(),
                }));
            }
            println!("{table}");
            println!("({} rows)", result.rows.len());
        }
        Format::Csv => result.write_csv(std::io::stdout().lock())?,
        Format::Json => println!("{}", serde_json::to_string_pretty(&result.to_json())?),
    }
    Ok(())
}

fn print_tables(markdown: bool) {
    for t in schema::TABLES {
        if markdown {
            println!(
                "### `{}`\n\n{}.\n\n| column | type | meaning |\n| --- | --- | --- |",
                t.name, t.about
            );
            for c in t.columns {
                println!("| `{}` | {} | {} |", c.name, c.sql_type, c.about);
            }
            println!();
        } else {
            println!("{}: {}", t.name, t.about);
            let width = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in t.columns {
                println!("  {:width$}  {:7}  {}", c.name, c.sql_type, c.about);
            }
            println!();
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match command {
        Command::Query { sql, format, load } => {
            let mut warehouse = load.load(&runtime)?;
            let result = runtime.block_on(warehouse.query(&sql))?;
            print(&result, format)
        }
        Command::Tables { markdown } => {
            print_tables(markdown);
            Ok(())
        }
        Command::Plot {
            report,
            out,
            resolution,
            load,
        } => {
            let mut warehouse = load.load(&runtime)?;
            let report = match report {
                ReportArg::Delivery => Report::Delivery,
                ReportArg::Receivers => Report::Receivers,
                ReportArg::Decisions => Report::Decisions,
                ReportArg::Flows => Report::Flows,
            };
            let resolution = match resolution {
                ResolutionArg::Minute => Resolution::Minute,
                ResolutionArg::Hour => Resolution::Hour,
                ResolutionArg::Auto => {
                    let (from, until, as_of) = warehouse.period();
                    if until.min(as_of) - from <= chrono::Duration::hours(6) {
                        Resolution::Minute
                    } else {
                        Resolution::Hour
                    }
                }
            };
            runtime.block_on(stadion_insight::plot(
                &mut warehouse,
                report,
                resolution,
                &out,
            ))?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Export { out, load } => {
            let mut warehouse = load.load(&runtime)?;
            for file in runtime.block_on(warehouse.export(&out))? {
                println!("{}", file.display());
            }
            Ok(())
        }
    }
}
