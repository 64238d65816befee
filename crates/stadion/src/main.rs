//! `stadion`: the one binary. It only wires the domain crates together and holds the CLI;
//! every domain keeps its command-line surface in a module of its own beside this file.

use clap::{Parser, Subcommand, ValueEnum};

mod control;
mod insight;
mod live;
mod plan;
mod track;

/// stadion runs the cloud side of an Olympic-scale event.
///
/// Live Cloud distributes venue feeds over SRT to licensed broadcasters; `track` turns
/// multi-camera video into 3D skeletons and sprint metrics; `plan` turns the competition
/// schedule into vehicle routes and timetables.
#[derive(Debug, Parser)]
#[command(name = "stadion", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, env = "STADION_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

// Each domain adds one variant here and one arm in `main`, nothing more.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the build's version and the crates it wires.
    Version,
    #[command(flatten)]
    Control(Box<control::Command>),
    /// Live Cloud: what the node delivers to broadcasters (receivers and their SRT statistics).
    #[command(subcommand)]
    Live(live::Command),
    /// Transport planning: solve routing benchmarks, plan a Games day from its schedule.
    #[command(subcommand)]
    Plan(plan::Command),
    /// Athlete tracking: multi-camera 3D skeletons, sprint biomechanics, live metrics.
    #[command(subcommand)]
    Track(track::Command),
    /// Analytics: query, plot and export what the platform did (sessions, usage, decisions).
    #[command(subcommand)]
    Insight(insight::Command),
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STADION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Version => {
            println!("stadion {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Control(command) => control::run(*command),
        Command::Live(command) => live::run(command),
        Command::Plan(command) => plan::run(command),
        Command::Track(command) => track::run(command),
        Command::Insight(command) => insight::run(command),
    }
}
